/* sluice.pg without a server: the text-to-Lua conversions of pg_types.c
 * (timestamps normalised to UTC, integers at the 2^53 edge, floats, bytea,
 * arrays including malformed and hostile ones), and the driver's failures
 * that need no server (refused connection, misuse). pg_spec.lua covers the
 * rest against a real PostgreSQL. */
#include "harness.h"
#include "db/pg_types.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

static void check_utc(const char *in, const char *want)
{
    char out[64];
    size_t n = sl_pg_timestamptz_utc(in, strlen(in), out);
    if (!want) {
        if (n != 0) {
            fprintf(stderr, "timestamptz %s: expected no conversion, got %.*s\n", in, (int)n, out);
            sl_test_failures++;
        }
        return;
    }
    out[n] = 0;
    CHECK_STR(out, want);
}

static void test_timestamptz(void)
{
    check_utc("2024-02-29 13:45:30+00", "2024-02-29T13:45:30Z");
    check_utc("2024-02-29 13:45:30.123456+01", "2024-02-29T12:45:30.123456Z");
    check_utc("2024-01-01 00:30:00+05:30", "2023-12-31T19:00:00Z");
    check_utc("2023-12-31 23:00:00-02", "2024-01-01T01:00:00Z");
    check_utc("1850-01-01 00:00:00+00:53:28", "1849-12-31T23:06:32Z");
    check_utc("1970-01-01 00:00:00+00", "1970-01-01T00:00:00Z");
    check_utc("1969-12-31 23:59:59.5-00:00:01", "1970-01-01T00:00:00.5Z");
    check_utc("0001-01-01 00:00:00+00", "0001-01-01T00:00:00Z");
    check_utc("2000-03-01 00:00:00+14", "2000-02-29T10:00:00Z");
    check_utc("10000-01-01 00:00:00+00", "10000-01-01T00:00:00Z");
    check_utc("infinity", NULL);
    check_utc("-infinity", NULL);
    check_utc("0044-03-15 12:00:00+00 BC", NULL);
    check_utc("2024-13-01 00:00:00+00", NULL);
    check_utc("2024-01-01 00:00:00", NULL);
    check_utc("2024-01-01 00:00:00+", NULL);
    check_utc("", NULL);
    check_utc("2024-01-01 00:00:00.12345678901+00", NULL);
}

/* Runs `value` (a Lua expression over `v`, the converted value) for
 * sl_pg_push_value(kind, elem, text) and checks it is true. */
static void check_value(lua_State *L, int kind, int elem, const char *text, const char *expr)
{
    sl_pg_push_value(L, kind, elem, text, strlen(text));
    lua_setglobal(L, "v");
    char chunk[512];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    if (luaL_dostring(L, chunk) != 0 || !lua_toboolean(L, -1)) {
        luaL_dostring(L, "return require('sluice.json').encode(v)");
        fprintf(stderr, "value of kind %d from \"%s\": expected %s, got %s\n", kind, text, expr,
                lua_tostring(L, -1));
        sl_test_failures++;
    }
    lua_settop(L, 0);
}

static int run_values(lua_State *L)
{
    check_value(L, SL_PG_INT8, 0, "9007199254740992", "v == 2^53");
    check_value(L, SL_PG_INT8, 0, "9007199254740993", "v == '9007199254740993'");
    check_value(L, SL_PG_INT8, 0, "-9007199254740992", "v == -2^53");
    check_value(L, SL_PG_INT8, 0, "-9223372036854775808", "v == '-9223372036854775808'");
    check_value(L, SL_PG_INT, 0, "-32768", "v == -32768");
    check_value(L, SL_PG_INT, 0, "12abc", "v == '12abc'");
    check_value(L, SL_PG_FLOAT, 0, "0.30000000000000004", "v == 0.1 + 0.2");
    check_value(L, SL_PG_FLOAT, 0, "1.1", "v == 1.1");
    check_value(L, SL_PG_FLOAT, 0, "-1e+308", "v == -1e308");
    check_value(L, SL_PG_FLOAT, 0, "NaN", "v == 'NaN'");
    check_value(L, SL_PG_FLOAT, 0, "Infinity", "v == 'Infinity'");
    check_value(L, SL_PG_FLOAT, 0, "-Infinity", "v == '-Infinity'");
    check_value(L, SL_PG_NUMERIC, 0, "123456789012345678901234567890.000000000000000001",
                "v == '123456789012345678901234567890.000000000000000001'");
    check_value(L, SL_PG_BOOL, 0, "t", "v == true");
    check_value(L, SL_PG_BOOL, 0, "f", "v == false");
    check_value(L, SL_PG_BYTEA, 0, "\\x", "v == ''");
    check_value(L, SL_PG_BYTEA, 0, "\\x00ff41", "v == 'AP9B'");
    check_value(L, SL_PG_BYTEA, 0, "\\x68656c6c6f", "v == 'aGVsbG8='");
    check_value(L, SL_PG_JSON, 0, "{\"a\": [1, null]}",
                "require('sluice.json').encode(v) == '{\"a\":[1,null]}'");
    check_value(L, SL_PG_JSON, 0, "{broken", "v == '{broken'");
    check_value(L, SL_PG_TIMESTAMP, 0, "2024-02-29 13:45:30.5", "v == '2024-02-29T13:45:30.5'");
    check_value(L, SL_PG_TIMESTAMP, 0, "infinity", "v == 'infinity'");
    check_value(L, SL_PG_TIMESTAMP, 0, "0044-03-15 12:00:00 BC", "v == '0044-03-15 12:00:00 BC'");
    check_value(L, SL_PG_TIMESTAMPTZ, 0, "2024-02-29 13:45:30+02", "v == '2024-02-29T11:45:30Z'");
    /* arrays: encode back to see the exact shape, nulls and quoting */
#define ENC "require('sluice.json').encode(v) == "
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "{1,NULL,3}", ENC "'[1,null,3]'");
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "{}", ENC "'[]'");
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "{{1,2},{3,4}}", ENC "'[[1,2],[3,4]]'");
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "[0:1]={7,8}", ENC "'[7,8]'");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "{\"a,b\",\"c\\\"d\",NULL,\"NULL\",null, x y }",
                ENC "'[\"a,b\",\"c\\\\\"d\",null,\"NULL\",null,\"x y\"]'");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "{\"back\\\\slash\",\"{}\"}",
                ENC "'[\"back\\\\\\\\slash\",\"{}\"]'");
    check_value(L, SL_PG_ARRAY, SL_PG_BYTEA, "{\"\\\\x00ff41\",NULL}", ENC "'[\"AP9B\",null]'");
    check_value(L, SL_PG_ARRAY, SL_PG_JSON, "{\"{\\\"k\\\": 1}\",\"[]\"}", ENC "'[{\"k\":1},[]]'");
    check_value(L, SL_PG_ARRAY, SL_PG_TIMESTAMPTZ, "{\"2024-01-01 00:00:00+01\"}",
                ENC "'[\"2023-12-31T23:00:00Z\"]'");
    /* malformed or hostile text is kept as the string, never a crash */
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "{1,2", "v == '{1,2'");
    check_value(L, SL_PG_ARRAY, SL_PG_INT, "{1,2}}", "v == '{1,2}}'");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "{\"unterminated}", "v == '{\"unterminated}'");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "", "v == ''");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "{{{{{{{{{{{{1}}}}}}}}}}}}", "v == '{{{{{{{{{{{{1}}}}}}}}}}}}'");
    check_value(L, SL_PG_ARRAY, SL_PG_STRING, "{1,,2}", "v == '{1,,2}'");
    return 0;
}

static void test_values(void)
{
    char err[256];
    sl_vm *vm = sl_vm_new(getenv("SLUICE_HOME"), err, sizeof err);
    if (!vm) {
        fprintf(stderr, "cannot build VM: %s\n", err);
        sl_test_failures++;
        return;
    }
    lua_State *L = vm->L;
    run_values(L);
    sl_vm_free(vm);
}

static void test_builtin_table(void)
{
    sl_pg_type t;
    CHECK(sl_pg_builtin_type(1184, &t) && t.kind == SL_PG_TIMESTAMPTZ);
    CHECK_STR(t.name, "timestamptz");
    CHECK(sl_pg_builtin_type(1007, &t) && t.kind == SL_PG_ARRAY && t.elem_kind == SL_PG_INT);
    CHECK(sl_pg_builtin_type(16, &t) && t.kind == SL_PG_BOOL);
    CHECK(sl_pg_builtin_type(4072, &t) && t.kind == SL_PG_STRING);
    CHECK(!sl_pg_builtin_type(0, &t));
    CHECK(!sl_pg_builtin_type(16384, &t));
    CHECK(sl_pg_kind_from_catalog('e', 'E') == SL_PG_STRING);
    CHECK(sl_pg_kind_from_catalog('b', 'S') == SL_PG_STRING);
    CHECK(sl_pg_kind_from_catalog('b', 'A') == SL_PG_ARRAY);
    CHECK(sl_pg_kind_from_catalog('c', 'C') == SL_PG_UNKNOWN);
}

int main(void)
{
    for (int round = 0; round < 2; round++) { /* twice: no state leaks between runs */
        test_timestamptz();
        test_builtin_table();
        test_values();
    }
    sl_test_lua("connect_failures",
                "local pg = require 'sluice.pg'\n"
                "local c, err = pg.connect{host = '127.0.0.1', port = 1, user = 'x'}\n"
                "assert(c == nil and err == 'connection refused', err)\n"
                "c, err = pg.connect{host = '/nonexistent-dir', port = 5432, user = 'x'}\n"
                "assert(c == nil and err:find('no such file or directory', 1, true), err)\n"
                "assert(not pcall(pg.connect, {port = {}}))\n"
                "assert(not pcall(pg.connect, {ssl_mode = 'sometimes'}))\n"
                "assert(not pcall(pg.connect, {connect_timeout = -1}))\n"
                "assert(pg.escape_identifier('a\"b') == '\"a\"\"b\"')\n"
                "assert(pg.client == 'libpq' and pg.client_version >= 150000)\n");
    return sl_test_done("pg_test");
}
