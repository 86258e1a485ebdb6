/*
 * Applications, service principals and client secrets through Microsoft Graph.
 *
 * Apps and service principals are made by upserts on a client-provided key (an app's uniqueName
 * derived from its display name, a principal's appId): two runs that both find one missing make
 * one between them, and a retry after a lost answer is harmless, where a POST would register a
 * second one of the same name.
 *
 * A client secret exists in clear only in the answer to addPassword. It is stored at once in its
 * vault secret, tagged with its keyId, before anything else happens; if that fails, the new
 * password is removed again, so that no credential exists that nobody can use. The text lives in
 * buffers that are wiped, and never reaches a message.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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

static json_t *tags_json(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

/* APP_TAGS: `PATCH /applications/{id}` with the whole list. APP_DELETE: one gone is fine (Entra
   keeps a deleted app restorable, under directory/deletedItems, for 30 days). */
static int app_tags_or_delete(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    static const long gone_ok[] = {200, 204, 404, 0};
    bool del = op->kind == KVR_OP_APP_DELETE;
    char *scope = kvr__graph_scope(c, err);
    char *url =
        prov_fmt(err, "%s/v1.0/applications/%s", c->ep->graph, op->u.app_tags.object_id);
    json_t *body = del ? NULL : json_pack("{s:o}", "tags", tags_json(&op->u.app_tags.tags));
    int rc = scope && url && (del || body)
                 ? kvr__call(c, scope, del ? "DELETE" : "PATCH", url, body, 0,
                             del ? gone_ok : kvr__ok2xx, del ? "delete app" : "set tags of app",
                             op->u.app_tags.name, NULL, NULL, err)
                 : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

/* APP_RESTORE: `POST /directory/deletedItems/{id}/restore` (not its service principal: Graph
   restores the app object only; SP_UPSERT makes a new one). */
static int app_restore(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    char *scope = kvr__graph_scope(c, err);
    char *url = prov_fmt(err, "%s/v1.0/directory/deletedItems/%s/restore", c->ep->graph,
                         op->u.app_tags.object_id);
    /* not retried blindly: a retry after a lost answer finds nothing to restore (404) */
    int rc = scope && url ? kvr__call(c, scope, "POST", url, NULL, KVR_HTTP_NOT_IDEMPOTENT, kvr__ok2xx,
                                      "restore deleted app", op->u.app_tags.name, NULL, NULL, err)
                          : kvr_error_oom(err);
    free(scope);
    free(url);
    return rc;
}

/* APP_UPSERT: `PATCH /applications(uniqueName='…')` with `Prefer: create-if-missing`. */
static int app_upsert(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *name = op->u.app.display_name;
    char unique[37];
    char *scope = NULL, *url = NULL;
    json_t *body = NULL;
    int rc;
    if ((rc = app_unique_name(unique, name, err)) < 0)
        return rc;
    scope = kvr__graph_scope(c, err);
    url = prov_fmt(err, "%s/v1.0/applications(uniqueName='%s')", c->ep->graph, unique);
    body = json_pack("{s:s,s:s}", "displayName", name, "signInAudience", op->u.app.audience);
    if (body && op->u.app.tags.len) /* this estate's marker, made with the app */
        json_object_set_new(body, "tags", tags_json(&op->u.app.tags));
    rc = scope && url && body ? kvr__call(c, scope, "PATCH", url, body, KVR__CALL_UPSERT,
                                          kvr__ok2xx, "create app", name, NULL, NULL, err)
                              : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

/* SP_UPSERT: an upsert on the app's appId, for the same reasons as app_upsert. */
static int sp_upsert(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    char *scope = kvr__graph_scope(c, err);
    char *url =
        prov_fmt(err, "%s/v1.0/servicePrincipals(appId='%s')", c->ep->graph, op->u.sp.app_id);
    json_t *body = json_object();
    int rc = scope && url && body
                 ? kvr__call(c, scope, "PATCH", url, body, KVR__CALL_UPSERT, kvr__ok2xx,
                             "create service principal", op->u.sp.display_name, NULL, NULL, err)
                 : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

static int remove_password(kvr__az *c, const char *app_object_id, const char *app_name,
                           const char *key_id, kvr_error *err)
{
    char *scope = kvr__graph_scope(c, err);
    char *url =
        prov_fmt(err, "%s/v1.0/applications/%s/removePassword", c->ep->graph, app_object_id);
    json_t *body = json_pack("{s:s}", "keyId", key_id);
    int rc = scope && url && body
                 ? kvr__call(c, scope, "POST", url, body, 0, kvr__ok2xx,
                             "remove client secret of app", app_name, NULL, NULL, err)
                 : kvr_error_oom(err);
    json_decref(body);
    free(scope);
    free(url);
    return rc;
}

/* PASSWORD_ADD: addPassword, then at once the text into its vault secret (or remove it again). */
static int password_add(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *app = op->u.password.app_name;
    char *scope = kvr__graph_scope(c, err), *url = NULL, end[KVR_TIME_ISO_MAX];
    json_t *body = NULL, *resp = NULL, *tags = NULL;
    const char *text, *key_id;
    int rc = KVR_ENOMEM;

    kvr_time_iso(end, sizeof(end), op->u.password.end);
    url = prov_fmt(err, "%s/v1.0/applications/%s/addPassword", c->ep->graph,
                   op->u.password.app_object_id);
    body = json_pack("{s:{s:s,s:s}}", "passwordCredential", "displayName",
                     op->u.password.display_name, "endDateTime", end);
    if (!scope || !url || !body) {
        rc = kvr_error_oom(err);
        goto done;
    }
    rc = kvr__call(c, scope, "POST", url, body, KVR_HTTP_NOT_IDEMPOTENT, kvr__ok2xx,
                   "add client secret to app", app, &resp, NULL, err);
    if (rc < 0)
        goto done;
    text = json_string_value(json_object_get(resp, "secretText"));
    key_id = json_string_value(json_object_get(resp, "keyId"));
    if (!text || !key_id) {
        rc = kvr_error_set(err, KVR_EPROTO,
                           "add client secret to app '%s': no secretText or keyId in the response",
                           app);
        goto done;
    }
    /* The only moment the secret text exists: store it before anything else. */
    tags = json_pack("{s:s}", KVR_TAG_CREDENTIAL, key_id);
    rc = tags ? kvr__secret_put(c, op->u.password.store_vault, op->u.password.store_secret,
                                (const unsigned char *)text, strlen(text), "text/plain", tags, err)
              : kvr_error_oom(err);
    kvr__wipe_str(text);
    if (rc < 0) {
        /* Not stored: remove it, so that no credential exists that nobody can use. */
        kvr_error ignored;
        remove_password(c, op->u.password.app_object_id, app, key_id, &ignored);
    }
done:
    if (resp)
        kvr__wipe_str(json_string_value(json_object_get(resp, "secretText")));
    json_decref(resp);
    json_decref(body);
    json_decref(tags);
    free(scope);
    free(url);
    return rc;
}

int kvr__graph_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    switch (op->kind) {
    case KVR_OP_APP_UPSERT:
        return app_upsert(c, op, err);
    case KVR_OP_SP_UPSERT:
        return sp_upsert(c, op, err);
    case KVR_OP_PASSWORD_ADD:
        return password_add(c, op, err);
    case KVR_OP_PASSWORD_REMOVE:
        return remove_password(c, op->u.password.app_object_id, op->u.password.app_name,
                               op->u.password.key_id, err);
    case KVR_OP_APP_TAGS:
    case KVR_OP_APP_DELETE:
        return app_tags_or_delete(c, op, err);
    case KVR_OP_APP_RESTORE:
        return app_restore(c, op, err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a Graph operation",
                             kvr_op_kind_name(op->kind));
    }
}
