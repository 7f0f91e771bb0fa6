/*
 * The C side of extract.stream()'s sink, for modules that write a document
 * into it without going through Lua: http.request{sink = ...} streams a
 * download's body here from libcurl's write callback. The sink keeps at
 * most its max_input bytes; sink:finish() extracts from them.
 *
 * A transfer claims the sink for its duration, so Lua code cannot write to
 * or finish it meanwhile (both answer nil, "busy"), and ends the claim
 * with release (the bytes stay, for finish) or fail (the bytes are dropped
 * and finish answers nil, err).
 */
#ifndef SL_EXTRACT_SINK_H
#define SL_EXTRACT_SINK_H

#include <lua.h>
#include <stddef.h>

#define SL_EXTRACT_SINK_T "sl_extract_sink"

typedef struct sl_extract_sink sl_extract_sink;

/* The sink at idx, or NULL when the value is something else. */
sl_extract_sink *sl_extract_sink_test(lua_State *L, int idx);
/* Its max_input (0: no cap). */
size_t sl_extract_sink_cap(const sl_extract_sink *s);
/* Claims s for a writer; -1 with *err set ("busy", "finished", "too
 * large") when it is not free to take. */
int sl_extract_sink_claim(sl_extract_sink *s, const char **err);
/* Appends n bytes; 0, or -1 with *err: "too large" once the total passes
 * max_input (the buffer is then freed at once), "out of memory". Never
 * touches Lua, so it is safe inside a libcurl callback. */
int sl_extract_sink_write(sl_extract_sink *s, const char *p, size_t n, const char **err);
/* Ends a claim, keeping what was written. */
void sl_extract_sink_release(sl_extract_sink *s);
/* Ends a claim and spends s: the bytes are freed; finish() answers
 * nil, err (copied). */
void sl_extract_sink_fail(sl_extract_sink *s, const char *err);

#endif
