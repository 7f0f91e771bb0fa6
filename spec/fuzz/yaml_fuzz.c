/*
 * libFuzzer target for the YAML loader (sluice.yaml.decode, the parser of
 * every configuration file): any bytes must give a table or nil plus a
 * message, never a crash, a hang or unbounded memory (aliases included).
 * Build and run: spec/fuzz/run.sh.
 */
#include "core/vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        sl_modules_preload(L);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "sluice.yaml");
        if (lua_pcall(L, 1, 1, 0) != 0)
            abort();
        lua_getfield(L, -1, "decode");
        lua_setglobal(L, "yaml_decode");
        lua_settop(L, 0);
    }
    lua_getglobal(L, "yaml_decode");
    lua_pushlstring(L, (const char *)data, size);
    /* a raise is misuse-shaped and allowed; a crash is not */
    lua_pcall(L, 1, 2, 0);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
