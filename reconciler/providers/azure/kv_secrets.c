/*
 * Secrets and certificates on the Key Vault data plane: a value written from its source, a
 * secret's content type and tags, and the copies a relocation makes (a secret's latest or every
 * enabled version; a certificate with its private key).
 *
 * Values exist here only in memory, in buffers that are wiped before they are freed (the request
 * body's serialisation by kvr__send_checked, the JSON strings here); they never reach a message.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvr__secret_put(kvr__az *c, const char *vault, const char *name, const unsigned char *value,
                    size_t len, const char *content_type, json_t *tags, kvr_error *err)
{
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = json_object(), *v = json_stringn((const char *)value, len);
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    if (!v && body) { /* jansson refuses text that is not UTF-8 */
        rc = kvr_error_set(err, KVR_EINVAL, "the value of secret '%s' is not valid UTF-8", object);
        goto done;
    }
    if (!base || !body || !(url = prov_fmt(err, "%s/secrets/%s?api-version=" KV_API, base, name))) {
        if (v)
            kvr__wipe_str(json_string_value(v));
        json_decref(v);
        rc = kvr_error_oom(err);
        goto done;
    }
    json_object_set_new(body, "value", v);
    if (content_type)
        json_object_set_new(body, "contentType", json_string(content_type));
    if (tags)
        json_object_set(body, "tags", tags);
    rc = kvr__call(c, NULL, "PUT", url, body, KVR_HTTP_SECRET_WRITE, kvr__ok200, "set secret",
                   object, NULL, NULL, err);
    kvr__wipe_str(json_string_value(v));
done:
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

int kvr__secret_get(kvr__az *c, const char *vault, const char *name, const char *version,
                    kvr_value *out, json_t **tags, kvr_error *err)
{
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
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
    rc = url ? kvr__call(c, NULL, "GET", url, NULL, 0, kvr__ok200, "get secret", object, &body,
                         NULL, err)
             : KVR_ENOMEM;
    v = json_object_get(body, "value");
    if (!rc && !json_is_string(v))
        rc = kvr_error_set(err, KVR_EPROTO, "get secret '%s': no value in the response", object);
    if (!rc) {
        out->len = json_string_length(v);
        out->data = malloc(out->len + 1);
        if (!out->data) {
            out->len = 0;
            rc = kvr_error_oom(err);
        } else {
            memcpy(out->data, json_string_value(v), out->len);
        }
        if (tags)
            *tags = json_incref(json_object_get(body, "tags"));
    }
    if (json_is_string(v))
        kvr__wipe_str(json_string_value(v));
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

/* SECRET_SET: the value from its source (generated, environment, file, another vault secret). */
static int secret_set(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const kvr_op_value *src = &op->u.secret.value;
    kvr_value v = {0};
    json_t *tags = NULL;
    int rc;
    switch (src->kind) {
    case KVR_OP_VALUE_GENERATE:
        rc = kvr_value_generate(&v, src->length, src->charset, err);
        break;
    case KVR_OP_VALUE_ENV:
    case KVR_OP_VALUE_FILE:
        rc = kvr_value_read_source(&v, src, op->u.secret.name, err);
        break;
    case KVR_OP_VALUE_STORED:
        rc = src->vault && src->secret
                 ? kvr__secret_get(c, src->vault, src->secret, NULL, &v, NULL, err)
                 : kvr_error_set(err, KVR_EINVAL,
                                 "secret '%s': no vault secret to take the "
                                 "value from",
                                 op->u.secret.name);
        break;
    default:
        rc = kvr_error_set(err, KVR_EINVAL, "unknown source of secret '%s'", op->u.secret.name);
    }
    if (!rc) {
        tags = kvr__tags_json(&op->u.secret.tags);
        rc = tags ? kvr__secret_put(c, op->u.secret.vault, op->u.secret.name, v.data, v.len,
                                    op->u.secret.content_type, tags, err)
                  : kvr_error_oom(err);
    }
    kvr_value_release(&v);
    json_decref(tags);
    return rc;
}

/* SECRET_PATCH: content type and all the tags of the latest version. */
static int secret_patch(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *vault = op->u.secret_patch.vault, *name = op->u.secret_patch.name;
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = json_pack("{s:o}", "tags", kvr__tags_json(&op->u.secret_patch.tags));
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/secrets/%s/?api-version=" KV_API, base, name) : NULL;
    if (body && op->u.secret_patch.content_type)
        json_object_set_new(body, "contentType", json_string(op->u.secret_patch.content_type));
    rc = url && body ? kvr__call(c, NULL, "PATCH", url, body, 0, kvr__ok200, "update secret",
                                 object, NULL, NULL, err)
                     : kvr_error_oom(err);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static int version_cmp(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t cx =
        json_integer_value(json_object_get(json_object_get(x, "attributes"), "created"));
    json_int_t cy =
        json_integer_value(json_object_get(json_object_get(y, "attributes"), "created"));
    return cx < cy ? -1 : cx > cy;
}

/*
 * Copies one version (NULL: the latest) of secret `name` from vault `from` to vault `to`, with
 * its tags and the mark of a copy (KVR_TAG_COPY: the source vault), so that a later plan can
 * tell a copy from a value someone wrote in the new vault (a conflict it never overwrites).
 */
static int copy_version(kvr__az *c, const kvr_op *op, const char *version, kvr_error *err)
{
    kvr_value v = {0};
    json_t *tags = NULL, *marked;
    int rc = kvr__secret_get(c, op->u.copy.from, op->u.copy.name, version, &v, &tags, err);
    if (!rc) {
        marked = json_is_object(tags) ? json_deep_copy(tags) : json_object();
        if (!marked || json_object_set_new(marked, KVR_TAG_COPY, json_string(op->u.copy.from)) < 0)
            rc = kvr_error_oom(err);
        else
            rc = kvr__secret_put(c, op->u.copy.to,
                                 op->u.copy.to_name ? op->u.copy.to_name : op->u.copy.name,
                                 v.data, v.len,
                                 op->u.copy.content_type, marked, err);
        json_decref(marked);
    }
    kvr_value_release(&v);
    json_decref(tags);
    return rc;
}

/*
 * SECRET_COPY: the latest version, or with all_versions every enabled version, oldest first, so
 * that the latest stays the latest. Values pass through memory only.
 */
static int secret_copy(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *from = op->u.copy.from, *name = op->u.copy.name;
    char *base, *url, what[300];
    json_t *items = NULL;
    json_t **sorted = NULL;
    size_t n = 0;
    int rc;

    if (!op->u.copy.all_versions)
        return copy_version(c, op, NULL, err);
    base = kvr__vault_base(c, from, err);
    url = base ? prov_fmt(err, "%s/secrets/%s/versions?api-version=" KV_API "&maxresults=25", base,
                          name)
               : NULL;
    snprintf(what, sizeof(what), "list versions of secret '%s/%s'", from, name);
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
            rc = copy_version(c, op, ver, err);
    }
    free(sorted);
    json_decref(items);
    free(base);
    free(url);
    return rc;
}

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
 * CERT_COPY. Keys are never copied between vaults, but a certificate's private key travels
 * inside it: Key Vault keeps the whole certificate (PFX or PEM, by the policy's content type) in
 * the certificate's managed secret, so the copy reads that secret and imports it into the new
 * vault with the source's policy and tags. Backup/restore would not do: blobs restore only
 * within the same geography, which a relocation usually leaves. A certificate whose key is not
 * exportable cannot leave its vault; the error says what to do instead.
 */
static int cert_copy(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *from = op->u.copy.from, *to = op->u.copy.to, *name = op->u.copy.name;
    char *src = kvr__vault_base(c, from, err), *dst = kvr__vault_base(c, to, err), *url = NULL;
    char object[300];
    json_t *cert = NULL, *policy, *body = NULL, *v = NULL;
    kvr_value value = {0};
    int rc;

    snprintf(object, sizeof(object), "%s/%s", from, name);
    url = src && dst ? prov_fmt(err, "%s/certificates/%s/?api-version=" KV_API, src, name) : NULL;
    rc = url ? kvr__call(c, NULL, "GET", url, NULL, 0, kvr__ok200, "get certificate", object, &cert,
                         NULL, err)
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
                           object, to);
    if (!rc)
        rc = kvr__secret_get(c, from, name, NULL, &value, NULL, err);
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
        snprintf(object, sizeof(object), "%s/%s", to, name);
        url = prov_fmt(err, "%s/certificates/%s/import?api-version=" KV_API, dst, name);
        rc = url ? kvr__call(c, NULL, "POST", url, body, KVR_HTTP_SECRET_WRITE, kvr__ok200,
                             "import certificate", object, NULL, NULL, err)
                 : KVR_ENOMEM;
    }
    kvr__wipe_str(json_string_value(v));
    json_decref(v);
    json_decref(body);
    json_decref(cert);
    kvr_value_release(&value);
    free(src);
    free(dst);
    free(url);
    return rc;
}

int kvr__kv_secrets_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    switch (op->kind) {
    case KVR_OP_SECRET_SET:
        return secret_set(c, op, err);
    case KVR_OP_SECRET_PATCH:
        return secret_patch(c, op, err);
    case KVR_OP_SECRET_COPY:
        return secret_copy(c, op, err);
    case KVR_OP_CERT_COPY:
        return cert_copy(c, op, err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a secret operation",
                             kvr_op_kind_name(op->kind));
    }
}
