-- End to end: the filesystem connector gets text through sluice.extract.
-- The crafted fixtures (spec/fixtures/extract/make_fixtures.py) are synced
-- with the real CLI and searched: PDF, HTML, legacy charsets and CSV are
-- found by their text; an encrypted PDF is indexed by its metadata with
-- content_error "encrypted"; a truncated PDF is a per-document error; an
-- unreadable binary is metadata only.
local cli = require("spec.support.cli")
local json = require("sluice.json")

local function search(config, query)
  local rc, out, err = cli.run({ "search", config, "search-x", query, "--json" })
  assert(rc == 0, err)
  return json.decode(out)
end

local function only(res)
  assert.are.equal(1, res.total)
  return res.hits[1].doc
end

describe("filesystem connector with extraction", function()
  local dir, tree, config

  setup(function()
    dir = cli.tmpdir()
    tree = dir .. "/tree"
    assert(cli.sh("mkdir -p " .. cli.q(tree) .. " && python3 spec/fixtures/extract/make_fixtures.py " .. cli.q(tree)) == 0)
    config = dir .. "/sluice.yml"
    cli.write(config, table.concat({
      "data_dir: ./data",
      "connectors:",
      "  - id: x",
      "    service_type: filesystem",
      "    index_name: search-x",
      "    configuration:",
      "      path: " .. tree,
      "",
    }, "\n"))
  end)

  teardown(function() cli.rm_rf(dir) end)

  it("indexes the text of every supported format", function()
    local rc, out, err = cli.run({ "sync", config, "--json" })
    local s = json.decode(out)
    -- 21 files; truncated.pdf and corrupt.pdf are the per-document errors
    assert.are.equal(3, rc, err)
    assert.are.same({ 21, 19, 2 }, { s.listed, s.indexed, s.errors })
    local reasons = {}
    for _, e in ipairs(s.error_samples) do reasons[e.id:match("[^/]+$")] = e.reason end
    assert.are.same({ ["truncated.pdf"] = "extract: truncated pdf", ["corrupt.pdf"] = "extract: malformed pdf" }, reasons)

    local hits = search(config, "Page two text")
    assert.are.equal(3, hits.total) -- hello.pdf, hello.pdf.gz, pdf_named.docx
    local doc = only(search(config, "Owner locked"))
    assert.are.equal("owner_pw.pdf", doc.title)
    assert.are.equal("Fixture Title", doc.content_title)
    assert.are.equal("Sluice Tests", doc.author)
    assert.are.equal(1, doc.pages)

    doc = only(search(config, "Heading"))
    assert.are.equal("Heading\nCafé <tag> €5\none\ntwo\na b", doc.body)
    assert.are.equal(0, search(config, "hidden").total)

    doc = only(search(config, "Zürich"))
    assert.are.equal("latin1_meta.html", doc.title)
    assert.are.equal(4, search(config, "déjà").total) -- cp1252, UTF-16 LE and BE, UTF-8 with BOM
  end)

  it("keeps an encrypted PDF findable by name, and binaries as metadata", function()
    local doc = only(search(config, "user_pw.pdf"))
    assert.are.equal("encrypted", doc.content_error)
    assert.is_true(doc.encrypted)
    assert.is_nil(doc.body)
    doc = only(search(config, "binary.bin"))
    assert.is_nil(doc.body)
    assert.is_nil(doc.content_error)
  end)
end)
