/*
 * sluice.mysql's connection machinery, private to runtime/db/mysql.c (the
 * Lua API) and runtime/db/mysql_conn.c (the step machine that drives
 * Connector/C's non-blocking calls on the libuv loop). Nothing else should
 * include this.
 */
#ifndef SL_DB_MYSQL_CONN_H
#define SL_DB_MYSQL_CONN_H

#include "core/rt.h"
#include "mysql.h"

#define BUF_START 256 /* first buffer for a variable-length binary column */

typedef struct sl_my_conn sl_my_conn;
typedef struct sl_my_cursor sl_my_cursor;

enum sl_my_op { OP_NONE, OP_CONNECT, OP_QUERY, OP_OPEN, OP_FETCH, OP_CLOSE };

enum sl_my_step {
    S_DONE,
    S_CONNECT,
    S_QUERY,       /* text protocol: send the SQL, read the result header */
    S_PREPARE,     /* binary protocol: prepare, then bind the parameters */
    S_EXECUTE,
    S_FETCH_TEXT,
    S_FETCH_STMT,
    S_FREE,        /* free (and so drain) a text result */
    S_NEXT_RESULT, /* skip further result sets (CALL) */
    S_STMT_CLOSE   /* close (and so drain) a statement */
};

/* One binary-protocol result column's buffers. */
typedef struct bcol {
    union {
        long long i;
        double d;
        float f;
        MYSQL_TIME t;
    } v;
    char *buf;
    unsigned long cap, len;
    my_bool is_null, error;
} bcol;

/* One bound parameter's value. */
typedef struct pval {
    union {
        long long i;
        double d;
        signed char b;
    } v;
    unsigned long len;
    my_bool is_null;
} pval;

struct sl_my_conn {
    MYSQL *my; /* NULL once closed */
    sl_rt *rt;
    uv_poll_t *poll; /* heap: each handle is freed by its close callback */
    uv_os_sock_t poll_fd;
    uv_timer_t *timer;    /* the library's own timeouts */
    uv_timer_t *deadline; /* connect_timeout / query_timeout */
    double connect_timeout, query_timeout;
    sl_task *waiter;
    enum sl_my_op op;
    enum sl_my_step step, after; /* after: where to go once a drain has finished */
    int started;           /* the step's _start was called; next is _cont */
    int broken;
    int lib_timeout; /* the library's own timer expired in this operation */
    int failed;
    char err[320];
    char sqlstate[6];
    int args_ref; /* registry: anchors the operation's strings and userdata */
    /* connect */
    char *host, *user, *password, *db, *socket;
    unsigned port;
    MYSQL *connect_ret;
    int iret;
    my_bool bret;
    MYSQL_ROW row;
    /* the open result set */
    int res_active, res_orphaned;
    unsigned long res_gen;
    int binary;
    MYSQL_RES *res; /* text: the unbuffered result; binary: the metadata */
    MYSQL_STMT *stmt;
    unsigned ncols;
    sl_my_col *cols;
    MYSQL_BIND *rbind;
    bcol *bcols;
    int cols_ref; /* registry: the open result's columns table */
    int q_cols_ref; /* registry: the columns conn:query will return */
    int refs;       /* the connection's userdata and its cursors */
    int rows_ref; /* registry: the rows being collected */
    struct sl_rowdoc *shape; /* the fetch being run builds documents (rowdoc.h) */
    lua_Integer nrows, want;
    unsigned long long affected, insert_id;
    /* the statement being run */
    const char *sql;
    size_t sql_len;
    int nparams;
    MYSQL_BIND *pbind;
    pval *pvals;
    char warnings[600];
    size_t wlen;
};

/* A cursor's userdata. */
struct sl_my_cursor {
    sl_my_conn *c;
    int conn_ref; /* registry: pins the connection's userdata */
    int cols_ref;
    unsigned long gen;
    lua_Integer fetch_size;
    int done;
    struct sl_rowdoc *shape; /* cur:shape(): fetch returns documents */
};

/* Drops a registry reference and marks it empty. */
void sl_my_unref(lua_State *L, int *ref);

/* uv_close()s a heap-allocated handle and frees it once closed. */
void sl_my_close_handle(void *h);

/* The step that drains the open result (frees it or closes its
 * statement). */
enum sl_my_step sl_my_drain_step(sl_my_conn *c);

/* Binds the n parameters at stack indexes first.. (anchored by the caller
 * for the operation's life). Returns -1 when out of memory. */
int sl_my_bind_params(lua_State *L, sl_my_conn *c, int first, int n);

/* Starts operation `op` at step `first`, with the args table (anchoring the
 * operation's strings and userdata) on top of L; pops it. Returns the
 * results at once if the chain ends without waiting, else yields the task
 * until it ends, or until `timeout` seconds (0: none) have passed. */
int sl_my_run_op(lua_State *L, sl_my_conn *c, enum sl_my_op op, enum sl_my_step first,
                 double timeout);

/* Closes the connection now, without waiting on the network (an operation
 * under way is aborted, an open result abandoned). Never fails. */
void sl_my_conn_shutdown(sl_my_conn *c, lua_State *L);

#endif
