/* sluice.sys: the process facts the CLI and logger rely on. */
#include "harness.h"

int main(void)
{
    sl_test_lua("home_and_environ",
                "local sys = require 'sluice.sys'\n"
                "assert(sys.home() == os.getenv('SLUICE_HOME'), sys.home())\n"
                "local env = sys.environ()\n"
                "assert(env.SLUICE_HOME == os.getenv('SLUICE_HOME'))\n"
                "assert(env.PATH == os.getenv('PATH'))\n");
    sl_test_lua("time_and_rss",
                "local sys = require 'sluice.sys'\n"
                "local t = sys.time()\n"
                "assert(math.abs(t - os.time()) < 2, t)\n"
                "assert(t ~= math.floor(t) or sys.time() ~= t)\n"
                "local before = sys.maxrss()\n"
                "local big = string.rep('x', 32 * 1024 * 1024)\n"
                "assert(sys.maxrss() >= before + 30000, sys.maxrss() - before)\n"
                "assert(#big == 32 * 1024 * 1024)\n");
    sl_test_lua("write_and_realpath",
                "local sys = require 'sluice.sys'\n"
                "assert(sys.write(2, '') == true)\n"
                "assert(sys.isatty(-1) == false)\n"
                "assert(sys.realpath('/tmp/../tmp') == '/tmp')\n"
                "local p, err = sys.realpath('/nonexistent/x')\n"
                "assert(p == nil and err == 'No such file or directory', err)\n"
                "assert(type(sys.pid()) == 'number' and sys.pid() > 1)\n");
    return sl_test_done("sys");
}
