/*
 * sluice.pg: PostgreSQL through libpq in non-blocking mode, its socket
 * polled on the runtime's libuv loop, so a query yields only its own task.
 *
 * Shape: one operation at a time per connection. An operation is a short
 * chain of statements (a cursor opens with BEGIN, DECLARE, FETCH) driven by
 * socket readiness; when the chain ends, the result is converted to Lua on
 * the waiting task's coroutine and the task resumes. Results come in text
 * format and are mapped by type OID (pg_types.c); OIDs that are not built in
 * (enums, extension types) are looked up in pg_type once per connection, as
 * one more statement in the chain, before the rows are converted.
 *
 * Streaming uses a server-side cursor (DECLARE ... NO SCROLL CURSOR inside a
 * transaction, FETCH FORWARD n): the client holds at most one batch, however
 * big the table, and other statements can still run on the connection
 * between fetches. The first batch is fetched when the cursor opens, so
 * cur:columns() is known at once.
 *
 * A cursor opened with {prefetch = true} asks for its next batch as soon as
 * it hands one out, with no task waiting (a "prefetch"): the server reads
 * rows while the caller works on the batch it has, instead of after it
 * asks. The landed batch waits in the cursor; a fetch that comes first
 * joins the one in flight. Until such a cursor is closed (close waits for
 * a prefetch in flight) the connection runs nothing else: other operations
 * get "connection busy".
 *
 * Names are resolved with uv_getaddrinfo before libpq connects (libpq's own
 * lookup would block the loop), and connect_timeout is a libuv timer (libpq
 * honours it only in blocking mode). A task cancelled mid-operation closes
 * the connection: the protocol state of a half-read result cannot be reused.
 */
#include "core/rt.h"
#include "codec/json.h"
#include "pg_types.h"
#include "rowdoc.h"

#include <lauxlib.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "sluice.pg.conn"
#define CURSOR_MT "sluice.pg.cursor"
#define MAX_STMTS 4
#define SESSION_OPTIONS                                                              \
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 "                \
    "-c extra_float_digits=1 -c bytea_output=hex"

enum op_kind { OP_NONE, OP_CONNECT, OP_QUERY, OP_CURSOR_OPEN, OP_FETCH, OP_CURSOR_CLOSE };

typedef struct pg_stmt {
    char *sql;
    int nparams;
    char **values; /* NULL entries are SQL NULL */
    int extended;  /* one statement only (extended protocol), even without parameters */
} pg_stmt;

typedef struct pg_cursor pg_cursor;

typedef struct pg_conn {
    PGconn *pg;
    sl_rt *rt;
    uv_poll_t *poll;
    int poll_events;
    uv_timer_t *timer;
    uv_getaddrinfo_t *resolve;
    sl_task *waiter;
    enum op_kind op;
    pg_stmt stmts[MAX_STMTS];
    int nstmts, cur_stmt, keep; /* keep: index of the statement whose rows we return */
    int flushing, lookup, rollback_on_error;
    int sync; /* the operation is still starting on the caller's stack */
    PGresult *kept, *error;
    char errmsg[256];
    int ud_ref;  /* registry: the conn userdata while connecting */
    int cur_ref; /* registry: the cursor userdata while opening or fetching */
    pg_cursor *cur;
    int prefetching; /* the OP_FETCH in flight has no waiter: its batch lands in cur */
    int close_after; /* the OP_FETCH in flight ends in closing its cursor */
    sl_pg_typecache types; /* user types seen on this connection */
    int tx_own;     /* we opened the transaction the cursors live in */
    int tx_cursors; /* cursors open in it */
    unsigned cursor_seq;
    char **kw, **vals; /* connect parameters, kept while resolving */
    char *host;
    int closed;
} pg_conn;

struct pg_cursor {
    pg_conn *c;
    char name[40];
    int fetch_size;
    int open, done;
    PGresult *first; /* first batch, fetched on open, pushed by the first fetch */
    sl_pg_type *first_types;
    int prefetch;       /* {prefetch = true}: see the file comment */
    char *prefetch_err; /* a prefetch that failed: the next fetch reports it */
    int ncols;
    int columns_ref; /* {{name=, type=}} */
    sl_rowdoc *shape; /* cur:shape(): fetch returns documents */
};

static void op_drive(pg_conn *c, int readable);
static int op_begin(lua_State *L, pg_conn *c, enum op_kind op, void (*start)(pg_conn *));
static void prefetch_start(pg_conn *c, pg_cursor *cur, int cur_ref);
static void close_start(pg_conn *c, pg_cursor *cur, sl_task *t);

/* ---------- small helpers ---------- */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* libpq's messages are multi-line and prefixed ("connection to server at
 * ... failed: FATAL:  ..."); keep the first line of the reason, in lower
 * case where it starts a sentence. */
static void short_message(const char *msg, char *out, size_t outlen)
{
    const char *p = msg ? msg : "unknown error";
    const char *f = strstr(p, " failed: ");
    if (f && strncmp(p, "connection to server", 20) == 0)
        p = f + 9;
    for (;;) {
        if (strncmp(p, "FATAL:  ", 8) == 0 || strncmp(p, "ERROR:  ", 8) == 0)
            p += 8;
        else if (*p == ' ' || *p == '\t')
            p++;
        else
            break;
    }
    size_t n = strcspn(p, "\n");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\r'))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = 0;
    if (n > 1 && out[0] >= 'A' && out[0] <= 'Z' && out[1] >= 'a' && out[1] <= 'z')
        out[0] = (char)(out[0] - 'A' + 'a');
    if (n == 0)
        snprintf(out, outlen, "unknown error");
}

static void stmt_free(pg_stmt *s)
{
    for (int i = 0; i < s->nparams; i++)
        free(s->values[i]);
    free(s->values);
    free(s->sql);
    memset(s, 0, sizeof *s);
}

static void op_reset(pg_conn *c)
{
    for (int i = 0; i < MAX_STMTS; i++)
        stmt_free(&c->stmts[i]);
    c->nstmts = c->cur_stmt = c->keep = 0;
    c->flushing = c->lookup = c->rollback_on_error = 0;
    PQclear(c->kept);
    PQclear(c->error);
    c->kept = c->error = NULL;
    c->errmsg[0] = 0;
}

/* Adds a statement; takes ownership of values (an array of nparams strings). */
static int stmt_add(pg_conn *c, const char *sql, int nparams, char **values, int extended)
{
    pg_stmt *s = &c->stmts[c->nstmts++];
    s->sql = xstrdup(sql);
    s->nparams = nparams;
    s->values = values;
    s->extended = extended || nparams > 0;
    return s->sql ? 0 : -1;
}

/* ---------- socket polling ---------- */

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static void on_poll(uv_poll_t *h, int status, int events);

static void poll_close(pg_conn *c)
{
    if (!c->poll)
        return;
    c->poll->data = NULL;
    uv_close((uv_handle_t *)c->poll, poll_closed);
    c->poll = NULL;
    c->poll_events = 0;
}

/* Watches the connection's current socket for `events`. During connect the
 * socket can change under the same number (libpq retries without TLS, tries
 * the next address), so connect steps pass fresh = 1 to re-register. */
static int poll_set(pg_conn *c, int events, int fresh)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (fresh)
        poll_close(c);
    if (!c->poll) {
        c->poll = malloc(sizeof *c->poll);
        if (!c->poll)
            return -1;
        if (uv_poll_init(c->rt->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return -1;
        }
        c->poll->data = c;
        c->poll_events = 0;
    }
    if (events == c->poll_events)
        return 0;
    c->poll_events = events;
    if (events == 0)
        return uv_poll_stop(c->poll);
    return uv_poll_start(c->poll, events, on_poll);
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

static void timer_close(pg_conn *c)
{
    if (!c->timer)
        return;
    c->timer->data = NULL;
    uv_timer_stop(c->timer);
    uv_close((uv_handle_t *)c->timer, timer_closed);
    c->timer = NULL;
}

static void params_free(pg_conn *c)
{
    for (int i = 0; c->kw && c->kw[i]; i++) {
        free(c->kw[i]);
        free(c->vals[i]);
    }
    free(c->kw);
    free(c->vals);
    c->kw = c->vals = NULL;
}

/* Closes everything libuv and libpq hold for c; c itself stays until its
 * userdata is collected. Idempotent. */
static void conn_shutdown(pg_conn *c)
{
    poll_close(c); /* before PQfinish closes the socket under libuv */
    timer_close(c);
    if (c->resolve) {
        c->resolve->data = NULL; /* its callback frees it */
        uv_cancel((uv_req_t *)c->resolve);
        c->resolve = NULL;
    }
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    op_reset(c);
    params_free(c);
    free(c->host);
    c->host = NULL;
    c->closed = 1;
    c->tx_own = c->tx_cursors = 0;
    c->prefetching = c->close_after = 0;
}

static void unref(pg_conn *c, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
        luaL_unref(c->rt->L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

/* A cancelled task: stop the operation for good (see the file comment). */
static void op_cancel(void *data)
{
    pg_conn *c = data;
    c->waiter = NULL;
    c->op = OP_NONE;
    unref(c, &c->ud_ref);
    unref(c, &c->cur_ref);
    c->cur = NULL;
    conn_shutdown(c);
}

/* Sends the pg_type lookup for the kept result's unknown OIDs as the next
 * statement; returns 0 when there is nothing to look up. */
static int lookup_start(pg_conn *c)
{
    if (!c->kept || PQnfields(c->kept) == 0 || c->nstmts >= MAX_STMTS)
        return 0;
    char *list = sl_pg_lookup_list(&c->types, c->kept);
    char **values = list ? malloc(sizeof *values) : NULL;
    if (!values) {
        free(list);
        return 0;
    }
    values[0] = list;
    stmt_add(c, "SELECT t.oid, t.typtype, t.typcategory, t.typelem, t.typname FROM pg_type t "
                "WHERE t.oid = ANY($1::oid[]) OR t.oid IN "
                "(SELECT typelem FROM pg_type WHERE oid = ANY($1::oid[]))",
             1, values, 1);
    c->lookup = 1;
    return 1;
}

static int push_pq_error(lua_State *L, pg_conn *c)
{
    char msg[256];
    lua_pushnil(L);
    if (c->error) {
        const char *primary = PQresultErrorField(c->error, PG_DIAG_MESSAGE_PRIMARY);
        if (primary)
            snprintf(msg, sizeof msg, "%s", primary);
        else
            short_message(PQresultErrorMessage(c->error), msg, sizeof msg);
        lua_pushstring(L, msg);
        const char *state = PQresultErrorField(c->error, PG_DIAG_SQLSTATE);
        if (state) {
            lua_pushstring(L, state);
            return 3;
        }
        return 2;
    }
    lua_pushstring(L, c->errmsg[0] ? c->errmsg : "unknown error");
    return 2;
}

static int push_query_result(lua_State *L, pg_conn *c)
{
    PGresult *r = c->kept;
    lua_createtable(L, 0, 3);
    if (!r) {
        lua_newtable(L);
        lua_setfield(L, -2, "columns");
        lua_newtable(L);
        lua_setfield(L, -2, "rows");
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "affected");
        return 1;
    }
    sl_pg_type *types = sl_pg_result_types(&c->types, r);
    if (!types)
        return luaL_error(L, "out of memory");
    sl_pg_push_columns(L, r, types);
    lua_setfield(L, -2, "columns");
    sl_pg_push_rows(L, r, types);
    lua_setfield(L, -2, "rows");
    free(types);
    const char *tuples = PQcmdTuples(r);
    lua_pushnumber(L, tuples && *tuples ? strtod(tuples, NULL) : 0);
    lua_setfield(L, -2, "affected");
    return 1;
}

/* Pushes a fetched batch: row arrays, or documents once the cursor has a
 * shape. */
static void push_rows(lua_State *L, pg_cursor *cur, const PGresult *r, const sl_pg_type *types)
{
    if (!r)
        lua_newtable(L);
    else if (cur->shape)
        sl_pg_push_docs(L, r, types, cur->shape);
    else
        sl_pg_push_rows(L, r, types);
}

/* The batch just fetched: records the columns when the cursor has none
 * yet, and whether it was the last. On open (first != 0) the result is
 * kept for the first fetch, so that a shape set in between applies to it;
 * otherwise it is pushed. */
static void take_batch(lua_State *L, pg_conn *c, pg_cursor *cur, int first)
{
    PGresult *r = c->kept;
    sl_pg_type *types = r ? sl_pg_result_types(&c->types, r) : NULL;
    if (r && !types)
        luaL_error(L, "out of memory");
    if (cur->columns_ref == LUA_NOREF) {
        if (r)
            sl_pg_push_columns(L, r, types);
        else
            lua_newtable(L);
        cur->columns_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        cur->ncols = r ? PQnfields(r) : 0;
    }
    if (!r || PQntuples(r) < cur->fetch_size)
        cur->done = 1; /* a short batch is the last: no round trip for {} */
    if (first) {
        cur->first = r;
        cur->first_types = types;
        c->kept = NULL; /* the cursor owns it now */
        return;
    }
    push_rows(L, cur, r, types);
    free(types);
}

/* Ends the operation and resumes the waiting task with its results. */
static void op_finish(pg_conn *c)
{
    sl_task *t = c->waiter;
    enum op_kind op = c->op;
    pg_cursor *cur = c->cur;
    int prefetched = c->prefetching, close_after = c->close_after;
    c->waiter = NULL;
    c->op = OP_NONE;
    c->cur = NULL;
    c->prefetching = c->close_after = 0;
    timer_close(c);
    if (c->poll)
        poll_set(c, 0, 0);
    lua_State *co = t ? t->co : c->rt->L;
    int failed = c->error || c->errmsg[0];
    int n = 0;
    if (op == OP_CONNECT) {
        if (failed) {
            n = push_pq_error(co, c);
            conn_shutdown(c);
        } else {
            lua_rawgeti(co, LUA_REGISTRYINDEX, c->ud_ref);
            n = 1;
        }
        unref(c, &c->ud_ref);
    } else if (failed && op == OP_FETCH && (prefetched || close_after)) {
        /* no task to tell: the next fetch reports it (a close ignores it) */
        const char *m = c->errmsg[0] ? c->errmsg
                                      : c->error ? PQresultErrorMessage(c->error) : "unknown error";
        free(cur->prefetch_err);
        cur->prefetch_err = xstrdup(m && *m ? m : "prefetch failed");
        if (close_after) {
            unref(c, &c->cur_ref);
            op_reset(c);
            close_start(c, cur, t);
            return;
        }
    } else if (failed) {
        n = push_pq_error(co, c);
        if (op == OP_CURSOR_OPEN && cur) {
            cur->open = 0;
            if (c->tx_cursors > 0)
                c->tx_cursors--;
        }
    } else if (op == OP_QUERY) {
        n = push_query_result(co, c);
    } else if (op == OP_CURSOR_OPEN) {
        take_batch(co, c, cur, 1);
        lua_rawgeti(co, LUA_REGISTRYINDEX, c->cur_ref);
        n = 1;
    } else if (op == OP_FETCH && close_after) {
        /* a close joined the prefetch: forget the batch, close */
        unref(c, &c->cur_ref);
        op_reset(c);
        close_start(c, cur, t);
        return;
    } else if (op == OP_FETCH && prefetched) {
        take_batch(co, c, cur, 1); /* waits in the cursor for its fetch */
    } else if (op == OP_FETCH) {
        take_batch(co, c, cur, 0);
        n = 1;
    } else if (op == OP_CURSOR_CLOSE) {
        lua_pushboolean(co, 1);
        n = 1;
    }
    if (op == OP_FETCH && !failed && t && !c->sync && cur->prefetch && !cur->done &&
        c->cur_ref != LUA_NOREF) {
        /* the batch goes to its task; the next one is asked for now */
        int ref = c->cur_ref;
        c->cur_ref = LUA_NOREF;
        op_reset(c);
        prefetch_start(c, cur, ref);
    } else {
        unref(c, &c->cur_ref);
        op_reset(c);
    }
    if (c->sync)
        return; /* the starting C function returns the values left on co */
    if (t)
        sl_task_resume(t, n);
    else
        lua_pop(co, n);
}

static void op_fail(pg_conn *c, const char *msg)
{
    short_message(msg, c->errmsg, sizeof c->errmsg);
    op_finish(c);
}

/* ---------- the statement chain ---------- */

static void stmt_send(pg_conn *c)
{
    pg_stmt *s = &c->stmts[c->cur_stmt];
    int ok = s->extended
                 ? PQsendQueryParams(c->pg, s->sql, s->nparams, NULL,
                                     (const char *const *)s->values, NULL, NULL, 0)
                 : PQsendQuery(c->pg, s->sql);
    if (!ok) {
        op_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->flushing = 1;
    op_drive(c, 0);
}

/* One statement has delivered all its results. */
static void stmt_done(pg_conn *c)
{
    int was_lookup = c->lookup && c->cur_stmt == c->nstmts - 1;
    c->cur_stmt++;
    if (c->error && c->rollback_on_error && PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
        /* the cursor's own transaction failed while opening: end it */
        c->rollback_on_error = 0;
        c->tx_own = 0;
        for (int i = 0; i < MAX_STMTS; i++)
            stmt_free(&c->stmts[i]);
        c->nstmts = c->cur_stmt = c->lookup = 0;
        c->keep = -1;
        if (stmt_add(c, "ROLLBACK", 0, NULL, 0) == 0) {
            stmt_send(c);
            return;
        }
    }
    if (!c->error && c->cur_stmt < c->nstmts) {
        stmt_send(c);
        return;
    }
    if (!c->error && !was_lookup && lookup_start(c)) {
        stmt_send(c);
        return;
    }
    op_finish(c);
}

static void collect(pg_conn *c)
{
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            stmt_done(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        int is_lookup = c->lookup && c->cur_stmt == c->nstmts - 1;
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            op_fail(c, "copy is not supported");
            conn_shutdown(c);
            return;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
            if (is_lookup) /* types we cannot look up stay unknown */
                PQclear(r);
            else if (!c->error)
                c->error = r;
            else
                PQclear(r);
        } else if (is_lookup) {
            sl_pg_lookup_store(&c->types, r, c->kept);
            PQclear(r);
        } else if (c->cur_stmt == c->keep) {
            PQclear(c->kept);
            c->kept = r;
        } else {
            PQclear(r);
        }
    }
    if (poll_set(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), 0) != 0)
        op_fail(c, "cannot poll the connection's socket");
}

static void op_drive(pg_conn *c, int readable)
{
    if (readable && !PQconsumeInput(c->pg)) {
        op_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->flushing) {
        int r = PQflush(c->pg);
        if (r < 0) {
            op_fail(c, PQerrorMessage(c->pg));
            return;
        }
        c->flushing = r == 1;
    }
    collect(c);
}

/* ---------- connecting ---------- */

static void connect_step(pg_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (poll_set(c, UV_READABLE, 1) != 0)
            op_fail(c, "cannot poll the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_set(c, UV_WRITABLE, 1) != 0)
            op_fail(c, "cannot poll the connection's socket");
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0) {
            op_fail(c, PQerrorMessage(c->pg));
            return;
        }
        op_finish(c);
        return;
    default:
        op_fail(c, PQerrorMessage(c->pg));
        return;
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn *c = h->data;
    if (!c || c->op == OP_NONE)
        return;
    if (c->op == OP_CONNECT) {
        connect_step(c);
        return;
    }
    if (status < 0) {
        op_fail(c, uv_strerror(status));
        return;
    }
    op_drive(c, events & UV_READABLE);
}

static void on_timeout(uv_timer_t *h)
{
    pg_conn *c = h->data;
    if (!c || c->op != OP_CONNECT)
        return;
    op_fail(c, "timeout");
}

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* libpq would print NOTICEs on stderr */
}

static void connect_start(pg_conn *c)
{
    c->pg = PQconnectStartParams((const char *const *)c->kw, (const char *const *)c->vals, 0);
    params_free(c);
    if (!c->pg) {
        op_fail(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        op_fail(c, PQerrorMessage(c->pg));
        return;
    }
    /* libpq's protocol: start as if PQconnectPoll had asked for writing */
    if (poll_set(c, UV_WRITABLE, 1) != 0)
        op_fail(c, "cannot poll the connection's socket");
}

static void param_set(pg_conn *c, const char *key, const char *value)
{
    int i = 0;
    while (c->kw[i])
        i++;
    c->kw[i] = xstrdup(key);
    c->vals[i] = xstrdup(value);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pg_conn *c = req->data;
    if (!c) { /* cancelled: the connection is gone */
        uv_freeaddrinfo(res);
        free(req);
        return;
    }
    c->resolve = NULL;
    free(req);
    if (status < 0 || !res) {
        snprintf(c->errmsg, sizeof c->errmsg, "could not resolve host %s: %s", c->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        op_finish(c);
        return;
    }
    /* every address, in order, as libpq's own lookup would try them (the
     * host name is repeated per address for TLS checks and .pgpass) */
    char addrs[8 * 48] = "", hosts[8 * 260] = "";
    size_t alen = 0, hlen = 0;
    int count = 0;
    for (struct addrinfo *a = res; a && count < 8; a = a->ai_next) {
        char ip[48] = "";
        if (a->ai_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip);
        else if (a->ai_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)a->ai_addr, ip, sizeof ip);
        if (!ip[0] || strlen(c->host) > 250)
            continue;
        alen += (size_t)snprintf(addrs + alen, sizeof addrs - alen, "%s%s", count ? "," : "", ip);
        hlen += (size_t)snprintf(hosts + hlen, sizeof hosts - hlen, "%s%s", count ? "," : "", c->host);
        count++;
    }
    uv_freeaddrinfo(res);
    if (count == 0) {
        snprintf(c->errmsg, sizeof c->errmsg, "could not resolve host %s: no address", c->host);
        op_finish(c);
        return;
    }
    for (int i = 0; c->kw[i]; i++) {
        if (strcmp(c->kw[i], "host") == 0) {
            free(c->vals[i]);
            c->vals[i] = xstrdup(hosts);
        }
    }
    param_set(c, "hostaddr", addrs);
    connect_start(c);
}

static void connect_begin(pg_conn *c)
{
    unsigned char buf[16];
    const char *host = c->host;
    if (host[0] == '/' || uv_inet_pton(AF_INET, host, buf) == 0 ||
        uv_inet_pton(AF_INET6, host, buf) == 0) {
        connect_start(c); /* a socket directory or an address: no lookup */
        return;
    }
    c->resolve = malloc(sizeof *c->resolve);
    if (!c->resolve) {
        op_fail(c, "out of memory");
        return;
    }
    c->resolve->data = c;
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(c->rt->loop, c->resolve, on_resolved, host, NULL, &hints);
    if (rc != 0) {
        free(c->resolve);
        c->resolve = NULL;
        snprintf(c->errmsg, sizeof c->errmsg, "could not resolve host: %s", uv_strerror(rc));
        op_finish(c);
    }
}

/* The string option `key`, or def. The value stays on the stack: a number
 * converted by lua_tostring is a new string that only the stack anchors. */
static const char *opt_string(lua_State *L, const char *key, const char *def)
{
    luaL_checkstack(L, 2, "too many options");
    lua_getfield(L, 1, key);
    const char *s = def;
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        s = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "bad argument #1 to 'connect' (%s must be a string)", key);
    return s;
}

static pg_conn *check_conn(lua_State *L, int idx)
{
    pg_conn **ud = luaL_checkudata(L, idx, CONN_MT);
    return *ud;
}

/* pg.connect{host=, port=, user=, password=, database=, ssl_mode=, ssl_ca=,
 *   connect_timeout=, application_name=} -> conn | nil, err */
static int l_connect(lua_State *L)
{
    static const char *const MODES[] = {"disable", "allow", "prefer", "require",
                                        "verify-ca", "verify-full", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *host = opt_string(L, "host", "localhost");
    const char *port = opt_string(L, "port", "5432");
    const char *user = opt_string(L, "user", NULL);
    const char *password = opt_string(L, "password", NULL);
    const char *database = opt_string(L, "database", NULL);
    const char *mode = opt_string(L, "ssl_mode", "prefer");
    const char *ca = opt_string(L, "ssl_ca", NULL);
    const char *app = opt_string(L, "application_name", "sluice");
    lua_getfield(L, 1, "connect_timeout");
    double timeout = luaL_optnumber(L, -1, 30);
    lua_pop(L, 1);
    int valid_mode = 0;
    for (int i = 0; MODES[i]; i++)
        valid_mode |= strcmp(MODES[i], mode) == 0;
    if (!valid_mode)
        return luaL_argerror(L, 1, "ssl_mode must be disable, allow, prefer, require, verify-ca or verify-full");
    if (timeout <= 0)
        return luaL_argerror(L, 1, "connect_timeout must be positive");
    sl_task *t = sl_task_check_current(L);

    pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return luaL_error(L, "out of memory");
    pg_conn **ud = lua_newuserdata(L, sizeof *ud);
    *ud = c;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    c->rt = t->rt;
    c->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->cur_ref = LUA_NOREF;
    c->kw = calloc(16, sizeof *c->kw);
    c->vals = calloc(16, sizeof *c->vals);
    if (!c->kw || !c->vals)
        return luaL_error(L, "out of memory");
    param_set(c, "host", host);
    param_set(c, "port", port);
    if (user)
        param_set(c, "user", user);
    if (password)
        param_set(c, "password", password);
    if (database)
        param_set(c, "dbname", database);
    param_set(c, "sslmode", mode);
    if (ca)
        param_set(c, "sslrootcert", ca);
    param_set(c, "application_name", app);
    param_set(c, "client_encoding", "UTF8");
    param_set(c, "options", SESSION_OPTIONS);
    c->host = xstrdup(host);
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer || !c->host)
        return luaL_error(L, "out of memory");
    uv_timer_init(c->rt->loop, c->timer);
    c->timer->data = c;
    uv_update_time(c->rt->loop); /* the loop's clock may be stale after a blocking call */
    uv_timer_start(c->timer, on_timeout, (uint64_t)(timeout * 1000.0), 0);
    return op_begin(L, c, OP_CONNECT, connect_begin);
}

/* Runs start(c) for a new operation; yields unless it finished at once (then
 * op_finish left the results on L, which is the task's coroutine). */
static int op_begin(lua_State *L, pg_conn *c, enum op_kind op, void (*start)(pg_conn *))
{
    int base = lua_gettop(L);
    c->op = op;
    c->waiter = sl_task_check_current(L);
    c->sync = 1;
    start(c);
    c->sync = 0;
    if (c->op == OP_NONE)
        return lua_gettop(L) - base;
    return sl_task_await(L, op_cancel, c);
}

/* ---------- queries and cursors ---------- */

/* Converts the Lua value at idx to a parameter string (NULL for SQL NULL).
 * Returns 0, or -1 with *err set for a value that cannot be sent. Raises on
 * a type that is never a parameter. */
static int param_from_lua(lua_State *L, int idx, int argn, char **out, const char **err)
{
    char num[64];
    *out = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return 0;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return 0; /* json.null */
        break;
    case LUA_TBOOLEAN:
        *out = xstrdup(lua_toboolean(L, idx) ? "true" : "false");
        return *out ? 0 : -1;
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, idx);
        if (isnan(v))
            snprintf(num, sizeof num, "NaN");
        else if (isinf(v))
            snprintf(num, sizeof num, v > 0 ? "Infinity" : "-Infinity");
        else if (v == floor(v) && fabs(v) < 9.2e18)
            snprintf(num, sizeof num, "%.0f", v);
        else
            snprintf(num, sizeof num, "%.17g", v);
        *out = xstrdup(num);
        return *out ? 0 : -1;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (memchr(s, 0, n)) {
            *err = "parameter contains a NUL byte";
            return -1;
        }
        *out = malloc(n + 1);
        if (!*out)
            return -1;
        memcpy(*out, s, n + 1);
        return 0;
    }
    default:
        break;
    }
    luaL_argerror(L, argn, "parameters must be strings, numbers, booleans or nil");
    return -1;
}

/* Reads n parameters starting at stack index first (or, with tbl > 0, the
 * items 1..n of the table at tbl). Returns the array or NULL with *err. */
static char **params_read(lua_State *L, int first, int n, int tbl, const char **err)
{
    /* types first: param_from_lua raises on a bad one, which must not
     * leak the array */
    for (int i = 0; i < n; i++) {
        int idx = first + i, t;
        if (tbl) {
            lua_rawgeti(L, tbl, i + 1);
            idx = -1;
        }
        t = lua_type(L, idx);
        int ok = t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING ||
                 (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL);
        if (tbl)
            lua_pop(L, 1);
        if (!ok)
            luaL_argerror(L, tbl ? tbl : first + i, "parameters must be strings, numbers, booleans or nil");
    }
    char **values = calloc(n > 0 ? (size_t)n : 1, sizeof *values);
    if (!values) {
        *err = "out of memory";
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        int rc;
        if (tbl) {
            lua_rawgeti(L, tbl, i + 1);
            rc = param_from_lua(L, -1, tbl, &values[i], err);
            lua_pop(L, 1);
        } else {
            rc = param_from_lua(L, first + i, first + i, &values[i], err);
        }
        if (rc != 0) {
            for (int j = 0; j < n; j++)
                free(values[j]);
            free(values);
            if (!*err)
                *err = "out of memory";
            return NULL;
        }
    }
    return values;
}

static int push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* Checks that c can start an operation; pushes nil, err when it cannot. */
static int conn_ready(lua_State *L, pg_conn *c)
{
    if (c->closed || !c->pg)
        return push_fail(L, "connection closed");
    if (c->op != OP_NONE)
        return push_fail(L, "connection busy");
    return 0;
}


/* conn:query(sql, ...) -> {columns=, rows=, affected=} | nil, err, sqlstate
 * Parameters ($1, $2...) are bound, never spliced; nil is NULL. Without
 * parameters the text may hold several statements: the last one's result
 * is returned. */
static int l_query(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    int n = lua_gettop(L) - 2;
    sl_task_check_current(L);
    int busy = conn_ready(L, c);
    if (busy)
        return busy;
    const char *err = NULL;
    char **values = NULL;
    if (n > 0 && !(values = params_read(L, 3, n, 0, &err)))
        return push_fail(L, err);
    op_reset(c);
    if (stmt_add(c, sql, n, values, 0) != 0)
        return luaL_error(L, "out of memory");
    c->keep = 0;
    return op_begin(L, c, OP_QUERY, stmt_send);
}

static pg_cursor *check_cursor(lua_State *L)
{
    return luaL_checkudata(L, 1, CURSOR_MT);
}

/* conn:cursor(sql, params?, {fetch_size=N}?) -> cursor | nil, err, sqlstate
 * A server-side cursor: the first batch is fetched before it returns. */
static int l_cursor(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    size_t sqllen;
    const char *sql = luaL_checklstring(L, 2, &sqllen);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    int fetch_size = 1000, prefetch = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "fetch_size");
        fetch_size = (int)luaL_optinteger(L, -1, 1000);
        lua_getfield(L, 4, "prefetch");
        prefetch = lua_toboolean(L, -1);
        lua_pop(L, 2);
        if (fetch_size < 1)
            return luaL_argerror(L, 4, "fetch_size must be at least 1");
    }
    sl_task_check_current(L);
    int busy = conn_ready(L, c);
    if (busy)
        return busy;
    int n = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "n");
        n = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_objlen(L, 3);
        lua_pop(L, 1);
    }
    const char *err = NULL;
    char **values = NULL;
    if (n > 0 && !(values = params_read(L, 0, n, 3, &err)))
        return push_fail(L, err);

    pg_cursor *cur = lua_newuserdata(L, sizeof *cur);
    memset(cur, 0, sizeof *cur);
    cur->c = c;
    cur->fetch_size = fetch_size;
    cur->prefetch = prefetch;
    cur->columns_ref = LUA_NOREF;
    snprintf(cur->name, sizeof cur->name, "sluice_cursor_%u", ++c->cursor_seq);
    luaL_getmetatable(L, CURSOR_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, 1, 0); /* the cursor keeps its connection alive */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);

    /* the statement text without trailing semicolons and blanks */
    while (sqllen > 0 && strchr("; \t\r\n", sql[sqllen - 1]))
        sqllen--;
    size_t cap = sqllen + 96;
    char *declare = malloc(cap), fetch[96];
    if (!declare)
        return luaL_error(L, "out of memory");
    snprintf(declare, cap, "DECLARE %s NO SCROLL CURSOR FOR %.*s", cur->name, (int)sqllen, sql);
    snprintf(fetch, sizeof fetch, "FETCH FORWARD %d FROM %s", fetch_size, cur->name);

    op_reset(c);
    if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
        stmt_add(c, "BEGIN", 0, NULL, 0);
        c->tx_own = 1;
        c->rollback_on_error = c->tx_cursors == 0;
    }
    stmt_add(c, declare, n, values, 1);
    free(declare);
    c->keep = c->nstmts;
    stmt_add(c, fetch, 0, NULL, 1);
    cur->open = 1;
    c->tx_cursors++;
    c->cur = cur;
    c->cur_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return op_begin(L, c, OP_CURSOR_OPEN, stmt_send);
}

/* Asks for cur's next batch with no task waiting (see the file comment);
 * cur_ref anchors the cursor until the batch lands. */
static void prefetch_start(pg_conn *c, pg_cursor *cur, int cur_ref)
{
    char fetch[96];
    snprintf(fetch, sizeof fetch, "FETCH FORWARD %d FROM %s", cur->fetch_size, cur->name);
    op_reset(c);
    if (stmt_add(c, fetch, 0, NULL, 1) != 0) {
        luaL_unref(c->rt->L, LUA_REGISTRYINDEX, cur_ref);
        return; /* no memory: the next fetch asks itself */
    }
    c->keep = 0;
    c->cur = cur;
    c->cur_ref = cur_ref;
    c->op = OP_FETCH;
    c->waiter = NULL;
    c->prefetching = 1;
    c->sync = 0;
    stmt_send(c);
}

/* cur:fetch() -> rows (up to fetch_size row arrays) | {} at the end | nil, err */
static int l_fetch(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    if (cur->first) {
        PGresult *r = cur->first;
        sl_pg_type *types = cur->first_types;
        cur->first = NULL;
        cur->first_types = NULL;
        push_rows(L, cur, r, types);
        PQclear(r);
        free(types);
        pg_conn *c = cur->c;
        if (cur->prefetch && cur->open && !cur->done && !c->closed && c->pg && c->op == OP_NONE) {
            lua_pushvalue(L, 1);
            prefetch_start(c, cur, luaL_ref(L, LUA_REGISTRYINDEX));
        }
        return 1;
    }
    if (cur->prefetch_err) {
        lua_pushnil(L);
        lua_pushstring(L, cur->prefetch_err);
        free(cur->prefetch_err);
        cur->prefetch_err = NULL;
        return 2;
    }
    if (cur->open && !cur->c->closed && cur->c->op == OP_FETCH && cur->c->prefetching &&
        cur->c->cur == cur) {
        /* the batch is on its way: wait for it as for a fetch of our own */
        pg_conn *c = cur->c;
        c->prefetching = 0;
        c->waiter = sl_task_check_current(L);
        return sl_task_await(L, op_cancel, c);
    }
    if (!cur->open || cur->done) {
        if (!cur->open)
            return push_fail(L, "cursor closed");
        lua_newtable(L);
        return 1;
    }
    pg_conn *c = cur->c;
    sl_task_check_current(L);
    int busy = conn_ready(L, c);
    if (busy)
        return busy;
    char fetch[96];
    snprintf(fetch, sizeof fetch, "FETCH FORWARD %d FROM %s", cur->fetch_size, cur->name);
    op_reset(c);
    stmt_add(c, fetch, 0, NULL, 1);
    c->keep = 0;
    c->cur = cur;
    lua_pushvalue(L, 1);
    c->cur_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return op_begin(L, c, OP_FETCH, stmt_send);
}

/* cur:columns() -> {{name=, type=, unknown=true?}, ...} */
static int l_columns(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    if (cur->columns_ref == LUA_NOREF)
        lua_newtable(L);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, cur->columns_ref);
    return 1;
}

static void cursor_forget(pg_cursor *cur)
{
    PQclear(cur->first);
    free(cur->first_types);
    free(cur->prefetch_err);
    cur->first = NULL;
    cur->first_types = NULL;
    cur->prefetch_err = NULL;
    cur->open = 0;
}

/* cur:shape(spec | nil): from the next fetch on, rows come as documents
 * built in C (see rowdoc.h); nil goes back to row arrays. */
static int l_shape(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    sl_rowdoc *s = lua_isnoneornil(L, 2) ? NULL : sl_rowdoc_new(L, 2, cur->ncols);
    sl_rowdoc_free(L, cur->shape);
    cur->shape = s;
    return 0;
}

/* cur:close() -> true | nil, err : closes the server cursor and, with the
 * last cursor, the transaction it opened. Closing twice is harmless. */
static int l_cursor_close(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    pg_conn *c = cur->c;
    if (!cur->open) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (c->closed || !c->pg) {
        cursor_forget(cur);
        lua_pushboolean(L, 1);
        return 1;
    }
    sl_task *t = sl_task_check_current(L);
    if (c->op == OP_FETCH && c->prefetching && c->cur == cur) {
        /* a prefetch is in flight: the close follows it */
        c->prefetching = 0;
        c->close_after = 1;
        c->waiter = t;
        return sl_task_await(L, op_cancel, c);
    }
    int busy = conn_ready(L, c);
    if (busy)
        return busy;
    c->op = OP_CURSOR_CLOSE;
    c->waiter = t;
    c->sync = 1;
    int base = lua_gettop(L);
    close_start(c, cur, t);
    c->sync = 0;
    if (c->op == OP_NONE)
        return lua_gettop(L) - base;
    return sl_task_await(L, op_cancel, c);
}

/* Starts closing cur for task t (the operation the connection runs next):
 * CLOSE, and COMMIT with the last cursor of a transaction we opened. A
 * cursor whose transaction failed and is the caller's to end is only
 * forgotten: t gets true at once. */
static void close_start(pg_conn *c, pg_cursor *cur, sl_task *t)
{
    cursor_forget(cur);
    c->tx_cursors--;
    int last_own = c->tx_own && c->tx_cursors <= 0;
    char sql[128];
    c->op = OP_CURSOR_CLOSE;
    c->waiter = t;
    if (!c->pg || PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
        if (!last_own || !c->pg) { /* the transaction is the caller's to end */
            c->op = OP_NONE;
            c->waiter = NULL;
            lua_State *co = t ? t->co : c->rt->L;
            lua_pushboolean(co, 1);
            if (!c->sync) {
                if (t)
                    sl_task_resume(t, 1);
                else
                    lua_pop(co, 1);
            }
            return;
        }
        snprintf(sql, sizeof sql, "ROLLBACK");
    } else {
        snprintf(sql, sizeof sql, "CLOSE %s%s", cur->name, last_own ? "; COMMIT" : "");
    }
    if (last_own) {
        c->tx_own = 0;
        c->tx_cursors = 0;
    }
    op_reset(c);
    stmt_add(c, sql, 0, NULL, 0);
    stmt_send(c);
}

static int l_cursor_gc(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    if (cur->columns_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, cur->columns_ref);
    cur->columns_ref = LUA_NOREF;
    sl_rowdoc_free(L, cur->shape);
    cur->shape = NULL;
    /* an abandoned open cursor stays on the server until the connection's
     * transaction ends: no I/O can start from a finaliser */
    cursor_forget(cur);
    return 0;
}

static int l_cursor_tostring(lua_State *L)
{
    pg_cursor *cur = check_cursor(L);
    lua_pushfstring(L, "%s (%s)", CURSOR_MT, cur->open ? "open" : "closed");
    return 1;
}

/* conn:close() : closes the connection; a task waiting on it gets
 * nil, "connection closed". */
static int l_close(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    sl_task *w = c->waiter;
    c->waiter = NULL;
    c->op = OP_NONE;
    unref(c, &c->ud_ref);
    unref(c, &c->cur_ref);
    c->cur = NULL;
    conn_shutdown(c);
    if (w && w->state == SL_TASK_WAITING) {
        w->cleanup = NULL;
        lua_pushnil(w->co);
        lua_pushstring(w->co, "connection closed");
        sl_task_wake(w, 2);
    }
    return 0;
}

static int l_gc(lua_State *L)
{
    pg_conn **ud = luaL_checkudata(L, 1, CONN_MT);
    pg_conn *c = *ud;
    if (!c)
        return 0;
    conn_shutdown(c);
    unref(c, &c->ud_ref);
    unref(c, &c->cur_ref);
    sl_pg_cache_free(&c->types);
    free(c);
    *ud = NULL;
    return 0;
}

/* conn:server_version() -> integer (e.g. 150018) | nil when closed */
static int l_server_version(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    if (!c->pg)
        return 0;
    lua_pushinteger(L, PQserverVersion(c->pg));
    return 1;
}

/* conn:ssl() -> true when the connection is encrypted */
static int l_ssl(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    lua_pushboolean(L, c->pg && PQsslInUse(c->pg));
    return 1;
}

static int l_tostring(lua_State *L)
{
    pg_conn *c = check_conn(L, 1);
    lua_pushfstring(L, "%s (%s)", CONN_MT, c && c->pg && !c->closed ? "open" : "closed");
    return 1;
}

/* pg.escape_identifier(name) -> "\"name\"" with inner quotes doubled */
static int l_escape_identifier(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n == 0 || memchr(s, 0, n))
        return luaL_argerror(L, 1, "identifier must be non-empty and without NUL bytes");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            luaL_addchar(&b, '"');
        luaL_addchar(&b, s[i]);
    }
    luaL_addchar(&b, '"');
    luaL_pushresult(&b);
    return 1;
}

int luaopen_sluice_pg(lua_State *L)
{
    static const luaL_Reg conn_methods[] = {
        {"query", l_query}, {"cursor", l_cursor}, {"close", l_close},
        {"server_version", l_server_version}, {"ssl", l_ssl}, {NULL, NULL}};
    static const luaL_Reg cursor_methods[] = {
        {"fetch", l_fetch}, {"columns", l_columns}, {"shape", l_shape}, {"close", l_cursor_close}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"connect", l_connect}, {"escape_identifier", l_escape_identifier}, {NULL, NULL}};
    if (luaL_newmetatable(L, CONN_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CURSOR_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, cursor_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_cursor_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_cursor_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    lua_pushstring(L, "libpq");
    lua_setfield(L, -2, "client");
    lua_pushinteger(L, PQlibVersion());
    lua_setfield(L, -2, "client_version");
    return 1;
}
