-- sys.on_signal: INT/TERM handlers that run on the loop, inside the real
-- runtime. Signals are sent by a background shell so that this process is
-- not inside system() (which ignores SIGINT while it waits).
local sys = require("sluice.sys")
local task = require("sluice.task")

local function send(name)
  os.execute("(sleep 0.02; kill -" .. name .. " " .. sys.pid() .. ") &")
  task.sleep(0.3)
end

describe("sys.on_signal", function()
  after_each(function() sys.on_signal("TERM", nil) end)

  it("calls the handler on the loop, with the signal's name, as often as it comes", function()
    local got = {}
    assert.is_true(sys.on_signal("TERM", function(n) got[#got + 1] = n end))
    send("TERM")
    send("TERM")
    assert.are.same({ "TERM", "TERM" }, got)
  end)

  it("replaces a handler, and survives one that raises", function()
    local got = {}
    sys.on_signal("TERM", function() got[#got + 1] = "first" end)
    sys.on_signal("TERM", function() got[#got + 1] = "second"; error("handler broke") end)
    send("TERM")
    assert.are.same({ "second" }, got)
    sys.on_signal("TERM", function() got[#got + 1] = "third" end)
    send("TERM")
    assert.are.same({ "second", "third" }, got)
  end)

  it("does not keep the loop alive, and refuses other signals", function()
    local cli = require("spec.support.cli")
    local script = os.tmpname()
    cli.write(script, "require('sluice.sys').on_signal('TERM', function() end) print('done')")
    local rc, out = cli.sh("timeout 5 " .. cli.bin .. " lua " .. script)
    os.remove(script)
    assert.are.same({ 0, "done\n" }, { rc, out }) -- not 124: the handler did not hold the process
    assert.has_error(function() sys.on_signal("HUP", print) end)
    assert.has_error(function() sys.on_signal("TERM", "not a function") end)
    assert.is_true(sys.on_signal("TERM", nil))
  end)

  it("ends a process whose loop is stuck when a second signal comes before the first was handled", function()
    local cli = require("spec.support.cli")
    local script = os.tmpname()
    cli.write(script, "require('sluice.sys').on_signal('TERM', function() end)\n" ..
      "local t = os.clock() while os.clock() - t < 8 do end print('survived')")
    local t0 = task.now()
    local _, out = cli.sh(cli.bin .. " lua " .. script .. " & p=$!; sleep 0.5; kill -TERM $p; sleep 0.3; " ..
      "kill -TERM $p; wait $p; echo rc=$?")
    os.remove(script)
    assert.are.equal("rc=143\n", out) -- 128 + SIGTERM: the default action, not 'survived'
    assert.is_true(task.now() - t0 < 6)
  end)
end)
