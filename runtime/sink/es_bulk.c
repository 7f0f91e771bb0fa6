/*
 * The bulk indexer's batching and decisions (see es.h for the shapes).
 *
 * Documents are encoded by the shared JSON writer straight into the body of
 * the batch being filled. A batch goes when it holds max_actions actions or
 * max_bytes bytes; a document that would push a batch over the byte cap
 * moves to the next one, so only a document that is by itself over the cap
 * makes a larger request, and it goes alone.
 *
 * Each answer is judged item by item, in request order (Elasticsearch
 * answers items in the order of the actions): 2xx is done, a delete's 404 is
 * done (already gone), 409 follows on_conflict, 429 and 5xx are copied into
 * a new batch that is sent again after an exponential backoff with jitter,
 * and any other status fails that document with the server's reason. A
 * whole request answered 429/5xx, or lost to a dropped connection, is sent
 * again as a whole; 413 splits it in two until one document is left, which
 * then fails alone; 401/403 and running out of retries fail the sink itself
 * (the sync ends failed and deletes nothing); any other 4xx fails the
 * request's documents with its reason, since sending it again cannot help.
 *
 * The common answer ("errors":false) is recognised from its first bytes and
 * never decoded; only answers with errors are turned into Lua tables.
 */
#include "codec/crypto.h"
#include "sink/es.h"

#include "codec/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LOGS 1000
#define MAX_REASON 400

/* snprintf for messages that may be cut short on purpose (a server's
 * reason can be any length); a wrapper so the compiler does not flag it. */
static void fmt(char *out, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *out, size_t size, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, size, f, ap);
    va_end(ap);
}

int es_slots_used(const es_client *c)
{
    return c->n_flight + c->n_waiting;
}

/* ---- lists ---- */

static void list_add(es_batch **head, int *n, es_batch *b)
{
    b->prev = NULL;
    b->next = *head;
    if (*head)
        (*head)->prev = b;
    *head = b;
    (*n)++;
}

/* Appends at the tail: ready batches go in the order they were filled. */
static void list_append(es_batch **head, int *n, es_batch *b)
{
    b->next = NULL;
    b->prev = NULL;
    if (!*head) {
        *head = b;
    } else {
        es_batch *t = *head;
        while (t->next)
            t = t->next;
        t->next = b;
        b->prev = t;
    }
    (*n)++;
}

static void list_del(es_batch **head, int *n, es_batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        *head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
    (*n)--;
}

/* Takes b off whichever list its state says it is on. */
static void unlink_batch(es_client *c, es_batch *b)
{
    switch (b->state) {
    case ES_B_READY:
        list_del(&c->ready, &c->n_ready, b);
        break;
    case ES_B_FLIGHT:
        list_del(&c->flight, &c->n_flight, b);
        break;
    case ES_B_WAITING:
        list_del(&c->waiting, &c->n_waiting, b);
        break;
    default:
        break;
    }
    b->state = ES_B_FREE;
}

/* ---- batches ---- */

static void batch_free(es_batch *b)
{
    if (b->easy)
        curl_easy_cleanup(b->easy);
    sl_jsonbuf_free(&b->body);
    sl_jsonbuf_free(&b->ids);
    sl_jsonbuf_free(&b->resp);
    free(b->items);
    free(b);
}

es_batch *es_batch_get(es_client *c)
{
    es_batch *b = c->pool;
    if (b) {
        c->pool = b->next;
        c->n_pool--;
    } else {
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        b->kind = ES_KIND_BATCH;
        b->c = c;
    }
    b->prev = b->next = NULL;
    b->state = ES_B_FILLING;
    b->n = 0;
    b->body.len = b->ids.len = b->resp.len = 0;
    b->tries = 0;
    b->retry_after = 0;
    return b;
}

/* Returns b to the pool. Buffers that grew for an outsized document are
 * dropped so memory goes back to the batch size. */
void es_batch_put(es_client *c, es_batch *b)
{
    es_http_abort(b);
    unlink_batch(c, b);
    if (c->closed || c->n_pool >= c->concurrency + 2) {
        batch_free(b);
        return;
    }
    if (b->body.size > 2 * c->max_bytes + 65536)
        sl_jsonbuf_free(&b->body);
    if (b->resp.size > 4u << 20)
        sl_jsonbuf_free(&b->resp);
    if (b->cap > 2 * c->max_actions + 16) {
        free(b->items);
        b->items = NULL;
        b->cap = 0;
    }
    b->state = ES_B_FREE;
    b->next = c->pool;
    c->pool = b;
    c->n_pool++;
}

static es_item *item_push(es_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        es_item *p = realloc(b->items, cap * sizeof *p);
        if (!p)
            return NULL;
        b->items = p;
        b->cap = cap;
    }
    return &b->items[b->n++];
}

/* Copies item i of src (bytes, id, tries) to the end of dst. */
static int item_copy(es_batch *dst, const es_batch *src, size_t i)
{
    const es_item *s = &src->items[i];
    size_t off = dst->body.len, id_off = dst->ids.len;
    if (sl_jsonbuf_append(&dst->body, src->body.ptr + s->off, s->len) != 0 ||
        sl_jsonbuf_append(&dst->ids, src->ids.ptr + s->id_off, s->id_len) != 0)
        return -1;
    es_item *d = item_push(dst);
    if (!d)
        return -1;
    *d = *s;
    d->off = off;
    d->id_off = id_off;
    return 0;
}

/* ---- logs and failures ---- */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void es_log_add(es_client *c, int level, const char *id, size_t id_len, const char *f, ...)
{
    if (c->n_logs >= MAX_LOGS) {
        c->logs_dropped++;
        return;
    }
    char msg[MAX_REASON + 200];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof msg, f, ap);
    va_end(ap);
    es_log *l = calloc(1, sizeof *l);
    if (!l)
        return;
    l->level = level;
    l->msg = dupn(msg, strlen(msg));
    l->id = id ? dupn(id, id_len) : NULL;
    if (c->log_tail)
        c->log_tail->next = l;
    else
        c->log_head = l;
    c->log_tail = l;
    c->n_logs++;
}

/* Records a document that will not be written (returned by the next
 * flush) and logs it at error level with its id. */
static void add_failure(es_client *c, const es_batch *b, size_t i, const char *reason)
{
    const es_item *it = &b->items[i];
    const char *id = b->ids.ptr + it->id_off;
    c->st.failed++;
    es_log_add(c, 3, id, it->id_len, "document not written: %s", reason);
    es_failure *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->id = dupn(id, it->id_len);
    f->reason = dupn(reason, strlen(reason));
    if (c->fail_tail)
        c->fail_tail->next = f;
    else
        c->fail_head = f;
    c->fail_tail = f;
    c->n_failures++;
}

/* ---- encoding ---- */

static es_batch *cur_batch(es_client *c)
{
    if (!c->cur)
        c->cur = es_batch_get(c);
    return c->cur;
}

static void make_ready(es_client *c, es_batch *b)
{
    b->state = ES_B_READY;
    list_append(&c->ready, &c->n_ready, b);
}

/* After an action was added to cur: a batch over the byte cap hands its
 * last action to a fresh batch; full batches become ready. */
static void after_add(es_client *c)
{
    es_batch *b = c->cur;
    if (b->n > 1 && b->body.len > c->max_bytes) {
        es_batch *nb = es_batch_get(c);
        if (nb && item_copy(nb, b, b->n - 1) == 0) {
            es_item *last = &b->items[b->n - 1];
            b->body.len = last->off;
            b->ids.len = last->id_off;
            b->n--;
            make_ready(c, b);
            c->cur = b = nb;
        } else if (nb) {
            es_batch_put(c, nb);
        }
    }
    if (b->n >= c->max_actions || b->body.len >= c->max_bytes) {
        make_ready(c, b);
        c->cur = NULL;
    }
}

static int add_action_line(sl_jsonbuf *body, const char *op, const char *id, size_t id_len)
{
    return sl_jsonbuf_append(body, op, strlen(op)) || sl_jsonbuf_string(body, id, id_len) ||
           sl_jsonbuf_append(body, "}}\n", 3);
}

static int finish_doc(es_client *c, es_batch *b, size_t mark, const char *id, size_t id_len,
                      const char **err);

int es_bulk_add_doc(es_client *c, lua_State *L, int doc, const char *id, size_t id_len,
                    const char *hash, size_t hash_len, int hashed, const char **err)
{
    es_batch *b = cur_batch(c);
    *err = "out of memory";
    if (!b)
        return -1;
    size_t mark = b->body.len;
    const char *op = c->op_create ? "{\"create\":{\"_id\":" : "{\"index\":{\"_id\":";
    if (add_action_line(&b->body, op, id, id_len) != 0) {
        b->body.len = mark;
        return -1;
    }
    /* The id travels in the action line (Elasticsearch rejects _id inside
     * the source) and the content hash inside the source, so a lost state
     * database can be rebuilt from the index. */
    size_t form_len, src = b->body.len;
    const char *form = hashed ? sl_content_canonical(L, doc, &form_len) : NULL;
    lua_pushliteral(L, "_timestamp");
    lua_rawget(L, doc); /* [ts]: the engine may have set it after hashing */
    int ts_type = lua_type(L, -1);
    if (form && (ts_type == LUA_TSTRING || ts_type == LUA_TNIL)) {
        /* the document content_hash just walked: written from that form,
         * with the hash and the document's _timestamp added (a source
         * field named like the hash field stays when there is no hash to
         * replace it, as in the table walk) */
        const char *drop[] = {"_id", "_timestamp", c->hash_field};
        int members;
        unsigned found;
        int rc = sl_jsonbuf_canonical_open(&b->body, form, form_len, drop, hash ? 3 : 2, &members,
                                           &found);
        if (rc == 0 && ts_type == LUA_TSTRING) {
            size_t tn;
            const char *ts = lua_tolstring(L, -1, &tn);
            if (members++ > 0)
                rc = sl_jsonbuf_putc(&b->body, ',');
            rc = rc || sl_jsonbuf_append(&b->body, "\"_timestamp\":", 13) ||
                 sl_jsonbuf_string(&b->body, ts, tn);
        }
        lua_pop(L, 1);
        if (rc == 0 && hash) {
            if (members > 0)
                rc = sl_jsonbuf_putc(&b->body, ',');
            rc = rc || sl_jsonbuf_string(&b->body, c->hash_field, strlen(c->hash_field)) ||
                 sl_jsonbuf_putc(&b->body, ':') || sl_jsonbuf_string(&b->body, hash, hash_len);
        }
        if (rc == 0)
            rc = sl_jsonbuf_putc(&b->body, '}');
        if (rc == 0)
            return finish_doc(c, b, mark, id, id_len, err);
        /* out of memory, or nested deeper than the writer allows: the
         * table walk below says which */
        b->body.len = src;
    } else {
        lua_pop(L, 1);
    }
    /* Raw sets: the engine's table has no metamethods to run. */
    lua_pushliteral(L, "_id");
    lua_rawget(L, doc); /* [saved_id] */
    lua_pushliteral(L, "_id");
    lua_pushnil(L);
    lua_rawset(L, doc);
    if (hash) { /* the source's own field of that name is put back after */
        lua_pushstring(L, c->hash_field);
        lua_rawget(L, doc); /* [saved_id saved_hash_field] */
        lua_pushstring(L, c->hash_field);
        lua_pushlstring(L, hash, hash_len);
        lua_rawset(L, doc);
    }
    int rc = sl_jsonbuf_value(&b->body, L, doc, err);
    if (hash) {
        lua_pushstring(L, c->hash_field);
        lua_insert(L, -2);
        lua_rawset(L, doc); /* [saved_id] */
    }
    lua_pushliteral(L, "_id");
    lua_pushvalue(L, -2);
    lua_rawset(L, doc);
    lua_pop(L, 1);
    if (rc != 0) {
        b->body.len = mark;
        return -1;
    }
    return finish_doc(c, b, mark, id, id_len, err);
}

/* Ends the source line of the document that starts at mark and records
 * its item. */
static int finish_doc(es_client *c, es_batch *b, size_t mark, const char *id, size_t id_len,
                      const char **err)
{
    size_t id_off = b->ids.len;
    es_item *it;
    if (sl_jsonbuf_putc(&b->body, '\n') != 0 || sl_jsonbuf_append(&b->ids, id, id_len) != 0 ||
        !(it = item_push(b))) {
        *err = "out of memory";
        b->body.len = mark;
        b->ids.len = id_off;
        return -1;
    }
    it->off = mark;
    it->len = b->body.len - mark;
    it->id_off = id_off;
    it->id_len = (uint32_t)id_len;
    it->tries = 0;
    it->op = ES_OP_INDEX;
    after_add(c);
    return 0;
}

int es_bulk_add_delete(es_client *c, const char *id, size_t id_len, const char **err)
{
    es_batch *b = cur_batch(c);
    *err = "out of memory";
    if (!b)
        return -1;
    size_t mark = b->body.len, id_off = b->ids.len;
    es_item *it;
    if (add_action_line(&b->body, "{\"delete\":{\"_id\":", id, id_len) != 0 ||
        sl_jsonbuf_append(&b->ids, id, id_len) != 0 || !(it = item_push(b))) {
        b->body.len = mark;
        b->ids.len = id_off;
        return -1;
    }
    it->off = mark;
    it->len = b->body.len - mark;
    it->id_off = id_off;
    it->id_len = (uint32_t)id_len;
    it->tries = 0;
    it->op = ES_OP_DELETE;
    after_add(c);
    return 0;
}

/* ---- retries ---- */

static double rand01(es_client *c)
{
    uint64_t x = c->rng; /* xorshift64: jitter needs spread, not secrecy */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return (double)(x >> 11) / 9007199254740992.0;
}

/* Seconds to wait before attempt `tries`+1: exponential from retry_initial,
 * capped at retry_max, with "equal jitter" (half fixed, half random) so
 * many clients do not retry in step; a server's Retry-After is honoured up
 * to the cap. */
static double backoff(es_client *c, int tries, double retry_after)
{
    double d = c->retry_initial;
    for (int i = 1; i < tries && d < c->retry_max; i++)
        d *= 2;
    if (d > c->retry_max)
        d = c->retry_max;
    d = d / 2 + rand01(c) * d / 2;
    if (retry_after > d)
        d = retry_after < c->retry_max ? retry_after : c->retry_max;
    return d;
}

static void arm_retry_timer(es_client *c)
{
    if (!c->waiting) {
        uv_timer_stop(&c->retry_timer);
        return;
    }
    uint64_t first = c->waiting->due;
    for (es_batch *b = c->waiting; b; b = b->next)
        if (b->due < first)
            first = b->due;
    uint64_t now = uv_now(c->loop);
    uv_timer_start(&c->retry_timer, es_bulk_retry_due, first > now ? first - now : 0, 0);
}

static void schedule(es_client *c, es_batch *b, double delay)
{
    b->state = ES_B_WAITING;
    b->due = uv_now(c->loop) + (uint64_t)(delay * 1000.0 + 0.5);
    list_add(&c->waiting, &c->n_waiting, b);
    arm_retry_timer(c);
}

static void send_batch(es_client *c, es_batch *b)
{
    b->state = ES_B_FLIGHT;
    list_add(&c->flight, &c->n_flight, b);
    es_http_send(b);
}

void es_bulk_retry_due(uv_timer_t *t)
{
    es_client *c = t->data;
    uint64_t now = uv_now(c->loop);
    int again = 1;
    while (again && !c->fatal) {
        again = 0;
        for (es_batch *b = c->waiting; b; b = b->next) {
            if (b->due <= now) {
                list_del(&c->waiting, &c->n_waiting, b);
                send_batch(c, b);
                again = 1; /* the list changed under us: walk it afresh */
                break;
            }
        }
    }
    if (!c->fatal)
        arm_retry_timer(c);
    es_bulk_progress(c);
}

/* The request as a whole failed in a way that may pass: send it again
 * later, or give up and fail the sink. */
static void retry_whole(es_client *c, es_batch *b, const char *reason)
{
    b->tries++;
    if (b->tries > c->max_retries) {
        char msg[MAX_REASON + 100];
        fmt(msg, sizeof msg, "bulk request failed after %d attempts: %s", b->tries, reason);
        es_batch_put(c, b);
        es_bulk_fail(c, msg);
        return;
    }
    c->st.retried_requests++;
    double d = backoff(c, b->tries, b->retry_after);
    es_log_add(c, 2, NULL, 0, "bulk request of %zu actions failed (%s): retry %d of %d in %.2f s",
               b->n, reason, b->tries, c->max_retries, d);
    schedule(c, b, d);
}

/* ---- reading answers ---- */

/* Writes "type: reason (caused by type: reason)" for the error value at
 * the top of L (a table or a string) into out. */
static void error_text(lua_State *L, char *out, size_t size)
{
    if (lua_type(L, -1) == LUA_TSTRING) {
        fmt(out, size, "%s", lua_tostring(L, -1));
        return;
    }
    if (!lua_istable(L, -1)) {
        fmt(out, size, "unknown error");
        return;
    }
    lua_getfield(L, -1, "type");
    lua_getfield(L, -2, "reason");
    const char *type = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "error";
    const char *reason = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    int n = snprintf(out, size, "%s%s%s", type, reason[0] ? ": " : "", reason);
    lua_pop(L, 2);
    lua_getfield(L, -1, "caused_by");
    if (lua_istable(L, -1) && n > 0 && (size_t)n < size - 16) {
        char inner[MAX_REASON];
        error_text(L, inner, sizeof inner);
        fmt(out + n, size - (size_t)n, " (caused by %s)", inner);
    }
    lua_pop(L, 1);
}

/* What a whole-request error answer says, JSON or not (a proxy's HTML). */
static void body_reason(lua_State *L, long status, const char *body, size_t len, char *out,
                        size_t size)
{
    char jerr[64];
    int top = lua_gettop(L);
    if (len > 0 && len < (8u << 20) && sl_json_decode(L, body, len, jerr, sizeof jerr) == 0 &&
        lua_istable(L, -1)) {
        lua_getfield(L, -1, "error");
        if (!lua_isnil(L, -1)) {
            char e[MAX_REASON];
            error_text(L, e, sizeof e);
            fmt(out, size, "HTTP %ld: %s", status, e);
        } else {
            fmt(out, size, "HTTP %ld: %.*s", status, (int)(len < 160 ? len : 160), body);
        }
        lua_settop(L, top);
        return;
    }
    lua_settop(L, top);
    /* Not JSON: keep the text of the first bytes, tags dropped and spaces
     * collapsed, so "413 Request Entity Too Large" reaches the log. */
    char text[161];
    size_t k = 0;
    int in_tag = 0, space = 0;
    for (size_t i = 0; i < len && i < 4096 && k < sizeof text - 1; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch == '<') {
            in_tag = 1;
            space = 1;
        } else if (ch == '>') {
            in_tag = 0;
        } else if (!in_tag) {
            if (ch <= ' ') {
                space = 1;
            } else {
                if (space && k > 0 && k < sizeof text - 2)
                    text[k++] = ' ';
                space = 0;
                text[k++] = (char)(ch < 0x20 || ch == 0x7f ? '?' : ch);
            }
        }
    }
    text[k] = 0;
    if (k)
        fmt(out, size, "HTTP %ld with a non-JSON body: %s", status, text);
    else
        fmt(out, size, "HTTP %ld with an empty body", status);
}

/* True when the first bytes of a 2xx bulk answer say "errors":false and it
 * holds one "status" per action (each item has exactly one; a short answer
 * must not count as success for actions it does not mention). */
static int fast_ok(const char *body, size_t len, size_t n)
{
    static const char key[] = "\"errors\":false", st[] = "\"status\":";
    size_t klen = sizeof key - 1, slen = sizeof st - 1, lim = len < 256 ? len : 256;
    int found = 0;
    for (size_t i = 0; i + klen <= lim && !found; i++)
        found = body[i] == '"' && memcmp(body + i, key, klen) == 0;
    if (!found)
        return 0;
    size_t count = 0;
    for (const char *p = body, *end = body + len; p + slen <= end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q || q + slen > end)
            break;
        if (memcmp(q, st, slen) == 0) {
            count++;
            p = q + slen;
        } else {
            p = q + 1;
        }
    }
    return count == n;
}

static void count_ok(es_client *c, const es_batch *b, size_t i)
{
    if (b->items[i].op == ES_OP_DELETE)
        c->st.deleted++;
    else
        c->st.indexed++;
}

/* Judges each item of a decoded 2xx answer (table at the top of L). Items
 * to send again are gathered into one new batch. Returns 0, or -1 when the
 * answer does not fit the request (then nothing was decided). */
static int settle_items(es_client *c, lua_State *L, es_batch *b)
{
    lua_getfield(L, -1, "items");
    if (!lua_istable(L, -1) || lua_objlen(L, -1) != b->n) {
        lua_pop(L, 1);
        return -1;
    }
    es_batch *again = NULL;
    int max_tries = 0;
    for (size_t i = 0; i < b->n; i++) {
        lua_rawgeti(L, -1, (int)i + 1); /* [items, item] */
        long status = 0;
        char reason[MAX_REASON] = "";
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            if (lua_next(L, -2)) { /* [items, item, op, result] */
                if (lua_istable(L, -1)) {
                    lua_getfield(L, -1, "status");
                    status = (long)lua_tonumber(L, -1);
                    lua_pop(L, 1);
                    lua_getfield(L, -1, "error");
                    if (!lua_isnil(L, -1))
                        error_text(L, reason, sizeof reason);
                    lua_pop(L, 1);
                }
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1); /* [items] */
        es_item *it = &b->items[i];
        int retry = 0;
        if (status >= 200 && status < 300) {
            count_ok(c, b, i);
        } else if (status == 404 && it->op == ES_OP_DELETE) {
            c->st.deleted++; /* already gone: what a delete wants */
        } else if (status == 409 && c->on_conflict != ES_CONFLICT_RETRY) {
            c->st.conflicts++;
            if (c->on_conflict == ES_CONFLICT_IGNORE) {
                count_ok(c, b, i);
            } else {
                char msg[MAX_REASON + 32];
                fmt(msg, sizeof msg, "409 %s", reason[0] ? reason : "version conflict");
                add_failure(c, b, i, msg);
            }
        } else if (status == 429 || status >= 500 || status == 409) {
            retry = 1;
        } else {
            char msg[MAX_REASON + 32];
            if (status == 0)
                fmt(msg, sizeof msg, "no status in the bulk answer");
            else
                fmt(msg, sizeof msg, "%ld %s", status, reason[0] ? reason : "rejected");
            add_failure(c, b, i, msg);
        }
        if (!retry)
            continue;
        if (it->tries + 1 > c->max_retries) {
            char msg[MAX_REASON + 64];
            fmt(msg, sizeof msg, "gave up after %d attempts: %ld %s", it->tries + 1, status,
                     reason[0] ? reason : "");
            add_failure(c, b, i, msg);
            continue;
        }
        it->tries++;
        if (!again)
            again = es_batch_get(c);
        if (!again || item_copy(again, b, i) != 0) {
            add_failure(c, b, i, "out of memory");
            continue;
        }
        if (it->tries > max_tries)
            max_tries = it->tries;
        c->st.retried_items++;
        es_log_add(c, 1, b->ids.ptr + it->id_off, it->id_len,
                   "document rejected with %ld (%s): retry %d of %d", status, reason, it->tries,
                   c->max_retries);
    }
    lua_pop(L, 1);
    if (again && again->n > 0)
        schedule(c, again, backoff(c, max_tries, b->retry_after));
    else if (again)
        es_batch_put(c, again);
    return 0;
}

/* 413: the request was too large for the server (or a proxy). Halves go
 * out at once; a single document fails alone. */
static void split(es_client *c, es_batch *b, const char *why)
{
    if (b->n <= 1) {
        char msg[MAX_REASON + 100];
        fmt(msg, sizeof msg, "document too large for the server (%zu bytes): %s",
                 b->n ? b->items[0].len : (size_t)0, why);
        if (b->n)
            add_failure(c, b, 0, msg);
        es_batch_put(c, b);
        return;
    }
    c->st.splits++;
    es_log_add(c, 2, NULL, 0, "bulk request of %zu actions (%zu bytes) too large (%s): splitting it",
               b->n, b->body.len, why);
    size_t half = b->n / 2;
    es_batch *h[2] = {es_batch_get(c), es_batch_get(c)};
    for (size_t i = 0; i < b->n; i++) {
        es_batch *dst = h[i < half ? 0 : 1];
        if (!dst || item_copy(dst, b, i) != 0)
            add_failure(c, b, i, "out of memory");
    }
    es_batch_put(c, b);
    for (int k = 0; k < 2; k++) {
        if (h[k] && h[k]->n)
            send_batch(c, h[k]);
        else if (h[k])
            es_batch_put(c, h[k]);
    }
}

void es_bulk_settle(es_client *c, lua_State *L, es_batch *b, long status, const char *body,
                    size_t len, const char *transport_err)
{
    char reason[MAX_REASON + 100];
    if (b->state == ES_B_FLIGHT)
        list_del(&c->flight, &c->n_flight, b);
    b->state = ES_B_FILLING; /* on no list until decided */
    if (c->fatal || c->closed) {
        es_batch_put(c, b);
        return;
    }
    if (transport_err) {
        fmt(reason, sizeof reason, "%s", transport_err); /* may live in b */
        retry_whole(c, b, reason);
        return;
    }
    lua_checkstack(L, 16);
    int top = lua_gettop(L);
    if (status >= 200 && status < 300) {
        char jerr[64];
        if (len > 0 && fast_ok(body, len, b->n)) {
            for (size_t i = 0; i < b->n; i++)
                count_ok(c, b, i);
            es_batch_put(c, b);
            return;
        }
        if (len > 0 && sl_json_decode(L, body, len, jerr, sizeof jerr) == 0 && lua_istable(L, -1) &&
            settle_items(c, L, b) == 0) {
            lua_settop(L, top);
            es_batch_put(c, b);
            return;
        }
        lua_settop(L, top);
        fmt(reason, sizeof reason, "malformed bulk answer (HTTP %ld, %zu bytes)", status, len);
        retry_whole(c, b, reason);
        return;
    }
    body_reason(L, status, body, len, reason, sizeof reason);
    if (status == 413) {
        split(c, b, reason);
    } else if (status == 429 || status >= 500) {
        retry_whole(c, b, reason);
    } else if (status == 401 || status == 403) {
        char msg[MAX_REASON + 140];
        fmt(msg, sizeof msg, "the cluster refused the credentials: %s", reason);
        es_batch_put(c, b);
        es_bulk_fail(c, msg);
    } else {
        es_log_add(c, 3, NULL, 0, "bulk request of %zu actions rejected, not retried: %s", b->n,
                   reason);
        char msg[MAX_REASON + 140];
        fmt(msg, sizeof msg, "bulk request rejected: %s", reason);
        for (size_t i = 0; i < b->n; i++)
            add_failure(c, b, i, msg);
        es_batch_put(c, b);
    }
}

/* ---- moving along ---- */

void es_bulk_fail(es_client *c, const char *msg)
{
    if (c->fatal)
        return;
    c->fatal = dupn(msg, strlen(msg));
    es_log_add(c, 3, NULL, 0, "elasticsearch output failed: %s", msg);
    while (c->ready)
        es_batch_put(c, c->ready);
    while (c->flight)
        es_batch_put(c, c->flight);
    while (c->waiting)
        es_batch_put(c, c->waiting);
    if (c->cur) {
        es_batch_put(c, c->cur);
        c->cur = NULL;
    }
    if (!c->closed)
        uv_timer_stop(&c->retry_timer);
}

/* Pushes the failures recorded so far as {{id=, reason=}, ...} onto L and
 * forgets them. */
void es_push_failures(es_client *c, lua_State *L)
{
    lua_createtable(L, (int)c->n_failures, 0);
    int i = 0;
    for (es_failure *f = c->fail_head, *next; f; f = next) {
        next = f->next;
        lua_createtable(L, 0, 2);
        lua_pushstring(L, f->id ? f->id : "?");
        lua_setfield(L, -2, "id");
        lua_pushstring(L, f->reason ? f->reason : "out of memory");
        lua_setfield(L, -2, "reason");
        lua_rawseti(L, -2, ++i);
        free(f->id);
        free(f->reason);
        free(f);
    }
    c->fail_head = c->fail_tail = NULL;
    c->n_failures = 0;
}

static void wake_waiter(es_client *c, int ok)
{
    sl_task *t = c->waiter;
    enum es_wait kind = c->wait_kind;
    c->waiter = NULL;
    c->wait_kind = ES_WAIT_NONE;
    if (kind == ES_WAIT_FLUSH)
        c->flushing = 0;
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    lua_State *co = t->co;
    lua_checkstack(co, 4);
    if (!ok) {
        lua_pushnil(co);
        lua_pushstring(co, c->fatal);
        sl_task_wake(t, 2);
    } else if (kind == ES_WAIT_FLUSH) {
        es_push_failures(c, co);
        sl_task_wake(t, 1);
    } else {
        lua_pushboolean(co, 1);
        sl_task_wake(t, 1);
    }
}

int es_bulk_drained(const es_client *c)
{
    return c->n_ready == 0 && es_slots_used(c) == 0 && (!c->cur || c->cur->n == 0);
}

void es_bulk_progress(es_client *c)
{
    if (c->closed)
        return;
    if (!c->fatal) {
        if (c->flushing && c->cur && c->cur->n > 0) {
            make_ready(c, c->cur);
            c->cur = NULL;
        }
        while (!c->fatal && c->ready && es_slots_used(c) < c->concurrency) {
            es_batch *b = c->ready;
            list_del(&c->ready, &c->n_ready, b);
            send_batch(c, b);
        }
    }
    es_http_hold_update(c);
    if (!c->waiter)
        return;
    if (c->fatal)
        wake_waiter(c, 0);
    else if (c->wait_kind == ES_WAIT_PUT && c->n_ready == 0)
        wake_waiter(c, 1);
    else if (c->wait_kind == ES_WAIT_FLUSH && es_bulk_drained(c))
        wake_waiter(c, 1);
}
