/*
 * Text from Office Open XML: DOCX, XLSX, PPTX.
 *
 * Parts are found the way OPC says, through relationships, not by guessing
 * names: _rels/.rels names the main part, the main part's rels name headers,
 * sheets, slides and notes. Every part is parsed with libxml2 (SAX) as it inflates
 * (zip.c enforces the caps and refuses entity declarations), so a big sheet
 * never sits in memory as XML; worksheets go first through a fast scanner
 * for the XML subset spreadsheet writers produce (sheet.c), which hands
 * anything else back to libxml2.
 *
 * Text layout, the same for the three formats:
 *  - a paragraph ends with a newline; a table row is one line whose cells
 *    are separated by tabs; paragraphs inside one cell are joined by spaces;
 *  - DOCX: headers, body, footnotes, endnotes, footers, in that order;
 *  - XLSX: each sheet (workbook order) starts with its name on a line, then
 *    one line per row; cells hold what the file wrote (numbers as written,
 *    shared and inline strings, TRUE/FALSE), empty cells are left out;
 *  - PPTX: slides in presentation order, each followed by its notes
 *    (without the notes page's slide image, number, date, header, footer).
 * mc:Fallback subtrees are skipped: they repeat what mc:Choice already
 * holds. Title, author and dates come from docProps/core.xml.
 */
#include "extract/extract.h"
#include "extract/sheet.h"
#include "extract/zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relationships and part lists stay small in real files; these caps only
 * stop hostile ones from growing arrays without end. */
#define OX_MAX_RELS 65536
#define OX_MAX_DEPTH 64

/* ---- relationships -------------------------------------------------------- */

typedef struct {
    char *id, *type, *target; /* type: last segment of the Type URI */
} ox_rel;

typedef struct {
    sl_xml_base base;
    const char *dir; /* folder of the source part, "" for the package root */
    ox_rel *v;
    size_t n, cap;
} ox_rels;

/* Resolves an OPC target against dir into a malloc'd part name: "../x"
 * climbs, a leading "/" is the package root. NULL when out of memory. */
static char *ox_resolve(const char *dir, const char *target)
{
    size_t dl = strlen(dir), tl = strlen(target);
    char *path = malloc(dl + tl + 2);
    if (!path)
        return NULL;
    size_t len = 0;
    if (target[0] != '/') {
        memcpy(path, dir, dl);
        len = dl;
    }
    const char *p = target;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t sl = e ? (size_t)(e - p) : strlen(p);
        if (sl == 2 && p[0] == '.' && p[1] == '.') {
            /* drop the last segment of path (path ends with '/' or is "") */
            if (len > 0)
                len--;
            while (len > 0 && path[len - 1] != '/')
                len--;
        } else if (!(sl == 1 && p[0] == '.') && sl > 0) {
            memcpy(path + len, p, sl);
            len += sl;
            if (e)
                path[len++] = '/';
        }
        p += sl;
    }
    path[len] = '\0';
    return path;
}

static void ox_rels_start(void *ud, const char *name, const char **atts)
{
    ox_rels *r = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_PKGREL || strcmp(local, "Relationship") != 0)
        return;
    const char *id = sl_xml_attr(ud, atts, SL_NS_OTHER, "Id");
    const char *type = sl_xml_attr(ud, atts, SL_NS_OTHER, "Type");
    const char *target = sl_xml_attr(ud, atts, SL_NS_OTHER, "Target");
    const char *mode = sl_xml_attr(ud, atts, SL_NS_OTHER, "TargetMode");
    if (!id || !type || !target || (mode && strcmp(mode, "External") == 0))
        return;
    if (r->n == r->cap) {
        if (r->cap >= OX_MAX_RELS)
            return;
        size_t cap = r->cap ? r->cap * 2 : 16;
        ox_rel *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            sl_xml_stop(&r->base, SL_ZIP_NOMEM);
            return;
        }
        r->v = v;
        r->cap = cap;
    }
    const char *slash = strrchr(type, '/');
    ox_rel *rel = &r->v[r->n];
    rel->id = strdup(id);
    rel->type = strdup(slash ? slash + 1 : type);
    rel->target = ox_resolve(r->dir, target);
    if (!rel->id || !rel->type || !rel->target) {
        free(rel->id), free(rel->type), free(rel->target);
        sl_xml_stop(&r->base, SL_ZIP_NOMEM);
        return;
    }
    r->n++;
}

static void ox_rels_free(ox_rels *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].id), free(r->v[i].type), free(r->v[i].target);
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Loads the rels of `part` ("word/document.xml" -> word/_rels/document.xml.rels;
 * "" -> _rels/.rels). A missing rels part is an empty list, not an error. */
static int ox_rels_load(sl_zip *z, const char *part, ox_rels *r)
{
    memset(r, 0, sizeof *r);
    const char *slash = strrchr(part, '/');
    size_t dl = slash ? (size_t)(slash - part) + 1 : 0;
    size_t len = strlen(part);
    char *dir = malloc(dl + 1);
    char *name = malloc(len + 16);
    if (!dir || !name) {
        free(dir), free(name);
        return SL_ZIP_NOMEM;
    }
    memcpy(dir, part, dl);
    dir[dl] = '\0';
    memcpy(name, part, dl);
    memcpy(name + dl, "_rels/", 6);
    memcpy(name + dl + 6, part + dl, len - dl);
    memcpy(name + len + 6, ".rels", 6);
    r->dir = dir;
    int rc = SL_ZIP_OK;
    sl_xml_parser *p = sl_xml_parser_new(&r->base);
    if (!p) {
        rc = SL_ZIP_NOMEM;
    } else {
        sl_xml_set_handlers(p, ox_rels_start, NULL);
        rc = sl_zip_parse_xml(z, name, &r->base);
        if (rc == SL_ZIP_NOTFOUND)
            rc = SL_ZIP_OK;
        sl_xml_parser_free(p);
    }
    free(name);
    free(dir);
    r->dir = NULL;
    if (rc != SL_ZIP_OK)
        ox_rels_free(r);
    return rc;
}

static const ox_rel *ox_rels_by_id(const ox_rels *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].id, id) == 0)
            return &r->v[i];
    return NULL;
}

static const ox_rel *ox_rels_by_type(const ox_rels *r, const char *type)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].type, type) == 0)
            return &r->v[i];
    return NULL;
}

/* The main part named by the package rels, or `fallback`. Malloc'd. */
static char *ox_main_part(sl_zip *z, const char *fallback, int *rc)
{
    ox_rels r;
    *rc = ox_rels_load(z, "", &r);
    if (*rc != SL_ZIP_OK)
        return NULL;
    const ox_rel *rel = ox_rels_by_type(&r, "officeDocument");
    char *part = strdup(rel && sl_zip_has(z, rel->target) ? rel->target : fallback);
    ox_rels_free(&r);
    if (!part)
        *rc = SL_ZIP_NOMEM;
    return part;
}

/* ---- docProps/core.xml ---------------------------------------------------- */

typedef struct {
    sl_xml_base base;
    sl_extract_result *out;
    char **slot; /* metadata field being read, or NULL */
    char buf[1024];
    size_t len;
} ox_meta;

static void ox_meta_start(void *ud, const char *name, const char **atts)
{
    ox_meta *m = ud;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    m->slot = NULL;
    m->len = 0;
    if (ns == SL_NS_DC && strcmp(local, "title") == 0)
        m->slot = &m->out->title;
    else if (ns == SL_NS_DC && strcmp(local, "creator") == 0)
        m->slot = &m->out->author;
    else if (ns == SL_NS_DCTERMS && strcmp(local, "created") == 0)
        m->slot = &m->out->created;
    else if (ns == SL_NS_DCTERMS && strcmp(local, "modified") == 0)
        m->slot = &m->out->modified;
}

static void ox_meta_text(void *ud, const char *s, int n)
{
    ox_meta *m = ud;
    if (!m->slot)
        return;
    size_t room = sizeof m->buf - m->len;
    size_t k = (size_t)n < room ? (size_t)n : room; /* longer values are cut */
    memcpy(m->buf + m->len, s, k);
    m->len += k;
}

static void ox_meta_end(void *ud, const char *name)
{
    ox_meta *m = ud;
    if (m->slot)
        sl_extract_meta(m->slot, m->buf, m->len);
    m->slot = NULL;
}

/* Metadata is optional: a missing or broken core.xml is ignored, but an
 * inflation cap or timeout hit while reading it is not. */
static int ox_core(sl_zip *z, sl_extract_result *out)
{
    ox_meta m = {.out = out};
    sl_xml_parser *p = sl_xml_parser_new(&m.base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, ox_meta_start, ox_meta_end);
    sl_xml_set_text(p, ox_meta_text);
    int rc = sl_zip_parse_xml(z, "docProps/core.xml", &m.base);
    sl_xml_parser_free(p);
    if (rc == SL_ZIP_TOOBIG || rc == SL_ZIP_TIMEOUT || rc == SL_ZIP_NOMEM)
        return rc;
    return SL_ZIP_OK;
}

/* ---- paragraphs and tables: DOCX (w:) and DrawingML (a:) ------------------ */

typedef struct {
    sl_xml_base base;
    sl_extract_result *out;
    int ns;        /* SL_NS_W for WordprocessingML, SL_NS_A for slides */
    int depth;     /* element depth */
    int skip;      /* >0: depth at which a skipped subtree started */
    int in_text;   /* inside w:t / a:t */
    int notes;     /* notes slide: 1, or 2 inside a non-body placeholder */
    char pending;  /* separator owed before the next text */
    int cells;     /* table cells open around the current point */
    int cell_text; /* the innermost open cell has text */
    int tables;    /* tables open */
    unsigned char row_text[OX_MAX_DEPTH]; /* the current row has text, by table */
} ox_flow;

/* Appends text, first paying any separator owed. Cells with no text leave
 * nothing, so a row is its non-empty cells joined by tabs. */
static void ox_emit(ox_flow *f, const char *s, size_t n)
{
    sl_extract_result *out = f->out;
    if (f->pending == ' ' && n > 0 && (s[0] == ' ' || s[0] == '\n'))
        f->pending = 0; /* the text brings its own separator */
    if (f->pending) {
        char c = f->pending;
        f->pending = 0;
        if (sl_extract_append(out, &c, 1)) {
            sl_xml_stop(&f->base, SL_ZIP_STOPPED);
            return;
        }
    }
    if (sl_extract_append(out, s, n))
        sl_xml_stop(&f->base, SL_ZIP_STOPPED);
    f->cell_text = 1;
    for (int i = 0; i < f->tables && i < OX_MAX_DEPTH; i++)
        f->row_text[i] = 1;
}

static void ox_newline(ox_flow *f)
{
    f->pending = 0;
    if (sl_extract_newline(f->out))
        sl_xml_stop(&f->base, SL_ZIP_STOPPED);
}

static int ox_is_skipped(int ns, const char *local)
{
    if (ns == SL_NS_MC && strcmp(local, "Fallback") == 0)
        return 1;
    /* field codes, deleted text and property blocks (whose w:tab elements
     * are tab stops, not tabs) */
    if (ns == SL_NS_W &&
        (strcmp(local, "instrText") == 0 || strcmp(local, "delText") == 0 ||
         strcmp(local, "rPr") == 0 || strcmp(local, "pPr") == 0))
        return 1;
    return 0;
}

static void ox_row_start(ox_flow *f)
{
    if (f->cells == 0)
        ox_newline(f);
    else if (f->cell_text && !f->pending)
        f->pending = ' '; /* a table nested in a cell stays on its line */
    if (f->tables > 0 && f->tables <= OX_MAX_DEPTH)
        f->row_text[f->tables - 1] = 0;
}

static void ox_cell_start(ox_flow *f)
{
    int row_text = f->tables > 0 && f->tables <= OX_MAX_DEPTH && f->row_text[f->tables - 1];
    if (row_text)
        f->pending = f->cells == 0 ? '\t' : ' ';
    f->cells++;
    f->cell_text = 0;
}

/* The end of a paragraph: a line break, or inside a cell a space owed to
 * the cell's next text. */
static void ox_para_end(ox_flow *f)
{
    if (f->cells == 0)
        ox_newline(f);
    else if (f->cell_text && !f->pending)
        f->pending = ' ';
}

static void ox_flow_start(void *ud, const char *name, const char **atts)
{
    ox_flow *f = ud;
    f->depth++;
    if (f->skip)
        return;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    if (f->notes && ns == SL_NS_P) {
        /* the notes page repeats the slide image and carries number, date,
         * header and footer fields: only the body placeholder is notes */
        if (strcmp(local, "sp") == 0) {
            f->notes = 1;
        } else if (strcmp(local, "ph") == 0) {
            const char *type = sl_xml_attr(ud, atts, SL_NS_OTHER, "type");
            if (type && strcmp(type, "body") != 0)
                f->notes = 2;
        }
        return;
    }
    if (ox_is_skipped(ns, local)) {
        f->skip = f->depth;
        return;
    }
    if (ns != f->ns)
        return;
    switch (local[0]) {
    case 't':
        if (local[1] == '\0') {
            f->in_text = 1;
        } else if (strcmp(local, "tbl") == 0) {
            f->tables++;
        } else if (strcmp(local, "tr") == 0) {
            ox_row_start(f);
        } else if (strcmp(local, "tc") == 0) {
            ox_cell_start(f);
        } else if (strcmp(local, "tab") == 0 && ns == SL_NS_W) {
            ox_emit(f, "\t", 1);
        }
        break;
    case 'b':
        if (strcmp(local, "br") == 0)
            ox_emit(f, "\n", 1);
        break;
    case 'c':
        if (strcmp(local, "cr") == 0 && ns == SL_NS_W)
            ox_emit(f, "\n", 1);
        break;
    case 'n':
        if (strcmp(local, "noBreakHyphen") == 0)
            ox_emit(f, "-", 1);
        break;
    }
}

static void ox_flow_end(void *ud, const char *name)
{
    ox_flow *f = ud;
    int depth = f->depth--;
    if (f->skip) {
        if (f->skip == depth)
            f->skip = 0;
        return;
    }
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    if (f->notes && ns == SL_NS_P) {
        if (strcmp(local, "sp") == 0)
            f->notes = 1;
        return;
    }
    if (ns != f->ns)
        return;
    if (local[0] == 't' && local[1] == '\0') {
        f->in_text = 0;
    } else if (local[0] == 'p' && local[1] == '\0') {
        if (f->notes != 2)
            ox_para_end(f);
    } else if (strcmp(local, "tc") == 0) {
        if (f->cells > 0)
            f->cells--;
        f->cell_text = f->cells > 0; /* back in an outer cell that has text */
    } else if (strcmp(local, "tr") == 0) {
        if (f->cells == 0)
            ox_newline(f);
    } else if (strcmp(local, "tbl") == 0) {
        if (f->tables > 0)
            f->tables--;
    }
}

static void ox_flow_text(void *ud, const char *s, int n)
{
    ox_flow *f = ud;
    if (f->in_text && !f->skip && f->notes != 2)
        ox_emit(f, s, (size_t)n);
}

/* Streams one part's paragraphs and tables into out. */
static int ox_flow_part(sl_zip *z, const char *part, int ns, int notes, sl_extract_result *out)
{
    ox_flow f = {.out = out, .ns = ns, .notes = notes ? 1 : 0};
    sl_xml_parser *p = sl_xml_parser_new(&f.base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, ox_flow_start, ox_flow_end);
    sl_xml_set_text(p, ox_flow_text);
    int rc = sl_zip_parse_xml(z, part, &f.base);
    sl_xml_parser_free(p);
    if (rc == SL_ZIP_OK && sl_extract_newline(out))
        rc = SL_ZIP_STOPPED;
    return rc;
}

/* ---- DOCX ------------------------------------------------------------------ */

/* Orders "header10.xml" after "header2.xml": shorter names first. */
static int ox_part_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* Parses every part of the main part's rels of `type`, in name order. */
static int ox_docx_related(sl_zip *z, const ox_rels *rels, const char *type,
                           sl_extract_result *out)
{
    const char **parts = malloc((rels->n + 1) * sizeof *parts);
    if (!parts)
        return SL_ZIP_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < rels->n; i++) {
        if (strcmp(rels->v[i].type, type) != 0)
            continue;
        int dup = 0; /* one part may be referenced by several ids */
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(parts[j], rels->v[i].target) == 0;
        if (!dup)
            parts[n++] = rels->v[i].target;
    }
    qsort(parts, n, sizeof *parts, ox_part_cmp);
    int rc = SL_ZIP_OK;
    for (size_t i = 0; i < n && rc == SL_ZIP_OK; i++) {
        rc = ox_flow_part(z, parts[i], SL_NS_W, 0, out);
        if (rc == SL_ZIP_NOTFOUND || rc == SL_ZIP_BADXML)
            rc = SL_ZIP_OK; /* a broken side part does not lose the body */
    }
    free(parts);
    return rc;
}

int sl_extract_docx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    sl_zip *z = sl_zip_open_for(buf, len, lim, out);
    if (!z)
        return SL_EXTRACT_ERR;
    ox_rels rels = {0};
    int rc;
    char *main = ox_main_part(z, "word/document.xml", &rc);
    if (main)
        rc = ox_rels_load(z, main, &rels);
    if (rc == SL_ZIP_OK)
        rc = ox_core(z, out);
    if (rc == SL_ZIP_OK)
        rc = ox_docx_related(z, &rels, "header", out);
    if (rc == SL_ZIP_OK)
        rc = ox_flow_part(z, main, SL_NS_W, 0, out);
    if (rc == SL_ZIP_OK)
        rc = ox_docx_related(z, &rels, "footnotes", out);
    if (rc == SL_ZIP_OK)
        rc = ox_docx_related(z, &rels, "endnotes", out);
    if (rc == SL_ZIP_OK)
        rc = ox_docx_related(z, &rels, "footer", out);
    ox_rels_free(&rels);
    free(main);
    sl_zip_done(z, out);
    return sl_zip_result(out, rc);
}

/* ---- XLSX ------------------------------------------------------------------ */

/* The shared string table: strings back to back, NUL-separated, in one
 * buffer that grows with what was inflated (never with a declared count). */
typedef struct {
    sl_xml_base base;
    char *chars;
    size_t len, cap;
    size_t *offs;
    size_t n, ncap;
    int in_si, in_t, in_rph;
} ox_sst;

static int ox_sst_put(ox_sst *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *c = realloc(s->chars, cap);
        if (!c)
            return -1;
        s->chars = c;
        s->cap = cap;
    }
    memcpy(s->chars + s->len, p, n);
    s->len += n;
    return 0;
}

static void ox_sst_start(void *ud, const char *name, const char **atts)
{
    ox_sst *s = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_S)
        return;
    if (strcmp(local, "si") == 0) {
        if (s->n == s->ncap) {
            size_t ncap = s->ncap ? s->ncap * 2 : 256;
            size_t *o = realloc(s->offs, ncap * sizeof *o);
            if (!o) {
                sl_xml_stop(&s->base, SL_ZIP_NOMEM);
                return;
            }
            s->offs = o;
            s->ncap = ncap;
        }
        s->offs[s->n++] = s->len;
        s->in_si = 1;
    } else if (strcmp(local, "t") == 0) {
        s->in_t = 1;
    } else if (strcmp(local, "rPh") == 0) {
        s->in_rph = 1; /* phonetic guide: not the cell's text */
    }
}

static void ox_sst_end(void *ud, const char *name)
{
    ox_sst *s = ud;
    const char *local;
    if (sl_xml_ns(ud, name, &local) != SL_NS_S)
        return;
    if (strcmp(local, "si") == 0) {
        s->in_si = 0;
        if (ox_sst_put(s, "", 1))
            sl_xml_stop(&s->base, SL_ZIP_NOMEM);
    } else if (strcmp(local, "t") == 0) {
        s->in_t = 0;
    } else if (strcmp(local, "rPh") == 0) {
        s->in_rph = 0;
    }
}

static void ox_sst_text(void *ud, const char *p, int n)
{
    ox_sst *s = ud;
    if (s->in_si && s->in_t && !s->in_rph && ox_sst_put(s, p, (size_t)n))
        sl_xml_stop(&s->base, SL_ZIP_NOMEM);
}

/* workbook.xml: sheet names and rel ids, in workbook order */
typedef struct {
    sl_xml_base base;
    char **names, **ids;
    size_t n, cap;
    int slides; /* presentation.xml: p:sldId instead of s:sheet */
} ox_order;

static void ox_order_start(void *ud, const char *name, const char **atts)
{
    ox_order *o = ud;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    int want = o->slides ? (ns == SL_NS_P && strcmp(local, "sldId") == 0)
                         : (ns == SL_NS_S && strcmp(local, "sheet") == 0);
    if (!want)
        return;
    const char *id = sl_xml_attr(ud, atts, SL_NS_R, "id");
    const char *nm = o->slides ? "" : sl_xml_attr(ud, atts, SL_NS_OTHER, "name");
    if (!id || !nm || o->n >= OX_MAX_RELS)
        return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        char **a = realloc(o->names, cap * sizeof *a);
        if (a)
            o->names = a;
        char **b = a ? realloc(o->ids, cap * sizeof *b) : NULL;
        if (!b) {
            sl_xml_stop(&o->base, SL_ZIP_NOMEM);
            return;
        }
        o->ids = b;
        o->cap = cap;
    }
    o->names[o->n] = strdup(nm);
    o->ids[o->n] = strdup(id);
    if (!o->names[o->n] || !o->ids[o->n]) {
        free(o->names[o->n]), free(o->ids[o->n]);
        sl_xml_stop(&o->base, SL_ZIP_NOMEM);
        return;
    }
    o->n++;
}

static void ox_order_free(ox_order *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->names[i]), free(o->ids[i]);
    free(o->names);
    free(o->ids);
}

static int ox_order_load(sl_zip *z, const char *part, int slides, ox_order *o)
{
    memset(o, 0, sizeof *o);
    o->slides = slides;
    sl_xml_parser *p = sl_xml_parser_new(&o->base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, ox_order_start, NULL);
    int rc = sl_zip_parse_xml(z, part, &o->base);
    sl_xml_parser_free(p);
    return rc;
}

static int ox_sst_load(sl_zip *z, const ox_rels *rels, ox_sst *s)
{
    const ox_rel *rel = ox_rels_by_type(rels, "sharedStrings");
    if (!rel)
        return SL_ZIP_OK;
    sl_xml_parser *p = sl_xml_parser_new(&s->base);
    if (!p)
        return SL_ZIP_NOMEM;
    sl_xml_set_handlers(p, ox_sst_start, ox_sst_end);
    sl_xml_set_text(p, ox_sst_text);
    int rc = sl_zip_parse_xml(z, rel->target, &s->base);
    sl_xml_parser_free(p);
    if (rc == SL_ZIP_OK && s->in_si && ox_sst_put(s, "", 1))
        rc = SL_ZIP_NOMEM; /* keep every offset NUL-terminated */
    return rc == SL_ZIP_NOTFOUND ? SL_ZIP_OK : rc;
}

int sl_extract_xlsx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    sl_zip *z = sl_zip_open_for(buf, len, lim, out);
    if (!z)
        return SL_EXTRACT_ERR;
    ox_rels rels = {0};
    ox_order order = {0};
    ox_sst sst = {0};
    int rc;
    char *main = ox_main_part(z, "xl/workbook.xml", &rc);
    if (main)
        rc = ox_rels_load(z, main, &rels);
    if (rc == SL_ZIP_OK)
        rc = ox_core(z, out);
    if (rc == SL_ZIP_OK)
        rc = ox_order_load(z, main, 0, &order);
    if (rc == SL_ZIP_OK)
        rc = ox_sst_load(z, &rels, &sst);
    for (size_t i = 0; i < order.n && rc == SL_ZIP_OK; i++) {
        const ox_rel *rel = ox_rels_by_id(&rels, order.ids[i]);
        if (!rel || !sl_zip_has(z, rel->target))
            continue; /* chartsheets, dialog sheets, dangling ids */
        if (sl_extract_append(out, order.names[i], strlen(order.names[i])) ||
            sl_extract_newline(out)) {
            rc = SL_ZIP_STOPPED;
            break;
        }
        sl_sheet_sst view = {sst.chars, sst.offs, sst.n};
        rc = sl_sheet_part(z, rel->target, &view, out);
    }
    free(sst.chars);
    free(sst.offs);
    ox_order_free(&order);
    ox_rels_free(&rels);
    free(main);
    sl_zip_done(z, out);
    return sl_zip_result(out, rc);
}

/* ---- PPTX ------------------------------------------------------------------ */

int sl_extract_pptx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out)
{
    sl_zip *z = sl_zip_open_for(buf, len, lim, out);
    if (!z)
        return SL_EXTRACT_ERR;
    ox_rels rels = {0};
    ox_order order = {0};
    int rc;
    char *main = ox_main_part(z, "ppt/presentation.xml", &rc);
    if (main)
        rc = ox_rels_load(z, main, &rels);
    if (rc == SL_ZIP_OK)
        rc = ox_core(z, out);
    if (rc == SL_ZIP_OK)
        rc = ox_order_load(z, main, 1, &order);
    int slides = 0;
    for (size_t i = 0; i < order.n && rc == SL_ZIP_OK; i++) {
        const ox_rel *rel = ox_rels_by_id(&rels, order.ids[i]);
        if (!rel || !sl_zip_has(z, rel->target))
            continue;
        slides++;
        rc = ox_flow_part(z, rel->target, SL_NS_A, 0, out);
        if (rc != SL_ZIP_OK)
            break;
        ox_rels srels;
        rc = ox_rels_load(z, rel->target, &srels);
        if (rc != SL_ZIP_OK)
            break;
        const ox_rel *notes = ox_rels_by_type(&srels, "notesSlide");
        if (notes) {
            rc = ox_flow_part(z, notes->target, SL_NS_A, 1, out);
            if (rc == SL_ZIP_NOTFOUND || rc == SL_ZIP_BADXML)
                rc = SL_ZIP_OK;
        }
        ox_rels_free(&srels);
    }
    if (rc == SL_ZIP_OK || rc == SL_ZIP_STOPPED)
        out->pages = slides;
    ox_order_free(&order);
    ox_rels_free(&rels);
    free(main);
    sl_zip_done(z, out);
    return sl_zip_result(out, rc);
}
