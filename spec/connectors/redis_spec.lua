-- The Redis connector end to end: the real CLI (`sluice sync`, `sluice
-- search`, `sluice check`) against a real redis-server started by
-- spec/fixtures/servers/redis.sh. Data is loaded with sluice.redis itself
-- (this spec runs inside the sluice binary).
-- Run: build/sluice lua spec/busted.lua spec/connectors/redis_spec.lua
local cli = require("spec.support.cli")
local json = require("sluice.json")
local redis = require("sluice.redis")
local crypto = require("sluice.crypto")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local PW = "sluice-redis-pw"

describe("redis connector end to end", function()
  local port, pid, dir, conn

  local function config(name, lines)
    local path = dir .. "/" .. name .. ".yml"
    local out = {
      "data_dir: ./data-" .. name,
      "connectors:",
      "  - id: cache",
      "    service_type: redis",
      "    index_name: search-" .. name,
      "    configuration:",
      "      host: 127.0.0.1",
      "      port: " .. port,
    }
    for _, l in ipairs(lines or {}) do out[#out + 1] = "      " .. l end
    cli.write(path, table.concat(out, "\n") .. "\n")
    return path
  end

  local function sync(path, extra, prefix)
    local args = { "sync", path, "--json", "--no-progress" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local rc, out, err = cli.run(args, prefix)
    local ok, s = pcall(json.decode, out)
    assert(ok and type(s) == "table", "bad sync output: " .. out .. "\n" .. err)
    return rc, s, err
  end

  -- Every document of a fresh sync, by _id, from the NDJSON sink.
  local function documents(path)
    local file = dir .. "/out-" .. tostring(math.random(1e9)) .. ".ndjson"
    local rc, s = sync(path, { "--ndjson", file })
    local docs = {}
    for line in io.lines(file) do
      local d = json.decode(line)
      if d._id then docs[d._id] = d end
    end
    os.remove(file)
    return docs, rc, s
  end

  local function search(path, index, query)
    local rc, out, err = cli.run({ "search", path, index, query, "--json" })
    assert(rc == 0, "search failed: " .. err)
    local ids = {}
    for _, h in ipairs(json.decode(out).hits) do ids[#ids + 1] = h.id end
    table.sort(ids)
    return ids
  end

  local function r(...)
    local v, err = conn:command(...)
    assert(v ~= nil or err == nil, err)
    return v
  end

  lazy_setup(function()
    local p = assert(io.popen("sh '" .. src .. "/spec/fixtures/servers/redis.sh' --max-seconds 900"))
    local line = p:read("*l") or ""
    p:close()
    port, pid = line:match("^(%d+) (%d+)$")
    assert(port, "the redis fixture did not start")
    dir = cli.tmpdir()
    conn = assert(redis.connect({ host = "127.0.0.1", port = tonumber(port), password = PW }))
    r("FLUSHALL")
    r("SET", "greeting", "hello walrus world")
    r("EXPIREAT", "greeting", 4102444800) -- 2100-01-01
    r("SET", "bin:value", "\0\1\255payload")
    r("HSET", "user:1", "name", "Ada Lovelace", "role", "engineer")
    r("RPUSH", "queue", "alpha", "beta", "gamma")
    r("SADD", "tags", "zebra", "apple", "mango")
    r("ZADD", "board", 1.5, "carol", 3, "dave", -2, "erin")
    r("XADD", "events", "1700000000000-0", "kind", "login", "who", "ada")
    r("XADD", "events", "1700000000001-0", "kind", "logout", "who", "ada")
    r("SET", "key\255bin", "latin quokka")
    r("SET", "emoji:🚀", "rocket launch")
    -- values larger than one page of each kind
    local cmds = { { "DEL", "biglist", "bighash", "bigset", "bigzset", "bigstream" } }
    for i = 1, 2500 do
      cmds[#cmds + 1] = { "RPUSH", "biglist", "item" .. i }
      cmds[#cmds + 1] = { "HSET", "bighash", string.format("f%05d", i), "v" .. i }
      cmds[#cmds + 1] = { "SADD", "bigset", string.format("m%05d", i) }
      cmds[#cmds + 1] = { "ZADD", "bigzset", i, "z" .. i }
      cmds[#cmds + 1] = { "XADD", "bigstream", i .. "-1", "n", tostring(i) }
    end
    assert(conn:pipeline(cmds))
    r("SELECT", 5)
    r("SET", "other", "in database five")
    r("SELECT", 0)
  end)

  lazy_teardown(function()
    if conn then conn:close() end
    if pid then os.execute("kill " .. pid) end
    cli.rm_rf(dir)
  end)

  it("maps every value type to an exact document", function()
    local path = config("types", { "password: " .. PW, "database: [0, 5]" })
    local docs, rc, s = documents(path)
    assert.are.equal(0, rc)
    assert.are.equal("completed", s.status)
    assert.are.equal(15, s.listed)

    local d = docs["0:greeting"]
    assert.are.same({ "0:greeting", "greeting", "string", 0, 18, "hello walrus world", "hello walrus world", "2100-01-01T00:00:00Z" },
      { d._id, d.key, d.type, d.db, d.length, d.value, d.body, d.expires_at })
    d = docs["0:bin:value"]
    assert.are.equal(crypto.base64_encode("\0\1\255payload"), d.value_base64)
    assert.is_nil(d.value)
    assert.is_nil(d.body)
    d = docs["0:user:1"]
    assert.are.same({ name = "Ada Lovelace", role = "engineer" }, d.value)
    assert.are.same({ "hash", 2, "name: Ada Lovelace\nrole: engineer" }, { d.type, d.length, d.body })
    d = docs["0:queue"]
    assert.are.same({ "alpha", "beta", "gamma" }, d.value)
    assert.are.same({ "list", 3, "alpha\nbeta\ngamma" }, { d.type, d.length, d.body })
    d = docs["0:tags"]
    assert.are.same({ "apple", "mango", "zebra" }, d.value) -- sorted: stable across syncs
    assert.are.same({ "set", 3 }, { d.type, d.length })
    d = docs["0:board"]
    assert.are.same({ { member = "erin", score = -2 }, { member = "carol", score = 1.5 }, { member = "dave", score = 3 } }, d.value)
    assert.are.same({ "zset", 3 }, { d.type, d.length })
    d = docs["0:events"]
    assert.are.same({ { id = "1700000000000-0", fields = { kind = "login", who = "ada" } },
                      { id = "1700000000001-0", fields = { kind = "logout", who = "ada" } } }, d.value)
    assert.are.same({ "stream", 2 }, { d.type, d.length })
    assert.is_nil(d.expires_at)
    d = docs["5:other"]
    assert.are.same({ 5, "in database five" }, { d.db, d.value })
    assert.are.equal("rocket launch", docs["0:emoji:🚀"].value)

    -- past the first page of each kind, every element, in order
    d = docs["0:biglist"]
    assert.are.same({ 2500, 2500, "item1", "item1001", "item2500" }, { d.length, #d.value, d.value[1], d.value[1001], d.value[2500] })
    d = docs["0:bighash"]
    local n = 0
    for _ in pairs(d.value) do n = n + 1 end
    assert.are.same({ 2500, 2500, "v1", "v2500" }, { d.length, n, d.value.f00001, d.value.f02500 })
    d = docs["0:bigset"]
    assert.are.same({ 2500, "m00001", "m01234", "m02500" }, { #d.value, d.value[1], d.value[1234], d.value[2500] })
    d = docs["0:bigzset"]
    assert.are.same({ 2500, "z1", 1, "z2500", 2500 }, { #d.value, d.value[1].member, d.value[1].score, d.value[2500].member, d.value[2500].score })
    d = docs["0:bigstream"]
    assert.are.same({ 2500, "1-1", "1001-1", "2500-1", "2500" }, { #d.value, d.value[1].id, d.value[1001].id, d.value[2500].id, d.value[2500].fields.n })
    assert.is_nil(d.truncated)
  end)

  it("gives binary keys a stable hashed id and keeps their exact bytes", function()
    local docs = documents(config("binary", { "password: " .. PW, "database: [0]", "key_pattern: ['key*']" }))
    local id = "0:key-sha256:" .. crypto.hex(crypto.sha256("key\255bin"))
    local d = docs[id]
    assert.is_table(d)
    assert.are.equal(crypto.base64_encode("key\255bin"), d.key_base64)
    assert.are.equal("key\239\191\189bin", d.key) -- shown with U+FFFD
    assert.are.equal("latin quokka", d.value)
  end)

  it("syncs into the index, skips unchanged keys and deletes removed ones", function()
    local path = config("index", { "password: " .. PW, "database: '*'" })
    local rc, s = sync(path)
    assert.are.same({ 0, "completed", 15, 15, 0, 0 }, { rc, s.status, s.listed, s.indexed, s.unchanged, s.deleted })
    assert.are.same({ "0:greeting" }, search(path, "search-index", "walrus"))
    assert.are.same({ "0:user:1" }, search(path, "search-index", "lovelace"))
    assert.are.same({ "5:other" }, search(path, "search-index", "database five"))
    assert.are.same({ "0:events" }, search(path, "search-index", "logout"))

    rc, s = sync(path)
    assert.are.same({ 0, 15, 0, 15, 0 }, { rc, s.listed, s.indexed, s.unchanged, s.deleted })

    r("DEL", "greeting")
    r("RPUSH", "queue", "delta")
    rc, s = sync(path)
    assert.are.same({ 0, 14, 1, 13, 1, 14 }, { rc, s.listed, s.indexed, s.unchanged, s.deleted, s.index_count })
    assert.are.same({}, search(path, "search-index", "walrus"))
    assert.are.same({ "0:queue" }, search(path, "search-index", "delta"))
    r("SET", "greeting", "hello walrus world")
    r("EXPIREAT", "greeting", 4102444800)
    r("LREM", "queue", 1, "delta")
  end)

  it("filters by key pattern and type, indexing a key matched twice once", function()
    local docs, _, s = documents(config("patterns", { "password: " .. PW, "database: [0]",
      "key_pattern: ['big*', 'bigl?st', 'q[tu]eue']" }))
    local ids = {}
    for id in pairs(docs) do ids[#ids + 1] = id end
    table.sort(ids)
    assert.are.same({ "0:bighash", "0:biglist", "0:bigset", "0:bigstream", "0:bigzset", "0:queue" }, ids)
    assert.are.equal(6, s.listed)
    docs = documents(config("types2", { "password: " .. PW, "database: [0]", "key_types: [zset, stream]" }))
    ids = {}
    for id in pairs(docs) do ids[#ids + 1] = id end
    table.sort(ids)
    assert.are.same({ "0:bigstream", "0:bigzset", "0:board", "0:events" }, ids)
    docs = documents(config("rules", { "password: " .. PW,
      "rules: [{database: 5, key_pattern: '*'}, {database: 0, key_pattern: 'big*', type: list}]" }))
    ids = {}
    for id in pairs(docs) do ids[#ids + 1] = id end
    table.sort(ids)
    assert.are.same({ "0:biglist", "5:other" }, ids)
  end)

  it("caps large values: a 3 MB string is read up to max_value_size", function()
    -- 3 MB of text whose 10,000th byte falls inside a 2-byte character
    r("SET", "huge", "x" .. string.rep("é", 1.5 * 1024 * 1024 - 1) .. "z")
    r("SETRANGE", "hugebin", 3 * 1024 * 1024 - 1, "z") -- NUL bytes: binary
    local docs = documents(config("cap", { "password: " .. PW, "database: [0]", "key_pattern: ['huge*', 'biglist']",
      "max_value_size: 10000" }))
    local d = docs["0:huge"]
    assert.are.same({ 3 * 1024 * 1024, 9999, true }, { d.length, #d.value, d.truncated })
    assert.are.equal("x" .. string.rep("é", 4999), d.value)
    d = docs["0:hugebin"]
    assert.are.same({ 3 * 1024 * 1024, string.rep("\0", 10000), true },
      { d.length, crypto.base64_decode(d.value_base64), d.truncated })
    d = docs["0:biglist"]
    -- item1..9 take 45 bytes, item10..99 540, item100..999 6300: 6885; the
    -- 3115 left hold 389 eight-byte items: 1388 in all
    assert.are.same({ 2500, 1388, true }, { d.length, #d.value, d.truncated })
    assert.are.equal("item1388", d.value[1388])
    r("DEL", "huge", "hugebin")
  end)

  it("reports a wrong password and a server that is down clearly", function()
    local path = config("badpw", { "password: not-the-password" })
    local rc, s = sync(path)
    assert.are.equal(1, rc)
    assert.are.equal("failed", s.status)
    assert.truthy(s.message:find("^127%.0%.0%.1:%d+: auth failed: WRONGPASS invalid username%-password pair"), s.message)
    local crc, out = cli.run({ "check", path })
    assert.are.equal(1, crc)
    assert.truthy(out:find("auth failed: WRONGPASS", 1, true), out)
    assert.falsy(out:find("not-the-password", 1, true))

    local free = dir .. "/down.yml"
    cli.write(free, (io.open(path):read("*a"):gsub("port: %d+", "port: 1")))
    rc, s = sync(free)
    assert.are.equal(1, rc)
    assert.truthy(s.message:find("^127%.0%.0%.1:1: connection refused"), s.message)
    crc = cli.run({ "check", config("good", { "password: " .. PW }) })
    assert.are.equal(0, crc)
  end)

  it("says TLS is not available rather than connecting in the clear", function()
    local rc, s = sync(config("tls", { "password: " .. PW, "tls_enabled: true" }))
    assert.are.equal(1, rc)
    assert.truthy(s.message:find("tls not supported by this build's hiredis", 1, true), s.message)
  end)

  it("indexes RedisJSON documents when the module is loaded", function()
    local mods = conn:command("MODULE", "LIST") or {}
    local has = false
    for _, m in ipairs(mods) do
      for i = 1, #m, 2 do if m[i] == "name" and m[i + 1] == "ReJSON" then has = true end end
    end
    if not has then
      pending("RedisJSON is not loaded (Debian's redis has no such module; set REDISJSON_MODULE for redis.sh)")
      return
    end
    r("JSON.SET", "doc:1", "$", '{"title":"json walrus","n":[1,2]}')
    local docs = documents(config("json", { "password: " .. PW, "database: [0]", "key_pattern: ['doc:*']" }))
    assert.are.same({ title = "json walrus", n = { 1, 2 } }, docs["0:doc:1"].value)
    assert.are.equal("json", docs["0:doc:1"].type)
  end)

  it("scans 100,000 keys with flat memory (10,000 under ASan)", function()
    local function load(db, n)
      r("SELECT", db)
      r("FLUSHDB")
      for b = 0, n / 1000 - 1 do
        local cmds = {}
        for i = 1, 1000 do
          local k = b * 1000 + i
          cmds[i] = { "SET", "k:" .. k, "value number " .. k .. " of the flat memory test" }
        end
        assert(conn:pipeline(cmds))
      end
      r("SELECT", 0)
    end
    local function measure(db, n)
      local path = config("mem" .. db, { "password: " .. PW, "database: [" .. db .. "]" })
      local t0 = os.time()
      local rc, out, err = cli.sh("/usr/bin/time -f 'RSS_KB=%M' " .. cli.q(cli.bin) .. " sync " .. cli.q(path) .. " --json --no-progress")
      local s = json.decode(out)
      local rss = tonumber(err:match("RSS_KB=(%d+)"))
      assert.are.same({ 0, n, n }, { rc, s.listed, s.indexed })
      print(string.format("\n  redis connector: %d keys in %.2f s (%.0f keys/s), peak RSS %.1f MB",
        n, s.seconds, n / s.seconds, rss / 1024))
      return rss, t0
    end
    -- Under ASan (whose quarantine holds freed memory, and which runs some
    -- ten times slower) the figures say nothing about flatness: a tenth of
    -- the keys, figures printed, no RSS assertion.
    local sanitized = cli.bin:find("asan", 1, true) ~= nil
    local n = sanitized and 10000 or 100000
    load(8, n / 10)
    load(9, n)
    local small = measure(8, n / 10)
    local large = measure(9, n)
    if not sanitized then
      -- ten times the keys, nearly the same memory
      assert.is_true(large < small * 1.3 + 8 * 1024, string.format("RSS %d KB for 10k keys, %d KB for 100k", small, large))
    end
    for _, db in ipairs({ 8, 9 }) do r("SELECT", db); r("FLUSHDB") end
    r("SELECT", 0)
  end)
end)
