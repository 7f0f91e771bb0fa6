-- Redis (Elastic's `redis` connector): one document per key.
--
-- Keys are listed with SCAN (a cursor and a COUNT hint, never KEYS, which
-- blocks the server and returns everything at once), per database and per
-- key pattern. Each SCAN page is then read in two pipelined round trips:
-- TYPE + EXPIRETIME for every key, then a length and a first page of the
-- value; only values larger than a page cost further round trips. Memory is
-- one SCAN page plus one capped value, however many keys the server holds.
--
-- Documents: _id "<db>:<key>" (a key that is not UTF-8 gets
-- "<db>:key-sha256:<hex>" and its exact bytes in key_base64), key, type,
-- db, length (bytes for a string, elements otherwise), expires_at, value
-- (typed: string, map, array, array of {member, score}, array of {id,
-- fields}, decoded JSON) and body (the value as text, for search). A value
-- is read up to max_value_size bytes; past that the document says
-- truncated = true. Values are read whole on every full sync (Redis keeps
-- no change marker); the engine writes only the documents whose content
-- changed, and deletes the keys that are gone.
local sluice = require("sluice")
local redis = require("sluice.redis")
local text = require("sluice.text")
local crypto = require("sluice.crypto")
local json = require("sluice.json")

local PAGE = 1000 -- elements per value page (LRANGE, HSCAN, XRANGE ...)

local TYPES = { "string", "hash", "list", "set", "zset", "stream", "json" }

-- Redis glob matching (*, ?, [abc], [^a-z], \x) on bytes, as the server's
-- MATCH does; used to skip keys an earlier pattern already listed.
local function glob_match(pat, s)
  local pi, si, np, ns = 1, 1, #pat, #s
  local star_p, star_s
  while si <= ns do
    local c = pat:sub(pi, pi)
    local matched, nexti = false, pi + 1
    if c == "*" then
      star_p, star_s = pi, si
      pi = pi + 1
      goto continue
    elseif c == "?" and pi <= np then
      matched = true
    elseif c == "[" and pi <= np then
      local j, neg = pi + 1, false
      if pat:sub(j, j) == "^" then neg, j = true, j + 1 end
      local ch, hit = s:sub(si, si), false
      while j <= np and pat:sub(j, j) ~= "]" do
        local a = pat:sub(j, j)
        if a == "\\" and j < np then j = j + 1; a = pat:sub(j, j) end
        if pat:sub(j + 1, j + 1) == "-" and j + 2 <= np and pat:sub(j + 2, j + 2) ~= "]" then
          local b = pat:sub(j + 2, j + 2)
          if a > b then a, b = b, a end
          if ch >= a and ch <= b then hit = true end
          j = j + 3
        else
          if ch == a then hit = true end
          j = j + 1
        end
      end
      matched, nexti = (hit ~= neg), j + 1
    elseif pi <= np then
      if c == "\\" and pi < np then pi = pi + 1; c = pat:sub(pi, pi); nexti = pi + 1 end
      matched = (c == s:sub(si, si))
    end
    if matched then
      pi, si = nexti, si + 1
    elseif star_p then
      pi, star_s = star_p + 1, star_s + 1
      si = star_s
    else
      return false
    end
    ::continue::
  end
  while pat:sub(pi, pi) == "*" do pi = pi + 1 end
  return pi > np
end

local function doc_id(db, key)
  if text.utf8_valid(key) then return db .. ":" .. key end
  return db .. ":key-sha256:" .. crypto.hex(crypto.sha256(key))
end

local function iso8601(secs)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", secs)
end

-- What the user asked for: one entry per database, {db = n, rules =
-- {{pattern =, types = set|nil}, ...}}, from `rules` when given, else from
-- database x key_pattern x key_types.
local function plan(cfg, all_dbs)
  local function typeset(list)
    if not list or #list == 0 then return nil end
    local set = {}
    for _, t in ipairs(list) do set[t == "json" and "ReJSON-RL" or t] = true end
    return set
  end
  local out, by_db = {}, {}
  local function add(db, pattern, types)
    local e = by_db[db]
    if not e then
      e = { db = db, rules = {} }
      by_db[db] = e
      out[#out + 1] = e
    end
    e.rules[#e.rules + 1] = { pattern = pattern, types = types }
  end
  if type(cfg.rules) == "table" and #cfg.rules > 0 then
    for _, r in ipairs(cfg.rules) do
      add(tonumber(r.database) or 0, r.key_pattern or "*", typeset(r.type and { r.type }))
    end
    return out
  end
  local types = typeset(cfg.key_types)
  for _, d in ipairs(cfg.database) do
    if d == "*" then
      for _, n in ipairs(all_dbs()) do
        for _, p in ipairs(cfg.key_pattern) do add(n, p, types) end
      end
    else
      for _, p in ipairs(cfg.key_pattern) do add(tonumber(d), p, types) end
    end
  end
  return out
end

-- Does rule i of a database take key k of type t? Not when an earlier rule
-- already took it: each key is indexed once.
local function accepts(rules, i, k, t)
  local r = rules[i]
  if r.types and not r.types[t] then return false end
  for j = 1, i - 1 do
    local e = rules[j]
    if (not e.types or e.types[t]) and glob_match(e.pattern, k) then return false end
  end
  return true
end

-- The databases that hold keys, from INFO keyspace ("db3:keys=12,...").
local function keyspace_dbs(conn)
  local info, err = conn:command("INFO", "keyspace")
  if not info then error("INFO keyspace: " .. tostring(err), 0) end
  local dbs = {}
  for n in info:gmatch("db(%d+):keys=") do dbs[#dbs + 1] = tonumber(n) end
  table.sort(dbs)
  return dbs
end

-- The first command(s) for a value: a length and a first page.
local function first_cmds(t, key, cap)
  -- one byte past the cap, so a cut can be moved back to a character boundary
  if t == "string" then return { "STRLEN", key }, { "GETRANGE", key, 0, cap } end
  if t == "hash" then return { "HLEN", key }, { "HSCAN", key, 0, "COUNT", PAGE } end
  if t == "list" then return { "LLEN", key }, { "LRANGE", key, 0, PAGE - 1 } end
  if t == "set" then return { "SCARD", key }, { "SSCAN", key, 0, "COUNT", PAGE } end
  if t == "zset" then return { "ZCARD", key }, { "ZRANGE", key, 0, PAGE - 1, "WITHSCORES" } end
  if t == "stream" then return { "XLEN", key }, { "XRANGE", key, "-", "+", "COUNT", PAGE } end
  if t == "ReJSON-RL" then return { "EXISTS", key }, { "JSON.GET", key } end
end

-- Reads the rest of a value after its first page, up to cap bytes.
-- Returns value, body_parts, truncated | nil, err.
local function read_value(conn, t, key, first, cap)
  local used, parts, truncated = 0, {}, false
  local function take(s)
    if used + #s > cap then truncated = true; return false end
    used = used + #s
    return true
  end
  if t == "string" then
    return first, nil, nil
  elseif t == "ReJSON-RL" then
    if #first > cap then return nil, nil, true end
    local ok, v = pcall(json.decode, first)
    if not ok then return nil, "JSON.GET: " .. tostring(v) end
    return v, { first }, false
  elseif t == "list" then
    local out, start, page = setmetatable({}, json.array_mt), 0, first
    while true do
      for _, s in ipairs(page) do
        if not take(s) then break end
        out[#out + 1] = s
        parts[#parts + 1] = s
      end
      if truncated or #page < PAGE then break end
      start = start + PAGE
      local err
      page, err = conn:command("LRANGE", key, start, start + PAGE - 1)
      if not page then return nil, "LRANGE: " .. tostring(err) end
    end
    return out, parts, truncated
  elseif t == "zset" then
    local out, start, page = setmetatable({}, json.array_mt), 0, first
    while true do
      for i = 1, #page, 2 do
        if not take(page[i]) then break end
        out[#out + 1] = { member = page[i], score = tonumber(page[i + 1]) or page[i + 1] }
        parts[#parts + 1] = page[i]
      end
      if truncated or #page < 2 * PAGE then break end
      start = start + PAGE
      local err
      page, err = conn:command("ZRANGE", key, start, start + PAGE - 1, "WITHSCORES")
      if not page then return nil, "ZRANGE: " .. tostring(err) end
    end
    return out, parts, truncated
  elseif t == "stream" then
    local out, page = setmetatable({}, json.array_mt), first
    while true do
      local last
      for _, entry in ipairs(page) do
        local fields, flat = {}, entry[2]
        local size = #entry[1]
        for i = 1, #flat, 2 do size = size + #flat[i] + #flat[i + 1] end
        if used + size > cap then truncated = true; break end
        used = used + size
        for i = 1, #flat, 2 do
          fields[text.clean(flat[i])] = flat[i + 1]
          parts[#parts + 1] = flat[i] .. ": " .. flat[i + 1]
        end
        out[#out + 1] = { id = entry[1], fields = fields }
        last = entry[1]
      end
      if truncated or #page < PAGE then break end
      local err
      page, err = conn:command("XRANGE", key, "(" .. last, "+", "COUNT", PAGE)
      if not page then return nil, "XRANGE: " .. tostring(err) end
    end
    return out, parts, truncated
  else -- hash and set: cursor pages; a small value comes whole in one page
    local is_hash = t == "hash"
    local members = {}
    local page = first
    while true do
      local items = page[2]
      local step = is_hash and 2 or 1
      for i = 1, #items, step do
        local size = #items[i] + (is_hash and #items[i + 1] or 0)
        if used + size > cap then truncated = true; break end
        used = used + size
        if is_hash then members[#members + 1] = { items[i], items[i + 1] } else members[#members + 1] = items[i] end
      end
      if truncated or page[1] == "0" then break end
      local err
      page, err = conn:command(is_hash and "HSCAN" or "SSCAN", key, page[1], "COUNT", PAGE)
      if not page then return nil, (is_hash and "HSCAN: " or "SSCAN: ") .. tostring(err) end
    end
    -- SCAN order is not stable: sort, or an unchanged value would look new.
    if is_hash then
      table.sort(members, function(a, b) return a[1] < b[1] end)
      local out = {}
      for _, m in ipairs(members) do
        out[text.clean(m[1])] = m[2]
        parts[#parts + 1] = m[1] .. ": " .. m[2]
      end
      return out, parts, truncated
    end
    table.sort(members)
    for _, m in ipairs(members) do parts[#parts + 1] = m end
    return setmetatable(members, json.array_mt), parts, truncated
  end
end

local function type_name(t)
  return t == "ReJSON-RL" and "json" or t
end

local function connect(cfg, db)
  if cfg.tls_enabled then return redis.connect({ tls = true }) end
  return redis.connect({
    host = cfg.host, port = cfg.port, db = db or 0,
    username = cfg.username ~= "" and cfg.username or nil,
    password = cfg.password ~= "" and cfg.password or nil,
    connect_timeout = cfg.connect_timeout, timeout = cfg.timeout,
  })
end

return sluice.connector {
  name = "redis",
  title = "Redis",
  description = "Indexes Redis keys, one document per key, with every value type: string, hash, list, set, sorted set, stream and RedisJSON.",
  configuration = {
    host = { type = "str", label = "Host", required = true, order = 1 },
    port = { type = "int", label = "Port", default = 6379, order = 2,
      validations = { { type = "greater_than", constraint = 0 }, { type = "less_than", constraint = 65536 } } },
    username = { type = "str", label = "Username (ACL)", default = "", order = 3,
      description = "an ACL user (Redis 6+); empty for the default user" },
    password = { type = "str", label = "Password", default = "", sensitive = true, order = 4 },
    database = { type = "list", label = "Databases", default = { "*" }, order = 5,
      description = "database numbers to index, or * for every database that holds keys",
      validations = { { type = "regex", constraint = "^[%d*]+$" } } },
    key_pattern = { type = "list", label = "Key patterns", default = { "*" }, order = 6,
      description = "Redis glob patterns (SCAN MATCH); a key matching several is indexed once" },
    key_types = { type = "list", label = "Key types", default = {}, order = 7,
      description = "when set, only keys of these types are indexed",
      validations = { { type = "included_in",
        constraint = { "string", "hash", "list", "set", "zset", "stream", "json" } } } },
    rules = { type = "any", label = "Advanced rules", order = 8,
      description = "a list of {database, key_pattern, type}; when set it replaces database, key_pattern and key_types" },
    max_value_size = { type = "int", label = "Maximum value size (bytes)", default = 1024 * 1024, order = 9,
      description = "a value is read up to this many bytes; the document of a larger one says truncated",
      validations = { { type = "greater_than", constraint = 0 } } },
    scan_count = { type = "int", label = "SCAN COUNT", default = 1000, order = 10,
      description = "keys per SCAN page (a hint to the server), also the size of each pipelined batch",
      validations = { { type = "greater_than", constraint = 0 } } },
    tls_enabled = { type = "bool", label = "TLS", default = false, order = 11,
      description = "not supported by this build (hiredis 0.14 has no TLS): setting it is an error" },
    connect_timeout = { type = "float", label = "Connect timeout (s)", default = 10, order = 12 },
    timeout = { type = "float", label = "Reply timeout (s)", default = 60, order = 13 },
  },

  validate = function(ctx)
    local rules = ctx.config.rules
    if rules == nil then return nil end
    local errs = {}
    if type(rules) ~= "table" then
      return { { path = "rules", message = "expected a list of {database, key_pattern, type}" } }
    end
    for i, r in ipairs(rules) do
      local at = "rules[" .. i .. "]"
      if type(r) ~= "table" then
        errs[#errs + 1] = { path = at, message = "expected a mapping" }
      else
        for k in pairs(r) do
          if k ~= "database" and k ~= "key_pattern" and k ~= "type" then
            errs[#errs + 1] = { path = at .. "." .. tostring(k), message = "unknown key (known keys: database, key_pattern, type)" }
          end
        end
        if r.database ~= nil and not (tonumber(r.database) and tonumber(r.database) >= 0) then
          errs[#errs + 1] = { path = at .. ".database", message = "expected a database number" }
        end
        if r.key_pattern ~= nil and type(r.key_pattern) ~= "string" then
          errs[#errs + 1] = { path = at .. ".key_pattern", message = "expected a string" }
        end
        local ok = r.type == nil
        for _, t in ipairs(TYPES) do if r.type == t then ok = true end end
        if not ok then
          errs[#errs + 1] = { path = at .. ".type", message = "unknown type '" .. tostring(r.type) .. "'" }
        end
      end
    end
    return #errs > 0 and errs or nil
  end,

  ping = function(ctx)
    local conn, err = connect(ctx.config)
    if not conn then return nil, ctx.config.host .. ":" .. ctx.config.port .. ": " .. tostring(err) end
    local pong, perr = conn:command("PING")
    conn:close()
    if pong ~= "PONG" then return nil, "PING: " .. tostring(perr or pong) end
    return true
  end,

  docs = function(ctx)
    local cfg = ctx.config
    local cap = cfg.max_value_size
    local conn, err = connect(cfg)
    if not conn then error(cfg.host .. ":" .. cfg.port .. ": " .. tostring(err), 0) end
    ctx.task.defer(function() conn:close() end)

    -- A reply that failed because the connection is gone fails the sync
    -- (nothing is deleted); an error reply is the caller's to handle.
    local function must(reply, cerr, what)
      if reply == nil and cerr ~= nil and not conn:is_open() then
        error((what or "redis") .. ": " .. tostring(cerr), 0)
      end
      return reply, cerr
    end

    -- Reads and yields one SCAN page of keys for rule ri of a database.
    local function batch(db, keys, rules, ri)
      local cmds = {}
      for i, k in ipairs(keys) do
        cmds[2 * i - 1] = { "TYPE", k }
        cmds[2 * i] = { "EXPIRETIME", k }
      end
      local meta, perr = must(conn:pipeline(cmds))
      if not meta then error("TYPE: " .. tostring(perr), 0) end
      local todo, second = {}, {}
      for i, k in ipairs(keys) do
        local t = meta[2 * i - 1]
        if t ~= "none" and accepts(rules, ri, k, t) then -- "none": deleted since SCAN
          local a, b = first_cmds(t, k, cap)
          if a then
            todo[#todo + 1] = { key = k, type = t, expires = meta[2 * i] }
            second[#second + 1] = a
            second[#second + 1] = b
          else
            ctx.error(doc_id(db, k), "unsupported key type '" .. tostring(t) .. "'")
          end
        end
      end
      if #second == 0 then return end
      local vals, verrs = must(conn:pipeline(second))
      if not vals then error("read values: " .. tostring(verrs), 0) end
      for i, item in ipairs(todo) do
        local id, key, t = doc_id(db, item.key), item.key, item.type
        local len, first = vals[2 * i - 1], vals[2 * i]
        local ferr = verrs and (verrs[2 * i - 1] or verrs[2 * i])
        if ferr then
          ctx.error(id, ferr)
        else
          local value, parts, truncated = read_value(conn, t, key, first, cap)
          must(nil, parts, "read " .. t)
          if value == nil and not truncated then
            ctx.error(id, parts)
          else
            local doc = { _id = id, key = key, type = type_name(t), db = db }
            if not text.utf8_valid(key) then doc.key_base64 = crypto.base64_encode(key) end
            if t ~= "ReJSON-RL" then doc.length = len end
            local exp = item.expires
            if type(exp) == "number" and exp > 0 then doc.expires_at = iso8601(exp) end
            if t == "string" then
              truncated = len > cap
              -- A cut value may end inside a character: cut it back.
              local txt = truncated and text.truncate_utf8(value, cap) or value
              if text.utf8_valid(txt) and not txt:find("%z") then
                doc.value, doc.body = txt, txt
              else -- binary (NUL bytes count: the text policy would drop them)
                doc.value_base64 = crypto.base64_encode(value:sub(1, cap))
              end
            else
              doc.value = value
              if parts then doc.body = table.concat(parts, "\n") end
            end
            if truncated then doc.truncated = true end
            ctx.yield(doc)
          end
        end
      end
    end

    for _, entry in ipairs(plan(cfg, function() return keyspace_dbs(conn) end)) do
      local db = entry.db
      local ok, serr = conn:command("SELECT", db)
      if not ok then
        must(nil, serr, "SELECT " .. db)
        ctx.incomplete("database " .. db .. ": " .. tostring(serr))
      else
        for ri, rule in ipairs(entry.rules) do
          local cursor = "0"
          repeat
            local page, perr = must(conn:command("SCAN", cursor, "MATCH", rule.pattern, "COUNT", cfg.scan_count))
            if not page then error("SCAN: " .. tostring(perr), 0) end
            cursor = page[1]
            if #page[2] > 0 then batch(db, page[2], entry.rules, ri) end
          until cursor == "0"
        end
      end
    end
    conn:close()
  end,
}
