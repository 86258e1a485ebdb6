/*
 * Estate-wide rules that no single document can check: names unique across all files,
 * cross-references (keys name declared vaults, profiles name declared keys, apps and
 * credentials), exactly one active profile, and Azure's bounds that involve several fields
 * (rotation windows, HSM keys in premium vaults). Duplicates name both places.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY (86400LL)

static void dup(ctx *c, kvr_pos at, kvr_pos first, const char *what, const char *name)
{
    cx_error_pos(c, at, "duplicate %s '%.64s' (first declared at %s:%u:%u)", what, name,
                 first.file, first.line, first.col);
}

static void unknown(ctx *c, kvr_pos at, const char *what, const char *name, const char *extra)
{
    cx_error_pos(c, at, "%s '%.64s' is not declared%s", what, name, extra ? extra : "");
}

static void check_vaults(ctx *c)
{
    const kvr_estate *e = c->e;
    for (size_t i = 0; i < e->nvaults; i++) {
        const kvr_vault *v = &e->vaults[i];
        if (!v->name)
            continue;
        {
            /* the first declaration of the name (lookups return the first) */
            const kvr_vault *first = kvr_estate_vault(e, v->name);
            if (first && first != v)
                dup(c, v->pos, first->pos, "vault", v->name);
        }
        if (v->copy_from.vault) {
            const kvr_vault *src = kvr_estate_vault(e, v->copy_from.vault);
            if (!src)
                unknown(c, v->copy_from.pos, "vault", v->copy_from.vault,
                        " ('copyFrom' must name a vault of this estate)");
            else if (src == v)
                cx_error_pos(c, v->copy_from.pos, "vault '%.64s' cannot copy from itself",
                             v->name);
            else if (src->copy_from.vault && kvr_str_ieq(src->copy_from.vault, v->name))
                cx_error_pos(c, v->copy_from.pos,
                             "vaults '%.64s' and '%.64s' copy from each other", v->name,
                             src->name);
        }
        for (size_t p = 0; p < v->npolicies; p++)
            if (v->policies[p].app && !kvr_estate_app(e, v->policies[p].app))
                unknown(c, v->policies[p].pos, "app", v->policies[p].app, NULL);
    }
}

static void check_apps(ctx *c)
{
    const kvr_estate *e = c->e;
    for (size_t i = 0; i < e->napps; i++) {
        const kvr_app *a = &e->apps[i];
        if (!a->name)
            continue;
        {
            const kvr_app *first = kvr_estate_app(e, a->name);
            if (first && first != a)
                dup(c, a->pos, first->pos, "app", a->name);
        }
        for (size_t k = 0; k < a->ncreds; k++) {
            const kvr_credential *cr = &a->creds[k];
            if (!cr->name)
                continue;
            for (size_t j = 0; j < k; j++)
                if (a->creds[j].name && strcmp(a->creds[j].name, cr->name) == 0) {
                    dup(c, cr->pos, a->creds[j].pos, "credential", cr->name);
                    break;
                }
            if (cr->overlap >= cr->lifetime)
                cx_error_pos(c, cr->pos,
                             "credential '%.64s': 'overlap' must be shorter than 'lifetime'",
                             cr->name);
            if (cr->store_vault && !kvr_estate_vault(e, cr->store_vault))
                unknown(c, cr->pos, "vault", cr->store_vault, " (named by 'storeIn')");
        }
        if (a->rotation.store_vault && !kvr_estate_vault(e, a->rotation.store_vault))
            unknown(c, a->rotation.pos, "vault", a->rotation.store_vault,
                    " (named by 'credentialRotation.storeIn')");
    }
}

/* A profile's or a fromAppCredential secret's credential: one the app declares, or, for an app
   with credentialRotation, "latest" (the newest generation, whatever its name). */
static void check_credential_ref(ctx *c, kvr_pos pos, const kvr_app *a, const char *name)
{
    if (a->rotation.set && strcmp(name, KVR_CRED_LATEST) != 0)
        cx_error_pos(c, pos,
                     "app '%.64s' rotates its client secrets itself (credentialRotation): name "
                     "its credential '" KVR_CRED_LATEST "', not '%.64s'",
                     a->name, name);
    else if (!a->rotation.set && !kvr_app_credential(a, name))
        cx_error_pos(c, pos, "app '%.64s' has no credential '%.64s'", a->name, name);
}

/* A (vault, secret) slot, taken by a declared secret or by a credential's storeIn. */
typedef struct slot {
    const char *vault, *name;
    kvr_pos pos;
} slot;

typedef struct slot_probe {
    const slot *slots;
    const slot *want;
} slot_probe;

static bool slot_match(const void *arg, size_t j)
{
    const slot_probe *p = arg;
    return kvr_str_ieq(p->slots[j].vault, p->want->vault) &&
           kvr_str_ieq(p->slots[j].name, p->want->name);
}

static void check_secrets(ctx *c)
{
    const kvr_estate *e = c->e;
    slot *slots = NULL;
    size_t n = 0, cap = 0;
    kvr_index ix = {0};

    for (size_t i = 0; i < e->napps; i++)
        for (size_t k = 0; k < e->apps[i].ncreds; k++) {
            const kvr_credential *cr = &e->apps[i].creds[k];
            if (!cr->store_vault || !cr->store_secret)
                continue;
            if (kvr_grow((void **)&slots, &cap, n + 1, sizeof(*slots)) < 0)
                goto oom;
            slots[n++] = (slot){cr->store_vault, cr->store_secret, cr->pos};
        }
    for (size_t i = 0; i < e->nsecrets; i++) {
        const kvr_secret *s = &e->secrets[i];
        if (s->vault && !kvr_estate_vault(e, s->vault))
            unknown(c, s->pos, "vault", s->vault, NULL);
        if (s->source == KVR_SECRET_FROM_APP_CREDENTIAL && s->app) {
            const kvr_app *a = kvr_estate_app(e, s->app);
            if (!a)
                unknown(c, s->pos, "app", s->app, NULL);
            else if (s->credential)
                check_credential_ref(c, s->pos, a, s->credential);
        }
        if (!s->vault || !s->name)
            continue;
        if (kvr_grow((void **)&slots, &cap, n + 1, sizeof(*slots)) < 0)
            goto oom;
        slots[n++] = (slot){s->vault, s->name, s->pos};
    }
    if (kvr_index_reserve(&ix, n) < 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        slot_probe p = {slots, &slots[i]};
        uint64_t h = kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, slots[i].vault), slots[i].name);
        size_t j = kvr_index_first(&ix, h, slot_match, &p);
        if (j != KVR_INDEX_NONE) {
            /* the earliest slot with this name: ids go in in order, so j < i */
            char what[160];
            snprintf(what, sizeof(what), "secret '%.64s' in vault", slots[i].name);
            dup(c, slots[i].pos, slots[j].pos, what, slots[i].vault);
        }
        if (kvr_index_put(&ix, h, i) < 0)
            goto oom;
    }
    kvr_index_release(&ix);
    free(slots);
    return;
oom:
    kvr_index_release(&ix);
    free(slots);
    cx_oom(c);
}

/* Does `name` fall in the credentialRotation store of `a` in `vault` (<prefix>-YYYY-MM-DD)? */
static bool in_rotation_store(const kvr_app *a, const char *vault, const char *name)
{
    return a->rotation.set && a->rotation.store_vault && a->rotation.secret_prefix && vault &&
           name && kvr_str_ieq(a->rotation.store_vault, vault) &&
           kvr_is_day_copy(name, a->rotation.secret_prefix);
}

/*
 * A credentialRotation store is the app's alone: no other app's store with the same prefix in
 * the same vault (Key Vault names are case-insensitive), and no declared secret or credential
 * storeIn with a name of its shape. Two writers of one secret would each find the other's value
 * there, take their own generation for never stored, and mint a new one on every run.
 */
static void check_rotation_stores(ctx *c)
{
    const kvr_estate *e = c->e;
    for (size_t i = 0; i < e->napps; i++) {
        const kvr_app *a = &e->apps[i];
        if (!a->rotation.set || !a->rotation.store_vault || !a->rotation.secret_prefix)
            continue;
        for (size_t j = 0; j < i; j++) {
            const kvr_app *o = &e->apps[j];
            if (o->rotation.set && o->rotation.store_vault && o->rotation.secret_prefix &&
                kvr_str_ieq(o->rotation.store_vault, a->rotation.store_vault) &&
                kvr_str_ieq(o->rotation.secret_prefix, a->rotation.secret_prefix))
                cx_error_pos(c, a->rotation.pos,
                             "app '%.64s' stores its generations where app '%.64s' does (vault "
                             "'%.64s', secretPrefix '%.64s'); give it a prefix of its own",
                             a->name, o->name, a->rotation.store_vault, a->rotation.secret_prefix);
        }
        for (size_t k = 0; k < e->nsecrets; k++)
            if (in_rotation_store(a, e->secrets[k].vault, e->secrets[k].name))
                cx_error_pos(c, e->secrets[k].pos,
                             "secret '%.64s' has the name of a generation of app '%.64s' "
                             "(credentialRotation stores them as %.64s-YYYY-MM-DD)",
                             e->secrets[k].name, a->name, a->rotation.secret_prefix);
        for (size_t j = 0; j < e->napps; j++)
            for (size_t k = 0; k < e->apps[j].ncreds; k++) {
                const kvr_credential *cr = &e->apps[j].creds[k];
                if (in_rotation_store(a, cr->store_vault, cr->store_secret))
                    cx_error_pos(c, cr->pos,
                                 "'storeIn' secret '%.64s' has the name of a generation of app "
                                 "'%.64s' (credentialRotation stores them as %.64s-YYYY-MM-DD)",
                                 cr->store_secret, a->name, a->rotation.secret_prefix);
            }
    }
}

static void check_rotation(ctx *c, const kvr_key *k)
{
    const kvr_rotation *r = &k->rotation;
    if (!r->set)
        return;
    if (r->every && r->every < 7 * DAY)
        cx_error_pos(c, k->pos, "key '%.64s': 'rotation.every' must be at least 7 days", k->name);
    if (r->before_expiry && r->before_expiry < 7 * DAY)
        cx_error_pos(c, k->pos, "key '%.64s': 'rotation.beforeExpiry' must be at least 7 days",
                     k->name);
    if (r->before_expiry && !r->expires_after)
        cx_error_pos(c, k->pos,
                     "key '%.64s': 'rotation.beforeExpiry' needs 'rotation.expiresAfter' (a "
                     "version without expiry never reaches the trigger)",
                     k->name);
    if (r->expires_after && r->expires_after < 28 * DAY)
        cx_error_pos(c, k->pos, "key '%.64s': 'rotation.expiresAfter' must be at least 28 days",
                     k->name);
    if (r->expires_after && r->every && r->every > r->expires_after - 7 * DAY)
        cx_error_pos(c, k->pos,
                     "key '%.64s': 'rotation.every' must be at least 7 days before "
                     "'rotation.expiresAfter'",
                     k->name);
    if (r->expires_after && r->before_expiry && r->before_expiry > r->expires_after - 7 * DAY)
        cx_error_pos(c, k->pos,
                     "key '%.64s': 'rotation.beforeExpiry' must leave at least 7 days after "
                     "creation",
                     k->name);
    if (r->expires_after && r->notify_before && r->notify_before >= r->expires_after)
        cx_error_pos(c, k->pos,
                     "key '%.64s': 'rotation.notifyBefore' must be shorter than "
                     "'rotation.expiresAfter'",
                     k->name);
}

static void check_keys(ctx *c)
{
    const kvr_estate *e = c->e;
    for (size_t i = 0; i < e->nkeys; i++) {
        const kvr_key *k = &e->keys[i];
        const kvr_vault *v;
        check_rotation(c, k);
        if (!k->vault || !k->name)
            continue;
        {
            const kvr_key *first = kvr_estate_key(e, k->vault, k->name);
            if (first && first != k) {
                char what[160];
                snprintf(what, sizeof(what), "key '%.64s' in vault", k->name);
                dup(c, k->pos, first->pos, what, k->vault);
            }
        }
        v = kvr_estate_vault(e, k->vault);
        if (!v)
            unknown(c, k->pos, "vault", k->vault, NULL);
        else if ((k->type == KVR_KEY_RSA_HSM || k->type == KVR_KEY_EC_HSM) &&
                 v->sku != KVR_SKU_PREMIUM)
            cx_error_pos(c, k->pos,
                         "key '%.64s' is %s but vault '%.64s' is 'standard'; HSM keys need "
                         "'sku: premium'",
                         k->name, kvr_key_type_name(k->type), v->name);
    }
}

/* Only complete assignments go in the index. */
typedef struct role_probe {
    const kvr_role_assignment *roles;
    const kvr_role_assignment *want;
} role_probe;

static bool same_role(const void *arg, size_t j)
{
    const role_probe *p = arg;
    const kvr_role_assignment *r = p->want, *o = &p->roles[j];
    return strcmp(o->app, r->app) == 0 && kvr_str_ieq(o->vault, r->vault) &&
           strcmp(o->role_id, r->role_id) == 0 &&
           ((!o->key && !r->key) || (o->key && r->key && kvr_str_ieq(o->key, r->key)));
}

static void check_roles(ctx *c)
{
    const kvr_estate *e = c->e;
    kvr_index ix = {0};
    for (size_t i = 0; i < e->nroles; i++) {
        const kvr_role_assignment *r = &e->roles[i];
        const kvr_vault *v = NULL;
        if (r->app && !kvr_estate_app(e, r->app))
            unknown(c, r->pos, "app", r->app, NULL);
        if (r->vault && !(v = kvr_estate_vault(e, r->vault)))
            unknown(c, r->pos, "vault", r->vault, NULL);
        if (v && r->key && !kvr_estate_key(e, r->vault, r->key))
            cx_error_pos(c, r->pos, "key '%.64s' is not declared in vault '%.64s'", r->key,
                         r->vault);
        if (v && !v->rbac)
            cx_error_pos(c, r->pos,
                         "vault '%.64s' uses access policies ('rbac: false'); role assignments "
                         "on its data plane have no effect",
                         v->name);
        if (!r->app || !r->vault || !r->role_id)
            continue;
        {
            uint64_t h = kvr_hash_ci(
                kvr_hash_ci(kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, r->app), r->vault), r->role_id),
                r->key);
            role_probe p = {e->roles, r};
            size_t j = kvr_index_first(&ix, h, same_role, &p);
            if (j != KVR_INDEX_NONE) {
                /* the earliest equal assignment: ids go in in order, so j < i */
                char what[200];
                snprintf(what, sizeof(what), "role assignment of '%.64s' to app", r->role);
                dup(c, r->pos, e->roles[j].pos, what, r->app);
            }
            if (kvr_index_put(&ix, h, i) < 0) {
                cx_oom(c);
                break;
            }
        }
    }
    kvr_index_release(&ix);
}

/* Built-in roles whose data actions include wrapKey and unwrapKey. */
bool kvr_model_role_can_wrap(const char *role_id)
{
    static const char *const wrap[] = {
        "00482a5a-887f-4fb3-b363-3b7fe8e74483", /* Key Vault Administrator */
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603", /* Key Vault Crypto Officer */
        "12338af0-0e69-4776-bea7-57ae8d297424", /* Key Vault Crypto User */
        "e147488a-f6f5-4113-8e2d-b22465e65bf6", /* Key Vault Crypto Service Encryption User */
    };
    for (size_t i = 0; i < sizeof(wrap) / sizeof(wrap[0]); i++)
        if (kvr_str_ieq(wrap[i], role_id))
            return true;
    return false;
}

static bool policy_has(const kvr_strlist *l, const char *perm)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], perm) == 0 || strcmp(l->items[i], "all") == 0)
            return true;
    return false;
}

/*
 * The service signs in as the profile's app and wraps with the profile's key: the estate must
 * grant that, or the apply would fail halfway. A custom role (a GUID that is not a built-in)
 * is trusted, since its data actions cannot be seen from here.
 */
static void check_profile_access(ctx *c, const kvr_profile *p)
{
    const kvr_estate *e = c->e;
    const kvr_vault *v = kvr_estate_vault(e, p->vault);
    if (!v || !p->app || !kvr_estate_app(e, p->app) || !p->key ||
        !kvr_estate_key(e, p->vault, p->key))
        return; /* already reported as an undeclared reference */
    if (v->rbac) {
        for (size_t i = 0; i < e->nroles; i++) {
            const kvr_role_assignment *r = &e->roles[i];
            if (!r->app || strcmp(r->app, p->app) != 0 || !r->vault ||
                !kvr_str_ieq(r->vault, v->name) || !r->role_id)
                continue;
            if (r->key && (!p->key || !kvr_str_ieq(r->key, p->key)))
                continue;
            if (kvr_model_role_can_wrap(r->role_id) || !kvr_model_role_name(r->role_id))
                return;
        }
        cx_error_pos(c, p->pos,
                     "profile '%.64s': app '%.64s' has no role assignment that allows wrapKey and "
                     "unwrapKey on key '%.64s' of vault '%.64s' (e.g. 'Key Vault Crypto Service "
                     "Encryption User')",
                     p->name, p->app, p->key, v->name);
        return;
    }
    for (size_t i = 0; i < v->npolicies; i++) {
        const kvr_access_policy *ap = &v->policies[i];
        if (ap->app && strcmp(ap->app, p->app) == 0 && policy_has(&ap->keys, "get") &&
            policy_has(&ap->keys, "wrapKey") && policy_has(&ap->keys, "unwrapKey"))
            return;
    }
    cx_error_pos(c, p->pos,
                 "profile '%.64s': vault '%.64s' has no access policy for app '%.64s' with key "
                 "permissions get, wrapKey and unwrapKey",
                 p->name, v->name, p->app);
}

static void check_profiles(ctx *c)
{
    const kvr_estate *e = c->e;
    for (size_t i = 0; i < e->nprofiles; i++) {
        const kvr_profile *p = &e->profiles[i];
        const kvr_app *a = NULL;
        if (!p->name)
            continue;
        {
            const kvr_profile *first = kvr_estate_profile(e, p->name);
            if (first && first != p)
                dup(c, p->pos, first->pos, "profile", p->name);
        }
        if (p->vault && !kvr_estate_vault(e, p->vault))
            unknown(c, p->pos, "vault", p->vault, NULL);
        else if (p->vault && p->key && !kvr_estate_key(e, p->vault, p->key))
            cx_error_pos(c, p->pos, "key '%.64s' is not declared in vault '%.64s'", p->key,
                         p->vault);
        if (p->app && !(a = kvr_estate_app(e, p->app)))
            unknown(c, p->pos, "app", p->app, NULL);
        if (a && p->credential)
            check_credential_ref(c, p->pos, a, p->credential);
        check_profile_access(c, p);
    }
    if (e->active) {
        const kvr_profile *p = kvr_estate_profile(e, e->active);
        if (!p) {
            unknown(c, e->active_pos, "profile", e->active, " ('active' must name a profile)");
        } else if (p->vault) {
            const kvr_vault *v = kvr_estate_vault(e, p->vault);
            if (v && v->retire)
                cx_error_pos(c, e->active_pos,
                             "the active profile '%.64s' uses vault '%.64s', which is marked "
                             "'retire'",
                             p->name, v->name);
        }
    } else if (e->nprofiles && !e->active_pos.file) {
        cx_error_pos(c, e->profiles[0].pos,
                     "profiles are declared but none is active; add 'active: <profile name>'");
    }
}

void kvr_model_check(ctx *c)
{
    check_vaults(c);
    check_apps(c);
    check_secrets(c);
    check_rotation_stores(c);
    check_keys(c);
    check_roles(c);
    check_profiles(c);
}
