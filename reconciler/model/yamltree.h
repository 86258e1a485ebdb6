/*
 * Internal: a YAML document as a small tree with positions, built from libyaml events.
 * Aliases share the anchored node (the tree is a DAG); the builder bounds nesting depth and
 * alias expansion so that hostile input costs bounded time and memory.
 */
#ifndef KVR_YAMLTREE_H
#define KVR_YAMLTREE_H

#include "kvr/util.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum yt_kind { YT_SCALAR, YT_SEQ, YT_MAP } yt_kind;

typedef struct yt_node {
    yt_kind kind;
    unsigned line, col; /* 1-based */
    bool plain;         /* scalar: unquoted and untagged, subject to null/bool/int resolution */
    /* scalar */
    char *text;
    size_t len;
    /* sequence: items[i]; mapping: items[2i] is a key (scalar), items[2i+1] its value */
    struct yt_node **items;
    size_t n;                  /* number of items (sequence) or pairs (mapping) */
    unsigned long long weight; /* nodes this one expands to, aliases included (saturating) */
} yt_node;

typedef struct yt_doc {
    yt_node *root; /* NULL for an empty document */
    unsigned line, col;
} yt_doc;

/* Nodes, texts and item arrays live in chunks, freed together (or rolled back, see below). */
typedef struct yt_chunk yt_chunk;

typedef struct yt_stream {
    yt_doc *docs;
    size_t ndocs;
    size_t cap;
    yt_chunk *arena;
} yt_stream;

/*
 * Streaming: a document's big lists need not be kept as a tree. For each sequence that is the
 * value of a key of a document's root mapping, yt_parse asks want(arg, key, pairs, npairs),
 * with the root's key/value pairs so far (pairs[2i] key, pairs[2i+1] value); if it says yes,
 * every item of that list is handed to item(arg, key, node) as soon as it is complete, and the
 * tree keeps neither the item nor its memory (unless an anchor inside it may still be aliased).
 * The list itself stays in the tree, empty. Callbacks run in document order; on a parse error
 * yt_parse still returns an error, so the caller must undo what its callbacks did.
 */
typedef struct yt_hooks {
    bool (*want)(void *arg, const char *key, yt_node *const *pairs, size_t npairs);
    void (*item)(void *arg, const char *key, const yt_node *item);
    void *arg;
} yt_hooks;

/* Limits. */
#define YT_MAX_DEPTH 64u
#define YT_MAX_ALIAS_EXPANSION 100000ull

/*
 * Parses `data` (a whole file). On success returns 0 and fills *out. Problems are added to
 * diags under `file`; then it returns KVR_ECONFIG (or KVR_ENOMEM) and *out is released.
 * `hooks` may be NULL (the whole tree is kept).
 */
int yt_parse(yt_stream *out, const char *file, const char *data, size_t size, kvr_diags *diags,
             const yt_hooks *hooks);

void yt_stream_release(yt_stream *s);

/* Scalar resolution per the YAML 1.2 core schema. */
typedef enum yt_type { YT_T_NULL, YT_T_BOOL, YT_T_INT, YT_T_FLOAT, YT_T_STR } yt_type;
yt_type yt_scalar_type(const yt_node *n);

/* "a string", "a mapping", "an integer", ... for messages. */
const char *yt_describe(const yt_node *n);

/* Value of `key` in mapping `map`, or NULL. */
yt_node *yt_map_get(const yt_node *map, const char *key);

#endif
