-- The Elasticsearch sink (sluice.es.sink over sluice.sink.es) against the
-- test double spec/fixtures/esd.py: index creation, version checks,
-- OpenSearch, auth, TLS (CA file and fingerprint), state rebuild scans, and
-- faults injected at the HTTP level.
-- Run: build/sluice lua spec/busted.lua spec/lualib/es_sink_spec.lua
local http = require("sluice.http")
local json = require("sluice.json")
local esconf = require("sluice.es.config")
local essink = require("sluice.es.sink")
local es = require("sluice.sink.es")
local task = require("sluice.task")

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

-- Each indexed document's source line as sent, less the hash field and
-- _timestamp (their place among the members may differ): { [id] = text }.
local function sources(d)
  local out = {}
  for _, r in ipairs(control(d, "GET", "/_double/requests")) do
    for _, a in ipairs(r.bulk or {}) do
      if a.id and a.source then
        out[a.id] = a.source:gsub(',?"_sluice_hash":"[0-9a-f]*"', "")
          :gsub(',?"_timestamp":"[^"]*"', ""):gsub("^{,", "{")
      end
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

-- The bulk client alone (no index management), so its log records stay
-- readable with c:logs() instead of going through sluice.log.
local function client(d, raw, index)
  raw.host = d.url
  local opts = esconf.client_options(assert(esconf.validate(raw)), index or "search-t")
  opts.hash_field = essink.HASH_FIELD
  return es.client(opts)
end

-- The _bulk requests the double saw: { {ids = "a,b", at = seconds, bytes = n}, ... }
local function bulk_log(d)
  local out = {}
  for _, r in ipairs(control(d, "GET", "/_double/requests")) do
    if r.path:find("/_bulk", 1, true) then
      local ids = {}
      for _, a in ipairs(r.bulk or {}) do ids[#ids + 1] = a.id end
      out[#out + 1] = { ids = table.concat(ids, ","), at = r.at, bytes = r.bytes, n = #ids }
    end
  end
  return out
end

describe("elasticsearch sink", function()
  local d

  lazy_setup(function() d = start("--log-sources") end)
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

  it("writes a document from the content hash's walk exactly as from its table", function()
    local crypto = require("sluice.crypto")
    local arr = setmetatable({}, { __jsontype = "array" })
    local docs = {
      { s = "plain", n = 42, f = 0.1, big = 2 ^ 60, neg = -7.25, tiny = 1e-300, t = true, fa = false },
      { q = 'quote " back \\ slash / tab\t nl\n \1 ctl', u = "h\195\169llo \240\159\142\137", bad = "a\255b" },
      { nested = { a = { b = { c = { 1, 2, 3 }, objs = { { d = "deep" }, { d = "er" } } } }, _id = "inner id stays" },
        list = { "x", json.null, "z" } },
      { empty = {}, emptyarr = arr, sparse = { [1] = "a", [3] = "c" }, [7] = "number key", [1.5] = "float key" },
      { fn = function() end, keep = "functions are left out", arrfn = { 1, function() end, 3 } },
      { _timestamp = "2024-02-29T13:45:30.000Z", body = "has its own timestamp" },
      { _sluice_hash = "from the source", body = "a source field named like the hash field" },
      { obj = setmetatable({ "x", "y" }, { __jsontype = "object" }),
        holes = setmetatable({ [1] = "a", [3] = "c" }, { __jsontype = "array" }),
        plainmt = setmetatable({ 1, 2 }, {}) },
      { [0.1] = "tenth", [1e17] = "big integer key", [-2.5] = "negative", [2 ^ 53] = "edge" },
      { body = string.rep("long \226\130\172 text ", 3000) },
    }
    local s = assert(open(d))
    for i, base in ipairs(docs) do
      local a = { _id = "a" .. i }
      for k, v in pairs(base) do a[k] = v end
      local hash = assert(crypto.content_hash(a))
      -- the engine's default timestamp comes after the hash
      if a._timestamp == nil then a._timestamp = "2026-01-01T00:00:00.000Z" end
      local b = { _id = "b" .. i }
      for k, v in pairs(a) do if k ~= "_id" then b[k] = v end end -- cleaned strings, same values
      assert.is_true(s:put(a, hash, true))
      assert.is_true(s:put(b, hash, false))
      assert.are.equal("a" .. i, a._id) -- the tables are left as they were
      assert.are.equal("b" .. i, b._id)
      assert.are.equal(base._sluice_hash, b._sluice_hash)
    end
    local failures = s:flush()
    local raw = sources(d)
    for i = 1, #docs do
      -- byte for byte: a parsed comparison cannot tell [] from {}
      assert.is_string(raw["a" .. i])
      assert.are.equal(raw["b" .. i], raw["a" .. i])
    end
    assert.is_nil(failures)
    for i = 1, #docs do
      local ga = control(d, "GET", "/search-t/_doc/a" .. i)._source
      local gb = control(d, "GET", "/search-t/_doc/b" .. i)._source
      assert.is_table(ga)
      assert.are.same(gb, ga)
      assert.is_nil(ga._id)
      assert.are.equal(64 / 2, #ga._sluice_hash)
      assert.is_string(ga._timestamp)
    end
    -- too deep for the writer (though not for the hash): the same error
    -- either way, also for an empty table at the writer's limit
    for _, leaf in ipairs({ { "x" }, {} }) do
      local deep = leaf
      for _ = 1, 127 do deep = { deep } end
      local a = { _id = "deep", v = deep }
      local hash = assert(crypto.content_hash(a))
      assert.is_true(s:put(a, hash, true))
      assert.is_true(s:put(a, hash, false))
      local f = s:flush() -- documents that could not be encoded
      assert.are.equal(2, #f)
      assert.are.same(f[2], f[1])
      assert.matches("nesting too deep", f[1].reason)
    end
    -- without a hash, a source field named like the hash field is kept
    local own = { _id = "own", _sluice_hash = "from the source" }
    assert(crypto.content_hash(own))
    assert.is_true(s:put(own, nil, true))
    assert.is_nil(s:flush())
    assert.are.equal("from the source", control(d, "GET", "/search-t/_doc/own")._source._sluice_hash)
    -- a document changed after its hash, or another table, gets its own walk
    local x = { _id = "x", v = "before" }
    local hash = assert(crypto.content_hash(x))
    x.v = "after"
    assert.is_true(s:put({ _id = "y", v = "other" }, hash, true))
    assert(crypto.content_hash({ _id = "z" }))
    assert.is_true(s:put(x, hash, true))
    assert.is_nil(s:flush())
    assert.are.equal("other", control(d, "GET", "/search-t/_doc/y")._source.v)
    assert.are.equal("after", control(d, "GET", "/search-t/_doc/x")._source.v)
    s:close()
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

  describe("backpressure", function()
    it("yields in put while every slot is busy: at most concurrency requests, one batch waiting", function()
      -- 142-byte actions, batches capped at 1,000 bytes: 7 a batch, 30
      -- documents make 5 batches, 2 slots, each answer 200 ms late
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, delay_ms = 200 } } })
      local c = client(d, { bulk = { max_bytes = 1000, concurrency = 2 } })
      local samples, running, ticks = {}, true, 0
      local ticker = task.spawn(function()
        while running do
          samples[#samples + 1] = c:stats()
          ticks = ticks + 1
          task.sleep(0.01)
        end
      end)
      local t0, yielded = task.now(), 0
      for i = 1, 30 do
        local before = ticks
        local d1 = doc(string.format("bp%02d", i), string.rep("x", 78))
        d1.title = nil
        assert.is_true(c:put(d1, "h"))
        if ticks > before then yielded = yielded + 1 end
      end
      local during_puts = ticks
      assert.are.same({}, c:flush())
      local took = task.now() - t0
      running = false
      ticker:join()
      local max = { in_flight = 0, ready = 0, buffered = 0, waiting = 0 }
      for _, st in ipairs(samples) do
        for k in pairs(max) do max[k] = math.max(max[k], st[k]) end
      end
      -- never more than 2 requests out and 1 full batch held back, so what
      -- is queued stays under (concurrency + 2) x max_bytes; the ticker runs
      -- only while put waits, just after the 8th document, which did not
      -- fit, started the next batch
      assert.are.same({ in_flight = 2, ready = 1, buffered = 1, waiting = 0 }, max)
      assert.is_true(yielded >= 1 and during_puts >= 10, yielded .. " puts yielded, " .. during_puts .. " ticks")
      local log = bulk_log(d)
      assert.are.equal(5, #log)
      local total = 0
      for i, b in ipairs(log) do
        total = total + b.n
        assert.is_true(b.bytes <= 1000, tostring(b.bytes))
        assert.are.equal(i < 5 and 7 or 2, b.n)
      end
      assert.are.equal(30, total)
      assert.are.equal(2, control(d, "GET", "/_double/stats").max_concurrent_bulk)
      -- 5 batches through 2 slots are 3 rounds of 200 ms at least
      assert.is_true(took >= 0.59, tostring(took))
      assert.are.same({ 5, 30 }, { c:stats().requests, c:stats().indexed })
      c:close()
    end)
  end)

  describe("retry backoff", function()
    it("sends a rejected item again with growing jittered delays, then fails it with its reason", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, item_faults = {
        b = { status = 429, type = "es_rejected_execution_exception", reason = "rejected execution of coordinating operation" } } } } })
      local c = client(d, { bulk = { max_retries = 4, retry_initial_seconds = 0.04, retry_max_seconds = 0.16 } })
      assert.is_true(c:put(doc("a"), "h"))
      assert.is_true(c:put(doc("b"), "h"))
      assert.are.same({ { id = "b", reason = "gave up after 5 attempts: 429 es_rejected_execution_exception: " ..
        "rejected execution of coordinating operation" } }, c:flush())
      local log = bulk_log(d)
      local ids = {}
      for i, b in ipairs(log) do ids[i] = b.ids end
      assert.are.same({ "a,b", "b", "b", "b", "b" }, ids)
      -- delay k is in [d/2, d] for d = min(0.04 x 2^(k-1), 0.16); measured
      -- between arrivals, so only later (by the answer's trip), never earlier
      local lo = { 0.02, 0.04, 0.08, 0.08 }
      for k = 1, 4 do
        local gap = log[k + 1].at - log[k].at
        assert.is_true(gap >= lo[k] - 0.005 and gap < 2 * lo[k] + 0.5, "delay " .. k .. ": " .. gap)
      end
      local st = c:stats()
      assert.are.same({ 1, 1, 4, 0 }, { st.indexed, st.failed, st.retried_items, st.waiting })
      local levels = {}
      for _, r in ipairs(c:logs()) do levels[#levels + 1] = r.level .. " " .. (r.id or "") .. " " .. r.message end
      assert.are.same({
        "info b document rejected with 429 (es_rejected_execution_exception: rejected execution of coordinating operation): retry 1 of 4",
        "info b document rejected with 429 (es_rejected_execution_exception: rejected execution of coordinating operation): retry 2 of 4",
        "info b document rejected with 429 (es_rejected_execution_exception: rejected execution of coordinating operation): retry 3 of 4",
        "info b document rejected with 429 (es_rejected_execution_exception: rejected execution of coordinating operation): retry 4 of 4",
        "error b document not written: gave up after 5 attempts: 429 es_rejected_execution_exception: rejected execution of coordinating operation",
      }, levels)
      c:close()
    end)

    it("waits exponentially longer, capped at retry_max_seconds, between whole-request retries", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = 4, status = 503 } } })
      local c = client(d, { bulk = { max_retries = 4, retry_initial_seconds = 0.05, retry_max_seconds = 0.2 } })
      assert.is_true(c:put(doc("a"), "h"))
      assert.are.same({}, c:flush())
      local delays = {}
      for _, r in ipairs(c:logs()) do
        local k, n, secs = r.message:match("^bulk request of 1 actions failed %(HTTP 503: [^)]*%): retry (%d) of (%d) in ([%d.]+) s$")
        assert.truthy(k, r.message)
        assert.are.equal("4", n)
        delays[tonumber(k)] = tonumber(secs)
      end
      assert.are.equal(4, #delays)
      -- [d/2, d] for d = 0.05, 0.1, 0.2, 0.2 (printed to 0.01 s)
      local bounds = { { 0.02, 0.05 }, { 0.05, 0.1 }, { 0.1, 0.2 }, { 0.1, 0.2 } }
      for k, b in ipairs(bounds) do
        assert.is_true(delays[k] >= b[1] and delays[k] <= b[2], "delay " .. k .. ": " .. delays[k])
      end
      assert.is_true(delays[1] <= delays[2] and delays[2] <= delays[3], table.concat(delays, " "))
      local log = bulk_log(d)
      assert.are.equal(5, #log)
      for k = 1, 4 do
        local gap = log[k + 1].at - log[k].at
        assert.is_true(gap >= delays[k] - 0.01, "gap " .. k .. ": " .. gap .. " < " .. delays[k])
      end
      assert.are.same({ 1, 4, 5 }, { c:stats().indexed, c:stats().retried_requests, c:stats().requests })
      c:close()
    end)
  end)

  describe("request_timeout", function()
    -- A late answer is still applied by the double after the test: these
    -- tests write to their own index so later tests do not see it.
    it("gives up on a late bulk answer and sends the request again", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = 1, delay_ms = 1500 } } })
      local c = client(d, { request_timeout = 0.3, bulk = { max_retries = 1, retry_initial_seconds = 0.01,
        retry_max_seconds = 0.01 } }, "search-timeout")
      local t0 = task.now()
      assert.is_true(c:put(doc("a"), "h"))
      assert.are.same({}, c:flush())
      local took = task.now() - t0
      assert.is_true(took >= 0.29 and took < 1.4, tostring(took))
      local logs = c:logs()
      assert.are.equal(1, #logs)
      assert.truthy(logs[1].message:find("^bulk request of 1 actions failed %(timeout%): retry 1 of 1 in 0%.01 s$"), logs[1].message)
      assert.are.same({ 2, 1, 1 }, { c:stats().requests, c:stats().retried_requests, c:stats().indexed })
      c:close()
    end)

    it("fails the sink with a timeout reason when every attempt is late, without hanging", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, delay_ms = 1500 } } })
      local c = client(d, { request_timeout = 0.2, bulk = { max_retries = 2, retry_initial_seconds = 0.01,
        retry_max_seconds = 0.01 } }, "search-timeout")
      local t0 = task.now()
      assert.is_true(c:put(doc("a"), "h"))
      local ok, err = c:flush()
      local took = task.now() - t0
      assert.are.same({ nil, "bulk request failed after 3 attempts: timeout" }, { ok, err })
      assert.are.equal("bulk request failed after 3 attempts: timeout", c:failed())
      assert.is_true(took >= 0.59 and took < 1.4, tostring(took))
      assert.are.equal(3, #bulk_log(d))
      c:close()
    end)

    it("gives up on a server that answers GET / too late", function()
      control(d, "POST", "/_double/faults", { rules = { { path = "^/$", method = "GET", times = -1, delay_ms = 1500 } } })
      local t0 = task.now()
      local s, err = open(d, { request_timeout = 0.2 }, "search-timeout")
      assert.is_nil(s)
      assert.are.equal("cannot reach " .. d.url .. ": GET / failed after 3 attempts: timeout", err)
      assert.is_true(task.now() - t0 < 1.4)
    end)
  end)

  it("creates the index with the configured settings", function()
    local s = assert(open(d, { settings = { index = { number_of_shards = 3, refresh_interval = "30s" },
      ["index.number_of_replicas"] = 0 } }, "search-settings"))
    s:close()
    local got = control(d, "GET", "/search-settings/_settings")["search-settings"].settings.index
    assert.are.same({ "3", "30s", "0", "search-settings" },
      { got.number_of_shards, got.refresh_interval, got.number_of_replicas, got.provided_name })
    local put
    for _, r in ipairs(control(d, "GET", "/_double/requests")) do
      if r.method == "PUT" then put = r end
    end
    assert.are.equal("/search-settings", put.path)
    -- without settings the index gets the server's defaults
    assert(open(d, nil, "search-plain")):close()
    got = control(d, "GET", "/search-plain/_settings")["search-plain"].settings.index
    assert.are.same({ "1", "1" }, { got.number_of_shards, got.number_of_replicas })
    assert.is_nil(got.refresh_interval)
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
      -- An untrusted certificate is not retried: it fails at once.
      -- (a retry would wait 2 s)
      local slow = { bulk = { max_retries = 2, retry_initial_seconds = 2, retry_max_seconds = 2 } }
      local t0 = task.now()
      local _, err = open(t, slow)
      assert.truthy(err:find("certificate", 1, true), err)
      assert.truthy(err:find("GET / failed: ", 1, true), err)
      assert.is_true(task.now() - t0 < 1.0)
    end)

    it("trusts a pinned fingerprint of the CA or of the server certificate, and nothing else", function()
      assert(open(t, { ca_fingerprint = fingerprint("ca.pem") })):close()
      assert(open(t, { ca_fingerprint = fingerprint("server.pem"):lower() })):close()
      local t0 = task.now()
      local _, err = open(t, { ca_fingerprint = string.rep("AB:", 31) .. "AB",
        bulk = { max_retries = 2, retry_initial_seconds = 2, retry_max_seconds = 2 } })
      assert.truthy(err:find("cannot reach", 1, true), err)
      assert.truthy(err:find("certificate", 1, true), err)
      assert.is_true(task.now() - t0 < 1.0)
    end)
  end)
end)
