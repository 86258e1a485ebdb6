/*
 * Role assignments through ARM. An assignment's name is a GUID derived from (scope, role,
 * principal), so a re-run, a retry after a lost answer and a second runner all PUT the same
 * name and make one assignment between them. A principal the directory has just created is
 * not known to Azure RBAC for a while (PrincipalNotFound); the PUT waits for it, bounded, as
 * long as Graph itself holds the principal.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

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
static int sp_exists(kvr__az *c, const char *id, const char *app, kvr_error *err)
{
    static const long ok[] = {200, 404, 0};
    char *scope = kvr__graph_scope(c, err);
    char *url = prov_fmt(err, "%s/v1.0/servicePrincipals/%s", c->ep->graph, id);
    long status = 0;
    int rc = scope && url ? kvr__call(c, scope, "GET", url, NULL, 0, ok,
                                      "read service principal of app", app, NULL, &status, err)
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

/* The subscription a scope "/subscriptions/SUB/..." lies in, into buf; NULL when it names none. */
static const char *scope_subscription(char *buf, size_t size, const char *scope)
{
    static const char prefix[] = "/subscriptions/";
    const char *s, *end;
    if (!scope || strncasecmp(scope, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    s = scope + sizeof(prefix) - 1;
    end = strchr(s, '/');
    if (!end)
        end = s + strlen(s);
    if (end == s || (size_t)(end - s) >= size)
        return NULL;
    memcpy(buf, s, (size_t)(end - s));
    buf[end - s] = '\0';
    return buf;
}

/* ROLE_REMOVE: the assignment by name at its scope; one already gone is fine. */
static int role_remove(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    static const long ok[] = {200, 204, 404, 0};
    char *scope = kvr__arm_scope(c, err),
         *url = prov_fmt(err,
                         "%s%s/providers/Microsoft.Authorization/roleAssignments/%s"
                         "?api-version=" ARM_ROLES_API,
                         c->ep->arm, op->u.role.scope, op->u.role.name);
    kvr_http_response hr;
    long status = 0;
    int rc = KVR_ENOMEM;
    kvr_http_response_init(&hr);
    if (scope && url)
        rc =
            kvr__send_checked(c, scope, "DELETE", url, NULL, 0, ok, "remove role assignment of app",
                              op->u.role.principal_name, &hr, &status, err);
    kvr_http_response_release(&hr);
    free(url);
    free(scope);
    return rc;
}

/* ROLE_ASSIGN: PUT the deterministic name; waits for a principal RBAC does not know yet. */
static int role_assign(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    static const long ok[] = {200, 201, 400, 409, 0};
    const char *res = op->u.role.scope, *pid = op->u.role.principal_id;
    const char *who = op->u.role.principal_name ? op->u.role.principal_name : pid;
    char *scope = NULL, *url = NULL, *def = NULL, guid[37], sub[128];
    json_t *body = NULL, *resp = NULL;
    kvr_http_response hr;
    long status = 0;
    int rc = KVR_ENOMEM;
    double start = kvr_mono_s(), pause = 1;

    kvr_http_response_init(&hr);
    if (!scope_subscription(sub, sizeof(sub), res))
        return kvr_error_set(err, KVR_EINVAL,
                             "assign role to app '%s': scope '%s' names no "
                             "subscription",
                             who, res ? res : "");
    role_guid(guid, res, op->u.role.role_id, pid);
    scope = kvr__arm_scope(c, err);
    url = prov_fmt(err,
                   "%s%s/providers/Microsoft.Authorization/roleAssignments/%s"
                   "?api-version=" ARM_ROLES_API,
                   c->ep->arm, res, guid);
    def = prov_fmt(err, "/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s",
                   sub, op->u.role.role_id);
    if (!scope || !url || !def)
        goto done;
    body = json_pack("{s:{s:s,s:s,s:s,s:s}}", "properties", "roleDefinitionId", def, "principalId",
                     pid, "principalType", "ServicePrincipal", "description",
                     "managed by kvreconcile");
    if (!body)
        goto done;
    for (;;) {
        const char *code;
        kvr_http_response_release(&hr);
        kvr_http_response_init(&hr);
        json_decref(resp);
        resp = NULL;
        rc = kvr__send_checked(c, scope, "PUT", url, body, 0, ok, "assign role to app", who, &hr,
                               &status, err);
        if (rc || (status != 400 && status != 409))
            goto done;
        code = arm_error_code(&resp, &hr);
        if (status == 409) {
            /* RoleAssignmentExists under another name: the grant is there, which is what
               matters. */
            if (!code || strcmp(code, "RoleAssignmentExists") != 0)
                rc = kvr_error_set(err, KVR_ECONFLICT, "assign role to app '%s': http 409 %s", who,
                                   code ? code : "Conflict");
            goto done;
        }
        if (!code || strcmp(code, "PrincipalNotFound") != 0) {
            rc = kvr_http_error(err, &hr, "assign role to app", who);
            goto done;
        }
        rc = sp_exists(c, pid, who, err);
        if (rc < 0)
            goto done;
        if (rc == 0) {
            rc = kvr_error_set(err, KVR_ENOTFOUND,
                               "assign role to app '%s': its service principal '%s' does not "
                               "exist in the directory (Azure: PrincipalNotFound)",
                               who, pid);
            goto done;
        }
        if (kvr_mono_s() - start + pause > ROLE_PRINCIPAL_WAIT_S) {
            rc = kvr_error_set(err, KVR_ENOTFOUND,
                               "assign role to app '%s': Azure RBAC still does not know its "
                               "service principal '%s' after %.0f s (PrincipalNotFound: the "
                               "directory has not replicated it yet); run apply again later",
                               who, pid, kvr_mono_s() - start);
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

int kvr__arm_roles_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    switch (op->kind) {
    case KVR_OP_ROLE_ASSIGN:
        return role_assign(c, op, err);
    case KVR_OP_ROLE_REMOVE:
        return role_remove(c, op, err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a role assignment operation",
                             kvr_op_kind_name(op->kind));
    }
}
