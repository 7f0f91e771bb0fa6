/* sluice.sink.es with no network (offline mode, the formatter hook): the
 * exact bulk bodies, and every decision on an answer — item by item (201,
 * 429, 400, 409, delete 404), whole-request 429/503/400/401/413, HTML
 * bodies, dropped connections, malformed answers, retry exhaustion — plus
 * the byte cap, backpressure and misuse. Each case runs twice. */
#include "harness.h"

#define PRELUDE                                                                    \
    "local es = require 'sluice.sink.es'\n"                                      \
    "local task = require 'sluice.task'\n"                                       \
    "local json = require 'sluice.json'\n"                                       \
    "local function eq(got, want, what)\n"                                       \
    "  if got ~= want then error((what or '') .. ': expected ' .. "              \
    "string.format('%q', tostring(want)) .. ', got ' .. "                        \
    "string.format('%q', tostring(got)), 2) end\n"                               \
    "end\n"                                                                      \
    "local function client(o)\n"                                                 \
    "  o = o or {}\n"                                                            \
    "  o.url = o.url or 'http://127.0.0.1:1'; o.index = o.index or 'idx'\n"     \
    "  o.offline = true\n"                                                       \
    "  o.retry_initial = o.retry_initial or 0.001; o.retry_max = o.retry_max or 0.002\n" \
    "  return es.client(o)\n"                                                    \
    "end\n"                                                                      \
    "local function flusher(c) return task.spawn(function() return c:flush() end) end\n" \
    "local function wait_pending(c, n)\n"                                        \
    "  for _ = 1, 500 do local p = c:pending(); if #p >= n then return p end; task.sleep(0.002) end\n" \
    "  error('never got ' .. n .. ' pending requests', 2)\n"                     \
    "end\n"                                                                      \
    /* ids of the actions in a body, in order */                                 \
    "local function ids(body)\n"                                                 \
    "  local out = {}\n"                                                         \
    "  for op, id in body:gmatch('{\"(%a+)\":{\"_id\":\"([^\"]*)\"}}') do out[#out + 1] = id end\n" \
    "  return table.concat(out, ',')\n"                                          \
    "end\n"                                                                      \
    /* answer{201, {429, type, reason}, ...}: a bulk answer in request order */  \
    "local function answer(list, op)\n"                                          \
    "  local items, errors = {}, false\n"                                        \
    "  for i, s in ipairs(list) do\n"                                            \
    "    local r = {status = type(s) == 'table' and s[1] or s}\n"               \
    "    if type(s) == 'table' then r.error = {type = s[2], reason = s[3]} end\n" \
    "    if r.status >= 300 then errors = true end\n"                            \
    "    items[i] = {[op or 'index'] = r}\n"                                     \
    "  end\n"                                                                    \
    "  return json.encode({took = 3, errors = errors, items = items})\n"         \
    "end\n"                                                                      \
    "local function doc(id, body) return {_id = id, body = body or ('text of ' .. id)} end\n"

static void run_all(void)
{
    /* The exact NDJSON: raw ids in action lines (escaped once), the hash in
     * the source, _id out of it, sorted keys, a newline after every line;
     * the caller's table is left as it was. */
    sl_test_lua("body", PRELUDE
                "local c = client()\n"
                "local d = {_id = 'a', title = 'T \"q\"', n = 1, tags = {'x', 'y'}}\n"
                "assert(c:put(d, 'h1'))\n"
                "eq(d._id, 'a', 'id restored'); eq(d._sluice_hash, nil, 'hash removed')\n"
                "assert(c:put({_id = 'ü/é?', empty = {}}))\n"
                "assert(c:delete('q\"\\n'))\n"
                "local f = flusher(c)\n"
                "local p = wait_pending(c, 1)\n"
                "eq(#p, 1)\n"
                "eq(p[1].body, '{\"index\":{\"_id\":\"a\"}}\\n'\n"
                "  .. '{\"_sluice_hash\":\"h1\",\"n\":1,\"tags\":[\"x\",\"y\"],\"title\":\"T \\\\\"q\\\\\"\"}\\n'\n"
                "  .. '{\"index\":{\"_id\":\"ü/é?\"}}\\n{\"empty\":{}}\\n'\n"
                "  .. '{\"delete\":{\"_id\":\"q\\\\\"\\\\n\"}}\\n')\n"
                "assert(c:respond(p[1].seq, 200, answer({201, 200, 200})))\n"
                "local ok, fails = f:join()\n"
                "eq(#fails, 0)\n"
                "local st = c:stats()\n"
                "eq(st.indexed, 2); eq(st.deleted, 1); eq(st.requests, 1)\n"
                "local cr = client({op_type = 'create', hash_field = 'h'})\n"
                "assert(cr:put({_id = '1', x = true}, 'z'))\n"
                "local f2 = flusher(cr)\n"
                "eq(wait_pending(cr, 1)[1].body, '{\"create\":{\"_id\":\"1\"}}\\n{\"h\":\"z\",\"x\":true}\\n')\n"
                "cr:close(); f2:join()\n"
                "c:close()\n");

    /* The example: 201, 429, 400 -> the second request carries only
     * the 429 document; indexed 2, failed 1, with the server's reason. */
    sl_test_lua("items_201_429_400", PRELUDE
                "local c = client()\n"
                "for _, id in ipairs({'a', 'b', 'c'}) do assert(c:put(doc(id), 'h')) end\n"
                "local f = flusher(c)\n"
                "local p = wait_pending(c, 1)\n"
                "eq(ids(p[1].body), 'a,b,c')\n"
                "c:respond(p[1].seq, 200, answer({201, {429, 'es_rejected_execution_exception', 'rejected execution of coordinating operation'},\n"
                "  {400, 'mapper_parsing_exception', 'failed to parse field [n] of type [long]'}}))\n"
                "p = wait_pending(c, 1)\n"
                "eq(#p, 1); eq(ids(p[1].body), 'b')\n"
                "eq(p[1].body, '{\"index\":{\"_id\":\"b\"}}\\n{\"_sluice_hash\":\"h\",\"body\":\"text of b\"}\\n')\n"
                "c:respond(p[1].seq, 200, answer({201}))\n"
                "local _, fails = f:join()\n"
                "eq(#fails, 1); eq(fails[1].id, 'c')\n"
                "eq(fails[1].reason, '400 mapper_parsing_exception: failed to parse field [n] of type [long]')\n"
                "local st = c:stats()\n"
                "eq(st.indexed, 2); eq(st.failed, 1); eq(st.retried_items, 1); eq(st.requests, 2)\n"
                "local logs = c:logs()\n"
                "local errs = {}\n"
                "for _, l in ipairs(logs) do if l.level == 'error' then errs[#errs + 1] = l end end\n"
                "eq(#errs, 1); eq(errs[1].id, 'c')\n"
                "eq(errs[1].message, 'document not written: 400 mapper_parsing_exception: failed to parse field [n] of type [long]')\n"
                "eq(#c:logs(), 0, 'logs drained')\n"
                "c:close()\n");

    /* An item rejected on every try fails after max_retries. */
    sl_test_lua("item_gives_up", PRELUDE
                "local c = client({max_retries = 1})\n"
                "assert(c:put(doc('a')))\n"
                "local f = flusher(c)\n"
                "local rej = {429, 'es_rejected_execution_exception', 'queue full'}\n"
                "c:respond(wait_pending(c, 1)[1].seq, 200, answer({rej}))\n"
                "local p = wait_pending(c, 1)\n"
                "c:respond(p[1].seq, 200, answer({rej}))\n"
                "local _, fails = f:join()\n"
                "eq(#fails, 1)\n"
                "eq(fails[1].reason, 'gave up after 2 attempts: 429 es_rejected_execution_exception: queue full')\n"
                "eq(c:stats().requests, 2)\n"
                "c:close()\n");

    /* 409 per on_conflict; a delete's 404 means already gone. */
    sl_test_lua("conflicts_and_deletes", PRELUDE
                "local conflict = {409, 'version_conflict_engine_exception', '[a]: version conflict'}\n"
                "for _, mode in ipairs({'ignore', 'fail', 'retry'}) do\n"
                "  local c = client({on_conflict = mode})\n"
                "  assert(c:put(doc('a'))); assert(c:delete('gone'))\n"
                "  local f = flusher(c)\n"
                "  local p = wait_pending(c, 1)\n"
                "  c:respond(p[1].seq, 200, json.encode({errors = true, items = {{index = {status = 409,\n"
                "    error = {type = conflict[2], reason = conflict[3]}}}, {delete = {status = 404}}}}))\n"
                "  if mode == 'retry' then\n"
                "    p = wait_pending(c, 1); eq(ids(p[1].body), 'a')\n"
                "    c:respond(p[1].seq, 200, answer({200}))\n"
                "  end\n"
                "  local _, fails = f:join()\n"
                "  local st = c:stats()\n"
                "  eq(st.deleted, 1, mode)\n"
                "  if mode == 'fail' then\n"
                "    eq(#fails, 1); eq(fails[1].reason, '409 version_conflict_engine_exception: [a]: version conflict')\n"
                "    eq(st.indexed, 0)\n"
                "  else\n"
                "    eq(#fails, 0, mode); eq(st.indexed, 1, mode)\n"
                "  end\n"
                "  c:close()\n"
                "end\n");

    /* A document over the byte cap goes alone; the batch before it goes
     * without it; batches never pass the cap otherwise. */
    sl_test_lua("byte_cap", PRELUDE
                "local c = client({max_bytes = 200, concurrency = 8})\n"
                "assert(c:put(doc('a'))); assert(c:put(doc('b')))\n"
                "eq(#c:pending(), 0, 'under the cap: nothing sent')\n"
                "assert(c:put(doc('big', string.rep('x', 500))))\n"
                "local p = c:pending()\n"
                "eq(#p, 2); eq(ids(p[1].body), 'a,b'); eq(ids(p[2].body), 'big')\n"
                "assert(#p[1].body <= 200, 'first batch under the cap'); eq(#p[2].body, 536)\n"
                "assert(c:put(doc('c')))\n"
                "local f = flusher(c)\n"
                "p = wait_pending(c, 3)\n"
                "eq(ids(p[3].body), 'c')\n"
                "c:respond(p[1].seq, 200, answer({201, 201}))\n"
                "c:respond(p[2].seq, 200, answer({201}))\n"
                "c:respond(p[3].seq, 200, answer({201}))\n"
                "local _, fails = f:join()\n"
                "eq(#fails, 0); eq(c:stats().indexed, 4)\n"
                "local m = client({max_actions = 2, concurrency = 8})\n"
                "for _, id in ipairs({'1', '2', '3', '4', '5'}) do assert(m:put(doc(id))) end\n"
                "p = m:pending(); eq(#p, 2); eq(ids(p[1].body), '1,2'); eq(ids(p[2].body), '3,4')\n"
                "m:close(); c:close()\n");

    /* 413 (an nginx HTML page) splits the batch; one document alone that is
     * still too large fails alone, with a clear reason. */
    sl_test_lua("split_413", PRELUDE
                "local html = '<html>\\r\\n<head><title>413 Request Entity Too Large</title></head>\\r\\n'\n"
                "  .. '<body>\\r\\n<center><h1>413 Request Entity Too Large</h1></center>\\r\\n<hr><center>nginx</center>\\r\\n</body>\\r\\n</html>\\r\\n'\n"
                "local c = client({concurrency = 8})\n"
                "for _, id in ipairs({'a', 'b', 'c', 'd'}) do assert(c:put(doc(id))) end\n"
                "local f = flusher(c)\n"
                "local p = wait_pending(c, 1)\n"
                "c:respond(p[1].seq, 413, html)\n"
                "p = c:pending(); eq(#p, 2); eq(ids(p[1].body), 'a,b'); eq(ids(p[2].body), 'c,d')\n"
                "c:respond(p[2].seq, 200, answer({201, 201}))\n"
                "c:respond(p[1].seq, 413, html)\n"
                "p = c:pending(); eq(#p, 2); eq(ids(p[1].body), 'a'); eq(ids(p[2].body), 'b')\n"
                "c:respond(p[1].seq, 413, html)\n"
                "c:respond(p[2].seq, 201, answer({201}))\n"
                "local _, fails = f:join()\n"
                "eq(#fails, 1); eq(fails[1].id, 'a')\n"
                "eq(fails[1].reason, 'document too large for the server (43 bytes): HTTP 413 with a non-JSON body: '\n"
                "  .. '413 Request Entity Too Large 413 Request Entity Too Large nginx')\n"
                "local st = c:stats(); eq(st.splits, 2); eq(st.indexed, 3); eq(st.failed, 1)\n"
                "c:close()\n");

    /* Whole-request 429, 503 and a dropped connection are sent again, the
     * same bytes; a 400 is not, and is logged at error level. */
    sl_test_lua("whole_request", PRELUDE
                "local c = client()\n"
                "assert(c:put(doc('a'))); assert(c:put(doc('b')))\n"
                "local f = flusher(c)\n"
                "local p = wait_pending(c, 1)\n"
                "local first = p[1].body\n"
                "c:respond(p[1].seq, 429, json.encode({error = {type = 'es_rejected_execution_exception', reason = 'busy'}, status = 429}))\n"
                "p = wait_pending(c, 1); eq(p[1].body, first)\n"
                "c:respond(p[1].seq, 503, '<html><body>Service Unavailable</body></html>')\n"
                "p = wait_pending(c, 1); eq(p[1].body, first)\n"
                "c:respond(p[1].seq, 0, '', 'connection closed')\n"
                "p = wait_pending(c, 1); eq(p[1].body, first)\n"
                "c:respond(p[1].seq, 200, 'not json at all')\n"
                "p = wait_pending(c, 1); eq(p[1].body, first, 'malformed answer: sent again')\n"
                "c:respond(p[1].seq, 200, answer({201}))\n"
                "p = wait_pending(c, 1); eq(p[1].body, first, 'wrong item count: sent again')\n"
                "c:respond(p[1].seq, 200, answer({201, 201}))\n"
                "local _, fails = f:join()\n"
                "eq(#fails, 0)\n"
                "local st = c:stats(); eq(st.retried_requests, 5); eq(st.requests, 6); eq(st.indexed, 2)\n"
                "local warns = 0\n"
                "for _, l in ipairs(c:logs()) do if l.level == 'warn' then warns = warns + 1 end end\n"
                "eq(warns, 5)\n"
                "assert(c:put(doc('x')))\n"
                "f = flusher(c)\n"
                "p = wait_pending(c, 1)\n"
                "c:respond(p[1].seq, 400, json.encode({error = {type = 'illegal_argument_exception',\n"
                "  reason = 'pipeline with id [nope] does not exist'}, status = 400}))\n"
                "_, fails = f:join()\n"
                "eq(#c:pending(), 0, 'not retried')\n"
                "eq(#fails, 1)\n"
                "eq(fails[1].reason, 'bulk request rejected: HTTP 400: illegal_argument_exception: pipeline with id [nope] does not exist')\n"
                "local logs = c:logs()\n"
                "eq(logs[1].level, 'error')\n"
                "eq(logs[1].message, 'bulk request of 1 actions rejected, not retried: HTTP 400: illegal_argument_exception: '\n"
                "  .. 'pipeline with id [nope] does not exist')\n"
                "c:close()\n");

    /* Out of retries, or refused credentials: the sink fails as a whole and
     * says so from then on. */
    sl_test_lua("sink_fails", PRELUDE
                "local c = client({max_retries = 1})\n"
                "assert(c:put(doc('a')))\n"
                "local f = flusher(c)\n"
                "c:respond(wait_pending(c, 1)[1].seq, 0, '', 'connection refused')\n"
                "c:respond(wait_pending(c, 1)[1].seq, 0, '', 'connection refused')\n"
                "local ok, res, err = f:join()\n"
                "eq(ok, true); eq(res, nil)\n"
                "eq(err, 'bulk request failed after 2 attempts: connection refused')\n"
                "eq(c:failed(), err)\n"
                "local r2, e2 = c:put(doc('b')); eq(r2, nil); eq(e2, err)\n"
                "r2, e2 = c:flush(); eq(r2, nil); eq(e2, err)\n"
                "c:close()\n"
                "c = client()\n"
                "assert(c:put(doc('a')))\n"
                "f = flusher(c)\n"
                "c:respond(wait_pending(c, 1)[1].seq, 401, json.encode({error = {type = 'security_exception',\n"
                "  reason = 'unable to authenticate with provided credentials'}, status = 401}))\n"
                "ok, res, err = f:join()\n"
                "eq(err, 'the cluster refused the credentials: HTTP 401: security_exception: unable to authenticate with provided credentials')\n"
                "c:close()\n");

    /* All slots busy and a full batch waiting: put yields until an answer
     * frees a slot. */
    sl_test_lua("backpressure", PRELUDE
                "local c = client({max_actions = 1, concurrency = 1})\n"
                "assert(c:put(doc('a')))\n"
                "eq(#c:pending(), 1)\n"
                "local done = false\n"
                "local t = task.spawn(function() assert(c:put(doc('b'))); done = true end)\n"
                "task.sleep(0.02)\n"
                "eq(done, false, 'put waits for a slot'); eq(c:stats().ready, 1)\n"
                "c:respond(c:pending()[1].seq, 200, answer({201}))\n"
                "t:join()\n"
                "eq(done, true)\n"
                "local p = c:pending(); eq(#p, 1); eq(ids(p[1].body), 'b')\n"
                /* a waiting put is told when the client closes under it */
                "c:respond(p[1].seq, 200, answer({201}))\n"
                "assert(c:put(doc('c')) == true)\n"
                "local r = {}\n"
                "t = task.spawn(function() r = {c:put(doc('d'))} end)\n"
                "task.sleep(0.01)\n"
                "c:close()\n"
                "t:join()\n"
                "eq(r[1], nil); eq(r[2], 'elasticsearch client closed')\n");

    /* Misuse raises; an unencodable document is refused alone. */
    sl_test_lua("misuse", PRELUDE
                "local function raises(f, pat)\n"
                "  local ok, e = pcall(f)\n"
                "  assert(not ok and tostring(e):find(pat, 1, true), tostring(e))\n"
                "end\n"
                "raises(function() es.client({index = 'x'}) end, 'opts.url')\n"
                "raises(function() es.client({url = 'ftp://x', index = 'x'}) end, 'opts.url')\n"
                "raises(function() es.client({url = 'http://x'}) end, 'opts.index')\n"
                "raises(function() es.client({url = 'http://x', index = 'i', bogus = 1}) end, \"unknown option 'bogus'\")\n"
                "raises(function() es.client({url = 'http://x', index = 'i', fingerprint = 'abc'}) end, 'opts.fingerprint')\n"
                "raises(function() es.client({url = 'http://x', index = 'i', on_conflict = 'maybe'}) end, \"unknown value 'maybe'\")\n"
                "raises(function() es.client({url = 'http://x', index = 'i', concurrency = 0}) end, 'opts.concurrency')\n"
                "local c = client()\n"
                "raises(function() c:put({_id = 5}) end, 'doc._id must be a string')\n"
                "raises(function() c:put('x') end, 'table expected')\n"
                "raises(function() c:request('get', '/') end, 'HTTP method')\n"
                "local cyc = {_id = 'cyc'}; cyc.self = cyc\n"
                "local r, e = c:put(cyc)\n"
                "eq(r, nil); eq(e, 'cannot encode document: nesting too deep')\n"
                "eq(cyc._id, 'cyc', 'id restored after a failure')\n"
                "r, e = c:put({_id = 'nan', x = 0/0})\n"
                "eq(r, nil)\n"
                "eq(c:stats().buffered, 0, 'nothing queued')\n"
                "eq(select(2, c:respond(99, 200, '')), 'no such request')\n"
                "local r2, e2 = c:request('GET', '/')\n"
                "eq(r2, nil); eq(e2, 'offline')\n"
                "c:close(); c:close()\n"
                "raises(function() c:put(doc('a')) end, 'elasticsearch client is closed')\n");
}

int main(void)
{
    run_all();
    run_all();
    return sl_test_done("es");
}
