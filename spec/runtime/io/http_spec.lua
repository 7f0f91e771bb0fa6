-- sluice.http from Lua, inside the sluice binary (real tasks, real loop),
-- against the fixture server spec/fixtures/httpd.py. The C test
-- (http_test.c) covers the heavier cases: TLS, 20 MB downloads, cancellation.
-- Run: build/sluice lua spec/busted.lua spec/runtime/io/http_spec.lua
local http = require("sluice.http")
local task = require("sluice.task")
local json = require("cjson")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local fixture = src .. "/spec/fixtures/httpd.py"

describe("sluice.http", function()
  local server, pid, base

  lazy_setup(function()
    -- exec: the fixture's parent is this process, so it exits with us
    server = assert(io.popen("exec python3 '" .. fixture .. "' 0"))
    local port = tonumber(server:read("*l"))
    pid = tonumber(server:read("*l"))
    assert(port and pid, "the fixture server did not start: " .. fixture)
    base = "http://127.0.0.1:" .. port
  end)

  lazy_teardown(function()
    if pid then os.execute("kill " .. pid) end
    if server then server:close() end
  end)

  local function echo(opts)
    local res, err = http.request(opts)
    assert.is_nil(err)
    assert.are.equal(200, res.status)
    return json.decode(res.body), res
  end

  it("gets a body with status, headers and the effective url", function()
    local res = assert(http.request({ url = base .. "/bytes/300" }))
    assert.are.equal(200, res.status)
    assert.are.equal(300, #res.body)
    assert.are.equal(300, res.bytes)
    assert.are.equal("300", res.headers["content-length"])
    assert.are.equal("application/octet-stream", res.headers["content-type"])
    assert.are.equal(base .. "/bytes/300", res.url)
    assert.are.equal("1.1", res.http_version)
    assert.are.equal("\0\1\2", res.body:sub(1, 3))
  end)

  it("posts a body and sends the headers given", function()
    local e = echo({ url = base .. "/echo", body = '{"a":1}',
                     headers = { ["Content-Type"] = "application/json", ["X-Id"] = 7 } })
    assert.are.equal("POST", e.method)
    assert.are.equal('{"a":1}', e.body)
    assert.are.equal("application/json", e.headers["content-type"])
    assert.are.equal("7", e.headers["x-id"])
    assert.is_nil(e.headers["expect"])
    e = echo({ url = base .. "/echo", method = "PATCH", body = "p" })
    assert.are.equal("PATCH", e.method)
    assert.are.equal("p", e.body)
  end)

  it("returns HTTP error statuses as responses", function()
    local res, err = http.request({ url = base .. "/status/503" })
    assert.is_nil(err)
    assert.are.equal(503, res.status)
    assert.are.equal("status 503", res.body)
  end)

  it("joins repeated response headers", function()
    local res = assert(http.request({ url = base .. "/headers/dup" }))
    assert.are.equal("1, 2", res.headers["x-dup"])
  end)

  it("reuses one connection across requests and tasks", function()
    local a = echo({ url = base .. "/echo" })
    local _, b = task.spawn(function() return echo({ url = base .. "/echo" }) end):join()
    assert.are.equal(a.conn, b.conn)
  end)

  it("runs requests from many tasks at once", function()
    local ts, t0 = {}, task.now()
    for i = 1, 20 do
      ts[i] = task.spawn(function() return http.request({ url = base .. "/delay/300" }) end)
    end
    for i = 1, 20 do
      local ok, res = ts[i]:join()
      assert.is_true(ok)
      assert.are.equal("delayed 300", res.body)
    end
    assert.is_true(task.now() - t0 < 1.0)
  end)

  it("follows redirects only when asked, at most 5", function()
    local res = assert(http.request({ url = base .. "/redirect/2" }))
    assert.are.equal(302, res.status)
    assert.are.equal("/redirect/1", res.headers.location)
    res = assert(http.request({ url = base .. "/redirect/2", follow_redirects = true }))
    assert.are.equal("done", res.body)
    assert.are.equal(base .. "/redirect/0", res.url)
    local r, err = http.request({ url = base .. "/redirect/6", follow_redirects = true })
    assert.is_nil(r)
    assert.are.equal("too many redirects", err)
  end)

  it("decodes gzip", function()
    local res = assert(http.request({ url = base .. "/gzip" }))
    assert.are.equal(string.rep("hello gzip ", 1000), res.body)
  end)

  it("fails with short messages", function()
    local cases = {
      { { url = base .. "/delay/2000", timeout = 0.2 }, "timeout" },
      { { url = "http://127.0.0.1:1/" }, "connection refused" },
      { { url = base .. "/drop" }, "connection closed" },
      { { url = base .. "/bytes/5000", max_body = 4999 }, "body too large" },
      { { url = "ftp://127.0.0.1/" }, "unsupported protocol" },
    }
    for _, c in ipairs(cases) do
      local res, err = http.request(c[1])
      assert.is_nil(res)
      assert.are.equal(c[2], err)
    end
  end)

  it("streams a body to a file", function()
    local path = os.tmpname()
    local res = assert(http.request({ url = base .. "/bytes/100000", output = path }))
    assert.is_nil(res.body)
    assert.are.equal(100000, res.bytes)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    os.remove(path)
    assert.are.equal(100000, #data)
    assert.are.equal("\255\0\1", data:sub(256, 258))
  end)

  it("raises on misuse", function()
    assert.has_error(function() http.request({}) end,
      "bad argument #1 to 'request' (opts.url: string expected, got nil)")
    assert.has_error(function() http.request({ url = base, headers = { X = "a\nb" } }) end,
      "bad argument #1 to 'request' (opts.headers.X: value holds a line break or NUL)")
    assert.has_error(function() http.request({ url = base, retries = 3 }) end,
      "bad argument #1 to 'request' (unknown option 'retries')")
  end)

  it("escapes and unescapes per RFC 3986", function()
    assert.are.equal("q%3Da%20b%26c~", http.escape("q=a b&c~"))
    assert.are.equal("q=a b&c~", http.unescape("q%3Da%20b%26c~"))
    assert.are.equal("a+b%", http.unescape("a+b%"))
  end)
end)
