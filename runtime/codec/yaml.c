/*
 * sluice.yaml: YAML (sluice.yml, connector fixtures) into Lua tables, with
 * the position of every key so that the config validator can say
 * "sluice.yml:12:7: connectors[1].configuration.path: ...".
 *
 * libyaml does the parsing (its event API); this file builds the tables and
 * decides what scalars mean. It follows the YAML 1.2 core schema (so `yes`,
 * `on` and `0777`-style octals stay what 1.2 says), keeps null values as
 * yaml.null (== json.null) so a present-but-empty key is still present, and
 * makes every mapping key a string (config keys are strings; a mapping never
 * turns into an array by accident; a path names exactly the key in the
 * table). An alias is a deep copy of its anchor, so that code filling in
 * defaults or substituting ${ENV} in one place does not change another; the
 * total number of nodes, copies included, is capped, which is the defence
 * against "billion laughs" documents. Nesting is capped too, because the
 * builder recurses.
 */
#include "codec/json.h"

#include <lauxlib.h>
#include <yaml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_YAML_DECODER_T "sl_yaml_decoder"
#define SL_YAML_MAX_NODES 1000000
#define SL_YAML_MAX_DEPTH 1000
#define SL_YAML_TAG "tag:yaml.org,2002:"

typedef struct ydec {
    yaml_parser_t parser;
    yaml_event_t ev;
    int parser_ok, ev_ok;
    lua_State *L;
    const char *text; /* the input, for reader-error positions */
    size_t textlen;
    char *path; /* key path of the node being built */
    size_t plen, pcap;
    long nodes, max_nodes;
    int max_depth;
    int anchors, positions, mt; /* stack indexes */
    char err[384];
} ydec;

static int ydec_gc(lua_State *L)
{
    ydec *d = luaL_checkudata(L, 1, SL_YAML_DECODER_T);
    if (d->ev_ok)
        yaml_event_delete(&d->ev);
    if (d->parser_ok)
        yaml_parser_delete(&d->parser);
    free(d->path);
    d->ev_ok = d->parser_ok = 0;
    d->path = NULL;
    return 0;
}

static int fail_at(ydec *d, yaml_mark_t m, const char *fmt, const char *arg)
{
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    snprintf(d->err, sizeof d->err, "line %lu, column %lu: %s", (unsigned long)m.line + 1,
             (unsigned long)m.column + 1, what);
    return -1;
}

/* libyaml's own error, located by its problem mark; a reader error (bad
 * encoding) has only a byte offset, which is turned into a line here. */
static int fail_parser(ydec *d)
{
    yaml_parser_t *p = &d->parser;
    yaml_mark_t m = p->problem_mark;

    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(d->err, sizeof d->err, "out of memory");
        return -1;
    }
    if (p->error == YAML_READER_ERROR) {
        memset(&m, 0, sizeof m);
        for (size_t i = 0; i < p->problem_offset && i < d->textlen; i++) {
            if (d->text[i] == '\n')
                m.line++, m.column = 0;
            else if (((unsigned char)d->text[i] & 0xc0) != 0x80)
                m.column++;
        }
    }
    const char *problem = p->problem ? p->problem : "invalid yaml";
    if (p->context) {
        snprintf(d->err, sizeof d->err, "line %lu, column %lu: %s (%s at line %lu, column %lu)",
                 (unsigned long)m.line + 1, (unsigned long)m.column + 1, problem, p->context,
                 (unsigned long)p->context_mark.line + 1,
                 (unsigned long)p->context_mark.column + 1);
    } else {
        snprintf(d->err, sizeof d->err, "line %lu, column %lu: %s", (unsigned long)m.line + 1,
                 (unsigned long)m.column + 1, problem);
    }
    return -1;
}

static int next_event(ydec *d)
{
    if (d->ev_ok) {
        yaml_event_delete(&d->ev);
        d->ev_ok = 0;
    }
    if (!yaml_parser_parse(&d->parser, &d->ev))
        return fail_parser(d);
    d->ev_ok = 1;
    return 0;
}

/* ---- key paths and positions ------------------------------------------- */

static int path_add(ydec *d, const char *s, size_t n)
{
    if (d->pcap - d->plen < n + 1) {
        size_t cap = d->pcap ? d->pcap : 128;
        while (cap - d->plen < n + 1)
            cap *= 2;
        char *np = realloc(d->path, cap);
        if (!np) {
            snprintf(d->err, sizeof d->err, "out of memory");
            return -1;
        }
        d->path = np;
        d->pcap = cap;
    }
    memcpy(d->path + d->plen, s, n);
    d->plen += n;
    d->path[d->plen] = 0;
    return 0;
}

static int path_key(ydec *d, const char *key, size_t n)
{
    if (d->plen > 0 && path_add(d, ".", 1))
        return -1;
    return path_add(d, key, n);
}

static int path_index(ydec *d, int i)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "[%d]", i);
    return path_add(d, buf, (size_t)n);
}

/* Pushes a {line=, column=} table for m; what an alias or merge brings in
 * shares one, since a million copies need not cost a million tables. */
static int push_mark(ydec *d, yaml_mark_t m)
{
    lua_State *L = d->L;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)m.line + 1);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, (lua_Integer)m.column + 1);
    lua_setfield(L, -2, "column");
    return lua_gettop(L);
}

/* positions[path] = the table at stack index pos */
static void record_shared(ydec *d, int pos)
{
    lua_pushlstring(d->L, d->path ? d->path : "", d->plen);
    lua_pushvalue(d->L, pos);
    lua_rawset(d->L, d->positions);
}

/* positions[path] = {line=, column=}, 1-based */
static void record(ydec *d, yaml_mark_t m)
{
    record_shared(d, push_mark(d, m));
    lua_pop(d->L, 1);
}

static int count_node(ydec *d, yaml_mark_t m)
{
    if (++d->nodes > d->max_nodes) {
        char lim[32];
        snprintf(lim, sizeof lim, "%ld", d->max_nodes);
        return fail_at(d, m, "too many nodes (more than %s, counting alias copies)", lim);
    }
    return 0;
}

/* ---- scalars ----------------------------------------------------------- */

static int all_in(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]) || s[i] == 0)
            return 0;
    return 1;
}

static int is_one_of(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0)
            return 1;
    return 0;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int is_float(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        size_t frac = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, frac++;
        if (digits == 0 && frac == 0)
            return 0;
    } else if (digits == 0) {
        return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, exp++;
        if (exp == 0)
            return 0;
    }
    return i == n;
}

enum { Y_STR, Y_NULL, Y_BOOL, Y_INT, Y_FLOAT };

/* Resolves a plain scalar by the core schema; pushes its value and returns
 * its kind. The value is a NUL-terminated libyaml buffer. */
static int resolve_plain(lua_State *L, const char *s, size_t n)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
    static const char *const ninfs[] = {"-.inf", "-.Inf", "-.INF", NULL};
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};

    if (n == 0 || is_one_of(s, n, nulls)) {
        lua_pushlightuserdata(L, NULL);
        return Y_NULL;
    }
    if (is_one_of(s, n, trues) || is_one_of(s, n, falses)) {
        lua_pushboolean(L, is_one_of(s, n, trues));
        return Y_BOOL;
    }
    size_t sign = (s[0] == '-' || s[0] == '+');
    if (all_in(s + sign, n - sign, "0123456789")) {
        lua_pushnumber(L, strtod(s, NULL));
        return Y_INT;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        int hex = s[1] == 'x';
        if (all_in(s + 2, n - 2, hex ? "0123456789abcdefABCDEF" : "01234567")) {
            double v = 0;
            for (size_t i = 2; i < n; i++) {
                int c = s[i];
                int h = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
                v = v * (hex ? 16 : 8) + h;
            }
            lua_pushnumber(L, v);
            return Y_INT;
        }
    }
    if (is_float(s, n)) {
        lua_pushnumber(L, strtod(s, NULL));
        return Y_FLOAT;
    }
    if (is_one_of(s, n, infs) || is_one_of(s, n, ninfs)) {
        lua_pushnumber(L, is_one_of(s, n, ninfs) ? -HUGE_VAL : HUGE_VAL);
        return Y_FLOAT;
    }
    if (is_one_of(s, n, nans)) {
        lua_pushnumber(L, NAN);
        return Y_FLOAT;
    }
    lua_pushlstring(L, s, n);
    return Y_STR;
}

static int push_scalar(ydec *d)
{
    lua_State *L = d->L;
    const char *s = (const char *)d->ev.data.scalar.value;
    size_t n = d->ev.data.scalar.length;
    const char *tag = (const char *)d->ev.data.scalar.tag;
    yaml_mark_t m = d->ev.start_mark;

    if (!tag) {
        if (d->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
            resolve_plain(L, s, n);
        else
            lua_pushlstring(L, s, n);
        return 0;
    }
    if (strcmp(tag, "!") == 0 || strcmp(tag, SL_YAML_TAG "str") == 0) {
        lua_pushlstring(L, s, n);
        return 0;
    }
    static const char *const kinds[] = {"null", "bool", "int", "float", NULL};
    for (int k = 0; kinds[k]; k++) {
        if (strncmp(tag, SL_YAML_TAG, strlen(SL_YAML_TAG)) != 0 ||
            strcmp(tag + strlen(SL_YAML_TAG), kinds[k]) != 0)
            continue;
        int want = Y_NULL + k, got = resolve_plain(L, s, n);
        if (got == want || (want == Y_FLOAT && got == Y_INT))
            return 0;
        lua_pop(L, 1);
        return fail_at(d, m, "value does not match tag !!%s", kinds[k]);
    }
    return fail_at(d, m, "unsupported tag %s", tag);
}

/* ---- nodes ------------------------------------------------------------- */

static int build(ydec *d, int depth, int rec, int share);

/* Pushes a deep copy of the value at idx. Every key and item it holds is
 * recorded with the position table at stack index pos (that of the alias or
 * merge key that brought it in), unless pos is 0; m is for errors. */
static int copy_value(ydec *d, int idx, int depth, int pos, yaml_mark_t m)
{
    lua_State *L = d->L;

    if (count_node(d, m))
        return -1;
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return 0;
    }
    if (depth >= d->max_depth)
        return fail_at(d, m, "nesting too deep%s", "");
    if (!lua_checkstack(L, 6))
        return fail_at(d, m, "out of stack space%s", "");
    lua_newtable(L);
    int dst = lua_gettop(L);
    size_t saved = d->plen;
    if (lua_getmetatable(L, idx)) {
        lua_setmetatable(L, dst);
        int n = (int)lua_objlen(L, idx);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            if (path_index(d, i))
                return -1;
            if (pos)
                record_shared(d, pos);
            if (copy_value(d, lua_gettop(L), depth + 1, pos, m))
                return -1;
            lua_rawseti(L, dst, i);
            lua_pop(L, 1);
            d->plen = saved;
        }
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kn;
        const char *k = lua_tolstring(L, -2, &kn); /* keys are strings */
        if (path_key(d, k, kn))
            return -1;
        if (pos)
            record_shared(d, pos);
        if (copy_value(d, lua_gettop(L), depth + 1, pos, m))
            return -1;
        lua_pushvalue(L, -3);
        lua_insert(L, -2);
        lua_rawset(L, dst);
        lua_pop(L, 1);
        d->plen = saved;
    }
    return 0;
}

/* Remembers the anchored node on top of the stack. */
static void keep_anchor(ydec *d, int anchor_idx)
{
    if (!anchor_idx)
        return;
    lua_pushvalue(d->L, anchor_idx);
    lua_pushvalue(d->L, -2);
    lua_rawset(d->L, d->anchors);
}

static int push_anchor_name(ydec *d, const yaml_char_t *anchor)
{
    if (!anchor)
        return 0;
    lua_pushstring(d->L, (const char *)anchor);
    return lua_gettop(d->L);
}

static int check_collection_tag(ydec *d, const yaml_char_t *tag, const char *kind)
{
    char full[48];
    snprintf(full, sizeof full, SL_YAML_TAG "%s", kind);
    if (!tag || strcmp((const char *)tag, "!") == 0 || strcmp((const char *)tag, full) == 0)
        return 0;
    return fail_at(d, d->ev.start_mark, "unsupported tag %s", (const char *)tag);
}

static int build_sequence(ydec *d, int depth, int rec, int share)
{
    lua_State *L = d->L;
    int anchor = push_anchor_name(d, d->ev.data.sequence_start.anchor);
    size_t saved = d->plen;

    if (check_collection_tag(d, d->ev.data.sequence_start.tag, "seq"))
        return -1;
    lua_newtable(L);
    lua_pushvalue(L, d->mt);
    lua_setmetatable(L, -2);
    for (int i = 1;; i++) {
        if (next_event(d))
            return -1;
        if (d->ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (path_index(d, i))
            return -1;
        if (rec)
            record(d, d->ev.start_mark);
        if (build(d, depth + 1, rec, share))
            return -1;
        lua_rawseti(L, -2, i);
        d->plen = saved;
    }
    keep_anchor(d, anchor);
    if (anchor)
        lua_remove(L, anchor);
    return 0;
}

static int is_mapping(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return lua_type(L, idx) == LUA_TTABLE;
    lua_pop(L, 1);
    return 0;
}

/* Copies into the mapping at dst every key of the merge sources (a list of
 * mappings at src, earlier ones first) that it does not already have:
 * explicit keys win, as the merge-key spec says. */
static int apply_merges(ydec *d, int dst, int src, int depth, int pos, yaml_mark_t m)
{
    lua_State *L = d->L;
    size_t saved = d->plen;
    int n = (int)lua_objlen(L, src);

    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, src, i);
        int from = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, from)) {
            lua_pushvalue(L, -2);
            lua_rawget(L, dst);
            int present = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (present) {
                lua_pop(L, 1);
                continue;
            }
            size_t kn;
            const char *k = lua_tolstring(L, -2, &kn);
            if (path_key(d, k, kn))
                return -1;
            if (pos)
                record_shared(d, pos);
            if (copy_value(d, lua_gettop(L), depth + 1, pos, m))
                return -1;
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, dst);
            lua_pop(L, 1);
            d->plen = saved;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int build_mapping(ydec *d, int depth, int rec, int share)
{
    lua_State *L = d->L;
    int anchor = push_anchor_name(d, d->ev.data.mapping_start.anchor);
    size_t saved = d->plen;
    int merges = 0;
    yaml_mark_t merge_mark = d->ev.start_mark;

    if (check_collection_tag(d, d->ev.data.mapping_start.tag, "map"))
        return -1;
    lua_newtable(L);
    int map = lua_gettop(L);
    for (;;) {
        if (next_event(d))
            return -1;
        if (d->ev.type == YAML_MAPPING_END_EVENT)
            break;
        yaml_mark_t km = d->ev.start_mark;
        if (d->ev.type != YAML_SCALAR_EVENT)
            return fail_at(d, km, "mapping keys must be scalars%s", "");
        if (count_node(d, km))
            return -1;
        const char *k = (const char *)d->ev.data.scalar.value;
        size_t kn = d->ev.data.scalar.length;

        if (d->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !d->ev.data.scalar.tag &&
            kn == 2 && memcmp(k, "<<", 2) == 0) {
            if (merges)
                return fail_at(d, km, "duplicate key \"%s\"", "<<");
            merge_mark = km;
            if (next_event(d))
                return -1;
            yaml_mark_t vm = d->ev.start_mark;
            /* merge sources are read without positions and without copying
             * aliases: the keys are copied once, at the end */
            if (build(d, depth + 1, 0, 1))
                return -1;
            if (is_mapping(L, -1)) {
                lua_createtable(L, 1, 0);
                lua_insert(L, -2);
                lua_rawseti(L, -2, 1);
            } else {
                int ok = lua_type(L, -1) == LUA_TTABLE;
                int n = ok ? (int)lua_objlen(L, -1) : 0;
                for (int i = 1; ok && i <= n; i++) {
                    lua_rawgeti(L, -1, i);
                    ok = is_mapping(L, -1);
                    lua_pop(L, 1);
                }
                if (!ok)
                    return fail_at(d, vm, "merge value must be a mapping or a list of mappings%s",
                                   "");
            }
            merges = lua_gettop(L);
            continue;
        }

        lua_pushlstring(L, k, kn);
        lua_pushvalue(L, -1);
        lua_rawget(L, map);
        if (!lua_isnil(L, -1)) {
            char what[240];
            lua_pop(L, 1);
            if (path_key(d, k, kn))
                return -1;
            lua_pushlstring(L, d->path, d->plen);
            lua_rawget(L, d->positions);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "line");
                snprintf(what, sizeof what, "duplicate key \"%.160s\" (first at line %d)", k,
                         (int)lua_tointeger(L, -1));
            } else {
                snprintf(what, sizeof what, "duplicate key \"%.160s\"", k);
            }
            return fail_at(d, km, "%s", what);
        }
        lua_pop(L, 1);
        if (path_key(d, k, kn))
            return -1;
        if (rec)
            record(d, km);
        if (next_event(d) || build(d, depth + 1, rec, share))
            return -1;
        lua_rawset(L, map);
        d->plen = saved;
    }
    if (merges) {
        int pos = rec ? push_mark(d, merge_mark) : 0;
        if (apply_merges(d, map, merges, depth, pos, merge_mark))
            return -1;
        lua_settop(L, map);
    }
    keep_anchor(d, anchor);
    if (anchor)
        lua_remove(L, anchor);
    return 0;
}

/* Pushes the node that starts with the current event. rec: record the
 * positions of what it holds; share: push an alias's anchored value itself
 * instead of a copy (for merge sources, which are copied key by key). */
static int build(ydec *d, int depth, int rec, int share)
{
    lua_State *L = d->L;
    yaml_mark_t m = d->ev.start_mark;

    if (!lua_checkstack(L, 8))
        return fail_at(d, m, "out of stack space%s", "");
    switch (d->ev.type) {
    case YAML_ALIAS_EVENT:
        lua_getfield(L, d->anchors, (const char *)d->ev.data.alias.anchor);
        if (lua_isnil(L, -1))
            return fail_at(d, m, "unknown anchor \"%.200s\"", (const char *)d->ev.data.alias.anchor);
        if (share)
            return count_node(d, m);
        int src = lua_gettop(L), pos = rec ? push_mark(d, m) : 0;
        if (copy_value(d, src, depth, pos, m))
            return -1;
        lua_replace(L, src);
        lua_settop(L, src);
        return 0;
    case YAML_SCALAR_EVENT: {
        if (count_node(d, m))
            return -1;
        int anchor = push_anchor_name(d, d->ev.data.scalar.anchor);
        if (push_scalar(d))
            return -1;
        keep_anchor(d, anchor);
        if (anchor)
            lua_remove(L, anchor);
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (depth >= d->max_depth)
            return fail_at(d, m, "nesting too deep%s", "");
        if (count_node(d, m))
            return -1;
        return d->ev.type == YAML_SEQUENCE_START_EVENT ? build_sequence(d, depth, rec, share)
                                                       : build_mapping(d, depth, rec, share);
    default:
        return fail_at(d, m, "unexpected yaml event%s", "");
    }
}

/* Runs the parse; on success leaves the value on top of the stack. */
static int decode_stream(ydec *d)
{
    if (next_event(d)) /* stream start */
        return -1;
    if (next_event(d))
        return -1;
    if (d->ev.type == YAML_STREAM_END_EVENT) {
        lua_pushlightuserdata(d->L, NULL); /* an empty file is null */
        return 0;
    }
    if (next_event(d)) /* past document start */
        return -1;
    record(d, d->ev.start_mark); /* the root, "" */
    if (build(d, 0, 1, 0))
        return -1;
    if (next_event(d) || next_event(d)) /* document end, then what follows */
        return -1;
    if (d->ev.type == YAML_DOCUMENT_START_EVENT)
        return fail_at(d, d->ev.start_mark, "more than one document%s", "");
    return 0;
}

static int opt_number(lua_State *L, int opts, const char *name, double def, double lo)
{
    lua_getfield(L, opts, name);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < lo)
            return luaL_error(L, "bad option %s (number >= %d expected)", name, (int)lo);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return (int)(v > 2e9 ? 2e9 : v);
}

/* yaml.decode(text[, opts]) -> value, positions | nil, err
 * opts: max_nodes (default 1e6, alias copies included), max_depth (default
 * 1000). positions maps each key path ("a.b[2].c", root "") to {line=,
 * column=}. Errors read "line L, column C: problem". */
static int l_decode(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    int max_nodes = SL_YAML_MAX_NODES, max_depth = SL_YAML_MAX_DEPTH;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        max_nodes = opt_number(L, 2, "max_nodes", SL_YAML_MAX_NODES, 1);
        max_depth = opt_number(L, 2, "max_depth", SL_YAML_MAX_DEPTH, 1);
    }
    lua_settop(L, 1);
    ydec *d = lua_newuserdata(L, sizeof *d);
    memset(d, 0, sizeof *d);
    luaL_getmetatable(L, SL_YAML_DECODER_T);
    lua_setmetatable(L, -2);
    d->L = L;
    d->text = text;
    d->textlen = n;
    d->max_nodes = max_nodes;
    d->max_depth = max_depth;
    if (!yaml_parser_initialize(&d->parser))
        return luaL_error(L, "out of memory");
    d->parser_ok = 1;
    yaml_parser_set_input_string(&d->parser, (const unsigned char *)text, n);
    lua_newtable(L);
    d->anchors = lua_gettop(L);
    lua_newtable(L);
    d->positions = lua_gettop(L);
    sl_json_push_array_mt(L);
    d->mt = lua_gettop(L);

    int rc = decode_stream(d);
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, d->err);
    } else {
        lua_pushvalue(L, d->positions);
    }
    /* free the parser now rather than at the next collection */
    lua_pushcfunction(L, ydec_gc);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);
    return 2;
}

int luaopen_sluice_yaml(lua_State *L)
{
    static const luaL_Reg fns[] = {{"decode", l_decode}, {NULL, NULL}};
    if (luaL_newmetatable(L, SL_YAML_DECODER_T)) {
        lua_pushcfunction(L, ydec_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
