-- sluice.mysql from Lua, inside the sluice binary (real tasks, real loop),
-- against a real MariaDB started by spec/fixtures/servers/mariadb.sh.
-- Run: build/sluice lua spec/busted.lua spec/runtime/db/mysql_spec.lua
-- (and again with TZ=Europe/Berlin: nothing may change).
local mysql = require("sluice.mysql")
local task = require("sluice.task")
local json = require("sluice.json")
local crypto = require("sluice.crypto")
local fixture = require("spec.fixtures.servers.mariadb")

local server, why = fixture.start()

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("sluice.mysql", function()
  if not server then
    pending("no MariaDB server: " .. tostring(why))
    return
  end

  local function connect(extra)
    local o = {}
    for k, v in pairs(server.opts) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return mysql.connect(o)
  end

  local db
  lazy_setup(function()
    db = assert(connect())
  end)

  lazy_teardown(function()
    if db then db:close() end
    fixture.stop(server)
  end)

  describe("connect", function()
    it("authenticates with a password and runs in UTC with utf8mb4", function()
      local r = assert(db:query("SELECT CURRENT_USER(), @@session.time_zone, @@character_set_client, " ..
                                "@@character_set_results, @@character_set_connection"))
      assert.are.same({ "sluice@127.0.0.1", "+00:00", "utf8mb4", "utf8mb4", "utf8mb4" }, r.rows[1])
    end)

    it("reports a wrong password clearly", function()
      local c, err, state = connect({ password = "wrong" })
      assert.is_nil(c)
      assert.are.equal("authentication failed: Access denied for user 'sluice'@'127.0.0.1' " ..
                       "(using password: YES)", err)
      assert.are.equal("28000", state)
    end)

    it("reports a server that is down as connection refused", function()
      -- a port that was free a moment ago: nothing listens there
      local p = io.popen("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); " ..
                         "print(s.getsockname()[1])'")
      local port = tonumber(p:read("*l"))
      p:close()
      local c, err = connect({ port = port })
      assert.is_nil(c)
      assert.are.equal("connection refused (127.0.0.1:" .. port .. ")", err)
    end)

    it("gives up on a server that never answers after connect_timeout", function()
      -- a listener that accepts (the kernel does) but never speaks
      local p = io.popen("exec python3 -c 'import socket,sys,time; s=socket.socket(); " ..
                         "s.bind((\"127.0.0.1\", 0)); s.listen(8); print(s.getsockname()[1]); " ..
                         "import os; print(os.getpid()); sys.stdout.flush(); time.sleep(30)'")
      local port = tonumber(p:read("*l"))
      local pid = tonumber(p:read("*l"))
      local t0 = task.now()
      local c, err = connect({ port = port, connect_timeout = 0.3 })
      local took = task.now() - t0
      os.execute("kill " .. pid)
      p:close()
      assert.is_nil(c)
      assert.are.equal("connect timeout", err)
      assert.is_true(took >= 0.25 and took < 2, "took " .. took)
    end)

    it("keeps its timeouts after the loop was blocked (stale loop clock)", function()
      -- a task that blocks the loop (here a synchronous sleep) leaves the
      -- loop's cached clock behind: timers started from it must not fire at
      -- once
      for _, o in ipairs({ { connect_timeout = 1 }, { query_timeout = 1 } }) do
        os.execute("sleep 1.2")
        local c, err = connect(o)
        assert(c, err)
        os.execute("sleep 1.2")
        local r, qerr = c:query("SELECT SLEEP(0.05), 7")
        assert(r, qerr)
        assert.are.equal(7, r.rows[1][2])
        c:close()
      end
    end)

    it("connects through the unix socket too", function()
      local c = assert(connect({ host = "localhost", port = 0, socket = server.socket }))
      assert.are.same({ { "sluice@localhost" } }, c:query("SELECT CURRENT_USER()").rows)
      c:close()
    end)

    it("reports an unknown database", function()
      local c, err, state = connect({ database = "no_such_db" })
      assert.is_nil(c)
      assert.are.equal("connect failed: Access denied for user 'sluice'@'127.0.0.1' to database 'no_such_db'",
                       err)
      assert.are.equal("42000", state)
    end)

    it("raises on misuse", function()
      assert.has_error(function() mysql.connect("x") end)
      assert.has_error(function() mysql.connect({ port = "3306" }) end,
                       "bad option 'port' (number expected, got string)")
      assert.has_error(function() mysql.connect({ ssl_mode = "maybe" }) end,
                       "bad option 'ssl_mode' (disable, require, verify-ca or verify-full)")
      assert.has_error(function() mysql.connect({ charset = "latin1" }) end,
                       "bad option 'charset' (only utf8mb4 is supported)")
      assert.has_error(function() db:query(42) end)
      assert.has_error(function() db:query("SELECT ?", {}) end,
                       "bad parameter #1 (nil, boolean, number or string expected, got table)")
      assert.has_error(function() db:cursor("SELECT 1", nil, { fetch_size = 0 }) end,
                       "bad option 'fetch_size' (positive number expected)")
    end)
  end)

  describe("TLS", function()
    local function cipher(c)
      return assert(c:query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).rows[1][2]
    end

    it("is off unless asked for", function()
      assert.are.equal("", cipher(db))
    end)

    it("is on with ssl_mode=require", function()
      local c = assert(connect({ ssl_mode = "require" }))
      assert.matches("^TLS_", cipher(c))
      c:close()
    end)

    it("verifies the server against ssl_ca (verify-ca, verify-full)", function()
      for _, mode in ipairs({ "verify-ca", "verify-full" }) do
        local c, err = connect({ ssl_mode = mode, ssl_ca = server.ca })
        assert(c, mode .. ": " .. tostring(err))
        assert.matches("^TLS_", cipher(c))
        c:close()
      end
    end)

    it("refuses a server its CA did not sign", function()
      local other = server.base .. "/other-ca.pem"
      os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=other' -keyout " ..
                 server.base .. "/other-key.pem -out " .. other .. " >/dev/null 2>&1")
      local c, err = connect({ ssl_mode = "verify-ca", ssl_ca = other })
      assert.is_nil(c)
      assert.matches("^connect failed: .*certificate", err)
    end)
  end)

  describe("types", function()
    lazy_setup(function()
      local out = server.root([[
CREATE TABLE types_t (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  dc DECIMAL(30,10), f FLOAT, f2 FLOAT(7,3), d DOUBLE,
  b8 BIT(8), b53 BIT(53), b64 BIT(64),
  c CHAR(10), vc VARCHAR(100), tx TEXT,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  j JSON,
  dt DATE, dtt DATETIME, dtt6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL,
  tm TIME, tm6 TIME(6), yr YEAR,
  en ENUM('a','b','ç'), st SET('x','y','z'),
  g GEOMETRY
) CHARACTER SET utf8mb4;
SET time_zone = '+02:00';
INSERT INTO types_t VALUES (1,
  -128, 255, -32768, -8388608, -2147483648, 4294967295,
  9007199254740993, 18446744073709551615,
  '12345678901234567890.0123456789', 1.1, 1234.5678, 0.1,
  b'10100101', 9007199254740991, x'0102030405060708',
  'abc', 'héllo 😀 "q" \\ ''', 'emoji 👍🏽 and 中文',
  x'00FF1080', x'', x'DEADBEEF',
  '{"a":[1,2,{"b":null}],"s":"é","n":1.5}',
  '2024-02-29', '2024-02-29 23:59:59', '2024-01-02 03:04:05.123456',
  '2024-06-01 12:00:00', NULL,
  '838:59:59', '-01:02:03.000004', 2024,
  'ç', 'x,z',
  ST_GeomFromText('POINT(1 2)'));
SET time_zone = '+00:00';
INSERT INTO types_t (id, bi, biu, dt, dtt, ts, ts3, tm, yr, f, d, b8, j)
  VALUES (2, -9007199254740992, 9007199254740992, '0000-00-00', '0000-00-00 00:00:00',
          '0000-00-00 00:00:00', '2024-06-01 12:00:00.5', '-838:59:59', 1901, -3.4e38, 5e-324, b'0',
          '[]');
INSERT INTO types_t (id) VALUES (3);
]])
      assert.are.equal("", out)
    end)

    local names = { "id", "ti", "tiu", "si", "mi", "i", "iu", "bi", "biu", "dc", "f", "f2", "d",
                    "b8", "b53", "b64", "c", "vc", "tx", "bn", "vb", "bl", "j", "dt", "dtt", "dtt6",
                    "ts", "ts3", "tm", "tm6", "yr", "en", "st", "g" }
    local types = { "int", "tinyint", "tinyint unsigned", "smallint", "mediumint", "int",
                    "int unsigned", "bigint", "bigint unsigned", "decimal", "float", "float",
                    "double", "bit", "bit", "bit", "char", "varchar", "text", "binary", "varbinary",
                    "blob", "json", "date", "datetime", "datetime", "timestamp", "timestamp", "time",
                    "time", "year", "enum", "set", "geometry" }
    local row1 = {
      id = 1, ti = -128, tiu = 255, si = -32768, mi = -8388608, i = -2147483648, iu = 4294967295,
      bi = "9007199254740993", biu = "18446744073709551615",
      dc = "12345678901234567890.0123456789", f = 1.1, f2 = 1234.568, d = 0.1,
      b8 = 165, b53 = 9007199254740991, b64 = "AQIDBAUGBwg=",
      c = "abc", vc = 'héllo 😀 "q" \\ \'', tx = "emoji 👍🏽 and 中文",
      bn = "AP8QgA==", vb = "", bl = "3q2+7w==",
      j = { a = { 1, 2, { b = json.null } }, s = "é", n = 1.5 },
      dt = "2024-02-29", dtt = "2024-02-29T23:59:59", dtt6 = "2024-01-02T03:04:05.123456",
      ts = "2024-06-01T10:00:00Z", ts3 = nil,
      tm = "838:59:59", tm6 = "-01:02:03.000004", yr = 2024,
      en = "ç", st = "x,z",
      -- WKB with MariaDB's 4-byte SRID prefix: POINT(1 2)
      g = "AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA==",
    }
    local row2 = {
      id = 2, bi = -9007199254740992, biu = 9007199254740992, dt = nil, dtt = nil, ts = nil,
      ts3 = "2024-06-01T12:00:00.500Z", tm = "-838:59:59", yr = 1901, f = -3.4e38, d = 5e-324,
      b8 = 0, j = {},
    }

    local function check(r, label)
      assert.are.equal(#names, #r.columns)
      for k, name in ipairs(names) do
        assert.are.equal(name, r.columns[k].name)
        assert.are.equal(types[k], r.columns[k].type, label .. " type of " .. name)
      end
      assert.are.equal("type geometry is not mapped: values are kept as base64 strings",
                       r.columns[#names].warning)
      assert.are.equal(3, #r.rows)
      for ri, want in ipairs({ row1, row2, { id = 3 } }) do
        local row = r.rows[ri]
        for k, name in ipairs(names) do
          assert.are.same(want[name], row[k], label .. " row " .. ri .. " column " .. name)
        end
      end
      assert.are.equal(getmetatable(json.decode("[]")), getmetatable(r.rows[2][23]))
    end

    it("maps every type exactly (text protocol)", function()
      check(assert(db:query("SELECT * FROM types_t ORDER BY id")), "text")
    end)

    it("maps every type the same way with parameters (binary protocol)", function()
      check(assert(db:query("SELECT * FROM types_t WHERE id >= ? ORDER BY id", 0)), "binary")
    end)

    it("maps every type the same way through a cursor", function()
      for _, params in ipairs({ {}, { 0 } }) do
        local sql = #params > 0 and "SELECT * FROM types_t WHERE id >= ? ORDER BY id"
            or "SELECT * FROM types_t ORDER BY id"
        local cur = assert(db:cursor(sql, params, { fetch_size = 2 }))
        local rows = {}
        while true do
          local page = assert(cur:fetch())
          if #page == 0 then break end
          assert.is_true(#page <= 2)
          for _, r in ipairs(page) do rows[#rows + 1] = r end
        end
        check({ columns = cur:columns(), rows = rows }, "cursor")
        assert.is_true(cur:close())
      end
    end)

    it("keeps values of unknown shape as strings, never failing the query", function()
      local r = assert(db:query("SELECT ST_GeomFromText('LINESTRING(0 0, 1 1)') AS g, 1 AS n"))
      assert.are.equal("geometry", r.columns[1].type)
      assert.are.equal("string", type(r.rows[1][1]))
      assert.are.equal(1, r.rows[1][2])
    end)

    it("reads expressions: NULL, booleans, big arithmetic, dates", function()
      local r = assert(db:query("SELECT NULL, TRUE, 1 = 0, 2 * 9007199254740993, CAST(-1 AS UNSIGNED), " ..
                                "DATE '2000-01-01', CAST('12:00:00.5' AS TIME(1)), x'41'"))
      assert.are.same({ nil, 1, 0, "18014398509481986", "18446744073709551615", "2000-01-01",
                        "12:00:00.5", "QQ==" }, r.rows[1])
      assert.are.equal("null", r.columns[1].type)
    end)
  end)

  describe("parameters", function()
    lazy_setup(function()
      assert(db:query("CREATE TABLE hostile (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(200), " ..
                      "b VARBINARY(200), n DOUBLE, k BOOLEAN) CHARACTER SET utf8mb4"))
    end)

    local hostile = {
      "'; DROP TABLE hostile; --", "back\\slash\\", "nul\0byte\0", "emoji 😀👍🏽 ß",
      "\"double\" 'single' `back`", "\\'", "%_ LIKE wildcards", "\r\n\t\26",
    }

    it("binds hostile strings as values, never as SQL", function()
      for i, s in ipairs(hostile) do
        local r = assert(db:query("INSERT INTO hostile (s, b, n, k) VALUES (?, ?, ?, ?)", s, s, i + 0.25,
                                  i % 2 == 0))
        assert.are.equal(1, r.affected)
        assert.are.equal(i, r.insert_id)
      end
      for i, s in ipairs(hostile) do
        local r = assert(db:query("SELECT id, s, b, n, k FROM hostile WHERE s = ? AND b = ?", s, s))
        assert.are.same({ { i, s, crypto.base64_encode(s), i + 0.25, i % 2 == 0 and 1 or 0 } }, r.rows)
      end
      -- the text protocol reads them back byte for byte too
      local r = assert(db:query("SELECT s FROM hostile ORDER BY id"))
      for i, s in ipairs(hostile) do assert.are.equal(s, r.rows[i][1]) end
    end)

    it("reads long values through the binary protocol exactly", function()
      -- longer than the first column buffer: the driver must grow it and
      -- read the value again, then keep the bigger buffer for the next rows
      local blob = {}
      for i = 1, 70000 do blob[i] = string.char((i * 7) % 256) end
      blob = table.concat(blob)
      local text = string.rep("é😀", 3000)
      assert(db:query("CREATE TABLE longs (id INT PRIMARY KEY, b MEDIUMBLOB, t MEDIUMTEXT, d DECIMAL(65,30))"))
      assert(db:query("INSERT INTO longs VALUES (1, ?, ?, ?), (2, 'short', 'short', 1), (3, ?, ?, ?)",
                      blob, text, "12345678901234567890123456789012345.123456789012345678901234567890",
                      blob .. "x", text .. "x", "-1"))
      local want = {
        { 1, crypto.base64_encode(blob), text, "12345678901234567890123456789012345.123456789012345678901234567890" },
        { 2, crypto.base64_encode("short"), "short", "1.000000000000000000000000000000" },
        { 3, crypto.base64_encode(blob .. "x"), text .. "x", "-1.000000000000000000000000000000" },
      }
      assert.are.same(want, db:query("SELECT id, b, t, d FROM longs WHERE id > ? ORDER BY id", 0).rows)
      assert.are.same(want, db:query("SELECT id, b, t, d FROM longs ORDER BY id").rows)
    end)

    it("binds nil and json.null as NULL, and big integers exactly", function()
      local r = assert(db:query("SELECT ? IS NULL, ? IS NULL, ? + 0, ?", nil, json.null, 2 ^ 53, -7))
      assert.are.same({ 1, 1, 9007199254740992, -7 }, r.rows[1])
    end)

    it("counts cursor parameters with n, trailing nils included", function()
      local cur = assert(db:cursor("SELECT ? IS NULL, ? IS NULL", { 1, nil, n = 2 }))
      assert.are.same({ { 0, 1 } }, cur:fetch())
      assert.are.same({}, cur:fetch())
    end)

    it("reports a parameter count that does not match", function()
      local r, err = db:query("SELECT ?, ?", 1)
      assert.is_nil(r)
      assert.are.equal("the statement takes 2 parameters, got 1", err)
      assert(db:query("SELECT 1")) -- still usable
    end)

    it("escapes identifiers with doubled backticks", function()
      assert.are.equal("`a``b`", mysql.escape_identifier("a`b"))
      assert.are.equal("````", mysql.escape_identifier("`"))
      assert.has_error(function() mysql.escape_identifier("a\0b") end)
      local name = mysql.escape_identifier("we`ird table; --")
      assert(db:query("CREATE TABLE " .. name .. " (x INT)"))
      assert(db:query("INSERT INTO " .. name .. " VALUES (?)", 5))
      assert.are.same({ { 5 } }, db:query("SELECT x FROM " .. name).rows)
    end)
  end)

  describe("errors", function()
    it("returns the server's error with its SQLSTATE and stays usable", function()
      local r, err, state = db:query("SELECT * FROM no_such_table")
      assert.is_nil(r)
      assert.are.equal("mysql error 1146: Table 'sluice_test.no_such_table' doesn't exist", err)
      assert.are.equal("42S02", state)
      r, err, state = db:query("SELECT * FROM no_such_table WHERE x = ?", 1)
      assert.is_nil(r)
      assert.are.equal("42S02", state)
      assert.are.same({ { 1 } }, db:query("SELECT 1").rows)
    end)

    it("skips the extra result sets of a CALL", function()
      assert(db:query("CREATE PROCEDURE two_results() BEGIN SELECT 1; SELECT 2; END"))
      assert.are.same({ { 1 } }, db:query("CALL two_results()").rows)
      assert.are.same({ { 3 } }, db:query("SELECT 3").rows)
      -- and through a prepared statement, with a parameter
      assert(db:query("CREATE PROCEDURE two_results_p(IN x INT) BEGIN SELECT x; SELECT x + 1; END"))
      assert.are.same({ { 5 } }, db:query("CALL two_results_p(?)", 5).rows)
      assert.are.same({ { 4 } }, db:query("SELECT ?", 4).rows)
      local cur = assert(db:cursor("CALL two_results_p(?)", { 8 }))
      assert.are.same({ { 8 } }, cur:fetch())
      assert.are.same({}, cur:fetch())
      assert.are.same({ { 6 } }, db:query("SELECT 6").rows)
    end)

    it("says a closed connection is closed", function()
      local c = assert(connect())
      assert.is_true(c:close())
      assert.is_true(c:close())
      local r, err = c:query("SELECT 1")
      assert.is_nil(r)
      assert.are.equal("connection closed", err)
      -- a cursor whose connection was closed under it says so too
      c = assert(connect())
      local cur = assert(c:cursor("SELECT seq FROM seq_1_to_1000", nil, { fetch_size = 10 }))
      assert.are.equal(10, #cur:fetch())
      assert.is_true(c:close())
      r, err = cur:fetch()
      assert.is_nil(r)
      assert.are.equal("connection closed", err)
      assert.is_true(cur:close())
    end)
  end)

  describe("streaming", function()
    local N = 200000
    lazy_setup(function()
      assert(db:query("CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200))"))
      assert(db:query("INSERT INTO big SELECT seq, REPEAT('x', 150) FROM seq_1_to_" .. N))
    end)

    it("streams 200k rows with flat memory", function()
      local c = assert(connect())
      local cur = assert(c:cursor("SELECT id, pad FROM big ORDER BY id", nil, { fetch_size = 500 }))
      local seen, sum, rss10k, lua10k, rss_max, lua_max = 0, 0, nil, nil, 0, 0
      while true do
        local rows = assert(cur:fetch())
        if #rows == 0 then break end
        for _, r in ipairs(rows) do
          seen = seen + 1
          sum = sum + r[1]
          assert(#r[2] == 150)
        end
        if seen == 10000 then
          collectgarbage()
          rss10k, lua10k = rss_kb(), collectgarbage("count")
        end
        if seen % 10000 == 0 and rss10k then
          rss_max = math.max(rss_max, rss_kb())
          -- live data only: garbage awaiting a collection is not growth
          collectgarbage()
          lua_max = math.max(lua_max, collectgarbage("count"))
        end
      end
      assert.are.equal(N, seen)
      assert.are.equal(N * (N + 1) / 2, sum)
      print(string.format("\n  streamed %d rows: RSS %d kB at 10k rows, max %d kB after; Lua heap %d kB at 10k, max %d kB",
                          N, rss10k, rss_max, lua10k, lua_max))
      assert.is_true(rss_max - rss10k < 16 * 1024, "RSS grew by " .. (rss_max - rss10k) .. " kB")
      assert.is_true(lua_max < lua10k + 8 * 1024, "Lua heap grew to " .. lua_max .. " kB")
      c:close()
    end)

    it("closes a cursor early and the connection runs the next query", function()
      for _, params in ipairs({ {}, { 0 } }) do
        local sql = #params > 0 and "SELECT id FROM big WHERE id > ? ORDER BY id" or "SELECT id FROM big ORDER BY id"
        local cur = assert(db:cursor(sql, params, { fetch_size = 100 }))
        local rows = assert(cur:fetch())
        assert.are.equal(100, #rows)
        assert.are.equal(1, rows[1][1])
        local r, err = db:query("SELECT 1")
        assert.is_nil(r)
        assert.are.equal("connection busy: a cursor is open", err)
        assert.is_true(cur:close())
        assert.are.same({}, cur:fetch())
        assert.are.same({ { N } }, db:query("SELECT COUNT(*) FROM big").rows)
      end
    end)

    it("drains a cursor dropped without close before the next query", function()
      do
        local cur = assert(db:cursor("SELECT id FROM big", nil, { fetch_size = 10 }))
        assert.are.equal(10, #cur:fetch())
      end
      collectgarbage()
      collectgarbage()
      assert.are.same({ { 42 } }, db:query("SELECT 42").rows)
    end)
  end)

  describe("shaped documents", function()
    it("are what sluice.sql's id and timestamp rules make of each row, in both protocols", function()
      local check = require("spec.support.shape_check").check
      local c = assert(connect())
      assert(c:query([[CREATE TABLE shaped (k VARCHAR(20), n BIGINT, u BIGINT UNSIGNED,
        f DOUBLE, dec_ DECIMAL(30,10), b BIT(3), bl BLOB, j JSON, dt DATETIME(3), ts TIMESTAMP NULL,
        d DATE, t TIME, s TEXT, nul INT)]]))
      assert(c:query([[INSERT INTO shaped VALUES
        ('a|b', 1, 18446744073709551615, 0.1, 1.5, b'101', 'x\\y', '{"z": 1, "a": [2]}',
         '2024-02-29 13:45:30.500', '2024-02-29 13:45:30', '2024-02-29', '838:59:59', 'x', NULL),
        ('back\\slash', 9007199254740993, 0, -2.5e300, -0.001, b'0', '', '"s|t"',
         '1999-12-31 23:59:59', NULL, '0000-00-00', '-01:00:00', NULL, NULL),
        (NULL, -9007199254740991, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL, NULL, '', NULL),
        ('', 0, 5, 1e-300, 0, b'111', 'bin', '[]', '2024-01-01 00:00:00', '1970-01-02 00:00:00',
         '2024-01-01', '00:00:00', '\\N', NULL)]]))
      local q = "SELECT * FROM shaped ORDER BY n"
      for col = 1, 14 do
        check(c, { sql = q, ids = { col } })
        -- with a parameter the rows come through the binary protocol
        check(c, { sql = "SELECT * FROM shaped WHERE n > ? ORDER BY n", params = { -2 ^ 60, n = 1 }, ids = { col } })
      end
      check(c, { sql = q, ids = { 1, 13 }, ts = 9 })
      check(c, { sql = q, ids = { 13, 1, 14 }, ts = 10, fetch_size = 3 })
      check(c, { sql = q, ids = { 2 }, ts = 11, fetch_size = 100 })
      check(c, { sql = "SELECT * FROM shaped WHERE n > ? ORDER BY n", params = { -2 ^ 60, n = 1 },
        ids = { 8, 2 }, ts = 9, namespace = "", kind = "query", name = "q|1" })
      assert(c:query("DROP TABLE shaped"))
      -- a JSON key column holds values of every kind: each gets its own id
      assert(c:query("CREATE TABLE jkeys (j JSON)"))
      assert(c:query([[INSERT INTO jkeys VALUES ('1'), ('"1"'), ('true'), ('"true"'), ('null'), (NULL),
        ('{"a": 1}'), ('"{\\"a\\":1}"'), ('[1]'), ('"[1]"')]]))
      for _, params in ipairs({ false, true }) do
        local docs = check(c, { sql = params and "SELECT * FROM jkeys WHERE ? = 1" or "SELECT * FROM jkeys",
          params = params and { 1, n = 1 } or nil, ids = { 1 } })
        local seen = {}
        for _, d in ipairs(docs) do
          assert.is_nil(seen[d._id], d._id)
          seen[d._id] = true
        end
        assert.are.equal(10, #docs)
      end
      assert(c:query("DROP TABLE jkeys"))
      -- values longer than the binary protocol's first buffer are read again
      -- into a bigger one, id column included
      assert(c:query("CREATE TABLE longv (k MEDIUMTEXT, v LONGTEXT)"))
      assert(c:query("INSERT INTO longv VALUES (REPEAT('k|', 40000), REPEAT('v', 300000)), ('short', 'x'),"
        .. " (REPEAT('\\\\', 5000), REPEAT('w', 70000))"))
      local docs = check(c, { sql = "SELECT * FROM longv WHERE ? = 1 ORDER BY LENGTH(v)", params = { 1, n = 1 },
        ids = { 1 }, fetch_size = 1 })
      assert.are.equal(3, #docs)
      assert.are.equal(300000, #docs[3].v)
      assert(c:query("DROP TABLE longv"))
      c:close()
    end)
  end)

  describe("concurrency", function()
    it("runs queries of several tasks on several connections at once", function()
      local conns = {}
      for i = 1, 4 do conns[i] = assert(connect()) end
      local t0 = task.now()
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = task.spawn(function()
          local r = assert(conns[i]:query("SELECT SLEEP(0.4), ?", i))
          return r.rows[1][2]
        end)
      end
      for i = 1, 4 do
        local ok, v = tasks[i]:join()
        assert.is_true(ok)
        assert.are.equal(i, v)
      end
      local took = task.now() - t0
      assert.is_true(took < 1.2, "took " .. took .. " s: the queries did not overlap")
      for i = 1, 4 do conns[i]:close() end
    end)

    it("refuses a second operation on a busy connection", function()
      local c = assert(connect())
      local t = task.spawn(function() return c:query("SELECT SLEEP(0.2)") end)
      task.yield()
      local r, err = c:query("SELECT 1")
      assert.is_nil(r)
      assert.are.equal("connection busy", err)
      local ok, res = t:join()
      assert.is_true(ok)
      assert.are.same({ { 0 } }, res.rows)
      c:close()
    end)

    it("aborts the connection when a waiting task is cancelled", function()
      local c = assert(connect())
      local t = task.spawn(function() return c:query("SELECT SLEEP(5)") end)
      task.yield()
      local t0 = task.now()
      assert.is_true(t:cancel())
      local ok, err = t:join()
      assert.is_nil(ok)
      assert.are.equal("cancelled", err)
      assert.is_true(task.now() - t0 < 1)
      local r, e = c:query("SELECT 1")
      assert.is_nil(r)
      assert.are.equal("connection lost", e)
      c:close()
    end)

    it("times a query out after query_timeout", function()
      local c = assert(connect({ query_timeout = 0.2 }))
      local t0 = task.now()
      local r, err = c:query("SELECT SLEEP(3)")
      assert.is_nil(r)
      assert.are.equal("query timeout", err)
      assert.is_true(task.now() - t0 < 1.5)
      c:close()
    end)
  end)
end)
