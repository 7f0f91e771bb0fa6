/*
 * Zip containers from memory for the Office extractors (see zip.h).
 *
 * libzip does the container work (central directory, inflate, CRC), and
 * libdeflate inflates the entries small enough to inflate whole (faster than
 * zlib's streaming inflate); this file adds what both leave to their caller: caps on what comes out of the
 * inflater, counted as it comes, so a 10 GB entry of zeros in a 10 MB zip, or
 * an entry whose real size is far above what its header says, stops at the
 * cap instead of filling memory. The XML half gives libxml2 the same stream and
 * shuts the door on entity declarations before any expansion can happen.
 */
#include "extract/zip.h"
#include "extract/extract.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <libdeflate.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <zip.h>

/* Inflate in chunks this big: large enough that the parser's per-call overhead
 * vanishes, small enough to stay in cache. */
#define SL_ZIP_CHUNK (64 * 1024)
/* Entries declared up to this size inflate whole with libdeflate (the
 * parts of nearly every office file); larger ones stream through zlib, so
 * a big sheet never sits in memory whole. */
#define SL_ZIP_WHOLE_MAX (4u << 20)

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

void sl_zip_rewind(sl_zip *z, size_t total)
{
    if (total < z->total)
        z->total = total;
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

/* Inflates entry idx in one call to libdeflate (2-3 times faster than
 * zlib's streaming inflate) into *out, exactly st->size bytes with the CRC
 * checked. Only for an unencrypted deflated entry declared at most
 * SL_ZIP_WHOLE_MAX bytes and within what the caps leave, so that counting
 * its bytes can stop nothing the streaming read would not. Returns 1 when
 * *out holds the entry; 0 when the entry is not one for this path or is not
 * exactly what its header says (then the streaming read takes it from the
 * start and tells what is wrong, as it always did); -1 out of memory. */
/* One decompressor per thread (setting one up costs more than inflating a
 * small part), freed when the thread ends. */
static pthread_key_t sl_zip_dkey;
static int sl_zip_dkey_ok;
static pthread_once_t sl_zip_donce = PTHREAD_ONCE_INIT;

static void sl_zip_dfree(void *d)
{
    libdeflate_free_decompressor(d);
}

static void sl_zip_dinit(void)
{
    sl_zip_dkey_ok = pthread_key_create(&sl_zip_dkey, sl_zip_dfree) == 0;
}

/* NULL when out of memory, or when no key was left: then entries stream. */
static struct libdeflate_decompressor *sl_zip_decompressor(void)
{
    pthread_once(&sl_zip_donce, sl_zip_dinit);
    if (!sl_zip_dkey_ok)
        return NULL;
    struct libdeflate_decompressor *d = pthread_getspecific(sl_zip_dkey);
    if (!d) {
        d = libdeflate_alloc_decompressor();
        if (d && pthread_setspecific(sl_zip_dkey, d) != 0) {
            libdeflate_free_decompressor(d);
            d = NULL;
        }
    }
    return d;
}

static int sl_zip_whole(sl_zip *z, zip_uint64_t idx, const zip_stat_t *st, char **out)
{
    const zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD |
                              ZIP_STAT_CRC | ZIP_STAT_ENCRYPTION_METHOD;
    if ((st->valid & need) != need || st->comp_method != ZIP_CM_DEFLATE ||
        st->encryption_method != ZIP_EM_NONE || st->size == 0 || st->size > SL_ZIP_WHOLE_MAX ||
        st->comp_size == 0 || st->comp_size > SL_ZIP_WHOLE_MAX + SL_ZIP_CHUNK)
        return 0;
    if ((z->caps.max_entry && st->size > z->caps.max_entry) ||
        (z->caps.max_total && z->total + st->size > z->caps.max_total))
        return 0;
    zip_file_t *zf = zip_fopen_index(z->za, idx, ZIP_FL_COMPRESSED);
    if (!zf)
        return 0;
    struct libdeflate_decompressor *d = sl_zip_decompressor();
    char *in = d ? malloc(st->comp_size) : NULL;
    char *o = in ? malloc(st->size) : NULL;
    if (!o) {
        zip_fclose(zf);
        free(in);
        return d ? -1 : 0;
    }
    size_t got = 0;
    int ok = zip_fread(zf, in, st->comp_size) == (zip_int64_t)st->comp_size &&
             libdeflate_deflate_decompress(d, in, st->comp_size, o, st->size, &got) ==
                 LIBDEFLATE_SUCCESS &&
             got == st->size && libdeflate_crc32(0, o, got) == st->crc;
    zip_fclose(zf);
    free(in);
    if (!ok) {
        free(o);
        return 0;
    }
    *out = o;
    return 1;
}

int sl_zip_stream(sl_zip *z, const char *name, sl_zip_sink_fn fn, void *ud)
{
    zip_int64_t idx = sl_zip_locate(z, name);
    if (idx < 0)
        return SL_ZIP_NOTFOUND;
    /* the declared size is used to allocate only by sl_zip_whole, within
     * its bounds; otherwise it is one more limit: an entry that inflates
     * past it is lying, and is stopped there */
    zip_stat_t st;
    zip_uint64_t declared = UINT64_MAX;
    int have_stat = zip_stat_index(z->za, (zip_uint64_t)idx, 0, &st) == 0;
    if (have_stat && (st.valid & ZIP_STAT_SIZE))
        declared = st.size;
    char *whole = NULL;
    size_t wlen = 0, woff = 0;
    zip_file_t *zf = NULL;
    char *chunk = NULL;
    int w = have_stat ? sl_zip_whole(z, (zip_uint64_t)idx, &st, &whole) : 0;
    if (w < 0)
        return SL_ZIP_NOMEM;
    if (w > 0) {
        wlen = (size_t)st.size;
    } else {
        zf = zip_fopen_index(z->za, (zip_uint64_t)idx, 0);
        if (!zf)
            return sl_zip_code_of(zip_error_code_zip(zip_get_error(z->za)));
        chunk = malloc(SL_ZIP_CHUNK);
        if (!chunk) {
            zip_fclose(zf);
            return SL_ZIP_NOMEM;
        }
    }
    int rc = SL_ZIP_OK;
    size_t entry = 0;
    for (;;) {
        /* counted before the sink sees it: a bomb costs one chunk of work
         * past the cap, never more; a whole entry goes out in the same
         * chunks a streaming read would give */
        const char *piece = chunk;
        zip_int64_t n;
        if (whole) {
            n = (zip_int64_t)(wlen - woff < SL_ZIP_CHUNK ? wlen - woff : SL_ZIP_CHUNK);
            piece = whole + woff;
            woff += (size_t)n;
        } else {
            n = zip_fread(zf, chunk, SL_ZIP_CHUNK);
        }
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
        int s = fn(ud, piece, (size_t)n);
        if (s) {
            rc = s;
            break;
        }
    }
    free(whole);
    free(chunk);
    if (zf)
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

/* libxml2's SAX2 push parser rather than expat: it resolves namespaces to
 * interned URI strings (a pointer compare finds our id) and was 1.5 times
 * faster than expat without namespaces on Word and Excel markup, 2.4 times
 * faster than expat with them. */

void sl_xml_stop(sl_xml_base *ctx, int status)
{
    if (ctx->status == SL_ZIP_OK)
        ctx->status = status;
    xmlStopParser((xmlParserCtxtPtr)ctx->parser);
}

static int sl_xml_ns_id(const char *uri);

/* The id of an interned URI; the last few are remembered by pointer. */
static int sl_xml_uri(sl_xml_base *b, const xmlChar *uri)
{
    if (!uri)
        return SL_NS_OTHER;
    /* nearly every element is in the same namespace as the one before */
    if (uri == b->uri_last)
        return b->uri_last_id;
    int id = -1;
    for (int i = 0; i < 4; i++)
        if (b->uri_seen[i] == uri)
            id = b->uri_id[i];
    if (id < 0) {
        id = sl_xml_ns_id((const char *)uri);
        unsigned k = b->uri_next++ % 4;
        b->uri_seen[k] = uri;
        b->uri_id[k] = id;
    }
    b->uri_last = uri;
    b->uri_last_id = id;
    return id;
}

static void sl_xml_start(void *ud, const xmlChar *local, const xmlChar *prefix,
                         const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                         int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    (void)prefix, (void)nb_namespaces, (void)namespaces, (void)nb_defaulted;
    sl_xml_base *b = ud;
    if (!b->on_start)
        return;
    b->ns = sl_xml_uri(b, uri);
    b->atts = (const char **)attributes;
    b->natts = nb_attributes;
    b->have_vals = 0;
    b->on_start(ud, (const char *)local, (const char **)attributes);
    b->atts = NULL;
    b->natts = 0;
}

static void sl_xml_end(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri)
{
    (void)prefix;
    sl_xml_base *b = ud;
    if (!b->on_end)
        return;
    b->ns = sl_xml_uri(b, uri);
    b->on_end(ud, (const char *)local);
}

static void sl_xml_chars(void *ud, const xmlChar *s, int n)
{
    sl_xml_base *b = ud;
    if (b->on_text)
        b->on_text(ud, (const char *)s, n);
}

/* Any entity declaration, internal or external, general or parameter, ends
 * the parse: office formats never need one, and refusing them at declaration
 * time means no expansion ever starts. */
static void sl_xml_on_entity(void *ud, const xmlChar *name, int type, const xmlChar *public_id,
                             const xmlChar *system_id, xmlChar *content)
{
    (void)name, (void)type, (void)public_id, (void)system_id, (void)content;
    sl_xml_stop(ud, SL_ZIP_ENTITY);
}

/* Errors are told by the parse's result, never on stderr. */
static void sl_xml_quiet(void *ud, const xmlError *err)
{
    (void)ud, (void)err;
}

/* One finished parser context kept per thread: an archive has a dozen or
 * more small parts, and a reset costs a fraction of a new context (3% of the
 * instructions for a DOCX). Only a parse that ended cleanly leaves one
 * behind, with empty element and namespace stacks, no DOCTYPE (whose
 * attribute defaults would outlive it) and a small dictionary, so nothing
 * of one document carries into the next but interned names. All our
 * parsers share one SAX handler table, so the kept one fits any caller. */
#define SL_XML_SPARE_DICT 4096
static _Thread_local xmlParserCtxtPtr sl_xml_spare;

/* A new push parser context with our SAX table and ctx as user data. */
static xmlParserCtxtPtr sl_xml_ctxt_new(sl_xml_base *ctx)
{
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = sl_xml_start;
    sax.endElementNs = sl_xml_end;
    sax.characters = sl_xml_chars;
    sax.cdataBlock = sl_xml_chars;
    sax.entityDecl = sl_xml_on_entity;
    sax.serror = (xmlStructuredErrorFunc)sl_xml_quiet;
    xmlParserCtxtPtr c = xmlCreatePushParserCtxt(&sax, ctx, NULL, 0, NULL);
    /* no DTD loading, no network, no entity substitution (NOENT unset) */
    if (c)
        xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    return c;
}

sl_xml_parser *sl_xml_parser_new(sl_xml_base *ctx)
{
    sl_extract_init_libxml();
    memset(ctx, 0, sizeof *ctx);
    xmlParserCtxtPtr c = sl_xml_spare;
    sl_xml_spare = NULL;
    if (c && xmlCtxtResetPush(c, NULL, 0, NULL, NULL) != 0) {
        xmlFreeParserCtxt(c);
        c = NULL;
    }
    if (c) {
        c->userData = ctx;
        xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        ctx->reused = 1;
    } else {
        c = sl_xml_ctxt_new(ctx);
    }
    if (!c)
        return NULL;
    ctx->parser = (sl_xml_parser *)c;
    return ctx->parser;
}

void sl_xml_set_handlers(sl_xml_parser *p, sl_xml_start_fn start, sl_xml_end_fn end)
{
    sl_xml_base *b = ((xmlParserCtxtPtr)p)->userData;
    b->on_start = start;
    b->on_end = end;
}

void sl_xml_set_text(sl_xml_parser *p, sl_xml_text_fn text)
{
    sl_xml_base *b = ((xmlParserCtxtPtr)p)->userData;
    b->on_text = text;
}

void sl_xml_parser_free(sl_xml_parser *p)
{
    xmlParserCtxtPtr c = (xmlParserCtxtPtr)p;
    sl_xml_base *b = c->userData;
    free(b->vals);
    free(b->scratch);
    b->vals = NULL;
    b->scratch = NULL;
    b->parser = NULL;
    /* an entity declaration makes libxml2 create a document to hold it,
     * even with SAX callbacks, and leaves it to us */
    if (c->myDoc)
        xmlFreeDoc(c->myDoc);
    c->myDoc = NULL;
    int clean = b->status == SL_ZIP_OK && c->wellFormed && c->instate == XML_PARSER_EOF &&
                c->nameNr == 0 && c->nsNr == 0 && c->inputNr == 1 && c->dict &&
                !c->intSubName && !c->attsDefault && !c->attsSpecial && /* no DOCTYPE */
                xmlDictSize(c->dict) < SL_XML_SPARE_DICT;
    c->userData = NULL;
    if (clean && !sl_xml_spare)
        sl_xml_spare = c;
    else
        xmlFreeParserCtxt(c);
}

static int sl_xml_feed(sl_xml_base *ctx, const char *buf, size_t len, int final)
{
    xmlParserCtxtPtr c = (xmlParserCtxtPtr)ctx->parser;
    if (ctx->reused && len > 0) {
        /* a context reset without data calls a document with a byte order
         * mark (UTF-8 or UTF-16) empty: libxml2 2.9 looks for one only in
         * the bytes a reset is given. So one that does not open with '<' is
         * reset again with its first four bytes. */
        ctx->reused = 0;
        if (buf[0] != '<') {
            size_t k = len < 4 ? len : 4;
            if (xmlCtxtResetPush(c, buf, (int)k, NULL, NULL) != 0)
                return SL_ZIP_NOMEM;
            c->userData = ctx;
            xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
            buf += k;
            len -= k;
        }
    }
    while (len > 0 || final) {
        /* libxml2 takes an int length */
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        int last = final && (size_t)n == len;
        xmlParseChunk(c, buf, n, last);
        if (ctx->status != SL_ZIP_OK)
            return ctx->status;
        /* namespace errors (an unbound prefix) are not fatal: the text is
         * still there; well-formedness errors are */
        if (!c->wellFormed)
            return c->errNo == XML_ERR_NO_MEMORY ? SL_ZIP_NOMEM : SL_ZIP_BADXML;
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

int sl_xml_ns(const void *ctx, const char *name, const char **local)
{
    *local = name;
    return ((const sl_xml_base *)ctx)->ns;
}

/* Copies the current start tag's attribute values (libxml2 gives them as
 * begin/end pointers) into NUL-terminated strings, all at once so that
 * values already handed out stay valid. */
static int sl_xml_values(sl_xml_base *b)
{
    size_t need = 0;
    for (int i = 0; i < b->natts; i++)
        need += (size_t)(b->atts[i * 5 + 4] - b->atts[i * 5 + 3]) + 1;
    if (need > b->scratch_cap) {
        char *p = realloc(b->scratch, need);
        if (!p)
            return -1;
        b->scratch = p;
        b->scratch_cap = need;
    }
    if ((size_t)b->natts > b->vals_cap) {
        const char **v = realloc(b->vals, (size_t)b->natts * sizeof *v);
        if (!v)
            return -1;
        b->vals = v;
        b->vals_cap = (size_t)b->natts;
    }
    char *w = b->scratch;
    for (int i = 0; i < b->natts; i++) {
        size_t n = (size_t)(b->atts[i * 5 + 4] - b->atts[i * 5 + 3]);
        memcpy(w, b->atts[i * 5 + 3], n);
        w[n] = '\0';
        b->vals[i] = w;
        w += n + 1;
    }
    b->have_vals = 1;
    return 0;
}

const char *sl_xml_attr_span(const void *ctx, int ns, const char *local, size_t *len)
{
    sl_xml_base *b = (sl_xml_base *)ctx;
    for (int i = 0; i < b->natts; i++) {
        const char **a = b->atts + i * 5;
        if (strcmp(a[0], local) != 0 || sl_xml_uri(b, (const xmlChar *)a[2]) != ns)
            continue;
        *len = (size_t)(a[4] - a[3]);
        return a[3];
    }
    *len = 0;
    return NULL;
}

const char *sl_xml_attr(const void *ctx, const char **atts, int ns, const char *local)
{
    (void)atts;
    sl_xml_base *b = (sl_xml_base *)ctx;
    for (int i = 0; i < b->natts; i++) {
        const char **a = b->atts + i * 5;
        if (strcmp(a[0], local) != 0 || sl_xml_uri(b, (const xmlChar *)a[2]) != ns)
            continue;
        if (!b->have_vals && sl_xml_values(b) != 0) {
            sl_xml_stop(b, SL_ZIP_NOMEM);
            return NULL;
        }
        return b->vals[i];
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
