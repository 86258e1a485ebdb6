/*
 * The estate as data: lookups by name, the table of built-in Key Vault roles, and freeing.
 * Azure compares vault, key and secret names case-insensitively, so lookups do too.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *id;
} ROLES[] = {
    {"Key Vault Administrator", "00482a5a-887f-4fb3-b363-3b7fe8e74483"},
    {"Key Vault Crypto Officer", "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"},
    {"Key Vault Crypto User", "12338af0-0e69-4776-bea7-57ae8d297424"},
    {"Key Vault Crypto Service Encryption User", "e147488a-f6f5-4113-8e2d-b22465e65bf6"},
    {"Key Vault Secrets Officer", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"},
    {"Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"},
    {"Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2"},
    {"Key Vault Certificates Officer", "a4417e6f-fecd-4de8-b567-7b0420556985"},
    {"Key Vault Certificate User", "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"},
    {"Key Vault Data Access Administrator", "8b54135c-b56d-4d72-a534-26097cfdc8d8"},
};

/* The names alone, for "did you mean". Keep in the order of ROLES. */
const char *const kvr_model_role_names[] = {
    "Key Vault Administrator",
    "Key Vault Crypto Officer",
    "Key Vault Crypto User",
    "Key Vault Crypto Service Encryption User",
    "Key Vault Secrets Officer",
    "Key Vault Secrets User",
    "Key Vault Reader",
    "Key Vault Certificates Officer",
    "Key Vault Certificate User",
    "Key Vault Data Access Administrator",
    NULL,
};

const char *kvr_model_role_id(const char *name)
{
    /* Exact case, as the JSON Schema's enum: "did you mean" covers a wrong case. */
    for (size_t i = 0; i < sizeof(ROLES) / sizeof(ROLES[0]); i++)
        if (strcmp(ROLES[i].name, name) == 0)
            return ROLES[i].id;
    return NULL;
}

const char *kvr_model_role_name(const char *guid)
{
    for (size_t i = 0; i < sizeof(ROLES) / sizeof(ROLES[0]); i++)
        if (kvr_str_ieq(ROLES[i].id, guid))
            return ROLES[i].name;
    return NULL;
}

const char *kvr_key_type_name(kvr_key_type t)
{
    switch (t) {
    case KVR_KEY_RSA:
        return "RSA";
    case KVR_KEY_RSA_HSM:
        return "RSA-HSM";
    case KVR_KEY_EC:
        return "EC";
    case KVR_KEY_EC_HSM:
        return "EC-HSM";
    }
    return "?";
}

/*
 * The estate's lookup tables: one hash index per kind of object, keyed as Azure compares
 * (vault, key and secret names without case; app and profile names exactly, hashed folded).
 * A lookup returns the first declaration, as the linear search it replaces did.
 */
struct kvr_estate_index {
    kvr_index vaults, apps, keys, secrets, profiles;
};

typedef struct probe {
    const kvr_estate *e;
    const char *vault, *name;
} probe;

static uint64_t hash2(const char *a, const char *b)
{
    return kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, a), b);
}

static bool vault_is(const kvr_estate *e, size_t i, const char *name)
{
    return e->vaults[i].name && kvr_str_ieq(e->vaults[i].name, name);
}

static bool app_is(const kvr_estate *e, size_t i, const char *name)
{
    return e->apps[i].name && strcmp(e->apps[i].name, name) == 0;
}

static bool key_is(const kvr_estate *e, size_t i, const char *vault, const char *name)
{
    return e->keys[i].vault && e->keys[i].name && kvr_str_ieq(e->keys[i].vault, vault) &&
           kvr_str_ieq(e->keys[i].name, name);
}

static bool secret_is(const kvr_estate *e, size_t i, const char *vault, const char *name)
{
    return e->secrets[i].vault && e->secrets[i].name && kvr_str_ieq(e->secrets[i].vault, vault) &&
           kvr_str_ieq(e->secrets[i].name, name);
}

static bool profile_is(const kvr_estate *e, size_t i, const char *name)
{
    return e->profiles[i].name && strcmp(e->profiles[i].name, name) == 0;
}

static bool match_vault(const void *arg, size_t i)
{
    const probe *p = arg;
    return vault_is(p->e, i, p->name);
}

static bool match_app(const void *arg, size_t i)
{
    const probe *p = arg;
    return app_is(p->e, i, p->name);
}

static bool match_key(const void *arg, size_t i)
{
    const probe *p = arg;
    return key_is(p->e, i, p->vault, p->name);
}

static bool match_secret(const void *arg, size_t i)
{
    const probe *p = arg;
    return secret_is(p->e, i, p->vault, p->name);
}

static bool match_profile(const void *arg, size_t i)
{
    const probe *p = arg;
    return profile_is(p->e, i, p->name);
}

static void index_free(struct kvr_estate_index *x)
{
    if (!x)
        return;
    kvr_index_release(&x->vaults);
    kvr_index_release(&x->apps);
    kvr_index_release(&x->keys);
    kvr_index_release(&x->secrets);
    kvr_index_release(&x->profiles);
    free(x);
}

int kvr_estate_index_build(kvr_estate *e)
{
    struct kvr_estate_index *x = calloc(1, sizeof(*x));
    int rc = 0;
    if (!x)
        return KVR_ENOMEM;
    for (size_t i = 0; i < e->nvaults && !rc; i++)
        if (e->vaults[i].name)
            rc = kvr_index_put(&x->vaults, kvr_hash_ci(KVR_HASH_SEED, e->vaults[i].name), i);
    for (size_t i = 0; i < e->napps && !rc; i++)
        if (e->apps[i].name)
            rc = kvr_index_put(&x->apps, kvr_hash_ci(KVR_HASH_SEED, e->apps[i].name), i);
    if (!rc)
        rc = kvr_index_reserve(&x->keys, e->nkeys);
    for (size_t i = 0; i < e->nkeys && !rc; i++)
        if (e->keys[i].vault && e->keys[i].name)
            rc = kvr_index_put(&x->keys, hash2(e->keys[i].vault, e->keys[i].name), i);
    if (!rc)
        rc = kvr_index_reserve(&x->secrets, e->nsecrets);
    for (size_t i = 0; i < e->nsecrets && !rc; i++)
        if (e->secrets[i].vault && e->secrets[i].name)
            rc = kvr_index_put(&x->secrets, hash2(e->secrets[i].vault, e->secrets[i].name), i);
    for (size_t i = 0; i < e->nprofiles && !rc; i++)
        if (e->profiles[i].name)
            rc = kvr_index_put(&x->profiles, kvr_hash_ci(KVR_HASH_SEED, e->profiles[i].name), i);
    if (rc) {
        index_free(x);
        return rc;
    }
    index_free(e->index);
    e->index = x;
    return 0;
}

const kvr_vault *kvr_estate_vault(const kvr_estate *e, const char *name)
{
    if (e->index) {
        probe p = {e, NULL, name};
        size_t i = name ? kvr_index_first(&e->index->vaults, kvr_hash_ci(KVR_HASH_SEED, name),
                                          match_vault, &p)
                        : KVR_INDEX_NONE;
        return i == KVR_INDEX_NONE ? NULL : &e->vaults[i];
    }
    for (size_t i = 0; i < e->nvaults; i++)
        if (vault_is(e, i, name))
            return &e->vaults[i];
    return NULL;
}

const kvr_app *kvr_estate_app(const kvr_estate *e, const char *name)
{
    if (e->index) {
        probe p = {e, NULL, name};
        size_t i =
            kvr_index_first(&e->index->apps, kvr_hash_ci(KVR_HASH_SEED, name), match_app, &p);
        return i == KVR_INDEX_NONE ? NULL : &e->apps[i];
    }
    for (size_t i = 0; i < e->napps; i++)
        if (app_is(e, i, name))
            return &e->apps[i];
    return NULL;
}

const kvr_key *kvr_estate_key(const kvr_estate *e, const char *vault, const char *name)
{
    if (e->index) {
        probe p = {e, vault, name};
        size_t i = vault && name
                       ? kvr_index_first(&e->index->keys, hash2(vault, name), match_key, &p)
                       : KVR_INDEX_NONE;
        return i == KVR_INDEX_NONE ? NULL : &e->keys[i];
    }
    for (size_t i = 0; i < e->nkeys; i++)
        if (key_is(e, i, vault, name))
            return &e->keys[i];
    return NULL;
}

const kvr_secret *kvr_estate_secret(const kvr_estate *e, const char *vault, const char *name)
{
    if (e->index) {
        probe p = {e, vault, name};
        size_t i = vault && name
                       ? kvr_index_first(&e->index->secrets, hash2(vault, name), match_secret, &p)
                       : KVR_INDEX_NONE;
        return i == KVR_INDEX_NONE ? NULL : &e->secrets[i];
    }
    for (size_t i = 0; i < e->nsecrets; i++)
        if (secret_is(e, i, vault, name))
            return &e->secrets[i];
    return NULL;
}

const kvr_profile *kvr_estate_profile(const kvr_estate *e, const char *name)
{
    if (e->index) {
        probe p = {e, NULL, name};
        size_t i = kvr_index_first(&e->index->profiles, kvr_hash_ci(KVR_HASH_SEED, name),
                                   match_profile, &p);
        return i == KVR_INDEX_NONE ? NULL : &e->profiles[i];
    }
    for (size_t i = 0; i < e->nprofiles; i++)
        if (profile_is(e, i, name))
            return &e->profiles[i];
    return NULL;
}

const kvr_credential *kvr_app_credential(const kvr_app *app, const char *name)
{
    for (size_t i = 0; i < app->ncreds; i++)
        if (app->creds[i].name && strcmp(app->creds[i].name, name) == 0)
            return &app->creds[i];
    return NULL;
}

void kvr_strlist_release(kvr_strlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

void kvr_tags_release(kvr_tags *t)
{
    for (size_t i = 0; i < t->len; i++) {
        free(t->items[i].key);
        free(t->items[i].value);
    }
    free(t->items);
    t->items = NULL;
    t->len = 0;
}

static void vault_release(kvr_vault *v)
{
    free(v->name);
    free(v->resource_group);
    free(v->location);
    for (size_t i = 0; i < v->npolicies; i++) {
        free(v->policies[i].app);
        kvr_strlist_release(&v->policies[i].keys);
        kvr_strlist_release(&v->policies[i].secrets);
        kvr_strlist_release(&v->policies[i].certificates);
    }
    free(v->policies);
    free(v->network.default_action);
    free(v->network.bypass);
    free(v->network.public_access);
    kvr_strlist_release(&v->network.ip_rules);
    kvr_strlist_release(&v->network.vnet_rules);
    kvr_tags_release(&v->tags);
    free(v->copy_from.vault);
    for (size_t i = 0; i < v->nacks; i++) {
        free(v->acks[i].resource_id);
        free(v->acks[i].key);
        free(v->acks[i].secret);
    }
    free(v->acks);
}

static void app_release(kvr_app *a)
{
    free(a->name);
    free(a->display_name);
    free(a->sign_in_audience);
    for (size_t i = 0; i < a->ncreds; i++) {
        free(a->creds[i].name);
        free(a->creds[i].store_vault);
        free(a->creds[i].store_secret);
    }
    free(a->creds);
    free(a->rotation.store_vault);
    free(a->rotation.secret_prefix);
}

static void key_release(kvr_key *k)
{
    kvr_tags_release(&k->tags); /* its other texts are e->shared's */
}

static void secret_release(kvr_secret *s)
{
    kvr_tags_release(&s->tags); /* vault, name and contentType are e->shared's */
    free(s->env_name);
    free(s->file_path);
    free(s->app);
    free(s->credential);
}

static void profile_release(kvr_profile *p)
{
    free(p->name);
    free(p->vault);
    free(p->key);
    free(p->key_version);
    free(p->app);
    free(p->credential);
}

void kvr_estate_lens_get(const kvr_estate *e, kvr_estate_lens *out)
{
    out->vaults = e->nvaults;
    out->apps = e->napps;
    out->roles = e->nroles;
    out->keys = e->nkeys;
    out->secrets = e->nsecrets;
    out->profiles = e->nprofiles;
}

void kvr_estate_truncate(kvr_estate *e, const kvr_estate_lens *to)
{
    while (e->nvaults > to->vaults)
        vault_release(&e->vaults[--e->nvaults]);
    while (e->napps > to->apps)
        app_release(&e->apps[--e->napps]);
    if (e->nroles > to->roles)
        e->nroles = to->roles; /* a role assignment's texts are all e->shared's */
    while (e->nkeys > to->keys)
        key_release(&e->keys[--e->nkeys]);
    while (e->nsecrets > to->secrets)
        secret_release(&e->secrets[--e->nsecrets]);
    while (e->nprofiles > to->profiles)
        profile_release(&e->profiles[--e->nprofiles]);
}

void kvr_estate_free(kvr_estate *e)
{
    kvr_estate_lens none = {0};
    if (!e)
        return;
    free(e->subscription);
    free(e->cloud.name);
    free(e->cloud.authority_host);
    free(e->cloud.resource_manager);
    free(e->cloud.graph);
    free(e->cloud.vault_suffix);
    free(e->cloud.profile_service);
    free(e->lock.storage_account);
    free(e->lock.container);
    free(e->lock.blob);
    free(e->lock.endpoint);
    kvr_estate_truncate(e, &none);
    free(e->vaults);
    free(e->apps);
    free(e->roles);
    free(e->keys);
    free(e->secrets);
    free(e->profiles);
    free(e->active);
    kvr_strlist_release(&e->files);
    kvr_strset_release(&e->shared);
    index_free(e->index);
    free(e);
}
