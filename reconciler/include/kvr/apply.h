/*
 * The executor: runs the plan's steps in order, opening gates by observing the live state, and
 * converges. Level-triggered and stateless: every round reads the live estate and plans again,
 * so a run that was killed at any instant is continued by the next one, here or elsewhere.
 */
#ifndef KVR_APPLY_H
#define KVR_APPLY_H

#include <stdio.h>

#include "kvr/plan.h"
#include "kvr/provider.h"
#include "kvr/values.h"

typedef struct kvr_saved_plan kvr_saved_plan;

typedef struct kvr_apply_options {
    int64_t wait_seconds; /* keep re-reading while only closed gates remain, up to this; 0: no */
    int poll_seconds;     /* between re-reads while waiting (default 5) */
    int probe_seconds;    /* how long to wait for a new role assignment to work (default 120) */
    bool quiet;           /* no progress lines */
    bool json_log;        /* progress as JSON lines */
    FILE *log;            /* where progress goes (stderr) */
    const volatile int *stop; /* when set and non-zero, stop before the next step (signals) */
    char *reason;         /* when set, receives what a blocked run waits for */
    size_t reason_size;
    /* when set, a blocked run stores here the seconds until its earliest closed gate opens, if
       only retention holds it (0: a gate that can open at any moment, or nothing known); and a
       run held only by retention stops at once (blocked) instead of sleeping until it ends:
       the caller comes back then (watch) */
    int64_t *requeue_after;
    /* when set, receives the last plan's findings (credentials near or past their end), one per
       line as "warning|error: OBJECT: MESSAGE"; the first plan's are also progress lines */
    char *findings;
    size_t findings_size;
    /* apply PLANFILE: the reviewed plan. Before anything changes, the live state must be the
       one it was made from; then no step runs that it does not show with its values. */
    const kvr_saved_plan *saved;
    /* an operation that fails on the way (throttled past the transport's own retries, a lost
       connection, a timeout) is tried again after this many seconds, doubling, 3 tries in all
       when it is safe to repeat (default 2; tests make it small); one that is not (a new key
       version, a new client secret) ends the round, and the next read of the estate shows
       whether it happened */
    double retry_pause;
} kvr_apply_options;

typedef enum kvr_apply_result {
    KVR_APPLY_CONVERGED = 0, /* nothing left to do */
    KVR_APPLY_BLOCKED = 3,   /* everything possible is done; a gate is still closed */
} kvr_apply_result;

/*
 * Applies the desired state `d` through provider `p`: each round reads the live state, plans,
 * and hands the operations of the steps that are ready to the provider. `mk` is the marker key
 * the provider marks values with (the desired values are marked with it too, to compare).
 * *out is KVR_APPLY_CONVERGED or KVR_APPLY_BLOCKED; on error the return value is negative and
 * err says which step failed and why (the steps before it stay done; a new run continues from
 * the live state).
 */
int kvr_apply(kvr_apply_result *out, kvr_provider *p, const kvr_marker_key *mk,
              const kvr_estate *d, const char *subscription, const kvr_apply_options *o,
              kvr_error *err);

/*
 * Keyed markers of the desired secret values that come from a source (environment, file), for
 * the plan to compare with the live ones. Values that cannot be read are reported on `warn`
 * (never with the value) and left out. Free with kvr_apply_markers_free.
 */
int kvr_apply_markers(kvr_value_digest **out, size_t *n, const kvr_estate *e,
                      const kvr_marker_key *mk, FILE *warn);
/* As kvr_apply_markers, but with `strict` set a value that cannot be read is an error (apply
   needs every declared value): its code, and a message naming the secret, where it is declared
   and its source (variable or file), never the value. */
int kvr_apply_markers_strict(kvr_value_digest **out, size_t *n, const kvr_estate *e,
                             const kvr_marker_key *mk, FILE *warn, kvr_error *strict);
void kvr_apply_markers_free(kvr_value_digest *d, size_t n);

/* ---- saved plans (saved.c) ------------------------------------------------------------------ */

/*
 * Writes `p` as a saved plan to `path` (atomically, mode 0644): the plan, the steps it approves
 * with their values, the desired-state paths given (`paths`) and the SHA-256 of each file `d`
 * was loaded from, and the SHA-256 of `live_canon` (kvr_live_canon of the live state and the
 * desired value markers the plan was built from). No secret value is written.
 */
int kvr_saved_plan_write(const char *path, const kvr_plan *p, const kvr_estate *d,
                         const char *const *paths, size_t npaths, const char *live_canon,
                         kvr_error *err);

/* Reads a saved plan; *out is the caller's (kvr_saved_plan_free). KVR_EINVAL for a file that is
   not one, or of another format version; file errors as kvr_file_read. */
int kvr_saved_plan_load(kvr_saved_plan **out, const char *path, kvr_error *err);
void kvr_saved_plan_free(kvr_saved_plan *sp);

/* The desired-state paths the plan was made with (borrowed from sp). */
const char *const *kvr_saved_plan_paths(const kvr_saved_plan *sp, size_t *n);

/* 0 when `d` was loaded from the same files with the same bytes, else KVR_ESTALE ("the plan is
   stale: …; plan again"). */
int kvr_saved_plan_check_desired(const kvr_saved_plan *sp, const kvr_estate *d, kvr_error *err);

/* 0 when `live_canon` is the live state the plan was made from, else KVR_ESTALE. */
int kvr_saved_plan_check_live(const kvr_saved_plan *sp, const char *live_canon, kvr_error *err);

/* True when the saved plan shows step `s` with every value it would set; else false, with what
   is missing in `why`. */
bool kvr_saved_plan_allows(const kvr_saved_plan *sp, const kvr_step *s, char *why, size_t size);

#endif
