/*
 * The PDF worker: poppler, in a process of its own.
 *
 * poppler is a large C++ parser fed hostile input; a crash or an endless
 * loop inside it must cost one document, not the sync. So pdf.c starts the
 * running binary again (/proc/self/exe) with SLUICE_PDF_WORKER set, and a
 * constructor here notices that before main() runs and serves requests on
 * fd 0 instead: a fresh exec'd image, with none of the parent's threads or
 * locks, that the parent can kill at the deadline. The worker serves one
 * document after another until its socket closes, so the exec is paid once
 * per worker, not once per document.
 *
 * Any binary that links the runtime can be a worker (the CLI, the C tests),
 * which is what lets the tests exercise the real isolation.
 */
#include "extract/extract.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifdef SLUICE_WITH_POPPLER
#include <glib.h>
#include <poppler.h>
#endif

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t got = read(fd, c, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        c += got, n -= (size_t)got;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t put = write(fd, c, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        c += put, n -= (size_t)put;
    }
    return 0;
}

static int send_rec(int fd, uint32_t tag, const void *p, size_t n)
{
    sl_pdf_rec h = {tag, 0, n};
    if (write_full(fd, &h, sizeof h) != 0)
        return -1;
    return n ? write_full(fd, p, n) : 0;
}

static int send_str(int fd, uint32_t tag, const char *s)
{
    return s ? send_rec(fd, tag, s, strlen(s)) : 0;
}

#ifdef SLUICE_WITH_POPPLER
static char *iso_date(GDateTime *t)
{
    if (!t)
        return NULL;
    gchar *s = g_date_time_format_iso8601(t);
    g_date_time_unref(t);
    char *r = s ? strdup(s) : NULL;
    g_free(s);
    return r;
}

static void meta(char **slot, gchar *s)
{
    if (s)
        sl_extract_meta(slot, s, strlen(s));
    g_free(s);
}

/* Extracts one document into r; returns an SL_EXTRACT_* code. */
static int run_poppler(const char *buf, size_t len, sl_extract_result *r)
{
    GError *gerr = NULL;
    GBytes *bytes = g_bytes_new_static(buf, len);
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &gerr);
    g_bytes_unref(bytes);
    if (!doc) {
        int enc = gerr && gerr->domain == POPPLER_ERROR &&
                  gerr->code == POPPLER_ERROR_ENCRYPTED;
        if (gerr)
            g_error_free(gerr);
        if (enc) {
            r->flags |= SL_EXTRACT_ENCRYPTED;
            return sl_extract_error(r, "encrypted");
        }
        return sl_extract_error(r, "malformed pdf");
    }
    meta(&r->title, poppler_document_get_title(doc));
    meta(&r->author, poppler_document_get_author(doc));
    r->created = iso_date(poppler_document_get_creation_date_time(doc));
    r->modified = iso_date(poppler_document_get_modification_date_time(doc));
    int pages = poppler_document_get_n_pages(doc);
    r->pages = pages;
    if (pages <= 0) { /* poppler rebuilt nothing usable */
        g_object_unref(doc);
        return sl_extract_error(r, "malformed pdf");
    }
    int any = 0;
    for (int i = 0; i < pages && !sl_extract_full(r); i++) {
        PopplerPage *page = poppler_document_get_page(doc, i);
        if (!page)
            continue;
        char *t = poppler_page_get_text(page);
        if (t) {
            size_t n = strlen(t);
            for (size_t k = 0; k < n && !any; k++)
                any = t[k] != ' ' && t[k] != '\n' && t[k] != '\r' && t[k] != '\t' &&
                      t[k] != '\f';
            if (n) {
                sl_extract_newline(r);
                sl_extract_append(r, t, n);
            }
            g_free(t);
        }
        g_object_unref(page);
    }
    g_object_unref(doc);
    if (!any) {
        r->len = r->nchars = 0;
        if (r->text)
            r->text[0] = '\0';
        r->flags |= SL_EXTRACT_NO_TEXT;
    }
    return r->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}
#endif

/* Serves requests on fd until it closes; returns the exit status. */
static int serve(int fd)
{
    for (;;) {
        sl_pdf_rec h;
        uint64_t max_chars;
        if (read_full(fd, &h, sizeof h) != 0)
            return 0; /* the parent closed: done */
        if (h.tag != SL_PDF_REQ || h.len != sizeof max_chars ||
            read_full(fd, &max_chars, sizeof max_chars) != 0 ||
            read_full(fd, &h, sizeof h) != 0 || h.tag != SL_PDF_DOC ||
            h.len > ((uint64_t)1 << 40))
            return 2;
        char *doc = malloc(h.len ? h.len : 1);
        if (!doc || read_full(fd, doc, h.len) != 0)
            return 3;
        sl_extract_limits lim;
        sl_extract_limits_default(&lim, 0);
        lim.max_chars = max_chars;
        sl_extract_result r;
        sl_extract_result_init(&r, &lim);
#ifdef SLUICE_WITH_POPPLER
        int rc = run_poppler(doc, h.len, &r);
#else
        int rc = sl_extract_unsupported(&r, "built without poppler");
#endif
        free(doc);
        int32_t end[3] = {rc, (int32_t)r.flags, r.pages};
        int bad = send_str(fd, SL_PDF_TITLE, r.title) ||
                  send_str(fd, SL_PDF_AUTHOR, r.author) ||
                  send_str(fd, SL_PDF_CREATED, r.created) ||
                  send_str(fd, SL_PDF_MODIFIED, r.modified) ||
                  (r.len && send_rec(fd, SL_PDF_TEXT, r.text, r.len));
        if (!bad) {
            size_t elen = rc ? strlen(r.err) : 0;
            char msg[sizeof end + sizeof r.err];
            memcpy(msg, end, sizeof end);
            memcpy(msg + sizeof end, r.err, elen);
            bad = send_rec(fd, SL_PDF_END, msg, sizeof end + elen);
        }
        sl_extract_result_free(&r);
        if (bad)
            return 4;
    }
}

/* Before main(): become a worker when asked to. */
__attribute__((constructor)) static void sl_pdf_worker_maybe(void)
{
    if (!getenv(SL_PDF_WORKER_ENV))
        return;
    /* an orphaned worker has nobody to answer */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    _exit(serve(0));
}

/* Referenced by pdf.c so that a static link always keeps this object (and
 * with it the constructor above). */
int sl_pdf_worker_linked(void)
{
    return 1;
}
