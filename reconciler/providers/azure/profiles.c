/*
 * Encryption profiles of the consuming service (schema/profile-service.openapi.yaml): create one
 * with its key version and client credentials, set its credentials, make it the active one,
 * delete it. The client secret a profile carries is read from the vault secret the app's
 * credential was stored in, into a wiped buffer, and sent only in the request body.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdlib.h>
#include <string.h>

static char *profiles_scope(kvr__az *c, kvr_error *err)
{
    if (!c->ep->profiles) {
        kvr_error_set(err, KVR_EINVAL, "the profile service's endpoint is not set");
        return NULL;
    }
    return prov_fmt(err, "%s/.default", c->ep->profiles);
}

/* PROFILE_PUT: create (PUT, with the key version) or set the credentials (POST credentials). */
static int profile_put(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *name = op->u.profile.name;
    bool create = op->u.profile.create;
    const char *tenant = NULL;
    char *scope = NULL, *url = NULL, *kid = NULL;
    kvr_value secret = {0};
    json_t *body = NULL, *sv = NULL;
    int rc;

    if (create &&
        (!op->u.profile.key_vault || !op->u.profile.key_name || !op->u.profile.key_version))
        return kvr_error_set(err, KVR_EINVAL, "create profile '%s': no key version to use", name);
    if (!(scope = profiles_scope(c, err))) {
        rc = err->code;
        goto done;
    }
    if ((rc = kvr__az_tenant(&tenant, c, err)) < 0)
        goto done;
    if ((rc = kvr__secret_get(c, op->u.profile.secret_vault, op->u.profile.secret_name, NULL,
                              &secret, NULL, err)) < 0)
        goto done;
    sv = json_stringn((const char *)secret.data, secret.len);
    body = json_pack("{s:s,s:s,s:O,s:{s:s,s:s}}", "tenantId", tenant, "clientId",
                     op->u.profile.client_id, "clientSecret", sv, "metadata", "kvr-credential",
                     op->u.profile.credential, "kvr-managed", "true");
    if (create && body) {
        kid = prov_fmt(err, "https://%s.%s/keys/%s/%s", op->u.profile.key_vault,
                       c->ep->vault_suffix, op->u.profile.key_name, op->u.profile.key_version);
        json_object_set_new(body, "keyId", kid ? json_string(kid) : json_null());
        url = prov_fmt(err, "%s/encryptionProfiles/%s?api-version=" PROFILES_API, c->ep->profiles,
                       name);
    } else if (body) {
        url = prov_fmt(err, "%s/encryptionProfiles/%s/credentials?api-version=" PROFILES_API,
                       c->ep->profiles, name);
    }
    rc = url && body ? kvr__call(c, scope, create ? "PUT" : "POST", url, body, 0, kvr__ok2xx,
                                 create ? "create profile" : "set credentials of profile", name,
                                 NULL, NULL, err)
                     : kvr_error_oom(err);
done:
    if (sv)
        kvr__wipe_str(json_string_value(sv));
    json_decref(sv);
    json_decref(body);
    kvr_value_release(&secret);
    free(scope);
    free(url);
    free(kid);
    return rc;
}

static int profile_simple(kvr__az *c, const char *name, const char *method, const char *suffix,
                          const char *op, kvr_error *err)
{
    char *scope = profiles_scope(c, err);
    char *url = scope ? prov_fmt(err, "%s/encryptionProfiles/%s%s?api-version=" PROFILES_API,
                                 c->ep->profiles, name, suffix)
                      : NULL;
    int rc = url ? kvr__call(c, scope, method, url, NULL, 0, kvr__ok2xx, op, name, NULL, NULL, err)
                 : (scope ? KVR_ENOMEM : err->code);
    free(scope);
    free(url);
    return rc;
}

int kvr__profiles_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    switch (op->kind) {
    case KVR_OP_PROFILE_PUT:
        return profile_put(c, op, err);
    case KVR_OP_PROFILE_APPLY:
        return profile_simple(c, op->u.profile.name, "POST", "/apply", "apply profile", err);
    case KVR_OP_PROFILE_DELETE:
        return profile_simple(c, op->u.profile.name, "DELETE", "", "delete profile", err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a profile operation",
                             kvr_op_kind_name(op->kind));
    }
}
