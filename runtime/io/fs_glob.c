/*
 * The gitignore-like glob matcher behind fs.glob_match, apart from fs.c so
 * the syscall bindings and this pure string code stay small enough to read.
 * It works on bytes with lengths (names may hold any byte but NUL), never
 * allocates and never backtracks exponentially.
 *
 * Grammar, gitignore-like, on relative paths with '/' separators:
 *   *       any run of characters except '/'
 *   ?       one character (one UTF-8 sequence, or one invalid byte)
 *   [abc] [a-z] [!x] [^x]   one character from / not from a class;
 *           ']' first in a class is literal; an unclosed '[' is literal
 *   \c      c literally
 *   **      as a whole segment: zero or more segments; as the last
 *           segment one or more (everything inside a directory, not the
 *           directory itself, as gitignore has it)
 * A pattern without '/' matches the last path segment only (*.txt matches
 * a/b/c.txt); one with a '/' matches the whole path, and a leading '/' only
 * says so explicitly. A trailing '/' (gitignore's "directory only") is
 * dropped: a path string does not say what it names. Empty segments and a
 * leading '/' in the path are ignored. Matching is byte-exact (case
 * sensitive). `!` negation belongs to rule lists, not to one pattern.
 *
 * Both levels (characters within a segment, segments within a path) use
 * the wildcard algorithm that only remembers the last star: correct because
 * a later star can absorb whatever an earlier one could, and bounded by
 * len(pattern) * len(text) steps.
 */
#include "io/fs.h"

#include <stdint.h>
#include <string.h>

#define CP_INVALID 0x110000u /* invalid bytes decode to 0x110000 + byte */

static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t need = 0;
    uint32_t v = 0, lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    }
    if (need == 0 || need >= n)
        goto invalid;
    for (size_t i = 1; i <= need; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            goto invalid;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need + 1;
invalid:
    *cp = CP_INVALID + c;
    return 1;
}

/* Reads one (maybe escaped) character of a class at *p; returns 0 at the
 * end of the pattern segment. */
static int class_char(const unsigned char *pat, size_t plen, size_t *p,
                      uint32_t *cp)
{
    if (*p >= plen)
        return 0;
    if (pat[*p] == '\\' && *p + 1 < plen)
        (*p)++;
    *p += utf8_next(pat + *p, plen - *p, cp);
    return 1;
}

/* Matches the class starting at pat[p] == '[' against cp. Returns 1/0 with
 * *end just past the class, or -1 when the class is not closed. */
static int class_match(const unsigned char *pat, size_t plen, size_t p,
                       uint32_t cp, size_t *end)
{
    size_t i = p + 1;
    int neg = 0, hit = 0;
    if (i < plen && (pat[i] == '!' || pat[i] == '^')) {
        neg = 1;
        i++;
    }
    int first = 1;
    for (;;) {
        if (i >= plen)
            return -1;
        if (pat[i] == ']' && !first)
            break;
        first = 0;
        uint32_t lo, hi;
        if (!class_char(pat, plen, &i, &lo))
            return -1;
        hi = lo;
        if (i + 1 < plen && pat[i] == '-' && pat[i + 1] != ']') {
            i++;
            if (!class_char(pat, plen, &i, &hi))
                return -1;
        }
        if (cp >= lo && cp <= hi)
            hit = 1;
    }
    *end = i + 1;
    return hit != neg;
}

/* Matches the single pattern element at *p (not '*') against the character
 * at *s; advances both on a match. */
static int elem_match(const unsigned char *pat, size_t plen, size_t *p,
                      const unsigned char *str, size_t slen, size_t *s)
{
    uint32_t c;
    size_t clen = utf8_next(str + *s, slen - *s, &c);
    unsigned char pc = pat[*p];
    if (pc == '?') {
        *p += 1;
        *s += clen;
        return 1;
    }
    if (pc == '[') {
        size_t end;
        int m = class_match(pat, plen, *p, c, &end);
        if (m >= 0) {
            if (!m)
                return 0;
            *p = end;
            *s += clen;
            return 1;
        }
        /* unclosed: a literal '[' */
    } else if (pc == '\\' && *p + 1 < plen) {
        size_t q = *p + 1;
        uint32_t want;
        size_t wl = utf8_next(pat + q, plen - q, &want);
        if (want != c)
            return 0;
        *p = q + wl;
        *s += clen;
        return 1;
    }
    uint32_t want;
    size_t wl = utf8_next(pat + *p, plen - *p, &want);
    if (want != c)
        return 0;
    *p += wl;
    *s += clen;
    return 1;
}

static int seg_match(const unsigned char *pat, size_t plen,
                     const unsigned char *str, size_t slen)
{
    size_t p = 0, s = 0, star_p = SIZE_MAX, star_s = 0;
    while (s < slen) {
        if (p < plen && pat[p] == '*') {
            while (p < plen && pat[p] == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        if (p < plen && elem_match(pat, plen, &p, str, slen, &s))
            continue;
        if (star_p == SIZE_MAX)
            return 0;
        uint32_t c;
        star_s += utf8_next(str + star_s, slen - star_s, &c);
        s = star_s;
        p = star_p;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* Finds the segment at or after *pos (skipping '/'); 0 when none is left. */
static int seg_at(const unsigned char *s, size_t n, size_t *pos, size_t *start,
                  size_t *len)
{
    size_t i = *pos;
    while (i < n && s[i] == '/')
        i++;
    if (i >= n) {
        *pos = i;
        return 0;
    }
    size_t j = i;
    while (j < n && s[j] != '/')
        j++;
    *pos = i;
    *start = i;
    *len = j - i;
    return 1;
}

static int is_dstar(const unsigned char *s, size_t len)
{
    return len == 2 && s[0] == '*' && s[1] == '*';
}

static int path_match(const unsigned char *pat, size_t plen,
                      const unsigned char *path, size_t len)
{
    size_t pp = 0, sp = 0, star_pp = SIZE_MAX, star_sp = 0;
    size_t ps, pl, ss, sl;
    for (;;) {
        int have_s = seg_at(path, len, &sp, &ss, &sl);
        int have_p = seg_at(pat, plen, &pp, &ps, &pl);
        if (!have_s)
            break;
        if (have_p && is_dstar(pat + ps, pl)) {
            size_t after = ps + pl, t1, t2;
            if (!seg_at(pat, plen, &after, &t1, &t2))
                return 1; /* trailing **: one or more segments, and one is here */
            star_pp = pp = after;
            star_sp = sp;
            continue;
        }
        if (have_p && seg_match(pat + ps, pl, path + ss, sl)) {
            pp = ps + pl;
            sp = ss + sl;
            continue;
        }
        if (star_pp == SIZE_MAX)
            return 0;
        /* let the last ** absorb one more segment */
        if (!seg_at(path, len, &star_sp, &ss, &sl))
            return 0;
        star_sp = ss + sl;
        sp = star_sp;
        pp = star_pp;
    }
    /* path used up: only non-final ** may remain */
    for (;;) {
        if (!seg_at(pat, plen, &pp, &ps, &pl))
            return 1;
        size_t after = ps + pl, t1, t2;
        if (!is_dstar(pat + ps, pl) || !seg_at(pat, plen, &after, &t1, &t2))
            return 0;
        pp = after;
    }
}

int sl_fs_glob_match(const char *pattern, size_t plen, const char *path,
                     size_t len)
{
    const unsigned char *pat = (const unsigned char *)pattern;
    const unsigned char *p = (const unsigned char *)path;
    int anchored = 0;
    if (plen > 0 && pat[0] == '/') {
        anchored = 1;
        pat++;
        plen--;
    }
    if (plen > 0 && pat[plen - 1] == '/' && !(plen > 1 && pat[plen - 2] == '\\'))
        plen--;
    if (plen == 0)
        return 0;
    if (anchored || memchr(pat, '/', plen))
        return path_match(pat, plen, p, len);
    /* no '/': the last segment only */
    while (len > 0 && p[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && p[start - 1] != '/')
        start--;
    if (start == len)
        return 0;
    return seg_match(pat, plen, p + start, len - start);
}
