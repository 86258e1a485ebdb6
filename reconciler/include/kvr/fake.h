/*
 * The in-memory fake provider: the provider table of kvr/provider.h over a live state held in
 * memory. `read` returns a copy of that state; `apply` changes it as Azure and the profile
 * service would (a deleted vault becomes a soft-deleted one, a new key version gets an id and
 * is the latest, a client secret is added and stored in one operation, ...); `probe` says
 * whether the app of a profile really has access to its key. Unit tests of the executor run
 * against it (tests/fixtures/apply/), and offline plans read from it.
 *
 * Faults and the service's own moves are scripted (kvr_fake_script): an operation that answers
 * "throttled" a few times, a connection lost half-way through an operation, a profile that
 * becomes Used on the third read, a clock that moves with every read, a probe refused while a
 * grant propagates. Every operation carried out is logged in the JSON form reviewers approve
 * (kvr_op_to_json with approval), so that a test compares exactly what ran.
 *
 * No value is ever held: a secret carries only its keyed marker, computed with the marker key
 * the caller gives (the one the executor compares desired values with).
 */
#ifndef KVR_FAKE_H
#define KVR_FAKE_H

#include "kvr/provider.h"
#include "kvr/values.h"

/* The object id the fake provider "runs as": the entry an access-policy vault it creates gets
   for its creator (kvr_op.u.vault.self_access). */
#define KVR_FAKE_SELF_ID "00000000-0000-4000-8000-0000000fa4e0"

/*
 * A fake provider holding `live` (taken: freed by this call, also on failure). Its clock starts
 * at live->now and stands still unless a script moves it. `mk` is borrowed and must outlive
 * the provider (NULL: a fixed all-zero key). *out is the caller's (kvr_provider_free).
 * KVR_ENOMEM.
 *
 * read(scope): the scope is not used to filter: the fake returns everything it holds (a
 * fixture's live state is what some scope read). The state is copied: the caller owns it.
 * apply(op): KVR_EINVAL for an operation holding a KVR_PLAN_* placeholder; otherwise 0, or the
 * error Azure would answer (KVR_EAZURE for a missing object or principal, KVR_ECONFLICT for a
 * name held by a soft-deleted object, an immutable profile, a profile in use), or a scripted
 * fault. probe(pr): scripted refusals first; then 0 when the app exists with client id
 * pr->client_id, its stored secret exists, and its service principal holds a role assignment
 * on the vault or the key (RBAC vault) or an access-policy entry with key 'get' (or 'all'),
 * else KVR_EFORBIDDEN. read_back: none (NULL).
 */
int kvr_fake_provider_new(kvr_provider **out, kvr_live *live, const kvr_marker_key *mk,
                          kvr_error *err);

/*
 * Adds scripted behaviour: a JSON array of entries (or one entry), each one of
 *
 *   {"op": N, "fail": F, "times": T}      operation N (1-based; a call that repeats the
 *                                          operation that just failed is its retry, not a new
 *                                          number) answers F, T times (default 1), and is not
 *                                          carried out; F: "throttled" (KVR_ETHROTTLED),
 *                                          "timeout", "reset" (KVR_EHTTP), "forbidden",
 *                                          "conflict", "error" (KVR_EAZURE)
 *   {"kind": NAME, "nth": K, ...}         instead of "op": the K-th (default 1) operation of
 *                                          that kind (kvr_op_kind_name: "passwordAddAndStore")
 *   {"op": N, "crash": "after-first-request"}
 *                                          the operation does its first request and the
 *                                          connection is lost (KVR_EHTTP "connection reset"):
 *                                          passwordAddAndStore adds the password and does not
 *                                          store it; keyCreate makes the version, not the
 *                                          rotation policy; operations that read first
 *                                          (tagSet, secretSet from a stored value, secretCopy,
 *                                          certificateCopy, profilePut) and vaultPut/vaultRecover
 *                                          (the resource group first) change nothing; any other
 *                                          is carried out whole and its answer lost.
 *                                          "before-request": nothing is done
 *   {"read": N, "fail": F, "times": T}    reads N to N+T-1 answer F (the network is gone)
 *   {"read": N, "profile": P, "status": S} on read N (1-based) profile P has status S; a profile
 *                                          becoming Used makes the Used one before it Inactive,
 *                                          as the service does when a re-wrap completes
 *   {"read": N, "vault": V, "tags": {..}}  on read N another writer sets vault V's tags
 *   {"read": N, "delete": "key"|"secret"|"vault", "vault": V, "name": K}
 *                                          on read N another writer soft-deletes key or secret K
 *                                          of vault V, or vault V
 *   {"read": N, "advance": S}             before read N the service clock moves S seconds
 *                                          (events of one read happen in the script's order)
 *   {"clock": {"start": T, "perRead": S}}  the service clock reads T at the next read and
 *                                          moves S seconds after every read
 *   {"probe": {"failTimes": N}}            the next N probes answer KVR_EFORBIDDEN
 *
 * KVR_EINVAL with the entry's index for anything else; KVR_ENOMEM.
 */
int kvr_fake_script(kvr_provider *p, const char *json, kvr_error *err);

/*
 * The operations carried out so far, in order, as kvr_op_to_json(op, true, ...) lines: one
 * for each operation that changed the state or succeeded, including one cut short by a
 * scripted crash (it did its first part); a refused operation (a scripted failure, an error
 * from the state) is not one. *lines is borrowed (valid until the next apply or free).
 */
size_t kvr_fake_log(const kvr_provider *p, const char *const **lines);

/* How many reads, apply calls and probes the provider has answered. */
typedef struct kvr_fake_counts {
    size_t reads, applies, probes;
} kvr_fake_counts;
void kvr_fake_counts_get(const kvr_provider *p, kvr_fake_counts *out);

/* The state now, without a read (no scripted event fires, the clock does not move). *out is
   the caller's (kvr_live_free). KVR_ENOMEM. */
int kvr_fake_live(const kvr_provider *p, kvr_live **out, kvr_error *err);

#endif
