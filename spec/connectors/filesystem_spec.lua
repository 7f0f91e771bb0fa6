-- The filesystem connector in-process: its listing and its documents, with
-- the engine replaced by a recorder, so every setting and every odd entry
-- (links, loops, vanishing files, lying extensions) has an exact expectation.
-- The real CLI on a generated tree is spec/e2e/filesystem_sync_spec.lua.
local config = require("sluice.config")
local cli = require("spec.support.cli")
local sys = require("sluice.sys")

local function sh(cmd) assert.are.equal(0, (cli.sh(cmd))) end

describe("filesystem connector", function()
  local dir, tree

  -- Parses a config for `tree` with extra configuration lines, lists it
  -- and returns docs (by path relative to tree), errors and incompletes.
  -- on_doc(doc, rel) runs as each document is yielded, before its content
  -- is read, as the engine does.
  local function list(extra, on_doc)
    local lines = { "data_dir: ./data", "connectors:", "  - id: t", "    service_type: filesystem",
      "    configuration:", "      path: " .. tree }
    for _, l in ipairs(extra or {}) do lines[#lines + 1] = "      " .. l end
    local cfg = assert(config.parse(table.concat(lines, "\n") .. "\n", dir .. "/c.yml"))
    local conn = cfg.connectors[1]
    local docs, order, errors, incomplete = {}, {}, {}, {}
    local ctx = {
      config = conn.configuration,
      log = { debug = function() end, info = function() end, warn = function() end },
      yield = function(doc)
        local rel = doc.path:sub(#tree + 2)
        if on_doc then on_doc(doc, rel) end
        if doc._content then
          local fields, err = doc._content(doc)
          doc._content = nil
          if fields then
            for k, v in pairs(fields) do doc[k] = v end
          else
            doc.content_error = err
          end
        end
        docs[rel] = doc
        order[#order + 1] = rel
      end,
      error = function(id, reason) errors[#errors + 1] = { id, reason } end,
      incomplete = function(reason) incomplete[#incomplete + 1] = reason end,
    }
    conn.definition.docs(ctx)
    table.sort(order)
    return docs, order, errors, incomplete
  end

  before_each(function()
    dir = cli.tmpdir()
    -- realpath: the connector normalises paths textually, so the ids of a
    -- tree under a symlinked /tmp would differ from what we build here
    tree = sys.realpath(dir) .. "/tree"
    sh("mkdir -p " .. cli.q(tree))
  end)
  after_each(function() cli.rm_rf(dir) end)

  it("gives each file its fields, mtime as _timestamp and text as body", function()
    cli.write(tree .. "/Notes.TXT", "hello fields\n")
    sh("touch -d '2001-02-03 04:05:06 UTC' " .. cli.q(tree .. "/Notes.TXT"))
    local docs, order, errors, incomplete = list()
    assert.are.same({ "Notes.TXT" }, order)
    local d = docs["Notes.TXT"]
    assert.are.same({
      _id = tree .. "/Notes.TXT", _timestamp = 981173106, title = "Notes.TXT",
      path = tree .. "/Notes.TXT", extension = "txt", size = 13,
      mime_type = "text/plain", charset = "us-ascii", body = "hello fields\n",
    }, d)
    assert.are.same({}, errors)
    assert.are.same({}, incomplete)
  end)

  it("sniffs the type from the content, the extension only a hint", function()
    -- a PNG signature under a .txt name, text under .bin, HTML with no extension
    cli.write(tree .. "/photo.txt", "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\2\0\0\0\144wS\222" ..
      string.rep("\0", 64))
    cli.write(tree .. "/data.bin", "plain words in a binary-named file\n")
    cli.write(tree .. "/README", "<!DOCTYPE html>\n<html><head><title>Readme page</title>" ..
      "<script>var hidden = 1;</script></head><body><p>Visible &amp; kept</p></body></html>\n")
    local docs = list()
    assert.are.equal("image/png", docs["photo.txt"].mime_type)
    assert.are.equal("txt", docs["photo.txt"].extension)
    assert.is_nil(docs["photo.txt"].body)
    assert.is_nil(docs["photo.txt"].content_error)
    assert.are.equal("text/plain", docs["data.bin"].mime_type)
    assert.are.equal("plain words in a binary-named file\n", docs["data.bin"].body)
    assert.are.equal("text/html", docs["README"].mime_type)
    assert.are.equal("", docs["README"].extension)
    assert.are.equal("Readme page", docs["README"].content_title)
    assert.truthy(docs["README"].body:find("Visible & kept", 1, true), docs["README"].body)
    assert.falsy(docs["README"].body:find("hidden", 1, true), docs["README"].body)
  end)

  it("decompresses gzip text and keeps the inner extension", function()
    sh("printf 'inflated changelog words\\n' | gzip -9 > " .. cli.q(tree .. "/changelog.Debian.gz"))
    sh("printf 'notes inside\\n' | gzip > " .. cli.q(tree .. "/notes.md.gz"))
    local docs = list()
    local c = docs["changelog.Debian.gz"]
    assert.are.same({ "gzip", "text/plain", "inflated changelog words\n", "debian" },
      { c.content_encoding, c.mime_type, c.body, c.extension })
    assert.are.same({ "gzip", "notes inside\n", "md" },
      { docs["notes.md.gz"].content_encoding, docs["notes.md.gz"].body, docs["notes.md.gz"].extension })
  end)

  it("keeps metadata only over max_file_size, before or after inflating", function()
    local hundred = string.rep("0123456789", 10)
    cli.write(tree .. "/small.txt", hundred)
    cli.write(tree .. "/large.txt", hundred .. "A")
    -- about 30 bytes compressed, 1,000 inflated
    sh("head -c 1000 /dev/zero | tr '\\0' a | gzip -9 > " .. cli.q(tree .. "/bomb.txt.gz"))
    local docs, _, errors = list({ "max_file_size: 100" })
    assert.are.equal(hundred, docs["small.txt"].body)
    assert.are.same({ 101, "larger than max_file_size" }, { docs["large.txt"].size, docs["large.txt"].content_skipped })
    assert.is_nil(docs["large.txt"].body)
    local b = docs["bomb.txt.gz"]
    assert.are.same({ "gzip", "decompressed size over max_file_size" }, { b.content_encoding, b.content_skipped })
    assert.is_nil(b.body)
    assert.are.same({}, errors)
  end)

  it("applies include and exclude globs to paths relative to the root", function()
    sh("mkdir -p " .. cli.q(tree .. "/src/deep") .. " " .. cli.q(tree .. "/build") .. " " .. cli.q(tree .. "/docs"))
    for _, p in ipairs({ "a.txt", "a.log", "src/b.txt", "src/deep/c.txt", "src/deep/d.md",
      "build/e.txt", "docs/f.md" }) do
      cli.write(tree .. "/" .. p, p .. "\n")
    end
    local _, all = list()
    assert.are.same({ "a.log", "a.txt", "build/e.txt", "docs/f.md", "src/b.txt", "src/deep/c.txt", "src/deep/d.md" }, all)
    local _, inc = list({ "include: ['*.txt']" })
    assert.are.same({ "a.txt", "build/e.txt", "src/b.txt", "src/deep/c.txt" }, inc)
    local _, exc = list({ "exclude: ['build', 'src/**/*.md', '*.log']" })
    assert.are.same({ "a.txt", "docs/f.md", "src/b.txt", "src/deep/c.txt" }, exc)
    local _, both = list({ "include: ['src/**']", "exclude: ['deep']" })
    assert.are.same({ "src/b.txt" }, both)
    -- a comma-separated string is a list too (Elastic's UI sends those)
    local _, csv = list({ "include: '*.md, a.*'" })
    assert.are.same({ "a.log", "a.txt", "docs/f.md", "src/deep/d.md" }, csv)
  end)

  it("skips symlinks by default and follows them, cutting loops, when asked", function()
    sh("mkdir -p " .. cli.q(dir .. "/outside") .. " " .. cli.q(tree .. "/real"))
    cli.write(dir .. "/outside/o.txt", "outside text\n")
    cli.write(tree .. "/real/r.txt", "real text\n")
    sh("cd " .. cli.q(tree) .. " && ln -s ../outside out && ln -s real/r.txt r-link.txt" ..
      " && ln -s . loop && ln -s missing.txt broken.txt && ln -s self self")
    local _, order, errors, incomplete = list()
    assert.are.same({ "real/r.txt" }, order)
    assert.are.same({}, errors)
    assert.are.same({}, incomplete)
    local docs
    docs, order, errors, incomplete = list({ "follow_symlinks: true" })
    -- "loop" leads back to the root, already visited: cut, not walked again
    assert.are.same({ "out/o.txt", "r-link.txt", "real/r.txt" }, order)
    assert.are.equal("real text\n", docs["r-link.txt"].body)
    assert.are.equal(tree .. "/r-link.txt", docs["r-link.txt"]._id)
    assert.are.equal("outside text\n", docs["out/o.txt"].body)
    -- the broken link and the self-loop are skipped, not errors
    assert.are.same({}, errors)
    assert.are.same({}, incomplete)
  end)

  it("skips files that vanish before they are seen and errs on ones that vanish before they are read", function()
    for i = 1, 20 do cli.write(string.format("%s/f%02d.txt", tree, i), "file " .. i .. "\n") end
    local removed = false
    local docs, order, errors, incomplete = list(nil, function(doc, rel)
      if not removed then
        -- the first file listed loses every other file, its own body too
        removed = true
        sh("cd " .. cli.q(tree) .. " && rm -f f*.txt")
        doc.first = rel
      end
    end)
    -- entries already read from the directory fail lstat with ENOENT and are
    -- skipped; the one in hand fails its read: a document error, not a failure
    assert.are.equal(1, #order)
    local d = docs[order[1]]
    assert.are.equal(order[1], d.first)
    assert.truthy(tostring(d.content_error):find("ENOENT", 1, true), tostring(d.content_error))
    assert.are.same({}, errors)
    assert.are.same({}, incomplete)
  end)

  it("hashes a name that is not UTF-8 into a stable id and keeps the raw path", function()
    cli.write(tree .. "/caf\233.txt", "latin-1 name\n")
    local docs, order = list()
    local d = docs[order[1]]
    assert.are.equal("caf\233.txt", order[1])
    assert.are.equal("path-sha256:" .. require("sluice.crypto").hex(require("sluice.crypto").sha256(tree .. "/caf\233.txt")), d._id)
    assert.are.equal("latin-1 name\n", d.body)
    assert.are.same({ d._id }, { (list())[order[1]]._id })
  end)

  it("reports a folder it cannot list as incomplete and a file root as one document", function()
    sh("mkdir -p " .. cli.q(tree .. "/locked") .. " && chmod 000 " .. cli.q(tree .. "/locked"))
    cli.write(tree .. "/ok.txt", "fine\n")
    local rc = cli.sh("setpriv --bounding-set=-dac_override,-dac_read_search true")
    if rc == 0 and cli.sh("test \"$(id -u)\" = 0") == 0 then
      -- root lists chmod-000 folders anyway: see that from a child without
      -- the capabilities, through the real CLI
      cli.write(dir .. "/c.yml", "data_dir: ./data\nconnectors:\n  - id: t\n    service_type: filesystem\n" ..
        "    configuration:\n      path: " .. tree .. "\n")
      local code, out = cli.sh("setpriv --bounding-set=-dac_override,-dac_read_search " .. cli.bin ..
        " sync " .. cli.q(dir .. "/c.yml") .. " --json")
      local s = require("sluice.json").decode(out)
      assert.are.equal(3, code)
      assert.are.same({ "completed_with_errors", 1, 0 }, { s.status, s.indexed, s.deleted })
      assert.truthy(s.message:find(tree .. "/locked: EACCES", 1, true), s.message)
    else
      local _, order, _, incomplete = list()
      assert.are.same({ "ok.txt" }, order)
      assert.are.equal(1, #incomplete)
      assert.truthy(incomplete[1]:find(tree .. "/locked: EACCES", 1, true), incomplete[1])
    end
    sh("chmod 755 " .. cli.q(tree .. "/locked"))
    local saved = tree
    tree = tree .. "/ok.txt"
    local docs, order = list()
    tree = saved
    -- a file given as the root lists itself; its relative path is its name
    assert.are.equal(1, #order)
    local only = next(docs) and docs[order[1]]
    assert.are.same({ saved .. "/ok.txt", "fine\n" }, { only._id, only.body })
  end)
end)
