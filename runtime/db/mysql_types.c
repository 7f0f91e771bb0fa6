/*
 * sluice.mysql's type mapping (see mysql.h and docs/types.md): one MySQL or
 * MariaDB value to one Lua value, the same from the text protocol (plain
 * queries) and the binary protocol (queries with parameters).
 *
 * The rules follow from what a search index can hold without loss: numbers
 * only while a double holds them exactly (integers up to 2^53), exact
 * decimals as strings, bytes as base64 so that a JSON document stays valid
 * UTF-8, and dates as ISO 8601 text. Anything without a rule (GEOMETRY, a
 * type a newer server invents) is kept as a string and reported once, so a
 * sync never aborts on a column type.
 */
#include "mysql.h"
#include "codec/json.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BINARY_CHARSET 63
#define EXACT_INT_MAX 9007199254740992LL /* 2^53 */
#define FIXED_DEC_MAX 30                 /* decimals above: "not fixed" */

static const char *int_name(enum enum_field_types t)
{
    switch (t) {
    case MYSQL_TYPE_TINY: return "tinyint";
    case MYSQL_TYPE_SHORT: return "smallint";
    case MYSQL_TYPE_INT24: return "mediumint";
    case MYSQL_TYPE_LONG: return "int";
    default: return "bigint";
    }
}

static void set_type(sl_my_col *col, sl_my_kind kind, const char *name)
{
    col->kind = kind;
    snprintf(col->type, sizeof col->type, "%s", name);
}

int sl_my_col_classify(const MYSQL_FIELD *f, sl_my_col *col)
{
    int binary = f->charsetnr == BINARY_CHARSET;
    MARIADB_CONST_STRING format = {NULL, 0};

    memset(col, 0, sizeof *col);
    col->is_unsigned = (f->flags & UNSIGNED_FLAG) != 0;
    col->decimals = f->decimals;
    col->length = f->length;
    /* MariaDB marks JSON (a LONGTEXT alias) only in extended metadata */
    if (f->extension)
        mariadb_field_attr(&format, f, MARIADB_FIELD_ATTR_FORMAT_NAME);

    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
        col->kind = SL_MY_INT;
        snprintf(col->type, sizeof col->type, "%s%s", int_name(f->type),
                 col->is_unsigned ? " unsigned" : "");
        return 0;
    case MYSQL_TYPE_YEAR:
        col->is_unsigned = 1;
        set_type(col, SL_MY_INT, "year");
        return 0;
    case MYSQL_TYPE_FLOAT: set_type(col, SL_MY_FLOAT, "float"); return 0;
    case MYSQL_TYPE_DOUBLE: set_type(col, SL_MY_DOUBLE, "double"); return 0;
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL: set_type(col, SL_MY_DECIMAL, "decimal"); return 0;
    case MYSQL_TYPE_BIT: set_type(col, SL_MY_BIT, "bit"); return 0;
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE: set_type(col, SL_MY_DATE, "date"); return 0;
    case MYSQL_TYPE_DATETIME: set_type(col, SL_MY_DATETIME, "datetime"); return 0;
    case MYSQL_TYPE_TIMESTAMP: set_type(col, SL_MY_TIMESTAMP, "timestamp"); return 0;
    case MYSQL_TYPE_TIME: set_type(col, SL_MY_TIME, "time"); return 0;
    case MYSQL_TYPE_NULL: set_type(col, SL_MY_NULL, "null"); return 0;
    case MYSQL_TYPE_JSON: set_type(col, SL_MY_JSON, "json"); return 0;
    case MYSQL_TYPE_ENUM: set_type(col, SL_MY_TEXT, "enum"); return 0;
    case MYSQL_TYPE_SET: set_type(col, SL_MY_TEXT, "set"); return 0;
    case MYSQL_TYPE_STRING:
        if (f->flags & ENUM_FLAG)
            set_type(col, SL_MY_TEXT, "enum");
        else if (f->flags & SET_FLAG)
            set_type(col, SL_MY_TEXT, "set");
        else
            set_type(col, binary ? SL_MY_BINARY : SL_MY_TEXT, binary ? "binary" : "char");
        return 0;
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_VAR_STRING:
        set_type(col, binary ? SL_MY_BINARY : SL_MY_TEXT, binary ? "varbinary" : "varchar");
        return 0;
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
        if (!binary && format.str && format.length == 4 && memcmp(format.str, "json", 4) == 0)
            set_type(col, SL_MY_JSON, "json");
        else
            set_type(col, binary ? SL_MY_BINARY : SL_MY_TEXT, binary ? "blob" : "text");
        return 0;
    case MYSQL_TYPE_GEOMETRY:
        set_type(col, SL_MY_OTHER, "geometry");
        col->is_unsigned = binary; /* reused: "values are bytes" */
        return 1;
    default:
        col->kind = SL_MY_OTHER;
        col->is_unsigned = binary;
        snprintf(col->type, sizeof col->type, "unknown(%d)", (int)f->type);
        return 1;
    }
}

void sl_my_push_base64(lua_State *L, const unsigned char *p, size_t n)
{
    unsigned char small[1024];
    if (n == 0) {
        lua_pushliteral(L, "");
        return;
    }
    size_t need = 4 * ((n + 2) / 3) + 1;
    unsigned char *out = need <= sizeof small ? small : malloc(need);
    if (!out) {
        lua_pushnil(L); /* out of memory: better a nil than a raise mid-row */
        return;
    }
    /* EVP_EncodeBlock takes an int length; blobs over 2 GiB go in pieces
     * that are multiples of 3 bytes, so the output is one valid text */
    size_t done = 0, olen = 0;
    while (done < n) {
        size_t chunk = n - done;
        if (chunk > 1536UL * 1024 * 1024)
            chunk = 1536UL * 1024 * 1024;
        olen += (size_t)EVP_EncodeBlock(out + olen, p + done, (int)chunk);
        done += chunk;
    }
    lua_pushlstring(L, (const char *)out, olen);
    if (out != small)
        free(out);
}

void sl_my_push_int(lua_State *L, long long v, int is_unsigned)
{
    char buf[32];
    if (is_unsigned) {
        unsigned long long u = (unsigned long long)v;
        if (u <= (unsigned long long)EXACT_INT_MAX) {
            lua_pushnumber(L, (lua_Number)u);
            return;
        }
        snprintf(buf, sizeof buf, "%llu", u);
    } else {
        if (v >= -EXACT_INT_MAX && v <= EXACT_INT_MAX) {
            lua_pushnumber(L, (lua_Number)v);
            return;
        }
        snprintf(buf, sizeof buf, "%lld", v);
    }
    lua_pushstring(L, buf);
}

/* The server prints FLOAT with 6 significant digits, or with the column's
 * fixed decimals; the binary protocol sends the float's bits. Printing the
 * same way makes both protocols give the same number. */
void sl_my_push_float(lua_State *L, const sl_my_col *col, float f)
{
    char buf[400];
    if (col->decimals <= FIXED_DEC_MAX)
        snprintf(buf, sizeof buf, "%.*f", (int)col->decimals, (double)f);
    else
        snprintf(buf, sizeof buf, "%.6g", (double)f);
    lua_pushnumber(L, strtod(buf, NULL));
}

/* Appends ".ffffff" as the server would print it: the column's fixed number
 * of digits, or for "not fixed" columns all six with trailing zeros cut. */
static size_t put_fraction(char *p, size_t cap, const sl_my_col *col, unsigned long usec)
{
    char digits[8];
    int n;
    if (col->decimals >= 1 && col->decimals <= 6) {
        n = (int)col->decimals;
    } else if (col->decimals > FIXED_DEC_MAX && usec) {
        n = 6;
    } else {
        return 0;
    }
    unsigned long u = usec % 1000000UL;
    for (int i = 5; i >= 0; i--, u /= 10)
        digits[i] = (char)('0' + u % 10);
    if (col->decimals > FIXED_DEC_MAX)
        while (n > 1 && digits[n - 1] == '0')
            n--;
    if (cap < (size_t)n + 1)
        return 0;
    p[0] = '.';
    memcpy(p + 1, digits, (size_t)n);
    return (size_t)n + 1;
}

static char *two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* "YYYY-MM-DDThh:mm:ss" (19 bytes) for fields that fit their widths. */
static size_t put_datetime(char *buf, const MYSQL_TIME *t)
{
    char *p = two(two(buf, t->year / 100), t->year % 100);
    *p++ = '-';
    p = two(p, t->month);
    *p++ = '-';
    p = two(p, t->day);
    *p++ = 'T';
    p = two(p, t->hour);
    *p++ = ':';
    p = two(p, t->minute);
    *p++ = ':';
    p = two(p, t->second);
    return (size_t)(p - buf);
}

void sl_my_push_time(lua_State *L, const sl_my_col *col, const MYSQL_TIME *t)
{
    char buf[64];
    size_t n = 0;
    if (col->kind == SL_MY_TIME) {
        unsigned long hours = (unsigned long)t->day * 24UL + t->hour;
        n = (size_t)snprintf(buf, sizeof buf, "%s%02lu:%02u:%02u", t->neg ? "-" : "", hours,
                             t->minute, t->second);
        n += put_fraction(buf + n, sizeof buf - n, col, t->second_part);
        lua_pushlstring(L, buf, n);
        return;
    }
    /* 0000-00-00 and dates with a zero part name no day: ISO 8601 has no
     * spelling for them, and the application meant "no value" */
    if (t->month == 0 || t->day == 0) {
        lua_pushnil(L);
        return;
    }
    if (t->year > 9999 || t->month > 99 || t->day > 99 || t->hour > 99 || t->minute > 99 ||
        t->second > 99) /* never from a server; printf's widths then */
        n = (size_t)snprintf(buf, sizeof buf, "%04u-%02u-%02uT%02u:%02u:%02u", t->year,
                             t->month, t->day, t->hour, t->minute, t->second);
    else /* by hand: snprintf was most of a DATETIME row's cost */
        n = put_datetime(buf, t);
    if (col->kind == SL_MY_DATE) {
        n = 10;
    } else {
        n += put_fraction(buf + n, sizeof buf - n, col, t->second_part);
        if (col->kind == SL_MY_TIMESTAMP && n + 1 < sizeof buf)
            buf[n++] = 'Z';
    }
    lua_pushlstring(L, buf, n);
}

/* Reads exactly `width` digits. */
static int digits(const char **p, const char *end, int width, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < width; i++, (*p)++) {
        if (*p >= end || **p < '0' || **p > '9')
            return -1;
        v = v * 10 + (unsigned)(**p - '0');
    }
    *out = v;
    return 0;
}

/* Reads ".f..." (1 to 6 digits) into microseconds; nothing is fine too. */
static int fraction(const char **p, const char *end, unsigned long *usec)
{
    *usec = 0;
    if (*p == end)
        return 0;
    if (**p != '.')
        return -1;
    (*p)++;
    int n = 0;
    unsigned long v = 0;
    while (*p < end && **p >= '0' && **p <= '9' && n < 6) {
        v = v * 10 + (unsigned long)(**p - '0');
        (*p)++;
        n++;
    }
    if (n == 0 || *p != end)
        return -1;
    for (; n < 6; n++)
        v *= 10;
    *usec = v;
    return 0;
}

/* Parses the server's text for a DATE, DATETIME, TIMESTAMP or TIME. */
static int parse_time(const sl_my_col *col, const char *s, size_t len, MYSQL_TIME *t)
{
    const char *p = s, *end = s + len;
    memset(t, 0, sizeof *t);
    if (col->kind == SL_MY_TIME) {
        if (p < end && *p == '-') {
            t->neg = 1;
            p++;
        }
        unsigned h = 0;
        int nd = 0;
        while (p < end && *p >= '0' && *p <= '9' && nd < 4) {
            h = h * 10 + (unsigned)(*p++ - '0');
            nd++;
        }
        if (nd < 2 || p >= end || *p++ != ':' || digits(&p, end, 2, &t->minute) ||
            p >= end || *p++ != ':' || digits(&p, end, 2, &t->second) ||
            fraction(&p, end, &t->second_part))
            return -1;
        t->hour = h;
        return 0;
    }
    if (digits(&p, end, 4, &t->year) || p >= end || *p++ != '-' ||
        digits(&p, end, 2, &t->month) || p >= end || *p++ != '-' ||
        digits(&p, end, 2, &t->day))
        return -1;
    if (col->kind == SL_MY_DATE)
        return p == end ? 0 : -1;
    if (p >= end || *p++ != ' ' || digits(&p, end, 2, &t->hour) || p >= end || *p++ != ':' ||
        digits(&p, end, 2, &t->minute) || p >= end || *p++ != ':' ||
        digits(&p, end, 2, &t->second))
        return -1;
    return fraction(&p, end, &t->second_part);
}

int sl_my_push_text(lua_State *L, const sl_my_col *col, const char *s, size_t len,
                    char *warn, size_t warnlen)
{
    char num[80];
    if (!s) {
        lua_pushnil(L);
        return 0;
    }
    switch (col->kind) {
    case SL_MY_NULL:
        lua_pushnil(L);
        return 0;
    case SL_MY_INT:
    case SL_MY_FLOAT:
    case SL_MY_DOUBLE: {
        /* row values are not promised to be NUL-terminated: copy */
        if (len >= sizeof num)
            break;
        memcpy(num, s, len);
        num[len] = '\0';
        char *e = NULL;
        if (col->kind == SL_MY_INT) {
            long long v = col->is_unsigned ? (long long)strtoull(num, &e, 10)
                                           : strtoll(num, &e, 10);
            if (e == num + len && len > 0) {
                sl_my_push_int(L, v, col->is_unsigned);
                return 0;
            }
        } else {
            double d = strtod(num, &e);
            if (e == num + len && len > 0) {
                lua_pushnumber(L, d);
                return 0;
            }
        }
        break;
    }
    case SL_MY_DECIMAL:
    case SL_MY_TEXT:
        lua_pushlstring(L, s, len);
        return 0;
    case SL_MY_BINARY:
        sl_my_push_base64(L, (const unsigned char *)s, len);
        return 0;
    case SL_MY_BIT:
        if (col->length <= 53 && len <= 7) {
            unsigned long long v = 0;
            for (size_t i = 0; i < len; i++)
                v = (v << 8) | (unsigned char)s[i];
            lua_pushnumber(L, (lua_Number)v);
        } else {
            sl_my_push_base64(L, (const unsigned char *)s, len);
        }
        return 0;
    case SL_MY_JSON: {
        char err[96];
        if (sl_json_decode(L, s, len, err, sizeof err) == 0)
            return 0;
        lua_pushlstring(L, s, len);
        snprintf(warn, warnlen, "invalid json kept as a string: %s", err);
        return 1;
    }
    case SL_MY_DATE:
    case SL_MY_DATETIME:
    case SL_MY_TIMESTAMP:
    case SL_MY_TIME: {
        MYSQL_TIME t;
        if (parse_time(col, s, len, &t) == 0) {
            sl_my_push_time(L, col, &t);
            return 0;
        }
        break;
    }
    case SL_MY_OTHER:
        if (col->is_unsigned)
            sl_my_push_base64(L, (const unsigned char *)s, len);
        else
            lua_pushlstring(L, s, len);
        return 0;
    }
    lua_pushlstring(L, s, len);
    snprintf(warn, warnlen, "unexpected %s text kept as a string", col->type);
    return 1;
}
