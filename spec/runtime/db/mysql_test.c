/* sluice.mysql in C: the value mapping checked value by value with
 * hand-made field descriptions (no server), then the driver against a real
 * MariaDB (spec/fixtures/servers/mariadb.sh) with the process in
 * TZ=Europe/Berlin, including the paths only C sees: a VM torn down with a
 * query in flight and a cursor open. */
#include "harness.h"
#include "db/mysql.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <time.h>

static MYSQL_FIELD field(enum enum_field_types type, unsigned flags, unsigned charsetnr,
                         unsigned long length, unsigned decimals)
{
    MYSQL_FIELD f;
    memset(&f, 0, sizeof f);
    f.name = "col";
    f.name_length = 3;
    f.type = type;
    f.flags = flags;
    f.charsetnr = charsetnr;
    f.length = length;
    f.decimals = decimals;
    return f;
}

/* Classifies f, maps text s through it, and returns the result as a
 * comparable string: "nil", "n:<%.17g>", "s:<bytes>", "t:<json>". */
static const char *map(lua_State *L, MYSQL_FIELD f, const char *s, size_t len, int *warned)
{
    static char out[512];
    sl_my_col col;
    char warn[160] = "";
    sl_my_col_classify(&f, &col);
    int w = sl_my_push_text(L, &col, s, len, warn, sizeof warn);
    if (warned)
        *warned = w;
    switch (lua_type(L, -1)) {
    case LUA_TNIL: snprintf(out, sizeof out, "nil"); break;
    case LUA_TNUMBER: snprintf(out, sizeof out, "n:%.17g", lua_tonumber(L, -1)); break;
    case LUA_TSTRING: snprintf(out, sizeof out, "s:%s", lua_tostring(L, -1)); break;
    case LUA_TTABLE:
        lua_rawgeti(L, -1, 1);
        snprintf(out, sizeof out, "t:%s", lua_isnumber(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        break;
    default: snprintf(out, sizeof out, "?"); break;
    }
    lua_pop(L, 1);
    return out;
}

#define MAP(f, s) map(L, f, s, strlen(s), NULL)

static void test_classify(void)
{
    struct {
        MYSQL_FIELD f;
        const char *type;
        sl_my_kind kind;
        int unmapped;
    } cases[] = {
        {field(MYSQL_TYPE_TINY, 0, 63, 4, 0), "tinyint", SL_MY_INT, 0},
        {field(MYSQL_TYPE_LONGLONG, UNSIGNED_FLAG, 63, 20, 0), "bigint unsigned", SL_MY_INT, 0},
        {field(MYSQL_TYPE_INT24, 0, 63, 9, 0), "mediumint", SL_MY_INT, 0},
        {field(MYSQL_TYPE_YEAR, UNSIGNED_FLAG, 63, 4, 0), "year", SL_MY_INT, 0},
        {field(MYSQL_TYPE_NEWDECIMAL, 0, 63, 32, 10), "decimal", SL_MY_DECIMAL, 0},
        {field(MYSQL_TYPE_STRING, ENUM_FLAG, 45, 4, 0), "enum", SL_MY_TEXT, 0},
        {field(MYSQL_TYPE_STRING, SET_FLAG, 45, 4, 0), "set", SL_MY_TEXT, 0},
        {field(MYSQL_TYPE_STRING, 0, 63, 4, 0), "binary", SL_MY_BINARY, 0},
        {field(MYSQL_TYPE_VAR_STRING, 0, 45, 400, 0), "varchar", SL_MY_TEXT, 0},
        {field(MYSQL_TYPE_BLOB, 0, 45, 65535, 0), "text", SL_MY_TEXT, 0},
        {field(MYSQL_TYPE_BLOB, 0, 63, 65535, 0), "blob", SL_MY_BINARY, 0},
        {field(MYSQL_TYPE_JSON, 0, 45, 0, 0), "json", SL_MY_JSON, 0},
        {field(MYSQL_TYPE_GEOMETRY, 0, 63, 0, 0), "geometry", SL_MY_OTHER, 1},
        {field((enum enum_field_types)200, 0, 45, 0, 0), "unknown(200)", SL_MY_OTHER, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_my_col col;
        int unmapped = sl_my_col_classify(&cases[i].f, &col);
        CHECK_STR(col.type, cases[i].type);
        CHECK(col.kind == cases[i].kind);
        CHECK(unmapped == cases[i].unmapped);
    }
}

static void test_values(lua_State *L)
{
    MYSQL_FIELD i64 = field(MYSQL_TYPE_LONGLONG, 0, 63, 20, 0);
    MYSQL_FIELD u64 = field(MYSQL_TYPE_LONGLONG, UNSIGNED_FLAG, 63, 20, 0);
    CHECK_STR(MAP(i64, "9007199254740992"), "n:9007199254740992");
    CHECK_STR(MAP(i64, "-9007199254740992"), "n:-9007199254740992");
    CHECK_STR(MAP(i64, "9007199254740993"), "s:9007199254740993");
    CHECK_STR(MAP(i64, "-9223372036854775808"), "s:-9223372036854775808");
    CHECK_STR(MAP(u64, "18446744073709551615"), "s:18446744073709551615");
    CHECK_STR(MAP(u64, "0"), "n:0");
    int warned = 0;
    CHECK_STR(map(L, i64, "12x", 3, &warned), "s:12x");
    CHECK(warned == 1);

    MYSQL_FIELD dec = field(MYSQL_TYPE_NEWDECIMAL, 0, 63, 67, 30);
    CHECK_STR(MAP(dec, "-0.000000000000000000000000000001"), "s:-0.000000000000000000000000000001");
    MYSQL_FIELD dbl = field(MYSQL_TYPE_DOUBLE, 0, 63, 22, 31);
    CHECK_STR(MAP(dbl, "0.1"), "n:0.10000000000000001");
    CHECK_STR(MAP(dbl, "5e-324"), "n:4.9406564584124654e-324");

    /* BIT: big-endian bytes; a number up to 53 bits, base64 above */
    MYSQL_FIELD bit8 = field(MYSQL_TYPE_BIT, UNSIGNED_FLAG, 63, 8, 0);
    MYSQL_FIELD bit53 = field(MYSQL_TYPE_BIT, UNSIGNED_FLAG, 63, 53, 0);
    MYSQL_FIELD bit64 = field(MYSQL_TYPE_BIT, UNSIGNED_FLAG, 63, 64, 0);
    CHECK_STR(map(L, bit8, "\xa5", 1, NULL), "n:165");
    CHECK_STR(map(L, bit53, "\x1f\xff\xff\xff\xff\xff\xff", 7, NULL), "n:9007199254740991");
    CHECK_STR(map(L, bit64, "\xff\0\0\0\0\0\0\x01", 8, NULL), "s:/wAAAAAAAAE=");

    /* bytes: base64, NUL bytes included; text: as is */
    MYSQL_FIELD blob = field(MYSQL_TYPE_BLOB, 0, 63, 65535, 0);
    MYSQL_FIELD text = field(MYSQL_TYPE_VAR_STRING, 0, 45, 400, 0);
    CHECK_STR(map(L, blob, "\0\xff\x10", 3, NULL), "s:AP8Q");
    CHECK_STR(map(L, blob, "", 0, NULL), "s:");
    CHECK_STR(MAP(text, "h\xc3\xa9llo \xf0\x9f\x98\x80"), "s:h\xc3\xa9llo \xf0\x9f\x98\x80");
    CHECK_STR(map(L, text, NULL, 0, NULL), "nil");

    /* a long blob goes through the heap buffer and stays one base64 text */
    size_t n = 3000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i += 3) { /* 111110 111110 111110 111110: "++++" */
        big[i] = (char)0xfb;
        big[i + 1] = (char)0xef;
        big[i + 2] = (char)0xbe;
    }
    sl_my_col col;
    char warn[160];
    sl_my_col_classify(&blob, &col);
    sl_my_push_text(L, &col, big, n, warn, sizeof warn);
    size_t blen;
    const char *b64 = lua_tolstring(L, -1, &blen);
    CHECK(blen == 4000);
    CHECK(b64 && strspn(b64, "+") == 4000);
    lua_pop(L, 1);
    free(big);

    MYSQL_FIELD js = field(MYSQL_TYPE_JSON, 0, 45, 0, 0);
    CHECK_STR(MAP(js, "[7, {\"a\": null}]"), "t:7");
    CHECK_STR(map(L, js, "{bad", 4, &warned), "s:{bad");
    CHECK(warned == 1);
}

static void test_times(lua_State *L)
{
    MYSQL_FIELD date = field(MYSQL_TYPE_DATE, 0, 63, 10, 0);
    MYSQL_FIELD dt0 = field(MYSQL_TYPE_DATETIME, 0, 63, 19, 0);
    MYSQL_FIELD dt6 = field(MYSQL_TYPE_DATETIME, 0, 63, 26, 6);
    MYSQL_FIELD ts3 = field(MYSQL_TYPE_TIMESTAMP, 0, 63, 23, 3);
    MYSQL_FIELD tm = field(MYSQL_TYPE_TIME, 0, 63, 10, 0);
    MYSQL_FIELD tm1 = field(MYSQL_TYPE_TIME, 0, 63, 12, 1);
    int warned = 0;

    CHECK_STR(MAP(date, "2024-02-29"), "s:2024-02-29");
    CHECK_STR(MAP(date, "0000-00-00"), "nil");
    CHECK_STR(MAP(date, "2024-00-10"), "nil");
    CHECK_STR(MAP(date, "0000-01-01"), "s:0000-01-01");
    CHECK_STR(MAP(dt0, "1999-12-31 23:59:59"), "s:1999-12-31T23:59:59");
    CHECK_STR(MAP(dt0, "0000-00-00 00:00:00"), "nil");
    CHECK_STR(MAP(dt6, "2024-01-02 03:04:05.000001"), "s:2024-01-02T03:04:05.000001");
    CHECK_STR(MAP(ts3, "2024-06-01 12:00:00.500"), "s:2024-06-01T12:00:00.500Z");
    CHECK_STR(MAP(tm, "838:59:59"), "s:838:59:59");
    CHECK_STR(MAP(tm, "-838:59:59"), "s:-838:59:59");
    CHECK_STR(MAP(tm, "00:00:00"), "s:00:00:00");
    CHECK_STR(MAP(tm1, "-00:00:00.5"), "s:-00:00:00.5");
    CHECK_STR(map(L, dt0, "2024-01-02T03:04:05", 19, &warned), "s:2024-01-02T03:04:05");
    CHECK(warned == 1);

    /* the binary protocol's MYSQL_TIME gives the same text */
    sl_my_col col;
    MYSQL_TIME t;
    memset(&t, 0, sizeof t);
    t.year = 2024;
    t.month = 6;
    t.day = 1;
    t.hour = 12;
    t.second_part = 500000;
    sl_my_col_classify(&ts3, &col);
    sl_my_push_time(L, &col, &t);
    CHECK_STR(lua_tostring(L, -1), "2024-06-01T12:00:00.500Z");
    lua_pop(L, 1);
    memset(&t, 0, sizeof t);
    t.day = 34;
    t.hour = 22;
    t.minute = 59;
    t.second = 59;
    t.neg = 1;
    sl_my_col_classify(&tm, &col);
    sl_my_push_time(L, &col, &t);
    CHECK_STR(lua_tostring(L, -1), "-838:59:59");
    lua_pop(L, 1);
    memset(&t, 0, sizeof t);
    sl_my_col_classify(&dt0, &col);
    sl_my_push_time(L, &col, &t);
    CHECK(lua_isnil(L, -1));
    lua_pop(L, 1);

    /* FLOAT: the binary protocol's bits printed as the server prints them */
    MYSQL_FIELD fl = field(MYSQL_TYPE_FLOAT, 0, 63, 12, 31);
    MYSQL_FIELD fl3 = field(MYSQL_TYPE_FLOAT, 0, 63, 7, 3);
    float vals[] = {1.1f, 3.1415927f, 16777217.0f, 1e-40f, -3.4e38f};
    const char *texts[] = {"1.1", "3.14159", "16777200", "9.99995e-41", "-3.4e38"};
    sl_my_col_classify(&fl, &col);
    for (int i = 0; i < 5; i++) {
        char expect[64];
        sl_my_push_float(L, &col, vals[i]);
        CHECK(lua_tonumber(L, -1) == strtod(texts[i], NULL));
        snprintf(expect, sizeof expect, "n:%.17g", lua_tonumber(L, -1));
        lua_pop(L, 1);
        CHECK_STR(MAP(fl, texts[i]), expect);
    }
    sl_my_col_classify(&fl3, &col);
    sl_my_push_float(L, &col, 1234.5678f);
    CHECK(lua_tonumber(L, -1) == 1234.568);
    lua_pop(L, 1);
}

/* The driver against a real server; NULL when none can start. */
static char server_opts[512];

static char server_base[300];

static int start_server(int *pid)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "PATH=$PATH:/usr/sbin sh '%s/spec/fixtures/servers/mariadb.sh'",
             src ? src : ".");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int port = 0;
    char datadir[300] = "";
    int got = fscanf(p, "%d %d %299s", &port, pid, datadir);
    pclose(p);
    if (got != 3 || strlen(datadir) < 6)
        return -1;
    snprintf(server_base, sizeof server_base, "%.*s", (int)(strlen(datadir) - 5), datadir);
    snprintf(server_opts, sizeof server_opts,
             "local opts = {host='127.0.0.1', port=%d, user='sluice', password=\"sluice-Pw'1\", "
             "database='sluice_test'}\n",
             port);
    return 0;
}

static void run_with_server(const char *name, const char *body)
{
    char chunk[8192];
    snprintf(chunk, sizeof chunk, "%slocal mysql = require 'sluice.mysql'\n"
                                  "local task = require 'sluice.task'\n%s",
             server_opts, body);
    for (int run = 0; run < 2; run++) /* twice: state must not leak between runs */
        sl_test_lua(name, chunk);
}

static void test_server(void)
{
    run_with_server("timestamps_in_utc",
                    "local c = assert(mysql.connect(opts))\n"
                    "assert(c:query('CREATE TABLE IF NOT EXISTS tz (id INT PRIMARY KEY, ts TIMESTAMP NULL, dt DATETIME)'))\n"
                    "assert(c:query('DELETE FROM tz'))\n"
                    "assert(c:query(\"SET time_zone = '+01:00'\"))\n"
                    "assert(c:query(\"INSERT INTO tz VALUES (1, '2024-03-31 02:30:00', '2024-03-31 02:30:00')\"))\n"
                    "assert(c:query(\"SET time_zone = '+00:00'\"))\n"
                    "for _, r in ipairs({c:query('SELECT ts, dt FROM tz'), c:query('SELECT ts, dt FROM tz WHERE id = ?', 1)}) do\n"
                    "  assert(r.rows[1][1] == '2024-03-31T01:30:00Z', r.rows[1][1])\n"
                    "  assert(r.rows[1][2] == '2024-03-31T02:30:00', r.rows[1][2])\n"
                    "end\n"
                    "assert(os.date('%Z', 1711848600) == 'CEST')\n" /* the process really is in Berlin */
                    "c:close()\n");
    run_with_server("many_connections",
                    "local ts = {}\n"
                    "for i = 1, 20 do ts[i] = task.spawn(function()\n"
                    "  local c = assert(mysql.connect(opts))\n"
                    "  local r = assert(c:query('SELECT ? * 2, SLEEP(0.05)', i))\n"
                    "  c:close(); return r.rows[1][1] end) end\n"
                    "for i = 1, 20 do local ok, v = ts[i]:join(); assert(ok and v == i * 2, tostring(v)) end\n");
    /* the VM goes away with cursors open (the connection may be finalised
     * before its cursors): every handle and buffer must be released without
     * touching freed memory */
    run_with_server("teardown_with_cursors",
                    "local d = assert(mysql.connect(opts))\n"
                    "local e = assert(mysql.connect(opts))\n"
                    "local cur = assert(d:cursor('SELECT seq FROM seq_1_to_100000', nil, {fetch_size = 10}))\n"
                    "assert(#cur:fetch() == 10)\n"
                    "local cur2 = assert(e:cursor('SELECT seq FROM seq_1_to_100000 WHERE seq > ?', {5}))\n"
                    "assert(cur2:fetch()[1][1] == 6)\n"
                    "_G.keep = {cur, cur2}\n");
    run_with_server("cancel_then_reconnect",
                    "local c = assert(mysql.connect(opts))\n"
                    "local t = task.spawn(function() return c:query('SELECT SLEEP(3), ?', 1) end)\n"
                    "task.yield()\n"
                    "t:cancel()\n"
                    "local r, err = c:query('SELECT 1')\n"
                    "assert(r == nil and err == 'connection lost', err)\n"
                    "assert(c:close())\n"
                    "c = assert(mysql.connect(opts))\n"
                    "assert(c:query('SELECT 1').rows[1][1] == 1)\n");
}

int main(void)
{
    lua_State *L = luaL_newstate();
    test_classify();
    for (int run = 0; run < 2; run++) {
        test_values(L);
        test_times(L);
    }
    CHECK(lua_gettop(L) == 0);
    lua_close(L);

    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    int pid = 0;
    if (start_server(&pid) == 0) {
        char cmd[800];
        test_server();
        snprintf(cmd, sizeof cmd,
                 "kill %d; for i in $(seq 1 100); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; "
                 "case '%s' in /tmp/sluice-mariadb.*) rm -rf '%s';; esac",
                 pid, pid, server_base, server_base);
        if (system(cmd) != 0)
            fprintf(stderr, "mysql: could not stop the server\n");
    } else {
        printf("mysql: SKIPPED the server tests: no MariaDB could start\n");
    }
    return sl_test_done("mysql");
}
