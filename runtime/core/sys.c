/*
 * sluice.sys: the few process facts Lua cannot get by itself (terminal,
 * environment, clock with sub-second precision, the runtime's home), and
 * signal handlers that run on the loop (a sync stops cleanly on Ctrl-C).
 */
#include <errno.h>
#include <signal.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/rt.h"

extern char **environ;

/* sys.isatty(fd) -> boolean */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* sys.time() -> seconds since the epoch, with microseconds */
static int l_time(lua_State *L)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
    return 1;
}

/* sys.environ() -> {NAME = value, ...} */
static int l_environ(lua_State *L)
{
    lua_newtable(L);
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        lua_pushlstring(L, *e, (size_t)(eq - *e));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    return 1;
}

/* sys.home() -> the folder holding lualib/ and connectors/ */
static int l_home(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.home");
    return 1;
}

/* sys.write(fd, s) : unbuffered write of all of s to fd 1 or 2 */
static int l_write(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (fd == 1)
        fflush(stdout);
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            lua_pushnil(L);
            lua_pushstring(L, strerror(errno));
            return 2;
        }
        s += n;
        len -= (size_t)n;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.realpath(p) -> absolute path | nil, err */
static int l_realpath(lua_State *L)
{
    char out[PATH_MAX];
    if (!realpath(luaL_checkstring(L, 1), out)) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, out);
    return 1;
}

/* sys.maxrss() -> peak resident set size in KiB */
static int l_maxrss(lua_State *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    lua_pushnumber(L, (double)ru.ru_maxrss);
    return 1;
}

/* sys.pid() -> process id */
static int l_pid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* A signal handler installed by sys.on_signal.
 *
 * The process's own sigaction handler only counts and wakes the loop
 * (uv_async_send is async-signal-safe); the Lua function runs from the
 * loop. A signal that comes while the one before is still unhandled -- the
 * loop is stuck in a CPU loop or a blocking call -- gets the signal's
 * default action at once, so a second Ctrl-C always ends a hung process.
 *
 * The struct is malloc'd, not Lua memory: the VM closes handles after
 * lua_close, so __gc starts the close and its callback frees it. */
typedef struct {
    uv_async_t h;
    lua_State *L; /* the main state: the callback runs no task */
    int ref;      /* registry ref of the Lua function */
    int slot, signum;
    const char *name;
    struct sigaction old; /* the disposition to give back */
} sl_sig;

#define SIG_MT "sluice.sys.signal"

static uv_async_t *volatile sig_async[2];
static volatile sig_atomic_t sig_pending[2];

static void sig_raw(int signum)
{
    int k = signum == SIGINT ? 0 : 1;
    uv_async_t *a = sig_async[k];
    if (!a || sig_pending[k]) {
        signal(signum, SIG_DFL);
        raise(signum);
        return;
    }
    sig_pending[k] = 1;
    uv_async_send(a);
}

static void sig_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sig_fired(uv_async_t *h)
{
    sl_sig *s = h->data;
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    lua_pushstring(L, s->name);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        /* a handler error must not end the process mid-sync */
        fprintf(stderr, "sluice: signal handler for %s failed: %s\n", s->name,
                lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    sig_pending[s->slot] = 0; /* handled: the next one is a new request */
}

/* Gives the signal back its old disposition, then closes the handle. */
static void sig_release(lua_State *L, sl_sig *s, int unref)
{
    sigaction(s->signum, &s->old, NULL);
    sig_async[s->slot] = NULL;
    sig_pending[s->slot] = 0;
    if (unref)
        luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
    uv_close((uv_handle_t *)&s->h, sig_closed);
}

static int sig_gc(lua_State *L)
{
    sl_sig **u = luaL_checkudata(L, 1, SIG_MT);
    if (*u) {
        sig_release(L, *u, 1);
        *u = NULL;
    }
    return 0;
}

/* sys.on_signal(name, fn|nil) -> watching : from now on the signal "INT"
 * or "TERM" calls fn(name) on the loop instead of ending the process (a
 * signal that comes before the previous one was handled ends it); nil
 * gives the signal its old action back. A handler does not keep the loop
 * alive. false: the signal was ignored when the process started and stays
 * ignored. */
static int l_on_signal(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int signum = strcmp(name, "INT") == 0 ? SIGINT : strcmp(name, "TERM") == 0 ? SIGTERM : 0;
    if (!signum)
        return luaL_argerror(L, 1, "INT or TERM expected");
    int slot = signum == SIGINT ? 0 : 1;
    int on = !lua_isnoneornil(L, 2);
    if (on)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    /* A signal ignored when the process started (nohup, a background job
     * of a non-interactive shell) stays ignored: that was the caller's
     * choice, not ours to override. */
    static int ignored[2] = {-1, -1};
    if (ignored[slot] < 0) {
        struct sigaction sa;
        ignored[slot] = sigaction(signum, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
    }
    if (ignored[slot]) {
        lua_pushboolean(L, 0);
        return 1;
    }
    /* drop the handler installed before, if any */
    lua_pushfstring(L, "sluice.sys.signal.%s", name); /* [name, fn, key] */
    lua_pushvalue(L, -1);
    lua_rawget(L, LUA_REGISTRYINDEX); /* [name, fn, key, old|nil] */
    if (!lua_isnil(L, -1)) {
        sl_sig **u = lua_touserdata(L, -1);
        if (*u) {
            sig_release(L, *u, 1);
            *u = NULL;
        }
    }
    lua_pop(L, 1);
    if (!on) {
        lua_pushnil(L);
        lua_rawset(L, LUA_REGISTRYINDEX);
        lua_pushboolean(L, 1);
        return 1;
    }
    sl_sig *sg = calloc(1, sizeof *sg);
    if (!sg)
        return luaL_error(L, "out of memory");
    sl_sig **u = lua_newuserdata(L, sizeof *u); /* [name, fn, key, ud] */
    *u = NULL;
    luaL_getmetatable(L, SIG_MT);
    lua_setmetatable(L, -2);
    int rc = uv_async_init(sl_rt_get(L)->loop, &sg->h, sig_fired);
    if (rc != 0) {
        free(sg);
        return luaL_error(L, "cannot watch signal %s: %s", name, uv_strerror(rc));
    }
    uv_unref((uv_handle_t *)&sg->h);
    sg->h.data = sg;
    sg->L = sl_rt_get(L)->L;
    sg->slot = slot;
    sg->signum = signum;
    sg->name = slot == 0 ? "INT" : "TERM";
    lua_pushvalue(L, 2);
    sg->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *u = sg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_raw;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sig_pending[slot] = 0;
    sig_async[slot] = &sg->h;
    if (sigaction(signum, &sa, &sg->old) != 0)
        return luaL_error(L, "cannot watch signal %s: %s", name, strerror(errno)); /* __gc closes */
    lua_rawset(L, LUA_REGISTRYINDEX); /* registry[key] = ud */
    lua_pushboolean(L, 1);
    return 1;
}

int luaopen_sluice_sys(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"isatty", l_isatty}, {"time", l_time}, {"environ", l_environ},
        {"home", l_home}, {"write", l_write}, {"realpath", l_realpath},
        {"maxrss", l_maxrss}, {"pid", l_pid}, {"on_signal", l_on_signal}, {NULL, NULL}};
    luaL_newmetatable(L, SIG_MT);
    lua_pushcfunction(L, sig_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
