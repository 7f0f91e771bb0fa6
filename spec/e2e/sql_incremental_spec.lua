-- End to end: `sluice sync --incremental` through the real CLI against a
-- real PostgreSQL 15 and a real MariaDB. A full sync, then rows updated
-- (several sharing one updated-at, more than a fetch_size of them), inserted
-- (one at the cursor's own timestamp with a higher key) and deleted: the
-- incremental syncs write exactly the changed rows, skip the rest by hash,
-- delete nothing; the next full sync applies the deletion and the change of
-- a row without an updated-at.
local cli = require("spec.support.cli")
local json = require("sluice.json")
local pg = require("sluice.pg")
local mysql = require("sluice.mysql")
local pg_server = require("spec.support.postgres")
local maria = require("spec.fixtures.servers.mariadb")

local FETCH = 4

local backends = {
  {
    name = "postgresql",
    start = function()
      local s, why = pg_server.start()
      if not s then return nil, why end
      local conn, err = pg.connect(pg_server.options(s))
      if not conn then pg_server.stop(s); return nil, err end
      return { server = s, conn = conn, placeholder = function(i) return "$" .. i end,
        create = "CREATE TABLE items (id int PRIMARY KEY, title text, updated_at timestamptz)",
        yaml = { "host: 127.0.0.1", "port: " .. s.port, "username: postgres",
          "password: " .. pg_server.PASSWORD, "database: postgres", "schema: public" },
        prefix = "public|items|",
        stop = function() pg_server.stop(s) end }
    end,
  },
  {
    name = "mysql",
    start = function()
      local s, why = maria.start()
      if not s then return nil, why end
      local conn, err = mysql.connect(s.opts)
      if not conn then maria.stop(s); return nil, err end
      -- DATETIME(6): no zone and a fraction, the other branch of the cursor's
      -- timestamp handling than PostgreSQL's timestamptz
      return { server = s, conn = conn, placeholder = function() return "?" end,
        create = "CREATE TABLE items (id INT PRIMARY KEY, title VARCHAR(100), updated_at DATETIME(6) NULL)",
        yaml = { "host: 127.0.0.1", "port: " .. s.port, "user: " .. maria.user,
          "password: \"" .. maria.password .. "\"", "database: " .. maria.database },
        prefix = maria.database .. "|items|",
        stop = function() maria.stop(s) end }
    end,
  },
}

for _, backend in ipairs(backends) do
  describe(backend.name .. " incremental sync end to end", function()
    local db, why, dir, config

    lazy_setup(function()
      db, why = backend.start()
      if not db then return end
      dir = cli.tmpdir()
      config = dir .. "/sluice.yml"
      local lines = { "data_dir: ./data", "connectors:", "  - id: items", "    service_type: " .. backend.name,
        "    index_name: search-items", "    configuration:" }
      for _, l in ipairs(db.yaml) do lines[#lines + 1] = "      " .. l end
      lines[#lines + 1] = "      tables: items"
      lines[#lines + 1] = "      fetch_size: " .. FETCH
      lines[#lines + 1] = "      timestamp_columns: { items: updated_at }"
      cli.write(config, table.concat(lines, "\n") .. "\n")
    end)

    lazy_teardown(function()
      if db then db.conn:close(); db.stop() end
      cli.rm_rf(dir)
    end)

    local function need()
      if not db then pending(why) return false end
      return true
    end

    local function exec(sql, ...)
      local n = select("#", ...)
      if n > 0 then
        local i = 0
        sql = sql:gsub("%?", function() i = i + 1; return db.placeholder(i) end)
      end
      return assert(db.conn:query(sql, ...))
    end

    local function sync(...)
      local rc, out, err = cli.run({ "sync", config, "--json", ... })
      local ok, s = pcall(json.decode, out)
      assert(ok and type(s) == "table", "bad sync output: " .. out .. "\n" .. err)
      assert.are.equal(s.status == "completed" and 0 or -1, rc, out .. err)
      return s
    end

    local function counts(s) return { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count } end

    -- The ids (numbers after the prefix) of the hits for a word, sorted.
    local function hits(word)
      local rc, out = cli.run({ "search", config, "search-items", word, "--json", "--limit", "100" })
      assert.are.equal(0, rc, out)
      local ids = {}
      for _, h in ipairs(json.decode(out).hits) do
        assert.are.equal(db.prefix, h.id:sub(1, #db.prefix), h.id)
        ids[#ids + 1] = tonumber(h.id:sub(#db.prefix + 1))
      end
      table.sort(ids)
      return ids
    end

    it("writes exactly the changed rows, never deletes, and leaves deletions to the full sync", function()
      if not need() then return end
      exec(db.create)
      -- rows 1..19 one second apart; row 20 has no updated-at
      for i = 1, 20 do
        exec("INSERT INTO items VALUES (?, ?, ?)", i, "item r" .. i,
          i < 20 and string.format("2024-01-01 00:00:%02d", i) or nil)
      end
      assert.are.same({ 20, 20, 0, 0, 0, 20 }, counts(sync()))

      -- six rows share one new timestamp (more than a fetch of 4, so they
      -- straddle a page), three are inserted, one deleted, and the row
      -- without an updated-at changes where no cursor can see it
      local t1 = "2024-02-01 12:00:00.25"
      exec("UPDATE items SET title = CONCAT('edited r', id), updated_at = ? WHERE id BETWEEN 3 AND 8", t1)
      exec("INSERT INTO items VALUES (21, 'inserted r21', ?), (22, 'inserted r22', ?), (23, 'inserted r23', ?)",
        t1, t1, "2024-02-02 00:00:00")
      exec("DELETE FROM items WHERE id = 1")
      exec("UPDATE items SET title = 'nullts r20' WHERE id = 20")

      -- the first incremental sync has no cursor: it lists every row with an
      -- updated-at and writes only the nine that changed
      assert.are.same({ 21, 9, 12, 0, 0, 23 }, counts(sync("--incremental")))
      assert.are.same({ 3, 4, 5, 6, 7, 8 }, hits("edited"))
      assert.are.same({ 21, 22, 23 }, hits("inserted"))
      assert.are.same({ 1 }, hits("r1"))      -- deleted at the source, still indexed
      assert.are.same({}, hits("nullts"))     -- not seen by an incremental sync

      -- nothing after the cursor (2024-02-02, 23): nothing listed
      assert.are.same({ 0, 0, 0, 0, 0, 23 }, counts(sync("--incremental")))

      -- five rows share a later timestamp (straddling a fetch again), and a
      -- row is inserted at the cursor's own timestamp with a higher key
      exec("UPDATE items SET title = CONCAT('later r', id), updated_at = ? WHERE id BETWEEN 10 AND 14",
        "2024-03-01 08:30:00.000001")
      exec("INSERT INTO items VALUES (24, 'inserted r24', ?)", "2024-02-02 00:00:00")
      assert.are.same({ 6, 6, 0, 0, 0, 24 }, counts(sync("--incremental")))
      assert.are.same({ 10, 11, 12, 13, 14 }, hits("later"))
      assert.are.same({ 21, 22, 23, 24 }, hits("inserted"))
      assert.are.same({ 0, 0, 0, 0, 0, 24 }, counts(sync("--incremental")))

      -- the full sync deletes row 1 and writes the change of row 20
      assert.are.same({ 23, 1, 22, 1, 0, 23 }, counts(sync()))
      assert.are.same({}, hits("r1"))
      assert.are.same({ 20 }, hits("nullts"))
      -- and the cursor is where the last incremental sync left it
      assert.are.same({ 0, 0, 0, 0, 0, 23 }, counts(sync("--incremental")))
    end)
  end)
end
