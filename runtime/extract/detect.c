/*
 * Type detection for extraction: which extractor gets the bytes.
 *
 * The content decides; a file name only settles what bytes leave open (a
 * table of comma-separated lines is CSV whatever it is called, but a short
 * one-line "a,b" is CSV only if named so). The formats we extract all have
 * cheap signatures, checked here first: libmagic's database is slow to load
 * and slow to run on text, and one handle is not thread-safe, so it is
 * asked only about binaries we do not recognise, for the MIME type we
 * report, under a mutex. Zip containers are told apart by their entry names
 * (OOXML's part names, ODF's leading "mimetype" entry), which zip stores
 * uncompressed, so no inflation happens here.
 */
#define _GNU_SOURCE /* memmem, memrchr */
#include "extract/extract.h"

#include <ctype.h>
#include <magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SAMPLE_MAX 4096

static const char *const kind_names[SL_KIND_COUNT] = {
    "unknown", "text", "html", "xml", "json", "csv", "tsv", "pdf", "docx",
    "xlsx", "pptx", "odt", "ods", "odp", "rtf", "eml", "gzip", "zip"};

static const char *const kind_mimes[SL_KIND_COUNT] = {
    "application/octet-stream", "text/plain", "text/html", "application/xml",
    "application/json", "text/csv", "text/tab-separated-values",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation", "application/rtf",
    "message/rfc822", "application/gzip", "application/zip"};

const char *sl_extract_kind_name(sl_extract_kind kind)
{
    return kind >= 0 && kind < SL_KIND_COUNT ? kind_names[kind] : "unknown";
}

sl_extract_kind sl_extract_kind_from_name(const char *name)
{
    for (int k = 1; k < SL_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0)
            return (sl_extract_kind)k;
    return SL_KIND_UNKNOWN;
}

static const char *ext_of(const char *name)
{
    if (!name)
        return "";
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    return dot ? dot + 1 : "";
}

static int ext_is(const char *ext, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(ext, *list) == 0)
            return 1;
    return 0;
}

static int has(const char *buf, size_t len, const char *needle)
{
    return memmem(buf, len, needle, strlen(needle)) != NULL;
}

/* A zip's kind from its entry names. */
static sl_extract_kind zip_kind(const char *buf, size_t len)
{
    /* ODF puts an uncompressed "mimetype" entry first: header (30 bytes),
     * the name, then the type as the entry's data */
    if (len > 38 && memcmp(buf + 30, "mimetype", 8) == 0) {
        const char *t = buf + 38;
        size_t n = len - 38 < 80 ? len - 38 : 80;
        static const char odf[] = "application/vnd.oasis.opendocument.";
        if (n > sizeof odf - 1 && memcmp(t, odf, sizeof odf - 1) == 0) {
            const char *sub = t + sizeof odf - 1;
            size_t rest = n - (sizeof odf - 1);
            if (rest >= 4 && memcmp(sub, "text", 4) == 0 &&
                (rest == 4 || sub[4] != '-'))
                return SL_KIND_ODT;
            if (rest >= 11 && memcmp(sub, "spreadsheet", 11) == 0 &&
                (rest == 11 || sub[11] != '-'))
                return SL_KIND_ODS;
            if (rest >= 12 && memcmp(sub, "presentation", 12) == 0 &&
                (rest == 12 || sub[12] != '-'))
                return SL_KIND_ODP;
        }
    }
    if (has(buf, len, "[Content_Types].xml")) {
        if (has(buf, len, "word/document.xml") || has(buf, len, "word/_rels"))
            return SL_KIND_DOCX;
        if (has(buf, len, "xl/workbook.xml") || has(buf, len, "xl/_rels"))
            return SL_KIND_XLSX;
        if (has(buf, len, "ppt/presentation.xml") || has(buf, len, "ppt/_rels"))
            return SL_KIND_PPTX;
    }
    return SL_KIND_ZIP;
}

/* An ASCII view of the sample: UTF-16 reduced to its low bytes, BOMs
 * skipped, so markup sniffing works on any encoding of text. */
static size_t ascii_sample(const char *buf, size_t len, char *out, int *utf16)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0, n = 0, step = 1, off = 0;
    *utf16 = 0;
    if (len >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        i = 3;
    } else if (len >= 2 && ((s[0] == 0xff && s[1] == 0xfe) ||
                            (s[0] == 0xfe && s[1] == 0xff))) {
        *utf16 = 1;
        off = s[0] == 0xff ? 0 : 1;
        i = 2, step = 2;
    } else if (len >= 4 && s[0] && !s[1] && s[2] && !s[3]) {
        *utf16 = 1, step = 2; /* BOM-less UTF-16LE of ASCII-range text */
    } else if (len >= 4 && !s[0] && s[1] && !s[2] && s[3]) {
        *utf16 = 1, step = 2, off = 1;
    }
    for (; i + off < len && n < SAMPLE_MAX; i += step)
        out[n++] = (char)s[i + off];
    out[n] = '\0';
    return n;
}

/* Skips whitespace, comments and a BOM-less "<?xml ...?>" prefix in the
 * sample; returns a pointer to the first tag or text. */
static const char *skip_prolog(const char *p, int *xml_decl)
{
    *xml_decl = 0;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (strncmp(p, "<?xml", 5) == 0) {
            *xml_decl = 1;
            const char *e = strstr(p, "?>");
            if (!e)
                return p;
            p = e + 2;
        } else if (strncmp(p, "<!--", 4) == 0) {
            const char *e = strstr(p, "-->");
            if (!e)
                return p;
            p = e + 3;
        } else {
            return p;
        }
    }
}

static int ci_prefix(const char *p, const char *word)
{
    return strncasecmp(p, word, strlen(word)) == 0;
}

/* Markup kind of text: HTML, XML, or 0. */
static sl_extract_kind markup_kind(const char *sample, const char *ext)
{
    static const char *const html_ext[] = {"html", "htm", "xhtml", "xht", "shtml", NULL};
    int xml_decl;
    const char *p = skip_prolog(sample, &xml_decl);
    if (*p != '<')
        return SL_KIND_UNKNOWN;
    if (ci_prefix(p, "<!doctype html") || ci_prefix(p, "<html") ||
        ci_prefix(p, "<head") || ci_prefix(p, "<body"))
        return SL_KIND_HTML;
    if (xml_decl || ci_prefix(p, "<!doctype") || isalpha((unsigned char)p[1])) {
        /* XHTML is XML that a browser renders: extract it as HTML */
        if (strstr(p, "http://www.w3.org/1999/xhtml") || ext_is(ext, html_ext))
            return SL_KIND_HTML;
        if (xml_decl || ci_prefix(p, "<!doctype"))
            return SL_KIND_XML;
        /* a bare tag: XML if it closes somewhere, else just text */
        return strstr(p, "</") || strstr(p, "/>") ? SL_KIND_XML : SL_KIND_UNKNOWN;
    }
    return SL_KIND_UNKNOWN;
}

static sl_extract_kind json_kind(const char *buf, size_t len, const char *sample)
{
    const char *p = sample;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (*p != '{' && *p != '[')
        return SL_KIND_UNKNOWN;
    char open = *p++;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (open == '{' && *p != '"' && *p != '}')
        return SL_KIND_UNKNOWN;
    if (open == '[' && !(*p == '{' || *p == '[' || *p == '"' || *p == ']' ||
                         *p == '-' || isdigit((unsigned char)*p) ||
                         *p == 't' || *p == 'f' || *p == 'n'))
        return SL_KIND_UNKNOWN;
    size_t e = len;
    while (e && (isspace((unsigned char)buf[e - 1]) || buf[e - 1] == '\0'))
        e--;
    if (!e || (buf[e - 1] != (open == '{' ? '}' : ']')))
        return SL_KIND_UNKNOWN;
    return SL_KIND_JSON;
}

/* Delimiter-separated values: every sampled line (at least three, or two
 * when the name says so) has the same nonzero count of delimiters outside
 * quotes. */
static sl_extract_kind table_kind(const char *sample, size_t n, const char *ext)
{
    static const char *const csv_ext[] = {"csv", NULL};
    static const char *const tsv_ext[] = {"tsv", "tab", NULL};
    const char delims[] = {'\t', ',', ';'};
    for (size_t d = 0; d < sizeof delims; d++) {
        int lines = 0, want = -1, ok = 1, quoted = 0, count = 0;
        size_t i = 0;
        /* the last line of the sample may be cut short: stop before it */
        const char *last_nl = memrchr(sample, '\n', n);
        size_t end = last_nl ? (size_t)(last_nl - sample) + 1 : 0;
        for (i = 0; i < end && lines < 20; i++) {
            char c = sample[i];
            if (c == '"')
                quoted = !quoted;
            else if (c == delims[d] && !quoted)
                count++;
            else if (c == '\n' && !quoted) {
                if (!(i > 0 && sample[i - 1] == '\n')) { /* blank lines pass */
                    if (want < 0)
                        want = count;
                    else if (count != want)
                        ok = 0;
                    lines++;
                }
                count = 0;
            }
        }
        int min_lines = (ext_is(ext, csv_ext) || ext_is(ext, tsv_ext)) ? 1 : 3;
        if (ok && want > 0 && lines >= min_lines)
            return delims[d] == '\t' ? SL_KIND_TSV : SL_KIND_CSV;
    }
    if (ext_is(ext, csv_ext))
        return SL_KIND_CSV;
    if (ext_is(ext, tsv_ext))
        return SL_KIND_TSV;
    return SL_KIND_UNKNOWN;
}

/* Mail: the first lines are RFC 5322 headers, with at least two of the
 * headers every message carries. */
static int looks_like_mail(const char *sample)
{
    static const char *const names[] = {"from:", "to:", "subject:", "date:",
                                        "message-id:", "received:",
                                        "mime-version:", "return-path:",
                                        "delivered-to:", NULL};
    const char *p = sample;
    int known = 0;
    if (strncmp(p, "From ", 5) == 0) { /* an mbox "From " line */
        p = strchr(p, '\n');
        if (!p)
            return 0;
        p++;
    }
    for (int line = 0; line < 40 && *p && *p != '\n' && *p != '\r'; line++) {
        if (*p == ' ' || *p == '\t') { /* folded continuation */
        } else {
            const char *c = p;
            while (*c && *c != ':' && *c > ' ' && *c < 127)
                c++;
            if (*c != ':' || c == p)
                return 0;
            for (int k = 0; names[k]; k++)
                if (strncasecmp(p, names[k], strlen(names[k])) == 0)
                    known++;
        }
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    return known >= 2;
}

/* Text: no NULs (outside UTF-16) and few other control bytes. */
static int looks_like_text(const char *buf, size_t len)
{
    size_t n = len < SAMPLE_MAX ? len : SAMPLE_MAX, bad = 0;
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0)
            return 0;
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' &&
             c != 0x1b) || c == 0x7f)
            bad++;
    }
    return bad * 100 <= n;
}

static pthread_mutex_t magic_lock = PTHREAD_MUTEX_INITIALIZER;
static magic_t magic_handle;
static int magic_failed;

/* libmagic's MIME type for a binary we do not extract. */
static void magic_mime(const char *buf, size_t len, char *mime, size_t size)
{
    snprintf(mime, size, "application/octet-stream");
    pthread_mutex_lock(&magic_lock);
    if (!magic_handle && !magic_failed) {
        magic_handle = magic_open(MAGIC_MIME_TYPE);
        if (magic_handle && magic_load(magic_handle, NULL) != 0) {
            magic_close(magic_handle);
            magic_handle = NULL;
        }
        magic_failed = magic_handle == NULL;
    }
    if (magic_handle) {
        const char *m = magic_buffer(magic_handle, buf, len < 262144 ? len : 262144);
        if (m)
            snprintf(mime, size, "%s", m);
    }
    pthread_mutex_unlock(&magic_lock);
}

sl_extract_kind sl_extract_detect(const char *buf, size_t len, const char *name,
                                  char *mime, size_t mime_size)
{
    const unsigned char *s = (const unsigned char *)buf;
    const char *ext = ext_of(name);
    sl_extract_kind k = SL_KIND_UNKNOWN;
    char sample[SAMPLE_MAX + 1];
    int utf16;

    if (len >= 2 && s[0] == 0x1f && s[1] == 0x8b)
        k = SL_KIND_GZIP;
    else if (len >= 4 && memcmp(buf, "PK\3\4", 4) == 0)
        k = zip_kind(buf, len);
    else if (memmem(buf, len < 1024 ? len : 1024, "%PDF-", 5))
        k = SL_KIND_PDF;
    else if (len >= 5 && memcmp(buf, "{\\rtf", 5) == 0)
        k = SL_KIND_RTF;
    if (k != SL_KIND_UNKNOWN)
        goto done;

    size_t n = ascii_sample(buf, len, sample, &utf16);
    if (!utf16 && !looks_like_text(buf, len)) {
        magic_mime(buf, len, mime, mime_size);
        /* libmagic may know text we thought binary (say, a CP437 file) */
        return strncmp(mime, "text/", 5) == 0 ? SL_KIND_TEXT : SL_KIND_UNKNOWN;
    }
    if ((k = markup_kind(sample, ext)) != SL_KIND_UNKNOWN)
        goto done;
    if ((k = json_kind(buf, len, sample)) != SL_KIND_UNKNOWN && !utf16)
        goto done;
    if (looks_like_mail(sample)) {
        k = SL_KIND_EML;
        goto done;
    }
    if ((k = table_kind(sample, n, ext)) != SL_KIND_UNKNOWN)
        goto done;
    k = SL_KIND_TEXT;
done:
    snprintf(mime, mime_size, "%s", kind_mimes[k]);
    if (k == SL_KIND_HTML && strcasecmp(ext, "xhtml") == 0)
        snprintf(mime, mime_size, "application/xhtml+xml");
    return k;
}
