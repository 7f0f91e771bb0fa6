--- Declarative configuration schemas, in the field model of Elastic's
-- connector configuration (type, label, default, required, sensitive,
-- options, depends_on, validations), so one table drives validation,
-- defaults, `sluice connectors --describe` and the docs.
--
-- A schema is a map key -> field:
--   type        "str" | "int" | "float" | "bool" | "list" (of strings) | "map" | "any"
--   label, description, order (display order), default
--   required    a missing or empty value is an error (unless depends_on is unmet)
--   sensitive   the value is a secret: redacted in logs and --describe
--   options     allowed values
--   depends_on  { {field = "other", value = x}, ... }: the field applies only
--               when every condition holds
--   validations { {type = "greater_than"|"less_than"|"regex"|"included_in"|
--               "list_type", constraint = ...}, ... }
-- @module sluice.schema
local M = {}

local TYPES = { str = true, int = true, float = true, bool = true, list = true,
  map = true, any = true }
local FIELD_KEYS = { type = true, label = true, description = true, order = true,
  default = true, required = true, sensitive = true, options = true,
  depends_on = true, validations = true, display = true, tooltip = true }

--- Checks a schema definition itself (a connector author's mistake is an
-- error at load time, not a surprise during a sync).
-- @return true | nil, err
function M.check_definition(schema, where)
  if type(schema) ~= "table" then
    return nil, where .. ": configuration schema must be a table"
  end
  for key, f in pairs(schema) do
    local at = where .. ": configuration." .. tostring(key)
    if type(key) ~= "string" then return nil, at .. ": keys must be strings" end
    if type(f) ~= "table" then return nil, at .. ": field must be a table" end
    if not TYPES[f.type] then
      return nil, at .. ": unknown type '" .. tostring(f.type) .. "'"
    end
    for k in pairs(f) do
      if not FIELD_KEYS[k] then return nil, at .. ": unknown field attribute '" .. tostring(k) .. "'" end
    end
    for _, d in ipairs(f.depends_on or {}) do
      if schema[d.field] == nil then
        return nil, at .. ": depends_on names unknown field '" .. tostring(d.field) .. "'"
      end
    end
  end
  return true
end

--- The schema's keys in display order.
function M.ordered_keys(schema)
  local keys = {}
  for k in pairs(schema) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local oa, ob = schema[a].order or math.huge, schema[b].order or math.huge
    if oa ~= ob then return oa < ob end
    return a < b
  end)
  return keys
end

local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function typename(v)
  if type(v) == "table" then return is_array(v) and next(v) and "list" or "map" end
  if type(v) == "userdata" then return "null" end
  return type(v)
end

-- Coerces v to the field's type; returns value | nil, message.
local function coerce(f, v)
  local t = f.type
  if t == "any" then return v end
  if t == "str" then
    if type(v) == "string" then return v end
    if type(v) == "number" then return tostring(v) end
    return nil, "expected a string, got " .. typename(v)
  elseif t == "int" then
    local n = type(v) == "number" and v or (type(v) == "string" and tonumber(v))
    if not n or n ~= math.floor(n) or n ~= n or n == math.huge or n == -math.huge then
      return nil, "expected an integer, got " .. (type(v) == "string" and ("'" .. v .. "'") or typename(v))
    end
    return n
  elseif t == "float" then
    local n = type(v) == "number" and v or (type(v) == "string" and tonumber(v))
    if not n then return nil, "expected a number, got " .. typename(v) end
    return n
  elseif t == "bool" then
    if type(v) == "boolean" then return v end
    if v == "true" then return true elseif v == "false" then return false end
    return nil, "expected true or false, got " .. typename(v)
  elseif t == "list" then
    -- Elastic's list fields are comma-separated strings; a YAML sequence is
    -- the natural form here. Accept both.
    if type(v) == "string" then
      local out = {}
      for item in v:gmatch("[^,]+") do
        item = item:match("^%s*(.-)%s*$")
        if item ~= "" then out[#out + 1] = item end
      end
      return out
    end
    if type(v) == "table" and is_array(v) then
      local out = {}
      for i, item in ipairs(v) do
        if type(item) == "number" then item = tostring(item) end
        if type(item) ~= "string" then
          return nil, "item " .. i .. ": expected a string, got " .. typename(item)
        end
        out[i] = item
      end
      return out
    end
    return nil, "expected a list, got " .. typename(v)
  elseif t == "map" then
    if type(v) == "table" and (not is_array(v) or next(v) == nil) then return v end
    return nil, "expected a mapping, got " .. typename(v)
  end
  return v
end

local function validate_value(f, v)
  if f.options then
    local ok = false
    for _, o in ipairs(f.options) do
      if (type(o) == "table" and o.value or o) == v then ok = true end
    end
    if not ok then
      local names = {}
      for _, o in ipairs(f.options) do names[#names + 1] = tostring(type(o) == "table" and o.value or o) end
      return "must be one of: " .. table.concat(names, ", ")
    end
  end
  for _, rule in ipairs(f.validations or {}) do
    local c = rule.constraint
    if rule.type == "greater_than" and not (v > c) then
      return "must be greater than " .. tostring(c)
    elseif rule.type == "less_than" and not (v < c) then
      return "must be less than " .. tostring(c)
    elseif rule.type == "regex" then
      local items = type(v) == "table" and v or { v }
      for _, item in ipairs(items) do
        if not tostring(item):find(c) then
          return "'" .. tostring(item) .. "' does not match " .. c
        end
      end
    elseif rule.type == "included_in" then
      local set = {}
      for _, x in ipairs(c) do set[x] = true end
      for _, item in ipairs(type(v) == "table" and v or { v }) do
        if not set[item] then return "'" .. tostring(item) .. "' is not allowed" end
      end
    elseif rule.type == "list_type" then
      for i, item in ipairs(v) do
        if c == "int" and not tonumber(item) then
          return "item " .. i .. " must be an integer"
        end
      end
    end
  end
end

local function empty(v)
  return v == nil or v == "" or (type(v) == "table" and next(v) == nil)
      or type(v) == "userdata" -- YAML/JSON null
end

--- Validates a configuration table against a schema.
-- Unknown keys, wrong types and missing required values are errors; defaults
-- fill what is missing.
-- @return the validated config (a new table), or nil, a list of errors
--   { {path = "key", message = "..."}, ... } in key order, and what could be
--   validated (so a caller can go on and report later errors too)
function M.validate(schema, input)
  local errors, out = {}, {}
  input = input or {}
  if type(input) ~= "table" or (is_array(input) and next(input) ~= nil) then
    return nil, { { path = "", message = "expected a mapping, got " .. typename(input) } }
  end
  local unknown = {}
  for k in pairs(input) do
    if schema[k] == nil then unknown[#unknown + 1] = tostring(k) end
  end
  table.sort(unknown)
  for _, k in ipairs(unknown) do
    local known = M.ordered_keys(schema)
    errors[#errors + 1] = { path = k, message = "unknown key (known keys: " .. table.concat(known, ", ") .. ")" }
  end
  -- Pass 1: coerce and default; pass 2: depends_on and required, which may
  -- look at other fields' final values.
  for _, k in ipairs(M.ordered_keys(schema)) do
    local f, v = schema[k], input[k]
    if type(v) == "userdata" then v = nil end
    if v ~= nil then
      local cv, err = coerce(f, v)
      if err then
        errors[#errors + 1] = { path = k, message = err }
      else
        out[k] = cv
      end
    elseif f.default ~= nil then
      local d = f.default
      if type(d) == "table" then
        local copy = {}
        for i, x in pairs(d) do copy[i] = x end
        d = copy
      end
      out[k] = d
    end
  end
  for _, k in ipairs(M.ordered_keys(schema)) do
    local f = schema[k]
    local applies = true
    for _, d in ipairs(f.depends_on or {}) do
      if out[d.field] ~= d.value then applies = false end
    end
    if applies then
      if f.required and empty(out[k]) and not errors[k] then
        local had_error = false
        for _, e in ipairs(errors) do if e.path == k then had_error = true end end
        if not had_error then
          errors[#errors + 1] = { path = k, message = "required value missing" }
        end
      elseif out[k] ~= nil then
        local err = validate_value(f, out[k])
        if err then errors[#errors + 1] = { path = k, message = err } end
      end
    end
  end
  if #errors > 0 then return nil, errors, out end
  return out
end

--- Values of sensitive fields (for log redaction).
function M.secrets(schema, config)
  local out = {}
  for k, f in pairs(schema) do
    local v = config[k]
    if f.sensitive and v ~= nil and type(v) ~= "boolean" then out[#out + 1] = v end
  end
  return out
end

return M
