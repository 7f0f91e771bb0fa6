/* OpenDocument: exact text and metadata of generated ODT, ODS and ODP
 * files; an encrypted package gives metadata, the flag and "encrypted". */
#include "office_fixtures.h"

static void test_odt(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_odt, "sample.odt", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Heading One\n"
                      "Hello   world\ttabbed\nnext\n"
                      "Footnote here The note. end\n"
                      "A1\tC1 more\n"
                      "Item one\n"
                      "boxed");
    CHECK_STR(r.title, "ODT Title");
    CHECK_STR(r.author, "Ina Initial");
    CHECK_STR(r.created, "2023-05-06T07:08:09");
    CHECK_STR(r.modified, "2023-06-07T08:09:10");
    CHECK(r.pages == -1);
    CHECK(r.flags == 0);
    sl_extract_result_free(&r);
}

static void test_ods(void)
{
    sl_extract_result r;
    double t0 = sl_extract_now();
    CHECK(sl_fx_run(sl_extract_ods, "sample.ods", NULL, &r) == SL_EXTRACT_OK);
    /* a million repeated empty rows cost nothing */
    CHECK(sl_extract_now() - t0 < 1.0);
    CHECK_STR(r.text, "Sheet1\nName\tQty\nApple\t3\nSecond\nx");
    CHECK_STR(r.title, "ODS Title");
    sl_extract_result_free(&r);
}

static void test_odp(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_odp, "sample.odp", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Slide one title\nBullet\nNotes one\nSlide two");
    CHECK(r.pages == 2);
    sl_extract_result_free(&r);
}

static void test_bad(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_odt, "encrypted.odt", NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "encrypted");
    CHECK(r.flags == SL_EXTRACT_ENCRYPTED);
    CHECK_STR(r.title, "Secret");
    sl_extract_result_free(&r);
    CHECK(sl_fx_run(sl_extract_odt, "sample.docx", NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "missing part");
    sl_extract_result_free(&r);
    CHECK(sl_fx_run(sl_extract_odt, "truncated.docx", NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "corrupt zip");
    sl_extract_result_free(&r);
}

int main(void)
{
    if (!sl_fx_corpus())
        return 1;
    for (int run = 0; run < 2; run++) {
        test_odt();
        test_ods();
        test_odp();
        test_bad();
    }
    return sl_test_done("odf");
}
