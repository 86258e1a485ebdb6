/*
 * Reading the live estate. The desired state says what to look at: its vaults (by resource
 * group), their keys, secrets and certificates, its apps, the role assignments on its vaults,
 * and the profile service. Nothing else is listed or fetched, and secret values are fetched only
 * where the plan must compare them (sources, credential copies, relocations); each is turned
 * into a keyed marker at once and its bytes wiped.
 *
 * The service's clock is taken from the responses' Date header, so retention is measured on
 * Azure's time, not the runner's.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>

#include <openssl/crypto.h>


/* ---- endpoints ---------------------------------------------------------------------------- */

static const struct {
    const char *name, *arm, *graph, *vault_suffix;
} CLOUDS[] = {
    {"AzurePublicCloud", "https://management.azure.com", "https://graph.microsoft.com",
     "vault.azure.net"},
    {"AzureUSGovernment", "https://management.usgovcloudapi.net", "https://graph.microsoft.us",
     "vault.usgovcloudapi.net"},
    {"AzureChinaCloud", "https://management.chinacloudapi.cn",
     "https://microsoftgraph.chinacloudapi.cn", "vault.azure.cn"},
};

static int set_url(char **dst, const char *value, const char *what, kvr_error *err)
{
    size_t n;
    if (!value || !*value)
        return 0;
    if (strncmp(value, "https://", 8) != 0)
        return kvr_error_set(err, KVR_EINSECURE, "%s '%s' must be an https:// URL", what, value);
    free(*dst);
    *dst = strdup(value);
    if (!*dst)
        return kvr_error_set(err, KVR_ENOMEM, "out of memory");
    n = strlen(*dst);
    while (n > 8 && (*dst)[n - 1] == '/')
        (*dst)[--n] = '\0';
    return 0;
}

int kvr_endpoints_resolve(kvr_endpoints *out, const kvr_cloud *cloud, kvr_error *err)
{
    const char *name = cloud && cloud->name ? cloud->name : "AzurePublicCloud";
    int rc = 0;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(CLOUDS) / sizeof(CLOUDS[0]); i++) {
        if (strcmp(CLOUDS[i].name, name) != 0)
            continue;
        out->arm = strdup(CLOUDS[i].arm);
        out->graph = strdup(CLOUDS[i].graph);
        out->vault_suffix = strdup(CLOUDS[i].vault_suffix);
        if (!out->arm || !out->graph || !out->vault_suffix)
            rc = kvr_error_set(err, KVR_ENOMEM, "out of memory");
    }
    if (!rc && cloud) {
        if ((rc = set_url(&out->arm, cloud->resource_manager, "cloud.resourceManager", err)) < 0 ||
            (rc = set_url(&out->graph, cloud->graph, "cloud.graph", err)) < 0 ||
            (rc = set_url(&out->profiles, cloud->profile_service, "cloud.profileService", err)) < 0)
            goto done;
        if (cloud->vault_suffix) {
            free(out->vault_suffix);
            if (!(out->vault_suffix = strdup(cloud->vault_suffix)))
                rc = kvr_error_set(err, KVR_ENOMEM, "out of memory");
        }
    }
    if (!rc &&
        ((rc = set_url(&out->arm, getenv("KVR_ARM_ENDPOINT"), "KVR_ARM_ENDPOINT", err)) < 0 ||
         (rc = set_url(&out->graph, getenv("KVR_GRAPH_ENDPOINT"), "KVR_GRAPH_ENDPOINT", err)) < 0 ||
         (rc = set_url(&out->profiles, getenv("KVR_PROFILE_ENDPOINT"), "KVR_PROFILE_ENDPOINT",
                       err)) < 0))
        goto done;
    if (!rc && getenv("KVR_VAULT_SUFFIX") && *getenv("KVR_VAULT_SUFFIX")) {
        free(out->vault_suffix);
        if (!(out->vault_suffix = strdup(getenv("KVR_VAULT_SUFFIX"))))
            rc = kvr_error_set(err, KVR_ENOMEM, "out of memory");
    }
    if (!rc && (!out->arm || !out->graph || !out->vault_suffix))
        rc = kvr_error_set(err, KVR_EINVAL,
                           "cloud '%s' needs resourceManager, graph and vaultSuffix endpoints",
                           name);
done:
    if (rc < 0)
        kvr_endpoints_release(out);
    return rc;
}

void kvr_endpoints_release(kvr_endpoints *ep)
{
    free(ep->arm);
    free(ep->graph);
    free(ep->vault_suffix);
    free(ep->profiles);
    memset(ep, 0, sizeof(*ep));
}

/* ---- helpers ------------------------------------------------------------------------------ */

int kvr_time_parse_http(int64_t *out, const char *text)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4], iso[32];
    int d, y, h, mi, s;
    const char *m;
    if (!text || sscanf(text, "%*3s, %d %3s %d %d:%d:%d GMT", &d, mon, &y, &h, &mi, &s) != 6)
        return KVR_EINVAL;
    m = strstr(months, mon);
    if (!m || strlen(mon) != 3 || (m - months) % 3)
        return KVR_EINVAL;
    snprintf(iso, sizeof(iso), "%04d-%02d-%02dT%02d:%02d:%02dZ", y, (int)(m - months) / 3 + 1, d, h,
             mi, s);
    return kvr_time_parse_iso(out, iso);
}

char *prov_fmt(kvr_error *err, const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    s = kvr_vasprintf(f, ap);
    va_end(ap);
    if (!s)
        kvr_error_set(err, KVR_ENOMEM, "out of memory");
    return s;
}

/* Percent-encodes an OData literal ('x' with ' doubled) for a $filter. */
static char *odata_literal(const char *v, kvr_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(v);
    char *out = malloc(n * 6 + 7), *o = out;
    if (!out) {
        kvr_error_set(err, KVR_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(o, "%27", 3);
    o += 3;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        int times = *p == '\'' ? 2 : 1;
        while (times--) {
            if (plain) {
                *o++ = (char)*p;
            } else {
                *o++ = '%';
                *o++ = hex[*p >> 4];
                *o++ = hex[*p & 15];
            }
        }
    }
    memcpy(o, "%27", 4);
    return out;
}

typedef struct reader {
    kvr_auth *a;
    const kvr_endpoints *ep;
    const kvr_estate *d;
    const char *sub;
    const kvr_marker_key *mk;
    kvr_live *l;
    char *arm_scope, *graph_scope, *profiles_scope;
    kvr_error *err;
} reader;

/* GET with a token for `scope`; *body is the parsed 200 body, or NULL on 404. */
static int get_json(reader *r, const char *scope, const char *url, const char *op,
                    const char *object, json_t **body)
{
    kvr_http_request req = {.method = "GET", .url = url};
    kvr_http_response resp;
    json_error_t jerr;
    int rc;

    *body = NULL;
    kvr_http_response_init(&resp);
    rc = scope ? kvr_auth_send(&resp, r->a, scope, &req, r->err)
               : kvr_auth_send_kv(&resp, &rc, r->a, &req, 1, r->err);
    if (rc < 0)
        goto done;
    if (!r->l->now && resp.date)
        kvr_time_parse_http(&r->l->now, resp.date);
    if (resp.status == 404)
        goto done;
    if (resp.status != 200) {
        rc = kvr_http_error(r->err, &resp, op, object);
        goto done;
    }
    *body = json_loadb(resp.body, resp.body_len, 0, &jerr);
    if (!*body)
        rc = kvr_error_set(r->err, KVR_EPROTO, "%s '%s': the response is not JSON (%s)", op,
                           object ? object : "", jerr.text);
done:
    kvr_http_response_release(&resp);
    return rc;
}

static int list_json(reader *r, const char *scope, const char *url, const char *what,
                     json_t **items)
{
    kvr_http_request req = {.method = "GET", .url = url};
    return kvr_auth_list(items, r->a, scope, &req, what, r->err);
}

static char *vault_url(reader *r, const char *vault)
{
    return prov_fmt(r->err, "https://%s.%s", vault, r->ep->vault_suffix);
}

/* ---- ARM ---------------------------------------------------------------------------------- */

static int read_vaults(reader *r, bool *missing)
{
    int rc = 0;
    *missing = false;
    for (size_t i = 0; i < r->d->nvaults && !rc; i++) {
        const kvr_vault *v = &r->d->vaults[i];
        json_t *body = NULL;
        char *url = prov_fmt(r->err,
                        "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                        "vaults/%s?api-version=" ARM_VAULTS_API,
                        r->ep->arm, r->sub, v->resource_group, v->name);
        if (!url)
            return KVR_ENOMEM;
        rc = get_json(r, r->arm_scope, url, "get vault", v->name, &body);
        if (!rc && body)
            rc = kvr_live_add_vault(r->l, body, r->err);
        else if (!rc)
            *missing = true;
        json_decref(body);
        free(url);
    }
    return rc;
}

static int read_deleted_vaults(reader *r)
{
    json_t *items = NULL;
    int rc;
    char *url = prov_fmt(
        r->err,
        "%s/subscriptions/%s/providers/Microsoft.KeyVault/deletedVaults?api-version=" ARM_VAULTS_API,
        r->ep->arm, r->sub);
    if (!url)
        return KVR_ENOMEM;
    rc = list_json(r, r->arm_scope, url, "list deleted vaults", &items);
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        const json_t *name = json_object_get(it, "name");
        if (json_is_string(name) && kvr_estate_vault(r->d, json_string_value(name)) &&
            !kvr_live_vault_get(r->l, json_string_value(name)))
            rc = kvr_live_add_deleted_vault(r->l, it, r->err);
    }
    json_decref(items);
    free(url);
    return rc;
}

static int read_roles(reader *r, const kvr_live_vault *v)
{
    json_t *items = NULL;
    int rc;
    char *url = prov_fmt(r->err,
                    "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s/"
                    "providers/Microsoft.Authorization/roleAssignments?api-version=" ARM_ROLES_API,
                    r->ep->arm, r->sub, v->resource_group, v->name);
    char what[160];
    if (!url)
        return KVR_ENOMEM;
    snprintf(what, sizeof(what), "list role assignments of vault '%s'", v->name);
    rc = list_json(r, r->arm_scope, url, what, &items);
    for (size_t i = 0; !rc && i < json_array_size(items); i++)
        rc = kvr_live_add_role(r->l, json_array_get(items, i), r->err);
    json_decref(items);
    free(url);
    return rc;
}

/* ---- Graph -------------------------------------------------------------------------------- */

static int read_apps(reader *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->d->napps && !rc; i++) {
        const kvr_app *a = &r->d->apps[i];
        json_t *apps = NULL, *sps = NULL;
        const json_t *app;
        char *lit = odata_literal(a->display_name, r->err), *url = NULL, *url2 = NULL, *lit2 = NULL;
        char what[200];
        if (!lit)
            return KVR_ENOMEM;
        url =
            prov_fmt(r->err, "%s/v1.0/applications?$filter=displayName%%20eq%%20%s", r->ep->graph, lit);
        snprintf(what, sizeof(what), "find app '%s'", a->display_name);
        rc = url ? list_json(r, r->graph_scope, url, what, &apps) : KVR_ENOMEM;
        if (!rc && json_array_size(apps) > 1)
            rc = kvr_error_set(r->err, KVR_ECONFLICT,
                               "%zu Entra applications are named '%s'; kvreconcile finds apps by "
                               "display name, which must be unique",
                               json_array_size(apps), a->display_name);
        app = json_array_get(apps, 0);
        if (!rc && app && json_is_string(json_object_get(app, "appId"))) {
            lit2 = odata_literal(json_string_value(json_object_get(app, "appId")), r->err);
            url2 = lit2 ? prov_fmt(r->err, "%s/v1.0/servicePrincipals?$filter=appId%%20eq%%20%s",
                              r->ep->graph, lit2)
                        : NULL;
            snprintf(what, sizeof(what), "find the service principal of app '%s'", a->display_name);
            rc = url2 ? list_json(r, r->graph_scope, url2, what, &sps) : KVR_ENOMEM;
            if (!rc)
                rc = kvr_live_add_app(r->l, app, json_array_get(sps, 0), r->err);
        }
        json_decref(apps);
        json_decref(sps);
        free(lit);
        free(lit2);
        free(url);
        free(url2);
    }
    return rc;
}

/* ---- Key Vault ---------------------------------------------------------------------------- */

/* Does the plan compare this secret's value? */
static bool value_needed(const reader *r, const char *vault, const char *name)
{
    const kvr_vault *v = kvr_estate_vault(r->d, vault);
    for (size_t i = 0; i < r->d->nsecrets; i++) {
        const kvr_secret *s = &r->d->secrets[i];
        if (s->source != KVR_SECRET_GENERATE && kvr_str_ieq(s->vault, vault) &&
            kvr_str_ieq(s->name, name))
            return true;
    }
    for (size_t i = 0; i < r->d->napps; i++)
        for (size_t c = 0; c < r->d->apps[i].ncreds; c++)
            if (kvr_str_ieq(r->d->apps[i].creds[c].store_vault, vault) &&
                kvr_str_ieq(r->d->apps[i].creds[c].store_secret, name))
                return true;
    if (v && v->copy_from.vault)
        return true; /* a relocation target: compared with its source */
    for (size_t i = 0; i < r->d->nvaults; i++)
        if (r->d->vaults[i].copy_from.vault && kvr_str_ieq(r->d->vaults[i].copy_from.vault, vault))
            return true; /* a relocation source */
    return false;
}

static int secret_marker(reader *r, const char *vault, const char *name, char *marker)
{
    json_t *body = NULL;
    char *base = vault_url(r, vault), *url;
    char object[300];
    int rc;
    if (!base)
        return KVR_ENOMEM;
    url = prov_fmt(r->err, "%s/secrets/%s/?api-version=" KV_API, base, name);
    free(base);
    if (!url)
        return KVR_ENOMEM;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    rc = get_json(r, NULL, url, "get secret", object, &body);
    free(url);
    marker[0] = '\0';
    if (!rc && body) {
        json_t *v = json_object_get(body, "value");
        if (json_is_string(v)) {
            /* jansson keeps its own copy of the string: mark it, then wipe it in place. */
            char *text = (char *)json_string_value(v);
            size_t n = json_string_length(v);
            kvr_marker(marker, r->mk, (const unsigned char *)text, n);
            OPENSSL_cleanse(text, n);
        }
    }
    json_decref(body);
    return rc;
}

static int read_keys(reader *r, const char *vault, const char *base, bool *missing)
{
    json_t *items = NULL;
    char *url = prov_fmt(r->err, "%s/keys?api-version=" KV_API "&maxresults=25", base), what[400];
    int rc;
    *missing = false;
    if (!url)
        return KVR_ENOMEM;
    snprintf(what, sizeof(what), "list keys of vault '%s'", vault);
    rc = list_json(r, NULL, url, what, &items);
    free(url);
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        char name[160], object[300];
        json_t *bundle = NULL, *versions = NULL, *policy = NULL;
        const kvr_key *k;
        if (!kvr_id_last(json_string_value(json_object_get(json_array_get(items, i), "kid")), name,
                         sizeof(name)))
            continue;
        k = kvr_estate_key(r->d, vault, name);
        snprintf(object, sizeof(object), "%s/%s", vault, name);
        url = prov_fmt(r->err, "%s/keys/%s/?api-version=" KV_API, base, name);
        rc = url ? get_json(r, NULL, url, "get key", object, &bundle) : KVR_ENOMEM;
        free(url);
        if (!rc) {
            url =
                prov_fmt(r->err, "%s/keys/%s/versions?api-version=" KV_API "&maxresults=25", base, name);
            snprintf(what, sizeof(what), "list versions of key '%s'", object);
            rc = url ? list_json(r, NULL, url, what, &versions) : KVR_ENOMEM;
            free(url);
        }
        if (!rc && k && k->rotation.set) {
            url = prov_fmt(r->err, "%s/keys/%s/rotationpolicy?api-version=" KV_API, base, name);
            rc = url ? get_json(r, NULL, url, "get rotation policy", object, &policy) : KVR_ENOMEM;
            free(url);
        }
        if (!rc && bundle)
            rc = kvr_live_add_key(r->l, vault, bundle, versions, policy, r->err);
        json_decref(bundle);
        json_decref(versions);
        json_decref(policy);
    }
    for (size_t i = 0; !rc && i < r->d->nkeys; i++)
        if (kvr_str_ieq(r->d->keys[i].vault, vault) &&
            !kvr_live_key_get(r->l, vault, r->d->keys[i].name))
            *missing = true;
    json_decref(items);
    return rc;
}

static int read_secrets(reader *r, const char *vault, const char *base, bool *missing)
{
    json_t *items = NULL;
    char *url = prov_fmt(r->err, "%s/secrets?api-version=" KV_API "&maxresults=25", base), what[160];
    int rc;
    *missing = false;
    if (!url)
        return KVR_ENOMEM;
    snprintf(what, sizeof(what), "list secrets of vault '%s'", vault);
    rc = list_json(r, NULL, url, what, &items);
    free(url);
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        char name[160], marker[KVR_MARKER_LEN + 1] = "";
        const char *id = json_string_value(json_object_get(it, "id"));
        if (!kvr_id_last(id, name, sizeof(name)))
            continue;
        if (json_is_true(json_object_get(it, "managed")))
            continue; /* the secret half of a certificate: copied with the certificate */
        if (value_needed(r, vault, name))
            rc = secret_marker(r, vault, name, marker);
        if (!rc)
            rc = kvr_live_add_secret(r->l, vault, it, marker[0] ? marker : NULL, r->err);
    }
    for (size_t i = 0; !rc && i < r->d->nsecrets; i++)
        if (kvr_str_ieq(r->d->secrets[i].vault, vault) &&
            !kvr_live_secret_get(r->l, vault, r->d->secrets[i].name))
            *missing = true;
    json_decref(items);
    return rc;
}

static int read_list_into(reader *r, const char *vault, const char *base, const char *path,
                          const char *kind, const char *what)
{
    json_t *items = NULL;
    char *url = prov_fmt(r->err, "%s/%s?api-version=" KV_API "&maxresults=25", base, path), w[160];
    int rc;
    if (!url)
        return KVR_ENOMEM;
    snprintf(w, sizeof(w), "%s of vault '%s'", what, vault);
    rc = list_json(r, NULL, url, w, &items);
    free(url);
    for (size_t i = 0; !rc && i < json_array_size(items); i++)
        rc = kind ? kvr_live_add_deleted(r->l, vault, kind, json_array_get(items, i), r->err)
                  : kvr_live_add_certificate(r->l, vault, json_array_get(items, i), r->err);
    json_decref(items);
    return rc;
}

static int read_vault_contents(reader *r, const kvr_vault *v)
{
    char *base = vault_url(r, v->name);
    bool keys_missing = false, secrets_missing = false;
    bool certs = v->copy_from.vault && v->copy_from.certificates;
    int rc;
    if (!base)
        return KVR_ENOMEM;
    /* certificates matter only to a relocation that copies them, on either side */
    for (size_t i = 0; i < r->d->nvaults; i++)
        if (r->d->vaults[i].copy_from.vault && r->d->vaults[i].copy_from.certificates &&
            kvr_str_ieq(r->d->vaults[i].copy_from.vault, v->name))
            certs = true;
    rc = read_keys(r, v->name, base, &keys_missing);
    if (!rc)
        rc = read_secrets(r, v->name, base, &secrets_missing);
    if (!rc && keys_missing)
        rc = read_list_into(r, v->name, base, "deletedkeys", "key", "list deleted keys");
    if (!rc && secrets_missing)
        rc = read_list_into(r, v->name, base, "deletedsecrets", "secret", "list deleted secrets");
    if (!rc && certs)
        rc = read_list_into(r, v->name, base, "certificates", NULL, "list certificates");
    free(base);
    return rc;
}

/* ---- profiles ----------------------------------------------------------------------------- */

static int read_profiles(reader *r)
{
    json_t *items = NULL;
    char *url;
    int rc;
    if (!r->d->nprofiles)
        return 0;
    if (!r->ep->profiles)
        return kvr_error_set(r->err, KVR_EINVAL,
                             "the profile service's endpoint is not set: give 'cloud: "
                             "{profileService: https://…}' or KVR_PROFILE_ENDPOINT");
    url = prov_fmt(r->err, "%s/encryptionProfiles?api-version=" PROFILES_API, r->ep->profiles);
    if (!url)
        return KVR_ENOMEM;
    rc = list_json(r, r->profiles_scope, url, "list encryption profiles", &items);
    for (size_t i = 0; !rc && i < json_array_size(items); i++)
        rc = kvr_live_add_profile(r->l, json_array_get(items, i), r->err);
    json_decref(items);
    free(url);
    return rc;
}

int kvr_live_read(kvr_live **out, kvr_auth *a, const kvr_endpoints *ep, const kvr_estate *d,
                  const char *subscription, const kvr_marker_key *mk, kvr_error *err)
{
    reader r;
    bool missing = false;
    int rc;

    *out = NULL;
    if (!subscription)
        return kvr_error_set(err, KVR_EINVAL,
                             "no subscription: give 'subscription:' in the desired state or "
                             "AZURE_SUBSCRIPTION_ID");
    memset(&r, 0, sizeof(r));
    r.a = a;
    r.ep = ep;
    r.d = d;
    r.sub = subscription;
    r.mk = mk;
    r.err = err;
    r.l = calloc(1, sizeof(*r.l));
    r.arm_scope = prov_fmt(err, "%s/.default", ep->arm);
    r.graph_scope = prov_fmt(err, "%s/.default", ep->graph);
    r.profiles_scope = ep->profiles ? prov_fmt(err, "%s/.default", ep->profiles) : NULL;
    if (!r.l || !r.arm_scope || !r.graph_scope || (ep->profiles && !r.profiles_scope)) {
        rc = kvr_error_set(err, KVR_ENOMEM, "out of memory");
        goto done;
    }
    rc = read_vaults(&r, &missing);
    if (!rc && missing)
        rc = read_deleted_vaults(&r);
    for (size_t i = 0; !rc && i < r.l->nvaults; i++)
        rc = read_roles(&r, &r.l->vaults[i]);
    if (!rc)
        rc = read_apps(&r);
    for (size_t i = 0; !rc && i < d->nvaults; i++)
        if (kvr_live_vault_get(r.l, d->vaults[i].name))
            rc = read_vault_contents(&r, &d->vaults[i]);
    if (!rc)
        rc = read_profiles(&r);
    if (!rc && !r.l->now)
        rc = kvr_error_set(err, KVR_EPROTO,
                           "no response carried a Date header: the service's clock is unknown, "
                           "and retention is never measured on this machine's clock");
done:
    free(r.arm_scope);
    free(r.graph_scope);
    free(r.profiles_scope);
    if (rc < 0) {
        kvr_live_free(r.l);
        return rc;
    }
    *out = r.l;
    return 0;
}
