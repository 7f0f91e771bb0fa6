--- The sync engine's per-document cost, printed as a table (a bench, not a
-- test: the machine is shared, so figures are printed, never asserted).
--
--   build/sluice lua bench/engine.lua [--bin build/sluice] [--sizes 100000,1000000]
--                                     [--runs 3]
--
-- The synthetic source (bench/connectors/synthetic.lua, ~1 KB documents, no
-- I/O) is synced into NDJSON on /dev/null (engine + the cheapest sink) and
-- into the embedded index, twice each: a first sync (everything new) and a
-- re-sync (everything unchanged: hash, state lookup, nothing written). Each
-- sync runs in its own process (`--one`), so its peak RSS (sys.maxrss) is
-- its own; with --runs R a row shows the median of R runs (the re-sync of
-- each run follows its own first sync). docs/s is over wall time inside the
-- process (startup excluded), cpu/doc over user+system CPU time.
local bin = os.getenv("SLUICE_BIN") or "./build/sluice"
local sizes = { 100000, 1000000 }
local runs = 1

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Child: one sync, one line of output.
if arg[1] == "--one" then
  local sink, n, data = arg[2], tonumber(arg[3]), arg[4]
  local sys = require("sluice.sys")
  local task = require("sluice.task")
  local config = require("sluice.config")
  local engine = require("sluice.engine")
  local path = data .. ".yml"
  local f = assert(io.open(path, "w"))
  f:write("data_dir: " .. data .. "\nconnectors:\n  - id: syn\n    service_type: synthetic\n" ..
    "    configuration:\n      count: " .. n .. "\n")
  f:close()
  local cfg = assert(config.load(path))
  local c0, t0 = os.clock(), task.now()
  local r = engine.sync(cfg, cfg.connectors[1], { ndjson = sink == "ndjson" and "/dev/null" or nil })
  local wall, cpu = task.now() - t0, os.clock() - c0
  local c = r.counters
  print(string.format("%s %.4f %.4f %d %d %d %d", r.status, wall, cpu, c.listed, c.indexed, c.unchanged,
    sys.maxrss()))
  return
end

local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--bin" then bin = arg[i + 1]; i = i + 1
  elseif a == "--sizes" then
    sizes = {}
    for n in arg[i + 1]:gmatch("%d+") do sizes[#sizes + 1] = tonumber(n) end
    i = i + 1
  elseif a == "--runs" then runs = tonumber(arg[i + 1]); i = i + 1
  else error("unknown argument " .. a .. " (see the header of bench/engine.lua)") end
  i = i + 1
end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local tmp = sh("mktemp -d /tmp/sluice-bench-engine.XXXXXX"):gsub("%s+$", "")

local function one(sink, n, data)
  local out = sh("env SLUICE_CONNECTORS_PATH=bench/connectors " .. q(bin) .. " lua bench/engine.lua --one " ..
    sink .. " " .. n .. " " .. q(data) .. " 2>/dev/null")
  local status, wall, cpu, listed, indexed, unchanged, rss =
    out:match("(%S+) (%S+) (%S+) (%d+) (%d+) (%d+) (%d+)")
  if not status then error("bench run failed: " .. out) end
  return { status = status, wall = tonumber(wall), cpu = tonumber(cpu), listed = tonumber(listed),
    indexed = tonumber(indexed), unchanged = tonumber(unchanged), rss = tonumber(rss) }
end

local function median(list, field)
  local v = {}
  for k, r in ipairs(list) do v[k] = r[field] end
  table.sort(v)
  return v[math.floor((#v + 1) / 2)]
end

print(string.format("%-7s %-9s %8s %9s %11s %10s %9s  %s", "sink", "phase", "docs", "wall s", "docs/s",
  "cpu us/doc", "peak MB", "status"))
for _, n in ipairs(sizes) do
  for _, sink in ipairs({ "ndjson", "index" }) do
    local first, again = {}, {}
    for r = 1, runs do
      local data = tmp .. "/data-" .. sink .. "-" .. n .. "-" .. r
      first[r] = one(sink, n, data)
      again[r] = one(sink, n, data)
      os.execute("rm -rf " .. q(data) .. " " .. q(data .. ".yml"))
    end
    for _, phase in ipairs({ { "first", first }, { "re-sync", again } }) do
      local list = phase[2]
      local wall, cpu = median(list, "wall"), median(list, "cpu")
      print(string.format("%-7s %-9s %8d %9.2f %11.0f %10.2f %9.1f  %s (%d indexed, %d unchanged)", sink,
        phase[1], n, wall, n / wall, cpu / n * 1e6, median(list, "rss") / 1024, list[1].status,
        list[1].indexed, list[1].unchanged))
    end
  end
end
os.execute("rm -rf " .. q(tmp))
