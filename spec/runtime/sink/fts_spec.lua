-- sluice.sink.fts through its Lua API, inside the sluice binary: what the
-- sync engine and the `search` command rely on.
local fts = require("sluice.sink.fts")
local sqlite = require("sluice.sqlite")

local function tmp_path()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function remove_db(p)
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do
    os.remove(p .. suffix)
  end
end

local function hit_ids(res)
  local out = {}
  for i, h in ipairs(res.hits) do
    out[i] = h.id
  end
  return out
end

describe("sluice.sink.fts", function()
  local path, idx

  before_each(function()
    path = tmp_path()
    idx = assert(fts.open(path, "products"))
  end)

  after_each(function()
    idx:close()
    remove_db(path)
  end)

  it("upserts by _id and deletes", function()
    assert.is_true(idx:put({ _id = "p1", title = "Red kettle", body = "boils water" }))
    assert.is_true(idx:put({ _id = "p1", title = "Blue kettle", body = "boils water fast" }))
    assert.are.equal(1, idx:count())
    assert.are.same({ _id = "p1", title = "Blue kettle", body = "boils water fast" }, idx:get("p1"))
    assert.are.equal(0, idx:search("red").total)
    assert.are.same({ "p1" }, hit_ids(idx:search("blue kettle")))
    assert.is_true(idx:delete("p1"))
    assert.is_false(idx:delete("p1"))
    assert.are.equal(0, idx:count())
    assert.is_nil(idx:get("p1"))
  end)

  it("returns hits with id, positive score, title, snippet and the document", function()
    idx:put({ _id = "a", title = "Garden hose", body = "a long green hose", sku = "GH-1" })
    local res = assert(idx:search("hose"))
    assert.are.equal(1, res.total)
    local h = res.hits[1]
    assert.are.equal("a", h.id)
    assert.are.equal("Garden hose", h.title)
    assert.are.equal("Garden [hose]", h.snippet)
    assert.is_true(h.score > 0)
    assert.are.same({ _id = "a", title = "Garden hose", body = "a long green hose", sku = "GH-1" }, h.doc)
    -- the sku is in "other": searchable by its literal text
    assert.are.same({ "a" }, hit_ids(idx:search("GH-1")))
  end)

  it("ranks a title match above a body match above other fields", function()
    idx:put({ _id = "body", title = "Tools", body = "a sturdy hammer for nails" })
    idx:put({ _id = "other", title = "Misc", body = "assorted", tags = { "hammer" } })
    idx:put({ _id = "title", title = "Hammer", body = "for nails and more" })
    for i = 1, 10 do
      idx:put({ _id = "f" .. i, title = "Filler " .. i, body = "plain text" })
    end
    assert.are.same({ "title", "body", "other" }, hit_ids(idx:search("hammer")))
  end)

  it("treats the user's text as words, never as query syntax", function()
    local docs = {
      pol = "Incident POL-358 resolved",
      csharp = "C# generics",
      dont = "don't panic",
      ver = "upgrade to v1.2 now",
      mail = "ask user@example.org",
      near = "NEAR(a b) is a function",
      quote = "an unbalanced remark",
      col = "title:foo appears in text",
      ops = "this AND that OR NOT",
    }
    for id, body in pairs(docs) do
      assert(idx:put({ _id = id, body = body }))
    end
    idx:put({ _id = "foo-title", title = "foo" })
    local cases = {
      ["POL-358"] = "pol",
      ["C#"] = "csharp",
      ["don't"] = "dont",
      ["v1.2"] = "ver",
      ["user@example.org"] = "mail",
      ["NEAR(a b)"] = "near",
      ['"unbalanced'] = "quote",
      ["title:foo"] = "col",
      ["AND OR NOT"] = "ops",
      ["remark *"] = "quote",
    }
    for q, id in pairs(cases) do
      assert.are.same({ id }, hit_ids(assert(idx:search(q))), q)
    end
  end)

  it("fails a query with no words instead of returning nothing", function()
    for _, q in ipairs({ "", "   ", "--", "*", '""', "()" }) do
      local res, err = idx:search(q)
      assert.is_nil(res)
      assert.are.equal("query has no words", err)
    end
    assert.are.equal('"hello" AND "w-o-r-l-d"', fts.query("hello -- w-o-r-l-d"))
  end)

  it("finds unicode and emoji text", function()
    idx:put({ _id = "u", title = "Crème brûlée 🍮", body = "naïve café ☕ in São Paulo" })
    for _, q in ipairs({ "creme", "BRÛLÉE", "🍮", "☕", "sao paulo", "naive cafe" }) do
      assert.are.same({ "u" }, hit_ids(assert(idx:search(q))), q)
    end
  end)

  it("pages with limit and offset and reports the total", function()
    for i = 1, 30 do
      idx:put({ _id = string.format("d%02d", i), body = "common word" })
    end
    local res = assert(idx:search("common", { limit = 7, offset = 28 }))
    assert.are.equal(30, res.total)
    assert.are.equal(2, #res.hits)
    assert.has_error(function()
      idx:search("common", { limit = -3 })
    end)
  end)

  it("streams ids and commits in batches of 1,000", function()
    for i = 1, 1200 do
      idx:put({ _id = "id" .. i, body = "x" })
    end
    local reader = assert(sqlite.open(path, { readonly = true }))
    assert.are.equal(1000, reader:one("SELECT count(*) AS n FROM ix_products_docs").n)
    assert.is_true(idx:flush())
    assert.are.equal(1200, reader:one("SELECT count(*) AS n FROM ix_products_docs").n)
    reader:close()
    local n = 0
    for id in idx:ids() do
      n = n + 1
      assert.are.equal("id" .. n, id)
    end
    assert.are.equal(1200, n)
  end)

  it("keeps several indexes in one file and lists them", function()
    local other = assert(fts.open(path, "people"))
    other:put({ _id = "x", name = "Ada Lovelace" })
    idx:put({ _id = "x", title = "Analytical engine" })
    assert.are.equal(0, other:search("engine").total)
    assert.are.equal(1, other:search("ada").total)
    other:close()
    assert.are.same({ "people", "products" }, fts.list(path))
  end)

  it("returns errors for bad documents and names", function()
    assert.are.same({ nil, "document has no string _id" }, { idx:put({ title = "x" }) })
    local cyc = { _id = "c" }
    cyc.again = cyc
    assert.are.same({ nil, "nesting too deep" }, { idx:put(cyc) })
    assert.are.same({ nil, "index name is empty" }, { fts.open(path, "") })
    assert.has_error(function()
      idx:put("nope")
    end)
    assert.are.equal(0, idx:count())
  end)

  it("works from inside a spawned task", function()
    local task = require("sluice.task")
    local t = task.spawn(function()
      idx:put({ _id = "t", body = "from a task" })
      task.sleep(0.001)
      return idx:search("task").total
    end)
    local ok, total = t:join()
    assert.is_true(ok)
    assert.are.equal(1, total)
  end)
end)
