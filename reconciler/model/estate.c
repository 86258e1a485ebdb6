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

const kvr_vault *kvr_estate_vault(const kvr_estate *e, const char *name)
{
    for (size_t i = 0; i < e->nvaults; i++)
        if (e->vaults[i].name && kvr_str_ieq(e->vaults[i].name, name))
            return &e->vaults[i];
    return NULL;
}

const kvr_app *kvr_estate_app(const kvr_estate *e, const char *name)
{
    for (size_t i = 0; i < e->napps; i++)
        if (e->apps[i].name && strcmp(e->apps[i].name, name) == 0)
            return &e->apps[i];
    return NULL;
}

const kvr_key *kvr_estate_key(const kvr_estate *e, const char *vault, const char *name)
{
    for (size_t i = 0; i < e->nkeys; i++)
        if (e->keys[i].vault && e->keys[i].name && kvr_str_ieq(e->keys[i].vault, vault) &&
            kvr_str_ieq(e->keys[i].name, name))
            return &e->keys[i];
    return NULL;
}

const kvr_profile *kvr_estate_profile(const kvr_estate *e, const char *name)
{
    for (size_t i = 0; i < e->nprofiles; i++)
        if (e->profiles[i].name && strcmp(e->profiles[i].name, name) == 0)
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
}

void kvr_estate_free(kvr_estate *e)
{
    if (!e)
        return;
    free(e->subscription);
    free(e->cloud.name);
    free(e->cloud.authority_host);
    free(e->cloud.resource_manager);
    free(e->cloud.graph);
    free(e->cloud.vault_suffix);
    free(e->cloud.profile_service);
    for (size_t i = 0; i < e->nvaults; i++)
        vault_release(&e->vaults[i]);
    free(e->vaults);
    for (size_t i = 0; i < e->napps; i++)
        app_release(&e->apps[i]);
    free(e->apps);
    for (size_t i = 0; i < e->nroles; i++) {
        free(e->roles[i].app);
        free(e->roles[i].role);
        free(e->roles[i].role_id);
        free(e->roles[i].vault);
        free(e->roles[i].key);
    }
    free(e->roles);
    for (size_t i = 0; i < e->nkeys; i++) {
        free(e->keys[i].vault);
        free(e->keys[i].name);
        free(e->keys[i].curve);
        free(e->keys[i].generation);
        kvr_tags_release(&e->keys[i].tags);
    }
    free(e->keys);
    for (size_t i = 0; i < e->nsecrets; i++) {
        kvr_secret *s = &e->secrets[i];
        free(s->vault);
        free(s->name);
        free(s->content_type);
        kvr_tags_release(&s->tags);
        free(s->env_name);
        free(s->file_path);
        free(s->app);
        free(s->credential);
    }
    free(e->secrets);
    for (size_t i = 0; i < e->nprofiles; i++) {
        kvr_profile *p = &e->profiles[i];
        free(p->name);
        free(p->vault);
        free(p->key);
        free(p->key_version);
        free(p->app);
        free(p->credential);
    }
    free(e->profiles);
    free(e->active);
    kvr_strlist_release(&e->files);
    free(e);
}
