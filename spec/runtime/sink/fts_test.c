/* sluice.sink.fts: upsert and delete, literal queries that must never be
 * read as FTS5 syntax, BM25 order, snippets, unicode and emoji, batching
 * visible from another connection, several indexes per file, hostile
 * documents, and a 100k-document run whose timings are printed. */
#include "harness.h"

#include <stdlib.h>

#define PRELUDE                                                                  \
    "local fts = require 'sluice.sink.fts'\n"                                  \
    "local path = os.tmpname(); os.remove(path)\n"                             \
    "local function cleanup() for _, s in ipairs({'', '-wal', '-shm'}) do "   \
    "os.remove(path .. s) end end\n"                                           \
    "local idx = assert(fts.open(path, 'docs'))\n"                             \
    "local function ids(q, opts)\n"                                            \
    "  local r = assert(idx:search(q, opts))\n"                                \
    "  local out = {}\n"                                                       \
    "  for i, h in ipairs(r.hits) do out[i] = h.id end\n"                      \
    "  table.sort(out)\n"                                                      \
    "  return table.concat(out, ','), r\n"                                     \
    "end\n"                                                                    \
    "local function eq(got, want, what)\n"                                     \
    "  if got ~= want then error((what or '') .. ': expected ' .. tostring(want) .. ', got ' " \
    ".. tostring(got), 2) end\n"                                               \
    "end\n"

static void run_all(void)
{
    sl_test_lua("upsert_delete", PRELUDE
                "eq(idx:put({_id = 'a', title = 'First title', body = 'alpha body'}), true)\n"
                "eq(idx:count(), 1)\n"
                "eq(idx:put({_id = 'a', title = 'Second title', body = 'beta body'}), true)\n"
                "eq(idx:count(), 1, 'upsert keeps one row')\n"
                "eq(ids('alpha'), '')\n"
                "eq(ids('beta'), 'a')\n"
                "eq(ids('second'), 'a')\n"
                "eq(idx:get('a').title, 'Second title')\n"
                "eq(idx:get('missing'), nil)\n"
                "eq(idx:put({_id = 'b', body = 'beta again'}), true)\n"
                "eq(ids('beta'), 'a,b')\n"
                "eq(idx:delete('a'), true)\n"
                "eq(idx:delete('a'), false)\n"
                "eq(idx:delete('never'), false)\n"
                "eq(idx:count(), 1)\n"
                "eq(ids('beta'), 'b')\n"
                "eq(idx:get('a'), nil)\n"
                "eq(idx:flush(), true)\n"
                "eq(idx:close(), true)\n"
                "eq(idx:close(), true)\n"
                "local ok, e = pcall(idx.count, idx)\n"
                "assert(not ok and e:find('index is closed', 1, true), e)\n"
                /* reopened: the data and the search are still there */
                "idx = assert(fts.open(path, 'docs'))\n"
                "eq(idx:count(), 1)\n"
                "eq(ids('again'), 'b')\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("doc_roundtrip", PRELUDE
                "local doc = {_id = 'd1', _timestamp = '2024-01-02T03:04:05Z', title = 'T',\n"
                "  n = 42, f = 1.5, yes = true, tags = {'x', 'y'}, meta = {owner = 'bob'},\n"
                "  empty = {}, nothing = require('cjson').null, fn = print}\n"
                "assert(idx:put(doc))\n"
                "local got = idx:get('d1')\n"
                "eq(got._id, 'd1'); eq(got._timestamp, '2024-01-02T03:04:05Z')\n"
                "eq(got.n, 42); eq(got.f, 1.5); eq(got.yes, true)\n"
                "eq(got.tags[2], 'y'); eq(got.meta.owner, 'bob'); eq(next(got.empty), nil)\n"
                "eq(got.nothing, require('cjson').null); eq(got.fn, nil)\n"
                /* the stored JSON, byte for byte */
                "assert(idx:flush())\n"
                "local db = require('sluice.sqlite').open(path)\n"
                "eq(db:one('SELECT source FROM ix_docs_docs WHERE id = ?', 'd1').source,\n"
                "  '{\"_id\":\"d1\",\"_timestamp\":\"2024-01-02T03:04:05Z\",\"empty\":{},\"f\":1.5,'\n"
                "  .. '\"meta\":{\"owner\":\"bob\"},\"n\":42,\"nothing\":null,\"tags\":[\"x\",\"y\"],'\n"
                "  .. '\"title\":\"T\",\"yes\":true}')\n"
                "db:close()\n"
                /* other = every other string, nested too; not _id/_timestamp */
                "eq(ids('bob'), 'd1'); eq(ids('x y'), 'd1')\n"
                "eq(ids('d1'), ''); eq(ids('2024'), '')\n"
                /* name stands in for a missing title */
                "assert(idx:put({_id = 'n1', name = 'Named thing', body = 'b'}))\n"
                "local _, r = ids('named')\n"
                "eq(r.hits[1].title, 'Named thing')\n"
                "assert(idx:put({_id = 'n2', title = 'Real', name = 'secondary'}))\n"
                "_, r = ids('secondary')\n"
                "eq(r.hits[1].title, 'Real')\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("literal_queries", PRELUDE
                "local corpus = {\n"
                "  pol = 'Ticket POL-358 was closed', pol2 = 'Ticket POL-359 is open',\n"
                "  csharp = 'Learning C# in depth', java = 'Learning Java in depth',\n"
                "  cplain = 'Learning C in depth', cpp = 'Learning C++ in depth',\n"
                "  fsharp = 'F#, then Haskell', issue = 'see issue#12, also c#d',\n"
                "  nbsp = 'code in J#\xC2\xA0today', quote = 'G++\xE2\x80\x99s flags', glued = 'K#\xC3\xA9t\xC3\xA9',\n"
                "  dont = 'I don\\'t know', do_ = 'I do know',\n"
                "  v12 = 'released v1.2 today', v13 = 'released v1.3 today',\n"
                "  mail = 'write to user@example.org', mail2 = 'user at example dot com',\n"
                "  near = 'the NEAR(a b) operator', unbal = 'an unbalanced quote',\n"
                "  titlefoo = 'title: foo is here', foocol = 'something else',\n"
                "  price = 'the price list', andornot = 'this and that or those not them',\n"
                "  andonly = 'salt and pepper',\n"
                "}\n"
                "for id, body in pairs(corpus) do\n"
                "  assert(idx:put({_id = id, title = id == 'foocol' and 'foo' or nil, body = body}))\n"
                "end\n"
                "eq(ids('POL-358'), 'pol')\n"
                "eq(ids('C#'), 'csharp')\n"
                "eq(ids('c++'), 'cpp')\n"
                "eq(ids('f#'), 'fsharp')\n"
                "eq(ids('C'), 'cplain,cpp,csharp,issue')\n"
                "eq(ids('issue#12'), 'issue')\n" /* not a language name: the phrase issue 12 */
                "eq(ids('c#d'), 'issue')\n"
                "eq(ids('J#'), 'nbsp')\n"
                "eq(ids('g++'), 'quote')\n"
                "eq(ids('K#'), '', 'a letter after # is part of the word')\n"
                "local _, r = ids('C#')\n"
                "eq(r.hits[1].snippet, 'Learning [C#] in depth')\n"
                "eq(ids(\"don't\"), 'dont')\n"
                "eq(ids('v1.2'), 'v12')\n"
                "eq(ids('user@example.org'), 'mail')\n"
                "eq(ids('NEAR(a b)'), 'near')\n"
                "eq(ids('\"unbalanced'), 'unbal')\n"
                "eq(ids('unbalanced\"'), 'unbal')\n"
                "eq(ids('title:foo'), 'titlefoo')\n"
                "eq(ids('price *'), 'price')\n"
                "eq(ids('pri*'), '', 'no prefix expansion')\n"
                "eq(ids('AND OR NOT'), 'andornot')\n"
                "eq(ids('and'), 'andonly,andornot')\n"
                "eq(ids('ticket -closed'), 'pol', '-closed is the word closed')\n"
                "eq(ids('Ticket ^open'), 'pol2')\n"
                "eq(ids('learning -- java'), 'java', 'a punctuation term is dropped')\n"
                "eq(ids('  ticket\\t\\nPOL-359  '), 'pol2')\n"
                "eq(ids('ticket nomatch'), '')\n"
                /* what the search ran */
                "eq(fts.query('POL-358'), '\"POL-358\"')\n"
                "eq(fts.query('C# don\\'t'), '\"C#\" AND \"don\\'t\"')\n"
                "eq(fts.query('\"unbalanced'), '\"\"\"unbalanced\"')\n"
                "eq(fts.query('NEAR(a b)'), '\"NEAR(a\" AND \"b)\"')\n"
                "eq(fts.query('title:foo * AND'), '\"title:foo\" AND \"AND\"')\n"
                "eq(fts.query('a\\0b'), '\"a\" AND \"b\"')\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("bad_queries", PRELUDE
                "assert(idx:put({_id = 'x', body = 'anything'}))\n"
                "for _, q in ipairs({'', '   ', '--', '*', '\"', '\" \"', '()', ':', '-- * ^',\n"
                "    '\\t\\n', '\\0'}) do\n"
                "  local r, e = idx:search(q)\n"
                "  eq(r, nil, q); eq(e, 'query has no words', q)\n"
                "  local m, e2 = fts.query(q)\n"
                "  eq(m, nil, q); eq(e2, 'query has no words', q)\n"
                "end\n"
                "local many = string.rep('w ', 64)\n"
                "eq(fts.query(many):sub(1, 11), '\"w\" AND \"w\"')\n"
                "local r, e = idx:search(many .. 'w')\n"
                "eq(r, nil); eq(e, 'query has too many words')\n"
                "local ok, err = pcall(idx.search, idx, 'x', {limit = -1})\n"
                "assert(not ok and err:find('limit must be an integer', 1, true), err)\n"
                "ok, err = pcall(idx.search, idx, 'x', {offset = 1.5})\n"
                "assert(not ok and err:find('offset must be an integer', 1, true), err)\n"
                "ok, err = pcall(idx.search, idx, 'x', {limit = 'ten'})\n"
                "assert(not ok, err)\n"
                "ok, err = pcall(idx.search, idx, nil)\n"
                "assert(not ok and err:find('string expected, got nil', 1, true), err)\n"
                "ok, err = pcall(fts.query, {})\n"
                "assert(not ok and err:find('bad argument #1', 1, true), err)\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("ranking_snippets", PRELUDE
                "assert(idx:put({_id = 'inbody', title = 'Animals', body = 'a kangaroo lives here'}))\n"
                "assert(idx:put({_id = 'inother', title = 'Zoo', body = 'animals live here',\n"
                "  tags = {'kangaroo'}}))\n"
                "assert(idx:put({_id = 'intitle', title = 'Kangaroo facts', body = 'about animals'}))\n"
                "for i = 1, 20 do assert(idx:put({_id = 'filler' .. i, title = 'Filler ' .. i,\n"
                "  body = 'nothing to see ' .. i})) end\n"
                "local r = assert(idx:search('kangaroo'))\n"
                "eq(r.total, 3)\n"
                "eq(r.hits[1].id, 'intitle'); eq(r.hits[2].id, 'inbody'); eq(r.hits[3].id, 'inother')\n"
                "assert(r.hits[1].score > r.hits[2].score and r.hits[2].score > r.hits[3].score)\n"
                "assert(r.hits[3].score > 0)\n"
                "eq(r.hits[1].title, 'Kangaroo facts')\n"
                "eq(r.hits[1].snippet, '[Kangaroo] facts')\n"
                "eq(r.hits[2].snippet, 'a [kangaroo] lives here')\n"
                "eq(r.hits[3].snippet, '[kangaroo]')\n"
                "eq(r.hits[1].doc.body, 'about animals')\n"
                /* a long body: a window of the text with ellipses */
                "local words = {}\n"
                "for i = 1, 100 do words[i] = 'w' .. i end\n"
                "words[50] = 'needle'\n"
                "assert(idx:put({_id = 'long', title = 'Long', body = table.concat(words, ' ')}))\n"
                "r = assert(idx:search('needle'))\n"
                "local s = r.hits[1].snippet\n"
                "assert(s:find('[needle]', 1, true), s)\n"
                "eq(s:sub(1, 3), '\\226\\128\\166', s); eq(s:sub(-3), '\\226\\128\\166', s)\n"
                "local n = 0; for _ in s:gmatch('%S+') do n = n + 1 end\n"
                "eq(n, 24, s)\n"
                /* paging */
                "r = assert(idx:search('filler', {limit = 5, offset = 0}))\n"
                "eq(r.total, 20); eq(#r.hits, 5)\n"
                "r = assert(idx:search('filler', {limit = 10, offset = 15}))\n"
                "eq(r.total, 20); eq(#r.hits, 5)\n"
                "r = assert(idx:search('filler', {limit = 0}))\n"
                "eq(r.total, 20); eq(#r.hits, 0)\n"
                "r = assert(idx:search('filler'))\n"
                "eq(#r.hits, 10)\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("unicode_emoji", PRELUDE
                "assert(idx:put({_id = 'zh', title = 'Zürich Café', body = 'Crème brûlée'}))\n"
                "assert(idx:put({_id = 'jp', body = '東京タワー'}))\n"
                "assert(idx:put({_id = 'gr', body = 'Ωμέγα'}))\n"
                "assert(idx:put({_id = 'emo', body = 'party🎉time and launch🚀 today'}))\n"
                "assert(idx:put({_id = 'fam', body = 'our 👨‍👩‍👧 family ❤️ trip'}))\n"
                "assert(idx:put({_id = 'flag', body = 'bonjour 🇫🇷 and 👍🏽'}))\n"
                "assert(idx:put({_id = 'bad', title = 'broken \\255\\254 bytes here'}))\n"
                "eq(ids('zurich'), 'zh'); eq(ids('ZÜRICH'), 'zh'); eq(ids('cafe'), 'zh')\n"
                "eq(ids('creme brulee'), 'zh')\n"
                "eq(ids('東京タワー'), 'jp')\n"
                "eq(ids('ωμέγα'), 'gr'); eq(ids('ΩΜΈΓΑ'), 'gr')\n"
                "eq(ids('🚀'), 'emo'); eq(ids('launch'), 'emo'); eq(ids('🎉'), 'emo')\n"
                "eq(ids('party'), 'emo'); eq(ids('time'), 'emo'); eq(ids('launch🚀'), 'emo')\n"
                "eq(ids('👨‍👩‍👧'), 'fam'); eq(ids('❤️'), 'fam'); eq(ids('❤'), 'fam')\n"
                "eq(ids('🇫🇷'), 'flag'); eq(ids('👍🏽'), 'flag'); eq(ids('👍'), 'flag')\n"
                "eq(ids('🇩🇪'), '')\n"
                "eq(ids('broken bytes'), 'bad')\n"
                "eq(idx:get('bad').title, 'broken \\239\\191\\189\\239\\191\\189 bytes here')\n"
                "local r = assert(idx:search('🚀'))\n"
                "eq(r.hits[1].snippet, 'party🎉time and launch[🚀] today')\n"
                "eq(fts.query('🚀 ok'), '\"🚀\" AND \"ok\"')\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("hostile_docs", PRELUDE
                "local r, e = idx:put({title = 'no id'})\n"
                "eq(r, nil); eq(e, 'document has no string _id')\n"
                "r, e = idx:put({_id = 12})\n"
                "eq(r, nil); eq(e, 'document has no string _id')\n"
                "r, e = idx:put({_id = ''})\n"
                "eq(r, nil); eq(e, 'document _id is empty')\n"
                "local cyc = {_id = 'cyc'}; cyc.self = cyc\n"
                "r, e = idx:put(cyc)\n"
                "eq(r, nil); eq(e, 'nesting too deep')\n"
                "r, e = idx:put({_id = 'nan', v = 0/0})\n"
                "eq(r, nil); eq(e, 'number is not finite')\n"
                "eq(idx:count(), 0)\n"
                "local ok, err = pcall(idx.put, idx, 'not a table')\n"
                "assert(not ok and err:find('table expected', 1, true), err)\n"
                "ok, err = pcall(idx.delete, idx, {})\n"
                "assert(not ok and err:find('string expected', 1, true), err)\n"
                /* ids with quotes, NULs and SQL are just ids */
                "local odd = {\"it's\", 'a\\0b', 'x\" OR 1=1 --', '\\'; DROP TABLE ix_docs_docs; --'}\n"
                "for _, id in ipairs(odd) do assert(idx:put({_id = id, body = 'odd'})) end\n"
                "eq(idx:count(), 4)\n"
                "for _, id in ipairs(odd) do eq(idx:get(id)._id, id) end\n"
                "eq(idx:delete('a\\0b'), true); eq(idx:delete('a'), false)\n"
                "eq(idx:count(), 3)\n"
                /* a huge body and deep-ish nesting are fine */
                "assert(idx:put({_id = 'big', body = string.rep('lorem ', 200000) .. 'unique'}))\n"
                "eq(ids('unique'), 'big')\n"
                "local deep = {_id = 'deep'}; local t = deep\n"
                "for i = 1, 100 do t.c = {}; t = t.c end; t.word = 'bottom'\n"
                "assert(idx:put(deep))\n"
                "eq(ids('bottom'), '', 'strings below 32 levels are not indexed')\n"
                "idx:close(); cleanup()\n");

    sl_test_lua("names_and_list", PRELUDE
                "idx:close()\n"
                "local a = assert(fts.open(path, 'a-b'))\n"
                "local b = assert(fts.open(path, 'a_b'))\n"
                "local c = assert(fts.open(path, 'Ünï'))\n"
                "assert(a:put({_id = '1', body = 'only in a'}))\n"
                "assert(b:put({_id = '1', body = 'only in b'}))\n"
                /* one connection per file: both wrote into one batch */
                "eq(a:flush(), true)\n"
                "local ro = require('sluice.sqlite').open(path, {readonly = true})\n"
                "eq(ro:one('SELECT count(*) AS n FROM ix_a_b_2_docs').n, 1)\n"
                "ro:close()\n"
                "eq(a:search('only').hits[1].doc.body, 'only in a')\n"
                "eq(b:search('only').hits[1].doc.body, 'only in b')\n"
                "eq(c:count(), 0)\n"
                "a:close(); b:close(); c:close()\n"
                "eq(table.concat(fts.list(path), '|'), 'a-b|a_b|docs|Ünï')\n"
                "local db = require('sluice.sqlite').open(path)\n"
                "local got = {}\n"
                "for row in db:rows('SELECT name, ident FROM sluice_fts_indexes ORDER BY name') do\n"
                "  got[#got + 1] = row.name .. '=' .. row.ident end\n"
                "eq(table.concat(got, ' '), 'a-b=ix_a_b a_b=ix_a_b_2 docs=ix_docs Ünï=ix___n__')\n"
                "db:close()\n"
                "local x, e = fts.open(path, '')\n"
                "eq(x, nil); eq(e, 'index name is empty')\n"
                "x, e = fts.open(path, string.rep('n', 256))\n"
                "eq(x, nil); eq(e, 'index name is too long')\n"
                "x, e = fts.open('/nonexistent-dir/f.db', 'a')\n"
                "eq(x, nil); eq(e, 'unable to open database file')\n"
                "x, e = fts.list('/nonexistent-dir/f.db')\n"
                "eq(x, nil); eq(e, 'unable to open database file')\n"
                "local empty = os.tmpname()\n"
                "eq(#fts.list(empty), 0)\n"
                "os.remove(empty)\n"
                "local ok, err = pcall(fts.open, path)\n"
                "assert(not ok and err:find('bad argument #2', 1, true), err)\n"
                "cleanup()\n");

    sl_test_lua("batches_and_ids", PRELUDE
                "local sqlite = require 'sluice.sqlite'\n"
                "for i = 1, 1500 do assert(idx:put({_id = 'k' .. i, body = 'word' .. i})) end\n"
                /* another connection sees only what was committed: 1,000 */
                "local other = assert(sqlite.open(path, {readonly = true}))\n"
                "local function committed() return other:one('SELECT count(*) AS n FROM ix_docs_docs').n end\n"
                "eq(committed(), 1000)\n"
                "eq(idx:count(), 1500)\n"
                "eq(idx:flush(), true)\n"
                "eq(committed(), 1500)\n"
                "eq(idx:flush(), true)\n"
                /* ids stream in insertion order; breaking early is fine */
                "local n, first = 0\n"
                "for id in idx:ids() do n = n + 1; first = first or id end\n"
                "eq(n, 1500); eq(first, 'k1')\n"
                "for id in idx:ids() do if id == 'k10' then break end end\n"
                "assert(idx:delete('k1'))\n"
                "eq(idx:count(), 1499)\n"
                /* an iterator ends when its index closes */
                "local it = idx:ids()\n"
                "eq(it(), 'k2')\n"
                "eq(idx:close(), true)\n"
                "eq(committed(), 1499, 'close commits')\n"
                "eq(it(), nil)\n"
                "local ok, e = pcall(idx.ids, idx)\n"
                "assert(not ok and e:find('index is closed', 1, true), e)\n"
                /* gc commits what close did not */
                "local idx2 = assert(fts.open(path, 'docs'))\n"
                "assert(idx2:put({_id = 'late', body = 'late'}))\n"
                "idx2 = nil; collectgarbage(); collectgarbage()\n"
                "eq(committed(), 1500, 'gc commits')\n"
                "other:close(); cleanup()\n");
}

static void bench(void)
{
    const char *env = getenv("SLUICE_FTS_BENCH_N");
    int n = env ? atoi(env) : 100000;
    char chunk[4096];
    snprintf(chunk, sizeof chunk, PRELUDE
             "local task = require 'sluice.task'\n"
             "local N = %d\n"
             "local words = {'river', 'stone', 'cloud', 'amber', 'delta', 'ember', 'frost',\n"
             "  'grove', 'harbor', 'island', 'jasper', 'kelp', 'lumen', 'meadow', 'nectar'}\n"
             "local t0 = task.now()\n"
             "for i = 1, N do\n"
             "  local a, b = words[i %% 15 + 1], words[(i * 7) %% 15 + 1]\n"
             "  assert(idx:put({_id = 'doc-' .. i, title = a .. ' report ' .. i,\n"
             "    body = 'The ' .. a .. ' met the ' .. b .. ' near item ' .. i .. '.',\n"
             "    tags = {b, 'tag' .. (i %% 100)}, n = i}))\n"
             "end\n"
             "assert(idx:flush())\n"
             "local t1 = task.now()\n"
             "eq(idx:count(), N)\n"
             "local r = assert(idx:search('river report'))\n"
             "local t2 = task.now()\n"
             "local r2 = assert(idx:search('item ' .. (N - 1)))\n"
             "local t3 = task.now()\n"
             "eq(r2.hits[1].id, 'doc-' .. (N - 1))\n"
             "assert(r.total > 0 and #r.hits == 10)\n"
             "print(string.format('fts bench: %%d puts %%.2f s (%%.0f docs/s), '\n"
             "  .. 'search common %%.1f ms (%%d hits), search rare %%.1f ms',\n"
             "  N, t1 - t0, N / (t1 - t0), (t2 - t1) * 1000, r.total, (t3 - t2) * 1000))\n"
             "idx:close(); cleanup()\n",
             n);
    sl_test_lua("bench_100k", chunk);
}

int main(void)
{
    run_all();
    run_all();
    bench();
    return sl_test_done("fts");
}
