-- db:run_array(sql, values, n): db:run with its parameters taken from an
-- array, for the state database's queued multi-row INSERT.
local sqlite = require("sluice.sqlite")

describe("sqlite db:run_array", function()
  local db
  before_each(function()
    db = assert(sqlite.open(":memory:"))
    assert(db:exec("CREATE TABLE t (a, b, c)"))
  end)
  after_each(function() db:close() end)

  it("binds values[1..n] in order, as db:run binds its arguments", function()
    local v = { "x", 1, 2.5, "y", true, "late" }
    assert.are.equal(2, db:run_array("INSERT INTO t VALUES (?, ?, ?), (?, ?, ?)", v, 6))
    local rows = {}
    for r in db:rows("SELECT a, b, c FROM t ORDER BY rowid") do rows[#rows + 1] = r end
    assert.are.same({ { a = "x", b = 1, c = 2.5 }, { a = "y", b = 1, c = "late" } }, rows)
  end)

  it("binds only the first n values; missing trailing parameters and nil holes are NULL", function()
    assert.are.equal(1, db:run_array("INSERT INTO t VALUES (?, ?, ?)", { "a", nil, "c", "ignored" }, 2))
    assert.are.same({ a = "a" }, db:one("SELECT a, b, c FROM t"))
  end)

  it("reuses the cached statement with fresh values", function()
    local sql = "INSERT INTO t VALUES (?, ?, ?)"
    for i = 1, 3 do assert.are.equal(1, db:run_array(sql, { i, i * 2, "s" .. i }, 3)) end
    assert.are.same({ n = 3, s = 12 }, db:one("SELECT count(*) AS n, sum(b) AS s FROM t"))
  end)

  it("refuses a bad value, too many values and a bad count, naming them", function()
    assert.has_error(function() db:run_array("INSERT INTO t VALUES (?, ?, ?)", { 1, {}, 3 }, 3) end,
      "bad value #2 in parameter array (must be nil, boolean, number or string)")
    assert.has_error(function() db:run_array("INSERT INTO t VALUES (?, ?, ?)", { 1, 2, 3, 4 }, 4) end,
      "too many parameters for statement")
    assert.has_error(function() db:run_array("INSERT INTO t VALUES (?)", {}, -1) end)
    assert.are.same({ nil, "no such table: nope" }, { db:run_array("INSERT INTO nope VALUES (?)", { 1 }, 1) })
    assert.are.equal(0, db:one("SELECT count(*) AS n FROM t").n)
  end)

  it("reports a failing statement as nil, err", function()
    assert(db:exec("CREATE TABLE u (k PRIMARY KEY)"))
    assert.are.equal(1, db:run_array("INSERT INTO u VALUES (?)", { "k" }, 1))
    local ok, err = db:run_array("INSERT INTO u VALUES (?)", { "k" }, 1)
    assert.is_nil(ok)
    assert.matches("UNIQUE constraint failed", err)
  end)
end)
