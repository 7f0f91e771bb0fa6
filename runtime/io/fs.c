/*
 * sluice.fs: the filesystem primitives the filesystem connector (a walk over
 * thousands of files), the state directory and the tests use.
 *
 * Why two speeds: metadata calls (stat, dir, readlink, mkdir_p, ...) are
 * plain blocking syscalls, because they are short and a tree walk makes
 * thousands of them, so a thread-pool round trip per call would cost more
 * than it saves. Content reads (fs.read, file:read, fs.mime_file) go through
 * the libuv thread pool, because a slow disk or a network mount can stall
 * for seconds and must not freeze every other task. Outside a task they
 * fall back to blocking reads.
 *
 * Why requests orphan themselves: a uv_fs request cannot be cancelled once a
 * pool thread runs it. A cancelled task only marks its request orphaned; the
 * request finishes its chain (closing its fd) and frees itself without
 * touching Lua. The per-runtime state (the libmagic handle and the list of
 * requests in flight) is a registry userdata whose __gc, at lua_close,
 * orphans whatever is still in flight: the loop drains after the Lua state
 * is gone.
 *
 * Files are opened O_NONBLOCK so a FIFO met during a walk never parks a pool
 * thread forever (a read then ends at once with "" or EAGAIN).
 *
 * Errors follow luv: nil, "ENOENT: no such file or directory", "ENOENT".
 */
#include "io/fs.h"

#include "core/rt.h"
#include "codec/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <magic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_STATE_KEY "sluice.fs.state"
#define STATE_MT "sluice.fs.state"
#define DIR_MT "sluice.fs.dir"
#define FILE_MT "sluice.fs.file"
#define LOCK_MT "sluice.fs.lock"

#define MIME_PROBE_BYTES 65536     /* what fs.mime_file reads */
#define MIME_SCAN_MAX (256 << 10)  /* what libmagic is shown at most */
#define READ_STEP_MAX (1u << 30)   /* uv_buf_t.len is an unsigned int */
#define FILE_CHUNK_DEFAULT 65536
#define FILE_CHUNK_MAX (1 << 30)

typedef struct fs_req fs_req;
typedef struct fs_file fs_file;

typedef struct {
    magic_t magic;     /* created on first use; NULL until then */
    fs_req *inflight;  /* every request whose callback has not run yet */
} fs_state;

enum req_kind { REQ_WHOLE, REQ_MIME, REQ_CHUNK };
enum req_stage { ST_OPEN, ST_FSTAT, ST_READ, ST_CLOSE };

struct fs_req {
    uv_fs_t uv;
    uv_loop_t *loop;
    fs_state *st;      /* NULL once the Lua state is gone */
    fs_req *prev, *next;
    sl_task *task;     /* NULL once orphaned: never resume */
    enum req_kind kind;
    enum req_stage stage;
    uv_file fd;
    int err;           /* first libuv error (negative), 0 if none */
    char *buf;
    size_t len, cap, want; /* want: stop reading at this many bytes */
    size_t max;        /* bytes returned at most */
    int capped;        /* max applies */
    fs_file *file;     /* REQ_CHUNK: the file, NULL once closed/collected */
    int close_fd;      /* REQ_CHUNK: the file let go of fd; close it here */
    char *hint;        /* REQ_MIME: the path, as the name hint */
};

struct fs_file {
    int fd;            /* -1 once closed */
    fs_req *inflight;  /* the read in progress, if any */
};

typedef struct {
    DIR *d;
} fs_dir;

/* ---- errors and arguments --------------------------------------------- */

/* Pushes nil, "ENAME: message", "ENAME" for a (negative) libuv error. */
static int push_uverr(lua_State *L, int uverr)
{
    char name[64], msg[160];
    uv_err_name_r(uverr, name, sizeof name);
    uv_strerror_r(uverr, msg, sizeof msg);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", name, msg);
    lua_pushstring(L, name);
    return 3;
}

static int push_errno(lua_State *L, int e)
{
    return push_uverr(L, uv_translate_sys_error(e));
}

/* Paths go to the kernel as C strings: an embedded NUL would silently name
 * another file, so it is refused as misuse. */
static const char *check_path(lua_State *L, int idx)
{
    size_t len;
    const char *p = luaL_checklstring(L, idx, &len);
    if (strlen(p) != len)
        luaL_argerror(L, idx, "path contains a NUL byte");
    return p;
}

static fs_state *state_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- requests in flight ----------------------------------------------- */

static fs_req *req_new(lua_State *L, fs_state *st, enum req_kind kind)
{
    uv_loop_t *loop = sl_rt_get(L)->loop; /* may raise: before calloc */
    fs_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->st = st;
    r->kind = kind;
    r->fd = -1;
    r->uv.data = r;
    r->next = st->inflight;
    if (st->inflight)
        st->inflight->prev = r;
    st->inflight = r;
    return r;
}

static void req_free(fs_req *r)
{
    if (r->st) {
        if (r->prev)
            r->prev->next = r->next;
        else
            r->st->inflight = r->next;
        if (r->next)
            r->next->prev = r->prev;
    }
    free(r->buf);
    free(r->hint);
    free(r);
}

/* The task's cleanup: the request runs on but never resumes anyone. */
static void req_orphan(void *data)
{
    fs_req *r = data;
    r->task = NULL;
}

/* Sizes the buffer for a file that claims `size` bytes: one byte more so EOF
 * shows without growing, never more than `want`. Returns 0 on no memory. */
static int buf_init(fs_req *r, int64_t size)
{
    size_t cap = 4096;
    if (size > 0 && (uint64_t)size < SIZE_MAX - 1 && (size_t)size + 1 > cap)
        cap = (size_t)size + 1;
    if (cap > r->want)
        cap = r->want;
    r->buf = malloc(cap ? cap : 1);
    r->cap = cap;
    r->len = 0;
    return r->buf != NULL;
}

/* Makes room for the next read; returns the byte count to ask for, or 0
 * when out of memory. Only called while len < want. */
static size_t buf_room(fs_req *r)
{
    if (r->len == r->cap) {
        size_t ncap = r->cap > SIZE_MAX / 2 ? SIZE_MAX : r->cap * 2;
        if (ncap > r->want)
            ncap = r->want;
        char *nb = realloc(r->buf, ncap);
        if (!nb)
            return 0;
        r->buf = nb;
        r->cap = ncap;
    }
    size_t n = r->cap - r->len;
    if (n > r->want - r->len)
        n = r->want - r->len;
    if (n > READ_STEP_MAX)
        n = READ_STEP_MAX;
    return n;
}

static void req_set_limit(fs_req *r, int capped, size_t max)
{
    r->capped = capped && max < SIZE_MAX - 1;
    r->max = r->capped ? max : SIZE_MAX;
    /* one byte past the cap tells "exactly max" from "longer than max" */
    r->want = r->capped ? max + 1 : SIZE_MAX;
}

static int push_mime(lua_State *L, fs_state *st, const char *buf, size_t len,
                     const char *hint);

/* Pushes the outcome of a whole-file read: bytes, truncated | mime, charset
 * | nil, err, code. */
static int push_read_result(lua_State *L, fs_req *r)
{
    if (r->err)
        return push_uverr(L, r->err);
    size_t n = r->len > r->max ? r->max : r->len;
    if (r->kind == REQ_MIME)
        return push_mime(L, r->st, r->buf ? r->buf : "", n, r->hint);
    lua_pushlstring(L, r->buf ? r->buf : "", n);
    lua_pushboolean(L, r->capped && r->len > r->max);
    return 2;
}

/* ---- whole-file reads on the thread pool ------------------------------ */

static void whole_cb(uv_fs_t *uv);

static void whole_finish(fs_req *r)
{
    sl_task *t = r->task;
    if (!t) {
        req_free(r);
        return;
    }
    int n = push_read_result(t->co, r);
    req_free(r);
    sl_task_resume(t, n);
}

static void whole_close(fs_req *r)
{
    r->stage = ST_CLOSE;
    if (uv_fs_close(r->loop, &r->uv, r->fd, whole_cb) < 0) {
        close(r->fd);
        whole_finish(r);
    }
}

static void whole_read(fs_req *r)
{
    size_t n = buf_room(r);
    if (n == 0) {
        r->err = UV_ENOMEM;
        whole_close(r);
        return;
    }
    uv_buf_t b = uv_buf_init(r->buf + r->len, (unsigned int)n);
    r->stage = ST_READ;
    int rc = uv_fs_read(r->loop, &r->uv, r->fd, &b, 1, -1, whole_cb);
    if (rc < 0) {
        r->err = rc;
        whole_close(r);
    }
}

/* One callback drives open -> fstat -> read* -> close; every stage checks
 * for an orphaned request and heads for close so the fd never leaks. */
static void whole_cb(uv_fs_t *uv)
{
    fs_req *r = uv->data;
    ssize_t res = uv->result;
    int64_t size = (int64_t)uv->statbuf.st_size;
    uv_fs_req_cleanup(uv);
    switch (r->stage) {
    case ST_OPEN:
        if (res < 0) {
            r->err = (int)res;
            whole_finish(r);
            return;
        }
        r->fd = (uv_file)res;
        if (!r->task) {
            whole_close(r);
            return;
        }
        r->stage = ST_FSTAT;
        if ((res = uv_fs_fstat(r->loop, &r->uv, r->fd, whole_cb)) < 0) {
            r->err = (int)res;
            whole_close(r);
        }
        return;
    case ST_FSTAT:
        if (res < 0)
            r->err = (int)res;
        else if (r->task && !buf_init(r, size))
            r->err = UV_ENOMEM;
        if (r->err || !r->task)
            whole_close(r);
        else
            whole_read(r);
        return;
    case ST_READ:
        if (res < 0)
            r->err = (int)res;
        else
            r->len += (size_t)res;
        if (res <= 0 || !r->task || r->len >= r->want)
            whole_close(r);
        else
            whole_read(r);
        return;
    case ST_CLOSE:
        whole_finish(r); /* a close error after a good read loses nothing */
        return;
    }
}

/* The blocking twin of the chain above, for callers outside a task. */
static void whole_sync(fs_req *r, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        r->err = uv_translate_sys_error(errno);
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        r->err = uv_translate_sys_error(errno);
    else if (!buf_init(r, (int64_t)sb.st_size))
        r->err = UV_ENOMEM;
    while (!r->err && r->len < r->want) {
        size_t n = buf_room(r);
        if (n == 0) {
            r->err = UV_ENOMEM;
            break;
        }
        ssize_t got = read(fd, r->buf + r->len, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            r->err = uv_translate_sys_error(errno);
        if (got <= 0)
            break;
        r->len += (size_t)got;
    }
    close(fd);
}

/* Reads `path` whole (up to the limit set on r): yields inside a task,
 * blocks outside one. Takes ownership of r. */
static int whole_start(lua_State *L, fs_req *r, const char *path)
{
    sl_task *t = sl_task_current(L);
    if (!t) {
        whole_sync(r, path);
        int n = push_read_result(L, r);
        req_free(r);
        return n;
    }
    r->stage = ST_OPEN;
    int rc = uv_fs_open(r->loop, &r->uv, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK,
                        0, whole_cb);
    if (rc < 0) {
        uv_fs_req_cleanup(&r->uv);
        req_free(r);
        return push_uverr(L, rc);
    }
    r->task = t;
    return sl_task_await(L, req_orphan, r);
}

/* Reads the optional byte cap at idx; no cap when absent or >= 2^53. */
static void check_limit(lua_State *L, int idx, int *capped, size_t *max)
{
    *capped = 0;
    *max = 0;
    if (lua_isnoneornil(L, idx))
        return;
    lua_Number m = luaL_checknumber(L, idx);
    luaL_argcheck(L, m >= 0 && m == m, idx, "must be a number >= 0");
    if (m < 9007199254740992.0) { /* 2^53: beyond, no cap is meaningful */
        *capped = 1;
        *max = (size_t)m;
    }
}

/* fs.read(path[, max_bytes]) -> bytes, truncated | nil, err, code
 * Reads on the thread pool (blocking outside a task). truncated is true
 * when the file holds more than max_bytes; only max_bytes come back. */
static int l_read(lua_State *L)
{
    const char *path = check_path(L, 1);
    int capped;
    size_t max;
    check_limit(L, 2, &capped, &max);
    fs_req *r = req_new(L, state_of(L), REQ_WHOLE);
    if (!r)
        return push_uverr(L, UV_ENOMEM);
    req_set_limit(r, capped, max);
    return whole_start(L, r, path);
}

/* ---- streaming files -------------------------------------------------- */

static fs_file *check_file(lua_State *L)
{
    return luaL_checkudata(L, 1, FILE_MT);
}

/* Lets go of the fd: a read still in flight on a pool thread owns it and
 * closes it when done, so the number is never reused under that read. */
static void file_release(fs_file *f)
{
    if (f->fd < 0)
        return;
    if (f->inflight) {
        f->inflight->close_fd = 1;
        f->inflight->file = NULL;
        f->inflight = NULL;
    } else {
        close(f->fd);
    }
    f->fd = -1;
}

static void chunk_cb(uv_fs_t *uv)
{
    fs_req *r = uv->data;
    ssize_t res = uv->result;
    uv_fs_req_cleanup(uv);
    if (r->file)
        r->file->inflight = NULL;
    if (r->close_fd)
        close(r->fd);
    sl_task *t = r->task;
    if (!t) {
        req_free(r);
        return;
    }
    int n;
    if (res < 0) {
        n = push_uverr(t->co, (int)res);
    } else {
        lua_pushlstring(t->co, r->buf, (size_t)res);
        n = 1;
    }
    req_free(r);
    sl_task_resume(t, n);
}

/* fs.open(path) -> file | nil, err, code
 * A streaming reader: file:read(n) hands out the next n bytes at most. */
static int l_open(lua_State *L)
{
    const char *path = check_path(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return push_errno(L, errno);
    fs_file *f = lua_newuserdata(L, sizeof *f);
    f->fd = fd;
    f->inflight = NULL;
    luaL_getmetatable(L, FILE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* file:read([n]) -> bytes | "" at EOF | nil, err, code
 * n defaults to 65536. On the thread pool inside a task. Cancelling the
 * task mid-read drops that chunk: the file position has moved past it. */
static int l_file_read(lua_State *L)
{
    fs_file *f = check_file(L);
    lua_Integer n = luaL_optinteger(L, 2, FILE_CHUNK_DEFAULT);
    luaL_argcheck(L, n >= 1 && n <= FILE_CHUNK_MAX, 2,
                  "must be between 1 and 2^30");
    if (f->fd < 0)
        return luaL_error(L, "attempt to use a closed file");
    if (f->inflight)
        return luaL_error(L, "file is busy: another task is reading it");
    sl_task *t = sl_task_current(L);
    if (!t) {
        char *tmp = malloc((size_t)n);
        if (!tmp)
            return push_uverr(L, UV_ENOMEM);
        ssize_t got;
        do
            got = read(f->fd, tmp, (size_t)n);
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            int e = errno;
            free(tmp);
            return push_errno(L, e);
        }
        lua_pushlstring(L, tmp, (size_t)got);
        free(tmp);
        return 1;
    }
    fs_req *r = req_new(L, state_of(L), REQ_CHUNK);
    if (!r || !(r->buf = malloc((size_t)n))) {
        if (r)
            req_free(r);
        return push_uverr(L, UV_ENOMEM);
    }
    r->fd = f->fd;
    r->file = f;
    uv_buf_t b = uv_buf_init(r->buf, (unsigned int)n);
    int rc = uv_fs_read(r->loop, &r->uv, f->fd, &b, 1, -1, chunk_cb);
    if (rc < 0) {
        uv_fs_req_cleanup(&r->uv);
        req_free(r);
        return push_uverr(L, rc);
    }
    f->inflight = r;
    r->task = t;
    return sl_task_await(L, req_orphan, r);
}

/* file:close() -> true; closing twice is harmless */
static int l_file_close(lua_State *L)
{
    file_release(check_file(L));
    lua_pushboolean(L, 1);
    return 1;
}

/* file:__gc() : closes the fd unless a read in flight still owns it */
static int l_file_gc(lua_State *L)
{
    file_release(check_file(L));
    return 0;
}

/* tostring(file) -> "fs.file (fd N)" | "fs.file (closed)" */
static int l_file_tostring(lua_State *L)
{
    fs_file *f = check_file(L);
    if (f->fd < 0)
        lua_pushliteral(L, "fs.file (closed)");
    else
        lua_pushfstring(L, "fs.file (fd %d)", f->fd);
    return 1;
}

/* ---- directories ------------------------------------------------------ */

/* dir:__gc() : closes a listing left by an early break */
static int l_dir_gc(lua_State *L)
{
    fs_dir *d = luaL_checkudata(L, 1, DIR_MT);
    if (d->d) {
        closedir(d->d);
        d->d = NULL;
    }
    return 0;
}

static const char *dtype_kind(unsigned char t)
{
    switch (t) {
    case DT_REG: return "file";
    case DT_DIR: return "directory";
    case DT_LNK: return "link";
    case DT_UNKNOWN: return "unknown";
    default: return "other";
    }
}

/* it() -> name, kind | nil at the end
 * The iterator fs.dir returns is the dir userdata itself, called through
 * __call: a closure per directory would be a new function object each time,
 * and LuaJIT traces that specialise on it keep it (and its open DIR*)
 * alive after an early break; a shared metatable pins nothing.
 *
 * A readdir failure raises: ending the loop quietly would pass a partial
 * listing off as complete, and a full sync deletes what a complete listing
 * lacks. */
static int l_dir_next(lua_State *L)
{
    fs_dir *d = luaL_checkudata(L, 1, DIR_MT);
    if (!d->d)
        return 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d->d);
        if (!e) {
            int err = errno;
            closedir(d->d);
            d->d = NULL;
            if (!err)
                return 0;
            char name[64], msg[160];
            uv_err_name_r(uv_translate_sys_error(err), name, sizeof name);
            uv_strerror_r(uv_translate_sys_error(err), msg, sizeof msg);
            return luaL_error(L, "readdir failed: %s: %s", name, msg);
        }
        const char *n = e->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        lua_pushstring(L, n);
        lua_pushstring(L, dtype_kind(e->d_type));
        return 2;
    }
}

/* fs.dir(path) -> iterator | nil, err, code
 * `for name, kind in it do`: names are raw bytes (maybe not UTF-8), kind is
 * "file"|"directory"|"link"|"other"|"unknown" from d_type (no stat). The
 * directory closes at the end of the listing, or on __gc if the loop
 * breaks early. */
static int l_dir(lua_State *L)
{
    const char *path = check_path(L, 1);
    fs_dir *d = lua_newuserdata(L, sizeof *d);
    d->d = NULL;
    luaL_getmetatable(L, DIR_MT);
    lua_setmetatable(L, -2);
    d->d = opendir(path);
    if (!d->d)
        return push_errno(L, errno);
    return 1;
}

/* ---- metadata --------------------------------------------------------- */

static const char *mode_kind(mode_t m)
{
    if (S_ISREG(m))
        return "file";
    if (S_ISDIR(m))
        return "directory";
    if (S_ISLNK(m))
        return "link";
    return "other";
}

static void set_num(lua_State *L, const char *k, lua_Number v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void push_stat(lua_State *L, const struct stat *sb)
{
    lua_createtable(L, 0, 11);
    lua_pushstring(L, mode_kind(sb->st_mode));
    lua_setfield(L, -2, "type");
    set_num(L, "size", (lua_Number)sb->st_size);
    set_num(L, "mtime", (lua_Number)sb->st_mtim.tv_sec +
                            (lua_Number)sb->st_mtim.tv_nsec / 1e9);
    set_num(L, "mtime_ns", (lua_Number)sb->st_mtim.tv_nsec);
    set_num(L, "mode", (lua_Number)(sb->st_mode & 07777));
    set_num(L, "ino", (lua_Number)sb->st_ino);
    set_num(L, "dev", (lua_Number)sb->st_dev);
    set_num(L, "nlink", (lua_Number)sb->st_nlink);
    set_num(L, "uid", (lua_Number)sb->st_uid);
    set_num(L, "gid", (lua_Number)sb->st_gid);
}

/* fs.stat(path) -> {type, size, mtime, mtime_ns, mode, ino, dev, nlink, uid,
 * gid} | nil, err, code. Follows symlinks. type is "file"|"directory"|
 * "link"|"other"; mtime is float seconds (a double holds about 0.2 us at
 * today's epoch: mtime_ns is the exact nanosecond part); mode is the
 * permission bits. */
static int l_stat(lua_State *L)
{
    struct stat sb;
    if (stat(check_path(L, 1), &sb) != 0)
        return push_errno(L, errno);
    push_stat(L, &sb);
    return 1;
}

/* fs.lstat(path) -> same as fs.stat, about the link itself */
static int l_lstat(lua_State *L)
{
    struct stat sb;
    if (lstat(check_path(L, 1), &sb) != 0)
        return push_errno(L, errno);
    push_stat(L, &sb);
    return 1;
}

/* fs.readlink(path) -> target | nil, err, code */
static int l_readlink(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t cap = 256;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf)
            return push_uverr(L, UV_ENOMEM);
        ssize_t n = readlink(path, buf, cap);
        if (n < 0) {
            int e = errno;
            free(buf);
            return push_errno(L, e);
        }
        if ((size_t)n < cap) { /* n == cap may mean truncated: retry */
            lua_pushlstring(L, buf, (size_t)n);
            free(buf);
            return 1;
        }
        free(buf);
        if (cap > (1 << 20))
            return push_uverr(L, UV_ENAMETOOLONG);
        cap *= 4;
    }
}

/* fs.realpath(path) -> absolute path, links and dots resolved | nil, err, code */
static int l_realpath(lua_State *L)
{
    char *p = realpath(check_path(L, 1), NULL);
    if (!p)
        return push_errno(L, errno);
    lua_pushstring(L, p);
    free(p);
    return 1;
}

/* fs.exists(path) -> boolean (follows links: a broken link is false) */
static int l_exists(lua_State *L)
{
    struct stat sb;
    lua_pushboolean(L, stat(check_path(L, 1), &sb) == 0);
    return 1;
}

/* fs.access(path, mode) -> boolean; mode is a mix of "r", "w", "x". Asks
 * with the real ids, as access(2) does (root passes most checks). */
static int l_access(lua_State *L)
{
    const char *path = check_path(L, 1);
    const char *m = luaL_checkstring(L, 2);
    int how = 0;
    for (const char *c = m; *c; c++) {
        if (*c == 'r')
            how |= R_OK;
        else if (*c == 'w')
            how |= W_OK;
        else if (*c == 'x')
            how |= X_OK;
        else
            return luaL_argerror(L, 2, "must be made of \"r\", \"w\", \"x\"");
    }
    luaL_argcheck(L, how != 0, 2, "must be made of \"r\", \"w\", \"x\"");
    lua_pushboolean(L, access(path, how) == 0);
    return 1;
}

/* ---- changes ---------------------------------------------------------- */

static int push_true(lua_State *L)
{
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.write(path, data) -> true | nil, err, code
 * Writes path..".tmp", syncs it, then renames it over path: a reader sees
 * the old file or the new one, never half of it. */
static int l_write(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    const char *tmp = lua_pushfstring(L, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return push_errno(L, errno);
    size_t off = 0;
    int err = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        off += (size_t)n;
    }
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && rename(tmp, path) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        return push_errno(L, err);
    }
    return push_true(L);
}

/* fs.mkdir_p(path[, mode]) -> true | nil, err, code
 * Creates path and its missing parents (mode default 0777, less umask).
 * An existing directory is success; an existing non-directory is EEXIST. */
static int l_mkdir_p(lua_State *L)
{
    size_t len;
    check_path(L, 1);
    const char *path = lua_tolstring(L, 1, &len);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0777);
    if (len == 0)
        return push_errno(L, ENOENT);
    char *buf = malloc(len + 1);
    if (!buf)
        return push_uverr(L, UV_ENOMEM);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && (buf[i] != '/' || buf[i - 1] == '/'))
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        int rc = mkdir(buf, mode);
        int e = errno;
        buf[i] = saved;
        if (rc != 0 && e != EEXIST) {
            free(buf);
            return push_errno(L, e);
        }
    }
    free(buf);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return push_errno(L, errno);
    if (!S_ISDIR(sb.st_mode))
        return push_errno(L, EEXIST);
    return push_true(L);
}

/* fs.remove(path) -> true | nil, err, code (a file, or an empty directory) */
static int l_remove(lua_State *L)
{
    if (remove(check_path(L, 1)) != 0)
        return push_errno(L, errno);
    return push_true(L);
}

/* fs.rename(from, to) -> true | nil, err, code (replaces `to` atomically) */
static int l_rename(lua_State *L)
{
    if (rename(check_path(L, 1), check_path(L, 2)) != 0)
        return push_errno(L, errno);
    return push_true(L);
}

/* ---- advisory locks --------------------------------------------------- */

/* fs.lock(path) -> lock | nil, err, code ("EAGAIN" while another process
 * holds it). An exclusive flock(2) on path (created 0644 if missing), held
 * until lock:unlock(), collection or process exit: a sync killed with -9
 * leaves no stale lock behind. Never waits. */
static int l_lock(lua_State *L)
{
    const char *path = check_path(L, 1);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return push_errno(L, errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno == EWOULDBLOCK ? EAGAIN : errno;
        close(fd);
        return push_errno(L, e);
    }
    int *ud = lua_newuserdata(L, sizeof *ud);
    *ud = fd;
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* lock:unlock() -> true (again: a no-op); also the lock's __gc */
static int l_lock_unlock(lua_State *L)
{
    int *fd = luaL_checkudata(L, 1, LOCK_MT);
    if (*fd >= 0) {
        close(*fd); /* releases the flock */
        *fd = -1;
    }
    return push_true(L);
}

/* ---- content types ---------------------------------------------------- */

/* state:__gc() at lua_close: orphans the requests in flight, frees magic */
static int l_state_gc(lua_State *L)
{
    fs_state *st = lua_touserdata(L, 1);
    /* the loop outlives the Lua state: what is still in flight must not
     * reach back into it */
    for (fs_req *r = st->inflight, *next; r; r = next) {
        next = r->next;
        r->task = NULL;
        r->st = NULL;
        r->prev = r->next = NULL;
    }
    st->inflight = NULL;
    if (st->magic) {
        magic_close(st->magic);
        st->magic = NULL;
    }
    return 0;
}

/* Extensions that may refine a generic text/plain verdict, never override a
 * specific one: libmagic cannot tell plain text from markdown, CSS or a
 * bare HTML fragment, but a PNG named .html stays image/png. */
static const struct {
    const char *ext, *type;
} text_exts[] = {
    {"html", "text/html"}, {"htm", "text/html"},
    {"csv", "text/csv"}, {"tsv", "text/tab-separated-values"},
    {"md", "text/markdown"}, {"markdown", "text/markdown"},
    {"css", "text/css"}, {"js", "text/javascript"}, {"mjs", "text/javascript"},
    {"json", "application/json"}, {"xml", "text/xml"},
    {"yaml", "application/yaml"}, {"yml", "application/yaml"},
    {"rst", "text/x-rst"}, {"ics", "text/calendar"}, {"vtt", "text/vtt"},
    {NULL, NULL}};

static const char *hint_type(const char *hint)
{
    if (!hint)
        return NULL;
    const char *base = strrchr(hint, '/');
    base = base ? base + 1 : hint;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base)
        return NULL;
    for (int i = 0; text_exts[i].ext; i++)
        if (strcasecmp(dot + 1, text_exts[i].ext) == 0)
            return text_exts[i].type;
    return NULL;
}

/* Text needs no libmagic: its soft-magic pass compiles regexes on every
 * call (about 0.7 ms a file, most of a /usr/share/doc sync). Bytes that are
 * well-formed UTF-8 with no control characters but TAB, LF, FF, CR and ESC
 * are classified here from their first bytes and the name hint; anything
 * else, and text with a known binary-ish signature, goes to libmagic.
 * The sample's last 3 bytes may hold a character cut by the caller's
 * window, so an incomplete sequence at the very end still counts as text. */
static int fast_text(const char *buf, size_t len, int *ascii)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    *ascii = 1;
    if (len == 0)
        return 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' &&
                c != 0x1b)
                return 0;
            if (c == 0x7f)
                return 0;
            i++;
            continue;
        }
        int valid;
        size_t n = sl_utf8_next(s + i, len - i, &valid);
        if (!valid)
            return len - i < 4 && i + n == len; /* cut at the window's end */
        *ascii = 0;
        i += n;
    }
    return 1;
}

static int starts_with_ci(const char *buf, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len >= n && strncasecmp(buf, lit, n) == 0;
}

/* The type of text bytes from their start, or NULL to ask libmagic. */
static const char *text_signature(const char *buf, size_t len)
{
    size_t i = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' ||
                       buf[i] == '\r'))
        i++;
    const char *p = buf + i;
    size_t n = len - i;
    if (starts_with_ci(p, n, "%!PS") || starts_with_ci(p, n, "{\\rtf") ||
        starts_with_ci(p, n, "%PDF") || starts_with_ci(p, n, "%FDF"))
        return NULL; /* formats libmagic names precisely */
    if (starts_with_ci(p, n, "<!doctype html") || starts_with_ci(p, n, "<html"))
        return "text/html";
    if (starts_with_ci(p, n, "<?xml"))
        return "text/xml";
    return "text/plain";
}

/* Pushes mime, charset | nil, err for the bytes; the name hint applies only
 * to a text/plain verdict with a text charset. */
static int push_mime(lua_State *L, fs_state *st, const char *buf, size_t len,
                     const char *hint)
{
    if (!st->magic) {
        magic_t m = magic_open(MAGIC_MIME_TYPE | MAGIC_MIME_ENCODING);
        if (!m) {
            lua_pushnil(L);
            lua_pushliteral(L, "libmagic: cannot open");
            return 2;
        }
        if (magic_load(m, NULL) != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "libmagic: %s",
                            magic_error(m) ? magic_error(m) : "cannot load");
            magic_close(m);
            return 2;
        }
        st->magic = m;
    }
    if (len > MIME_SCAN_MAX)
        len = MIME_SCAN_MAX;
    int ascii;
    const char *sig;
    if (fast_text(buf, len, &ascii) && (sig = text_signature(buf, len))) {
        const char *refined = NULL;
        char found[128];
        if (strcmp(sig, "text/plain") == 0) {
            /* libmagic's built-in tests (CSV, JSON) are cheap; only its
             * soft-magic database is slow. */
            magic_setflags(st->magic, MAGIC_MIME_TYPE | MAGIC_NO_CHECK_SOFT);
            const char *b = magic_buffer(st->magic, buf, len);
            if (b && strcmp(b, "text/plain") != 0 &&
                strncmp(b, "application/octet", 17) != 0) {
                snprintf(found, sizeof found, "%s", b); /* b dies on the next call */
                sig = found;
            }
            magic_setflags(st->magic, MAGIC_MIME_TYPE | MAGIC_MIME_ENCODING);
            if (strcmp(sig, "text/plain") == 0)
                refined = hint_type(hint);
        }
        lua_pushstring(L, refined ? refined : sig);
        lua_pushstring(L, ascii ? "us-ascii" : "utf-8");
        return 2;
    }
    const char *res = magic_buffer(st->magic, buf, len);
    if (!res) {
        const char *e = magic_error(st->magic);
        lua_pushnil(L);
        lua_pushfstring(L, "libmagic: %s", e ? e : "no answer");
        return 2;
    }
    /* "type/sub; charset=xyz" */
    const char *semi = strchr(res, ';');
    size_t tlen = semi ? (size_t)(semi - res) : strlen(res);
    const char *cs = semi ? strstr(semi, "charset=") : NULL;
    cs = cs ? cs + 8 : NULL;
    const char *refined = NULL;
    if (tlen == 10 && memcmp(res, "text/plain", 10) == 0 && cs &&
        strcmp(cs, "binary") != 0)
        refined = hint_type(hint);
    if (refined)
        lua_pushstring(L, refined);
    else
        lua_pushlstring(L, res, tlen);
    if (cs)
        lua_pushstring(L, cs);
    else
        lua_pushnil(L);
    return 2;
}

/* fs.mime(bytes[, name_hint]) -> mime_type, charset | nil, err
 * libmagic on the bytes (the first 256 KiB at most). The content decides;
 * the hint's extension only turns a generic text/plain into a text type
 * libmagic cannot see (text/markdown, text/css...). application/octet-stream
 * stays as it is: no name makes binary content text. Empty input is
 * "application/x-empty", "binary". */
static int l_mime(lua_State *L)
{
    size_t len;
    const char *buf = luaL_checklstring(L, 1, &len);
    const char *hint = luaL_optstring(L, 2, NULL);
    return push_mime(L, state_of(L), buf, len, hint);
}

/* fs.mime_file(path) -> mime_type, charset | nil, err, code
 * fs.mime on the first 64 KiB of the file, its name as the hint; the read
 * goes through the thread pool like fs.read. */
static int l_mime_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    fs_req *r = req_new(L, state_of(L), REQ_MIME);
    if (!r || !(r->hint = strdup(path))) {
        if (r)
            req_free(r);
        return push_uverr(L, UV_ENOMEM);
    }
    req_set_limit(r, 1, MIME_PROBE_BYTES);
    return whole_start(L, r, path);
}

/* ---- glob matching (the matcher is in fs_glob.c) ------------------- */

/* fs.glob_match(pattern, path) -> boolean (grammar in fs_glob.c) */
static int l_glob_match(lua_State *L)
{
    size_t plen, len;
    const char *pat = luaL_checklstring(L, 1, &plen);
    const char *path = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, sl_fs_glob_match(pat, plen, path, len));
    return 1;
}

/* ---- path strings ----------------------------------------------------- */

/* fs.cwd() -> path | nil, err, code */
static int l_cwd(lua_State *L)
{
    char *p = getcwd(NULL, 0);
    if (!p)
        return push_errno(L, errno);
    lua_pushstring(L, p);
    free(p);
    return 1;
}

/* fs.basename(p) -> last component, as basename(1): "a/b/" -> "b",
 * "/" -> "/", "" -> "." */
static int l_basename(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    if (len == 0) {
        lua_pushliteral(L, ".");
        return 1;
    }
    while (len > 1 && p[len - 1] == '/')
        len--;
    if (len == 1 && p[0] == '/') {
        lua_pushliteral(L, "/");
        return 1;
    }
    size_t start = len;
    while (start > 0 && p[start - 1] != '/')
        start--;
    lua_pushlstring(L, p + start, len - start);
    return 1;
}

/* fs.dirname(p) -> all but the last component, as dirname(1): "a/b" -> "a",
 * "a" -> ".", "/a" -> "/", "a/b/" -> "a" */
static int l_dirname(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    while (len > 1 && p[len - 1] == '/')
        len--;
    while (len > 0 && p[len - 1] != '/')
        len--;
    if (len == 0) {
        lua_pushliteral(L, ".");
        return 1;
    }
    while (len > 1 && p[len - 1] == '/')
        len--;
    lua_pushlstring(L, p, len);
    return 1;
}

/* fs.join(a, b, ...) -> a.."/"..b...: exactly one '/' between parts, empty
 * parts skipped. A later absolute part does not restart the path (join(root,
 * "/etc/x") stays under root), and ".." is left alone. */
static int l_join(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    size_t out = 0;
    int last_slash = 0;
    for (int i = 1; i <= n; i++)
        luaL_checkstring(L, i);
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        if (out > 0) {
            while (len > 0 && s[0] == '/') {
                s++;
                len--;
            }
            if (len == 0)
                continue;
            if (!last_slash)
                luaL_addchar(&b, '/');
        } else if (len == 0) {
            continue;
        }
        luaL_addlstring(&b, s, len);
        out += len;
        last_slash = s[len - 1] == '/';
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- module ----------------------------------------------------------- */

static fs_state *state_get(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, FS_STATE_KEY);
    if (lua_isuserdata(L, -1))
        return lua_touserdata(L, -1);
    lua_pop(L, 1);
    fs_state *st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    luaL_newmetatable(L, STATE_MT);
    lua_pushcfunction(L, l_state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, FS_STATE_KEY);
    return st; /* [state] */
}

/* Sets each function in fns on the table at -2, with the state at -1 as
 * its upvalue. */
static void set_funcs(lua_State *L, const luaL_Reg *fns)
{
    for (; fns->name; fns++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, fns->func, 1);
        lua_setfield(L, -3, fns->name);
    }
}

int luaopen_sluice_fs(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"dir", l_dir}, {"stat", l_stat}, {"lstat", l_lstat},
        {"readlink", l_readlink}, {"realpath", l_realpath},
        {"read", l_read}, {"open", l_open}, {"write", l_write},
        {"mkdir_p", l_mkdir_p}, {"remove", l_remove}, {"rename", l_rename},
        {"exists", l_exists}, {"access", l_access}, {"mime", l_mime},
        {"mime_file", l_mime_file}, {"glob_match", l_glob_match},
        {"cwd", l_cwd}, {"basename", l_basename}, {"dirname", l_dirname},
        {"join", l_join}, {"lock", l_lock}, {NULL, NULL}};
    static const luaL_Reg file_methods[] = {
        {"read", l_file_read}, {"close", l_file_close}, {NULL, NULL}};

    if (luaL_newmetatable(L, DIR_MT)) {
        lua_pushcfunction(L, l_dir_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_dir_next);
        lua_setfield(L, -2, "__call");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_lock_unlock);
        lua_setfield(L, -2, "unlock");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_lock_unlock);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);

    lua_newtable(L);             /* [M] */
    state_get(L);                /* [M, state] */
    set_funcs(L, funcs);
    if (luaL_newmetatable(L, FILE_MT)) { /* [M, state, mt] */
        lua_newtable(L);
        lua_pushvalue(L, -3);
        set_funcs(L, file_methods);
        lua_pop(L, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_file_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_file_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 2);               /* [M] */
    return 1;
}
