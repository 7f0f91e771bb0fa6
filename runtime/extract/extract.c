/*
 * sluice.extract: text and metadata from documents, for the index.
 *
 * Two halves. The C half is the result buffer every format writes into
 * (the output cap lives here, in one place, so no extractor can exceed it)
 * and the dispatcher that detects a type and calls its extractor. The Lua
 * half runs that dispatcher on libuv's thread pool: parsing a 50 MB PDF or a
 * deep HTML tree must not stall the loop that every other task shares, so
 * the calling task yields until the work is done. PDF goes one step further
 * and parses in a worker process (pdf.c), since a crash in a parser library
 * must cost one document, not the process.
 *
 * Text hygiene is the engine's (sluice.text.clean over every string of a
 * document): extractors only promise UTF-8 and the caps. See extract.h.
 *
 * The streaming form, extract.stream(), exists for lazy content: a download
 * writes its chunks into the sink, which keeps at most max_input bytes, and
 * finish() extracts from that buffer.
 */
#include "extract/extract.h"
#include "extract/sink.h"
#include "core/rt.h"

#include <lua.h>
#include <lauxlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- result buffer ---------------------------------------------------- */

void sl_extract_result_init(sl_extract_result *r, const sl_extract_limits *lim)
{
    memset(r, 0, sizeof *r);
    r->pages = -1;
    r->lim = lim;
}

void sl_extract_result_free(sl_extract_result *r)
{
    free(r->text);
    free(r->title);
    free(r->author);
    free(r->created);
    free(r->modified);
    r->text = r->title = r->author = r->created = r->modified = NULL;
    r->len = r->cap = r->nchars = 0;
}

double sl_extract_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sl_extract_limits_default(sl_extract_limits *lim, double timeout)
{
    lim->max_input = SL_EXTRACT_DEFAULT_MAX_INPUT;
    lim->max_entry_inflated = SL_EXTRACT_DEFAULT_MAX_ENTRY;
    lim->max_file_inflated = SL_EXTRACT_DEFAULT_MAX_FILE;
    lim->max_chars = SL_EXTRACT_DEFAULT_MAX_CHARS;
    lim->deadline = timeout > 0 ? sl_extract_now() + timeout : 0;
    lim->depth = 0;
}

int sl_extract_expired(const sl_extract_limits *lim)
{
    return lim && lim->deadline > 0 && sl_extract_now() > lim->deadline;
}

int sl_extract_full(const sl_extract_result *r)
{
    return (r->flags & SL_EXTRACT_TRUNCATED) || r->err[0];
}

static int grow(sl_extract_result *r, size_t need)
{
    if (r->len + need + 1 <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + need + 1)
        cap *= 2;
    char *p = realloc(r->text, cap);
    if (!p) {
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    r->text = p;
    r->cap = cap;
    return 0;
}

int sl_extract_append(sl_extract_result *r, const char *s, size_t n)
{
    if (sl_extract_full(r))
        return 1;
    size_t max = r->lim && r->lim->max_chars ? r->lim->max_chars : SIZE_MAX;
    size_t take = 0, chars = r->nchars;
    /* count code points (bytes that are not continuation bytes) up to the
     * cap; the cut lands before the first lead byte past it */
    while (take < n) {
        if (((unsigned char)s[take] & 0xc0) != 0x80) {
            if (chars == max)
                break;
            chars++;
        }
        take++;
    }
    if (grow(r, take) != 0)
        return 1;
    memcpy(r->text + r->len, s, take);
    r->len += take;
    r->text[r->len] = '\0';
    r->nchars = chars;
    if (take < n) {
        r->flags |= SL_EXTRACT_TRUNCATED;
        return 1;
    }
    return 0;
}

int sl_extract_newline(sl_extract_result *r)
{
    if (r->len == 0 || r->text[r->len - 1] == '\n')
        return sl_extract_full(r);
    if (r->text[r->len - 1] == ' ') { /* a trailing space before a break is noise */
        r->len--;
        r->nchars--;
        r->text[r->len] = '\0';
    }
    return sl_extract_append(r, "\n", 1);
}

int sl_extract_space(sl_extract_result *r)
{
    if (r->len == 0 || r->text[r->len - 1] == '\n' || r->text[r->len - 1] == ' ')
        return sl_extract_full(r);
    return sl_extract_append(r, " ", 1);
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int sl_extract_append_collapsed(sl_extract_result *r, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (is_ws((unsigned char)s[i])) {
            while (i < n && is_ws((unsigned char)s[i]))
                i++;
            if (sl_extract_space(r))
                return 1;
            continue;
        }
        size_t j = i;
        while (j < n && !is_ws((unsigned char)s[j]))
            j++;
        if (sl_extract_append(r, s + i, j - i))
            return 1;
        i = j;
    }
    return 0;
}

void sl_extract_meta(char **slot, const char *s, size_t n)
{
    if (*slot || !s)
        return;
    while (n && is_ws((unsigned char)*s))
        s++, n--;
    while (n && is_ws((unsigned char)s[n - 1]))
        n--;
    if (n == 0)
        return;
    char *p = malloc(n + 1);
    if (!p)
        return;
    /* a title spread over lines in the source is one line in the index */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_ws(c)) {
            if (k && p[k - 1] != ' ')
                p[k++] = ' ';
        } else if (c != 0) {
            p[k++] = (char)c;
        }
    }
    p[k] = '\0';
    *slot = p;
}

int sl_extract_error(sl_extract_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    return SL_EXTRACT_ERR;
}

int sl_extract_unsupported(sl_extract_result *r, const char *what)
{
    snprintf(r->err, sizeof r->err, "unsupported: %s", what);
    return SL_EXTRACT_UNSUPPORTED;
}

int sl_extract_inflated(sl_extract_result *r, size_t n, size_t entry_total)
{
    const sl_extract_limits *lim = r->lim;
    r->inflated += n;
    if (lim && ((lim->max_entry_inflated && entry_total > lim->max_entry_inflated) ||
                (lim->max_file_inflated && r->inflated > lim->max_file_inflated)))
        return sl_extract_error(r, "inflated size over limit");
    return SL_EXTRACT_OK;
}

/* ---- stubs for the office/mail formats -------------------------------
 * Weak, so the real definitions in ooxml.c etc. win at link time; left out
 * altogether once those files exist, because a static archive does not pull
 * a member in to replace a weak definition it already has. */
#define SL_WEAK_STUB(fmt)                                                      \
    __attribute__((weak)) int sl_extract_##fmt(const char *buf, size_t len,    \
                                               const sl_extract_limits *lim,   \
                                               sl_extract_result *out)         \
    {                                                                          \
        return sl_extract_unsupported(out, #fmt " extraction not built");      \
    }
#if !__has_include("extract/ooxml.c")
SL_WEAK_STUB(docx)
SL_WEAK_STUB(xlsx)
SL_WEAK_STUB(pptx)
#endif
#if !__has_include("extract/odf.c")
SL_WEAK_STUB(odt)
SL_WEAK_STUB(ods)
SL_WEAK_STUB(odp)
#endif
#if !__has_include("extract/rtf.c")
SL_WEAK_STUB(rtf)
#endif
#if !__has_include("extract/eml.c")
SL_WEAK_STUB(eml)
#endif

/* ---- the dispatcher --------------------------------------------------- */

typedef int (*sl_extract_fn)(const char *, size_t, const sl_extract_limits *,
                             sl_extract_result *);

static sl_extract_fn extractor_for(sl_extract_kind k)
{
    switch (k) {
    case SL_KIND_TEXT: return sl_extract_text;
    case SL_KIND_HTML: return sl_extract_html;
    case SL_KIND_XML: return sl_extract_xml;
    case SL_KIND_JSON: return sl_extract_json;
    case SL_KIND_CSV: return sl_extract_csv;
    case SL_KIND_TSV: return sl_extract_tsv;
    case SL_KIND_PDF: return sl_extract_pdf;
    case SL_KIND_DOCX: return sl_extract_docx;
    case SL_KIND_XLSX: return sl_extract_xlsx;
    case SL_KIND_PPTX: return sl_extract_pptx;
    case SL_KIND_ODT: return sl_extract_odt;
    case SL_KIND_ODS: return sl_extract_ods;
    case SL_KIND_ODP: return sl_extract_odp;
    case SL_KIND_RTF: return sl_extract_rtf;
    case SL_KIND_EML: return sl_extract_eml;
    default: return NULL;
    }
}

/* A trailing line or block break is layout, not text. */
static void trim_tail(sl_extract_result *out)
{
    while (out->len && (out->text[out->len - 1] == '\n' || out->text[out->len - 1] == ' ')) {
        out->text[--out->len] = '\0';
        out->nchars--;
    }
}

int sl_extract_buffer(const char *buf, size_t len, const char *name,
                      sl_extract_kind forced, const sl_extract_limits *lim,
                      sl_extract_result *out)
{
    if (lim->depth > SL_EXTRACT_MAX_DEPTH)
        return sl_extract_error(out, "nested too deep");
    if (lim->max_input && len > lim->max_input)
        return sl_extract_error(out, "too large");
    if (sl_extract_expired(lim))
        return sl_extract_error(out, "timeout");
    char mime[sizeof out->mime];
    sl_extract_kind k = sl_extract_detect(buf, len, name, mime, sizeof mime);
    if (forced != SL_KIND_UNKNOWN && k != SL_KIND_GZIP)
        k = forced;
    if (k == SL_KIND_GZIP) {
        char *inner;
        size_t inner_len;
        if (sl_extract_gunzip(buf, len, out, &inner, &inner_len) != SL_EXTRACT_OK)
            return SL_EXTRACT_ERR;
        /* the name without ".gz" is the hint for what is inside */
        char hint[256] = "";
        if (name) {
            size_t n = strlen(name);
            if (n > 3 && n < sizeof hint && strcmp(name + n - 3, ".gz") == 0) {
                memcpy(hint, name, n - 3);
                hint[n - 3] = '\0';
            }
        }
        sl_extract_limits sub = *lim;
        sub.depth++;
        sub.max_input = 0; /* the inflation caps already bounded it */
        int rc = sl_extract_buffer(inner, inner_len, hint[0] ? hint : NULL,
                                   forced, &sub, out);
        free(inner);
        return rc;
    }
    if (!out->mime[0])
        snprintf(out->mime, sizeof out->mime, "%s", mime);
    sl_extract_fn fn = extractor_for(k);
    if (!fn)
        return sl_extract_unsupported(out, mime);
    const sl_extract_limits *saved = out->lim;
    out->lim = lim;
    int rc = fn(buf, len, lim, out);
    out->lim = saved;
    trim_tail(out);
    return rc;
}

/* ---- Lua: options and results ------------------------------------------ */

typedef struct job {
    uv_work_t work;
    sl_task *task;             /* NULL once orphaned (task cancelled) */
    lua_State *L;              /* the main state, for unref */
    int src_ref;               /* pins the input string while we read it */
    const char *src;
    size_t src_len;
    char *owned;               /* bytes read from a path, or a sink's buffer */
    char *path;                /* read this file on the pool first */
    char name[256];
    sl_extract_kind forced;
    sl_extract_limits lim;
    double timeout;
    int rc;
    sl_extract_result res;
} job;

static size_t opt_size(lua_State *L, int idx, const char *key, size_t dflt)
{
    lua_getfield(L, idx, key);
    size_t v = dflt;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "opts.%s: number expected", key);
        lua_Number n = lua_tonumber(L, -1);
        if (n < 0)
            luaL_error(L, "opts.%s: must not be negative", key);
        v = n >= 9.0e15 ? 0 : (size_t)n;
    }
    lua_pop(L, 1);
    return v;
}

/* Reads opts (a table at idx, or nil) into j. Raises on misuse. */
static void read_opts(lua_State *L, int idx, job *j)
{
    double timeout = SL_EXTRACT_DEFAULT_TIMEOUT;
    sl_extract_limits_default(&j->lim, 0);
    j->forced = SL_KIND_UNKNOWN;
    if (lua_isnoneornil(L, idx)) {
        j->timeout = timeout;
        return;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    j->lim.max_input = opt_size(L, idx, "max_input", j->lim.max_input);
    j->lim.max_entry_inflated =
        opt_size(L, idx, "max_entry_inflated", j->lim.max_entry_inflated);
    j->lim.max_file_inflated =
        opt_size(L, idx, "max_file_inflated", j->lim.max_file_inflated);
    j->lim.max_chars = opt_size(L, idx, "max_chars", j->lim.max_chars);
    lua_getfield(L, idx, "timeout");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "opts.timeout: number expected");
        timeout = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "name");
    if (!lua_isnil(L, -1)) {
        if (!lua_isstring(L, -1))
            luaL_error(L, "opts.name: string expected");
        snprintf(j->name, sizeof j->name, "%s", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "type");
    if (!lua_isnil(L, -1)) {
        const char *t = lua_tostring(L, -1);
        j->forced = t ? sl_extract_kind_from_name(t) : SL_KIND_UNKNOWN;
        if (j->forced == SL_KIND_UNKNOWN)
            luaL_error(L, "opts.type: unknown type '%s'", t ? t : "?");
    }
    lua_pop(L, 1);
    j->timeout = timeout;
}

static void set_str(lua_State *L, const char *key, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

/* Pushes the result table; returns the count of values pushed:
 * res | nil, err, partial. */
static int push_result(lua_State *L, job *j)
{
    sl_extract_result *r = &j->res;
    lua_createtable(L, 0, 10);
    if (j->rc == SL_EXTRACT_OK) {
        lua_pushlstring(L, r->text ? r->text : "", r->len);
        lua_setfield(L, -2, "text");
    }
    set_str(L, "title", r->title);
    set_str(L, "author", r->author);
    set_str(L, "created", r->created);
    set_str(L, "modified", r->modified);
    if (r->mime[0])
        set_str(L, "mime", r->mime);
    if (r->pages >= 0) {
        lua_pushinteger(L, r->pages);
        lua_setfield(L, -2, "pages");
    }
    if (r->flags & SL_EXTRACT_ENCRYPTED) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "encrypted");
    }
    if (r->flags & SL_EXTRACT_NO_TEXT) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "no_text");
    }
    if (r->flags & SL_EXTRACT_TRUNCATED) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "truncated");
    }
    if (j->rc == SL_EXTRACT_OK)
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, r->err[0] ? r->err : "extraction failed");
    lua_pushvalue(L, -3);
    lua_remove(L, -4); /* [nil, err, partial] */
    return 3;
}

/* Reads a whole file, at most max (0: no cap) bytes; sets err on failure. */
static char *read_path(const char *path, size_t max, size_t *len,
                       sl_extract_result *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sl_extract_error(r, "%s", errno == ENOENT ? "not found"
                                  : errno == EACCES ? "permission denied"
                                                    : "cannot open");
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sl_extract_error(r, "not a regular file");
        return NULL;
    }
    if (max && (size_t)st.st_size > max) {
        close(fd);
        sl_extract_error(r, "too large");
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            close(fd);
            sl_extract_error(r, "out of memory");
            return NULL;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            sl_extract_error(r, "read error");
            free(buf);
            close(fd);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (max && n > max) { /* grew while we read */
            free(buf);
            close(fd);
            sl_extract_error(r, "too large");
            return NULL;
        }
        if (n == cap) {
            cap *= 2;
            char *p = realloc(buf, cap);
            if (!p)
                free(buf);
            buf = p;
        }
    }
    close(fd);
    *len = n;
    return buf;
}

/* Reads up to n bytes (fewer only at the end of the file); -1 on error. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* An HTML file is parsed as it is read, so a big page costs its text, not
 * its bytes too. Returns 1 when j's file was HTML and j->rc is set, 0 when
 * it is anything else (or cannot be opened): read_path then takes it, and
 * reports the errors. Detection reads only a document's first few KB, so
 * the head decides exactly as the whole file would. */
static int stream_html_path(job *j)
{
    if (j->forced != SL_KIND_UNKNOWN && j->forced != SL_KIND_HTML)
        return 0;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    enum { STEP = 256 << 10 };
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (j->lim.max_input && (size_t)st.st_size > j->lim.max_input) ||
        !(buf = malloc(STEP))) {
        close(fd);
        return 0;
    }
    ssize_t n = read_full(fd, buf, SL_EXTRACT_HTML_HEAD);
    char mime[sizeof j->res.mime];
    sl_extract_kind k = n < 0 ? SL_KIND_UNKNOWN
                              : sl_extract_detect(buf, (size_t)n, j->name[0] ? j->name : NULL,
                                                  mime, sizeof mime);
    if (k != SL_KIND_HTML && !(j->forced == SL_KIND_HTML && k != SL_KIND_GZIP && n >= 0)) {
        free(buf);
        close(fd);
        return 0;
    }
    sl_extract_result *out = &j->res;
    if (sl_extract_expired(&j->lim)) {
        free(buf);
        close(fd);
        j->rc = sl_extract_error(out, "timeout");
        return 1;
    }
    /* the detected type even when opts.type forced HTML, as for bytes */
    snprintf(out->mime, sizeof out->mime, "%s", mime);
    size_t total = (size_t)n;
    sl_html_stream *hs = sl_extract_html_begin(buf, (size_t)n, NULL, &j->lim, out);
    int stopped = hs ? sl_extract_html_feed(hs, buf, (size_t)n) : 1;
    while (hs && !stopped && n > 0) {
        n = read_full(fd, buf, STEP);
        if (n < 0) {
            sl_extract_error(out, "read error");
            break;
        }
        total += (size_t)n;
        if (j->lim.max_input && total > j->lim.max_input) { /* grew while we read */
            sl_extract_error(out, "too large");
            break;
        }
        stopped = sl_extract_html_feed(hs, buf, (size_t)n);
    }
    int rc = hs ? sl_extract_html_end(hs) : SL_EXTRACT_ERR;
    if (out->err[0])
        rc = SL_EXTRACT_ERR;
    trim_tail(out);
    free(buf);
    close(fd);
    j->rc = rc;
    return 1;
}

static void job_run(job *j)
{
    /* the deadline counts from when the work starts, not from when it
     * was queued behind other documents */
    j->lim.deadline = j->timeout > 0 ? sl_extract_now() + j->timeout : 0;
    sl_extract_result_init(&j->res, &j->lim);
    if (j->path && stream_html_path(j))
        return;
    if (j->path) {
        j->owned = read_path(j->path, j->lim.max_input, &j->src_len, &j->res);
        if (!j->owned) {
            j->rc = SL_EXTRACT_ERR;
            return;
        }
        j->src = j->owned;
    }
    j->rc = sl_extract_buffer(j->src, j->src_len, j->name[0] ? j->name : NULL,
                              j->forced, &j->lim, &j->res);
}

static void job_free(job *j)
{
    if (j->src_ref != LUA_NOREF && j->L)
        luaL_unref(j->L, LUA_REGISTRYINDEX, j->src_ref);
    sl_extract_result_free(&j->res);
    free(j->owned);
    free(j->path);
    free(j);
}

static void work_cb(uv_work_t *w)
{
    job_run((job *)w->data);
}

static void after_work_cb(uv_work_t *w, int status)
{
    job *j = w->data;
    sl_task *t = j->task;
    if (!t) { /* the task was cancelled while we ran */
        job_free(j);
        return;
    }
    int n = push_result(t->co, j);
    job_free(j);
    sl_task_resume(t, n);
}

static void job_orphan(void *data)
{
    job *j = data;
    j->task = NULL;
    /* still queued: then after_work_cb runs with UV_ECANCELED and frees */
    uv_cancel((uv_req_t *)&j->work);
}

/* Runs j on the thread pool inside a task, inline outside one. Takes
 * ownership of j. */
static int job_start(lua_State *L, job *j)
{
    sl_task *t = sl_task_current(L);
    if (!t) {
        job_run(j);
        int n = push_result(L, j);
        job_free(j);
        return n;
    }
    j->work.data = j;
    j->task = t;
    int rc = uv_queue_work(sl_rt_get(L)->loop, &j->work, work_cb, after_work_cb);
    if (rc < 0) {
        job_free(j);
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(rc));
        return 2;
    }
    return sl_task_await(L, job_orphan, j);
}

static job *job_new(lua_State *L)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        luaL_error(L, "out of memory");
    j->src_ref = LUA_NOREF;
    sl_rt *rt = sl_rt_get(L);
    j->L = rt ? rt->L : L;
    return j;
}

/* extract.text(path_or_bytes, opts) -> res | nil, err, partial
 * The first argument is the document's bytes, or a file path when
 * opts.path is true (the file is then read off the loop, refused with
 * "too large" past max_input). opts: name (a file name: a type hint only),
 * type (force a kind: "pdf", "html", ...), max_input, max_entry_inflated,
 * max_file_inflated, max_chars (code points of text), timeout (seconds,
 * default 30; 0: none). res: text, mime, and when known title, author,
 * created, modified (ISO 8601), pages; flags encrypted, no_text, truncated
 * as true fields. On failure, partial holds what was learned (mime, flags,
 * metadata): a PDF with a user password gives nil, "encrypted",
 * {encrypted=true, mime=...}; an unreadable binary gives
 * nil, "unsupported: <mime>". Yields inside a task. */
static int l_text(lua_State *L)
{
    size_t len;
    const char *src = luaL_checklstring(L, 1, &len);
    int is_path = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "path");
        is_path = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    job o;
    memset(&o, 0, sizeof o);
    read_opts(L, 2, &o); /* may raise: nothing is allocated yet */
    job *j = job_new(L);
    memcpy(j->name, o.name, sizeof j->name);
    j->forced = o.forced;
    j->lim = o.lim;
    j->timeout = o.timeout;
    if (is_path) {
        j->path = strdup(src);
        if (!j->name[0]) {
            const char *base = strrchr(src, '/');
            snprintf(j->name, sizeof j->name, "%s", base ? base + 1 : src);
        }
    } else {
        lua_pushvalue(L, 1);
        j->src_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        j->src = src;
        j->src_len = len;
    }
    return job_start(L, j);
}

/* extract.detect(bytes, name) -> type, mime
 * The kind ("pdf", "html", "docx", "gzip", "unknown"...) and MIME type
 * from the content; name is only a hint. Never fails. */
static int l_detect(lua_State *L)
{
    size_t len;
    const char *buf = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, NULL);
    char mime[96];
    sl_extract_kind k = sl_extract_detect(buf, len, name, mime, sizeof mime);
    lua_pushstring(L, sl_extract_kind_name(k));
    lua_pushstring(L, mime);
    return 2;
}

/* ---- streaming sink ----------------------------------------------------- */

struct sl_extract_sink {
    char *buf;
    size_t len, cap;
    int over;      /* more than max_input was written */
    int done;      /* finished, or spent by a failed transfer */
    int busy;      /* claimed by a transfer (http.request{sink=}) */
    char err[96];  /* why a failed transfer spent it */
    job opts;      /* limits and hints, copied into the job at finish */
};

typedef struct sl_extract_sink sink;

static sink *check_sink(lua_State *L)
{
    return luaL_checkudata(L, 1, SL_EXTRACT_SINK_T);
}

sl_extract_sink *sl_extract_sink_test(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, SL_EXTRACT_SINK_T);
}

size_t sl_extract_sink_cap(const sl_extract_sink *s)
{
    return s->opts.lim.max_input;
}

int sl_extract_sink_claim(sl_extract_sink *s, const char **err)
{
    if (s->busy || s->done || s->over) {
        *err = s->busy ? "busy" : s->over ? "too large" : "finished";
        return -1;
    }
    s->busy = 1;
    return 0;
}

static void sink_drop(sink *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

int sl_extract_sink_write(sl_extract_sink *s, const char *p, size_t n, const char **err)
{
    size_t max = s->opts.lim.max_input;
    if (s->over || (max && n > max - s->len)) {
        s->over = 1;
        sink_drop(s); /* nothing useful can come of the prefix */
        *err = "too large";
        return -1;
    }
    if (n > s->cap - s->len) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap - s->len < n)
            cap *= 2;
        if (max && cap > max) /* never hold more than the cap promises */
            cap = max;
        char *q = realloc(s->buf, cap);
        if (!q) {
            *err = "out of memory";
            return -1;
        }
        s->buf = q;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

void sl_extract_sink_release(sl_extract_sink *s)
{
    s->busy = 0;
}

void sl_extract_sink_fail(sl_extract_sink *s, const char *err)
{
    s->busy = 0;
    s->done = 1;
    snprintf(s->err, sizeof s->err, "%s", err && *err ? err : "failed");
    sink_drop(s);
}

/* extract.stream(opts) -> sink
 * A sink for a document that arrives in chunks (a download): it keeps at
 * most opts.max_input bytes. opts as for extract.text. http.request{sink =
 * sink} streams a response body into it. */
static int l_stream(lua_State *L)
{
    job o;
    memset(&o, 0, sizeof o);
    read_opts(L, 1, &o);
    sink *s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    s->opts = o;
    luaL_getmetatable(L, SL_EXTRACT_SINK_T);
    lua_setmetatable(L, -2);
    return 1;
}

/* sink:write(chunk) -> true | nil, err
 * Buffers chunk; "too large" once the total passes max_input (the rest is
 * dropped and finish() fails the same way), "finished" after finish(),
 * "busy" while a transfer writes into it. */
static int l_sink_write(lua_State *L)
{
    sink *s = check_sink(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    const char *err = NULL;
    if (s->busy || s->done)
        err = s->busy ? "busy" : "finished";
    else
        sl_extract_sink_write(s, p, n, &err);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* sink:finish() -> res | nil, err, partial
 * Extracts from what was written, as extract.text would; the sink is
 * spent afterwards. After a failed transfer into it: nil and the
 * transfer's error. Yields inside a task. */
static int l_sink_finish(lua_State *L)
{
    sink *s = check_sink(L);
    if (s->busy || s->done || s->over) {
        const char *err = s->busy ? "busy" : s->over ? "too large" : s->err[0] ? s->err : "finished";
        lua_pushnil(L);
        lua_pushstring(L, err);
        if (!s->busy) {
            s->done = 1;
            s->err[0] = '\0'; /* said once; "finished" afterwards */
        }
        return 2;
    }
    s->done = 1;
    job *j = job_new(L);
    memcpy(j->name, s->opts.name, sizeof j->name);
    j->forced = s->opts.forced;
    j->lim = s->opts.lim;
    j->timeout = s->opts.timeout;
    j->owned = s->buf; /* the job takes the buffer */
    j->src = s->buf ? s->buf : "";
    j->src_len = s->len;
    s->buf = NULL;
    s->len = s->cap = 0;
    return job_start(L, j);
}

/* sink:size() -> bytes buffered so far */
static int l_sink_size(lua_State *L)
{
    sink *s = check_sink(L);
    lua_pushnumber(L, (lua_Number)s->len);
    return 1;
}

/* sink:__gc(): frees the buffer if finish() never took it. A transfer
 * holds a reference while it writes, so a busy sink is never collected. */
static int l_sink_gc(lua_State *L)
{
    sink *s = check_sink(L);
    sink_drop(s);
    return 0;
}

int luaopen_sluice_extract(lua_State *L)
{
    static const luaL_Reg sink_methods[] = {
        {"write", l_sink_write}, {"finish", l_sink_finish},
        {"size", l_sink_size}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"text", l_text}, {"detect", l_detect}, {"stream", l_stream},
        {NULL, NULL}};
    sl_extract_init_libxml(); /* on the main thread, before any worker */
    if (luaL_newmetatable(L, SL_EXTRACT_SINK_T)) {
        lua_newtable(L);
        luaL_register(L, NULL, sink_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_sink_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    /* extract.pdf: whether this build reads PDF text (poppler is optional) */
#ifdef SLUICE_WITH_POPPLER
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "pdf");
    return 1;
}
