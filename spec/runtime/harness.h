/*
 * A minimal C test harness: CHECK records failures and keeps going, so one
 * run reports every broken expectation; sl_test_lua runs a chunk as the root
 * task of a real VM, the way the product runs connector code.
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include "core/vm.h"
#include <stdio.h>
#include <string.h>

extern int sl_test_failures;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            sl_test_failures++;                                              \
        }                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *a_ = (a), *b_ = (b);                                     \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                             \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, \
                    __LINE__, b_ ? b_ : "(null)", a_ ? a_ : "(null)");       \
            sl_test_failures++;                                              \
        }                                                                    \
    } while (0)

/* Runs `chunk` as the root task of a fresh VM. The chunk signals failure by
 * raising (use assert); returns the exit status (0 when it returned
 * normally). */
int sl_test_lua(const char *name, const char *chunk);

/* Prints a summary; returns the process exit status. */
int sl_test_done(const char *suite);

#endif
