/*
 * `kvreconcile export -o DIR`: adopt an estate made by hand. Reads the live estate (every vault
 * of the subscription, or of the groups or vaults given; see kvr_discover) and writes the
 * desired-state repository that describes it, in the layout of the examples: vaults.yaml
 * (subscription, vaults, retention), identity.yaml (apps, role assignments) and
 * encryption.yaml (keys, secrets, profiles). A plan of that repository against the same estate
 * is empty: that is the contract, and the e2e tests hold it.
 *
 * What schema v1 cannot say (certificates, client secrets kvreconcile did not make, principals
 * that are not applications, key types it does not manage) is written as a comment where a
 * reader looks for it, and counted in the summary line, never dropped silently. Secret values
 * are never read: every secret is written with `external: true`.
 */
#include "cli.h"

#include "kvr/azure.h"
#include "kvr/live.h"
#include "kvr/model.h"
#include "kvr/providers.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SCHEMA_URL "https://kvreconcile.example/schema/v1/kvreconcile.schema.json"
#define DAY 86400LL

static void export_usage(FILE *out)
{
    fprintf(out,
            "usage: kvreconcile export -o DIR [--subscription ID] [--resource-group RG]...\n"
            "                          [--vault NAME]... [--profiles] [-q]\n\n"
            "Reads an existing estate and writes the desired-state repository that describes it\n"
            "(vaults.yaml, identity.yaml, encryption.yaml), so that 'plan' on it says \"No\n"
            "changes\". Secret values are never read: secrets are written 'external: true'.\n"
            "What schema v1 cannot express is written as a comment and counted.\n\n"
            "options:\n"
            "  -o, --output DIR          the directory to write (created; files in it replaced)\n"
            "      --subscription ID     default: AZURE_SUBSCRIPTION_ID\n"
            "  -g, --resource-group RG   only the vaults of this group; repeat for more\n"
            "      --vault NAME          only this vault; repeat for more\n"
            "      --profiles            also the encryption profiles (KVR_PROFILE_ENDPOINT)\n"
            "  -q, --quiet               no progress on stderr\n"
            "  -h, --help                show this help\n\n"
            "exit status: 0 written, 1 error\n");
}

/* ---- the estate being built, and its comments ----------------------------------------------- */

typedef struct note {
    const char *file; /* "vaults", "identity", "encryption" */
    kvr_yaml_note n;
    char *text;
} note;

typedef struct builder {
    kvr_estate *e;
    const kvr_discovery *d;
    note *notes;
    size_t nnotes, notes_cap;
    size_t unexpressed; /* objects written as comments only */
    const char *self;   /* AZURE_CLIENT_ID: the identity export runs as */
    bool oom;
} builder;

static const kvr_live *apps_part(const builder *b)
{
    return b->d->parts[b->d->nparts - 1];
}

static void *grow(builder *b, void **items, size_t *len, size_t elem)
{
    void *p = realloc(*items, (*len + 1) * elem);
    if (!p) {
        b->oom = true;
        return NULL;
    }
    *items = p;
    memset((char *)p + *len * elem, 0, elem);
    return (char *)p + (*len)++ * elem;
}

static char *sdup(builder *b, const char *s)
{
    char *r = s ? strdup(s) : NULL;
    if (s && !r)
        b->oom = true;
    return r;
}

/* The estate's shared copy (kvr_estate.shared): for the fields that point there */
static char *shared(builder *b, const char *s)
{
    char *r = kvr_strset_get(&b->e->shared, s);
    if (s && !r)
        b->oom = true;
    return r;
}

/* A copy in the estate's pool (kvr_estate.shared.pool): for a name that points there */
static char *pooled(builder *b, const char *s)
{
    char *r = kvr_strpool_dup(&b->e->shared.pool, s);
    if (s && !r)
        b->oom = true;
    return r;
}

/* A comment in `file`: before item `index` of `section` (SIZE_MAX: at its end). `counted`: an
   object of the estate that schema v1 cannot express. */
static void add_note(builder *b, const char *file, const char *section, size_t index, bool counted,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void add_note(builder *b, const char *file, const char *section, size_t index, bool counted,
                     const char *fmt, ...)
{
    va_list ap;
    note *n;
    if (b->nnotes == b->notes_cap &&
        kvr_grow((void **)&b->notes, &b->notes_cap, b->nnotes + 1, sizeof(*b->notes)) < 0) {
        b->oom = true;
        return;
    }
    n = &b->notes[b->nnotes];
    va_start(ap, fmt);
    n->text = kvr_vasprintf(fmt, ap);
    va_end(ap);
    if (!n->text) {
        b->oom = true;
        return;
    }
    n->file = file;
    n->n = (kvr_yaml_note){section, index, n->text};
    b->nnotes++;
    b->unexpressed += counted;
}

static void tags_copy(builder *b, kvr_tags *out, const kvr_tags *in)
{
    for (size_t i = 0; i < in->len; i++) {
        kvr_tag *t;
        if (strncmp(in->items[i].key, "kvr-", 4) == 0)
            continue; /* kvreconcile's own markers: not the user's, never compared */
        if (!(t = grow(b, (void **)&out->items, &out->len, sizeof(*t))))
            return;
        t->key = sdup(b, in->items[i].key);
        t->value = sdup(b, in->items[i].value);
    }
}

static bool is_guid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                   (s[i] >= 'A' && s[i] <= 'F');
        if (dash ? s[i] != '-' : !hex)
            return false;
    }
    return true;
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-_.", *s)))
            return false;
    return true;
}

/* ---- principals and apps ------------------------------------------------------------------ */

static const kvr_found_principal *principal(const builder *b, const char *object_id)
{
    for (size_t i = 0; object_id && i < b->d->nprincipals; i++)
        if (kvr_str_ieq(b->d->principals[i].object_id, object_id))
            return &b->d->principals[i];
    return NULL;
}

/* The declared app of a live app (by display name, as kvreconcile finds apps), or NULL. */
static const kvr_app *declared_app(const builder *b, const char *display_name)
{
    for (size_t i = 0; display_name && i < b->e->napps; i++)
        if (strcmp(b->e->apps[i].display_name, display_name) == 0)
            return &b->e->apps[i];
    return NULL;
}

/*
 * The name other sections use for an app: its display name in lower case with every run of
 * other characters than letters and digits made one '-' ("Reporting (read-only)" ->
 * "reporting-read-only"), "-2", "-3"... when taken. The display name is kept as displayName.
 */
static char *app_name(builder *b, const char *display_name)
{
    size_t n = strlen(display_name), o = 0;
    char *slug = malloc(n + 16), *out = NULL;
    if (!slug) {
        b->oom = true;
        return NULL;
    }
    for (const char *p = display_name; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            slug[o++] = c;
        else if (c >= 'A' && c <= 'Z')
            slug[o++] = (char)(c - 'A' + 'a');
        else if (o && slug[o - 1] != '-')
            slug[o++] = '-';
    }
    while (o && slug[o - 1] == '-')
        o--;
    if (!o)
        memcpy(slug, "app", (o = 3));
    slug[o] = '\0';
    for (int k = 1; !out; k++) {
        char *cand = k == 1 ? kvr_asprintf("%s", slug) : kvr_asprintf("%s-%d", slug, k);
        bool taken = false;
        if (!cand) {
            b->oom = true;
            break;
        }
        for (size_t i = 0; i < b->e->napps; i++)
            taken |= b->e->apps[i].name && strcmp(b->e->apps[i].name, cand) == 0;
        if (taken)
            free(cand);
        else
            out = cand;
    }
    free(slug);
    return out;
}

/* The declared app whose service principal is object_id, or NULL. */
static const kvr_app *app_of_principal(const builder *b, const char *object_id)
{
    const kvr_live *l = apps_part(b);
    for (size_t i = 0; object_id && i < l->napps; i++)
        if (l->apps[i].sp_id && kvr_str_ieq(l->apps[i].sp_id, object_id))
            return declared_app(b, l->apps[i].display_name);
    return NULL;
}

static const kvr_app *app_of_client(const builder *b, const char *client_id)
{
    const kvr_live *l = apps_part(b);
    for (size_t i = 0; client_id && i < l->napps; i++)
        if (l->apps[i].app_id && strcmp(l->apps[i].app_id, client_id) == 0)
            return declared_app(b, l->apps[i].display_name);
    return NULL;
}

static const char *who(const builder *b, const char *object_id, char *buf, size_t size)
{
    const kvr_found_principal *p = principal(b, object_id);
    if (p && p->display_name)
        snprintf(buf, size, "%s '%s' (object id %s)", p->type ? p->type : "principal",
                 p->display_name, object_id);
    else
        snprintf(buf, size, "principal %s (a user, a group, or no service principal)", object_id);
    return buf;
}

/* The stored copy of client secret key_id: a secret tagged with it, in any vault read. */
static const kvr_live_secret *stored_copy(const builder *b, const char *key_id)
{
    for (size_t p = 0; p < b->d->nparts; p++)
        for (size_t i = 0; i < b->d->parts[p]->nsecrets; i++) {
            const kvr_live_secret *s = &b->d->parts[p]->secrets[i];
            const char *id = kvr_tags_get(&s->tags, KVR_TAG_CREDENTIAL);
            if (id && strcmp(id, key_id) == 0 && kvr_estate_vault(b->e, s->vault))
                return s;
        }
    return NULL;
}

/*
 * Apps: kvreconcile finds an app by its display name, which is kept; the name the other sections
 * use is made from it (app_name). Only client secrets
 * kvreconcile made (display name kvr:<generation>) with a stored copy in an exported vault are
 * declared; any other is a comment.
 */
static void build_apps(builder *b)
{
    const kvr_live *l = apps_part(b);
    for (size_t i = 0; i < l->napps; i++) {
        const kvr_live_app *la = &l->apps[i];
        kvr_app *a;
        if (b->self && la->app_id && strcmp(la->app_id, b->self) == 0) {
            add_note(b, "identity", "apps", SIZE_MAX, false,
                     "app '%s' is the identity this export ran as: not written, so that no\n"
                     "plan ever takes its own access away",
                     la->display_name);
            continue;
        }
        if (!(a = grow(b, (void **)&b->e->apps, &b->e->napps, sizeof(*a))))
            return;
        a->display_name = sdup(b, la->display_name);
        a->name = app_name(b, la->display_name);
        a->sign_in_audience = sdup(b, la->audience ? la->audience : "AzureADMyOrg");
        for (size_t c = 0; c < la->ncreds; c++) {
            const kvr_live_credential *lc = &la->creds[c];
            const char *gen = lc->display_name && strncmp(lc->display_name, KVR_CRED_PREFIX,
                                                          strlen(KVR_CRED_PREFIX)) == 0
                                  ? lc->display_name + strlen(KVR_CRED_PREFIX)
                                  : NULL;
            const kvr_live_secret *st = gen ? stored_copy(b, lc->key_id) : NULL;
            kvr_credential *cr;
            if (!gen || !name_ok(gen, 64)) {
                add_note(b, "identity", "apps", b->e->napps - 1, true,
                         "client secret '%s' (key id %s):\nnot made by kvreconcile; left as "
                         "it is, schema v1 cannot declare it",
                         lc->display_name ? lc->display_name : "", lc->key_id);
                continue;
            }
            if (!st) {
                add_note(b, "identity", "apps", b->e->napps - 1, true,
                         "client secret '%s' (key id %s) has no stored copy in an exported\n"
                         "vault: not declared; a plan will propose to retire it",
                         lc->display_name, lc->key_id);
                continue;
            }
            if (!(cr = grow(b, (void **)&a->creds, &a->ncreds, sizeof(*cr))))
                return;
            cr->name = sdup(b, gen);
            cr->lifetime = lc->end > lc->start ? lc->end - lc->start : 180 * DAY;
            if (cr->lifetime % DAY > DAY / 2 || cr->lifetime % DAY == 0)
                cr->lifetime = (cr->lifetime + DAY / 2) / DAY * DAY;
            if (cr->lifetime < DAY)
                cr->lifetime = DAY;
            cr->overlap = cr->lifetime > 14 * DAY ? 7 * DAY : cr->lifetime / 2;
            cr->store_vault = sdup(b, st->vault);
            cr->store_secret = sdup(b, st->name);
        }
    }
}

/* ---- vaults ------------------------------------------------------------------------------- */

static const kvr_live_vault *live_vault(const builder *b, const kvr_found_vault *fv)
{
    return kvr_live_vault_get(b->d->parts[fv->part], fv->name);
}

static void strlist_copy(builder *b, kvr_strlist *out, const kvr_strlist *in)
{
    if (!in->len)
        return;
    if (!(out->items = calloc(in->len, sizeof(char *)))) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i < in->len; i++)
        out->items[out->len++] = sdup(b, in->items[i]);
}

/* Who depends on what in the vault (the Azure resources outside the estate that use its keys,
   secrets or itself): comments, for a human to know before retiring anything. */
static void vault_dependents(builder *b, const kvr_live *part, const char *vault, size_t vi)
{
    for (size_t i = 0; part && i < part->ndependents; i++) {
        const kvr_live_dependent *d = &part->dependents[i];
        char use[300];
        if (!kvr_str_ieq(d->vault, vault))
            continue;
        if (d->key && d->version)
            snprintf(use, sizeof(use), "key '%s' version %s", d->key, d->version);
        else if (d->key)
            snprintf(use, sizeof(use), "key '%s' (versionless: its current version)", d->key);
        else if (d->secret && d->setting)
            snprintf(use, sizeof(use), "secret '%s' (app setting '%s')", d->secret, d->setting);
        else if (d->secret)
            snprintf(use, sizeof(use), "secret '%s'", d->secret);
        else
            snprintf(use, sizeof(use), "the vault");
        add_note(b, "vaults", "vaults", vi, false, "used by %s '%s' (%s):\n%s",
                 kvr_dependent_kind(d->type), d->name, d->id, use);
    }
}

static void build_vaults(builder *b)
{
    for (size_t i = 0; i < b->d->nvaults; i++) {
        const kvr_found_vault *fv = &b->d->vaults[i];
        const kvr_live_vault *lv = live_vault(b, fv);
        kvr_vault *v;
        size_t vi;
        if (!lv)
            continue; /* deleted between the list and the read */
        if (!(v = grow(b, (void **)&b->e->vaults, &b->e->nvaults, sizeof(*v))))
            return;
        vi = b->e->nvaults - 1;
        v->name = sdup(b, lv->name);
        v->resource_group = sdup(b, lv->resource_group);
        v->location = sdup(b, lv->location);
        v->sku = lv->sku;
        v->rbac = lv->rbac;
        v->soft_delete_days = lv->soft_delete_days;
        v->purge_protection = lv->purge_protection;
        v->network.set = fv->network.set;
        v->network.default_action = sdup(b, fv->network.default_action);
        v->network.bypass = sdup(b, fv->network.bypass);
        v->network.public_access = sdup(b, fv->network.public_access);
        strlist_copy(b, &v->network.ip_rules, &fv->network.ip_rules);
        strlist_copy(b, &v->network.vnet_rules, &fv->network.vnet_rules);
        tags_copy(b, &v->tags, &lv->tags);
        if (kvr_tags_get(&lv->tags, KVR_TAG_SUPERSEDED))
            add_note(b, "vaults", "vaults", vi, false,
                     "kvreconcile marked this vault unused (tag " KVR_TAG_SUPERSEDED
                     "): add 'retire: true'\nif it is being retired");
        if (!lv->purge_protection)
            add_note(b, "vaults", "vaults", vi, false,
                     "purge protection is off: decide whether to turn it on (irreversible)");
        if (lv->rbac && lv->npolicies)
            add_note(b, "vaults", "vaults", vi, false,
                     "%zu access policies are kept by Azure but unused (RBAC vault)",
                     lv->npolicies);
        vault_dependents(b, b->d->parts[fv->part], lv->name, vi);
    }
}

/* The access policies of the access-policy vaults: those of exported apps are declared. */
static void build_policies(builder *b)
{
    for (size_t vi = 0; vi < b->e->nvaults; vi++) {
        kvr_vault *v = &b->e->vaults[vi];
        const kvr_live_vault *lv = NULL;
        char whom[300];
        for (size_t i = 0; !lv && i < b->d->nvaults; i++)
            if (kvr_str_ieq(b->d->vaults[i].name, v->name))
                lv = live_vault(b, &b->d->vaults[i]);
        if (!lv)
            continue;
        for (size_t p = 0; !lv->rbac && p < lv->npolicies; p++) {
            const kvr_live_policy *lp = &lv->policies[p];
            const kvr_app *a = app_of_principal(b, lp->object_id);
            kvr_access_policy *ap;
            if (!a) {
                add_note(b, "vaults", "vaults", vi, true,
                         "access policy of %s:\nnot an exported app; kvreconcile never changes it",
                         who(b, lp->object_id, whom, sizeof(whom)));
                continue;
            }
            if (!(ap = grow(b, (void **)&v->policies, &v->npolicies, sizeof(*ap))))
                return;
            ap->app = sdup(b, a->name);
            strlist_copy(b, &ap->keys, &lp->keys);
            strlist_copy(b, &ap->secrets, &lp->secrets);
            strlist_copy(b, &ap->certificates, &lp->certificates);
        }
    }
}

/* ---- role assignments ----------------------------------------------------------------------- */

/* "…/providers/Microsoft.KeyVault/vaults/NAME[/keys/KEY]" -> NAME, KEY (KEY may stay empty). */
static bool scope_parts(const char *scope, char *vault, size_t vsize, char *key, size_t ksize)
{
    static const char marker[] = "/providers/Microsoft.KeyVault/vaults/";
    const char *p;
    size_t n;
    key[0] = vault[0] = '\0';
    for (p = scope; p && *p; p++)
        if (strncasecmp(p, marker, sizeof(marker) - 1) == 0)
            break;
    if (!p || !*p)
        return false;
    p += sizeof(marker) - 1;
    n = strcspn(p, "/");
    snprintf(vault, vsize, "%.*s", (int)n, p);
    p += n;
    if (strncasecmp(p, "/keys/", 6) == 0)
        snprintf(key, ksize, "%.*s", (int)strcspn(p + 6, "/"), p + 6);
    else if (*p)
        return false;
    return true;
}

static void build_roles(builder *b)
{
    const kvr_live *l = apps_part(b);
    for (size_t i = 0; i < l->nroles; i++) {
        const kvr_live_role *lr = &l->roles[i];
        const kvr_app *a = app_of_principal(b, lr->principal_id);
        const char *name = kvr_model_role_name(lr->role_id);
        char vault[128], key[160], whom[300];
        kvr_role_assignment *r;
        if (!scope_parts(lr->scope, vault, sizeof(vault), key, sizeof(key))) {
            /* above the vaults: an exported app's is told, others' are not the estate's */
            if (a)
                add_note(b, "identity", "roleAssignments", SIZE_MAX, true,
                         "role '%s' of app '%s' at scope %s:\nschema v1 declares role "
                         "assignments on vaults and keys only; left as it is",
                         name ? name : lr->role_id, a->name, lr->scope);
            continue;
        }
        if (!kvr_estate_vault(b->e, vault))
            continue;
        if (!a) {
            add_note(b, "identity", "roleAssignments", SIZE_MAX, true,
                     "role '%s' of %s on vault '%s'%s%s%s:\nnot an exported app; kvreconcile "
                     "never changes it",
                     name ? name : lr->role_id, who(b, lr->principal_id, whom, sizeof(whom)), vault,
                     key[0] ? " key '" : "", key, key[0] ? "'" : "");
            continue;
        }
        if (!(r = grow(b, (void **)&b->e->roles, &b->e->nroles, sizeof(*r))))
            return;
        r->app = shared(b, a->name);
        r->role = shared(b, name ? name : lr->role_id);
        r->role_id = shared(b, lr->role_id);
        r->vault = shared(b, kvr_estate_vault(b->e, vault)->name);
        r->key = key[0] ? pooled(b, key) : NULL;
    }
}

/* ---- keys, secrets, certificates ------------------------------------------------------------ */

static void build_contents(builder *b)
{
    bool said = false;
    for (size_t p = 0; p + 1 < b->d->nparts || (p == 0 && b->d->nparts == 1 && false); p++) {
        const kvr_live *l = b->d->parts[p];
        for (size_t i = 0; i < l->nkeys; i++) {
            const kvr_live_key *lk = &l->keys[i];
            const kvr_live_version *latest =
                lk->nversions ? &lk->versions[lk->nversions - 1] : NULL;
            static const char *const types[] = {"RSA", "RSA-HSM", "EC", "EC-HSM"};
            int type = -1;
            kvr_key *k;
            const char *gen = NULL;
            for (int t = 0; t < 4; t++)
                if (lk->kty && strcmp(lk->kty, types[t]) == 0)
                    type = t;
            if (!kvr_estate_vault(b->e, lk->vault))
                continue;
            if (type < 0 || !lk->ops ||
                (type < 2 && lk->size != 2048 && lk->size != 3072 && lk->size != 4096)) {
                add_note(b, "encryption", "keys", SIZE_MAX, true,
                         "key '%s' in vault '%s' (%s %d): a type, size or operations schema v1\n"
                         "does not declare; not written",
                         lk->name, lk->vault, lk->kty ? lk->kty : "?", lk->size);
                continue;
            }
            if (!(k = grow(b, (void **)&b->e->keys, &b->e->nkeys, sizeof(*k))))
                return;
            k->vault = shared(b, kvr_estate_vault(b->e, lk->vault)->name);
            k->name = pooled(b, lk->name);
            k->type = (kvr_key_type)type;
            k->size = type < 2 ? lk->size : 2048;
            k->curve = type >= 2 ? shared(b, lk->crv ? lk->crv : "P-256") : NULL;
            k->ops = lk->ops;
            for (size_t v = lk->nversions; v > 0 && !gen; v--)
                gen = kvr_tags_get(&lk->versions[v - 1].tags, KVR_TAG_GENERATION);
            if (gen && name_ok(gen, 64))
                k->generation = shared(b, gen);
            /* Azure gives every key a default policy: notify 30 days before an expiry that is
               not set. Declared, it would only pin what Azure does anyway. */
            if (lk->has_policy &&
                (lk->policy.every || lk->policy.before_expiry || lk->policy.expires_after ||
                 (lk->policy.notify_before && lk->policy.notify_before != 30 * DAY))) {
                k->rotation = lk->policy;
                k->rotation.set = true;
            }
            if (latest)
                tags_copy(b, &k->tags, &latest->tags);
        }
        for (size_t i = 0; i < l->nsecrets; i++) {
            const kvr_live_secret *ls = &l->secrets[i];
            const char *id = kvr_tags_get(&ls->tags, KVR_TAG_CREDENTIAL);
            kvr_secret *s;
            bool stored = false;
            if (!kvr_estate_vault(b->e, ls->vault))
                continue;
            for (size_t a = 0; id && a < b->e->napps; a++)
                for (size_t c = 0; c < b->e->apps[a].ncreds; c++)
                    stored |= kvr_str_ieq(b->e->apps[a].creds[c].store_vault, ls->vault) &&
                              kvr_str_ieq(b->e->apps[a].creds[c].store_secret, ls->name);
            if (stored)
                continue; /* declared by its credential's storeIn */
            if (!said) {
                add_note(b, "encryption", "secrets", b->e->nsecrets, false,
                         "values are never read by export: every secret is 'external: true'.\n"
                         "Where kvreconcile should manage a value, give generate, fromEnv,\n"
                         "fromFile or fromAppCredential instead.");
                said = true;
            }
            if (!(s = grow(b, (void **)&b->e->secrets, &b->e->nsecrets, sizeof(*s))))
                return;
            s->vault = shared(b, kvr_estate_vault(b->e, ls->vault)->name);
            s->name = pooled(b, ls->name);
            s->content_type =
                ls->content_type && *ls->content_type ? shared(b, ls->content_type) : NULL;
            tags_copy(b, &s->tags, &ls->tags);
            s->source = KVR_SECRET_EXTERNAL;
        }
        for (size_t i = 0; i < l->ncerts; i++)
            add_note(b, "encryption", "secrets", SIZE_MAX, true,
                     "certificate '%s' in vault '%s':\nnot part of schema v1; left as it is",
                     l->certs[i].name, l->certs[i].vault);
    }
}

/* ---- profiles ------------------------------------------------------------------------------- */

static void build_profiles(builder *b)
{
    const kvr_live *l = apps_part(b);
    const kvr_live_profile *active = NULL;
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *lp = &l->profiles[i];
        const kvr_app *a = app_of_client(b, lp->client_id);
        const kvr_key *k = kvr_estate_key(b->e, lp->vault, lp->key);
        kvr_profile *p;
        bool hex = lp->key_version && strlen(lp->key_version) == 32;
        for (const char *q = lp->key_version; hex && *q; q++)
            hex = (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f');
        if (!k || !a || !hex || !lp->credential || !kvr_app_credential(a, lp->credential)) {
            add_note(b, "encryption", "profiles", SIZE_MAX, true,
                     "profile '%s' (%s) on vault '%s' key '%s': %s; not written, so a plan\n"
                     "proposes to retire it (gated: never while Applying or Used)",
                     lp->name, kvr_profile_status_name(lp->status), lp->vault, lp->key,
                     !k     ? "its key is not exported"
                     : !a   ? "its client id is not an exported app"
                     : !hex ? "its key version is not a plain version"
                            : "it signs in with a client secret kvreconcile did not make");
            continue;
        }
        if (!(p = grow(b, (void **)&b->e->profiles, &b->e->nprofiles, sizeof(*p))))
            return;
        p->name = sdup(b, lp->name);
        p->vault = sdup(b, k->vault);
        p->key = sdup(b, k->name);
        p->key_version = sdup(b, lp->key_version);
        p->app = sdup(b, a->name);
        p->credential = sdup(b, lp->credential);
        if (lp->status == KVR_PROFILE_APPLYING ||
            (lp->status == KVR_PROFILE_USED && !(active && active->status == KVR_PROFILE_APPLYING)))
            active = lp;
    }
    if (active) {
        b->e->active = sdup(b, active->name);
    } else if (b->e->nprofiles) {
        /* nothing in use: the newest is named, and a human must confirm it */
        const kvr_profile *newest = &b->e->profiles[b->e->nprofiles - 1];
        b->e->active = sdup(b, newest->name);
        add_note(b, "encryption", "active", 0, false,
                 "no profile is Applying or Used: decide which one is active (a plan applies it)");
    }
}

/* ---- writing -------------------------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const builder *b, unsigned sections,
                      const char *about)
{
    char path[4096], *text = NULL, *preamble;
    kvr_yaml_note *notes = calloc(b->nnotes + 1, sizeof(*notes));
    size_t nn = 0;
    kvr_error err;
    int rc = -1;

    preamble = kvr_asprintf("# yaml-language-server: $schema=" SCHEMA_URL "\n#\n# %s\n", about);
    if (!notes || !preamble) {
        cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < b->nnotes; i++)
        if (strcmp(b->notes[i].file, name) == 0)
            notes[nn++] = b->notes[i].n;
    if (kvr_model_write_yaml(&text, b->e, sections, preamble, notes, nn) < 0) {
        cli_error("out of memory");
        goto done;
    }
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, name);
    /* through a file of unpredictable name, renamed into place: a link planted at a guessable
       temporary name (issue #18) is never followed */
    if (kvr_file_write_atomic(path, text, strlen(text), 0644, &err) < 0) {
        cli_error("cannot write '%s': %s", path, err.message);
        goto done;
    }
    rc = 0;
done:
    free(text);
    free(preamble);
    free(notes);
    return rc;
}

static void progress(void *arg, size_t done, size_t total)
{
    if (*(bool *)arg)
        return;
    if (done == 0)
        fprintf(stderr, "kvreconcile: export: %zu vaults found\n", total);
    else
        fprintf(stderr, "kvreconcile: export: vaults read %zu/%zu\n", done, total);
    fflush(stderr);
}

static const char *arg_list_add(const char ***list, size_t *n, const char *v)
{
    const char **l = realloc(*list, (*n + 1) * sizeof(*l));
    if (!l)
        return NULL;
    l[(*n)++] = v;
    *list = l;
    return v;
}

int kvr_cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"subscription", required_argument, NULL, 'S'},
                                         {"resource-group", required_argument, NULL, 'g'},
                                         {"vault", required_argument, NULL, 'V'},
                                         {"profiles", no_argument, NULL, 'P'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL, *sub = getenv("AZURE_SUBSCRIPTION_ID");
    const char **groups = NULL, **vaults = NULL;
    size_t ngroups = 0, nvaults = 0;
    bool quiet = false, profiles = false;
    kvr_endpoints ep;
    kvr_http *http = NULL;
    kvr_auth *auth = NULL;
    kvr_auth_config acfg;
    kvr_discovery d;
    kvr_export_filter filter;
    builder b;
    kvr_error err;
    int opt, status = KVR_EXIT_ERROR;

    memset(&ep, 0, sizeof(ep));
    memset(&d, 0, sizeof(d));
    memset(&b, 0, sizeof(b));
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "o:g:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            dir = optarg;
            break;
        case 'S':
            sub = optarg;
            break;
        case 'g':
            if (!arg_list_add(&groups, &ngroups, optarg))
                goto oom;
            break;
        case 'V':
            if (!arg_list_add(&vaults, &nvaults, optarg))
                goto oom;
            break;
        case 'P':
            profiles = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            export_usage(stdout);
            status = KVR_EXIT_OK;
            goto done;
        default:
            cli_error("unknown option '%s' for 'export'", argv[optind - 1]);
            export_usage(stderr);
            goto done;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument '%s' for 'export'", argv[optind]);
        goto done;
    }
    if (!dir) {
        cli_error("no output directory; give -o DIR");
        goto done;
    }
    if (!sub || !is_guid(sub)) {
        cli_error(sub ? "subscription '%s' is not a GUID"
                      : "no subscription%s; give --subscription or AZURE_SUBSCRIPTION_ID",
                  sub ? sub : "");
        goto done;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error("cannot create '%s': %s", dir, strerror(errno));
        goto done;
    }
    kvr_auth_config_from_env(&acfg);
    if (kvr_endpoints_resolve(&ep, NULL, &err) < 0 || kvr_http_new(&http, NULL, &err) < 0 ||
        kvr_auth_new(&auth, http, &acfg, &err) < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    if (profiles && !ep.profiles) {
        cli_error("--profiles needs the profile service's endpoint: set KVR_PROFILE_ENDPOINT");
        goto done;
    }
    filter = (kvr_export_filter){groups, ngroups, vaults, nvaults, profiles};
    if (kvr_discover(&d, auth, &ep, sub, &filter, progress, &quiet, &err) < 0) {
        cli_error("%s", err.message);
        goto done;
    }

    if (!(b.e = calloc(1, sizeof(*b.e))))
        goto oom;
    b.d = &d;
    b.self = getenv("AZURE_CLIENT_ID");
    b.e->subscription = sdup(&b, sub);
    b.e->retention = (kvr_retention){90 * DAY, 30 * DAY, 7 * DAY, 90 * DAY};
    build_vaults(&b);
    build_apps(&b); /* the vaults first: a credential is declared with its stored copy's vault */
    build_policies(&b);
    build_roles(&b);
    build_contents(&b);
    if (profiles)
        build_profiles(&b);
    if (b.oom)
        goto oom;
    if (write_file(dir, "vaults", &b, KVR_YAML_TOP | KVR_YAML_VAULTS,
                   "The vaults, exported from the live estate, and the estate-wide settings.") <
            0 ||
        write_file(dir, "identity", &b, KVR_YAML_APPS | KVR_YAML_ROLES,
                   "The Entra apps that the vaults' role assignments and access policies name.") <
            0 ||
        write_file(dir, "encryption", &b, KVR_YAML_KEYS | KVR_YAML_SECRETS | KVR_YAML_PROFILES,
                   "What the vaults hold, and the encryption profiles.") < 0)
        goto done;
    if (!quiet)
        fprintf(stderr,
                "kvreconcile: export: %zu vaults, %zu apps, %zu role assignments, %zu keys, %zu "
                "secrets, %zu profiles written to %s; %zu not expressible in schema v1 (see the "
                "comments)\n",
                b.e->nvaults, b.e->napps, b.e->nroles, b.e->nkeys, b.e->nsecrets, b.e->nprofiles,
                dir, b.unexpressed);
    printf("Export: %zu vaults, %zu apps, %zu role assignments, %zu keys, %zu secrets, %zu "
           "profiles; %zu not expressible in schema v1.\n",
           b.e->nvaults, b.e->napps, b.e->nroles, b.e->nkeys, b.e->nsecrets, b.e->nprofiles,
           b.unexpressed);
    status = KVR_EXIT_OK;
    goto done;
oom:
    cli_error("out of memory");
done:
    for (size_t i = 0; i < b.nnotes; i++)
        free(b.notes[i].text);
    free(b.notes);
    kvr_estate_free(b.e);
    kvr_discovery_release(&d);
    kvr_auth_free(auth);
    kvr_http_free(http);
    kvr_endpoints_release(&ep);
    free(groups);
    free(vaults);
    return status;
}
