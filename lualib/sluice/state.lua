--- The state database: per connector, what was indexed with which content
-- hash, cursors, and job history — in SQLite in the data directory, so
-- memory stays flat however large the source is.
--
-- Writes are grouped into transactions that the engine commits only after
-- the sink has flushed the same documents: if the process dies in between,
-- the state is behind the index, never ahead of it, and the next sync
-- rewrites rather than skips.
--
-- The per-document statements are the sync engine's hot path (a few
-- microseconds each, 100k+ times a sync), so they are kept to one statement
-- per document: an unchanged document is recognised and marked seen by one
-- UPDATE, and `docs` carries no secondary index (an index on job cost a
-- second B-tree write per document; stale ids are found by walking the
-- primary key from a cursor instead). Inside a transaction, put() queues
-- its row and writes PUT_ROWS rows with one statement; every other read or
-- write of `docs`, and commit, writes the queue first, and hash() and
-- touch_if_same() see queued rows, so callers observe the same state as
-- with row-at-a-time writes.
--
-- Those puts, BEGIN and COMMIT are deferred (db:defer): SQLite runs them on
-- the connection's writer thread while the engine goes on with the next
-- documents, and any other statement waits for them first, so the order is
-- unchanged. A commit is queued only after the sink has flushed, as before;
-- a deferred write that fails is reported by the next state call, which
-- raises as any state failure does.
-- @module sluice.state
local sqlite = require("sluice.sqlite")
local fs = require("sluice.fs")
local sys = require("sluice.sys")

local M = {}
local State = {}
State.__index = State

local PUT_ROWS = 64
local PUT_ONE = [[INSERT INTO docs (connector, id, hash, job) VALUES (?, ?, ?, ?)
    ON CONFLICT (connector, id) DO UPDATE SET hash = excluded.hash, job = excluded.job]]
local PUT_MANY = PUT_ONE:gsub("%(%?, %?, %?, %?%)", string.rep("(?, ?, ?, ?)", PUT_ROWS, ", "))

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS docs (
  connector TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL,
  job INTEGER NOT NULL, PRIMARY KEY (connector, id)) WITHOUT ROWID;
DROP INDEX IF EXISTS docs_job;
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

--- Opens (creating) data_dir/state.db; with data_dir nil, a private
-- temporary state that SQLite deletes when it is closed (an NDJSON export,
-- which must neither touch nor wait for the state of the syncs). It is an
-- on-disk temporary, not ":memory:": its rows spill to a file beyond the
-- page cache, so an export's memory stays flat however many documents.
-- @return state | nil, err
function M.open(data_dir)
  local ok, err, db
  if data_dir then
    ok, err = fs.mkdir_p(data_dir)
    if not ok then return nil, "cannot create data_dir " .. data_dir .. ": " .. tostring(err) end
  end
  db, err = sqlite.open(data_dir and (data_dir .. "/state.db") or "")
  if not db then return nil, "cannot open state database: " .. tostring(err) end
  ok, err = db:exec(SCHEMA)
  if not ok then return nil, "cannot initialise state database: " .. tostring(err) end
  -- queue: PUT_ROWS * 4 bind values; queued: id -> hash of the queued rows
  -- (all of connector q_conn)
  return setmetatable({ db = db, in_tx = false, queue = {}, nqueue = 0, queued = {} }, State)
end

-- State failures are fatal to a sync (the engine rethrows {fatal=...}
-- errors instead of blaming the document being processed).
local function check(ok, err)
  if not ok then error({ fatal = "state database: " .. tostring(err) }, 2) end
  return ok
end

-- Forgets the queued rows without writing them.
local function drop_queue(self)
  if self.nqueue > 0 then
    self.nqueue = 0
    self.queued = {}
  end
end

-- Writes the queued rows: a full queue with one statement, a partial one
-- row by row (one SQL text per size would crowd the statement cache).
local function write_queue(self)
  local n = self.nqueue
  if n == 0 then return end
  local q, db = self.queue, self.db
  drop_queue(self)
  if n == PUT_ROWS * 4 then
    -- defer binds from the table: unpack() of 256 values would abort
    -- the LuaJIT trace of put() every PUT_ROWS documents
    check(db:defer(PUT_MANY, q, n))
  else
    for i = 1, n, 4 do check(db:defer(PUT_ONE, q, 4, i)) end
  end
end

function State:begin()
  if not self.in_tx then check(self.db:defer("BEGIN")); self.in_tx = true end
end

function State:commit()
  write_queue(self)
  if self.in_tx then check(self.db:defer("COMMIT")); self.in_tx = false end
end

--- Waits until every deferred write has reached the database.
function State:wait() check(self.db:wait()) end

function State:rollback()
  drop_queue(self)
  -- a deferred write that failed is reported (and dropped) by wait; the
  -- transaction it broke is still open and is rolled back here
  self.db:wait()
  if self.in_tx then self.db:exec("ROLLBACK"); self.in_tx = false end
end

--- Starts a job; returns its id.
function State:start_job(connector, kind)
  -- A job still "running" belongs to a process that died (kill -9, power
  -- loss): say so in the history.
  check(self.db:run("UPDATE jobs SET status = 'interrupted' WHERE connector = ? AND status = 'running'",
    connector))
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
  if self.nqueue > 0 and connector == self.q_conn and self.queued[id] then return self.queued[id] end
  local row = self.db:one("SELECT hash FROM docs WHERE connector = ? AND id = ?", connector, id)
  return row and row.hash
end

--- Records that `id` was seen by `job` with this hash.
function State:put(connector, id, hash, job)
  if not self.in_tx then
    check(self.db:run(PUT_ONE, connector, id, hash, job))
    return
  end
  if self.nqueue > 0 and connector ~= self.q_conn then write_queue(self) end
  local n, q = self.nqueue, self.queue
  q[n + 1], q[n + 2], q[n + 3], q[n + 4] = connector, id, hash, job
  self.nqueue, self.q_conn = n + 4, connector
  self.queued[id] = hash
  if n + 4 == PUT_ROWS * 4 then write_queue(self) end
end

--- Marks a document seen by `job` without changing its hash.
function State:touch(connector, id, job)
  write_queue(self)
  check(self.db:run("UPDATE docs SET job = ? WHERE connector = ? AND id = ?", job, connector, id))
end

--- When the stored hash of `id` is `hash`, marks it seen by `job` and
-- returns true (the document is unchanged); otherwise changes nothing and
-- returns false.
function State:touch_if_same(connector, id, hash, job)
  if self.nqueue > 0 and connector == self.q_conn and self.queued[id] then
    -- queued by this sync: seen already, and the queued hash decides
    if self.queued[id] ~= hash then return false end
    write_queue(self)
  end
  return check(self.db:run("UPDATE docs SET job = ? WHERE connector = ? AND id = ? AND hash = ?",
    job, connector, id, hash)) > 0
end

--- Up to `limit` ids that `job` did not see (stale after a complete
-- listing), in id order and after the id `after` when given: a caller that
-- deletes a batch passes its last id so the next walk starts there.
function State:stale(connector, job, limit, after)
  write_queue(self)
  local ids = {}
  for row in self.db:rows("SELECT id FROM docs WHERE connector = ? AND id > ? AND job <> ? ORDER BY id LIMIT ?",
    connector, after or "", job, limit) do
    ids[#ids + 1] = row.id
  end
  return ids
end

--- Empties the stored hash of `id` (its job stays): the next sync that
-- lists it writes it again.
function State:clear_hash(connector, id)
  write_queue(self)
  check(self.db:run("UPDATE docs SET hash = '' WHERE connector = ? AND id = ?", connector, id))
end

function State:forget(connector, id)
  write_queue(self)
  check(self.db:run("DELETE FROM docs WHERE connector = ? AND id = ?", connector, id))
end

--- Drops every hash of a connector: the next sync writes everything again.
function State:reset(connector)
  write_queue(self)
  check(self.db:run("DELETE FROM docs WHERE connector = ?", connector))
end

function State:count(connector)
  write_queue(self)
  local row = self.db:one("SELECT count(*) AS n FROM docs WHERE connector = ?", connector)
  return row and row.n or 0
end

function State:doc_error(job, id, reason)
  check(self.db:run("INSERT INTO doc_errors (job, id, reason) VALUES (?, ?, ?)", job, id, reason))
end

--- The incremental sync cursor last committed for a connector (the JSON
-- text the connector's docs_incremental returned), or nil.
function State:cursor(connector)
  local row = self.db:one("SELECT cursor FROM cursors WHERE connector = ?", connector)
  return row and row.cursor
end

--- Stores the cursor in the current transaction: it is committed with the
-- documents it covers, never before them.
function State:set_cursor(connector, cursor)
  check(self.db:run([[INSERT INTO cursors (connector, cursor, updated) VALUES (?, ?, ?)
    ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor, updated = excluded.updated]],
    connector, cursor, sys.time()))
end

function State:forget_cursor(connector)
  check(self.db:run("DELETE FROM cursors WHERE connector = ?", connector))
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
