/*
 * sluice.mysql: a MySQL/MariaDB client for connector scripts, on MariaDB
 * Connector/C's non-blocking API, driven by the runtime's libuv loop (the
 * step machine is in mysql_conn.c, the value mapping in mysql_types.c).
 *
 * Queries without parameters use the text protocol; with parameters, a
 * server-side prepared statement (values are bound, never spliced into the
 * SQL). Either way rows are read unbuffered (mysql_use_result, or
 * mysql_stmt_fetch without storing), so a cursor holds one page of rows
 * whatever the table's size.
 *
 * One connection runs one operation at a time; an open cursor owns its
 * connection until it is exhausted or closed. A cursor dropped without
 * close() is drained before the connection's next operation. The
 * connection's C state outlives its userdata while cursors point at it
 * (at lua_close the order of finalisers is not ours to choose).
 */
#include "mysql_conn.h"
#include "rowdoc.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "sluice.mysql.conn"
#define CURSOR_MT "sluice.mysql.cursor"

typedef struct conn_ud {
    sl_my_conn *c;
} conn_ud;

static int push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* ---- connections ------------------------------------------------------ */

static sl_my_conn *check_conn(lua_State *L, int idx)
{
    conn_ud *u = luaL_checkudata(L, idx, CONN_MT);
    return u->c;
}

/* Returns NULL when c can start an operation, else the reason. */
static const char *conn_unusable(sl_my_conn *c)
{
    if (!c->my)
        return "connection closed";
    if (c->op != OP_NONE)
        return "connection busy";
    if (c->broken)
        return "connection lost";
    return NULL;
}

static const char *opt_string(lua_State *L, const char *key, const char *def)
{
    lua_getfield(L, 1, key);
    const char *s = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad option '%s' (string expected, got %s)", key, luaL_typename(L, -1));
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the string stays alive: it is in the options table */
    return s;
}

static double opt_number(lua_State *L, const char *key, double def, double lo, double hi)
{
    lua_getfield(L, 1, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "bad option '%s' (number expected, got %s)", key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi))
            luaL_error(L, "bad option '%s' (out of range)", key);
    }
    lua_pop(L, 1);
    return v;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* mysql.connect{host=, port=, user=, password=, database=, socket=,
 *   ssl_mode=, ssl_ca=, connect_timeout=, query_timeout=, charset=}
 *   -> conn | nil, err */
static int l_connect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    sl_task_check_current(L);
    const char *host = opt_string(L, "host", "localhost");
    const char *user = opt_string(L, "user", opt_string(L, "username", NULL));
    const char *password = opt_string(L, "password", NULL);
    const char *db = opt_string(L, "database", NULL);
    const char *sock = opt_string(L, "socket", NULL);
    const char *ssl_mode = opt_string(L, "ssl_mode", "disable");
    const char *ssl_ca = opt_string(L, "ssl_ca", NULL);
    const char *charset = opt_string(L, "charset", "utf8mb4");
    double port = opt_number(L, "port", 3306, 0, 65535);
    double connect_timeout = opt_number(L, "connect_timeout", 10, 0.001, 86400);
    double query_timeout = opt_number(L, "query_timeout", 0, 0, 1e9);
    int mode;
    if (strcmp(ssl_mode, "disable") == 0)
        mode = 0;
    else if (strcmp(ssl_mode, "require") == 0)
        mode = 1;
    else if (strcmp(ssl_mode, "verify-ca") == 0)
        mode = 2;
    else if (strcmp(ssl_mode, "verify-full") == 0)
        mode = 3;
    else
        return luaL_error(L, "bad option 'ssl_mode' (disable, require, verify-ca or verify-full)");
    if (strcmp(charset, "utf8mb4") != 0)
        return luaL_error(L, "bad option 'charset' (only utf8mb4 is supported)");
    if (port != floor(port))
        return luaL_error(L, "bad option 'port' (integer expected)");

    conn_ud *u = lua_newuserdata(L, sizeof *u);
    u->c = NULL;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    int ud = lua_gettop(L);
    sl_my_conn *c = calloc(1, sizeof *c);
    if (!c)
        return push_fail(L, "out of memory");
    u->c = c;
    c->rt = sl_rt_get(L);
    c->args_ref = c->cols_ref = c->q_cols_ref = c->rows_ref = LUA_NOREF;
    c->refs = 1;
    c->connect_timeout = connect_timeout;
    c->query_timeout = query_timeout;
    c->timer = malloc(sizeof *c->timer);
    c->deadline = malloc(sizeof *c->deadline);
    if (!c->timer || !c->deadline) {
        free(c->timer);
        free(c->deadline);
        c->timer = c->deadline = NULL;
        return push_fail(L, "out of memory");
    }
    uv_timer_init(c->rt->loop, c->timer);
    uv_timer_init(c->rt->loop, c->deadline);
    c->timer->data = c->deadline->data = c;

    c->my = mysql_init(NULL);
    if (!c->my)
        return push_fail(L, "out of memory");
    unsigned int ct = (unsigned int)ceil(connect_timeout), zero = 0;
    my_bool on = 1, off = 0;
    mysql_options(c->my, MYSQL_OPT_NONBLOCK, 0);
    mysql_options(c->my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_options(c->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* TIMESTAMP values come back in UTC whatever the server's zone */
    mysql_options(c->my, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
    mysql_options(c->my, MYSQL_OPT_LOCAL_INFILE, &zero); /* no file reads on the server's say */
    if (mode > 0) {
        mysql_options(c->my, MYSQL_OPT_SSL_ENFORCE, &on);
        if (ssl_ca)
            mysql_options(c->my, MYSQL_OPT_SSL_CA, ssl_ca);
        mysql_options(c->my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, mode == 3 ? &on : &off);
    }
    c->host = dup_or_null(host);
    c->user = dup_or_null(user);
    c->password = dup_or_null(password);
    c->db = dup_or_null(db);
    c->socket = dup_or_null(sock);
    c->port = (unsigned)port;
    if ((host && !c->host) || (user && !c->user) || (password && !c->password) ||
        (db && !c->db) || (sock && !c->socket))
        return push_fail(L, "out of memory");

    lua_createtable(L, 0, 1);
    lua_pushvalue(L, ud);
    lua_setfield(L, -2, "conn");
    return sl_my_run_op(L, c, OP_CONNECT, S_CONNECT, connect_timeout);
}

/* Binds the parameters at stack indexes first..first+n-1 (already anchored
 * in the args table, so their strings outlive the operation). Raises on a
 * type that cannot be bound, before anything is allocated. */
static void check_params(lua_State *L, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        int t = lua_type(L, i);
        if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL)
            continue; /* json.null */
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            luaL_error(L, "bad parameter #%d (nil, boolean, number or string expected, got %s)",
                       i - first + 1, luaL_typename(L, i));
    }
}

/* Starts a statement: sql at index 2, its n parameters from `first`. The
 * args table on top anchors them. */
static int start_statement(lua_State *L, sl_my_conn *c, int first, int n, enum sl_my_op op)
{
    size_t len;
    c->sql = lua_tolstring(L, 2, &len);
    c->sql_len = len;
    if (sl_my_bind_params(L, c, first, n) != 0) {
        lua_pop(L, 1);
        return push_fail(L, "out of memory");
    }
    c->nrows = 0;
    c->want = 0;
    c->shape = NULL;
    lua_newtable(L);
    c->rows_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return sl_my_run_op(L, c, op, n ? S_PREPARE : S_QUERY, c->query_timeout);
}

/* conn:query(sql, ...) -> {columns={{name=, type=}...}, rows={{...}...},
 *   affected=n, insert_id=n|nil} | nil, err[, sqlstate] */
static int l_query(lua_State *L)
{
    sl_my_conn *c = check_conn(L, 1);
    luaL_checktype(L, 2, LUA_TSTRING);
    int n = lua_gettop(L) - 2;
    check_params(L, 3, n);
    sl_task_check_current(L);
    const char *why = conn_unusable(c);
    if (why)
        return push_fail(L, why);
    if (c->res_active && !c->res_orphaned)
        return push_fail(L, "connection busy: a cursor is open");
    lua_createtable(L, n + 2, 0); /* args: sql, params... */
    for (int i = 2; i <= n + 2; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - 1);
    }
    return start_statement(L, c, 3, n, OP_QUERY);
}

/* conn:cursor(sql[, params][, {fetch_size=N}]) -> cur | nil, err[, sqlstate]
 * params is an array (its `n` field counts trailing nils). */
static int l_cursor(lua_State *L)
{
    sl_my_conn *c = check_conn(L, 1);
    luaL_checktype(L, 2, LUA_TSTRING);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer fetch_size = 1000;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "fetch_size");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 1)
                return luaL_error(L, "bad option 'fetch_size' (positive number expected)");
            fetch_size = (lua_Integer)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
    }
    int n = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "n");
        n = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_objlen(L, 3);
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    luaL_checkstack(L, n + 8, "too many parameters");
    for (int i = 1; i <= n; i++)
        lua_rawgeti(L, 3, i); /* params now at 4 .. 3+n */
    check_params(L, 4, n);
    sl_task_check_current(L);
    const char *why = conn_unusable(c);
    if (why)
        return push_fail(L, why);
    if (c->res_active && !c->res_orphaned)
        return push_fail(L, "connection busy: a cursor is open");

    sl_my_cursor *cur = lua_newuserdata(L, sizeof *cur);
    memset(cur, 0, sizeof *cur);
    cur->c = c;
    c->refs++;
    cur->cols_ref = LUA_NOREF;
    cur->fetch_size = fetch_size;
    lua_pushvalue(L, 1);
    cur->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_getmetatable(L, CURSOR_MT);
    lua_setmetatable(L, -2);
    int cur_idx = lua_gettop(L);

    lua_createtable(L, n + 2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1);
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, 4 + i);
        lua_rawseti(L, -2, i + 2);
    }
    lua_pushvalue(L, cur_idx);
    lua_setfield(L, -2, "cursor");
    return start_statement(L, c, 4, n, OP_OPEN);
}

/* conn:close() -> true. Abandons an open cursor; never waits. */
static int l_close(lua_State *L)
{
    sl_my_conn *c = check_conn(L, 1);
    if (c->op != OP_NONE)
        return push_fail(L, "connection busy");
    sl_my_conn_shutdown(c, L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_conn_gc(lua_State *L)
{
    conn_ud *u = luaL_checkudata(L, 1, CONN_MT);
    sl_my_conn *c = u->c;
    if (!c)
        return 0;
    sl_my_conn_shutdown(c, L);
    sl_my_close_handle(c->timer);
    sl_my_close_handle(c->deadline);
    c->timer = c->deadline = NULL;
    u->c = NULL;
    if (--c->refs == 0)
        free(c);
    return 0;
}

static int l_conn_tostring(lua_State *L)
{
    sl_my_conn *c = check_conn(L, 1);
    lua_pushfstring(L, "sluice.mysql.conn (%s)", c && c->my ? "open" : "closed");
    return 1;
}

/* ---- cursors ---------------------------------------------------------- */

static sl_my_cursor *check_cursor(lua_State *L)
{
    return luaL_checkudata(L, 1, CURSOR_MT);
}

/* Whether the cursor's result set is still the connection's open one. */
static int cursor_live(sl_my_cursor *cur)
{
    sl_my_conn *c = cur->c;
    return !cur->done && c && c->my && c->res_active && c->res_gen == cur->gen;
}

/* cur:fetch() -> rows (up to fetch_size arrays) | {} at the end | nil, err */
static int l_fetch(lua_State *L)
{
    sl_my_cursor *cur = check_cursor(L);
    sl_task_check_current(L);
    sl_my_conn *c = cur->c;
    if (!cursor_live(cur)) {
        if (!cur->done && c && !c->my)
            return push_fail(L, "connection closed");
        cur->done = 1;
        lua_newtable(L);
        return 1;
    }
    const char *why = conn_unusable(c);
    if (why)
        return push_fail(L, why);
    c->nrows = 0;
    c->want = cur->fetch_size;
    c->shape = cur->shape;
    lua_newtable(L);
    c->rows_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "cursor");
    return sl_my_run_op(L, c, OP_FETCH, c->binary ? S_FETCH_STMT : S_FETCH_TEXT, c->query_timeout);
}

/* cur:shape(spec | nil): from the next fetch on, rows come as documents
 * built in C (see rowdoc.h); nil goes back to row arrays. */
static int l_shape(lua_State *L)
{
    sl_my_cursor *cur = check_cursor(L);
    int ncols = 0;
    if (cur->cols_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, cur->cols_ref);
        ncols = (int)lua_objlen(L, -1);
        lua_pop(L, 1);
    }
    sl_rowdoc *s = lua_isnoneornil(L, 2) ? NULL : sl_rowdoc_new(L, 2, ncols);
    if (cur->c && cur->c->shape == cur->shape)
        cur->c->shape = NULL;
    sl_rowdoc_free(L, cur->shape);
    cur->shape = s;
    return 0;
}

/* cur:columns() -> {{name=, type=[, warning=]}, ...} */
static int l_columns(lua_State *L)
{
    sl_my_cursor *cur = check_cursor(L);
    if (cur->cols_ref == LUA_NOREF)
        lua_newtable(L);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, cur->cols_ref);
    return 1;
}

/* cur:close() -> true | nil, err. Reads and discards the rest of the
 * result, so the connection can run the next query. */
static int l_cursor_close(lua_State *L)
{
    sl_my_cursor *cur = check_cursor(L);
    if (!cursor_live(cur)) {
        cur->done = 1;
        lua_pushboolean(L, 1);
        return 1;
    }
    sl_task_check_current(L);
    sl_my_conn *c = cur->c;
    const char *why = conn_unusable(c);
    if (why)
        return push_fail(L, why);
    cur->done = 1;
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "cursor");
    return sl_my_run_op(L, c, OP_CLOSE, sl_my_drain_step(c), c->query_timeout);
}

static int l_cursor_gc(lua_State *L)
{
    sl_my_cursor *cur = check_cursor(L);
    if (cursor_live(cur))
        cur->c->res_orphaned = 1; /* drained before the next operation */
    sl_my_unref(L, &cur->cols_ref);
    sl_my_unref(L, &cur->conn_ref);
    if (cur->c && cur->c->shape == cur->shape)
        cur->c->shape = NULL;
    sl_rowdoc_free(L, cur->shape);
    cur->shape = NULL;
    /* at lua_close the connection may be finalised first: the struct
     * lives until its last cursor goes */
    if (cur->c && --cur->c->refs == 0)
        free(cur->c);
    cur->c = NULL;
    return 0;
}

/* ---- module ----------------------------------------------------------- */

/* mysql.escape_identifier(name) -> "`name`" with backticks doubled */
static int l_escape_identifier(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (memchr(s, '\0', len))
        return luaL_argerror(L, 1, "identifier contains a NUL byte");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '`');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '`')
            luaL_addchar(&b, '`');
        luaL_addchar(&b, s[i]);
    }
    luaL_addchar(&b, '`');
    luaL_pushresult(&b);
    return 1;
}

int luaopen_sluice_mysql(lua_State *L)
{
    static const luaL_Reg conn_methods[] = {
        {"query", l_query}, {"cursor", l_cursor}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg cursor_methods[] = {
        {"fetch", l_fetch}, {"columns", l_columns}, {"shape", l_shape},
        {"close", l_cursor_close}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"connect", l_connect}, {"escape_identifier", l_escape_identifier}, {NULL, NULL}};

    /* the client library's global state, once per process */
    static int lib_ready = 0;
    if (!lib_ready) {
        mysql_library_init(0, NULL, NULL);
        lib_ready = 1;
    }
    if (luaL_newmetatable(L, CONN_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_conn_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_conn_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CURSOR_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, cursor_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_cursor_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}

