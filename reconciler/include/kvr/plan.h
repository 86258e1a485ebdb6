/*
 * The plan: what `apply` would do, as data. kvr_plan_build is a pure function of the desired
 * state, the live state and the service's clock: no network, no files, no environment. Steps
 * come ordered by their dependencies; each carries the gates that must be open before it may
 * run. Steps that would destroy something still able to decrypt data are never produced; they
 * appear as hold-backs with the reason.
 */
#ifndef KVR_PLAN_H
#define KVR_PLAN_H

#include "kvr/live.h"
#include "kvr/model.h"
#include "kvr/op.h"
#include "kvr/provider.h"

#include <stdio.h>

typedef enum kvr_step_kind {
    KVR_STEP_VAULT_CREATE = 0,
    KVR_STEP_VAULT_RECOVER,
    KVR_STEP_VAULT_UPDATE,
    KVR_STEP_VAULT_MARK_UNUSED,
    KVR_STEP_VAULT_RETIRE,
    KVR_STEP_APP_CREATE,
    KVR_STEP_SP_CREATE,
    KVR_STEP_CRED_ADD,
    KVR_STEP_CRED_REPLACE_ORPHAN,
    KVR_STEP_CRED_MARK_SUPERSEDED,
    KVR_STEP_CRED_REMOVE,
    KVR_STEP_ROLE_CREATE,
    KVR_STEP_KEY_CREATE,
    KVR_STEP_KEY_RECOVER,
    KVR_STEP_KEY_NEW_VERSION,
    KVR_STEP_KEY_UPDATE,
    KVR_STEP_KEY_POLICY,
    KVR_STEP_KEY_MARK_SUPERSEDED,
    KVR_STEP_KEY_VERSION_DISABLE,
    KVR_STEP_KEY_DELETE,
    KVR_STEP_SECRET_SET,
    KVR_STEP_SECRET_RECOVER,
    KVR_STEP_SECRET_UPDATE,
    KVR_STEP_SECRET_COPY,
    KVR_STEP_CERT_COPY,
    KVR_STEP_COPY_VERIFY,
    KVR_STEP_PROFILE_CREATE,
    KVR_STEP_PROFILE_SET_CREDENTIALS,
    KVR_STEP_PROFILE_APPLY,
    KVR_STEP_PROFILE_DELETE,
    KVR_STEP_KEY_VERSION_ENABLE, /* a version a profile in Applying or Used wraps with */
    KVR_STEP_ROLE_DELETE,        /* a role assignment of a declared app that is not declared */
    KVR_STEP_VAULT_ACCESS,       /* an access-policy entry of an app the plan creates first */
    KVR_STEP_CRED_MOVE_STORE,    /* a credential's stored copy, copied to its new storeIn */
    KVR_STEP_SECRET_MARK_SUPERSEDED, /* an unmanaged secret that `unmanaged: retire` retires */
    KVR_STEP_SECRET_DELETE,          /* ... soft-deleted once retention.keys has passed */
    KVR_STEP_APP_MARK_RETIRING, /* an app this estate registered left the YAML: tag since when */
    KVR_STEP_APP_RETIRE,        /* ... after retention.appSecrets: access and secrets, then it */
    KVR_STEP_APP_KEEP,          /* ... declared again before that: the mark is taken off */
    KVR_STEP_APP_RESTORE,       /* ... declared again after it was deleted: restored */
} kvr_step_kind;

/* How a step shows in a plan: + create, ~ change, - retire. */
typedef enum kvr_action { KVR_ACTION_CREATE = 0, KVR_ACTION_CHANGE, KVR_ACTION_RETIRE } kvr_action;

typedef enum kvr_gate_kind {
    KVR_GATE_PROFILE_USED = 0, /* a profile reports Used */
    KVR_GATE_RETENTION,        /* the retention period has passed on the service's clock */
    KVR_GATE_UNREFERENCED,     /* no profile Applying or Used references the object, and no
                                  Azure resource (kvr_live_dependent) unless acknowledged */
    KVR_GATE_ROLE_EFFECTIVE,   /* a new role assignment is proven to work */
    KVR_GATE_COPY_VERIFIED,    /* the relocation target holds everything the source did */
} kvr_gate_kind;

typedef struct kvr_gate {
    kvr_gate_kind kind;
    bool open;
    char *reason;     /* what it waits for, e.g. "profile 'bkp-2026-11' to become Used" */
    int64_t opens_at; /* service time when it opens; 0 if unknown or open */
} kvr_gate;

typedef struct kvr_change {
    char *field;
    char *from; /* NULL: not set */
    char *to;
    bool sensitive; /* from/to are markers ("(sensitive)"), never values */
} kvr_change;

typedef struct kvr_step {
    size_t id; /* 1-based, in execution order */
    kvr_step_kind kind;
    kvr_action action;
    char *vault;   /* the vault it belongs to, for grouping; NULL for directory objects */
    char *object;  /* e.g. "key 'backup-kek'" */
    char *summary; /* e.g. "create a new version for generation '2026-11'" */
    /* identity of what the executor acts on */
    char *name;
    char *version;
    char *extra;
    kvr_change *changes;
    size_t nchanges;
    size_t *deps; /* ids of steps that must run first */
    size_t ndeps;
    kvr_gate *gates;
    size_t ngates;
    kvr_pos pos; /* where the desired state asked for it (file NULL: implied) */
    /* what the step does, with its values, in order (kvr/op.h); strings are the plan's */
    kvr_op *ops;
    size_t nops;
} kvr_step;

typedef struct kvr_hold {
    char *vault;
    char *object;
    char *reason;
} kvr_hold;

/* Something a reviewer must know that no step does: a warning, or an error-level finding
   (what the service uses is failing now). Shown in every output; it changes no exit status. */
typedef enum kvr_finding_level { KVR_FINDING_WARNING = 0, KVR_FINDING_ERROR } kvr_finding_level;

typedef struct kvr_finding {
    kvr_finding_level level;
    char *vault; /* NULL for directory objects */
    char *object;
    char *message;
} kvr_finding;

/* A key, secret or certificate in a declared vault that the desired state does not declare and
   that no step of the plan changes: reported (`unmanaged: report`), or left by `unmanaged:
   retire` for the reason in `note`. */
typedef struct kvr_unmanaged_object {
    char *vault;
    char *kind; /* "key", "secret", "certificate" */
    char *name;
    char *note; /* NULL: reported only */
} kvr_unmanaged_object;

typedef struct kvr_plan {
    int64_t now;
    kvr_step *steps;
    size_t nsteps;
    kvr_hold *holds;
    size_t nholds;
    kvr_finding *findings;
    size_t nfindings;
    kvr_unmanaged_object *unmanaged; /* by vault, kind and name */
    size_t nunmanaged;
    /* memory of the steps' operations: their strings and arrays, freed with the plan */
    kvr_strpool opstrings;
    void **blocks;
    size_t nblocks, blocks_cap;
    /* The desired state the steps were planned from: the input's, with each credentialRotation
       made into its generations (kvr_app.creds) and "latest" into the newest one's name. NULL
       when no app rotates (then it is the input's). It borrows the input's strings and lookup
       tables: valid while the input estate lives. */
    kvr_estate *resolved;
} kvr_plan;

typedef struct kvr_plan_input {
    const kvr_estate *desired;
    const char *subscription; /* for role-assignment scopes; the estate's, else the caller's */
    const kvr_live *live;
    const kvr_value_digest *digests; /* may be NULL */
    size_t ndigests;
} kvr_plan_input;

/*
 * Builds the plan. On success *out is the caller's (kvr_plan_free). Fails with KVR_ENOMEM, or
 * KVR_ECONFIG when the desired state cannot be reached from the live one (a cycle, a vault
 * name held by a soft-deleted vault elsewhere, an immutable property changed); err says why.
 */
int kvr_plan_build(kvr_plan **out, const kvr_plan_input *in, kvr_error *err);

void kvr_plan_free(kvr_plan *p);

/* Counts for the summary line. */
typedef struct kvr_plan_summary {
    size_t create, change, retire, waiting;
} kvr_plan_summary;
void kvr_plan_summarize(const kvr_plan *p, kvr_plan_summary *out);

/* True if the step has a closed gate. */
bool kvr_step_waiting(const kvr_step *s);

const char *kvr_step_kind_name(kvr_step_kind k);

/* The ARM scope of a vault, or of one of its keys when `key` is not NULL:
   "/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/V[/keys/K]". */
void kvr_plan_scope(char *buf, size_t size, const char *sub, const char *rg, const char *vault,
                    const char *key);
const char *kvr_gate_kind_name(kvr_gate_kind k);

/*
 * The canonical form of an access policy's permissions, for comparing a desired policy with a
 * live one: per family, names lowercased, sorted and without duplicates, and "all" when the
 * family is granted in full (Azure's "all", or every permission of the family named):
 * "keys=get,unwrapkey,wrapkey secrets=all". "none" for no permission at all. Truncated to size.
 */
void kvr_plan_policy_canon(char *out, size_t size, const kvr_strlist *keys,
                           const kvr_strlist *secrets, const kvr_strlist *certificates);

/* Renderers. `color` adds ANSI colours (callers decide: TTY and no NO_COLOR). */
int kvr_plan_render_text(const kvr_plan *p, FILE *out, bool color);
int kvr_plan_render_markdown(const kvr_plan *p, FILE *out);
/* JSON per schema/plan.schema.json; *out is a new string, the caller's (free). */
int kvr_plan_render_json(char **out, const kvr_plan *p, kvr_error *err);

/*
 * What the provider must read to plan `d`, as names (kvr/provider.h), so that no provider sees
 * the desired state: the vaults (estate order) with their resource groups, relocation pairs and
 * whose certificates are compared; the declared keys (with the rotation policies compared) and
 * secrets, with a value compared unless the secret is generated or external; the credentials'
 * stored copies (values compared); the apps and the role assignments' apps by display name; the
 * profiles when any is declared. `subscription` is the one to read (may be NULL: the read says
 * so). Strings are borrowed from d and subscription, which must outlive *out; the arrays are
 * *out's (kvr_scope_free). KVR_ENOMEM, *out NULL, on failure.
 */
int kvr_plan_read_scope(kvr_scope **out, const kvr_estate *d, const char *subscription,
                        kvr_error *err);
void kvr_scope_free(kvr_scope *s); /* NULL: no-op */

#endif
