--- Logging: levels, human text on a terminal, JSON lines otherwise, and
-- secrets redacted from every message and field.
--
-- Redaction is by value: the config loader registers every value a schema
-- marks sensitive, so a password is hidden wherever it ends up (an error
-- message quoting a URL, a field), plus user:password in any URL.
-- @module sluice.log
local sys = require("sluice.sys")
local cjson = require("cjson")

local M = {}

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40, off = 100 }
local env = sys.environ()
local threshold = LEVELS[env.SLUICE_LOG_LEVEL or "info"] or LEVELS.info
local format = env.SLUICE_LOG_FORMAT or (sys.isatty(2) and "text" or "json")
local secrets = {}
-- On a terminal a line first erases the sync's progress line (written with
-- "\r" and no newline), which it would otherwise be glued to.
local erase = sys.isatty(2) and "\r\27[K" or ""
local function default_sink(line) sys.write(2, erase .. line) end
local sink = default_sink

--- Sets the lowest level written ("debug", "info", "warn", "error", "off").
function M.set_level(name)
  local v = LEVELS[name]
  if not v then return nil, "unknown log level '" .. tostring(name) .. "'" end
  threshold = v
  return true
end

--- "text" or "json".
function M.set_format(f) format = f end

--- Redirects output (tests capture lines with this).
function M.set_sink(fn) sink = fn or default_sink end

--- Registers a secret value: it never appears in a log line. A list (a
-- sensitive field of type list) registers each item. Values under 3 bytes
-- are not registered: replacing every "ab" in every line would make logs
-- unreadable and would itself tell the secret.
function M.add_secret(value)
  if type(value) == "table" then
    for _, v in ipairs(value) do M.add_secret(v) end
  elseif type(value) == "number" then
    M.add_secret(tostring(value))
  elseif type(value) == "string" and #value >= 3 then
    secrets[value] = true
  end
end

local function plain_gsub(s, find, repl)
  local out, i = {}, 1
  while true do
    local a, b = s:find(find, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = repl
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

--- Returns s with secrets and URL passwords replaced by [REDACTED].
function M.redact(s)
  if type(s) ~= "string" then return s end
  -- The password runs to the last "@" of the authority: a raw "@" inside it
  -- (a common mistake in hand-written URLs) must not leak what follows.
  s = s:gsub("(%a[%w+.-]*://)([^/@%s:]*):([^/%s]*)@", "%1%2:[REDACTED]@")
  for secret in pairs(secrets) do
    if s:find(secret, 1, true) then s = plain_gsub(s, secret, "[REDACTED]") end
  end
  return s
end

local function redact_value(v, depth)
  if type(v) == "string" then return M.redact(v) end
  if type(v) == "table" and depth < 5 then
    local out = {}
    for k, x in pairs(v) do out[k] = redact_value(x, depth + 1) end
    return out
  end
  if type(v) == "function" or type(v) == "userdata" then return tostring(v) end
  return v
end

local function iso_now()
  local t = sys.time()
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) ..
      string.format(".%03dZ", math.floor((t % 1) * 1000))
end

local function emit(level, msg, fields)
  if LEVELS[level] < threshold then return end
  msg = M.redact(tostring(msg))
  if format == "json" then
    local rec = { ["@timestamp"] = iso_now(), level = level, message = msg }
    if fields then
      for k, v in pairs(fields) do
        if rec[k] == nil then rec[k] = redact_value(v, 0) end
      end
    end
    local ok, line = pcall(cjson.encode, rec)
    if not ok then line = cjson.encode({ level = level, message = msg }) end
    sink(line .. "\n")
  else
    local parts = { string.format("%-5s %s", level:upper(), msg) }
    if fields then
      local keys = {}
      for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local v = redact_value(fields[k], 0)
        if type(v) == "table" then v = cjson.encode(v) end
        parts[#parts + 1] = k .. "=" .. tostring(v)
      end
    end
    sink(table.concat(parts, " ") .. "\n")
  end
end

function M.debug(msg, fields) emit("debug", msg, fields) end
function M.info(msg, fields) emit("info", msg, fields) end
function M.warn(msg, fields) emit("warn", msg, fields) end
function M.error(msg, fields) emit("error", msg, fields) end

--- A logger that adds the same fields to every line (e.g. the connector id).
function M.with(base)
  local l = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    l[level] = function(msg, fields)
      local f = {}
      for k, v in pairs(base) do f[k] = v end
      if fields then for k, v in pairs(fields) do f[k] = v end end
      emit(level, msg, f)
    end
  end
  return l
end

return M
