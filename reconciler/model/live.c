/*
 * The live model: lookups, freeing, and a reader for its JSON form. The JSON form lets plan
 * tests be pure data (desired.yaml + live.json -> expected plan) and lets a user attach the
 * state a plan was computed from to a bug report. Reading it is strict: unknown members and
 * wrong types are errors naming the JSON path, so a fixture cannot silently mean something else.
 */
#include "kvr/live.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lookups and freeing ------------------------------------------------------------------ */

const char *kvr_tags_get(const kvr_tags *t, const char *key)
{
    for (size_t i = 0; i < t->len; i++)
        if (strcmp(t->items[i].key, key) == 0)
            return t->items[i].value;
    return NULL;
}

const char *kvr_dependent_kind(const char *type)
{
    static const struct {
        const char *type, *kind;
    } kinds[] = {{"Microsoft.Storage/storageAccounts", "storage account"},
                 {"Microsoft.Compute/diskEncryptionSets", "disk encryption set"},
                 {"Microsoft.Sql/servers", "SQL server"},
                 {"Microsoft.DocumentDB/databaseAccounts", "Cosmos DB account"},
                 {"Microsoft.Web/sites", "app"}};
    for (size_t i = 0; type && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kvr_str_ieq(type, kinds[i].type))
            return kinds[i].kind;
    return "resource";
}

const char *kvr_profile_status_name(kvr_profile_status s)
{
    switch (s) {
    case KVR_PROFILE_CREATED:
        return "Created";
    case KVR_PROFILE_APPLYING:
        return "Applying";
    case KVR_PROFILE_USED:
        return "Used";
    case KVR_PROFILE_INACTIVE:
        return "Inactive";
    case KVR_PROFILE_FAILED:
        return "Failed";
    }
    return "?";
}

const kvr_live_vault *kvr_live_vault_get(const kvr_live *l, const char *name)
{
    for (size_t i = 0; i < l->nvaults; i++)
        if (kvr_str_ieq(l->vaults[i].name, name))
            return &l->vaults[i];
    return NULL;
}

const kvr_live_key *kvr_live_key_get(const kvr_live *l, const char *vault, const char *name)
{
    for (size_t i = 0; i < l->nkeys; i++)
        if (kvr_str_ieq(l->keys[i].vault, vault) && kvr_str_ieq(l->keys[i].name, name))
            return &l->keys[i];
    return NULL;
}

const kvr_live_secret *kvr_live_secret_get(const kvr_live *l, const char *vault, const char *name)
{
    for (size_t i = 0; i < l->nsecrets; i++)
        if (kvr_str_ieq(l->secrets[i].vault, vault) && kvr_str_ieq(l->secrets[i].name, name))
            return &l->secrets[i];
    return NULL;
}

const kvr_live_app *kvr_live_app_get(const kvr_live *l, const char *display_name)
{
    for (size_t i = 0; i < l->napps; i++)
        if (strcmp(l->apps[i].display_name, display_name) == 0)
            return &l->apps[i];
    return NULL;
}

const kvr_live_profile *kvr_live_profile_get(const kvr_live *l, const char *name)
{
    for (size_t i = 0; i < l->nprofiles; i++)
        if (strcmp(l->profiles[i].name, name) == 0)
            return &l->profiles[i];
    return NULL;
}

void kvr_live_free(kvr_live *l)
{
    if (!l)
        return;
    /* the strings are the pool's; what is freed here are the arrays that point to them */
    for (size_t i = 0; i < l->nvaults; i++) {
        free(l->vaults[i].tags.items);
        for (size_t j = 0; j < l->vaults[i].npolicies; j++) {
            kvr_live_policy *p = &l->vaults[i].policies[j];
            free(p->keys.items);
            free(p->secrets.items);
            free(p->certificates.items);
        }
        free(l->vaults[i].policies);
        free(l->vaults[i].ip_rules.items);
        free(l->vaults[i].vnet_rules.items);
    }
    free(l->vaults);
    free(l->deleted_vaults);
    for (size_t i = 0; i < l->nkeys; i++) {
        kvr_live_key *k = &l->keys[i];
        for (size_t v = 0; v < k->nversions; v++)
            free(k->versions[v].tags.items);
        free(k->versions);
    }
    free(l->keys);
    for (size_t i = 0; i < l->nsecrets; i++)
        free(l->secrets[i].tags.items);
    free(l->secrets);
    free(l->certs);
    free(l->unread_keys);
    free(l->deleted);
    for (size_t i = 0; i < l->napps; i++) {
        free(l->apps[i].creds);
        free(l->apps[i].tags.items);
    }
    free(l->apps);
    free(l->roles);
    free(l->profiles);
    free(l->dependents);
    kvr_strpool_release(&l->strings);
    kvr_strset_release(&l->shared);
    free(l);
}

/* ---- the JSON reader ---------------------------------------------------------------------- */

typedef struct rd {
    kvr_error *err;
    kvr_strpool *strings; /* the live model's */
    char path[256];
    bool failed;
} rd;

static void rd_fail(rd *r, const char *what)
{
    if (!r->failed)
        kvr_error_set(r->err, KVR_EINVAL, "live state: %s at %s", what, r->path);
    r->failed = true;
}

/* Checks that `obj` has only the members in `allowed`. */
static void rd_members(rd *r, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        (void)v;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char msg[128];
            snprintf(msg, sizeof(msg), "unknown member '%.64s'", key);
            rd_fail(r, msg);
        }
    }
}

static char *rd_str(rd *r, json_t *obj, const char *k, bool required)
{
    json_t *v = json_object_get(obj, k);
    char *s;
    if (!v || json_is_null(v)) {
        if (required) {
            char msg[96];
            snprintf(msg, sizeof(msg), "missing '%s'", k);
            rd_fail(r, msg);
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "'%s' must be a string", k);
        rd_fail(r, msg);
        return NULL;
    }
    s = kvr_strpool_dup(r->strings, json_string_value(v));
    if (!s)
        rd_fail(r, "out of memory");
    return s;
}

static int64_t rd_int(rd *r, json_t *obj, const char *k, int64_t dflt)
{
    json_t *v = json_object_get(obj, k);
    if (!v)
        return dflt;
    if (!json_is_integer(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "'%s' must be an integer", k);
        rd_fail(r, msg);
        return dflt;
    }
    return (int64_t)json_integer_value(v);
}

static bool rd_bool(rd *r, json_t *obj, const char *k, bool dflt)
{
    json_t *v = json_object_get(obj, k);
    if (!v)
        return dflt;
    if (!json_is_boolean(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "'%s' must be true or false", k);
        rd_fail(r, msg);
        return dflt;
    }
    return json_is_true(v);
}

static void rd_tags(rd *r, json_t *obj, const char *k, kvr_tags *out)
{
    json_t *v = json_object_get(obj, k), *val;
    const char *key;
    if (!v)
        return;
    if (!json_is_object(v)) {
        rd_fail(r, "tags must be an object");
        return;
    }
    out->items = calloc(json_object_size(v) + 1, sizeof(*out->items));
    if (!out->items) {
        rd_fail(r, "out of memory");
        return;
    }
    json_object_foreach(v, key, val)
    {
        if (!json_is_string(val)) {
            rd_fail(r, "tag values must be strings");
            return;
        }
        out->items[out->len].key = kvr_strpool_dup(r->strings, key);
        out->items[out->len].value = kvr_strpool_dup(r->strings, json_string_value(val));
        if (!out->items[out->len].key || !out->items[out->len].value) {
            rd_fail(r, "out of memory");
            return;
        }
        out->len++;
    }
}

/* Allocates an array for JSON array member `k`; returns the JSON array (or NULL). */
static json_t *rd_array(rd *r, json_t *obj, const char *k, void **items, size_t *n, size_t elem)
{
    json_t *v = json_object_get(obj, k);
    *n = 0;
    if (!v)
        return NULL;
    if (!json_is_array(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "'%s' must be an array", k);
        rd_fail(r, msg);
        return NULL;
    }
    *items = calloc(json_array_size(v) + 1, elem);
    if (!*items) {
        rd_fail(r, "out of memory");
        return NULL;
    }
    return v;
}

static bool rd_elem(rd *r, json_t *arr, const char *name, size_t i, json_t **out)
{
    *out = json_array_get(arr, i);
    snprintf(r->path, sizeof(r->path), "%s[%zu]", name, i);
    if (!json_is_object(*out)) {
        rd_fail(r, "expected an object");
        return false;
    }
    return true;
}

/* A member holding an array of strings (absent: empty). */
static void rd_strlist(rd *r, json_t *obj, const char *k, kvr_strlist *out)
{
    json_t *v = json_object_get(obj, k);
    if (!v)
        return;
    if (!json_is_array(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "'%s' must be an array of strings", k);
        rd_fail(r, msg);
        return;
    }
    out->items = calloc(json_array_size(v) + 1, sizeof(*out->items));
    if (!out->items) {
        rd_fail(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            char msg[96];
            snprintf(msg, sizeof(msg), "'%s' must be an array of strings", k);
            rd_fail(r, msg);
            return;
        }
        if (!(out->items[out->len] = kvr_strpool_dup(r->strings, json_string_value(e)))) {
            rd_fail(r, "out of memory");
            return;
        }
        out->len++;
    }
}

/* "accessPolicies": [{"objectId", "keys", "secrets", "certificates"}] of a vault. */
static void rd_policies(rd *r, json_t *vault, kvr_live_vault *v)
{
    static const char *const pm[] = {"objectId", "keys", "secrets", "certificates", NULL};
    json_t *arr = rd_array(r, vault, "accessPolicies", (void **)&v->policies, &v->npolicies,
                           sizeof(*v->policies)),
           *o;
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_policy *p = &v->policies[i];
        if (!rd_elem(r, arr, "accessPolicies", i, &o))
            return;
        v->npolicies = i + 1;
        rd_members(r, o, pm);
        p->object_id = rd_str(r, o, "objectId", true);
        rd_strlist(r, o, "keys", &p->keys);
        rd_strlist(r, o, "secrets", &p->secrets);
        rd_strlist(r, o, "certificates", &p->certificates);
    }
}

static const char *const OPS[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey",
                                  NULL};

static void rd_policy(rd *r, json_t *o, kvr_rotation *p)
{
    static const char *const m[] = {"every", "beforeExpiry", "expiresAfter", "notifyBefore", NULL};
    int64_t *dst[] = {&p->every, &p->before_expiry, &p->expires_after, &p->notify_before};
    kvr_error e;
    if (!json_is_object(o)) {
        rd_fail(r, "'rotationPolicy' must be an object");
        return;
    }
    rd_members(r, o, m);
    p->set = true;
    for (int i = 0; m[i]; i++) {
        json_t *v = json_object_get(o, m[i]);
        if (!v)
            continue;
        if (!json_is_string(v) || kvr_duration_parse(dst[i], json_string_value(v), &e) < 0)
            rd_fail(r, "rotation policy durations must be ISO 8601 strings");
    }
}

static void rd_keys(rd *r, json_t *root, kvr_live *l)
{
    static const char *const km[] = {"vault", "name", "kty", "size", "crv", "ops",
                                     "rotationPolicy", "versions", NULL};
    static const char *const vm[] = {"id", "enabled", "created", "exp", "tags", NULL};
    json_t *arr = rd_array(r, root, "keys", (void **)&l->keys, &l->nkeys, sizeof(*l->keys)), *o;
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_key *k = &l->keys[i];
        json_t *ops, *vers, *pol;
        if (!rd_elem(r, arr, "keys", i, &o))
            return;
        l->nkeys = i + 1;
        rd_members(r, o, km);
        k->vault = rd_str(r, o, "vault", true);
        k->name = rd_str(r, o, "name", true);
        k->kty = rd_str(r, o, "kty", true);
        k->size = (int)rd_int(r, o, "size", 0);
        k->crv = rd_str(r, o, "crv", false);
        ops = json_object_get(o, "ops");
        for (size_t j = 0; json_is_array(ops) && j < json_array_size(ops); j++)
            for (int b = 0; OPS[b]; b++)
                if (json_is_string(json_array_get(ops, j)) &&
                    strcmp(json_string_value(json_array_get(ops, j)), OPS[b]) == 0)
                    k->ops |= 1u << b;
        if ((pol = json_object_get(o, "rotationPolicy"))) {
            k->has_policy = true;
            rd_policy(r, pol, &k->policy);
        }
        vers = rd_array(r, o, "versions", (void **)&k->versions, &k->nversions,
                        sizeof(*k->versions));
        for (size_t j = 0; vers && j < json_array_size(vers) && !r->failed; j++) {
            json_t *vo = json_array_get(vers, j);
            kvr_live_version *v = &k->versions[j];
            if (!json_is_object(vo)) {
                rd_fail(r, "versions must be objects");
                return;
            }
            k->nversions = j + 1;
            rd_members(r, vo, vm);
            v->id = rd_str(r, vo, "id", true);
            v->enabled = rd_bool(r, vo, "enabled", true);
            v->created = rd_int(r, vo, "created", 0);
            v->exp = rd_int(r, vo, "exp", 0);
            rd_tags(r, vo, "tags", &v->tags);
        }
    }
}

static void rd_profiles(rd *r, json_t *root, kvr_live *l)
{
    static const char *const pm[] = {"name",       "vault",  "key",         "keyVersion",
                                     "clientId",   "credential", "status", "statusSince", NULL};
    static const char *const st[] = {"Created", "Applying", "Used", "Inactive", "Failed", NULL};
    json_t *arr = rd_array(r, root, "profiles", (void **)&l->profiles, &l->nprofiles,
                           sizeof(*l->profiles)),
           *o;
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_profile *p = &l->profiles[i];
        char *status;
        bool known = false;
        if (!rd_elem(r, arr, "profiles", i, &o))
            return;
        l->nprofiles = i + 1;
        rd_members(r, o, pm);
        p->name = rd_str(r, o, "name", true);
        p->vault = rd_str(r, o, "vault", true);
        p->key = rd_str(r, o, "key", true);
        p->key_version = rd_str(r, o, "keyVersion", true);
        p->client_id = rd_str(r, o, "clientId", false);
        p->credential = rd_str(r, o, "credential", false);
        p->status_since = rd_int(r, o, "statusSince", 0);
        status = rd_str(r, o, "status", true);
        for (int s = 0; status && st[s]; s++)
            if (strcmp(status, st[s]) == 0) {
                p->status = (kvr_profile_status)s;
                known = true;
            }
        if (status && !known)
            rd_fail(r, "unknown profile status");
    }
}

static void rd_apps(rd *r, json_t *root, kvr_live *l)
{
    static const char *const am[] = {"displayName", "appId", "objectId", "servicePrincipalId",
                                     "signInAudience", "passwordCredentials", "tags",
                                     "undeclared", "deleted", NULL};
    static const char *const cm[] = {"keyId", "displayName", "start", "end", NULL};
    json_t *arr = rd_array(r, root, "apps", (void **)&l->apps, &l->napps, sizeof(*l->apps)), *o;
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_app *a = &l->apps[i];
        json_t *creds;
        if (!rd_elem(r, arr, "apps", i, &o))
            return;
        l->napps = i + 1;
        rd_members(r, o, am);
        a->display_name = rd_str(r, o, "displayName", true);
        a->app_id = rd_str(r, o, "appId", true);
        a->object_id = rd_str(r, o, "objectId", true);
        a->sp_id = rd_str(r, o, "servicePrincipalId", false);
        a->audience = rd_str(r, o, "signInAudience", false);
        rd_strlist(r, o, "tags", &a->tags);
        a->undeclared = rd_bool(r, o, "undeclared", false);
        a->deleted = rd_bool(r, o, "deleted", false);
        creds = rd_array(r, o, "passwordCredentials", (void **)&a->creds, &a->ncreds,
                         sizeof(*a->creds));
        for (size_t j = 0; creds && j < json_array_size(creds) && !r->failed; j++) {
            json_t *co = json_array_get(creds, j);
            if (!json_is_object(co)) {
                rd_fail(r, "password credentials must be objects");
                return;
            }
            a->ncreds = j + 1;
            rd_members(r, co, cm);
            a->creds[j].key_id = rd_str(r, co, "keyId", true);
            a->creds[j].display_name = rd_str(r, co, "displayName", false);
            a->creds[j].start = rd_int(r, co, "start", 0);
            a->creds[j].end = rd_int(r, co, "end", 0);
        }
    }
}

static void rd_rest(rd *r, json_t *root, kvr_live *l)
{
    static const char *const vm[] = {"name",           "resourceGroup",   "location",
                                     "sku",            "rbac",            "softDeleteDays",
                                     "purgeProtection", "defaultAction", "tags",
                                     "accessPolicies", "bypass",    "publicNetworkAccess",
                                     "ipRules",        "virtualNetworkRules", NULL};
    static const char *const dvm[] = {"name", "location", "deleted", "purgeAt", "purgeProtection",
                                      NULL};
    static const char *const sm[] = {"vault", "name", "contentType", "enabled", "tags", "digest",
                                     "updated", NULL};
    static const char *const cm[] = {"vault", "name", "x5t", NULL};
    static const char *const dm[] = {"vault", "kind", "name", "deleted", "purgeAt", NULL};
    static const char *const rm[] = {"name", "scope", "roleDefinitionId", "principalId", NULL};
    json_t *arr, *o;

    arr = rd_array(r, root, "vaults", (void **)&l->vaults, &l->nvaults, sizeof(*l->vaults));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_vault *v = &l->vaults[i];
        char *sku;
        if (!rd_elem(r, arr, "vaults", i, &o))
            return;
        l->nvaults = i + 1;
        rd_members(r, o, vm);
        v->name = rd_str(r, o, "name", true);
        v->resource_group = rd_str(r, o, "resourceGroup", true);
        v->location = rd_str(r, o, "location", true);
        sku = rd_str(r, o, "sku", false);
        v->sku = sku && strcmp(sku, "premium") == 0 ? KVR_SKU_PREMIUM : KVR_SKU_STANDARD;
        v->rbac = rd_bool(r, o, "rbac", true);
        v->soft_delete_days = (int)rd_int(r, o, "softDeleteDays", 90);
        v->purge_protection = rd_bool(r, o, "purgeProtection", false);
        v->default_action = rd_str(r, o, "defaultAction", false);
        v->bypass = rd_str(r, o, "bypass", false);
        v->public_access = rd_str(r, o, "publicNetworkAccess", false);
        rd_strlist(r, o, "ipRules", &v->ip_rules);
        rd_strlist(r, o, "virtualNetworkRules", &v->vnet_rules);
        rd_tags(r, o, "tags", &v->tags);
        rd_policies(r, o, v);
    }
    arr = rd_array(r, root, "deletedVaults", (void **)&l->deleted_vaults, &l->ndeleted_vaults,
                   sizeof(*l->deleted_vaults));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_deleted_vault *v = &l->deleted_vaults[i];
        if (!rd_elem(r, arr, "deletedVaults", i, &o))
            return;
        l->ndeleted_vaults = i + 1;
        rd_members(r, o, dvm);
        v->name = rd_str(r, o, "name", true);
        v->location = rd_str(r, o, "location", true);
        v->deleted = rd_int(r, o, "deleted", 0);
        v->purge_at = rd_int(r, o, "purgeAt", 0);
        v->purge_protection = rd_bool(r, o, "purgeProtection", false);
    }
    arr = rd_array(r, root, "secrets", (void **)&l->secrets, &l->nsecrets, sizeof(*l->secrets));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_secret *s = &l->secrets[i];
        if (!rd_elem(r, arr, "secrets", i, &o))
            return;
        l->nsecrets = i + 1;
        rd_members(r, o, sm);
        s->vault = rd_str(r, o, "vault", true);
        s->name = rd_str(r, o, "name", true);
        s->content_type = rd_str(r, o, "contentType", false);
        s->enabled = rd_bool(r, o, "enabled", true);
        s->digest = rd_str(r, o, "digest", false);
        s->updated = rd_int(r, o, "updated", 0);
        rd_tags(r, o, "tags", &s->tags);
    }
    arr = rd_array(r, root, "certificates", (void **)&l->certs, &l->ncerts, sizeof(*l->certs));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        if (!rd_elem(r, arr, "certificates", i, &o))
            return;
        l->ncerts = i + 1;
        rd_members(r, o, cm);
        l->certs[i].vault = rd_str(r, o, "vault", true);
        l->certs[i].name = rd_str(r, o, "name", true);
        l->certs[i].x5t = rd_str(r, o, "x5t", false);
    }
    arr = rd_array(r, root, "unreadKeys", (void **)&l->unread_keys, &l->nunread_keys,
                   sizeof(*l->unread_keys));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        static const char *const um[] = {"vault", "name", NULL};
        if (!rd_elem(r, arr, "unreadKeys", i, &o))
            return;
        l->nunread_keys = i + 1;
        rd_members(r, o, um);
        l->unread_keys[i].vault = rd_str(r, o, "vault", true);
        l->unread_keys[i].name = rd_str(r, o, "name", true);
    }
    arr = rd_array(r, root, "deleted", (void **)&l->deleted, &l->ndeleted, sizeof(*l->deleted));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_deleted *d = &l->deleted[i];
        if (!rd_elem(r, arr, "deleted", i, &o))
            return;
        l->ndeleted = i + 1;
        rd_members(r, o, dm);
        d->vault = rd_str(r, o, "vault", true);
        d->kind = rd_str(r, o, "kind", true);
        d->name = rd_str(r, o, "name", true);
        d->deleted = rd_int(r, o, "deleted", 0);
        d->purge_at = rd_int(r, o, "purgeAt", 0);
    }
    arr = rd_array(r, root, "roleAssignments", (void **)&l->roles, &l->nroles, sizeof(*l->roles));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_role *ra = &l->roles[i];
        if (!rd_elem(r, arr, "roleAssignments", i, &o))
            return;
        l->nroles = i + 1;
        rd_members(r, o, rm);
        ra->name = rd_str(r, o, "name", true);
        ra->scope = rd_str(r, o, "scope", true);
        ra->role_id = rd_str(r, o, "roleDefinitionId", true);
        ra->principal_id = rd_str(r, o, "principalId", true);
    }
    static const char *const depm[] = {"id",  "type",   "name",   "vault",  "key",
                                       "version", "secret", "setting", NULL};
    arr = rd_array(r, root, "dependents", (void **)&l->dependents, &l->ndependents,
                   sizeof(*l->dependents));
    for (size_t i = 0; arr && i < json_array_size(arr) && !r->failed; i++) {
        kvr_live_dependent *d = &l->dependents[i];
        if (!rd_elem(r, arr, "dependents", i, &o))
            return;
        l->ndependents = i + 1;
        rd_members(r, o, depm);
        d->id = rd_str(r, o, "id", true);
        d->type = rd_str(r, o, "type", true);
        d->name = rd_str(r, o, "name", true);
        d->vault = rd_str(r, o, "vault", true);
        d->key = rd_str(r, o, "key", false);
        d->version = rd_str(r, o, "version", false);
        d->secret = rd_str(r, o, "secret", false);
        d->setting = rd_str(r, o, "setting", false);
        if (!r->failed && ((d->key && d->secret) || (d->version && !d->key)))
            rd_fail(r, "a dependent references a key (with or without a version), a secret, or "
                       "only the vault");
    }
}

int kvr_live_from_json(kvr_live **out, const char *text, size_t len, kvr_error *err)
{
    /* desiredValues: what `plan --save-live` adds for offline plans; not part of the model */
    static const char *const top[] = {"now",    "vaults", "deletedVaults", "keys",
                                      "secrets", "certificates", "deleted", "apps",
                                      "roleAssignments", "profiles", "desiredValues", "dependents",
                                      "unreadKeys", "selfObjectId", NULL};
    json_error_t jerr;
    json_t *root;
    kvr_live *l;
    rd r;

    *out = NULL;
    memset(&r, 0, sizeof(r));
    r.err = err;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kvr_error_set(err, KVR_EINVAL, "live state: invalid JSON at line %d, column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    l = calloc(1, sizeof(*l));
    if (!l) {
        json_decref(root);
        return kvr_error_oom(err);
    }
    r.strings = &l->strings;
    snprintf(r.path, sizeof(r.path), "$");
    if (!json_is_object(root)) {
        rd_fail(&r, "expected an object");
    } else {
        rd_members(&r, root, top);
        l->now = rd_int(&r, root, "now", 0);
        if (!json_object_get(root, "now"))
            rd_fail(&r, "missing 'now' (the service clock)");
        l->self_object_id = rd_str(&r, root, "selfObjectId", false);
        rd_rest(&r, root, l);
        rd_keys(&r, root, l);
        rd_apps(&r, root, l);
        rd_profiles(&r, root, l);
    }
    json_decref(root);
    if (r.failed) {
        kvr_live_free(l);
        return err ? err->code : KVR_EINVAL;
    }
    *out = l;
    return 0;
}

/* ---- the JSON writer: the same format, for offline plans (--save-live) --------------------- */

static void put_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

static json_t *tags_json(const kvr_tags *t)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < t->len; i++)
        json_object_set_new(o, t->items[i].key, json_string(t->items[i].value));
    return o;
}

static json_t *strlist_json(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

static json_t *policy_json(const kvr_rotation *p)
{
    static const char *const m[] = {"every", "beforeExpiry", "expiresAfter", "notifyBefore"};
    const int64_t v[] = {p->every, p->before_expiry, p->expires_after, p->notify_before};
    json_t *o = json_object();
    for (int i = 0; o && i < 4; i++)
        if (v[i]) {
            char d[32];
            kvr_duration_iso(d, sizeof(d), v[i]);
            json_object_set_new(o, m[i], json_string(d));
        }
    return o;
}

static json_t *vaults_json(const kvr_live *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->nvaults; i++) {
        const kvr_live_vault *v = &l->vaults[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:b}", "name", v->name, "resourceGroup",
                              v->resource_group, "location", v->location, "sku",
                              v->sku == KVR_SKU_PREMIUM ? "premium" : "standard", "rbac", v->rbac,
                              "softDeleteDays", v->soft_delete_days, "purgeProtection",
                              v->purge_protection);
        json_t *pol = json_array();
        if (!o || !pol) {
            json_decref(o);
            json_decref(pol);
            json_decref(a);
            return NULL;
        }
        put_str(o, "defaultAction", v->default_action);
        put_str(o, "bypass", v->bypass);
        put_str(o, "publicNetworkAccess", v->public_access);
        json_object_set_new(o, "ipRules", strlist_json(&v->ip_rules));
        json_object_set_new(o, "virtualNetworkRules", strlist_json(&v->vnet_rules));
        json_object_set_new(o, "tags", tags_json(&v->tags));
        for (size_t p = 0; p < v->npolicies; p++) {
            const kvr_live_policy *lp = &v->policies[p];
            json_array_append_new(pol, json_pack("{s:s,s:o,s:o,s:o}", "objectId", lp->object_id,
                                                 "keys", strlist_json(&lp->keys), "secrets",
                                                 strlist_json(&lp->secrets), "certificates",
                                                 strlist_json(&lp->certificates)));
        }
        json_object_set_new(o, "accessPolicies", pol);
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *keys_json(const kvr_live *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->nkeys; i++) {
        const kvr_live_key *k = &l->keys[i];
        json_t *o = json_pack("{s:s,s:s,s:s}", "vault", k->vault, "name", k->name, "kty", k->kty),
               *ops = json_array(), *vers = json_array();
        if (!o || !ops || !vers) {
            json_decref(o);
            json_decref(ops);
            json_decref(vers);
            json_decref(a);
            return NULL;
        }
        if (k->size)
            json_object_set_new(o, "size", json_integer(k->size));
        put_str(o, "crv", k->crv);
        for (int b = 0; OPS[b]; b++)
            if (k->ops & (1u << b))
                json_array_append_new(ops, json_string(OPS[b]));
        json_object_set_new(o, "ops", ops);
        if (k->has_policy)
            json_object_set_new(o, "rotationPolicy", policy_json(&k->policy));
        for (size_t j = 0; j < k->nversions; j++) {
            const kvr_live_version *v = &k->versions[j];
            json_t *vo = json_pack("{s:s,s:b,s:I}", "id", v->id, "enabled", v->enabled, "created",
                                   (json_int_t)v->created);
            if (vo && v->exp)
                json_object_set_new(vo, "exp", json_integer(v->exp));
            if (vo)
                json_object_set_new(vo, "tags", tags_json(&v->tags));
            json_array_append_new(vers, vo);
        }
        json_object_set_new(o, "versions", vers);
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *apps_json(const kvr_live *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->napps; i++) {
        const kvr_live_app *ap = &l->apps[i];
        json_t *o = json_pack("{s:s,s:s,s:s}", "displayName", ap->display_name, "appId",
                              ap->app_id, "objectId", ap->object_id),
               *creds = json_array();
        if (!o || !creds) {
            json_decref(o);
            json_decref(creds);
            json_decref(a);
            return NULL;
        }
        put_str(o, "servicePrincipalId", ap->sp_id);
        put_str(o, "signInAudience", ap->audience);
        for (size_t j = 0; j < ap->ncreds; j++) {
            const kvr_live_credential *c = &ap->creds[j];
            json_t *co = json_pack("{s:s,s:I,s:I}", "keyId", c->key_id, "start",
                                   (json_int_t)c->start, "end", (json_int_t)c->end);
            if (co)
                put_str(co, "displayName", c->display_name);
            json_array_append_new(creds, co);
        }
        json_object_set_new(o, "passwordCredentials", creds);
        if (ap->tags.len)
            json_object_set_new(o, "tags", strlist_json(&ap->tags));
        if (ap->undeclared)
            json_object_set_new(o, "undeclared", json_true());
        if (ap->deleted)
            json_object_set_new(o, "deleted", json_true());
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *rest_json(const kvr_live *l, json_t *root)
{
    json_t *dv = json_array(), *sec = json_array(), *certs = json_array(), *del = json_array(),
           *roles = json_array(), *prof = json_array();
    json_object_set_new(root, "deletedVaults", dv);
    json_object_set_new(root, "secrets", sec);
    json_object_set_new(root, "certificates", certs);
    json_object_set_new(root, "deleted", del);
    json_object_set_new(root, "roleAssignments", roles);
    json_object_set_new(root, "profiles", prof);
    if (!dv || !sec || !certs || !del || !roles || !prof)
        return NULL;
    for (size_t i = 0; i < l->ndeleted_vaults; i++) {
        const kvr_live_deleted_vault *v = &l->deleted_vaults[i];
        json_array_append_new(dv, json_pack("{s:s,s:s,s:I,s:I,s:b}", "name", v->name, "location",
                                            v->location, "deleted", (json_int_t)v->deleted,
                                            "purgeAt", (json_int_t)v->purge_at, "purgeProtection",
                                            v->purge_protection));
    }
    for (size_t i = 0; i < l->nsecrets; i++) {
        const kvr_live_secret *s = &l->secrets[i];
        json_t *o = json_pack("{s:s,s:s,s:b}", "vault", s->vault, "name", s->name, "enabled",
                              s->enabled);
        if (o) {
            put_str(o, "contentType", s->content_type);
            put_str(o, "digest", s->digest); /* a keyed marker, never the value */
            if (s->updated)
                json_object_set_new(o, "updated", json_integer(s->updated));
            json_object_set_new(o, "tags", tags_json(&s->tags));
        }
        json_array_append_new(sec, o);
    }
    for (size_t i = 0; i < l->ncerts; i++) {
        json_t *o = json_pack("{s:s,s:s}", "vault", l->certs[i].vault, "name", l->certs[i].name);
        if (o)
            put_str(o, "x5t", l->certs[i].x5t);
        json_array_append_new(certs, o);
    }
    for (size_t i = 0; i < l->ndeleted; i++) {
        const kvr_live_deleted *d = &l->deleted[i];
        json_array_append_new(del, json_pack("{s:s,s:s,s:s,s:I,s:I}", "vault", d->vault, "kind",
                                             d->kind, "name", d->name, "deleted",
                                             (json_int_t)d->deleted, "purgeAt",
                                             (json_int_t)d->purge_at));
    }
    for (size_t i = 0; i < l->nroles; i++) {
        const kvr_live_role *r = &l->roles[i];
        json_array_append_new(roles, json_pack("{s:s,s:s,s:s,s:s}", "name", r->name, "scope",
                                               r->scope, "roleDefinitionId", r->role_id,
                                               "principalId", r->principal_id));
    }
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *p = &l->profiles[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "name", p->name, "vault", p->vault,
                              "key", p->key, "keyVersion", p->key_version, "status",
                              kvr_profile_status_name(p->status), "statusSince",
                              (json_int_t)p->status_since);
        if (o) {
            put_str(o, "clientId", p->client_id);
            put_str(o, "credential", p->credential);
        }
        json_array_append_new(prof, o);
    }
    return root;
}

/* Written only when there are some, so that the JSON of an estate without dependents (and a
   saved plan's digest of it) is what it was before discovery existed. */
static bool dependents_json(const kvr_live *l, json_t *root)
{
    json_t *a;
    if (!l->ndependents)
        return true;
    if (!(a = json_array()) || json_object_set_new(root, "dependents", a) < 0)
        return false;
    for (size_t i = 0; i < l->ndependents; i++) {
        const kvr_live_dependent *d = &l->dependents[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "id", d->id, "type", d->type, "name", d->name,
                              "vault", d->vault);
        if (!o || json_array_append_new(a, o) < 0)
            return false;
        put_str(o, "key", d->key);
        put_str(o, "version", d->version);
        put_str(o, "secret", d->secret);
        put_str(o, "setting", d->setting);
    }
    return true;
}

/* Written only when there are some, as the dependents. */
static bool unread_json(const kvr_live *l, json_t *root)
{
    json_t *a;
    if (!l->nunread_keys)
        return true;
    if (!(a = json_array()) || json_object_set_new(root, "unreadKeys", a) < 0)
        return false;
    for (size_t i = 0; i < l->nunread_keys; i++)
        if (json_array_append_new(a, json_pack("{s:s,s:s}", "vault", l->unread_keys[i].vault,
                                               "name", l->unread_keys[i].name)) < 0)
            return false;
    return true;
}

static json_t *live_json(const kvr_live *l)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    json_object_set_new(root, "now", json_integer(l->now));
    json_object_set_new(root, "vaults", vaults_json(l));
    json_object_set_new(root, "keys", keys_json(l));
    json_object_set_new(root, "apps", apps_json(l));
    if (!rest_json(l, root) || json_object_size(root) != 10 ||
        (l->self_object_id &&
         json_object_set_new(root, "selfObjectId", json_string(l->self_object_id)) < 0) || !dependents_json(l, root) ||
        !unread_json(l, root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int kvr_live_to_json(char **out, const kvr_live *l, kvr_error *err)
{
    json_t *root = live_json(l);
    *out = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!*out)
        return kvr_error_oom(err);
    return 0;
}

typedef struct class_probe {
    const char *const *seen;
    const char *marker;
} class_probe;

static bool same_marker(const void *ctx, size_t i)
{
    const class_probe *p = ctx;
    return strcmp(p->seen[i], p->marker) == 0;
}

/*
 * The live state as a saved plan's digest sees it. Markers are keyed with a key that lives for
 * one run, so two runs never share one; what a plan depends on is which values are equal to
 * which (a copy to its source, a stored value to the declared one), so each marker becomes the
 * number of its class of equal markers, numbered in order of first appearance over the live
 * secrets and then the desired values. The clock (`now`) is left out: gates are evaluated again
 * when the plan runs.
 */
int kvr_live_canon(char **out, const kvr_live *l, const kvr_value_digest *d, size_t nd,
                   kvr_error *err)
{
    json_t *root = live_json(l), *secrets, *desired = json_array();
    const char **seen = calloc(l->nsecrets + nd + 1, sizeof(*seen));
    size_t nseen = 0;
    kvr_index classes; /* seen[] by marker: a walk of seen[] per secret is quadratic */
    int rc = 0;

    *out = NULL;
    kvr_index_init(&classes);
    if (!root || !desired || !seen) {
        rc = kvr_error_oom(err);
        goto done;
    }
    json_object_del(root, "now");
    json_object_del(root, "selfObjectId"); /* who reads is not what the estate is */
    secrets = json_object_get(root, "secrets");
    for (size_t i = 0; i < l->nsecrets + nd; i++) {
        const char *m = i < l->nsecrets ? l->secrets[i].digest : d[i - l->nsecrets].digest;
        size_t c = 0;
        char cls[32];
        if (m) {
            class_probe p = {seen, m};
            uint64_t h = kvr_hash_ci(KVR_HASH_SEED, m);
            c = kvr_index_first(&classes, h, same_marker, &p);
            if (c == KVR_INDEX_NONE) {
                if (kvr_index_put(&classes, h, nseen) < 0) {
                    rc = kvr_error_oom(err);
                    goto done;
                }
                c = nseen;
                seen[nseen++] = m;
            }
            snprintf(cls, sizeof(cls), "v%zu", c + 1);
        }
        if (i < l->nsecrets) {
            if (m)
                json_object_set_new(json_array_get(secrets, i), "digest", json_string(cls));
        } else {
            json_array_append_new(desired,
                                  json_pack("{s:s,s:s,s:s?}", "vault", d[i - l->nsecrets].vault,
                                            "name", d[i - l->nsecrets].name, "digest",
                                            m ? cls : NULL));
        }
    }
    json_object_set(root, "desiredValues", desired);
    *out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*out)
        rc = kvr_error_oom(err);
done:
    free(seen);
    kvr_index_release(&classes);
    json_decref(desired);
    json_decref(root);
    return rc;
}
