/*
 * azsim_admin.c - azsim.localhost, the simulator's own test-only API (no Azure counterpart, no
 * token needed: it listens on loopback only). Tests use it to move the simulated clock that every
 * service reads (HTTP Date, token expiry, purge dates, RBAC propagation, auto-rotation) and to
 * read request counters, so they can assert on what a client actually sent, and to make vault
 * PUTs long-running operations (/arm/async) for tests of the clients' polling.
 */
#include "azsim.h"

#include <string.h>

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

int azsim_admin_handle(azsim_req *r)
{
    const char *m = r->method;
    if (r->nsegs == 2 && strcmp(r->segs[0], "arm") == 0 && strcmp(r->segs[1], "async") == 0 &&
        strcmp(m, "POST") == 0)
        return arm_async(r);
    if (r->nsegs == 2 && strcmp(r->segs[0], "clock") == 0 && strcmp(r->segs[1], "advance") == 0 &&
        strcmp(m, "POST") == 0)
        return clock_advance(r);
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
