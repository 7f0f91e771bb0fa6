/*
 * A growable byte buffer {ptr, len, size} and a JSON writer that serialises
 * Lua values straight into it. The sinks (FTS index, NDJSON, the future
 * Elasticsearch bulk body) turn documents into JSON in C so a document's
 * table can be dropped as soon as it is written.
 *
 * Output is always valid JSON: strings are escaped per RFC 8259 and invalid
 * UTF-8 becomes U+FFFD. Object keys are sorted bytewise, so the same
 * document always gives the same bytes (content hashes depend on that).
 */
#ifndef SL_JSONBUF_H
#define SL_JSONBUF_H

#include <lua.h>
#include <stddef.h>

/* Deepest table nesting the writer accepts; deeper (or cyclic) tables fail
 * with "nesting too deep". */
#define SL_JSONBUF_MAX_DEPTH 128

struct sl_jsonbuf_key;

typedef struct sl_jsonbuf {
    char *ptr;
    size_t len, size;
    /* scratch for sorting object keys, reused across calls */
    struct sl_jsonbuf_key *keys;
    size_t nkeys, keycap;
} sl_jsonbuf;

/* Never fails; allocates nothing until the first write. */
void sl_jsonbuf_init(sl_jsonbuf *b);
/* Frees the bytes and the scratch; the buffer is empty and reusable. */
void sl_jsonbuf_free(sl_jsonbuf *b);
/* Makes room for n more bytes. Returns 0, or -1 when out of memory. */
int sl_jsonbuf_reserve(sl_jsonbuf *b, size_t n);
/* Appends n bytes. Returns 0, or -1 when out of memory. */
int sl_jsonbuf_append(sl_jsonbuf *b, const void *p, size_t n);
int sl_jsonbuf_putc(sl_jsonbuf *b, char c);
/* Appends s as a quoted JSON string (escaped; invalid UTF-8 becomes
 * U+FFFD, one per maximal invalid subsequence). Returns 0 or -1 (memory). */
int sl_jsonbuf_string(sl_jsonbuf *b, const char *s, size_t n);
/* Appends a finite number: integral values without exponent or fraction,
 * others with the shortest "%.*g" that reads back exactly. Returns 0, or -1
 * when out of memory or x is not finite (nothing appended then). */
int sl_jsonbuf_number(sl_jsonbuf *b, double x);

/*
 * Appends the Lua value at index idx as JSON. Tables with keys 1..n are
 * arrays; other tables objects (number keys become strings); an empty table
 * is {} unless its metatable has __jsontype = "array". A metatable field
 * __jsontype = "object" forces an object. The NULL lightuserdata (cjson.null)
 * and userdata whose metatable has __jsontype = "null" are null. Functions
 * are skipped in objects and null in arrays. LuaJIT int64 cdata (123LL) are
 * written as exact integers.
 *
 * Returns 0, or -1 with *err set to a static message; on failure the buffer
 * is left exactly as it was. Uses only a few Lua stack slots.
 */
int sl_jsonbuf_value(sl_jsonbuf *b, lua_State *L, int idx, const char **err);

/*
 * Appends the top-level object of a content-hash canonical form (see
 * codec/crypto.h) as JSON, without its closing '}': the caller appends
 * members of its own and closes it. Members named drop[0..ndrop-1] are left
 * out. Values come out as sl_jsonbuf_value writes the same tree (the form
 * keeps keys sorted, strings as they are, numbers as doubles). *members
 * counts what was written; *found has bit i set when drop[i] was met.
 * Returns 0, or -1 when out of memory or the form is not an object (the
 * buffer is then as it was).
 */
int sl_jsonbuf_canonical_open(sl_jsonbuf *b, const char *form, size_t n, const char *const *drop,
                              int ndrop, int *members, unsigned *found);

#endif
