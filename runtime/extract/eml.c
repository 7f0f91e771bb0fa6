/*
 * Text from mail messages (RFC 5322 / MIME, .eml).
 *
 * A message's text is its headers a reader looks at, its body and the text
 * of its attachments, in that order:
 *
 *     From: Ann <ann@example.org>
 *     To: bob@example.org
 *     Subject: Quarterly report
 *     Date: Tue, 1 Jul 2003 10:52:37 +0200
 *     <body text>
 *     report.docx
 *     <the attachment's text>
 *
 * Headers are unfolded and RFC 2047 encoded-words decoded (B and Q, any
 * charset iconv knows). The MIME tree is walked recursively up to
 * EML_MAX_DEPTH levels of multipart / message/rfc822 nesting; deeper parts
 * are left out and the result is flagged truncated. In multipart/alternative
 * the text/plain part is preferred, then text/html (through the core's HTML
 * extractor), else the last part. Bodies are decoded from base64 and
 * quoted-printable and converted from their charset. Every other part —
 * attachments, images, calendar files — goes back through the core
 * dispatcher (sl_extract_buffer), one nesting level deeper, with its file
 * name as the hint; a part it cannot read leaves only its name.
 * Title is the Subject, author the From, created the Date as ISO 8601.
 */
#include "extract/extract.h"

#include <ctype.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EML_MAX_DEPTH 32
#define EML_MAX_PARTS 4096 /* parts read per multipart; more: truncated */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} eml_buf;

static void eml_put(eml_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Appends bytes in `charset` to b as UTF-8; an unknown charset copies the
 * bytes (the engine's text hygiene repairs what is not UTF-8). */
static void eml_put_cs(eml_buf *b, const char *s, size_t n, const char *charset)
{
    if (!charset || !*charset || strcasecmp(charset, "utf-8") == 0 ||
        strcasecmp(charset, "us-ascii") == 0) {
        eml_put(b, s, n);
        return;
    }
    iconv_t cd = iconv_open("UTF-8", charset);
    if (cd == (iconv_t)-1) {
        eml_put(b, s, n);
        return;
    }
    char out[1024];
    char *in = (char *)s;
    size_t inleft = n;
    while (inleft > 0) {
        char *o = out;
        size_t oleft = sizeof out;
        size_t rc = iconv(cd, &in, &inleft, &o, &oleft);
        eml_put(b, out, (size_t)(o - out));
        if (rc == (size_t)-1 && o == out) { /* EILSEQ / EINVAL: skip a byte */
            eml_put(b, "\xEF\xBF\xBD", 3);
            in++;
            inleft--;
            iconv(cd, NULL, NULL, NULL, NULL);
        }
    }
    iconv_close(cd);
}

/* ---- transfer encodings ------------------------------------------------------ */

static int eml_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes base64 into dst (which holds at least n*3/4+3 bytes), skipping
 * line breaks and anything outside the alphabet. Returns the length. */
static size_t eml_base64(const char *s, size_t n, char *dst)
{
    unsigned acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i], v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else if (c == '=')
            break;
        else
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[len++] = (char)((acc >> bits) & 0xFF);
        }
    }
    return len;
}

/* Quoted-printable; `header` also turns '_' into a space (RFC 2047 Q). */
static size_t eml_qp(const char *s, size_t n, char *dst, int header)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=' && i + 1 < n && (s[i + 1] == '\n' || s[i + 1] == '\r')) {
            i++; /* soft line break */
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
        } else if (c == '=' && i + 2 < n && eml_hexval(s[i + 1]) >= 0 &&
                   eml_hexval(s[i + 2]) >= 0) {
            dst[len++] = (char)(eml_hexval(s[i + 1]) << 4 | eml_hexval(s[i + 2]));
            i += 2;
        } else if (c == '_' && header) {
            dst[len++] = ' ';
        } else {
            dst[len++] = c;
        }
    }
    return len;
}

/* ---- headers ------------------------------------------------------------------ */

/* Decodes an unstructured header value: unfolds it and decodes RFC 2047
 * encoded-words; whitespace between two encoded-words is dropped. */
static void eml_decode_header(eml_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    int last_encoded = 0;
    size_t ws_start = 0, ws_len = 0;
    while (i < n) {
        if (s[i] == '\r' || s[i] == '\n') {
            i++;
            continue;
        }
        if (s[i] == ' ' || s[i] == '\t') {
            /* remember the run: it is dropped between encoded-words */
            ws_start = b->n;
            ws_len = 0;
            while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) {
                if (s[i] == ' ' || s[i] == '\t')
                    ws_len++;
                i++;
            }
            if (ws_len)
                eml_put(b, " ", 1);
            continue;
        }
        if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
            /* =?charset?E?text?= */
            const char *cs = s + i + 2, *e = s + n;
            const char *q1 = memchr(cs, '?', (size_t)(e - cs));
            if (q1 && q1 + 2 < e && q1[2] == '?') {
                char enc = (char)toupper((unsigned char)q1[1]);
                const char *txt = q1 + 3;
                const char *q2 = txt;
                while (q2 + 1 < e && !(q2[0] == '?' && q2[1] == '='))
                    q2++;
                if (q2 + 1 < e && (enc == 'B' || enc == 'Q') && q1 - cs < 64) {
                    char charset[64];
                    size_t cl = (size_t)(q1 - cs);
                    memcpy(charset, cs, cl);
                    charset[cl] = '\0';
                    char *star = strchr(charset, '*'); /* RFC 2231 language */
                    if (star)
                        *star = '\0';
                    size_t tl = (size_t)(q2 - txt);
                    char *dec = malloc(tl + 4);
                    if (dec) {
                        size_t dl = enc == 'B' ? eml_base64(txt, tl, dec)
                                               : eml_qp(txt, tl, dec, 1);
                        if (last_encoded && ws_len && b->n == ws_start + 1)
                            b->n = ws_start; /* drop the space between words */
                        eml_put_cs(b, dec, dl, charset);
                        free(dec);
                    }
                    last_encoded = 1;
                    ws_len = 0;
                    i = (size_t)(q2 + 2 - s);
                    continue;
                }
            }
        }
        last_encoded = 0;
        ws_len = 0;
        eml_put(b, s + i, 1);
        i++;
    }
    /* trim the ends */
    while (b->n && b->p[b->n - 1] == ' ')
        b->p[--b->n] = '\0';
}

typedef struct {
    char type[80];      /* lowercase "text/plain"; "" when absent */
    char charset[48];
    char boundary[200];
    char encoding[32];  /* lowercase */
    char filename[256]; /* UTF-8 */
    int attachment;
} eml_mime;

/* Finds the header block's end: *body is where the body starts. */
static size_t eml_header_end(const char *s, size_t n, size_t *body)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '\n') { /* an empty first line: no headers */
            *body = i + 1;
            return i;
        }
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
            *body = i + 2;
            return i;
        }
        const char *nl = memchr(s + i, '\n', n - i);
        if (!nl)
            break;
        i = (size_t)(nl - s) + 1;
    }
    *body = n;
    return n;
}

typedef void (*eml_header_fn)(void *ud, const char *name, size_t nl, const char *val, size_t vl);

static void eml_headers(const char *s, size_t n, eml_header_fn fn, void *ud)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        /* the field runs until a line that does not start with blank */
        size_t end = i;
        for (;;) {
            const char *nl = memchr(s + end, '\n', n - end);
            end = nl ? (size_t)(nl - s) + 1 : n;
            if (end >= n || (s[end] != ' ' && s[end] != '\t'))
                break;
        }
        const char *colon = memchr(s + start, ':', end - start);
        if (colon && colon > s + start) {
            size_t nl = (size_t)(colon - (s + start));
            const char *v = colon + 1;
            size_t vl = end - (size_t)(v - s);
            while (vl && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl && (v[vl - 1] == '\n' || v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            fn(ud, s + start, nl, v, vl);
        }
        i = end;
    }
}

/* Copies parameter `key` of a structured header value into dst (RFC 2045
 * quoted or token values, RFC 2231 key*= and key*0*= continuations). */
static void eml_param(const char *v, size_t vl, const char *key, char *dst, size_t size)
{
    eml_buf out = {0};
    char charset[48] = "";
    size_t kl = strlen(key);
    size_t i = 0;
    while (i < vl) {
        while (i < vl && v[i] != ';') {
            if (v[i] == '"') { /* skip quoted strings in the main value */
                i++;
                while (i < vl && v[i] != '"')
                    i += v[i] == '\\' ? 2 : 1;
            }
            i++;
        }
        if (i >= vl)
            break;
        i++;
        while (i < vl && isspace((unsigned char)v[i]))
            i++;
        size_t ns = i;
        while (i < vl && v[i] != '=' && v[i] != ';')
            i++;
        if (i >= vl || v[i] != '=')
            continue;
        size_t ne = i;
        while (ne > ns && isspace((unsigned char)v[ne - 1]))
            ne--;
        i++;
        while (i < vl && isspace((unsigned char)v[i]))
            i++;
        eml_buf val = {0};
        if (i < vl && v[i] == '"') {
            i++;
            while (i < vl && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < vl)
                    i++;
                eml_put(&val, v + i, 1);
                i++;
            }
            i++;
        } else {
            size_t vs = i;
            while (i < vl && v[i] != ';' && !isspace((unsigned char)v[i]))
                i++;
            eml_put(&val, v + vs, i - vs);
        }
        const char *name = v + ns;
        size_t nlen = ne - ns;
        if (nlen >= kl && strncasecmp(name, key, kl) == 0 && val.p) {
            const char *rest = name + kl;
            size_t rl = nlen - kl;
            int extended = rl > 0 && rest[rl - 1] == '*';
            int plain = rl == 0;
            int section = rl > 0 && rest[0] == '*';
            if (plain && out.n == 0) {
                eml_put(&out, val.p, val.n);
            } else if (section) {
                const char *txt = val.p;
                size_t tl = val.n;
                if (extended && !charset[0]) {
                    /* charset'language'value, only on the first section */
                    const char *q1 = memchr(txt, '\'', tl);
                    const char *q2 = q1 ? memchr(q1 + 1, '\'', tl - (size_t)(q1 + 1 - txt)) : NULL;
                    if (q1 && q2) {
                        size_t cl = (size_t)(q1 - txt) < sizeof charset - 1
                                        ? (size_t)(q1 - txt) : sizeof charset - 1;
                        memcpy(charset, txt, cl);
                        charset[cl] = '\0';
                        tl -= (size_t)(q2 + 1 - txt);
                        txt = q2 + 1;
                    }
                }
                if (extended) {
                    for (size_t k = 0; k < tl; k++) {
                        char c = txt[k];
                        if (c == '%' && k + 2 < tl && eml_hexval(txt[k + 1]) >= 0 &&
                            eml_hexval(txt[k + 2]) >= 0) {
                            c = (char)(eml_hexval(txt[k + 1]) << 4 | eml_hexval(txt[k + 2]));
                            k += 2;
                        }
                        eml_put(&out, &c, 1);
                    }
                } else {
                    eml_put(&out, txt, tl);
                }
            }
        }
        free(val.p);
    }
    dst[0] = '\0';
    if (out.p) {
        eml_buf conv = {0};
        if (charset[0])
            eml_put_cs(&conv, out.p, out.n, charset);
        else
            eml_decode_header(&conv, out.p, out.n); /* RFC 2047 in a name: common */
        if (conv.p)
            snprintf(dst, size, "%s", conv.p);
        free(conv.p);
    }
    free(out.p);
}

static void eml_lower_token(const char *v, size_t vl, char *dst, size_t size)
{
    size_t k = 0;
    while (vl && isspace((unsigned char)*v))
        v++, vl--;
    for (size_t i = 0; i < vl && k + 1 < size; i++) {
        if (v[i] == ';' || isspace((unsigned char)v[i]))
            break;
        dst[k++] = (char)tolower((unsigned char)v[i]);
    }
    dst[k] = '\0';
}

typedef struct {
    eml_mime *m;
    eml_buf *shown; /* the headers a reader sees, or NULL */
    char subject[512], from[512], date[128];
} eml_hctx;

static void eml_on_header(void *ud, const char *name, size_t nl, const char *v, size_t vl)
{
    eml_hctx *h = ud;
    eml_mime *m = h->m;
    if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) {
        eml_lower_token(v, vl, m->type, sizeof m->type);
        eml_param(v, vl, "charset", m->charset, sizeof m->charset);
        eml_param(v, vl, "boundary", m->boundary, sizeof m->boundary);
        if (!m->filename[0])
            eml_param(v, vl, "name", m->filename, sizeof m->filename);
    } else if (nl == 25 && strncasecmp(name, "content-transfer-encoding", 25) == 0) {
        eml_lower_token(v, vl, m->encoding, sizeof m->encoding);
    } else if (nl == 19 && strncasecmp(name, "content-disposition", 19) == 0) {
        char disp[32];
        eml_lower_token(v, vl, disp, sizeof disp);
        m->attachment = strcmp(disp, "attachment") == 0;
        char fn[256];
        eml_param(v, vl, "filename", fn, sizeof fn);
        if (fn[0])
            snprintf(m->filename, sizeof m->filename, "%s", fn);
    } else if (h->shown) {
        static const char *const shown[] = {"From", "To", "Cc", "Subject", "Date"};
        for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
            if (strlen(shown[i]) != nl || strncasecmp(name, shown[i], nl) != 0)
                continue;
            eml_buf val = {0};
            eml_decode_header(&val, v, vl);
            if (!val.p)
                break;
            eml_put(h->shown, shown[i], nl);
            eml_put(h->shown, ": ", 2);
            eml_put(h->shown, val.p, val.n);
            eml_put(h->shown, "\n", 1);
            char *slot = i == 0 ? h->from : i == 3 ? h->subject : i == 4 ? h->date : NULL;
            if (slot && !slot[0])
                snprintf(slot, i == 4 ? sizeof h->date : sizeof h->subject, "%s", val.p);
            free(val.p);
            break;
        }
    }
}

/* "Tue, 1 Jul 2003 10:52:37 +0200" -> "2003-07-01T10:52:37+02:00". Returns 0
 * when the date does not parse. */
static int eml_iso_date(const char *s, char *iso, size_t size)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    const char *comma = strchr(s, ',');
    if (comma)
        s = comma + 1;
    int day, year, hh, mm, ss = 0, n = 0;
    char mon[4] = "", zone[8] = "";
    if (sscanf(s, " %d %3s %d %d:%d%n", &day, mon, &year, &hh, &mm, &n) < 5)
        return 0;
    s += n;
    if (*s == ':' && sscanf(s, ":%d%n", &ss, &n) == 1)
        s += n;
    if (sscanf(s, " %7s", zone) != 1)
        zone[0] = '\0';
    for (char *c = mon; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
    if (!m || (m - months) % 3 != 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return 0;
    if (year < 50)
        year += 2000; /* obsolete two-digit years, RFC 5322 4.3 */
    else if (year < 1000)
        year += 1900;
    char tz[8] = "";
    if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5 &&
        strspn(zone + 1, "0123456789") == 4) {
        if (strcmp(zone + 1, "0000") == 0)
            snprintf(tz, sizeof tz, "Z");
        else
            snprintf(tz, sizeof tz, "%c%.2s:%.2s", zone[0], zone + 1, zone + 3);
    } else if (strcasecmp(zone, "GMT") == 0 || strcasecmp(zone, "UT") == 0 ||
               strcasecmp(zone, "UTC") == 0 || strcasecmp(zone, "Z") == 0) {
        snprintf(tz, sizeof tz, "Z");
    }
    snprintf(iso, size, "%04d-%02d-%02dT%02d:%02d:%02d%s", year, (int)((m - months) / 3) + 1,
             day, hh, mm, ss, tz);
    return 1;
}

/* ---- the MIME walk ------------------------------------------------------------- */

typedef struct {
    sl_extract_result *out;
    const sl_extract_limits *lim;
    int stop; /* text full, timeout, or out of memory */
    int rc;
} eml;

static void eml_text(eml *e, const char *s, size_t n)
{
    if (e->stop)
        return;
    if (sl_extract_newline(e->out) || sl_extract_append(e->out, s, n))
        e->stop = 1;
}

/* Decodes a part's body per its transfer encoding into a malloc'd buffer. */
static char *eml_body(const eml_mime *m, const char *s, size_t n, size_t *len)
{
    char *dst = malloc(n + 4);
    if (!dst)
        return NULL;
    if (strcmp(m->encoding, "base64") == 0)
        *len = eml_base64(s, n, dst);
    else if (strcmp(m->encoding, "quoted-printable") == 0)
        *len = eml_qp(s, n, dst, 0);
    else
        memcpy(dst, s, n), *len = n;
    dst[*len] = '\0';
    return dst;
}

static void eml_part(eml *e, const char *s, size_t n, int depth, int message);

/* Walks the parts of a multipart body. */
static void eml_multipart(eml *e, const eml_mime *m, const char *s, size_t n, int depth)
{
    size_t bl = strlen(m->boundary);
    const char *end = s + n;
    const char **parts[2] = {malloc(EML_MAX_PARTS * sizeof(char *)),
                             malloc(EML_MAX_PARTS * sizeof(char *))};
    if (!parts[0] || !parts[1]) {
        free(parts[0]), free(parts[1]);
        e->stop = 1;
        e->rc = sl_extract_error(e->out, "out of memory");
        return;
    }
    size_t count = 0, total = 0;
    const char *p = s;
    const char *start = NULL;
    /* walk the delimiter lines "--boundary" (at the start of a line) */
    while (p < end && !e->stop) {
        const char *d = p;
        while (d + 2 + bl <= end) {
            if ((d == s || d[-1] == '\n') && d[0] == '-' && d[1] == '-' &&
                memcmp(d + 2, m->boundary, bl) == 0)
                break;
            const char *nl = memchr(d, '\n', (size_t)(end - d));
            if (!nl)
                d = end;
            else
                d = nl + 1;
        }
        if (d + 2 + bl > end)
            d = end;
        if (start) {
            const char *pe = d;
            if (pe > start && pe[-1] == '\n')
                pe--;
            if (pe > start && pe[-1] == '\r')
                pe--;
            if (pe < start)
                pe = start;
            if (count < EML_MAX_PARTS) {
                parts[0][count] = start;
                parts[1][count] = pe;
                count++;
            }
            total++;
        }
        if (d >= end)
            break;
        const char *after = d + 2 + bl;
        if (after + 1 < end && after[0] == '-' && after[1] == '-')
            break; /* the close delimiter */
        const char *nl = memchr(after, '\n', (size_t)(end - after));
        start = nl ? nl + 1 : end;
        p = start;
    }
    if (total > count)
        e->out->flags |= SL_EXTRACT_TRUNCATED;
    if (strcmp(m->type, "multipart/alternative") == 0 && count > 1) {
        /* one rendering of the same content: text/plain, else text/html,
         * else the last (richest) one */
        size_t pick = count - 1;
        int best = 0;
        for (size_t i = 0; i < count; i++) {
            eml_mime sub = {0};
            eml_hctx h = {.m = &sub};
            size_t body;
            size_t he = eml_header_end(parts[0][i], (size_t)(parts[1][i] - parts[0][i]), &body);
            eml_headers(parts[0][i], he, eml_on_header, &h);
            int score = strcmp(sub.type, "text/plain") == 0 || !sub.type[0] ? 2
                        : strcmp(sub.type, "text/html") == 0              ? 1
                                                                          : 0;
            if (score > best)
                best = score, pick = i;
        }
        eml_part(e, parts[0][pick], (size_t)(parts[1][pick] - parts[0][pick]), depth + 1, 0);
    } else {
        for (size_t i = 0; i < count && !e->stop; i++)
            eml_part(e, parts[0][i], (size_t)(parts[1][i] - parts[0][i]), depth + 1, 0);
    }
    free(parts[0]);
    free(parts[1]);
}

/* An attachment: its name, then whatever the dispatcher can read of it. */
static void eml_attachment(eml *e, const eml_mime *m, const char *body, size_t bn)
{
    size_t len;
    char *data = eml_body(m, body, bn, &len);
    if (!data) {
        e->stop = 1;
        e->rc = sl_extract_error(e->out, "out of memory");
        return;
    }
    if (m->filename[0])
        eml_text(e, m->filename, strlen(m->filename));
    sl_extract_limits sub = *e->lim;
    sub.depth = e->lim->depth + 1;
    if (sub.max_chars && e->out->nchars < sub.max_chars)
        sub.max_chars -= e->out->nchars;
    sl_extract_result r;
    sl_extract_result_init(&r, &sub);
    r.inflated = e->out->inflated;
    int rc = sl_extract_buffer(data, len, m->filename[0] ? m->filename : NULL,
                               SL_KIND_UNKNOWN, &sub, &r);
    e->out->inflated = r.inflated;
    if (rc == SL_EXTRACT_OK && r.text && r.len)
        eml_text(e, r.text, r.len);
    if (r.flags & SL_EXTRACT_TRUNCATED)
        e->out->flags |= SL_EXTRACT_TRUNCATED;
    sl_extract_result_free(&r);
    free(data);
}

static void eml_part(eml *e, const char *s, size_t n, int depth, int message)
{
    if (e->stop)
        return;
    if (depth > EML_MAX_DEPTH) {
        e->out->flags |= SL_EXTRACT_TRUNCATED;
        return;
    }
    if (sl_extract_expired(e->lim)) {
        e->stop = 1;
        e->rc = sl_extract_error(e->out, "timeout");
        return;
    }
    eml_mime m = {0};
    eml_buf shown = {0};
    eml_hctx h = {.m = &m, .shown = message ? &shown : NULL};
    size_t body;
    size_t he = eml_header_end(s, n, &body);
    eml_headers(s, he, eml_on_header, &h);
    if (message) {
        if (shown.p)
            eml_text(e, shown.p, shown.n);
        if (depth == 0) {
            sl_extract_meta(&e->out->title, h.subject, strlen(h.subject));
            sl_extract_meta(&e->out->author, h.from, strlen(h.from));
            char iso[64];
            if (h.date[0] && eml_iso_date(h.date, iso, sizeof iso))
                sl_extract_meta(&e->out->created, iso, strlen(iso));
        }
    }
    free(shown.p);
    if (shown.oom) {
        e->stop = 1;
        e->rc = sl_extract_error(e->out, "out of memory");
        return;
    }
    const char *b = s + body;
    size_t bn = n - body;
    if (strncmp(m.type, "multipart/", 10) == 0 && m.boundary[0]) {
        eml_multipart(e, &m, b, bn, depth);
    } else if (strcmp(m.type, "message/rfc822") == 0 && !m.attachment) {
        size_t len;
        char *inner = eml_body(&m, b, bn, &len);
        if (inner)
            eml_part(e, inner, len, depth + 1, 1);
        free(inner);
    } else if (!m.attachment &&
               (!m.type[0] || strcmp(m.type, "text/plain") == 0 ||
                strcmp(m.type, "text/html") == 0)) {
        size_t len;
        char *text = eml_body(&m, b, bn, &len);
        if (!text) {
            e->stop = 1;
            e->rc = sl_extract_error(e->out, "out of memory");
            return;
        }
        /* mislabelled us-ascii is common: let the detector look */
        const char *cs = m.charset[0] && strcasecmp(m.charset, "us-ascii") != 0 ? m.charset
                                                                                 : NULL;
        if (!e->stop && !sl_extract_newline(e->out)) {
            char mime[sizeof e->out->mime];
            memcpy(mime, e->out->mime, sizeof mime);
            int rc = strcmp(m.type, "text/html") == 0
                         ? sl_extract_html_cs(text, len, cs, e->lim, e->out)
                         : sl_extract_text_cs(text, len, cs, e->lim, e->out);
            memcpy(e->out->mime, mime, sizeof mime);
            if (sl_extract_full(e->out))
                e->stop = 1;
            else if (rc != SL_EXTRACT_OK)
                e->out->err[0] = '\0'; /* an unreadable body part is not the mail's end */
        } else {
            e->stop = 1;
        }
        free(text);
    } else if (bn > 0) {
        eml_attachment(e, &m, b, bn);
    }
}

int sl_extract_eml(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    eml e = {.out = out, .lim = lim, .rc = SL_EXTRACT_OK};
    eml_part(&e, buf, len, 0, 1);
    if (e.rc != SL_EXTRACT_OK)
        return e.rc;
    if (out->err[0] && !sl_extract_full(out))
        return SL_EXTRACT_ERR;
    sl_extract_newline(out);
    return SL_EXTRACT_OK;
}
