/*
 * Typed field readers over the YAML tree. Each one checks presence, YAML type and range, and
 * reports a positioned, specific message ("'softDeleteDays' must be an integer from 7 to 90,
 * got a string") instead of failing later in a less helpful place.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cx_error(ctx *c, const yt_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvr_diags_addv(c->diags, c->file, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    c->bad = true;
}

void cx_error_pos(ctx *c, kvr_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvr_diags_addv(c->diags, pos.file, pos.line, pos.col, fmt, ap);
    va_end(ap);
    c->bad = true;
}

void cx_oom(ctx *c)
{
    if (!c->rc) {
        c->rc = KVR_ENOMEM;
        kvr_diags_add(c->diags, c->file, 0, 0, "out of memory");
    }
    c->bad = true;
}

kvr_pos cx_pos(const ctx *c, const yt_node *n)
{
    kvr_pos p = {c->file, n ? n->line : 0, n ? n->col : 0};
    return p;
}

char *cx_strdup(ctx *c, const char *s)
{
    char *d = strdup(s);
    if (!d)
        cx_oom(c);
    return d;
}

bool cx_is_map(ctx *c, const yt_node *n, const char *what)
{
    if (n && n->kind == YT_MAP)
        return true;
    cx_error(c, n, "%s must be a mapping, got %s", what, yt_describe(n));
    return false;
}

bool cx_fields(ctx *c, const yt_node *map, const char *what, const char *const *allowed)
{
    bool ok = true;
    for (size_t i = 0; i < map->n; i++) {
        const yt_node *k = map->items[2 * i];
        bool known = false;
        const char *hint;
        if (k->kind != YT_SCALAR)
            continue; /* already reported by the tree builder */
        for (size_t j = 0; allowed[j]; j++)
            if (strcmp(k->text, allowed[j]) == 0)
                known = true;
        if (known)
            continue;
        ok = false;
        if (strcmp(k->text, "<<") == 0) {
            cx_error(c, k, "YAML merge keys ('<<') are not supported; repeat the fields instead");
            continue;
        }
        hint = kvr_str_suggest(k->text, allowed);
        if (hint)
            cx_error(c, k, "unknown %s field '%.64s' (did you mean '%s'?)", what, k->text, hint);
        else
            cx_error(c, k, "unknown %s field '%.64s'", what, k->text);
    }
    return ok;
}

/* A string value: any scalar that the YAML core schema resolves to a string. */
static bool scalar_string_ex(ctx *c, const yt_node *v, const char *field, bool allow_empty,
                             const char **out);

static bool scalar_string(ctx *c, const yt_node *v, const char *field, const char **out)
{
    return scalar_string_ex(c, v, field, false, out);
}

static bool scalar_string_ex(ctx *c, const yt_node *v, const char *field, bool allow_empty,
                             const char **out)
{
    yt_type t;
    if (v->kind != YT_SCALAR) {
        cx_error(c, v, "'%s' must be a string, got %s", field, yt_describe(v));
        return false;
    }
    t = yt_scalar_type(v);
    if (allow_empty && !v->plain && v->len == 0) {
        *out = v->text;
        return true;
    }
    if (t == YT_T_NULL) {
        cx_error(c, v, "'%s' must be a string, got null", field);
        return false;
    }
    if (t != YT_T_STR) {
        cx_error(c, v, "'%s' must be a string, got %s; quote it (\"%.64s\") to make it a string",
                 field, yt_describe(v), v->text);
        return false;
    }
    if (v->len == 0) {
        cx_error(c, v, "'%s' must not be empty", field);
        return false;
    }
    if (strlen(v->text) != v->len) {
        cx_error(c, v, "'%s' must not contain NUL characters", field);
        return false;
    }
    for (size_t i = 0; i < v->len; i++) {
        unsigned char ch = (unsigned char)v->text[i];
        if (ch < 0x20 || ch == 0x7f) {
            cx_error(c, v, "'%s' must not contain control characters", field);
            return false;
        }
    }
    *out = v->text;
    return true;
}

enum copy { COPY_MALLOC, COPY_SHARED, COPY_POOLED };

char *cx_shared(ctx *c, const char *s)
{
    char *d = kvr_strset_get(&c->e->shared, s);
    if (s && !d)
        cx_oom(c);
    return d;
}

static bool str_field(ctx *c, const yt_node *map, const char *field, bool required,
                      const char *what, enum copy copy, char **out)
{
    const yt_node *v = yt_map_get(map, field);
    const char *s;
    if (!v) {
        if (required)
            cx_error(c, map, "%s is missing required field '%s'", what, field);
        return false;
    }
    if (!scalar_string(c, v, field, &s))
        return false;
    if (copy == COPY_MALLOC)
        *out = cx_strdup(c, s);
    else if (copy == COPY_SHARED)
        *out = cx_shared(c, s);
    else if (!(*out = kvr_strpool_dup(&c->e->shared.pool, s)))
        cx_oom(c);
    return *out != NULL;
}

bool cx_str(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
            char **out)
{
    return str_field(c, map, field, required, what, COPY_MALLOC, out);
}

bool cx_str_shared(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
                   char **out)
{
    return str_field(c, map, field, required, what, COPY_SHARED, out);
}

bool cx_str_pooled(ctx *c, const yt_node *map, const char *field, bool required, const char *what,
                   char **out)
{
    return str_field(c, map, field, required, what, COPY_POOLED, out);
}

bool cx_bool(ctx *c, const yt_node *map, const char *field, bool *out)
{
    const yt_node *v = yt_map_get(map, field);
    if (!v)
        return false;
    if (v->kind != YT_SCALAR || yt_scalar_type(v) != YT_T_BOOL) {
        cx_error(c, v, "'%s' must be true or false, got %s", field, yt_describe(v));
        return false;
    }
    *out = v->text[0] == 't' || v->text[0] == 'T';
    return true;
}

bool cx_int(ctx *c, const yt_node *map, const char *field, long min, long max, int *out)
{
    const yt_node *v = yt_map_get(map, field);
    long n;
    char *end;
    if (!v)
        return false;
    if (v->kind != YT_SCALAR || yt_scalar_type(v) != YT_T_INT) {
        cx_error(c, v, "'%s' must be an integer from %ld to %ld, got %s", field, min, max,
                 yt_describe(v));
        return false;
    }
    /* YAML 1.2 core: decimal (leading zeros stay decimal), 0o octal, 0x hexadecimal. */
    errno = 0;
    if (v->text[0] == '0' && v->text[1] == 'o')
        n = strtol(v->text + 2, &end, 8);
    else if (v->text[0] == '0' && v->text[1] == 'x')
        n = strtol(v->text + 2, &end, 16);
    else
        n = strtol(v->text, &end, 10);
    if (errno || *end || n < min || n > max) {
        cx_error(c, v, "'%s' must be an integer from %ld to %ld, got %.32s", field, min, max,
                 v->text);
        return false;
    }
    *out = (int)n;
    return true;
}

bool cx_duration(ctx *c, const yt_node *map, const char *field, int64_t *out)
{
    const yt_node *v = yt_map_get(map, field);
    const char *s;
    kvr_error err;
    if (!v)
        return false;
    if (v->kind != YT_SCALAR || yt_scalar_type(v) == YT_T_NULL) {
        cx_error(c, v, "'%s' must be a duration like '90d' or 'P90D', got %s", field,
                 yt_describe(v));
        return false;
    }
    s = v->text;
    if (kvr_duration_parse(out, s, &err) < 0) {
        cx_error(c, v, "'%s': %s", field, err.message);
        return false;
    }
    return true;
}

bool cx_enum(ctx *c, const yt_node *map, const char *field, const char *const *values, int *out)
{
    const yt_node *v = yt_map_get(map, field);
    const char *s, *hint;
    char list[512];
    size_t n = 0;
    if (!v)
        return false;
    if (values[0] && values[0][0] >= '0' && values[0][0] <= '9') {
        /* Integer enums (key sizes): an integer, not a quoted string. */
        if (v->kind != YT_SCALAR || yt_scalar_type(v) != YT_T_INT) {
            cx_error(c, v, "'%s' must be an integer, got %s", field, yt_describe(v));
            return false;
        }
    } else if (!scalar_string(c, v, field, &s)) {
        return false;
    }
    for (int i = 0; values[i]; i++) {
        if (strcmp(v->text, values[i]) == 0) {
            *out = i;
            return true;
        }
    }
    list[0] = '\0';
    for (int i = 0; values[i] && n < sizeof(list); i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s'%s'", i ? ", " : "", values[i]);
    hint = kvr_str_suggest(v->text, values);
    if (hint)
        cx_error(c, v, "invalid %s '%.64s' (did you mean '%s'?); expected one of %s", field,
                 v->text, hint, list);
    else
        cx_error(c, v, "invalid %s '%.64s'; expected one of %s", field, v->text, list);
    return false;
}

bool cx_strlist(ctx *c, const yt_node *map, const char *field, kvr_strlist *out)
{
    const yt_node *v = yt_map_get(map, field);
    bool ok = true;
    if (!v)
        return false;
    if (v->kind != YT_SEQ) {
        cx_error(c, v, "'%s' must be a list, got %s", field, yt_describe(v));
        return false;
    }
    out->items = calloc(v->n ? v->n : 1, sizeof(char *));
    if (!out->items) {
        cx_oom(c);
        return false;
    }
    for (size_t i = 0; i < v->n; i++) {
        const char *s;
        if (!scalar_string(c, v->items[i], field, &s)) {
            ok = false;
            continue;
        }
        for (size_t j = 0; j < out->len; j++) {
            if (strcmp(out->items[j], s) == 0) {
                cx_error(c, v->items[i], "'%s' lists '%.64s' twice", field, s);
                ok = false;
            }
        }
        out->items[out->len] = cx_strdup(c, s);
        if (!out->items[out->len])
            return false;
        out->len++;
    }
    return ok;
}

bool cx_tags(ctx *c, const yt_node *map, const char *field, kvr_tags *out)
{
    const yt_node *v = yt_map_get(map, field);
    bool ok = true;
    if (!v)
        return false;
    if (v->kind != YT_MAP) {
        cx_error(c, v, "'%s' must be a mapping of names to strings, got %s", field, yt_describe(v));
        return false;
    }
    out->items = calloc(v->n ? v->n : 1, sizeof(*out->items));
    if (!out->items) {
        cx_oom(c);
        return false;
    }
    for (size_t i = 0; i < v->n; i++) {
        const yt_node *k = v->items[2 * i], *val = v->items[2 * i + 1];
        const char *ks, *vs;
        if (k->kind != YT_SCALAR)
            continue;
        if (strncmp(k->text, "kvr-", 4) == 0) {
            cx_error(c, k, "tag '%.64s': names starting with 'kvr-' are reserved for kvreconcile's "
                           "own markers",
                     k->text);
            ok = false;
            continue;
        }
        if (!scalar_string(c, k, "tag name", &ks) || !scalar_string_ex(c, val, ks, true, &vs)) {
            ok = false;
            continue;
        }
        if (strlen(ks) > 512 || strlen(vs) > 256) {
            cx_error(c, k, "tag '%.64s' is too long (names up to 512 and values up to 256 "
                           "characters)",
                     ks);
            ok = false;
            continue;
        }
        out->items[out->len].key = cx_strdup(c, ks);
        out->items[out->len].value = cx_strdup(c, vs);
        out->len++;
    }
    return ok;
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool kvr_is_guid(const char *s)
{
    static const int groups[] = {8, 4, 4, 4, 12};
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++)
            if (!is_hex(*s++))
                return false;
        if (g < 4 && *s++ != '-')
            return false;
    }
    return *s == '\0';
}

static bool is_alnum(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

bool kvr_is_vault_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 24 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    if (!is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
        if (s[i] == '-' && s[i + 1] == '-')
            return false;
    }
    return true;
}

bool kvr_is_object_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 127)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}
