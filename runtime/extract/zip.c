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

XML_Parser sl_xml_parser_new(sl_xml_base *ctx)
{
    XML_Parser p = XML_ParserCreateNS(NULL, '|');
    if (!p)
        return NULL;
    ctx->parser = p;
    ctx->status = SL_ZIP_OK;
    XML_SetUserData(p, ctx);
    XML_SetEntityDeclHandler(p, sl_xml_on_entity);
    /* external DTDs and parameter entities are never fetched */
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
    return p;
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

int sl_xml_ns(const char *name, const char **local)
{
    const char *bar = strchr(name, '|');
    if (!bar) {
        *local = name;
        return SL_NS_OTHER;
    }
    *local = bar + 1;
    size_t len = (size_t)(bar - name);
    for (size_t i = 0; i < sizeof sl_xml_nstab / sizeof sl_xml_nstab[0]; i++)
        if (sl_xml_nstab[i].len == len && memcmp(sl_xml_nstab[i].uri, name, len) == 0)
            return sl_xml_nstab[i].id;
    return SL_NS_OTHER;
}

const char *sl_xml_attr(const char **atts, int ns, const char *local)
{
    for (; atts && atts[0]; atts += 2) {
        const char *l;
        if (sl_xml_ns(atts[0], &l) == ns && strcmp(l, local) == 0)
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
