/* The XLSX worksheet fast path (sheet.c) against libxml2: byte-identical
 * text on every sheet of every XLSX at hand (the generated fixtures, and the
 * Debian corpus of bench/extract_office.lua when it was fetched), fed in
 * pieces of many sizes and cut by max_chars at many points; crafted sheets
 * the fast path must read itself with exact expected text; and markup it
 * must give up on, where the result (text or error) is libxml2's. */
#include "extract/sheet.h"
#include "office_fixtures.h"

#include <dirent.h>
#include <sys/stat.h>

/* A stand-in shared string table: string i is "#i". */
static char sst_chars[64 * 1024];
static size_t sst_offs[4096];
static sl_sheet_sst sst = {sst_chars, sst_offs, 0};

static void sst_init(void)
{
    size_t len = 0;
    for (size_t i = 0; i < sizeof sst_offs / sizeof sst_offs[0]; i++) {
        sst_offs[i] = len;
        len += (size_t)snprintf(sst_chars + len, sizeof sst_chars - len, "#%zu", i) + 1;
    }
    sst.n = sizeof sst_offs / sizeof sst_offs[0];
}

typedef struct {
    int rc;
    char *text;
    size_t len, nchars;
    unsigned flags;
} run_t;

static run_t run_sheet(const char *xml, size_t len, size_t chunk, int mode, size_t max_chars)
{
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 30);
    lim.max_chars = max_chars;
    sl_extract_result r;
    sl_extract_result_init(&r, &lim);
    /* text before the sheet, ending in a space a newline would eat: a bail
     * must give that back too */
    sl_extract_append(&r, "Sheet ", 6);
    run_t o;
    o.rc = sl_sheet_buffer(xml, len, chunk, &sst, mode, &r);
    o.text = strdup(r.text ? r.text : "");
    o.len = r.len;
    o.nchars = r.nchars;
    o.flags = r.flags;
    sl_extract_result_free(&r);
    return o;
}

static int same(const run_t *a, const run_t *b)
{
    return a->rc == b->rc && a->len == b->len && a->nchars == b->nchars && a->flags == b->flags &&
           strcmp(a->text, b->text) == 0;
}

static long n_fast, n_bailed;

/* AUTO is libxml2's result; FAST either bails or is libxml2's result too.
 * Returns 1 when FAST did not bail. */
static int check_sheet(const char *what, const char *xml, size_t len, size_t chunk,
                       size_t max_chars)
{
    run_t ref = run_sheet(xml, len, chunk, SL_SHEET_LIBXML, max_chars);
    run_t fast = run_sheet(xml, len, chunk, SL_SHEET_FAST, max_chars);
    run_t aut = run_sheet(xml, len, chunk, SL_SHEET_AUTO, max_chars);
    int ok = fast.rc != SL_SHEET_BAILED;
    if (!same(&aut, &ref) || (ok && !same(&fast, &ref))) {
        fprintf(stderr, "%s (chunk %zu, max_chars %zu): libxml2 rc %d \"%.200s\" / fast rc %d "
                        "\"%.200s\" / auto rc %d \"%.200s\"\n",
                what, chunk, max_chars, ref.rc, ref.text, fast.rc, fast.text, aut.rc, aut.text);
        sl_test_failures++;
    }
    if (ok)
        n_fast++;
    else
        n_bailed++;
    free(ref.text), free(fast.text), free(aut.text);
    return ok;
}

/* Every sheet of one XLSX through both paths, in many piece sizes and
 * truncated at many points; then the whole file through the extractor in
 * each mode. Every sheet of these files must take the fast path. */
static void check_xlsx(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        sl_test_failures++;
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    int code;
    sl_zip *z = sl_zip_open(buf, (size_t)n, NULL, &code);
    CHECK(z != NULL);
    int sheets = 0;
    for (long i = 0; z && i < sl_zip_count(z); i++) {
        const char *name = sl_zip_name(z, i);
        if (strncmp(name, "xl/worksheets/", 14) != 0 || !name[14] || strchr(name + 14, '/'))
            continue;
        char *xml;
        size_t len;
        CHECK(sl_zip_read(z, name, &xml, &len) == SL_ZIP_OK);
        if (!xml)
            continue;
        sheets++;
        static const size_t chunks[] = {0, 1, 2, 3, 7, 64, 1000, 65536};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            if (!check_sheet(name, xml, len, chunks[c], 0))
                fprintf(stderr, "%s: %s: the fast path gave up\n", path, name),
                    sl_test_failures++;
        }
        static const size_t cuts[] = {1, 6, 7, 8, 9, 20, 100, 1000, 10000};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++)
            check_sheet(name, xml, len, 3, cuts[c]);
        free(xml);
    }
    CHECK(sheets > 0);
    sl_zip_close(z);

    /* the whole workbook, shared strings and all */
    sl_extract_result r[3];
    int rc[3];
    static const int modes[] = {SL_SHEET_LIBXML, SL_SHEET_AUTO, SL_SHEET_FAST};
    for (int m = 0; m < 3; m++) {
        sl_sheet_set_mode(modes[m]);
        rc[m] = sl_fx_run_buf(sl_extract_xlsx, buf, (size_t)n, NULL, &r[m]);
    }
    sl_sheet_set_mode(SL_SHEET_AUTO);
    CHECK(rc[0] == SL_EXTRACT_OK && rc[1] == SL_EXTRACT_OK && rc[2] == SL_EXTRACT_OK);
    for (int m = 1; m < 3; m++) {
        CHECK(r[m].len == r[0].len);
        CHECK_STR(r[m].text, r[0].text);
    }
    for (int m = 0; m < 3; m++)
        sl_extract_result_free(&r[m]);
    free(buf);
}

/* Every *.xlsx under dir (recursively). */
static int check_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        size_t l = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            n += check_dir(path);
        } else if (l > 5 && strcmp(e->d_name + l - 5, ".xlsx") == 0) {
            check_xlsx(path);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void test_corpus(void)
{
    CHECK(check_dir(sl_fx_dir) >= 1);
    char bench[1200];
    const char *src = getenv("SLUICE_SOURCE_DIR");
    snprintf(bench, sizeof bench, "%s/bench/.tmp/office-corpus/x", src ? src : ".");
    int n = check_dir(bench);
    if (n == 0)
        printf("sheet_test: PENDING the Debian corpus (bench/.tmp/office-corpus): run "
               "bench/extract_office.lua once to fetch it\n");
    else
        printf("sheet_test: %d corpus workbooks\n", n);
}

#define S_NS "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
#define DECL "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n"
#define WS "<worksheet xmlns=\"" S_NS "\"><sheetData>"
#define END "</sheetData></worksheet>"

/* Sheets the fast path reads itself, with the text both paths give. */
static void test_fast(void)
{
    static const struct {
        const char *what, *xml, *text;
    } cases[] = {
        {"numbers and rows",
         DECL WS "<row r=\"1\"><c r=\"A1\" s=\"3\"><v>1</v></c><c r=\"B1\"><v>2.5</v></c></row>"
                 "<row r=\"2\" spans=\"1:2\"><c r=\"A2\"><v>-3</v></c></row>" END,
         "Sheet 1\t2.5\n-3\n"},
        {"shared strings, in range or not",
         WS "<row><c t=\"s\"><v>0</v></c><c t=\"s\"><v>4095</v></c><c t=\"s\"><v>4096</v></c>"
            "<c t=\"s\"><v> 7</v></c><c t=\"s\"><v>x</v></c><c t=\"s\"><v></v></c></row>" END,
         "Sheet #0\t#4095\t#7\n"},
        {"entities and character references",
         WS "<row><c t=\"str\"><v>a&lt;b&amp;c&quot;d&apos;e&gt;&#9;&#xe9;&#8364;&#x1F600;&#10;z</v>"
            "</c></row>" END,
         "Sheet a<b&c\"d'e>\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\nz\n"},
        {"inline strings, rich runs, phonetic runs",
         WS "<row><c t=\"inlineStr\"><is><t xml:space=\"preserve\"> lead</t></is></c>"
            "<c t=\"inlineStr\"><is><r><t>bo</t></r><r><rPr><b/><sz val=\"11\"/></rPr><t>ld</t></r>"
            "<rPh sb=\"0\" eb=\"1\"><t>PH</t></rPh></is></c></row>" END,
         "Sheet  lead\tbold\n"},
        {"formulas with cached values, booleans, errors",
         WS "<row><c t=\"str\"><f>CONCAT(\"a\",\"b\")</f><v>ab</v></c><c><f t=\"shared\" ref=\"B1:B9\" "
            "si=\"0\">A1*2</f><v>4</v></c><c t=\"b\"><v>1</v></c><c t=\"b\"><v>0</v></c>"
            "<c t=\"e\"><v>#N/A</v></c><c><f>NOW()</f></c></row>" END,
         "Sheet ab\t4\tTRUE\tFALSE\t#N/A\n"},
        {"empty cells and rows",
         WS "<row r=\"1\"/><row r=\"2\"><c r=\"A2\" s=\"1\"/><c r=\"B2\"><v></v></c></row>"
            "<row r=\"3\"><c r=\"C3\"/><c r=\"D3\"><v>x</v></c></row>" END,
         "Sheet x\n"},
        {"UTF-8 text, white space kept",
         WS "<row><c t=\"str\"><v>Z\xc3\xbcrich \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80</v></c>"
            "<c t=\"str\"><v>  two  spaces\n</v></c></row>" END,
         "Sheet Z\xc3\xbcrich \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\t  two  spaces\n"},
        {"what Excel writes around sheetData",
         DECL "<worksheet xmlns=\"" S_NS "\" xmlns:r=\"http://schemas.openxmlformats.org/"
              "officeDocument/2006/relationships\" xmlns:mc=\"http://schemas.openxmlformats.org/"
              "markup-compatibility/2006\" mc:Ignorable=\"x14ac xr\" xmlns:x14ac=\"http://schemas."
              "microsoft.com/office/spreadsheetml/2009/9/ac\" xmlns:xr=\"http://schemas.microsoft.com/"
              "office/spreadsheetml/2014/revision\" xr:uid=\"{0}\"><dimension ref=\"A1\"/>"
              "<sheetViews><sheetView tabSelected=\"1\" workbookViewId=\"0\"/></sheetViews>"
              "<sheetFormatPr defaultRowHeight=\"15\" x14ac:dyDescent=\"0.25\"/><sheetData>"
              "<row r=\"1\" spans=\"1:1\" x14ac:dyDescent=\"0.25\"><c r=\"A1\"><v>7</v></c></row>"
              "</sheetData><hyperlinks><hyperlink ref=\"A1\" r:id=\"rId1\" display=\"a &amp; b &gt; c\"/>"
              "</hyperlinks><pageMargins left=\"0.7\" right='0.7'/><headerFooter><oddHeader>&amp;CPage"
              "</oddHeader></headerFooter><extLst><ext uri=\"{1}\" xmlns:x14=\"http://schemas."
              "microsoft.com/office/spreadsheetml/2009/9/main\"><x14:conditionalFormattings>"
              "<x14:conditionalFormatting><xm:f xmlns:xm=\"http://schemas.microsoft.com/office/excel/"
              "2006/main\">A1</xm:f></x14:conditionalFormatting></x14:conditionalFormattings></ext>"
              "</extLst></worksheet>\r\n",
         "Sheet 7\n"},
        {"prefixed spreadsheetml, strict namespace",
         "<x:worksheet xmlns:x=\"http://purl.oclc.org/ooxml/spreadsheetml/main\"><x:sheetData>"
         "<x:row><x:c t=\"b\" r=\"A1\"><x:v>1</x:v></x:c></x:row></x:sheetData></x:worksheet>",
         "Sheet TRUE\n"},
        {"elements of other namespaces say nothing",
         "<worksheet xmlns=\"urn:other\"><sheetData><row><c><v>1</v></c></row></sheetData>"
         "</worksheet>",
         "Sheet\n"},
        {"a default namespace redeclared and undeclared inside",
         WS "<row><c><v>1</v></c><c xmlns=\"urn:other\"><v>2</v></c><c xmlns=\"\"><v>3</v></c>"
            "<c><v>4</v></c></row>" END,
         "Sheet 1\t4\n"},
        {"attribute quoting, > and quotes in values, spaces around =",
         WS "<row r = '1' x=\"a>b'c\"><c t = 'str' r=\"a&quot;\"><v>v</v></c></row>" END,
         "Sheet v\n"},
        {"a t value that is not a type",
         WS "<row><c t=\" s\"><v>3</v></c><c t=\"sss\"><v>4</v></c>"
            "<c t=\"aVeryLongTypeNameIndeed\"><v>5</v></c></row>" END,
         "Sheet 3\t4\t5\n"},
        {"no declaration, white space around the root",
         "\n  " WS "<row><c><v>1</v></c></row>" END " \n\r\n",
         "Sheet 1\n"},
        {"single-quoted declaration, no standalone",
         "<?xml version='1.0' encoding='utf-8' ?><worksheet xmlns='" S_NS "'><sheetData><row><c>"
         "<v>1</v></c></row></sheetData></worksheet>",
         "Sheet 1\n"},
        {"end tags with white space, ]] that is not ]]>",
         WS "<row ><c ><v>a]]b]</v ></c ></row\n>" END,
         "Sheet a]]b]\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *xml = cases[i].xml;
        size_t len = strlen(xml);
        run_t fast = run_sheet(xml, len, 0, SL_SHEET_FAST, 0);
        if (fast.rc != SL_ZIP_OK)
            fprintf(stderr, "%s: fast path rc %d\n", cases[i].what, fast.rc);
        CHECK(fast.rc == SL_ZIP_OK);
        CHECK_STR(fast.text, cases[i].text);
        free(fast.text);
        static const size_t chunks[] = {0, 1, 2, 5, 13};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
            CHECK(check_sheet(cases[i].what, xml, len, chunks[c], 0));
        for (size_t cut = 1; cut < 40; cut += 3)
            check_sheet(cases[i].what, xml, len, 4, cut);
    }
}

/* A cell of 3 MB: one value in thousands of pieces, the same on both paths. */
static void test_huge_cell(void)
{
    size_t n = 3u << 20;
    const char *head = WS "<row><c t=\"inlineStr\"><is><t>";
    const char *tail = "</t></is></c><c><v>2</v></c></row>" END;
    size_t hl = strlen(head), tl = strlen(tail);
    char *xml = malloc(hl + n + tl);
    memcpy(xml, head, hl);
    for (size_t i = 0; i < n; i++)
        xml[hl + i] = (char)('a' + i % 26);
    memcpy(xml + hl + n, tail, tl);
    size_t len = hl + n + tl;
    CHECK(check_sheet("huge cell", xml, len, 65536, 0));
    CHECK(check_sheet("huge cell", xml, len, 0, 0));
    CHECK(check_sheet("huge cell", xml, len, 65536, 1000));
    run_t fast = run_sheet(xml, len, 65536, SL_SHEET_FAST, 0);
    CHECK(fast.len == 6 + n + 1 + 1 + 1);
    CHECK(fast.len > 7 && memcmp(fast.text + 6, "abcdef", 6) == 0);
    free(fast.text);
    /* a 2 MB attribute value is past what the scanner takes on */
    char *big = malloc((3u << 20) + 256);
    size_t bl = (size_t)snprintf(big, 256, WS "<row x=\"");
    memset(big + bl, 'v', 2u << 20);
    bl += 2u << 20;
    memcpy(big + bl, "\"/>" END, strlen("\"/>" END));
    bl += strlen("\"/>" END);
    CHECK(!check_sheet("huge attribute", big, bl, 0, 0));
    free(big);
    free(xml);
}

/* Markup outside the subset: the fast path gives up (at every piece size),
 * and the result, text or error, is libxml2's. */
static void test_bail(void)
{
    static const struct {
        const char *what, *xml;
    } cases[] = {
        {"DOCTYPE", "<!DOCTYPE worksheet>" WS "<row><c><v>1</v></c></row>" END},
        {"entity declaration",
         "<!DOCTYPE w [<!ENTITY a \"aaaa\">]>" WS "<row><c><v>&a;</v></c></row>" END},
        {"comment in sheetData", WS "<row><!-- x --><c><v>1</v></c></row>" END},
        {"comment before the root", "<!-- x -->" WS "<row><c><v>1</v></c></row>" END},
        {"CDATA", WS "<row><c t=\"str\"><v><![CDATA[a<b]]></v></c></row>" END},
        {"processing instruction", WS "<?pi x?><row><c><v>1</v></c></row>" END},
        {"declaration not at byte 0", " <?xml version=\"1.0\"?>" WS "<row/>" END},
        {"byte order mark", "\xef\xbb\xbf" WS "<row><c><v>1</v></c></row>" END},
        {"another encoding",
         "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>" WS "<row><c t=\"str\"><v>\xe9</v></c></row>" END},
        {"UTF-16 declared", "<?xml version=\"1.0\" encoding=\"UTF-16\"?>" WS "<row/>" END},
        {"version 1.1", "<?xml version=\"1.1\"?>" WS "<row/>" END},
        {"unknown entity", WS "<row><c t=\"str\"><v>a&nbsp;b</v></c></row>" END},
        {"bare ampersand", WS "<row><c t=\"str\"><v>a & b</v></c></row>" END},
        {"reference to CR", WS "<row><c t=\"str\"><v>a&#13;b</v></c></row>" END},
        {"reference to NUL", WS "<row><c t=\"str\"><v>a&#0;b</v></c></row>" END},
        {"reference to a control", WS "<row><c t=\"str\"><v>a&#1;b</v></c></row>" END},
        {"reference past Unicode", WS "<row><c t=\"str\"><v>&#x110000;</v></c></row>" END},
        {"reference to a surrogate", WS "<row><c t=\"str\"><v>&#xD800;</v></c></row>" END},
        {"CR in text", WS "<row><c t=\"str\"><v>a\r\nb</v></c></row>" END},
        {"control byte in text", WS "<row><c t=\"str\"><v>a\x01</v></c></row>" END},
        {"NUL byte in text", WS "<row><c t=\"str\"><v>a\0b</v></c></row>" END},
        {"invalid UTF-8", WS "<row><c t=\"str\"><v>a\xff</v></c></row>" END},
        {"overlong UTF-8", WS "<row><c t=\"str\"><v>a\xc0\xaf</v></c></row>" END},
        {"UTF-8 surrogate", WS "<row><c t=\"str\"><v>\xed\xa0\x80</v></c></row>" END},
        {"U+FFFE", WS "<row><c t=\"str\"><v>\xef\xbf\xbe</v></c></row>" END},
        {"cut UTF-8 at the end", WS "<row><c t=\"str\"><v>\xe6\x97"},
        {"]]> in text", WS "<row><c t=\"str\"><v>a]]>b</v></c></row>" END},
        {"mismatched tags", WS "<row><c><v>1</c></v></row>" END},
        {"unclosed root", WS "<row><c><v>1</v></c></row></sheetData>"},
        {"text after the root", WS "<row><c><v>1</v></c></row>" END "x"},
        {"two roots", WS "<row><c><v>1</v></c></row>" END "<worksheet/>"},
        {"empty document", ""},
        {"white space only", " \n"},
        {"unquoted attribute", WS "<row r=1><c><v>1</v></c></row>" END},
        {"duplicate attribute", WS "<row><c t=\"n\" t=\"s\"><v>1</v></c></row>" END},
        {"same local name, two prefixes",
         "<worksheet xmlns=\"" S_NS "\" xmlns:a=\"urn:x\" xmlns:b=\"urn:x\"><sheetData>"
         "<row a:y=\"1\" b:y=\"2\"/>" END},
        {"< in an attribute", WS "<row x=\"a<b\"><c><v>1</v></c></row>" END},
        {"reference in t", WS "<row><c t=\"&#115;\"><v>1</v></c></row>" END},
        {"tab in t", WS "<row><c t=\"s\t\"><v>1</v></c></row>" END},
        {"namespaced t", "<worksheet xmlns=\"" S_NS "\" xmlns:q=\"urn:q\"><sheetData><row>"
                         "<c q:t=\"s\"><v>1</v></c></row>" END},
        {"unbound element prefix", WS "<row><q:c><v>1</v></q:c></row>" END},
        {"unbound attribute prefix", WS "<row q:x=\"1\"><c><v>1</v></c></row>" END},
        {"xml-prefixed element", WS "<row><xml:c/></row>" END},
        {"reference in xmlns", "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/"
                               "2006/mai&#110;\"><sheetData><row><c><v>1</v></c></row>" END},
        {"no space between attributes", WS "<row r=\"1\"s=\"2\"><c><v>1</v></c></row>" END},
        {"two colons in a name", WS "<row><a:b:c/></row>" END},
        {"non-ASCII name", WS "<row><c\xc3\xa9/></row>" END},
        {"cut in a tag", WS "<row><c r=\"A1"},
        {"cut in a reference", WS "<row><c t=\"str\"><v>&am"},
        {"< not a tag", WS "<row>< c/></row>" END},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *xml = cases[i].xml;
        size_t len = strlen(xml);
        if (strcmp(cases[i].what, "NUL byte in text") == 0)
            len = strlen(WS "<row><c t=\"str\"><v>a") + 1 + strlen("b</v></c></row>" END);
        static const size_t chunks[] = {0, 1, 3, 17};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            if (check_sheet(cases[i].what, xml, len, chunks[c], 0)) {
                fprintf(stderr, "%s: the fast path did not give up\n", cases[i].what);
                sl_test_failures++;
            }
        }
    }
    /* deeper than the scanner goes: libxml2's */
    char deep[4096];
    size_t dl = (size_t)snprintf(deep, sizeof deep, "%s", WS);
    for (int i = 0; i < 100; i++)
        dl += (size_t)snprintf(deep + dl, sizeof deep - dl, "<row>");
    for (int i = 0; i < 100; i++)
        dl += (size_t)snprintf(deep + dl, sizeof deep - dl, "</row>");
    dl += (size_t)snprintf(deep + dl, sizeof deep - dl, "%s", END);
    CHECK(!check_sheet("deep", deep, dl, 0, 0));
    /* a bail after text was appended takes it back exactly */
    const char *late = WS "<row><c><v>1</v></c></row><row><c><v>2</v></c></row><!-- x -->" END;
    run_t a = run_sheet(late, strlen(late), 0, SL_SHEET_AUTO, 0);
    CHECK(a.rc == SL_ZIP_OK);
    CHECK_STR(a.text, "Sheet 1\n2\n");
    free(a.text);
}

/* In a real workbook: a sheet the fast path gives up on late is read
 * again by libxml2, its inflated bytes counted once. */
static void test_fallback_in_zip(void)
{
    /* sample.xlsx with a comment at the end of its first sheet */
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import zipfile,sys; d=sys.argv[1]; s=zipfile.ZipFile(d+\"/sample.xlsx\");"
             " o=zipfile.ZipFile(d+\"/../sheet-bail.xlsx\",\"w\",zipfile.ZIP_DEFLATED);"
             " [o.writestr(i.filename, s.read(i).replace(b\"</worksheet>\",b\"<!-- x --></worksheet>\")"
             " if i.filename.endswith(\"sheet1.xml\") else s.read(i)) for i in s.infolist()]; o.close()' '%s'",
             sl_fx_dir);
    CHECK(system(cmd) == 0);
    sl_extract_result r[3];
    static const int modes[] = {SL_SHEET_LIBXML, SL_SHEET_AUTO, SL_SHEET_FAST};
    int rc[3];
    for (int m = 0; m < 3; m++) {
        sl_sheet_set_mode(modes[m]);
        rc[m] = sl_fx_run(sl_extract_xlsx, "../sheet-bail.xlsx", NULL, &r[m]);
    }
    sl_sheet_set_mode(SL_SHEET_AUTO);
    CHECK(rc[0] == SL_EXTRACT_OK && rc[1] == SL_EXTRACT_OK);
    CHECK(rc[2] == SL_EXTRACT_ERR); /* the fast path alone gave up */
    CHECK_STR(r[0].text, "Summary\nTotal\t42\n"
                         "Data\nName\tValue\nZ\xc3\xbcrich\t3.14\tTRUE\ninline text\t3.14\t#DIV/0!\n0.001");
    CHECK_STR(r[1].text, r[0].text);
    sl_extract_result_free(&r[2]);
    CHECK(r[1].inflated == r[0].inflated);
    CHECK(r[1].inflated > 0);
    sl_extract_result_free(&r[0]);
    sl_extract_result_free(&r[1]);
}

int main(void)
{
    if (!sl_fx_corpus())
        return 1;
    sst_init();
    for (int run = 0; run < 2; run++) { /* twice: no state leaks between runs */
        test_fast();
        test_bail();
    }
    test_huge_cell();
    test_fallback_in_zip();
    test_corpus();
    printf("sheet_test: %ld fast, %ld gave up\n", n_fast, n_bailed);
    return sl_test_done("sheet");
}
