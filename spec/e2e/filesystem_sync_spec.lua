-- End to end: the real binary syncs a generated tree into the embedded
-- index, three times, and the index is searched through the CLI.
local cli = require("spec.support.cli")
local json = require("sluice.json")

local is_root = cli.sh("test \"$(id -u)\" = 0") == 0
-- Root reads chmod-000 files anyway; drop the capabilities that allow it so
-- the unreadable file really is unreadable.
local PREFIX = is_root and "setpriv --bounding-set=-dac_override,-dac_read_search " or ""

local function sync(config, extra)
  local args = { "sync", config, "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local rc, out, err = cli.run(args, PREFIX)
  local ok, summary = pcall(json.decode, out)
  assert(ok and type(summary) == "table", "bad sync output: " .. out .. "\n" .. err)
  return rc, summary, err
end

local function search(config, query, extra)
  local args = { "search", config, "search-tree", query, "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local rc, out, err = cli.run(args)
  if rc ~= 0 then return rc, nil, err end
  return rc, json.decode(out), err
end

local function ids(res)
  local out = {}
  for _, h in ipairs(res.hits) do out[#out + 1] = h.id end
  table.sort(out)
  return out
end

describe("filesystem sync end to end", function()
  local dir, tree, config

  setup(function()
    dir = cli.tmpdir()
    tree = dir .. "/tree"
    assert(cli.sh("mkdir -p " .. cli.q(tree .. "/unicode") .. " " .. cli.q(tree .. "/emoji")) == 0)
    cli.write(tree .. "/unicode/日本語.txt", "konnichiwa sekai\n")
    cli.write(tree .. "/emoji/🚀 launch.txt", "rocket launch countdown\n")
    cli.write(tree .. "/nul.txt", "before\0after zebra\n")
    cli.write(tree .. "/empty.txt", "")
    cli.write(tree .. "/secret.txt", "classified walrus\n")
    cli.write(tree .. "/bad\255name.txt", "latin one quokka\n")
    assert(cli.sh("chmod 000 " .. cli.q(tree .. "/secret.txt")) == 0)
    -- 20 MB of text: over the 10 MB default max_file_size
    assert(cli.sh("yes 'twenty megabytes of llama text' | head -c 20971520 > " .. cli.q(tree .. "/big.txt")) == 0)
    assert(cli.sh("printf 'zanzibar changelog entry\\n' | gzip -9 > " .. cli.q(tree .. "/changelog.Debian.gz")) == 0)
    config = dir .. "/sluice.yml"
    cli.write(config, table.concat({
      "data_dir: ./data",
      "connectors:",
      "  - id: tree",
      "    service_type: filesystem",
      "    index_name: search-tree",
      "    configuration:",
      "      path: " .. tree,
      "",
    }, "\n"))
  end)

  teardown(function() cli.rm_rf(dir) end)

  it("indexes every readable file and reports the unreadable one", function()
    local rc, s = sync(config)
    assert.are.equal("completed_with_errors", s.status)
    assert.are.equal(3, rc)
    assert.are.same({ 8, 7, 0, 0, 1, 7 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    assert.are.equal(tree .. "/secret.txt", s.error_samples[1].id)
    assert.truthy(s.error_samples[1].reason:find("EACCES", 1, true), s.error_samples[1].reason)
  end)

  it("finds unicode, emoji, NUL-stripped and gzip text", function()
    local _, r = search(config, "konnichiwa")
    assert.are.same({ tree .. "/unicode/日本語.txt" }, ids(r))
    _, r = search(config, "rocket countdown")
    assert.are.same({ tree .. "/emoji/🚀 launch.txt" }, ids(r))
    assert.are.equal("🚀 launch.txt", r.hits[1].doc.title)
    _, r = search(config, "zebra")
    assert.are.same({ tree .. "/nul.txt" }, ids(r))
    assert.are.equal("beforeafter zebra\n", r.hits[1].doc.body)
    _, r = search(config, "zanzibar")
    assert.are.same({ tree .. "/changelog.Debian.gz" }, ids(r))
    assert.are.equal("gzip", r.hits[1].doc.content_encoding)
    assert.are.equal("text/plain", r.hits[1].doc.mime_type)
    _, r = search(config, "quokka")
    assert.are.equal(1, r.total)
    assert.truthy(r.hits[1].id:match("^path%-sha256:%x+$"))
    assert.are.equal("bad\239\191\189name.txt", r.hits[1].doc.title)
  end)

  it("keeps metadata but no body for a file over max_file_size", function()
    local _, r = search(config, "walrus")
    assert.are.equal(0, r.total)
    _, r = search(config, "big.txt")
    assert.are.equal(1, r.total)
    local doc = r.hits[1].doc
    assert.are.equal(20971520, doc.size)
    assert.is_nil(doc.body)
    assert.are.equal("larger than max_file_size", doc.content_skipped)
  end)

  it("writes nothing when nothing changed", function()
    local rc, s = sync(config)
    assert.are.equal(3, rc)
    assert.are.same({ 8, 0, 7, 0, 1, 7 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
  end)

  it("picks up a change, a deletion and an addition", function()
    cli.write(tree .. "/nul.txt", "now about yaks\n")
    assert(cli.sh("touch -d '2001-02-03 04:05:06' " .. cli.q(tree .. "/nul.txt")) == 0)
    os.remove(tree .. "/changelog.Debian.gz")
    cli.write(tree .. "/unicode/new file.txt", "fresh narwhal\n")
    local rc, s = sync(config)
    assert.are.equal(3, rc)
    assert.are.same({ 8, 2, 5, 1, 1, 7 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    local _, r = search(config, "zanzibar")
    assert.are.equal(0, r.total)
    _, r = search(config, "zebra")
    assert.are.equal(0, r.total)
    _, r = search(config, "yaks")
    assert.are.same({ tree .. "/nul.txt" }, ids(r))
    assert.are.equal("2001-02-03T04:05:06.000Z", r.hits[1].doc._timestamp)
    _, r = search(config, "narwhal")
    assert.are.same({ tree .. "/unicode/new file.txt" }, ids(r))
  end)

  it("completes cleanly once the unreadable file is readable", function()
    assert(cli.sh("chmod 644 " .. cli.q(tree .. "/secret.txt")) == 0)
    local rc, s = sync(config)
    assert.are.equal(0, rc)
    assert.are.equal("completed", s.status)
    assert.are.same({ 8, 1, 7, 0, 0, 8 }, { s.listed, s.indexed, s.unchanged, s.deleted, s.errors, s.index_count })
    local _, r = search(config, "walrus")
    assert.are.same({ tree .. "/secret.txt" }, ids(r))
  end)

  it("deletes nothing when a directory cannot be listed", function()
    assert(cli.sh("chmod 000 " .. cli.q(tree .. "/unicode")) == 0)
    local rc, s = sync(config)
    assert(cli.sh("chmod 755 " .. cli.q(tree .. "/unicode")) == 0)
    assert.are.equal(3, rc)
    assert.are.equal("completed_with_errors", s.status)
    assert.are.equal(0, s.deleted)
    assert.are.equal(8, s.index_count)
    assert.truthy(s.message:find("nothing deleted", 1, true))
  end)

  it("deletes nothing when a folder can be listed but not entered", function()
    -- r without x: readdir works, every lstat inside fails with EACCES
    assert(cli.sh("chmod 644 " .. cli.q(tree .. "/unicode")) == 0)
    local rc, s = sync(config)
    assert(cli.sh("chmod 755 " .. cli.q(tree .. "/unicode")) == 0)
    assert.are.equal(3, rc)
    assert.are.equal("completed_with_errors", s.status)
    assert.are.equal(0, s.deleted)
    assert.are.equal(8, s.index_count)
    assert.truthy(s.message:find("EACCES", 1, true), s.message)
  end)

  it("rewrites everything with --full", function()
    local rc, s = sync(config, { "--full" })
    assert.are.equal(0, rc)
    assert.are.same({ 8, 8, 0, 0 }, { s.listed, s.indexed, s.unchanged, s.deleted })
  end)
end)
