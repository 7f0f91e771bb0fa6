/*
 * libFuzzer target for the extraction entry points. The first byte picks
 * the extractor (forced kind, as extract.text's opts.type does), or for 0
 * detection by content, or past the kinds the charset entry points
 * (sl_extract_text_cs, sl_extract_html_cs) with a charset a transport might
 * declare; the rest is the document. Tight limits keep one
 * input cheap, so the fuzzer explores parsers rather than big allocations.
 * PDF inputs go to the real worker process: what is fuzzed there is the
 * client's isolation (a worker crash must be an error, never ours).
 * Build and run: spec/fuzz/run.sh.
 */
#include "extract/extract.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const charsets[] = {NULL, "UTF-16LE", "windows-1252", "CP1251",
                                            "ISO-2022-JP", "no-such-charset"};
    const int ncs = (int)(sizeof charsets / sizeof charsets[0]);
    int pick = data[0] % (SL_KIND_COUNT + 2 * ncs);
    sl_extract_kind kind = pick < SL_KIND_COUNT ? (sl_extract_kind)pick : SL_KIND_UNKNOWN;
    if (kind == SL_KIND_PDF && !getenv("SL_FUZZ_PDF"))
        kind = SL_KIND_UNKNOWN; /* a process per input is slow: opt in */
    /* a heap copy, so reads past the end are ASan's to catch */
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    memcpy(buf, data + 1, n);
    sl_extract_limits lim;
    sl_extract_limits_default(&lim, 5.0);
    lim.max_entry_inflated = 4u << 20;
    lim.max_file_inflated = 8u << 20;
    lim.max_chars = 1u << 20;
    sl_extract_result r;
    sl_extract_result_init(&r, &lim);
    int rc;
    if (pick < SL_KIND_COUNT) {
        rc = sl_extract_buffer(buf, n, NULL, kind, &lim, &r);
    } else {
        int k = pick - SL_KIND_COUNT;
        const char *cs = charsets[k % ncs];
        rc = k < ncs ? sl_extract_text_cs(buf, n, cs, &lim, &r) : sl_extract_html_cs(buf, n, cs, &lim, &r);
    }
    /* the contract every caller relies on */
    if (rc == SL_EXTRACT_OK && r.text && strlen(r.text) > r.len)
        abort();
    if (rc != SL_EXTRACT_OK && !r.err[0])
        abort();
    if (r.nchars > lim.max_chars)
        abort();
    sl_extract_result_free(&r);
    free(buf);
    return 0;
}
