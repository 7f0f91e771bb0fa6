/*
 * sluice.sqlite: a thin SQLite binding for the sync engine's state database
 * (content hashes per document id, cursors, job history).
 *
 * Calls are synchronous: the state database is a local file touched a few
 * times per document, and a thread-pool hop would cost more than the query.
 * The engine runs the same few SQL strings millions of times, so prepared
 * statements are cached per SQL text. A row iterator streams one row at a
 * time; while it runs it owns its statement, and anyone else asking for the
 * same SQL meanwhile gets a fresh, uncached statement. Iterators are linked
 * to their connection so db:close() can finalise what they still hold.
 *
 * db:defer queues a write for the connection's writer thread
 * (sqlite_writer.h) instead; every other call first waits for the queue,
 * so callers see the same order as with synchronous writes. A deferred
 * write that failed is reported by the next call, which then returns
 * nil, "deferred write failed: ..." without running its own statement.
 */
#include "sqlite.h"
#include "sqlite_writer.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DB_MT "sluice.sqlite.db"
#define ROWS_MT "sluice.sqlite.rows"
#define CACHE_MAX 64

typedef struct cache_entry {
    char *sql;
    size_t len;
    sqlite3_stmt *st;
    int in_use; /* held by a row iterator */
} cache_entry;

typedef struct sl_rows sl_rows;

typedef struct sl_db {
    sqlite3 *db;
    cache_entry cache[CACHE_MAX];
    int ncache;
    sl_rows *iters; /* live iterators */
    sl_sqlite_writer *writer; /* started by the first db:defer */
} sl_db;

struct sl_rows {
    sl_db *owner; /* NULL once released */
    sqlite3_stmt *st;
    int cached;   /* st belongs to owner's cache (else we finalise it) */
    sl_rows *prev, *next;
};

sqlite3 *sl_sqlite_connect(const char *path, int readonly, int busy_timeout_ms, char *err,
                           size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, busy_timeout_ms);
        if (!readonly)
            rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                              NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close_v2(db);
        return NULL;
    }
    return db;
}

static sl_db *check_db(lua_State *L)
{
    sl_db *d = luaL_checkudata(L, 1, DB_MT);
    if (!d->db)
        luaL_error(L, "database is closed");
    return d;
}

static int push_error(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* Releases an iterator's statement: back to the cache, reset, or
 * finalised. Never fails. */
static void rows_release(sl_rows *r)
{
    if (!r->owner)
        return;
    if (r->cached) {
        sqlite3_reset(r->st);
        sqlite3_clear_bindings(r->st);
        for (int i = 0; i < r->owner->ncache; i++)
            if (r->owner->cache[i].st == r->st)
                r->owner->cache[i].in_use = 0;
    } else {
        sqlite3_finalize(r->st);
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        r->owner->iters = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->owner = NULL;
    r->st = NULL;
    r->prev = r->next = NULL;
}

/* Waits for the deferred writes. Returns 0, or pushes (nil, err) for the
 * one that failed and returns 2. */
static int settle(lua_State *L, sl_db *d)
{
    char err[560];
    if (!d->writer || sl_sqlite_writer_wait(d->writer, err, sizeof err) == 0)
        return 0;
    lua_pushnil(L);
    lua_pushfstring(L, "deferred write failed: %s", err);
    return 2;
}

static void db_close(sl_db *d)
{
    sl_sqlite_writer_free(d->writer); /* runs what is queued */
    d->writer = NULL;
    while (d->iters)
        rows_release(d->iters);
    for (int i = 0; i < d->ncache; i++) {
        sqlite3_finalize(d->cache[i].st);
        free(d->cache[i].sql);
    }
    d->ncache = 0;
    sqlite3_close_v2(d->db);
    d->db = NULL;
}

/* Finds or prepares the statement for sql. *cached says whether it lives in
 * the cache (then it is reset after use) or must be finalised. Returns NULL
 * with SQLite's message pushed as (nil, err) and *nret = 2. */
static sqlite3_stmt *stmt_get(lua_State *L, sl_db *d, const char *sql, size_t len, int *cached)
{
    int hit = -1;
    for (int i = 0; i < d->ncache; i++) {
        if (d->cache[i].len == len && memcmp(d->cache[i].sql, sql, len) == 0) {
            hit = i;
            break;
        }
    }
    if (hit >= 0 && !d->cache[hit].in_use) {
        *cached = 1;
        return d->cache[hit].st;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(d->db, sql, (int)len, &st, &tail) != SQLITE_OK) {
        push_error(L, sqlite3_errmsg(d->db));
        return NULL;
    }
    if (!st) { /* only whitespace or comments */
        push_error(L, "no sql statement");
        return NULL;
    }
    while (tail && *tail && (*tail == ';' || *tail == ' ' || (*tail >= '\t' && *tail <= '\r')))
        tail++;
    if (tail && *tail) { /* the rest would be silently ignored */
        sqlite3_finalize(st);
        push_error(L, "more than one sql statement (use db:exec)");
        return NULL;
    }
    *cached = 0;
    if (hit >= 0) /* the cached copy is busy in an iterator */
        return st;
    if (d->ncache == CACHE_MAX) {
        /* dynamic SQL would grow the cache without bound: drop idle entries */
        int keep = 0;
        for (int i = 0; i < d->ncache; i++) {
            if (d->cache[i].in_use) {
                d->cache[keep++] = d->cache[i];
            } else {
                sqlite3_finalize(d->cache[i].st);
                free(d->cache[i].sql);
            }
        }
        d->ncache = keep;
        if (keep == CACHE_MAX)
            return st;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return st;
    memcpy(copy, sql, len);
    copy[len] = '\0';
    d->cache[d->ncache++] = (cache_entry){copy, len, st, 0};
    *cached = 1;
    return st;
}

static void stmt_done(sqlite3_stmt *st, int cached)
{
    if (cached) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        sqlite3_finalize(st);
    }
}

/* Whether a Lua number is an integer SQLite stores exactly (then in *v):
 * integers bind as INTEGER, everything else as REAL. */
static int as_int64(double x, sqlite3_int64 *v)
{
    if (x != floor(x) || x < -9223372036854775808.0 || x >= 9223372036854775808.0)
        return 0;
    *v = (sqlite3_int64)x;
    return 1;
}

/* Raises unless every argument from `first` is a bindable type. Runs before
 * any statement is taken so a raise leaks nothing. */
static void check_params(lua_State *L, int first)
{
    for (int i = first; i <= lua_gettop(L); i++) {
        int t = lua_type(L, i);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            luaL_argerror(L, i, "parameter must be nil, boolean, number or string");
    }
}

/* Binds arguments first..top to ?1..?n. Returns 0, or -1 when there are
 * more arguments than parameters (a missing trailing parameter is NULL). */
static int bind_params(lua_State *L, sqlite3_stmt *st, int first, int transient)
{
    int n = lua_gettop(L) - first + 1;
    if (n > sqlite3_bind_parameter_count(st))
        return -1;
    sqlite3_destructor_type how = transient ? SQLITE_TRANSIENT : SQLITE_STATIC;
    for (int i = 0; i < n; i++) {
        int idx = first + i;
        switch (lua_type(L, idx)) {
        case LUA_TBOOLEAN:
            sqlite3_bind_int(st, i + 1, lua_toboolean(L, idx));
            break;
        case LUA_TNUMBER: {
            double x = lua_tonumber(L, idx);
            sqlite3_int64 v;
            if (as_int64(x, &v))
                sqlite3_bind_int64(st, i + 1, v);
            else
                sqlite3_bind_double(st, i + 1, x);
            break;
        }
        case LUA_TSTRING: {
            size_t len;
            const char *s = lua_tolstring(L, idx, &len);
            sqlite3_bind_text64(st, i + 1, s, len, how, SQLITE_UTF8);
            break;
        }
        default:
            sqlite3_bind_null(st, i + 1);
        }
    }
    return 0;
}

/* Pushes the current row as a table keyed by column name. */
static void push_row(lua_State *L, sqlite3_stmt *st)
{
    int n = sqlite3_column_count(st);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER:
            lua_pushnumber(L, (lua_Number)sqlite3_column_int64(st, i));
            break;
        case SQLITE_FLOAT:
            lua_pushnumber(L, sqlite3_column_double(st, i));
            break;
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
            const void *p = sqlite3_column_blob(st, i);
            lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(st, i));
            break;
        }
        default:
            continue; /* NULL: no key */
        }
        lua_setfield(L, -2, sqlite3_column_name(st, i));
    }
}

/* Takes the statement for args (sql, ...) at stack index 2. Returns it, or
 * NULL with (nil, err) pushed. Raises on a parameter-count mismatch. */
static sqlite3_stmt *prepare_bound(lua_State *L, sl_db *d, int transient, int *cached)
{
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    check_params(L, 3);
    sqlite3_stmt *st = stmt_get(L, d, sql, len, cached);
    if (!st)
        return NULL;
    if (bind_params(L, st, 3, transient) != 0) {
        stmt_done(st, *cached);
        luaL_error(L, "too many parameters for statement");
    }
    return st;
}

/* sqlite.open(path[, {readonly=bool, busy_timeout_ms=5000}]) -> db | nil, err */
static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int readonly = 0, busy = 5000;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "readonly");
        readonly = lua_toboolean(L, -1);
        lua_getfield(L, 2, "busy_timeout_ms");
        if (!lua_isnil(L, -1)) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
                luaL_argerror(L, 2, "busy_timeout_ms must be a non-negative number");
            busy = (int)fmin(lua_tonumber(L, -1), 2147483647.0);
        }
        lua_pop(L, 2);
    }
    sl_db *d = lua_newuserdata(L, sizeof *d);
    memset(d, 0, sizeof *d);
    luaL_getmetatable(L, DB_MT);
    lua_setmetatable(L, -2);
    char err[256];
    d->db = sl_sqlite_connect(path, readonly, busy, err, sizeof err);
    if (!d->db)
        return push_error(L, err);
    return 1;
}

/* db:exec(sql) -> true | nil, err
 * Runs one or more statements without parameters. */
static int l_exec(lua_State *L)
{
    sl_db *d = check_db(L);
    const char *sql = luaL_checkstring(L, 2);
    if (settle(L, d))
        return 2;
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return push_error(L, sqlite3_errmsg(d->db));
    lua_pushboolean(L, 1);
    return 1;
}

/* Steps a bound write statement to its end and finishes it: pushes the
 * number of changed rows, or nil, err. */
static int run_bound(lua_State *L, sl_db *d, sqlite3_stmt *st, int cached)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(d->db));
        stmt_done(st, cached);
        return 2;
    }
    stmt_done(st, cached);
    lua_pushnumber(L, sqlite3_changes(d->db));
    return 1;
}

/* db:run(sql, ...) -> changes | nil, err
 * Runs one statement with positional ? parameters; rows it returns are
 * dropped. */
static int l_run(lua_State *L)
{
    sl_db *d = check_db(L);
    if (settle(L, d))
        return 2;
    int cached;
    sqlite3_stmt *st = prepare_bound(L, d, 0, &cached);
    if (!st)
        return 2;
    return run_bound(L, d, st, cached);
}

/* db:run_array(sql, values, n) -> changes | nil, err
 * db:run with values[1..n] as the parameters: for a multi-row INSERT whose
 * parameters a caller queues in an array, which unpack() would spread over
 * the Lua stack (and out of LuaJIT's traces) first. n must not exceed the
 * statement's parameter count; a missing trailing parameter is NULL. */
static int l_run_array(lua_State *L)
{
    sl_db *d = check_db(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = luaL_checkinteger(L, 4);
    luaL_argcheck(L, n >= 0 && n <= 32766, 4, "expected 0 to 32766 values");
    lua_settop(L, 4);
    /* type-check before a statement is taken, so a raise leaks nothing */
    for (int i = 1; i <= (int)n; i++) {
        lua_rawgeti(L, 3, i);
        int t = lua_type(L, -1);
        lua_pop(L, 1);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            luaL_error(L, "bad value #%d in parameter array (must be nil, boolean, number or string)", i);
    }
    if (settle(L, d))
        return 2;
    int cached;
    sqlite3_stmt *st = stmt_get(L, d, sql, len, &cached);
    if (!st)
        return 2;
    if ((int)n > sqlite3_bind_parameter_count(st)) {
        stmt_done(st, cached);
        return luaL_error(L, "too many parameters for statement");
    }
    /* the table keeps every string alive until the statement is reset */
    for (int i = 1; i <= (int)n; i++) {
        lua_rawgeti(L, 3, i);
        switch (lua_type(L, -1)) {
        case LUA_TBOOLEAN:
            sqlite3_bind_int(st, i, lua_toboolean(L, -1));
            break;
        case LUA_TNUMBER: {
            double x = lua_tonumber(L, -1);
            sqlite3_int64 v;
            if (as_int64(x, &v))
                sqlite3_bind_int64(st, i, v);
            else
                sqlite3_bind_double(st, i, x);
            break;
        }
        case LUA_TSTRING: {
            size_t sl;
            const char *sv = lua_tolstring(L, -1, &sl);
            sqlite3_bind_text64(st, i, sv, sl, SQLITE_STATIC, SQLITE_UTF8);
            break;
        }
        default:
            sqlite3_bind_null(st, i);
        }
        lua_pop(L, 1);
    }
    return run_bound(L, d, st, cached);
}

/* db:one(sql, ...) -> row | nil [, err]
 * The first row keyed by column name (NULL columns absent), or nil when
 * there is none. */
static int l_one(lua_State *L)
{
    sl_db *d = check_db(L);
    if (settle(L, d))
        return 2;
    int cached;
    sqlite3_stmt *st = prepare_bound(L, d, 0, &cached);
    if (!st)
        return 2;
    int rc = sqlite3_step(st);
    int nret = 1;
    if (rc == SQLITE_ROW) {
        push_row(L, st);
    } else if (rc == SQLITE_DONE) {
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(d->db));
        nret = 2;
    }
    stmt_done(st, cached);
    return nret;
}

/* The iterator closure behind db:rows: upvalue 1 is the sl_rows userdata,
 * upvalue 2 the db userdata (kept alive while iterating). */
static int rows_next(lua_State *L)
{
    sl_rows *r = lua_touserdata(L, lua_upvalueindex(1));
    sl_db *d = lua_touserdata(L, lua_upvalueindex(2));
    if (!r->owner) {
        if (!d->db)
            return luaL_error(L, "database is closed");
        return 0; /* finished earlier */
    }
    int rc = sqlite3_step(r->st);
    if (rc == SQLITE_ROW) {
        push_row(L, r->st);
        return 1;
    }
    if (rc == SQLITE_DONE) {
        rows_release(r);
        return 0;
    }
    lua_pushstring(L, sqlite3_errmsg(d->db));
    rows_release(r);
    return lua_error(L);
}

static int rows_gc(lua_State *L)
{
    rows_release(lua_touserdata(L, 1));
    return 0;
}

/* db:rows(sql, ...) -> iterator
 * For `for row in db:rows(sql, ...)`: streams one row per call. A stepping
 * error raises with SQLite's message; so does a preparing error. Breaking
 * out early is safe: the statement is reset when the iterator is collected
 * or the database closed, and meanwhile the same SQL gets its own
 * statement. */
static int l_rows(lua_State *L)
{
    sl_db *d = check_db(L);
    if (settle(L, d))
        return lua_error(L);
    int cached;
    sqlite3_stmt *st = prepare_bound(L, d, 1, &cached);
    if (!st)
        return lua_error(L); /* the message is on top */
    sl_rows *r = lua_newuserdata(L, sizeof *r);
    *r = (sl_rows){d, st, cached, NULL, d->iters};
    if (d->iters)
        d->iters->prev = r;
    d->iters = r;
    if (cached)
        for (int i = 0; i < d->ncache; i++)
            if (d->cache[i].st == st)
                d->cache[i].in_use = 1;
    luaL_getmetatable(L, ROWS_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, rows_next, 2);
    return 1;
}

/* db:last_insert_rowid() -> n */
static int l_last_insert_rowid(lua_State *L)
{
    sl_db *d = check_db(L);
    if (d->writer)
        sl_sqlite_writer_wait(d->writer, NULL, 0);
    lua_pushnumber(L, (lua_Number)sqlite3_last_insert_rowid(d->db));
    return 1;
}

/* db:changes() -> n (rows changed by the last statement) */
static int l_changes(lua_State *L)
{
    sl_db *d = check_db(L);
    if (d->writer)
        sl_sqlite_writer_wait(d->writer, NULL, 0);
    lua_pushnumber(L, sqlite3_changes(d->db));
    return 1;
}

/* db:defer(sql[, values, n[, first]]) -> true | nil, err
 * Queues a write for the writer thread and returns at once. Without values
 * sql runs like db:exec (BEGIN, COMMIT); with them as one statement bound
 * to values[first .. first+n-1] (first defaults to 1), copied now. Fails
 * (queueing nothing) when an earlier deferred write failed. */
static int l_defer(lua_State *L)
{
    sl_db *d = check_db(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    int with = !lua_isnoneornil(L, 3);
    lua_Integer n = 0, first = 1;
    if (with) {
        luaL_checktype(L, 3, LUA_TTABLE);
        n = luaL_checkinteger(L, 4);
        first = luaL_optinteger(L, 5, 1);
        luaL_argcheck(L, n >= 0 && n <= 32766, 4, "expected 0 to 32766 values");
        luaL_argcheck(L, first >= 1, 5, "expected a position from 1");
    }
    sl_sqlite_val stackvals[256], *vals = stackvals;
    if (n > 256 && !(vals = malloc((size_t)n * sizeof *vals)))
        return luaL_error(L, "out of memory");
    /* values are read and type-checked before anything is queued; the
     * table keeps each string alive until push has copied it */
    lua_settop(L, 5);
    for (int i = 0; i < (int)n; i++) {
        lua_rawgeti(L, 3, (int)(first + i));
        sl_sqlite_val *v = &vals[i];
        switch (lua_type(L, -1)) {
        case LUA_TNIL: v->type = SL_SQV_NULL; break;
        case LUA_TBOOLEAN: v->type = SL_SQV_INT; v->i = lua_toboolean(L, -1); break;
        case LUA_TNUMBER:
            v->d = lua_tonumber(L, -1);
            v->type = as_int64(v->d, &v->i) ? SL_SQV_INT : SL_SQV_DOUBLE;
            break;
        case LUA_TSTRING:
            v->type = SL_SQV_TEXT;
            v->s = lua_tolstring(L, -1, &v->n);
            break;
        default:
            if (vals != stackvals)
                free(vals);
            return luaL_error(L, "bad value #%d in parameter array (must be nil, boolean, number or string)",
                              (int)(first + i));
        }
        lua_pop(L, 1);
    }
    char err[560];
    if (!d->writer && !(d->writer = sl_sqlite_writer_new(d->db))) {
        if (vals != stackvals)
            free(vals);
        return push_error(L, "cannot start the writer thread");
    }
    int rc = sl_sqlite_writer_push(d->writer, sql, len, with ? vals : NULL, (int)n, err, sizeof err);
    if (vals != stackvals)
        free(vals);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "deferred write failed: %s", err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* db:wait() -> true | nil, err: waits for the deferred writes; err is the
 * one that failed (reported once). */
static int l_wait(lua_State *L)
{
    sl_db *d = check_db(L);
    if (settle(L, d))
        return 2;
    lua_pushboolean(L, 1);
    return 1;
}

/* db:close() -> true
 * Finalises cached statements and open iterators; closing twice is fine. */
static int l_close(lua_State *L)
{
    sl_db *d = luaL_checkudata(L, 1, DB_MT);
    if (d->db)
        db_close(d);
    lua_pushboolean(L, 1);
    return 1;
}

static int db_gc(lua_State *L)
{
    sl_db *d = lua_touserdata(L, 1);
    if (d->db)
        db_close(d);
    return 0;
}

static int db_tostring(lua_State *L)
{
    sl_db *d = luaL_checkudata(L, 1, DB_MT);
    lua_pushfstring(L, "sluice.sqlite.db (%s)", d->db ? "open" : "closed");
    return 1;
}

int luaopen_sluice_sqlite(lua_State *L)
{
    static const luaL_Reg methods[] = {{"exec", l_exec},
                                       {"run", l_run},
                                       {"run_array", l_run_array},
                                       {"defer", l_defer},
                                       {"wait", l_wait},
                                       {"one", l_one},
                                       {"rows", l_rows},
                                       {"last_insert_rowid", l_last_insert_rowid},
                                       {"changes", l_changes},
                                       {"close", l_close},
                                       {NULL, NULL}};
    if (luaL_newmetatable(L, DB_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, db_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, db_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, ROWS_MT)) {
        lua_pushcfunction(L, rows_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_pushstring(L, sqlite3_libversion());
    lua_setfield(L, -2, "version");
    return 1;
}
