/*
 * The write side of the providers: each plan step becomes the REST calls it stands for. Every
 * step is written so that a crash at any instant leaves something the next run recognises:
 * markers go on objects in the call that creates them (a key version's generation tag, a client
 * secret's kvr:<name> display name), and a client secret is stored in its vault secret, tagged
 * with its credential's keyId, before anything else happens; a credential found without that
 * stored copy is planned as an orphan and replaced.
 *
 * Secret values (client secrets, generated and copied values) exist here only in memory, in
 * buffers that are wiped before they are freed; they never reach a message.
 */
#include "kvr/plan.h"
#include "kvr/providers.h"
#include "prov_internal.h"
#include "azinternal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>


typedef const kvr_step_ctx ctxt;

static int arm_claim(char **out, kvr_auth *a, const kvr_endpoints *ep, const char *claim,
                     kvr_error *err);


/* Wipes a string that held a secret (jansson dumps, JSON string values) in place. */
static void wipe_str(const char *s)
{
    if (s)
        OPENSSL_cleanse((void *)s, strlen(s));
}

/* call()'s own flag, above the engine's: send `Prefer: create-if-missing` (a Graph upsert) */
#define CALL_UPSERT (1u << 24)

/*
 * Sends one request and checks its status: what call() and call_arm() share. scope NULL: Key
 * Vault (challenge flow). `body` is borrowed and may hold a secret: its serialisation is wiped.
 * `ok` lists accepted statuses (0-terminated); any other is an error from Azure's answer.
 * `flags`: the engine's KVR_HTTP_* and CALL_UPSERT. The response is left in *resp (initialised
 * by the caller, who releases it).
 */
static int send_checked(ctxt *c, const char *scope, const char *method, const char *url,
                        json_t *body, unsigned flags, const long *ok, const char *op,
                        const char *object, kvr_http_response *resp, long *status,
                        kvr_error *err)
{
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    static const char *const upsert_hdr[] = {"Content-Type: application/json",
                                             "Prefer: create-if-missing", NULL};
    kvr_http_request req = {.method = method, .url = url, .flags = flags & ~CALL_UPSERT};
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc, code = 0;
    bool accepted = false;

    if (body && !text)
        return kvr_error_oom(err);
    if (text) {
        req.body = text;
        req.body_len = strlen(text);
        req.headers = flags & CALL_UPSERT ? upsert_hdr : json_hdr;
    }
    rc = scope ? kvr_auth_send(resp, c->auth, scope, &req, err)
               : kvr_auth_send_kv(resp, &code, c->auth, &req, 1, err);
    if (!rc && !scope)
        rc = code;
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (rc < 0)
        return rc;
    if (status)
        *status = resp->status;
    for (const long *s = ok; *s; s++)
        accepted |= resp->status == *s;
    return accepted ? 0 : kvr_http_error(err, resp, op, object);
}

/* One call, as send_checked() makes it; *out (optional) gets the parsed response body. */
static int call(ctxt *c, const char *scope, const char *method, const char *url, json_t *body,
                unsigned flags, const long *ok, const char *op, const char *object, json_t **out,
                long *status, kvr_error *err)
{
    kvr_http_response resp;
    int rc;

    if (out)
        *out = NULL;
    kvr_http_response_init(&resp);
    rc = send_checked(c, scope, method, url, body, flags, ok, op, object, &resp, status, err);
    if (!rc && out && resp.body_len) {
        json_error_t jerr;
        *out = json_loadb(resp.body, resp.body_len, 0, &jerr);
        if (!*out)
            rc = kvr_error_set(err, KVR_EPROTO, "%s '%s': the response is not JSON", op,
                               object ? object : "");
    }
    kvr_http_response_release(&resp);
    return rc;
}

static const long OK200[] = {200, 0};
static const long OK2XX[] = {200, 201, 202, 204, 0};

static char *arm_scope(ctxt *c, kvr_error *err)
{
    return prov_fmt(err, "%s/.default", c->ep->arm);
}

/*
 * An ARM write that may be a long-running operation (a vault PUT answers 201 while the vault's
 * DNS name is registered): sent as call() does, then waited for until it has finished, so the
 * next step never meets a vault that is not there yet. `resource_url` is what to read to see the
 * resource's provisioningState (NULL: only the status URLs). *out (optional): the final body.
 */
static int call_arm(ctxt *c, const char *method, const char *url, const char *resource_url,
                    json_t *body, const long *ok, const char *op, const char *object, json_t **out,
                    long *status, kvr_error *err)
{
    kvr_http_response resp;
    char *scope = arm_scope(c, err);
    int rc;

    if (out)
        *out = NULL;
    kvr_http_response_init(&resp);
    rc = scope ? send_checked(c, scope, method, url, body, 0, ok, op, object, &resp, status, err)
               : KVR_ENOMEM;
    if (rc == 0 && resp.status >= 300) {
        if (out && resp.body_len) /* an accepted error status (409): the caller looks */
            *out = json_loadb(resp.body, resp.body_len, 0, NULL);
    } else if (rc == 0) {
        rc = kvr_lro_wait(out, c->auth, scope, c->ep->arm, method, resource_url, &resp, op, object,
                          NULL, err);
    }
    free(scope);
    kvr_http_response_release(&resp);
    return rc;
}

static char *vault_base(ctxt *c, const char *vault, kvr_error *err)
{
    return prov_fmt(err, "https://%s.%s", vault, c->ep->vault_suffix);
}

static char *vault_id(ctxt *c, const kvr_vault *v, kvr_error *err)
{
    return prov_fmt(err, "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s",
               c->ep->arm, c->subscription, v->resource_group, v->name);
}

static json_t *tags_json(const kvr_tags *t)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < t->len; i++)
        json_object_set_new(o, t->items[i].key, json_string(t->items[i].value));
    return o;
}

/* ---- vaults ------------------------------------------------------------------------------- */

static json_t *vault_properties(ctxt *c, const kvr_vault *v)
{
    json_t *p = json_pack("{s:s,s:{s:s,s:s},s:b,s:b,s:i,s:[]}", "tenantId", c->tenant, "sku",
                          "family", "A", "name", v->sku == KVR_SKU_PREMIUM ? "premium" : "standard",
                          "enableRbacAuthorization", v->rbac, "enableSoftDelete", 1,
                          "softDeleteRetentionInDays", v->soft_delete_days, "accessPolicies");
    if (!p)
        return NULL;
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
        json_object_set_new(p, "publicNetworkAccess",
                            json_string(v->network.public_access ? v->network.public_access
                                                                 : "Enabled"));
    }
    /* Access policies for apps that exist now; a later run adds the others. */
    for (size_t i = 0; !v->rbac && i < v->npolicies; i++) {
        const kvr_access_policy *ap = &v->policies[i];
        const kvr_app *a = kvr_estate_app(c->d, ap->app);
        const kvr_live_app *la = a ? kvr_live_app_get(c->l, a->display_name) : NULL;
        json_t *perm, *e;
        if (!la || !la->sp_id)
            continue;
        perm = json_pack("{s:[],s:[],s:[]}", "keys", "secrets", "certificates");
        for (size_t k = 0; perm && k < ap->keys.len; k++)
            json_array_append_new(json_object_get(perm, "keys"), json_string(ap->keys.items[k]));
        for (size_t k = 0; perm && k < ap->secrets.len; k++)
            json_array_append_new(json_object_get(perm, "secrets"),
                                  json_string(ap->secrets.items[k]));
        for (size_t k = 0; perm && k < ap->certificates.len; k++)
            json_array_append_new(json_object_get(perm, "certificates"),
                                  json_string(ap->certificates.items[k]));
        e = json_pack("{s:s,s:s,s:o}", "tenantId", c->tenant, "objectId", la->sp_id,
                      "permissions", perm);
        json_array_append_new(json_object_get(p, "accessPolicies"), e);
    }
    return p;
}

/*
 * On an access-policy vault, data-plane access comes only from its policies, and ARM gives the
 * creator none: without an entry of its own, kvreconcile could not read or make the vault's keys
 * and secrets. The entry of the identity it runs as (the "oid" of its ARM token) is added at
 * creation, with what its steps use (no purge), unless the desired state already gives that
 * principal one. The plan manages declared apps' entries only, so this one is never taken away.
 */
static int self_policy(ctxt *c, json_t *list, kvr_error *err)
{
    char *oid = NULL;
    size_t i;
    json_t *e;
    int rc = arm_claim(&oid, c->auth, c->ep, "oid", err);
    if (rc < 0)
        return rc;
    json_array_foreach(list, i, e)
    {
        const char *have = json_string_value(json_object_get(e, "objectId"));
        if (have && strcasecmp(have, oid) == 0)
            goto done;
    }
    e = json_pack("{s:s,s:s,s:{s:[ssssssssssss],s:[sssssss],s:[sssssssss]}}", "tenantId", c->tenant,
                  "objectId", oid, "permissions", "keys", "get", "list", "create", "update",
                  "import", "delete", "recover", "backup", "restore", "rotate", "getrotationpolicy",
                  "setrotationpolicy", "secrets", "get", "list", "set", "delete", "recover",
                  "backup", "restore", "certificates", "get", "list", "create", "import", "update",
                  "delete", "recover", "backup", "restore");
    rc = e && json_array_append_new(list, e) == 0 ? 0
                                                  : kvr_error_oom(err);
done:
    free(oid);
    return rc;
}

static int vault_put(ctxt *c, const kvr_step *s, bool recover, kvr_error *err)
{
    const kvr_vault *v = kvr_estate_vault(c->d, s->name);
    char *scope = arm_scope(c, err), *rg = NULL, *url = NULL;
    json_t *body = NULL;
    long st = 0;
    int rc = KVR_ENOMEM;
    if (!v || !scope)
        goto done;
    rg = prov_fmt(err, "%s/subscriptions/%s/resourceGroups/%s?api-version=" ARM_RG_API, c->ep->arm,
             c->subscription, v->resource_group);
    url = prov_fmt(err, "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s"
                   "?api-version=" ARM_VAULTS_API,
              c->ep->arm, c->subscription, v->resource_group, v->name);
    if (!rg || !url)
        goto done;
    {
        static const long ok[] = {200, 404, 0};
        rc = call(c, scope, "GET", rg, NULL, 0, ok, "get resource group", v->resource_group,
                  NULL, &st, err);
        if (!rc && st == 404) {
            json_t *g = json_pack("{s:s}", "location", v->location);
            rc = call_arm(c, "PUT", rg, rg, g, OK2XX, "create resource group",
                          v->resource_group, NULL, NULL, err);
            json_decref(g);
        }
        if (rc)
            goto done;
    }
    if (recover)
        body = json_pack("{s:s,s:{s:s,s:{s:s,s:s},s:s}}", "location", v->location, "properties",
                         "tenantId", c->tenant, "sku", "family", "A", "name",
                         v->sku == KVR_SKU_PREMIUM ? "premium" : "standard", "createMode",
                         "recover");
    else
        body = json_pack("{s:s,s:o,s:o}", "location", v->location, "tags", tags_json(&v->tags),
                         "properties", vault_properties(c, v));
    if (body && !recover && !v->rbac &&
        (rc = self_policy(c, json_object_get(json_object_get(body, "properties"), "accessPolicies"),
                          err)) < 0)
        goto done;
    /* Vaults_CreateOrUpdate is a long-running operation (201, provisioningState RegisteringDns
       until the vault's name resolves): wait for it before anything uses the vault. */
    rc = body ? call_arm(c, "PUT", url, url, body, OK2XX,
                         recover ? "recover vault" : "create vault", v->name, NULL, NULL, err)
              : kvr_error_oom(err);
done:
    json_decref(body);
    free(scope);
    free(rg);
    free(url);
    return rc;
}

/* ---- access policies ---- */

/* Appends to arr the names of `a` that neither `b` nor arr has (case-insensitive). */
static void perms_minus(json_t *arr, const kvr_strlist *a, const kvr_strlist *b)
{
    for (size_t i = 0; arr && a && i < a->len; i++) {
        bool found = false;
        for (size_t j = 0; b && j < b->len && !found; j++)
            found = strcasecmp(a->items[i], b->items[j]) == 0;
        for (size_t j = 0; j < json_array_size(arr) && !found; j++)
            found = strcasecmp(a->items[i], json_string_value(json_array_get(arr, j))) == 0;
        if (!found)
            json_array_append_new(arr, json_string(a->items[i]));
    }
}

/* An entry for `oid` with the permissions (keys, secrets, certificates) of `a` minus those of
   `b`; appended to list unless it would grant or take nothing. */
static void policy_delta(json_t *list, ctxt *c, const char *oid, const kvr_strlist *const a[3],
                         const kvr_strlist *const b[3])
{
    json_t *perm = json_pack("{s:[],s:[],s:[]}", "keys", "secrets", "certificates");
    static const char *const fam[3] = {"keys", "secrets", "certificates"};
    size_t n = 0;
    for (int f = 0; perm && f < 3; f++) {
        perms_minus(json_object_get(perm, fam[f]), a[f], b ? b[f] : NULL);
        n += json_array_size(json_object_get(perm, fam[f]));
    }
    if (perm && n)
        json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "tenantId", c->tenant, "objectId",
                                              oid, "permissions", perm));
    else
        json_decref(perm);
}

/* PUT {V}/accessPolicies/{kind} with the entries of list, 16 at a time (the endpoint's limit). */
static int policies_put(ctxt *c, const char *id, const char *kind, json_t *list, const char *vault,
                        kvr_error *err)
{
    static const long ok[] = {200, 201, 0};
    char *url = prov_fmt(err, "%s/accessPolicies/%s?api-version=" ARM_VAULTS_API, id, kind);
    int rc = url ? 0 : KVR_ENOMEM;
    for (size_t i = 0; !rc && i < json_array_size(list); i += 16) {
        json_t *part = json_array(), *body;
        for (size_t j = i; part && j < json_array_size(list) && j < i + 16; j++)
            json_array_append(part, json_array_get(list, j));
        body = part ? json_pack("{s:{s:o}}", "properties", "accessPolicies", part) : NULL;
        rc = body ? call_arm(c, "PUT", url, NULL, body, ok,
                             strcmp(kind, "add") == 0 ? "grant access policy permissions"
                                                      : "remove access policy permissions",
                             vault, NULL, NULL, err)
                  : kvr_error_oom(err);
        json_decref(body);
    }
    free(url);
    return rc;
}

/*
 * Makes the access-policy entries of the declared apps what the desired state says, as the plan
 * compared them (kvr_plan_policy_canon): first what is missing is added, then what is too much
 * is removed ("add" and "remove" change only the entries and permissions they name, so an entry
 * never disappears on the way, and entries of other principals, the identity kvreconcile runs
 * as among them, are never touched).
 */
static int policies_sync(ctxt *c, const kvr_vault *v, const kvr_live_vault *lv, const char *id,
                         kvr_error *err)
{
    json_t *add = json_array(), *rem = json_array();
    int rc = add && rem ? 0 : kvr_error_oom(err);
    for (size_t i = 0; !rc && i < c->d->napps; i++) {
        const kvr_app *a = &c->d->apps[i];
        const kvr_live_app *la = kvr_live_app_get(c->l, a->display_name);
        const kvr_access_policy *ap = NULL;
        const kvr_live_policy *lp = NULL;
        char want[512] = "none", have[512] = "none";
        if (!la || !la->sp_id)
            continue; /* no service principal yet: a later run grants it */
        for (size_t j = 0; j < v->npolicies; j++)
            if (strcmp(v->policies[j].app, a->name) == 0)
                ap = &v->policies[j];
        for (size_t j = 0; j < lv->npolicies; j++)
            if (strcasecmp(lv->policies[j].object_id, la->sp_id) == 0)
                lp = &lv->policies[j];
        if (ap)
            kvr_plan_policy_canon(want, sizeof(want), &ap->keys, &ap->secrets, &ap->certificates);
        if (lp)
            kvr_plan_policy_canon(have, sizeof(have), &lp->keys, &lp->secrets, &lp->certificates);
        if (strcmp(want, have) == 0)
            continue;
        {
            const kvr_strlist *w[3] = {ap ? &ap->keys : NULL, ap ? &ap->secrets : NULL,
                                       ap ? &ap->certificates : NULL};
            const kvr_strlist *h[3] = {lp ? &lp->keys : NULL, lp ? &lp->secrets : NULL,
                                       lp ? &lp->certificates : NULL};
            policy_delta(add, c, la->sp_id, w, h);
            policy_delta(rem, c, la->sp_id, h, w);
        }
    }
    if (!rc)
        rc = policies_put(c, id, "add", add, v->name, err);
    if (!rc)
        rc = policies_put(c, id, "remove", rem, v->name, err);
    json_decref(add);
    json_decref(rem);
    return rc;
}

/* PATCH the vault: properties from the desired state, tags plus an optional extra tag. */
static int vault_patch(ctxt *c, const kvr_step *s, const char *extra_tag, const char *extra_value,
                       kvr_error *err)
{
    const kvr_vault *v = kvr_estate_vault(c->d, s->name);
    const kvr_live_vault *lv = kvr_live_vault_get(c->l, s->name);
    char *scope = arm_scope(c, err), *id = v ? vault_id(c, v, err) : NULL, *url = NULL;
    json_t *tags, *body = NULL, *props;
    int rc = KVR_ENOMEM;
    if (!v || !lv || !scope || !id)
        goto done;
    url = prov_fmt(err, "%s?api-version=" ARM_VAULTS_API, id);
    tags = tags_json(&v->tags);
    for (size_t i = 0; tags && i < lv->tags.len; i++) /* keep kvreconcile's own markers */
        if (strncmp(lv->tags.items[i].key, "kvr-", 4) == 0)
            json_object_set_new(tags, lv->tags.items[i].key, json_string(lv->tags.items[i].value));
    if (tags && extra_tag)
        json_object_set_new(tags, extra_tag, json_string(extra_value));
    props = vault_properties(c, v);
    if (props) { /* PATCH takes what may change: not tenant, retention days or access policies */
        json_object_del(props, "tenantId");
        json_object_del(props, "softDeleteRetentionInDays");
        json_object_del(props, "accessPolicies");
        json_object_del(props, "enableSoftDelete");
    }
    body = json_pack("{s:o,s:o}", "tags", tags, "properties", props);
    rc = url && body ? call_arm(c, "PATCH", url, url, body, OK2XX, "update vault", v->name, NULL,
                                NULL, err)
                     : kvr_error_oom(err);
    if (!rc && !extra_tag && !v->rbac) /* a planned update: the access policies too */
        rc = policies_sync(c, v, lv, id, err);
done:
    json_decref(body);
    free(scope);
    free(id);
    free(url);
    return rc;
}

static int vault_delete(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_vault *v = kvr_estate_vault(c->d, s->name);
    char *scope = arm_scope(c, err), *id = v ? vault_id(c, v, err) : NULL, *url = NULL;
    int rc = KVR_ENOMEM;
    if (v && scope && id && (url = prov_fmt(err, "%s?api-version=" ARM_VAULTS_API, id)))
        rc = call_arm(c, "DELETE", url, url, NULL, OK2XX, "delete vault", v->name, NULL, NULL,
                      err);
    free(scope);
    free(id);
    free(url);
    return rc;
}

/* ---- Graph -------------------------------------------------------------------------------- */

static char *graph_scope(ctxt *c, kvr_error *err)
{
    return prov_fmt(err, "%s/.default", c->ep->graph);
}

static const kvr_live_app *live_app(ctxt *c, const char *app_name)
{
    const kvr_app *a = kvr_estate_app(c->d, app_name);
    return a ? kvr_live_app_get(c->l, a->display_name) : NULL;
}

/*
 * The app's uniqueName, Graph's client-provided alternate key: "kvr-" and 32 hex digits of the
 * SHA-256 of its display name, lowercased (apps are found by display name, which Graph compares
 * without case). Derived, not random, so that every run and every machine names the same app.
 */
static int app_unique_name(char out[37], const char *display_name, kvr_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *lower = strdup(display_name);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = lower && h;
    for (char *p = lower; ok && *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    ok = ok && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(h, lower, strlen(lower)) == 1 && EVP_DigestFinal_ex(h, md, &mdlen) == 1;
    EVP_MD_CTX_free(h);
    free(lower);
    if (!ok)
        return kvr_error_oom(err);
    memcpy(out, "kvr-", 4);
    for (int i = 0; i < 16; i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/*
 * Creates the app as an upsert on its uniqueName (`PATCH /applications(uniqueName='…')` with
 * `Prefer: create-if-missing`): two runs that both find the app missing make one app between
 * them (201 for the first, an update and 204 for the other), and a retry after a lost answer is
 * harmless, where a POST would register a second app of the same name.
 */
static int app_create(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_app *a = kvr_estate_app(c->d, s->name);
    char unique[37];
    char *scope = NULL, *url = NULL;
    json_t *body = NULL;
    int rc;
    if (!a)
        return kvr_error_set(err, KVR_ENOTFOUND, "app '%s' is not declared", s->name);
    if ((rc = app_unique_name(unique, a->display_name, err)) < 0)
        return rc;
    scope = graph_scope(c, err);
    url = prov_fmt(err, "%s/v1.0/applications(uniqueName='%s')", c->ep->graph, unique);
    body = json_pack("{s:s,s:s}", "displayName", a->display_name, "signInAudience",
                     a->sign_in_audience);
    rc = scope && url && body ? call(c, scope, "PATCH", url, body, CALL_UPSERT, OK2XX, "create app",
                                     a->display_name, NULL, NULL, err)
                              : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

/* An upsert on the app's appId, for the same reasons as app_create. */
static int sp_create(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_live_app *la = live_app(c, s->name);
    char *scope = graph_scope(c, err);
    char *url = la ? prov_fmt(err, "%s/v1.0/servicePrincipals(appId='%s')", c->ep->graph,
                              la->app_id)
                   : NULL;
    json_t *body = json_object();
    int rc;
    if (!la)
        rc = kvr_error_set(err, KVR_ENOTFOUND, "app '%s' does not exist yet", s->name);
    else
        rc = scope && url && body ? call(c, scope, "PATCH", url, body, CALL_UPSERT, OK2XX,
                                         "create service principal", s->name, NULL, NULL, err)
                                  : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

static int remove_password(ctxt *c, const kvr_live_app *la, const char *key_id, kvr_error *err)
{
    char *scope = graph_scope(c, err);
    char *url = prov_fmt(err, "%s/v1.0/applications/%s/removePassword", c->ep->graph, la->object_id);
    json_t *body = json_pack("{s:s}", "keyId", key_id);
    int rc = scope && url && body ? call(c, scope, "POST", url, body, 0, OK2XX,
                                         "remove client secret of app", la->display_name, NULL,
                                         NULL, err)
                                  : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

/* PUT a secret value (a secret: the body is wiped) with content type and tags. */
static int secret_put(ctxt *c, const char *vault, const char *name, const unsigned char *value,
                      size_t len, const char *content_type, json_t *tags, kvr_error *err)
{
    char *base = vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = json_object(), *v = json_stringn((const char *)value, len);
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    if (!v && body) { /* jansson refuses text that is not UTF-8 */
        rc = kvr_error_set(err, KVR_EINVAL, "the value of secret '%s' is not valid UTF-8", object);
        goto done;
    }
    if (!base || !body || !(url = prov_fmt(err, "%s/secrets/%s?api-version=" KV_API, base, name))) {
        json_decref(v);
        rc = kvr_error_oom(err);
        goto done;
    }
    json_object_set_new(body, "value", v);
    if (content_type)
        json_object_set_new(body, "contentType", json_string(content_type));
    if (tags)
        json_object_set(body, "tags", tags);
    rc = call(c, NULL, "PUT", url, body, KVR_HTTP_SECRET_WRITE, OK200, "set secret", object, NULL,
              NULL, err);
    wipe_str(json_string_value(v));
done:
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

/* GETs the latest value of a secret into *out (wiped by the caller with kvr_value_release). */
static int secret_get(ctxt *c, const char *vault, const char *name, const char *version,
                      kvr_value *out, json_t **tags, kvr_error *err)
{
    char *base = vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = NULL, *v;
    int rc;
    out->data = NULL;
    out->len = 0;
    if (tags)
        *tags = NULL;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/secrets/%s/%s?api-version=" KV_API, base, name,
                     version ? version : "")
               : NULL;
    rc = url ? call(c, NULL, "GET", url, NULL, 0, OK200, "get secret", object, &body, NULL, err)
             : KVR_ENOMEM;
    v = json_object_get(body, "value");
    if (!rc && !json_is_string(v))
        rc = kvr_error_set(err, KVR_EPROTO, "get secret '%s': no value in the response", object);
    if (!rc) {
        out->len = json_string_length(v);
        out->data = malloc(out->len + 1);
        if (!out->data)
            rc = kvr_error_oom(err);
        else
            memcpy(out->data, json_string_value(v), out->len);
        if (tags)
            *tags = json_incref(json_object_get(body, "tags"));
    }
    if (json_is_string(v))
        wipe_str(json_string_value(v));
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static int cred_add(ctxt *c, const kvr_step *s, bool replace, kvr_error *err)
{
    const kvr_app *a = kvr_estate_app(c->d, s->extra);
    const kvr_credential *cr = a ? kvr_app_credential(a, s->name) : NULL;
    const kvr_live_app *la = live_app(c, s->extra);
    char *scope = graph_scope(c, err), *url = NULL, end[KVR_TIME_ISO_MAX], display[160];
    json_t *body = NULL, *resp = NULL, *tags = NULL;
    const char *text, *key_id;
    int rc = KVR_ENOMEM;

    if (!cr || !la)
        return kvr_error_set(err, KVR_ENOTFOUND, "app '%s' does not exist yet", s->extra);
    if (replace && s->version && (rc = remove_password(c, la, s->version, err)) < 0)
        goto done;
    kvr_time_iso(end, sizeof(end), c->l->now + cr->lifetime);
    snprintf(display, sizeof(display), KVR_CRED_PREFIX "%s", cr->name);
    url = prov_fmt(err, "%s/v1.0/applications/%s/addPassword", c->ep->graph, la->object_id);
    body = json_pack("{s:{s:s,s:s}}", "passwordCredential", "displayName", display, "endDateTime",
                     end);
    if (!scope || !url || !body)
        goto done;
    rc = call(c, scope, "POST", url, body, KVR_HTTP_NOT_IDEMPOTENT, OK2XX, "add client secret to app",
              a->display_name, &resp, NULL, err);
    if (rc < 0)
        goto done;
    text = json_string_value(json_object_get(resp, "secretText"));
    key_id = json_string_value(json_object_get(resp, "keyId"));
    if (!text || !key_id) {
        rc = kvr_error_set(err, KVR_EPROTO, "add client secret to app '%s': no secretText or "
                                            "keyId in the response",
                           a->display_name);
        goto done;
    }
    /* The only moment the secret text exists: store it before anything else. */
    tags = json_pack("{s:s}", KVR_TAG_CREDENTIAL, key_id);
    rc = tags ? secret_put(c, cr->store_vault, cr->store_secret, (const unsigned char *)text,
                           strlen(text), "text/plain", tags, err)
              : KVR_ENOMEM;
    wipe_str(text);
    if (rc < 0) {
        /* Not stored: remove it, so that no credential exists that nobody can use. */
        kvr_error ignored;
        remove_password(c, la, key_id, &ignored);
    }
done:
    if (resp)
        wipe_str(json_string_value(json_object_get(resp, "secretText")));
    json_decref(resp);
    json_decref(body);
    json_decref(tags);
    free(scope);
    free(url);
    return rc;
}

static int cred_remove(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_live_app *la = live_app(c, s->extra);
    if (!la || !s->version)
        return kvr_error_set(err, KVR_ENOTFOUND, "app '%s' or its credential is gone", s->extra);
    return remove_password(c, la, s->version, err);
}

/* ---- tags on Key Vault objects ------------------------------------------------------------ */

/* Adds one tag to a key version or to a secret's latest version, keeping its other tags. */
static int add_tag(ctxt *c, const char *kind, const char *vault, const char *name,
                   const char *version, const char *tag, const char *value, kvr_error *err)
{
    char *base = vault_base(c, vault, err), *url = NULL, object[300];
    json_t *cur = NULL, *body = NULL, *tags;
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/%s/%s/%s?api-version=" KV_API, base, kind, name,
                     version ? version : "")
               : NULL;
    rc = url ? call(c, NULL, "GET", url, NULL, 0, OK200, "read tags of", object, &cur, NULL, err)
             : KVR_ENOMEM;
    if (rc)
        goto done;
    if (json_is_string(json_object_get(cur, "value"))) /* a secret: its value is not needed */
        wipe_str(json_string_value(json_object_get(cur, "value")));
    tags = json_is_object(json_object_get(cur, "tags")) ? json_deep_copy(json_object_get(cur, "tags"))
                                                        : json_object();
    if (tags)
        json_object_set_new(tags, tag, json_string(value));
    body = json_pack("{s:o}", "tags", tags);
    rc = body ? call(c, NULL, "PATCH", url, body, 0, OK200, "tag", object, NULL, NULL, err)
              : kvr_error_oom(err);
done:
    json_decref(cur);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static const kvr_live_secret *stored_copy(const kvr_live *l, const char *key_id)
{
    for (size_t i = 0; i < l->nsecrets; i++) {
        const char *id = kvr_tags_get(&l->secrets[i].tags, KVR_TAG_CREDENTIAL);
        if (id && strcmp(id, key_id) == 0)
            return &l->secrets[i];
    }
    return NULL;
}

/* ---- keys --------------------------------------------------------------------------------- */

static json_t *policy_json(const kvr_rotation *r)
{
    json_t *actions = json_array(), *p;
    char iso[32];
    if (!actions)
        return NULL;
    if (r->every) {
        kvr_duration_iso(iso, sizeof(iso), r->every);
        json_array_append_new(actions, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeAfterCreate",
                                                 iso, "action", "type", "Rotate"));
    } else if (r->before_expiry) {
        kvr_duration_iso(iso, sizeof(iso), r->before_expiry);
        json_array_append_new(actions, json_pack("{s:{s:s},s:{s:s}}", "trigger",
                                                 "timeBeforeExpiry", iso, "action", "type",
                                                 "Rotate"));
    }
    if (r->notify_before) {
        kvr_duration_iso(iso, sizeof(iso), r->notify_before);
        json_array_append_new(actions, json_pack("{s:{s:s},s:{s:s}}", "trigger",
                                                 "timeBeforeExpiry", iso, "action", "type",
                                                 "Notify"));
    }
    p = json_pack("{s:o}", "lifetimeActions", actions);
    if (p && r->expires_after) {
        kvr_duration_iso(iso, sizeof(iso), r->expires_after);
        json_object_set_new(p, "attributes", json_pack("{s:s}", "expiryTime", iso));
    }
    return p;
}

static int key_policy(ctxt *c, const kvr_key *k, kvr_error *err)
{
    char *base = vault_base(c, k->vault, err), *url = NULL, object[300];
    json_t *body = policy_json(&k->rotation);
    int rc;
    snprintf(object, sizeof(object), "%s/%s", k->vault, k->name);
    url = base ? prov_fmt(err, "%s/keys/%s/rotationpolicy?api-version=" KV_API, base, k->name) : NULL;
    rc = url && body ? call(c, NULL, "PUT", url, body, 0, OK200, "set rotation policy of key",
                            object, NULL, NULL, err)
                     : kvr_error_oom(err);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static json_t *ops_json(unsigned ops)
{
    static const char *const names[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey",
                                        "unwrapKey"};
    json_t *a = json_array();
    for (int i = 0; a && i < 6; i++)
        if (ops & (1u << i))
            json_array_append_new(a, json_string(names[i]));
    return a;
}

static int key_create(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_key *k = kvr_estate_key(c->d, s->vault, s->name);
    char *base = k ? vault_base(c, k->vault, err) : NULL, *url = NULL, object[300];
    json_t *tags, *body = NULL;
    int rc = KVR_ENOMEM;
    if (!k)
        return kvr_error_set(err, KVR_ENOTFOUND, "key '%s' is not declared", s->name);
    snprintf(object, sizeof(object), "%s/%s", k->vault, k->name);
    tags = tags_json(&k->tags);
    if (tags && k->generation)
        json_object_set_new(tags, KVR_TAG_GENERATION, json_string(k->generation));
    body = json_pack("{s:s,s:o,s:o}", "kty", kvr_key_type_name(k->type), "key_ops",
                     ops_json(k->ops), "tags", tags);
    if (body && k->curve)
        json_object_set_new(body, "crv", json_string(k->curve));
    else if (body)
        json_object_set_new(body, "key_size", json_integer(k->size));
    url = base ? prov_fmt(err, "%s/keys/%s/create?api-version=" KV_API, base, k->name) : NULL;
    if (!url || !body)
        goto done;
    /* Not retried after an ambiguous failure: a second version would be made. The next run
       sees the generation tag if the first one was. */
    rc = call(c, NULL, "POST", url, body, KVR_HTTP_NOT_IDEMPOTENT, OK200, "create key", object,
              NULL, NULL, err);
    if (!rc && k->rotation.set)
        rc = key_policy(c, k, err);
done:
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static int key_patch(ctxt *c, const kvr_step *s, json_t *body, const char *op, kvr_error *err)
{
    char *base = vault_base(c, s->vault, err), *url = NULL, object[300];
    int rc;
    snprintf(object, sizeof(object), "%s/%s", s->vault, s->name);
    url = base ? prov_fmt(err, "%s/keys/%s/%s?api-version=" KV_API, base, s->name,
                     s->version ? s->version : "")
               : NULL;
    rc = url && body ? call(c, NULL, "PATCH", url, body, 0, OK200, op, object, NULL, NULL, err)
                     : kvr_error_oom(err);
    free(base);
    free(url);
    return rc;
}

/* METHOD https://VAULT/COLLECTION/NAME[SUFFIX] with no body. */
static int kv_simple(ctxt *c, const char *vault, const char *method, const char *collection,
                     const char *name, const char *suffix, const char *op, kvr_error *err)
{
    char *base = vault_base(c, vault, err), *url = NULL, object[300];
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/%s/%s%s?api-version=" KV_API, base, collection, name, suffix) : NULL;
    rc = url ? call(c, NULL, method, url, NULL, 0, OK2XX, op, object, NULL, NULL, err)
             : KVR_ENOMEM;
    free(base);
    free(url);
    return rc;
}

/* ---- secrets ------------------------------------------------------------------------------ */

static int secret_set(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_secret *sec = NULL;
    kvr_value v = {0};
    json_t *tags = NULL;
    int rc;
    for (size_t i = 0; i < c->d->nsecrets; i++)
        if (kvr_str_ieq(c->d->secrets[i].vault, s->vault) &&
            kvr_str_ieq(c->d->secrets[i].name, s->name))
            sec = &c->d->secrets[i];
    if (!sec)
        return kvr_error_set(err, KVR_ENOTFOUND, "secret '%s' is not declared", s->name);
    switch (sec->source) {
    case KVR_SECRET_GENERATE:
        rc = kvr_value_generate(&v, sec->gen_length, sec->gen_charset, err);
        break;
    case KVR_SECRET_FROM_ENV:
    case KVR_SECRET_FROM_FILE:
        rc = kvr_value_read(&v, sec, err);
        break;
    case KVR_SECRET_FROM_APP_CREDENTIAL: {
        const kvr_app *a = kvr_estate_app(c->d, sec->app);
        const kvr_credential *cr = a ? kvr_app_credential(a, sec->credential) : NULL;
        rc = cr ? secret_get(c, cr->store_vault, cr->store_secret, NULL, &v, NULL, err)
                : kvr_error_set(err, KVR_ENOTFOUND, "credential '%s' of app '%s' is not declared",
                                sec->credential, sec->app);
        break;
    }
    default:
        rc = kvr_error_set(err, KVR_EINVAL, "unknown source of secret '%s'", s->name);
    }
    if (!rc) {
        tags = tags_json(&sec->tags);
        rc = secret_put(c, sec->vault, sec->name, v.data, v.len, sec->content_type, tags, err);
    }
    kvr_value_release(&v);
    json_decref(tags);
    return rc;
}

static int secret_update(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_secret *sec = NULL;
    char *base = vault_base(c, s->vault, err), *url = NULL, object[300];
    json_t *body = NULL;
    int rc;
    for (size_t i = 0; i < c->d->nsecrets; i++)
        if (kvr_str_ieq(c->d->secrets[i].vault, s->vault) &&
            kvr_str_ieq(c->d->secrets[i].name, s->name))
            sec = &c->d->secrets[i];
    snprintf(object, sizeof(object), "%s/%s", s->vault, s->name);
    url = base ? prov_fmt(err, "%s/secrets/%s/?api-version=" KV_API, base, s->name) : NULL;
    if (sec)
        body = json_pack("{s:o}", "tags", tags_json(&sec->tags));
    if (body && sec->content_type)
        json_object_set_new(body, "contentType", json_string(sec->content_type));
    rc = url && body ? call(c, NULL, "PATCH", url, body, 0, OK200, "update secret", object, NULL,
                            NULL, err)
                     : kvr_error_oom(err);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static int version_cmp(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t cx = json_integer_value(json_object_get(json_object_get(x, "attributes"), "created"));
    json_int_t cy = json_integer_value(json_object_get(json_object_get(y, "attributes"), "created"));
    return cx < cy ? -1 : cx > cy;
}

/* Copies one version (NULL: the latest) of a secret from s->extra to s->vault. */
static int copy_version(ctxt *c, const kvr_step *s, const char *version, const char *content_type,
                        kvr_error *err)
{
    kvr_value v = {0};
    json_t *tags = NULL;
    int rc = secret_get(c, s->extra, s->name, version, &v, &tags, err);
    if (!rc)
        rc = secret_put(c, s->vault, s->name, v.data, v.len, content_type, tags, err);
    kvr_value_release(&v);
    json_decref(tags);
    return rc;
}

/*
 * A relocation copy: the latest version, or with `secrets: all` every enabled version, oldest
 * first, so that the latest stays the latest. Values pass through memory only.
 */
static int secret_copy(ctxt *c, const kvr_step *s, kvr_error *err)
{
    const kvr_vault *dst = kvr_estate_vault(c->d, s->vault);
    const kvr_live_secret *src = kvr_live_secret_get(c->l, s->extra, s->name);
    const char *ct = src ? src->content_type : NULL;
    char *base, *url, what[300];
    json_t *items = NULL;
    json_t **sorted = NULL;
    size_t n = 0;
    int rc;

    if (!dst || dst->copy_from.secrets != KVR_COPY_ALL)
        return copy_version(c, s, NULL, ct, err);
    base = vault_base(c, s->extra, err);
    url = base ? prov_fmt(err, "%s/secrets/%s/versions?api-version=" KV_API "&maxresults=25", base,
                     s->name)
               : NULL;
    snprintf(what, sizeof(what), "list versions of secret '%s/%s'", s->extra, s->name);
    if (!url) {
        free(base);
        return KVR_ENOMEM;
    }
    {
        kvr_http_request req = {.method = "GET", .url = url};
        rc = kvr_auth_list(&items, c->auth, NULL, &req, what, err);
    }
    if (!rc && json_array_size(items)) {
        sorted = calloc(json_array_size(items), sizeof(*sorted));
        if (!sorted)
            rc = kvr_error_oom(err);
        for (size_t i = 0; sorted && i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            if (!json_is_false(json_object_get(json_object_get(it, "attributes"), "enabled")))
                sorted[n++] = it;
        }
        if (n > 1)
            qsort(sorted, n, sizeof(*sorted), version_cmp);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        char ver[80];
        if (!kvr_id_last(json_string_value(json_object_get(sorted[i], "id")), ver, sizeof(ver)))
            rc = kvr_error_set(err, KVR_EPROTO, "%s: a version without an id", what);
        else
            rc = copy_version(c, s, ver, ct, err);
    }
    free(sorted);
    json_decref(items);
    free(base);
    free(url);
    return rc;
}

/* ---- certificates ------------------------------------------------------------------------- */

/* The parts of a certificate policy that an import takes (the rest comes from the certificate). */
static json_t *import_policy(const json_t *policy)
{
    static const char *const kept[] = {"key_props", "secret_props", "lifetime_actions", "issuer"};
    json_t *p = json_object();
    for (size_t i = 0; p && i < sizeof(kept) / sizeof(kept[0]); i++) {
        json_t *v = json_object_get(policy, kept[i]);
        if (v && json_object_set_new(p, kept[i], json_deep_copy(v)) < 0) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

/*
 * A relocation copy of a certificate. Keys are never copied between vaults, but a certificate's
 * private key travels inside it: Key Vault keeps the whole certificate (PFX or PEM, by the
 * policy's content type) in the certificate's managed secret, so the copy reads that secret and
 * imports it into the new vault with the source's policy and tags. Backup/restore would not do:
 * blobs restore only within the same geography, which a relocation usually leaves. A certificate
 * whose key is not exportable cannot leave its vault; the error says what to do instead.
 */
static int cert_copy(ctxt *c, const kvr_step *s, kvr_error *err)
{
    char *src = vault_base(c, s->extra, err), *dst = vault_base(c, s->vault, err), *url = NULL;
    char object[300];
    json_t *cert = NULL, *policy, *body = NULL, *v = NULL;
    kvr_value value = {0};
    int rc;

    snprintf(object, sizeof(object), "%s/%s", s->extra, s->name);
    url = src && dst ? prov_fmt(err, "%s/certificates/%s/?api-version=" KV_API, src, s->name) : NULL;
    rc = url ? call(c, NULL, "GET", url, NULL, 0, OK200, "get certificate", object, &cert, NULL, err)
             : KVR_ENOMEM;
    policy = json_object_get(cert, "policy");
    if (!rc && !json_is_object(policy))
        rc = kvr_error_set(err, KVR_EPROTO, "get certificate '%s': no policy in the response",
                           object);
    if (!rc && json_is_false(json_object_get(json_object_get(policy, "key_props"), "exportable")))
        rc = kvr_error_set(err, KVR_EINVAL,
                           "certificate '%s' has a private key that is not exportable, so it "
                           "cannot be copied to vault '%s'; issue a new certificate there (or "
                           "set 'copyFrom.certificates: false') and run again",
                           object, s->vault);
    if (!rc)
        rc = secret_get(c, s->extra, s->name, NULL, &value, NULL, err);
    if (!rc) {
        v = json_stringn((const char *)value.data, value.len);
        body = json_object();
        if (!v || !body || json_object_set(body, "value", v) < 0 ||
            json_object_set_new(body, "policy", import_policy(policy)) < 0 ||
            json_object_set_new(body, "attributes", json_pack("{s:b}", "enabled", 1)) < 0)
            rc = kvr_error_oom(err);
        if (!rc && json_is_object(json_object_get(cert, "tags")))
            json_object_set(body, "tags", json_object_get(cert, "tags"));
    }
    if (!rc) {
        free(url);
        snprintf(object, sizeof(object), "%s/%s", s->vault, s->name);
        url = prov_fmt(err, "%s/certificates/%s/import?api-version=" KV_API, dst, s->name);
        rc = url ? call(c, NULL, "POST", url, body, KVR_HTTP_SECRET_WRITE, OK200,
                        "import certificate", object, NULL, NULL, err)
                 : KVR_ENOMEM;
    }
    wipe_str(json_string_value(v));
    json_decref(v);
    json_decref(body);
    json_decref(cert);
    kvr_value_release(&value);
    free(src);
    free(dst);
    free(url);
    return rc;
}

/* ---- profiles ----------------------------------------------------------------------------- */

static char *profiles_scope(ctxt *c, kvr_error *err)
{
    if (!c->ep->profiles) {
        kvr_error_set(err, KVR_EINVAL, "the profile service's endpoint is not set");
        return NULL;
    }
    return prov_fmt(err, "%s/.default", c->ep->profiles);
}

/* The secret text of an app credential, from its vault secret. */
static int credential_secret(ctxt *c, const char *app, const char *credential, kvr_value *out,
                             kvr_error *err)
{
    const kvr_app *a = kvr_estate_app(c->d, app);
    const kvr_credential *cr = a ? kvr_app_credential(a, credential) : NULL;
    if (!cr)
        return kvr_error_set(err, KVR_ENOTFOUND, "credential '%s' of app '%s' is not declared",
                             credential, app);
    return secret_get(c, cr->store_vault, cr->store_secret, NULL, out, NULL, err);
}

static int profile_write(ctxt *c, const kvr_step *s, bool create, kvr_error *err)
{
    const kvr_profile *p = kvr_estate_profile(c->d, s->name);
    const kvr_live_app *la = p ? live_app(c, p->app) : NULL;
    const kvr_live_key *lk = p ? kvr_live_key_get(c->l, p->vault, p->key) : NULL;
    char *scope = profiles_scope(c, err), *url = NULL, *kid = NULL;
    const char *version;
    kvr_value secret = {0};
    json_t *body = NULL, *sv = NULL;
    int rc = KVR_ENOMEM;

    if (!p || !la || (create && (!lk || !lk->nversions)))
        return kvr_error_set(err, KVR_ENOTFOUND,
                             "profile '%s': its app or key does not exist yet", s->name);
    if (!scope)
        goto done;
    if ((rc = credential_secret(c, p->app, p->credential, &secret, err)) < 0)
        goto done;
    sv = json_stringn((const char *)secret.data, secret.len);
    body = json_pack("{s:s,s:s,s:O,s:{s:s,s:s}}", "tenantId", c->tenant, "clientId", la->app_id,
                     "clientSecret", sv, "metadata", "kvr-credential", p->credential, "kvr-managed",
                     "true");
    if (create && body) {
        version = p->key_version ? p->key_version : lk->versions[lk->nversions - 1].id;
        kid = prov_fmt(err, "https://%s.%s/keys/%s/%s", p->vault, c->ep->vault_suffix, p->key, version);
        json_object_set_new(body, "keyId", kid ? json_string(kid) : json_null());
        url = prov_fmt(err, "%s/encryptionProfiles/%s?api-version=" PROFILES_API, c->ep->profiles,
                  p->name);
    } else if (body) {
        url = prov_fmt(err, "%s/encryptionProfiles/%s/credentials?api-version=" PROFILES_API,
                  c->ep->profiles, p->name);
    }
    rc = url && body ? call(c, scope, create ? "PUT" : "POST", url, body, 0, OK2XX,
                            create ? "create profile" : "set credentials of profile", p->name,
                            NULL, NULL, err)
                     : kvr_error_oom(err);
done:
    if (sv)
        wipe_str(json_string_value(sv));
    json_decref(sv);
    json_decref(body);
    kvr_value_release(&secret);
    free(scope);
    free(url);
    free(kid);
    return rc;
}

static int profile_simple(ctxt *c, const kvr_step *s, const char *method, const char *suffix,
                          const char *op, kvr_error *err)
{
    char *scope = profiles_scope(c, err);
    char *url = scope ? prov_fmt(err, "%s/encryptionProfiles/%s%s?api-version=" PROFILES_API,
                            c->ep->profiles, s->name, suffix)
                      : NULL;
    int rc = url ? call(c, scope, method, url, NULL, 0, OK2XX, op, s->name, NULL, NULL, err)
                 : (scope ? KVR_ENOMEM : err->code);
    free(scope);
    free(url);
    return rc;
}

/* ---- role assignments --------------------------------------------------------------------- */

/* A name-based GUID (SHA-256 of scope, role and principal, version nibble 5): re-runs are
   idempotent, and two runners pick the same name. */
static void role_guid(char out[37], const char *scope, const char *role, const char *principal)
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    memset(md, 0, sizeof(md));
    if (h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(h, scope, strlen(scope));
        EVP_DigestUpdate(h, "|", 1);
        EVP_DigestUpdate(h, role, strlen(role));
        EVP_DigestUpdate(h, "|", 1);
        EVP_DigestUpdate(h, principal, strlen(principal));
        EVP_DigestFinal_ex(h, md, &n);
    }
    EVP_MD_CTX_free(h);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
    }
    out[o] = '\0';
}

/*
 * Entra replicates a new service principal to Azure RBAC within seconds to minutes; until then a
 * role assignment PUT for it is 400 PrincipalNotFound, whatever principalType says. The PUT is
 * retried on the real clock (the service's clock is not ours to read here), backing off from 1 s
 * to 8 s, for up to ROLE_PRINCIPAL_WAIT_S. A principal that Graph itself does not hold will never
 * appear: that fails at once.
 */
#define ROLE_PRINCIPAL_WAIT_S 90.0

/* 1: Graph holds the service principal `id`, 0: it does not (404), < 0: the check failed. */
static int sp_exists(ctxt *c, const char *id, const char *app, kvr_error *err)
{
    static const long ok[] = {200, 404, 0};
    char *scope = graph_scope(c, err);
    char *url = prov_fmt(err, "%s/v1.0/servicePrincipals/%s", c->ep->graph, id);
    long status = 0;
    int rc = scope && url ? call(c, scope, "GET", url, NULL, 0, ok, "read service principal of app",
                                 app, NULL, &status, err)
                          : KVR_ENOMEM;
    free(scope);
    free(url);
    return rc < 0 ? rc : status == 200;
}

/* The `error.code` of an ARM error body, or NULL; borrowed from *out (parsed from resp). */
static const char *arm_error_code(json_t **out, const kvr_http_response *resp)
{
    json_error_t jerr;
    *out = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, &jerr) : NULL;
    return json_string_value(json_object_get(json_object_get(*out, "error"), "code"));
}

/* Removes role assignment s->version (its GUID) at scope s->extra; one already gone is fine. */
static int role_delete(ctxt *c, const kvr_step *s, kvr_error *err)
{
    static const long ok[] = {200, 204, 404, 0};
    char *scope = arm_scope(c, err),
         *url = prov_fmt(err,
                         "%s%s/providers/Microsoft.Authorization/roleAssignments/%s?api-version=" ARM_ROLES_API,
                         c->ep->arm, s->extra, s->version);
    kvr_http_response hr;
    long status = 0;
    int rc = KVR_ENOMEM;
    kvr_http_response_init(&hr);
    if (scope && url)
        rc = send_checked(c, scope, "DELETE", url, NULL, 0, ok, "remove role assignment of app",
                          s->name, &hr, &status, err);
    kvr_http_response_release(&hr);
    free(url);
    free(scope);
    return rc;
}

static int role_create(ctxt *c, const kvr_step *s, kvr_error *err)
{
    static const long ok[] = {200, 201, 400, 409, 0};
    const kvr_vault *v = kvr_estate_vault(c->d, s->vault);
    const kvr_live_app *la = live_app(c, s->name);
    char *scope = arm_scope(c, err), *url = NULL, *def = NULL, res[600], guid[37];
    json_t *body = NULL, *resp = NULL;
    kvr_http_response hr;
    long status = 0;
    int rc = KVR_ENOMEM;
    double start = kvr_mono_s(), pause = 1;
    kvr_http_response_init(&hr);
    if (!v || !la || !la->sp_id) {
        free(scope);
        return kvr_error_set(err, KVR_ENOTFOUND,
                             "role assignment: app '%s' has no service principal yet", s->name);
    }
    kvr_plan_scope(res, sizeof(res), c->subscription, v->resource_group, v->name, s->version);
    role_guid(guid, res, s->extra, la->sp_id);
    url = prov_fmt(err, "%s%s/providers/Microsoft.Authorization/roleAssignments/%s?api-version=" ARM_ROLES_API,
              c->ep->arm, res, guid);
    def = prov_fmt(err, "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s",
              c->subscription, s->extra);
    if (!scope || !url || !def)
        goto done;
    body = json_pack("{s:{s:s,s:s,s:s,s:s}}", "properties", "roleDefinitionId", def, "principalId",
                     la->sp_id, "principalType", "ServicePrincipal", "description",
                     "managed by kvreconcile");
    if (!body)
        goto done;
    for (;;) {
        kvr_http_response_release(&hr);
        kvr_http_response_init(&hr);
        json_decref(resp);
        resp = NULL;
        rc = send_checked(c, scope, "PUT", url, body, 0, ok, "assign role to app", s->name, &hr,
                          &status, err);
        if (rc || (status != 400 && status != 409))
            goto done;
        const char *code = arm_error_code(&resp, &hr);
        if (status == 409) {
            /* RoleAssignmentExists under another name: the grant is there, which is what
             * matters. */
            if (!code || strcmp(code, "RoleAssignmentExists") != 0)
                rc = kvr_error_set(err, KVR_ECONFLICT, "assign role to app '%s': http 409 %s",
                                   s->name, code ? code : "Conflict");
            goto done;
        }
        if (!code || strcmp(code, "PrincipalNotFound") != 0) {
            rc = kvr_http_error(err, &hr, "assign role to app", s->name);
            goto done;
        }
        rc = sp_exists(c, la->sp_id, s->name, err);
        if (rc < 0)
            goto done;
        if (rc == 0) {
            rc = kvr_error_set(err, KVR_ENOTFOUND,
                               "assign role to app '%s': its service principal '%s' does not "
                               "exist in the directory (Azure: PrincipalNotFound)",
                               s->name, la->sp_id);
            goto done;
        }
        if (kvr_mono_s() - start + pause > ROLE_PRINCIPAL_WAIT_S) {
            rc = kvr_error_set(err, KVR_ENOTFOUND,
                               "assign role to app '%s': Azure RBAC still does not know its "
                               "service principal '%s' after %.0f s (PrincipalNotFound: the "
                               "directory has not replicated it yet); run apply again later",
                               s->name, la->sp_id, kvr_mono_s() - start);
            goto done;
        }
        kvr_sleep_s(pause);
        pause = pause < 8 ? pause * 2 : 8;
    }
done:
    kvr_http_response_release(&hr);
    json_decref(body);
    json_decref(resp);
    free(scope);
    free(url);
    free(def);
    return rc;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int kvr_step_run(const kvr_step_ctx *c, const kvr_step *s, kvr_error *err)
{
    const kvr_key *k;
    const kvr_live_secret *stored;
    json_t *body;
    int rc;

    switch (s->kind) {
    case KVR_STEP_VAULT_CREATE:
        return vault_put(c, s, false, err);
    case KVR_STEP_VAULT_RECOVER:
        return vault_put(c, s, true, err);
    case KVR_STEP_VAULT_UPDATE:
    case KVR_STEP_VAULT_ACCESS:
        return vault_patch(c, s, NULL, NULL, err);
    case KVR_STEP_VAULT_MARK_UNUSED:
        return vault_patch(c, s, KVR_TAG_SUPERSEDED, s->extra, err);
    case KVR_STEP_VAULT_RETIRE:
        return vault_delete(c, s, err);
    case KVR_STEP_APP_CREATE:
        return app_create(c, s, err);
    case KVR_STEP_SP_CREATE:
        return sp_create(c, s, err);
    case KVR_STEP_CRED_ADD:
        return cred_add(c, s, false, err);
    case KVR_STEP_CRED_REPLACE_ORPHAN:
        return cred_add(c, s, true, err);
    case KVR_STEP_CRED_MARK_SUPERSEDED:
        stored = s->version ? stored_copy(c->l, s->version) : NULL;
        if (!stored)
            return kvr_error_set(err, KVR_ENOTFOUND, "the stored copy of credential '%s' is gone",
                                 s->name);
        return add_tag(c, "secrets", stored->vault, stored->name, NULL, KVR_TAG_SUPERSEDED,
                       s->extra, err);
    case KVR_STEP_CRED_REMOVE:
        return cred_remove(c, s, err);
    case KVR_STEP_ROLE_CREATE:
        return role_create(c, s, err);
    case KVR_STEP_ROLE_DELETE:
        return role_delete(c, s, err);
    case KVR_STEP_KEY_CREATE:
    case KVR_STEP_KEY_NEW_VERSION:
        return key_create(c, s, err);
    case KVR_STEP_KEY_RECOVER:
        return kv_simple(c, s->vault, "POST", "deletedkeys", s->name, "/recover", "recover key",
                         err);
    case KVR_STEP_KEY_UPDATE:
        k = kvr_estate_key(c->d, s->vault, s->name);
        body = k ? json_pack("{s:o}", "key_ops", ops_json(k->ops)) : NULL;
        rc = key_patch(c, s, body, "update key", err);
        json_decref(body);
        return rc;
    case KVR_STEP_KEY_POLICY:
        k = kvr_estate_key(c->d, s->vault, s->name);
        return k ? key_policy(c, k, err)
                 : kvr_error_set(err, KVR_ENOTFOUND, "key '%s' is not declared", s->name);
    case KVR_STEP_KEY_MARK_SUPERSEDED:
        if (s->version)
            return add_tag(c, "keys", s->vault, s->name, s->version, KVR_TAG_SUPERSEDED, s->extra,
                           err);
        {
            const kvr_live_key *lk = kvr_live_key_get(c->l, s->vault, s->name);
            rc = 0;
            for (size_t i = 0; lk && i < lk->nversions && !rc; i++)
                if (!kvr_tags_get(&lk->versions[i].tags, KVR_TAG_SUPERSEDED))
                    rc = add_tag(c, "keys", s->vault, s->name, lk->versions[i].id,
                                 KVR_TAG_SUPERSEDED, s->extra, err);
            return rc;
        }
    case KVR_STEP_KEY_VERSION_DISABLE:
        body = json_pack("{s:{s:b,s:I}}", "attributes", "enabled", 0, "exp", (json_int_t)c->l->now);
        rc = key_patch(c, s, body, "disable key version", err);
        json_decref(body);
        return rc;
    case KVR_STEP_KEY_VERSION_ENABLE:
        body = json_pack("{s:{s:b}}", "attributes", "enabled", 1);
        rc = key_patch(c, s, body, "enable key version", err);
        json_decref(body);
        return rc;
    case KVR_STEP_KEY_DELETE:
        return kv_simple(c, s->vault, "DELETE", "keys", s->name, "", "delete key", err);
    case KVR_STEP_SECRET_SET:
        return secret_set(c, s, err);
    case KVR_STEP_SECRET_RECOVER:
        return kv_simple(c, s->vault, "POST", "deletedsecrets", s->name, "/recover",
                         "recover secret", err);
    case KVR_STEP_SECRET_UPDATE:
        return secret_update(c, s, err);
    case KVR_STEP_SECRET_COPY:
        return secret_copy(c, s, err);
    case KVR_STEP_COPY_VERIFY:
        /* The executor re-reads the estate after every step; the plan only keeps this step
           while a copy differs, so reaching it with copies still pending is an error. */
        return 0;
    case KVR_STEP_CERT_COPY:
        return cert_copy(c, s, err);
    case KVR_STEP_PROFILE_CREATE:
        return profile_write(c, s, true, err);
    case KVR_STEP_PROFILE_SET_CREDENTIALS:
        return profile_write(c, s, false, err);
    case KVR_STEP_PROFILE_APPLY:
        return profile_simple(c, s, "POST", "/apply", "apply profile", err);
    case KVR_STEP_PROFILE_DELETE:
        return profile_simple(c, s, "DELETE", "", "delete profile", err);
    }
    return kvr_error_set(err, KVR_EINVAL, "unknown step kind %d", (int)s->kind);
}

/* ---- probes ------------------------------------------------------------------------------- */

int kvr_access_probe(const kvr_step_ctx *c, const char *app, const char *credential,
                     const char *vault, const char *key, kvr_error *err)
{
    const kvr_live_app *la = live_app(c, app);
    kvr_value secret = {0};
    kvr_auth_config cfg;
    kvr_auth *as = NULL;
    kvr_http *http = NULL;
    char *base = NULL, *url = NULL, *cs = NULL, object[300];
    int rc;

    if (!la)
        return kvr_error_set(err, KVR_ENOTFOUND, "app '%s' does not exist", app);
    if ((rc = credential_secret(c, app, credential, &secret, err)) < 0)
        return rc;
    cs = malloc(secret.len + 1);
    if (!cs) {
        rc = kvr_error_oom(err);
        goto done;
    }
    memcpy(cs, secret.data, secret.len);
    cs[secret.len] = '\0';
    kvr_auth_config_from_env(&cfg);
    cfg.tenant_id = c->tenant;
    cfg.client_id = la->app_id;
    cfg.client_secret = cs;
    cfg.certificate_path = NULL;
    cfg.federated_token_file = NULL;
    if ((rc = kvr_http_new(&http, NULL, err)) < 0 || (rc = kvr_auth_new(&as, http, &cfg, err)) < 0)
        goto done;
    base = vault_base(c, vault, err);
    url = base ? prov_fmt(err, "%s/keys/%s/?api-version=" KV_API, base, key) : NULL;
    snprintf(object, sizeof(object), "%s/%s", vault, key);
    if (!url) {
        rc = KVR_ENOMEM;
        goto done;
    }
    {
        kvr_http_request req = {.method = "GET", .url = url, .flags = KVR_HTTP_NO_RETRY};
        kvr_http_response resp;
        int code = 0;
        kvr_http_response_init(&resp);
        rc = kvr_auth_send_kv(&resp, &code, as, &req, 1, err);
        if (!rc)
            rc = code;
        if (!rc && resp.status != 200)
            rc = kvr_http_error(err, &resp, "read key as app", object);
        kvr_http_response_release(&resp);
    }
done:
    if (cs) {
        OPENSSL_cleanse(cs, secret.len);
        free(cs);
    }
    kvr_value_release(&secret);
    kvr_auth_free(as);
    kvr_http_free(http);
    free(base);
    free(url);
    return rc;
}

int kvr_tenant_of(char **out, kvr_auth *a, const kvr_endpoints *ep, kvr_error *err)
{
    return arm_claim(out, a, ep, "tid", err);
}

/* A string claim ("tid", "oid") of the ARM token of the credential in use. */
static int arm_claim(char **out, kvr_auth *a, const kvr_endpoints *ep, const char *claim,
                     kvr_error *err)
{
    char *scope = prov_fmt(err, "%s/.default", ep->arm), *token = NULL, *dot1, *dot2, *claims;
    unsigned char *raw = NULL;
    json_t *j = NULL;
    size_t n, len;
    int rc;

    *out = NULL;
    if (!scope)
        return KVR_ENOMEM;
    rc = kvr_auth_token(&token, a, NULL, scope, err);
    free(scope);
    if (rc < 0)
        return rc;
    dot1 = strchr(token, '.');
    dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2) {
        rc = kvr_error_set(err, KVR_EPROTO, "the access token is not a JWT");
        goto done;
    }
    n = (size_t)(dot2 - dot1 - 1);
    claims = malloc(n + 4);
    raw = malloc(n + 4);
    if (!claims || !raw) {
        free(claims);
        rc = kvr_error_oom(err);
        goto done;
    }
    /* base64url to base64 with padding, then EVP_DecodeBlock */
    for (size_t i = 0; i < n; i++)
        claims[i] = dot1[1 + i] == '-' ? '+' : dot1[1 + i] == '_' ? '/' : dot1[1 + i];
    len = n;
    while (len % 4)
        claims[len++] = '=';
    claims[len] = '\0';
    {
        int dec = EVP_DecodeBlock(raw, (const unsigned char *)claims, (int)len);
        free(claims);
        if (dec < 0) {
            rc = kvr_error_set(err, KVR_EPROTO, "the access token's claims are not base64url");
            goto done;
        }
        while (dec > 0 && raw[dec - 1] == '\0')
            dec--;
        j = json_loadb((const char *)raw, (size_t)dec, 0, NULL);
    }
    if (!json_is_string(json_object_get(j, claim))) {
        rc = kvr_error_set(err, KVR_EPROTO, "the access token has no '%s' claim", claim);
        goto done;
    }
    *out = strdup(json_string_value(json_object_get(j, claim)));
    rc = *out ? 0 : kvr_error_oom(err);
done:
    json_decref(j);
    free(raw);
    kvr_azure_secret_free(token);
    return rc;
}
