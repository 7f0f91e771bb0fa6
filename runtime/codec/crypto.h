/*
 * What the sinks share with crypto.content_hash: the tagged canonical form
 * (see crypto.c) of the document it hashed last. The Elasticsearch sink
 * writes a document's JSON from that form when the engine says the
 * document is the one just hashed, instead of walking its table a second
 * time: no Lua calls, no key sorting, the strings already cleaned.
 */
#ifndef SL_CODEC_CRYPTO_H
#define SL_CODEC_CRYPTO_H

#include <lua.h>
#include <stddef.h>

/* The form of the table at idx, when it is the table content_hash hashed
 * last, that call succeeded, and it left out nothing a JSON writer would
 * write; NULL otherwise. Valid until the next content_hash call. */
const char *sl_content_canonical(lua_State *L, int idx, size_t *len);

#endif
