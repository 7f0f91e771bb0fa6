--- Document content for connectors: what an extraction result becomes in
-- a document, and downloads streamed straight into extraction.
--
-- A connector's lazy `_content` fetcher is where content is read: the
-- engine calls it only for a new or changed document. For a file behind a
-- URL (an object store, a SaaS attachment) `content.download` streams the
-- response body into `extract.stream`, so the file never becomes a Lua
-- string and is never held beyond `max_input` bytes: past that the transfer
-- stops and the document fails with "too large". Every connector maps an
-- extraction result to the same fields through `content.fields`, so search
-- sees one document shape whatever the source.
--
--   local url, name = object.url, object.name -- captured: the fetcher
--   _content = function()                      -- gets the cleaned doc
--     return content.download(ctx.http, url, { name = name, headers = h })
--   end
-- @module sluice.content
local extract = require("sluice.extract")

local M = {}

M.MAX_INPUT = 64 * 2 ^ 20 -- bytes of a download kept for extraction
M.TIMEOUT = 60            -- seconds one document may take to extract

--- The document fields of an extraction result.
-- @param res, err, partial what `extract.text` or `sink:finish()` returned
-- @param fields a table to fill (default a new one)
-- @return fields | nil, err: the text as `body`, the document's own
--   metadata as `content_title`, `author`, `content_created`,
--   `content_modified`, `pages`, and the flags `no_text`, `truncated`; an
--   encrypted file keeps its metadata with `encrypted = true` and
--   `content_error`; a format sluice does not read gives the metadata
--   alone; any other failure is the document's error, "extract: <reason>".
function M.fields(res, err, partial, fields)
  fields = fields or {}
  local info = res or partial or {}
  fields.content_title = info.title
  fields.author = info.author
  fields.content_created = info.created
  fields.content_modified = info.modified
  fields.pages = info.pages
  if info.no_text then fields.no_text = true end
  if info.truncated then fields.truncated = true end
  if res then
    fields.body = res.text
  elseif err == "encrypted" then
    -- findable by its metadata; its text is not ours to read
    fields.encrypted = true
    fields.content_error = err
  elseif not tostring(err):match("^unsupported") then
    return nil, "extract: " .. tostring(err)
  end
  return fields
end

--- Downloads url into extraction and returns the document fields.
-- @param http the `sluice.http` module (ctx.http)
-- @param url the file's address
-- @param opts { name = file name (a type hint), headers =, method =,
--   timeout = transfer seconds, max_input = bytes (default MAX_INPUT),
--   extract_timeout = seconds (default TIMEOUT), mime = set mime_type }
-- @return fields (see `fields`, plus `mime_type` and `size`) | nil, err
--   where err names the HTTP status ("HTTP 404") or the transfer failure
--   ("too large", "timeout", "connection closed" ...)
function M.download(http, url, opts)
  opts = opts or {}
  local sink = extract.stream({
    name = opts.name, max_input = opts.max_input or M.MAX_INPUT,
    timeout = opts.extract_timeout or M.TIMEOUT,
  })
  local res, err = http.request({
    method = opts.method, url = url, headers = opts.headers,
    timeout = opts.timeout, sink = sink,
  })
  if not res then return nil, tostring(err) end
  if res.status < 200 or res.status > 299 then
    return nil, "HTTP " .. res.status
  end
  local r, ferr, partial = sink:finish()
  local fields, xerr = M.fields(r, ferr, partial)
  if not fields then return nil, xerr end
  fields.size = res.bytes
  fields.mime_type = opts.mime or (r or partial or {}).mime
  return fields
end

return M
