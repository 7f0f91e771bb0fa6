--- Bench: PostgreSQL rows out through sluice, at 100k and 1M rows.
--
-- Starts a throwaway PostgreSQL 15 (spec/fixtures/servers/postgres.sh),
-- fills one table per size with generated rows of eight columns (bigint key,
-- text, int, numeric, bool, timestamptz, text[], ~100 bytes of text), then
-- measures, for each size:
--   driver  sluice.pg cursor alone (fetch_size 5000), in this process
--   ndjson  `sluice sync --ndjson /dev/null`: connector + engine + state DB
--   es      `sluice sync` into bench/discard.c (a minimal Elasticsearch that
--           stores nothing), when a C compiler can build it
-- Rows/s and the peak RSS of the sync process (/usr/bin/time %M): flat
-- from 100k to 1M rows means memory does not follow the table's size.
-- Usage: sluice lua bench/db_pg.lua [ROWS ...]   (default 100000 1000000)
-- Prints one JSON line per measurement, then a table.
package.path = "./?.lua;" .. package.path
local pg = require("sluice.pg")
local task = require("sluice.task")
local json = require("sluice.json")
local server_mod = require("spec.support.postgres")

local sizes = {}
for i, a in ipairs(arg or {}) do sizes[i] = assert(tonumber(a), "ROWS must be numbers") end
if #sizes == 0 then sizes = { 100000, 1000000 } end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local bin = sh("readlink -f /proc/$PPID/exe"):gsub("%s+$", "")
local server = assert(server_mod.start())
local results = {}

local function record(r)
  results[#results + 1] = r
  print(json.encode(r))
end

local dir = sh("mktemp -d /tmp/sluice-bench.XXXXXX"):gsub("%s+$", "")
local discard_port, discard_pid, discard_pipe
local ok, err = pcall(function()
  local conn = assert(pg.connect(server_mod.options(server)))
  -- the Elasticsearch stand-in, if it builds
  if os.execute("cc -O2 -o " .. dir .. "/discard bench/discard.c 2>/dev/null") == 0 then
    -- it prints its port, then its PID; its stdout stays open until it is killed
    discard_pipe = io.popen("exec " .. dir .. "/discard 0")
    discard_port = tonumber(discard_pipe:read("*l"))
    discard_pid = tonumber(discard_pipe:read("*l"))
  end

  for _, n in ipairs(sizes) do
    local tname = "bench_" .. n
    local t0 = task.now()
    assert(conn:query("CREATE TABLE " .. tname .. " AS SELECT g::bigint AS id, 'item ' || g AS name, "
      .. "(g % 1000)::int AS qty, (g % 100000) / 100.0::numeric(10,2) AS price, g % 2 = 0 AS active, "
      .. "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS updated_at, "
      .. "ARRAY['tag' || (g % 7), 'tag' || (g % 11)] AS tags, "
      .. "repeat(md5(g::text), 3) AS payload FROM generate_series(1, $1::int) g", n))
    assert(conn:query("ALTER TABLE " .. tname .. " ADD PRIMARY KEY (id)"))
    assert(conn:query("VACUUM ANALYZE " .. tname))
    io.stderr:write(string.format("created %s in %.1fs\n", tname, task.now() - t0))

    -- driver alone
    collectgarbage()
    t0 = task.now()
    local cur = assert(conn:cursor("SELECT * FROM " .. tname, nil, { fetch_size = 5000 }))
    local got = 0
    while true do
      local rows = assert(cur:fetch())
      if #rows == 0 then break end
      got = got + #rows
    end
    cur:close()
    local dt = task.now() - t0
    assert(got == n)
    record({ leg = "driver", rows = n, seconds = dt, rows_per_s = n / dt })

    -- the whole sync, through the CLI
    local function sync_leg(leg, es_block, extra)
      local cfgfile = string.format("%s/%s-%d.yml", dir, leg, n)
      local f = assert(io.open(cfgfile, "w"))
      f:write(string.format([[
data_dir: ./data-%s-%d
%sconnectors:
  - id: bench
    service_type: postgresql
    index_name: bench-pg-%s-%d
    configuration:
      host: 127.0.0.1
      port: %d
      username: postgres
      password: %s
      database: postgres
      tables: %s
      fetch_size: 5000
]], leg, n, es_block, leg, n, server.port, server_mod.PASSWORD, tname))
      f:close()
      local out = sh(string.format("/usr/bin/time -f 'TIME %%e %%M %%U %%S' %s sync %s --json --no-progress %s 2>&1",
        bin, cfgfile, extra))
      -- CPU time of the sync process alone (user + system): a shared machine
      -- distorts it less than wall-clock time
      local secs, kb, user, system = out:match("TIME ([%d.]+) (%d+) ([%d.]+) ([%d.]+)")
      local cpu = tonumber(user) + tonumber(system)
      -- the summary is the line holding "status" (log lines are JSON too)
      local summary = {}
      for line in out:gmatch("[^\n]+") do
        if line:find('"status"', 1, true) and line:sub(1, 1) == "{" then summary = json.decode(line) end
      end
      assert(summary.status == "completed", out)
      assert(summary.indexed == n, out)
      record({ leg = leg, rows = n, seconds = tonumber(secs), rows_per_s = n / tonumber(secs),
        cpu_seconds = cpu, rows_per_cpu_s = n / math.max(cpu, 0.01), peak_rss_kb = tonumber(kb) })
    end
    sync_leg("ndjson", "", "--ndjson /dev/null")
    if discard_port then
      sync_leg("es", "elasticsearch:\n  host: http://127.0.0.1:" .. discard_port .. "\n", "")
    end
    assert(conn:query("DROP TABLE " .. tname))
  end
  conn:close()
end)
if discard_pid then os.execute("kill " .. discard_pid); discard_pipe:close() end
os.execute("rm -rf " .. dir)
server_mod.stop(server)
if not ok then error(err, 0) end

print(string.format("\n%-8s %10s %10s %12s %12s %14s", "leg", "rows", "seconds", "rows/s", "rows/cpu-s", "peak RSS (MB)"))
for _, r in ipairs(results) do
  print(string.format("%-8s %10d %10.2f %12.0f %12s %14s", r.leg, r.rows, r.seconds, r.rows_per_s,
    r.rows_per_cpu_s and string.format("%.0f", r.rows_per_cpu_s) or "-",
    r.peak_rss_kb and string.format("%.1f", r.peak_rss_kb / 1024) or "-"))
end
