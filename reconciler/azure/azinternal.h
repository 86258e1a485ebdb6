/*
 * Internals shared by the files of reconciler/azure: a growable byte buffer that wipes what it
 * held (secrets pass through it), base64url, and a few string helpers. Not part of the public API.
 */
#ifndef KVR_AZINTERNAL_H
#define KVR_AZINTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvr/azure.h"

/* A NUL-terminated growable buffer; every reallocation and the release wipe the old bytes. */
typedef struct kvr_sbuf {
    char *p;
    size_t len;
    size_t cap;
    size_t max; /* 0: no cap; else appending past it fails with KVR_ETOOBIG */
} kvr_sbuf;

int kvr_sbuf_add(kvr_sbuf *b, const void *data, size_t n);
int kvr_sbuf_adds(kvr_sbuf *b, const char *s);
/* Hands the buffer over (NUL-terminated, never NULL on success) and empties b. */
int kvr_sbuf_take(char **out, kvr_sbuf *b);
void kvr_sbuf_release(kvr_sbuf *b);

/* base64url without padding of n bytes, appended to b. */
int kvr_b64url_add(kvr_sbuf *b, const unsigned char *data, size_t n);

/*
 * A token bucket (one per host in the engine). Takes one token at `now_ms` (any monotonic
 * milliseconds): returns 0 if one was taken, else how many milliseconds until one is available.
 * Start it full: {burst, now}.
 */
typedef struct kvr_bucket {
    double tokens;
    double last_ms;
} kvr_bucket;

double kvr_bucket_take(kvr_bucket *b, double rate_per_sec, double burst, double now_ms);

/*
 * A sliding window: at most `limit` starts in any `span_ms`. The ring holds the last `limit`
 * start times (allocated at the first start; without memory the window admits everything).
 */
typedef struct kvr_window {
    double *starts;
    size_t n, next;
} kvr_window;

/* 0 when one more may start at now_ms, else the wait in ms. */
double kvr_window_wait(const kvr_window *w, size_t limit, double span_ms, double now_ms);
/* Counts a start at now_ms. */
void kvr_window_note(kvr_window *w, size_t limit, double now_ms);

/* Copies s into dst (size > 0), truncating; replaces control characters with spaces. */
void kvr_az_copy_clean(char *dst, size_t size, const char *s);

/* Case-insensitive ASCII prefix test. */
int kvr_az_has_iprefix(const char *s, const char *prefix);

/* A random 32-bit value (OpenSSL RAND; falls back to the clock if that fails). */
uint32_t kvr_az_random32(void);

#endif
