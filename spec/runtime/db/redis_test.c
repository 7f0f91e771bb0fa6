/* sluice.redis against a real redis-server (spec/fixtures/servers/redis.sh):
 * the lifecycles that are easiest to get wrong in C — cancel while a reply
 * is pending, a connection collected or left open at exit, a server that
 * accepts but never answers (connect timeout), one that drops the
 * connection, a no-progress timeout — plus the reply mapping at its edges.
 * The busted spec (redis_spec.lua) covers the API from Lua. Each case runs
 * twice, in fresh VMs, to catch state leaking between runs. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int port, silent_port;

static const char *PRELUDE =
    "local redis = require 'sluice.redis'\n"
    "local task = require 'sluice.task'\n"
    "local json = require 'sluice.json'\n"
    "local PORT, SILENT = %d, %d\n"
    "local function open(o)\n"
    "  o = o or {}\n"
    "  o.host = o.host or '127.0.0.1'; o.port = o.port or PORT\n"
    "  if o.password == nil then o.password = 'sluice-redis-pw' end\n"
    "  if o.password == false then o.password = nil end\n"
    "  return redis.connect(o)\n"
    "end\n";

static void run(const char *name, const char *body)
{
    size_t n = strlen(PRELUDE) + strlen(body) + 64;
    char *chunk = malloc(n);
    int len = snprintf(chunk, n, PRELUDE, port, silent_port);
    snprintf(chunk + len, n - (size_t)len, "%s", body);
    for (int i = 0; i < 2; i++)
        sl_test_lua(name, chunk);
    free(chunk);
}

/* A socket that listens but never accepts or answers: the kernel completes
 * the TCP handshake, so only a connect timeout can end the wait. */
static int listen_silent(int *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    *out_port = ntohs(a.sin_port);
    return fd;
}

int main(void)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char cmd[4300];
    int pid = 0;
    signal(SIGPIPE, SIG_IGN);
    snprintf(cmd, sizeof cmd, "sh '%s/spec/fixtures/servers/redis.sh' --max-seconds 300",
             src && *src ? src : ".");
    FILE *f = popen(cmd, "r");
    if (!f || fscanf(f, "%d %d", &port, &pid) != 2) {
        fprintf(stderr, "redis fixture did not start: %s\n", cmd);
        return 1;
    }
    pclose(f);
    int silent = listen_silent(&silent_port);
    CHECK(silent >= 0);

    run("replies",
        "local c = assert(open())\n"
        "assert(c:command('FLUSHALL') == 'OK')\n"
        "assert(c:command('SET', 'bin\\0key', 'a\\0b\\255') == 'OK')\n"
        "assert(c:command('GET', 'bin\\0key') == 'a\\0b\\255')\n"
        "assert(c:command('GET', 'missing') == nil)\n"
        "local v, e = c:command('GET', 'missing')\n"
        "assert(v == nil and e == nil)\n"
        "assert(c:command('SET', 'big', 9007199254740992) == 'OK')\n"
        "assert(c:command('INCR', 'big') == '9007199254740993')\n"
        "assert(c:command('SET', 'n', 1e15) == 'OK')\n"
        "assert(c:command('GET', 'n') == '1000000000000000')\n"
        "assert(c:command('INCRBY', 'n', -1) == 999999999999999)\n"
        "assert(c:command('SET', 'f', 0.5) == 'OK' and c:command('GET', 'f') == '0.5')\n"
        "assert(c:command('RPUSH', 'l', 'x', 'y') == 2)\n"
        "local a = c:command('LRANGE', 'l', 0, -1)\n"
        "assert(getmetatable(a) == json.array_mt and #a == 2 and a[1] == 'x' and a[2] == 'y')\n"
        "local m = c:command('MGET', 'l', 'nope', 'n')\n"
        "assert(m[1] == json.null and m[2] == json.null and m[3] == '999999999999999')\n"
        "local empty = c:command('LRANGE', 'none', 0, -1)\n"
        "assert(#empty == 0 and json.encode(empty) == '[]')\n"
        "local r, err = c:command('INCR', 'l')\n"
        "assert(r == nil and err == 'WRONGTYPE Operation against a key holding the wrong kind of value', err)\n"
        "r, err = c:command('NOSUCHCMD')\n"
        "assert(r == nil and err:find('^ERR unknown command'), err)\n"
        "assert(c:command('PING') == 'PONG')\n"
        "assert(c:is_open() and c:close() == true and not c:is_open())\n"
        "r, err = c:command('PING')\n"
        "assert(r == nil and err == 'closed')\n");

    run("exec_nested",
        "local c = assert(open())\n"
        "assert(c:command('DEL', 's') and c:command('MULTI') == 'OK')\n"
        "assert(c:command('SET', 's', 'v') == 'QUEUED')\n"
        "assert(c:command('LPUSH', 's', 'x') == 'QUEUED')\n"
        "local res = c:command('EXEC')\n"
        "assert(res[1] == 'OK' and type(res[2]) == 'table' and res[2].err:find('^WRONGTYPE'))\n"
        "c:close()\n");

    run("pipeline",
        "local c = assert(open({ db = 3 }))\n"
        "c:command('FLUSHDB')\n"
        "local cmds = {}\n"
        "for i = 1, 1000 do cmds[i] = { 'SET', 'k' .. i, i } end\n"
        "cmds[#cmds + 1] = { 'INCR', 'k1' }\n"
        "cmds[#cmds + 1] = { 'HSET', 'k2', 'f', 'v' }\n"
        "cmds[#cmds + 1] = { 'GET', 'absent' }\n"
        "cmds[#cmds + 1] = { 'DBSIZE' }\n"
        "local r, errs = c:pipeline(cmds)\n"
        "assert(#r == 1004 and r[1] == 'OK' and r[1000] == 'OK')\n"
        "assert(r[1001] == 2 and r[1002] == false and r[1003] == json.null and r[1004] == 1000)\n"
        "assert(errs[1002]:find('^WRONGTYPE') and errs[1001] == nil)\n"
        "local none, e2 = c:pipeline({ { 'PING' }, { 'ECHO', 'a\\0b' } })\n"
        "assert(none[1] == 'PONG' and none[2] == 'a\\0b' and e2 == nil)\n"
        "assert(#c:pipeline({}) == 0)\n"
        "c:close()\n"
        "local d = assert(open())\n"
        "assert(d:command('EXISTS', 'k1') == 0)\n" /* db 3 is not db 0 */
        "d:close()\n");

    run("auth",
        "local c, err = open({ password = 'wrong' })\n"
        "assert(c == nil and err == 'auth failed: WRONGPASS invalid username-password pair or user is disabled.', err)\n"
        "c, err = open({ password = false })\n"
        "assert(c == nil and err == 'ping failed: NOAUTH Authentication required.', err)\n"
        "c, err = open({ password = false, db = 2 })\n"
        "assert(c == nil and err == 'select failed: NOAUTH Authentication required.', err)\n"
        "c, err = open({ db = 99 })\n"
        "assert(c == nil and err == 'select failed: ERR DB index is out of range', err)\n"
        "c = assert(open({ username = 'reader', password = 'reader-pw' }))\n"
        "assert(c:command('GET', 'nothing-here') == nil)\n"
        "local r, e = c:command('SET', 'x', 1)\n"
        "assert(r == nil and e:find('^NOPERM'), e)\n"
        "c:close()\n"
        "c, err = open({ username = 'reader', password = 'nope' })\n"
        "assert(c == nil and err:find('^auth failed: WRONGPASS'), err)\n");

    run("connect_errors",
        "local c, err = open({ port = 1 })\n"
        "assert(c == nil and err == 'connection refused', err)\n"
        "c, err = open({ tls = true })\n"
        "assert(c == nil and err == \"tls not supported by this build's hiredis\", err)\n"
        "local t0 = task.now()\n"
        "c, err = open({ port = SILENT, connect_timeout = 0.2 })\n"
        "assert(c == nil and err == 'timeout', err)\n"
        "assert(task.now() - t0 >= 0.19 and task.now() - t0 < 2)\n"
        "c, err = open({ path = '/nonexistent/redis.sock' })\n"
        "assert(c == nil and err == 'no such file or directory', err)\n"
        "assert(not pcall(redis.connect, { port = 'x' }))\n"
        "assert(not pcall(redis.connect, { port = 70000 }))\n"
        "assert(not pcall(redis.connect, { db = -1 }))\n"
        "assert(not pcall(redis.connect, { username = 'u' }))\n"
        "assert(not pcall(redis.connect))\n");

    run("misuse",
        "local c = assert(open())\n"
        "local ok, err = pcall(c.command, c, 'SET', 'k', {})\n"
        "assert(not ok and err:find('string or number expected, got table'), err)\n"
        "ok, err = pcall(c.command, c)\n"
        "assert(not ok and err:find('command name expected'), err)\n"
        "ok, err = pcall(c.command, c, 'SET', 'k', 0/0)\n"
        "assert(not ok and err:find('not finite'), err)\n"
        "ok, err = pcall(c.pipeline, c, { { 'SET', true } })\n"
        "assert(not ok and err:find('command 1, item 2'), err)\n"
        "ok, err = pcall(c.pipeline, c, { { 'SET', 'a', 1 }, { 'SET', 'b', 1/0 } })\n"
        "assert(not ok and err:find('command 2, item 3: number is not finite'), err)\n"
        "ok, err = pcall(c.pipeline, c, { {} })\n"
        "assert(not ok and err:find('non%-empty array'), err)\n"
        "assert(c:command('PING') == 'PONG')\n" /* still usable after misuse */
        "c:close()\n");

    run("timeout_and_drop",
        /* connect_timeout bounds the connect only: not an idle connection,
         * nor a later command slower than it */
        "local q = assert(open({ connect_timeout = 0.2 }))\n"
        "assert(q:command('PING') == 'PONG')\n"
        "task.sleep(0.3)\n"
        "assert(q:is_open())\n"
        "local qv, qe = q:command('BLPOP', 'never', 0.4)\n"
        "assert(qv == nil and qe == nil and q:is_open(), tostring(qe))\n"
        "q:close()\n"
        "local c = assert(open({ timeout = 0.2 }))\n"
        "local t0 = task.now()\n"
        "local r, err = c:command('BLPOP', 'never', 5)\n"
        "assert(r == nil and err == 'timeout', err)\n"
        "assert(task.now() - t0 < 2 and not c:is_open())\n"
        "r, err = c:command('PING')\n"
        "assert(r == nil and err == 'timeout', err)\n"
        /* the server drops the connection while a command waits */
        "local victim = assert(open())\n"
        "local admin = assert(open())\n"
        "assert(victim:command('CLIENT', 'SETNAME', 'victim') == 'OK')\n"
        "local t = task.spawn(function() return victim:command('BLPOP', 'never', 5) end)\n"
        "task.sleep(0.05)\n"
        "assert(admin:command('CLIENT', 'KILL', 'SKIPME', 'yes', 'TYPE', 'normal', 'USER', 'default', 'LADDR', '127.0.0.1:' .. PORT) >= 1)\n"
        "local ok, v, e = t:join()\n"
        "assert(ok and v == nil and e == 'closed', e)\n"
        "admin:close()\n");

    run("cancel",
        "local c = assert(open())\n"
        "local t1 = task.spawn(function() return c:command('BLPOP', 'never', 5) end)\n"
        "local t2 = task.spawn(function() return c:command('PING') end)\n"
        "task.sleep(0.05)\n"
        "local t0 = task.now()\n"
        "assert(t1:cancel())\n"
        "local ok, err = t1:join()\n"
        "assert(ok == nil and err == 'cancelled')\n"
        "local ok2, v, e = t2:join()\n"
        "assert(ok2 and v == nil and e == 'closed', tostring(e))\n"
        "assert(task.now() - t0 < 1 and not c:is_open())\n"
        /* cancelled while connecting */
        "local t3 = task.spawn(function() return open({ port = SILENT, connect_timeout = 5 }) end)\n"
        "task.sleep(0.05)\n"
        "assert(t3:cancel())\n"
        /* a connection in use by a task cancelled from inside a reply */
        "local d = assert(open())\n"
        "local waiter = task.spawn(function() return d:command('BLPOP', 'never', 5) end)\n"
        "local e2 = assert(open())\n"
        "local killer = task.spawn(function() e2:command('PING'); waiter:cancel(); return d:command('PING') end)\n"
        "local okk, pv, pe = killer:join()\n"
        "assert(okk and pv == nil and pe == 'closed', tostring(pe))\n"
        "e2:close()\n");

    /* Left open or dropped: neither keeps the loop (and the process) alive,
     * and a pending reply at lua_close() touches no freed task. */
    run("left_open",
        "local c = assert(open())\n"
        "assert(c:command('PING') == 'PONG')\n"
        "do local d = assert(open()); d:command('PING') end\n"
        "collectgarbage(); collectgarbage()\n"
        "task.spawn(function() c:command('BLPOP', 'never', 0.3) end)\n"
        "task.sleep(0.02)\n");

    close(silent);
    kill(pid, SIGTERM);
    return sl_test_done("redis");
}
