/*
 * A small hash index: open addressing (linear probing) over caller-computed 64-bit hashes,
 * mapping each hash to the positions of the array elements it was computed from. The index
 * never owns or compares keys; a lookup walks the ids stored under one hash and the caller
 * checks each candidate against its own array. That keeps one index type for every lookup of
 * the model and the plan (vault by name, key by vault and name, role assignment by scope, role
 * and principal) without copying a single name, and keeps results independent of hash order:
 * callers take the smallest matching id, which is the first element in the array's own order.
 *
 * Azure compares names case-insensitively, so kvr_hash_ci folds case exactly as kvr_str_ieq
 * compares (tolower), and two names that compare equal always hash equal.
 */
#include "kvr/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 16u

/*
 * A slot is 8 bytes: 32 bits of the mixed hash and the id. The tag picks the home slot (so the
 * table can grow without the full hash) and filters the ids a lookup hands back; the caller's
 * compare settles the rest. 16-byte slots were 17 MB of the 2,000-vault bench estate's index.
 */
static uint32_t tag_of(uint64_t hash)
{
    return (uint32_t)(kvr_hash_mix(hash) >> 32);
}

uint64_t kvr_hash_ci(uint64_t h, const char *s)
{
    /* FNV-1a over the folded bytes, then a terminator so that ("ab", "c") and ("a", "bc")
       differ; a NULL part hashes apart from "" */
    if (!s) {
        h ^= 0xFFu;
        return h * 0x100000001b3ull;
    }
    for (; *s; s++) {
        h ^= (unsigned char)tolower((unsigned char)*s);
        h *= 0x100000001b3ull;
    }
    h ^= 0x100u;
    return h * 0x100000001b3ull;
}

uint64_t kvr_hash_mix(uint64_t h)
{
    /* a finaliser (splitmix64's): FNV's low bits alone are poor bucket indices */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

void kvr_index_init(kvr_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void kvr_index_release(kvr_index *ix)
{
    free(ix->slots);
    memset(ix, 0, sizeof(*ix));
}

static void place(kvr_index_slot *slots, size_t cap, uint32_t tag, uint32_t id1)
{
    size_t i = tag & (cap - 1);
    while (slots[i].id1)
        i = (i + 1) & (cap - 1);
    slots[i].tag = tag;
    slots[i].id1 = id1;
}

int kvr_index_reserve(kvr_index *ix, size_t n)
{
    size_t cap = MIN_CAP;
    kvr_index_slot *slots;
    /* at most 3/4 full, so that probe runs stay short */
    while (cap / 4 * 3 < n) {
        if (cap > UINT32_MAX / 2) /* the tag picks the home slot: 32 bits of it */
            return KVR_ENOMEM;
        cap *= 2;
    }
    if (cap <= ix->cap)
        return 0;
    slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return KVR_ENOMEM;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slots[i].id1)
            place(slots, cap, ix->slots[i].tag, ix->slots[i].id1);
    free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return 0;
}

int kvr_index_put(kvr_index *ix, uint64_t hash, size_t id)
{
    if (id >= UINT32_MAX)
        return KVR_EINVAL;
    if (ix->len + 1 > ix->cap / 4 * 3 && kvr_index_reserve(ix, ix->len + 1) < 0)
        return KVR_ENOMEM;
    place(ix->slots, ix->cap, tag_of(hash), (uint32_t)id + 1);
    ix->len++;
    return 0;
}

void kvr_index_find(const kvr_index *ix, uint64_t hash, kvr_index_iter *it)
{
    it->tag = tag_of(hash);
    it->pos = ix->cap ? it->tag & (ix->cap - 1) : 0;
    it->steps = 0;
}

bool kvr_index_next(const kvr_index *ix, kvr_index_iter *it, size_t *id)
{
    /* The run of occupied slots from the home slot holds every id stored under this hash. */
    while (ix->cap && it->steps < ix->cap) {
        const kvr_index_slot *s = &ix->slots[it->pos];
        if (!s->id1)
            return false;
        it->pos = (it->pos + 1) & (ix->cap - 1);
        it->steps++;
        if (s->tag == it->tag) {
            *id = s->id1 - 1;
            return true;
        }
    }
    return false;
}

size_t kvr_index_first(const kvr_index *ix, uint64_t hash, kvr_index_match match, const void *ctx)
{
    kvr_index_iter it;
    size_t id, best = KVR_INDEX_NONE;
    kvr_index_find(ix, hash, &it);
    while (kvr_index_next(ix, &it, &id))
        if ((best == KVR_INDEX_NONE || id < best) && match(ctx, id))
            best = id;
    return best;
}
