/*
 * What other C modules share with the sluice.sqlite binding: opening a
 * connection configured the way the runtime wants every SQLite file (WAL,
 * synchronous=NORMAL, a busy timeout), so the state database and the FTS
 * index behave alike under concurrent readers.
 */
#ifndef SL_DB_SQLITE_H
#define SL_DB_SQLITE_H

#include <lua.h>
#include <sqlite3.h>
#include <stddef.h>

/* Opens (creating unless readonly) the database at path. Returns the
 * connection, or NULL with SQLite's message copied into err. */
sqlite3 *sl_sqlite_connect(const char *path, int readonly, int busy_timeout_ms, char *err,
                           size_t errlen);

int luaopen_sluice_sqlite(lua_State *L);

#endif
