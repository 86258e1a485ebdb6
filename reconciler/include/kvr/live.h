/*
 * The live state of an estate, as read from Azure and the profile service: the other input of
 * the plan. Providers fill it; tests load it from JSON fixtures (kvr_live_from_json). Times are
 * Unix seconds on the service's clock. Only what the plan needs is kept; secret values never
 * are: a secret carries a keyed digest marker instead (see kvr_plan_input).
 */
#ifndef KVR_LIVE_H
#define KVR_LIVE_H

#include "kvr/model.h"

/* Tags kvreconcile writes on live objects so that a run needs no local state. */
#define KVR_TAG_GENERATION "kvr-generation"     /* key version: the generation it was made for */
#define KVR_TAG_SUPERSEDED "kvr-superseded-at"  /* key version, secret, vault: unused since (Unix s) */
#define KVR_TAG_CREDENTIAL "kvr-credential-key-id" /* stored client secret: its credential keyId */
#define KVR_APP_TAG_MANAGED "kvr-managed:" /* application tag: + the estate's subscription id */
#define KVR_APP_TAG_RETIRING "kvr-retiring-since:" /* application tag: + subscription=Unix s */
#define KVR_CRED_PREFIX "kvr:"                  /* app credential display name: kvr:<generation> */
#define KVR_TAG_COPY "kvr-copy-of"              /* secret version: written by a relocation's copy
                                                   from this vault */

typedef struct kvr_live_version {
    char *id; /* 32 hex */
    bool enabled;
    int64_t created;
    int64_t exp; /* 0: none */
    kvr_tags tags;
} kvr_live_version;

typedef struct kvr_live_key {
    char *vault;
    char *name;
    char *kty;
    int size;
    char *crv;
    unsigned ops;              /* of the latest version */
    kvr_live_version *versions; /* oldest first; the last is the latest */
    size_t nversions;
    bool has_policy;
    kvr_rotation policy;
} kvr_live_key;

typedef struct kvr_live_secret {
    char *vault;
    char *name;
    char *content_type;
    bool enabled;
    kvr_tags tags;
    char *digest; /* keyed digest marker of the latest value; NULL if not read */
    int64_t updated; /* attributes.updated of the latest version (Unix s); 0: unknown */
} kvr_live_secret;

typedef struct kvr_live_cert {
    char *vault;
    char *name;
    char *x5t;
} kvr_live_cert;

/* A key listed in a vault but not read: its name is all a plan needs of a key that nothing
   declares, made or uses (it reports it as unmanaged). */
typedef struct kvr_live_name {
    char *vault;
    char *name;
} kvr_live_name;

typedef struct kvr_live_deleted {
    char *vault;
    char *kind; /* "key", "secret", "certificate" */
    char *name;
    int64_t deleted;
    int64_t purge_at;
} kvr_live_deleted;

/* An access policy entry of a vault: whose, and its permission names as Azure returned them. */
typedef struct kvr_live_policy {
    char *object_id;
    kvr_strlist keys;
    kvr_strlist secrets;
    kvr_strlist certificates;
} kvr_live_policy;

typedef struct kvr_live_vault {
    char *name;
    char *resource_group;
    char *location;
    kvr_sku sku;
    bool rbac;
    int soft_delete_days;
    bool purge_protection;
    char *default_action; /* NULL: Allow */
    char *bypass;         /* networkAcls.bypass; NULL: AzureServices */
    char *public_access;  /* publicNetworkAccess; NULL: Enabled */
    kvr_strlist ip_rules;   /* networkAcls.ipRules[].value */
    kvr_strlist vnet_rules; /* networkAcls.virtualNetworkRules[].id */
    kvr_tags tags;
    kvr_live_policy *policies; /* properties.accessPolicies (Azure ignores them on RBAC vaults) */
    size_t npolicies;
} kvr_live_vault;

typedef struct kvr_live_deleted_vault {
    char *name;
    char *location;
    int64_t deleted;
    int64_t purge_at;
    bool purge_protection;
} kvr_live_deleted_vault;

typedef struct kvr_live_credential {
    char *key_id;
    char *display_name;
    int64_t start;
    int64_t end;
} kvr_live_credential;

typedef struct kvr_live_app {
    char *display_name;
    char *app_id;
    char *object_id;
    char *sp_id; /* service principal object id; NULL if none */
    char *audience;
    kvr_live_credential *creds;
    size_t ncreds;
    kvr_strlist tags; /* the application's tags (KVR_APP_TAG_MANAGED…, others as found) */
    /* found by this estate's marker (KVR_APP_TAG_MANAGED) while the desired state no longer
       declares it: a candidate for retirement */
    bool undeclared;
    /* in the directory's deleted items (a declared app this estate retired within the last 30
       days): restored rather than registered again, so that it keeps its client id */
    bool deleted;
} kvr_live_app;

typedef struct kvr_live_role {
    char *name; /* the assignment GUID */
    char *scope;
    char *role_id; /* role definition GUID, lower case */
    char *principal_id;
} kvr_live_role;

typedef enum kvr_profile_status {
    KVR_PROFILE_CREATED = 0,
    KVR_PROFILE_APPLYING,
    KVR_PROFILE_USED,
    KVR_PROFILE_INACTIVE,
    KVR_PROFILE_FAILED,
} kvr_profile_status;

typedef struct kvr_live_profile {
    char *name;
    char *vault;
    char *key;
    char *key_version;
    char *client_id;
    char *credential; /* the generation marker in the profile's metadata */
    kvr_profile_status status;
    int64_t status_since;
} kvr_live_profile;

/*
 * An Azure resource outside the estate that uses a vault: a storage account, disk encryption
 * set, SQL server or Cosmos DB account with a customer-managed key in it, or an App Service /
 * Functions app with an app setting that is a Key Vault reference. What it references: the key
 * (with a version, or none: versionless, it follows the key's current version), or the secret,
 * or only the vault. Found by discovery (providers/azure/dependents.c); the plan never retires
 * what one references unless the desired state acknowledges that dependent by resource id.
 */
typedef struct kvr_live_dependent {
    char *id;      /* ARM resource id */
    char *type;    /* resource type as Azure spells it, e.g. "Microsoft.Storage/storageAccounts" */
    char *name;
    char *vault;   /* the vault's name */
    char *key;     /* NULL: not a key */
    char *version; /* of key; NULL: versionless (the key's current version) */
    char *secret;  /* NULL: not a secret */
    char *setting; /* an app's setting name; NULL otherwise */
} kvr_live_dependent;

typedef struct kvr_live {
    int64_t now; /* the service's clock (HTTP Date) when the state was read */
    kvr_live_vault *vaults;
    size_t nvaults;
    kvr_live_deleted_vault *deleted_vaults;
    size_t ndeleted_vaults;
    kvr_live_key *keys;
    size_t nkeys;
    kvr_live_secret *secrets;
    size_t nsecrets;
    kvr_live_cert *certs;
    size_t ncerts;
    kvr_live_name *unread_keys; /* listed, not read (sorted by vault and name) */
    size_t nunread_keys;
    kvr_live_deleted *deleted;
    size_t ndeleted;
    kvr_live_app *apps;
    size_t napps;
    kvr_live_role *roles;
    size_t nroles;
    kvr_live_profile *profiles;
    size_t nprofiles;
    kvr_live_dependent *dependents; /* discovered dependents of the vaults read */
    size_t ndependents;
    /* the identity the state was read as (its ARM token's oid): its own access to the vaults is
       not reported as an undeclared principal's; NULL: not known */
    char *self_object_id;
    kvr_strpool strings; /* every string above (kvr_live_free frees them with the pool) */
    /* One copy of the texts that many objects repeat: vault names, key types and curves, content
       types, role and principal ids, tag names (so a field may share its text with others: never
       write to one) */
    kvr_strset shared;
} kvr_live;

/*
 * Reads the live-state JSON format (see tests/fixtures/plan/README.md). On success *out is the
 * caller's (kvr_live_free); on failure it stays NULL and err says what and where.
 */
int kvr_live_from_json(kvr_live **out, const char *text, size_t len, kvr_error *err);

void kvr_live_free(kvr_live *l);

/*
 * Writes the live state in the format kvr_live_from_json reads (keys sorted, indented), for
 * offline plans (`plan --save-live`). The model holds no secret value, only keyed markers.
 * *out is the caller's (free); KVR_ENOMEM.
 */
int kvr_live_to_json(char **out, const kvr_live *l, kvr_error *err);

/* A desired secret value's marker, computed outside the plan (reading env/files is I/O). */
typedef struct kvr_value_digest {
    const char *vault;
    const char *name;
    const char *digest; /* same keyed scheme as kvr_live_secret.digest */
} kvr_value_digest;

/*
 * The canonical text a saved plan's live-state digest is taken over: the live state without
 * the clock, each value marker replaced by its class of equal markers among the live secrets
 * and the desired values `d` (markers of one run cannot be compared with another's; which
 * values are equal is what a plan depends on). *out is the caller's (free); KVR_ENOMEM.
 */
int kvr_live_canon(char **out, const kvr_live *l, const kvr_value_digest *d, size_t nd,
                   kvr_error *err);

const char *kvr_profile_status_name(kvr_profile_status s);

/* Lookups (case-insensitive names, as in Azure). Borrowed, or NULL. */
const kvr_live_vault *kvr_live_vault_get(const kvr_live *l, const char *name);
const kvr_live_key *kvr_live_key_get(const kvr_live *l, const char *vault, const char *name);
const kvr_live_secret *kvr_live_secret_get(const kvr_live *l, const char *vault, const char *name);
const kvr_live_app *kvr_live_app_get(const kvr_live *l, const char *display_name);
const kvr_live_profile *kvr_live_profile_get(const kvr_live *l, const char *name);

/* A short noun for a dependent's resource type ("storage account", "disk encryption set", "SQL
   server", "Cosmos DB account", "app"); "resource" for others. Static. */
const char *kvr_dependent_kind(const char *type);

/* The value of tag `key`, or NULL. */
const char *kvr_tags_get(const kvr_tags *t, const char *key);

#endif
