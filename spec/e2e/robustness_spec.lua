-- What a user or a hostile environment does to the CLI: a second sync on
-- the same data_dir while one runs, an index file that cannot be read,
-- configuration values the runtime would only refuse half-way through a
-- sync, global options before commands that ignored them, and paths that
-- name FIFOs or devices.
local cli = require("spec.support.cli")
local fs = require("sluice.fs")
local json = require("sluice.json")

local function fs_config(dir, extra)
  return table.concat({
    "data_dir: ./data",
    "connectors:",
    "  - id: tree",
    "    service_type: filesystem",
    "    index_name: search-tree",
    "    configuration:",
    "      path: " .. (extra or (dir .. "/tree")),
    "",
  }, "\n")
end

describe("robustness", function()
  local dir, config

  before_each(function()
    dir = cli.tmpdir()
    assert(cli.sh("mkdir -p " .. cli.q(dir .. "/tree")) == 0)
    cli.write(dir .. "/tree/a.txt", "alpha aardvark\n")
    cli.write(dir .. "/tree/b.txt", "beta badger\n")
    config = dir .. "/sluice.yml"
    cli.write(config, fs_config(dir))
  end)
  after_each(function() cli.rm_rf(dir) end)

  -- Two syncs on one state database each take the documents the other one
  -- just recorded for stale and delete them: on a 21,889-file tree a
  -- second sync started during a --full one left 5,389 documents in the
  -- index, both exiting 0.
  it("refuses a sync while another one holds the data_dir, and runs once it is gone", function()
    assert(fs.mkdir_p(dir .. "/data"))
    local lock = assert(fs.lock(dir .. "/data/sync.lock"))
    local rc, out, err = cli.run({ "sync", config, "--json" })
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.are.equal("sluice: another sync is running on " .. dir .. "/data: nothing was synced\n", err)
    assert.is_false(fs.exists(dir .. "/data/index.db"))
    -- an export writes neither the index nor the state: it may run
    rc, out = cli.run({ "sync", config, "--ndjson", "-" })
    assert.are.equal(0, rc)
    assert.are.equal(2, select(2, out:gsub("\n", "")))
    assert.is_false(fs.exists(dir .. "/data/state.db"))
    assert.is_false(fs.exists(dir .. "/data/index.db"))
    lock:unlock()
    rc, out = cli.run({ "sync", config, "--json" })
    assert.are.equal(0, rc, out)
    local s = json.decode(out)
    assert.are.same({ "completed", 2, 2 }, { s.status, s.indexed, s.index_count })
    -- the lock is not left behind by the sync that took it
    local again = assert(fs.lock(dir .. "/data/sync.lock"))
    again:unlock()
  end)

  it("takes the lock in the engine too, for callers other than the CLI", function()
    local engine = require("sluice.engine")
    local cfg = assert(require("sluice.config").load(config))
    local conn = cfg.connectors[1]
    local held = assert(engine.lock(cfg.data_dir))
    local r = engine.sync(cfg, conn)
    assert.are.same({ "failed", "another sync is running on " .. cfg.data_dir .. ": nothing was synced" },
      { r.status, r.message })
    assert.is_false(fs.exists(cfg.data_dir .. "/index.db"))
    -- the holder may sync, saying so
    r = engine.sync(cfg, conn, { locked = true })
    assert.are.same({ "completed", 2 }, { r.status, r.counters.indexed })
    held:unlock()
    r = engine.sync(cfg, conn)
    assert.are.same({ "completed", 0, 2 }, { r.status, r.counters.indexed, r.counters.unchanged })
    -- and gives the lock back when it ends
    assert(engine.lock(cfg.data_dir)):unlock()
  end)

  it("stops at the next document on SIGTERM: keeps what it wrote, deletes nothing, exit 130", function()
    local FIXTURES = "spec/fixtures/connectors"
    local plan = dir .. "/plan.json"
    local scripted = "data_dir: ./data\nconnectors:\n  - id: s\n    service_type: scripted\n" ..
      "    index_name: search-s\n    configuration: { plan: " .. plan .. " }\n"
    cli.write(config, scripted)
    local function docs(n)
      local out = {}
      for i = 1, n do out[i] = { _id = "d" .. i, title = "doc " .. i } end
      return out
    end
    local function sync(background)
      local cmd = "SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " sync " .. cli.q(config) .. " --json"
      if background then
        -- TERM: a background job of a non-interactive shell ignores INT
        cmd = cmd .. " & p=$!; sleep 1; kill -TERM $p; wait $p"
      end
      local rc, out, err = cli.sh(cmd)
      local ok, r = pcall(json.decode, out)
      assert(ok, "bad output: " .. out .. err)
      return rc, r, err
    end
    cli.write(plan, json.encode({ docs = docs(10) }))
    assert.are.equal(0, (sync()))
    -- the source now lacks d1..d10 and lists 200 new documents, slowly
    local slow = {}
    for i = 1, 200 do slow[i] = { _id = "n" .. i, title = "new " .. i } end
    cli.write(plan, json.encode({ docs = slow, delay = 0.02 }))
    local rc, r, err = sync(true)
    assert.are.same({ 130, "interrupted" }, { rc, r.status })
    assert.are.equal("interrupted: SIGTERM", r.message)
    assert.is_true(r.listed > 0 and r.listed < 200, tostring(r.listed))
    assert.are.equal(0, r.deleted)
    assert.truthy(err:find("stopping: the sync ends at the next document", 1, true), err)
    -- nothing the new listing missed was deleted: d1..d10 are all there
    local _, out = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " search " ..
      cli.q(config) .. " search-s doc --json --limit 50")
    assert.are.equal(10, json.decode(out).total)
    -- the next sync converges
    cli.write(plan, json.encode({ docs = slow }))
    rc, r = sync()
    assert.are.same({ 0, "completed", 200, 10, 200 }, { rc, r.status, r.listed, r.deleted, r.index_count })
  end)

  it("leaves no lock behind a holder killed with -9", function()
    cli.write(dir .. "/hold.lua", string.format([[
      local fs, sys = require("sluice.fs"), require("sluice.sys")
      assert(fs.mkdir_p(%q))
      local lock = assert(fs.lock(%q))
      os.execute("kill -9 " .. sys.pid())
    ]], dir .. "/data", dir .. "/data/sync.lock"))
    assert.are.equal(137, (cli.run({ "lua", dir .. "/hold.lua" })))
    assert.are.equal(0, (cli.run({ "sync", config })))
  end)

  it("reports an index file it cannot read, not an index that was never synced", function()
    assert(fs.mkdir_p(dir .. "/data"))
    cli.write(dir .. "/data/index.db", string.rep("this is not SQLite\n", 300))
    local rc, out, err = cli.run({ "search", config, "search-tree", "alpha" })
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.are.equal("sluice: cannot read the index file " .. dir ..
      "/data/index.db: file is not a database\n", err)
  end)

  it("refuses index names over 255 bytes as configuration errors, before any write", function()
    local long = string.rep("n", 256)
    cli.write(config, (fs_config(dir):gsub("index_name: search%-tree", "index_name: " .. long)))
    local rc, _, err = cli.run({ "sync", config })
    assert.are.equal(4, rc)
    assert.are.equal("sluice: invalid configuration:\n" .. config ..
      ":5:5: connectors[1].index_name: index name is 256 bytes long, at most 255 allowed\n", err)
    assert.is_false(fs.exists(dir .. "/data"))
    -- the default index name, search-<id>, is held to the same limit
    cli.write(config, (fs_config(dir):gsub("    index_name: search%-tree\n", "")
      :gsub("id: tree", "id: " .. string.rep("i", 249))))
    rc, _, err = cli.run({ "check", config })
    assert.are.equal(4, rc)
    assert.truthy(err:find(":3:5: connectors[1].id: index name is 256 bytes long", 1, true), err)
    cli.write(config, (fs_config(dir):gsub("index_name: search%-tree", "index_name: " .. string.rep("n", 255))))
    assert.are.equal(0, (cli.run({ "sync", config })))
  end)

  it("refuses an empty data_dir rather than writing beside the configuration", function()
    cli.write(config, (fs_config(dir):gsub("data_dir: ./data", "data_dir: ${SLUICE_SPEC_UNSET:-}")))
    local rc, _, err = cli.run({ "sync", config })
    assert.are.equal(4, rc)
    assert.are.equal("sluice: invalid configuration:\n" .. config .. ":1:1: data_dir: must not be empty\n", err)
    assert.is_false(fs.exists(dir .. "/state.db"))
  end)

  it("checks global options given before version and connectors", function()
    for _, cmd in ipairs({ "version", "connectors" }) do
      local rc, out, err = cli.run({ "--log-level", "loud", cmd })
      assert.are.same({ 2, "" }, { rc, out }, cmd)
      assert.truthy(err:find("unknown log level 'loud'", 1, true), err)
      rc, out, err = cli.run({ "--log-format", "xml", cmd })
      assert.are.same({ 2, "" }, { rc, out }, cmd)
      assert.truthy(err:find("--log-format must be text or json", 1, true), err)
      assert.are.equal(0, (cli.run({ "--log-level", "warn", cmd })), cmd)
    end
  end)

  it("refuses a configured path that is a FIFO or a device instead of indexing it as a file", function()
    assert(cli.sh("mkfifo " .. cli.q(dir .. "/fifo")) == 0)
    cli.write(config, fs_config(dir, "[" .. dir .. "/fifo, /dev/null, " .. dir .. "/tree]"))
    local rc, _, err = cli.run({ "sync", config })
    assert.are.equal(4, rc)
    assert.truthy(err:find("connectors[1].configuration.path[1]: " .. dir ..
      "/fifo: not a regular file or directory (a FIFO, socket or device)", 1, true), err)
    assert.truthy(err:find("connectors[1].configuration.path[2]: /dev/null: not a regular file or directory", 1, true), err)
    assert.falsy(err:find("path[3]", 1, true), err)
  end)
end)
