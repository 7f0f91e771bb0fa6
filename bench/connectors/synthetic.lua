-- Benchmark source: yields `count` generated documents of about `size`
-- bytes each, with no I/O, so a bench measures the engine and the sink.
local sluice = require("sluice")

return sluice.connector {
  name = "synthetic",
  title = "Synthetic benchmark source",
  configuration = {
    count = { type = "int", default = 100000 },
    size = { type = "int", default = 1024 },
    seed = { type = "str", default = "a" },
  },
  ping = function() return true end,
  docs = function(ctx)
    local n, size, seed = ctx.config.count, ctx.config.size, ctx.config.seed
    -- One shared filler; the varying prefix makes every body distinct.
    local filler = string.rep("lorem ipsum dolor sit amet ", math.ceil(size / 27))
    local fmt = string.format
    for i = 1, n do
      local prefix = fmt("document %d of seed %s ", i, seed)
      ctx.yield({
        _id = fmt("doc-%d", i),
        _timestamp = "2024-01-01T00:00:00.000Z",
        title = fmt("Title %d", i),
        url = fmt("https://example.com/docs/%d", i),
        size = i,
        body = prefix .. filler:sub(1, size - 160 - #prefix),
      })
    end
  end,
}
