/*
 * azsim_dependents.c - the Azure resources that use a key vault from outside it, and Azure
 * Resource Graph over them: what kvreconcile's discovery (reconciler/providers/azure/
 * dependents.c) reads before it retires a key version, key, secret or vault.
 *
 * ARM, in each provider's own shapes and api-versions (azure-rest-api-specs, resource-manager):
 *   Microsoft.Storage/storageAccounts      properties.encryption {keySource, keyvaultproperties
 *                                          {keyname, keyversion, keyvaulturi, and the read-only
 *                                          currentVersionedKeyIdentifier}}  (storage.json)
 *   Microsoft.Compute/diskEncryptionSets   properties.activeKey {sourceVault.id, keyUrl},
 *                                          rotationToLatestKeyVersionEnabled  (DiskRP diskRPCommon)
 *   Microsoft.Sql/servers                  properties.keyId: the TDE protector's key (servers.json)
 *   Microsoft.DocumentDB/databaseAccounts  properties.keyVaultKeyUri  (cosmos-db.json)
 *   Microsoft.Web/sites                    sites, config/appsettings (PUT, POST list) and
 *                                          config/configreferences/appsettings: the Key Vault
 *                                          references App Service resolved (WebApps.json)
 * PUT (create or replace; answered 200, finished, which every one of those specs allows), GET,
 * DELETE, and list by resource group and by subscription, authorized by azsim's RBAC like the
 * rest of ARM.
 *
 * Resource Graph: POST /providers/Microsoft.ResourceGraph/resources (resourcegraph.json: the
 * QueryRequest {subscriptions, query, options {$top, $skip, $skipToken, resultFormat}} and
 * QueryResponse {totalRecords, count, resultTruncated, $skipToken, data, facets}). azsim has no
 * KQL engine: it answers the query kvreconcile sends (the same text, whitespace aside) by
 * evaluating it over the resources above, and any other query with Resource Graph's 400
 * InvalidQuery, saying that azsim does not know it. Rows are what the caller may read.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The query of reconciler/providers/azure/dependents.c (kvr__dependents_query). */
static const char KVR_QUERY[] =
    "resources"
    " | where (type =~ 'microsoft.storage/storageaccounts' and properties.encryption.keySource =~ "
    "'Microsoft.Keyvault')"
    " or (type =~ 'microsoft.compute/diskencryptionsets' and isnotempty(properties.activeKey.keyUrl))"
    " or (type =~ 'microsoft.sql/servers' and isnotempty(properties.keyId))"
    " or (type =~ 'microsoft.documentdb/databaseaccounts' and isnotempty(properties.keyVaultKeyUri))"
    " or (type =~ 'microsoft.web/sites' and isnotempty(identity))"
    " | project id, name, type, properties"
    " | order by id asc";

enum { T_STORAGE, T_DES, T_SQL, T_COSMOS, T_SITES, T_COUNT };

/* Stable api-versions of each provider's specification folders (oldest first); as azsim does
 * for its other services (azsim_apiversions.c), a well-formed date newer than all is served too. */
static const char *const V_STORAGE[] = {"2019-06-01", "2021-01-01", "2021-04-01", "2021-06-01",
                                        "2021-08-01", "2021-09-01", "2022-05-01", "2022-09-01",
                                        "2023-01-01", "2023-04-01", "2023-05-01", "2024-01-01",
                                        "2025-01-01", NULL};
static const char *const V_DES[] = {"2019-07-01", "2020-05-01", "2020-06-30", "2020-09-30",
                                    "2020-12-01", "2021-04-01", "2021-08-01", "2021-12-01",
                                    "2022-03-02", "2022-07-02", "2023-01-02", "2023-04-02",
                                    "2023-10-02", "2024-03-02", "2025-01-02", NULL};
static const char *const V_SQL[] = {"2014-04-01", "2021-11-01", "2023-08-01", NULL};
static const char *const V_COSMOS[] = {"2021-04-15", "2021-10-15", "2022-05-15", "2022-08-15",
                                       "2022-11-15", "2023-03-15", "2023-04-15", "2023-09-15",
                                       "2023-11-15", "2024-05-15", "2024-08-15", "2024-11-15",
                                       "2025-04-15", NULL};
static const char *const V_WEB[] = {"2020-12-01", "2021-02-01", "2021-03-01", "2022-03-01",
                                    "2022-09-01", "2023-01-01", "2023-12-01", "2024-04-01",
                                    "2024-11-01", NULL};
static const char *const V_ARG[] = {"2019-04-01", "2021-03-01", "2022-10-01", "2024-04-01", NULL};

static const struct {
    const char *ns, *type, *full, *noun;
    const char *const *versions;
} TYPES[T_COUNT] = {
    {"Microsoft.Storage", "storageAccounts", "Microsoft.Storage/storageAccounts", "storage account",
     V_STORAGE},
    {"Microsoft.Compute", "diskEncryptionSets", "Microsoft.Compute/diskEncryptionSets",
     "disk encryption set", V_DES},
    {"Microsoft.Sql", "servers", "Microsoft.Sql/servers", "server", V_SQL},
    {"Microsoft.DocumentDB", "databaseAccounts", "Microsoft.DocumentDB/databaseAccounts",
     "database account", V_COSMOS},
    {"Microsoft.Web", "sites", "Microsoft.Web/sites", "site", V_WEB},
};

/* One stored resource: {"resource": the ARM body as served, "appSettings": {...} (sites)}. */

static azsim_vec resources; /* json_t*; guarded by the state lock, like all state */

static int dep_error(azsim_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int dep_error(azsim_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    azsim_set_header(r, "x-ms-failure-cause", "gateway");
    return azsim_reply_json(r, status,
                            json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

static int is_date_version(const char *v)
{
    if (strlen(v) < 10)
        return 0;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? v[i] != '-' : !isdigit((unsigned char)v[i]))
            return 0;
    return v[10] == '\0' || strncmp(v + 10, "-preview", 8) == 0;
}

/* 0 when the api-version is served; else answered (ARM's 400 for a provider's type). */
static int check_api(azsim_req *r, const char *const *versions, const char *type)
{
    const char *v = azsim_query(r, "api-version");
    size_t n = 0;
    char list[1024] = "";
    if (!v || !*v) {
        dep_error(r, 400, "MissingApiVersionParameter",
                  "The api-version query parameter (?api-version=) is required for all requests.");
        return -1;
    }
    for (; versions[n]; n++)
        if (strcmp(versions[n], v) == 0)
            return 0;
    if (!r->st->strict_api_versions && is_date_version(v) && strncmp(v, versions[n - 1], 10) > 0)
        return 0; /* a release azsim has not caught up with: the newest shapes */
    for (size_t i = 0; i < n; i++) {
        size_t o = strlen(list);
        snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", versions[i]);
    }
    dep_error(r, 400, "NoRegisteredProviderFound",
              "No registered resource provider found for location 'global' and API version '%s' "
              "for type '%s'. The supported api-versions are '%s'.",
              v, type, list);
    return -1;
}

static json_t *stored_find(const char *id, size_t *at)
{
    for (size_t i = 0; i < resources.n; i++) {
        json_t *res = json_object_get(resources.items[i], "resource");
        if (azsim_streq_ci(json_string_value(json_object_get(res, "id")), id)) {
            if (at)
                *at = i;
            return resources.items[i];
        }
    }
    return NULL;
}

static int rg_exists(azsim_state *st, const char *sub, const char *rg)
{
    for (size_t i = 0; i < st->rgs.n; i++) {
        azsim_rg *g = st->rgs.items[i];
        if (azsim_streq_ci(g->sub, sub) && azsim_streq_ci(g->name, rg))
            return 1;
    }
    return 0;
}

/* Key Vault's view of "https://VAULT.HOST/keys/KEY[/VERSION]": the version a versionless
 * reference resolves to now (the key's latest), or NULL. */
static const char *key_latest(azsim_state *st, const char *vault, size_t vlen, const char *key)
{
    for (size_t i = 0; i < st->vaults.n; i++) {
        azsim_vault *v = st->vaults.items[i];
        if (v->deleted || strlen(v->name) != vlen || strncasecmp(v->name, vault, vlen) != 0)
            continue;
        for (size_t k = 0; k < v->keys.n; k++) {
            azsim_kv_object *o = v->keys.items[k];
            if (!o->deleted && azsim_streq_ci(o->name, key) && o->versions.n)
                return ((azsim_kv_version *)o->versions.items[o->versions.n - 1])->id;
        }
    }
    return NULL;
}

static void identity_fill(azsim_state *st, json_t *res)
{
    json_t *id = json_object_get(res, "identity");
    const char *type = json_string_value(json_object_get(id, "type"));
    char guid[AZSIM_GUID_LEN + 1];
    if (!type || !strstr(type, "SystemAssigned") || json_object_get(id, "principalId"))
        return;
    azsim_guid(st, guid);
    json_object_set_new(id, "principalId", json_string(guid));
    json_object_set_new(id, "tenantId", json_string(st->tenant));
}

/* The read-only properties each provider adds to what was PUT. */
static void fill(azsim_state *st, int t, json_t *res, const char *name, json_t *old)
{
    json_t *p = json_object_get(res, "properties");
    char now[32];
    azsim_iso8601(now, azsim_now(st));
    if (!json_is_object(p)) {
        p = json_object();
        json_object_set_new(res, "properties", p);
    }
    identity_fill(st, res);
    if (old && json_object_get(old, "identity") && !json_object_get(res, "identity"))
        json_object_set(res, "identity", json_object_get(old, "identity"));
    switch (t) {
    case T_STORAGE: {
        json_t *enc = json_object_get(p, "encryption");
        json_t *kvp = json_object_get(enc, "keyvaultproperties");
        const char *uri = json_string_value(json_object_get(kvp, "keyvaulturi"));
        const char *kn = json_string_value(json_object_get(kvp, "keyname"));
        const char *kv = json_string_value(json_object_get(kvp, "keyversion"));
        if (!json_object_get(res, "kind"))
            json_object_set_new(res, "kind", json_string("StorageV2"));
        json_object_set_new(p, "provisioningState", json_string("Succeeded"));
        if (!json_object_get(p, "creationTime"))
            json_object_set_new(p, "creationTime", json_string(now));
        if (!enc) {
            enc = json_pack("{s:s}", "keySource", "Microsoft.Storage");
            json_object_set_new(p, "encryption", enc);
        }
        if (uri && kn && strncasecmp(uri, "https://", 8) == 0) {
            const char *host = uri + 8;
            size_t vlen = strcspn(host, ".:/");
            const char *ver = kv && *kv ? kv : key_latest(st, host, vlen, kn);
            char *cur = ver ? azsim_printf("%s%skeys/%s/%s", uri,
                                           uri[strlen(uri) - 1] == '/' ? "" : "/", kn, ver)
                            : NULL;
            if (cur)
                json_object_set_new(kvp, "currentVersionedKeyIdentifier", json_string(cur));
            json_object_set_new(kvp, "lastKeyRotationTimestamp", json_string(now));
            free(cur);
        }
        break;
    }
    case T_DES:
        if (!json_object_get(p, "encryptionType"))
            json_object_set_new(p, "encryptionType",
                                json_string("EncryptionAtRestWithCustomerKey"));
        if (!json_object_get(p, "rotationToLatestKeyVersionEnabled"))
            json_object_set_new(p, "rotationToLatestKeyVersionEnabled", json_false());
        if (!json_object_get(p, "previousKeys"))
            json_object_set_new(p, "previousKeys", json_array());
        json_object_set_new(p, "provisioningState", json_string("Succeeded"));
        break;
    case T_SQL: {
        char *fqdn = azsim_printf("%s.database.windows.net", name);
        if (!json_object_get(res, "kind"))
            json_object_set_new(res, "kind", json_string("v12.0"));
        if (!json_object_get(p, "version"))
            json_object_set_new(p, "version", json_string("12.0"));
        json_object_set_new(p, "state", json_string("Ready"));
        if (fqdn)
            json_object_set_new(p, "fullyQualifiedDomainName", json_string(fqdn));
        free(fqdn);
        json_object_del(p, "administratorLoginPassword"); /* never returned */
        break;
    }
    case T_COSMOS: {
        char *ep = azsim_printf("https://%s.documents.azure.com:443/", name);
        if (!json_object_get(res, "kind"))
            json_object_set_new(res, "kind", json_string("GlobalDocumentDB"));
        if (!json_object_get(p, "databaseAccountOfferType"))
            json_object_set_new(p, "databaseAccountOfferType", json_string("Standard"));
        if (ep)
            json_object_set_new(p, "documentEndpoint", json_string(ep));
        free(ep);
        json_object_set_new(p, "provisioningState", json_string("Succeeded"));
        break;
    }
    case T_SITES: {
        char *host = azsim_printf("%s.azurewebsites.net", name);
        if (!json_object_get(res, "kind"))
            json_object_set_new(res, "kind", json_string("app"));
        json_object_set_new(p, "state", json_string("Running"));
        json_object_set_new(p, "enabled", json_true());
        if (host) {
            json_object_set_new(p, "defaultHostName", json_string(host));
            json_object_set_new(p, "hostNames", json_pack("[s]", host));
        }
        free(host);
        if (!json_object_get(p, "keyVaultReferenceIdentity"))
            json_object_set_new(p, "keyVaultReferenceIdentity", json_string("SystemAssigned"));
        break;
    }
    }
}

static int res_put(azsim_req *r, int t, const char *sub, const char *rg, const char *name,
                   const char *id)
{
    json_t *body = azsim_body_json(r), *res, *old = stored_find(id, NULL), *entry;
    const char *loc = json_string_value(json_object_get(body, "location"));
    int rc;
    if (!json_is_object(body) || !loc) {
        json_decref(body);
        return dep_error(r, 400, "InvalidRequestContent",
                         "The request content was invalid and could not be deserialized: a %s "
                         "needs an object with 'location'.",
                         TYPES[t].noun);
    }
    if (!rg_exists(r->st, sub, rg)) {
        json_decref(body);
        return dep_error(r, 404, "ResourceGroupNotFound", "Resource group '%s' could not be found.",
                         rg);
    }
    res = json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", id, "name", name, "type", TYPES[t].full,
                    "location", loc, "tags",
                    json_is_object(json_object_get(body, "tags"))
                        ? json_deep_copy(json_object_get(body, "tags"))
                        : json_object());
    for (const char *const *k =
             (const char *const[]){"properties", "identity", "kind", "sku", NULL};
         *k; k++)
        if (json_object_get(body, *k))
            json_object_set(res, *k, json_object_get(body, *k));
    json_decref(body);
    if (!res)
        return AZSIM_ENOMEM;
    if (json_is_object(json_object_get(res, "properties")))
        json_object_set_new(res, "properties", json_deep_copy(json_object_get(res, "properties")));
    if (json_object_get(res, "identity"))
        json_object_set_new(res, "identity", json_deep_copy(json_object_get(res, "identity")));
    fill(r->st, t, res, name, old ? json_object_get(old, "resource") : NULL);
    if (old) {
        json_object_set(old, "resource", res);
    } else {
        entry = json_pack("{s:O,s:{}}", "resource", res, "appSettings");
        if (!entry || azsim_vec_push(&resources, entry) != AZSIM_OK) {
            json_decref(entry);
            json_decref(res);
            return AZSIM_ENOMEM;
        }
    }
    rc = azsim_reply_json(r, 200, json_deep_copy(res));
    json_decref(res);
    return rc;
}

static int not_found(azsim_req *r, int t, const char *rg, const char *name)
{
    return dep_error(r, 404, "ResourceNotFound",
                     "The Resource '%s/%s' under resource group '%s' was not found. For more "
                     "details please go to https://aka.ms/ARMResourceNotFoundFix",
                     TYPES[t].full, name, rg);
}

/* A Key Vault reference ("@Microsoft.KeyVault(SecretUri=...)" or "(VaultName=..;SecretName=..
 * [;SecretVersion=..])") as App Service resolves it: a configreferences item, or NULL. */
static json_t *kv_reference(azsim_state *st, const char *site_id, const char *key,
                            const char *value, const char *identity_type)
{
    static const char pre[] = "@Microsoft.KeyVault(";
    char vault[128] = "", secret[128] = "", version[64] = "";
    const char *in, *end;
    const char *status = "Resolved";
    if (!value || strncasecmp(value, pre, sizeof(pre) - 1) != 0)
        return NULL;
    in = value + sizeof(pre) - 1;
    if (!(end = strrchr(in, ')')))
        return NULL;
    if (strncasecmp(in, "SecretUri=", 10) == 0) {
        const char *u = in + 10, *p;
        if (strncasecmp(u, "https://", 8) != 0)
            status = "InvalidSyntax";
        else {
            u += 8;
            snprintf(vault, sizeof(vault), "%.*s", (int)strcspn(u, ".:/"), u);
            p = strstr(u, "/secrets/");
            if (!p || p > end)
                status = "InvalidSyntax";
            else {
                p += 9;
                snprintf(secret, sizeof(secret), "%.*s", (int)strcspn(p, "/)"), p);
                p += strcspn(p, "/)");
                if (*p == '/' && p[1] != ')')
                    snprintf(version, sizeof(version), "%.*s", (int)strcspn(p + 1, "/)"), p + 1);
            }
        }
    } else {
        for (const char *p = in; p < end;) {
            size_t n = strcspn(p, ";)");
            if (strncasecmp(p, "VaultName=", 10) == 0)
                snprintf(vault, sizeof(vault), "%.*s", (int)(n - 10), p + 10);
            else if (strncasecmp(p, "SecretName=", 11) == 0)
                snprintf(secret, sizeof(secret), "%.*s", (int)(n - 11), p + 11);
            else if (strncasecmp(p, "SecretVersion=", 14) == 0)
                snprintf(version, sizeof(version), "%.*s", (int)(n - 14), p + 14);
            p += n + (p[n] == ';');
        }
        if (!*vault || !*secret)
            status = "InvalidSyntax";
    }
    if (strcmp(status, "Resolved") == 0) {
        azsim_vault *v = azsim_vault_find(st, vault);
        int found = 0;
        if (!identity_type)
            status = "MSINotEnabled";
        else if (!v || v->deleted)
            status = "VaultNotFound";
        else {
            for (size_t i = 0; i < v->secrets.n && !found; i++) {
                azsim_kv_object *o = v->secrets.items[i];
                found = !o->deleted && azsim_streq_ci(o->name, secret);
            }
            if (!found)
                status = "SecretNotFound";
        }
    }
    char *id = azsim_printf("%s/config/configreferences/appsettings/%s", site_id, key);
    json_t *props = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "reference", value, "status", status,
                              "vaultName", vault, "secretName", secret, "source", "KeyVault",
                              "location", "ApplicationSetting");
    if (props && *version)
        json_object_set_new(props, "secretVersion", json_string(version));
    if (props && identity_type)
        json_object_set_new(props, "identityType", json_string(identity_type));
    json_t *item =
        id && props ? json_pack("{s:s,s:s,s:s,s:O}", "id", id, "name", key, "type",
                                "Microsoft.Web/sites/config/configreferences", "properties", props)
                    : NULL;
    free(id);
    json_decref(props);
    return item;
}

/* .../sites/NAME/config/...: appsettings (PUT), appsettings/list (POST),
 * configreferences/appsettings (GET). */
static int site_config(azsim_req *r, json_t *entry, const char *scope, const azsim_caller *caller,
                       char **s, size_t n)
{
    json_t *site = json_object_get(entry, "resource");
    const char *id = json_string_value(json_object_get(site, "id"));
    const char *m = r->method;
    if (n == 10 && azsim_streq_ci(s[9], "appsettings") && strcmp(m, "PUT") == 0) {
        json_t *body = azsim_body_json(r), *props = json_object_get(body, "properties");
        const char *k;
        json_t *v;
        r->op = "arm.sites.config.appsettings.put";
        if (!azsim_rbac_allows(r->st, caller->oid, scope, "Microsoft.Web/sites/config/write", 0,
                               1)) {
            json_decref(body);
            return dep_error(r, 403, "AuthorizationFailed",
                             "The client '%s' does not have authorization to perform action "
                             "'Microsoft.Web/sites/config/write' over scope '%s'.",
                             caller->oid, scope);
        }
        if (!json_is_object(props)) {
            json_decref(body);
            return dep_error(r, 400, "BadRequest", "The app settings must be {\"properties\":{}}.");
        }
        json_object_foreach(props, k, v) if (!json_is_string(v))
        {
            json_decref(body);
            return dep_error(r, 400, "BadRequest", "App setting '%s' must be a string.", k);
        }
        json_object_set(entry, "appSettings", props);
        json_decref(body);
    } else if (n == 11 && azsim_streq_ci(s[9], "appsettings") && azsim_streq_ci(s[10], "list") &&
               strcmp(m, "POST") == 0) {
        r->op = "arm.sites.config.appsettings.list";
        if (!azsim_rbac_allows(r->st, caller->oid, scope, "Microsoft.Web/sites/config/list/action",
                               0, 1))
            return dep_error(r, 403, "AuthorizationFailed",
                             "The client '%s' does not have authorization to perform action "
                             "'Microsoft.Web/sites/config/list/action' over scope '%s'.",
                             caller->oid, scope);
    } else if (n == 11 && azsim_streq_ci(s[9], "configreferences") &&
               azsim_streq_ci(s[10], "appsettings") && strcmp(m, "GET") == 0) {
        json_t *value = json_array();
        const char *k;
        json_t *v;
        const char *itype =
            json_string_value(json_object_get(json_object_get(site, "identity"), "type"));
        r->op = "arm.sites.config.configreferences.list";
        if (!azsim_rbac_allows(r->st, caller->oid, scope, "Microsoft.Web/sites/config/read", 0, 1))
            return dep_error(r, 403, "AuthorizationFailed",
                             "The client '%s' does not have authorization to perform action "
                             "'Microsoft.Web/sites/config/read' over scope '%s'.",
                             caller->oid, scope);
        if (itype && azsim_streq_ci(itype, "None"))
            itype = NULL;
        json_object_foreach(json_object_get(entry, "appSettings"), k, v)
        {
            json_t *item = kv_reference(r->st, id, k, json_string_value(v), itype);
            if (item)
                json_array_append_new(value, item);
        }
        return azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
    } else {
        return dep_error(r, 404, "NotFound",
                         "The requested resource path is not supported by azsim.");
    }
    char *cid = azsim_printf("%s/config/appsettings", id);
    int rc = azsim_reply_json(r, 200,
                              json_pack("{s:s,s:s,s:s,s:O}", "id", cid ? cid : "", "name",
                                        "appsettings", "type", "Microsoft.Web/sites/config",
                                        "properties", json_object_get(entry, "appSettings")));
    free(cid);
    return rc;
}

static int type_of(const char *ns, const char *type)
{
    for (int t = 0; t < T_COUNT; t++)
        if (azsim_streq_ci(ns, TYPES[t].ns) && azsim_streq_ci(type, TYPES[t].type))
            return t;
    return -1;
}

static int list(azsim_req *r, int t, const char *sub, const char *rg, const azsim_caller *caller)
{
    json_t *value = json_array();
    char *action = azsim_printf("%s/read", TYPES[t].full);
    r->op = "arm.dependents.list";
    if (!value || !action) {
        json_decref(value);
        free(action);
        return AZSIM_ENOMEM;
    }
    if (rg && !rg_exists(r->st, sub, rg)) {
        json_decref(value);
        free(action);
        return dep_error(r, 404, "ResourceGroupNotFound", "Resource group '%s' could not be found.",
                         rg);
    }
    for (size_t i = 0; i < resources.n; i++) {
        json_t *res = json_object_get(resources.items[i], "resource");
        const char *id = json_string_value(json_object_get(res, "id"));
        char *prefix = rg ? azsim_printf("/subscriptions/%s/resourceGroups/%s/", sub, rg)
                          : azsim_printf("/subscriptions/%s/", sub);
        if (prefix && strncasecmp(id, prefix, strlen(prefix)) == 0 &&
            azsim_streq_ci(json_string_value(json_object_get(res, "type")), TYPES[t].full) &&
            azsim_rbac_allows(r->st, caller->oid, id, action, 0, 1))
            json_array_append_new(value, json_deep_copy(res));
        free(prefix);
    }
    free(action);
    return azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
}

/* ---- Resource Graph ---------------------------------------------------------------------- */

static char *squeeze(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    int space = 0;
    if (!out)
        return NULL;
    for (; *s; s++) {
        if (isspace((unsigned char)*s)) {
            space = o != out;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = 0;
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static const char *path_str(const json_t *o, const char *a, const char *b, const char *c)
{
    const json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_string_value(v);
}

/* The where clause of KVR_QUERY, for one resource. */
static int matches(const json_t *res)
{
    const char *type = json_string_value(json_object_get(res, "type"));
    const json_t *p = json_object_get(res, "properties");
    const char *v;
    int t = -1;
    for (int i = 0; type && i < T_COUNT; i++)
        if (azsim_streq_ci(type, TYPES[i].full))
            t = i;
    switch (t) {
    case T_STORAGE:
        return azsim_streq_ci(path_str(p, "encryption", "keySource", NULL), "Microsoft.Keyvault");
    case T_DES:
        return (v = path_str(p, "activeKey", "keyUrl", NULL)) && *v;
    case T_SQL:
        return (v = path_str(p, "keyId", NULL, NULL)) && *v;
    case T_COSMOS:
        return (v = path_str(p, "keyVaultKeyUri", NULL, NULL)) && *v;
    case T_SITES: {
        const json_t *id = json_object_get(res, "identity");
        return json_is_object(id) && json_object_size(id) > 0;
    }
    }
    return 0;
}

static int by_id(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "id")),
                  json_string_value(json_object_get(y, "id")));
}

static int graph_error(azsim_req *r, const char *code, const char *msg)
{
    char guid[AZSIM_GUID_LEN + 1];
    char *top;
    azsim_guid(r->st, guid);
    top = azsim_printf("Please provide below info when asking for support: timestamp = %lld, "
                       "correlationId = %s.",
                       (long long)azsim_now(r->st), guid);
    int rc = azsim_reply_json(r, 400,
                              json_pack("{s:{s:s,s:s,s:[{s:s,s:s}]}}", "error", "code",
                                        "BadRequest", "message", top ? top : "", "details", "code",
                                        code, "message", msg));
    free(top);
    return rc;
}

static int graph_query(azsim_req *r, const azsim_caller *caller)
{
    json_t *body, *subs, *opts, *rows = NULL, *data = NULL;
    const char *q, *fmt, *tok;
    char *want = NULL, *got = NULL;
    json_int_t top = 100, skip = 0;
    size_t total = 0;
    int rc = AZSIM_OK;

    r->op = "arm.resourceGraph.resources";
    if (check_api(r, V_ARG, "resources") != 0)
        return AZSIM_OK;
    if (strcmp(r->method, "POST") != 0)
        return dep_error(r, 405, "MethodNotAllowed", "Resource Graph queries are POSTed.");
    body = azsim_body_json(r);
    q = json_string_value(json_object_get(body, "query"));
    subs = json_object_get(body, "subscriptions");
    opts = json_object_get(body, "options");
    if (!q) {
        json_decref(body);
        return graph_error(r, "InvalidQuery", "The request must carry a 'query' string.");
    }
    want = squeeze(KVR_QUERY);
    got = squeeze(q);
    if (!want || !got) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (strcmp(want, got) != 0) {
        rc = graph_error(r, "InvalidQuery",
                         "Query is invalid. Please refer to the documentation for the Azure "
                         "Resource Graph service and fix the error before retrying. (azsim "
                         "answers only the query kvreconcile sends to discover a vault's "
                         "dependents.)");
        goto done;
    }
    fmt = json_string_value(json_object_get(opts, "resultFormat"));
    if (fmt && !azsim_streq_ci(fmt, "objectArray")) {
        rc = graph_error(r, "UnsupportedResultFormat",
                         "azsim answers resultFormat 'objectArray' only.");
        goto done;
    }
    if (json_is_integer(json_object_get(opts, "$top")))
        top = json_integer_value(json_object_get(opts, "$top"));
    if (json_is_integer(json_object_get(opts, "$skip")))
        skip = json_integer_value(json_object_get(opts, "$skip"));
    if (top < 1 || top > 1000 || skip < 0) {
        rc = graph_error(r, "InvalidQueryOptions",
                         "$top must be between 1 and 1000 and $skip not negative.");
        goto done;
    }
    if ((tok = json_string_value(json_object_get(opts, "$skipToken")))) {
        unsigned char *raw = NULL;
        size_t len = 0;
        long long n;
        char buf[32];
        if (azsim_b64url_decode(&raw, &len, tok) != AZSIM_OK || len >= sizeof(buf)) {
            free(raw);
            rc = graph_error(r, "InvalidSkipToken", "The $skipToken is not one azsim issued.");
            goto done;
        }
        memcpy(buf, raw, len);
        buf[len] = '\0';
        free(raw);
        if (sscanf(buf, "skip:%lld", &n) != 1 || n < 0) {
            rc = graph_error(r, "InvalidSkipToken", "The $skipToken is not one azsim issued.");
            goto done;
        }
        skip = n;
    }
    rows = json_array();
    data = json_array();
    for (size_t i = 0; rows && i < resources.n; i++) {
        json_t *res = json_object_get(resources.items[i], "resource");
        const char *id = json_string_value(json_object_get(res, "id"));
        int in_subs = !json_is_array(subs) || json_array_size(subs) == 0;
        char *action;
        for (size_t k = 0; !in_subs && k < json_array_size(subs); k++) {
            const char *sub = json_string_value(json_array_get(subs, k));
            in_subs =
                sub && strncasecmp(id + 15, sub, strlen(sub)) == 0 && id[15 + strlen(sub)] == '/';
        }
        if (!in_subs || !matches(res))
            continue;
        action = azsim_printf("%s/read", json_string_value(json_object_get(res, "type")));
        if (action && azsim_rbac_allows(r->st, caller->oid, id, action, 0, 1))
            json_array_append(rows, res);
        free(action);
    }
    if (!rows || !data) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    total = json_array_size(rows);
    {
        json_t **v = calloc(total ? total : 1, sizeof(*v));
        if (!v) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < total; i++)
            v[i] = json_array_get(rows, i);
        qsort(v, total, sizeof(*v), by_id);
        for (size_t i = (size_t)skip; i < total && i < (size_t)(skip + top); i++) {
            char *low = strdup(json_string_value(json_object_get(v[i], "type")));
            for (char *c = low; c && *c; c++)
                *c = (char)tolower((unsigned char)*c);
            json_array_append_new(
                data, json_pack("{s:O,s:O,s:s,s:O}", "id", json_object_get(v[i], "id"), "name",
                                json_object_get(v[i], "name"), "type", low ? low : "", "properties",
                                json_object_get(v[i], "properties")));
            free(low);
        }
        free(v);
    }
    {
        json_t *out = json_pack("{s:I,s:I,s:s,s:[],s:O}", "totalRecords", (json_int_t)total,
                                "count", (json_int_t)json_array_size(data), "resultTruncated",
                                "false", "facets", "data", data);
        if (out && (size_t)(skip + top) < total) {
            char next[32];
            snprintf(next, sizeof(next), "skip:%lld", (long long)(skip + top));
            char *t = azsim_b64url((const unsigned char *)next, strlen(next));
            if (t)
                json_object_set_new(out, "$skipToken", json_string(t));
            free(t);
        }
        rc = out ? azsim_reply_json(r, 200, out) : AZSIM_ENOMEM;
    }
done:
    json_decref(rows);
    json_decref(data);
    json_decref(body);
    free(want);
    free(got);
    return rc;
}

/* ---- routing ------------------------------------------------------------------------------ */

int azsim_dependents_route(azsim_req *r, const azsim_caller *caller, int *handled)
{
    char **s = r->segs;
    size_t n = r->nsegs;
    int t;
    *handled = 0;
    if (n == 3 && azsim_streq_ci(s[0], "providers") &&
        azsim_streq_ci(s[1], "Microsoft.ResourceGraph") && azsim_streq_ci(s[2], "resources")) {
        *handled = 1;
        return graph_query(r, caller);
    }
    if (n < 5 || !azsim_streq_ci(s[0], "subscriptions") ||
        !azsim_streq_ci(s[1], r->st->subscription))
        return AZSIM_OK;
    /* /subscriptions/S/providers/NS/TYPE: list by subscription */
    if (n == 5 && azsim_streq_ci(s[2], "providers") && (t = type_of(s[3], s[4])) >= 0) {
        *handled = 1;
        if (check_api(r, TYPES[t].versions, TYPES[t].type) != 0)
            return AZSIM_OK;
        if (strcmp(r->method, "GET") != 0)
            return dep_error(r, 405, "MethodNotAllowed", "azsim lists %s with GET only.",
                             TYPES[t].type);
        return list(r, t, r->st->subscription, NULL, caller);
    }
    if (n < 7 || !azsim_streq_ci(s[2], "resourceGroups") || !azsim_streq_ci(s[4], "providers") ||
        (t = type_of(s[5], s[6])) < 0)
        return AZSIM_OK;
    *handled = 1;
    r->op = "arm.dependents";
    if (check_api(r, TYPES[t].versions, TYPES[t].type) != 0)
        return AZSIM_OK;
    if (n == 7) {
        if (strcmp(r->method, "GET") != 0)
            return dep_error(r, 405, "MethodNotAllowed", "azsim lists %s with GET only.",
                             TYPES[t].type);
        return list(r, t, r->st->subscription, s[3], caller);
    }
    char *id = azsim_printf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s/%s",
                            r->st->subscription, s[3], TYPES[t].ns, TYPES[t].type, s[7]);
    char *action = NULL;
    size_t at = 0;
    json_t *entry;
    int rc = AZSIM_OK;
    if (!id)
        return AZSIM_ENOMEM;
    entry = stored_find(id, &at);
    if (n > 8) {
        if (t != T_SITES || !azsim_streq_ci(s[8], "config") || n < 10)
            rc = dep_error(r, 404, "NotFound",
                           "The requested resource path is not supported by azsim.");
        else if (!entry)
            rc = not_found(r, t, s[3], s[7]);
        else
            rc = site_config(r, entry, id, caller, s, n);
        free(id);
        return rc;
    }
    const char *m = r->method;
    const char *verb = strcmp(m, "PUT") == 0      ? "write"
                       : strcmp(m, "DELETE") == 0 ? "delete"
                       : strcmp(m, "GET") == 0    ? "read"
                                                  : NULL;
    if (!verb) {
        free(id);
        return dep_error(r, 405, "MethodNotAllowed", "azsim does not support %s on %s.", m,
                         TYPES[t].type);
    }
    action = azsim_printf("%s/%s", TYPES[t].full, verb);
    if (!action) {
        free(id);
        return AZSIM_ENOMEM;
    }
    if (!azsim_rbac_allows(r->st, caller->oid, id, action, 0, 1)) {
        rc = dep_error(r, 403, "AuthorizationFailed",
                       "The client '%s' with object id '%s' does not have authorization to "
                       "perform action '%s' over scope '%s' or the scope is invalid.",
                       caller->oid, caller->oid, action, id);
    } else if (strcmp(verb, "write") == 0) {
        r->op = "arm.dependents.put";
        rc = res_put(r, t, r->st->subscription, s[3], s[7], id);
        if (rc == AZSIM_OK)
            azsim_state_save(r->st);
    } else if (strcmp(verb, "read") == 0) {
        r->op = "arm.dependents.get";
        rc = entry ? azsim_reply_json(r, 200, json_deep_copy(json_object_get(entry, "resource")))
                   : not_found(r, t, s[3], s[7]);
    } else {
        r->op = "arm.dependents.delete";
        if (entry) {
            azsim_vec_remove(&resources, at);
            json_decref(entry);
            azsim_state_save(r->st);
            rc = azsim_reply_empty(r, 200);
        } else {
            rc = azsim_reply_empty(r, 204);
        }
    }
    free(action);
    free(id);
    return rc;
}

json_t *azsim_dependents_dump(void)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < resources.n; i++)
        json_array_append(a, resources.items[i]);
    return a;
}

int azsim_dependents_load(const json_t *a)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        json_t *copy = json_deep_copy(e);
        if (!copy || azsim_vec_push(&resources, copy) != AZSIM_OK) {
            json_decref(copy);
            return AZSIM_ENOMEM;
        }
    }
    return AZSIM_OK;
}

void azsim_dependents_release(void)
{
    for (size_t i = 0; i < resources.n; i++)
        json_decref(resources.items[i]);
    free(resources.items);
    memset(&resources, 0, sizeof(resources));
}
