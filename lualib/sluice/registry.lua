--- Finds and loads connector scripts.
--
-- A script is loaded afresh on every call, into its own strict environment:
-- a sync keeps the version it started with while a changed file is picked up
-- by the next one (hot reload needs no cache to invalidate).
-- @module sluice.registry
local sys = require("sluice.sys")
local fs = require("sluice.fs")
local strict = require("sluice.strict")

local M = {}

-- Elastic's names that map onto ours.
M.aliases = { dir = "filesystem" }

--- Folders searched for connectors/<name>.lua: SLUICE_CONNECTORS_PATH
-- (colon-separated) first, then the runtime's own connectors/.
function M.dirs()
  local dirs = {}
  local extra = sys.environ().SLUICE_CONNECTORS_PATH
  if extra then
    for d in extra:gmatch("[^:]+") do dirs[#dirs + 1] = d end
  end
  dirs[#dirs + 1] = sys.home() .. "/connectors"
  return dirs
end

--- The script path for a service_type, or nil, err.
function M.find(service_type)
  if type(service_type) ~= "string" or not service_type:match("^[%w_]+$") then
    return nil, "invalid service_type '" .. tostring(service_type) .. "'"
  end
  local name = M.aliases[service_type] or service_type
  for _, d in ipairs(M.dirs()) do
    local p = d .. "/" .. name .. ".lua"
    if fs.exists(p) then return p, name end
  end
  return nil, "unknown service_type '" .. service_type .. "' (available: " ..
      table.concat(M.list(), ", ") .. ")"
end

--- Sorted names of every available connector.
function M.list()
  local seen, out = {}, {}
  for _, d in ipairs(M.dirs()) do
    local it = fs.dir(d)
    if it then
      for name in it do
        local n = name:match("^([%w_]+)%.lua$")
        if n and not seen[n] then seen[n] = true; out[#out + 1] = n end
      end
    end
  end
  table.sort(out)
  return out
end

--- Loads a connector afresh.
-- @return the connector definition | nil, err
function M.load(service_type)
  local path, name = M.find(service_type)
  if not path then return nil, name end
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  setfenv(chunk, strict.env(path))
  local ok, def = xpcall(chunk, debug.traceback)
  if not ok then return nil, "cannot load " .. path .. ": " .. tostring(def) end
  if type(def) ~= "table" or not def.__connector then
    return nil, path .. ": must return sluice.connector{...}"
  end
  if def.name ~= name then
    return nil, path .. ": name '" .. def.name .. "' does not match the file name"
  end
  def.path = path
  return def
end

return M
