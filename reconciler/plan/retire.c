/*
 * The retirement pass: what the desired state no longer needs, and when it may go. This is
 * where data can be lost, so every step here is gated, and gates are evaluated against the live
 * state and the service's clock only:
 *
 *   superseded   no profile in Applying or Used references the object any more; a tag with the
 *                service's time is written on the object (the "mark" step), so that retention is
 *                counted from the same instant by every runner, after any crash;
 *   unreferenced no profile at all references it (an Inactive profile could be re-activated);
 *   retention    the retention period has passed since the mark.
 *
 * Nothing that is referenced or within retention is ever disabled or deleted.
 */
#include "build.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any live profile (whatever its status) referencing vault/key/version; NULL fields match all. */
static const kvr_live_profile *any_reference(const kvr_live *l, const char *vault, const char *key,
                                             const char *version)
{
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *p = &l->profiles[i];
        if (vault && !kvr_str_ieq(p->vault, vault))
            continue;
        if (key && !kvr_str_ieq(p->key, key))
            continue;
        if (version && !kvr_str_ieq(p->key_version, version))
            continue;
        return p;
    }
    return NULL;
}

static const kvr_live_profile *active_reference(const kvr_live *l, const char *vault,
                                                const char *key, const char *version)
{
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *p = &l->profiles[i];
        if (p->status != KVR_PROFILE_APPLYING && p->status != KVR_PROFILE_USED)
            continue;
        if (vault && !kvr_str_ieq(p->vault, vault))
            continue;
        if (key && !kvr_str_ieq(p->key, key))
            continue;
        if (version && !kvr_str_ieq(p->key_version, version))
            continue;
        return p;
    }
    return NULL;
}

/* ---- dependents: Azure resources outside the estate that use a vault ----------------------- */

/* The acknowledgement in vault `vault` of dependent `id` for the object (key, secret, or with
   both NULL the vault itself), or NULL. */
static const kvr_dependent_ack *dependent_ack(const pb *b, const char *vault, const char *id,
                                              const char *key, const char *secret)
{
    const kvr_vault *v = kvr_estate_vault(b->d, vault);
    for (size_t i = 0; v && i < v->nacks; i++) {
        const kvr_dependent_ack *a = &v->acks[i];
        if (!kvr_str_ieq(a->resource_id, id))
            continue;
        if ((key || a->key) && (!key || !a->key || !kvr_str_ieq(key, a->key)))
            continue;
        if ((secret || a->secret) && (!secret || !a->secret || !kvr_str_ieq(secret, a->secret)))
            continue;
        return a;
    }
    return NULL;
}

/* What a dependent uses, for a gate's reason: "key 'cmk' version 3f2a1b0c", "key 'cmk'
   (versionless: its current version)", "secret 'db'", "the vault". */
static void dependent_use(char *buf, size_t size, const kvr_live_dependent *d)
{
    if (d->key && d->version)
        snprintf(buf, size, "key '%s' version %.8s", d->key, d->version);
    else if (d->key)
        snprintf(buf, size, "key '%s' (versionless: its current version)", d->key);
    else if (d->secret && d->setting)
        snprintf(buf, size, "secret '%s' (app setting '%s')", d->secret, d->setting);
    else if (d->secret)
        snprintf(buf, size, "secret '%s'", d->secret);
    else
        snprintf(buf, size, "the vault");
}

/*
 * One gate per dependent that uses what step s retires: closed, naming the dependent's resource
 * id and what to do, unless the desired state acknowledges that dependent for this object (then
 * open, saying so, so that a reviewer sees the acknowledgement take effect). The object is a key
 * version (key and version), a key (key), a secret (secret: an App Service reference), or the
 * vault (all NULL: every dependent of it). A versionless reference uses the key's latest version
 * and the key. Returns how many are closed.
 */
static size_t dependent_gates(pb *b, size_t s, const char *vault, const char *key,
                              const char *version, bool latest, const char *secret,
                              const char *move_to)
{
    size_t closed = 0;
    for (size_t i = 0; s != NONE && i < b->l->ndependents; i++) {
        const kvr_live_dependent *d = &b->l->dependents[i];
        const kvr_dependent_ack *a;
        char use[200];
        if (!kvr_str_ieq(d->vault, vault))
            continue;
        if (key && (!d->key || !kvr_str_ieq(d->key, key)))
            continue;
        if (secret && (!d->secret || !kvr_str_ieq(d->secret, secret)))
            continue;
        if (version && d->version && !kvr_str_ieq(d->version, version))
            continue; /* another version */
        if (version && !d->version && !latest)
            continue; /* versionless: it uses the latest version only */
        dependent_use(use, sizeof(use), d);
        a = dependent_ack(b, vault, d->id, key, secret);
        if (a) {
            pb_gate(b, s, KVR_GATE_UNREFERENCED, true, 0,
                    "%s '%s' (%s) uses %s; its retirement is acknowledged at %s:%u:%u",
                    kvr_dependent_kind(d->type), d->name, d->id, use,
                    a->pos.file ? a->pos.file : "?", a->pos.line, a->pos.col);
            continue;
        }
        closed++;
        pb_gate(b, s, KVR_GATE_UNREFERENCED, false, 0, "%s '%s' (%s) uses %s; %s first",
                kvr_dependent_kind(d->type), d->name, d->id, use, move_to);
    }
    return closed;
}

/* pb_find compares vaults; profile steps carry one. Search by name only. */
static size_t find_by_name(const pb *b, kvr_step_kind kind, const char *name)
{
    for (size_t i = 0; i < b->p->nsteps; i++)
        if (b->p->steps[i].kind == kind && b->p->steps[i].name &&
            strcmp(b->p->steps[i].name, name) == 0)
            return i;
    return NONE;
}

static size_t active_apply(const pb *b)
{
    /* found once per plan: the profile pass, which makes it, has run; this pass adds none */
    return b->active_apply;
}

/* The gate that waits for the active profile to be Used, if it is not yet. */
static bool used_gate(pb *b, size_t s)
{
    const kvr_live_profile *lp;
    if (!b->d->active)
        return false;
    lp = kvr_live_profile_get(b->l, b->d->active);
    if (lp && lp->status == KVR_PROFILE_USED)
        return false;
    pb_gate(b, s, KVR_GATE_PROFILE_USED, false, 0, "profile '%s' to become Used", b->d->active);
    return true;
}

static void superseded_gates(pb *b, size_t s, const kvr_live_profile *active_user,
                             const kvr_live_profile *any_user, int64_t since, int64_t period)
{
    if (active_user)
        pb_gate(b, s, KVR_GATE_UNREFERENCED, false, 0, "profile '%s' (%s) still uses it",
                active_user->name, kvr_profile_status_name(active_user->status));
    else if (any_user)
        pb_gate(b, s, KVR_GATE_UNREFERENCED, false, 0,
                "profile '%s' (%s) still references it; it goes when that profile is retired",
                any_user->name, kvr_profile_status_name(any_user->status));
    else
        pb_gate(b, s, KVR_GATE_UNREFERENCED, true, 0, "no profile references it");
    pb_retention_gate(b, s, since, period, "no profile in Applying or Used references it");
}

/*
 * When the service stopped needing an object: the latest moment a profile referencing it went
 * Inactive (the service reports it), else now. This is what a mark step records.
 */
static int64_t released_at(const pb *b, const char *vault, const char *key, const char *version,
                           const char *client_id, const char *credential)
{
    int64_t t = 0;
    for (size_t i = 0; i < b->l->nprofiles; i++) {
        const kvr_live_profile *p = &b->l->profiles[i];
        if (p->status != KVR_PROFILE_INACTIVE || p->status_since <= 0)
            continue;
        if (vault && !kvr_str_ieq(p->vault, vault))
            continue;
        if (key && !kvr_str_ieq(p->key, key))
            continue;
        if (version && !kvr_str_ieq(p->key_version, version))
            continue;
        if (client_id && (!p->client_id || strcmp(p->client_id, client_id) != 0))
            continue;
        if (credential && (!p->credential || strcmp(p->credential, credential) != 0))
            continue;
        if (p->status_since > t)
            t = p->status_since;
    }
    return t && t <= b->now ? t : b->now;
}

static void mark_time(pb *b, size_t mark, int64_t t)
{
    char buf[32];
    if (mark == NONE)
        return;
    char iso[KVR_TIME_ISO_MAX];
    snprintf(buf, sizeof(buf), "%lld", (long long)t);
    free(b->p->steps[mark].extra);
    b->p->steps[mark].extra = pb_printf(b, "%s", buf);
    kvr_time_iso(iso, sizeof(iso), t);
    pb_change(b, mark, KVR_TAG_SUPERSEDED, NULL, iso, false);
}

/*
 * The mark step of an object a profile in Applying or Used still uses: shown now, so that the
 * plan holds every step its run will take, but waiting for that profile to let go; the time it
 * records is known only then (the step is planned again with it once its gate opens).
 */
static void mark_later(pb *b, size_t mark, const kvr_live_profile *user)
{
    free(b->p->steps[mark].extra);
    b->p->steps[mark].extra = pb_printf(b, "%s", KVR_PLAN_WHEN_RELEASED);
    pb_change(b, mark, KVR_TAG_SUPERSEDED, NULL, KVR_PLAN_WHEN_RELEASED, false);
    pb_gate(b, mark, KVR_GATE_UNREFERENCED, false, 0, "profile '%s' (%s) still uses it",
            user->name, kvr_profile_status_name(user->status));
}

/* ---- profiles ----------------------------------------------------------------------------- */

static void retire_profiles(pb *b)
{
    for (size_t i = 0; i < b->l->nprofiles; i++) {
        const kvr_live_profile *lp = &b->l->profiles[i];
        char object[160];
        size_t s;
        if (kvr_estate_profile(b->d, lp->name))
            continue;
        if (lp->status == KVR_PROFILE_FAILED) {
            pb_hold(b, lp->vault, NULL,
                    "profile '%s' is Failed: its data keys may still be wrapped with its key; it "
                    "is kept until the service reports otherwise",
                    lp->name);
            continue;
        }
        snprintf(object, sizeof(object), "profile '%s'", lp->name);
        s = pb_step(b, KVR_STEP_PROFILE_DELETE, KVR_ACTION_RETIRE, lp->vault, (kvr_pos){0},
                    object, "delete (no longer declared)");
        pb_name(b, s, lp->name, NULL, NULL);
        pb_dep(b, s, active_apply(b));
        if (lp->status == KVR_PROFILE_CREATED)
            continue; /* never applied: it never protected any data */
        if (!used_gate(b, s) &&
            (lp->status == KVR_PROFILE_APPLYING || lp->status == KVR_PROFILE_USED))
            pb_gate(b, s, KVR_GATE_UNREFERENCED, false, 0, "the profile is %s",
                    kvr_profile_status_name(lp->status));
        pb_retention_gate(b, s, lp->status == KVR_PROFILE_INACTIVE ? lp->status_since : 0,
                          b->d->retention.profiles, "it becomes Inactive");
    }
}

/* ---- key versions and keys ---------------------------------------------------------------- */

static bool version_kept(const pb *b, const kvr_key *k, const kvr_live_key *lk, size_t idx)
{
    const kvr_live_version *v = &lk->versions[idx];
    bool new_version = pb_find(b, KVR_STEP_KEY_NEW_VERSION, k->vault, k->name) != NONE;
    if (idx + 1 == lk->nversions && !new_version)
        return true; /* the latest stays, unless this plan makes a newer one */
    for (size_t i = 0; i < b->d->nprofiles; i++) {
        const kvr_profile *p = &b->d->profiles[i];
        const kvr_live_profile *lp;
        if (!kvr_str_ieq(p->vault, k->vault) || !kvr_str_ieq(p->key, k->name))
            continue;
        if (p->key_version && kvr_str_ieq(p->key_version, v->id))
            return true;
        lp = kvr_live_profile_get(b->l, p->name);
        if (lp && kvr_str_ieq(lp->key_version, v->id))
            return true;
    }
    return false;
}

static bool version_ours(const pb *b, const kvr_live_key *lk, const kvr_live_version *v)
{
    /* Versions the platform made on its own (rotation policy) and no profile ever used are
       not ours to retire: that is drift the platform makes on purpose. */
    return kvr_tags_get(&v->tags, KVR_TAG_GENERATION) ||
           any_reference(b->l, lk->vault, lk->name, v->id);
}

/* Is there a step of `kind` for this version of the key already (two profiles, one version)? */
static bool planned_version(const pb *b, kvr_step_kind kind, const kvr_live_key *lk,
                            const char *version)
{
    for (size_t i = 0; i < b->p->nsteps; i++) {
        const kvr_step *s = &b->p->steps[i];
        if (s->kind == kind && s->version && kvr_str_ieq(s->version, version) &&
            kvr_str_ieq(s->vault, lk->vault) && kvr_str_ieq(s->name, lk->name))
            return true;
    }
    return false;
}

static void retire_versions(pb *b, const kvr_key *k, const kvr_live_key *lk)
{
    for (size_t i = 0; i < lk->nversions; i++) {
        const kvr_live_version *v = &lk->versions[i];
        const kvr_live_profile *au, *any;
        int64_t since;
        size_t s, mark = NONE;
        char object[160];
        /* a disabled version is retired already, unless this plan enables it again */
        if ((!v->enabled && !planned_version(b, KVR_STEP_KEY_VERSION_ENABLE, lk, v->id)) ||
            version_kept(b, k, lk, i) || !version_ours(b, lk, v))
            continue;
        au = active_reference(b->l, k->vault, k->name, v->id);
        any = any_reference(b->l, k->vault, k->name, v->id);
        since = kvr_plan_tag_time(&v->tags);
        snprintf(object, sizeof(object), "key '%s' version %.8s", k->name, v->id);
        if (!since) {
            mark = pb_step(b, KVR_STEP_KEY_MARK_SUPERSEDED, KVR_ACTION_CHANGE, k->vault,
                           (kvr_pos){0}, object,
                           "record that it is superseded (tag " KVR_TAG_SUPERSEDED
                           "), starting its retention");
            pb_name(b, mark, k->name, v->id, NULL);
            if (au) {
                mark_later(b, mark, au);
                used_gate(b, mark);
            } else {
                since = released_at(b, k->vault, k->name, v->id, NULL, NULL);
                mark_time(b, mark, since);
            }
        }
        s = pb_step(b, KVR_STEP_KEY_VERSION_DISABLE, KVR_ACTION_RETIRE, k->vault, (kvr_pos){0},
                    object, "disable and expire (Key Vault cannot delete a single version)");
        pb_name(b, s, k->name, v->id, NULL);
        pb_dep(b, s, mark);
        pb_dep(b, s, active_apply(b));
        pb_dep(b, s, pb_find(b, KVR_STEP_KEY_NEW_VERSION, k->vault, k->name));
        if (au)
            used_gate(b, s);
        superseded_gates(b, s, au, any, since, b->d->retention.keys);
        dependent_gates(b, s, k->vault, k->name, v->id, i + 1 == lk->nversions, NULL,
                        "move it to another key version");
    }
}

/* Is the vault the source of a declared relocation? What it holds is the relocation's. */
static bool copy_source(const pb *b, const char *vault)
{
    for (size_t i = 0; i < b->d->nvaults; i++)
        if (b->d->vaults[i].copy_from.vault && kvr_str_ieq(b->d->vaults[i].copy_from.vault, vault))
            return true;
    return false;
}

/* Does `unmanaged: retire` retire what vault v holds undeclared? */
static bool retires_unmanaged(const pb *b, const kvr_vault *v)
{
    return v->unmanaged == KVR_UNMANAGED_RETIRE && !v->retire && !copy_source(b, v->name);
}

static void retire_undeclared_keys(pb *b)
{
    for (size_t i = 0; i < b->l->nkeys; i++) {
        const kvr_live_key *lk = &b->l->keys[i];
        const kvr_vault *v = kvr_estate_vault(b->d, lk->vault);
        const kvr_live_profile *au, *any;
        int64_t since = 0;
        bool ours = false, all_marked = true;
        size_t s, mark = NONE;
        char object[160];
        if (!v || v->retire || kvr_estate_key(b->d, lk->vault, lk->name))
            continue;
        for (size_t j = 0; j < lk->nversions; j++) {
            int64_t t = kvr_plan_tag_time(&lk->versions[j].tags);
            ours |= version_ours(b, lk, &lk->versions[j]);
            if (!t)
                all_marked = false;
            else if (t > since)
                since = t;
        }
        if (!ours && !retires_unmanaged(b, v))
            continue; /* not made by kvreconcile and never used by a profile: not ours */
        au = active_reference(b->l, lk->vault, lk->name, NULL);
        any = any_reference(b->l, lk->vault, lk->name, NULL);
        snprintf(object, sizeof(object), "key '%s'", lk->name);
        if (!all_marked) {
            since = 0;
            mark = pb_step(b, KVR_STEP_KEY_MARK_SUPERSEDED, KVR_ACTION_CHANGE, lk->vault,
                           (kvr_pos){0}, object, "record that every version is superseded");
            pb_name(b, mark, lk->name, NULL, NULL);
            if (au) {
                mark_later(b, mark, au);
                used_gate(b, mark);
            } else {
                since = released_at(b, lk->vault, lk->name, NULL, NULL, NULL);
                mark_time(b, mark, since);
            }
        }
        s = pb_step(b, KVR_STEP_KEY_DELETE, KVR_ACTION_RETIRE, lk->vault, (kvr_pos){0}, object,
                    ours ? "soft-delete the key, all versions (no longer declared; recoverable "
                           "for the vault's soft-delete days)"
                         : "soft-delete the key, all versions (not declared, and the vault says "
                           "unmanaged: retire; recoverable for the vault's soft-delete days, "
                           "never purged)");
        pb_name(b, s, lk->name, NULL, NULL);
        pb_dep(b, s, mark);
        pb_dep(b, s, active_apply(b));
        if (au)
            used_gate(b, s);
        superseded_gates(b, s, au, any, since, b->d->retention.keys);
        dependent_gates(b, s, lk->vault, lk->name, NULL, false, NULL, "move it to another key");
    }
}

/* ---- unmanaged objects -------------------------------------------------------------------- */

/*
 * A secret of vault v that the desired state does not declare and that is not kvreconcile's own:
 * neither a credential's stored copy (whatever its app: the reader sees only declared apps and
 * this estate's, so a copy whose client secret it cannot see may still be one that works) nor,
 * in a relocation's target, a copy of the source's.
 */
static bool secret_unmanaged(const pb *b, const kvr_vault *v, const kvr_live_secret *ls)
{
    if (kvr_estate_secret(b->d, v->name, ls->name) || kvr_tags_get(&ls->tags, KVR_TAG_CREDENTIAL))
        return false;
    return !(v->copy_from.vault && (kvr_tags_get(&ls->tags, KVR_TAG_COPY) ||
                                    pb_live_secret(b, v->copy_from.vault, ls->name)));
}

static bool cert_copied(const pb *b, const kvr_vault *v, const char *name)
{
    for (size_t i = 0; v->copy_from.vault && v->copy_from.certificates && i < b->l->ncerts; i++)
        if (kvr_str_ieq(b->l->certs[i].vault, v->copy_from.vault) &&
            kvr_str_ieq(b->l->certs[i].name, name))
            return true;
    return false;
}

static int unmanaged_cmp(const void *a, const void *b)
{
    static const char order[] = "kscar"; /* keys, secrets, certificates, access */
    const kvr_unmanaged_object *x = a, *y = b;
    int kx = (int)(strchr(order, x->kind[0]) - order), ky = (int)(strchr(order, y->kind[0]) - order);
    return kx != ky ? kx - ky : strcmp(x->name, y->name);
}

/* `unmanaged: retire` of one secret: mark when first found (retention starts), then soft-delete. */
static void retire_unmanaged_secret(pb *b, const kvr_live_secret *ls)
{
    int64_t since = kvr_plan_tag_time(&ls->tags);
    size_t mark = NONE, s;
    char object[200];
    snprintf(object, sizeof(object), "secret '%s'", ls->name);
    if (!since) {
        mark = pb_step(b, KVR_STEP_SECRET_MARK_SUPERSEDED, KVR_ACTION_CHANGE, ls->vault,
                       (kvr_pos){0}, object,
                       "record that it is not declared (unmanaged: retire): its retention starts");
        pb_name(b, mark, ls->name, NULL, NULL);
        mark_time(b, mark, b->now);
    }
    s = pb_step(b, KVR_STEP_SECRET_DELETE, KVR_ACTION_RETIRE, ls->vault, (kvr_pos){0}, object,
                "soft-delete the secret, all versions (not declared, and the vault says "
                "unmanaged: retire; recoverable for the vault's soft-delete days, never purged)");
    pb_name(b, s, ls->name, NULL, NULL);
    pb_dep(b, s, mark);
    pb_retention_gate(b, s, since, b->d->retention.keys, "it is recorded as not declared");
    dependent_gates(b, s, ls->vault, NULL, NULL, false, ls->name, "point it at another secret");
}

/*
 * The live objects of one kind by declared vault (the vault's first declaration), in one pass:
 * those of vault i are ix[start[i]..start[i+1]), in their live order. Each vault walking every
 * live object instead was a fifth of a 2,000-vault plan's CPU (600,000 objects, 2,000 times).
 */
typedef struct by_vault {
    size_t *start; /* nvaults + 2 */
    size_t *ix;
} by_vault;

static void by_vault_free(by_vault *bv)
{
    free(bv->start);
    free(bv->ix);
}

/* Buckets n items by home[i], a declared vault's index or NONE (left out). */
static int by_vault_sort(pb *b, by_vault *bv, const size_t *home, size_t n)
{
    size_t nv = b->d->nvaults;
    bv->start = calloc(nv + 2, sizeof(*bv->start));
    bv->ix = malloc((n + 1) * sizeof(*bv->ix));
    if (!bv->start || !bv->ix)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (home[i] != NONE)
            bv->start[home[i] + 2]++;
    for (size_t i = 2; i < nv + 2; i++)
        bv->start[i] += bv->start[i - 1];
    for (size_t i = 0; i < n; i++)
        if (home[i] != NONE)
            bv->ix[bv->start[home[i] + 1]++] = i;
    return 0;
}

/* Buckets n items by their vault; `vault_at`: the offset of their `const char *vault`. */
static int by_vault_fill(pb *b, by_vault *bv, const void *items, size_t n, size_t elem,
                         size_t vault_at)
{
    size_t *home = malloc((n + 1) * sizeof(*home));
    int rc;
    if (!home)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *vault = *(const char *const *)((const char *)items + i * elem + vault_at);
        const kvr_vault *v = vault ? kvr_estate_vault(b->d, vault) : NULL;
        home[i] = v ? (size_t)(v - b->d->vaults) : NONE;
    }
    rc = by_vault_sort(b, bv, home, n);
    free(home);
    return rc;
}

/* A principal the estate knows: a declared app's, an app of this estate leaving the YAML
   (its retirement says what it loses), or the identity the state was read as. */
static bool known_principal(const pb *b, const char *id)
{
    if (b->l->self_object_id && kvr_str_ieq(b->l->self_object_id, id))
        return true;
    for (size_t a = 0; a < b->d->napps; a++) {
        const char *sp = kvr_plan_app_principal(b, b->d->apps[a].name);
        if (sp && kvr_str_ieq(sp, id))
            return true;
    }
    for (size_t a = 0; a < b->l->napps; a++)
        if (b->l->apps[a].undeclared && b->l->apps[a].sp_id &&
            kvr_str_ieq(b->l->apps[a].sp_id, id))
            return true;
    return false;
}

static void perms_note(char *out, size_t size, const kvr_live_policy *lp)
{
    const kvr_strlist *l[3] = {&lp->keys, &lp->secrets, &lp->certificates};
    static const char *const fam[3] = {"keys", "secrets", "certificates"};
    size_t n = 0;
    out[0] = '\0';
    for (int f = 0; f < 3; f++) {
        if (!l[f]->len)
            continue;
        n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s:", n ? "; " : "", fam[f]);
        for (size_t i = 0; i < l[f]->len; i++)
            n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", i ? "," : " ",
                                  l[f]->items[i]);
    }
    if (n >= size && size > 4)
        memcpy(out + size - 4, "...", 4);
}

/*
 * Access to vault v of principals the estate never declared (people, other services): an
 * access-policy entry, or a role assignment at the vault or one of its keys (those above the
 * vault are not the estate's), as far as the assignments were read (the vault's own list; a
 * vault whose assignments are read per declared principal shows only theirs). Reported, never
 * touched.
 */
static void foreign_access(pb *b, const kvr_vault *v, const kvr_live_vault *lv,
                           const by_vault *roles)
{
    size_t vi = (size_t)(v - b->d->vaults);
    for (size_t e = 0; e < lv->npolicies; e++) {
        const kvr_live_policy *lp = &lv->policies[e];
        char note[300];
        if (!lp->object_id || known_principal(b, lp->object_id))
            continue;
        perms_note(note, sizeof(note), lp);
        if (v->rbac) { /* Azure ignores the entries of an RBAC vault, but they stay */
            char full[340];
            snprintf(full, sizeof(full), "ignored while the vault uses RBAC; %s", note);
            pb_unmanaged(b, v->name, "accessPolicy", lp->object_id, full);
            continue;
        }
        pb_unmanaged(b, v->name, "accessPolicy", lp->object_id, note[0] ? note : NULL);
    }
    for (size_t j = roles->start[vi]; j < roles->start[vi + 1]; j++) {
        const kvr_live_role *lr = &b->l->roles[roles->ix[j]];
        const char *role, *key;
        char name[200], note[300];
        role = kvr_model_role_name(lr->role_id);
        snprintf(name, sizeof(name), "%s for %s", role ? role : lr->role_id, lr->principal_id);
        key = strstr(lr->scope, "/keys/");
        if (key)
            snprintf(note, sizeof(note), "on key '%s'", key + 6);
        pb_unmanaged(b, v->name, "roleAssignment", name, key ? note : NULL);
    }
}

/*
 * What each declared vault holds that the desired state does not declare and that is not
 * kvreconcile's (keys it made or a profile uses are retired as undeclared keys, credentials'
 * copies with their credential, a relocation's copies with it): reported, or with `unmanaged:
 * retire` soft-deleted after retention.keys (keys by retire_undeclared_keys). A vault that is
 * itself retired, or that a relocation copies from, is left to that. Undeclared principals'
 * access (foreign_access) is reported in both modes.
 */
void kvr_plan_pass_unmanaged(pb *b)
{
    const kvr_live *l = b->l;
    by_vault keys = {0}, unread = {0}, secrets = {0}, certs = {0}, roles = {0};
    /* each role assignment of a principal the estate does not know: its declared vault, once */
    size_t *role_vault = calloc(l->nroles + 1, sizeof(*role_vault));
    for (size_t r = 0; role_vault && r < l->nroles; r++) {
        const kvr_live_role *lr = &l->roles[r];
        const kvr_vault *rv = !b->in->subscription || known_principal(b, lr->principal_id)
                                  ? NULL
                                  : kvr_plan_role_vault(b, lr);
        role_vault[r] = rv ? (size_t)(rv - b->d->vaults) : NONE;
    }
    if (!role_vault || by_vault_sort(b, &roles, role_vault, l->nroles) < 0 ||
        by_vault_fill(b, &keys, l->keys, l->nkeys, sizeof(*l->keys),
                      offsetof(kvr_live_key, vault)) < 0 ||
        by_vault_fill(b, &unread, l->unread_keys, l->nunread_keys, sizeof(*l->unread_keys),
                      offsetof(kvr_live_name, vault)) < 0 ||
        by_vault_fill(b, &secrets, l->secrets, l->nsecrets, sizeof(*l->secrets),
                      offsetof(kvr_live_secret, vault)) < 0 ||
        by_vault_fill(b, &certs, l->certs, l->ncerts, sizeof(*l->certs),
                      offsetof(kvr_live_cert, vault)) < 0) {
        pb_oom(b);
        goto done;
    }
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        bool retire;
        size_t first;
        if (v->unmanaged == KVR_UNMANAGED_IGNORE || v->retire || !pb_live_vault(b, v->name) ||
            kvr_estate_vault(b->d, v->name) != v)
            continue;
        if (copy_source(b, v->name) && v->unmanaged == KVR_UNMANAGED_RETIRE) {
            char object[200];
            snprintf(object, sizeof(object), "vault '%s'", v->name);
            pb_finding(b, KVR_FINDING_WARNING, v->name, object,
                       "unmanaged: retire is not applied to a vault a relocation copies from; "
                       "what it holds undeclared is only reported");
        }
        retire = retires_unmanaged(b, v);
        first = b->p->nunmanaged;
        for (size_t j = keys.start[i]; j < keys.start[i + 1]; j++) {
            const kvr_live_key *lk = &l->keys[keys.ix[j]];
            bool ours = false;
            if (kvr_estate_key(b->d, v->name, lk->name))
                continue;
            for (size_t k = 0; k < lk->nversions; k++)
                ours |= version_ours(b, lk, &lk->versions[k]);
            if (!ours && !retire)
                pb_unmanaged(b, v->name, "key", lk->name, NULL);
        }
        for (size_t j = unread.start[i]; j < unread.start[i + 1]; j++) {
            const kvr_live_name *u = &l->unread_keys[unread.ix[j]];
            if (!kvr_estate_key(b->d, v->name, u->name))
                pb_unmanaged(b, v->name, "key", u->name, NULL);
        }
        for (size_t j = secrets.start[i]; j < secrets.start[i + 1]; j++) {
            const kvr_live_secret *ls = &l->secrets[secrets.ix[j]];
            if (!secret_unmanaged(b, v, ls))
                continue;
            if (retire)
                retire_unmanaged_secret(b, ls);
            else
                pb_unmanaged(b, v->name, "secret", ls->name, NULL);
        }
        for (size_t j = certs.start[i]; j < certs.start[i + 1]; j++) {
            const kvr_live_cert *lc = &l->certs[certs.ix[j]];
            if (cert_copied(b, v, lc->name))
                continue;
            pb_unmanaged(b, v->name, "certificate", lc->name,
                         retire ? "kept: kvreconcile does not manage certificates (schema v1); "
                                  "delete it yourself if it is not needed"
                                : NULL);
        }
        if (b->in->subscription)
            foreign_access(b, v, pb_live_vault(b, v->name), &roles);
        if (!b->rc && b->p->nunmanaged > first + 1)
            qsort(b->p->unmanaged + first, b->p->nunmanaged - first, sizeof(*b->p->unmanaged),
                  unmanaged_cmp);
    }
done:
    free(role_vault);
    by_vault_free(&keys);
    by_vault_free(&unread);
    by_vault_free(&secrets);
    by_vault_free(&certs);
    by_vault_free(&roles);
}

/* ---- app credentials ---------------------------------------------------------------------- */

static void retire_credentials(pb *b)
{
    for (size_t i = 0; i < b->d->napps; i++) {
        const kvr_app *a = &b->d->apps[i];
        const kvr_live_app *la = kvr_live_app_get(b->l, a->display_name);
        for (size_t c = 0; la && c < la->ncreds; c++) {
            const kvr_live_credential *lc = &la->creds[c];
            const char *gen;
            const kvr_live_profile *au = NULL, *any = NULL;
            const kvr_live_secret *stored;
            int64_t since;
            size_t s, mark = NONE;
            char object[200];
            if (!lc->display_name || strncmp(lc->display_name, KVR_CRED_PREFIX,
                                             strlen(KVR_CRED_PREFIX)) != 0)
                continue; /* not made by kvreconcile: left alone */
            gen = lc->display_name + strlen(KVR_CRED_PREFIX);
            if (kvr_app_credential(a, gen))
                continue;
            for (size_t p = 0; p < b->l->nprofiles; p++) {
                const kvr_live_profile *lp = &b->l->profiles[p];
                if (!lp->client_id || strcmp(lp->client_id, la->app_id) != 0 || !lp->credential ||
                    strcmp(lp->credential, gen) != 0)
                    continue;
                any = lp;
                if (lp->status == KVR_PROFILE_APPLYING || lp->status == KVR_PROFILE_USED)
                    au = lp;
            }
            stored = pb_stored_copy(b, lc->key_id);
            since = stored ? kvr_plan_tag_time(&stored->tags) : 0;
            snprintf(object, sizeof(object), "app '%s' credential '%s'", a->name, gen);
            if (!since && stored) {
                mark = pb_step(b, KVR_STEP_CRED_MARK_SUPERSEDED, KVR_ACTION_CHANGE, stored->vault,
                               (kvr_pos){0}, object,
                               "record on its stored copy that it is superseded");
                pb_name(b, mark, gen, lc->key_id, a->name);
                if (au) {
                    mark_later(b, mark, au);
                } else {
                    since = released_at(b, NULL, NULL, NULL, la->app_id, gen);
                    mark_time(b, mark, since);
                }
            } else if (!since && !stored) {
                since = lc->start; /* nothing to mark: count from its creation */
            }
            if (stored && kvr_plan_rotation_copy(a, stored->vault, stored->name)) {
                s = pb_step(b, KVR_STEP_CRED_REMOVE, KVR_ACTION_RETIRE, stored->vault,
                            (kvr_pos){0}, object,
                            "soft-delete its stored copy, then remove the client secret from the "
                            "app");
                pb_change(b, s, "storedCopy", stored->name, "(soft-deleted)", false);
            } else {
                s = pb_step(b, KVR_STEP_CRED_REMOVE, KVR_ACTION_RETIRE,
                            stored ? stored->vault : NULL, (kvr_pos){0}, object,
                            "remove the client secret from the app");
            }
            pb_name(b, s, gen, lc->key_id, a->name);
            pb_dep(b, s, mark);
            pb_dep(b, s, active_apply(b));
            for (size_t j = 0; j < b->p->nsteps; j++)
                if (b->p->steps[j].kind == KVR_STEP_PROFILE_SET_CREDENTIALS)
                    pb_dep(b, s, j);
            superseded_gates(b, s, au, any, since, b->d->retention.app_secrets);
        }
    }
}

bool kvr_plan_rotation_copy(const kvr_app *a, const char *vault, const char *name)
{
    return a->rotation.set && kvr_str_ieq(a->rotation.store_vault, vault) &&
           kvr_is_day_copy(name, a->rotation.secret_prefix);
}

/* ---- apps that left the desired state ------------------------------------------------------ */

bool kvr_plan_app_marker(const pb *b, char *out, size_t size)
{
    if (!b->in->subscription)
        return false;
    snprintf(out, size, KVR_APP_TAG_MANAGED "%s", b->in->subscription);
    return true;
}

static bool has_tag(const kvr_live_app *la, const char *tag)
{
    for (size_t i = 0; i < la->tags.len; i++)
        if (strcasecmp(la->tags.items[i], tag) == 0) /* Graph compares tags without case */
            return true;
    return false;
}

bool kvr_plan_app_shared(const kvr_live_app *la, const char *marker)
{
    for (size_t i = 0; i < la->tags.len; i++)
        if (strncmp(la->tags.items[i], KVR_APP_TAG_MANAGED, strlen(KVR_APP_TAG_MANAGED)) == 0 &&
            strcasecmp(la->tags.items[i], marker) != 0)
            return true;
    return false;
}

bool kvr_plan_app_retiring_prefix(const pb *b, char *out, size_t size)
{
    if (!b->in->subscription)
        return false;
    snprintf(out, size, KVR_APP_TAG_RETIRING "%s=", b->in->subscription);
    return true;
}

int64_t kvr_plan_app_retiring(const pb *b, const kvr_live_app *la)
{
    char prefix[256];
    size_t n;
    if (!kvr_plan_app_retiring_prefix(b, prefix, sizeof(prefix)))
        return 0;
    n = strlen(prefix);
    for (size_t i = 0; i < la->tags.len; i++) {
        char *end;
        long long t;
        if (strncasecmp(la->tags.items[i], prefix, n) != 0)
            continue;
        t = strtoll(la->tags.items[i] + n, &end, 10);
        if (!*end && t > 0)
            return (int64_t)t;
    }
    return 0;
}

bool kvr_plan_app_ours(const pb *b, const kvr_live_app *la)
{
    if (kvr_plan_app_retiring(b, la))
        return true; /* this estate marked it: it finishes what it started (after a crash too) */
    for (size_t r = 0; la->sp_id && r < b->l->nroles; r++)
        if (kvr_str_ieq(b->l->roles[r].principal_id, la->sp_id) &&
            kvr_plan_role_vault(b, &b->l->roles[r]))
            return true;
    for (size_t v = 0; la->sp_id && v < b->d->nvaults; v++) {
        const kvr_live_vault *lv = pb_live_vault(b, b->d->vaults[v].name);
        for (size_t e = 0; lv && e < lv->npolicies; e++)
            if (kvr_str_ieq(lv->policies[e].object_id, la->sp_id))
                return true;
    }
    return false;
}

bool kvr_plan_app_elsewhere(const pb *b, const kvr_live_app *la)
{
    for (size_t r = 0; la->sp_id && r < b->l->nroles; r++)
        if (kvr_str_ieq(b->l->roles[r].principal_id, la->sp_id) &&
            !kvr_plan_role_vault(b, &b->l->roles[r]))
            return true;
    return false;
}

const kvr_vault *kvr_plan_role_vault(const pb *b, const kvr_live_role *lr)
{
    /* the vault the scope names (one lookup, not a walk over the estate: there are thousands of
       assignments), then its whole scope compared */
    static const char marker[] = "/providers/microsoft.keyvault/vaults/";
    const size_t ml = sizeof(marker) - 1;
    const char *p = lr->scope, *name = NULL;
    const kvr_vault *v;
    char vname[128], vscope[512];
    size_t n;
    for (; *p && !name; p++)
        if (strncasecmp(p, marker, ml) == 0)
            name = p + ml;
    if (!name || (n = strcspn(name, "/")) == 0 || n >= sizeof(vname))
        return NULL;
    memcpy(vname, name, n);
    vname[n] = '\0';
    if (!(v = kvr_estate_vault(b->d, vname)))
        return NULL;
    kvr_plan_scope(vscope, sizeof(vscope),
                   b->in->subscription ? b->in->subscription : "{subscription}", v->resource_group,
                   v->name, NULL);
    return kvr_plan_scope_within(lr->scope, vscope) ? v : NULL;
}

/*
 * An app this estate registered (it carries the estate's marker) that the YAML no longer
 * declares: marked with the time it left (kvr-retiring-since), and after retention.appSecrets
 * its access-policy entries, role assignments on the estate's vaults and client secrets are
 * removed and it is deleted (Entra keeps a deleted app restorable for 30 days). Never while a
 * profile uses its credentials: a profile in Applying or Used holds the mark itself, any other
 * profile holds the retirement until it is retired. An app another estate marked too only loses
 * this estate's access and marker.
 */
static void retire_apps(pb *b)
{
    char marker[256];
    if (!kvr_plan_app_marker(b, marker, sizeof(marker)))
        return;
    for (size_t i = 0; i < b->l->napps; i++) {
        const kvr_live_app *la = &b->l->apps[i];
        const kvr_live_profile *au = NULL, *any = NULL;
        bool shared, other, elsewhere;
        int64_t since;
        size_t s, mark = NONE;
        char object[200];
        if (!la->undeclared || la->deleted || !has_tag(la, marker) ||
            kvr_estate_app(b->d, la->display_name) || !kvr_plan_app_ours(b, la))
            continue; /* nothing of it in this estate's vaults: not this estate's to retire */
        other = kvr_plan_app_shared(la, marker);
        elsewhere = kvr_plan_app_elsewhere(b, la);
        shared = other || elsewhere;
        snprintf(object, sizeof(object), "app '%s'", la->display_name);
        if (b->d->nprofiles == 0) {
            pb_hold(b, NULL, object,
                    "it left the desired state, but the desired state declares no encryption "
                    "profiles, so kvreconcile cannot see whether a service still signs in with it; "
                    "it is only reported");
            continue;
        }
        for (size_t p = 0; p < b->l->nprofiles; p++) {
            const kvr_live_profile *lp = &b->l->profiles[p];
            if (!lp->client_id || strcmp(lp->client_id, la->app_id) != 0)
                continue;
            any = lp;
            if (lp->status == KVR_PROFILE_APPLYING || lp->status == KVR_PROFILE_USED)
                au = lp;
        }
        since = kvr_plan_app_retiring(b, la);
        if (!since) {
            char iso[KVR_TIME_ISO_MAX];
            mark = pb_step(b, KVR_STEP_APP_MARK_RETIRING, KVR_ACTION_CHANGE, NULL, (kvr_pos){0},
                           object,
                           "record that it left the desired state (tag " KVR_APP_TAG_RETIRING
                           "…), starting retention.appSecrets");
            if (au) {
                pb_name(b, mark, la->display_name, NULL, KVR_PLAN_WHEN_RELEASED);
                pb_change(b, mark, "tags.kvr-retiring-since", NULL, KVR_PLAN_WHEN_RELEASED,
                          false);
                pb_gate(b, mark, KVR_GATE_UNREFERENCED, false, 0,
                        "profile '%s' (%s) signs in with it", au->name,
                        kvr_profile_status_name(au->status));
            } else {
                char t[32];
                since = released_at(b, NULL, NULL, NULL, la->app_id, NULL);
                snprintf(t, sizeof(t), "%lld", (long long)since);
                kvr_time_iso(iso, sizeof(iso), since);
                pb_name(b, mark, la->display_name, NULL, t);
                pb_change(b, mark, "tags.kvr-retiring-since", NULL, iso, false);
            }
        }
        s = pb_step(b, KVR_STEP_APP_RETIRE, KVR_ACTION_RETIRE, NULL, (kvr_pos){0}, object,
                    other ? "remove this estate's access and marker (another estate's marker "
                            "is on it too: the app and its client secrets stay)"
                    : elsewhere ? "remove this estate's access (it holds role assignments "
                                  "outside this estate's vaults: the app and its client secrets "
                                  "stay)"
                                : "remove its access, its client secrets and their stored copies, "
                                  "then delete it (Entra keeps it restorable for 30 days)");
        pb_name(b, s, la->display_name, NULL, NULL);
        for (size_t v = 0; v < b->d->nvaults; v++) {
            const kvr_live_vault *lv = pb_live_vault(b, b->d->vaults[v].name);
            for (size_t e = 0; lv && la->sp_id && e < lv->npolicies; e++)
                if (kvr_str_ieq(lv->policies[e].object_id, la->sp_id)) {
                    char field[200];
                    snprintf(field, sizeof(field), "accessPolicies[%s]", lv->name);
                    pb_change(b, s, field, la->sp_id, "(none)", false);
                }
        }
        for (size_t r = 0; la->sp_id && r < b->l->nroles; r++) {
            const kvr_live_role *lr = &b->l->roles[r];
            const char *role_name = kvr_model_role_name(lr->role_id);
            char field[300];
            if (!kvr_str_ieq(lr->principal_id, la->sp_id))
                continue;
            if (!kvr_plan_role_vault(b, lr)) {
                pb_finding(b, KVR_FINDING_WARNING, NULL, object,
                           "role '%s' at %s is outside this estate's vaults: kvreconcile leaves "
                           "it, and the app with it",
                           role_name ? role_name : lr->role_id, lr->scope);
                continue;
            }
            snprintf(field, sizeof(field), "roleAssignment[%s]", lr->name);
            pb_change(b, s, field, role_name ? role_name : lr->role_id, "(none)", false);
        }
        if (shared) {
            if (other)
                pb_change(b, s, "tags.kvr-managed", marker, "(none)", false);
            if (since || other)
                pb_change(b, s, "tags.kvr-retiring-since", "(this estate's)", "(none)",
                          false);
        } else {
            for (size_t c = 0; c < la->ncreds; c++) {
                char field[200];
                snprintf(field, sizeof(field), "passwordCredentials[%s]", la->creds[c].key_id);
                pb_change(b, s, field,
                          la->creds[c].display_name ? la->creds[c].display_name : "(no name)",
                          "(none)", false);
                const kvr_live_secret *ls;
                for (size_t k = 0; (ls = pb_next_copy(b, la->creds[c].key_id, &k));) {
                    snprintf(field, sizeof(field), "storedCopy[%s/%s]", ls->vault, ls->name);
                    pb_change(b, s, field, la->creds[c].key_id, "(soft-deleted)", false);
                }
            }
            pb_change(b, s, "application", la->app_id, "(deleted, restorable for 30 days)", false);
        }
        pb_dep(b, s, mark);
        pb_dep(b, s, active_apply(b));
        for (size_t j = 0; j < b->p->nsteps; j++) /* a profile moved off it first */
            if (b->p->steps[j].kind == KVR_STEP_PROFILE_SET_CREDENTIALS)
                pb_dep(b, s, j);
        superseded_gates(b, s, au, any, since, b->d->retention.app_secrets);
    }
}

/* ---- vaults ------------------------------------------------------------------------------- */

static void retire_vaults(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        const kvr_live_vault *lv = pb_live_vault(b, v->name);
        const kvr_live_profile *au, *any;
        int64_t since;
        size_t s, mark = NONE;
        char object[160];
        if (!v->retire || !lv)
            continue;
        snprintf(object, sizeof(object), "vault '%s'", v->name);
        au = active_reference(b->l, v->name, NULL, NULL);
        any = any_reference(b->l, v->name, NULL, NULL);
        since = kvr_plan_tag_time(&lv->tags);
        if (!since) {
            mark = pb_step(b, KVR_STEP_VAULT_MARK_UNUSED, KVR_ACTION_CHANGE, v->name, v->pos,
                           object, "record that no profile needs it (tag " KVR_TAG_SUPERSEDED ")");
            pb_name(b, mark, v->name, NULL, NULL);
            if (au) {
                mark_later(b, mark, au);
                used_gate(b, mark);
            } else {
                since = released_at(b, v->name, NULL, NULL, NULL, NULL);
                mark_time(b, mark, since);
            }
        }
        s = pb_step(b, KVR_STEP_VAULT_RETIRE, KVR_ACTION_RETIRE, v->name, v->pos, object,
                    "soft-delete the vault (recoverable for %d days; never purged)",
                    lv->soft_delete_days);
        pb_name(b, s, v->name, NULL, NULL);
        pb_dep(b, s, mark);
        pb_dep(b, s, active_apply(b));
        if (au)
            used_gate(b, s);
        /* Every vault that copies from this one must hold a verified copy first. */
        for (size_t j = 0; j < b->d->nvaults; j++) {
            const kvr_vault *t = &b->d->vaults[j];
            size_t verify;
            if (!t->copy_from.vault || !kvr_str_ieq(t->copy_from.vault, v->name))
                continue;
            verify = pb_find(b, KVR_STEP_COPY_VERIFY, t->name, t->name);
            pb_dep(b, s, verify);
            if (!pb_live_vault(b, t->name))
                pb_gate(b, s, KVR_GATE_COPY_VERIFIED, false, 0, "vault '%s' to be created and "
                                                                "hold a verified copy",
                        t->name);
            else if (verify != NONE || !kvr_plan_copy_complete(b, t))
                pb_gate(b, s, KVR_GATE_COPY_VERIFIED, false, 0,
                        "vault '%s' to hold a verified copy of every secret and certificate",
                        t->name);
            else
                pb_gate(b, s, KVR_GATE_COPY_VERIFIED, true, 0,
                        "vault '%s' holds every secret and certificate", t->name);
        }
        for (size_t j = 0; j < b->p->nsteps; j++)
            if (b->p->steps[j].kind == KVR_STEP_PROFILE_DELETE &&
                kvr_str_ieq(b->p->steps[j].vault, v->name))
                pb_dep(b, s, j);
        superseded_gates(b, s, au, any, since, b->d->retention.vaults);
        dependent_gates(b, s, v->name, NULL, NULL, false, NULL, "move it to another vault");
    }
}

/*
 * A relocation's to-do list: every resource outside the estate that uses the source vault of a
 * vault with copyFrom. kvreconcile does not rewire other teams' resources; the user moves each to
 * the new vault, and the old vault is retired only when none is left (its retirement's gates).
 */
static void relocation_dependents(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        if (!v->copy_from.vault || !pb_live_vault(b, v->copy_from.vault))
            continue;
        for (size_t j = 0; j < b->l->ndependents; j++) {
            const kvr_live_dependent *d = &b->l->dependents[j];
            char use[200], object[160];
            if (!kvr_str_ieq(d->vault, v->copy_from.vault))
                continue;
            dependent_use(use, sizeof(use), d);
            snprintf(object, sizeof(object), "%s '%s'", kvr_dependent_kind(d->type), d->name);
            pb_finding(b, KVR_FINDING_WARNING, v->copy_from.vault, object,
                       "to move: %s uses %s; point it at vault '%s' before vault '%s' can be "
                       "retired (kvreconcile does not change resources outside the estate)",
                       d->id, use, v->name, v->copy_from.vault);
        }
    }
}

/*
 * What the service needs now: every key version a profile in Applying or Used wraps its data
 * keys with must be usable. One disabled out of band (the portal, another tool) is enabled again
 * at once: no gate, before anything else, whatever the YAML says of the key, since the service
 * cannot unwrap its data keys without it. One that has expired is held back with what to do:
 * moving an expiry is a decision about key lifetime that the plan does not make on its own.
 */
void kvr_plan_pass_in_use(pb *b)
{
    for (size_t i = 0; i < b->l->nprofiles; i++) {
        const kvr_live_profile *p = &b->l->profiles[i];
        const kvr_live_key *lk;
        char object[160];
        if (p->status != KVR_PROFILE_APPLYING && p->status != KVR_PROFILE_USED)
            continue;
        if (!(lk = kvr_live_key_get(b->l, p->vault, p->key)))
            continue;
        for (size_t v = 0; v < lk->nversions; v++) {
            const kvr_live_version *lv = &lk->versions[v];
            size_t s;
            if (!p->key_version || !kvr_str_ieq(lv->id, p->key_version))
                continue;
            snprintf(object, sizeof(object), "key '%s' version %.8s", lk->name, lv->id);
            if (lv->exp && lv->exp <= b->now) {
                char when[KVR_TIME_ISO_MAX];
                kvr_time_iso(when, sizeof(when), lv->exp);
                pb_hold(b, lk->vault, object,
                        "profile '%s' (%s) wraps its data keys with this version, which expired "
                        "at %s: the service cannot unwrap them; set a later expiry on the version "
                        "(Key Vault: update key, attributes.exp)",
                        p->name, kvr_profile_status_name(p->status), when);
            }
            if (lv->enabled || planned_version(b, KVR_STEP_KEY_VERSION_ENABLE, lk, lv->id))
                continue;
            s = pb_step(b, KVR_STEP_KEY_VERSION_ENABLE, KVR_ACTION_CHANGE, lk->vault,
                        (kvr_pos){0}, object,
                        "enable again: profile '%s' (%s) wraps its data keys with it", p->name,
                        kvr_profile_status_name(p->status));
            pb_name(b, s, lk->name, lv->id, NULL);
            pb_change(b, s, "enabled", "false", "true", false);
        }
    }
}

/*
 * A dependent whose key version is disabled or expired cannot read its data now (an outage, and
 * data loss if it stays so): an error-level finding. Not corrected on its own, unlike a profile's
 * version (kvr_plan_pass_in_use): whoever disabled it may have meant to revoke that resource.
 */
static void dependents_broken(pb *b)
{
    for (size_t i = 0; i < b->l->ndependents; i++) {
        const kvr_live_dependent *d = &b->l->dependents[i];
        const kvr_live_key *lk;
        const kvr_live_version *v = NULL;
        char use[200], object[160], when[KVR_TIME_ISO_MAX];
        if (!d->key || !(lk = pb_live_key(b, d->vault, d->key)) || !lk->nversions)
            continue;
        for (size_t j = 0; d->version && j < lk->nversions; j++)
            if (kvr_str_ieq(lk->versions[j].id, d->version))
                v = &lk->versions[j];
        if (!d->version)
            v = &lk->versions[lk->nversions - 1];
        if (!v || (v->enabled && (!v->exp || v->exp > b->now)))
            continue;
        dependent_use(use, sizeof(use), d);
        snprintf(object, sizeof(object), "%s '%s'", kvr_dependent_kind(d->type), d->name);
        if (!v->enabled) {
            pb_finding(b, KVR_FINDING_ERROR, d->vault, object,
                       "%s uses %s; version %.8s is disabled: it cannot read its data until the "
                       "version is enabled again",
                       d->id, use, v->id);
        } else {
            kvr_time_iso(when, sizeof(when), v->exp);
            pb_finding(b, KVR_FINDING_ERROR, d->vault, object,
                       "%s uses %s; version %.8s expired at %s: it cannot read its data until "
                       "the version gets a later expiry",
                       d->id, use, v->id, when);
        }
    }
}

/*
 * An acknowledgement that matches no dependent any more is reported: left in place, it would
 * silently cover a later, unreviewed use of the same object by the same resource.
 */
static void stale_acks(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        for (size_t a = 0; a < v->nacks; a++) {
            const kvr_dependent_ack *k = &v->acks[a];
            bool used = false;
            char object[160];
            for (size_t j = 0; !used && j < b->l->ndependents; j++) {
                const kvr_live_dependent *d = &b->l->dependents[j];
                used = kvr_str_ieq(d->id, k->resource_id) && kvr_str_ieq(d->vault, v->name) &&
                       (!k->key || kvr_str_ieq(d->key, k->key)) &&
                       (!k->secret || kvr_str_ieq(d->secret, k->secret));
            }
            if (used)
                continue;
            if (k->key)
                snprintf(object, sizeof(object), "key '%s'", k->key);
            else if (k->secret)
                snprintf(object, sizeof(object), "secret '%s'", k->secret);
            else
                snprintf(object, sizeof(object), "vault '%s'", v->name);
            pb_finding(b, KVR_FINDING_WARNING, v->name, object,
                       "%s:%u:%u: acknowledgeDependents names %s, which uses nothing of it now; "
                       "remove the entry so that it cannot cover a later use",
                       k->pos.file ? k->pos.file : "?", k->pos.line, k->pos.col,
                       k->resource_id);
        }
    }
}

void kvr_plan_pass_retire(pb *b)
{
    b->active_apply = b->d->active ? find_by_name(b, KVR_STEP_PROFILE_APPLY, b->d->active) : NONE;
    retire_profiles(b);
    for (size_t i = 0; i < b->d->nkeys; i++) {
        const kvr_key *k = &b->d->keys[i];
        const kvr_vault *v = kvr_estate_vault(b->d, k->vault);
        const kvr_live_key *lk = pb_live_key(b, k->vault, k->name);
        if (lk && v && !v->retire)
            retire_versions(b, k, lk);
    }
    retire_undeclared_keys(b);
    kvr_plan_pass_roles_undeclared(b);
    retire_credentials(b);
    retire_apps(b);
    retire_vaults(b);
    relocation_dependents(b);
    stale_acks(b);
    dependents_broken(b);
}
