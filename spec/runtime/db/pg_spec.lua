-- sluice.pg from Lua, inside the sluice binary (real tasks, real loop),
-- against a real PostgreSQL 15 started for this file
-- (spec/fixtures/servers/postgres.sh) and stopped by PID at the end.
-- Run: build/sluice lua spec/busted.lua spec/runtime/db/pg_spec.lua
local pg = require("sluice.pg")
local task = require("sluice.task")
local json = require("sluice.json")
local server_mod = require("spec.support.postgres")

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")), tonumber(s:match("VmHWM:%s*(%d+)"))
end

describe("sluice.pg", function()
  local server, why, conn

  lazy_setup(function()
    server, why = server_mod.start()
    if server then
      conn = assert(pg.connect(server_mod.options(server)))
      assert(conn:query([[
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TYPE pair AS (a int, b text);
        CREATE TABLE types (
          id serial PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, i8big bigint,
          i8neg bigint, num numeric, numscale numeric(40,20), numnan numeric, r real,
          d double precision, dnan double precision, dinf double precision, b boolean,
          bf boolean, t text, vc varchar(20), ch char(4), by bytea, j json, jb jsonb,
          jnull jsonb, arr_i int[], arr_t text[], arr_2d int[], arr_empty int[],
          arr_mood mood[], arr_ts timestamptz[], uid uuid, ip inet, net cidr, iv interval,
          m money, dt date, tm time, ts timestamp, tstz timestamptz, tsinf timestamptz,
          e mood, p pair, nothing int);
        INSERT INTO types VALUES (DEFAULT, -32768, 2147483647, 9007199254740992,
          9223372036854775807, -9007199254740993, 12345678901234567890.123456789,
          0.1, 'NaN', 1.1, 0.30000000000000004, 'NaN', '-Infinity', true, false,
          E'h\u00e9llo \U0001F389 "q"\n', 'varchar', 'ab', '\x00ff41',
          '{"a": [1, 2.5, null], "b": "x"}', '{"k": {"n": 1}}', 'null',
          '{1,NULL,3}', '{"a,b","c\"d",NULL,"NULL"}', '{{1,2},{3,4}}', '{}',
          '{sad,happy}', '{"2024-02-29 13:45:30+01"}',
          'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8',
          '1 year 2 months 3 days 04:05:06.5', 12.34, '2024-02-29', '13:45:30.25',
          '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.5+01', 'infinity',
          'happy', ROW(1, 'x'), NULL);
      ]]))
    end
  end)

  lazy_teardown(function()
    if conn then conn:close() end
    server_mod.stop(server)
  end)

  local function need()
    if not server then pending(why) return false end
    return true
  end

  it("maps every type to its exact value", function()
    if not need() then return end
    local r = assert(conn:query("SELECT * FROM types"))
    local row, by = r.rows[1], {}
    for i, c in ipairs(r.columns) do by[c.name] = { v = row[i], type = c.type, unknown = c.unknown } end
    local want = {
      i2 = -32768, i4 = 2147483647, i8 = 2 ^ 53, i8big = "9223372036854775807",
      i8neg = "-9007199254740993", num = "12345678901234567890.123456789",
      numscale = "0.10000000000000000000", numnan = "NaN", r = 1.1, d = 0.30000000000000004,
      dnan = "NaN", dinf = "-Infinity", b = true, bf = false,
      t = "h\195\169llo \240\159\142\137 \"q\"\n", vc = "varchar", ch = "ab  ", by = "AP9B",
      uid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ip = "192.168.0.1/24", net = "10.0.0.0/8",
      iv = "P1Y2M3DT4H5M6.5S", m = "$12.34", dt = "2024-02-29", tm = "13:45:30.25",
      ts = "2024-02-29T13:45:30.123456", tstz = "2024-02-29T12:45:30.5Z", tsinf = "infinity",
      e = "happy", p = "(1,x)",
    }
    for k, v in pairs(want) do assert.are.equal(v, by[k].v, k) end
    assert.is_nil(by.nothing.v)
    assert.are.equal(json.null, by.jnull.v)
    -- decoded JSON and arrays, encoded back to check the exact shape
    assert.are.equal('{"a":[1,2.5,null],"b":"x"}', json.encode_canonical(by.j.v))
    assert.are.equal('{"k":{"n":1}}', json.encode_canonical(by.jb.v))
    assert.are.equal("[1,null,3]", json.encode(by.arr_i.v))
    assert.are.equal('["a,b","c\\"d",null,"NULL"]', json.encode(by.arr_t.v))
    assert.are.equal("[[1,2],[3,4]]", json.encode(by.arr_2d.v))
    assert.are.equal("[]", json.encode(by.arr_empty.v))
    assert.are.equal('["sad","happy"]', json.encode(by.arr_mood.v))
    assert.are.equal('["2024-02-29T12:45:30Z"]', json.encode(by.arr_ts.v))
    -- column types, and the one type with no mapping flagged for a warning
    assert.are.same({ "int4", "int2", "int4", "int8" },
      { r.columns[1].type, r.columns[2].type, r.columns[3].type, r.columns[4].type })
    assert.are.equal("mood", by.e.type)
    assert.are.equal("_mood", by.arr_mood.type)
    assert.is_true(by.p.unknown)
    assert.is_nil(by.e.unknown)
    assert.is_nil(by.t.unknown)
  end)

  it("gives timestamptz in UTC whatever the session or process time zone", function()
    if not need() then return end
    local c = assert(pg.connect(server_mod.options(server)))
    assert(c:query("SET TimeZone = 'Europe/Berlin'"))
    local r = assert(c:query("SELECT tstz, '2024-07-01 00:30:00+05:30'::timestamptz AS x, "
      .. "'1850-01-01 00:00:00+00:53:28'::timestamptz AS lmt, "
      .. "'2000-01-01 00:00:00+14'::timestamptz AS y2k FROM types"))
    assert.are.same({ "2024-02-29T12:45:30.5Z", "2024-06-30T19:00:00Z", "1849-12-31T23:06:32Z",
      "1999-12-31T10:00:00Z" }, r.rows[1])
    c:close()
    -- another process whose TZ and PGTZ say Berlin
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
      local pg = require("sluice.pg")
      local c = assert(pg.connect{host = "127.0.0.1", port = %d, user = "postgres",
        password = %q, database = "postgres", ssl_mode = "disable"})
      local r = assert(c:query("SELECT tstz, tstz::text FROM types"))
      io.write(r.rows[1][1], " ", os.date("%%H", 0))
    ]], server.port, server_mod.PASSWORD))
    f:close()
    local rl = io.popen("readlink -f /proc/$PPID/exe")
    local bin = rl:read("*l")
    rl:close()
    local p = io.popen("TZ=Europe/Berlin PGTZ=Europe/Berlin " .. bin .. " lua " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(script)
    -- the process really runs in Berlin time (the epoch was 01:00 there)
    assert.are.equal("2024-02-29T12:45:30.5Z 01", out)
  end)

  it("binds hostile parameters, never splices them", function()
    if not need() then return end
    local hostile = {
      "'; DROP TABLE types; --", "$1", "\\x00", "quote ' and \" and \\", "🎉 emoji",
      string.rep("x", 100000), "",
    }
    for _, s in ipairs(hostile) do
      local r = assert(conn:query("SELECT $1::text AS v, length($1::text) AS n", s))
      assert.are.equal(s, r.rows[1][1])
    end
    local r = assert(conn:query("SELECT $1::int AS a, $2::text AS b, $3::bool AS c, $4::float8 AS d, $5::int8 AS e",
      42, nil, false, 0.1, 2 ^ 53))
    assert.are.same({ 42, nil, false, 0.1, 2 ^ 53 }, { r.rows[1][1], r.rows[1][2], r.rows[1][3], r.rows[1][4], r.rows[1][5] })
    assert.are.equal(json.null, json.null) -- json.null binds as NULL too
    r = assert(conn:query("SELECT $1::text IS NULL AS isnull", json.null))
    assert.is_true(r.rows[1][1])
    assert.are.equal(1, #assert(conn:query("SELECT * FROM types")).rows)
    local ok, err = conn:query("SELECT $1::text", "a\0b")
    assert.is_nil(ok)
    assert.are.equal("parameter contains a NUL byte", err)
    assert.has_error(function() conn:query("SELECT $1", {}) end,
      "bad argument #2 to 'query' (parameters must be strings, numbers, booleans or nil)")
    assert.has_error(function() conn:query(nil) end)
    -- with parameters, one statement only
    ok, err = conn:query("SELECT $1::int; DROP TABLE types", 1)
    assert.is_nil(ok)
    assert.are.equal("cannot insert multiple commands into a prepared statement", err)
    -- a cursor's statement is one statement too
    local cur
    cur, err = conn:cursor("SELECT 1; DROP TABLE types")
    assert.is_nil(cur)
    assert.are.equal("cannot insert multiple commands into a prepared statement", err)
    assert.are.equal(1, #assert(conn:query("SELECT * FROM types")).rows)
  end)

  it("reports errors with the server's message and SQLSTATE", function()
    if not need() then return end
    local r, err, state = conn:query("SELECT * FROM no_such_table")
    assert.is_nil(r)
    assert.are.equal('relation "no_such_table" does not exist', err)
    assert.are.equal("42P01", state)
    r, err, state = conn:query("SELECT 1/0")
    assert.are.same({ nil, "division by zero", "22012" }, { r, err, state })
    -- the connection is still usable
    assert.are.equal(2, assert(conn:query("SELECT 2")).rows[1][1])
    r = assert(conn:query("CREATE TEMP TABLE w(x int); INSERT INTO w SELECT generate_series(1, 7)"))
    assert.are.equal(7, r.affected)
    assert.are.equal(3, assert(conn:query("DELETE FROM w WHERE x <= $1", 3)).affected)
  end)

  it("refuses a wrong password, a closed port and an unknown host clearly", function()
    if not need() then return end
    local c, err = pg.connect(server_mod.options(server, { password = "wrong" }))
    assert.is_nil(c)
    assert.are.equal('password authentication failed for user "postgres"', err)
    c, err = pg.connect(server_mod.options(server, { port = 1 }))
    assert.is_nil(c)
    assert.are.equal("connection refused", err)
    c, err = pg.connect(server_mod.options(server, { host = "no-such-host.invalid" }))
    assert.is_nil(c)
    assert.truthy(err:find("^could not resolve host no%-such%-host%.invalid"), err)
    c, err = pg.connect(server_mod.options(server, { database = "nope" }))
    assert.are.same({ nil, 'database "nope" does not exist' }, { c, err })
    -- a listener that accepts and never answers: the connect timeout fires
    local lp = io.popen("exec python3 -c 'import socket,time,os\ns=socket.socket()\n"
      .. "s.bind((\"127.0.0.1\",0))\ns.listen(5)\nprint(s.getsockname()[1],os.getpid(),flush=True)\n"
      .. "time.sleep(30)' 2>/dev/null")
    local lport, lpid = (lp:read("*l") or ""):match("^(%d+) (%d+)")
    if lport then
      local t0 = task.now()
      c, err = pg.connect(server_mod.options(server, { port = lport, connect_timeout = 0.3 }))
      local dt = task.now() - t0
      os.execute("kill " .. lpid)
      assert.are.same({ nil, "timeout" }, { c, err })
      assert.is_true(dt >= 0.29 and dt < 1, "took " .. dt)
    end
    lp:close()
    assert.has_error(function() pg.connect({ ssl_mode = "bogus" }) end)
    assert.has_error(function() pg.connect("host=x") end)
  end)

  it("speaks TLS, and verifies the server against a CA", function()
    if not need() then return end
    local c = assert(pg.connect(server_mod.options(server, { ssl_mode = "require" })))
    assert.is_true(c:ssl())
    c:close()
    c = assert(pg.connect(server_mod.options(server, { ssl_mode = "verify-full", ssl_ca = server.ca })))
    assert.is_true(c:ssl())
    assert.are.equal(1, assert(c:query("SELECT 1")).rows[1][1])
    c:close()
    local plain = assert(pg.connect(server_mod.options(server)))
    assert.is_false(plain:ssl())
    plain:close()
    local bad, err = pg.connect(server_mod.options(server, { ssl_mode = "verify-ca", ssl_ca = "/nonexistent/ca.crt" }))
    assert.is_nil(bad)
    assert.truthy(err:find("root certificate file", 1, true), err)
    -- a CA that did not sign the server's certificate
    local other = os.tmpname()
    os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout /dev/null -out "
      .. other .. " 2>/dev/null")
    bad, err = pg.connect(server_mod.options(server, { ssl_mode = "verify-ca", ssl_ca = other }))
    os.remove(other)
    assert.is_nil(bad)
    assert.truthy(err:find("certificate verify failed", 1, true), err)
  end)

  it("streams a 200k-row table in fetch_size batches with flat memory", function()
    if not need() then return end
    assert(conn:query("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 3) AS payload "
      .. "FROM generate_series(1, 200000) g"))
    collectgarbage()
    local rss0 = rss_kb()
    local t0 = task.now()
    local cur = assert(conn:cursor("SELECT id, payload FROM big ORDER BY id;  ", nil, { fetch_size = 2000 }))
    assert.are.same({ { name = "id", type = "int4" }, { name = "payload", type = "text" } }, cur:columns())
    local n, batches, max_batch, last, peak = 0, 0, 0, 0, rss0
    while true do
      local rows = assert(cur:fetch())
      if #rows == 0 then break end
      batches = batches + 1
      max_batch = math.max(max_batch, #rows)
      for _, row in ipairs(rows) do
        assert(row[1] == last + 1)
        last = row[1]
      end
      n = n + #rows
      if batches % 10 == 0 then peak = math.max(peak, (rss_kb())) end
    end
    local dt = task.now() - t0
    assert.are.same({}, cur:fetch())
    assert(cur:close())
    assert.are.same({ 200000, 100, 2000, 200000 }, { n, batches, max_batch, last })
    print(string.format("\n  pg cursor: 200000 rows in %.2fs (%.0f rows/s), RSS %d kB -> peak %d kB (+%d kB)",
      dt, n / dt, rss0, peak, peak - rss0))
    -- the whole table is ~20 MB of text: holding it as Lua strings would
    -- cost far more. Under AddressSanitizer freed memory sits in a
    -- quarantine (256 MB by default), so the bound there is only a sanity one.
    local bound = os.getenv("ASAN_OPTIONS") and 300 * 1024 or 40 * 1024
    assert.is_true(peak - rss0 < bound, "RSS grew by " .. (peak - rss0) .. " kB")
  end)

  it("runs cursors and queries interleaved on one connection, in one transaction", function()
    if not need() then return end
    local a = assert(conn:cursor("SELECT g FROM generate_series(1, 5) g", nil, { fetch_size = 2 }))
    local b = assert(conn:cursor("SELECT g * $1::int FROM generate_series(1, 3) g", { 10 }, { fetch_size = 2 }))
    assert.are.same({ { 1 }, { 2 } }, a:fetch())
    assert.are.same({ { 10 }, { 20 } }, b:fetch())
    assert.are.equal(7, assert(conn:query("SELECT 7")).rows[1][1])
    assert.are.same({ { 3 }, { 4 } }, a:fetch())
    assert.are.same({ { 30 } }, b:fetch())
    assert.are.same({}, b:fetch())
    assert(b:close())
    assert(b:close()) -- twice is harmless
    assert.are.same({ nil, "cursor closed" }, { b:fetch() })
    assert.are.same({ { 5 } }, a:fetch())
    assert(a:close())
    -- both closed: the transaction the cursors opened is over
    local r = assert(conn:query("SELECT count(*) FROM pg_cursors"))
    assert.are.equal("0", tostring(r.rows[1][1]))
    -- a failed cursor leaves no transaction behind
    local cur, err = conn:cursor("SELECT * FROM missing_table")
    assert.is_nil(cur)
    assert.are.equal('relation "missing_table" does not exist', err)
    assert.are.equal(1, assert(conn:query("SELECT 1")).rows[1][1])
    -- parameters with holes: n says how many
    cur = assert(conn:cursor("SELECT $1::int IS NULL, $2::text", { nil, "x", n = 2 }))
    assert.are.same({ { true, "x" } }, cur:fetch())
    cur:close()
    assert.has_error(function() conn:cursor("SELECT 1", nil, { fetch_size = 0 }) end)
  end)

  it("serves several tasks at once and refuses a busy connection", function()
    if not need() then return end
    local c1 = assert(pg.connect(server_mod.options(server)))
    local c2 = assert(pg.connect(server_mod.options(server)))
    local t0 = task.now()
    local t1 = task.spawn(function() return assert(c1:query("SELECT pg_sleep(0.4), 1")).rows[1][2] end)
    local t2 = task.spawn(function() return assert(c2:query("SELECT pg_sleep(0.4), 2")).rows[1][2] end)
    task.yield()
    assert.are.same({ nil, "connection busy" }, { c1:query("SELECT 3") })
    assert.are.same({ true, 1 }, { t1:join() })
    assert.are.same({ true, 2 }, { t2:join() })
    local dt = task.now() - t0
    assert.is_true(dt >= 0.4 and dt < 0.75, "took " .. dt)
    c1:close()
    c2:close()
  end)

  it("closes the connection when a waiting task is cancelled or the conn is closed", function()
    if not need() then return end
    local c = assert(pg.connect(server_mod.options(server)))
    local t = task.spawn(function() return c:query("SELECT pg_sleep(5)") end)
    task.sleep(0.05)
    assert.is_true(t:cancel())
    assert.are.same({ nil, "connection closed" }, { c:query("SELECT 1") })
    assert.are.equal("sluice.pg.conn (closed)", tostring(c))
    -- closing under a waiting task wakes it with an error
    c = assert(pg.connect(server_mod.options(server)))
    t = task.spawn(function() return c:query("SELECT pg_sleep(5)") end)
    task.sleep(0.05)
    c:close()
    assert.are.same({ true, nil, "connection closed" }, { t:join() })
    -- the server notices the closed sockets (client_connection_check_interval)
    -- and ends those backends' work: nothing is left running
    local left
    for _ = 1, 20 do
      task.sleep(0.1)
      local r = assert(conn:query("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)'"))
      left = r.rows[1][1]
      if left == 0 then break end
    end
    assert.are.equal(0, left)
  end)

  it("builds shaped documents exactly as sluice.sql's id and timestamp rules say", function()
    if not need() then return end
    local check = require("spec.support.shape_check").check
    assert(conn:query([[
      CREATE TABLE shaped (k text, n bigint, f double precision, b boolean, arr int[],
        j jsonb, num numeric, ts timestamp, tstz timestamptz, d date, s text, nul int);
      INSERT INTO shaped VALUES
        ('a|b', 1, 0.1, true, '{1,2}', '{"z":1,"a":[2]}', 1.50, '2024-02-29 13:45:30.5',
         '2024-02-29 13:45:30+01', '2024-02-29', 'x', NULL),
        (E'back\\slash', 9007199254740993, -2.5e300, false, '{}', '"s|t"', -0.001,
         '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '0001-01-01', NULL, NULL),
        (NULL, -9007199254740991, 'NaN', NULL, NULL, 'null', 12345678901234567890.5,
         NULL, NULL, NULL, '', NULL),
        ('', 0, '-Infinity', true, '{NULL}', '[]', 0, '2024-01-01 00:00:00', 'infinity',
         '2024-01-01', E'\\N', NULL)]]))
    local q = "SELECT * FROM shaped ORDER BY n"
    -- every column alone as the id, then composites, with each kind of
    -- timestamp column
    for col = 1, 12 do check(conn, { sql = q, ids = { col } }) end
    check(conn, { sql = q, ids = { 1, 11 }, ts = 8 })
    check(conn, { sql = q, ids = { 11, 1, 12 }, ts = 9, fetch_size = 3 })
    check(conn, { sql = q, ids = { 2, 2 }, ts = 10, fetch_size = 100 })
    check(conn, { sql = q, ids = { 5, 6 }, ts = 1, namespace = "", kind = "query", name = "q|1" })
    -- renamed and dropped fields
    local docs = check(conn, { sql = q, ids = { 2 },
      fields = { "column_table", false, "f", "b", "arr", "j", "num", "ts", "tstz", "d", "s", "nul" } })
    assert.are.equal("ns\\|x|t\\\\b|1", docs[3]._id)
    assert.are.equal("a|b", docs[3].column_table)
    assert.is_nil(docs[3].n)
    -- the ids of rows whose keys differ only by where a separator falls
    assert(conn:query([[CREATE TABLE seps (x text, y text);
      INSERT INTO seps VALUES ('x_', 'y'), ('x', '_y'), ('x|', 'y'), ('x', '|y'), ('x\', 'y'), (NULL, 'y'), ('\N', 'y')]]))
    docs = check(conn, { sql = "SELECT * FROM seps", ids = { 1, 2 } })
    local seen = {}
    for _, d in ipairs(docs) do
      assert.is_nil(seen[d._id], d._id)
      seen[d._id] = true
    end
    assert.are.equal(7, #docs)
    -- a JSON key column holds values of every kind: each gets its own id
    assert(conn:query([[CREATE TABLE jkeys (j jsonb);
      INSERT INTO jkeys VALUES ('1'), ('"1"'), ('true'), ('"true"'), ('null'), (NULL),
        ('{"a": 1}'), ('"{\"a\":1}"'), ('[1]'), ('"[1]"'), ('"\\N"')]]))
    docs = check(conn, { sql = "SELECT * FROM jkeys", ids = { 1 } })
    seen = {}
    for _, d in ipairs(docs) do
      assert.is_nil(seen[d._id], d._id)
      seen[d._id] = true
    end
    assert.are.equal(11, #docs)
    assert.is_true(seen["ns\\|x|t\\\\b|1"] and seen['ns\\|x|t\\\\b|"1"'] and seen["ns\\|x|t\\\\b|\\N"])
    assert(conn:query("DROP TABLE jkeys"))
    -- a bad shape is refused with the entry it names
    local cur = assert(conn:cursor(q))
    assert.has_error(function() cur:shape({ fields = { "a" }, ids = { 1 }, kind = "t", name = "n",
      prefix = "" }) end, "shape.fields: expected a list of 12 field names (one per column)")
    assert.has_error(function() cur:shape({ fields = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l" },
      ids = { 13 }, kind = "t", name = "n", prefix = "" }) end,
      "shape.ids[1]: expected a column position from 1 to 12")
    cur:close()
    assert(conn:query("DROP TABLE shaped; DROP TABLE seps"))
  end)

  it("prefetches the next batch: same rows, errors at the batch that fails, close at any point", function()
    if not need() then return end
    local q = "SELECT g, 'r' || g AS s FROM generate_series(1, 2500) g"
    local function all(cur)
      local out = {}
      while true do
        local rows = assert(cur:fetch())
        if #rows == 0 then return out end
        for _, r in ipairs(rows) do out[#out + 1] = r[1] .. r[2] end
        task.sleep(0.01) -- the prefetch lands meanwhile
      end
    end
    local cur = assert(conn:cursor(q, nil, { fetch_size = 300 }))
    local plain = all(cur)
    assert.is_true(cur:close())
    assert.are.equal(2500, #plain)
    cur = assert(conn:cursor(q, nil, { fetch_size = 300, prefetch = true }))
    assert.are.same(plain, all(cur))
    assert.is_true(cur:close())
    -- fetching at once joins the prefetch in flight
    cur = assert(conn:cursor(q, nil, { fetch_size = 300, prefetch = true }))
    local n = 0
    while true do
      local rows = assert(cur:fetch())
      if #rows == 0 then break end
      n = n + #rows
    end
    assert.are.equal(2500, n)
    assert.is_true(cur:close())
    -- a close while a prefetch is in flight waits for it; after one landed, too
    for _, pause in ipairs({ 0, 0.05 }) do
      cur = assert(conn:cursor(q, nil, { fetch_size = 300, prefetch = true }))
      assert.are.equal(300, #assert(cur:fetch()))
      if pause > 0 then task.sleep(pause) end
      assert.is_true(cur:close())
      assert.are.same({ { 1 } }, assert(conn:query("SELECT 1")).rows)
    end
    -- the connection is busy while a prefetch is in flight
    cur = assert(conn:cursor(q, nil, { fetch_size = 300, prefetch = true }))
    assert(cur:fetch())
    local r, err = conn:query("SELECT 1")
    assert.is_nil(r)
    assert.are.equal("connection busy", err)
    assert.is_true(cur:close())
    -- a batch that fails on the server fails the fetch that asks for it
    cur = assert(conn:cursor("SELECT 1 / (g - 700) FROM generate_series(1, 1000) g", nil,
      { fetch_size = 300, prefetch = true }))
    assert.are.equal(300, #assert(cur:fetch()))
    assert.are.equal(300, #assert(cur:fetch()))
    local rows, ferr = cur:fetch()
    assert.is_nil(rows)
    assert.matches("division by zero", ferr)
    cur:close()
    assert.are.same({ { 1 } }, assert(conn:query("SELECT 1")).rows)
  end)

  it("quotes identifiers", function()
    assert.are.equal('"users"', pg.escape_identifier("users"))
    assert.are.equal('"a""b"', pg.escape_identifier('a"b'))
    assert.are.equal('"Mixed Case; DROP"', pg.escape_identifier("Mixed Case; DROP"))
    assert.has_error(function() pg.escape_identifier("") end)
    assert.has_error(function() pg.escape_identifier("a\0b") end)
    assert.has_error(function() pg.escape_identifier(nil) end)
  end)
end)
