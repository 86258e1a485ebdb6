/*
 * Small string and memory helpers: typo suggestions for "did you mean", case-insensitive
 * comparison for Azure names (which are case-insensitive), a growable-array helper, and a
 * memory wipe for buffers that held secrets.
 */
#include "kvr/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISTANCE_MAX_LEN 64

size_t kvr_str_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Three rows of the optimal-string-alignment matrix. */
    size_t rows[3][DISTANCE_MAX_LEN + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

    if (la > DISTANCE_MAX_LEN || lb > DISTANCE_MAX_LEN)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t *t;
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < best)
                best = pp[j - 2] + 1;
            cur[j] = best;
        }
        t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *kvr_str_suggest(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    size_t len = strlen(word);
    /* Allow about one edit per three characters, at least one and at most three. */
    size_t max_d = len / 3;
    if (max_d < 1)
        max_d = 1;
    if (max_d > 3)
        max_d = 3;
    for (size_t i = 0; candidates[i]; i++) {
        size_t d = kvr_str_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best_d <= max_d ? best : NULL;
}

char *kvr_vasprintf(const char *fmt, va_list ap)
{
    va_list copy;
    char *s;
    int n;
    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || !(s = malloc((size_t)n + 1)))
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *kvr_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    s = kvr_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

bool kvr_str_ieq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    while (*a && *b) {
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        a++;
        b++;
    }
    return *a == *b;
}

bool kvr_str_has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lf = strlen(suffix);
    return ls >= lf && memcmp(s + ls - lf, suffix, lf) == 0;
}

void kvr_memwipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

int kvr_grow(void **items, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *p;
    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return KVR_ENOMEM;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / elem)
        return KVR_ENOMEM;
    p = realloc(*items, ncap * elem);
    if (!p)
        return KVR_ENOMEM;
    *items = p;
    *cap = ncap;
    return 0;
}

/* ---- string pool ------------------------------------------------------------------------- */

#define STRPOOL_BLOCK 65536

struct kvr_strpool_block {
    struct kvr_strpool_block *next;
    char data[];
};

char *kvr_strpool_ndup(kvr_strpool *p, const char *s, size_t n)
{
    struct kvr_strpool_block *b;
    char *out;
    if (n >= SIZE_MAX - sizeof(*b) - STRPOOL_BLOCK)
        return NULL;
    if (n + 1 > p->cap - p->used) {
        /* a long string gets a block of its own, behind the one being filled */
        bool own = n + 1 > STRPOOL_BLOCK / 4;
        size_t size = own ? n + 1 : STRPOOL_BLOCK;
        if (!(b = malloc(sizeof(*b) + size)))
            return NULL;
        if (own && p->head) {
            b->next = p->head->next;
            p->head->next = b;
            memcpy(b->data, s, n);
            b->data[n] = '\0';
            return b->data;
        }
        b->next = p->head;
        p->head = b;
        p->used = 0;
        p->cap = size;
    }
    out = p->head->data + p->used;
    memcpy(out, s, n);
    out[n] = '\0';
    p->used += n + 1;
    return out;
}

char *kvr_strpool_dup(kvr_strpool *p, const char *s)
{
    return s ? kvr_strpool_ndup(p, s, strlen(s)) : NULL;
}

void kvr_strpool_release(kvr_strpool *p)
{
    struct kvr_strpool_block *b = p->head;
    while (b) {
        struct kvr_strpool_block *next = b->next;
        free(b);
        b = next;
    }
    memset(p, 0, sizeof(*p));
}

typedef struct strset_key {
    const kvr_strset *set;
    const char *s;
} strset_key;

static bool strset_is(const void *ctx, size_t id)
{
    const strset_key *k = ctx;
    return strcmp(k->set->items[id], k->s) == 0;
}

char *kvr_strset_get(kvr_strset *set, const char *s)
{
    strset_key k = {set, s};
    uint64_t hash;
    size_t id;
    char *copy;
    if (!s)
        return NULL;
    /* the hash folds case, the compare does not: "KV-A" and "kv-a" are two copies */
    hash = kvr_hash_ci(KVR_HASH_SEED, s);
    if ((id = kvr_index_first(&set->ix, hash, strset_is, &k)) != KVR_INDEX_NONE)
        return set->items[id];
    if (kvr_grow((void **)&set->items, &set->cap, set->len + 1, sizeof(*set->items)) < 0 ||
        !(copy = kvr_strpool_dup(&set->pool, s)) || kvr_index_put(&set->ix, hash, set->len) < 0)
        return NULL;
    return set->items[set->len++] = copy;
}

void kvr_strset_release(kvr_strset *set)
{
    kvr_strpool_release(&set->pool);
    free(set->items);
    kvr_index_release(&set->ix);
    memset(set, 0, sizeof(*set));
}

/* Length of the UTF-8 sequence at s (1-4), or 0 when it is not valid UTF-8. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range or a surrogate */
    return n;
}

size_t kvr_str_clean(char *dst, size_t size, const char *src)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    if (size == 0)
        return 0;
    while (s && *s) {
        size_t n = utf8_len(s);
        if (n == 0) {
            if (o + 1 >= size)
                break;
            dst[o++] = '?'; /* invalid UTF-8 */
            s++;
            continue;
        }
        if (n == 1 && (*s < 0x20 || *s == 0x7f)) {
            if (o + 1 >= size)
                break;
            dst[o++] = ' '; /* C0 controls (ESC, CR, newline...) and DEL */
            s++;
            continue;
        }
        if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0) {
            if (o + 1 >= size)
                break;
            dst[o++] = ' '; /* C1 controls, U+0080-U+009F (CSI among them) */
            s += 2;
            continue;
        }
        if (n == 3 && s[0] == 0xe2 &&
            ((s[1] == 0x80 && s[2] >= 0xaa && s[2] <= 0xae) ||
             (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9))) {
            s += 3; /* bidi embeddings, overrides and isolates: dropped */
            continue;
        }
        if (o + n >= size)
            break; /* never a partial sequence */
        memcpy(dst + o, s, n);
        o += n;
        s += n;
    }
    dst[o] = '\0';
    return o;
}

char *kvr_location_canon(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++)
        if (s[i] != ' ')
            s[o++] = (char)tolower((unsigned char)s[i]);
    s[o] = '\0';
    return s;
}
