/*
 * The one HTTP engine of kvreconcile. Every Azure call (token endpoint, IMDS, ARM, Graph, Key
 * Vault) goes through a queue run on libcurl's multi interface, so that independent reads run
 * concurrently on one thread while the limits the services publish are kept: a cap on transfers
 * overall and per host, a token-bucket rate per host, and retries with full-jitter exponential
 * backoff (or the wait the service asks for) on throttling, 5xx and connection failures, bounded
 * in attempts and total time. Connections are reused (the multi handle's cache; HTTP/2 where
 * libcurl has it). TLS verification cannot be turned off; an extra CA (the simulator's, or a
 * corporate proxy's) is added to the system bundle in memory rather than replacing it. Tokens
 * never travel over plain http and redirects are never followed.
 */
#include "azinternal.h"
#include "kvr/version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define IMDS_HOST "169.254.169.254"
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CA_FILE_MAX (8 * 1024 * 1024)
#define HEADER_VALUE_MAX 8192

/*
 * Key Vault allows 300 secret writes per vault per 10 s, far fewer than its other operations:
 * writes flagged KVR_HTTP_SECRET_WRITE keep to that with a sliding window per host (the start
 * times of the last WRITE_LIMIT writes), plus a margin for the service's clock. Sent faster, they
 * would only come back as 429 and be sent again.
 */
#define WRITE_LIMIT 300
#define WRITE_WINDOW_MS 10250.0

typedef struct host_state {
    char host[264];
    kvr_bucket bucket;
    int inflight;
    double hold_until; /* after a 429, nothing more goes to the host before this */
    kvr_window writes; /* secret writes started */
    bool paced;        /* a request with its own pace (host_rate) has been here */
} host_state;

typedef struct budget_state {
    char *name;
    kvr_bucket bucket; /* full at its first request (budget_burst) */
} budget_state;

#define NO_BUDGET SIZE_MAX

double kvr_window_wait(const kvr_window *w, size_t limit, double span_ms, double now_ms)
{
    double oldest;
    if (!w->starts || w->n < limit)
        return 0;
    oldest = w->starts[w->next];
    return now_ms - oldest < span_ms ? oldest + span_ms - now_ms : 0;
}

void kvr_window_note(kvr_window *w, size_t limit, double now_ms)
{
    if (!w->starts && !(w->starts = calloc(limit, sizeof(*w->starts))))
        return; /* no memory for the window: the 429 path still protects the vault */
    if (w->n < limit)
        w->n++;
    w->starts[w->next] = now_ms;
    w->next = (w->next + 1) % limit;
}

struct kvr_http {
    kvr_http_config cfg;
    CURLM *multi;
    int epfd;        /* the sockets libcurl asked to watch (on_socket) */
    double timer_at; /* when libcurl wants curl_multi_socket_action(TIMEOUT); < 0: never */
    char *ca_blob;
    size_t ca_len;
    X509_STORE *ca_store; /* ca_blob parsed once, when libcurl uses OpenSSL */
    bool http2;
    char user_agent[64];
    host_state *hosts;
    size_t nhosts;
    size_t caphosts;
    kvr_index host_ix; /* hosts by name: a plan talks to one host per vault */
    budget_state *budgets; /* shared paces (kvr_http_request.budget): a run has one or two */
    size_t nbudgets;
    int inflight;
    kvr_http_stats stats;
};

enum { JOB_WAITING, JOB_RUNNING, JOB_DONE, JOB_FREE /* a feed's slot with no request */ };

typedef struct job {
    const kvr_http_request *req;
    kvr_http_response *resp;
    int code;
    kvr_error err;
    CURL *easy;
    struct curl_slist *hdrs;
    kvr_url_info url;
    size_t host;
    size_t budget; /* index in kvr_http.budgets, or NO_BUDGET */
    int state;
    double not_before;
    double started;
    double sent; /* the try in flight: when it was handed to libcurl */
    kvr_sbuf body;
    size_t announced; /* the answer's Content-Length (0: none) */
    bool encoded;     /* it has a Content-Encoding: the length is not the body's */
    bool too_big;
    /* x-ms-ratelimit-remaining-subscription-reads: ARM's read budget left after it; -1: none */
    long reads_left;
    char errbuf[CURL_ERROR_SIZE];
} job;

static double now_ms(void)
{
    return kvr_mono_s() * 1000.0; /* the engine counts in ms */
}

void kvr_http_config_init(kvr_http_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->connect_timeout_ms = 10000;
    cfg->timeout_ms = 60000;
    /* Many transfers, few per host: every service's own bound is the per-host one (a vault,
       ARM, Graph each get at most max_per_host connections, and the per-host rate below), so
       the overall number only matters where a read fans out over many hosts. The 200-vault
       bench estate (tests/bench/RESULTS.md) at 20 ms latency: plan 17 s with 64 transfers,
       12 s with 128, 9 s with 256. Key Vault limits requests per vault, not connections per
       client. prov_read.c's VAULT_CONNS follows this figure. */
    cfg->max_transfers = 256;
    cfg->max_per_host = 6;
    cfg->max_attempts = 6;
    cfg->retry_budget_ms = 120000;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 60000;
    cfg->rate_per_sec = 300.0;
    cfg->rate_burst = 100.0;
    cfg->max_body = 32u * 1024 * 1024;
}

void kvr_http_response_init(kvr_http_response *r)
{
    memset(r, 0, sizeof(*r));
}

static void free_headers(kvr_http_response *r)
{
    char **fields[] = {
        &r->date,        &r->www_authenticate, &r->location,   &r->azure_async_operation,
        &r->retry_after, &r->retry_after_ms,   &r->request_id, &r->content_type};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
}

void kvr_http_response_release(kvr_http_response *r)
{
    if (!r)
        return;
    free_headers(r);
    if (r->body) {
        OPENSSL_cleanse(r->body, r->body_len);
        free(r->body);
    }
    r->body = NULL;
    r->body_len = 0;
    r->status = 0;
}

/*
 * The trust bundle: the system's, plus `extra` (may be NULL) appended. Without an extra file and
 * without a readable system bundle nothing is set and libcurl keeps its defaults.
 */
static int load_ca(kvr_http *h, const char *extra, kvr_error *err)
{
    char *sys = NULL, *add = NULL;
    size_t sys_len = 0, add_len = 0;
    kvr_sbuf b = {0};
    int rc = 0;

    if (extra) {
        kvr_error ferr;
        if ((rc = kvr_file_read(&add, &add_len, extra, CA_FILE_MAX, 0, &ferr)) < 0) {
            rc = rc == KVR_ETOOBIG || rc == KVR_ENOMEM ? rc : KVR_EIO;
            kvr_error_set(err, rc, "cannot read ca file: %s", ferr.message);
            goto done;
        }
        if (!strstr(add, "-----BEGIN CERTIFICATE-----")) {
            rc = kvr_error_set(err, KVR_EIO, "ca file '%s' holds no pem certificate", extra);
            goto done;
        }
    }
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    const char *sys_path = vi->cainfo ? vi->cainfo : SYSTEM_CA_BUNDLE;
    if (kvr_file_read(&sys, &sys_len, sys_path, CA_FILE_MAX, 0, NULL) < 0)
        sys_len = 0; /* no system bundle: the extra CA alone */
    if (sys_len == 0 && !add)
        goto done;
    if ((sys_len &&
         ((rc = kvr_sbuf_add(&b, sys, sys_len)) < 0 || (rc = kvr_sbuf_add(&b, "\n", 1)) < 0)) ||
        (add && (rc = kvr_sbuf_add(&b, add, add_len)) < 0)) {
        kvr_error_set(err, rc, "out of memory");
        goto done;
    }
    h->ca_len = b.len;
    if ((rc = kvr_sbuf_take(&h->ca_blob, &b)) < 0)
        kvr_error_set(err, rc, "out of memory");
done:
    free(sys);
    free(add);
    kvr_sbuf_release(&b);
    return rc;
}

/*
 * libcurl 7.88 parses the trust bundle again for every new connection when it comes as a
 * CAINFO_BLOB (measured: 110-170 ms per connection under ASan, serialising the start of a
 * batch). With the OpenSSL backend the bundle is parsed once per engine into an X509_STORE that
 * every connection's SSL_CTX shares; CAINFO_BLOB remains the way for other TLS backends.
 */
static X509_STORE *build_store(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_STORE *store = X509_STORE_new();
    X509 *x = NULL;
    int added = 0;
    if (!bio || !store)
        goto done;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1)
            added++;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the bundle reads as an error */
done:
    BIO_free(bio);
    if (added == 0) {
        X509_STORE_free(store);
        store = NULL;
    }
    return store;
}

static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *ud)
{
    (void)easy;
    SSL_CTX_set1_cert_store((SSL_CTX *)ssl_ctx, (X509_STORE *)ud);
    return CURLE_OK;
}

/*
 * libcurl's multi_socket interface: it says which sockets to watch and when its next timeout is,
 * and is told which socket is ready. curl_multi_perform and curl_multi_poll instead visit every
 * transfer and poll every socket after each event: with 256 transfers in flight that was a third
 * of the 200-vault plan's CPU (tests/bench/RESULTS.md).
 */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *sockp)
{
    kvr_http *h = ud;
    struct epoll_event ev = {0};
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT or EBADF: already gone */
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.fd = s;
    /* a socket libcurl has not been told is watched (sockp) is added, the others changed: one
       system call each time, not a failed one first (a kept-alive connection is added again for
       each request) */
    int op = sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(h->epfd, op, s, &ev) == 0 ||
        (op == EPOLL_CTL_ADD && errno == EEXIST &&
         epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev) == 0) ||
        (op == EPOLL_CTL_MOD && errno == ENOENT &&
         epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev) == 0)) {
        if (!sockp)
            curl_multi_assign(h->multi, s, h);
        return 0;
    }
    return -1; /* libcurl fails the transfers on this socket */
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud)
{
    kvr_http *h = ud;
    (void)multi;
    h->timer_at = timeout_ms < 0 ? -1 : now_ms() + (double)timeout_ms;
    return 0;
}

int kvr_http_new(kvr_http **out, const kvr_http_config *cfg, kvr_error *err)
{
    kvr_http *h = NULL;
    int rc = 0;
    bool global = false;

    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = kvr_error_set(err, KVR_EHTTP, "cannot initialise libcurl");
        goto done;
    }
    global = true;
    if (!(h = calloc(1, sizeof(*h)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    h->epfd = -1;
    if (cfg)
        h->cfg = *cfg;
    else
        kvr_http_config_init(&h->cfg);
    if (h->cfg.max_transfers < 1)
        h->cfg.max_transfers = 1;
    if (h->cfg.max_per_host < 1)
        h->cfg.max_per_host = 1;
    if (h->cfg.max_attempts < 1)
        h->cfg.max_attempts = 1;
    if (h->cfg.rate_per_sec <= 0)
        h->cfg.rate_per_sec = 300.0;
    if (h->cfg.rate_burst < 1)
        h->cfg.rate_burst = 1;
    if (h->cfg.max_body == 0)
        h->cfg.max_body = 32u * 1024 * 1024;
    if (h->cfg.user_agent)
        snprintf(h->user_agent, sizeof(h->user_agent), "%s", h->cfg.user_agent);
    else
        snprintf(h->user_agent, sizeof(h->user_agent), "kvreconcile/%s", kvr_version());
    h->cfg.user_agent = NULL;

    const char *extra = h->cfg.ca_file;
    if (!extra || !*extra)
        extra = getenv("KVR_CA_FILE");
    if (!extra || !*extra)
        extra = getenv("AZSIM_CA");
    h->cfg.ca_file = NULL;
    if ((rc = load_ca(h, extra && *extra ? extra : NULL, err)) < 0)
        goto done;
    const char *tls = curl_version_info(CURLVERSION_NOW)->ssl_version;
    if (h->ca_blob && tls && strncmp(tls, "OpenSSL/", 8) == 0)
        h->ca_store = build_store(h->ca_blob, h->ca_len);

    h->http2 = (curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2) != 0;
    if (!(h->multi = curl_multi_init())) {
        rc = kvr_error_set(err, KVR_EHTTP, "cannot initialise libcurl");
        goto done;
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->cfg.max_per_host);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->cfg.max_transfers);
    kvr_http_keep_conns(h, 0);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = kvr_error_set(err, KVR_EHTTP, "cannot create an epoll instance: %s", strerror(errno));
        goto done;
    }
    h->timer_at = -1;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *out = h;
    h = NULL;
    global = false;
done:
    if (h) {
        if (h->multi)
            curl_multi_cleanup(h->multi);
        if (h->epfd >= 0)
            close(h->epfd);
        X509_STORE_free(h->ca_store);
        free(h->ca_blob);
        free(h);
    }
    if (global)
        curl_global_cleanup();
    return rc;
}

void kvr_http_keep_conns(kvr_http *h, size_t n)
{
    long cap = (long)h->cfg.max_transfers * 2;
    if (n > 0 && n < (size_t)cap)
        cap = (long)n;
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, cap);
}

void kvr_http_free(kvr_http *h)
{
    if (!h)
        return;
    curl_multi_cleanup(h->multi); /* before the epoll instance: it may still remove sockets */
    close(h->epfd);
    X509_STORE_free(h->ca_store);
    free(h->ca_blob);
    for (size_t i = 0; i < h->nhosts; i++)
        free(h->hosts[i].writes.starts);
    free(h->hosts);
    for (size_t i = 0; i < h->nbudgets; i++)
        free(h->budgets[i].name);
    free(h->budgets);
    kvr_index_release(&h->host_ix);
    free(h);
    curl_global_cleanup();
}

/* ---- per-host state: rate limiter and concurrency ---------------------------------------------
 */

typedef struct host_key {
    const kvr_http *h;
    const char *name;
} host_key;

static bool host_is(const void *ctx, size_t id)
{
    const host_key *k = ctx;
    return strcmp(k->h->hosts[id].host, k->name) == 0;
}

static int host_index(size_t *out, kvr_http *h, const char *host_port)
{
    host_key k = {h, host_port};
    uint64_t hash = kvr_hash_ci(KVR_HASH_SEED, host_port);
    size_t id = kvr_index_first(&h->host_ix, hash, host_is, &k);
    if (id != KVR_INDEX_NONE) {
        *out = id;
        return 0;
    }
    if (kvr_grow((void **)&h->hosts, &h->caphosts, h->nhosts + 1, sizeof(*h->hosts)) < 0 ||
        kvr_index_put(&h->host_ix, hash, h->nhosts) < 0)
        return KVR_ENOMEM;
    host_state *s = &h->hosts[h->nhosts];
    memset(s, 0, sizeof(*s));
    snprintf(s->host, sizeof(s->host), "%s", host_port);
    s->bucket.tokens = h->cfg.rate_burst;
    s->bucket.last_ms = now_ms();
    *out = h->nhosts++;
    return 0;
}

/* The shared budget called `name` (made at its first request, with `burst` requests in it). */
static int budget_index(size_t *out, kvr_http *h, const char *name, double burst)
{
    for (size_t i = 0; i < h->nbudgets; i++)
        if (strcmp(h->budgets[i].name, name) == 0) {
            *out = i;
            return 0;
        }
    budget_state *grown = realloc(h->budgets, (h->nbudgets + 1) * sizeof(*grown));
    if (!grown)
        return KVR_ENOMEM;
    h->budgets = grown;
    budget_state *b = &h->budgets[h->nbudgets];
    if (!(b->name = strdup(name)))
        return KVR_ENOMEM;
    b->bucket.tokens = burst;
    b->bucket.last_ms = now_ms();
    *out = h->nbudgets++;
    return 0;
}

void kvr_bucket_cap(kvr_bucket *b, double left, double now_ms)
{
    if (left < 0)
        left = 0;
    if (b->tokens > left) {
        b->tokens = left;
        b->last_ms = now_ms;
    }
}

double kvr_bucket_take(kvr_bucket *b, double rate_per_sec, double burst, double now_ms)
{
    if (now_ms > b->last_ms)
        b->tokens += (now_ms - b->last_ms) * rate_per_sec / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->last_ms = now_ms;
    /* the tolerance absorbs rounding, so that waiting the returned time always yields a token */
    if (b->tokens >= 1.0 - 1e-6) {
        b->tokens = b->tokens > 1.0 ? b->tokens - 1.0 : 0;
        return 0;
    }
    double wait = (1.0 - b->tokens) * 1000.0 / rate_per_sec;
    return wait < 0.001 ? 0.001 : wait;
}

/* ---- callbacks ---------------------------------------------------------------------------------
 */

/*
 * A body whose length is announced gets its buffer at once, when its first bytes come (every
 * header is in by then): grown by doubling, a 10 MB list (a resource group's role assignments)
 * took 16 MB and, while moving, 24; and every small answer moved four or five times. A length
 * over the cap ends the transfer at once, before any of it is kept: a resource group's role
 * assignments over the cap were received up to the cap, 32 MiB, only to be refused (the
 * 2,000-vault bench estate's plan peaked there). The length of a compressed body is the
 * compressed one: it changes nothing.
 */
static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    job *j = ud;
    if (!j->body.p && j->announced > j->body.max && !j->encoded) {
        j->too_big = true;
        return 0;
    }
    if (!j->body.p && j->announced && !j->encoded)
        (void)kvr_sbuf_reserve(&j->body, j->announced); /* a hint: adding reports what fails */
    int rc = kvr_sbuf_add(&j->body, data, size * n);
    if (rc < 0) {
        j->too_big = rc == KVR_ETOOBIG;
        return 0;
    }
    return size * n;
}

static void keep_header(char **slot, const char *v, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return;
    memcpy(copy, v, n);
    copy[n] = '\0';
    free(*slot);
    *slot = copy;
}

/* A Content-Length of plain digits; anything else (or more than fits): 0, no length. */
static size_t parse_length(const char *v, size_t n)
{
    uint64_t len = 0;
    if (n == 0 || n > 15)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        len = len * 10 + (uint64_t)(v[i] - '0');
    }
    return len > SIZE_MAX ? 0 : (size_t)len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    job *j = ud;
    kvr_http_response *r = j->resp;
    size_t len = size * n;
    static const struct {
        const char *name;
        size_t off;
    } wanted[] = {
        {"date", offsetof(kvr_http_response, date)},
        {"www-authenticate", offsetof(kvr_http_response, www_authenticate)},
        {"location", offsetof(kvr_http_response, location)},
        {"azure-asyncoperation", offsetof(kvr_http_response, azure_async_operation)},
        {"retry-after", offsetof(kvr_http_response, retry_after)},
        {"x-ms-retry-after-ms", offsetof(kvr_http_response, retry_after_ms)},
        {"x-ms-request-id", offsetof(kvr_http_response, request_id)},
        {"content-type", offsetof(kvr_http_response, content_type)},
    };

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        free_headers(r); /* a new response (after 100 Continue, say): forget the last one */
        j->announced = 0;
        j->encoded = false;
        j->reads_left = -1;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - name_len - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' ||
                    v[vlen - 1] == '\t'))
        vlen--;
    if (vlen > HEADER_VALUE_MAX)
        return len;
    if (name_len == 14 && kvr_az_has_iprefix(data, "content-length")) {
        j->announced = parse_length(v, vlen);
        return len;
    }
    if (name_len == 43 && kvr_az_has_iprefix(data, "x-ms-ratelimit-remaining-subscription-reads")) {
        size_t left = parse_length(v, vlen);
        j->reads_left =
            left || (vlen == 1 && v[0] == '0') ? (long)(left > 1000000 ? 1000000 : left) : -1;
        return len;
    }
    if (name_len == 16 && kvr_az_has_iprefix(data, "content-encoding")) {
        j->encoded = !(vlen == 8 && kvr_az_has_iprefix(v, "identity"));
        return len;
    }
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (strlen(wanted[i].name) == name_len && kvr_az_has_iprefix(data, wanted[i].name)) {
            char **slot = (char **)((char *)r + wanted[i].off);
            /* several challenges may come in separate headers: keep the Bearer one */
            if (slot == &r->www_authenticate && *slot && kvr_az_has_iprefix(*slot, "bearer "))
                break;
            keep_header(slot, v, vlen);
            break;
        }
    }
    return len;
}

/* ---- jobs --------------------------------------------------------------------------------------
 */

static bool has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (kvr_az_has_iprefix(headers[i], name) && headers[i][n] == ':')
            return true;
    return false;
}

static bool clean_line(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static bool token_chars_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static int add_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (!n)
        return KVR_ENOMEM;
    *list = n;
    return 0;
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *s = l; s; s = s->next)
        OPENSSL_cleanse(s->data, strlen(s->data));
    curl_slist_free_all(l);
}

/* Validates the request and sets up its easy handle. Fills j->code/j->err on failure. */
static int job_setup(kvr_http *h, job *j)
{
    const kvr_http_request *q = j->req;
    kvr_sbuf auth = {0};
    int rc = 0;
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL};
    bool method_ok = false;

    for (size_t i = 0; q->method && methods[i]; i++)
        method_ok |= strcmp(q->method, methods[i]) == 0;
    if (!method_ok) {
        rc = kvr_error_set(&j->err, KVR_EINVAL, "unsupported http method");
        goto done;
    }
    if ((rc = kvr_http_url_info(&j->url, q->url, &j->err)) < 0)
        goto done;
    bool imds = strcmp(j->url.host, IMDS_HOST) == 0;
    if (strcmp(j->url.scheme, "https") != 0) {
        if (strcmp(j->url.scheme, "http") != 0)
            rc = kvr_error_set(&j->err, KVR_EINSECURE, "refusing url scheme '%s' for '%s'",
                               j->url.scheme, j->url.host_port);
        else if (q->bearer)
            rc =
                kvr_error_set(&j->err, KVR_EINSECURE,
                              "refusing to send a token over plain http to '%s'", j->url.host_port);
        else if (!imds)
            rc = kvr_error_set(&j->err, KVR_EINSECURE,
                               "refusing plain http to '%s' (https is required)", j->url.host_port);
        if (rc < 0)
            goto done;
    }
    for (size_t i = 0; q->headers && q->headers[i]; i++) {
        if (!clean_line(q->headers[i]) || !strchr(q->headers[i], ':')) {
            rc = kvr_error_set(&j->err, KVR_EINVAL, "malformed request header");
            goto done;
        }
        if ((rc = add_line(&j->hdrs, q->headers[i])) < 0) {
            rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (q->bearer) {
        if (!token_chars_ok(q->bearer)) {
            rc = kvr_error_set(&j->err, KVR_EINVAL, "malformed bearer token");
            goto done;
        }
        if ((rc = kvr_sbuf_adds(&auth, "Authorization: Bearer ")) < 0 ||
            (rc = kvr_sbuf_adds(&auth, q->bearer)) < 0 || (rc = add_line(&j->hdrs, auth.p)) < 0) {
            rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (!has_header(q->headers, "Accept") &&
        (rc = add_line(&j->hdrs, "Accept: application/json")) < 0) {
        rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
        goto done;
    }
    if (q->body && !has_header(q->headers, "Content-Type") &&
        (rc = add_line(&j->hdrs, "Content-Type: application/json")) < 0) {
        rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = add_line(&j->hdrs, "Expect:")) < 0) {
        rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = host_index(&j->host, h, j->url.host_port)) < 0 ||
        (q->budget && q->budget_rate > 0 && q->budget_burst >= 1 &&
         (rc = budget_index(&j->budget, h, q->budget, q->budget_burst)) < 0)) {
        rc = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
        goto done;
    }
    rc = 0;
done:
    kvr_sbuf_release(&auth);
    return rc;
}

/*
 * The job's easy handle, made when it first starts rather than with the batch: a batch holds up
 * to a thousand requests and only max_transfers of them run at once.
 */
static int job_easy(kvr_http *h, job *j)
{
    const kvr_http_request *q = j->req;
    bool imds = strcmp(j->url.host, IMDS_HOST) == 0;
    CURL *e;

    if (j->easy)
        return 0;
    if (!(e = j->easy = curl_easy_init()))
        return KVR_ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, q->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP));
#endif
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_store) {
        /* our store replaces libcurl's: do not let it parse the system bundle again */
        curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, h->ca_store);
    } else if (h->ca_blob) {
        struct curl_blob blob = {h->ca_blob, h->ca_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    }
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     h->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (q->flags & KVR_HTTP_FAST_CONNECT) ? 1000L : h->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* libcurl sends a request again, by itself, when a reused connection closes before any
       answer: harmless for a read or a PUT, but a POST that creates something (a key version, a
       client secret) may have been applied before the close, and would be applied twice. Only a
       new connection is free of that retry. */
    if (q->flags & KVR_HTTP_NOT_IDEMPOTENT)
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    /* Each transfer has a receive buffer (16 KB unless told) and, over TLS, an upload buffer that
       each request is copied into (64 KB unless told): at 256 transfers these were 20 MB of the
       200-vault plan's peak. Responses and requests are a few KB (a secret at most 25 KB, a
       list page about 15); larger ones just take more than one piece. 16 KB is libcurl's
       smallest upload buffer. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 8192L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    if (imds)
        curl_easy_setopt(e, CURLOPT_PROXY, ""); /* IMDS must never go through a proxy */
    if (strcmp(q->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(q->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
        if (q->body || strcmp(q->method, "DELETE") != 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(q->body ? q->body_len : 0));
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        }
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    return 0;
}

static void job_cleanup(job *j)
{
    if (j->easy)
        curl_easy_cleanup(j->easy);
    j->easy = NULL;
    wipe_slist(j->hdrs);
    j->hdrs = NULL;
    kvr_sbuf_release(&j->body);
}

static void job_finish(job *j, int code)
{
    j->state = JOB_DONE;
    j->code = code;
    if (code == 0) {
        j->resp->body_len = j->body.len;
        if (kvr_sbuf_take(&j->resp->body, &j->body) < 0) {
            j->resp->body_len = 0;
            j->code = kvr_error_set(&j->err, KVR_ENOMEM, "out of memory");
        }
    }
    if (j->code < 0) {
        int attempts = j->resp->attempts;
        kvr_http_response_release(j->resp);
        j->resp->attempts = attempts;
    } else {
        j->err.code = 0;
        j->err.message[0] = '\0';
    }
    /* Free the easy handle and wipe the headers (the bearer token) as soon as the job is done,
       not when the whole batch ends: a batch holds up to a thousand requests, at most
       max_transfers of them in flight (peak RSS of the 200-vault plan: 117 -> 113 MB). */
    job_cleanup(j);
}

static bool transport_retryable(CURLcode res, bool not_idempotent)
{
    switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return true;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return !not_idempotent;
    default:
        return false;
    }
}

/* Decides what to do after an attempt ended: finish the job or schedule the next attempt. */
static void job_attempt_done(kvr_http *h, job *j, CURLcode res)
{
    const kvr_http_request *q = j->req;
    bool not_idem = (q->flags & KVR_HTTP_NOT_IDEMPOTENT) != 0;
    bool retry = false;
    long wait = -1;
    double now = now_ms();

    long conns = 0, version = 0;
    j->resp->attempts++;
    j->resp->elapsed_ms = now - j->sent;
    h->stats.attempts++;
    if (j->resp->attempts > 1)
        h->stats.retries++;
    if (curl_easy_getinfo(j->easy, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
        h->stats.connections += (uint64_t)conns;
    if (curl_easy_getinfo(j->easy, CURLINFO_HTTP_VERSION, &version) == CURLE_OK &&
        version == CURL_HTTP_VERSION_2_0)
        h->stats.http2++;
    if (res == CURLE_OK) {
        long status = 0;
        host_state *hs = &h->hosts[j->host];
        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
        j->resp->status = status;
        /* A paced host says what is left of its budget: never count on more (another client,
           or this one's last run, may have spent it). The requests still out may be counted
           there or not yet: count them as spent. */
        if (hs->paced && j->reads_left >= 0)
            kvr_bucket_cap(&hs->bucket, (double)j->reads_left - (double)hs->inflight, now);
        if (status == 429)
            h->stats.throttled++;
        if (not_idem)
            retry = status == 429 || status == 503;
        else
            retry = kvr_http_status_retryable(status);
        if ((q->flags & KVR_HTTP_RETRY_NOTFOUND) && (status == 404 || status == 410))
            retry = true;
        if (retry && kvr_http_retry_after_ms(&wait, j->resp->retry_after, j->resp->retry_after_ms,
                                             j->resp->date, time(NULL)) < 0)
            wait = -1;
    } else if (res == CURLE_WRITE_ERROR && j->too_big) {
        /* refused on its announced length (on_body), or once it passed the cap */
        if (j->announced > h->cfg.max_body && !j->encoded)
            kvr_error_set(&j->err, KVR_ETOOBIG,
                          "response from '%s' is too large (%zu bytes announced, over %zu)",
                          j->url.host_port, j->announced, h->cfg.max_body);
        else
            kvr_error_set(&j->err, KVR_ETOOBIG, "response from '%s' is too large (over %zu bytes)",
                          j->url.host_port, h->cfg.max_body);
        job_finish(j, KVR_ETOOBIG);
        return;
    } else {
        retry = transport_retryable(res, not_idem);
    }
    if (retry && !(q->flags & KVR_HTTP_NO_RETRY) && j->resp->attempts < h->cfg.max_attempts) {
        if (wait < 0)
            wait = kvr_http_backoff_ms(j->resp->attempts - 1, h->cfg.backoff_base_ms,
                                       h->cfg.backoff_max_ms, kvr_az_random32());
        /* a Retry-After longer than the budget is honoured by giving up, never by retrying early */
        if (now + (double)wait - j->started <= (double)h->cfg.retry_budget_ms) {
            j->state = JOB_WAITING;
            j->not_before = now + (double)wait;
            /* throttled: the host's other queued requests would only be throttled too */
            host_state *hs = &h->hosts[j->host];
            if (j->resp->status == 429 && hs->hold_until < j->not_before)
                hs->hold_until = j->not_before;
            kvr_sbuf_release(&j->body);
            return;
        }
    }
    if (res == CURLE_OK) {
        job_finish(j, 0);
    } else {
        const char *why = j->errbuf[0] ? j->errbuf : curl_easy_strerror(res);
        char clean[CURL_ERROR_SIZE];
        kvr_az_copy_clean(clean, sizeof(clean), why);
        if (clean[0] >= 'A' && clean[0] <= 'Z' && !(clean[1] >= 'A' && clean[1] <= 'Z'))
            clean[0] = (char)(clean[0] - 'A' + 'a'); /* house style: lowercase messages */
        job_finish(j, kvr_error_set(&j->err,
                                    res == CURLE_OPERATION_TIMEDOUT ? KVR_ETIMEOUT : KVR_EHTTP,
                                    "%s '%s': %s (after %d attempt%s)", q->method, j->url.host_port,
                                    clean, j->resp->attempts, j->resp->attempts == 1 ? "" : "s"));
    }
}

static int job_start(kvr_http *h, job *j)
{
    free_headers(j->resp);
    j->resp->status = 0;
    kvr_sbuf_release(&j->body);
    j->body.max = h->cfg.max_body;
    j->announced = 0;
    j->encoded = false;
    j->too_big = false;
    j->reads_left = -1;
    j->errbuf[0] = '\0';
    if (job_easy(h, j) < 0 || curl_multi_add_handle(h->multi, j->easy) != CURLM_OK)
        return KVR_EHTTP;
    j->state = JOB_RUNNING;
    j->sent = now_ms();
    h->inflight++;
    h->hosts[j->host].inflight++;
    return 0;
}

/*
 * One turn of the event loop over jobs[0..n): starts the waiting jobs that may start, then either
 * takes the transfers that ended or waits (at most a second) for the sockets and timers. Returns
 * how many jobs were open (waiting or running) at the start of the turn; 0 means nothing to do.
 * A turn may end jobs that are not in jobs[]: a nested run (a token fetched while a feed runs,
 * kvr_http_run_feed) takes every transfer that ends, and the jobs it ends are left JOB_DONE for
 * their own loop to find.
 */
static size_t run_step(kvr_http *h, job *jobs, size_t n)
{
    double now = now_ms();
    double next_wake = -1;
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        job *j = &jobs[i];
        if (j->state == JOB_DONE || j->state == JOB_FREE)
            continue;
        open++;
        if (j->state != JOB_WAITING)
            continue;
        host_state *hs = &h->hosts[j->host];
        if (j->not_before < hs->hold_until)
            j->not_before = hs->hold_until;
        int per_host = j->req->host_conns > 0 && j->req->host_conns < h->cfg.max_per_host
                           ? j->req->host_conns
                           : h->cfg.max_per_host;
        if (j->not_before <= now && h->inflight < h->cfg.max_transfers &&
            hs->inflight < per_host) {
            bool write = j->req->flags & KVR_HTTP_SECRET_WRITE;
            double wait = write ? kvr_window_wait(&hs->writes, WRITE_LIMIT, WRITE_WINDOW_MS, now) : 0;
            double rate = h->cfg.rate_per_sec, burst = h->cfg.rate_burst;
            if (j->req->host_rate > 0 && j->req->host_burst >= 1) {
                rate = j->req->host_rate;
                burst = j->req->host_burst;
                if (!hs->paced) { /* the service's budget, as it is when nothing has used it */
                    hs->paced = true;
                    hs->bucket.tokens = burst;
                    hs->bucket.last_ms = now;
                }
            }
            if (wait <= 0)
                wait = kvr_bucket_take(&hs->bucket, rate, burst, now);
            if (wait <= 0 && j->budget != NO_BUDGET) {
                double shared = kvr_bucket_take(&h->budgets[j->budget].bucket, j->req->budget_rate,
                                                j->req->budget_burst, now);
                if (shared > 0) { /* it does not go: its host's token back */
                    hs->bucket.tokens += 1.0;
                    wait = shared;
                }
            }
            if (wait <= 0 && write)
                kvr_window_note(&hs->writes, WRITE_LIMIT, now);
            if (wait <= 0) {
                if (job_start(h, j) < 0)
                    job_finish(j, kvr_error_set(&j->err, KVR_EHTTP, "cannot start a transfer"));
                continue;
            }
            j->not_before = now + wait;
        }
        if (j->not_before > now && (next_wake < 0 || j->not_before < next_wake))
            next_wake = j->not_before;
    }
    if (open == 0)
        return 0;
    int running = 0;
    if (h->timer_at >= 0 && h->timer_at <= now_ms()) {
        h->timer_at = -1;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    CURLMsg *msg;
    int left;
    bool finished = false;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURL *e = msg->easy_handle;
        CURLcode res = msg->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        job *j = (job *)(void *)priv;
        curl_multi_remove_handle(h->multi, e);
        h->inflight--;
        h->hosts[j->host].inflight--;
        job_attempt_done(h, j, res);
        finished = true;
    }
    if (finished)
        return open; /* a slot is free or a job is done: schedule again before waiting */
    if (h->timer_at >= 0 && (next_wake < 0 || h->timer_at < next_wake))
        next_wake = h->timer_at;
    int timeout = 1000;
    if (next_wake >= 0) {
        double d = next_wake - now_ms();
        timeout = d <= 0 ? 0 : d > 1000 ? 1000 : (int)d + 1;
    }
    struct epoll_event ev[64];
    int nev = epoll_wait(h->epfd, ev, 64, timeout);
    for (int k = 0; k < nev; k++) {
        int flags = ((ev[k].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                    ((ev[k].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                    ((ev[k].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(h->multi, ev[k].data.fd, flags, &running);
    }
    return open;
}

static void run(kvr_http *h, job *jobs, size_t n)
{
    while (run_step(h, jobs, n) > 0)
        ;
}

/* Puts a request in a job (the caller's response, initialised), ready for run_step. */
static void job_init(kvr_http *h, job *j, const kvr_http_request *req, kvr_http_response *resp,
                     double now)
{
    memset(j, 0, sizeof(*j));
    j->budget = NO_BUDGET;
    j->req = req;
    j->resp = resp;
    kvr_http_response_release(j->resp);
    j->resp->attempts = 0;
    j->started = j->not_before = now;
    j->state = JOB_WAITING;
    if (job_setup(h, j) < 0)
        job_finish(j, j->err.code);
}

int kvr_http_send_batch(kvr_http_response *out, int *codes, kvr_http *h,
                        const kvr_http_request *reqs, size_t n, kvr_error *errs)
{
    job *jobs = NULL;
    int rc = 0;

    if (n == 0)
        return 0;
    if (!(jobs = calloc(n, sizeof(*jobs)))) {
        for (size_t i = 0; i < n; i++) {
            codes[i] = KVR_ENOMEM;
            if (errs)
                kvr_error_set(&errs[i], KVR_ENOMEM, "out of memory");
        }
        return KVR_ENOMEM;
    }
    double now = now_ms();
    for (size_t i = 0; i < n; i++)
        job_init(h, &jobs[i], &reqs[i], &out[i], now);
    run(h, jobs, n);
    h->stats.requests += n;
    for (size_t i = 0; i < n; i++) {
        job_cleanup(&jobs[i]);
        codes[i] = jobs[i].code;
        if (errs)
            errs[i] = jobs[i].err;
        if (jobs[i].code < 0 && rc == 0)
            rc = jobs[i].code;
    }
    free(jobs);
    return rc;
}

int kvr_http_run_feed(kvr_http *h, const kvr_http_feed *feed, size_t slots)
{
    job *jobs = calloc(slots, sizeof(*jobs));
    kvr_http_response *resp = calloc(slots, sizeof(*resp));
    size_t open;

    if (!jobs || !resp) {
        free(jobs);
        free(resp);
        return KVR_ENOMEM;
    }
    for (size_t i = 0; i < slots; i++)
        jobs[i].state = JOB_FREE;
    for (;;) {
        open = 0;
        /* the answers first: what they queue may go at once, in their slots */
        for (size_t i = 0; i < slots; i++) {
            job *j = &jobs[i];
            if (j->state == JOB_DONE) {
                const kvr_http_request *q = j->req;
                kvr_error e = j->err;
                job_cleanup(j);
                j->state = JOB_FREE;
                h->stats.requests++;
                feed->done(feed->ud, q, &resp[i], j->code, &e);
                kvr_http_response_release(&resp[i]);
            }
        }
        for (size_t i = 0; i < slots; i++) {
            job *j = &jobs[i];
            if (j->state == JOB_FREE) {
                const kvr_http_request *q = feed->next(feed->ud);
                if (!q)
                    break; /* nothing now: asked again after the next answer */
                job_init(h, j, q, &resp[i], now_ms()); /* after the handlers' time */
            }
        }
        for (size_t i = 0; i < slots; i++)
            open += jobs[i].state != JOB_FREE;
        if (open == 0)
            break;
        run_step(h, jobs, slots); /* returns at once when what is open is only done */
    }
    for (size_t i = 0; i < slots; i++)
        job_cleanup(&jobs[i]);
    free(jobs);
    free(resp);
    return 0;
}

void kvr_http_get_stats(kvr_http_stats *out, const kvr_http *h)
{
    *out = h->stats;
}

int kvr_http_send(kvr_http_response *out, kvr_http *h, const kvr_http_request *req, kvr_error *err)
{
    int code = 0;
    kvr_error e = {0};
    int rc = kvr_http_send_batch(out, &code, h, req, 1, &e);
    if (rc < 0 && err)
        *err = e;
    return rc;
}
