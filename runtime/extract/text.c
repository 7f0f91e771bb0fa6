/*
 * Text-shaped formats: plain text in any charset, CSV/TSV, XML, JSON, and
 * the gzip unwrapping the dispatcher uses.
 *
 * Charsets: a BOM is proof; valid UTF-8 is taken as UTF-8 (a legacy text
 * that happens to be valid UTF-8 is all ASCII, where the guess is moot);
 * otherwise uchardet guesses from statistics and iconv converts. When
 * uchardet has no answer, windows-1252 is the fallback: it maps every byte,
 * so a wrong guess costs accents, never text. Conversion errors become
 * U+FFFD and the conversion goes on; bytes never fail a document.
 *
 * XML goes through libxml2 (entities decoded, encoding declarations
 * honoured, no network, no external entities expanded: a document cannot
 * make us fetch or amplify). JSON needs only its string values, so a small
 * tokenizer reads them and survives truncated or invalid input, which a
 * strict parser would reject outright.
 */
#include "extract/extract.h"
#include "codec/utf8.h"

#include <errno.h>
#include <iconv.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uchardet/uchardet.h>
#include <zlib.h>

#define DETECT_SAMPLE (64u << 10)

/* ---- charsets ----------------------------------------------------------- */

/* 1 when s is well-formed UTF-8, allowing a sequence cut at the end. */
static int utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int valid;
        size_t k = sl_utf8_next(p + i, n - i, &valid);
        if (!valid)
            return i + k >= n && n - i < 4; /* only a cut tail */
        i += k;
    }
    return 1;
}

/* Charset named by a BOM; sets *skip to the BOM's length. */
static const char *bom_charset(const unsigned char *s, size_t n, size_t *skip)
{
    *skip = 0;
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
        return *skip = 3, "UTF-8";
    if (n >= 4 && s[0] == 0xff && s[1] == 0xfe && !s[2] && !s[3])
        return *skip = 4, "UTF-32LE";
    if (n >= 4 && !s[0] && !s[1] && s[2] == 0xfe && s[3] == 0xff)
        return *skip = 4, "UTF-32BE";
    if (n >= 2 && s[0] == 0xff && s[1] == 0xfe)
        return *skip = 2, "UTF-16LE";
    if (n >= 2 && s[0] == 0xfe && s[1] == 0xff)
        return *skip = 2, "UTF-16BE";
    return NULL;
}

/* BOM-less UTF-16: most even (BE) or odd (LE) bytes of the start are 0. */
static const char *utf16_guess(const unsigned char *s, size_t n)
{
    size_t m = n < 512 ? n & ~(size_t)1 : 512, z_even = 0, z_odd = 0;
    if (m < 4)
        return NULL;
    for (size_t i = 0; i < m; i += 2) {
        z_even += s[i] == 0;
        z_odd += s[i + 1] == 0;
    }
    if (z_odd * 10 >= m / 2 * 7 && z_even * 10 < m / 2)
        return "UTF-16LE";
    if (z_even * 10 >= m / 2 * 7 && z_odd * 10 < m / 2)
        return "UTF-16BE";
    return NULL;
}

/* uchardet's answer for the start of buf, into cs; "" when unsure. */
static void guess_charset(const char *buf, size_t n, char *cs, size_t size)
{
    cs[0] = '\0';
    uchardet_t ud = uchardet_new();
    if (!ud)
        return;
    if (uchardet_handle_data(ud, buf, n < DETECT_SAMPLE ? n : DETECT_SAMPLE) == 0) {
        uchardet_data_end(ud);
        const char *c = uchardet_get_charset(ud);
        if (c && *c && strcasecmp(c, "ASCII") != 0)
            snprintf(cs, size, "%s", c);
    }
    uchardet_delete(ud);
}

/* Converts with iconv, appending as it goes; bad input becomes U+FFFD. */
static int convert(const char *buf, size_t len, const char *cs,
                   sl_extract_result *out)
{
    iconv_t cd = iconv_open("UTF-8", cs);
    if (cd == (iconv_t)-1)
        return -1;
    size_t unit = (strncasecmp(cs, "UTF-16", 6) == 0 || strncasecmp(cs, "UCS-2", 5) == 0)
                      ? 2
                      : strncasecmp(cs, "UTF-32", 6) == 0 ? 4 : 1;
    char obuf[16384];
    char *in = (char *)buf;
    size_t inleft = len;
    int stop = 0;
    while (inleft > 0 && !stop) {
        char *o = obuf;
        size_t oleft = sizeof obuf;
        size_t rc = iconv(cd, &in, &inleft, &o, &oleft);
        int e = rc == (size_t)-1 ? errno : 0;
        if (o > obuf && sl_extract_append(out, obuf, (size_t)(o - obuf)))
            stop = 1;
        if (e == EILSEQ || e == EINVAL) {
            if (sl_extract_append(out, SL_UTF8_REPLACEMENT, 3))
                stop = 1;
            size_t skip = unit < inleft ? unit : inleft;
            if (e == EINVAL)
                skip = inleft; /* cut sequence at the end */
            in += skip;
            inleft -= skip;
        } else if (e != 0 && e != E2BIG) {
            break;
        }
        if (sl_extract_expired(out->lim)) {
            iconv_close(cd);
            sl_extract_error(out, "timeout");
            return 1;
        }
    }
    iconv_close(cd);
    return 0;
}

int sl_extract_text_cs(const char *buf, size_t len, const char *charset,
                       const sl_extract_limits *lim, sl_extract_result *out)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t skip;
    const char *cs = bom_charset(s, len, &skip);
    char guess[64];
    buf += skip, len -= skip;
    if (!cs && charset && *charset && strcasecmp(charset, "us-ascii") != 0 &&
        strcasecmp(charset, "ascii") != 0)
        cs = charset;
    if (!cs) {
        if (utf8_ok(buf, len))
            cs = "UTF-8";
        else if ((cs = utf16_guess(s, len)) == NULL) {
            guess_charset(buf, len, guess, sizeof guess);
            /* uchardet names UTF-8 for mostly-valid text: keep the bytes,
             * the engine's hygiene replaces the bad ones */
            cs = guess[0] ? guess : "WINDOWS-1252";
        }
    }
    if (strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "utf8") == 0) {
        sl_extract_append(out, buf, len);
        return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
    }
    int rc = convert(buf, len, cs, out);
    if (rc < 0) /* a charset iconv does not know: best effort */
        rc = convert(buf, len, "WINDOWS-1252", out);
    if (rc < 0)
        sl_extract_append(out, buf, len);
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

int sl_extract_text(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    return sl_extract_text_cs(buf, len, NULL, lim, out);
}

/* Converts buf to UTF-8 for a parser; returns buf itself when it already
 * is (then *tmp stays unset), else tmp's text. */
static const char *as_utf8(const char *buf, size_t *len, const sl_extract_limits *lim,
                           sl_extract_result *tmp)
{
    size_t skip;
    const char *cs = bom_charset((const unsigned char *)buf, *len, &skip);
    if ((!cs || strcmp(cs, "UTF-8") == 0) && utf8_ok(buf + skip, *len - skip)) {
        *len -= skip;
        return buf + skip;
    }
    sl_extract_result_init(tmp, lim);
    sl_extract_text_cs(buf, *len, NULL, lim, tmp);
    *len = tmp->len;
    return tmp->text ? tmp->text : "";
}

/* ---- CSV / TSV ---------------------------------------------------------- */

/* A cell's text while it is parsed: quotes removed, "" unescaped. */
typedef struct cell {
    char *p;
    size_t len, cap;
} cell;

static int cell_add(cell *c, const char *s, size_t n)
{
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        while (cap < c->len + n)
            cap *= 2;
        char *q = realloc(c->p, cap);
        if (!q)
            return -1;
        c->p = q, c->cap = cap;
    }
    memcpy(c->p + c->len, s, n);
    c->len += n;
    return 0;
}

/* Rows become lines, cells are separated by a TAB, quotes are removed and
 * "" unescaped; a line break inside a quoted cell becomes a space, so one
 * row is always one line. Empty cells are dropped. */
static int extract_table(const char *buf, size_t len, char delim,
                         const sl_extract_limits *lim, sl_extract_result *out)
{
    sl_extract_result tmp;
    tmp.text = NULL;
    const char *s = as_utf8(buf, &len, lim, &tmp);
    cell c = {NULL, 0, 0};
    size_t i = 0, rows = 0;
    int cells = 0, oom = 0;
    while (i < len && !sl_extract_full(out) && !oom) {
        c.len = 0;
        int quoted = 0;
        while (i < len) {
            char ch = s[i];
            if (quoted) {
                if (ch == '"' && i + 1 < len && s[i + 1] == '"') {
                    oom |= cell_add(&c, "\"", 1);
                    i += 2;
                    continue;
                }
                if (ch == '"')
                    quoted = 0;
                else if (ch == '\n' || ch == '\r')
                    oom |= cell_add(&c, " ", 1);
                else
                    oom |= cell_add(&c, &ch, 1);
                i++;
                continue;
            }
            if (ch == delim || ch == '\n' || ch == '\r')
                break;
            if (ch == '"')
                quoted = 1;
            else
                oom |= cell_add(&c, &ch, 1);
            i++;
        }
        size_t b0 = 0, e = c.len;
        while (b0 < e && (c.p[b0] == ' ' || c.p[b0] == '\t'))
            b0++;
        while (e > b0 && (c.p[e - 1] == ' ' || c.p[e - 1] == '\t'))
            e--;
        if (e > b0) {
            if (cells)
                sl_extract_append(out, "\t", 1);
            sl_extract_append_collapsed(out, c.p + b0, e - b0);
            cells++;
        }
        if (i < len && s[i] == delim) {
            i++;
            continue;
        }
        if (i < len && s[i] == '\r')
            i++;
        if (i < len && s[i] == '\n')
            i++;
        if (cells)
            sl_extract_newline(out);
        cells = 0;
        if ((++rows & 1023) == 0 && sl_extract_expired(lim))
            break;
    }
    free(c.p);
    if (tmp.text)
        sl_extract_result_free(&tmp);
    if (oom)
        return sl_extract_error(out, "out of memory");
    if (sl_extract_expired(lim))
        return sl_extract_error(out, "timeout");
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

int sl_extract_csv(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    /* semicolons where a locale's decimal comma took the comma */
    size_t n = len < 4096 ? len : 4096, commas = 0, semis = 0;
    for (size_t i = 0; i < n && buf[i] != '\n'; i++)
        commas += buf[i] == ',', semis += buf[i] == ';';
    return extract_table(buf, len, semis > commas ? ';' : ',', lim, out);
}

int sl_extract_tsv(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    return extract_table(buf, len, '\t', lim, out);
}

/* ---- XML ---------------------------------------------------------------- */

/* 1 when el holds text of its own besides its elements (mixed content:
 * <p>a <b>b</b> c</p>), where child elements are words of one line. */
static int mixed(xmlNode *el)
{
    for (xmlNode *c = el->children; c; c = c->next) {
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            continue;
        for (const xmlChar *t = c->content; t && *t; t++)
            if (*t != ' ' && *t != '\n' && *t != '\t' && *t != '\r')
                return 1;
    }
    return 0;
}

#define XML_STACK 512

/* Walks the tree without recursion: text and CDATA in document order;
 * the children of a pure container (records, fields) each end a line,
 * those of mixed content run on. Whether an element is mixed is decided
 * once, on the way down, and kept on a stack for the way up. */
static int walk_xml(xmlNode *root, const sl_extract_limits *lim, sl_extract_result *out)
{
    unsigned char is_mixed[XML_STACK];
    size_t depth = 0; /* elements entered below root's parent */
    xmlNode *n = root;
    unsigned long steps = 0;
    while (n && !sl_extract_full(out)) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            const char *c = (const char *)n->content;
            if (c && *c)
                sl_extract_append_collapsed(out, c, strlen(c));
        }
        if (n->type == XML_ELEMENT_NODE && n->children) {
            /* libxml2 caps depth at 256 without XML_PARSE_HUGE; deeper
             * levels would share the last slot, costing only layout */
            is_mixed[depth < XML_STACK ? depth : XML_STACK - 1] = (unsigned char)mixed(n);
            depth++;
            n = n->children;
            continue;
        }
        for (;;) {
            if (n->type == XML_ELEMENT_NODE && n != root && depth > 0 &&
                !is_mixed[(depth - 1) < XML_STACK ? depth - 1 : XML_STACK - 1])
                sl_extract_newline(out);
            if (n == root)
                return 0;
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
            if (!n)
                return 0;
            depth--;
        }
        if ((++steps & 4095) == 0 && sl_extract_expired(lim))
            return sl_extract_error(out, "timeout");
    }
    return 0;
}

int sl_extract_xml(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    sl_extract_init_libxml();
    if (len > INT32_MAX)
        return sl_extract_error(out, "too large");
    xmlDoc *doc = xmlReadMemory(buf, (int)len, NULL, NULL,
                                XML_PARSE_RECOVER | XML_PARSE_NONET |
                                    XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc || !xmlDocGetRootElement(doc)) {
        if (doc)
            xmlFreeDoc(doc);
        return sl_extract_error(out, "malformed xml");
    }
    int rc = walk_xml(xmlDocGetRootElement(doc), lim, out);
    xmlFreeDoc(doc);
    if (rc)
        return SL_EXTRACT_ERR;
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

/* ---- JSON --------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long hex4(const char *s, size_t left)
{
    if (left < 4)
        return -1;
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Every string value (not key), decoded, one a line. */
int sl_extract_json(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    sl_extract_result tmp;
    tmp.text = NULL;
    const char *s = as_utf8(buf, &len, lim, &tmp);
    size_t i = 0;
    while (i < len && !sl_extract_full(out)) {
        if (s[i] != '"') {
            i++;
            continue;
        }
        /* is it a key? look past the string for ':' first */
        size_t j = i + 1;
        while (j < len && s[j] != '"')
            j += s[j] == '\\' ? 2 : 1;
        size_t k = j + 1;
        while (k < len && (s[k] == ' ' || s[k] == '\n' || s[k] == '\t' || s[k] == '\r'))
            k++;
        if (k < len && s[k] == ':') {
            i = k + 1;
            continue;
        }
        size_t run = ++i;
        int any = 0;
        while (i < len && s[i] != '"') {
            if (s[i] != '\\') {
                i++;
                continue;
            }
            if (i > run)
                any = 1, sl_extract_append(out, s + run, i - run);
            if (i + 1 >= len) {
                i = len;
                run = i;
                break;
            }
            char e = s[i + 1], c = 0;
            i += 2;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                long u = hex4(s + i, len - i);
                if (u < 0) {
                    c = '?';
                    break;
                }
                i += 4;
                if (u >= 0xd800 && u <= 0xdbff && i + 6 <= len && s[i] == '\\' &&
                    s[i + 1] == 'u') {
                    long lo = hex4(s + i + 2, len - i - 2);
                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                if ((u >= 0xd800 && u <= 0xdfff))
                    u = 0xfffd; /* a lone surrogate */
                unsigned char ub[4];
                if (u != 0)
                    any = 1, sl_extract_append(out, (char *)ub, sl_utf8_put(ub, (unsigned long)u));
                break;
            }
            default: c = e; break;
            }
            if (c)
                any = 1, sl_extract_append(out, &c, 1);
            run = i;
        }
        if (i > run)
            any = 1, sl_extract_append(out, s + run, i - run);
        if (any)
            sl_extract_newline(out);
        i++;
        if ((i & 0xffff) == 0 && sl_extract_expired(lim))
            break;
    }
    if (tmp.text)
        sl_extract_result_free(&tmp);
    if (sl_extract_expired(lim))
        return sl_extract_error(out, "timeout");
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

/* ---- gzip --------------------------------------------------------------- */

int sl_extract_gunzip(const char *buf, size_t len, sl_extract_result *out,
                      char **res, size_t *res_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return sl_extract_error(out, "gzip: cannot start");
    size_t cap = len * 4 + 4096, n = 0;
    char *o = malloc(cap);
    z.next_in = (unsigned char *)buf;
    z.avail_in = len > UINT32_MAX ? UINT32_MAX : (unsigned)len;
    int rc = Z_OK;
    while (o) {
        if (n + 1 >= cap) {
            char *p = realloc(o, cap * 2);
            if (!p) {
                free(o);
                o = NULL;
                break;
            }
            o = p;
            cap *= 2;
        }
        z.next_out = (unsigned char *)o + n;
        z.avail_out = (unsigned)((cap - n - 1) > UINT32_MAX ? UINT32_MAX : cap - n - 1);
        unsigned before = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        size_t got = before - z.avail_out;
        n += got;
        /* one gzip member is one entry: both caps apply to it */
        if (sl_extract_inflated(out, got, n) != SL_EXTRACT_OK) {
            inflateEnd(&z);
            free(o);
            return SL_EXTRACT_ERR;
        }
        if (rc == Z_STREAM_END)
            break;
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && z.avail_out == 0)) {
            inflateEnd(&z);
            free(o);
            return sl_extract_error(out, rc == Z_BUF_ERROR ? "gzip: truncated"
                                                           : "gzip: corrupt");
        }
        if (sl_extract_expired(out->lim)) {
            inflateEnd(&z);
            free(o);
            return sl_extract_error(out, "timeout");
        }
    }
    inflateEnd(&z);
    if (!o)
        return sl_extract_error(out, "out of memory");
    o[n] = '\0';
    *res = o;
    *res_len = n;
    return SL_EXTRACT_OK;
}
