/*
 * PostgreSQL text-format values to Lua values (see pg_types.h).
 *
 * The session runs with DateStyle ISO, IntervalStyle iso_8601, TimeZone UTC,
 * bytea_output hex and extra_float_digits 1 (set by pg.c on connect), so each
 * type has one text form to parse. Timestamps with time zone are still
 * normalised to UTC here from whatever offset the server printed: a query
 * that runs SET TimeZone must not change the documents.
 *
 * Nothing here rounds: integers beyond 2^53 and numerics stay decimal
 * strings; floats are parsed from the shortest exact text the server sends.
 */
#include "pg_types.h"
#include "rowdoc.h"

#include "codec/json.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct builtin {
    unsigned oid;
    const char *name;
    int kind, elem;
} builtin;

/* OIDs from PostgreSQL's pg_type.dat; they never change between versions. */
static const builtin BUILTINS[] = {
    {16, "bool", SL_PG_BOOL, 0},
    {17, "bytea", SL_PG_BYTEA, 0},
    {18, "char", SL_PG_STRING, 0},
    {19, "name", SL_PG_STRING, 0},
    {20, "int8", SL_PG_INT8, 0},
    {21, "int2", SL_PG_INT, 0},
    {23, "int4", SL_PG_INT, 0},
    {24, "regproc", SL_PG_STRING, 0},
    {25, "text", SL_PG_STRING, 0},
    {26, "oid", SL_PG_INT, 0},
    {28, "xid", SL_PG_STRING, 0},
    {29, "cid", SL_PG_STRING, 0},
    {114, "json", SL_PG_JSON, 0},
    {142, "xml", SL_PG_STRING, 0},
    {143, "_xml", SL_PG_ARRAY, SL_PG_STRING},
    {199, "_json", SL_PG_ARRAY, SL_PG_JSON},
    {600, "point", SL_PG_STRING, 0},
    {601, "lseg", SL_PG_STRING, 0},
    {602, "path", SL_PG_STRING, 0},
    {603, "box", SL_PG_STRING, 0},
    {604, "polygon", SL_PG_STRING, 0},
    {628, "line", SL_PG_STRING, 0},
    {650, "cidr", SL_PG_STRING, 0},
    {651, "_cidr", SL_PG_ARRAY, SL_PG_STRING},
    {700, "float4", SL_PG_FLOAT, 0},
    {701, "float8", SL_PG_FLOAT, 0},
    {705, "unknown", SL_PG_STRING, 0},
    {718, "circle", SL_PG_STRING, 0},
    {774, "macaddr8", SL_PG_STRING, 0},
    {790, "money", SL_PG_STRING, 0},
    {791, "_money", SL_PG_ARRAY, SL_PG_STRING},
    {829, "macaddr", SL_PG_STRING, 0},
    {869, "inet", SL_PG_STRING, 0},
    {1000, "_bool", SL_PG_ARRAY, SL_PG_BOOL},
    {1001, "_bytea", SL_PG_ARRAY, SL_PG_BYTEA},
    {1002, "_char", SL_PG_ARRAY, SL_PG_STRING},
    {1003, "_name", SL_PG_ARRAY, SL_PG_STRING},
    {1005, "_int2", SL_PG_ARRAY, SL_PG_INT},
    {1007, "_int4", SL_PG_ARRAY, SL_PG_INT},
    {1009, "_text", SL_PG_ARRAY, SL_PG_STRING},
    {1014, "_bpchar", SL_PG_ARRAY, SL_PG_STRING},
    {1015, "_varchar", SL_PG_ARRAY, SL_PG_STRING},
    {1016, "_int8", SL_PG_ARRAY, SL_PG_INT8},
    {1021, "_float4", SL_PG_ARRAY, SL_PG_FLOAT},
    {1022, "_float8", SL_PG_ARRAY, SL_PG_FLOAT},
    {1028, "_oid", SL_PG_ARRAY, SL_PG_INT},
    {1040, "_macaddr", SL_PG_ARRAY, SL_PG_STRING},
    {1041, "_inet", SL_PG_ARRAY, SL_PG_STRING},
    {1042, "bpchar", SL_PG_STRING, 0},
    {1043, "varchar", SL_PG_STRING, 0},
    {1082, "date", SL_PG_STRING, 0},
    {1083, "time", SL_PG_STRING, 0},
    {1114, "timestamp", SL_PG_TIMESTAMP, 0},
    {1115, "_timestamp", SL_PG_ARRAY, SL_PG_TIMESTAMP},
    {1182, "_date", SL_PG_ARRAY, SL_PG_STRING},
    {1183, "_time", SL_PG_ARRAY, SL_PG_STRING},
    {1184, "timestamptz", SL_PG_TIMESTAMPTZ, 0},
    {1185, "_timestamptz", SL_PG_ARRAY, SL_PG_TIMESTAMPTZ},
    {1186, "interval", SL_PG_STRING, 0},
    {1187, "_interval", SL_PG_ARRAY, SL_PG_STRING},
    {1231, "_numeric", SL_PG_ARRAY, SL_PG_NUMERIC},
    {1266, "timetz", SL_PG_STRING, 0},
    {1270, "_timetz", SL_PG_ARRAY, SL_PG_STRING},
    {1560, "bit", SL_PG_STRING, 0},
    {1561, "_bit", SL_PG_ARRAY, SL_PG_STRING},
    {1562, "varbit", SL_PG_STRING, 0},
    {1563, "_varbit", SL_PG_ARRAY, SL_PG_STRING},
    {1700, "numeric", SL_PG_NUMERIC, 0},
    {1790, "refcursor", SL_PG_STRING, 0},
    {2205, "regclass", SL_PG_STRING, 0},
    {2206, "regtype", SL_PG_STRING, 0},
    {2278, "void", SL_PG_STRING, 0},
    {2950, "uuid", SL_PG_STRING, 0},
    {2951, "_uuid", SL_PG_ARRAY, SL_PG_STRING},
    {3220, "pg_lsn", SL_PG_STRING, 0},
    {3614, "tsvector", SL_PG_STRING, 0},
    {3615, "tsquery", SL_PG_STRING, 0},
    {3802, "jsonb", SL_PG_JSON, 0},
    {3807, "_jsonb", SL_PG_ARRAY, SL_PG_JSON},
    {3904, "int4range", SL_PG_STRING, 0},
    {3906, "numrange", SL_PG_STRING, 0},
    {3908, "tsrange", SL_PG_STRING, 0},
    {3910, "tstzrange", SL_PG_STRING, 0},
    {3912, "daterange", SL_PG_STRING, 0},
    {3926, "int8range", SL_PG_STRING, 0},
    {4072, "jsonpath", SL_PG_STRING, 0},
};

int sl_pg_builtin_type(unsigned oid, sl_pg_type *out)
{
    size_t lo = 0, hi = sizeof BUILTINS / sizeof BUILTINS[0];
    while (lo < hi) { /* the table is sorted by OID */
        size_t mid = (lo + hi) / 2;
        if (BUILTINS[mid].oid == oid) {
            out->oid = oid;
            out->kind = BUILTINS[mid].kind;
            out->elem_kind = BUILTINS[mid].elem;
            snprintf(out->name, sizeof out->name, "%s", BUILTINS[mid].name);
            return 1;
        }
        if (BUILTINS[mid].oid < oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int sl_pg_kind_from_catalog(char typtype, char typcategory)
{
    if (typtype == 'e' || typcategory == 'S' || typcategory == 'E')
        return SL_PG_STRING; /* enums, citext and other string types */
    if (typcategory == 'A')
        return SL_PG_ARRAY;
    return SL_PG_UNKNOWN;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * civil-from-days algorithm, public domain arithmetic). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Reads exactly `digits` digits (at least `digits` when digits < 0: -n means
 * n or more) at *p; returns -1 if absent. */
static int64_t read_num(const char **p, const char *end, int digits)
{
    int64_t v = 0;
    int n = 0, min = digits < 0 ? -digits : digits;
    while (*p < end && **p >= '0' && **p <= '9' && (digits < 0 || n < digits)) {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
        if (n > 9)
            return -1;
    }
    return n >= min ? v : -1;
}

size_t sl_pg_timestamptz_utc(const char *s, size_t n, char *out)
{
    const char *p = s, *end = s + n;
    int64_t y = read_num(&p, end, -4);
    if (y < 0 || p >= end || *p++ != '-')
        return 0;
    int64_t mo = read_num(&p, end, 2);
    if (mo < 1 || mo > 12 || p >= end || *p++ != '-')
        return 0;
    int64_t d = read_num(&p, end, 2);
    if (d < 1 || d > 31 || p >= end || (*p != ' ' && *p != 'T'))
        return 0;
    p++;
    int64_t hh = read_num(&p, end, 2);
    if (hh < 0 || p >= end || *p++ != ':')
        return 0;
    int64_t mi = read_num(&p, end, 2);
    if (mi < 0 || p >= end || *p++ != ':')
        return 0;
    int64_t ss = read_num(&p, end, 2);
    if (ss < 0)
        return 0;
    const char *frac = p;
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t fraclen = (size_t)(p - frac);
    if (fraclen > 10 || p >= end || (*p != '+' && *p != '-'))
        return 0;
    int sign = *p++ == '-' ? -1 : 1;
    int64_t oh = read_num(&p, end, 2), om = 0, os = 0;
    if (oh < 0)
        return 0;
    if (p < end && *p == ':') {
        p++;
        if ((om = read_num(&p, end, 2)) < 0)
            return 0;
        if (p < end && *p == ':') {
            p++;
            if ((os = read_num(&p, end, 2)) < 0)
                return 0;
        }
    }
    if (p != end) /* " BC" and anything else we do not understand */
        return 0;
    int64_t secs = days_from_civil(y, (int)mo, (int)d) * 86400 + hh * 3600 + mi * 60 + ss;
    secs -= sign * (oh * 3600 + om * 60 + os);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t oy;
    int om2, od;
    civil_from_days(days, &oy, &om2, &od);
    if (oy < 0 || oy > 999999)
        return 0;
    /* By hand, not snprintf: this runs once per timestamptz value, and
     * snprintf was most of its cost. Same text as "%04lld-%02d-%02dT%02d:%02d:%02d". */
    int len = 0;
    char ydig[8];
    int yn = 0;
    for (int64_t v = oy; v > 0 || yn < 4; v /= 10)
        ydig[yn++] = (char)('0' + v % 10);
    while (yn > 0)
        out[len++] = ydig[--yn];
    int fields[5] = { om2, od, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60) };
    static const char seps[5] = { '-', '-', 'T', ':', ':' };
    for (int i = 0; i < 5; i++) {
        out[len++] = seps[i];
        out[len++] = (char)('0' + fields[i] / 10);
        out[len++] = (char)('0' + fields[i] % 10);
    }
    memcpy(out + len, frac, fraclen);
    out[len + fraclen] = 'Z';
    return (size_t)len + fraclen + 1;
}

static void push_bytea(lua_State *L, const char *s, size_t n)
{
    /* PQunescapeBytea wants a NUL-terminated string */
    char *z = malloc(n + 1);
    if (!z) {
        luaL_error(L, "out of memory");
        return;
    }
    memcpy(z, s, n);
    z[n] = 0;
    size_t len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)z, &len);
    free(z);
    if (!raw) {
        lua_pushlstring(L, s, n);
        return;
    }
    size_t outlen = 4 * ((len + 2) / 3) + 1;
    unsigned char *b64 = malloc(outlen);
    if (!b64) {
        PQfreemem(raw);
        luaL_error(L, "out of memory");
        return;
    }
    int w = EVP_EncodeBlock(b64, raw, (int)len);
    lua_pushlstring(L, (const char *)b64, (size_t)w);
    free(b64);
    PQfreemem(raw);
}

/* A quoted array element is unescaped into a growable buffer. */
typedef struct abuf {
    char *p;
    size_t len, cap;
} abuf;

static int abuf_put(abuf *b, char ch)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *np = realloc(b->p, cap);
        if (!np)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    b->p[b->len++] = ch;
    return 0;
}

/* Parses one array level at *p ('{' ... '}'), pushing a table; returns 0, or
 * -1 (nothing pushed) when the text is not an array literal. */
static int parse_array(lua_State *L, const char **pp, const char *end, int elem, abuf *b,
                       int depth)
{
    const char *p = *pp;
    if (depth > 8 || p >= end || *p != '{' || !lua_checkstack(L, 4))
        return -1;
    p++;
    int top = lua_gettop(L);
    lua_newtable(L);
    sl_json_push_array_mt(L);
    lua_setmetatable(L, -2);
    int i = 0;
    while (p < end && *p == ' ')
        p++;
    if (p < end && *p == '}') {
        *pp = p + 1;
        return 0;
    }
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            goto bad;
        if (*p == '{') {
            if (parse_array(L, &p, end, elem, b, depth + 1) != 0)
                goto bad;
        } else if (*p == '"') {
            b->len = 0;
            p++;
            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end)
                    p++;
                if (abuf_put(b, *p++) != 0)
                    goto bad;
            }
            if (p >= end)
                goto bad;
            p++;
            sl_pg_push_value(L, elem, 0, b->p ? b->p : "", b->len);
        } else {
            const char *start = p;
            while (p < end && *p != ',' && *p != '}')
                p++;
            const char *stop = p;
            while (stop > start && stop[-1] == ' ')
                stop--;
            if (stop == start) /* PostgreSQL quotes empty strings */
                goto bad;
            if (stop - start == 4 && strncasecmp(start, "NULL", 4) == 0)
                lua_pushlightuserdata(L, NULL); /* json.null */
            else
                sl_pg_push_value(L, elem, 0, start, (size_t)(stop - start));
        }
        lua_rawseti(L, -2, ++i);
        while (p < end && *p == ' ')
            p++;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}') {
            *pp = p + 1;
            return 0;
        }
        goto bad;
    }
bad:
    lua_settop(L, top);
    return -1;
}

static void push_array(lua_State *L, int elem, const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    if (p < end && *p == '[') { /* "[0:1]={...}": bounds other than 1 */
        const char *eq = memchr(p, '=', n);
        if (eq)
            p = eq + 1;
    }
    abuf b = {0};
    int rc = parse_array(L, &p, end, elem ? elem : SL_PG_STRING, &b, 0);
    free(b.p);
    if (rc == 0 && p == end)
        return;
    if (rc == 0)
        lua_pop(L, 1); /* trailing garbage: not an array literal after all */
    lua_pushlstring(L, s, n);
}

void sl_pg_push_value(lua_State *L, int kind, int elem_kind, const char *s, size_t n)
{
    char tmp[64];
    switch (kind) {
    case SL_PG_INT:
    case SL_PG_INT8: {
        if (n == 0 || n >= sizeof tmp)
            break;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        char *endp;
        errno = 0;
        long long v = strtoll(tmp, &endp, 10);
        if (errno || *endp || v > 9007199254740992LL || v < -9007199254740992LL)
            break;
        lua_pushnumber(L, (lua_Number)v);
        return;
    }
    case SL_PG_FLOAT: {
        /* NaN, Infinity, -Infinity have no JSON number form: strings */
        if (n == 0 || n >= sizeof tmp || s[n - 1] == 'N' || s[n - 1] == 'y')
            break;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        char *endp;
        double v = strtod(tmp, &endp);
        if (*endp)
            break;
        lua_pushnumber(L, v);
        return;
    }
    case SL_PG_BOOL:
        if (n == 1 && (s[0] == 't' || s[0] == 'f')) {
            lua_pushboolean(L, s[0] == 't');
            return;
        }
        break;
    case SL_PG_BYTEA:
        push_bytea(L, s, n);
        return;
    case SL_PG_JSON: {
        char err[128];
        if (sl_json_decode(L, s, n, err, sizeof err) == 0)
            return;
        break;
    }
    case SL_PG_TIMESTAMP:
        if (n >= 19 && n < sizeof tmp && s[10] == ' ' && !memchr(s, 'B', n)) {
            memcpy(tmp, s, n);
            tmp[10] = 'T';
            lua_pushlstring(L, tmp, n);
            return;
        }
        break;
    case SL_PG_TIMESTAMPTZ:
        if (n < 40) {
            char out[64];
            size_t len = sl_pg_timestamptz_utc(s, n, out);
            if (len) {
                lua_pushlstring(L, out, len);
                return;
            }
        }
        break;
    case SL_PG_ARRAY:
        push_array(L, elem_kind, s, n);
        return;
    default:
        break;
    }
    lua_pushlstring(L, s, n);
}

/* ---------- results to Lua, with the connection's type cache ---------- */


const sl_pg_type *sl_pg_cache_find(sl_pg_typecache *tc, unsigned oid)
{
    for (int i = 0; i < tc->n; i++)
        if (tc->types[i].oid == oid)
            return &tc->types[i];
    return NULL;
}

void sl_pg_cache_add(sl_pg_typecache *tc, const sl_pg_type *t)
{
    if (sl_pg_cache_find(tc, t->oid))
        return;
    if (tc->n == tc->cap) {
        int cap = tc->cap ? tc->cap * 2 : 16;
        sl_pg_type *np = realloc(tc->types, (size_t)cap * sizeof *np);
        if (!np)
            return;
        tc->types = np;
        tc->cap = cap;
    }
    tc->types[tc->n++] = *t;
}

/* Fills types[col] for each column of r; returns how many OIDs are unknown
 * to both the built-in table and this connection's cache. */
int sl_pg_resolve_types(sl_pg_typecache *tc, const PGresult *r, sl_pg_type *types)
{
    int missing = 0, n = PQnfields(r);
    for (int i = 0; i < n; i++) {
        unsigned oid = PQftype(r, i);
        const sl_pg_type *t = sl_pg_cache_find(tc, oid);
        if (t)
            types[i] = *t;
        else if (!sl_pg_builtin_type(oid, &types[i])) {
            types[i].oid = oid;
            types[i].kind = SL_PG_UNKNOWN;
            types[i].elem_kind = 0;
            snprintf(types[i].name, sizeof types[i].name, "oid %u", oid);
            missing++;
        }
    }
    return missing;
}

void sl_pg_push_columns(lua_State *L, const PGresult *r, const sl_pg_type *types)
{
    int n = PQnfields(r);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, PQfname(r, i));
        lua_setfield(L, -2, "name");
        lua_pushstring(L, types[i].name);
        lua_setfield(L, -2, "type");
        if (types[i].kind == SL_PG_UNKNOWN ||
            (types[i].kind == SL_PG_ARRAY && types[i].elem_kind == SL_PG_UNKNOWN)) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "unknown");
        }
        lua_rawseti(L, -2, i + 1);
    }
}

/* Pushes the value of one cell and returns 1, or returns 0 for NULL
 * (nothing pushed). Unknown types come as strings. */
static inline int push_cell(lua_State *L, const PGresult *r, const sl_pg_type *types, int row,
                            int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    int kind = types[col].kind, elem = types[col].elem_kind;
    if (elem == SL_PG_UNKNOWN)
        elem = SL_PG_STRING;
    sl_pg_push_value(L, kind == SL_PG_UNKNOWN ? SL_PG_STRING : kind, elem, PQgetvalue(r, row, col),
                     (size_t)PQgetlength(r, row, col));
    return 1;
}

void sl_pg_push_rows(lua_State *L, const PGresult *r, const sl_pg_type *types)
{
    int nrows = PQntuples(r), ncols = PQnfields(r);
    lua_createtable(L, nrows, 0);
    for (int row = 0; row < nrows; row++) {
        lua_createtable(L, ncols, 0);
        for (int col = 0; col < ncols; col++)
            if (push_cell(L, r, types, row, col))
                lua_rawseti(L, -2, col + 1);
        lua_rawseti(L, -2, row + 1);
    }
}

void sl_pg_push_docs(lua_State *L, const PGresult *r, const sl_pg_type *types,
                     sl_rowdoc *shape)
{
    int nrows = PQntuples(r), ncols = PQnfields(r);
    if (ncols > sl_rowdoc_ncols(shape))
        ncols = sl_rowdoc_ncols(shape);
    lua_createtable(L, nrows, 0);
    for (int row = 0; row < nrows; row++) {
        sl_rowdoc_begin(L, shape);
        for (int col = 0; col < ncols; col++)
            if (push_cell(L, r, types, row, col))
                sl_rowdoc_set(L, shape, col);
        sl_rowdoc_end(L, shape);
        lua_rawseti(L, -2, row + 1);
    }
}

sl_pg_type *sl_pg_result_types(sl_pg_typecache *tc, const PGresult *r)
{
    int n = PQnfields(r);
    sl_pg_type *types = calloc((size_t)(n ? n : 1), sizeof *types);
    if (types)
        sl_pg_resolve_types(tc, r, types);
    return types;
}

/* Records the rows of the pg_type lookup in the cache; OIDs it did not
 * return stay unknown (cached as such, so they are not looked up again). */
void sl_pg_lookup_store(sl_pg_typecache *tc, const PGresult *lk, const PGresult *r)
{
    int n = lk ? PQntuples(lk) : 0;
    /* pass 1: element types first, so arrays can resolve them */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            sl_pg_type t = {0};
            t.oid = (unsigned)strtoul(PQgetvalue(lk, i, 0), NULL, 10);
            t.kind = sl_pg_kind_from_catalog(PQgetvalue(lk, i, 1)[0], PQgetvalue(lk, i, 2)[0]);
            if ((pass == 0) == (t.kind == SL_PG_ARRAY))
                continue;
            snprintf(t.name, sizeof t.name, "%s", PQgetvalue(lk, i, 4));
            if (t.kind == SL_PG_ARRAY) {
                sl_pg_type et;
                unsigned eoid = (unsigned)strtoul(PQgetvalue(lk, i, 3), NULL, 10);
                const sl_pg_type *e = sl_pg_cache_find(tc, eoid);
                if (!e && sl_pg_builtin_type(eoid, &et))
                    e = &et;
                t.elem_kind = e ? e->kind : SL_PG_UNKNOWN;
                if (t.elem_kind == SL_PG_ARRAY)
                    t.elem_kind = SL_PG_UNKNOWN;
            }
            sl_pg_cache_add(tc, &t);
        }
    }
    for (int i = 0; r && i < PQnfields(r); i++) {
        unsigned oid = PQftype(r, i);
        sl_pg_type t;
        if (!sl_pg_cache_find(tc, oid) && !sl_pg_builtin_type(oid, &t)) {
            memset(&t, 0, sizeof t);
            t.oid = oid;
            t.kind = SL_PG_UNKNOWN;
            snprintf(t.name, sizeof t.name, "oid %u", oid);
            sl_pg_cache_add(tc, &t);
        }
    }
}

char *sl_pg_lookup_list(sl_pg_typecache *tc, const PGresult *r)
{
    int n = PQnfields(r);
    sl_pg_type *types = calloc((size_t)(n ? n : 1), sizeof *types);
    if (!types)
        return NULL;
    int missing = sl_pg_resolve_types(tc, r, types);
    char *list = missing ? malloc(16 + (size_t)missing * 12) : NULL;
    if (list) {
        size_t cap = 16 + (size_t)missing * 12, len = 0;
        list[len++] = '{';
        for (int i = 0; i < n; i++) {
            if (types[i].kind != SL_PG_UNKNOWN)
                continue;
            len += (size_t)snprintf(list + len, cap - len, "%s%u", len > 1 ? "," : "", types[i].oid);
        }
        list[len++] = '}';
        list[len] = 0;
    }
    free(types);
    return list;
}

void sl_pg_cache_free(sl_pg_typecache *tc)
{
    free(tc->types);
    tc->types = NULL;
    tc->n = tc->cap = 0;
}
