/*
 * sluice.json: JSON for connector code and for the sinks.
 *
 * The linked lua-cjson is Debian's 2.1.0, which cannot do what the runtime
 * needs: it has no array metatable (so `[]` decodes to the same table as
 * `{}` and an empty list encodes as `{}`), writes numbers with at most 14
 * significant digits (2^53 comes out as 9.007199254741e+15), passes invalid
 * UTF-8 through into its output and has no canonical form for hashing. So
 * both directions are implemented here, in one pass each, with no Lua
 * allocation while encoding (the sinks call sl_json_encode on hot paths).
 * What is kept from cjson is its null: json.null is the light userdata NULL,
 * equal to cjson.null, so values from either module mix.
 *
 * The null/array policy and the choices below are written up in
 * docs/codec.md.
 */
#include "codec/json.h"
#include "codec/utf8.h"

#include <lauxlib.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2^53: every integer up to here is exact in a double */
#define SL_JSON_EXACT_INT 9007199254740992.0

/* Grows b so that n more bytes fit; returns -1 when memory runs out. */
static int buf_grow(sl_json_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *np = realloc(b->ptr, cap);
    if (!np)
        return -1;
    b->ptr = np;
    b->cap = cap;
    return 0;
}

int sl_json_buf_add(sl_json_buf *b, const void *p, size_t n)
{
    if (buf_grow(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

void sl_json_buf_free(sl_json_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

void sl_json_push_array_mt(lua_State *L)
{
    if (luaL_newmetatable(L, SL_JSON_ARRAY_MT)) {
        lua_pushliteral(L, "array");
        lua_setfield(L, -2, "__jsontype");
    }
}

/* ---- encoding ---------------------------------------------------------- */

typedef struct enc {
    lua_State *L;
    sl_json_buf *b;
    unsigned flags;
    const char *err;
} enc;

/* Formats a finite number: integral values up to 2^53 as plain integers,
 * others with the fewest significant digits that read back to the same
 * double. Returns the length, or 0 for NaN and infinities. */
size_t sl_json_number_text(double d, char out[40])
{
    if (!isfinite(d))
        return 0;
    if (d == floor(d) && fabs(d) <= SL_JSON_EXACT_INT)
        return (size_t)snprintf(out, 40, "%lld", (long long)d);
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, 40, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    return (size_t)len;
}

static int put(enc *e, const char *s, size_t n)
{
    if (sl_json_buf_add(e->b, s, n) != 0) {
        e->err = "out of memory";
        return -1;
    }
    return 0;
}

/* Makes room for n more bytes, so that the common all-plain string is one
 * reservation and one copy. */
static int reserve(enc *e, size_t n)
{
    if (buf_grow(e->b, n) != 0) {
        e->err = "out of memory";
        return -1;
    }
    return 0;
}

/* Bytes a JSON string cannot hold as they are: 1 for those that need an
 * escape (C0, '"', '\\'), 2 for the start of a multi-byte sequence, which
 * must be checked as UTF-8. */
static const unsigned char str_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 70 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* a0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* b0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* c0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* d0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* e0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* f0 */
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The index of the first byte at or after i that str_class flags, or n.
 * Text is mostly plain ASCII, so eight bytes are tested at a time: a word
 * passes when no byte is below 0x20, equal to '"' or '\\', or above 0x7f
 * (each test is exact about whether such a byte exists). */
static size_t plain_span(const unsigned char *s, size_t i, size_t n)
{
    while (n - i >= 8) {
        uint64_t w, q, bs;
        memcpy(&w, s + i, 8);
        q = w ^ (ONES * '"');
        bs = w ^ (ONES * '\\');
        uint64_t hit = ((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((bs - ONES) & ~bs) | w;
        hit &= HIGHS;
        if (hit)
            break;
        i += 8;
    }
    while (i < n && !str_class[s[i]])
        i++;
    return i;
}

/* Writes s as a JSON string; ill-formed UTF-8 becomes U+FFFD, one per
 * maximal subpart, so the output is always valid JSON. */
static int enc_string(enc *e, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    char esc[8];

    if (reserve(e, n + 2))
        return -1;
    e->b->ptr[e->b->len++] = '"';
    for (;;) {
        i = plain_span(s, i, n);
        if (i == n)
            break;
        unsigned char c = s[i];
        if (c >= 0x80) {
            int valid;
            size_t len = sl_utf8_next(s + i, n - i, &valid);
            if (valid) {
                i += len;
                continue;
            }
            if (put(e, str + run, i - run) || put(e, SL_UTF8_REPLACEMENT, 3))
                return -1;
            i += len;
            run = i;
            continue;
        }
        if (put(e, str + run, i - run))
            return -1;
        switch (c) {
        case '"': memcpy(esc, "\\\"", 2); break;
        case '\\': memcpy(esc, "\\\\", 2); break;
        case '\b': memcpy(esc, "\\b", 2); break;
        case '\f': memcpy(esc, "\\f", 2); break;
        case '\n': memcpy(esc, "\\n", 2); break;
        case '\r': memcpy(esc, "\\r", 2); break;
        case '\t': memcpy(esc, "\\t", 2); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); break;
        }
        if (put(e, esc, esc[1] == 'u' ? 6 : 2))
            return -1;
        i++;
        run = i;
    }
    if (put(e, str + run, i - run) || put(e, "\"", 1))
        return -1;
    return 0;
}

/* Values that the canonical form leaves out: they cannot be content. */
static int is_skippable(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    if (t == LUA_TLIGHTUSERDATA)
        return lua_touserdata(L, idx) != NULL;
    return t == LUA_TFUNCTION || t == LUA_TUSERDATA || t == LUA_TTHREAD || t > LUA_TTHREAD;
}

static int enc_value(enc *e, int idx, int depth);

static int is_array_mt(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, SL_JSON_ARRAY_MT);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/* Decides how a table is written (see json.h). The content hash
 * (codec/crypto.c) asks the same question through this one function, so
 * the hash and the encoder never disagree on what is an array. */
int sl_json_classify(lua_State *L, int idx, size_t *n, const char **err)
{
    int marked = is_array_mt(L, idx), ints = 1;
    size_t count = 0;
    double max = 0;

    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, -1);
            if (k >= 1 && k == floor(k) && k <= SL_JSON_EXACT_INT) {
                if (k > max)
                    max = k;
                continue;
            }
        }
        ints = 0;
    }
    if (marked) {
        if (!ints) {
            *err = "array has a non-integer key";
            return -1;
        }
        /* holes become null, but not so many that a stray t[1e9] blows up */
        if (max > 2.0 * (double)count + 16) {
            *err = "array is too sparse";
            return -1;
        }
        *n = (size_t)max;
        return 1;
    }
    if (count > 0 && ints && max == (double)count) {
        *n = count;
        return 1;
    }
    *n = count;
    return 0;
}

static int classify(enc *e, int idx, size_t *n)
{
    return sl_json_classify(e->L, idx, n, &e->err);
}

/* A key as text: strings as they are, numbers formatted like values. */
typedef struct key_ref {
    const char *s;
    size_t n;
    double num;
    int isnum;
    char buf[40];
} key_ref;

static int key_of(enc *e, int idx, key_ref *k)
{
    lua_State *L = e->L;
    if (lua_type(L, idx) == LUA_TSTRING) {
        k->s = lua_tolstring(L, idx, &k->n);
        k->isnum = 0;
        return 0;
    }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        k->num = lua_tonumber(L, idx);
        k->n = sl_json_number_text(k->num, k->buf);
        if (k->n == 0) {
            e->err = "cannot encode nan or inf";
            return -1;
        }
        k->s = k->buf;
        k->isnum = 1;
        return 0;
    }
    e->err = "object key must be a string or a number";
    return -1;
}

/* Number keys point into their own struct, which qsort moves. */
static const char *key_str(const key_ref *k)
{
    return k->isnum ? k->buf : k->s;
}

static int cmp_keys(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(key_str(x), key_str(y), n);
    if (c)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

static int enc_array(enc *e, int idx, size_t n, int depth)
{
    lua_State *L = e->L;
    if (put(e, "[", 1))
        return -1;
    for (size_t i = 1; i <= n; i++) {
        if (i > 1 && put(e, ",", 1))
            return -1;
        lua_rawgeti(L, idx, (int)i);
        int rc;
        if ((e->flags & SL_JSON_CANONICAL) && is_skippable(L, -1))
            rc = put(e, "null", 4); /* keeps the positions of the others */
        else
            rc = enc_value(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc)
            return -1;
    }
    return put(e, "]", 1);
}

/* Objects with up to this many keys are sorted in a C array on the stack
 * (small enough for a deep nesting of objects); larger ones take the
 * general path below. */
#define FAST_KEYS 32

/* A key of the fast path: its text, and the stack slot of its value. */
typedef struct fast_key {
    const char *s;
    size_t n;
    int v;
} fast_key;

static int fast_less(const fast_key *x, const fast_key *y)
{
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    return c ? c < 0 : x->n < y->n;
}

/* The canonical form of an object with n <= FAST_KEYS keys, in one pass
 * over the table: each value stays on the Lua stack beside its key (and a
 * number key beside its text), so nothing is looked up again, and the keys
 * are insertion-sorted in place. Returns 1 when the stack has no room for
 * that, having written nothing, so the caller takes the general path. */
static int enc_object_fast(enc *e, int idx, size_t n, int depth)
{
    lua_State *L = e->L;
    fast_key keys[FAST_KEYS];
    size_t m = 0;
    int base = lua_gettop(L), first = 1;

    if (!lua_checkstack(L, 3 * (int)n + 4))
        return 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [... key value] */
        fast_key k;
        int kt = lua_type(L, -2);
        if (m == n) {
            e->err = "table changed while encoding";
            goto fail;
        }
        k.v = lua_gettop(L);
        if (kt == LUA_TSTRING) {
            k.s = lua_tolstring(L, -2, &k.n);
            lua_pushvalue(L, -2); /* [... key value key] */
        } else if (kt == LUA_TNUMBER) {
            char buf[40];
            k.n = sl_json_number_text(lua_tonumber(L, -2), buf);
            if (k.n == 0) {
                e->err = "cannot encode nan or inf";
                goto fail;
            }
            lua_pushlstring(L, buf, k.n);
            k.s = lua_tostring(L, -1);
            lua_pushvalue(L, -3); /* [... key value text key] */
        } else {
            e->err = "object key must be a string or a number";
            goto fail;
        }
        size_t j = m++;
        while (j > 0 && fast_less(&k, &keys[j - 1])) {
            keys[j] = keys[j - 1];
            j--;
        }
        keys[j] = k;
    }
    for (size_t i = 0; i < m; i++) {
        const fast_key *k = &keys[i];
        if (i > 0 && k->n == keys[i - 1].n && memcmp(k->s, keys[i - 1].s, k->n) == 0) {
            e->err = "duplicate key after number-to-string conversion";
            goto fail;
        }
        if (is_skippable(L, k->v))
            continue;
        if ((!first && put(e, ",", 1)) || enc_string(e, k->s, k->n) || put(e, ":", 1) ||
            enc_value(e, k->v, depth + 1))
            goto fail;
        first = 0;
    }
    lua_settop(L, base);
    return put(e, "}", 1);
fail:
    lua_settop(L, base);
    return -1;
}

static int enc_object(enc *e, int idx, size_t n, int depth)
{
    lua_State *L = e->L;
    int first = 1;

    if (put(e, "{", 1))
        return -1;
    if (!(e->flags & SL_JSON_CANONICAL)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            key_ref k;
            if (key_of(e, lua_gettop(L) - 1, &k) || (!first && put(e, ",", 1)) ||
                enc_string(e, k.s, k.n) || put(e, ":", 1) ||
                enc_value(e, lua_gettop(L), depth + 1)) {
                lua_pop(L, 2);
                return -1;
            }
            first = 0;
            lua_pop(L, 1);
        }
        return put(e, "}", 1);
    }

    if (n <= FAST_KEYS) {
        int rc = enc_object_fast(e, idx, n, depth);
        if (rc != 1)
            return rc;
    }

    /* canonical: collect the keys (their bytes stay alive in the table,
     * which nothing modifies meanwhile), sort, then fetch each value; the
     * array is a userdata so that a Lua memory error cannot leak it */
    key_ref *keys = lua_newuserdata(L, n ? n * sizeof *keys : 1);
    size_t m = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (m == n || key_of(e, lua_gettop(L), &keys[m])) {
            if (m == n)
                e->err = "table changed while encoding";
            lua_pop(L, 2);
            return -1;
        }
        m++;
    }
    qsort(keys, m, sizeof *keys, cmp_keys);
    for (size_t i = 0; i < m; i++) {
        if (i > 0 && cmp_keys(&keys[i - 1], &keys[i]) == 0) {
            e->err = "duplicate key after number-to-string conversion";
            lua_pop(L, 1);
            return -1;
        }
        if (keys[i].isnum)
            lua_pushnumber(L, keys[i].num);
        else
            lua_pushlstring(L, keys[i].s, keys[i].n);
        lua_rawget(L, idx);
        if (is_skippable(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if ((!first && put(e, ",", 1)) || enc_string(e, key_str(&keys[i]), keys[i].n) ||
            put(e, ":", 1) || enc_value(e, lua_gettop(L), depth + 1)) {
            lua_pop(L, 2);
            return -1;
        }
        first = 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* keys */
    return put(e, "}", 1);
}

static int enc_value(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    char num[40];
    size_t len, n;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return put(e, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
    case LUA_TNUMBER:
        len = sl_json_number_text(lua_tonumber(L, idx), num);
        if (!len) {
            e->err = "cannot encode nan or inf";
            return -1;
        }
        return put(e, num, len);
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, idx, &len);
        return enc_string(e, s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return put(e, "null", 4);
        e->err = "cannot encode userdata";
        return -1;
    case LUA_TTABLE: {
        if (depth >= SL_JSON_MAX_DEPTH) {
            e->err = "nesting too deep (or a reference cycle)";
            return -1;
        }
        if (!lua_checkstack(L, 6)) {
            e->err = "out of stack space";
            return -1;
        }
        int kind = classify(e, idx, &n);
        if (kind < 0)
            return -1;
        return kind ? enc_array(e, idx, n, depth) : enc_object(e, idx, n, depth);
    }
    case LUA_TFUNCTION:
        e->err = "cannot encode function";
        return -1;
    case LUA_TTHREAD:
        e->err = "cannot encode thread";
        return -1;
    case LUA_TUSERDATA:
        e->err = "cannot encode userdata";
        return -1;
    default: /* LuaJIT's cdata */
        e->err = "cannot encode cdata";
        return -1;
    }
}

int sl_json_encode(lua_State *L, int idx, unsigned flags, sl_json_buf *b, const char **err)
{
    enc e = {L, b, flags, NULL};
    if (idx < 0 && idx > LUA_REGISTRYINDEX)
        idx = lua_gettop(L) + idx + 1;
    if ((flags & SL_JSON_CANONICAL) && is_skippable(L, idx)) {
        if (put(&e, "null", 4) == 0)
            return 0;
    } else if (enc_value(&e, idx, 0) == 0) {
        return 0;
    }
    *err = e.err;
    return -1;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct dec {
    lua_State *L;
    const unsigned char *s, *p, *end;
    int mt; /* stack index of the array metatable */
    char *err;
    size_t errlen;
} dec;

static int dec_fail(dec *d, const char *what)
{
    snprintf(d->err, d->errlen, "%s at byte %lu", what, (unsigned long)(d->p - d->s) + 1);
    return -1;
}

static int dec_unexpected(dec *d)
{
    char what[48];
    if (d->p >= d->end)
        return dec_fail(d, "unexpected end of input");
    if (*d->p >= 0x21 && *d->p < 0x7f)
        snprintf(what, sizeof what, "unexpected character '%c'", *d->p);
    else
        snprintf(what, sizeof what, "unexpected byte 0x%02x", *d->p);
    return dec_fail(d, what);
}

static void skip_ws(dec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

static int hex4(const unsigned char *p, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], h;
        if (c >= '0' && c <= '9')
            h = c - '0';
        else if (c >= 'a' && c <= 'f')
            h = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            h = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + (unsigned long)h;
    }
    *out = v;
    return 0;
}

/* Pushes the string starting after the opening quote. Strings without
 * escapes or bad bytes (the common case) are pushed straight from the
 * input; the others go through a luaL_Buffer, which owns no C memory. */
static int dec_string(dec *d)
{
    lua_State *L = d->L;
    const unsigned char *start = ++d->p, *q = start;
    luaL_Buffer lb;
    int buffered = 0;

    for (;;) {
        if (q >= d->end) {
            d->p = q;
            if (buffered)
                luaL_pushresult(&lb), lua_pop(L, 1);
            return dec_fail(d, "unterminated string");
        }
        unsigned char c = *q;
        if (c == '"') {
            if (buffered) {
                luaL_addlstring(&lb, (const char *)start, (size_t)(q - start));
                luaL_pushresult(&lb);
            } else {
                lua_pushlstring(L, (const char *)start, (size_t)(q - start));
            }
            d->p = q + 1;
            return 0;
        }
        if (c < 0x20) {
            d->p = q;
            if (buffered)
                luaL_pushresult(&lb), lua_pop(L, 1);
            return dec_fail(d, "control character in string");
        }
        if (c != '\\' && c < 0x80) {
            q++;
            continue;
        }
        int valid = 1;
        size_t len = 0;
        if (c >= 0x80) {
            len = sl_utf8_next(q, (size_t)(d->end - q), &valid);
            if (valid) {
                q += len;
                continue;
            }
        }
        if (!buffered) {
            luaL_buffinit(L, &lb);
            buffered = 1;
        }
        luaL_addlstring(&lb, (const char *)start, (size_t)(q - start));
        if (!valid) {
            luaL_addlstring(&lb, SL_UTF8_REPLACEMENT, 3);
            start = q = q + len;
            continue;
        }
        /* an escape */
        if (q + 1 >= d->end) {
            d->p = q + 1;
            luaL_pushresult(&lb), lua_pop(L, 1);
            return dec_fail(d, "unterminated string");
        }
        unsigned char out[4];
        size_t olen = 1;
        switch (q[1]) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            unsigned long cp, lo;
            if (d->end - q < 6 || hex4(q + 2, &cp)) {
                d->p = q;
                luaL_pushresult(&lb), lua_pop(L, 1);
                return dec_fail(d, "invalid \\u escape");
            }
            q += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && d->end - q >= 8 && q[2] == '\\' && q[3] == 'u' &&
                hex4(q + 4, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd; /* a lone surrogate has no UTF-8 form */
            }
            olen = sl_utf8_put(out, cp);
            break;
        }
        default:
            d->p = q;
            luaL_pushresult(&lb), lua_pop(L, 1);
            return dec_fail(d, "invalid escape");
        }
        luaL_addlstring(&lb, (const char *)out, olen);
        start = q = q + 2;
    }
}

static int dec_number(dec *d)
{
    const unsigned char *p = d->p, *e = d->end;
    char tmp[1100];

    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0') {
        p++;
    } else if (p < e && *p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        d->p = p;
        return dec_unexpected(d);
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') {
            d->p = p;
            return dec_fail(d, "invalid number");
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9') {
            d->p = p;
            return dec_fail(d, "invalid number");
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    size_t len = (size_t)(p - d->p);
    if (len >= sizeof tmp)
        return dec_fail(d, "number too long");
    /* a copy, because the input need not be NUL-terminated */
    memcpy(tmp, d->p, len);
    tmp[len] = 0;
    errno = 0;
    double v = strtod(tmp, NULL);
    if (isinf(v))
        return dec_fail(d, "number out of range");
    lua_pushnumber(d->L, v);
    d->p = p;
    return 0;
}

static int dec_literal(dec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_unexpected(d);
    d->p += n;
    return 0;
}

static int dec_value(dec *d, int depth);

static int dec_array(dec *d, int depth)
{
    lua_State *L = d->L;
    int i = 0;

    d->p++;
    lua_newtable(L);
    lua_pushvalue(L, d->mt);
    lua_setmetatable(L, -2);
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return 0;
    }
    for (;;) {
        if (dec_value(d, depth + 1)) {
            lua_pop(L, 1);
            return -1;
        }
        lua_rawseti(L, -2, ++i);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 0;
        }
        lua_pop(L, 1);
        return dec_unexpected(d);
    }
}

static int dec_object(dec *d, int depth)
{
    lua_State *L = d->L;

    d->p++;
    lua_newtable(L);
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return 0;
    }
    for (;;) {
        skip_ws(d);
        if (d->p >= d->end || *d->p != '"') {
            lua_pop(L, 1);
            return dec_unexpected(d);
        }
        if (dec_string(d)) {
            lua_pop(L, 1);
            return -1;
        }
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':') {
            lua_pop(L, 2);
            return dec_unexpected(d);
        }
        d->p++;
        if (dec_value(d, depth + 1)) {
            lua_pop(L, 2);
            return -1;
        }
        lua_rawset(L, -3); /* a repeated key: the last one wins */
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            return 0;
        }
        lua_pop(L, 1);
        return dec_unexpected(d);
    }
}

/* Pushes one value, or nothing on error. */
static int dec_value(dec *d, int depth)
{
    skip_ws(d);
    if (d->p >= d->end)
        return dec_unexpected(d);
    switch (*d->p) {
    case '{':
    case '[':
        if (depth >= SL_JSON_MAX_DEPTH)
            return dec_fail(d, "nesting too deep");
        if (!lua_checkstack(d->L, 4))
            return dec_fail(d, "out of stack space");
        return *d->p == '{' ? dec_object(d, depth) : dec_array(d, depth);
    case '"':
        return dec_string(d);
    case 't':
        if (dec_literal(d, "true", 4))
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5))
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4))
            return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    default:
        return dec_number(d);
    }
}

int sl_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen)
{
    dec d = {L, (const unsigned char *)s, (const unsigned char *)s,
             (const unsigned char *)s + n, 0, err, errlen};

    /* a UTF-8 byte order mark is not JSON, but editors write it */
    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        d.p += 3;
    sl_json_push_array_mt(L);
    d.mt = lua_gettop(L);
    if (dec_value(&d, 0)) {
        lua_pop(L, 1);
        return -1;
    }
    skip_ws(&d);
    if (d.p < d.end) {
        lua_pop(L, 2);
        return dec_unexpected(&d);
    }
    lua_remove(L, d.mt);
    return 0;
}

/* ---- Lua API ----------------------------------------------------------- */

/* The output buffer lives in a userdata, an upvalue shared by the encode
 * functions: a Lua memory error in the middle of encoding cannot leak it,
 * and a document's encoding reuses the memory of the one before (encoding
 * runs no Lua code, so nothing can re-enter it meanwhile). */
#define SL_JSON_BUF_T "sl_json_buf"
/* A buffer that grew past this is freed after use rather than kept. */
#define SL_JSON_BUF_KEEP (1u << 20)

static int buf_gc(lua_State *L)
{
    sl_json_buf_free(luaL_checkudata(L, 1, SL_JSON_BUF_T));
    return 0;
}

static int encode_with(lua_State *L, unsigned flags)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    sl_json_buf *b = lua_touserdata(L, lua_upvalueindex(1));
    const char *err = NULL;
    int rc;
    b->len = 0;
    rc = sl_json_encode(L, 1, flags, b, &err);
    if (rc == 0)
        lua_pushlstring(L, b->ptr ? b->ptr : "", b->len);
    b->len = 0;
    if (b->cap > SL_JSON_BUF_KEEP)
        sl_json_buf_free(b);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/* json.encode(value) -> string | nil, err
 * Compact JSON. nil and json.null write null; see classify() for arrays. */
static int l_encode(lua_State *L)
{
    return encode_with(L, 0);
}

/* json.encode_canonical(value) -> string | nil, err
 * Keys sorted bytewise at every depth, no whitespace; functions, userdata
 * (except json.null) and threads are left out of objects and written as
 * null in arrays. The same content always gives the same bytes. */
static int l_encode_canonical(lua_State *L)
{
    return encode_with(L, SL_JSON_CANONICAL);
}

/* json.decode(s) -> value | nil, err
 * null gives json.null; arrays carry json.array_mt. The error names the
 * 1-based byte position ("unexpected character 'x' at byte 12"). */
static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[128];
    if (sl_json_decode(L, s, n, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/* json.is_array(v) -> boolean
 * True when json.encode would write v as an array. */
static int l_is_array(lua_State *L)
{
    size_t n;
    enc e = {L, NULL, 0, NULL};
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && classify(&e, 1, &n) == 1);
    return 1;
}

/* json.array([t]) -> t
 * Marks t (or a new table) with json.array_mt and returns it. */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    sl_json_push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

int luaopen_sluice_json(lua_State *L)
{
    static const luaL_Reg fns[] = {{"decode", l_decode},
                                   {"is_array", l_is_array},
                                   {"array", l_array},
                                   {NULL, NULL}};
    if (luaL_newmetatable(L, SL_JSON_BUF_T)) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    sl_json_buf *b = lua_newuserdata(L, sizeof *b); /* [json buf] */
    memset(b, 0, sizeof *b);
    luaL_getmetatable(L, SL_JSON_BUF_T);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_encode, 1);
    lua_setfield(L, -3, "encode");
    lua_pushcclosure(L, l_encode_canonical, 1);
    lua_setfield(L, -2, "encode_canonical");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    sl_json_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
