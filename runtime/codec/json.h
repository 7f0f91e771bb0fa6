/*
 * The JSON codec's C interface, for the modules that serialise documents in
 * C (the sinks) and for the YAML decoder, which marks sequences with the same
 * array metatable so that a YAML list and a JSON array are one thing.
 *
 * The JSON null is the light userdata NULL (the same value as cjson.null and
 * yaml.null); arrays are tables whose metatable is the one kept in the
 * registry under SL_JSON_ARRAY_MT.
 */
#ifndef SL_CODEC_JSON_H
#define SL_CODEC_JSON_H

#include <lua.h>
#include <stddef.h>

#define SL_JSON_ARRAY_MT "sluice.json.array"
/* Deeper documents are an error both ways: this bounds the C recursion, and
 * a reference cycle in a table shows up as "nesting too deep". */
#define SL_JSON_MAX_DEPTH 1000

/* A growable byte buffer {ptr, len, cap}; zero-initialise it, free it with
 * sl_json_buf_free. */
typedef struct sl_json_buf {
    char *ptr;
    size_t len, cap;
} sl_json_buf;

enum {
    /* sorted keys, no whitespace, functions and userdata skipped */
    SL_JSON_CANONICAL = 1
};

/* Appends the JSON text of the value at stack index idx to b. Returns 0, or
 * -1 with a static message in *err (b then holds a partial text the caller
 * discards). Raises only when Lua itself runs out of memory. */
int sl_json_encode(lua_State *L, int idx, unsigned flags, sl_json_buf *b, const char **err);

/* A finite number's text as the encoder writes it: integral values up to
 * 2^53 as plain integers, others with the fewest significant digits that
 * read back to the same double. Returns the length, 0 for NaN and
 * infinities. The content hash sorts number keys by it. */
size_t sl_json_number_text(double d, char out[40]);

/* Decodes the n bytes at s and pushes the value; returns 0. On malformed
 * input pushes nothing, writes "<problem> at byte N" (N 1-based) to err and
 * returns -1. */
int sl_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen);

/* How the table at idx is written: 1 an array (its length in *n), 0 an
 * object (its number of keys in *n), -1 with a static message in *err. A
 * table is an array when it carries the array metatable, or when its keys
 * are exactly 1..n with n > 0; an empty table without the metatable is an
 * object. Never raises; leaves the stack as it was. */
int sl_json_classify(lua_State *L, int idx, size_t *n, const char **err);

/* Pushes the array metatable, creating it on first use. */
void sl_json_push_array_mt(lua_State *L);

/* Appends n bytes; returns -1 when memory runs out. */
int sl_json_buf_add(sl_json_buf *b, const void *p, size_t n);
void sl_json_buf_free(sl_json_buf *b);

#endif
