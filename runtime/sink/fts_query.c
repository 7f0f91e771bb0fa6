/*
 * The "sluice" FTS5 tokenizer and the query builder (see fts_query.h).
 *
 * The tokenizer delegates to unicode61 for everything but pictographs, so
 * folding and diacritics stay exactly SQLite's; it cuts the text around each
 * pictograph and reports that pictograph as one token, with offsets into
 * the whole text so snippet() highlights the right bytes. Joiners and
 * presentation selectors after a pictograph are skipped, so a ZWJ family or
 * a flag is a phrase of its pictographs.
 *
 * The query builder asks the same tokenizer whether each term has a word:
 * that is the only way to agree with the index on what is indexable.
 *
 * Language names like C#, F#, C++ would otherwise be the bare letter, so
 * "C#" found every document with a "c" in it. A word of one or two ASCII
 * letters written right before "#" or "++" (and not before more word
 * characters) is indexed twice at one position: as the letter(s), and
 * colocated as "c#" / "c++". A query term spelt that way asks for the
 * suffixed token only, so "C#" finds C# and "c" still finds both.
 */
#include "fts_query.h"

#include <stdio.h>
#include <string.h>

#define TOKENIZER_ARGS "remove_diacritics", "2"

typedef struct sl_tok {
    fts5_tokenizer mod; /* unicode61's methods */
    Fts5Tokenizer *inner;
} sl_tok;

typedef struct seg_ctx {
    void *ctx;
    int (*xToken)(void *, int, const char *, int, int, int);
    int base; /* byte offset of the segment in the whole text */
    const char *text; /* the whole text, its length and the tokenize flags */
    int n, flags;
} seg_ctx;

/* Decodes one UTF-8 code point at s; *len gets its length (1 for a stray
 * byte, returned as -1). */
static long utf8_decode(const unsigned char *s, int n, int *len)
{
    unsigned c = s[0];
    int need = c < 0x80 ? 0 : c >= 0xF5 ? -1 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : -1;
    *len = 1;
    if (need < 0 || need >= n)
        return need == 0 ? (long)c : -1;
    long cp = c & (0x3F >> need);
    for (int k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    *len = need + 1;
    return cp;
}

/* Emoji and symbol blocks that unicode61 would drop as separators. */
static int is_pictograph(long cp)
{
    return cp == 0xA9 || cp == 0xAE || cp == 0x203C || cp == 0x2049 || cp == 0x2122 ||
           (cp >= 0x2190 && cp <= 0x21FF) || (cp >= 0x2300 && cp <= 0x23FF) ||
           (cp >= 0x25A0 && cp <= 0x27BF) || (cp >= 0x2900 && cp <= 0x297F) ||
           (cp >= 0x2B00 && cp <= 0x2BFF) || cp == 0x3030 || cp == 0x303D ||
           cp == 0x3297 || cp == 0x3299 || (cp >= 0x1F000 && cp <= 0x1FAFF);
}

/* Joiners and presentation selectors that only glue pictographs together. */
static int is_emoji_glue(long cp)
{
    return cp == 0x200D || cp == 0x20E3 || cp == 0xFE0E || cp == 0xFE0F;
}

static int tok_create(void *api_ptr, const char **argv, int argc, Fts5Tokenizer **out)
{
    fts5_api *api = api_ptr;
    void *ud = NULL;
    sl_tok *t = sqlite3_malloc(sizeof *t);
    if (!t)
        return SQLITE_NOMEM;
    int rc = api->xFindTokenizer(api, "unicode61", &ud, &t->mod);
    if (rc == SQLITE_OK)
        rc = t->mod.xCreate(ud, argv, argc, &t->inner);
    if (rc != SQLITE_OK) {
        sqlite3_free(t);
        return rc;
    }
    *out = (Fts5Tokenizer *)t;
    return SQLITE_OK;
}

static void tok_delete(Fts5Tokenizer *p)
{
    sl_tok *t = (sl_tok *)p;
    t->mod.xDelete(t->inner);
    sqlite3_free(t);
}

static int is_word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* How many bytes of "#" or "++" follow a token ending at end, when the
 * token is a language-name stem (see the file comment); else 0. */
static int lang_suffix(const seg_ctx *sc, const char *tok, int n, int end)
{
    if (n < 1 || n > 2)
        return 0;
    for (int k = 0; k < n; k++)
        if (tok[k] < 'a' || tok[k] > 'z')
            return 0;
    const unsigned char *t = (const unsigned char *)sc->text;
    int len = 0;
    if (end < sc->n && t[end] == '#')
        len = 1;
    else if (end + 1 < sc->n && t[end] == '+' && t[end + 1] == '+')
        len = 2;
    if (!len)
        return 0;
    int at = end + len;
    if (at < sc->n) {
        unsigned char b = t[at];
        if (b == '+' || b == '#')
            return 0;
        if (b < 0x80) {
            if (is_word_byte(b))
                return 0;
        } else {
            /* after C#: a no-break space, a curly quote, a dash, an
             * ellipsis, CJK punctuation or an emoji still ends the word;
             * any other character may be a letter of it */
            int clen;
            long cp = utf8_decode(t + at, sc->n - at, &clen);
            if (!((cp >= 0x80 && cp <= 0xBF) || (cp >= 0x2000 && cp <= 0x206F) ||
                  (cp >= 0x3000 && cp <= 0x303F) || is_pictograph(cp)))
                return 0;
        }
    }
    return len;
}

static int seg_token(void *c, int tflags, const char *tok, int n, int start, int end)
{
    seg_ctx *sc = c;
    start += sc->base;
    end += sc->base;
    int slen = lang_suffix(sc, tok, n, end);
    if (!slen)
        return sc->xToken(sc->ctx, tflags, tok, n, start, end);
    char both[4];
    memcpy(both, tok, (size_t)n);
    memcpy(both + n, sc->text + end, (size_t)slen);
    if (sc->flags & FTS5_TOKENIZE_QUERY)
        return sc->xToken(sc->ctx, tflags, both, n + slen, start, end + slen);
    /* both span the suffix, so a snippet highlights "[C#]", not "[C]#" */
    int rc = sc->xToken(sc->ctx, tflags, tok, n, start, end + slen);
    if (rc == SQLITE_OK)
        rc = sc->xToken(sc->ctx, FTS5_TOKEN_COLOCATED, both, n + slen, start, end + slen);
    return rc;
}

static int tok_tokenize(Fts5Tokenizer *p, void *ctx, int flags, const char *text, int n,
                        int (*xToken)(void *, int, const char *, int, int, int))
{
    sl_tok *t = (sl_tok *)p;
    const unsigned char *s = (const unsigned char *)text;
    seg_ctx sc = {ctx, xToken, 0, text, n, flags};
    int i = 0, seg = 0, rc = SQLITE_OK;
    while (i < n && rc == SQLITE_OK) {
        int len;
        long cp = utf8_decode(s + i, n - i, &len);
        if (!is_pictograph(cp)) {
            i += len;
            continue;
        }
        if (i > seg) {
            sc.base = seg;
            rc = t->mod.xTokenize(t->inner, &sc, flags, text + seg, i - seg, seg_token);
            if (rc != SQLITE_OK)
                break;
        }
        rc = xToken(ctx, 0, text + i, len, i, i + len);
        i += len;
        while (i < n) {
            int glen;
            if (!is_emoji_glue(utf8_decode(s + i, n - i, &glen)))
                break;
            i += glen;
        }
        seg = i;
    }
    if (rc == SQLITE_OK && n > seg) {
        sc.base = seg;
        rc = t->mod.xTokenize(t->inner, &sc, flags, text + seg, n - seg, seg_token);
    }
    return rc;
}

static fts5_api *fts5_api_of(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    return api;
}

/* Registers "sluice" on db and creates a checking instance in q. Returns 0
 * or -1 (err filled). */
int sl_fts_tokq_init(sl_fts_tokq *q, sqlite3 *db, char *err, size_t errlen)
{
    static fts5_tokenizer mod = {tok_create, tok_delete, tok_tokenize};
    static const char *argv[] = {TOKENIZER_ARGS};
    fts5_api *api = fts5_api_of(db);
    if (!api) {
        snprintf(err, errlen, "sqlite has no fts5");
        return -1;
    }
    if (api->xCreateTokenizer(api, "sluice", api, &mod, NULL) != SQLITE_OK ||
        tok_create(api, argv, 2, &q->tok) != SQLITE_OK) {
        snprintf(err, errlen, "cannot create the fts5 tokenizer");
        q->tok = NULL;
        return -1;
    }
    q->mod = mod;
    return 0;
}

void sl_fts_tokq_free(sl_fts_tokq *q)
{
    if (q->tok)
        q->mod.xDelete(q->tok);
    q->tok = NULL;
}

static int count_token(void *c, int tflags, const char *tok, int n, int start, int end)
{
    (*(int *)c)++;
    return SQLITE_OK;
}

static int is_query_space(unsigned char c)
{
    return c <= 0x20; /* ASCII whitespace, controls and NUL split terms */
}

/* Builds the FTS5 match expression for the user's text into out (NUL
 * terminated). Returns 0, or -1 with a static message in *err. */
int sl_fts_query_build(sl_fts_tokq *q, const char *text, size_t n, sl_jsonbuf *out, const char **err)
{
    size_t i = 0;
    int terms = 0;
    out->len = 0;
    while (i < n) {
        while (i < n && is_query_space((unsigned char)text[i]))
            i++;
        size_t start = i;
        while (i < n && !is_query_space((unsigned char)text[i]))
            i++;
        if (i == start)
            break;
        int ntok = 0;
        if (i - start > 0x7fffffff ||
            q->mod.xTokenize(q->tok, &ntok, FTS5_TOKENIZE_QUERY, text + start,
                             (int)(i - start), count_token) != SQLITE_OK) {
            *err = "cannot tokenize query";
            return -1;
        }
        if (ntok == 0)
            continue; /* only punctuation: it could never match */
        if (++terms > SL_FTS_MAX_QUERY_TERMS) {
            *err = "query has too many words";
            return -1;
        }
        if ((terms > 1 && sl_jsonbuf_append(out, " AND ", 5) != 0) || sl_jsonbuf_putc(out, '"'))
            goto oom;
        for (size_t k = start; k < i; k++) {
            if (text[k] == '"' && sl_jsonbuf_putc(out, '"') != 0)
                goto oom;
            if (sl_jsonbuf_putc(out, text[k]) != 0)
                goto oom;
        }
        if (sl_jsonbuf_putc(out, '"') != 0)
            goto oom;
    }
    if (terms == 0) {
        *err = "query has no words";
        return -1;
    }
    if (sl_jsonbuf_putc(out, '\0') != 0)
        goto oom;
    out->len--;
    return 0;
oom:
    *err = "out of memory";
    return -1;
}

