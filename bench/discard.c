/*
 * bench/discard.c: an HTTP/1.1 server that plays a minimal Elasticsearch for
 * benchmarks: it reads every bulk body, counts its actions, stores nothing
 * and answers a valid bulk response with one success item per action.
 *
 * Why it exists: the test double (spec/fixtures/esd.py) is Python and
 * cannot absorb 180,000 documents a second, so it would measure itself, not
 * sluice. This one is a single-threaded epoll loop that costs a fraction of
 * a core, leaving the other core to the client. It is not a test double: it
 * answers only what a bench needs (GET /, HEAD/PUT index, _refresh, _count,
 * _bulk, and 404 for the rest).
 *
 * Build: cc -O2 -o discard bench/discard.c   Run: discard [port] (0: any);
 * prints the port on the first line of stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 16384

typedef struct {
    int fd;
    char head[HEAD_MAX];
    size_t head_len;
    int in_body;
    long long body_left;
    char method[8];
    char path[256];
    /* action counting across reads */
    int at_line_start, skip_next_line, prefix_len;
    char prefix[12];
    long actions;
    char *out;
    size_t out_len, out_off, out_cap;
} conn;

/* Documents per index (the path's first segment), so that a sync into a
 * fresh index sees a count of 0 and its engine does not rebuild state
 * from an index that only looks full. */
#define MAX_INDEXES 256
static struct {
    char name[256];
    long long docs;
} indexes[MAX_INDEXES];
static int nindexes;

static long long *index_docs(const char *path)
{
    static long long other;
    const char *p = path[0] == '/' ? path + 1 : path;
    size_t n = strcspn(p, "/?");
    if (n == 0 || p[0] == '_' || n >= sizeof indexes[0].name)
        return &other;
    for (int i = 0; i < nindexes; i++)
        if (strlen(indexes[i].name) == n && memcmp(indexes[i].name, p, n) == 0)
            return &indexes[i].docs;
    if (nindexes == MAX_INDEXES)
        return &other;
    memcpy(indexes[nindexes].name, p, n);
    indexes[nindexes].name[n] = 0;
    return &indexes[nindexes++].docs;
}

static void out_add(conn *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            abort();
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static void respond(conn *c, int status, const char *body, size_t len, int head_only)
{
    char h[256];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "X-Elastic-Product: Elasticsearch\r\nContent-Length: %zu\r\n\r\n",
                     status, status == 200 ? "OK" : "Not Found", len);
    out_add(c, h, (size_t)n);
    if (!head_only)
        out_add(c, body, len);
}

/* Looks at the first bytes of a line: an action line, or a source line. */
static void end_prefix(conn *c)
{
    if (c->skip_next_line) {
        c->skip_next_line = 0;
        return;
    }
    if (c->prefix_len == 0)
        return;
    c->actions++;
    if (strncmp(c->prefix, "{\"delete\"", 9) != 0)
        c->skip_next_line = 1; /* index/create/update carry a source line */
}

static void scan_body(conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c->at_line_start) {
            c->prefix_len = 0;
            c->at_line_start = 0;
        }
        if (p[i] == '\n') {
            end_prefix(c);
            c->at_line_start = 1;
            c->prefix_len = 0;
        } else if (c->prefix_len < (int)sizeof c->prefix - 1) {
            c->prefix[c->prefix_len++] = p[i];
            c->prefix[c->prefix_len] = 0;
        }
    }
}

static void answer(conn *c)
{
    const char *m = c->method, *p = c->path;
    if (strstr(p, "/_bulk")) {
        if (!c->at_line_start)
            end_prefix(c); /* a last line without newline */
        *index_docs(p) += c->actions;
        static const char item[] = "{\"index\":{\"status\":201}}";
        size_t len = 30 + (size_t)c->actions * (sizeof item);
        char *b = malloc(len + 1);
        size_t k = (size_t)sprintf(b, "{\"errors\":false,\"items\":[");
        for (long i = 0; i < c->actions; i++) {
            if (i)
                b[k++] = ',';
            memcpy(b + k, item, sizeof item - 1);
            k += sizeof item - 1;
        }
        b[k++] = ']';
        b[k++] = '}';
        respond(c, 200, b, k, 0);
        free(b);
    } else if (strcmp(p, "/") == 0) {
        static const char info[] =
            "{\"name\":\"discard\",\"cluster_name\":\"bench\",\"version\":{\"number\":\"8.15.0\","
            "\"build_flavor\":\"default\"},\"tagline\":\"You Know, for Search\"}";
        respond(c, 200, info, sizeof info - 1, strcmp(m, "HEAD") == 0);
    } else if (strstr(p, "/_count")) {
        char b[64];
        int n = snprintf(b, sizeof b, "{\"count\":%lld}", *index_docs(p));
        respond(c, 200, b, (size_t)n, 0);
    } else if (strstr(p, "/_refresh") || strcmp(m, "PUT") == 0 || strcmp(m, "HEAD") == 0) {
        static const char ok[] = "{\"acknowledged\":true}";
        respond(c, 200, ok, sizeof ok - 1, strcmp(m, "HEAD") == 0);
    } else {
        static const char nf[] = "{\"error\":\"not in the discard server\",\"status\":404}";
        respond(c, 404, nf, sizeof nf - 1, strcmp(m, "HEAD") == 0);
    }
}

/* Parses the request head; returns the body length, or -1 if malformed. */
static long long parse_head(conn *c)
{
    c->head[c->head_len] = 0;
    if (sscanf(c->head, "%7s %255s", c->method, c->path) != 2)
        return -1;
    long long len = 0;
    for (char *l = strstr(c->head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "content-length:", 15) == 0)
            len = atoll(l + 17);
    }
    return len;
}

static int flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno == EAGAIN) {
            /* a bench client reads its answers: wait for room */
            struct pollfd p = {c->fd, POLLOUT, 0};
            poll(&p, 1, 1000);
            continue;
        }
        if (n < 0)
            return -1;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static int on_read(conn *c)
{
    static char buf[1 << 16];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        size_t off = 0;
        while (off < (size_t)n) {
            if (!c->in_body) {
                size_t take = (size_t)n - off;
                if (c->head_len + take > HEAD_MAX - 1)
                    take = HEAD_MAX - 1 - c->head_len;
                memcpy(c->head + c->head_len, buf + off, take);
                size_t old = c->head_len;
                c->head_len += take;
                c->head[c->head_len] = 0;
                char *end = strstr(c->head, "\r\n\r\n");
                if (!end) {
                    if (c->head_len >= HEAD_MAX - 1)
                        return -1;
                    off += take;
                    continue;
                }
                size_t used = (size_t)(end + 4 - c->head) - old;
                c->head_len = (size_t)(end - c->head);
                long long len = parse_head(c);
                if (len < 0)
                    return -1;
                off += used;
                c->in_body = 1;
                c->body_left = len;
                c->actions = 0;
                c->at_line_start = 1;
                c->skip_next_line = 0;
                c->prefix_len = 0;
            }
            size_t take = (size_t)n - off;
            if ((long long)take > c->body_left)
                take = (size_t)c->body_left;
            scan_body(c, buf + off, take);
            off += take;
            c->body_left -= (long long)take;
            if (c->body_left == 0) {
                answer(c);
                c->in_body = 0;
                c->head_len = 0;
                if (flush_out(c) != 0)
                    return -1;
            }
        }
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench */
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 64) != 0) {
        perror("discard: bind");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("%d\n%d\n", ntohs(a.sin_port), (int)getpid());
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            if (on_read(c) != 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c->out);
                free(c);
            }
        }
    }
}
