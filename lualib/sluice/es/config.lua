--- The `elasticsearch:` section of sluice.yml: its schema and what it turns
-- into (the URL, auth headers and bulk settings of sluice.sink.es).
--
-- Key names are those of Elastic's connectors config.yml (host, api_key,
-- username, password, ca_certs, verify_certs, request_timeout, bulk.*), so
-- a connectors configuration carries over; Elastic's bulk names
-- (chunk_size, max_concurrency, chunk_max_mem_size) are accepted beside
-- ours. Defaults follow Elasticsearch's tuning guidance (bulk requests of a
-- few MB, a few in flight) and the figures of bench/run.lua.
-- @module sluice.es.config
local schema = require("sluice.schema")
local crypto = require("sluice.crypto")

local M = {}

M.SCHEMA = {
  host = { type = "str", order = 1,
    description = "cluster URL (default http://localhost:9200; cloud_id replaces it)",
    validations = { { type = "regex", constraint = "^https?://" } } },
  cloud_id = { type = "str", order = 2, description = "Elastic Cloud deployment id" },
  api_key = { type = "str", sensitive = true, order = 3,
    description = "API key: the encoded form, or id:key" },
  username = { type = "str", order = 4 },
  password = { type = "str", sensitive = true, order = 5 },
  bearer_token = { type = "str", sensitive = true, order = 6,
    description = "OAuth2/service token sent as Authorization: Bearer" },
  ca_certs = { type = "str", order = 7, description = "CA certificate file (PEM)" },
  ca_fingerprint = { type = "str", order = 8,
    description = "SHA-256 fingerprint of a certificate in the server's chain (hex)",
    validations = { { type = "regex", constraint = "^[%x:]+$" } } },
  verify_certs = { type = "bool", default = true, order = 9 },
  request_timeout = { type = "float", default = 60, order = 10,
    validations = { { type = "greater_than", constraint = 0 } } },
  connect_timeout = { type = "float", default = 10,
    validations = { { type = "greater_than", constraint = 0 } } },
  headers = { type = "map", description = "extra HTTP headers sent with every request" },
  pipeline = { type = "str", description = "ingest pipeline for every document" },
  mappings = { type = "map", description = "index mappings used when sluice creates the index (replaces the default)" },
  settings = { type = "map", description = "index settings used when sluice creates the index" },
  on_conflict = { type = "str", default = "fail", options = { "fail", "ignore", "retry" },
    description = "what a 409 version conflict means for a document" },
  op_type = { type = "str", default = "index", options = { "index", "create" } },
  bulk = { type = "map", default = {}, description = "batching and retries (see BULK)" },
}

M.BULK = {
  max_actions = { type = "int", default = 1000, order = 1,
    description = "actions per bulk request",
    validations = { { type = "greater_than", constraint = 0 } } },
  max_bytes = { type = "int", default = 5 * 1024 * 1024, order = 2,
    description = "bytes per bulk request (a larger document goes alone)",
    validations = { { type = "greater_than", constraint = 0 } } },
  concurrency = { type = "int", default = 2, order = 3,
    description = "bulk requests in flight at once",
    validations = { { type = "greater_than", constraint = 0 }, { type = "less_than", constraint = 65 } } },
  max_retries = { type = "int", default = 5, order = 4,
    validations = { { type = "greater_than", constraint = -1 } } },
  retry_initial_seconds = { type = "float", default = 0.5, order = 5,
    validations = { { type = "greater_than", constraint = -1e-9 } } },
  retry_max_seconds = { type = "float", default = 30, order = 6,
    validations = { { type = "greater_than", constraint = -1e-9 } } },
  pipeline = { type = "str", description = "ingest pipeline (same as elasticsearch.pipeline)" },
  -- Elastic connectors' names for the same things.
  chunk_size = { type = "int", description = "Elastic's name for max_actions" },
  max_concurrency = { type = "int", description = "Elastic's name for concurrency" },
  chunk_max_mem_size = { type = "float", description = "Elastic's max bytes, in MiB" },
  queue_max_size = { type = "int", description = "accepted for compatibility; unused" },
  queue_max_mem_size = { type = "float", description = "accepted for compatibility; unused" },
  display_every = { type = "int", description = "accepted for compatibility; unused" },
  concurrent_downloads = { type = "int", description = "accepted for compatibility; unused" },
  retry_interval = { type = "float", description = "Elastic's name for retry_initial_seconds" },
}

--- Validates a raw `elasticsearch:` mapping.
-- @return the validated section | nil, { {path=, message=}, ... }
function M.validate(raw)
  local es, errs = schema.validate(M.SCHEMA, raw)
  if not es then return nil, errs end
  errs = {}
  local bulk, berrs = schema.validate(M.BULK, es.bulk or {})
  for _, e in ipairs(berrs or {}) do
    errs[#errs + 1] = { path = "bulk" .. (e.path ~= "" and ("." .. e.path) or ""), message = e.message }
  end
  if bulk then
    bulk.max_actions = bulk.chunk_size or bulk.max_actions
    bulk.concurrency = bulk.max_concurrency or bulk.concurrency
    if bulk.chunk_max_mem_size then bulk.max_bytes = math.floor(bulk.chunk_max_mem_size * 1048576) end
    bulk.retry_initial_seconds = bulk.retry_interval or bulk.retry_initial_seconds
    es.bulk = bulk
  end
  local auths = 0
  for _, k in ipairs({ "api_key", "bearer_token" }) do
    if es[k] then auths = auths + 1 end
  end
  if es.username or es.password then
    auths = auths + 1
    if not (es.username and es.password) then
      errs[#errs + 1] = { path = es.username and "password" or "username",
        message = "username and password go together" }
    end
  end
  if auths > 1 then
    errs[#errs + 1] = { path = "", message = "choose one of api_key, username/password and bearer_token" }
  end
  if es.ca_fingerprint then
    local hex = es.ca_fingerprint:gsub(":", "")
    if #hex ~= 64 then
      errs[#errs + 1] = { path = "ca_fingerprint", message = "expected a SHA-256 fingerprint (64 hex digits)" }
    end
  end
  if es.cloud_id and es.host then
    errs[#errs + 1] = { path = "cloud_id", message = "give either host or cloud_id, not both" }
  elseif es.cloud_id and not M.cloud_url(es.cloud_id) then
    errs[#errs + 1] = { path = "cloud_id", message = "not an Elastic Cloud id (name:base64)" }
  end
  for k, v in pairs(es.headers or {}) do
    if type(v) ~= "string" and type(v) ~= "number" then
      errs[#errs + 1] = { path = "headers." .. tostring(k), message = "expected a string" }
    end
  end
  if #errs > 0 then return nil, errs end
  return es
end

--- The cluster URL an Elastic Cloud id stands for, or nil.
-- The id is "name:base64(domain[:port]$es_uuid$kibana_uuid)".
function M.cloud_url(cloud_id)
  local encoded = cloud_id:match("^[^:]*:(.+)$") or cloud_id
  local decoded = crypto.base64_decode(encoded)
  if not decoded then return nil end
  local domain, es_uuid = decoded:match("^([^%$]+)%$([^%$]+)")
  if not domain or domain == "" or es_uuid == "" then return nil end
  local host, port = domain:match("^(.-):(%d+)$")
  if host then return "https://" .. es_uuid .. "." .. host .. ":" .. port end
  return "https://" .. es_uuid .. "." .. domain
end

--- The secrets of a validated section (for log redaction), derived
-- header values included.
function M.secrets(es)
  local out = schema.secrets(M.SCHEMA, es)
  local h = M.auth_header(es)
  if h then out[#out + 1] = h:match("^%S+ (.+)$") end
  return out
end

--- The Authorization header value for a validated section, or nil.
function M.auth_header(es)
  if es.api_key then
    local key = es.api_key
    if key:find(":", 1, true) then key = crypto.base64_encode(key) end
    return "ApiKey " .. key
  elseif es.bearer_token then
    return "Bearer " .. es.bearer_token
  elseif es.username then
    return "Basic " .. crypto.base64_encode(es.username .. ":" .. es.password)
  end
end

--- Options for sluice.sink.es.client from a validated section.
function M.client_options(es, index)
  local headers = {}
  for k, v in pairs(es.headers or {}) do headers[tostring(k)] = tostring(v) end
  headers.Authorization = M.auth_header(es) or headers.Authorization
  local b = es.bulk or {}
  return {
    url = es.host or (es.cloud_id and M.cloud_url(es.cloud_id)) or "http://localhost:9200",
    index = index, headers = headers,
    pipeline = b.pipeline or es.pipeline,
    ca_file = es.ca_certs, verify_certs = es.verify_certs,
    fingerprint = es.ca_fingerprint,
    timeout = es.request_timeout, connect_timeout = es.connect_timeout,
    max_actions = b.max_actions, max_bytes = b.max_bytes, concurrency = b.concurrency,
    max_retries = b.max_retries, retry_initial = b.retry_initial_seconds,
    retry_max = b.retry_max_seconds,
    on_conflict = es.on_conflict, op_type = es.op_type,
  }
end

return M
