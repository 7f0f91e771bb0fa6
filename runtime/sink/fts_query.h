/*
 * The FTS index's text handling, kept apart from its storage: the "sluice"
 * FTS5 tokenizer (unicode61 with emoji and other pictographs as tokens of
 * their own, which unicode61 alone drops as separators) and the builder
 * that turns a user's search text into a safe FTS5 match expression.
 */
#ifndef SL_FTS_QUERY_H
#define SL_FTS_QUERY_H

#include "jsonbuf.h"

#include <sqlite3.h>

/* Most words a query may have (FTS5 limits expression depth). */
#define SL_FTS_MAX_QUERY_TERMS 64

/* A tokenizer instance used to tell whether a query term has words. */
typedef struct sl_fts_tokq {
    sqlite3 *db; /* owned only by the standalone fts.query() instance */
    fts5_tokenizer mod;
    Fts5Tokenizer *tok;
} sl_fts_tokq;

/* Registers the "sluice" tokenizer on db (FTS5 tables name it as
 * `tokenize = 'sluice remove_diacritics 2'`) and creates a checking
 * instance in q. Returns 0, or -1 with a message in err. */
int sl_fts_tokq_init(sl_fts_tokq *q, sqlite3 *db, char *err, size_t errlen);
/* Frees the instance (not q->db). Never fails. */
void sl_fts_tokq_free(sl_fts_tokq *q);

/*
 * Builds the match expression for text into out (replacing its contents):
 * the text is split at ASCII whitespace and control bytes; each part with
 * at least one token becomes a quoted FTS5 string (a `"` doubled), joined
 * by AND; parts with no token are dropped. Returns 0, or -1 with *err set
 * to "query has no words", "query has too many words", "cannot tokenize
 * query" or "out of memory".
 */
int sl_fts_query_build(sl_fts_tokq *q, const char *text, size_t n, sl_jsonbuf *out,
                       const char **err);

#endif
