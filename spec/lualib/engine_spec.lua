-- The sync engine's contract, driven through the real CLI with a scripted
-- source: ids, hashing, outcomes, and "nothing deleted unless complete".
local cli = require("spec.support.cli")
local json = require("sluice.json")

local FIXTURES = "spec/fixtures/connectors"

describe("sync engine", function()
  local dir, config, plan

  local function set_plan(p) cli.write(plan, json.encode(p)) end

  local function sync(extra_env)
    local rc, out, err = cli.sh((extra_env or "") .. "SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " ..
      cli.bin .. " sync " .. cli.q(config) .. " --json")
    local ok, s = pcall(json.decode, out)
    assert(ok, "bad output: " .. out .. err)
    return rc, s, err
  end

  local function get(id)
    local rc, out = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " search " ..
      cli.q(config) .. " search-s " .. cli.q(id) .. " --json --limit 50")
    assert.are.equal(0, rc)
    return json.decode(out)
  end

  before_each(function()
    dir = cli.tmpdir()
    plan = dir .. "/plan.json"
    config = dir .. "/sluice.yml"
    cli.write(config, "data_dir: ./data\nconnectors:\n  - id: s\n    service_type: scripted\n" ..
      "    index_name: search-s\n    configuration:\n      plan: " .. plan .. "\n      token: ${SPEC_TOKEN:-}\n")
  end)
  after_each(function() cli.rm_rf(dir) end)

  it("turns numeric ids into strings and hashes ids over 512 bytes", function()
    local long = string.rep("é", 300) -- 600 bytes
    set_plan({ docs = { { _id = 42, title = "answer" }, { _id = long, title = "long one" } } })
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.equal(2, s.indexed)
    local r = get("answer")
    assert.are.equal("42", r.hits[1].id)
    r = get("long")
    assert.are.equal(64, #r.hits[1].id)
    assert.are.equal(long, r.hits[1].doc.original_id)
  end)

  it("counts documents without an id as errors and goes on", function()
    set_plan({ docs = { { title = "no id" }, { _id = "a", title = "fine" } } })
    local rc, s = sync()
    assert.are.equal(3, rc)
    assert.are.same({ 2, 1, 1 }, { s.listed, s.indexed, s.errors })
    assert.truthy(s.error_samples[1].reason:find("without a usable _id", 1, true))
  end)

  it("fails and deletes nothing when the listing breaks, then converges", function()
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" }, { _id = "c", title = "charlie" } } })
    assert.are.equal(0, (sync()))
    set_plan({ docs = { { _id = "a", title = "alpha" } }, fail_after = 0 })
    local rc, s = sync()
    assert.are.equal(1, rc)
    assert.are.equal("failed", s.status)
    assert.are.equal(0, s.deleted)
    assert.truthy(s.message:find("dropped the connection", 1, true))
    assert.are.equal(3, get("alpha").total + get("bravo").total + get("charlie").total)
    set_plan({ docs = { { _id = "a", title = "alpha" } } })
    rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 1, 0, 1, 2 }, { s.listed, s.indexed, s.unchanged, s.deleted })
    assert.are.equal(0, get("bravo").total)
  end)

  it("deletes nothing after an incomplete listing", function()
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } } })
    sync()
    set_plan({ docs = { { _id = "a", title = "alpha" } }, incomplete = "folder x: 403" })
    local rc, s = sync()
    assert.are.equal(3, rc)
    assert.are.equal(0, s.deleted)
    assert.are.equal(2, s.index_count)
  end)

  it("fetches lazy content only for new or changed documents", function()
    set_plan({ docs = { { _id = "a", title = "alpha", lazy_body = "first body" } } })
    sync()
    -- unchanged metadata: the fetcher, which would now fail, is not called
    set_plan({ docs = { { _id = "a", title = "alpha", lazy_body = "other" } }, lazy_fail = { "a" } })
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 0, 1, 0 }, { s.indexed, s.unchanged, s.errors })
    -- changed metadata + failing fetch: an error, the old version kept
    set_plan({ docs = { { _id = "a", title = "alpha v2", lazy_body = "other" } }, lazy_fail = { "a" } })
    rc, s = sync()
    assert.are.equal(3, rc)
    assert.are.same({ 0, 1, 0 }, { s.indexed, s.errors, s.deleted })
    assert.are.equal("first body", get("alpha").hits[1].doc.body)
  end)

  it("cleans text: NUL removed, controls escaped, bad UTF-8 replaced", function()
    set_plan({ docs = { { _id = "t", title = "hygiene", body = "a\0b\1c\255d" } } })
    assert.are.equal(0, (sync()))
    assert.are.equal("ab\\x01c\239\191\189d", get("hygiene").hits[1].doc.body)
  end)

  it("cleans lazy content fetched after the hash, like the rest", function()
    set_plan({ docs = { { _id = "t", title = "lazy\1 hygiene", lazy_body = "x\0y\2z\254" } } })
    assert.are.equal(0, (sync()))
    local doc = get("hygiene").hits[1].doc
    assert.are.equal("xy\\x02z\239\191\189", doc.body)
    assert.are.equal("lazy\\x01 hygiene", doc.title)
  end)

  it("rewrites everything when the index was removed but the state survived", function()
    set_plan({ docs = { { _id = "a", title = "alpha" } } })
    sync()
    assert(cli.sh("rm -f " .. cli.q(dir .. "/data/index.db") .. "*") == 0)
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.equal(1, s.indexed)
    assert.are.equal(1, get("alpha").total)
  end)

  it("exports every document to NDJSON each time and leaves the index alone", function()
    set_plan({ docs = { { _id = "a", title = "alpha" }, { _id = "b", title = "bravo" } } })
    assert.are.equal(0, (sync()))
    local out = dir .. "/out.ndjson"
    for _ = 1, 2 do
      local rc = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " sync " ..
        cli.q(config) .. " --ndjson " .. cli.q(out))
      assert.are.equal(0, rc)
      local n = 0
      for line in io.lines(out) do
        n = n + 1
        assert.truthy(json.decode(line)._id)
      end
      assert.are.equal(2, n)
    end
    -- the index kept its state: a normal sync still writes nothing
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 0, 2 }, { s.indexed, s.unchanged })
  end)

  it("marks a job left running by a dead process as interrupted", function()
    set_plan({ docs = { { _id = "a", title = "alpha" } } })
    sync()
    local sqlite = require("sluice.sqlite")
    local db = assert(sqlite.open(dir .. "/data/state.db"))
    db:run("UPDATE jobs SET status = 'running'")
    db:close()
    sync()
    db = assert(sqlite.open(dir .. "/data/state.db"))
    local row = db:one("SELECT status FROM jobs ORDER BY id LIMIT 1")
    db:close()
    assert.are.equal("interrupted", row.status)
  end)

  it("never logs a sensitive value", function()
    set_plan({ docs = {} })
    local _, _, err = sync("SPEC_TOKEN=hunter2-secret SLUICE_LOG_FORMAT=json ")
    assert.truthy(err:find("using token [REDACTED]", 1, true), err)
    assert.falsy(err:find("hunter2", 1, true))
  end)
end)
