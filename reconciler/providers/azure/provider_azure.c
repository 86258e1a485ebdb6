/*
 * The Azure provider: the table of kvr/provider.h over the Azure edge. `apply` hands one
 * operation to the file of its service (arm_vaults.c, arm_roles.c, graph.c, kv_keys.c,
 * kv_secrets.c, profiles.c), which turns it into the requests it stands for and nothing else;
 * `read` is the scoped reader of prov_read.c; `probe` signs in as an app and reads a key, which
 * is the only proof that a new grant is effective; `read_back` records secret values the run
 * has just written, so that its next read need not fetch them again.
 *
 * The provider owns a tenant (from the credential's ARM token, on first need) and the memo of
 * read-back values; the credential, the endpoints and the marker key are borrowed.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

typedef struct azure_provider {
    kvr_provider base; /* first: the table the caller holds */
    kvr__az az;
    const kvr_marker_key *mk;
    kvr_value_memo *memo; /* read backs of this provider's lifetime */
} azure_provider;

static azure_provider *from_base(kvr_provider *p)
{
    return (azure_provider *)(void *)((char *)p - offsetof(azure_provider, base));
}

static int az_read(kvr_provider *p, kvr_live **out, const kvr_scope *scope, kvr_error *err)
{
    azure_provider *ap = from_base(p);
    return kvr_live_read_scope(out, ap->az.auth, ap->az.ep, scope, ap->mk, ap->memo, err);
}

static int az_apply(kvr_provider *p, const kvr_op *op, kvr_error *err)
{
    azure_provider *ap = from_base(p);
    kvr_error local;
    if (!err)
        err = &local;
    if (!kvr_op_resolved(op))
        return kvr_error_set(err, KVR_EINVAL,
                             "operation '%s' holds a value only its run can know; plan again",
                             kvr_op_kind_name(op->kind));
    switch (op->kind) {
    case KVR_OP_VAULT_PUT:
    case KVR_OP_VAULT_RECOVER:
    case KVR_OP_VAULT_PATCH:
    case KVR_OP_VAULT_POLICY_EDIT:
    case KVR_OP_VAULT_DELETE:
        return kvr__arm_vaults_apply(&ap->az, op, err);
    case KVR_OP_ROLE_ASSIGN:
    case KVR_OP_ROLE_REMOVE:
        return kvr__arm_roles_apply(&ap->az, op, err);
    case KVR_OP_APP_UPSERT:
    case KVR_OP_SP_UPSERT:
    case KVR_OP_PASSWORD_ADD:
    case KVR_OP_PASSWORD_REMOVE:
    case KVR_OP_APP_TAGS:
    case KVR_OP_APP_DELETE:
    case KVR_OP_APP_RESTORE:
        return kvr__graph_apply(&ap->az, op, err);
    case KVR_OP_KEY_CREATE:
    case KVR_OP_KEY_PATCH:
    case KVR_OP_KEY_ROTATION_POLICY:
    case KVR_OP_TAG_SET:
    case KVR_OP_OBJECT_DELETE:
    case KVR_OP_OBJECT_RECOVER:
        return kvr__kv_keys_apply(&ap->az, op, err);
    case KVR_OP_SECRET_SET:
    case KVR_OP_SECRET_PATCH:
    case KVR_OP_SECRET_COPY:
    case KVR_OP_CERT_COPY:
        return kvr__kv_secrets_apply(&ap->az, op, err);
    case KVR_OP_PROFILE_PUT:
    case KVR_OP_PROFILE_APPLY:
    case KVR_OP_PROFILE_DELETE:
        return kvr__profiles_apply(&ap->az, op, err);
    }
    return kvr_error_set(err, KVR_EINVAL, "unknown operation kind %d", (int)op->kind);
}

/*
 * Proves that the app can use the key now: a token for the app (its client secret read from its
 * vault secret) from an engine of its own, and one read of the key with it, not retried (the
 * executor decides when to try again).
 */
static int az_probe(kvr_provider *p, const kvr_probe *pr, kvr_error *err)
{
    kvr__az *c = &from_base(p)->az;
    kvr_value secret = {0};
    kvr_auth_config cfg;
    kvr_auth *as = NULL;
    kvr_http *http = NULL;
    const char *tenant = NULL;
    char *base = NULL, *url = NULL, *cs = NULL, object[300];
    int rc;

    if ((rc = kvr__az_tenant(&tenant, c, err)) < 0)
        return rc;
    if ((rc = kvr__secret_get(c, pr->secret_vault, pr->secret_name, NULL, &secret, NULL, err)) < 0)
        return rc;
    cs = malloc(secret.len + 1);
    if (!cs) {
        rc = kvr_error_oom(err);
        goto done;
    }
    memcpy(cs, secret.data, secret.len);
    cs[secret.len] = '\0';
    kvr_auth_config_from_env(&cfg);
    cfg.tenant_id = tenant;
    cfg.client_id = pr->client_id;
    cfg.client_secret = cs;
    cfg.certificate_path = NULL;
    cfg.federated_token_file = NULL;
    if ((rc = kvr_http_new(&http, NULL, err)) < 0 || (rc = kvr_auth_new(&as, http, &cfg, err)) < 0)
        goto done;
    base = kvr__vault_base(c, pr->vault, err);
    url = base ? prov_fmt(err, "%s/keys/%s/?api-version=" KV_API, base, pr->key) : NULL;
    snprintf(object, sizeof(object), "%s/%s", pr->vault, pr->key);
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

static int az_read_back(kvr_provider *p, const char *const *vaults, const char *const *names,
                        size_t n, kvr_error *err)
{
    azure_provider *ap = from_base(p);
    return kvr_value_memo_read(ap->memo, ap->az.auth, ap->az.ep, vaults, names, n, ap->mk, err);
}

static void az_free(kvr_provider *p)
{
    azure_provider *ap;
    if (!p)
        return;
    ap = from_base(p);
    kvr_value_memo_free(ap->memo);
    free(ap->az.tenant);
    free(ap);
}

int kvr_azure_provider_new(kvr_provider **out, kvr_auth *a, const kvr_endpoints *ep,
                           const kvr_marker_key *mk, kvr_error *err)
{
    azure_provider *ap = calloc(1, sizeof(*ap));
    int rc;

    *out = NULL;
    if (!ap)
        return kvr_error_oom(err);
    ap->base = (kvr_provider){.version = KVR_PROVIDER_VERSION,
                              .name = "azure",
                              .read = az_read,
                              .apply = az_apply,
                              .probe = az_probe,
                              .read_back = az_read_back,
                              .free = az_free};
    ap->az.auth = a;
    ap->az.ep = ep;
    ap->mk = mk;
    if ((rc = kvr_value_memo_new(&ap->memo, err)) < 0) {
        free(ap);
        return rc;
    }
    *out = &ap->base;
    return 0;
}
