/*
 * The in-memory fake provider (kvr/fake.h). It holds the live state in its JSON form (the
 * format of kvr_live_to_json, the live.json of tests/fixtures/plan), because that form is easy to
 * change in place and a read is then exactly what an offline plan reads: the state written out
 * and parsed back, a deep copy that shares nothing with the fake.
 *
 * Each operation is carried out the way the Azure provider's requests end up in Azure and the
 * profile service (providers/azure, tests/azsim): names compare without case, a deleted vault
 * or object becomes a soft-deleted one that a recover brings back, a key create adds a version
 * that becomes the latest, a client secret is added and at once stored (and removed again if
 * it cannot be), role assignments have names derived from what they grant, profiles refuse to
 * change key or to be deleted while in use. Ids the fake makes are derived from a counter and
 * the names involved, so a test sees the same ids on every run.
 *
 * Faults are scripted by operation number or kind; the service's own moves (a profile becoming
 * Used, another writer) by read number, with a clock that moves with every read.
 */
#include "kvr/fake.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* ---- the provider's state ----------------------------------------------------------------- */

typedef struct fault {
    size_t read;      /* a read fault: the read number (0: an operation fault) */
    size_t op;        /* operation number (0: by kind) */
    int kind;         /* kvr_op_kind when op is 0 */
    size_t nth;       /* the nth operation of `kind` */
    int code;         /* the answer of a failure; 0 for a crash */
    const char *why;  /* for the message */
    bool crash_after; /* crash after the first request (else before any) */
    bool crash;
    int left; /* answers still to give */
} fault;

typedef enum event_kind { EV_PROFILE = 0, EV_VAULT_TAGS, EV_ADVANCE, EV_DELETE } event_kind;

typedef struct event {
    size_t read;
    event_kind kind;
    char *name;      /* profile or vault */
    int status;      /* EV_PROFILE */
    json_t *tags;    /* EV_VAULT_TAGS */
    int64_t advance; /* EV_ADVANCE: seconds */
    int what;        /* EV_DELETE: 0 key, 1 secret, 2 vault (name: the vault) */
    char *object;    /* EV_DELETE: the key or secret */
} event;

typedef struct fake {
    kvr_provider base; /* first: the table the caller holds */
    json_t *st;        /* the live state (kvr_live_to_json's form) */
    json_t *grave;     /* what soft-deleted vaults and objects held, for a recover */
    const kvr_marker_key *mk;
    kvr_marker_key zero;
    int64_t now, per_read;
    size_t reads, calls, probes;
    size_t ops;                      /* operation numbers given so far */
    size_t kinds[KVR_OP_KIND_COUNT]; /* operations of each kind so far */
    char *last;                      /* the JSON of the last call */
    bool last_failed;
    unsigned long seq; /* for ids */
    fault *faults;
    size_t nfaults;
    event *events;
    size_t nevents;
    int probe_refusals;
    char **log;
    size_t nlog, caplog;
} fake;

static fake *from_base(kvr_provider *p)
{
    return (fake *)(void *)p;
}

static const fake *from_cbase(const kvr_provider *p)
{
    return (const fake *)(const void *)p;
}

/* ---- ids: derived from names and a counter, so every test run sees the same ---------------- */

static uint64_t fnv(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* splitmix64's finaliser: every input bit moves every output bit, so that ids made from
   neighbouring inputs ("name#1", "name#2") do not look alike */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 32 hex digits from `what` (and the counter, unless `stable`). */
static void hex_of(char out[33], fake *f, const char *what, bool stable)
{
    char seq[32] = "";
    uint64_t a, b;
    if (!stable)
        snprintf(seq, sizeof(seq), "#%lu", ++f->seq);
    a = mix(fnv(seq, fnv(what, 0xcbf29ce484222325ULL)));
    b = mix(fnv(seq, fnv(what, 0x84222325cbf29ce4ULL)) ^ a);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

static void hex_id(char out[33], fake *f, const char *what)
{
    hex_of(out, f, what, false);
}

/* A GUID (version nibble 5, as name-based GUIDs have) from `what`, and from the counter unless
   `stable` (then equal inputs give equal GUIDs: role assignment names). */
static void guid(char out[37], fake *f, const char *what, bool stable)
{
    char h[33];
    hex_of(h, f, what, stable);
    h[12] = '5';
    h[16] = "89ab"[(h[16] >= 'a' ? h[16] - 'a' + 10 : h[16] - '0') & 3];
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/* ---- the JSON state ------------------------------------------------------------------------ */

static json_t *arr(fake *f, const char *member)
{
    json_t *a = json_object_get(f->st, member);
    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(f->st, member, a);
    }
    return a;
}

static const char *sget(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool ieq(const char *a, const char *b)
{
    return a && b && kvr_str_ieq(a, b);
}

/* The element of array member `member` whose `k1` is v1 (and `k2` v2, when k2): its index,
   or -1. Names compare without case (Azure's); `exact` compares k1 exactly (Graph's ids). */
static ssize_t find(fake *f, const char *member, const char *k1, const char *v1, const char *k2,
                    const char *v2)
{
    json_t *a = arr(f, member), *o;
    size_t i;
    json_array_foreach(a, i, o)
    {
        if (ieq(sget(o, k1), v1) && (!k2 || ieq(sget(o, k2), v2)))
            return (ssize_t)i;
    }
    return -1;
}

static json_t *get(fake *f, const char *member, const char *k1, const char *v1, const char *k2,
                   const char *v2)
{
    ssize_t i = find(f, member, k1, v1, k2, v2);
    return i < 0 ? NULL : json_array_get(arr(f, member), (size_t)i);
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *tags_json(const kvr_tags *t)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < t->len; i++)
        json_object_set_new(o, t->items[i].key, json_string(t->items[i].value));
    return o;
}

static json_t *list_json(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
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

static json_t *rotation_json(const kvr_rotation *r)
{
    const char *m[] = {"every", "beforeExpiry", "expiresAfter", "notifyBefore"};
    const int64_t v[] = {r->every, r->before_expiry, r->expires_after, r->notify_before};
    json_t *o = json_object();
    for (int i = 0; o && i < 4; i++)
        if (v[i]) {
            char d[32];
            kvr_duration_iso(d, sizeof(d), v[i]);
            json_object_set_new(o, m[i], json_string(d));
        }
    return o;
}

static int64_t vault_retention_days(fake *f, const char *vault)
{
    json_t *v = get(f, "vaults", "name", vault, NULL, NULL);
    json_int_t d = json_integer_value(json_object_get(v, "softDeleteDays"));
    return d > 0 ? d : 90;
}

/* ---- errors as the services answer them ---------------------------------------------------- */

static int no_vault(kvr_error *err, const char *what, const char *vault)
{
    return kvr_error_set(err, KVR_EAZURE, "%s: vault '%s' does not exist (fake: 404 VaultNotFound)",
                         what, vault ? vault : "");
}

static int missing(kvr_error *err, const char *what, const char *kind, const char *vault,
                   const char *name)
{
    return kvr_error_set(err, KVR_EAZURE, "%s: %s '%s/%s' does not exist (fake: 404 NotFound)",
                         what, kind, vault ? vault : "", name ? name : "");
}

static bool is_deleted(fake *f, const char *vault, const char *kind, const char *name)
{
    json_t *a = arr(f, "deleted"), *o;
    size_t i;
    json_array_foreach(a, i, o)
    {
        if (ieq(sget(o, "vault"), vault) &&
            strcmp(sget(o, "kind") ? sget(o, "kind") : "", kind) == 0 && ieq(sget(o, "name"), name))
            return true;
    }
    return false;
}

static int deleted_conflict(kvr_error *err, const char *what, const char *kind, const char *vault,
                            const char *name)
{
    return kvr_error_set(err, KVR_ECONFLICT,
                         "%s: %s '%s/%s' is currently in a deleted but recoverable state (fake: "
                         "409 ObjectIsDeletedButRecoverable)",
                         what, kind, vault, name);
}

/* ---- secret values: only markers ----------------------------------------------------------- */

/* A fresh value (generated, a new client secret): the marker of random bytes. */
static int fresh_marker(char out[KVR_MARKER_LEN + 1], fake *f, kvr_error *err)
{
    kvr_value v = {0};
    int rc = kvr_value_generate(&v, 32, KVR_CHARSET_ALNUM, err);
    if (rc < 0)
        return rc;
    kvr_marker(out, f->mk, v.data, v.len);
    kvr_value_release(&v);
    return 0;
}

/* Writes secret (vault, name): a new latest version with these attributes. */
static int secret_write(fake *f, const char *what, const char *vault, const char *name,
                        const char *content_type, json_t *tags /* stolen */, const char *digest,
                        kvr_error *err)
{
    json_t *s;
    if (!get(f, "vaults", "name", vault, NULL, NULL)) {
        json_decref(tags);
        return no_vault(err, what, vault);
    }
    if (is_deleted(f, vault, "secret", name)) {
        json_decref(tags);
        return deleted_conflict(err, what, "secret", vault, name);
    }
    s = get(f, "secrets", "vault", vault, "name", name);
    if (!s) {
        s = json_pack("{s:s,s:s}", "vault", vault, "name", name);
        if (!s || json_array_append_new(arr(f, "secrets"), s) < 0) {
            json_decref(tags);
            return kvr_error_oom(err);
        }
    }
    json_object_set_new(s, "enabled", json_true());
    json_object_set_new(s, "contentType", jstr(content_type));
    if (!json_string_value(json_object_get(s, "contentType")))
        json_object_del(s, "contentType");
    json_object_set_new(s, "tags", tags ? tags : json_object());
    if (digest)
        json_object_set_new(s, "digest", json_string(digest));
    else
        json_object_del(s, "digest");
    return 0;
}

/* ---- vaults -------------------------------------------------------------------------------- */

static void set_network(json_t *v, const kvr_network *n)
{
    if (!n->set)
        return;
    json_object_set_new(v, "defaultAction",
                        json_string(n->default_action ? n->default_action : "Allow"));
    json_object_set_new(v, "bypass", json_string(n->bypass ? n->bypass : "AzureServices"));
    json_object_set_new(v, "publicNetworkAccess",
                        json_string(n->public_access ? n->public_access : "Enabled"));
    json_object_set_new(v, "ipRules", list_json(&n->ip_rules));
    json_object_set_new(v, "virtualNetworkRules", list_json(&n->vnet_rules));
}

static json_t *policy_json(const kvr_op_policy *p)
{
    return json_pack("{s:s,s:o,s:o,s:o}", "objectId", p->object_id, "keys", list_json(&p->keys),
                     "secrets", list_json(&p->secrets), "certificates",
                     list_json(&p->certificates));
}

static int vault_put(fake *f, const kvr_op *op, kvr_error *err)
{
    const kvr_op_vault_ref *r = &op->u.vault.ref;
    const kvr_op_vault_props *p = &op->u.vault.props;
    json_t *v, *pol;
    if (find(f, "deletedVaults", "name", r->name, NULL, NULL) >= 0)
        return kvr_error_set(err, KVR_ECONFLICT,
                             "create vault '%s': the name is held by a soft-deleted vault (fake: "
                             "409 ConflictError)",
                             r->name);
    v = get(f, "vaults", "name", r->name, NULL, NULL);
    if (v && !ieq(sget(v, "resourceGroup"), r->resource_group))
        return kvr_error_set(err, KVR_ECONFLICT,
                             "create vault '%s': the name is taken (fake: 409 VaultAlreadyExists)",
                             r->name);
    if (!v) {
        v = json_pack("{s:s,s:s,s:i}", "name", r->name, "resourceGroup", r->resource_group,
                      "softDeleteDays", p->soft_delete_days > 0 ? p->soft_delete_days : 90);
        if (!v || json_array_append_new(arr(f, "vaults"), v) < 0)
            return kvr_error_oom(err);
        json_object_set_new(v, "purgeProtection", json_false());
        json_object_set_new(v, "tags", json_object());
    }
    json_object_set_new(v, "location", jstr(p->location));
    json_object_set_new(v, "sku", json_string(p->sku == KVR_SKU_PREMIUM ? "premium" : "standard"));
    json_object_set_new(v, "rbac", json_boolean(p->rbac));
    if (p->purge_protection)
        json_object_set_new(v, "purgeProtection", json_true());
    set_network(v, &p->network);
    if (op->u.vault.set_tags)
        json_object_set_new(v, "tags", tags_json(&op->u.vault.tags));
    /* a PUT replaces the access policies with the ones sent */
    pol = json_array();
    for (size_t i = 0; pol && !p->rbac && i < op->u.vault.npolicies; i++)
        json_array_append_new(pol, policy_json(&op->u.vault.policies[i]));
    if (pol && !p->rbac && op->u.vault.self_access) {
        bool have = false;
        for (size_t i = 0; i < op->u.vault.npolicies; i++)
            have |= ieq(op->u.vault.policies[i].object_id, KVR_FAKE_SELF_ID);
        if (!have)
            json_array_append_new(
                pol,
                json_pack("{s:s,s:[s,s,s,s,s,s,s,s],s:[s,s,s,s,s],s:[s,s,s,s]}", "objectId",
                          KVR_FAKE_SELF_ID, "keys", "get", "list", "create", "update", "delete",
                          "recover", "import", "rotate", "secrets", "get", "list", "set", "delete",
                          "recover", "certificates", "get", "list", "import", "delete"));
    }
    if (!pol)
        return kvr_error_oom(err);
    json_object_set_new(v, "accessPolicies", pol);
    return 0;
}

static int vault_patch(fake *f, const kvr_op *op, kvr_error *err)
{
    const kvr_op_vault_props *p = &op->u.vault.props;
    json_t *v = get(f, "vaults", "name", op->u.vault.ref.name, NULL, NULL);
    if (!v)
        return no_vault(err, "update vault", op->u.vault.ref.name);
    if (op->u.vault.set_tags)
        json_object_set_new(v, "tags", tags_json(&op->u.vault.tags));
    if (op->u.vault.set_props) {
        json_object_set_new(v, "sku",
                            json_string(p->sku == KVR_SKU_PREMIUM ? "premium" : "standard"));
        json_object_set_new(v, "rbac", json_boolean(p->rbac));
        if (p->purge_protection) /* Azure takes only true; it cannot be turned off */
            json_object_set_new(v, "purgeProtection", json_true());
        set_network(v, &p->network);
    }
    return 0;
}

/* Adds or removes the permissions of one entry, by name without case. */
static void edit_perms(json_t *entry, const char *family, const kvr_strlist *l, bool remove)
{
    json_t *have = json_object_get(entry, family);
    if (!json_is_array(have)) {
        have = json_array();
        json_object_set_new(entry, family, have);
    }
    for (size_t i = 0; i < l->len; i++) {
        bool found = false;
        /* every spelling of the name goes ("Get" and "get"), as Azure compares them */
        for (size_t j = 0; j < json_array_size(have);) {
            if (!ieq(json_string_value(json_array_get(have, j)), l->items[i])) {
                j++;
                continue;
            }
            found = true;
            if (!remove)
                break;
            json_array_remove(have, j);
        }
        if (!remove && !found)
            json_array_append_new(have, json_string(l->items[i]));
    }
}

static int policy_edit(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *v = get(f, "vaults", "name", op->u.policy.ref.name, NULL, NULL), *list;
    if (!v)
        return no_vault(err, "edit access policy", op->u.policy.ref.name);
    list = json_object_get(v, "accessPolicies");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(v, "accessPolicies", list);
    }
    for (size_t i = 0; i < op->u.policy.nentries; i++) {
        const kvr_op_policy *p = &op->u.policy.entries[i];
        json_t *e = NULL, *x;
        size_t j, at = 0;
        json_array_foreach(list, j, x)
        {
            if (ieq(sget(x, "objectId"), p->object_id)) {
                e = x;
                at = j;
                break;
            }
        }
        if (!e && op->u.policy.remove)
            continue;
        if (!e) {
            e = json_pack("{s:s,s:[],s:[],s:[]}", "objectId", p->object_id, "keys", "secrets",
                          "certificates");
            if (!e || json_array_append_new(list, e) < 0)
                return kvr_error_oom(err);
            at = json_array_size(list) - 1;
        }
        edit_perms(e, "keys", &p->keys, op->u.policy.remove);
        edit_perms(e, "secrets", &p->secrets, op->u.policy.remove);
        edit_perms(e, "certificates", &p->certificates, op->u.policy.remove);
        if (op->u.policy.remove && !json_array_size(json_object_get(e, "keys")) &&
            !json_array_size(json_object_get(e, "secrets")) &&
            !json_array_size(json_object_get(e, "certificates")))
            json_array_remove(list, at); /* an entry left with nothing is gone */
    }
    return 0;
}

/* Moves every element of `member` whose `key` names the vault (or whose scope lies in it) from
   the state into `into`. */
static void move_out(fake *f, const char *member, const char *vault, json_t *into)
{
    json_t *a = arr(f, member);
    char scope[300];
    snprintf(scope, sizeof(scope), "/vaults/%s", vault);
    for (size_t i = 0; i < json_array_size(a);) {
        json_t *o = json_array_get(a, i);
        const char *s = sget(o, "scope");
        const char *at = NULL;
        bool in;
        if (s) {
            /* ".../vaults/V" or ".../vaults/V/keys/K", without case */
            for (const char *p = s; *p; p++)
                if (strncasecmp(p, scope, strlen(scope)) == 0 &&
                    (p[strlen(scope)] == '\0' || p[strlen(scope)] == '/'))
                    at = p;
            in = at != NULL;
        } else {
            in = ieq(sget(o, "vault"), vault);
        }
        if (!in) {
            i++;
            continue;
        }
        json_array_append(json_object_get(into, member), o);
        json_array_remove(a, i);
    }
}

static int vault_delete(fake *f, const kvr_op *op, kvr_error *err)
{
    const char *name = op->u.vault.ref.name;
    ssize_t at = find(f, "vaults", "name", name, NULL, NULL);
    json_t *v, *kept;
    int64_t days;
    if (at < 0)
        return no_vault(err, "delete vault", name);
    v = json_array_get(arr(f, "vaults"), (size_t)at);
    days = vault_retention_days(f, name);
    kept = json_pack("{s:O,s:[],s:[],s:[],s:[],s:[]}", "vault", v, "keys", "secrets",
                     "certificates", "deleted", "roleAssignments");
    if (!kept)
        return kvr_error_oom(err);
    move_out(f, "keys", name, kept);
    move_out(f, "secrets", name, kept);
    move_out(f, "certificates", name, kept);
    move_out(f, "deleted", name, kept);
    move_out(f, "roleAssignments", name, kept);
    json_array_append_new(arr(f, "deletedVaults"),
                          json_pack("{s:s,s:s,s:I,s:I,s:b}", "name", sget(v, "name"), "location",
                                    sget(v, "location") ? sget(v, "location") : "", "deleted",
                                    (json_int_t)f->now, "purgeAt",
                                    (json_int_t)(f->now + days * 86400), "purgeProtection",
                                    json_is_true(json_object_get(v, "purgeProtection"))));
    json_object_set_new(json_object_get(f->grave, "vaults"), sget(v, "name"), kept);
    json_array_remove(arr(f, "vaults"), (size_t)at);
    return 0;
}

static int vault_recover(fake *f, const kvr_op *op, kvr_error *err)
{
    const char *name = op->u.vault.ref.name;
    ssize_t at = find(f, "deletedVaults", "name", name, NULL, NULL);
    json_t *gv = json_object_get(f->grave, "vaults"), *kept = NULL;
    const char *key;
    json_t *x;
    if (at < 0)
        return kvr_error_set(err, KVR_EAZURE,
                             "recover vault '%s': no soft-deleted vault of that name (fake: 404 "
                             "DeletedVaultNotFound)",
                             name);
    json_object_foreach(gv, key, x)
    {
        if (ieq(key, name))
            kept = x;
    }
    if (kept) {
        static const char *const members[] = {"keys", "secrets", "certificates", "deleted",
                                              "roleAssignments"};
        json_array_append(arr(f, "vaults"), json_object_get(kept, "vault"));
        for (size_t i = 0; i < 5; i++)
            json_array_extend(arr(f, members[i]), json_object_get(kept, members[i]));
    } else {
        json_t *d = json_array_get(arr(f, "deletedVaults"), (size_t)at);
        json_t *v = json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:b,s:{}}", "name", name, "resourceGroup",
                              op->u.vault.ref.resource_group ? op->u.vault.ref.resource_group : "",
                              "location", sget(d, "location") ? sget(d, "location") : "", "sku",
                              op->u.vault.props.sku == KVR_SKU_PREMIUM ? "premium" : "standard",
                              "rbac", 1, "softDeleteDays", 90, "purgeProtection",
                              json_is_true(json_object_get(d, "purgeProtection")), "tags");
        if (!v || json_array_append_new(arr(f, "vaults"), v) < 0)
            return kvr_error_oom(err);
    }
    if (kept) {
        const char *real = NULL;
        json_object_foreach(gv, key, x)
        {
            if (ieq(key, name))
                real = key;
        }
        if (real)
            json_object_del(gv, real);
    }
    json_array_remove(arr(f, "deletedVaults"), (size_t)at);
    return 0;
}

/* ---- Graph: apps, service principals, passwords -------------------------------------------- */

static json_t *strlist_json(const kvr_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

static int app_upsert(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *a = NULL, *x;
    size_t i;
    /* by uniqueName, which the Azure provider derives from the display name without case */
    json_array_foreach(arr(f, "apps"), i, x)
    {
        if (ieq(sget(x, "displayName"), op->u.app.display_name))
            a = x;
    }
    if (!a) {
        char app_id[37], object_id[37];
        guid(app_id, f, op->u.app.display_name, false);
        guid(object_id, f, op->u.app.display_name, false);
        a = json_pack("{s:s,s:s,s:s,s:[]}", "displayName", op->u.app.display_name, "appId", app_id,
                      "objectId", object_id, "passwordCredentials");
        if (!a || json_array_append_new(arr(f, "apps"), a) < 0)
            return kvr_error_oom(err);
    }
    if (op->u.app.audience)
        json_object_set_new(a, "signInAudience", json_string(op->u.app.audience));
    if (op->u.app.tags.len) /* a Graph PATCH replaces the list */
        json_object_set_new(a, "tags", strlist_json(&op->u.app.tags));
    return 0;
}

/* APP_TAGS replaces the list; APP_DELETE moves the app to the deleted items, with its service
   principal gone (one gone is fine, as in Graph); APP_RESTORE brings it back without one. */
static int app_tags_or_delete(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *apps = arr(f, "apps"), *x;
    size_t i;
    json_array_foreach(apps, i, x)
    {
        bool gone = json_is_true(json_object_get(x, "deleted"));
        if (!ieq(sget(x, "objectId"), op->u.app_tags.object_id))
            continue;
        if (op->kind == KVR_OP_APP_RESTORE && !gone)
            break;
        if (op->kind == KVR_OP_APP_RESTORE) {
            json_object_del(x, "deleted");
            return 0;
        }
        if (gone)
            break;
        if (op->kind == KVR_OP_APP_DELETE) {
            json_object_del(x, "servicePrincipalId");
            return json_object_set_new(x, "deleted", json_true()) < 0 ? kvr_error_oom(err) : 0;
        }
        if (op->u.app_tags.tags.len)
            return json_object_set_new(x, "tags", strlist_json(&op->u.app_tags.tags)) < 0
                       ? kvr_error_oom(err)
                       : 0;
        json_object_del(x, "tags");
        return 0;
    }
    if (op->kind == KVR_OP_APP_DELETE)
        return 0;
    return kvr_error_set(err, KVR_EAZURE, "%s app '%s': no application '%s' (fake: 404)",
                         op->kind == KVR_OP_APP_RESTORE ? "restore deleted" : "set tags of",
                         op->u.app_tags.name ? op->u.app_tags.name : "",
                         op->u.app_tags.object_id ? op->u.app_tags.object_id : "");
}

static int sp_upsert(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *a = get(f, "apps", "appId", op->u.sp.app_id, NULL, NULL);
    char id[37];
    if (!a)
        return kvr_error_set(err, KVR_EAZURE,
                             "create service principal of app '%s': no application with appId "
                             "'%s' (fake: 400 NoBackingApplicationObject)",
                             op->u.sp.display_name ? op->u.sp.display_name : "", op->u.sp.app_id);
    if (sget(a, "servicePrincipalId"))
        return 0;
    guid(id, f, op->u.sp.app_id, false);
    json_object_set_new(a, "servicePrincipalId", json_string(id));
    return 0;
}

static json_t *app_by_object_id(fake *f, const char *id)
{
    return get(f, "apps", "objectId", id, NULL, NULL);
}

static void creds_remove(json_t *a, const char *key_id)
{
    json_t *c = json_object_get(a, "passwordCredentials"), *x;
    size_t i;
    json_array_foreach(c, i, x)
    {
        if (ieq(sget(x, "keyId"), key_id)) {
            json_array_remove(c, i);
            return;
        }
    }
}

/* PASSWORD_ADD: addPassword; with `store`, at once the text into its vault secret, tagged with
   the keyId (and the password removed again when that fails). */
static int password_add(fake *f, const kvr_op *op, bool store, kvr_error *err)
{
    json_t *a = app_by_object_id(f, op->u.password.app_object_id), *c, *tags;
    char key_id[37], marker[KVR_MARKER_LEN + 1];
    int rc;
    if (!a)
        return kvr_error_set(err, KVR_EAZURE,
                             "add client secret to app '%s': no application '%s' (fake: 404 "
                             "Request_ResourceNotFound)",
                             op->u.password.app_name ? op->u.password.app_name : "",
                             op->u.password.app_object_id);
    guid(key_id, f, op->u.password.app_object_id, false);
    c = json_pack("{s:s,s:s,s:I,s:I}", "keyId", key_id, "displayName",
                  op->u.password.display_name ? op->u.password.display_name : "", "start",
                  (json_int_t)f->now, "end", (json_int_t)op->u.password.end);
    if (!c || json_array_append_new(json_object_get(a, "passwordCredentials"), c) < 0)
        return kvr_error_oom(err);
    if (!store)
        return 0;
    if ((rc = fresh_marker(marker, f, err)) < 0)
        goto undo;
    tags = json_pack("{s:s}", KVR_TAG_CREDENTIAL, key_id);
    if (!tags) {
        rc = kvr_error_oom(err);
        goto undo;
    }
    rc = secret_write(f, "store client secret", op->u.password.store_vault,
                      op->u.password.store_secret, "text/plain", tags, marker, err);
    if (rc == 0)
        return 0;
undo:
    /* not stored: removed, so that no credential exists that nobody can use */
    creds_remove(a, key_id);
    return rc;
}

static int password_remove(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *a = app_by_object_id(f, op->u.password.app_object_id), *x;
    size_t i;
    if (!a)
        return kvr_error_set(
            err, KVR_EAZURE, "remove client secret of app '%s': no application '%s' (fake: 404)",
            op->u.password.app_name ? op->u.password.app_name : "", op->u.password.app_object_id);
    json_array_foreach(json_object_get(a, "passwordCredentials"), i, x)
    {
        if (ieq(sget(x, "keyId"), op->u.password.key_id)) {
            json_array_remove(json_object_get(a, "passwordCredentials"), i);
            return 0;
        }
    }
    return kvr_error_set(err, KVR_EAZURE,
                         "remove client secret of app '%s': no password with keyId '%s' (fake: "
                         "400 InvalidKeyId)",
                         op->u.password.app_name ? op->u.password.app_name : "",
                         op->u.password.key_id ? op->u.password.key_id : "");
}

/* ---- ARM role assignments ------------------------------------------------------------------ */

/* The vault a scope ".../vaults/V[/keys/K]" names, into buf; NULL if none. */
static const char *scope_vault(char *buf, size_t size, const char *scope, const char **key)
{
    const char *p = NULL, *end;
    *key = NULL;
    for (const char *s = scope; s && *s; s++)
        if (strncasecmp(s, "/vaults/", 8) == 0)
            p = s + 8;
    if (!p)
        return NULL;
    end = strchr(p, '/');
    if (!end)
        end = p + strlen(p);
    if (end == p || (size_t)(end - p) >= size)
        return NULL;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    if (strncasecmp(end, "/keys/", 6) == 0)
        *key = end + 6;
    return buf;
}

static bool is_principal(fake *f, const char *id)
{
    return find(f, "apps", "servicePrincipalId", id, NULL, NULL) >= 0;
}

static int role_assign(fake *f, const kvr_op *op, kvr_error *err)
{
    const char *who =
        op->u.role.principal_name ? op->u.role.principal_name : op->u.role.principal_id;
    char vault[128], what[600], name[37];
    const char *key;
    json_t *x, *ra;
    size_t i;
    if (!scope_vault(vault, sizeof(vault), op->u.role.scope, &key) ||
        !get(f, "vaults", "name", vault, NULL, NULL))
        return kvr_error_set(err, KVR_EAZURE,
                             "assign role to app '%s': scope '%s' does not exist (fake: 404 "
                             "ResourceNotFound)",
                             who, op->u.role.scope ? op->u.role.scope : "");
    if (!is_principal(f, op->u.role.principal_id))
        return kvr_error_set(err, KVR_EAZURE,
                             "assign role to app '%s': principal '%s' does not exist in the "
                             "directory (fake: 400 PrincipalNotFound)",
                             who, op->u.role.principal_id);
    snprintf(what, sizeof(what), "%s|%s|%s", op->u.role.scope, op->u.role.role_id,
             op->u.role.principal_id);
    for (char *p = what; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    guid(name, f, what, true);
    json_array_foreach(arr(f, "roleAssignments"), i, x)
    {
        if (ieq(sget(x, "name"), name))
            return 0; /* the same PUT again */
        if (ieq(sget(x, "scope"), op->u.role.scope) &&
            ieq(sget(x, "roleDefinitionId"), op->u.role.role_id) &&
            ieq(sget(x, "principalId"), op->u.role.principal_id))
            return kvr_error_set(err, KVR_ECONFLICT,
                                 "assign role to app '%s': the role assignment already exists "
                                 "as '%s' (fake: 409 RoleAssignmentExists)",
                                 who, sget(x, "name"));
    }
    ra = json_pack("{s:s,s:s,s:s,s:s}", "name", name, "scope", op->u.role.scope, "roleDefinitionId",
                   op->u.role.role_id, "principalId", op->u.role.principal_id);
    if (!ra || json_array_append_new(arr(f, "roleAssignments"), ra) < 0)
        return kvr_error_oom(err);
    {
        /* ARM keeps role definition ids in lower case */
        char *lower = strdup(op->u.role.role_id);
        if (!lower)
            return kvr_error_oom(err);
        for (char *p = lower; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        json_object_set_new(ra, "roleDefinitionId", json_string(lower));
        free(lower);
    }
    return 0;
}

static int role_remove(fake *f, const kvr_op *op, kvr_error *err)
{
    ssize_t at = find(f, "roleAssignments", "name", op->u.role.name, NULL, NULL);
    (void)err;
    if (at >= 0) /* one already gone is fine */
        json_array_remove(arr(f, "roleAssignments"), (size_t)at);
    return 0;
}

/* ---- Key Vault: keys, tags, objects -------------------------------------------------------- */

static json_t *key_version(json_t *k, const char *version)
{
    json_t *vs = json_object_get(k, "versions"), *x;
    size_t i;
    if (!version)
        return json_array_get(vs, json_array_size(vs) - 1);
    json_array_foreach(vs, i, x)
    {
        if (ieq(sget(x, "id"), version))
            return x;
    }
    return NULL;
}

static int key_create(fake *f, const kvr_op *op, bool with_policy, kvr_error *err)
{
    const char *vault = op->u.key.vault, *name = op->u.key.name;
    json_t *k, *v;
    char id[33], what[300];
    if (!get(f, "vaults", "name", vault, NULL, NULL))
        return no_vault(err, "create key", vault);
    if (is_deleted(f, vault, "key", name))
        return deleted_conflict(err, "create key", "key", vault, name);
    k = get(f, "keys", "vault", vault, "name", name);
    if (!k) {
        k = json_pack("{s:s,s:s,s:[]}", "vault", vault, "name", name, "versions");
        if (!k || json_array_append_new(arr(f, "keys"), k) < 0)
            return kvr_error_oom(err);
    }
    json_object_set_new(k, "kty", jstr(op->u.key.kty));
    if (op->u.key.size)
        json_object_set_new(k, "size", json_integer(op->u.key.size));
    else
        json_object_del(k, "size");
    if (op->u.key.curve)
        json_object_set_new(k, "crv", json_string(op->u.key.curve));
    else
        json_object_del(k, "crv");
    json_object_set_new(k, "ops", ops_json(op->u.key.ops));
    snprintf(what, sizeof(what), "%s/%s", vault, name);
    hex_id(id, f, what);
    v = json_pack("{s:s,s:b,s:I,s:o}", "id", id, "enabled", 1, "created", (json_int_t)f->now,
                  "tags", tags_json(&op->u.key.tags));
    if (!v || json_array_append_new(json_object_get(k, "versions"), v) < 0)
        return kvr_error_oom(err);
    if (with_policy && op->u.key.set_rotation)
        json_object_set_new(k, "rotationPolicy", rotation_json(&op->u.key.rotation));
    return 0;
}

static int key_policy(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *k = get(f, "keys", "vault", op->u.key.vault, "name", op->u.key.name);
    if (!k)
        return missing(err, "set rotation policy", "key", op->u.key.vault, op->u.key.name);
    json_object_set_new(k, "rotationPolicy", rotation_json(&op->u.key.rotation));
    return 0;
}

static int key_patch(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *k = get(f, "keys", "vault", op->u.key_patch.vault, "name", op->u.key_patch.name), *v;
    json_t *vs;
    if (!k || !(v = key_version(k, op->u.key_patch.version)))
        return missing(err, "update key", "key version", op->u.key_patch.vault,
                       op->u.key_patch.version ? op->u.key_patch.version : op->u.key_patch.name);
    vs = json_object_get(k, "versions");
    /* the model keeps the operations of the latest version */
    if (op->u.key_patch.set_ops && v == json_array_get(vs, json_array_size(vs) - 1))
        json_object_set_new(k, "ops", ops_json(op->u.key_patch.ops));
    if (op->u.key_patch.set_enabled)
        json_object_set_new(v, "enabled", json_boolean(op->u.key_patch.enabled));
    if (op->u.key_patch.set_exp)
        json_object_set_new(v, "exp", json_integer(op->u.key_patch.exp));
    return 0;
}

static int tag_set(fake *f, const kvr_op *op, kvr_error *err)
{
    bool keys = op->u.tag.collection == KVR_COLL_KEYS;
    json_t *o = get(f, keys ? "keys" : "secrets", "vault", op->u.tag.vault, "name", op->u.tag.name);
    json_t *tags;
    if (o && keys)
        o = key_version(o, op->u.tag.version);
    if (!o)
        return missing(err, "set tag", keys ? "key" : "secret", op->u.tag.vault, op->u.tag.name);
    tags = json_object_get(o, "tags");
    if (!json_is_object(tags)) {
        tags = json_object();
        json_object_set_new(o, "tags", tags);
    }
    json_object_set_new(tags, op->u.tag.tag, jstr(op->u.tag.value));
    return 0;
}

static int object_delete(fake *f, const kvr_op *op, kvr_error *err)
{
    bool keys = op->u.object.collection == KVR_COLL_KEYS;
    const char *member = keys ? "keys" : "secrets", *kind = keys ? "key" : "secret";
    ssize_t at = find(f, member, "vault", op->u.object.vault, "name", op->u.object.name);
    json_t *o, *objects = json_object_get(f->grave, "objects");
    if (at < 0)
        return missing(err, "delete", kind, op->u.object.vault, op->u.object.name);
    o = json_array_get(arr(f, member), (size_t)at);
    json_array_append_new(objects, json_pack("{s:s,s:O}", "kind", kind, "object", o));
    json_array_append_new(
        arr(f, "deleted"),
        json_pack("{s:s,s:s,s:s,s:I,s:I}", "vault", sget(o, "vault"), "kind", kind, "name",
                  sget(o, "name"), "deleted", (json_int_t)f->now, "purgeAt",
                  (json_int_t)(f->now + vault_retention_days(f, op->u.object.vault) * 86400)));
    json_array_remove(arr(f, member), (size_t)at);
    return 0;
}

static int object_recover(fake *f, const kvr_op *op, kvr_error *err)
{
    bool keys = op->u.object.collection == KVR_COLL_KEYS;
    const char *member = keys ? "keys" : "secrets", *kind = keys ? "key" : "secret";
    json_t *objects = json_object_get(f->grave, "objects"), *x, *kept = NULL, *d;
    size_t i, at = 0;
    bool found = false;
    json_array_foreach(arr(f, "deleted"), i, d)
    {
        if (ieq(sget(d, "vault"), op->u.object.vault) && strcmp(sget(d, "kind"), kind) == 0 &&
            ieq(sget(d, "name"), op->u.object.name)) {
            found = true;
            at = i;
            break;
        }
    }
    if (!found)
        return missing(err, "recover", keys ? "deleted key" : "deleted secret", op->u.object.vault,
                       op->u.object.name);
    json_array_remove(arr(f, "deleted"), at);
    json_array_foreach(objects, i, x)
    {
        json_t *o = json_object_get(x, "object");
        if (strcmp(sget(x, "kind"), kind) == 0 && ieq(sget(o, "vault"), op->u.object.vault) &&
            ieq(sget(o, "name"), op->u.object.name)) {
            kept = o;
            at = i;
        }
    }
    if (kept) {
        json_array_append(arr(f, member), kept);
        json_array_remove(objects, at);
        return 0;
    }
    /* in the fixture's deleted list from the start: what it held is not known */
    x = keys ? json_pack("{s:s,s:s,s:s,s:[],s:[]}", "vault", op->u.object.vault, "name",
                         op->u.object.name, "kty", "RSA", "ops", "versions")
             : json_pack("{s:s,s:s,s:b,s:{}}", "vault", op->u.object.vault, "name",
                         op->u.object.name, "enabled", 1, "tags");
    if (!x || json_array_append_new(arr(f, member), x) < 0)
        return kvr_error_oom(err);
    return 0;
}

/* ---- Key Vault: secrets and certificates ----------------------------------------------------- */

static int secret_set(fake *f, const kvr_op *op, kvr_error *err)
{
    const kvr_op_value *src = &op->u.secret.value;
    char marker[KVR_MARKER_LEN + 1];
    const char *digest = marker;
    kvr_value v = {0};
    int rc;
    switch (src->kind) {
    case KVR_OP_VALUE_GENERATE:
        if ((rc = fresh_marker(marker, f, err)) < 0)
            return rc;
        break;
    case KVR_OP_VALUE_ENV:
    case KVR_OP_VALUE_FILE:
        if ((rc = kvr_value_read_source(&v, src, op->u.secret.name, err)) < 0)
            return rc;
        kvr_marker(marker, f->mk, v.data, v.len);
        kvr_value_release(&v);
        break;
    case KVR_OP_VALUE_STORED: {
        json_t *s = get(f, "secrets", "vault", src->vault, "name", src->secret);
        if (!s)
            return missing(err, "read the value of secret", "secret", src->vault, src->secret);
        digest = sget(s, "digest");
        break;
    }
    default:
        return kvr_error_set(err, KVR_EINVAL, "unknown source of secret '%s'", op->u.secret.name);
    }
    {
        char d[KVR_MARKER_LEN + 1 + 64];
        snprintf(d, sizeof(d), "%s", digest ? digest : "");
        return secret_write(f, "set secret", op->u.secret.vault, op->u.secret.name,
                            op->u.secret.content_type, tags_json(&op->u.secret.tags),
                            digest ? d : NULL, err);
    }
}

static int secret_patch(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *s =
        get(f, "secrets", "vault", op->u.secret_patch.vault, "name", op->u.secret_patch.name);
    if (!s)
        return missing(err, "update secret", "secret", op->u.secret_patch.vault,
                       op->u.secret_patch.name);
    json_object_set_new(s, "tags", tags_json(&op->u.secret_patch.tags));
    if (op->u.secret_patch.content_type)
        json_object_set_new(s, "contentType", json_string(op->u.secret_patch.content_type));
    return 0;
}

static int secret_copy(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *s = get(f, "secrets", "vault", op->u.copy.from, "name", op->u.copy.name), *tags;
    char digest[128];
    if (!s)
        return missing(err, "copy secret", "secret", op->u.copy.from, op->u.copy.name);
    /* the value and the tags of the source; the content type the operation names */
    snprintf(digest, sizeof(digest), "%s", sget(s, "digest") ? sget(s, "digest") : "");
    tags = json_is_object(json_object_get(s, "tags")) ? json_deep_copy(json_object_get(s, "tags"))
                                                      : json_object();
#ifdef KVR_TAG_COPY
    /* the mark of a copy, as the Azure provider writes it (a later plan tells a copy from a value
       written in the new vault by someone else) */
    if (tags)
        json_object_set_new(tags, KVR_TAG_COPY, json_string(op->u.copy.from));
#endif
    return secret_write(f, "copy secret", op->u.copy.to,
                        op->u.copy.to_name ? op->u.copy.to_name : op->u.copy.name,
                        op->u.copy.content_type, tags, digest[0] ? digest : NULL, err);
}

static int cert_copy(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *c = get(f, "certificates", "vault", op->u.copy.from, "name", op->u.copy.name), *t;
    if (!c)
        return missing(err, "copy certificate", "certificate", op->u.copy.from, op->u.copy.name);
    if (!get(f, "vaults", "name", op->u.copy.to, NULL, NULL))
        return no_vault(err, "import certificate", op->u.copy.to);
    if (is_deleted(f, op->u.copy.to, "certificate", op->u.copy.name))
        return deleted_conflict(err, "import certificate", "certificate", op->u.copy.to,
                                op->u.copy.name);
    t = get(f, "certificates", "vault", op->u.copy.to, "name", op->u.copy.name);
    if (!t) {
        t = json_pack("{s:s,s:s}", "vault", op->u.copy.to, "name", op->u.copy.name);
        if (!t || json_array_append_new(arr(f, "certificates"), t) < 0)
            return kvr_error_oom(err);
    }
    if (sget(c, "x5t"))
        json_object_set_new(t, "x5t", json_string(sget(c, "x5t")));
    return 0;
}

/* ---- the profile service ------------------------------------------------------------------- */

static const char *const STATUS[] = {"Created", "Applying", "Used", "Inactive", "Failed", NULL};

static void set_status(fake *f, json_t *p, int status)
{
    json_object_set_new(p, "status", json_string(STATUS[status]));
    json_object_set_new(p, "statusSince", json_integer(f->now));
}

static int status_of(const json_t *p)
{
    const char *s = sget(p, "status");
    for (int i = 0; s && STATUS[i]; i++)
        if (strcmp(s, STATUS[i]) == 0)
            return i;
    return -1;
}

/* Becoming Used ends the re-wrap: the profile used until then is Inactive. */
static void profile_status(fake *f, json_t *p, int status)
{
    if (status == KVR_PROFILE_USED) {
        json_t *x;
        size_t i;
        json_array_foreach(arr(f, "profiles"), i, x)
        {
            if (x != p && status_of(x) == KVR_PROFILE_USED)
                set_status(f, x, KVR_PROFILE_INACTIVE);
        }
    }
    set_status(f, p, status);
}

static int profile_put(fake *f, const kvr_op *op, kvr_error *err)
{
    const char *name = op->u.profile.name;
    json_t *p = get(f, "profiles", "name", name, NULL, NULL);
    /* the client secret is read from its vault secret first */
    if (!get(f, "secrets", "vault", op->u.profile.secret_vault, "name", op->u.profile.secret_name))
        return missing(err, op->u.profile.create ? "create profile" : "set credentials of profile",
                       "secret", op->u.profile.secret_vault, op->u.profile.secret_name);
    if (!op->u.profile.create) {
        if (!p)
            return kvr_error_set(err, KVR_EAZURE,
                                 "set credentials of profile '%s': no such profile (fake: 404)",
                                 name);
        json_object_set_new(p, "clientId", jstr(op->u.profile.client_id));
        json_object_set_new(p, "credential", jstr(op->u.profile.credential));
        return 0;
    }
    if (p) {
        if (ieq(sget(p, "vault"), op->u.profile.key_vault) &&
            ieq(sget(p, "key"), op->u.profile.key_name) &&
            ieq(sget(p, "keyVersion"), op->u.profile.key_version) &&
            ieq(sget(p, "clientId"), op->u.profile.client_id))
            return 0;
        return kvr_error_set(err, KVR_ECONFLICT,
                             "create profile '%s': it exists with another key or client (fake: "
                             "409 ProfileImmutable)",
                             name);
    }
    {
        json_t *k =
            get(f, "keys", "vault", op->u.profile.key_vault, "name", op->u.profile.key_name);
        if (!k || !key_version(k, op->u.profile.key_version))
            return missing(err, "create profile", "key version", op->u.profile.key_vault,
                           op->u.profile.key_version ? op->u.profile.key_version : "");
    }
    p = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "name", name, "vault", op->u.profile.key_vault,
                  "key", op->u.profile.key_name, "keyVersion", op->u.profile.key_version,
                  "clientId", jstr(op->u.profile.client_id), "credential",
                  jstr(op->u.profile.credential));
    if (!p || json_array_append_new(arr(f, "profiles"), p) < 0)
        return kvr_error_oom(err);
    set_status(f, p, KVR_PROFILE_CREATED);
    return 0;
}

static int profile_apply(fake *f, const kvr_op *op, kvr_error *err)
{
    json_t *p = get(f, "profiles", "name", op->u.profile.name, NULL, NULL), *x;
    size_t i;
    if (!p)
        return kvr_error_set(err, KVR_EAZURE, "apply profile '%s': no such profile (fake: 404)",
                             op->u.profile.name);
    if (status_of(p) == KVR_PROFILE_APPLYING || status_of(p) == KVR_PROFILE_USED)
        return 0;
    json_array_foreach(arr(f, "profiles"), i, x)
    {
        if (status_of(x) == KVR_PROFILE_APPLYING)
            return kvr_error_set(err, KVR_ECONFLICT,
                                 "apply profile '%s': profile '%s' is being applied (fake: 409 "
                                 "ApplyInProgress)",
                                 op->u.profile.name, sget(x, "name"));
    }
    /* Applying until the service has re-wrapped every data key (a script says when); the
       profile in use stays Used, and its key usable, until then */
    set_status(f, p, KVR_PROFILE_APPLYING);
    return 0;
}

static int profile_delete(fake *f, const kvr_op *op, kvr_error *err)
{
    ssize_t at = find(f, "profiles", "name", op->u.profile.name, NULL, NULL);
    json_t *p;
    if (at < 0)
        return kvr_error_set(err, KVR_EAZURE, "delete profile '%s': no such profile (fake: 404)",
                             op->u.profile.name);
    p = json_array_get(arr(f, "profiles"), (size_t)at);
    if (status_of(p) == KVR_PROFILE_APPLYING || status_of(p) == KVR_PROFILE_USED)
        return kvr_error_set(err, KVR_ECONFLICT,
                             "delete profile '%s': it is %s (fake: 409 ProfileInUse)",
                             op->u.profile.name, sget(p, "status"));
    json_array_remove(arr(f, "profiles"), (size_t)at);
    return 0;
}

/* ---- one operation ------------------------------------------------------------------------- */

/* Carries out `op`; with `first`, only what its first request does (a scripted crash). */
static int carry_out(fake *f, const kvr_op *op, bool first, kvr_error *err)
{
    if (first) {
        switch (op->kind) {
        case KVR_OP_PASSWORD_ADD:
            return password_add(f, op, false, err);
        case KVR_OP_KEY_CREATE:
            return key_create(f, op, false, err);
        case KVR_OP_TAG_SET:
        case KVR_OP_PROFILE_PUT:
        case KVR_OP_SECRET_COPY:
        case KVR_OP_CERT_COPY:
        case KVR_OP_VAULT_PUT:
        case KVR_OP_VAULT_RECOVER:
            return 1; /* a read (or the resource group) first: nothing changed */
        case KVR_OP_SECRET_SET:
            if (op->u.secret.value.kind == KVR_OP_VALUE_STORED)
                return 1;
            break;
        default:
            break;
        }
    }
    switch (op->kind) {
    case KVR_OP_VAULT_PUT:
        return vault_put(f, op, err);
    case KVR_OP_VAULT_RECOVER:
        return vault_recover(f, op, err);
    case KVR_OP_VAULT_PATCH:
        return vault_patch(f, op, err);
    case KVR_OP_VAULT_POLICY_EDIT:
        return policy_edit(f, op, err);
    case KVR_OP_VAULT_DELETE:
        return vault_delete(f, op, err);
    case KVR_OP_APP_UPSERT:
        return app_upsert(f, op, err);
    case KVR_OP_SP_UPSERT:
        return sp_upsert(f, op, err);
    case KVR_OP_PASSWORD_ADD:
        return password_add(f, op, true, err);
    case KVR_OP_PASSWORD_REMOVE:
        return password_remove(f, op, err);
    case KVR_OP_APP_TAGS:
    case KVR_OP_APP_DELETE:
    case KVR_OP_APP_RESTORE:
        return app_tags_or_delete(f, op, err);
    case KVR_OP_ROLE_ASSIGN:
        return role_assign(f, op, err);
    case KVR_OP_ROLE_REMOVE:
        return role_remove(f, op, err);
    case KVR_OP_KEY_CREATE:
        return key_create(f, op, true, err);
    case KVR_OP_KEY_PATCH:
        return key_patch(f, op, err);
    case KVR_OP_KEY_ROTATION_POLICY:
        return key_policy(f, op, err);
    case KVR_OP_TAG_SET:
        return tag_set(f, op, err);
    case KVR_OP_OBJECT_DELETE:
        return object_delete(f, op, err);
    case KVR_OP_OBJECT_RECOVER:
        return object_recover(f, op, err);
    case KVR_OP_SECRET_SET:
        return secret_set(f, op, err);
    case KVR_OP_SECRET_PATCH:
        return secret_patch(f, op, err);
    case KVR_OP_SECRET_COPY:
        return secret_copy(f, op, err);
    case KVR_OP_CERT_COPY:
        return cert_copy(f, op, err);
    case KVR_OP_PROFILE_PUT:
        return profile_put(f, op, err);
    case KVR_OP_PROFILE_APPLY:
        return profile_apply(f, op, err);
    case KVR_OP_PROFILE_DELETE:
        return profile_delete(f, op, err);
    }
    return kvr_error_set(err, KVR_EINVAL, "unknown operation kind %d", (int)op->kind);
}

static int log_add(fake *f, char *line /* taken */, kvr_error *err)
{
    if (f->nlog == f->caplog &&
        kvr_grow((void **)&f->log, &f->caplog, f->nlog + 1, sizeof(*f->log)) < 0) {
        free(line);
        return kvr_error_oom(err);
    }
    f->log[f->nlog++] = line;
    return 0;
}

/* The scripted fault for this call (operation number n of its kind's k), or NULL. */
static fault *fault_for(fake *f, const kvr_op *op, size_t n, size_t k)
{
    for (size_t i = 0; i < f->nfaults; i++) {
        fault *x = &f->faults[i];
        if (x->left <= 0 || x->read)
            continue;
        if (x->op ? x->op == n : (x->kind == (int)op->kind && x->nth == k))
            return x;
    }
    return NULL;
}

static int fake_apply(kvr_provider *p, const kvr_op *op, kvr_error *err)
{
    fake *f = from_base(p);
    char *text = NULL;
    kvr_error local;
    fault *x;
    bool retry;
    int rc;

    if (!err)
        err = &local;
    f->calls++;
    if (!kvr_op_resolved(op))
        return kvr_error_set(err, KVR_EINVAL,
                             "operation '%s' holds a value only its run can know; plan again",
                             kvr_op_kind_name(op->kind));
    if ((rc = kvr_op_to_json(&text, op, true, err)) < 0)
        return rc;
    /* the same operation again right after it failed is its retry, not a new operation */
    retry = f->last && f->last_failed && strcmp(f->last, text) == 0;
    if (!retry) {
        f->ops++;
        f->kinds[op->kind]++;
    }
    free(f->last);
    f->last = strdup(text);
    x = fault_for(f, op, f->ops, f->kinds[op->kind]);
    if (x) {
        x->left--;
        f->last_failed = true;
        if (!x->crash) {
            free(text);
            return kvr_error_set(err, x->code, "%s: %s (fake: scripted, operation %zu)",
                                 kvr_op_kind_name(op->kind), x->why, f->ops);
        }
        if (x->crash_after) {
            kvr_error ignored;
            rc = carry_out(f, op, true, &ignored);
            if (rc == 0) {
                if ((rc = log_add(f, text, err)) < 0)
                    return rc;
                text = NULL;
            }
        }
        free(text);
        return kvr_error_set(err, KVR_EHTTP,
                             "%s: connection reset (fake: scripted crash, operation %zu)",
                             kvr_op_kind_name(op->kind), f->ops);
    }
    rc = carry_out(f, op, false, err);
    f->last_failed = rc < 0;
    if (rc < 0) {
        free(text);
        return rc;
    }
    return log_add(f, text, err);
}

/* ---- reads, probes ------------------------------------------------------------------------- */

static int fake_read(kvr_provider *p, kvr_live **out, const kvr_scope *scope, kvr_error *err)
{
    fake *f = from_base(p);
    char *text;
    int rc;
    /* everything the fake holds: a fixture's state is what some scope read */
    *out = NULL;
    f->reads++;
    for (size_t i = 0; i < f->nfaults; i++) {
        fault *x = &f->faults[i];
        if (x->read && x->read <= f->reads && x->left > 0) {
            x->left--;
            return kvr_error_set(err, x->code, "read the live state: %s (fake: scripted, read %zu)",
                                 x->why, f->reads);
        }
    }
    for (size_t i = 0; i < f->nevents; i++) {
        event *e = &f->events[i];
        json_t *o;
        if (e->read != f->reads)
            continue;
        if (e->kind == EV_PROFILE && (o = get(f, "profiles", "name", e->name, NULL, NULL)))
            profile_status(f, o, e->status);
        if (e->kind == EV_VAULT_TAGS && (o = get(f, "vaults", "name", e->name, NULL, NULL)))
            json_object_set(o, "tags", e->tags);
        if (e->kind == EV_ADVANCE)
            f->now += e->advance;
        if (e->kind == EV_DELETE) {
            /* another writer deletes something (soft delete, as anyone can) */
            kvr_op op;
            kvr_error ignored;
            memset(&op, 0, sizeof(op));
            if (e->what == 2) {
                op.kind = KVR_OP_VAULT_DELETE;
                op.u.vault.ref.name = e->name;
                vault_delete(f, &op, &ignored);
            } else {
                op.kind = KVR_OP_OBJECT_DELETE;
                op.u.object.collection = e->what == 0 ? KVR_COLL_KEYS : KVR_COLL_SECRETS;
                op.u.object.vault = e->name;
                op.u.object.name = e->object;
                object_delete(f, &op, &ignored);
            }
        }
    }
    json_object_set_new(f->st, "now", json_integer(f->now));
    text = json_dumps(f->st, JSON_COMPACT);
    if (!text)
        return kvr_error_oom(err);
    rc = kvr_live_from_json(out, text, strlen(text), err);
    free(text);
    /* as the Azure reader: an app the scope does not name is read only by this estate's marker */
    for (size_t i = 0; rc == 0 && scope && scope->retired_apps && i < (*out)->napps; i++) {
        kvr_live_app *a = &(*out)->apps[i];
        bool named = false, marked = false;
        char marker[200];
        snprintf(marker, sizeof(marker), KVR_APP_TAG_MANAGED "%s",
                 scope->subscription ? scope->subscription : "");
        for (size_t j = 0; j < scope->napps; j++)
            named |= ieq(scope->apps[j], a->display_name);
        for (size_t j = 0; j < a->tags.len; j++)
            marked |= ieq(a->tags.items[j], marker);
        if (!named && marked)
            a->undeclared = true;
    }
    f->now += f->per_read;
    return rc;
}

/* Does the app's principal hold access to the key: a role assignment on the vault or the key
   (RBAC), or an access-policy entry with key 'get'? */
static bool has_access(fake *f, const json_t *vault, const char *key, const char *principal)
{
    json_t *x;
    size_t i;
    if (!json_is_false(json_object_get(vault, "rbac"))) {
        json_array_foreach(arr(f, "roleAssignments"), i, x)
        {
            char v[128];
            const char *k;
            if (!ieq(sget(x, "principalId"), principal) ||
                !scope_vault(v, sizeof(v), sget(x, "scope"), &k) || !ieq(v, sget(vault, "name")))
                continue;
            if (!k || ieq(k, key))
                return true;
        }
        return false;
    }
    json_array_foreach(json_object_get(vault, "accessPolicies"), i, x)
    {
        json_t *perm;
        size_t j;
        if (!ieq(sget(x, "objectId"), principal))
            continue;
        json_array_foreach(json_object_get(x, "keys"), j, perm)
        {
            if (ieq(json_string_value(perm), "get") || ieq(json_string_value(perm), "all"))
                return true;
        }
    }
    return false;
}

static int fake_probe(kvr_provider *p, const kvr_probe *pr, kvr_error *err)
{
    fake *f = from_base(p);
    const char *app = pr->app_name ? pr->app_name : "";
    json_t *a, *v;
    f->probes++;
    if (f->probe_refusals > 0) {
        f->probe_refusals--;
        return kvr_error_set(err, KVR_EFORBIDDEN,
                             "app '%s' may not read key '%s/%s' yet (fake: scripted 403)", app,
                             pr->vault, pr->key);
    }
    a = get(f, "apps", "appId", pr->client_id, NULL, NULL);
    if (!a || !sget(a, "servicePrincipalId"))
        return kvr_error_set(err, KVR_EAUTH,
                             "app '%s' cannot sign in: no application or service principal with "
                             "client id '%s' (fake)",
                             app, pr->client_id ? pr->client_id : "");
    if (!get(f, "secrets", "vault", pr->secret_vault, "name", pr->secret_name))
        return missing(err, "read the client secret of app", "secret", pr->secret_vault,
                       pr->secret_name);
    v = get(f, "vaults", "name", pr->vault, NULL, NULL);
    if (!v)
        return no_vault(err, "read key as app", pr->vault);
    if (!has_access(f, v, pr->key, sget(a, "servicePrincipalId")))
        return kvr_error_set(err, KVR_EFORBIDDEN,
                             "app '%s' may not read key '%s/%s' (fake: 403 Forbidden)", app,
                             pr->vault, pr->key);
    if (!get(f, "keys", "vault", pr->vault, "name", pr->key))
        return missing(err, "read key as app", "key", pr->vault, pr->key);
    return 0;
}

static void fake_free(kvr_provider *p)
{
    fake *f;
    if (!p)
        return;
    f = from_base(p);
    json_decref(f->st);
    json_decref(f->grave);
    for (size_t i = 0; i < f->nevents; i++) {
        free(f->events[i].name);
        free(f->events[i].object);
        json_decref(f->events[i].tags);
    }
    free(f->events);
    free(f->faults);
    for (size_t i = 0; i < f->nlog; i++)
        free(f->log[i]);
    free(f->log);
    free(f->last);
    free(f);
}

int kvr_fake_provider_new(kvr_provider **out, kvr_live *live, const kvr_marker_key *mk,
                          kvr_error *err)
{
    fake *f = calloc(1, sizeof(*f));
    char *text = NULL;
    json_error_t jerr;
    int rc;

    *out = NULL;
    if (!f) {
        kvr_live_free(live);
        return kvr_error_oom(err);
    }
    f->base = (kvr_provider){.version = KVR_PROVIDER_VERSION,
                             .name = "fake",
                             .read = fake_read,
                             .apply = fake_apply,
                             .probe = fake_probe,
                             .read_back = NULL,
                             .free = fake_free};
    f->mk = mk ? mk : &f->zero;
    f->now = live->now;
    rc = kvr_live_to_json(&text, live, err);
    kvr_live_free(live);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->st = json_loads(text, 0, &jerr);
    free(text);
    f->grave = json_pack("{s:{},s:[]}", "vaults", "objects");
    if (!f->st || !f->grave) {
        fake_free(&f->base);
        return kvr_error_oom(err);
    }
    *out = &f->base;
    return 0;
}

/* ---- scripts ------------------------------------------------------------------------------- */

static int script_fail(kvr_error *err, size_t i, const char *what)
{
    return kvr_error_set(err, KVR_EINVAL, "fake script: entry %zu: %s", i, what);
}

static bool only(const json_t *o, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        (void)v;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(k, allowed[i]) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static int script_fault(fake *f, const json_t *e, size_t i, kvr_error *err)
{
    static const char *const allowed[] = {"op",    "kind",  "nth",  "fail",
                                          "crash", "times", "read", NULL};
    static const struct {
        const char *name;
        int code;
        const char *why;
    } answers[] = {
        {"throttled", KVR_ETHROTTLED, "throttled (429 Too Many Requests)"},
        {"timeout", KVR_ETIMEOUT, "timed out"},
        {"reset", KVR_EHTTP, "connection reset"},
        {"forbidden", KVR_EFORBIDDEN, "403 Forbidden"},
        {"conflict", KVR_ECONFLICT, "409 Conflict"},
        {"error", KVR_EAZURE, "500 InternalServerError"},
    };
    fault x = {0};
    const char *fail = sget(e, "fail"), *crash = sget(e, "crash"), *kind = sget(e, "kind");
    json_t *times = json_object_get(e, "times"), *nth = json_object_get(e, "nth");
    fault *grown;

    if (!only(e, allowed))
        return script_fail(err, i, "unknown member in an operation fault");
    if (json_is_integer(json_object_get(e, "read"))) {
        if (json_integer_value(json_object_get(e, "read")) < 1 || !fail || crash ||
            json_object_get(e, "op") || kind)
            return script_fail(err, i, "a read fault takes 'read' (from 1), 'fail' and 'times'");
        x.read = (size_t)json_integer_value(json_object_get(e, "read"));
    } else if (json_is_integer(json_object_get(e, "op"))) {
        if (json_integer_value(json_object_get(e, "op")) < 1)
            return script_fail(err, i, "'op' counts from 1");
        x.op = (size_t)json_integer_value(json_object_get(e, "op"));
    } else if (kind) {
        x.kind = -1;
        for (int k = 0; k < KVR_OP_KIND_COUNT; k++)
            if (strcmp(kind, kvr_op_kind_name((kvr_op_kind)k)) == 0)
                x.kind = k;
        if (x.kind < 0)
            return script_fail(err, i, "unknown operation kind");
        x.nth = json_is_integer(nth) && json_integer_value(nth) > 0
                    ? (size_t)json_integer_value(nth)
                    : 1;
    } else {
        return script_fail(err, i, "an operation fault needs 'op' or 'kind'");
    }
    x.left = json_is_integer(times) ? (int)json_integer_value(times) : 1;
    if (fail && !crash) {
        for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++)
            if (strcmp(fail, answers[a].name) == 0) {
                x.code = answers[a].code;
                x.why = answers[a].why;
            }
        if (!x.code)
            return script_fail(err, i, "unknown 'fail' answer");
    } else if (crash && !fail) {
        x.crash = true;
        if (strcmp(crash, "after-first-request") == 0)
            x.crash_after = true;
        else if (strcmp(crash, "before-request") != 0)
            return script_fail(err, i, "unknown 'crash' point");
    } else {
        return script_fail(err, i, "an operation fault needs one of 'fail' and 'crash'");
    }
    grown = realloc(f->faults, (f->nfaults + 1) * sizeof(*grown));
    if (!grown)
        return kvr_error_oom(err);
    f->faults = grown;
    f->faults[f->nfaults++] = x;
    return 0;
}

static int script_event(fake *f, const json_t *e, size_t i, kvr_error *err)
{
    static const char *const profile[] = {"read", "profile", "status", NULL};
    static const char *const vault[] = {"read", "vault", "tags", NULL};
    static const char *const advance[] = {"read", "advance", NULL};
    event x = {0};
    event *grown;
    json_int_t n = json_integer_value(json_object_get(e, "read"));
    if (n < 1)
        return script_fail(err, i, "'read' counts from 1");
    x.read = (size_t)n;
    if (sget(e, "profile")) {
        const char *s = sget(e, "status");
        if (!only(e, profile))
            return script_fail(err, i, "unknown member in a profile event");
        x.kind = EV_PROFILE;
        x.status = -1;
        for (int k = 0; s && STATUS[k]; k++)
            if (strcmp(s, STATUS[k]) == 0)
                x.status = k;
        if (x.status < 0)
            return script_fail(err, i, "unknown profile status");
        x.name = strdup(sget(e, "profile"));
    } else if (sget(e, "vault") && json_is_object(json_object_get(e, "tags"))) {
        if (!only(e, vault))
            return script_fail(err, i, "unknown member in a vault event");
        x.kind = EV_VAULT_TAGS;
        x.name = strdup(sget(e, "vault"));
        x.tags = json_deep_copy(json_object_get(e, "tags"));
        if (!x.tags) {
            free(x.name);
            return kvr_error_oom(err);
        }
    } else if (sget(e, "delete")) {
        static const char *const what[] = {"key", "secret", "vault", NULL};
        static const char *const del[] = {"read", "delete", "vault", "name", NULL};
        x.kind = EV_DELETE;
        x.what = -1;
        for (int k = 0; what[k]; k++)
            if (strcmp(sget(e, "delete"), what[k]) == 0)
                x.what = k;
        if (!only(e, del) || x.what < 0 || !sget(e, "vault") || (x.what < 2 && !sget(e, "name")))
            return script_fail(err, i,
                               "'delete' takes \"key\", \"secret\" or \"vault\", with "
                               "'vault' and (a key or secret) 'name'");
        x.name = strdup(sget(e, "vault"));
        if (x.what < 2 && !(x.object = strdup(sget(e, "name")))) {
            free(x.name);
            return kvr_error_oom(err);
        }
    } else if (json_is_integer(json_object_get(e, "advance"))) {
        if (!only(e, advance) || json_integer_value(json_object_get(e, "advance")) < 0)
            return script_fail(err, i, "'advance' takes seconds, forward");
        x.kind = EV_ADVANCE;
        x.advance = json_integer_value(json_object_get(e, "advance"));
    } else {
        return script_fail(err, i,
                           "a read event needs 'profile' and 'status', 'vault' and 'tags', "
                           "'delete', or 'advance'");
    }
    grown = x.name || x.kind == EV_ADVANCE ? realloc(f->events, (f->nevents + 1) * sizeof(*grown))
                                           : NULL;
    if (!grown) {
        free(x.name);
        free(x.object);
        json_decref(x.tags);
        return kvr_error_oom(err);
    }
    f->events = grown;
    f->events[f->nevents++] = x;
    return 0;
}

static int script_entry(fake *f, const json_t *e, size_t i, kvr_error *err)
{
    json_t *v;
    if (!json_is_object(e))
        return script_fail(err, i, "expected an object");
    if ((v = json_object_get(e, "clock"))) {
        static const char *const allowed[] = {"start", "perRead", NULL};
        if (json_object_size(e) != 1 || !json_is_object(v) || !only(v, allowed))
            return script_fail(err, i, "'clock' takes 'start' and 'perRead'");
        if (json_is_integer(json_object_get(v, "start")))
            f->now = json_integer_value(json_object_get(v, "start"));
        if (json_is_integer(json_object_get(v, "perRead")))
            f->per_read = json_integer_value(json_object_get(v, "perRead"));
        return 0;
    }
    if ((v = json_object_get(e, "probe"))) {
        static const char *const allowed[] = {"failTimes", NULL};
        if (json_object_size(e) != 1 || !json_is_object(v) || !only(v, allowed) ||
            !json_is_integer(json_object_get(v, "failTimes")))
            return script_fail(err, i, "'probe' takes 'failTimes'");
        f->probe_refusals = (int)json_integer_value(json_object_get(v, "failTimes"));
        return 0;
    }
    if (json_object_get(e, "read") && !json_object_get(e, "fail"))
        return script_event(f, e, i, err);
    return script_fault(f, e, i, err);
}

int kvr_fake_script(kvr_provider *p, const char *json, kvr_error *err)
{
    fake *f = from_base(p);
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr), *e;
    size_t i;
    int rc = 0;
    if (!root)
        return kvr_error_set(err, KVR_EINVAL, "fake script: invalid JSON at line %d: %s", jerr.line,
                             jerr.text);
    if (json_is_array(root)) {
        json_array_foreach(root, i, e)
        {
            if ((rc = script_entry(f, e, i, err)) < 0)
                break;
        }
    } else {
        rc = script_entry(f, root, 0, err);
    }
    json_decref(root);
    return rc;
}

/* ---- what tests look at -------------------------------------------------------------------- */

size_t kvr_fake_log(const kvr_provider *p, const char *const **lines)
{
    const fake *f = from_cbase(p);
    *lines = (const char *const *)f->log;
    return f->nlog;
}

void kvr_fake_counts_get(const kvr_provider *p, kvr_fake_counts *out)
{
    const fake *f = from_cbase(p);
    out->reads = f->reads;
    out->applies = f->calls;
    out->probes = f->probes;
}

int kvr_fake_live(const kvr_provider *p, kvr_live **out, kvr_error *err)
{
    const fake *f = from_cbase(p);
    char *text;
    int rc;
    *out = NULL;
    json_object_set_new(f->st, "now", json_integer(f->now));
    text = json_dumps(f->st, JSON_COMPACT);
    if (!text)
        return kvr_error_oom(err);
    rc = kvr_live_from_json(out, text, strlen(text), err);
    free(text);
    return rc;
}
