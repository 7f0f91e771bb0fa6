/*
 * PDF: the client side of the poppler worker (pdf_worker.c).
 *
 * Workers are kept in a small pool, because exec'ing the binary and
 * loading poppler costs milliseconds, more than most PDFs take to read. A
 * request takes an idle worker (or spawns one), sends the document over a
 * socket and reads the reply, all against the document's deadline; if the
 * deadline passes, or the worker dies or talks nonsense, the worker is
 * SIGKILLed and reaped and the document fails ("timeout", "pdf worker
 * crashed"). A worker that failed is never reused. The socket (not a pipe)
 * lets us send with MSG_NOSIGNAL, so a worker dying mid-request is an
 * error code here and not a SIGPIPE for the whole process.
 *
 * A PDF without its %%EOF trailer is truncated: poppler would rebuild it
 * from the fragments it finds, but a part of a document passed off as the
 * whole is worse than an error, so it is refused before any worker runs.
 */
#define _GNU_SOURCE /* memmem, memrchr */
#include "extract/extract.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
int sl_pdf_worker_linked(void);

#define POOL_MAX 4
#define WORKER_MAX_USES 256
#define TAIL_SCAN 2048

typedef struct worker {
    pid_t pid;
    int fd;
    int uses;
} worker;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static worker pool[POOL_MAX];
static int pool_n;

#ifndef SLUICE_WITH_POPPLER
int sl_extract_pdf(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    return sl_extract_unsupported(out, "built without poppler");
}
#else
static void worker_kill(worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    w->fd = -1;
    w->pid = 0;
}

/* The environment of a worker: ours plus the worker switch. */
static char **worker_env(void)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], SL_PDF_WORKER_ENV "=", sizeof SL_PDF_WORKER_ENV) != 0)
            env[k++] = environ[i];
    env[k++] = SL_PDF_WORKER_ENV "=1";
    env[k] = NULL;
    return env;
}

static int worker_spawn(worker *w, sl_extract_result *out)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return sl_extract_error(out, "pdf worker: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* dup2 clears CLOEXEC on the child's copy */
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char **env = worker_env();
    char *argv[] = {"sluice-pdf-worker", NULL};
    pid_t pid = 0;
    int rc = env ? posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env) : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        return sl_extract_error(out, "pdf worker: %s", strerror(rc));
    }
    w->pid = pid;
    w->fd = sv[0];
    w->uses = 0;
    return 0;
}

static int worker_get(worker *w, sl_extract_result *out)
{
    pthread_mutex_lock(&pool_lock);
    if (pool_n > 0) {
        *w = pool[--pool_n];
        pthread_mutex_unlock(&pool_lock);
        return 0;
    }
    pthread_mutex_unlock(&pool_lock);
    return worker_spawn(w, out);
}

static void worker_put(worker *w)
{
    if (++w->uses < WORKER_MAX_USES) {
        pthread_mutex_lock(&pool_lock);
        if (pool_n < POOL_MAX) {
            pool[pool_n++] = *w;
            pthread_mutex_unlock(&pool_lock);
            return;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    worker_kill(w);
}

/* Milliseconds left before lim's deadline; -1: none. 0: passed. */
static int ms_left(const sl_extract_limits *lim)
{
    if (!lim || lim->deadline <= 0)
        return -1;
    double left = lim->deadline - sl_extract_now();
    return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

/* Moves n bytes in the direction `out_dir` within the deadline.
 * Returns 0, -1 on a dead peer, -2 on timeout. */
static int io_full(int fd, void *p, size_t n, int out_dir, const sl_extract_limits *lim)
{
    char *c = p;
    while (n) {
        struct pollfd pf = {fd, out_dir ? POLLOUT : POLLIN, 0};
        int ms = ms_left(lim);
        if (ms == 0)
            return -2;
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -2;
        if (pr < 0)
            return -1;
        ssize_t k = out_dir ? send(fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                            : recv(fd, c, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0)
            return -1;
        c += k, n -= (size_t)k;
    }
    return 0;
}

static int send_request(worker *w, const char *buf, size_t len,
                        const sl_extract_limits *lim)
{
    uint64_t max_chars = lim->max_chars;
    sl_pdf_rec h = {SL_PDF_REQ, 0, sizeof max_chars};
    sl_pdf_rec d = {SL_PDF_DOC, 0, len};
    int rc;
    if ((rc = io_full(w->fd, &h, sizeof h, 1, lim)) != 0 ||
        (rc = io_full(w->fd, &max_chars, sizeof max_chars, 1, lim)) != 0 ||
        (rc = io_full(w->fd, &d, sizeof d, 1, lim)) != 0)
        return rc;
    return io_full(w->fd, (void *)buf, len, 1, lim);
}

/* Reads the reply into out. 0, -1 (dead or garbled), -2 (timeout). */
static int read_reply(worker *w, const sl_extract_limits *lim, sl_extract_result *out,
                      int *rc_out)
{
    for (;;) {
        sl_pdf_rec h;
        int rc = io_full(w->fd, &h, sizeof h, 0, lim);
        if (rc)
            return rc;
        if (h.tag < SL_PDF_TITLE || h.tag > SL_PDF_END || h.len > ((uint64_t)1 << 34))
            return -1;
        char *p = malloc(h.len + 1);
        if (!p)
            return -1;
        if ((rc = io_full(w->fd, p, h.len, 0, lim)) != 0) {
            free(p);
            return rc;
        }
        p[h.len] = '\0';
        switch (h.tag) {
        case SL_PDF_TITLE: sl_extract_meta(&out->title, p, h.len); break;
        case SL_PDF_AUTHOR: sl_extract_meta(&out->author, p, h.len); break;
        case SL_PDF_CREATED: sl_extract_meta(&out->created, p, h.len); break;
        case SL_PDF_MODIFIED: sl_extract_meta(&out->modified, p, h.len); break;
        case SL_PDF_TEXT:
            sl_extract_newline(out);
            sl_extract_append(out, p, h.len);
            break;
        case SL_PDF_END: {
            int32_t end[3];
            if (h.len < sizeof end) {
                free(p);
                return -1;
            }
            memcpy(end, p, sizeof end);
            out->flags |= (uint32_t)end[1];
            out->pages = end[2];
            *rc_out = end[0];
            if (end[0] != SL_EXTRACT_OK)
                snprintf(out->err, sizeof out->err, "%.*s",
                         (int)(h.len - sizeof end), p + sizeof end);
            free(p);
            return 0;
        }
        }
        free(p);
    }
}

static int pdf_truncated(const char *buf, size_t len)
{
    size_t from = len > TAIL_SCAN ? len - TAIL_SCAN : 0;
    return memmem(buf + from, len - from, "%%EOF", 5) == NULL;
}

int sl_extract_pdf(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    (void)sl_pdf_worker_linked();
    if (pdf_truncated(buf, len))
        return sl_extract_error(out, "truncated pdf");
    /* a pooled worker may have died idle: one retry with a fresh one, as
     * long as it never started on this document */
    for (int attempt = 0; attempt < 2; attempt++) {
        worker w = {0, -1, 0};
        if (worker_get(&w, out) != 0)
            return SL_EXTRACT_ERR;
        int rc = send_request(&w, buf, len, lim);
        int result = SL_EXTRACT_ERR;
        if (rc == 0)
            rc = read_reply(&w, lim, out, &result);
        if (rc == 0) {
            worker_put(&w);
            return result;
        }
        int fresh = w.uses == 0;
        worker_kill(&w);
        if (rc == -2)
            return sl_extract_error(out, "timeout");
        if (fresh || out->len || out->title) {
            /* never reuse a worker's half answer */
            return sl_extract_error(out, "pdf worker crashed");
        }
    }
    return sl_extract_error(out, "pdf worker crashed");
}
#endif

int sl_extract_pdf_idle_workers(int *pids, int max)
{
    pthread_mutex_lock(&pool_lock);
    int n = pool_n < max ? pool_n : max;
    for (int i = 0; i < n; i++)
        pids[i] = (int)pool[i].pid;
    pthread_mutex_unlock(&pool_lock);
    return n;
}
