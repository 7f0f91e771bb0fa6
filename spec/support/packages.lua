--- Debian's package index as records: real input for the database specs
-- and benchmarks (~63,000 packages on a Debian 12 machine with apt lists).
--
-- The lists are read with `apt-helper cat-file`, which undoes their lz4
-- compression. Records are deduplicated on (name, version, architecture):
-- the main, -updates and -security lists can repeat a package.
local M = {}

-- Plain on a stock Debian, lz4 where apt is told to compress its lists:
-- apt-helper cat-file reads either.
M.DIR = "/var/lib/apt/lists"

local function list_files()
  local p = io.popen("ls -1 " .. M.DIR .. " 2>/dev/null")
  local files = {}
  for name in p:lines() do
    if name:match("_Packages$") or name:match("_Packages%.%w+$") then
      files[#files + 1] = "'" .. M.DIR .. "/" .. name .. "'"
    end
  end
  p:close()
  return files
end
M.HELPER = "/usr/lib/apt/apt-helper"

--- The columns every record has (nil where a package has no such field),
-- in table order, with PostgreSQL/MySQL-neutral SQL types.
M.COLUMNS = {
  { "name", "varchar(200)" }, { "version", "varchar(200)" }, { "architecture", "varchar(20)" },
  { "section", "varchar(100)" }, { "priority", "varchar(20)" }, { "maintainer", "text" },
  { "installed_size", "bigint" }, { "size", "bigint" }, { "depends", "text" },
  { "homepage", "text" }, { "description", "text" }, { "sha256", "varchar(64)" },
}

local FIELD = {
  Package = "name", Version = "version", Architecture = "architecture", Section = "section",
  Priority = "priority", Maintainer = "maintainer", ["Installed-Size"] = "installed_size",
  Size = "size", Depends = "depends", Homepage = "homepage", Description = "description",
  SHA256 = "sha256",
}
local NUMERIC = { installed_size = true, size = true }

--- Whether the lists are there; -> true | nil, reason.
function M.available()
  if #list_files() == 0 then return nil, "no apt lists in /var/lib/apt/lists (run apt-get update)" end
  local f = io.open(M.HELPER, "rb")
  if not f then return nil, M.HELPER .. " is missing" end
  f:close()
  return true
end

--- Reads the records; -> { {name=, version=, ...}, ... } | nil, err
-- @param limit stop after this many records (all when nil)
function M.load(limit)
  local ok, why = M.available()
  if not ok then return nil, why end
  local p = io.popen(M.HELPER .. " cat-file " .. table.concat(list_files(), " ") .. " 2>/dev/null")
  local out, seen = {}, {}
  local rec, last = {}, nil
  local function finish()
    if rec.name then
      local key = rec.name .. "\0" .. (rec.version or "") .. "\0" .. (rec.architecture or "")
      if not seen[key] then
        seen[key] = true
        for k in pairs(NUMERIC) do rec[k] = tonumber(rec[k]) end
        out[#out + 1] = rec
      end
    end
    rec, last = {}, nil
  end
  for line in p:lines() do
    if line == "" then
      finish()
      if limit and #out >= limit then break end
    elseif line:sub(1, 1) == " " then
      -- continuation of a multi-line field (the long description)
      if last then rec[last] = rec[last] .. "\n" .. (line == " ." and "" or line:sub(2)) end
    else
      local k, v = line:match("^([^:]+):%s?(.*)$")
      last = k and FIELD[k]
      if last then rec[last] = v end
    end
  end
  finish()
  p:close()
  if limit and #out > limit then out[#out] = nil end
  return out
end

--- Multi-row INSERT statements for the records, with bound parameters.
-- @param placeholder function(i) -> "$i" (PostgreSQL) or "?" (MySQL)
-- @return iterator of sql, params ({ n = count, ... })
function M.inserts(records, table_name, placeholder, rows_per_statement)
  rows_per_statement = rows_per_statement or 500
  local names = {}
  for i, c in ipairs(M.COLUMNS) do names[i] = c[1] end
  local head = "INSERT INTO " .. table_name .. " (" .. table.concat(names, ", ") .. ") VALUES "
  local pos = 1
  return function()
    if pos > #records then return nil end
    local groups, params, n = {}, {}, 0
    for r = pos, math.min(pos + rows_per_statement - 1, #records) do
      local ph = {}
      for c, name in ipairs(names) do
        n = n + 1
        params[n] = records[r][name]
        ph[c] = placeholder(n)
      end
      groups[#groups + 1] = "(" .. table.concat(ph, ", ") .. ")"
    end
    pos = pos + rows_per_statement
    params.n = n
    return head .. table.concat(groups, ", "), params
  end
end

return M
