-- The engine's incremental path (`sluice sync --incremental`), driven through
-- the real CLI with the scripted source (spec/fixtures/connectors/scripted.lua,
-- whose docs_incremental records the cursor it was handed): the cursor is
-- committed only with the documents it covers, kept where it was when a
-- document failed, forgotten when the state is reset; an incremental sync
-- deletes nothing; a connector without incremental support is refused.
local cli = require("spec.support.cli")
local json = require("sluice.json")
local sqlite = require("sluice.sqlite")
local http = require("sluice.http")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."

local FIXTURES = "spec/fixtures/connectors"

describe("incremental sync", function()
  local dir, config, plan

  local function set_plan(p) cli.write(plan, json.encode(p)) end

  local function run(args, extra_env)
    return cli.sh((extra_env or "") .. "SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " ..
      cli.bin .. " sync " .. cli.q(config) .. " " .. args)
  end

  local function sync(args)
    local rc, out, err = run((args or "") .. " --json")
    local ok, s = pcall(json.decode, out)
    assert(ok and type(s) == "table", "bad output: " .. out .. err)
    return rc, s, err
  end

  local function incremental() return sync("--incremental") end

  -- The cursor the connector was handed by the last incremental sync.
  local function cursor_in()
    local f = assert(io.open(plan .. ".cursor-in"))
    local s = f:read("*a")
    f:close()
    os.remove(plan .. ".cursor-in")
    local v = json.decode(s)
    if v == json.null then return nil end
    return v
  end

  -- What the state database holds for connector s.
  local function stored_cursor()
    local db = assert(sqlite.open(dir .. "/data/state.db"))
    local row = db:one("SELECT cursor FROM cursors WHERE connector = 's'")
    db:close()
    return row and json.decode(row.cursor)
  end

  local function total(word)
    local rc, out = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " search " ..
      cli.q(config) .. " search-s " .. cli.q(word) .. " --json")
    assert.are.equal(0, rc)
    return json.decode(out).total
  end

  before_each(function()
    dir = cli.tmpdir()
    plan = dir .. "/plan.json"
    config = dir .. "/sluice.yml"
    cli.write(config, "data_dir: ./data\nconnectors:\n  - id: s\n    service_type: scripted\n" ..
      "    index_name: search-s\n    configuration:\n      plan: " .. plan .. "\n")
  end)
  after_each(function() cli.rm_rf(dir) end)

  it("hands the connector the cursor it returned last time, and writes only what it lists", function()
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } } })
    assert.are.equal(0, (sync()))
    set_plan({ incremental = { docs = { { _id = "b", title = "bravo two" }, { _id = "c", title = "charlie" } },
      cursor = { ts = "2024-01-01T00:00:00Z", key = { 7 } } } })
    local rc, s = incremental()
    assert.are.equal(0, rc)
    assert.are.equal("completed", s.status)
    assert.is_nil(cursor_in())
    assert.are.same({ 2, 2, 0, 0, 0, 3 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    assert.are.same({ ts = "2024-01-01T00:00:00Z", key = { 7 } }, stored_cursor())
    assert.are.equal(1, total("two"))
    assert.are.equal(1, total("charlie"))

    -- the next one starts from that cursor; what it lists again unchanged is skipped
    set_plan({ incremental = { docs = { { _id = "c", title = "charlie" } }, cursor = { ts = "2024-01-02T00:00:00Z", key = { 9 } } } })
    rc, s = incremental()
    assert.are.equal(0, rc)
    assert.are.same({ ts = "2024-01-01T00:00:00Z", key = { 7 } }, cursor_in())
    assert.are.same({ 1, 0, 1 }, { s.listed, s.indexed, s.unchanged })
    assert.are.same({ ts = "2024-01-02T00:00:00Z", key = { 9 } }, stored_cursor())

    local db = assert(sqlite.open(dir .. "/data/state.db"))
    local kinds = {}
    for row in db:rows("SELECT kind FROM jobs ORDER BY id") do kinds[#kinds + 1] = row.kind end
    db:close()
    assert.are.same({ "full", "incremental", "incremental" }, kinds)
  end)

  it("commits no cursor when the listing fails, so the next run re-reads", function()
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    set_plan({ incremental = { docs = { { _id = "b", title = "bravo" }, { _id = "c", title = "charlie" } },
      fail_after = 1, cursor = { n = 2 } } })
    local rc, s = incremental()
    assert.are.equal(1, rc)
    assert.are.equal("failed", s.status)
    assert.truthy(s.message:find("dropped the connection", 1, true), s.message)
    assert.are.same({ n = 1 }, cursor_in())
    assert.are.same({ n = 1 }, stored_cursor())
    set_plan({ incremental = { docs = { { _id = "b", title = "bravo" }, { _id = "c", title = "charlie" } }, cursor = { n = 3 } } })
    rc, s = incremental()
    assert.are.equal(0, rc)
    assert.are.same({ n = 1 }, cursor_in())
    assert.are.same({ n = 3 }, stored_cursor())
    assert.are.equal(3, s.index_count)
  end)

  it("keeps the old cursor when a document failed, and lists it again next time", function()
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    set_plan({ incremental = { docs = { { _id = "b", title = "bravo", lazy_body = "b body" },
      { _id = "c", title = "charlie", lazy_body = "c body" } }, lazy_fail = { "b" }, cursor = { n = 2 } } })
    local rc, s = incremental()
    assert.are.equal(3, rc)
    assert.are.equal("completed_with_errors", s.status)
    assert.are.same({ 2, 1, 1 }, { s.listed, s.indexed, s.errors })
    assert.are.equal("b", s.error_samples[1].id)
    assert.are.same({ n = 1 }, stored_cursor())
    -- the same changes again: c is skipped by its hash, b is written now
    set_plan({ incremental = { docs = { { _id = "b", title = "bravo", lazy_body = "b body" },
      { _id = "c", title = "charlie", lazy_body = "c body" } }, cursor = { n = 2 } } })
    rc, s = incremental()
    assert.are.equal(0, rc)
    assert.are.same({ n = 1 }, cursor_in())
    assert.are.same({ 2, 1, 1, 0 }, { s.listed, s.indexed, s.unchanged, s.errors })
    assert.are.same({ n = 2 }, stored_cursor())
    assert.are.equal(2, total("body"))
  end)

  it("keeps the old cursor after a document the connector reported with ctx.error", function()
    set_plan({ incremental = { docs = {}, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, errors = { { id = "x", reason = "row unreadable" } },
      cursor = { n = 2 } } })
    local rc, s = incremental()
    assert.are.equal(3, rc)
    assert.are.same({ 1, 1 }, { s.indexed, s.errors })
    assert.are.same({ n = 1 }, stored_cursor())
  end)

  it("keeps the old cursor when the connector reported part of the source incomplete", function()
    set_plan({ incremental = { docs = {}, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, incomplete = "page 3 timed out",
      cursor = { n = 2 } } })
    local rc, s = incremental()
    assert.are.equal(3, rc)
    assert.are.same({ "completed_with_errors", 1, 0 }, { s.status, s.indexed, s.errors })
    assert.are.same({ n = 1 }, stored_cursor())
  end)

  it("deletes nothing, even with a complete listing; the next full sync does", function()
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" }, { _id = "c", title = "charlie" } } })
    assert.are.equal(0, (sync()))
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "d", title = "delta" } },
      incremental = { docs = { { _id = "d", title = "delta" } }, cursor = { n = 1 } } })
    local rc, s = incremental()
    assert.are.equal(0, rc)
    assert.are.same({ 1, 1, 0, 4 }, { s.listed, s.indexed, s.deleted, s.index_count })
    assert.are.equal(1, total("bravo"))
    rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 2, 0, 2, 2, 2 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.index_count })
    assert.are.equal(0, total("bravo"))
    assert.are.equal(0, total("charlie"))
    -- a full sync leaves the incremental cursor alone
    assert.are.same({ n = 1 }, stored_cursor())
  end)

  it("forgets the cursor when the index was lost, so nothing it covered is missed", function()
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, cursor = { n = 5 } } })
    assert.are.equal(0, (incremental()))
    assert(cli.sh("rm -f " .. cli.q(dir .. "/data/index.db") .. "*") == 0)
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } }, cursor = { n = 6 } } })
    local rc, s = incremental()
    assert.are.equal(0, rc)
    assert.is_nil(cursor_in())
    assert.are.same({ 2, 2, 2 }, { s.listed, s.indexed, s.index_count })
    assert.are.same({ n = 6 }, stored_cursor())
  end)

  it("forgets the cursor when the state is rebuilt from a remote index that lost documents", function()
    -- Only a remote index (here the Elasticsearch double) can rebuild the
    -- state from its own ids and hashes; what it lost, the old cursor would
    -- never list again.
    local p = assert(io.popen("exec python3 " .. cli.q(src .. "/spec/fixtures/esd.py") .. " --port 0"))
    local port, pid = tonumber(p:read("*l")), tonumber(p:read("*l"))
    assert(port and pid, "the Elasticsearch double did not start")
    local ok, err = pcall(function()
      cli.write(config, "data_dir: ./data\nelasticsearch:\n  host: http://127.0.0.1:" .. port ..
        "\nconnectors:\n  - id: s\n    service_type: scripted\n    index_name: search-s\n" ..
        "    configuration:\n      plan: " .. plan .. "\n")
      set_plan({ incremental = { docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } }, cursor = { n = 5 } } })
      local rc, s = incremental()
      assert.are.same({ 0, 2 }, { rc, s.index_count })
      local res = assert(http.request({ method = "DELETE", url = "http://127.0.0.1:" .. port .. "/search-s/_doc/b?refresh=true" }))
      assert.are.equal(200, res.status)
      set_plan({ incremental = { docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } }, cursor = { n = 6 } } })
      rc, s = incremental()
      assert.are.equal(0, rc)
      assert.is_nil(cursor_in())
      -- a is skipped by the hash the index kept; b is written again
      assert.are.same({ 2, 1, 1, 2 }, { s.listed, s.indexed, s.unchanged, s.index_count })
      assert.are.same({ n = 6 }, stored_cursor())
    end)
    os.execute("kill " .. pid)
    p:close()
    assert(ok, err)
  end)

  it("starts from the beginning when the stored cursor cannot be read", function()
    set_plan({ incremental = { docs = {}, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    local db = assert(sqlite.open(dir .. "/data/state.db"))
    assert(db:run("UPDATE cursors SET cursor = '{not json' WHERE connector = 's'"))
    db:close()
    local rc = run("--incremental --json")
    assert.are.equal(0, rc)
    assert.is_nil(cursor_in())
    assert.are.same({ n = 1 }, stored_cursor())
  end)

  it("warns when the stored cursor cannot be read", function()
    set_plan({ incremental = { docs = {}, cursor = { n = 1 } } })
    assert.are.equal(0, (incremental()))
    local db = assert(sqlite.open(dir .. "/data/state.db"))
    assert(db:run("UPDATE cursors SET cursor = '{not json' WHERE connector = 's'"))
    db:close()
    local rc, _, err = run("--incremental --json", "SLUICE_LOG_FORMAT=json ")
    assert.are.equal(0, rc)
    assert.truthy(err:find("stored incremental cursor is unreadable", 1, true), err)
  end)

  it("refuses a connector without incremental support before syncing anything", function()
    local docs = dir .. "/docs"
    assert(cli.sh("mkdir -p " .. cli.q(docs) .. " && echo hello > " .. cli.q(docs .. "/a.txt")) == 0)
    cli.write(config, "data_dir: ./data\nconnectors:\n  - id: s\n    service_type: scripted\n" ..
      "    index_name: search-s\n    configuration:\n      plan: " .. plan .. "\n" ..
      "  - id: files\n    service_type: filesystem\n    configuration:\n      path: " .. docs .. "\n")
    set_plan({ incremental = { docs = { { _id = "a", title = "alpha" } }, cursor = { n = 1 } } })
    local rc, out, err = run("--incremental")
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.truthy(err:find("connector files (filesystem) has no incremental sync: run a full sync for it, " ..
      "or pick connectors with --connector ID", 1, true), err)
    -- nothing ran: not even the connector that could have
    assert.is_false(io.open(plan .. ".cursor-in") ~= nil)
    rc, out, err = run("--incremental --connector files")
    assert.are.equal(2, rc)
    assert.truthy(err:find("connector files (filesystem) has no incremental sync: run a full sync for it\n", 1, true), err)
    rc = run("--incremental --connector s --json")
    assert.are.equal(0, rc)
    assert.are.same({ n = 1 }, stored_cursor())
  end)

  it("rejects --incremental with --full or --ndjson", function()
    set_plan({})
    local rc, _, err = run("--incremental --full")
    assert.are.equal(2, rc)
    assert.truthy(err:find("--incremental and --full exclude each other", 1, true), err)
    rc, _, err = run("--incremental --ndjson -")
    assert.are.equal(2, rc)
    assert.truthy(err:find("--incremental and --ndjson exclude each other", 1, true), err)
    rc, _, err = run("--incremental=yes")
    assert.are.equal(2, rc)
    assert.truthy(err:find("--incremental takes no value", 1, true), err)
    local out
    rc, out = run("--help")
    assert.are.equal(0, rc)
    assert.truthy(out:find("--incremental    list only what changed since the previous incremental", 1, true), out)
  end)
end)
