/*
 * The bulk indexer's transport: its own libcurl multi handle on the
 * runtime's libuv loop, so bulk bodies go from the C buffer they were
 * encoded into straight onto the socket, with no copy into a Lua string, and
 * responses are judged in C (es_bulk.c) without building Lua tables on the
 * common path.
 *
 * Why not sluice.http: that module takes bodies as Lua strings and hands
 * back Lua tables; at 180,000 documents a second the copies and the garbage
 * cost more than the encoding itself. Management requests (version check,
 * index creation, _count, PIT pages) go through the same multi so one set of
 * auth headers and TLS settings, including certificate-fingerprint pinning,
 * covers every byte sent to the cluster.
 *
 * Every handle is unref'd; one async handle holds the loop while any batch
 * or request is pending. Completions never run Lua on libcurl's stack: the
 * waiting task is woken through the ready list (sl_task_wake), so a task
 * that closes the client cannot pull the multi from under this loop.
 */
#include "sink/es.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct es_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    es_client *c;
    es_sock *prev, *next;
};

static void check_done(es_client *c);

void es_http_hold_update(es_client *c)
{
    if (c->closed)
        return;
    /* offline, only the test that feeds the answers can finish the work */
    if (!c->offline && (es_slots_used(c) > 0 || c->n_reqs > 0))
        uv_ref((uv_handle_t *)&c->hold);
    else
        uv_unref((uv_handle_t *)&c->hold);
}

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(es_sock *s)
{
    es_client *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    es_sock *s = p->data;
    es_client *c = s->c;
    int flags = 0, running = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(c->multi, s->fd, flags, &running); /* may close s */
    check_done(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    es_client *c = userp;
    es_sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_close(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->c = c;
        uv_unref((uv_handle_t *)&s->poll);
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    es_client *c = t->data;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_timer_set(CURLM *multi, long ms, void *userp)
{
    es_client *c = userp;
    (void)multi;
    if (ms < 0)
        uv_timer_stop(&c->curl_timer);
    else
        uv_timer_start(&c->curl_timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

static void hold_noop(uv_async_t *a)
{
    (void)a;
}

int es_http_init(es_client *c)
{
    c->multi = curl_multi_init();
    if (!c->multi)
        return -1;
    uv_timer_init(c->loop, &c->curl_timer);
    c->curl_timer.data = c;
    uv_unref((uv_handle_t *)&c->curl_timer);
    uv_timer_init(c->loop, &c->retry_timer);
    c->retry_timer.data = c;
    uv_unref((uv_handle_t *)&c->retry_timer);
    uv_async_init(c->loop, &c->hold, hold_noop);
    c->hold.data = c;
    uv_unref((uv_handle_t *)&c->hold);
    c->handles_open = 3;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    es_client *c = h->data;
    if (--c->handles_open == 0)
        free(c);
}

void es_http_shutdown(es_client *c)
{
    while (c->reqs)
        es_req_free(c->reqs);
    if (c->multi) {
        curl_multi_cleanup(c->multi); /* may still call on_socket */
        c->multi = NULL;
    }
    while (c->socks)
        sock_close(c->socks);
    uv_timer_stop(&c->curl_timer);
    uv_timer_stop(&c->retry_timer);
    uv_close((uv_handle_t *)&c->curl_timer, handle_closed);
    uv_close((uv_handle_t *)&c->retry_timer, handle_closed);
    uv_close((uv_handle_t *)&c->hold, handle_closed);
}

/* ---- TLS: pinning a certificate fingerprint ---- */

/* Accepts the chain when any certificate the server sent (leaf or
 * intermediate/CA) has the pinned SHA-256 fingerprint: the way Elastic's
 * clients trust the CA an 8.x cluster generates for itself. */
static int fp_verify(X509_STORE_CTX *x, void *arg)
{
    es_client *c = arg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509 *leaf = X509_STORE_CTX_get0_cert(x);
    if (leaf && X509_digest(leaf, EVP_sha256(), md, &n) == 1 && n == 32 &&
        memcmp(md, c->fp, 32) == 0)
        goto ok;
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(x);
    for (int i = 0; chain && i < sk_X509_num(chain); i++) {
        if (X509_digest(sk_X509_value(chain, i), EVP_sha256(), md, &n) == 1 && n == 32 &&
            memcmp(md, c->fp, 32) == 0)
            goto ok;
    }
    X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
    return 0;
ok:
    X509_STORE_CTX_set_error(x, X509_V_OK);
    return 1;
}

static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
    (void)easy;
    SSL_CTX_set_cert_verify_callback((SSL_CTX *)ssl_ctx, fp_verify, arg);
    return CURLE_OK;
}

/* ---- easy handles ---- */

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    sl_jsonbuf *b = ud;
    if (sl_jsonbuf_append(b, p, size * n) != 0)
        return 0; /* out of memory: libcurl fails the transfer */
    return size * n;
}

static size_t on_bulk_header(char *p, size_t size, size_t n, void *ud)
{
    es_batch *b = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        char tmp[32];
        size_t k = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, p + 12, k);
        tmp[k] = 0;
        char *end;
        double v = strtod(tmp, &end);
        if (end != tmp && v > 0)
            b->retry_after = v; /* an HTTP date is ignored: backoff applies */
    }
    return len;
}

static CURLcode common_opts(es_client *c, CURL *e, char *errbuf)
{
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                \
    do {                                             \
        CURLcode c_ = curl_easy_setopt(e, opt, val); \
        if (c_ != CURLE_OK && rc == CURLE_OK)        \
            rc = c_;                                 \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_USERAGENT, "sluice");
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_TCP_NODELAY, 1L);
    if (c->has_fp) {
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L); /* the pin is the identity */
        SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        SET(CURLOPT_SSL_CTX_DATA, c);
    } else {
        SET(CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
        SET(CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
    }
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
#undef SET
    return rc;
}

void es_http_send(es_batch *b)
{
    es_client *c = b->c;
    b->state = ES_B_FLIGHT;
    b->seq = ++c->seq;
    b->resp.len = 0;
    b->retry_after = 0;
    b->errbuf[0] = 0;
    c->st.requests++;
    c->st.bytes += (double)b->body.len;
    if (c->offline)
        return;
    if (!b->easy)
        b->easy = curl_easy_init();
    CURL *e = b->easy;
    CURLcode rc = e ? common_opts(c, e, b->errbuf) : CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK) {
        curl_easy_setopt(e, CURLOPT_PRIVATE, b);
        curl_easy_setopt(e, CURLOPT_URL, c->bulk_url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->bulk_headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->body.ptr);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b->resp);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_bulk_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, b);
        if (curl_multi_add_handle(c->multi, e) == CURLM_OK)
            return;
    }
    /* Could not start: treat it like a refused connection; the retry path
     * bounds how often this repeats. */
    es_bulk_settle(c, c->L, b, 0, NULL, 0, "cannot start request");
}

void es_http_abort(es_batch *b)
{
    if (b->easy && b->state == ES_B_FLIGHT && b->c->multi && !b->c->offline)
        curl_multi_remove_handle(b->c->multi, b->easy);
}

const char *es_http_strerror(CURLcode rc, long os_errno, const char *errbuf)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_CONNECT:
        return os_errno == ECONNREFUSED ? "connection refused" : "could not connect";
    case CURLE_COULDNT_RESOLVE_HOST:
        return "could not resolve host";
    case CURLE_GOT_NOTHING:
        return "empty reply";
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return "connection closed";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return "malformed response";
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:
        return "out of memory";
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
        return errbuf && errbuf[0] ? errbuf : curl_easy_strerror(rc);
    default:
        return errbuf && errbuf[0] ? errbuf : curl_easy_strerror(rc);
    }
}

void es_req_free(es_req *r)
{
    es_client *c = r->c;
    if (r->easy) {
        if (c->multi)
            curl_multi_remove_handle(c->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->body);
    sl_jsonbuf_free(&r->resp);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->n_reqs--;
    free(r);
    es_http_hold_update(c);
}

static void req_cancel(void *data)
{
    es_req_free(data);
}

int es_http_request(es_client *c, sl_task *t, const char *method, const char *path,
                    const char *body, size_t body_len, const char **err)
{
    *err = "out of memory";
    es_req *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->kind = ES_KIND_REQ;
    r->c = c;
    r->task = t;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->n_reqs++;
    size_t blen = strlen(c->base_url), plen = strlen(path);
    char *url = malloc(blen + plen + 1);
    r->easy = curl_easy_init();
    if (!url || !r->easy)
        goto fail;
    memcpy(url, c->base_url, blen);
    memcpy(url + blen, path, plen + 1);
    CURL *e = r->easy;
    if (common_opts(c, e, r->errbuf) != CURLE_OK)
        goto fail;
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_URL, url); /* libcurl copies it */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->req_headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->resp);
    if (body) {
        r->body = malloc(body_len ? body_len : 1);
        if (!r->body)
            goto fail;
        memcpy(r->body, body, body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && !(body && strcmp(method, "POST") == 0))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        *err = "cannot start request";
        goto fail;
    }
    free(url);
    t->cleanup = req_cancel;
    t->cleanup_data = r;
    es_http_hold_update(c);
    return 0;
fail:
    free(url);
    if (r->easy) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    es_req_free(r);
    return -1;
}

/* A management request finished: wake its task with res or nil, err. */
static void req_done(es_req *r, CURLcode rc)
{
    sl_task *t = r->task;
    lua_State *co = t->co;
    int n = 1;
    lua_checkstack(co, 8);
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        lua_createtable(co, 0, 2);
        lua_pushinteger(co, status);
        lua_setfield(co, -2, "status");
        lua_pushlstring(co, r->resp.ptr ? r->resp.ptr : "", r->resp.len);
        lua_setfield(co, -2, "body");
    } else {
        long os_err = 0;
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_err);
        lua_pushnil(co);
        lua_pushstring(co, es_http_strerror(rc, os_err, r->errbuf));
        n = 2;
    }
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    es_req_free(r);
    sl_task_wake(t, n);
}

static void batch_done(es_batch *b, CURLcode rc)
{
    es_client *c = b->c;
    curl_multi_remove_handle(c->multi, b->easy);
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(b->easy, CURLINFO_RESPONSE_CODE, &status);
        es_bulk_settle(c, c->L, b, status, b->resp.ptr, b->resp.len, NULL);
    } else {
        long os_err = 0;
        curl_easy_getinfo(b->easy, CURLINFO_OS_ERRNO, &os_err);
        es_bulk_settle(c, c->L, b, 0, NULL, 0, es_http_strerror(rc, os_err, b->errbuf));
    }
}

static void check_done(es_client *c)
{
    CURLMsg *msg;
    int left;
    while (c->multi && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        int *kind = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&kind);
        if (!kind)
            continue;
        if (*kind == ES_KIND_REQ)
            req_done((es_req *)kind, rc);
        else
            batch_done((es_batch *)kind, rc);
    }
    es_bulk_progress(c);
}
