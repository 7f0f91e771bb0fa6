/*
 * sluice.redis: a Redis client for connector code, built on hiredis's async
 * API with its libuv adapter on the runtime's loop. A command yields the
 * calling task until its reply is there; a pipeline sends many commands in
 * one write and resumes the task once, with every reply.
 *
 * Why this shape:
 * - Connecting is itself a pipeline: AUTH and SELECT (or a PING) are queued
 *   on the context before the TCP connect completes, so one round trip both
 *   proves the server is there and authenticates; a refused connect reaches
 *   those queued callbacks with hiredis's error, so there is one error path.
 * - A connection lives in malloc'd memory (rd_conn), not in the userdata:
 *   hiredis may call our callbacks after the userdata is gone (a free asked
 *   for inside a callback is deferred by hiredis), and libuv close callbacks
 *   run after lua_close(). The struct goes when both the userdata and the
 *   hiredis context are gone; we learn the latter by wrapping the adapter's
 *   ev.cleanup hook, the one thing hiredis always calls on destruction.
 * - Replies are converted inside the hiredis callback (hiredis frees them
 *   when the callback returns), straight onto the waiting task's stack.
 * - A task cancelled while it waits closes the connection: a reply that
 *   would arrive later cannot be unsent, and a half-read pipeline leaves the
 *   connection out of step. Other tasks waiting on it get nil, "closed".
 * - An idle connection must not keep the loop alive: the adapter's poll
 *   handle is ref'd only while requests are in flight.
 * - hiredis 0.14 has no TLS: tls=true is an error, not a silent downgrade.
 *   Host names are resolved by hiredis with a blocking getaddrinfo().
 */
#include "core/rt.h"
#include "codec/json.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "sluice.redis.conn"
#define MAX_SAFE_INT 9007199254740992LL /* 2^53: beyond it a double loses digits */

typedef struct rd_conn rd_conn;
typedef struct rd_req rd_req;

enum rd_kind { RD_COMMAND, RD_PIPELINE, RD_CONNECT };
enum rd_setup { SETUP_AUTH, SETUP_SELECT, SETUP_PING };

struct rd_req {
    rd_conn *c;
    sl_task *task;   /* NULL once abandoned (task cancelled, conn collected) */
    enum rd_kind kind;
    int n, got;      /* replies expected / received */
    int base;        /* task->co stack top before our pushes */
    int ud_ref;      /* RD_CONNECT: the conn userdata, pushed on success */
    enum rd_setup setup[2];
    char err[256];   /* RD_CONNECT: first failed setup reply */
    rd_req *prev, *next;
};

struct rd_conn {
    redisAsyncContext *ac;  /* NULL once we asked hiredis to free it */
    int ac_alive;           /* hiredis has not destroyed the context yet */
    int ud_alive;           /* the Lua userdata has not been collected */
    int freeing;            /* the timer's close (and our free) is under way */
    uv_timer_t timer;       /* connect_timeout / timeout; frees us on close */
    double timeout, connect_timeout; /* seconds; 0 = none */
    int connecting;
    int pending;            /* requests in flight */
    rd_req *reqs;
    char why[128];          /* why the connection ended, for later calls */
};

typedef struct {
    rd_conn *c;
} rd_ud;

static void conn_close(rd_conn *c, const char *why);

/* ---- lifetimes ---------------------------------------------------------- */

static void conn_freed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_maybe_free(rd_conn *c)
{
    if (!c->ac_alive && !c->ud_alive && !c->freeing) {
        c->freeing = 1;
        uv_close((uv_handle_t *)&c->timer, conn_freed);
    }
}

/* Wraps the libuv adapter's cleanup: hiredis calls it exactly once, when it
 * destroys the context, after every pending callback has run. */
static void conn_ev_cleanup(void *privdata)
{
    redisLibuvEvents *p = privdata;
    rd_conn *c = p->context->data;
    redisLibuvCleanup(privdata);
    c->ac = NULL;
    c->ac_alive = 0;
    uv_timer_stop(&c->timer);
    conn_maybe_free(c);
}

/* Our own poll callback and event hooks in place of the adapter's: libuv
 * reports POLLERR (a refused connect, a reset) as a negative status and
 * stops the handle, and the adapter drops such events, so a refused connect
 * would wait for the timeout. Here hiredis gets the event and finds the
 * socket error itself. */
static void rd_poll(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    if (status < 0)
        events = p->events;
    if (p->context && (events & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
    if (status < 0 && p->context && p->events) /* libuv stopped it: resume */
        uv_poll_start(&p->handle, p->events, rd_poll);
}

static void rd_set_events(redisLibuvEvents *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, rd_poll);
    else
        uv_poll_stop(&p->handle);
}

static void rd_add_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    rd_set_events(p, p->events | UV_READABLE);
}

static void rd_del_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    rd_set_events(p, p->events & ~UV_READABLE);
}

static void rd_add_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    rd_set_events(p, p->events | UV_WRITABLE);
}

static void rd_del_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    rd_set_events(p, p->events & ~UV_WRITABLE);
}

static uv_handle_t *conn_poll_handle(rd_conn *c)
{
    redisLibuvEvents *p = c->ac ? c->ac->ev.data : NULL;
    return p ? (uv_handle_t *)&p->handle : NULL;
}

static void conn_timer_fired(uv_timer_t *timer)
{
    rd_conn *c = timer->data;
    if (c->pending > 0) /* an idle connection never times out */
        conn_close(c, "timeout");
}

/* Restarts the no-progress timer while requests are in flight; holds the
 * loop (poll handle ref'd) exactly as long. */
static void conn_arm(rd_conn *c)
{
    uv_handle_t *poll = conn_poll_handle(c);
    double secs = c->connecting ? c->connect_timeout : c->timeout;
    if (c->pending > 0 && c->ac) {
        if (poll)
            uv_ref(poll);
        if (secs > 0) /* (re)start: progress was made */
            uv_timer_start(&c->timer, conn_timer_fired, (uint64_t)(secs * 1000.0 + 0.5), 0);
        else /* connected with no reply timeout: the connect timer must go */
            uv_timer_stop(&c->timer);
    } else {
        if (poll)
            uv_unref(poll);
        uv_timer_stop(&c->timer);
    }
}

static rd_req *req_new(rd_conn *c, enum rd_kind kind, int n)
{
    rd_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->kind = kind;
    r->n = n;
    r->base = -1;
    r->ud_ref = LUA_NOREF;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->pending++;
    return r;
}

static void req_free(rd_req *r)
{
    rd_conn *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->pending--;
    if (r->ud_ref != LUA_NOREF && r->task)
        luaL_unref(r->task->co, LUA_REGISTRYINDEX, r->ud_ref);
    free(r);
}

/* Cancellation: forget the task and close the connection (see the header). */
static void req_cancel(void *data)
{
    rd_req *r = data;
    if (r->ud_ref != LUA_NOREF)
        luaL_unref(r->task->co, LUA_REGISTRYINDEX, r->ud_ref);
    r->ud_ref = LUA_NOREF;
    r->task = NULL;
    conn_close(r->c, "closed");
}

/* Asks hiredis to destroy the context; pending callbacks then run with a
 * NULL reply (now, or when the current hiredis callback returns). */
static void conn_close(rd_conn *c, const char *why)
{
    if (!c->ac)
        return;
    if (!c->why[0])
        snprintf(c->why, sizeof c->why, "%s", why);
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    uv_timer_stop(&c->timer);
    redisAsyncFree(ac);
}

/* ---- replies to Lua ----------------------------------------------------- */

static void push_integer(lua_State *L, long long v)
{
    if (v >= -MAX_SAFE_INT && v <= MAX_SAFE_INT) {
        lua_pushnumber(L, (lua_Number)v);
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", v);
        lua_pushstring(L, buf);
    }
}

/* Pushes a reply; nested nils become json.null so arrays keep no holes.
 * hiredis bounds the nesting depth (its reader stack), so this recursion
 * is bounded too. */
static void push_reply(lua_State *L, const redisReply *r, int nested)
{
    luaL_checkstack(L, 4, "redis reply");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        push_integer(L, r->integer);
        break;
    case REDIS_REPLY_NIL:
        if (nested)
            lua_pushlightuserdata(L, NULL);
        else
            lua_pushnil(L);
        break;
    case REDIS_REPLY_ERROR: /* only inside arrays (EXEC): keep it visible */
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], 1);
            lua_rawseti(L, -2, (int)i + 1);
        }
        sl_json_push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* The message for a NULL reply: why hiredis gave up on the connection. */
static const char *conn_failure(rd_conn *c, const redisAsyncContext *ac, char *buf, size_t n)
{
    if (c->why[0])
        return c->why;
    if (ac && ac->err && ac->errstr[0]) {
        const char *e = ac->errstr;
        if (strcmp(e, "Server closed the connection") == 0)
            return "closed";
        /* strerror text: lower-case its first letter, as our messages are */
        snprintf(buf, n, "%s", e);
        if (buf[0] >= 'A' && buf[0] <= 'Z')
            buf[0] = (char)(buf[0] - 'A' + 'a');
        return buf;
    }
    return "closed";
}

/* Hands the values pushed above r->base to the task. A normal reply runs at
 * the top of the loop (a poll event) and resumes directly; a NULL reply may
 * come from a free inside Lua code (close, cancel, __gc), so it wakes the
 * task from the loop's next iteration instead. */
static void req_finish(rd_req *r, int direct)
{
    sl_task *t = r->task;
    int n = lua_gettop(t->co) - r->base;
    r->task = NULL;
    if (r->ud_ref != LUA_NOREF) {
        luaL_unref(t->co, LUA_REGISTRYINDEX, r->ud_ref);
        r->ud_ref = LUA_NOREF;
    }
    req_free(r);
    if (direct) {
        sl_task_resume(t, n);
    } else {
        t->cleanup = NULL; /* a cancel before it runs must not see r */
        t->cleanup_data = NULL;
        sl_task_wake(t, n);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    rd_req *r = privdata;
    rd_conn *c = r->c;
    redisReply *reply = reply_;
    int idx = r->got++;
    int last = r->got == r->n;

    if (!r->task) { /* abandoned: drain */
        if (last)
            req_free(r);
        return;
    }
    lua_State *co = r->task->co;
    if (r->base < 0)
        r->base = lua_gettop(co);

    if (!reply) {
        /* the connection ended: the whole request fails, once */
        char buf[160];
        const char *why = conn_failure(c, ac, buf, sizeof buf);
        lua_settop(co, r->base);
        lua_pushnil(co);
        lua_pushstring(co, why);
        sl_task *t = r->task;
        r->task = NULL;
        if (r->ud_ref != LUA_NOREF)
            luaL_unref(co, LUA_REGISTRYINDEX, r->ud_ref);
        r->ud_ref = LUA_NOREF;
        int n = lua_gettop(co) - r->base;
        t->cleanup = NULL;
        t->cleanup_data = NULL;
        sl_task_wake(t, n);
        if (last)
            req_free(r);
        return;
    }

    conn_arm(c); /* progress: restart the timer */

    switch (r->kind) {
    case RD_COMMAND:
        if (reply->type == REDIS_REPLY_ERROR) {
            lua_pushnil(co);
            lua_pushlstring(co, reply->str, reply->len);
        } else {
            push_reply(co, reply, 0);
        }
        break;
    case RD_PIPELINE:
        if (idx == 0) {
            lua_createtable(co, r->n, 0); /* [replies, errors|nil] */
            sl_json_push_array_mt(co);
            lua_setmetatable(co, -2);
            lua_pushnil(co);
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            if (lua_isnil(co, -1)) {
                lua_pop(co, 1);
                lua_newtable(co);
            }
            lua_pushlstring(co, reply->str, reply->len);
            lua_rawseti(co, -2, idx + 1);
            lua_pushboolean(co, 0);
        } else {
            push_reply(co, reply, 1);
        }
        lua_rawseti(co, -3, idx + 1);
        break;
    case RD_CONNECT:
        if (reply->type == REDIS_REPLY_ERROR && !r->err[0]) {
            const char *what = r->setup[idx] == SETUP_AUTH     ? "auth failed"
                               : r->setup[idx] == SETUP_SELECT ? "select failed"
                                                               : "ping failed";
            snprintf(r->err, sizeof r->err, "%s: %.*s", what, (int)reply->len, reply->str);
        }
        if (last) {
            c->connecting = 0;
            if (r->err[0]) {
                lua_pushnil(co);
                lua_pushstring(co, r->err);
                conn_close(c, "closed"); /* deferred by hiredis: we are in its callback */
            } else {
                lua_rawgeti(co, LUA_REGISTRYINDEX, r->ud_ref);
            }
        }
        break;
    }
    if (last) {
        req_finish(r, 1);
        conn_arm(c);
    }
}

/* ---- Lua API ------------------------------------------------------------ */

static rd_conn *check_conn(lua_State *L, int idx)
{
    rd_ud *u = luaL_checkudata(L, idx, CONN_MT);
    return u->c;
}

static double opt_seconds(lua_State *L, int idx, const char *key, double def)
{
    lua_getfield(L, idx, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
            luaL_error(L, "bad option '%s' (non-negative number of seconds expected)", key);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int idx, const char *key, size_t *len)
{
    lua_getfield(L, idx, key);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "bad option '%s' (string expected, got %s)", key, luaL_typename(L, -1));
        s = lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1); /* the string stays anchored in opts */
    return s;
}

/* Why the value at idx cannot be a command argument, or NULL. Checked for
 * every argument before anything is sent, so misuse never leaves half a
 * pipeline on the wire. */
static const char *arg_problem(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING)
        return NULL;
    if (t == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        return (d != d || isinf(d)) ? "number is not finite" : NULL;
    }
    return lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, idx));
}

/* One (checked) argument as bytes; integral numbers are written exactly
 * (no "1e+15"). */
static const char *arg_bytes(lua_State *L, int idx, size_t *len, char *buf, size_t bufn)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    double d = lua_tonumber(L, idx);
    if (d == floor(d) && fabs(d) < 9.2e18)
        *len = (size_t)snprintf(buf, bufn, "%lld", (long long)d);
    else
        *len = (size_t)snprintf(buf, bufn, "%.17g", d);
    return buf;
}

/* Sends the command made of the n values at L[first..first+n-1]. */
static int send_argv(lua_State *L, rd_conn *c, rd_req *r, int first, int n)
{
    const char *stack_argv[16] = {0};
    size_t stack_lens[16] = {0};
    char numbuf[16][32];
    const char **argv = stack_argv;
    size_t *lens = stack_lens;
    if (n > 16) {
        argv = lua_newuserdata(L, (size_t)n * (sizeof *argv + sizeof *lens + 32));
        lens = (size_t *)(argv + n);
    }
    char *nums = n > 16 ? (char *)(lens + n) : &numbuf[0][0];
    for (int i = 0; i < n; i++)
        argv[i] = arg_bytes(L, first + i, &lens[i], nums + 32 * i, 32);
    int rc = redisAsyncCommandArgv(c->ac, on_reply, r, n, argv, lens);
    if (n > 16)
        lua_pop(L, 1);
    return rc;
}

/* redis.connect{host=, port=, path=, password=, username=, db=, tls=,
 *   ssl_ca=, connect_timeout=, timeout=} -> conn | nil, err
 * Authenticates (AUTH [username] password) and selects db before returning.
 * connect_timeout (default 10 s) bounds connect + auth; timeout (default
 * none) closes the connection when a reply makes no progress for that long. */
static int l_connect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    sl_task_check_current(L);
    size_t plen = 0, ulen = 0;
    const char *host = opt_string(L, 1, "host", NULL);
    const char *path = opt_string(L, 1, "path", NULL);
    const char *password = opt_string(L, 1, "password", &plen);
    const char *username = opt_string(L, 1, "username", &ulen);
    opt_string(L, 1, "ssl_ca", NULL);
    lua_getfield(L, 1, "port");
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
        return luaL_error(L, "bad option 'port' (number expected)");
    lua_Number port = lua_isnil(L, -1) ? 6379 : lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (port < 1 || port > 65535 || port != floor(port))
        return luaL_error(L, "bad option 'port' (1..65535 expected)");
    lua_getfield(L, 1, "db");
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
        return luaL_error(L, "bad option 'db' (number expected)");
    lua_Number db = lua_isnil(L, -1) ? 0 : lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (db < 0 || db != floor(db) || db > 1e9)
        return luaL_error(L, "bad option 'db' (non-negative integer expected)");
    lua_getfield(L, 1, "tls");
    int tls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    double connect_timeout = opt_seconds(L, 1, "connect_timeout", 10.0);
    double timeout = opt_seconds(L, 1, "timeout", 0.0);
    if (username && !password)
        return luaL_error(L, "bad option 'username' (needs a password)");

    if (tls) {
        lua_pushnil(L);
        lua_pushstring(L, "tls not supported by this build's hiredis");
        return 2;
    }

    redisAsyncContext *ac = path ? redisAsyncConnectUnix(path)
                                 : redisAsyncConnect(host ? host : "127.0.0.1", (int)port);
    if (!ac)
        return luaL_error(L, "out of memory");
    if (ac->err) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s", ac->errstr);
        if (msg[0] >= 'A' && msg[0] <= 'Z')
            msg[0] = (char)(msg[0] - 'A' + 'a');
        redisAsyncFree(ac);
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }

    rd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        redisAsyncFree(ac);
        return luaL_error(L, "out of memory");
    }
    sl_rt *rt = sl_rt_get(L);
    uv_timer_init(rt->loop, &c->timer);
    c->timer.data = c;
    c->connect_timeout = connect_timeout;
    c->timeout = timeout;
    if (redisLibuvAttach(ac, rt->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        uv_close((uv_handle_t *)&c->timer, conn_freed);
        lua_pushnil(L);
        lua_pushstring(L, "cannot watch the socket");
        return 2;
    }
    ac->ev.addRead = rd_add_read;
    ac->ev.delRead = rd_del_read;
    ac->ev.addWrite = rd_add_write;
    ac->ev.delWrite = rd_del_write;
    ac->ev.cleanup = conn_ev_cleanup;
    ac->data = c;
    c->ac = ac;
    c->ac_alive = 1;
    c->ud_alive = 1;
    c->connecting = 1;

    rd_ud *u = lua_newuserdata(L, sizeof *u);
    u->c = c;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);

    int nsetup = (password ? 1 : 0) + (db != 0 ? 1 : 0);
    rd_req *r = req_new(c, RD_CONNECT, nsetup ? nsetup : 1);
    if (!r)
        return luaL_error(L, "out of memory");
    lua_pushvalue(L, -1);
    r->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int i = 0, rc = REDIS_OK;
    if (password) {
        const char *argv[3] = {"AUTH", username, password};
        size_t lens[3] = {4, ulen, plen};
        if (!username) {
            argv[1] = password;
            lens[1] = plen;
        }
        r->setup[i++] = SETUP_AUTH;
        rc = redisAsyncCommandArgv(ac, on_reply, r, username ? 3 : 2, argv, lens);
    }
    if (rc == REDIS_OK && db != 0) {
        char dbs[32];
        const char *argv[2] = {"SELECT", dbs};
        size_t lens[2] = {6, (size_t)snprintf(dbs, sizeof dbs, "%.0f", db)};
        r->setup[i++] = SETUP_SELECT;
        rc = redisAsyncCommandArgv(ac, on_reply, r, 2, argv, lens);
    }
    if (rc == REDIS_OK && nsetup == 0) {
        r->setup[0] = SETUP_PING;
        rc = redisAsyncCommand(ac, on_reply, r, "PING");
    }
    if (rc != REDIS_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, r->ud_ref);
        r->ud_ref = LUA_NOREF;
        r->task = NULL;
        r->n = i; /* callbacks already queued still drain r */
        if (i == 0)
            req_free(r);
        conn_close(c, "closed");
        lua_pushnil(L);
        lua_pushstring(L, "cannot send to the server");
        return 2;
    }
    r->task = sl_task_current(L);
    conn_arm(c);
    return sl_task_await(L, req_cancel, r);
}

static int closed_result(lua_State *L, rd_conn *c)
{
    lua_pushnil(L);
    lua_pushstring(L, c->why[0] ? c->why : "closed");
    return 2;
}

/* conn:command(name, ...) -> reply | nil, err
 * Arguments are strings (binary-safe) or numbers. Replies: status and bulk
 * strings -> string, integer -> number (beyond 2^53: string), nil -> nil,
 * array -> array (json.array_mt; nils inside are json.null), an error reply
 * -> nil, "ERR ...". */
static int l_command(lua_State *L)
{
    rd_conn *c = check_conn(L, 1);
    int n = lua_gettop(L) - 1;
    luaL_argcheck(L, n >= 1, 2, "command name expected");
    for (int i = 2; i <= n + 1; i++) {
        const char *why = arg_problem(L, i);
        if (why)
            luaL_argerror(L, i, why);
    }
    sl_task_check_current(L);
    if (!c->ac)
        return closed_result(L, c);
    rd_req *r = req_new(c, RD_COMMAND, 1);
    if (!r)
        return luaL_error(L, "out of memory");
    if (send_argv(L, c, r, 2, n) != REDIS_OK) {
        req_free(r);
        return closed_result(L, c);
    }
    r->task = sl_task_current(L);
    conn_arm(c);
    return sl_task_await(L, req_cancel, r);
}

/* conn:pipeline({ {name, args...}, ... }) -> replies, errors | nil, err
 * Sends every command in one write and waits for all the replies. replies[i]
 * is the i-th reply (json.null for nil, false for an error reply); errors is
 * nil, or a table {[i] = "ERR ..."} for the commands that failed. nil, err
 * means the connection failed and no reply is usable. */
static int l_pipeline(lua_State *L)
{
    rd_conn *c = check_conn(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_objlen(L, 2);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1) || lua_objlen(L, -1) < 1)
            return luaL_argerror(L, 2, lua_pushfstring(L, "command %d must be a non-empty array", i));
        int m = (int)lua_objlen(L, -1);
        for (int j = 1; j <= m; j++) {
            lua_rawgeti(L, -1, j);
            const char *why = arg_problem(L, lua_gettop(L));
            if (why)
                return luaL_argerror(L, 2, lua_pushfstring(L, "command %d, item %d: %s", i, j, why));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    sl_task_check_current(L);
    if (n == 0) { /* nothing to wait for: answer now */
        lua_newtable(L);
        sl_json_push_array_mt(L);
        lua_setmetatable(L, -2);
        return 1;
    }
    if (!c->ac)
        return closed_result(L, c);
    rd_req *r = req_new(c, RD_PIPELINE, n);
    if (!r)
        return luaL_error(L, "out of memory");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int top = lua_gettop(L);
        int m = (int)lua_objlen(L, top);
        luaL_checkstack(L, m + 4, "pipeline command too long");
        for (int j = 1; j <= m; j++)
            lua_rawgeti(L, top, j);
        int rc = send_argv(L, c, r, top + 1, m);
        lua_settop(L, top - 1);
        if (rc != REDIS_OK) {
            r->n = i - 1; /* the sent ones still call back */
            if (r->n == 0)
                req_free(r);
            conn_close(c, "closed");
            return closed_result(L, c);
        }
    }
    r->task = sl_task_current(L);
    conn_arm(c);
    return sl_task_await(L, req_cancel, r);
}

/* conn:close() -> true. Requests still in flight end with nil, "closed". */
static int l_close(lua_State *L)
{
    rd_conn *c = check_conn(L, 1);
    conn_close(c, "closed");
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:is_open() -> bool */
static int l_is_open(lua_State *L)
{
    rd_conn *c = check_conn(L, 1);
    lua_pushboolean(L, c->ac != NULL && !c->connecting);
    return 1;
}

static int l_gc(lua_State *L)
{
    rd_ud *u = luaL_checkudata(L, 1, CONN_MT);
    rd_conn *c = u->c;
    if (!c)
        return 0;
    u->c = NULL;
    /* No task can still wait on an unreachable connection, except at
     * lua_close(), when the tasks themselves are going: forget them. */
    for (rd_req *r = c->reqs; r; r = r->next) {
        r->task = NULL;
        r->ud_ref = LUA_NOREF;
    }
    c->ud_alive = 0;
    conn_close(c, "closed");
    conn_maybe_free(c);
    return 0;
}

static int l_tostring(lua_State *L)
{
    rd_conn *c = check_conn(L, 1);
    lua_pushfstring(L, "redis.conn (%s)", c && c->ac ? "open" : "closed");
    return 1;
}

int luaopen_sluice_redis(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"command", l_command}, {"pipeline", l_pipeline}, {"close", l_close},
        {"is_open", l_is_open}, {NULL, NULL}};
    if (luaL_newmetatable(L, CONN_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    lua_pushfstring(L, "hiredis %d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    lua_setfield(L, -2, "client");
    return 1;
}
