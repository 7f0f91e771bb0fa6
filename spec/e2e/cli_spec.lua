-- The command line's promises: usage errors, global options anywhere,
-- bounded search arguments, secrets kept out of every summary.
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
end)
