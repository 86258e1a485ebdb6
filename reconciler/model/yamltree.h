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
    /* scalar */
    char *text;
    size_t len;
    bool plain; /* unquoted and untagged: subject to null/bool/int resolution */
    /* sequence: items[i]; mapping: items[2i] is a key (scalar), items[2i+1] its value */
    struct yt_node **items;
    size_t n; /* number of items (sequence) or pairs (mapping) */
    size_t cap;
    unsigned long long weight; /* nodes this one expands to, aliases included (saturating) */
    struct yt_node *next_alloc;
} yt_node;

typedef struct yt_doc {
    yt_node *root; /* NULL for an empty document */
    unsigned line, col;
} yt_doc;

typedef struct yt_stream {
    yt_doc *docs;
    size_t ndocs;
    size_t cap;
    yt_node *all; /* every node, for freeing */
} yt_stream;

/* Limits. */
#define YT_MAX_DEPTH 64u
#define YT_MAX_ALIAS_EXPANSION 100000ull

/*
 * Parses `data` (a whole file). On success returns 0 and fills *out. Problems are added to
 * diags under `file`; then it returns KVR_ECONFIG (or KVR_ENOMEM) and *out is released.
 */
int yt_parse(yt_stream *out, const char *file, const char *data, size_t size, kvr_diags *diags);

void yt_stream_release(yt_stream *s);

/* Scalar resolution per the YAML 1.2 core schema. */
typedef enum yt_type { YT_T_NULL, YT_T_BOOL, YT_T_INT, YT_T_FLOAT, YT_T_STR } yt_type;
yt_type yt_scalar_type(const yt_node *n);

/* "a string", "a mapping", "an integer", ... for messages. */
const char *yt_describe(const yt_node *n);

/* Value of `key` in mapping `map`, or NULL. */
yt_node *yt_map_get(const yt_node *map, const char *key);

#endif
