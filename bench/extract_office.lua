-- OOXML (and ODF) extraction throughput: MB/s of input and documents/s.
--
-- usage: sluice lua bench/extract_office.lua [seconds-per-file]
--
-- Corpus: the Office files of the Debian packages r-cran-officer, aprx and
-- r-cran-readxl (fetched once into bench/.tmp/office-corpus with apt-get
-- download), plus the generated files of spec/fixtures/extract/make_office.py.
-- Each file is extracted from memory repeatedly for the given time (default
-- 1 s); figures are per format, input bytes over wall time, one task at a
-- time (extract.text runs on libuv's thread pool, the caller waits).
-- Target (issue 4): OOXML at least 50 MB/s of input.
local extract = require("sluice.extract")
local task = require("sluice.task")

local secs = tonumber(arg and arg[1]) or 1
local DIR = "bench/.tmp/office-corpus"

local function sh(cmd) return os.execute(cmd) == 0 end

if not io.open(DIR .. "/.done") then
  assert(sh("mkdir -p " .. DIR .. " && cd " .. DIR ..
    " && apt-get download r-cran-officer aprx r-cran-readxl >/dev/null 2>&1" ..
    " && for d in *.deb; do dpkg-deb -x \"$d\" x || exit 1; done && touch .done"),
    "apt-get download failed")
end
assert(sh("python3 spec/fixtures/extract/make_office.py " .. DIR .. "/gen >/dev/null"))

local files = {}
local p = io.popen("find " .. DIR .. "/x " .. DIR .. "/gen -maxdepth 8 -type f " ..
  "\\( -name '*.docx' -o -name '*.xlsx' -o -name '*.pptx' -o -name '*.odt' -o -name '*.ods'" ..
  " -o -name '*.odp' \\) ! -name 'bomb*' ! -name 'understated*' ! -name 'truncated*'" ..
  " ! -name 'laughs*' ! -name 'encrypted*' | sort")
for f in p:lines() do files[#files + 1] = f end
p:close()

local by = {}
for _, f in ipairs(files) do
  local fh = assert(io.open(f, "rb"))
  local data = fh:read("*a")
  fh:close()
  local ext = f:match("%.(%w+)$")
  local n, t0 = 0, task.now()
  repeat
    assert(extract.text(data, { name = f }))
    n = n + 1
  until task.now() - t0 >= secs
  local dt = task.now() - t0
  local s = by[ext] or { bytes = 0, time = 0, docs = 0, files = 0 }
  s.bytes, s.time, s.docs, s.files = s.bytes + #data * n, s.time + dt, s.docs + n, s.files + 1
  by[ext] = s
end

local ooxml = { bytes = 0, time = 0, docs = 0 }
print(string.format("%-6s %6s %10s %10s", "format", "files", "MB/s", "docs/s"))
for _, ext in ipairs({ "docx", "xlsx", "pptx", "odt", "ods", "odp" }) do
  local s = by[ext]
  if s then
    print(string.format("%-6s %6d %10.1f %10.0f", ext, s.files, s.bytes / s.time / 1e6, s.docs / s.time))
    if ext == "docx" or ext == "xlsx" or ext == "pptx" then
      ooxml.bytes, ooxml.time, ooxml.docs = ooxml.bytes + s.bytes, ooxml.time + s.time, ooxml.docs + s.docs
    end
  end
end
print(string.format("%-6s %6s %10.1f %10.0f   (target >= 50 MB/s)", "OOXML", "", ooxml.bytes / ooxml.time / 1e6,
  ooxml.docs / ooxml.time))
