/*
 * HTML and XHTML: the text a reader sees.
 *
 * libxml2's HTML parser builds the tree the way browsers forgive broken
 * markup (unclosed tags, stray entities), decodes every entity, and reads
 * the charset from a BOM or <meta>. When the document declares none and its
 * bytes are not UTF-8, we guess with uchardet rather than let the parser
 * assume Latin-1, which is wrong for most of the world's legacy pages.
 *
 * The walk skips what a browser does not render as text (script, style,
 * the head, templates, inline SVG), keeps <title> as the title, breaks
 * lines at block elements and keeps <pre> as laid out. It is iterative, so
 * a page nested thousands deep costs no C stack.
 */
#include "extract/extract.h"

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
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

/* Initialises libxml2 once, before any thread parses. */
void sl_extract_init_libxml(void)
{
    pthread_once(&init_once, init_libxml);
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

/* The concatenated text below n, for <title>. */
static void node_text_meta(xmlNode *n, char **slot)
{
    xmlChar *t = xmlNodeGetContent(n);
    if (t) {
        sl_extract_meta(slot, (const char *)t, strlen((const char *)t));
        xmlFree(t);
    }
}

/* <title> and <meta name=author|description...> from the head. */
static void read_head(xmlNode *head, sl_extract_result *out)
{
    for (xmlNode *n = head; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (el_class(n->name) == EL_TITLE) {
            node_text_meta(n, &out->title);
        } else if (strcmp((const char *)n->name, "meta") == 0) {
            xmlChar *name = xmlGetProp(n, (const xmlChar *)"name");
            xmlChar *content = xmlGetProp(n, (const xmlChar *)"content");
            if (name && content) {
                size_t cl = strlen((const char *)content);
                const char *nm = (const char *)name;
                if (strcasecmp(nm, "author") == 0 || strcasecmp(nm, "dc.creator") == 0)
                    sl_extract_meta(&out->author, (const char *)content, cl);
                else if (strcasecmp(nm, "dcterms.created") == 0 ||
                         strcasecmp(nm, "dc.date.created") == 0 ||
                         strcasecmp(nm, "date") == 0)
                    sl_extract_meta(&out->created, (const char *)content, cl);
                else if (strcasecmp(nm, "dcterms.modified") == 0 ||
                         strcasecmp(nm, "last-modified") == 0)
                    sl_extract_meta(&out->modified, (const char *)content, cl);
            }
            xmlFree(name);
            xmlFree(content);
        }
        if (n->children && el_class(n->name) != EL_SKIP)
            read_head(n->children, out); /* head is shallow */
    }
}

static int walk(xmlNode *root, const sl_extract_limits *lim, sl_extract_result *out)
{
    xmlNode *n = root;
    int pre = 0;
    unsigned long steps = 0;
    while (n && !sl_extract_full(out)) {
        int descend = 0;
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            const char *c = (const char *)n->content;
            if (c && *c) {
                if (pre)
                    sl_extract_append(out, c, strlen(c));
                else
                    sl_extract_append_collapsed(out, c, strlen(c));
            }
        } else if (n->type == XML_ELEMENT_NODE) {
            int cls = el_class(n->name);
            if (cls == EL_HEAD) {
                read_head(n->children, out);
            } else if (cls == EL_TITLE) {
                node_text_meta(n, &out->title); /* a stray title in body */
            } else if (cls != EL_SKIP) {
                if (ends_line(cls))
                    sl_extract_newline(out);
                else if (cls == EL_CELL)
                    sl_extract_space(out);
                if (cls == EL_PRE)
                    pre++;
                descend = n->children != NULL;
            }
        }
        if (descend) {
            n = n->children;
            continue;
        }
        /* leaving n, then each ancestor that has no next sibling */
        for (;;) {
            if (n->type == XML_ELEMENT_NODE && n->children) {
                int cls = el_class(n->name);
                if (cls == EL_PRE && pre)
                    pre--;
                if (ends_line(cls))
                    sl_extract_newline(out);
            }
            if (n == root)
                return 0;
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
            if (!n)
                return 0;
        }
        if ((++steps & 4095) == 0 && sl_extract_expired(lim))
            return sl_extract_error(out, "timeout");
    }
    return 0;
}

/* "charset=" in the first bytes: the document names its encoding. */
static int declares_charset(const char *buf, size_t len)
{
    size_t n = len < 4096 ? len : 4096;
    for (size_t i = 0; i + 8 <= n; i++)
        if ((buf[i] == 'c' || buf[i] == 'C') && strncasecmp(buf + i, "charset", 7) == 0)
            return 1;
    return n >= 2 && (((unsigned char)buf[0] == 0xff && (unsigned char)buf[1] == 0xfe) ||
                      ((unsigned char)buf[0] == 0xfe && (unsigned char)buf[1] == 0xff));
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

int sl_extract_html_cs(const char *buf, size_t len, const char *charset,
                       const sl_extract_limits *lim, sl_extract_result *out)
{
    char guess[64] = "";
    const char *enc = charset && *charset ? charset : NULL;
    sl_extract_init_libxml();
    if (len > INT32_MAX)
        return sl_extract_error(out, "too large");
    if (!enc && !declares_charset(buf, len)) {
        if (valid_utf8_prefix(buf, len)) {
            enc = "UTF-8";
        } else {
            uchardet_t ud = uchardet_new();
            if (ud && uchardet_handle_data(ud, buf, len < 65536 ? len : 65536) == 0) {
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
    htmlDocPtr doc = htmlReadMemory(buf, (int)len, NULL, enc,
                                    HTML_PARSE_RECOVER | HTML_PARSE_NONET |
                                        HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING);
    if (!doc && enc) /* an encoding libxml2 cannot load: let it decide */
        doc = htmlReadMemory(buf, (int)len, NULL, NULL,
                             HTML_PARSE_RECOVER | HTML_PARSE_NONET |
                                 HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING);
    if (!doc)
        return sl_extract_error(out, "malformed html");
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = root ? walk(root, lim, out) : 0;
    xmlFreeDoc(doc);
    if (rc)
        return SL_EXTRACT_ERR;
    return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
}

int sl_extract_html(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    return sl_extract_html_cs(buf, len, NULL, lim, out);
}
