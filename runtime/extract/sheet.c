/*
 * XLSX worksheet text: the cell handlers, driven either by libxml2 or by a
 * fast scanner for the subset of XML that spreadsheet writers produce (see
 * sheet.h for why, and for the contract: same text either way).
 *
 * The scanner is a fast path, not a parser: it accepts a document only when
 * it can tell, byte by byte, that libxml2 would accept it and report the
 * same elements, namespaces, attributes and text. Anything it is not sure
 * of is a bail, and a bail is always safe: the part is read again by
 * libxml2 from its start, with the text appended so far taken back and the
 * inflated bytes counted once. What it accepts:
 *  - UTF-8 only: an optional <?xml version="1.0" encoding="utf-8"
 *    standalone=".."?> at byte 0, no byte order mark;
 *  - elements and attributes with ASCII names, namespace prefixes bound in
 *    the document (xml: for attributes); no DOCTYPE, comments, CDATA or
 *    processing instructions anywhere;
 *  - text and attribute values of valid UTF-8 XML characters, the five
 *    predefined entities and character references; no CR inside the root
 *    element (libxml2 would normalize it), no "]]>".
 * Limits below libxml2's own (depth, name and value lengths) are bails too.
 */
#include "extract/sheet.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cell handlers, shared by both paths ------------------------------ */

typedef struct {
    sl_xml_base base; /* first: the libxml2 path's user data */
    sl_extract_result *out;
    const sl_sheet_sst *sst;
    char type[16]; /* the cell's t attribute */
    char *val;     /* the cell's <v> or inline <t> text */
    size_t vlen, vcap;
    int in_v, in_is, row_cells;
    int stop; /* why the handlers want the read to end (SL_ZIP_*), or 0 */
} sh_sheet;

#define SH_IS(s, n, lit) ((n) == sizeof(lit) - 1 && memcmp((s), (lit), (n)) == 0)

static void sh_stop(sh_sheet *sh, int code)
{
    if (!sh->stop)
        sh->stop = code;
}

/* A spreadsheetml element opens; t is the c element's t attribute (NULL:
 * none). Elements are nearly all c, v and row: switch on the first letter. */
static void sh_open(sh_sheet *sh, const char *local, size_t n, const char *t, size_t tl)
{
    switch (local[0]) {
    case 'c':
        if (n == 1) {
            if (!t)
                tl = 0;
            if (tl >= sizeof sh->type)
                tl = sizeof sh->type - 1;
            if (t)
                memcpy(sh->type, t, tl);
            sh->type[tl] = '\0'; /* no type: a number */
            sh->vlen = 0;
        }
        break;
    case 'v':
        if (n == 1)
            sh->in_v = 1;
        break;
    case 'i':
        if (SH_IS(local, n, "is"))
            sh->in_is = 1;
        break;
    case 't':
        if (n == 1 && sh->in_is)
            sh->in_v = 1;
        break;
    case 'r':
        if (SH_IS(local, n, "row"))
            sh->row_cells = 0;
        else if (SH_IS(local, n, "rPh") && sh->in_is)
            sh->in_is = 2; /* phonetic run inside an inline string */
        break;
    }
}

static void sh_emit(sh_sheet *sh, const char *s, size_t n)
{
    if (n == 0)
        return;
    if ((sh->row_cells++ > 0 && sl_extract_append(sh->out, "\t", 1)) ||
        sl_extract_append(sh->out, s, n))
        sh_stop(sh, SL_ZIP_STOPPED);
}

static void sh_cell_end(sh_sheet *sh)
{
    if (sh->type[0] == 's' && sh->type[1] == '\0') {
        char *end;
        const char *v = sh->vlen ? sh->val : "";
        unsigned long i = strtoul(v, &end, 10);
        if (sh->vlen && end != v && sh->sst && i < sh->sst->n) {
            const char *s = sh->sst->chars + sh->sst->offs[i];
            sh_emit(sh, s, strlen(s));
        }
    } else if (sh->type[0] == 'b' && sh->type[1] == '\0') {
        if (sh->vlen)
            sh_emit(sh, sh->val[0] == '1' ? "TRUE" : "FALSE", sh->val[0] == '1' ? 4 : 5);
    } else {
        sh_emit(sh, sh->val, sh->vlen);
    }
    sh->vlen = 0;
}

static void sh_close(sh_sheet *sh, const char *local, size_t n)
{
    switch (local[0]) {
    case 'v':
        if (n == 1)
            sh->in_v = 0;
        break;
    case 't':
        if (n == 1 && sh->in_is)
            sh->in_v = 0;
        break;
    case 'c':
        if (n == 1)
            sh_cell_end(sh);
        break;
    case 'i':
        if (SH_IS(local, n, "is"))
            sh->in_is = 0;
        break;
    case 'r':
        if (SH_IS(local, n, "rPh") && sh->in_is == 2) {
            sh->in_is = 1;
        } else if (SH_IS(local, n, "row")) {
            if (sh->row_cells && sl_extract_newline(sh->out))
                sh_stop(sh, SL_ZIP_STOPPED);
        }
        break;
    }
}

static void sh_text(sh_sheet *sh, const char *s, size_t n)
{
    if (!sh->in_v || sh->in_is == 2)
        return;
    if (sh->vlen + n + 1 > sh->vcap) {
        size_t cap = sh->vcap ? sh->vcap : 256;
        while (cap < sh->vlen + n + 1)
            cap *= 2;
        char *v = realloc(sh->val, cap);
        if (!v) {
            sh_stop(sh, SL_ZIP_NOMEM);
            return;
        }
        sh->val = v;
        sh->vcap = cap;
    }
    memcpy(sh->val + sh->vlen, s, n);
    sh->vlen += n;
    sh->val[sh->vlen] = '\0';
}

/* ---- the libxml2 path ------------------------------------------------------ */

static void sh_xml_start(void *ud, const char *name, const char **atts)
{
    (void)atts;
    sh_sheet *sh = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_S)
        return;
    const char *t = NULL;
    size_t tl = 0;
    if (local[0] == 'c' && local[1] == '\0')
        t = sl_xml_attr_span(ud, SL_NS_OTHER, "t", &tl);
    sh_open(sh, local, strlen(local), t, tl);
    if (sh->stop)
        sl_xml_stop(&sh->base, sh->stop);
}

static void sh_xml_end(void *ud, const char *name)
{
    sh_sheet *sh = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_S)
        return;
    sh_close(sh, local, strlen(local));
    if (sh->stop)
        sl_xml_stop(&sh->base, sh->stop);
}

static void sh_xml_text(void *ud, const char *s, int n)
{
    sh_sheet *sh = ud;
    sh_text(sh, s, (size_t)n);
    if (sh->stop)
        sl_xml_stop(&sh->base, sh->stop);
}

/* Reads the part from z, or else buf[0..len), with libxml2. */
static int sh_libxml(sh_sheet *sh, sl_zip *z, const char *part, const char *buf, size_t len)
{
    sl_xml_parser *p = sl_xml_parser_new(&sh->base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, sh_xml_start, sh_xml_end);
    sl_xml_set_text(p, sh_xml_text);
    int rc = z ? sl_zip_parse_xml(z, part, &sh->base) : sl_xml_parse_buffer(&sh->base, buf, len);
    sl_xml_parser_free(p);
    return rc;
}

/* ---- the fast scanner -------------------------------------------------------- */

#define SC_MAX_DEPTH 64     /* libxml2 refuses past 256 */
#define SC_MAX_NAME 255     /* libxml2: 50,000 */
#define SC_MAX_VALUE (1u << 20) /* libxml2: 10,000,000 */
#define SC_MAX_ATTS 32
#define SC_MAX_BIND 32
#define SC_MAX_PREFIX 32
#define SC_NAMES (SC_MAX_DEPTH * 64)
#define SC_MAX_CARRY (64 * 1024) /* an unfinished tag longer than this: bail */

enum { SC_BAIL = -1, SC_STOP = -2 };
enum { SC_PRE = 0, SC_ROOT, SC_POST };

typedef struct {
    unsigned short off, len; /* the qname in names[] */
    unsigned char nbind;     /* bindings in scope before this element's own */
    unsigned char def_s;     /* the default namespace here is spreadsheetml */
    unsigned char is_s;      /* the element is a spreadsheetml one */
} sc_frame;

typedef struct {
    char prefix[SC_MAX_PREFIX];
    unsigned char plen, is_s;
} sc_bind;

typedef struct {
    sh_sheet *sh;
    int phase, started, depth, nbind;
    size_t names_len;
    sc_frame open[SC_MAX_DEPTH];
    sc_bind bind[SC_MAX_BIND];
    char names[SC_NAMES];
    char *carry;
    size_t clen, ccap;
} sc_scan;

/* Byte classes. Text: 1 for bytes that stand for themselves in character
 * data (printable ASCII but < & ], tab, newline). Values: 1 for those of an
 * attribute value (printable ASCII but < & " '). Names: 1 may start a name,
 * 2 may continue one. */
static unsigned char sc_text_plain[256], sc_val_plain[256], sc_name[256];

static void sc_tables(void)
{
    for (int c = 0x20; c < 0x80; c++) {
        sc_text_plain[c] = c != '<' && c != '&' && c != ']';
        sc_val_plain[c] = c != '<' && c != '&' && c != '"' && c != '\'';
    }
    sc_text_plain['\t'] = sc_text_plain['\n'] = 1;
    for (int c = 'a'; c <= 'z'; c++)
        sc_name[c] = sc_name[c - 'a' + 'A'] = 1;
    sc_name['_'] = 1;
    for (int c = '0'; c <= '9'; c++)
        sc_name[c] = 2;
    sc_name['.'] = sc_name['-'] = 2;
}

static int sc_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A UTF-8 sequence of an XML character at p: its length, 0 when it is cut
 * by the end of the data, SC_BAIL when it is not one (overlong, surrogate,
 * U+FFFE, U+FFFF, past U+10FFFF, stray continuation byte). */
static int sc_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    int n;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return SC_BAIL;
    }
    if (end - p < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return SC_BAIL;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return SC_BAIL;
    if (c == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))
        return SC_BAIL;
    return n;
}

/* A reference at p ('&'): the bytes it spans, with what it stands for in
 * out[0..*on) as UTF-8; 0 when cut by the end of the data; SC_BAIL for
 * anything but the five predefined entities and character references to
 * characters libxml2 passes through unchanged. */
static int sc_ref(const char *p, const char *end, char *out, int *on)
{
    const char *semi = NULL;
    for (const char *r = p + 1; r < end && r - p < 12; r++)
        if (*r == ';') {
            semi = r;
            break;
        }
    if (!semi)
        return end - p < 12 ? 0 : SC_BAIL;
    const char *q = p + 1;
    size_t n = (size_t)(semi - q);
    int len = (int)(semi - p) + 1;
    static const struct {
        const char *name;
        char c;
    } pre[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
    for (size_t i = 0; i < 5; i++)
        if (strlen(pre[i].name) == n && memcmp(pre[i].name, q, n) == 0) {
            out[0] = pre[i].c;
            *on = 1;
            return len;
        }
    if (n < 2 || q[0] != '#')
        return SC_BAIL;
    unsigned long v = 0;
    if (q[1] == 'x') {
        if (n < 3)
            return SC_BAIL;
        for (const char *d = q + 2; d < semi; d++) {
            int h = *d >= '0' && *d <= '9' ? *d - '0'
                    : *d >= 'a' && *d <= 'f' ? *d - 'a' + 10
                    : *d >= 'A' && *d <= 'F' ? *d - 'A' + 10 : -1;
            if (h < 0)
                return SC_BAIL;
            v = v * 16 + (unsigned long)h;
        }
    } else {
        for (const char *d = q + 1; d < semi; d++) {
            if (*d < '0' || *d > '9')
                return SC_BAIL;
            v = v * 10 + (unsigned long)(*d - '0');
        }
    }
    /* tab and newline, and the characters from space up; CR (which a
     * reference keeps but a literal would lose) is left to libxml2 */
    if (!(v == 0x9 || v == 0xa || (v >= 0x20 && v <= 0xd7ff) || (v >= 0xe000 && v <= 0xfffd) ||
          (v >= 0x10000 && v <= 0x10ffff)))
        return SC_BAIL;
    unsigned char *o = (unsigned char *)out;
    if (v < 0x80) {
        o[0] = (unsigned char)v;
        *on = 1;
    } else if (v < 0x800) {
        o[0] = (unsigned char)(0xc0 | (v >> 6));
        o[1] = (unsigned char)(0x80 | (v & 0x3f));
        *on = 2;
    } else if (v < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (v >> 12));
        o[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (v & 0x3f));
        *on = 3;
    } else {
        o[0] = (unsigned char)(0xf0 | (v >> 18));
        o[1] = (unsigned char)(0x80 | ((v >> 12) & 0x3f));
        o[2] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
        o[3] = (unsigned char)(0x80 | (v & 0x3f));
        *on = 4;
    }
    return len;
}

/* A qualified name at p: its length (and *plen, the prefix's, 0 for none),
 * 0 when cut by the end of the data, SC_BAIL when it is not an ASCII
 * NCName or NCName:NCName. The byte after it must be there to be sure. */
static int sc_qname(const char *p, const char *end, int *plen)
{
    const unsigned char *q = (const unsigned char *)p, *e = (const unsigned char *)end;
    *plen = 0;
    if (q >= e)
        return 0;
    if (sc_name[*q] != 1)
        return SC_BAIL;
    q++;
    for (;;) {
        while (q < e && sc_name[*q])
            q++;
        if (q >= e)
            return 0;
        if (*q != ':')
            break;
        if (*plen) /* a second colon */
            return SC_BAIL;
        *plen = (int)(q - (const unsigned char *)p);
        q++;
        if (q >= e)
            return 0;
        if (sc_name[*q] != 1)
            return SC_BAIL;
    }
    int n = (int)(q - (const unsigned char *)p);
    return n > SC_MAX_NAME ? SC_BAIL : n;
}

static int sc_is_s_uri(const char *v, size_t n)
{
    return SH_IS(v, n, "http://schemas.openxmlformats.org/spreadsheetml/2006/main") ||
           SH_IS(v, n, "http://purl.oclc.org/ooxml/spreadsheetml/main");
}

/* The binding of prefix p[0..n): its index, or -1. */
static int sc_lookup(const sc_scan *s, const char *p, int n)
{
    for (int i = s->nbind - 1; i >= 0; i--)
        if (s->bind[i].plen == n && memcmp(s->bind[i].prefix, p, (size_t)n) == 0)
            return i;
    return -1;
}

typedef struct {
    const char *name, *val;
    int nlen, plen;
    size_t vlen;
    int amp, ws; /* the value holds a reference / a tab, newline or CR */
} sc_att;

/* A start tag at p ('<' and a name start): its length, 0 when cut by the
 * end of the data, SC_BAIL or SC_STOP. */
static long sc_start_tag(sc_scan *s, const char *p, const char *end)
{
    if (s->phase == SC_POST)
        return SC_BAIL; /* a second root element */
    const char *q = p + 1;
    int plen;
    int nlen = sc_qname(q, end, &plen);
    if (nlen <= 0)
        return nlen;
    const char *name = q;
    q += nlen;
    sc_att at[SC_MAX_ATTS];
    int na = 0, empty;
    for (;;) {
        if (q >= end)
            return 0;
        unsigned char c = (unsigned char)*q;
        if (c == '>') {
            q++;
            empty = 0;
            break;
        }
        if (c == '/') {
            if (q + 1 >= end)
                return 0;
            if (q[1] != '>')
                return SC_BAIL;
            q += 2;
            empty = 1;
            break;
        }
        if (!sc_ws(c))
            return SC_BAIL; /* attributes must be separated by space */
        while (q < end && sc_ws((unsigned char)*q))
            q++;
        if (q >= end)
            return 0;
        if (*q == '>' || *q == '/')
            continue;
        if (na == SC_MAX_ATTS)
            return SC_BAIL;
        sc_att *a = &at[na];
        a->name = q;
        a->nlen = sc_qname(q, end, &a->plen);
        if (a->nlen <= 0)
            return a->nlen;
        q += a->nlen;
        while (q < end && sc_ws((unsigned char)*q))
            q++;
        if (q >= end)
            return 0;
        if (*q != '=')
            return SC_BAIL;
        q++;
        while (q < end && sc_ws((unsigned char)*q))
            q++;
        if (q >= end)
            return 0;
        char quote = *q;
        if (quote != '"' && quote != '\'')
            return SC_BAIL;
        q++;
        a->val = q;
        a->amp = a->ws = 0;
        for (;;) {
            while (q < end && sc_val_plain[(unsigned char)*q])
                q++;
            if (q >= end)
                return 0;
            unsigned char v = (unsigned char)*q;
            if (v == (unsigned char)quote)
                break;
            if (v == '"' || v == '\'') {
                q++;
            } else if (v == '&') {
                char tmp[4];
                int on, k = sc_ref(q, end, tmp, &on);
                if (k <= 0)
                    return k;
                q += k;
                a->amp = 1;
            } else if (v == '\t' || v == '\n' || v == '\r') {
                q++;
                a->ws = 1;
            } else if (v >= 0x80) {
                int k = sc_utf8((const unsigned char *)q, (const unsigned char *)end);
                if (k <= 0)
                    return k;
                q += k;
            } else {
                return SC_BAIL; /* '<' or a control character */
            }
        }
        a->vlen = (size_t)(q - a->val);
        if (a->vlen > SC_MAX_VALUE)
            return SC_BAIL;
        q++; /* the closing quote */
        na++;
    }

    /* the whole tag is here: namespace declarations first, they apply to
     * the element itself */
    if (s->depth == SC_MAX_DEPTH || s->names_len + (size_t)nlen > SC_NAMES)
        return SC_BAIL;
    int nbind = s->nbind;
    int def_s = s->depth ? s->open[s->depth - 1].def_s : 0;
    for (int i = 0; i < na; i++) {
        sc_att *a = &at[i];
        for (int j = 0; j < i; j++) {
            if (at[j].nlen == a->nlen && memcmp(at[j].name, a->name, (size_t)a->nlen) == 0)
                return SC_BAIL; /* redefined */
            /* two prefixes may name one namespace: same local name, bail */
            if (a->plen && at[j].plen && at[j].nlen - at[j].plen == a->nlen - a->plen &&
                memcmp(at[j].name + at[j].plen, a->name + a->plen, (size_t)(a->nlen - a->plen)) == 0)
                return SC_BAIL;
        }
        if (SH_IS(a->name, (size_t)a->nlen, "xmlns")) {
            if (a->amp)
                return SC_BAIL;
            def_s = sc_is_s_uri(a->val, a->vlen);
        } else if (a->plen == 5 && memcmp(a->name, "xmlns", 5) == 0) {
            const char *pf = a->name + 6;
            int pl = a->nlen - 6;
            if (a->amp || a->vlen == 0 || pl >= SC_MAX_PREFIX || s->nbind == SC_MAX_BIND ||
                (pl >= 3 && (pf[0] | 0x20) == 'x' && (pf[1] | 0x20) == 'm' && (pf[2] | 0x20) == 'l'))
                return SC_BAIL; /* xml*, empty, or more than we keep */
            sc_bind *b = &s->bind[s->nbind++];
            memcpy(b->prefix, pf, (size_t)pl);
            b->plen = (unsigned char)pl;
            b->is_s = (unsigned char)sc_is_s_uri(a->val, a->vlen);
        }
    }
    int is_s = def_s;
    if (plen) {
        int k = sc_lookup(s, name, plen);
        if (k < 0) {
            s->nbind = nbind;
            return SC_BAIL; /* unbound, or xml/xmlns on an element */
        }
        is_s = s->bind[k].is_s;
    }
    const char *local = plen ? name + plen + 1 : name;
    size_t ll = plen ? (size_t)(nlen - plen - 1) : (size_t)nlen;
    const char *t = NULL;
    size_t tl = 0;
    int is_c = is_s && ll == 1 && local[0] == 'c';
    for (int i = 0; i < na; i++) {
        sc_att *a = &at[i];
        if (a->plen && !(a->plen == 5 && memcmp(a->name, "xmlns", 5) == 0) &&
            !(a->plen == 3 && memcmp(a->name, "xml", 3) == 0) && sc_lookup(s, a->name, a->plen) < 0) {
            s->nbind = nbind;
            return SC_BAIL; /* an unbound prefix */
        }
        if (!is_c)
            continue;
        if (a->plen && SH_IS(a->name + a->plen + 1, (size_t)(a->nlen - a->plen - 1), "t")) {
            s->nbind = nbind;
            return SC_BAIL; /* a namespaced t: leave the lookup to libxml2 */
        }
        if (!a->plen && a->nlen == 1 && a->name[0] == 't') {
            if (a->amp || a->ws) {
                s->nbind = nbind;
                return SC_BAIL; /* its value would need decoding */
            }
            t = a->val;
            tl = a->vlen;
        }
    }

    sc_frame *f = &s->open[s->depth++];
    f->off = (unsigned short)s->names_len;
    f->len = (unsigned short)nlen;
    f->nbind = (unsigned char)nbind;
    f->def_s = (unsigned char)def_s;
    f->is_s = (unsigned char)is_s;
    memcpy(s->names + s->names_len, name, (size_t)nlen);
    s->names_len += (size_t)nlen;
    s->phase = SC_ROOT;
    if (is_s) {
        sh_open(s->sh, local, ll, t, tl);
        if (s->sh->stop)
            return SC_STOP;
    }
    if (empty) {
        s->depth--;
        s->names_len = f->off;
        s->nbind = f->nbind;
        if (is_s) {
            sh_close(s->sh, local, ll);
            if (s->sh->stop)
                return SC_STOP;
        }
        if (s->depth == 0)
            s->phase = SC_POST;
    }
    return q - p;
}

/* An end tag at p ("</"). */
static long sc_end_tag(sc_scan *s, const char *p, const char *end)
{
    const char *q = p + 2;
    int plen;
    int nlen = sc_qname(q, end, &plen);
    if (nlen <= 0)
        return nlen;
    if (s->depth == 0)
        return SC_BAIL;
    sc_frame *f = &s->open[s->depth - 1];
    if (f->len != nlen || memcmp(s->names + f->off, q, (size_t)nlen) != 0)
        return SC_BAIL; /* mismatched */
    const char *name = q;
    q += nlen;
    while (q < end && sc_ws((unsigned char)*q))
        q++;
    if (q >= end)
        return 0;
    if (*q != '>')
        return SC_BAIL;
    q++;
    s->depth--;
    s->names_len = f->off;
    s->nbind = f->nbind;
    if (f->is_s) {
        const char *local = plen ? name + plen + 1 : name;
        sh_close(s->sh, local, plen ? (size_t)(nlen - plen - 1) : (size_t)nlen);
        if (s->sh->stop)
            return SC_STOP;
    }
    if (s->depth == 0)
        s->phase = SC_POST;
    return q - p;
}

/* Case-insensitive "utf-8". */
static int sc_is_utf8(const char *v, size_t n)
{
    return n == 5 && (v[0] | 0x20) == 'u' && (v[1] | 0x20) == 't' && (v[2] | 0x20) == 'f' &&
           v[3] == '-' && v[4] == '8';
}

/* The XML declaration at byte 0 ("<?xml"): its length, 0 when cut,
 * SC_BAIL for anything but version 1.0, UTF-8 and standalone yes/no. */
static long sc_decl(const char *p, const char *end)
{
    const char *e = NULL;
    for (const char *r = p + 5; r + 1 < end && r - p < 256; r++)
        if (r[0] == '?' && r[1] == '>') {
            e = r;
            break;
        }
    if (!e)
        return end - p < 256 ? 0 : SC_BAIL;
    const char *q = p + 5;
    int seen = 0; /* 1 version, 2 encoding, 3 standalone: in that order */
    for (;;) {
        if (q == e)
            break;
        if (!sc_ws((unsigned char)*q))
            return SC_BAIL;
        while (q < e && sc_ws((unsigned char)*q))
            q++;
        if (q == e)
            break;
        const char *k = q;
        while (q < e && *q >= 'a' && *q <= 'z')
            q++;
        size_t kl = (size_t)(q - k);
        int which = SH_IS(k, kl, "version") ? 1 : SH_IS(k, kl, "encoding") ? 2
                    : SH_IS(k, kl, "standalone") ? 3 : 0;
        if (which <= seen || (which > 1 && seen == 0))
            return SC_BAIL;
        seen = which;
        while (q < e && sc_ws((unsigned char)*q))
            q++;
        if (q == e || *q != '=')
            return SC_BAIL;
        q++;
        while (q < e && sc_ws((unsigned char)*q))
            q++;
        if (q == e || (*q != '"' && *q != '\''))
            return SC_BAIL;
        char quote = *q++;
        const char *v = q;
        while (q < e && *q != quote)
            q++;
        if (q == e)
            return SC_BAIL;
        size_t vl = (size_t)(q - v);
        q++;
        if ((which == 1 && !SH_IS(v, vl, "1.0")) || (which == 2 && !sc_is_utf8(v, vl)) ||
            (which == 3 && !SH_IS(v, vl, "yes") && !SH_IS(v, vl, "no")))
            return SC_BAIL;
    }
    return seen ? e + 2 - p : SC_BAIL;
}

/* Scans buf[0..len) as far as whole tokens go. Returns the bytes consumed
 * (the rest waits for more data), SC_BAIL or SC_STOP. */
static long sc_tokens(sc_scan *s, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        if (*p == '<') {
            if (end - p < 2)
                break;
            long k;
            if (p[1] == '/') {
                k = sc_end_tag(s, p, end);
            } else if (p[1] == '?') {
                if (s->started)
                    return SC_BAIL; /* a processing instruction */
                if (end - p < 6)
                    break;
                if (memcmp(p, "<?xml", 5) != 0 || !sc_ws((unsigned char)p[5]))
                    return SC_BAIL;
                k = sc_decl(p, end);
            } else if (p[1] == '!') {
                return SC_BAIL; /* comment, CDATA, DOCTYPE */
            } else {
                k = sc_start_tag(s, p, end);
            }
            if (k < 0)
                return k;
            if (k == 0)
                break;
            p += k;
            s->started = 1;
            continue;
        }
        if (s->phase != SC_ROOT) {
            /* around the root element only white space; CR is fine here,
             * libxml2 reports none of it */
            if (!sc_ws((unsigned char)*p))
                return SC_BAIL;
            p++;
            s->started = 1;
            continue;
        }
        /* character data, reported in runs; a reference or a byte that may
         * need more data ends a run */
        const unsigned char *q = (const unsigned char *)p, *e = (const unsigned char *)end;
        const unsigned char *run = q;
        int need = 0;
        for (;;) {
            while (q < e && sc_text_plain[*q])
                q++;
            if (q >= e || *q == '<' || *q == '&') {
                if (q > run) {
                    sh_text(s->sh, (const char *)run, (size_t)(q - run));
                    if (s->sh->stop)
                        return SC_STOP;
                }
                if (q >= e || *q == '<')
                    break;
                char out[4];
                int on, k = sc_ref((const char *)q, end, out, &on);
                if (k < 0)
                    return k;
                if (k == 0) {
                    need = 1;
                    break;
                }
                sh_text(s->sh, out, (size_t)on);
                if (s->sh->stop)
                    return SC_STOP;
                q += k;
                run = q;
                continue;
            }
            int k;
            if (*q == ']') {
                k = e - q < 3 ? 0 : (q[1] == ']' && q[2] == '>') ? SC_BAIL : 1;
            } else if (*q >= 0x80) {
                k = sc_utf8(q, e);
            } else {
                return SC_BAIL; /* CR (libxml2 normalizes it) or a control */
            }
            if (k < 0)
                return k;
            if (k == 0) {
                if (q > run) {
                    sh_text(s->sh, (const char *)run, (size_t)(q - run));
                    if (s->sh->stop)
                        return SC_STOP;
                }
                need = 1;
                break;
            }
            q += k;
        }
        p = (const char *)q;
        s->started = 1;
        if (need)
            break;
    }
    return p - buf;
}

static int sc_carry(sc_scan *s, const char *p, size_t n)
{
    if (s->clen + n > s->ccap) {
        size_t cap = s->ccap ? s->ccap : 4096;
        while (cap < s->clen + n)
            cap *= 2;
        char *c = realloc(s->carry, cap);
        if (!c)
            return -1;
        s->carry = c;
        s->ccap = cap;
    }
    memcpy(s->carry + s->clen, p, n);
    s->clen += n;
    return 0;
}

/* Scans the next piece of the part. Returns 0 to go on, SL_SHEET_BAILED,
 * or why the handlers stopped. What a token cut by the end of the piece
 * left over waits in the carry buffer. */
static int sc_feed(sc_scan *s, const char *chunk, size_t n, int final)
{
    const char *p = chunk;
    size_t len = n;
    if (s->clen) {
        if (sc_carry(s, chunk, n))
            return SL_ZIP_NOMEM;
        p = s->carry;
        len = s->clen;
    }
    long used = sc_tokens(s, p, len);
    if (used == SC_BAIL)
        return SL_SHEET_BAILED;
    if (used == SC_STOP)
        return s->sh->stop;
    size_t rest = len - (size_t)used;
    if (rest && (final || rest > SC_MAX_CARRY))
        return SL_SHEET_BAILED;
    if (p == s->carry) {
        memmove(s->carry, s->carry + used, rest);
        s->clen = rest;
    } else if (rest && sc_carry(s, p + used, rest)) {
        return SL_ZIP_NOMEM;
    }
    if (final && s->phase != SC_POST)
        return SL_SHEET_BAILED; /* empty, or the root is not closed */
    return 0;
}

static int sc_sink(void *ud, const char *chunk, size_t n)
{
    return sc_feed(ud, chunk, n, 0);
}

static pthread_once_t sc_once = PTHREAD_ONCE_INIT;

/* Reads the part from z, or else buf[0..len) in pieces of `chunk` bytes. */
static int sh_fast(sh_sheet *sh, sl_zip *z, const char *part, const char *buf, size_t len,
                   size_t chunk)
{
    pthread_once(&sc_once, sc_tables);
    sc_scan *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ZIP_NOMEM;
    s->sh = sh;
    int rc = SL_ZIP_OK;
    if (z) {
        rc = sl_zip_stream(z, part, sc_sink, s);
    } else {
        if (!chunk)
            chunk = len ? len : 1;
        for (size_t off = 0; off < len && rc == SL_ZIP_OK; off += chunk)
            rc = sc_feed(s, buf + off, len - off < chunk ? len - off : chunk, 0);
    }
    if (rc == SL_ZIP_OK)
        rc = sc_feed(s, "", 0, 1);
    free(s->carry);
    free(s);
    return rc;
}

/* ---- the driver ------------------------------------------------------------ */

static _Thread_local int sl_sheet_mode;

void sl_sheet_set_mode(int mode)
{
    sl_sheet_mode = mode;
}

static int sh_read(sl_zip *z, const char *part, const char *buf, size_t len, size_t chunk,
                   const sl_sheet_sst *sst, int mode, sl_extract_result *out)
{
    sh_sheet sh = {.out = out, .sst = sst};
    int rc;
    if (mode == SL_SHEET_LIBXML) {
        rc = sh_libxml(&sh, z, part, buf, len);
    } else {
        /* what a bail must take back: the text so far, and its last byte,
         * which a newline may have turned from a space into the newline */
        size_t mark = out->len, nchars = out->nchars, total = z ? sl_zip_total(z) : 0;
        unsigned flags = out->flags;
        char last = mark ? out->text[mark - 1] : 0;
        rc = sh_fast(&sh, z, part, buf, len, chunk);
        /* a bail, and any error but the handlers' own, is libxml2's to
         * decide: it may see a broken token the scanner still waited on */
        if (mode == SL_SHEET_AUTO && rc != SL_ZIP_OK && rc != SL_ZIP_STOPPED &&
            rc != SL_ZIP_NOMEM) {
            if (mark)
                out->text[mark - 1] = last;
            if (out->text)
                out->text[mark] = '\0';
            out->len = mark;
            out->nchars = nchars;
            out->flags = flags;
            if (z)
                sl_zip_rewind(z, total);
            sh_sheet again = {.out = out, .sst = sst};
            free(sh.val);
            sh = again;
            rc = sh_libxml(&sh, z, part, buf, len);
        }
    }
    free(sh.val);
    if (rc == SL_ZIP_OK && sl_extract_newline(out))
        rc = SL_ZIP_STOPPED;
    return rc;
}

int sl_sheet_part(sl_zip *z, const char *part, const sl_sheet_sst *sst, sl_extract_result *out)
{
    return sh_read(z, part, NULL, 0, 0, sst, sl_sheet_mode, out);
}

int sl_sheet_buffer(const char *xml, size_t len, size_t chunk, const sl_sheet_sst *sst, int mode,
                    sl_extract_result *out)
{
    return sh_read(NULL, NULL, xml, len, chunk, sst, mode, out);
}
