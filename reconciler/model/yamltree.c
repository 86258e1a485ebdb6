/*
 * YAML to a positioned tree, on libyaml's event parser.
 *
 * libyaml's own document loader would do, but it reports neither duplicate keys nor alias
 * bombs and offers no hook for depth: those are exactly the hostile-input classes a GitOps
 * tool must survive, since anyone who can open a pull request can write the YAML. So the tree
 * is built here, event by event, with every limit checked as it grows.
 *
 * Memory: nodes, texts and item arrays are bump-allocated in chunks (no per-node malloc), a
 * container's children wait on one shared stack until it closes and then get an array of
 * exactly their number, and the items of the big top-level lists can be handed to the caller
 * one by one and their memory reused at once (yt_hooks), so an estate file costs about its own
 * size to load, not ten times that.
 */
#include "yamltree.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct anchor {
    char *name;
    yt_node *node;
} anchor;

struct yt_chunk {
    yt_chunk *prev;
    size_t used, size;
    max_align_t data[];
};

#define CHUNK_BYTES (64u << 10)

/* A position in the arena, to roll back to. */
typedef struct mark {
    yt_chunk *chunk;
    size_t used;
} mark;

/* An open sequence or mapping. */
typedef struct frame {
    yt_node *node;
    size_t base;     /* its children so far are kids[base..] */
    const char *key; /* a streamed list: its key; items go to the hook, not to the tree */
    bool item;       /* an item of a streamed list: memory from `m` on is freed after the hook */
    mark m;
    size_t nanchors; /* anchors defined before it (an anchor inside keeps its memory) */
} frame;

typedef struct builder {
    const char *file;
    const char *data;
    size_t size;
    kvr_diags *diags;
    yt_stream *out;
    const yt_hooks *hooks;
    frame stack[YT_MAX_DEPTH + 1];
    size_t depth;
    yt_node **kids; /* children of the open containers, innermost last */
    size_t nkids, kids_cap;
    yt_chunk *spare; /* a chunk kept from the last roll-back */
    anchor *anchors;
    size_t nanchors, anchors_cap;
    unsigned long long alias_expansion;
    int rc;
} builder;

static void fail(builder *b, unsigned line, unsigned col, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(builder *b, unsigned line, unsigned col, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvr_diags_addv(b->diags, b->file, line, col, fmt, ap);
    va_end(ap);
    if (!b->rc)
        b->rc = rc;
}

/* ---- the arena: nodes, texts and item arrays, bump-allocated in chunks ------------------- */

static void *arena_alloc(builder *b, size_t n)
{
    yt_chunk *c = b->out->arena;
    void *p;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!c || c->size - c->used < n) {
        size_t size = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        if (b->spare && b->spare->size >= size) {
            c = b->spare;
            b->spare = NULL;
        } else {
            c = malloc(sizeof(*c) + size);
            if (!c) {
                fail(b, 0, 0, KVR_ENOMEM, "out of memory");
                return NULL;
            }
            c->size = size;
        }
        c->used = 0;
        c->prev = b->out->arena;
        b->out->arena = c;
    }
    p = (unsigned char *)c->data + c->used;
    c->used += n;
    return p;
}

static mark arena_mark(const builder *b)
{
    mark m = {b->out->arena, b->out->arena ? b->out->arena->used : 0};
    return m;
}

static void arena_release(builder *b, mark m)
{
    while (b->out->arena && b->out->arena != m.chunk) {
        yt_chunk *c = b->out->arena;
        b->out->arena = c->prev;
        if (!b->spare || c->size > b->spare->size) {
            free(b->spare);
            b->spare = c;
        } else {
            free(c);
        }
    }
    if (m.chunk)
        m.chunk->used = m.used;
}

static yt_node *node_new(builder *b, yt_kind kind, const yaml_mark_t *m)
{
    yt_node *n = arena_alloc(b, sizeof(*n));
    if (!n)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->line = (unsigned)m->line + 1;
    n->col = (unsigned)m->column + 1;
    n->weight = 1;
    return n;
}

static unsigned long long sat_add(unsigned long long a, unsigned long long b)
{
    return a > ~0ull - b ? ~0ull : a + b;
}

static int attach(builder *b, yt_node *child)
{
    frame *f;
    yt_node *parent;
    if (b->depth == 0) {
        b->out->docs[b->out->ndocs - 1].root = child;
        return 0;
    }
    f = &b->stack[b->depth - 1];
    parent = f->node;
    if (parent->kind == YT_MAP && ((b->nkids - f->base) & 1) == 0 && child->kind != YT_SCALAR) {
        /* An even slot in a mapping is a key: only scalars make sense as field names. */
        fail(b, child->line, child->col, KVR_ECONFIG,
             "mapping keys must be plain strings, not %s", yt_describe(child));
    }
    parent->weight = sat_add(parent->weight, child->weight);
    if (f->key) {
        b->hooks->item(b->hooks->arg, f->key, child);
        return 0;
    }
    if (kvr_grow((void **)&b->kids, &b->kids_cap, b->nkids + 1, sizeof(*b->kids)) < 0) {
        fail(b, 0, 0, KVR_ENOMEM, "out of memory");
        return -1;
    }
    b->kids[b->nkids++] = child;
    return 0;
}

static bool has_tab_at(const builder *b, unsigned line0, unsigned col0)
{
    /* Finds the byte at (line, column) counting UTF-8 characters; libyaml marks count chars. */
    size_t i = 0;
    unsigned line = 0, col = 0;
    while (i < b->size && line < line0) {
        if (b->data[i++] == '\n')
            line++;
    }
    while (i < b->size && col < col0 && b->data[i] != '\n') {
        i++;
        while (i < b->size && ((unsigned char)b->data[i] & 0xC0) == 0x80)
            i++;
        col++;
    }
    return i < b->size && b->data[i] == '\t';
}

static void offset_to_pos(const builder *b, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    for (size_t i = 0; i < off && i < b->size; i++) {
        if (b->data[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)b->data[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void report_parser_error(builder *b, const yaml_parser_t *p)
{
    unsigned line, col;
    if (p->error == YAML_MEMORY_ERROR) {
        fail(b, 0, 0, KVR_ENOMEM, "out of memory while parsing YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_to_pos(b, p->problem_offset, &line, &col);
        fail(b, line, col, KVR_ECONFIG, "invalid text: %s (YAML files must be UTF-8 text)",
             p->problem ? p->problem : "unreadable input");
        return;
    }
    line = (unsigned)p->problem_mark.line + 1;
    col = (unsigned)p->problem_mark.column + 1;
    if (p->error == YAML_SCANNER_ERROR &&
        has_tab_at(b, (unsigned)p->problem_mark.line, (unsigned)p->problem_mark.column)) {
        fail(b, line, col, KVR_ECONFIG,
             "tab character where YAML expects indentation or a value; indent with spaces");
        return;
    }
    if (p->context)
        fail(b, line, col, KVR_ECONFIG, "invalid YAML: %s (%s at line %u, column %u)",
             p->problem ? p->problem : "syntax error", p->context,
             (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        fail(b, line, col, KVR_ECONFIG, "invalid YAML: %s",
             p->problem ? p->problem : "syntax error");
}

static int key_cmp(const void *pa, const void *pb)
{
    const yt_node *a = *(yt_node *const *)pa, *b = *(yt_node *const *)pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->text, b->text, n);
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    /* Equal keys: order by position so the later one is reported. */
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return a->col < b->col ? -1 : a->col > b->col;
}

/* Called when a mapping is complete: duplicates are reported. */
static void finish_map(builder *b, yt_node *m)
{
    yt_node **keys;
    size_t n = m->n;
    if (n < 2)
        return;
    keys = malloc(n * sizeof(*keys));
    if (!keys) {
        fail(b, 0, 0, KVR_ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = m->items[2 * i];
    qsort(keys, n, sizeof(*keys), key_cmp);
    for (size_t i = 1; i < n; i++) {
        if (keys[i]->kind == YT_SCALAR && keys[i - 1]->kind == YT_SCALAR &&
            keys[i]->len == keys[i - 1]->len &&
            memcmp(keys[i]->text, keys[i - 1]->text, keys[i]->len) == 0)
            fail(b, keys[i]->line, keys[i]->col, KVR_ECONFIG,
                 "duplicate key '%.*s' (first at line %u, column %u)",
                 (int)(keys[i]->len > 64 ? 64 : keys[i]->len), keys[i]->text, keys[i - 1]->line,
                 keys[i - 1]->col);
    }
    free(keys);
}

static int add_anchor(builder *b, const yaml_char_t *name, yt_node *n)
{
    char *copy;
    if (!name)
        return 0;
    copy = strdup((const char *)name);
    if (!copy || kvr_grow((void **)&b->anchors, &b->anchors_cap, b->nanchors + 1,
                          sizeof(*b->anchors)) < 0) {
        free(copy);
        fail(b, 0, 0, KVR_ENOMEM, "out of memory");
        return -1;
    }
    b->anchors[b->nanchors].name = copy;
    b->anchors[b->nanchors].node = n;
    b->nanchors++;
    return 0;
}

static yt_node *find_anchor(const builder *b, const char *name)
{
    /* Last definition wins, as YAML specifies. */
    for (size_t i = b->nanchors; i > 0; i--)
        if (strcmp(b->anchors[i - 1].name, name) == 0)
            return b->anchors[i - 1].node;
    return NULL;
}

static void clear_anchors(builder *b)
{
    for (size_t i = 0; i < b->nanchors; i++)
        free(b->anchors[i].name);
    b->nanchors = 0;
}

static bool is_open(const builder *b, const yt_node *n)
{
    for (size_t i = 0; i < b->depth; i++)
        if (b->stack[i].node == n)
            return true;
    return false;
}

static bool tag_allowed(builder *b, const yaml_char_t *tag, const yaml_mark_t *m, bool *is_str)
{
    const char *t = (const char *)tag;
    *is_str = false;
    if (!t || strcmp(t, "!") == 0)
        return true;
    if (strcmp(t, "tag:yaml.org,2002:str") == 0) {
        *is_str = true;
        return true;
    }
    if (strcmp(t, "tag:yaml.org,2002:map") == 0 || strcmp(t, "tag:yaml.org,2002:seq") == 0 ||
        strcmp(t, "tag:yaml.org,2002:int") == 0 || strcmp(t, "tag:yaml.org,2002:bool") == 0 ||
        strcmp(t, "tag:yaml.org,2002:null") == 0 || strcmp(t, "tag:yaml.org,2002:float") == 0)
        return true;
    fail(b, (unsigned)m->line + 1, (unsigned)m->column + 1, KVR_ECONFIG,
         "unsupported YAML tag '%.64s'", t);
    return false;
}

/* Is the sequence starting now, under the root mapping, a list the caller takes item by item? */
static const char *stream_key(builder *b, const yaml_char_t *anchor_name)
{
    const frame *root;
    const yt_node *key;
    size_t filled;
    if (!b->hooks || b->depth != 1 || anchor_name)
        return NULL; /* an anchored list may be aliased whole: keep it */
    root = &b->stack[0];
    filled = b->nkids - root->base;
    if (root->node->kind != YT_MAP || (filled & 1) == 0)
        return NULL;
    key = b->kids[b->nkids - 1];
    if (key->kind != YT_SCALAR ||
        !b->hooks->want(b->hooks->arg, key->text, &b->kids[root->base], filled / 2))
        return NULL;
    return key->text;
}

/* Closes the innermost container: its children move from the stack to an exact-size array. */
static void close_node(builder *b)
{
    frame f = b->stack[--b->depth];
    yt_node *n = f.node;
    size_t count = b->nkids - f.base;
    if (count) {
        n->items = arena_alloc(b, count * sizeof(*n->items));
        if (!n->items)
            return;
        memcpy(n->items, &b->kids[f.base], count * sizeof(*n->items));
    }
    b->nkids = f.base;
    n->n = n->kind == YT_MAP ? count / 2 : count;
    if (n->kind == YT_MAP)
        finish_map(b, n);
    attach(b, n);
    if (f.item && b->nanchors == f.nanchors && !b->rc)
        arena_release(b, f.m); /* handed over, and nothing can refer to it any more */
}

static void handle_event(builder *b, const yaml_event_t *ev)
{
    yt_node *n = NULL;
    bool is_str;
    bool item = b->depth > 0 && b->stack[b->depth - 1].key;
    mark m = arena_mark(b);
    size_t nanchors = b->nanchors;

    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (kvr_grow((void **)&b->out->docs, &b->out->cap, b->out->ndocs + 1,
                     sizeof(*b->out->docs)) < 0) {
            fail(b, 0, 0, KVR_ENOMEM, "out of memory");
            return;
        }
        b->out->docs[b->out->ndocs].root = NULL;
        b->out->docs[b->out->ndocs].line = (unsigned)ev->start_mark.line + 1;
        b->out->docs[b->out->ndocs].col = (unsigned)ev->start_mark.column + 1;
        b->out->ndocs++;
        b->alias_expansion = 0;
        clear_anchors(b);
        return;
    case YAML_SCALAR_EVENT:
        if (!tag_allowed(b, ev->data.scalar.tag, &ev->start_mark, &is_str))
            return;
        n = node_new(b, YT_SCALAR, &ev->start_mark);
        if (!n)
            return;
        n->len = ev->data.scalar.length;
        n->text = arena_alloc(b, n->len + 1);
        if (!n->text)
            return;
        memcpy(n->text, ev->data.scalar.value, n->len);
        n->text[n->len] = '\0';
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !is_str;
        if (add_anchor(b, ev->data.scalar.anchor, n) < 0)
            return;
        attach(b, n);
        if (item && b->nanchors == nanchors && !b->rc)
            arena_release(b, m);
        return;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        const yaml_char_t *anc =
            seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        frame *f;
        if (!tag_allowed(b, tag, &ev->start_mark, &is_str))
            return;
        if (b->depth >= YT_MAX_DEPTH) {
            fail(b, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 KVR_ECONFIG, "nesting deeper than %u levels", YT_MAX_DEPTH);
            return;
        }
        n = node_new(b, seq ? YT_SEQ : YT_MAP, &ev->start_mark);
        if (!n || add_anchor(b, anc, n) < 0)
            return;
        f = &b->stack[b->depth];
        memset(f, 0, sizeof(*f));
        f->node = n;
        f->base = b->nkids;
        f->item = item;
        f->m = m;
        f->nanchors = nanchors;
        f->key = seq ? stream_key(b, anc) : NULL;
        b->depth++;
        return;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        close_node(b);
        return;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        n = find_anchor(b, name);
        if (!n) {
            fail(b, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 KVR_ECONFIG, "unknown alias '*%.64s'", name);
            return;
        }
        if (is_open(b, n)) {
            fail(b, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 KVR_ECONFIG, "alias '*%.64s' refers to a node that contains it", name);
            return;
        }
        b->alias_expansion = sat_add(b->alias_expansion, n->weight);
        if (b->alias_expansion > YT_MAX_ALIAS_EXPANSION) {
            fail(b, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                 KVR_ECONFIG,
                 "aliases expand to more than %llu nodes in this document (an alias bomb?)",
                 YT_MAX_ALIAS_EXPANSION);
            return;
        }
        attach(b, n);
        return;
    }
    default:
        return;
    }
}

int yt_parse(yt_stream *out, const char *file, const char *data, size_t size, kvr_diags *diags,
             const yt_hooks *hooks)
{
    yaml_parser_t parser;
    builder b;
    bool done = false;

    memset(out, 0, sizeof(*out));
    memset(&b, 0, sizeof(b));
    b.file = file;
    b.data = data;
    b.size = size;
    b.diags = diags;
    b.out = out;
    b.hooks = hooks && hooks->want && hooks->item ? hooks : NULL;

    if (!yaml_parser_initialize(&parser)) {
        kvr_diags_add(diags, file, 0, 0, "out of memory");
        return KVR_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, size);
    while (!done && !b.rc) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            report_parser_error(&b, &parser);
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        handle_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    clear_anchors(&b);
    free(b.anchors);
    free(b.kids);
    free(b.spare);
    if (b.rc) {
        /* Nodes still on the stack are in the arena and freed with it. */
        yt_stream_release(out);
        return b.rc;
    }
    return 0;
}

void yt_stream_release(yt_stream *s)
{
    yt_chunk *c = s->arena;
    while (c) {
        yt_chunk *prev = c->prev;
        free(c);
        c = prev;
    }
    free(s->docs);
    memset(s, 0, sizeof(*s));
}

static bool all_in(const char *s, const char *set)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr(set, *s))
            return false;
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float(const char *s)
{
    bool digits = false;
    if (*s == '-' || *s == '+')
        s++;
    while (*s >= '0' && *s <= '9') {
        s++;
        digits = true;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            s++;
            digits = true;
        }
    }
    if (!digits)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (!all_in(s, "0123456789"))
            return false;
        return true;
    }
    return *s == '\0';
}

static bool is_int(const char *s)
{
    if (s[0] == '0' && s[1] == 'o')
        return all_in(s + 2, "01234567");
    if (s[0] == '0' && s[1] == 'x')
        return all_in(s + 2, "0123456789abcdefABCDEF");
    if (*s == '-' || *s == '+')
        s++;
    return all_in(s, "0123456789");
}

yt_type yt_scalar_type(const yt_node *n)
{
    const char *s = n->text;
    if (n->kind != YT_SCALAR || !n->plain)
        return YT_T_STR;
    if (n->len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        return YT_T_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "false") ||
        !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return YT_T_BOOL;
    if (n->len > 64)
        return YT_T_STR;
    if (is_int(s))
        return YT_T_INT;
    if (is_float(s))
        return YT_T_FLOAT;
    if (s[0] == '+' || s[0] == '-')
        s++;
    if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") ||
        !strcmp(n->text, ".nan") || !strcmp(n->text, ".NaN") || !strcmp(n->text, ".NAN"))
        return YT_T_FLOAT;
    return YT_T_STR;
}

const char *yt_describe(const yt_node *n)
{
    if (!n)
        return "nothing";
    switch (n->kind) {
    case YT_SEQ:
        return "a list";
    case YT_MAP:
        return "a mapping";
    case YT_SCALAR:
        break;
    }
    switch (yt_scalar_type(n)) {
    case YT_T_NULL:
        return "null";
    case YT_T_BOOL:
        return "a boolean";
    case YT_T_INT:
        return "an integer";
    case YT_T_FLOAT:
        return "a number";
    case YT_T_STR:
        break;
    }
    return "a string";
}

yt_node *yt_map_get(const yt_node *map, const char *key)
{
    size_t klen = strlen(key);
    if (!map || map->kind != YT_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        const yt_node *k = map->items[2 * i];
        if (k->kind == YT_SCALAR && k->len == klen && memcmp(k->text, key, klen) == 0)
            return map->items[2 * i + 1];
    }
    return NULL;
}
