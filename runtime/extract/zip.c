/*
 * Zip containers from memory for the Office extractors (see zip.h).
 *
 * libzip does the container work (central directory, inflate, CRC); this file
 * adds what libzip leaves to its caller: caps on what comes out of the
 * inflater, counted as it comes, so a 10 GB entry of zeros in a 10 MB zip, or
 * an entry whose real size is far above what its header says, stops at the
 * cap instead of filling memory. The XML half gives expat the same stream and
 * shuts the door on entity declarations before any expansion can happen.
 */
#include "extract/zip.h"
#include "extract/extract.h"

#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <zip.h>

/* Inflate in chunks this big: large enough that expat's per-call overhead
 * vanishes, small enough to stay in cache. */
#define SL_ZIP_CHUNK (64 * 1024)

struct sl_zip {
    zip_t *za;
    sl_zip_caps caps;
    size_t total;
};

const char *sl_zip_strerror(int code)
{
    switch (code) {
    case SL_ZIP_OK: return "ok";
    case SL_ZIP_NOTFOUND: return "missing part";
    case SL_ZIP_TOOBIG: return "inflated size over limit";
    case SL_ZIP_CORRUPT: return "corrupt zip";
    case SL_ZIP_ENCRYPTED: return "encrypted";
    case SL_ZIP_BADXML: return "malformed xml";
    case SL_ZIP_ENTITY: return "xml entity declarations refused";
    case SL_ZIP_STOPPED: return "stopped";
    case SL_ZIP_NOMEM: return "out of memory";
    case SL_ZIP_TIMEOUT: return "timeout";
    case SL_ZIP_BADSIZE: return "zip entry larger than declared";
    }
    return "unknown error";
}

sl_zip *sl_zip_open(const void *buf, size_t len, const sl_zip_caps *caps, int *code)
{
    if (len < 22) { /* shorter than an end record: libzip would call it empty */
        *code = SL_ZIP_CORRUPT;
        return NULL;
    }
    zip_error_t err;
    zip_error_init(&err);
    /* libzip wants a non-NULL buffer even for an empty input */
    zip_source_t *src = zip_source_buffer_create(len ? buf : "", len, 0, &err);
    if (!src) {
        zip_error_fini(&err);
        *code = SL_ZIP_NOMEM;
        return NULL;
    }
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY, &err);
    if (!za) {
        int ze = zip_error_code_zip(&err);
        zip_source_free(src);
        zip_error_fini(&err);
        *code = ze == ZIP_ER_MEMORY ? SL_ZIP_NOMEM : SL_ZIP_CORRUPT;
        return NULL;
    }
    zip_error_fini(&err);
    sl_zip *z = calloc(1, sizeof *z);
    if (!z) {
        zip_discard(za);
        *code = SL_ZIP_NOMEM;
        return NULL;
    }
    z->za = za;
    if (caps)
        z->caps = *caps;
    *code = SL_ZIP_OK;
    return z;
}

void sl_zip_close(sl_zip *z)
{
    if (!z)
        return;
    zip_discard(z->za); /* read-only: nothing to write back */
    free(z);
}

static zip_int64_t sl_zip_locate(sl_zip *z, const char *name)
{
    zip_int64_t i = zip_name_locate(z->za, name, ZIP_FL_ENC_RAW);
    if (i < 0)
        i = zip_name_locate(z->za, name, ZIP_FL_NOCASE | ZIP_FL_ENC_RAW);
    return i;
}

int sl_zip_has(sl_zip *z, const char *name)
{
    return sl_zip_locate(z, name) >= 0;
}

long sl_zip_count(sl_zip *z)
{
    zip_int64_t n = zip_get_num_entries(z->za, 0);
    return n < 0 ? 0 : (long)n;
}

const char *sl_zip_name(sl_zip *z, long i)
{
    if (i < 0 || i >= sl_zip_count(z))
        return NULL;
    return zip_get_name(z->za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
}

size_t sl_zip_total(const sl_zip *z)
{
    return z->total;
}

static int sl_zip_code_of(int ze)
{
    switch (ze) {
    case ZIP_ER_NOPASSWD:
    case ZIP_ER_WRONGPASSWD:
    case ZIP_ER_ENCRNOTSUPP: return SL_ZIP_ENCRYPTED;
    case ZIP_ER_MEMORY: return SL_ZIP_NOMEM;
    case ZIP_ER_NOENT: return SL_ZIP_NOTFOUND;
    }
    return SL_ZIP_CORRUPT;
}

int sl_zip_stream(sl_zip *z, const char *name, sl_zip_sink_fn fn, void *ud)
{
    zip_int64_t idx = sl_zip_locate(z, name);
    if (idx < 0)
        return SL_ZIP_NOTFOUND;
    /* the declared size is never used to allocate, only as one more bound:
     * an entry that inflates past it is lying, and is stopped there */
    zip_stat_t st;
    zip_uint64_t declared = UINT64_MAX;
    if (zip_stat_index(z->za, (zip_uint64_t)idx, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE))
        declared = st.size;
    zip_file_t *zf = zip_fopen_index(z->za, (zip_uint64_t)idx, 0);
    if (!zf)
        return sl_zip_code_of(zip_error_code_zip(zip_get_error(z->za)));
    char *chunk = malloc(SL_ZIP_CHUNK);
    if (!chunk) {
        zip_fclose(zf);
        return SL_ZIP_NOMEM;
    }
    int rc = SL_ZIP_OK;
    size_t entry = 0;
    for (;;) {
        /* counted before the sink sees it: a bomb costs one chunk of work
         * past the cap, never more */
        zip_int64_t n = zip_fread(zf, chunk, SL_ZIP_CHUNK);
        if (n < 0) {
            rc = sl_zip_code_of(zip_error_code_zip(zip_file_get_error(zf)));
            break;
        }
        if (n == 0)
            break;
        entry += (size_t)n;
        z->total += (size_t)n;
        if ((z->caps.max_entry && entry > z->caps.max_entry) ||
            (z->caps.max_total && z->total > z->caps.max_total)) {
            rc = SL_ZIP_TOOBIG;
            break;
        }
        if ((zip_uint64_t)entry > declared) {
            rc = SL_ZIP_BADSIZE;
            break;
        }
        if (z->caps.expired && z->caps.expired(z->caps.expired_arg)) {
            rc = SL_ZIP_TIMEOUT;
            break;
        }
        int s = fn(ud, chunk, (size_t)n);
        if (s) {
            rc = s;
            break;
        }
    }
    free(chunk);
    zip_fclose(zf);
    return rc;
}

typedef struct {
    char *p;
    size_t len, cap;
} sl_zip_buf;

static int sl_zip_buf_sink(void *ud, const char *chunk, size_t n)
{
    sl_zip_buf *b = ud;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return SL_ZIP_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, chunk, n);
    b->len += n;
    return 0;
}

int sl_zip_read(sl_zip *z, const char *name, char **out, size_t *outlen)
{
    sl_zip_buf b = {0};
    int rc = sl_zip_stream(z, name, sl_zip_buf_sink, &b);
    if (rc == SL_ZIP_OK && !b.p)
        rc = sl_zip_buf_sink(&b, "", 0); /* an empty entry is still a string */
    if (rc != SL_ZIP_OK) {
        free(b.p);
        *out = NULL;
        if (outlen)
            *outlen = 0;
        return rc;
    }
    b.p[b.len] = '\0';
    *out = b.p;
    if (outlen)
        *outlen = b.len;
    return SL_ZIP_OK;
}

/* ---- XML ---------------------------------------------------------------- */

void sl_xml_stop(sl_xml_base *ctx, int status)
{
    if (ctx->status == SL_ZIP_OK)
        ctx->status = status;
    XML_StopParser(ctx->parser, XML_FALSE);
}

/* Any entity declaration, internal or external, general or parameter, ends
 * the parse: office formats never need one, and refusing them at declaration
 * time means no expansion ever starts. */
static void XMLCALL sl_xml_on_entity(void *ud, const XML_Char *name, int is_param,
                                     const XML_Char *value, int value_len,
                                     const XML_Char *base, const XML_Char *system_id,
                                     const XML_Char *public_id, const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base;
    (void)system_id, (void)public_id, (void)notation;
    sl_xml_stop(ud, SL_ZIP_ENTITY);
}

/* Namespaces are resolved here rather than by expat: expat's namespace
 * mode builds a "uri|local" string for every element and attribute and
 * checks each prefixed attribute in a hash, which made it 2.4 times slower
 * on Word's markup (30-odd declarations, five prefixed attributes an
 * element). Here an xmlns attribute costs a table lookup when it is seen and
 * a name costs a search of the few bindings in scope that matter: those to
 * a namespace we read, and those that hide one. */
struct sl_xml_nsdecl {
    char prefix[32]; /* "" for the default namespace */
    size_t len;
    int id;
    int depth;
};

/* A prefix longer than this is never one of ours: names using it resolve
 * to SL_NS_OTHER (at worst their text is skipped). */
#define SL_XML_MAX_PREFIX (sizeof ((sl_xml_nsdecl *)0)->prefix - 1)

static int sl_xml_ns_id(const char *uri);

static const sl_xml_nsdecl *sl_xml_lookup(const sl_xml_base *b, const char *prefix, size_t len)
{
    for (size_t i = b->ndecls; i-- > 0;) {
        const sl_xml_nsdecl *d = &b->decls[i];
        if (d->len == len && memcmp(d->prefix, prefix, len) == 0)
            return d;
    }
    return NULL;
}

static void sl_xml_declare(sl_xml_base *b, const char *prefix, size_t len, const char *uri)
{
    if (len > SL_XML_MAX_PREFIX)
        return;
    int id = uri[0] ? sl_xml_ns_id(uri) : SL_NS_OTHER; /* xmlns="" undeclares */
    if (id == SL_NS_OTHER) {
        /* an unknown namespace matters only when it hides a known one */
        const sl_xml_nsdecl *outer = sl_xml_lookup(b, prefix, len);
        if (!outer || outer->id == SL_NS_OTHER)
            return;
    }
    if (b->ndecls == b->capdecls) {
        size_t cap = b->capdecls ? b->capdecls * 2 : 16;
        sl_xml_nsdecl *d = realloc(b->decls, cap * sizeof *d);
        if (!d) {
            sl_xml_stop(b, SL_ZIP_NOMEM);
            return;
        }
        b->decls = d;
        b->capdecls = cap;
    }
    sl_xml_nsdecl *d = &b->decls[b->ndecls++];
    memcpy(d->prefix, prefix, len);
    d->prefix[len] = '\0';
    d->len = len;
    d->id = id;
    d->depth = b->depth;
}

static void XMLCALL sl_xml_start(void *ud, const char *name, const char **atts)
{
    sl_xml_base *b = ud;
    b->depth++;
    for (const char **a = atts; a[0]; a += 2) {
        const char *n = a[0];
        if (n[0] == 'x' && strncmp(n, "xmlns", 5) == 0) {
            if (n[5] == '\0')
                sl_xml_declare(b, "", 0, a[1]);
            else if (n[5] == ':')
                sl_xml_declare(b, n + 6, strlen(n + 6), a[1]);
        }
    }
    if (b->on_start)
        b->on_start(ud, name, atts);
}

static void XMLCALL sl_xml_end(void *ud, const char *name)
{
    sl_xml_base *b = ud;
    if (b->on_end)
        b->on_end(ud, name);
    while (b->ndecls > 0 && b->decls[b->ndecls - 1].depth == b->depth)
        b->ndecls--;
    b->depth--;
}

XML_Parser sl_xml_parser_new(sl_xml_base *ctx)
{
    XML_Parser p = XML_ParserCreate(NULL);
    if (!p)
        return NULL;
    ctx->parser = p;
    ctx->status = SL_ZIP_OK;
    ctx->on_start = NULL;
    ctx->on_end = NULL;
    ctx->depth = 0;
    ctx->decls = NULL;
    ctx->ndecls = ctx->capdecls = 0;
    XML_SetUserData(p, ctx);
    XML_SetElementHandler(p, sl_xml_start, sl_xml_end);
    XML_SetEntityDeclHandler(p, sl_xml_on_entity);
    /* external DTDs and parameter entities are never fetched */
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
    return p;
}

void sl_xml_set_handlers(XML_Parser p, XML_StartElementHandler start, XML_EndElementHandler end)
{
    sl_xml_base *b = XML_GetUserData(p);
    b->on_start = start;
    b->on_end = end;
}

void sl_xml_parser_free(XML_Parser p)
{
    sl_xml_base *b = XML_GetUserData(p);
    free(b->decls);
    b->decls = NULL;
    b->ndecls = b->capdecls = 0;
    b->parser = NULL;
    XML_ParserFree(p);
}

static int sl_xml_feed(sl_xml_base *ctx, const char *buf, size_t len, int final)
{
    while (len > 0 || final) {
        /* expat takes an int length */
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        int last = final && (size_t)n == len;
        if (XML_Parse(ctx->parser, buf, n, last) != XML_STATUS_OK) {
            if (ctx->status != SL_ZIP_OK)
                return ctx->status;
            return XML_GetErrorCode(ctx->parser) == XML_ERROR_NO_MEMORY ? SL_ZIP_NOMEM
                                                                         : SL_ZIP_BADXML;
        }
        if (ctx->status != SL_ZIP_OK)
            return ctx->status;
        buf += n;
        len -= (size_t)n;
        if (last)
            break;
    }
    return 0;
}

static int sl_xml_sink(void *ud, const char *chunk, size_t n)
{
    return sl_xml_feed(ud, chunk, n, 0);
}

int sl_zip_parse_xml(sl_zip *z, const char *name, sl_xml_base *ctx)
{
    int rc = sl_zip_stream(z, name, sl_xml_sink, ctx);
    if (rc == SL_ZIP_OK)
        rc = sl_xml_feed(ctx, "", 0, 1);
    return rc;
}

int sl_xml_parse_buffer(sl_xml_base *ctx, const char *buf, size_t len)
{
    int rc = sl_xml_feed(ctx, buf, len, 0);
    if (rc == SL_ZIP_OK)
        rc = sl_xml_feed(ctx, "", 0, 1);
    return rc;
}

static const struct {
    const char *uri;
    size_t len;
    int id;
} sl_xml_nstab[] = {
#define NS(u, id) {u, sizeof(u) - 1, id}
    NS("http://schemas.openxmlformats.org/wordprocessingml/2006/main", SL_NS_W),
    NS("http://purl.oclc.org/ooxml/wordprocessingml/main", SL_NS_W),
    NS("http://schemas.openxmlformats.org/drawingml/2006/main", SL_NS_A),
    NS("http://purl.oclc.org/ooxml/drawingml/main", SL_NS_A),
    NS("http://schemas.openxmlformats.org/presentationml/2006/main", SL_NS_P),
    NS("http://purl.oclc.org/ooxml/presentationml/main", SL_NS_P),
    NS("http://schemas.openxmlformats.org/spreadsheetml/2006/main", SL_NS_S),
    NS("http://purl.oclc.org/ooxml/spreadsheetml/main", SL_NS_S),
    NS("http://schemas.openxmlformats.org/officeDocument/2006/relationships", SL_NS_R),
    NS("http://purl.oclc.org/ooxml/officeDocument/relationships", SL_NS_R),
    NS("http://schemas.openxmlformats.org/markup-compatibility/2006", SL_NS_MC),
    NS("http://schemas.openxmlformats.org/package/2006/relationships", SL_NS_PKGREL),
    NS("http://purl.org/dc/elements/1.1/", SL_NS_DC),
    NS("http://purl.org/dc/terms/", SL_NS_DCTERMS),
    NS("urn:oasis:names:tc:opendocument:xmlns:office:1.0", SL_NS_OFFICE),
    NS("urn:oasis:names:tc:opendocument:xmlns:text:1.0", SL_NS_TEXT),
    NS("urn:oasis:names:tc:opendocument:xmlns:table:1.0", SL_NS_TABLE),
    NS("urn:oasis:names:tc:opendocument:xmlns:drawing:1.0", SL_NS_DRAW),
    NS("urn:oasis:names:tc:opendocument:xmlns:meta:1.0", SL_NS_META),
    NS("urn:oasis:names:tc:opendocument:xmlns:presentation:1.0", SL_NS_PRESENTATION),
    NS("urn:oasis:names:tc:opendocument:xmlns:manifest:1.0", SL_NS_MANIFEST),
#undef NS
};

static int sl_xml_ns_id(const char *uri)
{
    size_t len = strlen(uri);
    for (size_t i = 0; i < sizeof sl_xml_nstab / sizeof sl_xml_nstab[0]; i++)
        if (sl_xml_nstab[i].len == len && memcmp(sl_xml_nstab[i].uri, uri, len) == 0)
            return sl_xml_nstab[i].id;
    return SL_NS_OTHER;
}

/* The id for name's prefix; `dflt` is what an unprefixed name gets. The
 * xmlns declarations themselves resolve to -1, which matches nothing. */
static int sl_xml_resolve(const sl_xml_base *b, const char *name, const char **local, int dflt)
{
    const char *colon = strchr(name, ':');
    if (!colon) {
        *local = name;
        if (!dflt)
            return SL_NS_OTHER;
        const sl_xml_nsdecl *d = sl_xml_lookup(b, "", 0);
        return d ? d->id : SL_NS_OTHER;
    }
    *local = colon + 1;
    size_t len = (size_t)(colon - name);
    if (len == 5 && memcmp(name, "xmlns", 5) == 0)
        return -1;
    const sl_xml_nsdecl *d = sl_xml_lookup(b, name, len);
    return d ? d->id : SL_NS_OTHER;
}

int sl_xml_ns(const void *ctx, const char *name, const char **local)
{
    return sl_xml_resolve(ctx, name, local, 1);
}

const char *sl_xml_attr(const void *ctx, const char **atts, int ns, const char *local)
{
    for (; atts && atts[0]; atts += 2) {
        const char *l;
        if (sl_xml_resolve(ctx, atts[0], &l, 0) == ns && strcmp(l, local) == 0)
            return atts[1];
    }
    return NULL;
}

/* ---- glue to the extraction result ---------------------------------------- */

static int sl_zip_expired(const void *lim)
{
    return sl_extract_expired(lim);
}

sl_zip *sl_zip_open_for(const char *buf, size_t len, const sl_extract_limits *lim,
                        sl_extract_result *out)
{
    sl_zip_caps caps = {0};
    caps.max_entry = lim->max_entry_inflated;
    if (lim->max_file_inflated) {
        /* what an enclosing gzip or mail already inflated counts too; a
         * budget already spent still caps at one byte, not "no cap" */
        caps.max_total = out->inflated < lim->max_file_inflated
                             ? lim->max_file_inflated - out->inflated
                             : 1;
    }
    caps.expired = sl_zip_expired;
    caps.expired_arg = lim;
    int code;
    sl_zip *z = sl_zip_open(buf, len, &caps, &code);
    if (!z)
        sl_extract_error(out, "%s", sl_zip_strerror(code));
    return z;
}

void sl_zip_done(sl_zip *z, sl_extract_result *out)
{
    if (!z)
        return;
    out->inflated += z->total;
    sl_zip_close(z);
}

int sl_zip_result(sl_extract_result *out, int code)
{
    if (code == SL_ZIP_OK)
        return SL_EXTRACT_OK;
    if (code == SL_ZIP_STOPPED) {
        /* handlers stop when the text is full (a result) or when an append
         * failed, which already set out->err */
        return out->err[0] ? SL_EXTRACT_ERR : SL_EXTRACT_OK;
    }
    if (code == SL_ZIP_ENCRYPTED)
        out->flags |= SL_EXTRACT_ENCRYPTED;
    return sl_extract_error(out, "%s", sl_zip_strerror(code));
}
