-- sluice.fs inside the real runtime: a temp tree with hostile names (emoji,
-- bytes that are not UTF-8), broken and looping links, an unreadable file,
-- an empty file and a 20 MB file streamed in chunks; then every primitive's
-- values and error paths, glob tables, content types, and 50 concurrent
-- reads on the thread pool.
local fs = require("sluice.fs")
local task = require("sluice.task")

local BIG_SIZE = 20 * 1024 * 1024 + 7

local function sh(cmd)
  assert(os.execute(cmd) == 0, cmd)
end

local function put(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Adler-32, streamed: order-sensitive, so misordered chunks show.
local function adler()
  local a, b = 1, 0
  local st = {}
  function st.add(s)
    local byte = string.byte
    for i = 1, #s do
      a = (a + byte(s, i)) % 65521
      b = (b + a) % 65521
    end
  end
  function st.sum() return b * 65536 + a end
  return st
end

-- block i of the big file: distinct per block, so a repeated or skipped
-- block changes the sum
local function big_block(i, len)
  local head = string.format("block %08d|", i)
  local body = string.rep(string.char(i % 251, (i * 7) % 256, 10), math.ceil(len / 3))
  return (head .. body):sub(1, len)
end

local root, big_sum

local function P(name) return root .. "/" .. name end

setup(function()
  root = os.tmpname()
  os.remove(root)
  assert(fs.mkdir_p(root) == true)
  put(P("h\195\169llo.txt"), "hello unicode\n")
  put(P("\240\159\152\128 emoji.txt"), "emoji\n")
  put(P("bad\255\254.bin"), "not utf-8 name\n")
  put(P("empty"), "")
  put(P("small.txt"), "hello world")
  put(P("secret"), "top secret\n")
  put(P("table.txt"), "id,name,price\n1,apple,0.5\n2,pear,0.75\n3,plum,1.25\n")
  put(P("notes.md"), "# Notes\n\nSome plain words.\n")
  assert(fs.mkdir_p(P("sub/deep")) == true)
  put(P("sub/deep/file.txt"), "deep\n")
  sh("chmod 000 '" .. P("secret") .. "'")
  sh("ln -s nowhere '" .. P("broken") .. "'")
  sh("ln -s loop2 '" .. P("loop1") .. "' && ln -s loop1 '" .. P("loop2") .. "'")
  sh("ln -s sub '" .. P("sublink") .. "'")
  local f = assert(io.open(P("big.bin"), "wb"))
  local sum = adler()
  local left, i = BIG_SIZE, 0
  while left > 0 do
    local n = math.min(left, 1024 * 1024)
    local blk = big_block(i, n)
    f:write(blk)
    sum.add(blk)
    left, i = left - n, i + 1
  end
  f:close()
  big_sum = sum.sum()
end)

teardown(function()
  if root then
    os.execute("chmod -R u+rwx '" .. root .. "' 2>/dev/null; rm -rf '" .. root .. "'")
  end
end)

describe("fs.dir", function()
  it("lists every entry with its kind and raw-byte name", function()
    local got = {}
    for name, kind in fs.dir(root) do got[name] = kind end
    assert.are.same({
      ["h\195\169llo.txt"] = "file",
      ["\240\159\152\128 emoji.txt"] = "file",
      ["bad\255\254.bin"] = "file",
      empty = "file", ["small.txt"] = "file", secret = "file",
      ["table.txt"] = "file", ["notes.md"] = "file", ["big.bin"] = "file",
      sub = "directory", broken = "link", loop1 = "link", loop2 = "link",
      sublink = "link",
    }, got)
  end)

  it("fails like luv on a missing path and on a file", function()
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.dir(P("nope")) })
    assert.are.same({ nil, "ENOTDIR: not a directory", "ENOTDIR" },
      { fs.dir(P("small.txt")) })
  end)

  it("closes directories left by an early break", function()
    local function nfds()
      local n = 0
      for _ in fs.dir("/proc/self/fd") do n = n + 1 end
      return n
    end
    collectgarbage(); collectgarbage()
    local before = nfds()
    for _ = 1, 300 do
      for _ in fs.dir(root) do break end
    end
    collectgarbage(); collectgarbage()
    assert.are.equal(before, nfds())
  end)

  it("ends cleanly when called again after the end", function()
    local it = fs.dir(P("sub"))
    assert.are.same({ "deep", "directory" }, { it() })
    assert.is_nil(it())
    assert.is_nil(it())
  end)

  it("raises on a NUL byte in a path", function()
    assert.has_error(function() fs.dir(root .. "\0/x") end,
      "bad argument #1 to 'dir' (path contains a NUL byte)")
  end)
end)

describe("fs.stat and fs.lstat", function()
  it("describes a file exactly", function()
    sh("chmod 640 '" .. P("small.txt") .. "'")
    sh("touch -m -d @1500000000.123456789 '" .. P("small.txt") .. "'")
    local st = assert(fs.stat(P("small.txt")))
    assert.are.equal("file", st.type)
    assert.are.equal(11, st.size)
    assert.are.equal(416, st.mode) -- 0640
    assert.are.equal(123456789, st.mtime_ns)
    assert.is_true(math.abs(st.mtime - 1500000000.123456789) < 1e-6)
    assert.are.equal(1, st.nlink)
    local own = io.popen("stat -c '%i %u %g %d' '" .. P("small.txt") .. "'"):read("*l")
    assert.are.equal(own, string.format("%d %d %d %d", st.ino, st.uid, st.gid, st.dev))
  end)

  it("tells a directory, a link and its target apart", function()
    assert.are.equal("directory", fs.stat(P("sub")).type)
    assert.are.equal("directory", fs.stat(P("sublink")).type)
    assert.are.equal("link", fs.lstat(P("sublink")).type)
    assert.are.equal("link", fs.lstat(P("broken")).type)
    assert.are.equal(7, fs.lstat(P("broken")).size) -- "nowhere"
    assert.are.equal(BIG_SIZE, fs.stat(P("big.bin")).size)
    assert.are.equal(0, fs.stat(P("empty")).size)
  end)

  it("reports broken links and loops", function()
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.stat(P("broken")) })
    local _, err, code = fs.stat(P("loop1"))
    assert.are.equal("ELOOP", code)
    assert.are.equal("ELOOP: too many symbolic links encountered", err)
  end)
end)

describe("fs.readlink and fs.realpath", function()
  it("reads link targets", function()
    assert.are.equal("nowhere", fs.readlink(P("broken")))
    assert.are.equal("loop2", fs.readlink(P("loop1")))
    assert.are.same({ nil, "EINVAL: invalid argument", "EINVAL" },
      { fs.readlink(P("small.txt")) })
  end)

  it("resolves dots and links", function()
    local real = assert(fs.realpath(root))
    assert.are.equal(real .. "/sub/deep/file.txt",
      fs.realpath(P("sublink/../sub/./deep/file.txt")))
    assert.are.equal(real .. "/h\195\169llo.txt", fs.realpath(P("sub/../h\195\169llo.txt")))
    assert.are.equal("ELOOP", select(3, fs.realpath(P("loop1"))))
    assert.are.equal("ENOENT", select(3, fs.realpath(P("broken"))))
  end)
end)

describe("fs.read", function()
  it("reads small, unicode-named, odd-named and empty files", function()
    assert.are.same({ "hello world", false }, { fs.read(P("small.txt")) })
    assert.are.same({ "hello unicode\n", false }, { fs.read(P("h\195\169llo.txt")) })
    assert.are.same({ "emoji\n", false }, { fs.read(P("\240\159\152\128 emoji.txt")) })
    assert.are.same({ "not utf-8 name\n", false }, { fs.read(P("bad\255\254.bin")) })
    assert.are.same({ "", false }, { fs.read(P("empty")) })
  end)

  it("truncates at max_bytes and says so", function()
    assert.are.same({ "hello", true }, { fs.read(P("small.txt"), 5) })
    assert.are.same({ "hello world", false }, { fs.read(P("small.txt"), 11) })
    assert.are.same({ "hello world", false }, { fs.read(P("small.txt"), 1000) })
    assert.are.same({ "", true }, { fs.read(P("small.txt"), 0) })
    assert.are.same({ "", false }, { fs.read(P("empty"), 0) })
    local s, tr = fs.read(P("big.bin"), 1000)
    assert.are.equal(big_block(0, 1000), s)
    assert.is_true(tr)
  end)

  it("reads the whole 20 MB file", function()
    local s, tr = fs.read(P("big.bin"))
    assert.are.equal(BIG_SIZE, #s)
    assert.is_false(tr)
    local sum = adler()
    sum.add(s)
    assert.are.equal(big_sum, sum.sum())
  end)

  it("reads files whose size stat does not know", function()
    local s = assert(fs.read("/proc/self/status"))
    assert.truthy(s:find("\nPid:", 1, true))
  end)

  it("fails like luv", function()
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.read(P("nope")) })
    assert.are.same({ nil, "EISDIR: illegal operation on a directory", "EISDIR" },
      { fs.read(P("sub")) })
    assert.are.equal("ELOOP", select(3, fs.read(P("loop1"))))
    assert.are.equal("ENOENT", select(3, fs.read(P("broken"))))
  end)

  it("raises on misuse", function()
    assert.has_error(function() fs.read(P("small.txt"), -1) end,
      "bad argument #2 to 'read' (must be a number >= 0)")
    assert.has_error(function() fs.read(nil) end)
    assert.has_error(function() fs.read(P("small.txt"), "x") end)
  end)

  it("blocks instead of yielding outside a task", function()
    local co = coroutine.wrap(function()
      local a, b = fs.read(P("small.txt"), 5)
      local c = { fs.read(P("nope")) }
      local f = fs.open(P("small.txt"))
      local d = f:read(4)
      return a, b, c, d, fs.mime_file(P("table.txt"))
    end)
    local a, b, c, d, m = co()
    assert.are.same({ "hello", true }, { a, b })
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" }, c)
    assert.are.equal("hell", d)
    assert.are.equal("text/csv", m)
  end)

  it("runs 50 reads at once, each with its own content", function()
    for i = 1, 50 do
      put(P("conc" .. i), string.rep(string.format("file %02d;", i), i * 300))
    end
    local ts = {}
    for i = 1, 50 do
      ts[i] = task.spawn(function() return fs.read(P("conc" .. i)) end)
    end
    local waiting = 0
    for i = 1, 50 do
      if ts[i]:status() ~= "done" then waiting = waiting + 1 end
    end
    assert.are.equal(50, waiting) -- none ran inline
    for i = 1, 50 do
      local ok, s, tr = ts[i]:join()
      assert.is_true(ok)
      assert.are.equal(string.rep(string.format("file %02d;", i), i * 300), s)
      assert.is_false(tr)
    end
  end)

  it("survives cancelled reads and keeps serving others", function()
    local ts = {}
    for i = 1, 6 do ts[i] = task.spawn(fs.read, P("big.bin")) end
    task.yield()
    for i = 1, 6, 2 do assert.is_true(ts[i]:cancel()) end
    for i = 1, 6 do
      local ok, s = ts[i]:join()
      if i % 2 == 1 then
        assert.are.same({ nil, "cancelled" }, { ok, s })
      else
        assert.are.equal(BIG_SIZE, #s)
      end
    end
    assert.are.same({ "hello world", false }, { fs.read(P("small.txt")) })
  end)
end)

describe("unreadable files", function()
  local is_root = io.popen("id -u"):read("*l") == "0"

  it("gives EACCES", function()
    if not is_root then
      assert.are.same({ nil, "EACCES: permission denied", "EACCES" },
        { fs.read(P("secret")) })
      assert.are.equal("EACCES", select(3, fs.open(P("secret"))))
      assert.is_false(fs.access(P("secret"), "r"))
      return
    end
    -- root reads mode 000 files; ask the same binary as root without the
    -- capabilities that bypass file modes (the checkout may be under /root,
    -- which nobody could not read)
    if os.execute("command -v setpriv >/dev/null 2>&1") ~= 0 then
      pending("running as root and setpriv is missing: cannot drop privileges to test EACCES")
      return
    end
    local script = P("eacces.lua")
    put(script, [[
local fs = require("sluice.fs")
local p = ...
local a = { fs.read(p) }
local b = { fs.open(p) }
io.write(tostring(a[1]), "|", a[2], "|", a[3], "|", b[3], "|",
  tostring(fs.access(p, "r")), "|", tostring(fs.access(p, "w")), "\n")
]])
    local exe = assert(fs.readlink("/proc/self/exe"))
    local home = assert(fs.realpath(fs.dirname(exe) .. "/.."))
    local cmd = string.format(
      "SLUICE_HOME='%s' setpriv --bounding-set=-dac_override,-dac_read_search '%s' lua '%s' '%s' 2>&1",
      os.getenv("SLUICE_HOME") or home, exe, script, P("secret"))
    local out = io.popen(cmd):read("*a")
    assert.are.equal("nil|EACCES: permission denied|EACCES|EACCES|false|false\n", out)
  end)
end)

describe("fs.open streaming", function()
  it("streams the 20 MB file in chunks with the exact bytes", function()
    local f = assert(fs.open(P("big.bin")))
    local sum, total, reads = adler(), 0, 0
    while true do
      local s = assert(f:read(1000003))
      if s == "" then break end
      total = total + #s
      reads = reads + 1
      sum.add(s)
    end
    assert.are.equal(BIG_SIZE, total)
    assert.are.equal(21, reads)
    assert.are.equal(big_sum, sum.sum())
    assert.are.equal("", f:read())
    assert.is_true(f:close())
    assert.has_error(function() f:read(1) end, "attempt to use a closed file")
  end)

  it("reads an empty file as EOF at once", function()
    local f = assert(fs.open(P("empty")))
    assert.are.equal("", f:read(10))
    f:close()
  end)

  it("fails on a directory at read time and on missing files at open", function()
    local f = assert(fs.open(P("sub")))
    assert.are.same({ nil, "EISDIR: illegal operation on a directory", "EISDIR" },
      { f:read(10) })
    f:close()
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.open(P("nope")) })
  end)

  it("checks its arguments", function()
    local f = assert(fs.open(P("small.txt")))
    assert.has_error(function() f:read(0) end,
      "bad argument #1 to 'read' (must be between 1 and 2^30)")
    assert.has_error(function() f.read(42, 1) end)
    f:close()
  end)

  it("closes on __gc", function()
    local function nfds()
      local n = 0
      for _ in fs.dir("/proc/self/fd") do n = n + 1 end
      return n
    end
    collectgarbage(); collectgarbage()
    local before = nfds()
    for _ = 1, 200 do fs.open(P("small.txt")) end
    collectgarbage(); collectgarbage()
    assert.are.equal(before, nfds())
  end)
end)

describe("changes", function()
  it("writes atomically and replaces", function()
    local p = P("out/state.json")
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.write(p, "x") })
    assert.is_true(fs.mkdir_p(P("out")))
    assert.is_true(fs.write(p, "first"))
    assert.is_true(fs.write(p, "second\0with nul"))
    assert.are.equal("second\0with nul", fs.read(p))
    assert.is_false(fs.exists(p .. ".tmp"))
    assert.are.same({ nil, "EISDIR: illegal operation on a directory", "EISDIR" },
      { fs.write(P("out"), "x") })
    assert.is_false(fs.exists(P("out.tmp")))
  end)

  it("creates nested directories", function()
    assert.is_true(fs.mkdir_p(P("m/a//b/c/")))
    assert.are.equal("directory", fs.stat(P("m/a/b/c")).type)
    assert.is_true(fs.mkdir_p(P("m/a/b/c")))
    assert.is_true(fs.mkdir_p(P("m/x"), tonumber("700", 8)))
    assert.are.equal(tonumber("700", 8), fs.stat(P("m/x")).mode)
    assert.are.same({ nil, "EEXIST: file already exists", "EEXIST" },
      { fs.mkdir_p(P("small.txt")) })
    assert.are.same({ nil, "ENOTDIR: not a directory", "ENOTDIR" },
      { fs.mkdir_p(P("small.txt/x")) })
  end)

  it("removes and renames", function()
    put(P("gone"), "x")
    assert.is_true(fs.rename(P("gone"), P("moved")))
    assert.is_false(fs.exists(P("gone")))
    assert.are.equal("x", fs.read(P("moved")))
    assert.is_true(fs.remove(P("moved")))
    assert.is_false(fs.exists(P("moved")))
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.remove(P("moved")) })
    assert.are.equal("ENOTEMPTY", select(3, fs.remove(P("m"))))
    assert.are.equal("ENOENT", select(3, fs.rename(P("moved"), P("x"))))
  end)

  it("answers exists and access", function()
    assert.is_true(fs.exists(P("small.txt")))
    assert.is_true(fs.exists(P("sub")))
    assert.is_false(fs.exists(P("broken")))
    assert.is_false(fs.exists(P("loop1")))
    assert.is_true(fs.access(P("empty"), "r"))
    assert.is_true(fs.access(P("sub"), "rwx"))
    assert.is_false(fs.access(P("empty"), "x"))
    assert.is_false(fs.access(P("nope"), "r"))
    assert.has_error(function() fs.access(P("empty"), "q") end)
    assert.has_error(function() fs.access(P("empty"), "") end)
  end)
end)

describe("fs.mime", function()
  local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0"
  it("names content by its bytes", function()
    assert.are.same({ "text/plain", "us-ascii" }, { fs.mime("hello world\n") })
    assert.are.same({ "text/plain", "utf-8" }, { fs.mime("h\195\169llo \240\159\152\128\n") })
    assert.are.same({ "text/html", "us-ascii" },
      { fs.mime("<!DOCTYPE html>\n<html><head><title>x</title></head><body>hi</body></html>\n") })
    assert.are.same({ "application/gzip", "binary" },
      { fs.mime("\31\139\8\0\0\0\0\0\0\3\203\72\205\201\201\231\2\0\32\48\58\54\6\0\0\0") })
    assert.are.equal("application/pdf",
      fs.mime("%PDF-1.4\n%\226\227\207\211\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"))
    assert.are.same({ "image/png", "binary" }, { fs.mime(PNG) })
    assert.are.same({ "application/x-empty", "binary" }, { fs.mime("") })
    assert.are.same({ "application/octet-stream", "binary" }, { fs.mime("\0\1\2\3\255\254\0\0\1") })
  end)

  it("lets a name refine only plain text", function()
    assert.are.same({ "text/markdown", "us-ascii" }, { fs.mime("# T\n\nwords\n", "a/README.md") })
    assert.are.same({ "text/html", "us-ascii" }, { fs.mime("just words\n", "page.HTML") })
    assert.are.same({ "image/png", "binary" }, { fs.mime(PNG, "x.html") })
    assert.are.same({ "application/octet-stream", "binary" }, { fs.mime("\0\1\2\3\255\254\0\0\1", "a.txt") })
    assert.are.same({ "text/plain", "us-ascii" }, { fs.mime("just words\n", "noext") })
    assert.are.same({ "text/plain", "us-ascii" }, { fs.mime("just words\n", ".md") })
  end)

  it("reads a file's head for mime_file", function()
    -- a CSV named .txt is CSV: content decides
    assert.are.same({ "text/csv", "us-ascii" }, { fs.mime_file(P("table.txt")) })
    assert.are.same({ "text/markdown", "us-ascii" }, { fs.mime_file(P("notes.md")) })
    assert.are.same({ "application/x-empty", "binary" }, { fs.mime_file(P("empty")) })
    assert.are.same({ "application/octet-stream", "binary" }, { fs.mime_file(P("big.bin")) })
    assert.are.same({ nil, "ENOENT: no such file or directory", "ENOENT" },
      { fs.mime_file(P("nope")) })
  end)
end)

describe("fs.glob_match", function()
  local cases = {
    { "*.txt", "a.txt", true },
    { "*.txt", "a/b/c.txt", true },
    { "*.txt", "a/b/c.txt/d", false },
    { "*.txt", "a.txt.bak", false },
    { "/*.txt", "a.txt", true },
    { "/*.txt", "a/b.txt", false },
    { "a/*.txt", "a/x.txt", true },
    { "a/*.txt", "b/a/x.txt", false },
    { "a/*.txt", "a/b/x.txt", false },
    { "**/x", "x", true },
    { "**/x", "a/b/x", true },
    { "**/x", "a/b/xy", false },
    { "a/**/b", "a/b", true },
    { "a/**/b", "a/x/y/b", true },
    { "a/**/b", "a/x/y/c", false },
    { "a/**/b/*.c", "a/q/b/z.c", true },
    { "a/**", "a", false },
    { "a/**", "a/b", true },
    { "a/**", "a/b/c/d", true },
    { "a/**", "b/a/c", false },
    { "**", "any/path/at/all", true },
    { "?.c", "x.c", true },
    { "?.c", "xy.c", false },
    { "a?b", "a/b", false },
    { "a*b", "a/b", false },
    { "[abc].md", "b.md", true },
    { "[abc].md", "d.md", false },
    { "[a-c]x", "cx", true },
    { "[!a-c]x", "cx", false },
    { "[!a-c]x", "dx", true },
    { "[]]", "]", true },
    { "\\*", "*", true },
    { "\\*", "x", false },
    { "build/", "src/build", true },
    { "*", ".hidden", true },
    { "?", "\195\169", true },
    { "??", "\195\169", false },
    { "*\240\159\152\128*", "x\240\159\152\128y", true },
    { "*.bin", "bad\255\254.bin", true },
    { "", "a", false },
    { "*", "", false },
    { "A.txt", "a.txt", false },
  }
  it("matches " .. #cases .. " pattern/path pairs exactly", function()
    for _, c in ipairs(cases) do
      local got = fs.glob_match(c[1], c[2])
      assert(got == c[3], string.format("glob_match(%q, %q) = %s, want %s",
        c[1], c[2], tostring(got), tostring(c[3])))
    end
  end)

  it("stays fast on patterns that defeat naive backtracking", function()
    local t0 = task.now()
    assert.is_false(fs.glob_match(string.rep("*a", 40) .. "*b", string.rep("a", 50000)))
    assert.is_false(fs.glob_match(string.rep("**/a/", 200) .. "b", string.rep("a/", 2000) .. "c"))
    assert.is_true(task.now() - t0 < 2)
  end)
end)

describe("path strings", function()
  it("splits and joins", function()
    local base = { { "a/b/c", "c" }, { "a/b/", "b" }, { "/", "/" }, { "", "." },
      { "c", "c" }, { "//x//", "x" } }
    for _, c in ipairs(base) do assert.are.equal(c[2], fs.basename(c[1])) end
    local dir = { { "a/b/c", "a/b" }, { "a", "." }, { "/a", "/" }, { "a/b/", "a" },
      { "/", "/" }, { "", "." }, { "a//b", "a" } }
    for _, c in ipairs(dir) do assert.are.equal(c[2], fs.dirname(c[1])) end
    assert.are.equal("a/b/c", fs.join("a", "b", "c"))
    assert.are.equal("a/b", fs.join("a/", "/b"))
    assert.are.equal("/r/etc/x", fs.join("/r", "/etc/x"))
    assert.are.equal("/x", fs.join("/", "x"))
    assert.are.equal("a/b", fs.join("", "a", "", "b"))
    assert.are.equal("a", fs.join("a"))
    assert.are.equal("a/\255", fs.join("a", "\255"))
    assert.has_error(function() fs.join("a", {}) end)
  end)

  it("knows the working directory", function()
    assert.are.equal(io.popen("pwd -P"):read("*l"), fs.realpath(fs.cwd()))
  end)
end)
