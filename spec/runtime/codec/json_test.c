/* The JSON codec's C interface (what the sinks call): exact encoder output
 * for numbers, strings and ill-formed UTF-8, canonical ordering, decoder
 * errors with byte positions, hostile nesting, and a buffer that is not
 * NUL-terminated. Each case runs twice to catch state leaking between runs. */
#include "harness.h"
#include "codec/json.h"

#include <lualib.h>
#include <stdlib.h>

int luaopen_sluice_json(lua_State *L);

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_sluice_json);
    lua_call(L, 0, 1);
    lua_setglobal(L, "json");
    return L;
}

/* Encodes the value of a Lua expression; returns a malloc'd string, or
 * "ERR:<message>". */
static char *enc(lua_State *L, const char *expr, unsigned flags)
{
    char chunk[4096];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return strdup("LUAERR");
    }
    sl_json_buf b = {0};
    const char *err = NULL;
    char *out;
    if (sl_json_encode(L, -1, flags, &b, &err) != 0) {
        out = malloc(strlen(err) + 5);
        sprintf(out, "ERR:%s", err);
    } else {
        out = malloc(b.len + 1);
        memcpy(out, b.ptr, b.len);
        out[b.len] = 0;
    }
    sl_json_buf_free(&b);
    lua_pop(L, 1);
    return out;
}

#define CHECK_ENC(L, expr, flags, want)      \
    do {                                     \
        char *got_ = enc(L, expr, flags);    \
        CHECK_STR(got_, want);               \
        free(got_);                          \
    } while (0)

/* Decodes then re-encodes; "ERR:<message>" on a decode error. */
static char *roundtrip(lua_State *L, const char *s, size_t n)
{
    char err[128];
    int top = lua_gettop(L);
    if (sl_json_decode(L, s, n, err, sizeof err) != 0) {
        CHECK(lua_gettop(L) == top);
        char *out = malloc(strlen(err) + 5);
        sprintf(out, "ERR:%s", err);
        return out;
    }
    CHECK(lua_gettop(L) == top + 1);
    sl_json_buf b = {0};
    const char *e2 = NULL;
    char *out = NULL;
    if (sl_json_encode(L, -1, 0, &b, &e2) == 0) {
        out = malloc(b.len + 1);
        memcpy(out, b.ptr, b.len);
        out[b.len] = 0;
    } else {
        out = strdup(e2);
    }
    sl_json_buf_free(&b);
    lua_pop(L, 1);
    return out;
}

#define CHECK_RT(L, text, want)                              \
    do {                                                     \
        char *got_ = roundtrip(L, text, sizeof(text) - 1);   \
        CHECK_STR(got_, want);                               \
        free(got_);                                          \
    } while (0)

static void test_numbers(lua_State *L)
{
    CHECK_ENC(L, "0", 0, "0");
    CHECK_ENC(L, "-0.0", 0, "0");
    CHECK_ENC(L, "-17", 0, "-17");
    CHECK_ENC(L, "1e15", 0, "1000000000000000");
    CHECK_ENC(L, "2^53", 0, "9007199254740992");
    CHECK_ENC(L, "-2^53", 0, "-9007199254740992");
    CHECK_ENC(L, "2^53 + 2", 0, "9007199254740994");
    CHECK_ENC(L, "1e20", 0, "1e+20");
    CHECK_ENC(L, "0.1", 0, "0.1");
    CHECK_ENC(L, "1.5", 0, "1.5");
    CHECK_ENC(L, "1/3", 0, "0.3333333333333333");
    CHECK_ENC(L, "5e-324", 0, "4.94065645841247e-324");
    CHECK_ENC(L, "1e300", 0, "1e+300");
    CHECK_ENC(L, "0/0", 0, "ERR:cannot encode nan or inf");
    CHECK_ENC(L, "1/0", 0, "ERR:cannot encode nan or inf");
    CHECK_ENC(L, "{[1/0] = 1, x = 2}", 0, "ERR:cannot encode nan or inf");
}

static void test_strings(lua_State *L)
{
    CHECK_ENC(L, "'plain'", 0, "\"plain\"");
    CHECK_ENC(L, "'q\"b\\\\s/'", 0, "\"q\\\"b\\\\s/\"");
    CHECK_ENC(L, "'\\0\\1\\8\\9\\10\\12\\13\\31\\127'", 0,
              "\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\x7f\"");
    CHECK_ENC(L, "'caf\\195\\169 \\240\\159\\152\\128'", 0, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    /* ill-formed UTF-8: one U+FFFD per maximal subpart */
    CHECK_ENC(L, "'a\\192\\175b'", 0, "\"a\xef\xbf\xbd\xef\xbf\xbd" "b\"");
    CHECK_ENC(L, "'\\226\\130'", 0, "\"\xef\xbf\xbd\"");
    CHECK_ENC(L, "'\\237\\160\\128'", 0, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK_ENC(L, "'\\244\\144\\128\\128'", 0,
              "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK_ENC(L, "'\\240\\159\\152x'", 0, "\"\xef\xbf\xbdx\"");
    CHECK_ENC(L, "'\\255'", 0, "\"\xef\xbf\xbd\"");
}

static void test_tables(lua_State *L)
{
    CHECK_ENC(L, "{}", 0, "{}");
    CHECK_ENC(L, "json.array()", 0, "[]");
    CHECK_ENC(L, "{1, 'a', true, false, json.null}", 0, "[1,\"a\",true,false,null]");
    CHECK_ENC(L, "{a = {}}", 0, "{\"a\":{}}");
    CHECK_ENC(L, "{[3] = 'x'}", 0, "{\"3\":\"x\"}");
    CHECK_ENC(L, "{[1.5] = 'x'}", 0, "{\"1.5\":\"x\"}");
    CHECK_ENC(L, "setmetatable({1, nil, 3}, json.array_mt)", 0, "[1,null,3]");
    CHECK_ENC(L, "setmetatable({[100] = 1}, json.array_mt)", 0, "ERR:array is too sparse");
    CHECK_ENC(L, "setmetatable({x = 1}, json.array_mt)", 0, "ERR:array has a non-integer key");
    CHECK_ENC(L, "{[true] = 1}", 0, "ERR:object key must be a string or a number");
    CHECK_ENC(L, "{f = print}", 0, "ERR:cannot encode function");
    CHECK_ENC(L, "{co = coroutine.create(print)}", 0, "ERR:cannot encode thread");
    CHECK_ENC(L, "newproxy()", 0, "ERR:cannot encode userdata");
    CHECK_ENC(L, "{io.stdout}", 0, "ERR:cannot encode userdata");
    CHECK_ENC(L, "{io.stdout, newproxy(), coroutine.create(print)}", SL_JSON_CANONICAL,
              "[null,null,null]");
    CHECK_ENC(L, "(function() local t = {}; t.t = t; return t end)()", 0,
              "ERR:nesting too deep (or a reference cycle)");
}

static void test_canonical(lua_State *L)
{
    CHECK_ENC(L, "{b = 1, a = {d = print, c = {3, print, json.null}}, [1] = 5, A = 'x'}",
              SL_JSON_CANONICAL, "{\"1\":5,\"A\":\"x\",\"a\":{\"c\":[3,null,null]},\"b\":1}");
    CHECK_ENC(L, "{['\\195\\169'] = 1, z = 2, ['z\\0'] = 3, [''] = 4}", SL_JSON_CANONICAL,
              "{\"\":4,\"z\":2,\"z\\u0000\":3,\"\xc3\xa9\":1}");
    CHECK_ENC(L, "{[1] = 'a', ['1'] = 'b', x = 1}", SL_JSON_CANONICAL,
              "ERR:duplicate key after number-to-string conversion");
    CHECK_ENC(L, "print", SL_JSON_CANONICAL, "null");
    CHECK_ENC(L, "{n = 2^53, f = 0.5}", SL_JSON_CANONICAL, "{\"f\":0.5,\"n\":9007199254740992}");
}

static void test_decode(lua_State *L)
{
    CHECK_RT(L, " [ { \"c\" :\t[1 ,null,-2.5e1]\r\n} , [ ] ] ", "[{\"c\":[1,null,-25]},[]]");
    CHECK_RT(L, "[]", "[]");
    CHECK_RT(L, "{}", "{}");
    CHECK_RT(L, "[[],{},[null]]", "[[],{},[null]]");
    CHECK_RT(L, "\"\\ud83d\\ude00\\u00e9\\/\\b\"", "\"\xf0\x9f\x98\x80\xc3\xa9/\\b\"");
    CHECK_RT(L, "\"\\ud800x\"", "\"\xef\xbf\xbdx\"");
    CHECK_RT(L, "\"\\udc00\"", "\"\xef\xbf\xbd\"");
    CHECK_RT(L, "\"a\xffz\"", "\"a\xef\xbf\xbdz\"");
    CHECK_RT(L, "\xef\xbb\xbf[1]", "[1]");
    CHECK_RT(L, "12345678901234567890", "1.2345678901234567e+19");
    CHECK_RT(L, "-0", "0");
    CHECK_RT(L, "1E2", "100");
    CHECK_RT(L, "{\"a\":1,\"a\":2}", "{\"a\":2}");
    /* errors */
    CHECK_RT(L, "", "ERR:unexpected end of input at byte 1");
    CHECK_RT(L, "   ", "ERR:unexpected end of input at byte 4");
    CHECK_RT(L, "[1,", "ERR:unexpected end of input at byte 4");
    CHECK_RT(L, "[1,]", "ERR:unexpected character ']' at byte 4");
    CHECK_RT(L, "{\"a\" 1}", "ERR:unexpected character '1' at byte 6");
    CHECK_RT(L, "{a:1}", "ERR:unexpected character 'a' at byte 2");
    CHECK_RT(L, "[1] x", "ERR:unexpected character 'x' at byte 5");
    CHECK_RT(L, "[1]\x01", "ERR:unexpected byte 0x01 at byte 4");
    CHECK_RT(L, "\"abc", "ERR:unterminated string at byte 5");
    CHECK_RT(L, "\"a\\", "ERR:unterminated string at byte 4");
    CHECK_RT(L, "\"a\nb\"", "ERR:control character in string at byte 3");
    CHECK_RT(L, "\"\\x41\"", "ERR:invalid escape at byte 2");
    CHECK_RT(L, "\"\\u12G4\"", "ERR:invalid \\u escape at byte 2");
    CHECK_RT(L, "01", "ERR:unexpected character '1' at byte 2");
    CHECK_RT(L, "1.", "ERR:invalid number at byte 3");
    CHECK_RT(L, "1e+", "ERR:invalid number at byte 4");
    CHECK_RT(L, "-", "ERR:unexpected end of input at byte 2");
    CHECK_RT(L, "0x10", "ERR:unexpected character 'x' at byte 2");
    CHECK_RT(L, "1e400", "ERR:number out of range at byte 1");
    CHECK_RT(L, "[-1e999]", "ERR:number out of range at byte 2");
    CHECK_RT(L, "NaN", "ERR:unexpected character 'N' at byte 1");
    CHECK_RT(L, "tru", "ERR:unexpected character 't' at byte 1");
    CHECK_RT(L, "nul", "ERR:unexpected character 'n' at byte 1");
}

static void test_hostile(lua_State *L)
{
    size_t n = 200000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    char *got = roundtrip(L, deep, n);
    CHECK_STR(got, "ERR:nesting too deep at byte 1001");
    free(got);
    for (size_t i = 0; i < n; i += 5)
        memcpy(deep + i, "{\"a\":", 5);
    got = roundtrip(L, deep, n);
    CHECK_STR(got, "ERR:nesting too deep at byte 5001");
    free(got);
    /* exactly at the limit is fine */
    char ok[2001];
    memset(ok, '[', 1000);
    memset(ok + 1000, ']', 1000);
    got = roundtrip(L, ok, 2000);
    CHECK(got && strncmp(got, "[[[[", 4) == 0 && strlen(got) == 2000);
    free(got);
    free(deep);

    /* a number at the very end of a buffer that is not NUL-terminated */
    char buf[4] = {'1', '2', '3', '4'};
    char err[64];
    CHECK(sl_json_decode(L, buf, 3, err, sizeof err) == 0);
    CHECK(lua_tonumber(L, -1) == 123);
    lua_pop(L, 1);

    /* a 2000-digit number is too long; a 400-digit one is out of range */
    char big[2001];
    memset(big, '9', 2000);
    got = roundtrip(L, big, 2000);
    CHECK_STR(got, "ERR:number too long at byte 1");
    free(got);
    got = roundtrip(L, big, 400);
    CHECK_STR(got, "ERR:number out of range at byte 1");
    free(got);
    got = roundtrip(L, big, 300);
    CHECK_STR(got, "1e+300");
    free(got);
}

int main(void)
{
    for (int run = 0; run < 2; run++) {
        lua_State *L = new_state();
        int top = lua_gettop(L);
        test_numbers(L);
        test_strings(L);
        test_tables(L);
        test_canonical(L);
        test_decode(L);
        test_hostile(L);
        CHECK(lua_gettop(L) == top);
        lua_close(L);
    }
    /* through the real VM, as connector code sees it */
    sl_test_lua("json_in_vm", "local json = require 'sluice.json'\n"
                              "local v = json.decode('{\"a\":[],\"b\":null}')\n"
                              "assert(v.b == json.null and json.is_array(v.a))\n"
                              "assert(json.encode(v.a) == '[]')\n"
                              "assert(json.null == require('cjson').null)\n");
    return sl_test_done("json");
}
