/*
 * The Elasticsearch/OpenSearch bulk indexer, shared between its three files:
 * es_http.c (libcurl multi on the runtime's libuv loop, TLS and auth),
 * es_bulk.c (batching, NDJSON encoding, the item-by-item decisions, retry
 * scheduling) and es.c (the Lua module sluice.sink.es).
 *
 * Why one private header: the decision logic must be testable without a
 * network (offline mode hands the exact bodies to a test and takes its
 * answers), so the transport and the decisions meet at one function,
 * es_bulk_settle(), that both the real transfer and the test call.
 *
 * Lifetimes: the client and its batches live in malloc'd memory, never in
 * Lua memory, because libuv close callbacks run after lua_close(). The Lua
 * userdata holds a pointer; closing frees what is in flight and the client
 * itself goes with its last libuv handle.
 */
#ifndef SL_SINK_ES_H
#define SL_SINK_ES_H

#include "core/rt.h"
#include "sink/jsonbuf.h"

#include <curl/curl.h>
#include <stdint.h>

enum es_op { ES_OP_INDEX = 0, ES_OP_DELETE = 1 };
enum es_conflict { ES_CONFLICT_FAIL = 0, ES_CONFLICT_IGNORE, ES_CONFLICT_RETRY };
enum es_wait { ES_WAIT_NONE = 0, ES_WAIT_PUT, ES_WAIT_FLUSH };
enum es_state { ES_B_FREE = 0, ES_B_FILLING, ES_B_READY, ES_B_FLIGHT, ES_B_WAITING };

typedef struct es_client es_client;
typedef struct es_batch es_batch;
typedef struct es_req es_req;

/* One action in a batch: its bytes are body[off, off+len) (action line and,
 * for index, the source line); its raw id is ids[id_off, id_off+id_len). */
typedef struct {
    size_t off, len;
    size_t id_off;
    uint32_t id_len;
    uint16_t tries;     /* sends that failed for this item so far */
    uint8_t op;
} es_item;

enum es_kind { ES_KIND_BATCH = 1, ES_KIND_REQ = 2 };

/* Both kinds of transfer start with their kind, so a finished easy handle's
 * CURLINFO_PRIVATE tells which one it is. */
struct es_batch {
    int kind;
    es_client *c;
    enum es_state state;
    sl_jsonbuf body;     /* the NDJSON request body */
    sl_jsonbuf ids;      /* raw ids, for failure reports */
    es_item *items;
    size_t n, cap;
    int tries;           /* whole-request failures so far */
    uint64_t due;        /* loop time (ms) a waiting batch may go */
    unsigned long seq;   /* request number (offline mode hands it out) */
    /* the transfer */
    CURL *easy;
    sl_jsonbuf resp;
    double retry_after;  /* seconds, from a Retry-After header; 0: none */
    char errbuf[CURL_ERROR_SIZE];
    es_batch *prev, *next; /* in c->flight, c->waiting or c->pool */
};

/* A management request (GET /, PUT index, _count, ...) from a task. */
struct es_req {
    int kind;
    es_client *c;
    sl_task *task;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    sl_jsonbuf resp;
    char errbuf[CURL_ERROR_SIZE];
    es_req *prev, *next;
};

typedef struct es_sock es_sock;

typedef struct {
    double requests, bytes, indexed, deleted, failed, conflicts;
    double retried_items, retried_requests, splits;
} es_stats;

/* A log record the Lua side drains (c:logs()) and writes through
 * sluice.log, which redacts secrets. */
typedef struct es_log {
    int level; /* 0 debug, 1 info, 2 warn, 3 error */
    char *id;  /* may be NULL */
    char *msg;
    struct es_log *next;
} es_log;

typedef struct es_failure {
    char *id;
    char *reason;
    struct es_failure *next;
} es_failure;

struct es_client {
    uv_loop_t *loop;
    lua_State *L;          /* main state (registry work in callbacks) */
    CURLM *multi;
    uv_timer_t curl_timer; /* libcurl's wake-up */
    uv_timer_t retry_timer;
    uv_async_t hold;       /* ref'd while work is pending */
    int handles_open;
    int closed;
    int offline;           /* no network: bodies wait for c:respond() */
    es_sock *socks;

    /* connection */
    char *base_url;        /* no trailing slash */
    char *bulk_url;
    struct curl_slist *bulk_headers, *req_headers;
    char *ca_file;
    int verify;            /* verify_certs */
    int has_fp;
    unsigned char fp[32];  /* pinned SHA-256 certificate fingerprint */
    long timeout_ms, connect_timeout_ms;

    /* bulk tuning */
    size_t max_actions, max_bytes;
    int concurrency, max_retries;
    double retry_initial, retry_max;
    int on_conflict, op_create;
    char *hash_field;

    /* state */
    es_batch *cur;         /* being filled */
    int flushing;
    /* ready: full, waiting for a free slot; flight: sent; waiting: to be
     * sent again when their retry time comes. A slot is a batch in flight
     * or waiting, so retries count against concurrency. */
    es_batch *ready, *flight, *waiting, *pool;
    int n_ready, n_flight, n_waiting, n_pool;
    uint64_t rng;
    es_req *reqs;
    int n_reqs;
    unsigned long seq;
    char *fatal;           /* set once: the sink itself failed */
    sl_task *waiter;
    enum es_wait wait_kind;
    es_failure *fail_head, *fail_tail;
    size_t n_failures;
    es_log *log_head, *log_tail;
    size_t n_logs, logs_dropped;
    es_stats st;
};

/* ---- es_http.c ---- */

/* Starts the multi and its libuv handles on c->loop; returns 0 or -1. */
int es_http_init(es_client *c);
/* Sends b (state becomes ES_B_FLIGHT); a failure to start settles b as a
 * transport error from the loop. In offline mode only numbers it. */
void es_http_send(es_batch *b);
/* Stops b's transfer if one runs; never settles it. */
void es_http_abort(es_batch *b);
/* Starts a management request for the current task; returns 0, or -1 with
 * *err set (nothing started). */
int es_http_request(es_client *c, sl_task *t, const char *method, const char *path,
                    const char *body, size_t body_len, const char **err);
/* Frees a request that did not complete (task cancelled or client closed). */
void es_req_free(es_req *r);
/* Refs the hold handle while anything is pending. */
void es_http_hold_update(es_client *c);
/* Stops every transfer and closes the handles; c is freed with the last. */
void es_http_shutdown(es_client *c);
/* The short message for a failed transfer ("connection refused"). */
const char *es_http_strerror(CURLcode rc, long os_errno, const char *errbuf);

/* ---- es_bulk.c ---- */

es_batch *es_batch_get(es_client *c);
void es_batch_put(es_client *c, es_batch *b);
/* Encodes one index action for the table at doc (id and hash strings) into
 * c->cur; returns 0, or -1 with *err (nothing added). hashed: doc is the
 * table crypto.content_hash walked last and has not changed since, but
 * for its _timestamp; its JSON is then written from the hash's canonical
 * form (codec/crypto.h) when that form is usable. */
int es_bulk_add_doc(es_client *c, lua_State *L, int doc, const char *id, size_t id_len,
                    const char *hash, size_t hash_len, int hashed, const char **err);
int es_bulk_add_delete(es_client *c, const char *id, size_t id_len, const char **err);
/* Decides what a finished bulk request means for each of its items.
 * status 0 with transport_err: the request failed before an answer. */
void es_bulk_settle(es_client *c, lua_State *L, es_batch *b, long status, const char *body,
                    size_t len, const char *transport_err);
/* Moves things along: sends what may go, wakes the waiting task. */
void es_bulk_progress(es_client *c);
/* Sends batches whose retry time has come (the retry timer). */
void es_bulk_retry_due(uv_timer_t *t);
/* Makes the client fail: everything pending is dropped. */
void es_bulk_fail(es_client *c, const char *msg);
void es_log_add(es_client *c, int level, const char *id, size_t id_len, const char *fmt, ...);
int es_slots_used(const es_client *c);
/* True when nothing is buffered, ready, in flight or waiting. */
int es_bulk_drained(const es_client *c);
/* Pushes the recorded failures as {{id=, reason=}, ...} and forgets them. */
void es_push_failures(es_client *c, lua_State *L);

#endif
