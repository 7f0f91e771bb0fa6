/*
 * What other C modules share with sluice.text: the in-place tree cleaning
 * behind text.clean_tree, so that crypto.content_hash can clean a document
 * and hash it in one call from the engine.
 */
#ifndef SL_CODEC_TEXT_H
#define SL_CODEC_TEXT_H

#include <lua.h>
#include <stddef.h>

/* Tables this many levels down (the top table being level 0) are not
 * cleaned. */
#define SL_TEXT_CLEAN_DEPTH 32

/* Applies text.clean to every string value of the table at stack index idx
 * (an absolute index) and of the tables inside it, in place; keys are left
 * as they are and tables SL_TEXT_CLEAN_DEPTH levels down are not visited. Returns
 * how many strings changed. Raises only when Lua runs out of memory. */
long sl_text_clean_tree(lua_State *L, int idx);

/* The length of the leading part of s that text.clean leaves as it is (n
 * when s is clean). */
size_t sl_text_clean_prefix(const unsigned char *s, size_t n);

/* Pushes text.clean(s), given that its first i < n bytes are clean. */
void sl_text_clean_push(lua_State *L, const unsigned char *s, size_t n, size_t i);

#endif
