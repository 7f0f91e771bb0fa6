-- HTML extraction on a real site: the Sphinx-built HTML of python3.11-doc
-- (fetched once with apt-get download + dpkg-deb -x into
-- spec/.tmp/pydoc-corpus; pending when apt cannot reach a mirror). Exact
-- titles, text and word counts of chosen pages, and over all 530 pages: no
-- error, and none of the head's or body's script and style text.
local extract = require("sluice.extract")

local CORPUS = "spec/.tmp/pydoc-corpus"
local HTML = CORPUS .. "/x/usr/share/doc/python3.11/html/"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local ready
local function corpus()
  if ready == nil then
    ready = exists(CORPUS .. "/.done") or os.execute("mkdir -p " .. CORPUS .. " && cd " .. CORPUS ..
      " && apt-get download python3.11-doc >/dev/null 2>&1" ..
      " && dpkg-deb -x python3.11-doc_*.deb x && touch .done") == 0
  end
  if not ready then pending("apt-get download python3.11-doc failed: no Debian mirror") end
  return ready
end

-- Each Debian upload of the package stamps its build date into every page
-- ("Last updated on October 07, 2026."): the date is masked so the figures
-- hold for whichever upload the mirror has.
local function page(name)
  local r = assert(extract.text(HTML .. name, { path = true }))
  local masked, n = r.text:gsub("Last updated on %a+ %d%d?, %d%d%d%d%.", "Last updated on DATE.")
  assert.are.equal(1, n, name .. ": no build date line")
  r.text = masked
  return r
end

local function words(s)
  return select(2, s:gsub("%S+", ""))
end

describe("python3.11-doc HTML", function()
  it("about.html: title, navigation and body text, entities decoded", function()
    if not corpus() then return end
    local r = page("about.html")
    assert.are.equal("About these documents — Python 3.11.2 documentation", r.title)
    assert.are.equal("text/html", r.mime)
    local head = "Table of Contents\nAbout these documents\nContributors to the Python Documentation\n" ..
      "Previous topic\nGlossary\nNext topic\nDealing with Bugs\n"
    assert.are.equal(head, r.text:sub(1, #head))
    local tail = "The Python Software Foundation is a non-profit corporation. Please donate.\n" ..
      "Last updated on DATE. Found a bug?\nCreated using Sphinx 5.3.0."
    assert.are.equal(tail, r.text:sub(-#tail))
    assert.are.same({ 2067, 317 }, { #r.text, words(r.text) })
  end)

  it("library/json.html: prose and code blocks as text", function()
    if not corpus() then return end
    local r = page("library/json.html")
    assert.are.equal("json — JSON encoder and decoder — Python 3.11.2 documentation", r.title)
    assert.truthy(r.text:find("JSON (JavaScript Object Notation), specified by RFC 7159 (which obsoletes " ..
      "RFC 4627) and by ECMA-404, is a lightweight data interchange format", 1, true))
    assert.truthy(r.text:find(">>> import json\n>>> json.dumps(['foo', {'bar': ('baz', None, 1.0, 2)}])\n" ..
      "'[\"foo\", {\"bar\": [\"baz\", null, 1.0, 2]}]'\n", 1, true))
    assert.are.same({ 24768, 3655 }, { #r.text, words(r.text) })
  end)

  it("search.html and builtdist.html: no inline script or style text", function()
    if not corpus() then return end
    local s = page("search.html")
    assert.is_nil(s.text:find("GLOSSARY_PAGE", 1, true))
    assert.is_nil(s.text:find("getJSON", 1, true))
    local b = page("distutils/builtdist.html")
    assert.is_nil(b.text:find("@media", 1, true))
    assert.is_nil(b.text:find("full-width-table", 1, true))
  end)

  it("every page extracts, as HTML, with no script or style text", function()
    if not corpus() then return end
    local p = assert(io.popen("cd " .. HTML .. " && find . -name '*.html' | sort"))
    local n, failed, leaked = 0, {}, {}
    for f in p:lines() do
      n = n + 1
      local r, err = extract.text(HTML .. f, { path = true })
      if not r then
        failed[#failed + 1] = f .. ": " .. err
      elseif r.mime ~= "text/html" or r.text:find("@media", 1, true) or r.text:find("jQuery(", 1, true) or
        r.text:find("DOCUMENTATION_OPTIONS", 1, true) or r.text:find("GLOSSARY_PAGE", 1, true) then
        leaked[#leaked + 1] = f
      end
    end
    p:close()
    assert.are.equal(530, n)
    assert.are.same({}, failed)
    assert.are.same({}, leaked)
  end)
end)
