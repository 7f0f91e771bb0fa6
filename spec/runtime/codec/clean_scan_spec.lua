-- text.clean's scan of the clean prefix (sixteen bytes at a time with SSE2,
-- else eight): every byte that needs a change, at every offset of strings
-- long enough to cross two vectors, with the exact result written out.
local text = require("sluice.text")

describe("text.clean prefix scan", function()
  local cases = {
    { "\0", "" }, { "\1", "\\x01" }, { "\31", "\\x1f" }, { "\127", "\\x7f" },
    { "\xC0", "\u{FFFD}" }, { "\xFF", "\u{FFFD}" }, { "\xF0\x9F\x98", "\u{FFFD}" },
    { "\xED\xA0\x80", "\u{FFFD}\u{FFFD}\u{FFFD}" }, -- a surrogate: three maximal subparts
  }
  local kept = { "\t", "\n", "\r", "~", " ", "é", "\u{FFFD}", "😀" }

  it("changes exactly the bad byte sequence at every offset", function()
    for _, case in ipairs(cases) do
      for len = 1, 40 do
        for pos = 1, len do
          local s = string.rep("a", pos - 1) .. case[1] .. string.rep("b", len - pos)
          local want = string.rep("a", pos - 1) .. case[2] .. string.rep("b", len - pos)
          local got, n = text.clean(s)
          assert.are.equal(want, got, ("%q at %d of %d"):format(case[1], pos, len))
          assert.is_true(n >= 1)
        end
      end
    end
  end)

  it("keeps tab, newline, carriage return and valid UTF-8 at every offset", function()
    for _, k in ipairs(kept) do
      for len = 1, 40 do
        for pos = 1, len do
          local s = string.rep("a", pos - 1) .. k .. string.rep("b", len - pos)
          local got, n = text.clean(s)
          assert.are.equal(s, got)
          assert.are.equal(0, n)
        end
      end
    end
  end)

  it("finds a bad byte after a long clean run and after a kept control", function()
    local s = string.rep("x", 1000) .. "\n" .. string.rep("y", 37) .. "\1" .. string.rep("z", 20)
    assert.are.equal(string.rep("x", 1000) .. "\n" .. string.rep("y", 37) .. "\\x01" .. string.rep("z", 20),
      (text.clean(s)))
  end)
end)
