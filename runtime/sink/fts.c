/*
 * sluice.sink.fts: the embedded search index, the default sink when no
 * Elasticsearch is configured. One SQLite file holds any number of indexes;
 * each is a pair of tables, <ix>_docs (id -> the document as JSON) and an
 * FTS5 table <ix>_fts (title, body, other) sharing its rowid, so a search
 * returns ranked ids, snippets and the stored document in one query.
 *
 * Shaped for a sync that writes 100k documents and a user who types
 * anything into a search box:
 * - documents are serialised in C (jsonbuf) straight into the statement;
 *   writes are grouped in transactions of 1,000 operations, each put inside
 *   a savepoint so a failing put leaves nothing half-written;
 * - the user's text is never FTS5 syntax: each whitespace-separated term
 *   becomes a quoted FTS5 string, all required; terms with no indexable word
 *   are dropped, and a query left with none is an error, not an empty hit
 *   list;
 * - the tokenizer is unicode61 (diacritics folded) wrapped so that emoji and
 *   other pictographs are tokens of their own: "launch🚀" finds both
 *   "launch" and "🚀" (fts_query.c). The wrapper is registered on each
 *   connection as "sluice"; other SQLite clients can read the _docs tables
 *   but need it to query the _fts tables.
 * Name -> table mapping lives in sluice_fts_indexes so fts.list() can return
 * the names as given and two names that sanitise alike never share tables.
 * Indexes open on the same file share one connection (and so one batch
 * transaction), or the second would wait on the first one's write lock.
 */
#include "db/sqlite.h"
#include "fts_query.h"
#include "jsonbuf.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define FTS_MT "sluice.sink.fts"
#define IDS_MT "sluice.sink.fts.ids"
#define TOKQ_MT "sluice.sink.fts.tokq"
#define COMMIT_EVERY 1000
#define MAX_OTHER_DEPTH 32
#define SEARCH_MAX_LIMIT 10000

enum {
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_FIND,
    ST_INS_DOC,
    ST_UPD_DOC,
    ST_DEL_DOC,
    ST_INS_FTS,
    ST_DEL_FTS,
    ST_GET,
    ST_COUNT,
    ST_TOTAL,
    ST_SEARCH,
    ST__N
};

typedef struct sl_ids sl_ids;

/* One connection per database file and Lua state, shared by every index
 * open on that file: indexes in one file then write in one batch
 * transaction instead of locking each other out. */
typedef struct fts_conn {
    sqlite3 *db;
    char key[4096]; /* the file's real path */
    int refs;
    int in_tx, pending;
    sl_fts_tokq q;
    struct fts_conn *next;
    struct fts_conn **head; /* the list this one is on */
} fts_conn;

typedef struct sl_fts {
    sqlite3 *db; /* conn->db while open, NULL once closed */
    fts_conn *conn;
    char ident[160];
    sqlite3_stmt *st[ST__N];
    sl_jsonbuf json;  /* the document being written */
    sl_jsonbuf other; /* its "other" text; also the match expression */
    sl_ids *iters;
} sl_fts;

struct sl_ids {
    sl_fts *owner;
    sqlite3_stmt *st;
    sl_ids *prev, *next;
};

static void ids_release(sl_ids *it)
{
    if (!it->owner)
        return;
    sqlite3_finalize(it->st);
    if (it->prev)
        it->prev->next = it->next;
    else
        it->owner->iters = it->next;
    if (it->next)
        it->next->prev = it->prev;
    it->owner = NULL;
    it->st = NULL;
}

static int exec_simple(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Steps a cached statement once and resets it. Returns SQLITE_DONE (a row,
 * if any, is ignored) or the error code. */
static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE;
    sqlite3_reset(st);
    return rc;
}

static int conn_commit(fts_conn *c)
{
    if (c->in_tx && sqlite3_get_autocommit(c->db)) /* rolled back by sqlite */
        c->in_tx = 0;
    if (!c->in_tx)
        return 0;
    if (exec_simple(c->db, "COMMIT") != 0)
        return -1;
    c->in_tx = 0;
    c->pending = 0;
    return 0;
}

static int conn_begin(fts_conn *c)
{
    if (c->in_tx && sqlite3_get_autocommit(c->db))
        c->in_tx = 0;
    if (c->in_tx)
        return 0;
    if (exec_simple(c->db, "BEGIN IMMEDIATE") != 0)
        return -1;
    c->in_tx = 1;
    c->pending = 0;
    return 0;
}

/* The list of open connections of this Lua state (a registry userdata, so
 * it outlives every index until lua_close). */
static fts_conn **conn_list(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.sink.fts.conns");
    fts_conn **head = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!head) {
        head = lua_newuserdata(L, sizeof *head);
        *head = NULL;
        lua_setfield(L, LUA_REGISTRYINDEX, "sluice.sink.fts.conns");
    }
    return head;
}

/* The shared connection for path, opened on first use. Returns NULL with
 * the message in err. */
static fts_conn *conn_acquire(lua_State *L, const char *path, char *err, size_t errlen)
{
    fts_conn **head = conn_list(L);
    char real[4096];
    if (realpath(path, real)) {
        for (fts_conn *c = *head; c; c = c->next) {
            if (strcmp(c->key, real) == 0) {
                c->refs++;
                return c;
            }
        }
    }
    fts_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->db = sl_sqlite_connect(path, 0, 5000, err, errlen);
    if (!c->db) {
        free(c);
        return NULL;
    }
    if (sl_fts_tokq_init(&c->q, c->db, err, errlen) != 0) {
        sqlite3_close_v2(c->db);
        free(c);
        return NULL;
    }
    /* in-memory and temporary databases have no path to share */
    if (!realpath(path, c->key))
        c->key[0] = '\0';
    c->refs = 1;
    c->head = head;
    c->next = *head;
    *head = c;
    return c;
}

/* Drops one reference; the last one commits and closes. */
static void conn_release(fts_conn *c)
{
    if (--c->refs > 0)
        return;
    conn_commit(c);
    for (fts_conn **p = c->head; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    sl_fts_tokq_free(&c->q);
    sqlite3_close_v2(c->db);
    free(c);
}

static void fts_close(sl_fts *x)
{
    while (x->iters)
        ids_release(x->iters);
    for (int i = 0; i < ST__N; i++) {
        sqlite3_finalize(x->st[i]);
        x->st[i] = NULL;
    }
    if (x->conn)
        conn_release(x->conn);
    x->conn = NULL;
    x->db = NULL;
    sl_jsonbuf_free(&x->json);
    sl_jsonbuf_free(&x->other);
}

static sl_fts *check_fts(lua_State *L)
{
    sl_fts *x = luaL_checkudata(L, 1, FTS_MT);
    if (!x->db)
        luaL_error(L, "index is closed");
    return x;
}

static int push_error(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int push_db_error(lua_State *L, sqlite3 *db)
{
    return push_error(L, sqlite3_errmsg(db));
}

/* Lowercase ASCII letters and digits kept, anything else '_'. */
static void sanitise(const char *name, size_t n, char *out, size_t outlen)
{
    size_t o = (size_t)snprintf(out, outlen, "ix_");
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        out[o++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? (char)c : '_';
    }
    out[o] = '\0';
}

/* Finds or assigns the table prefix for name. Returns 0, or -1 with
 * SQLite's message in err. */
static int resolve_ident(sqlite3 *db, const char *name, size_t n, char *ident, size_t identlen,
                         char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (exec_simple(db, "CREATE TABLE IF NOT EXISTS sluice_fts_indexes("
                        "name TEXT PRIMARY KEY, ident TEXT NOT NULL UNIQUE)") != 0 ||
        exec_simple(db, "SAVEPOINT sl_open") != 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT ident FROM sluice_fts_indexes WHERE name = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, (int)n, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        snprintf(ident, identlen, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = 0;
        goto out;
    }
    if (step != SQLITE_DONE)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    char base[128];
    sanitise(name, n, base, sizeof base);
    if (sqlite3_prepare_v2(db, "INSERT INTO sluice_fts_indexes(name, ident) VALUES(?1, ?2)", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    /* two names that sanitise alike get distinct suffixes */
    for (int k = 1; k < 1000; k++) {
        if (k == 1)
            snprintf(ident, identlen, "%s", base);
        else
            snprintf(ident, identlen, "%s_%d", base, k);
        sqlite3_bind_text(st, 1, name, (int)n, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, ident, -1, SQLITE_STATIC);
        step = sqlite3_step(st);
        sqlite3_reset(st);
        if (step == SQLITE_DONE) {
            rc = 0;
            break;
        }
        if (step != SQLITE_CONSTRAINT)
            goto out;
    }
out:
    if (rc != 0)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc == 0 && exec_simple(db, "RELEASE sl_open") != 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    if (rc != 0) {
        sqlite3_exec(db, "ROLLBACK TO sl_open", NULL, NULL, NULL);
        sqlite3_exec(db, "RELEASE sl_open", NULL, NULL, NULL);
    }
    return rc;
}

static int prepare_all(sl_fts *x)
{
    const char *ix = x->ident;
    char *sql[ST__N] = {
        sqlite3_mprintf("SAVEPOINT sl_put"),
        sqlite3_mprintf("RELEASE sl_put"),
        sqlite3_mprintf("ROLLBACK TO sl_put"),
        sqlite3_mprintf("SELECT rowid FROM \"%w_docs\" WHERE id = ?1", ix),
        sqlite3_mprintf("INSERT INTO \"%w_docs\"(id, source) VALUES(?1, ?2)", ix),
        sqlite3_mprintf("UPDATE \"%w_docs\" SET source = ?2 WHERE rowid = ?1", ix),
        sqlite3_mprintf("DELETE FROM \"%w_docs\" WHERE rowid = ?1", ix),
        sqlite3_mprintf("INSERT INTO \"%w_fts\"(rowid, title, body, other) "
                        "VALUES(?1, ?2, ?3, ?4)",
                        ix),
        sqlite3_mprintf("DELETE FROM \"%w_fts\" WHERE rowid = ?1", ix),
        sqlite3_mprintf("SELECT source FROM \"%w_docs\" WHERE id = ?1", ix),
        sqlite3_mprintf("SELECT count(*) FROM \"%w_docs\"", ix),
        sqlite3_mprintf("SELECT count(*) FROM \"%w_fts\" WHERE \"%w_fts\" MATCH ?1", ix, ix),
        /* Title counts 10x body, body 2x the other fields. The page is
         * ranked first and only its rows get a snippet and a stored
         * document: in one flat query SQLite computes both for every
         * match before sorting, which for a common word means reading
         * every document's text (seconds on /usr/share/doc). */
        sqlite3_mprintf("SELECT d.id, top.score, f.title, "
                        "snippet(f.\"%w_fts\", -1, '[', ']', '\xE2\x80\xA6', 24), d.source "
                        "FROM (SELECT rowid AS r, bm25(\"%w_fts\", 10.0, 2.0, 1.0) AS score "
                        "      FROM \"%w_fts\" WHERE \"%w_fts\" MATCH ?1 "
                        "      ORDER BY score, rowid LIMIT ?2 OFFSET ?3) AS top "
                        "JOIN \"%w_fts\" AS f ON f.rowid = top.r "
                        "JOIN \"%w_docs\" AS d ON d.rowid = top.r "
                        "WHERE f.\"%w_fts\" MATCH ?1 ORDER BY top.score, top.r",
                        ix, ix, ix, ix, ix, ix, ix),
    };
    int rc = 0;
    for (int i = 0; i < ST__N; i++) {
        if (rc == 0 && (!sql[i] || sqlite3_prepare_v3(x->db, sql[i], -1,
                                                      SQLITE_PREPARE_PERSISTENT, &x->st[i],
                                                      NULL) != SQLITE_OK))
            rc = -1;
        sqlite3_free(sql[i]);
    }
    return rc;
}

/* fts.open(db_path, index_name) -> idx | nil, err
 * Opens (creating as needed) the file and the index's tables. */
static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t nlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    if (nlen == 0)
        return push_error(L, "index name is empty");
    if (nlen > 255)
        return push_error(L, "index name is too long");
    sl_fts *x = lua_newuserdata(L, sizeof *x);
    memset(x, 0, sizeof *x);
    sl_jsonbuf_init(&x->json);
    sl_jsonbuf_init(&x->other);
    luaL_getmetatable(L, FTS_MT);
    lua_setmetatable(L, -2);
    char err[256];
    x->conn = conn_acquire(L, path, err, sizeof err);
    if (!x->conn)
        return push_error(L, err);
    x->db = x->conn->db;
    if (resolve_ident(x->db, name, nlen, x->ident, sizeof x->ident, err, sizeof err) != 0) {
        fts_close(x);
        return push_error(L, err);
    }
    char *ddl = sqlite3_mprintf(
        "CREATE TABLE IF NOT EXISTS \"%w_docs\"(rowid INTEGER PRIMARY KEY, "
        "id TEXT UNIQUE NOT NULL, source TEXT NOT NULL);"
        "CREATE VIRTUAL TABLE IF NOT EXISTS \"%w_fts\" USING fts5(title, body, other, "
        "tokenize = 'sluice remove_diacritics 2');",
        x->ident, x->ident);
    int rc = ddl ? exec_simple(x->db, ddl) : -1;
    sqlite3_free(ddl);
    if (rc != 0 || prepare_all(x) != 0)
        goto fail;
    return 1;
fail:
    lua_pushnil(L);
    lua_pushstring(L, sqlite3_errmsg(x->db));
    fts_close(x);
    return 2;
}

/* Appends every string under the value at idx to x->other, newline
 * separated. Depth-limited so a cyclic table ends. */
static int collect_strings(sl_fts *x, lua_State *L, int idx, int depth)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n == 0)
            return 0;
        if ((x->other.len && sl_jsonbuf_putc(&x->other, '\n') != 0) ||
            sl_jsonbuf_append(&x->other, s, n) != 0)
            return -1;
        return 0;
    }
    if (t != LUA_TTABLE || depth >= MAX_OTHER_DEPTH || !lua_checkstack(L, 3))
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (collect_strings(x, L, lua_gettop(L), depth + 1) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int key_is(const char *k, size_t kn, const char *lit)
{
    return kn == strlen(lit) && memcmp(k, lit, kn) == 0;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s, size_t n)
{
    if (s)
        sqlite3_bind_text64(st, i, s, n, SQLITE_STATIC, SQLITE_UTF8);
    else
        sqlite3_bind_null(st, i);
}

/* Upserts within the open transaction. Returns 0 or -1 (SQLite error). */
static int put_rows(sl_fts *x, const char *id, size_t idlen, const char *title, size_t tlen,
                    const char *body, size_t blen)
{
    sqlite3_stmt **st = x->st;
    sqlite3_int64 rowid = 0;
    int found = 0;
    sqlite3_bind_text64(st[ST_FIND], 1, id, idlen, SQLITE_STATIC, SQLITE_UTF8);
    int rc = sqlite3_step(st[ST_FIND]);
    if (rc == SQLITE_ROW) {
        rowid = sqlite3_column_int64(st[ST_FIND], 0);
        found = 1;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st[ST_FIND]);
    if (rc != SQLITE_DONE)
        return -1;
    if (found) {
        sqlite3_bind_int64(st[ST_UPD_DOC], 1, rowid);
        sqlite3_bind_text64(st[ST_UPD_DOC], 2, x->json.ptr, x->json.len, SQLITE_STATIC,
                            SQLITE_UTF8);
        if (step_reset(st[ST_UPD_DOC]) != SQLITE_DONE)
            return -1;
        sqlite3_bind_int64(st[ST_DEL_FTS], 1, rowid);
        if (step_reset(st[ST_DEL_FTS]) != SQLITE_DONE)
            return -1;
    } else {
        sqlite3_bind_text64(st[ST_INS_DOC], 1, id, idlen, SQLITE_STATIC, SQLITE_UTF8);
        sqlite3_bind_text64(st[ST_INS_DOC], 2, x->json.ptr, x->json.len, SQLITE_STATIC,
                            SQLITE_UTF8);
        if (step_reset(st[ST_INS_DOC]) != SQLITE_DONE)
            return -1;
        rowid = sqlite3_last_insert_rowid(x->db);
    }
    sqlite3_bind_int64(st[ST_INS_FTS], 1, rowid);
    bind_text_or_null(st[ST_INS_FTS], 2, title, tlen);
    bind_text_or_null(st[ST_INS_FTS], 3, body, blen);
    bind_text_or_null(st[ST_INS_FTS], 4, x->other.len ? x->other.ptr : NULL, x->other.len);
    return step_reset(st[ST_INS_FTS]) == SQLITE_DONE ? 0 : -1;
}

/* Counts one write in the batch and commits when the batch is full. Returns
 * 0, or 2 with (nil, err) pushed. */
static int after_write(lua_State *L, sl_fts *x)
{
    if (++x->conn->pending >= COMMIT_EVERY && conn_commit(x->conn) != 0)
        return push_db_error(L, x->db);
    return 0;
}

/* idx:put(doc) -> true | nil, err
 * Upserts doc by its string _id: stores doc as JSON and indexes title
 * (doc.title, else doc.name), body (doc.body) and every other string in the
 * document (nested too), except _id and _timestamp. */
static int l_put(lua_State *L)
{
    sl_fts *x = check_fts(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, 2, "_id"); /* 3 */
    size_t idlen, tlen = 0, blen = 0;
    if (lua_type(L, 3) != LUA_TSTRING)
        return push_error(L, "document has no string _id");
    const char *id = lua_tolstring(L, 3, &idlen);
    if (idlen == 0)
        return push_error(L, "document _id is empty");
    const char *err;
    x->json.len = 0;
    if (sl_jsonbuf_value(&x->json, L, 2, &err) != 0)
        return push_error(L, err);
    const char *title_key = "title";
    lua_getfield(L, 2, "title"); /* 4 */
    if (lua_type(L, 4) != LUA_TSTRING) {
        lua_pop(L, 1);
        title_key = "name";
        lua_getfield(L, 2, "name");
        if (lua_type(L, 4) != LUA_TSTRING)
            title_key = NULL;
    }
    lua_getfield(L, 2, "body"); /* 5 */
    const char *title = title_key ? lua_tolstring(L, 4, &tlen) : NULL;
    const char *body = lua_type(L, 5) == LUA_TSTRING ? lua_tolstring(L, 5, &blen) : NULL;
    x->other.len = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) { /* [.., key, value] */
        size_t kn = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kn) : NULL;
        int skip = k && (key_is(k, kn, "_id") || key_is(k, kn, "_timestamp") ||
                         (title_key && key_is(k, kn, title_key)) ||
                         (body && key_is(k, kn, "body")));
        if (!skip && collect_strings(x, L, lua_gettop(L), 0) != 0) {
            lua_pop(L, 2);
            return push_error(L, "out of memory");
        }
        lua_pop(L, 1);
    }
    if (conn_begin(x->conn) != 0 || step_reset(x->st[ST_SAVEPOINT]) != SQLITE_DONE)
        return push_db_error(L, x->db);
    if (put_rows(x, id, idlen, title, tlen, body, blen) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(x->db));
        step_reset(x->st[ST_ROLLBACK_TO]);
        step_reset(x->st[ST_RELEASE]);
        return 2;
    }
    if (step_reset(x->st[ST_RELEASE]) != SQLITE_DONE)
        return push_db_error(L, x->db);
    if (after_write(L, x))
        return 2;
    lua_pushboolean(L, 1);
    return 1;
}

/* The rowid stored for id: 1 found, 0 absent, -1 error. */
static int find_rowid(sl_fts *x, const char *id, size_t n, sqlite3_int64 *rowid)
{
    sqlite3_stmt *st = x->st[ST_FIND];
    sqlite3_bind_text64(st, 1, id, n, SQLITE_STATIC, SQLITE_UTF8);
    int rc = sqlite3_step(st);
    int res = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (res == 1)
        *rowid = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return res;
}

/* idx:delete(id) -> true | false | nil, err
 * false when no document has that id. */
static int l_delete(lua_State *L)
{
    sl_fts *x = check_fts(L);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    sqlite3_int64 rowid;
    int found = find_rowid(x, id, n, &rowid);
    if (found < 0)
        return push_db_error(L, x->db);
    if (!found) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (conn_begin(x->conn) != 0 || step_reset(x->st[ST_SAVEPOINT]) != SQLITE_DONE)
        return push_db_error(L, x->db);
    sqlite3_bind_int64(x->st[ST_DEL_FTS], 1, rowid);
    sqlite3_bind_int64(x->st[ST_DEL_DOC], 1, rowid);
    if (step_reset(x->st[ST_DEL_FTS]) != SQLITE_DONE ||
        step_reset(x->st[ST_DEL_DOC]) != SQLITE_DONE) {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(x->db));
        step_reset(x->st[ST_ROLLBACK_TO]);
        step_reset(x->st[ST_RELEASE]);
        return 2;
    }
    if (step_reset(x->st[ST_RELEASE]) != SQLITE_DONE)
        return push_db_error(L, x->db);
    if (after_write(L, x))
        return 2;
    lua_pushboolean(L, 1);
    return 1;
}

/* idx:flush() -> true | nil, err
 * Commits the pending batch. */
static int l_flush(lua_State *L)
{
    sl_fts *x = check_fts(L);
    if (conn_commit(x->conn) != 0)
        return push_db_error(L, x->db);
    lua_pushboolean(L, 1);
    return 1;
}

/* idx:close() -> true | nil, err
 * Commits and closes; the index is closed even when the commit fails (then
 * the batch is lost and the error returned). Closing twice is fine. */
static int l_close(lua_State *L)
{
    sl_fts *x = luaL_checkudata(L, 1, FTS_MT);
    if (!x->db) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int nret = 1;
    if (conn_commit(x->conn) != 0) {
        push_db_error(L, x->db);
        nret = 2;
    } else {
        lua_pushboolean(L, 1);
    }
    fts_close(x);
    return nret;
}

static int fts_gc(lua_State *L)
{
    sl_fts *x = lua_touserdata(L, 1);
    if (x->db) {
        conn_commit(x->conn);
        fts_close(x);
    }
    return 0;
}

/* idx:count() -> n | nil, err */
static int l_count(lua_State *L)
{
    sl_fts *x = check_fts(L);
    sqlite3_stmt *st = x->st[ST_COUNT];
    if (sqlite3_step(st) != SQLITE_ROW) {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(x->db));
        sqlite3_reset(st);
        return 2;
    }
    lua_pushnumber(L, (lua_Number)sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    return 1;
}

/* Decodes the JSON text of column col with the module's cjson decoder
 * (upvalue 1); pushes the table, or nil when the text is not JSON. */
static void push_decoded(lua_State *L, sqlite3_stmt *st, int col)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushlstring(L, (const char *)sqlite3_column_text(st, col),
                    (size_t)sqlite3_column_bytes(st, col));
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* idx:get(id) -> doc | nil [, err]
 * The stored document as a table, or nil when absent. */
static int l_get(lua_State *L)
{
    sl_fts *x = check_fts(L);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    sqlite3_stmt *st = x->st[ST_GET];
    sqlite3_bind_text64(st, 1, id, n, SQLITE_STATIC, SQLITE_UTF8);
    int rc = sqlite3_step(st);
    int nret = 1;
    if (rc == SQLITE_ROW) {
        push_decoded(L, st, 0);
        if (lua_isnil(L, -1)) {
            lua_pushstring(L, "stored document is not valid json");
            nret = 2;
        }
    } else if (rc == SQLITE_DONE) {
        lua_pushnil(L);
    } else {
        push_db_error(L, x->db);
        nret = 2;
    }
    sqlite3_reset(st);
    return nret;
}

static int ids_next(lua_State *L)
{
    sl_ids *it = lua_touserdata(L, lua_upvalueindex(1));
    if (!it->owner)
        return 0;
    int rc = sqlite3_step(it->st);
    if (rc == SQLITE_ROW) {
        lua_pushlstring(L, (const char *)sqlite3_column_text(it->st, 0),
                        (size_t)sqlite3_column_bytes(it->st, 0));
        return 1;
    }
    if (rc == SQLITE_DONE) {
        ids_release(it);
        return 0;
    }
    lua_pushstring(L, sqlite3_errmsg(it->owner->db));
    ids_release(it);
    return lua_error(L);
}

static int ids_gc(lua_State *L)
{
    ids_release(lua_touserdata(L, 1));
    return 0;
}

/* idx:ids() -> iterator
 * For `for id in idx:ids()`: every id in insertion order, streamed from
 * one statement; a stepping error raises. Ends when the index closes. */
static int l_ids(lua_State *L)
{
    sl_fts *x = check_fts(L);
    char *sql = sqlite3_mprintf("SELECT id FROM \"%w_docs\" ORDER BY rowid", x->ident);
    sqlite3_stmt *st = NULL;
    int rc = sql ? sqlite3_prepare_v2(x->db, sql, -1, &st, NULL) : SQLITE_NOMEM;
    sqlite3_free(sql);
    if (rc != SQLITE_OK)
        return luaL_error(L, "%s", sqlite3_errmsg(x->db));
    sl_ids *it = lua_newuserdata(L, sizeof *it);
    *it = (sl_ids){x, st, NULL, x->iters};
    if (x->iters)
        x->iters->prev = it;
    x->iters = it;
    luaL_getmetatable(L, IDS_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 1); /* keep the index alive while iterating */
    lua_pushcclosure(L, ids_next, 2);
    return 1;
}

static lua_Integer opt_count(lua_State *L, int t, const char *field, lua_Integer def,
                             lua_Integer max)
{
    lua_getfield(L, t, field);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || n < 0 || n != (lua_Integer)n || n > max)
            luaL_argerror(L, t, lua_pushfstring(L, "%s must be an integer in 0..%d", field,
                                                (int)max));
        v = (lua_Integer)n;
    }
    lua_pop(L, 1);
    return v;
}

/* idx:search(text[, {limit=10, offset=0}]) -> {total=n, hits={...}} | nil, err
 * text is words, never FTS5 syntax; every word must match. Hits are
 * ranked by BM25 with title above body above the rest; each is
 * {id=, score=, title=, snippet=, doc=} with score higher for better hits
 * and snippet from the best column with [ ] around matches. */
static int l_search(lua_State *L)
{
    sl_fts *x = check_fts(L);
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    lua_Integer limit = 10, offset = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        limit = opt_count(L, 3, "limit", 10, SEARCH_MAX_LIMIT);
        offset = opt_count(L, 3, "offset", 0, 1000000000);
    }
    const char *err;
    if (sl_fts_query_build(&x->conn->q, text, n, &x->other, &err) != 0)
        return push_error(L, err);
    sqlite3_stmt *tot = x->st[ST_TOTAL], *st = x->st[ST_SEARCH];
    sqlite3_bind_text64(tot, 1, x->other.ptr, x->other.len, SQLITE_STATIC, SQLITE_UTF8);
    if (sqlite3_step(tot) != SQLITE_ROW) {
        push_db_error(L, x->db);
        sqlite3_reset(tot);
        return 2;
    }
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (lua_Number)sqlite3_column_int64(tot, 0));
    lua_setfield(L, -2, "total");
    sqlite3_reset(tot);
    lua_newtable(L); /* [res, hits] */
    sqlite3_bind_text64(st, 1, x->other.ptr, x->other.len, SQLITE_STATIC, SQLITE_UTF8);
    sqlite3_bind_int64(st, 2, limit);
    sqlite3_bind_int64(st, 3, offset);
    int rc, i = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        lua_createtable(L, 0, 5);
        lua_pushlstring(L, (const char *)sqlite3_column_text(st, 0),
                        (size_t)sqlite3_column_bytes(st, 0));
        lua_setfield(L, -2, "id");
        lua_pushnumber(L, -sqlite3_column_double(st, 1));
        lua_setfield(L, -2, "score");
        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
            lua_pushlstring(L, (const char *)sqlite3_column_text(st, 2),
                            (size_t)sqlite3_column_bytes(st, 2));
            lua_setfield(L, -2, "title");
        }
        lua_pushlstring(L, (const char *)sqlite3_column_text(st, 3),
                        (size_t)sqlite3_column_bytes(st, 3));
        lua_setfield(L, -2, "snippet");
        push_decoded(L, st, 4);
        lua_setfield(L, -2, "doc");
        lua_rawseti(L, -2, ++i);
    }
    if (rc != SQLITE_DONE) {
        push_db_error(L, x->db);
        sqlite3_reset(st);
        return 2;
    }
    sqlite3_reset(st);
    lua_setfield(L, -2, "hits");
    return 1;
}

static sl_fts_tokq *standalone_tokq(lua_State *L)
{
    static const char key = 0; /* registry key: its address */
    lua_pushlightuserdata(L, (void *)&key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    sl_fts_tokq *q = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (q)
        return q;
    q = lua_newuserdata(L, sizeof *q);
    memset(q, 0, sizeof *q);
    luaL_getmetatable(L, TOKQ_MT);
    lua_setmetatable(L, -2);
    char err[128];
    if (sqlite3_open_v2(":memory:", &q->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sl_fts_tokq_init(q, q->db, err, sizeof err) != 0) {
        luaL_error(L, "cannot set up the query tokenizer");
    }
    lua_pushlightuserdata(L, (void *)&key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return q;
}

static int tokq_gc(lua_State *L)
{
    sl_fts_tokq *q = lua_touserdata(L, 1);
    sl_fts_tokq_free(q);
    sqlite3_close_v2(q->db);
    q->db = NULL;
    return 0;
}

/* fts.query(text) -> match_expression | nil, err
 * The FTS5 expression idx:search runs for text: each word quoted, joined
 * by AND. */
static int l_query(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    sl_fts_tokq *q = standalone_tokq(L);
    sl_jsonbuf out;
    sl_jsonbuf_init(&out);
    const char *err;
    if (sl_fts_query_build(q, text, n, &out, &err) != 0) {
        sl_jsonbuf_free(&out);
        return push_error(L, err);
    }
    lua_pushlstring(L, out.ptr, out.len);
    sl_jsonbuf_free(&out);
    return 1;
}

/* fts.list(db_path) -> {name, ...} | nil, err
 * The index names in the file, sorted; {} when it holds none. */
static int l_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char err[256];
    sqlite3 *db = sl_sqlite_connect(path, 1, 5000, err, sizeof err);
    if (!db)
        return push_error(L, err);
    sqlite3_stmt *st = NULL;
    lua_newtable(L);
    int rc = sqlite3_prepare_v2(db,
                                "SELECT name FROM sluice_fts_indexes ORDER BY name", -1,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        /* a file with no index yet has no mapping table */
        int empty = strstr(sqlite3_errmsg(db), "no such table") != NULL;
        if (!empty) {
            push_db_error(L, db);
        }
        sqlite3_close_v2(db);
        return empty ? 1 : 2;
    }
    int i = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        lua_pushlstring(L, (const char *)sqlite3_column_text(st, 0),
                        (size_t)sqlite3_column_bytes(st, 0));
        lua_rawseti(L, -2, ++i);
    }
    int nret = 1;
    if (rc != SQLITE_DONE) {
        push_db_error(L, db);
        nret = 2;
    }
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    return nret;
}

int luaopen_sluice_sink_fts(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"put", l_put},     {"delete", l_delete}, {"flush", l_flush},   {"close", l_close},
        {"count", l_count}, {"get", l_get},       {"ids", l_ids},       {"search", l_search},
        {NULL, NULL}};
    /* a private cjson instance, so nobody's cjson settings change how stored
     * documents decode */
    lua_getfield(L, LUA_GLOBALSINDEX, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode"); /* [cjson, inst, decode] */
    lua_replace(L, -3);
    lua_pop(L, 1); /* [decode] */
    if (luaL_newmetatable(L, FTS_MT)) {
        lua_newtable(L);
        lua_pushvalue(L, -3);
        luaL_setfuncs(L, methods, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, fts_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 2);
    if (luaL_newmetatable(L, IDS_MT)) {
        lua_pushcfunction(L, ids_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TOKQ_MT)) {
        lua_pushcfunction(L, tokq_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, l_query);
    lua_setfield(L, -2, "query");
    lua_pushcfunction(L, l_list);
    lua_setfield(L, -2, "list");
    return 1;
}
