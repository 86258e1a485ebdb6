/*
 * Orders the plan's steps so that every step comes after the steps it depends on: Kahn's
 * algorithm, taking the earliest-made ready step first so that the order is stable and reads
 * like the passes (vaults, identities, keys, secrets, profiles, retirements). A cycle is a bug
 * in the passes or an impossible desired state; it is reported with the steps involved.
 */
#include "build.h"

#include <stdlib.h>
#include <string.h>

int kvr_plan_order(pb *b)
{
    size_t n = b->p->nsteps, done = 0;
    size_t *indeg = calloc(n + 1, sizeof(size_t)), *order = calloc(n + 1, sizeof(size_t));
    size_t *newid = calloc(n + 1, sizeof(size_t));
    bool *emitted = calloc(n + 1, sizeof(bool));
    kvr_step *sorted = NULL;
    int rc = 0;

    if (!indeg || !order || !newid || !emitted) {
        rc = kvr_error_set(b->err, KVR_ENOMEM, "out of memory while ordering the plan");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        indeg[i] = b->p->steps[i].ndeps;
    while (done < n) {
        size_t pick = NONE;
        for (size_t i = 0; i < n; i++)
            if (!emitted[i] && indeg[i] == 0) {
                pick = i;
                break;
            }
        if (pick == NONE) {
            char list[400] = "";
            size_t len = 0;
            for (size_t i = 0; i < n && len < sizeof(list) - 80; i++)
                if (!emitted[i])
                    len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s: %s",
                                            len ? "; " : "", b->p->steps[i].object,
                                            b->p->steps[i].summary);
            rc = kvr_error_set(b->err, KVR_ECONFIG, "the plan has a dependency cycle among: %s",
                               list);
            goto done;
        }
        emitted[pick] = true;
        newid[pick] = done + 1;
        order[done++] = pick;
        for (size_t i = 0; i < n; i++)
            for (size_t d = 0; d < b->p->steps[i].ndeps; d++)
                if (b->p->steps[i].deps[d] == pick)
                    indeg[i]--;
    }
    sorted = calloc(n + 1, sizeof(*sorted));
    if (!sorted) {
        rc = kvr_error_set(b->err, KVR_ENOMEM, "out of memory while ordering the plan");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        kvr_step *s = &b->p->steps[order[i]];
        for (size_t d = 0; d < s->ndeps; d++)
            s->deps[d] = newid[s->deps[d]];
        /* deps in ascending id order, for stable output */
        for (size_t x = 1; x < s->ndeps; x++)
            for (size_t y = x; y > 0 && s->deps[y - 1] > s->deps[y]; y--) {
                size_t t = s->deps[y];
                s->deps[y] = s->deps[y - 1];
                s->deps[y - 1] = t;
            }
        s->id = i + 1;
        sorted[i] = *s;
    }
    free(b->p->steps);
    b->p->steps = sorted;
done:
    free(indeg);
    free(order);
    free(newid);
    free(emitted);
    return rc;
}
