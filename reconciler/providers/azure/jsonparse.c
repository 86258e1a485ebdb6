/*
 * JSON parsed without jansson's lexer. jansson reads its input a character at a time, through a
 * stream and a string buffer: about 4 us for a 280-byte list item, where building the same
 * tree with its API takes 0.5 us. A read parses every answer it receives (a 200-vault plan:
 * 120,000 list items and 10,000 key bundles), so this parser scans the text in place and builds
 * the tree with jansson's API.
 *
 * It takes only JSON that is well formed as RFC 8259 and jansson have it: strict UTF-8, no
 * control character in a string, no \u0000 (json_loadb without JSON_ALLOW_NUL refuses it), the
 * escapes \" \\ \/ \b \f \n \r \t \uXXXX with surrogates in pairs, and numbers that are integers
 * within jansson's json_int_t. Anything else, valid or not (a real number, an integer out of
 * range, nesting deeper than FAST_DEPTH, any error), goes to json_loadb, which then decides and
 * words the error: the fast path never accepts what jansson refuses, and builds what jansson
 * builds (members set in order, a repeated name keeping its first place and its last value).
 */
#include "jsonparse.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define FAST_DEPTH 64 /* containers open at once that the fast path follows */

/* the largest json_int_t, as jansson's lexer reads integers (strtoll or strtol) */
#if JSON_INTEGER_IS_LONG_LONG
#define INT_LARGEST LLONG_MAX
#else
#define INT_LARGEST LONG_MAX
#endif

typedef struct parser {
    const char *s;
    size_t len;
    size_t i;
    unsigned depth;
    char *buf; /* the last string that held an escape, decoded (may be a secret's value) */
    size_t cap;
} parser;

static json_t *value(parser *p);

static void skip_ws(parser *p)
{
    while (p->i < p->len &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

/* The length of the UTF-8 sequence of a non-ASCII byte at s (n bytes there), 0 if it is none:
   no overlong form, no surrogate, nothing past U+10FFFF. (kvr_str_clean has its own, for
   NUL-terminated text: this file is also compiled into azsim, which links no kvreconcile
   library.) */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t k;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        k = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        k = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        k = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[j] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

/* Room for n bytes in p->buf. It moves to a new block and the old one is wiped: realloc would
   leave a copy of a secret's value behind. */
static int room(parser *p, size_t n)
{
    size_t cap = p->cap ? p->cap : 256;
    char *b;
    if (n <= p->cap)
        return 0;
    while (cap < n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    if (!(b = malloc(cap)))
        return -1;
    if (p->buf) {
        memcpy(b, p->buf, p->cap);
        OPENSSL_cleanse(p->buf, p->cap);
        free(p->buf);
    }
    p->buf = b;
    p->cap = cap;
    return 0;
}

static bool hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* The code point of the \u escape whose 'u' is s[i] (a surrogate pair taken whole); *end is its
   last byte. 0 if the fast path does not take it (\u0000 is refused by jansson too). */
static uint32_t unicode_escape(const parser *p, size_t i, size_t *end)
{
    uint32_t cp, lo;
    if (i + 4 >= p->len || !hex4(p->s + i + 1, &cp) || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
        return 0;
    *end = i + 4;
    if (cp < 0xD800 || cp > 0xDBFF)
        return cp;
    if (i + 10 >= p->len || p->s[i + 5] != '\\' || p->s[i + 6] != 'u' || !hex4(p->s + i + 7, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    *end = i + 10;
    return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The rest of a string with an escape at p->i, decoded into p->buf after the `done` bytes
   already copied there. 0 with *n its length and p->i past the closing quote, or -1. */
static int string_escaped(parser *p, size_t done, size_t *n)
{
    size_t o = done;
    while (p->i < p->len) {
        unsigned char c = (unsigned char)p->s[p->i];
        size_t k = 1;
        if (room(p, o + 4) < 0)
            return -1;
        if (c == '"') {
            p->i++;
            *n = o;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *e;
            if (p->i + 1 >= p->len)
                return -1;
            c = (unsigned char)p->s[p->i + 1];
            if (c == 'u') {
                size_t end;
                uint32_t cp = unicode_escape(p, p->i + 1, &end);
                if (!cp)
                    return -1;
                o += put_utf8(p->buf + o, cp);
                p->i = end + 1;
                continue;
            }
            if (!c || !(e = memchr(from, c, sizeof(from) - 1)))
                return -1;
            p->buf[o++] = to[e - from];
            p->i += 2;
            continue;
        }
        if (c >= 0x80 && !(k = utf8_seq((const unsigned char *)p->s + p->i, p->len - p->i)))
            return -1;
        memcpy(p->buf + o, p->s + p->i, k);
        o += k;
        p->i += k;
    }
    return -1;
}

/* The string whose opening quote is at p->i: its bytes in *out (in the text itself when it has
   no escape, else in p->buf until the next string), its length in *n. 0, or -1. */
static int string(parser *p, const char **out, size_t *n)
{
    size_t start = ++p->i;
    while (p->i < p->len) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            p->i++;
        } else if (c == '"') {
            *out = p->s + start;
            *n = p->i++ - start;
            return 0;
        } else if (c == '\\') {
            if (room(p, p->i - start + 4) < 0)
                return -1;
            memcpy(p->buf, p->s + start, p->i - start);
            if (string_escaped(p, p->i - start, n) < 0)
                return -1;
            *out = p->buf;
            return 0;
        } else {
            size_t k = c >= 0x80 ? utf8_seq((const unsigned char *)p->s + p->i, p->len - p->i) : 0;
            if (!k)
                return -1;
            p->i += k;
        }
    }
    return -1;
}

/* An integer within json_int_t; NULL for anything else (a real number goes to jansson). */
static json_t *number(parser *p)
{
    size_t i = p->i;
    bool neg = false;
    uint64_t v = 0, limit;
    if (i < p->len && p->s[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9')
        return NULL;
    if (p->s[i] == '0') {
        i++;
    } else {
        for (; i < p->len && p->s[i] >= '0' && p->s[i] <= '9'; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (v > (UINT64_MAX - d) / 10)
                return NULL;
            v = v * 10 + d;
        }
    }
    if (i < p->len &&
        (p->s[i] == '.' || p->s[i] == 'e' || p->s[i] == 'E' || (p->s[i] >= '0' && p->s[i] <= '9')))
        return NULL;
    limit = (uint64_t)INT_LARGEST + (neg ? 1 : 0);
    if (v > limit)
        return NULL;
    p->i = i;
    if (!neg)
        return json_integer((json_int_t)v);
    return json_integer(v == limit ? -INT_LARGEST - 1 : -(json_int_t)v);
}

static json_t *literal(parser *p, const char *word, size_t n, json_t *v)
{
    if (p->len - p->i < n || memcmp(p->s + p->i, word, n) != 0)
        return NULL;
    p->i += n;
    return v;
}

/* After a member or an element: 1 when a ',' says another follows, 0 when `close` ends the
   container (then left), -1 for anything else. */
static int next_or_close(parser *p, char close)
{
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ',') {
        p->i++;
        skip_ws(p);
        return 1;
    }
    if (p->i < p->len && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    return -1;
}

/* Enters the container whose opening bracket is at p->i: 1 when members follow, 0 when `close`
   comes at once (the container is empty, and left), -1 past FAST_DEPTH. */
static int enter(parser *p, char close)
{
    if (++p->depth > FAST_DEPTH)
        return -1;
    p->i++;
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    return 1;
}

static json_t *object(parser *p)
{
    json_t *o;
    int more = enter(p, '}');
    if (more < 0 || !(o = json_object()))
        return NULL;
    while (more > 0) {
        const char *key;
        char *copy = NULL;
        size_t klen;
        json_t *v = NULL;
        if (p->i >= p->len || p->s[p->i] != '"' || string(p, &key, &klen) < 0)
            break;
        /* a name with an escape is in p->buf, which the value's strings reuse */
        if (key == p->buf) {
            if (!(copy = malloc(klen ? klen : 1)))
                break;
            key = memcpy(copy, key, klen);
        }
        skip_ws(p);
        if (p->i < p->len && p->s[p->i] == ':') {
            p->i++;
            skip_ws(p);
            v = value(p);
        }
        more = v && json_object_setn_new_nocheck(o, key, klen, v) == 0 ? next_or_close(p, '}') : -1;
        free(copy);
    }
    if (more == 0)
        return o;
    json_decref(o);
    return NULL;
}

static json_t *array(parser *p)
{
    json_t *a;
    int more = enter(p, ']');
    if (more < 0 || !(a = json_array()))
        return NULL;
    while (more > 0)
        more = json_array_append_new(a, value(p)) < 0 ? -1 : next_or_close(p, ']');
    if (more == 0)
        return a;
    json_decref(a);
    return NULL;
}

static json_t *value(parser *p)
{
    const char *s;
    size_t n;
    if (p->i >= p->len)
        return NULL;
    switch (p->s[p->i]) {
    case '{':
        return object(p);
    case '[':
        return array(p);
    case '"':
        return string(p, &s, &n) < 0 ? NULL : json_stringn_nocheck(s, n);
    case 't':
        return literal(p, "true", 4, json_true());
    case 'f':
        return literal(p, "false", 5, json_false());
    case 'n':
        return literal(p, "null", 4, json_null());
    default:
        return number(p);
    }
}

json_t *kvr__json_parse_fast(const char *text, size_t len, size_t flags)
{
    parser p = {.s = text, .len = len};
    json_t *j = NULL;
    if ((flags & ~(size_t)JSON_DECODE_ANY) == 0 && text) {
        skip_ws(&p);
        if (p.i < len && ((flags & JSON_DECODE_ANY) || text[p.i] == '{' || text[p.i] == '['))
            j = value(&p);
        skip_ws(&p);
        if (j && p.i != len) {
            json_decref(j);
            j = NULL;
        }
    }
    if (p.buf) {
        OPENSSL_cleanse(p.buf, p.cap);
        free(p.buf);
    }
    return j;
}

json_t *kvr__json_parse(const char *text, size_t len, size_t flags, json_error_t *jerr)
{
    json_t *j = kvr__json_parse_fast(text, len, flags);
    if (!j)
        return json_loadb(text, len, flags, jerr);
    if (jerr)
        memset(jerr, 0, sizeof(*jerr));
    return j;
}
