/* RTF: destinations, code pages, \u with fallbacks, \bin, tables, metadata,
 * and hostile input (unbalanced braces, deep nesting, cut-off escapes). */
#include "office_fixtures.h"

static void test_sample(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_rtf, "sample.rtf", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Hello bold world\n"
                      "Café naïve — dash\n"
                      "Привет\n"
                      "Tab\there\nnext\n"
                      "link text\n"
                      "A1\tB1 more\n"
                      "\xE2\x80\x9Cquoted\xE2\x80\x9D {braces} back\\slash\n"
                      "XY\xF0\x9F\x98\x80\n"
                      "two€fallbacks");
    CHECK_STR(r.title, "The RTF Title");
    CHECK_STR(r.author, "Rita Author");
    CHECK_STR(r.created, "2022-03-04T05:06:00");
    CHECK_STR(r.modified, "2022-04-05T06:07:00");
    sl_extract_result_free(&r);
}

static void check_rtf(const char *src, const char *want)
{
    sl_extract_result r;
    CHECK(sl_fx_run_buf(sl_extract_rtf, src, strlen(src), NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text ? r.text : "", want);
    sl_extract_result_free(&r);
}

static void test_hostile(void)
{
    sl_extract_result r;
    CHECK(sl_fx_run(sl_extract_rtf, "unbalanced.rtf", NULL, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "a b cbold it");
    sl_extract_result_free(&r);
    CHECK(sl_fx_run_buf(sl_extract_rtf, "hello", 5, NULL, &r) == SL_EXTRACT_ERR);
    CHECK_STR(r.err, "not rtf");
    sl_extract_result_free(&r);
    /* cut-off escapes and parameters at the end of input */
    check_rtf("{\\rtf1 x\\'4", "x");
    check_rtf("{\\rtf1 x\\", "x");
    check_rtf("{\\rtf1 x\\u", "x");
    check_rtf("{\\rtf1 x\\bin99999999999 lost", "x");
    check_rtf("{\\rtf1 a\\u-1?b\\u0?c\\u55296?d}", "a\xEF\xBF\xBF" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d");
    check_rtf("{\\rtf1\\ansicpg99999 \\'e9}", "é"); /* unknown code page: 1252 */
    check_rtf("{\\rtf1\\ansicpg932 \\'82\\'a0 \\'82}", "あ \xEF\xBF\xBD");
    check_rtf("{\\rtf1\\uc0 \\u233 e}", "ée");
    check_rtf("{\\rtf1\\ucvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv8 ok}", "ok");
    /* 100,000 nested groups: bounded stack, text kept */
    size_t n = 100000;
    char *deep = malloc(n * 2 + 64);
    strcpy(deep, "{\\rtf1 ");
    size_t k = strlen(deep);
    for (size_t i = 0; i < n; i++)
        deep[k++] = '{';
    memcpy(deep + k, "deep", 4);
    k += 4;
    for (size_t i = 0; i < n; i++)
        deep[k++] = '}';
    memcpy(deep + k, " end}", 6);
    check_rtf(deep, "deep end");
    free(deep);
    /* max_chars cuts the text and flags it */
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 30);
    lim.max_chars = 7;
    CHECK(sl_fx_run(sl_extract_rtf, "sample.rtf", &lim, &r) == SL_EXTRACT_OK);
    CHECK_STR(r.text, "Hello b");
    CHECK(r.flags == SL_EXTRACT_TRUNCATED);
    sl_extract_result_free(&r);
}

int main(void)
{
    if (!sl_fx_corpus())
        return 1;
    for (int run = 0; run < 2; run++) {
        test_sample();
        test_hostile();
    }
    return sl_test_done("rtf");
}
