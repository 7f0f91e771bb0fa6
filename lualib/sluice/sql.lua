--- What the SQL connectors (PostgreSQL, MySQL/MariaDB) share: the
-- configuration schema, listing tables and their keys, streaming rows
-- through a server-side cursor into documents, ids that never collide,
-- advanced rules (custom queries with their own id columns) and the
-- incremental (timestamp, key) cursor.
--
-- A connector passes a *dialect*: the few things that differ per database.
--   driver                 the C driver (sluice.pg, sluice.mysql): connect,
--                          conn:query/cursor, cur:fetch/columns/close
--   default_port           number
--   namespace(cfg)         the schema (PostgreSQL) or database (MySQL) name
--   quote(name)            identifier quoting (driver.escape_identifier)
--   placeholder(i)         "$1" or "?"
--   list_tables(conn, cfg) -> { names } | nil, err
--   primary_key(conn, cfg, table) -> { columns } ({} when none) | nil, err
--
-- Ids: the parts (namespace, table, key values...) are joined with "|"
-- after escaping "\" and "|" in each part, so two different part lists can
-- never give the same string: table `a_b` key 1 is `public|a_b|1`, table `a`
-- key `b_1` is `public|a|b_1`; keys (`x|`, `y`) and (`x`, `|y`) stay apart.
-- Custom queries use an empty first part (no schema or database has an empty
-- name): `|query name|1`. SQL NULL in a key is `\N`, which no escaped value
-- can produce. The engine hashes ids longer than 512 bytes.
--
-- Documents: every column by name (a column named like one of the reserved
-- fields `_id`, `_timestamp`, `_content`, `table`, `query` is stored as
-- `column_<name>`), NULL columns left out, `table` (or `query` for a custom
-- query), and `_timestamp` from the configured updated-at column.
-- @module sluice.sql
local json = require("sluice.json")

local M = {}

M.DEFAULT_FETCH_SIZE = 1000

-- Column types (as cur:columns() names them) whose values are decoded JSON.
M.JSON_TYPES = { json = true, jsonb = true }

local RESERVED = { _id = true, _timestamp = true, _content = true, table = true,
  query = true, original_id = true }

--- The configuration fields both SQL connectors use (Elastic's names).
-- @param d the dialect (default_port) and extra fields to merge in
function M.configuration(d, extra)
  local c = {
    host = { type = "str", label = "Host", required = true, order = 1 },
    port = { type = "int", label = "Port", default = d.default_port, order = 2 },
    username = { type = "str", label = "Username", order = 3,
      description = "the database user (`user` is accepted too, as in Elastic's MySQL connector)" },
    user = { type = "str", label = "User (alias of username)", order = 4 },
    password = { type = "str", label = "Password", sensitive = true, order = 5 },
    database = { type = "str", label = "Database", required = true, order = 6 },
    tables = { type = "list", label = "Comma-separated list of tables", order = 8,
      description = "`*` for every table; the default is every table, or none when queries are configured (as Elastic's advanced rules)" },
    ssl_enabled = { type = "bool", label = "Enable SSL verification", default = false, order = 9 },
    ssl_ca = { type = "str", label = "SSL certificate (CA file path)", order = 10,
      depends_on = { { field = "ssl_enabled", value = true } },
      description = "with a CA the server's certificate and host name are verified; without one the connection is only encrypted" },
    fetch_size = { type = "int", label = "Rows fetched per round trip", default = M.DEFAULT_FETCH_SIZE, order = 11,
      validations = { { type = "greater_than", constraint = 0 } } },
    id_columns = { type = "map", label = "Id columns per table", default = {}, order = 12,
      description = "table -> list of columns, for tables without a primary key (or to override it)" },
    timestamp_columns = { type = "map", label = "Updated-at column per table", default = {}, order = 13,
      description = "table -> column: the documents' _timestamp, and the incremental sync cursor" },
    queries = { type = "any", label = "Advanced rules: custom queries", default = {}, order = 14,
      description = "a list of {name, query, id_columns, timestamp_column}; each row is a document" },
    connect_timeout = { type = "int", label = "Connect timeout (seconds)", default = 30, order = 15,
      validations = { { type = "greater_than", constraint = 0 } } },
  }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

--- Checks what the schema cannot express; -> nil | { {path=, message=} }.
function M.validate(cfg)
  local errs = {}
  local function add(path, msg) errs[#errs + 1] = { path = path, message = msg } end
  if not cfg.username and not cfg.user then add("username", "required value missing") end
  for t, cols in pairs(cfg.id_columns or {}) do
    if type(cols) == "string" then cols = { cols } end
    if type(cols) ~= "table" or #cols == 0 then add("id_columns." .. tostring(t), "expected a list of column names") end
  end
  for t, col in pairs(cfg.timestamp_columns or {}) do
    if type(col) ~= "string" then add("timestamp_columns." .. tostring(t), "expected a column name") end
  end
  if type(cfg.queries) ~= "table" then
    add("queries", "expected a list")
  else
    local seen = {}
    for i, q in ipairs(cfg.queries) do
      local at = "queries[" .. i .. "]"
      if type(q) ~= "table" then add(at, "expected a mapping")
      else
        if type(q.name) ~= "string" or q.name == "" then add(at .. ".name", "required value missing")
        elseif seen[q.name] then add(at .. ".name", "duplicate query name '" .. q.name .. "'") end
        if q.name then seen[q.name] = true end
        if type(q.query) ~= "string" or q.query == "" then add(at .. ".query", "required value missing") end
        local ids = q.id_columns
        if type(ids) == "string" then ids = { ids } end
        if type(ids) ~= "table" or #ids == 0 then add(at .. ".id_columns", "required value missing") end
        for k in pairs(q) do
          if k ~= "name" and k ~= "query" and k ~= "id_columns" and k ~= "timestamp_column" then
            add(at .. "." .. tostring(k), "unknown key (known keys: name, query, id_columns, timestamp_column)")
          end
        end
      end
    end
  end
  return #errs > 0 and errs or nil
end

--- Options for driver.connect from the connector configuration.
function M.connect_options(cfg)
  local mode = "disable"
  if cfg.ssl_enabled then mode = cfg.ssl_ca and "verify-full" or "require" end
  return {
    host = cfg.host, port = cfg.port, user = cfg.username or cfg.user,
    password = cfg.password, database = cfg.database, ssl_mode = mode,
    ssl_ca = cfg.ssl_enabled and cfg.ssl_ca or nil,
    connect_timeout = cfg.connect_timeout, application_name = "sluice",
  }
end

--- Connects; -> conn | nil, err.
function M.connect(d, cfg)
  return d.driver.connect(M.connect_options(cfg))
end

local find, gsub, format, floor = string.find, string.gsub, string.format, math.floor

-- Ids are built once per row: most key values hold neither "\\" nor "|",
-- and a find is much cheaper than a gsub that copies.
local function escape_part(s)
  if not find(s, "[\\|]") then return s end
  return (gsub(s, "[\\|]", "\\%0"))
end

local function key_string(v)
  local t = type(v)
  if t == "number" then
    if v == floor(v) then
      -- %d is the fast path, exact below 2^53 (the drivers' integers)
      if v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
      if v > -2 ^ 63 and v < 2 ^ 63 then return format("%.0f", v) end
    end
    return format("%.17g", v)
  elseif t == "string" then return escape_part(v)
  elseif v == nil or v == json.null then return "\\N"
  elseif t == "table" then return escape_part(json.encode_canonical(v))
  end
  return escape_part(tostring(v))
end

--- The document id for a row: namespace ("" for custom queries), source
-- name and key values, joined unambiguously (see the module comment).
-- json_parts[i] true: key value i comes from a JSON column. The
-- drivers build the same ids for M.stream in C (runtime/db/rowdoc.c);
-- spec/connectors/sql_ids_spec.lua holds the two to the same answers.
function M.doc_id(namespace, source, values, json_parts)
  local parts = { escape_part(namespace), escape_part(source) }
  -- values may hold nils (NULL keys): walk by the declared count when given
  for i = 1, values.n or #values do
    local v = values[i]
    -- a JSON column's values are of every kind: 1 and "1", null and NULL
    -- must differ, so its part is the value's canonical JSON text
    if json_parts and json_parts[i] and v ~= nil then
      parts[#parts + 1] = escape_part(json.encode_canonical(v))
    else
      parts[#parts + 1] = key_string(v)
    end
  end
  return table.concat(parts, "|")
end

--- A timestamp value as the engine wants it: ISO 8601, UTC when no zone is
-- given (a DATETIME or timestamp-without-zone column holds no zone).
-- rowdoc.c applies the same rule to a stream's timestamp column.
function M.iso_timestamp(v)
  if type(v) ~= "string" then return v end
  local s = v:gsub("^(%d%d%d%d%-%d%d%-%d%d) (%d)", "%1T%2")
  if s:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%.%d]*$") then return s .. "Z" end
  if s:match("^%d%d%d%d%-%d%d%-%d%d$") then return s .. "T00:00:00Z" end
  return s
end

local function as_list(v)
  if type(v) == "string" then return { v } end
  return v
end

-- Positions of the named columns in a result; -> { idx } | nil, missing name.
local function column_positions(columns, names)
  local pos = {}
  for i, c in ipairs(columns) do pos[c.name] = i end
  local out = {}
  for i, n in ipairs(names) do
    if not pos[n] then return nil, n end
    out[i] = pos[n]
  end
  return out
end

--- Streams one statement's rows as documents.
-- spec: { sql, params, namespace, name, kind = "table"|"query",
--   id_columns, timestamp_column, on_row = function(key, ts) }: on_row is
--   called after each batch with its last row's key values (key[1..key.n])
--   and raw timestamp value
-- @return true when every row was read, false after ctx.incomplete
function M.stream(ctx, conn, spec)
  local cfg = ctx.config
  -- prefetch: the server reads the next batch while this one is indexed
  -- (the connection runs nothing else until the cursor is closed; a driver
  -- without the option ignores it)
  local cur, err = conn:cursor(spec.sql, spec.params,
    { fetch_size = cfg.fetch_size or M.DEFAULT_FETCH_SIZE, prefetch = true })
  if not cur then
    ctx.incomplete(spec.kind .. " " .. spec.name .. ": " .. tostring(err))
    return false
  end
  local columns = cur:columns()
  local id_pos, missing = column_positions(columns, spec.id_columns)
  local ts_pos
  if id_pos and spec.timestamp_column then
    local p, m = column_positions(columns, { spec.timestamp_column })
    if not p then missing = m else ts_pos = p[1] end
  end
  if missing then
    cur:close()
    ctx.incomplete(spec.kind .. " " .. spec.name .. ": no column named '" .. missing .. "'")
    return false
  end
  local fields = {}
  for i, c in ipairs(columns) do
    fields[i] = RESERVED[c.name] and ("column_" .. c.name) or c.name
    if c.unknown then
      ctx.log.warn("column of an unknown type: indexed as text",
        { [spec.kind] = spec.name, column = c.name, type = c.type })
    end
  end
  -- The driver builds each row's document in C (runtime/db/rowdoc.c):
  -- { _id = prefix .. key parts, [kind] = name, field = value ...,
  -- _timestamp = iso_timestamp(timestamp column) }, NULLs left out.
  local on_row, yield = spec.on_row, ctx.yield
  local last = on_row and { n = #id_pos } or nil
  local json_ids = {}
  for i, p in ipairs(id_pos) do json_ids[i] = M.JSON_TYPES[columns[p].type] == true end
  cur:shape({ fields = fields, ids = id_pos, json_ids = json_ids, ts = ts_pos, kind = spec.kind, name = spec.name,
    prefix = escape_part(spec.namespace) .. "|" .. escape_part(spec.name) .. "|",
    last = last })
  local ok, perr = pcall(function()
    while true do
      local docs, ferr = cur:fetch()
      if not docs then
        ctx.incomplete(spec.kind .. " " .. spec.name .. ": " .. tostring(ferr))
        return false
      end
      local n = #docs
      if n == 0 then return true end
      for r = 1, n do yield(docs[r]) end
      -- `last` holds the batch's last row's key values and raw timestamp
      if on_row then on_row(last, last.ts) end
    end
  end)
  cur:close()
  if not ok then error(perr, 0) end
  return perr
end

-- The tables to sync: every table for "*", else the configured ones.
local function tables_to_sync(ctx, d, conn)
  local wanted = ctx.config.tables or { "*" }
  for _, t in ipairs(wanted) do
    if t == "*" then
      local all, err = d.list_tables(conn, ctx.config)
      if not all then error("cannot list tables: " .. tostring(err), 0) end
      return all
    end
  end
  return wanted
end

-- A table's id columns: configured, else its primary key; nil when none.
local function id_columns_for(ctx, d, conn, tname)
  local configured = ctx.config.id_columns and ctx.config.id_columns[tname]
  if configured then return as_list(configured) end
  local pk, err = d.primary_key(conn, ctx.config, tname)
  if not pk then return nil, err end
  if #pk == 0 then return nil end
  return pk
end

local function table_ref(d, cfg, tname)
  local ns = d.namespace(cfg)
  return d.quote(ns) .. "." .. d.quote(tname)
end

local function skip_table(ctx, d, conn, tname)
  local r = conn:query("SELECT COUNT(*) FROM " .. table_ref(d, ctx.config, tname))
  local n = r and r.rows[1] and tonumber(r.rows[1][1]) or "unknown"
  ctx.log.warn("table has no primary key and no id_columns configured: its rows are skipped",
    { table = tname, rows_skipped = n })
end

local function open(ctx, d)
  local conn, err = M.connect(d, ctx.config)
  if not conn then error("cannot connect to " .. tostring(ctx.config.host) .. ": " .. tostring(err), 0) end
  return conn
end

--- Full listing: every configured table, then every custom query.
function M.docs(ctx, d)
  local cfg = ctx.config
  local conn = open(ctx, d)
  local ok, err = pcall(function()
    local ns = d.namespace(cfg)
    local has_tables = cfg.tables ~= nil or #(cfg.queries or {}) == 0
    for _, tname in ipairs(has_tables and tables_to_sync(ctx, d, conn) or {}) do
      local ids, ierr = id_columns_for(ctx, d, conn, tname)
      if ierr then
        ctx.incomplete("table " .. tname .. ": " .. tostring(ierr))
      elseif not ids then
        skip_table(ctx, d, conn, tname)
      else
        M.stream(ctx, conn, { sql = "SELECT * FROM " .. table_ref(d, cfg, tname),
          namespace = ns, name = tname, kind = "table", id_columns = ids,
          timestamp_column = cfg.timestamp_columns and cfg.timestamp_columns[tname] })
      end
    end
    for _, q in ipairs(cfg.queries or {}) do
      M.stream(ctx, conn, { sql = q.query, namespace = "", name = q.name, kind = "query",
        id_columns = as_list(q.id_columns), timestamp_column = q.timestamp_column })
    end
  end)
  conn:close()
  if not ok then error(err, 0) end
end

-- Wraps a statement so that it returns only rows after the cursor position,
-- in (timestamp, key) order: rows sharing a timestamp are told apart by
-- their key, so none is skipped or read twice.
local function incremental_sql(d, base, ts_col, ids, pos)
  local cols = { d.quote(ts_col) }
  for _, c in ipairs(ids) do cols[#cols + 1] = d.quote(c) end
  local col_list = table.concat(cols, ", ")
  local sql = "SELECT * FROM (" .. base .. ") sluice_inc WHERE " .. d.quote(ts_col) .. " IS NOT NULL"
  local params = { n = 0 }
  if pos then
    local ph = {}
    local vals = { pos.ts }
    for _, v in ipairs(pos.key) do vals[#vals + 1] = v end
    for i, v in ipairs(vals) do ph[i] = d.placeholder(i); params[i] = v end
    params.n = #vals
    sql = sql .. " AND (" .. col_list .. ") > (" .. table.concat(ph, ", ") .. ")"
  end
  return sql .. " ORDER BY " .. col_list, params
end

--- Incremental listing: only rows changed after `cursor`, for tables and
-- queries with an updated-at column (rows with a NULL timestamp and
-- deletions are caught by full syncs).
-- @param cursor what the previous call returned (nil: from the start)
-- @return the new cursor { tables = {name = {ts=, key={}}}, queries = {...} }
function M.docs_incremental(ctx, d, cursor)
  local cfg = ctx.config
  cursor = cursor or {}
  local out = { tables = {}, queries = {} }
  for k, v in pairs(cursor.tables or {}) do out.tables[k] = v end
  for k, v in pairs(cursor.queries or {}) do out.queries[k] = v end
  local conn = open(ctx, d)
  local ok, err = pcall(function()
    local ns = d.namespace(cfg)
    local function run(kind, name, base, ids, ts_col, store)
      local sql, params = incremental_sql(d, base, ts_col, ids, store[name])
      local last
      local complete = M.stream(ctx, conn, { sql = sql, params = params, namespace = kind == "table" and ns or "",
        name = name, kind = kind, id_columns = ids, timestamp_column = ts_col,
        on_row = function(key, ts)
          last = { ts = ts, key = { unpack(key, 1, key.n) } }
        end })
      -- Rows read before a failure are indexed: the cursor may move up to
      -- them, never past what was read.
      if last then store[name] = last end
      return complete
    end
    -- The tables the full sync covers, no others: a table listed only in
    -- timestamp_columns would be indexed here and deleted by the next full
    -- sync.
    local ts_cols = cfg.timestamp_columns or {}
    local has_tables = cfg.tables ~= nil or #(cfg.queries or {}) == 0
    local synced = {}
    for _, tname in ipairs(has_tables and tables_to_sync(ctx, d, conn) or {}) do
      synced[tname] = true
      local ts_col = ts_cols[tname]
      if not ts_col then
        ctx.log.warn("table has no timestamp_columns entry: its changes reach the index only through full syncs",
          { table = tname })
      else
        local ids, ierr = id_columns_for(ctx, d, conn, tname)
        if ierr then ctx.incomplete("table " .. tname .. ": " .. tostring(ierr))
        elseif not ids then skip_table(ctx, d, conn, tname)
        else run("table", tname, "SELECT * FROM " .. table_ref(d, cfg, tname), ids, ts_col, out.tables) end
      end
    end
    for tname in pairs(ts_cols) do
      if not synced[tname] then
        ctx.log.warn("timestamp_columns names a table that is not synced: ignored", { table = tname })
      end
    end
    for _, q in ipairs(cfg.queries or {}) do
      if q.timestamp_column then
        run("query", q.name, q.query, as_list(q.id_columns), q.timestamp_column, out.queries)
      end
    end
  end)
  conn:close()
  if not ok then error(err, 0) end
  return out
end

--- Can we connect and run a statement?
function M.ping(ctx, d)
  local conn, err = M.connect(d, ctx.config)
  if not conn then return nil, err end
  local r, qerr = conn:query("SELECT 1")
  conn:close()
  if not r then return nil, qerr end
  return true
end

return M
