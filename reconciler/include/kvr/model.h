/*
 * The desired state of an estate (schema v1, see docs/desired-state.md) and its loader.
 *
 * The loader reads YAML files and directories, checks every rule of the schema and every
 * cross-reference, and reports all problems as positioned diagnostics. A loaded estate is
 * immutable and owns all its strings; positions point at the YAML that declared each object.
 */
#ifndef KVR_MODEL_H
#define KVR_MODEL_H

#include "kvr/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where an object was declared. `file` is owned by the estate. */
typedef struct kvr_pos {
    const char *file;
    unsigned line;
    unsigned col;
} kvr_pos;

typedef struct kvr_tag {
    char *key;
    char *value;
} kvr_tag;

typedef struct kvr_tags {
    kvr_tag *items;
    size_t len;
} kvr_tags;

typedef struct kvr_strlist {
    char **items;
    size_t len;
} kvr_strlist;

typedef enum kvr_sku { KVR_SKU_STANDARD = 0, KVR_SKU_PREMIUM } kvr_sku;

/* The access-policy permissions of each family as Azure spells them (2024-11-01 spec,
   Permissions), "all" last; NULL-terminated. The loader accepts these, the plan compares with
   them. */
extern const char *const kvr_key_permissions[];
extern const char *const kvr_secret_permissions[];
extern const char *const kvr_certificate_permissions[];

typedef struct kvr_access_policy {
    kvr_pos pos;
    char *app;
    kvr_strlist keys;
    kvr_strlist secrets;
    kvr_strlist certificates;
} kvr_access_policy;

typedef struct kvr_network {
    bool set;
    char *default_action; /* "Allow" or "Deny"; NULL means Allow */
    char *bypass;         /* "AzureServices" or "None"; NULL means AzureServices */
    char *public_access;  /* "Enabled" or "Disabled"; NULL means Enabled */
    kvr_strlist ip_rules;
    kvr_strlist vnet_rules;
} kvr_network;

typedef enum kvr_copy_secrets {
    KVR_COPY_LATEST = 0,
    KVR_COPY_ALL,
    KVR_COPY_NONE,
} kvr_copy_secrets;

typedef struct kvr_copy_from {
    kvr_pos pos;
    char *vault; /* NULL when the vault is not a relocation target */
    kvr_copy_secrets secrets;
    bool certificates;
} kvr_copy_from;

/*
 * `acknowledgeDependents`: the only way to retire an object that an Azure resource outside the
 * estate still uses (kvr_live_dependent). Each entry names the dependent by resource id and the
 * object whose retirement it accepts: a key (its versions and the key), a secret, or, with
 * neither, the vault itself.
 */
typedef struct kvr_dependent_ack {
    kvr_pos pos;
    char *resource_id;
    char *key;    /* NULL: not a key */
    char *secret; /* NULL: not a secret; both NULL: the vault */
} kvr_dependent_ack;

/* What a plan does with keys, secrets and certificates of a declared vault that the desired state
   does not declare (`unmanaged:`). */
typedef enum kvr_unmanaged {
    KVR_UNMANAGED_REPORT = 0, /* listed in every plan output, never touched */
    KVR_UNMANAGED_IGNORE,     /* not listed (nor read) */
    KVR_UNMANAGED_RETIRE,     /* soft-deleted after retention.keys, never purged */
} kvr_unmanaged;

typedef struct kvr_vault {
    kvr_pos pos;
    char *name;
    char *resource_group;
    char *location;
    kvr_sku sku;
    bool rbac;
    kvr_access_policy *policies;
    size_t npolicies;
    int soft_delete_days;
    bool purge_protection;
    kvr_network network;
    kvr_tags tags;
    kvr_copy_from copy_from;
    bool retire;
    kvr_unmanaged unmanaged;
    kvr_dependent_ack *acks; /* acknowledgeDependents */
    size_t nacks;
} kvr_vault;

typedef struct kvr_credential {
    kvr_pos pos;
    char *name;
    int64_t lifetime; /* seconds */
    int64_t overlap;  /* seconds */
    char *store_vault;
    char *store_secret;
} kvr_credential;

/*
 * credentialRotation: kvreconcile names and mints the generations itself. A new one (named by
 * the service's date, "YYYY-MM-DD", lifetime every + overlap, stored in secretPrefix-<name>) when
 * the newest is `every` old; the one before stays declared for `overlap` after that. Profiles and
 * fromAppCredential secrets name it as KVR_CRED_LATEST. The plan turns this into `creds`
 * (kvr_plan_resolve); the loaded estate has none.
 */
#define KVR_CRED_LATEST "latest"
typedef struct kvr_credential_rotation {
    bool set;
    kvr_pos pos;
    int64_t every;   /* seconds */
    int64_t overlap; /* seconds */
    char *store_vault;
    char *secret_prefix;
} kvr_credential_rotation;

typedef struct kvr_app {
    kvr_pos pos;
    char *name;
    char *display_name;
    char *sign_in_audience;
    kvr_credential *creds;
    size_t ncreds;
    kvr_credential_rotation rotation;
} kvr_app;

/* A role assignment's texts are in the estate's kvr_estate.shared: never free one. */
typedef struct kvr_role_assignment {
    kvr_pos pos;
    char *app;
    char *role;    /* as written */
    char *role_id; /* role definition GUID, lower case */
    char *vault;
    char *key; /* NULL: the whole vault */
} kvr_role_assignment;

typedef enum kvr_key_type {
    KVR_KEY_RSA = 0,
    KVR_KEY_RSA_HSM,
    KVR_KEY_EC,
    KVR_KEY_EC_HSM,
} kvr_key_type;

/* Key operations, as a bit set. */
enum {
    KVR_OP_ENCRYPT = 1 << 0,
    KVR_OP_DECRYPT = 1 << 1,
    KVR_OP_SIGN = 1 << 2,
    KVR_OP_VERIFY = 1 << 3,
    KVR_OP_WRAP = 1 << 4,
    KVR_OP_UNWRAP = 1 << 5,
};

/* Rotation policy; a duration of 0 means "not set". */
typedef struct kvr_rotation {
    bool set;
    int64_t every;
    int64_t before_expiry;
    int64_t expires_after;
    int64_t notify_before;
} kvr_rotation;

/* A key's texts but its tags are in the estate's kvr_estate.shared: never free one. */
typedef struct kvr_key {
    kvr_pos pos;
    char *vault;
    char *name;
    kvr_key_type type;
    int size;    /* RSA */
    char *curve; /* EC */
    unsigned ops;
    kvr_rotation rotation;
    char *generation; /* NULL: no particular generation wanted */
    kvr_tags tags;
} kvr_key;

typedef enum kvr_secret_source {
    KVR_SECRET_GENERATE = 0,
    KVR_SECRET_FROM_ENV,
    KVR_SECRET_FROM_FILE,
    KVR_SECRET_FROM_APP_CREDENTIAL,
    KVR_SECRET_EXTERNAL, /* `external: true`: the value is managed outside this repository; it
                            is never read, compared or written */
} kvr_secret_source;

typedef enum kvr_charset {
    KVR_CHARSET_ALNUM = 0,
    KVR_CHARSET_ALNUM_SYMBOLS,
    KVR_CHARSET_HEX,
    KVR_CHARSET_BASE64URL,
} kvr_charset;

/* A secret's vault, name and contentType are in the estate's kvr_estate.shared: never free one. */
typedef struct kvr_secret {
    kvr_pos pos;
    char *vault;
    char *name;
    char *content_type;
    kvr_tags tags;
    kvr_secret_source source;
    int gen_length;
    kvr_charset gen_charset;
    char *env_name;  /* FROM_ENV */
    char *file_path; /* FROM_FILE, resolved against the declaring file's directory */
    char *app;       /* FROM_APP_CREDENTIAL */
    char *credential;
} kvr_secret;

typedef struct kvr_profile {
    kvr_pos pos;
    char *name;
    char *vault;
    char *key;
    char *key_version; /* NULL: latest */
    char *app;
    char *credential;
} kvr_profile;

typedef struct kvr_retention {
    int64_t keys;
    int64_t profiles;
    int64_t app_secrets;
    int64_t vaults;
} kvr_retention;

typedef struct kvr_cloud {
    char *name; /* AzurePublicCloud, AzureUSGovernment, AzureChinaCloud, custom; NULL: public */
    char *authority_host;
    char *resource_manager;
    char *graph;
    char *vault_suffix;
    char *profile_service;
} kvr_cloud;

/*
 * Where runs on several machines take turns (the `lock:` block): a lease on a blob in Azure
 * Storage (backend "azureblob"). All NULL when the estate declares none; then the lock is the
 * local file lock. Environment variables override each field (the CLI applies them).
 */
typedef struct kvr_lock_config {
    char *storage_account; /* 3-24 lowercase letters and digits */
    char *container;       /* 3-63: lowercase letters, digits, single hyphens */
    char *blob;            /* NULL: "kvreconcile.lock" */
    char *endpoint;        /* blob endpoint; NULL: https://<account>.blob.core.windows.net */
    kvr_pos pos;           /* where the block is */
} kvr_lock_config;

typedef struct kvr_estate {
    char *subscription;
    kvr_cloud cloud;
    kvr_lock_config lock;
    kvr_vault *vaults;
    size_t nvaults;
    kvr_app *apps;
    size_t napps;
    kvr_role_assignment *roles;
    size_t nroles;
    kvr_key *keys;
    size_t nkeys;
    kvr_secret *secrets;
    size_t nsecrets;
    kvr_profile *profiles;
    size_t nprofiles;
    char *active; /* NULL when the estate declares no profiles */
    kvr_pos active_pos;
    kvr_retention retention;
    kvr_strlist files; /* every file that was read, in order */
    /* The texts of the estate's most numerous objects (role assignments, keys, secrets; see
       each), freed together: the ones that many objects repeat (a vault's name, a role, a
       contentType) one copy each (kvr_strset_get), names each a copy in the set's pool. A
       million names are then not a million mallocs of 32 bytes and more. */
    kvr_strset shared;
    /* Lookup tables of the kvr_estate_* functions, built by the loader; NULL: they search
       linearly. Internal to the model module. */
    struct kvr_estate_index *index;
} kvr_estate;

/* Hard limits on input, so that hostile files cannot take unbounded time or memory. */
#define KVR_MODEL_MAX_FILE_BYTES (16u << 20)
#define KVR_MODEL_MAX_TOTAL_BYTES (256u << 20)
#define KVR_MODEL_MAX_FILES 10000u
#define KVR_MODEL_MAX_DEPTH 64u

/*
 * Loads the estate from files and directories (walked recursively for *.yaml and *.yml; hidden
 * entries skipped; symlinks followed, loops detected).
 *
 * On success returns 0 and *out is the caller's (kvr_estate_free). When the input is invalid,
 * returns KVR_ECONFIG, *out stays NULL and every problem is in diags (sorted). Other negative
 * codes (KVR_ENOMEM) also leave a diagnostic.
 */
int kvr_model_load(kvr_estate **out, const char *const *paths, size_t npaths, kvr_diags *diags);

/* Options of kvr_model_load_with. Zero-initialise. */
typedef struct kvr_model_options {
    /* Directories besides the repository where a secret's 'fromFile' may point (a mounted
       secrets volume): --allow-files-under. Borrowed. */
    const char *const *allow_dirs;
    size_t nallow_dirs;
} kvr_model_options;

/*
 * kvr_model_load with options (`opts` may be NULL). A secret's 'fromFile' must resolve (through
 * '..', absolute paths and symbolic links, with realpath) to a file inside the repository root
 * (the directory given, or the deepest directory holding every path given) or inside one of
 * opts->allow_dirs; otherwise it is a positioned error. On success each secret's file_path is
 * the resolved absolute path, which the executor opens with O_NOFOLLOW. kvr_model_load is this
 * with no options.
 */
int kvr_model_load_with(kvr_estate **out, const char *const *paths, size_t npaths,
                        const kvr_model_options *opts, kvr_diags *diags);

/*
 * Loads one in-memory YAML text as if it were the file `name` (for tests and fuzzing).
 * Relative paths in it resolve against the current directory; 'fromFile' is not confined
 * (a buffer has no repository).
 */
int kvr_model_load_buffer(kvr_estate **out, const char *name, const char *data, size_t size,
                          kvr_diags *diags);

void kvr_estate_free(kvr_estate *e);

/* Lookups by name (case-insensitive where Azure is). Borrowed pointers, or NULL; the first
   declaration when a name is declared twice. O(1) on an estate from the loader. */
const kvr_vault *kvr_estate_vault(const kvr_estate *e, const char *name);
const kvr_app *kvr_estate_app(const kvr_estate *e, const char *name);
const kvr_key *kvr_estate_key(const kvr_estate *e, const char *vault, const char *name);
const kvr_secret *kvr_estate_secret(const kvr_estate *e, const char *vault, const char *name);
const kvr_profile *kvr_estate_profile(const kvr_estate *e, const char *name);
const kvr_credential *kvr_app_credential(const kvr_app *app, const char *name);

/* Built-in Key Vault roles: the GUID for a role name (case-insensitive), or NULL. */
const char *kvr_model_role_id(const char *name);
/* The built-in role name for a GUID, or NULL. */
const char *kvr_model_role_name(const char *guid);
/* Does built-in role `role_id` (a GUID) allow wrapKey and unwrapKey? */
bool kvr_model_role_can_wrap(const char *role_id);

const char *kvr_key_type_name(kvr_key_type t);

/* ---- the other direction: an estate written as YAML (export) ----------------------------- */

/* What a rendering holds; an estate is usually written as several files. */
enum {
    KVR_YAML_TOP = 1 << 0, /* subscription, cloud, retention */
    KVR_YAML_VAULTS = 1 << 1,
    KVR_YAML_APPS = 1 << 2,
    KVR_YAML_ROLES = 1 << 3,
    KVR_YAML_KEYS = 1 << 4,
    KVR_YAML_SECRETS = 1 << 5,
    KVR_YAML_PROFILES = 1 << 6, /* with `active` */
};

/* A comment in a rendering: `text` (lines separated by '\n', without '#') before item `index`
   of list `section` ("vaults", "apps", "roleAssignments", "keys", "secrets", "profiles"), or
   after its last item with index SIZE_MAX; section "active" index 0 precedes `active`, section
   "" index SIZE_MAX ends the file. Borrowed. */
typedef struct kvr_yaml_note {
    const char *section;
    size_t index;
    const char *text;
} kvr_yaml_note;

/*
 * Writes the chosen sections of `e` as one YAML document, after `preamble` (written as is, may
 * be NULL): objects in the estate's order, strings quoted wherever the loader would read them
 * otherwise, durations as the loader reads them. Loading the text gives the same model. Pure:
 * the same input gives the same bytes. *out is the caller's (free); 0 or KVR_ENOMEM.
 */
int kvr_model_write_yaml(char **out, const kvr_estate *e, unsigned sections, const char *preamble,
                         const kvr_yaml_note *notes, size_t nnotes);

/* A duration as the writer puts it: the largest of d, h, m, s that divides it ("90d"). */
void kvr_model_duration_text(char *buf, size_t size, int64_t seconds);

#endif
