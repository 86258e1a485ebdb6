/*
 * Plan renderers: text for terminals (grouped by vault, + ~ - and a pause mark for steps held
 * by a closed gate), Markdown for pull-request comments (summary first, details folded), and
 * JSON per schema/plan.schema.json for programs. Secret values never reach these functions:
 * sensitive changes carry only markers.
 */
#include "kvr/plan.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_FORMAT_VERSION "1"


static const char *mark(const kvr_step *s)
{
    if (kvr_step_waiting(s))
        return "\xe2\x8f\xb8"; /* ⏸ */
    switch (s->action) {
    case KVR_ACTION_CREATE:
        return "+";
    case KVR_ACTION_CHANGE:
        return "~";
    case KVR_ACTION_RETIRE:
        return "-";
    }
    return "?";
}

static const char *color_of(const kvr_step *s)
{
    if (kvr_step_waiting(s))
        return "\x1b[33m";
    switch (s->action) {
    case KVR_ACTION_CREATE:
        return "\x1b[32m";
    case KVR_ACTION_CHANGE:
        return "\x1b[36m";
    case KVR_ACTION_RETIRE:
        return "\x1b[31m";
    }
    return "";
}

/*
 * Groups: steps without a vault first ("directory"), then each vault in order of first use
 * (names without case). Fills names[] (the group's vault, NULL for the directory) and order[],
 * the step indices group by group, each group in step order; returns the number of groups, or
 * KVR_INDEX_NONE when out of memory. Linear in the steps: an estate has hundreds of vaults.
 */
typedef struct group_probe {
    const char **names;
    const char *vault;
} group_probe;

static bool group_is(const void *arg, size_t g)
{
    const group_probe *gp = arg;
    return gp->names[g] && kvr_str_ieq(gp->names[g], gp->vault);
}

static size_t groups(const kvr_plan *p, const char **names, size_t *order)
{
    size_t n = 0, *group_of = NULL, *start = NULL;
    bool directory = false;
    kvr_index ix = {0};

    group_of = malloc((p->nsteps + 1) * sizeof(*group_of));
    start = calloc(p->nsteps + 2, sizeof(*start));
    if (!group_of || !start)
        goto oom;
    for (size_t i = 0; i < p->nsteps; i++)
        directory |= p->steps[i].vault == NULL;
    if (directory)
        names[n++] = NULL;
    for (size_t i = 0; i < p->nsteps; i++) {
        const char *v = p->steps[i].vault;
        group_probe gp = {names, v};
        uint64_t h;
        size_t g;
        if (!v) {
            group_of[i] = 0;
            continue;
        }
        h = kvr_hash_ci(KVR_HASH_SEED, v);
        g = kvr_index_first(&ix, h, group_is, &gp);
        if (g == KVR_INDEX_NONE) {
            g = n++;
            names[g] = v;
            if (kvr_index_put(&ix, h, g) < 0)
                goto oom;
        }
        group_of[i] = g;
    }
    /* a counting sort of the steps by group, stable */
    for (size_t i = 0; i < p->nsteps; i++)
        start[group_of[i] + 1]++;
    for (size_t g = 0; g < n; g++)
        start[g + 1] += start[g];
    for (size_t i = 0; i < p->nsteps; i++)
        order[start[group_of[i]]++] = i;
    kvr_index_release(&ix);
    free(group_of);
    free(start);
    return n;
oom:
    kvr_index_release(&ix);
    free(group_of);
    free(start);
    return KVR_INDEX_NONE;
}

static bool in_group(const kvr_step *s, const char *g)
{
    return g ? (s->vault && kvr_str_ieq(s->vault, g)) : s->vault == NULL;
}

static void text_step(const kvr_step *s, FILE *out, bool color, const char *indent)
{
    const char *on = color ? color_of(s) : "", *off = color ? "\x1b[0m" : "";
    fprintf(out, "%s%s%3zu %s %s%s: %s\n", indent, on, s->id, mark(s), s->object ? s->object : "",
            off, s->summary);
    for (size_t c = 0; c < s->nchanges; c++) {
        const kvr_change *ch = &s->changes[c];
        if (ch->from)
            fprintf(out, "%s        %s: %s -> %s\n", indent, ch->field, ch->from, ch->to);
        else
            fprintf(out, "%s        %s: %s\n", indent, ch->field, ch->to);
    }
    if (s->ndeps) {
        fprintf(out, "%s        after:", indent);
        for (size_t d = 0; d < s->ndeps; d++)
            fprintf(out, " %zu", s->deps[d]);
        fputc('\n', out);
    }
    for (size_t g = 0; g < s->ngates; g++) {
        const kvr_gate *gt = &s->gates[g];
        char when[KVR_TIME_ISO_MAX];
        if (gt->open) {
            fprintf(out, "%s        gate open: %s\n", indent, gt->reason);
            continue;
        }
        fprintf(out, "%s        waiting for: %s", indent, gt->reason);
        if (gt->opens_at) {
            kvr_time_iso(when, sizeof(when), gt->opens_at);
            fprintf(out, " (opens %s)", when);
        }
        fputc('\n', out);
    }
}

static const char *finding_word(const kvr_finding *f)
{
    return f->level == KVR_FINDING_ERROR ? "error" : "warning";
}

static void text_findings(const kvr_plan *p, FILE *out, bool color)
{
    if (!p->nfindings)
        return;
    fprintf(out, "\nfindings (no step changes them):\n");
    for (size_t i = 0; i < p->nfindings; i++) {
        const kvr_finding *f = &p->findings[i];
        fprintf(out, "  %s%s%s: %s", color ? (f->level == KVR_FINDING_ERROR ? "\033[31m" : "\033[33m") : "",
                finding_word(f), color ? "\033[0m" : "", f->object ? f->object : "");
        if (f->vault && (!f->object || strncmp(f->object, "vault ", 6) != 0))
            fprintf(out, " in vault '%s'", f->vault);
        fprintf(out, "\n      %s\n", f->message);
    }
}

/* What declared vaults hold that the desired state does not declare (unmanaged: report), one
   line each: text is the whole truth. */
static void text_unmanaged(const kvr_plan *p, FILE *out)
{
    if (!p->nunmanaged)
        return;
    fprintf(out, "\nunmanaged (in declared vaults, not declared; never changed):\n");
    for (size_t i = 0; i < p->nunmanaged; i++) {
        const kvr_unmanaged_object *u = &p->unmanaged[i];
        fprintf(out, "  ? %s '%s' in vault '%s'%s%s\n", u->kind, u->name, u->vault,
                u->note ? ": " : "", u->note ? u->note : "");
    }
}

int kvr_plan_render_text(const kvr_plan *p, FILE *out, bool color)
{
    const char **names = NULL;
    size_t ng, next = 0, *order = NULL;
    kvr_plan_summary sum;
    char now[KVR_TIME_ISO_MAX];

    kvr_time_iso(now, sizeof(now), p->now);
    if (p->nsteps == 0 && p->nholds == 0) {
        fprintf(out, "No changes: the estate matches the desired state (service time %s).\n", now);
        text_findings(p, out, color);
        text_unmanaged(p, out);
        return ferror(out) ? KVR_EIO : 0;
    }
    names = malloc((p->nsteps + 1) * sizeof(*names));
    order = malloc((p->nsteps + 1) * sizeof(*order));
    ng = names && order ? groups(p, names, order) : KVR_INDEX_NONE;
    if (ng == KVR_INDEX_NONE) {
        free(names);
        free(order);
        return KVR_ENOMEM;
    }
    fprintf(out, "kvreconcile plan (service time %s)\n", now);
    for (size_t g = 0; g < ng; g++) {
        if (names[g])
            fprintf(out, "\nvault '%s'\n", names[g]);
        else
            fprintf(out, "\ndirectory (Entra ID)\n");
        for (; next < p->nsteps && in_group(&p->steps[order[next]], names[g]); next++)
            text_step(&p->steps[order[next]], out, color, "");
    }
    free(names);
    free(order);
    if (p->nholds) {
        fprintf(out, "\nheld back (never done, whatever the YAML says):\n");
        for (size_t i = 0; i < p->nholds; i++) {
            const kvr_hold *h = &p->holds[i];
            if (h->object)
                fprintf(out, "  ! %s", h->object);
            else
                fprintf(out, "  ! vault '%s'", h->vault ? h->vault : "?");
            if (h->object && h->vault && strncmp(h->object, "vault ", 6) != 0)
                fprintf(out, " in vault '%s'", h->vault);
            fprintf(out, "\n      %s\n", h->reason);
        }
    }
    text_findings(p, out, color);
    text_unmanaged(p, out);
    kvr_plan_summarize(p, &sum);
    fprintf(out, "\nPlan: %zu to create, %zu to change, %zu to retire, %zu waiting.\n", sum.create,
            sum.change, sum.retire, sum.waiting);
    return ferror(out) ? KVR_EIO : 0;
}

static void md_findings(const kvr_plan *p, FILE *out)
{
    if (!p->nfindings)
        return;
    fprintf(out, "\n**Findings** (no step changes them):\n\n");
    for (size_t i = 0; i < p->nfindings; i++) {
        const kvr_finding *f = &p->findings[i];
        fprintf(out, "- %s%s%s %s: %s\n", f->level == KVR_FINDING_ERROR ? "**" : "",
                finding_word(f), f->level == KVR_FINDING_ERROR ? "**" : "",
                f->object ? f->object : (f->vault ? f->vault : ""), f->message);
    }
}

/* Per vault, its unmanaged objects by name (the first 20; the details and JSON have them all). */
static void md_unmanaged(const kvr_plan *p, FILE *out)
{
    if (!p->nunmanaged)
        return;
    fprintf(out, "\n**Unmanaged** (in declared vaults, not declared; never changed):\n\n");
    for (size_t i = 0, j; i < p->nunmanaged; i = j) {
        size_t shown = 0;
        fprintf(out, "- vault '%s':", p->unmanaged[i].vault);
        for (j = i; j < p->nunmanaged && strcmp(p->unmanaged[j].vault, p->unmanaged[i].vault) == 0;
             j++)
            if (shown < 20)
                fprintf(out, "%s %s `%s`", shown++ ? "," : "", p->unmanaged[j].kind,
                        p->unmanaged[j].name);
        if (j - i > shown)
            fprintf(out, " and %zu more", j - i - shown);
        fprintf(out, "\n");
    }
}

int kvr_plan_render_markdown(const kvr_plan *p, FILE *out)
{
    kvr_plan_summary sum;
    kvr_plan_summarize(p, &sum);
    fprintf(out, "### kvreconcile plan\n\n");
    if (p->nsteps == 0 && p->nholds == 0) {
        fprintf(out, "No changes: the estate matches the desired state.\n");
        md_findings(p, out);
        md_unmanaged(p, out);
        return ferror(out) ? KVR_EIO : 0;
    }
    fprintf(out, "**%zu to create, %zu to change, %zu to retire, %zu waiting**%s\n\n", sum.create,
            sum.change, sum.retire, sum.waiting,
            p->nholds ? " · some changes are **held back** (see below)" : "");
    fprintf(out, "| # | | vault | object | step | waits for |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < p->nsteps; i++) {
        const kvr_step *s = &p->steps[i];
        size_t shown = 0;
        fprintf(out, "| %zu | %s | %s | %s | %s | ", s->id, mark(s), s->vault ? s->vault : "",
                s->object ? s->object : "", s->summary);
        for (size_t g = 0; g < s->ngates; g++)
            if (!s->gates[g].open)
                fprintf(out, "%s%s", shown++ ? "; " : "", s->gates[g].reason);
        fprintf(out, " |\n");
    }
    if (p->nholds) {
        fprintf(out, "\n**Held back** (never done, whatever the YAML says):\n\n");
        for (size_t i = 0; i < p->nholds; i++) {
            const kvr_hold *h = &p->holds[i];
            if (h->object)
                fprintf(out, "- %s: %s\n", h->object, h->reason);
            else
                fprintf(out, "- vault '%s': %s\n", h->vault ? h->vault : "?", h->reason);
        }
    }
    md_findings(p, out);
    md_unmanaged(p, out);
    fprintf(out, "\n<details><summary>Details</summary>\n\n```\n");
    kvr_plan_render_text(p, out, false);
    fprintf(out, "```\n\n</details>\n");
    return ferror(out) ? KVR_EIO : 0;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

int kvr_plan_render_json(char **out, const kvr_plan *p, kvr_error *err)
{
    static const char *const actions[] = {"create", "change", "retire"};
    json_t *root = json_object(), *steps = json_array(), *holds = json_array(), *sum;
    kvr_plan_summary s;
    char now[KVR_TIME_ISO_MAX];
    int rc = 0;

    *out = NULL;
    if (!root || !steps || !holds)
        goto oom;
    kvr_time_iso(now, sizeof(now), p->now);
    kvr_plan_summarize(p, &s);
    json_object_set_new(root, "formatVersion", json_string(PLAN_FORMAT_VERSION));
    json_object_set_new(root, "serviceTime", json_string(now));
    for (size_t i = 0; i < p->nsteps; i++) {
        const kvr_step *st = &p->steps[i];
        json_t *o = json_object(), *ch = json_array(), *deps = json_array(), *gates = json_array();
        if (!o || !ch || !deps || !gates) {
            json_decref(o);
            json_decref(ch);
            json_decref(deps);
            json_decref(gates);
            goto oom;
        }
        json_object_set_new(o, "id", json_integer((json_int_t)st->id));
        json_object_set_new(o, "kind", json_string(kvr_step_kind_name(st->kind)));
        json_object_set_new(o, "action", json_string(actions[st->action]));
        json_object_set_new(o, "waiting", json_boolean(kvr_step_waiting(st)));
        json_object_set_new(o, "vault", str_or_null(st->vault));
        json_object_set_new(o, "object", str_or_null(st->object));
        json_object_set_new(o, "summary", json_string(st->summary));
        for (size_t c = 0; c < st->nchanges; c++) {
            json_t *co = json_object();
            json_object_set_new(co, "field", json_string(st->changes[c].field));
            json_object_set_new(co, "from", str_or_null(st->changes[c].from));
            json_object_set_new(co, "to", str_or_null(st->changes[c].to));
            json_object_set_new(co, "sensitive", json_boolean(st->changes[c].sensitive));
            json_array_append_new(ch, co);
        }
        json_object_set_new(o, "changes", ch);
        {
            json_t *ops = json_array();
            for (size_t k = 0; ops && k < st->nops; k++) {
                char *text = NULL;
                json_t *one = NULL;
                kvr_error ignored;
                if (kvr_op_to_json(&text, &st->ops[k], false, &ignored) == 0)
                    one = json_loads(text, 0, NULL);
                free(text);
                if (one)
                    json_array_append_new(ops, one);
            }
            json_object_set_new(o, "operations", ops ? ops : json_array());
        }
        for (size_t d = 0; d < st->ndeps; d++)
            json_array_append_new(deps, json_integer((json_int_t)st->deps[d]));
        json_object_set_new(o, "dependsOn", deps);
        for (size_t g = 0; g < st->ngates; g++) {
            json_t *go = json_object();
            char when[KVR_TIME_ISO_MAX];
            json_object_set_new(go, "kind", json_string(kvr_gate_kind_name(st->gates[g].kind)));
            json_object_set_new(go, "open", json_boolean(st->gates[g].open));
            json_object_set_new(go, "reason", json_string(st->gates[g].reason));
            if (st->gates[g].opens_at) {
                kvr_time_iso(when, sizeof(when), st->gates[g].opens_at);
                json_object_set_new(go, "opensAt", json_string(when));
            } else {
                json_object_set_new(go, "opensAt", json_null());
            }
            json_array_append_new(gates, go);
        }
        json_object_set_new(o, "gates", gates);
        if (st->pos.file) {
            json_t *src = json_object();
            json_object_set_new(src, "file", json_string(st->pos.file));
            json_object_set_new(src, "line", json_integer(st->pos.line));
            json_object_set_new(src, "column", json_integer(st->pos.col));
            json_object_set_new(o, "source", src);
        } else {
            json_object_set_new(o, "source", json_null());
        }
        json_array_append_new(steps, o);
    }
    json_object_set_new(root, "steps", steps);
    steps = NULL;
    for (size_t i = 0; i < p->nholds; i++) {
        json_t *h = json_object();
        json_object_set_new(h, "vault", str_or_null(p->holds[i].vault));
        json_object_set_new(h, "object", str_or_null(p->holds[i].object));
        json_object_set_new(h, "reason", json_string(p->holds[i].reason));
        json_array_append_new(holds, h);
    }
    json_object_set_new(root, "heldBack", holds);
    holds = NULL;
    {
        json_t *fs = json_array();
        for (size_t i = 0; fs && i < p->nfindings; i++) {
            const kvr_finding *f = &p->findings[i];
            json_array_append_new(fs, json_pack("{s:s,s:o,s:o,s:s}", "level", finding_word(f),
                                                "vault", str_or_null(f->vault), "object",
                                                str_or_null(f->object), "message", f->message));
        }
        if (!fs)
            goto oom;
        json_object_set_new(root, "findings", fs);
    }
    {
        json_t *us = json_array();
        for (size_t i = 0; us && i < p->nunmanaged; i++) {
            const kvr_unmanaged_object *u = &p->unmanaged[i];
            json_array_append_new(us, json_pack("{s:s,s:s,s:s,s:o}", "vault", u->vault, "kind",
                                                u->kind, "name", u->name, "note",
                                                str_or_null(u->note)));
        }
        if (!us)
            goto oom;
        json_object_set_new(root, "unmanaged", us);
    }
    sum = json_pack("{s:I,s:I,s:I,s:I}", "create", (json_int_t)s.create, "change",
                    (json_int_t)s.change, "retire", (json_int_t)s.retire, "waiting",
                    (json_int_t)s.waiting);
    if (!sum)
        goto oom;
    json_object_set_new(root, "summary", sum);
    *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!*out)
        goto oom;
    goto done;
oom:
    rc = kvr_error_set(err, KVR_ENOMEM, "out of memory while rendering the plan");
done:
    json_decref(root);
    json_decref(steps);
    json_decref(holds);
    return rc;
}
