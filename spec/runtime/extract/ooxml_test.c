/* OOXML and the zip layer: exact text and metadata of generated DOCX, XLSX
 * and PPTX files, and the hostile packages (zip bombs, lying sizes,
 * truncation, entity bombs) failing with the right error, fast. */
#include "extract/zip.h"
#include "office_fixtures.h"

static void test_docx(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_docx, "sample.docx", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Header text\n"
                      "Quarterly report\n"
                      "Revenue grew\t12%\n"
                      "Zürich – naïve 日本\nsecond line\n"
                      "Region\tSales\n"
                      "North and East\t1,200\n"
                      "7\n"
                      "inserted--text\n"
                      "In the box\nafter box\n"
                      "A footnote.\n"
                      "Page footer");
    CHECK_STR(r.title, "Quarterly Report Q3");
    CHECK_STR(r.author, "Ann Example");
    CHECK_STR(r.created, "2024-01-31T12:00:00Z");
    CHECK_STR(r.modified, "2024-02-01T08:30:00Z");
    CHECK(r.pages == -1);
    CHECK(r.flags == 0);
    sl_extract_result_free(&r);
}

static void test_xlsx(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_xlsx, "sample.xlsx", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Summary\nTotal\t42\n"
                      "Data\nName\tValue\nZürich\t3.14\tTRUE\ninline text\t3.14\t#DIV/0!\n0.001");
    CHECK_STR(r.title, "Sales Workbook");
    sl_extract_result_free(&r);
}

static void test_pptx(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_pptx, "sample.pptx", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Agenda\nFirst point\nLine one\nLine two\nSpeaker notes here\n"
                      "Results\nQ1\tQ2\n10\t20");
    CHECK(r.pages == 2);
    CHECK_STR(r.title, "Board Deck");
    sl_extract_result_free(&r);
}

static void test_max_chars(void)
{
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 30);
    lim.max_chars = 20;
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_docx, "sample.docx", &lim, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Header text\nQuarterl");
    CHECK(r.flags == SL_EXTRACT_TRUNCATED);
    sl_extract_result_free(&r);
}

/* The hostile packages fail with the reason, in well under a second each:
 * the caps stop the inflater, nothing is allocated by a declared size. */
static void test_hostile(void)
{
    static const struct {
        const char *file;
        const char *err;
    } cases[] = {
        {"bomb.docx", "inflated size over limit"},
        {"understated.docx", "zip entry larger than declared"},
        {"truncated.docx", "corrupt zip"},
        {"laughs.docx", "xml entity declarations refused"},
        {"sample.odt", "missing part"}, /* a zip that is not a DOCX */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_extract_result r;
        double t0 = sl_extract_now();
        CHECK(sl_fx_run(sl_extract_docx, cases[i].file, NULL, &r) == SL_EXTRACT_ERR);
        CHECK_STR(r.err, cases[i].err);
        CHECK(sl_extract_now() - t0 < 2.0);
        sl_extract_result_free(&r);
    }
    /* a small lie, within the caps: still refused */
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_docx, "understated_small.docx", NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "zip entry larger than declared");
    sl_extract_result_free(&r);
    /* the per-file cap counts every part */
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 30);
    lim.max_file_inflated = 2000;
    CHECK(sl_fx_run(sl_extract_docx, "sample.docx", &lim, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "inflated size over limit");
    sl_extract_result_free(&r);
    /* not a zip at all */
    CHECK(sl_fx_run_buf(sl_extract_pptx, "hello", 5, NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "corrupt zip");
    sl_extract_result_free(&r);
    CHECK(sl_fx_run_buf(sl_extract_xlsx, "", 0, NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "corrupt zip");
    sl_extract_result_free(&r);
}

static int count_sink(void *ud, const char *chunk, size_t n)
{
    (void)chunk;
    *(size_t *)ud += n;
    return 0;
}

/* The zip layer on the 10 GiB entry of zeros: stops just past the cap. */
static void test_zip_bomb(void)
{
    size_t len;
    char *buf = sl_fx_read("bomb.zip", &len);
    if (!buf)
        return;
    CHECK(len < 12u << 20);
    sl_zip_caps caps = {.max_entry = 100u << 20};
    int code;
    sl_zip *z = sl_zip_open(buf, len, &caps, &code);
    CHECK(z != NULL && code == SL_ZIP_OK);
    if (z) {
        size_t seen = 0;
        double t0 = sl_extract_now();
        CHECK(sl_zip_stream(z, "zeros.bin", count_sink, &seen) == SL_ZIP_TOOBIG);
        CHECK(seen <= 100u << 20 && seen > 99u << 20);
        CHECK(sl_zip_total(z) <= (100u << 20) + (64u << 10));
        CHECK(sl_extract_now() - t0 < 5.0);
        char *all = NULL;
        CHECK(sl_zip_read(z, "zeros.bin", &all, NULL) == SL_ZIP_TOOBIG && all == NULL);
        CHECK(sl_zip_read(z, "nope", &all, NULL) == SL_ZIP_NOTFOUND);
        CHECK(sl_zip_count(z) == 1);
        CHECK_STR(sl_zip_name(z, 0), "zeros.bin");
        CHECK(sl_zip_name(z, 1) == NULL);
        sl_zip_close(z);
    }
    /* the per-archive cap, across entries */
    sl_zip_caps total = {.max_total = 1u << 20};
    z = sl_zip_open(buf, len, &total, &code);
    if (z) {
        size_t seen = 0;
        CHECK(sl_zip_stream(z, "zeros.bin", count_sink, &seen) == SL_ZIP_TOOBIG);
        CHECK(seen == 1u << 20);
        sl_zip_close(z);
    }
    free(buf);
    /* an understated entry: whichever bound comes first stops it, the cap
     * below the declared size, else the declared size itself */
    buf = sl_fx_read("understated.docx", &len);
    if (!buf)
        return;
    for (int i = 0; i < 2; i++) {
        sl_zip_caps c = {.max_entry = i == 0 ? 50 : 0};
        z = sl_zip_open(buf, len, &c, &code);
        CHECK(z != NULL);
        if (!z)
            continue;
        size_t seen = 0;
        CHECK(sl_zip_stream(z, "word/document.xml", count_sink, &seen) ==
              (i == 0 ? SL_ZIP_TOOBIG : SL_ZIP_BADSIZE));
        CHECK(seen == 0); /* the first chunk already crossed the bound */
        CHECK(sl_zip_total(z) <= 64u << 10);
        sl_zip_close(z);
    }
    free(buf);
}

/* Namespace resolution of the XML layer: any prefix may name a namespace,
 * the default namespace applies to elements only, an inner declaration hides
 * an outer one until its element ends, and xmlns attributes are no
 * attributes. */
typedef struct {
    sl_xml_base base;
    char log[512];
} ns_log;

static void ns_start(void *ud, const char *name, const char **atts)
{
    ns_log *l = ud;
    const char *local;
    int ns = sl_xml_ns(ud, name, &local);
    const char *v = sl_xml_attr(ud, atts, SL_NS_W, "val");
    const char *plain = sl_xml_attr(ud, atts, SL_NS_OTHER, "val");
    const char *decl = sl_xml_attr(ud, atts, SL_NS_OTHER, "q");
    size_t n = strlen(l->log);
    snprintf(l->log + n, sizeof l->log - n, "%d:%s%s%s%s%s%s ", ns, local, v ? " w=" : "", v ? v : "",
             plain ? " o=" : "", plain ? plain : "", decl ? " DECL" : "");
}

static void test_xml_namespaces(void)
{
    static const char doc[] =
        "<root xmlns='http://schemas.openxmlformats.org/wordprocessingml/2006/main'"
        " xmlns:q='http://purl.oclc.org/ooxml/drawingml/main' xmlns:u='urn:unknown'>"
        "<p val='1'/><q:t/><u:t/>"
        "<inner xmlns:q='urn:hides' xmlns:k='http://purl.oclc.org/ooxml/wordprocessingml/main'>"
        "<q:t/><k:p k:val='2'/></inner>"
        "<q:t/><x xmlns=''><p/></x><p/></root>";
    ns_log l = {0};
    sl_xml_parser *p = sl_xml_parser_new(&l.base);
    CHECK(p != NULL);
    if (!p)
        return;
    sl_xml_set_handlers(p, ns_start, NULL);
    CHECK(sl_xml_parse_buffer(&l.base, doc, sizeof doc - 1) == SL_ZIP_OK);
    sl_xml_parser_free(p);
    CHECK_STR(l.log, "1:root 1:p o=1 2:t 0:t 1:inner 0:t 1:p w=2 2:t 0:x 0:p 1:p ");
    /* an unbound prefix or a bad tag is still malformed */
    ns_log bad = {0};
    p = sl_xml_parser_new(&bad.base);
    CHECK(p != NULL);
    if (!p)
        return;
    sl_xml_set_handlers(p, ns_start, NULL);
    CHECK(sl_xml_parse_buffer(&bad.base, "<a><b></a>", 10) == SL_ZIP_BADXML);
    sl_xml_parser_free(p);
}

/* A part small enough to inflate whole (libdeflate) is still checked: a
 * wrong CRC is found on it, and on a worksheet, as "corrupt zip". */
static void flip_crc(char *buf, size_t len, const char *entry)
{
    size_t el = strlen(entry);
    int flipped = 0;
    for (size_t i = 46; i + el <= len; i++) {
        if (memcmp(buf + i, entry, el) != 0)
            continue;
        if (memcmp(buf + i - 30, "PK\3\4", 4) == 0) {
            buf[i - 30 + 14] ^= 0x5a; /* local header CRC */
            flipped++;
        } else if (memcmp(buf + i - 46, "PK\1\2", 4) == 0) {
            buf[i - 46 + 16] ^= 0x5a; /* central directory CRC */
            flipped++;
        }
    }
    CHECK(flipped == 2);
}

static void test_bad_crc(void)
{
    static const struct {
        sl_fx_fn fn;
        const char *file, *entry;
    } cases[] = {
        {sl_extract_docx, "sample.docx", "word/document.xml"},
        {sl_extract_xlsx, "sample.xlsx", "xl/worksheets/sheet1.xml"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *buf = sl_fx_read(cases[i].file, &len);
        if (!buf)
            continue;
        flip_crc(buf, len, cases[i].entry);
        sl_extract_result r;
        CHECK(sl_fx_run_buf(cases[i].fn, buf, len, NULL, &r) == SL_EXTRACT_ERR);
        CHECK_STR(r.err, "corrupt zip");
        sl_extract_result_free(&r);
        free(buf);
    }
}

/* A kept parser context is reset between parts; a part with a byte order
 * mark (UTF-8 or UTF-16) parses on it as on a new one, every time. */
static void test_xml_bom_reuse(void)
{
    static const struct {
        const char *doc;
        size_t len;
        const char *log;
    } cases[] = {
        {"\xef\xbb\xbf<w:p xmlns:w='http://schemas.openxmlformats.org/wordprocessingml/2006/main'/>", 80,
         "1:p "},
        {"\xff\xfe<\0p\0/\0>\0", 10, "0:p "},
        {"<p/>", 4, "0:p "},
    };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            ns_log l = {0};
            sl_xml_parser *p = sl_xml_parser_new(&l.base);
            CHECK(p != NULL);
            if (!p)
                return;
            sl_xml_set_handlers(p, ns_start, NULL);
            CHECK(sl_xml_parse_buffer(&l.base, cases[i].doc, cases[i].len) == SL_ZIP_OK);
            sl_xml_parser_free(p);
            CHECK_STR(l.log, cases[i].log);
        }
    }
}

int main(void)
{
    if (!sl_fx_corpus())
        return 1;
    for (int run = 0; run < 2; run++) { /* twice: no state leaks between runs */
        test_docx();
        test_xlsx();
        test_pptx();
        test_max_chars();
        test_hostile();
    }
    test_zip_bomb();
    test_xml_namespaces();
    test_xml_bom_reuse();
    test_bad_crc();
    return sl_test_done("ooxml");
}
