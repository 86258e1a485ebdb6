/*
 * The provider seam: what the executor needs from a cloud, as a versioned table of functions
 * (libgit2's odb backends; Terraform's ReadResource / ApplyResourceChange). A provider reads the
 * live state of what a scope names, carries out ONE object-level operation (kvr/op.h) with the
 * values the plan gave it, and proves that an app can really use a key. It never sees a plan,
 * a step or the desired state: the scope is names, an operation is values.
 *
 * Two providers exist: Azure (providers/azure, kvr_azure_provider_new in kvr/providers.h) and an
 * in-memory fake (providers/fake, kvr/fake.h) that unit tests and offline plans use.
 */
#ifndef KVR_PROVIDER_H
#define KVR_PROVIDER_H

#include "kvr/live.h"
#include "kvr/op.h"

/* ---- the scope: what a plan of some desired state needs read -------------------------------- */

typedef struct kvr_scope_vault {
    const char *name;
    const char *resource_group;
    const char *copy_from;  /* a relocation's source vault (its secrets are compared); NULL */
    bool certificates;      /* its certificates are compared (either side of a relocation
                               copying them) */
    bool unmanaged;         /* every key, secret and certificate is named (those nothing reads
                               in full: kvr_live.unread_keys), for the plan to report */
    bool unmanaged_read;    /* every key is read in full: undeclared ones may be retired */
} kvr_scope_vault;

/* A key or secret by name. A name listed twice is read once: with its value or rotation policy
   if any listing asks for it, as declared if any listing is not only a credential's copy. */
typedef struct kvr_scope_object {
    const char *vault;
    const char *name;
    bool value;      /* a secret: its latest value is compared (as a keyed marker) */
    bool rotation;   /* a key: its rotation policy is compared */
    bool credential; /* a secret that is only a credential's stored copy, not declared itself
                        (its absence sends the reader to the deleted secrets as a declared
                        one's does: a retired app's copy may be there) */
} kvr_scope_object;

/* A role assignment the desired state names: the app (display name) on a vault. */
typedef struct kvr_scope_role {
    const char *vault;
    const char *app;
} kvr_scope_role;

typedef struct kvr_scope {
    const char *subscription;
    const kvr_scope_vault *vaults; /* read in this order */
    size_t nvaults;
    const kvr_scope_object *keys;
    size_t nkeys;
    const kvr_scope_object *secrets; /* declared secrets and the credentials' stored copies */
    size_t nsecrets;
    const char *const *apps; /* display names */
    size_t napps;
    const kvr_scope_role *roles;
    size_t nroles;
    bool profiles;   /* read the encryption profiles */
    bool dependents; /* discover the Azure resources outside the estate that use these vaults'
                        keys and secrets (kvr_live_dependent): anything the plan could retire */
    bool everything; /* export: every key's rotation policy and every vault's certificates */
    /* credentialRotation stores: every secret of `vault` named `name` and a generation
       ("<name>-YYYY-MM-DD") has its value read, as a credential's stored copy */
    const kvr_scope_object *secret_prefixes;
    size_t nsecret_prefixes;
    bool retired_apps; /* also the apps this estate marked (KVR_APP_TAG_MANAGED) that `apps`
                          no longer names, with their role assignments in the subscription */
} kvr_scope;

/* ---- the probe: can an app use a key now? ---------------------------------------------------- */

typedef struct kvr_probe {
    const char *app_name;      /* display name, for messages */
    const char *client_id;     /* the app's appId */
    const char *secret_vault;  /* where its client secret is stored */
    const char *secret_name;
    const char *vault;         /* the key it must be able to read */
    const char *key;
} kvr_probe;

/* ---- the table ------------------------------------------------------------------------------ */

#define KVR_PROVIDER_VERSION 1

typedef struct kvr_provider kvr_provider;

struct kvr_provider {
    unsigned version; /* KVR_PROVIDER_VERSION of the header the provider was built with */
    const char *name; /* "azure", "fake" */

    /* Reads the live state of what `scope` names. `now` of the result is the service's clock.
       Secret values become keyed markers (under the provider's marker key) at once. */
    int (*read)(kvr_provider *p, kvr_live **out, const kvr_scope *scope, kvr_error *err);

    /* Carries out one operation (kvr_op_resolved(op) holds). 0, or an error naming the
       operation, the object and the service's answer. */
    int (*apply)(kvr_provider *p, const kvr_op *op, kvr_error *err);

    /* 0 when the app can use the key now; KVR_EFORBIDDEN (or KVR_EAUTH) while a new grant is
       not effective yet; other codes on other failures. */
    int (*probe)(kvr_provider *p, const kvr_probe *probe, kvr_error *err);

    /* Optional (NULL: none). Reads the latest values of n secrets (vaults[i], names[i]) while
       the run waits anyway, so that its next read need not fetch them again while they are
       provably current. Returns how many were recorded, or KVR_ENOMEM. */
    int (*read_back)(kvr_provider *p, const char *const *vaults, const char *const *names,
                     size_t n, kvr_error *err);

    void (*free)(kvr_provider *p);
};

/* Frees a provider (NULL: no-op). */
static inline void kvr_provider_free(kvr_provider *p)
{
    if (p)
        p->free(p);
}

#endif
