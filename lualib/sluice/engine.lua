--- The sync engine: runs one connector's listing into a sink.
--
-- For each document the connector yields: give it a string _id and a
-- _timestamp, hash its content, skip it when the hash is what the state
-- database already holds, otherwise fetch its lazy content, clean its text
-- and write it. After a complete listing, documents the source no longer has
-- are deleted; after an incomplete or failed one, nothing is.
--
-- An incremental sync (opts.incremental) lists through the connector's
-- docs_incremental(ctx, cursor) instead: the same per-document path, no
-- deletions, and the new cursor committed in the same transaction as the
-- last documents it covers, so a crash re-reads rather than skips.
--
-- Outcomes: "completed", "completed_with_errors" (some documents failed, or
-- part of the source could not be listed), "failed" (the listing or the sink
-- broke: nothing deleted), "interrupted" (M.interrupt, on a signal: stopped
-- at the next document, nothing deleted).
--
-- The per-document path is the hot loop of every sync (bench/run.lua and
-- bench/db_*.lua measure it): one C call cleans the document's text and
-- takes its content hash straight from the table (crypto.content_hash: the
-- text.clean_tree policy and XXH3-128 of its canonical form, in one walk),
-- and an unchanged document costs one state statement. Hashing the cleaned
-- document is as good for change detection as hashing the raw one (cleaning
-- is deterministic), and it is what gets written: a document without lazy
-- content goes to the sink flagged `hashed`, and the Elasticsearch sink
-- writes its JSON from the hash's walk instead of walking it again. State
-- writes are deferred to SQLite's writer thread (sluice.state).
-- @module sluice.engine
local json = require("sluice.json")
local crypto = require("sluice.crypto")
local text = require("sluice.text")
local task = require("sluice.task")
local sys = require("sluice.sys")
local log = require("sluice.log")
local state_mod = require("sluice.state")
local sink_mod = require("sluice.sink")
local registry = require("sluice.registry")

local M = {}

M.MAX_ID_BYTES = 512
M.BATCH = 500          -- documents between sink flush + state commit
M.MAX_ERRORS_KEPT = 50 -- per-document errors kept in the result (all are logged)

local function iso8601(t)
  local s = math.floor(t)
  local ms = math.floor((t - s) * 1000 + 0.5)
  if ms >= 1000 then s, ms = s + 1, 0 end
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms)
end
M.iso8601 = iso8601

local function id_string(id)
  if type(id) == "number" then
    if id == math.floor(id) and math.abs(id) < 2 ^ 53 then return string.format("%.0f", id) end
    return tostring(id)
  end
  if type(id) == "string" and id ~= "" then return id end
  return nil
end

local hash_doc, clean, clean_tree = crypto.content_hash, text.clean, text.clean_tree

-- Cleans the document's text and returns the hex content hash of it
-- without its lazy content. content_hash reports what it cannot encode as
-- nil, err; the pcall keeps a memory error a document error, as it always
-- was.
local function content_hash(doc)
  local lazy = doc._content
  doc._content = nil
  local ok, hash, err = pcall(hash_doc, doc)
  doc._content = lazy
  if not ok then return nil, hash end
  return hash, err
end

-- The default _timestamp, "now": formatted again only when the
-- millisecond changes (os.date per document is measurable).
local now_ms, now_text = -1, nil
local function now_iso8601()
  local t = sys.time()
  local ms = math.floor(t * 1000 + 0.5) -- iso8601 rounds the same way
  if ms ~= now_ms then now_ms, now_text = ms, iso8601(t) end
  return now_text
end

local function new_counters()
  return { listed = 0, indexed = 0, unchanged = 0, deleted = 0, errors = 0, bytes = 0 }
end

local function progress_task(c, started)
  return task.spawn(function()
    while true do
      task.sleep(0.5)
      local dt = task.now() - started
      sys.write(2, string.format("\r  %d listed, %d indexed, %d unchanged, %d errors, %.1f MB, %.0f docs/s   ",
        c.listed, c.indexed, c.unchanged, c.errors, c.bytes / 1e6, c.listed / math.max(dt, 1e-3)))
    end
  end)
end

-- Set by M.interrupt (a signal): every running sync stops at its next
-- document, deletes nothing, and ends "interrupted".
local interrupted = nil

--- Asks every running sync to stop: at the next document the listing
-- fails with "interrupted: <reason>", what was flushed stays committed,
-- nothing is deleted, and the job ends "interrupted".
function M.interrupt(reason) interrupted = tostring(reason or "interrupted") end

--- The reason given to M.interrupt, or nil.
function M.interrupted() return interrupted end

--- Lets syncs run again after an interrupt (a long-running caller that
-- chose to go on).
function M.clear_interrupt() interrupted = nil end

local function stop_if_interrupted()
  if interrupted then error({ fatal = "interrupted: " .. interrupted, interrupted = true }, 0) end
end

--- Takes the data directory's sync lock: two syncs on one state database
-- each take the other's freshly written documents for stale ones and
-- delete them, so one sync per data_dir at a time. The kernel drops the
-- lock when the process dies, kill -9 included.
-- @return lock (lock:unlock()) | nil, message, code ("EAGAIN": another
--   sync holds it)
function M.lock(data_dir)
  local fs = require("sluice.fs")
  local ok, err = fs.mkdir_p(data_dir)
  if not ok then return nil, "cannot create data_dir " .. data_dir .. ": " .. tostring(err) end
  local lock, lerr, code = fs.lock(data_dir .. "/sync.lock")
  if not lock then
    if code == "EAGAIN" then return nil, "another sync is running on " .. data_dir .. ": nothing was synced", code end
    return nil, "cannot lock " .. data_dir .. "/sync.lock: " .. tostring(lerr), code
  end
  return lock
end

--- Runs a full (or incremental) sync of one connector entry.
-- @param cfg the loaded configuration
-- @param conn a connector entry from cfg.connectors
-- @param opts { full = bool (rewrite everything), incremental = bool,
--   ndjson = path, progress = bool, locked = bool (the caller holds
--   M.lock(cfg.data_dir); otherwise the sync takes it, except for an NDJSON
--   export, which writes neither the index nor its state) }
-- @return result { status, counters, errors = {{id, reason}}, message, seconds, job }
function M.sync(cfg, conn, opts)
  opts = opts or {}
  local started = task.now()
  local clog = log.with({ connector = conn.id })
  local c = new_counters()
  local result = { status = "failed", counters = c, errors = {}, connector = conn.id }

  -- Load the script afresh: a sync runs the version it started with.
  local def, lerr = registry.load(conn.service_type)
  if not def then result.message = lerr; return result end
  if opts.incremental and not def.docs_incremental then
    result.message = "connector " .. conn.id .. " (" .. conn.service_type .. ") has no incremental sync"
    return result
  end

  local lock
  if not opts.locked and not opts.ndjson then
    local lerr
    lock, lerr = M.lock(cfg.data_dir)
    if not lock then result.message = lerr; return result end
  end
  -- The lock is given back however the sync ends, a raised error included
  -- (a long-running service must not keep a data_dir locked until a GC).
  -- `held` gets the state, sink and job as they are opened, so a raise
  -- anywhere (a state statement, the sink's count) still ends the job,
  -- rolls back and closes them instead of leaving a write transaction and
  -- a job marked 'running' behind.
  local held = {}
  local ok, res = xpcall(M._sync_locked, debug.traceback, cfg, conn, opts, def, result, c, clog,
    started, held)
  if not ok then
    if held.sink then pcall(held.sink.close, held.sink) end
    if held.state then
      pcall(held.state.rollback, held.state)
      if held.job then pcall(held.state.end_job, held.state, held.job, "failed", c, tostring(res)) end
      pcall(held.state.close, held.state)
    end
  end
  if lock then lock:unlock() end
  if not ok then error(res, 0) end
  return res
end

-- The body of M.sync, once the script is loaded and the lock held.
function M._sync_locked(cfg, conn, opts, def, result, c, clog, started, held)
  -- An export is every document, every time: it needs no memory of what
  -- was written, and must not write (or lock) the syncs' state.
  local state, serr = state_mod.open(not opts.ndjson and cfg.data_dir or nil)
  if not state then result.message = serr; return result end
  held.state = state
  local sink, kerr = sink_mod.open(cfg, conn, opts)
  if not sink then state:close(); held.state = nil; result.message = kerr; return result end
  held.sink = sink

  local key = conn.id
  -- An embedded index that was deleted while the state survived would make
  -- every document look unchanged: start over.
  local n_index = sink:count()
  local n_state = state:count(key)
  if sink.each_hash and n_index and n_index ~= n_state then
    -- The index was written by someone else or the state was lost: rebuild
    -- the state from the index's ids and hashes, streamed (memory stays
    -- flat). Job 0 means "not seen yet": what the listing does not see again
    -- is deleted as usual.
    clog.info("state out of step with the index: rebuilding it from the index",
      { index_documents = n_index, state_documents = n_state })
    state:reset(key)
    -- What the index lost, an incremental cursor would never list again.
    state:forget_cursor(key)
    state:begin()
    local rebuilt = 0
    sink:each_hash(function(id, hash)
      state:put(key, id, hash or "", 0)
      rebuilt = rebuilt + 1
      if rebuilt % 5000 == 0 then state:commit(); state:begin() end
    end)
    state:commit()
  elseif n_index == 0 and n_state > 0 then
    clog.info("index is empty but the state remembers documents: rewriting everything")
    state:reset(key)
    state:forget_cursor(key)
  end

  -- With nothing remembered (a first sync), every document is new: skip
  -- the per-document lookup.
  local remembered = state:count(key) > 0
  -- A remote sink keeps several bulk requests in flight; flushing (waiting
  -- for all of them) every 500 documents would drain its pipeline, so it
  -- may ask for a longer stretch between commits.
  local batch = sink.batch or M.BATCH
  local job = state:start_job(key, opts.incremental and "incremental"
    or opts.full and "full (forced)" or "full")
  result.job = job
  held.job = job
  local incomplete = {}
  local pending = 0

  local doc_error
  -- The state is committed only after the sink has acknowledged every
  -- document before it. A sink that writes asynchronously (Elasticsearch)
  -- reports the documents it could not write; their hashes are cleared
  -- before the commit so the next sync tries them again.
  local function flush()
    local failures = sink:flush()
    for _, f in ipairs(type(failures) == "table" and failures or {}) do
      c.indexed = c.indexed - 1
      doc_error(f.id, f.reason, true)
    end
    state:commit()
    pending = 0
    state:begin()
  end

  function doc_error(id, reason, written)
    c.errors = c.errors + 1
    reason = tostring(reason)
    clog.warn("document error", { id = id, reason = reason })
    if #result.errors < M.MAX_ERRORS_KEPT then
      result.errors[#result.errors + 1] = { id = id, reason = reason }
    end
    state:doc_error(job, id or "?", reason)
    if id then
      -- Keep it from being deleted as stale; an empty hash makes the next
      -- sync try it again.
      if written or not state:hash(key, id) then state:put(key, id, "", job) else state:touch(key, id, job) end
    end
  end

  local check_unchanged = remembered and not opts.full
  local function process(doc)
    if type(doc) ~= "table" then
      return doc_error(nil, "document is a " .. type(doc) .. ", not a table")
    end
    local id = id_string(doc._id)
    if not id then return doc_error(nil, "document without a usable _id") end
    id = clean(id)
    if #id > M.MAX_ID_BYTES then
      doc.original_id = id
      id = crypto.hex(crypto.sha256(id))
    end
    doc._id = id
    local ts = doc._timestamp
    if type(ts) == "number" then doc._timestamp = iso8601(ts) end
    -- Hash before a default _timestamp is added, or a source without
    -- timestamps would look changed on every sync.
    local hash, herr = content_hash(doc)
    if not hash then return doc_error(id, "cannot encode document: " .. tostring(herr)) end
    if doc._timestamp == nil then doc._timestamp = now_iso8601() end
    -- One statement compares the stored hash and marks the document seen.
    if check_unchanged and state:touch_if_same(key, id, hash, job) then
      c.unchanged = c.unchanged + 1
      return
    end
    local lazy = doc._content
    doc._content = nil
    -- Without lazy content the document is still what content_hash walked
    -- (but for a default _timestamp): a sink may write it from that walk.
    local hashed = lazy == nil
    if lazy ~= nil then
      if type(lazy) ~= "function" then return doc_error(id, "_content must be a function") end
      local ok, fields, ferr = pcall(lazy, doc)
      if not ok then return doc_error(id, fields) end
      if fields == nil then return doc_error(id, ferr or "content unavailable") end
      for k, v in pairs(fields) do doc[k] = v end
      -- Cleaned with the hash, except what the fetch brought (or changed:
      -- it gets the document); documents with lazy content are the ones
      -- that read files or download, so a second walk costs little there.
      clean_tree(doc)
    end
    if type(doc.body) == "string" then c.bytes = c.bytes + #doc.body end
    local ok, perr = pcall(sink.put, sink, doc, hash, hashed)
    if not ok then error({ fatal = "sink: " .. tostring(perr) }, 0) end
    state:put(key, id, hash, job)
    c.indexed = c.indexed + 1
    pending = pending + 1
    if pending >= batch then flush() end
  end

  local ctx = {
    config = conn.configuration, connector_id = conn.id, index_name = conn.index_name,
    data_dir = cfg.data_dir, log = clog,
    http = require("sluice.http"), fs = require("sluice.fs"), json = json,
    crypto = crypto, text = text, task = task,
  }
  --- Hands one document to the engine.
  function ctx.yield(doc)
    stop_if_interrupted()
    c.listed = c.listed + 1
    local ok, err = xpcall(process, debug.traceback, doc)
    if not ok then
      -- A broken sink or state database is not a document's fault: it
      -- fails the sync.
      if type(err) == "table" and err.fatal then error(err.fatal, 0) end
      doc_error(type(doc) == "table" and id_string(doc._id) or nil, err)
    end
  end
  --- Reports a document that could not be read.
  function ctx.error(id, reason) doc_error(id_string(id), reason) end
  --- Reports a part of the source that could not be listed: nothing is
  -- deleted after this sync.
  function ctx.incomplete(reason)
    incomplete[#incomplete + 1] = tostring(reason)
    clog.warn("listing incomplete", { reason = tostring(reason) })
  end

  local progress = opts.progress and progress_task(c, started) or nil
  state:begin()
  local ok, err, cursor
  if opts.incremental then
    local stored = state:cursor(key)
    local decoded
    if stored then
      -- json.decode returns nil, err on bad text; the pcall is for misuse.
      local dok, v, derr = pcall(json.decode, stored)
      decoded = dok and v or nil
      if decoded == nil then
        -- Unreadable: start over from the beginning, which re-lists but
        -- loses nothing (unchanged documents are skipped by hash).
        clog.warn("stored incremental cursor is unreadable: listing from the start",
          { error = tostring(dok and derr or v) })
      end
    end
    ok, err = xpcall(def.docs_incremental, debug.traceback, ctx, decoded)
    if ok then cursor, err = err, nil end
  else
    ok, err = xpcall(def.docs, debug.traceback, ctx)
  end
  if ok and interrupted then
    -- the connector swallowed the stop: what it did not list is unknown
    ok, err = false, { fatal = "interrupted: " .. interrupted, interrupted = true }
  end
  if ok then
    ok, err = pcall(flush)
  end
  if ok and cursor ~= nil then
    if #incomplete > 0 then
      -- The connector could not list everything: what it missed lies
      -- behind its new cursor, so the old one stays.
      clog.warn("listing incomplete: the incremental cursor stays where it was", { reasons = #incomplete })
    elseif c.errors > 0 then
      -- A document that failed is behind the new cursor: keep the old one
      -- so the next incremental sync lists it again (the documents that
      -- were written are skipped then by their hashes).
      clog.warn("documents failed: the incremental cursor stays where it was", { errors = c.errors })
    else
      ok, err = pcall(function() state:set_cursor(key, json.encode(cursor)) end)
    end
  end
  if ok and #incomplete == 0 and not opts.incremental then
    -- Complete listing: delete what the source no longer has, in batches
    -- (the state is never read whole).
    ok, err = pcall(function()
      local after
      while true do
        stop_if_interrupted() -- between batches: each is committed whole
        local ids = state:stale(key, job, M.BATCH, after)
        if #ids == 0 then break end
        -- Before the index loses them, the state forgets their hashes (and
        -- commits): if the deletes then fail half-way, a document the
        -- source brings back is rewritten, not skipped as "unchanged" while
        -- the index no longer has it.
        for _, id in ipairs(ids) do state:clear_hash(key, id) end
        state:commit()
        state:begin()
        for _, id in ipairs(ids) do
          if sink:delete(id) ~= false then c.deleted = c.deleted + 1 end
          state:forget(key, id)
        end
        after = ids[#ids]
        flush()
      end
    end)
  end
  if progress then progress:cancel(); sys.write(2, "\r" .. string.rep(" ", 100) .. "\r") end

  if not ok then
    local stopped = interrupted ~= nil or (type(err) == "table" and err.interrupted)
    if type(err) == "table" then err = err.fatal or tostring(err) end
    state:rollback()
    result.status = stopped and "interrupted" or "failed"
    result.message = tostring(err)
    if stopped then
      clog.warn("sync interrupted: what was written stays, nothing more was deleted",
        { listed = c.listed, indexed = c.indexed, deleted = c.deleted })
    elseif c.deleted > 0 then
      clog.error("sync failed while deleting documents the source no longer has: some may be gone from the index",
        { error = result.message, deletes_sent = c.deleted })
    else
      clog.error("sync failed: nothing was deleted", { error = result.message })
    end
  else
    state:commit()
    if c.errors > 0 or #incomplete > 0 then
      result.status = "completed_with_errors"
      if #incomplete > 0 then
        result.message = (opts.incremental and "listing incomplete: " or "listing incomplete, nothing deleted: ") .. table.concat(incomplete, "; ")
      end
    else
      result.status = "completed"
    end
  end
  result.incomplete = incomplete
  -- A remote index is counted (after a refresh) only when it answered.
  if sink.kind == "embedded" or (ok and sink.kind == "elasticsearch") then
    local cok, n = pcall(sink.count, sink)
    if cok then result.index_count = n end
  end
  held.sink = nil
  pcall(sink.close, sink)
  state:end_job(job, result.status, c, result.message)
  held.state = nil
  state:close()
  result.seconds = task.now() - started
  return result
end

return M
