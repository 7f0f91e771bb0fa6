/*
 * What other C modules share with sluice.text: the in-place tree cleaning
 * behind text.clean_tree, so that crypto.content_hash can clean a document
 * and hash it in one call from the engine.
 */
#ifndef SL_CODEC_TEXT_H
#define SL_CODEC_TEXT_H

#include <lua.h>

/* Applies text.clean to every string value of the table at stack index idx
 * (an absolute index) and of the tables inside it, in place; keys are left
 * as they are and tables more than 32 levels down are not visited. Returns
 * how many strings changed. Raises only when Lua runs out of memory. */
long sl_text_clean_tree(lua_State *L, int idx);

#endif
