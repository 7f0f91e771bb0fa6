--- Bench driver: a synthetic Lua source straight into the bulk indexer
-- (sluice.sink.es) over HTTP, without the sync engine, so the figure is
-- the indexer's own: Lua table -> C NDJSON -> libcurl -> server -> decided.
-- Usage: sluice lua bench/sink_direct.lua URL N [SIZE [MAX_ACTIONS
--        [MAX_BYTES [CONCURRENCY [FLUSH_EVERY]]]]]
-- Prints one JSON line: docs, seconds, docs_per_s, requests, failed.
local es = require("sluice.sink.es")
local task = require("sluice.task")
local json = require("sluice.json")

local url, n = arg[1], tonumber(arg[2])
local size = tonumber(arg[3] or "1024")
local max_actions = tonumber(arg[4] or "1000")
local max_bytes = tonumber(arg[5] or tostring(5 * 1024 * 1024))
local concurrency = tonumber(arg[6] or "2")
local flush_every = tonumber(arg[7] or "0")
assert(url and n, "usage: sink_direct.lua URL N [SIZE [MAX_ACTIONS [MAX_BYTES [CONCURRENCY [FLUSH_EVERY]]]]]")

local c = es.client { url = url, index = "bench", max_actions = max_actions,
  max_bytes = max_bytes, concurrency = concurrency }
local filler = string.rep("lorem ipsum dolor sit amet ", math.ceil(size / 27))
local hash = string.rep("0123456789abcdef", 4)
local fmt = string.format
local failed = 0
local t0 = task.now()
for i = 1, n do
  local prefix = fmt("document %d of seed a ", i)
  local ok, err = c:put({
    _id = fmt("doc-%d", i),
    _timestamp = "2024-01-01T00:00:00.000Z",
    title = fmt("Title %d", i),
    url = fmt("https://example.com/docs/%d", i),
    size = i,
    body = prefix .. filler:sub(1, size - 160 - #prefix),
  }, hash)
  if not ok then error(err) end
  if flush_every > 0 and i % flush_every == 0 then
    failed = failed + #assert(c:flush())
  end
end
failed = failed + #assert(c:flush())
local dt = task.now() - t0
local st = c:stats()
c:close()
print(json.encode({ docs = n, seconds = dt, docs_per_s = n / dt, requests = st.requests,
  indexed = st.indexed, failed = failed, mb = st.bytes / 1e6 }))
