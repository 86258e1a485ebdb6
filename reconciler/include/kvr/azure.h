/*
 * libkvr's network edge: one HTTP engine for every Azure call (libcurl multi interface, bounded
 * concurrency, keep-alive, retries with backoff, Retry-After, per-host rate limit, paging) and the
 * credentials that put bearer tokens on those calls (client secret, certificate assertion,
 * federated token, managed identity; the Key Vault 401 challenge).
 *
 * Threading: a kvr_http or kvr_auth handle is used by one thread at a time. Concurrency comes from
 * kvr_http_send_batch, which runs independent requests at once on one event loop, and, inside the
 * Azure provider, from feeds (kvr_http_run_feed, kvr_auth_run_feed in azinternal.h), which take
 * new requests as others end.
 *
 * Secrets: request bodies, bearer tokens, client secrets and response bodies may hold secret
 * values. This layer never prints them and wipes (OPENSSL_cleanse) the buffers it owns before
 * freeing them; kvr_error messages never carry them.
 */
#ifndef KVR_AZURE_H
#define KVR_AZURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "kvr/util.h"

/* Error codes of the network edge (KVR_EHTTP ... KVR_EPROTO) are kvr_code's (util.h), described
   by kvr_strerror like every other. */

/* Frees a string that may hold a secret (token, form body) after wiping it. NULL is a no-op. */
void kvr_azure_secret_free(char *s);

/* ==== http ==================================================================================== */

typedef struct kvr_http kvr_http;

/* Settings of the engine. kvr_http_config_init fills the defaults noted here. */
typedef struct kvr_http_config {
    long connect_timeout_ms; /* 10000 */
    long timeout_ms;         /* one attempt, headers to last body byte: 60000 */
    int max_transfers;       /* concurrent transfers overall: 256 */
    int max_per_host;        /* concurrent transfers (and connections) per host: 6 */
    int max_attempts;        /* tries per request including the first: 6 */
    long retry_budget_ms;    /* no retry starts later than this after the first try: 120000 */
    long backoff_base_ms;    /* first backoff ceiling, doubled per retry (full jitter): 1000 */
    long backoff_max_ms;     /* ceiling of one backoff: 60000 (a Retry-After is honoured in full
                                as long as it ends within the retry budget) */
    double rate_per_sec;     /* token bucket refill per host: 300 (3,000 per 10 s, under 4,000);
                                after a 429 the host's queue also pauses for the backoff */
    double rate_burst;       /* token bucket size per host: 100 */
    size_t max_body;         /* hard cap of a captured response body: 32 MiB */
    const char *ca_file;     /* extra PEM CA file added to the system bundle; NULL: $KVR_CA_FILE,
                                else $AZSIM_CA, else none. Borrowed during kvr_http_new only. */
    const char *user_agent;  /* NULL: "kvreconcile/VERSION" */
} kvr_http_config;

void kvr_http_config_init(kvr_http_config *cfg);

/*
 * At most n connections kept open, in use or idle; as a transfer ends past that, the connection
 * idle the longest is closed. Otherwise the connections to hosts no longer asked stay open, each
 * about 50 KB of TLS and libcurl state. 0, or more than the engine's own figure (twice
 * max_transfers): that figure.
 */
void kvr_http_keep_conns(kvr_http *h, size_t n);

/*
 * Creates an engine. cfg may be NULL (defaults). Fails with KVR_EIO when the extra CA file cannot
 * be read or holds no certificate, KVR_EHTTP when libcurl cannot be set up.
 */
int kvr_http_new(kvr_http **out, const kvr_http_config *cfg, kvr_error *err);
void kvr_http_free(kvr_http *h);

/* Request flags. */
enum {
    KVR_HTTP_NOT_IDEMPOTENT = 1 << 0, /* retry only when the service surely did nothing (429, 503,
                                         connect failures), never after a 500/502/504 or timeout */
    KVR_HTTP_NO_RETRY = 1 << 1,       /* a single attempt */
    KVR_HTTP_RETRY_NOTFOUND = 1 << 2, /* also retry 404 and 410 (IMDS while it starts up) */
    KVR_HTTP_FAST_CONNECT =
        1 << 3, /* connect within 1 s (probing an endpoint that may be absent) */
    KVR_HTTP_SECRET_WRITE = 1 << 4, /* counts against Key Vault's 300 secret writes per vault
                                       per 10 s: paced to stay under it */
};

/*
 * One request. Everything is borrowed for the duration of the call. `bearer` is the bare token;
 * it is sent as "Authorization: Bearer ..." and only over https. `headers` is a NULL-terminated
 * list of "Name: value" lines (may be NULL). The body may be a secret: it is never copied into
 * messages. Plain http:// is refused except for the IMDS address 169.254.169.254 without bearer.
 * Redirects are never followed.
 */
typedef struct kvr_http_request {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *url;
    const char *const *headers;
    const char *bearer;
    const char *body;
    size_t body_len;
    unsigned flags;
    int host_conns; /* at most this many transfers to its host at once; 0: the engine's limit */
    /* Its host's pace, for a service that publishes its budget (ARM's reads: a bucket of 250,
       refilled at 25 a second): a bucket of host_burst requests, full at the host's first paced
       request, refilled at host_rate a second. 0: the engine's pace (kvr_http_config). */
    double host_rate, host_burst;
    /* A pace its host shares with other hosts, for a service whose budget spans them (Key
       Vault's subscription-wide limit: every vault of a subscription in a region): the bucket
       named `budget`, of budget_burst requests, full at its first request, refilled at
       budget_rate a second. A request goes when both its host's pace and this allow. NULL: no
       shared budget. The name is the caller's, alive while the request is queued. */
    const char *budget;
    double budget_rate, budget_burst;
} kvr_http_request;

/*
 * What came back. `body` is NUL-terminated (len excludes the NUL) and may hold a secret: it is
 * wiped by kvr_http_response_release. Header fields are NULL when absent; only the last response
 * of the last attempt is kept.
 */
typedef struct kvr_http_response {
    long status; /* 0 if no response arrived */
    char *body;
    size_t body_len;
    char *date;                  /* Date */
    char *www_authenticate;      /* WWW-Authenticate */
    char *location;              /* Location */
    char *azure_async_operation; /* Azure-AsyncOperation */
    char *retry_after;           /* Retry-After */
    char *retry_after_ms;        /* x-ms-retry-after-ms */
    char *request_id;            /* x-ms-request-id */
    char *content_type;          /* Content-Type */
    int attempts;                /* tries made */
    double elapsed_ms; /* the last try: from when it was sent (after any pace's wait) to its end */
} kvr_http_response;

void kvr_http_response_init(kvr_http_response *r);
void kvr_http_response_release(kvr_http_response *r);

/*
 * Runs one request to completion, with retries. Returns 0 when a response arrived, whatever its
 * status (a retryable status that persisted is returned as is, with the last response); else
 * KVR_EHTTP / KVR_ETIMEOUT (transport), KVR_ETOOBIG (body over the cap), KVR_EINSECURE (refused
 * URL) or KVR_EINVAL. *out must be initialised; it is filled on success and left released on
 * failure.
 */
int kvr_http_send(kvr_http_response *out, kvr_http *h, const kvr_http_request *req, kvr_error *err);

/*
 * Runs n independent requests concurrently (within the engine's limits) and returns when all have
 * finished. out[i] (initialised by the caller) and codes[i] receive each outcome as for
 * kvr_http_send; errs may be NULL, else errs[i] gets each message. Returns 0, or the first
 * failure code among the requests (the others still ran).
 */
int kvr_http_send_batch(kvr_http_response *out, int *codes, kvr_http *h,
                        const kvr_http_request *reqs, size_t n, kvr_error *errs);

/*
 * Turns a non-2xx response into an error: code from the status (401 KVR_EAUTH, 403
 * KVR_EFORBIDDEN, 404 KVR_ENOTFOUND, 409 KVR_ECONFLICT, 429 KVR_ETHROTTLED, other KVR_EAZURE)
 * and a message "OP 'OBJECT': http STATUS CODE[/INNER]: MESSAGE (request id ID)". `op` says what
 * was attempted ("get secret"), `object` may be NULL. Request bodies and tokens never appear.
 * Returns the code.
 */
int kvr_http_error(kvr_error *err, const kvr_http_response *resp, const char *op,
                   const char *object);

/* Counters since kvr_http_new, for summaries and for tests of keep-alive and retries. */
typedef struct kvr_http_stats {
    uint64_t requests;    /* requests finished, successfully or not */
    uint64_t attempts;    /* transfers made, retries included */
    uint64_t retries;     /* attempts after a request's first */
    uint64_t throttled;   /* 429 responses received */
    uint64_t connections; /* new connections opened; the other attempts reused a kept-alive one */
    uint64_t http2;       /* attempts made over HTTP/2 */
} kvr_http_stats;

void kvr_http_get_stats(kvr_http_stats *out, const kvr_http *h);

/* ---- pure helpers (no network; unit-tested) ------------------------------------------------ */

/*
 * The pages of one listing read so far, so that a next link that leads back to one of them (a
 * link to itself, or a longer cycle) ends the listing at once with an error instead of at the
 * page cap. Pages are told apart by a 64-bit hash of their exact URL. Zero-initialise.
 */
typedef struct kvr_http_pages {
    uint64_t *seen;
    size_t n, cap;
} kvr_http_pages;

/*
 * Notes that `url` is about to be read as the next page of the listing `what`. KVR_EPROTO
 * ("WHAT: the next link of page N leads back to page M; the listing was stopped") when it was
 * read before, KVR_ENOMEM; else 0.
 */
int kvr_http_pages_note(kvr_http_pages *p, const char *url, const char *what, kvr_error *err);
void kvr_http_pages_release(kvr_http_pages *p);

/*
 * The wait a throttled or unavailable response asks for, in milliseconds: x-ms-retry-after-ms
 * first, else Retry-After as delta-seconds or as an HTTP-date (measured against `date` from the
 * same response when given, else against `now`). Returns 0 and *out, or KVR_ENOTFOUND when no
 * usable value is present (absent, malformed, negative, in the past counts as 0 ms).
 */
int kvr_http_retry_after_ms(long *out, const char *retry_after, const char *retry_after_ms,
                            const char *date, time_t now);

/*
 * Full-jitter exponential backoff: a value in [0, min(cap_ms, base_ms * 2^retry)] chosen with
 * `rnd` (any 32-bit random number). retry counts from 0 (the wait before the second attempt).
 */
long kvr_http_backoff_ms(int retry, long base_ms, long cap_ms, uint32_t rnd);

/* True for the statuses retried by default: 429, 500, 502, 503, 504. */
bool kvr_http_status_retryable(long status);

/*
 * "scheme://host[:port]" facts about an absolute URL. host_port is the lowercased host with
 * ":port" when the URL names a port. Returns 0, or KVR_EINVAL for a relative or malformed URL.
 */
typedef struct kvr_url_info {
    char scheme[8];
    char host_port[264];
    char host[256];
    int port;           /* as given, else the scheme's default (443, 80) */
    bool explicit_port; /* the URL names the port */
} kvr_url_info;

int kvr_http_url_info(kvr_url_info *out, const char *url, kvr_error *err);

/*
 * application/x-www-form-urlencoded body from name/value pairs ("grant_type",
 * "client_credentials", ..., NULL). Values may be secrets: free *out with kvr_azure_secret_free.
 */
int kvr_http_form_encode(char **out, const char *const *pairs, kvr_error *err);

/*
 * The next page of a list response: "nextLink" (ARM, Key Vault) or "@odata.nextLink" (Graph),
 * returned exactly as given. *out is NULL (and 0 returned) on the last page (absent, null or
 * empty). A link that is not https or whose host or port (":443" is the same as none) differs
 * from `current_url`'s is refused with
 * KVR_EINSECURE (a token must not follow it); a non-string link is KVR_EPROTO. `page` is
 * borrowed.
 */
int kvr_http_next_link(char **out, const char *current_url, const json_t *page, kvr_error *err);

/* An Azure error body, parsed. Fields are empty strings when absent. */
typedef struct kvr_azure_error {
    char code[128];       /* error.code (ARM, Key Vault, Graph) or error (Entra) */
    char inner_code[128]; /* innermost innererror.code (Key Vault); Entra: first error_codes */
    char message[384];    /* error.message or error_description, control characters removed */
} kvr_azure_error;

/*
 * Parses `{"error":{"code","message","innererror":{"code"}}}` (ARM, Key Vault; innererror nests),
 * Graph's `innerError` (which has no code of interest), and Entra's
 * `{"error","error_description","error_codes"}`. Never fails: unparseable, truncated, oversized or
 * wrong-typed input gives empty fields and false.
 */
bool kvr_azure_error_parse(kvr_azure_error *out, const char *body, size_t len);

/* ==== auth ==================================================================================== */

typedef struct kvr_auth kvr_auth;

typedef enum kvr_auth_kind {
    KVR_AUTH_SECRET = 1,      /* client id + client secret */
    KVR_AUTH_CERTIFICATE = 2, /* client id + PEM (key + certificate): signed JWT assertion */
    KVR_AUTH_FEDERATED = 3,   /* client id + file holding an OIDC token (workload identity) */
    KVR_AUTH_MANAGED = 4,     /* managed identity through IMDS */
} kvr_auth_kind;

/*
 * Where credentials come from. kvr_auth_config_from_env reads the Azure SDK variables:
 * AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH,
 * AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, AZURE_ADDITIONALLY_ALLOWED_TENANTS. The
 * pointers borrow the environment (or the caller's strings) until kvr_auth_new returns.
 */
typedef struct kvr_auth_config {
    const char *tenant_id;
    const char *client_id;
    const char *client_secret;
    const char *certificate_path;
    const char *federated_token_file;
    const char *authority_host;     /* NULL: https://login.microsoftonline.com */
    const char *additional_tenants; /* ";"- or ","-separated tenants a challenge may name, or "*" */
} kvr_auth_config;

void kvr_auth_config_from_env(kvr_auth_config *out);

/*
 * Picks the credential as the Azure SDK's environment credential does: tenant + client id with a
 * secret, else a certificate, else a federated token file; with none of them, managed identity
 * (AZURE_CLIENT_ID then selects a user-assigned identity). Checks now that credential files are
 * private (KVR_EINSECURE: "'PATH' is readable by other users (mode 0644); run chmod 600") and that
 * a certificate loads. `http` is borrowed and must outlive the handle.
 */
int kvr_auth_new(kvr_auth **out, kvr_http *http, const kvr_auth_config *cfg, kvr_error *err);
void kvr_auth_free(kvr_auth *a);
kvr_auth_kind kvr_auth_kind_of(const kvr_auth *a);

/*
 * A bearer token for `scope` ("https://vault.azure.net/.default") in `tenant` (NULL: the
 * configured one), from the cache or freshly acquired when absent or within a few minutes of
 * expiry. *out is a copy for the caller, freed with kvr_azure_secret_free. Errors: KVR_EAUTH with
 * the Entra error code and description, or for a tenant other than the credential's that
 * AZURE_ADDITIONALLY_ALLOWED_TENANTS does not allow; KVR_ETHROTTLED / KVR_EAZURE / transport
 * codes as kvr_http_send.
 */
int kvr_auth_token(char **out, kvr_auth *a, const char *tenant, const char *scope, kvr_error *err);

/* Drops a cached token (after the service rejected it). */
void kvr_auth_invalidate(kvr_auth *a, const char *tenant, const char *scope);

/*
 * Sends an ARM or Graph request with a token for `scope`, and once more with a fresh token if the
 * first one is refused with 401. Results as kvr_http_send.
 */
int kvr_auth_send(kvr_http_response *out, kvr_auth *a, const char *scope,
                  const kvr_http_request *req, kvr_error *err);

/*
 * kvr_auth_send for n independent requests to one scope, run concurrently: each request that the
 * service refuses with 401 is sent once more with a fresh token. Results as kvr_http_send_batch.
 */
int kvr_auth_send_batch(kvr_http_response *out, int *codes, kvr_auth *a, const char *scope,
                        const kvr_http_request *reqs, size_t n, kvr_error *errs);

/*
 * Sends Key Vault data-plane requests the way the Azure SDKs do: a vault host seen for the first
 * time gets the request without token (and without body); its 401 challenge names the tenant and
 * scope, which are checked against the vault host and cached per host; the request is then sent
 * with a token, and resent once with a fresh one if a later 401 brings a new challenge or the
 * token was rejected. Results as kvr_http_send_batch; n may be 1.
 */
int kvr_auth_send_kv(kvr_http_response *out, int *codes, kvr_auth *a, const kvr_http_request *reqs,
                     size_t n, kvr_error *errs);

/*
 * Reads every page of a list. GETs first->url (first->headers are sent on every page, e.g.
 * Graph's ConsistencyLevel), collects each page's "value" items and follows nextLink or
 * @odata.nextLink exactly as given (same host only, see kvr_http_next_link) to the last page.
 * `scope` NULL means a Key Vault URL (the challenge flow of kvr_auth_send_kv); otherwise the
 * token scope (ARM, Graph). `what` names the listing in messages ("list secrets of 'kv1'").
 * *out is a new array (the caller's reference). Errors: as kvr_http_error for a page that is not
 * 200, KVR_EPROTO for a page without a "value" array, KVR_ETOOBIG past 10,000 pages or
 * 1,000,000 items; *out stays NULL.
 */
int kvr_auth_list(json_t **out, kvr_auth *a, const char *scope, const kvr_http_request *first,
                  const char *what, kvr_error *err);

/* ---- pure helpers (no network; unit-tested) ------------------------------------------------ */

/* A parsed Key Vault challenge. */
typedef struct kvr_auth_challenge {
    char authority[512];     /* the authorization(_uri) URL as given */
    char tenant[128];        /* its last path segment */
    char scope[512];         /* scope as given, else resource + "/.default" */
    char resource_host[264]; /* host[:port] of the scope/resource URL, lowercased */
} kvr_auth_challenge;

/*
 * Parses `Bearer authorization="https://login.windows.net/TENANT", resource="https://vault..."`
 * (also authorization_uri, scope, unquoted values, extra parameters such as supportspop).
 * KVR_EPROTO for anything else: other schemes, missing parts, oversized values, bad URLs.
 */
int kvr_auth_challenge_parse(kvr_auth_challenge *out, const char *header, kvr_error *err);

/*
 * Whether the challenge may be answered for a request to `request_url`: its host must end with
 * "." + the challenge's resource host (port included when present). KVR_EINSECURE otherwise.
 */
int kvr_auth_challenge_check(const kvr_auth_challenge *c, const char *request_url, kvr_error *err);

/*
 * Reads a credential file (certificate, federated token) after checking through the open
 * descriptor that it is a regular file not readable by group or others, and at most 1 MiB.
 * *out is NUL-terminated; free it with kvr_azure_secret_free.
 */
int kvr_auth_read_private_file(char **out, size_t *out_len, const char *path, kvr_error *err);

/*
 * The client assertion for the certificate credential: a JWT with header
 * {"alg":"PS256","typ":"JWT","x5t#S256":b64url(sha256(cert DER))} and claims aud
 * (AUTHORITY/TENANT/oauth2/v2.0/token), iss = sub = client id, jti (random GUID), nbf = iat = now,
 * exp = now + 300, signed RSA-PSS SHA-256 (salt length 32). `pem` holds the private key (RSA)
 * and the certificate. Free *out with kvr_azure_secret_free.
 */
int kvr_auth_assertion(char **out, const char *pem, size_t pem_len, const char *authority,
                       const char *tenant, const char *client_id, time_t now, kvr_error *err);

/*
 * Parses a token response. Entra: {"access_token","expires_in":number,...}; IMDS (imds = true):
 * every field a string, "expires_in" or "expires_on" in seconds. Sets *out_token (free with
 * kvr_azure_secret_free) and *out_expires (absolute, from `now`). KVR_EPROTO when malformed.
 */
int kvr_auth_parse_token(char **out_token, time_t *out_expires, const char *body, size_t len,
                         bool imds, time_t now, kvr_error *err);

#endif
