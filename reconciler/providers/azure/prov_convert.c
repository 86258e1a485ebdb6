/*
 * From the services' JSON to the live model. Each converter takes one documented object
 * (an ARM vault, a role assignment, a Graph application, a Key Vault KeyBundle and its version
 * list, a profile) and appends what the plan needs. They are pure, so every shape and every
 * malformed variant is unit-tested without a network; a missing required member is an error
 * naming the object, never a crash or a silently empty field.
 */
#include "kvr/providers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void *append(void **items, size_t *n, size_t elem)
{
    char *p = realloc(*items, (*n + 1) * elem);
    if (!p)
        return NULL;
    *items = p;
    memset(p + *n * elem, 0, elem);
    return p + (*n)++ * elem;
}

static const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Live strings are the live model's pool's (kvr_live_free frees them together). */
static char *dup(kvr_live *l, const char *s)
{
    return kvr_strpool_dup(&l->strings, s);
}

/* The live model's one copy of a text that many objects repeat (kvr_live.shared) */
static char *share(kvr_live *l, const char *s)
{
    return kvr_strset_get(&l->shared, s);
}

static int shape(kvr_error *err, const char *what, const char *member)
{
    return kvr_error_set(err, KVR_EPROTO, "unexpected response: %s has no '%s'", what, member);
}

const char *kvr_id_last(const char *id, char *buf, size_t size)
{
    const char *end, *start;
    size_t n;
    if (!id || !size)
        return NULL;
    end = id + strlen(id);
    while (end > id && end[-1] == '/')
        end--;
    start = end;
    while (start > id && start[-1] != '/')
        start--;
    n = (size_t)(end - start);
    if (n == 0 || n >= size)
        return NULL;
    memcpy(buf, start, n);
    buf[n] = '\0';
    return buf;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int kvr_time_parse_iso(int64_t *out, const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    int64_t t;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19)
        return KVR_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return KVR_EINVAL;
    t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    s += 19;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++)
            ;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int oh, om, sign = *s == '-' ? -1 : 1;
        if (sscanf(s + 1, "%2d:%2d", &oh, &om) != 2)
            return KVR_EINVAL;
        t -= sign * (oh * 3600 + om * 60);
        s += 6;
    } else if (*s) {
        return KVR_EINVAL;
    }
    if (*s)
        return KVR_EINVAL;
    *out = t;
    return 0;
}

static int64_t jtime_iso(const json_t *o, const char *k)
{
    int64_t t = 0;
    const char *s = jstr(o, k);
    if (s && kvr_time_parse_iso(&t, s) < 0)
        t = 0;
    return t;
}

static int tags_from(kvr_live *l, kvr_tags *out, const json_t *tags)
{
    const char *key;
    json_t *v;
    if (!json_is_object(tags))
        return 0;
    out->items = calloc(json_object_size(tags) + 1, sizeof(*out->items));
    if (!out->items)
        return KVR_ENOMEM;
    json_object_foreach((json_t *)tags, key, v)
    {
        if (!json_is_string(v))
            continue;
        out->items[out->len].key = share(l, key);
        out->items[out->len].value = dup(l, json_string_value(v));
        if (!out->items[out->len].key || !out->items[out->len].value)
            return KVR_ENOMEM;
        out->len++;
    }
    return 0;
}

/* ---- ARM ---------------------------------------------------------------------------------- */

static char *rg_of(kvr_live *l, const char *id)
{
    /* "/subscriptions/S/resourceGroups/RG/providers/..." (segment names in any case) */
    const char *p = id;
    while (p && *p) {
        const char *seg = strchr(p, '/');
        if (!seg)
            break;
        seg++;
        if (strncasecmp(seg, "resourceGroups/", 15) == 0) {
            const char *start = seg + 15, *end = strchr(start, '/');
            return end ? kvr_strpool_ndup(&l->strings, start, (size_t)(end - start))
                       : dup(l, start);
        }
        p = seg;
    }
    return NULL;
}

/* A permission list (keys, secrets, certificates) of an access policy entry. */
static int perms_from(kvr_live *l, kvr_strlist *out, const json_t *arr)
{
    size_t n = json_array_size(arr);
    out->items = calloc(n + 1, sizeof(*out->items));
    if (!out->items)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *p = json_string_value(json_array_get(arr, i));
        if (p && !(out->items[out->len++] = dup(l, p)))
            return -1;
    }
    return 0;
}

/* networkAcls.ipRules / virtualNetworkRules: the `member` of each entry. */
static int rules_from(kvr_live *l, kvr_strlist *out, const json_t *arr, const char *member)
{
    size_t n = json_array_size(arr);
    out->items = calloc(n + 1, sizeof(*out->items));
    if (!out->items)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *p = jstr(json_array_get(arr, i), member);
        if (p && !(out->items[out->len++] = dup(l, p)))
            return -1;
    }
    return 0;
}

/* properties.accessPolicies: who may do what (compared by the plan on access-policy vaults). */
static int policies_from(kvr_live *l, kvr_live_vault *v, const json_t *list)
{
    size_t n = json_array_size(list);
    v->policies = calloc(n + 1, sizeof(*v->policies));
    if (!v->policies)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(list, i), *perms = json_object_get(e, "permissions");
        kvr_live_policy *p = &v->policies[v->npolicies];
        if (!jstr(e, "objectId"))
            continue;
        v->npolicies++;
        if (!(p->object_id = dup(l, jstr(e, "objectId"))) ||
            perms_from(l, &p->keys, json_object_get(perms, "keys")) < 0 ||
            perms_from(l, &p->secrets, json_object_get(perms, "secrets")) < 0 ||
            perms_from(l, &p->certificates, json_object_get(perms, "certificates")) < 0)
            return -1;
    }
    return 0;
}

int kvr_live_add_vault(kvr_live *l, const json_t *vault, kvr_error *err)
{
    const json_t *props = json_object_get(vault, "properties"), *sku, *acls;
    kvr_live_vault *v;
    const char *name = jstr(vault, "name"), *id = jstr(vault, "id");
    if (!name || !id || !json_is_object(props))
        return shape(err, "a vault", !name ? "name" : !id ? "id" : "properties");
    v = append((void **)&l->vaults, &l->nvaults, sizeof(*v));
    if (!v)
        return kvr_error_oom(err);
    v->name = dup(l, name);
    v->resource_group = rg_of(l, id);
    v->location = dup(l, jstr(vault, "location"));
    if (v->location)
        kvr_location_canon(v->location); /* the plan compares canonical names */
    sku = json_object_get(props, "sku");
    v->sku = jstr(sku, "name") && strcasecmp(jstr(sku, "name"), "premium") == 0 ? KVR_SKU_PREMIUM
                                                                                : KVR_SKU_STANDARD;
    v->rbac = json_is_true(json_object_get(props, "enableRbacAuthorization"));
    v->soft_delete_days =
        json_is_integer(json_object_get(props, "softDeleteRetentionInDays"))
            ? (int)json_integer_value(json_object_get(props, "softDeleteRetentionInDays"))
            : 90;
    v->purge_protection = json_is_true(json_object_get(props, "enablePurgeProtection"));
    acls = json_object_get(props, "networkAcls");
    v->default_action = dup(l, jstr(acls, "defaultAction"));
    v->bypass = dup(l, jstr(acls, "bypass"));
    v->public_access = dup(l, jstr(props, "publicNetworkAccess"));
    if (rules_from(l, &v->ip_rules, json_object_get(acls, "ipRules"), "value") < 0 ||
        rules_from(l, &v->vnet_rules, json_object_get(acls, "virtualNetworkRules"), "id") < 0)
        return kvr_error_oom(err);
    if (!v->name || !v->location || tags_from(l, &v->tags, json_object_get(vault, "tags")) < 0 ||
        policies_from(l, v, json_object_get(props, "accessPolicies")) < 0)
        return kvr_error_oom(err);
    if (!v->resource_group)
        return kvr_error_set(err, KVR_EPROTO,
                             "unexpected response: vault '%s' has an id without "
                             "a resource group",
                             name);
    return 0;
}

int kvr_live_add_deleted_vault(kvr_live *l, const json_t *deleted, kvr_error *err)
{
    const json_t *props = json_object_get(deleted, "properties");
    kvr_live_deleted_vault *v;
    const char *name = jstr(deleted, "name");
    if (!name || !json_is_object(props))
        return shape(err, "a deleted vault", !name ? "name" : "properties");
    v = append((void **)&l->deleted_vaults, &l->ndeleted_vaults, sizeof(*v));
    if (!v)
        return kvr_error_oom(err);
    v->name = dup(l, name);
    v->location = dup(l, jstr(props, "location") ? jstr(props, "location") : "");
    if (v->location)
        kvr_location_canon(v->location); /* Azure may list the display name, "West Europe" */
    v->deleted = jtime_iso(props, "deletionDate");
    v->purge_at = jtime_iso(props, "scheduledPurgeDate");
    v->purge_protection = json_is_true(json_object_get(props, "purgeProtectionEnabled"));
    return v->name && v->location ? 0 : kvr_error_oom(err);
}

int kvr_live_add_role(kvr_live *l, const json_t *assignment, kvr_error *err)
{
    const json_t *props = json_object_get(assignment, "properties");
    const char *name = jstr(assignment, "name"), *def = jstr(props, "roleDefinitionId");
    const char *scope = jstr(props, "scope"), *principal = jstr(props, "principalId");
    char guid[64];
    if (!name || !def || !scope || !principal)
        return shape(err, "a role assignment",
                     !name    ? "name"
                     : !def   ? "roleDefinitionId"
                     : !scope ? "scope"
                              : "principalId");
    if (!kvr_id_last(def, guid, sizeof(guid)))
        return kvr_error_set(err, KVR_EPROTO, "unexpected response: role definition id '%.80s'",
                             def);
    for (char *p = guid; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return kvr_live_put_role(l, name, scope, guid, principal, err);
}

int kvr_live_put_role(kvr_live *l, const char *name, const char *scope, const char *role_id,
                      const char *principal_id, kvr_error *err)
{
    kvr_live_role *r = append((void **)&l->roles, &l->nroles, sizeof(*r));
    if (!r)
        return kvr_error_oom(err);
    r->name = dup(l, name);
    r->scope = dup(l, scope);
    r->role_id = share(l, role_id);
    r->principal_id = share(l, principal_id);
    return r->name && r->scope && r->role_id && r->principal_id ? 0 : kvr_error_oom(err);
}

/* ---- Graph -------------------------------------------------------------------------------- */

int kvr_live_add_app(kvr_live *l, const json_t *app, const json_t *sp, kvr_error *err)
{
    const char *name = jstr(app, "displayName"), *app_id = jstr(app, "appId"),
               *id = jstr(app, "id");
    const json_t *creds = json_object_get(app, "passwordCredentials");
    const json_t *tags = json_object_get(app, "tags");
    kvr_live_app *a;
    if (!name || !app_id || !id)
        return shape(err, "an application", !name ? "displayName" : !app_id ? "appId" : "id");
    a = append((void **)&l->apps, &l->napps, sizeof(*a));
    if (!a)
        return kvr_error_oom(err);
    a->display_name = dup(l, name);
    a->app_id = dup(l, app_id);
    a->object_id = dup(l, id);
    a->audience = dup(l, jstr(app, "signInAudience"));
    a->sp_id = sp ? dup(l, jstr(sp, "id")) : NULL;
    if (!a->display_name || !a->app_id || !a->object_id)
        return kvr_error_oom(err);
    if (json_is_array(tags) && json_array_size(tags) > 0) {
        a->tags.items = calloc(json_array_size(tags) + 1, sizeof(*a->tags.items));
        if (!a->tags.items)
            return kvr_error_oom(err);
        for (size_t i = 0; i < json_array_size(tags); i++) {
            const char *t = json_string_value(json_array_get(tags, i));
            if (t && !(a->tags.items[a->tags.len++] = dup(l, t)))
                return kvr_error_oom(err);
        }
    }
    for (size_t i = 0; json_is_array(creds) && i < json_array_size(creds); i++) {
        const json_t *c = json_array_get(creds, i);
        kvr_live_credential *lc;
        if (!jstr(c, "keyId"))
            return shape(err, "a password credential", "keyId");
        lc = append((void **)&a->creds, &a->ncreds, sizeof(*lc));
        if (!lc)
            return kvr_error_oom(err);
        lc->key_id = dup(l, jstr(c, "keyId"));
        lc->display_name = dup(l, jstr(c, "displayName"));
        lc->start = jtime_iso(c, "startDateTime");
        lc->end = jtime_iso(c, "endDateTime");
        if (!lc->key_id)
            return kvr_error_oom(err);
    }
    return 0;
}

/* ---- Key Vault ---------------------------------------------------------------------------- */

static const char *const OPS[] = {"encrypt", "decrypt",   "sign", "verify",
                                  "wrapKey", "unwrapKey", NULL};

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static int version_cmp(const void *pa, const void *pb)
{
    const kvr_live_version *a = pa, *b = pb;
    if (a->created != b->created)
        return a->created < b->created ? -1 : 1;
    return strcmp(a->id, b->id);
}

static void policy_from(kvr_live_key *k, const json_t *policy)
{
    const json_t *actions = json_object_get(policy, "lifetimeActions");
    const char *expiry = jstr(json_object_get(policy, "attributes"), "expiryTime");
    kvr_error e;
    k->has_policy = true;
    k->policy.set = true;
    if (expiry)
        kvr_duration_parse(&k->policy.expires_after, expiry, &e);
    for (size_t i = 0; json_is_array(actions) && i < json_array_size(actions); i++) {
        const json_t *a = json_array_get(actions, i);
        const json_t *trigger = json_object_get(a, "trigger");
        const char *type = jstr(json_object_get(a, "action"), "type");
        const char *after = jstr(trigger, "timeAfterCreate"),
                   *before = jstr(trigger, "timeBeforeExpiry");
        bool rotate = type && strcasecmp(type, "Rotate") == 0;
        bool notify = type && strcasecmp(type, "Notify") == 0;
        if (rotate && after)
            kvr_duration_parse(&k->policy.every, after, &e);
        else if (rotate && before)
            kvr_duration_parse(&k->policy.before_expiry, before, &e);
        else if (notify && before)
            kvr_duration_parse(&k->policy.notify_before, before, &e);
    }
}

int kvr_live_add_key(kvr_live *l, const char *vault, const json_t *bundle, const json_t *versions,
                     const json_t *policy, kvr_error *err)
{
    const json_t *jwk = json_object_get(bundle, "key"), *ops;
    const char *kid = jstr(jwk, "kid"), *n;
    char name[160], ver[80];
    kvr_live_key *k;

    if (!kid || !jstr(jwk, "kty"))
        return shape(err, "a key bundle", !kid ? "key.kid" : "key.kty");
    /* kid = https://VAULT/keys/NAME/VERSION */
    {
        const char *p = strstr(kid, "/keys/");
        const char *end = p ? strchr(p + 6, '/') : NULL;
        if (!p || !end || (size_t)(end - p - 6) >= sizeof(name))
            return kvr_error_set(err, KVR_EPROTO, "unexpected response: key id '%.120s'", kid);
        memcpy(name, p + 6, (size_t)(end - p - 6));
        name[end - p - 6] = '\0';
    }
    k = append((void **)&l->keys, &l->nkeys, sizeof(*k));
    if (!k)
        return kvr_error_oom(err);
    k->vault = share(l, vault);
    k->name = dup(l, name);
    k->kty = share(l, jstr(jwk, "kty"));
    k->crv = share(l, jstr(jwk, "crv"));
    if (!k->vault || !k->name || !k->kty)
        return kvr_error_oom(err);
    if ((n = jstr(jwk, "n"))) {
        size_t chars = strlen(n), bytes = chars * 6 / 8;
        /* a leading zero byte may pad a modulus whose top bit is set */
        k->size = (int)((bytes % 8 == 1 ? bytes - 1 : bytes) * 8);
    }
    ops = json_object_get(jwk, "key_ops");
    for (size_t i = 0; json_is_array(ops) && i < json_array_size(ops); i++)
        for (int b = 0; OPS[b]; b++)
            if (json_is_string(json_array_get(ops, i)) &&
                strcmp(json_string_value(json_array_get(ops, i)), OPS[b]) == 0)
                k->ops |= 1u << b;
    for (size_t i = 0; json_is_array(versions) && i < json_array_size(versions); i++) {
        const json_t *it = json_array_get(versions, i), *attrs = json_object_get(it, "attributes");
        kvr_live_version *v;
        if (!kvr_id_last(jstr(it, "kid"), ver, sizeof(ver)))
            return shape(err, "a key version", "kid");
        v = append((void **)&k->versions, &k->nversions, sizeof(*v));
        if (!v)
            return kvr_error_oom(err);
        v->id = dup(l, ver);
        v->enabled = !json_is_false(json_object_get(attrs, "enabled"));
        v->created = jint(attrs, "created");
        v->exp = jint(attrs, "exp");
        if (!v->id || tags_from(l, &v->tags, json_object_get(it, "tags")) < 0)
            return kvr_error_oom(err);
    }
    if (k->nversions > 1)
        qsort(k->versions, k->nversions, sizeof(*k->versions), version_cmp);
    if (policy)
        policy_from(k, policy);
    return 0;
}

static int item_name(char *buf, size_t size, const json_t *item, const char *member)
{
    const char *id = jstr(item, member);
    const char *p;
    size_t n;
    if (!id)
        return -1;
    /* https://VAULT/(secrets|certificates|deletedsecrets|...)/NAME[/VERSION] */
    p = strstr(id, "://");
    p = p ? strchr(p + 3, '/') : NULL; /* "/secrets/NAME..." */
    p = p ? strchr(p + 1, '/') : NULL; /* "/NAME..." */
    if (!p)
        return -1;
    p++;
    n = strcspn(p, "/");
    if (n == 0 || n >= size)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

int kvr_live_add_secret(kvr_live *l, const char *vault, const json_t *item, const char *marker,
                        kvr_error *err)
{
    char name[160];
    kvr_live_secret *s;
    if (item_name(name, sizeof(name), item, "id") < 0)
        return shape(err, "a secret item", "id");
    s = append((void **)&l->secrets, &l->nsecrets, sizeof(*s));
    if (!s)
        return kvr_error_oom(err);
    s->vault = share(l, vault);
    s->name = dup(l, name);
    s->content_type = share(l, jstr(item, "contentType"));
    s->enabled = !json_is_false(json_object_get(json_object_get(item, "attributes"), "enabled"));
    s->updated = json_integer_value(json_object_get(json_object_get(item, "attributes"), "updated"));
    s->digest = dup(l, marker);
    if (!s->vault || !s->name || tags_from(l, &s->tags, json_object_get(item, "tags")) < 0)
        return kvr_error_oom(err);
    return 0;
}

int kvr_live_add_certificate(kvr_live *l, const char *vault, const json_t *item, kvr_error *err)
{
    char name[160];
    kvr_live_cert *c;
    if (item_name(name, sizeof(name), item, "id") < 0)
        return shape(err, "a certificate item", "id");
    c = append((void **)&l->certs, &l->ncerts, sizeof(*c));
    if (!c)
        return kvr_error_oom(err);
    c->vault = share(l, vault);
    c->name = dup(l, name);
    c->x5t = dup(l, jstr(item, "x5t"));
    return c->vault && c->name ? 0 : kvr_error_oom(err);
}

int kvr_live_add_unread_key(kvr_live *l, const char *vault, const char *name, kvr_error *err)
{
    kvr_live_name *k = append((void **)&l->unread_keys, &l->nunread_keys, sizeof(*k));
    if (!k)
        return kvr_error_oom(err);
    k->vault = share(l, vault);
    k->name = dup(l, name);
    return k->vault && k->name ? 0 : kvr_error_oom(err);
}

int kvr_live_add_deleted(kvr_live *l, const char *vault, const char *kind, const json_t *item,
                         kvr_error *err)
{
    char name[160];
    kvr_live_deleted *d;
    if (item_name(name, sizeof(name), item, "recoveryId") < 0)
        return shape(err, "a deleted item", "recoveryId");
    d = append((void **)&l->deleted, &l->ndeleted, sizeof(*d));
    if (!d)
        return kvr_error_oom(err);
    d->vault = share(l, vault);
    d->kind = share(l, kind);
    d->name = dup(l, name);
    d->deleted = jint(item, "deletedDate");
    d->purge_at = jint(item, "scheduledPurgeDate");
    return d->vault && d->kind && d->name ? 0 : kvr_error_oom(err);
}

/* ---- the profile service ------------------------------------------------------------------ */

int kvr_live_add_profile(kvr_live *l, const json_t *profile, kvr_error *err)
{
    static const char *const st[] = {"Created", "Applying", "Used", "Inactive", "Failed", NULL};
    const char *name = jstr(profile, "name"), *status = jstr(profile, "status");
    kvr_live_profile *p;
    int s = -1;
    if (!name || !status || !jstr(profile, "vault") || !jstr(profile, "key") ||
        !jstr(profile, "keyVersion"))
        return shape(err, "a profile",
                     !name                     ? "name"
                     : !status                 ? "status"
                     : !jstr(profile, "vault") ? "vault"
                     : !jstr(profile, "key")   ? "key"
                                               : "keyVersion");
    for (int i = 0; st[i]; i++)
        if (strcmp(status, st[i]) == 0)
            s = i;
    if (s < 0)
        return kvr_error_set(err, KVR_EPROTO,
                             "unexpected response: profile '%.64s' has status "
                             "'%.32s'",
                             name, status);
    p = append((void **)&l->profiles, &l->nprofiles, sizeof(*p));
    if (!p)
        return kvr_error_oom(err);
    p->name = dup(l, name);
    p->vault = dup(l, jstr(profile, "vault"));
    p->key = dup(l, jstr(profile, "key"));
    p->key_version = dup(l, jstr(profile, "keyVersion"));
    p->client_id = dup(l, jstr(profile, "clientId"));
    p->credential = dup(l, jstr(json_object_get(profile, "metadata"), "kvr-credential"));
    p->status = (kvr_profile_status)s;
    p->status_since = jtime_iso(profile, "statusChangedAt");
    return p->name && p->vault && p->key && p->key_version ? 0 : kvr_error_oom(err);
}
