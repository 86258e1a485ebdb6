/*
 * The executor. Each round reads the live estate, plans, and runs the first step whose
 * dependencies are done and whose gates are open; then it reads again. Nothing is remembered
 * between rounds but what the live objects say, so the loop is its own crash recovery: a run
 * killed at any instant is continued by the next. Gates are never forced: when only closed gates
 * remain, it waits (with --wait) or stops with "blocked" and says for what.
 *
 * Before a profile starts to depend on a new role assignment, the grant is proven: the app signs
 * in with its own client secret and reads its key. Role assignments take time to propagate, and
 * the service must not be handed credentials that do not work yet.
 */
#include "kvr/apply.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int kvr_apply_markers(kvr_value_digest **out, size_t *n, const kvr_estate *e,
                      const kvr_marker_key *mk, FILE *warn)
{
    kvr_value_digest *d = calloc(e->nsecrets + 1, sizeof(*d));
    *out = d;
    *n = 0;
    if (!d)
        return KVR_ENOMEM;
    for (size_t i = 0; i < e->nsecrets; i++) {
        const kvr_secret *s = &e->secrets[i];
        kvr_value v;
        kvr_error err;
        char *m;
        if (s->source != KVR_SECRET_FROM_ENV && s->source != KVR_SECRET_FROM_FILE)
            continue;
        if (kvr_value_read(&v, s, &err) < 0) {
            if (warn)
                fprintf(warn, "kvreconcile: warning: the value of secret '%s' in vault '%s' is "
                              "not compared: %s\n",
                        s->name, s->vault, err.message);
            continue;
        }
        m = malloc(KVR_MARKER_LEN + 1);
        if (!m) {
            kvr_value_release(&v);
            return KVR_ENOMEM;
        }
        kvr_marker(m, mk, v.data, v.len);
        kvr_value_release(&v);
        d[*n].vault = s->vault;
        d[*n].name = s->name;
        d[*n].digest = m;
        (*n)++;
    }
    return 0;
}

void kvr_apply_markers_free(kvr_value_digest *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        free((char *)d[i].digest);
    free(d);
}

/* ---- progress ----------------------------------------------------------------------------- */

typedef struct run {
    const kvr_apply_options *o;
    double start;
    size_t done;
} run;

static void json_line(run *r, const char *event, json_t *fields)
{
    char now[KVR_TIME_ISO_MAX], *line;
    kvr_time_iso(now, sizeof(now), (int64_t)time(NULL));
    json_object_set_new(fields, "time", json_string(now));
    json_object_set_new(fields, "event", json_string(event));
    json_object_set_new(fields, "elapsed", json_real(mono() - r->start));
    line = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
    if (line) {
        fprintf(r->o->log, "%s\n", line);
        free(line);
    }
    json_decref(fields);
}

static void say(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(run *r, const char *fmt, ...)
{
    va_list ap;
    if (r->o->quiet || r->o->json_log)
        return;
    fprintf(r->o->log, "kvreconcile: [%6.1fs] ", mono() - r->start);
    va_start(ap, fmt);
    vfprintf(r->o->log, fmt, ap);
    va_end(ap);
    fputc('\n', r->o->log);
    fflush(r->o->log);
}

static const char *mark(const kvr_step *s)
{
    return s->action == KVR_ACTION_CREATE ? "+" : s->action == KVR_ACTION_CHANGE ? "~" : "-";
}

/* The closed gates of the waiting steps, deduplicated, "; "-separated. */
static void waiting_for(char *buf, size_t size, const kvr_plan *p)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->nsteps; i++)
        for (size_t g = 0; g < p->steps[i].ngates; g++) {
            const kvr_gate *gt = &p->steps[i].gates[g];
            if (gt->open || strstr(buf, gt->reason))
                continue;
            len += (size_t)snprintf(buf + len, size > len ? size - len : 0, "%s%s",
                                    len ? "; " : "", gt->reason);
            if (len >= size)
                return;
        }
}

/*
 * Could any closed gate open before `until` (service time)? A profile becoming Used, a grant
 * taking effect or a copy being verified can happen any moment; a retention gate opens at a known
 * time; a gate that waits for another step's retention is covered by that step's gate.
 */
static bool can_open_by(const kvr_plan *p, int64_t until)
{
    for (size_t i = 0; i < p->nsteps; i++)
        for (size_t g = 0; g < p->steps[i].ngates; g++) {
            const kvr_gate *gt = &p->steps[i].gates[g];
            if (gt->open)
                continue;
            switch (gt->kind) {
            case KVR_GATE_PROFILE_USED:
            case KVR_GATE_ROLE_EFFECTIVE:
            case KVR_GATE_COPY_VERIFIED:
                return true;
            case KVR_GATE_RETENTION:
                if (gt->opens_at && gt->opens_at <= until)
                    return true;
                break;
            case KVR_GATE_UNREFERENCED:
                break;
            }
        }
    return false;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static bool needs_probe(const kvr_step *s)
{
    return s->kind == KVR_STEP_PROFILE_CREATE || s->kind == KVR_STEP_PROFILE_SET_CREDENTIALS ||
           s->kind == KVR_STEP_PROFILE_APPLY;
}

/* 0 when the profile's app can use its key; 1 when the grant is not effective yet. */
static int probe(run *r, const kvr_step_ctx *c, const kvr_step *s, kvr_error *err)
{
    const kvr_profile *p = kvr_estate_profile(c->d, s->name);
    double until = mono() + (r->o->probe_seconds > 0 ? r->o->probe_seconds : 120), wait = 1;
    if (!p)
        return 0;
    for (;;) {
        int rc = kvr_access_probe(c, p->app, p->credential, p->vault, p->key, err);
        if (rc == 0)
            return 0;
        /* refused (not propagated yet) or a transient failure: the gate stays closed */
        if (rc != KVR_EFORBIDDEN && rc != KVR_EAUTH && rc != KVR_ETHROTTLED && rc != KVR_EHTTP &&
            rc != KVR_ETIMEOUT && rc != KVR_EAZURE)
            return rc;
        if (mono() + wait > until)
            return 1;
        say(r, "waiting for app '%s' to be allowed to use key '%s' (role assignments take time "
               "to propagate)",
            p->app, p->key);
        nap(wait);
        wait = wait * 2 > 15 ? 15 : wait * 2;
    }
}

/*
 * Steps that may run in one wave after a single read: creations and changes that need no probe.
 * They are independent (the plan orders what depends on what), and none of them can close a gate
 * that was open for another. Retirements never join a wave.
 */
static bool batchable(const kvr_step *s)
{
    return s->action != KVR_ACTION_RETIRE && !needs_probe(s);
}

/* Runs one step with its progress lines; `total` counts this run's steps done and planned. */
static int run_step(run *r, const kvr_step_ctx *c, const kvr_step *s, size_t total, kvr_error *err)
{
    double t0 = mono();
    int rc;
    say(r, "step %zu of %zu: %s %s: %s", r->done + 1, total, mark(s), s->object ? s->object : "",
        s->summary);
    rc = kvr_step_run(c, s, err);
    if (r->o->json_log)
        json_line(r, "step",
                  json_pack("{s:I,s:I,s:s,s:s,s:s?,s:s,s:s,s:f}", "step", (json_int_t)(r->done + 1),
                            "of", (json_int_t)total, "kind", kvr_step_kind_name(s->kind), "action",
                            mark(s), "object", s->object, "summary", s->summary, "result",
                            rc < 0 ? "failed" : "done", "seconds", mono() - t0));
    if (rc < 0) {
        char msg[KVR_ERROR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", err->message);
        return kvr_error_set(err, rc, "step %zu (%s: %s) failed: %s", r->done + 1,
                             s->object ? s->object : "", s->summary, msg);
    }
    r->done++;
    say(r, "  done in %.1fs", mono() - t0);
    return 0;
}

int kvr_apply(kvr_apply_result *out, kvr_auth *a, const kvr_endpoints *ep, const kvr_estate *d,
              const char *subscription, const kvr_apply_options *o, kvr_error *err)
{
    run r = {o, mono(), 0};
    kvr_step_ctx ctx;
    char *tenant = NULL, last[600] = "", reasons[1024];
    int rc, repeats = 0;
    size_t budget = 0; /* steps this run may do: from its first plan */
    double deadline = r.start + (double)o->wait_seconds;

    *out = KVR_APPLY_CONVERGED;
    if ((rc = kvr_tenant_of(&tenant, a, ep, err)) < 0)
        return rc;
    for (;;) {
        kvr_marker_key mk;
        if (o->stop && *o->stop) {
            say(&r, "stopping on request: %zu step%s done", r.done, r.done == 1 ? "" : "s");
            *out = KVR_APPLY_BLOCKED;
            break;
        }
        kvr_live *live = NULL;
        kvr_plan *plan = NULL;
        kvr_value_digest *dig = NULL;
        size_t ndig = 0;
        kvr_plan_input in;
        const kvr_step *next = NULL;
        char key[600];

        if ((rc = kvr_marker_key_init(&mk, err)) < 0 ||
            (rc = kvr_live_read(&live, a, ep, d, subscription, &mk, err)) < 0 ||
            (rc = kvr_apply_markers(&dig, &ndig, d, &mk, r.done ? NULL : o->log)) < 0) {
            kvr_marker_key_wipe(&mk);
            kvr_live_free(live);
            kvr_apply_markers_free(dig, ndig);
            break;
        }
        memset(&in, 0, sizeof(in));
        in.desired = d;
        in.live = live;
        in.subscription = subscription;
        in.digests = dig;
        in.ndigests = ndig;
        rc = kvr_plan_build(&plan, &in, err);
        if (rc < 0)
            goto round_done;
        for (size_t i = 0; i < plan->nsteps && !next; i++)
            if (plan->steps[i].ndeps == 0 && !kvr_step_waiting(&plan->steps[i]))
                next = &plan->steps[i];
        if (plan->nsteps == 0) {
            for (size_t i = 0; i < plan->nholds; i++)
                say(&r, "held back: %s: %s",
                    plan->holds[i].object ? plan->holds[i].object : plan->holds[i].vault,
                    plan->holds[i].reason);
            if (o->json_log)
                json_line(&r, "converged", json_pack("{s:I,s:I}", "steps", (json_int_t)r.done,
                                                     "heldBack", (json_int_t)plan->nholds));
            say(&r, "%s: %zu step%s done", r.done ? "converged" : "nothing to do", r.done,
                r.done == 1 ? "" : "s");
            *out = KVR_APPLY_CONVERGED;
            rc = 1; /* leave the loop */
            if (plan->nholds)
                /* Everything possible is done, but the desired state asks for what can never
                   be done safely: a pipeline must not see success. */
                rc = kvr_error_set(err, KVR_ECONFIG,
                                   "%zu change%s of the desired state held back (see above); "
                                   "everything else is done",
                                   plan->nholds, plan->nholds == 1 ? " is" : "s are");
            goto round_done;
        }
        if (next) {
            kvr_step_ctx c = {a, ep, d, live, subscription, tenant};
            size_t total = r.done + plan->nsteps;
            int pr;
            ctx = c;
            if (!budget)
                budget = 4 * plan->nsteps + 16;
            if (r.done >= budget) {
                /* each step must bring the estate closer: a run that keeps finding new work is
                   in a cycle with something else (another writer, a bug), not converging */
                rc = kvr_error_set(err, KVR_EINVAL,
                                   "%zu steps done and the plan still has %zu: the live state is "
                                   "not converging (is another writer changing it?); stopping",
                                   r.done, plan->nsteps);
                goto round_done;
            }
            snprintf(key, sizeof(key), "%d|%s|%s|%s", (int)next->kind,
                     next->vault ? next->vault : "", next->name ? next->name : "",
                     next->version ? next->version : "");
            if (strcmp(key, last) == 0 && ++repeats >= 3) {
                rc = kvr_error_set(err, KVR_EINVAL,
                                   "%s: '%s' was done %d times but the live state does not show "
                                   "it; stopping",
                                   next->object, next->summary, repeats);
                goto round_done;
            }
            if (strcmp(key, last) != 0)
                repeats = 0;
            snprintf(last, sizeof(last), "%s", key);
            if (needs_probe(next) && (pr = probe(&r, &ctx, next, err)) != 0) {
                if (pr < 0) {
                    rc = pr;
                    goto round_done;
                }
                snprintf(reasons, sizeof(reasons),
                         "the role assignment of the app of profile '%s' to take effect",
                         next->name);
                goto wait_or_block;
            }
            if ((rc = run_step(&r, &ctx, next, total, err)) < 0)
                goto round_done;
            /* Creations and changes that are ready run together in this wave; anything that
               retires is done alone, right after the read that opened its gates. */
            for (size_t i = 0; batchable(next) && i < plan->nsteps; i++) {
                const kvr_step *s = &plan->steps[i];
                if (s == next || s->ndeps || kvr_step_waiting(s) || !batchable(s))
                    continue;
                if (o->stop && *o->stop)
                    break;
                if ((rc = run_step(&r, &ctx, s, total, err)) < 0)
                    goto round_done;
            }
            goto round_done;
        }
        waiting_for(reasons, sizeof(reasons), plan);
        if (!can_open_by(plan, live->now + (int64_t)(deadline - mono())))
            goto block; /* nothing can open within --wait: say so now rather than sleep */
    wait_or_block:
        if (mono() + (o->poll_seconds > 0 ? o->poll_seconds : 5) <= deadline) {
            if (o->json_log)
                json_line(&r, "waiting", json_pack("{s:s}", "for", reasons));
            say(&r, "waiting for: %s", reasons);
            for (int t = 0; t < (o->poll_seconds > 0 ? o->poll_seconds : 5) * 10; t++) {
                if (o->stop && *o->stop)
                    break;
                nap(0.1);
            }
            rc = 0;
            goto round_done;
        }
    block:
        if (o->json_log)
            json_line(&r, "blocked", json_pack("{s:s,s:I}", "for", reasons, "steps",
                                               (json_int_t)r.done));
        say(&r, "blocked: waiting for %s (%zu step%s done; run again later, or use --wait)",
            reasons, r.done, r.done == 1 ? "" : "s");
        if (o->reason && o->reason_size)
            snprintf(o->reason, o->reason_size, "%s", reasons);
        *out = KVR_APPLY_BLOCKED;
        rc = 1;
    round_done:
        kvr_plan_free(plan);
        kvr_live_free(live);
        kvr_apply_markers_free(dig, ndig);
        kvr_marker_key_wipe(&mk);
        if (rc != 0)
            break;
    }
    free(tenant);
    return rc < 0 ? rc : 0;
}
