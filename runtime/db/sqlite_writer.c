/*
 * The deferred-write thread of a SQLite connection (see sqlite_writer.h).
 */
#include "sqlite_writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 8

typedef struct op {
    struct op *next;
    int exec; /* sqlite3_exec, no parameters */
    int n;
    size_t sql_len;
    char *sql;          /* points into the same allocation */
    sl_sqlite_val *vals; /* idem, strings too */
} op;

typedef struct wstmt {
    char *sql;
    size_t len;
    sqlite3_stmt *st;
} wstmt;

struct sl_sqlite_writer {
    sqlite3 *db;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work, idle, room;
    op *head, *tail;
    int queued;   /* ops in the list */
    int running;  /* the thread holds an op */
    int stop;
    int failed;   /* an op failed: drop the rest until reported */
    char err[512];
    /* the thread's own statements (the caller's cache is not shared) */
    wstmt cache[STMT_CACHE];
    int ncache;
};

static sqlite3_stmt *stmt_for(sl_sqlite_writer *w, const char *sql, size_t len)
{
    for (int i = 0; i < w->ncache; i++)
        if (w->cache[i].len == len && memcmp(w->cache[i].sql, sql, len) == 0)
            return w->cache[i].st;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(w->db, sql, (int)len, &st, NULL) != SQLITE_OK || !st)
        return NULL;
    if (w->ncache == STMT_CACHE) { /* the state runs a handful of SQL texts */
        sqlite3_finalize(w->cache[0].st);
        free(w->cache[0].sql);
        memmove(w->cache, w->cache + 1, sizeof w->cache[0] * (STMT_CACHE - 1));
        w->ncache--;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return st; /* uncached: the caller finalises it */
    memcpy(copy, sql, len);
    copy[len] = '\0';
    w->cache[w->ncache++] = (wstmt){copy, len, st};
    return st;
}

static int cached(const sl_sqlite_writer *w, const sqlite3_stmt *st)
{
    for (int i = 0; i < w->ncache; i++)
        if (w->cache[i].st == st)
            return 1;
    return 0;
}

/* Runs one op; returns 0, or -1 with w->err set. Called without the lock:
 * the queue's contract gives this thread the connection meanwhile. */
static int run_op(sl_sqlite_writer *w, const op *o, char *err, size_t errlen)
{
    if (o->exec) {
        if (sqlite3_exec(w->db, o->sql, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(w->db));
            return -1;
        }
        return 0;
    }
    sqlite3_stmt *st = stmt_for(w, o->sql, o->sql_len);
    if (!st) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(w->db));
        return -1;
    }
    int rc = SQLITE_OK;
    if (o->n > sqlite3_bind_parameter_count(st)) {
        snprintf(err, errlen, "too many parameters for statement");
        rc = -1;
    }
    for (int i = 0; rc == SQLITE_OK && i < o->n; i++) {
        const sl_sqlite_val *v = &o->vals[i];
        switch (v->type) {
        case SL_SQV_INT: rc = sqlite3_bind_int64(st, i + 1, v->i); break;
        case SL_SQV_DOUBLE: rc = sqlite3_bind_double(st, i + 1, v->d); break;
        case SL_SQV_TEXT: rc = sqlite3_bind_text64(st, i + 1, v->s, v->n, SQLITE_STATIC, SQLITE_UTF8); break;
        default: rc = sqlite3_bind_null(st, i + 1);
        }
    }
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "%s", sqlite3_errmsg(w->db));
    } else if (rc != -1) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(w->db));
    }
    if (cached(w, st)) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        sqlite3_finalize(st);
    }
    return rc == SQLITE_OK ? 0 : -1;
}

static void *thread_main(void *arg)
{
    sl_sqlite_writer *w = arg;
    char err[512];
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->work, &w->mu);
        if (!w->head)
            break; /* stop, and nothing left */
        op *o = w->head;
        w->head = o->next;
        if (!w->head)
            w->tail = NULL;
        w->queued--;
        pthread_cond_signal(&w->room);
        /* never an op queued after a failure: the failure drops the
         * queue, and push refuses until the failure is reported */
        w->running = 1;
        pthread_mutex_unlock(&w->mu);
        int rc = run_op(w, o, err, sizeof err);
        free(o);
        pthread_mutex_lock(&w->mu);
        w->running = 0;
        if (rc != 0 && !w->failed) {
            w->failed = 1;
            snprintf(w->err, sizeof w->err, "%s", err);
        }
        op *dropped = NULL;
        if (w->failed && w->head) {
            /* dropped now, not as each comes up: a defer may report the
             * failure (and clear it) before then, and the ops still queued,
             * a COMMIT among them, would run */
            dropped = w->head;
            w->head = w->tail = NULL;
            w->queued = 0;
            pthread_cond_broadcast(&w->room);
        }
        if (!w->head)
            pthread_cond_broadcast(&w->idle);
        if (dropped) {
            pthread_mutex_unlock(&w->mu);
            while (dropped) {
                op *next = dropped->next;
                free(dropped);
                dropped = next;
            }
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

sl_sqlite_writer *sl_sqlite_writer_new(sqlite3 *db)
{
    sl_sqlite_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->db = db;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->idle, NULL);
    pthread_cond_init(&w->room, NULL);
    if (pthread_create(&w->th, NULL, thread_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->idle);
        pthread_cond_destroy(&w->room);
        free(w);
        return NULL;
    }
    return w;
}

/* Reports (and forgets) a failure; call with the lock held. */
static int take_failure(sl_sqlite_writer *w, char *err, size_t errlen)
{
    if (!w->failed)
        return 0;
    snprintf(err, errlen, "%s", w->err);
    w->failed = 0;
    w->err[0] = '\0';
    return -1;
}

int sl_sqlite_writer_push(sl_sqlite_writer *w, const char *sql, size_t sql_len,
                          const sl_sqlite_val *vals, int n, char *err, size_t errlen)
{
    size_t text = 0;
    for (int i = 0; vals && i < n; i++)
        if (vals[i].type == SL_SQV_TEXT)
            text += vals[i].n;
    int nv = vals ? n : 0;
    op *o = malloc(sizeof *o + (size_t)nv * sizeof(sl_sqlite_val) + sql_len + 1 + text);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    o->next = NULL;
    o->exec = vals == NULL;
    o->n = nv;
    o->vals = (sl_sqlite_val *)(o + 1);
    o->sql = (char *)(o->vals + nv);
    o->sql_len = sql_len;
    memcpy(o->sql, sql, sql_len);
    o->sql[sql_len] = '\0';
    char *p = o->sql + sql_len + 1;
    for (int i = 0; i < nv; i++) {
        o->vals[i] = vals[i];
        if (vals[i].type == SL_SQV_TEXT) {
            if (vals[i].n)
                memcpy(p, vals[i].s, vals[i].n);
            o->vals[i].s = p;
            p += vals[i].n;
        }
    }
    pthread_mutex_lock(&w->mu);
    while (w->queued >= SL_SQLITE_WRITER_MAX_QUEUED && !w->failed)
        pthread_cond_wait(&w->room, &w->mu);
    if (take_failure(w, err, errlen) != 0) {
        pthread_mutex_unlock(&w->mu);
        free(o);
        return -1;
    }
    if (w->tail)
        w->tail->next = o;
    else
        w->head = o;
    w->tail = o;
    w->queued++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int sl_sqlite_writer_wait(sl_sqlite_writer *w, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->mu);
    while (w->head || w->running)
        pthread_cond_wait(&w->idle, &w->mu);
    int rc = err ? take_failure(w, err, errlen) : 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void sl_sqlite_writer_free(sl_sqlite_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL); /* runs what is queued first */
    for (int i = 0; i < w->ncache; i++) {
        sqlite3_finalize(w->cache[i].st);
        free(w->cache[i].sql);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->idle);
    pthread_cond_destroy(&w->room);
    free(w);
}
