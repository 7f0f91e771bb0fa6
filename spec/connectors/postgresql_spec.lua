-- The postgresql connector (and through it sluice.sql, which the mysql
-- connector shares) against a real PostgreSQL 15: documents, ids that never
-- collide, tables without keys, custom queries, unknown types and the
-- incremental (timestamp, key) cursor. The connector's functions are called
-- directly with a recording ctx; spec/e2e/postgresql_sync_spec.lua runs the
-- real CLI.
local pg = require("sluice.pg")
local json = require("sluice.json")
local schema = require("sluice.schema")
local registry = require("sluice.registry")
local sql = require("sluice.sql")
local server_mod = require("spec.support.postgres")

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

describe("postgresql connector", function()
  local server, why, conn, def, base

  lazy_setup(function()
    server, why = server_mod.start()
    if not server then return end
    conn = assert(pg.connect(server_mod.options(server)))
    assert(conn:query([[
      CREATE DATABASE shop;
    ]]))
    conn:close()
    conn = assert(pg.connect(server_mod.options(server, { database = "shop" })))
    assert(conn:query([[
      CREATE TABLE "a_b" (id int PRIMARY KEY, v text);
      CREATE TABLE "a" (id text PRIMARY KEY, v text);
      INSERT INTO "a_b" VALUES (1, 'from a_b');
      INSERT INTO "a" VALUES ('b_1', 'from a'), ('x|y', 'pipe'), ('back\slash', 'bs');
      CREATE TABLE pairs (x text, y text, n int, PRIMARY KEY (y, x));
      INSERT INTO pairs VALUES ('x_', 'y', 1), ('x', '_y', 2), ('x|', 'y', 3), ('x', '|y', 4);
      CREATE TABLE nokey (name text, qty int);
      INSERT INTO nokey SELECT 'item ' || g, g FROM generate_series(1, 37) g;
      CREATE TABLE odd ("table" text, "_id" int PRIMARY KEY, blank text, pt point, rng int4range,
        c circle, tv tsvector, comp pg_lsn, hs pg_snapshot);
      INSERT INTO odd VALUES ('kitchen', 5, NULL, '(1,2)', '[1,3)', '<(0,0),1>', 'a b', '0/16B6C50',
        pg_current_snapshot());
      CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz, title text);
      INSERT INTO events VALUES
        (1, '2024-01-01 10:00:00+00', 'one'), (2, '2024-01-01 10:00:00+00', 'two'),
        (3, '2024-01-01 10:00:00+00', 'three'), (4, '2024-01-02 09:00:00+00', 'four'),
        (5, NULL, 'no timestamp');
      CREATE SCHEMA other;
      CREATE TABLE other.elsewhere (id int PRIMARY KEY);
      INSERT INTO other.elsewhere VALUES (1);
    ]]))
    def = assert(registry.load("postgresql"))
    base = { host = "127.0.0.1", port = server.port, username = "postgres",
      password = server_mod.PASSWORD, database = "shop", fetch_size = 2 }
  end)

  lazy_teardown(function()
    if conn then conn:close() end
    server_mod.stop(server)
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

  it("lists every table of the schema as documents with ids that never collide", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg())
    def.docs(ctx)
    assert.are.same({}, ctx.incomplete_reasons)
    local want = {
      "public|a_b|1", "public|a|b_1", "public|a|x\\|y", "public|a|back\\\\slash",
      "public|pairs|y|x_", "public|pairs|_y|x", "public|pairs|y|x\\|", "public|pairs|\\|y|x",
      "public|events|1", "public|events|2", "public|events|3", "public|events|4", "public|events|5",
      "public|odd|5",
    }
    table.sort(want)
    assert.are.same(want, sorted_ids(ctx))
    -- the two rows the issue names, and a composite key split differently
    assert.are.same({ _id = "public|a_b|1", table = "a_b", id = 1, v = "from a_b" }, ctx.by_id["public|a_b|1"])
    assert.are.same({ _id = "public|a|b_1", table = "a", id = "b_1", v = "from a" }, ctx.by_id["public|a|b_1"])
    assert.are.equal(1, ctx.by_id["public|pairs|y|x_"].n)
    assert.are.equal(2, ctx.by_id["public|pairs|_y|x"].n)
    assert.are.equal(3, ctx.by_id["public|pairs|y|x\\|"].n)
    assert.are.equal(4, ctx.by_id["public|pairs|\\|y|x"].n)
  end)

  it("warns about a table without a key, naming it and the rows skipped", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ tables = { "nokey", "a_b" } }))
    def.docs(ctx)
    assert.are.same({ "public|a_b|1" }, sorted_ids(ctx))
    assert.are.equal(1, #ctx.warnings)
    assert.are.same({ table = "nokey", rows_skipped = 37 }, ctx.warnings[1].fields)
    assert.truthy(ctx.warnings[1].msg:find("no primary key", 1, true))
    -- with id columns configured, its rows are documents
    ctx = make_ctx(def, cfg({ tables = "nokey", id_columns = { nokey = { "name" } } }))
    def.docs(ctx)
    assert.are.equal(37, #ctx.docs)
    assert.are.same({ _id = "public|nokey|item 7", table = "nokey", name = "item 7", qty = 7 },
      ctx.by_id["public|nokey|item 7"])
    assert.are.same({}, ctx.warnings)
  end)

  it("renames reserved column names, leaves NULLs out and warns once per unknown type", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ tables = { "odd" } }))
    def.docs(ctx)
    local d = ctx.by_id["public|odd|5"]
    local snapshot = d.hs
    assert.are.equal("string", type(snapshot))
    assert.are.same({ _id = "public|odd|5", table = "odd", column_table = "kitchen", column__id = 5,
      pt = "(1,2)", rng = "[1,3)", c = "<(0,0),1>", tv = "'a' 'b'", comp = "0/16B6C50", hs = snapshot }, d)
    assert.are.equal(1, #ctx.warnings)
    assert.are.same({ table = "odd", column = "hs", type = "pg_snapshot" }, ctx.warnings[1].fields)
  end)

  it("runs custom queries (advanced rules) with their own id columns", function()
    if not need() then return end
    local ctx = make_ctx(def, cfg({ queries = {
      { name = "recent", query = "SELECT id AS event, title, updated_at FROM events WHERE id <= 2",
        id_columns = { "event" }, timestamp_column = "updated_at" },
      { name = "pairs_by_n", query = "SELECT n, x || y AS xy FROM pairs;", id_columns = "n" },
    } }))
    def.docs(ctx)
    -- queries replace the table listing, as Elastic's advanced rules do
    assert.are.same({ "|pairs_by_n|1", "|pairs_by_n|2", "|pairs_by_n|3", "|pairs_by_n|4",
      "|recent|1", "|recent|2" }, sorted_ids(ctx))
    assert.are.same({ _id = "|recent|2", query = "recent", event = 2, title = "two",
      updated_at = "2024-01-01T10:00:00Z", _timestamp = "2024-01-01T10:00:00Z" }, ctx.by_id["|recent|2"])
    -- a query naming a column it does not return is reported, not fatal
    ctx = make_ctx(def, cfg({ queries = { { name = "bad", query = "SELECT 1 AS a", id_columns = { "b" } } } }))
    def.docs(ctx)
    assert.are.same({ "query bad: no column named 'b'" }, ctx.incomplete_reasons)
    ctx = make_ctx(def, cfg({ queries = { { name = "broken", query = "SELEC nonsense", id_columns = { "b" } } } }))
    def.docs(ctx)
    assert.are.same({ 'query broken: syntax error at or near "SELEC"' }, ctx.incomplete_reasons)
  end)

  it("validates what the schema cannot express", function()
    local errs = sql.validate({ queries = { { name = "q" }, { name = "q", query = "x", id_columns = {}, extra = 1 } } })
    local msgs = {}
    for _, e in ipairs(errs) do msgs[#msgs + 1] = e.path .. ": " .. e.message end
    assert.are.same({
      "username: required value missing",
      "queries[1].query: required value missing",
      "queries[1].id_columns: required value missing",
      "queries[2].name: duplicate query name 'q'",
      "queries[2].id_columns: required value missing",
      "queries[2].extra: unknown key (known keys: name, query, id_columns, timestamp_column)",
    }, msgs)
    assert.is_nil(sql.validate({ user = "root", queries = {} }))
  end)

  it("builds ids that stay apart for every tricky split", function()
    local seen = {}
    local cases = {
      { "public", "a_b", { 1 } }, { "public", "a", { "b_1" } },
      { "public", "t", { "x_", "y" } }, { "public", "t", { "x", "_y" } },
      { "public", "t", { "x|", "y" } }, { "public", "t", { "x", "|y" } },
      { "public", "t", { "x\\", "|y" } }, { "public", "t", { "x\\|", "y" } },
      { "public", "t|x", { "y" } }, { "public|t", "x", { "y" } },
      { "", "t", { 1 } }, { "public", "t", { 1, n = 1 } },
      { "public", "t", { nil, n = 1 } }, { "public", "t", { "\\N" } },
      { "public", "t", { "1" } },
    }
    for _, c in ipairs(cases) do
      local id = sql.doc_id(c[1], c[2], c[3])
      if c[3][1] == "1" then
        -- the same table cannot hold both 1 and "1" in one key column
        assert.are.equal(sql.doc_id("public", "t", { 1 }), id)
      else
        assert.is_nil(seen[id], id)
        seen[id] = true
      end
    end
    assert.are.equal("public|t|\\N", sql.doc_id("public", "t", { n = 1 }))
    assert.are.equal("public|t|\\\\N", sql.doc_id("public", "t", { "\\N" }))
    assert.are.equal("public|t|9007199254740993", sql.doc_id("public", "t", { "9007199254740993" }))
    assert.are.equal("public|t|1.5", sql.doc_id("public", "t", { 1.5 }))
  end)

  it("syncs incrementally by (timestamp, key): rows sharing a timestamp are neither skipped nor repeated", function()
    if not need() then return end
    local config = cfg({ timestamp_columns = { events = "updated_at" } })
    local ctx = make_ctx(def, config)
    local cursor = def.docs_incremental(ctx, nil)
    -- fetch_size 2 splits the three rows at 10:00 across batches
    local titles = {}
    for _, d in ipairs(ctx.docs) do titles[#titles + 1] = d.title end
    assert.are.same({ "one", "two", "three", "four" }, titles)
    assert.are.equal("2024-01-01T10:00:00Z", ctx.docs[1]._timestamp)
    assert.are.same({ ts = "2024-01-02T09:00:00Z", key = { 4 } }, cursor.tables.events)
    -- the cursor survives the state database: it is plain JSON
    cursor = json.decode(json.encode(cursor))

    -- nothing changed: nothing listed
    ctx = make_ctx(def, config)
    assert.are.same(cursor, def.docs_incremental(ctx, cursor))
    assert.are.same({}, ctx.docs)

    -- new rows at the very same timestamp as the cursor, after and before
    -- its key, plus an update
    assert(conn:query([[
      INSERT INTO events VALUES (6, '2024-01-02 09:00:00+00', 'six, same time, higher key'),
        (0, '2024-01-02 09:00:00+00', 'zero, same time, lower key');
      UPDATE events SET updated_at = '2024-01-03 00:00:00+00', title = 'two, edited' WHERE id = 2;
    ]]))
    ctx = make_ctx(def, config)
    cursor = def.docs_incremental(ctx, cursor)
    titles = {}
    for _, d in ipairs(ctx.docs) do titles[#titles + 1] = d.title end
    -- 0 sorts before the cursor's key at that timestamp: as in any
    -- (timestamp, key) cursor it is caught by the next full sync
    assert.are.same({ "six, same time, higher key", "two, edited" }, titles)
    assert.are.same({ ts = "2024-01-03T00:00:00Z", key = { 2 } }, cursor.tables.events)
    ctx = make_ctx(def, config)
    def.docs_incremental(ctx, cursor)
    assert.are.same({}, ctx.docs)
  end)

  it("syncs incrementally only the tables the full sync covers, and says which it cannot", function()
    if not need() then return end
    -- `a` has no updated-at column; `odd` is not among the tables synced
    local ctx = make_ctx(def, cfg({ tables = { "events", "a" },
      timestamp_columns = { events = "updated_at", odd = "_id" } }))
    local cursor = def.docs_incremental(ctx, nil)
    local ids = sorted_ids(ctx)
    assert.are.equal(#ids, #ctx.docs)
    for _, id in ipairs(ids) do assert.truthy(id:match("^public|events|%d$"), id) end
    assert.is_nil(cursor.tables.odd)
    assert.are.same({}, ctx.incomplete_reasons)
    table.sort(ctx.warnings, function(x, y) return x.msg < y.msg end)
    assert.are.same({
      { msg = "table has no timestamp_columns entry: its changes reach the index only through full syncs",
        fields = { table = "a" } },
      { msg = "timestamp_columns names a table that is not synced: ignored", fields = { table = "odd" } },
    }, ctx.warnings)
    -- `tables: "*"` (the default too) covers every table of the schema
    ctx = make_ctx(def, cfg({ tables = "*", timestamp_columns = { events = "updated_at" } }))
    def.docs_incremental(ctx, nil)
    assert.truthy(#ctx.docs >= 4)
    local warned = {}
    for _, w in ipairs(ctx.warnings) do if w.fields.table then warned[w.fields.table] = true end end
    assert.are.same({ a = true, a_b = true, nokey = true, odd = true, pairs = true }, warned)
  end)

  it("pings, and fails clearly on a wrong password", function()
    if not need() then return end
    assert.is_true(def.ping(make_ctx(def, cfg())))
    local ok, err = def.ping(make_ctx(def, cfg({ password = "wrong" })))
    assert.is_nil(ok)
    assert.are.equal('password authentication failed for user "postgres"', err)
    local ctx = make_ctx(def, cfg({ password = "wrong" }))
    local raised = select(2, pcall(def.docs, ctx))
    assert.are.equal('cannot connect to 127.0.0.1: password authentication failed for user "postgres"', raised)
    -- TLS with the server's CA, verified
    assert.is_true(def.ping(make_ctx(def, cfg({ ssl_enabled = true, ssl_ca = server.ca }))))
  end)
end)
