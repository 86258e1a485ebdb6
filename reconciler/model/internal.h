/*
 * Internal to the model module: the conversion context shared by the loader (load.c), the
 * field readers (fields.c) and the estate-wide checks (check.c).
 */
#ifndef KVR_MODEL_INTERNAL_H
#define KVR_MODEL_INTERNAL_H

#include "kvr/model.h"
#include "yamltree.h"

typedef struct single {
    bool set;
    kvr_pos pos;
} single;

typedef struct ctx {
    kvr_estate *e;
    kvr_diags *diags;
    const char *file; /* owned by e->files */
    char *dir;        /* directory of `file`, for relative paths */
    int rc;           /* first fatal (non-config) error, e.g. KVR_ENOMEM */
    bool bad;         /* any problem reported */
    /* values that may be given once in the whole estate */
    single subscription, cloud, active, ret_keys, ret_profiles, ret_app_secrets, ret_vaults;
    single lock; /* the `lock:` block */
    bool stream_off; /* lists of the rest of this file go through the tree (load.c) */
    /* where 'fromFile' may point: the repository root, then the --allow-files-under
       directories, all canonical (realpath); none: unconfined (kvr_model_load_buffer) */
    char **roots;
    size_t nroots;
} ctx;

/* Lengths of the estate's arrays, to undo a file's conversion (estate.c). */
typedef struct kvr_estate_lens {
    size_t vaults, apps, roles, keys, secrets, profiles;
} kvr_estate_lens;

void kvr_estate_lens_get(const kvr_estate *e, kvr_estate_lens *out);
/* Releases the elements past `to` (the arrays keep their memory). */
void kvr_estate_truncate(kvr_estate *e, const kvr_estate_lens *to);

void cx_error(ctx *c, const yt_node *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cx_error_pos(ctx *c, kvr_pos pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cx_oom(ctx *c);
kvr_pos cx_pos(const ctx *c, const yt_node *n);
char *cx_strdup(ctx *c, const char *s);

/* Field readers. Each returns true if the field was present and valid. */
bool cx_fields(ctx *c, const yt_node *map, const char *what, const char *const *allowed);
bool cx_is_map(ctx *c, const yt_node *n, const char *what);
bool cx_str(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
            char **out);
/* cx_str, with the estate's one copy of the text (e->shared): never free it */
bool cx_str_shared(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
                   char **out);
/* cx_str, with a copy of its own in the estate's pool (e->shared.pool): never free it */
bool cx_str_pooled(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
                   char **out);
/* The estate's one copy of s (e->shared); NULL (and cx_oom) if memory ran out */
char *cx_shared(ctx *c, const char *s);
bool cx_bool(ctx *c, const yt_node *map, const char *field, bool *out);
bool cx_int(ctx *c, const yt_node *map, const char *field, long min, long max, int *out);
bool cx_duration(ctx *c, const yt_node *map, const char *field, int64_t *out);
bool cx_enum(ctx *c, const yt_node *map, const char *field, const char *const *values, int *out);
bool cx_strlist(ctx *c, const yt_node *map, const char *field, kvr_strlist *out);
bool cx_tags(ctx *c, const yt_node *map, const char *field, kvr_tags *out);

/* Format checks (true if ok). */
bool kvr_is_guid(const char *s);
bool kvr_is_vault_name(const char *s);
bool kvr_is_object_name(const char *s);

void kvr_model_check(ctx *c);

/* Builds e->index, the tables behind the kvr_estate_* lookups (estate.c). 0 or KVR_ENOMEM. */
int kvr_estate_index_build(kvr_estate *e);

/* Built-in role names, NULL-terminated (estate.c). */
extern const char *const kvr_model_role_names[];

void kvr_strlist_release(kvr_strlist *l);
void kvr_tags_release(kvr_tags *t);

#endif
