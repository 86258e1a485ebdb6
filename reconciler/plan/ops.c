/*
 * The last pass: every step gets the object-level operations that realise it (kvr/op.h), with
 * every value they send, computed here from (desired, live, now) and nothing else. The executor
 * hands them to a provider one by one; a provider never looks anything up, so what a plan shows
 * is what runs. Values that only the run can know (the id of a service principal the same plan
 * creates) are the KVR_PLAN_* placeholders; a step holding one depends on the step that makes
 * the value, and the executor plans again before it runs, so that it runs with the real one.
 *
 * The access-policy delta of a vault is computed here too: per declared app, the permissions
 * to add and to take away, never touching other principals' entries.
 */
#include "build.h"

#include <stdlib.h>
#include <string.h>

/* ---- memory: the plan owns every string and array of its operations ----------------------- */

static const char *S(pb *b, const char *s)
{
    char *d;
    if (!s)
        return NULL;
    d = kvr_strpool_dup(&b->p->opstrings, s);
    if (!d)
        pb_oom(b);
    return d;
}

static void *block(pb *b, size_t n, size_t size)
{
    void *m;
    if (!n)
        return NULL;
    if (kvr_grow((void **)&b->p->blocks, &b->p->blocks_cap, b->p->nblocks + 1,
                 sizeof(*b->p->blocks)) < 0 ||
        !(m = calloc(n, size))) {
        pb_oom(b);
        return NULL;
    }
    b->p->blocks[b->p->nblocks++] = m;
    return m;
}

static kvr_op *op_add(pb *b, size_t s, kvr_op_kind kind)
{
    kvr_step *st = &b->p->steps[s];
    kvr_op *ops;
    if (b->rc)
        return NULL;
    ops = realloc(st->ops, (st->nops + 1) * sizeof(*ops));
    if (!ops) {
        pb_oom(b);
        return NULL;
    }
    st->ops = ops;
    memset(&ops[st->nops], 0, sizeof(*ops));
    ops[st->nops].kind = kind;
    return &ops[st->nops++];
}

static void copy_list(pb *b, kvr_strlist *out, const kvr_strlist *in)
{
    out->len = 0;
    out->items = block(b, in ? in->len : 0, sizeof(char *));
    for (size_t i = 0; out->items && i < in->len; i++)
        out->items[out->len++] = (char *)S(b, in->items[i]);
}

/* A copy of `t`, plus the tags of `keep` whose names start with kvr- (kvreconcile's markers),
   plus (extra, value) when extra is not NULL. */
static void copy_tags(pb *b, kvr_tags *out, const kvr_tags *t, const kvr_tags *keep,
                      const char *extra, const char *value)
{
    size_t n = (t ? t->len : 0) + (keep ? keep->len : 0) + 1;
    out->len = 0;
    out->items = block(b, n, sizeof(*out->items));
    if (!out->items)
        return;
    for (size_t i = 0; t && i < t->len; i++) {
        out->items[out->len].key = (char *)S(b, t->items[i].key);
        out->items[out->len++].value = (char *)S(b, t->items[i].value);
    }
    for (size_t i = 0; keep && i < keep->len; i++) {
        if (strncmp(keep->items[i].key, "kvr-", 4) != 0 || kvr_tags_get(t, keep->items[i].key) ||
            (extra && strcmp(keep->items[i].key, extra) == 0))
            continue;
        out->items[out->len].key = (char *)S(b, keep->items[i].key);
        out->items[out->len++].value = (char *)S(b, keep->items[i].value);
    }
    if (extra) {
        out->items[out->len].key = (char *)S(b, extra);
        out->items[out->len++].value = (char *)S(b, value);
    }
}

static void copy_network(pb *b, kvr_network *out, const kvr_network *in)
{
    out->set = in->set;
    out->default_action = (char *)S(b, in->default_action);
    out->bypass = (char *)S(b, in->bypass);
    out->public_access = (char *)S(b, in->public_access);
    copy_list(b, &out->ip_rules, &in->ip_rules);
    copy_list(b, &out->vnet_rules, &in->vnet_rules);
}

/* ---- lookups ------------------------------------------------------------------------------ */

static const kvr_live_app *live_app(const pb *b, const char *app_name)
{
    const kvr_app *a = kvr_estate_app(b->d, app_name);
    return a ? kvr_live_app_get(b->l, a->display_name) : NULL;
}

static const char *app_display(const pb *b, const char *app_name)
{
    const kvr_app *a = kvr_estate_app(b->d, app_name);
    return a ? a->display_name : app_name;
}

static const char *subscription(const pb *b)
{
    return b->in->subscription ? b->in->subscription : "{subscription}";
}

static kvr_op_vault_ref vault_ref(pb *b, const char *name)
{
    const kvr_vault *v = kvr_estate_vault(b->d, name);
    const kvr_live_vault *lv = pb_live_vault(b, name);
    kvr_op_vault_ref r = {S(b, subscription(b)),
                          S(b, lv ? lv->resource_group : v ? v->resource_group : NULL),
                          S(b, name)};
    return r;
}

static void vault_props(pb *b, kvr_op_vault_props *p, const kvr_vault *v)
{
    p->location = S(b, v->location);
    p->sku = v->sku;
    p->rbac = v->rbac;
    p->soft_delete_days = v->soft_delete_days;
    p->purge_protection = v->purge_protection;
    copy_network(b, &p->network, &v->network);
}

/* ---- access policies ---------------------------------------------------------------------- */

/* Names of `a` that `b` lacks (case-insensitive), into out (plan memory). */
static void perms_minus(pb *bb, kvr_strlist *out, const kvr_strlist *a, const kvr_strlist *b)
{
    out->len = 0;
    out->items = block(bb, a ? a->len : 0, sizeof(char *));
    for (size_t i = 0; out->items && i < a->len; i++) {
        bool found = false;
        for (size_t j = 0; b && j < b->len && !found; j++)
            found = kvr_str_ieq(a->items[i], b->items[j]);
        for (size_t j = 0; j < out->len && !found; j++)
            found = kvr_str_ieq(a->items[i], out->items[j]);
        if (!found)
            out->items[out->len++] = (char *)S(bb, a->items[i]);
    }
}

static const kvr_access_policy *declared_policy(const kvr_vault *v, const char *app)
{
    for (size_t i = 0; i < v->npolicies; i++)
        if (strcmp(v->policies[i].app, app) == 0)
            return &v->policies[i];
    return NULL;
}

static const kvr_live_policy *live_entry(const kvr_live_vault *lv, const char *object_id)
{
    for (size_t i = 0; lv && i < lv->npolicies; i++)
        if (kvr_str_ieq(lv->policies[i].object_id, object_id))
            return &lv->policies[i];
    return NULL;
}

/*
 * The edits that make the entries of the declared apps with a service principal exactly as
 * declared: first what is missing is added, then what is too much is taken away (an entry
 * never disappears on the way).
 */
static void policy_sync(pb *b, size_t s, const kvr_vault *v, const kvr_live_vault *lv)
{
    kvr_op_policy *add = block(b, b->d->napps, sizeof(*add));
    kvr_op_policy *rem = block(b, b->d->napps, sizeof(*rem));
    size_t nadd = 0, nrem = 0;
    if (!add || !rem)
        return;
    for (size_t i = 0; i < b->d->napps; i++) {
        const kvr_app *a = &b->d->apps[i];
        const kvr_live_app *la = kvr_live_app_get(b->l, a->display_name);
        const kvr_access_policy *ap = declared_policy(v, a->name);
        const kvr_live_policy *lp;
        char want[512] = "none", have[512] = "none";
        if (!la || !la->sp_id)
            continue; /* a vault.access step grants it once the principal exists */
        lp = live_entry(lv, la->sp_id);
        if (ap)
            kvr_plan_policy_canon(want, sizeof(want), &ap->keys, &ap->secrets, &ap->certificates);
        if (lp)
            kvr_plan_policy_canon(have, sizeof(have), &lp->keys, &lp->secrets, &lp->certificates);
        if (strcmp(want, have) == 0)
            continue;
        {
            const kvr_strlist *w[3] = {ap ? &ap->keys : NULL, ap ? &ap->secrets : NULL,
                                       ap ? &ap->certificates : NULL};
            const kvr_strlist *h[3] = {lp ? &lp->keys : NULL, lp ? &lp->secrets : NULL,
                                       lp ? &lp->certificates : NULL};
            kvr_op_policy *x = &add[nadd], *y = &rem[nrem];
            x->object_id = y->object_id = S(b, la->sp_id);
            x->who = y->who = S(b, a->display_name);
            perms_minus(b, &x->keys, w[0], h[0]);
            perms_minus(b, &x->secrets, w[1], h[1]);
            perms_minus(b, &x->certificates, w[2], h[2]);
            perms_minus(b, &y->keys, h[0], w[0]);
            perms_minus(b, &y->secrets, h[1], w[1]);
            perms_minus(b, &y->certificates, h[2], w[2]);
            if (x->keys.len + x->secrets.len + x->certificates.len)
                nadd++;
            if (y->keys.len + y->secrets.len + y->certificates.len)
                nrem++;
        }
    }
    for (int r = 0; r < 2; r++) {
        size_t n = r ? nrem : nadd;
        kvr_op *op;
        if (!n || !(op = op_add(b, s, KVR_OP_VAULT_POLICY_EDIT)))
            continue;
        op->u.policy.ref = vault_ref(b, v->name);
        op->u.policy.remove = r == 1;
        op->u.policy.entries = r ? rem : add;
        op->u.policy.nentries = n;
    }
}

/* The declared entry of app `app` on vault v, for a principal (or a placeholder). */
static void policy_entry(pb *b, kvr_op_policy *e, const kvr_access_policy *ap,
                         const char *object_id)
{
    e->object_id = S(b, object_id);
    e->who = S(b, app_display(b, ap->app));
    copy_list(b, &e->keys, &ap->keys);
    copy_list(b, &e->secrets, &ap->secrets);
    copy_list(b, &e->certificates, &ap->certificates);
}

/* ---- one step ----------------------------------------------------------------------------- */

static void vault_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const kvr_vault *v = kvr_estate_vault(b->d, st->name);
    const kvr_live_vault *lv = pb_live_vault(b, st->name);
    kvr_op *op;
    if (!v)
        return;
    switch (st->kind) {
    case KVR_STEP_VAULT_CREATE:
        if (!(op = op_add(b, s, KVR_OP_VAULT_PUT)))
            return;
        op->u.vault.ref = vault_ref(b, v->name);
        vault_props(b, &op->u.vault.props, v);
        op->u.vault.set_props = op->u.vault.set_tags = true;
        copy_tags(b, &op->u.vault.tags, &v->tags, NULL, NULL, NULL);
        if (!v->rbac) {
            kvr_op_policy *e = block(b, v->npolicies, sizeof(*e));
            size_t n = 0;
            for (size_t i = 0; e && i < v->npolicies; i++) {
                const kvr_live_app *la = live_app(b, v->policies[i].app);
                if (la && la->sp_id) /* the others: a vault.access step, once they exist */
                    policy_entry(b, &e[n++], &v->policies[i], la->sp_id);
            }
            op->u.vault.policies = e;
            op->u.vault.npolicies = n;
            op->u.vault.self_access = true;
        }
        return;
    case KVR_STEP_VAULT_RECOVER:
        if (!(op = op_add(b, s, KVR_OP_VAULT_RECOVER)))
            return;
        op->u.vault.ref = vault_ref(b, v->name);
        op->u.vault.props.location = S(b, v->location);
        op->u.vault.props.sku = v->sku;
        return;
    case KVR_STEP_VAULT_UPDATE: {
        /* the PATCH carries what the step's changes name: the properties, the tags, or both
           (access-policy entries are edits of their own) */
        bool props = false, tags = false;
        for (size_t c = 0; c < st->nchanges; c++) {
            const char *f = st->changes[c].field;
            if (strncmp(f, "tags.", 5) == 0)
                tags = true;
            else if (strncmp(f, "accessPolicies[", 15) != 0)
                props = true;
        }
        if ((props || tags) && lv && (op = op_add(b, s, KVR_OP_VAULT_PATCH))) {
            op->u.vault.ref = vault_ref(b, v->name);
            if ((op->u.vault.set_props = props))
                vault_props(b, &op->u.vault.props, v);
            if ((op->u.vault.set_tags = tags))
                copy_tags(b, &op->u.vault.tags, &v->tags, &lv->tags, NULL, NULL);
        }
        if (!v->rbac && lv)
            policy_sync(b, s, v, lv);
        return;
    }
    case KVR_STEP_VAULT_MARK_UNUSED:
        if (!lv || !(op = op_add(b, s, KVR_OP_VAULT_PATCH)))
            return;
        op->u.vault.ref = vault_ref(b, v->name);
        op->u.vault.set_tags = true;
        copy_tags(b, &op->u.vault.tags, &lv->tags, NULL, KVR_TAG_SUPERSEDED, st->extra);
        return;
    case KVR_STEP_VAULT_RETIRE:
        if ((op = op_add(b, s, KVR_OP_VAULT_DELETE)))
            op->u.vault.ref = vault_ref(b, v->name);
        return;
    case KVR_STEP_VAULT_ACCESS: {
        /* st->name: the vault, st->extra: the app */
        const kvr_access_policy *ap = declared_policy(v, st->extra);
        const kvr_live_app *la = live_app(b, st->extra);
        kvr_op_policy *e;
        if (!ap || !(op = op_add(b, s, KVR_OP_VAULT_POLICY_EDIT)) || !(e = block(b, 1, sizeof(*e))))
            return;
        policy_entry(b, e, ap, la && la->sp_id ? la->sp_id : KVR_PLAN_NEW_PRINCIPAL);
        op->u.policy.ref = vault_ref(b, v->name);
        op->u.policy.entries = e;
        op->u.policy.nentries = 1;
        return;
    }
    default:
        return;
    }
}

static void password_add(pb *b, size_t s, const kvr_app *a, const kvr_credential *cr,
                         const kvr_live_app *la)
{
    kvr_op *op = op_add(b, s, KVR_OP_PASSWORD_ADD);
    char display[160];
    if (!op)
        return;
    snprintf(display, sizeof(display), KVR_CRED_PREFIX "%s", cr->name);
    op->u.password.app_object_id = S(b, la ? la->object_id : KVR_PLAN_NEW_APP);
    op->u.password.app_name = S(b, a->display_name);
    op->u.password.display_name = S(b, display);
    op->u.password.end = b->now + cr->lifetime;
    op->u.password.store_vault = S(b, cr->store_vault);
    op->u.password.store_secret = S(b, cr->store_secret);
}

static void password_remove(pb *b, size_t s, const char *app_name, const kvr_live_app *la,
                            const char *key_id)
{
    kvr_op *op = op_add(b, s, KVR_OP_PASSWORD_REMOVE);
    if (!op)
        return;
    op->u.password.app_object_id = S(b, la ? la->object_id : KVR_PLAN_NEW_APP);
    op->u.password.app_name = S(b, app_display(b, app_name));
    op->u.password.key_id = S(b, key_id);
}

/* la's tags without those starting with `drop` (and `drop2`), plus `add` (may be NULL). */
static void app_tags_without(pb *b, kvr_strlist *out, const kvr_strlist *tags, const char *drop,
                             const char *drop2, const char *add)
{
    out->len = 0;
    out->items = block(b, tags->len + 1, sizeof(char *));
    for (size_t i = 0; out->items && i < tags->len; i++)
        if (strncasecmp(tags->items[i], drop, strlen(drop)) != 0 &&
            (!drop2 || strncasecmp(tags->items[i], drop2, strlen(drop2)) != 0))
            out->items[out->len++] = (char *)S(b, tags->items[i]);
    if (out->items && add)
        out->items[out->len++] = (char *)S(b, add);
}

/* An app that left the desired state (retire.c's retire_apps): its mark, then its retirement:
   access-policy entries, role assignments on the estate's vaults, client secrets, the app. */
static void retired_app_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const kvr_live_app *la = kvr_live_app_get(b->l, st->name);
    char marker[256], prefix[256];
    bool shared, other;
    kvr_op *op;
    if (!la || !kvr_plan_app_marker(b, marker, sizeof(marker)) ||
        !kvr_plan_app_retiring_prefix(b, prefix, sizeof(prefix)))
        return;
    other = kvr_plan_app_shared(la, marker);
    shared = other || kvr_plan_app_elsewhere(b, la);
    if (st->kind == KVR_STEP_APP_MARK_RETIRING) {
        char *tag = pb_printf(b, "%s%s", prefix, st->extra ? st->extra : "");
        if (tag && (op = op_add(b, s, KVR_OP_APP_TAGS))) {
            op->u.app_tags.object_id = S(b, la->object_id);
            op->u.app_tags.name = S(b, la->display_name);
            app_tags_without(b, &op->u.app_tags.tags, &la->tags, prefix, NULL, tag);
        }
        free(tag);
        return;
    }
    for (size_t v = 0; la->sp_id && v < b->d->nvaults; v++) {
        const kvr_live_vault *lv = pb_live_vault(b, b->d->vaults[v].name);
        for (size_t e = 0; lv && e < lv->npolicies; e++) {
            const kvr_live_policy *lp = &lv->policies[e];
            kvr_op_policy *x;
            if (!kvr_str_ieq(lp->object_id, la->sp_id) ||
                !(op = op_add(b, s, KVR_OP_VAULT_POLICY_EDIT)) || !(x = block(b, 1, sizeof(*x))))
                continue;
            x->object_id = S(b, lp->object_id);
            x->who = S(b, la->display_name);
            copy_list(b, &x->keys, &lp->keys);
            copy_list(b, &x->secrets, &lp->secrets);
            copy_list(b, &x->certificates, &lp->certificates);
            op->u.policy.ref = vault_ref(b, lv->name);
            op->u.policy.remove = true;
            op->u.policy.entries = x;
            op->u.policy.nentries = 1;
        }
    }
    for (size_t r = 0; la->sp_id && r < b->l->nroles; r++) {
        const kvr_live_role *lr = &b->l->roles[r];
        if (!kvr_str_ieq(lr->principal_id, la->sp_id) || !kvr_plan_role_vault(b, lr) ||
            !(op = op_add(b, s, KVR_OP_ROLE_REMOVE)))
            continue;
        op->u.role.scope = S(b, lr->scope);
        op->u.role.name = S(b, lr->name);
        op->u.role.role_id = S(b, lr->role_id);
        op->u.role.role_name = S(b, kvr_model_role_name(lr->role_id));
        op->u.role.principal_id = S(b, la->sp_id);
        op->u.role.principal_name = S(b, la->display_name);
    }
    if (shared) { /* used elsewhere too: only this estate's marks go (its marker when another
                     estate's is on it; its mark alone when its marker is that other user's) */
        if ((op = op_add(b, s, KVR_OP_APP_TAGS))) {
            op->u.app_tags.object_id = S(b, la->object_id);
            op->u.app_tags.name = S(b, la->display_name);
            app_tags_without(b, &op->u.app_tags.tags, &la->tags, prefix, other ? marker : NULL,
                             NULL);
        }
        return;
    }
    /* the stored copies first: a run killed after them removes the passwords next time (the
       mark keeps the app this estate's); the other way round would leave copies of nothing */
    for (size_t c = 0; c < la->ncreds; c++) {
        const kvr_live_secret *ls;
        for (size_t k = 0; (ls = pb_next_copy(b, la->creds[c].key_id, &k));) {
            if (!(op = op_add(b, s, KVR_OP_OBJECT_DELETE)))
                continue;
            op->u.object.collection = KVR_COLL_SECRETS;
            op->u.object.vault = S(b, ls->vault);
            op->u.object.name = S(b, ls->name);
        }
    }
    for (size_t c = 0; c < la->ncreds; c++)
        if ((op = op_add(b, s, KVR_OP_PASSWORD_REMOVE))) {
            op->u.password.app_object_id = S(b, la->object_id);
            op->u.password.app_name = S(b, la->display_name);
            op->u.password.key_id = S(b, la->creds[c].key_id);
        }
    if ((op = op_add(b, s, KVR_OP_APP_DELETE))) {
        op->u.app_tags.object_id = S(b, la->object_id);
        op->u.app_tags.name = S(b, la->display_name);
    }
}

static void app_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const char *app_name = st->kind == KVR_STEP_APP_CREATE || st->kind == KVR_STEP_SP_CREATE ||
                                   st->kind == KVR_STEP_APP_KEEP ||
                                   st->kind == KVR_STEP_APP_RESTORE
                               ? st->name
                               : st->extra;
    const kvr_app *a = kvr_estate_app(b->d, app_name);
    const kvr_live_app *la = a ? kvr_live_app_get(b->l, a->display_name) : NULL;
    const kvr_credential *cr;
    kvr_op *op;
    if (!a)
        return;
    switch (st->kind) {
    case KVR_STEP_APP_CREATE:
        if ((op = op_add(b, s, KVR_OP_APP_UPSERT))) {
            char marker[256];
            op->u.app.display_name = S(b, a->display_name);
            op->u.app.audience = S(b, a->sign_in_audience);
            if (kvr_plan_app_marker(b, marker, sizeof(marker))) { /* retired when it leaves */
                kvr_strlist one = {.items = (char *[]){marker}, .len = 1};
                copy_list(b, &op->u.app.tags, &one);
            }
        }
        return;
    case KVR_STEP_APP_RESTORE:
        if (la && (op = op_add(b, s, KVR_OP_APP_RESTORE))) {
            op->u.app_tags.object_id = S(b, la->object_id);
            op->u.app_tags.name = S(b, la->display_name);
        }
        return;
    case KVR_STEP_APP_KEEP:
        if (la && (op = op_add(b, s, KVR_OP_APP_TAGS))) {
            char prefix[256];
            op->u.app_tags.object_id = S(b, la->object_id);
            op->u.app_tags.name = S(b, la->display_name);
            kvr_plan_app_retiring_prefix(b, prefix, sizeof(prefix));
            app_tags_without(b, &op->u.app_tags.tags, &la->tags, prefix, NULL, NULL);
        }
        return;
    case KVR_STEP_SP_CREATE:
        if ((op = op_add(b, s, KVR_OP_SP_UPSERT))) {
            op->u.sp.app_id = S(b, la ? la->app_id : KVR_PLAN_NEW_APP);
            op->u.sp.display_name = S(b, a->display_name);
        }
        return;
    case KVR_STEP_CRED_ADD:
    case KVR_STEP_CRED_REPLACE_ORPHAN:
        if (!(cr = kvr_app_credential(a, st->name)))
            return;
        if (st->kind == KVR_STEP_CRED_REPLACE_ORPHAN && st->version)
            password_remove(b, s, app_name, la, st->version);
        password_add(b, s, a, cr, la);
        return;
    case KVR_STEP_CRED_REMOVE: {
        /* a rotation's copy first: killed after it, the next run removes the password (the
           other way round would leave a copy of nothing, never retired) */
        const kvr_live_secret *stored = pb_stored_copy(b, st->version);
        if (stored && kvr_plan_rotation_copy(a, stored->vault, stored->name) &&
            (op = op_add(b, s, KVR_OP_OBJECT_DELETE))) {
            op->u.object.collection = KVR_COLL_SECRETS;
            op->u.object.vault = S(b, stored->vault);
            op->u.object.name = S(b, stored->name);
        }
        password_remove(b, s, app_name, la, st->version);
        return;
    }
    default:
        return;
    }
}

static void tag_set(pb *b, size_t s, kvr_op_collection c, const char *vault, const char *name,
                    const char *version, const char *tag, const char *value)
{
    kvr_op *op = op_add(b, s, KVR_OP_TAG_SET);
    if (!op)
        return;
    op->u.tag.collection = c;
    op->u.tag.vault = S(b, vault);
    op->u.tag.name = S(b, name);
    op->u.tag.version = S(b, version);
    op->u.tag.tag = S(b, tag);
    op->u.tag.value = S(b, value);
}

static void role_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    kvr_op *op;
    if (st->kind == KVR_STEP_ROLE_DELETE) {
        /* name: the app, version: the assignment's name, extra: its scope */
        const kvr_live_app *la = live_app(b, st->name);
        const char *role_id = NULL;
        for (size_t i = 0; i < b->l->nroles; i++)
            if (kvr_str_ieq(b->l->roles[i].name, st->version))
                role_id = b->l->roles[i].role_id;
        if (!(op = op_add(b, s, KVR_OP_ROLE_REMOVE)))
            return;
        op->u.role.scope = S(b, st->extra);
        op->u.role.name = S(b, st->version);
        op->u.role.role_id = S(b, role_id);
        op->u.role.role_name = S(b, role_id ? kvr_model_role_name(role_id) : NULL);
        op->u.role.principal_id = S(b, la ? la->sp_id : NULL);
        op->u.role.principal_name = S(b, st->name); /* as declared, as messages name apps */
        return;
    }
    {
        /* ROLE_CREATE: name: the app, version: the key (NULL: the vault), extra: the role id */
        const kvr_vault *v = kvr_estate_vault(b->d, st->vault);
        const char *principal = kvr_plan_app_principal(b, st->name);
        char scope[512];
        if (!v || !(op = op_add(b, s, KVR_OP_ROLE_ASSIGN)))
            return;
        kvr_plan_scope(scope, sizeof(scope), subscription(b), v->resource_group, v->name,
                       st->version);
        op->u.role.scope = S(b, scope);
        op->u.role.role_id = S(b, st->extra);
        op->u.role.role_name = S(b, kvr_model_role_name(st->extra));
        op->u.role.principal_id = S(b, principal ? principal : KVR_PLAN_NEW_PRINCIPAL);
        op->u.role.principal_name = S(b, st->name);
    }
}

static void key_create(pb *b, size_t s, const kvr_key *k, bool with_policy)
{
    kvr_op *op = op_add(b, s, KVR_OP_KEY_CREATE);
    if (!op)
        return;
    op->u.key.vault = S(b, k->vault);
    op->u.key.name = S(b, k->name);
    op->u.key.kty = S(b, kvr_key_type_name(k->type));
    op->u.key.curve = S(b, k->curve);
    op->u.key.size = k->curve ? 0 : k->size;
    op->u.key.ops = k->ops;
    copy_tags(b, &op->u.key.tags, &k->tags, NULL, k->generation ? KVR_TAG_GENERATION : NULL,
              k->generation);
    op->u.key.set_rotation = with_policy && k->rotation.set;
    op->u.key.rotation = k->rotation;
}

static void key_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const kvr_key *k = kvr_estate_key(b->d, st->vault, st->name);
    const kvr_live_key *lk = pb_live_key(b, st->vault, st->name);
    kvr_op *op;
    switch (st->kind) {
    case KVR_STEP_KEY_CREATE:
    case KVR_STEP_KEY_NEW_VERSION:
        if (k)
            key_create(b, s, k, true);
        return;
    case KVR_STEP_KEY_RECOVER:
    case KVR_STEP_KEY_DELETE:
        if ((op = op_add(b, s, st->kind == KVR_STEP_KEY_DELETE ? KVR_OP_OBJECT_DELETE
                                                               : KVR_OP_OBJECT_RECOVER))) {
            op->u.object.collection = KVR_COLL_KEYS;
            op->u.object.vault = S(b, st->vault);
            op->u.object.name = S(b, st->name);
        }
        return;
    case KVR_STEP_KEY_UPDATE:
        if (k && (op = op_add(b, s, KVR_OP_KEY_PATCH))) {
            op->u.key_patch.vault = S(b, st->vault);
            op->u.key_patch.name = S(b, st->name);
            op->u.key_patch.version = S(b, st->version);
            op->u.key_patch.set_ops = true;
            op->u.key_patch.ops = k->ops;
        }
        return;
    case KVR_STEP_KEY_POLICY:
        if (k && (op = op_add(b, s, KVR_OP_KEY_ROTATION_POLICY))) {
            op->u.key.vault = S(b, k->vault);
            op->u.key.name = S(b, k->name);
            op->u.key.set_rotation = true;
            op->u.key.rotation = k->rotation;
        }
        return;
    case KVR_STEP_KEY_MARK_SUPERSEDED:
        if (st->version) {
            tag_set(b, s, KVR_COLL_KEYS, st->vault, st->name, st->version, KVR_TAG_SUPERSEDED,
                    st->extra);
            return;
        }
        for (size_t i = 0; lk && i < lk->nversions; i++)
            if (!kvr_tags_get(&lk->versions[i].tags, KVR_TAG_SUPERSEDED))
                tag_set(b, s, KVR_COLL_KEYS, st->vault, st->name, lk->versions[i].id,
                        KVR_TAG_SUPERSEDED, st->extra);
        return;
    case KVR_STEP_KEY_VERSION_DISABLE:
    case KVR_STEP_KEY_VERSION_ENABLE:
        if ((op = op_add(b, s, KVR_OP_KEY_PATCH))) {
            op->u.key_patch.vault = S(b, st->vault);
            op->u.key_patch.name = S(b, st->name);
            op->u.key_patch.version = S(b, st->version);
            op->u.key_patch.set_enabled = true;
            op->u.key_patch.enabled = st->kind == KVR_STEP_KEY_VERSION_ENABLE;
            op->u.key_patch.set_exp = st->kind == KVR_STEP_KEY_VERSION_DISABLE;
            op->u.key_patch.exp = b->now;
        }
        return;
    default:
        return;
    }
}

static const kvr_secret *declared_secret(const pb *b, const char *vault, const char *name)
{
    for (size_t i = 0; i < b->d->nsecrets; i++)
        if (kvr_str_ieq(b->d->secrets[i].vault, vault) && kvr_str_ieq(b->d->secrets[i].name, name))
            return &b->d->secrets[i];
    return NULL;
}

static void secret_value(pb *b, kvr_op_value *v, const kvr_secret *sec)
{
    switch (sec->source) {
    case KVR_SECRET_GENERATE:
        v->kind = KVR_OP_VALUE_GENERATE;
        v->length = sec->gen_length;
        v->charset = sec->gen_charset;
        return;
    case KVR_SECRET_FROM_ENV:
        v->kind = KVR_OP_VALUE_ENV;
        v->env = S(b, sec->env_name);
        break;
    case KVR_SECRET_FROM_FILE:
        v->kind = KVR_OP_VALUE_FILE;
        v->path = S(b, sec->file_path);
        break;
    case KVR_SECRET_FROM_APP_CREDENTIAL: {
        const kvr_app *a = kvr_estate_app(b->d, sec->app);
        const kvr_credential *cr = a ? kvr_app_credential(a, sec->credential) : NULL;
        v->kind = KVR_OP_VALUE_STORED;
        v->vault = S(b, cr ? cr->store_vault : NULL);
        v->secret = S(b, cr ? cr->store_secret : NULL);
        return;
    }
    case KVR_SECRET_EXTERNAL:
        return; /* never written: no step sets it */
    }
    v->marker = S(b, pb_digest(b, sec->vault, sec->name));
}

static void secret_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const kvr_secret *sec = declared_secret(b, st->vault, st->name);
    kvr_op *op;
    switch (st->kind) {
    case KVR_STEP_SECRET_SET:
        if (sec && (op = op_add(b, s, KVR_OP_SECRET_SET))) {
            op->u.secret.vault = S(b, sec->vault);
            op->u.secret.name = S(b, sec->name);
            op->u.secret.content_type = S(b, sec->content_type);
            copy_tags(b, &op->u.secret.tags, &sec->tags, NULL, NULL, NULL);
            secret_value(b, &op->u.secret.value, sec);
        }
        return;
    case KVR_STEP_SECRET_RECOVER:
        if ((op = op_add(b, s, KVR_OP_OBJECT_RECOVER))) {
            op->u.object.collection = KVR_COLL_SECRETS;
            op->u.object.vault = S(b, st->vault);
            op->u.object.name = S(b, st->name);
        }
        return;
    case KVR_STEP_SECRET_UPDATE:
        if (sec && (op = op_add(b, s, KVR_OP_SECRET_PATCH))) {
            op->u.secret_patch.vault = S(b, st->vault);
            op->u.secret_patch.name = S(b, st->name);
            op->u.secret_patch.content_type = S(b, sec->content_type);
            copy_tags(b, &op->u.secret_patch.tags, &sec->tags, NULL, NULL, NULL);
        }
        return;
    case KVR_STEP_SECRET_COPY:
    case KVR_STEP_CERT_COPY: {
        /* vault: the target, extra: the source */
        const kvr_vault *dst = kvr_estate_vault(b->d, st->vault);
        const kvr_live_secret *src = pb_live_secret(b, st->extra, st->name);
        if (!(op = op_add(b, s, st->kind == KVR_STEP_CERT_COPY ? KVR_OP_CERT_COPY
                                                               : KVR_OP_SECRET_COPY)))
            return;
        op->u.copy.from = S(b, st->extra);
        op->u.copy.to = S(b, st->vault);
        op->u.copy.name = S(b, st->name);
        if (st->kind == KVR_STEP_SECRET_COPY) {
            op->u.copy.content_type = S(b, src ? src->content_type : NULL);
            op->u.copy.all_versions = dst && dst->copy_from.secrets == KVR_COPY_ALL;
        }
        return;
    }
    case KVR_STEP_CRED_MOVE_STORE: {
        /* vault: the new storeIn's vault, name: the credential, version: its key id, extra: the
           app; the copy goes from where the client secret is stored now */
        const kvr_app *a = kvr_estate_app(b->d, st->extra);
        const kvr_credential *cr = a ? kvr_app_credential(a, st->name) : NULL;
        const kvr_live_secret *old =
            cr ? pb_stored_elsewhere(b, st->version, cr->store_vault, cr->store_secret) : NULL;
        if (old && (op = op_add(b, s, KVR_OP_SECRET_COPY))) {
            op->u.copy.from = S(b, old->vault);
            op->u.copy.name = S(b, old->name);
            op->u.copy.to = S(b, cr->store_vault);
            op->u.copy.to_name = S(b, cr->store_secret);
            op->u.copy.content_type = S(b, old->content_type);
        }
        return;
    }
    case KVR_STEP_SECRET_MARK_SUPERSEDED: /* an unmanaged secret that is retired */
        tag_set(b, s, KVR_COLL_SECRETS, st->vault, st->name, NULL, KVR_TAG_SUPERSEDED, st->extra);
        return;
    case KVR_STEP_SECRET_DELETE:
        if ((op = op_add(b, s, KVR_OP_OBJECT_DELETE))) {
            op->u.object.collection = KVR_COLL_SECRETS;
            op->u.object.vault = S(b, st->vault);
            op->u.object.name = S(b, st->name);
        }
        return;
    case KVR_STEP_CRED_MARK_SUPERSEDED: {
        const kvr_live_secret *stored = pb_stored_copy(b, st->version);
        if (stored)
            tag_set(b, s, KVR_COLL_SECRETS, stored->vault, stored->name, NULL,
                    KVR_TAG_SUPERSEDED, st->extra);
        return;
    }
    default:
        return;
    }
}

static void profile_ops(pb *b, size_t s)
{
    kvr_step *st = &b->p->steps[s];
    const kvr_profile *p = kvr_estate_profile(b->d, st->name);
    kvr_op *op;
    switch (st->kind) {
    case KVR_STEP_PROFILE_CREATE:
    case KVR_STEP_PROFILE_SET_CREDENTIALS: {
        const kvr_app *a = p ? kvr_estate_app(b->d, p->app) : NULL;
        const kvr_credential *cr = a ? kvr_app_credential(a, p->credential) : NULL;
        const kvr_live_app *la = a ? kvr_live_app_get(b->l, a->display_name) : NULL;
        bool create = st->kind == KVR_STEP_PROFILE_CREATE;
        if (!p || !(op = op_add(b, s, KVR_OP_PROFILE_PUT)))
            return;
        op->u.profile.name = S(b, p->name);
        op->u.profile.create = create;
        op->u.profile.client_id = S(b, la ? la->app_id : KVR_PLAN_NEW_APP);
        op->u.profile.credential = S(b, p->credential);
        op->u.profile.secret_vault = S(b, cr ? cr->store_vault : NULL);
        op->u.profile.secret_name = S(b, cr ? cr->store_secret : NULL);
        if (create) {
            const char *version = NULL;
            for (size_t c = 0; c < st->nchanges; c++) /* as the pass showed it */
                if (strcmp(st->changes[c].field, "keyVersion") == 0)
                    version = st->changes[c].to;
            op->u.profile.key_vault = S(b, p->vault);
            op->u.profile.key_name = S(b, p->key);
            op->u.profile.key_version = S(b, version ? version : KVR_PLAN_NEW_VERSION);
        }
        return;
    }
    case KVR_STEP_PROFILE_APPLY:
    case KVR_STEP_PROFILE_DELETE:
        if ((op = op_add(b, s, st->kind == KVR_STEP_PROFILE_APPLY ? KVR_OP_PROFILE_APPLY
                                                                  : KVR_OP_PROFILE_DELETE)))
            op->u.profile.name = S(b, st->name);
        return;
    default:
        return;
    }
}

void kvr_plan_pass_ops(pb *b)
{
    for (size_t s = 0; s < b->p->nsteps && !b->rc; s++) {
        switch (b->p->steps[s].kind) {
        case KVR_STEP_VAULT_CREATE:
        case KVR_STEP_VAULT_RECOVER:
        case KVR_STEP_VAULT_UPDATE:
        case KVR_STEP_VAULT_MARK_UNUSED:
        case KVR_STEP_VAULT_RETIRE:
        case KVR_STEP_VAULT_ACCESS:
            vault_ops(b, s);
            break;
        case KVR_STEP_APP_CREATE:
        case KVR_STEP_SP_CREATE:
        case KVR_STEP_CRED_ADD:
        case KVR_STEP_CRED_REPLACE_ORPHAN:
        case KVR_STEP_CRED_REMOVE:
        case KVR_STEP_APP_KEEP:
        case KVR_STEP_APP_RESTORE:
            app_ops(b, s);
            break;
        case KVR_STEP_APP_MARK_RETIRING:
        case KVR_STEP_APP_RETIRE:
            retired_app_ops(b, s);
            break;
        case KVR_STEP_ROLE_CREATE:
        case KVR_STEP_ROLE_DELETE:
            role_ops(b, s);
            break;
        case KVR_STEP_KEY_CREATE:
        case KVR_STEP_KEY_RECOVER:
        case KVR_STEP_KEY_NEW_VERSION:
        case KVR_STEP_KEY_UPDATE:
        case KVR_STEP_KEY_POLICY:
        case KVR_STEP_KEY_MARK_SUPERSEDED:
        case KVR_STEP_KEY_VERSION_DISABLE:
        case KVR_STEP_KEY_VERSION_ENABLE:
        case KVR_STEP_KEY_DELETE:
            key_ops(b, s);
            break;
        case KVR_STEP_SECRET_SET:
        case KVR_STEP_SECRET_RECOVER:
        case KVR_STEP_SECRET_UPDATE:
        case KVR_STEP_SECRET_COPY:
        case KVR_STEP_CERT_COPY:
        case KVR_STEP_CRED_MARK_SUPERSEDED:
        case KVR_STEP_CRED_MOVE_STORE:
        case KVR_STEP_SECRET_MARK_SUPERSEDED:
        case KVR_STEP_SECRET_DELETE:
            secret_ops(b, s);
            break;
        case KVR_STEP_COPY_VERIFY:
            break; /* no operation: the executor's next read verifies */
        case KVR_STEP_PROFILE_CREATE:
        case KVR_STEP_PROFILE_SET_CREDENTIALS:
        case KVR_STEP_PROFILE_APPLY:
        case KVR_STEP_PROFILE_DELETE:
            profile_ops(b, s);
            break;
        }
    }
}
