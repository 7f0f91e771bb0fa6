local schema = require("sluice.schema")

local S = {
  host = { type = "str", required = true, order = 1 },
  port = { type = "int", default = 5432, validations = { { type = "greater_than", constraint = 0 }, { type = "less_than", constraint = 65536 } } },
  tables = { type = "list", default = { "*" } },
  ssl = { type = "bool", default = false },
  ssl_ca = { type = "str", required = true, depends_on = { { field = "ssl", value = true } } },
  mode = { type = "str", options = { "fast", "safe" }, default = "safe" },
  password = { type = "str", sensitive = true },
}

describe("sluice.schema", function()
  it("fills defaults and coerces comma-separated lists", function()
    local c = assert(schema.validate(S, { host = "db", tables = "a, b,,c" }))
    assert.are.same({ host = "db", port = 5432, tables = { "a", "b", "c" }, ssl = false, mode = "safe" }, c)
  end)

  it("applies depends_on", function()
    local c, errs = schema.validate(S, { host = "db", ssl = true })
    assert.is_nil(c)
    assert.are.same({ { path = "ssl_ca", message = "required value missing" } }, errs)
  end)

  it("checks options and validations", function()
    local _, errs = schema.validate(S, { host = "db", port = 70000, mode = "turbo" })
    assert.are.same({
      { path = "mode", message = "must be one of: fast, safe" },
      { path = "port", message = "must be less than 65536" },
    }, errs)
  end)

  it("lists sensitive values", function()
    assert.are.same({ "pw" }, schema.secrets(S, { password = "pw", host = "h" }))
    local L = { tokens = { type = "list", sensitive = true }, pin = { type = "int", sensitive = true } }
    local got = schema.secrets(L, { tokens = { "t1", "t2" }, pin = 4242 })
    table.sort(got, function(a, b) return tostring(a) < tostring(b) end)
    assert.are.same({ 4242, { "t1", "t2" } }, got)
  end)

  it("rejects a malformed definition", function()
    assert.are.same({ nil, "c: configuration.x: unknown type 'string'" },
      { schema.check_definition({ x = { type = "string" } }, "c") })
  end)
end)
