/*
 * Internal to the Azure provider: the API versions it speaks, the formatting helper, and what the
 * files of the write side (az_call.c, one file per service, provider_azure.c) share.
 */
#ifndef KVR_PROV_INTERNAL_H
#define KVR_PROV_INTERNAL_H

#include "kvr/util.h"

#define ARM_VAULTS_API "2024-11-01"
#define ARM_RG_API "2021-04-01"
#define ARM_ROLES_API "2022-04-01"
#define ARM_SUBS_API "2022-12-01"
#define KV_API "7.5"
#define PROFILES_API "2026-01-01"

/*
 * Discovery (dependents.c): appends to l->dependents every resource outside the estate that uses
 * a key or secret of a vault the scope names (one Resource Graph query, then each app's Key Vault
 * references). Anything unreadable is an error, never "none". kvr__dependents_query is the query.
 */
struct kvr_live;
struct kvr_scope;
struct kvr_endpoints;
struct kvr_auth;
int kvr__dependents_read(struct kvr_live *l, struct kvr_auth *a, const struct kvr_endpoints *ep,
                         const struct kvr_scope *sc, kvr_error *err);
extern const char kvr__dependents_query[];

/* kvr_asprintf that records KVR_ENOMEM in err when it fails. */
char *prov_fmt(kvr_error *err, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* ---- the write side: one kvr_op (az_call.c and one file per service) ---------------------- */

#include "kvr/azure.h"
#include "kvr/op.h"
#include "kvr/values.h"

struct kvr_endpoints;

/* What the provider brings to every operation: all borrowed but the tenant. */
typedef struct kvr__az {
    kvr_auth *auth;
    const struct kvr_endpoints *ep;
    char *tenant; /* the credential's tenant, from its ARM token on first need (kvr__az_tenant) */
} kvr__az;

/* Accepted statuses (0-terminated): 200; any 2xx an ARM or Graph write answers. */
extern const long kvr__ok200[];
extern const long kvr__ok2xx[];

/* kvr__call()'s own flag, above the engine's: send `Prefer: create-if-missing` (a Graph upsert) */
#define KVR__CALL_UPSERT (1u << 24)

/* Wipes a string that held a secret (jansson dumps, JSON string values) in place. */
void kvr__wipe_str(const char *s);

/*
 * Sends one request and checks its status. scope NULL: Key Vault (challenge flow). `body` is
 * borrowed and may hold a secret: its serialisation is wiped. `ok` lists accepted statuses;
 * any other is an error from Azure's answer naming `op` and `object`. `flags`: the engine's
 * KVR_HTTP_* and KVR__CALL_UPSERT. The response is left in *resp (initialised by the caller, who
 * releases it); *status (optional) gets its status.
 */
int kvr__send_checked(kvr__az *c, const char *scope, const char *method, const char *url,
                      json_t *body, unsigned flags, const long *ok, const char *op,
                      const char *object, kvr_http_response *resp, long *status, kvr_error *err);

/* One call, as kvr__send_checked makes it; *out (optional) gets the parsed response body. */
int kvr__call(kvr__az *c, const char *scope, const char *method, const char *url, json_t *body,
              unsigned flags, const long *ok, const char *op, const char *object, json_t **out,
              long *status, kvr_error *err);

/*
 * An ARM write that may be a long-running operation: sent as kvr__call does, then waited for
 * until it has finished (kvr_lro_wait), reading `resource_url` (NULL: only the status URLs).
 * An accepted error status (409) is not waited for: *out (optional) gets its body.
 */
int kvr__call_arm(kvr__az *c, const char *method, const char *url, const char *resource_url,
                  json_t *body, const long *ok, const char *op, const char *object, json_t **out,
                  long *status, kvr_error *err);

/* "ENDPOINT/.default" of ARM and Graph; "https://VAULT.SUFFIX". Caller frees; NULL: KVR_ENOMEM. */
char *kvr__arm_scope(kvr__az *c, kvr_error *err);
char *kvr__graph_scope(kvr__az *c, kvr_error *err);
char *kvr__vault_base(kvr__az *c, const char *vault, kvr_error *err);

/* Tags as a JSON object (a new reference; NULL when out of memory). */
json_t *kvr__tags_json(const kvr_tags *t);

/* A string claim ("tid", "oid") of the ARM token of the credential in use; *out is the caller's. */
int kvr__arm_claim(char **out, kvr_auth *a, const struct kvr_endpoints *ep, const char *claim,
                   kvr_error *err);

/* The credential's tenant (borrowed from c), read once. */
int kvr__az_tenant(const char **out, kvr__az *c, kvr_error *err);

/* kv_secrets.c: PUT a secret value (wiped from the body after sending) with content type (NULL:
   none) and tags (NULL: none; borrowed). */
int kvr__secret_put(kvr__az *c, const char *vault, const char *name, const unsigned char *value,
                    size_t len, const char *content_type, json_t *tags, kvr_error *err);

/* kv_secrets.c: GETs a secret's value (version NULL: the latest) into *out (the caller releases
   it with kvr_value_release) and, with `tags`, its tags (a new reference or NULL). */
int kvr__secret_get(kvr__az *c, const char *vault, const char *name, const char *version,
                    kvr_value *out, json_t **tags, kvr_error *err);

/* One file per service: each carries out the operations of its kinds (KVR_EINVAL for others). */
int kvr__arm_vaults_apply(kvr__az *c, const kvr_op *op, kvr_error *err);
int kvr__arm_roles_apply(kvr__az *c, const kvr_op *op, kvr_error *err);
int kvr__graph_apply(kvr__az *c, const kvr_op *op, kvr_error *err);
int kvr__kv_keys_apply(kvr__az *c, const kvr_op *op, kvr_error *err);
int kvr__kv_secrets_apply(kvr__az *c, const kvr_op *op, kvr_error *err);
int kvr__profiles_apply(kvr__az *c, const kvr_op *op, kvr_error *err);

#endif
