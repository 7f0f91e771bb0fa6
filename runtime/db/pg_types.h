/*
 * PostgreSQL values (text format) to Lua values, by type OID.
 *
 * The driver asks the server for text results: every type has a text form,
 * so an unknown type is still a readable string, never a failed row. The
 * built-in OIDs are fixed by PostgreSQL's catalog and listed here; types
 * created by users or extensions (enums, domains over arrays, citext) are
 * looked up once per connection in pg_type by pg.c and described with the
 * same struct.
 */
#ifndef SL_DB_PG_TYPES_H
#define SL_DB_PG_TYPES_H

#include <libpq-fe.h>
#include <lua.h>
#include <stddef.h>

enum sl_pg_kind {
    SL_PG_STRING = 1, /* the text as it is (text, uuid, inet, money, enums...) */
    SL_PG_INT,        /* int2, int4, oid: always exact in a double */
    SL_PG_INT8,       /* number up to 2^53, beyond that the decimal string */
    SL_PG_NUMERIC,    /* exact decimal string */
    SL_PG_FLOAT,      /* number; NaN and infinities as strings */
    SL_PG_BOOL,
    SL_PG_BYTEA,      /* base64 */
    SL_PG_JSON,       /* decoded: objects, arrays (json.array_mt), json.null */
    SL_PG_TIMESTAMP,  /* ISO 8601 without zone: "2024-01-02T03:04:05" */
    SL_PG_TIMESTAMPTZ, /* ISO 8601 in UTC: "2024-01-02T03:04:05Z" */
    SL_PG_ARRAY,      /* Lua array of elem_kind values, NULL as json.null */
    SL_PG_UNKNOWN     /* string; the column is flagged so callers can warn */
};

typedef struct sl_pg_type {
    unsigned oid;
    int kind;      /* enum sl_pg_kind */
    int elem_kind; /* for SL_PG_ARRAY */
    char name[64];
} sl_pg_type;

/* Fills *out for a built-in type OID; returns 0 when the OID is not one. */
int sl_pg_builtin_type(unsigned oid, sl_pg_type *out);

/* The kind for a user type from its pg_type row: typtype ('b' base,
 * 'e' enum, 'd' domain, ...) and typcategory ('S' string, 'A' array...). */
int sl_pg_kind_from_catalog(char typtype, char typcategory);

/* Pushes the Lua value of `s` (n bytes of PostgreSQL text output) for a
 * value of `kind` (elem_kind for arrays). Never fails: text that does not
 * parse as its type is pushed as the string itself. */
void sl_pg_push_value(lua_State *L, int kind, int elem_kind, const char *s, size_t n);

/* Rewrites a timestamptz text ("2024-01-02 03:04:05.5+02:30") as ISO 8601 in
 * UTC into out (at least n + 8 bytes); returns the length, or 0 when the
 * text is not in that form (infinity, BC dates). */
size_t sl_pg_timestamptz_utc(const char *s, size_t n, char *out);

/* The user types a connection has seen (found in pg_type, or cached as
 * unknown so they are looked up once). Zero-initialise; free with
 * sl_pg_cache_free. */
typedef struct sl_pg_typecache {
    sl_pg_type *types;
    int n, cap;
} sl_pg_typecache;

const sl_pg_type *sl_pg_cache_find(sl_pg_typecache *tc, unsigned oid);
/* Adds t unless its OID is there; a failed allocation only loses the entry. */
void sl_pg_cache_add(sl_pg_typecache *tc, const sl_pg_type *t);
void sl_pg_cache_free(sl_pg_typecache *tc);

/* Fills types[col] for each column of r; returns how many OIDs are neither
 * built in nor cached. */
int sl_pg_resolve_types(sl_pg_typecache *tc, const PGresult *r, sl_pg_type *types);
/* A new array of r's column types (free it), or NULL when memory runs out. */
sl_pg_type *sl_pg_result_types(sl_pg_typecache *tc, const PGresult *r);
/* The "{oid,...}" literal of r's unresolved OIDs (free it), or NULL. */
char *sl_pg_lookup_list(sl_pg_typecache *tc, const PGresult *r);
/* Caches the rows of the pg_type lookup (oid, typtype, typcategory,
 * typelem, typname), and r's OIDs it did not return as unknown. */
void sl_pg_lookup_store(sl_pg_typecache *tc, const PGresult *lk, const PGresult *r);

/* Pushes {{name=, type=, unknown=true?}, ...} for r's columns. */
void sl_pg_push_columns(lua_State *L, const PGresult *r, const sl_pg_type *types);
/* Pushes r's rows as arrays of converted values (SQL NULL left as a hole). */
void sl_pg_push_rows(lua_State *L, const PGresult *r, const sl_pg_type *types);

/* Pushes the rows as documents of the given shape (rowdoc.h). */
struct sl_rowdoc;
void sl_pg_push_docs(lua_State *L, const PGresult *r, const sl_pg_type *types,
                     struct sl_rowdoc *shape);

#endif
