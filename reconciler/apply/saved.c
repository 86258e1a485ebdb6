/*
 * Saved plans: what a reviewer approved, so that `apply PLANFILE` runs that and nothing else.
 *
 * A saved plan holds the plan as `plan -o json` shows it, the steps it approves with their
 * values, the desired-state files it was made from (paths and SHA-256 of their bytes) and a
 * SHA-256 of the live state it was computed against (kvr_live_canon: no clock, and value
 * markers only as classes of equal values, since a marker's key lives for one run). Applying it
 * re-reads both: if either differs, the plan is stale and nothing runs. While it runs, every
 * operation the executor is about to carry out must be one the saved plan shows, with the same
 * values (kvr_op_to_json's approval form); a value the plan could not know (the id of a key
 * version or a service principal that the plan itself makes) is accepted where the plan said
 * so, and so is a step planned again under another kind for the same operations (an access
 * policy granted once its principal exists). No secret value is in the file: sensitive changes carry
 * only "(sensitive …)" markers of a key that no longer exists.
 */
#include "kvr/apply.h"

#include <jansson.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define SAVED_FORMAT "kvreconcile-saved-plan"
#define SAVED_VERSION 2 /* 2: the approved steps carry their operations */
#define SAVED_MAX (64u * 1024u * 1024u) /* a plan file larger than this is not one of ours */

/* What the plan shows for a value that only the run itself can know. */
static const char *const UNKNOWN_UNTIL_APPLY[] = {KVR_PLAN_NEW_VERSION, KVR_PLAN_WHEN_RELEASED,
                                                   KVR_PLAN_NEW_PRINCIPAL, KVR_PLAN_NEW_APP,
                                                   NULL};

struct kvr_saved_plan {
    json_t *root; /* the whole file */
    json_t *approved;
    char **paths;
    size_t npaths;
};

static void sha256_hex(char out[65], const void *data, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* SHA-256 of the bytes of file `path`; KVR_ENOTFOUND / KVR_EIO / KVR_ETOOBIG with a message. */
static int file_digest(char out[65], const char *path, kvr_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = kvr_file_read(&text, &len, path, KVR_MODEL_MAX_FILE_BYTES, 0, err);
    if (rc < 0)
        return rc;
    sha256_hex(out, text, len);
    free(text);
    return 0;
}

static bool same(const char *a, json_t *b)
{
    const char *bs = json_string_value(b);
    return (!a && !bs) || (a && bs && strcmp(a, bs) == 0);
}

static json_t *approved_step(const kvr_step *s)
{
    static const char *const actions[] = {"create", "change", "retire"};
    json_t *ch = json_array(), *o;
    for (size_t c = 0; ch && c < s->nchanges; c++)
        json_array_append_new(ch, json_pack("{s:s,s:s?,s:s?,s:b}", "field", s->changes[c].field,
                                            "from", s->changes[c].from, "to", s->changes[c].to,
                                            "sensitive", s->changes[c].sensitive));
    o = json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:o}", "kind", kvr_step_kind_name(s->kind),
                  "action", actions[s->action], "vault", s->vault, "object", s->object, "name",
                  s->name, "version", s->version, "extra", s->extra, "changes", ch);
    if (o) {
        json_t *ops = json_array();
        for (size_t k = 0; ops && k < s->nops; k++) {
            char *text = NULL;
            kvr_error ignored;
            json_t *one = kvr_op_to_json(&text, &s->ops[k], true, &ignored) == 0
                              ? json_loads(text, 0, NULL)
                              : NULL;
            free(text);
            if (!one || json_array_append_new(ops, one) < 0) {
                json_decref(ops);
                ops = NULL;
            }
        }
        if (!ops || json_object_set_new(o, "operations", ops) < 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

int kvr_saved_plan_write(const char *path, const kvr_plan *p, const kvr_estate *d,
                         const char *const *paths, size_t npaths, const char *live_canon,
                         kvr_error *err)
{
    json_t *root = NULL, *files = json_array(), *approved = json_array(), *given = json_array(),
           *plan = NULL;
    char *plan_text = NULL, *text = NULL, digest[65], now[KVR_TIME_ISO_MAX];
    json_error_t jerr;
    int rc = 0;

    if (!files || !approved || !given)
        goto oom;
    for (size_t i = 0; i < npaths; i++)
        json_array_append_new(given, json_string(paths[i]));
    for (size_t i = 0; i < d->files.len; i++) {
        if ((rc = file_digest(digest, d->files.items[i], err)) < 0)
            goto done;
        json_array_append_new(files, json_pack("{s:s,s:s}", "path", d->files.items[i], "sha256",
                                               digest));
    }
    for (size_t i = 0; i < p->nsteps; i++) {
        json_t *a = approved_step(&p->steps[i]);
        if (!a)
            goto oom;
        json_array_append_new(approved, a);
    }
    if ((rc = kvr_plan_render_json(&plan_text, p, err)) < 0)
        goto done;
    if (!(plan = json_loads(plan_text, 0, &jerr)))
        goto oom;
    sha256_hex(digest, live_canon, strlen(live_canon));
    kvr_time_iso(now, sizeof(now), p->now);
    root = json_pack("{s:s,s:i,s:s,s:O,s:O,s:s,s:O,s:O}", "format", SAVED_FORMAT,
                     "formatVersion", SAVED_VERSION, "serviceTime", now, "paths", given, "files",
                     files, "liveDigest", digest, "approved", approved, "plan", plan);
    if (!root || !(text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
        goto oom;
    rc = kvr_file_write_atomic(path, text, strlen(text), 0644, err);
    goto done;
oom:
    rc = kvr_error_oom(err);
done:
    free(text);
    free(plan_text);
    json_decref(root);
    json_decref(plan);
    json_decref(files);
    json_decref(approved);
    json_decref(given);
    return rc;
}

void kvr_saved_plan_free(kvr_saved_plan *sp)
{
    if (!sp)
        return;
    free(sp->paths);
    json_decref(sp->root);
    free(sp);
}

int kvr_saved_plan_load(kvr_saved_plan **out, const char *path, kvr_error *err)
{
    kvr_saved_plan *sp = NULL;
    char *text = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *given;
    int rc;

    *out = NULL;
    if ((rc = kvr_file_read(&text, &len, path, SAVED_MAX, 0, err)) < 0)
        return rc;
    if (!(sp = calloc(1, sizeof(*sp)))) {
        free(text);
        return kvr_error_oom(err);
    }
    sp->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!sp->root) {
        rc = kvr_error_set(err, KVR_EINVAL, "'%s' is not a saved plan: line %d, column %d: %s",
                           path, jerr.line, jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(sp->root) ||
        !same(SAVED_FORMAT, json_object_get(sp->root, "format"))) {
        rc = kvr_error_set(err, KVR_EINVAL,
                           "'%s' is not a saved plan (make one with 'kvreconcile plan --out')",
                           path);
        goto done;
    }
    if (json_integer_value(json_object_get(sp->root, "formatVersion")) != SAVED_VERSION) {
        rc = kvr_error_set(err, KVR_EINVAL,
                           "'%s' is a saved plan of another format version; plan again", path);
        goto done;
    }
    given = json_object_get(sp->root, "paths");
    sp->approved = json_object_get(sp->root, "approved");
    if (!json_is_array(given) || !json_array_size(given) || !json_is_array(sp->approved) ||
        !json_is_array(json_object_get(sp->root, "files")) ||
        !json_is_string(json_object_get(sp->root, "liveDigest"))) {
        rc = kvr_error_set(err, KVR_EINVAL, "'%s': a saved plan without its paths, files, "
                                            "approved steps or live digest", path);
        goto done;
    }
    if (!(sp->paths = calloc(json_array_size(given) + 1, sizeof(*sp->paths)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(given); i++)
        if (!(sp->paths[sp->npaths++] = (char *)json_string_value(json_array_get(given, i)))) {
            rc = kvr_error_set(err, KVR_EINVAL, "'%s': paths must be strings", path);
            goto done;
        }
    *out = sp;
    sp = NULL;
done:
    kvr_saved_plan_free(sp);
    return rc;
}

const char *const *kvr_saved_plan_paths(const kvr_saved_plan *sp, size_t *n)
{
    *n = sp->npaths;
    return (const char *const *)sp->paths;
}

int kvr_saved_plan_check_desired(const kvr_saved_plan *sp, const kvr_estate *d, kvr_error *err)
{
    json_t *files = json_object_get(sp->root, "files");
    size_t n = json_array_size(files);
    char digest[65];
    for (size_t i = 0; i < d->files.len || i < n; i++) {
        const char *want = json_string_value(json_object_get(json_array_get(files, i), "path"));
        const char *sum = json_string_value(json_object_get(json_array_get(files, i), "sha256"));
        if (i >= n)
            return kvr_error_set(err, KVR_ESTALE,
                                 "the plan is stale: '%s' is new in the desired state; plan again",
                                 d->files.items[i]);
        if (i >= d->files.len || !want || strcmp(want, d->files.items[i]) != 0)
            return kvr_error_set(err, KVR_ESTALE,
                                 "the plan is stale: '%s' is no longer part of the desired state; "
                                 "plan again",
                                 want ? want : "?");
        if (file_digest(digest, want, err) < 0 || !sum || strcmp(sum, digest) != 0)
            return kvr_error_set(err, KVR_ESTALE,
                                 "the plan is stale: '%s' changed since the plan was made; plan "
                                 "again",
                                 want);
    }
    return 0;
}

int kvr_saved_plan_check_live(const kvr_saved_plan *sp, const char *live_canon, kvr_error *err)
{
    char digest[65];
    sha256_hex(digest, live_canon, strlen(live_canon));
    if (strcmp(digest, json_string_value(json_object_get(sp->root, "liveDigest"))) != 0)
        return kvr_error_set(err, KVR_ESTALE,
                             "the plan is stale: the live estate changed since the plan was made "
                             "(made at %s service time); plan again",
                             json_is_string(json_object_get(sp->root, "serviceTime"))
                                 ? json_string_value(json_object_get(sp->root, "serviceTime"))
                                 : "?");
    return 0;
}

static bool unknown_until_apply(const char *v)
{
    for (size_t i = 0; v && UNKNOWN_UNTIL_APPLY[i]; i++)
        if (strcmp(v, UNKNOWN_UNTIL_APPLY[i]) == 0)
            return true;
    return false;
}

/* Does approved step `a` show change `c` with its value? */
static bool shows_change(json_t *a, const kvr_change *c)
{
    json_t *changes = json_object_get(a, "changes"), *x;
    size_t i;
    json_array_foreach(changes, i, x)
    {
        const char *to = json_string_value(json_object_get(x, "to"));
        if (!same(c->field, json_object_get(x, "field")))
            continue;
        if (c->sensitive || json_is_true(json_object_get(x, "sensitive")))
            /* markers of another run's key: the reviewer saw that it changes, not to what */
            return c->sensitive && json_is_true(json_object_get(x, "sensitive"));
        return same(c->to, json_object_get(x, "to")) || unknown_until_apply(to);
    }
    return false;
}

/* Does approved value `a` allow actual value `b`? Equal, or `a` a value only the run knows. */
static bool allows(json_t *a, json_t *b)
{
    const char *key;
    json_t *av;
    size_t i;
    if (json_is_string(a) && unknown_until_apply(json_string_value(a)))
        return json_is_string(b);
    if (json_is_object(a)) {
        if (!json_is_object(b) || json_object_size(a) != json_object_size(b))
            return false;
        json_object_foreach(a, key, av)
        {
            if (!allows(av, json_object_get(b, key)))
                return false;
        }
        return true;
    }
    if (json_is_array(a)) {
        if (!json_is_array(b) || json_array_size(a) != json_array_size(b))
            return false;
        json_array_foreach(a, i, av)
        {
            if (!allows(av, json_array_get(b, i)))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

/* Does any approved step show operation `op` (approval JSON) with its values? */
static bool op_approved(const kvr_saved_plan *sp, json_t *op)
{
    json_t *a, *x;
    size_t i, k;
    json_array_foreach(sp->approved, i, a)
    {
        json_array_foreach(json_object_get(a, "operations"), k, x)
        {
            if (allows(x, op))
                return true;
        }
    }
    return false;
}

/* A step without operations (a verification): the reviewed plan must show it, as before. */
static bool step_shown(const kvr_saved_plan *sp, const kvr_step *s, const kvr_change **missing)
{
    json_t *a;
    size_t i;
    json_array_foreach(sp->approved, i, a)
    {
        if (!same(kvr_step_kind_name(s->kind), json_object_get(a, "kind")) ||
            !same(s->vault, json_object_get(a, "vault")) ||
            !same(s->name, json_object_get(a, "name")) ||
            (!same(s->extra, json_object_get(a, "extra")) &&
             !unknown_until_apply(json_string_value(json_object_get(a, "extra")))) ||
            (!same(s->version, json_object_get(a, "version")) &&
             !unknown_until_apply(json_string_value(json_object_get(a, "version")))))
            continue;
        *missing = NULL;
        for (size_t c = 0; c < s->nchanges && !*missing; c++)
            if (!shows_change(a, &s->changes[c]))
                *missing = &s->changes[c];
        if (!*missing)
            return true;
    }
    return false;
}

bool kvr_saved_plan_allows(const kvr_saved_plan *sp, const kvr_step *s, char *why, size_t size)
{
    const kvr_change *missing = NULL;
    if (!s->nops) {
        if (step_shown(sp, s, &missing))
            return true;
        if (missing)
            snprintf(why, size, "the reviewed plan shows %s: %s, but not %s = %s",
                     s->object ? s->object : "the step", s->summary, missing->field,
                     missing->sensitive ? "(sensitive)" : missing->to ? missing->to : "(unset)");
        else
            snprintf(why, size, "the reviewed plan does not show %s: %s",
                     s->object ? s->object : "the step", s->summary);
        return false;
    }
    for (size_t k = 0; k < s->nops; k++) {
        char *text = NULL;
        kvr_error ignored;
        json_t *op = kvr_op_to_json(&text, &s->ops[k], true, &ignored) == 0
                         ? json_loads(text, 0, NULL)
                         : NULL;
        bool ok = op && op_approved(sp, op);
        json_decref(op);
        if (!ok) {
            snprintf(why, size, "the reviewed plan does not show %s: %s, operation %s%s%.300s",
                     s->object ? s->object : "the step", s->summary,
                     kvr_op_kind_name(s->ops[k].kind), text ? " " : "", text ? text : "");
            free(text);
            return false;
        }
        free(text);
    }
    return true;
}
