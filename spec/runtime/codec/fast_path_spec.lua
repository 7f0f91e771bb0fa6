-- The codecs' fast paths for the sync engine's per-document work: the word-
-- at-a-time string scans (every escape at every offset of a word), the
-- one-pass canonical object (against the general path it falls back to
-- beyond 32 keys), crypto.sha256_canonical and text.clean_tree.
local json = require("sluice.json")
local crypto = require("sluice.crypto")
local text = require("sluice.text")

-- The JSON string that the encoder must write for s when s is valid UTF-8.
local function quoted(s)
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    local short = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
      ["\r"] = "\\r", ["\t"] = "\\t" }
    return short[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

describe("codec fast paths", function()
  describe("json string scan", function()
    it("escapes a special byte at every offset of a word, in strings of every length", function()
      for _, special in ipairs({ '"', "\\", "\n", "\0", "\31", "\127", "é", "\xff" }) do
        for len = 1, 24 do
          for pos = 1, len do
            local s = string.rep("a", pos - 1) .. special .. string.rep("b", len - pos)
            local want = special == "\xff" and quoted(s:gsub("\xff", "\u{FFFD}")) or quoted(s)
            assert.are.equal(want, json.encode(s))
            assert.are.equal(want, json.encode_canonical(s))
          end
        end
      end
    end)

    it("passes plain and multi-byte text through unchanged", function()
      local s = string.rep("plain ascii text ", 100) .. "Grüße 世界 👋"
      assert.are.equal('"' .. s .. '"', json.encode(s))
    end)
  end)

  describe("canonical objects", function()
    it("sorts keys bytewise and writes the same bytes on both sides of the 32-key limit", function()
      for _, n in ipairs({ 1, 2, 31, 32, 33, 200 }) do
        local t, keys = {}, {}
        for k = 1, n do
          local key = "k" .. ((k * 7919) % 1009)
          t[key] = k
          keys[#keys + 1] = key
        end
        table.sort(keys)
        local parts = {}
        for k, key in ipairs(keys) do parts[k] = '"' .. key .. '":' .. t[key] end
        assert.are.equal("{" .. table.concat(parts, ",") .. "}", json.encode_canonical(t))
      end
    end)

    it("orders number keys by their text and leaves out functions", function()
      local t = { [10] = "ten", [2.5] = "x", b = true, a = { c = 1, [3] = json.null }, f = print }
      assert.are.equal('{"10":"ten","2.5":"x","a":{"3":null,"c":1},"b":true}', json.encode_canonical(t))
    end)

    it("reports a key clash, an infinite key and a bad key type on both paths", function()
      local function with_filler(t, extra)
        for k = 1, extra do t["z" .. k] = k end
        return t
      end
      for _, extra in ipairs({ 0, 40 }) do
        assert.are.same({ nil, "duplicate key after number-to-string conversion" },
          { json.encode_canonical(with_filler({ [1] = "a", ["1"] = "b", x = 1 }, extra)) })
        assert.are.same({ nil, "cannot encode nan or inf" },
          { json.encode_canonical(with_filler({ [math.huge] = 1, x = 1 }, extra)) })
        assert.are.same({ nil, "object key must be a string or a number" },
          { json.encode_canonical(with_filler({ [true] = 1, x = 1 }, extra)) })
      end
    end)

    it("survives deep nesting and rejects a cycle", function()
      local t = { v = 1 }
      for _ = 1, 900 do t = { a = t, b = "x" } end
      local s = assert(json.encode_canonical(t))
      assert.are.equal(900 * #'{"a":' + #'{"v":1}' + 900 * #',"b":"x"}', #s)
      local c = { x = 1 }
      c.self = c
      assert.are.same({ nil, "nesting too deep (or a reference cycle)" }, { json.encode_canonical(c) })
    end)

    it("keeps the encoder reusable after a failure and after a large document", function()
      assert.is_nil(json.encode_canonical({ f = { [true] = 1 } }))
      local big = string.rep("x", 3 * 1024 * 1024)
      assert.are.equal(#big + 2, #json.encode(big))
      assert.are.equal('{"a":1}', json.encode_canonical({ a = 1 }))
    end)
  end)

  describe("crypto.sha256_canonical", function()
    it("is the hex SHA-256 of the canonical encoding", function()
      local doc = { _id = "doc-1", title = "Grüße", size = 3, tags = json.array({ "a", "b" }), body = "x\ny" }
      assert.are.equal(crypto.hex(crypto.sha256(json.encode_canonical(doc))), crypto.sha256_canonical(doc))
      assert.are.equal("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        crypto.sha256_canonical({})) -- sha256("{}")
      assert.are.equal(crypto.hex(crypto.sha256('"s"')), crypto.sha256_canonical("s"))
    end)

    it("returns the encoder's error and keeps working", function()
      assert.are.same({ nil, "cannot encode nan or inf" }, { crypto.sha256_canonical({ x = 0 / 0 }) })
      assert.are.same({ nil, "object key must be a string or a number" },
        { crypto.sha256_canonical({ [{}] = 1 }) })
      assert.are.equal(crypto.hex(crypto.sha256("null")), crypto.sha256_canonical(nil))
      local big = { body = string.rep("y", 2 * 1024 * 1024) }
      assert.are.equal(crypto.hex(crypto.sha256(json.encode_canonical(big))), crypto.sha256_canonical(big))
      assert.has_error(function() crypto.sha256_canonical() end)
    end)

    it("agrees with the digests and hex that it replaces", function()
      assert.are.equal("900150983cd24fb0d6963f7d28e17f72", crypto.hex(crypto.md5("abc")))
      assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        crypto.hex(crypto.sha256("abc")))
      local long = string.rep("\0\255", 300)
      assert.are.equal(string.rep("00ff", 300), crypto.hex(long))
    end)
  end)

  describe("text.clean_tree", function()
    it("cleans every string value in place and counts the strings changed", function()
      local inner = { "ok", "bad\0", { deep = "caf\xE9" } }
      local t = { a = "fine", b = "bell\7", n = 5, list = inner, ["k\0"] = "x" }
      assert.are.equal(3, text.clean_tree(t))
      assert.are.equal("fine", t.a)
      assert.are.equal("bell\\x07", t.b)
      assert.are.equal(5, t.n)
      assert.are.equal(inner, t.list)
      assert.are.same({ "ok", "bad", { deep = "caf\u{FFFD}" } }, inner)
      assert.are.equal("x", t["k\0"]) -- keys are left as they are
      assert.are.equal(0, text.clean_tree(t))
    end)

    it("applies the same policy as text.clean at every offset of a word", function()
      for _, bad in ipairs({ "\0", "\1", "\127", "\xC0", "\xF0\x9F\x98" }) do
        for pos = 1, 17 do
          local s = string.rep("a", pos - 1) .. bad .. string.rep("b", 17 - pos)
          local t = { s }
          text.clean_tree(t)
          assert.are.equal((text.clean(s)), t[1])
        end
      end
    end)

    it("stops 32 levels down and at a cycle, and rejects a non-table", function()
      local root = {}
      local t = root
      for _ = 1, 40 do
        t.s = "x\0"
        t.child = {}
        t = t.child
      end
      assert.are.equal(32, text.clean_tree(root))
      local c = { s = "y\0" }
      c.self = c
      assert.are.equal(1, text.clean_tree(c))
      assert.are.equal("y", c.s)
      assert.has_error(function() text.clean_tree("s") end)
    end)
  end)
end)
