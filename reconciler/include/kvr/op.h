/*
 * Object-level operations: what one plan step does to the cloud, with its values. The passes in
 * plan/ fill every step's operations from (desired, live, now); the executor hands them one at
 * a time to a provider (kvr/provider.h), which turns each into the requests it stands for and
 * nothing else. A provider needs no plan, no step and no desired state to carry one out: every
 * value it sends is here (or, for secret values, the source to take it from), so what a reviewer
 * approves in a plan is what runs.
 *
 * Identifiers are the cloud's: a vault by subscription, resource group and name; an app by its
 * object id (Graph) and display name (messages); a principal by its object id. A value that only
 * the run can know (the service principal of an app the same plan creates) is one of the
 * KVR_PLAN_* placeholders below; a step holding one always depends on the step that makes the
 * value, and the executor re-plans before it runs, so a provider never receives a placeholder
 * (kvr_op_resolved checks it).
 *
 * All strings are borrowed from their owner (a plan's string pool); nothing here is a secret.
 */
#ifndef KVR_OP_H
#define KVR_OP_H

#include "kvr/model.h"

/*
 * Values a plan shows that only its run can know; a saved plan's step with one of them allows
 * the run's value (kvr_saved_plan_allows).
 */
#define KVR_PLAN_NEW_VERSION "(the version made by this plan)"
#define KVR_PLAN_WHEN_RELEASED "(when no profile in Applying or Used uses it)"
#define KVR_PLAN_NEW_PRINCIPAL "(the service principal of app made by this plan)"
#define KVR_PLAN_NEW_APP "(the app made by this plan)"

typedef enum kvr_op_kind {
    KVR_OP_VAULT_PUT = 0,    /* create a vault (and its resource group when missing) */
    KVR_OP_VAULT_RECOVER,    /* recover a soft-deleted vault (createMode recover) */
    KVR_OP_VAULT_PATCH,      /* change a vault's properties and/or its tags */
    KVR_OP_VAULT_POLICY_EDIT,/* add or remove access-policy entries/permissions */
    KVR_OP_VAULT_DELETE,     /* soft-delete a vault */
    KVR_OP_APP_UPSERT,       /* create or update an application by display name */
    KVR_OP_SP_UPSERT,        /* create the service principal of an application */
    KVR_OP_PASSWORD_ADD,     /* add a client secret and store it in a vault secret */
    KVR_OP_PASSWORD_REMOVE,  /* remove a client secret by key id */
    KVR_OP_ROLE_ASSIGN,      /* assign a role to a principal at a scope */
    KVR_OP_ROLE_REMOVE,      /* remove a role assignment by name */
    KVR_OP_KEY_CREATE,       /* create a key, or a new version of it */
    KVR_OP_KEY_PATCH,        /* change a key version's operations, enabled state or expiry */
    KVR_OP_KEY_ROTATION_POLICY, /* put a key's rotation policy */
    KVR_OP_TAG_SET,          /* set one tag on a key version or a secret's latest version */
    KVR_OP_OBJECT_DELETE,    /* soft-delete a key or a secret */
    KVR_OP_OBJECT_RECOVER,   /* recover a soft-deleted key or secret */
    KVR_OP_SECRET_SET,       /* write a secret's value from its source */
    KVR_OP_SECRET_PATCH,     /* change a secret's content type and tags */
    KVR_OP_SECRET_COPY,      /* copy a secret (its latest or every enabled version) */
    KVR_OP_CERT_COPY,        /* copy a certificate with its private key */
    KVR_OP_PROFILE_PUT,      /* create a profile, or set its client credentials */
    KVR_OP_PROFILE_APPLY,    /* make a profile the active one */
    KVR_OP_PROFILE_DELETE,   /* delete a profile */
    KVR_OP_APP_TAGS,         /* set an application's tags (the whole list) */
    KVR_OP_APP_DELETE,       /* delete an application (Entra keeps it restorable 30 days) */
    KVR_OP_APP_RESTORE,      /* restore a deleted application (directory deleted items) */
} kvr_op_kind;

#define KVR_OP_KIND_COUNT (KVR_OP_APP_RESTORE + 1)

/* Key Vault object collections an operation can name. */
typedef enum kvr_op_collection { KVR_COLL_KEYS = 0, KVR_COLL_SECRETS } kvr_op_collection;

/* One access-policy entry: a principal and its permissions per family. */
typedef struct kvr_op_policy {
    const char *object_id; /* the principal's object id */
    const char *who;       /* for messages: the app's display name */
    kvr_strlist keys, secrets, certificates;
} kvr_op_policy;

/* A vault by its ARM identity. */
typedef struct kvr_op_vault_ref {
    const char *subscription;
    const char *resource_group;
    const char *name;
} kvr_op_vault_ref;

/* The properties a vault PUT or PATCH sets. */
typedef struct kvr_op_vault_props {
    const char *location;  /* PUT and RECOVER only */
    kvr_sku sku;
    bool rbac;
    int soft_delete_days;  /* PUT only */
    bool purge_protection; /* true is sent; false is left out (Azure accepts only true) */
    kvr_network network;   /* network.set: networkAcls and publicNetworkAccess are sent */
} kvr_op_vault_props;

/* Where a secret value comes from (the value itself never is in an operation). */
typedef enum kvr_op_value_kind {
    KVR_OP_VALUE_GENERATE = 0, /* length characters of charset, from a CSPRNG */
    KVR_OP_VALUE_ENV,          /* environment variable env */
    KVR_OP_VALUE_FILE,         /* file path (already confined by the loader) */
    KVR_OP_VALUE_STORED,       /* the latest value of vault secret (vault, secret) */
} kvr_op_value_kind;

typedef struct kvr_op_value {
    kvr_op_value_kind kind;
    int length;
    kvr_charset charset;
    const char *env;
    const char *path;
    const char *vault, *secret;
    const char *marker; /* the value's keyed marker, when the plan compared it (NULL: not) */
} kvr_op_value;

typedef struct kvr_op {
    kvr_op_kind kind;
    union {
        /* VAULT_PUT, VAULT_RECOVER, VAULT_PATCH, VAULT_DELETE */
        struct {
            kvr_op_vault_ref ref;
            kvr_op_vault_props props; /* PUT, RECOVER (location, sku), PATCH with set_props */
            bool set_props;           /* PATCH: send properties (else tags only) */
            bool set_tags;            /* PUT, PATCH: send tags (all of them: a PATCH replaces) */
            kvr_tags tags;
            kvr_op_policy *policies; /* PUT: access-policy entries (access-policy vaults) */
            size_t npolicies;
            /* PUT of an access-policy vault: also an entry for the identity the provider runs
               as (data-plane rights to manage keys and secrets; no purge) unless one of
               `policies` is for it already */
            bool self_access;
        } vault;
        /* VAULT_POLICY_EDIT: the entries' permissions are added ("add") or taken away
           ("remove"); other principals' entries and permissions are never touched */
        struct {
            kvr_op_vault_ref ref;
            bool remove;
            kvr_op_policy *entries;
            size_t nentries;
        } policy;
        /* APP_UPSERT: by display name (the provider derives a stable unique name from it) */
        struct {
            const char *display_name;
            const char *audience; /* signInAudience */
            kvr_strlist tags;     /* on a new app: this estate's marker */
        } app;
        /* APP_TAGS: the complete list (a Graph PATCH replaces it). APP_DELETE: by object id;
           one already gone is fine. APP_RESTORE: by object id, from the deleted items. */
        struct {
            const char *object_id;
            const char *name; /* display name, for messages */
            kvr_strlist tags;
        } app_tags;
        /* SP_UPSERT */
        struct {
            const char *app_id;
            const char *display_name; /* for messages */
        } sp;
        /* PASSWORD_ADD: addPassword on the app, then at once the secret text into
           (store_vault, store_secret) tagged KVR_TAG_CREDENTIAL=<keyId>; if storing fails,
           the new password is removed. The text never leaves the provider.
           PASSWORD_REMOVE: removePassword key_id. */
        struct {
            const char *app_object_id;
            const char *app_name; /* display name, for messages */
            const char *display_name; /* PASSWORD_ADD: "kvr:<credential>" */
            int64_t end;              /* PASSWORD_ADD: endDateTime, Unix s */
            const char *store_vault, *store_secret;
            const char *key_id; /* PASSWORD_REMOVE */
        } password;
        /* ROLE_ASSIGN: a deterministic assignment name from (scope, role, principal); a
           principal the directory has not replicated yet is waited for (bounded).
           ROLE_REMOVE: by name; one already gone is fine. */
        struct {
            const char *scope; /* "/subscriptions/…/vaults/V[/keys/K]" */
            const char *role_id; /* role definition GUID */
            const char *role_name; /* for messages ("Key Vault Crypto User"); may be NULL */
            const char *principal_id;
            const char *principal_name; /* for messages */
            const char *name; /* ROLE_REMOVE: the assignment's GUID */
        } role;
        /* KEY_CREATE: POST create (a new key, or a new version of it; not retried after an
           ambiguous failure) and then, with set_rotation, the rotation policy.
           KEY_ROTATION_POLICY: the policy alone. */
        struct {
            const char *vault, *name;
            const char *kty;
            int size;          /* RSA; 0: none */
            const char *curve; /* EC; NULL: none */
            unsigned ops;      /* KVR_OP_ENCRYPT… bits (model.h) */
            kvr_tags tags;     /* with the generation tag when there is one */
            bool set_rotation;
            kvr_rotation rotation;
        } key;
        /* KEY_PATCH: the version (NULL: latest); each set_* sends that attribute */
        struct {
            const char *vault, *name, *version;
            bool set_ops;
            unsigned ops;
            bool set_enabled;
            bool enabled;
            bool set_exp;
            int64_t exp;
        } key_patch;
        /* TAG_SET: read the object's tags, set one, write them back */
        struct {
            kvr_op_collection collection;
            const char *vault, *name, *version; /* version NULL: the latest */
            const char *tag, *value;
        } tag;
        /* OBJECT_DELETE, OBJECT_RECOVER */
        struct {
            kvr_op_collection collection;
            const char *vault, *name;
        } object;
        /* SECRET_SET: the value from `value`, with content type and tags (all of them) */
        struct {
            const char *vault, *name;
            const char *content_type; /* NULL: none */
            kvr_tags tags;
            kvr_op_value value;
        } secret;
        /* SECRET_PATCH */
        struct {
            const char *vault, *name;
            const char *content_type;
            kvr_tags tags;
        } secret_patch;
        /* SECRET_COPY: from (from, name) to (to, to_name or name), the latest version with its
           content type and tags, or with all_versions every enabled version oldest first.
           CERT_COPY: a certificate with its policy and tags (its key must be exportable). */
        struct {
            const char *from, *to, *name;
            const char *to_name; /* NULL: name (a credential's stored copy may be renamed) */
            const char *content_type;
            bool all_versions;
        } copy;
        /* PROFILE_PUT: create (with the key) or, without create, set the credentials; the
           client secret is read by the provider from (secret_vault, secret_name).
           PROFILE_APPLY, PROFILE_DELETE: by name. */
        struct {
            const char *name;
            bool create;
            const char *client_id;
            const char *credential; /* metadata kvr-credential */
            const char *secret_vault, *secret_name;
            const char *key_vault, *key_name, *key_version;
        } profile;
    } u;
} kvr_op;

const char *kvr_op_kind_name(kvr_op_kind k);

/* True when no value of `op` is a KVR_PLAN_* placeholder (it can be carried out). */
bool kvr_op_resolved(const kvr_op *op);

/*
 * The JSON form of an operation: {"op": NAME, ...every value it sends}, compact, keys sorted.
 * With `approval`, values that follow the clock of the run (a client secret's end date, the
 * expiry set on a disabled version, the time in a superseded-at tag) are left out: what a
 * reviewer approves is the operation, and the run fills them from the service's clock then.
 * *out is the caller's (free); KVR_ENOMEM.
 */
int kvr_op_to_json(char **out, const kvr_op *op, bool approval, kvr_error *err);

#endif
