-- Bounded queues push back on a fast producer.
local task = require("sluice.task")
local queue = require("sluice.queue")

describe("sluice.queue", function()
  it("keeps order and never holds more than max_items", function()
    local q = queue.new(3)
    local max_seen, got = 0, {}
    local producer = task.spawn(function()
      for i = 1, 50 do
        q:push(i)
        if q:length() > max_seen then max_seen = q:length() end
      end
      q:close()
    end)
    local consumer = task.spawn(function()
      while true do
        local v = q:pop()
        if v == nil then break end
        got[#got + 1] = v
        if v % 7 == 0 then task.sleep(0.001) end
      end
    end)
    assert.is_true((producer:join()))
    assert.is_true((consumer:join()))
    assert.are.equal(50, #got)
    for i = 1, 50 do assert.are.equal(i, got[i]) end
    assert.are.equal(3, max_seen)
  end)

  it("bounds by bytes but lets one oversized item through alone", function()
    local q = queue.new(100, 10)
    local order = {}
    local p = task.spawn(function()
      q:push("a", 6); order[#order + 1] = "pushed a"
      q:push("b", 6); order[#order + 1] = "pushed b" -- waits: 12 > 10
      q:push("huge", 50); order[#order + 1] = "pushed huge"
      q:close()
    end)
    task.yield()
    assert.are.same({ "pushed a" }, order)
    assert.are.equal("a", q:pop())
    assert.are.equal("b", q:pop())
    assert.are.equal("huge", q:pop())
    assert.is_nil(q:pop())
    assert.is_true((p:join()))
  end)

  it("wakes a waiting consumer with nil on close, and refuses later pushes", function()
    local q = queue.new(1)
    local c = task.spawn(function() return q:pop() end)
    task.yield()
    q:close()
    local ok, v = c:join()
    assert.is_true(ok)
    assert.is_nil(v)
    assert.are.same({ nil, "closed" }, { q:push(1) })
  end)

  it("skips a waiter that was cancelled", function()
    local q = queue.new(1)
    local a = task.spawn(function() return q:pop() end)
    local b = task.spawn(function() return q:pop() end)
    task.yield()
    a:cancel()
    q:push("x")
    local ok, v = b:join()
    assert.is_true(ok)
    assert.are.equal("x", v)
  end)
end)
