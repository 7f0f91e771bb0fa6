--- Starts and stops a throwaway PostgreSQL server for specs
-- (spec/fixtures/servers/postgres.sh): a real server on 127.0.0.1 and a free
-- port, data in /tmp, stopped by PID.
local M = {}

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
M.script = src .. "/spec/fixtures/servers/postgres.sh"
M.PASSWORD = "sluice-test"

--- -> server {port, pid, dir, ca} | nil, reason (why the specs are pending)
function M.start()
  local f = io.open("/usr/lib/postgresql/15/bin/postgres", "rb")
  if not f then return nil, "PostgreSQL 15 is not installed" end
  f:close()
  local p = io.popen(M.script .. " start 2>&1")
  local out = p:read("*a")
  p:close()
  local port, pid, dir = out:match("(%d+) (%d+) (%S+)%s*$")
  if not port then return nil, "the PostgreSQL fixture did not start: " .. out end
  return { port = tonumber(port), pid = tonumber(pid), dir = dir, ca = dir .. "/data/server.crt" }
end

function M.stop(server)
  if server then os.execute(M.script .. " stop " .. server.pid .. " " .. server.dir) end
end

--- Options for pg.connect as the superuser.
function M.options(server, extra)
  local o = { host = "127.0.0.1", port = server.port, user = "postgres",
    password = M.PASSWORD, database = "postgres", ssl_mode = "disable" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

return M
