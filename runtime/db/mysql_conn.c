/*
 * sluice.mysql's step machine: Connector/C's non-blocking calls driven by
 * the runtime's libuv loop (the Lua API is in mysql.c).
 *
 * Every Connector/C call that may wait on the network has a _start/_cont
 * pair: _start returns a mask of what it waits for (readable, writable, a
 * timeout); we watch the connection's socket with a uv_poll and a uv_timer
 * and call _cont when it is ready. One operation of the Lua API (connect, a
 * query, a page of a cursor) is a short chain of such steps, run from a
 * state in the connection; the calling task yields until the chain ends,
 * unless it ends at once (a page already in the socket buffer), in which
 * case the results are returned without yielding.
 *
 * A cancelled task or an expired deadline cannot stop the server mid-reply,
 * so it aborts the connection (mariadb_cancel: every pending read fails at
 * once), runs the chain to its end and marks the connection lost.
 */
#include "mysql_conn.h"
#include "rowdoc.h"

#include <errmsg.h>
#include <lauxlib.h>
#include <math.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long next_gen = 1;

static void drive_async(sl_my_conn *c, int ready);

/* ---- small helpers ---------------------------------------------------- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void sl_my_close_handle(void *h)
{
    if (h)
        uv_close((uv_handle_t *)h, free_handle);
}

void sl_my_unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

static void wipe_free(char **p)
{
    if (*p) {
        volatile char *v = *p;
        while (*v)
            *v++ = 0;
        free(*p);
        *p = NULL;
    }
}

static void failf(sl_my_conn *c, const char *msg)
{
    if (c->failed)
        return; /* the first reason is the one worth reporting */
    c->failed = 1;
    snprintf(c->err, sizeof c->err, "%s", msg);
    c->sqlstate[0] = '\0';
}

/* Records the library's error for the operation under way. */
static void fail_my(sl_my_conn *c, unsigned no, const char *msg, const char *state)
{
    if (c->failed)
        return;
    c->failed = 1;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    if (no == CR_SERVER_GONE_ERROR || no == CR_SERVER_LOST || no == CR_ERR_NET_READ ||
        no == CR_ERR_NET_WRITE)
        c->broken = 1;
    if (c->lib_timeout) /* errno is stale then: the message would mislead */
        snprintf(c->err, sizeof c->err, "%s", c->op == OP_CONNECT ? "connect timeout" : "timeout");
    else if (c->op == OP_CONNECT && (no == CR_CONNECTION_ERROR || no == CR_CONN_HOST_ERROR) &&
        strstr(msg, "(111)"))
        snprintf(c->err, sizeof c->err, "connection refused (%s:%u)",
                 c->host ? c->host : "?", c->port);
    else if (no == ER_ACCESS_DENIED_ERROR)
        snprintf(c->err, sizeof c->err, "authentication failed: %s", msg);
    else if (c->op == OP_CONNECT)
        snprintf(c->err, sizeof c->err, "connect failed: %s", msg);
    else if (c->broken)
        snprintf(c->err, sizeof c->err, "connection lost: %s", msg);
    else
        snprintf(c->err, sizeof c->err, "mysql error %u: %s", no, msg);
}

static void fail_conn(sl_my_conn *c)
{
    fail_my(c, mysql_errno(c->my), mysql_error(c->my), mysql_sqlstate(c->my));
}

static void fail_stmt(sl_my_conn *c)
{
    fail_my(c, mysql_stmt_errno(c->stmt), mysql_stmt_error(c->stmt),
            mysql_stmt_sqlstate(c->stmt));
}

static void add_warning(sl_my_conn *c, const char *column, const char *msg)
{
    int n = snprintf(c->warnings + c->wlen, sizeof c->warnings - c->wlen, "%scolumn %s: %s",
                     c->wlen ? "; " : "", column, msg);
    if (n > 0)
        c->wlen += (size_t)n < sizeof c->warnings - c->wlen ? (size_t)n
                                                            : sizeof c->warnings - c->wlen - 1;
}

/* Reports the operation's warnings through sluice.log; a logging failure is
 * ignored (a warning must never fail a query). */
static void emit_warnings(sl_my_conn *c, lua_State *L)
{
    if (!c->wlen)
        return;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sluice.log");
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_istable(L, -1)) {
        lua_getfield(L, -1, "warn");
        lua_pushfstring(L, "mysql: %s", c->warnings);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "sluice.mysql");
        lua_setfield(L, -2, "source");
        lua_pcall(L, 2, 0, 0);
    }
    lua_settop(L, top);
    c->wlen = 0;
    c->warnings[0] = '\0';
}

/* ---- result sets ---------------------------------------------------- */

static void params_free(sl_my_conn *c)
{
    free(c->pbind);
    free(c->pvals);
    c->pbind = NULL;
    c->pvals = NULL;
    c->nparams = 0;
}

/* Forgets the open result's C state; the library side is already freed. */
static void result_forget(sl_my_conn *c, lua_State *L)
{
    if (c->bcols)
        for (unsigned i = 0; i < c->ncols; i++)
            free(c->bcols[i].buf);
    free(c->bcols);
    free(c->rbind);
    free(c->cols);
    c->bcols = NULL;
    c->rbind = NULL;
    c->cols = NULL;
    c->ncols = 0;
    c->res_active = 0;
    c->res_orphaned = 0;
    sl_my_unref(L, &c->cols_ref);
}

/* Frees the library's result state without waiting: only for when nothing
 * is left to read (after an error, or on an aborted connection). */
static void result_release_now(sl_my_conn *c, lua_State *L)
{
    if (c->binary && c->res) {
        mysql_free_result(c->res); /* metadata only */
        c->res = NULL;
    }
    if (c->stmt) {
        mysql_stmt_close(c->stmt);
        c->stmt = NULL;
    }
    if (c->res) {
        mysql_free_result(c->res);
        c->res = NULL;
    }
    result_forget(c, L);
}

/* Sets up the columns of a result that has just opened. */
static int result_open(sl_my_conn *c, lua_State *L, int binary)
{
    MYSQL_FIELD *f = mysql_fetch_fields(c->res);
    unsigned n = mysql_num_fields(c->res);
    char warn[160];

    c->binary = binary;
    c->ncols = n;
    c->cols = calloc(n ? n : 1, sizeof *c->cols);
    if (binary) {
        c->rbind = calloc(n ? n : 1, sizeof *c->rbind);
        c->bcols = calloc(n ? n : 1, sizeof *c->bcols);
    }
    if (!c->cols || (binary && (!c->rbind || !c->bcols))) {
        failf(c, "out of memory");
        return -1;
    }
    lua_createtable(L, (int)n, 0);
    for (unsigned i = 0; i < n; i++) {
        sl_my_col *col = &c->cols[i];
        int unmapped = sl_my_col_classify(&f[i], col);
        lua_createtable(L, 0, 3);
        lua_pushlstring(L, f[i].name, f[i].name_length);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, col->type);
        lua_setfield(L, -2, "type");
        if (unmapped) {
            snprintf(warn, sizeof warn, "type %s is not mapped: values are kept as %s",
                     col->type, col->is_unsigned ? "base64 strings" : "strings");
            lua_pushstring(L, warn);
            lua_setfield(L, -2, "warning");
            /* the caller knows the table and decides how to report it */
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "unknown");
        }
        lua_rawseti(L, -2, (int)i + 1);
        if (!binary)
            continue;
        MYSQL_BIND *b = &c->rbind[i];
        bcol *bc = &c->bcols[i];
        b->is_null = &bc->is_null;
        b->error = &bc->error;
        b->length = &bc->len;
        switch (col->kind) {
        case SL_MY_INT:
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &bc->v.i;
            b->is_unsigned = (my_bool)col->is_unsigned;
            break;
        case SL_MY_FLOAT:
            b->buffer_type = MYSQL_TYPE_FLOAT;
            b->buffer = &bc->v.f;
            break;
        case SL_MY_DOUBLE:
            b->buffer_type = MYSQL_TYPE_DOUBLE;
            b->buffer = &bc->v.d;
            break;
        case SL_MY_DATE:
        case SL_MY_DATETIME:
        case SL_MY_TIMESTAMP:
        case SL_MY_TIME:
            b->buffer_type = f[i].type;
            b->buffer = &bc->v.t;
            b->buffer_length = sizeof bc->v.t;
            break;
        default:
            bc->cap = BUF_START;
            bc->buf = malloc(bc->cap);
            if (!bc->buf) {
                failf(c, "out of memory");
                lua_pop(L, 1);
                return -1;
            }
            b->buffer_type = MYSQL_TYPE_BLOB; /* bytes as they are */
            b->buffer = bc->buf;
            b->buffer_length = bc->cap;
            break;
        }
    }
    if (c->op == OP_QUERY) {
        sl_my_unref(L, &c->q_cols_ref);
        lua_pushvalue(L, -1);
        c->q_cols_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    sl_my_unref(L, &c->cols_ref);
    c->cols_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (binary && n && mysql_stmt_bind_result(c->stmt, c->rbind)) {
        fail_stmt(c);
        return -1;
    }
    c->res_active = 1;
    c->res_orphaned = 0;
    c->res_gen = next_gen++;
    return 0;
}

/* A row is an array (one slot above the rows), or with a shape a
 * document (SL_ROWDOC_SLOTS slots until row_end). */
static void row_begin(sl_my_conn *c, lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->rows_ref);
    if (c->shape)
        sl_rowdoc_begin(L, c->shape);
    else
        lua_createtable(L, (int)c->ncols, 0);
}

/* Pops the value on top into the row being built, as column i. */
static void row_set(sl_my_conn *c, lua_State *L, unsigned i)
{
    if (c->shape)
        sl_rowdoc_set(L, c->shape, (int)i);
    else
        lua_rawseti(L, -2, (int)i + 1);
}

/* Drops a row given up half-way, and the rows table under it. */
static void row_abort(sl_my_conn *c, lua_State *L)
{
    lua_pop(L, 1 + (c->shape ? SL_ROWDOC_SLOTS : 1));
}

static void row_end(sl_my_conn *c, lua_State *L)
{
    if (c->shape)
        sl_rowdoc_end(L, c->shape);
    lua_rawseti(L, -2, (int)++c->nrows);
    lua_pop(L, 1);
}

static void push_value_warned(sl_my_conn *c, lua_State *L, unsigned i, const char *s, size_t len)
{
    char warn[160];
    if (sl_my_push_text(L, &c->cols[i], s, len, warn, sizeof warn) && !c->cols[i].warned) {
        c->cols[i].warned = 1; /* once per column and result set */
        add_warning(c, c->res ? mysql_fetch_fields(c->res)[i].name : "?", warn);
    }
}

static void push_row_text(sl_my_conn *c, lua_State *L)
{
    unsigned long *lens = mysql_fetch_lengths(c->res);
    row_begin(c, L);
    for (unsigned i = 0; i < c->ncols; i++) {
        push_value_warned(c, L, i, c->row[i], c->row[i] ? lens[i] : 0);
        row_set(c, L, i);
    }
    row_end(c, L);
}

static int push_row_stmt(sl_my_conn *c, lua_State *L)
{
    int rebind = 0;
    row_begin(c, L);
    for (unsigned i = 0; i < c->ncols; i++) {
        const sl_my_col *col = &c->cols[i];
        bcol *bc = &c->bcols[i];
        if (bc->is_null) {
            lua_pushnil(L);
        } else {
            switch (col->kind) {
            case SL_MY_INT: sl_my_push_int(L, bc->v.i, col->is_unsigned); break;
            case SL_MY_FLOAT: sl_my_push_float(L, col, bc->v.f); break;
            case SL_MY_DOUBLE: lua_pushnumber(L, bc->v.d); break;
            case SL_MY_DATE:
            case SL_MY_DATETIME:
            case SL_MY_TIMESTAMP:
            case SL_MY_TIME: sl_my_push_time(L, col, &bc->v.t); break;
            default:
                if (bc->len > bc->cap) { /* truncated: grow, read it again */
                    char *nb = realloc(bc->buf, bc->len);
                    if (!nb) {
                        row_abort(c, L);
                        failf(c, "out of memory");
                        return -1;
                    }
                    bc->buf = nb;
                    bc->cap = bc->len;
                    c->rbind[i].buffer = nb;
                    c->rbind[i].buffer_length = bc->cap;
                    if (mysql_stmt_fetch_column(c->stmt, &c->rbind[i], i, 0)) {
                        row_abort(c, L);
                        fail_stmt(c);
                        return -1;
                    }
                    rebind = 1;
                }
                push_value_warned(c, L, i, bc->buf, bc->len);
                break;
            }
        }
        row_set(c, L, i);
    }
    row_end(c, L);
    if (rebind && mysql_stmt_bind_result(c->stmt, c->rbind)) {
        fail_stmt(c);
        return -1;
    }
    return 0;
}

/* ---- the step machine ------------------------------------------------- */

/* Runs the current step's _start (first time) or _cont; a nonzero mask
 * means "wait for this", from inside the step function. */
#define CALL(start_expr, cont_expr)                          \
    do {                                                     \
        int st_ = c->started ? (cont_expr) : (start_expr);   \
        if (st_) {                                           \
            c->started = 1;                                  \
            return st_;                                      \
        }                                                    \
        c->started = 0;                                      \
    } while (0)

enum sl_my_step sl_my_drain_step(sl_my_conn *c)
{
    return c->binary ? S_STMT_CLOSE : S_FREE;
}

/* Advances the current step. Returns a MYSQL_WAIT_* mask to wait for, or 0
 * when the step finished (c->step then names the next one). */
static int step_once(sl_my_conn *c, int ready, lua_State *L)
{
    switch (c->step) {
    case S_DONE:
        return 0;
    case S_CONNECT:
        CALL(mysql_real_connect_start(&c->connect_ret, c->my, c->host, c->user, c->password,
                                      c->db, c->port, c->socket, 0),
             mysql_real_connect_cont(&c->connect_ret, c->my, ready));
        wipe_free(&c->password);
        if (!c->connect_ret)
            fail_conn(c);
        c->step = S_DONE;
        return 0;
    case S_QUERY:
        CALL(mysql_real_query_start(&c->iret, c->my, c->sql, c->sql_len),
             mysql_real_query_cont(&c->iret, c->my, ready));
        if (c->iret) {
            fail_conn(c);
            c->step = S_DONE;
            return 0;
        }
        if (mysql_field_count(c->my) == 0) {
            c->affected = mysql_affected_rows(c->my);
            c->insert_id = mysql_insert_id(c->my);
            c->binary = 0;
            c->step = S_NEXT_RESULT;
            return 0;
        }
        c->res = mysql_use_result(c->my);
        if (!c->res) {
            fail_conn(c);
            c->step = S_DONE;
            return 0;
        }
        if (result_open(c, L, 0) != 0) {
            mariadb_cancel(c->my); /* unread rows: the connection is unusable */
            c->broken = 1;
            result_release_now(c, L);
            c->step = S_DONE;
            return 0;
        }
        c->step = c->op == OP_OPEN ? S_DONE : S_FETCH_TEXT;
        return 0;
    case S_PREPARE:
        if (!c->started && !c->stmt && !(c->stmt = mysql_stmt_init(c->my))) {
            failf(c, "out of memory");
            c->step = S_DONE;
            return 0;
        }
        CALL(mysql_stmt_prepare_start(&c->iret, c->stmt, c->sql, c->sql_len),
             mysql_stmt_prepare_cont(&c->iret, c->stmt, ready));
        if (c->iret) {
            fail_stmt(c);
        } else if (mysql_stmt_param_count(c->stmt) != (unsigned long)c->nparams) {
            char msg[96];
            snprintf(msg, sizeof msg, "the statement takes %lu parameters, got %d",
                     mysql_stmt_param_count(c->stmt), c->nparams);
            failf(c, msg);
        } else if (mysql_stmt_bind_param(c->stmt, c->pbind)) {
            fail_stmt(c);
        }
        if (c->failed) {
            mysql_stmt_close(c->stmt); /* nothing to read: no wait */
            c->stmt = NULL;
            c->step = S_DONE;
            return 0;
        }
        c->step = S_EXECUTE;
        return 0;
    case S_EXECUTE:
        CALL(mysql_stmt_execute_start(&c->iret, c->stmt),
             mysql_stmt_execute_cont(&c->iret, c->stmt, ready));
        c->binary = 1;
        if (c->iret) {
            fail_stmt(c);
            result_release_now(c, L);
            c->step = S_DONE;
            return 0;
        }
        if (mysql_stmt_field_count(c->stmt) == 0) {
            c->affected = mysql_stmt_affected_rows(c->stmt);
            c->insert_id = mysql_stmt_insert_id(c->stmt);
            c->step = S_STMT_CLOSE;
            return 0;
        }
        c->res = mysql_stmt_result_metadata(c->stmt);
        if (!c->res || result_open(c, L, 1) != 0) {
            if (!c->res)
                fail_stmt(c);
            mariadb_cancel(c->my);
            c->broken = 1;
            result_release_now(c, L);
            c->step = S_DONE;
            return 0;
        }
        c->step = c->op == OP_OPEN ? S_DONE : S_FETCH_STMT;
        return 0;
    case S_FETCH_TEXT:
        for (;;) {
            CALL(mysql_fetch_row_start(&c->row, c->res),
                 mysql_fetch_row_cont(&c->row, c->res, ready));
            if (!c->row) {
                if (mysql_errno(c->my)) {
                    fail_conn(c);
                    result_release_now(c, L);
                    c->step = S_DONE;
                } else {
                    c->step = S_FREE;
                }
                return 0;
            }
            push_row_text(c, L);
            if (c->want && c->nrows >= c->want) {
                c->step = S_DONE;
                return 0;
            }
        }
    case S_FETCH_STMT:
        for (;;) {
            CALL(mysql_stmt_fetch_start(&c->iret, c->stmt),
                 mysql_stmt_fetch_cont(&c->iret, c->stmt, ready));
            if (c->iret == MYSQL_NO_DATA) {
                c->step = S_STMT_CLOSE;
                return 0;
            }
            if ((c->iret != 0 && c->iret != MYSQL_DATA_TRUNCATED) ||
                push_row_stmt(c, L) != 0) {
                if (!c->failed)
                    fail_stmt(c);
                mariadb_cancel(c->my); /* rows may be left unread */
                c->broken = 1;
                result_release_now(c, L);
                c->step = S_DONE;
                return 0;
            }
            if (c->want && c->nrows >= c->want) {
                c->step = S_DONE;
                return 0;
            }
        }
    case S_FREE:
        CALL(mysql_free_result_start(c->res), mysql_free_result_cont(c->res, ready));
        c->res = NULL;
        c->step = S_NEXT_RESULT;
        return 0;
    case S_NEXT_RESULT:
        if (!c->started && !mysql_more_results(c->my)) {
            result_forget(c, L);
            c->step = S_DONE;
            return 0;
        }
        CALL(mysql_next_result_start(&c->iret, c->my),
             mysql_next_result_cont(&c->iret, c->my, ready));
        if (c->iret > 0) {
            fail_conn(c);
            result_forget(c, L);
            c->step = S_DONE;
        } else if (c->iret == 0 && mysql_field_count(c->my) > 0) {
            c->res = mysql_use_result(c->my); /* a further result nobody asked for */
            c->step = c->res ? S_FREE : S_NEXT_RESULT;
        }
        return 0;
    case S_STMT_CLOSE:
        if (!c->started && c->res) {
            mysql_free_result(c->res); /* metadata: no I/O */
            c->res = NULL;
        }
        CALL(mysql_stmt_close_start(&c->bret, c->stmt),
             mysql_stmt_close_cont(&c->bret, c->stmt, ready));
        c->stmt = NULL;
        result_forget(c, L);
        c->step = S_DONE;
        return 0;
    }
    return 0;
}

/* Runs steps until one must wait (returns its mask) or the operation ends
 * (returns 0). After a drain, continues with the step that was waiting for
 * it, unless the drain failed. */
static int run_steps(sl_my_conn *c, int ready, lua_State *L)
{
    for (;;) {
        if (c->step == S_DONE) {
            if (c->after == S_DONE || c->failed)
                return 0;
            c->step = c->after;
            c->after = S_DONE;
            c->started = 0;
        }
        int st = step_once(c, ready, L);
        ready = 0;
        if (st)
            return st;
    }
}

static void on_poll(uv_poll_t *p, int status, int events);
static void on_timer(uv_timer_t *t);

/* Watches for what the library waits for. Returns 0, or -1 when the socket
 * cannot be watched. */
static int watch(sl_my_conn *c, int st)
{
    uv_os_sock_t fd = mysql_get_socket(c->my);
    int ev = 0;
    if (st & MYSQL_WAIT_READ)
        ev |= UV_READABLE;
    if (st & MYSQL_WAIT_WRITE)
        ev |= UV_WRITABLE;
    if (st & MYSQL_WAIT_EXCEPT)
        ev |= UV_PRIORITIZED;
    if (ev) {
        if (fd < 0)
            return -1;
        if (c->poll && c->poll_fd != fd) { /* a new socket (connect retries) */
            sl_my_close_handle(c->poll);
            c->poll = NULL;
        }
        if (!c->poll) {
            c->poll = malloc(sizeof *c->poll);
            if (!c->poll || uv_poll_init_socket(c->rt->loop, c->poll, fd) != 0) {
                free(c->poll);
                c->poll = NULL;
                return -1;
            }
            c->poll->data = c;
            c->poll_fd = fd;
        }
        if (uv_poll_start(c->poll, ev, on_poll) != 0)
            return -1;
    }
    if (st & MYSQL_WAIT_TIMEOUT) {
        /* the loop's clock is stale after a task ran long (or blocked):
         * refresh it, or the timeout fires early */
        uv_update_time(c->rt->loop);
        uv_timer_start(c->timer, on_timer, mysql_get_timeout_value_ms(c->my), 0);
    }
    return 0;
}

static void unwatch(sl_my_conn *c)
{
    if (c->poll)
        uv_poll_stop(c->poll);
    uv_timer_stop(c->timer);
}

/* Pushes the finished operation's results on L and resets the operation;
 * `log_L` runs the warning logger. Returns the number of values. */
static int finish(sl_my_conn *c, lua_State *L, lua_State *log_L)
{
    int n;
    enum sl_my_op op = c->op;
    uv_timer_stop(c->deadline);
    unwatch(c);
    c->op = OP_NONE;
    c->after = S_DONE;
    params_free(c);
    wipe_free(&c->password);
    emit_warnings(c, log_L);
    if (c->failed) {
        if (op == OP_CONNECT && c->my) {
            if (c->poll) {
                sl_my_close_handle(c->poll);
                c->poll = NULL;
            }
            mysql_close(c->my);
            c->my = NULL;
        }
        lua_pushnil(L);
        lua_pushstring(L, c->err);
        n = 2;
        if (c->sqlstate[0]) {
            lua_pushstring(L, c->sqlstate);
            n = 3;
        }
    } else {
        switch (op) {
        case OP_CONNECT:
            lua_rawgeti(L, LUA_REGISTRYINDEX, c->args_ref);
            lua_getfield(L, -1, "conn");
            lua_remove(L, -2);
            n = 1;
            break;
        case OP_QUERY:
            lua_createtable(L, 0, 4);
            if (c->q_cols_ref != LUA_NOREF)
                lua_rawgeti(L, LUA_REGISTRYINDEX, c->q_cols_ref);
            else
                lua_newtable(L);
            lua_setfield(L, -2, "columns");
            lua_rawgeti(L, LUA_REGISTRYINDEX, c->rows_ref);
            lua_setfield(L, -2, "rows");
            lua_pushnumber(L, (lua_Number)(c->nrows ? (unsigned long long)c->nrows
                                                   : c->affected));
            lua_setfield(L, -2, "affected");
            if (c->insert_id) {
                lua_pushnumber(L, (lua_Number)c->insert_id);
                lua_setfield(L, -2, "insert_id");
            }
            n = 1;
            break;
        case OP_OPEN: {
            lua_rawgeti(L, LUA_REGISTRYINDEX, c->args_ref);
            lua_getfield(L, -1, "cursor");
            lua_remove(L, -2);
            sl_my_cursor *cur = lua_touserdata(L, -1);
            if (c->res_active) {
                cur->gen = c->res_gen;
                lua_rawgeti(L, LUA_REGISTRYINDEX, c->cols_ref);
                cur->cols_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            } else { /* no result set (an INSERT): born exhausted */
                cur->done = 1;
            }
            n = 1;
            break;
        }
        case OP_FETCH:
            lua_rawgeti(L, LUA_REGISTRYINDEX, c->rows_ref);
            n = 1;
            break;
        default:
            lua_pushboolean(L, 1);
            n = 1;
            break;
        }
    }
    sl_my_unref(L, &c->q_cols_ref);
    sl_my_unref(L, &c->rows_ref);
    sl_my_unref(L, &c->args_ref);
    return n;
}

/* Stops the operation under way without resuming anyone: the connection is
 * shut (so every pending read fails at once), the step chain is run to its
 * end, and the connection is marked lost. */
static void abort_op(sl_my_conn *c, lua_State *L)
{
    unwatch(c);
    uv_timer_stop(c->deadline);
    if (c->my && c->op != OP_NONE) {
        mariadb_cancel(c->my);
        int ready = MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT;
        for (int i = 0; i < 32 && c->step != S_DONE; i++) {
            int st = step_once(c, ready, L);
            ready = st ? st : ready;
        }
        c->broken = 1;
        if (c->res_active || c->res || c->stmt)
            result_release_now(c, L);
    }
}

static void on_cancel(void *data)
{
    sl_my_conn *c = data;
    lua_State *L = c->rt->L;
    c->waiter = NULL;
    abort_op(c, L);
    c->failed = 1;
    int top = lua_gettop(L);
    finish(c, L, L); /* drops the refs; the values are nobody's */
    lua_settop(L, top);
}

static void on_deadline(uv_timer_t *t)
{
    sl_my_conn *c = t->data;
    sl_task *task = c->waiter;
    abort_op(c, c->rt->L);
    c->failed = 0;
    failf(c, c->op == OP_CONNECT ? "connect timeout" : "query timeout");
    c->waiter = NULL;
    int n = finish(c, task->co, c->rt->L);
    sl_task_resume(task, n);
}

static void drive_async(sl_my_conn *c, int ready)
{
    lua_State *L = c->rt->L;
    int st = run_steps(c, ready, L);
    if (st && watch(c, st) == 0)
        return;
    if (st) {
        abort_op(c, L);
        failf(c, "cannot watch the connection's socket");
    }
    sl_task *task = c->waiter;
    c->waiter = NULL;
    int n = finish(c, task->co, L);
    sl_task_resume(task, n);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sl_my_conn *c = p->data;
    int ready = 0;
    unwatch(c);
    if (status < 0) /* let the library try, see the error, and say it */
        ready = MYSQL_WAIT_READ | MYSQL_WAIT_WRITE;
    if (events & UV_READABLE)
        ready |= MYSQL_WAIT_READ;
    if (events & UV_WRITABLE)
        ready |= MYSQL_WAIT_WRITE;
    if (events & UV_PRIORITIZED)
        ready |= MYSQL_WAIT_EXCEPT;
    if (c->waiter)
        drive_async(c, ready);
}

static void on_timer(uv_timer_t *t)
{
    sl_my_conn *c = t->data;
    unwatch(c);
    c->lib_timeout = 1;
    if (c->waiter)
        drive_async(c, MYSQL_WAIT_TIMEOUT);
}

/* Starts operation `op` at step `first`, with the args table (anchoring
 * strings and userdata) on top of L. Returns the results at once if the
 * chain ends without waiting, else yields the task. */
int sl_my_run_op(lua_State *L, sl_my_conn *c, enum sl_my_op op, enum sl_my_step first,
                 double timeout)
{
    sl_task *task = sl_task_check_current(L);
    c->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->op = op;
    c->failed = 0;
    c->lib_timeout = 0;
    c->err[0] = '\0';
    c->sqlstate[0] = '\0';
    c->started = 0;
    c->affected = c->insert_id = 0;
    c->after = S_DONE;
    if (c->res_active && c->res_orphaned && op != OP_FETCH && op != OP_CLOSE) {
        c->step = sl_my_drain_step(c);
        c->after = first;
    } else {
        c->step = first;
    }
    int st = run_steps(c, 0, L);
    if (st && watch(c, st) != 0) {
        abort_op(c, L);
        failf(c, "cannot watch the connection's socket");
        st = 0;
    }
    if (!st)
        return finish(c, L, L);
    c->waiter = task;
    uv_update_time(c->rt->loop); /* as in watch() */
    if (timeout > 0)
        uv_timer_start(c->deadline, on_deadline, (uint64_t)ceil(timeout * 1000.0), 0);
    return sl_task_await(L, on_cancel, c);
}

/* Closes the connection now, without waiting on the network: an open
 * result is abandoned (the server stops on the closed socket). Never
 * fails. */
void sl_my_conn_shutdown(sl_my_conn *c, lua_State *L)
{
    if (c->op != OP_NONE) {
        c->waiter = NULL;
        abort_op(c, L);
        c->op = OP_NONE;
        params_free(c);
        sl_my_unref(L, &c->rows_ref);
        sl_my_unref(L, &c->args_ref);
    }
    if (c->my && (c->res_active || c->res || c->stmt)) {
        mariadb_cancel(c->my);
        result_release_now(c, L);
    }
    if (c->poll) { /* before the socket goes: libuv's rule */
        sl_my_close_handle(c->poll);
        c->poll = NULL;
    }
    if (c->my) {
        mysql_close(c->my);
        c->my = NULL;
    }
    sl_my_unref(L, &c->cols_ref);
    wipe_free(&c->password);
    free(c->host);
    free(c->user);
    free(c->db);
    free(c->socket);
    c->host = c->user = c->db = c->socket = NULL;
}

int sl_my_bind_params(lua_State *L, sl_my_conn *c, int first, int n)
{
    c->nparams = n;
    if (n == 0)
        return 0;
    c->pbind = calloc((size_t)n, sizeof *c->pbind);
    c->pvals = calloc((size_t)n, sizeof *c->pvals);
    if (!c->pbind || !c->pvals) {
        params_free(c);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        MYSQL_BIND *b = &c->pbind[i];
        pval *v = &c->pvals[i];
        int idx = first + i;
        b->is_null = &v->is_null;
        b->length = &v->len;
        switch (lua_type(L, idx)) {
        case LUA_TBOOLEAN:
            v->v.b = (signed char)lua_toboolean(L, idx);
            b->buffer_type = MYSQL_TYPE_TINY;
            b->buffer = &v->v.b;
            break;
        case LUA_TNUMBER: {
            double d = lua_tonumber(L, idx);
            if (d == floor(d) && fabs(d) < 9.2e18) {
                v->v.i = (long long)d;
                b->buffer_type = MYSQL_TYPE_LONGLONG;
                b->buffer = &v->v.i;
            } else {
                v->v.d = d;
                b->buffer_type = MYSQL_TYPE_DOUBLE;
                b->buffer = &v->v.d;
            }
            break;
        }
        case LUA_TSTRING: {
            size_t len;
            b->buffer = (void *)lua_tolstring(L, idx, &len);
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer_length = len;
            v->len = len;
            break;
        }
        default: /* nil, json.null */
            b->buffer_type = MYSQL_TYPE_NULL;
            v->is_null = 1;
            break;
        }
    }
    return 0;
}

