/*
 * Tasks: Lua coroutines scheduled on one libuv loop (see rt.h for the
 * contract with C primitives).
 *
 * Why resumes are deferred: a task woken from Lua (a queue push, a join) must
 * not run on the waker's C stack, or a chain of hand-overs would nest C
 * frames without bound. Wakes go onto a ready list drained by an idle
 * handle; I/O callbacks, which already run at the top of the loop, resume
 * directly.
 *
 * Cancellation never resumes the cancelled coroutine: it runs the pending
 * operation's cleanup, then the task's deferred functions, then wakes its
 * joiners with nil, "cancelled" — the way ngx.thread.kill works.
 */
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_MT "sluice.task"
#define RT_KEY "sluice.rt"
#define TASKS_KEY "sluice.tasks" /* thread -> task userdata */

static unsigned long next_task_id = 1;

static void ready_drain(uv_idle_t *idle);
static void task_metatable(lua_State *L);

sl_rt *sl_rt_new(lua_State *L, uv_loop_t *loop)
{
    sl_rt *rt = calloc(1, sizeof *rt);
    if (!rt)
        abort();
    rt->loop = loop;
    rt->L = L;
    uv_idle_init(loop, &rt->ready_idle);
    rt->ready_idle.data = rt;
    lua_pushlightuserdata(L, rt);
    lua_setfield(L, LUA_REGISTRYINDEX, RT_KEY);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    task_metatable(L);
    return rt;
}

void sl_rt_free(sl_rt *rt)
{
    if (!rt)
        return;
    uv_close((uv_handle_t *)&rt->ready_idle, NULL);
    uv_run(rt->loop, UV_RUN_NOWAIT);
    free(rt);
}

sl_rt *sl_rt_get(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, RT_KEY);
    sl_rt *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!rt)
        luaL_error(L, "sluice runtime not initialised");
    return rt;
}

sl_task *sl_task_current(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_pushthread(L);
    lua_rawget(L, -2);
    sl_task *t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return t;
}

sl_task *sl_task_check_current(lua_State *L)
{
    sl_task *t = sl_task_current(L);
    if (!t)
        luaL_error(L, "not inside a task (this call must run in task.spawn)");
    return t;
}

int sl_task_finished(const sl_task *t)
{
    return t->state == SL_TASK_DONE || t->state == SL_TASK_FAILED ||
           t->state == SL_TASK_CANCELLED;
}

static void ready_push(sl_task *t)
{
    sl_rt *rt = t->rt;
    if (t->on_ready)
        return;
    t->on_ready = 1;
    t->ready_next = NULL;
    if (rt->ready_tail)
        rt->ready_tail->ready_next = t;
    else
        rt->ready_head = t;
    rt->ready_tail = t;
    if (!uv_is_active((uv_handle_t *)&rt->ready_idle))
        uv_idle_start(&rt->ready_idle, ready_drain);
}

static void ready_remove(sl_task *t)
{
    sl_rt *rt = t->rt;
    sl_task *prev = NULL;
    if (!t->on_ready)
        return;
    for (sl_task *p = rt->ready_head; p; prev = p, p = p->ready_next) {
        if (p != t)
            continue;
        if (prev)
            prev->ready_next = p->ready_next;
        else
            rt->ready_head = p->ready_next;
        if (rt->ready_tail == p)
            rt->ready_tail = prev;
        break;
    }
    t->on_ready = 0;
    t->ready_next = NULL;
}

/* Pushes the finished task's results on L: true, ... or nil, err. */
static int push_results(lua_State *L, sl_task *t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
    int tbl = lua_gettop(L);
    lua_rawgeti(L, tbl, 1);
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, tbl, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 2, "too many results");
    if (ok)
        lua_pushboolean(L, 1);
    else
        lua_pushnil(L);
    for (int i = 1; i <= n; i++)
        lua_rawgeti(L, tbl, i + 1);
    lua_remove(L, tbl);
    return n + 1;
}

static void run_defers(sl_task *t)
{
    lua_State *L = t->rt->L;
    if (t->defer_ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->defer_ref);
    int n = (int)lua_objlen(L, -1);
    for (int i = n; i >= 1; i--) { /* last deferred runs first */
        lua_rawgeti(L, -1, i);
        if (lua_pcall(L, 0, 0, 0) != 0) {
            fprintf(stderr, "sluice: task %lu: deferred function failed: %s\n",
                    t->id, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->defer_ref);
    t->defer_ref = LUA_NOREF;
}

/* Ends a task: stores the results table already on top of L, wakes joiners,
 * runs deferred functions and drops the anchors. */
static void task_end(sl_task *t, enum sl_task_state state)
{
    lua_State *L = t->rt->L;
    t->state = state;
    t->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    ready_remove(t);
    run_defers(t);

    int had_joiners = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->joiners_ref);
    lua_pushnil(L);
    while (lua_next(L, -2)) { /* [joiners, joiner_ud, true] */
        lua_pop(L, 1);
        sl_task *j = lua_touserdata(L, -1);
        if (j && j->state == SL_TASK_WAITING) {
            int n = push_results(j->co, t);
            sl_task_wake(j, n);
            had_joiners = 1;
        }
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->joiners_ref);
    t->joiners_ref = LUA_NOREF;

    if (state == SL_TASK_FAILED && !had_joiners && t->id != 1) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
        lua_rawgeti(L, -1, 2);
        fprintf(stderr, "sluice: task %lu failed: %s\n", t->id,
                lua_tostring(L, -1));
        lua_pop(L, 2);
    }

    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
    t->co = NULL;
    t->rt->live_tasks--;
    int self = t->self_ref;
    t->self_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, self); /* t may be collected after this */
}

static void task_run(sl_task *t, int nargs)
{
    lua_State *L = t->rt->L;
    lua_State *co = t->co;
    t->state = SL_TASK_RUNNING;
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    int rc = lua_resume(co, nargs);
    if (rc == LUA_YIELD) {
        if (t->state == SL_TASK_RUNNING) {
            /* a bare coroutine.yield(): give others a turn, then continue */
            lua_settop(co, 0);
            t->state = SL_TASK_WAITING;
            sl_task_wake(t, 0);
        }
        return;
    }
    lua_newtable(L);
    if (rc == 0) {
        int n = lua_gettop(co);
        lua_pushboolean(L, 1);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "n");
        for (int i = n; i >= 1; i--) {
            lua_xmove(co, L, 1);
            lua_rawseti(L, -2, i + 1);
        }
        task_end(t, SL_TASK_DONE);
    } else {
        const char *msg = lua_tostring(co, -1);
        if (!msg)
            msg = "(error object is not a string)";
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, 1);
        lua_setfield(L, -2, "n");
        luaL_traceback(L, co, msg, 0);
        lua_rawseti(L, -2, 2);
        task_end(t, SL_TASK_FAILED);
    }
}

static void ready_drain(uv_idle_t *idle)
{
    sl_rt *rt = idle->data;
    /* Run only what is ready now; tasks woken meanwhile wait for the next
     * iteration so I/O gets polled between rounds. */
    sl_task *batch = rt->ready_head;
    sl_task *tail = rt->ready_tail;
    rt->ready_head = rt->ready_tail = NULL;
    for (sl_task *t = batch; t;) {
        sl_task *next = (t == tail) ? NULL : t->ready_next;
        t->on_ready = 0;
        t->ready_next = NULL;
        if (!sl_task_finished(t))
            task_run(t, t->wake_nargs);
        t = next;
    }
    if (!rt->ready_head)
        uv_idle_stop(&rt->ready_idle);
}

void sl_task_resume(sl_task *t, int nargs)
{
    if (sl_task_finished(t))
        return;
    task_run(t, nargs);
}

void sl_task_wake(sl_task *t, int nargs)
{
    if (sl_task_finished(t))
        return;
    t->wake_nargs = nargs;
    ready_push(t);
}

int sl_task_await(lua_State *L, sl_cleanup_fn cleanup, void *data)
{
    sl_task *t = sl_task_check_current(L);
    t->state = SL_TASK_WAITING;
    t->cleanup = cleanup;
    t->cleanup_data = data;
    return lua_yield(L, 0);
}

sl_task *sl_task_spawn(lua_State *L, int nargs)
{
    sl_rt *rt = sl_rt_get(L);
    int fidx = lua_gettop(L) - nargs;
    luaL_checktype(L, fidx, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);        /* [f, args..., co] */
    int co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sl_task *t = lua_newuserdata(L, sizeof *t); /* [f, args..., t] */
    memset(t, 0, sizeof *t);
    t->rt = rt;
    t->co = co;
    t->co_ref = co_ref;
    t->defer_ref = LUA_NOREF;
    t->result_ref = LUA_NOREF;
    t->id = next_task_id++;
    luaL_getmetatable(L, TASK_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    t->joiners_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, co_ref);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);

    lua_insert(L, fidx);                     /* [t, f, args...] */
    lua_xmove(L, co, nargs + 1);             /* co: [f, args...] */
    rt->live_tasks++;
    t->state = SL_TASK_READY;
    t->wake_nargs = nargs;
    ready_push(t);
    return t;
}

static sl_task *check_task(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, TASK_MT);
}

/* task.spawn(fn, ...) -> task */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    sl_task_spawn(L, lua_gettop(L) - 1);
    return 1;
}

/* task.current() -> task | nil */
static int l_current(lua_State *L)
{
    sl_task *t = sl_task_current(L);
    if (!t)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    return 1;
}

/* task.suspend() -> ... : waits until task.wake(t, ...) passes values */
static int l_suspend(lua_State *L)
{
    return sl_task_await(L, NULL, NULL);
}

/* task.wake(t, ...) : resumes a suspended task with the values given */
static int l_wake(lua_State *L)
{
    sl_task *t = check_task(L, 1);
    int n = lua_gettop(L) - 1;
    if (t->state != SL_TASK_WAITING || t->on_ready || t->cleanup)
        return luaL_error(L, "task %lu is not suspended", t->id);
    lua_xmove(L, t->co, n);
    sl_task_wake(t, n);
    return 0;
}

/* task.yield() : lets every other ready task run once */
static int l_yield(lua_State *L)
{
    sl_task *t = sl_task_check_current(L);
    t->wake_nargs = 0;
    ready_push(t);
    return sl_task_await(L, NULL, NULL);
}

typedef struct {
    uv_timer_t timer;
    sl_task *task;
} sleep_req;

static void sleep_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sleep_fired(uv_timer_t *timer)
{
    sleep_req *r = timer->data;
    sl_task *t = r->task;
    uv_close((uv_handle_t *)timer, sleep_closed);
    sl_task_resume(t, 0);
}

static void sleep_cancel(void *data)
{
    sleep_req *r = data;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, sleep_closed);
}

/* task.sleep(seconds) */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    sl_task *t = sl_task_check_current(L);
    if (s < 0)
        s = 0;
    sleep_req *r = malloc(sizeof *r);
    if (!r)
        return luaL_error(L, "out of memory");
    r->task = t;
    uv_timer_init(t->rt->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, sleep_fired, (uint64_t)(s * 1000.0 + 0.5), 0);
    return sl_task_await(L, sleep_cancel, r);
}

/* task.defer(fn) : fn runs when the current task ends, however it ends */
static int l_defer(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    sl_task *t = sl_task_check_current(L);
    if (t->defer_ref == LUA_NOREF) {
        lua_newtable(L);
        t->defer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->defer_ref);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 1);
    return 0;
}

/* task.now() -> seconds from a monotonic clock */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static void join_cleanup(void *data)
{
    /* data: the joined task; the waiter removes itself from its joiners */
    sl_task *target = data;
    (void)target;
}

/* t:join() -> true, ... | nil, err */
static int l_join(lua_State *L)
{
    sl_task *t = check_task(L, 1);
    if (sl_task_finished(t))
        return push_results(L, t);
    sl_task *self = sl_task_check_current(L);
    if (self == t)
        return luaL_error(L, "a task cannot join itself");
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->joiners_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->self_ref);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return sl_task_await(L, join_cleanup, t);
}

/* t:cancel() -> true | false if it had already finished */
static int l_cancel(lua_State *L)
{
    sl_task *t = check_task(L, 1);
    if (sl_task_finished(t)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (t->state == SL_TASK_RUNNING) {
        if (sl_task_current(L) == t)
            return luaL_error(L, "cancelled");
        return luaL_error(L, "cannot cancel a task that is resuming another");
    }
    if (t->cleanup)
        t->cleanup(t->cleanup_data);
    t->cleanup = NULL;
    lua_State *ML = t->rt->L;
    lua_newtable(ML);
    lua_pushboolean(ML, 0);
    lua_rawseti(ML, -2, 1);
    lua_pushstring(ML, "cancelled");
    lua_rawseti(ML, -2, 2);
    lua_pushinteger(ML, 1);
    lua_setfield(ML, -2, "n");
    task_end(t, SL_TASK_CANCELLED);
    lua_pushboolean(L, 1);
    return 1;
}

/* t:status() -> "ready"|"running"|"waiting"|"done"|"failed"|"cancelled" */
static int l_status(lua_State *L)
{
    static const char *names[] = {"ready", "running", "waiting",
                                  "done", "failed", "cancelled"};
    sl_task *t = check_task(L, 1);
    lua_pushstring(L, names[t->state]);
    return 1;
}

/* t:id() -> integer */
static int l_id(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)check_task(L, 1)->id);
    return 1;
}

static int l_tostring(lua_State *L)
{
    sl_task *t = check_task(L, 1);
    lua_pushfstring(L, "task %d", (int)t->id);
    return 1;
}

/* The metatable exists from the runtime's start: the root task is spawned
 * before any script has required sluice.task. */
static void task_metatable(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"join", l_join}, {"cancel", l_cancel}, {"status", l_status},
        {"id", l_id}, {NULL, NULL}};
    if (luaL_newmetatable(L, TASK_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

int luaopen_sluice_task(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"spawn", l_spawn}, {"current", l_current}, {"suspend", l_suspend},
        {"wake", l_wake}, {"yield", l_yield}, {"sleep", l_sleep},
        {"defer", l_defer}, {"now", l_now}, {NULL, NULL}};
    task_metatable(L);
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    return 1;
}
