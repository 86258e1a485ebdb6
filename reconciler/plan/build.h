/*
 * Internal to the plan module: the builder state shared by the passes (passes.c, retire.c)
 * and the ordering (order.c).
 */
#ifndef KVR_PLAN_BUILD_H
#define KVR_PLAN_BUILD_H

#include "kvr/plan.h"

#define NONE ((size_t)-1)

typedef struct pb {
    kvr_plan *p;
    size_t cap;
    const kvr_plan_input *in;
    const kvr_estate *d;
    const kvr_live *l;
    int64_t now;
    int rc;
    kvr_error *err;
    /* Lookup tables over the inputs, and over the steps made so far (by kind, vault and name),
       so that no pass is quadratic at estate scale (plan.c). Lookups return the first match in
       array order, so the plan does not depend on hash order. */
    kvr_index live_vaults, live_keys, live_secrets, live_deleted, live_roles, live_certs;
    kvr_index digests, steps;
    kvr_index declared_roles; /* the desired role assignments, by (scope, role, app) */
    char **declared_scopes;   /* each desired role assignment's scope, same order */
    size_t active_apply; /* the active profile's apply step, or NONE (retire.c) */
} pb;

size_t pb_step(pb *b, kvr_step_kind kind, kvr_action action, const char *vault, kvr_pos pos,
               const char *object, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void pb_name(pb *b, size_t s, const char *name, const char *version, const char *extra);
void pb_dep(pb *b, size_t s, size_t dep);
void pb_gate(pb *b, size_t s, kvr_gate_kind kind, bool open, int64_t opens_at, const char *fmt,
             ...) __attribute__((format(printf, 6, 7)));
void pb_change(pb *b, size_t s, const char *field, const char *from, const char *to,
               bool sensitive);
/* The stored copy of client secret `key_id`: the first secret tagged with it, or NULL. */
const kvr_live_secret *pb_stored_copy(const pb *b, const char *key_id);
/* The next stored copy of key_id (tag compared without case) from secret *k on, *k moved past
   it; NULL when there is none left. Every copy a retired app's credentials have:
   for (size_t k = 0; (ls = pb_next_copy(b, id, &k));) */
const kvr_live_secret *pb_next_copy(const pb *b, const char *key_id, size_t *k);
/* A stored copy of client secret `key_id` (the first secret tagged with it) elsewhere than
   (vault, name), or NULL: what a credential's storeIn move copies from. */
const kvr_live_secret *pb_stored_elsewhere(const pb *b, const char *key_id, const char *vault,
                                           const char *name);
/* An object of a declared vault that nothing declares and no step changes (note: NULL, or why
   unmanaged: retire leaves it). */
void pb_unmanaged(pb *b, const char *vault, const char *kind, const char *name, const char *note);
void pb_finding(pb *b, kvr_finding_level level, const char *vault, const char *object,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void pb_hold(pb *b, const char *vault, const char *object, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The step of `kind` acting on (vault, name), or NONE. */
size_t pb_find(const pb *b, kvr_step_kind kind, const char *vault, const char *name);
char *pb_printf(pb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Indexed forms of the kvr_live_*_get lookups (same results). */
const kvr_live_vault *pb_live_vault(const pb *b, const char *name);
const kvr_live_key *pb_live_key(const pb *b, const char *vault, const char *name);
const kvr_live_secret *pb_live_secret(const pb *b, const char *vault, const char *name);
const kvr_live_deleted *pb_live_deleted(const pb *b, const char *vault, const char *kind,
                                        const char *name);
/* Does the desired state declare role_id for app at scope (ARM's case rules)? */
bool pb_role_declared(const pb *b, const char *app, const char *scope, const char *role_id);
/* Is there a live role assignment of role_id to principal at scope (names without case)? */
bool pb_live_role(const pb *b, const char *scope, const char *role_id, const char *principal);
/* Is there a live certificate `name` in `vault` with thumbprint x5t (not NULL)? */
bool pb_live_cert(const pb *b, const char *vault, const char *name, const char *x5t);
/* The desired value marker of secret (vault, name), or NULL. */
const char *pb_digest(const pb *b, const char *vault, const char *name);
void pb_oom(pb *b);

/* Retention gate: open when `since` + `period` has passed; since 0: not started, it starts
   when `start_event` ("it becomes Inactive") happens. */
void pb_retention_gate(pb *b, size_t s, int64_t since, int64_t period, const char *start_event);

/* Passes, in the order they run. */
void kvr_plan_pass_in_use(pb *b);
void kvr_plan_pass_vaults(pb *b);
void kvr_plan_pass_copies(pb *b);
void kvr_plan_pass_apps(pb *b);
void kvr_plan_pass_access(pb *b); /* after apps: entries of principals the plan creates */
void kvr_plan_pass_keys(pb *b);
void kvr_plan_pass_roles(pb *b);
void kvr_plan_pass_secrets(pb *b);
void kvr_plan_pass_profiles(pb *b);
void kvr_plan_pass_retire(pb *b);
void kvr_plan_pass_findings(pb *b);
void kvr_plan_pass_unmanaged(pb *b); /* in retire.c: after the retirement of what is ours */
void kvr_plan_pass_roles_undeclared(pb *b);
void kvr_plan_pass_ops(pb *b); /* last: every step's operations with their values (ops.c) */ /* from kvr_plan_pass_retire, once active_apply is known */

/* Orders steps by dependencies (stable), renumbers ids from 1. KVR_ECONFIG on a cycle. */
int kvr_plan_order(pb *b);

/* Helpers over the inputs. */
/* Is every secret and certificate of `src` in `dst` (copied ones with the same value)? */
bool kvr_plan_copy_complete(const pb *b, const kvr_vault *dst);
bool kvr_plan_version_referenced(const kvr_live *l, const char *vault, const char *key,
                                 const char *version, const kvr_live_profile **by);
int64_t kvr_plan_tag_time(const kvr_tags *t);
const char *kvr_plan_app_principal(const pb *b, const char *app_name);

/*
 * Apps that left the desired state (retire.c). The marker this estate writes on the apps it
 * registers ("kvr-managed:<subscription>", in `out`, at least 200 bytes); false when the
 * subscription is not known (an offline plan).
 */
bool kvr_plan_app_marker(const pb *b, char *out, size_t size);
/* The declared vault whose scope holds role assignment `lr` (at the vault or one of its keys),
   or NULL: what a retired app's assignments the estate takes away. */
const kvr_vault *kvr_plan_role_vault(const pb *b, const kvr_live_role *lr);
/* Is `scope` the vault scope `vault_scope` or below it (a key)? Case as ARM: insensitive. */
bool kvr_plan_scope_within(const char *scope, const char *vault_scope);
/* Does the app carry a marker of another estate (another subscription) too? */
bool kvr_plan_app_shared(const kvr_live_app *la, const char *marker);
/* Does app la hold access in this estate's vaults (an access-policy entry, a role assignment),
   or carry this estate's retiring mark? Only then is its retirement this estate's. */
bool kvr_plan_app_ours(const pb *b, const kvr_live_app *la);
/* Does it hold role assignments outside this estate's vaults? Then it is used elsewhere: only
   this estate's access and mark are taken away, the app and its client secrets stay. */
bool kvr_plan_app_elsewhere(const pb *b, const kvr_live_app *la);
/* Is secret (vault, name) where app a's credentialRotation stores a generation? Such a copy is
   kvreconcile's to delete once its client secret is removed. */
bool kvr_plan_rotation_copy(const kvr_app *a, const char *vault, const char *name);
/* The start of this estate's retiring mark ("kvr-retiring-since:<subscription>="), false when
   the subscription is not known; the time in the app's mark, 0: none. */
bool kvr_plan_app_retiring_prefix(const pb *b, char *out, size_t size);
int64_t kvr_plan_app_retiring(const pb *b, const kvr_live_app *la);

#endif
