/*
 * Vaults through ARM: create (with the resource group when it is missing), recover, patch,
 * edit access policies, delete. Every value comes from the operation; the tenant and, on an
 * access-policy vault, the object id of the identity kvreconcile runs as come from the
 * credential's own ARM token.
 *
 * Creation and recovery are long-running operations (201 while the vault's DNS name is
 * registered) and are waited for, so that the next operation never meets a vault that is not
 * there yet.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *vault_id(kvr__az *c, const kvr_op_vault_ref *r, kvr_error *err)
{
    return prov_fmt(err,
                    "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s",
                    c->ep->arm, r->subscription, r->resource_group, r->name);
}

static const char *sku_name(kvr_sku s)
{
    return s == KVR_SKU_PREMIUM ? "premium" : "standard";
}

/* An array of the names of `l`, each once (case-insensitively); NULL when out of memory. */
static json_t *perm_list(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcasecmp(l->items[i], l->items[j]) == 0;
        if (!seen && json_array_append_new(a, json_string(l->items[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* {"tenantId","objectId","permissions":{keys,secrets,certificates}}; NULL: out of memory. */
static json_t *policy_entry(const char *tenant, const kvr_op_policy *p)
{
    return json_pack("{s:s,s:s,s:{s:o,s:o,s:o}}", "tenantId", tenant, "objectId", p->object_id,
                     "permissions", "keys", perm_list(&p->keys), "secrets", perm_list(&p->secrets),
                     "certificates", perm_list(&p->certificates));
}

/*
 * The properties of a vault PUT (tenant given) or PATCH (tenant NULL: what may change, not the
 * tenant, soft delete, retention days or access policies), in the order Azure documents them.
 */
static json_t *vault_properties(const char *tenant, const kvr_op_vault_props *v)
{
    json_t *p = json_object();
    if (!p)
        return NULL;
    if (tenant)
        json_object_set_new(p, "tenantId", json_string(tenant));
    json_object_set_new(p, "sku", json_pack("{s:s,s:s}", "family", "A", "name", sku_name(v->sku)));
    json_object_set_new(p, "enableRbacAuthorization", json_boolean(v->rbac));
    if (tenant) {
        json_object_set_new(p, "enableSoftDelete", json_true());
        json_object_set_new(p, "softDeleteRetentionInDays", json_integer(v->soft_delete_days));
        json_object_set_new(p, "accessPolicies", json_array());
    }
    if (v->purge_protection) /* the property accepts only true */
        json_object_set_new(p, "enablePurgeProtection", json_true());
    if (v->network.set) {
        json_t *acl = json_pack("{s:s,s:s,s:[],s:[]}", "defaultAction",
                                v->network.default_action ? v->network.default_action : "Allow",
                                "bypass", v->network.bypass ? v->network.bypass : "AzureServices",
                                "ipRules", "virtualNetworkRules");
        for (size_t i = 0; acl && i < v->network.ip_rules.len; i++)
            json_array_append_new(json_object_get(acl, "ipRules"),
                                  json_pack("{s:s}", "value", v->network.ip_rules.items[i]));
        for (size_t i = 0; acl && i < v->network.vnet_rules.len; i++)
            json_array_append_new(json_object_get(acl, "virtualNetworkRules"),
                                  json_pack("{s:s}", "id", v->network.vnet_rules.items[i]));
        json_object_set_new(p, "networkAcls", acl);
        json_object_set_new(
            p, "publicNetworkAccess",
            json_string(v->network.public_access ? v->network.public_access : "Enabled"));
    }
    return p;
}

/*
 * On an access-policy vault, data-plane access comes only from its policies, and ARM gives the
 * creator none: without an entry of its own, kvreconcile could not read or make the vault's keys
 * and secrets. The entry of the identity it runs as (the "oid" of its ARM token) is added at
 * creation, with what its operations use (no purge), unless `list` has one for that principal
 * already. The plan manages declared apps' entries only, so this one is never taken away.
 */
static int self_policy(kvr__az *c, const char *tenant, json_t *list, kvr_error *err)
{
    char *oid = NULL;
    size_t i;
    json_t *e;
    int rc = kvr__arm_claim(&oid, c->auth, c->ep, "oid", err);
    if (rc < 0)
        return rc;
    json_array_foreach(list, i, e)
    {
        const char *have = json_string_value(json_object_get(e, "objectId"));
        if (have && strcasecmp(have, oid) == 0)
            goto done;
    }
    e = json_pack("{s:s,s:s,s:{s:[ssssssssssss],s:[sssssss],s:[sssssssss]}}", "tenantId", tenant,
                  "objectId", oid, "permissions", "keys", "get", "list", "create", "update",
                  "import", "delete", "recover", "backup", "restore", "rotate", "getrotationpolicy",
                  "setrotationpolicy", "secrets", "get", "list", "set", "delete", "recover",
                  "backup", "restore", "certificates", "get", "list", "create", "import", "update",
                  "delete", "recover", "backup", "restore");
    rc = e && json_array_append_new(list, e) == 0 ? 0 : kvr_error_oom(err);
done:
    free(oid);
    return rc;
}

/* Creates the vault's resource group when it does not exist (in the vault's location). */
static int group_ensure(kvr__az *c, const kvr_op_vault_ref *r, const char *location, kvr_error *err)
{
    static const long ok[] = {200, 404, 0};
    char *scope = kvr__arm_scope(c, err);
    char *rg = prov_fmt(err, "%s/subscriptions/%s/resourceGroups/%s?api-version=" ARM_RG_API,
                        c->ep->arm, r->subscription, r->resource_group);
    long st = 0;
    int rc = KVR_ENOMEM;
    if (scope && rg)
        rc = kvr__call(c, scope, "GET", rg, NULL, 0, ok, "get resource group", r->resource_group,
                       NULL, &st, err);
    if (!rc && st == 404) {
        json_t *g = json_pack("{s:s}", "location", location);
        rc = g ? kvr__call_arm(c, "PUT", rg, rg, g, kvr__ok2xx, "create resource group",
                               r->resource_group, NULL, NULL, err)
               : kvr_error_oom(err);
        json_decref(g);
    }
    free(scope);
    free(rg);
    return rc;
}

/* VAULT_PUT and VAULT_RECOVER: the resource group first, then the vault, waited for. */
static int vault_put(kvr__az *c, const kvr_op *op, bool recover, kvr_error *err)
{
    const kvr_op_vault_ref *r = &op->u.vault.ref;
    const kvr_op_vault_props *v = &op->u.vault.props;
    const char *tenant = NULL;
    char *id = NULL, *url = NULL;
    json_t *body = NULL, *props = NULL;
    int rc;

    if ((rc = kvr__az_tenant(&tenant, c, err)) < 0)
        return rc;
    if (!(id = vault_id(c, r, err)) ||
        !(url = prov_fmt(err, "%s?api-version=" ARM_VAULTS_API, id))) {
        rc = KVR_ENOMEM;
        goto done;
    }
    if ((rc = group_ensure(c, r, v->location, err)) < 0)
        goto done;
    if (recover) {
        body = json_pack("{s:s,s:{s:s,s:{s:s,s:s},s:s}}", "location", v->location, "properties",
                         "tenantId", tenant, "sku", "family", "A", "name", sku_name(v->sku),
                         "createMode", "recover");
    } else {
        json_t *list;
        props = vault_properties(tenant, v);
        list = json_object_get(props, "accessPolicies");
        for (size_t i = 0; list && !v->rbac && i < op->u.vault.npolicies; i++)
            if (json_array_append_new(list, policy_entry(tenant, &op->u.vault.policies[i])) < 0)
                list = NULL;
        if (list && !v->rbac && op->u.vault.self_access &&
            (rc = self_policy(c, tenant, list, err)) < 0)
            goto done;
        body = list ? json_pack("{s:s}", "location", v->location) : NULL;
        if (body && op->u.vault.set_tags &&
            json_object_set_new(body, "tags", kvr__tags_json(&op->u.vault.tags)) < 0) {
            json_decref(body);
            body = NULL;
        }
        if (body && json_object_set(body, "properties", props) < 0) {
            json_decref(body);
            body = NULL;
        }
    }
    /* Vaults_CreateOrUpdate is a long-running operation (201, provisioningState RegisteringDns
       until the vault's name resolves): wait for it before anything uses the vault. */
    rc = body ? kvr__call_arm(c, "PUT", url, url, body, kvr__ok2xx,
                              recover ? "recover vault" : "create vault", r->name, NULL, NULL, err)
              : kvr_error_oom(err);
done:
    json_decref(body);
    json_decref(props);
    free(id);
    free(url);
    return rc;
}

/* VAULT_PATCH: the properties that may change (set_props) and/or all the tags (set_tags). */
static int vault_patch(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const kvr_op_vault_ref *r = &op->u.vault.ref;
    char *id = vault_id(c, r, err), *url = NULL;
    json_t *body = json_object();
    int rc = 0;

    if (!id || !body || !(url = prov_fmt(err, "%s?api-version=" ARM_VAULTS_API, id)))
        rc = kvr_error_oom(err);
    if (!rc && op->u.vault.set_tags &&
        json_object_set_new(body, "tags", kvr__tags_json(&op->u.vault.tags)) < 0)
        rc = kvr_error_oom(err);
    if (!rc && op->u.vault.set_props &&
        json_object_set_new(body, "properties", vault_properties(NULL, &op->u.vault.props)) < 0)
        rc = kvr_error_oom(err);
    if (!rc)
        rc = kvr__call_arm(c, "PATCH", url, url, body, kvr__ok2xx, "update vault", r->name, NULL,
                           NULL, err);
    json_decref(body);
    free(id);
    free(url);
    return rc;
}

/*
 * VAULT_POLICY_EDIT: PUT {V}/accessPolicies/add or /remove with the operation's entries, which
 * change only the permissions they name: an entry never disappears on the way, and entries of
 * other principals (the identity kvreconcile runs as among them) are never touched. Entries that
 * would grant or take nothing are not sent; the endpoint takes 16 entries a request.
 */
static int policy_edit(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    static const long ok[] = {200, 201, 0};
    const char *kind = op->u.policy.remove ? "remove" : "add";
    const char *tenant = NULL;
    char *id = NULL, *url = NULL;
    json_t *list = json_array();
    int rc;

    if ((rc = kvr__az_tenant(&tenant, c, err)) < 0)
        goto done;
    id = vault_id(c, &op->u.policy.ref, err);
    url = id ? prov_fmt(err, "%s/accessPolicies/%s?api-version=" ARM_VAULTS_API, id, kind) : NULL;
    if (!url || !list) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t i = 0; i < op->u.policy.nentries; i++) {
        const kvr_op_policy *p = &op->u.policy.entries[i];
        json_t *e;
        if (p->keys.len + p->secrets.len + p->certificates.len == 0)
            continue;
        e = policy_entry(tenant, p);
        if (!e || json_array_append_new(list, e) < 0) {
            rc = kvr_error_oom(err);
            goto done;
        }
    }
    for (size_t i = 0; !rc && i < json_array_size(list); i += 16) {
        json_t *part = json_array(), *body;
        for (size_t j = i; part && j < json_array_size(list) && j < i + 16; j++)
            json_array_append(part, json_array_get(list, j));
        body = part ? json_pack("{s:{s:o}}", "properties", "accessPolicies", part) : NULL;
        rc = body ? kvr__call_arm(c, "PUT", url, NULL, body, ok,
                                  op->u.policy.remove ? "remove access policy permissions"
                                                      : "grant access policy permissions",
                                  op->u.policy.ref.name, NULL, NULL, err)
                  : kvr_error_oom(err);
        json_decref(body);
    }
done:
    json_decref(list);
    free(id);
    free(url);
    return rc;
}

static int vault_delete(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    char *id = vault_id(c, &op->u.vault.ref, err), *url = NULL;
    int rc = KVR_ENOMEM;
    if (id && (url = prov_fmt(err, "%s?api-version=" ARM_VAULTS_API, id)))
        rc = kvr__call_arm(c, "DELETE", url, url, NULL, kvr__ok2xx, "delete vault",
                           op->u.vault.ref.name, NULL, NULL, err);
    free(id);
    free(url);
    return rc;
}

int kvr__arm_vaults_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    switch (op->kind) {
    case KVR_OP_VAULT_PUT:
        return vault_put(c, op, false, err);
    case KVR_OP_VAULT_RECOVER:
        return vault_put(c, op, true, err);
    case KVR_OP_VAULT_PATCH:
        return vault_patch(c, op, err);
    case KVR_OP_VAULT_POLICY_EDIT:
        return policy_edit(c, op, err);
    case KVR_OP_VAULT_DELETE:
        return vault_delete(c, op, err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a vault operation",
                             kvr_op_kind_name(op->kind));
    }
}
