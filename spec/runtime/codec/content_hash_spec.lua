-- crypto.content_hash: the sync engine's change detection. It cleans the
-- document in place (text.clean_tree) and returns the XXH3-128 of its
-- canonical JSON as 32 hex digits. The expected digests were computed with
-- libxxhash's XXH3_128bits + XXH128_canonicalFromHash over the JSON texts
-- shown beside them (the same library, but an independent path: a C
-- program fed the literal text).
local crypto = require("sluice.crypto")
local json = require("sluice.json")

describe("crypto.content_hash", function()
  it("is the XXH3-128 of the canonical JSON, most significant byte first", function()
    assert.are.equal("dc7048f8f8747f561349cde127705c16", crypto.content_hash({})) -- {}
  end)

  it("hashes the cleaned document and leaves it cleaned", function()
    local t = { _id = "a", body = "caf\255 \1", n = 1.5, tags = { "x", "y" }, f = print }
    -- {"_id":"a","body":"caf\u{FFFD} \\x01","n":1.5,"tags":["x","y"]}
    assert.are.equal("27e690122492a2a1b01dbc7ce93d506a", crypto.content_hash(t))
    assert.are.equal("caf\u{FFFD} \\x01", t.body)
    assert.are.equal('{"_id":"a","body":"caf\u{FFFD} \\\\x01","n":1.5,"tags":["x","y"]}',
      json.encode_canonical(t))
    -- a clean document hashes the same the second time
    assert.are.equal("27e690122492a2a1b01dbc7ce93d506a", crypto.content_hash(t))
  end)

  it("ignores key order and changes with any value", function()
    local a = crypto.content_hash({ x = 1, y = { z = "v" } })
    assert.are.equal(a, crypto.content_hash({ y = { z = "v" }, x = 1 }))
    assert.are_not.equal(a, crypto.content_hash({ x = 1, y = { z = "w" } }))
    assert.are_not.equal(a, crypto.content_hash({ x = 2, y = { z = "v" } }))
    assert.matches("^%x+$", a)
    assert.are.equal(32, #a)
  end)

  it("reports what cannot be encoded, and rejects a non-table", function()
    assert.are.same({ nil, "cannot encode nan or inf" }, { crypto.content_hash({ x = 0 / 0 }) })
    local cycle = {}
    cycle.self = cycle
    assert.are.same({ nil, "nesting too deep (or a reference cycle)" }, { crypto.content_hash(cycle) })
    assert.has_error(function() crypto.content_hash("s") end)
  end)
end)
