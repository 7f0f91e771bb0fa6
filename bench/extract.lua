-- Extraction throughput per format on a real corpus: MB/s of input and
-- documents/s per CPU second (this process, its threads and its PDF
-- workers), and per wall second one document at a time and 4 in flight, with pdftotext
-- (poppler-utils, one process per file, as a user would run it) on the same
-- PDFs for comparison.
--   build/sluice lua bench/extract.lua [ROUNDS]
-- Corpus: HTML, text and gzip-compressed text from /usr/share/doc, the PDFs
-- under /usr/share/doc and those of the pssh, purifyeps and xmlformat-doc
-- packages (fetched into bench/.tmp with apt-get download when missing),
-- and the CSV/JSON/XML fixtures of spec/fixtures/extract scaled up.
local extract = require("sluice.extract")
local task = require("sluice.task")

local ROUNDS = tonumber(arg and arg[1]) or 3
local TMP = "bench/.tmp/extract"

local function lines(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local d = f:read("*a")
  f:close()
  return d
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

os.execute("mkdir -p " .. TMP)
if not io.open(TMP .. "/.pdfs") then
  os.execute("cd " .. TMP .. " && apt-get download pssh purifyeps xmlformat-doc >/dev/null 2>&1" ..
    " && for d in *.deb; do dpkg-deb -x \"$d\" x; done && touch .pdfs")
end
os.execute("python3 spec/fixtures/extract/make_fixtures.py " .. TMP .. "/fx")

-- Scaled-up data files: the fixtures are too small to time.
local function scaled(name, data, times)
  local path = TMP .. "/" .. name
  write(path, data:rep(times))
  return { path }
end
local header_csv = "name,city,amount\n"
local sets = {
  { "html", lines("find /usr/share/doc -type f -name '*.html' -size +1k | sort") },
  { "text", lines("find /usr/share/doc -type f \\( -name '*.txt' -o -name 'README' \\) | sort 2>/dev/null | head -300") },
  { "text.gz", lines("find /usr/share/doc -type f -name 'changelog*.gz' | sort 2>/dev/null | head -300") },
  { "pdf", lines("find /usr/share/doc " .. TMP .. "/x -type f -name '*.pdf' | sort") },
  { "csv", scaled("big.csv", header_csv .. ("Ada,London,12\n\"Lovelace, A.\",\"New York\",7\n"):rep(20000), 10) },
  { "json", scaled("big.json", "[" .. ('{"title": "JSON doc", "tags": ["x", "y\\u00e9"], "n": 3},'):rep(50000) .. '"end"]', 1) },
  { "xml", scaled("big.xml", "<r>" .. ("<e><t>First &amp; best</t><s>Alpha <b>bold</b></s></e>"):rep(50000) .. "</r>", 1) },
}

-- CPU seconds of this process (every thread), of its reaped children
-- (pdftotext runs) and of its live children (the pooled PDF workers), read
-- from /proc: on a shared machine CPU time is the figure to compare. A
-- worker recycled during a run counts its whole life, a small overstatement.
local TICK = 100 -- USER_HZ on Linux
local function stat_fields(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  if not line then return nil end
  local rest = line:match("%) (.*)$") -- after the command name, which may hold spaces
  local t = {}
  for v in rest:gmatch("%S+") do t[#t + 1] = v end
  return t -- t[1] is field 3 (state)
end
local self_pid = tonumber(io.open("/proc/self/stat"):read("*l"):match("^(%d+)"))
local function cpu()
  local t = stat_fields("/proc/self/stat")
  local total = (t[12] + t[13] + t[14] + t[15]) / TICK -- utime stime cutime cstime
  local p = io.popen("ls /proc")
  for pid in p:lines() do
    if pid:match("^%d+$") then
      local c = stat_fields("/proc/" .. pid .. "/stat")
      if c and tonumber(c[2]) == self_pid then total = total + (c[12] + c[13]) / TICK end
    end
  end
  p:close()
  return total
end

local function run_set(files, parallel)
  local datas, bytes = {}, 0
  for i, f in ipairs(files) do datas[i] = read(f); bytes = bytes + #datas[i] end
  local errs, t0, c0 = 0, task.now(), cpu()
  for _ = 1, ROUNDS do
    local next_i = 1
    local function worker()
      while next_i <= #datas do
        local i = next_i
        next_i = next_i + 1
        local r = extract.text(datas[i], { name = files[i], max_chars = 0 })
        if not r then errs = errs + 1 end
      end
    end
    local ts = {}
    for k = 1, parallel do ts[k] = task.spawn(worker) end
    for k = 1, parallel do ts[k]:join() end
  end
  local dt, dc = task.now() - t0, cpu() - c0
  return bytes * ROUNDS / dt / 1e6, #datas * ROUNDS / dt, errs / ROUNDS, bytes,
    bytes * ROUNDS / dc / 1e6, #datas * ROUNDS / dc
end

print(("%-9s %6s %9s | %10s %10s | %10s %9s | %10s %9s | %s"):format(
  "format", "docs", "MB", "MB/cpu-s", "docs/cpu-s", "MB/s x1", "docs/s", "MB/s x4", "docs/s", "errors"))
local pdf_files
for _, set in ipairs(sets) do
  local name, files = set[1], set[2]
  if name == "pdf" then pdf_files = files end
  if #files > 0 then
    run_set(files, 1) -- warm: page cache, PDF worker pool
    local mb1, dps1, errs, bytes, mbc, dpc = run_set(files, 1)
    local mb4, dps4 = run_set(files, 4)
    print(("%-9s %6d %9.2f | %10.1f %10.1f | %10.1f %9.1f | %10.1f %9.1f | %d"):format(
      name, #files, bytes / 1e6, mbc, dpc, mb1, dps1, mb4, dps4, errs))
  end
end

if pdf_files and #pdf_files > 0 and os.execute("command -v pdftotext >/dev/null") == 0 then
  local bytes = 0
  for _, f in ipairs(pdf_files) do bytes = bytes + #read(f) end
  local list = TMP .. "/pdfs.txt"
  write(list, table.concat(pdf_files, "\n") .. "\n")
  local loop = "while read f; do pdftotext \"$f\" - >/dev/null 2>&1; done < " .. list
  os.execute(loop)
  local t0, c0 = task.now(), cpu()
  for _ = 1, ROUNDS do os.execute(loop) end
  local dt, dc = task.now() - t0, cpu() - c0
  print(("%-9s %6d %9.2f | %10.1f %10.1f | %10.1f %9.1f | %10s %9s | (one process per file, sequential)"):format(
    "pdftotext", #pdf_files, bytes / 1e6, bytes * ROUNDS / dc / 1e6, #pdf_files * ROUNDS / dc,
    bytes * ROUNDS / dt / 1e6, #pdf_files * ROUNDS / dt, "-", "-"))
end
