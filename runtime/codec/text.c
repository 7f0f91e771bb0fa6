/*
 * sluice.text: the text hygiene policy for everything that goes into an
 * index, plus gzip, which sources hand us as exports and HTTP bodies.
 *
 * An index must hold valid UTF-8 and nothing that would break a JSON line,
 * a terminal or a highlighter, yet a reader should still see where a control
 * byte was. So text.clean drops NULs, shows other control bytes as "\xNN"
 * and replaces ill-formed UTF-8 with U+FFFD one maximal subpart at a time
 * (runtime/codec/utf8.h, shared with the JSON codec). Most text is already
 * clean: that case allocates nothing and returns the argument itself.
 *
 * gunzip enforces its size cap while inflating, so a gzip bomb costs at most
 * the cap in memory; the inflater lives in a userdata whose __gc ends it if a
 * Lua memory error interrupts the loop.
 */
#include "codec/text.h"
#include "codec/utf8.h"

#include <lua.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define SL_INFLATER_T "sl_text_inflater"
#define SL_GUNZIP_DEFAULT_MAX (128u << 20)

/* Control bytes shown as \xNN: C0 except TAB, LF and CR, and DEL. NUL is
 * dropped instead, by the caller. */
static int is_shown_control(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The length of the leading part of s that needs no change. Most text is
 * plain ASCII, so sixteen (SSE2) or eight bytes are tested at a time: a word passes when no
 * byte is below 0x20, equal to DEL or above 0x7f (each test is exact about
 * whether such a byte exists); the bytes of a word that does not pass are
 * then looked at one by one. */
static size_t clean_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
#ifdef __SSE2__
        /* sixteen bytes at a time: as signed bytes, everything below 0x20
         * and everything from 0x80 up is less than 0x20; DEL is tested
         * alone. This scan runs over every string of every document. */
        if (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
            __m128i hit = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                       _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
            unsigned mask = (unsigned)_mm_movemask_epi8(hit);
            if (!mask) {
                i += 16;
                continue;
            }
            i += (size_t)__builtin_ctz(mask);
        }
#endif
        if (n - i >= 8) {
            uint64_t w, d;
            memcpy(&w, s + i, 8);
            d = w ^ (ONES * 0x7f);
            if (!((((w - ONES * 0x20) & ~w) | ((d - ONES) & ~d) | w) & HIGHS)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            i++;
        } else if (c < 0x80) {
            if (is_shown_control(c))
                return i;
            i++;
        } else {
            int valid;
            size_t len = sl_utf8_next(s + i, n - i, &valid);
            if (!valid)
                return i;
            i += len;
        }
    }
    return n;
}

/* Pushes the cleaned copy of s, whose first i bytes (i < n) need no
 * change; returns the number of removals and replacements. */
static long clean_push(lua_State *L, const unsigned char *s, size_t n, size_t i)
{
    size_t run = 0;
    long changed = 0;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    while (i < n) {
        unsigned char c = s[i];
        size_t len = 1;
        int valid = 1;
        if (c >= 0x80)
            len = sl_utf8_next(s + i, n - i, &valid);
        else if (c == 0 || is_shown_control(c))
            valid = 0;
        if (valid) {
            i += len;
            continue;
        }
        luaL_addlstring(&b, (const char *)s + run, i - run);
        if (c >= 0x80) {
            luaL_addlstring(&b, SL_UTF8_REPLACEMENT, 3);
        } else if (c != 0) {
            char esc[5];
            snprintf(esc, sizeof esc, "\\x%02x", c);
            luaL_addlstring(&b, esc, 4);
        }
        changed++;
        i += len;
        run = i;
    }
    luaL_addlstring(&b, (const char *)s + run, n - run);
    luaL_pushresult(&b);
    return changed;
}

/* text.clean(s) -> cleaned, nchanged
 * NUL removed; other C0 controls (but TAB, LF, CR) and DEL written as
 * "\xNN" (lowercase hex); ill-formed UTF-8 replaced by U+FFFD per maximal
 * subpart. nchanged counts the removals and replacements. A clean s is
 * returned as is, with 0. */
static int l_clean(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    size_t i = clean_prefix(s, n);

    if (i == n) {
        lua_settop(L, 1);
        lua_pushinteger(L, 0);
        return 2;
    }
    long changed = clean_push(L, s, n, i);
    lua_pushinteger(L, changed);
    return 2;
}

/* Tables nested deeper than this are left as they are: it bounds the C
 * recursion and stops at a reference cycle (the engine's Lua walk that
 * this replaces had the same bound). */
#define SL_CLEAN_TREE_DEPTH SL_TEXT_CLEAN_DEPTH

/* Cleans the string values of the table at idx, recursively; returns how
 * many strings changed. */
static long clean_tree(lua_State *L, int idx, int depth)
{
    long changed = 0;
    if (!lua_checkstack(L, 4))
        luaL_error(L, "out of stack space");
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [... key value] */
        int t = lua_type(L, -1);
        if (t == LUA_TSTRING) {
            size_t n;
            const unsigned char *s = (const unsigned char *)lua_tolstring(L, -1, &n);
            size_t i = clean_prefix(s, n);
            if (i < n) {
                clean_push(L, s, n, i); /* [... key value cleaned] */
                lua_pushvalue(L, -3);
                lua_insert(L, -2);      /* [... key value key cleaned] */
                lua_rawset(L, idx);     /* replacing a present key is safe mid-traversal */
                changed++;
            }
        } else if (t == LUA_TTABLE && depth + 1 < SL_CLEAN_TREE_DEPTH) {
            changed += clean_tree(L, lua_gettop(L), depth + 1);
        }
        lua_pop(L, 1);
    }
    return changed;
}

long sl_text_clean_tree(lua_State *L, int idx)
{
    return clean_tree(L, idx, 0);
}

size_t sl_text_clean_prefix(const unsigned char *s, size_t n)
{
    return clean_prefix(s, n);
}

void sl_text_clean_push(lua_State *L, const unsigned char *s, size_t n, size_t i)
{
    clean_push(L, s, n, i);
}

/* text.clean_tree(t) -> nchanged
 * Applies text.clean to every string value of t and of the tables inside
 * it, in place (keys are left as they are; tables more than 32 levels down
 * are not visited). nchanged counts the strings that changed. */
static int l_clean_tree(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnumber(L, (lua_Number)clean_tree(L, 1, 0));
    return 1;
}

/* text.utf8_valid(s) -> boolean */
static int l_utf8_valid(lua_State *L)
{
    size_t n, i = 0;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    while (i < n) {
        int valid;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        i += sl_utf8_next(s + i, n - i, &valid);
        if (!valid) {
            lua_pushboolean(L, 0);
            return 1;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* text.truncate_utf8(s, max_bytes) -> s cut to at most max_bytes
 * Never splits a well-formed character: a character that would straddle
 * the limit is left out whole. */
static int l_truncate_utf8(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    lua_Integer max = luaL_checkinteger(L, 2);
    luaL_argcheck(L, max >= 0, 2, "expected a non-negative size");
    if ((size_t)max >= n) {
        lua_settop(L, 1);
        return 1;
    }
    size_t cut = (size_t)max, j = cut;
    /* walk back over at most three continuation bytes to the lead byte of
     * the character that s[max] belongs to */
    while (j > 0 && cut - j < 3 && (s[j] & 0xc0) == 0x80)
        j--;
    if (j < cut && s[j] >= 0xc2 && s[j] <= 0xf4) {
        int valid;
        size_t len = sl_utf8_next(s + j, n - j, &valid);
        if (valid && j + len > cut)
            cut = j;
    }
    lua_pushlstring(L, (const char *)s, cut);
    return 1;
}

/* text.is_gzip(s) -> boolean: starts with the gzip magic bytes 1f 8b */
static int l_is_gzip(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, n >= 2 && s[0] == 0x1f && s[1] == 0x8b);
    return 1;
}

/* The inflate state and its output buffer, in one userdata so that a Lua
 * error half-way (out of memory) frees both through __gc. */
typedef struct inflater {
    z_stream z;
    int live;
    unsigned char *buf;
    size_t cap;
} inflater;

static int inflater_gc(lua_State *L)
{
    inflater *inf = luaL_checkudata(L, 1, SL_INFLATER_T);
    if (inf->live)
        inflateEnd(&inf->z);
    inf->live = 0;
    free(inf->buf);
    inf->buf = NULL;
    return 0;
}

/* Grows inf->buf to hold at least want bytes (doubling, never past limit).
 * Returns 0, or -1 when out of memory. */
static int inflater_reserve(inflater *inf, size_t want, size_t limit)
{
    if (want <= inf->cap)
        return 0;
    if (want > limit)
        return -1;
    size_t cap = inf->cap ? inf->cap : 65536;
    while (cap < want)
        cap = cap > limit / 2 ? limit : cap * 2;
    if (cap > limit)
        cap = limit;
    unsigned char *p = realloc(inf->buf, cap);
    if (!p)
        return -1;
    inf->buf = p;
    inf->cap = cap;
    return 0;
}

/* text.gunzip(s[, max_bytes]) -> string | nil, err
 * Inflates every gzip member of s in turn (as gzip -d does); trailing zero
 * bytes are ignored. max_bytes defaults to 128 MiB. Errors: "too large",
 * "corrupt gzip data", "truncated gzip data", "out of memory".
 * Output goes into one buffer, first sized by the last member's ISIZE
 * trailer (only a hint: it may lie, or be mod 2^32, or belong to one member
 * of several) and doubled as needed, then copied into the result once: the
 * peak is about twice the output, where a luaL_Buffer's merging of pieces
 * left several times that in garbage strings for a 10 MB changelog. */
static int l_gunzip(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    lua_Integer maxi = luaL_optinteger(L, 2, SL_GUNZIP_DEFAULT_MAX);
    luaL_argcheck(L, maxi >= 0, 2, "expected a non-negative size");
    size_t max = (size_t)maxi, total = 0;
    const char *err = NULL;

    lua_settop(L, 1);
    inflater *inf = lua_newuserdata(L, sizeof *inf);
    memset(inf, 0, sizeof *inf);
    luaL_getmetatable(L, SL_INFLATER_T);
    lua_setmetatable(L, -2);
    /* 16 + MAX_WBITS: gzip framing only, with its CRC and length checked */
    if (inflateInit2(&inf->z, 16 + MAX_WBITS) != Z_OK)
        return luaL_error(L, "out of memory");
    inf->live = 1;
    inf->z.next_in = (unsigned char *)s;
    inf->z.avail_in = 0;

    /* never hold more than one byte past the cap */
    size_t limit = max == SIZE_MAX ? max : max + 1;
    size_t hint = 0;
    if (n >= 18)
        hint = (size_t)s[n - 4] | (size_t)s[n - 3] << 8 | (size_t)s[n - 2] << 16 |
               (size_t)s[n - 1] << 24;
    /* deflate expands at most about 1032:1; a bigger claim is a lie */
    if (hint / 1032 > n)
        hint = 0;
    if (inflater_reserve(inf, hint + 1 > limit ? limit : hint + 1, limit) != 0)
        return luaL_error(L, "out of memory");

    size_t consumed = 0;
    for (;;) {
        /* zlib counts in uInt: feed at most 1 GiB at a time */
        if (inf->z.avail_in == 0 && consumed < n) {
            size_t chunk = n - consumed > (1u << 30) ? (1u << 30) : n - consumed;
            inf->z.next_in = (unsigned char *)s + consumed;
            inf->z.avail_in = (uInt)chunk;
            consumed += chunk;
        }
        if (total == inf->cap && inflater_reserve(inf, total + 1, limit) != 0) {
            err = "out of memory";
            break;
        }
        size_t room = inf->cap - total;
        if (room > (1u << 30))
            room = 1u << 30;
        inf->z.next_out = inf->buf + total;
        inf->z.avail_out = (uInt)room;
        int rc = inflate(&inf->z, Z_NO_FLUSH);
        total += room - inf->z.avail_out;
        if (total > max) {
            err = "too large";
            break;
        }
        if (rc == Z_STREAM_END) {
            /* another member, or zero padding, or garbage */
            size_t at = consumed - inf->z.avail_in;
            while (at < n && s[at] == 0)
                at++;
            if (at == n)
                break;
            if (n - at < 2 || s[at] != 0x1f || s[at + 1] != 0x8b) {
                err = "corrupt gzip data";
                break;
            }
            inflateReset(&inf->z);
            inf->z.next_in = (unsigned char *)s + at;
            inf->z.avail_in = 0;
            consumed = at;
            continue;
        }
        if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
            err = "corrupt gzip data";
            break;
        }
        if (rc == Z_MEM_ERROR) {
            err = "out of memory";
            break;
        }
        /* Z_BUF_ERROR with no input left, or Z_OK having used it all */
        if (inf->z.avail_in == 0 && consumed == n && inf->z.avail_out != 0) {
            err = "truncated gzip data";
            break;
        }
    }
    inflateEnd(&inf->z);
    inf->live = 0;
    if (err) {
        free(inf->buf);
        inf->buf = NULL;
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushlstring(L, (const char *)inf->buf, total);
    free(inf->buf);
    inf->buf = NULL;
    return 1;
}

int luaopen_sluice_text(lua_State *L)
{
    static const luaL_Reg fns[] = {{"clean", l_clean},
                                   {"clean_tree", l_clean_tree},
                                   {"utf8_valid", l_utf8_valid},
                                   {"truncate_utf8", l_truncate_utf8},
                                   {"is_gzip", l_is_gzip},
                                   {"gunzip", l_gunzip},
                                   {NULL, NULL}};
    if (luaL_newmetatable(L, SL_INFLATER_T)) {
        lua_pushcfunction(L, inflater_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
