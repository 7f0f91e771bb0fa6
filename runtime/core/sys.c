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

/* A signal handler installed by sys.on_signal. The struct is malloc'd, not
 * Lua memory: the VM closes handles after lua_close, so __gc starts the
 * close and its callback frees it. */
typedef struct {
    uv_signal_t h;
    lua_State *L; /* the main state: the callback runs no task */
    int ref;      /* registry ref of the Lua function */
    const char *name;
} sl_sig;

#define SIG_MT "sluice.sys.signal"

static void sig_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sig_fired(uv_signal_t *h, int signum)
{
    (void)signum;
    sl_sig *s = h->data;
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    lua_pushstring(L, s->name);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        /* a handler error must not end the process mid-sync */
        fprintf(stderr, "sluice: signal handler for %s failed: %s\n", s->name,
                lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static int sig_gc(lua_State *L)
{
    sl_sig **u = luaL_checkudata(L, 1, SIG_MT);
    if (*u) {
        uv_close((uv_handle_t *)&(*u)->h, sig_closed);
        *u = NULL;
    }
    return 0;
}

/* sys.on_signal(name, fn|nil) -> watching : from now on the signal "INT"
 * or "TERM" calls fn(name) on the loop instead of ending the process; nil
 * gives the signal its default action back (the next one ends the
 * process). A handler does not keep the loop alive. false: the signal was
 * ignored when the process started and stays ignored. */
static int l_on_signal(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int signum = strcmp(name, "INT") == 0 ? SIGINT : strcmp(name, "TERM") == 0 ? SIGTERM : 0;
    if (!signum)
        return luaL_argerror(L, 1, "INT or TERM expected");
    int on = !lua_isnoneornil(L, 2);
    if (on)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    /* A signal ignored when the process started (nohup, a background job
     * of a non-interactive shell) stays ignored: that was the caller's
     * choice, not ours to override. */
    static int ignored[2] = {-1, -1};
    int *ign = &ignored[signum == SIGINT ? 0 : 1];
    if (*ign < 0) {
        struct sigaction sa;
        *ign = sigaction(signum, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
    }
    if (*ign) {
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
            luaL_unref(L, LUA_REGISTRYINDEX, (*u)->ref);
            uv_close((uv_handle_t *)&(*u)->h, sig_closed);
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
    int rc = uv_signal_init(sl_rt_get(L)->loop, &sg->h);
    if (rc != 0) {
        free(sg);
        return luaL_error(L, "cannot watch signal %s: %s", name, uv_strerror(rc));
    }
    sg->h.data = sg;
    sg->L = sl_rt_get(L)->L;
    sg->name = signum == SIGINT ? "INT" : "TERM";
    lua_pushvalue(L, 2);
    sg->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *u = sg;
    rc = uv_signal_start(&sg->h, sig_fired, signum);
    if (rc != 0)
        return luaL_error(L, "cannot watch signal %s: %s", name, uv_strerror(rc)); /* __gc closes */
    uv_unref((uv_handle_t *)&sg->h);
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
