/*
 * Decimal integers without snprintf, for the hot paths that write many
 * (the JSON writer's numbers, SQL key parts): snprintf's format parsing
 * was measurable once per document.
 */
#ifndef SL_CODEC_INTFMT_H
#define SL_CODEC_INTFMT_H

/* Writes the decimal digits of v into out (at least 21 bytes, no NUL);
 * returns the length. */
static inline int sl_fmt_int(char *out, long long v)
{
    char tmp[24];
    int n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

#endif
