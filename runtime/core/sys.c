/*
 * sluice.sys: the few process facts Lua cannot get by itself (terminal,
 * environment, clock with sub-second precision, the runtime's home).
 */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

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

int luaopen_sluice_sys(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"isatty", l_isatty}, {"time", l_time}, {"environ", l_environ},
        {"home", l_home}, {"write", l_write}, {"realpath", l_realpath},
        {"maxrss", l_maxrss}, {"pid", l_pid}, {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
