/*
 * sluice.crypto: the primitives that auth helpers need (AWS SigV4, OAuth2
 * client assertions, JWT RS256/HS256, content hashes) on OpenSSL 3's EVP
 * interface. Everything here finishes at once, so nothing yields.
 *
 * Digests and signatures are returned raw; crypto.hex and the base64
 * functions turn them into text. Base64 is written out here rather than
 * taken from EVP_EncodeBlock/EVP_DecodeBlock because those know neither the
 * URL-safe alphabet nor unpadded input, and decode padding as zero bytes.
 * Every failing OpenSSL call is followed by ERR_clear_error so that a stale
 * error never surfaces in another module's TLS handshake.
 *
 * Digests sit on the sync engine's per-document path (a content hash per
 * document), so the algorithms are fetched from the provider once, not on
 * every call as EVP_md5() and friends would, and one digest context is
 * reused (Lua runs on one thread; nothing here yields). crypto.
 * sha256_canonical hashes a value's canonical JSON without making it a Lua
 * string first.
 *
 * crypto.content_hash is the engine's change detection: in one walk it
 * cleans the document's text in place and hashes its canonical form with
 * XXH3-128 (libxxhash). A hash that only has to notice a change needs no collision
 * resistance against an adversary, and on a 1 KB document SHA-256 cost
 * about a tenth of a sync's CPU time.
 */
#include <lua.h>
#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/decoder.h>
#include <openssl/x509.h>
#include <endian.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/crypto.h"
#include "codec/keyorder.h"
#include "codec/json.h"
#include "codec/text.h"

enum { DG_MD5, DG_SHA1, DG_SHA256, DG_SHA512, DG_COUNT };
static const char *const dg_names[DG_COUNT] = {"MD5", "SHA1", "SHA256", "SHA512"};

/* The fetched algorithm, or NULL when the provider lacks it. Fetched once
 * and kept for the life of the process. */
static EVP_MD *dg_fetch(int which)
{
    static EVP_MD *mds[DG_COUNT];
    if (!mds[which]) {
        mds[which] = EVP_MD_fetch(NULL, dg_names[which], NULL);
        if (!mds[which])
            ERR_clear_error();
    }
    return mds[which];
}

/* Digests n bytes at s into out; returns the length, or 0 on failure. */
static unsigned int dg_run(int which, const void *s, size_t n, unsigned char *out)
{
    static EVP_MD_CTX *ctx;
    EVP_MD *md = dg_fetch(which);
    unsigned int len = 0;
    if (!ctx)
        ctx = EVP_MD_CTX_new();
    if (!md || !ctx || !EVP_DigestInit_ex2(ctx, md, NULL) || !EVP_DigestUpdate(ctx, s, n) ||
        !EVP_DigestFinal_ex(ctx, out, &len)) {
        ERR_clear_error();
        return 0;
    }
    return len;
}

static int push_digest(lua_State *L, int which)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = dg_run(which, s, n, out);
    if (!len) {
        lua_pushnil(L);
        lua_pushliteral(L, "digest failed");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

/* crypto.md5(s) -> raw 16-byte digest */
static int l_md5(lua_State *L)
{
    return push_digest(L, DG_MD5);
}

/* crypto.sha1(s) -> raw 20-byte digest */
static int l_sha1(lua_State *L)
{
    return push_digest(L, DG_SHA1);
}

/* crypto.sha256(s) -> raw 32-byte digest */
static int l_sha256(lua_State *L)
{
    return push_digest(L, DG_SHA256);
}

/* crypto.sha512(s) -> raw 64-byte digest */
static int l_sha512(lua_State *L)
{
    return push_digest(L, DG_SHA512);
}

static void hex_into(char *dst, const unsigned char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = digits[s[i] >> 4];
        dst[2 * i + 1] = digits[s[i] & 15];
    }
}

#define SL_CRYPTO_BUF_T "sl_crypto_buf"
/* A buffer that grew past this is freed after use rather than kept. */
#define SL_CRYPTO_BUF_KEEP (1u << 20)

static int cbuf_gc(lua_State *L)
{
    sl_json_buf_free(luaL_checkudata(L, 1, SL_CRYPTO_BUF_T));
    return 0;
}

/* crypto.sha256_canonical(v) -> hex | nil, err
 * The lowercase hex SHA-256 of json.encode_canonical(v), byte for byte
 * crypto.hex(crypto.sha256(json.encode_canonical(v))), without making the
 * encoding a Lua string: the text goes into a buffer (upvalue 1) that the
 * next call reuses. err is the encoder's ("cannot encode function", ...). */
static int l_sha256_canonical(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    sl_json_buf *b = lua_touserdata(L, lua_upvalueindex(1));
    const char *err = NULL;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    b->len = 0;
    if (sl_json_encode(L, 1, SL_JSON_CANONICAL, b, &err) == 0) {
        len = dg_run(DG_SHA256, b->ptr ? b->ptr : "", b->len, out);
        if (!len)
            err = "digest failed";
    }
    b->len = 0;
    if (b->cap > SL_CRYPTO_BUF_KEEP)
        sl_json_buf_free(b);
    if (!len) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    char hex[2 * EVP_MAX_MD_SIZE];
    hex_into(hex, out, len);
    lua_pushlstring(L, hex, 2 * (size_t)len);
    return 1;
}

/* ---- crypto.content_hash --------------------------------------------------
 *
 * One walk over a document: each string value is cleaned in place (the
 * text.clean_tree policy, down to the same depth) and the cleaned tree is
 * serialised into a buffer that XXH3-128 then hashes. The serialisation is
 * not JSON but a tagged, length-prefixed form of what json.encode_canonical
 * would write: keys sorted bytewise at every depth (number keys by their
 * JSON text), functions, userdata and coroutines left out of objects and
 * null in arrays, arrays told from objects the way the JSON encoder tells
 * them. It needs no escaping and no number formatting, so a string costs
 * one scan (the cleaning) and one copy. Every value the canonical encoder
 * rejects is rejected here too, with its message, so a document that cannot
 * be written still fails as a document error before it reaches a sink.
 *
 * Tags: n null, t true, f false, d double, s string, a array, o object, k
 * key, e end (of an array or object). d is followed by the IEEE bits, s and
 * k by the byte length and the bytes, a by the item count, each number as
 * 8 bytes little-endian. The form is prefix-free, so distinct trees never
 * serialise the same. */

#define CH_MAX_DEPTH SL_JSON_MAX_DEPTH
#define SL_CANONICAL_KEY "sluice.content_hash.last"

/* content_hash's buffer, kept after the call: the form of the document it
 * hashed last, for the sinks (sl_content_canonical). */
typedef struct sl_canonical {
    sl_json_buf b; /* first: the buffer metatable's __gc frees it */
    const void *doc;
    int valid;
} sl_canonical;

const char *sl_content_canonical(lua_State *L, int idx, size_t *len)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SL_CANONICAL_KEY);
    sl_canonical *c = lua_touserdata(L, -1);
    lua_pop(L, 1); /* the registry keeps it alive */
    if (!c || !c->valid || c->doc != lua_topointer(L, idx))
        return NULL;
    *len = c->b.len;
    return c->b.ptr;
}
#define CH_EXACT_INT 9007199254740992.0
#define CH_FAST_KEYS 32

typedef struct ch_walk {
    lua_State *L;
    sl_json_buf *b;
    const char *err;
    int lossy; /* left out a value a JSON writer would write */
} ch_walk;

/* Makes room for n more bytes (an sl_json_buf is realloc'd memory). */
static int ch_grow(ch_walk *w, size_t n)
{
    sl_json_buf *b = w->b;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            goto oom;
        cap *= 2;
    }
    char *p = realloc(b->ptr, cap);
    if (!p)
        goto oom;
    b->ptr = p;
    b->cap = cap;
    return 0;
oom:
    w->err = "out of memory";
    return -1;
}

/* Appends n bytes; the buffer is reused across calls, so it rarely grows. */
static inline int ch_put(ch_walk *w, const void *p, size_t n)
{
    sl_json_buf *b = w->b;
    if (b->cap - b->len < n && ch_grow(w, n) != 0)
        return -1;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

/* A tag, a number (8 bytes, little-endian) and then n bytes at p: one
 * reservation, three copies. */
static inline int ch_tag(ch_walk *w, char tag, uint64_t v, const void *p, size_t n)
{
    sl_json_buf *b = w->b;
    if (b->cap - b->len < 9 + n && ch_grow(w, 9 + n) != 0)
        return -1;
    unsigned char *d = (unsigned char *)b->ptr + b->len;
    uint64_t le = htole64(v);
    d[0] = (unsigned char)tag;
    memcpy(d + 1, &le, 8);
    if (n)
        memcpy(d + 9, p, n);
    b->len += 9 + n;
    return 0;
}

static inline int ch_head(ch_walk *w, char tag, uint64_t v)
{
    return ch_tag(w, tag, v, NULL, 0);
}

/* Values the canonical form leaves out (codec/json.c is_skippable). All
 * but functions the sinks' JSON writer may write (int64 cdata, userdata
 * with a __jsontype), so leaving one out makes the form unfit for
 * sl_content_canonical. */
static int ch_skippable(ch_walk *w, int idx)
{
    int t = lua_type(w->L, idx);
    if (t == LUA_TFUNCTION)
        return 1;
    int skip = t == LUA_TLIGHTUSERDATA ? lua_touserdata(w->L, idx) != NULL
                                       : t == LUA_TUSERDATA || t == LUA_TTHREAD || t > LUA_TTHREAD;
    w->lossy |= skip;
    return skip;
}

static int ch_value(ch_walk *w, int idx, int depth);

/* The string at idx, cleaned in place in table t under the key at kidx
 * (rawset; for arrays kidx is 0 and the index is ai) when clean is set;
 * then written. */
static int ch_string(ch_walk *w, int idx, int t, int kidx, size_t ai, int clean)
{
    lua_State *L = w->L;
    size_t n;
    const unsigned char *s = (const unsigned char *)lua_tolstring(L, idx, &n);
    if (clean) {
        size_t i = sl_text_clean_prefix(s, n);
        if (i < n) {
            sl_text_clean_push(L, s, n, i); /* [... cleaned] */
            if (kidx) {
                lua_pushvalue(L, kidx);
                lua_pushvalue(L, -2);
                lua_rawset(L, t);
            } else {
                lua_pushvalue(L, -1);
                lua_rawseti(L, t, (int)ai);
            }
            s = (const unsigned char *)lua_tolstring(L, -1, &n);
            int rc = ch_tag(w, 's', n, s, n);
            lua_pop(L, 1);
            return rc;
        }
    }
    return ch_tag(w, 's', n, s, n);
}

/* A value in table t (at depth `depth`): strings are cleaned when the
 * table is within the cleaning depth. */
static int ch_member(ch_walk *w, int idx, int t, int kidx, size_t ai, int depth)
{
    if (lua_type(w->L, idx) == LUA_TSTRING)
        return ch_string(w, idx, t, kidx, ai, depth < SL_TEXT_CLEAN_DEPTH);
    return ch_value(w, idx, depth + 1);
}

/* 1 array (length *n), 0 object (*n keys), -1: the encoder's own rule. */
static int ch_classify(ch_walk *w, int idx, size_t *n)
{
    return sl_json_classify(w->L, idx, n, &w->err);
}

static int ch_array(ch_walk *w, int idx, size_t n, int depth)
{
    lua_State *L = w->L;
    if (ch_head(w, 'a', n))
        return -1;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        int rc = ch_skippable(w, -1) ? ch_put(w, "n", 1)
                                      : ch_member(w, lua_gettop(L), idx, 0, i, depth);
        lua_pop(L, 1);
        if (rc)
            return -1;
    }
    return ch_put(w, "e", 1);
}

/* An object key: its text and the stack slots of the key and (on the fast
 * path) its value. A number key's text is a Lua string that something on
 * the stack keeps alive. */
typedef struct ch_key {
    const char *s;
    size_t n;
    uint64_t prefix; /* keyorder.h */
    int k, v;
    double num;
    int isnum;
} ch_key;

static int ch_key_cmp(const void *a, const void *b)
{
    const ch_key *x = a, *y = b;
    return sl_key_order(x->prefix, x->s, x->n, y->prefix, y->s, y->n);
}

/* Fills k from the key at kidx; a number key's text is pushed (the caller
 * keeps it alive). -1 with w->err for a key JSON cannot have. */
static int ch_key_of(ch_walk *w, int kidx, ch_key *k)
{
    lua_State *L = w->L;
    int t = lua_type(L, kidx);
    k->k = kidx;
    k->isnum = 0;
    if (t == LUA_TSTRING) {
        k->s = lua_tolstring(L, kidx, &k->n);
        k->prefix = sl_key_prefix(k->s, k->n);
        return 0;
    }
    if (t == LUA_TNUMBER) {
        char buf[40];
        k->num = lua_tonumber(L, kidx);
        /* the sinks' JSON writer spells other number keys its own way
         * (sink/jsonbuf.c number_key: 0.1 as 0.10000000000000001) */
        if (k->num != floor(k->num) || fabs(k->num) > CH_EXACT_INT)
            w->lossy = 1;
        k->n = sl_json_number_text(k->num, buf);
        if (k->n == 0) {
            w->err = "cannot encode nan or inf";
            return -1;
        }
        lua_pushlstring(L, buf, k->n);
        k->s = lua_tostring(L, -1);
        k->prefix = sl_key_prefix(k->s, k->n);
        k->isnum = 1;
        return 0;
    }
    w->err = "object key must be a string or a number";
    return -1;
}

/* Sorts the keys and reports a duplicate (a number key and a string key
 * with the same text). A document has a handful of keys: insertion sort
 * beats qsort's calls through a pointer there. */
static int ch_sorted(ch_walk *w, ch_key *keys, size_t m)
{
    if (m <= CH_FAST_KEYS) {
        for (size_t i = 1; i < m; i++) {
            ch_key k = keys[i];
            size_t j = i;
            while (j > 0 && ch_key_cmp(&k, &keys[j - 1]) < 0) {
                keys[j] = keys[j - 1];
                j--;
            }
            keys[j] = k;
        }
    } else {
        qsort(keys, m, sizeof *keys, ch_key_cmp);
    }
    for (size_t i = 1; i < m; i++) {
        if (ch_key_cmp(&keys[i - 1], &keys[i]) == 0) {
            w->err = "duplicate key after number-to-string conversion";
            return -1;
        }
    }
    return 0;
}

/* Writes one member of table t: the key k (at kidx) and the value at
 * vidx. */
static int ch_pair(ch_walk *w, int t, const ch_key *k, int kidx, int vidx, int depth)
{
    if (ch_skippable(w, vidx))
        return 0;
    return ch_tag(w, 'k', k->n, k->s, k->n) || ch_member(w, vidx, t, kidx, 0, depth);
}

static int ch_object(ch_walk *w, int idx, size_t n, int depth)
{
    lua_State *L = w->L;
    int base = lua_gettop(L);
    size_t m = 0;

    if (ch_put(w, "o", 1))
        return -1;
    if (n <= CH_FAST_KEYS && lua_checkstack(L, 3 * (int)n + 4)) {
        /* every key and value (and a number key's text) stays on the
         * stack: nothing is looked up again */
        ch_key keys[CH_FAST_KEYS];
        lua_pushnil(L);
        while (lua_next(L, idx)) { /* [... key value] */
            if (m == n) {
                w->err = "table changed while encoding";
                goto fail;
            }
            keys[m].v = lua_gettop(L);
            if (ch_key_of(w, keys[m].v - 1, &keys[m])) /* [... key value text?] */
                goto fail;
            lua_pushvalue(L, keys[m].v - 1); /* [... key value text? key] */
            m++;
        }
        if (ch_sorted(w, keys, m))
            goto fail;
        for (size_t i = 0; i < m; i++)
            if (ch_pair(w, idx, &keys[i], keys[i].k, keys[i].v, depth))
                goto fail;
        lua_settop(L, base);
        return ch_put(w, "e", 1);
    }
    /* many keys: a string key's text stays alive in the table (cleaning
     * replaces values only), a number key's in the anchor table; the array
     * is a userdata so that a Lua memory error cannot leak it */
    ch_key *keys = lua_newuserdata(L, n ? n * sizeof *keys : 1);
    lua_newtable(L); /* [... keys anchor] */
    int anchor = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (m == n) {
            w->err = "table changed while encoding";
            goto fail;
        }
        if (ch_key_of(w, lua_gettop(L), &keys[m]))
            goto fail;
        if (keys[m].isnum)
            lua_rawseti(L, anchor, (int)m + 1);
        m++;
    }
    if (ch_sorted(w, keys, m))
        goto fail;
    for (size_t i = 0; i < m; i++) {
        if (keys[i].isnum)
            lua_pushnumber(L, keys[i].num);
        else
            lua_pushlstring(L, keys[i].s, keys[i].n);
        lua_pushvalue(L, -1);
        lua_rawget(L, idx); /* [... keys anchor key value] */
        int rc = ch_pair(w, idx, &keys[i], lua_gettop(L) - 1, lua_gettop(L), depth);
        lua_pop(L, 2);
        if (rc)
            goto fail;
    }
    lua_settop(L, base);
    return ch_put(w, "e", 1);
fail:
    lua_settop(L, base);
    return -1;
}

/* A table without a metatable and with at most CH_FAST_KEYS entries (a
 * document and most things in it), in one pass: the entries stay on the
 * stack while the pass decides between array and object as ch_classify
 * does, so the table is neither walked twice nor looked up again. Returns
 * 1, having written nothing, for a table that does not qualify. */
static int ch_table_fast(ch_walk *w, int idx, int depth)
{
    lua_State *L = w->L;
    int base = lua_gettop(L), ints = 1, rc;
    ch_key keys[CH_FAST_KEYS];
    size_t m = 0;
    double max = 0;

    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        return 1;
    }
    if (!lua_checkstack(L, 3 * CH_FAST_KEYS + 6))
        return 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [... key value] */
        if (m == CH_FAST_KEYS) {
            lua_settop(L, base);
            return 1;
        }
        keys[m].v = lua_gettop(L);
        keys[m].k = keys[m].v - 1;
        if (ints) {
            double k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
            if (k >= 1 && k == floor(k) && k <= CH_EXACT_INT) {
                keys[m].num = k;
                if (k > max)
                    max = k;
            } else {
                ints = 0;
            }
        }
        m++;
        lua_pushvalue(L, -2); /* [... key value key] */
    }
    if (m > 0 && ints && max == (double)m) {
        /* m distinct keys from 1 to m: an array */
        int slot[CH_FAST_KEYS];
        for (size_t i = 0; i < m; i++)
            slot[(size_t)keys[i].num - 1] = keys[i].v;
        rc = ch_head(w, 'a', m);
        for (size_t i = 0; i < m && !rc; i++)
            rc = ch_skippable(w, slot[i]) ? ch_put(w, "n", 1)
                                          : ch_member(w, slot[i], idx, 0, i + 1, depth);
        rc = rc || ch_put(w, "e", 1);
    } else {
        /* number keys' texts go above the entries (room was checked) */
        rc = ch_put(w, "o", 1);
        for (size_t i = 0; i < m && !rc; i++)
            rc = ch_key_of(w, keys[i].k, &keys[i]);
        rc = rc || ch_sorted(w, keys, m);
        for (size_t i = 0; i < m && !rc; i++)
            rc = ch_pair(w, idx, &keys[i], keys[i].k, keys[i].v, depth);
        rc = rc || ch_put(w, "e", 1);
    }
    lua_settop(L, base);
    return rc ? -1 : 0;
}

static int ch_value(ch_walk *w, int idx, int depth)
{
    lua_State *L = w->L;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return ch_put(w, lua_toboolean(L, idx) ? "t" : "f", 1);
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) {
            w->err = "cannot encode nan or inf";
            return -1;
        }
        if (d == 0)
            d = 0; /* -0 is written "0" */
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return ch_head(w, 'd', bits);
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return ch_tag(w, 's', n, s, n);
    }
    case LUA_TTABLE: {
        size_t n;
        if (depth >= CH_MAX_DEPTH) {
            w->err = "nesting too deep (or a reference cycle)";
            return -1;
        }
        if (!lua_checkstack(L, 6)) {
            w->err = "out of stack space";
            return -1;
        }
        int rc = ch_table_fast(w, idx, depth);
        if (rc != 1)
            return rc;
        /* a metatable's __jsontype steers the sinks' JSON writer, which
         * the form does not follow: only json.array's agrees with it */
        if (!w->lossy && lua_getmetatable(L, idx)) {
            luaL_getmetatable(L, SL_JSON_ARRAY_MT);
            w->lossy = !lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        int kind = ch_classify(w, idx, &n);
        if (kind < 0)
            return -1;
        return kind ? ch_array(w, idx, n, depth) : ch_object(w, idx, n, depth);
    }
    default: /* nil, json.null; what else is left out never gets here */
        return ch_put(w, "n", 1);
    }
}

/* crypto.content_hash(doc) -> hex | nil, err
 * Cleans the strings of doc in place (the text.clean_tree policy) and
 * returns the 32 lowercase hex digits of the XXH3-128 of the cleaned
 * document's canonical form (see above), most significant byte first. err
 * is what json.encode_canonical would say about the document. */
static int l_content_hash(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sl_canonical *c = lua_touserdata(L, lua_upvalueindex(1));
    sl_json_buf *b = &c->b;
    /* the last form is kept for sl_content_canonical until this call */
    c->valid = 0;
    if (b->cap > SL_CRYPTO_BUF_KEEP)
        sl_json_buf_free(b);
    b->len = 0;
    ch_walk w = {L, b, NULL, 0};
    int failed = ch_value(&w, 1, 0) != 0;
    XXH128_canonical_t sum;
    if (!failed) {
        XXH128_canonicalFromHash(&sum, XXH3_128bits(b->ptr, b->len));
        c->valid = !w.lossy;
        c->doc = lua_topointer(L, 1);
    }
    if (failed) {
        lua_pushnil(L);
        lua_pushstring(L, w.err);
        return 2;
    }
    char hex[2 * sizeof sum.digest];
    hex_into(hex, sum.digest, sizeof sum.digest);
    lua_pushlstring(L, hex, sizeof hex);
    return 1;
}

/* crypto.hex(raw) -> lowercase hex string */
static int l_hex(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    char small[2 * 128];
    if (n <= 128) { /* digests: no buffer machinery */
        hex_into(small, s, n);
        lua_pushlstring(L, small, 2 * n);
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i += 128) {
        size_t k = n - i < 128 ? n - i : 128;
        hex_into(small, s + i, k);
        luaL_addlstring(&b, small, 2 * k);
    }
    luaL_pushresult(&b);
    return 1;
}

/* crypto.hmac(alg, key, data) -> raw mac
 * alg is "md5", "sha1", "sha256" or "sha512". */
static int l_hmac(lua_State *L)
{
    static const char *const algs[] = {"md5", "sha1", "sha256", "sha512", NULL};
    static const char *const names[] = {"MD5", "SHA1", "SHA256", "SHA512"};
    int alg = luaL_checkoption(L, 1, NULL, algs);
    size_t klen, dlen, outlen = 0;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *data = luaL_checklstring(L, 3, &dlen);
    unsigned char out[EVP_MAX_MD_SIZE];

    /* EVP_Q_mac rejects a NULL key even when its length is 0 */
    if (!EVP_Q_mac(NULL, "HMAC", NULL, names[alg], NULL, klen ? key : "", klen,
                   (const unsigned char *)data, dlen, out, sizeof out, &outlen)) {
        ERR_clear_error();
        lua_pushnil(L);
        lua_pushliteral(L, "hmac failed");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_encode(lua_State *L, const char *alphabet, int pad)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (unsigned long)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        luaL_addchar(&b, alphabet[(v >> 18) & 63]);
        luaL_addchar(&b, alphabet[(v >> 12) & 63]);
        if (left > 1)
            luaL_addchar(&b, alphabet[(v >> 6) & 63]);
        else if (pad)
            luaL_addchar(&b, '=');
        if (left > 2)
            luaL_addchar(&b, alphabet[v & 63]);
        else if (pad)
            luaL_addchar(&b, '=');
    }
    luaL_pushresult(&b);
    return 1;
}

/* Decodes either alphabet's text. Whitespace is skipped (PEM bodies and
 * mail parts are wrapped); padding is optional, but when present it must
 * complete the last group and end the input. */
static int b64_decode(lua_State *L, int url)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    unsigned long v = 0;
    int bits = 0, group = 0, pads = 0;

    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int c = s[i], d;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pads++;
            continue;
        }
        if (pads)
            goto bad; /* data after padding */
        if (c >= 'A' && c <= 'Z')
            d = c - 'A';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            d = c - '0' + 52;
        else if (c == (url ? '-' : '+'))
            d = 62;
        else if (c == (url ? '_' : '/'))
            d = 63;
        else
            goto bad;
        v = (v << 6) | (unsigned long)d;
        bits += 6;
        group = (group + 1) % 4;
        if (bits >= 8) {
            bits -= 8;
            luaL_addchar(&b, (char)((v >> bits) & 0xff));
        }
    }
    /* a lone sixth of a byte cannot be; padding must fill the group */
    if (group == 1 || (pads && (group + pads) % 4 != 0) || pads > 2)
        goto bad;
    luaL_pushresult(&b);
    return 1;
bad:
    luaL_pushresult(&b);
    lua_pushnil(L);
    lua_pushliteral(L, "invalid base64");
    return 2;
}

/* crypto.base64_encode(s) -> standard base64 with padding, no line breaks */
static int l_b64_encode(lua_State *L)
{
    return b64_encode(L, b64_std, 1);
}

/* crypto.base64_decode(s) -> s | nil, "invalid base64" */
static int l_b64_decode(lua_State *L)
{
    return b64_decode(L, 0);
}

/* crypto.base64url_encode(s) -> URL-safe base64 without padding (JWT) */
static int l_b64url_encode(lua_State *L)
{
    return b64_encode(L, b64_url, 0);
}

/* crypto.base64url_decode(s) -> s | nil, "invalid base64" (padding optional) */
static int l_b64url_decode(lua_State *L)
{
    return b64_decode(L, 1);
}

/* crypto.random_bytes(n) -> n bytes from the CSPRNG | nil, err */
static int l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= (1 << 24), 1, "expected 0 to 16777216");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n > 0) {
        int chunk = n > LUAL_BUFFERSIZE ? LUAL_BUFFERSIZE : (int)n;
        unsigned char *p = (unsigned char *)luaL_prepbuffer(&b);
        if (RAND_bytes(p, chunk) != 1) {
            ERR_clear_error();
            luaL_pushresult(&b);
            lua_pushnil(L);
            lua_pushliteral(L, "random generator failed");
            return 2;
        }
        luaL_addsize(&b, chunk);
        n -= chunk;
    }
    luaL_pushresult(&b);
    return 1;
}

/* A passphrase callback that refuses: without one OpenSSL would prompt on
 * the terminal for an encrypted key, blocking the loop. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int is_rsa(EVP_PKEY *k)
{
    return k && EVP_PKEY_is_a(k, "RSA");
}

/* crypto.rsa_sha256_sign(pem_private_key, data) -> raw signature | nil, err
 * RSASSA-PKCS1-v1_5 with SHA-256 (JWT RS256). The key is PKCS#8 ("BEGIN
 * PRIVATE KEY") or PKCS#1 ("BEGIN RSA PRIVATE KEY"), unencrypted. */
static int l_rsa_sign(lua_State *L)
{
    size_t klen, dlen, siglen = 0;
    const char *pem = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    const char *err = NULL;
    EVP_MD_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    unsigned char *sig = NULL;

    BIO *bio = BIO_new_mem_buf(pem, (int)klen);
    if (bio)
        key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!is_rsa(key)) {
        err = "invalid rsa private key";
        goto done;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)data, dlen) != 1 ||
        !(sig = OPENSSL_malloc(siglen)) ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)data, dlen) != 1) {
        err = "signing failed";
        goto done;
    }
    lua_pushlstring(L, (const char *)sig, siglen);
done:
    ERR_clear_error();
    OPENSSL_free(sig);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    if (err) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/* Reads a public key from "BEGIN PUBLIC KEY" (SPKI), "BEGIN RSA PUBLIC
 * KEY" (PKCS#1) or a certificate, the three forms identity providers
 * publish. */
static EVP_PKEY *read_public_key(const char *pem, size_t n)
{
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio)
        return NULL;
    if (strstr(pem, "-----BEGIN CERTIFICATE-----")) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (cert)
            key = X509_get_pubkey(cert);
        X509_free(cert);
    } else {
        OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
            &key, "PEM", NULL, "RSA", EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (dctx)
            OSSL_DECODER_from_bio(dctx, bio);
        OSSL_DECODER_CTX_free(dctx);
    }
    BIO_free(bio);
    return key;
}

/* crypto.rsa_sha256_verify(pem_public_key, data, sig) -> boolean | nil, err
 * false for a signature that does not match; nil, err when the key cannot
 * be read. */
static int l_rsa_verify(lua_State *L)
{
    size_t klen, dlen, slen;
    const char *pem = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    const char *sig = luaL_checklstring(L, 3, &slen);
    EVP_PKEY *key = read_public_key(pem, klen);
    int ok = 0;

    if (!is_rsa(key)) {
        ERR_clear_error();
        EVP_PKEY_free(key);
        lua_pushnil(L);
        lua_pushliteral(L, "invalid rsa public key");
        return 2;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1)
        ok = EVP_DigestVerify(ctx, (const unsigned char *)sig, slen, (const unsigned char *)data,
                              dlen) == 1;
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    lua_pushboolean(L, ok);
    return 1;
}

int luaopen_sluice_crypto(lua_State *L)
{
    static const luaL_Reg fns[] = {{"md5", l_md5},
                                   {"sha1", l_sha1},
                                   {"sha256", l_sha256},
                                   {"sha512", l_sha512},
                                   {"hex", l_hex},
                                   {"hmac", l_hmac},
                                   {"base64_encode", l_b64_encode},
                                   {"base64_decode", l_b64_decode},
                                   {"base64url_encode", l_b64url_encode},
                                   {"base64url_decode", l_b64url_decode},
                                   {"random_bytes", l_random_bytes},
                                   {"rsa_sha256_sign", l_rsa_sign},
                                   {"rsa_sha256_verify", l_rsa_verify},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    if (luaL_newmetatable(L, SL_CRYPTO_BUF_T)) {
        lua_pushcfunction(L, cbuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    sl_json_buf *b = lua_newuserdata(L, sizeof *b); /* [crypto buf] */
    memset(b, 0, sizeof *b);
    luaL_getmetatable(L, SL_CRYPTO_BUF_T);
    lua_setmetatable(L, -2);
    lua_pushcclosure(L, l_sha256_canonical, 1);
    lua_setfield(L, -2, "sha256_canonical");
    sl_canonical *c = lua_newuserdata(L, sizeof *c); /* [crypto canon] */
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, SL_CRYPTO_BUF_T); /* its __gc frees c->b, the first member */
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, SL_CANONICAL_KEY);
    lua_pushcclosure(L, l_content_hash, 1);
    lua_setfield(L, -2, "content_hash");
    return 1;
}
