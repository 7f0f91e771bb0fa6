--- The connector contract.
--
-- A connector file returns `sluice.connector{...}`:
--   name           service_type (e.g. "filesystem"); must match the file name
--   title          human name
--   configuration  a schema (see sluice.schema)
--   ping(ctx)      -> true | nil, err: can we reach and authenticate?
--   docs(ctx)      lists the source: calls ctx.yield(doc) for each document,
--                  ctx.error(id, reason) for a document it could not read, and
--                  ctx.incomplete(reason) when part of the source could not be
--                  listed (then nothing is deleted after the sync). Raising
--                  fails the sync.
--   docs_incremental(ctx, cursor)
--                  optional: lists only what changed since `cursor` (nil the
--                  first time) and returns the new cursor, a JSON-encodable
--                  value the engine stores with the documents it covers
--                  (`sluice sync --incremental`). Deletions are left to
--                  full syncs. After a failed document or ctx.incomplete()
--                  the engine keeps the previous cursor, so the next
--                  incremental sync lists that part again.
--   validate(ctx)  optional: -> nil | { {path=, message=}, ... } checks of the
--                  configuration that need the outside world (a path exists)
--
-- A document is a table with `_id` (string or number), an optional
-- `_timestamp` (ISO 8601 string or epoch seconds) and any fields. A field
-- `_content` may hold a function(doc) -> { field = value, ... } | nil, err:
-- the engine calls it only when the document is new or changed, so unchanged
-- documents cost no reads or downloads. The fetcher receives the document
-- after text hygiene (invalid UTF-8 replaced, control bytes escaped), so it
-- must read the source by values it captured itself (a path, a key, a
-- URL), never by the document's fields.
-- @module sluice.connector
local schema = require("sluice.schema")

local M = {}

local KNOWN = { name = true, title = true, description = true, configuration = true,
  ping = true, docs = true, validate = true, docs_incremental = true,
  access_control = true, version = true }

--- Checks and returns a connector definition.
function M.define(def)
  local where = "connector " .. tostring(def and def.name)
  if type(def) ~= "table" then error("sluice.connector expects a table", 2) end
  for k in pairs(def) do
    if not KNOWN[k] then error(where .. ": unknown key '" .. tostring(k) .. "'", 2) end
  end
  if type(def.name) ~= "string" or not def.name:match("^[%w_]+$") then
    error("connector: name must be a word (the service_type)", 2)
  end
  if type(def.docs) ~= "function" then error(where .. ": docs(ctx) is required", 2) end
  if def.ping ~= nil and type(def.ping) ~= "function" then
    error(where .. ": ping must be a function", 2)
  end
  def.configuration = def.configuration or {}
  local ok, err = schema.check_definition(def.configuration, where)
  if not ok then error(err, 2) end
  def.title = def.title or def.name
  def.__connector = true
  return def
end

return M
