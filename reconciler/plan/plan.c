/*
 * The plan builder's frame: step, gate and change bookkeeping, hash-indexed lookups over the
 * inputs and the steps made so far (an estate has tens of thousands of objects: no pass may
 * search linearly per object), the entry point that runs the passes in order, and freeing.
 * The passes themselves live in passes.c and retire.c; each is small and looks at one kind of
 * object, in the manner of Terraform's graph builder.
 */
#include "build.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void pb_oom(pb *b)
{
    if (!b->rc)
        b->rc = kvr_error_set(b->err, KVR_ENOMEM, "out of memory while planning");
}

char *pb_printf(pb *b, const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    s = kvr_vasprintf(fmt, ap);
    va_end(ap);
    if (!s)
        pb_oom(b);
    return s;
}

static char *dup_or_null(pb *b, const char *s)
{
    char *d;
    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        pb_oom(b);
    return d;
}

size_t pb_step(pb *b, kvr_step_kind kind, kvr_action action, const char *vault, kvr_pos pos,
               const char *object, const char *fmt, ...)
{
    kvr_step *s;
    va_list ap;
    char buf[512];
    if (b->rc)
        return NONE;
    if (kvr_grow((void **)&b->p->steps, &b->cap, b->p->nsteps + 1, sizeof(*s)) < 0) {
        pb_oom(b);
        return NONE;
    }
    s = &b->p->steps[b->p->nsteps];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->action = action;
    s->pos = pos;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->vault = dup_or_null(b, vault);
    s->object = dup_or_null(b, object);
    s->summary = dup_or_null(b, buf);
    return b->p->nsteps++;
}

static uint64_t step_hash(kvr_step_kind kind, const char *vault, const char *name)
{
    return kvr_hash_ci(kvr_hash_ci(kvr_hash_mix((uint64_t)kind + 1), vault), name);
}

void pb_name(pb *b, size_t s, const char *name, const char *version, const char *extra)
{
    kvr_step *st;
    if (s == NONE || b->rc)
        return;
    st = &b->p->steps[s];
    assert(!st->name); /* the step index keys on the first name */
    st->name = dup_or_null(b, name);
    st->version = dup_or_null(b, version);
    st->extra = dup_or_null(b, extra);
    if (st->name && kvr_index_put(&b->steps, step_hash(st->kind, st->vault, st->name), s) < 0)
        pb_oom(b);
}

void pb_dep(pb *b, size_t s, size_t dep)
{
    kvr_step *st;
    size_t *d;
    if (s == NONE || dep == NONE || s == dep || b->rc)
        return;
    st = &b->p->steps[s];
    for (size_t i = 0; i < st->ndeps; i++)
        if (st->deps[i] == dep)
            return;
    d = realloc(st->deps, (st->ndeps + 1) * sizeof(*d));
    if (!d) {
        pb_oom(b);
        return;
    }
    d[st->ndeps++] = dep;
    st->deps = d;
}

void pb_gate(pb *b, size_t s, kvr_gate_kind kind, bool open, int64_t opens_at, const char *fmt,
             ...)
{
    kvr_step *st;
    kvr_gate *g;
    va_list ap;
    char buf[512];
    if (s == NONE || b->rc)
        return;
    st = &b->p->steps[s];
    g = realloc(st->gates, (st->ngates + 1) * sizeof(*g));
    if (!g) {
        pb_oom(b);
        return;
    }
    st->gates = g;
    g = &g[st->ngates++];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    g->kind = kind;
    g->open = open;
    g->opens_at = open ? 0 : opens_at;
    g->reason = dup_or_null(b, buf);
}

void pb_change(pb *b, size_t s, const char *field, const char *from, const char *to,
               bool sensitive)
{
    kvr_step *st;
    kvr_change *c;
    if (s == NONE || b->rc)
        return;
    st = &b->p->steps[s];
    c = realloc(st->changes, (st->nchanges + 1) * sizeof(*c));
    if (!c) {
        pb_oom(b);
        return;
    }
    st->changes = c;
    c = &c[st->nchanges++];
    c->field = dup_or_null(b, field);
    c->from = dup_or_null(b, from);
    c->to = dup_or_null(b, to);
    c->sensitive = sensitive;
}

void pb_hold(pb *b, const char *vault, const char *object, const char *fmt, ...)
{
    kvr_hold *h;
    va_list ap;
    char buf[512];
    if (b->rc)
        return;
    h = realloc(b->p->holds, (b->p->nholds + 1) * sizeof(*h));
    if (!h) {
        pb_oom(b);
        return;
    }
    b->p->holds = h;
    h = &h[b->p->nholds++];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    h->vault = dup_or_null(b, vault);
    h->object = dup_or_null(b, object);
    h->reason = dup_or_null(b, buf);
}

void pb_finding(pb *b, kvr_finding_level level, const char *vault, const char *object,
                const char *fmt, ...)
{
    kvr_finding *f;
    va_list ap;
    char buf[512];
    if (b->rc)
        return;
    f = realloc(b->p->findings, (b->p->nfindings + 1) * sizeof(*f));
    if (!f) {
        pb_oom(b);
        return;
    }
    b->p->findings = f;
    f = &f[b->p->nfindings++];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    f->level = level;
    f->vault = dup_or_null(b, vault);
    f->object = dup_or_null(b, object);
    f->message = dup_or_null(b, buf);
}

void pb_unmanaged(pb *b, const char *vault, const char *kind, const char *name, const char *note)
{
    kvr_unmanaged_object *u;
    if (b->rc)
        return;
    u = realloc(b->p->unmanaged, (b->p->nunmanaged + 1) * sizeof(*u));
    if (!u) {
        pb_oom(b);
        return;
    }
    b->p->unmanaged = u;
    u = &u[b->p->nunmanaged++];
    u->vault = dup_or_null(b, vault);
    u->kind = dup_or_null(b, kind);
    u->name = dup_or_null(b, name);
    u->note = dup_or_null(b, note);
}

typedef struct step_probe {
    const pb *b;
    kvr_step_kind kind;
    const char *vault, *name;
} step_probe;

static bool step_is(const void *arg, size_t i)
{
    const step_probe *p = arg;
    const kvr_step *s = &p->b->p->steps[i];
    if (s->kind != p->kind || !s->name || !kvr_str_ieq(s->name, p->name))
        return false;
    if ((p->vault == NULL) != (s->vault == NULL))
        return false;
    return !p->vault || kvr_str_ieq(p->vault, s->vault);
}

size_t pb_find(const pb *b, kvr_step_kind kind, const char *vault, const char *name)
{
    step_probe p = {b, kind, vault, name};
    size_t i;
    if (!name)
        return NONE;
    i = kvr_index_first(&b->steps, step_hash(kind, vault, name), step_is, &p);
    return i == KVR_INDEX_NONE ? NONE : i;
}

/* ---- lookups over the inputs -------------------------------------------------------------- */

typedef struct probe {
    const pb *b;
    const char *a, *c, *d;
} probe;

static uint64_t hash3(const char *a, const char *c, const char *d)
{
    return kvr_hash_ci(kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, a), c), d);
}

static bool live_vault_is(const void *arg, size_t i)
{
    const probe *p = arg;
    return kvr_str_ieq(p->b->l->vaults[i].name, p->a);
}

static bool live_key_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_live_key *k = &p->b->l->keys[i];
    return kvr_str_ieq(k->vault, p->a) && kvr_str_ieq(k->name, p->c);
}

static bool live_secret_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_live_secret *s = &p->b->l->secrets[i];
    return kvr_str_ieq(s->vault, p->a) && kvr_str_ieq(s->name, p->c);
}

static bool live_deleted_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_live_deleted *d = &p->b->l->deleted[i];
    /* kind compares exactly; the hash folds it, which only widens the candidates */
    return kvr_str_ieq(d->vault, p->a) && d->kind && p->c && strcmp(d->kind, p->c) == 0 &&
           kvr_str_ieq(d->name, p->d);
}

static bool live_role_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_live_role *r = &p->b->l->roles[i];
    return kvr_str_ieq(r->scope, p->a) && kvr_str_ieq(r->role_id, p->c) &&
           kvr_str_ieq(r->principal_id, p->d);
}

static bool live_cert_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_live_cert *c = &p->b->l->certs[i];
    return kvr_str_ieq(c->vault, p->a) && kvr_str_ieq(c->name, p->c) && c->x5t &&
           strcmp(c->x5t, p->d) == 0;
}

static bool digest_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_value_digest *d = &p->b->in->digests[i];
    return kvr_str_ieq(d->vault, p->a) && kvr_str_ieq(d->name, p->c);
}

const kvr_live_vault *pb_live_vault(const pb *b, const char *name)
{
    probe p = {b, name, NULL, NULL};
    size_t i =
        name ? kvr_index_first(&b->live_vaults, kvr_hash_ci(KVR_HASH_SEED, name), live_vault_is, &p)
             : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : &b->l->vaults[i];
}

const kvr_live_key *pb_live_key(const pb *b, const char *vault, const char *name)
{
    probe p = {b, vault, name, NULL};
    size_t i = vault && name
                   ? kvr_index_first(&b->live_keys, hash3(vault, name, NULL), live_key_is, &p)
                   : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : &b->l->keys[i];
}

const kvr_live_secret *pb_live_secret(const pb *b, const char *vault, const char *name)
{
    probe p = {b, vault, name, NULL};
    size_t i = vault && name
                   ? kvr_index_first(&b->live_secrets, hash3(vault, name, NULL), live_secret_is, &p)
                   : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : &b->l->secrets[i];
}

const kvr_live_deleted *pb_live_deleted(const pb *b, const char *vault, const char *kind,
                                        const char *name)
{
    probe p = {b, vault, kind, name};
    size_t i = vault && kind && name ? kvr_index_first(&b->live_deleted, hash3(vault, kind, name),
                                                       live_deleted_is, &p)
                                     : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : &b->l->deleted[i];
}

static bool declared_role_is(const void *arg, size_t i)
{
    const probe *p = arg;
    const kvr_role_assignment *r = &p->b->d->roles[i];
    /* a: the scope, c: the role, d: the app */
    return r->app && strcmp(r->app, p->d) == 0 && kvr_str_ieq(r->role_id, p->c) &&
           p->b->declared_scopes[i] && kvr_str_ieq(p->b->declared_scopes[i], p->a);
}

bool pb_role_declared(const pb *b, const char *app, const char *scope, const char *role_id)
{
    probe p = {b, scope, role_id, app};
    if (!app || !scope || !role_id || !b->declared_scopes)
        return false;
    return kvr_index_first(&b->declared_roles, hash3(scope, role_id, app), declared_role_is, &p) !=
           KVR_INDEX_NONE;
}

bool pb_live_role(const pb *b, const char *scope, const char *role_id, const char *principal)
{
    probe p = {b, scope, role_id, principal};
    if (!scope || !role_id || !principal)
        return false;
    return kvr_index_first(&b->live_roles, hash3(scope, role_id, principal), live_role_is, &p) !=
           KVR_INDEX_NONE;
}

bool pb_live_cert(const pb *b, const char *vault, const char *name, const char *x5t)
{
    probe p = {b, vault, name, x5t};
    if (!vault || !name || !x5t)
        return false;
    return kvr_index_first(&b->live_certs, hash3(vault, name, NULL), live_cert_is, &p) !=
           KVR_INDEX_NONE;
}

const char *pb_digest(const pb *b, const char *vault, const char *name)
{
    probe p = {b, vault, name, NULL};
    size_t i = vault && name ? kvr_index_first(&b->digests, hash3(vault, name, NULL), digest_is, &p)
                             : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : b->in->digests[i].digest;
}

/* Fills the tables over the inputs. Elements missing a key part are left out: the linear
   lookups could never match them either. */
static int index_inputs(pb *b)
{
    const kvr_live *l = b->l;
    int rc = 0;
    rc |= kvr_index_reserve(&b->live_vaults, l->nvaults);
    rc |= kvr_index_reserve(&b->live_keys, l->nkeys);
    rc |= kvr_index_reserve(&b->live_secrets, l->nsecrets);
    rc |= kvr_index_reserve(&b->live_deleted, l->ndeleted);
    rc |= kvr_index_reserve(&b->live_roles, l->nroles);
    rc |= kvr_index_reserve(&b->live_certs, l->ncerts);
    rc |= kvr_index_reserve(&b->digests, b->in->ndigests);
    for (size_t i = 0; i < l->nvaults && !rc; i++)
        if (l->vaults[i].name)
            rc = kvr_index_put(&b->live_vaults, kvr_hash_ci(KVR_HASH_SEED, l->vaults[i].name), i);
    for (size_t i = 0; i < l->nkeys && !rc; i++)
        if (l->keys[i].vault && l->keys[i].name)
            rc = kvr_index_put(&b->live_keys, hash3(l->keys[i].vault, l->keys[i].name, NULL), i);
    for (size_t i = 0; i < l->nsecrets && !rc; i++)
        if (l->secrets[i].vault && l->secrets[i].name)
            rc = kvr_index_put(&b->live_secrets,
                               hash3(l->secrets[i].vault, l->secrets[i].name, NULL), i);
    for (size_t i = 0; i < l->ndeleted && !rc; i++)
        if (l->deleted[i].vault && l->deleted[i].kind && l->deleted[i].name)
            rc = kvr_index_put(&b->live_deleted,
                               hash3(l->deleted[i].vault, l->deleted[i].kind, l->deleted[i].name),
                               i);
    for (size_t i = 0; i < l->nroles && !rc; i++)
        if (l->roles[i].scope && l->roles[i].role_id && l->roles[i].principal_id)
            rc = kvr_index_put(
                &b->live_roles,
                hash3(l->roles[i].scope, l->roles[i].role_id, l->roles[i].principal_id), i);
    for (size_t i = 0; i < l->ncerts && !rc; i++)
        if (l->certs[i].vault && l->certs[i].name)
            rc = kvr_index_put(&b->live_certs, hash3(l->certs[i].vault, l->certs[i].name, NULL), i);
    for (size_t i = 0; i < b->in->ndigests && !rc; i++)
        if (b->in->digests[i].vault && b->in->digests[i].name)
            rc = kvr_index_put(&b->digests,
                               hash3(b->in->digests[i].vault, b->in->digests[i].name, NULL), i);
    /* the scope of each declared role assignment, as ARM names it */
    rc |= kvr_index_reserve(&b->declared_roles, b->d->nroles);
    if (!rc && !(b->declared_scopes = calloc(b->d->nroles + 1, sizeof(*b->declared_scopes))))
        rc = -1;
    for (size_t i = 0; i < b->d->nroles && !rc; i++) {
        const kvr_role_assignment *r = &b->d->roles[i];
        const kvr_vault *v = r->vault ? kvr_estate_vault(b->d, r->vault) : NULL;
        char scope[512];
        if (!v || !r->app || !r->role_id)
            continue;
        kvr_plan_scope(scope, sizeof(scope),
                       b->in->subscription ? b->in->subscription : "{subscription}",
                       v->resource_group, v->name, r->key);
        if (!(b->declared_scopes[i] = strdup(scope)))
            rc = -1;
        else
            rc = kvr_index_put(&b->declared_roles, hash3(scope, r->role_id, r->app), i);
    }
    if (rc)
        return kvr_error_set(b->err, KVR_ENOMEM, "out of memory while planning");
    return 0;
}

static void index_release(pb *b)
{
    kvr_index_release(&b->live_vaults);
    kvr_index_release(&b->live_keys);
    kvr_index_release(&b->live_secrets);
    kvr_index_release(&b->live_deleted);
    kvr_index_release(&b->live_roles);
    kvr_index_release(&b->live_certs);
    kvr_index_release(&b->digests);
    kvr_index_release(&b->steps);
    kvr_index_release(&b->declared_roles);
    for (size_t i = 0; b->declared_scopes && i < b->d->nroles; i++)
        free(b->declared_scopes[i]);
    free(b->declared_scopes);
    b->declared_scopes = NULL;
}

void pb_retention_gate(pb *b, size_t s, int64_t since, int64_t period, const char *start_event)
{
    char iso[32], from[KVR_TIME_ISO_MAX];
    kvr_duration_iso(iso, sizeof(iso), period);
    if (since <= 0) {
        pb_gate(b, s, KVR_GATE_RETENTION, false, 0, "retention %s, starting when %s", iso,
                start_event);
        return;
    }
    kvr_time_iso(from, sizeof(from), since);
    pb_gate(b, s, KVR_GATE_RETENTION, b->now >= since + period, since + period,
            "retention %s since %s", iso, from);
}


int64_t kvr_plan_tag_time(const kvr_tags *t)
{
    const char *v = kvr_tags_get(t, KVR_TAG_SUPERSEDED);
    char *end;
    long long n;
    if (!v)
        return 0;
    n = strtoll(v, &end, 10);
    return (*end || n <= 0) ? 0 : (int64_t)n;
}

bool kvr_plan_version_referenced(const kvr_live *l, const char *vault, const char *key,
                                 const char *version, const kvr_live_profile **by)
{
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *p = &l->profiles[i];
        if ((p->status == KVR_PROFILE_APPLYING || p->status == KVR_PROFILE_USED) &&
            kvr_str_ieq(p->vault, vault) && kvr_str_ieq(p->key, key) &&
            (!version || kvr_str_ieq(p->key_version, version))) {
            if (by)
                *by = p;
            return true;
        }
    }
    return false;
}

void kvr_plan_scope(char *buf, size_t size, const char *sub, const char *rg, const char *vault,
                    const char *key)
{
    if (key)
        snprintf(buf, size,
                 "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s/keys/%s",
                 sub, rg, vault, key);
    else
        snprintf(buf, size,
                 "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", sub,
                 rg, vault);
}

/* ---- credentialRotation ------------------------------------------------------------------- */

typedef struct generation {
    const char *name; /* "YYYY-MM-DD", the live credential's (after "kvr:") */
    int64_t start;
} generation;

static int generation_cmp(const void *a, const void *b)
{
    return strcmp(((const generation *)a)->name, ((const generation *)b)->name);
}

/* One generation of app a as a credential, its strings in the plan's pool. */
static bool rotation_cred(pb *b, kvr_credential *cr, const kvr_app *a, const char *name)
{
    const kvr_credential_rotation *r = &a->rotation;
    char secret[160];
    snprintf(secret, sizeof(secret), "%s-%s", r->secret_prefix, name);
    memset(cr, 0, sizeof(*cr));
    cr->pos = r->pos;
    cr->lifetime = r->every + r->overlap; /* the next one is due `overlap` before its end */
    cr->overlap = r->overlap;
    cr->name = kvr_strpool_dup(&b->p->opstrings, name);
    cr->store_vault = r->store_vault;
    cr->store_secret = kvr_strpool_dup(&b->p->opstrings, secret);
    return cr->name && cr->store_secret;
}

/*
 * The generations app a declares now: its newest one (kvreconcile's client secrets named by a
 * day), and a new one named by today (the service's clock) once the newest is `every` old or
 * there is none; the one before the newest while the newest is younger than `overlap`. The rest
 * are no longer declared, and are retired as any removed credential is. Returns the number made
 * (1 or 2) into out[2], 0 when out of memory.
 */
static size_t rotation_generations(pb *b, const kvr_app *a, kvr_credential out[2])
{
    const kvr_live_app *la = kvr_live_app_get(b->l, a->display_name);
    size_t plen = strlen(KVR_CRED_PREFIX), n = 0, keep = 0;
    generation *g = calloc(la && la->ncreds ? la->ncreds : 1, sizeof(*g));
    const char *names[2];
    char today[16];
    if (!g)
        return 0;
    for (size_t i = 0; la && i < la->ncreds; i++) {
        const kvr_live_credential *lc = &la->creds[i];
        const char *name = lc->display_name;
        bool seen = false;
        if (!name || strncmp(name, KVR_CRED_PREFIX, plen) != 0 || !kvr_is_day_name(name + plen))
            continue;
        for (size_t j = 0; j < n && !seen; j++)
            if (strcmp(g[j].name, name + plen) == 0) { /* one generation, two secrets */
                seen = true;
                if (lc->start > g[j].start)
                    g[j].start = lc->start;
            }
        if (!seen)
            g[n++] = (generation){name + plen, lc->start};
    }
    if (n > 1)
        qsort(g, n, sizeof(*g), generation_cmp);
    if (n == 0 || b->now - g[n - 1].start >= a->rotation.every) {
        kvr_day_name(today, sizeof(today), b->now);
        if (n > 0)
            names[keep++] = g[n - 1].name; /* overlaps the new one */
        names[keep++] = today;
    } else {
        if (n > 1 && b->now < g[n - 1].start + a->rotation.overlap)
            names[keep++] = g[n - 2].name;
        names[keep++] = g[n - 1].name;
    }
    for (size_t i = 0; i < keep; i++)
        if (!rotation_cred(b, &out[i], a, names[i]))
            keep = 0;
    free(g);
    return keep;
}

/* The plan's copy of the desired state with every credentialRotation resolved (kvr_plan). */
static int resolve_rotations(pb *b)
{
    const kvr_estate *d = b->in->desired;
    kvr_estate *e;
    bool any = false;
    for (size_t i = 0; i < d->napps; i++)
        any |= d->apps[i].rotation.set;
    if (!any)
        return 0;
    if (!(e = calloc(1, sizeof(*e))))
        return KVR_ENOMEM;
    *e = *d; /* the same arrays' order: the input's lookup tables stay right */
    b->p->resolved = e;
    e->apps = calloc(d->napps, sizeof(*e->apps));
    e->profiles = calloc(d->nprofiles ? d->nprofiles : 1, sizeof(*e->profiles));
    e->secrets = calloc(d->nsecrets ? d->nsecrets : 1, sizeof(*e->secrets));
    if (!e->apps || !e->profiles || !e->secrets)
        return KVR_ENOMEM;
    memcpy(e->apps, d->apps, d->napps * sizeof(*e->apps));
    memcpy(e->profiles, d->profiles, d->nprofiles * sizeof(*e->profiles));
    memcpy(e->secrets, d->secrets, d->nsecrets * sizeof(*e->secrets));
    for (size_t i = 0; i < d->napps; i++) {
        kvr_app *a = &e->apps[i];
        kvr_credential two[2];
        if (!a->rotation.set)
            continue;
        a->creds = NULL;
        a->ncreds = rotation_generations(b, a, two);
        if (!a->ncreds || !(a->creds = calloc(a->ncreds, sizeof(*a->creds))))
            return KVR_ENOMEM;
        memcpy(a->creds, two, a->ncreds * sizeof(*a->creds));
    }
    for (size_t i = 0; i < e->nprofiles; i++) {
        kvr_profile *p = &e->profiles[i];
        const kvr_app *a = p->app ? kvr_estate_app(e, p->app) : NULL;
        if (a && a->rotation.set && p->credential && strcmp(p->credential, KVR_CRED_LATEST) == 0)
            p->credential = a->creds[a->ncreds - 1].name;
    }
    for (size_t i = 0; i < e->nsecrets; i++) {
        kvr_secret *s = &e->secrets[i];
        const kvr_app *a = s->source == KVR_SECRET_FROM_APP_CREDENTIAL && s->app
                               ? kvr_estate_app(e, s->app)
                               : NULL;
        if (a && a->rotation.set && s->credential && strcmp(s->credential, KVR_CRED_LATEST) == 0)
            s->credential = a->creds[a->ncreds - 1].name;
    }
    return 0;
}

/* A rotating app declares no credentials itself (the loader refuses both): its creds are ours. */
static void resolved_free(kvr_estate *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->apps && i < e->napps; i++)
        if (e->apps[i].rotation.set)
            free(e->apps[i].creds);
    free(e->apps);
    free(e->profiles);
    free(e->secrets);
    free(e);
}

int kvr_plan_build(kvr_plan **out, const kvr_plan_input *in, kvr_error *err)
{
    pb b;
    *out = NULL;
    memset(&b, 0, sizeof(b));
    b.p = calloc(1, sizeof(*b.p));
    if (!b.p)
        return kvr_error_set(err, KVR_ENOMEM, "out of memory while planning");
    b.in = in;
    b.d = in->desired;
    b.l = in->live;
    b.now = in->live->now;
    b.err = err;
    b.p->now = b.now;

    if (resolve_rotations(&b) < 0) {
        kvr_plan_free(b.p);
        return kvr_error_set(err, KVR_ENOMEM, "out of memory while planning");
    }
    if (b.p->resolved)
        b.d = b.p->resolved;
    b.rc = index_inputs(&b);
    if (!b.rc) {
        kvr_plan_pass_in_use(&b); /* first: what restores the ability to decrypt */
        kvr_plan_pass_vaults(&b);
        kvr_plan_pass_copies(&b);
        kvr_plan_pass_apps(&b);
        kvr_plan_pass_access(&b);
        kvr_plan_pass_keys(&b);
        kvr_plan_pass_roles(&b);
        kvr_plan_pass_secrets(&b);
        kvr_plan_pass_profiles(&b);
        kvr_plan_pass_retire(&b);
        kvr_plan_pass_unmanaged(&b);
        kvr_plan_pass_findings(&b);
        kvr_plan_pass_ops(&b);
    }
    index_release(&b); /* ordering renumbers the steps: pb_find is over */
    if (!b.rc)
        b.rc = kvr_plan_order(&b);
    if (b.rc) {
        kvr_plan_free(b.p);
        return b.rc;
    }
    *out = b.p;
    return 0;
}

void kvr_plan_free(kvr_plan *p)
{
    if (!p)
        return;
    resolved_free(p->resolved);
    for (size_t i = 0; i < p->nsteps; i++) {
        kvr_step *s = &p->steps[i];
        free(s->vault);
        free(s->object);
        free(s->summary);
        free(s->name);
        free(s->version);
        free(s->extra);
        for (size_t c = 0; c < s->nchanges; c++) {
            free(s->changes[c].field);
            free(s->changes[c].from);
            free(s->changes[c].to);
        }
        free(s->changes);
        free(s->deps);
        for (size_t g = 0; g < s->ngates; g++)
            free(s->gates[g].reason);
        free(s->gates);
        free(s->ops);
    }
    free(p->steps);
    for (size_t i = 0; i < p->nblocks; i++)
        free(p->blocks[i]);
    free(p->blocks);
    kvr_strpool_release(&p->opstrings);
    for (size_t i = 0; i < p->nholds; i++) {
        free(p->holds[i].vault);
        free(p->holds[i].object);
        free(p->holds[i].reason);
    }
    free(p->holds);
    for (size_t i = 0; i < p->nfindings; i++) {
        free(p->findings[i].vault);
        free(p->findings[i].object);
        free(p->findings[i].message);
    }
    free(p->findings);
    for (size_t i = 0; i < p->nunmanaged; i++) {
        free(p->unmanaged[i].vault);
        free(p->unmanaged[i].kind);
        free(p->unmanaged[i].name);
        free(p->unmanaged[i].note);
    }
    free(p->unmanaged);
    free(p);
}

bool kvr_step_waiting(const kvr_step *s)
{
    for (size_t i = 0; i < s->ngates; i++)
        if (!s->gates[i].open)
            return true;
    return false;
}

void kvr_plan_summarize(const kvr_plan *p, kvr_plan_summary *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < p->nsteps; i++) {
        const kvr_step *s = &p->steps[i];
        if (kvr_step_waiting(s))
            out->waiting++;
        else if (s->action == KVR_ACTION_CREATE)
            out->create++;
        else if (s->action == KVR_ACTION_CHANGE)
            out->change++;
        else
            out->retire++;
    }
}

const char *kvr_step_kind_name(kvr_step_kind k)
{
    static const char *const names[] = {
        "vault.create",       "vault.recover",     "vault.update",       "vault.markUnused",
        "vault.retire",       "app.create",        "servicePrincipal.create",
        "credential.add",     "credential.replaceOrphan", "credential.markSuperseded",
        "credential.remove",  "roleAssignment.create", "key.create",      "key.recover",
        "key.newVersion",     "key.update",        "key.rotationPolicy", "key.markSuperseded",
        "key.disableVersion", "key.delete",        "secret.set",         "secret.recover",
        "secret.update",      "secret.copy",       "certificate.copy",   "copy.verify",
        "profile.create",     "profile.setCredentials", "profile.apply",  "profile.delete",
        "key.enableVersion",  "roleAssignment.delete", "vault.access", "credential.moveStore", "secret.markSuperseded", "secret.delete",
        "app.markRetiring",   "app.retire",        "app.keep",           "app.restore",
    };
    return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

const char *kvr_gate_kind_name(kvr_gate_kind k)
{
    switch (k) {
    case KVR_GATE_PROFILE_USED:
        return "profileUsed";
    case KVR_GATE_RETENTION:
        return "retention";
    case KVR_GATE_UNREFERENCED:
        return "unreferenced";
    case KVR_GATE_ROLE_EFFECTIVE:
        return "roleEffective";
    case KVR_GATE_COPY_VERIFIED:
        return "copyVerified";
    }
    return "?";
}
