-- sluice.extract inside the real runtime: crafted fixtures (written by
-- spec/fixtures/extract/make_fixtures.py into spec/.tmp), real files from
-- /usr/share/doc and small PDFs from Debian packages (fetched once with
-- apt-get download into spec/.tmp/extract-corpus), the streaming sink,
-- misuse, limits, and that extraction runs off the event loop.
local extract = require("sluice.extract")
local task = require("sluice.task")

local TMP = "spec/.tmp"
local FX = TMP .. "/extract-fixtures"
local CORPUS = TMP .. "/extract-corpus"

local function sh(cmd)
  return os.execute(cmd) == 0
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local d = f:read("*a")
  f:close()
  return d
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function fx(name, opts)
  opts = opts or {}
  opts.path = true
  return extract.text(FX .. "/" .. name, opts)
end

-- Fetches the corpus packages once; false when apt cannot reach a mirror.
local corpus_ready
local function corpus()
  if corpus_ready == nil then
    local marker = CORPUS .. "/.done"
    if not exists(marker) then
      corpus_ready = sh("mkdir -p " .. CORPUS .. " && cd " .. CORPUS ..
        " && apt-get download pssh purifyeps xmlformat-doc >/dev/null 2>&1" ..
        " && for d in *.deb; do dpkg-deb -x \"$d\" x || exit 1; done && touch .done")
    else
      corpus_ready = true
    end
  end
  return corpus_ready
end

setup(function()
  assert(sh("mkdir -p " .. FX .. " && python3 spec/fixtures/extract/make_fixtures.py " .. FX))
end)

describe("extract.text on crafted files", function()
  it("reads a PDF's text layer and metadata", function()
    local r = assert(fx("hello.pdf"))
    assert.are.same({
      text = "Hello PDF world\nSecond line\nPage two text", mime = "application/pdf",
      title = "Fixture Title", author = "Sluice Tests", pages = 2,
      created = "2024-01-31T12:00:00Z", modified = "2024-02-01T08:00:00Z",
    }, r)
  end)

  it("detects by content: a PDF named .docx, a gzip-compressed PDF", function()
    assert.are.equal("Hello PDF world\nSecond line\nPage two text", assert(fx("pdf_named.docx")).text)
    local r = assert(fx("hello.pdf.gz"))
    assert.are.equal("application/pdf", r.mime)
    assert.are.equal(2, r.pages)
  end)

  it("gives metadata and 'encrypted' for a user-password PDF", function()
    local r, err, partial = fx("user_pw.pdf")
    assert.is_nil(r)
    assert.are.equal("encrypted", err)
    assert.are.same({ encrypted = true, mime = "application/pdf" }, partial)
  end)

  it("reads an owner-password-only PDF (copying forbidden) in full", function()
    local r = assert(fx("owner_pw.pdf"))
    assert.are.equal("Owner locked text", r.text)
    assert.are.equal("Fixture Title", r.title)
    assert.is_nil(r.encrypted)
  end)

  it("flags an image-only PDF no_text, without an error", function()
    local r = assert(fx("image_only.pdf"))
    assert.are.same({ text = "", no_text = true, pages = 1, title = "Scan", mime = "application/pdf" }, r)
  end)

  it("fails a truncated or corrupt PDF for that document only", function()
    local r, err, partial = fx("truncated.pdf")
    assert.is_nil(r)
    assert.are.equal("truncated pdf", err)
    assert.are.equal("application/pdf", partial.mime)
    r, err = fx("corrupt.pdf")
    assert.is_nil(r)
    assert.are.equal("malformed pdf", err)
    assert.are.equal("Page two text", assert(fx("hello.pdf")).text:match("[^\n]+$"))
  end)

  it("keeps only the visible text of HTML", function()
    local r = assert(fx("script_style.html"))
    assert.are.equal("Heading\nCafé <tag> €5\none\ntwo\na b", r.text)
    assert.are.equal("Visible & Title", r.title)
    assert.are.equal("text/html", r.mime)
  end)

  it("reads the charset an HTML page declares, and XHTML", function()
    local r = assert(fx("latin1_meta.html"))
    assert.are.equal("Straße à Zürich", r.text)
    assert.are.equal("Grüße", r.title)
    r = assert(fx("page.xhtml"))
    assert.are.same({ text = "Extensible markup", title = "X Page", mime = "application/xhtml+xml" }, r)
  end)

  it("converts UTF-16, a UTF-8 BOM and windows-1252 to UTF-8", function()
    local line = "Naïve café résumé: “quotes” — déjà vu."
    assert.are.equal(line, assert(fx("utf16le.txt")).text)
    assert.are.equal(line, assert(fx("utf16be.txt")).text)
    assert.are.equal(line, assert(fx("utf8_bom.txt")).text)
    assert.are.equal(line .. "\n" .. line .. "\n" .. line, assert(fx("cp1252.txt")).text)
  end)

  it("reads CSV (even named .txt) and TSV one row a line", function()
    local r = assert(fx("csv_named.txt"))
    assert.are.equal("text/csv", r.mime)
    assert.are.equal("name\tcity\tamount\nAda\tLondon\t12\nLovelace, A.\tNew York\t7\nBob\tsay \"hi\"\t3", r.text)
    assert.are.equal("id\tword\n1\talpha\n2\tbeta", assert(fx("table.tsv")).text)
  end)

  it("reads JSON string values and XML text", function()
    assert.are.equal("JSON doc\nx\nyé\nline\nbreak\n😀", assert(fx("data.json")).text)
    assert.are.equal("First & best\nAlpha bold text\nSecond\nraw <cdata>", assert(fx("feed.xml")).text)
  end)

  it("calls a binary it cannot read unsupported, and an empty file empty", function()
    local r, err, partial = fx("binary.bin")
    assert.is_nil(r)
    assert.truthy(err:match("^unsupported: "), err)
    assert.are.equal(partial.mime, err:sub(#"unsupported: " + 1))
    assert.are.same({ text = "", mime = "text/plain" }, assert(fx("empty.txt")))
  end)
end)

describe("extract.text limits and misuse", function()
  it("caps the output in characters and flags it truncated", function()
    local r = assert(extract.text("héllo wörld", { max_chars = 7 }))
    assert.are.same({ text = "héllo w", truncated = true, mime = "text/plain" }, r)
  end)

  it("refuses input over max_input", function()
    local r, err = extract.text(string.rep("a", 100), { max_input = 99 })
    assert.is_nil(r)
    assert.are.equal("too large", err)
    r, err = fx("hello.pdf", { max_input = 100 })
    assert.are.equal("too large", err)
  end)

  it("stops a gzip bomb at the inflation cap", function()
    local bomb = TMP .. "/extract-bomb.gz"
    assert(sh("head -c 30000000 /dev/zero | gzip -9 > " .. bomb))
    local r, err = extract.text(bomb, { path = true, max_entry_inflated = 1000000 })
    assert.is_nil(r)
    assert.are.equal("inflated size over limit", err)
  end)

  it("forces a type, takes a name hint, and reports a missing file", function()
    assert.are.equal("a\tb", assert(extract.text("a,b", { type = "csv" })).text)
    assert.are.equal("text/csv", assert(extract.text("a,b\n", { name = "x.csv" })).mime)
    local r, err = extract.text(FX .. "/nope.pdf", { path = true })
    assert.is_nil(r)
    assert.are.equal("not found", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() extract.text() end)
    assert.has_error(function() extract.text("x", 5) end)
    assert.has_error(function() extract.text("x", { type = "bogus" }) end, "opts.type: unknown type 'bogus'")
    assert.has_error(function() extract.text("x", { max_chars = "many" }) end, "opts.max_chars: number expected")
    assert.has_error(function() extract.text("x", { max_chars = -1 }) end, "opts.max_chars: must not be negative")
  end)

  it("detects types", function()
    assert.are.same({ "pdf", "application/pdf" }, { extract.detect("%PDF-1.4\n", "a.txt") })
    assert.are.same({ "csv", "text/csv" }, { extract.detect("a,b\n", "a.csv") })
    assert.are.same({ "text", "text/plain" }, { extract.detect("hello") })
  end)
end)

describe("extract.stream", function()
  it("extracts a document written in chunks", function()
    local data = read(FX .. "/hello.pdf")
    local s = extract.stream({ name = "hello.pdf" })
    for i = 1, #data, 1000 do assert(s:write(data:sub(i, i + 999))) end
    assert.are.equal(#data, s:size())
    local r = assert(s:finish())
    assert.are.equal("Hello PDF world\nSecond line\nPage two text", r.text)
    assert.are.same({ nil, "finished" }, { s:write("x") })
    assert.are.same({ nil, "finished" }, { s:finish() })
  end)

  it("drops the buffer past max_input and fails the same way at finish", function()
    local s = extract.stream({ max_input = 10 })
    assert(s:write("12345"))
    assert.are.same({ nil, "too large" }, { s:write("678901") })
    assert.are.equal(0, s:size())
    assert.are.same({ nil, "too large" }, { s:finish() })
  end)

  it("frees an unfinished sink", function()
    local s = extract.stream()
    s:write(string.rep("x", 100000))
    s = nil
    collectgarbage()
    collectgarbage()
  end)
end)

describe("extract off the event loop", function()
  it("lets other tasks run while a big document is parsed", function()
    local big = "<html><body>" .. string.rep("<p>some words in a paragraph &amp; more</p>\n", 150000) .. "</body></html>"
    local ticks, done = 0, false
    local ticker = task.spawn(function()
      while not done do task.sleep(0.001); ticks = ticks + 1 end
    end)
    local r = assert(extract.text(big, { max_chars = 0 }))
    done = true
    ticker:join()
    assert.are.equal(150000 * 32 + 149999, #r.text)
    assert.is_true(ticks > 3, "ticks: " .. ticks)
  end)

  it("runs many extractions at once, PDFs included", function()
    local ts = {}
    for i = 1, 24 do
      ts[i] = task.spawn(function()
        if i % 3 == 0 then return assert(fx("hello.pdf")).pages end
        return assert(extract.text("doc " .. i)).text
      end)
    end
    for i = 1, 24 do
      local ok, v = ts[i]:join()
      assert.is_true(ok)
      assert.are.equal(i % 3 == 0 and 2 or "doc " .. i, v)
    end
  end)

  it("survives a task cancelled mid-extraction", function()
    local big = string.rep("<div>x</div>", 400000)
    local t = task.spawn(function() return extract.text(big) end)
    task.yield()
    t:cancel()
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.are.equal("cancelled", err)
    assert.are.equal("after", assert(extract.text("after")).text)
  end)
end)

describe("extract on real files", function()
  it("reads Debian's base-passwd HTML", function()
    local path = "/usr/share/doc/base-passwd/users-and-groups.html"
    if not exists(path) then return pending("base-passwd documentation not installed") end
    local r = assert(extract.text(path, { path = true }))
    assert.are.equal("Users and Groups in the Debian System", r.title)
    local first = "Users and Groups in the Debian System\nJoey Hess\nColin Watson\n"
    assert.are.equal(first, r.text:sub(1, #first))
    assert.truthy(r.text:find("CUPS (Common Un*x Printing System) runs as this user.", 1, true))
    assert.truthy(r.text:find("Please send mail to <base-passwd@packages.debian.org>", 1, true))
    assert.is_nil(r.text:find("<[A-Za-z][A-Za-z]*[ >]"))
  end)

  local pdfs = {
    { "pssh/pssh-HOWTO.pdf", pages = 5, created = "2003-11-13T12:01:00Z",
      first = "pssh HOWTO\nBrent Chun\nTable of Contents", words = 737 },
    { "purifyeps/purifyeps.pdf", pages = 3, created = "2010-12-01T10:30:45-07",
      modified = "2010-12-01T10:33:03-07", author = "Scott Pakin <scott+peps@pakin.org>",
      title = "purifyeps -- make an Encapsulated PostScript file work with both dvips and pdflatex",
      first = "PURIFYEPS(1)\nPURIFYEPS(1)\nNAME\npurifyeps − make", words = 1025 },
    { "xmlformat-doc/tutorial.pdf", pages = 8, created = "2022-01-14T14:21:01Z",
      title = "xmlformat Tutorial", author = "Paul DuBois",
      first = "xmlformat Tutorial\nPaul DuBois <paul@kitebird.com>\nTable of Contents", words = 2227 },
    { "xmlformat-doc/xmlformat.pdf", pages = 19, created = "2022-01-14T14:21:01Z",
      title = "The xmlformat XML Document Formatter", author = "Paul DuBois",
      first = "The xmlformat XML\nDocument Formatter\nPaul DuBois", words = 5767 },
  }
  for _, p in ipairs(pdfs) do
    it("reads " .. p[1] .. " from its Debian package", function()
      if not corpus() then return pending("apt-get download failed (no Debian mirror)") end
      local r = assert(extract.text(CORPUS .. "/x/usr/share/doc/" .. p[1], { path = true }))
      assert.are.equal(p.pages, r.pages)
      assert.are.equal(p.created, r.created)
      assert.are.equal(p.modified, r.modified)
      assert.are.equal(p.title, r.title)
      assert.are.equal(p.author, r.author)
      assert.are.equal(p.first, r.text:sub(1, #p.first))
      local words = 0
      for _ in r.text:gmatch("%S+") do words = words + 1 end
      assert.are.equal(p.words, words)
    end)
  end
end)
