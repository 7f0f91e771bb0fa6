--- The state database: per connector, what was indexed with which content
-- hash, cursors, and job history — in SQLite in the data directory, so
-- memory stays flat however large the source is.
--
-- Writes are grouped into transactions that the engine commits only after
-- the sink has flushed the same documents: if the process dies in between,
-- the state is behind the index, never ahead of it, and the next sync
-- rewrites rather than skips.
-- @module sluice.state
local sqlite = require("sluice.sqlite")
local fs = require("sluice.fs")
local sys = require("sluice.sys")

local M = {}
local State = {}
State.__index = State

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS docs (
  connector TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL,
  job INTEGER NOT NULL, PRIMARY KEY (connector, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_job ON docs (connector, job);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, connector TEXT NOT NULL, kind TEXT NOT NULL,
  status TEXT NOT NULL, started REAL NOT NULL, ended REAL,
  listed INTEGER DEFAULT 0, indexed INTEGER DEFAULT 0, unchanged INTEGER DEFAULT 0,
  deleted INTEGER DEFAULT 0, errors INTEGER DEFAULT 0, message TEXT);
CREATE TABLE IF NOT EXISTS doc_errors (
  job INTEGER NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
  connector TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated REAL NOT NULL);
]]

--- Opens (creating) data_dir/state.db.
-- @return state | nil, err
function M.open(data_dir)
  local ok, err = fs.mkdir_p(data_dir)
  if not ok then return nil, "cannot create data_dir " .. data_dir .. ": " .. tostring(err) end
  local db
  db, err = sqlite.open(data_dir .. "/state.db")
  if not db then return nil, "cannot open state database: " .. tostring(err) end
  ok, err = db:exec(SCHEMA)
  if not ok then return nil, "cannot initialise state database: " .. tostring(err) end
  return setmetatable({ db = db, in_tx = false }, State)
end

-- State failures are fatal to a sync (the engine rethrows {fatal=...}
-- errors instead of blaming the document being processed).
local function check(ok, err)
  if not ok then error({ fatal = "state database: " .. tostring(err) }, 2) end
  return ok
end

function State:begin()
  if not self.in_tx then check(self.db:exec("BEGIN")); self.in_tx = true end
end

function State:commit()
  if self.in_tx then check(self.db:exec("COMMIT")); self.in_tx = false end
end

function State:rollback()
  if self.in_tx then self.db:exec("ROLLBACK"); self.in_tx = false end
end

--- Starts a job; returns its id.
function State:start_job(connector, kind)
  check(self.db:run("INSERT INTO jobs (connector, kind, status, started) VALUES (?, ?, 'running', ?)",
    connector, kind, sys.time()))
  return self.db:last_insert_rowid()
end

--- Records a job's outcome and counters.
function State:end_job(job, status, c, message)
  check(self.db:run([[UPDATE jobs SET status = ?, ended = ?, listed = ?, indexed = ?,
    unchanged = ?, deleted = ?, errors = ?, message = ? WHERE id = ?]],
    status, sys.time(), c.listed, c.indexed, c.unchanged, c.deleted, c.errors, message, job))
end

--- The content hash last indexed for a document, or nil.
function State:hash(connector, id)
  local row = self.db:one("SELECT hash FROM docs WHERE connector = ? AND id = ?", connector, id)
  return row and row.hash
end

--- Records that `id` was seen by `job` with this hash.
function State:put(connector, id, hash, job)
  check(self.db:run([[INSERT INTO docs (connector, id, hash, job) VALUES (?, ?, ?, ?)
    ON CONFLICT (connector, id) DO UPDATE SET hash = excluded.hash, job = excluded.job]],
    connector, id, hash, job))
end

--- Marks a document seen by `job` without changing its hash.
function State:touch(connector, id, job)
  check(self.db:run("UPDATE docs SET job = ? WHERE connector = ? AND id = ?", job, connector, id))
end

--- Up to `limit` ids that `job` did not see (stale after a complete listing).
function State:stale(connector, job, limit)
  local ids = {}
  for row in self.db:rows("SELECT id FROM docs WHERE connector = ? AND job <> ? LIMIT ?",
    connector, job, limit) do
    ids[#ids + 1] = row.id
  end
  return ids
end

function State:forget(connector, id)
  check(self.db:run("DELETE FROM docs WHERE connector = ? AND id = ?", connector, id))
end

--- Drops every hash of a connector: the next sync writes everything again.
function State:reset(connector)
  check(self.db:run("DELETE FROM docs WHERE connector = ?", connector))
end

function State:count(connector)
  local row = self.db:one("SELECT count(*) AS n FROM docs WHERE connector = ?", connector)
  return row and row.n or 0
end

function State:doc_error(job, id, reason)
  check(self.db:run("INSERT INTO doc_errors (job, id, reason) VALUES (?, ?, ?)", job, id, reason))
end

--- Recent jobs, newest first.
function State:jobs(connector, limit)
  local out = {}
  for row in self.db:rows("SELECT * FROM jobs WHERE connector = ? ORDER BY id DESC LIMIT ?",
    connector, limit or 10) do
    out[#out + 1] = row
  end
  return out
end

function State:close()
  self:rollback()
  self.db:close()
end

return M
