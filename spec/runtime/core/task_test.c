/* Tasks: spawn/join, sleep ordering, suspend/wake hand-over, cancel running
 * the pending operation's cleanup and the deferred functions. */
#include "harness.h"

int main(void)
{
    sl_test_lua("spawn_join", "local task = require 'sluice.task'\n"
                              "local t = task.spawn(function(a, b) return a + b, 'x' end, 2, 3)\n"
                              "local ok, s, x = t:join()\n"
                              "assert(ok == true and s == 5 and x == 'x')\n"
                              "assert(t:status() == 'done')\n");
    sl_test_lua("error_traceback", "local task = require 'sluice.task'\n"
                                   "local t = task.spawn(function() local y = nil; return y.z end)\n"
                                   "local ok, err = t:join()\n"
                                   "assert(ok == nil)\n"
                                   "assert(err:find('attempt to index', 1, true), err)\n"
                                   "assert(err:find('stack traceback', 1, true), err)\n");
    sl_test_lua("sleep_order", "local task = require 'sluice.task'\n"
                               "local out = {}\n"
                               "local a = task.spawn(function() task.sleep(0.03); out[#out+1] = 'slow' end)\n"
                               "local b = task.spawn(function() task.sleep(0.01); out[#out+1] = 'fast' end)\n"
                               "local t0 = task.now()\n"
                               "a:join(); b:join()\n"
                               "assert(out[1] == 'fast' and out[2] == 'slow')\n"
                               "assert(task.now() - t0 >= 0.025)\n");
    sl_test_lua("suspend_wake", "local task = require 'sluice.task'\n"
                                "local t = task.spawn(function() return task.suspend() end)\n"
                                "task.yield()\n"
                                "assert(t:status() == 'waiting')\n"
                                "task.wake(t, 'hello', 42)\n"
                                "local ok, a, b = t:join()\n"
                                "assert(ok and a == 'hello' and b == 42)\n");
    sl_test_lua("cancel_runs_cleanup", "local task = require 'sluice.task'\n"
                                       "local cleaned, after = false, false\n"
                                       "local t = task.spawn(function()\n"
                                       "  task.defer(function() cleaned = true end)\n"
                                       "  task.sleep(10); after = true end)\n"
                                       "task.yield()\n"
                                       "local t0 = task.now()\n"
                                       "assert(t:cancel() == true)\n"
                                       "local ok, err = t:join()\n"
                                       "assert(ok == nil and err == 'cancelled')\n"
                                       "assert(cleaned and not after)\n"
                                       "assert(t:cancel() == false)\n");
    /* the cancelled 10 s timer must not keep the loop alive: this returns at
     * once or the ctest timeout fails it */
    sl_test_lua("many_tasks", "local task = require 'sluice.task'\n"
                              "local ts, sum = {}, 0\n"
                              "for i = 1, 10000 do ts[i] = task.spawn(function() task.yield(); return i end) end\n"
                              "for i = 1, 10000 do local _, v = ts[i]:join(); sum = sum + v end\n"
                              "assert(sum == 10000 * 10001 / 2)\n");
    return sl_test_done("task");
}
