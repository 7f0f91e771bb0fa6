/*
 * One UTF-8 decoder shared by the codecs, so that JSON encoding, JSON
 * decoding and text.clean agree byte for byte on what is invalid and on how
 * much of it one U+FFFD replaces: the "maximal subpart" rule of the Unicode
 * standard (chapter 3, U+FFFD substitution of maximal subparts), driven by
 * the table of well-formed byte sequences. Header-only because it sits in
 * every inner loop.
 */
#ifndef SL_CODEC_UTF8_H
#define SL_CODEC_UTF8_H

#include <stddef.h>

/* The UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER. */
#define SL_UTF8_REPLACEMENT "\xef\xbf\xbd"

/* Measures the sequence starting at s[0] (n > 0 bytes available). Returns
 * its length and sets *valid to 1 for a well-formed character; otherwise
 * sets *valid to 0 and returns the length of the maximal subpart (at least
 * 1), which the caller replaces with one U+FFFD. Never fails. */
static inline size_t sl_utf8_next(const unsigned char *s, size_t n, int *valid)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xbf;
    size_t need;

    *valid = 1;
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        need = 1;
    } else if (b == 0xe0) {
        need = 2, lo = 0xa0;
    } else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) {
        need = 2;
    } else if (b == 0xed) { /* excludes the surrogates D800..DFFF */
        need = 2, hi = 0x9f;
    } else if (b == 0xf0) { /* excludes overlong 4-byte forms */
        need = 3, lo = 0x90;
    } else if (b >= 0xf1 && b <= 0xf3) {
        need = 3;
    } else if (b == 0xf4) { /* nothing above U+10FFFF */
        need = 3, hi = 0x8f;
    } else { /* 80..C1 (continuation or overlong lead), F5..FF */
        *valid = 0;
        return 1;
    }
    if (n < 2 || s[1] < lo || s[1] > hi) {
        *valid = 0;
        return 1;
    }
    for (size_t k = 2; k <= need; k++) {
        if (k >= n || s[k] < 0x80 || s[k] > 0xbf) {
            *valid = 0;
            return k;
        }
    }
    return need + 1;
}

/* Writes the UTF-8 form of code point c (at most U+10FFFF, not a
 * surrogate) to out; returns the number of bytes (1..4). */
static inline size_t sl_utf8_put(unsigned char *out, unsigned long c)
{
    if (c < 0x80) {
        out[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (unsigned char)(0xc0 | (c >> 6));
        out[1] = (unsigned char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (c >> 12));
        out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (c >> 18));
    out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (c & 0x3f));
    return 4;
}

#endif
