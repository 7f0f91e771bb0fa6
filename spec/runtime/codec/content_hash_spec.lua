-- crypto.content_hash: the sync engine's change detection. In one walk it
-- cleans the document in place (the text.clean_tree policy) and hashes a
-- tagged, length-prefixed form of its canonical content with XXH3-128. The
-- expected digests were computed outside sluice: the serialisation built by
-- hand (Python struct.pack, shown beside each) and hashed by a C program
-- calling libxxhash's XXH3_128bits + XXH128_canonicalFromHash.
local crypto = require("sluice.crypto")
local json = require("sluice.json")

local hash = crypto.content_hash

describe("crypto.content_hash", function()
  it("is the XXH3-128 of the serialised tree, most significant byte first", function()
    assert.are.equal("23fe8b8876a707cc21f5f617957fff58", hash({})) -- b"oe"
    -- o k"_id" s"a" k"body" s"caf\u{FFFD} \\x01" k"n" d(1.5) k"tags" a(2) s"x" s"y" e e
    local t = { _id = "a", body = "caf\255 \1", n = 1.5, tags = { "x", "y" }, f = print }
    assert.are.equal("0fec245e05f7e6639ab410fc815b494a", hash(t))
  end)

  it("leaves the document cleaned, as text.clean_tree would, down to 32 levels", function()
    local t = { body = "caf\255 \1", list = { "ok", "nul\0" }, deep = {} }
    local inner = t.deep
    for _ = 1, 40 do inner.next = { s = "x\1" }; inner = inner.next end
    hash(t)
    assert.are.equal("caf\u{FFFD} \\x01", t.body)
    assert.are.same({ "ok", "nul" }, t.list)
    -- t is depth 0, t.deep depth 1: node `level` is at depth level + 1, and
    -- tables 32 levels down are not cleaned
    local level, node = 1, t.deep.next
    while node do
      assert.are.equal(level + 1 < 32 and "x\\x01" or "x\1", node.s, "level " .. level)
      level, node = level + 1, node.next
    end
    -- a clean document hashes the same the second time
    assert.are.equal(hash(t), hash(t))
  end)

  it("follows the canonical JSON: key order, left-out values, null, -0", function()
    local a = hash({ x = 1, y = { z = "v" } })
    assert.are.equal(a, hash({ y = { z = "v" }, x = 1 }))
    assert.are.equal(hash({ x = 1 }), hash({ x = 1, f = print, co = coroutine.create(print) }))
    assert.are.equal(hash({ 1, json.null, 3 }), hash({ 1, print, 3 })) -- null keeps positions
    assert.are.equal(hash({ x = 0 }), hash({ x = -0.0 }))
    assert.are.equal(hash({ [2] = "b", [1] = "a" }), hash({ "a", "b" }))
    assert.are.equal(hash({ "a", "b" }), hash(json.array({ "a", "b" })))
    -- keys that are not exactly 1..n make an object, whose number keys are their text
    assert.are.equal(hash({ ["1"] = "a", ["2"] = "b", ["4"] = "d" }), hash({ "a", "b", nil, "d" }))
    assert.are.equal(hash({ ["0"] = "z", ["1"] = "a" }), hash({ [0] = "z", "a" }))
    local long, marked = {}, json.array({})
    for k = 1, 40 do long[k] = "v" .. k; marked[k] = "v" .. k end
    assert.are.equal(hash(long), hash(marked))
    assert.are_not.equal(hash(long), hash({ unpack(long, 1, 39) }))
    assert.matches("^%x+$", a)
    assert.are.equal(32, #a)
  end)

  it("tells apart what canonical JSON tells apart", function()
    local seen = {}
    local docs = {
      {}, json.array({}), { x = 1 }, { x = 2 }, { x = "1" }, { x = true }, { x = false },
      { x = json.null }, { x = {} }, { x = json.array({}) }, { a = "bc" }, { ab = "c" },
      { x = { "a", "b" } }, { x = { "ab" } }, { x = { "a" }, y = "b" }, { [1.5] = "a" },
      { ["1"] = "x" }, { "x" }, { x = 0.1 }, { x = 0.1 + 2 ^ -55 }, { x = "caf\u{FFFD}" },
    }
    for i, d in ipairs(docs) do
      local h = assert(hash(d))
      assert.is_nil(seen[h], "doc " .. i .. " hashes like doc " .. tostring(seen[h]))
      seen[h] = i
    end
  end)

  it("reports what json.encode_canonical reports, and rejects a non-table", function()
    local cycle = {}
    cycle.self = cycle
    local many = {}
    for k = 1, 40 do many["k" .. k] = k end
    many[1], many["1"] = "a", "b"
    for _, bad in ipairs({
      { x = 0 / 0 }, { x = math.huge }, { [math.huge] = 1 }, { [true] = 1 }, { [1] = "a", ["1"] = "b" },
      many, cycle, json.array({ 1, x = 2 }), json.array({ [100] = 1 }), { x = { { y = -math.huge } } },
    }) do
      local want = { json.encode_canonical(bad) }
      assert.is_nil(want[1])
      assert.are.same(want, { hash(bad) })
    end
    assert.has_error(function() hash("s") end)
  end)

  it("hashes documents larger than its kept buffer, and small ones after them", function()
    local big = string.rep("0123456789abcdef", 200000) -- 3.2 MB: the buffer grows, then is freed
    local h1 = hash({ body = big })
    assert.are.equal(h1, hash({ body = big }))
    assert.are_not.equal(h1, hash({ body = big .. "!" }))
    assert.are.equal("23fe8b8876a707cc21f5f617957fff58", hash({}))
  end)

  it("hashes a wide object (the general path) the same in any insertion order", function()
    local a, b = {}, {}
    for k = 1, 100 do a["k" .. k] = k; a[k + 0.5] = "n" .. k end
    for k = 100, 1, -1 do b[k + 0.5] = "n" .. k; b["k" .. k] = k end
    assert.are.equal(hash(a), hash(b))
    b.k50 = "changed"
    assert.are_not.equal(hash(a), hash(b))
  end)
end)
