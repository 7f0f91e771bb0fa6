-- Configuration errors name the file, line, column and key path; all of
-- them are reported at once; the CLI exits 4 and writes nothing.
local config = require("sluice.config")
local cli = require("spec.support.cli")

local function parse(text) return config.parse(text, "t.yml") end

describe("configuration", function()
  it("loads a valid file with defaults filled in", function()
    local cfg = assert(parse("connectors:\n  - id: docs\n    service_type: dir\n    configuration:\n      path: /usr/share/doc\n"))
    local c = cfg.connectors[1]
    assert.are.equal("search-docs", c.index_name)
    assert.are.equal("filesystem", c.definition.name)
    assert.are.same({ "/usr/share/doc" }, c.configuration.path)
    assert.are.same({}, c.configuration.exclude)
    assert.are.equal(false, c.configuration.follow_symlinks)
    assert.are.equal(10485760, c.configuration.max_file_size)
    -- relative paths resolve against the config's (absolute) folder
    assert.are.equal(require("sluice.sys").realpath(".") .. "/.sluice", cfg.data_dir)
  end)

  it("rejects a list at the top of the file", function()
    local cfg, err = parse("[1, 2]\n")
    assert.is_nil(cfg)
    assert.are.equal("t.yml:1:1: expected a mapping at the top of the file, got a list", err)
  end)

  it("reports a connector's own settings even when its entry has an unknown key", function()
    local _, err = parse("connectors:\n  - id: a\n    service_typo: 1\n    service_type: filesystem\n" ..
      "    configuration:\n      path: /tmp\n      folow_symlinks: true\n")
    assert.truthy(err:find("t.yml:3:5: connectors[1].service_typo: unknown key", 1, true), err)
    assert.truthy(err:find("t.yml:7:7: connectors[1].configuration.folow_symlinks: unknown key", 1, true), err)
  end)

  it("gives the same absolute paths however the config file is named", function()
    local dir = cli.tmpdir()
    assert(cli.sh("mkdir -p " .. dir .. "/sub/tree"))
    local text = "connectors:\n  - id: a\n    service_type: filesystem\n    configuration:\n      path: ./sub/../sub/tree\n"
    cli.write(dir .. "/c.yml", text)
    local a = assert(config.load(dir .. "/c.yml"))
    local b = assert(config.load(dir .. "/sub/../c.yml"))
    local real = require("sluice.sys").realpath(dir)
    assert.are.same({ real .. "/sub/tree" }, a.connectors[1].configuration.path)
    assert.are.same(a.connectors[1].configuration.path, b.connectors[1].configuration.path)
    cli.rm_rf(dir)
  end)

  it("reports malformed YAML with its line and column", function()
    local cfg, err = parse("connectors:\n  - id: [unclosed\n")
    assert.is_nil(cfg)
    assert.truthy(err:match("^t%.yml:%d+:%d+: "), err)
  end)

  it("names unknown keys, wrong types and missing values by path and line", function()
    local cfg, err = parse(table.concat({
      "data_dir: ./d",
      "bogus: 1",
      "connectors:",
      "  - id: docs",
      "    service_type: filesystem",
      "    configuration:",
      "      path: /tmp",
      "      follow_symlinks: maybe",
      "      max_file_size: big",
      "      colour: red",
      "  - service_type: filesystem",
      "    configuration: {}",
    }, "\n"))
    assert.is_nil(cfg)
    local lines = {}
    for l in err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.same({
      "t.yml:2:1: bogus: unknown key (known keys: connectors, data_dir, elasticsearch, log_level)",
      "t.yml:10:7: connectors[1].configuration.colour: unknown key (known keys: path, include, exclude, follow_symlinks, max_file_size)",
      "t.yml:8:7: connectors[1].configuration.follow_symlinks: expected true or false, got string",
      "t.yml:9:7: connectors[1].configuration.max_file_size: expected an integer, got 'big'",
      "t.yml:11:5: connectors[2].id: required value missing",
    }, lines)
  end)

  it("says which path does not exist", function()
    local cfg, err = parse("connectors:\n  - id: a\n    service_type: filesystem\n    configuration:\n      path: [/nonexistent/x]\n")
    assert.is_nil(cfg)
    assert.are.equal("t.yml:5:14: connectors[1].configuration.path[1]: /nonexistent/x: ENOENT: no such file or directory", err)
  end)

  it("rejects an unknown service_type listing the available ones", function()
    local _, err = parse("connectors:\n  - id: a\n    service_type: nosuch\n")
    assert.truthy(err:find("t.yml:3:5: connectors[1].service_type: unknown service_type 'nosuch' (available: ", 1, true), err)
  end)

  it("substitutes ${ENV} and reports a missing variable", function()
    local _, err = parse("connectors:\n  - id: a\n    service_type: filesystem\n    configuration:\n      path: ${SLUICE_SPEC_UNSET_VAR}\n")
    assert.truthy(err:find("t.yml:5:7: connectors[1].configuration.path: environment variable SLUICE_SPEC_UNSET_VAR is not set", 1, true), err)
    local cfg = assert(parse("connectors:\n  - id: a\n    service_type: filesystem\n    configuration:\n      path: ${SLUICE_SPEC_UNSET_VAR:-/tmp}\n"))
    assert.are.same({ "/tmp" }, cfg.connectors[1].configuration.path)
  end)

  it("rejects duplicate connector ids", function()
    local _, err = parse("connectors:\n  - {id: a, service_type: filesystem, configuration: {path: /tmp}}\n  - {id: a, service_type: filesystem, configuration: {path: /tmp}}\n")
    assert.truthy(err:find("connectors[2].id: duplicate connector id 'a'", 1, true), err)
  end)

  it("exits 4 from the CLI and creates no index", function()
    local dir = cli.tmpdir()
    cli.write(dir .. "/bad.yml", "data_dir: ./data\nconnectors:\n  - id: a\n    service_type: filesystem\n    configuration:\n      path: /tmp\n      nope: 1\n")
    local rc, _, err = cli.run({ "sync", dir .. "/bad.yml" })
    assert.are.equal(4, rc)
    assert.truthy(err:find(dir .. "/bad.yml:7:7: connectors[1].configuration.nope: unknown key", 1, true), err)
    assert.are_not.equal(0, (cli.sh("test -e " .. cli.q(dir .. "/data/index.db"))))
    rc = cli.run({ "sync", dir .. "/missing.yml" })
    assert.are.equal(4, rc)
    cli.rm_rf(dir)
  end)
end)
