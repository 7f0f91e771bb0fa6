-- The mysql connector (connectors/mysql.lua over sluice.sql and sluice.mysql)
-- against a real MariaDB (spec/fixtures/servers/mariadb.sh): first its
-- functions called directly with a recording ctx (documents, ids that never
-- collide, tables without keys, custom queries, unknown types, the
-- incremental cursor, TLS), then end to end: Debian's package index
-- (~63,000 real records) loaded into MariaDB and synced by the real CLI with
-- examples/mysql-packages.yml, searched, re-synced and pruned.
local mysql = require("sluice.mysql")
local json = require("sluice.json")
local schema = require("sluice.schema")
local registry = require("sluice.registry")
local task = require("sluice.task")
local cli = require("spec.support.cli")
local packages = require("spec.support.packages")
local fixture = require("spec.fixtures.servers.mariadb")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."

-- A ctx like the engine's that records what the connector does.
local function make_ctx(def, raw)
  local config, errs = schema.validate(def.configuration, raw)
  assert(config, errs and json.encode(errs))
  local ctx = { config = config, docs = {}, by_id = {}, warnings = {}, incomplete_reasons = {} }
  ctx.log = {
    debug = function() end, info = function() end, error = function() end,
    warn = function(msg, fields) ctx.warnings[#ctx.warnings + 1] = { msg = msg, fields = fields } end,
  }
  function ctx.yield(doc)
    ctx.docs[#ctx.docs + 1] = doc
    assert(ctx.by_id[doc._id] == nil, "duplicate id " .. doc._id)
    ctx.by_id[doc._id] = doc
  end
  function ctx.error(id, reason) error("unexpected ctx.error " .. tostring(id) .. ": " .. tostring(reason)) end
  function ctx.incomplete(reason) ctx.incomplete_reasons[#ctx.incomplete_reasons + 1] = reason end
  return ctx
end

local function sorted_ids(ctx)
  local ids = {}
  for _, d in ipairs(ctx.docs) do ids[#ids + 1] = d._id end
  table.sort(ids)
  return ids
end

describe("mysql connector", function()
  local server, why, conn, def, base

  lazy_setup(function()
    server, why = fixture.start()
    if not server then return end
    conn = assert(mysql.connect(server.opts))
    for _, stmt in ipairs({
      "CREATE TABLE a_b (id INT PRIMARY KEY, v TEXT)",
      "CREATE TABLE a (id VARCHAR(20) PRIMARY KEY, v TEXT)",
      "INSERT INTO a_b VALUES (1, 'from a_b')",
      [[INSERT INTO a VALUES ('b_1', 'from a'), ('x|y', 'pipe'), ('back\\slash', 'bs')]],
      "CREATE TABLE pairs (x VARCHAR(10), y VARCHAR(10), n INT, PRIMARY KEY (y, x))",
      "INSERT INTO pairs VALUES ('x_', 'y', 1), ('x', '_y', 2), ('x|', 'y', 3), ('x', '|y', 4)",
      "CREATE TABLE nokey (name VARCHAR(20), qty INT)",
      "INSERT INTO nokey SELECT CONCAT('item ', seq), seq FROM seq_1_to_37",
      "CREATE TABLE odd (`table` VARCHAR(20), `_id` INT PRIMARY KEY, blank TEXT, g POINT, " ..
        "z DATE, bin VARBINARY(8), j JSON, big BIGINT UNSIGNED, emoji VARCHAR(20))",
      "INSERT INTO odd VALUES ('kitchen', 5, NULL, POINT(1, 2), '0000-00-00', x'00ff', " ..
        "'{\"k\": [1, \"two\"]}', 18446744073709551615, '👍🏽 ok')",
      "CREATE TABLE events (id INT PRIMARY KEY, updated_at TIMESTAMP NULL, title VARCHAR(60))",
      "INSERT INTO events VALUES (1, '2024-01-01 10:00:00', 'one'), (2, '2024-01-01 10:00:00', 'two'), " ..
        "(3, '2024-01-01 10:00:00', 'three'), (4, '2024-01-02 09:00:00', 'four'), (5, NULL, 'no timestamp')",
    }) do
      assert(conn:query(stmt))
    end
    def = assert(registry.load("mysql"))
    base = { host = "127.0.0.1", port = server.port, user = fixture.user,
      password = fixture.password, database = fixture.database, fetch_size = 2 }
  end)

  lazy_teardown(function()
    if conn then conn:close() end
    fixture.stop(server)
  end)

  local function need()
    if not server then pending(why) return false end
    return true
  end

  local function cfg(extra)
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  it("lists every table of the database as documents with ids that never collide", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg())
    def.docs(ctx)
    assert.are.same({}, ctx.incomplete_reasons)
    local want = {
      "sluice_test|a_b|1", "sluice_test|a|b_1", "sluice_test|a|x\\|y", "sluice_test|a|back\\\\slash",
      "sluice_test|pairs|y|x_", "sluice_test|pairs|_y|x", "sluice_test|pairs|y|x\\|", "sluice_test|pairs|\\|y|x",
      "sluice_test|events|1", "sluice_test|events|2", "sluice_test|events|3", "sluice_test|events|4",
      "sluice_test|events|5", "sluice_test|odd|5",
    }
    table.sort(want)
    assert.are.same(want, sorted_ids(ctx))
    assert.are.same({ _id = "sluice_test|a_b|1", table = "a_b", id = 1, v = "from a_b" },
      ctx.by_id["sluice_test|a_b|1"])
    assert.are.same({ _id = "sluice_test|a|b_1", table = "a", id = "b_1", v = "from a" },
      ctx.by_id["sluice_test|a|b_1"])
    assert.are.equal(1, ctx.by_id["sluice_test|pairs|y|x_"].n)
    assert.are.equal(2, ctx.by_id["sluice_test|pairs|_y|x"].n)
    assert.are.equal(3, ctx.by_id["sluice_test|pairs|y|x\\|"].n)
    assert.are.equal(4, ctx.by_id["sluice_test|pairs|\\|y|x"].n)
  end)

  it("warns about a table without a key, naming it and the rows skipped", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ tables = { "nokey", "a_b" } }))
    def.docs(ctx)
    assert.are.same({ "sluice_test|a_b|1" }, sorted_ids(ctx))
    assert.are.equal(1, #ctx.warnings)
    assert.are.same({ table = "nokey", rows_skipped = 37 }, ctx.warnings[1].fields)
    ctx = make_ctx(def, cfg({ tables = "nokey", id_columns = { nokey = { "name" } } }))
    def.docs(ctx)
    assert.are.equal(37, #ctx.docs)
    assert.are.same({ _id = "sluice_test|nokey|item 7", table = "nokey", name = "item 7", qty = 7 },
      ctx.by_id["sluice_test|nokey|item 7"])
  end)

  it("maps MySQL's odd values, renames reserved columns and warns once per unknown type", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ tables = { "odd" } }))
    def.docs(ctx)
    local d = ctx.by_id["sluice_test|odd|5"]
    assert.are.same({ _id = "sluice_test|odd|5", table = "odd", column_table = "kitchen", column__id = 5,
      -- POINT(1 2) as WKB with MariaDB's SRID prefix, base64
      g = "AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA==",
      bin = "AP8=", j = { k = { 1, "two" } }, big = "18446744073709551615", emoji = "👍🏽 ok" }, d)
    assert.are.equal(1, #ctx.warnings)
    assert.are.same({ table = "odd", column = "g", type = "geometry" }, ctx.warnings[1].fields)
  end)

  it("runs custom queries (advanced rules) with their own id columns", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ queries = {
      { name = "recent", query = "SELECT id AS event, title, updated_at FROM events WHERE id <= 2",
        id_columns = { "event" }, timestamp_column = "updated_at" },
      { name = "pairs_by_n", query = "SELECT n, CONCAT(x, y) AS xy FROM pairs", id_columns = "n" },
    } }))
    def.docs(ctx)
    assert.are.same({ "|pairs_by_n|1", "|pairs_by_n|2", "|pairs_by_n|3", "|pairs_by_n|4",
      "|recent|1", "|recent|2" }, sorted_ids(ctx))
    assert.are.same({ _id = "|recent|2", query = "recent", event = 2, title = "two",
      updated_at = "2024-01-01T10:00:00Z", _timestamp = "2024-01-01T10:00:00Z" }, ctx.by_id["|recent|2"])
    ctx = make_ctx(def, cfg({ queries = { { name = "broken", query = "SELEC nonsense", id_columns = { "b" } } } }))
    def.docs(ctx)
    assert.are.equal(1, #ctx.incomplete_reasons)
    assert.truthy(ctx.incomplete_reasons[1]:find("^query broken: mysql error 1064: You have an error in your SQL syntax"),
      ctx.incomplete_reasons[1])
  end)

  it("syncs incrementally by (timestamp, key): rows sharing a timestamp are neither skipped nor repeated", function()
    if not need() then return end
    local config = cfg({ timestamp_columns = { events = "updated_at" } })
    local ctx = make_ctx(def, config)
    local cursor = def.docs_incremental(ctx, nil)
    local titles = {}
    for _, d in ipairs(ctx.docs) do titles[#titles + 1] = d.title end
    assert.are.same({ "one", "two", "three", "four" }, titles)
    assert.are.same({ ts = "2024-01-02T09:00:00Z", key = { 4 } }, cursor.tables.events)
    cursor = json.decode(json.encode(cursor))

    ctx = make_ctx(def, config)
    assert.are.same(cursor, def.docs_incremental(ctx, cursor))
    assert.are.same({}, ctx.docs)

    assert(conn:query("INSERT INTO events VALUES (6, '2024-01-02 09:00:00', 'six, same time, higher key'), " ..
      "(0, '2024-01-02 09:00:00', 'zero, same time, lower key')"))
    assert(conn:query("UPDATE events SET updated_at = '2024-01-03 00:00:00', title = 'two, edited' WHERE id = 2"))
    ctx = make_ctx(def, config)
    cursor = def.docs_incremental(ctx, cursor)
    titles = {}
    for _, d in ipairs(ctx.docs) do titles[#titles + 1] = d.title end
    assert.are.same({ "six, same time, higher key", "two, edited" }, titles)
    assert.are.same({ ts = "2024-01-03T00:00:00Z", key = { 2 } }, cursor.tables.events)
    ctx = make_ctx(def, config)
    def.docs_incremental(ctx, cursor)
    assert.are.same({}, ctx.docs)
  end)

  it("pings, fails clearly on a wrong password, and verifies TLS with the CA", function()
    if not need() then return end
    assert.is_true(def.ping(make_ctx(def, cfg())))
    local ok, err = def.ping(make_ctx(def, cfg({ password = "wrong" })))
    assert.is_nil(ok)
    assert.are.equal("authentication failed: Access denied for user 'sluice'@'127.0.0.1' (using password: YES)", err)
    assert.is_true(def.ping(make_ctx(def, cfg({ ssl_enabled = true, ssl_ca = server.ca }))))
    assert.is_true(def.ping(make_ctx(def, cfg({ ssl_enabled = true }))))
    -- Elastic's MySQL connector calls it `user`; `username` works too
    local c = cfg({ username = fixture.user })
    c.user = nil
    assert.is_true(def.ping(make_ctx(def, c)))
  end)

  describe("end to end with Debian's package index", function()
    local dir, config, env, count

    lazy_setup(function()
      if not server then return end
      local ok, reason = packages.available()
      if not ok then why = reason return end
      local t0 = task.now()
      local records = assert(packages.load())
      count = #records
      assert.are.equal("", server.root("CREATE DATABASE packages CHARACTER SET utf8mb4; " ..
        "GRANT ALL PRIVILEGES ON packages.* TO 'sluice'@'127.0.0.1';"))
      local o = {}
      for k, v in pairs(server.opts) do o[k] = v end
      o.database = "packages"
      local pc = assert(mysql.connect(o))
      local cols = {}
      for i, col in ipairs(packages.COLUMNS) do cols[i] = col[1] .. " " .. col[2] end
      assert(pc:query("CREATE TABLE debian_packages (" .. table.concat(cols, ", ")
        .. ", PRIMARY KEY (name, version, architecture)) CHARACTER SET utf8mb4"))
      for stmt, params in packages.inserts(records, "debian_packages", function() return "?" end, 400) do
        assert(pc:query(stmt, unpack(params, 1, params.n)))
      end
      pc:close()
      print(string.format("\n  loaded %d packages into MariaDB in %.1fs", count, task.now() - t0))
      dir = cli.tmpdir()
      config = dir .. "/mysql-packages.yml"
      assert(cli.sh("cp " .. cli.q(src .. "/examples/mysql-packages.yml") .. " " .. cli.q(config)) == 0)
      env = "MYSQL_HOST=127.0.0.1 MYSQL_TCP_PORT=" .. server.port .. " MYSQL_USER=sluice MYSQL_PWD="
        .. cli.q(fixture.password) .. " MYSQL_DATABASE=packages "
    end)

    lazy_teardown(function()
      cli.rm_rf(dir)
    end)

    local function sync(e)
      local rc, out, err = cli.run({ "sync", config, "--json" }, e or env)
      local ok, summary = pcall(json.decode, out)
      assert(ok and type(summary) == "table", "bad sync output: " .. out .. "\n" .. err)
      return rc, summary, err
    end

    it("syncs every package and finds coreutils", function()
      if not need() or not count then return pending(why) end
      local t0 = task.now()
      local rc, s, err = sync()
      local dt = task.now() - t0
      assert.are.equal("completed", s.status, err)
      assert.are.equal(0, rc)
      assert.are.same({ count, count, 0, 0, 0, count },
        { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
      assert.is_nil(err:find(fixture.password, 1, true)) -- the password never reaches a log line
      print(string.format("\n  first sync: %d rows in %.1fs (%.0f rows/s)", count, dt, count / dt))
      local rc2, out = cli.run({ "search", config, "search-packages-mysql", "coreutils", "--json", "--limit", "3" }, env)
      assert.are.equal(0, rc2)
      local res = json.decode(out)
      assert.truthy(res.hits[1].id:match("^packages|debian_packages|coreutils|[^|]+|amd64$"), res.hits[1].id)
    end)

    it("writes nothing on a second sync and deletes a row removed at the source", function()
      if not need() or not count then return pending(why) end
      local rc, s = sync()
      assert.are.equal(0, rc)
      assert.are.same({ count, 0, count, 0 }, { s.listed, s.indexed, s.unchanged, s.deleted })
      local o = {}
      for k, v in pairs(server.opts) do o[k] = v end
      o.database = "packages"
      local pc = assert(mysql.connect(o))
      local removed = assert(pc:query("DELETE FROM debian_packages WHERE name = ?", "coreutils")).affected
      assert(pc:query("UPDATE debian_packages SET description = ? WHERE name = ?", "changed for the test", "bash"))
      pc:close()
      assert.is_true(removed >= 1)
      rc, s = sync()
      assert.are.equal(0, rc)
      assert.are.same({ count - removed, count - removed, removed }, { s.listed, s.index_count, s.deleted })
      assert.is_true(s.indexed >= 1)
      local _, out = cli.run({ "search", config, "search-packages-mysql", "coreutils", "--json" }, env)
      for _, h in ipairs(json.decode(out).hits) do
        assert.is_nil(h.id:match("|coreutils|"), h.id)
      end
    end)

    it("fails the sync with a clear message when the server refuses the password", function()
      if not need() or not count then return pending(why) end
      local rc, s, err = sync(env:gsub("MYSQL_PWD=%S+", "MYSQL_PWD=wrong"))
      assert.are.equal(1, rc)
      assert.are.equal("failed", s.status)
      assert.truthy(s.message:find("authentication failed: Access denied for user 'sluice'", 1, true), s.message .. err)
    end)
  end)
end)
