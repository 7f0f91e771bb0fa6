-- http.request{sink = extract.stream(...)}: a download streamed into
-- extraction, against the fixture server spec/fixtures/httpd.py serving the
-- extraction fixtures (its /file route). The body never reaches Lua; the
-- sink's max_input stops the transfer; a failed transfer spends the sink.
local http = require("sluice.http")
local extract = require("sluice.extract")
local task = require("sluice.task")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local fixture = src .. "/spec/fixtures/httpd.py"
local DIR = "spec/.tmp/http-extract"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local d = f:read("*a")
  f:close()
  return d
end

describe("http.request into an extract sink", function()
  local server, pid, base

  lazy_setup(function()
    assert(os.execute("mkdir -p " .. DIR .. " && python3 spec/fixtures/extract/make_fixtures.py " .. DIR ..
      " >/dev/null && python3 spec/fixtures/extract/make_office.py " .. DIR .. " >/dev/null") == 0)
    server = assert(io.popen("exec python3 '" .. fixture .. "' 0 --files " .. DIR))
    local port = tonumber(server:read("*l"))
    pid = tonumber(server:read("*l"))
    assert(port and pid, "the fixture server did not start: " .. fixture)
    base = "http://127.0.0.1:" .. port .. "/file/"
  end)

  lazy_teardown(function()
    if pid then os.execute("kill " .. pid) end
    if server then server:close() end
  end)

  -- Downloads name into a fresh sink; returns res, err and the sink.
  local function fetch(name, query, opts)
    local sink = extract.stream(opts or { name = name })
    local res, err = http.request({ url = base .. name .. (query or ""), sink = sink })
    return res, err, sink
  end

  it("extracts an HTML page, the body never held as a Lua string", function()
    local res, err, sink = fetch("script_style.html")
    assert.is_nil(err)
    assert.are.equal(200, res.status)
    assert.is_nil(res.body)
    assert.are.equal(#read(DIR .. "/script_style.html"), res.bytes)
    assert.are.equal(res.bytes, sink:size())
    local r = assert(sink:finish())
    assert.are.same({ text = "Heading\nCafé <tag> €5\none\ntwo\na b", title = "Visible & Title",
      mime = "text/html" }, r)
    assert.are.same({ nil, "finished" }, { sink:finish() })
  end)

  it("extracts DOCX and PDF exactly as from the file, chunked or not", function()
    local names = { "sample.docx" }
    if extract.pdf then names[2] = "hello.pdf" end
    for _, name in ipairs(names) do
      local want = assert(extract.text(DIR .. "/" .. name, { path = true }))
      for _, q in ipairs({ "", "?chunked=1" }) do
        local res, err, sink = fetch(name, q)
        assert.is_nil(err)
        assert.are.equal(200, res.status)
        assert.are.same(want, assert(sink:finish()), name .. q)
      end
    end
    assert.are.equal("Header text\nQuarterly report\n",
      assert(extract.text(DIR .. "/sample.docx", { path = true })).text:sub(1, 29))
  end)

  it("stops a body past max_input: declared up front or while streaming", function()
    local size = #read(DIR .. "/sample.docx")
    for _, q in ipairs({ "", "?chunked=1" }) do
      local res, err, sink = fetch("sample.docx", q, { max_input = size - 1 })
      assert.is_nil(res)
      assert.are.equal("too large", err, q)
      assert.are.equal(0, sink:size())
      assert.are.same({ nil, "too large" }, { sink:finish() })
    end
    local res, _, sink = fetch("sample.docx", "?chunked=1", { max_input = size })
    assert.are.equal(size, res.bytes)
    assert.are.equal("Header text", assert(sink:finish()).text:sub(1, 11))
  end)

  it("spends the sink when the connection drops mid-body", function()
    local res, err, sink = fetch("sample.docx", "?drop=1000")
    assert.is_nil(res)
    assert.are.equal("connection closed", err)
    assert.are.equal(0, sink:size())
    assert.are.same({ nil, "connection closed" }, { sink:finish() })
    assert.are.same({ nil, "finished" }, { sink:finish() })
  end)

  it("takes an empty body as an empty document", function()
    local res, err, sink = fetch("empty.txt")
    assert.is_nil(err)
    assert.are.same({ 200, 0 }, { res.status, res.bytes })
    assert.is_nil(res.body)
    assert.are.equal("", assert(sink:finish()).text)
  end)

  it("leaves the sink unwritten on an error status; the page is res.body", function()
    local res, err, sink = fetch("no-such.pdf")
    assert.is_nil(err)
    assert.are.same({ 404, "no such file", 0 }, { res.status, res.body, sink:size() })
    res = assert(http.request({ url = base .. "script_style.html", sink = sink }))
    assert.are.equal(200, res.status)
    assert.are.equal("Visible & Title", assert(sink:finish()).title)
  end)

  it("refuses a sink in use or spent, and a cancelled transfer spends it", function()
    local sink = extract.stream()
    local slow = task.spawn(function()
      return http.request({ url = base:gsub("/file/$", "/delay/3000"), sink = sink })
    end)
    task.sleep(0.05)
    assert.are.same({ nil, "sink: busy" }, { http.request({ url = base .. "script_style.html", sink = sink }) })
    assert.are.same({ nil, "busy" }, { sink:write("x") })
    assert.are.same({ nil, "busy" }, { sink:finish() })
    slow:cancel()
    slow:join()
    assert.are.same({ nil, "cancelled" }, { sink:finish() })
    assert.are.same({ nil, "sink: finished" }, { http.request({ url = base .. "script_style.html", sink = sink }) })
  end)

  it("raises on a sink that is not one, or with output", function()
    assert.has_error(function() http.request({ url = base, sink = {} }) end,
      "bad argument #1 to 'request' (opts.sink: extract.stream() sink expected, got table)")
    assert.has_error(function() http.request({ url = base, sink = extract.stream(), output = "/tmp/x" }) end,
      "bad argument #1 to 'request' (opts.sink: not with opts.output)")
  end)
end)
