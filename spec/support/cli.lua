--- Runs the sluice binary as a user would, for end-to-end specs.
-- SLUICE_BIN picks the binary (the ASan build in CI's second pass).
local M = {}

M.bin = os.getenv("SLUICE_BIN") or "./build/sluice"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = shell_quote

--- Runs a shell command; returns exit code, stdout, stderr.
function M.sh(cmd)
  local errfile = os.tmpname()
  local p = io.popen("(" .. cmd .. ") 2>" .. errfile .. "; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local f = io.open(errfile, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errfile)
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return rc, out, err
end

--- Runs `sluice ARGS...` (strings are quoted); prefix is prepended raw.
function M.run(args, prefix)
  local parts = {}
  for i, a in ipairs(args) do parts[i] = shell_quote(a) end
  return M.sh((prefix or "") .. M.bin .. " " .. table.concat(parts, " "))
end

--- A fresh temporary directory.
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/sluice-spec.XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.rm_rf(path)
  if path and path:match("^/tmp/sluice%-spec%.") then os.execute("rm -rf " .. shell_quote(path)) end
end

return M
