/* sluice.sink.ndjson: the exact bytes written for documents and deletes,
 * buffering (nothing on disk before flush, everything after), truncate vs
 * append, bad documents that write nothing, misuse, and write errors. */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define PRELUDE                                                                  \
    "local nd = require 'sluice.sink.ndjson'\n"                                \
    "local path = os.tmpname()\n"                                              \
    "local function slurp() local f = assert(io.open(path, 'rb')); "          \
    "local s = f:read('*a'); f:close(); return s end\n"                        \
    "local function eq(got, want, what)\n"                                     \
    "  if got ~= want then error((what or '') .. ': expected ' .. "            \
    "string.format('%q', tostring(want)) .. ', got ' .. "                      \
    "string.format('%q', tostring(got)), 2) end\n"                             \
    "end\n"

static void run_all(void)
{
    sl_test_lua("lines", PRELUDE
                "local w = assert(nd.open(path))\n"
                "eq(w:put({_id = 'a', title = 'Hello \"world\"', n = 1, tags = {'x', 'y'}}), true)\n"
                "eq(w:put({_id = 'b', body = 'line1\\nline2\\t\\0', empty = {}, f = 2.5}), true)\n"
                "eq(w:delete('a'), true)\n"
                "eq(w:delete('q\"\\n'), true)\n"
                "eq(w:put({_id = 'e', emoji = '🚀', bad = 'x\\255y', null = require('cjson').null,\n"
                "  fn = print}), true)\n"
                "eq(w:count(), 5)\n"
                "eq(slurp(), '', 'buffered until flush')\n"
                "eq(w:flush(), true)\n"
                "eq(slurp(),\n"
                "  '{\"_id\":\"a\",\"n\":1,\"tags\":[\"x\",\"y\"],\"title\":\"Hello \\\\\"world\\\\\"\"}\\n'\n"
                "  .. '{\"_id\":\"b\",\"body\":\"line1\\\\nline2\\\\t\\\\u0000\",\"empty\":{},\"f\":2.5}\\n'\n"
                "  .. '{\"_id\":\"a\",\"_op\":\"delete\"}\\n'\n"
                "  .. '{\"_id\":\"q\\\\\"\\\\n\",\"_op\":\"delete\"}\\n'\n"
                "  .. '{\"_id\":\"e\",\"bad\":\"x\\239\\191\\189y\",\"emoji\":\"🚀\",\"null\":null}\\n')\n"
                /* every line parses back */
                "local cjson = require 'cjson'\n"
                "local n = 0\n"
                "for line in slurp():gmatch('[^\\n]+') do n = n + 1; assert(cjson.decode(line)) end\n"
                "eq(n, 5)\n"
                "eq(w:close(), true)\n"
                "eq(w:close(), true)\n"
                "eq(w:count(), 5)\n"
                "local ok, e = pcall(w.put, w, {})\n"
                "assert(not ok and e:find('ndjson writer is closed', 1, true), e)\n"
                "os.remove(path)\n");

    sl_test_lua("truncate_append", PRELUDE
                "local w = assert(nd.open(path)); w:put({_id = '1'}); w:close()\n"
                "w = assert(nd.open(path, {append = true})); w:put({_id = '2'}); w:close()\n"
                "eq(slurp(), '{\"_id\":\"1\"}\\n{\"_id\":\"2\"}\\n')\n"
                "w = assert(nd.open(path)); w:delete('3'); w:close()\n"
                "eq(slurp(), '{\"_id\":\"3\",\"_op\":\"delete\"}\\n')\n"
                "os.remove(path)\n");

    sl_test_lua("bad_docs", PRELUDE
                "local w = assert(nd.open(path))\n"
                "assert(w:put({_id = 'ok1'}))\n"
                "local cyc = {}; cyc.me = cyc\n"
                "local r, e = w:put(cyc)\n"
                "eq(r, nil); eq(e, 'nesting too deep')\n"
                "r, e = w:put({x = 1/0})\n"
                "eq(r, nil); eq(e, 'number is not finite')\n"
                "r, e = w:put({[{}] = 1})\n"
                "eq(r, nil); eq(e, 'table key must be a string or number')\n"
                "assert(w:put({_id = 'ok2'}))\n"
                "eq(w:count(), 2)\n"
                "w:close()\n"
                "eq(slurp(), '{\"_id\":\"ok1\"}\\n{\"_id\":\"ok2\"}\\n')\n"
                "local ok, err = pcall(w.put, assert(nd.open(path)), 'str')\n"
                "assert(not ok and err:find('table expected', 1, true), err)\n"
                "ok, err = pcall(nd.open(path).delete, nd.open(path), 5 and {})\n"
                "assert(not ok and err:find('string expected', 1, true), err)\n"
                "ok, err = pcall(nd.open, nil)\n"
                "assert(not ok and err:find('bad argument #1', 1, true), err)\n"
                "os.remove(path)\n");

    sl_test_lua("big_and_errors", PRELUDE
                /* crosses the 64 KiB flush threshold many times */
                "local w = assert(nd.open(path))\n"
                "local body = string.rep('x', 1000)\n"
                "for i = 1, 1000 do assert(w:put({_id = tostring(i), body = body})) end\n"
                "assert(#slurp() > 0 and #slurp() < 1000 * 1020, 'partly written')\n"
                "assert(w:close())\n"
                "local s = slurp()\n"
                "eq(#s, 1000 * (#'{\"_id\":\"\",\"body\":\"\"}\\n' + 1000) + 9 + 90 * 2 + 900 * 3 + 4)\n"
                "eq(s:sub(-1025), '{\"_id\":\"1000\",\"body\":\"' .. body .. '\"}\\n', 'last line')\n"
                "os.remove(path)\n"
                "local bad, e = nd.open('/nonexistent-dir/out.ndjson')\n"
                "eq(bad, nil); eq(e, 'ENOENT: no such file or directory')\n"
                /* a full disk surfaces on flush */
                "local full = assert(nd.open('/dev/full'))\n"
                "assert(full:put({_id = 'x'}))\n"
                "local r, e2 = full:flush()\n"
                "eq(r, nil); eq(e2, 'ENOSPC: no space left on device')\n"
                "r, e2 = full:close()\n"
                "eq(r, nil); eq(e2, 'ENOSPC: no space left on device')\n");

}

/* "-" writes to fd 1, which stays open after close: fd 1 is pointed at a
 * file for the run and the bytes compared. */
static void test_stdout(void)
{
    char tmpl[] = "/tmp/ndjson_stdout_XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    sl_test_lua("stdout", PRELUDE
                "local w = assert(nd.open('-'))\n"
                "assert(w:put({_id = 'to-stdout'}))\n"
                "assert(w:delete('gone'))\n"
                "eq(w:close(), true)\n"
                "local again = assert(nd.open('-'))\n"
                "assert(again:put({_id = 'still open'}))\n"
                "again:close()\n"
                "os.remove(path)\n");
    dup2(saved, 1);
    close(saved);
    char buf[256] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    CHECK(n > 0);
    CHECK_STR(buf, "{\"_id\":\"to-stdout\"}\n{\"_id\":\"gone\",\"_op\":\"delete\"}\n"
                   "{\"_id\":\"still open\"}\n");
    close(fd);
    unlink(tmpl);
}

int main(void)
{
    run_all();
    run_all();
    test_stdout();
    return sl_test_done("ndjson");
}
