-- PostgreSQL (Elastic's `postgresql` connector): each row of the configured
-- tables of one schema is a document, and so is each row of the custom
-- queries (advanced rules). The shared logic is sluice.sql; this file says
-- only how PostgreSQL names things and where its catalog keeps them.
local sluice = require("sluice")
local sql = require("sluice.sql")
local pg = require("sluice.pg")

local dialect = {
  driver = pg,
  default_port = 5432,
  quote = pg.escape_identifier,
  placeholder = function(i) return "$" .. i end,
  namespace = function(cfg) return cfg.schema end,
}

function dialect.list_tables(conn, cfg)
  local r, err = conn:query("SELECT table_name FROM information_schema.tables "
    .. "WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name", cfg.schema)
  if not r then return nil, err end
  local out = {}
  for i, row in ipairs(r.rows) do out[i] = row[1] end
  return out
end

-- The primary key's columns in key order (pg_index, not
-- information_schema, which hides tables the user may read but not own).
function dialect.primary_key(conn, cfg, tname)
  local r, err = conn:query("SELECT a.attname FROM pg_index i "
    .. "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    .. "WHERE i.indrelid = $1::regclass AND i.indisprimary "
    .. "ORDER BY array_position(i.indkey, a.attnum)",
    pg.escape_identifier(cfg.schema) .. "." .. pg.escape_identifier(tname))
  if not r then return nil, err end
  local out = {}
  for i, row in ipairs(r.rows) do out[i] = row[1] end
  return out
end

return sluice.connector {
  name = "postgresql",
  title = "PostgreSQL",
  description = "Indexes the rows of PostgreSQL tables (or of custom queries): one document per row, streamed through a server-side cursor.",
  configuration = sql.configuration(dialect, {
    schema = { type = "str", label = "Schema", default = "public", order = 7 },
  }),
  validate = function(ctx) return sql.validate(ctx.config) end,
  ping = function(ctx) return sql.ping(ctx, dialect) end,
  docs = function(ctx) return sql.docs(ctx, dialect) end,
  docs_incremental = function(ctx, cursor) return sql.docs_incremental(ctx, dialect, cursor) end,
}
