/*
 * azsim_admin.c - azsim.localhost, the simulator's own test-only API (no Azure counterpart, no
 * token needed: it listens on loopback only). Tests use it to move the simulated clock that every
 * service reads (HTTP Date, token expiry, purge dates, RBAC propagation, auto-rotation) and to
 * read request counters, so they can assert on what a client actually sent, and to make vault
 * PUTs long-running operations (/arm/async) for tests of the clients' polling.
 *
 * Holds (/holds) let a test act at an exact point of a client's run instead of racing it: the
 * next request that matches a hold is carried out and its answer computed, then the answer is
 * held back until the test releases it. While it is held, the test knows precisely what the
 * client has and has not seen, and can change the state under it (an out-of-band write between
 * a client's read and its next step) without depending on how fast either side runs.
 */
#include "azsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int admin_error(azsim_req *r, unsigned status, const char *code, const char *msg)
{
    return azsim_reply_json(r, status,
                            json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

static int clock_advance(azsim_req *r)
{
    json_t *body = azsim_body_json(r);
    json_t *secs = json_object_get(body, "seconds");
    int rc;
    r->op = "admin.clock.advance";
    if (!json_is_integer(secs) || json_integer_value(secs) < 0 ||
        json_integer_value(secs) > 100LL * 365 * 86400) {
        json_decref(body);
        return admin_error(r, 400, "BadRequest",
                           "body must be {\"seconds\":N} with N a non-negative integer");
    }
    r->st->clock_offset += json_integer_value(secs);
    json_decref(body);
    /* objects whose purge date or rotation time has now passed change state at once */
    azsim_kv_sweep(r->st);
    azsim_consumer_tick(r->st);
    rc = azsim_reply_json(r, 200,
                          json_pack("{s:I,s:I}", "now", (json_int_t)azsim_now(r->st), "offset",
                                    (json_int_t)r->st->clock_offset));
    return rc;
}

/*
 * POST /arm/async {"polls":N, "headers":H}: what --arm-async N sets, at run time (0: vault PUTs
 * are sync). H says where clients are told to poll: "both" (default: Azure-AsyncOperation and
 * Location), "location" (Location only), "none" (no header: poll the vault), "foreign"
 * (Azure-AsyncOperation on another host, which a client must refuse to send its token to).
 */
static int arm_async(azsim_req *r)
{
    static const char *const kinds[] = {"both", "location", "none", "foreign", NULL};
    json_t *body = azsim_body_json(r);
    json_t *polls = json_object_get(body, "polls");
    const char *h = json_string_value(json_object_get(body, "headers"));
    int kind = -1;
    r->op = "admin.arm.async";
    for (int i = 0; kinds[i]; i++)
        if (strcmp(h ? h : "both", kinds[i]) == 0)
            kind = i;
    if (!json_is_integer(polls) || json_integer_value(polls) < 0 ||
        json_integer_value(polls) > 1000 || kind < 0) {
        json_decref(body);
        return admin_error(r, 400, "BadRequest",
                           "body must be {\"polls\":N} with 0 <= N <= 1000, and optionally "
                           "\"headers\": both, location, none or foreign");
    }
    r->st->arm_async = (int)json_integer_value(polls);
    r->st->arm_async_headers = kind;
    json_decref(body);
    return azsim_reply_json(r, 200,
                            json_pack("{s:i,s:s}", "polls", r->st->arm_async, "headers",
                                      kinds[kind]));
}

/* ---- holds -------------------------------------------------------------------------------- */

/* armed or holding at once: a test may hold one read of each of dozens of vaults */
#define HOLDS_MAX 64
#define HOLD_MAX_SECONDS 300 /* a forgotten hold ends by itself (the test died) */

enum { HOLD_ARMED = 0, HOLD_HOLDING, HOLD_RELEASED };
static const char *const hold_states[] = {"armed", "holding", "released"};

typedef struct hold {
    int id;
    int state;
    int drop; /* "then": "drop": no answer at all, the connection closes (applied, unheard) */
    char method[16];
    char host[256];
    char path[512];
} hold;

/* Guarded by st->lock; one simulator per process. */
static hold holds[HOLDS_MAX];
static int nholds, hold_ids;

/* Path equality that ignores trailing slashes ("/secrets/a/" is "/secrets/a"). */
static int same_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb > 1 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

/* The hold with this id, or NULL (ids are never reused; the array may have been compacted). */
static hold *hold_find(long id)
{
    for (int i = 0; i < nholds; i++)
        if (holds[i].id == id)
            return &holds[i];
    return NULL;
}

static hold *hold_get(azsim_req *r)
{
    char *end;
    long id;
    if (r->nsegs != 2)
        return NULL;
    errno = 0;
    id = strtol(r->segs[1], &end, 10);
    if (errno || *end || end == r->segs[1])
        return NULL;
    return hold_find(id);
}

static int hold_reply(azsim_req *r, unsigned status, const hold *h)
{
    return azsim_reply_json(r, status,
                            json_pack("{s:i,s:s,s:s,s:s,s:s,s:s}", "id", h->id, "state",
                                      hold_states[h->state], "method", h->method, "host", h->host,
                                      "path", h->path, "then", h->drop ? "drop" : "answer"));
}

/*
 * POST /holds {"method","host","path"[,"then"]}: hold the answer to the next matching request
 * until the hold is released; with "then": "drop" the request is applied and its connection
 * closed at once, without an answer (the reset-after-commit fault, for one chosen request).
 */
static int hold_add(azsim_req *r)
{
    json_t *body = azsim_body_json(r);
    const char *m = json_string_value(json_object_get(body, "method"));
    const char *h = json_string_value(json_object_get(body, "host"));
    const char *p = json_string_value(json_object_get(body, "path"));
    json_t *then = json_object_get(body, "then");
    const char *t = json_string_value(then);
    hold *x;
    int rc;
    r->op = "admin.holds.add";
    if (!m || !h || !p || strlen(m) >= sizeof(x->method) || strlen(h) >= sizeof(x->host) ||
        strlen(p) >= sizeof(x->path) || p[0] != '/' ||
        (then && (!t || (strcmp(t, "answer") != 0 && strcmp(t, "drop") != 0)))) {
        json_decref(body);
        return admin_error(r, 400, "BadRequest",
                           "body must be {\"method\":M,\"host\":H,\"path\":\"/...\"}, "
                           "optionally with \"then\": \"answer\" or \"drop\"");
    }
    if (nholds == HOLDS_MAX) { /* reuse a released one */
        int k = 0;
        for (int i = 0; i < nholds; i++)
            if (holds[i].state != HOLD_RELEASED)
                holds[k++] = holds[i];
        nholds = k;
    }
    if (nholds == HOLDS_MAX) {
        json_decref(body);
        return admin_error(r, 409, "Conflict", "too many holds in use");
    }
    x = &holds[nholds++];
    memset(x, 0, sizeof(*x));
    x->id = ++hold_ids;
    x->state = HOLD_ARMED;
    snprintf(x->method, sizeof(x->method), "%s", m);
    for (size_t i = 0; h[i]; i++) /* hosts are matched as the server sees them: lowercase */
        x->host[i] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] - 'A' + 'a' : h[i]);
    snprintf(x->path, sizeof(x->path), "%s", p);
    x->drop = t && strcmp(t, "drop") == 0;
    json_decref(body);
    rc = hold_reply(r, 201, x);
    return rc;
}

int azsim_hold_point(azsim_req *r)
{
    azsim_state *st = r->st;
    hold *h = NULL;
    int id = 0;
    if (strcmp(r->host, "azsim.localhost") == 0)
        return 0;
    pthread_mutex_lock(&st->lock);
    for (int i = 0; i < nholds && !h; i++)
        if (holds[i].state == HOLD_ARMED && strcmp(holds[i].method, r->method) == 0 &&
            strcmp(holds[i].host, r->host) == 0 && same_path(holds[i].path, r->path))
            h = &holds[i];
    if (h && h->drop) {
        h->state = HOLD_RELEASED;
        r->drop = 1;
    } else if (h) {
        h->state = HOLD_HOLDING;
        id = h->id;
    }
    pthread_mutex_unlock(&st->lock);
    return id;
}

int azsim_hold_wait_ms(void)
{
    return HOLD_MAX_SECONDS * 1000;
}

void azsim_hold_parked(azsim_state *st, int id)
{
    pthread_mutex_lock(&st->lock);
    const hold *h = hold_find(id);
    if (!h || h->state != HOLD_HOLDING)
        azsim_wake_held(id); /* released meanwhile: its answer goes out now */
    pthread_mutex_unlock(&st->lock);
}

void azsim_hold_end(azsim_state *st, int id)
{
    pthread_mutex_lock(&st->lock);
    hold *h = hold_find(id);
    if (h && h->state == HOLD_HOLDING)
        h->state = HOLD_RELEASED; /* its time ran out */
    pthread_mutex_unlock(&st->lock);
}

/* A limit given to POST /throttle: absent, or an integer from 0 to max. */
static int limit_ok(const json_t *v, json_int_t max)
{
    return !v || (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max);
}

int azsim_admin_handle(azsim_req *r)
{
    const char *m = r->method;
    if (r->nsegs == 1 && strcmp(r->segs[0], "throttle") == 0 && strcmp(m, "POST") == 0) {
        /* test-only: lower Key Vault limits, so a short burst exceeds them on any machine:
           secret writes per vault (0: Azure's published 300 per 10 s), and everything else per
           subscription and region (0: the published 5 x 4,000 per 10 s) */
        json_t *body = azsim_body_json(r);
        json_t *n = json_object_get(body, "secretWrites");
        json_t *s = json_object_get(body, "subscriptionOther");
        r->op = "admin.throttle";
        if ((!n && !s) || !limit_ok(n, 300) || !limit_ok(s, 20000)) {
            json_decref(body);
            return admin_error(r, 400, "BadRequest",
                               "body must be {\"secretWrites\":N, \"subscriptionOther\":M} (either "
                               "or both), 0 <= N <= 300, 0 <= M <= 20000");
        }
        if (n)
            r->st->kv_secret_limit = (int)json_integer_value(n);
        if (s)
            r->st->kv_sub_limit = (int)json_integer_value(s);
        json_decref(body);
        return azsim_reply_json(r, 200,
                                json_pack("{s:i,s:i}", "secretWrites", r->st->kv_secret_limit,
                                          "subscriptionOther", r->st->kv_sub_limit));
    }
    if (r->nsegs == 2 && strcmp(r->segs[0], "directory") == 0 &&
        strcmp(r->segs[1], "replicate") == 0 && strcmp(m, "POST") == 0) {
        /* --directory-delay ends now for every principal made so far (replication caught up) */
        r->op = "admin.directory.replicate";
        r->st->directory_replicated = azsim_now(r->st);
        return azsim_reply_json(r, 200, json_pack("{s:I}", "replicated",
                                                  (json_int_t)r->st->directory_replicated));
    }
    if (r->nsegs >= 1 && strcmp(r->segs[0], "holds") == 0) {
        hold *h;
        if (r->nsegs == 1 && strcmp(m, "POST") == 0)
            return hold_add(r);
        h = hold_get(r);
        r->op = "admin.holds";
        if (!h)
            return admin_error(r, 404, "NotFound", "no such hold");
        if (strcmp(m, "GET") == 0)
            return hold_reply(r, 200, h);
        if (strcmp(m, "DELETE") == 0) {
            if (h->state == HOLD_HOLDING)
                azsim_wake_held(h->id); /* its answer goes out now */
            h->state = HOLD_RELEASED;
            return hold_reply(r, 200, h);
        }
        return admin_error(r, 405, "MethodNotAllowed", "holds take GET and DELETE");
    }
    if (r->nsegs == 2 && strcmp(r->segs[0], "arm") == 0 && strcmp(r->segs[1], "async") == 0 &&
        strcmp(m, "POST") == 0)
        return arm_async(r);
    if (r->nsegs == 2 && strcmp(r->segs[0], "clock") == 0 && strcmp(r->segs[1], "advance") == 0 &&
        strcmp(m, "POST") == 0)
        return clock_advance(r);
    if (r->nsegs == 2 && strcmp(r->segs[0], "clock") == 0 && strcmp(r->segs[1], "freeze") == 0 &&
        strcmp(m, "POST") == 0) {
        /* {"frozen": true}: the simulated clock stops (token buckets, Date, expiry) and moves
           only by /clock/advance, so a test need not outrun real time; false: it runs again
           from where it stands */
        json_t *body = azsim_body_json(r);
        json_t *f = json_object_get(body, "frozen");
        r->op = "admin.clock.freeze";
        if (!json_is_boolean(f)) {
            json_decref(body);
            return admin_error(r, 400, "BadRequest", "body must be {\"frozen\":true|false}");
        }
        if (json_is_true(f) && !r->st->clock_frozen_at) {
            r->st->clock_frozen_at = (int64_t)time(NULL);
        } else if (json_is_false(f) && r->st->clock_frozen_at) {
            /* the offset keeps the clock where it stood, then it runs with real time again */
            r->st->clock_offset -= (int64_t)time(NULL) - r->st->clock_frozen_at;
            r->st->clock_frozen_at = 0;
        }
        json_decref(body);
        return azsim_reply_json(r, 200,
                                json_pack("{s:I,s:b}", "now", (json_int_t)azsim_now(r->st),
                                          "frozen", r->st->clock_frozen_at != 0));
    }
    if (r->nsegs == 1 && strcmp(r->segs[0], "clock") == 0 && strcmp(m, "GET") == 0) {
        r->op = "admin.clock";
        return azsim_reply_json(r, 200,
                                json_pack("{s:I,s:I}", "now", (json_int_t)azsim_now(r->st),
                                          "offset", (json_int_t)r->st->clock_offset));
    }
    if (r->nsegs == 1 && strcmp(r->segs[0], "stats") == 0 && strcmp(m, "GET") == 0) {
        r->op = "admin.stats";
        return azsim_reply_json(r, 200,
                                json_pack("{s:O,s:I,s:I,s:o}", "requests", r->st->stats,
                                          "throttled", (json_int_t)r->st->throttled, "total",
                                          (json_int_t)r->st->total, "faults",
                                          azsim_fault_stats(r->st)));
    }
    if (r->nsegs == 1 && strcmp(r->segs[0], "consumer") == 0 && strcmp(m, "GET") == 0) {
        r->op = "admin.consumer";
        azsim_consumer_tick(r->st);
        return azsim_reply_json(r, 200, azsim_consumer_stats(r->st));
    }
    r->op = "admin.unknown";
    return admin_error(r, 404, "NotFound", "no such azsim admin endpoint");
}
