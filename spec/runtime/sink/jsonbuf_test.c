/* The sinks' JSON writer: exact bytes for strings (escapes, emoji, invalid
 * UTF-8 -> U+FFFD), numbers, arrays vs objects, null sentinels, skipped
 * functions, errors that roll the buffer back, and a fuzz run proving every
 * output is valid UTF-8 JSON that cjson reads back. */
#include "harness.h"
#include "sink/jsonbuf.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

int luaopen_cjson(lua_State *L);

static char out[4096];

/* The JSON for a raw byte string. */
static const char *str_json(const char *s, size_t n)
{
    sl_jsonbuf b;
    sl_jsonbuf_init(&b);
    CHECK(sl_jsonbuf_string(&b, s, n) == 0);
    snprintf(out, sizeof out, "%.*s", (int)b.len, b.ptr);
    sl_jsonbuf_free(&b);
    return out;
}

static const char *num_json(double x)
{
    sl_jsonbuf b;
    sl_jsonbuf_init(&b);
    if (sl_jsonbuf_number(&b, x) != 0)
        snprintf(out, sizeof out, "(error)");
    else
        snprintf(out, sizeof out, "%.*s", (int)b.len, b.ptr);
    sl_jsonbuf_free(&b);
    return out;
}

/* Evaluates `expr` (a Lua expression) and serialises it; returns the JSON
 * or "error: <message>". */
static const char *lua_json(lua_State *L, const char *expr)
{
    char chunk[2048];
    snprintf(chunk, sizeof chunk, "local null = require('cjson').null; return %s", expr);
    if (luaL_dostring(L, chunk) != 0) {
        snprintf(out, sizeof out, "lua: %s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return out;
    }
    sl_jsonbuf b;
    sl_jsonbuf_init(&b);
    CHECK(sl_jsonbuf_append(&b, "<", 1) == 0);
    const char *err = NULL;
    int top = lua_gettop(L);
    if (sl_jsonbuf_value(&b, L, -1, &err) != 0) {
        snprintf(out, sizeof out, "error: %s", err);
        CHECK(b.len == 1); /* rolled back to what was there */
    } else {
        snprintf(out, sizeof out, "%.*s", (int)b.len - 1, b.ptr + 1);
    }
    CHECK(lua_gettop(L) == top);
    sl_jsonbuf_free(&b);
    lua_settop(L, 0);
    return out;
}

/* Strict UTF-8 check (no overlongs, surrogates, or > U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int need;
        unsigned long cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + (size_t)need >= n)
            return 0;
        for (int k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)need + 1;
    }
    return 1;
}

static void test_strings(void)
{
    CHECK_STR(str_json("plain", 5), "\"plain\"");
    CHECK_STR(str_json("", 0), "\"\"");
    CHECK_STR(str_json("a\"b\\c/d", 7), "\"a\\\"b\\\\c/d\"");
    CHECK_STR(str_json("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
    CHECK_STR(str_json("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
    CHECK_STR(str_json("a\0b", 3), "\"a\\u0000b\"");
    /* valid multibyte text passes through untouched */
    CHECK_STR(str_json("Zürich 東京 🚀", strlen("Zürich 東京 🚀")), "\"Zürich 東京 🚀\"");
    CHECK_STR(str_json("\xF4\x8F\xBF\xBF", 4), "\"\xF4\x8F\xBF\xBF\""); /* U+10FFFF */
    /* invalid UTF-8: one U+FFFD per maximal invalid subpart */
    CHECK_STR(str_json("\xFF", 1), "\"\xEF\xBF\xBD\"");
    CHECK_STR(str_json("a\x80z", 3), "\"a\xEF\xBF\xBDz\"");
    CHECK_STR(str_json("\xC0\xAF", 2), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");       /* overlong */
    CHECK_STR(str_json("\xE2\x82", 2), "\"\xEF\xBF\xBD\"");                    /* truncated */
    CHECK_STR(str_json("\xE2\x82z", 3), "\"\xEF\xBF\xBDz\"");
    CHECK_STR(str_json("\xED\xA0\x80", 3),                                      /* surrogate */
              "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    CHECK_STR(str_json("\xF4\x90\x80\x80", 4),                                  /* > 10FFFF */
              "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    CHECK_STR(str_json("\xF0\x9F\x9A", 3), "\"\xEF\xBF\xBD\"");                /* cut emoji */
}

static void test_numbers(void)
{
    CHECK_STR(num_json(0), "0");
    CHECK_STR(num_json(-0.0), "0");
    CHECK_STR(num_json(42), "42");
    CHECK_STR(num_json(-7), "-7");
    CHECK_STR(num_json(9007199254740993.0), "9007199254740992");
    CHECK_STR(num_json(1e20), "100000000000000000000");
    CHECK_STR(num_json(1e300 * 1e10), "(error)");
    CHECK_STR(num_json(0.1), "0.1");
    CHECK_STR(num_json(1.5), "1.5");
    CHECK_STR(num_json(-2.25), "-2.25");
    CHECK_STR(num_json(1.0 / 3), "0.3333333333333333");
    CHECK_STR(num_json(1e-7), "1e-07");
    CHECK_STR(num_json(0.1 + 0.2), "0.30000000000000004");
    CHECK_STR(num_json(1.0 / 0.0), "(error)");
    CHECK_STR(num_json(0.0 / 0.0), "(error)");
}

static void test_values(lua_State *L)
{
    CHECK_STR(lua_json(L, "nil"), "null");
    CHECK_STR(lua_json(L, "true"), "true");
    CHECK_STR(lua_json(L, "false"), "false");
    CHECK_STR(lua_json(L, "'x'"), "\"x\"");
    CHECK_STR(lua_json(L, "{}"), "{}");
    CHECK_STR(lua_json(L, "setmetatable({}, {__jsontype = 'array'})"), "[]");
    CHECK_STR(lua_json(L, "setmetatable({1, 2}, {__jsontype = 'object'})"),
              "{\"1\":1,\"2\":2}");
    CHECK_STR(lua_json(L, "{1, 'two', true}"), "[1,\"two\",true]");
    CHECK_STR(lua_json(L, "{[1] = 'a', [3] = 'c'}"), "{\"1\":\"a\",\"3\":\"c\"}");
    CHECK_STR(lua_json(L, "{[2] = 'b', [1] = 'a'}"), "[\"a\",\"b\"]");
    CHECK_STR(lua_json(L, "{b = 1, a = 2, c = {d = {}, e = {1}}}"),
              "{\"a\":2,\"b\":1,\"c\":{\"d\":{},\"e\":[1]}}");
    CHECK_STR(lua_json(L, "{'x', k = 'v'}"), "{\"1\":\"x\",\"k\":\"v\"}");
    CHECK_STR(lua_json(L, "{[1.5] = 'half'}"), "{\"1.5\":\"half\"}");
    CHECK_STR(lua_json(L, "{n = null, list = {1, null, 3}}"),
              "{\"list\":[1,null,3],\"n\":null}");
    CHECK_STR(lua_json(L, "{f = print, keep = 1}"), "{\"keep\":1}");
    CHECK_STR(lua_json(L, "{print, 2}"), "[null,2]");
    CHECK_STR(lua_json(L, "{['a\"b'] = '\\n'}"), "{\"a\\\"b\":\"\\n\"}");
    CHECK_STR(lua_json(L, "{big = 2^53, neg = -2^31, frac = 0.5}"),
              "{\"big\":9007199254740992,\"frac\":0.5,\"neg\":-2147483648}");
    CHECK_STR(lua_json(L, "{id = 1234567890123LL, u = 18446744073709551615ULL}"),
              "{\"id\":1234567890123,\"u\":18446744073709551615}");
    CHECK_STR(lua_json(L, "setmetatable({1, nil, 3}, {__jsontype = 'array'})"), "[1,null,3]");
    CHECK_STR(lua_json(L, "setmetatable({[100] = 1}, {__jsontype = 'array'})"),
              "error: array is too sparse");
    /* userdata flagged as null by its metatable (a foreign json.null) */
    CHECK_STR(lua_json(L, "(function() local p = newproxy(true); "
                          "getmetatable(p).__jsontype = 'null'; return {v = p} end)()"),
              "{\"v\":null}");
    /* errors leave the buffer as it was */
    CHECK_STR(lua_json(L, "{x = 0/0}"), "error: number is not finite");
    CHECK_STR(lua_json(L, "{x = 1/0}"), "error: number is not finite");
    CHECK_STR(lua_json(L, "{[true] = 1}"), "error: table key must be a string or number");
    CHECK_STR(lua_json(L, "{co = coroutine.create(print)}"), "error: cannot encode thread");
    CHECK_STR(lua_json(L, "{u = newproxy(false)}"), "error: cannot encode userdata");
    CHECK_STR(lua_json(L, "print"), "error: cannot encode function");
    CHECK_STR(lua_json(L, "{p = require('ffi').new('int[1]')}"), "error: cannot encode cdata");
    CHECK_STR(lua_json(L, "(function() local t = {}; t.self = t; return t end)()"),
              "error: nesting too deep");
    /* 128 levels fit, 129 do not */
    const char *deep = lua_json(L, "(function() local t = 1; for i = 1, 128 do t = {t} end; "
                                   "return t end)()");
    CHECK(strlen(deep) == 257 && deep[0] == '[' && deep[128] == '1' && deep[256] == ']');
    CHECK_STR(lua_json(L, "(function() local t = 1; for i = 1, 129 do t = {t} end; "
                          "return t end)()"),
              "error: nesting too deep");
}

/* Many objects with many keys: the key scratch grows and nested objects
 * must not corrupt their parent's sorted keys. */
static void test_key_scratch(lua_State *L)
{
    const char *j = lua_json(L, "(function() local t = {} for i = 1, 40 do "
                                "t['k' .. string.format('%02d', i)] = {[i] = i, z = {y = i}} "
                                "end return t end)()");
    CHECK(strncmp(j, "{\"k01\":{\"1\":1,\"z\":{\"y\":1}},\"k02\":{\"2\":2,", 38) == 0);
    CHECK(strstr(j, "\"k40\":{\"40\":40,\"z\":{\"y\":40}}}") != NULL);
}

/* Random bytes in keys and values: every output is valid UTF-8 and parses
 * back with cjson, and valid input strings survive the round trip. */
static void test_fuzz(lua_State *L)
{
    srand(12345);
    int bad = 0;
    sl_jsonbuf b;
    sl_jsonbuf_init(&b);
    for (int round = 0; round < 2000; round++) {
        char s[64];
        int n = rand() % 64;
        for (int i = 0; i < n; i++)
            s[i] = (char)(rand() % 256);
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, s, (size_t)n);
        lua_pushlstring(L, s, (size_t)n);
        lua_rawset(L, -3);
        b.len = 0;
        const char *err;
        if (sl_jsonbuf_value(&b, L, -1, &err) != 0) {
            bad++;
            lua_settop(L, 0);
            continue;
        }
        lua_settop(L, 0);
        if (!valid_utf8((const unsigned char *)b.ptr, b.len))
            bad++;
        lua_getglobal(L, "cjson_decode_ok");
        lua_pushlstring(L, b.ptr, b.len);
        lua_pushlstring(L, s, (size_t)n);
        lua_call(L, 2, 1);
        if (!lua_toboolean(L, -1))
            bad++;
        lua_settop(L, 0);
    }
    sl_jsonbuf_free(&b);
    CHECK(bad == 0);
}

int main(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_settop(L, 0);
    /* decodes and, when the input was valid UTF-8 without controls, checks
     * the value came back unchanged */
    CHECK(luaL_dostring(L, "local cjson = require('cjson')\n"
                           "function cjson_decode_ok(j, s)\n"
                           "  local ok, t = pcall(cjson.decode, j)\n"
                           "  if not ok or type(t) ~= 'table' then return false end\n"
                           "  local k, v = next(t)\n"
                           "  if k ~= v then return false end\n"
                           "  if #s > 0 and k ~= s and not s:find('[\\128-\\255]') then\n"
                           "    return false end\n"
                           "  return true\n"
                           "end") == 0);
    for (int run = 0; run < 2; run++) {
        test_strings();
        test_numbers();
        test_values(L);
        test_key_scratch(L);
        test_fuzz(L);
    }
    lua_close(L);
    return sl_test_done("jsonbuf");
}
