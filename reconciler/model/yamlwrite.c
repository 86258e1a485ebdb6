/*
 * The desired state written back as YAML: the other direction of the loader, for `export`.
 *
 * It is a pure function of the estate (and the comments the caller attaches): the same model
 * gives the same bytes, objects come out in the model's order, every string is quoted when the
 * loader could read it as anything but that string (a number, a boolean, null, a flow
 * indicator), and durations are written in a form the loader turns back into the same seconds.
 * What it writes loads into the same model again, which is how it is tested.
 */
#include "kvr/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Key operations in the order of the kvr_op bits. */
static const char *const OPS[] = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"};
static const char *const CHARSETS[] = {"alnum", "alnum-symbols", "hex", "base64url"};
static const char *const COPY_MODES[] = {"latest", "all", "none"};

/* Could the loader read `s`, written plain, as something else than this string? */
static bool needs_quotes(const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off",
                                        "null", "y",     "n",   "~",  NULL};
    size_t n = strlen(s);
    if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '/' ||
                    s[0] == '_'))
        return true; /* digits (numbers, dates, versions), indicators, empty */
    if (s[n - 1] == ' ')
        return true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("_./@()+-=", c) != NULL || (c == ' ' && s[i + 1] != ' ');
        if (!ok)
            return true; /* ':', '#', ',', brackets, quotes, tabs, non-ASCII */
    }
    for (size_t i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    return false;
}

static void put_str(FILE *f, const char *s)
{
    if (!needs_quotes(s)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f); /* UTF-8 passes through: the loader reads it as is */
    }
    fputc('"', f);
}

void kvr_model_duration_text(char *buf, size_t size, int64_t seconds)
{
    static const struct {
        int64_t s;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (seconds > 0 && seconds % units[i].s == 0) {
            snprintf(buf, size, "%lld%c", (long long)(seconds / units[i].s), units[i].unit);
            return;
        }
    snprintf(buf, size, "%llds", (long long)seconds);
}

static void field(FILE *f, int indent, const char *name, const char *value)
{
    if (!value)
        return;
    fprintf(f, "%*s%s: ", indent, "", name);
    put_str(f, value);
    fputc('\n', f);
}

static void field_dur(FILE *f, int indent, const char *name, int64_t seconds)
{
    char buf[32];
    if (!seconds)
        return;
    kvr_model_duration_text(buf, sizeof(buf), seconds);
    fprintf(f, "%*s%s: %s\n", indent, "", name, buf);
}

static void field_list(FILE *f, int indent, const char *name, const kvr_strlist *l)
{
    fprintf(f, "%*s%s: [", indent, "", name);
    for (size_t i = 0; i < l->len; i++) {
        if (i)
            fputs(", ", f);
        put_str(f, l->items[i]);
    }
    fputs("]\n", f);
}

static void tags(FILE *f, int indent, const kvr_tags *t)
{
    if (!t->len)
        return;
    fprintf(f, "%*stags:\n", indent, "");
    for (size_t i = 0; i < t->len; i++) {
        fprintf(f, "%*s", indent + 2, "");
        put_str(f, t->items[i].key);
        fputs(": ", f);
        put_str(f, t->items[i].value);
        fputc('\n', f);
    }
}

/* Comment lines (text split at '\n'), each "# line" at `indent`. */
static void comment(FILE *f, int indent, const char *text)
{
    while (text) {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);
        fprintf(f, "%*s#%s%.*s\n", indent, "", len ? " " : "", len, text);
        text = nl ? nl + 1 : NULL;
    }
}

static void notes_at(FILE *f, int indent, const char *section, size_t index,
                     const kvr_yaml_note *notes, size_t nnotes)
{
    for (size_t i = 0; i < nnotes; i++)
        if (notes[i].index == index && notes[i].section && strcmp(section, notes[i].section) == 0)
            comment(f, indent, notes[i].text);
}

static bool has_notes(const char *section, const kvr_yaml_note *notes, size_t nnotes)
{
    for (size_t i = 0; i < nnotes; i++)
        if (notes[i].section && strcmp(notes[i].section, section) == 0)
            return true;
    return false;
}

static void vault(FILE *f, const kvr_vault *v)
{
    field(f, 4, "name", v->name);
    field(f, 4, "resourceGroup", v->resource_group);
    field(f, 4, "location", v->location);
    fprintf(f, "    sku: %s\n", v->sku == KVR_SKU_PREMIUM ? "premium" : "standard");
    fprintf(f, "    rbac: %s\n", v->rbac ? "true" : "false");
    if (v->npolicies) {
        fputs("    accessPolicies:\n", f);
        for (size_t i = 0; i < v->npolicies; i++) {
            const kvr_access_policy *p = &v->policies[i];
            fputs("      - ", f);
            fputs("app: ", f);
            put_str(f, p->app);
            fputc('\n', f);
            field_list(f, 8, "keys", &p->keys);
            field_list(f, 8, "secrets", &p->secrets);
            field_list(f, 8, "certificates", &p->certificates);
        }
    }
    fprintf(f, "    softDeleteDays: %d\n", v->soft_delete_days);
    fprintf(f, "    purgeProtection: %s\n", v->purge_protection ? "true" : "false");
    if (v->network.set) {
        fputs("    network:\n", f);
        field(f, 6, "defaultAction", v->network.default_action);
        field(f, 6, "bypass", v->network.bypass);
        if (v->network.ip_rules.len)
            field_list(f, 6, "ipRules", &v->network.ip_rules);
        if (v->network.vnet_rules.len)
            field_list(f, 6, "virtualNetworkRules", &v->network.vnet_rules);
        field(f, 6, "publicAccess", v->network.public_access);
        if (!v->network.default_action && !v->network.bypass && !v->network.ip_rules.len &&
            !v->network.vnet_rules.len && !v->network.public_access)
            fputs("      defaultAction: Allow\n", f);
    }
    tags(f, 4, &v->tags);
    if (v->copy_from.vault) {
        fputs("    copyFrom:\n", f);
        field(f, 6, "vault", v->copy_from.vault);
        fprintf(f, "      secrets: %s\n", COPY_MODES[v->copy_from.secrets]);
        fprintf(f, "      certificates: %s\n", v->copy_from.certificates ? "true" : "false");
    }
    if (v->retire)
        fputs("    retire: true\n", f);
}

static void app(FILE *f, const kvr_app *a)
{
    field(f, 4, "name", a->name);
    if (a->display_name && (!a->name || strcmp(a->display_name, a->name) != 0))
        field(f, 4, "displayName", a->display_name);
    field(f, 4, "signInAudience", a->sign_in_audience);
    if (!a->ncreds)
        return;
    fputs("    credentials:\n", f);
    for (size_t i = 0; i < a->ncreds; i++) {
        const kvr_credential *c = &a->creds[i];
        fputs("      - name: ", f);
        put_str(f, c->name);
        fputc('\n', f);
        field_dur(f, 8, "lifetime", c->lifetime);
        field_dur(f, 8, "overlap", c->overlap);
        fputs("        storeIn:\n", f);
        field(f, 10, "vault", c->store_vault);
        field(f, 10, "secret", c->store_secret);
    }
}

static void role(FILE *f, const kvr_role_assignment *r)
{
    const char *name = r->role_id ? kvr_model_role_name(r->role_id) : NULL;
    field(f, 4, "app", r->app);
    field(f, 4, "role", name ? name : r->role_id ? r->role_id : r->role);
    field(f, 4, "vault", r->vault);
    field(f, 4, "key", r->key);
}

static void key(FILE *f, const kvr_key *k)
{
    bool first = true;
    field(f, 4, "vault", k->vault);
    field(f, 4, "name", k->name);
    fprintf(f, "    type: %s\n", kvr_key_type_name(k->type));
    if (k->type == KVR_KEY_RSA || k->type == KVR_KEY_RSA_HSM)
        fprintf(f, "    size: %d\n", k->size);
    else
        field(f, 4, "curve", k->curve);
    fputs("    ops: [", f);
    for (size_t i = 0; i < sizeof(OPS) / sizeof(OPS[0]); i++)
        if (k->ops & (1u << i)) {
            fprintf(f, "%s%s", first ? "" : ", ", OPS[i]);
            first = false;
        }
    fputs("]\n", f);
    field(f, 4, "generation", k->generation);
    if (k->rotation.set) {
        fputs("    rotation:\n", f);
        field_dur(f, 6, "every", k->rotation.every);
        field_dur(f, 6, "beforeExpiry", k->rotation.before_expiry);
        field_dur(f, 6, "expiresAfter", k->rotation.expires_after);
        field_dur(f, 6, "notifyBefore", k->rotation.notify_before);
    }
    tags(f, 4, &k->tags);
}

static void secret(FILE *f, const kvr_secret *s)
{
    field(f, 4, "vault", s->vault);
    field(f, 4, "name", s->name);
    field(f, 4, "contentType", s->content_type);
    tags(f, 4, &s->tags);
    switch (s->source) {
    case KVR_SECRET_GENERATE:
        fprintf(f, "    generate:\n      length: %d\n      charset: %s\n", s->gen_length,
                CHARSETS[s->gen_charset]);
        break;
    case KVR_SECRET_FROM_ENV:
        field(f, 4, "fromEnv", s->env_name);
        break;
    case KVR_SECRET_FROM_FILE:
        field(f, 4, "fromFile", s->file_path);
        break;
    case KVR_SECRET_FROM_APP_CREDENTIAL:
        fputs("    fromAppCredential:\n", f);
        field(f, 6, "app", s->app);
        field(f, 6, "credential", s->credential);
        break;
    case KVR_SECRET_EXTERNAL:
        fputs("    external: true\n", f);
        break;
    }
}

static void profile(FILE *f, const kvr_profile *p)
{
    field(f, 4, "name", p->name);
    field(f, 4, "vault", p->vault);
    field(f, 4, "key", p->key);
    field(f, 4, "keyVersion", p->key_version ? p->key_version : "latest");
    field(f, 4, "app", p->app);
    field(f, 4, "credential", p->credential);
}

typedef void (*item_fn)(FILE *f, const void *item);

/* One list section: its notes before each item and at its end. */
static void section(FILE *f, const char *name, const void *items, size_t n, size_t size, item_fn fn,
                    const kvr_yaml_note *notes, size_t nnotes)
{
    if (!n && !has_notes(name, notes, nnotes))
        return;
    fputc('\n', f);
    if (!n) {
        notes_at(f, 0, name, SIZE_MAX, notes, nnotes);
        return;
    }
    fprintf(f, "%s:\n", name);
    for (size_t i = 0; i < n; i++) {
        notes_at(f, 2, name, i, notes, nnotes);
        fputs("  -", f);
        fn(f, (const char *)items + i * size);
    }
    notes_at(f, 2, name, SIZE_MAX, notes, nnotes);
}

/* The item writers put every field at indent 4; the first one joins the "  -" line. */
#define ITEM(fn, type)                                                                             \
    static void fn##_item(FILE *f, const void *item)                                               \
    {                                                                                              \
        char *buf = NULL;                                                                          \
        size_t len = 0;                                                                            \
        FILE *m = open_memstream(&buf, &len);                                                      \
        if (!m) {                                                                                  \
            fputs(" {}\n", f);                                                                     \
            return;                                                                                \
        }                                                                                          \
        fn(m, (const type *)item);                                                                 \
        fclose(m);                                                                                 \
        fprintf(f, " %s", len > 4 ? buf + 4 : "{}\n");                                             \
        free(buf);                                                                                 \
    }
ITEM(vault, kvr_vault)
ITEM(app, kvr_app)
ITEM(role, kvr_role_assignment)
ITEM(key, kvr_key)
ITEM(secret, kvr_secret)
ITEM(profile, kvr_profile)

int kvr_model_write_yaml(char **out, const kvr_estate *e, unsigned sections, const char *preamble,
                         const kvr_yaml_note *notes, size_t nnotes)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    *out = NULL;
    if (!f)
        return KVR_ENOMEM;
    if (preamble)
        fputs(preamble, f);
    fputs("apiVersion: kvreconcile/v1\n", f);
    if (sections & KVR_YAML_TOP) {
        if (e->subscription)
            field(f, 0, "subscription", e->subscription);
        if (e->cloud.name || e->cloud.authority_host || e->cloud.resource_manager ||
            e->cloud.graph || e->cloud.vault_suffix || e->cloud.profile_service) {
            fputs("cloud:\n", f);
            field(f, 2, "name", e->cloud.name);
            field(f, 2, "authorityHost", e->cloud.authority_host);
            field(f, 2, "resourceManager", e->cloud.resource_manager);
            field(f, 2, "graph", e->cloud.graph);
            field(f, 2, "vaultSuffix", e->cloud.vault_suffix);
            field(f, 2, "profileService", e->cloud.profile_service);
        }
    }
    if (sections & KVR_YAML_VAULTS)
        section(f, "vaults", e->vaults, e->nvaults, sizeof(*e->vaults), vault_item, notes, nnotes);
    if (sections & KVR_YAML_APPS)
        section(f, "apps", e->apps, e->napps, sizeof(*e->apps), app_item, notes, nnotes);
    if (sections & KVR_YAML_ROLES)
        section(f, "roleAssignments", e->roles, e->nroles, sizeof(*e->roles), role_item, notes,
                nnotes);
    if (sections & KVR_YAML_KEYS)
        section(f, "keys", e->keys, e->nkeys, sizeof(*e->keys), key_item, notes, nnotes);
    if (sections & KVR_YAML_SECRETS)
        section(f, "secrets", e->secrets, e->nsecrets, sizeof(*e->secrets), secret_item, notes,
                nnotes);
    if (sections & KVR_YAML_PROFILES) {
        section(f, "profiles", e->profiles, e->nprofiles, sizeof(*e->profiles), profile_item, notes,
                nnotes);
        if (e->active) {
            fputc('\n', f);
            notes_at(f, 0, "active", 0, notes, nnotes);
            field(f, 0, "active", e->active);
        }
    }
    if ((sections & KVR_YAML_TOP) && (e->retention.keys || e->retention.profiles ||
                                      e->retention.app_secrets || e->retention.vaults)) {
        fputs("\nretention:\n", f);
        field_dur(f, 2, "keys", e->retention.keys);
        field_dur(f, 2, "profiles", e->retention.profiles);
        field_dur(f, 2, "appSecrets", e->retention.app_secrets);
        field_dur(f, 2, "vaults", e->retention.vaults);
    }
    if (has_notes("", notes, nnotes)) {
        fputc('\n', f);
        notes_at(f, 0, "", SIZE_MAX, notes, nnotes);
    }
    if (fclose(f) != 0) {
        free(buf);
        return KVR_ENOMEM;
    }
    *out = buf;
    return 0;
}
