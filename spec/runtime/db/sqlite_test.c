/* sluice.sqlite: types both ways, parameters, the statement cache, row
 * iterators (streaming, early break, nesting, errors), misuse that raises,
 * runtime failures that return nil, err, readonly and busy connections. */
#include "harness.h"

#include <stdlib.h>

/* Every chunk starts with a fresh database file in `path`. */
#define PRELUDE                                                                  \
    "local sqlite = require 'sluice.sqlite'\n"                                 \
    "local path = os.tmpname(); os.remove(path)\n"                             \
    "local db = assert(sqlite.open(path))\n"                                   \
    "local function raises(f, pat) local ok, e = pcall(f); assert(not ok, 'did not raise');" \
    " assert(tostring(e):find(pat, 1, true), e) end\n"

static void run_all(void)
{
    sl_test_lua("open_pragmas", PRELUDE
                "assert(db:one('PRAGMA journal_mode').journal_mode == 'wal')\n"
                "assert(db:one('PRAGMA synchronous').synchronous == 1)\n"
                "assert(db:one('PRAGMA busy_timeout').timeout == 5000)\n"
                "db:close()\n"
                "local db2 = assert(sqlite.open(path, {busy_timeout_ms = 250}))\n"
                "assert(db2:one('PRAGMA busy_timeout').timeout == 250)\n"
                "assert(tostring(db2) == 'sluice.sqlite.db (open)')\n"
                "db2:close()\n"
                "assert(tostring(db2) == 'sluice.sqlite.db (closed)')\n"
                "assert(type(sqlite.version) == 'string' and sqlite.version:match('^3%.'))\n"
                "os.remove(path); os.remove(path .. '-wal'); os.remove(path .. '-shm')\n");

    sl_test_lua("types_roundtrip", PRELUDE
                "assert(db:exec('CREATE TABLE t(k INTEGER PRIMARY KEY, v)') == true)\n"
                "local vals = {true, false, 0, -1, 2^53, -2^53, 1.5, -0.25, 'text', '',\n"
                "  'a\\0b', '\\255\\254', 2^63, 1e300}\n"
                "for i, v in ipairs(vals) do assert(db:run('INSERT INTO t VALUES(?, ?)', i, v) == 1) end\n"
                "assert(db:run('INSERT INTO t VALUES(?, ?)', 100, nil) == 1)\n"
                "local want_type = {'integer','integer','integer','integer','integer','integer',\n"
                "  'real','real','text','text','text','text','real','real'}\n"
                "for i, v in ipairs(vals) do\n"
                "  local r = db:one('SELECT v, typeof(v) AS t FROM t WHERE k = ?', i)\n"
                "  assert(r.t == want_type[i], i .. ' ' .. r.t)\n"
                "  local expect = v == true and 1 or v == false and 0 or v\n"
                "  assert(r.v == expect, i)\n"
                "end\n"
                "local r = db:one('SELECT v, typeof(v) AS t FROM t WHERE k = 100')\n"
                "assert(r.v == nil and r.t == 'null')\n"
                "local b = db:one(\"SELECT x'00ff41' AS b, typeof(x'00') AS t\")\n"
                "assert(b.b == '\\0\\255A' and b.t == 'blob')\n"
                "assert(db:one('SELECT 9007199254740993 AS n').n == 2^53)\n"
                "assert(db:last_insert_rowid() == 100)\n"
                "assert(db:run('UPDATE t SET v = 0 WHERE k <= 3') == 3)\n"
                "assert(db:changes() == 3)\n"
                "assert(db:one('SELECT 1 AS a WHERE 0') == nil)\n"
                "db:close()\n");

    sl_test_lua("params", PRELUDE
                "db:exec('CREATE TABLE p(a, b, c)')\n"
                /* missing trailing parameters bind NULL */
                "assert(db:run('INSERT INTO p VALUES(?, ?, ?)', 1) == 1)\n"
                "local r = db:one('SELECT * FROM p')\n"
                "assert(r.a == 1 and r.b == nil and r.c == nil)\n"
                "assert(db:one('SELECT ?2 AS x, ?1 AS y', 'one', 'two').x == 'two')\n"
                "raises(function() db:run('INSERT INTO p(a) VALUES(?)', 1, 2) end,\n"
                "  'too many parameters')\n"
                /* method calls number arguments after self */
                "raises(function() db:run('SELECT ?', {}) end, \"bad argument #2 to 'run'\")\n"
                "raises(function() db:one('SELECT ?', print) end, \"bad argument #2 to 'one'\")\n"
                "raises(function() db:run(nil) end, \"bad argument #1 to 'run'\")\n"
                "raises(function() sqlite.open(path, {busy_timeout_ms = -1}) end, 'bad argument #2')\n"
                "raises(function() sqlite.open() end, 'bad argument #1')\n"
                "raises(function() db.run({}, 'SELECT 1') end, 'sluice.sqlite.db expected')\n"
                /* the cache still works after a raise */
                "assert(db:run('INSERT INTO p(a) VALUES(?)', 'ok') == 1)\n"
                "db:close()\n");

    sl_test_lua("errors", PRELUDE
                "db:exec('CREATE TABLE u(x UNIQUE NOT NULL)')\n"
                "local ok, err = db:exec('CREATE TABLE u(x)')\n"
                "assert(ok == nil and err == 'table u already exists', err)\n"
                "local n, e = db:run('INSERT INTO nope VALUES(1)')\n"
                "assert(n == nil and e == 'no such table: nope', e)\n"
                "assert(db:run('INSERT INTO u VALUES(1)') == 1)\n"
                "n, e = db:run('INSERT INTO u VALUES(1)')\n"
                "assert(n == nil and e == 'UNIQUE constraint failed: u.x', e)\n"
                "n, e = db:run('INSERT INTO u VALUES(?)', nil)\n"
                "assert(n == nil and e == 'NOT NULL constraint failed: u.x', e)\n"
                "local r, e2 = db:one('SELEC 1')\n"
                "assert(r == nil and e2 == 'near \"SELEC\": syntax error', e2)\n"
                "n, e = db:run('  -- only a comment')\n"
                "assert(n == nil and e == 'no sql statement', e)\n"
                "n, e = db:run('INSERT INTO u VALUES(7); DELETE FROM u')\n"
                "assert(n == nil and e == 'more than one sql statement (use db:exec)', e)\n"
                "assert(db:one('SELECT count(*) AS n FROM u').n == 1)\n"
                "assert(db:run('INSERT INTO u VALUES(2);  ') == 1)\n"
                "raises(function() for _ in db:rows('SELEC') do end end, 'syntax error')\n"
                /* a runtime error while stepping raises from the iterator */
                "local got = {}\n"
                "raises(function() for r in db:rows('SELECT CASE WHEN x = 2 THEN '\n"
                "  .. 'abs(-9223372036854775807 - 1) ELSE x END AS v FROM u ORDER BY x') do\n"
                "  got[#got + 1] = r.v end end, 'integer overflow')\n"
                "assert(#got == 1 and got[1] == 1)\n"
                "db:close()\n"
                "raises(function() db:one('SELECT 1') end, 'database is closed')\n"
                "assert(db:close() == true)\n"
                "local bad, msg = sqlite.open('/nonexistent-dir/x.db')\n"
                "assert(bad == nil and msg == 'unable to open database file', msg)\n");

    sl_test_lua("rows_streaming", PRELUDE
                "db:exec('CREATE TABLE r(i INTEGER, s TEXT)')\n"
                "db:exec('BEGIN')\n"
                "for i = 1, 1000 do db:run('INSERT INTO r VALUES(?, ?)', i, 'row' .. i) end\n"
                "db:exec('COMMIT')\n"
                "local sum, n = 0, 0\n"
                "for row in db:rows('SELECT i, s FROM r WHERE i > ? ORDER BY i', 500) do\n"
                "  n = n + 1; sum = sum + row.i\n"
                "  assert(row.s == 'row' .. row.i)\n"
                "end\n"
                "assert(n == 500 and sum == (501 + 1000) * 250)\n"
                /* bound strings outlive the call that bound them */
                "local it = db:rows('SELECT s FROM r WHERE s = ?', ('row' .. 7))\n"
                "collectgarbage(); collectgarbage()\n"
                "assert(it().s == 'row7' and it() == nil and it() == nil)\n"
                /* break early, then the same SQL again and a write meanwhile */
                "local q = 'SELECT i FROM r ORDER BY i'\n"
                "for row in db:rows(q) do if row.i == 3 then break end end\n"
                "local seen = 0\n"
                "for row in db:rows(q) do seen = seen + 1 end\n"
                "assert(seen == 1000)\n"
                "assert(db:run('DELETE FROM r WHERE i > 10') == 990)\n"
                /* nested iterators over the same SQL get separate statements */
                "local pairs_ = 0\n"
                "for a in db:rows(q) do for b in db:rows(q) do pairs_ = pairs_ + 1 end end\n"
                "assert(pairs_ == 100)\n"
                "assert(db:one(q).i == 1)\n"
                /* close while an iterator is suspended: it raises afterwards */
                "local it2 = db:rows(q)\n"
                "assert(it2().i == 1)\n"
                "db:close()\n"
                "raises(function() it2() end, 'database is closed')\n"
                "collectgarbage()\n");

    sl_test_lua("statement_cache", PRELUDE
                "db:exec('CREATE TABLE c(v)')\n"
                /* more distinct SQL strings than the cache holds */
                "for i = 1, 200 do assert(db:run('INSERT INTO c VALUES(' .. i .. ')') == 1) end\n"
                "local holders = {}\n"
                "for i = 1, 70 do holders[i] = db:rows('SELECT v FROM c WHERE v = ' .. i) end\n"
                "for i = 1, 70 do assert(holders[i]().v == i) end\n"
                "for i = 1, 200 do assert(db:run('INSERT INTO c VALUES(?)', i) == 1) end\n"
                "assert(db:one('SELECT count(*) AS n FROM c').n == 400)\n"
                "for i = 1, 70 do assert(holders[i]().v == i) ; assert(holders[i]() == nil) end\n"
                "db:close()\n");

    sl_test_lua("readonly_and_busy", PRELUDE
                "db:exec('CREATE TABLE b(v)')\n"
                "db:run('INSERT INTO b VALUES(1)')\n"
                "local ro = assert(sqlite.open(path, {readonly = true}))\n"
                "assert(ro:one('SELECT v FROM b').v == 1)\n"
                "local n, e = ro:run('INSERT INTO b VALUES(2)')\n"
                "assert(n == nil and e == 'attempt to write a readonly database', e)\n"
                "ro:close()\n"
                "local other = assert(sqlite.open(path, {busy_timeout_ms = 50}))\n"
                "assert(db:exec('BEGIN IMMEDIATE'))\n"
                "local task = require 'sluice.task'\n"
                "local t0 = task.now()\n"
                "n, e = other:run('INSERT INTO b VALUES(3)')\n"
                "assert(n == nil and e == 'database is locked', e)\n"
                "assert(task.now() - t0 >= 0.04)\n"
                /* WAL: the reader sees the last commit while a writer holds the lock */
                "assert(other:one('SELECT count(*) AS n FROM b').n == 1)\n"
                "assert(db:exec('COMMIT'))\n"
                "assert(other:run('INSERT INTO b VALUES(3)') == 1)\n"
                "other:close(); db:close()\n"
                "local missing = path .. '.missing'\n"
                "local r, e2 = sqlite.open(missing, {readonly = true})\n"
                "assert(r == nil and e2 == 'unable to open database file', e2)\n"
                "os.remove(path); os.remove(path .. '-wal'); os.remove(path .. '-shm')\n");

    sl_test_lua("gc_closes", PRELUDE
                "db:exec('CREATE TABLE g(v)')\n"
                "local it = db:rows('SELECT 1 AS one')\n"
                "db = nil; it = nil\n"
                "collectgarbage(); collectgarbage()\n"
                "local again = assert(sqlite.open(path))\n"
                "assert(again:run('INSERT INTO g VALUES(1)') == 1)\n"
                "again:close()\n");
}

int main(void)
{
    /* twice, to catch state leaking between runs */
    run_all();
    run_all();
    return sl_test_done("sqlite");
}
