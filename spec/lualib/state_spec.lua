-- The state database's per-document statements: queued puts are seen by
-- every read as if written at once, touch_if_same decides "unchanged" by
-- the stored hash, and stale ids are walked from a cursor.
local state_mod = require("sluice.state")
local cli = require("spec.support.cli")

describe("sluice.state", function()
  local dir, st

  before_each(function()
    dir = cli.tmpdir()
    st = assert(state_mod.open(dir))
  end)
  after_each(function()
    st:close()
    cli.rm_rf(dir)
  end)

  it("queues puts inside a transaction and shows them to every read", function()
    st:begin()
    for i = 1, 130 do st:put("c", "id" .. i, "h" .. i, 1) end
    assert.are.equal("h130", st:hash("c", "id130")) -- still queued
    assert.are.equal("h5", st:hash("c", "id5"))     -- written with a batch
    assert.is_nil(st:hash("c", "nope"))
    st:put("c", "id130", "again", 1)
    assert.are.equal("again", st:hash("c", "id130"))
    assert.are.equal(130, st:count("c"))
    st:commit()
    assert.are.equal("again", st:hash("c", "id130"))
  end)

  it("drops queued puts on rollback", function()
    st:begin()
    st:put("c", "a", "h", 1)
    st:rollback()
    assert.is_nil(st:hash("c", "a"))
    assert.are.equal(0, st:count("c"))
    st:put("c", "b", "h", 1) -- outside a transaction: written at once
    assert.are.equal(1, st:count("c"))
  end)

  it("keeps connectors apart in the queue", function()
    st:begin()
    st:put("c1", "a", "one", 1)
    st:put("c2", "a", "two", 1)
    assert.are.equal("one", st:hash("c1", "a"))
    assert.are.equal("two", st:hash("c2", "a"))
    st:commit()
    assert.are.same({ 1, 1 }, { st:count("c1"), st:count("c2") })
  end)

  it("marks a document seen only when its stored hash is the same", function()
    st:begin()
    st:put("c", "a", "h1", 1)
    st:put("c", "b", "h1", 1)
    st:commit()
    st:begin()
    assert.is_true(st:touch_if_same("c", "a", "h1", 2))
    assert.is_false(st:touch_if_same("c", "b", "h2", 2))
    assert.is_false(st:touch_if_same("c", "missing", "h1", 2))
    st:put("c", "q", "hq", 2) -- queued: decided by the queued hash
    assert.is_true(st:touch_if_same("c", "q", "hq", 2))
    st:put("c", "r", "hr", 2)
    assert.is_false(st:touch_if_same("c", "r", "other", 2))
    st:commit()
    assert.are.same({ "b" }, st:stale("c", 2, 10))
  end)

  it("walks stale ids in order from a cursor", function()
    st:begin()
    for i = 1, 9 do st:put("c", "s" .. i, "h", i % 3 == 0 and 7 or 1) end
    st:commit()
    assert.are.same({ "s1", "s2", "s4" }, st:stale("c", 7, 3))
    assert.are.same({ "s5", "s7", "s8" }, st:stale("c", 7, 3, "s4"))
    assert.are.same({}, st:stale("c", 7, 3, "s8"))
    assert.are.same({}, st:stale("other", 7, 3))
  end)
end)
