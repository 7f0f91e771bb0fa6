/*
 * sluice.fs: filesystem primitives for the filesystem connector, the state
 * directory and tests (fs.c), and the glob matcher (fs_glob.c), exported so
 * C code (rules, the walker) matches paths exactly as Lua does.
 */
#ifndef SL_FS_H
#define SL_FS_H

#include <lua.h>
#include <stddef.h>

int luaopen_sluice_fs(lua_State *L);

/* Returns 1 when `path` (relative, '/'-separated) matches the
 * gitignore-like `pat`, else 0. Both are byte strings with lengths; neither
 * needs a NUL terminator. Never fails, never allocates; the cost is bounded
 * by len(pat) * len(path) (no exponential backtracking). The grammar is
 * described in fs_glob.c. */
int sl_fs_glob_match(const char *pat, size_t plen, const char *path, size_t len);

#endif
