/*
 * sluice.http: the HTTP client connector code uses, built on one libcurl
 * multi handle per runtime, driven by the runtime's libuv loop.
 *
 * Why this shape: a task calls http.request() and reads on as if it blocked,
 * while the loop runs other tasks and their transfers. The multi handle owns
 * the connection pool, so keep-alive connections are reused across requests
 * and tasks. libcurl says which sockets to watch (socket callback: one
 * uv_poll per socket) and when to wake it (timer callback: one uv_timer); we
 * hand readiness back with curl_multi_socket_action() and collect finished
 * transfers with curl_multi_info_read().
 *
 * Lifetimes: the multi state and each request live in malloc'd memory, never
 * in Lua memory, because libuv close callbacks run after lua_close(). A
 * request belongs to the task waiting on it: either it completes (and
 * resumes the task) or the task is cancelled (the cleanup removes and frees
 * the easy handle), never both. Idle pooled connections must not keep the
 * loop alive, so every curl-driven handle is unref'd and one async handle
 * holds the loop only while transfers are in flight. Lua code never runs
 * inside a libcurl callback, so a resumed task may start or cancel requests
 * freely.
 */
#include "core/rt.h"
#include "extract/sink.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MULTI_MT "sluice.http.multi"
#define MULTI_KEY "sluice.http.pool" /* registry: the runtime's multi */
#define MAX_HEADER_BYTES (256u << 10) /* below libcurl's own 300 KB cap */
#define MAX_REDIRECTS 5L
#define USER_AGENT "sluice"

typedef struct {
    char *ptr;
    size_t len, size;
} sl_http_buf;

typedef struct sl_http_sock sl_http_sock;
typedef struct sl_http_req sl_http_req;

typedef struct {
    CURLM *multi;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_async_t hold;    /* ref'd only while transfers are in flight */
    int handles_open;   /* timer and hold; the struct goes with the last */
    int active;         /* requests in flight */
    sl_http_req *reqs;  /* in flight, so __gc can free them */
    sl_http_sock *socks;
} sl_http_multi;

struct sl_http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    sl_http_multi *m;
    sl_http_sock *prev, *next;
};

struct sl_http_req {
    sl_http_multi *m;
    sl_task *task;
    lua_State *L;       /* main state, for the registry */
    CURL *easy;
    struct curl_slist *headers;
    int body_ref;       /* registry: the request body, which curl reads in place */
    FILE *out;
    char *out_path;
    int out_errno;
    sl_extract_sink *sink; /* opts.sink, claimed while the transfer runs */
    int sink_ref;          /* registry: keeps the sink alive meanwhile */
    int to_sink;           /* -1: undecided until the first body byte */
    int sink_capped;       /* MAXFILESIZE is the sink's cap, not max_body */
    const char *sink_err;  /* why the sink refused a chunk */
    curl_off_t max_body; /* -1: no limit */
    curl_off_t bytes;
    int too_large, headers_too_large, oom;
    sl_http_buf body, head;
    char errbuf[CURL_ERROR_SIZE];
    sl_http_req *prev, *next;
};

/* Appends n bytes; returns -1 when memory runs out (b is left as it was). */
static int buf_add(sl_http_buf *b, const char *p, size_t n)
{
    if (n > b->size - b->len) {
        size_t want = b->size ? b->size : 4096;
        while (want - b->len < n) {
            if (want > SIZE_MAX / 2)
                return -1;
            want *= 2;
        }
        char *np = realloc(b->ptr, want);
        if (!np)
            return -1;
        b->ptr = np;
        b->size = want;
    }
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

static void lower_ascii(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
}

/* Pushes msg lowercased, without trailing blanks. */
static void push_lower(lua_State *L, const char *msg)
{
    char tmp[CURL_ERROR_SIZE + 64];
    size_t n = strlen(msg);
    if (n >= sizeof tmp)
        n = sizeof tmp - 1;
    memcpy(tmp, msg, n);
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == ' ' || tmp[n - 1] == '.'))
        n--;
    lower_ascii(tmp, n);
    lua_pushlstring(L, tmp, n);
}

static void push_errno(lua_State *L, const char *what, int err)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s: %s", what, strerror(err));
    push_lower(L, tmp);
}

/* ---- the multi handle and its libuv plumbing ---- */

static void multi_check_done(sl_http_multi *m);

static void hold_update(sl_http_multi *m)
{
    if (m->active > 0)
        uv_ref((uv_handle_t *)&m->hold);
    else
        uv_unref((uv_handle_t *)&m->hold);
}

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Stops watching s; its memory goes in the close callback. */
static void sock_close(sl_http_sock *s)
{
    sl_http_multi *m = s->m;
    if (s->prev)
        s->prev->next = s->next;
    else
        m->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sl_http_sock *s = p->data;
    sl_http_multi *m = s->m;
    int flags = 0, running = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* s may be closed by this call: read nothing from it afterwards */
    curl_multi_socket_action(m->multi, s->fd, flags, &running);
    multi_check_done(m);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what libcurl asks, or stop. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp)
{
    sl_http_multi *m = userp;
    sl_http_sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_close(s); /* libcurl forgets socketp itself */
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->m = m;
        uv_unref((uv_handle_t *)&s->poll);
        s->next = m->socks;
        if (m->socks)
            m->socks->prev = s;
        m->socks = s;
        curl_multi_assign(m->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *timer)
{
    sl_http_multi *m = timer->data;
    int running = 0;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    multi_check_done(m);
}

/* CURLMOPT_TIMERFUNCTION: libcurl wants a wake-up in ms (or none when < 0).
 * It must not drive the transfer from here, so even 0 goes through the loop. */
static int on_timer_set(CURLM *multi, long ms, void *userp)
{
    sl_http_multi *m = userp;
    (void)multi;
    if (ms < 0)
        uv_timer_stop(&m->timer);
    else
        uv_timer_start(&m->timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

static void hold_noop(uv_async_t *a)
{
    (void)a;
}

static void multi_handle_closed(uv_handle_t *h)
{
    sl_http_multi *m = h->data;
    if (--m->handles_open == 0)
        free(m);
}

static void req_free(sl_http_req *r, lua_State *L);

/* __gc of the runtime's multi (at lua_close): frees what is still in flight
 * without resuming anyone, then the pool and the libuv handles. */
static int multi_gc(lua_State *L)
{
    sl_http_multi **pm = luaL_checkudata(L, 1, MULTI_MT);
    sl_http_multi *m = *pm;
    if (!m)
        return 0;
    *pm = NULL;
    while (m->reqs)
        req_free(m->reqs, L);
    curl_multi_cleanup(m->multi); /* may still call on_socket / on_timer_set */
    m->multi = NULL;
    while (m->socks)
        sock_close(m->socks);
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, multi_handle_closed);
    uv_close((uv_handle_t *)&m->hold, multi_handle_closed);
    return 0;
}

/* The runtime's multi, created on first use; NULL when out of memory. */
static sl_http_multi *multi_get(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, MULTI_KEY);
    sl_http_multi **pm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (pm && *pm)
        return *pm;
    sl_rt *rt = sl_rt_get(L);
    sl_http_multi *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->multi = curl_multi_init();
    if (!m->multi) {
        free(m);
        return NULL;
    }
    m->loop = rt->loop;
    uv_timer_init(m->loop, &m->timer);
    m->timer.data = m;
    uv_unref((uv_handle_t *)&m->timer);
    uv_async_init(m->loop, &m->hold, hold_noop);
    m->hold.data = m;
    uv_unref((uv_handle_t *)&m->hold);
    m->handles_open = 2;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);

    pm = lua_newuserdata(L, sizeof *pm);
    *pm = m;
    luaL_getmetatable(L, MULTI_MT);
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, MULTI_KEY);
    return m;
}

/* ---- one request ---- */

/* Detaches r from the multi and frees it. An output file still open means
 * the transfer did not complete, so the partial file is removed. */
static void req_free(sl_http_req *r, lua_State *L)
{
    sl_http_multi *m = r->m;
    if (r->easy) {
        curl_multi_remove_handle(m->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    if (r->out) {
        fclose(r->out);
        unlink(r->out_path);
    }
    if (r->body_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, r->body_ref);
    if (r->sink) /* still claimed: the transfer never completed */
        sl_extract_sink_fail(r->sink, r->task ? "request failed" : "cancelled");
    if (r->sink_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, r->sink_ref);
    if (r->prev)
        r->prev->next = r->next;
    else
        m->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    m->active--;
    hold_update(m);
    free(r->out_path);
    free(r->body.ptr);
    free(r->head.ptr);
    free(r);
}

/* The task's cleanup when it is cancelled mid-request. */
static void req_cancel(void *data)
{
    sl_http_req *r = data;
    r->task = NULL;
    req_free(r, r->L);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    sl_http_req *r = ud;
    size_t len = size * n;
    /* each response (a redirect hop, a 1xx) starts over with its status line */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
        r->head.len = 0;
    if (r->head.len + len > MAX_HEADER_BYTES) {
        r->headers_too_large = 1;
        return 0;
    }
    if (buf_add(&r->head, p, len) != 0) {
        r->oom = 1;
        return 0;
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sl_http_req *r = ud;
    size_t len = size * n;
    if (r->to_sink < 0) {
        /* a document only from a success; an error page goes to res.body */
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        r->to_sink = status >= 200 && status < 300;
    }
    if (r->max_body >= 0 && r->bytes + (curl_off_t)len > r->max_body) {
        r->too_large = 1;
        return 0;
    }
    if (r->sink && r->to_sink) {
        if (sl_extract_sink_write(r->sink, p, len, &r->sink_err) != 0)
            return 0; /* past the cap the sink has freed its bytes: stop reading */
    } else if (r->out) {
        if (fwrite(p, 1, len, r->out) != len) {
            r->out_errno = errno ? errno : EIO;
            return 0;
        }
    } else if (buf_add(&r->body, p, len) != 0) {
        r->oom = 1;
        return 0;
    }
    r->bytes += (curl_off_t)len;
    return len;
}

/* Pushes the header table of the last response: lowercase names, repeated
 * headers joined with ", ", folded lines appended to the header before. */
static void push_headers(lua_State *L, sl_http_buf *h)
{
    lua_newtable(L);
    char *p = h->ptr, *end = h->ptr + h->len;
    const char *last = NULL;
    size_t last_len = 0;
    while (p && p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        char *le = eol ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        if ((*p == ' ' || *p == '\t') && last) {
            while (p < le && (*p == ' ' || *p == '\t'))
                p++;
            lua_pushlstring(L, last, last_len);      /* [h, name] */
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);                        /* [h, name, old] */
            lua_pushliteral(L, " ");
            lua_pushlstring(L, p, (size_t)(le - p));
            lua_concat(L, 3);                         /* [h, name, old+" "+v] */
            lua_rawset(L, -3);
        } else {
            char *colon = memchr(p, ':', (size_t)(le - p));
            if (colon && colon > p && !(le - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
                size_t nlen = (size_t)(colon - p);
                lower_ascii(p, nlen);
                char *v = colon + 1;
                while (v < le && (*v == ' ' || *v == '\t'))
                    v++;
                char *ve = le;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                lua_pushlstring(L, p, nlen);          /* [h, name] */
                lua_pushvalue(L, -1);
                lua_rawget(L, -3);                    /* [h, name, old|nil] */
                if (lua_isstring(L, -1)) {
                    lua_pushliteral(L, ", ");
                    lua_pushlstring(L, v, (size_t)(ve - v));
                    lua_concat(L, 3);
                } else {
                    lua_pop(L, 1);
                    lua_pushlstring(L, v, (size_t)(ve - v));
                }
                lua_rawset(L, -3);
                last = p;
                last_len = nlen;
            }
        }
        p = next;
    }
}

static void push_response(lua_State *L, sl_http_req *r)
{
    long status = 0, version = 0;
    char *url = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
    curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    /* a 2xx body went to the sink, even an empty one */
    int sunk = r->sink && (r->to_sink == 1 || (r->to_sink < 0 && status >= 200 && status < 300));
    if (!r->out_path && !sunk) {
        lua_pushlstring(L, r->body.ptr ? r->body.ptr : "", r->body.len);
        lua_setfield(L, -2, "body");
    }
    lua_pushnumber(L, (lua_Number)r->bytes);
    lua_setfield(L, -2, "bytes");
    if (url) {
        lua_pushstring(L, url);
        lua_setfield(L, -2, "url");
    }
    const char *v = version == CURL_HTTP_VERSION_1_0   ? "1.0"
                    : version == CURL_HTTP_VERSION_1_1 ? "1.1"
                    : version == CURL_HTTP_VERSION_2_0 ? "2"
                    : version == CURL_HTTP_VERSION_3   ? "3"
                                                       : NULL;
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, "http_version");
    }
}

/* Pushes the short, stable message for a failed transfer. */
static void push_error(lua_State *L, sl_http_req *r, CURLcode rc)
{
    long os_err = 0;
    if (r->sink_err || (r->sink_capped && rc == CURLE_FILESIZE_EXCEEDED)) {
        /* the sink's words, as sink:write would say them */
        lua_pushstring(L, r->sink_err ? r->sink_err : "too large");
        return;
    }
    if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        lua_pushliteral(L, "body too large");
        return;
    }
    if (r->headers_too_large) {
        lua_pushliteral(L, "headers too large");
        return;
    }
    if (r->oom || rc == CURLE_OUT_OF_MEMORY) {
        lua_pushliteral(L, "out of memory");
        return;
    }
    if (r->out_errno) {
        push_errno(L, "cannot write output", r->out_errno);
        return;
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        lua_pushliteral(L, "timeout");
        return;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_err);
        if (os_err == ECONNREFUSED)
            lua_pushliteral(L, "connection refused");
        else if (os_err == EHOSTUNREACH)
            lua_pushliteral(L, "host unreachable");
        else if (os_err == ENETUNREACH)
            lua_pushliteral(L, "network unreachable");
        else
            lua_pushliteral(L, "could not connect");
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        lua_pushliteral(L, "could not resolve host");
        return;
    case CURLE_COULDNT_RESOLVE_PROXY:
        lua_pushliteral(L, "could not resolve proxy");
        return;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* libcurl also says this of a reply that is not HTTP at all */
        if (strstr(r->errbuf, "HTTP/0.9"))
            lua_pushliteral(L, "malformed response");
        else
            lua_pushliteral(L, "unsupported protocol");
        return;
    case CURLE_WEIRD_SERVER_REPLY:
        lua_pushliteral(L, "malformed response");
        return;
    case CURLE_URL_MALFORMAT:
        lua_pushliteral(L, "malformed url");
        return;
    case CURLE_TOO_MANY_REDIRECTS:
        lua_pushliteral(L, "too many redirects");
        return;
    case CURLE_GOT_NOTHING:
        lua_pushliteral(L, "empty reply");
        return;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        lua_pushliteral(L, "connection closed");
        return;
    case CURLE_BAD_CONTENT_ENCODING:
        lua_pushliteral(L, "bad content encoding");
        return;
    default:
        /* TLS and the rest: libcurl's own words ("ssl certificate problem:
         * unable to get local issuer certificate"), lowercased */
        push_lower(L, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
        return;
    }
}

/* A transfer finished: resume its task with res or nil, err. */
static void req_complete(sl_http_req *r, CURLcode rc)
{
    sl_task *t = r->task;
    lua_State *co = t->co;
    int n = 1;
    if (r->out) {
        FILE *f = r->out;
        r->out = NULL;
        if (fclose(f) != 0 && !r->out_errno)
            r->out_errno = errno ? errno : EIO;
        if (rc == CURLE_OK && r->out_errno)
            rc = CURLE_WRITE_ERROR;
        if (rc != CURLE_OK)
            unlink(r->out_path);
    }
    lua_checkstack(co, 12);
    if (rc == CURLE_OK) {
        push_response(co, r);
        if (r->sink)
            sl_extract_sink_release(r->sink);
    } else {
        lua_pushnil(co);
        push_error(co, r, rc);
        n = 2;
        if (r->sink) /* a partial document is no document */
            sl_extract_sink_fail(r->sink, lua_tostring(co, -1));
    }
    r->sink = NULL;
    r->task = NULL;
    req_free(r, co);
    sl_task_resume(t, n);
}

static void multi_check_done(sl_http_multi *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        sl_http_req *r = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r)
            req_complete(r, rc); /* resumes a task, which may add or cancel */
    }
}

/* ---- http.request ---- */

typedef struct {
    const char *method, *url, *body, *ca_file, *client_cert, *client_key;
    const char *proxy, *output;
    size_t url_len, body_len;
    double timeout, connect_timeout, max_body;
    int follow, insecure, decompress, has_expect, has_sink;
} req_opts;

static const char *const known_opts[] = {
    "method", "url", "headers", "body", "timeout", "connect_timeout",
    "follow_redirects", "insecure", "ca_file", "client_cert", "client_key",
    "proxy", "output", "max_body", "decompress", "sink", NULL};

static int opt_error(lua_State *L, const char *key, const char *want)
{
    lua_getfield(L, 1, key);
    const char *got = luaL_typename(L, -1);
    return luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: %s expected, got %s",
                                               key, want, got));
}

static const char *opt_string(lua_State *L, const char *key, size_t *len)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
        return NULL;
    if (t != LUA_TSTRING)
        opt_error(L, key, "string");
    lua_getfield(L, 1, key);
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* still referenced by opts, so s stays valid */
    return s;
}

static double opt_number(lua_State *L, const char *key, double dflt, double lo,
                         double hi)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
        return dflt;
    if (t != LUA_TNUMBER)
        opt_error(L, key, "number");
    if (!(v >= lo && v <= hi))
        luaL_argerror(L, 1, lua_pushfstring(L, "opts.%s: out of range", key));
    return v;
}

static int opt_bool(lua_State *L, const char *key, int dflt)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
        return dflt;
    if (t != LUA_TBOOLEAN)
        opt_error(L, key, "boolean");
    return v;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Checks opts.headers (raising on misuse) so building the list later cannot
 * raise and leak. */
static void check_headers(lua_State *L, req_opts *o)
{
    lua_getfield(L, 1, "headers");
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        opt_error(L, "headers", "table");
    lua_pushnil(L);
    while (lua_next(L, -2)) { /* [hdrs, name, value] */
        size_t nlen, vlen;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, 1, "opts.headers: names must be strings");
        const char *name = lua_tolstring(L, -2, &nlen);
        if (!is_token(name, nlen))
            luaL_argerror(L, 1, lua_pushfstring(L, "opts.headers: bad header name '%s'", name));
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
            luaL_argerror(L, 1, lua_pushfstring(L, "opts.headers.%s: string expected, got %s",
                                                name, luaL_typename(L, -1)));
        lua_pushvalue(L, -1); /* tolstring on a copy: never convert a key */
        const char *v = lua_tolstring(L, -1, &vlen);
        for (size_t i = 0; i < vlen; i++)
            if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
                luaL_argerror(L, 1, lua_pushfstring(L, "opts.headers.%s: value holds a line break or NUL",
                                                    name));
        lua_pop(L, 1);
        if (nlen == 6 && strncasecmp(name, "expect", 6) == 0)
            o->has_expect = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Builds the header list from the checked opts.headers; NULL-safe; returns
 * -1 when out of memory. */
static int build_headers(lua_State *L, req_opts *o, struct curl_slist **out)
{
    struct curl_slist *list = NULL, *n;
    lua_getfield(L, 1, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            size_t nlen, vlen;
            const char *name = lua_tolstring(L, -2, &nlen);
            lua_pushvalue(L, -1);
            const char *v = lua_tolstring(L, -1, &vlen);
            char *line = malloc(nlen + vlen + 3);
            if (!line) {
                lua_pop(L, 4);
                curl_slist_free_all(list);
                return -1;
            }
            /* "Name;" is how libcurl sends a header with an empty value */
            if (vlen == 0)
                snprintf(line, nlen + 2, "%s;", name);
            else
                snprintf(line, nlen + vlen + 3, "%s: %s", name, v);
            n = curl_slist_append(list, line);
            free(line);
            lua_pop(L, 2);
            if (!n) {
                lua_pop(L, 2);
                curl_slist_free_all(list);
                return -1;
            }
            list = n;
        }
    }
    lua_pop(L, 1);
    if (!o->has_expect) {
        /* large bodies must not wait for a 100 Continue that may never come */
        n = curl_slist_append(list, "Expect:");
        if (!n) {
            curl_slist_free_all(list);
            return -1;
        }
        list = n;
    }
    *out = list;
    return 0;
}

static void read_opts(lua_State *L, req_opts *o)
{
    memset(o, 0, sizeof *o);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            for (int i = 0; known_opts[i]; i++)
                if (strcmp(k, known_opts[i]) == 0)
                    known = 1;
            if (!known)
                luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'", k));
        } else {
            luaL_argerror(L, 1, "option names must be strings");
        }
        lua_pop(L, 1);
    }
    o->url = opt_string(L, "url", &o->url_len);
    if (!o->url)
        opt_error(L, "url", "string");
    o->body = opt_string(L, "body", &o->body_len);
    size_t mlen = 0;
    o->method = opt_string(L, "method", &mlen);
    if (o->method && (!is_token(o->method, mlen) || mlen > 32))
        luaL_argerror(L, 1, "opts.method: not an HTTP method token");
    if (!o->method)
        o->method = o->body ? "POST" : "GET";
    if (o->body && strcmp(o->method, "HEAD") == 0)
        luaL_argerror(L, 1, "opts.body: a HEAD request cannot have a body");
    o->ca_file = opt_string(L, "ca_file", NULL);
    o->client_cert = opt_string(L, "client_cert", NULL);
    o->client_key = opt_string(L, "client_key", NULL);
    o->proxy = opt_string(L, "proxy", NULL);
    o->output = opt_string(L, "output", NULL);
    o->timeout = opt_number(L, "timeout", 60, 0, 1e7);
    o->connect_timeout = opt_number(L, "connect_timeout", 10, 0, 1e7);
    o->max_body = opt_number(L, "max_body", -1, 0, 9007199254740992.0);
    o->follow = opt_bool(L, "follow_redirects", 0);
    o->insecure = opt_bool(L, "insecure", 0);
    o->decompress = opt_bool(L, "decompress", 1);
    lua_getfield(L, 1, "sink");
    if (!lua_isnil(L, -1)) {
        if (!sl_extract_sink_test(L, -1))
            opt_error(L, "sink", "extract.stream() sink");
        if (o->output)
            luaL_argerror(L, 1, "opts.sink: not with opts.output");
        o->has_sink = 1;
    }
    lua_pop(L, 1);
    check_headers(L, o);
}

/* Sets every libcurl option for o on r->easy; returns the first failure. */
static CURLcode setup_easy(lua_State *L, sl_http_req *r, req_opts *o)
{
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                       \
    do {                                                    \
        CURLcode c_ = curl_easy_setopt(e, opt, val);        \
        if (c_ != CURLE_OK && rc == CURLE_OK)               \
            rc = c_;                                        \
    } while (0)
    SET(CURLOPT_PRIVATE, r);
    SET(CURLOPT_URL, o->url);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    /* a URL from a remote listing must not reach file:// or other schemes */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, r);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000.0 + 0.5));
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000.0 + 0.5));
    SET(CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_USERAGENT, USER_AGENT);
    SET(CURLOPT_HTTPHEADER, r->headers);
    /* only opts.proxy: "" stops libcurl from reading *_proxy variables, so a
     * sync behaves the same wherever it runs */
    SET(CURLOPT_PROXY, o->proxy ? o->proxy : "");
    SET(CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
    if (o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->client_cert)
        SET(CURLOPT_SSLCERT, o->client_cert);
    if (o->client_key)
        SET(CURLOPT_SSLKEY, o->client_key);
    if (o->decompress)
        SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding libcurl decodes */
    /* a declared Content-Length past the cap fails before any body byte */
    curl_off_t cap = o->max_body >= 0 ? (curl_off_t)o->max_body : -1;
    if (r->sink && sl_extract_sink_cap(r->sink) &&
        (cap < 0 || (curl_off_t)sl_extract_sink_cap(r->sink) < cap)) {
        cap = (curl_off_t)sl_extract_sink_cap(r->sink);
        r->sink_capped = 1;
    }
    if (cap >= 0)
        SET(CURLOPT_MAXFILESIZE_LARGE, cap);

    int is_post = strcmp(o->method, "POST") == 0;
    if (o->body) {
        lua_getfield(L, 1, "body");
        r->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        SET(CURLOPT_POSTFIELDS, o->body);
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, o->method);
    } else if (is_post) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_POSTFIELDS, "");
    } else if (strcmp(o->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(o->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, o->method);
    }
#undef SET
    return rc;
}

/* http.request(opts) -> res | nil, err
 * Yields the calling task until the whole response is in. opts: url
 * (required), method (GET, or POST with a body), headers {name = string or
 * number}, body, timeout (s, total, 60; 0: none), connect_timeout (10),
 * follow_redirects (false; at most 5), insecure, ca_file, client_cert,
 * client_key, proxy (only this: *_proxy variables are ignored), output (a
 * path: the body streams there, removed again if the transfer fails),
 * sink (an extract.stream() sink: a 2xx body streams into it, never held
 * here; past its max_input, or a declared Content-Length past it, the
 * transfer stops with nil, "too large"; any failure spends the sink, whose
 * finish() then answers nil and the same error; on success call
 * sink:finish() for the text; a non-2xx body goes to res.body instead and
 * leaves the sink unwritten; not with output), max_body (bytes),
 * decompress (true). res: status, headers (lowercase names, repeats joined
 * with ", "), body (absent with output or a sink that took it), bytes, url
 * (after redirects), http_version. An HTTP error status is a response, not
 * an error; unknown options and wrong types raise; a sink already finished
 * or in use by another transfer is nil, "sink: finished" / "sink: busy". */
static int l_request(lua_State *L)
{
    req_opts o;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sl_task *t = sl_task_check_current(L);
    read_opts(L, &o);
    /* from here on nothing raises: every failure returns nil, err */
    if (strlen(o.url) != o.url_len) {
        lua_pushnil(L);
        lua_pushliteral(L, "malformed url");
        return 2;
    }
    sl_http_multi *m = multi_get(L);
    sl_http_req *r = m ? calloc(1, sizeof *r) : NULL;
    if (!r)
        goto oom;
    r->m = m;
    r->task = t;
    r->L = t->rt->L;
    r->body_ref = LUA_NOREF;
    r->sink_ref = LUA_NOREF;
    r->to_sink = -1;
    r->max_body = o.max_body >= 0 ? (curl_off_t)o.max_body : -1;
    r->next = m->reqs; /* linked first so req_free can undo any step */
    if (m->reqs)
        m->reqs->prev = r;
    m->reqs = r;
    m->active++;
    hold_update(m);
    if (o.output) {
        r->out_path = strdup(o.output);
        if (!r->out_path)
            goto oom_req;
        r->out = fopen(o.output, "wb");
        if (!r->out) {
            int err = errno;
            req_free(r, L);
            lua_pushnil(L);
            push_errno(L, "cannot open output", err);
            return 2;
        }
    }
    if (o.has_sink) {
        lua_getfield(L, 1, "sink");
        sl_extract_sink *s = sl_extract_sink_test(L, -1);
        const char *err;
        if (sl_extract_sink_claim(s, &err) != 0) {
            lua_pop(L, 1);
            req_free(r, L);
            lua_pushnil(L);
            lua_pushfstring(L, "sink: %s", err);
            return 2;
        }
        r->sink = s;
        r->sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    r->easy = curl_easy_init();
    if (!r->easy || build_headers(L, &o, &r->headers) != 0)
        goto oom_req;
    CURLcode rc = setup_easy(L, r, &o);
    if (rc != CURLE_OK) {
        req_free(r, L);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot set up request: %s", curl_easy_strerror(rc));
        return 2;
    }
    CURLMcode mc = curl_multi_add_handle(m->multi, r->easy);
    if (mc != CURLM_OK) {
        CURL *e = r->easy;
        r->easy = NULL; /* never added: do not remove it */
        curl_easy_cleanup(e);
        req_free(r, L);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start request: %s", curl_multi_strerror(mc));
        return 2;
    }
    return sl_task_await(L, req_cancel, r);

oom_req:
    req_free(r, L);
oom:
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
}

/* ---- escaping ---- */

static int is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* http.escape(s) -> string
 * Percent-encodes every byte but RFC 3986's unreserved ones (A-Z a-z 0-9 - .
 * _ ~), as uppercase %XX: safe in a path segment or a query value. */
static int l_escape(lua_State *L)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            luaL_addchar(&b, (char)c);
        } else {
            luaL_addchar(&b, '%');
            luaL_addchar(&b, hex[c >> 4]);
            luaL_addchar(&b, hex[c & 15]);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* http.unescape(s) -> string
 * Decodes every %XX (either case); a % not followed by two hex digits stays
 * as it is, and + stays a plus (form encoding is not RFC 3986). */
static int l_unescape(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n &&
            (hi = hex_value((unsigned char)s[i + 1])) >= 0 &&
            (lo = hex_value((unsigned char)s[i + 2])) >= 0) {
            luaL_addchar(&b, (char)(hi * 16 + lo));
            i += 2;
        } else {
            luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

int luaopen_sluice_http(lua_State *L)
{
    static int curl_ready = 0;
    static const luaL_Reg funcs[] = {{"request", l_request},
                                     {"escape", l_escape},
                                     {"unescape", l_unescape},
                                     {NULL, NULL}};
    if (!curl_ready) {
        /* thread-safe since libcurl 7.84; done once for the process */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "cannot initialise libcurl");
        curl_ready = 1;
    }
    if (luaL_newmetatable(L, MULTI_MT)) {
        lua_pushcfunction(L, multi_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
