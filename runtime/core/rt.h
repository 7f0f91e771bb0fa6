/*
 * The runtime context and tasks: coroutines scheduled on one libuv loop.
 *
 * A task is a Lua coroutine anchored in the registry. A C primitive that does
 * I/O starts the operation, then returns sl_task_await(L, cleanup, data): the
 * coroutine yields to the loop. When the operation completes, its callback
 * pushes the results onto task->co and calls sl_task_resume(). If the task is
 * cancelled while waiting, cleanup(data) runs instead and must stop the
 * operation so that its callback never resumes the task.
 *
 * Wake-ups that come from Lua itself (a queue handing over an item, a join)
 * go through sl_task_wake(): the task is resumed from the loop on the next
 * iteration, never on the caller's C stack.
 */
#ifndef SL_RT_H
#define SL_RT_H

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

typedef struct sl_rt sl_rt;
typedef struct sl_task sl_task;
typedef void (*sl_cleanup_fn)(void *data);

struct sl_rt {
    uv_loop_t *loop;
    lua_State *L;          /* main state */
    uv_idle_t ready_idle;  /* drains the ready list */
    sl_task *ready_head, *ready_tail;
    int live_tasks;
    int strict;
};

enum sl_task_state {
    SL_TASK_READY,     /* created or woken, waiting on the ready list */
    SL_TASK_RUNNING,
    SL_TASK_WAITING,   /* yielded: waiting for I/O or a wake */
    SL_TASK_DONE,
    SL_TASK_FAILED,
    SL_TASK_CANCELLED
};

struct sl_task {
    sl_rt *rt;
    lua_State *co;
    int co_ref;        /* registry: the coroutine */
    int self_ref;      /* registry: this task's userdata, while not finished */
    int defer_ref;     /* registry: table of deferred functions, or LUA_NOREF */
    int result_ref;    /* registry: table {ok, n, ...} once finished */
    int joiners_ref;   /* registry: table of tasks waiting in join */
    enum sl_task_state state;
    int wake_nargs;    /* values pushed on co for the next resume */
    sl_cleanup_fn cleanup;
    void *cleanup_data;
    sl_task *ready_next;
    unsigned long id;
    int on_ready;
};

/* Creates the runtime on `loop` and binds it to L. Never fails. */
sl_rt *sl_rt_new(lua_State *L, uv_loop_t *loop);
void sl_rt_free(sl_rt *rt);
sl_rt *sl_rt_get(lua_State *L);

/* The task running on coroutine L; raises if L is not a task. */
sl_task *sl_task_check_current(lua_State *L);
/* The task running on L, or NULL. */
sl_task *sl_task_current(lua_State *L);

/* Yields the current task until a callback resumes it. `cleanup` (may be
 * NULL) runs if the task is cancelled meanwhile. Use as
 * `return sl_task_await(L, fn, data);` from a lua_CFunction. */
int sl_task_await(lua_State *L, sl_cleanup_fn cleanup, void *data);

/* Resumes a waiting task with the `nargs` values already pushed on t->co.
 * Call only from a libuv callback (top of the C stack). */
void sl_task_resume(sl_task *t, int nargs);

/* Schedules a waiting task to resume with `nargs` values already pushed on
 * t->co, from the loop's next iteration. Safe from anywhere. */
void sl_task_wake(sl_task *t, int nargs);

/* Spawns the function at the top of L's stack (with nargs arguments below
 * it... pushed after it) as a new task; pushes the task userdata. */
sl_task *sl_task_spawn(lua_State *L, int nargs);

/* Returns 1 when t has finished (done, failed or cancelled). */
int sl_task_finished(const sl_task *t);

int luaopen_sluice_task(lua_State *L);

#endif
