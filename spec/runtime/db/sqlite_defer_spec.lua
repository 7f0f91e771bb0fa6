-- db:defer(sql[, values, n[, first]]) and db:wait(): writes run on the
-- connection's writer thread, in order, and every other call sees them.
local sqlite = require("sluice.sqlite")

describe("sqlite db:defer", function()
  local db, path
  before_each(function()
    path = os.tmpname()
    db = assert(sqlite.open(path))
    assert(db:exec("CREATE TABLE t (a PRIMARY KEY, b, c)"))
  end)
  after_each(function()
    db:close()
    os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  end)

  it("runs queued writes in order before any later read", function()
    assert.is_true(db:defer("BEGIN"))
    local v = {}
    for i = 1, 2000 do
      v[1], v[2], v[3] = i, i * 2, "s" .. i -- the same table, refilled: values are copied
      assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", v, 3))
    end
    assert.is_true(db:defer("UPDATE t SET c = 'last' WHERE a = 2000"))
    assert.is_true(db:defer("COMMIT"))
    assert.are.same({ n = 2000, s = 4002000 }, db:one("SELECT count(*) AS n, sum(b) AS s FROM t"))
    assert.are.same({ c = "last" }, db:one("SELECT c FROM t WHERE a = 2000"))
    assert.are.same({ c = "s1999" }, db:one("SELECT c FROM t WHERE a = 1999"))
  end)

  it("binds values[first .. first+n-1], with nil, booleans, floats and big integers", function()
    local q = { "skip", "x", nil, 2.5, 7, true, 2 ^ 60 }
    assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", q, 3, 2))
    assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", q, 3, 5))
    local rows = {}
    for r in db:rows("SELECT a, b, c, typeof(c) AS tc FROM t ORDER BY rowid") do rows[#rows + 1] = r end
    assert.are.same({ { a = "x", c = 2.5, tc = "real" }, { a = 7, b = 1, c = 2 ^ 60, tc = "integer" } }, rows)
  end)

  it("reports a failed write once, at the next call, and drops what was queued after it", function()
    assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", { 1, 1, 1 }, 3))
    assert.is_true(db:defer("BEGIN"))
    assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", { 2, 2, 2 }, 3))
    db:defer("INSERT INTO t VALUES (?, ?, ?)", { 1, 9, 9 }, 3) -- duplicate key
    db:defer("INSERT INTO t VALUES (?, ?, ?)", { 3, 3, 3 }, 3) -- dropped
    db:defer("COMMIT")                                         -- dropped: must not commit 2
    local r, err = db:one("SELECT count(*) AS n FROM t")
    assert.is_nil(r)
    assert.matches("^deferred write failed: UNIQUE constraint failed: t.a", err)
    -- reported once; the broken transaction is still open and can be rolled back
    assert.is_true(db:wait())
    assert.is_true(db:exec("ROLLBACK"))
    assert.are.same({ n = 1 }, db:one("SELECT count(*) AS n FROM t"))
  end)

  it("refuses new writes after a failure until it is reported", function()
    db:defer("INSERT INTO nosuch VALUES (1)")
    -- the queue holds at most 64 ops, so this loop waits for the writer,
    -- which runs the failing op first: a later defer must report it
    local ok, err, at
    for i = 1, 200 do
      ok, err = db:defer("INSERT INTO t VALUES (?, ?, ?)", { i, i, i }, 3)
      if not ok then at = i break end
    end
    assert.is_nil(ok)
    assert.is_true(at <= 70, "failure reported only at defer #" .. tostring(at))
    assert.matches("^deferred write failed: no such table: nosuch", err)
    -- reported once: the next call runs, and nothing queued after the failure was written
    assert.are.same({ n = 0 }, db:one("SELECT count(*) AS n FROM t"))
  end)

  it("never runs what was queued after a failure, even when a defer reports it first", function()
    assert(db:exec("CREATE TABLE u (x NOT NULL)"))
    local other = assert(sqlite.open(path))
    -- big values take the writer a moment even to drop
    local big = string.rep("x", 8 * 1024 * 1024)
    -- a race: a defer that reports the failure while ops queued after it
    -- wait their turn; a few rounds make it all but certain
    for round = 1, 15 do
      assert.is_true(db:defer("BEGIN"))
      assert.is_true(db:defer("INSERT INTO t VALUES (?, ?, ?)", { 1, 1, 1 }, 3))
      -- fails at its last row, after a while: the queue below is full by then
      assert.is_true(db:defer([[INSERT INTO u SELECT CASE WHEN x = 100000 THEN NULL ELSE x END
        FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
        SELECT x FROM c)]]))
      local err -- any defer from here on may be the one that reports it
      local function defer(...)
        local ok, e = db:defer(...)
        if not ok then err = e end
      end
      for i = 2, 5 do
        if not err then defer("INSERT INTO t VALUES (?, ?, ?)", { i, big, i }, 3) end
      end
      if not err then defer("COMMIT") end
      for _ = 1, 100000 do
        if err then break end
        defer("SELECT 1")
      end
      assert.matches("^deferred write failed: NOT NULL constraint failed: u.x", err)
      assert.is_true(db:wait())
      -- the COMMIT was dropped: the transaction is still open, nothing is visible elsewhere
      assert.are.same({ round = round, n = 0 }, { round = round, n = other:one("SELECT count(*) AS n FROM t").n })
      assert.is_true(db:exec("ROLLBACK"))
    end
    other:close()
  end)

  it("checks its values before it queues anything", function()
    assert.has_error(function() db:defer("INSERT INTO t VALUES (?, ?, ?)", { 1, {}, 3 }, 3) end,
      "bad value #2 in parameter array (must be nil, boolean, number or string)")
    assert.has_error(function() db:defer("INSERT INTO t VALUES (?)", {}, -1) end)
    assert.are.same({ n = 0 }, db:one("SELECT count(*) AS n FROM t"))
  end)

  it("writes what is queued when the database is closed", function()
    for i = 1, 300 do db:defer("INSERT INTO t VALUES (?, ?, ?)", { i, i, i }, 3) end
    db:close()
    db = assert(sqlite.open(path))
    assert.are.same({ n = 300 }, db:one("SELECT count(*) AS n FROM t"))
  end)
end)
