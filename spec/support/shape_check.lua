--- Checks a driver's cur:shape() documents against sluice.sql's own
-- definitions (doc_id, iso_timestamp): the same query is read twice, as row
-- arrays and as shaped documents, and every document must be what the Lua
-- rules make of its row. Shared by the pg and mysql specs.
local sql = require("sluice.sql")
local assert = require("luassert")

local M = {}

local function fetch_all(cur)
  local out = {}
  while true do
    local batch = assert(cur:fetch())
    if #batch == 0 then return out end
    for _, r in ipairs(batch) do out[#out + 1] = r end
  end
end

--- opts: { sql, params, ids = {positions}, ts = position|nil, fields = {names} (default:
--   the column names), fetch_size, namespace, name, kind }
-- @return the documents (after asserting each one)
function M.check(conn, opts)
  local cur = assert(conn:cursor(opts.sql, opts.params, { fetch_size = opts.fetch_size or 2 }))
  local rows = fetch_all(cur)
  cur:close()
  cur = assert(conn:cursor(opts.sql, opts.params, { fetch_size = opts.fetch_size or 2 }))
  local cols = cur:columns()
  local fields = opts.fields
  if not fields then
    fields = {}
    for i, c in ipairs(cols) do fields[i] = c.name end
  end
  local ns, name, kind = opts.namespace or "ns|x", opts.name or "t\\b", opts.kind or "table"
  local last = { n = #opts.ids }
  local json_ids = {}
  for i, p in ipairs(opts.ids) do json_ids[i] = sql.JSON_TYPES[cols[p].type] == true end
  cur:shape({ fields = fields, ids = opts.ids, json_ids = json_ids, ts = opts.ts, kind = kind, name = name,
    prefix = ns:gsub("[\\|]", "\\%0") .. "|" .. name:gsub("[\\|]", "\\%0") .. "|",
    last = last })
  local docs = {}
  while true do
    local batch = assert(cur:fetch())
    if #batch == 0 then break end
    for _, d in ipairs(batch) do docs[#docs + 1] = d end
    -- the batch's last row, raw
    local raw = rows[#docs]
    for i, p in ipairs(opts.ids) do assert.are.same(raw[p], last[i]) end
    if opts.ts then assert.are.same(raw[opts.ts], last.ts) end
  end
  cur:close()
  assert.are.equal(#rows, #docs)
  for r, row in ipairs(rows) do
    local key = { n = #opts.ids }
    for i, p in ipairs(opts.ids) do key[i] = row[p] end
    local want = { _id = sql.doc_id(ns, name, key, json_ids), [kind] = name }
    for i = 1, #cols do
      if row[i] ~= nil and fields[i] then want[fields[i]] = row[i] end
    end
    if opts.ts then want._timestamp = sql.iso_timestamp(row[opts.ts]) end
    assert.are.same(want, docs[r])
  end
  return docs
end

return M
