/* sluice.fs from C: the glob matcher's table and its worst cases (which
 * must stay polynomial), EACCES as an unprivileged user (forked with
 * the file-mode capabilities dropped when the tests run as root, before
 * any pool thread exists),
 * cancelling reads in flight, and freeing a VM while reads are still on the
 * thread pool (the orphaned requests must drain without touching Lua and
 * close every fd). */
#include "harness.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include "io/fs.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static void write_file(const char *name, const char *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(2);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int glob(const char *pat, const char *path)
{
    return sl_fs_glob_match(pat, strlen(pat), path, strlen(path));
}

static void test_glob(void)
{
    static const struct {
        const char *pat, *path;
        int want;
    } cases[] = {
        {"*.txt", "a.txt", 1},
        {"*.txt", "a/b/c.txt", 1},
        {"*.txt", "a/b/c.txt/d", 0},
        {"*.txt", "a.txt.bak", 0},
        {"/*.txt", "a.txt", 1},
        {"/*.txt", "a/b.txt", 0},
        {"a/*.txt", "a/x.txt", 1},
        {"a/*.txt", "b/a/x.txt", 0},
        {"a/*.txt", "a/b/x.txt", 0},
        {"**/x", "x", 1},
        {"**/x", "a/b/x", 1},
        {"**/x", "a/b/xy", 0},
        {"a/**/b", "a/b", 1},
        {"a/**/b", "a/x/y/b", 1},
        {"a/**/b", "a/x/y/c", 0},
        {"a/**", "a", 0},
        {"a/**", "a/b", 1},
        {"a/**", "a/b/c/d", 1},
        {"a/**", "b/a/c", 0},
        {"**", "anything/at/all", 1},
        {"?.c", "x.c", 1},
        {"?.c", "xy.c", 0},
        {"a?b", "a/b", 0},
        {"a*b", "a/b", 0},
        {"[abc].md", "b.md", 1},
        {"[abc].md", "d.md", 0},
        {"[a-c]x", "cx", 1},
        {"[!a-c]x", "cx", 0},
        {"[!a-c]x", "dx", 1},
        {"[^a]", "b", 1},
        {"[]]", "]", 1},
        {"[", "[", 1},
        {"\\*", "*", 1},
        {"\\*", "x", 0},
        {"build/", "src/build", 1},
        {"*", ".hidden", 1},
        {"?", "\xc3\xa9", 1},          /* é is one character */
        {"??", "\xc3\xa9", 0},
        {"[\xc3\xa9]", "\xc3\xa9", 1},
        {"*\xf0\x9f\x98\x80*", "x\xf0\x9f\x98\x80y", 1},
        {"?", "\xff", 1},              /* an invalid byte is one character */
        {"*.bin", "bad\xff\xfe.bin", 1},
        {"", "a", 0},
        {"*", "", 0},
        {"a/b", "/a/b", 1},
        {"a/b", "a//b", 1},
        {"A.txt", "a.txt", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = glob(cases[i].pat, cases[i].path);
        if (got != cases[i].want) {
            fprintf(stderr, "glob(\"%s\", \"%s\") = %d, want %d\n",
                    cases[i].pat, cases[i].path, got, cases[i].want);
            sl_test_failures++;
        }
    }

    /* worst cases for naive backtracking: each must finish at once */
    char text[20001], pat[200], deep[8192], dpat[4096];
    memset(text, 'a', 20000);
    text[20000] = '\0';
    strcpy(pat, "");
    for (int i = 0; i < 30; i++)
        strcat(pat, "*a");
    strcat(pat, "*b");
    size_t off = 0, poff = 0;
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(deep + off, sizeof deep - off, "a/");
    snprintf(deep + off, sizeof deep - off, "c");
    for (int i = 0; i < 300; i++)
        poff += (size_t)snprintf(dpat + poff, sizeof dpat - poff, "**/a/");
    snprintf(dpat + poff, sizeof dpat - poff, "b");
    clock_t t0 = clock();
    CHECK(glob(pat, text) == 0);
    CHECK(glob(dpat, deep) == 0);
    dpat[poff] = 'c';
    CHECK(glob(dpat, deep) == 1);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (secs > 2.0) {
        fprintf(stderr, "glob worst cases took %.2f s\n", secs);
        sl_test_failures++;
    }
}

/* As an unprivileged user a mode-000 file is unreadable through every
 * path: the pool, the blocking fallback, open and mime_file. */
static const char *eacces_chunk =
    "local fs = require 'sluice.fs'\n"
    "local dir = os.getenv('SL_FS_TMP')\n"
    "local p = dir .. '/secret'\n"
    "local v, err, code = fs.read(p)\n"
    "assert(v == nil and err == 'EACCES: permission denied' and code == 'EACCES', tostring(err))\n"
    "v, err, code = coroutine.wrap(function() return fs.read(p) end)()\n"
    "assert(v == nil and code == 'EACCES', tostring(err))\n"
    "v, err, code = fs.open(p)\n"
    "assert(v == nil and code == 'EACCES', tostring(err))\n"
    "v, err, code = fs.mime_file(p)\n"
    "assert(v == nil and code == 'EACCES', tostring(err))\n"
    "assert(fs.access(p, 'r') == false and fs.access(dir .. '/plain', 'r') == true)\n"
    "assert(fs.read(dir .. '/plain') == 'plain text\\n')\n";

static void test_eacces(void)
{
    if (geteuid() != 0) {
        sl_test_lua("eacces", eacces_chunk);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* Stay root (the checkout may live where nobody cannot read, such
         * as /root) but drop the capabilities that bypass file modes. */
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &hdr, data) != 0)
            _exit(3);
        for (int i = 0; i < 2; i++) {
            unsigned drop = 0;
            if (CAP_DAC_OVERRIDE / 32 == i)
                drop |= 1u << (CAP_DAC_OVERRIDE % 32);
            if (CAP_DAC_READ_SEARCH / 32 == i)
                drop |= 1u << (CAP_DAC_READ_SEARCH % 32);
            data[i].effective &= ~drop;
            data[i].permitted &= ~drop;
            data[i].inheritable &= ~drop;
        }
        if (syscall(SYS_capset, &hdr, data) != 0)
            _exit(3);
        sl_test_lua("eacces_as_nobody", eacces_chunk);
        _exit(sl_test_failures ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "eacces_as_nobody: child status %d\n", status);
        sl_test_failures++;
    }
}

static void test_cancel(void)
{
    sl_test_lua("cancel_inflight",
                "local fs, task = require 'sluice.fs', require 'sluice.task'\n"
                "local big = os.getenv('SL_FS_TMP') .. '/big'\n"
                "for round = 1, 2 do\n"
                "  local ts = {}\n"
                "  for i = 1, 8 do ts[i] = task.spawn(fs.read, big) end\n"
                "  task.yield()\n"
                "  for i = 1, 8, 2 do assert(ts[i]:cancel() == true) end\n"
                "  for i = 1, 8 do\n"
                "    local ok, a, b = ts[i]:join()\n"
                "    if i % 2 == 1 then assert(ok == nil and a == 'cancelled')\n"
                "    else assert(ok == true and #a == 3000000 and b == false) end\n"
                "  end\n"
                "  local f = assert(fs.open(big))\n"
                "  local t = task.spawn(function() return f:read(1000000) end)\n"
                "  task.yield()\n"
                "  assert(t:cancel() == true)\n"
                "  local ok2, msg = pcall(f.read, f, 10)\n"
                "  assert(not ok2 and msg:find('busy', 1, true), msg)\n"
                "  assert(f:close() == true and f:close() == true)\n"
                "  ok2, msg = pcall(f.read, f, 10)\n"
                "  assert(not ok2 and msg:find('closed file', 1, true), msg)\n"
                "  f = nil; collectgarbage(); collectgarbage()\n"
                "  task.sleep(0.05)\n"
                "end\n"
                "local s, tr = fs.read(big, 5)\n"
                "assert(s == 'xxxxx' and tr == true)\n");
}

/* lua_close with reads still on the pool: the VM is freed after two loop
 * turns, mid-chain. */
static void test_free_inflight(void)
{
    int before = count_fds();
    for (int round = 0; round < 3; round++) {
        char err[256];
        sl_vm *vm = sl_vm_new(getenv("SLUICE_HOME"), err, sizeof err);
        if (!vm) {
            fprintf(stderr, "vm: %s\n", err);
            sl_test_failures++;
            return;
        }
        lua_State *L = vm->L;
        const char *chunk =
            "local fs, task = require 'sluice.fs', require 'sluice.task'\n"
            "local big = os.getenv('SL_FS_TMP') .. '/big'\n"
            "local f = fs.open(big)\n"
            "task.spawn(function() return f:read(2000000) end)\n"
            "task.spawn(fs.mime_file, big)\n"
            "for i = 1, 5 do task.spawn(fs.read, big) end\n"
            "return fs.read(big)\n";
        if (luaL_loadstring(L, chunk) != 0) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            sl_test_failures++;
            sl_vm_free(vm);
            return;
        }
        sl_task_spawn(L, 0);
        lua_pop(L, 1);
        for (int i = 0; i <= round; i++)
            uv_run(&vm->loop, UV_RUN_NOWAIT);
        sl_vm_free(vm);
    }
    CHECK(count_fds() == before);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sl_fs_test_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    chmod(tmpdir, 0755); /* the unprivileged child must reach it */
    setenv("SL_FS_TMP", tmpdir, 1);
    write_file("plain", "plain text\n", 11);
    write_file("secret", "top secret\n", 11);
    char sp[512];
    snprintf(sp, sizeof sp, "%s/secret", tmpdir);
    chmod(sp, 0);
    char *big = malloc(3000000);
    memset(big, 'x', 3000000);
    write_file("big", big, 3000000);
    free(big);

    test_eacces(); /* first: fork before any pool thread exists */
    test_glob();
    test_cancel();
    test_free_inflight();

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return sl_test_done("fs");
}
