/*
 * The executor. Each round reads the live estate through the provider, plans, and hands the
 * operations of the first step whose dependencies are done and whose gates are open to the
 * provider, one at a time; then it reads again. Nothing is remembered between rounds but what
 * the live objects say, so the loop is its own crash recovery: a run killed at any instant is
 * continued by the next. Gates are never forced: when only closed gates remain, it waits (with
 * --wait) or stops with "blocked" and says for what. An operation that fails on the way is
 * tried again when repeating it is safe; one that is not (a new key version, a new client
 * secret) ends the round, and the next read shows whether it happened.
 *
 * Before a profile starts to depend on a new role assignment, the grant is proven: the app signs
 * in with its own client secret and reads its key (the provider's probe). Role assignments take
 * time to propagate, and the service must not be handed credentials that do not work yet.
 *
 * A relocation's wave of copies spends most of its time waiting for Key Vault's secret write
 * limit (300 per vault per 10 s). While the next write waits, the copies already made are read
 * back, on both sides (the provider's read_back); the read after the wave then fetches only the
 * values that changed since or were not read back, and compares every copy with its source as
 * before.
 */
#include "kvr/apply.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int kvr_apply_markers(kvr_value_digest **out, size_t *n, const kvr_estate *e,
                      const kvr_marker_key *mk, FILE *warn)
{
    return kvr_apply_markers_strict(out, n, e, mk, warn, NULL);
}

int kvr_apply_markers_strict(kvr_value_digest **out, size_t *n, const kvr_estate *e,
                             const kvr_marker_key *mk, FILE *warn, kvr_error *strict)
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
            if (strict)
                return kvr_error_set(strict, err.code,
                                     "%s:%d:%d: the value of secret '%s' in vault '%s' cannot be "
                                     "read: %s; nothing was changed",
                                     s->pos.file ? s->pos.file : "?", s->pos.line, s->pos.col,
                                     s->name, s->vault, err.message);
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
    json_object_set_new(fields, "elapsed", json_real(kvr_mono_s() - r->start));
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
    fprintf(r->o->log, "kvreconcile: [%6.1fs] ", kvr_mono_s() - r->start);
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

/*
 * The earliest service time at which a closed retention gate opens (0: none), and whether a
 * gate that can open at any moment (a profile Used, a grant effective, a copy verified) is
 * closed. A run that waits only for retention sleeps until then instead of polling, and watch
 * comes back then (controller-runtime's RequeueAfter).
 */
static int64_t next_opening(const kvr_plan *p, bool *any_moment)
{
    int64_t at = 0;
    *any_moment = false;
    for (size_t i = 0; i < p->nsteps; i++)
        for (size_t g = 0; g < p->steps[i].ngates; g++) {
            const kvr_gate *gt = &p->steps[i].gates[g];
            if (gt->open)
                continue;
            if (gt->kind == KVR_GATE_PROFILE_USED || gt->kind == KVR_GATE_ROLE_EFFECTIVE ||
                gt->kind == KVR_GATE_COPY_VERIFIED)
                *any_moment = true;
            else if (gt->kind == KVR_GATE_RETENTION && gt->opens_at && (!at || gt->opens_at < at))
                at = gt->opens_at;
        }
    return at;
}

/* ---- reading copies back while the write limit holds the next write ----------------------- */

#define WRITE_LIMIT 300    /* Key Vault's secret writes per vault per 10 s, as http.c keeps it */
#define WRITE_WINDOW 10.25 /* s: http.c's window, with its margin for the service's clock */
#define READBACK_AFTER 3.1 /* s after a copy: its `updated` is > 2 s before a read's Date */
#define READBACK_BATCH 32  /* copies per read back: 64 GETs, a fraction of a second */
#define READBACK_MIN 0.3   /* s: a shorter wait for the window is not worth a read back */
#define WINDOWS_MAX 8

/*
 * When the last WRITE_LIMIT secret writes to one vault were sent, as far as steps tell: a step's
 * write is its last request, and http.c may have held it inside the step, so the end of the step
 * stands for it (a few ms late: a window predicted to open that much late).
 */
typedef struct write_window {
    const char *vault; /* borrowed from the plan */
    double starts[WRITE_LIMIT];
    size_t n, next;
} write_window;

/* A copy made in this wave, not read back yet (names borrowed from the plan). */
typedef struct copy_made {
    const char *vault, *source, *name;
    double at;
} copy_made;

typedef struct wave {
    write_window *w;
    size_t nw;
    copy_made *c;
    size_t nc, cap, head; /* c[head..nc): to read back, oldest first */
    size_t read_back;     /* copies read back in this wave */
} wave;

/*
 * Steps that write exactly one secret version to s->vault (a copy of all versions may write none
 * or many: not counted). Counting fewer writes than were made only loses pauses; counting more
 * would read back while the write could have gone.
 */
static bool writes_secret(const kvr_estate *d, const kvr_step *s)
{
    const kvr_vault *v;
    if (s->kind == KVR_STEP_CERT_COPY || s->kind == KVR_STEP_SECRET_SET)
        return true;
    if (s->kind != KVR_STEP_SECRET_COPY)
        return false;
    v = kvr_estate_vault(d, s->vault);
    return v && v->copy_from.secrets == KVR_COPY_LATEST;
}

static write_window *window_of(wave *w, const char *vault, bool add)
{
    for (size_t i = 0; i < w->nw; i++)
        if (kvr_str_ieq(w->w[i].vault, vault))
            return &w->w[i];
    if (!add || w->nw == WINDOWS_MAX)
        return NULL;
    if (!w->w && !(w->w = calloc(WINDOWS_MAX, sizeof(*w->w))))
        return NULL;
    w->w[w->nw].vault = vault;
    return &w->w[w->nw++];
}

static void wave_release(wave *w)
{
    free(w->w);
    free(w->c);
    memset(w, 0, sizeof(*w));
}

/* Records step s, just done: its write, and a copy to read back. */
static void wave_note(wave *w, const kvr_estate *d, const kvr_step *s)
{
    write_window *win;
    double now = kvr_mono_s();
    if (s->vault && writes_secret(d, s) && (win = window_of(w, s->vault, true))) {
        win->starts[win->next] = now;
        win->next = (win->next + 1) % WRITE_LIMIT;
        if (win->n < WRITE_LIMIT)
            win->n++;
    }
    if (s->kind != KVR_STEP_SECRET_COPY || !s->extra)
        return;
    if (w->nc == w->cap && kvr_grow((void **)&w->c, &w->cap, w->nc + 1, sizeof(*w->c)) < 0)
        return; /* not read back: the next read fetches it */
    w->c[w->nc++] = (copy_made){s->vault, s->extra, s->name, now};
}

/*
 * Step s is next. If it is a secret write that Key Vault's limit will hold for a while, reads
 * back the copies made at least READBACK_AFTER ago until the window opens: the wait is spent
 * anyway, and the read after the wave then has those values (kvr_value_memo). Best effort: what
 * is not read back here is read there.
 */
static void use_pause(run *r, kvr_provider *p, const kvr_estate *d, wave *w, const kvr_step *s)
{
    write_window *win =
        p->read_back && s->vault && writes_secret(d, s) ? window_of(w, s->vault, false) : NULL;
    const char *vaults[2 * READBACK_BATCH], *names[2 * READBACK_BATCH];
    double open_at, t0 = kvr_mono_s();
    size_t before = w->read_back;

    if (!win || win->n < WRITE_LIMIT)
        return;
    open_at = win->starts[win->next] + WRITE_WINDOW;
    while (!(r->o->stop && *r->o->stop)) {
        double now = kvr_mono_s();
        size_t k = 0;
        kvr_error err;
        if (open_at - now < READBACK_MIN || w->head == w->nc)
            break;
        while (w->head < w->nc && k < READBACK_BATCH && w->c[w->head].at + READBACK_AFTER <= now) {
            const copy_made *m = &w->c[w->head++];
            vaults[2 * k] = m->vault;
            vaults[2 * k + 1] = m->source;
            names[2 * k] = names[2 * k + 1] = m->name;
            k++;
        }
        if (k) {
            if (p->read_back(p, vaults, names, 2 * k, &err) < 0)
                break;
            w->read_back += k;
            continue;
        }
        /* the oldest copy is too recent: wait for it, if the window is still closed then */
        if (w->c[w->head].at + READBACK_AFTER > open_at - READBACK_MIN)
            break;
        kvr_sleep_s(w->c[w->head].at + READBACK_AFTER - now);
    }
    if (w->read_back == before)
        return;
    if (r->o->json_log)
        json_line(r, "readBack",
                  json_pack("{s:I,s:f}", "copies", (json_int_t)(w->read_back - before), "seconds",
                            kvr_mono_s() - t0));
    say(r, "read back %zu copies while Key Vault holds the next write (%.1fs)",
        w->read_back - before, kvr_mono_s() - t0);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static bool needs_probe(const kvr_step *s)
{
    return s->kind == KVR_STEP_PROFILE_CREATE || s->kind == KVR_STEP_PROFILE_SET_CREDENTIALS ||
           s->kind == KVR_STEP_PROFILE_APPLY;
}

/* 0 when the profile's app can use its key; 1 when the grant is not effective yet. */
static int probe(run *r, kvr_provider *pv, const kvr_estate *d, const kvr_live *l,
                 const kvr_step *s, kvr_error *err)
{
    const kvr_profile *p = kvr_estate_profile(d, s->name);
    const kvr_app *a = p ? kvr_estate_app(d, p->app) : NULL;
    const kvr_credential *cr = a ? kvr_app_credential(a, p->credential) : NULL;
    const kvr_live_app *la = a ? kvr_live_app_get(l, a->display_name) : NULL;
    double until = kvr_mono_s() + (r->o->probe_seconds > 0 ? r->o->probe_seconds : 120), wait = 1;
    kvr_probe what;
    if (!p)
        return 0;
    if (!cr || !la)
        return kvr_error_set(err, KVR_ENOTFOUND, "profile '%s': app '%s' or its credential '%s' "
                                                 "does not exist yet",
                             p->name, p->app, p->credential);
    what = (kvr_probe){a->display_name, la->app_id, cr->store_vault, cr->store_secret, p->vault,
                       p->key};
    for (;;) {
        int rc = pv->probe(pv, &what, err);
        if (rc == 0)
            return 0;
        /* refused (not propagated yet) or a transient failure: the gate stays closed */
        if (rc != KVR_EFORBIDDEN && rc != KVR_EAUTH && rc != KVR_ETHROTTLED && rc != KVR_EHTTP &&
            rc != KVR_ETIMEOUT && rc != KVR_EAZURE)
            return rc;
        if (kvr_mono_s() + wait > until)
            return 1;
        say(r, "waiting for app '%s' to be allowed to use key '%s' (role assignments take time "
               "to propagate)",
            p->app, p->key);
        kvr_sleep_s(wait);
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

/* The plan's findings: progress lines on the first round, and the caller's copy (watch's status
   file) on every round, so it holds the last plan's. */
static void report_findings(run *r, const kvr_plan *p, bool first)
{
    size_t len = 0;
    if (r->o->findings && r->o->findings_size)
        r->o->findings[0] = '\0';
    for (size_t i = 0; i < p->nfindings; i++) {
        const kvr_finding *f = &p->findings[i];
        const char *level = f->level == KVR_FINDING_ERROR ? "error" : "warning";
        if (first && r->o->json_log)
            json_line(r, "finding", json_pack("{s:s,s:s?,s:s?,s:s}", "level", level, "vault",
                                              f->vault, "object", f->object, "message",
                                              f->message));
        if (first)
            say(r, "%s: %s: %s", level, f->object ? f->object : "", f->message);
        if (r->o->findings && len < r->o->findings_size)
            len += (size_t)snprintf(r->o->findings + len, r->o->findings_size - len, "%s%s: %s: %s",
                                    len ? "\n" : "", level, f->object ? f->object : "",
                                    f->message);
    }
    /* what declared vaults hold undeclared: a count per vault (`plan` lists them) */
    for (size_t i = 0, j; i < p->nunmanaged; i = j) {
        const char *vault = p->unmanaged[i].vault;
        for (j = i; j < p->nunmanaged && strcmp(p->unmanaged[j].vault, vault) == 0; j++)
            ;
        if (first && r->o->json_log)
            json_line(r, "unmanaged", json_pack("{s:s,s:I}", "vault", vault, "objects",
                                                (json_int_t)(j - i)));
        if (first)
            say(r, "unmanaged: vault '%s': %zu object%s not declared (plan lists them)", vault,
                j - i, j - i == 1 ? "" : "s");
        if (r->o->findings && len < r->o->findings_size)
            len += (size_t)snprintf(r->o->findings + len, r->o->findings_size - len,
                                    "%sunmanaged: vault '%s': %zu object%s not declared",
                                    len ? "\n" : "", vault, j - i, j - i == 1 ? "" : "s");
    }
}

/* With a saved plan: 0 when it shows step s with its values, else KVR_ESTALE before s runs. */
static int approved(const kvr_apply_options *o, const kvr_step *s, kvr_error *err)
{
    char why[KVR_ERROR_MSG_MAX - 64];
    if (!o->saved || kvr_saved_plan_allows(o->saved, s, why, sizeof(why)))
        return 0;
    return kvr_error_set(err, KVR_ESTALE, "the plan is stale: %s; plan again", why);
}

/* Failures on the way, which a later try may not meet. */
static bool transient(int rc)
{
    return rc == KVR_ETHROTTLED || rc == KVR_EHTTP || rc == KVR_ETIMEOUT;
}

/* Operations that must not be sent twice after an answer was lost: each would make another
   object (a key version, a client secret). */
static bool repeatable(const kvr_op *op)
{
    return op->kind != KVR_OP_KEY_CREATE && op->kind != KVR_OP_PASSWORD_ADD;
}

/* The step's operations, in order, each tried again on a transient failure when that is safe.
   1: a transient failure of an operation that is not (the caller reads the estate again). */
static int run_ops(run *r, kvr_provider *p, const kvr_step *s, kvr_error *err)
{
    double base = r->o->retry_pause > 0 ? r->o->retry_pause : 2;
    for (size_t k = 0; k < s->nops; k++) {
        const kvr_op *op = &s->ops[k];
        int rc;
        if (!kvr_op_resolved(op))
            return kvr_error_set(err, KVR_EINVAL,
                                 "operation %s holds a value that only an earlier step can "
                                 "give (a bug: the step should depend on it)",
                                 kvr_op_kind_name(op->kind));
        for (int attempt = 1;; attempt++) {
            rc = p->apply(p, op, err);
            if (rc >= 0 || !transient(rc))
                break;
            if (!repeatable(op))
                return 1;
            if (attempt == 3 || (r->o->stop && *r->o->stop))
                break;
            say(r, "  %s failed on the way (%s); trying again in %.1fs", kvr_op_kind_name(op->kind),
                err->message, base * (1 << (attempt - 1)));
            kvr_sleep_s(base * (1 << (attempt - 1)));
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Runs one step with its progress lines; `total` counts this run's steps done and planned.
   1: it may not have happened (an operation that cannot be repeated failed on the way). */
static int run_step(run *r, kvr_provider *p, const kvr_step *s, size_t total, kvr_error *err)
{
    double t0 = kvr_mono_s();
    int rc;
    say(r, "step %zu of %zu: %s %s: %s", r->done + 1, total, mark(s), s->object ? s->object : "",
        s->summary);
    rc = run_ops(r, p, s, err);
    if (r->o->json_log)
        json_line(r, "step",
                  json_pack("{s:I,s:I,s:s,s:s,s:s?,s:s,s:s,s:f}", "step", (json_int_t)(r->done + 1),
                            "of", (json_int_t)total, "kind", kvr_step_kind_name(s->kind), "action",
                            mark(s), "object", s->object, "summary", s->summary, "result",
                            rc < 0 ? "failed" : rc ? "unknown" : "done", "seconds",
                            kvr_mono_s() - t0));
    if (rc < 0) {
        char msg[KVR_ERROR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", err->message);
        return kvr_error_set(err, rc, "step %zu (%s: %s) failed: %s", r->done + 1,
                             s->object ? s->object : "", s->summary, msg);
    }
    if (rc) {
        say(r, "  failed on the way (%s): reading the estate again to see whether it happened",
            err->message);
        return 1;
    }
    r->done++;
    say(r, "  done in %.1fs", kvr_mono_s() - t0);
    return 0;
}

/*
 * A copy's verification (KVR_STEP_COPY_VERIFY) has no operation: the read after its copies
 * compares every copy with its source, and a plan made from that read no longer has the step.
 * That is the step done, not the estate changing under the run: it is counted and shown as
 * done, or, when a copy could not be made (a conflict held back), as what it could not verify.
 * `pend` holds the vaults whose verification the previous plan showed.
 */
typedef struct verifying {
    char **vault;
    size_t n;
} verifying;

static bool plan_has(const kvr_plan *plan, kvr_step_kind kind, const char *vault)
{
    for (size_t i = 0; i < plan->nsteps; i++)
        if (plan->steps[i].kind == kind && plan->steps[i].vault &&
            strcmp(plan->steps[i].vault, vault) == 0)
            return true;
    return false;
}

static void verifying_clear(verifying *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->vault[i]);
    free(v->vault);
    v->vault = NULL;
    v->n = 0;
}

static int verified(run *r, verifying *pend, const kvr_plan *plan, size_t *total, kvr_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < pend->n; i++) {
        const char *vault = pend->vault[i];
        size_t held = 0;
        if (plan_has(plan, KVR_STEP_COPY_VERIFY, vault) ||
            plan_has(plan, KVR_STEP_SECRET_COPY, vault) || plan_has(plan, KVR_STEP_CERT_COPY, vault))
            continue; /* still to come */
        for (size_t h = 0; h < plan->nholds; h++)
            held += plan->holds[h].vault && strcmp(plan->holds[h].vault, vault) == 0;
        if (held) {
            say(r, "vault '%s': its copies cannot all be verified: %zu change%s held back",
                vault, held, held == 1 ? " is" : "s are");
            if (*total)
                (*total)--;
            continue;
        }
        char object[300];
        snprintf(object, sizeof(object), "vault '%s'", vault);
        say(r, "step %zu of %zu: ~ %s: verified: every copy reads back with its source's digest",
            r->done + 1, *total, object);
        if (r->o->json_log)
            json_line(r, "step", json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:f}", "step",
                                           (json_int_t)(r->done + 1), "of", (json_int_t)*total,
                                           "kind", kvr_step_kind_name(KVR_STEP_COPY_VERIFY),
                                           "action", "~", "object", object, "summary",
                                           "verified: every copy reads back with its source's "
                                           "digest",
                                           "result", "done", "seconds", 0.0));
        r->done++;
    }
    verifying_clear(pend);
    for (size_t i = 0; i < plan->nsteps; i++)
        n += plan->steps[i].kind == KVR_STEP_COPY_VERIFY && plan->steps[i].vault;
    if (!n)
        return 0;
    if (!(pend->vault = calloc(n, sizeof(*pend->vault))))
        return kvr_error_oom(err);
    for (size_t i = 0; i < plan->nsteps; i++)
        if (plan->steps[i].kind == KVR_STEP_COPY_VERIFY && plan->steps[i].vault &&
            !(pend->vault[pend->n++] = strdup(plan->steps[i].vault)))
            return kvr_error_oom(err);
    return 0;
}

int kvr_apply(kvr_apply_result *out, kvr_provider *p, const kvr_marker_key *mk,
              const kvr_estate *d, const char *subscription, const kvr_apply_options *o,
              kvr_error *err)
{
    run r = {o, kvr_mono_s(), 0};
    kvr_scope *scope = NULL; /* what each round reads */
    char last[600] = "", reasons[1024];
    int rc, repeats = 0;
    size_t budget = 0; /* steps this run may do: from its first plan */
    size_t total = 0;  /* this run's steps, done and planned, as its last plan counted them */
    bool checked = false; /* the saved plan's live digest held */
    bool first_round = true;
    verifying pend = {0}; /* copies the last plan was to verify */
    double deadline = r.start + (double)o->wait_seconds;

    *out = KVR_APPLY_CONVERGED;
    if (!p || p->version != KVR_PROVIDER_VERSION)
        return kvr_error_set(err, KVR_EINVAL, "the provider was built for another version of "
                                              "the provider table");
    if ((rc = kvr_plan_read_scope(&scope, d, subscription, err)) < 0)
        return rc;
    for (;;) {
        wave w;
        memset(&w, 0, sizeof(w));
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
        double nap = o->poll_seconds > 0 ? o->poll_seconds : 5; /* before reading again */
        char key[600];

        if ((rc = p->read(p, &live, scope, err)) < 0 ||
            (rc = kvr_apply_markers_strict(&dig, &ndig, d, mk, NULL, err)) < 0) {
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
        if (o->saved && !checked) {
            /* before anything changes: is this the estate the reviewed plan was made from? */
            char *canon = NULL;
            if ((rc = kvr_live_canon(&canon, live, dig, ndig, err)) == 0)
                rc = kvr_saved_plan_check_live(o->saved, canon, err);
            free(canon);
            if (rc < 0)
                goto round_done;
            checked = true;
        }
        rc = kvr_plan_build(&plan, &in, err);
        if (rc < 0 || (rc = verified(&r, &pend, plan, &total, err)) < 0)
            goto round_done;
        report_findings(&r, plan, first_round);
        first_round = false;
        for (size_t i = 0; i < plan->nsteps && !next; i++)
            if (plan->steps[i].ndeps == 0 && !kvr_step_waiting(&plan->steps[i]))
                next = &plan->steps[i];
        if (plan->nsteps == 0) {
            for (size_t i = 0; i < plan->nholds; i++) {
                const kvr_hold *h = &plan->holds[i];
                if (o->json_log)
                    json_line(&r, "heldBack", json_pack("{s:s?,s:s?,s:s}", "vault", h->vault,
                                                        "object", h->object, "reason",
                                                        h->reason));
                say(&r, "held back: %s: %s", h->object ? h->object : h->vault, h->reason);
            }
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
            int pr;
            if (total && r.done + plan->nsteps != total) {
                /* a complete plan keeps its count as its steps are done: it moved because the
                   live state changed under the run (another writer, the service itself) */
                say(&r, "the live state changed under this run: %zu steps now (was %zu)",
                    r.done + plan->nsteps, total);
                if (o->json_log)
                    json_line(&r, "replanned",
                              json_pack("{s:I,s:I}", "steps", (json_int_t)(r.done + plan->nsteps),
                                        "was", (json_int_t)total));
            }
            total = r.done + plan->nsteps;
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
            if (needs_probe(next) &&
                (pr = probe(&r, p, plan->resolved ? plan->resolved : d, live, next, err)) != 0) {
                if (pr < 0) {
                    rc = pr;
                    goto round_done;
                }
                snprintf(reasons, sizeof(reasons),
                         "the role assignment of the app of profile '%s' to take effect",
                         next->name);
                goto wait_or_block;
            }
            if (o->stop && *o->stop) /* raised while the estate was read: nothing starts */
                goto round_done;
            if ((rc = approved(o, next, err)) < 0 || (rc = run_step(&r, p, next, total, err)) < 0)
                goto round_done;
            if (rc) { /* it may not have happened: the next read tells */
                rc = 0;
                goto round_done;
            }
            wave_note(&w, d, next);
            /* Creations and changes that are ready run together in this wave; anything that
               retires is done alone, right after the read that opened its gates. */
            for (size_t i = 0; batchable(next) && i < plan->nsteps; i++) {
                const kvr_step *s = &plan->steps[i];
                if (s == next || s->ndeps || kvr_step_waiting(s) || !batchable(s))
                    continue;
                if (o->stop && *o->stop)
                    break;
                if ((rc = approved(o, s, err)) < 0)
                    goto round_done;
                use_pause(&r, p, d, &w, s);
                if ((rc = run_step(&r, p, s, total, err)) < 0)
                    goto round_done;
                if (rc) {
                    rc = 0;
                    goto round_done;
                }
                wave_note(&w, d, s);
            }
            goto round_done;
        }
        waiting_for(reasons, sizeof(reasons), plan);
        if (!can_open_by(plan, live->now + (int64_t)(deadline - kvr_mono_s())))
            goto block; /* nothing can open within --wait: say so now rather than sleep */
        {
            bool any_moment;
            int64_t at = next_opening(plan, &any_moment);
            if (!any_moment && at > live->now) {
                if (o->requeue_after)
                    goto block; /* the caller comes back then (watch), rather than hold the run */
                nap = (double)(at - live->now) + 1; /* only retention: read again once it ends */
            }
        }
    wait_or_block:
        if (kvr_mono_s() + nap <= deadline) {
            if (o->json_log)
                json_line(&r, "waiting", json_pack("{s:s,s:f}", "for", reasons, "seconds", nap));
            say(&r, "waiting for: %s", reasons);
            for (double until = kvr_mono_s() + nap; kvr_mono_s() < until;) {
                if (o->stop && *o->stop)
                    break;
                kvr_sleep_s(0.1);
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
        if (o->requeue_after) {
            bool any_moment;
            int64_t at = next_opening(plan, &any_moment);
            *o->requeue_after = !any_moment && at > live->now ? at - live->now : 0;
        }
        *out = KVR_APPLY_BLOCKED;
        rc = 1;
    round_done:
        wave_release(&w);
        kvr_plan_free(plan);
        kvr_live_free(live);
        kvr_apply_markers_free(dig, ndig);
        if (rc != 0)
            break;
    }
    verifying_clear(&pend);
    kvr_scope_free(scope);
    return rc < 0 ? rc : 0;
}
