/*
 * Text from OpenDocument packages: ODT, ODS, ODP.
 *
 * All three keep their text in content.xml and their metadata in meta.xml,
 * so one streaming SAX pass over content.xml serves every flavour (zip.c
 * caps the inflation and refuses entity declarations). The layout rules are
 * those of the OOXML extractor, so a document reads the same whichever
 * suite saved it:
 *  - text:p and text:h end with a newline; text:s, text:tab and
 *    text:line-break become spaces, a tab and a newline;
 *  - a table row is one line of its non-empty cells joined by tabs;
 *    paragraphs inside a cell are joined by spaces; a repeated cell or row
 *    (table:number-columns-repeated) is written once;
 *  - ODS: each sheet starts with its name on a line;
 *  - ODP: pages in order, each page's notes after its text; pages = count;
 *  - left out: note citations (the footnote's number; its body is kept),
 *    tracked deletions, annotations, shape titles and descriptions.
 * Headers and footers of text documents live in styles.xml and are not
 * read. A package whose content.xml is encrypted (META-INF/manifest.xml
 * says so) gives its metadata, the flag and the error "encrypted".
 */
#include "extract/extract.h"
#include "extract/zip.h"

#include <stdlib.h>
#include <string.h>

#define OD_MAX_DEPTH 64

enum { OD_TEXT, OD_SHEET, OD_SLIDES };

typedef struct {
    sl_xml_base base;
    sl_extract_result *out;
    int mode;
    int depth, skip;
    int paras;      /* text:p / text:h open */
    char pending;   /* separator owed before the next text */
    int cells, cell_text, tables;
    unsigned char row_text[OD_MAX_DEPTH];
    int pages;      /* draw:page seen */
} od_flow;

static void od_emit(od_flow *f, const char *s, size_t n)
{
    if (f->pending == ' ' && n > 0 && (s[0] == ' ' || s[0] == '\n'))
        f->pending = 0; /* the text brings its own separator */
    if (f->pending) {
        char c = f->pending;
        f->pending = 0;
        if (sl_extract_append(f->out, &c, 1)) {
            sl_xml_stop(&f->base, SL_ZIP_STOPPED);
            return;
        }
    }
    if (sl_extract_append(f->out, s, n))
        sl_xml_stop(&f->base, SL_ZIP_STOPPED);
    f->cell_text = 1;
    for (int i = 0; i < f->tables && i < OD_MAX_DEPTH; i++)
        f->row_text[i] = 1;
}

static void od_newline(od_flow *f)
{
    f->pending = 0;
    if (sl_extract_newline(f->out))
        sl_xml_stop(&f->base, SL_ZIP_STOPPED);
}

static int od_skipped(int ns, const char *local)
{
    switch (ns) {
    case SL_NS_TEXT:
        return strcmp(local, "note-citation") == 0 || strcmp(local, "tracked-changes") == 0;
    case SL_NS_OFFICE:
        return strcmp(local, "annotation") == 0;
    case SL_NS_OTHER: /* svg:title, svg:desc: alternative text of shapes */
        return strcmp(local, "title") == 0 || strcmp(local, "desc") == 0;
    }
    return 0;
}

static void od_start(void *ud, const char *name, const char **atts)
{
    od_flow *f = ud;
    f->depth++;
    if (f->skip)
        return;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    if (od_skipped(ns, local)) {
        f->skip = f->depth;
        return;
    }
    if (ns == SL_NS_TEXT) {
        if (strcmp(local, "p") == 0 || strcmp(local, "h") == 0) {
            /* a paragraph inside a paragraph (a note body, a text box) is
             * set off by spaces, not breaks: it sits inside a sentence */
            sl_extract_result *o = f->out;
            if (f->paras > 0 && !f->pending && o->len && o->text[o->len - 1] != '\n')
                f->pending = ' ';
            f->paras++;
        } else if (strcmp(local, "s") == 0 && f->paras) {
            const char *c = sl_xml_attr(ud, atts, SL_NS_TEXT, "c");
            long n = c ? strtol(c, NULL, 10) : 1;
            static const char spaces[] = "                ";
            /* runs of spaces are layout; a hostile count gets 16 */
            if (n < 1)
                n = 1;
            if (n > 16)
                n = 16;
            od_emit(f, spaces, (size_t)n);
        } else if (strcmp(local, "tab") == 0 && f->paras) {
            od_emit(f, "\t", 1);
        } else if (strcmp(local, "line-break") == 0 && f->paras) {
            od_emit(f, "\n", 1);
        }
    } else if (ns == SL_NS_TABLE) {
        if (strcmp(local, "table") == 0) {
            if (f->mode == OD_SHEET && f->tables == 0) {
                const char *nm = sl_xml_attr(ud, atts, SL_NS_TABLE, "name");
                od_newline(f);
                if (nm && *nm) {
                    od_emit(f, nm, strlen(nm));
                    od_newline(f);
                }
            }
            f->tables++;
            if (f->tables <= OD_MAX_DEPTH)
                f->row_text[f->tables - 1] = 0;
        } else if (strcmp(local, "table-row") == 0) {
            if (f->cells == 0)
                od_newline(f);
            else if (f->cell_text && !f->pending)
                f->pending = ' ';
            if (f->tables > 0 && f->tables <= OD_MAX_DEPTH)
                f->row_text[f->tables - 1] = 0;
        } else if (strcmp(local, "table-cell") == 0 ||
                   strcmp(local, "covered-table-cell") == 0) {
            if (f->tables > 0 && f->tables <= OD_MAX_DEPTH && f->row_text[f->tables - 1])
                f->pending = f->cells == 0 ? '\t' : ' ';
            f->cells++;
            f->cell_text = 0;
        }
    } else if (ns == SL_NS_DRAW && strcmp(local, "page") == 0) {
        f->pages++;
        od_newline(f);
    }
}

static void od_end(void *ud, const char *name)
{
    od_flow *f = ud;
    int depth = f->depth--;
    if (f->skip) {
        if (f->skip == depth)
            f->skip = 0;
        return;
    }
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    if (ns == SL_NS_TEXT && (strcmp(local, "p") == 0 || strcmp(local, "h") == 0)) {
        if (f->paras > 0)
            f->paras--;
        if (f->paras > 0)
            f->pending = ' ';
        else if (f->cells == 0)
            od_newline(f);
        else if (f->cell_text && !f->pending)
            f->pending = ' ';
    } else if (ns == SL_NS_TABLE) {
        if (strcmp(local, "table-cell") == 0 || strcmp(local, "covered-table-cell") == 0) {
            if (f->cells > 0)
                f->cells--;
            f->cell_text = f->cells > 0;
        } else if (strcmp(local, "table-row") == 0) {
            if (f->cells == 0)
                od_newline(f);
        } else if (strcmp(local, "table") == 0) {
            if (f->tables > 0)
                f->tables--;
        }
    }
}

static void od_text(void *ud, const char *s, int n)
{
    od_flow *f = ud;
    if (f->paras && !f->skip)
        od_emit(f, s, (size_t)n);
}

/* ---- meta.xml -------------------------------------------------------------- */

enum { OD_TITLE, OD_INITIAL, OD_CREATOR, OD_CREATED, OD_MODIFIED, OD_NMETA };

typedef struct {
    sl_xml_base base;
    int field; /* OD_*, or -1 */
    char val[OD_NMETA][512];
    size_t len[OD_NMETA];
} od_meta;

static void od_meta_start(void *ud, const char *name, const char **atts)
{
    od_meta *m = ud;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    m->field = -1;
    if (ns == SL_NS_DC && strcmp(local, "title") == 0)
        m->field = OD_TITLE;
    else if (ns == SL_NS_META && strcmp(local, "initial-creator") == 0)
        m->field = OD_INITIAL;
    else if (ns == SL_NS_DC && strcmp(local, "creator") == 0)
        m->field = OD_CREATOR;
    else if (ns == SL_NS_META && strcmp(local, "creation-date") == 0)
        m->field = OD_CREATED;
    else if (ns == SL_NS_DC && strcmp(local, "date") == 0)
        m->field = OD_MODIFIED;
    if (m->field >= 0)
        m->len[m->field] = 0;
}

static void od_meta_end(void *ud, const char *name)
{
    ((od_meta *)ud)->field = -1;
}

static void od_meta_text(void *ud, const char *s, int n)
{
    od_meta *m = ud;
    if (m->field < 0)
        return;
    size_t room = sizeof m->val[0] - m->len[m->field];
    size_t k = (size_t)n < room ? (size_t)n : room; /* longer values are cut */
    memcpy(m->val[m->field] + m->len[m->field], s, k);
    m->len[m->field] += k;
}

/* Metadata is optional: only a cap, a timeout or no memory is an error. */
static int od_meta_load(sl_zip *z, sl_extract_result *out)
{
    od_meta *m = calloc(1, sizeof *m);
    if (!m)
        return SL_ZIP_NOMEM;
    m->field = -1;
    sl_xml_parser *p = sl_xml_parser_new(&m->base);
    if (!p) {
        free(m);
        return SL_ZIP_NOMEM;
    }
    sl_xml_set_handlers(p, od_meta_start, od_meta_end);
    sl_xml_set_text(p, od_meta_text);
    int rc = sl_zip_parse_xml(z, "meta.xml", &m->base);
    sl_xml_parser_free(p);
    if (rc == SL_ZIP_TOOBIG || rc == SL_ZIP_TIMEOUT || rc == SL_ZIP_NOMEM) {
        free(m);
        return rc;
    }
    /* the creator of a document is its initial creator; dc:creator is
     * whoever saved it last */
    sl_extract_meta(&out->title, m->val[OD_TITLE], m->len[OD_TITLE]);
    sl_extract_meta(&out->author, m->val[OD_INITIAL], m->len[OD_INITIAL]);
    sl_extract_meta(&out->author, m->val[OD_CREATOR], m->len[OD_CREATOR]);
    sl_extract_meta(&out->created, m->val[OD_CREATED], m->len[OD_CREATED]);
    sl_extract_meta(&out->modified, m->val[OD_MODIFIED], m->len[OD_MODIFIED]);
    free(m);
    return SL_ZIP_OK;
}

/* ---- META-INF/manifest.xml: is content.xml encrypted? ---------------------- */

typedef struct {
    sl_xml_base base;
    int in_content; /* inside the file-entry of content.xml */
    int encrypted;
} od_manifest;

static void od_manifest_start(void *ud, const char *name, const char **atts)
{
    od_manifest *m = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_MANIFEST)
        return;
    if (strcmp(local, "file-entry") == 0) {
        const char *path = sl_xml_attr(ud, atts, SL_NS_MANIFEST, "full-path");
        m->in_content = path && strcmp(path, "content.xml") == 0;
    } else if (strcmp(local, "encryption-data") == 0 && m->in_content) {
        m->encrypted = 1;
    }
}

static int od_encrypted(sl_zip *z, int *encrypted)
{
    od_manifest m = {0};
    sl_xml_parser *p = sl_xml_parser_new(&m.base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, od_manifest_start, NULL);
    int rc = sl_zip_parse_xml(z, "META-INF/manifest.xml", &m.base);
    sl_xml_parser_free(p);
    *encrypted = m.encrypted;
    if (rc == SL_ZIP_TOOBIG || rc == SL_ZIP_TIMEOUT || rc == SL_ZIP_NOMEM)
        return rc;
    return SL_ZIP_OK;
}

/* ---- the three formats ----------------------------------------------------- */

static int od_extract(const char *buf, size_t len, const sl_extract_limits *lim,
                      sl_extract_result *out, int mode)
{
    sl_zip *z = sl_zip_open_for(buf, len, lim, out);
    if (!z)
        return SL_EXTRACT_ERR;
    int encrypted = 0;
    int rc = od_encrypted(z, &encrypted);
    if (rc == SL_ZIP_OK)
        rc = od_meta_load(z, out);
    if (rc == SL_ZIP_OK && encrypted) {
        sl_zip_done(z, out);
        out->flags |= SL_EXTRACT_ENCRYPTED;
        return sl_extract_error(out, "encrypted");
    }
    od_flow f = {.out = out, .mode = mode};
    if (rc == SL_ZIP_OK) {
        sl_xml_parser *p = sl_xml_parser_new(&f.base);
        if (!p) {
            rc = SL_ZIP_NOMEM;
        } else {
            sl_xml_set_handlers(p, od_start, od_end);
            sl_xml_set_text(p, od_text);
            rc = sl_zip_parse_xml(z, "content.xml", &f.base);
            sl_xml_parser_free(p);
        }
    }
    if (mode == OD_SLIDES && (rc == SL_ZIP_OK || rc == SL_ZIP_STOPPED))
        out->pages = f.pages;
    if (rc == SL_ZIP_OK && sl_extract_newline(out))
        rc = SL_ZIP_STOPPED;
    sl_zip_done(z, out);
    return sl_zip_result(out, rc);
}

int sl_extract_odt(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    return od_extract(buf, len, lim, out, OD_TEXT);
}

int sl_extract_ods(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    return od_extract(buf, len, lim, out, OD_SHEET);
}

int sl_extract_odp(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    return od_extract(buf, len, lim, out, OD_SLIDES);
}
