/*
 * The desired-state loader: finds the YAML files of an estate, parses them into trees and
 * turns each document into model objects, checking every field on the way. All problems are
 * reported with their position; nothing stops at the first one, so a pull request shows every
 * mistake at once.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const TOP_FIELDS[] = {"apiVersion", "subscription", "cloud",   "vaults",
                                         "apps",       "roleAssignments", "keys", "secrets",
                                         "profiles",   "active",     "retention", "lock",
                                         NULL};
static const char *const LOCK_FIELDS[] = {"storageAccount", "container", "blob", "endpoint",
                                          NULL};
static const char *const VAULT_FIELDS[] = {
    "name",     "resourceGroup",   "location", "sku",  "rbac",     "accessPolicies",
    "softDeleteDays", "purgeProtection", "network",  "tags", "copyFrom", "retire",
    "acknowledgeDependents", "unmanaged", NULL};
static const char *const ACK_FIELDS[] = {"resourceId", "key", "secret", NULL};
static const char *const POLICY_FIELDS[] = {"app", "keys", "secrets", "certificates", NULL};
static const char *const NETWORK_FIELDS[] = {"defaultAction", "bypass", "ipRules",
                                             "virtualNetworkRules", "publicAccess", NULL};
static const char *const COPY_FIELDS[] = {"vault", "secrets", "certificates", NULL};
static const char *const APP_FIELDS[] = {"name",        "displayName",        "signInAudience",
                                         "credentials", "credentialRotation", NULL};
static const char *const CREDROT_FIELDS[] = {"every", "overlap", "storeIn", NULL};
static const char *const CREDROT_STORE_FIELDS[] = {"vault", "secretPrefix", NULL};
static const char *const CRED_FIELDS[] = {"name", "lifetime", "overlap", "storeIn", NULL};
static const char *const STORE_FIELDS[] = {"vault", "secret", NULL};
static const char *const ROLE_FIELDS[] = {"app", "role", "vault", "key", NULL};
static const char *const KEY_FIELDS[] = {"vault",    "name",       "type", "size", "curve", "ops",
                                         "rotation", "generation", "tags", NULL};
static const char *const ROTATION_FIELDS[] = {"every", "beforeExpiry", "expiresAfter",
                                              "notifyBefore", NULL};
static const char *const SECRET_FIELDS[] = {"vault",    "name",    "contentType",
                                            "tags",     "generate", "fromEnv",
                                            "fromFile", "fromAppCredential", "external", NULL};
static const char *const GENERATE_FIELDS[] = {"length", "charset", NULL};
static const char *const APPCRED_FIELDS[] = {"app", "credential", NULL};
static const char *const PROFILE_FIELDS[] = {"name", "vault",      "key", "keyVersion",
                                             "app",  "credential", NULL};
static const char *const RETENTION_FIELDS[] = {"keys", "profiles", "appSecrets", "vaults", NULL};
static const char *const CLOUD_FIELDS[] = {"name",  "authorityHost", "resourceManager",
                                           "graph", "vaultSuffix",   "profileService", NULL};

static const char *const SKUS[] = {"standard", "premium", NULL};
static const char *const UNMANAGED[] = {"report", "ignore", "retire", NULL}; /* kvr_unmanaged */
static const char *const KEY_TYPES[] = {"RSA", "RSA-HSM", "EC", "EC-HSM", NULL};
static const char *const RSA_SIZES[] = {"2048", "3072", "4096", NULL};
static const char *const CURVES[] = {"P-256", "P-384", "P-521", "P-256K", NULL};
static const char *const KEY_OPS[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey",
                                      "unwrapKey", NULL};
static const char *const CHARSETS[] = {"alnum", "alnum-symbols", "hex", "base64url", NULL};
static const char *const COPY_MODES[] = {"latest", "all", "none", NULL};
static const char *const AUDIENCES[] = {"AzureADMyOrg", "AzureADMultipleOrgs",
                                        "AzureADandPersonalMicrosoftAccount",
                                        "PersonalMicrosoftAccount", NULL};
static const char *const CLOUDS[] = {"AzurePublicCloud", "AzureUSGovernment", "AzureChinaCloud",
                                     "custom", NULL};
static const char *const DEFAULT_ACTIONS[] = {"Allow", "Deny", NULL};
static const char *const BYPASSES[] = {"AzureServices", "None", NULL};
static const char *const PUBLIC_ACCESS[] = {"Enabled", "Disabled", NULL};
const char *const kvr_key_permissions[] = {
    "get",     "list",    "create",  "update",  "import", "delete", "backup",
    "restore", "recover", "purge",   "encrypt", "decrypt", "wrapKey", "unwrapKey",
    "sign",    "verify",  "release", "rotate",  "getrotationpolicy", "setrotationpolicy",
    "all",     NULL};
const char *const kvr_secret_permissions[] = {"get",     "list",    "set",   "delete", "backup",
                                              "restore", "recover", "purge", "all",    NULL};
const char *const kvr_certificate_permissions[] = {
    "get",           "list",       "delete",       "create",      "import",        "update",
    "managecontacts", "getissuers", "listissuers", "setissuers",  "deleteissuers", "manageissuers",
    "recover",       "purge",      "backup",       "restore",     "all",           NULL};

/* ---- helpers ------------------------------------------------------------------------------ */

/* Appends a zeroed element to an estate array; NULL on OOM. */
static void *push(ctx *c, void **items, size_t *len, size_t elem)
{
    /* Capacity is not stored: grow to the next power of two when len reaches one. (finish
       shrinks the estate's own arrays to fit: nothing is pushed on them after it.) */
    size_t cap = 0;
    char *p;
    if (*len) {
        cap = 1;
        while (cap < *len)
            cap *= 2;
    }
    if (kvr_grow(items, &cap, *len + 1, elem) < 0) {
        cx_oom(c);
        return NULL;
    }
    p = (char *)*items + *len * elem;
    memset(p, 0, elem);
    (*len)++;
    return p;
}

static const yt_node *get_list(ctx *c, const yt_node *map, const char *field)
{
    const yt_node *v = yt_map_get(map, field);
    if (!v)
        return NULL;
    if (v->kind != YT_SEQ) {
        cx_error(c, v, "'%s' must be a list, got %s", field, yt_describe(v));
        return NULL;
    }
    return v;
}

/* Records the first place a single setting is given; false (after an error) for a second one,
   whose value the caller must then not store over the first. */
static bool once(ctx *c, single *s, const yt_node *at, const char *what)
{
    if (s->set) {
        cx_error(c, at, "%s is given more than once in the estate (first at %s:%u:%u)", what,
                 s->pos.file, s->pos.line, s->pos.col);
        return false;
    }
    s->set = true;
    s->pos = cx_pos(c, at);
    return true;
}

/* ---- vaults ------------------------------------------------------------------------------- */

static void parse_policy(ctx *c, kvr_vault *v, const yt_node *n)
{
    kvr_access_policy *p;
    const kvr_strlist *lists[3];
    static const char *const names[] = {"keys", "secrets", "certificates"};
    const char *const *perms[] = {kvr_key_permissions, kvr_secret_permissions,
                                  kvr_certificate_permissions};

    if (!cx_is_map(c, n, "an access policy"))
        return;
    cx_fields(c, n, "access policy", POLICY_FIELDS);
    p = push(c, (void **)&v->policies, &v->npolicies, sizeof(*p));
    if (!p)
        return;
    p->pos = cx_pos(c, n);
    cx_str(c, n, "app", true, "access policy", &p->app);
    cx_strlist(c, n, "keys", &p->keys);
    cx_strlist(c, n, "secrets", &p->secrets);
    cx_strlist(c, n, "certificates", &p->certificates);
    lists[0] = &p->keys;
    lists[1] = &p->secrets;
    lists[2] = &p->certificates;
    for (int l = 0; l < 3; l++) {
        const yt_node *seq = yt_map_get(n, names[l]);
        for (size_t i = 0; i < lists[l]->len; i++) {
            const char *perm = lists[l]->items[i], *hint;
            bool ok = false;
            for (size_t j = 0; perms[l][j]; j++)
                ok |= strcmp(perm, perms[l][j]) == 0;
            if (ok)
                continue;
            hint = kvr_str_suggest(perm, perms[l]);
            if (hint)
                cx_error(c, seq, "unknown %s permission '%.64s' (did you mean '%s'?)", names[l],
                         perm, hint);
            else
                cx_error(c, seq, "unknown %s permission '%.64s'", names[l], perm);
        }
    }
}

static bool is_ipv4_rule(const char *s)
{
    /* a.b.c.d or a.b.c.d/len, as Key Vault firewall rules take (IPv4 only) */
    int parts = 0;
    const char *p = s;
    while (parts < 4) {
        int n = 0, digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            n = n * 10 + (*p++ - '0');
            digits++;
        }
        if (!digits || digits > 3 || n > 255)
            return false;
        parts++;
        if (parts < 4 && *p++ != '.')
            return false;
    }
    if (*p == '/') {
        int n = 0, digits = 0;
        p++;
        while (*p >= '0' && *p <= '9' && digits < 3) {
            n = n * 10 + (*p++ - '0');
            digits++;
        }
        if (!digits || n > 32)
            return false;
    }
    return *p == '\0';
}

static void parse_network(ctx *c, kvr_vault *v, const yt_node *n)
{
    int i;
    const yt_node *rules;
    if (!cx_is_map(c, n, "'network'"))
        return;
    cx_fields(c, n, "network", NETWORK_FIELDS);
    v->network.set = true;
    if (cx_enum(c, n, "defaultAction", DEFAULT_ACTIONS, &i))
        v->network.default_action = cx_strdup(c, DEFAULT_ACTIONS[i]);
    if (cx_enum(c, n, "bypass", BYPASSES, &i))
        v->network.bypass = cx_strdup(c, BYPASSES[i]);
    if (cx_enum(c, n, "publicAccess", PUBLIC_ACCESS, &i))
        v->network.public_access = cx_strdup(c, PUBLIC_ACCESS[i]);
    if (cx_strlist(c, n, "ipRules", &v->network.ip_rules)) {
        rules = yt_map_get(n, "ipRules");
        for (size_t k = 0; k < v->network.ip_rules.len; k++)
            if (!is_ipv4_rule(v->network.ip_rules.items[k]))
                cx_error(c, rules->items[k],
                         "ip rule '%.64s' is not an IPv4 address or CIDR range (Key Vault "
                         "firewall rules are IPv4)",
                         v->network.ip_rules.items[k]);
    }
    if (cx_strlist(c, n, "virtualNetworkRules", &v->network.vnet_rules)) {
        rules = yt_map_get(n, "virtualNetworkRules");
        for (size_t k = 0; k < v->network.vnet_rules.len; k++) {
            const char *id = v->network.vnet_rules.items[k];
            if (strncmp(id, "/subscriptions/", 15) != 0 || !strstr(id, "/subnets/"))
                cx_error(c, rules->items[k],
                         "virtual network rule must be a subnet resource id "
                         "('/subscriptions/…/virtualNetworks/…/subnets/…'), got '%.64s'",
                         id);
        }
    }
}

static void parse_copy_from(ctx *c, kvr_vault *v, const yt_node *n)
{
    int i;
    v->copy_from.pos = cx_pos(c, n);
    v->copy_from.certificates = true;
    v->copy_from.secrets = KVR_COPY_LATEST;
    if (n->kind == YT_SCALAR) {
        if (yt_scalar_type(n) != YT_T_STR) {
            cx_error(c, n, "'copyFrom' must be a vault name or a mapping, got %s", yt_describe(n));
            return;
        }
        v->copy_from.vault = cx_strdup(c, n->text);
        return;
    }
    if (!cx_is_map(c, n, "'copyFrom'"))
        return;
    cx_fields(c, n, "copyFrom", COPY_FIELDS);
    cx_str(c, n, "vault", true, "'copyFrom'", &v->copy_from.vault);
    if (cx_enum(c, n, "secrets", COPY_MODES, &i))
        v->copy_from.secrets = (kvr_copy_secrets)i;
    cx_bool(c, n, "certificates", &v->copy_from.certificates);
}

/* An ARM resource id of a resource in a provider namespace:
   /subscriptions/S/resourceGroups/G/providers/NAMESPACE/TYPE/NAME[/TYPE/NAME...]. */
static bool is_resource_id(const char *id)
{
    const char *p = strstr(id, "/providers/");
    size_t segs = 0;
    if (strncmp(id, "/subscriptions/", 15) != 0 || !p || strstr(id, "//") ||
        id[strlen(id) - 1] == '/')
        return false;
    for (p += strlen("/providers/"); *p; p++)
        segs += *p == '/';
    return segs >= 2 && segs % 2 == 0; /* NAMESPACE/TYPE/NAME: an odd number of names */
}

static void parse_ack(ctx *c, kvr_vault *v, const yt_node *n)
{
    kvr_dependent_ack *a;
    if (!cx_is_map(c, n, "an acknowledged dependent"))
        return;
    cx_fields(c, n, "acknowledged dependent", ACK_FIELDS);
    a = push(c, (void **)&v->acks, &v->nacks, sizeof(*a));
    if (!a)
        return;
    a->pos = cx_pos(c, n);
    if (cx_str(c, n, "resourceId", true, "acknowledged dependent", &a->resource_id) &&
        !is_resource_id(a->resource_id))
        cx_error(c, yt_map_get(n, "resourceId"),
                 "'resourceId' must be an Azure resource id "
                 "('/subscriptions/…/resourceGroups/…/providers/…/…/NAME'), got '%.96s'",
                 a->resource_id);
    cx_str(c, n, "key", false, "acknowledged dependent", &a->key);
    cx_str(c, n, "secret", false, "acknowledged dependent", &a->secret);
    if (a->key && a->secret)
        cx_error(c, yt_map_get(n, "secret"),
                 "an acknowledged dependent names a key or a secret, not both (one entry per "
                 "object)");
    if (a->key && !kvr_is_object_name(a->key))
        cx_error(c, yt_map_get(n, "key"), "invalid key name '%.64s'", a->key);
    if (a->secret && !kvr_is_object_name(a->secret))
        cx_error(c, yt_map_get(n, "secret"), "invalid secret name '%.64s'", a->secret);
}

static void parse_vault(ctx *c, const yt_node *n)
{
    kvr_vault *v;
    const yt_node *x;
    int i;

    if (!cx_is_map(c, n, "a vault"))
        return;
    cx_fields(c, n, "vault", VAULT_FIELDS);
    v = push(c, (void **)&c->e->vaults, &c->e->nvaults, sizeof(*v));
    if (!v)
        return;
    v->pos = cx_pos(c, n);
    v->rbac = true;
    v->purge_protection = true;
    v->soft_delete_days = 90;
    if (cx_str(c, n, "name", true, "vault", &v->name) && !kvr_is_vault_name(v->name))
        cx_error(c, yt_map_get(n, "name"),
                 "invalid vault name '%.64s': 3 to 24 letters, digits and hyphens, starting with "
                 "a letter, ending with a letter or digit, no consecutive hyphens",
                 v->name);
    if (cx_str(c, n, "resourceGroup", true, "vault", &v->resource_group)) {
        const char *rg = v->resource_group;
        size_t len = strlen(rg);
        bool ok = len <= 90 && rg[len - 1] != '.';
        for (size_t k = 0; k < len; k++)
            ok &= (rg[k] >= 'a' && rg[k] <= 'z') || (rg[k] >= 'A' && rg[k] <= 'Z') ||
                  (rg[k] >= '0' && rg[k] <= '9') || strchr("-._()", rg[k]) != NULL;
        if (!ok)
            cx_error(c, yt_map_get(n, "resourceGroup"),
                     "invalid resource group name '%.64s': up to 90 letters, digits, '-', '_', "
                     "'.', '(' and ')', not ending with '.'",
                     rg);
    }
    if (cx_str(c, n, "location", true, "vault", &v->location)) {
        for (const char *p = v->location; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
                cx_error(c, yt_map_get(n, "location"),
                         "invalid location '%.64s': use the region's short name in lower case, "
                         "like 'westeurope'",
                         v->location);
                break;
            }
        }
    }
    if (cx_enum(c, n, "sku", SKUS, &i))
        v->sku = (kvr_sku)i;
    cx_bool(c, n, "rbac", &v->rbac);
    cx_int(c, n, "softDeleteDays", 7, 90, &v->soft_delete_days);
    cx_bool(c, n, "purgeProtection", &v->purge_protection);
    cx_bool(c, n, "retire", &v->retire);
    if (cx_enum(c, n, "unmanaged", UNMANAGED, &i))
        v->unmanaged = (kvr_unmanaged)i;
    cx_tags(c, n, "tags", &v->tags);
    if ((x = get_list(c, n, "accessPolicies"))) {
        if (v->rbac)
            cx_error(c, yt_map_get(n, "accessPolicies"),
                     "'accessPolicies' apply only to vaults with 'rbac: false'; this vault uses "
                     "Azure RBAC (declare 'roleAssignments' instead)");
        for (size_t k = 0; k < x->n; k++)
            parse_policy(c, v, x->items[k]);
    }
    if ((x = yt_map_get(n, "network")))
        parse_network(c, v, x);
    if ((x = yt_map_get(n, "copyFrom")))
        parse_copy_from(c, v, x);
    if ((x = get_list(c, n, "acknowledgeDependents")))
        for (size_t k = 0; k < x->n; k++)
            parse_ack(c, v, x->items[k]);
}

/* ---- apps --------------------------------------------------------------------------------- */

static void parse_credential(ctx *c, kvr_app *a, const yt_node *n)
{
    kvr_credential *cr;
    const yt_node *store;
    if (!cx_is_map(c, n, "a credential"))
        return;
    cx_fields(c, n, "credential", CRED_FIELDS);
    cr = push(c, (void **)&a->creds, &a->ncreds, sizeof(*cr));
    if (!cr)
        return;
    cr->pos = cx_pos(c, n);
    cr->lifetime = 180LL * 86400;
    cr->overlap = 7LL * 86400;
    if (cx_str(c, n, "name", true, "credential", &cr->name)) {
        for (const char *p = cr->name; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("-_.", *p)) ||
                strlen(cr->name) > 64) {
                cx_error(c, yt_map_get(n, "name"),
                         "invalid credential name '%.64s': up to 64 letters, digits, '-', '_' "
                         "and '.'",
                         cr->name);
                break;
            }
        }
    }
    cx_duration(c, n, "lifetime", &cr->lifetime);
    cx_duration(c, n, "overlap", &cr->overlap);
    store = yt_map_get(n, "storeIn");
    if (!store) {
        cx_error(c, n,
                 "credential is missing required field 'storeIn' (the vault secret that "
                 "receives the client secret when it is created)");
    } else if (cx_is_map(c, store, "'storeIn'")) {
        cx_fields(c, store, "storeIn", STORE_FIELDS);
        cx_str(c, store, "vault", true, "'storeIn'", &cr->store_vault);
        if (cx_str(c, store, "secret", true, "'storeIn'", &cr->store_secret) &&
            !kvr_is_object_name(cr->store_secret))
            cx_error(c, yt_map_get(store, "secret"),
                     "invalid secret name '%.64s': 1 to 127 letters, digits and hyphens",
                     cr->store_secret);
    }
}

/* Longest secretPrefix: "-YYYY-MM-DD" follows it in a 127-character secret name. */
#define CREDROT_PREFIX_MAX (127 - 11)

static void parse_credential_rotation(ctx *c, kvr_app *a, const yt_node *n)
{
    kvr_credential_rotation *r = &a->rotation;
    const yt_node *store;
    if (!cx_is_map(c, n, "'credentialRotation'"))
        return;
    cx_fields(c, n, "credentialRotation", CREDROT_FIELDS);
    r->set = true;
    r->pos = cx_pos(c, n);
    r->overlap = 7LL * 86400;
    if (!cx_duration(c, n, "every", &r->every) && !yt_map_get(n, "every"))
        cx_error(c, n, "credentialRotation is missing required field 'every' (how old the newest "
                       "client secret may get before the next one is made)");
    cx_duration(c, n, "overlap", &r->overlap);
    if (yt_map_get(n, "every") && r->every > 0 && r->every < 86400)
        cx_error(c, yt_map_get(n, "every"),
                 "'every' must be at least 1d: generations are named by the day they are made");
    if (r->overlap <= 0 || (r->every > 0 && r->overlap >= r->every))
        cx_error(c, yt_map_get(n, "overlap") ? yt_map_get(n, "overlap") : n,
                 "'overlap' must be more than 0 and shorter than 'every'");
    store = yt_map_get(n, "storeIn");
    if (!store) {
        cx_error(c, n, "credentialRotation is missing required field 'storeIn' ({vault, "
                       "secretPrefix}: each generation is stored in <secretPrefix>-<name>)");
    } else if (cx_is_map(c, store, "'storeIn'")) {
        cx_fields(c, store, "storeIn", CREDROT_STORE_FIELDS);
        cx_str(c, store, "vault", true, "'storeIn'", &r->store_vault);
        if (cx_str(c, store, "secretPrefix", true, "'storeIn'", &r->secret_prefix) &&
            (!kvr_is_object_name(r->secret_prefix) ||
             strlen(r->secret_prefix) > CREDROT_PREFIX_MAX))
            cx_error(c, yt_map_get(store, "secretPrefix"),
                     "invalid secretPrefix '%.64s': 1 to %d letters, digits and hyphens (the "
                     "generation's date follows it)",
                     r->secret_prefix, CREDROT_PREFIX_MAX);
    }
}

static void parse_app(ctx *c, const yt_node *n)
{
    kvr_app *a;
    const yt_node *x;
    int i;
    if (!cx_is_map(c, n, "an app"))
        return;
    cx_fields(c, n, "app", APP_FIELDS);
    a = push(c, (void **)&c->e->apps, &c->e->napps, sizeof(*a));
    if (!a)
        return;
    a->pos = cx_pos(c, n);
    cx_str(c, n, "name", true, "app", &a->name);
    if (!cx_str(c, n, "displayName", false, "app", &a->display_name) && a->name)
        a->display_name = cx_strdup(c, a->name);
    a->sign_in_audience = cx_strdup(
        c, cx_enum(c, n, "signInAudience", AUDIENCES, &i) ? AUDIENCES[i] : AUDIENCES[0]);
    if ((x = get_list(c, n, "credentials")))
        for (size_t k = 0; k < x->n; k++)
            parse_credential(c, a, x->items[k]);
    if ((x = yt_map_get(n, "credentialRotation"))) {
        if (yt_map_get(n, "credentials"))
            cx_error(c, x, "an app has either 'credentials' or 'credentialRotation', not both");
        parse_credential_rotation(c, a, x);
    }
}

/* ---- role assignments --------------------------------------------------------------------- */

static void parse_role(ctx *c, const yt_node *n)
{
    kvr_role_assignment *r;
    if (!cx_is_map(c, n, "a role assignment"))
        return;
    cx_fields(c, n, "role assignment", ROLE_FIELDS);
    r = push(c, (void **)&c->e->roles, &c->e->nroles, sizeof(*r));
    if (!r)
        return;
    r->pos = cx_pos(c, n);
    cx_str_shared(c, n, "app", true, "role assignment", &r->app);
    cx_str_shared(c, n, "vault", true, "role assignment", &r->vault);
    cx_str_pooled(c, n, "key", false, "role assignment", &r->key);
    if (cx_str_shared(c, n, "role", true, "role assignment", &r->role)) {
        const char *id = kvr_model_role_id(r->role);
        if (!id && kvr_is_guid(r->role))
            id = r->role;
        if (id) {
            char lower[40]; /* a GUID: 36 */
            snprintf(lower, sizeof(lower), "%s", id);
            for (char *p = lower; *p; p++)
                if (*p >= 'A' && *p <= 'F')
                    *p = (char)(*p - 'A' + 'a');
            r->role_id = cx_shared(c, lower);
        } else {
            const char *hint = kvr_str_suggest(r->role, kvr_model_role_names);
            if (hint)
                cx_error(c, yt_map_get(n, "role"),
                         "unknown role '%.64s' (did you mean '%s'?); use a built-in Key Vault "
                         "role name or a role definition GUID",
                         r->role, hint);
            else
                cx_error(c, yt_map_get(n, "role"),
                         "unknown role '%.64s'; use a built-in Key Vault role name or a role "
                         "definition GUID",
                         r->role);
        }
    }
}

/* ---- keys --------------------------------------------------------------------------------- */

static void parse_rotation(ctx *c, kvr_key *k, const yt_node *n)
{
    if (!cx_is_map(c, n, "'rotation'"))
        return;
    cx_fields(c, n, "rotation", ROTATION_FIELDS);
    k->rotation.set = true;
    cx_duration(c, n, "every", &k->rotation.every);
    cx_duration(c, n, "beforeExpiry", &k->rotation.before_expiry);
    cx_duration(c, n, "expiresAfter", &k->rotation.expires_after);
    cx_duration(c, n, "notifyBefore", &k->rotation.notify_before);
    if (n->n == 0)
        cx_error(c, n, "'rotation' is empty; give 'every' or 'beforeExpiry', 'expiresAfter' "
                       "and/or 'notifyBefore'");
    if (yt_map_get(n, "every") && yt_map_get(n, "beforeExpiry"))
        cx_error(c, yt_map_get(n, "beforeExpiry"),
                 "'every' and 'beforeExpiry' cannot both be set: Azure allows one rotate trigger");
}

static void parse_key(ctx *c, const yt_node *n)
{
    kvr_key *k;
    const yt_node *x;
    int i;
    if (!cx_is_map(c, n, "a key"))
        return;
    cx_fields(c, n, "key", KEY_FIELDS);
    k = push(c, (void **)&c->e->keys, &c->e->nkeys, sizeof(*k));
    if (!k)
        return;
    k->pos = cx_pos(c, n);
    cx_str_shared(c, n, "vault", true, "key", &k->vault);
    if (cx_str_pooled(c, n, "name", true, "key", &k->name) && !kvr_is_object_name(k->name))
        cx_error(c, yt_map_get(n, "name"),
                 "invalid key name '%.64s': 1 to 127 letters, digits and hyphens", k->name);
    if (!yt_map_get(n, "type"))
        cx_error(c, n, "key is missing required field 'type'");
    else if (cx_enum(c, n, "type", KEY_TYPES, &i))
        k->type = (kvr_key_type)i;
    k->size = 2048;
    if ((x = yt_map_get(n, "size"))) {
        if (yt_map_get(n, "type") && (k->type == KVR_KEY_EC || k->type == KVR_KEY_EC_HSM))
            cx_error(c, x, "'size' applies to RSA keys only; EC keys take 'curve'");
        else if (cx_enum(c, n, "size", RSA_SIZES, &i))
            k->size = atoi(RSA_SIZES[i]);
    }
    if ((x = yt_map_get(n, "curve"))) {
        if (k->type == KVR_KEY_RSA || k->type == KVR_KEY_RSA_HSM)
            cx_error(c, x, "'curve' applies to EC keys only; RSA keys take 'size'");
        else if (cx_enum(c, n, "curve", CURVES, &i))
            k->curve = cx_shared(c, CURVES[i]);
    }
    if (!k->curve && (k->type == KVR_KEY_EC || k->type == KVR_KEY_EC_HSM))
        k->curve = cx_shared(c, "P-256");
    k->ops = KVR_OP_WRAP | KVR_OP_UNWRAP;
    if ((x = yt_map_get(n, "ops"))) {
        kvr_strlist ops = {0};
        if (cx_strlist(c, n, "ops", &ops)) {
            k->ops = 0;
            if (ops.len == 0)
                cx_error(c, x, "'ops' must list at least one operation");
            for (size_t j = 0; j < ops.len; j++) {
                bool found = false;
                for (int o = 0; KEY_OPS[o]; o++) {
                    if (strcmp(ops.items[j], KEY_OPS[o]) == 0) {
                        k->ops |= 1u << o;
                        found = true;
                    }
                }
                if (!found) {
                    const char *hint = kvr_str_suggest(ops.items[j], KEY_OPS);
                    if (hint)
                        cx_error(c, x->items[j], "unknown key operation '%.64s' (did you mean "
                                                 "'%s'?)",
                                 ops.items[j], hint);
                    else
                        cx_error(c, x->items[j], "unknown key operation '%.64s'", ops.items[j]);
                }
            }
        }
        kvr_strlist_release(&ops);
    }
    if ((x = yt_map_get(n, "rotation")))
        parse_rotation(c, k, x);
    if (cx_str_shared(c, n, "generation", false, "key", &k->generation)) {
        for (const char *p = k->generation; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("-_.", *p)) ||
                strlen(k->generation) > 64) {
                cx_error(c, yt_map_get(n, "generation"),
                         "invalid generation '%.64s': up to 64 letters, digits, '-', '_' and '.'",
                         k->generation);
                break;
            }
        }
    }
    cx_tags(c, n, "tags", &k->tags);
}

/* ---- secrets ------------------------------------------------------------------------------ */

static char *resolve_path(ctx *c, const char *p)
{
    char *out;
    size_t n;
    if (p[0] == '/' || !c->dir)
        return cx_strdup(c, p);
    n = strlen(c->dir) + 1 + strlen(p) + 1;
    out = malloc(n);
    if (!out) {
        cx_oom(c);
        return NULL;
    }
    snprintf(out, n, "%s/%s", c->dir, p);
    return out;
}

/*
 * The canonical absolute form of `path`, also when its last components do not exist yet (a
 * secret file that CI writes later): realpath of the longest existing prefix, then the rest
 * ('.' and '..' in the rest applied by hand: none of it exists, so none of it is a link). A
 * dangling symbolic link is refused (errno ENOENT): where it points could appear later. NULL
 * with errno set on failure.
 */
static char *resolve_loose(const char *path, unsigned depth)
{
    struct stat st;
    char *r = realpath(path, NULL), *copy = NULL, *parent = NULL, *out = NULL, *slash;
    const char *base;
    size_t n;

    if (r || (errno != ENOENT && errno != ENOTDIR) || depth > 255)
        return r;
    if (lstat(path, &st) == 0) {
        errno = ENOENT; /* exists, yet realpath failed: a dangling link */
        return NULL;
    }
    if (!(copy = strdup(path)))
        return NULL;
    n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    slash = strrchr(copy, '/');
    if (!slash) {
        parent = resolve_loose(".", depth + 1);
        base = copy;
    } else {
        base = slash + 1;
        if (slash == copy) {
            parent = strdup("/");
        } else {
            *slash = '\0';
            parent = resolve_loose(copy, depth + 1);
        }
    }
    if (!parent)
        goto done;
    if (!*base || strcmp(base, ".") == 0) {
        out = parent;
        parent = NULL;
    } else if (strcmp(base, "..") == 0) {
        char *last = strrchr(parent, '/');
        if (last == parent)
            last[1] = '\0';
        else if (last)
            *last = '\0';
        out = parent;
        parent = NULL;
    } else {
        out = kvr_asprintf("%s%s%s", parent, strcmp(parent, "/") ? "/" : "", base);
    }
done:
    free(parent);
    free(copy);
    return out;
}

static bool inside(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (strcmp(root, "/") == 0)
        return true;
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * A secret's 'fromFile', confined: a pull request must not be able to copy any file the runner
 * can read (its federated token, a deploy key) into a vault by naming it with an absolute
 * path, '..' or a symbolic link out of the repository (Argo CD's out-of-bounds symlinks). The
 * result is the resolved path, which the executor opens with O_NOFOLLOW.
 */
static char *confine_path(ctx *c, const yt_node *at, const char *raw, char *joined)
{
    char *real;
    if (!joined || c->nroots == 0)
        return joined;
    real = resolve_loose(joined, 0);
    if (!real) {
        if (errno == ENOMEM)
            cx_oom(c);
        else
            cx_error(c, at, "cannot resolve 'fromFile' path '%s': %s", raw,
                     errno == ENOENT ? "a symbolic link that points nowhere" : strerror(errno));
        free(joined);
        return NULL;
    }
    free(joined);
    for (size_t i = 0; i < c->nroots; i++)
        if (inside(real, c->roots[i]))
            return real;
    cx_error(c, at,
             "'fromFile' path '%s' leads outside the repository; keep the file in it, or admit "
             "its directory with --allow-files-under DIR",
             raw);
    free(real);
    return NULL;
}

static void parse_secret(ctx *c, const yt_node *n)
{
    /* in the order of kvr_secret_source */
    static const char *const sources[] = {"generate",          "fromEnv",  "fromFile",
                                          "fromAppCredential", "external", NULL};
    kvr_secret *s;
    const yt_node *x, *value;
    const char *first = NULL;
    int nsources = 0, i;

    if (!cx_is_map(c, n, "a secret"))
        return;
    value = yt_map_get(n, "value");
    if (value) {
        /* Never echo the value: this message must be safe to show in a public CI log. */
        const yt_node *k = NULL;
        for (size_t j = 0; j < n->n; j++)
            if (n->items[2 * j + 1] == value)
                k = n->items[2 * j];
        cx_error(c, k ? k : value,
                 "secrets must not hold a literal 'value': everyone who can read this "
                 "repository could read it; use 'generate', 'fromEnv', 'fromFile', "
                 "'fromAppCredential' or 'external: true'");
    }
    {
        /* Report unknown fields, but not 'value' twice. */
        static const char *const with_value[] = {"vault",    "name",     "contentType",
                                                 "tags",     "generate", "fromEnv",
                                                 "fromFile", "fromAppCredential", "external",
                                                 "value",    NULL};
        cx_fields(c, n, "secret", value ? with_value : SECRET_FIELDS);
    }
    s = push(c, (void **)&c->e->secrets, &c->e->nsecrets, sizeof(*s));
    if (!s)
        return;
    s->pos = cx_pos(c, n);
    cx_str_shared(c, n, "vault", true, "secret", &s->vault);
    if (cx_str_pooled(c, n, "name", true, "secret", &s->name) && !kvr_is_object_name(s->name))
        cx_error(c, yt_map_get(n, "name"),
                 "invalid secret name '%.64s': 1 to 127 letters, digits and hyphens", s->name);
    cx_str_shared(c, n, "contentType", false, "secret", &s->content_type);
    cx_tags(c, n, "tags", &s->tags);

    for (i = 0; sources[i]; i++) {
        if (!yt_map_get(n, sources[i]))
            continue;
        if (nsources++ == 0) {
            first = sources[i];
            s->source = (kvr_secret_source)i;
        } else {
            cx_error(c, yt_map_get(n, sources[i]),
                     "secret has both '%s' and '%s'; give exactly one value source", first,
                     sources[i]);
        }
    }
    if (nsources == 0 && !value)
        cx_error(c, n,
                 "secret needs a value source: one of 'generate', 'fromEnv', 'fromFile', "
                 "'fromAppCredential' or 'external: true'");
    s->gen_length = 32;
    if ((x = yt_map_get(n, "generate"))) {
        if (x->kind == YT_MAP) {
            cx_fields(c, x, "generate", GENERATE_FIELDS);
            cx_int(c, x, "length", 16, 1024, &s->gen_length);
            if (cx_enum(c, x, "charset", CHARSETS, &i))
                s->gen_charset = (kvr_charset)i;
        } else {
            cx_error(c, x, "'generate' must be a mapping like {length: 32, charset: alnum}, got %s",
                     yt_describe(x));
        }
    }
    if (yt_map_get(n, "fromEnv") && cx_str(c, n, "fromEnv", false, "secret", &s->env_name)) {
        for (const char *p = s->env_name; *p; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
                  (p > s->env_name && *p >= '0' && *p <= '9'))) {
                cx_error(c, yt_map_get(n, "fromEnv"),
                         "'fromEnv' must be an environment variable name, got '%.64s'",
                         s->env_name);
                break;
            }
        }
    }
    if (yt_map_get(n, "fromFile")) {
        char *raw = NULL;
        if (cx_str(c, n, "fromFile", false, "secret", &raw))
            s->file_path = confine_path(c, yt_map_get(n, "fromFile"), raw, resolve_path(c, raw));
        free(raw);
    }
    if ((x = yt_map_get(n, "fromAppCredential")) && cx_is_map(c, x, "'fromAppCredential'")) {
        cx_fields(c, x, "fromAppCredential", APPCRED_FIELDS);
        cx_str(c, x, "app", true, "'fromAppCredential'", &s->app);
        cx_str(c, x, "credential", true, "'fromAppCredential'", &s->credential);
    }
    if (yt_map_get(n, "external")) {
        /* `external: false` would say nothing about where the value comes from */
        bool on = false;
        if (cx_bool(c, n, "external", &on) && !on)
            cx_error(c, yt_map_get(n, "external"),
                     "'external' can only be true (the value is managed outside this "
                     "repository); for a value kvreconcile manages, give 'generate', 'fromEnv', "
                     "'fromFile' or 'fromAppCredential' instead");
    }
}

/* ---- profiles, retention, cloud ----------------------------------------------------------- */

static void parse_profile(ctx *c, const yt_node *n)
{
    kvr_profile *p;
    if (!cx_is_map(c, n, "a profile"))
        return;
    cx_fields(c, n, "profile", PROFILE_FIELDS);
    p = push(c, (void **)&c->e->profiles, &c->e->nprofiles, sizeof(*p));
    if (!p)
        return;
    p->pos = cx_pos(c, n);
    cx_str(c, n, "name", true, "profile", &p->name);
    cx_str(c, n, "vault", true, "profile", &p->vault);
    cx_str(c, n, "key", true, "profile", &p->key);
    cx_str(c, n, "app", true, "profile", &p->app);
    cx_str(c, n, "credential", true, "profile", &p->credential);
    if (cx_str(c, n, "keyVersion", false, "profile", &p->key_version)) {
        bool hex = strlen(p->key_version) == 32;
        for (const char *q = p->key_version; hex && *q; q++)
            hex = (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f');
        if (strcmp(p->key_version, "latest") == 0) {
            free(p->key_version);
            p->key_version = NULL;
        } else if (!hex) {
            cx_error(c, yt_map_get(n, "keyVersion"),
                     "'keyVersion' must be 'latest' or a 32-character lower-case hex key version, "
                     "got '%.64s'",
                     p->key_version);
        }
    }
}

static void parse_retention(ctx *c, const yt_node *n)
{
    struct {
        const char *field;
        single *once;
        int64_t *out;
    } f[] = {{"keys", &c->ret_keys, &c->e->retention.keys},
             {"profiles", &c->ret_profiles, &c->e->retention.profiles},
             {"appSecrets", &c->ret_app_secrets, &c->e->retention.app_secrets},
             {"vaults", &c->ret_vaults, &c->e->retention.vaults}};
    if (!cx_is_map(c, n, "'retention'"))
        return;
    cx_fields(c, n, "retention", RETENTION_FIELDS);
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        const yt_node *v = yt_map_get(n, f[i].field);
        char what[64];
        if (!v)
            continue;
        snprintf(what, sizeof(what), "'retention.%s'", f[i].field);
        once(c, f[i].once, v, what);
        cx_duration(c, n, f[i].field, f[i].out);
    }
}

static void parse_cloud(ctx *c, const yt_node *n)
{
    struct {
        const char *field;
        char **out;
    } urls[] = {{"authorityHost", &c->e->cloud.authority_host},
                {"resourceManager", &c->e->cloud.resource_manager},
                {"graph", &c->e->cloud.graph},
                {"profileService", &c->e->cloud.profile_service}};
    int i;
    if (!cx_is_map(c, n, "'cloud'"))
        return;
    if (!once(c, &c->cloud, n, "'cloud'"))
        return; /* reported; the first block's values stay */
    cx_fields(c, n, "cloud", CLOUD_FIELDS);
    if (cx_enum(c, n, "name", CLOUDS, &i))
        c->e->cloud.name = cx_strdup(c, CLOUDS[i]);
    for (size_t k = 0; k < sizeof(urls) / sizeof(urls[0]); k++) {
        if (cx_str(c, n, urls[k].field, false, "cloud", urls[k].out) &&
            strncmp(*urls[k].out, "https://", 8) != 0)
            cx_error(c, yt_map_get(n, urls[k].field),
                     "'%s' must be an https:// URL (tokens are never sent in clear)",
                     urls[k].field);
    }
    cx_str(c, n, "vaultSuffix", false, "cloud", &c->e->cloud.vault_suffix);
    if (c->e->cloud.name && strcmp(c->e->cloud.name, "custom") == 0) {
        for (size_t k = 0; k < sizeof(urls) / sizeof(urls[0]); k++)
            if (!*urls[k].out && yt_map_get(n, urls[k].field) == NULL)
                cx_error(c, n, "a custom cloud needs '%s'", urls[k].field);
        if (!yt_map_get(n, "vaultSuffix"))
            cx_error(c, n, "a custom cloud needs 'vaultSuffix'");
    }
}

/* ---- lock --------------------------------------------------------------------------------- */

/* Azure Storage's rules for account names: 3-24 lowercase letters and digits. */
static bool is_storage_account(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 24)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* Container names: 3-63 lowercase letters, digits and hyphens; a letter or digit first and
   last; no two hyphens in a row. */
static bool is_container(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-' && s[i + 1] == '-')
            return false;
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    }
    return true;
}

/* Blob names this tool writes: letters, digits, '.', '_', '-' and '/' (virtual folders), up to
   255, no empty segment; nothing that needs escaping in a URL. */
static bool is_lock_blob(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 255 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//"))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("._-/", s[i])))
            return false;
    return true;
}

static void parse_lock(ctx *c, const yt_node *n)
{
    kvr_lock_config *l = &c->e->lock;
    if (!cx_is_map(c, n, "'lock'"))
        return;
    if (!once(c, &c->lock, n, "'lock'"))
        return; /* reported; the first block's values stay */
    cx_fields(c, n, "lock", LOCK_FIELDS);
    l->pos = cx_pos(c, n);
    if (cx_str(c, n, "storageAccount", true, "'lock'", &l->storage_account) &&
        !is_storage_account(l->storage_account))
        cx_error(c, yt_map_get(n, "storageAccount"),
                 "'storageAccount' must be a storage account name (3-24 lowercase letters and "
                 "digits), got '%.64s'",
                 l->storage_account);
    if (cx_str(c, n, "container", true, "'lock'", &l->container) && !is_container(l->container))
        cx_error(c, yt_map_get(n, "container"),
                 "'container' must be a blob container name (3-63 lowercase letters, digits and "
                 "single hyphens, starting and ending with a letter or digit), got '%.64s'",
                 l->container);
    if (cx_str(c, n, "blob", false, "'lock'", &l->blob) && !is_lock_blob(l->blob))
        cx_error(c, yt_map_get(n, "blob"),
                 "'blob' must be a blob name of letters, digits, '.', '_', '-' and '/' (at most "
                 "255), got '%.64s'",
                 l->blob);
    if (cx_str(c, n, "endpoint", false, "'lock'", &l->endpoint) &&
        strncmp(l->endpoint, "https://", 8) != 0)
        cx_error(c, yt_map_get(n, "endpoint"),
                 "'endpoint' must be an https:// URL (tokens are never sent in clear)");
}

/* ---- documents and files ------------------------------------------------------------------ */

static void parse_document(ctx *c, const yt_doc *d)
{
    const yt_node *root = d->root, *x, *api;

    if (root->kind != YT_MAP) {
        cx_error(c, root, "a kvreconcile document must be a mapping with 'apiVersion: "
                          "kvreconcile/v1', got %s",
                 yt_describe(root));
        return;
    }
    api = yt_map_get(root, "apiVersion");
    if (!api) {
        cx_error(c, root, "document is missing 'apiVersion' (expected 'kvreconcile/v1')");
        return;
    }
    if (api->kind != YT_SCALAR || strcmp(api->text, "kvreconcile/v1") != 0) {
        cx_error(c, api, "unsupported apiVersion '%.64s' (this kvreconcile reads "
                         "'kvreconcile/v1')",
                 api->kind == YT_SCALAR ? api->text : yt_describe(api));
        return;
    }
    cx_fields(c, root, "top-level", TOP_FIELDS);

    if ((x = yt_map_get(root, "subscription"))) {
        if (once(c, &c->subscription, x, "'subscription'") &&
            cx_str(c, root, "subscription", false, "document", &c->e->subscription) &&
            !kvr_is_guid(c->e->subscription))
            cx_error(c, x, "'subscription' must be a subscription id (a GUID), got '%.64s'",
                     c->e->subscription);
    }
    if ((x = yt_map_get(root, "cloud")))
        parse_cloud(c, x);
    if ((x = yt_map_get(root, "lock")))
        parse_lock(c, x);
    if ((x = get_list(c, root, "vaults")))
        for (size_t i = 0; i < x->n; i++)
            parse_vault(c, x->items[i]);
    if ((x = get_list(c, root, "apps")))
        for (size_t i = 0; i < x->n; i++)
            parse_app(c, x->items[i]);
    if ((x = get_list(c, root, "roleAssignments")))
        for (size_t i = 0; i < x->n; i++)
            parse_role(c, x->items[i]);
    if ((x = get_list(c, root, "keys")))
        for (size_t i = 0; i < x->n; i++)
            parse_key(c, x->items[i]);
    if ((x = get_list(c, root, "secrets")))
        for (size_t i = 0; i < x->n; i++)
            parse_secret(c, x->items[i]);
    if ((x = get_list(c, root, "profiles")))
        for (size_t i = 0; i < x->n; i++)
            parse_profile(c, x->items[i]);
    if ((x = yt_map_get(root, "active"))) {
        free(c->e->active);
        c->e->active = NULL;
        once(c, &c->active, x, "'active'");
        c->e->active_pos = cx_pos(c, x);
        if (!cx_str(c, root, "active", false, "document", &c->e->active))
            c->e->active = NULL; /* reported; don't also claim that none is active */
    }
    if ((x = yt_map_get(root, "retention")))
        parse_retention(c, x);
}

static bool is_utf16_or_32(const char *data, size_t size)
{
    const unsigned char *u = (const unsigned char *)data;
    return size >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF));
}

/* ---- streaming the big lists ---------------------------------------------------------------- */

/*
 * A 5 MB estate file is mostly its lists of keys, secrets and role assignments. Kept as a tree
 * they cost ten times the file; converted item by item as the parser completes them, almost
 * nothing. Conversion order must not change: the estate's arrays keep declaration order (it
 * decides which duplicate is "first" and the order of the plan). So a list streams only when
 * parse_document would convert it at all (a valid apiVersion came first in the document, and
 * it is the key's first occurrence); once a list must wait for its document, the rest of the
 * file waits too, so that no later list overtakes it.
 */
static const struct {
    const char *field;
    void (*parse)(ctx *c, const yt_node *n);
} LISTS[] = {{"vaults", parse_vault}, {"apps", parse_app},       {"roleAssignments", parse_role},
             {"keys", parse_key},     {"secrets", parse_secret}, {"profiles", parse_profile}};

static bool stream_want(void *arg, const char *key, yt_node *const *pairs, size_t npairs)
{
    ctx *c = arg;
    const yt_node *api = NULL;
    bool list = false, repeated = false;
    for (size_t i = 0; i < sizeof(LISTS) / sizeof(LISTS[0]); i++)
        list |= strcmp(LISTS[i].field, key) == 0;
    if (!list || c->stream_off)
        return false;
    for (size_t i = 0; i < npairs; i++) {
        const yt_node *k = pairs[2 * i];
        if (k->kind != YT_SCALAR)
            continue;
        if (strcmp(k->text, key) == 0)
            repeated = true; /* parse_document reads the first occurrence only */
        else if (!api && strcmp(k->text, "apiVersion") == 0)
            api = pairs[2 * i + 1];
    }
    if (repeated || !api || api->kind != YT_SCALAR || strcmp(api->text, "kvreconcile/v1") != 0) {
        c->stream_off = true;
        return false;
    }
    return true;
}

static void stream_item(void *arg, const char *key, const yt_node *item)
{
    ctx *c = arg;
    for (size_t i = 0; i < sizeof(LISTS) / sizeof(LISTS[0]); i++)
        if (strcmp(LISTS[i].field, key) == 0)
            LISTS[i].parse(c, item);
}

/* Parses one file's text. `name` must already be in e->files. */
static void load_text(ctx *c, const char *name, const char *data, size_t size)
{
    yt_stream st;
    size_t used = 0;
    const char *nul;
    const char *slash;
    yt_hooks hooks = {stream_want, stream_item, c};
    kvr_diags streamed, *diags = c->diags;
    kvr_estate_lens lens;
    int rc;

    c->file = name;
    free(c->dir);
    slash = strrchr(name, '/');
    c->dir = slash ? strndup(name, (size_t)(slash - name)) : strdup(".");
    if (!c->dir) {
        cx_oom(c);
        return;
    }

    nul = memchr(data, '\0', size);
    if (nul && !is_utf16_or_32(data, size)) {
        unsigned line = 1, col = 1;
        for (const char *p = data; p < nul; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)*p & 0xC0) != 0x80) {
                col++;
            }
        }
        cx_error_pos(c, (kvr_pos){name, line, col},
                     "binary file (NUL byte at byte offset %zu); expected YAML text",
                     (size_t)(nul - data));
        return;
    }
    /* What the streamed items report waits in `streamed`: if the file turns out not to be
       YAML, only the YAML errors are reported, as for any file that does not parse. */
    kvr_diags_init(&streamed);
    streamed.limit = diags->limit;
    kvr_estate_lens_get(c->e, &lens);
    c->stream_off = false;
    c->diags = &streamed;
    rc = yt_parse(&st, name, data, size, diags, &hooks);
    c->diags = diags;
    if (rc < 0) {
        bool oom = diags->oom || streamed.oom || c->rc == KVR_ENOMEM;
        kvr_estate_truncate(c->e, &lens);
        kvr_diags_release(&streamed);
        c->bad = true;
        if (oom) {
            c->rc = 0; /* an allocation failure in a streamed item: say it once, here */
            cx_oom(c);
        }
        return;
    }
    for (size_t i = 0; i < streamed.len; i++)
        kvr_diags_add(diags, streamed.items[i].file, streamed.items[i].line, streamed.items[i].col,
                      "%s", streamed.items[i].msg);
    diags->dropped += streamed.dropped;
    diags->oom |= streamed.oom;
    kvr_diags_release(&streamed);
    for (size_t i = 0; i < st.ndocs; i++) {
        if (!st.docs[i].root ||
            (st.docs[i].root->kind == YT_SCALAR && yt_scalar_type(st.docs[i].root) == YT_T_NULL))
            continue; /* an empty document between separators */
        parse_document(c, &st.docs[i]);
        used++;
    }
    if (used == 0)
        cx_error_pos(c, (kvr_pos){name, 0, 0},
                     "no kvreconcile document in this file (it is empty); expected one starting "
                     "with 'apiVersion: kvreconcile/v1'");
    yt_stream_release(&st);
}

/* ---- the file walk ------------------------------------------------------------------------ */

typedef struct seen_ino {
    dev_t dev;
    ino_t ino;
} seen_ino;

typedef struct walk {
    ctx *c;
    seen_ino *files, *dirs;
    size_t nfiles, files_cap, ndirs, dirs_cap;
    size_t total_bytes;
} walk;

static bool seen(seen_ino **set, size_t *n, size_t *cap, const struct stat *st, ctx *c)
{
    for (size_t i = 0; i < *n; i++)
        if ((*set)[i].dev == st->st_dev && (*set)[i].ino == st->st_ino)
            return true;
    if (kvr_grow((void **)set, cap, *n + 1, sizeof(**set)) < 0) {
        cx_oom(c);
        return true;
    }
    (*set)[*n].dev = st->st_dev;
    (*set)[*n].ino = st->st_ino;
    (*n)++;
    return false;
}

static const char *remember_file(ctx *c, const char *path)
{
    kvr_strlist *f = &c->e->files;
    size_t cap = f->len;
    char *copy = strdup(path);
    /* The capacity is not kept; kvr_grow from `len` stays correct, if not frugal. */
    if (!copy || kvr_grow((void **)&f->items, &cap, f->len + 1, sizeof(char *)) < 0) {
        free(copy);
        cx_oom(c);
        return NULL;
    }
    f->items[f->len++] = copy;
    return copy;
}

/*
 * A file error of util's without the quoted path, which the position already gives:
 * "cannot open 'P': Permission denied" -> "cannot open: Permission denied",
 * "'P' is a FIFO, not a regular file" -> "file is a FIFO, not a regular file". Edits in place.
 */
static const char *unquote_path(char *msg, const char *path)
{
    size_t n = strlen(path);
    char *q = strchr(msg, '\'');
    if (!q || strncmp(q + 1, path, n) != 0 || q[n + 1] != '\'')
        return msg;
    if (q == msg && n >= 2) {
        memmove(msg + 4, q + n + 2, strlen(q + n + 2) + 1);
        memcpy(msg, "file", 4);
    } else if (q > msg && q[-1] == ' ') {
        memmove(q - 1, q + n + 2, strlen(q + n + 2) + 1);
    }
    return msg;
}

static void load_file(walk *w, const char *path, const struct stat *st)
{
    ctx *c = w->c;
    const char *name;
    char *data = NULL;
    size_t len = 0;
    struct stat fst;
    kvr_error err;
    int fd = -1;

    if (seen(&w->files, &w->nfiles, &w->files_cap, st, c))
        return; /* the same file reached twice (e.g. through a symlink): read it once */
    if (w->nfiles > KVR_MODEL_MAX_FILES) {
        if (w->nfiles == KVR_MODEL_MAX_FILES + 1)
            cx_error_pos(c, (kvr_pos){path, 0, 0}, "too many files (the limit is %u)",
                         KVR_MODEL_MAX_FILES);
        return;
    }
    name = remember_file(c, path);
    if (!name)
        return;
    if ((size_t)st->st_size > KVR_MODEL_MAX_FILE_BYTES) {
        cx_error_pos(c, (kvr_pos){name, 0, 0},
                     "file is too large (%lld bytes; the limit is %u MiB)", (long long)st->st_size,
                     KVR_MODEL_MAX_FILE_BYTES >> 20);
        return;
    }
    /* Opened non-blocking and checked on the descriptor: the file stat saw may have been
       swapped for a FIFO or a device since, and reading one must not hang the loader. */
    if (kvr_file_open(&fd, &fst, path, KVR_MODEL_MAX_FILE_BYTES, 0, &err) < 0 ||
        kvr_file_read_fd(&data, &len, fd, path, (size_t)fst.st_size, KVR_MODEL_MAX_FILE_BYTES,
                         &err) < 0) {
        if (err.code == KVR_ENOMEM)
            cx_oom(c);
        else if (err.code == KVR_ETOOBIG)
            cx_error_pos(c, (kvr_pos){name, 0, 0}, "file is too large (the limit is %u MiB)",
                         KVR_MODEL_MAX_FILE_BYTES >> 20);
        else
            cx_error_pos(c, (kvr_pos){name, 0, 0}, "%s", unquote_path(err.message, path));
        goto done;
    }
    w->total_bytes += len;
    if (w->total_bytes > KVR_MODEL_MAX_TOTAL_BYTES) {
        cx_error_pos(c, (kvr_pos){name, 0, 0}, "the estate is too large (over %u MiB of YAML)",
                     KVR_MODEL_MAX_TOTAL_BYTES >> 20);
        goto done;
    }
    load_text(c, name, data, len);
done:
    free(data);
    if (fd >= 0)
        close(fd);
}

static bool yaml_name(const char *name)
{
    return kvr_str_has_suffix(name, ".yaml") || kvr_str_has_suffix(name, ".yml");
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t walk_dir(walk *w, const char *path, unsigned depth);

/* Visits one path found inside a directory (or given by the user when `given`). */
static size_t visit(walk *w, const char *path, bool given, unsigned depth)
{
    ctx *c = w->c;
    struct stat st;
    if (stat(path, &st) < 0) {
        /* A failed entry still counts as found: "no YAML files" would only add noise. */
        if (errno == ELOOP) {
            cx_error_pos(c, (kvr_pos){path, 0, 0}, "symbolic link loop");
            return 1;
        }
        if (given || yaml_name(path)) {
            cx_error_pos(c, (kvr_pos){path, 0, 0}, "cannot read: %s", strerror(errno));
            return 1;
        }
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        size_t found;
        if (seen(&w->dirs, &w->ndirs, &w->dirs_cap, &st, c)) {
            if (!given)
                cx_error_pos(c, (kvr_pos){path, 0, 0},
                             "directory loop: this directory was already visited (through a "
                             "symbolic link?)");
            return 0;
        }
        found = walk_dir(w, path, depth);
        if (given && found == 0 && !c->rc)
            cx_error_pos(c, (kvr_pos){path, 0, 0}, "no YAML files (*.yaml, *.yml) in this "
                                                   "directory");
        return found;
    }
    if (!S_ISREG(st.st_mode)) {
        if (given || yaml_name(path)) {
            cx_error_pos(c, (kvr_pos){path, 0, 0}, "not a regular file");
            return 1;
        }
        return 0;
    }
    if (!given && !yaml_name(path))
        return 0;
    load_file(w, path, &st);
    return 1;
}

static size_t walk_dir(walk *w, const char *path, unsigned depth)
{
    ctx *c = w->c;
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, found = 0;

    if (depth > KVR_MODEL_MAX_DEPTH) {
        cx_error_pos(c, (kvr_pos){path, 0, 0}, "directories nested deeper than %u levels",
                     KVR_MODEL_MAX_DEPTH);
        return 0;
    }
    d = opendir(path);
    if (!d) {
        cx_error_pos(c, (kvr_pos){path, 0, 0}, "cannot read directory: %s", strerror(errno));
        return 0;
    }
    while ((de = readdir(d))) {
        char *copy;
        if (de->d_name[0] == '.')
            continue; /* ., .., and hidden entries such as .git */
        copy = strdup(de->d_name);
        if (!copy || kvr_grow((void **)&names, &cap, n + 1, sizeof(*names)) < 0) {
            free(copy);
            cx_oom(c);
            break;
        }
        names[n++] = copy;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *child = malloc(len);
        if (!child) {
            cx_oom(c);
            break;
        }
        snprintf(child, len, "%s%s%s", path, kvr_str_has_suffix(path, "/") ? "" : "/", names[i]);
        found += visit(w, child, false, depth + 1);
        free(child);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return found;
}

static void ctx_init(ctx *c, kvr_estate *e, kvr_diags *diags)
{
    memset(c, 0, sizeof(*c));
    c->e = e;
    c->diags = diags;
    e->retention.keys = 90LL * 86400;
    e->retention.profiles = 30LL * 86400;
    e->retention.app_secrets = 7LL * 86400;
    e->retention.vaults = 90LL * 86400;
}

/* Gives back an array's room beyond its len (push doubles it: 40,000 secrets had room for
   65,536, 2.7 MB of the 200-vault bench estate's model). */
static void fit(void **items, size_t len, size_t elem)
{
    void *p;
    if (len && (p = realloc(*items, len * elem)))
        *items = p;
}

static int finish(ctx *c, kvr_estate **out, kvr_estate *e)
{
    int rc;
    fit((void **)&e->vaults, e->nvaults, sizeof(*e->vaults));
    fit((void **)&e->apps, e->napps, sizeof(*e->apps));
    fit((void **)&e->roles, e->nroles, sizeof(*e->roles));
    fit((void **)&e->keys, e->nkeys, sizeof(*e->keys));
    fit((void **)&e->secrets, e->nsecrets, sizeof(*e->secrets));
    fit((void **)&e->profiles, e->nprofiles, sizeof(*e->profiles));
    if (!c->rc && kvr_estate_index_build(e) < 0)
        cx_oom(c);
    if (!c->rc)
        kvr_model_check(c);
    free(c->dir);
    for (size_t i = 0; i < c->nroots; i++)
        free(c->roots[i]);
    free(c->roots);
    kvr_diags_sort(c->diags);
    rc = c->rc ? c->rc : (c->bad || c->diags->len ? KVR_ECONFIG : 0);
    if (rc < 0) {
        kvr_estate_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* The deepest common directory of a and b (both canonical), in place in a. */
static void common_dir(char *a, const char *b)
{
    size_t i = 0, last = 0;
    while (a[i] && a[i] == b[i]) {
        i++;
        if (a[i] == '/' || a[i] == '\0')
            last = i;
    }
    if ((a[i] == '\0' || a[i] == '/') && (b[i] == '\0' || b[i] == '/'))
        last = i;
    if (last == 0)
        last = 1; /* "/" */
    a[last] = '\0';
}

/* c->roots: the repository root (the common directory of the paths given; of a file, its
   directory), then the allowed directories. A path that cannot be resolved is left to the
   walk to report. */
static void set_roots(ctx *c, const char *const *paths, size_t npaths,
                      const kvr_model_options *opts)
{
    size_t nallow = opts ? opts->nallow_dirs : 0;
    char *repo = NULL;

    if (!(c->roots = calloc(nallow + 1, sizeof(*c->roots)))) {
        cx_oom(c);
        return;
    }
    for (size_t i = 0; i < npaths; i++) {
        struct stat st;
        char *dir, *real, *slash;
        if (!(dir = strdup(paths[i]))) {
            cx_oom(c);
            return;
        }
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            slash = strrchr(dir, '/');
            if (!slash) {
                /* a file in the current directory ("" could not hold ".") */
                free(dir);
                if (!(dir = strdup("."))) {
                    cx_oom(c);
                    return;
                }
            } else if (slash == dir)
                dir[1] = '\0';
            else
                *slash = '\0';
        }
        real = realpath(dir, NULL);
        free(dir);
        if (!real)
            continue;
        if (!repo) {
            repo = real;
        } else {
            common_dir(repo, real);
            free(real);
        }
    }
    if (repo)
        c->roots[c->nroots++] = repo;
    for (size_t i = 0; i < nallow; i++) {
        /* resolved loosely: a secrets volume that is mounted only where apply runs may be
           missing where validate runs, and files under it are then admitted all the same */
        char *real = resolve_loose(opts->allow_dirs[i], 0);
        struct stat st;
        if (!real || (stat(real, &st) == 0 && !S_ISDIR(st.st_mode))) {
            cx_error_pos(c, (kvr_pos){"--allow-files-under", 0, 0}, "'%s' is not a directory%s%s",
                         opts->allow_dirs[i], real ? "" : ": ", real ? "" : strerror(errno));
            free(real);
            continue;
        }
        c->roots[c->nroots++] = real;
    }
}

int kvr_model_load(kvr_estate **out, const char *const *paths, size_t npaths, kvr_diags *diags)
{
    return kvr_model_load_with(out, paths, npaths, NULL, diags);
}

int kvr_model_load_with(kvr_estate **out, const char *const *paths, size_t npaths,
                        const kvr_model_options *opts, kvr_diags *diags)
{
    kvr_estate *e;
    ctx c;
    walk w;

    *out = NULL;
    e = calloc(1, sizeof(*e));
    if (!e) {
        kvr_diags_add(diags, "-", 0, 0, "out of memory");
        return KVR_ENOMEM;
    }
    ctx_init(&c, e, diags);
    memset(&w, 0, sizeof(w));
    w.c = &c;
    if (npaths == 0)
        kvr_diags_add(diags, "kvreconcile", 0, 0, "no input: give files or directories with -f");
    set_roots(&c, paths, npaths, opts);
    for (size_t i = 0; i < npaths && !c.rc; i++)
        visit(&w, paths[i], true, 0);
    free(w.files);
    free(w.dirs);
    return finish(&c, out, e);
}

int kvr_model_load_buffer(kvr_estate **out, const char *name, const char *data, size_t size,
                          kvr_diags *diags)
{
    kvr_estate *e;
    const char *stored;
    ctx c;

    *out = NULL;
    e = calloc(1, sizeof(*e));
    if (!e) {
        kvr_diags_add(diags, name, 0, 0, "out of memory");
        return KVR_ENOMEM;
    }
    ctx_init(&c, e, diags);
    stored = remember_file(&c, name);
    if (stored)
        load_text(&c, stored, data, size);
    return finish(&c, out, e);
}
