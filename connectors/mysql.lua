-- MySQL and MariaDB (Elastic's `mysql` connector): each row of the
-- configured tables of one database is a document, and so is each row of the
-- custom queries (advanced rules). The shared logic is sluice.sql; this file
-- says only how MySQL names things and where its catalog keeps them. The
-- database plays the part of PostgreSQL's schema (ids start with its name).
local sluice = require("sluice")
local sql = require("sluice.sql")
local mysql = require("sluice.mysql")

local dialect = {
  driver = mysql,
  default_port = 3306,
  quote = mysql.escape_identifier,
  placeholder = function() return "?" end,
  namespace = function(cfg) return cfg.database end,
}

function dialect.list_tables(conn, cfg)
  local r, err = conn:query("SELECT table_name FROM information_schema.tables "
    .. "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name", cfg.database)
  if not r then return nil, err end
  local out = {}
  for i, row in ipairs(r.rows) do out[i] = row[1] end
  return out
end

function dialect.primary_key(conn, cfg, tname)
  local r, err = conn:query("SELECT column_name FROM information_schema.key_column_usage "
    .. "WHERE table_schema = ? AND table_name = ? AND constraint_name = 'PRIMARY' "
    .. "ORDER BY ordinal_position", cfg.database, tname)
  if not r then return nil, err end
  local out = {}
  for i, row in ipairs(r.rows) do out[i] = row[1] end
  return out
end

return sluice.connector {
  name = "mysql",
  title = "MySQL / MariaDB",
  description = "Indexes the rows of MySQL or MariaDB tables (or of custom queries): one document per row, streamed unbuffered.",
  configuration = sql.configuration(dialect),
  validate = function(ctx) return sql.validate(ctx.config) end,
  ping = function(ctx) return sql.ping(ctx, dialect) end,
  docs = function(ctx) return sql.docs(ctx, dialect) end,
  docs_incremental = function(ctx, cursor) return sql.docs_incremental(ctx, dialect, cursor) end,
}
