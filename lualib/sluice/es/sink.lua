--- The Elasticsearch/OpenSearch sink: index management around the C bulk
-- indexer (sluice.sink.es), behind the sink interface of sluice.sink.
--
-- At open: ask the server who it is (Elasticsearch 8.x/9.x or OpenSearch
-- 2.x/3.x; anything else is refused before a byte is indexed) and create
-- the index if it is missing, with a mapping suited to connector documents
-- unless the configuration gives its own. Each document carries its content
-- hash in `_sluice_hash` (Elasticsearch 8.x accepts source fields starting
-- with an underscore other than its metadata fields, as Elastic's own
-- connectors' `_timestamp` shows), so a lost state database is rebuilt by
-- streaming ids and hashes out of the index (each_hash: point in time +
-- search_after, pages of 1,000; memory stays flat).
--
-- A sink that fails as a whole raises an error object that is both a string
-- (tostring) and a table with `fatal`: the engine then fails the sync
-- instead of blaming the document at hand, and deletes nothing.
-- @module sluice.es.sink
local es = require("sluice.sink.es")
local json = require("sluice.json")
local http = require("sluice.http")
local task = require("sluice.task")
local log = require("sluice.log")
local esconf = require("sluice.es.config")

local M = {}

M.HASH_FIELD = "_sluice_hash"
M.PAGE = 1000          -- hits per each_hash page
M.KEEP_ALIVE = "2m"    -- point in time kept alive between pages

--- Mapping for a new index: strings are full text with a keyword
-- sub-field (as Elastic's connectors map them), bodies are text only, the
-- hash is stored but not indexed.
M.DEFAULT_MAPPINGS = {
  dynamic_templates = {
    { strings = { match_mapping_type = "string",
      mapping = { type = "text", fields = { keyword = { type = "keyword", ignore_above = 256 } } } } },
  },
  properties = {
    _timestamp = { type = "date" },
    body = { type = "text" },
    [M.HASH_FIELD] = { type = "keyword", index = false },
  },
}

local Sink = {}
Sink.__index = Sink

local function fatal(msg)
  error(setmetatable({ fatal = msg }, { __tostring = function() return msg end }), 0)
end

-- "HTTP 404: index_not_found_exception: no such index [x]" from an answer.
local function reason(res)
  local ok, body = pcall(json.decode, res.body)
  if ok and type(body) == "table" and body.error ~= nil then
    local e = body.error
    if type(e) == "table" then
      return string.format("HTTP %d: %s: %s", res.status, tostring(e.type), tostring(e.reason))
    end
    return string.format("HTTP %d: %s", res.status, tostring(e))
  end
  local text = res.body:sub(1, 2000):gsub("<[^>]*>", " "):gsub("%s+", " "):match("^%s*(.-)%s*$")
  if text == "" then return "HTTP " .. res.status end
  return string.format("HTTP %d: %s", res.status, text:sub(1, 160))
end

-- Transport errors that no retry can cure: a certificate that is not
-- trusted (or does not match ca_fingerprint) stays so, and waiting out the
-- backoff first only hides the real problem for a quarter of a minute.
local PERMANENT = { "certificate", "unsupported protocol", "malformed" }
local function permanent(err)
  local e = tostring(err):lower()
  for _, p in ipairs(PERMANENT) do
    if e:find(p, 1, true) then return true end
  end
  return false
end

-- One management request, retried like a bulk request on 429/5xx and
-- transport errors. Returns res (any other status) | nil, err.
function Sink:call(method, path, body)
  if type(body) == "table" then body = json.encode(body) end
  local tries = 0
  while true do
    local res, err = self.c:request(method, path, body)
    if res and res.status ~= 429 and res.status < 500 then return res end
    if not res and permanent(err) then
      return nil, method .. " " .. path .. " failed: " .. tostring(err)
    end
    err = err or reason(res)
    tries = tries + 1
    if tries > self.max_retries then
      return nil, method .. " " .. path .. " failed after " .. tries .. " attempts: " .. err
    end
    local d = math.min(self.retry_initial * 2 ^ (tries - 1), self.retry_max)
    self.log.warn("elasticsearch request failed, retrying", { request = method .. " " .. path, error = err, seconds = d })
    task.sleep(d)
  end
end

-- Decodes a 2xx answer's JSON body; nil, err otherwise.
local function decoded(res, err, what)
  if not res then return nil, err end
  if res.status < 200 or res.status > 299 then return nil, what .. ": " .. reason(res) end
  local ok, body = pcall(json.decode, res.body)
  if not ok or type(body) ~= "table" then return nil, what .. ": malformed answer" end
  return body
end

--- Who is the server: { flavor = "elasticsearch"|"opensearch", version = "8.15.0" }
function Sink:server()
  local res, rerr = self:call("GET", "/")
  local body, err = decoded(res, rerr, "GET /")
  if not body then return nil, "cannot reach " .. self.url .. ": " .. err end
  local v = type(body.version) == "table" and body.version or {}
  local number = type(v.number) == "string" and v.number or "?"
  local flavor = v.distribution == "opensearch" and "opensearch" or "elasticsearch"
  local major = tonumber(number:match("^(%d+)%.")) or 0
  local supported = (flavor == "elasticsearch" and (major == 8 or major == 9))
      or (flavor == "opensearch" and (major == 2 or major == 3))
  if not supported then
    return nil, string.format("unsupported server at %s: %s %s (sluice needs Elasticsearch 8.x/9.x or OpenSearch 2.x)",
      self.url, flavor, number)
  end
  return { flavor = flavor, version = number }
end

--- Creates the index unless it exists. Returns true | nil, err.
function Sink:ensure_index(es_cfg)
  local res, err = self:call("HEAD", self.path)
  if not res then return nil, err end
  if res.status == 200 then return true end
  if res.status == 401 or res.status == 403 then
    return nil, "the cluster refused the credentials: HTTP " .. res.status
  end
  if res.status ~= 404 then return nil, "HEAD " .. self.path .. ": HTTP " .. res.status end
  local mappings = es_cfg.mappings or M.DEFAULT_MAPPINGS
  if es_cfg.mappings then
    -- A strict mapping would reject the hash field every document carries.
    mappings.properties = mappings.properties or {}
    mappings.properties[M.HASH_FIELD] = mappings.properties[M.HASH_FIELD] or M.DEFAULT_MAPPINGS.properties[M.HASH_FIELD]
  end
  local body = { mappings = mappings, settings = es_cfg.settings }
  res, err = self:call("PUT", self.path, body)
  if not res then return nil, err end
  if res.status >= 200 and res.status < 300 then
    self.log.info("created index", { index = self.index })
    return true
  end
  if res.body:find("resource_already_exists_exception", 1, true) then return true end
  return nil, "cannot create index " .. self.index .. ": " .. reason(res)
end

-- Writes the C side's log records through sluice.log (which redacts).
function Sink:drain_logs()
  for _, r in ipairs(self.c:logs()) do
    self.log[r.level](r.message, r.id and { id = r.id } or nil)
  end
end

--- Queues a document; yields while every bulk slot is busy. hashed: doc
-- is what crypto.content_hash hashed last, unchanged since but for its
-- _timestamp (the C side then writes it from the hash's walk).
function Sink:put(doc, hash, hashed)
  local ok, err = self.c:put(doc, hash, hashed)
  if ok then return true end
  local why = self.c:failed()
  if why then fatal("elasticsearch: " .. why) end
  -- The document cannot be encoded: it fails alone, reported by flush.
  self.local_failures[#self.local_failures + 1] = { id = doc._id, reason = err }
  return true
end

--- Queues a delete (same bulk path). The answer comes with flush().
function Sink:delete(id)
  local ok, err = self.c:delete(id)
  if not ok then fatal("elasticsearch: " .. tostring(self.c:failed() or err)) end
  return true
end

--- Waits until everything queued is acknowledged.
-- @return nil | { {id=, reason=}, ... }; raises when the sink failed
function Sink:flush()
  local failures, err = self.c:flush()
  self:drain_logs()
  if not failures then fatal("elasticsearch: " .. tostring(err)) end
  for _, f in ipairs(self.local_failures) do failures[#failures + 1] = f end
  self.local_failures = {}
  if #failures == 0 then return nil end
  return failures
end

--- Documents in the index, after a refresh; nil, err when it cannot tell.
function Sink:count()
  local res, err = self:call("POST", self.path .. "/_refresh")
  if res and res.status == 404 then return 0 end
  local body
  body, err = decoded(self:call("GET", self.path .. "/_count"))
  if not body or type(body.count) ~= "number" then
    self.log.warn("cannot count the index", { index = self.index, error = err })
    return nil, err
  end
  return body.count
end

--- Calls fn(id, hash) for every document in the index (hash nil when the
-- document has none), page by page under a point in time.
-- @return true | nil, err (the pages seen so far were passed to fn)
function Sink:each_hash(fn)
  local is_os = self.flavor == "opensearch"
  -- A point in time sees only refreshed documents.
  self:call("POST", self.path .. "/_refresh")
  local open = is_os and (self.path .. "/_search/point_in_time?keep_alive=" .. M.KEEP_ALIVE)
      or (self.path .. "/_pit?keep_alive=" .. M.KEEP_ALIVE)
  local res, err = self:call("POST", open)
  if res and res.status == 404 then return true end
  local body
  body, err = decoded(res, err, "open point in time")
  if not body then self.log.error("cannot scan the index", { error = err }); return nil, err end
  local pit = is_os and body.pit_id or body.id
  -- OpenSearch documents PIT paging with a field sort; _id is sortable
  -- there. Elasticsearch refuses _id sorts and offers _shard_doc.
  local sort = is_os and { { _id = "asc" } } or { { _shard_doc = "asc" } }
  local after
  local ok, perr = pcall(function()
    while true do
      local q = { size = M.PAGE, _source = { M.HASH_FIELD }, sort = sort, track_total_hits = false,
        pit = { id = pit, keep_alive = M.KEEP_ALIVE }, search_after = after }
      local page, serr = decoded(self:call("POST", "/_search", q))
      if not page then error("search: " .. tostring(serr), 0) end
      pit = page.pit_id or pit
      local hits = type(page.hits) == "table" and page.hits.hits or {}
      for _, h in ipairs(hits) do
        local src = type(h._source) == "table" and h._source or {}
        local hash = src[M.HASH_FIELD]
        fn(h._id, type(hash) == "string" and hash or nil)
      end
      if #hits < M.PAGE then break end
      after = hits[#hits].sort
    end
  end)
  if is_os then
    self:call("DELETE", "/_search/point_in_time", { pit_id = { pit } })
  else
    self:call("DELETE", "/_pit", { id = pit })
  end
  if not ok then
    self.log.error("cannot scan the index", { index = self.index, error = tostring(perr) })
    return nil, tostring(perr)
  end
  return true
end

function Sink:stats() return self.c:stats() end

function Sink:close()
  if self.c then
    self:drain_logs()
    self.c:close()
  end
end

--- Opens the sink for one connector.
-- @param es_cfg the validated `elasticsearch:` section (sluice.es.config)
-- @param conn the connector entry (index_name, id)
-- @return sink | nil, err
function M.open(es_cfg, conn)
  local opts = esconf.client_options(es_cfg, conn.index_name)
  opts.hash_field = M.HASH_FIELD
  local c = es.client(opts)
  local self = setmetatable({
    kind = "elasticsearch", c = c, url = opts.url, index = conn.index_name,
    -- documents between the engine's flushes: enough to keep every bulk
    -- slot busy several times over between two waits
    batch = math.max(500, (opts.max_actions or 1000) * (opts.concurrency or 2) * 4),
    path = "/" .. http.escape(conn.index_name), local_failures = {},
    max_retries = es_cfg.bulk.max_retries or 5,
    retry_initial = es_cfg.bulk.retry_initial_seconds or 0.5,
    retry_max = es_cfg.bulk.retry_max_seconds or 30,
    log = log.with({ connector = conn.id, index = conn.index_name }),
  }, Sink)
  local info, err = self:server()
  if info then
    self.flavor, self.version = info.flavor, info.version
    self.log.debug("connected", { server = info.flavor .. " " .. info.version, url = opts.url })
    info, err = self:ensure_index(es_cfg)
  end
  if not info then
    c:close()
    return nil, err
  end
  return self
end

return M
