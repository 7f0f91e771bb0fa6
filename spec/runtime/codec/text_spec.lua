-- sluice.text from Lua, inside a task: the hygiene policy on realistic and
-- hostile strings, truncation, and gunzip on what the gzip CLI writes
-- (including a concatenation of members and a bomb).
local text = require("sluice.text")

local function gzip(s)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  local p = assert(io.popen("gzip -c -n " .. path))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out
end

describe("sluice.text", function()
  describe("clean", function()
    it("leaves clean text alone", function()
      local s = "Grüße, 世界 👋🏽\tline\r\n"
      assert.are.same({s, 0}, {text.clean(s)})
    end)

    it("drops NUL, shows controls, replaces ill-formed UTF-8", function()
      assert.are.same({"ab", 1}, {text.clean("a\0b")})
      assert.are.same({"bell\\x07 esc\\x1b del\\x7f", 3}, {text.clean("bell\7 esc\27 del\127")})
      assert.are.same({"caf\u{FFFD}", 1}, {text.clean("caf\xE9")}) -- Latin-1 é
      assert.are.same({"\u{FFFD}\u{FFFD}\u{FFFD}", 3}, {text.clean("\xED\xA0\x80")})
      assert.are.same({"x\u{FFFD}y", 1}, {text.clean("x\xF0\x9F\x98y")})
      assert.are.same({"\\x01\u{FFFD}ok", 3}, {text.clean("\0\1\xFFok")})
    end)

    it("always yields valid UTF-8 with no control bytes but TAB, LF, CR", function()
      math.randomseed(7)
      for _ = 1, 3000 do
        local b = {}
        for i = 1, math.random(0, 32) do b[i] = string.char(math.random(0, 255)) end
        local out, n = text.clean(table.concat(b))
        assert.is_true(text.utf8_valid(out))
        assert.is_nil(out:find("[%z\1-\8\11\12\14-\31\127]"))
        assert.is_true(n >= 0)
        -- cleaning is idempotent
        assert.are.same({out, 0}, {text.clean(out)})
      end
    end)

    it("raises on misuse", function()
      assert.has_error(function() text.clean(nil) end)
      assert.has_error(function() text.truncate_utf8("x", -1) end)
      assert.has_error(function() text.gunzip("x", -5) end)
    end)
  end)

  describe("utf8_valid and truncate_utf8", function()
    it("checks well-formedness", function()
      assert.is_true(text.utf8_valid("😀 é"))
      assert.is_false(text.utf8_valid("\xC0\x80"))
      assert.is_false(text.utf8_valid("\xF4\x90\x80\x80"))
    end)

    it("never splits a character", function()
      local s = "añ😀z"
      assert.are.equal("añ😀z", text.truncate_utf8(s, 100))
      assert.are.equal("añ", text.truncate_utf8(s, 6))
      assert.are.equal("añ😀", text.truncate_utf8(s, 7))
      assert.are.equal("a", text.truncate_utf8(s, 2))
      assert.are.equal("", text.truncate_utf8(s, 0))
      for i = 0, #s do
        assert.is_true(text.utf8_valid(text.truncate_utf8(s, i)))
        assert.is_true(#text.truncate_utf8(s, i) <= i)
      end
    end)
  end)

  describe("gunzip", function()
    it("inflates gzip CLI output and concatenated members", function()
      local a, b = gzip("first part\n"), gzip(string.rep("second ", 1000))
      assert.is_true(text.is_gzip(a))
      assert.is_false(text.is_gzip("plain"))
      assert.are.equal("first part\n", text.gunzip(a))
      assert.are.equal("first part\n" .. string.rep("second ", 1000), text.gunzip(a .. b))
      assert.are.equal("", text.gunzip(gzip("")))
    end)

    it("reports truncated and corrupt data", function()
      local z = gzip(string.rep("abcdefgh", 4096))
      assert.are.same({nil, "truncated gzip data"}, {text.gunzip(z:sub(1, #z - 1))})
      assert.are.same({nil, "truncated gzip data"}, {text.gunzip(z:sub(1, 20))})
      assert.are.same({nil, "truncated gzip data"}, {text.gunzip("")})
      assert.are.same({nil, "corrupt gzip data"}, {text.gunzip("not gzip at all")})
      local flipped = z:sub(1, 30) .. string.char((z:byte(31) + 1) % 256) .. z:sub(32)
      local v, err = text.gunzip(flipped)
      assert.is_nil(v)
      assert.are.equal("corrupt gzip data", err)
      assert.are.same({nil, "corrupt gzip data"}, {text.gunzip(z .. "trailing")})
      assert.are.equal(string.rep("abcdefgh", 4096), text.gunzip(z .. "\0\0\0\0"))
    end)

    it("takes the trailer's size as a hint only, and builds the result once", function()
      local big, small = string.rep("0123456789abcdef", 8192), "tail\n"
      -- the last member's ISIZE (5) undersizes the first buffer: it grows
      assert.are.equal(big .. small, text.gunzip(gzip(big) .. gzip(small)))
      -- zero padding hides the trailer: sizes around the doubling steps
      for _, n in ipairs({ 1, 65535, 65536, 65537, 131072, 200001 }) do
        local s = string.rep("x", n - 1) .. "y"
        assert.are.equal(s, text.gunzip(gzip(s) .. "\0\0\0\0"), n)
        assert.are.equal(s, text.gunzip(gzip(s), n), n)
        assert.are.same({ nil, "too large" }, { text.gunzip(gzip(s), n - 1) }, n)
      end
      -- a forged length in the trailer is caught by zlib's check
      local z = gzip(big)
      local forged = z:sub(1, #z - 4) .. "\255\255\255\127"
      assert.are.same({ nil, "corrupt gzip data" }, { text.gunzip(forged) })
      -- 8 MB out costs the Lua heap one 8 MB string, not a pile of pieces
      local eight = gzip(string.rep("changelog line\n", 559241))
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local out = text.gunzip(eight)
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      assert.are.equal(8388615, #out)
      assert.is_true(grew < 8 * 1024 * 1.1, grew)
    end)

    it("stops a gzip bomb at the cap while inflating", function()
      local bomb = gzip(string.rep("\0", 32 * 1024 * 1024))
      assert.is_true(#bomb < 100 * 1024)
      local before = collectgarbage("count")
      assert.are.same({nil, "too large"}, {text.gunzip(bomb, 1024 * 1024)})
      -- at most the cap (plus one buffer) was ever built
      assert.is_true(collectgarbage("count") - before < 4 * 1024)
      assert.are.equal(32 * 1024 * 1024, #text.gunzip(bomb, 32 * 1024 * 1024))
      assert.are.same({nil, "too large"}, {text.gunzip(bomb, 32 * 1024 * 1024 - 1)})
    end)
  end)
end)
