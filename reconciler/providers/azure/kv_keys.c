/*
 * Keys on the Key Vault data plane, and what keys and secrets share there: a tag set on one
 * version, soft delete and recovery.
 *
 * A key version is made with its markers in the same call (the generation tag is among the
 * operation's tags), and the create is never retried after an ambiguous failure: a second
 * version would be made, where the next run recognises the first by its tag.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *collection_path(kvr_op_collection k)
{
    return k == KVR_COLL_KEYS ? "keys" : "secrets";
}

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
        json_array_append_new(actions, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeBeforeExpiry",
                                                 iso, "action", "type", "Rotate"));
    }
    if (r->notify_before) {
        kvr_duration_iso(iso, sizeof(iso), r->notify_before);
        json_array_append_new(actions, json_pack("{s:{s:s},s:{s:s}}", "trigger", "timeBeforeExpiry",
                                                 iso, "action", "type", "Notify"));
    }
    p = json_pack("{s:o}", "lifetimeActions", actions);
    if (p && r->expires_after) {
        kvr_duration_iso(iso, sizeof(iso), r->expires_after);
        json_object_set_new(p, "attributes", json_pack("{s:s}", "expiryTime", iso));
    }
    return p;
}

/* PUT the rotation policy of key (vault, name). */
static int key_policy(kvr__az *c, const char *vault, const char *name, const kvr_rotation *r,
                      kvr_error *err)
{
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = policy_json(r);
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/keys/%s/rotationpolicy?api-version=" KV_API, base, name) : NULL;
    rc = url && body ? kvr__call(c, NULL, "PUT", url, body, 0, kvr__ok200,
                                 "set rotation policy of key", object, NULL, NULL, err)
                     : kvr_error_oom(err);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

static json_t *ops_json(unsigned ops)
{
    static const char *const names[] = {"encrypt", "decrypt", "sign",
                                        "verify",  "wrapKey", "unwrapKey"};
    json_t *a = json_array();
    for (int i = 0; a && i < 6; i++)
        if (ops & (1u << i))
            json_array_append_new(a, json_string(names[i]));
    return a;
}

/* KEY_CREATE: POST create (a new key or a new version), then with set_rotation its policy. */
static int key_create(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *vault = op->u.key.vault, *name = op->u.key.name;
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body;
    int rc = KVR_ENOMEM;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    body = json_pack("{s:s,s:o,s:o}", "kty", op->u.key.kty, "key_ops", ops_json(op->u.key.ops),
                     "tags", kvr__tags_json(&op->u.key.tags));
    if (body && op->u.key.curve)
        json_object_set_new(body, "crv", json_string(op->u.key.curve));
    else if (body && op->u.key.size)
        json_object_set_new(body, "key_size", json_integer(op->u.key.size));
    url = base ? prov_fmt(err, "%s/keys/%s/create?api-version=" KV_API, base, name) : NULL;
    if (!url || !body) {
        rc = kvr_error_oom(err);
        goto done;
    }
    /* Not retried after an ambiguous failure: a second version would be made. The next run
       sees the generation tag if the first one was. */
    rc = kvr__call(c, NULL, "POST", url, body, KVR_HTTP_NOT_IDEMPOTENT, kvr__ok200, "create key",
                   object, NULL, NULL, err);
    if (!rc && op->u.key.set_rotation)
        rc = key_policy(c, vault, name, &op->u.key.rotation, err);
done:
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

/*
 * KEY_PATCH: PATCH one version (NULL: the latest) with the attributes the operation sets. Its
 * name in messages says what the change is, as the plan's steps do.
 */
static int key_patch(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *vault = op->u.key_patch.vault, *name = op->u.key_patch.name;
    const char *version = op->u.key_patch.version;
    const char *what = "update key";
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *body = json_object(), *attrs = NULL;
    int rc = 0;

    snprintf(object, sizeof(object), "%s/%s", vault, name);
    if (!body)
        rc = kvr_error_oom(err);
    if (!rc && op->u.key_patch.set_ops &&
        json_object_set_new(body, "key_ops", ops_json(op->u.key_patch.ops)) < 0)
        rc = kvr_error_oom(err);
    if (!rc && (op->u.key_patch.set_enabled || op->u.key_patch.set_exp)) {
        attrs = json_object();
        if (attrs && op->u.key_patch.set_enabled)
            json_object_set_new(attrs, "enabled", json_boolean(op->u.key_patch.enabled));
        if (attrs && op->u.key_patch.set_exp)
            json_object_set_new(attrs, "exp", json_integer((json_int_t)op->u.key_patch.exp));
        if (json_object_set_new(body, "attributes", attrs) < 0)
            rc = kvr_error_oom(err);
        if (!op->u.key_patch.set_ops && op->u.key_patch.set_enabled)
            what = op->u.key_patch.enabled ? "enable key version" : "disable key version";
    }
    url = base ? prov_fmt(err, "%s/keys/%s/%s?api-version=" KV_API, base, name,
                          version ? version : "")
               : NULL;
    if (!rc && !url)
        rc = kvr_error_oom(err);
    if (!rc)
        rc = kvr__call(c, NULL, "PATCH", url, body, 0, kvr__ok200, what, object, NULL, NULL, err);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

/*
 * TAG_SET: one tag on a key version or a secret's version (NULL: the latest), keeping its other
 * tags: read them, set one, write them back. A secret's value comes with the read and is wiped.
 */
static int tag_set(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    const char *vault = op->u.tag.vault, *name = op->u.tag.name, *version = op->u.tag.version;
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    json_t *cur = NULL, *body = NULL, *tags;
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/%s/%s/%s?api-version=" KV_API, base,
                          collection_path(op->u.tag.collection), name, version ? version : "")
               : NULL;
    rc = url ? kvr__call(c, NULL, "GET", url, NULL, 0, kvr__ok200, "read tags of", object, &cur,
                         NULL, err)
             : KVR_ENOMEM;
    if (rc)
        goto done;
    if (json_is_string(json_object_get(cur, "value"))) /* a secret: its value is not needed */
        kvr__wipe_str(json_string_value(json_object_get(cur, "value")));
    tags = json_is_object(json_object_get(cur, "tags"))
               ? json_deep_copy(json_object_get(cur, "tags"))
               : json_object();
    if (tags)
        json_object_set_new(tags, op->u.tag.tag, json_string(op->u.tag.value));
    body = json_pack("{s:o}", "tags", tags);
    rc = body
             ? kvr__call(c, NULL, "PATCH", url, body, 0, kvr__ok200, "tag", object, NULL, NULL, err)
             : kvr_error_oom(err);
done:
    json_decref(cur);
    json_decref(body);
    free(base);
    free(url);
    return rc;
}

/* METHOD https://VAULT/COLLECTION/NAME[SUFFIX] with no body. */
static int kv_simple(kvr__az *c, const char *vault, const char *method, const char *collection,
                     const char *name, const char *suffix, const char *op, kvr_error *err)
{
    char *base = kvr__vault_base(c, vault, err), *url = NULL, object[300];
    int rc;
    snprintf(object, sizeof(object), "%s/%s", vault, name);
    url = base ? prov_fmt(err, "%s/%s/%s%s?api-version=" KV_API, base, collection, name, suffix)
               : NULL;
    rc = url ? kvr__call(c, NULL, method, url, NULL, 0, kvr__ok2xx, op, object, NULL, NULL, err)
             : KVR_ENOMEM;
    free(base);
    free(url);
    return rc;
}

int kvr__kv_keys_apply(kvr__az *c, const kvr_op *op, kvr_error *err)
{
    bool keys;
    switch (op->kind) {
    case KVR_OP_KEY_CREATE:
        return key_create(c, op, err);
    case KVR_OP_KEY_PATCH:
        return key_patch(c, op, err);
    case KVR_OP_KEY_ROTATION_POLICY:
        return key_policy(c, op->u.key.vault, op->u.key.name, &op->u.key.rotation, err);
    case KVR_OP_TAG_SET:
        return tag_set(c, op, err);
    case KVR_OP_OBJECT_DELETE:
        keys = op->u.object.collection == KVR_COLL_KEYS;
        return kv_simple(c, op->u.object.vault, "DELETE", keys ? "keys" : "secrets",
                         op->u.object.name, "", keys ? "delete key" : "delete secret", err);
    case KVR_OP_OBJECT_RECOVER:
        keys = op->u.object.collection == KVR_COLL_KEYS;
        return kv_simple(c, op->u.object.vault, "POST", keys ? "deletedkeys" : "deletedsecrets",
                         op->u.object.name, "/recover", keys ? "recover key" : "recover secret",
                         err);
    default:
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a key operation",
                             kvr_op_kind_name(op->kind));
    }
}
