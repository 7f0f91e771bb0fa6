/*
 * sluice: the command-line entry. C only builds the VM and hands argv to
 * lualib/sluice/cli.lua, which owns every command, its --help and its exit
 * codes; keeping the CLI in Lua lets it share the engine's code directly.
 */
#include "core/vm.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *home = NULL;
    int first = 1;
    /* A closed pipe (sluice sync --ndjson - | head) is a write error the
     * sink reports and the sync fails on, not a silent death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 2 && strcmp(argv[1], "--home") == 0) {
        home = argv[2];
        first = 3;
    }
    char err[512];
    sl_vm *vm = sl_vm_new(home, err, sizeof err);
    if (!vm) {
        fprintf(stderr, "sluice: %s\n", err);
        /* a --home the user named is a usage error; a home the binary
         * cannot find beside itself is a broken installation */
        return home ? 2 : 70;
    }
    lua_State *L = vm->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, "sluice.cli");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "sluice: cannot load the CLI: %s\n", lua_tostring(L, -1));
        sl_vm_free(vm);
        return 70;
    }
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_newtable(L);
    for (int i = first; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - first + 1);
    }
    int status = sl_vm_run_main(vm, 1);
    fflush(stdout);
    sl_vm_free(vm);
    return status;
}
