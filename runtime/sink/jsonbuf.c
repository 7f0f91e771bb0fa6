/*
 * The JSON writer the sinks share (see jsonbuf.h). It walks a Lua table with
 * the C API and writes bytes into one growable buffer, so serialising a
 * document costs no Lua garbage beyond the key strings it looks up again.
 *
 * Keys are sorted so the output is deterministic; the sort scratch lives in
 * the buffer struct and is reused, so a steady stream of documents
 * allocates nothing once the buffer has grown. Errors never raise: they
 * return -1 with a static message and roll the buffer back, so one bad
 * document fails alone.
 */
#include "jsonbuf.h"
#include "codec/keyorder.h"
#include "codec/intfmt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_LUA_TCDATA 10 /* LuaJIT's cdata type tag, not in lua.h */

struct sl_jsonbuf_key {
    const char *s; /* points into a Lua string kept alive by its table */
    size_t n;
    uint64_t prefix; /* keyorder.h */
    double num;    /* the key itself when isnum */
    int isnum;
    int vidx;      /* stack slot of the value (fast path), or 0 */
    char nbuf[32]; /* the number key's decimal text */
};

void sl_jsonbuf_init(sl_jsonbuf *b)
{
    memset(b, 0, sizeof *b);
}

void sl_jsonbuf_free(sl_jsonbuf *b)
{
    free(b->ptr);
    free(b->keys);
    memset(b, 0, sizeof *b);
}

int sl_jsonbuf_reserve(sl_jsonbuf *b, size_t n)
{
    if (b->size - b->len >= n)
        return 0;
    size_t want = b->size ? b->size : 256;
    while (want - b->len < n) {
        if (want > SIZE_MAX / 2)
            return -1;
        want *= 2;
    }
    char *p = realloc(b->ptr, want);
    if (!p)
        return -1;
    b->ptr = p;
    b->size = want;
    return 0;
}

int sl_jsonbuf_append(sl_jsonbuf *b, const void *p, size_t n)
{
    if (sl_jsonbuf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

int sl_jsonbuf_putc(sl_jsonbuf *b, char c)
{
    if (b->len == b->size && sl_jsonbuf_reserve(b, 1) != 0)
        return -1;
    b->ptr[b->len++] = c;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or the negated length of
 * the maximal invalid prefix to replace by one U+FFFD (Unicode's
 * "substitution of maximal subparts"). */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the first continuation */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c == 0xE0) {
        need = 2, lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        need = 2;
    } else if (c == 0xED) {
        need = 2, hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c == 0xF0) {
        need = 3, lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 3;
    } else if (c == 0xF4) {
        need = 3, hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return -k;
        unsigned char d = s[k];
        if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
            return -k;
    }
    return need + 1;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The index of the first byte at or after i that cannot be copied as it is
 * (below 0x20, '"', '\\' or above 0x7f), or n. Text is mostly plain ASCII,
 * so eight bytes are tested at a time; each test is exact about whether
 * such a byte is in the word. */
static size_t plain_run(const unsigned char *s, size_t i, size_t n)
{
    while (n - i >= 8) {
        uint64_t w, q, bs;
        memcpy(&w, s + i, 8);
        q = w ^ (ONES * '"');
        bs = w ^ (ONES * '\\');
        if ((((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((bs - ONES) & ~bs) | w) & HIGHS)
            break;
        i += 8;
    }
    while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

int sl_jsonbuf_string(sl_jsonbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
    if (n > (SIZE_MAX - 2) / 6 || sl_jsonbuf_reserve(b, n * 6 + 2) != 0)
        return -1;
    char *o = b->ptr + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = plain_run(s, i, n);
        if (j > i) {
            memcpy(o, s + i, j - i);
            o += j - i, i = j;
            if (i == n)
                break;
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u', *o++ = '0', *o++ = '0';
                *o++ = hex[c >> 4], *o++ = hex[c & 15];
            }
            i++;
        } else {
            int k = utf8_seq(s + i, n - i);
            if (k > 0) {
                memcpy(o, s + i, (size_t)k);
                o += k, i += (size_t)k;
            } else {
                *o++ = (char)0xEF, *o++ = (char)0xBF, *o++ = (char)0xBD;
                i += (size_t)-k;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    return 0;
}

int sl_jsonbuf_number(sl_jsonbuf *b, double x)
{
    char tmp[400]; /* %.0f of DBL_MAX is 309 digits */
    int n;
    if (!isfinite(x))
        return -1;
    if (x == floor(x)) {
        if (x == 0)
            x = 0; /* no "-0" */
        if (x >= -9007199254740992.0 && x <= 9007199254740992.0)
            n = sl_fmt_int(tmp, (long long)x);
        else
            n = snprintf(tmp, sizeof tmp, "%.0f", x);
    } else {
        /* the shortest precision that reads back as the same double */
        for (int prec = 15;; prec++) {
            n = snprintf(tmp, sizeof tmp, "%.*g", prec, x);
            if (prec >= 17 || strtod(tmp, NULL) == x)
                break;
        }
    }
    return sl_jsonbuf_append(b, tmp, (size_t)n);
}

/* The __jsontype field of the value's metatable, or NULL. */
static const char *json_type_hint(lua_State *L, int idx)
{
    const char *hint = NULL;
    if (lua_getmetatable(L, idx)) {
        lua_getfield(L, -1, "__jsontype");
        if (lua_type(L, -1) == LUA_TSTRING)
            hint = lua_tostring(L, -1); /* interned literal, safe after pop */
        lua_pop(L, 2);
    }
    return hint;
}

/* An int64/uint64 cdata written as its exact decimal digits. */
static int encode_cdata(sl_jsonbuf *b, lua_State *L, int idx, const char **err)
{
    lua_getfield(L, LUA_GLOBALSINDEX, "tostring");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    size_t n = 0;
    const char *s = lua_tolstring(L, -1, &n);
    size_t d = 0;
    if (s && d < n && s[d] == '-')
        d++;
    size_t digits = d;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    int ok = s && d > digits && ((n - d == 2 && memcmp(s + d, "LL", 2) == 0) ||
                                 (n - d == 3 && memcmp(s + d, "ULL", 3) == 0));
    int rc = -1;
    if (!ok)
        *err = "cannot encode cdata";
    else if ((rc = sl_jsonbuf_append(b, s, d)) != 0)
        *err = "out of memory";
    lua_pop(L, 1);
    return rc;
}

static int encode(sl_jsonbuf *b, lua_State *L, int idx, int depth, const char **err);

static int key_cmp(const void *a, const void *b)
{
    /* a number key's text is read from nbuf, never through s: sorting
     * moves the structs, and a pointer into one would then be stale */
    const struct sl_jsonbuf_key *x = a, *y = b;
    return sl_key_order(x->prefix, x->isnum ? x->nbuf : x->s, x->n, y->prefix,
                        y->isnum ? y->nbuf : y->s, y->n);
}

static int encode_array(sl_jsonbuf *b, lua_State *L, int idx, size_t n, int depth,
                        const char **err)
{
    if (sl_jsonbuf_putc(b, '[') != 0)
        goto oom;
    for (size_t i = 1; i <= n; i++) {
        if (i > 1 && sl_jsonbuf_putc(b, ',') != 0)
            goto oom;
        lua_rawgeti(L, idx, (int)i);
        int rc;
        if (lua_isfunction(L, -1) || lua_isnil(L, -1))
            rc = sl_jsonbuf_append(b, "null", 4) ? (*err = "out of memory", -1) : 0;
        else
            rc = encode(b, L, lua_gettop(L), depth + 1, err);
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    if (sl_jsonbuf_putc(b, ']') != 0)
        goto oom;
    return 0;
oom:
    *err = "out of memory";
    return -1;
}

/* Objects with at most this many keys keep their keys and values on the
 * Lua stack while they are written, so no value is looked up twice. */
#define FAST_KEYS 24

/* Stable enough for unique keys, and faster than qsort for a handful. */
static void sort_keys(struct sl_jsonbuf_key *k, size_t n)
{
    if (n > FAST_KEYS) {
        qsort(k, n, sizeof *k, key_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct sl_jsonbuf_key t = k[i];
        size_t j = i;
        while (j > 0 && key_cmp(&k[j - 1], &t) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = t;
    }
}

/* Fills in a number key's text; 0, or -1 when it is not finite. */
static int number_key(struct sl_jsonbuf_key *k, double x)
{
    if (!isfinite(x))
        return -1;
    k->isnum = 1;
    k->num = x;
    if (x == floor(x) && fabs(x) < 1e18)
        k->n = (size_t)snprintf(k->nbuf, sizeof k->nbuf, "%lld", (long long)x);
    else
        k->n = (size_t)snprintf(k->nbuf, sizeof k->nbuf, "%.17g", x);
    k->prefix = sl_key_prefix(k->nbuf, k->n);
    return 0;
}

/* encode_object for small tables: one traversal that leaves every
 * [key value] pair on the stack. Returns 0 or -1 as encode_object, or 1
 * (nothing written, stack as it was) when the table has too many keys. */
static int encode_object_fast(sl_jsonbuf *b, lua_State *L, int idx, int depth, const char **err)
{
    size_t base = b->nkeys;
    int top = lua_gettop(L), rc = -1;
    if (b->keycap - base < FAST_KEYS) {
        size_t cap = b->keycap ? b->keycap : 32;
        while (cap - base < FAST_KEYS)
            cap *= 2;
        struct sl_jsonbuf_key *k = realloc(b->keys, cap * sizeof *k);
        if (!k) {
            *err = "out of memory";
            return -1;
        }
        b->keys = k, b->keycap = cap;
    }
    if (!lua_checkstack(L, 2 * FAST_KEYS + 4)) {
        *err = "nesting too deep";
        return -1;
    }
    size_t m = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [... key value] */
        if (lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
            *err = "table key must be a string or number";
            goto out;
        }
        if (m == FAST_KEYS) {
            lua_settop(L, top);
            return 1;
        }
        struct sl_jsonbuf_key *k = &b->keys[base + m];
        if (kt == LUA_TSTRING) {
            k->isnum = 0;
            k->s = lua_tolstring(L, -2, &k->n); /* the key stays on the stack */
            k->prefix = sl_key_prefix(k->s, k->n);
        } else if (number_key(k, lua_tonumber(L, -2)) != 0) {
            *err = "table key must be a string or number";
            goto out;
        }
        k->vidx = lua_gettop(L);
        m++;
        lua_pushvalue(L, -2); /* [... key value key] for the next lua_next */
    }
    b->nkeys = base + m;
    sort_keys(b->keys + base, m);
    if (sl_jsonbuf_putc(b, '{') != 0)
        goto oom;
    for (size_t i = 0; i < m; i++) {
        /* b->keys may move during the nested call: reread it each time */
        struct sl_jsonbuf_key *k = &b->keys[base + i];
        if ((i > 0 && sl_jsonbuf_putc(b, ',') != 0) ||
            sl_jsonbuf_string(b, k->isnum ? k->nbuf : k->s, k->n) != 0 ||
            sl_jsonbuf_putc(b, ':') != 0)
            goto oom;
        if (encode(b, L, b->keys[base + i].vidx, depth + 1, err) != 0)
            goto out;
    }
    if (sl_jsonbuf_putc(b, '}') != 0)
        goto oom;
    rc = 0;
    goto out;
oom:
    *err = "out of memory";
out:
    b->nkeys = base;
    lua_settop(L, top);
    return rc;
}

static int encode_object(sl_jsonbuf *b, lua_State *L, int idx, int depth, const char **err)
{
    int fast = encode_object_fast(b, L, idx, depth, err);
    if (fast != 1)
        return fast;
    size_t base = b->nkeys;
    int rc = -1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
            lua_pop(L, 2);
            *err = "table key must be a string or number";
            goto out;
        }
        if (b->nkeys == b->keycap) {
            size_t cap = b->keycap ? b->keycap * 2 : 32;
            struct sl_jsonbuf_key *k = realloc(b->keys, cap * sizeof *k);
            if (!k) {
                lua_pop(L, 2);
                *err = "out of memory";
                goto out;
            }
            b->keys = k, b->keycap = cap;
        }
        struct sl_jsonbuf_key *k = &b->keys[b->nkeys++];
        if (kt == LUA_TSTRING) {
            k->isnum = 0;
            k->s = lua_tolstring(L, -2, &k->n);
            k->prefix = sl_key_prefix(k->s, k->n);
        } else {
            /* format a copy: lua_tolstring on the key itself breaks lua_next */
            double x = lua_tonumber(L, -2);
            if (!isfinite(x)) {
                lua_pop(L, 2);
                *err = "table key must be a string or number";
                goto out;
            }
            k->isnum = 1;
            k->num = x;
            if (x == floor(x) && fabs(x) < 1e18)
                k->n = (size_t)snprintf(k->nbuf, sizeof k->nbuf, "%lld", (long long)x);
            else
                k->n = (size_t)snprintf(k->nbuf, sizeof k->nbuf, "%.17g", x);
            k->prefix = sl_key_prefix(k->nbuf, k->n);
        }
        lua_pop(L, 1);
    }
    /* point number keys at their text only now: the array may have moved */
    for (size_t i = base; i < b->nkeys; i++)
        if (b->keys[i].isnum)
            b->keys[i].s = b->keys[i].nbuf;
    if (b->nkeys - base > 1)
        qsort(b->keys + base, b->nkeys - base, sizeof *b->keys, key_cmp);
    if (sl_jsonbuf_putc(b, '{') != 0)
        goto oom;
    for (size_t i = base; i < b->nkeys; i++) {
        /* b->keys may move during the nested call: reread it each time */
        struct sl_jsonbuf_key *k = &b->keys[i];
        if (i > base && sl_jsonbuf_putc(b, ',') != 0)
            goto oom;
        if (sl_jsonbuf_string(b, k->isnum ? k->nbuf : k->s, k->n) != 0 ||
            sl_jsonbuf_putc(b, ':') != 0)
            goto oom;
        if (k->isnum)
            lua_pushnumber(L, k->num);
        else
            lua_pushlstring(L, k->s, k->n);
        lua_rawget(L, idx);
        int r = encode(b, L, lua_gettop(L), depth + 1, err);
        lua_pop(L, 1);
        if (r != 0)
            goto out;
    }
    if (sl_jsonbuf_putc(b, '}') != 0)
        goto oom;
    rc = 0;
    goto out;
oom:
    *err = "out of memory";
out:
    b->nkeys = base;
    return rc;
}

/* Array length when t is a sequence 1..n with no other keys, else -1. */
static long sequence_length(lua_State *L, int idx)
{
    size_t count = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return -1;
        }
        double k = lua_tonumber(L, -1);
        if (k < 1 || k != floor(k) || k > 1e9) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max)
            max = k;
        count++;
    }
    return (double)count == max ? (long)count : -1;
}

/* The largest positive integer key (holes become null; other keys of an
 * array-typed table are not written), or -1 when holes would outnumber
 * values so much that a few keys could make gigabytes of nulls. */
static long max_index(lua_State *L, int idx)
{
    double max = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, -1);
            if (k >= 1 && k == floor(k)) {
                count++;
                if (k > max)
                    max = k;
            }
        }
    }
    return max > count * 2 + 16 ? -1 : (long)max;
}

static int encode(sl_jsonbuf *b, lua_State *L, int idx, int depth, const char **err)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        goto null;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx) ? sl_jsonbuf_append(b, "true", 4)
                                  : sl_jsonbuf_append(b, "false", 5))
            goto oom;
        return 0;
    case LUA_TNUMBER: {
        double x = lua_tonumber(L, idx);
        if (!isfinite(x)) {
            *err = "number is not finite";
            return -1;
        }
        if (sl_jsonbuf_number(b, x) != 0)
            goto oom;
        return 0;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (sl_jsonbuf_string(b, s, n) != 0)
            goto oom;
        return 0;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            goto null;
        *err = "cannot encode lightuserdata";
        return -1;
    case LUA_TUSERDATA: {
        const char *hint = json_type_hint(L, idx);
        if (hint && strcmp(hint, "null") == 0)
            goto null;
        *err = "cannot encode userdata";
        return -1;
    }
    case LUA_TTABLE: {
        if (depth >= SL_JSONBUF_MAX_DEPTH) {
            *err = "nesting too deep";
            return -1;
        }
        if (!lua_checkstack(L, 4)) {
            *err = "nesting too deep";
            return -1;
        }
        const char *hint = json_type_hint(L, idx);
        if (hint && strcmp(hint, "object") == 0)
            return encode_object(b, L, idx, depth, err);
        if (hint && strcmp(hint, "array") == 0) {
            long n = max_index(L, idx);
            if (n < 0) {
                *err = "array is too sparse";
                return -1;
            }
            return encode_array(b, L, idx, (size_t)n, depth, err);
        }
        long n = sequence_length(L, idx);
        if (n > 0)
            return encode_array(b, L, idx, (size_t)n, depth, err);
        return encode_object(b, L, idx, depth, err);
    }
    case SL_LUA_TCDATA:
        return encode_cdata(b, L, idx, err);
    default:
        *err = lua_type(L, idx) == LUA_TFUNCTION ? "cannot encode function"
                                                 : "cannot encode thread";
        return -1;
    }
null:
    if (sl_jsonbuf_append(b, "null", 4) != 0)
        goto oom;
    return 0;
oom:
    *err = "out of memory";
    return -1;
}

int sl_jsonbuf_value(sl_jsonbuf *b, lua_State *L, int idx, const char **err)
{
    size_t mark = b->len;
    const char *dummy;
    if (!err)
        err = &dummy;
    if (idx < 0 && idx > LUA_REGISTRYINDEX)
        idx = lua_gettop(L) + idx + 1;
    int top = lua_gettop(L);
    b->nkeys = 0; /* a Lua error may have skipped the reset last time */
    int rc = encode(b, L, idx, 0, err);
    lua_settop(L, top);
    if (rc != 0)
        b->len = mark;
    return rc;
}

/* ---- from the content hash's canonical form ------------------------------
 * Tags (codec/crypto.c): n null, t true, f false, d double (8 bytes), s
 * string and k key (8-byte length, bytes), a array (8-byte count), o
 * object, e end; numbers little-endian. The form was written by this
 * process, so it is trusted to be well formed; reads are still bounded. */

typedef struct canon_rd {
    const unsigned char *p, *end;
} canon_rd;

static int rd_u64(canon_rd *r, uint64_t *v)
{
    if (r->end - r->p < 8)
        return -1;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | r->p[i];
    r->p += 8;
    *v = x;
    return 0;
}

static int rd_bytes(canon_rd *r, const char **s, size_t *n)
{
    uint64_t len;
    if (rd_u64(r, &len) || (uint64_t)(r->end - r->p) < len)
        return -1;
    *s = (const char *)r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}

static int canon_value(sl_jsonbuf *b, canon_rd *r, int depth);

static int canon_members(sl_jsonbuf *b, canon_rd *r, int depth, const char *const *drop, int ndrop,
                         int *members, unsigned *found)
{
    int first = 1, count = 0;
    while (r->p < r->end && *r->p == 'k') {
        r->p++;
        const char *k;
        size_t kn;
        if (rd_bytes(r, &k, &kn))
            return -1;
        size_t mark = b->len;
        int dropped = 0;
        for (int i = 0; i < ndrop; i++) {
            if (strlen(drop[i]) == kn && memcmp(drop[i], k, kn) == 0) {
                dropped = 1;
                *found |= 1u << i;
            }
        }
        if ((!first && sl_jsonbuf_putc(b, ',')) || sl_jsonbuf_string(b, k, kn) ||
            sl_jsonbuf_putc(b, ':') || canon_value(b, r, depth + 1))
            return -1;
        if (dropped) {
            b->len = mark;
        } else {
            first = 0;
            count++;
        }
    }
    if (r->p >= r->end || *r->p != 'e')
        return -1;
    r->p++;
    if (members)
        *members = count;
    return 0;
}

static int canon_value(sl_jsonbuf *b, canon_rd *r, int depth)
{
    if (r->p >= r->end)
        return -1;
    unsigned char tag = *r->p++;
    /* the depth at which sl_jsonbuf_value refuses a table */
    if ((tag == 'a' || tag == 'o') && depth >= SL_JSONBUF_MAX_DEPTH)
        return -1;
    switch (tag) {
    case 'n': return sl_jsonbuf_append(b, "null", 4);
    case 't': return sl_jsonbuf_append(b, "true", 4);
    case 'f': return sl_jsonbuf_append(b, "false", 5);
    case 'd': {
        uint64_t bits;
        double x;
        if (rd_u64(r, &bits))
            return -1;
        memcpy(&x, &bits, 8);
        return sl_jsonbuf_number(b, x);
    }
    case 's': {
        const char *s;
        size_t n;
        return rd_bytes(r, &s, &n) || sl_jsonbuf_string(b, s, n);
    }
    case 'a': {
        uint64_t n;
        if (rd_u64(r, &n) || sl_jsonbuf_putc(b, '['))
            return -1;
        for (uint64_t i = 0; i < n; i++)
            if ((i && sl_jsonbuf_putc(b, ',')) || canon_value(b, r, depth + 1))
                return -1;
        if (r->p >= r->end || *r->p++ != 'e')
            return -1;
        return sl_jsonbuf_putc(b, ']');
    }
    case 'o': {
        unsigned found = 0;
        return sl_jsonbuf_putc(b, '{') || canon_members(b, r, depth, NULL, 0, NULL, &found) ||
               sl_jsonbuf_putc(b, '}');
    }
    default: return -1;
    }
}

int sl_jsonbuf_canonical_open(sl_jsonbuf *b, const char *form, size_t n, const char *const *drop,
                              int ndrop, int *members, unsigned *found)
{
    canon_rd r = {(const unsigned char *)form, (const unsigned char *)form + n};
    size_t mark = b->len;
    *found = 0;
    if (n == 0 || *r.p++ != 'o' || sl_jsonbuf_putc(b, '{') ||
        canon_members(b, &r, 0, drop, ndrop, members, found) || r.p != r.end) {
        b->len = mark;
        return -1;
    }
    return 0;
}
