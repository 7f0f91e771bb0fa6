/*
 * Row shapes (see rowdoc.h): a SQL row's document, built by the driver.
 *
 * Everything here runs inside a driver's completion callback, outside any
 * protected call and on the coroutine that waits for the fetch, so nothing
 * calls Lua and nothing may raise a Lua error but an out-of-memory one (as
 * for the row arrays it replaces): a table-valued key part is encoded by
 * codec/json.c in C, and a key that cannot be encoded leaves the document
 * without an _id, which the engine reports as that document's error.
 */
#include "rowdoc.h"

#include "codec/json.h"
#include "codec/intfmt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct part {
    char *p;
    size_t len, cap;
    int set; /* 0: the column was NULL ("\N") */
} part;

struct sl_rowdoc {
    int ncols, nids, nfields;
    int ts;          /* 0-based timestamp column, or -1 */
    int *id_col;     /* nids 0-based columns, in key order */
    char *id_json;   /* per key part: the column holds JSON (canonical text) */
    char *is_field;  /* per column */
    int strs_ref;    /* registry: {field names by column, kind, name, "_id", "_timestamp"} */
    int last_ref;    /* registry: the table that gets the last row's key, or NOREF */
    int bad_key;     /* this row's key could not be encoded */
    part *parts;
    char *prefix;
    size_t prefix_len;
    char *buf; /* the _id or the timestamp being built */
    size_t cap;
    sl_json_buf json; /* a table-valued or JSON key part's canonical text */
};

enum { STR_KIND = 1, STR_NAME, STR_ID, STR_TS }; /* after the ncols names */

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    char *q = realloc(*p, n);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Appends s, with a backslash before each '\' and '|' when escape is set
 * (so no key part can contain the separator). */
static int part_put(part *pt, const char *s, size_t n, int escape)
{
    size_t extra = 0;
    if (escape)
        for (size_t i = 0; i < n; i++)
            extra += s[i] == '\\' || s[i] == '|';
    if (grow(&pt->p, &pt->cap, n + extra + 1))
        return -1;
    if (!extra) {
        memcpy(pt->p, s, n);
        pt->len = n;
    } else {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\\' || s[i] == '|')
                pt->p[o++] = '\\';
            pt->p[o++] = s[i];
        }
        pt->len = o;
    }
    pt->set = 1;
    return 0;
}

/* The key part of the value on top of the stack, as sluice.sql's
 * key_string makes it. */
static void key_part(lua_State *L, sl_rowdoc *s, part *pt, int json)
{
    char tmp[64];
    int n;
    if (json) /* every kind of value: its canonical JSON text */
        goto canonical;
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, -1);
        if (v == floor(v) && v > -9007199254740992.0 && v < 9007199254740992.0)
            n = sl_fmt_int(tmp, (long long)v); /* snprintf was a third of a row's shaping */
        else if (v == floor(v) && v > -9223372036854775808.0 && v < 9223372036854775808.0)
            n = snprintf(tmp, sizeof tmp, "%.0f", v);
        else
            n = snprintf(tmp, sizeof tmp, "%.17g", v);
        if (part_put(pt, tmp, (size_t)n, 0))
            s->bad_key = 1;
        return;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, -1, &len);
        if (part_put(pt, str, len, 1))
            s->bad_key = 1;
        return;
    }
    case LUA_TBOOLEAN:
        if (part_put(pt, lua_toboolean(L, -1) ? "true" : "false", lua_toboolean(L, -1) ? 4 : 5, 0))
            s->bad_key = 1;
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, -1) == NULL) { /* json.null: as SQL NULL */
            pt->set = 0;
            return;
        }
        break;
    case LUA_TTABLE:
    canonical: {
        /* json.encode_canonical's text, encoded here in C: no Lua call on
         * the coroutine that waits for the fetch */
        const char *err;
        s->json.len = 0;
        if (sl_json_encode(L, lua_gettop(L), SL_JSON_CANONICAL, &s->json, &err) != 0 ||
            part_put(pt, s->json.ptr ? s->json.ptr : "", s->json.len, 1))
            s->bad_key = 1;
        return;
    }
    default:
        break;
    }
    /* userdata, cdata: no driver gives one; the engine reports the
     * document as having no usable _id */
    s->bad_key = 1;
}

static int isd(char c) { return c >= '0' && c <= '9'; }

static int is_date(const char *t, size_t n)
{
    return n >= 10 && isd(t[0]) && isd(t[1]) && isd(t[2]) && isd(t[3]) && t[4] == '-' &&
           isd(t[5]) && isd(t[6]) && t[7] == '-' && isd(t[8]) && isd(t[9]);
}

/* Pushes the _timestamp of a timestamp column's string value, as
 * sluice.sql.iso_timestamp makes it: "YYYY-MM-DD hh..." gets its 'T', a
 * zoneless date-time a 'Z', a bare date "T00:00:00Z"; anything else stays
 * as it is. */
static void push_iso(lua_State *L, sl_rowdoc *s, const char *v, size_t n)
{
    if (!is_date(v, n) || grow(&s->buf, &s->cap, n + 11)) {
        lua_pushlstring(L, v, n);
        return;
    }
    char *t = s->buf;
    memcpy(t, v, n);
    if (n >= 12 && t[10] == ' ' && isd(t[11]))
        t[10] = 'T';
    if (n == 10) {
        memcpy(t + 10, "T00:00:00Z", 10);
        lua_pushlstring(L, t, 20);
        return;
    }
    int zoneless = n >= 19 && t[10] == 'T' && isd(t[11]) && isd(t[12]) && t[13] == ':' &&
                   isd(t[14]) && isd(t[15]) && t[16] == ':' && isd(t[17]) && isd(t[18]);
    for (size_t i = 19; zoneless && i < n; i++)
        zoneless = t[i] == '.' || isd(t[i]);
    if (zoneless)
        t[n++] = 'Z';
    lua_pushlstring(L, t, n);
}

static char *dup_field(lua_State *L, int idx, const char *key, size_t *len)
{
    lua_getfield(L, idx, key);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "shape.%s: expected a string", key);
    const char *v = lua_tolstring(L, -1, len);
    char *p = malloc(*len + 1);
    if (!p)
        luaL_error(L, "out of memory");
    memcpy(p, v, *len + 1);
    lua_pop(L, 1);
    return p;
}

sl_rowdoc *sl_rowdoc_new(lua_State *L, int idx, int ncols)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "fields");
    if (!lua_istable(L, -1) || (int)lua_objlen(L, -1) != ncols)
        luaL_error(L, "shape.fields: expected a list of %d field names (one per column)", ncols);
    lua_getfield(L, idx, "ids");
    if (!lua_istable(L, -1) || lua_objlen(L, -1) == 0)
        luaL_error(L, "shape.ids: expected a non-empty list of column positions");
    int nids = (int)lua_objlen(L, -1);
    sl_rowdoc *s = calloc(1, sizeof *s);
    if (!s)
        luaL_error(L, "out of memory");
    s->ncols = ncols;
    s->nids = nids;
    s->strs_ref = s->last_ref = LUA_NOREF;
    s->id_col = calloc((size_t)nids, sizeof *s->id_col);
    s->parts = calloc((size_t)nids, sizeof *s->parts);
    s->is_field = calloc((size_t)(ncols ? ncols : 1), 1);
    s->id_json = calloc((size_t)nids, 1);
    if (!s->id_col || !s->parts || !s->is_field || !s->id_json) {
        sl_rowdoc_free(L, s);
        luaL_error(L, "out of memory");
    }
    for (int i = 0; i < nids; i++) {
        lua_rawgeti(L, -1, i + 1);
        int col = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (col < 1 || col > ncols) {
            sl_rowdoc_free(L, s);
            luaL_error(L, "shape.ids[%d]: expected a column position from 1 to %d", i + 1, ncols);
        }
        s->id_col[i] = col - 1;
    }
    lua_pop(L, 1); /* ids */
    lua_getfield(L, idx, "json_ids");
    if (lua_istable(L, -1))
        for (int i = 0; i < nids; i++) {
            lua_rawgeti(L, -1, i + 1);
            s->id_json[i] = (char)lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    lua_pop(L, 1);
    /* strs: the field names, then kind, name and the two engine keys */
    lua_createtable(L, ncols + 4, 0);
    for (int i = 0; i < ncols; i++) {
        lua_rawgeti(L, -2, i + 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            s->is_field[i] = 1;
            s->nfields++;
        } else if (lua_toboolean(L, -1)) {
            sl_rowdoc_free(L, s);
            luaL_error(L, "shape.fields[%d]: expected a field name or false", i + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
    const char *keys[] = {"kind", "name"};
    for (int k = 0; k < 2; k++) {
        lua_getfield(L, idx, keys[k]);
        if (lua_type(L, -1) != LUA_TSTRING) {
            sl_rowdoc_free(L, s);
            luaL_error(L, "shape.%s: expected a string", keys[k]);
        }
        lua_rawseti(L, -2, ncols + STR_KIND + k);
    }
    lua_pushliteral(L, "_id");
    lua_rawseti(L, -2, ncols + STR_ID);
    lua_pushliteral(L, "_timestamp");
    lua_rawseti(L, -2, ncols + STR_TS);
    s->strs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* fields */

    lua_getfield(L, idx, "ts");
    s->ts = lua_isnil(L, -1) ? -1 : (int)lua_tointeger(L, -1) - 1;
    lua_pop(L, 1);
    if (s->ts < -1 || s->ts >= ncols) {
        sl_rowdoc_free(L, s);
        luaL_error(L, "shape.ts: expected a column position from 1 to %d", ncols);
    }
    lua_getfield(L, idx, "last");
    if (lua_istable(L, -1))
        s->last_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_pop(L, 1);
    size_t plen;
    lua_getfield(L, idx, "prefix");
    int ok = lua_type(L, -1) == LUA_TSTRING;
    lua_pop(L, 1);
    if (!ok) {
        sl_rowdoc_free(L, s);
        luaL_error(L, "shape.prefix: expected a string");
    }
    s->prefix = dup_field(L, idx, "prefix", &plen);
    s->prefix_len = plen;
    return s;
}

void sl_rowdoc_free(lua_State *L, sl_rowdoc *s)
{
    if (!s)
        return;
    luaL_unref(L, LUA_REGISTRYINDEX, s->strs_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->last_ref);
    for (int i = 0; s->parts && i < s->nids; i++)
        free(s->parts[i].p);
    free(s->parts);
    free(s->id_col);
    free(s->id_json);
    free(s->is_field);
    free(s->prefix);
    free(s->buf);
    sl_json_buf_free(&s->json);
    free(s);
}

int sl_rowdoc_ncols(const sl_rowdoc *s) { return s->ncols; }

/* While a row is built the stack holds [strs doc]: strs is the shape's
 * strings table, at a fixed distance from the top (`at`, counted from the
 * top at the time of the call), so that a field name costs one lookup. */
static void push_str(lua_State *L, int at, int i)
{
    lua_rawgeti(L, at, i);
}

void sl_rowdoc_begin(lua_State *L, sl_rowdoc *s)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->strs_ref);
    /* the fields, _id, doc[kind] and _timestamp: never a resize */
    lua_createtable(L, 0, s->nfields + 3);
    push_str(L, -2, s->ncols + STR_KIND);
    push_str(L, -3, s->ncols + STR_NAME);
    lua_rawset(L, -3);
    for (int i = 0; i < s->nids; i++)
        s->parts[i].set = 0;
    s->bad_key = 0;
    if (s->last_ref != LUA_NOREF) { /* a NULL key column is never set */
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->last_ref);
        for (int i = 0; i < s->nids; i++) {
            lua_pushnil(L);
            lua_rawseti(L, -2, i + 1);
        }
        lua_pushnil(L);
        lua_setfield(L, -2, "ts");
        lua_pop(L, 1);
    }
}

void sl_rowdoc_set(lua_State *L, sl_rowdoc *s, int col)
{
    if (lua_isnil(L, -1) || col < 0 || col >= s->ncols) {
        lua_pop(L, 1);
        return;
    }
    for (int i = 0; i < s->nids; i++) {
        if (s->id_col[i] != col)
            continue;
        key_part(L, s, &s->parts[i], s->id_json[i]);
        if (s->last_ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, s->last_ref);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, i + 1);
            lua_pop(L, 1);
        }
    }
    if (col == s->ts) {
        push_str(L, -3, s->ncols + STR_TS); /* strs doc v */
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t n;
            const char *v = lua_tolstring(L, -2, &n);
            push_iso(L, s, v, n);
        } else {
            lua_pushvalue(L, -2);
        }
        lua_rawset(L, -4);
        if (s->last_ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, s->last_ref);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "ts");
            lua_pop(L, 1);
        }
    }
    if (!s->is_field[col]) {
        lua_pop(L, 1);
        return;
    }
    push_str(L, -3, col + 1); /* strs doc v name */
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

void sl_rowdoc_end(lua_State *L, sl_rowdoc *s)
{
    lua_remove(L, -2); /* strs */
    if (s->bad_key)
        return; /* no _id: the engine reports the document */
    size_t n = s->prefix_len;
    for (int i = 0; i < s->nids; i++)
        n += (s->parts[i].set ? s->parts[i].len : 2) + 1;
    if (grow(&s->buf, &s->cap, n))
        return;
    char *o = s->buf;
    memcpy(o, s->prefix, s->prefix_len);
    o += s->prefix_len;
    for (int i = 0; i < s->nids; i++) {
        if (i)
            *o++ = '|';
        if (s->parts[i].set) {
            memcpy(o, s->parts[i].p, s->parts[i].len);
            o += s->parts[i].len;
        } else {
            *o++ = '\\';
            *o++ = 'N';
        }
    }
    lua_pushliteral(L, "_id");
    lua_pushlstring(L, s->buf, (size_t)(o - s->buf));
    lua_rawset(L, -3);
}
