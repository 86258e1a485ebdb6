/*
 * Discovery of a vault's dependents: the Azure resources outside the estate that would lose their
 * data or their configuration if a key version, key, secret or vault of the estate went away.
 * Storage accounts, disk encryption sets, SQL servers and Cosmos DB accounts with a customer-
 * managed key, and App Service / Functions apps whose app settings are Key Vault references. The
 * plan gates every retirement on them (plan/retire.c); nothing here decides anything.
 *
 * It asks the way a user would, with as few requests as the subscription allows: one Azure
 * Resource Graph query (paged by $skipToken, 1000 rows a page) returns every resource of those
 * types that names a key vault key, and every app with a managed identity (an app without one
 * cannot resolve a Key Vault reference); each such app's references are then read with App
 * Service's configreferences API (the service parses the references; the setting values, which
 * may be secrets, are never fetched), concurrently. A plan of any estate therefore adds one request
 * per thousand candidate resources plus one per app with an identity, not one per vault or key.
 *
 * Only references to the vaults the scope names are kept. Anything that cannot be read is an
 * error, never "no dependents": a retirement must not go ahead on a partial picture.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARG_API "2024-04-01"
#define WEB_API "2023-12-01"
#define ARG_PAGE 1000      /* Resource Graph's largest $top */
#define ARG_PAGES_MAX 1000 /* a million candidate resources: past that, something loops */
#define SITES_BATCH 64     /* app reference reads in flight at once (ARM's bucket refills 25/s) */

/*
 * The one query discovery sends (azsim answers exactly this text): candidates by type, with their
 * properties; apps only with an identity. `order by id` keeps paging stable.
 */
const char kvr__dependents_query[] =
    "resources"
    " | where (type =~ 'microsoft.storage/storageaccounts' and properties.encryption.keySource =~ "
    "'Microsoft.Keyvault')"
    " or (type =~ 'microsoft.compute/diskencryptionsets' and isnotempty(properties.activeKey.keyUrl))"
    " or (type =~ 'microsoft.sql/servers' and isnotempty(properties.keyId))"
    " or (type =~ 'microsoft.documentdb/databaseaccounts' and isnotempty(properties.keyVaultKeyUri))"
    " or (type =~ 'microsoft.web/sites' and isnotempty(identity))"
    " | project id, name, type, properties"
    " | order by id asc";

/* Resource Graph spells types in lower case; the live model keeps Azure's spelling. */
static const char *const TYPES[] = {"Microsoft.Storage/storageAccounts",
                                    "Microsoft.Compute/diskEncryptionSets",
                                    "Microsoft.Sql/servers",
                                    "Microsoft.DocumentDB/databaseAccounts",
                                    "Microsoft.Web/sites",
                                    NULL};

typedef struct found {
    kvr_live *l;
    const kvr_scope *sc;
    size_t cap;
    kvr_error *err;
} found;

/* The scope's vault called `name` (case-insensitive, as vault names are), or NULL. */
static const char *scope_vault(const kvr_scope *sc, const char *name, size_t len)
{
    for (size_t i = 0; i < sc->nvaults; i++) {
        const char *v = sc->vaults[i].name, *c = sc->vaults[i].copy_from;
        if (strlen(v) == len && strncasecmp(v, name, len) == 0)
            return v;
        if (c && strlen(c) == len && strncasecmp(c, name, len) == 0)
            return c;
    }
    return NULL;
}

static const char *str(const json_t *o, const char *path)
{
    const json_t *v = o;
    char part[64];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        path += n + (path[n] == '.');
    }
    return json_string_value(v);
}

static int add(found *f, const char *id, const char *type, const char *name, const char *vault,
               const char *key, const char *version, const char *secret, const char *setting)
{
    kvr_live *l = f->l;
    kvr_live_dependent *d;
    if (kvr_grow((void **)&l->dependents, &f->cap, l->ndependents + 1, sizeof(*d)) < 0)
        return kvr_error_oom(f->err);
    d = &l->dependents[l->ndependents];
    memset(d, 0, sizeof(*d));
#define DUP(field, v)                                                                              \
    if ((v) && *(v) && !(d->field = kvr_strpool_dup(&l->strings, (v))))                            \
        return kvr_error_oom(f->err);
    DUP(id, id)
    DUP(type, type)
    DUP(name, name)
    DUP(vault, vault)
    DUP(key, key)
    DUP(version, version)
    DUP(secret, secret)
    DUP(setting, setting)
#undef DUP
    l->ndependents++;
    return 0;
}

/*
 * A Key Vault object URL, "https://VAULT.SUFFIX[:port]/(keys|secrets)/NAME[/VERSION][/]": the
 * vault (when the scope names it), the name and the version (NULL: versionless) into the
 * buffers. False when it is not one, or names another vault.
 */
static bool object_url(const kvr_scope *sc, const char *url, const char *coll, const char **vault,
                       char *name, size_t name_size, char *version, size_t version_size)
{
    const char *host, *p, *slash;
    size_t n;
    *version = '\0';
    if (!url || strncasecmp(url, "https://", 8) != 0)
        return false;
    host = url + 8;
    n = strcspn(host, ".:/");
    if (host[n] != '.' || !(*vault = scope_vault(sc, host, n)))
        return false;
    if (!(p = strchr(host, '/')) || strncasecmp(p + 1, coll, strlen(coll)) != 0 ||
        p[1 + strlen(coll)] != '/')
        return false;
    p += 2 + strlen(coll);
    n = strcspn(p, "/?");
    if (n == 0 || n >= name_size)
        return false;
    memcpy(name, p, n);
    name[n] = '\0';
    p += n;
    if (*p == '/' && p[1] && p[1] != '?') {
        slash = p + 1;
        n = strcspn(slash, "/?");
        if (n >= version_size)
            return false;
        memcpy(version, slash, n);
        version[n] = '\0';
    }
    return true;
}

/* One Resource Graph row: its reference, if it names a vault of the scope. Apps go to `sites`. */
static int row(found *f, const json_t *r, json_t *sites)
{
    const char *id = str(r, "id"), *name = str(r, "name"), *type = str(r, "type"), *t = NULL;
    const json_t *props = json_object_get(r, "properties");
    const char *vault = NULL, *url = NULL;
    char key[128], version[64];
    for (size_t i = 0; type && TYPES[i]; i++)
        if (strcasecmp(type, TYPES[i]) == 0)
            t = TYPES[i];
    if (!id || !name || !t)
        return 0; /* not a row of this query */
    if (t == TYPES[4])
        return json_array_append_new(sites, json_pack("{s:s,s:s}", "id", id, "name", name)) < 0
                   ? kvr_error_oom(f->err)
                   : 0;
    if (t == TYPES[0]) {
        /* keyvaulturi + keyname + keyversion ("" or absent: the key's current version) */
        const char *uri = str(props, "encryption.keyvaultproperties.keyvaulturi");
        const char *kn = str(props, "encryption.keyvaultproperties.keyname");
        const char *kv = str(props, "encryption.keyvaultproperties.keyversion");
        char built[512];
        if (!uri || !kn)
            return 0;
        snprintf(built, sizeof(built), "%s%skeys/%s%s%s", uri,
                 uri[0] && uri[strlen(uri) - 1] == '/' ? "" : "/", kn, kv && *kv ? "/" : "",
                 kv && *kv ? kv : "");
        if (!object_url(f->sc, built, "keys", &vault, key, sizeof(key), version, sizeof(version)))
            return 0;
        return add(f, id, t, name, vault, key, *version ? version : NULL, NULL, NULL);
    }
    if (t == TYPES[1])
        url = str(props, "activeKey.keyUrl");
    else if (t == TYPES[2])
        url = str(props, "keyId");
    else if (t == TYPES[3])
        url = str(props, "keyVaultKeyUri");
    if (!object_url(f->sc, url, "keys", &vault, key, sizeof(key), version, sizeof(version)))
        return 0;
    return add(f, id, t, name, vault, key, *version ? version : NULL, NULL, NULL);
}

/* The Resource Graph query, every page; rows into f, apps into sites. */
static int query(found *f, kvr_auth *a, const kvr_endpoints *ep, const char *scope, json_t *sites)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    char *url = prov_fmt(f->err, "%s/providers/Microsoft.ResourceGraph/resources?api-version=%s",
                         ep->arm, ARG_API);
    char *token = NULL, *body = NULL;
    int rc = 0;
    if (!url)
        return KVR_ENOMEM;
    for (int page = 0; rc == 0; page++) {
        kvr_http_response resp;
        kvr_http_request req;
        json_t *rq, *res = NULL, *data;
        const char *next;
        if (page == ARG_PAGES_MAX) {
            rc = kvr_error_set(f->err, KVR_ETOOBIG,
                               "Resource Graph query for dependents: more than %d pages",
                               ARG_PAGES_MAX);
            break;
        }
        rq = json_pack("{s:[s],s:s,s:{s:i,s:s}}", "subscriptions", f->sc->subscription, "query",
                       kvr__dependents_query, "options", "$top", ARG_PAGE, "resultFormat",
                       "objectArray");
        if (rq && token)
            json_object_set_new(json_object_get(rq, "options"), "$skipToken", json_string(token));
        free(body);
        body = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
        json_decref(rq);
        if (!body) {
            rc = kvr_error_oom(f->err);
            break;
        }
        memset(&req, 0, sizeof(req));
        req.method = "POST";
        req.url = url;
        req.headers = headers;
        req.body = body;
        req.body_len = strlen(body);
        kvr_http_response_init(&resp);
        if ((rc = kvr_auth_send(&resp, a, scope, &req, f->err)) < 0)
            break;
        if (resp.status != 200) {
            rc = kvr_http_error(f->err, &resp, "query Resource Graph for the vaults' dependents",
                                NULL);
            kvr_http_response_release(&resp);
            break;
        }
        res = json_loadb(resp.body, resp.body_len, 0, NULL);
        kvr_http_response_release(&resp);
        data = json_object_get(res, "data");
        if (!json_is_array(data)) {
            json_decref(res);
            rc = kvr_error_set(f->err, KVR_EPROTO,
                               "Resource Graph answered without a 'data' array (resultFormat "
                               "objectArray)");
            break;
        }
        for (size_t i = 0; rc == 0 && i < json_array_size(data); i++)
            rc = row(f, json_array_get(data, i), sites);
        next = json_string_value(json_object_get(res, "$skipToken"));
        if (rc == 0 && !(next && *next) &&
            kvr_str_ieq(json_string_value(json_object_get(res, "resultTruncated")), "true"))
            rc = kvr_error_set(f->err, KVR_EPROTO,
                               "Resource Graph truncated the dependents' query without a "
                               "$skipToken: the vaults' dependents are not all known");
        free(token);
        token = next && *next ? strdup(next) : NULL;
        json_decref(res);
        if (next && *next && !token)
            rc = kvr_error_oom(f->err);
        if (!token)
            break;
    }
    free(token);
    free(body);
    free(url);
    return rc;
}

/* One app's Key Vault references (configreferences/appsettings) into f. */
static int site_refs(found *f, const json_t *site, const kvr_http_response *resp)
{
    const char *id = str(site, "id"), *name = str(site, "name");
    json_t *res, *value;
    int rc = 0;
    if (resp->status == 404)
        return 0; /* deleted since the query: it uses nothing */
    if (resp->status != 200)
        return kvr_http_error(f->err, resp, "read the Key Vault references of app", name);
    res = json_loadb(resp->body, resp->body_len, 0, NULL);
    value = json_object_get(res, "value");
    for (size_t i = 0; rc == 0 && i < json_array_size(value); i++) {
        const json_t *item = json_array_get(value, i);
        const char *vn = str(item, "properties.vaultName");
        const char *sn = str(item, "properties.secretName");
        const char *sv = str(item, "properties.secretVersion");
        const char *setting = str(item, "name");
        const char *vault = vn ? scope_vault(f->sc, vn, strlen(vn)) : NULL;
        if (!vault || !sn || !*sn)
            continue;
        if (setting && strrchr(setting, '/'))
            setting = strrchr(setting, '/') + 1;
        (void)sv; /* a secret is retired whole: its version does not matter to the gate */
        rc = add(f, id, TYPES[4], name, vault, NULL, NULL, sn, setting);
    }
    json_decref(res);
    return rc;
}

static int sites_read(found *f, kvr_auth *a, const kvr_endpoints *ep, const char *scope,
                      json_t *sites)
{
    size_t n = json_array_size(sites);
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < n; at += SITES_BATCH) {
        size_t m = n - at < SITES_BATCH ? n - at : SITES_BATCH;
        kvr_http_request reqs[SITES_BATCH];
        kvr_http_response resps[SITES_BATCH];
        int codes[SITES_BATCH];
        char *urls[SITES_BATCH];
        memset(reqs, 0, sizeof(reqs));
        memset(urls, 0, sizeof(urls));
        for (size_t i = 0; i < m; i++) {
            urls[i] = prov_fmt(f->err, "%s%s/config/configreferences/appsettings?api-version=%s",
                               ep->arm, str(json_array_get(sites, at + i), "id"), WEB_API);
            if (!urls[i])
                rc = KVR_ENOMEM;
            reqs[i].method = "GET";
            reqs[i].url = urls[i];
            kvr_http_response_init(&resps[i]);
        }
        if (rc == 0) {
            rc = kvr_auth_send_batch(resps, codes, a, scope, reqs, m, NULL);
            if (rc < 0)
                kvr_error_set(f->err, rc, "read the Key Vault references of %zu apps: %s", m,
                              kvr_strerror(rc));
        }
        for (size_t i = 0; i < m; i++) {
            if (rc == 0)
                rc = site_refs(f, json_array_get(sites, at + i), &resps[i]);
            kvr_http_response_release(&resps[i]);
            free(urls[i]);
        }
    }
    return rc;
}

static int cmp_null(const char *a, const char *b)
{
    return a && b ? strcasecmp(a, b) : (a != NULL) - (b != NULL);
}

/* A plan is a function of the live state: the same dependents, the same order. */
static int dependent_cmp(const void *x, const void *y)
{
    const kvr_live_dependent *a = x, *b = y;
    int c = cmp_null(a->id, b->id);
    if (!c)
        c = cmp_null(a->vault, b->vault);
    if (!c)
        c = cmp_null(a->key, b->key);
    if (!c)
        c = cmp_null(a->version, b->version);
    if (!c)
        c = cmp_null(a->secret, b->secret);
    if (!c)
        c = cmp_null(a->setting, b->setting);
    return c;
}

int kvr__dependents_read(kvr_live *l, kvr_auth *a, const kvr_endpoints *ep, const kvr_scope *sc,
                         kvr_error *err)
{
    found f = {l, sc, 0, err};
    json_t *sites = json_array();
    char *scope = prov_fmt(err, "%s/.default", ep->arm);
    int rc;
    if (!sites || !scope) {
        rc = kvr_error_oom(err);
        goto done;
    }
    if (!sc->subscription) {
        rc =
            kvr_error_set(err, KVR_EINVAL, "no subscription to look for the vaults' dependents in");
        goto done;
    }
    if ((rc = query(&f, a, ep, scope, sites)) < 0)
        goto done;
    if ((rc = sites_read(&f, a, ep, scope, sites)) < 0)
        goto done;
    if (l->ndependents > 1)
        qsort(l->dependents, l->ndependents, sizeof(*l->dependents), dependent_cmp);
done:
    json_decref(sites);
    free(scope);
    return rc;
}
