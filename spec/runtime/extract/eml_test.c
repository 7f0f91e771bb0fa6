/* Mail: headers decoded from RFC 2047, MIME walked (alternative, mixed,
 * attachments through the dispatcher), transfer encodings and charsets,
 * the nesting cap. */
#include "office_fixtures.h"

static void test_sample(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_eml, "sample.eml", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "From: Åsa Example <asa@example.org>\n"
                      "To: bob@example.org, carol@example.org\n"
                      "Subject: Café menu — today\n"
                      "Date: Tue, 1 Jul 2003 10:52:37 +0200\n"
                      "Bonjour, le café est prêt. Soft break.\n"
                      "résumé.txt\n"
                      "Attached notes line\n"
                      "blob.bin");
    CHECK_STR(r.title, "Café menu — today");
    CHECK_STR(r.author, "Åsa Example <asa@example.org>");
    CHECK_STR(r.created, "2003-07-01T10:52:37+02:00");
    CHECK(r.flags == 0);
    sl_extract_result_free(&r);
}

static void test_attached_docx(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_eml, "attached.eml", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "From: a@example.org\nSubject: report\nSee attached.\nreport.docx\n"
                      "Header text\nQuarterly report\nRevenue grew\t12%\n"
                      "Zürich – naïve 日本\nsecond line\nRegion\tSales\nNorth and East\t1,200\n"
                      "7\ninserted--text\nIn the box\nafter box\nA footnote.\nPage footer");
    CHECK_STR(r.title, "report"); /* the mail's, not the attachment's */
    CHECK_STR(r.author, "a@example.org");
    CHECK(r.created == NULL);
    sl_extract_result_free(&r);
}

static void test_html(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_eml, "html.eml", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "From: a@example.org\nSubject: html only\nDate: 2 Jan 2024 03:04 GMT\n"
                      "Café bold");
    CHECK_STR(r.created, "2024-01-02T03:04:00Z");
    sl_extract_result_free(&r);
}

static void test_nested(void)
{
    sl_extract_result r;
    double t0 = sl_extract_now();
    CHECK(sl_fx_run(sl_extract_eml, "nested.eml", NULL, &r) == SL_EXTRACT_OK);
    CHECK(sl_extract_now() - t0 < 1.0);
    CHECK_STR(r.text, "From: a@example.org\nSubject: deep\nshallow text");
    CHECK(r.flags == SL_EXTRACT_TRUNCATED);
    sl_extract_result_free(&r);
}

static void check_eml(const char *src, const char *want)
{
    sl_extract_result r;
    CHECK(sl_fx_run_buf(sl_extract_eml, src, strlen(src), NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text ? r.text : "", want);
    sl_extract_result_free(&r);
}

static void test_edges(void)
{
    check_eml("", "");
    check_eml("Subject: only headers", "Subject: only headers");
    check_eml("\nbody without headers\n", "body without headers");
    /* encoded-words: separated by text keep the space, broken ones stay */
    check_eml("Subject: =?utf-8?q?a?= b =?utf-8?b?Yw==?=\n\n", "Subject: a b c");
    check_eml("Subject: =?bogus-charset?q?x=41?= =?utf-8?x?y?= =?utf-8?q?unterminated\n\n",
              "Subject: xA =?utf-8?x?y?= =?utf-8?q?unterminated");
    /* a multipart without a boundary is read as text; a missing close
     * delimiter ends at the end */
    check_eml("Content-Type: multipart/mixed\n\nplain after all\n", "plain after all");
    check_eml("Content-Type: multipart/mixed; boundary=\"x\"\n\n--x\n\nfirst\n--x\n\nsecond",
              "first\nsecond");
    /* base64 with junk and without padding; QP with a bad escape */
    check_eml("Content-Transfer-Encoding: base64\n\naGVs!!bG8\n", "hello");
    check_eml("Content-Transfer-Encoding: quoted-printable\n\na=3Db=ZZc=\n", "a=b=ZZc");
}

int main(void)
{
    if (!sl_fx_corpus())
        return 1;
    for (int run = 0; run < 2; run++) {
        test_sample();
        test_attached_docx();
        test_html();
        test_nested();
        test_edges();
    }
    return sl_test_done("eml");
}
