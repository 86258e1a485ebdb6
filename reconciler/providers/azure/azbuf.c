/*
 * Small shared pieces of the network edge: the secret-safe growable buffer (every byte it ever
 * held is wiped before the memory goes back to malloc, because form bodies, tokens and secret
 * values pass through it), and base64url for JWTs.
 */
#include "azinternal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

void kvr_azure_secret_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Moves b's bytes to a buffer of cap bytes (cap > b->len), wiping the old one; NUL-terminated. */
static int sbuf_move(kvr_sbuf *b, size_t cap)
{
    char *p = malloc(cap);
    if (!p)
        return KVR_ENOMEM;
    if (b->p) {
        memcpy(p, b->p, b->len);
        OPENSSL_cleanse(b->p, b->len + 1); /* what was ever written: [0, len] */
        free(b->p);
    }
    p[b->len] = '\0';
    b->p = p;
    b->cap = cap;
    return 0;
}

int kvr_sbuf_add(kvr_sbuf *b, const void *data, size_t n)
{
    int rc;
    if (b->max && (n > b->max || b->len > b->max - n))
        return KVR_ETOOBIG;
    if (n >= SIZE_MAX / 2 - b->len)
        return KVR_ENOMEM;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((rc = sbuf_move(b, cap)) < 0)
            return rc;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int kvr_sbuf_reserve(kvr_sbuf *b, size_t n)
{
    size_t room = b->max > b->len ? b->max - b->len : 0;
    if (b->max && n > room)
        n = room;
    if (n >= SIZE_MAX / 2 - b->len)
        return KVR_ENOMEM;
    if (b->len + n + 1 <= b->cap)
        return 0;
    return sbuf_move(b, b->len + n + 1);
}

int kvr_sbuf_adds(kvr_sbuf *b, const char *s)
{
    return kvr_sbuf_add(b, s, strlen(s));
}

int kvr_sbuf_take(char **out, kvr_sbuf *b)
{
    int rc = 0;
    *out = NULL;
    if (!b->p && (rc = kvr_sbuf_add(b, "", 0)) < 0)
        return rc;
    *out = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return 0;
}

void kvr_sbuf_release(kvr_sbuf *b)
{
    if (b->p) {
        /* only [0, len] was ever written (nothing shortens len): a buffer reserved for a large
           answer that did not come is not touched whole */
        OPENSSL_cleanse(b->p, b->len + 1);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
}

int kvr_b64url_add(kvr_sbuf *b, const unsigned char *data, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char q[4];
    int rc = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        q[3] = tab[v & 63];
        if ((rc = kvr_sbuf_add(b, q, 4)) < 0)
            goto done;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        rc = kvr_sbuf_add(b, q, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        rc = kvr_sbuf_add(b, q, 3);
    }
done:
    OPENSSL_cleanse(q, sizeof(q));
    return rc;
}

void kvr_az_copy_clean(char *dst, size_t size, const char *s)
{
    kvr_str_clean(dst, size, s);
}

int kvr_az_has_iprefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char a = *s, p = *prefix;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (p >= 'A' && p <= 'Z')
            p = (char)(p - 'A' + 'a');
        if (a != p)
            return 0;
    }
    return 1;
}

uint32_t kvr_az_random32(void)
{
    unsigned char b[4];
    if (RAND_bytes(b, sizeof(b)) == 1)
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u;
}
