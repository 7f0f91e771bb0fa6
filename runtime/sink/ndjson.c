/*
 * sluice.sink.ndjson: documents as newline-delimited JSON, to a file or to
 * stdout ("-"), for pipes (`sluice sync ... | jq`) and debugging.
 *
 * Lines are serialised in C (jsonbuf) into one buffer and written with
 * write(2) once it passes 64 KiB, on flush and on close. Writes are
 * blocking: a local file or a pipe drains fast, and a reader that stops
 * reading should stop the sync too. A document that cannot be serialised
 * writes nothing and returns an error; the writer stays usable.
 */
#include "jsonbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define NDJSON_MT "sluice.sink.ndjson"
#define FLUSH_AT (64 * 1024)

typedef struct sl_ndjson {
    int fd;       /* -1 once closed */
    int owns_fd;  /* 0 for stdout */
    double count; /* lines written (buffered ones included) */
    sl_jsonbuf buf;
} sl_ndjson;

static int push_error(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int push_errno(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", uv_err_name(uv_translate_sys_error(err)),
                    uv_strerror(uv_translate_sys_error(err)));
    return 2;
}

/* Writes out the whole buffer. Returns 0, or an errno value; on error what
 * was not written stays buffered. */
static int ndjson_drain(sl_ndjson *w)
{
    size_t off = 0;
    int err = 0;
    while (off < w->buf.len) {
        ssize_t n = write(w->fd, w->buf.ptr + off, w->buf.len - off);
        if (n >= 0) {
            off += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* stdout may be non-blocking (libuv sets it so for ttys) */
            struct pollfd p = {w->fd, POLLOUT, 0};
            poll(&p, 1, -1);
        } else if (errno != EINTR) {
            err = errno;
            break;
        }
    }
    if (off) {
        memmove(w->buf.ptr, w->buf.ptr + off, w->buf.len - off);
        w->buf.len -= off;
    }
    return err;
}

static sl_ndjson *check_open(lua_State *L)
{
    sl_ndjson *w = luaL_checkudata(L, 1, NDJSON_MT);
    if (w->fd < 0)
        luaL_error(L, "ndjson writer is closed");
    return w;
}

/* ndjson.open(path_or_dash[, {append=bool}]) -> w | nil, err
 * "-" writes to stdout; a path is created or truncated (or appended to). */
static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int append = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "append");
        append = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    sl_ndjson *w = lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    w->fd = -1;
    sl_jsonbuf_init(&w->buf);
    luaL_getmetatable(L, NDJSON_MT);
    lua_setmetatable(L, -2);
    if (strcmp(path, "-") == 0) {
        w->fd = STDOUT_FILENO;
        return 1;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
    int fd = open(path, flags, 0644);
    if (fd < 0)
        return push_errno(L, errno);
    w->fd = fd;
    w->owns_fd = 1;
    return 1;
}

static int after_line(lua_State *L, sl_ndjson *w)
{
    w->count++;
    if (w->buf.len >= FLUSH_AT) {
        int err = ndjson_drain(w);
        if (err)
            return push_errno(L, err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* w:put(doc) -> true | nil, err
 * Appends doc as one JSON line. */
static int l_put(lua_State *L)
{
    sl_ndjson *w = check_open(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *err;
    size_t mark = w->buf.len;
    if (sl_jsonbuf_value(&w->buf, L, 2, &err) != 0)
        return push_error(L, err);
    if (sl_jsonbuf_putc(&w->buf, '\n') != 0) {
        w->buf.len = mark;
        return push_error(L, "out of memory");
    }
    return after_line(L, w);
}

/* w:delete(id) -> true | nil, err
 * Appends {"_id":id,"_op":"delete"}. */
static int l_delete(lua_State *L)
{
    sl_ndjson *w = check_open(L);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    size_t mark = w->buf.len;
    if (sl_jsonbuf_append(&w->buf, "{\"_id\":", 7) != 0 || sl_jsonbuf_string(&w->buf, id, n) != 0 ||
        sl_jsonbuf_append(&w->buf, ",\"_op\":\"delete\"}\n", 17) != 0) {
        w->buf.len = mark;
        return push_error(L, "out of memory");
    }
    return after_line(L, w);
}

/* w:flush() -> true | nil, err
 * Writes out everything buffered. */
static int l_flush(lua_State *L)
{
    sl_ndjson *w = check_open(L);
    int err = ndjson_drain(w);
    if (err)
        return push_errno(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* w:count() -> n (lines written: documents and deletes) */
static int l_count(lua_State *L)
{
    sl_ndjson *w = luaL_checkudata(L, 1, NDJSON_MT);
    lua_pushnumber(L, w->count);
    return 1;
}

/* Flushes and releases; returns 0 or the first errno. */
static int ndjson_close(sl_ndjson *w)
{
    int err = ndjson_drain(w);
    if (w->owns_fd && close(w->fd) != 0 && !err)
        err = errno;
    w->fd = -1;
    sl_jsonbuf_free(&w->buf);
    return err;
}

/* w:close() -> true | nil, err
 * Flushes and closes the file (never stdout). Closing twice is fine. */
static int l_close(lua_State *L)
{
    sl_ndjson *w = luaL_checkudata(L, 1, NDJSON_MT);
    if (w->fd >= 0) {
        int err = ndjson_close(w);
        if (err)
            return push_errno(L, err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int ndjson_gc(lua_State *L)
{
    sl_ndjson *w = lua_touserdata(L, 1);
    if (w->fd >= 0)
        ndjson_close(w);
    return 0;
}

int luaopen_sluice_sink_ndjson(lua_State *L)
{
    static const luaL_Reg methods[] = {{"put", l_put},     {"delete", l_delete},
                                       {"flush", l_flush}, {"count", l_count},
                                       {"close", l_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, NDJSON_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ndjson_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    return 1;
}
