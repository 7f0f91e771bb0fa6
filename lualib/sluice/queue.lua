--- Bounded queues between tasks.
-- A producer that gets ahead waits in push() until the consumer catches up,
-- so memory is bounded by the queue's limits (items and bytes), never by how
-- much a source can produce.
-- @module sluice.queue
local task = require("sluice.task")

local Queue = {}
Queue.__index = Queue

local M = {}

--- Creates a queue.
-- @param max_items most items held at once (default 1000)
-- @param max_bytes most bytes held at once, as told by push's size (default unlimited)
function M.new(max_items, max_bytes)
  return setmetatable({
    items = {}, sizes = {}, head = 1, tail = 0, bytes = 0,
    max_items = max_items or 1000, max_bytes = max_bytes or math.huge,
    pushers = {}, poppers = {}, closed = false,
  }, Queue)
end

-- A waiter may have been cancelled meanwhile: skip it.
local function wake_one(list)
  while #list > 0 do
    local t = table.remove(list, 1)
    if t:status() == "waiting" then task.wake(t); return end
  end
end

local function wake_all(list)
  while #list > 0 do wake_one(list) end
end

function Queue:length() return self.tail - self.head + 1 end

local function full(self, size)
  local n = self:length()
  if n == 0 then return false end -- an item bigger than max_bytes goes alone
  return n >= self.max_items or self.bytes + size > self.max_bytes
end

--- Adds an item, waiting while the queue is full.
-- @return true, or nil, "closed"
function Queue:push(item, size)
  size = size or 0
  while full(self, size) and not self.closed do
    self.pushers[#self.pushers + 1] = task.current()
    task.suspend()
  end
  if self.closed then return nil, "closed" end
  self.tail = self.tail + 1
  self.items[self.tail], self.sizes[self.tail] = item, size
  self.bytes = self.bytes + size
  wake_one(self.poppers)
  return true
end

--- Takes the oldest item, waiting while the queue is empty.
-- @return the item, or nil once the queue is closed and drained
function Queue:pop()
  while self:length() == 0 do
    if self.closed then return nil end
    self.poppers[#self.poppers + 1] = task.current()
    task.suspend()
  end
  local h = self.head
  local item = self.items[h]
  self.bytes = self.bytes - self.sizes[h]
  self.items[h], self.sizes[h] = nil, nil
  self.head = h + 1
  wake_one(self.pushers)
  return item
end

--- No more pushes; pop() drains what is left, then returns nil.
function Queue:close()
  self.closed = true
  wake_all(self.poppers)
  wake_all(self.pushers)
end

return M
