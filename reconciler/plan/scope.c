/*
 * The read scope: what a plan of the desired state needs read, told to the provider as names.
 * A provider never sees the desired estate (kvr/provider.h), yet its reader must stay as frugal
 * as when it did: no vault, key or secret the plan does not look at is fetched, and a secret's
 * value only where the plan compares it. So every rule of "what is compared" lives here, next
 * to the passes that compare, and the reader only follows the names and flags:
 *
 *   vaults       every declared vault, in the estate's order (the reader's visiting order); a
 *                relocation's target names its source, and both sides of a relocation that
 *                copies certificates have theirs listed;
 *   keys         the declared ones; the rotation policy where one is declared;
 *   secrets      the declared ones, with the value compared unless it is generated (whatever
 *                was generated is right) or external (never read); then each credential's
 *                stored copy, whose value the credential pass compares;
 *   apps, roles  by display name, which is how apps are found in Entra;
 *   profiles     when any is declared.
 */
#include "kvr/plan.h"

#include <stdlib.h>

void kvr_scope_free(kvr_scope *s)
{
    if (!s)
        return;
    /* the arrays are this module's (kvr_plan_read_scope); the strings are the estate's */
    free((void *)s->vaults);
    free((void *)s->keys);
    free((void *)s->secrets);
    free((void *)s->apps);
    free((void *)s->roles);
    free((void *)s->secret_prefixes);
    free(s);
}

static void *array(size_t n, size_t size)
{
    return calloc(n ? n : 1, size); /* never NULL for an empty list: NULL means no memory */
}

/* The display name of the declared app `name`; the name itself when none is declared. */
static const char *display_name(const kvr_estate *d, const char *name)
{
    const kvr_app *a = name ? kvr_estate_app(d, name) : NULL;
    return a && a->display_name ? a->display_name : name;
}

int kvr_plan_read_scope(kvr_scope **out, const kvr_estate *d, const char *subscription,
                        kvr_error *err)
{
    kvr_scope *s = calloc(1, sizeof(*s));
    kvr_scope_vault *vaults = NULL;
    kvr_scope_object *keys = NULL, *secrets = NULL, *prefixes = NULL;
    const char **apps = NULL;
    kvr_scope_role *roles = NULL;
    size_t ncopies = 0;

    *out = NULL;
    for (size_t i = 0; i < d->napps; i++)
        ncopies += d->apps[i].ncreds;
    if (!s)
        goto oom;
    s->subscription = subscription;
    s->vaults = vaults = array(d->nvaults, sizeof(*vaults));
    s->keys = keys = array(d->nkeys, sizeof(*keys));
    s->secrets = secrets = array(d->nsecrets + ncopies, sizeof(*secrets));
    s->apps = apps = array(d->napps, sizeof(*apps));
    s->roles = roles = array(d->nroles, sizeof(*roles));
    s->secret_prefixes = prefixes = array(d->napps, sizeof(*prefixes));
    if (!vaults || !keys || !secrets || !apps || !roles || !prefixes)
        goto oom;

    for (size_t i = 0; i < d->nvaults; i++) {
        const kvr_vault *v = &d->vaults[i];
        kvr_scope_vault *sv = &vaults[s->nvaults++];
        sv->name = v->name;
        sv->resource_group = v->resource_group;
        sv->copy_from = v->copy_from.vault;
        if (v->copy_from.vault && v->copy_from.certificates)
            sv->certificates = true;
        /* what the vault holds undeclared: named to be reported, read to be retired (a vault
           that is itself retired goes whole) */
        sv->unmanaged = !v->retire && v->unmanaged == KVR_UNMANAGED_REPORT;
        sv->unmanaged_read = !v->retire && v->unmanaged == KVR_UNMANAGED_RETIRE;
    }
    /* the source of a relocation that copies certificates has them compared too (by the first
       declaration of its name, as every lookup of a vault) */
    for (size_t i = 0; i < d->nvaults; i++) {
        const kvr_vault *v = &d->vaults[i], *src;
        if (v->copy_from.vault && v->copy_from.certificates &&
            (src = kvr_estate_vault(d, v->copy_from.vault)))
            vaults[src - d->vaults].certificates = true;
    }

    for (size_t i = 0; i < d->nkeys; i++)
        keys[s->nkeys++] = (kvr_scope_object){
            .vault = d->keys[i].vault,
            .name = d->keys[i].name,
            .rotation = d->keys[i].rotation.set,
        };

    for (size_t i = 0; i < d->nsecrets; i++) {
        const kvr_secret *sc = &d->secrets[i];
        secrets[s->nsecrets++] = (kvr_scope_object){
            .vault = sc->vault,
            .name = sc->name,
            /* a generated value has nothing to be compared with; an external one is never read */
            .value = sc->source != KVR_SECRET_GENERATE && sc->source != KVR_SECRET_EXTERNAL,
        };
    }
    for (size_t i = 0; i < d->napps; i++)
        for (size_t c = 0; c < d->apps[i].ncreds; c++)
            secrets[s->nsecrets++] = (kvr_scope_object){
                .vault = d->apps[i].creds[c].store_vault,
                .name = d->apps[i].creds[c].store_secret,
                .value = true,
                .credential = true,
            };

    for (size_t i = 0; i < d->napps; i++)
        if (d->apps[i].rotation.set)
            prefixes[s->nsecret_prefixes++] = (kvr_scope_object){
                .vault = d->apps[i].rotation.store_vault,
                .name = d->apps[i].rotation.secret_prefix,
                .value = true,
                .credential = true,
            };
    for (size_t i = 0; i < d->napps; i++)
        apps[s->napps++] = d->apps[i].display_name ? d->apps[i].display_name : d->apps[i].name;
    for (size_t i = 0; i < d->nroles; i++)
        roles[s->nroles++] = (kvr_scope_role){
            .vault = d->roles[i].vault,
            .app = display_name(d, d->roles[i].app),
        };

    s->profiles = d->nprofiles > 0;
    s->dependents = d->nvaults > 0; /* any declared vault's keys, versions or itself may go */
    /* an app that left the YAML is retired (kvr_plan_pass_retire); an estate with neither apps
       nor profiles never needed the directory, and does not start to */
    s->retired_apps = d->napps > 0 || d->nprofiles > 0;
    *out = s;
    return 0;
oom:
    kvr_scope_free(s);
    return kvr_error_oom(err);
}
