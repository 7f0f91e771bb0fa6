-- sluice.content: extraction results as document fields, and downloads
-- streamed into extraction by a connector's lazy content, through the real
-- CLI and engine (spec/fixtures/connectors/web_files.lua) against the
-- fixture server spec/fixtures/httpd.py serving the extraction fixtures.
local cli = require("spec.support.cli")
local json = require("sluice.json")
local content = require("sluice.content")

local FIXTURES = "spec/fixtures/connectors"

describe("sluice.content.fields", function()
  it("maps text and metadata, flags, encrypted and unsupported files", function()
    assert.are.same({ body = "hi", content_title = "T", author = "A", content_created = "2024-01-01T00:00:00Z",
      pages = 2, truncated = true },
      content.fields({ text = "hi", title = "T", author = "A", created = "2024-01-01T00:00:00Z", pages = 2,
        truncated = true }))
    assert.are.same({ body = "", no_text = true }, content.fields({ text = "", no_text = true }))
    assert.are.same({ encrypted = true, content_error = "encrypted", pages = 3 },
      content.fields(nil, "encrypted", { encrypted = true, pages = 3 }))
    assert.are.same({ x = 1 }, content.fields(nil, "unsupported: image/png", { mime = "image/png" }, { x = 1 }))
    assert.are.same({ nil, "extract: malformed pdf" }, { content.fields(nil, "malformed pdf", {}) })
  end)
end)

describe("sluice.content.download through a sync", function()
  local server, pid, base, dir, config
  local FILES = "spec/.tmp/content-files"

  lazy_setup(function()
    assert(os.execute("mkdir -p " .. FILES .. " && python3 spec/fixtures/extract/make_fixtures.py " .. FILES ..
      " >/dev/null && python3 spec/fixtures/extract/make_office.py " .. FILES .. " >/dev/null") == 0)
    server = assert(io.popen("exec python3 spec/fixtures/httpd.py 0 --files " .. FILES))
    local port = tonumber(server:read("*l"))
    pid = tonumber(server:read("*l"))
    assert(port and pid, "the fixture server did not start")
    base = "http://127.0.0.1:" .. port .. "/file/"
  end)
  lazy_teardown(function()
    if pid then os.execute("kill " .. pid) end
    if server then server:close() end
  end)
  before_each(function() dir = cli.tmpdir(); config = dir .. "/sluice.yml" end)
  after_each(function() cli.rm_rf(dir) end)

  local function configure(files, max_input)
    cli.write(config, "data_dir: ./data\nconnectors:\n  - id: w\n    service_type: web_files\n" ..
      "    index_name: search-w\n    configuration:\n      base_url: " .. base .. "\n      files: [" ..
      table.concat(files, ", ") .. "]\n" .. (max_input and ("      max_input: " .. max_input .. "\n") or ""))
  end
  local function sync()
    local rc, out, err = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " sync " ..
      cli.q(config) .. " --json")
    local ok, s = pcall(json.decode, out)
    assert(ok, "bad output: " .. out .. err)
    return rc, s
  end
  local function search(q)
    local rc, out = cli.sh("SLUICE_CONNECTORS_PATH=" .. FIXTURES .. " " .. cli.bin .. " search " ..
      cli.q(config) .. " search-w " .. cli.q(q) .. " --json")
    assert.are.equal(0, rc)
    return json.decode(out)
  end

  it("indexes the extracted text of downloaded HTML and DOCX, and downloads nothing unchanged", function()
    configure({ "script_style.html", "sample.docx" })
    local rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 2, 2, 0 }, { s.listed, s.indexed, s.errors })
    local hits = search("Quarterly report").hits
    assert.are.equal(1, #hits)
    assert.are.equal(base .. "sample.docx", hits[1].id)
    assert.are.equal("application/vnd.openxmlformats-officedocument.wordprocessingml.document", hits[1].doc.mime_type)
    local html = search("Heading").hits
    assert.are.equal(1, #html)
    assert.are.same({ "Visible & Title", "text/html" }, { html[1].doc.content_title, html[1].doc.mime_type })
    assert.are.equal(0, #search("document.write").hits) -- script text is not visible text
    rc, s = sync()
    assert.are.equal(0, rc)
    assert.are.same({ 0, 2 }, { s.indexed, s.unchanged })
  end)

  it("fails one document past max_input or on an HTTP error, and indexes the rest", function()
    local size = io.open(FILES .. "/sample.docx"):seek("end")
    configure({ "sample.docx", "script_style.html", "missing.pdf" }, size - 1)
    local rc, s = sync()
    assert.are.equal(3, rc)
    assert.are.equal("completed_with_errors", s.status)
    assert.are.same({ 3, 1, 2 }, { s.listed, s.indexed, s.errors })
    local reasons = {}
    for _, e in ipairs(s.error_samples) do reasons[e.id] = e.reason end
    assert.are.same({ [base .. "sample.docx"] = "too large", [base .. "missing.pdf"] = "HTTP 404" }, reasons)
  end)
end)
