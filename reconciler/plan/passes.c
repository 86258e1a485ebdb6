/*
 * The forward passes of the plan: what must be created, recovered or changed so that the live
 * estate matches the desired one. One pass per kind of object, each a plain loop over the
 * desired state comparing with the live state; dependencies between steps are recorded as they
 * are made, so ordering is a separate, mechanical pass (order.c).
 */
#include "build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *sku_name(kvr_sku s)
{
    return s == KVR_SKU_PREMIUM ? "premium" : "standard";
}

static const char *yesno(bool v)
{
    return v ? "true" : "false";
}

static char obj_buf[256];

static const char *obj(const char *kind, const char *name)
{
    snprintf(obj_buf, sizeof(obj_buf), "%s '%s'", kind, name);
    return obj_buf;
}

/* The step that makes vault `name` exist (create or recover), or NONE if it exists. */
static size_t vault_step(const pb *b, const char *name)
{
    size_t s = pb_find(b, KVR_STEP_VAULT_CREATE, name, name);
    return s != NONE ? s : pb_find(b, KVR_STEP_VAULT_RECOVER, name, name);
}

/*
 * A vault whose contents cannot be planned yet: it is being recovered (its keys, secrets and
 * certificates come back with it, so comparing with what is visible now would plan duplicates),
 * or it cannot be made at all (its name is held elsewhere). Steps inside it wait for a later run.
 */
static bool vault_pending(const pb *b, const char *name)
{
    const kvr_vault *v;
    if (pb_find(b, KVR_STEP_VAULT_RECOVER, name, name) != NONE)
        return true;
    v = kvr_estate_vault(b->d, name);
    return v && !pb_live_vault(b, name) &&
           pb_find(b, KVR_STEP_VAULT_CREATE, name, name) == NONE;
}

/* ---- vaults ------------------------------------------------------------------------------- */

static bool user_tags_equal(const kvr_tags *want, const kvr_tags *have)
{
    size_t user_have = 0;
    for (size_t i = 0; i < have->len; i++)
        if (strncmp(have->items[i].key, "kvr-", 4) != 0)
            user_have++;
    if (user_have != want->len)
        return false;
    for (size_t i = 0; i < want->len; i++) {
        const char *v = kvr_tags_get(have, want->items[i].key);
        if (!v || strcmp(v, want->items[i].value) != 0)
            return false;
    }
    return true;
}

/*
 * One change per user tag that differs, "tags.KEY: old -> new" ("(none)" when it goes); the
 * tags kvreconcile writes itself (kvr-…) are its bookkeeping, not the user's.
 */
static void tag_changes(pb *b, size_t s, const kvr_tags *want, const kvr_tags *have)
{
    char field[160];
    for (size_t i = 0; i < want->len; i++) {
        const char *h = kvr_tags_get(have, want->items[i].key);
        if (h && strcmp(h, want->items[i].value) == 0)
            continue;
        snprintf(field, sizeof(field), "tags.%s", want->items[i].key);
        pb_change(b, s, field, h, want->items[i].value, false);
    }
    for (size_t i = 0; i < have->len; i++) {
        if (strncmp(have->items[i].key, "kvr-", 4) == 0 || kvr_tags_get(want, have->items[i].key))
            continue;
        snprintf(field, sizeof(field), "tags.%s", have->items[i].key);
        pb_change(b, s, field, have->items[i].value, "(none)", false);
    }
}

static void vault_create(pb *b, const kvr_vault *v)
{
    char days[16];
    size_t s;
    const kvr_live_deleted_vault *dv = NULL;
    for (size_t i = 0; i < b->l->ndeleted_vaults; i++)
        if (kvr_str_ieq(b->l->deleted_vaults[i].name, v->name))
            dv = &b->l->deleted_vaults[i];
    if (dv) {
        if (!kvr_str_ieq(dv->location, v->location)) {
            pb_hold(b, v->name, obj("vault", v->name),
                    "the name is held by a soft-deleted vault in '%s' (desired '%s'); it can only "
                    "be recovered there, or the name is free once it is purged",
                    dv->location, v->location);
            return;
        }
        s = pb_step(b, KVR_STEP_VAULT_RECOVER, KVR_ACTION_CREATE, v->name, v->pos,
                    obj("vault", v->name),
                    "recover the soft-deleted vault (createMode: recover); its keys, secrets and "
                    "certificates come back with it, the rest is planned once it is back");
        pb_name(b, s, v->name, NULL, v->location);
        return;
    }
    s = pb_step(b, KVR_STEP_VAULT_CREATE, KVR_ACTION_CREATE, v->name, v->pos,
                obj("vault", v->name), "create in '%s' (resource group '%s')", v->location,
                v->resource_group);
    pb_name(b, s, v->name, NULL, NULL);
    snprintf(days, sizeof(days), "%d", v->soft_delete_days);
    pb_change(b, s, "sku", NULL, sku_name(v->sku), false);
    pb_change(b, s, "rbac", NULL, yesno(v->rbac), false);
    pb_change(b, s, "softDeleteDays", NULL, days, false);
    pb_change(b, s, "purgeProtection", NULL, yesno(v->purge_protection), false);
    if (v->network.set) {
        pb_change(b, s, "network.defaultAction", NULL,
                  v->network.default_action ? v->network.default_action : "Allow", false);
        pb_change(b, s, "network.bypass", NULL,
                  v->network.bypass ? v->network.bypass : "AzureServices", false);
        pb_change(b, s, "publicNetworkAccess", NULL,
                  v->network.public_access ? v->network.public_access : "Enabled", false);
        for (size_t i = 0; i < v->network.ip_rules.len; i++)
            pb_change(b, s, "network.ipRules", NULL, v->network.ip_rules.items[i], false);
        for (size_t i = 0; i < v->network.vnet_rules.len; i++)
            pb_change(b, s, "network.virtualNetworkRules", NULL, v->network.vnet_rules.items[i],
                      false);
    }
    {
        const kvr_tags none = {0};
        tag_changes(b, s, &v->tags, &none);
    }
    /* the access-policy entries it is created with: apps that have a service principal now
       (the others get theirs in a vault.access step, kvr_plan_pass_access) */
    for (size_t i = 0; !v->rbac && i < v->npolicies; i++) {
        const kvr_access_policy *ap = &v->policies[i];
        char want[512], field[160];
        if (!kvr_plan_app_principal(b, ap->app))
            continue;
        kvr_plan_policy_canon(want, sizeof(want), &ap->keys, &ap->secrets, &ap->certificates);
        snprintf(field, sizeof(field), "accessPolicies[%s]", ap->app);
        pb_change(b, s, field, NULL, want, false);
    }
}

/* ---- access policies ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends s to the string in out (size > 0), truncating. */
static void cat(char *out, size_t size, const char *s)
{
    size_t o = strlen(out);
    if (o + 1 < size)
        snprintf(out + o, size - o, "%s", s);
}

/* Appends " FAMILY=a,b" (or "=all") to out; nothing for an empty family. */
static void family_canon(char *out, size_t size, const char *family, const kvr_strlist *l,
                         const char *const *every)
{
    char names[64][32];
    char *sorted[64];
    size_t n = 0;
    bool all = false, full = true;
    for (size_t i = 0; l && i < l->len && n < 64; i++) {
        size_t k = 0;
        bool dup = false;
        for (; l->items[i][k] && k + 1 < sizeof(names[n]); k++)
            names[n][k] =
                (char)(l->items[i][k] >= 'A' && l->items[i][k] <= 'Z' ? l->items[i][k] - 'A' + 'a'
                                                                      : l->items[i][k]);
        names[n][k] = '\0';
        all |= strcmp(names[n], "all") == 0;
        for (size_t j = 0; j < n; j++)
            dup |= strcmp(sorted[j], names[n]) == 0;
        if (!dup) {
            sorted[n] = names[n];
            n++;
        }
    }
    if (n == 0)
        return;
    for (size_t e = 0; every[e] && !all; e++) { /* the model's list: "all" spelled out */
        bool have = strcmp(every[e], "all") == 0;
        for (size_t j = 0; j < n; j++)
            have |= kvr_str_ieq(sorted[j], every[e]);
        full &= have;
    }
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    if (out[0])
        cat(out, size, " ");
    cat(out, size, family);
    cat(out, size, "=");
    if (all || full) {
        cat(out, size, "all");
        return;
    }
    for (size_t j = 0; j < n; j++) {
        if (j)
            cat(out, size, ",");
        cat(out, size, sorted[j]);
    }
}

void kvr_plan_policy_canon(char *out, size_t size, const kvr_strlist *keys,
                           const kvr_strlist *secrets, const kvr_strlist *certificates)
{
    if (!size)
        return;
    out[0] = '\0';
    family_canon(out, size, "keys", keys, kvr_key_permissions);
    family_canon(out, size, "secrets", secrets, kvr_secret_permissions);
    family_canon(out, size, "certificates", certificates, kvr_certificate_permissions);
    if (!out[0])
        snprintf(out, size, "none");
}

static const kvr_live_policy *live_policy(const kvr_live_vault *lv, const char *object_id)
{
    for (size_t i = 0; i < lv->npolicies; i++)
        if (kvr_str_ieq(lv->policies[i].object_id, object_id))
            return &lv->policies[i];
    return NULL;
}

static bool declares_policy(const kvr_vault *v, const char *app)
{
    for (size_t i = 0; i < v->npolicies; i++)
        if (strcmp(v->policies[i].app, app) == 0)
            return true;
    return false;
}

/*
 * Is `rule` in `l`? IP rules compare as addresses: Azure may answer "198.51.100.17" for
 * "198.51.100.17/32" and the other way round. Virtual network rules are resource ids, compared
 * without case as ARM does.
 */
static bool has_rule(const kvr_strlist *l, const char *rule, bool ip)
{
    size_t n = strlen(rule);
    if (ip && n > 3 && strcmp(rule + n - 3, "/32") == 0)
        n -= 3;
    for (size_t i = 0; i < l->len; i++) {
        const char *x = l->items[i];
        size_t m = strlen(x);
        if (ip && m > 3 && strcmp(x + m - 3, "/32") == 0)
            m -= 3;
        if (ip ? m == n && strncmp(x, rule, n) == 0 : kvr_str_ieq(x, rule))
            return true;
    }
    return false;
}

static void vault_update(pb *b, const kvr_vault *v, const kvr_live_vault *lv)
{
    size_t s = NONE;
    const char *want_action = v->network.default_action ? v->network.default_action : "Allow";
    const char *have_action = lv->default_action ? lv->default_action : "Allow";

    if (!kvr_str_ieq(lv->location, v->location))
        pb_hold(b, v->name, obj("vault", v->name),
                "vaults cannot move ('%s' to '%s'); declare a new vault with 'copyFrom: %s'",
                lv->location, v->location, v->name);
    if (lv->soft_delete_days != v->soft_delete_days)
        pb_hold(b, v->name, obj("vault", v->name),
                "softDeleteDays is fixed when a vault is created (it is %d, desired %d)",
                lv->soft_delete_days, v->soft_delete_days);
    if (lv->purge_protection && !v->purge_protection)
        pb_hold(b, v->name, obj("vault", v->name),
                "purge protection cannot be turned off once it is on");
#define CHANGE(field, a, z)                                                                        \
    do {                                                                                           \
        if (s == NONE) {                                                                           \
            s = pb_step(b, KVR_STEP_VAULT_UPDATE, KVR_ACTION_CHANGE, v->name, v->pos,              \
                        obj("vault", v->name), "update properties");                               \
            pb_name(b, s, v->name, NULL, NULL);                                                    \
        }                                                                                          \
        pb_change(b, s, field, a, z, false);                                                       \
    } while (0)
    if (lv->sku != v->sku)
        CHANGE("sku", sku_name(lv->sku), sku_name(v->sku));
    if (lv->rbac != v->rbac)
        CHANGE("rbac", yesno(lv->rbac), yesno(v->rbac));
    if (!lv->purge_protection && v->purge_protection)
        CHANGE("purgeProtection", "false", "true");
    if (v->network.set && strcmp(want_action, have_action) != 0)
        CHANGE("network.defaultAction", have_action, want_action);
    if (v->network.set) {
        const char *want_bypass = v->network.bypass ? v->network.bypass : "AzureServices";
        const char *have_bypass = lv->bypass ? lv->bypass : "AzureServices";
        const char *want_pub = v->network.public_access ? v->network.public_access : "Enabled";
        const char *have_pub = lv->public_access ? lv->public_access : "Enabled";
        if (!kvr_str_ieq(want_bypass, have_bypass))
            CHANGE("network.bypass", have_bypass, want_bypass);
        if (!kvr_str_ieq(want_pub, have_pub))
            CHANGE("publicNetworkAccess", have_pub, want_pub);
        /* each rule that comes or goes, as a reviewer must see it (0.0.0.0/0 added in the
           portal is exactly what this is for) */
        for (size_t i = 0; i < v->network.ip_rules.len; i++)
            if (!has_rule(&lv->ip_rules, v->network.ip_rules.items[i], true))
                CHANGE("network.ipRules", NULL, v->network.ip_rules.items[i]);
        for (size_t i = 0; i < lv->ip_rules.len; i++)
            if (!has_rule(&v->network.ip_rules, lv->ip_rules.items[i], true))
                CHANGE("network.ipRules", lv->ip_rules.items[i], "(none)");
        for (size_t i = 0; i < v->network.vnet_rules.len; i++)
            if (!has_rule(&lv->vnet_rules, v->network.vnet_rules.items[i], false))
                CHANGE("network.virtualNetworkRules", NULL, v->network.vnet_rules.items[i]);
        for (size_t i = 0; i < lv->vnet_rules.len; i++)
            if (!has_rule(&v->network.vnet_rules, lv->vnet_rules.items[i], false))
                CHANGE("network.virtualNetworkRules", lv->vnet_rules.items[i], "(none)");
    }
    if (!user_tags_equal(&v->tags, &lv->tags)) {
        if (s == NONE) {
            s = pb_step(b, KVR_STEP_VAULT_UPDATE, KVR_ACTION_CHANGE, v->name, v->pos,
                        obj("vault", v->name), "update properties");
            pb_name(b, s, v->name, NULL, NULL);
        }
        tag_changes(b, s, &v->tags, &lv->tags);
    }
    /* Access policies (access-policy vaults only): the entries of declared apps, compared as
       sets. Entries of other principals (people, other services, the identity kvreconcile itself
       runs as) are never planned away: they are not the estate's, and removing the wrong one
       locks its owner (or this tool) out of the vault. An app without a service principal yet
       gets its entry in a later run, once it has one. */
    for (size_t i = 0; !v->rbac && i < v->npolicies; i++) {
        const kvr_access_policy *ap = &v->policies[i];
        const char *sp = kvr_plan_app_principal(b, ap->app);
        const kvr_live_policy *lp = sp ? live_policy(lv, sp) : NULL;
        char want[512], have[512], field[160];
        if (!sp)
            continue;
        kvr_plan_policy_canon(want, sizeof(want), &ap->keys, &ap->secrets, &ap->certificates);
        if (lp)
            kvr_plan_policy_canon(have, sizeof(have), &lp->keys, &lp->secrets, &lp->certificates);
        else
            snprintf(have, sizeof(have), "none");
        if (strcmp(want, have) != 0) {
            snprintf(field, sizeof(field), "accessPolicies[%s]", ap->app);
            CHANGE(field, have, want);
        }
    }
    for (size_t i = 0; !v->rbac && i < b->d->napps; i++) {
        const char *app = b->d->apps[i].name;
        const char *sp = kvr_plan_app_principal(b, app);
        const kvr_live_policy *lp = sp ? live_policy(lv, sp) : NULL;
        char have[512], field[160];
        if (!lp || declares_policy(v, app))
            continue;
        kvr_plan_policy_canon(have, sizeof(have), &lp->keys, &lp->secrets, &lp->certificates);
        if (strcmp(have, "none") == 0)
            continue;
        snprintf(field, sizeof(field), "accessPolicies[%s]", app);
        CHANGE(field, have, "none");
    }
#undef CHANGE
}

/*
 * Access-policy entries of apps that have no service principal yet (the plan creates it): each
 * is a step of its own, after the principal and the vault, so that the plan shows the grant
 * with its permissions before the run makes it.
 */
void kvr_plan_pass_access(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        if (v->rbac || v->retire || pb_find(b, KVR_STEP_VAULT_RECOVER, v->name, v->name) != NONE ||
            (!pb_live_vault(b, v->name) && vault_step(b, v->name) == NONE))
            continue;
        for (size_t j = 0; j < v->npolicies; j++) {
            const kvr_access_policy *ap = &v->policies[j];
            char want[512], field[160];
            size_t s;
            if (kvr_plan_app_principal(b, ap->app) || !kvr_estate_app(b->d, ap->app))
                continue;
            s = pb_step(b, KVR_STEP_VAULT_ACCESS, KVR_ACTION_CHANGE, v->name, ap->pos,
                        obj("vault", v->name), "grant app '%s' its access policy", ap->app);
            pb_name(b, s, v->name, NULL, ap->app);
            kvr_plan_policy_canon(want, sizeof(want), &ap->keys, &ap->secrets, &ap->certificates);
            snprintf(field, sizeof(field), "accessPolicies[%s]", ap->app);
            pb_change(b, s, field, "none", want, false);
            pb_change(b, s, "objectId", NULL, KVR_PLAN_NEW_PRINCIPAL, false);
            pb_dep(b, s, vault_step(b, v->name));
            pb_dep(b, s, pb_find(b, KVR_STEP_SP_CREATE, NULL, ap->app));
        }
    }
}

void kvr_plan_pass_vaults(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        const kvr_live_vault *lv = pb_live_vault(b, v->name);
        if (!lv) {
            if (!v->retire)
                vault_create(b, v);
            continue;
        }
        vault_update(b, v, lv);
    }
}

/* ---- apps and credentials ----------------------------------------------------------------- */

static bool is_cred(const kvr_live_credential *lc, const char *name)
{
    size_t n = strlen(KVR_CRED_PREFIX);
    return lc->display_name && strncmp(lc->display_name, KVR_CRED_PREFIX, n) == 0 &&
           strcmp(lc->display_name + n, name) == 0;
}

/*
 * The app's client secret of generation `name`. A crash between adding and storing, a create
 * that timed out but was done, or two runs at once can leave several: the one with a stored copy
 * is the generation's (the others were never handed to anyone), else the first.
 */
static const kvr_live_credential *live_cred(const kvr_live_app *la, const char *name,
                                            const char *stored_id)
{
    const kvr_live_credential *first = NULL;
    for (size_t i = 0; la && i < la->ncreds; i++) {
        if (!is_cred(&la->creds[i], name))
            continue;
        if (stored_id && strcmp(la->creds[i].key_id, stored_id) == 0)
            return &la->creds[i];
        if (!first)
            first = &la->creds[i];
    }
    return first;
}

const kvr_live_secret *pb_stored_copy(const pb *b, const char *key_id)
{
    for (size_t i = 0; key_id && i < b->l->nsecrets; i++) {
        const char *id = kvr_tags_get(&b->l->secrets[i].tags, KVR_TAG_CREDENTIAL);
        if (id && strcmp(id, key_id) == 0)
            return &b->l->secrets[i];
    }
    return NULL;
}

const kvr_live_secret *pb_next_copy(const pb *b, const char *key_id, size_t *k)
{
    while (key_id && *k < b->l->nsecrets) {
        const kvr_live_secret *ls = &b->l->secrets[(*k)++];
        const char *id = kvr_tags_get(&ls->tags, KVR_TAG_CREDENTIAL);
        if (id && kvr_str_ieq(id, key_id))
            return ls;
    }
    return NULL;
}

const kvr_live_secret *pb_stored_elsewhere(const pb *b, const char *key_id, const char *vault,
                                           const char *name)
{
    for (size_t i = 0; key_id && i < b->l->nsecrets; i++) {
        const kvr_live_secret *ls = &b->l->secrets[i];
        const char *id = kvr_tags_get(&ls->tags, KVR_TAG_CREDENTIAL);
        if (id && strcmp(id, key_id) == 0 &&
            !(kvr_str_ieq(ls->vault, vault) && kvr_str_ieq(ls->name, name)))
            return ls;
    }
    return NULL;
}

/*
 * A credential whose storeIn moved: its client secret is kept, and its stored value is copied
 * from where it was to where the YAML now says, before anything reads it there. A secret of
 * another kind already at the new place is never overwritten. 1: handled (a step or a hold).
 */
static int store_moved(pb *b, const kvr_app *a, const kvr_credential *cr,
                       const kvr_live_credential *lc, const kvr_live_secret *at_new,
                       const char *object)
{
    const kvr_live_secret *old =
        pb_stored_elsewhere(b, lc->key_id, cr->store_vault, cr->store_secret);
    char from[300], to[300];
    size_t s;
    if (!old)
        return 0;
    if (at_new) {
        pb_hold(b, cr->store_vault, object,
                "its storeIn moved from vault '%s' secret '%s' to vault '%s' secret '%s', which "
                "already holds another value (not this client secret's copy); it is not "
                "overwritten: choose another secret name or remove that secret",
                old->vault, old->name, cr->store_vault, cr->store_secret);
        return 1;
    }
    s = pb_step(b, KVR_STEP_CRED_MOVE_STORE, KVR_ACTION_CHANGE, cr->store_vault, cr->pos, object,
                "copy its stored value from vault '%s' secret '%s' to vault '%s' secret '%s' "
                "(the client secret itself is kept)",
                old->vault, old->name, cr->store_vault, cr->store_secret);
    pb_name(b, s, cr->name, lc->key_id, a->name);
    snprintf(from, sizeof(from), "%s/%s", old->vault, old->name);
    snprintf(to, sizeof(to), "%s/%s", cr->store_vault, cr->store_secret);
    pb_change(b, s, "storeIn", from, to, false);
    pb_change(b, s, "secret", NULL, "(sensitive)", true);
    pb_dep(b, s, vault_step(b, cr->store_vault));
    return 1;
}

/* Is a profile in Applying or Used signed in with this app credential? */
static const kvr_live_profile *cred_in_use(const pb *b, const kvr_live_app *la, const char *cred)
{
    for (size_t i = 0; la && i < b->l->nprofiles; i++) {
        const kvr_live_profile *p = &b->l->profiles[i];
        if ((p->status == KVR_PROFILE_APPLYING || p->status == KVR_PROFILE_USED) && p->client_id &&
            strcmp(p->client_id, la->app_id) == 0 && p->credential &&
            strcmp(p->credential, cred) == 0)
            return p;
    }
    return NULL;
}

void kvr_plan_pass_apps(pb *b)
{
    for (size_t i = 0; i < b->d->napps; i++) {
        const kvr_app *a = &b->d->apps[i];
        const kvr_live_app *la = kvr_live_app_get(b->l, a->display_name);
        size_t app = NONE, sp = NONE;
        if (la && la->deleted) {
            /* this estate retired it within Entra's 30 days: the same app (and client id) */
            app = pb_step(b, KVR_STEP_APP_RESTORE, KVR_ACTION_CREATE, NULL, a->pos,
                          obj("app", a->name),
                          "restore the Entra application '%s' this estate retired (it keeps its "
                          "client id; Entra restores no service principal)",
                          a->display_name);
            pb_name(b, app, a->name, NULL, NULL);
            pb_change(b, app, "appId", "(deleted)", la->app_id, false);
        }
        if (!la) {
            app = pb_step(b, KVR_STEP_APP_CREATE, KVR_ACTION_CREATE, NULL, a->pos,
                          obj("app", a->name), "register the Entra application '%s'",
                          a->display_name);
            pb_name(b, app, a->name, NULL, NULL);
            pb_change(b, app, "signInAudience", NULL, a->sign_in_audience, false);
        }
        if (la && kvr_plan_app_retiring(b, la)) {
            /* it left the YAML and came back before it was retired */
            char iso[KVR_TIME_ISO_MAX];
            size_t keep = pb_step(b, KVR_STEP_APP_KEEP, KVR_ACTION_CHANGE, NULL, a->pos,
                                  obj("app", a->name),
                                  "declared again: take off the mark of its retirement");
            kvr_time_iso(iso, sizeof(iso), kvr_plan_app_retiring(b, la));
            pb_name(b, keep, a->name, NULL, NULL);
            pb_change(b, keep, "tags.kvr-retiring-since", iso, "(none)", false);
            pb_dep(b, keep, app);
        }
        if (!la || !la->sp_id) {
            sp = pb_step(b, KVR_STEP_SP_CREATE, KVR_ACTION_CREATE, NULL, a->pos,
                         obj("app", a->name), "create its service principal");
            pb_name(b, sp, a->name, NULL, NULL);
            pb_dep(b, sp, app);
        }
        for (size_t c = 0; c < a->ncreds; c++) {
            const kvr_credential *cr = &a->creds[c];
            const kvr_live_secret *stored =
                pb_live_secret(b, cr->store_vault, cr->store_secret);
            const char *stored_id = stored ? kvr_tags_get(&stored->tags, KVR_TAG_CREDENTIAL) : NULL;
            const kvr_live_credential *lc = live_cred(la, cr->name, stored_id);
            char object[200];
            size_t s;
            snprintf(object, sizeof(object), "app '%s' credential '%s'", a->name, cr->name);
            if (vault_pending(b, cr->store_vault))
                continue;
            if (lc && stored_id && strcmp(stored_id, lc->key_id) == 0) {
                const kvr_live_secret *old =
                    pb_stored_elsewhere(b, lc->key_id, cr->store_vault, cr->store_secret);
                if (old)
                    pb_finding(b, KVR_FINDING_WARNING, old->vault, object,
                               "vault '%s' secret '%s' still holds a copy of this client secret "
                               "(its storeIn is now vault '%s' secret '%s'); kvreconcile leaves "
                               "it: delete it once nothing reads it there",
                               old->vault, old->name, cr->store_vault, cr->store_secret);
                /* made and stored; extra ones of the same generation were never stored */
                for (size_t x = 0; x < la->ncreds; x++) {
                    if (&la->creds[x] == lc || !is_cred(&la->creds[x], cr->name))
                        continue;
                    s = pb_step(b, KVR_STEP_CRED_REMOVE, KVR_ACTION_CHANGE, cr->store_vault,
                                cr->pos, object,
                                "remove an extra client secret of this generation that was never "
                                "stored (key id %s)",
                                la->creds[x].key_id);
                    pb_name(b, s, cr->name, la->creds[x].key_id, a->name);
                }
                continue;
            }
            if (lc && store_moved(b, a, cr, lc, stored, object))
                continue;
            if (lc) {
                const kvr_live_profile *user = cred_in_use(b, la, cr->name);
                if (user) {
                    pb_hold(b, NULL, object,
                            "client secret is used by profile '%s' (%s) but its stored copy in "
                            "vault '%s' secret '%s' is missing or belongs to another secret; "
                            "replacing it would lock the service out",
                            user->name, kvr_profile_status_name(user->status), cr->store_vault,
                            cr->store_secret);
                    continue;
                }
                s = pb_step(b, KVR_STEP_CRED_REPLACE_ORPHAN, KVR_ACTION_CHANGE, cr->store_vault,
                            cr->pos, object,
                            "remove the client secret that was never stored, then add and store "
                            "a new one");
                pb_name(b, s, cr->name, lc->key_id, a->name);
            } else {
                s = pb_step(b, KVR_STEP_CRED_ADD, KVR_ACTION_CREATE, cr->store_vault, cr->pos,
                            object, "add a client secret and store it in vault secret '%s'",
                            cr->store_secret);
                pb_name(b, s, cr->name, NULL, a->name);
            }
            pb_change(b, s, "secret", NULL, "(sensitive)", true);
            pb_dep(b, s, app);
            pb_dep(b, s, sp);
            pb_dep(b, s, vault_step(b, cr->store_vault));
            if (!stored && pb_live_deleted(b, cr->store_vault, "secret", cr->store_secret)) {
                /* its name is held by a soft-deleted secret (an app this estate retired, declared
                   again): Key Vault refuses the write until it is recovered */
                size_t rec = pb_find(b, KVR_STEP_SECRET_RECOVER, cr->store_vault, cr->store_secret);
                if (rec == NONE) {
                    rec = pb_step(b, KVR_STEP_SECRET_RECOVER, KVR_ACTION_CREATE, cr->store_vault,
                                  cr->pos, obj("secret", cr->store_secret),
                                  "recover the soft-deleted secret (its name is held until it is "
                                  "purged); the new client secret is then stored in it");
                    pb_name(b, rec, cr->store_secret, NULL, NULL);
                    pb_dep(b, rec, vault_step(b, cr->store_vault));
                }
                pb_dep(b, s, rec);
            }
        }
    }
}

/* ---- role assignments --------------------------------------------------------------------- */

const char *kvr_plan_app_principal(const pb *b, const char *app_name)
{
    const kvr_app *a = kvr_estate_app(b->d, app_name);
    const kvr_live_app *la = a ? kvr_live_app_get(b->l, a->display_name) : NULL;
    return la ? la->sp_id : NULL;
}

bool kvr_plan_scope_within(const char *scope, const char *vault_scope)
{
    size_t n = strlen(vault_scope);
    return strncasecmp(scope, vault_scope, n) == 0 && (scope[n] == '\0' || scope[n] == '/');
}

/* Does a declared assignment of lr's principal, other than lr, let it wrap with the key at
   `kscope`? Then removing lr takes nothing the service uses away. */
static bool kept_grant(const pb *b, const kvr_live_role *lr, const char *kscope)
{
    for (size_t i = 0; i < b->l->nroles; i++) {
        const kvr_live_role *o = &b->l->roles[i];
        if (o == lr || !kvr_str_ieq(o->principal_id, lr->principal_id) ||
            !kvr_model_role_can_wrap(o->role_id) || !kvr_plan_scope_within(kscope, o->scope))
            continue;
        for (size_t a = 0; a < b->d->napps; a++) {
            const char *sp = kvr_plan_app_principal(b, b->d->apps[a].name);
            if (sp && kvr_str_ieq(sp, o->principal_id) &&
                pb_role_declared(b, b->d->apps[a].name, o->scope, o->role_id))
                return true;
        }
    }
    return false;
}

/*
 * Managed principals hold exactly the access the YAML declares: a role assignment of a declared
 * app on a declared vault or one of its keys that the YAML does not declare (Key Vault
 * Administrator given in the portal, a grant left from an earlier pull request) is removed, after
 * the app's declared assignments are made. Assignments above the vault (resource group,
 * subscription) are not the estate's to change, and other principals' are never touched.
 */
void kvr_plan_pass_roles_undeclared(pb *b)
{
    const char *sub = b->in->subscription ? b->in->subscription : "{subscription}";
    for (size_t i = 0; i < b->l->nroles; i++) {
        const kvr_live_role *lr = &b->l->roles[i];
        const kvr_app *app = NULL;
        const kvr_vault *vault = NULL;
        const char *role_name = kvr_model_role_name(lr->role_id);
        char object[256];
        size_t s;
        for (size_t a = 0; a < b->d->napps && !app; a++) {
            const char *sp = kvr_plan_app_principal(b, b->d->apps[a].name);
            if (sp && kvr_str_ieq(sp, lr->principal_id))
                app = &b->d->apps[a];
        }
        if (app)
            vault = kvr_plan_role_vault(b, lr);
        if (!app || !vault || vault->retire || pb_role_declared(b, app->name, lr->scope, lr->role_id))
            continue;
        snprintf(object, sizeof(object), "role '%s' for app '%s'", role_name ? role_name : lr->role_id,
                 app->name);
        s = pb_step(b, KVR_STEP_ROLE_DELETE, KVR_ACTION_RETIRE, vault->name, app->pos, object,
                    "remove: the app holds exactly the access the YAML declares");
        pb_name(b, s, app->name, lr->name, lr->scope);
        pb_change(b, s, "roleDefinitionId", lr->role_id, "(none)", false);
        pb_change(b, s, "scope", lr->scope, "(none)", false);
        /* never while a profile in Applying or Used signs in with the app and uses a key the
           assignment covers: the service would lose its access to its data keys */
        {
            const kvr_live_app *la = kvr_live_app_get(b->l, app->display_name);
            for (size_t p = 0; la && p < b->l->nprofiles; p++) {
                const kvr_live_profile *lp = &b->l->profiles[p];
                const kvr_vault *pv = kvr_estate_vault(b->d, lp->vault);
                char kscope[512];
                if ((lp->status != KVR_PROFILE_APPLYING && lp->status != KVR_PROFILE_USED) ||
                    !lp->client_id || strcmp(lp->client_id, la->app_id) != 0)
                    continue;
                kvr_plan_scope(kscope, sizeof(kscope), sub, pv ? pv->resource_group : "",
                               lp->vault, lp->key);
                if (!pv || !kvr_plan_scope_within(kscope, lr->scope) ||
                    !kvr_model_role_can_wrap(lr->role_id) || kept_grant(b, lr, kscope))
                    continue;
                pb_gate(b, s, KVR_GATE_UNREFERENCED, false, 0,
                        "profile '%s' (%s) uses key '%s' through this assignment", lp->name,
                        kvr_profile_status_name(lp->status), lp->key);
                pb_dep(b, s, b->active_apply); /* set by the retirement pass, which calls this */
            }
        }
        for (size_t j = 0; j < b->p->nsteps; j++) /* its declared grants are made first */
            if (b->p->steps[j].kind == KVR_STEP_ROLE_CREATE && b->p->steps[j].name &&
                strcmp(b->p->steps[j].name, app->name) == 0)
                pb_dep(b, s, j);
    }
}

void kvr_plan_pass_roles(pb *b)
{
    const char *sub = b->in->subscription ? b->in->subscription : "{subscription}";
    for (size_t i = 0; i < b->d->nroles; i++) {
        const kvr_role_assignment *r = &b->d->roles[i];
        const kvr_vault *v = kvr_estate_vault(b->d, r->vault);
        const char *principal = kvr_plan_app_principal(b, r->app);
        const char *role_name = kvr_model_role_name(r->role_id);
        char scope[512], object[256];
        size_t s;
        if (!v || vault_pending(b, v->name))
            continue;
        kvr_plan_scope(scope, sizeof(scope), sub, v->resource_group, v->name, r->key);
        if (principal && pb_live_role(b, scope, r->role_id, principal))
            continue;
        snprintf(object, sizeof(object), "role '%s' for app '%s'", role_name ? role_name : r->role,
                 r->app);
        s = pb_step(b, KVR_STEP_ROLE_CREATE, KVR_ACTION_CREATE, v->name, r->pos, object,
                    "assign on %s", r->key ? "one key" : "the vault");
        pb_name(b, s, r->app, r->key, r->role_id);
        pb_change(b, s, "roleDefinitionId", NULL, r->role_id, false);
        pb_change(b, s, "principalId", NULL,
                  principal ? principal : KVR_PLAN_NEW_PRINCIPAL,
                  false);
        pb_change(b, s, "scope", NULL, scope, false);
        pb_dep(b, s, vault_step(b, v->name));
        pb_dep(b, s, pb_find(b, KVR_STEP_SP_CREATE, NULL, r->app));
        if (r->key)
            pb_dep(b, s, pb_find(b, KVR_STEP_KEY_CREATE, v->name, r->key));
    }
}

/* ---- keys --------------------------------------------------------------------------------- */

static const char *newest_generation(const kvr_live_key *lk)
{
    for (size_t i = lk->nversions; i > 0; i--) {
        const char *g = kvr_tags_get(&lk->versions[i - 1].tags, KVR_TAG_GENERATION);
        if (g)
            return g;
    }
    return NULL;
}

static bool same_policy(const kvr_rotation *a, const kvr_rotation *b)
{
    return a->every == b->every && a->before_expiry == b->before_expiry &&
           a->expires_after == b->expires_after && a->notify_before == b->notify_before;
}

static void key_shape(char *buf, size_t n, const char *kty, int size, const char *crv)
{
    if (crv && *crv)
        snprintf(buf, n, "%s %s", kty, crv);
    else
        snprintf(buf, n, "%s %d", kty, size);
}

/* "wrapKey,unwrapKey": a key's permitted operations, in Key Vault's names and order. */
static void ops_text(char *out, size_t size, unsigned ops)
{
    static const char *const names[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey",
                                        "unwrapKey"};
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (ops & (1u << i)) {
            if (out[0])
                cat(out, size, ",");
            cat(out, size, names[i]);
        }
    if (!out[0])
        snprintf(out, size, "none");
}

/* One change per rotation policy field that differs (have NULL: no policy yet), old -> new. */
static void policy_changes(pb *b, size_t s, const kvr_rotation *want, const kvr_rotation *have)
{
    static const char *const fields[] = {"rotationPolicy.every", "rotationPolicy.beforeExpiry",
                                         "rotationPolicy.expiresAfter",
                                         "rotationPolicy.notifyBefore"};
    const int64_t w[] = {want->every, want->before_expiry, want->expires_after,
                         want->notify_before};
    const int64_t h[] = {have ? have->every : 0, have ? have->before_expiry : 0,
                         have ? have->expires_after : 0, have ? have->notify_before : 0};
    for (int i = 0; i < 4; i++) {
        char from[32], to[32];
        if (w[i] == h[i])
            continue;
        if (h[i])
            kvr_duration_iso(from, sizeof(from), h[i]);
        if (w[i])
            kvr_duration_iso(to, sizeof(to), w[i]);
        pb_change(b, s, fields[i], h[i] ? from : NULL, w[i] ? to : "(none)", false);
    }
}

void kvr_plan_pass_keys(pb *b)
{
    for (size_t i = 0; i < b->d->nkeys; i++) {
        const kvr_key *k = &b->d->keys[i];
        const kvr_vault *v = kvr_estate_vault(b->d, k->vault);
        const kvr_live_key *lk = pb_live_key(b, k->vault, k->name);
        const char *type = kvr_key_type_name(k->type);
        char want[64], have[64], from[96], to[96];
        size_t s;
        if (!v || v->retire || vault_pending(b, v->name))
            continue;
        key_shape(want, sizeof(want), type, k->size, k->curve);
        if (!lk) {
            if (pb_live_deleted(b, k->vault, "key", k->name)) {
                s = pb_step(b, KVR_STEP_KEY_RECOVER, KVR_ACTION_CREATE, k->vault, k->pos,
                            obj("key", k->name), "recover the soft-deleted key (its name is held "
                                                 "until it is purged)");
                pb_name(b, s, k->name, NULL, NULL);
                pb_dep(b, s, vault_step(b, k->vault));
                continue;
            }
            s = pb_step(b, KVR_STEP_KEY_CREATE, KVR_ACTION_CREATE, k->vault, k->pos,
                        obj("key", k->name), "create %s", want);
            pb_name(b, s, k->name, NULL, k->generation);
            if (k->generation)
                pb_change(b, s, "generation", NULL, k->generation, false);
            if (k->rotation.set)
                policy_changes(b, s, &k->rotation, NULL);
            pb_dep(b, s, vault_step(b, k->vault));
            continue;
        }
        key_shape(have, sizeof(have), lk->kty, lk->size, lk->crv);
        if (k->generation) {
            const char *g = newest_generation(lk);
            if (!g || strcmp(g, k->generation) != 0) {
                s = pb_step(b, KVR_STEP_KEY_NEW_VERSION, KVR_ACTION_CHANGE, k->vault, k->pos,
                            obj("key", k->name), "create a new version for generation '%s'",
                            k->generation);
                pb_name(b, s, k->name, NULL, k->generation);
                pb_change(b, s, "generation", g, k->generation, false);
                if (strcmp(want, have) != 0)
                    pb_change(b, s, "type", have, want, false);
            } else if (strcmp(want, have) != 0) {
                pb_hold(b, k->vault, obj("key", k->name),
                        "the key is %s in Azure but %s is declared; key material cannot change: "
                        "set a new 'generation' to create a version with the new type",
                        have, want);
            }
        } else if (strcmp(want, have) != 0) {
            pb_hold(b, k->vault, obj("key", k->name),
                    "the key is %s in Azure but %s is declared; key material cannot change: set "
                    "'generation' to create a version with the new type",
                    have, want);
        }
        if (lk->ops != k->ops && pb_find(b, KVR_STEP_KEY_NEW_VERSION, k->vault, k->name) == NONE) {
            s = pb_step(b, KVR_STEP_KEY_UPDATE, KVR_ACTION_CHANGE, k->vault, k->pos,
                        obj("key", k->name), "update the permitted operations of the latest "
                                             "version");
            pb_name(b, s, k->name, NULL, NULL);
            ops_text(from, sizeof(from), lk->ops);
            ops_text(to, sizeof(to), k->ops);
            pb_change(b, s, "ops", from, to, false);
        }
        if (k->rotation.set && (!lk->has_policy || !same_policy(&k->rotation, &lk->policy))) {
            s = pb_step(b, KVR_STEP_KEY_POLICY, KVR_ACTION_CHANGE, k->vault, k->pos,
                        obj("key", k->name), "set the rotation policy");
            pb_name(b, s, k->name, NULL, NULL);
            policy_changes(b, s, &k->rotation, lk->has_policy ? &lk->policy : NULL);
        }
    }
    /* A new key's rotation policy is set by the executor right after it creates the key. */
}

/* ---- secrets ------------------------------------------------------------------------------ */

static const char *desired_digest(const pb *b, const kvr_secret *s)
{
    return pb_digest(b, s->vault, s->name);
}

/* The step of this plan that adds (or replaces) an app credential, or, with `moves`, also one
   that copies its stored value to a new storeIn; NONE if there is none. */
static size_t credential_step_of(const pb *b, const char *app, const char *credential, bool moves)
{
    for (size_t j = 0; j < b->p->nsteps; j++) {
        const kvr_step *c = &b->p->steps[j];
        if ((c->kind == KVR_STEP_CRED_ADD || c->kind == KVR_STEP_CRED_REPLACE_ORPHAN ||
             (moves && c->kind == KVR_STEP_CRED_MOVE_STORE)) &&
            strcmp(c->name, credential) == 0 && strcmp(c->extra, app) == 0)
            return j;
    }
    return NONE;
}

/* A step of this plan that makes a new client secret for the credential, or NONE. */
static size_t credential_step(const pb *b, const char *app, const char *credential)
{
    return credential_step_of(b, app, credential, false);
}

/* A step that the credential's stored copy waits for (a new one, or its move), or NONE. */
static size_t credential_store_step(const pb *b, const char *app, const char *credential)
{
    return credential_step_of(b, app, credential, true);
}

/* The marker of what a fromAppCredential secret should hold: its credential's stored copy (or,
   while this plan moves it to a new storeIn, the copy it moves). */
static const kvr_live_secret *credential_store(const pb *b, const kvr_secret *s)
{
    const kvr_app *a = kvr_estate_app(b->d, s->app);
    const kvr_credential *cr = a ? kvr_app_credential(a, s->credential) : NULL;
    const kvr_live_secret *at = cr ? pb_live_secret(b, cr->store_vault, cr->store_secret) : NULL;
    size_t mv = credential_store_step(b, s->app, s->credential);
    if (!at && mv != NONE && b->p->steps[mv].kind == KVR_STEP_CRED_MOVE_STORE)
        at = pb_stored_elsewhere(b, b->p->steps[mv].version, cr->store_vault, cr->store_secret);
    return at;
}

void kvr_plan_pass_secrets(pb *b)
{
    for (size_t i = 0; i < b->d->nsecrets; i++) {
        const kvr_secret *s = &b->d->secrets[i];
        const kvr_vault *v = kvr_estate_vault(b->d, s->vault);
        const kvr_live_secret *ls = pb_live_secret(b, s->vault, s->name);
        const char *want = NULL;
        size_t st;
        if (!v || v->retire || vault_pending(b, v->name))
            continue;
        if (s->source == KVR_SECRET_FROM_APP_CREDENTIAL) {
            const kvr_live_secret *src = credential_store(b, s);
            want = src ? src->digest : NULL;
            /* Nothing to copy from yet, and no step of this plan makes it: leave it be. */
            if (!want && ls && credential_step(b, s->app, s->credential) == NONE)
                continue;
        } else if (s->source != KVR_SECRET_GENERATE && s->source != KVR_SECRET_EXTERNAL) {
            want = desired_digest(b, s);
        }
        if (!ls && pb_live_deleted(b, s->vault, "secret", s->name)) {
            st = pb_step(b, KVR_STEP_SECRET_RECOVER, KVR_ACTION_CREATE, s->vault, s->pos,
                         obj("secret", s->name), "recover the soft-deleted secret (its name is "
                                                 "held until it is purged)");
            pb_name(b, st, s->name, NULL, NULL);
            pb_dep(b, st, vault_step(b, s->vault));
            continue;
        }
        if (!ls && pb_find(b, KVR_STEP_SECRET_COPY, s->vault, s->name) != NONE)
            continue; /* a relocation copies it: "generate" keeps the value it already has */
        if (!ls && s->source == KVR_SECRET_EXTERNAL) {
            /* its value is made elsewhere: kvreconcile has none to give it */
            pb_hold(b, s->vault, obj("secret", s->name),
                    "the secret does not exist and its value is managed outside this repository "
                    "('external: true'); create it there first");
            continue;
        }
        if (!ls || (want && (!ls->digest || strcmp(ls->digest, want) != 0)) ||
            (s->source == KVR_SECRET_FROM_APP_CREDENTIAL &&
             credential_step(b, s->app, s->credential) != NONE)) {
            static const char *const how[] = {"generate", "from the environment", "from a file",
                                              "copy of an app credential", "external"};
            char from[40], to[40];
            st = pb_step(b, KVR_STEP_SECRET_SET, ls ? KVR_ACTION_CHANGE : KVR_ACTION_CREATE,
                         s->vault, s->pos, obj("secret", s->name), "%s value (%s)",
                         ls ? "set a new" : "set its", how[s->source]);
            pb_name(b, st, s->name, NULL, NULL);
            snprintf(from, sizeof(from), "(sensitive %.8s)", ls && ls->digest ? ls->digest : "");
            snprintf(to, sizeof(to), "(sensitive %.8s)", want ? want : "");
            pb_change(b, st, "value", ls ? from : NULL, want ? to : "(sensitive)", true);
            pb_dep(b, st, vault_step(b, s->vault));
            if (s->source == KVR_SECRET_FROM_APP_CREDENTIAL)
                pb_dep(b, st, credential_store_step(b, s->app, s->credential));
            continue;
        }
        if ((s->content_type && (!ls->content_type || strcmp(s->content_type, ls->content_type))) ||
            !user_tags_equal(&s->tags, &ls->tags)) {
            st = pb_step(b, KVR_STEP_SECRET_UPDATE, KVR_ACTION_CHANGE, s->vault, s->pos,
                         obj("secret", s->name), "update content type and tags");
            pb_name(b, st, s->name, NULL, NULL);
            if (s->content_type && (!ls->content_type || strcmp(s->content_type, ls->content_type)))
                pb_change(b, st, "contentType", ls->content_type, s->content_type, false);
            tag_changes(b, st, &s->tags, &ls->tags);
        }
    }
}

/* ---- relocation copies -------------------------------------------------------------------- */

/* The declared secret `name` of vault `vault`, or NULL. */
static const kvr_secret *declared_secret(const pb *b, const char *vault, const char *name)
{
    return kvr_estate_secret(b->d, vault, name);
}

/*
 * Which source secrets a relocation copies: every enabled one, except the stored copies of app
 * credentials (their lifecycle is the credential's) and secrets the target declares with a
 * source of their own (fromEnv, fromFile, fromAppCredential: their own step sets them). A
 * declared `generate` or `external` secret is copied: "make once, keep" must survive a move.
 */
static bool copied(const pb *b, const kvr_vault *dst, const kvr_live_secret *ls)
{
    const kvr_secret *d;
    if (!kvr_str_ieq(ls->vault, dst->copy_from.vault) || !ls->enabled ||
        kvr_tags_get(&ls->tags, KVR_TAG_CREDENTIAL))
        return false;
    d = declared_secret(b, dst->name, ls->name);
    return !d || d->source == KVR_SECRET_GENERATE || d->source == KVR_SECRET_EXTERNAL;
}

static bool cert_present(const pb *b, const char *vault, const kvr_live_cert *c)
{
    return pb_live_cert(b, vault, c->name, c->x5t);
}

bool kvr_plan_copy_complete(const pb *b, const kvr_vault *dst)
{
    if (!pb_live_vault(b, dst->name))
        return false;
    for (size_t j = 0; dst->copy_from.secrets != KVR_COPY_NONE && j < b->l->nsecrets; j++) {
        const kvr_live_secret *ls = &b->l->secrets[j], *to;
        if (!copied(b, dst, ls))
            continue;
        to = pb_live_secret(b, dst->name, ls->name);
        if (!to || !to->digest || !ls->digest || strcmp(to->digest, ls->digest) != 0)
            return false;
    }
    for (size_t j = 0; dst->copy_from.certificates && j < b->l->ncerts; j++)
        if (kvr_str_ieq(b->l->certs[j].vault, dst->copy_from.vault) &&
            !cert_present(b, dst->name, &b->l->certs[j]))
            return false;
    return true;
}

void kvr_plan_pass_copies(pb *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_vault *v = &b->d->vaults[i];
        const char *src = v->copy_from.vault;
        size_t verify = NONE, ncopies = 0, first = b->p->nsteps;
        if (!src || !pb_live_vault(b, src) || vault_pending(b, v->name))
            continue;
        for (size_t j = 0; v->copy_from.secrets != KVR_COPY_NONE && j < b->l->nsecrets; j++) {
            const kvr_live_secret *ls = &b->l->secrets[j];
            const kvr_live_secret *to;
            size_t s;
            if (!copied(b, v, ls))
                continue;
            to = pb_live_secret(b, v->name, ls->name);
            if (to && to->digest && ls->digest && strcmp(to->digest, ls->digest) == 0)
                continue;
            if (to && to->digest && ls->digest && !kvr_tags_get(&to->tags, KVR_TAG_COPY)) {
                /* The new vault's value was not written by the copy: someone changed it there
                   after the move began. Newer data is never rolled back to the old vault's. */
                char t_to[KVR_TIME_ISO_MAX] = "an unknown time", t_src[KVR_TIME_ISO_MAX] =
                                                                    "an unknown time";
                if (to->updated)
                    kvr_time_iso(t_to, sizeof(t_to), to->updated);
                if (ls->updated)
                    kvr_time_iso(t_src, sizeof(t_src), ls->updated);
                pb_hold(b, v->name, obj("secret", ls->name),
                        "conflict: its value in vault '%s' (updated %s) was not written by the "
                        "copy and differs from vault '%s' (updated %s); it is not overwritten. "
                        "Keep one value in both vaults (or remove the secret from '%s') and run "
                        "again",
                        v->name, t_to, src, t_src, v->name);
                continue;
            }
            s = pb_step(b, KVR_STEP_SECRET_COPY, to ? KVR_ACTION_CHANGE : KVR_ACTION_CREATE,
                        v->name, v->copy_from.pos, obj("secret", ls->name),
                        "copy from vault '%s' (%s)", src,
                        v->copy_from.secrets == KVR_COPY_ALL ? "all enabled versions"
                                                             : "latest version");
            pb_name(b, s, ls->name, NULL, src);
            pb_change(b, s, "value", NULL, "(sensitive)", true);
            pb_dep(b, s, vault_step(b, v->name));
            ncopies++;
        }
        for (size_t j = 0; v->copy_from.certificates && j < b->l->ncerts; j++) {
            const kvr_live_cert *lc = &b->l->certs[j];
            size_t s;
            if (!kvr_str_ieq(lc->vault, src) || cert_present(b, v->name, lc))
                continue;
            s = pb_step(b, KVR_STEP_CERT_COPY, KVR_ACTION_CREATE, v->name, v->copy_from.pos,
                        obj("certificate", lc->name), "copy from vault '%s' (with its key)", src);
            pb_name(b, s, lc->name, NULL, src);
            pb_dep(b, s, vault_step(b, v->name));
            ncopies++;
        }
        if (ncopies == 0)
            continue;
        verify = pb_step(b, KVR_STEP_COPY_VERIFY, KVR_ACTION_CHANGE, v->name, v->copy_from.pos,
                         obj("vault", v->name),
                         "verify it holds everything copied from '%s' (digests compared in "
                         "memory)",
                         src);
        pb_name(b, verify, v->name, NULL, src);
        for (size_t j = first; j < b->p->nsteps; j++)
            if (j != verify)
                pb_dep(b, verify, j);
    }
}

/* ---- profiles ----------------------------------------------------------------------------- */

/* Role steps this profile's app needs on its vault (or key): gate and dependencies. */
static void profile_access(pb *b, size_t s, const kvr_profile *p)
{
    bool creating = false;
    for (size_t j = 0; j < b->p->nsteps; j++) {
        const kvr_step *r = &b->p->steps[j];
        if (r->kind != KVR_STEP_ROLE_CREATE || strcmp(r->name, p->app) != 0 ||
            !kvr_str_ieq(r->vault, p->vault) || (r->version && !kvr_str_ieq(r->version, p->key)))
            continue;
        pb_dep(b, s, j);
        creating = true;
    }
    if (creating)
        pb_gate(b, s, KVR_GATE_ROLE_EFFECTIVE, false, 0,
                "the new role assignment of app '%s' on vault '%s' to take effect (apply proves "
                "it with a token and a call)",
                p->app, p->vault);
    pb_dep(b, s, credential_store_step(b, p->app, p->credential));
    pb_dep(b, s, pb_find(b, KVR_STEP_SP_CREATE, NULL, p->app));
}

void kvr_plan_pass_profiles(pb *b)
{
    for (size_t i = 0; i < b->d->nprofiles; i++) {
        const kvr_profile *p = &b->d->profiles[i];
        const kvr_live_profile *lp = kvr_live_profile_get(b->l, p->name);
        bool active = b->d->active && strcmp(b->d->active, p->name) == 0;
        size_t create = NONE, creds = NONE, apply;
        if (vault_pending(b, p->vault))
            continue;
        if (!lp) {
            const kvr_live_key *lk = pb_live_key(b, p->vault, p->key);
            size_t kstep = pb_find(b, KVR_STEP_KEY_NEW_VERSION, p->vault, p->key);
            const char *version = p->key_version;
            if (kstep == NONE)
                kstep = pb_find(b, KVR_STEP_KEY_CREATE, p->vault, p->key);
            if (kstep == NONE)
                kstep = pb_find(b, KVR_STEP_KEY_RECOVER, p->vault, p->key);
            if (!version && kstep == NONE && lk && lk->nversions)
                version = lk->versions[lk->nversions - 1].id;
            create = pb_step(b, KVR_STEP_PROFILE_CREATE, KVR_ACTION_CREATE, p->vault, p->pos,
                             obj("profile", p->name), "create with key '%s' and app '%s'", p->key,
                             p->app);
            pb_name(b, create, p->name, NULL, NULL);
            pb_change(b, create, "key", NULL, p->key, false);
            pb_change(b, create, "keyVersion", NULL,
                      version ? version : KVR_PLAN_NEW_VERSION, false);
            pb_change(b, create, "credential", NULL, p->credential, false);
            pb_dep(b, create, kstep);
            pb_dep(b, create, vault_step(b, p->vault));
            profile_access(b, create, p);
        } else {
            if (!kvr_str_ieq(lp->vault, p->vault) || !kvr_str_ieq(lp->key, p->key) ||
                (p->key_version && !kvr_str_ieq(lp->key_version, p->key_version)))
                pb_hold(b, p->vault, obj("profile", p->name),
                        "the profile exists with key '%s/%s' version %s; a profile cannot be "
                        "re-pointed: declare a new profile and make it active",
                        lp->vault, lp->key, lp->key_version);
            if (!lp->credential || strcmp(lp->credential, p->credential) != 0) {
                creds = pb_step(b, KVR_STEP_PROFILE_SET_CREDENTIALS, KVR_ACTION_CHANGE, p->vault,
                                p->pos, obj("profile", p->name),
                                "sign in with app '%s' credential '%s'", p->app, p->credential);
                pb_name(b, creds, p->name, NULL, NULL);
                pb_change(b, creds, "credential", lp->credential, p->credential, false);
                pb_change(b, creds, "clientSecret", "(sensitive)", "(sensitive)", true);
                profile_access(b, creds, p);
            }
            if (lp->status == KVR_PROFILE_FAILED && active)
                pb_hold(b, p->vault, obj("profile", p->name),
                        "the service reports the profile Failed; see its data keys before "
                        "anything else changes");
        }
        if (!active || (lp && (lp->status == KVR_PROFILE_USED || lp->status == KVR_PROFILE_FAILED)))
            continue;
        apply = pb_step(b, KVR_STEP_PROFILE_APPLY, KVR_ACTION_CHANGE, p->vault, p->pos,
                        obj("profile", p->name),
                        "apply: the service re-wraps every data key with it (Applying, then Used)");
        pb_name(b, apply, p->name, NULL, NULL);
        if (lp && lp->status == KVR_PROFILE_APPLYING) {
            /* Under way: the estate has converged only once the service reports Used.
               (Applying an Applying profile changes nothing, so the step is a pure wait.) */
            pb_gate(b, apply, KVR_GATE_PROFILE_USED, false, 0,
                    "profile '%s' to become Used (the service is re-wrapping its data keys)",
                    p->name);
            continue;
        }
        pb_dep(b, apply, create);
        pb_dep(b, apply, creds);
        profile_access(b, apply, p);
    }
}

/* ---- findings ----------------------------------------------------------------------------- */

/* Does app a declare a later generation than lc: one that ends later, or one this plan makes? */
static bool has_successor(const pb *b, const kvr_app *a, const kvr_live_app *la,
                          const kvr_live_credential *lc)
{
    for (size_t c = 0; c < a->ncreds; c++) {
        const kvr_live_credential *other = live_cred(la, a->creds[c].name, NULL);
        if (other == lc)
            continue;
        if ((other && other->end > lc->end) || credential_step(b, a->name, a->creds[c].name) != NONE)
            return true;
    }
    return false;
}

/*
 * Client secrets near or past their end. Entra refuses an expired one (AADSTS7000222), so a
 * profile in Applying or Used that still signs in with it can no longer reach its key: an
 * error-level finding. Inside the credential's overlap before its end, or past it when nothing
 * uses it, a warning: the next generation is due, unless it is declared already (or this plan
 * makes it, as a credentialRotation does). Nothing here plans a step; the pull request that
 * declares the next generation does.
 */
void kvr_plan_pass_findings(pb *b)
{
    for (size_t i = 0; i < b->d->napps; i++) {
        const kvr_app *a = &b->d->apps[i];
        const kvr_live_app *la = kvr_live_app_get(b->l, a->display_name);
        for (size_t c = 0; la && c < a->ncreds; c++) {
            const kvr_credential *cr = &a->creds[c];
            const kvr_live_credential *lc = live_cred(la, cr->name, NULL);
            const kvr_live_profile *user;
            char object[200], when[KVR_TIME_ISO_MAX];
            if (!lc || !lc->end)
                continue;
            user = cred_in_use(b, la, cr->name);
            kvr_time_iso(when, sizeof(when), lc->end);
            snprintf(object, sizeof(object), "app '%s' credential '%s'", a->name, cr->name);
            if (lc->end <= b->now && user)
                pb_finding(b, KVR_FINDING_ERROR, cr->store_vault, object,
                           "expired at %s, and profile '%s' (%s) still signs in with it: Entra "
                           "refuses it (AADSTS7000222), so the service cannot reach its key; "
                           "declare a new generation and point the profile at it",
                           when, user->name, kvr_profile_status_name(user->status));
            else if (has_successor(b, a, la, lc))
                continue; /* the next generation is there, or on its way */
            else if (lc->end <= b->now)
                pb_finding(b, KVR_FINDING_WARNING, cr->store_vault, object,
                           "expired at %s; declare a new generation (nothing uses this one now)",
                           when);
            else if (lc->end - cr->overlap <= b->now)
                pb_finding(b, KVR_FINDING_WARNING, cr->store_vault, object,
                           "ends at %s, within its overlap of %lld days: declare the next "
                           "generation now",
                           when, (long long)(cr->overlap / 86400));
        }
    }
}
