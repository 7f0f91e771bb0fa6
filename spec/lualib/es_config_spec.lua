-- The `elasticsearch:` section of sluice.yml: schema validation (nested
-- bulk keys included, with file:line positions), Elastic's key names,
-- auth headers, Elastic Cloud ids and secret redaction.
-- Run: build/sluice lua spec/busted.lua spec/lualib/es_config_spec.lua
local config = require("sluice.config")
local esconf = require("sluice.es.config")
local crypto = require("sluice.crypto")
local log = require("sluice.log")

local CONNECTORS = [[
connectors:
  - id: docs
    service_type: filesystem
    configuration: { path: /tmp }
]]

local function parse(es_yaml)
  return config.parse(es_yaml .. CONNECTORS, "/etc/sluice/sluice.yml")
end

describe("elasticsearch configuration", function()
  it("fills defaults from a host alone", function()
    local cfg = assert(parse("elasticsearch:\n  host: https://es.example:9200\n"))
    local es = cfg.elasticsearch
    assert.are.same({ "https://es.example:9200", true, 60, "fail", "index" },
      { es.host, es.verify_certs, es.request_timeout, es.on_conflict, es.op_type })
    assert.are.same({ 1000, 5242880, 2, 5, 0.5, 30 }, { es.bulk.max_actions, es.bulk.max_bytes,
      es.bulk.concurrency, es.bulk.max_retries, es.bulk.retry_initial_seconds, es.bulk.retry_max_seconds })
    local o = esconf.client_options(es, "search-docs")
    assert.are.same({ "https://es.example:9200", "search-docs", 1000, 2 }, { o.url, o.index, o.max_actions, o.concurrency })
    assert.is_nil(o.headers.Authorization)
  end)

  it("resolves a relative CA file against the configuration's folder", function()
    local cfg = assert(parse("elasticsearch:\n  host: https://es:9200\n  ca_certs: certs/ca.pem\n"))
    assert.are.equal("/etc/sluice/certs/ca.pem", cfg.elasticsearch.ca_certs)
  end)

  it("accepts Elastic connectors' bulk names", function()
    local cfg = assert(parse("elasticsearch:\n  bulk:\n    chunk_size: 250\n    max_concurrency: 4\n" ..
      "    chunk_max_mem_size: 2\n    retry_interval: 3\n    queue_max_size: 1024\n"))
    local b = cfg.elasticsearch.bulk
    assert.are.same({ 250, 4, 2097152, 3 }, { b.max_actions, b.concurrency, b.max_bytes, b.retry_initial_seconds })
  end)

  it("reports nested mistakes with file, line and key path, all at once", function()
    local cfg, err = parse("elasticsearch:\n  host: es.example\n  bulk:\n    max_actions: lots\n" ..
      "    concurrency: 0\n    colour: red\n  on_conflict: maybe\n")
    assert.is_nil(cfg)
    assert.are.equal(table.concat({
      "/etc/sluice/sluice.yml:2:3: elasticsearch.host: 'es.example' does not match ^https?://",
      "/etc/sluice/sluice.yml:7:3: elasticsearch.on_conflict: must be one of: fail, ignore, retry",
    }, "\n"), err)
    cfg, err = parse("elasticsearch:\n  bulk:\n    max_actions: lots\n    concurrency: 0\n    colour: red\n")
    assert.is_nil(cfg)
    assert.are.equal(table.concat({
      "/etc/sluice/sluice.yml:5:5: elasticsearch.bulk.colour: unknown key (known keys: max_actions, max_bytes, " ..
        "concurrency, max_retries, retry_initial_seconds, retry_max_seconds, chunk_max_mem_size, chunk_size, " ..
        "concurrent_downloads, display_every, max_concurrency, pipeline, queue_max_mem_size, queue_max_size, retry_interval)",
      "/etc/sluice/sluice.yml:3:5: elasticsearch.bulk.max_actions: expected an integer, got 'lots'",
      "/etc/sluice/sluice.yml:4:5: elasticsearch.bulk.concurrency: must be greater than 0",
    }, "\n"), err)
  end)

  it("keeps nested index settings and mappings as written, and passes retry bounds to the client", function()
    local cfg = assert(parse("elasticsearch:\n  request_timeout: 2.5\n  settings:\n    index:\n" ..
      "      number_of_shards: 3\n      refresh_interval: 30s\n    index.number_of_replicas: 0\n" ..
      "  mappings:\n    properties:\n      title: { type: keyword }\n" ..
      "  bulk: { max_retries: 7, retry_initial_seconds: 0.25, retry_max_seconds: 4 }\n"))
    local es = cfg.elasticsearch
    assert.are.same({ index = { number_of_shards = 3, refresh_interval = "30s" }, ["index.number_of_replicas"] = 0 },
      es.settings)
    assert.are.same({ properties = { title = { type = "keyword" } } }, es.mappings)
    local o = esconf.client_options(es, "i")
    assert.are.same({ 2.5, 7, 0.25, 4 }, { o.timeout, o.max_retries, o.retry_initial, o.retry_max })
    local _, err = parse("elasticsearch:\n  settings: 3\n")
    assert.truthy(err:find("/etc/sluice/sluice.yml:2:3: elasticsearch.settings: ", 1, true), err)
    _, err = parse("elasticsearch:\n  request_timeout: 0\n")
    assert.are.equal("/etc/sluice/sluice.yml:2:3: elasticsearch.request_timeout: must be greater than 0", err)
  end)

  it("allows one kind of credentials and checks fingerprints and cloud ids", function()
    local _, err = parse("elasticsearch:\n  api_key: k\n  username: u\n  password: p\n")
    assert.are.equal("/etc/sluice/sluice.yml:1:1: elasticsearch: choose one of api_key, username/password and bearer_token", err)
    _, err = parse("elasticsearch:\n  username: u\n")
    assert.are.equal("/etc/sluice/sluice.yml:1:1: elasticsearch.password: username and password go together", err)
    _, err = parse("elasticsearch:\n  ca_fingerprint: 'AB:CD'\n")
    assert.are.equal("/etc/sluice/sluice.yml:2:3: elasticsearch.ca_fingerprint: expected a SHA-256 fingerprint (64 hex digits)", err)
    _, err = parse("elasticsearch:\n  cloud_id: 'x:!!!'\n")
    assert.are.equal("/etc/sluice/sluice.yml:2:3: elasticsearch.cloud_id: not an Elastic Cloud id (name:base64)", err)
  end)

  it("builds the Authorization header for each kind of credentials", function()
    assert.are.equal("ApiKey abc==", esconf.auth_header({ api_key = "abc==" }))
    assert.are.equal("ApiKey " .. crypto.base64_encode("id:key"), esconf.auth_header({ api_key = "id:key" }))
    assert.are.equal("Bearer tok", esconf.auth_header({ bearer_token = "tok" }))
    assert.are.equal("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==", esconf.auth_header({ username = "elastic", password = "changeme" }))
  end)

  it("turns an Elastic Cloud id into the cluster URL", function()
    local id = "my-deploy:" .. crypto.base64_encode("us-east-1.aws.found.io$abc123$kib456")
    assert.are.equal("https://abc123.us-east-1.aws.found.io", esconf.cloud_url(id))
    id = "d:" .. crypto.base64_encode("eu.example.io:9243$es1$kb1")
    assert.are.equal("https://es1.eu.example.io:9243", esconf.cloud_url(id))
    local cfg = assert(parse("elasticsearch:\n  cloud_id: '" .. id .. "'\n"))
    assert.are.equal("https://es1.eu.example.io:9243", esconf.client_options(cfg.elasticsearch, "i").url)
    local _, err = parse("elasticsearch:\n  host: http://x:9200\n  cloud_id: '" .. id .. "'\n")
    assert.truthy(err:find("give either host or cloud_id, not both", 1, true), err)
  end)

  it("redacts passwords, keys and the basic credentials they make", function()
    assert(parse("elasticsearch:\n  username: elastic\n  password: hunter2-secret\n"))
    assert.is_nil(log.redact("login elastic:hunter2-secret"):find("hunter2-secret", 1, true))
    local basic = crypto.base64_encode("elastic:hunter2-secret")
    assert.is_nil(log.redact("Authorization: Basic " .. basic):find(basic, 1, true))
  end)
end)
