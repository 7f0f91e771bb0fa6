/*
 * sluice.mysql's value mapping: how one MySQL/MariaDB column value becomes
 * one Lua value. Shared by the driver (runtime/db/mysql.c) and its C tests,
 * which check the mapping with hand-made field descriptions, no server.
 *
 * Both wire protocols land here. A plain query (text protocol) gives every
 * value as the server's text; a query with parameters (prepared statement,
 * binary protocol) gives integers, floats and dates as C values. The two
 * must produce the same Lua value for the same row, or a document's content
 * hash would change between a full sync (no parameters) and an incremental
 * one (with a cursor parameter), so every kind has exactly one pusher that
 * both paths call.
 */
#ifndef SL_DB_MYSQL_H
#define SL_DB_MYSQL_H

#include <lua.h>
#include <mysql.h>
#include <stddef.h>

/* What a column's values become in Lua; decided once per result set. */
typedef enum sl_my_kind {
    SL_MY_NULL,      /* the NULL type (SELECT NULL): always nil */
    SL_MY_INT,       /* TINYINT..BIGINT, YEAR: number; beyond 2^53 a string */
    SL_MY_FLOAT,     /* FLOAT: number, as the server prints it */
    SL_MY_DOUBLE,    /* DOUBLE: number */
    SL_MY_DECIMAL,   /* DECIMAL: exact, as a string */
    SL_MY_TEXT,      /* character strings, ENUM, SET: string */
    SL_MY_BINARY,    /* BINARY, VARBINARY, BLOB: base64 */
    SL_MY_BIT,       /* BIT(n): number for n <= 53, base64 above */
    SL_MY_JSON,      /* JSON: decoded to tables */
    SL_MY_DATE,      /* "YYYY-MM-DD"; zero dates nil */
    SL_MY_DATETIME,  /* "YYYY-MM-DDTHH:MM:SS[.ffffff]" (no zone) */
    SL_MY_TIMESTAMP, /* as DATETIME with "Z": the session runs in UTC */
    SL_MY_TIME,      /* "[-]HHH:MM:SS[.ffffff]", a duration: a string */
    SL_MY_OTHER      /* GEOMETRY, unknown: string (base64 if binary), warned */
} sl_my_kind;

typedef struct sl_my_col {
    sl_my_kind kind;
    int is_unsigned;
    unsigned decimals;     /* fractional digits the server prints, or 31+ */
    unsigned long length;  /* display width; bits for BIT */
    char type[40];         /* the SQL type as users write it: "int unsigned" */
    int warned;            /* a value warning was already reported */
} sl_my_col;

/* Fills col from a field description. Returns 1 when the column's type is
 * not mapped (GEOMETRY, an unknown type), 0 otherwise. Never fails. */
int sl_my_col_classify(const MYSQL_FIELD *f, sl_my_col *col);

/* Pushes the Lua value of one text-protocol value: s/len as the server sent
 * them, s NULL for SQL NULL. Always pushes exactly one value. Returns 0, or
 * 1 when the value could not be mapped as its type says (invalid JSON, an
 * unparsable date): it is then pushed as a string and warn holds why. */
int sl_my_push_text(lua_State *L, const sl_my_col *col, const char *s, size_t len,
                    char *warn, size_t warnlen);

/* Binary-protocol pushers; each gives what sl_my_push_text gives for the
 * same value. */
void sl_my_push_int(lua_State *L, long long v, int is_unsigned);
void sl_my_push_float(lua_State *L, const sl_my_col *col, float f);
void sl_my_push_time(lua_State *L, const sl_my_col *col, const MYSQL_TIME *t);

/* Pushes base64 of n bytes (standard alphabet, padded). */
void sl_my_push_base64(lua_State *L, const unsigned char *p, size_t n);

#endif
