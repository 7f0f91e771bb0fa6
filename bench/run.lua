--- The bench runner: one command, one table. Figures are printed, never
-- asserted (the machine is shared; see bench/README.md).
--
--   build/sluice lua bench/run.lua [--bin build/sluice] [--sizes 100000,1000000]
--                                  [--double]
--
-- Scenarios, each a separate process so its peak RSS is its own:
--   indexer  a synthetic Lua source of ~1 KB documents straight into the bulk
--            indexer (bench/sink_direct.lua): Lua table -> C NDJSON -> libcurl
--            -> server -> item decisions
--   sync     `sluice sync` of the synthetic connector (bench/connectors):
--            the whole engine (content hash, state database, commits every
--            500 documents) -> Elasticsearch sink
-- Both write to bench/discard.c, a C server that reads and discards bulk
-- bodies and answers one success item per action (the Python test double
-- cannot absorb this rate: with --double, a 100k `sync` into
-- `esd.py --discard` is added for comparison).
local bin = os.getenv("SLUICE_BIN") or "./build/sluice"
local sizes = { 100000, 1000000 }
local with_double = false

local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--bin" then bin = arg[i + 1]; i = i + 1
  elseif a == "--sizes" then
    sizes = {}
    for n in arg[i + 1]:gmatch("%d+") do sizes[#sizes + 1] = tonumber(n) end
    i = i + 1
  elseif a == "--double" then with_double = true
  else error("unknown argument " .. a .. " (see the header of bench/run.lua)") end
  i = i + 1
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local tmp = sh("mktemp -d /tmp/sluice-bench.XXXXXX"):gsub("%s+$", "")

local function cleanup() os.execute("rm -rf " .. q(tmp)) end

local discard = tmp .. "/discard"
local _, built = sh("cc -O2 -o " .. q(discard) .. " bench/discard.c 2>&1")
if not built then cleanup(); error("cannot compile bench/discard.c (is a C compiler installed?)") end

local function start(cmd)
  local p = assert(io.popen("exec " .. cmd))
  local port, pid = tonumber(p:read("*l")), tonumber(p:read("*l"))
  assert(port and pid, "server did not start: " .. cmd)
  return { url = "http://127.0.0.1:" .. port, pid = pid, p = p }
end

local function stop(s) os.execute("kill " .. s.pid); s.p:close() end

-- Runs cmd under /usr/bin/time; returns its stdout, peak RSS (KiB), wall,
-- user and system seconds.
local function timed(cmd)
  local tf = tmp .. "/time"
  local out = sh("/usr/bin/time -o " .. q(tf) .. " -f '%M %e %U %S' " .. cmd .. " 2>/dev/null")
  local f = assert(io.open(tf))
  local rss, wall, user, sys = f:read("*a"):match("(%d+) ([%d.]+) ([%d.]+) ([%d.]+)")
  f:close()
  return out, tonumber(rss), tonumber(wall), tonumber(user), tonumber(sys)
end

local rows = {}
local function row(name, n, wall, user, sys, rss, note)
  rows[#rows + 1] = string.format("%-8s %9d %8.2f %10.0f %8.2f %12.0f %8.1f  %s", name, n, wall, n / wall,
    user + sys, n / math.max(user + sys, 1e-9), rss / 1024, note or "")
end

local function sync_row(server, n, name, note)
  local data = tmp .. "/data-" .. name .. "-" .. n
  local cfg = tmp .. "/sync-" .. name .. "-" .. n .. ".yml"
  local f = assert(io.open(cfg, "w"))
  f:write("data_dir: " .. data .. "\nelasticsearch:\n  host: " .. server.url ..
    "\nconnectors:\n  - id: syn\n    service_type: synthetic\n    index_name: bench-" .. n ..
    "\n    configuration: { count: " .. n .. " }\n")
  f:close()
  local out, rss, wall, user, sys = timed("env SLUICE_CONNECTORS_PATH=bench/connectors " .. q(bin) ..
    " sync " .. q(cfg) .. " --json --no-progress")
  local status = out:match('"status":"([%w_]+)"') or "?"
  row(name, n, wall, user, sys, rss, (note or "") .. "status " .. status)
end

local server = start(q(discard) .. " 0")
for _, n in ipairs(sizes) do
  local out, rss, wall, user, sys = timed(q(bin) .. " lua bench/sink_direct.lua " .. server.url .. " " .. n)
  local requests = out:match('"requests":(%d+)') or "?"
  row("indexer", n, wall, user, sys, rss, requests .. " bulk requests")
  sync_row(server, n, "sync")
end
stop(server)

if with_double then
  local d = start("python3 spec/fixtures/esd.py --port 0 --discard")
  sync_row(d, 100000, "double", "esd.py --discard; ")
  stop(d)
end
cleanup()

print(string.format("sluice bench: ~1 KB documents into a discarding server, %s", bin))
print(string.format("%-8s %9s %8s %10s %8s %12s %8s  %s", "scenario", "docs", "wall s", "docs/s",
  "cpu s", "docs/cpu-s", "RSS MiB", "notes"))
for _, r in ipairs(rows) do print(r) end
print("docs/s is wall-clock; docs/cpu-s is per second of sluice's own CPU time (user+sys),")
print("which shared or busy machines distort less. RSS is the sluice process's peak.")
