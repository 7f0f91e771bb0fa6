/*
 * HTML and XHTML: the text a reader sees.
 *
 * libxml2's HTML parser forgives broken markup the way browsers do
 * (unclosed tags, stray entities) and decodes every entity. The charset
 * comes from a BOM, the caller, or the page's first "charset=" (<meta>);
 * when the document declares none and its bytes are not UTF-8, we guess
 * with uchardet rather than let the parser assume Latin-1, which is wrong
 * for most of the world's legacy pages. Pages that are not UTF-8 are
 * converted here (struct conv), and the parser is always fed UTF-8.
 *
 * It runs as a push parser with SAX callbacks that append text as it is
 * reported, fed in chunks: no tree is built, so a page costs its output and
 * a byte per open element, not the ten-plus times its size a DOM costs (an
 * 8 MB page took 110 MB as a tree). The callbacks skip what a browser does
 * not render as text (script, style, the head, templates, inline SVG), keep
 * <title> as the title, break lines at block elements and keep <pre> as
 * laid out.
 */
#include "extract/extract.h"

#include <errno.h>
#include <iconv.h>
#include <libxml/HTMLparser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>

/* forget_lookup() and the pinned input encoding below reach into the push
 * parser's state as libxml2 2.9/2.10 keep it (checkIndex, inSubset as the
 * quote flag, input->encoding); 2.11 moved both. Refuse to build there
 * rather than misparse: port those two places first. */
#if LIBXML_VERSION >= 21100
#error "html.c relies on libxml2 < 2.11 push-parser internals: port forget_lookup() and the encoding pin"
#endif
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uchardet/uchardet.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_libxml(void)
{
    xmlInitParser();
}

static void quiet_generic(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

/* Initialises libxml2 once, before any thread parses, and silences the
 * calling thread's generic error handler: errors that come with no parser
 * context (a charset converter meeting bad bytes: "encoding error : input
 * conversion failed") go there, and by default to stderr, whatever the
 * parser's own options say. libxml2 keeps that handler per thread. */
void sl_extract_init_libxml(void)
{
    static _Thread_local int quiet;
    pthread_once(&init_once, init_libxml);
    if (!quiet) {
        xmlSetGenericErrorFunc(NULL, quiet_generic);
        quiet = 1;
    }
}

enum { EL_INLINE, EL_BLOCK, EL_SKIP, EL_CELL, EL_PRE, EL_HEAD, EL_TITLE };

/* Element classes, sorted by name for bsearch. libxml2's HTML parser
 * lowercases names, so strcmp suffices (this lookup runs per element). */
static const struct el_class {
    const char *name;
    int cls;
} classes[] = {
    {"address", EL_BLOCK}, {"article", EL_BLOCK}, {"aside", EL_BLOCK},
    {"blockquote", EL_BLOCK}, {"body", EL_BLOCK}, {"br", EL_BLOCK},
    {"button", EL_SKIP}, {"canvas", EL_SKIP}, {"caption", EL_BLOCK},
    {"center", EL_BLOCK}, {"dd", EL_BLOCK}, {"details", EL_BLOCK},
    {"div", EL_BLOCK}, {"dl", EL_BLOCK}, {"dt", EL_BLOCK}, {"embed", EL_SKIP},
    {"fieldset", EL_BLOCK}, {"figcaption", EL_BLOCK}, {"figure", EL_BLOCK},
    {"footer", EL_BLOCK}, {"form", EL_BLOCK}, {"h1", EL_BLOCK}, {"h2", EL_BLOCK},
    {"h3", EL_BLOCK}, {"h4", EL_BLOCK}, {"h5", EL_BLOCK}, {"h6", EL_BLOCK},
    {"head", EL_HEAD}, {"header", EL_BLOCK}, {"hr", EL_BLOCK},
    {"html", EL_BLOCK}, {"iframe", EL_SKIP}, {"label", EL_BLOCK},
    {"legend", EL_BLOCK}, {"li", EL_BLOCK}, {"main", EL_BLOCK},
    {"math", EL_SKIP}, {"nav", EL_BLOCK}, {"noscript", EL_SKIP},
    {"object", EL_SKIP}, {"ol", EL_BLOCK}, {"option", EL_BLOCK},
    {"p", EL_BLOCK}, {"pre", EL_PRE}, {"script", EL_SKIP},
    {"section", EL_BLOCK}, {"select", EL_SKIP}, {"style", EL_SKIP},
    {"summary", EL_BLOCK}, {"svg", EL_SKIP}, {"table", EL_BLOCK},
    {"tbody", EL_BLOCK}, {"td", EL_CELL}, {"template", EL_SKIP},
    {"textarea", EL_BLOCK}, {"tfoot", EL_BLOCK}, {"th", EL_CELL},
    {"thead", EL_BLOCK}, {"title", EL_TITLE}, {"tr", EL_BLOCK},
    {"ul", EL_BLOCK},
};

static int cmp_class(const void *key, const void *el)
{
    return strcmp(key, ((const struct el_class *)el)->name);
}

static int el_class(const xmlChar *name)
{
    if (!name)
        return EL_INLINE;
    const struct el_class *c = bsearch(name, classes, sizeof classes / sizeof classes[0],
                                       sizeof classes[0], cmp_class);
    return c ? c->cls : EL_INLINE;
}

static int ends_line(int cls)
{
    return cls == EL_BLOCK || cls == EL_PRE;
}

/* What the text inside an open element becomes. */
enum {
    M_BODY,   /* visible text, whitespace collapsed */
    M_PRE,    /* visible text, kept as laid out */
    M_HIDDEN, /* not rendered: script, style, svg..., or after the root */
    M_HEAD,   /* not rendered, but <title> and <meta> count */
    M_TITLE   /* collected into the title */
};

/* A title longer than this is not a title; the rest is dropped. */
#define TITLE_MAX 4096

/* SAX state. The parser reports elements as balanced start/end pairs (it
 * closes what the markup leaves open), so one byte per open element is the
 * whole tree we keep: memory grows with nesting depth, not document size. */
typedef struct html_sax {
    sl_extract_result *out;
    const sl_extract_limits *lim;
    htmlParserCtxtPtr ctxt;
    unsigned char *modes; /* the mode of each open element */
    size_t depth, cap;
    int root_done;        /* the root element closed: the rest is dropped */
    int failed;           /* out of memory or timeout (err set) */
    unsigned long events; /* for polling the deadline */
    char title[TITLE_MAX];
    size_t title_len;
} html_sax;

static void stop(html_sax *h)
{
    xmlStopParser(h->ctxt);
}

/* Polls the deadline every few thousand callbacks: one parse chunk of
 * pathological markup must not outrun the time limit. */
static int tick(html_sax *h)
{
    if ((++h->events & 4095) == 0 && sl_extract_expired(h->lim)) {
        sl_extract_error(h->out, "timeout");
        h->failed = 1;
        stop(h);
        return 1;
    }
    return 0;
}

static int push_mode(html_sax *h, unsigned char m)
{
    if (h->depth == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        unsigned char *p = realloc(h->modes, cap);
        if (!p) {
            sl_extract_error(h->out, "out of memory");
            h->failed = 1;
            stop(h);
            return -1;
        }
        h->modes = p;
        h->cap = cap;
    }
    h->modes[h->depth++] = m;
    return 0;
}

static void title_append(html_sax *h, const char *s, size_t n)
{
    size_t room = TITLE_MAX - 1 - h->title_len;
    if (n > room) {
        n = room;
        while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* cut before a character, not inside one */
    }
    memcpy(h->title + h->title_len, s, n);
    h->title_len += n;
}

static const char *attr(const xmlChar **atts, const char *name)
{
    for (; atts && atts[0]; atts += 2) /* the parser lowercases names */
        if (strcmp((const char *)atts[0], name) == 0)
            return atts[1] ? (const char *)atts[1] : "";
    return NULL;
}

/* <meta name=author|dates content=...>, in the head. */
static void read_meta(sl_extract_result *out, const xmlChar **atts)
{
    const char *nm = attr(atts, "name"), *content = attr(atts, "content");
    if (!nm || !content)
        return;
    size_t cl = strlen(content);
    if (strcasecmp(nm, "author") == 0 || strcasecmp(nm, "dc.creator") == 0)
        sl_extract_meta(&out->author, content, cl);
    else if (strcasecmp(nm, "dcterms.created") == 0 ||
             strcasecmp(nm, "dc.date.created") == 0 || strcasecmp(nm, "date") == 0)
        sl_extract_meta(&out->created, content, cl);
    else if (strcasecmp(nm, "dcterms.modified") == 0 ||
             strcasecmp(nm, "last-modified") == 0)
        sl_extract_meta(&out->modified, content, cl);
}

static void on_start(void *ud, const xmlChar *name, const xmlChar **atts)
{
    html_sax *h = ud;
    if (h->failed || tick(h))
        return;
    int parent = h->depth ? h->modes[h->depth - 1] : h->root_done ? M_HIDDEN : M_BODY;
    if (parent == M_HIDDEN || parent == M_TITLE) {
        push_mode(h, (unsigned char)parent);
        return;
    }
    int cls = el_class(name);
    unsigned char m;
    if (cls == EL_SKIP) {
        m = M_HIDDEN;
    } else if (cls == EL_TITLE) {
        m = M_TITLE; /* in the head, or a stray one in the body */
        h->title_len = 0;
    } else if (parent == M_HEAD || cls == EL_HEAD) {
        m = M_HEAD;
        if (parent == M_HEAD && strcmp((const char *)name, "meta") == 0)
            read_meta(h->out, atts);
    } else {
        if (ends_line(cls))
            sl_extract_newline(h->out);
        else if (cls == EL_CELL)
            sl_extract_space(h->out);
        m = cls == EL_PRE || parent == M_PRE ? M_PRE : M_BODY;
    }
    push_mode(h, m);
    if (sl_extract_full(h->out))
        stop(h); /* the text is full: the rest of the document is moot */
}

static void on_end(void *ud, const xmlChar *name)
{
    html_sax *h = ud;
    if (h->failed || h->depth == 0)
        return;
    int m = h->modes[--h->depth];
    if (h->depth == 0)
        h->root_done = 1;
    int parent = h->depth ? h->modes[h->depth - 1] : M_HIDDEN;
    if (m == M_TITLE && parent != M_TITLE) {
        sl_extract_meta(&h->out->title, h->title, h->title_len);
    } else if ((m == M_BODY || m == M_PRE) && ends_line(el_class(name))) {
        if (sl_extract_newline(h->out))
            stop(h);
    }
}

static void on_text(void *ud, const xmlChar *s, int len)
{
    html_sax *h = ud;
    if (h->failed || h->depth == 0 || len <= 0)
        return;
    int m = h->modes[h->depth - 1];
    int full = 0;
    if (m == M_BODY)
        full = sl_extract_append_collapsed(h->out, (const char *)s, (size_t)len);
    else if (m == M_PRE)
        full = sl_extract_append(h->out, (const char *)s, (size_t)len);
    else if (m == M_TITLE)
        title_append(h, (const char *)s, (size_t)len);
    if (full)
        stop(h);
}

/* "charset=" in the first bytes: the document names its encoding. */
static int declares_charset(const char *buf, size_t len)
{
    size_t n = len < 4096 ? len : 4096;
    for (size_t i = 0; i + 8 <= n; i++)
        if ((buf[i] == 'c' || buf[i] == 'C') && strncasecmp(buf + i, "charset", 7) == 0)
            return 1;
    return 0;
}

/* The name after the first "charset=" in the first bytes (a <meta charset>
 * or a Content-Type's parameter), into name; 0 when none is readable. */
static int declared_charset(const char *buf, size_t len, char *name, size_t size)
{
    size_t n = len < 4096 ? len : 4096;
    for (size_t i = 0; i + 8 <= n; i++) {
        if ((buf[i] != 'c' && buf[i] != 'C') || strncasecmp(buf + i, "charset", 7) != 0)
            continue;
        size_t k = i + 7;
        while (k < n && (buf[k] == ' ' || buf[k] == '\t'))
            k++;
        if (k >= n || buf[k] != '=')
            continue;
        k++;
        while (k < n && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '"' || buf[k] == '\''))
            k++;
        size_t m = 0;
        while (k < n && m + 1 < size &&
               ((buf[k] >= 'a' && buf[k] <= 'z') || (buf[k] >= 'A' && buf[k] <= 'Z') ||
                (buf[k] >= '0' && buf[k] <= '9') || buf[k] == '-' || buf[k] == '_' ||
                buf[k] == '.' || buf[k] == ':'))
            name[m++] = buf[k++];
        name[m] = '\0';
        if (m > 0)
            return 1;
    }
    return 0;
}

static int valid_utf8_prefix(const char *buf, size_t len)
{
    /* libxml2 validates as it parses; a cheap look at the start is enough
     * to choose between UTF-8 and a guess */
    const unsigned char *s = (const unsigned char *)buf;
    size_t n = len < 65536 ? len : 65536;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t need = s[i] >= 0xf0 ? 3 : s[i] >= 0xe0 ? 2 : s[i] >= 0xc2 ? 1 : 9;
        if (need == 9 || s[i] > 0xf4)
            return 0;
        if (i + need >= n)
            return 1; /* cut at the sample's end */
        for (size_t k = 1; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* Bytes handed to the parser at a time: large enough that the per-call
 * overhead vanishes, small enough that libxml2's input buffer stays small
 * (it discards what it has parsed). */
#define CHUNK (256u << 10)

/* libxml2 2.9's HTML push parser remembers how far it has looked for the
 * end of a tag (checkIndex, an offset from the buffer's start) across
 * chunks, but the buffer drops parsed bytes under it, so after some chunk
 * boundaries the offset points past the '>' it wants: it never finds it
 * and buffers the rest of the document (all of a 20 MB page) until the
 * last chunk. Forgetting the offset makes the next look start again at the
 * parse point, which is always correct; it costs a rescan of the unparsed
 * tail, so only while that tail is short (a huge comment spanning chunks
 * keeps its offset and stays linear) or when the look stopped inside a
 * quoted value (inSubset & 2): it keeps that state but not which quote
 * opened it, so no quote would ever close the value. */
static void forget_lookup(htmlParserCtxtPtr ctxt)
{
    xmlParserInputPtr in = ctxt->input;
    if (in && (in->end - in->cur < 65536 || (ctxt->inSubset & 2)))
        ctxt->checkIndex = 0;
}

/* A charset other than UTF-8 is converted here, not by libxml2: its
 * converter stops the parse at the first byte the charset does not allow
 * (a page with one bad byte lost all its text), where ours writes U+FFFD
 * for it and goes on, as text.c does for plain text. */
#define SEQ_MAX 16 /* more than any charset's incomplete sequence */

typedef struct conv {
    iconv_t cd;
    char *in;       /* staged: an incomplete sequence, then up to CHUNK bytes */
    size_t n;
    char *out;
    size_t cap;
} conv;

struct sl_html_stream {
    html_sax h;
    size_t skip;  /* BOM bytes still to drop from the front */
    int stopped;  /* full text, timeout or no memory: no more input */
    conv *cv;     /* NULL: UTF-8, or libxml2 converts */
};

/* Starts a parse; enc (may be NULL: from the document) overrides any
 * <meta> charset, as a transport's would. NULL (err set) without memory. */
static sl_html_stream *stream_new(const char *enc, size_t skip, const sl_extract_limits *lim,
                                  sl_extract_result *out)
{
    htmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.startElement = on_start;
    sax.endElement = on_end;
    sax.characters = on_text;
    sax.cdataBlock = on_text; /* script and style bodies: hidden anyway */
    sl_html_stream *st = calloc(1, sizeof *st);
    if (!st) {
        sl_extract_error(out, "out of memory");
        return NULL;
    }
    html_sax *h = &st->h;
    st->skip = skip;
    h->out = out;
    h->lim = lim;
    htmlParserCtxtPtr ctxt =
        htmlCreatePushParserCtxt(&sax, h, NULL, 0, NULL, XML_CHAR_ENCODING_NONE);
    if (!ctxt) {
        free(st);
        sl_extract_error(out, "out of memory");
        return NULL;
    }
    h->ctxt = ctxt;
    htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NONET |
                                 HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING);
    if (enc && strcasecmp(enc, "UTF-8") != 0 && strcasecmp(enc, "UTF8") != 0) {
        iconv_t cd = iconv_open("UTF-8", enc);
        if (cd != (iconv_t)-1) {
            st->cv = calloc(1, sizeof *st->cv);
            if (!st->cv) {
                iconv_close(cd);
            } else {
                st->cv->cd = cd;
                enc = "UTF-8"; /* what the parser is fed */
            }
        }
    }
    if (enc) {
        /* one libxml2 cannot load: let the document decide */
        xmlCharEncodingHandlerPtr hd = xmlFindCharEncodingHandler(enc);
        if (hd && xmlSwitchToEncoding(ctxt, hd) == 0) {
            /* marks the encoding as settled, so a <meta> cannot switch it */
            xmlFree((xmlChar *)ctxt->input->encoding);
            ctxt->input->encoding = xmlStrdup((const xmlChar *)enc);
        }
    }
    return st;
}

/* Hands n bytes of UTF-8 to the parser, CHUNK at a time. */
static void parse_utf8(sl_html_stream *st, const char *buf, size_t len)
{
    htmlParserCtxtPtr ctxt = st->h.ctxt;
    while (len > 0 && !st->stopped) {
        size_t n = len < CHUNK ? len : CHUNK;
        htmlParseChunk(ctxt, buf, (int)n, 0);
        buf += n;
        len -= n;
        forget_lookup(ctxt);
        if (st->h.failed || ctxt->instate == XML_PARSER_EOF)
            st->stopped = 1;
        else if (sl_extract_expired(st->h.lim)) {
            sl_extract_error(st->h.out, "timeout");
            st->stopped = 1;
        }
    }
}

static const char REPL[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Converts the staged bytes and parses them. An incomplete sequence at the
 * end stays staged for the next chunk, unless this is the end (final):
 * then, like a byte the charset does not allow, it becomes U+FFFD. */
static void convert_staged(sl_html_stream *st, int final)
{
    conv *cv = st->cv;
    char *in = cv->in;
    size_t inleft = cv->n;
    while (inleft > 0 && !st->stopped) {
        char *o = cv->out;
        size_t oleft = cv->cap;
        size_t r = iconv(cv->cd, &in, &inleft, &o, &oleft);
        int e = r == (size_t)-1 ? errno : 0;
        parse_utf8(st, cv->out, (size_t)(o - cv->out));
        if (e == 0 || e == E2BIG)
            continue;
        if (e == EINVAL && !final)
            break; /* the rest of a sequence is in the next chunk */
        parse_utf8(st, REPL, 3);
        if (e == EINVAL) {
            inleft = 0;
            break;
        }
        in++; /* the byte the charset does not allow */
        inleft--;
        iconv(cv->cd, NULL, NULL, NULL, NULL);
    }
    memmove(cv->in, in, inleft);
    cv->n = inleft;
}

/* Stages and converts buf, CHUNK bytes at a time. */
static void parse_converted(sl_html_stream *st, const char *buf, size_t len)
{
    conv *cv = st->cv;
    if (!cv->in) {
        cv->cap = 2 * CHUNK;
        cv->in = malloc(CHUNK + SEQ_MAX);
        cv->out = malloc(cv->cap);
        if (!cv->in || !cv->out) {
            sl_extract_error(st->h.out, "out of memory");
            st->stopped = 1;
            return;
        }
    }
    while (len > 0 && !st->stopped) {
        size_t take = len < CHUNK ? len : CHUNK;
        memcpy(cv->in + cv->n, buf, take); /* n <= an incomplete sequence */
        cv->n += take;
        buf += take;
        len -= take;
        convert_staged(st, 0);
    }
}

int sl_extract_html_feed(sl_html_stream *st, const char *buf, size_t len)
{
    if (st->skip) {
        size_t n = st->skip < len ? st->skip : len;
        st->skip -= n;
        buf += n;
        len -= n;
    }
    if (st->cv)
        parse_converted(st, buf, len);
    else
        parse_utf8(st, buf, len);
    return st->stopped;
}

int sl_extract_html_end(sl_html_stream *st)
{
    htmlParserCtxtPtr ctxt = st->h.ctxt;
    sl_extract_result *out = st->h.out;
    if (st->cv && !st->stopped && st->cv->n) /* ends inside a sequence */
        convert_staged(st, 1);
    if (!st->stopped)
        htmlParseChunk(ctxt, NULL, 0, 1); /* closes what is still open */
    if (!out->err[0] && ctxt->errNo == XML_ERR_NO_MEMORY)
        sl_extract_error(out, "out of memory");
    if (ctxt->myDoc)
        xmlFreeDoc(ctxt->myDoc);
    htmlFreeParserCtxt(ctxt);
    free(st->h.modes);
    if (st->cv) {
        iconv_close(st->cv->cd);
        free(st->cv->in);
        free(st->cv->out);
        free(st->cv);
    }
    free(st);
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

/* A byte order mark: the encoding it names and its length, else 0. */
static size_t bom(const char *buf, size_t len, const char **enc)
{
    const unsigned char *s = (const unsigned char *)buf;
    if (len >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        *enc = "UTF-8";
        return 3;
    }
    if (len >= 2 && s[0] == 0xff && s[1] == 0xfe) {
        *enc = "UTF-16LE";
        return 2;
    }
    if (len >= 2 && s[0] == 0xfe && s[1] == 0xff) {
        *enc = "UTF-16BE";
        return 2;
    }
    return 0;
}

sl_html_stream *sl_extract_html_begin(const char *head, size_t len, const char *charset,
                                      const sl_extract_limits *lim, sl_extract_result *out)
{
    char guess[64] = "", decl[64];
    const char *enc = charset && *charset ? charset : NULL;
    sl_extract_init_libxml();
    /* the push parser does not look for a BOM; a BOM outranks a declared
     * charset, as in browsers */
    const char *bom_enc;
    size_t skip = bom(head, len, &bom_enc);
    if (skip) {
        enc = bom_enc;
    } else if (!enc && declared_charset(head, len, decl, sizeof decl)) {
        enc = decl; /* read here so that our converter, not libxml2's, runs */
    } else if (!enc && !declares_charset(head, len)) {
        if (valid_utf8_prefix(head, len)) {
            enc = "UTF-8";
        } else {
            uchardet_t ud = uchardet_new();
            if (ud && uchardet_handle_data(ud, head, len < 65536 ? len : 65536) == 0) {
                uchardet_data_end(ud);
                const char *c = uchardet_get_charset(ud);
                if (c && *c && strcasecmp(c, "ASCII") != 0)
                    snprintf(guess, sizeof guess, "%s", c);
            }
            if (ud)
                uchardet_delete(ud);
            enc = guess[0] ? guess : "WINDOWS-1252";
        }
    }
    return stream_new(enc, skip, lim, out);
}

int sl_extract_html_cs(const char *buf, size_t len, const char *charset,
                       const sl_extract_limits *lim, sl_extract_result *out)
{
    sl_html_stream *st = sl_extract_html_begin(buf, len < SL_EXTRACT_HTML_HEAD ? len : SL_EXTRACT_HTML_HEAD,
                                               charset, lim, out);
    if (!st)
        return SL_EXTRACT_ERR;
    sl_extract_html_feed(st, buf, len);
    return sl_extract_html_end(st);
}

int sl_extract_html(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    return sl_extract_html_cs(buf, len, NULL, lim, out);
}
