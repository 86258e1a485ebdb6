/*
 * End-to-end check of the Azure provider's write side against azsim: operations built by hand,
 * as plan/ would fill them, are carried out one at a time through the provider table
 * (kvr_azure_provider_new), every kind at least once, and each result is checked with a read
 * of its own (plain requests through the client layer): the vault with its network rules and
 * tags, access-policy entries with exactly their permissions, a key's operations, versions and
 * rotation policy, tags, values from every source, copies equal to their source, the stored
 * client secret with its keyId tag, idempotent role assignment, the profiles, deletes and
 * recoveries; and an unresolved operation is refused before any request. Run by
 * azure_ops_e2e.sh with azsim.env sourced; nothing waits on a clock.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kvr/providers.h"

static int checks;
static bool done_kind[KVR_OP_KIND_COUNT];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "azure_ops_e2e:%d: check failed: %s: ", __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static const char *need(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "azure_ops_e2e: %s is not set (source azsim.env)\n", name);
        exit(1);
    }
    return v;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = malloc(8192);
    va_start(ap, f);
    vsnprintf(s, 8192, f, ap);
    va_end(ap);
    return s;
}

/* ---- the checker's own requests (not the provider's) ---- */

static kvr_auth *reader;
static kvr_endpoints ep;
static const char *sub;
static kvr_provider *prov;

/* METHOD url (ARM or Graph by scope, Key Vault with scope NULL) -> status, *out the body. */
static long req(json_t **out, const char *scope, const char *method, const char *url,
                const char *body)
{
    kvr_http_response r;
    kvr_http_request q = {
        .method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0};
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    kvr_error err = {0};
    int rc, code = 0;
    long st;
    if (body)
        q.headers = hdr;
    kvr_http_response_init(&r);
    if (scope)
        rc = kvr_auth_send(&r, reader, scope, &q, &err);
    else
        rc = kvr_auth_send_kv(&r, &code, reader, &q, 1, &err);
    CHECK(rc == 0 && code == 0, "%s %s: %s", method, url, err.message);
    st = r.status;
    if (out)
        *out = r.body_len ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    kvr_http_response_release(&r);
    return st;
}

static char *arm_scope_s, *graph_scope_s;

static json_t *arm_get(long want, const char *path)
{
    json_t *j = NULL;
    char *url = fmt("%s%s", ep.arm, path);
    long st = req(&j, arm_scope_s, "GET", url, NULL);
    CHECK(st == want, "GET %s: %ld, not %ld", path, st, want);
    free(url);
    return j;
}

static json_t *graph_get(const char *path)
{
    json_t *j = NULL;
    char *url = fmt("%s%s", ep.graph, path);
    long st = req(&j, graph_scope_s, "GET", url, NULL);
    CHECK(st == 200, "GET %s: %ld", path, st);
    free(url);
    return j;
}

static long kv(json_t **out, const char *method, const char *vault, const char *path,
               const char *body)
{
    char *url = fmt("https://%s.%s%s%sapi-version=7.5", vault, ep.vault_suffix, path,
                    strchr(path, '?') ? "&" : "?");
    long st = req(out, NULL, method, url, body);
    free(url);
    return st;
}

static json_t *kv_get(const char *vault, const char *path)
{
    json_t *j = NULL;
    long st = kv(&j, "GET", vault, path, NULL);
    CHECK(st == 200, "GET %s%s: %ld", vault, path, st);
    return j;
}

static const char *jstr(const json_t *j, const char *path)
{
    /* "a.b.c" through objects */
    char buf[256], *save = NULL, *part;
    snprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part && j; part = strtok_r(NULL, ".", &save))
        j = json_object_get(j, part);
    return json_string_value(j);
}

/* The value of a Key Vault secret (latest, or a version). */
static char *secret_value(const char *vault, const char *name)
{
    char *path = fmt("/secrets/%s/", name);
    json_t *j = kv_get(vault, path);
    char *v = strdup(json_string_value(json_object_get(j, "value")));
    json_decref(j);
    free(path);
    return v;
}

/* Moves azsim's clock (its admin API takes no token), so that versions differ in `created`. */
static void advance(int seconds)
{
    char *url = fmt("%s/clock/advance", need("AZSIM_URL"));
    char *body = fmt("{\"seconds\":%d}", seconds);
    kvr_http *h = NULL;
    kvr_http_response r;
    kvr_http_request q = {.method = "POST", .url = url, .body = body, .body_len = strlen(body)};
    kvr_error err = {0};
    kvr_http_response_init(&r);
    CHECK(kvr_http_new(&h, NULL, &err) == 0 && kvr_http_send(&r, h, &q, &err) == 0 &&
              r.status == 200,
          "advance the clock: %ld %s", r.status, err.message);
    kvr_http_response_release(&r);
    kvr_http_free(h);
    free(url);
    free(body);
}

/* ---- carrying out operations ---- */

static void apply_ok(const kvr_op *op)
{
    kvr_error err = {0};
    int rc = prov->apply(prov, op, &err);
    CHECK(rc == 0, "%s: %d %s", kvr_op_kind_name(op->kind), rc, err.message);
    done_kind[op->kind] = true;
}

static int apply_fails(const kvr_op *op, kvr_error *err)
{
    int rc = prov->apply(prov, op, err);
    CHECK(rc < 0, "%s succeeded where it must fail", kvr_op_kind_name(op->kind));
    done_kind[op->kind] = true;
    return rc;
}

static kvr_strlist sl(const char *const *items, size_t n)
{
    return (kvr_strlist){.items = (char **)items, .len = n};
}

/* The permissions of family `fam` in the access-policy entry of `oid`, sorted, comma-joined. */
static char *perms_of(const json_t *vault, const char *oid, const char *fam)
{
    json_t *list = json_object_get(json_object_get(vault, "properties"), "accessPolicies"), *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        if (strcasecmp(jstr(e, "objectId"), oid) != 0)
            continue;
        json_t *a = json_object_get(json_object_get(e, "permissions"), fam);
        const char *names[64];
        size_t n = 0;
        char *out = calloc(1, 1024);
        for (size_t k = 0; k < json_array_size(a) && n < 64; k++)
            names[n++] = json_string_value(json_array_get(a, k));
        for (size_t x = 0; x < n; x++) /* insertion sort, case-insensitive */
            for (size_t y = x; y > 0 && strcasecmp(names[y - 1], names[y]) > 0; y--) {
                const char *t = names[y];
                names[y] = names[y - 1];
                names[y - 1] = t;
            }
        for (size_t x = 0; x < n; x++)
            snprintf(out + strlen(out), 1024 - strlen(out), "%s%s", x ? "," : "", names[x]);
        return out;
    }
    return strdup("(no entry)");
}

/* A fresh self-signed certificate with its key, as PEM (PKCS#8 key, then the certificate). */
static char *make_cert_pem(void)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    X509 *cert = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    long n;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 11);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 30L * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)"kvr-ops-e2e", -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_sign(cert, key, EVP_sha256());
    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    PEM_write_bio_X509(bio, cert);
    n = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    X509_free(cert);
    EVP_PKEY_free(key);
    return out;
}

static size_t count_versions(const char *vault, const char *coll, const char *name)
{
    char *path = fmt("/%s/%s/versions", coll, name);
    json_t *j = kv_get(vault, path);
    size_t n = json_array_size(json_object_get(j, "value"));
    json_decref(j);
    free(path);
    return n;
}

int main(void)
{
    const char *rg = "kvr-ops";
    const char *crypto_user = "12338af0-0e69-4776-bea7-57ae8d297424";
    kvr_http_config hc;
    kvr_http *h = NULL;
    kvr_auth_config ac;
    kvr_auth *auth = NULL;
    kvr_marker_key mk;
    kvr_error err = {0};
    char va[32], vb[32];
    int rc;

    sub = need("AZURE_SUBSCRIPTION_ID");
    need("AZSIM_URL");
    kvr_http_config_init(&hc);
    hc.backoff_base_ms = 200;
    hc.backoff_max_ms = 2000;
    CHECK(kvr_http_new(&h, &hc, &err) == 0, "%s", err.message);
    kvr_auth_config_from_env(&ac);
    CHECK(kvr_auth_new(&auth, h, &ac, &err) == 0, "%s", err.message);
    CHECK(kvr_auth_new(&reader, h, &ac, &err) == 0, "%s", err.message);
    CHECK(kvr_endpoints_resolve(&ep, NULL, &err) == 0, "%s", err.message);
    CHECK(ep.profiles != NULL, "KVR_PROFILE_ENDPOINT is not set");
    CHECK(kvr_marker_key_init(&mk, &err) == 0, "%s", err.message);
    arm_scope_s = fmt("%s/.default", ep.arm);
    graph_scope_s = fmt("%s/.default", ep.graph);
    rc = kvr_azure_provider_new(&prov, auth, &ep, &mk, &err);
    CHECK(rc == 0 && prov && prov->version == KVR_PROVIDER_VERSION &&
              strcmp(prov->name, "azure") == 0,
          "provider: %s", err.message);
    snprintf(va, sizeof(va), "kvrops%da", (int)getpid() % 100000);
    snprintf(vb, sizeof(vb), "kvrops%db", (int)getpid() % 100000);
    char *vault_path_a = fmt("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                             "vaults/%s?api-version=2024-11-01",
                             sub, rg, va);
    char *vault_path_b = fmt("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                             "vaults/%s?api-version=2024-11-01",
                             sub, rg, vb);
    char *scope_a = fmt("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                        "vaults/%s",
                        sub, rg, va);

    /* ---- an unresolved operation is refused before any request ---- */
    {
        kvr_op op = {.kind = KVR_OP_ROLE_ASSIGN};
        op.u.role.scope = scope_a;
        op.u.role.role_id = crypto_user;
        op.u.role.principal_id = KVR_PLAN_NEW_PRINCIPAL;
        op.u.role.principal_name = "kvr-ops-app";
        rc = prov->apply(prov, &op, &err);
        CHECK(rc == KVR_EINVAL && strstr(err.message, "roleAssign"), "unresolved: %d %s", rc,
              err.message);
        op.kind = KVR_OP_KEY_PATCH;
        op.u.key_patch.vault = va;
        op.u.key_patch.name = "k1";
        op.u.key_patch.version = KVR_PLAN_NEW_VERSION;
        rc = prov->apply(prov, &op, &err);
        CHECK(rc == KVR_EINVAL, "unresolved key patch: %d %s", rc, err.message);
    }

    /* ---- VAULT_PUT: an RBAC vault in a resource group that does not exist yet ---- */
    {
        static const char *const ips[] = {"10.1.2.3/32", "192.0.2.0/24"};
        kvr_tag tags[] = {{(char *)"env", (char *)"e2e"}};
        kvr_op op = {.kind = KVR_OP_VAULT_PUT};
        op.u.vault.ref = (kvr_op_vault_ref){sub, rg, va};
        op.u.vault.props.location = "westeurope";
        op.u.vault.props.sku = KVR_SKU_STANDARD;
        op.u.vault.props.rbac = true;
        op.u.vault.props.soft_delete_days = 7;
        op.u.vault.props.network.set = true;
        op.u.vault.props.network.default_action = (char *)"Deny";
        op.u.vault.props.network.bypass = (char *)"AzureServices";
        op.u.vault.props.network.ip_rules = sl(ips, 2);
        op.u.vault.set_tags = true;
        op.u.vault.tags = (kvr_tags){tags, 1};
        apply_ok(&op);
        char *rgp = fmt("/subscriptions/%s/resourceGroups/%s?api-version=2021-04-01", sub, rg);
        json_decref(arm_get(200, rgp));
        free(rgp);
        json_t *v = arm_get(200, vault_path_a);
        json_t *acl = json_object_get(json_object_get(v, "properties"), "networkAcls");
        CHECK(strcmp(jstr(acl, "defaultAction"), "Deny") == 0, "defaultAction");
        CHECK(json_array_size(json_object_get(acl, "ipRules")) == 2 &&
                  strstr(jstr(json_array_get(json_object_get(acl, "ipRules"), 0), "value"),
                         "10.1.2.3"),
              "ipRules");
        CHECK(strcmp(jstr(v, "tags.env"), "e2e") == 0, "tags");
        CHECK(json_is_true(
                  json_object_get(json_object_get(v, "properties"), "enableRbacAuthorization")),
              "rbac");
        json_decref(v);
    }

    /* ---- APP_UPSERT twice (one app), SP_UPSERT ---- */
    char *app_id, *app_oid, *sp_id;
    {
        static const char *const marker[] = {"kvr-managed:ops-estate"};
        kvr_op op = {.kind = KVR_OP_APP_UPSERT};
        op.u.app.display_name = "kvr-ops-app";
        op.u.app.audience = "AzureADMyOrg";
        op.u.app.tags = sl(marker, 1);
        apply_ok(&op);
        apply_ok(&op);
        json_t *l = graph_get("/v1.0/applications?$filter=displayName%20eq%20%27kvr-ops-app%27");
        CHECK(json_array_size(json_object_get(l, "value")) == 1, "apps named kvr-ops-app: %zu",
              json_array_size(json_object_get(l, "value")));
        json_t *a = json_array_get(json_object_get(l, "value"), 0);
        app_id = strdup(jstr(a, "appId"));
        app_oid = strdup(jstr(a, "id"));
        CHECK(strcmp(jstr(a, "signInAudience"), "AzureADMyOrg") == 0, "audience");
        CHECK(json_array_size(json_object_get(a, "tags")) == 1 &&
                  strcmp(json_string_value(json_array_get(json_object_get(a, "tags"), 0)),
                         "kvr-managed:ops-estate") == 0,
              "the app is made with its marker");
        json_decref(l);
        l = graph_get("/v1.0/applications?$filter=tags/any(t:t%20eq%20%27kvr-managed:ops-estate%27)");
        CHECK(json_array_size(json_object_get(l, "value")) == 1, "found by its marker: %zu",
              json_array_size(json_object_get(l, "value")));
        json_decref(l);

        /* APP_TAGS replaces the whole list */
        static const char *const two[] = {"kvr-managed:ops-estate", "kvr-retiring-since:x=1"};
        op = (kvr_op){.kind = KVR_OP_APP_TAGS};
        op.u.app_tags.object_id = app_oid;
        op.u.app_tags.name = "kvr-ops-app";
        op.u.app_tags.tags = sl(two, 2);
        apply_ok(&op);
        char *ap = fmt("/v1.0/applications/%s", app_oid);
        l = graph_get(ap);
        CHECK(json_array_size(json_object_get(l, "tags")) == 2 &&
                  strcmp(json_string_value(json_array_get(json_object_get(l, "tags"), 1)),
                         "kvr-retiring-since:x=1") == 0,
              "tags replaced");
        json_decref(l);
        free(ap);

        op = (kvr_op){.kind = KVR_OP_SP_UPSERT};
        op.u.sp.app_id = app_id;
        op.u.sp.display_name = "kvr-ops-app";
        apply_ok(&op);
        apply_ok(&op);
        char *q = fmt("/v1.0/servicePrincipals?$filter=appId%%20eq%%20%%27%s%%27", app_id);
        l = graph_get(q);
        CHECK(json_array_size(json_object_get(l, "value")) == 1, "service principals");
        sp_id = strdup(jstr(json_array_get(json_object_get(l, "value"), 0), "id"));
        json_decref(l);
        free(q);
    }

    /* ---- VAULT_PUT of an access-policy vault: the app's entry and the runner's own ---- */
    {
        static const char *const keys[] = {"get", "list"}, *const secrets[] = {"get"};
        kvr_op_policy pol = {.object_id = sp_id, .who = "kvr-ops-app"};
        pol.keys = sl(keys, 2);
        pol.secrets = sl(secrets, 1);
        kvr_op op = {.kind = KVR_OP_VAULT_PUT};
        op.u.vault.ref = (kvr_op_vault_ref){sub, rg, vb};
        op.u.vault.props.location = "westeurope";
        op.u.vault.props.sku = KVR_SKU_PREMIUM;
        op.u.vault.props.rbac = false;
        op.u.vault.props.soft_delete_days = 7;
        op.u.vault.policies = &pol;
        op.u.vault.npolicies = 1;
        op.u.vault.self_access = true;
        apply_ok(&op);
        json_t *v = arm_get(200, vault_path_b);
        json_t *list = json_object_get(json_object_get(v, "properties"), "accessPolicies");
        char *k = perms_of(v, sp_id, "keys"), *s = perms_of(v, sp_id, "secrets"),
             *c = perms_of(v, sp_id, "certificates");
        CHECK(strcmp(k, "get,list") == 0 && strcmp(s, "get") == 0 && strcmp(c, "") == 0,
              "app entry: keys %s secrets %s certificates %s", k, s, c);
        CHECK(json_array_size(list) == 2, "%zu entries (the app's and the runner's)",
              json_array_size(list));
        CHECK(strcmp(jstr(v, "properties.sku.name"), "premium") == 0, "sku");
        free(k);
        free(s);
        free(c);
        json_decref(v);
    }

    /* ---- VAULT_POLICY_EDIT: add, then remove; exactly those permissions change ---- */
    {
        static const char *const add_keys[] = {"wrapKey", "get"}, *const rm_keys[] = {"list"};
        static const char *const certs[] = {"get"};
        kvr_op_policy pol = {.object_id = sp_id, .who = "kvr-ops-app"};
        pol.keys = sl(add_keys, 2);
        pol.certificates = sl(certs, 1);
        kvr_op op = {.kind = KVR_OP_VAULT_POLICY_EDIT};
        op.u.policy.ref = (kvr_op_vault_ref){sub, rg, vb};
        op.u.policy.entries = &pol;
        op.u.policy.nentries = 1;
        apply_ok(&op);
        json_t *v = arm_get(200, vault_path_b);
        char *k = perms_of(v, sp_id, "keys"), *c = perms_of(v, sp_id, "certificates");
        CHECK(strcmp(k, "get,list,wrapKey") == 0 && strcmp(c, "get") == 0,
              "after add: keys %s certificates %s", k, c);
        free(k);
        free(c);
        json_decref(v);
        pol = (kvr_op_policy){.object_id = sp_id, .who = "kvr-ops-app"};
        pol.keys = sl(rm_keys, 1);
        pol.certificates = sl(certs, 1);
        op.u.policy.remove = true;
        apply_ok(&op);
        v = arm_get(200, vault_path_b);
        k = perms_of(v, sp_id, "keys");
        char *s = perms_of(v, sp_id, "secrets");
        c = perms_of(v, sp_id, "certificates");
        CHECK(strcmp(k, "get,wrapKey") == 0 && strcmp(s, "get") == 0 && strcmp(c, "") == 0,
              "after remove: keys %s secrets %s certificates %s", k, s, c);
        CHECK(json_array_size(
                  json_object_get(json_object_get(v, "properties"), "accessPolicies")) == 2,
              "the runner's entry stays");
        free(k);
        free(s);
        free(c);
        json_decref(v);
    }

    /* ---- VAULT_PATCH: tags only, then properties only ---- */
    {
        kvr_tag tags[] = {{(char *)"env", (char *)"prod"},
                          {(char *)KVR_TAG_SUPERSEDED, (char *)"1700000000"}};
        kvr_op op = {.kind = KVR_OP_VAULT_PATCH};
        op.u.vault.ref = (kvr_op_vault_ref){sub, rg, va};
        op.u.vault.set_tags = true;
        op.u.vault.tags = (kvr_tags){tags, 2};
        apply_ok(&op);
        json_t *v = arm_get(200, vault_path_a);
        CHECK(strcmp(jstr(v, "tags.env"), "prod") == 0 &&
                  strcmp(jstr(v, "tags." KVR_TAG_SUPERSEDED), "1700000000") == 0,
              "patched tags");
        CHECK(strcmp(jstr(v, "properties.networkAcls.defaultAction"), "Deny") == 0,
              "a tags-only patch leaves the network rules");
        json_decref(v);
        op.u.vault.set_tags = false;
        op.u.vault.set_props = true;
        op.u.vault.props.rbac = true;
        op.u.vault.props.sku = KVR_SKU_STANDARD;
        op.u.vault.props.network.set = true;
        op.u.vault.props.network.default_action = (char *)"Allow";
        op.u.vault.props.network.bypass = (char *)"None";
        op.u.vault.props.network.public_access = (char *)"Enabled";
        apply_ok(&op);
        v = arm_get(200, vault_path_a);
        CHECK(strcmp(jstr(v, "properties.networkAcls.defaultAction"), "Allow") == 0 &&
                  strcmp(jstr(v, "properties.networkAcls.bypass"), "None") == 0 &&
                  json_array_size(json_object_get(
                      json_object_get(json_object_get(v, "properties"), "networkAcls"),
                      "ipRules")) == 0,
              "patched network rules");
        CHECK(strcmp(jstr(v, "tags.env"), "prod") == 0, "a properties-only patch keeps tags");
        json_decref(v);
    }

    /* ---- KEY_CREATE (with the rotation policy) twice: two versions ---- */
    char *v1, *v2;
    {
        kvr_tag tags[] = {{(char *)KVR_TAG_GENERATION, (char *)"g1"}};
        kvr_op op = {.kind = KVR_OP_KEY_CREATE};
        op.u.key.vault = va;
        op.u.key.name = "k1";
        op.u.key.kty = "RSA";
        op.u.key.size = 2048;
        op.u.key.ops = KVR_OP_ENCRYPT | KVR_OP_DECRYPT | KVR_OP_WRAP | KVR_OP_UNWRAP;
        op.u.key.tags = (kvr_tags){tags, 1};
        op.u.key.set_rotation = true;
        op.u.key.rotation = (kvr_rotation){.set = true,
                                           .every = 90 * 86400,
                                           .expires_after = 180 * 86400,
                                           .notify_before = 30 * 86400};
        apply_ok(&op);
        json_t *k = kv_get(va, "/keys/k1/");
        CHECK(strcmp(jstr(k, "tags." KVR_TAG_GENERATION), "g1") == 0, "generation tag");
        CHECK(json_array_size(json_object_get(json_object_get(k, "key"), "key_ops")) == 4,
              "key_ops");
        char buf[80];
        v1 = strdup(kvr_id_last(jstr(k, "key.kid"), buf, sizeof(buf)));
        json_decref(k);
        json_t *p = kv_get(va, "/keys/k1/rotationpolicy");
        json_t *acts = json_object_get(p, "lifetimeActions");
        CHECK(json_array_size(acts) == 2 &&
                  strcmp(jstr(json_array_get(acts, 0), "trigger.timeAfterCreate"), "P90D") == 0 &&
                  strcmp(jstr(p, "attributes.expiryTime"), "P180D") == 0,
              "rotation policy");
        json_decref(p);
        tags[0].value = (char *)"g2";
        op.u.key.set_rotation = false;
        apply_ok(&op);
        CHECK(count_versions(va, "keys", "k1") == 2, "two versions");
        k = kv_get(va, "/keys/k1/");
        v2 = strdup(kvr_id_last(jstr(k, "key.kid"), buf, sizeof(buf)));
        CHECK(strcmp(v1, v2) != 0, "a new version");
        json_decref(k);
    }

    /* ---- KEY_PATCH: the first version disabled with an expiry; the latest's operations ---- */
    {
        kvr_op op = {.kind = KVR_OP_KEY_PATCH};
        op.u.key_patch.vault = va;
        op.u.key_patch.name = "k1";
        op.u.key_patch.version = v1;
        op.u.key_patch.set_enabled = true;
        op.u.key_patch.enabled = false;
        op.u.key_patch.set_exp = true;
        op.u.key_patch.exp = 1900000000;
        apply_ok(&op);
        char *path = fmt("/keys/k1/%s", v1);
        json_t *k = kv_get(va, path);
        json_t *attrs = json_object_get(k, "attributes");
        CHECK(json_is_false(json_object_get(attrs, "enabled")) &&
                  json_integer_value(json_object_get(attrs, "exp")) == 1900000000,
              "version 1 disabled");
        json_decref(k);
        free(path);
        op = (kvr_op){.kind = KVR_OP_KEY_PATCH};
        op.u.key_patch.vault = va;
        op.u.key_patch.name = "k1";
        op.u.key_patch.set_ops = true;
        op.u.key_patch.ops = KVR_OP_WRAP | KVR_OP_UNWRAP;
        apply_ok(&op);
        k = kv_get(va, "/keys/k1/");
        json_t *ops = json_object_get(json_object_get(k, "key"), "key_ops");
        CHECK(json_array_size(ops) == 2 &&
                  strcmp(json_string_value(json_array_get(ops, 0)), "wrapKey") == 0,
              "latest key_ops");
        CHECK(json_is_true(json_object_get(json_object_get(k, "attributes"), "enabled")),
              "latest still enabled");
        json_decref(k);
    }

    /* ---- KEY_ROTATION_POLICY alone ---- */
    {
        kvr_op op = {.kind = KVR_OP_KEY_ROTATION_POLICY};
        op.u.key.vault = va;
        op.u.key.name = "k1";
        op.u.key.rotation =
            (kvr_rotation){.set = true, .before_expiry = 30 * 86400, .expires_after = 365 * 86400};
        apply_ok(&op);
        json_t *p = kv_get(va, "/keys/k1/rotationpolicy");
        json_t *acts = json_object_get(p, "lifetimeActions");
        CHECK(json_array_size(acts) == 1 &&
                  strcmp(jstr(json_array_get(acts, 0), "trigger.timeBeforeExpiry"), "P30D") == 0,
              "rotation policy replaced");
        json_decref(p);
    }

    /* ---- TAG_SET on a key version: the other tags stay ---- */
    {
        kvr_op op = {.kind = KVR_OP_TAG_SET};
        op.u.tag.collection = KVR_COLL_KEYS;
        op.u.tag.vault = va;
        op.u.tag.name = "k1";
        op.u.tag.version = v1;
        op.u.tag.tag = KVR_TAG_SUPERSEDED;
        op.u.tag.value = "1800000000";
        apply_ok(&op);
        char *path = fmt("/keys/k1/%s", v1);
        json_t *k = kv_get(va, path);
        CHECK(strcmp(jstr(k, "tags." KVR_TAG_SUPERSEDED), "1800000000") == 0 &&
                  strcmp(jstr(k, "tags." KVR_TAG_GENERATION), "g1") == 0,
              "version tags");
        json_decref(k);
        free(path);
    }

    /* ---- SECRET_SET from every source ---- */
    {
        kvr_tag tags[] = {{(char *)"owner", (char *)"ops"}};
        kvr_op op = {.kind = KVR_OP_SECRET_SET};
        op.u.secret.vault = va;
        op.u.secret.name = "s-gen";
        op.u.secret.content_type = "text/plain";
        op.u.secret.tags = (kvr_tags){tags, 1};
        op.u.secret.value =
            (kvr_op_value){.kind = KVR_OP_VALUE_GENERATE, .length = 40, .charset = KVR_CHARSET_HEX};
        apply_ok(&op);
        char *gen = secret_value(va, "s-gen");
        CHECK(strlen(gen) == 40 && strspn(gen, "0123456789abcdef") == 40, "generated value");
        json_t *s = kv_get(va, "/secrets/s-gen/");
        CHECK(strcmp(jstr(s, "contentType"), "text/plain") == 0 &&
                  strcmp(jstr(s, "tags.owner"), "ops") == 0,
              "content type and tags");
        json_decref(s);

        setenv("KVR_OPS_E2E_VALUE", "value-from-the-environment", 1);
        op.u.secret.name = "s-env";
        op.u.secret.value = (kvr_op_value){.kind = KVR_OP_VALUE_ENV, .env = "KVR_OPS_E2E_VALUE"};
        apply_ok(&op);
        char *v = secret_value(va, "s-env");
        CHECK(strcmp(v, "value-from-the-environment") == 0, "env value");
        free(v);

        char path[] = "/tmp/kvr-ops-e2e.XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0 && write(fd, "value-from-a-file", 17) == 17, "temp file");
        close(fd);
        op.u.secret.name = "s-file";
        op.u.secret.value = (kvr_op_value){.kind = KVR_OP_VALUE_FILE, .path = path};
        apply_ok(&op);
        unlink(path);
        v = secret_value(va, "s-file");
        CHECK(strcmp(v, "value-from-a-file") == 0, "file value");
        free(v);

        op.u.secret.name = "s-stored";
        op.u.secret.value =
            (kvr_op_value){.kind = KVR_OP_VALUE_STORED, .vault = va, .secret = "s-gen"};
        apply_ok(&op);
        v = secret_value(va, "s-stored");
        CHECK(strcmp(v, gen) == 0, "stored value");
        free(v);

        unsetenv("KVR_OPS_E2E_VALUE");
        op.u.secret.name = "s-env";
        op.u.secret.value = (kvr_op_value){.kind = KVR_OP_VALUE_ENV, .env = "KVR_OPS_E2E_VALUE"};
        rc = apply_fails(&op, &err);
        CHECK(rc == KVR_ENOTFOUND && strstr(err.message, "KVR_OPS_E2E_VALUE") &&
                  strstr(err.message, "'s-env'"),
              "unset variable: %d %s", rc, err.message);
        v = secret_value(va, "s-env");
        CHECK(strcmp(v, "value-from-the-environment") == 0, "nothing written");
        free(v);
        free(gen);
    }

    /* ---- SECRET_PATCH, then TAG_SET on the latest version of a secret ---- */
    {
        kvr_tag tags[] = {{(char *)"team", (char *)"blue"}};
        kvr_op op = {.kind = KVR_OP_SECRET_PATCH};
        op.u.secret_patch.vault = va;
        op.u.secret_patch.name = "s-env";
        op.u.secret_patch.content_type = "application/x-test";
        op.u.secret_patch.tags = (kvr_tags){tags, 1};
        apply_ok(&op);
        op = (kvr_op){.kind = KVR_OP_TAG_SET};
        op.u.tag.collection = KVR_COLL_SECRETS;
        op.u.tag.vault = va;
        op.u.tag.name = "s-env";
        op.u.tag.tag = KVR_TAG_SUPERSEDED;
        op.u.tag.value = "1750000000";
        apply_ok(&op);
        json_t *s = kv_get(va, "/secrets/s-env/");
        CHECK(strcmp(jstr(s, "contentType"), "application/x-test") == 0 &&
                  strcmp(jstr(s, "tags.team"), "blue") == 0 &&
                  strcmp(jstr(s, "tags." KVR_TAG_SUPERSEDED), "1750000000") == 0 &&
                  !json_object_get(json_object_get(s, "tags"), "owner"),
              "patched secret");
        json_decref(s);
    }

    /* ---- SECRET_COPY: the latest, then every enabled version oldest first ---- */
    {
        kvr_op op = {.kind = KVR_OP_SECRET_COPY};
        op.u.copy.from = va;
        op.u.copy.to = vb;
        op.u.copy.name = "s-env";
        op.u.copy.content_type = "application/x-test";
        apply_ok(&op);
        char *a = secret_value(va, "s-env"), *b = secret_value(vb, "s-env");
        CHECK(strcmp(a, b) == 0, "latest copy equals its source");
        free(a);
        free(b);
        json_t *s = kv_get(vb, "/secrets/s-env/");
        CHECK(strcmp(jstr(s, "tags.team"), "blue") == 0 &&
                  strcmp(jstr(s, "contentType"), "application/x-test") == 0,
              "copy's tags and content type");
        json_decref(s);

        const char *vals[] = {"{\"value\":\"one\"}", "{\"value\":\"two\"}",
                              "{\"value\":\"three\"}"};
        char *mid = NULL;
        for (int i = 0; i < 3; i++) {
            json_t *j = NULL;
            CHECK(kv(&j, "PUT", va, "/secrets/s-multi", vals[i]) == 200, "seed version %d", i);
            advance(2); /* created: one version a second is not told apart */
            char buf[80];
            if (i == 1)
                mid = strdup(kvr_id_last(jstr(j, "id"), buf, sizeof(buf)));
            json_decref(j);
        }
        char *mpath = fmt("/secrets/s-multi/%s", mid);
        CHECK(kv(NULL, "PATCH", va, mpath, "{\"attributes\":{\"enabled\":false}}") == 200,
              "disable the middle version");
        free(mpath);
        free(mid);
        op.u.copy.name = "s-multi";
        op.u.copy.content_type = NULL;
        op.u.copy.all_versions = true;
        apply_ok(&op);
        CHECK(count_versions(vb, "secrets", "s-multi") == 2, "two enabled versions copied: %zu",
              count_versions(vb, "secrets", "s-multi"));
        b = secret_value(vb, "s-multi");
        CHECK(strcmp(b, "three") == 0, "the latest stays the latest: %s", b);
        free(b);
    }

    /* ---- CERT_COPY: a certificate with its exportable key ---- */
    {
        char *pem = make_cert_pem();
        json_t *body =
            json_pack("{s:s,s:{s:{s:b,s:s,s:i,s:b},s:{s:s}}}", "value", pem, "policy", "key_props",
                      "exportable", 1, "kty", "RSA", "key_size", 2048, "reuse_key", 0,
                      "secret_props", "contentType", "application/x-pem-file");
        char *text = json_dumps(body, JSON_COMPACT);
        json_t *j = NULL;
        long st = kv(&j, "POST", va, "/certificates/c1/import", text);
        CHECK(st == 200, "import c1: %ld", st);
        json_decref(j);
        free(text);
        json_decref(body);
        free(pem);
        kvr_op op = {.kind = KVR_OP_CERT_COPY};
        op.u.copy.from = va;
        op.u.copy.to = vb;
        op.u.copy.name = "c1";
        apply_ok(&op);
        json_t *a = kv_get(va, "/certificates/c1/"), *b = kv_get(vb, "/certificates/c1/");
        CHECK(jstr(a, "x5t") && jstr(b, "x5t") && strcmp(jstr(a, "x5t"), jstr(b, "x5t")) == 0,
              "the copy is the same certificate");
        json_decref(a);
        json_decref(b);
    }

    /* ---- PASSWORD_ADD: added and stored with its keyId; a store that fails removes it ---- */
    char *key_id;
    {
        kvr_op op = {.kind = KVR_OP_PASSWORD_ADD};
        op.u.password.app_object_id = app_oid;
        op.u.password.app_name = "kvr-ops-app";
        op.u.password.display_name = KVR_CRED_PREFIX "c1";
        op.u.password.end = 1900000000;
        op.u.password.store_vault = va;
        op.u.password.store_secret = "app-cred";
        apply_ok(&op);
        char *path = fmt("/v1.0/applications/%s", app_oid);
        json_t *a = graph_get(path);
        json_t *creds = json_object_get(a, "passwordCredentials");
        CHECK(json_array_size(creds) == 1 &&
                  strcmp(jstr(json_array_get(creds, 0), "displayName"), "kvr:c1") == 0,
              "one password credential");
        key_id = strdup(jstr(json_array_get(creds, 0), "keyId"));
        json_decref(a);
        json_t *s = kv_get(va, "/secrets/app-cred/");
        CHECK(strcmp(jstr(s, "tags." KVR_TAG_CREDENTIAL), key_id) == 0 &&
                  strcmp(jstr(s, "contentType"), "text/plain") == 0 &&
                  strlen(jstr(s, "value")) >= 16,
              "stored with its keyId");
        json_decref(s);

        op.u.password.display_name = KVR_CRED_PREFIX "c2";
        op.u.password.store_secret = "not_a_valid_name";
        rc = apply_fails(&op, &err);
        CHECK(strstr(err.message, "not_a_valid_name") != NULL, "failed store: %s", err.message);
        a = graph_get(path);
        creds = json_object_get(a, "passwordCredentials");
        CHECK(json_array_size(creds) == 1 &&
                  strcmp(jstr(json_array_get(creds, 0), "keyId"), key_id) == 0,
              "the unstored password was removed again (%zu)", json_array_size(creds));
        json_decref(a);
        free(path);
    }

    /* ---- probe before and after ROLE_ASSIGN; ROLE_ASSIGN twice is one assignment ---- */
    {
        kvr_probe pr = {.app_name = "kvr-ops-app",
                        .client_id = app_id,
                        .secret_vault = va,
                        .secret_name = "app-cred",
                        .vault = va,
                        .key = "k1"};
        rc = prov->probe(prov, &pr, &err);
        CHECK(rc == KVR_EFORBIDDEN || rc == KVR_EAUTH, "probe without a grant: %d %s", rc,
              err.message);
        kvr_op op = {.kind = KVR_OP_ROLE_ASSIGN};
        op.u.role.scope = scope_a;
        op.u.role.role_id = crypto_user;
        op.u.role.role_name = "Key Vault Crypto User";
        op.u.role.principal_id = sp_id;
        op.u.role.principal_name = "kvr-ops-app";
        apply_ok(&op);
        apply_ok(&op);
        char *q = fmt("%s/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
                      "&$filter=principalId%%20eq%%20%%27%s%%27",
                      scope_a, sp_id);
        json_t *l = arm_get(200, q);
        json_t *items = json_object_get(l, "value");
        CHECK(json_array_size(items) == 1, "%zu assignments after two", json_array_size(items));
        const char *def = jstr(json_array_get(items, 0), "properties.roleDefinitionId");
        CHECK(def && strstr(def, crypto_user) && strstr(def, sub), "role definition %s", def);
        char *name = strdup(jstr(json_array_get(items, 0), "name"));
        json_decref(l);
        rc = prov->probe(prov, &pr, &err);
        CHECK(rc == 0, "probe with the grant: %d %s", rc, err.message);

        /* ---- PROFILE_PUT (create, credentials), PROFILE_APPLY, PROFILE_DELETE ---- */
        kvr_op po = {.kind = KVR_OP_PROFILE_PUT};
        po.u.profile.name = "p1";
        po.u.profile.create = true;
        po.u.profile.client_id = app_id;
        po.u.profile.credential = "c1";
        po.u.profile.secret_vault = va;
        po.u.profile.secret_name = "app-cred";
        po.u.profile.key_vault = va;
        po.u.profile.key_name = "k1";
        po.u.profile.key_version = v2;
        apply_ok(&po);
        po.u.profile.name = "p2";
        apply_ok(&po);
        char *purl = fmt("%s/encryptionProfiles/p1?api-version=2026-01-01", ep.profiles);
        char *pscope = fmt("%s/.default", ep.profiles);
        json_t *p = NULL;
        CHECK(req(&p, pscope, "GET", purl, NULL) == 200, "profile p1");
        CHECK(strstr(jstr(p, "keyId"), v2) && strcmp(jstr(p, "clientId"), app_id) == 0 &&
                  strcmp(jstr(p, "metadata.kvr-credential"), "c1") == 0,
              "profile p1's key, client and credential");
        json_decref(p);
        po.u.profile.name = "p1";
        po.u.profile.create = false;
        po.u.profile.credential = "c1b";
        apply_ok(&po);
        CHECK(req(&p, pscope, "GET", purl, NULL) == 200 &&
                  strcmp(jstr(p, "metadata.kvr-credential"), "c1b") == 0,
              "credentials set");
        json_decref(p);
        po = (kvr_op){.kind = KVR_OP_PROFILE_APPLY};
        po.u.profile.name = "p1";
        apply_ok(&po);
        CHECK(req(&p, pscope, "GET", purl, NULL) == 200 &&
                  (strcmp(jstr(p, "status"), "Applying") == 0 ||
                   strcmp(jstr(p, "status"), "Used") == 0),
              "p1 applied: %s", jstr(p, "status"));
        json_decref(p);
        po = (kvr_op){.kind = KVR_OP_PROFILE_DELETE};
        po.u.profile.name = "p2";
        apply_ok(&po);
        free(purl);
        purl = fmt("%s/encryptionProfiles/p2?api-version=2026-01-01", ep.profiles);
        CHECK(req(NULL, pscope, "GET", purl, NULL) == 404, "p2 deleted");
        free(purl);
        free(pscope);

        /* ---- ROLE_REMOVE by name, twice (one already gone is fine) ---- */
        op = (kvr_op){.kind = KVR_OP_ROLE_REMOVE};
        op.u.role.scope = scope_a;
        op.u.role.role_id = crypto_user;
        op.u.role.principal_id = sp_id;
        op.u.role.principal_name = "kvr-ops-app";
        op.u.role.name = name;
        apply_ok(&op);
        apply_ok(&op);
        l = arm_get(200, q);
        CHECK(json_array_size(json_object_get(l, "value")) == 0, "assignment removed");
        json_decref(l);
        free(q);
        free(name);
    }

    /* ---- PASSWORD_REMOVE ---- */
    {
        kvr_op op = {.kind = KVR_OP_PASSWORD_REMOVE};
        op.u.password.app_object_id = app_oid;
        op.u.password.app_name = "kvr-ops-app";
        op.u.password.key_id = key_id;
        apply_ok(&op);
        char *path = fmt("/v1.0/applications/%s", app_oid);
        json_t *a = graph_get(path);
        CHECK(json_array_size(json_object_get(a, "passwordCredentials")) == 0, "password removed");
        json_decref(a);
        free(path);
    }

    /* ---- APP_DELETE: gone from the applications, restorable from deleted items ---- */
    {
        kvr_op op = {.kind = KVR_OP_APP_DELETE};
        op.u.app_tags.object_id = app_oid;
        op.u.app_tags.name = "kvr-ops-app";
        apply_ok(&op);
        apply_ok(&op); /* one already gone is fine */
        char *path = fmt("%s/v1.0/applications/%s", ep.graph, app_oid);
        json_t *j = NULL;
        CHECK(req(&j, graph_scope_s, "GET", path, NULL) == 404, "app deleted");
        json_decref(j);
        free(path);
        path = fmt("/v1.0/directory/deletedItems/%s", app_oid);
        j = graph_get(path);
        CHECK(jstr(j, "deletedDateTime") != NULL, "in deleted items, with its deletion time");
        json_decref(j);
        free(path);

        /* APP_RESTORE: the same app again, its id and appId kept */
        op = (kvr_op){.kind = KVR_OP_APP_RESTORE};
        op.u.app_tags.object_id = app_oid;
        op.u.app_tags.name = "kvr-ops-app";
        apply_ok(&op);
        path = fmt("/v1.0/applications/%s", app_oid);
        j = graph_get(path);
        CHECK(strcmp(jstr(j, "appId"), app_id) == 0, "restored with its appId");
        json_decref(j);
        free(path);
    }

    /* ---- OBJECT_DELETE and OBJECT_RECOVER, keys and secrets ---- */
    {
        kvr_op op = {.kind = KVR_OP_OBJECT_DELETE};
        op.u.object.collection = KVR_COLL_SECRETS;
        op.u.object.vault = va;
        op.u.object.name = "s-file";
        apply_ok(&op);
        CHECK(kv(NULL, "GET", va, "/secrets/s-file/", NULL) == 404, "secret deleted");
        json_decref(kv_get(va, "/deletedsecrets/s-file"));
        op.u.object.collection = KVR_COLL_KEYS;
        op.u.object.name = "k1";
        apply_ok(&op);
        CHECK(kv(NULL, "GET", va, "/keys/k1/", NULL) == 404, "key deleted");
        json_decref(kv_get(va, "/deletedkeys/k1"));
        op.kind = KVR_OP_OBJECT_RECOVER;
        apply_ok(&op);
        CHECK(count_versions(va, "keys", "k1") == 2, "key recovered with its versions");
        op.u.object.collection = KVR_COLL_SECRETS;
        op.u.object.name = "s-file";
        apply_ok(&op);
        char *v = secret_value(va, "s-file");
        CHECK(strcmp(v, "value-from-a-file") == 0, "secret recovered");
        free(v);
    }

    /* ---- read_back, then read: the marker of a value read back is the value's ---- */
    {
        const char *vaults[] = {va}, *names[] = {"s-env"};
        rc = prov->read_back(prov, vaults, names, 1, &err);
        CHECK(rc == 1, "read back: %d %s", rc, err.message);
        kvr_scope_vault sv = {.name = va, .resource_group = rg};
        kvr_scope_object so = {.vault = va, .name = "s-env", .value = true};
        kvr_scope scope = {
            .subscription = sub, .vaults = &sv, .nvaults = 1, .secrets = &so, .nsecrets = 1};
        kvr_live *l = NULL;
        rc = prov->read(prov, &l, &scope, &err);
        CHECK(rc == 0 && l, "read: %d %s", rc, err.message);
        const kvr_live_vault *lv = kvr_live_vault_get(l, va);
        CHECK(lv && lv->rbac && strcmp(kvr_tags_get(&lv->tags, "env"), "prod") == 0,
              "the vault as read");
        const kvr_live_secret *ls = kvr_live_secret_get(l, va, "s-env");
        char *val = secret_value(va, "s-env"), marker[KVR_MARKER_LEN + 1];
        kvr_marker(marker, &mk, (const unsigned char *)val, strlen(val));
        CHECK(ls && ls->digest && strcmp(ls->digest, marker) == 0, "the secret's marker");
        free(val);
        kvr_live_free(l);
    }

    /* ---- VAULT_DELETE, VAULT_RECOVER ---- */
    {
        kvr_op op = {.kind = KVR_OP_VAULT_DELETE};
        op.u.vault.ref = (kvr_op_vault_ref){sub, rg, vb};
        apply_ok(&op);
        json_decref(arm_get(404, vault_path_b));
        char *dp = fmt("/subscriptions/%s/providers/Microsoft.KeyVault/locations/westeurope/"
                       "deletedVaults/%s?api-version=2024-11-01",
                       sub, vb);
        json_decref(arm_get(200, dp));
        free(dp);
        op.kind = KVR_OP_VAULT_RECOVER;
        op.u.vault.props.location = "westeurope";
        op.u.vault.props.sku = KVR_SKU_PREMIUM;
        apply_ok(&op);
        json_t *v = arm_get(200, vault_path_b);
        char *k = perms_of(v, sp_id, "keys");
        CHECK(strcmp(k, "get,wrapKey") == 0, "recovered with its access policies: %s", k);
        free(k);
        json_decref(v);
        char *s = secret_value(vb, "s-multi");
        CHECK(strcmp(s, "three") == 0, "recovered with its secrets");
        free(s);
    }

    for (int k = 0; k < KVR_OP_KIND_COUNT; k++)
        CHECK(done_kind[k], "operation '%s' was not carried out", kvr_op_kind_name(k));

    kvr_provider_free(prov);
    kvr_auth_free(auth);
    kvr_auth_free(reader);
    kvr_http_free(h);
    kvr_endpoints_release(&ep);
    kvr_marker_key_wipe(&mk);
    free(arm_scope_s);
    free(graph_scope_s);
    free(vault_path_a);
    free(vault_path_b);
    free(scope_a);
    free(app_id);
    free(app_oid);
    free(sp_id);
    free(key_id);
    free(v1);
    free(v2);
    printf("azure_ops_e2e: every operation kind carried out, %d checks passed\n", checks);
    return 0;
}
