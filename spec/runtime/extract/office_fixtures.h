/*
 * Shared by the office/mail extractor tests: builds the generated corpus
 * (spec/fixtures/extract/make_office.py, once, into spec/.tmp/extract) and
 * runs one extractor on one file the way the dispatcher would, minus the
 * detection, so each test pins its own format's behaviour.
 */
#ifndef SL_OFFICE_FIXTURES_H
#define SL_OFFICE_FIXTURES_H

#include "extract/extract.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char sl_fx_dir[1024];

/* Builds the corpus; returns its folder, or NULL (and says why). */
static const char *sl_fx_corpus(void)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    if (!src)
        src = ".";
    snprintf(sl_fx_dir, sizeof sl_fx_dir, "%s/spec/.tmp/extract", src);
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "python3 '%s/spec/fixtures/extract/make_office.py' '%s'", src,
             sl_fx_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "make_office.py failed\n");
        return NULL;
    }
    return sl_fx_dir;
}

static char *sl_fx_read(const char *name, size_t *len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", sl_fx_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        sl_test_failures++;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

typedef int (*sl_fx_fn)(const char *, size_t, const sl_extract_limits *, sl_extract_result *);

/* Runs fn on buf with lim (NULL: defaults) into r, and trims the trailing
 * break as sl_extract_buffer does. Returns fn's code. */
static int sl_fx_run_buf(sl_fx_fn fn, const char *buf, size_t len, const sl_extract_limits *lim,
                         sl_extract_result *r)
{
    static sl_extract_limits dflt;
    if (!lim) {
        sl_extract_limits_default(&dflt, 30);
        lim = &dflt;
    }
    sl_extract_result_init(r, lim);
    int rc = fn(buf, len, lim, r);
    while (r->len && (r->text[r->len - 1] == '\n' || r->text[r->len - 1] == ' '))
        r->text[--r->len] = '\0';
    return rc;
}

static int sl_fx_run(sl_fx_fn fn, const char *name, const sl_extract_limits *lim,
                     sl_extract_result *r)
{
    size_t len = 0;
    char *buf = sl_fx_read(name, &len);
    if (!buf) {
        sl_extract_result_init(r, lim);
        return -99;
    }
    int rc = sl_fx_run_buf(fn, buf, len, lim, r);
    free(buf);
    return rc;
}

#endif
