/*
 * Row shapes: the SQL drivers build a row's document themselves, in C,
 * instead of handing Lua a row array that sluice.sql copies into a fresh
 * table. On a 1M-row sync that copy (a table that grows five times, an id
 * built by string.format and concatenation) cost as much CPU as the driver
 * itself; the driver now writes each value once, into a table created at
 * its final size.
 *
 * The shape is described in Lua (sluice.sql decides the field names, the id
 * columns and the timestamp column) and is the single definition of a SQL
 * document's _id: prefix .. key part .. "|" .. key part ..., each key part
 * as sluice.sql's key_string makes it (that function stays for other
 * callers, and spec/lualib/sql_spec.lua checks both agree).
 *
 * Usage from a driver, for each row:
 *   sl_rowdoc_begin(L, s);                 -- pushes two slots: strs, document
 *   for each column: push its value (nil for NULL); sl_rowdoc_set(L, s, col);
 *   sl_rowdoc_end(L, s);                   -- sets _id; one slot: the document
 * A driver that gives up on a row half-way pops SL_ROWDOC_SLOTS slots.
 */
#ifndef SL_DB_ROWDOC_H
#define SL_DB_ROWDOC_H

#include <lua.h>

typedef struct sl_rowdoc sl_rowdoc;

#define SL_ROWDOC_SLOTS 2 /* stack slots a row holds while it is built */

/* Builds a shape from the Lua table at idx:
 *   { fields = {name | false, ...} (one per column; false: not a field),
 *     ids = {column, ...} (1-based), json_ids = {bool, ...} | nil (key part i
 *     comes from a JSON column: its canonical JSON text, so 1 and "1" differ),
 *     ts = column | nil, prefix = string,
 *     kind = string, name = string (doc[kind] = name),
 *     last = table | nil (gets the last row's key values 1..#ids and
 *            its raw timestamp value under "ts") }
 * ncols is the result's column count; #fields must match it. Raises a Lua
 * error naming the bad entry. */
sl_rowdoc *sl_rowdoc_new(lua_State *L, int idx, int ncols);
void sl_rowdoc_free(lua_State *L, sl_rowdoc *s);

int sl_rowdoc_ncols(const sl_rowdoc *s);

void sl_rowdoc_begin(lua_State *L, sl_rowdoc *s);
/* Pops the value on top of the stack into the document (below it). */
void sl_rowdoc_set(lua_State *L, sl_rowdoc *s, int col);
void sl_rowdoc_end(lua_State *L, sl_rowdoc *s);

#endif
