/*
 * Text from RTF.
 *
 * RTF is a token stream of groups, control words and text, so this is one
 * pass over the bytes with a stack of group states (no library does it
 * better than a careful loop, and none is in Debian as a small C library).
 * What a reader must get right to produce the text a user saw:
 *  - destinations that are not text are skipped whole: anything marked \*,
 *    and fonttbl, colortbl, stylesheet, pictures, field instructions, list
 *    numbering, revision and list tables; \info is skipped except \title
 *    and \author (metadata) and \creatim / \revtim (dates);
 *  - \binN skips N raw bytes, wherever it appears;
 *  - \uN is a UTF-16 unit (negative values wrap, surrogate pairs combine),
 *    followed by \ucN (default 1) fallback characters that are skipped;
 *  - \'hh is a byte in the code page of the current font (\fcharset or \cpg
 *    in the font table) or else of the document (\ansicpgN, \mac, \pc),
 *    converted with iconv; consecutive bytes convert together so double-byte
 *    code pages work;
 *  - \par, \line and \sect/\page end lines, \tab is a tab, table cells
 *    (\cell) are joined by tabs and rows (\row) end lines, as in the other
 *    extractors; empty paragraphs collapse.
 * Hostile input: nesting deeper than RTF_MAX_DEPTH shares the deepest state,
 * a stray '}' is ignored and a missing one ends the document, and every
 * count (\bin, \uc) is clamped to what the input can hold.
 */
#include "extract/extract.h"

#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTF_MAX_DEPTH 256
#define RTF_MAX_FONTS 1024
#define RTF_BYTES 512 /* code-page bytes converted in one iconv call */

enum { DEST_TEXT, DEST_SKIP, DEST_FONTTBL, DEST_INFO, DEST_TITLE, DEST_AUTHOR, DEST_DATE };

typedef struct {
    int dest;
    int uc;   /* fallback characters after \uN */
    int cp;   /* code page of the current font; 0: the document's */
    int date; /* DEST_DATE: 0 creatim, 1 revtim */
} rtf_state;

typedef struct {
    sl_extract_result *out;
    const sl_extract_limits *lim;
    rtf_state st[RTF_MAX_DEPTH];
    int depth, overflow;
    int doc_cp;
    int fonts[RTF_MAX_FONTS][2]; /* font number, code page */
    int nfonts, cur_font;
    int skip_chars;       /* fallback characters still to skip */
    unsigned high;        /* pending high surrogate, or 0 */
    int intbl, row_text;
    char pending;         /* separator owed before the next text */
    unsigned char bytes[RTF_BYTES];
    int nbytes, bytes_cp;
    iconv_t cd;
    int cd_cp;
    char meta[1024];      /* \title / \author being read */
    size_t meta_len;
    int date[6];          /* yr mo dy hr min sec */
    int stop;             /* text full, or an append failed */
} rtf;

/* ---- output ----------------------------------------------------------------- */

static rtf_state *rtf_cur(rtf *r)
{
    return &r->st[r->depth];
}

static void rtf_put(rtf *r, const char *s, size_t n)
{
    int dest = rtf_cur(r)->dest;
    if (dest == DEST_TITLE || dest == DEST_AUTHOR) {
        size_t room = sizeof r->meta - r->meta_len;
        size_t k = n < room ? n : room;
        memcpy(r->meta + r->meta_len, s, k);
        r->meta_len += k;
        return;
    }
    if (dest != DEST_TEXT || r->stop)
        return;
    if (r->pending) {
        char c = r->pending;
        r->pending = 0;
        if (sl_extract_append(r->out, &c, 1)) {
            r->stop = 1;
            return;
        }
    }
    if (sl_extract_append(r->out, s, n))
        r->stop = 1;
    r->row_text = 1;
}

static const char *rtf_cp_name(int cp, char *buf, size_t size)
{
    switch (cp) {
    case 10000: return "MACINTOSH";
    case 65001: return "UTF-8";
    case 950: return "BIG5";
    case 20127: return "ASCII";
    }
    snprintf(buf, size, "CP%d", cp);
    return buf;
}

/* Converts the pending code-page bytes and puts them out. */
static void rtf_flush(rtf *r)
{
    if (r->nbytes == 0)
        return;
    int cp = r->bytes_cp ? r->bytes_cp : r->doc_cp;
    if (r->cd == (iconv_t)-1 || r->cd_cp != cp) {
        char name[16];
        if (r->cd != (iconv_t)-1)
            iconv_close(r->cd);
        r->cd = iconv_open("UTF-8", rtf_cp_name(cp, name, sizeof name));
        if (r->cd == (iconv_t)-1) /* unknown code page: read it as 1252 */
            r->cd = iconv_open("UTF-8", "CP1252");
        r->cd_cp = cp;
    }
    char outbuf[RTF_BYTES * 4 + 8];
    char *in = (char *)r->bytes, *o = outbuf;
    size_t inleft = (size_t)r->nbytes, oleft = sizeof outbuf;
    while (inleft > 0 && r->cd != (iconv_t)-1) {
        if (iconv(r->cd, &in, &inleft, &o, &oleft) != (size_t)-1)
            break;
        if (errno == E2BIG)
            break; /* cannot happen: 4 output bytes per input byte */
        /* an invalid or cut-off sequence: one U+FFFD, then go on */
        if (oleft >= 3) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            oleft -= 3;
        }
        in++;
        inleft--;
        iconv(r->cd, NULL, NULL, NULL, NULL);
    }
    r->nbytes = 0;
    if (o > outbuf)
        rtf_put(r, outbuf, (size_t)(o - outbuf));
}

static void rtf_byte(rtf *r, unsigned char b)
{
    int cp = rtf_cur(r)->cp;
    if (r->nbytes && (r->bytes_cp != cp || r->nbytes == RTF_BYTES))
        rtf_flush(r);
    r->bytes_cp = cp;
    r->bytes[r->nbytes++] = b;
}

static void rtf_text(rtf *r, const char *s, size_t n)
{
    rtf_flush(r);
    rtf_put(r, s, n);
}

static void rtf_codepoint(rtf *r, unsigned c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c, n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | c >> 6), u[1] = (char)(0x80 | (c & 0x3F)), n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | c >> 12), u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | c >> 18), u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F)), u[3] = (char)(0x80 | (c & 0x3F)), n = 4;
    }
    rtf_text(r, u, n);
}

static void rtf_newline(rtf *r)
{
    rtf_flush(r);
    if (rtf_cur(r)->dest != DEST_TEXT || r->stop)
        return;
    r->pending = 0;
    r->row_text = 0;
    if (sl_extract_newline(r->out))
        r->stop = 1;
}

/* ---- control words ---------------------------------------------------------- */

enum {
    W_PAR, W_LINE, W_TAB, W_CELL, W_ROW, W_PARD, W_INTBL, W_U, W_UC, W_F,
    W_FCHARSET, W_CPG, W_ANSICPG, W_ANSI, W_MAC, W_PC, W_PCA, W_SKIP, W_INFO,
    W_TITLE, W_AUTHOR, W_CREATIM, W_REVTIM, W_YR, W_MO, W_DY, W_HR, W_MIN,
    W_SEC, W_BIN, W_FONTTBL, W_CHAR
};

typedef struct {
    const char *name;
    int action;
    const char *text; /* W_CHAR: UTF-8 to put out */
} rtf_word;

/* Sorted by name for bsearch. */
static const rtf_word rtf_words[] = {
    {"ansi", W_ANSI, NULL},
    {"ansicpg", W_ANSICPG, NULL},
    {"author", W_AUTHOR, NULL},
    {"bin", W_BIN, NULL},
    {"bullet", W_CHAR, "\xE2\x80\xA2"},
    {"cell", W_CELL, NULL},
    {"colortbl", W_SKIP, NULL},
    {"cpg", W_CPG, NULL},
    {"creatim", W_CREATIM, NULL},
    {"datastore", W_SKIP, NULL},
    {"dy", W_DY, NULL},
    {"emdash", W_CHAR, "\xE2\x80\x94"},
    {"emspace", W_CHAR, " "},
    {"endash", W_CHAR, "\xE2\x80\x93"},
    {"enspace", W_CHAR, " "},
    {"f", W_F, NULL},
    {"fcharset", W_FCHARSET, NULL},
    {"filetbl", W_SKIP, NULL},
    {"fldinst", W_SKIP, NULL},
    {"fonttbl", W_FONTTBL, NULL},
    {"hr", W_HR, NULL},
    {"info", W_INFO, NULL},
    {"intbl", W_INTBL, NULL},
    {"ldblquote", W_CHAR, "\xE2\x80\x9C"},
    {"line", W_LINE, NULL},
    {"listoverridetable", W_SKIP, NULL},
    {"listtable", W_SKIP, NULL},
    {"listtext", W_SKIP, NULL},
    {"lquote", W_CHAR, "\xE2\x80\x98"},
    {"mac", W_MAC, NULL},
    {"min", W_MIN, NULL},
    {"mo", W_MO, NULL},
    {"nestcell", W_CELL, NULL},
    {"nestrow", W_ROW, NULL},
    {"nonshppict", W_SKIP, NULL},
    {"objdata", W_SKIP, NULL},
    {"page", W_PAR, NULL},
    {"par", W_PAR, NULL},
    {"pard", W_PARD, NULL},
    {"pc", W_PC, NULL},
    {"pca", W_PCA, NULL},
    {"pict", W_SKIP, NULL},
    {"pn", W_SKIP, NULL},
    {"pntext", W_SKIP, NULL},
    {"rdblquote", W_CHAR, "\xE2\x80\x9D"},
    {"revtbl", W_SKIP, NULL},
    {"revtim", W_REVTIM, NULL},
    {"row", W_ROW, NULL},
    {"rquote", W_CHAR, "\xE2\x80\x99"},
    {"rsidtbl", W_SKIP, NULL},
    {"sec", W_SEC, NULL},
    {"sect", W_PAR, NULL},
    {"stylesheet", W_SKIP, NULL},
    {"tab", W_TAB, NULL},
    {"themedata", W_SKIP, NULL},
    {"title", W_TITLE, NULL},
    {"u", W_U, NULL},
    {"uc", W_UC, NULL},
    {"xmlnstbl", W_SKIP, NULL},
    {"yr", W_YR, NULL},
};

static int rtf_word_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const rtf_word *)elem)->name);
}

/* Code page of a \fcharset value; 0 means "the document's". */
static int rtf_charset_cp(int charset)
{
    switch (charset) {
    case 77: return 10000;
    case 128: return 932;
    case 129: return 949;
    case 130: return 1361;
    case 134: return 936;
    case 136: return 950;
    case 161: return 1253;
    case 162: return 1254;
    case 163: return 1258;
    case 177: return 1255;
    case 178: return 1256;
    case 186: return 1257;
    case 204: return 1251;
    case 222: return 874;
    case 238: return 1250;
    case 254: return 437;
    }
    return 0;
}

static void rtf_font_set(rtf *r, int font, int cp)
{
    for (int i = 0; i < r->nfonts; i++)
        if (r->fonts[i][0] == font) {
            r->fonts[i][1] = cp;
            return;
        }
    if (r->nfonts < RTF_MAX_FONTS) {
        r->fonts[r->nfonts][0] = font;
        r->fonts[r->nfonts][1] = cp;
        r->nfonts++;
    }
}

static int rtf_font_cp(rtf *r, int font)
{
    for (int i = 0; i < r->nfonts; i++)
        if (r->fonts[i][0] == font)
            return r->fonts[i][1];
    return 0;
}

static void rtf_unicode(rtf *r, long n)
{
    unsigned c = (unsigned)(n < 0 ? n + 65536 : n) & 0xFFFF;
    if (c >= 0xD800 && c <= 0xDBFF) {
        if (r->high)
            rtf_codepoint(r, 0xFFFD);
        r->high = c;
        return;
    }
    if (c >= 0xDC00 && c <= 0xDFFF) {
        if (r->high)
            rtf_codepoint(r, 0x10000 + ((r->high - 0xD800) << 10) + (c - 0xDC00));
        else
            rtf_codepoint(r, 0xFFFD);
        r->high = 0;
        return;
    }
    if (r->high)
        rtf_codepoint(r, 0xFFFD);
    r->high = 0;
    rtf_codepoint(r, c ? c : 0xFFFD);
}

/* Runs one control word; returns how many raw bytes to skip after it
 * (\bin), clamped by the caller. */
static long rtf_control(rtf *r, const char *word, int has_param, long param)
{
    rtf_state *s = rtf_cur(r);
    const rtf_word *w = bsearch(word, rtf_words, sizeof rtf_words / sizeof rtf_words[0],
                                sizeof rtf_words[0], rtf_word_cmp);
    if (w && w->action == W_BIN)
        return has_param && param > 0 ? param : 0;
    if (w && w->action != W_U && r->skip_chars > 0 && s->dest == DEST_TEXT) {
        r->skip_chars--; /* a control word in the fallback counts as one */
        return 0;
    }
    if (!w)
        return 0;
    if (s->dest == DEST_FONTTBL) {
        if (w->action == W_F && has_param)
            r->cur_font = (int)param;
        else if (w->action == W_FCHARSET && has_param)
            rtf_font_set(r, r->cur_font, rtf_charset_cp((int)param));
        else if (w->action == W_CPG && has_param)
            rtf_font_set(r, r->cur_font, (int)param);
        return 0;
    }
    if (s->dest == DEST_INFO) {
        if (w->action == W_TITLE || w->action == W_AUTHOR) {
            s->dest = w->action == W_TITLE ? DEST_TITLE : DEST_AUTHOR;
            r->meta_len = 0;
        } else if (w->action == W_CREATIM || w->action == W_REVTIM) {
            s->dest = DEST_DATE;
            s->date = w->action == W_REVTIM;
            memset(r->date, 0, sizeof r->date);
        } else if (w->action != W_INFO) {
            s->dest = DEST_SKIP; /* \subject, \operator, \company ... */
        }
        return 0;
    }
    if (s->dest == DEST_DATE) {
        if (has_param && w->action >= W_YR && w->action <= W_SEC)
            r->date[w->action - W_YR] = (int)(param < 0 ? 0 : param > 9999 ? 9999 : param);
        return 0;
    }
    if (s->dest == DEST_SKIP)
        return 0;
    switch (w->action) {
    case W_PAR:
    case W_LINE:
        if (r->intbl && w->action == W_PAR) {
            rtf_flush(r);
            if (r->row_text && !r->pending)
                r->pending = ' ';
        } else {
            rtf_newline(r);
        }
        break;
    case W_TAB: rtf_text(r, "\t", 1); break;
    case W_CELL:
        rtf_flush(r);
        if (r->row_text)
            r->pending = '\t';
        break;
    case W_ROW: rtf_newline(r); break;
    case W_PARD: r->intbl = 0; break;
    case W_INTBL: r->intbl = 1; break;
    case W_U:
        if (has_param) {
            rtf_unicode(r, param);
            r->skip_chars = s->uc;
        }
        break;
    case W_UC:
        if (has_param)
            s->uc = param < 0 ? 0 : param > 16 ? 16 : (int)param;
        break;
    case W_F:
        if (has_param)
            s->cp = rtf_font_cp(r, (int)param);
        break;
    case W_ANSICPG:
        if (has_param && param > 0 && param < 100000)
            r->doc_cp = (int)param;
        break;
    case W_ANSI: r->doc_cp = 1252; break;
    case W_MAC: r->doc_cp = 10000; break;
    case W_PC: r->doc_cp = 437; break;
    case W_PCA: r->doc_cp = 850; break;
    case W_SKIP: s->dest = DEST_SKIP; break;
    case W_FONTTBL: s->dest = DEST_FONTTBL; break;
    case W_INFO: s->dest = DEST_INFO; break;
    case W_CHAR: rtf_text(r, w->text, strlen(w->text)); break;
    }
    return 0;
}

/* Leaving a group: what a metadata destination collected is committed. */
static void rtf_pop(rtf *r)
{
    if (r->overflow > 0) {
        r->overflow--;
        return;
    }
    if (r->depth == 0)
        return; /* a stray '}': ignored, the text goes on */
    rtf_flush(r);
    rtf_state *s = rtf_cur(r), *up = &r->st[r->depth - 1];
    if ((s->dest == DEST_TITLE || s->dest == DEST_AUTHOR) && up->dest != s->dest) {
        sl_extract_meta(s->dest == DEST_TITLE ? &r->out->title : &r->out->author, r->meta,
                        r->meta_len);
        r->meta_len = 0;
    } else if (s->dest == DEST_DATE && up->dest != DEST_DATE && r->date[0] > 0) {
        char iso[32];
        int n = snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d", r->date[0],
                         r->date[1], r->date[2], r->date[3], r->date[4], r->date[5]);
        sl_extract_meta(s->date ? &r->out->modified : &r->out->created, iso, (size_t)n);
    }
    r->depth--;
    r->skip_chars = 0; /* a fallback never runs past its group */
}

static int rtf_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sl_extract_rtf(const char *buf, size_t len, const sl_extract_limits *lim,
                   sl_extract_result *out)
{
    if (len < 5 || memcmp(buf, "{\\rtf", 5) != 0)
        return sl_extract_error(out, "not rtf");
    rtf *r = calloc(1, sizeof *r);
    if (!r)
        return sl_extract_error(out, "out of memory");
    r->out = out;
    r->lim = lim;
    r->doc_cp = 1252;
    r->cd = (iconv_t)-1;
    r->st[0].uc = 1;
    r->depth = 0;
    /* the document's own group is st[1]: its '{' is the first byte */
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    const unsigned char *tick = p;
    int rc = SL_EXTRACT_OK;
    while (p < end && !r->stop) {
        if (p - tick >= 65536) {
            tick = p;
            if (sl_extract_expired(lim)) {
                rc = sl_extract_error(out, "timeout");
                break;
            }
        }
        unsigned char c = *p;
        if (c == '{') {
            p++;
            rtf_flush(r);
            if (r->depth + 1 >= RTF_MAX_DEPTH) {
                r->overflow++;
            } else {
                r->st[r->depth + 1] = r->st[r->depth];
                r->depth++;
            }
            r->skip_chars = 0;
        } else if (c == '}') {
            p++;
            rtf_pop(r);
        } else if (c == '\\') {
            p++;
            if (p == end)
                break;
            c = *p;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                char word[33];
                int n = 0;
                while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
                    if (n < 32)
                        word[n++] = (char)*p;
                    p++;
                }
                word[n] = '\0';
                int has_param = 0, neg = 0;
                long param = 0;
                if (p < end && *p == '-')
                    neg = 1, p++;
                while (p < end && *p >= '0' && *p <= '9') {
                    if (param < 100000000)
                        param = param * 10 + (*p - '0');
                    has_param = 1;
                    p++;
                }
                if (neg)
                    param = -param;
                if (p < end && *p == ' ')
                    p++; /* the delimiter space belongs to the word */
                long skip = rtf_control(r, word, has_param, param);
                if (skip > 0)
                    p += (size_t)skip < (size_t)(end - p) ? (size_t)skip : (size_t)(end - p);
            } else if (c == '\'') {
                int hi = p + 1 < end ? rtf_hex(p[1]) : -1;
                int lo = p + 2 < end ? rtf_hex(p[2]) : -1;
                /* a cut-off escape takes the digits it has with it */
                p += hi < 0 ? 1 : lo < 0 ? 2 : 3;
                if (hi < 0 || lo < 0)
                    continue;
                if (r->skip_chars > 0) {
                    r->skip_chars--;
                } else if (rtf_cur(r)->dest == DEST_TEXT || rtf_cur(r)->dest == DEST_TITLE ||
                           rtf_cur(r)->dest == DEST_AUTHOR) {
                    rtf_byte(r, (unsigned char)(hi << 4 | lo));
                }
            } else {
                p++;
                if (r->skip_chars > 0 && c != '\r' && c != '\n') {
                    r->skip_chars--;
                    continue;
                }
                switch (c) {
                case '\\': case '{': case '}': rtf_text(r, (const char *)&c, 1); break;
                case '~': rtf_text(r, "\xC2\xA0", 2); break;
                case '_': rtf_text(r, "-", 1); break;
                case '*': rtf_cur(r)->dest = DEST_SKIP; break;
                case '\r': case '\n': rtf_control(r, "par", 0, 0); break;
                case '\t': rtf_text(r, "\t", 1); break;
                default: break; /* \- optional hyphen, \| \: formula marks */
                }
            }
        } else if (c == '\r' || c == '\n') {
            p++;
        } else if (r->skip_chars > 0) {
            r->skip_chars--;
            p++;
        } else if (c >= 0x80) {
            /* raw 8-bit text is in the code page too */
            if (rtf_cur(r)->dest == DEST_TEXT || rtf_cur(r)->dest == DEST_TITLE ||
                rtf_cur(r)->dest == DEST_AUTHOR)
                rtf_byte(r, c);
            p++;
        } else {
            const unsigned char *run = p;
            while (p < end && *p != '\\' && *p != '{' && *p != '}' && *p != '\r' &&
                   *p != '\n' && *p < 0x80 && *p != '\0')
                p++;
            if (p == run) { /* a NUL: dropped */
                p++;
                continue;
            }
            if (r->high) {
                rtf_codepoint(r, 0xFFFD);
                r->high = 0;
            }
            rtf_text(r, (const char *)run, (size_t)(p - run));
        }
    }
    /* a missing '}' ends the document where the bytes end */
    if (rc == SL_EXTRACT_OK) {
        rtf_flush(r);
        while (r->depth > 0 || r->overflow > 0)
            rtf_pop(r);
        if (!r->stop)
            sl_extract_newline(out);
        if (out->err[0] && !sl_extract_full(out))
            rc = SL_EXTRACT_ERR; /* an append ran out of memory */
    }
    if (r->cd != (iconv_t)-1)
        iconv_close(r->cd);
    free(r);
    return rc;
}
