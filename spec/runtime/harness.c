#include "harness.h"

#include <stdlib.h>

int sl_test_failures = 0;

int sl_test_lua(const char *name, const char *chunk)
{
    char err[512];
    sl_vm *vm = sl_vm_new(getenv("SLUICE_HOME"), err, sizeof err);
    if (!vm) {
        fprintf(stderr, "%s: cannot build VM: %s\n", name, err);
        sl_test_failures++;
        return -1;
    }
    if (luaL_loadbuffer(vm->L, chunk, strlen(chunk), name) != 0) {
        fprintf(stderr, "%s: %s\n", name, lua_tostring(vm->L, -1));
        sl_test_failures++;
        sl_vm_free(vm);
        return -1;
    }
    int status = sl_vm_run_main(vm, 0);
    if (status != 0) {
        fprintf(stderr, "%s: chunk ended with status %d\n", name, status);
        sl_test_failures++;
    }
    sl_vm_free(vm);
    return status;
}

int sl_test_done(const char *suite)
{
    if (sl_test_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", suite, sl_test_failures);
        return 1;
    }
    printf("%s: ok\n", suite);
    return 0;
}
