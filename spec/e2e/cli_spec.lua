-- The command line's promises: usage errors, global options anywhere,
-- --help on every command, the documented exit codes, check, connectors,
-- search output, module paths, strict globals and tracebacks, progress and
-- log format by terminal, bounded search arguments, secrets kept out of
-- every summary.
local cli = require("spec.support.cli")
local json = require("sluice.json")

describe("sluice CLI", function()
  local dir, config

  before_each(function()
    dir = cli.tmpdir()
    config = dir .. "/sluice.yml"
    cli.write(dir .. "/plan.json", json.encode({
      docs = { { _id = "a", title = "alpha" } }, fail_after = 0,
      fail_message = "cannot reach https://bob:Hunter2-pw@db.example.org/x",
    }))
    cli.write(config, "data_dir: ./data\nconnectors:\n  - id: s\n    service_type: scripted\n" ..
      "    configuration:\n      plan: " .. dir .. "/plan.json\n")
  end)
  after_each(function() cli.rm_rf(dir) end)

  it("prints usage to stderr and exits 2 without a command", function()
    local rc, out, err = cli.run({})
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.truthy(err:find("Usage: sluice", 1, true))
  end)

  it("takes global options before the command", function()
    local rc, out = cli.run({ "--log-level", "debug", "version" })
    assert.are.equal(0, rc)
    assert.truthy(out:match("^sluice %d"))
    rc = cli.run({ "--log-level" })
    assert.are.equal(2, rc)
  end)

  it("refuses search limits and offsets that are not plain bounded integers", function()
    for _, v in ipairs({ "0", "-1", "1e3", "0x10", "10001", "99999999999" }) do
      assert.are.equal(2, (cli.run({ "search", config, "search-s", "x", "--limit", v })), v)
    end
    assert.are.equal(2, (cli.run({ "search", config, "search-s", "x", "--offset", "1e20" })))
  end)

  it("never prints a URL password, in the text or the JSON summary", function()
    for _, fmt in ipairs({ {}, { "--json" } }) do
      local args = { "sync", config }
      for _, a in ipairs(fmt) do args[#args + 1] = a end
      local rc, out, err = cli.sh("SLUICE_CONNECTORS_PATH=spec/fixtures/connectors " .. cli.bin ..
        " " .. table.concat(args, " "))
      assert.are.equal(1, rc)
      assert.falsy((out .. err):find("Hunter2", 1, true), out .. err)
      assert.truthy(out:find("bob:[REDACTED]@", 1, true), out)
      assert.falsy(out:find("stack traceback", 1, true), out)
    end
  end)
  it("answers --help on every command on stdout with exit 0", function()
    for _, c in ipairs({ "sync", "search", "check", "connectors", "lua", "version" }) do
      local rc, out, err = cli.run({ c, "--help" })
      assert.are.equal(0, rc, c)
      assert.are.equal("", err, c)
      assert.truthy(out:find("^Usage: sluice " .. c), out)
      local rc2, out2 = cli.run({ "help", c })
      assert.are.same({ 0, out }, { rc2, out2 }, c)
    end
    local rc, out = cli.run({ "--help" })
    assert.are.equal(0, rc)
    -- the exit codes are documented where users look for them
    for _, line in ipairs({ "  0  success", "  1  a sync failed", "  2  usage error",
      "  3  a sync ended \"completed_with_errors\"", "  4  the configuration is invalid", " 70  internal error" }) do
      assert.truthy(out:find(line, 1, true), line)
    end
    assert.are.same({ 2, 2, 2 }, { (cli.run({ "frobnicate" })), (cli.run({ "version", "x" })),
      (cli.run({ "sync", config, "--bogus" })) })
  end)

  it("lists connectors and describes one's schema, as text and JSON", function()
    local rc, out = cli.run({ "connectors" })
    assert.are.equal(0, rc)
    assert.truthy(out:find("^filesystem%s+Local filesystem\n"), out)
    local rc2, jout = cli.run({ "connectors", "--json" })
    assert.are.equal(0, rc2)
    local names = {}
    for _, c in ipairs(json.decode(jout)) do names[#names + 1] = c.name end
    assert.are.same({ "filesystem", "mysql", "postgresql", "redis" }, names)
    rc, out = cli.run({ "connectors", "--describe", "dir" }) -- Elastic's name
    assert.are.equal(0, rc)
    assert.truthy(out:find("  path               Paths (list, required)\n", 1, true), out)
    assert.truthy(out:find("  follow_symlinks    Follow symlinks (bool, default false)\n", 1, true), out)
    assert.truthy(out:find("  max_file_size      Maximum file size (bytes) (int, default 10485760)\n", 1, true), out)
    rc, out = cli.run({ "connectors", "--describe", "filesystem", "--json" })
    assert.are.equal(0, rc)
    assert.truthy(out:find('"default":[]', 1, true), out) -- an empty list is [] not {}
    local d = json.decode(out)
    assert.are.same({ "filesystem", "list", true, 10485760, false },
      { d.name, d.configuration.path.type, d.configuration.path.required,
        d.configuration.max_file_size.default, d.configuration.follow_symlinks.default })
    assert.are.equal(0, #d.configuration.exclude.default)
    local rc3, _, err = cli.run({ "connectors", "--describe", "nosuch" })
    assert.are.equal(1, rc3)
    assert.truthy(err:find("unknown service_type 'nosuch' (available: filesystem, mysql, postgresql, redis)", 1, true), err)
  end)

  it("checks the configuration and pings every source", function()
    local tree = dir .. "/tree"
    assert(cli.sh("mkdir -p " .. cli.q(tree)) == 0)
    local two = dir .. "/two.yml"
    cli.write(two, "data_dir: ./data\nconnectors:\n  - id: files\n    service_type: filesystem\n" ..
      "    configuration:\n      path: " .. tree .. "\n  - id: s\n    service_type: scripted\n" ..
      "    configuration:\n      plan: " .. dir .. "/plan.json\n")
    local env = "SLUICE_CONNECTORS_PATH=spec/fixtures/connectors "
    local rc, out = cli.sh(env .. cli.bin .. " check " .. cli.q(two))
    assert.are.equal(0, rc)
    assert.are.equal("files (filesystem): ok\ns (scripted): ok\n" .. two .. ": configuration valid\n", out)
    -- the plan file is what the scripted source's ping looks for
    os.remove(dir .. "/plan.json")
    rc, out = cli.sh(env .. cli.bin .. " check " .. cli.q(two))
    assert.are.equal(1, rc)
    assert.are.equal("files (filesystem): ok\ns (scripted): FAILED: plan file missing\n" ..
      two .. ": configuration valid\n", out)
    -- an invalid configuration is exit 4 and names the file, line and key
    assert(cli.sh("rmdir " .. cli.q(tree)) == 0)
    local err
    rc, out, err = cli.sh(env .. cli.bin .. " check " .. cli.q(two))
    assert.are.equal(4, rc)
    assert.truthy(err:find(two .. ":6:7: connectors[1].configuration.path[1]: " .. tree ..
      ": ENOENT", 1, true), err)
    assert.falsy(cli.sh("test -e " .. cli.q(dir .. "/data")) == 0, "check writes nothing")
  end)

  it("prints hits as text and JSON, honours --limit, fails a bad query or index", function()
    local env = "SLUICE_CONNECTORS_PATH=spec/fixtures/connectors "
    cli.write(dir .. "/plan.json", json.encode({ docs = {
      { _id = "a", title = "Alpha report", body = "the quarterly walrus count" },
      { _id = "b", title = "Beta", body = "a walrus again, and POL-358" },
      { _id = "c", title = "Gamma", body = "no animals here" },
    } }))
    assert.are.equal(0, (cli.sh(env .. cli.bin .. " sync " .. cli.q(config) .. " --json")))
    local function run(args) return cli.run(args, env) end
    local rc, out = run({ "search", config, "search-s", "walrus" })
    assert.are.equal(0, rc)
    assert.truthy(out:find('^2 hits for "walrus" in search%-s\n'), out)
    assert.truthy(out:find("  1. Alpha report\n     a\n", 1, true) or out:find("  1. Beta\n     b\n", 1, true), out)
    rc, out = run({ "search", config, "search-s", "walrus", "--limit", "1", "--json" })
    assert.are.equal(0, rc)
    local r = json.decode(out)
    assert.are.same({ 2, 1 }, { r.total, #r.hits })
    rc, out = run({ "search", config, "search-s", "POL-358", "--json" })
    r = json.decode(out)
    assert.are.same({ 1, "b", "Beta" }, { r.total, r.hits[1].id, r.hits[1].title })
    assert.truthy(r.hits[1].snippet:find("[POL-358]", 1, true), r.hits[1].snippet)
    rc, out = run({ "search", config, "search-s", "zzzz", "--json" })
    assert.are.same({ 0, 0 }, { rc, json.decode(out).total })
    local err
    rc, out, err = run({ "search", config, "search-s", "!!!" })
    assert.are.same({ 1, "" }, { rc, out })
    assert.are.equal("sluice: search failed: query has no words\n", err)
    rc, _, err = run({ "search", config, "search-nope", "walrus" })
    assert.are.equal(1, rc)
    assert.truthy(err:find("no index 'search-nope' in " .. dir, 1, true), err)
    assert.truthy(err:find("(indexes: search-s)", 1, true), err)
  end)

  it("syncs only the connector --connector names, and refuses an unknown id", function()
    local env = "SLUICE_CONNECTORS_PATH=spec/fixtures/connectors "
    cli.write(dir .. "/plan.json", json.encode({ docs = { { _id = "a", title = "alpha" } } }))
    local tree = dir .. "/tree"
    assert(cli.sh("mkdir -p " .. cli.q(tree) .. " && echo hi > " .. cli.q(tree .. "/f.txt")) == 0)
    local two = dir .. "/two.yml"
    cli.write(two, "data_dir: ./data\nconnectors:\n  - id: files\n    service_type: filesystem\n" ..
      "    configuration:\n      path: " .. tree .. "\n  - id: s\n    service_type: scripted\n" ..
      "    configuration:\n      plan: " .. dir .. "/plan.json\n")
    local rc, out = cli.sh(env .. cli.bin .. " sync " .. cli.q(two) .. " --connector s --json")
    assert.are.equal(0, rc)
    local s = json.decode(out)
    assert.are.same({ "s", "search-s", 1, 1 }, { s.connector, s.index, s.indexed, s.index_count })
    rc, out = cli.sh(env .. cli.bin .. " sync " .. cli.q(two) .. " --json")
    assert.are.equal(0, rc)
    s = json.decode(out)
    assert.are.same({ "files", 1, "s", 0, 1 }, { s[1].connector, s[1].indexed, s[2].connector, s[2].indexed, s[2].unchanged })
    local err
    rc, out, err = cli.sh(env .. cli.bin .. " sync " .. cli.q(two) .. " --connector nope")
    assert.are.same({ 2, "" }, { rc, out })
    assert.are.equal("sluice: no connector with id 'nope' in " .. two .. " (ids: files, s)\n", err)
  end)

  it("finds lualib and connectors beside the binary, or where --home and SLUICE_HOME say", function()
    local home = dir .. "/home"
    local src = require("sluice.sys").realpath(".")
    assert(cli.sh("mkdir -p " .. cli.q(home .. "/connectors") .. " " .. cli.q(home .. "/bin") ..
      " && ln -s " .. cli.q(src .. "/lualib") .. " " .. cli.q(home .. "/lualib") ..
      " && cp " .. cli.q(cli.bin) .. " " .. cli.q(home .. "/bin/sluice")) == 0)
    cli.write(home .. "/connectors/only_here.lua", "return require('sluice').connector " ..
      "{ name = 'only_here', title = 'Only here', docs = function() end }\n")
    -- a copy of the binary in HOME/bin finds HOME/lualib and HOME/connectors
    local rc, out = cli.sh(cli.q(home .. "/bin/sluice") .. " connectors")
    assert.are.same({ 0, "only_here              Only here\n" }, { rc, out })
    rc, out = cli.sh(cli.bin .. " --home " .. cli.q(home) .. " connectors")
    assert.are.same({ 0, "only_here              Only here\n" }, { rc, out })
    rc, out = cli.sh("SLUICE_HOME=" .. cli.q(home) .. " " .. cli.bin .. " connectors")
    assert.are.same({ 0, "only_here              Only here\n" }, { rc, out })
    local err
    rc, _, err = cli.sh(cli.bin .. " --home " .. cli.q(dir) .. " connectors")
    assert.are.equal(2, rc) -- the user named it: a usage error
    assert.are.equal("sluice: " .. require("sluice.sys").realpath(dir) .. ": not a sluice home (no lualib/sluice)\n", err)
    -- a lone binary with no lualib near it says what to do
    assert(cli.sh("mkdir -p " .. cli.q(dir .. "/lone") .. " && cp " .. cli.q(cli.bin) .. " " .. cli.q(dir .. "/lone/sluice")) == 0)
    rc, _, err = cli.sh("env -u SLUICE_HOME " .. cli.q(dir .. "/lone/sluice") .. " version")
    assert.are.equal(70, rc)
    assert.are.equal("sluice: cannot find lualib/ beside the executable; set SLUICE_HOME or pass --home\n", err)
  end)

  it("fails a connector's undeclared global at its line, with the traceback in the log", function()
    local cdir = dir .. "/conn"
    assert(cli.sh("mkdir -p " .. cli.q(cdir)) == 0)
    cli.write(cdir .. "/typo.lua", table.concat({
      "local sluice = require('sluice')",
      "return sluice.connector {",
      "  name = 'typo',",
      "  docs = function(ctx)",
      "    ctx.yield({ _id = 'a', title = 'first' })",
      "    cuont = 1",
      "  end,",
      "}", "" }, "\n"))
    local conf = dir .. "/typo.yml"
    cli.write(conf, "data_dir: ./data\nconnectors:\n  - id: t\n    service_type: typo\n")
    local rc, out, err = cli.sh("SLUICE_CONNECTORS_PATH=" .. cli.q(cdir) .. " SLUICE_LOG_FORMAT=json " ..
      cli.bin .. " sync " .. cli.q(conf) .. " --json")
    assert.are.equal(1, rc)
    local s = json.decode(out)
    assert.are.equal("failed", s.status)
    assert.are.equal(cdir .. "/typo.lua:6: " .. cdir .. "/typo.lua: assignment to undeclared global 'cuont' (use local)",
      s.message)
    local rec
    for line in err:gmatch("[^\n]+") do
      local r = json.decode(line)
      if r.message == "sync failed: nothing was deleted" then rec = r end
    end
    assert(rec, err)
    assert.are.equal("error", rec.level)
    assert.truthy(rec.error:find("stack traceback:\n", 1, true), rec.error)
    assert.truthy(rec.error:find(cdir .. "/typo.lua:6: in function", 1, true), rec.error)
  end)

  it("shows progress and text logs on a terminal, JSON lines and no progress otherwise", function()
    local cdir = dir .. "/conn"
    assert(cli.sh("mkdir -p " .. cli.q(cdir)) == 0)
    cli.write(cdir .. "/slow.lua", table.concat({
      "local sluice = require('sluice')",
      "return sluice.connector {",
      "  name = 'slow',",
      "  docs = function(ctx)",
      "    ctx.yield({ _id = 'a', body = 'abc' })",
      "    ctx.task.sleep(1.2)",
      "    ctx.log.warn('half way', { n = 1 })",
      "    ctx.yield({ _id = 'b', body = 'def' })",
      "  end,",
      "}", "" }, "\n"))
    local conf = dir .. "/slow.yml"
    cli.write(conf, "data_dir: ./data\nconnectors:\n  - id: w\n    service_type: slow\n")
    local cmd = "SLUICE_CONNECTORS_PATH=" .. cli.q(cdir) .. " " .. cli.bin .. " sync " .. cli.q(conf)
    -- script(1) gives the command a terminal on stdin, stdout and stderr
    local rc, tty = cli.sh("script -qec " .. cli.q(cmd .. " --full") .. " /dev/null")
    assert.are.equal(0, rc)
    assert.truthy(tty:find("\r  1 listed, 1 indexed, 0 unchanged, 0 errors, 0.0 MB, ", 1, true), tty)
    -- the log line erases the progress line instead of being glued to it
    assert.truthy(tty:find("\r\27[KWARN  half way connector=w n=1\r\n", 1, true), tty)
    assert.truthy(tty:find("w: completed in ", 1, true), tty)
    local out, err
    rc, out, err = cli.sh(cmd .. " --full")
    assert.are.equal(0, rc)
    assert.truthy(out:find("^w: completed in [%d.]+ s: 2 listed, 2 indexed, 0 unchanged, 0 deleted, 0 errors, 6 B of text"), out)
    assert.falsy((out .. err):find("\r", 1, true), "no progress line without a terminal")
    local rec = json.decode(err:match("[^\n]+"))
    assert.are.same({ "warn", "half way", "w", 1 }, { rec.level, rec.message, rec.connector, rec.n })
  end)
end)
