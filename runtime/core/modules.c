/*
 * The one list of C modules the runtime preloads: `require "sluice.http"`
 * finds luaopen_sluice_http here. A new family adds one line.
 */
#include "vm.h"

int luaopen_sluice_sys(lua_State *L);
int luaopen_sluice_json(lua_State *L);
int luaopen_sluice_yaml(lua_State *L);
int luaopen_sluice_crypto(lua_State *L);
int luaopen_sluice_text(lua_State *L);
int luaopen_sluice_http(lua_State *L);
int luaopen_sluice_fs(lua_State *L);
int luaopen_sluice_sqlite(lua_State *L);
int luaopen_sluice_sink_fts(lua_State *L);
int luaopen_sluice_sink_ndjson(lua_State *L);
int luaopen_sluice_sink_es(lua_State *L);
int luaopen_sluice_pg(lua_State *L);
int luaopen_sluice_mysql(lua_State *L);
int luaopen_sluice_redis(lua_State *L);
int luaopen_sluice_extract(lua_State *L);
int luaopen_cjson(lua_State *L);

static const luaL_Reg modules[] = {
    {"sluice.task", luaopen_sluice_task},
    {"sluice.sys", luaopen_sluice_sys},
    {"sluice.json", luaopen_sluice_json},
    {"sluice.yaml", luaopen_sluice_yaml},
    {"sluice.crypto", luaopen_sluice_crypto},
    {"sluice.text", luaopen_sluice_text},
    {"sluice.http", luaopen_sluice_http},
    {"sluice.fs", luaopen_sluice_fs},
    {"sluice.sqlite", luaopen_sluice_sqlite},
    {"sluice.sink.fts", luaopen_sluice_sink_fts},
    {"sluice.sink.ndjson", luaopen_sluice_sink_ndjson},
    {"sluice.sink.es", luaopen_sluice_sink_es},
    {"sluice.pg", luaopen_sluice_pg},
    {"sluice.mysql", luaopen_sluice_mysql},
    {"sluice.redis", luaopen_sluice_redis},
    {"sluice.extract", luaopen_sluice_extract},
    /* the plain cjson module, for Lua tools (busted helpers) that expect it */
    {"cjson", luaopen_cjson},
    {NULL, NULL}};

void sl_modules_preload(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *m = modules; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);
}
