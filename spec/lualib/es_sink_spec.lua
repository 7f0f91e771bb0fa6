-- The Elasticsearch sink (sluice.es.sink over sluice.sink.es) against the
-- test double spec/fixtures/esd.py: index creation, version checks,
-- OpenSearch, auth, TLS (CA file and fingerprint), state rebuild scans, and
-- faults injected at the HTTP level.
-- Run: build/sluice lua spec/busted.lua spec/lualib/es_sink_spec.lua
local http = require("sluice.http")
local json = require("sluice.json")
local esconf = require("sluice.es.config")
local essink = require("sluice.es.sink")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local fixture = src .. "/spec/fixtures/esd.py"

local function start(args)
  local p = assert(io.popen("exec python3 '" .. fixture .. "' --port 0 " .. (args or "")))
  local port, pid = tonumber(p:read("*l")), tonumber(p:read("*l"))
  assert(port and pid, "the double did not start")
  local scheme = (args or ""):find("--tls", 1, true) and "https" or "http"
  return { url = scheme .. "://127.0.0.1:" .. port, plain = "http://127.0.0.1:" .. port, pid = pid, p = p }
end

local function stop(d)
  if d then os.execute("kill " .. d.pid .. " 2>/dev/null"); d.p:close() end
end

-- The double's control API (plain HTTP even when TLS is on: not needed).
local function control(d, method, path, body)
  local res = assert(http.request({ method = method, url = d.url .. path,
    body = body and json.encode(body), insecure = true,
    headers = body and { ["Content-Type"] = "application/json" } or nil }))
  assert(res.status == 200, res.body)
  return json.decode(res.body)
end

local function bulks(d)
  local out = {}
  for _, r in ipairs(control(d, "GET", "/_double/requests")) do
    if r.path:find("/_bulk", 1, true) then
      local ids = {}
      for _, a in ipairs(r.bulk or {}) do ids[#ids + 1] = a.id end
      out[#out + 1] = table.concat(ids, ",")
    end
  end
  return out
end

local function open(d, extra, index)
  local raw = { host = d.url, bulk = { max_retries = 2, retry_initial_seconds = 0.01, retry_max_seconds = 0.05 } }
  for k, v in pairs(extra or {}) do raw[k] = v end
  local cfg = assert(esconf.validate(raw))
  return essink.open(cfg, { id = "t", index_name = index or "search-t" })
end

local function doc(id, body) return { _id = id, title = "Title " .. id, body = body or ("text of " .. id) } end

describe("elasticsearch sink", function()
  local d

  lazy_setup(function() d = start() end)
  lazy_teardown(function() stop(d) end)
  before_each(function() control(d, "POST", "/_double/reset") end)

  it("checks the server and creates the index once, with the hash field mapped", function()
    local s = assert(open(d))
    assert.are.same({ "elasticsearch", "8.15.0" }, { s.flavor, s.version })
    s:close()
    s = assert(open(d))
    s:close()
    local idx = control(d, "GET", "/_double/indices")["search-t"]
    assert.are.same({ type = "keyword", index = false }, idx.mappings.properties._sluice_hash)
    assert.are.same({ type = "date" }, idx.mappings.properties._timestamp)
    local puts = 0
    for _, r in ipairs(control(d, "GET", "/_double/requests")) do
      if r.method == "PUT" then puts = puts + 1 end
    end
    assert.are.equal(1, puts)
  end)

  it("indexes, counts after a refresh and streams ids and hashes back (3 pages)", function()
    local s = assert(open(d))
    for i = 1, 2500 do s:put(doc(string.format("d%04d", i)), "hash" .. i) end
    assert.is_nil(s:flush())
    assert.are.equal(2500, s:count())
    local seen, n = {}, 0
    assert.is_true(s:each_hash(function(id, hash) seen[id] = hash; n = n + 1 end))
    assert.are.equal(2500, n)
    assert.are.equal("hash1", seen.d0001)
    assert.are.equal("hash2500", seen.d2500)
    local searches, pits = 0, 0
    for _, r in ipairs(control(d, "GET", "/_double/requests")) do
      if r.path == "/_search" then searches = searches + 1 end
      if r.path:find("_pit", 1, true) then pits = pits + 1 end
    end
    assert.are.same({ 3, 2 }, { searches, pits }) -- open and close
    local st = s:stats()
    assert.are.same({ 3, 2500 }, { st.requests, st.indexed })
    s:close()
  end)

  it("retries an item rejected with 429 alone and fails a mapping error alone", function()
    control(d, "POST", "/_double/faults", { rules = {
      { path = "_bulk", item_faults = { b = { status = 429, type = "es_rejected_execution_exception",
        reason = "rejected execution of coordinating operation" } } },
      { path = "_bulk", times = -1, item_faults = { c = { status = 400, type = "mapper_parsing_exception",
        reason = "failed to parse field [n] of type [long]" } } },
    } })
    local s = assert(open(d))
    for _, id in ipairs({ "a", "b", "c" }) do s:put(doc(id), "h") end
    local fails = s:flush()
    assert.are.same({ { id = "c", reason = "400 mapper_parsing_exception: failed to parse field [n] of type [long]" } }, fails)
    assert.are.same({ "a,b,c", "b" }, bulks(d))
    assert.are.equal(2, s:count())
    s:close()
  end)

  it("splits a batch on 413 and fails a single oversized document alone", function()
    control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, max_body_bytes = 400 } } })
    local s = assert(open(d))
    for _, id in ipairs({ "a", "b", "c", "d" }) do s:put(doc(id), "h") end
    s:put(doc("huge", string.rep("z", 1000)), "h")
    local fails = s:flush()
    assert.are.equal(1, #fails)
    assert.are.equal("huge", fails[1].id)
    assert.truthy(fails[1].reason:find("^document too large for the server %(1077 bytes%): HTTP 413 with a non%-JSON body: 413 Request Entity Too Large"), fails[1].reason)
    assert.are.equal(4, s:count())
    assert.are.equal(3, s:stats().splits) -- 5 -> 2+3, 3 -> 1+2, 2 -> 1+1
    s:close()
  end)

  it("sends a request again after 503, 429 and a connection dropped mid-response", function()
    control(d, "POST", "/_double/faults", { rules = {
      { path = "_bulk", status = 503 },
      { path = "_bulk", status = 429 },
      { path = "_bulk", drop = "mid_response" },
    } })
    local s = assert(open(d, { bulk = { max_retries = 3, retry_initial_seconds = 0.01, retry_max_seconds = 0.05 } }))
    for _, id in ipairs({ "a", "b" }) do s:put(doc(id), "h") end
    assert.is_nil(s:flush())
    assert.are.same({ "a,b", "a,b", "a,b", "a,b" }, bulks(d))
    assert.are.equal(2, s:count())
    assert.are.equal(3, s:stats().retried_requests)
    s:close()
  end)

  it("does not send a whole-request 400 again, and reports HTML error pages", function()
    control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", status = 400 } } })
    local s = assert(open(d))
    s:put(doc("a"), "h")
    local fails = s:flush()
    assert.are.equal(1, #fails)
    assert.are.equal("bulk request rejected: HTTP 400: illegal_argument_exception: injected bad request", fails[1].reason)
    assert.are.same({ "a" }, bulks(d))
    control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, status = 502,
      content_type = "text/html", body = "<html><body><h1>502 Bad Gateway</h1></body></html>" } } })
    s:put(doc("b"), "h")
    local ok, err = pcall(s.flush, s)
    assert.is_false(ok)
    assert.are.equal("elasticsearch: bulk request failed after 3 attempts: HTTP 502 with a non-JSON body: 502 Bad Gateway",
      tostring(err))
    assert.truthy(err.fatal)
    s:close()
  end)

  it("refuses a server it does not support", function()
    local old = start("--version 7.17.9")
    local s, err = open(old)
    stop(old)
    assert.is_nil(s)
    assert.are.equal("unsupported server at " .. old.url .. ": elasticsearch 7.17.9 (sluice needs Elasticsearch 8.x/9.x or OpenSearch 2.x)", err)
  end)

  it("works with OpenSearch and its own point in time API", function()
    local os_d = start("--flavor opensearch --version 2.15.0")
    local s = assert(open(os_d))
    assert.are.equal("opensearch", s.flavor)
    for i = 1, 5 do s:put(doc("o" .. i), "h" .. i) end
    assert.is_nil(s:flush())
    local n = 0
    assert.is_true(s:each_hash(function(_, h) if h then n = n + 1 end end))
    assert.are.equal(5, n)
    local paths = {}
    for _, r in ipairs(control(os_d, "GET", "/_double/requests")) do paths[r.method .. " " .. r.path] = true end
    assert.truthy(paths["POST /search-t/_search/point_in_time"])
    assert.truthy(paths["DELETE /_search/point_in_time"])
    s:close()
    stop(os_d)
  end)

  describe("409 per on_conflict", function()
    local conflict = { status = 409, type = "version_conflict_engine_exception",
      reason = "[b]: version conflict, required seqNo [3], primary term [1]. current document has seqNo [4]" }

    it("fails the document with its reason by default", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", item_faults = { b = conflict } } } })
      local s = assert(open(d))
      for _, id in ipairs({ "a", "b" }) do s:put(doc(id), "h") end
      assert.are.same({ { id = "b", reason = "409 version_conflict_engine_exception: " .. conflict.reason } }, s:flush())
      assert.are.same({ "a,b" }, bulks(d))
      assert.are.same({ 1, 1, 1 }, { s:stats().indexed, s:stats().failed, s:stats().conflicts })
      s:close()
    end)

    it("counts it as written with ignore, and sends it again alone with retry", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", item_faults = { b = conflict } } } })
      local s = assert(open(d, { on_conflict = "ignore" }))
      for _, id in ipairs({ "a", "b" }) do s:put(doc(id), "h") end
      assert.is_nil(s:flush())
      assert.are.same({ "a,b" }, bulks(d))
      assert.are.same({ 2, 0, 1 }, { s:stats().indexed, s:stats().failed, s:stats().conflicts })
      s:close()

      control(d, "POST", "/_double/reset")
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", item_faults = { b = conflict } } } })
      s = assert(open(d, { on_conflict = "retry" }))
      for _, id in ipairs({ "a", "b" }) do s:put(doc(id), "h") end
      assert.is_nil(s:flush())
      assert.are.same({ "a,b", "b" }, bulks(d))
      assert.are.same({ 2, 0 }, { s:stats().indexed, s:stats().failed })
      assert.are.equal(2, s:count())
      s:close()
    end)

    it("meets a real conflict with op_type create: an existing id fails, or is ignored", function()
      local s = assert(open(d, { op_type = "create" }))
      s:put(doc("a"), "h1")
      assert.is_nil(s:flush())
      s:put(doc("a"), "h2")
      local fails = s:flush()
      assert.are.equal(1, #fails)
      assert.are.equal("a", fails[1].id)
      assert.truthy(fails[1].reason:find("^409 version_conflict_engine_exception: %[a%]: version conflict"), fails[1].reason)
      s:close()
      s = assert(open(d, { op_type = "create", on_conflict = "ignore" }))
      s:put(doc("a"), "h3")
      assert.is_nil(s:flush())
      assert.are.equal(1, s:stats().conflicts)
      s:close()
      local got = control(d, "GET", "/search-t/_doc/a")
      assert.are.equal("h1", got._source._sluice_hash) -- create never overwrote it
    end)
  end)

  it("creates the index with the configured mappings, keeping the hash field", function()
    local s = assert(open(d, { mappings = { dynamic = "strict", properties = { title = { type = "keyword" } } } },
      "search-custom"))
    s:close()
    local idx = control(d, "GET", "/_double/indices")["search-custom"]
    assert.are.same({ dynamic = "strict", properties = { title = { type = "keyword" },
      _sluice_hash = { type = "keyword", index = false } } }, idx.mappings)
    local put
    for _, r in ipairs(control(d, "GET", "/_double/requests")) do
      if r.method == "PUT" then put = r end
    end
    assert.are.equal("/search-custom", put.path)
  end)

  it("sends every bulk request through the configured ingest pipeline", function()
    local s = assert(open(d, { pipeline = "strip html" }))
    for i = 1, 3 do s:put(doc("p" .. i), "h") end
    assert.is_nil(s:flush())
    s:close()
    local seen = {}
    for _, r in ipairs(control(d, "GET", "/_double/requests")) do
      if r.path:find("/_bulk", 1, true) then
        seen[#seen + 1] = r.query.pipeline
      end
    end
    assert.are.same({ "strip html" }, seen)
  end)

  it("writes ids raw in action lines, so one encoding in a URL path finds them", function()
    local ids = { "a/b c", "x%2Fy", "q?k=v&w#f", "caf\195\169+1" }
    local s = assert(open(d))
    for _, id in ipairs(ids) do s:put(doc(id), "h") end
    assert.is_nil(s:flush())
    assert.are.same({ table.concat(ids, ",") }, bulks(d))
    for _, id in ipairs(ids) do
      local got = control(d, "GET", "/search-t/_doc/" .. http.escape(id))
      assert.are.same({ true, id }, { got.found, got._id })
    end
    for _, id in ipairs(ids) do s:delete(id) end
    assert.is_nil(s:flush())
    assert.are.same({ 0, 4 }, { s:count(), s:stats().deleted })
    s:close()
  end)

  describe("auth", function()
    it("sends an API key, basic credentials or a bearer token", function()
      local k = start("--api-key c2x1aWNlOnNlY3JldA==")
      assert(open(k, { api_key = "c2x1aWNlOnNlY3JldA==" })):close()
      assert(open(k, { api_key = "sluice:secret" })):close() -- id:key is encoded
      assert(open(k, { bearer_token = "c2x1aWNlOnNlY3JldA==" })):close()
      local s, err = open(k, { api_key = "wrong" })
      assert.is_nil(s)
      assert.truthy(err:find("GET /: HTTP 401: security_exception", 1, true), err)
      stop(k)
      local b = start("--basic elastic:changeme")
      assert(open(b, { username = "elastic", password = "changeme" })):close()
      s, err = open(b, { username = "elastic", password = "nope" })
      assert.is_nil(s)
      assert.truthy(err:find("HTTP 401", 1, true), err)
      stop(b)
    end)
  end)

  describe("TLS", function()
    local dir, t
    lazy_setup(function()
      dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
      local K = "-newkey rsa:2048 -nodes"
      assert(os.execute("cd " .. dir .. " && (" ..
        "openssl req -x509 " .. K .. " -keyout ca.key -out ca.pem -days 2 -subj /CN=es-test-ca && " ..
        "openssl req " .. K .. " -keyout server.key -out server.csr -subj /CN=localhost && " ..
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext && " ..
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext && " ..
        "cat server.pem ca.pem > chain.pem) >/dev/null 2>&1") == 0)
      t = start("--tls " .. dir .. "/chain.pem " .. dir .. "/server.key")
    end)
    lazy_teardown(function()
      stop(t)
      if dir then os.execute("rm -rf " .. dir) end
    end)

    local function fingerprint(file)
      local p = io.popen("openssl x509 -in " .. dir .. "/" .. file .. " -noout -fingerprint -sha256")
      local out = p:read("*a"); p:close()
      return out:match("=([%x:]+)")
    end

    it("verifies with a CA file, and refuses an unknown CA", function()
      local s = assert(open(t, { ca_certs = dir .. "/ca.pem" }))
      s:put(doc("tls"), "h")
      assert.is_nil(s:flush())
      s:close()
      local _, err = open(t)
      assert.truthy(err:find("certificate", 1, true), err)
    end)

    it("trusts a pinned fingerprint of the CA or of the server certificate, and nothing else", function()
      assert(open(t, { ca_fingerprint = fingerprint("ca.pem") })):close()
      assert(open(t, { ca_fingerprint = fingerprint("server.pem"):lower() })):close()
      local _, err = open(t, { ca_fingerprint = string.rep("AB:", 31) .. "AB" })
      assert.truthy(err:find("cannot reach", 1, true), err)
    end)
  end)
end)
