/*
 * Reading zip containers (OOXML, ODF) from memory, with caps enforced while
 * inflating, and feeding their XML parts to an XML parser safely.
 *
 * A zip's declared sizes are attacker-controlled, so nothing here trusts
 * them: bytes are counted as they come out of the inflater, per entry and per
 * archive, and reading stops with SL_ZIP_TOOBIG the moment a cap is passed,
 * or with SL_ZIP_BADSIZE the moment an entry passes its declared size.
 * Buffers grow with what was actually read, never with what a header says,
 * but for one bounded case: an entry declared at most 4 MB (and within the
 * caps) is inflated whole into a buffer of its declared size, and if it is
 * not exactly that size with that CRC, it is read again streaming.
 *
 * XML parts are parsed by libxml2's SAX2 push parser as they inflate (no
 * whole-part buffer). A parser made by sl_xml_parser_new() refuses documents
 * that declare entities (billion laughs and friends never get to expand),
 * and its user data must start with an sl_xml_base so a handler can stop the
 * parse with a reason.
 */
#ifndef SL_EXTRACT_ZIP_H
#define SL_EXTRACT_ZIP_H

#include <stddef.h>

typedef struct sl_zip sl_zip;

/* Inflated-byte caps; 0 means no cap. */
typedef struct {
    size_t max_entry; /* per entry */
    size_t max_total; /* summed over every entry read from one archive */
    /* polled once per inflated chunk; nonzero ends the read with
     * SL_ZIP_TIMEOUT (NULL: never) */
    int (*expired)(const void *arg);
    const void *expired_arg;
} sl_zip_caps;

enum {
    SL_ZIP_OK = 0,
    SL_ZIP_NOTFOUND, /* no such entry */
    SL_ZIP_TOOBIG,   /* an inflated-size cap was reached */
    SL_ZIP_CORRUPT,  /* not a zip, truncated, bad CRC, unsupported method */
    SL_ZIP_ENCRYPTED,
    SL_ZIP_BADXML,   /* malformed XML in a part */
    SL_ZIP_ENTITY,   /* the XML declares entities: refused */
    SL_ZIP_STOPPED,  /* a sink or handler asked to stop (see sl_xml_base) */
    SL_ZIP_NOMEM,
    SL_ZIP_TIMEOUT,
    SL_ZIP_BADSIZE   /* an entry inflates past its declared size */
};

/* Opens the archive in buf[0..len) without copying it: buf must outlive the
 * sl_zip. Returns NULL with *code set (SL_ZIP_CORRUPT or SL_ZIP_NOMEM). */
sl_zip *sl_zip_open(const void *buf, size_t len, const sl_zip_caps *caps, int *code);
void sl_zip_close(sl_zip *z);

/* 1 when the archive holds an entry named `name` (exact, then ignoring case,
 * as OPC part names are case-insensitive). */
int sl_zip_has(sl_zip *z, const char *name);
long sl_zip_count(sl_zip *z);
/* The name of entry i, owned by the sl_zip; NULL past the end. */
const char *sl_zip_name(sl_zip *z, long i);
/* Inflated bytes read so far from this archive. */
size_t sl_zip_total(const sl_zip *z);
/* Forgets what was inflated since sl_zip_total() returned `total`, for a
 * part read again from its start (sheet.c's fast path gave up on it): the
 * caps then count its bytes once. */
void sl_zip_rewind(sl_zip *z, size_t total);

/* Called with each inflated chunk; a nonzero return stops the read, which
 * then returns that value. */
typedef int (*sl_zip_sink_fn)(void *ud, const char *chunk, size_t n);

/* Streams entry `name` through fn. Returns SL_ZIP_OK or an error code. */
int sl_zip_stream(sl_zip *z, const char *name, sl_zip_sink_fn fn, void *ud);

/* Reads entry `name` whole into a malloc'd, NUL-terminated buffer the caller
 * frees. On error *out is NULL. */
int sl_zip_read(sl_zip *z, const char *name, char **out, size_t *outlen);

/* A short lowercase message for a code ("zip bomb: inflated size limit"). */
const char *sl_zip_strerror(int code);

/* ---- XML parts -------------------------------------------------------- */

/* Handlers get an element's local name; sl_xml_ns tells its namespace and
 * sl_xml_attr reads its attributes (`atts` is opaque: pass it on). */
typedef void (*sl_xml_start_fn)(void *ud, const char *name, const char **atts);
typedef void (*sl_xml_end_fn)(void *ud, const char *name);
typedef void (*sl_xml_text_fn)(void *ud, const char *s, int n);
typedef struct sl_xml_parser sl_xml_parser;

/* Every parser context starts with this; handlers stop a parse with
 * sl_xml_stop(), which records why. The rest is zip.c's bookkeeping. */
typedef struct {
    sl_xml_parser *parser;
    int status; /* SL_ZIP_OK, or why the parse was stopped */
    sl_xml_start_fn on_start;
    sl_xml_end_fn on_end;
    sl_xml_text_fn on_text;
    int ns;                 /* namespace id of the element being reported */
    const void *uri_seen[4];/* interned namespace URIs met last, and their ids */
    int uri_id[4];
    unsigned uri_next;
    const void *uri_last;   /* the one asked for last, checked first */
    int uri_last_id;
    const char **atts;      /* libxml2's 5-tuples of the current start tag */
    int natts;
    const char **vals;      /* their values, NUL-terminated, once asked for */
    int have_vals;
    char *scratch;
    size_t scratch_cap, vals_cap;
    int reused;             /* the parser is a kept one, reset, not yet fed */
} sl_xml_base;

/* A parser with `ctx` (which starts with an sl_xml_base) as user data, that
 * refuses entity declarations, never touches the network and reports
 * nothing on stderr. NULL when out of memory. Free it with
 * sl_xml_parser_free. */
sl_xml_parser *sl_xml_parser_new(sl_xml_base *ctx);
void sl_xml_set_handlers(sl_xml_parser *p, sl_xml_start_fn start, sl_xml_end_fn end);
void sl_xml_set_text(sl_xml_parser *p, sl_xml_text_fn text);
void sl_xml_parser_free(sl_xml_parser *p);
void sl_xml_stop(sl_xml_base *ctx, int status);

/* Parses entry `name` with the parser in ctx as it inflates. */
int sl_zip_parse_xml(sl_zip *z, const char *name, sl_xml_base *ctx);

/* Parses buf[0..len) with the parser in ctx (for XML not in a zip). */
int sl_xml_parse_buffer(sl_xml_base *ctx, const char *buf, size_t len);

/* Namespaces the office formats use; OOXML's transitional and strict URIs
 * map to the same id. */
enum {
    SL_NS_OTHER = 0,
    SL_NS_W, SL_NS_A, SL_NS_P, SL_NS_S, SL_NS_R, SL_NS_MC, SL_NS_PKGREL,
    SL_NS_DC, SL_NS_DCTERMS, SL_NS_OFFICE, SL_NS_TEXT, SL_NS_TABLE,
    SL_NS_DRAW, SL_NS_META, SL_NS_PRESENTATION, SL_NS_MANIFEST
};

/* The namespace id of the element a handler of ctx's parser was called for
 * (`name` is what it got); *local gets the local name. */
int sl_xml_ns(const void *ctx, const char *name, const char **local);
/* The value of attribute (ns, local) in a handler's atts array, or NULL.
 * Unprefixed attributes are in no namespace (SL_NS_OTHER), as XML says. */
const char *sl_xml_attr(const void *ctx, const char **atts, int ns, const char *local);
/* The same value in place, not NUL-terminated, *len bytes long: valid only
 * inside the handler, and with no copy, for attributes read on every element. */
const char *sl_xml_attr_span(const void *ctx, int ns, const char *local, size_t *len);

/* ---- glue to the extraction result (extract.h) -------------------------- */

struct sl_extract_result;
struct sl_extract_limits;

/* Opens buf with lim's caps (what is left of the per-file budget in
 * out->inflated, the deadline); on failure sets out->err and returns NULL. */
sl_zip *sl_zip_open_for(const char *buf, size_t len, const struct sl_extract_limits *lim,
                        struct sl_extract_result *out);
/* Adds what z inflated to out->inflated and closes z. */
void sl_zip_done(sl_zip *z, struct sl_extract_result *out);
/* Turns a zip/xml code into an extractor return: SL_ZIP_OK, and a stop
 * because the text is full, are SL_EXTRACT_OK; others set out->err. */
int sl_zip_result(struct sl_extract_result *out, int code);

#endif
