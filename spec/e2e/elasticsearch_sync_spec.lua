-- End to end: the real binary syncs the scripted test connector into the
-- Elasticsearch test double (spec/fixtures/esd.py) through the CLI, with
-- faults injected by the double's control API, and the double is killed
-- mid-sync. Figures are exact.
local cli = require("spec.support.cli")
local json = require("sluice.json")
local http = require("sluice.http")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local fixture = src .. "/spec/fixtures/esd.py"
local ENV = "SLUICE_CONNECTORS_PATH=" .. cli.q(src .. "/spec/fixtures/connectors") .. " "

local function start(port, args)
  local p = assert(io.popen("exec python3 " .. cli.q(fixture) .. " --port " .. (port or 0) .. " " .. (args or "")))
  local got, pid = tonumber(p:read("*l")), tonumber(p:read("*l"))
  assert(got and pid, "the double did not start")
  return { port = got, pid = pid, p = p, url = "http://127.0.0.1:" .. got }
end

local function stop(d)
  if d and not d.stopped then
    os.execute("kill " .. d.pid .. " 2>/dev/null")
    d.p:close()
    d.stopped = true
  end
end

local function control(d, method, path, body)
  local res = assert(http.request({ method = method, url = d.url .. path, body = body and json.encode(body),
    headers = body and { ["Content-Type"] = "application/json" } or nil }))
  return json.decode(res.body), res.status
end

-- Ids per _bulk request, in order ("a,b,c").
local function bulks(d)
  local out = {}
  for _, r in ipairs(control(d, "GET", "/_double/requests")) do
    if r.path:find("/_bulk", 1, true) then
      local ids = {}
      for _, a in ipairs(r.bulk or {}) do ids[#ids + 1] = (a.op == "delete" and "-" or "") .. a.id end
      out[#out + 1] = table.concat(ids, ",")
    end
  end
  return out
end

local function exists(d, id)
  local _, status = control(d, "GET", "/search-t/_doc/" .. http.escape(id))
  return status == 200
end

describe("elasticsearch sync end to end", function()
  local dir, d, config, plan

  local function write_plan(docs, extra)
    local p = { docs = docs }
    for k, v in pairs(extra or {}) do p[k] = v end
    cli.write(plan, json.encode(p))
  end

  local function docs(ids, size)
    local out = {}
    for i, id in ipairs(ids) do
      out[i] = { _id = id, title = "Title " .. id, body = string.rep(id .. " ", size or 10) }
    end
    return out
  end

  local function write_config(port, bulk)
    cli.write(config, table.concat({
      "data_dir: ./data",
      "elasticsearch:",
      "  host: http://127.0.0.1:" .. port,
      "  bulk: { max_retries: 2, retry_initial_seconds: 0.02, retry_max_seconds: 0.05" .. (bulk or "") .. " }",
      "connectors:",
      "  - id: t",
      "    service_type: scripted",
      "    index_name: search-t",
      "    configuration: { plan: " .. plan .. " }",
      "",
    }, "\n"))
  end

  local function sync(prefix)
    local rc, out, err = cli.run({ "sync", config, "--json" }, (prefix or "") .. ENV)
    local ok, s = pcall(json.decode, out)
    assert(ok and type(s) == "table", "bad sync output: " .. out .. "\n" .. err)
    return rc, s, err
  end

  local function state_count()
    local _, out = cli.sh("sqlite3 " .. cli.q(dir .. "/data/state.db") .. " 'select count(*) from docs'")
    return tonumber(out)
  end

  before_each(function()
    dir = cli.tmpdir()
    config, plan = dir .. "/sluice.yml", dir .. "/plan.json"
    d = start()
    write_config(d.port)
  end)

  after_each(function()
    stop(d)
    cli.rm_rf(dir)
  end)

  it("syncs, skips unchanged documents and deletes what the source dropped", function()
    write_plan(docs({ "a", "b", "c" }))
    local rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 3, 3, 0, 0, 0, 3 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    write_plan(docs({ "a", "c" }))
    rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 2, 0, 2, 1, 0, 2 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    assert.is_false(exists(d, "b"))
    assert.is_true(exists(d, "a"))
    assert.are.same({ "a,b,c", "-b" }, bulks(d))
  end)

  it("retries a 429 item alone and fails a 400 item: indexed 2, failed 1, completed_with_errors", function()
    control(d, "POST", "/_double/faults", { rules = {
      { path = "_bulk", item_faults = { b = { status = 429, type = "es_rejected_execution_exception", reason = "queue full" } } },
      { path = "_bulk", times = -1, item_faults = { c = { status = 400, type = "mapper_parsing_exception",
        reason = "failed to parse field [body]" } } },
    } })
    write_plan(docs({ "a", "b", "c" }))
    local rc, s, err = sync()
    assert.are.same({ 3, "completed_with_errors" }, { rc, s.status })
    assert.are.same({ 3, 2, 1, 2 }, { s.listed, s.indexed, s.errors, s.index_count })
    assert.are.same({ "a,b,c", "b" }, bulks(d))
    assert.are.same({ { id = "c", reason = "400 mapper_parsing_exception: failed to parse field [body]" } }, s.error_samples)
    assert.truthy(err:find('"level":"error"', 1, true) and err:find('"id":"c"', 1, true), err)
    -- the failed document is tried again next time, the others are not
    control(d, "DELETE", "/_double/faults")
    control(d, "POST", "/_double/reset")
    rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
  end)

  it("sends a document over the byte cap alone", function()
    write_config(d.port, ", max_bytes: 700, concurrency: 1") -- one at a time: a fixed order
    local list = docs({ "a", "b" })
    list[3] = { _id = "big", body = string.rep("x", 2000) }
    list[4] = docs({ "c" })[1]
    write_plan(list)
    local rc, s = sync()
    assert.are.same({ 0, 4 }, { rc, s.index_count })
    assert.are.same({ "a,b", "big", "c" }, bulks(d))
  end)

  it("fails the job when the cluster dies mid-sync, deletes nothing, and converges next time", function()
    write_plan(docs({ "a", "b", "c", "d", "e" }))
    local rc, s = sync()
    assert.are.same({ 0, 5 }, { rc, s.index_count })
    -- d and e leave the source; the cluster goes away while the next
    -- sync's first bulk request is in flight
    write_plan(docs({ "a", "b", "c", "x" }))
    control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", delay_ms = 3000 } } })
    local killer = "(sleep 0.7; kill " .. d.pid .. ") & "
    rc, s = sync(killer)
    d.p:close(); d.stopped = true
    assert.are.same({ 1, "failed", 0 }, { rc, s.status, s.deleted })
    assert.truthy(s.message:find("bulk request failed after 3 attempts: ", 1, true), s.message)
    assert.are.equal(5, state_count()) -- nothing forgotten, nothing deleted
    -- a fresh (empty) cluster on the same port: everything is rewritten
    d = start(d.port)
    rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 4, 4, 4 }, { s.listed, s.indexed, s.index_count })
    assert.are.equal(4, state_count())
  end)

  it("forgets the hashes of documents before deleting them: a delete the cluster applied but never answered", function()
    write_plan(docs({ "a", "b", "c" }))
    assert.are.equal(0, (sync()))
    -- b and c leave the source; the cluster carries out every delete but
    -- the answers are lost (a proxy timing out), retries included
    write_plan(docs({ "a" }))
    control(d, "POST", "/_double/faults", { rules = { { path = "_bulk", times = -1, drop = "after_apply" } } })
    local rc, s, err = sync()
    assert.are.same({ 1, "failed" }, { rc, s.status })
    assert.truthy(err:find("sync failed while deleting documents the source no longer has", 1, true), err)
    assert.is_false(exists(d, "b"))
    assert.is_false(exists(d, "c"))
    -- the state still lists b and c, but with no hash: whatever the next
    -- sync sees, it cannot take them for unchanged documents
    local _, out = cli.sh("sqlite3 " .. cli.q(dir .. "/data/state.db") ..
      " \"select id || '=' || hash from docs order by id\"")
    assert.are.equal("b=\nc=\n", out:gsub("^a=%x+\n", ""))
    -- they come back unchanged at the source: written again
    control(d, "DELETE", "/_double/faults")
    write_plan(docs({ "a", "b", "c" }))
    rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 3, 2, 1, 3 }, { s.listed, s.indexed, s.unchanged, s.index_count })
  end)

  it("rebuilds a lost state database from the index and rewrites nothing", function()
    write_plan(docs({ "a", "b", "c" }))
    assert.are.equal(0, (sync()))
    os.remove(dir .. "/data/state.db")
    os.remove(dir .. "/data/state.db-wal")
    os.remove(dir .. "/data/state.db-shm")
    local before = #bulks(d)
    local rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 3, 0, 3, 0, 3 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.index_count })
    assert.are.equal(before, #bulks(d))
  end)

  it("installs with the image's build script and syncs the example configuration", function()
    local prefix = dir .. "/opt"
    local build = cli.bin:match("^(.*)/[^/]*$") or "."
    local rc, out, err = cli.sh("SLUICE_SKIP_DEPS=1 SLUICE_BUILD_DIR=" .. cli.q(build) ..
      " " .. cli.q(src .. "/scripts/docker-build.sh") .. " " .. cli.q(prefix))
    assert.are.equal(0, rc, out .. err)
    assert.are.equal("docker-build: installed " .. prefix .. "/bin/sluice\n", out)
    local tree = dir .. "/tree"
    assert(cli.sh("mkdir -p " .. cli.q(tree) .. " && printf 'alpha\\n' > " .. cli.q(tree .. "/a.txt") ..
      " && printf 'beta\\n' > " .. cli.q(tree .. "/b.txt")) == 0)
    local env = "ES_HOST=" .. d.url .. " DOCS_PATH=" .. cli.q(tree) .. " SLUICE_DATA=" .. cli.q(dir .. "/exdata") .. " "
    rc, out, err = cli.sh(env .. cli.q(prefix .. "/bin/sluice") .. " sync " ..
      cli.q(prefix .. "/share/sluice/examples/elasticsearch.yml") .. " --json")
    assert.are.equal(0, rc, out .. err)
    local s = json.decode(out)
    assert.are.same({ "completed", "search-docs", 2, 2 }, { s.status, s.index, s.indexed, s.index_count })
    -- the compose file names the three services and mounts that example
    local f = assert(io.open(src .. "/docker/compose.yml"))
    local compose = require("sluice.yaml").decode(f:read("*a"))
    f:close()
    assert.are.same({ true, true, true }, { compose.services.elasticsearch ~= nil,
      compose.services.kibana ~= nil, compose.services.sluice ~= nil })
    assert.are.equal("../examples/elasticsearch.yml:/etc/sluice/sluice.yml:ro", compose.services.sluice.volumes[1])
  end)

  it("syncs into OpenSearch and rebuilds a lost state database with its point in time API", function()
    stop(d)
    d = start(0, "--flavor opensearch --version 2.15.0")
    write_config(d.port)
    local ids = {}
    for i = 1, 1500 do ids[i] = string.format("os%04d", i) end
    write_plan(docs(ids, 2))
    local rc, s = sync()
    assert.are.same({ 0, "completed", 1500, 1500 }, { rc, s.status, s.indexed, s.index_count }, json.encode(s))
    assert.are.equal(1500, state_count())
    os.remove(dir .. "/data/state.db"); os.remove(dir .. "/data/state.db-wal"); os.remove(dir .. "/data/state.db-shm")
    local before = control(d, "GET", "/_double/requests")
    rc, s = sync()
    assert.are.same({ 0, "completed" }, { rc, s.status })
    assert.are.same({ 1500, 0, 1500, 0, 0, 1500 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    assert.are.equal(1500, state_count())
    -- zero documents rewritten; the scan used OpenSearch's point in time
    -- (two pages of 1,000 under one pit), never Elasticsearch's _pit
    local seen = {}
    for i, r in ipairs(control(d, "GET", "/_double/requests")) do
      if i > #before then seen[#seen + 1] = r.method .. " " .. r.path end
    end
    local bulk_n, searches, open_pit, close_pit = 0, 0, 0, 0
    for _, line in ipairs(seen) do
      assert.is_nil(line:find("_pit", 1, true), line)
      if line:find("/_bulk", 1, true) then bulk_n = bulk_n + 1 end
      if line == "POST /_search" then searches = searches + 1 end
      if line == "POST /search-t/_search/point_in_time" then open_pit = open_pit + 1 end
      if line == "DELETE /_search/point_in_time" then close_pit = close_pit + 1 end
    end
    assert.are.same({ 0, 2, 1, 1 }, { bulk_n, searches, open_pit, close_pit })
    assert.are.equal(1500, control(d, "GET", "/_double/indices")["search-t"].docs)
  end)

  it("fails an item still rejected after the last retry: completed_with_errors, sent again next sync", function()
    control(d, "POST", "/_double/faults", { rules = {
      { path = "_bulk", times = -1, item_faults = { b = { status = 429, type = "es_rejected_execution_exception",
        reason = "queue full" } } },
    } })
    write_plan(docs({ "a", "b", "c" }))
    local rc, s = sync()
    assert.are.same({ 3, "completed_with_errors" }, { rc, s.status })
    assert.are.same({ 3, 2, 1, 2 }, { s.listed, s.indexed, s.errors, s.index_count })
    assert.are.same({ "a,b,c", "b", "b" }, bulks(d)) -- max_retries: 2
    assert.are.same({ { id = "b", reason = "gave up after 3 attempts: 429 es_rejected_execution_exception: queue full" } },
      s.error_samples)
    control(d, "DELETE", "/_double/faults")
    rc, s = sync()
    assert.are.same({ 0, "completed", 1, 2, 3 }, { rc, s.status, s.indexed, s.unchanged, s.index_count })
    assert.are.same({ "a,b,c", "b", "b", "b" }, bulks(d))
  end)
end)
