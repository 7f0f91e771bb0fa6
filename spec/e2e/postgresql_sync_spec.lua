-- End to end: Debian's package index (~63,000 real records) in a real
-- PostgreSQL 15, synced by the real CLI with examples/postgresql-packages.yml
-- into the embedded index, then searched; a second sync writes nothing, and
-- a deleted row is deleted from the index.
local cli = require("spec.support.cli")
local json = require("sluice.json")
local pg = require("sluice.pg")
local task = require("sluice.task")
local packages = require("spec.support.packages")
local server_mod = require("spec.support.postgres")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."

describe("postgresql sync end to end", function()
  local server, why, dir, config, env, count

  lazy_setup(function()
    local ok, reason = packages.available()
    if not ok then why = reason return end
    server, why = server_mod.start()
    if not server then return end
    local t0 = task.now()
    local records = assert(packages.load())
    count = #records
    local conn = assert(pg.connect(server_mod.options(server)))
    assert(conn:query("CREATE DATABASE packages"))
    conn:close()
    conn = assert(pg.connect(server_mod.options(server, { database = "packages" })))
    local cols = {}
    for i, c in ipairs(packages.COLUMNS) do cols[i] = c[1] .. " " .. c[2] end
    assert(conn:query("CREATE TABLE debian_packages (" .. table.concat(cols, ", ")
      .. ", PRIMARY KEY (name, version, architecture))"))
    for sql, params in packages.inserts(records, "debian_packages", function(i) return "$" .. i end, 400) do
      assert(conn:query(sql, unpack(params, 1, params.n)))
    end
    conn:close()
    print(string.format("\n  loaded %d packages into PostgreSQL in %.1fs", count, task.now() - t0))
    dir = cli.tmpdir()
    config = dir .. "/postgresql-packages.yml"
    assert(cli.sh("cp " .. cli.q(src .. "/examples/postgresql-packages.yml") .. " " .. cli.q(config)) == 0)
    env = "PGHOST=127.0.0.1 PGPORT=" .. server.port .. " PGUSER=postgres PGPASSWORD=" .. server_mod.PASSWORD
      .. " PGDATABASE=packages "
  end)

  lazy_teardown(function()
    server_mod.stop(server)
    cli.rm_rf(dir)
  end)

  local function need()
    if not server then pending(why) return false end
    return true
  end

  local function sync()
    local rc, out, err = cli.run({ "sync", config, "--json" }, env)
    local ok, summary = pcall(json.decode, out)
    assert(ok and type(summary) == "table", "bad sync output: " .. out .. "\n" .. err)
    return rc, summary, err
  end

  it("syncs every package and finds coreutils", function()
    if not need() then return end
    local t0 = task.now()
    local rc, s, err = sync()
    local dt = task.now() - t0
    assert.are.equal("completed", s.status)
    assert.are.equal(0, rc)
    assert.are.same({ count, count, 0, 0, 0, count }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    assert.is_nil(err:find("sluice-test", 1, true)) -- the password never reaches a log line
    print(string.format("\n  first sync: %d rows in %.1fs (%.0f rows/s)", count, dt, count / dt))

    local rc2, out = cli.run({ "search", config, "search-packages", "coreutils", "--json", "--limit", "3" }, env)
    assert.are.equal(0, rc2)
    local res = json.decode(out)
    local top = res.hits[1]
    assert.truthy(top.id:match("^public|debian_packages|coreutils|[^|]+|amd64$"), top.id)
    assert.truthy(res.total >= 1)
    rc2, out = cli.run({ "search", config, "search-packages", "GNU core utilities", "--json" }, env)
    assert.are.equal(0, rc2)
    local found = false
    for _, h in ipairs(json.decode(out).hits) do
      if h.id:find("|coreutils|", 1, true) then found = true end
    end
    assert.is_true(found)
  end)

  it("writes nothing on a second sync and deletes a row removed at the source", function()
    if not need() then return end
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ count, 0, count, 0 }, { s.listed, s.indexed, s.unchanged, s.deleted })
    local conn = assert(pg.connect(server_mod.options(server, { database = "packages" })))
    local r = assert(conn:query("DELETE FROM debian_packages WHERE name = $1", "coreutils"))
    local removed = r.affected
    assert(conn:query("UPDATE debian_packages SET description = 'changed for the test' WHERE name = 'bash'"))
    conn:close()
    assert.is_true(removed >= 1)
    rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ count - removed, count - removed }, { s.listed, s.index_count })
    assert.are.equal(removed, s.deleted)
    assert.is_true(s.indexed >= 1)
    local _, out = cli.run({ "search", config, "search-packages", "coreutils", "--json" }, env)
    for _, h in ipairs(json.decode(out).hits) do
      assert.is_nil(h.id:match("|coreutils|"), h.id)
    end
  end)

  it("fails the sync with a clear message when the server refuses the password", function()
    if not need() then return end
    local rc, out, err = cli.run({ "sync", config, "--json" }, env:gsub("PGPASSWORD=%S+", "PGPASSWORD=wrong"))
    local s = json.decode(out)
    assert.are.equal(1, rc)
    assert.are.equal("failed", s.status)
    assert.truthy(s.message:find('password authentication failed for user "postgres"', 1, true), s.message .. err)
  end)
end)
