/*
 * Orders the plan's steps so that every step comes after the steps it depends on: Kahn's
 * algorithm, taking the earliest-made ready step first (a min-heap, so that tens of thousands
 * of steps order in O(n log n)) so that the order is stable and reads like the passes (vaults,
 * identities, keys, secrets, profiles, retirements). A cycle is a bug in the passes or an
 * impossible desired state; it is reported with the steps involved.
 */
#include "build.h"

#include <stdlib.h>
#include <string.h>

/* A binary min-heap of step indices: the ready step made earliest comes out first. */
static void heap_push(size_t *h, size_t *len, size_t v)
{
    size_t i = (*len)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *len)
{
    size_t top = h[0], last = h[--(*len)], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *len)
            break;
        if (c + 1 < *len && h[c + 1] < h[c])
            c++;
        if (h[c] >= last)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*len)
        h[i] = last;
    return top;
}

int kvr_plan_order(pb *b)
{
    size_t n = b->p->nsteps, done = 0, nedges = 0, nready = 0;
    size_t *indeg = calloc(n + 1, sizeof(size_t)), *order = calloc(n + 1, sizeof(size_t));
    size_t *newid = calloc(n + 1, sizeof(size_t)), *ready = calloc(n + 1, sizeof(size_t));
    size_t *first = calloc(n + 2, sizeof(size_t)), *users = NULL;
    kvr_step *sorted = NULL;
    int rc = 0;

    if (!indeg || !order || !newid || !ready || !first) {
        rc = kvr_error_set(b->err, KVR_ENOMEM, "out of memory while ordering the plan");
        goto done;
    }
    /* users[first[d] .. first[d+1]) are the steps that depend on step d (CSR form) */
    for (size_t i = 0; i < n; i++) {
        indeg[i] = b->p->steps[i].ndeps;
        nedges += b->p->steps[i].ndeps;
        for (size_t d = 0; d < b->p->steps[i].ndeps; d++)
            first[b->p->steps[i].deps[d] + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    users = calloc(nedges + 1, sizeof(size_t));
    if (!users) {
        rc = kvr_error_set(b->err, KVR_ENOMEM, "out of memory while ordering the plan");
        goto done;
    }
    {
        size_t *fill = order; /* scratch until the order is built */
        memcpy(fill, first, n * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
            for (size_t d = 0; d < b->p->steps[i].ndeps; d++)
                users[fill[b->p->steps[i].deps[d]]++] = i;
    }
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0)
            heap_push(ready, &nready, i);
    while (done < n) {
        size_t pick;
        if (nready == 0) {
            char list[400] = "";
            size_t len = 0;
            for (size_t i = 0; i < n && len < sizeof(list) - 80; i++)
                if (!newid[i]) /* not ordered yet */
                    len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s: %s",
                                            len ? "; " : "", b->p->steps[i].object,
                                            b->p->steps[i].summary);
            rc = kvr_error_set(b->err, KVR_ECONFIG, "the plan has a dependency cycle among: %s",
                               list);
            goto done;
        }
        pick = heap_pop(ready, &nready);
        newid[pick] = done + 1;
        order[done++] = pick;
        for (size_t u = first[pick]; u < first[pick + 1]; u++)
            if (--indeg[users[u]] == 0)
                heap_push(ready, &nready, users[u]);
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
    free(ready);
    free(first);
    free(users);
    return rc;
}
