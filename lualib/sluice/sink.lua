--- The one sink interface the engine writes through.
--
-- Every sink has:
--   put(doc, hash)  queue or write a document (hash: its content hash, which
--                   a remote sink may store to rebuild the state later); may
--                   yield while the sink applies backpressure
--   delete(id)      -> false when the document was not there
--   flush()         -> nil | { {id=, reason=}, ... }: waits until everything
--                   put before is acknowledged; returns the documents that
--                   could not be written; raises when the sink itself failed
--   count()         -> documents in the index (nil when unknown)
--   close()
--   each_hash(fn)   optional: fn(id, hash) for every document in the index,
--                   streamed (rebuilds a lost state database)
-- The embedded index (SQLite FTS5) is the default; NDJSON serves pipes and
-- debugging; the Elasticsearch bulk indexer implements the same methods.
-- @module sluice.sink
local fts = require("sluice.sink.fts")
local ndjson = require("sluice.sink.ndjson")

local M = {}

--- Path of the embedded index database under a data_dir.
function M.index_path(data_dir)
  return data_dir .. "/index.db"
end

--- Opens the sink a sync writes to.
-- @param cfg the loaded configuration
-- @param conn the connector entry (for index_name)
-- @param opts { ndjson = path or "-" }
-- @return sink | nil, err
function M.open(cfg, conn, opts)
  opts = opts or {}
  if opts.ndjson then
    local w, err = ndjson.open(opts.ndjson)
    if not w then return nil, "cannot open NDJSON output " .. opts.ndjson .. ": " .. tostring(err) end
    return {
      kind = "ndjson",
      put = function(_, doc) return w:put(doc) end,
      delete = function(_, id) w:delete(id); return true end,
      flush = function() return w:flush() end,
      count = function() return nil end,
      close = function() return w:close() end,
    }
  end
  if cfg.elasticsearch then
    return require("sluice.es.sink").open(cfg.elasticsearch, conn)
  end
  local idx, err = fts.open(M.index_path(cfg.data_dir), conn.index_name)
  if not idx then return nil, "cannot open embedded index: " .. tostring(err) end
  return {
    kind = "embedded", index = idx,
    put = function(_, doc) return idx:put(doc) end,
    delete = function(_, id) return idx:delete(id) end,
    flush = function() return idx:flush() end,
    count = function() return idx:count() end,
    close = function() return idx:close() end,
  }
end

return M
