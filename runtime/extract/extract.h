/*
 * The internal C interface of content extraction (runtime/extract/).
 *
 * Every format is one function with the same shape,
 *     int sl_extract_<fmt>(const char *buf, size_t len,
 *                          const sl_extract_limits *lim,
 *                          sl_extract_result *out);
 * which reads a whole document from memory and appends its text and
 * metadata to `out`. Memory in, memory out: the Lua module (extract.c) owns
 * files, streaming, threads and the event loop, so a format file holds only
 * parsing and can be fuzzed as a plain function.
 *
 * Contract for an extractor:
 *  - Append text only through sl_extract_append / _newline / _space: they
 *    enforce lim->max_chars and set SL_EXTRACT_TRUNCATED. When append
 *    returns nonzero, stop parsing and return SL_EXTRACT_OK (a truncated
 *    text is a result, not an error).
 *  - Text must be UTF-8: convert legacy charsets with sl_extract_text_cs.
 *    Hygiene (NUL removal, control bytes shown as \xNN, ill-formed UTF-8 to
 *    U+FFFD) is NOT done here: the sync engine applies sluice.text.clean to
 *    every string of every document, so doing it twice would only cost
 *    time. Extractors must still never emit a NUL inside the buffer's C
 *    string if they can avoid it; the buffer is always NUL-terminated.
 *  - Enforce the inflation limits while inflating (count the bytes you
 *    actually got, never trust declared sizes): sl_extract_inflated().
 *  - Poll sl_extract_expired(lim) in loops that can run long; on expiry
 *    return sl_extract_error(out, "timeout").
 *  - A damaged document is `return sl_extract_error(out, "...")` with a
 *    short lowercase message; never abort(), never exit().
 *  - Metadata: sl_extract_meta() (first non-empty value wins, whitespace
 *    trimmed). Dates are ISO 8601 strings ("2024-01-31T12:00:00Z" or
 *    whatever precision the format has).
 *
 * Thread safety: extractors run on libuv's thread pool, several at once.
 * Use no static mutable state; libxml2 and expat are used per-call.
 */
#ifndef SL_EXTRACT_H
#define SL_EXTRACT_H

#include <stddef.h>
#include <stdint.h>

/* Return codes of every sl_extract_* function. */
#define SL_EXTRACT_OK 0
#define SL_EXTRACT_ERR (-1)         /* out->err holds the reason */
#define SL_EXTRACT_UNSUPPORTED (-2) /* out->err starts with "unsupported" */

/* out->flags */
#define SL_EXTRACT_ENCRYPTED 0x1u /* password-protected: text not available */
#define SL_EXTRACT_NO_TEXT 0x2u   /* parsed fine but holds no text (scans) */
#define SL_EXTRACT_TRUNCATED 0x4u /* a cap cut the text (max_chars, inflation) */

typedef struct sl_extract_limits {
    size_t max_input;         /* bytes of input accepted (0: no cap) */
    size_t max_entry_inflated;/* bytes inflated from one archive entry */
    size_t max_file_inflated; /* bytes inflated from all entries of a file */
    size_t max_chars;         /* characters (code points) of output text */
    double deadline;          /* sl_extract_now() value; 0: none */
    int depth;                /* nesting (attachments, gzip); callers +1 */
} sl_extract_limits;

/* Defaults used by extract.text when opts leave a limit out. */
#define SL_EXTRACT_DEFAULT_MAX_INPUT (64u << 20)
#define SL_EXTRACT_DEFAULT_MAX_ENTRY (64u << 20)
#define SL_EXTRACT_DEFAULT_MAX_FILE (256u << 20)
#define SL_EXTRACT_DEFAULT_MAX_CHARS (8u << 20)
#define SL_EXTRACT_DEFAULT_TIMEOUT 30.0
#define SL_EXTRACT_MAX_DEPTH 4

typedef struct sl_extract_result {
    char *text;        /* UTF-8, NUL-terminated; malloc'd, may be NULL */
    size_t len, cap;   /* bytes used / allocated in text */
    size_t nchars;     /* code points in text (what max_chars counts) */
    char *title, *author, *created, *modified; /* malloc'd or NULL */
    int pages;         /* -1: not a paged format / unknown */
    unsigned flags;    /* SL_EXTRACT_* flags */
    size_t inflated;   /* bytes inflated so far (per-file inflation cap) */
    const sl_extract_limits *lim;
    char mime[96];     /* detected type, e.g. "application/pdf" */
    char err[160];     /* set with SL_EXTRACT_ERR / _UNSUPPORTED */
} sl_extract_result;

/* --- result and text buffer (extract.c) ------------------------------ */

/* Zeroes r and binds it to lim (which must outlive r). Never fails. */
void sl_extract_result_init(sl_extract_result *r, const sl_extract_limits *lim);
/* Frees what r owns; r may then be initialised again. */
void sl_extract_result_free(sl_extract_result *r);
/* Fills lim with the defaults above and a deadline `timeout` seconds from
 * now (<= 0: none). */
void sl_extract_limits_default(sl_extract_limits *lim, double timeout);

/* Appends n bytes of UTF-8. Returns 0 while more text is wanted; nonzero
 * once the max_chars cap is reached (the text is cut at a character
 * boundary and SL_EXTRACT_TRUNCATED set) or memory ran out (err set). */
int sl_extract_append(sl_extract_result *r, const char *s, size_t n);
/* Appends "\n" unless the text is empty or already ends with one: block
 * boundaries (paragraphs, rows, pages) collapse to a single newline. */
int sl_extract_newline(sl_extract_result *r);
/* Appends " " unless the text is empty or ends with a space or newline. */
int sl_extract_space(sl_extract_result *r);
/* Appends s with runs of ASCII whitespace collapsed to one space (for
 * markup formats whose source layout is not the text's layout). */
int sl_extract_append_collapsed(sl_extract_result *r, const char *s, size_t n);
/* True once the text hit its cap: extractors stop early. */
int sl_extract_full(const sl_extract_result *r);

/* Sets *slot (one of r->title etc.) from s, trimmed, if *slot is still NULL
 * and s is not blank. Out of memory is ignored (metadata is optional). */
void sl_extract_meta(char **slot, const char *s, size_t n);

/* Sets r->err (printf-style) and returns SL_EXTRACT_ERR. */
int sl_extract_error(sl_extract_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets r->err to "unsupported: <what>" and returns SL_EXTRACT_UNSUPPORTED. */
int sl_extract_unsupported(sl_extract_result *r, const char *what);

/* Monotonic seconds. */
double sl_extract_now(void);
/* True when lim has a deadline and it has passed. */
int sl_extract_expired(const sl_extract_limits *lim);
/* Accounts n more inflated bytes, of which `entry_total` so far belong to
 * the current archive entry. Returns 0 if within both inflation caps, or
 * sets err ("inflated size over limit") and returns SL_EXTRACT_ERR. */
int sl_extract_inflated(sl_extract_result *r, size_t n, size_t entry_total);

/* Inflates a gzip member (text.c) with both inflation caps enforced as
 * bytes arrive; *res is malloc'd (NUL-terminated), the caller frees it. */
int sl_extract_gunzip(const char *buf, size_t len, sl_extract_result *out,
                      char **res, size_t *res_len);

/* --- detection (detect.c) -------------------------------------------- */

typedef enum sl_extract_kind {
    SL_KIND_UNKNOWN = 0, /* binary we cannot read: metadata only */
    SL_KIND_TEXT, SL_KIND_HTML, SL_KIND_XML, SL_KIND_JSON, SL_KIND_CSV,
    SL_KIND_TSV, SL_KIND_PDF, SL_KIND_DOCX, SL_KIND_XLSX, SL_KIND_PPTX,
    SL_KIND_ODT, SL_KIND_ODS, SL_KIND_ODP, SL_KIND_RTF, SL_KIND_EML,
    SL_KIND_GZIP, SL_KIND_ZIP, /* zip that is none of the above */
    SL_KIND_COUNT
} sl_extract_kind;

/* Decides the kind from the content; `name` (may be NULL) is only a hint
 * that settles ties the bytes leave open (CSV vs text, XHTML vs XML). Writes
 * the MIME type (at most mime_size bytes, NUL-terminated). Thread-safe. */
sl_extract_kind sl_extract_detect(const char *buf, size_t len,
                                  const char *name, char *mime,
                                  size_t mime_size);
/* A short lowercase name for a kind ("pdf", "docx", "text"...). */
const char *sl_extract_kind_name(sl_extract_kind kind);
/* The kind for a name from sl_extract_kind_name, or SL_KIND_UNKNOWN. */
sl_extract_kind sl_extract_kind_from_name(const char *name);

/* --- the dispatcher (extract.c) -------------------------------------- */

/* Detects buf's kind (name is a hint, may be NULL) unless `forced` is not
 * SL_KIND_UNKNOWN, sets out->mime, unwraps gzip, and calls the format's
 * extractor. Appends to out, so an EML extractor may call it for each
 * attachment with a copy of lim whose depth is one more (it refuses past
 * SL_EXTRACT_MAX_DEPTH). Unknown binary is SL_EXTRACT_UNSUPPORTED. */
int sl_extract_buffer(const char *buf, size_t len, const char *name,
                      sl_extract_kind forced, const sl_extract_limits *lim,
                      sl_extract_result *out);

/* --- formats in this tree (html.c, text.c, pdf.c) -------------------- */

int sl_extract_html(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
/* As sl_extract_html, with the charset a transport declared (mail part,
 * HTTP header); NULL means "from the document, else detect". */
int sl_extract_html_cs(const char *buf, size_t len, const char *charset,
                       const sl_extract_limits *lim, sl_extract_result *out);
/* HTML in pieces, for a document read from a file or a socket: begin with
 * (at least) its first SL_EXTRACT_HTML_HEAD bytes, which decide the charset
 * exactly as sl_extract_html_cs would, then feed every byte from the start,
 * head included, and end. feed returns nonzero once the parse has stopped
 * (text full, timeout, no memory): the rest need not be read. end frees the
 * stream and returns SL_EXTRACT_OK or _ERR. begin is NULL (err set) when
 * out of memory. */
#define SL_EXTRACT_HTML_HEAD 65536
typedef struct sl_html_stream sl_html_stream;
sl_html_stream *sl_extract_html_begin(const char *head, size_t len, const char *charset,
                                      const sl_extract_limits *lim, sl_extract_result *out);
int sl_extract_html_feed(sl_html_stream *st, const char *buf, size_t len);
int sl_extract_html_end(sl_html_stream *st);
int sl_extract_xml(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_json(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
int sl_extract_csv(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_tsv(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
/* Plain text in any charset: BOM, UTF-16/32, else uchardet. */
int sl_extract_text(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
/* Appends buf converted from `charset` to UTF-8 (NULL or unknown charset:
 * BOM, then uchardet, then windows-1252). For RTF code pages and mail
 * parts: charset names are iconv's ("windows-1252", "CP1251", "UTF-16LE"). */
int sl_extract_text_cs(const char *buf, size_t len, const char *charset,
                       const sl_extract_limits *lim, sl_extract_result *out);
/* Runs poppler in a worker process (pdf_worker.c); see pdf.c. */
int sl_extract_pdf(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);

/* --- PDF worker protocol (pdf.c is the client, pdf_worker.c the worker)
 * One socket per worker. Request: a record SL_PDF_REQ whose payload is
 * {uint64 max_chars} then the document as a SL_PDF_DOC record. Reply:
 * records META_* and TEXT, then SL_PDF_END whose payload is
 * {int32 rc, uint32 flags, int32 pages} and, if rc != 0, the error text.
 * Both ends are the same binary, so host byte order is fine. */
enum {
    SL_PDF_REQ = 0x51u, SL_PDF_DOC, SL_PDF_TITLE, SL_PDF_AUTHOR,
    SL_PDF_CREATED, SL_PDF_MODIFIED, SL_PDF_TEXT, SL_PDF_END
};
typedef struct sl_pdf_rec {
    uint32_t tag, pad;
    uint64_t len;
} sl_pdf_rec;
/* The environment variable that makes a sluice binary start as a PDF
 * worker (serving requests on fd 0) instead of running main(). */
#define SL_PDF_WORKER_ENV "SLUICE_PDF_WORKER"

/* The process ids of the idle PDF workers (at most max); for tests that
 * kill or stop a worker to check the isolation. */
int sl_extract_pdf_idle_workers(int *pids, int max);

/* Initialises libxml2 once, before any thread parses (html.c). */
void sl_extract_init_libxml(void);

/* --- formats of the office/mail side (ooxml.c, odf.c, rtf.c, eml.c) --
 * Until those files exist, extract.c defines weak stubs that return
 * SL_EXTRACT_UNSUPPORTED, so the build never breaks. */

int sl_extract_docx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
int sl_extract_xlsx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
int sl_extract_pptx(const char *buf, size_t len, const sl_extract_limits *lim,
                    sl_extract_result *out);
int sl_extract_odt(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_ods(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_odp(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_rtf(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);
int sl_extract_eml(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out);

#endif
