--- Loads and validates sluice.yml.
--
-- Every problem is reported as `FILE:LINE:COL: key.path: message`, all of
-- them at once, before anything touches an index. `${NAME}` and
-- `${NAME:-default}` in string values are replaced from the environment after
-- parsing, so a secret can never change the document's structure.
-- @module sluice.config
local yaml = require("sluice.yaml")
local sys = require("sluice.sys")
local fs = require("sluice.fs")
local schema = require("sluice.schema")
local registry = require("sluice.registry")
local log = require("sluice.log")

local M = {}

local TOP = {
  data_dir = { type = "str", default = "./.sluice",
    description = "where the state database and the embedded index live (relative to this file)" },
  log_level = { type = "str", options = { "debug", "info", "warn", "error" } },
  connectors = { type = "any", required = true },
  elasticsearch = { type = "map",
    description = "Elasticsearch/OpenSearch output (replaces the embedded index; keys: sluice.es.config)" },
}

local CONNECTOR = {
  id = { type = "str", required = true, order = 1,
    validations = { { type = "regex", constraint = "^[%w_-]+$" } } },
  service_type = { type = "str", required = true, order = 2 },
  index_name = { type = "str", order = 3,
    validations = { { type = "regex", constraint = "^[%w_.-]+$" } } },
  name = { type = "str" },
  description = { type = "str" },
  configuration = { type = "map", default = {} },
}

M.TOP, M.CONNECTOR = TOP, CONNECTOR

local Errors = {}
Errors.__index = Errors

local function new_errors(file, positions)
  return setmetatable({ file = file, positions = positions or {}, list = {} }, Errors)
end

-- Position of a key path, or of its nearest ancestor that has one.
function Errors:where(path)
  local p = path
  while p do
    local pos = self.positions[p]
    if pos then return pos.line, pos.column end
    if p == "" then break end
    p = p:match("^(.*)[%.%[][^%.%[]*$") or ""
  end
  return nil
end

function Errors:add(path, message)
  local line, col = self:where(path)
  local loc = self.file .. (line and (":" .. line .. ":" .. col) or "")
  self.list[#self.list + 1] = loc .. ": " .. (path ~= "" and (path .. ": ") or "") .. message
end

function Errors:failed() return #self.list > 0 end
function Errors:message() return table.concat(self.list, "\n") end

local function join(prefix, key)
  if prefix == "" then return key end
  return prefix .. "." .. key
end

-- Replaces ${NAME} / ${NAME:-default} in every string, recording misses.
local function substitute(v, path, env, errors)
  if type(v) == "string" then
    if not v:find("${", 1, true) then return v end
    return (v:gsub("%${([%w_]*)(:?%-?)([^}]*)}", function(name, dash, default)
      if name == "" then errors:add(path, "empty ${} reference"); return "" end
      local val = env[name]
      if (val == nil or (val == "" and dash == ":-")) then
        if dash == ":-" or dash == "-" then return default end
        errors:add(path, "environment variable " .. name .. " is not set")
        return ""
      end
      return val
    end))
  elseif type(v) == "table" then
    local is_seq = #v > 0
    for k, x in pairs(v) do
      local p = is_seq and (path .. "[" .. k .. "]") or join(path, tostring(k))
      v[k] = substitute(x, p, env, errors)
    end
  end
  return v
end

local function add_schema_errors(errors, prefix, errs)
  for _, e in ipairs(errs) do
    errors:add(e.path == "" and prefix or join(prefix, e.path), e.message)
  end
end

--- Parses a YAML text as a configuration.
-- @param text the YAML
-- @param file its name (for messages) and the base of relative paths
-- @return cfg | nil, err
function M.parse(text, file)
  local doc, positions = yaml.decode(text)
  if doc == nil then
    local line, col, rest = tostring(positions):match("^line (%d+), column (%d+): (.*)$")
    if line then return nil, file .. ":" .. line .. ":" .. col .. ": " .. rest end
    return nil, file .. ": " .. tostring(positions)
  end
  local errors = new_errors(file, positions)
  if type(doc) ~= "table" then
    errors:add("", "expected a mapping at the top of the file")
    return nil, errors:message()
  end
  substitute(doc, "", sys.environ(), errors)

  if #doc > 0 then
    errors:add("", "expected a mapping at the top of the file, got a list")
    return nil, errors:message()
  end
  local top, errs, partial = schema.validate(TOP, doc)
  if not top then
    add_schema_errors(errors, "", errs)
    top = partial or {}
  end
  -- Absolute, so relative paths in the file resolve the same from any
  -- working directory.
  local dir = file:match("^(.*)/[^/]*$") or "."
  dir = sys.realpath(dir) or dir
  local cfg = {
    file = file, dir = dir, positions = positions,
    log_level = top.log_level, connectors = {},
  }
  if top.elasticsearch ~= nil then
    -- Validated by its own schema (sluice.es.config), nested keys included.
    local esconf = require("sluice.es.config")
    local es, eerrs = esconf.validate(top.elasticsearch)
    if es then
      if es.ca_certs and es.ca_certs:sub(1, 1) ~= "/" then es.ca_certs = dir .. "/" .. es.ca_certs end
      for _, s in ipairs(esconf.secrets(es)) do log.add_secret(s) end
      cfg.elasticsearch = es
    else
      add_schema_errors(errors, "elasticsearch", eerrs)
    end
  end
  local data_dir = top.data_dir or "./.sluice"
  if data_dir == "" then
    -- e.g. ${DATA_DIR:-} unset: not the configuration's own folder
    errors:add("data_dir", "must not be empty")
  end
  if data_dir:sub(1, 1) ~= "/" then
    data_dir = dir .. "/" .. data_dir:gsub("^%./", "")
  end
  cfg.data_dir = data_dir

  if type(top.connectors) ~= "table" or #top.connectors == 0 then
    if top.connectors ~= nil or not errors:failed() then
      errors:add("connectors", "expected a non-empty list of connectors")
    end
    return nil, errors:message()
  end
  local seen = {}
  for i, raw in ipairs(top.connectors) do
    local path = "connectors[" .. i .. "]"
    local c, cerrs, cpartial = schema.validate(CONNECTOR, raw)
    if not c then
      add_schema_errors(errors, path, cerrs)
      -- Go on with what validated, so the connector's own settings are
      -- checked in the same run (all errors at once).
      if cpartial and cpartial.id and cpartial.service_type then c = cpartial end
    end
    if c then
      if seen[c.id] then
        errors:add(path .. ".id", "duplicate connector id '" .. c.id .. "'")
      end
      seen[c.id] = true
      c.index_name = c.index_name or ("search-" .. c.id)
      -- the limit of Elasticsearch and of the embedded index alike
      if #c.index_name > 255 then
        errors:add(path .. (raw.index_name and ".index_name" or ".id"),
          "index name is " .. #c.index_name .. " bytes long, at most 255 allowed")
      end
      c.path = path
      local def, lerr = registry.load(c.service_type)
      if not def then
        errors:add(path .. ".service_type", lerr)
      else
        local conf, ferrs = schema.validate(def.configuration, c.configuration)
        if not conf then
          add_schema_errors(errors, path .. ".configuration", ferrs)
        else
          c.configuration = conf
          c.definition = def
          for _, s in ipairs(schema.secrets(def.configuration, conf)) do log.add_secret(s) end
          if def.validate then
            local ok, verrs = pcall(def.validate, { config = conf, log = log, dir = dir })
            if not ok then
              errors:add(path .. ".configuration", "validation failed: " .. tostring(verrs))
            elseif verrs then
              add_schema_errors(errors, path .. ".configuration", verrs)
            end
          end
        end
      end
      cfg.connectors[#cfg.connectors + 1] = c
    end
  end
  if errors:failed() then return nil, errors:message() end
  return cfg
end

--- Reads and parses a configuration file.
-- @return cfg | nil, err
function M.load(file)
  local f, err = io.open(file, "rb")
  if not f then return nil, "cannot read configuration: " .. tostring(err) end
  local text, rerr = f:read("*a")
  f:close()
  if not text then return nil, file .. ": " .. tostring(rerr) end
  return M.parse(text, file)
end

--- The connector entry with this id, or nil, err.
function M.connector(cfg, id)
  for _, c in ipairs(cfg.connectors) do
    if c.id == id then return c end
  end
  local ids = {}
  for _, c in ipairs(cfg.connectors) do ids[#ids + 1] = c.id end
  return nil, "no connector with id '" .. tostring(id) .. "' in " .. cfg.file ..
      " (ids: " .. table.concat(ids, ", ") .. ")"
end

M._fs = fs
return M
