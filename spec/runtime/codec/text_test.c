/* Text hygiene byte by byte: what text.clean keeps, escapes, drops and
 * replaces (including the Unicode standard's maximal-subpart example), the
 * no-copy fast path, truncation at character boundaries, and gunzip over
 * real zlib output: multi-member, padding, corrupt, truncated, and a bomb
 * stopped by the cap. Each case runs twice. */
#include "harness.h"
#include "codec/utf8.h"

#include <lualib.h>
#include <stdlib.h>
#include <zlib.h>

int luaopen_sluice_text(lua_State *L);

#define FFFD "\xef\xbf\xbd"

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_sluice_text);
    lua_call(L, 0, 1);
    lua_setglobal(L, "text");
    return L;
}

/* Calls text.<fn>(s[, arg]); leaves its results on the stack. */
static int call(lua_State *L, const char *fn, const char *s, size_t n, lua_Integer arg, int nargs)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "text");
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_pushlstring(L, s, n);
    if (nargs > 1)
        lua_pushinteger(L, arg);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - top;
}

static void check_clean(lua_State *L, const char *in, size_t n, const char *want, size_t wn,
                        int changed, int line)
{
    int nres = call(L, "clean", in, n, 0, 1);
    size_t gn;
    const char *got = lua_tolstring(L, -2, &gn);
    if (nres != 2 || gn != wn || memcmp(got, want, wn) != 0 || lua_tointeger(L, -1) != changed) {
        fprintf(stderr, "line %d: clean gave %d results, \"%.*s\" (%d changes)\n", line, nres,
                (int)gn, got, (int)lua_tointeger(L, -1));
        sl_test_failures++;
    }
    lua_pop(L, nres);
}

#define CLEAN(in, want, changed) \
    check_clean(L, in, sizeof(in) - 1, want, sizeof(want) - 1, changed, __LINE__)

static void test_clean(lua_State *L)
{
    CLEAN("", "", 0);
    CLEAN("plain text\twith\r\nbreaks", "plain text\twith\r\nbreaks", 0);
    CLEAN("caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac \xf4\x8f\xbf\xbf \xc2\x85",
          "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac \xf4\x8f\xbf\xbf \xc2\x85", 0);
    CLEAN("a\0b\0", "ab", 2);
    CLEAN("a\x01" "b\x1b[0m\x7f\x1f", "a\\x01b\\x1b[0m\\x7f\\x1f", 4);
    CLEAN("\x0b\x0c", "\\x0b\\x0c", 2);
    /* bad lead bytes and stray continuation bytes: one U+FFFD each */
    CLEAN("\x80\xbf\xc0\xc1\xf5\xff", FFFD FFFD FFFD FFFD FFFD FFFD, 6);
    /* overlong forms: C0 AF and E0 80 AF and F0 80 80 AF */
    CLEAN("\xc0\xaf", FFFD FFFD, 2);
    CLEAN("\xe0\x80\xaf", FFFD FFFD FFFD, 3);
    CLEAN("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD, 4);
    /* surrogates and beyond U+10FFFF */
    CLEAN("\xed\xa0\x80", FFFD FFFD FFFD, 3);
    CLEAN("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD, 4);
    /* truncated sequences are one maximal subpart each */
    CLEAN("\xe2\x82" "A", FFFD "A", 1);
    CLEAN("\xf0\x9f\x98" "A", FFFD "A", 1);
    CLEAN("x\xf0\x9f\x98", "x" FFFD, 1);
    CLEAN("\xf0\x9f\xf0\x9f\x98\x80", FFFD "\xf0\x9f\x98\x80", 1);
    /* the Unicode standard's example (chapter 3, U+FFFD substitution) */
    CLEAN("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
          "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d", 6);
    /* mixed */
    CLEAN("\0\x01\xff" "ok", "\\x01" FFFD "ok", 3);
}

static void test_fast_path(lua_State *L)
{
    /* a clean string comes back as the very same string object */
    lua_pushliteral(L, "already clean \xc3\xa9");
    const char *orig = lua_tostring(L, -1);
    lua_getglobal(L, "text");
    lua_getfield(L, -1, "clean");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 2);
    CHECK(lua_tostring(L, -2) == orig);
    CHECK(lua_tointeger(L, -1) == 0);
    lua_pop(L, 4);
}

static void check_valid(lua_State *L, const char *s, size_t n, int want, int line)
{
    call(L, "utf8_valid", s, n, 0, 1);
    if (lua_toboolean(L, -1) != want) {
        fprintf(stderr, "line %d: utf8_valid gave %d\n", line, !want);
        sl_test_failures++;
    }
    lua_pop(L, 1);
}

#define VALID(s, want) check_valid(L, s, sizeof(s) - 1, want, __LINE__)

static void test_valid(lua_State *L)
{
    VALID("", 1);
    VALID("a\0b\x01", 1); /* control bytes are valid UTF-8 */
    VALID("\xf0\x9f\x98\x80\xe2\x82\xac", 1);
    VALID("\xf0\x9f\x98", 0);
    VALID("\xed\xbf\xbf", 0);
    VALID("\xc1\xbf", 0);
    VALID("\xf4\x8f\xbf\xbf", 1);
}

static void check_trunc(lua_State *L, const char *s, size_t n, lua_Integer max, const char *want,
                        int line)
{
    call(L, "truncate_utf8", s, n, max, 2);
    size_t gn;
    const char *got = lua_tolstring(L, -1, &gn);
    if (gn != strlen(want) || memcmp(got, want, gn) != 0) {
        fprintf(stderr, "line %d: truncate_utf8(%d) gave \"%.*s\"\n", line, (int)max, (int)gn,
                got);
        sl_test_failures++;
    }
    lua_pop(L, 1);
}

#define TRUNC(s, max, want) check_trunc(L, s, sizeof(s) - 1, max, want, __LINE__)

static void test_truncate(lua_State *L)
{
    TRUNC("hello", 10, "hello");
    TRUNC("hello", 5, "hello");
    TRUNC("hello", 3, "hel");
    TRUNC("hello", 0, "");
    TRUNC("a\xf0\x9f\x98\x80" "b", 1, "a");
    TRUNC("a\xf0\x9f\x98\x80" "b", 2, "a");
    TRUNC("a\xf0\x9f\x98\x80" "b", 4, "a");
    TRUNC("a\xf0\x9f\x98\x80" "b", 5, "a\xf0\x9f\x98\x80");
    TRUNC("\xc3\xa9\xc3\xa9", 3, "\xc3\xa9");
    /* ill-formed input is cut where asked: there is no character to keep */
    TRUNC("ab\x80\x80\x80\x80\x80", 4, "ab\x80\x80");
}

/* gzip-compresses s with zlib; returns malloc'd bytes. */
static unsigned char *gz(const void *s, size_t n, size_t *outn)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, n) + 64;
    unsigned char *out = malloc(cap);
    z.next_in = (unsigned char *)s;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    *outn = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* text.gunzip(data, max) as "ok:<output>" or "err:<message>" */
static char *gunzip(lua_State *L, const unsigned char *s, size_t n, lua_Integer max, size_t *outn)
{
    int nres = call(L, "gunzip", (const char *)s, n, max, max >= 0 ? 2 : 1);
    size_t len;
    const char *r = lua_tolstring(L, lua_isnil(L, -nres) ? -1 : -nres, &len);
    char *out = malloc(len + 5);
    memcpy(out, lua_isnil(L, -nres) ? "err:" : "ok:-", 4);
    memcpy(out + 4, r, len);
    out[len + 4] = 0;
    *outn = len + 4;
    lua_pop(L, nres);
    return out;
}

static void test_gunzip(lua_State *L)
{
    size_t n1, n2, outn;
    unsigned char *a = gz("hello, ", 7, &n1);
    unsigned char *b = gz("world", 5, &n2);
    char *got;

    got = gunzip(L, a, n1, -1, &outn);
    CHECK_STR(got, "ok:-hello, ");
    free(got);

    /* two members, then zero padding as tape tools leave it */
    unsigned char *two = malloc(n1 + n2 + 16);
    memcpy(two, a, n1);
    memcpy(two + n1, b, n2);
    memset(two + n1 + n2, 0, 16);
    got = gunzip(L, two, n1 + n2, -1, &outn);
    CHECK_STR(got, "ok:-hello, world");
    free(got);
    got = gunzip(L, two, n1 + n2 + 16, -1, &outn);
    CHECK_STR(got, "ok:-hello, world");
    free(got);

    /* garbage after a member */
    memcpy(two + n1 + n2, "junk", 4);
    got = gunzip(L, two, n1 + n2 + 4, -1, &outn);
    CHECK_STR(got, "err:corrupt gzip data");
    free(got);

    /* cut anywhere inside: truncated */
    for (size_t cut = 0; cut < n1; cut++) {
        got = gunzip(L, a, cut, -1, &outn);
        if (strcmp(got, "err:truncated gzip data") != 0) {
            fprintf(stderr, "cut at %zu: %s\n", cut, got);
            sl_test_failures++;
        }
        free(got);
    }
    /* a cut second member is truncated too */
    got = gunzip(L, two, n1 + n2 - 3, -1, &outn);
    CHECK_STR(got, "err:truncated gzip data");
    free(got);

    /* a flipped CRC byte, a bad method byte, not gzip at all */
    a[n1 - 6] ^= 0x55;
    got = gunzip(L, a, n1, -1, &outn);
    CHECK_STR(got, "err:corrupt gzip data");
    free(got);
    a[n1 - 6] ^= 0x55;
    a[2] = 7;
    got = gunzip(L, a, n1, -1, &outn);
    CHECK_STR(got, "err:corrupt gzip data");
    free(got);
    got = gunzip(L, (const unsigned char *)"plain text, not gzip", 20, -1, &outn);
    CHECK_STR(got, "err:corrupt gzip data");
    free(got);

    /* a bomb: 64 MiB of zeros in ~64 KiB; the cap stops it early */
    size_t big = 64u << 20, bn;
    unsigned char *zeros = calloc(1, big);
    unsigned char *bomb = gz(zeros, big, &bn);
    CHECK(bn < big / 500);
    got = gunzip(L, bomb, bn, 1 << 20, &outn);
    CHECK_STR(got, "err:too large");
    free(got);
    /* exactly at the cap is fine, one byte less is not */
    unsigned char *small = gz(zeros, 100000, &bn);
    got = gunzip(L, small, bn, 100000, &outn);
    CHECK(outn == 100004 && strncmp(got, "ok:-", 4) == 0);
    free(got);
    got = gunzip(L, small, bn, 99999, &outn);
    CHECK_STR(got, "err:too large");
    free(got);
    got = gunzip(L, small, bn, 0, &outn);
    CHECK_STR(got, "err:too large");
    free(got);

    /* is_gzip */
    call(L, "is_gzip", (const char *)small, bn, 0, 1);
    CHECK(lua_toboolean(L, -1) == 1);
    lua_pop(L, 1);
    call(L, "is_gzip", "\x1f", 1, 0, 1);
    CHECK(lua_toboolean(L, -1) == 0);
    lua_pop(L, 1);

    free(small);
    free(bomb);
    free(zeros);
    free(two);
    free(a);
    free(b);
}

static void test_utf8_next(void)
{
    int valid;
    CHECK(sl_utf8_next((const unsigned char *)"\xf0\x9f\x98\x80", 4, &valid) == 4 && valid);
    CHECK(sl_utf8_next((const unsigned char *)"\xf0\x9f\x98\x80", 3, &valid) == 3 && !valid);
    CHECK(sl_utf8_next((const unsigned char *)"\xe0\x9f\x80", 3, &valid) == 1 && !valid);
    CHECK(sl_utf8_next((const unsigned char *)"\xed\x9f\xbf", 3, &valid) == 3 && valid);
    unsigned char out[4];
    CHECK(sl_utf8_put(out, 0x1f600) == 4 && memcmp(out, "\xf0\x9f\x98\x80", 4) == 0);
    CHECK(sl_utf8_put(out, 0xe9) == 2 && memcmp(out, "\xc3\xa9", 2) == 0);
}

int main(void)
{
    test_utf8_next();
    for (int run = 0; run < 2; run++) {
        lua_State *L = new_state();
        int top = lua_gettop(L);
        test_clean(L);
        test_fast_path(L);
        test_valid(L);
        test_truncate(L);
        test_gunzip(L);
        CHECK(lua_gettop(L) == top);
        lua_close(L);
    }
    return sl_test_done("text");
}
