/*
 * Differential libFuzzer target for the XLSX worksheet fast path
 * (runtime/extract/sheet.c): the fast scanner either gives up or gives
 * exactly what libxml2 gives (code, text, character count, flags), and the
 * automatic mode (fast, libxml2 on a bail) always does. The first byte
 * picks the piece size the scanner is fed in (so tokens are cut at every
 * place), the second a max_chars cap (so texts are cut too); the rest is
 * the sheet XML. Build and run: spec/fuzz/run.sh.
 */
#include "extract/sheet.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int rc;
    char *text;
    size_t len, nchars;
    unsigned flags;
} run_t;

static char sst_chars[4096];
static size_t sst_offs[256];
static sl_sheet_sst sst;

static run_t run(const char *xml, size_t len, size_t chunk, int mode, size_t max_chars)
{
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 5.0);
    lim.max_chars = max_chars;
    sl_extract_result r;
    sl_extract_result_init(&r, &lim);
    sl_extract_append(&r, "Sheet ", 6); /* a bail gives back text and its last byte */
    run_t o;
    o.rc = sl_sheet_buffer(xml, len, chunk, &sst, mode, &r);
    o.text = r.text ? malloc(r.len + 1) : NULL;
    if (o.text)
        memcpy(o.text, r.text, r.len + 1);
    o.len = r.len;
    o.nchars = r.nchars;
    o.flags = r.flags;
    if (r.nchars > lim.max_chars && lim.max_chars)
        abort();
    sl_extract_result_free(&r);
    return o;
}

static int same(const run_t *a, const run_t *b)
{
    return a->rc == b->rc && a->len == b->len && a->nchars == b->nchars && a->flags == b->flags &&
           (a->len == 0 || memcmp(a->text, b->text, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (!sst.n) {
        size_t len = 0;
        for (size_t i = 0; i < 256; i++) {
            sst_offs[i] = len;
            len += (size_t)snprintf(sst_chars + len, sizeof sst_chars - len, "s%zu", i) + 1;
        }
        sst = (sl_sheet_sst){sst_chars, sst_offs, 256};
    }
    size_t chunk = data[0] % 8 == 0 ? 0 : (size_t)data[0] % 97 + 1;
    size_t max_chars = data[1] < 128 ? 0 : (size_t)data[1] - 127;
    size_t n = size - 2;
    /* a heap copy, so reads past the end are ASan's to catch */
    char *xml = malloc(n ? n : 1);
    memcpy(xml, data + 2, n);
    run_t ref = run(xml, n, chunk, SL_SHEET_LIBXML, max_chars);
    run_t fast = run(xml, n, chunk, SL_SHEET_FAST, max_chars);
    run_t aut = run(xml, n, chunk, SL_SHEET_AUTO, max_chars);
    if (fast.rc != SL_SHEET_BAILED && !same(&fast, &ref)) {
        fprintf(stderr, "fast path differs: libxml2 rc %d len %zu, fast rc %d len %zu\n", ref.rc,
                ref.len, fast.rc, fast.len);
        abort();
    }
    if (!same(&aut, &ref)) {
        fprintf(stderr, "auto differs: libxml2 rc %d len %zu, auto rc %d len %zu\n", ref.rc, ref.len,
                aut.rc, aut.len);
        abort();
    }
    free(ref.text), free(fast.text), free(aut.text);
    free(xml);
    return 0;
}
