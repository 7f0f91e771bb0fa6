/*
 * The Lua VM the runtime hosts: standard libraries, every sluice.* C module
 * preloaded, lualib/ on the module path, a libuv loop and the task scheduler.
 */
#ifndef SL_VM_H
#define SL_VM_H

#include "rt.h"

typedef struct sl_vm {
    lua_State *L;
    uv_loop_t loop;
    sl_rt *rt;
    char home[4096];
} sl_vm;

/* Creates a VM rooted at `home` (the folder holding lualib/ and
 * connectors/); home may be NULL to find it from the executable. Returns NULL
 * with a message in err when the VM cannot be built. */
sl_vm *sl_vm_new(const char *home, char *err, size_t errlen);
void sl_vm_free(sl_vm *vm);

/* Runs the function on top of the stack (with nargs arguments after it) as
 * the root task and drives the loop until everything has finished. Returns
 * the task's first result as an exit status: a number as is, true or nothing as 0,
 * false as 1; a raised error prints its traceback and returns 70. */
int sl_vm_run_main(sl_vm *vm, int nargs);

/* Preloads every C module (modules.c). */
void sl_modules_preload(lua_State *L);

#endif
