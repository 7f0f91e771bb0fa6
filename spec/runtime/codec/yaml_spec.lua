-- sluice.yaml from Lua, inside a task: a config-shaped document with its
-- key positions, the scalar rules, merge keys, and hostile input (tabs,
-- unterminated quotes, deep nesting, a 1,000-alias bomb, truncations).
local yaml = require("sluice.yaml")
local json = require("sluice.json")

local config = [[
# sluice.yml
defaults: &defaults
  index_name: search-docs
  scheduling: {full: "0 0 * * *"}

connectors:
  - <<: *defaults
    service_type: filesystem
    configuration:
      path: /srv/docs
      max_file_size: 10485760
      follow_links: false
      exclude:
      owner:
  - service_type: postgresql
    index_name: search-pg
    configuration:
      host: "${PGHOST}"
      port: 5432
      tables: ['*']
]]

describe("sluice.yaml", function()
  it("decodes a config with types, nulls and merges", function()
    local v, pos = yaml.decode(config)
    assert.is_table(pos)
    local c1 = v.connectors[1]
    assert.are.equal("filesystem", c1.service_type)
    assert.are.equal("search-docs", c1.index_name)
    assert.are.equal("0 0 * * *", c1.scheduling.full)
    assert.are.equal(10485760, c1.configuration.max_file_size)
    assert.are.equal(false, c1.configuration.follow_links)
    assert.are.equal(yaml.null, c1.configuration.exclude)
    assert.are.equal(json.null, c1.configuration.owner)
    assert.are.equal("${PGHOST}", v.connectors[2].configuration.host)
    assert.are.equal(5432, v.connectors[2].configuration.port)
    assert.are.equal(json.array_mt, getmetatable(v.connectors))
    assert.are.equal('["*"]', json.encode(v.connectors[2].configuration.tables))
    -- the merged table is a copy
    c1.scheduling.full = "changed"
    assert.are.equal("0 0 * * *", v.defaults.scheduling.full)
  end)

  it("gives a position for every key and item", function()
    local _, pos = yaml.decode(config)
    assert.are.same({line = 9, column = 5}, pos["connectors[1].configuration"])
    assert.are.same({line = 10, column = 7}, pos["connectors[1].configuration.path"])
    assert.are.same({line = 13, column = 7}, pos["connectors[1].configuration.exclude"])
    assert.are.same({line = 7, column = 5}, pos["connectors[1]"])
    assert.are.same({line = 7, column = 5}, pos["connectors[1].index_name"])
    assert.are.same({line = 15, column = 5}, pos["connectors[2]"])
    assert.are.same({line = 20, column = 16}, pos["connectors[2].configuration.tables[1]"])
    assert.are.same({line = 6, column = 1}, pos["connectors"])
    assert.are.same({line = 2, column = 1}, pos[""])
    assert.is_nil(pos["connectors[3]"])
  end)

  it("follows the YAML 1.2 core schema", function()
    local v = yaml.decode("[yes, no, on, off, y, n, True, FALSE, 0777, 0o777, 0x1F, 1.5e2, '1', ~, 1_0]")
    assert.are.same({"yes", "no", "on", "off", "y", "n", true, false, 777, 511, 31, 150, "1",
                     json.null, "1_0"}, {unpack(v)})
    assert.are.equal(math.huge, yaml.decode(".inf"))
    assert.are.equal("12", yaml.decode("!!str 12"))
    assert.are.same({"1"}, (function() local t = {}; for k in pairs(yaml.decode("1: a")) do
      t[#t + 1] = k end; return t end)())
  end)

  it("returns null and empty positions for an empty file", function()
    local v, pos = yaml.decode("")
    assert.are.equal(yaml.null, v)
    assert.are.same({}, pos)
  end)

  describe("errors name line and column", function()
    local cases = {
      {"a: 1\n\tb: 2\n", "line 2, column 1: found a tab character that violates indentation " ..
        "(while scanning a plain scalar at line 1, column 4)"},
      {"a:\n\t- 1\n", "line 2, column 1: found character that cannot start any token " ..
        "(while scanning for the next token at line 2, column 1)"},
      {"name: \"unterminated\nnext: 1\n", "line 3, column 1: found unexpected end of stream " ..
        "(while scanning a quoted scalar at line 1, column 7)"},
      {"a:\n  b: 1\n  c: 2\n  b: 3\n", "line 4, column 3: duplicate key \"b\" (first at line 2)"},
      {"a: 1\n---\na: 2\n", "line 2, column 1: more than one document"},
      {"a: *missing\n", "line 1, column 4: unknown anchor \"missing\""},
      {"a: [1, 2\nb: 3\n", "line 2, column 2: did not find expected ',' or ']' " ..
        "(while parsing a flow sequence at line 1, column 4)"},
      {"- a\nb: c\n", "line 2, column 1: did not find expected '-' indicator " ..
        "(while parsing a block collection at line 1, column 1)"},
    }
    for _, c in ipairs(cases) do
      it(c[2], function()
        assert.are.same({nil, c[2]}, {yaml.decode(c[1])})
      end)
    end

    it("on every truncation of a quoted document, without crashing", function()
      local doc = 'a: "x"\nb: [1, {c: \'d\'}]\n'
      for i = 0, #doc do
        local v, err = yaml.decode(doc:sub(1, i))
        assert.is_true(v ~= nil or err:match("^line %d+, column %d+: ") ~= nil, err)
      end
    end)
  end)

  describe("hostile input", function()
    it("refuses deep flow and block nesting", function()
      assert.are.same({nil, "line 1, column 1001: nesting too deep"},
                      {yaml.decode(string.rep("[", 1e5))})
      local lines = {}
      for i = 1, 1200 do lines[i] = string.rep(" ", i - 1) .. "k:" end
      local v, err = yaml.decode(table.concat(lines, "\n"))
      assert.is_nil(v)
      assert.are.equal("line 1001, column 1001: nesting too deep", err)
    end)

    it("stops a 1,000-alias bomb", function()
      local items = {}
      for i = 1, 2000 do items[i] = "x" .. i end
      local doc = {"big: &big [" .. table.concat(items, ", ") .. "]", "bomb:"}
      for _ = 1, 1000 do doc[#doc + 1] = "  - *big" end
      local v, err = yaml.decode(table.concat(doc, "\n"))
      assert.is_nil(v)
      assert.truthy(err:match("^line %d+, column 5: too many nodes %(more than 1000000, " ..
        "counting alias copies%)$"), err)
      -- the same shape within the cap decodes, with independent copies
      local small = {"big: &big [1, 2]", "many:"}
      for _ = 1, 1000 do small[#small + 1] = "  - *big" end
      local ok = assert(yaml.decode(table.concat(small, "\n")))
      assert.are.equal(1000, #ok.many)
      assert.are_not.equal(ok.many[1], ok.many[2])
      assert.are.same({nil, "line 667, column 5: too many nodes (more than 2000, counting " ..
        "alias copies)"}, {yaml.decode(table.concat(small, "\n"), {max_nodes = 2000})})
    end)

    it("stops nested billion laughs", function()
      local doc = {'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'}
      local prev = "a"
      for c in ("bcdefghi"):gmatch(".") do
        doc[#doc + 1] = c .. ": &" .. c .. " [" .. string.rep("*" .. prev, 10, ",") .. "]"
        prev = c
      end
      local v, err = yaml.decode(table.concat(doc, "\n"))
      assert.is_nil(v)
      assert.truthy(err:find("too many nodes", 1, true), err)
    end)

    it("rejects bad options", function()
      assert.has_error(function() yaml.decode("a", {max_nodes = "x"}) end)
      assert.has_error(function() yaml.decode("a", 5) end)
      assert.has_error(function() yaml.decode(nil) end)
    end)
  end)
end)
