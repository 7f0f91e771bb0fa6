/* Crypto against published vectors: NIST/FIPS 180 digests, RFC 1321 MD5,
 * RFC 4231 and RFC 2202 HMACs, RFC 4648 base64, plus base64 decoding of bad
 * input and misuse raising. RSA is checked against the openssl CLI in
 * crypto_spec.lua. Each case runs twice. */
#include "harness.h"

#include <lualib.h>
#include <stdlib.h>

int luaopen_sluice_crypto(lua_State *L);

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_sluice_crypto);
    lua_call(L, 0, 1);
    lua_setglobal(L, "crypto");
    return L;
}

/* Evaluates a Lua expression; returns it as a malloc'd string, "nil:<err>"
 * for a nil, err result, or "raised:<msg>". */
static char *eval(lua_State *L, const char *expr)
{
    char chunk[2048];
    snprintf(chunk, sizeof chunk, "local a, b = %s\n"
                                  "if a == nil then return 'nil:' .. tostring(b) end\n"
                                  "return tostring(a)",
             expr);
    const char *prefix = "";
    if (luaL_dostring(L, chunk) != 0)
        prefix = "raised:";
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    char *out = malloc(strlen(prefix) + n + 1);
    strcpy(out, prefix);
    memcpy(out + strlen(prefix), s, n);
    out[strlen(prefix) + n] = 0;
    lua_pop(L, 1);
    return out;
}

#define EVAL(expr, want)               \
    do {                               \
        char *got_ = eval(L, expr);    \
        CHECK_STR(got_, want);         \
        free(got_);                    \
    } while (0)

static void test_digests(lua_State *L)
{
    EVAL("crypto.hex(crypto.md5(''))", "d41d8cd98f00b204e9800998ecf8427e");
    EVAL("crypto.hex(crypto.md5('abc'))", "900150983cd24fb0d6963f7d28e17f72");
    EVAL("crypto.hex(crypto.md5('message digest'))", "f96b697d7cb7938d525a2f31aaf161d0");
    EVAL("crypto.hex(crypto.sha1(''))", "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    EVAL("crypto.hex(crypto.sha1('abc'))", "a9993e364706816aba3e25717850c26c9cd0d89d");
    EVAL("crypto.hex(crypto.sha1(string.rep('a', 1000000)))",
         "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    EVAL("crypto.hex(crypto.sha256(''))",
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EVAL("crypto.hex(crypto.sha256('abc'))",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EVAL("crypto.hex(crypto.sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EVAL("crypto.hex(crypto.sha512('abc'))",
         "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
         "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    EVAL("#crypto.sha256('x') .. ',' .. #crypto.sha512('x') .. ',' .. #crypto.md5('x')",
         "32,64,16");
    EVAL("crypto.hex('\\0\\1\\127\\128\\255')", "00017f80ff");
    EVAL("crypto.hex('')", "");
    EVAL("crypto.sha256({})", "raised:[string \"local a, b = crypto.sha256({})...\"]:1: bad "
                              "argument #1 to 'sha256' (string expected, got table)");
}

static void test_hmac(lua_State *L)
{
    /* RFC 4231 test case 1 */
    EVAL("crypto.hex(crypto.hmac('sha256', string.rep('\\11', 20), 'Hi There'))",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    EVAL("crypto.hex(crypto.hmac('sha512', string.rep('\\11', 20), 'Hi There'))",
         "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
         "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854");
    /* RFC 4231 test case 2 */
    EVAL("crypto.hex(crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?'))",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EVAL("crypto.hex(crypto.hmac('sha512', 'Jefe', 'what do ya want for nothing?'))",
         "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
         "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
    /* RFC 4231 test case 6: a key longer than the block */
    EVAL("crypto.hex(crypto.hmac('sha256', string.rep('\\170', 131), "
         "'Test Using Larger Than Block-Size Key - Hash Key First'))",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* RFC 2202 test case 2 */
    EVAL("crypto.hex(crypto.hmac('sha1', 'Jefe', 'what do ya want for nothing?'))",
         "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    EVAL("crypto.hex(crypto.hmac('md5', 'Jefe', 'what do ya want for nothing?'))",
         "750c783e6ab0b503eaa86e310a5db738");
    /* an empty key is legal */
    EVAL("#crypto.hmac('sha256', '', 'x')", "32");
    EVAL("crypto.hmac('sha3', 'k', 'd')",
         "raised:[string \"local a, b = crypto.hmac('sha3', 'k', 'd')...\"]:1: bad argument #1 "
         "to 'hmac' (invalid option 'sha3')");
}

static void test_base64(lua_State *L)
{
    /* RFC 4648 section 10 */
    static const char *const vec[][2] = {{"", ""},          {"f", "Zg=="},
                                         {"fo", "Zm8="},     {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    char expr[256], back[64];
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        snprintf(expr, sizeof expr, "crypto.base64_encode('%s')", vec[i][0]);
        EVAL(expr, vec[i][1]);
        snprintf(expr, sizeof expr, "crypto.base64_decode('%s')", vec[i][1]);
        EVAL(expr, vec[i][0]);
        /* the URL form is the same without padding */
        snprintf(back, sizeof back, "%s", vec[i][1]);
        char *eq = strchr(back, '=');
        if (eq)
            *eq = 0;
        snprintf(expr, sizeof expr, "crypto.base64url_encode('%s')", vec[i][0]);
        EVAL(expr, back);
        snprintf(expr, sizeof expr, "crypto.base64url_decode('%s')", back);
        EVAL(expr, vec[i][0]);
        snprintf(expr, sizeof expr, "crypto.base64url_decode('%s')", vec[i][1]);
        EVAL(expr, vec[i][0]);
    }
    EVAL("crypto.base64_encode('\\251\\255\\254')", "+//+");
    EVAL("crypto.base64url_encode('\\251\\255\\254')", "-__-");
    EVAL("crypto.base64url_encode('\\251\\255')", "-_8");
    EVAL("crypto.hex(crypto.base64url_decode('-__-'))", "fbfffe");
    EVAL("crypto.hex(crypto.base64_decode('+//+'))", "fbfffe");
    EVAL("crypto.base64_decode('Zm9v\\r\\nYmFy\\n')", "foobar");
    EVAL("crypto.base64_decode('Zm9vYg')", "foob");
    /* bad input */
    EVAL("crypto.base64_decode('Zm9v!')", "nil:invalid base64");
    EVAL("crypto.base64_decode('-__-')", "nil:invalid base64");
    EVAL("crypto.base64url_decode('+//+')", "nil:invalid base64");
    EVAL("crypto.base64_decode('Z')", "nil:invalid base64");
    EVAL("crypto.base64_decode('Zg=')", "nil:invalid base64");
    EVAL("crypto.base64_decode('Zg===')", "nil:invalid base64");
    EVAL("crypto.base64_decode('Zg==Zg==')", "nil:invalid base64");
    EVAL("crypto.base64_decode('====')", "nil:invalid base64");
    EVAL("crypto.base64_decode('Zm9v\\0')", "nil:invalid base64");
}

static void test_random(lua_State *L)
{
    EVAL("#crypto.random_bytes(0)", "0");
    EVAL("#crypto.random_bytes(100000)", "100000");
    EVAL("crypto.random_bytes(32) ~= crypto.random_bytes(32)", "true");
    EVAL("crypto.random_bytes(-1)",
         "raised:[string \"local a, b = crypto.random_bytes(-1)...\"]:1: bad argument #1 to "
         "'random_bytes' (expected 0 to 16777216)");
}

static void test_rsa_bad_keys(lua_State *L)
{
    EVAL("crypto.rsa_sha256_sign('not a key', 'data')", "nil:invalid rsa private key");
    EVAL("crypto.rsa_sha256_sign('-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE "
         "KEY-----\\n', 'data')",
         "nil:invalid rsa private key");
    EVAL("crypto.rsa_sha256_verify('nope', 'data', 'sig')", "nil:invalid rsa public key");
    EVAL("crypto.rsa_sha256_verify('-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END "
         "CERTIFICATE-----\\n', 'data', 'sig')",
         "nil:invalid rsa public key");
}

int main(void)
{
    for (int run = 0; run < 2; run++) {
        lua_State *L = new_state();
        int top = lua_gettop(L);
        test_digests(L);
        test_hmac(L);
        test_base64(L);
        test_random(L);
        test_rsa_bad_keys(L);
        CHECK(lua_gettop(L) == top);
        lua_close(L);
    }
    return sl_test_done("crypto");
}
