-- sluice.redis from Lua, inside the sluice binary (real tasks, real loop),
-- against a real redis-server started by spec/fixtures/servers/redis.sh.
-- The C test (redis_test.c) covers the lifecycles: cancel, timeouts, a
-- dropped connection, connections left open at exit.
-- Run: build/sluice lua spec/busted.lua spec/runtime/db/redis_spec.lua
local redis = require("sluice.redis")
local task = require("sluice.task")
local json = require("sluice.json")

local src = os.getenv("SLUICE_SOURCE_DIR") or "."
local PW = "sluice-redis-pw"

describe("sluice.redis", function()
  local port, pid

  lazy_setup(function()
    local p = assert(io.popen("sh '" .. src .. "/spec/fixtures/servers/redis.sh' --max-seconds 600"))
    local line = p:read("*l") or ""
    p:close()
    port, pid = line:match("^(%d+) (%d+)$")
    port = tonumber(port)
    assert(port and pid, "the redis fixture did not start")
  end)

  lazy_teardown(function()
    if pid then os.execute("kill " .. pid) end
  end)

  local function open(opts)
    opts = opts or {}
    opts.host = opts.host or "127.0.0.1"
    opts.port = opts.port or port
    if opts.password == nil then opts.password = PW end
    if opts.password == false then opts.password = nil end
    return redis.connect(opts)
  end

  local conn
  before_each(function()
    conn = assert(open())
    assert.are.equal("OK", conn:command("FLUSHALL"))
  end)
  after_each(function() conn:close() end)

  it("maps each reply kind", function()
    assert.are.equal("PONG", conn:command("PING"))                 -- status
    assert.are.equal("OK", conn:command("SET", "s", "text"))
    assert.are.equal("text", conn:command("GET", "s"))               -- bulk
    assert.are.equal(4, conn:command("STRLEN", "s"))                 -- integer
    local v, err = conn:command("GET", "nothing")                    -- nil
    assert.is_nil(v)
    assert.is_nil(err)
    assert.are.equal(3, conn:command("RPUSH", "l", "a", "b", "c"))
    local arr = conn:command("LRANGE", "l", 0, -1)                   -- array
    assert.are.same({ "a", "b", "c" }, arr)
    assert.are.equal(json.array_mt, getmetatable(arr))
    assert.are.equal('["a","b","c"]', json.encode(arr))
    assert.are.equal("[]", json.encode(conn:command("LRANGE", "none", 0, -1)))
    v, err = conn:command("LPUSH", "s", "x")                         -- error reply
    assert.is_nil(v)
    assert.are.equal("WRONGTYPE Operation against a key holding the wrong kind of value", err)
  end)

  it("keeps integers exact: beyond 2^53 they are strings", function()
    assert.are.equal("OK", conn:command("SET", "n", 2 ^ 53 - 1))
    assert.are.equal(9007199254740992, conn:command("INCR", "n"))
    assert.are.equal("9007199254740993", conn:command("INCR", "n"))
    assert.are.equal("OK", conn:command("SET", "m", "-9223372036854775808"))
    assert.are.equal("-9223372036854775807", conn:command("INCR", "m"))
    assert.are.equal("OK", conn:command("SET", "e", 1e15))
    assert.are.equal("1000000000000000", conn:command("GET", "e"))
    assert.are.equal("OK", conn:command("SET", "f", -2.25))
    assert.are.equal("-2.25", conn:command("GET", "f"))
  end)

  it("is binary-safe for keys, values and arguments", function()
    local key, val = "k\0\255\r\n", "\0\1\2 a\r\nb \255\254\0"
    assert.are.equal("OK", conn:command("SET", key, val))
    assert.are.equal(val, conn:command("GET", key))
    assert.are.equal(1, conn:command("HSET", "h\0", "f\0ld", "v\0"))
    assert.are.same({ "f\0ld", "v\0" }, conn:command("HGETALL", "h\0"))
    local keys = conn:command("KEYS", "k*")
    assert.are.same({ key }, keys)
    local big = string.rep("\0xyz\255", 200000) -- 1 MB
    assert.are.equal("OK", conn:command("SET", "big", big))
    assert.are.equal(big, conn:command("GET", "big"))
  end)

  it("turns nils inside arrays into json.null and error items into {err=}", function()
    conn:command("SET", "a", "1")
    local r = conn:command("MGET", "a", "missing", "a")
    assert.are.equal(3, #r)
    assert.are.equal(json.null, r[2])
    assert.are.equal('["1",null,"1"]', json.encode(r))
    conn:command("MULTI")
    conn:command("INCR", "a")
    conn:command("LPUSH", "a", "x")
    local res = conn:command("EXEC")
    assert.are.equal(2, res[1])
    assert.are.equal("WRONGTYPE Operation against a key holding the wrong kind of value", res[2].err)
  end)

  it("pipelines many commands in one round trip, with per-command errors", function()
    local cmds = {}
    for i = 1, 5000 do cmds[i] = { "SET", "p:" .. i, "v" .. i } end
    local r, errs = conn:pipeline(cmds)
    assert.is_nil(errs)
    assert.are.equal(5000, #r)
    assert.are.equal("OK", r[5000])
    r, errs = conn:pipeline({ { "GET", "p:7" }, { "LPUSH", "p:7", "x" }, { "GET", "nope" }, { "DBSIZE" } })
    assert.are.same({ "v7", false, json.null, 5000 }, r)
    assert.are.same({ [2] = "WRONGTYPE Operation against a key holding the wrong kind of value" }, errs)
    assert.are.same({}, conn:pipeline({}))
  end)

  it("checks every argument before sending anything", function()
    local ok, err = pcall(conn.pipeline, conn, { { "SET", "first", 1 }, { "SET", "second", {} } })
    assert.is_false(ok)
    assert.truthy(err:find("command 2, item 3: string or number expected, got table", 1, true), err)
    assert.are.equal(0, conn:command("EXISTS", "first"))
    ok, err = pcall(conn.command, conn, "SET", "k", true)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #4 .*got boolean"), err)
    ok = pcall(conn.pipeline, conn, "SET")
    assert.is_false(ok)
    assert.are.equal("PONG", conn:command("PING"))
  end)

  it("serves many tasks at once, on one connection and on several", function()
    local tasks = {}
    for i = 1, 50 do
      tasks[i] = task.spawn(function()
        local c = assert(open({ db = i % 4 }))
        c:command("SET", "t" .. i, i)
        local mine = c:command("GET", "t" .. i)
        local shared = conn:command("ECHO", "shared " .. i) -- replies stay in order
        c:close()
        return mine, shared
      end)
    end
    for i = 1, 50 do
      local ok, mine, shared = tasks[i]:join()
      assert.is_true(ok)
      assert.are.equal(tostring(i), mine)
      assert.are.equal("shared " .. i, shared)
    end
    assert.are.equal(12, conn:command("DBSIZE")) -- db 0 got i = 4, 8, ..., 48
  end)

  it("selects the database given", function()
    local c2 = assert(open({ db = 2 }))
    c2:command("SET", "where", "two")
    assert.is_nil(conn:command("GET", "where"))
    assert.are.equal("OK", conn:command("SELECT", 2))
    assert.are.equal("two", conn:command("GET", "where"))
    c2:close()
  end)

  it("authenticates ACL users and reports bad credentials clearly", function()
    local c = assert(open({ username = "reader", password = "reader-pw" }))
    assert.is_nil(c:command("GET", "x"))
    local r, err = c:command("SET", "x", "1")
    assert.is_nil(r)
    assert.truthy(err:find("^NOPERM"), err)
    c:close()
    local bad, berr = open({ password = "wrong" })
    assert.is_nil(bad)
    assert.are.equal("auth failed: WRONGPASS invalid username-password pair or user is disabled.", berr)
    bad, berr = open({ password = false })
    assert.is_nil(bad)
    assert.are.equal("ping failed: NOAUTH Authentication required.", berr)
  end)

  it("fails cleanly when the server is not there, and refuses TLS honestly", function()
    local c, err = open({ port = 1 })
    assert.is_nil(c)
    assert.are.equal("connection refused", err)
    c, err = open({ tls = true, ssl_ca = "/etc/ssl/certs/ca-certificates.crt" })
    assert.is_nil(c)
    assert.are.equal("tls not supported by this build's hiredis", err)
  end)

  it("says closed after close, and close twice is fine", function()
    local c = assert(open())
    assert.is_true(c:is_open())
    assert.is_true(c:close())
    assert.is_true(c:close())
    assert.is_false(c:is_open())
    local r, err = c:command("PING")
    assert.is_nil(r)
    assert.are.equal("closed", err)
    r, err = c:pipeline({ { "PING" } })
    assert.is_nil(r)
    assert.are.equal("closed", err)
    assert.truthy(tostring(c):find("closed", 1, true))
  end)
end)
