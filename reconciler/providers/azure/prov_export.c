/*
 * Discovery for `export`: the live estate when there is no desired state yet to say what to
 * read. It runs in two phases so that the reading itself stays the plan's reader
 * (kvr_live_read_scope, prov_read.c), with its request discipline:
 *
 *   1. find:  the vaults of the subscription (or of the resource groups given, or the vaults
 *             named), the role assignments on each (one list per vault, concurrently), and the
 *             principals those assignments and the vaults' access policies name (Graph
 *             servicePrincipals, concurrently);
 *   2. read:  a scope made of what phase 1 found (the vaults by name and group, the
 *             applications by display name, the profiles when asked, and `everything` about
 *             them) is handed to the reader, a share of the vaults at a time so that progress
 *             can be told.
 *
 * Secret values are never read: the scopes handed to the reader name no secret.
 */
#include "kvr/providers.h"
#include "prov_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BATCH_MAX 256 /* requests of one round, as the reader's ROUND_CONNS */
#define PAGES_MAX 10000
/* Vaults are read in at most PARTS_MAX shares of at least PART_MIN, and progress is told after
   each. Every share ends with a tail of round trips that few vaults fill, so shares cost time:
   on the 200-vault bench estate (tests/bench/run_export.sh) 4 shares made export 2.3 times as
   long as plan, 2 shares 1.2 times, 1 share 1.2 times. */
#define PART_MIN 100
#define PARTS_MAX 2

/* One paged list read alongside others. */
typedef struct plist {
    const char *scope; /* NULL: Key Vault */
    char *url;         /* the next page to get; NULL: done */
    json_t *items;
    int pages;
    bool missing; /* 404: nothing there */
    const char *what;
} plist;

/* Reads every page of the n lists, a round of at most BATCH_MAX first or next pages at a time.
   0, or the first failure (err). */
static int lists_run(kvr_auth *a, plist *L, size_t n, kvr_error *err)
{
    kvr_http_request *reqs = calloc(BATCH_MAX, sizeof(*reqs));
    kvr_http_response *resp = calloc(BATCH_MAX, sizeof(*resp));
    kvr_error *errs = calloc(BATCH_MAX, sizeof(*errs));
    int *codes = calloc(BATCH_MAX, sizeof(*codes));
    size_t *which = calloc(BATCH_MAX, sizeof(*which));
    int rc = 0;

    if (!reqs || !resp || !errs || !codes || !which) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (;;) {
        size_t m = 0;
        const char *scope = NULL;
        bool any = false;
        /* a round: pending lists of one scope (the first pending one's) */
        for (size_t i = 0; i < n && m < BATCH_MAX; i++) {
            if (!L[i].url)
                continue;
            if (!any) {
                scope = L[i].scope;
                any = true;
            }
            if ((scope == NULL) != (L[i].scope == NULL) ||
                (scope && strcmp(scope, L[i].scope) != 0))
                continue;
            reqs[m] = (kvr_http_request){.method = "GET", .url = L[i].url};
            kvr_http_response_init(&resp[m]);
            which[m++] = i;
        }
        if (!m)
            break;
        if (scope)
            kvr_auth_send_batch(resp, codes, a, scope, reqs, m, errs);
        else
            kvr_auth_send_kv(resp, codes, a, reqs, m, errs);
        for (size_t k = 0; k < m; k++) {
            plist *p = &L[which[k]];
            json_t *body = NULL, *value;
            char *next = NULL;
            if (rc) {
                /* a failure earlier in the round: the rest is not looked at */
            } else if (codes[k] < 0) {
                *err = errs[k];
                rc = codes[k];
            } else if (resp[k].status == 404) {
                p->missing = true;
                free(p->url);
                p->url = NULL;
            } else if (resp[k].status != 200) {
                rc = kvr_http_error(err, &resp[k], p->what, NULL);
            } else if (!(body = json_loadb(resp[k].body, resp[k].body_len, 0, NULL)) ||
                       !json_is_array(value = json_object_get(body, "value"))) {
                rc = kvr_error_set(err, KVR_EPROTO, "%s: page %d has no value array", p->what,
                                   p->pages + 1);
            } else if (json_array_extend(p->items, value) < 0) {
                rc = kvr_error_oom(err);
            } else if ((rc = kvr_http_next_link(&next, p->url, body, err)) == 0) {
                free(p->url);
                p->url = next;
                if (next && ++p->pages >= PAGES_MAX)
                    rc = kvr_error_set(err, KVR_ETOOBIG, "%s: more than %d pages", p->what,
                                       PAGES_MAX);
            }
            json_decref(body);
            kvr_http_response_release(&resp[k]);
        }
        if (rc)
            break;
    }
done:
    free(reqs);
    free(resp);
    free(errs);
    free(codes);
    free(which);
    return rc;
}

/* ---- phase 1 ------------------------------------------------------------------------------ */

static void plists_free(plist *L, size_t n)
{
    for (size_t i = 0; L && i < n; i++) {
        json_decref(L[i].items);
        free(L[i].url);
    }
    free(L);
}

static int vault_cmp(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *nx = json_string_value(json_object_get(x, "name"));
    const char *ny = json_string_value(json_object_get(y, "name"));
    return strcasecmp(nx ? nx : "", ny ? ny : "");
}

static bool wanted(const kvr_export_filter *f, const char *name)
{
    if (!f || !f->nvaults)
        return true;
    for (size_t i = 0; i < f->nvaults; i++)
        if (kvr_str_ieq(f->vaults[i], name))
            return true;
    return false;
}

/* The vaults of the subscription (or the groups), filtered and sorted, into *out. */
static int find_vaults(json_t **out, kvr_auth *a, const kvr_endpoints *ep, const char *sub,
                       const kvr_export_filter *f, const char *arm_scope, kvr_error *err)
{
    size_t ngroups = f && f->ngroups ? f->ngroups : 1;
    json_t *all = json_array(), **sorted = NULL;
    int rc = 0;

    *out = NULL;
    if (!all)
        return kvr_error_oom(err);
    for (size_t g = 0; !rc && g < ngroups; g++) {
        json_t *items = NULL;
        char *url = f && f->ngroups
                        ? prov_fmt(err,
                                   "%s/subscriptions/%s/resourceGroups/%s/providers/"
                                   "Microsoft.KeyVault/vaults?api-version=" ARM_VAULTS_API,
                                   ep->arm, sub, f->groups[g])
                        : prov_fmt(err,
                                   "%s/subscriptions/%s/providers/Microsoft.KeyVault/vaults"
                                   "?api-version=" ARM_VAULTS_API,
                                   ep->arm, sub);
        char what[200];
        kvr_http_request req;
        if (!url) {
            rc = KVR_ENOMEM;
            break;
        }
        if (f && f->ngroups)
            snprintf(what, sizeof(what), "list vaults of resource group '%.100s'", f->groups[g]);
        else
            snprintf(what, sizeof(what), "list vaults of subscription '%.64s'", sub);
        req = (kvr_http_request){.method = "GET", .url = url};
        rc = kvr_auth_list(&items, a, arm_scope, &req, what, err);
        free(url);
        for (size_t i = 0; !rc && i < json_array_size(items); i++) {
            json_t *v = json_array_get(items, i);
            const char *name = json_string_value(json_object_get(v, "name"));
            if (name && wanted(f, name) && json_array_append(all, v) < 0)
                rc = kvr_error_oom(err);
        }
        json_decref(items);
    }
    for (size_t i = 0; !rc && f && i < f->nvaults; i++) {
        bool found = false;
        for (size_t k = 0; k < json_array_size(all); k++)
            found |= kvr_str_ieq(json_string_value(json_object_get(json_array_get(all, k), "name")),
                                 f->vaults[i]);
        if (!found)
            rc = kvr_error_set(err, KVR_ENOTFOUND, "vault '%s' is not in %s", f->vaults[i],
                               f->ngroups ? "the resource groups given" : "the subscription");
    }
    if (!rc && json_array_size(all) > 1) {
        size_t n = json_array_size(all);
        json_t *s = json_array();
        if (!(sorted = malloc(n * sizeof(*sorted))) || !s) {
            json_decref(s);
            rc = kvr_error_oom(err);
        } else {
            for (size_t i = 0; i < n; i++)
                sorted[i] = json_array_get(all, i);
            qsort(sorted, n, sizeof(*sorted), vault_cmp);
            for (size_t i = 0; i < n; i++)
                json_array_append(s, sorted[i]);
            json_decref(all);
            all = s;
        }
    }
    free(sorted);
    if (rc) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return 0;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* The role assignment's scope is the vault (id) or one of its keys. */
static bool in_vault(const char *scope, const char *vault_id)
{
    size_t n = strlen(vault_id);
    if (!scope || strncasecmp(scope, vault_id, n) != 0)
        return false;
    return scope[n] == '\0' || strncasecmp(scope + n, "/keys/", 6) == 0;
}

static int add_principal(char ***ids, size_t *n, size_t *cap, const char *id)
{
    if (!id)
        return 0;
    for (size_t i = 0; i < *n; i++)
        if (kvr_str_ieq((*ids)[i], id))
            return 0;
    if (*n == *cap && kvr_grow((void **)ids, cap, *n + 1, sizeof(**ids)) < 0)
        return KVR_ENOMEM;
    if (!((*ids)[*n] = strdup(id)))
        return KVR_ENOMEM;
    (*n)++;
    return 0;
}

static char *dupnull(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int network_from(kvr_network *nw, const json_t *props)
{
    const json_t *acls = json_object_get(props, "networkAcls");
    const char *pna = json_string_value(json_object_get(props, "publicNetworkAccess"));
    const json_t *ip = json_object_get(acls, "ipRules"),
                 *vn = json_object_get(acls, "virtualNetworkRules");
    memset(nw, 0, sizeof(*nw));
    /* open to all, as a vault is unless told otherwise: nothing to declare */
    if (!json_is_object(acls) && (!pna || strcmp(pna, "Enabled") == 0))
        return 0;
    nw->set = true;
    nw->default_action = dupnull(json_string_value(json_object_get(acls, "defaultAction")));
    nw->bypass = dupnull(json_string_value(json_object_get(acls, "bypass")));
    nw->public_access = dupnull(pna);
    if (json_array_size(ip) && !(nw->ip_rules.items = calloc(json_array_size(ip), sizeof(char *))))
        return KVR_ENOMEM;
    for (size_t i = 0; i < json_array_size(ip); i++) {
        const char *v = json_string_value(json_object_get(json_array_get(ip, i), "value"));
        if (v && !(nw->ip_rules.items[nw->ip_rules.len++] = strdup(v)))
            return KVR_ENOMEM;
    }
    if (json_array_size(vn) &&
        !(nw->vnet_rules.items = calloc(json_array_size(vn), sizeof(char *))))
        return KVR_ENOMEM;
    for (size_t i = 0; i < json_array_size(vn); i++) {
        const char *v = json_string_value(json_object_get(json_array_get(vn, i), "id"));
        if (v && !(nw->vnet_rules.items[nw->vnet_rules.len++] = strdup(v)))
            return KVR_ENOMEM;
    }
    return 0;
}

/* ---- phase 2 ------------------------------------------------------------------------------ */

/* A scope for the reader: vaults [from, to) of `vaults` (none when from == to) and everything
   about them; the apps and the profiles are the caller's to add. Names are borrowed from
   `vaults` and `sub`; the arrays and resource groups are owned (naming_release). */
typedef struct naming {
    kvr_scope scope;
    kvr_scope_vault *vaults;
    char **groups;
    const char **apps;
} naming;

static void naming_release(naming *n)
{
    for (size_t i = 0; n->groups && i < n->scope.nvaults; i++)
        free(n->groups[i]);
    free(n->groups);
    free(n->vaults);
    free(n->apps);
    memset(n, 0, sizeof(*n));
}

static int naming_init(naming *n, const json_t *vaults, size_t from, size_t to, const char *sub)
{
    memset(n, 0, sizeof(*n));
    n->scope.subscription = sub;
    n->scope.everything = true;
    if (to > from && (!(n->vaults = calloc(to - from, sizeof(*n->vaults))) ||
                      !(n->groups = calloc(to - from, sizeof(*n->groups)))))
        goto oom;
    n->scope.vaults = n->vaults;
    for (size_t i = from; i < to; i++) {
        const json_t *v = json_array_get(vaults, i);
        char rg[128];
        const char *id = json_string_value(json_object_get(v, "id")), *p;
        kvr_scope_vault *sv = &n->vaults[n->scope.nvaults];
        rg[0] = '\0';
        for (p = id; p && *p; p++) /* ARM ids are case-insensitive: .../resourcegroups/RG/... */
            if (strncasecmp(p, "/resourceGroups/", 16) == 0) {
                snprintf(rg, sizeof(rg), "%.*s", (int)strcspn(p + 16, "/"), p + 16);
                break;
            }
        if (!(n->groups[n->scope.nvaults] = strdup(rg)))
            goto oom;
        n->scope.nvaults++;
        sv->name = json_string_value(json_object_get(v, "name"));
        sv->resource_group = n->groups[n->scope.nvaults - 1];
    }
    return 0;
oom:
    naming_release(n);
    return KVR_ENOMEM;
}

static void strlist_free(kvr_strlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
}

void kvr_discovery_release(kvr_discovery *d)
{
    for (size_t i = 0; i < d->nparts; i++)
        kvr_live_free(d->parts[i]);
    free(d->parts);
    for (size_t i = 0; i < d->nvaults; i++) {
        kvr_found_vault *v = &d->vaults[i];
        free(v->name);
        free(v->network.default_action);
        free(v->network.bypass);
        free(v->network.public_access);
        strlist_free(&v->network.ip_rules);
        strlist_free(&v->network.vnet_rules);
    }
    free(d->vaults);
    for (size_t i = 0; i < d->nprincipals; i++) {
        free(d->principals[i].object_id);
        free(d->principals[i].app_id);
        free(d->principals[i].display_name);
        free(d->principals[i].type);
    }
    free(d->principals);
    memset(d, 0, sizeof(*d));
}

int kvr_discover(kvr_discovery *out, kvr_auth *a, const kvr_endpoints *ep, const char *sub,
                 const kvr_export_filter *f, kvr_progress_fn progress, void *arg, kvr_error *err)
{
    char *arm_scope = NULL, *graph_scope = NULL, **ids = NULL;
    json_t *vaults = NULL, *roles = json_array(), *above = json_array();
    plist *L = NULL;
    size_t nv = 0, nids = 0, ids_cap = 0, nparts, per;
    naming last = {0};
    kvr_marker_key mk;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    memset(&mk, 0, sizeof(mk));
    if (!sub)
        return kvr_error_set(err, KVR_EINVAL,
                             "no subscription: give --subscription or AZURE_SUBSCRIPTION_ID");
    arm_scope = prov_fmt(err, "%s/.default", ep->arm);
    graph_scope = prov_fmt(err, "%s/.default", ep->graph);
    if (!arm_scope || !graph_scope || !roles || !above) {
        rc = kvr_error_oom(err);
        goto done;
    }
    if ((rc = find_vaults(&vaults, a, ep, sub, f, arm_scope, err)) < 0)
        goto done;
    nv = json_array_size(vaults);
    if (progress)
        progress(arg, 0, nv);

    /* the role assignments at, above and below each vault; those at the vault or a key count */
    if (nv && !(L = calloc(nv, sizeof(*L)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t i = 0; i < nv; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(vaults, i), "id"));
        L[i].scope = arm_scope;
        L[i].what = "list role assignments of a vault";
        L[i].items = json_array();
        L[i].url = id ? prov_fmt(err,
                                 "%s%s/providers/Microsoft.Authorization/roleAssignments"
                                 "?api-version=" ARM_ROLES_API,
                                 ep->arm, id)
                      : NULL;
        if (!L[i].items || !id || !L[i].url) {
            rc = kvr_error_set(err, id ? KVR_ENOMEM : KVR_EPROTO,
                               id ? "out of memory" : "unexpected response: a vault has no id");
            goto done;
        }
    }
    if ((rc = lists_run(a, L, nv, err)) < 0)
        goto done;
    for (size_t i = 0; i < nv; i++) {
        const json_t *v = json_array_get(vaults, i), *props = json_object_get(v, "properties");
        const char *id = json_string_value(json_object_get(v, "id"));
        for (size_t k = 0; k < json_array_size(L[i].items); k++) {
            json_t *ra = json_array_get(L[i].items, k);
            const json_t *rp = json_object_get(ra, "properties");
            const char *scope = json_string_value(json_object_get(rp, "scope"));
            /* at the vault or below it: in no other vault's list, so never twice; above it
               (a group, the subscription): in every vault's list of that group, kept once */
            if (!in_vault(scope, id)) {
                const char *name = json_string_value(json_object_get(ra, "name"));
                bool seen = !name;
                for (size_t j = 0; !seen && j < json_array_size(above); j++)
                    seen = strcmp(name, json_string_value(json_object_get(json_array_get(above, j),
                                                                          "name"))) == 0;
                if (!seen && json_array_append(above, ra) < 0) {
                    rc = kvr_error_oom(err);
                    goto done;
                }
                continue;
            }
            if (json_array_append(roles, ra) < 0 ||
                add_principal(&ids, &nids, &ids_cap,
                              json_string_value(json_object_get(rp, "principalId"))) < 0) {
                rc = kvr_error_oom(err);
                goto done;
            }
        }
        if (json_is_true(json_object_get(props, "enableRbacAuthorization")))
            continue;
        for (size_t k = 0; k < json_array_size(json_object_get(props, "accessPolicies")); k++) {
            const json_t *ap = json_array_get(json_object_get(props, "accessPolicies"), k);
            if (add_principal(&ids, &nids, &ids_cap,
                              json_string_value(json_object_get(ap, "objectId"))) < 0) {
                rc = kvr_error_oom(err);
                goto done;
            }
        }
    }
    plists_free(L, nv);
    L = NULL;

    /* the principals: service principals of applications, or someone else */
    if (nids > 1)
        qsort(ids, nids, sizeof(*ids), strp_cmp);
    if (nids && !(out->principals = calloc(nids, sizeof(*out->principals)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    {
        kvr_http_request *reqs = calloc(nids + 1, sizeof(*reqs));
        kvr_http_response *resp = calloc(nids + 1, sizeof(*resp));
        kvr_error *errs = calloc(nids + 1, sizeof(*errs));
        int *codes = calloc(nids + 1, sizeof(*codes));
        char **urls = calloc(nids + 1, sizeof(*urls));
        if (!reqs || !resp || !errs || !codes || !urls)
            rc = kvr_error_oom(err);
        for (size_t i = 0; !rc && i < nids; i++) {
            if (!(urls[i] = prov_fmt(err, "%s/v1.0/servicePrincipals/%s", ep->graph, ids[i])))
                rc = KVR_ENOMEM;
            reqs[i] = (kvr_http_request){.method = "GET", .url = urls[i]};
            kvr_http_response_init(&resp[i]);
        }
        for (size_t i = 0; !rc && i < nids; i += BATCH_MAX)
            kvr_auth_send_batch(resp + i, codes + i, a, graph_scope, reqs + i,
                                nids - i < BATCH_MAX ? nids - i : BATCH_MAX, errs + i);
        for (size_t i = 0; !rc && i < nids; i++) {
            kvr_found_principal *p = &out->principals[out->nprincipals++];
            json_t *sp = NULL;
            if (!(p->object_id = strdup(ids[i])))
                rc = kvr_error_oom(err);
            else if (codes[i] < 0) {
                *err = errs[i];
                rc = codes[i];
            } else if (resp[i].status == 404) {
                continue; /* a user, a group, or a principal since deleted */
            } else if (resp[i].status != 200) {
                rc = kvr_http_error(err, &resp[i], "get service principal", ids[i]);
            } else if (!(sp = json_loadb(resp[i].body, resp[i].body_len, 0, NULL))) {
                rc = kvr_error_set(err, KVR_EPROTO, "get service principal '%s': not JSON", ids[i]);
            } else {
                const char *type = json_string_value(json_object_get(sp, "servicePrincipalType"));
                const char *app = json_string_value(json_object_get(sp, "appDisplayName"));
                p->type = dupnull(type ? type : "ServicePrincipal");
                p->display_name =
                    dupnull(app ? app : json_string_value(json_object_get(sp, "displayName")));
                if (type && strcmp(type, "Application") == 0 && app)
                    p->app_id = dupnull(json_string_value(json_object_get(sp, "appId")));
            }
            json_decref(sp);
        }
        for (size_t i = 0; resp && i < nids; i++)
            kvr_http_response_release(&resp[i]);
        for (size_t i = 0; urls && i < nids; i++)
            free(urls[i]);
        free(urls);
        free(reqs);
        free(resp);
        free(errs);
        free(codes);
        if (rc)
            goto done;
    }

    /* phase 2: the reader, a share of the vaults at a time, then the apps and profiles */
    if ((rc = kvr_marker_key_init(&mk, err)) < 0)
        goto done;
    per = (nv + PARTS_MAX - 1) / PARTS_MAX;
    per = per < PART_MIN ? PART_MIN : per;
    nparts = (nv + per - 1) / per + 1;
    if (!(out->parts = calloc(nparts, sizeof(*out->parts))) ||
        !(out->vaults = calloc(nv + 1, sizeof(*out->vaults)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t from = 0; from < nv; from += per) {
        size_t to = from + per < nv ? from + per : nv;
        naming share;
        if (naming_init(&share, vaults, from, to, sub) < 0) {
            rc = kvr_error_oom(err);
            goto done;
        }
        share.scope.dependents = true; /* for the comments: who uses what in these vaults */
        rc = kvr_live_read_scope(&out->parts[out->nparts], a, ep, &share.scope, &mk, NULL, err);
        naming_release(&share);
        if (rc < 0)
            goto done;
        for (size_t i = from; i < to; i++) {
            const json_t *v = json_array_get(vaults, i);
            kvr_found_vault *fv = &out->vaults[out->nvaults++];
            fv->part = out->nparts;
            if (!(fv->name = strdup(json_string_value(json_object_get(v, "name")))) ||
                network_from(&fv->network, json_object_get(v, "properties")) < 0) {
                rc = kvr_error_oom(err);
                goto done;
            }
        }
        out->nparts++;
        if (progress)
            progress(arg, to, nv);
    }
    /* the apps of the principals found (by display name, each once), and the profiles */
    if (naming_init(&last, vaults, 0, 0, sub) < 0 ||
        !(last.apps = calloc(out->nprincipals + 1, sizeof(*last.apps)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    last.scope.apps = last.apps;
    for (size_t i = 0; i < out->nprincipals; i++) {
        bool seen = false;
        if (!out->principals[i].app_id)
            continue;
        for (size_t k = 0; k < last.scope.napps; k++)
            seen |= strcmp(last.apps[k], out->principals[i].display_name) == 0;
        if (!seen)
            last.apps[last.scope.napps++] = out->principals[i].display_name;
    }
    last.scope.profiles = f && f->profiles;
    rc = kvr_live_read_scope(&out->parts[out->nparts], a, ep, &last.scope, &mk, NULL, err);
    if (rc < 0)
        goto done;
    out->nparts++;
    /* the roles above the vaults are never declared (schema v1 scopes are vaults and keys),
       but an exported app's are told */
    for (size_t i = 0; i < json_array_size(roles) + json_array_size(above); i++) {
        const json_t *ra = i < json_array_size(roles)
                               ? json_array_get(roles, i)
                               : json_array_get(above, i - json_array_size(roles));
        if ((rc = kvr_live_add_role(out->parts[out->nparts - 1], ra, err)) < 0)
            goto done;
    }
done:
    kvr_marker_key_wipe(&mk);
    plists_free(L, nv);
    for (size_t i = 0; i < nids; i++)
        free(ids[i]);
    free(ids);
    naming_release(&last);
    json_decref(vaults);
    json_decref(roles);
    json_decref(above);
    free(arm_scope);
    free(graph_scope);
    if (rc < 0)
        kvr_discovery_release(out);
    return rc;
}
