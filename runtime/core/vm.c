/*
 * VM construction and the root task. Kept apart from main.c so the C unit
 * tests build the exact VM the product runs.
 */
#include "vm.h"

#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Finds the folder holding lualib/: beside the build dir (build/sluice ->
 * ../lualib) or an installed share/sluice. */
static int find_home(char *out, size_t len)
{
    char exe[PATH_MAX], probe[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    const char *cands[] = {"/..", "/../share/sluice", "", NULL};
    for (int i = 0; cands[i]; i++) {
        snprintf(probe, sizeof probe, "%s%s/lualib", exe, cands[i]);
        if (is_dir(probe)) {
            snprintf(probe, sizeof probe, "%s%s", exe, cands[i]);
            if (!realpath(probe, out) && strlen(probe) < len)
                memcpy(out, probe, strlen(probe) + 1);
            return 0;
        }
    }
    return -1;
}

sl_vm *sl_vm_new(const char *home, char *err, size_t errlen)
{
    sl_vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!home)
        home = getenv("SLUICE_HOME");
    if (home && *home) {
        if (!realpath(home, vm->home))
            snprintf(vm->home, sizeof vm->home, "%s", home);
    } else if (find_home(vm->home, sizeof vm->home) != 0) {
        snprintf(err, errlen,
                 "cannot find lualib/ beside the executable; set SLUICE_HOME or pass --home");
        free(vm);
        return NULL;
    }
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/lualib/sluice", vm->home);
    if (!is_dir(probe)) {
        snprintf(err, errlen, "%s: not a sluice home (no lualib/sluice)", vm->home);
        free(vm);
        return NULL;
    }
    uv_loop_init(&vm->loop);
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "cannot create Lua state");
        free(vm);
        return NULL;
    }
    vm->L = L;
    luaL_openlibs(L);
    vm->rt = sl_rt_new(L, &vm->loop);
    sl_modules_preload(L);

    /* lualib first so our modules win; the system paths after it serve
     * test tools (busted) installed by Debian. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lualib/?.lua;%s/lualib/?/init.lua;%s", vm->home,
                    vm->home, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_pop(L, 1);
    lua_pushstring(L, vm->home);
    lua_setfield(L, LUA_REGISTRYINDEX, "sluice.home");
    return vm;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void sl_vm_free(sl_vm *vm)
{
    if (!vm)
        return;
    lua_close(vm->L);
    sl_rt_free(vm->rt);
    uv_walk(&vm->loop, close_walk, NULL);
    uv_run(&vm->loop, UV_RUN_DEFAULT);
    uv_loop_close(&vm->loop);
    free(vm);
}

int sl_vm_run_main(sl_vm *vm, int nargs)
{
    lua_State *L = vm->L;
    sl_task *t = sl_task_spawn(L, nargs);
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* keep t alive to read it */
    lua_pop(L, 1);
    uv_run(&vm->loop, UV_RUN_DEFAULT);
    int status = 70;
    if (!sl_task_finished(t)) {
        fprintf(stderr, "sluice: the main task never finished (it waits on "
                        "something no one will wake)\n");
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
        lua_rawgeti(L, -1, 1);
        int ok = lua_toboolean(L, -1);
        lua_rawgeti(L, -2, 2);
        if (!ok) {
            fprintf(stderr, "sluice: %s\n", lua_tostring(L, -1));
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            status = (int)lua_tointeger(L, -1);
        } else if (lua_isboolean(L, -1)) {
            status = lua_toboolean(L, -1) ? 0 : 1;
        } else {
            status = lua_isnil(L, -1) ? 0 : 1;
        }
        lua_pop(L, 3);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return status;
}
