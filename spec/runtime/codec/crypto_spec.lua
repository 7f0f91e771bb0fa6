-- sluice.crypto from Lua, inside a task, with RSA checked against the
-- openssl CLI: keys are generated at test time, our signatures must verify
-- with `openssl dgst -sha256 -verify` and equal the CLI's own signatures
-- byte for byte (PKCS#1 v1.5 is deterministic).
local crypto = require("sluice.crypto")

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe("sluice.crypto", function()
  it("hashes and encodes", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     crypto.hex(crypto.sha256("abc")))
    assert.are.equal("Zm9vYmFy", crypto.base64_encode("foobar"))
    assert.are.same({nil, "invalid base64"}, {crypto.base64_decode("Zm9v*")})
    -- a JWT header, as RFC 7515 appendix A.1 encodes it
    assert.are.equal("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9",
                     crypto.base64url_encode('{"typ":"JWT",\r\n "alg":"HS256"}'))
    local r = crypto.random_bytes(64)
    assert.are.equal(64, #r)
    assert.are.equal(r, crypto.base64url_decode(crypto.base64url_encode(r)))
    assert.are.equal(r, crypto.base64_decode(crypto.base64_encode(r)))
  end)

  describe("RSA SHA-256", function()
    local dir, have_openssl
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) == 0)
      local _, ok = sh("openssl version")
      have_openssl = ok
      if not ok then return end
      assert(select(2, sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "
        .. dir .. "/key.pem")))
      assert(select(2, sh("openssl pkey -in " .. dir .. "/key.pem -pubout -out " .. dir ..
        "/pub.pem")))
      assert(select(2, sh("openssl pkey -in " .. dir .. "/key.pem -traditional -out " .. dir ..
        "/rsa.pem")))
      assert(select(2, sh("openssl rsa -in " .. dir .. "/key.pem -RSAPublicKey_out -out " ..
        dir .. "/rsapub.pem")))
      assert(select(2, sh("openssl req -new -x509 -key " .. dir .. "/key.pem -subj /CN=sluice " ..
        "-days 1 -out " .. dir .. "/cert.pem")))
      assert(select(2, sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "
        .. dir .. "/other.pem")))
      assert(select(2, sh("openssl pkey -in " .. dir .. "/other.pem -pubout -out " .. dir ..
        "/otherpub.pem")))
      assert(select(2, sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 " ..
        "-aes256 -pass pass:secret -out " .. dir .. "/enc.pem")))
      assert(select(2, sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
        .. dir .. "/ec.pem")))
    end)
    teardown(function()
      if dir then os.execute("rm -rf " .. dir) end
    end)

    it("signs what openssl verifies, with the same bytes", function()
      if not have_openssl then return pending("openssl CLI not installed") end
      local data = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0"
      spit(dir .. "/data", data)
      local sig = assert(crypto.rsa_sha256_sign(slurp(dir .. "/key.pem"), data))
      assert.are.equal(256, #sig)
      spit(dir .. "/sig", sig)
      local out, ok = sh("openssl dgst -sha256 -verify " .. dir .. "/pub.pem -signature " ..
        dir .. "/sig " .. dir .. "/data")
      assert.is_truthy(ok)
      assert.are.equal("Verified OK\n", out)
      assert(select(2, sh("openssl dgst -sha256 -sign " .. dir .. "/key.pem -out " .. dir ..
        "/clisig " .. dir .. "/data")))
      assert.are.equal(slurp(dir .. "/clisig"), sig)
      -- the PKCS#1 form of the same key gives the same signature
      assert.are.equal(sig, crypto.rsa_sha256_sign(slurp(dir .. "/rsa.pem"), data))
    end)

    it("verifies against SPKI, PKCS#1 and certificate public keys", function()
      if not have_openssl then return pending("openssl CLI not installed") end
      local data = "payload \0 with a NUL"
      local sig = assert(crypto.rsa_sha256_sign(slurp(dir .. "/key.pem"), data))
      for _, f in ipairs({"pub.pem", "rsapub.pem", "cert.pem"}) do
        local pem = slurp(dir .. "/" .. f)
        assert.is_true(crypto.rsa_sha256_verify(pem, data, sig), f)
        assert.is_false(crypto.rsa_sha256_verify(pem, data .. "x", sig), f)
        local bad = string.char((sig:byte(1) + 1) % 256) .. sig:sub(2)
        assert.is_false(crypto.rsa_sha256_verify(pem, data, bad), f)
        assert.is_false(crypto.rsa_sha256_verify(pem, data, sig:sub(2)), f)
        assert.is_false(crypto.rsa_sha256_verify(pem, data, ""), f)
      end
      assert.is_false(crypto.rsa_sha256_verify(slurp(dir .. "/otherpub.pem"), data, sig))
    end)

    it("refuses keys it cannot use, without prompting", function()
      if not have_openssl then return pending("openssl CLI not installed") end
      assert.are.same({nil, "invalid rsa private key"},
                      {crypto.rsa_sha256_sign(slurp(dir .. "/enc.pem"), "x")})
      assert.are.same({nil, "invalid rsa private key"},
                      {crypto.rsa_sha256_sign(slurp(dir .. "/ec.pem"), "x")})
      assert.are.same({nil, "invalid rsa private key"},
                      {crypto.rsa_sha256_sign(slurp(dir .. "/pub.pem"), "x")})
      assert.are.same({nil, "invalid rsa public key"},
                      {crypto.rsa_sha256_verify("garbage", "x", "y")})
      assert.has_error(function() crypto.rsa_sha256_sign(nil, "x") end)
      assert.has_error(function() crypto.rsa_sha256_verify(slurp(dir .. "/pub.pem"), "x") end)
    end)
  end)
end)
