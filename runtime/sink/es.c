/*
 * sluice.sink.es: the Elasticsearch/OpenSearch bulk indexer, as Lua sees it.
 *
 * One client per sync: es.client{url=, index=, ...}. put() and delete()
 * encode an action into the batch being filled, in C, and return at once
 * unless every slot (concurrency) is busy and a full batch waits: then the
 * calling task yields until a slot frees, which is the backpressure that
 * keeps memory at about (concurrency + 2) batches whatever the source size.
 * flush() yields until everything before it is acknowledged and returns the
 * documents that could not be written; a sink that failed as a whole
 * (cluster gone after the retries, credentials refused) answers nil, err
 * from then on.
 *
 * request() sends one management call (GET /, index creation, _count, PIT
 * pages) over the same connections, auth and TLS settings. The Lua side
 * (lualib/sluice/sink/elasticsearch.lua) does index management on top.
 *
 * offline = true is the formatter hook: nothing goes on the network;
 * pending() hands out the exact bulk bodies and respond() feeds answers
 * into the same decision code a real transfer reaches.
 */
#include "sink/es.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define ES_MT "sluice.sink.es"

typedef struct {
    es_client *c;
} es_ud;

static es_client *check_client(lua_State *L)
{
    es_ud *u = luaL_checkudata(L, 1, ES_MT);
    if (!u->c)
        luaL_error(L, "elasticsearch client is closed");
    return u->c;
}

/* ---- options ---- */

static const char *const known_opts[] = {
    "url", "index", "headers", "pipeline", "ca_file", "verify_certs", "fingerprint",
    "timeout", "connect_timeout", "max_actions", "max_bytes", "concurrency", "max_retries",
    "retry_initial", "retry_max", "on_conflict", "op_type", "hash_field", "offline", NULL};

static const char *opt_str(lua_State *L, const char *key, const char *dflt)
{
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return dflt;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: string expected, got %s", key,
                                            luaL_typename(L, -1)));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* still held by opts */
    return s;
}

static double opt_num(lua_State *L, const char *key, double dflt, double lo, double hi)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
        return dflt;
    if (t != LUA_TNUMBER)
        luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: number expected", key));
    if (!(v >= lo && v <= hi))
        luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: out of range", key));
    return v;
}

static int opt_bool(lua_State *L, const char *key, int dflt)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1), v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
        return dflt;
    if (t != LUA_TBOOLEAN)
        luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: boolean expected", key));
    return v;
}

static int opt_choice(lua_State *L, const char *key, const char *const *names)
{
    const char *s = opt_str(L, key, names[0]);
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: unknown value '%s'", key, s));
}

/* Parses 64 hex digits, colons allowed between pairs. */
static int parse_fingerprint(const char *s, unsigned char out[32])
{
    int n = 0, half = -1;
    for (; *s; s++) {
        int v;
        if (*s == ':' && half < 0)
            continue;
        if (*s >= '0' && *s <= '9')
            v = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            v = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            v = *s - 'A' + 10;
        else
            return -1;
        if (half < 0) {
            half = v;
        } else {
            if (n == 32)
                return -1;
            out[n++] = (unsigned char)(half * 16 + v);
            half = -1;
        }
    }
    return n == 32 && half < 0 ? 0 : -1;
}

/* Percent-encodes everything but RFC 3986's unreserved bytes into b. */
static int escape_into(sl_jsonbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            if (sl_jsonbuf_putc(b, (char)ch))
                return -1;
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            if (sl_jsonbuf_append(b, e, 3))
                return -1;
        }
    }
    return 0;
}

static char *dup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Checks opts.headers and adds "Name: value" lines to both lists. */
static int add_headers(lua_State *L, es_client *c)
{
    lua_getfield(L, 1, "headers");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1))
        luaL_argerror(L, 1, "opts.headers: table expected");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 1, "opts.headers: names and values must be strings");
        const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
        if (strpbrk(v, "\r\n") || strpbrk(k, ":\r\n "))
            luaL_argerror(L, 1, "opts.headers: line break or bad name");
        lua_pushfstring(L, "%s: %s", k, v);
        struct curl_slist *a = curl_slist_append(c->bulk_headers, lua_tostring(L, -1));
        if (a)
            c->bulk_headers = a;
        struct curl_slist *r = curl_slist_append(c->req_headers, lua_tostring(L, -1));
        if (r)
            c->req_headers = r;
        lua_pop(L, 2);
        if (!a || !r)
            return -1;
    }
    lua_pop(L, 1);
    return 0;
}

static void client_free_lists(es_client *c)
{
    for (es_failure *f = c->fail_head, *n; f; f = n) {
        n = f->next;
        free(f->id);
        free(f->reason);
        free(f);
    }
    c->fail_head = c->fail_tail = NULL;
    for (es_log *l = c->log_head, *n; l; l = n) {
        n = l->next;
        free(l->id);
        free(l->msg);
        free(l);
    }
    c->log_head = c->log_tail = NULL;
}

/* Frees everything c holds and starts closing its handles; wake: tell the
 * tasks waiting on it (not at lua_close, when they are being collected). */
static void client_close(es_client *c, int wake)
{
    c->closed = 1;
    if (wake && c->waiter) {
        sl_task *t = c->waiter;
        c->waiter = NULL;
        t->cleanup = NULL;
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "elasticsearch client closed");
        sl_task_wake(t, 2);
    }
    while (wake && c->reqs) {
        es_req *r = c->reqs;
        sl_task *t = r->task;
        t->cleanup = NULL;
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "elasticsearch client closed");
        sl_task_wake(t, 2);
        es_req_free(r);
    }
    while (c->ready)
        es_batch_put(c, c->ready);
    while (c->flight)
        es_batch_put(c, c->flight);
    while (c->waiting)
        es_batch_put(c, c->waiting);
    if (c->cur)
        es_batch_put(c, c->cur);
    c->cur = NULL;
    while (c->pool) {
        es_batch *b = c->pool;
        c->pool = b->next;
        c->n_pool--;
        b->state = ES_B_FREE;
        es_batch_put(c, b); /* closed: frees */
    }
    client_free_lists(c);
    curl_slist_free_all(c->bulk_headers);
    curl_slist_free_all(c->req_headers);
    free(c->base_url);
    free(c->bulk_url);
    free(c->ca_file);
    free(c->hash_field);
    free(c->fatal);
    c->fatal = NULL;
    es_http_shutdown(c); /* c is freed with its last handle */
}

/* es.client(opts) -> client
 * opts: url (required, "http://host:9200"), index (required), headers
 * {name = value} (auth), pipeline, ca_file, verify_certs (true),
 * fingerprint (SHA-256 of a certificate in the server's chain, hex, colons
 * allowed), timeout (60 s per request), connect_timeout (10), max_actions
 * (1000), max_bytes (5 MiB), concurrency (2), max_retries (5), retry_initial
 * (0.5 s), retry_max (30 s), on_conflict ("fail" | "ignore" | "retry"),
 * op_type ("index" | "create"), hash_field ("_sluice_hash"), offline
 * (false). Unknown options and wrong types raise. */
static int l_client(lua_State *L)
{
    static const char *const conflicts[] = {"fail", "ignore", "retry", NULL};
    static const char *const op_types[] = {"index", "create", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; known_opts[i]; i++)
                known |= strcmp(lua_tostring(L, -2), known_opts[i]) == 0;
        if (!known)
            luaL_argerror(L, 1, lua_type(L, -2) == LUA_TSTRING
                                    ? lua_pushfstring(L, "unknown option '%s'", lua_tostring(L, -2))
                                    : "option names must be strings");
        lua_pop(L, 1);
    }
    const char *url = opt_str(L, "url", NULL), *index = opt_str(L, "index", NULL);
    if (!url || strncmp(url, "http", 4) != 0)
        luaL_argerror(L, 1, "opts.url: an http:// or https:// URL expected");
    if (!index || !index[0])
        luaL_argerror(L, 1, "opts.index: a non-empty string expected");
    const char *pipeline = opt_str(L, "pipeline", NULL);
    const char *ca_file = opt_str(L, "ca_file", NULL);
    const char *fp = opt_str(L, "fingerprint", NULL);
    unsigned char fpb[32];
    if (fp && parse_fingerprint(fp, fpb) != 0)
        luaL_argerror(L, 1, "opts.fingerprint: 64 hex digits (SHA-256) expected");
    const char *hash_field = opt_str(L, "hash_field", "_sluice_hash");
    double timeout = opt_num(L, "timeout", 60, 0, 1e6);
    double ctimeout = opt_num(L, "connect_timeout", 10, 0, 1e6);
    double max_actions = opt_num(L, "max_actions", 1000, 1, 1e7);
    double max_bytes = opt_num(L, "max_bytes", 5 << 20, 1, 1e10);
    double conc = opt_num(L, "concurrency", 2, 1, 64);
    double retries = opt_num(L, "max_retries", 5, 0, 1000);
    double rinit = opt_num(L, "retry_initial", 0.5, 0, 3600);
    double rmax = opt_num(L, "retry_max", 30, 0, 86400);
    int on_conflict = opt_choice(L, "on_conflict", conflicts);
    int op_create = opt_choice(L, "op_type", op_types);
    int verify = opt_bool(L, "verify_certs", 1);
    int offline = opt_bool(L, "offline", 0);
    sl_rt *rt = sl_rt_get(L);

    es_ud *u = lua_newuserdata(L, sizeof *u);
    u->c = NULL;
    luaL_getmetatable(L, ES_MT);
    lua_setmetatable(L, -2);
    es_client *c = calloc(1, sizeof *c);
    if (!c)
        return luaL_error(L, "out of memory");
    c->loop = rt->loop;
    c->L = rt->L;
    if (es_http_init(c) != 0) {
        free(c);
        return luaL_error(L, "cannot initialise libcurl");
    }
    u->c = c; /* from here __gc frees what is set */
    size_t ulen = strlen(url);
    while (ulen > 0 && url[ulen - 1] == '/')
        ulen--;
    c->base_url = malloc(ulen + 1);
    if (c->base_url) {
        memcpy(c->base_url, url, ulen);
        c->base_url[ulen] = 0;
    }
    sl_jsonbuf bu;
    sl_jsonbuf_init(&bu);
    int bad = !c->base_url || sl_jsonbuf_append(&bu, c->base_url, ulen) ||
              sl_jsonbuf_putc(&bu, '/') || escape_into(&bu, index);
    /* Only what the decisions read comes back: a 5,000-item answer shrinks
     * from ~750 KB to ~130 KB. filter_path applies to error answers too, so
     * "error" stays in or a whole-request error would read "{}". */
    const char *q = "/_bulk?filter_path=errors,items.*.status,items.*.error,error,status";
    bad = bad || sl_jsonbuf_append(&bu, q, strlen(q));
    if (pipeline)
        bad = bad || sl_jsonbuf_append(&bu, "&pipeline=", 10) || escape_into(&bu, pipeline);
    bad = bad || sl_jsonbuf_putc(&bu, 0);
    c->bulk_url = bad ? NULL : dup0(bu.ptr);
    sl_jsonbuf_free(&bu);
    c->ca_file = dup0(ca_file);
    c->hash_field = dup0(hash_field);
    c->bulk_headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    c->req_headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *e1 = c->bulk_headers ? curl_slist_append(c->bulk_headers, "Expect:") : NULL;
    struct curl_slist *e2 = c->req_headers ? curl_slist_append(c->req_headers, "Expect:") : NULL;
    if (!c->bulk_url || !c->hash_field || (ca_file && !c->ca_file) || !e1 || !e2 ||
        add_headers(L, c) != 0)
        return luaL_error(L, "out of memory");
    c->verify = verify;
    c->has_fp = fp != NULL;
    if (fp)
        memcpy(c->fp, fpb, 32);
    c->timeout_ms = (long)(timeout * 1000);
    c->connect_timeout_ms = (long)(ctimeout * 1000);
    c->max_actions = (size_t)max_actions;
    c->max_bytes = (size_t)max_bytes;
    c->concurrency = (int)conc;
    c->max_retries = (int)retries;
    c->retry_initial = rinit;
    c->retry_max = rmax;
    c->on_conflict = on_conflict;
    c->op_create = op_create;
    c->offline = offline;
    c->rng = uv_hrtime() | 1;
    return 1;
}

static void wait_cancel(void *data)
{
    es_client *c = data;
    if (c->wait_kind == ES_WAIT_FLUSH)
        c->flushing = 0;
    c->waiter = NULL;
    c->wait_kind = ES_WAIT_NONE;
}

static int push_fatal(lua_State *L, es_client *c)
{
    lua_pushnil(L);
    lua_pushstring(L, c->fatal);
    return 2;
}

/* Waits (yields) when a full batch has no slot yet. */
static int after_action(lua_State *L, es_client *c)
{
    es_bulk_progress(c);
    if (c->fatal)
        return push_fatal(L, c);
    if (c->n_ready == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    sl_task *t = sl_task_check_current(L);
    if (c->waiter)
        return luaL_error(L, "another task is already waiting on this client");
    c->waiter = t;
    c->wait_kind = ES_WAIT_PUT;
    return sl_task_await(L, wait_cancel, c);
}

/* client:put(doc, hash[, hashed]) -> true | nil, err
 * Queues doc (a table with a string _id) for indexing, with hash stored in
 * the hash field. hashed: doc is what crypto.content_hash hashed last,
 * unchanged since but for a _timestamp (its JSON then comes from the
 * hash's walk, see es_bulk_add_doc). Yields while every slot is busy. err:
 * the document cannot be encoded (nothing queued), or the sink has
 * failed. */
static int l_put(lua_State *L)
{
    es_client *c = check_client(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t hlen = 0;
    const char *hash = luaL_optlstring(L, 3, NULL, &hlen);
    int hashed = lua_toboolean(L, 4);
    lua_settop(L, 3);
    lua_getfield(L, 2, "_id");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, 2, "doc._id must be a string");
    size_t idlen;
    const char *id = lua_tolstring(L, -1, &idlen); /* kept on the stack */
    if (c->fatal)
        return push_fatal(L, c);
    const char *err;
    if (es_bulk_add_doc(c, L, 2, id, idlen, hash, hlen, hashed, &err) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot encode document: %s", err);
        return 2;
    }
    return after_action(L, c);
}

/* client:delete(id) -> true | nil, err
 * Queues a delete; a document already gone counts as deleted. */
static int l_delete(lua_State *L)
{
    es_client *c = check_client(L);
    size_t idlen;
    const char *id = luaL_checklstring(L, 2, &idlen);
    if (c->fatal)
        return push_fatal(L, c);
    const char *err;
    if (es_bulk_add_delete(c, id, idlen, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return after_action(L, c);
}

/* client:flush() -> failures | nil, err
 * Sends what is buffered and yields until every action is acknowledged.
 * failures: {{id=, reason=}, ...} (empty when all went well), the
 * documents that will not be written. err: the sink failed as a whole. */
static int l_flush(lua_State *L)
{
    es_client *c = check_client(L);
    if (c->fatal)
        return push_fatal(L, c);
    c->flushing = 1;
    es_bulk_progress(c);
    if (c->fatal)
        return push_fatal(L, c);
    if (es_bulk_drained(c)) {
        c->flushing = 0;
        es_push_failures(c, L);
        return 1;
    }
    sl_task *t = sl_task_check_current(L);
    if (c->waiter)
        return luaL_error(L, "another task is already waiting on this client");
    c->waiter = t;
    c->wait_kind = ES_WAIT_FLUSH;
    return sl_task_await(L, wait_cancel, c);
}

/* client:request(method, path[, body]) -> res | nil, err
 * One management request over the client's connections; path starts with
 * "/" and is used as given (escape ids with http.escape first). res: status,
 * body. An HTTP error status is a response; err is a transport failure. */
static int l_request(lua_State *L)
{
    es_client *c = check_client(L);
    const char *method = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 4, NULL, &blen);
    if (path[0] != '/' || strpbrk(path, " \r\n"))
        return luaL_argerror(L, 3, "a path starting with / and without spaces expected");
    for (const char *p = method; *p; p++)
        if (!isupper((unsigned char)*p))
            return luaL_argerror(L, 2, "an HTTP method in capitals expected");
    if (c->offline) {
        lua_pushnil(L);
        lua_pushliteral(L, "offline");
        return 2;
    }
    sl_task *t = sl_task_check_current(L);
    const char *err;
    if (es_http_request(c, t, method, path, body, blen, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return sl_task_await(L, t->cleanup, t->cleanup_data);
}

#define SET_NUM(name, v)        \
    lua_pushnumber(L, (v));     \
    lua_setfield(L, -2, name)

/* client:stats() -> {requests, bytes, indexed, deleted, failed, conflicts,
 *   retried_items, retried_requests, splits, in_flight, waiting, ready,
 *   buffered} (buffered: actions in the batch being filled) */
static int l_stats(lua_State *L)
{
    es_client *c = check_client(L);
    lua_createtable(L, 0, 13);
    SET_NUM("requests", c->st.requests);
    SET_NUM("bytes", c->st.bytes);
    SET_NUM("indexed", c->st.indexed);
    SET_NUM("deleted", c->st.deleted);
    SET_NUM("failed", c->st.failed);
    SET_NUM("conflicts", c->st.conflicts);
    SET_NUM("retried_items", c->st.retried_items);
    SET_NUM("retried_requests", c->st.retried_requests);
    SET_NUM("splits", c->st.splits);
    SET_NUM("in_flight", c->n_flight);
    SET_NUM("waiting", c->n_waiting);
    SET_NUM("ready", c->n_ready);
    SET_NUM("buffered", c->cur ? (double)c->cur->n : 0);
    return 1;
}

/* client:logs() -> {{level=, message=, id=}, ...}
 * Log records since the last call (level: "debug".."error"), oldest first;
 * a last record says how many were dropped past 1,000. */
static int l_logs(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    es_client *c = check_client(L);
    lua_createtable(L, (int)c->n_logs, 0);
    int i = 0;
    for (es_log *l = c->log_head, *n; l; l = n) {
        n = l->next;
        lua_createtable(L, 0, 3);
        lua_pushstring(L, levels[l->level & 3]);
        lua_setfield(L, -2, "level");
        lua_pushstring(L, l->msg ? l->msg : "");
        lua_setfield(L, -2, "message");
        if (l->id) {
            lua_pushstring(L, l->id);
            lua_setfield(L, -2, "id");
        }
        lua_rawseti(L, -2, ++i);
        free(l->id);
        free(l->msg);
        free(l);
    }
    c->log_head = c->log_tail = NULL;
    c->n_logs = 0;
    if (c->logs_dropped) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "warn");
        lua_setfield(L, -2, "level");
        lua_pushfstring(L, "%d more log records were dropped", (int)c->logs_dropped);
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, ++i);
        c->logs_dropped = 0;
    }
    return 1;
}

/* client:pending() -> {{seq=, body=}, ...}
 * Offline mode: the bulk requests sent and not yet answered, oldest first. */
static int l_pending(lua_State *L)
{
    es_client *c = check_client(L);
    lua_newtable(L);
    int i = 0;
    unsigned long last = 0;
    for (;;) { /* by seq: the flight list is newest first */
        es_batch *next = NULL;
        for (es_batch *b = c->flight; b; b = b->next)
            if (b->seq > last && (!next || b->seq < next->seq))
                next = b;
        if (!next)
            break;
        last = next->seq;
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, (double)next->seq);
        lua_setfield(L, -2, "seq");
        lua_pushlstring(L, next->body.ptr ? next->body.ptr : "", next->body.len);
        lua_setfield(L, -2, "body");
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* client:respond(seq, status, body[, err]) -> true | nil, "no such request"
 * Offline mode: answers request seq as the server would (status 0 with err:
 * the connection failed). */
static int l_respond(lua_State *L)
{
    es_client *c = check_client(L);
    unsigned long seq = (unsigned long)luaL_checknumber(L, 2);
    long status = (long)luaL_checkinteger(L, 3);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 4, "", &len);
    const char *terr = luaL_optstring(L, 5, NULL);
    if (!c->offline)
        return luaL_error(L, "respond() is for offline clients");
    for (es_batch *b = c->flight; b; b = b->next) {
        if (b->seq == seq) {
            es_bulk_settle(c, L, b, status, body, len, terr);
            es_bulk_progress(c);
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushnil(L);
    lua_pushliteral(L, "no such request");
    return 2;
}

/* client:failed() -> err | nil: why the sink failed, if it did */
static int l_failed(lua_State *L)
{
    es_client *c = check_client(L);
    if (!c->fatal)
        return 0;
    lua_pushstring(L, c->fatal);
    return 1;
}

/* client:close() : drops whatever is not acknowledged; tasks waiting on the
 * client get nil, "elasticsearch client closed". Closing twice is fine. */
static int l_close(lua_State *L)
{
    es_ud *u = luaL_checkudata(L, 1, ES_MT);
    if (u->c) {
        client_close(u->c, 1);
        u->c = NULL;
    }
    return 0;
}

static int es_gc(lua_State *L)
{
    es_ud *u = lua_touserdata(L, 1);
    if (u->c) {
        client_close(u->c, 0);
        u->c = NULL;
    }
    return 0;
}

int luaopen_sluice_sink_es(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"put", l_put},         {"delete", l_delete},   {"flush", l_flush},
        {"request", l_request}, {"stats", l_stats},     {"logs", l_logs},
        {"pending", l_pending}, {"respond", l_respond}, {"failed", l_failed},
        {"close", l_close},     {NULL, NULL}};
    static int curl_ready = 0;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "cannot initialise libcurl");
        curl_ready = 1;
    }
    if (luaL_newmetatable(L, ES_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, es_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_client);
    lua_setfield(L, -2, "client");
    return 1;
}
