/*
 * azsim_fault.c - the failures a real cloud has and a happy-path simulator lacks. With
 * --fault-rate P a seeded fraction of requests (never the azsim.localhost admin API) fail with
 * 500, 503, a 429 without Retry-After, a closed connection, or a long stall before a normal
 * answer; "reset-after-commit" applies a mutation and then closes the connection, so a client's
 * retry meets its own earlier success. Whether request number N fails, and how, depends only on
 * the seed and N, so a run with the same seed and the same request sequence fails the same way.
 * This file also holds ARM's subscription token buckets (reference §10), which are throttling of
 * the ordinary kind: 429 with Retry-After and the remaining-budget headers.
 */
#include "azsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[AZSIM_FAULT_KINDS] = {
    "500", "503", "429", "reset", "stall", "reset-after-commit",
};

const char *azsim_fault_name(int kind)
{
    return kind >= 0 && kind < AZSIM_FAULT_KINDS ? kind_names[kind] : "none";
}

int azsim_fault_parse_kinds(unsigned *out, const char *list)
{
    unsigned mask = 0;
    const char *p = list;
    if (strcmp(list, "all") == 0) {
        *out = (1u << AZSIM_FAULT_KINDS) - 1;
        return AZSIM_OK;
    }
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int k = 0; k < AZSIM_FAULT_KINDS; k++)
            if (strlen(kind_names[k]) == n && strncmp(p, kind_names[k], n) == 0)
                found = k;
        if (found < 0)
            return AZSIM_EINVAL;
        mask |= 1u << found;
        p += n;
        if (*p == ',')
            p++;
    }
    if (!mask)
        return AZSIM_EINVAL;
    *out = mask;
    return AZSIM_OK;
}

/* splitmix64: a good mix of (seed, n) without state shared with the identifier generator */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int azsim_fault_pick(azsim_state *st)
{
    uint64_t n, a, b;
    unsigned enabled = 0;
    if (st->fault_rate <= 0 || !st->fault_kinds)
        return -1;
    n = st->fault_n++;
    a = mix(st->fault_seed ^ mix(n));
    if ((double)(a >> 11) * (1.0 / 9007199254740992.0) >= st->fault_rate)
        return -1;
    for (int k = 0; k < AZSIM_FAULT_KINDS; k++)
        enabled += (st->fault_kinds >> k) & 1u;
    b = mix(a) % enabled;
    for (int k = 0; k < AZSIM_FAULT_KINDS; k++) {
        if (!((st->fault_kinds >> k) & 1u))
            continue;
        if (b-- == 0) {
            st->faults[k]++;
            return k;
        }
    }
    return -1; /* not reached */
}

void azsim_fault_reply(azsim_req *r, int kind)
{
    unsigned status = kind == AZSIM_FAULT_500 ? 500 : kind == AZSIM_FAULT_503 ? 503 : 429;
    const char *h = r->host;
    json_t *body;
    r->op = kind == AZSIM_FAULT_500   ? "fault.500"
            : kind == AZSIM_FAULT_503 ? "fault.503"
                                      : "fault.429";
    if (strcmp(h, "login.localhost") == 0) {
        /* Entra's OAuth error shape */
        body = json_pack("{s:s,s:s}", "error",
                         status == 500 ? "server_error" : "temporarily_unavailable",
                         "error_description", "azsim: injected fault");
    } else if (strcmp(h, "graph.localhost") == 0) {
        char id[AZSIM_GUID_LEN + 1], date[32];
        azsim_guid(r->st, id);
        azsim_iso8601(date, azsim_now(r->st));
        body = json_pack("{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code",
                         status == 500   ? "generalException"
                         : status == 503 ? "serviceNotAvailable"
                                         : "TooManyRequests",
                         "message", "injected fault", "innerError", "date", date, "request-id", id,
                         "client-request-id", id);
    } else if (strcmp(h, "management.localhost") == 0) {
        body = json_pack("{s:{s:s,s:s}}", "error", "code",
                         status == 500   ? "InternalServerError"
                         : status == 503 ? "ServiceUnavailable"
                                         : "TooManyRequests",
                         "message", "injected fault");
    } else {
        /* Key Vault (and the profile service, which copies its shape) */
        body = json_pack("{s:{s:s,s:s}}", "error", "code",
                         status == 500   ? "InternalServerError"
                         : status == 503 ? "ServiceUnavailable"
                                         : "Throttled",
                         "message",
                         status == 429 ? "Operations per second is over the limit for this vault. "
                                         "Reason: VaultRequestTypeLimitReached (injected fault)"
                                       : "injected fault");
    }
    azsim_reply_json(r, status, body);
}

json_t *azsim_fault_stats(azsim_state *st)
{
    json_t *o = json_object();
    for (int k = 0; o && k < AZSIM_FAULT_KINDS; k++)
        json_object_set_new(o, kind_names[k], json_integer(st->faults[k]));
    return o;
}

/* ---- ARM throttling ------------------------------------------------------------------------ */

static const double arm_size[3] = {250, 200, 200};
static const double arm_refill[3] = {25, 10, 10};
static const char *const arm_header[3] = {
    "x-ms-ratelimit-remaining-subscription-reads",
    "x-ms-ratelimit-remaining-subscription-writes",
    "x-ms-ratelimit-remaining-subscription-deletes",
};

static azsim_arm_bucket *bucket_for(azsim_state *st, const char *scope, int64_t now)
{
    azsim_arm_bucket *b;
    for (size_t i = 0; i < st->arm_nbuckets; i++)
        if (strcmp(st->arm_buckets[i].scope, scope) == 0)
            return &st->arm_buckets[i];
    if (st->arm_nbuckets == AZSIM_ARM_BUCKETS)
        return &st->arm_buckets[0]; /* more subscriptions than a test uses: they share */
    b = &st->arm_buckets[st->arm_nbuckets++];
    snprintf(b->scope, sizeof(b->scope), "%s", scope);
    for (int k = 0; k < 3; k++)
        b->tokens[k] = arm_size[k];
    b->last = now;
    return b;
}

int azsim_arm_throttle(azsim_req *r, const char *subscription)
{
    azsim_state *st = r->st;
    int64_t now = azsim_now(st);
    const char *m = r->method;
    int kind = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ? 0
               : strcmp(m, "DELETE") == 0                      ? 2
                                                               : 1;
    char num[32];
    azsim_arm_bucket *b;
    int throttled = 0;

    if (!st->throttle)
        return 0;
    b = bucket_for(st, subscription && strlen(subscription) == AZSIM_GUID_LEN ? subscription : "",
                   now);
    if (now > b->last) {
        for (int k = 0; k < 3; k++) {
            b->tokens[k] += (double)(now - b->last) * arm_refill[k];
            if (b->tokens[k] > arm_size[k])
                b->tokens[k] = arm_size[k];
        }
        b->last = now;
    }
    if (b->tokens[kind] >= 1)
        b->tokens[kind] -= 1;
    else
        throttled = 1;
    for (int k = 0; k < 3; k++) {
        snprintf(num, sizeof(num), "%ld", (long)b->tokens[k]);
        azsim_set_header(r, arm_header[k], num);
    }
    if (!throttled)
        return 0;
    /* whole simulated seconds until one token is back */
    long wait = (long)((1 - b->tokens[kind]) / arm_refill[kind]) + 1;
    snprintf(num, sizeof(num), "%ld", wait);
    azsim_set_header(r, "Retry-After", num);
    st->throttled++;
    r->op = "arm.throttled";
    char *msg = azsim_printf("Number of '%s' requests for subscription '%s' actor '' exceeded. "
                             "Please try again after '%ld' seconds after the last request.",
                             kind == 0   ? "read"
                             : kind == 1 ? "write"
                                         : "delete",
                             subscription ? subscription : "", wait);
    azsim_reply_json(r, 429,
                     json_pack("{s:{s:s,s:s}}", "error", "code", "SubscriptionRequestsThrottled",
                               "message", msg ? msg : "throttled"));
    free(msg);
    return 1;
}
