--- Strict globals: reading or creating an undeclared global is an error.
-- A typo in a connector (`cfg.pathh`, a missing `local`) should fail loudly at
-- the line that made it, not become a nil that deletes half an index.
-- @module sluice.strict
local M = {}

local function guard(t, what)
  setmetatable(t, {
    __index = function(_, k)
      error(string.format("%s: undefined global '%s'", what, tostring(k)), 2)
    end,
    __newindex = function(_, k)
      error(string.format("%s: assignment to undeclared global '%s' (use local)",
        what, tostring(k)), 2)
    end,
  })
  return t
end

--- Makes _G strict. Globals that exist stay readable.
function M.enable()
  if getmetatable(_G) == nil then guard(_G, "strict") end
end

--- A fresh strict environment for a connector script: reads fall back to _G,
-- writes go nowhere but raise.
-- @param name shown in errors (the script's file name)
function M.env(name)
  local env = {}
  setmetatable(env, {
    __index = function(_, k)
      local v = rawget(_G, k)
      if v == nil then
        error(string.format("%s: undefined global '%s'", name, tostring(k)), 2)
      end
      return v
    end,
    __newindex = function(_, k)
      error(string.format("%s: assignment to undeclared global '%s' (use local)",
        name, tostring(k)), 2)
    end,
  })
  return env
end

return M
