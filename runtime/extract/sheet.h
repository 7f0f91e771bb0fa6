/*
 * Text of XLSX worksheet parts (sheet.c), for ooxml.c and the tests.
 *
 * Worksheet XML is most of what an XLSX inflates to, and it is extremely
 * regular: <row><c r="A1" s="3" t="s"><v>12</v></c>... So a worksheet is
 * first read by a fast scanner that handles only the subset Excel and
 * LibreOffice write; the moment it meets anything else (a DOCTYPE, a
 * comment, CDATA, a processing instruction, another encoding, an entity it
 * does not know, malformed markup, limits it does not want to reason
 * about) it gives up, the text it appended is taken back, and the part is
 * read again from its start by libxml2, exactly as without the fast path.
 * Both paths drive the same cell handlers, so the text is the same either
 * way; spec/runtime/extract/sheet_test.c and spec/fuzz/sheet_fuzz.c check it.
 */
#ifndef SL_EXTRACT_SHEET_H
#define SL_EXTRACT_SHEET_H

#include "extract/extract.h"
#include "extract/zip.h"

/* The shared string table: string i is chars + offs[i], NUL-terminated. */
typedef struct {
    const char *chars;
    const size_t *offs;
    size_t n;
} sl_sheet_sst;

/* Which path reads a worksheet. */
enum {
    SL_SHEET_AUTO = 0, /* the fast scanner, libxml2 when it gives up */
    SL_SHEET_LIBXML,   /* libxml2 only */
    SL_SHEET_FAST      /* the fast scanner only: SL_SHEET_BAILED when it gives up */
};

/* What the fast scanner returns (mode SL_SHEET_FAST) when it gave up; not
 * one of the SL_ZIP_* codes, never seen by sl_zip_result in mode AUTO. */
#define SL_SHEET_BAILED 100

/* The mode sl_sheet_part uses on this thread (tests; the default is AUTO). */
void sl_sheet_set_mode(int mode);

/* Appends worksheet `part` of z to out (one line per row, cells joined by
 * tabs, then a newline). Returns an SL_ZIP_* code (SL_ZIP_STOPPED: the text
 * is full or an append failed), or SL_SHEET_BAILED in mode SL_SHEET_FAST. */
int sl_sheet_part(sl_zip *z, const char *part, const sl_sheet_sst *sst, sl_extract_result *out);

/* The same for a worksheet given whole in xml[0..len), fed to the parser in
 * pieces of `chunk` bytes (0: all at once), with `mode` as above. For the
 * equivalence test and the differential fuzzer. */
int sl_sheet_buffer(const char *xml, size_t len, size_t chunk, const sl_sheet_sst *sst, int mode,
                    sl_extract_result *out);

#endif
