/* The extraction core in C: the output cap and its character boundary,
 * block and space collapsing, metadata trimming, type detection on crafted
 * signatures, gzip bombs and truncated gzip, hostile HTML/CSV/JSON, and the
 * PDF worker's isolation (a worker killed while idle is replaced; a hung
 * worker is killed at the deadline and the next document still works). */
#include "harness.h"
#include "extract/extract.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static sl_extract_limits lim;

static int run(sl_extract_kind kind, const char *buf, size_t len, sl_extract_result *r)
{
    sl_extract_result_init(r, &lim);
    return sl_extract_buffer(buf, len, NULL, kind, &lim, r);
}

static void test_append(void)
{
    sl_extract_limits l;
    sl_extract_limits_default(&l, 0);
    l.max_chars = 5;
    sl_extract_result r;
    sl_extract_result_init(&r, &l);
    CHECK(sl_extract_append(&r, "h\xc3\xa9", 3) == 0);
    CHECK(sl_extract_append(&r, "llo w\xc3\xb6rld", 11) != 0);
    CHECK_STR(r.text, "h\xc3\xa9llo");
    CHECK(r.nchars == 5 && r.len == 6);
    CHECK(r.flags & SL_EXTRACT_TRUNCATED);
    CHECK(sl_extract_append(&r, "x", 1) != 0);
    CHECK_STR(r.text, "h\xc3\xa9llo");
    sl_extract_result_free(&r);

    /* a cap that falls inside a multi-byte character cuts before it */
    l.max_chars = 2;
    sl_extract_result_init(&r, &l);
    sl_extract_append(&r, "a\xe2\x82\xac\xe2\x82\xac", 7);
    CHECK_STR(r.text, "a\xe2\x82\xac");
    sl_extract_result_free(&r);

    l.max_chars = 0; /* no cap */
    sl_extract_result_init(&r, &l);
    CHECK(sl_extract_newline(&r) == 0 && r.len == 0);
    sl_extract_append_collapsed(&r, "  a \t\n b  ", 10);
    sl_extract_newline(&r);
    sl_extract_newline(&r);
    sl_extract_space(&r);
    sl_extract_append(&r, "c", 1);
    CHECK_STR(r.text, "a b\nc"); /* no space opens a text */
    sl_extract_meta(&r.title, "  Two\n  lines \t", 15);
    sl_extract_meta(&r.title, "second", 6);
    sl_extract_meta(&r.author, " \n ", 3);
    CHECK_STR(r.title, "Two lines");
    CHECK(r.author == NULL);
    sl_extract_result_free(&r);
}

static void check_kind(const char *buf, size_t len, const char *name,
                       const char *want_kind, const char *want_mime)
{
    char mime[96];
    sl_extract_kind k = sl_extract_detect(buf, len, name, mime, sizeof mime);
    CHECK_STR(sl_extract_kind_name(k), want_kind);
    if (want_mime)
        CHECK_STR(mime, want_mime);
}

#define KIND(lit, name, kind, mime) check_kind(lit, sizeof(lit) - 1, name, kind, mime)

static void test_detect(void)
{
    KIND("%PDF-1.7\n...", "x.docx", "pdf", "application/pdf");
    KIND("\x1f\x8b\x08\x00", NULL, "gzip", "application/gzip");
    KIND("{\\rtf1\\ansi hello}", NULL, "rtf", "application/rtf");
    KIND("PK\3\4\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x08\0\0\0"
         "mimetypeapplication/vnd.oasis.opendocument.spreadsheetPK",
         NULL, "ods", NULL);
    KIND("PK\3\4\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x08\0\0\0"
         "mimetypeapplication/vnd.oasis.opendocument.text-templatePK",
         NULL, "zip", "application/zip");
    KIND("PK\3\4....[Content_Types].xml....word/document.xml", NULL, "docx", NULL);
    KIND("PK\3\4....[Content_Types].xml....ppt/presentation.xml", NULL, "pptx", NULL);
    KIND("PK\3\4....[Content_Types].xml....xl/workbook.xml", NULL, "xlsx", NULL);
    KIND("  <!DOCTYPE html><p>x", NULL, "html", "text/html");
    KIND("<!-- c --><HTML><body>x", NULL, "html", "text/html");
    KIND("<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\">",
         "a.xhtml", "html", "application/xhtml+xml");
    KIND("<?xml version=\"1.0\"?><feed/>", NULL, "xml", "application/xml");
    KIND("<note>hi</note>", NULL, "xml", NULL);
    KIND("<3 you", NULL, "text", "text/plain");
    KIND("{\"a\": [1, 2]}\n", NULL, "json", "application/json");
    KIND("[1, 2", NULL, "text", NULL); /* unterminated: not JSON */
    KIND("a,b\n1,2\n3,4\n", "x.txt", "csv", "text/csv");
    KIND("a\tb\n1\t2\n3\t4\n", NULL, "tsv", NULL);
    KIND("a,b\n1,2\n", NULL, "text", NULL);  /* two lines: too few to tell */
    KIND("a,b\n1,2\n", "t.csv", "csv", NULL); /* but the name settles it */
    KIND("From: a@b\nTo: c@d\nSubject: s\n\nbody\n", NULL, "eml", "message/rfc822");
    KIND("Subject: only one header\n\nbody", NULL, "text", NULL);
    KIND("\xff\xfe<\0h\0t\0m\0l\0>\0", NULL, "html", NULL);
    KIND("plain words", "x.pdf", "text", NULL); /* the name is only a hint */
    KIND("", NULL, "text", NULL);
    check_kind("\x7f" "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0", 18, NULL, "unknown", NULL);
}

static void test_gzip(void)
{
    /* 20 MB of zeros compresses to ~20 KB: a bomb against a 1 MB cap */
    size_t n = 20u << 20;
    char *zeros = calloc(1, n);
    uLongf zcap = compressBound(n) + 32;
    unsigned char *gz = malloc(zcap);
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (unsigned char *)zeros, z.avail_in = (unsigned)n;
    z.next_out = gz, z.avail_out = (unsigned)zcap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    size_t gzlen = z.total_out;
    deflateEnd(&z);

    sl_extract_result r;
    lim.max_entry_inflated = 1u << 20;
    CHECK(run(SL_KIND_UNKNOWN, (char *)gz, gzlen, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "inflated size over limit");
    CHECK(r.inflated <= (2u << 20) + 65536);
    sl_extract_result_free(&r);
    lim.max_entry_inflated = SL_EXTRACT_DEFAULT_MAX_ENTRY;

    CHECK(run(SL_KIND_UNKNOWN, (char *)gz, gzlen / 2, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "gzip: truncated");
    sl_extract_result_free(&r);
    free(gz);
    free(zeros);
}

static void test_hostile_text(void)
{
    sl_extract_result r;
    /* 200k nested elements: no recursion, no crash */
    size_t depth = 200000;
    char *deep = malloc(depth * 5 + 16);
    size_t k = 0;
    for (size_t i = 0; i < depth; i++)
        memcpy(deep + k, "<div>", 5), k += 5;
    memcpy(deep + k, "deep", 4), k += 4;
    CHECK(run(SL_KIND_HTML, deep, k, &r) == SL_EXTRACT_OK);
    sl_extract_result_free(&r);
    CHECK(run(SL_KIND_XML, deep, k, &r) != SL_EXTRACT_UNSUPPORTED);
    sl_extract_result_free(&r);
    free(deep);

    /* an unterminated quote swallows the rest as one cell, on one line */
    const char csv[] = "a,\"b\nc,d\n";
    CHECK(run(SL_KIND_CSV, csv, sizeof csv - 1, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "a\tb c,d");
    sl_extract_result_free(&r);

    /* truncated escapes and lone surrogates in JSON */
    const char json[] = "[\"ok\", \"\\ud800x\", \"\\u12\", \"tail\\";
    CHECK(run(SL_KIND_JSON, json, sizeof json - 1, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "ok\n\xef\xbf\xbdx\n?12\ntail");
    sl_extract_result_free(&r);

    /* a billion-laughs entity is never expanded */
    const char laughs[] =
        "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
        "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><l>&c;&c;&c; end</l>";
    CHECK(run(SL_KIND_XML, laughs, sizeof laughs - 1, &r) == SL_EXTRACT_OK);
    CHECK(r.len < 100);
    sl_extract_result_free(&r);

    /* the deadline: already passed */
    sl_extract_limits l = lim;
    l.deadline = sl_extract_now() - 1;
    sl_extract_result_init(&r, &l);
    CHECK(sl_extract_buffer("text", 4, NULL, SL_KIND_UNKNOWN, &l, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "timeout");
    sl_extract_result_free(&r);

    /* unknown binary */
    CHECK(run(SL_KIND_UNKNOWN, "\x7f" "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0", 18, &r) ==
          SL_EXTRACT_UNSUPPORTED);
    CHECK(strncmp(r.err, "unsupported: ", 13) == 0);
    sl_extract_result_free(&r);
}

/* unused in a build without poppler */
__attribute__((unused)) static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    return p;
}

static void test_pdf_isolation(void)
{
#ifdef SLUICE_WITH_POPPLER
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char cmd[1024], path[512];
    char dir[] = "/tmp/sl-extract-test-XXXXXX";
    if (!src || !mkdtemp(dir)) {
        fprintf(stderr, "pdf isolation: no SLUICE_SOURCE_DIR\n");
        sl_test_failures++;
        return;
    }
    snprintf(cmd, sizeof cmd, "python3 %s/spec/fixtures/extract/make_fixtures.py %s", src, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/hello.pdf", dir);
    size_t len = 0;
    char *pdf = slurp(path, &len);
    CHECK(pdf != NULL);
    if (!pdf)
        return;
    sl_extract_result r;
    lim.deadline = 0;
    CHECK(run(SL_KIND_UNKNOWN, pdf, len, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Hello PDF world\nSecond line\nPage two text");
    CHECK(r.pages == 2);
    sl_extract_result_free(&r);

    /* the idle worker dies: the next document gets a fresh one */
    int pids[8];
    int n = sl_extract_pdf_idle_workers(pids, 8);
    CHECK(n == 1);
    if (n >= 1)
        kill(pids[0], SIGKILL);
    usleep(20000);
    CHECK(run(SL_KIND_UNKNOWN, pdf, len, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.title, "Fixture Title");
    sl_extract_result_free(&r);

    /* the worker hangs: killed at the deadline, and it is gone for good */
    n = sl_extract_pdf_idle_workers(pids, 8);
    CHECK(n == 1);
    if (n >= 1) {
        kill(pids[0], SIGSTOP);
        double t0 = sl_extract_now();
        sl_extract_limits l = lim;
        l.deadline = t0 + 0.3;
        sl_extract_result_init(&r, &l);
        CHECK(sl_extract_buffer(pdf, len, NULL, SL_KIND_UNKNOWN, &l, &r) == SL_EXTRACT_ERR);
        CHECK_STR(r.err, "timeout");
        CHECK(sl_extract_now() - t0 < 2.0);
        sl_extract_result_free(&r);
        CHECK(kill(pids[0], 0) == -1 && errno == ESRCH);
        CHECK(sl_extract_pdf_idle_workers(pids, 8) == 0);
    }
    CHECK(run(SL_KIND_UNKNOWN, pdf, len, &r) == SL_EXTRACT_OK);
    CHECK(r.pages == 2);
    sl_extract_result_free(&r);
    free(pdf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
#endif
}

int main(void)
{
    sl_extract_limits_default(&lim, 0);
    test_append();
    test_detect();
    test_gzip();
    test_hostile_text();
    test_pdf_isolation();
    return sl_test_done("extract");
}
