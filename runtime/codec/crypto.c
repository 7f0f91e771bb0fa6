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
 * crypto.content_hash is the engine's change detection: it cleans the
 * document's text in place and hashes the canonical JSON with XXH3-128
 * (libxxhash). A hash that only has to notice a change needs no collision
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
#include <string.h>
#include <xxhash.h>

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

/* crypto.content_hash(doc) -> hex | nil, err
 * Applies text.clean_tree to doc (in place: the engine indexes what it
 * hashed), then returns the 32 lowercase hex digits of the XXH3-128 of
 * json.encode_canonical(doc), most significant byte first. Cleaning first
 * keeps the hash a function of what is written, and one call does both
 * walks. err is the encoder's, as for sha256_canonical. Shares upvalue 1
 * (the encoding buffer) with sha256_canonical. */
static int l_content_hash(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sl_text_clean_tree(L, 1);
    sl_json_buf *b = lua_touserdata(L, lua_upvalueindex(1));
    const char *err = NULL;
    b->len = 0;
    int failed = sl_json_encode(L, 1, SL_JSON_CANONICAL, b, &err) != 0;
    XXH128_canonical_t sum;
    if (!failed)
        XXH128_canonicalFromHash(&sum, XXH3_128bits(b->ptr ? b->ptr : "", b->len));
    b->len = 0;
    if (b->cap > SL_CRYPTO_BUF_KEEP)
        sl_json_buf_free(b);
    if (failed) {
        lua_pushnil(L);
        lua_pushstring(L, err);
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
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_sha256_canonical, 1);
    lua_setfield(L, -3, "sha256_canonical");
    lua_pushcclosure(L, l_content_hash, 1);
    lua_setfield(L, -2, "content_hash");
    return 1;
}
