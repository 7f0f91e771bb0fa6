-- Runs busted inside the sluice binary, so specs exercise the real C
-- primitives and the task scheduler (as Neovim runs its specs inside nvim).
-- Usage: build/sluice lua spec/busted.lua [busted options] [paths]
local ok, err = pcall(require("busted.runner"), { standalone = false })
if not ok then
  -- Under Lua 5.1 semantics busted reports failures by raising nil.
  if err == nil then return 1 end
  error(err, 0)
end
return 0
