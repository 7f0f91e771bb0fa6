/* The YAML decoder: core-schema scalars, tags, anchors, aliases and merge
 * keys, key positions, and exact error messages with line and column for
 * malformed and hostile input (tabs, unterminated quotes, duplicate keys,
 * several documents, deep nesting, alias bombs). Values are compared as
 * canonical JSON. Each case runs twice. */
#include "harness.h"
#include "codec/json.h"

#include <lualib.h>
#include <stdlib.h>

int luaopen_sluice_yaml(lua_State *L);
int luaopen_sluice_json(lua_State *L);

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_sluice_yaml);
    lua_call(L, 0, 1);
    lua_setglobal(L, "yaml");
    lua_pushcfunction(L, luaopen_sluice_json);
    lua_call(L, 0, 1);
    lua_setglobal(L, "json");
    return L;
}

/* yaml.decode(text) as canonical JSON, or "ERR:<message>"; leaves the
 * positions table in the global P. */
static char *ydec(lua_State *L, const char *text, size_t n, const char *opts)
{
    char *out;
    int top = lua_gettop(L);
    lua_getglobal(L, "yaml");
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, text, n);
    if (opts) {
        char chunk[256];
        snprintf(chunk, sizeof chunk, "return %s", opts);
        luaL_dostring(L, chunk);
    }
    lua_call(L, opts ? 2 : 1, 2);
    if (lua_isnil(L, -2)) {
        const char *err = lua_tostring(L, -1);
        out = malloc(strlen(err) + 5);
        sprintf(out, "ERR:%s", err);
    } else {
        lua_pushvalue(L, -1);
        lua_setglobal(L, "P");
        sl_json_buf b = {0};
        const char *err = NULL;
        if (sl_json_encode(L, -2, SL_JSON_CANONICAL, &b, &err) == 0) {
            out = malloc(b.len + 1);
            memcpy(out, b.ptr, b.len);
            out[b.len] = 0;
        } else {
            out = strdup(err);
        }
        sl_json_buf_free(&b);
    }
    lua_settop(L, top);
    return out;
}

#define Y(text, want)                                   \
    do {                                                \
        char *got_ = ydec(L, text, strlen(text), NULL); \
        CHECK_STR(got_, want);                          \
        free(got_);                                     \
    } while (0)

/* Evaluates a Lua expression as a string. */
static char *eval(lua_State *L, const char *expr)
{
    char chunk[1024];
    snprintf(chunk, sizeof chunk, "return tostring(%s)", expr);
    if (luaL_dostring(L, chunk) != 0) {
        char *e = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return e;
    }
    char *out = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

#define EVAL(expr, want)            \
    do {                            \
        char *got_ = eval(L, expr); \
        CHECK_STR(got_, want);      \
        free(got_);                 \
    } while (0)

static void test_scalars(lua_State *L)
{
    Y("a: 1\nb: -2\nc: +3\nd: 0x1F\ne: 0o17\nf: 007\n",
      "{\"a\":1,\"b\":-2,\"c\":3,\"d\":31,\"e\":15,\"f\":7}");
    Y("a: 1.5\nb: -.5\nc: 1e3\nd: 2.\ne: 1_000\nf: 0x\ng: 0o8\nh: .\n",
      "{\"a\":1.5,\"b\":-0.5,\"c\":1000,\"d\":2,\"e\":\"1_000\",\"f\":\"0x\",\"g\":\"0o8\","
      "\"h\":\".\"}");
    Y("[true, True, TRUE, false, False, FALSE, yes, no, on, off, tRue]",
      "[true,true,true,false,false,false,\"yes\",\"no\",\"on\",\"off\",\"tRue\"]");
    Y("- null\n- Null\n- NULL\n- ~\n-\n- nULL\n", "[null,null,null,null,null,\"nULL\"]");
    Y("a:\nb: ~\nc: 'null'\nd: \"1\"\ne: !!str 12\nf: !!str true\ng: ! 12\n",
      "{\"a\":null,\"b\":null,\"c\":\"null\",\"d\":\"1\",\"e\":\"12\",\"f\":\"true\","
      "\"g\":\"12\"}");
    Y("a: !!int 12\nb: !!float 3\nc: !!bool false\nd: !!null ''\n",
      "{\"a\":12,\"b\":3,\"c\":false,\"d\":null}");
    Y("a: !!int x", "ERR:line 1, column 4: value does not match tag !!int");
    Y("a: !custom x", "ERR:line 1, column 4: unsupported tag !custom");
    Y("a: !!set {x}", "ERR:line 1, column 4: unsupported tag tag:yaml.org,2002:set");
    Y("s: |\n  line1\n  line2\nf: >\n  a\n  b\n", "{\"f\":\"a b\\n\",\"s\":\"line1\\nline2\\n\"}");
    Y("a: \"\\u00e9\\t\"", "{\"a\":\"\xc3\xa9\\t\"}");
    Y("a: 12345678901234567", "{\"a\":12345678901234568}");
    /* non-finite floats: checked in Lua, JSON cannot hold them */
    EVAL("yaml.decode('[.inf, -.Inf, +.INF]')[2]", "-inf");
    EVAL("(function() local v = yaml.decode('.nan'); return v ~= v end)()", "true");
    EVAL("yaml.decode('1e999')", "inf");
}

static void test_structure(lua_State *L)
{
    Y("", "null");
    Y("# only a comment\n", "null");
    Y("---\n...\n", "null");
    Y("plain", "\"plain\"");
    Y("[]", "[]");
    Y("{}", "{}");
    Y("a: []\nb: {}\nc: [[], {}]", "{\"a\":[],\"b\":{},\"c\":[[],{}]}");
    Y("- a\n- - b\n  - c\n- d: e\n", "[\"a\",[\"b\",\"c\"],{\"d\":\"e\"}]");
    /* keys are strings, as written */
    Y("1: a\n0x10: b\ntrue: c\n~: d\n\"q\": e\n",
      "{\"0x10\":\"b\",\"1\":\"a\",\"q\":\"e\",\"true\":\"c\",\"~\":\"d\"}");
    EVAL("json.is_array(yaml.decode('[1]')) and getmetatable(yaml.decode('[]')) == json.array_mt",
         "true");
    EVAL("yaml.decode('a:').a == json.null and yaml.null == json.null", "true");
    EVAL("getmetatable(yaml.decode('{}'))", "nil");
}

static void test_anchors(lua_State *L)
{
    Y("a: &x {k: [1, 2]}\nb: *x\n", "{\"a\":{\"k\":[1,2]},\"b\":{\"k\":[1,2]}}");
    Y("a: &s hello\nb: [*s, *s]\n", "{\"a\":\"hello\",\"b\":[\"hello\",\"hello\"]}");
    /* a copy, not the same table */
    EVAL("(function() local v = yaml.decode('a: &x {k: 1}\\nb: *x'); v.b.k = 2; return v.a.k end)()",
         "1");
    /* the array metatable survives the copy */
    EVAL("getmetatable(yaml.decode('a: &x [1]\\nb: *x').b) == json.array_mt", "true");
    Y("a: *nope", "ERR:line 1, column 4: unknown anchor \"nope\"");
    Y("a: &x [*x]", "ERR:line 1, column 8: unknown anchor \"x\"");
    /* merge keys: explicit keys win wherever they are; earlier sources win */
    Y("base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\n"
      "m: {x: 0, <<: [*b, *o]}\n"
      "n:\n  <<: *b\n  y: 9\n"
      "p: {<<: {q: 1}}\n",
      "{\"base\":{\"x\":1,\"y\":2},\"m\":{\"x\":0,\"y\":2,\"z\":4},\"n\":{\"x\":1,\"y\":9},"
      "\"other\":{\"y\":3,\"z\":4},\"p\":{\"q\":1}}");
    Y("a: {<<: 1}", "ERR:line 1, column 9: merge value must be a mapping or a list of mappings");
    Y("a: {<<: [1]}",
      "ERR:line 1, column 9: merge value must be a mapping or a list of mappings");
    Y("b: &b {x: 1}\na: {<<: *b, <<: *b}", "ERR:line 2, column 13: duplicate key \"<<\"");
    /* a quoted << is an ordinary key */
    Y("a: {'<<': 1}", "{\"a\":{\"<<\":1}}");
    /* merged sub-tables are copies too */
    EVAL("(function() local v = yaml.decode('b: &b {t: {k: 1}}\\nm: {<<: *b}'); v.m.t.k = 2; "
         "return v.b.t.k end)()",
         "1");
}

static void check_pos(lua_State *L, const char *path, const char *want, int line)
{
    char expr[256];
    snprintf(expr, sizeof expr, "P['%s'] and (P['%s'].line .. ':' .. P['%s'].column)", path, path,
             path);
    char *got = eval(L, expr);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "line %d: position of '%s': expected %s, got %s\n", line, path, want, got);
        sl_test_failures++;
    }
    free(got);
}

#define POS(path, want) check_pos(L, path, want, __LINE__)

static void test_positions(lua_State *L)
{
    const char *doc = "# sluice.yml\n"
                      "defaults: &d\n"
                      "  timeout: 30\n"
                      "connectors:\n"
                      "  - service_type: filesystem\n"
                      "    configuration:\n"
                      "      path:  /srv/docs\n"
                      "      deep: {a: [x, {b: 1}]}\n"
                      "  - <<: *d\n"
                      "    name: two\n"
                      "    copy: *d\n";
    char *got = ydec(L, doc, strlen(doc), NULL);
    CHECK(got && got[0] == '{');
    free(got);
    POS("", "2:1");
    POS("defaults", "2:1");
    POS("defaults.timeout", "3:3");
    POS("connectors", "4:1");
    POS("connectors[1]", "5:5");
    POS("connectors[1].service_type", "5:5");
    POS("connectors[1].configuration", "6:5");
    POS("connectors[1].configuration.path", "7:7");
    POS("connectors[1].configuration.deep", "8:7");
    POS("connectors[1].configuration.deep.a", "8:14");
    POS("connectors[1].configuration.deep.a[1]", "8:18");
    POS("connectors[1].configuration.deep.a[2]", "8:21");
    POS("connectors[1].configuration.deep.a[2].b", "8:22");
    POS("connectors[2]", "9:5");
    POS("connectors[2].name", "10:5");
    POS("connectors[2].timeout", "9:5");     /* merged: at the << key */
    POS("connectors[2].copy", "11:5");
    POS("connectors[2].copy.timeout", "11:11"); /* copied: at the alias */
    POS("connectors[3]", "nil");
    EVAL("P['connectors[2].<<']", "nil");
}

static void test_errors(lua_State *L)
{
    Y("a: 1\nb: 2\na: 3\n", "ERR:line 3, column 1: duplicate key \"a\" (first at line 1)");
    Y("x:\n  k: 1\n  k: 2\n", "ERR:line 3, column 3: duplicate key \"k\" (first at line 2)");
    Y("- {k: 1, k: 2}", "ERR:line 1, column 10: duplicate key \"k\" (first at line 1)");
    Y("a: 'abc\nb: 1\n",
      "ERR:line 3, column 1: found unexpected end of stream (while scanning a quoted scalar at "
      "line 1, column 4)");
    Y("a: \"abc", "ERR:line 1, column 8: found unexpected end of stream (while scanning a quoted "
              "scalar at line 1, column 4)");
    Y("a:\n\tb: 1\n", "ERR:line 2, column 1: found character that cannot start any token (while "
                     "scanning for the next token at line 2, column 1)");
    Y("a: [1, 2\n", "ERR:line 2, column 1: did not find expected ',' or ']' (while parsing a flow "
                    "sequence at line 1, column 4)");
    Y("a: b: c\n", "ERR:line 1, column 5: mapping values are not allowed in this context");
    Y("a: 1\n---\nb: 2\n", "ERR:line 2, column 1: more than one document");
    Y("? [a]\n: 1\n", "ERR:line 1, column 3: mapping keys must be scalars");
    Y("? {a: 1}\n: 1\n", "ERR:line 1, column 3: mapping keys must be scalars");
    Y("a: \xff\n", "ERR:line 1, column 4: invalid leading UTF-8 octet");
    Y("a: b\x01\n", "ERR:line 1, column 5: control characters are not allowed");
}

static void test_hostile(lua_State *L)
{
    /* deep flow nesting: an error, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    char *got = ydec(L, deep, n, NULL);
    CHECK_STR(got, "ERR:line 1, column 1001: nesting too deep");
    free(got);
    free(deep);
    got = ydec(L, "[[[[1]]]]", 9, "{max_depth = 3}");
    CHECK_STR(got, "ERR:line 1, column 4: nesting too deep");
    free(got);
    got = ydec(L, "[[[1]]]", 7, "{max_depth = 3}");
    CHECK_STR(got, "[[[1]]]");
    free(got);

    /* billion laughs: nine levels of ten aliases */
    char bomb[4096];
    size_t len = (size_t)snprintf(bomb, sizeof bomb,
                                  "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
                                  "\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (char c = 'b'; c <= 'i'; c++) {
        len += (size_t)snprintf(bomb + len, sizeof bomb - len, "%c: &%c [", c, c);
        for (int i = 0; i < 10; i++)
            len += (size_t)snprintf(bomb + len, sizeof bomb - len, "%s*%c", i ? "," : "", c - 1);
        len += (size_t)snprintf(bomb + len, sizeof bomb - len, "]\n");
    }
    got = ydec(L, bomb, len, NULL);
    CHECK(got && strstr(got, "ERR:line ") == got &&
          strstr(got, "too many nodes (more than 1000000, counting alias copies)"));
    free(got);
    got = ydec(L, "a: &a [1, 2, 3]\nb: [*a, *a]\n", 27, "{max_nodes = 12}");
    CHECK_STR(got, "ERR:line 2, column 9: too many nodes (more than 12, counting alias copies)");
    free(got);
    got = ydec(L, "a: &a [1, 2, 3]\nb: [*a, *a]\n", 27, "{max_nodes = 16}");
    CHECK_STR(got, "{\"a\":[1,2,3],\"b\":[[1,2,3],[1,2,3]]}");
    free(got);
}

int main(void)
{
    for (int run = 0; run < 2; run++) {
        lua_State *L = new_state();
        int top = lua_gettop(L);
        test_scalars(L);
        test_structure(L);
        test_anchors(L);
        test_positions(L);
        test_errors(L);
        test_hostile(L);
        CHECK(lua_gettop(L) == top);
        lua_close(L);
    }
    return sl_test_done("yaml");
}
