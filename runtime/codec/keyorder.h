/*
 * The byte order of object keys that the canonical encoders share (the
 * content hash in crypto.c, the sinks' JSON writer in jsonbuf.c): memcmp
 * order, shorter first on a tie. Each key carries its first 8 bytes as a
 * big-endian integer, so sorting a document's keys usually decides with one
 * integer compare instead of a call to memcmp; the order is exactly
 * memcmp's, so hashes do not change.
 */
#ifndef SL_CODEC_KEYORDER_H
#define SL_CODEC_KEYORDER_H

#include <stdint.h>
#include <string.h>

static inline uint64_t sl_key_prefix(const char *s, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, s, n < 8 ? n : 8);
    return __builtin_bswap64(v); /* zero-padded: a shorter key sorts first */
}

static inline int sl_key_order(uint64_t px, const char *x, size_t nx, uint64_t py, const char *y,
                               size_t ny)
{
    if (px != py)
        return px < py ? -1 : 1;
    size_t n = nx < ny ? nx : ny;
    if (n > 8) {
        int c = memcmp(x + 8, y + 8, n - 8);
        if (c)
            return c;
    }
    return (nx > ny) - (nx < ny);
}

#endif
