/*
 * Operations as data: their names, whether they can be carried out, and their JSON form (plan
 * --output json, saved plans, the fake provider's log). The JSON form names every value an
 * operation sends, in a fixed order, so that two equal operations have equal text.
 */
#include "kvr/op.h"
#include "kvr/live.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *kvr_op_kind_name(kvr_op_kind k)
{
    static const char *const names[KVR_OP_KIND_COUNT] = {
        [KVR_OP_VAULT_PUT] = "vaultPut",
        [KVR_OP_VAULT_RECOVER] = "vaultRecover",
        [KVR_OP_VAULT_PATCH] = "vaultPatch",
        [KVR_OP_VAULT_POLICY_EDIT] = "accessPolicyEdit",
        [KVR_OP_VAULT_DELETE] = "vaultDelete",
        [KVR_OP_APP_UPSERT] = "appUpsert",
        [KVR_OP_SP_UPSERT] = "servicePrincipalUpsert",
        [KVR_OP_PASSWORD_ADD] = "passwordAddAndStore",
        [KVR_OP_PASSWORD_REMOVE] = "passwordRemove",
        [KVR_OP_ROLE_ASSIGN] = "roleAssign",
        [KVR_OP_ROLE_REMOVE] = "roleRemove",
        [KVR_OP_KEY_CREATE] = "keyCreate",
        [KVR_OP_KEY_PATCH] = "keyPatch",
        [KVR_OP_KEY_ROTATION_POLICY] = "keyRotationPolicy",
        [KVR_OP_TAG_SET] = "tagSet",
        [KVR_OP_OBJECT_DELETE] = "objectDelete",
        [KVR_OP_OBJECT_RECOVER] = "objectRecover",
        [KVR_OP_SECRET_SET] = "secretSet",
        [KVR_OP_SECRET_PATCH] = "secretPatch",
        [KVR_OP_SECRET_COPY] = "secretCopy",
        [KVR_OP_CERT_COPY] = "certificateCopy",
        [KVR_OP_PROFILE_PUT] = "profilePut",
        [KVR_OP_PROFILE_APPLY] = "profileApply",
        [KVR_OP_PROFILE_DELETE] = "profileDelete",
        [KVR_OP_APP_TAGS] = "appTags",
        [KVR_OP_APP_DELETE] = "appDelete",
        [KVR_OP_APP_RESTORE] = "appRestore",
    };
    return (unsigned)k < KVR_OP_KIND_COUNT && names[k] ? names[k] : "unknown";
}

static bool placeholder(const char *s)
{
    return s && (strcmp(s, KVR_PLAN_NEW_VERSION) == 0 || strcmp(s, KVR_PLAN_WHEN_RELEASED) == 0 ||
                 strcmp(s, KVR_PLAN_NEW_PRINCIPAL) == 0 || strcmp(s, KVR_PLAN_NEW_APP) == 0);
}

bool kvr_op_resolved(const kvr_op *op)
{
    switch (op->kind) {
    case KVR_OP_VAULT_PUT:
        for (size_t i = 0; i < op->u.vault.npolicies; i++)
            if (placeholder(op->u.vault.policies[i].object_id))
                return false;
        return true;
    case KVR_OP_VAULT_POLICY_EDIT:
        for (size_t i = 0; i < op->u.policy.nentries; i++)
            if (placeholder(op->u.policy.entries[i].object_id))
                return false;
        return true;
    case KVR_OP_SP_UPSERT:
        return !placeholder(op->u.sp.app_id);
    case KVR_OP_APP_TAGS:
        for (size_t i = 0; i < op->u.app_tags.tags.len; i++)
            if (strstr(op->u.app_tags.tags.items[i], KVR_PLAN_WHEN_RELEASED))
                return false;
        return !placeholder(op->u.app_tags.object_id);
    case KVR_OP_APP_DELETE:
    case KVR_OP_APP_RESTORE:
        return !placeholder(op->u.app_tags.object_id);
    case KVR_OP_PASSWORD_ADD:
    case KVR_OP_PASSWORD_REMOVE:
        return !placeholder(op->u.password.app_object_id) && !placeholder(op->u.password.key_id);
    case KVR_OP_ROLE_ASSIGN:
    case KVR_OP_ROLE_REMOVE:
        return !placeholder(op->u.role.principal_id) && !placeholder(op->u.role.scope);
    case KVR_OP_KEY_PATCH:
        return !placeholder(op->u.key_patch.version);
    case KVR_OP_TAG_SET:
        return !placeholder(op->u.tag.version) && !placeholder(op->u.tag.value);
    case KVR_OP_PROFILE_PUT:
        return !placeholder(op->u.profile.client_id) && !placeholder(op->u.profile.key_version);
    default:
        return true;
    }
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void put(json_t *o, const char *k, json_t *v)
{
    if (v)
        json_object_set_new(o, k, v);
}

static json_t *str(const char *s)
{
    return s ? json_string(s) : NULL;
}

static json_t *strlist(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

/* With `approval`, the time in a superseded-at tag is the run's (see kvr_op_to_json). */
static json_t *tags(const kvr_tags *t, bool approval_mode)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < t->len; i++)
        json_object_set_new(o, t->items[i].key,
                            json_string(approval_mode && strcmp(t->items[i].key,
                                                                KVR_TAG_SUPERSEDED) == 0
                                            ? "(when it runs)"
                                            : t->items[i].value));
    return o;
}

/* An application's tags; with `approval`, the time in a retiring mark is the run's. */
static json_t *app_tags(const kvr_strlist *l, bool approval_mode)
{
    size_t n = strlen(KVR_APP_TAG_RETIRING);
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++) {
        const char *t = l->items[i], *eq = strchr(t, '=');
        if (approval_mode && strncmp(t, KVR_APP_TAG_RETIRING, n) == 0 && eq)
            json_array_append_new(a, json_pack("s#+", t, (int)(eq + 1 - t), "(when it runs)"));
        else
            json_array_append_new(a, json_string(t));
    }
    return a;
}

/* Puts the vault's identity into o. */
static void ref(json_t *o, const kvr_op_vault_ref *r)
{
    put(o, "subscription", str(r->subscription));
    put(o, "resourceGroup", str(r->resource_group));
    put(o, "vault", str(r->name));
}

static json_t *policies(const kvr_op_policy *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:s?,s:s?,s:o,s:o,s:o}", "objectId", p[i].object_id,
                                           "app", p[i].who, "keys", strlist(&p[i].keys),
                                           "secrets", strlist(&p[i].secrets), "certificates",
                                           strlist(&p[i].certificates)));
    return a;
}

static json_t *network(const kvr_network *n)
{
    if (!n->set)
        return NULL;
    return json_pack("{s:s,s:s,s:s,s:o,s:o}", "defaultAction",
                     n->default_action ? n->default_action : "Allow", "bypass",
                     n->bypass ? n->bypass : "AzureServices", "publicNetworkAccess",
                     n->public_access ? n->public_access : "Enabled", "ipRules",
                     strlist(&n->ip_rules), "virtualNetworkRules", strlist(&n->vnet_rules));
}

static json_t *key_ops(unsigned ops)
{
    static const char *const names[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey",
                                        "unwrapKey"};
    json_t *a = json_array();
    for (int i = 0; a && i < 6; i++)
        if (ops & (1u << i))
            json_array_append_new(a, json_string(names[i]));
    return a;
}

static json_t *rotation(const kvr_rotation *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (r->every)
        put(o, "every", json_integer(r->every));
    if (r->before_expiry)
        put(o, "beforeExpiry", json_integer(r->before_expiry));
    if (r->expires_after)
        put(o, "expiresAfter", json_integer(r->expires_after));
    if (r->notify_before)
        put(o, "notifyBefore", json_integer(r->notify_before));
    return o;
}

static const char *charset_name(kvr_charset c)
{
    switch (c) {
    case KVR_CHARSET_ALNUM:
        return "alnum";
    case KVR_CHARSET_ALNUM_SYMBOLS:
        return "alnumSymbols";
    case KVR_CHARSET_HEX:
        return "hex";
    case KVR_CHARSET_BASE64URL:
        return "base64url";
    }
    return "unknown";
}

static json_t *value(const kvr_op_value *v, bool approval)
{
    const char *marker = approval ? NULL : v->marker; /* a marker's key lives for one run */
    switch (v->kind) {
    case KVR_OP_VALUE_GENERATE:
        return json_pack("{s:s,s:i,s:s}", "generate", "random", "length", v->length, "charset",
                         charset_name(v->charset));
    case KVR_OP_VALUE_ENV:
        return json_pack("{s:s,s:s?}", "fromEnv", v->env, "marker", marker);
    case KVR_OP_VALUE_FILE:
        return json_pack("{s:s,s:s?}", "fromFile", v->path, "marker", marker);
    case KVR_OP_VALUE_STORED:
        return json_pack("{s:{s:s,s:s},s:s?}", "fromSecret", "vault", v->vault, "name", v->secret,
                         "marker", marker);
    }
    return NULL;
}

static const char *coll(kvr_op_collection c)
{
    return c == KVR_COLL_KEYS ? "keys" : "secrets";
}

static json_t *body(const kvr_op *op, bool approval)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    switch (op->kind) {
    case KVR_OP_VAULT_PUT:
    case KVR_OP_VAULT_RECOVER:
    case KVR_OP_VAULT_PATCH:
    case KVR_OP_VAULT_DELETE: {
        const kvr_op_vault_props *p = &op->u.vault.props;
        ref(o, &op->u.vault.ref);
        if (op->kind == KVR_OP_VAULT_DELETE)
            break;
        if (op->kind != KVR_OP_VAULT_PATCH)
            put(o, "location", str(p->location));
        if (op->kind == KVR_OP_VAULT_RECOVER)
            break;
        if (op->kind == KVR_OP_VAULT_PUT || op->u.vault.set_props) {
            put(o, "sku", json_string(p->sku == KVR_SKU_PREMIUM ? "premium" : "standard"));
            put(o, "enableRbacAuthorization", json_boolean(p->rbac));
            if (op->kind == KVR_OP_VAULT_PUT)
                put(o, "softDeleteRetentionInDays", json_integer(p->soft_delete_days));
            put(o, "enablePurgeProtection", json_boolean(p->purge_protection));
            put(o, "network", network(&p->network));
        }
        if (op->kind == KVR_OP_VAULT_PUT || op->u.vault.set_tags)
            put(o, "tags", tags(&op->u.vault.tags, approval));
        if (op->kind == KVR_OP_VAULT_PUT && !p->rbac) {
            put(o, "accessPolicies", policies(op->u.vault.policies, op->u.vault.npolicies));
            put(o, "selfAccess", json_boolean(op->u.vault.self_access));
        }
        break;
    }
    case KVR_OP_VAULT_POLICY_EDIT:
        ref(o, &op->u.policy.ref);
        put(o, "edit", json_string(op->u.policy.remove ? "remove" : "add"));
        put(o, "entries", policies(op->u.policy.entries, op->u.policy.nentries));
        break;
    case KVR_OP_APP_UPSERT:
        put(o, "displayName", str(op->u.app.display_name));
        put(o, "signInAudience", str(op->u.app.audience));
        if (op->u.app.tags.len)
            put(o, "tags", app_tags(&op->u.app.tags, approval));
        break;
    case KVR_OP_APP_TAGS:
    case KVR_OP_APP_DELETE:
    case KVR_OP_APP_RESTORE:
        put(o, "objectId", str(op->u.app_tags.object_id));
        put(o, "app", str(op->u.app_tags.name));
        if (op->kind == KVR_OP_APP_TAGS)
            put(o, "tags", app_tags(&op->u.app_tags.tags, approval));
        break;
    case KVR_OP_SP_UPSERT:
        put(o, "appId", str(op->u.sp.app_id));
        put(o, "app", str(op->u.sp.display_name));
        break;
    case KVR_OP_PASSWORD_ADD:
        put(o, "appObjectId", str(op->u.password.app_object_id));
        put(o, "app", str(op->u.password.app_name));
        put(o, "displayName", str(op->u.password.display_name));
        if (!approval) /* follows the clock of the run */
            put(o, "endDateTime", json_integer(op->u.password.end));
        put(o, "storeIn", json_pack("{s:s?,s:s?}", "vault", op->u.password.store_vault, "secret",
                                    op->u.password.store_secret));
        break;
    case KVR_OP_PASSWORD_REMOVE:
        put(o, "appObjectId", str(op->u.password.app_object_id));
        put(o, "app", str(op->u.password.app_name));
        put(o, "keyId", str(op->u.password.key_id));
        break;
    case KVR_OP_ROLE_ASSIGN:
    case KVR_OP_ROLE_REMOVE:
        put(o, "scope", str(op->u.role.scope));
        put(o, "roleDefinitionId", str(op->u.role.role_id));
        put(o, "role", str(op->u.role.role_name));
        put(o, "principalId", str(op->u.role.principal_id));
        put(o, "principal", str(op->u.role.principal_name));
        put(o, "name", str(op->u.role.name));
        break;
    case KVR_OP_KEY_CREATE:
    case KVR_OP_KEY_ROTATION_POLICY:
        put(o, "vault", str(op->u.key.vault));
        put(o, "name", str(op->u.key.name));
        if (op->kind == KVR_OP_KEY_CREATE) {
            put(o, "kty", str(op->u.key.kty));
            if (op->u.key.size)
                put(o, "keySize", json_integer(op->u.key.size));
            put(o, "crv", str(op->u.key.curve));
            put(o, "keyOps", key_ops(op->u.key.ops));
            put(o, "tags", tags(&op->u.key.tags, approval));
        }
        if (op->kind == KVR_OP_KEY_ROTATION_POLICY || op->u.key.set_rotation)
            put(o, "rotationPolicy", rotation(&op->u.key.rotation));
        break;
    case KVR_OP_KEY_PATCH:
        put(o, "vault", str(op->u.key_patch.vault));
        put(o, "name", str(op->u.key_patch.name));
        put(o, "version", str(op->u.key_patch.version));
        if (op->u.key_patch.set_ops)
            put(o, "keyOps", key_ops(op->u.key_patch.ops));
        if (op->u.key_patch.set_enabled)
            put(o, "enabled", json_boolean(op->u.key_patch.enabled));
        if (op->u.key_patch.set_exp && !approval)
            put(o, "exp", json_integer(op->u.key_patch.exp));
        break;
    case KVR_OP_TAG_SET:
        put(o, "collection", json_string(coll(op->u.tag.collection)));
        put(o, "vault", str(op->u.tag.vault));
        put(o, "name", str(op->u.tag.name));
        put(o, "version", str(op->u.tag.version));
        put(o, "tag", str(op->u.tag.tag));
        if (!approval || !op->u.tag.tag || strcmp(op->u.tag.tag, KVR_TAG_SUPERSEDED) != 0)
            put(o, "value", str(op->u.tag.value));
        break;
    case KVR_OP_OBJECT_DELETE:
    case KVR_OP_OBJECT_RECOVER:
        put(o, "collection", json_string(coll(op->u.object.collection)));
        put(o, "vault", str(op->u.object.vault));
        put(o, "name", str(op->u.object.name));
        break;
    case KVR_OP_SECRET_SET:
        put(o, "vault", str(op->u.secret.vault));
        put(o, "name", str(op->u.secret.name));
        put(o, "contentType", str(op->u.secret.content_type));
        put(o, "tags", tags(&op->u.secret.tags, approval));
        put(o, "value", value(&op->u.secret.value, approval));
        break;
    case KVR_OP_SECRET_PATCH:
        put(o, "vault", str(op->u.secret_patch.vault));
        put(o, "name", str(op->u.secret_patch.name));
        put(o, "contentType", str(op->u.secret_patch.content_type));
        put(o, "tags", tags(&op->u.secret_patch.tags, approval));
        break;
    case KVR_OP_SECRET_COPY:
    case KVR_OP_CERT_COPY:
        put(o, "from", str(op->u.copy.from));
        put(o, "to", str(op->u.copy.to));
        put(o, "name", str(op->u.copy.name));
        if (op->u.copy.to_name)
            put(o, "toName", str(op->u.copy.to_name));
        if (op->kind == KVR_OP_SECRET_COPY) {
            put(o, "contentType", str(op->u.copy.content_type));
            put(o, "versions", json_string(op->u.copy.all_versions ? "all" : "latest"));
        }
        break;
    case KVR_OP_PROFILE_PUT:
        put(o, "name", str(op->u.profile.name));
        put(o, "create", json_boolean(op->u.profile.create));
        put(o, "clientId", str(op->u.profile.client_id));
        put(o, "credential", str(op->u.profile.credential));
        put(o, "clientSecretFrom", json_pack("{s:s?,s:s?}", "vault", op->u.profile.secret_vault,
                                             "secret", op->u.profile.secret_name));
        if (op->u.profile.create)
            put(o, "key", json_pack("{s:s?,s:s?,s:s?}", "vault", op->u.profile.key_vault, "name",
                                    op->u.profile.key_name, "version", op->u.profile.key_version));
        break;
    case KVR_OP_PROFILE_APPLY:
    case KVR_OP_PROFILE_DELETE:
        put(o, "name", str(op->u.profile.name));
        break;
    }
    return o;
}

static json_t *op_json(const kvr_op *op, bool approval)
{
    json_t *o = body(op, approval);
    if (o && json_object_set_new(o, "op", json_string(kvr_op_kind_name(op->kind))) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int kvr_op_to_json(char **out, const kvr_op *op, bool approval, kvr_error *err)
{
    json_t *o = op_json(op, approval);
    *out = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return *out ? 0 : kvr_error_oom(err);
}
