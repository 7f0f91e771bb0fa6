--- The command line: every command, its --help and its exit codes.
-- @module sluice.cli
local sys = require("sluice.sys")
local log = require("sluice.log")

local M = {}

M.EXIT = {
  ok = 0,                    -- success; a sync ended "completed"
  failed = 1,                -- a sync "failed", a check found a problem, a search failed
  usage = 2,                 -- bad command line
  completed_with_errors = 3, -- a sync ended "completed_with_errors"
  config = 4,                -- the configuration is invalid
  interrupted = 130,         -- a sync was stopped by SIGINT or SIGTERM
}

local VERSION = "0.1.0"

local HELP = {
  main = [[
Usage: sluice [--home DIR] COMMAND [OPTIONS]

Syncs data sources into a search index: the embedded SQLite index by default.

Commands:
  sync CONFIG        run a full (or --incremental) sync of the configured
                     connectors
  search CONFIG INDEX QUERY
                     search an embedded index
  check CONFIG       validate the configuration and ping every source
  connectors         list the available connectors and their settings
  lua SCRIPT [ARGS]  run a Lua script inside the runtime (tests, tools)
  version            print the version

Global options (before or after the command):
  --log-level LEVEL  debug, info, warn or error (default info; env SLUICE_LOG_LEVEL)
  --log-format FMT   text or json (default: text on a terminal, else json)
  --home DIR         folder holding lualib/ and connectors/ (env SLUICE_HOME;
                     must come first)

Exit codes:
  0  success (a sync ended "completed")
  1  a sync failed, a check found a problem, or a search failed
  2  usage error
  3  a sync ended "completed_with_errors" (some documents failed, or part of
     a source could not be listed: nothing was deleted)
  4  the configuration is invalid
 70  internal error
130  a sync was interrupted (Ctrl-C or SIGTERM): it stopped at the next
     document, kept what it had written, and deleted nothing

Run `sluice COMMAND --help` for a command's options.
]],
  sync = [[
Usage: sluice sync CONFIG [--connector ID] [--full | --incremental]
                   [--ndjson PATH] [--json]

Runs a full sync of every connector in CONFIG (or only --connector ID):
documents are written to the embedded index (or Elasticsearch, when
configured); unchanged documents are skipped; documents the source no longer
has are deleted once the whole source has been listed.

Options:
  --connector ID   sync only this connector
  --full           rewrite every document, even unchanged ones
  --incremental    list only what changed since the previous incremental
                   sync (its cursor is kept in the state database; the
                   first one lists everything the cursor covers). Nothing is
                   deleted: deletions are caught by the next full sync. Every
                   connector synced must support it (postgresql, mysql: the
                   tables with timestamp_columns and the queries with a
                   timestamp_column)
  --ndjson PATH    export every document as NDJSON to PATH ("-" for
                   stdout) instead of writing the index; the index and its
                   state are left untouched
  --json           print the summary as JSON
  --no-progress    no progress line, even on a terminal

Exit: 0 completed, 3 completed_with_errors, 1 failed, 4 invalid configuration,
130 interrupted (Ctrl-C or SIGTERM; a second one ends the process at once).
]],
  search = [[
Usage: sluice search CONFIG INDEX QUERY [--limit N] [--offset N] [--json]

Searches the embedded index INDEX (a connector's index_name). The query is
taken as words, not as query syntax: every word must occur; punctuation
inside words (POL-358, v1.2, user@example.org) is matched literally.

Options:
  --limit N    hits to show (default 10)
  --offset N   hits to skip (default 0)
  --json       print {total, hits} as JSON

Exit: 0 (also when nothing matched), 1 on a bad query or a missing index,
4 invalid configuration.
]],
  check = [[
Usage: sluice check CONFIG

Validates CONFIG and pings every connector's source.
Exit: 0 all good, 1 a source did not answer, 4 invalid configuration.
]],
  connectors = [[
Usage: sluice connectors [--describe NAME] [--json]

Lists the available connectors, or describes one's configuration settings.
]],
  version = [[
Usage: sluice version

Prints the version of sluice and of its LuaJIT.
]],
  lua = [[
Usage: sluice lua SCRIPT [ARGS...]

Runs SCRIPT as a task inside the runtime, with every sluice primitive
available (`require "sluice.http"` ...). `arg` holds ARGS. The test suite runs
busted this way: sluice lua spec/busted.lua spec/
]],
}

local function out(s) io.stdout:write(s) end
local function err(s) io.stderr:write(s) end

-- Parses args against a flag spec: { name = "value" | "flag" }.
local function parse(args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    end
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if name then
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        if inline then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        local v = inline
        if not v then
          i = i + 1
          v = args[i]
          if v == nil then return nil, "--" .. name .. " needs a value" end
        end
        opts[name] = v
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" and #a > 1 then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

local GLOBAL = { ["log-level"] = "value", ["log-format"] = "value", help = "flag" }
local function with_global(spec)
  local s = {}
  for k, v in pairs(GLOBAL) do s[k] = v end
  for k, v in pairs(spec) do s[k] = v end
  return s
end

local function usage(msg, cmd)
  err("sluice: " .. msg .. "\n")
  err("Run `sluice " .. (cmd and (cmd .. " ") or "") .. "--help` for usage.\n")
  return M.EXIT.usage
end

local function apply_global(opts)
  if opts["log-level"] then
    local ok, e = log.set_level(opts["log-level"])
    if not ok then return e end
  end
  if opts["log-format"] then
    if opts["log-format"] ~= "text" and opts["log-format"] ~= "json" then
      return "--log-format must be text or json"
    end
    log.set_format(opts["log-format"])
  end
end

local function load_config(path)
  local config = require("sluice.config")
  local cfg, e = config.load(path)
  if not cfg then
    err("sluice: invalid configuration:\n" .. e .. "\n")
    return nil
  end
  if cfg.log_level then log.set_level(cfg.log_level) end
  return cfg
end

local function fmt_bytes(n)
  if n >= 1e9 then return string.format("%.1f GB", n / 1e9) end
  if n >= 1e6 then return string.format("%.1f MB", n / 1e6) end
  if n >= 1e3 then return string.format("%.1f kB", n / 1e3) end
  return string.format("%d B", n)
end

-- A value for a terminal: control characters (a file name with a newline)
-- shown as escapes rather than breaking the layout.
local function printable(v)
  return (tostring(v):gsub("%c", function(ch) return string.format("\\x%02x", ch:byte()) end))
end

-- A job's message for a summary: redacted, without the traceback (the log
-- has it).
local function summary_message(m)
  if m == nil then return nil end
  return log.redact((tostring(m):gsub("\nstack traceback:.*", "")))
end

local function redact_errors(errors)
  local out = {}
  for i, e in ipairs(errors) do out[i] = { id = e.id, reason = log.redact(tostring(e.reason)) } end
  return out
end

-- A non-negative decimal integer no larger than max, or nil.
local function count_arg(v, max)
  if type(v) ~= "string" or not v:match("^%d+$") then return nil end
  local n = tonumber(v)
  if n > max then return nil end
  return n
end

local commands = {}

function commands.sync(args)
  local opts, pos = parse(args, with_global({ connector = "value", full = "flag",
    incremental = "flag", ndjson = "value", json = "flag", ["no-progress"] = "flag" }))
  if not opts then return usage(pos, "sync") end
  if opts.help then out(HELP.sync); return M.EXIT.ok end
  local gerr = apply_global(opts)
  if gerr then return usage(gerr, "sync") end
  if #pos ~= 1 then return usage("sync needs exactly one CONFIG", "sync") end
  if opts.incremental and opts.full then
    return usage("--incremental and --full exclude each other", "sync")
  end
  -- An export is every document: an incremental one would be a different
  -- export each time, with its own cursor.
  if opts.incremental and opts.ndjson then
    return usage("--incremental and --ndjson exclude each other (an NDJSON export is always complete)", "sync")
  end
  local cfg = load_config(pos[1])
  if not cfg then return M.EXIT.config end
  local list = cfg.connectors
  if opts.connector then
    local c, cerr = require("sluice.config").connector(cfg, opts.connector)
    if not c then err("sluice: " .. cerr .. "\n"); return M.EXIT.usage end
    list = { c }
  end
  if opts.incremental then
    -- Refuse before anything runs: half the connectors synced is harder to
    -- reason about than none.
    for _, conn in ipairs(list) do
      if not conn.definition.docs_incremental then
        err(string.format("sluice: connector %s (%s) has no incremental sync: run a full sync for it%s\n",
          conn.id, conn.service_type, #list > 1 and ", or pick connectors with --connector ID" or ""))
        return M.EXIT.usage
      end
    end
  end
  -- Two syncs on one state database each take the other's freshly written
  -- documents for stale ones and delete them: one sync per data_dir at a
  -- time. (An NDJSON export reads the state but never writes it.)
  local engine = require("sluice.engine")
  local lock
  if not opts.ndjson then
    local lerr, lcode
    lock, lerr, lcode = engine.lock(cfg.data_dir)
    if not lock and lcode == "EAGAIN" then
      err("sluice: " .. lerr .. "\n")
      return M.EXIT.failed
    end
    -- any other failure: the engine reports the unusable data_dir
  end
  local json = require("sluice.json")
  local worst = M.EXIT.ok
  local summaries = {}
  -- Ctrl-C or SIGTERM: the running sync stops at its next document and
  -- reports; a second signal ends the process at once (a source that hangs).
  local function stop(name)
    engine.interrupt("SIG" .. name)
    sys.on_signal("INT", nil)
    sys.on_signal("TERM", nil)
    log.warn("stopping: the sync ends at the next document (SIG" .. name .. " again ends it at once)")
  end
  sys.on_signal("INT", stop)
  sys.on_signal("TERM", stop)
  local stopped = false -- a sync ended "interrupted", or a signal came between two
  for _, conn in ipairs(list) do
    if engine.interrupted() then stopped = true; break end
    local progress = not opts["no-progress"] and not opts.json and sys.isatty(2)
    local r = engine.sync(cfg, conn, { full = opts.full, incremental = opts.incremental,
      ndjson = opts.ndjson, progress = progress, locked = lock ~= nil })
    local c = r.counters
    if opts.json then
      summaries[#summaries + 1] = {
        connector = conn.id, index = conn.index_name, status = r.status, job = r.job,
        seconds = r.seconds, listed = c.listed, indexed = c.indexed,
        unchanged = c.unchanged, deleted = c.deleted, errors = c.errors,
        bytes = c.bytes, index_count = r.index_count, message = summary_message(r.message),
        error_samples = setmetatable(redact_errors(r.errors), json.array_mt),
      }
    else
      local report = opts.ndjson == "-" and err or out
      report(string.format("%s: %s in %.2f s: %d listed, %d indexed, %d unchanged, %d deleted, %d errors, %s of text%s\n",
        conn.id, r.status, r.seconds or 0, c.listed, c.indexed, c.unchanged, c.deleted,
        c.errors, fmt_bytes(c.bytes),
        r.index_count and string.format(" (index %s holds %d documents)", conn.index_name, r.index_count) or ""))
      for _, e in ipairs(redact_errors(r.errors)) do
        report(string.format("  error: %s: %s\n", printable(e.id or "?"), (tostring(e.reason):gsub("\n.*", ""))))
      end
      if c.errors > #r.errors then
        report(string.format("  ... and %d more errors (see the log)\n", c.errors - #r.errors))
      end
      if r.message then report("  " .. summary_message(r.message) .. "\n") end
    end
    if r.status == "interrupted" then stopped = true end
    local code = M.EXIT.failed
    if r.status == "completed" then code = M.EXIT.ok
    elseif r.status == "completed_with_errors" then code = M.EXIT.completed_with_errors end
    if code == M.EXIT.failed or (code == M.EXIT.completed_with_errors and worst == M.EXIT.ok) then
      worst = code
    end
  end
  sys.on_signal("INT", nil)
  sys.on_signal("TERM", nil)
  if stopped then worst = M.EXIT.interrupted end
  if lock then lock:unlock() end
  if opts.json then out(json.encode(#summaries == 1 and summaries[1] or summaries) .. "\n") end
  return worst
end

function commands.search(args)
  local opts, pos = parse(args, with_global({ limit = "value", offset = "value", json = "flag" }))
  if not opts then return usage(pos, "search") end
  if opts.help then out(HELP.search); return M.EXIT.ok end
  local gerr = apply_global(opts)
  if gerr then return usage(gerr, "search") end
  if #pos < 3 then return usage("search needs CONFIG INDEX QUERY", "search") end
  local limit = count_arg(opts.limit or "10", 10000)
  local offset = count_arg(opts.offset or "0", 1000000000)
  if not limit or limit < 1 then return usage("--limit must be an integer from 1 to 10000", "search") end
  if not offset then return usage("--offset must be an integer from 0 to 1000000000", "search") end
  local query = table.concat(pos, " ", 3)
  local cfg = load_config(pos[1])
  if not cfg then return M.EXIT.config end
  local fts = require("sluice.sink.fts")
  local sink = require("sluice.sink")
  local path = sink.index_path(cfg.data_dir)
  local require_fs = require("sluice.fs")
  local known = {}
  if require_fs.exists(path) then
    local lerr
    known, lerr = fts.list(path)
    if not known then
      err(string.format("sluice: cannot read the index file %s: %s\n", path, tostring(lerr)))
      return M.EXIT.failed
    end
  end
  local found = false
  for _, n in ipairs(known) do if n == pos[2] then found = true end end
  if not found then
    err(string.format("sluice: no index '%s' in %s (indexes: %s)\n", pos[2], path,
      #known > 0 and table.concat(known, ", ") or "none; run `sluice sync` first"))
    return M.EXIT.failed
  end
  local idx, oerr = fts.open(path, pos[2])
  if not idx then err("sluice: " .. tostring(oerr) .. "\n"); return M.EXIT.failed end
  local res, serr = idx:search(query, { limit = limit, offset = offset })
  idx:close()
  if not res then err("sluice: search failed: " .. tostring(serr) .. "\n"); return M.EXIT.failed end
  if opts.json then
    local json = require("sluice.json")
    local hits = setmetatable({}, json.array_mt)
    for i, h in ipairs(res.hits) do
      hits[i] = { id = h.id, score = h.score, title = h.title, snippet = h.snippet, doc = h.doc }
    end
    out(json.encode({ total = res.total, hits = hits }) .. "\n")
  else
    out(string.format("%d hit%s for %q in %s\n", res.total, res.total == 1 and "" or "s", query, pos[2]))
    for i, h in ipairs(res.hits) do
      out(string.format("%3d. %s\n     %s\n", offset + i, printable(h.title or h.id), printable(h.id)))
      if h.snippet and h.snippet ~= "" then
        out("     " .. printable((h.snippet:gsub("%s+", " "))) .. "\n")
      end
    end
  end
  return M.EXIT.ok
end

function commands.check(args)
  local opts, pos = parse(args, with_global({}))
  if not opts then return usage(pos, "check") end
  if opts.help then out(HELP.check); return M.EXIT.ok end
  local gerr = apply_global(opts)
  if gerr then return usage(gerr, "check") end
  if #pos ~= 1 then return usage("check needs exactly one CONFIG", "check") end
  local cfg = load_config(pos[1])
  if not cfg then return M.EXIT.config end
  local code = M.EXIT.ok
  for _, conn in ipairs(cfg.connectors) do
    local def = conn.definition
    local ok, perr = true, nil
    if def.ping then
      local ctx = { config = conn.configuration, log = log.with({ connector = conn.id }),
        http = require("sluice.http"), fs = require("sluice.fs") }
      local pok, r1, r2 = pcall(def.ping, ctx)
      if not pok then ok, perr = false, r1
      elseif not r1 then ok, perr = false, r2 or "ping failed" end
    end
    if ok then
      out(string.format("%s (%s): ok\n", conn.id, conn.service_type))
    else
      out(string.format("%s (%s): FAILED: %s\n", conn.id, conn.service_type, log.redact(tostring(perr))))
      code = M.EXIT.failed
    end
  end
  out(string.format("%s: configuration valid\n", cfg.file))
  return code
end

function commands.connectors(args)
  local opts, pos = parse(args, with_global({ describe = "value", json = "flag" }))
  if not opts then return usage(pos, "connectors") end
  if opts.help then out(HELP.connectors); return M.EXIT.ok end
  local gerr = apply_global(opts)
  if gerr then return usage(gerr, "connectors") end
  if #pos > 0 then return usage("unexpected argument " .. pos[1], "connectors") end
  local registry = require("sluice.registry")
  local schema = require("sluice.schema")
  local json = require("sluice.json")
  if opts.describe then
    local def, lerr = registry.load(opts.describe)
    if not def then err("sluice: " .. lerr .. "\n"); return M.EXIT.failed end
    if opts.json then
      local fields = {}
      for k, f in pairs(def.configuration) do
        local copy = {}
        for a, v in pairs(f) do copy[a] = v end
        -- an empty list default is [] in JSON, not {}
        if f.type == "list" and type(copy.default) == "table" then
          copy.default = setmetatable({ unpack(copy.default) }, json.array_mt)
        end
        fields[k] = copy
      end
      out(json.encode({ name = def.name, title = def.title, description = def.description,
        configuration = fields }) .. "\n")
      return M.EXIT.ok
    end
    out(string.format("%s — %s\n", def.name, def.title))
    if def.description then out(def.description .. "\n") end
    out("\nconfiguration:\n")
    for _, k in ipairs(schema.ordered_keys(def.configuration)) do
      local f = def.configuration[k]
      local bits = { f.type }
      if f.required then bits[#bits + 1] = "required" end
      if f.sensitive then bits[#bits + 1] = "sensitive" end
      if f.default ~= nil then
        local d = f.default
        if type(d) == "table" then d = "[" .. table.concat(d, ", ") .. "]" end
        bits[#bits + 1] = "default " .. tostring(d)
      end
      if f.options then
        local o = {}
        for _, x in ipairs(f.options) do o[#o + 1] = tostring(type(x) == "table" and x.value or x) end
        bits[#bits + 1] = "one of " .. table.concat(o, "|")
      end
      out(string.format("  %-18s %s (%s)\n", k, f.label or "", table.concat(bits, ", ")))
      if f.description then out(string.format("  %-18s %s\n", "", f.description)) end
    end
    return M.EXIT.ok
  end
  local names = registry.list()
  if opts.json then
    local list = setmetatable({}, json.array_mt)
    for i, n in ipairs(names) do
      local def, lerr = registry.load(n)
      list[i] = { name = n, title = def and def.title or nil, error = not def and lerr or nil }
    end
    out(json.encode(list) .. "\n")
    return M.EXIT.ok
  end
  for _, n in ipairs(names) do
    local def = registry.load(n)
    out(string.format("%-22s %s\n", n, def and def.title or "(does not load)"))
  end
  return M.EXIT.ok
end

function commands.lua(args)
  if args[1] == "--help" or not args[1] then out(HELP.lua); return args[1] and M.EXIT.ok or M.EXIT.usage end
  local script = args[1]
  local rest = { [0] = script }
  for i = 2, #args do rest[#rest + 1] = args[i] end
  _G.arg = rest
  local chunk, lerr = loadfile(script)
  if not chunk then err("sluice: " .. lerr .. "\n"); return M.EXIT.usage end
  local r = chunk(unpack(rest))
  if type(r) == "number" then return r end
  return M.EXIT.ok
end

function commands.version(args)
  local opts, pos = parse(args, with_global({}))
  if not opts then return usage(pos, "version") end
  if opts.help then out(HELP.version); return M.EXIT.ok end
  local gerr = apply_global(opts)
  if gerr then return usage(gerr, "version") end
  if #pos > 0 then return usage("version takes no arguments", "version") end
  out("sluice " .. VERSION .. " (" .. jit.version .. ")\n")
  return M.EXIT.ok
end

--- Entry from main.c.
-- @param args argv after the program name
-- @return exit status
function M.main(args)
  -- Global options may come before the command: move them after it.
  local lead = {}
  while args[1] == "--log-level" or args[1] == "--log-format" do
    if args[2] == nil then return usage(args[1] .. " needs a value") end
    lead[#lead + 1] = table.remove(args, 1)
    lead[#lead + 1] = table.remove(args, 1)
  end
  for i = #lead, 1, -1 do table.insert(args, 2, lead[i]) end
  local cmd = args[1]
  if cmd == nil then
    err(HELP.main)
    return M.EXIT.usage
  end
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    if cmd == "help" and args[2] and HELP[args[2]] then out(HELP[args[2]]) else out(HELP.main) end
    return M.EXIT.ok
  end
  if cmd == "--version" then cmd = "version" end
  local fn = commands[cmd]
  if not fn then return usage("unknown command '" .. cmd .. "'") end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  if cmd ~= "lua" then require("sluice.strict").enable() end
  return fn(rest)
end

return M
