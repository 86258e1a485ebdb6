/*
 * Internals shared by the files of reconciler/providers/azure: a growable byte buffer that wipes what it
 * held (secrets pass through it), base64url, and a few string helpers. Not part of the public API.
 */
#ifndef KVR_AZINTERNAL_H
#define KVR_AZINTERNAL_H

#include <stdbool.h>
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
/* Room for n more bytes and the NUL in one buffer of exactly that size, so that adding them
   copies nothing more (a body whose length is announced). Never beyond max. */
int kvr_sbuf_reserve(kvr_sbuf *b, size_t n);
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
/* The service says `left` requests remain of its budget: the bucket holds no more than that (at
   least 0) from now_ms on. */
void kvr_bucket_cap(kvr_bucket *b, double left, double now_ms);

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

/* Copies s into dst (size > 0), truncating, made safe for a terminal (kvr_str_clean: control
   characters become spaces, bidi overrides are dropped, invalid UTF-8 becomes '?'). */
void kvr_az_copy_clean(char *dst, size_t size, const char *s);

/* Case-insensitive ASCII prefix test. */
int kvr_az_has_iprefix(const char *s, const char *prefix);

/* A random 32-bit value (OpenSSL RAND; falls back to the clock if that fails). */
uint32_t kvr_az_random32(void);

/* ---- feeds: requests handed out as others end (http.c, credential.c) ---------------------- */

/*
 * An open-ended batch. kvr_http_send_batch takes its requests up front and returns when the
 * slowest has ended, so a reader that learns what to read next from each answer waits for the
 * slowest of every batch. A feed is asked for a request whenever one of its slots is free, and
 * given each answer as soon as it ends, so the requests an answer makes possible go while the
 * others are still in flight.
 *
 * next: the next request, or NULL for none now (asked again after the next answer; the run ends
 *   when next says NULL and nothing is in flight). The request, and what it points to, stay the
 *   caller's and must stay valid until `done` is called for it.
 * done: what ended, as kvr_http_send_batch's out[i], codes[i] and errs[i]; `resp` is released
 *   after done returns (take its body to keep it). May not call into the same feed.
 * next may run other requests of the same engine (a token to fetch): those run alone, and the
 * feed's transfers that end meanwhile are given to done afterwards.
 */
typedef struct kvr_http_feed {
    void *ud;
    const kvr_http_request *(*next)(void *ud);
    void (*done)(void *ud, const kvr_http_request *req, kvr_http_response *resp, int code,
                 const kvr_error *err);
} kvr_http_feed;

/* Runs a feed with at most `slots` requests handed out at once (the engine's own limits on
   transfers, per host and per host rate still apply). 0, or KVR_ENOMEM before anything ran. */
int kvr_http_run_feed(kvr_http *h, const kvr_http_feed *feed, size_t slots);

/*
 * A feed with credentials: `next` also says the token scope of its request (NULL: Key Vault,
 * whose tenant and scope come from the vault's 401 challenge, as kvr_auth_send_kv). Each request
 * is sent with its token; a Key Vault host not seen before is first sent the request without one
 * (kvr_auth_kv_known says which; send only one request to such a host until it is known); a 401
 * after a token is sent once more with a fresh token (and, for Key Vault, the new challenge).
 * `done` gets only the final answers, as kvr_http_run_feed's; a token that cannot be had is a
 * `done` with its error, and the request is not sent.
 */
typedef struct kvr_auth_feed {
    void *ud;
    const kvr_http_request *(*next)(void *ud, const char **scope);
    void (*done)(void *ud, const kvr_http_request *req, kvr_http_response *resp, int code,
                 const kvr_error *err);
} kvr_auth_feed;

int kvr_auth_run_feed(kvr_auth *a, const kvr_auth_feed *feed, size_t slots);
/* Asks for the tokens of these distinct scopes that are not cached, at once (best effort: a
   token not had here is asked for, and its error told, when it is used). */
void kvr_auth_prefetch(kvr_auth *a, const char *const *scopes, size_t n);

/* kvr_http_keep_conns on the engine the credentials use. */
void kvr_auth_keep_conns(kvr_auth *a, size_t n);

/* Whether `url`'s host has sent a challenge kvr_auth_send_kv or a feed learnt. */
bool kvr_auth_kv_known(kvr_auth *a, const char *url);

/* ---- ARM long-running operations (lro.c) ------------------------------------------------- */

typedef enum kvr_lro_state {
    KVR_LRO_RUNNING = 0,
    KVR_LRO_SUCCEEDED,
    KVR_LRO_FAILED,
    KVR_LRO_CANCELED,
} kvr_lro_state;

/* An operation status or provisioningState, case-insensitively: absent or empty is Succeeded
   (ARM: no provisioningState means done), Failed, Canceled (or Cancelled), anything else
   (InProgress, Accepted, RegisteringDns, ...) is still running. */
kvr_lro_state kvr_lro_state_of(const char *status);

/* How a write's first response says to wait for it. */
typedef enum kvr_lro_kind {
    KVR_LRO_DONE = 0,        /* finished in the response itself */
    KVR_LRO_ENDED_BADLY,     /* the body's provisioningState is Failed or Canceled */
    KVR_LRO_ASYNC_OPERATION, /* poll the Azure-AsyncOperation URL */
    KVR_LRO_LOCATION,        /* poll the Location URL: 202 running, 200/204 done */
    KVR_LRO_RESOURCE,        /* GET the resource until its provisioningState is terminal */
} kvr_lro_kind;

/* Pure: the kind of wait for `method` ("PUT", ...) given its (accepted) first response. Polling is
   needed after 201/202 or a body whose provisioningState is not terminal. */
kvr_lro_kind kvr_lro_plan(const char *method, const kvr_http_response *initial);

/* 0 when `url` is https on the same host and port as `arm_endpoint`, else KVR_EINSECURE (or
   KVR_EPROTO for something that is not a URL): a poll carries the ARM token. */
int kvr_lro_check_url(const char *url, const char *arm_endpoint, kvr_error *err);

typedef struct kvr_lro_config {
    long default_wait_ms; /* between polls when no Retry-After is given: 2000 */
    long max_wait_ms;     /* cap of one wait, whatever Retry-After says: 60000 */
    long timeout_ms;      /* overall: 30 min, or $KVR_LRO_TIMEOUT seconds */
} kvr_lro_config;

void kvr_lro_config_init(kvr_lro_config *cfg);

/*
 * Waits until the ARM write that got `initial` (already checked to be an accepted status) has
 * finished. Polls with kvr_auth_send and `scope` (so the engine's retries on 429/5xx apply), only
 * on `arm_endpoint`. After a PUT or PATCH whose status URL says Succeeded, reads `resource_url`
 * until its provisioningState is terminal, as the SDKs read the final resource. cfg NULL:
 * defaults. *out (optional) gets the final resource body when one was read (caller's reference),
 * else NULL. Errors: KVR_EAZURE "OP 'OBJECT': the long-running operation failed: CODE: MESSAGE"
 * for Failed/Canceled; KVR_ETIMEOUT; KVR_EINSECURE for a poll URL off the ARM endpoint; as
 * kvr_http_error for a poll answered with an error status.
 */
int kvr_lro_wait(json_t **out, kvr_auth *a, const char *scope, const char *arm_endpoint,
                 const char *method, const char *resource_url, const kvr_http_response *initial,
                 const char *op, const char *object, const kvr_lro_config *cfg, kvr_error *err);

#endif
