-- sluice.json from Lua, inside a task: the null/array policy, numbers,
-- canonical form, error messages, and hostile input (deep nesting, huge
-- numbers, every truncation of a document, random bytes).
local json = require("sluice.json")

describe("sluice.json", function()
  describe("null and arrays", function()
    it("round-trips [] as [] and {} as {}", function()
      local v = assert(json.decode('{"list":[],"obj":{},"nested":[[],{}]}'))
      assert.are.equal(json.array_mt, getmetatable(v.list))
      assert.is_nil(getmetatable(v.obj))
      assert.are.equal('[]', json.encode(v.list))
      assert.are.equal('{}', json.encode(v.obj))
      assert.are.equal('{"list":[],"nested":[[],{}],"obj":{}}', json.encode_canonical(v))
    end)

    it("keeps null as json.null, in objects and arrays", function()
      local v = json.decode('{"a":null,"b":[1,null,3]}')
      assert.are.equal(json.null, v.a)
      assert.are.equal(3, #v.b)
      assert.are.equal(json.null, v.b[2])
      assert.are.equal('{"a":null,"b":[1,null,3]}', json.encode_canonical(v))
      assert.are.equal("null", json.encode(nil))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal(require("cjson").null, json.null)
    end)

    it("decides arrays as documented", function()
      assert.are.equal("{}", json.encode({}))
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal("[1,2]", json.encode({1, 2}))
      assert.are.equal('{"2":"b"}', json.encode({[2] = "b"}))
      assert.are.equal("[1,null,3]", json.encode(json.array({1, nil, 3})))
      assert.is_true(json.is_array({1, 2}))
      assert.is_true(json.is_array(json.array()))
      assert.is_false(json.is_array({}))
      assert.is_false(json.is_array({1, x = 2}))
      assert.is_false(json.is_array("x"))
      local t = {}
      assert.are.equal(t, json.array(t))
      assert.has_error(function() json.array(1) end)
    end)

    it("refuses what cannot be JSON", function()
      assert.are.same({nil, "cannot encode function"}, {json.encode({f = print})})
      assert.are.same({nil, "cannot encode nan or inf"}, {json.encode(0 / 0)})
      assert.are.same({nil, "cannot encode nan or inf"}, {json.encode({-1 / 0})})
      assert.are.same({nil, "object key must be a string or a number"},
                      {json.encode({[{}] = 1})})
      local a = {}; a[1] = a
      assert.are.same({nil, "nesting too deep (or a reference cycle)"}, {json.encode(a)})
      assert.has_error(function() json.encode() end)
      assert.has_error(function() json.decode({}) end)
    end)
  end)

  describe("numbers", function()
    it("writes integers exactly, without exponents, up to 2^53", function()
      assert.are.equal("1000000000000000", json.encode(1e15))
      assert.are.equal("9007199254740992", json.encode(2 ^ 53))
      assert.are.equal("-9007199254740991", json.encode(-(2 ^ 53 - 1)))
      assert.are.equal("[0.1,1.5,-2.25,1e+300]", json.encode({0.1, 1.5, -2.25, 1e300}))
      assert.are.equal(2 ^ 53, json.decode(json.encode(2 ^ 53)))
      assert.are.equal(0.1 + 0.2, json.decode(json.encode(0.1 + 0.2)))
    end)

    it("rejects numbers a double cannot hold", function()
      assert.are.same({nil, "number out of range at byte 1"}, {json.decode("1e999")})
      assert.are.same({nil, "number out of range at byte 6"},
                      {json.decode('{"a":' .. "9" .. string.rep("0", 400) .. "}")})
      assert.are.equal(0, json.decode("1e-999"))
      assert.are.same({nil, "number too long at byte 1"}, {json.decode(string.rep("1", 5000))})
    end)
  end)

  describe("strings", function()
    it("escapes what JSON needs and keeps UTF-8", function()
      assert.are.equal('"tab\\there \\"q\\" \\\\ / \\u0000 é 😀"',
                       json.encode('tab\there "q" \\ / \0 é 😀'))
      assert.are.equal('tab\there "q" \\ / \0 é 😀',
                       json.decode(json.encode('tab\there "q" \\ / \0 é 😀')))
    end)

    it("replaces ill-formed UTF-8 with U+FFFD both ways", function()
      assert.are.equal('"a\u{FFFD}\u{FFFD}b"', json.encode("a\xC0\xAFb"))
      assert.are.equal("a\u{FFFD}b", json.decode('"a\xFFb"'))
      assert.are.equal("\u{FFFD}", json.decode('"\\udc00"'))
      assert.are.equal("😀", json.decode('"\\ud83d\\ude00"'))
    end)
  end)

  describe("encode_canonical", function()
    it("sorts keys at every depth and skips functions", function()
      local doc = {z = 1, a = {y = true, b = {3, 2, 1}, fetch = function() end}, m = json.null}
      assert.are.equal('{"a":{"b":[3,2,1],"y":true},"m":null,"z":1}', json.encode_canonical(doc))
      -- the same content built in another order gives the same bytes
      local other = {m = json.null}
      other.a = {fetch = print}
      other.a.b = {3, 2, 1}
      other.a.y = true
      other.z = 1
      assert.are.equal(json.encode_canonical(doc), json.encode_canonical(other))
    end)
  end)

  describe("errors", function()
    local cases = {
      {"", "unexpected end of input at byte 1"},
      {'{"a":1,}', "unexpected character '}' at byte 8"},
      {'{"a":1', "unexpected end of input at byte 7"},
      {"[1 2]", "unexpected character '2' at byte 4"},
      {'"abc', "unterminated string at byte 5"},
      {"[1]]", "unexpected character ']' at byte 4"},
      {"{'a':1}", "unexpected character ''' at byte 2"},
      {"[01]", "unexpected character '1' at byte 3"},
      {"[.5]", "unexpected character '.' at byte 2"},
      {"[Infinity]", "unexpected character 'I' at byte 2"},
      {"// c\n1", "unexpected character '/' at byte 1"},
    }
    for _, c in ipairs(cases) do
      it("says where: " .. c[1]:gsub("\n", "\\n"), function()
        assert.are.same({nil, c[2]}, {json.decode(c[1])})
      end)
    end
  end)

  describe("hostile input", function()
    it("refuses deep nesting without overflowing the stack", function()
      assert.are.same({nil, "nesting too deep at byte 1001"},
                      {json.decode(string.rep("[", 1e6))})
      assert.are.same({nil, "nesting too deep at byte 3001"},
                      {json.decode(string.rep('{"a":[', 1e5))})
      local ok = json.decode(string.rep("[", 1000) .. string.rep("]", 1000))
      assert.are.equal("table", type(ok))
      local deep = {}
      local t = deep
      for _ = 1, 1500 do t[1] = {}; t = t[1] end
      assert.are.same({nil, "nesting too deep (or a reference cycle)"}, {json.encode(deep)})
    end)

    it("errors on every truncation of a document", function()
      local doc = '{"id":"x1","tags":["a","b"],"n":-1.5e3,"ok":true,"none":null,"s":"\\u00e9"}'
      assert.is_table(json.decode(doc))
      for i = 0, #doc - 1 do
        local v, err = json.decode(doc:sub(1, i))
        assert.is_nil(v)
        assert.is_string(err)
        assert.truthy(err:match(" at byte %d+$"), err)
      end
    end)

    it("survives random bytes", function()
      math.randomseed(42)
      for _ = 1, 2000 do
        local n = math.random(0, 40)
        local b = {}
        for i = 1, n do b[i] = string.char(math.random(0, 255)) end
        local s = table.concat(b)
        local v, err = json.decode(s)
        assert.is_true(v ~= nil or type(err) == "string")
        -- any string encodes to valid JSON that decodes to valid UTF-8
        local back = json.decode(assert(json.encode(s)))
        assert.is_true(require("sluice.text").utf8_valid(back))
      end
    end)
  end)
end)
