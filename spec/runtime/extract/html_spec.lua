-- HTML extraction through libxml2's push parser (runtime/extract/html.c):
-- what the SAX callbacks keep and drop, text that straddles the chunks the
-- parser is fed in, byte order marks, and the peak memory of a big page
-- file, which must stay near its text: no tree is built and the file is
-- parsed as it is read.
local extract = require("sluice.extract")

local TMP = "spec/.tmp"
local CHUNK = 256 * 1024 -- html.c's CHUNK

local function html(s)
  return assert(extract.text(s, { type = "html" }))
end

-- Bytes of process memory from /proc/self/status ("VmRSS", "VmHWM").
local function vm(key)
  local f = assert(io.open("/proc/self/status", "rb"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(key .. ":%s*(%d+) kB")) * 1024
end

describe("HTML extraction", function()
  it("keeps head metadata; text the head cannot hold opens the body, as in browsers", function()
    local r = html("<html><head><title> A\n  Title </title><meta name=\"Author\" content=\" Ann \">" ..
      "<meta name=\"dcterms.created\" content=\"2024-01-31\"><style>p{}</style><script>s()</script>" ..
      "</head><body><p>Body</p></body></html>")
    assert.are.same({ text = "Body", title = "A Title", author = "Ann", created = "2024-01-31",
      mime = "text/html" }, r)
    r = html("<html><head><title>T</title>stray text<meta name=author content=late></head><p>Body</p>")
    assert.are.same({ text = "stray text\nBody", title = "T", mime = "text/html" }, r)
  end)

  it("takes a stray <title> in the body as the title, not as text", function()
    local r = html("<body><p>one</p><title>Late</title><p>two</p></body>")
    assert.are.same({ "one\ntwo", "Late" }, { r.text, r.title })
  end)

  it("keeps <pre> as laid out, and an empty <pre> ends there", function()
    local r = html("<body><pre>a  b\n  c</pre><p>x   y</p><pre></pre><div>p   q\n r</div></body>")
    assert.are.equal("a  b\n  c\nx y\np q r", r.text)
  end)

  it("drops script, style, template, svg and noscript, however nested", function()
    local r = html("<body><div>a<script>var x = '<p>no</p>';</script>b<svg><text>no</text>" ..
      "<g><text>no</text></g></svg><template><p>no</p></template><noscript><b>no</b></noscript>c" ..
      "<style>@media { }</style></div><table><tr><td>1</td><td>2</td></tr></table></body>")
    assert.are.equal("abc\n1 2", r.text)
  end)

  it("decodes entities and UTF-8 that straddle the parser's chunks", function()
    for shift = 0, 7 do
      local lead = "<html><body><p>"
      local pad = string.rep("w ", math.floor((CHUNK - #lead - shift) / 2))
      pad = pad .. string.rep("w", CHUNK - #lead - shift - #pad)
      local doc = lead .. pad .. "&eacute;&#x20AC;€ä&amp;</p><p>end</p></body></html>"
      local r = html(doc)
      assert.are.equal("é€€ä&\nend", r.text:sub(-#"é€€ä&\nend"), "shift " .. shift)
    end
  end)

  it("reads UTF-16 with a BOM, and drops a UTF-8 BOM", function()
    local src = "<html><head><title>Ü</title></head><body><p>Grüße</p></body></html>"
    local le = src:gsub("[\1-\127]", "%0\0"):gsub("Ü", "\220\0"):gsub("ü", "\252\0"):gsub("ß", "\223\0")
    local r = html("\255\254" .. le)
    assert.are.same({ "Grüße", "Ü" }, { r.text, r.title })
    r = html("\239\187\191" .. src)
    assert.are.same({ "Grüße", "Ü" }, { r.text, r.title })
  end)

  it("keeps a page's text when some bytes are not in its declared charset", function()
    -- Shift_JIS: "あ" is 0x82 0xA0; 0xFF and a lone 0x80 are not Shift_JIS
    local r = html('<html><head><meta charset="shift_jis"><title>\130\160</title></head>' ..
      '<body><p>\130\160 ok \255 bad \128</p><p>end</p></body></html>')
    assert.are.same({ "あ ok \u{FFFD} bad \u{FFFD}\nend", "あ" }, { r.text, r.title })
    -- the same with the charset from a Content-Type meta
    r = html('<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"><p>\130\160\255</p>')
    assert.are.equal("あ\u{FFFD}", r.text)
    -- a two-byte character across every chunk boundary position, and one
    -- cut off by the end of the input
    for shift = 0, 3 do
      local lead = '<html><head><meta charset="shift_jis"></head><body><p>'
      local pad = string.rep("w", CHUNK - #lead - shift)
      r = html(lead .. pad .. "\130\160\130\162</p><p>end</p></body></html>")
      assert.are.equal("あい\nend", r.text:sub(-#"あい\nend"), "shift " .. shift)
    end
    r = html('<meta charset="shift_jis"><p>ok \130')
    assert.are.equal("ok \u{FFFD}", r.text)
  end)

  it("stops at max_chars with truncated set", function()
    local r = assert(extract.text("<body>" .. string.rep("<p>abcdefghij</p>", 100000) .. "</body>",
      { type = "html", max_chars = 25 }))
    assert.are.same({ "abcdefghij\nabcdefghij\nabc", true }, { r.text, r.truncated })
  end)

  it("gives the same result from a file, parsed as it is read, as from bytes", function()
    local path = TMP .. "/stream-page.html"
    local function same(doc, opts, name)
      local f = assert(io.open(path, "wb"))
      f:write(doc)
      f:close()
      local o = { name = "stream-page.html" } -- what a path gives as the hint
      for k, v in pairs(opts or {}) do o[k] = v end
      local a = { extract.text(doc, o) }
      o.path = true
      local b = { extract.text(path, o) }
      assert.are.same(a, b, name)
      return b[1]
    end
    local big = "<html><body>" .. string.rep("<p>plain words &amp; more</p>\n", 40000) .. "</body></html>"
    assert.are.equal(40000 * 19 - 1, #same(big, nil, "big").text)
    -- no charset, non-ASCII only past the head: the head decides, both ways
    same("<html><body>" .. string.rep("a ", 40000) .. "Stra\223e</body></html>", nil, "latin1 late")
    same("\255\254" .. ("<p>x</p>"):gsub(".", "%0\0"), nil, "utf-16")
    assert.is_true(same(big, { max_chars = 100 }, "capped").truncated)
    same("not markup at all, forced", { type = "html" }, "forced")
    same(big, { max_input = 1000 }, "too large")
    local r, err = extract.text(path, { path = true, max_input = 1000 })
    assert.are.same({ nil, "too large" }, { r, err })
    os.remove(path)
  end)

  it("extracts a 20 MB page file in little more than its text: no tree, no whole input", function()
    local maps = assert(io.open("/proc/self/maps", "rb"))
    local asan = maps:read("*a"):find("libasan", 1, true)
    maps:close()
    if asan then return pending("ASan's quarantine holds freed memory: the peak RSS means nothing") end
    local f = io.open("/proc/self/clear_refs", "wb")
    if not f then return pending("/proc/self/clear_refs is not writable: cannot reset the peak") end
    local path = TMP .. "/big-page.html"
    local out = assert(io.open(path, "wb"))
    out:write("<!DOCTYPE html><html><head><title>Big</title></head><body>\n")
    local rows, size = 0, 0
    local part = {}
    while size < 20 * 1024 * 1024 do
      rows = rows + 1
      local row = '<div class="row"><span class="k">key</span> <a href="#r' .. rows ..
        '" title="link">value ' .. rows .. "</a></div>\n"
      part[#part + 1] = row
      size = size + #row
      if #part == 1000 then out:write(table.concat(part)); part = {} end
    end
    out:write(table.concat(part), "</body></html>\n")
    out:close()
    collectgarbage()
    collectgarbage()
    assert(f:write("5")) -- resets VmHWM to the current RSS
    f:close()
    local base = vm("VmRSS")
    local r = assert(extract.text(path, { path = true }))
    local peak = vm("VmHWM") - base
    os.remove(path)
    assert.are.equal("Big", r.title)
    assert.are.equal("key value 1\nkey value 2\n", r.text:sub(1, 24))
    assert.are.equal("key value " .. rows, r.text:sub(-#("key value " .. rows)))
    local lines = select(2, r.text:gsub("\n", "")) + 1
    assert.are.equal(rows, lines)
    -- the text (grown by doubling) and its Lua copy, and slack: the file is
    -- parsed as it is read, so its 20 MB never sit in memory at once; a
    -- DOM of this page took 537 MB
    local bound = 3 * #r.text + 16 * 1024 * 1024
    assert.is_true(peak < bound, string.format("peak %.1f MB, bound %.1f MB", peak / 2 ^ 20, bound / 2 ^ 20))
  end)

  it("writes nothing to stderr when a page's bytes are not in its declared charset", function()
    local bin = os.getenv("SLUICE_BIN") or "./build/sluice"
    local dir = TMP .. "/html-charset"
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/bad.html", "wb"))
    f:write('<html><head><meta charset="shift_jis"></head><body>\130\160 ok \255\254\253\128 bad</body></html>')
    f:close()
    f = assert(io.open(dir .. "/run.lua", "wb"))
    f:write([[local fh = io.open(arg[1], "rb"); local data = fh:read("*a"); fh:close()
      local r = require("sluice.extract").text(data, { name = arg[1] })
      io.write(r and "ok" or "error")]])
    f:close()
    local p = io.popen(bin .. " lua " .. dir .. "/run.lua " .. dir .. "/bad.html 2>" .. dir .. "/stderr")
    local out = p:read("*a")
    p:close()
    local e = io.open(dir .. "/stderr", "rb")
    local err = e:read("*a")
    e:close()
    assert.are.equal("ok", out)
    -- libxml2's converter reports bad bytes through its per-thread generic
    -- error handler, which html.c silences on every thread that parses
    assert.are.equal("", err)
  end)
end)
