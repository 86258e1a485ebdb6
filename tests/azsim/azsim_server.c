/*
 * azsim_server.c - the HTTPS front door of azsim. One libmicrohttpd daemon on 127.0.0.1 serves
 * every simulated Azure host; like Azure's DNS, the Host header decides which service answers
 * (login., management., graph., NAME.vault., azsim.). This file collects request bodies, applies
 * the configured latency and injected faults, takes the state lock around the handler, saves the
 * state after an acknowledged mutation (before replying), counts requests per operation for
 * /stats, and turns the handler's reply into an HTTP response whose Date header comes from the
 * simulated clock, so clients that measure time with the service's Date can be tested.
 */
#include "azsim.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#define MAX_BODY (4u * 1024u * 1024u)

/* Where a request stands; a request that waits is suspended and the handler called again. */
enum { PH_NEW = 0, PH_PICK, PH_RUN, PH_HELD };

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    int too_large;
    int phase;
    int fault;   /* the fault picked for it, -1 none */
    int hold_id; /* PH_HELD: the test's hold that holds its answer */
    int drop;    /* no answer: the connection closes */
    char reqid[AZSIM_GUID_LEN + 1];
    /* the answer, computed before a hold holds it back */
    unsigned status;
    char *resp_body;
    size_t resp_len;
    const char *content_type;
    json_t *resp_headers;
    char date[64];
} conn_ctx;

/* ---- waiting without a thread ------------------------------------------------------------ */

/*
 * The configured latency, a stalled answer and a test's hold all make a request wait. A few
 * threads serve every connection (epoll), so a request never sleeps on one: its connection is
 * suspended, and the waker thread resumes it when its time comes (a min-heap by due time) or,
 * for a hold, when the test releases it. Lock order: the state lock, then wait_lock.
 */
typedef struct waiter {
    int64_t due; /* CLOCK_MONOTONIC, ms */
    int hold_id;
    struct MHD_Connection *conn;
} waiter;

static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond; /* on CLOCK_MONOTONIC, made by azsim_serve */
static waiter *waiters;
static size_t nwaiters, waiters_cap;
static int waiting_stopped;
static pthread_t waker_thread;
/* AZSIM_TEST_HOLD_PARK_DELAY_MS (tests only): a held request sleeps this long between its hold
   taking it and its connection being parked, so a test can release the hold in that window */
static int park_delay_ms;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void heap_swap(size_t a, size_t b)
{
    waiter t = waiters[a];
    waiters[a] = waiters[b];
    waiters[b] = t;
}

static void heap_up(size_t i)
{
    while (i > 0 && waiters[(i - 1) / 2].due > waiters[i].due) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < nwaiters && waiters[l].due < waiters[m].due)
            m = l;
        if (l + 1 < nwaiters && waiters[l + 1].due < waiters[m].due)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

/* Suspends conn for ms (or until hold_id is released). 0: not suspended (azsim is stopping, or
   no memory), and the caller goes on at once. */
static int wait_for(struct MHD_Connection *conn, int ms, int hold_id)
{
    int suspended = 0;
    pthread_mutex_lock(&wait_lock);
    if (!waiting_stopped && nwaiters == waiters_cap) {
        size_t cap = waiters_cap ? waiters_cap * 2 : 64;
        waiter *w = realloc(waiters, cap * sizeof(*w));
        if (w) {
            waiters = w;
            waiters_cap = cap;
        }
    }
    if (!waiting_stopped && nwaiters < waiters_cap) {
        MHD_suspend_connection(conn);
        waiters[nwaiters] = (waiter){mono_ms() + ms, hold_id, conn};
        heap_up(nwaiters++);
        /* the waker sleeps until the first due time: woken only if this one comes first (with
           a fixed latency it never does, and each wake-up was a context switch per request) */
        if (waiters[0].conn == conn)
            pthread_cond_signal(&wait_cond);
        suspended = 1;
    }
    pthread_mutex_unlock(&wait_lock);
    return suspended;
}

void azsim_wake_held(int id)
{
    pthread_mutex_lock(&wait_lock);
    for (size_t i = 0; i < nwaiters; i++)
        if (waiters[i].hold_id == id) {
            waiters[i].due = 0;
            heap_up(i);
            pthread_cond_signal(&wait_cond);
        }
    pthread_mutex_unlock(&wait_lock);
}

static void *waker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wait_lock);
    while (!waiting_stopped) {
        if (nwaiters == 0) {
            pthread_cond_wait(&wait_cond, &wait_lock);
            continue;
        }
        int64_t now = mono_ms();
        if (waiters[0].due <= now) {
            MHD_resume_connection(waiters[0].conn);
            waiters[0] = waiters[--nwaiters];
            heap_down(0);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ms = waiters[0].due - now;
        until.tv_sec += (time_t)(ms / 1000);
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wait_cond, &wait_lock, &until);
    }
    /* stopping: every suspended connection must be resumed before the daemon stops */
    for (size_t i = 0; i < nwaiters; i++)
        MHD_resume_connection(waiters[i].conn);
    nwaiters = 0;
    pthread_mutex_unlock(&wait_lock);
    return NULL;
}

const char *azsim_query(azsim_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *azsim_header(azsim_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void azsim_set_header(azsim_req *r, const char *name, const char *value)
{
    if (!r->resp_headers)
        r->resp_headers = json_object();
    if (r->resp_headers)
        json_object_set_new(r->resp_headers, name, json_string(value));
}

/* A reply's body may carry a secret value: wiped before it is freed (azsim_secret_free), also
   when MHD is done with it (its free callback takes a void *). */
static void body_free(void *p)
{
    azsim_secret_free(p);
}

int azsim_reply_json(azsim_req *r, unsigned status, json_t *body)
{
    azsim_secret_free(r->resp_body);
    r->resp_body = NULL;
    r->resp_len = 0;
    r->status = status;
    r->content_type = "application/json; charset=utf-8";
    if (body) {
        r->resp_body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(body);
        if (!r->resp_body) {
            r->status = 500;
            return AZSIM_ENOMEM;
        }
        r->resp_len = strlen(r->resp_body);
    }
    return AZSIM_OK;
}

int azsim_reply_text(azsim_req *r, unsigned status, azsim_text *t)
{
    azsim_secret_free(r->resp_body);
    r->resp_body = NULL;
    r->resp_len = 0;
    r->content_type = "application/json; charset=utf-8";
    if (t->failed || !t->p) {
        azsim_text_release(t);
        r->status = 500;
        return AZSIM_ENOMEM;
    }
    r->status = status;
    r->resp_body = t->p;
    r->resp_len = t->len;
    memset(t, 0, sizeof(*t));
    return AZSIM_OK;
}

int azsim_reply_empty(azsim_req *r, unsigned status)
{
    azsim_secret_free(r->resp_body);
    r->resp_body = NULL;
    r->resp_len = 0;
    r->status = status;
    r->content_type = NULL;
    return AZSIM_OK;
}

json_t *azsim_body_json(azsim_req *r)
{
    if (!r->body || r->body_len == 0)
        return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

char *azsim_base_url(azsim_req *r, const char *host)
{
    return azsim_printf("https://%s:%d", host, r->st->port);
}

static void http_date(char out[64], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    gmtime_r(&tt, &tm);
    snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int split_path(azsim_req *r, char *path)
{
    size_t n = 0;
    char *p = path;
    while (*p == '/')
        p++;
    r->segs = NULL;
    r->nsegs = 0;
    if (*p == '\0')
        return AZSIM_OK;
    for (char *q = p; *q; q++)
        if (*q == '/')
            n++;
    r->segs = calloc(n + 1, sizeof(*r->segs));
    if (!r->segs)
        return AZSIM_ENOMEM;
    for (;;) {
        char *slash = strchr(p, '/');
        r->segs[r->nsegs++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return AZSIM_OK;
}

static void count_op(azsim_state *st, const char *op)
{
    json_t *v = json_object_get(st->stats, op);
    if (v)
        json_integer_set(v, json_integer_value(v) + 1);
    else
        json_object_set_new(st->stats, op, json_integer(1));
}

/* Is host a vault's (NAME.vault.localhost)? 1 with NAME in name, 0 if it is not, -1 if it has
   the suffix but no valid NAME (too long, or more labels: no such DNS name). */
static int vault_host(const char *host, char name[64])
{
    static const char suffix[] = ".vault.localhost";
    size_t hl = strlen(host), sl = sizeof(suffix) - 1;
    if (hl <= sl || strcmp(host + hl - sl, suffix) != 0)
        return 0;
    if (hl - sl >= 64 || memchr(host, '.', hl - sl))
        return -1;
    memcpy(name, host, hl - sl);
    name[hl - sl] = '\0';
    return 1;
}

static int dispatch(azsim_req *r)
{
    const char *h = r->host;
    char name[64];
    int vault;

    if (strcmp(h, "login.localhost") == 0)
        return azsim_login_handle(r);
    if (strcmp(h, "management.localhost") == 0)
        return azsim_arm_handle(r);
    if (strcmp(h, "graph.localhost") == 0)
        return azsim_graph_handle(r);
    if (strcmp(h, "profiles.localhost") == 0)
        return azsim_profiles_handle(r);
    if (strcmp(h, "azsim.localhost") == 0)
        return azsim_admin_handle(r);
    if ((vault = vault_host(h, name)) < 0) {
        r->drop = 1; /* no such DNS name */
        return AZSIM_OK;
    }
    if (vault > 0)
        return azsim_kv_handle(r, name);
    r->op = "unknown-host";
    return azsim_reply_json(r, 404,
                            json_pack("{s:{s:s,s:s}}", "error", "code", "NotFound", "message",
                                      "azsim does not serve this host"));
}

/* requests that may change the saved state; token requests only read the directory */
static int mutating(const azsim_req *r)
{
    const char *m = r->method;
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0)
        return 0;
    if (strcmp(r->host, "login.localhost") == 0)
        return 0;
    if (strcmp(r->op ? r->op : "", "arm.resourceGraph.resources") == 0 ||
        strcmp(r->op ? r->op : "", "arm.vaults.checkNameAvailability") == 0)
        return 0; /* POSTs that only read: a Resource Graph query saved the whole state */
    if (r->nsegs > 0) { /* Key Vault's cryptographic operations are POSTs that change nothing */
        static const char *const ops[] = {"wrapkey", "unwrapkey", "encrypt", "decrypt"};
        const char *last = r->segs[r->nsegs - 1];
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            if (strcmp(last, ops[i]) == 0)
                return 0;
    }
    return 1;
}

/* The vault a Key Vault data-plane request went to (NAME.vault.localhost), or NULL. */
static azsim_vault *request_vault(const azsim_req *r)
{
    char name[64];
    return vault_host(r->host, name) > 0 ? azsim_vault_find(r->st, name) : NULL;
}

/* Writes that can neither delete, restore nor give a rotation policy to anything the sweep
   looks after (seeding 100,000 role assignments swept the whole state after each). */
static int schedules_nothing(const azsim_req *r)
{
    static const char *const ops[] = {
        "arm.roleAssignments.put",          "arm.roleAssignments.delete",
        "arm.resourceGroups.put",           "graph.applications.create",
        "graph.applications.update",        "graph.applications.addPassword",
        "graph.applications.removePassword", "graph.servicePrincipals.create",
        "graph.servicePrincipals.update",   "graph.servicePrincipals.delete",
    };
    for (size_t i = 0; r->op && i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(r->op, ops[i]) == 0)
            return 1;
    return 0;
}

/* The answer, as computed or held: queued on the connection, or the connection closed. */
static enum MHD_Result respond(struct MHD_Connection *conn, conn_ctx *cc)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    if (cc->drop)
        return MHD_NO;
    if (cc->resp_body) { /* MHD frees it, wiped, when the response is done */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(cc->resp_len, cc->resp_body,
                                                                      body_free, cc->resp_body);
        if (resp)
            cc->resp_body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Date", cc->date);
    MHD_add_response_header(resp, "x-ms-request-id", cc->reqid);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    if (cc->content_type)
        MHD_add_response_header(resp, "Content-Type", cc->content_type);
    if (cc->resp_headers) {
        const char *k;
        json_t *v;
        json_object_foreach(cc->resp_headers, k, v)
            MHD_add_response_header(resp, k, json_string_value(v));
    }
    ret = MHD_queue_response(conn, cc->status ? cc->status : 500, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Picks a fault, carries the request out under the state lock, saves what it changed and keeps
   the answer in cc. 1: the request stalls first (cc->phase is PH_RUN; call again after). */
static int carry_out(azsim_state *st, conn_ctx *cc, azsim_req *r)
{
    pthread_mutex_lock(&st->lock);
    if (cc->phase == PH_PICK) {
        st->total++;
        azsim_guid(st, cc->reqid);
        cc->fault = strcmp(r->host, "azsim.localhost") == 0 ? -1 : azsim_fault_pick(st);
        cc->phase = PH_RUN;
        if (cc->fault == AZSIM_FAULT_STALL) {
            /* waits without the lock, so the other connections go on being served */
            pthread_mutex_unlock(&st->lock);
            return 1;
        }
    }
    /* purges and auto-rotations: the sweep walks every object, so it runs only when one is due
       or a mutation may have scheduled one (a whole-state walk per request made azsim's rate
       fall with the size of the estate) */
    if (st->sweep_due == 0 || azsim_now(st) >= st->sweep_due) {
        azsim_kv_sweep(st);
        st->gen++;
    } else if (st->sweep_dirty) {
        azsim_kv_sweep_dirty(st);
        st->gen++;
    }
    azsim_consumer_tick(st);
    int fault = cc->fault;
    if (fault == AZSIM_FAULT_RESET) {
        r->op = "fault.reset";
        r->drop = 1;
    } else if (fault == AZSIM_FAULT_500 || fault == AZSIM_FAULT_503 || fault == AZSIM_FAULT_429) {
        azsim_fault_reply(r, fault); /* before the handler: the mutation does not happen */
    } else if (cc->too_large) {
        r->op = "too-large";
        azsim_reply_json(r, 413,
                         json_pack("{s:{s:s,s:s}}", "error", "code", "RequestEntityTooLarge",
                                   "message", "request body too large"));
    } else if (dispatch(r) != AZSIM_OK && r->status == 0) {
        azsim_reply_json(r, 500,
                         json_pack("{s:{s:s,s:s}}", "error", "code", "InternalError", "message",
                                   "azsim internal error"));
    }
    /* durable before it is acknowledged: a kill -9 after the reply loses nothing (unless
     * --durable off asked to save only on a clean shutdown) */
    if (!r->drop && r->status >= 200 && r->status < 300 && mutating(r) && !st->lazy_save &&
        azsim_state_save(st) != AZSIM_OK) {
        json_decref(r->resp_headers);
        r->resp_headers = NULL;
        azsim_reply_json(r, 500,
                         json_pack("{s:{s:s,s:s}}", "error", "code", "InternalError", "message",
                                   "azsim could not save its state"));
    }
    if (mutating(r)) {
        /* it may have deleted, restored or given a rotation policy: in its vault only, for a Key
           Vault request, else anywhere */
        azsim_vault *v = request_vault(r);
        if (v) {
            v->sweep_dirty = 1;
            st->sweep_dirty = 1;
        } else if (!schedules_nothing(r)) {
            st->sweep_due = 0;
        }
        st->gen++;
    }
    if (fault == AZSIM_FAULT_RESET_AFTER_COMMIT)
        r->drop = 1; /* applied and saved, but the client never hears of it */
    count_op(st, r->op ? r->op : "other");
    http_date(cc->date, azsim_now(st));
    pthread_mutex_unlock(&st->lock);
    cc->status = r->status;
    cc->resp_body = r->resp_body;
    cc->resp_len = r->resp_len;
    cc->content_type = r->content_type;
    cc->resp_headers = r->resp_headers;
    r->resp_body = NULL;
    r->resp_headers = NULL;
    return 0;
}

/* Collects the body, waits the latency, carries the request out, waits out a hold, answers; each
   wait suspends the connection and MHD calls this again when it is resumed. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    azsim_state *st = cls;
    conn_ctx *cc = *con_cls;
    azsim_req r;
    char *path = NULL;
    enum MHD_Result ret = MHD_NO;

    (void)version;
    if (!cc) {
        cc = calloc(1, sizeof(*cc));
        if (!cc)
            return MHD_NO;
        cc->fault = -1;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cc->too_large || cc->len + n > MAX_BODY) {
            cc->too_large = 1;
            return MHD_YES;
        }
        if (cc->len + n + 1 > cc->cap) {
            size_t cap = (cc->len + n + 1) * 2;
            char *b = realloc(cc->body, cap);
            if (!b)
                return MHD_NO;
            cc->body = b;
            cc->cap = cap;
        }
        memcpy(cc->body + cc->len, upload_data, n);
        cc->len += n;
        cc->body[cc->len] = '\0';
        return MHD_YES;
    }
    if (cc->phase == PH_HELD) {
        azsim_hold_end(st, cc->hold_id);
        return respond(conn, cc);
    }
    if (cc->phase == PH_NEW) {
        cc->phase = PH_PICK;
        if (st->latency_ms > 0 && wait_for(conn, st->latency_ms, 0))
            return MHD_YES;
    }

    memset(&r, 0, sizeof(r));
    r.st = st;
    r.conn = conn;
    r.method = method;
    r.path = url;
    r.body = cc->body;
    r.body_len = cc->len;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (host) {
        size_t i = 0;
        for (; host[i] && host[i] != ':' && i + 1 < sizeof(r.host); i++)
            r.host[i] = (char)tolower((unsigned char)host[i]);
        r.host[i] = '\0';
        if (i > 0 && r.host[i - 1] == '.')
            r.host[i - 1] = '\0';
    }
    path = strdup(url);
    if (!path || split_path(&r, path) != AZSIM_OK)
        goto done;
    if (carry_out(st, cc, &r)) {
        if (wait_for(conn, st->stall_ms, 0)) {
            ret = MHD_YES;
            goto done;
        }
        carry_out(st, cc, &r);
    }
    /* a test's hold (azsim_admin.c): the request is done, its answer waits for the release */
    cc->hold_id = azsim_hold_point(&r);
    cc->drop = r.drop;
    if (cc->hold_id > 0) {
        cc->phase = PH_HELD;
        if (park_delay_ms > 0) { /* test hook: widen the window between holding and parking */
            struct timespec ts = {park_delay_ms / 1000, (long)(park_delay_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
        if (wait_for(conn, azsim_hold_wait_ms(), cc->hold_id)) {
            /* released before it was parked: the release found no one to wake */
            azsim_hold_parked(st, cc->hold_id);
            ret = MHD_YES;
            goto done;
        }
        azsim_hold_end(st, cc->hold_id);
    }
    ret = respond(conn, cc);
done:
    azsim_secret_free(r.resp_body);
    json_decref(r.resp_headers);
    free(r.segs);
    free(path);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    conn_ctx *cc = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (!cc)
        return;
    if (cc->body) {
        OPENSSL_cleanse(cc->body, cc->cap);
        free(cc->body);
    }
    azsim_secret_free(cc->resp_body);
    json_decref(cc->resp_headers);
    free(cc);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (getenv("AZSIM_DEBUG"))
        vfprintf(stderr, fmt, ap);
}

static volatile sig_atomic_t stop_requested;
static sigset_t saved_mask;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/*
 * Called first thing in main: SIGTERM and SIGINT are blocked from here on (every thread
 * inherits the mask) and only taken inside sigsuspend in azsim_serve, so a signal that arrives
 * during startup is held until then instead of killing the process half-initialised.
 */
void azsim_signals_setup(void)
{
    struct sigaction act;
    sigset_t mask;
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, &saved_mask);
}

static int stop_pending(void)
{
    sigset_t pending;
    return stop_requested || (sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 ||
                                                            sigismember(&pending, SIGINT) == 1));
}

static int write_env(azsim_state *st)
{
    int rc = AZSIM_ERR;
    int p = st->port;
    azsim_password *pw = st->bootstrap->passwords.items[st->bootstrap->passwords.n - 1];
    char *path = azsim_printf("%s/azsim.env", st->data_dir);
    char *ca = azsim_printf("%s/ca.pem", st->data_dir);
    char *env = NULL;
    if (!path || !ca)
        goto done;
    env = azsim_printf("# written by azsim; holds a client secret\n"
                       "export AZURE_TENANT_ID='%s'\n"
                       "export AZURE_SUBSCRIPTION_ID='%s'\n"
                       "export AZURE_CLIENT_ID='%s'\n"
                       "export AZURE_CLIENT_SECRET='%s'\n"
                       "export AZURE_AUTHORITY_HOST='https://login.localhost:%d'\n"
                       "export AZSIM_URL='https://azsim.localhost:%d'\n"
                       "export AZSIM_PORT='%d'\n"
                       "export AZSIM_CA='%s'\n"
                       "export KVR_ARM_ENDPOINT='https://management.localhost:%d'\n"
                       "export KVR_GRAPH_ENDPOINT='https://graph.localhost:%d'\n"
                       "export KVR_VAULT_SUFFIX='vault.localhost:%d'\n"
                       "export KVR_PROFILE_ENDPOINT='https://profiles.localhost:%d'\n",
                       st->tenant, st->subscription, st->bootstrap->app_id, pw->secret, p, p, p, ca,
                       p, p, p, p);
    if (!env)
        goto done;
    rc = azsim_write_file(path, env, strlen(env), 0600);
done:
    azsim_secret_free(env);
    free(path);
    free(ca);
    return rc;
}

int azsim_serve(azsim_state *st, int port, const char *cert_pem, const char *key_pem)
{
    struct sockaddr_in sa;
    struct MHD_Daemon *d = NULL;
    int rc = AZSIM_ERR;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* epoll in a few threads, not a thread per connection: thousands of keep-alive
       connections cost a socket each, and the handlers take the state lock one at a time */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned pool = cpus < 2 ? 2u : cpus > 8 ? 8u : (unsigned)cpus;
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    unsigned limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur > 64
                         ? (unsigned)(nofile.rlim_cur > 65536 ? 65536 : nofile.rlim_cur) - 64
                         : 1000;
    const char *delay = getenv("AZSIM_TEST_HOLD_PARK_DELAY_MS");
    park_delay_ms = delay ? atoi(delay) : 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wait_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&waker_thread, NULL, waker, NULL) != 0) {
        fprintf(stderr, "azsim: cannot start a thread\n");
        return AZSIM_ERR;
    }
    d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TLS |
            MHD_USE_ERROR_LOG | MHD_USE_SUPPRESS_DATE_NO_CLOCK,
        0, NULL, NULL, handle, st, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_HTTPS_MEM_KEY, key_pem, MHD_OPTION_HTTPS_MEM_CERT, cert_pem,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)120, MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "azsim: cannot listen on 127.0.0.1:%d\n", port);
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        fprintf(stderr, "azsim: cannot learn the listening port\n");
        goto done;
    }
    pthread_mutex_lock(&st->lock);
    st->port = info->port;
    pthread_mutex_unlock(&st->lock);
    if (write_env(st) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot write '%s/azsim.env'\n", st->data_dir);
        goto done;
    }
    if (!stop_pending()) {
        printf("azsim ready https://azsim.localhost:%d\n", st->port);
        fflush(stdout);
    }
    /* SIGTERM stays blocked except inside sigsuspend, so a signal cannot slip past the check */
    while (!stop_requested)
        sigsuspend(&saved_mask);
    rc = AZSIM_OK;
done:
    pthread_mutex_lock(&wait_lock);
    waiting_stopped = 1;
    pthread_cond_signal(&wait_cond);
    pthread_mutex_unlock(&wait_lock);
    pthread_join(waker_thread, NULL);
    if (d)
        MHD_stop_daemon(d);
    free(waiters);
    waiters = NULL;
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    return rc;
}
