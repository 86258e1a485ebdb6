/*
 * Providers: read the live state of an estate from Azure (ARM, Microsoft Graph, the Key Vault
 * data plane) and the profile service, into the live model the plan compares with.
 *
 * Reading is split in two: pure converters from the services' JSON to live objects (unit-tested
 * on the documented shapes), and the fetch, which asks only for what a scope names (vaults, their
 * keys and secrets, apps, the profiles: kvr/provider.h) and nothing else.
 */
#ifndef KVR_PROVIDERS_H
#define KVR_PROVIDERS_H

#include <jansson.h>

#include "kvr/azure.h"
#include "kvr/live.h"
#include "kvr/model.h"
#include "kvr/provider.h"
#include "kvr/values.h"

/* Service endpoints. Strings are owned (kvr_endpoints_release). */
typedef struct kvr_endpoints {
    char *arm;          /* "https://management.azure.com" */
    char *graph;        /* "https://graph.microsoft.com" */
    char *vault_suffix; /* "vault.azure.net" (with ":port" for a simulator) */
    char *profiles;     /* the profile service; NULL when unknown */
} kvr_endpoints;

/*
 * Resolves endpoints: the cloud's well-known ones (cloud->name, default AzurePublicCloud), then
 * the estate's `cloud:` fields, then the environment (KVR_ARM_ENDPOINT, KVR_GRAPH_ENDPOINT,
 * KVR_VAULT_SUFFIX, KVR_PROFILE_ENDPOINT), which wins so that a pipeline can aim the same
 * repository at another cloud. Every URL must be https.
 */
int kvr_endpoints_resolve(kvr_endpoints *out, const kvr_cloud *cloud, kvr_error *err);
void kvr_endpoints_release(kvr_endpoints *ep);

/*
 * Secret values one run has read back (a relocation's copies, read while Key Vault holds the
 * next writes), as markers under that run's marker key, so that the run's next read of the
 * estate need not fetch them again while they are provably current: the listing shows the same
 * `updated` second as the version read back, and that second lies more than 2 s (the service's
 * clock skew) before the Date of the read back. A value changed after the read back carries a
 * later `updated`, so it is fetched again. The memo belongs to one run and one marker key.
 */
typedef struct kvr_value_memo kvr_value_memo;

int kvr_value_memo_new(kvr_value_memo **out, kvr_error *err);
void kvr_value_memo_free(kvr_value_memo *m); /* NULL: no-op; markers wiped */

/*
 * Reads the latest values of the n secrets (vaults[i], names[i]) at once, one try each, and
 * records their markers under `mk`. Returns how many were recorded (whatever did not answer 200
 * is left to the next read of the estate), or KVR_ENOMEM. Values are wiped at once.
 */
int kvr_value_memo_read(kvr_value_memo *m, kvr_auth *a, const kvr_endpoints *ep,
                        const char *const *vaults, const char *const *names, size_t n,
                        const kvr_marker_key *mk, kvr_error *err);

/* Records the marker of (vault, name) as read at service time `read_at` (the read's Date), the
   version read being `updated`; replaces an earlier record. 0 or KVR_ENOMEM. */
int kvr_value_memo_put(kvr_value_memo *m, const char *vault, const char *name, const char *marker,
                       int64_t updated, int64_t read_at);

/* The recorded marker of (vault, name) if it is provably that of the version listing `item`
   (a SecretItem, borrowed) stands for, else NULL (m may be NULL). Borrowed from m. */
const char *kvr_value_memo_current(const kvr_value_memo *m, const char *vault, const char *name,
                                   const json_t *item);

/*
 * Reads the live state of what `scope` names (kvr_plan_read_scope makes the scope of a desired
 * state) in scope->subscription: its vaults (and soft-deleted vaults holding their names), the
 * role assignments on them, their keys (versions; rotation policies where the scope compares
 * them), secrets, and certificates where compared; deleted keys and secrets when a declared name
 * is missing; the apps with their service principals and password credentials; every profile
 * when asked. Keys nobody names are read only where kvreconcile made them or a profile uses
 * them. With scope->everything (export), every key's rotation policy and every vault's
 * certificates too. Secret values are read only where the scope compares them (and, between a
 * relocation's vaults, where both hold the name), taken from `memo` (NULL: none) where it holds
 * the current version, and become markers under `mk` at once.
 *
 * `now` of the result is the service's clock (the Date of the first ARM response). On failure
 * *out stays NULL and err names the operation, the object, the HTTP status and Azure's error.
 */
int kvr_live_read_scope(kvr_live **out, kvr_auth *a, const kvr_endpoints *ep,
                        const kvr_scope *scope, const kvr_marker_key *mk,
                        const kvr_value_memo *memo, kvr_error *err);

/* ---- discovery: the live estate with no desired state (export) ----------------------------- */

/* What to export: every vault of the subscription, or of these resource groups, or these vaults
   (all borrowed); the encryption profiles too with `profiles`. */
typedef struct kvr_export_filter {
    const char *const *groups;
    size_t ngroups;
    const char *const *vaults;
    size_t nvaults;
    bool profiles;
} kvr_export_filter;

/* Told after each share of vaults read: `done` of `total` (first with done 0). */
typedef void (*kvr_progress_fn)(void *arg, size_t done, size_t total);

/* A vault found: what the live model does not keep of it (all owned). */
typedef struct kvr_found_vault {
    char *name;
    kvr_network network; /* properties.networkAcls and publicNetworkAccess; set: any given */
    size_t part;         /* the part of the discovery that holds its live state */
} kvr_found_vault;

/* A principal named by a role assignment on a found vault or by its access policies. */
typedef struct kvr_found_principal {
    char *object_id;
    char *app_id;       /* the application's, when it is an application's service principal */
    char *display_name; /* the application's display name, or the principal's; NULL: not found */
    char *type;         /* servicePrincipalType; NULL: no service principal (a user, a group) */
} kvr_found_principal;

typedef struct kvr_discovery {
    /* live states; the last one holds the apps, the profiles, and the role assignments listed
       on the vaults: at a vault or a key, and above them (groups, the subscription) */
    kvr_live **parts;
    size_t nparts;
    kvr_found_vault *vaults; /* sorted by name, case-insensitively */
    size_t nvaults;
    kvr_found_principal *principals; /* sorted by object id */
    size_t nprincipals;
} kvr_discovery;

/*
 * Finds the vaults `f` selects, the role assignments on them and their keys, the principals
 * those and the vaults' access policies name, then reads them with the plan's reader
 * (kvr_live_read_scope, with `everything`): keys with versions and rotation policies, secrets
 * (never values), certificates, the applications of those principals with their service
 * principals and password credentials, and with f->profiles every encryption profile. On failure
 * *out is released and err names the request.
 */
int kvr_discover(kvr_discovery *out, kvr_auth *a, const kvr_endpoints *ep, const char *sub,
                 const kvr_export_filter *f, kvr_progress_fn progress, void *arg, kvr_error *err);
void kvr_discovery_release(kvr_discovery *d);

/* "Mon, 23 Nov 2026 10:00:00 GMT" -> Unix seconds; KVR_EINVAL when malformed. */
int kvr_time_parse_http(int64_t *out, const char *text);

/* ---- pure converters: service JSON (borrowed) -> live objects (appended to l) ------------ */

int kvr_live_add_vault(kvr_live *l, const json_t *vault, kvr_error *err);
int kvr_live_add_deleted_vault(kvr_live *l, const json_t *deleted, kvr_error *err);
int kvr_live_add_role(kvr_live *l, const json_t *assignment, kvr_error *err);
/* The same from its fields (role_id: the definition's GUID, lowercase), copied into l. */
int kvr_live_put_role(kvr_live *l, const char *name, const char *scope, const char *role_id,
                      const char *principal_id, kvr_error *err);
/* An application with its service principal (sp may be NULL). */
int kvr_live_add_app(kvr_live *l, const json_t *app, const json_t *sp, kvr_error *err);
/* A key: its latest KeyBundle, its versions (KeyItem list), its rotation policy (may be NULL). */
int kvr_live_add_key(kvr_live *l, const char *vault, const json_t *bundle, const json_t *versions,
                     const json_t *policy, kvr_error *err);
/* A secret from its SecretItem; marker is the keyed marker of its value, or NULL if not read. */
int kvr_live_add_secret(kvr_live *l, const char *vault, const json_t *item, const char *marker,
                        kvr_error *err);
int kvr_live_add_certificate(kvr_live *l, const char *vault, const json_t *item, kvr_error *err);
/* A key known by its name only (listed; nothing reads it). */
int kvr_live_add_unread_key(kvr_live *l, const char *vault, const char *name, kvr_error *err);
int kvr_live_add_deleted(kvr_live *l, const char *vault, const char *kind, const json_t *item,
                         kvr_error *err);
int kvr_live_add_profile(kvr_live *l, const json_t *profile, kvr_error *err);

/* The last path segment of a Key Vault or ARM identifier ("…/keys/k1/abc" -> "abc"). */
const char *kvr_id_last(const char *id, char *buf, size_t size);

/* RFC 3339 / ISO 8601 UTC ("2026-11-23T10:00:00Z", fractions and offsets allowed) -> Unix s. */
int kvr_time_parse_iso(int64_t *out, const char *text);

/* ---- the provider: the table of kvr/provider.h over Azure ---------------------------------- */

/*
 * A new Azure provider (kvr_provider_free). `a`, `ep` and `mk` are borrowed and must outlive it;
 * the tenant (read from the credential's ARM token on first need) and the memo of read-back
 * values are its own. apply refuses with KVR_EINVAL an operation kvr_op_resolved refuses.
 * KVR_ENOMEM.
 */
int kvr_azure_provider_new(kvr_provider **out, kvr_auth *a, const kvr_endpoints *ep,
                           const kvr_marker_key *mk, kvr_error *err);

#endif
