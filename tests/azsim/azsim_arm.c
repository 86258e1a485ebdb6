/*
 * azsim_arm.c - management.localhost, the slice of Azure Resource Manager kvreconcile drives:
 * resource groups, Microsoft.KeyVault/vaults (create/update, get, list, delete into the
 * soft-deleted state, deleted-vault get/list/purge, createMode recover) and Microsoft.Authorization
 * role assignments (put/get/delete/list with atScope() and principalId filters). Every call needs a
 * management token and an api-version, answers with ARM's error shape, and is authorized by the
 * same RBAC engine as the data plane. A vault created here is immediately served at
 * NAME.vault.localhost, unless --arm-async N makes a vault PUT a long-running operation as Key
 * Vault's is: 201 with provisioningState RegisteringDns, Azure-AsyncOperation and Location URLs
 * that answer InProgress for N polls, and a vault host that does not resolve until then.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct arm_ctx {
    azsim_req *r;
    azsim_state *st;
    azsim_caller caller;
} arm_ctx;

static int arm_error(arm_ctx *c, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int arm_error(arm_ctx *c, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    azsim_set_header(c->r, "x-ms-failure-cause", "gateway");
    return azsim_reply_json(c->r, status,
                            json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

/*
 * The api-version against azsim_apiversions.c's list for this service; Azure's 400 when it is
 * missing or unknown, in the shape ARM gives for each kind of resource:
 *   Microsoft.Resources (resource groups, subscriptions): InvalidApiVersionParameter, the supported
 *     versions newest first (azure-cli#27109);
 *   a resource provider's type (Microsoft.KeyVault vaults, deletedVaults...):
 *     NoRegisteredProviderFound naming the location, the type, the versions oldest first and the
 *     locations (azure-cli#18006, azure-sdk-for-net#23760); `location` NULL: not known (azsim
 *     says 'global');
 *   roleAssignments: InvalidResourceType, 404 (acs-engine#4037, azure-sdk-for-go#16699).
 * `type` is the resource type for the provider's message (e.g. "locations/deletedVaults").
 */
static int check_api_at(arm_ctx *c, int api, const char *type, const char *location)
{
    const char *v = azsim_query(c->r, "api-version");
    char *list = NULL, *locs = NULL;
    if (!v || !*v) {
        arm_error(c, 400, "MissingApiVersionParameter",
                  "The api-version query parameter (?api-version=) is required for all requests.");
        return AZSIM_EINVAL;
    }
    if (azsim_api_version_check(c->st, api, v) != AZSIM_API_UNKNOWN)
        return AZSIM_OK;
    if (api == AZSIM_API_RESOURCE_GROUPS || api == AZSIM_API_SUBSCRIPTIONS) {
        list = azsim_api_version_list(api, ",", 1);
        if (list)
            arm_error(c, 400, "InvalidApiVersionParameter",
                      "The api-version '%s' is invalid. The supported versions are '%s'.", v, list);
    } else if (api == AZSIM_API_ROLE_ASSIGNMENTS) {
        list = azsim_api_version_list(api, ",", 0);
        if (list)
            arm_error(c, 404, "InvalidResourceType",
                      "The resource type 'roleAssignments' could not be found in the namespace "
                      "'Microsoft.Authorization' for api version '%s'. The supported api-versions "
                      "are '%s'.",
                      v, list);
    } else {
        list = azsim_api_version_list(api, ", ", 0);
        locs = azsim_locations_list(", ");
        if (list && locs)
            arm_error(c, 400, "NoRegisteredProviderFound",
                      "No registered resource provider found for location '%s' and API version "
                      "'%s' for type '%s'. The supported api-versions are '%s'. The supported "
                      "locations are '%s'.",
                      location ? location : "global", v, type ? type : "vaults", list, locs);
    }
    int rc = list && (locs || api != AZSIM_API_VAULTS) ? AZSIM_EINVAL : AZSIM_ENOMEM;
    free(list);
    free(locs);
    return rc;
}

static int check_api(arm_ctx *c, int api)
{
    return check_api_at(c, api, NULL, NULL);
}

static int authorize(arm_ctx *c, const char *scope, const char *action)
{
    if (azsim_rbac_allows(c->st, c->caller.oid, scope, action, 0, 1))
        return AZSIM_OK;
    arm_error(c, 403, "AuthorizationFailed",
              "The client '%s' with object id '%s' does not have authorization to perform action "
              "'%s' over scope '%s' or the scope is invalid. If access was recently granted, "
              "please refresh your credentials.",
              c->caller.oid, c->caller.oid, action, scope);
    return AZSIM_EINVAL;
}

static azsim_rg *rg_find(azsim_state *st, const char *sub, const char *name)
{
    for (size_t i = 0; i < st->rgs.n; i++) {
        azsim_rg *rg = st->rgs.items[i];
        if (azsim_streq_ci(rg->sub, sub) && azsim_streq_ci(rg->name, name))
            return rg;
    }
    return NULL;
}

/*
 * Subscriptions_List and Subscriptions_Get (Microsoft.Resources subscriptions.json; the shape of
 * its 2019-11-01 example). azsim has one subscription; like Azure (authorizationSource
 * "RoleBased") it shows it to a caller holding a role assignment at it or anywhere below it.
 */
static int sub_visible(azsim_state *st, const char *oid)
{
    size_t n = strlen("/subscriptions/") + strlen(st->subscription);
    for (size_t i = 0; i < st->assignments.n; i++) {
        azsim_role_assignment *ra = st->assignments.items[i];
        const char *sc = ra->scope;
        if (!azsim_streq_ci(ra->principal, oid))
            continue;
        if (strcmp(sc, "/") == 0 ||
            (strncasecmp(sc, "/subscriptions/", 15) == 0 && strlen(sc) >= n &&
             strncasecmp(sc + 15, st->subscription, n - 15) == 0 &&
             (sc[n] == '\0' || sc[n] == '/')))
            return 1;
    }
    return 0;
}

static int subscriptions(arm_ctx *c, const char *id)
{
    azsim_state *st = c->st;
    azsim_req *r = c->r;
    int visible = sub_visible(st, c->caller.oid);
    json_t *sub = NULL;

    r->op = id ? "arm.subscriptions.get" : "arm.subscriptions.list";
    if (check_api(c, AZSIM_API_SUBSCRIPTIONS) != AZSIM_OK)
        return AZSIM_OK;
    if (strcmp(r->method, "GET") != 0)
        return arm_error(c, 405, "MethodNotAllowed", "azsim does not support %s on subscriptions.",
                         r->method);
    if (id && (!visible || !azsim_streq_ci(id, st->subscription)))
        return arm_error(c, 404, "SubscriptionNotFound",
                         "The subscription '%s' could not be found.", id);
    if (visible)
        sub = json_pack("{s:s+,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:s,s:[]}", "id", "/subscriptions/",
                        st->subscription, "subscriptionId", st->subscription, "tenantId",
                        st->tenant, "displayName", "azsim", "state", "Enabled",
                        "subscriptionPolicies", "locationPlacementId", "Public_2014-09-01",
                        "quotaId", "PayAsYouGo_2014-09-01", "spendingLimit", "Off",
                        "authorizationSource", "RoleBased", "managedByTenants");
    if (visible && !sub)
        return AZSIM_ENOMEM;
    if (id)
        return azsim_reply_json(r, 200, sub);
    return azsim_reply_json(
        r, 200, json_pack("{s:o}", "value", sub ? json_pack("[o]", sub) : json_array()));
}

static json_t *rg_json(azsim_rg *rg)
{
    char *id = azsim_printf("/subscriptions/%s/resourceGroups/%s", rg->sub, rg->name);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:O,s:{s:s}}", "id", id ? id : "", "name", rg->name,
                          "type", "Microsoft.Resources/resourceGroups", "location", rg->location,
                          "tags", rg->tags, "properties", "provisioningState", "Succeeded");
    free(id);
    return j;
}

/*
 * Resources_List (resources.json): GET /subscriptions/{sub}/resources, the generic view (id, name,
 * type, location, tags) of every resource the caller may read; azsim's only resources are vaults.
 * `az keyvault list` and `az keyvault show -n` without a group find vaults this way. $filter:
 * only "resourceType eq '...'" (a 400 for any other, rather than an unfiltered answer).
 */
static int resources_list(arm_ctx *c, const char *sub)
{
    azsim_req *r = c->r;
    const char *filter = azsim_query(r, "$filter");
    static const char eq[] = "resourceType eq '";
    char *type = NULL;
    int rc = AZSIM_OK;

    r->op = "arm.resources.list";
    if (check_api(c, AZSIM_API_RESOURCE_GROUPS) != AZSIM_OK)
        return AZSIM_OK;
    if (strcmp(r->method, "GET") != 0)
        return arm_error(c, 405, "MethodNotAllowed", "azsim does not support %s on resources.",
                         r->method);
    if (filter) {
        size_t n = strlen(filter);
        if (strncasecmp(filter, eq, sizeof(eq) - 1) != 0 || n < sizeof(eq) || filter[n - 1] != '\'')
            return arm_error(c, 400, "InvalidFilterInQueryString",
                             "azsim supports only $filter=resourceType eq '...' here, not '%s'.",
                             filter);
        type = strndup(filter + sizeof(eq) - 1, n - sizeof(eq));
        if (!type)
            return AZSIM_ENOMEM;
    }
    json_t *value = json_array();
    for (size_t i = 0; value && i < c->st->vaults.n; i++) {
        azsim_vault *v = c->st->vaults.items[i];
        if (v->deleted || !azsim_streq_ci(v->sub, sub) ||
            (type && !azsim_streq_ci(type, "Microsoft.KeyVault/vaults")))
            continue;
        char *id = azsim_printf(
            "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", v->sub,
            v->rg, v->name);
        if (!id) {
            rc = AZSIM_ENOMEM;
            break;
        }
        if (azsim_rbac_allows(c->st, c->caller.oid, id, "Microsoft.KeyVault/vaults/read", 0, 1))
            json_array_append_new(value, json_pack("{s:s,s:s,s:s,s:s,s:O}", "id", id, "name",
                                                   v->name, "type", "Microsoft.KeyVault/vaults",
                                                   "location", v->location, "tags", v->tags));
        free(id);
    }
    free(type);
    if (!value || rc != AZSIM_OK) {
        json_decref(value);
        return AZSIM_ENOMEM;
    }
    return azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
}

static int rg_put(arm_ctx *c, const char *sub, const char *name)
{
    json_t *body = azsim_body_json(c->r);
    int rc;
    const char *loc = json_string_value(json_object_get(body, "location"));
    json_t *tags = json_object_get(body, "tags");
    azsim_rg *rg = rg_find(c->st, sub, name);
    if (!loc) {
        rc = arm_error(c, 400, "LocationRequired",
                       "The location property is required for this definition.");
        goto done;
    }
    if (rg) {
        if (!azsim_streq_ci(rg->location, loc)) {
            rc = arm_error(c, 409, "InvalidResourceGroupLocation",
                           "Invalid resource group location '%s'. The Resource group already "
                           "exists in location '%s' in resource group '%s'. A resource group "
                           "cannot change location.",
                           loc, rg->location, rg->name);
            goto done;
        }
        json_decref(rg->tags);
        rg->tags = json_is_object(tags) ? json_deep_copy(tags) : json_object();
        rc = azsim_reply_json(c->r, 200, rg_json(rg));
        goto done;
    }
    rg = calloc(1, sizeof(*rg));
    if (!rg) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rg->sub = strdup(sub);
    rg->name = strdup(name);
    rg->location = strdup(loc);
    rg->tags = json_is_object(tags) ? json_deep_copy(tags) : json_object();
    if (!rg->sub || !rg->name || !rg->location || azsim_vec_push(&c->st->rgs, rg) != AZSIM_OK) {
        free(rg->sub);
        free(rg->name);
        free(rg->location);
        json_decref(rg->tags);
        free(rg);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_reply_json(c->r, 201, rg_json(rg));
done:
    json_decref(body);
    return rc;
}

/* ---------- vaults ---------- */

static char *vault_id(azsim_vault *v)
{
    return azsim_printf(
        "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", v->sub, v->rg,
        v->name);
}

static json_t *vault_json(arm_ctx *c, azsim_vault *v)
{
    char *id = vault_id(v);
    char created[32];
    json_t *props = json_deep_copy(v->props);
    char *uri = azsim_printf("https://%s.vault.localhost:%d/", v->name, c->st->port);
    json_object_set_new(props, "vaultUri", json_string(uri ? uri : ""));
    json_object_set_new(props, "provisioningState",
                        json_string(v->provisioning ? "RegisteringDns" : "Succeeded"));
    azsim_iso8601(created, v->created);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:O,s:{s:s,s:s,s:s,s:s,s:s,s:s},s:o}", "id",
                          id ? id : "", "name", v->name, "type", "Microsoft.KeyVault/vaults",
                          "location", v->location, "tags", v->tags, "systemData", "createdBy",
                          c->caller.appid, "createdByType", "Application", "createdAt", created,
                          "lastModifiedBy", c->caller.appid, "lastModifiedByType", "Application",
                          "lastModifiedAt", created, "properties", props);
    free(id);
    free(uri);
    return j;
}

static int valid_vault_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 24 || !isalpha((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]) ||
        strstr(s, "--"))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return 0;
    return 1;
}

static int bool_prop(json_t *props, const char *name, int dflt)
{
    json_t *b = json_object_get(props, name);
    return json_is_boolean(b) ? json_is_true(b) : dflt;
}

/* ---------- long-running operations (--arm-async) ---------- */

/* Vault names with this prefix end their long-running PUT Failed (tests of the failure path). */
#define LRO_FAIL_PREFIX "lrofail"

typedef struct arm_operation {
    char id[AZSIM_GUID_LEN + 1];
    char *vault;
    char *location;
    int left;    /* polls still answered InProgress */
    int fail;    /* ends Failed */
    int outcome; /* 0 running, 1 Succeeded, 2 Failed */
    int created; /* the PUT made the vault (create or recover): a failure takes it away */
    int64_t start, end;
} arm_operation;

void azsim_arm_operations_free(azsim_state *st)
{
    for (size_t i = 0; i < st->operations.n; i++) {
        arm_operation *o = st->operations.items[i];
        free(o->vault);
        free(o->location);
        free(o);
    }
    free(st->operations.items);
    memset(&st->operations, 0, sizeof(st->operations));
}

static arm_operation *op_find(azsim_state *st, const char *id)
{
    for (size_t i = 0; i < st->operations.n; i++) {
        arm_operation *o = st->operations.items[i];
        if (azsim_streq_ci(o->id, id))
            return o;
    }
    return NULL;
}

/* The running operation of vault `name` (the latest), or NULL. */
static arm_operation *op_of_vault(azsim_state *st, const char *name)
{
    for (size_t i = st->operations.n; i-- > 0;) {
        arm_operation *o = st->operations.items[i];
        if (!o->outcome && azsim_streq_ci(o->vault, name))
            return o;
    }
    return NULL;
}

static void op_finish(azsim_state *st, arm_operation *o)
{
    azsim_vault *v = azsim_vault_find(st, o->vault);
    o->outcome = o->fail ? 2 : 1;
    o->end = azsim_now(st);
    if (!v)
        return;
    v->provisioning = 0;
    if (!o->fail || !o->created) {
        v->unresolved = 0;
        return;
    }
    for (size_t i = 0; i < st->vaults.n; i++) /* a failed create leaves no vault behind */
        if (st->vaults.items[i] == v) {
            azsim_vec_remove(&st->vaults, i);
            azsim_vault_free(v);
            break;
        }
}

/* One look at a running operation (a status poll, or a GET of its vault): time passes. */
static void op_tick(azsim_state *st, arm_operation *o)
{
    if (!o || o->outcome)
        return;
    if (o->left > 0)
        o->left--;
    else
        op_finish(st, o);
}

static char *op_url(arm_ctx *c, const char *sub, const arm_operation *o, const char *kind)
{
    char *base = azsim_resource(c->st, "management.localhost");
    const char *api = azsim_query(c->r, "api-version");
    char *u = base ? azsim_printf("%s/subscriptions/%s/providers/Microsoft.KeyVault/locations/%s/"
                                  "%s/%s?api-version=%s",
                                  base, sub, o->location, kind, o->id, api ? api : "")
                   : NULL;
    free(base);
    return u;
}

/* Answers a vault PUT as a running operation: 201, RegisteringDns, where to poll. */
static int reply_async(arm_ctx *c, const char *sub, azsim_vault *v, int created)
{
    azsim_state *st = c->st;
    arm_operation *o = calloc(1, sizeof(*o));
    char *ao = NULL, *loc = NULL;
    int rc = AZSIM_ENOMEM;
    if (!o)
        return AZSIM_ENOMEM;
    azsim_guid(st, o->id);
    o->vault = strdup(v->name);
    o->location = strdup(v->location);
    o->left = st->arm_async;
    o->fail = strncasecmp(v->name, LRO_FAIL_PREFIX, strlen(LRO_FAIL_PREFIX)) == 0;
    o->created = created;
    o->start = azsim_now(st);
    if (!o->vault || !o->location || azsim_vec_push(&st->operations, o) != AZSIM_OK) {
        free(o->vault);
        free(o->location);
        free(o);
        return AZSIM_ENOMEM;
    }
    v->provisioning = 1;
    if (created)
        v->unresolved = 1;
    ao = op_url(c, sub, o, "operationStatuses");
    loc = op_url(c, sub, o, "operationResults");
    if (ao && loc) {
        if (st->arm_async_headers == 0 || st->arm_async_headers == 3) {
            char *foreign = st->arm_async_headers == 3
                                ? azsim_printf("https://attacker.localhost:%d%s", st->port,
                                               strstr(ao, "/subscriptions/"))
                                : NULL;
            azsim_set_header(c->r, "Azure-AsyncOperation", foreign ? foreign : ao);
            free(foreign);
        }
        if (st->arm_async_headers <= 1)
            azsim_set_header(c->r, "Location", loc);
        azsim_set_header(c->r, "Retry-After", "1");
        rc = azsim_reply_json(c->r, 201, vault_json(c, v));
    }
    free(ao);
    free(loc);
    return rc;
}

/*
 * GET .../locations/{loc}/operationStatuses/{id}: the Azure-AsyncOperation resource, 200 with
 * status InProgress, Succeeded or Failed (with error). GET .../operationResults/{id}: the
 * Location protocol, 202 while running, then 200 with the vault, or the error status and body.
 */
static int op_get(arm_ctx *c, const char *location, const char *kind, const char *id)
{
    azsim_state *st = c->st;
    arm_operation *o = op_find(st, id);
    char start[32], end[32];
    json_t *j;
    if (!o || !azsim_streq_ci(o->location, location))
        return arm_error(c, 404, "ResourceNotFound", "The operation '%s' was not found.", id);
    op_tick(st, o);
    if (azsim_streq_ci(kind, "operationResults")) {
        azsim_vault *v = azsim_vault_find(st, o->vault);
        if (!o->outcome) {
            char *self = op_url(c, st->subscription, o, "operationResults");
            if (self)
                azsim_set_header(c->r, "Location", self);
            free(self);
            azsim_set_header(c->r, "Retry-After", "1");
            return azsim_reply_empty(c->r, 202);
        }
        if (o->outcome == 2)
            return arm_error(c, 400, "VaultProvisioningFailed",
                             "The provisioning of vault '%s' failed (azsim: its name starts with "
                             "'" LRO_FAIL_PREFIX "').",
                             o->vault);
        return v && !v->deleted ? azsim_reply_json(c->r, 200, vault_json(c, v))
                                : azsim_reply_empty(c->r, 204);
    }
    azsim_iso8601(start, o->start);
    azsim_iso8601(end, o->end);
    j = json_pack("{s:s,s:s,s:s,s:s}", "id", c->r->path, "name", o->id, "status",
                  o->outcome == 0   ? "InProgress"
                  : o->outcome == 1 ? "Succeeded"
                                    : "Failed",
                  "startTime", start);
    if (j && o->outcome)
        json_object_set_new(j, "endTime", json_string(end));
    if (j && o->outcome == 2)
        json_object_set_new(j, "error",
                            json_pack("{s:s,s:s}", "code", "VaultProvisioningFailed", "message",
                                      "The provisioning of the vault failed (azsim: its name "
                                      "starts with '" LRO_FAIL_PREFIX "')."));
    if (!o->outcome)
        azsim_set_header(c->r, "Retry-After", "1");
    return azsim_reply_json(c->r, 200, j);
}

/* Create or update from a full vault definition (body borrowed); PUT and PATCH both end here.
   `wire_put`: a PUT from the wire, which --arm-async makes a long-running operation. */
static int vault_put(arm_ctx *c, const char *sub, const char *rgname, const char *name,
                     json_t *body, int wire_put)
{
    azsim_state *st = c->st;
    json_t *props_out = NULL;
    azsim_vault *v = azsim_vault_find(st, name), *nv = NULL;
    int rc = AZSIM_OK, created = 0;
    int64_t now = azsim_now(st);

    if (!valid_vault_name(name)) {
        rc = arm_error(c, 400, "VaultNameNotValid",
                       "The vault name '%s' is invalid. A vault's name must be between 3-24 "
                       "alphanumeric characters. The name must begin with a letter, end with a "
                       "letter or digit, and not contain consecutive hyphens.",
                       name);
        goto done;
    }
    if (!json_is_object(body)) {
        rc = arm_error(c, 400, "InvalidRequestContent",
                       "The request content was invalid and could not be deserialized.");
        goto done;
    }
    if (!rg_find(st, sub, rgname)) {
        rc = arm_error(c, 404, "ResourceGroupNotFound", "Resource group '%s' could not be found.",
                       rgname);
        goto done;
    }
    const char *loc = json_string_value(json_object_get(body, "location"));
    json_t *props = json_object_get(body, "properties");
    if (!loc) {
        rc = arm_error(c, 400, "LocationRequired",
                       "The location property is required for this definition.");
        goto done;
    }
    if (!json_is_object(props)) {
        rc = arm_error(c, 400, "BadRequest", "The 'properties' of the vault are required.");
        goto done;
    }
    const char *create_mode = json_string_value(json_object_get(props, "createMode"));
    int recover = create_mode && azsim_streq_ci(create_mode, "recover");
    if (v && v->deleted) {
        if (!recover) {
            rc = arm_error(c, 409, "ConflictError",
                           "A vault with the same name already exists in deleted state. You need "
                           "to either recover or purge existing key vault. Follow this link "
                           "https://go.microsoft.com/fwlink/?linkid=2149745 for more information "
                           "on soft delete.");
            goto done;
        }
        if (!azsim_streq_ci(v->sub, sub) || !azsim_streq_ci(v->location, loc)) {
            rc = arm_error(c, 400, "BadRequest",
                           "A deleted vault can only be recovered in its original subscription "
                           "and location '%s'.",
                           v->location);
            goto done;
        }
        v->deleted = 0;
        free(v->rg);
        v->rg = strdup(rgname);
        rc = wire_put && st->arm_async > 0 ? reply_async(c, sub, v, 1)
                                           : azsim_reply_json(c->r, 200, vault_json(c, v));
        goto done;
    }
    if (recover) {
        rc = arm_error(c, 404, "ResourceNotFound",
                       "There is no deleted vault named '%s' to recover.", name);
        goto done;
    }
    if (v && (!azsim_streq_ci(v->sub, sub) || !azsim_streq_ci(v->rg, rgname))) {
        rc = arm_error(c, 409, "VaultAlreadyExists",
                       "The vault name '%s' is already in use. Vault names are globally unique "
                       "so it is possible that the name is already taken.",
                       name);
        goto done;
    }
    const char *tenant = json_string_value(json_object_get(props, "tenantId"));
    json_t *sku = json_object_get(props, "sku");
    const char *sku_name = json_string_value(json_object_get(sku, "name"));
    if (!tenant || !json_is_object(sku) || !sku_name) {
        rc = arm_error(c, 400, "BadRequest",
                       "The properties 'tenantId' and 'sku' are required for a vault.");
        goto done;
    }
    if (!azsim_streq_ci(tenant, st->tenant)) {
        rc = arm_error(c, 400, "BadRequest",
                       "The tenant id '%s' is not valid for this subscription.", tenant);
        goto done;
    }
    if (!azsim_streq_ci(sku_name, "standard") && !azsim_streq_ci(sku_name, "premium")) {
        rc = arm_error(c, 400, "SkuNotSupported", "The sku '%s' is not supported.", sku_name);
        goto done;
    }
    json_t *pp = json_object_get(props, "enablePurgeProtection");
    if (json_is_false(pp)) {
        rc =
            arm_error(c, 400, "BadRequest",
                      "The property \"enablePurgeProtection\" cannot be set to false. Enabling the "
                      "purge protection for a vault is an irreversible action.");
        goto done;
    }
    int soft = bool_prop(props, "enableSoftDelete", 1);
    if (v && v->soft_delete && !soft) {
        rc = arm_error(c, 400, "BadRequest",
                       "The property \"enableSoftDelete\" cannot be set to false. Enabling the "
                       "soft delete for a vault is an irreversible action.");
        goto done;
    }
    json_t *days_j = json_object_get(props, "softDeleteRetentionInDays");
    int days =
        json_is_integer(days_j) ? (int)json_integer_value(days_j) : (v ? v->retention_days : 90);
    if (days < 7 || days > 90) {
        rc = arm_error(c, 400, "BadRequest",
                       "The property \"softDeleteRetentionInDays\" must be between 7 and 90.");
        goto done;
    }
    if (v && v->soft_delete && days != v->retention_days) {
        rc = arm_error(c, 400, "BadRequest",
                       "The property \"softDeleteRetentionInDays\" cannot be changed once the "
                       "vault has been created.");
        goto done;
    }
    if (!soft && json_is_true(pp)) {
        rc = arm_error(c, 400, "BadRequest",
                       "Purge protection can only be enabled on a vault with soft delete enabled.");
        goto done;
    }
    json_t *aps = json_object_get(props, "accessPolicies");
    if (aps && !json_is_array(aps) && !json_is_null(aps)) {
        rc = arm_error(c, 400, "BadRequest", "The property 'accessPolicies' must be an array.");
        goto done;
    }
    if (json_array_size(aps) > 1024) {
        rc = arm_error(c, 400, "BadRequest", "A vault allows at most 1024 access policies.");
        goto done;
    }
    int purge = json_is_true(pp) || (v && v->purge_protection);
    props_out = json_deep_copy(props);
    json_object_del(props_out, "createMode");
    json_object_set_new(props_out, "sku",
                        json_pack("{s:s,s:s}", "family", "A", "name",
                                  azsim_streq_ci(sku_name, "premium") ? "premium" : "standard"));
    if (!json_is_array(aps))
        json_object_set_new(props_out, "accessPolicies", json_array());
    json_object_set_new(props_out, "enableSoftDelete", json_boolean(soft));
    json_object_set_new(props_out, "softDeleteRetentionInDays", json_integer(days));
    json_object_set_new(props_out, "enableRbacAuthorization",
                        json_boolean(bool_prop(props, "enableRbacAuthorization", 0)));
    if (purge)
        json_object_set_new(props_out, "enablePurgeProtection", json_true());
    for (const char *const *f =
             (const char *const[]){"enabledForDeployment", "enabledForDiskEncryption",
                                   "enabledForTemplateDeployment", NULL};
         *f; f++)
        json_object_set_new(props_out, *f, json_boolean(bool_prop(props, *f, 0)));
    if (!json_is_string(json_object_get(props_out, "publicNetworkAccess")))
        json_object_set_new(props_out, "publicNetworkAccess", json_string("Enabled"));

    if (!v) {
        nv = calloc(1, sizeof(*nv));
        if (!nv) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        nv->name = strdup(name);
        nv->sub = strdup(sub);
        nv->rg = strdup(rgname);
        nv->location = strdup(loc);
        nv->created = now;
        if (!nv->name || !nv->sub || !nv->rg || !nv->location ||
            azsim_vec_push(&st->vaults, nv) != AZSIM_OK) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        v = nv;
        nv = NULL;
        created = 1;
    } else if (!azsim_streq_ci(v->location, loc)) {
        rc = arm_error(c, 400, "BadRequest",
                       "The location of an existing vault cannot be changed (it is in '%s').",
                       v->location);
        goto done;
    }
    json_decref(v->props);
    v->props = props_out;
    props_out = NULL;
    json_decref(v->tags);
    v->tags = json_is_object(json_object_get(body, "tags"))
                  ? json_deep_copy(json_object_get(body, "tags"))
                  : json_object();
    v->rbac = bool_prop(v->props, "enableRbacAuthorization", 0);
    v->soft_delete = soft;
    v->purge_protection = purge;
    v->retention_days = days;
    rc = wire_put && st->arm_async > 0 ? reply_async(c, sub, v, created)
                                       : azsim_reply_json(c->r, 200, vault_json(c, v));
done:
    if (nv)
        azsim_vault_free(nv);
    json_decref(props_out);
    return rc;
}

static int vault_patch(arm_ctx *c, azsim_vault *v)
{
    json_t *patch = azsim_body_json(c->r), *full = NULL;
    int rc;
    json_t *pp = json_object_get(patch, "properties");
    json_t *tags = json_object_get(patch, "tags");
    if (!json_is_object(patch) || (pp && !json_is_object(pp))) {
        rc = arm_error(c, 400, "InvalidRequestContent",
                       "The request content was invalid and could not be deserialized.");
        goto done;
    }
    /* a PATCH is the stored definition with the given properties replaced */
    json_t *props = json_deep_copy(v->props);
    if (pp)
        json_object_update(props, pp);
    json_object_del(props, "vaultUri");
    json_object_del(props, "provisioningState");
    full = json_pack("{s:s,s:O,s:o}", "location", v->location, "tags",
                     json_is_object(tags) ? tags : v->tags, "properties", props);
    char *sub = strdup(v->sub), *rg = strdup(v->rg), *name = strdup(v->name);
    rc = sub && rg && name && full ? vault_put(c, sub, rg, name, full, 0) : AZSIM_ENOMEM;
    free(sub);
    free(rg);
    free(name);
done:
    json_decref(full);
    json_decref(patch);
    return rc;
}

/* Finds the permissions object of the policy for (tenant, object id); NULL if none. */
static json_t *policy_entry(json_t *list, const char *tenant, const char *oid, size_t *idx)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (azsim_streq_ci(json_string_value(json_object_get(e, "tenantId")), tenant) &&
            azsim_streq_ci(json_string_value(json_object_get(e, "objectId")), oid)) {
            if (idx)
                *idx = i;
            return e;
        }
    }
    return NULL;
}

static int perm_has(json_t *arr, const char *p)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) if (azsim_streq_ci(json_string_value(x), p)) return 1;
    return 0;
}

/* PUT {vault}/accessPolicies/{add|replace|remove}: edits the policy list entry by entry. */
static int access_policies(arm_ctx *c, azsim_vault *v, const char *kind)
{
    json_t *body = azsim_body_json(c->r);
    json_t *given = json_object_get(json_object_get(body, "properties"), "accessPolicies");
    json_t *list = json_deep_copy(json_object_get(v->props, "accessPolicies"));
    static const char *const fams[] = {"keys", "secrets", "certificates", "storage", NULL};
    int rc = AZSIM_OK;
    int add = azsim_streq_ci(kind, "add"), rep = azsim_streq_ci(kind, "replace"),
        rem = azsim_streq_ci(kind, "remove");
    char *id = NULL;

    if (!json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    if (!add && !rep && !rem) {
        rc = arm_error(c, 400, "BadRequest",
                       "The access policy operation '%s' is invalid; use add, replace or remove.",
                       kind);
        goto done;
    }
    if (!json_is_array(given) || json_array_size(given) > 16) {
        rc = arm_error(c, 400, "BadRequest",
                       "The property 'properties.accessPolicies' is required and may hold at most "
                       "16 entries.");
        goto done;
    }
    size_t i;
    json_t *e;
    json_array_foreach(given, i, e)
    {
        const char *tenant = json_string_value(json_object_get(e, "tenantId"));
        const char *oid = json_string_value(json_object_get(e, "objectId"));
        json_t *perms = json_object_get(e, "permissions");
        size_t idx = 0;
        if (!tenant || !oid || !json_is_object(perms)) {
            rc = arm_error(c, 400, "BadRequest",
                           "Each access policy needs tenantId, objectId and permissions.");
            goto done;
        }
        json_t *cur = policy_entry(list, tenant, oid, &idx);
        if (rep || (add && !cur)) {
            if (cur)
                json_array_remove(list, idx);
            json_array_append_new(list, json_deep_copy(e));
            continue;
        }
        if (!cur)
            continue;
        json_t *cp = json_object_get(cur, "permissions");
        int left = 0;
        for (size_t f = 0; fams[f]; f++) {
            json_t *have = json_object_get(cp, fams[f]), *want = json_object_get(perms, fams[f]);
            json_t *out = json_array();
            size_t k;
            json_t *x;
            json_array_foreach(have, k, x) if (add || !perm_has(want, json_string_value(x)))
                json_array_append(out, x);
            if (add)
                json_array_foreach(want, k, x) if (!perm_has(have, json_string_value(x)))
                    json_array_append(out, x);
            left += (int)json_array_size(out);
            json_object_set_new(cp, fams[f], out);
        }
        if (rem && left == 0)
            json_array_remove(list, idx);
    }
    json_object_set(v->props, "accessPolicies", list);
    char *vid = vault_id(v);
    id = vid ? azsim_printf("%s/accessPolicies/%s", vid, kind) : NULL;
    free(vid);
    rc = azsim_reply_json(c->r, 200,
                          json_pack("{s:s,s:s,s:s,s:s,s:{s:O}}", "id", id ? id : "", "name", kind,
                                    "type", "Microsoft.KeyVault/vaults/accessPolicies", "location",
                                    v->location, "properties", "accessPolicies", given));
done:
    free(id);
    json_decref(list);
    json_decref(body);
    return rc;
}

static void drop_assignments_under(azsim_state *st, const char *scope)
{
    size_t n = strlen(scope);
    for (size_t i = 0; i < st->assignments.n;) {
        azsim_role_assignment *ra = st->assignments.items[i];
        if (strncasecmp(ra->scope, scope, n) == 0 &&
            (ra->scope[n] == '\0' || ra->scope[n] == '/')) {
            azsim_vec_remove(&st->assignments, i);
            azsim_role_assignment_free(ra);
            continue;
        }
        i++;
    }
}

static int vault_delete(arm_ctx *c, azsim_vault *v)
{
    azsim_state *st = c->st;
    char *id = vault_id(v);
    int64_t now = azsim_now(st);
    if (!id)
        return AZSIM_ENOMEM;
    /* integrations such as role assignments go with the vault and do not come back on recover */
    drop_assignments_under(st, id);
    free(id);
    if (!v->soft_delete) {
        for (size_t i = 0; i < st->vaults.n; i++)
            if (st->vaults.items[i] == v) {
                azsim_vec_remove(&st->vaults, i);
                azsim_vault_free(v);
                break;
            }
        return azsim_reply_empty(c->r, 200);
    }
    v->deleted = 1;
    v->deleted_date = now;
    v->purge_date = now + (int64_t)v->retention_days * 86400;
    return azsim_reply_empty(c->r, 200);
}

/* display: the location as its display name ("West Europe"), as Azure's list of deleted vaults
 * can carry it; the id keeps the short name. */
static json_t *deleted_vault_json(azsim_vault *v, int display)
{
    char del[32], purge[32];
    char *id = azsim_printf("/subscriptions/%s/providers/Microsoft.KeyVault/locations/%s/"
                            "deletedVaults/%s",
                            v->sub, v->location, v->name);
    char *vid = vault_id(v);
    azsim_iso8601(del, v->deleted_date);
    azsim_iso8601(purge, v->purge_date);
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:O,s:b}}", "id", id ? id : "", "name",
                          v->name, "type", "Microsoft.KeyVault/deletedVaults", "properties",
                          "vaultId", vid ? vid : "", "location",
                          display ? azsim_location_display(v->location) : v->location,
                          "deletionDate", del, "scheduledPurgeDate", purge, "tags", v->tags,
                          "purgeProtectionEnabled", v->purge_protection);
    free(id);
    free(vid);
    return j;
}

/* ---------- role assignments ---------- */

/* A role assignment as ARM has it, written as text (a resource group's list is thousands). */
static void ra_text(azsim_text *t, arm_ctx *c, azsim_role_assignment *ra)
{
    char created[32];
    char *rd =
        azsim_printf("/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s",
                     c->st->subscription, ra->role);
    char *id = azsim_printf("%s/providers/Microsoft.Authorization/roleAssignments/%s",
                            strcmp(ra->scope, "/") == 0 ? "" : ra->scope, ra->name);
    azsim_iso8601(created, ra->created);
    if (!rd || !id)
        t->failed = 1;
    AZSIM_TEXT_LIT(t, "{\"properties\":{\"roleDefinitionId\":");
    azsim_text_str(t, rd ? rd : "");
    AZSIM_TEXT_LIT(t, ",\"principalId\":");
    azsim_text_str(t, ra->principal);
    AZSIM_TEXT_LIT(t, ",\"principalType\":");
    azsim_text_str(t, ra->principal_type);
    AZSIM_TEXT_LIT(t, ",\"scope\":");
    azsim_text_str(t, ra->scope);
    AZSIM_TEXT_LIT(t, ",\"condition\":null,\"conditionVersion\":null,\"createdOn\":");
    azsim_text_str(t, created);
    AZSIM_TEXT_LIT(t, ",\"updatedOn\":");
    azsim_text_str(t, created);
    AZSIM_TEXT_LIT(t, ",\"createdBy\":");
    azsim_text_str(t, c->caller.oid);
    AZSIM_TEXT_LIT(t, ",\"updatedBy\":");
    azsim_text_str(t, c->caller.oid);
    AZSIM_TEXT_LIT(t, ",\"delegatedManagedIdentityResourceId\":null,\"description\":");
    if (ra->description)
        azsim_text_str(t, ra->description);
    else
        AZSIM_TEXT_LIT(t, "null");
    AZSIM_TEXT_LIT(t, "},\"id\":");
    azsim_text_str(t, id ? id : "");
    AZSIM_TEXT_LIT(t, ",\"type\":\"Microsoft.Authorization/roleAssignments\",\"name\":");
    azsim_text_str(t, ra->name);
    AZSIM_TEXT_LIT(t, "}");
    free(rd);
    free(id);
}

static int reply_ra(arm_ctx *c, unsigned status, azsim_role_assignment *ra)
{
    azsim_text t = {0};
    ra_text(&t, c, ra);
    return azsim_reply_text(c->r, status, &t);
}

static int is_guid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static int known_role(const char *guid)
{
    static const char *const roles[] = {
        "8e3af657-a8ff-404c-8c7f-e7ed2b4b0f1a", "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "f25e0fa2-a7c8-4377-a976-54943a77a395", "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603", "12338af0-0e69-4776-bea7-57ae8d297424",
        "e147488a-f6f5-4113-8e2d-b22465e65bf6", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        "4633458b-17de-408a-b874-0445c86b69e6", "21090545-7ca7-4776-b22c-e363652d74d2",
        "a4417e6f-fecd-4de8-b567-7b0420556985", "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        "8b54135c-b56d-4d72-a534-26097cfdc8d8", NULL};
    for (size_t i = 0; roles[i]; i++)
        if (azsim_streq_ci(roles[i], guid))
            return 1;
    return 0;
}

/* Checks that the resource a scope names exists; 0 or a reply was sent. */
static int scope_exists(arm_ctx *c, char **s, size_t n)
{
    if (n < 2 || !azsim_streq_ci(s[0], "subscriptions")) {
        arm_error(c, 400, "InvalidScope", "The scope is not valid for role assignments in azsim.");
        return AZSIM_EINVAL;
    }
    if (!azsim_streq_ci(s[1], c->st->subscription)) {
        arm_error(c, 404, "SubscriptionNotFound", "The subscription '%s' could not be found.",
                  s[1]);
        return AZSIM_EINVAL;
    }
    if (n >= 4 && !rg_find(c->st, s[1], s[3])) {
        arm_error(c, 404, "ResourceGroupNotFound", "Resource group '%s' could not be found.", s[3]);
        return AZSIM_EINVAL;
    }
    if (n >= 8 && azsim_streq_ci(s[5], "Microsoft.KeyVault") && azsim_streq_ci(s[6], "vaults")) {
        azsim_vault *v = azsim_vault_find(c->st, s[7]);
        if (!v || v->deleted || !azsim_streq_ci(v->rg, s[3])) {
            arm_error(
                c, 404, "ResourceNotFound",
                "The Resource 'Microsoft.KeyVault/vaults/%s' under resource group '%s' was "
                "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                s[7], s[3]);
            return AZSIM_EINVAL;
        }
    }
    return AZSIM_OK;
}

static int ra_put(arm_ctx *c, const char *scope, const char *name)
{
    azsim_state *st = c->st;
    json_t *body = azsim_body_json(c->r);
    json_t *p = json_object_get(body, "properties");
    int rc = AZSIM_OK;
    const char *rd = json_string_value(json_object_get(p, "roleDefinitionId"));
    const char *pid = json_string_value(json_object_get(p, "principalId"));
    const char *ptype = json_string_value(json_object_get(p, "principalType"));
    const char *desc = json_string_value(json_object_get(p, "description"));
    azsim_role_assignment *ra = NULL;

    if (!is_guid(name)) {
        rc = arm_error(c, 400, "InvalidRoleAssignmentId",
                       "The role assignment ID '%s' is not valid. The role assignment ID must be a "
                       "GUID.",
                       name);
        goto done;
    }
    if (!rd || !pid) {
        rc = arm_error(c, 400, "InvalidRequestContent",
                       "The properties 'roleDefinitionId' and 'principalId' are required.");
        goto done;
    }
    const char *slash = strrchr(rd, '/');
    const char *role = slash ? slash + 1 : rd;
    if (!known_role(role)) {
        rc = arm_error(c, 400, "RoleDefinitionDoesNotExist",
                       "The specified role definition with ID '%s' does not exist.", role);
        goto done;
    }
    /* A principal the directory does not hold, or one created less than --directory-delay ago
     * (replication), is refused even with principalType set: Azure documents principalType as a
     * way around the delay, but real runs still meet the error (azure-docs#103085). Azure names
     * the principal without its dashes. */
    azsim_sp *sp = azsim_sp_by_id(st, pid);
    if (!sp || (st->directory_delay && azsim_now(st) < sp->created + st->directory_delay &&
                sp->created > st->directory_replicated)) {
        char bare[AZSIM_GUID_LEN + 1];
        size_t o = 0;
        for (const char *q = pid; *q && o < sizeof(bare) - 1; q++)
            if (*q != '-')
                bare[o++] = *q;
        bare[o] = '\0';
        c->r->op = "arm.roleAssignments.principal-not-found";
        rc = arm_error(c, 400, "PrincipalNotFound",
                       "Principal %s does not exist in the directory %s. Check that you have the "
                       "correct principal ID. If you are creating this principal and then "
                       "immediately assigning a role, this error might be related to a "
                       "replication delay. In this case, set the role assignment principalType "
                       "property to a value, such as ServicePrincipal, User, or Group.  See "
                       "https://aka.ms/docs-principaltype",
                       bare, st->tenant);
        goto done;
    }
    for (size_t i = 0; i < st->assignments.n; i++) {
        azsim_role_assignment *x = st->assignments.items[i];
        /* the short ids first: a scope is long, and every assignment is looked at (a seeding of
           100,000 went at 70 a second comparing scopes first) */
        int same = azsim_streq_ci(x->principal, pid) && azsim_streq_ci(x->role, role) &&
                   azsim_streq_ci(x->scope, scope);
        if (azsim_streq_ci(x->name, name)) {
            if (!same) {
                rc = arm_error(c, 400, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not "
                               "allowed to be updated.");
                goto done;
            }
            rc = reply_ra(c, 201, x);
            goto done;
        }
        if (same) {
            rc = arm_error(c, 409, "RoleAssignmentExists", "The role assignment already exists.");
            goto done;
        }
    }
    rc = azsim_role_assign(&ra, st, name, scope, role, pid, ptype, azsim_now(st) + st->rbac_delay);
    if (rc != AZSIM_OK)
        goto done;
    if (desc)
        ra->description = strdup(desc);
    rc = reply_ra(c, 201, ra);
done:
    json_decref(body);
    return rc;
}

static int ra_list(arm_ctx *c, const char *scope)
{
    const char *filter = azsim_query(c->r, "$filter");
    azsim_text t = {0};
    char principal[64] = "";
    int n = 0;
    int at_scope = 0;
    if (filter) {
        if (strstr(filter, "atScope()"))
            at_scope = 1;
        const char *p = strstr(filter, "principalId eq ");
        if (p) {
            p += strlen("principalId eq ");
            if (*p == '\'')
                p++;
            size_t i = 0;
            while (p[i] && p[i] != '\'' && p[i] != ' ' && i + 1 < sizeof(principal)) {
                principal[i] = p[i];
                i++;
            }
            principal[i] = '\0';
        }
    }
    size_t sl = strlen(scope);
    AZSIM_TEXT_LIT(&t, "{\"value\":[");
    for (size_t i = 0; i < c->st->assignments.n; i++) {
        azsim_role_assignment *ra = c->st->assignments.items[i];
        size_t rl = strlen(ra->scope);
        int above = rl <= sl && strncasecmp(ra->scope, scope, rl) == 0 &&
                    (scope[rl] == '\0' || scope[rl] == '/');
        int below = rl > sl && strncasecmp(ra->scope, scope, sl) == 0 && ra->scope[sl] == '/';
        if (principal[0] && !azsim_streq_ci(principal, ra->principal))
            continue;
        if (at_scope ? !above : !(above || below))
            continue;
        if (n++)
            AZSIM_TEXT_LIT(&t, ",");
        ra_text(&t, c, ra);
    }
    AZSIM_TEXT_LIT(&t, "]}");
    return azsim_reply_text(c->r, 200, &t);
}

static int role_assignments(arm_ctx *c, size_t at)
{
    azsim_req *r = c->r;
    char **s = r->segs;
    size_t n = r->nsegs;
    char *scope = NULL;
    size_t len = 1;
    int rc = AZSIM_OK;

    r->op = "arm.roleAssignments";
    if (check_api(c, AZSIM_API_ROLE_ASSIGNMENTS) != AZSIM_OK)
        return AZSIM_OK;
    for (size_t i = 0; i < at; i++)
        len += strlen(s[i]) + 1;
    scope = calloc(1, len + 1);
    if (!scope)
        return AZSIM_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < at; i++)
        o += (size_t)snprintf(scope + o, len + 1 - o, "/%s", s[i]);
    if (o == 0)
        scope[0] = '/';
    if (scope_exists(c, s, at) != AZSIM_OK)
        goto done;
    const char *name = n > at + 3 ? s[at + 3] : NULL;
    if (name && !*name)
        name = NULL;
    if (!name && strcmp(r->method, "GET") == 0) {
        r->op = "arm.roleAssignments.list";
        if (authorize(c, scope, "Microsoft.Authorization/roleAssignments/read") == AZSIM_OK)
            rc = ra_list(c, scope);
        goto done;
    }
    if (!name || n > at + 4) {
        rc = arm_error(c, 404, "NotFound", "The requested role assignment path is not supported.");
        goto done;
    }
    azsim_role_assignment *found = NULL;
    size_t idx = 0;
    for (size_t i = 0; i < c->st->assignments.n; i++) {
        azsim_role_assignment *ra = c->st->assignments.items[i];
        if (azsim_streq_ci(ra->name, name) && azsim_streq_ci(ra->scope, scope)) {
            found = ra;
            idx = i;
        }
    }
    if (strcmp(r->method, "PUT") == 0) {
        r->op = "arm.roleAssignments.put";
        if (authorize(c, scope, "Microsoft.Authorization/roleAssignments/write") == AZSIM_OK)
            rc = ra_put(c, scope, name);
    } else if (strcmp(r->method, "GET") == 0) {
        r->op = "arm.roleAssignments.get";
        if (authorize(c, scope, "Microsoft.Authorization/roleAssignments/read") != AZSIM_OK)
            goto done;
        if (!found)
            rc = arm_error(c, 404, "RoleAssignmentNotFound",
                           "The role assignment '%s' is not found.", name);
        else
            rc = reply_ra(c, 200, found);
    } else if (strcmp(r->method, "DELETE") == 0) {
        r->op = "arm.roleAssignments.delete";
        if (authorize(c, scope, "Microsoft.Authorization/roleAssignments/delete") != AZSIM_OK)
            goto done;
        if (!found) {
            rc = azsim_reply_empty(r, 204);
        } else {
            rc = reply_ra(c, 200, found);
            azsim_vec_remove(&c->st->assignments, idx);
            azsim_role_assignment_free(found);
        }
    } else {
        rc = arm_error(c, 405, "MethodNotAllowed", "The method '%s' is not allowed.", r->method);
    }
done:
    free(scope);
    return rc;
}

/* ---------- routing ---------- */

static int challenge(arm_ctx *c, const char *why)
{
    char hdr[512];
    snprintf(hdr, sizeof(hdr),
             "Bearer authorization_uri=\"https://login.localhost:%d/%s\", error=\"invalid_token\", "
             "error_description=\"%s\"",
             c->st->port, c->st->tenant,
             strcmp(why, "missing") == 0 ? "The authentication failed because of missing "
                                           "'Authorization' header."
                                         : "The access token is invalid.");
    azsim_set_header(c->r, "WWW-Authenticate", hdr);
    if (strcmp(why, "missing") == 0)
        return arm_error(c, 401, "AuthenticationFailed",
                         "Authentication failed. The 'Authorization' header is missing.");
    if (strcmp(why, "expired") == 0)
        return arm_error(c, 401, "ExpiredAuthenticationToken",
                         "The access token expiry UTC time is earlier than current UTC time.");
    if (strcmp(why, "audience") == 0)
        return arm_error(c, 401, "InvalidAuthenticationTokenAudience",
                         "The access token has been obtained for wrong audience or resource. It "
                         "should exactly match with one of the allowed audiences "
                         "'https://management.localhost:%d/','https://management.localhost:%d'.",
                         c->st->port, c->st->port);
    return arm_error(c, 401, "InvalidAuthenticationToken", "The access token is invalid.");
}

/* check_api for .../providers/Microsoft.KeyVault/vaults[/NAME...]: ARM names the vault's location
 * (the request's for a PUT of a new one). */
static int vault_check_api(arm_ctx *c, const char *name)
{
    azsim_vault *v = name ? azsim_vault_find(c->st, name) : NULL;
    json_t *body = NULL;
    const char *loc = v ? v->location : NULL;
    if (!loc && strcmp(c->r->method, "PUT") == 0) {
        body = azsim_body_json(c->r);
        loc = json_string_value(json_object_get(body, "location"));
    }
    int rc = check_api_at(c, AZSIM_API_VAULTS, "vaults", loc);
    json_decref(body);
    return rc;
}

/* check_api for /subscriptions/S/providers/Microsoft.KeyVault/SEGS: the type is every other
 * segment ("locations/deletedVaults"), the location the one after "locations". */
static int provider_check_api(arm_ctx *c, char **segs, size_t n)
{
    char type[256] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && *segs[i]; i += 2) {
        int w = snprintf(type + o, sizeof(type) - o, "%s%s", o ? "/" : "", segs[i]);
        if (w < 0 || (size_t)w >= sizeof(type) - o)
            break;
        o += (size_t)w;
    }
    const char *loc = n >= 2 && azsim_streq_ci(segs[0], "locations") ? segs[1] : NULL;
    return check_api_at(c, AZSIM_API_VAULTS, type, loc);
}

int azsim_arm_handle(azsim_req *r)
{
    arm_ctx c;
    char **s = r->segs;
    size_t n = r->nsegs;
    const char *why = NULL;
    const char *m = r->method;
    int rc = AZSIM_OK;
    char *aud = NULL, *scope = NULL;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.st = r->st;
    r->op = "arm.request";
    azsim_set_header(r, "x-ms-correlation-request-id", "00000000-0000-0000-0000-000000000000");
    aud = azsim_resource(r->st, "management.localhost");
    if (!aud)
        return AZSIM_ENOMEM;
    if (azsim_auth_bearer(&c.caller, r, aud, &why) != AZSIM_OK) {
        r->op = "arm.challenge";
        rc = challenge(&c, why);
        goto done;
    }
    while (n > 0 && s[n - 1][0] == '\0')
        n--; /* ARM ignores a trailing slash */
    r->nsegs = n;
    if (azsim_arm_throttle(r, n >= 2 && azsim_streq_ci(s[0], "subscriptions") ? s[1] : NULL))
        goto done;
    {
        int handled = 0; /* storage, disks, SQL, Cosmos DB, App Service, Resource Graph */
        rc = azsim_dependents_route(r, &c.caller, &handled);
        if (handled)
            goto done;
    }
    for (size_t i = 0; i + 2 < n; i++)
        if (azsim_streq_ci(s[i], "providers") &&
            azsim_streq_ci(s[i + 1], "Microsoft.Authorization") &&
            azsim_streq_ci(s[i + 2], "roleAssignments")) {
            rc = role_assignments(&c, i);
            goto done;
        }
    if (n >= 1 && n <= 2 && azsim_streq_ci(s[0], "subscriptions")) {
        rc = subscriptions(&c, n == 2 ? s[1] : NULL);
        goto done;
    }
    if (n < 2 || !azsim_streq_ci(s[0], "subscriptions")) {
        r->op = "arm.unknown";
        rc = arm_error(&c, 404, "NotFound",
                       "The requested resource path is not supported by azsim.");
        goto done;
    }
    if (!azsim_streq_ci(s[1], r->st->subscription)) {
        r->op = "arm.unknown";
        rc = arm_error(&c, 404, "SubscriptionNotFound", "The subscription '%s' could not be found.",
                       s[1]);
        goto done;
    }
    const char *sub = r->st->subscription;
    if (n == 3 && azsim_streq_ci(s[2], "resources")) {
        rc = resources_list(&c, sub);
        goto done;
    }
    /* resource groups */
    if (n == 4 && azsim_streq_ci(s[2], "resourceGroups")) {
        r->op = "arm.resourceGroups";
        if (check_api(&c, AZSIM_API_RESOURCE_GROUPS) != AZSIM_OK)
            goto done;
        scope = azsim_printf("/subscriptions/%s/resourceGroups/%s", sub, s[3]);
        if (!scope) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        if (strcmp(m, "PUT") == 0) {
            r->op = "arm.resourceGroups.put";
            if (authorize(&c, scope, "Microsoft.Resources/subscriptions/resourceGroups/write") ==
                AZSIM_OK)
                rc = rg_put(&c, sub, s[3]);
        } else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
            r->op = "arm.resourceGroups.get";
            if (authorize(&c, scope, "Microsoft.Resources/subscriptions/resourceGroups/read") !=
                AZSIM_OK)
                goto done;
            azsim_rg *rg = rg_find(r->st, sub, s[3]);
            rc = rg ? azsim_reply_json(r, 200, rg_json(rg))
                    : arm_error(&c, 404, "ResourceGroupNotFound",
                                "Resource group '%s' could not be found.", s[3]);
        } else {
            rc = arm_error(&c, 405, "MethodNotAllowed",
                           "azsim does not support %s on resource groups.", m);
        }
        goto done;
    }
    /* vaults in a resource group */
    if (n >= 7 && azsim_streq_ci(s[2], "resourceGroups") && azsim_streq_ci(s[4], "providers") &&
        azsim_streq_ci(s[5], "Microsoft.KeyVault") && azsim_streq_ci(s[6], "vaults")) {
        r->op = "arm.vaults";
        if (vault_check_api(&c, n >= 8 ? s[7] : NULL) != AZSIM_OK)
            goto done;
        if (n == 7 && strcmp(m, "GET") == 0) {
            r->op = "arm.vaults.list";
            scope = azsim_printf("/subscriptions/%s/resourceGroups/%s", sub, s[3]);
            if (!scope || authorize(&c, scope, "Microsoft.KeyVault/vaults/read") != AZSIM_OK)
                goto done;
            if (!rg_find(r->st, sub, s[3])) {
                rc = arm_error(&c, 404, "ResourceGroupNotFound",
                               "Resource group '%s' could not be found.", s[3]);
                goto done;
            }
            json_t *value = json_array();
            for (size_t i = 0; i < r->st->vaults.n; i++) {
                azsim_vault *v = r->st->vaults.items[i];
                if (!v->deleted && azsim_streq_ci(v->rg, s[3]))
                    json_array_append_new(value, vault_json(&c, v));
            }
            rc = azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
            goto done;
        }
        if (n == 10 && azsim_streq_ci(s[8], "accessPolicies") && strcmp(m, "PUT") == 0) {
            r->op = "arm.vaults.accessPolicies";
            scope = azsim_printf("/subscriptions/%s/resourceGroups/%s/providers/"
                                 "Microsoft.KeyVault/vaults/%s",
                                 sub, s[3], s[7]);
            if (!scope ||
                authorize(&c, scope, "Microsoft.KeyVault/vaults/accessPolicies/write") != AZSIM_OK)
                goto done;
            azsim_vault *v = azsim_vault_find(r->st, s[7]);
            if (!v || v->deleted || !azsim_streq_ci(v->rg, s[3]))
                rc = arm_error(&c, 404, "ResourceNotFound",
                               "The Resource 'Microsoft.KeyVault/vaults/%s' under resource group "
                               "'%s' was not found. For more details please go to "
                               "https://aka.ms/ARMResourceNotFoundFix",
                               s[7], s[3]);
            else
                rc = access_policies(&c, v, s[9]);
            goto done;
        }
        if (n != 8) {
            rc = arm_error(&c, 404, "NotFound",
                           "The requested resource path is not supported by azsim.");
            goto done;
        }
        scope = azsim_printf(
            "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", sub, s[3],
            s[7]);
        if (!scope) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        azsim_vault *v = azsim_vault_find(r->st, s[7]);
        int here = v && !v->deleted && azsim_streq_ci(v->rg, s[3]) && azsim_streq_ci(v->sub, sub);
        if (strcmp(m, "PUT") == 0) {
            r->op = "arm.vaults.put";
            if (authorize(&c, scope, "Microsoft.KeyVault/vaults/write") == AZSIM_OK) {
                json_t *body = azsim_body_json(r);
                rc = vault_put(&c, sub, s[3], s[7], body, 1);
                json_decref(body);
            }
        } else if (strcmp(m, "PATCH") == 0) {
            r->op = "arm.vaults.patch";
            if (authorize(&c, scope, "Microsoft.KeyVault/vaults/write") == AZSIM_OK)
                rc = here ? vault_patch(&c, v)
                          : arm_error(&c, 404, "ResourceNotFound",
                                      "The Resource 'Microsoft.KeyVault/vaults/%s' under resource "
                                      "group '%s' was not found. For more details please go to "
                                      "https://aka.ms/ARMResourceNotFoundFix",
                                      s[7], s[3]);
        } else if (strcmp(m, "GET") == 0) {
            r->op = "arm.vaults.get";
            if (authorize(&c, scope, "Microsoft.KeyVault/vaults/read") != AZSIM_OK)
                goto done;
            if (here && v->provisioning) { /* looking at it lets the simulated time pass */
                op_tick(r->st, op_of_vault(r->st, v->name));
                v = azsim_vault_find(r->st, s[7]);
                here = v && !v->deleted && azsim_streq_ci(v->rg, s[3]);
            }
            rc = here ? azsim_reply_json(r, 200, vault_json(&c, v))
                      : arm_error(&c, 404, "ResourceNotFound",
                                  "The Resource 'Microsoft.KeyVault/vaults/%s' under resource "
                                  "group '%s' was not found. For more details please go to "
                                  "https://aka.ms/ARMResourceNotFoundFix",
                                  s[7], s[3]);
        } else if (strcmp(m, "DELETE") == 0) {
            r->op = "arm.vaults.delete";
            if (authorize(&c, scope, "Microsoft.KeyVault/vaults/delete") != AZSIM_OK)
                goto done;
            rc = here ? vault_delete(&c, v) : azsim_reply_empty(r, 204);
        } else {
            rc = arm_error(&c, 405, "MethodNotAllowed", "azsim does not support %s on vaults.", m);
        }
        goto done;
    }
    /* deleted vaults */
    if (n >= 5 && azsim_streq_ci(s[2], "providers") && azsim_streq_ci(s[3], "Microsoft.KeyVault")) {
        r->op = "arm.deletedVaults";
        if (provider_check_api(&c, s + 4, n - 4) != AZSIM_OK)
            goto done;
        scope = azsim_printf("/subscriptions/%s", sub);
        if (!scope) {
            rc = AZSIM_ENOMEM;
            goto done;
        }
        if (n == 5 && azsim_streq_ci(s[4], "vaults") && strcmp(m, "GET") == 0) {
            r->op = "arm.vaults.listBySubscription";
            if (authorize(&c, scope, "Microsoft.KeyVault/vaults/read") != AZSIM_OK)
                goto done;
            json_t *value = json_array();
            for (size_t i = 0; i < r->st->vaults.n; i++) {
                azsim_vault *v = r->st->vaults.items[i];
                if (!v->deleted && azsim_streq_ci(v->sub, sub))
                    json_array_append_new(value, vault_json(&c, v));
            }
            rc = azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
            goto done;
        }
        if (n == 5 && azsim_streq_ci(s[4], "checkNameAvailability") && strcmp(m, "POST") == 0) {
            r->op = "arm.vaults.checkNameAvailability";
            json_t *body = azsim_body_json(r);
            const char *name = json_string_value(json_object_get(body, "name"));
            const char *type = json_string_value(json_object_get(body, "type"));
            if (!name || !azsim_streq_ci(type, "Microsoft.KeyVault/vaults")) {
                rc = arm_error(
                    &c, 400, "BadRequest",
                    "The body must be {\"name\":...,\"type\":\"Microsoft.KeyVault/vaults\"}.");
            } else if (!valid_vault_name(name)) {
                rc = azsim_reply_json(
                    r, 200,
                    json_pack("{s:b,s:s,s:s}", "nameAvailable", 0, "reason", "AccountNameInvalid",
                              "message",
                              "Vault name must be between 3-24 alphanumeric characters. The name "
                              "must begin with a letter, end with a letter or digit, and not "
                              "contain consecutive hyphens."));
            } else if (azsim_vault_find(r->st, name)) {
                char *msg = azsim_printf("The vault name '%s' is already in use.", name);
                rc = azsim_reply_json(r, 200,
                                      json_pack("{s:b,s:s,s:s}", "nameAvailable", 0, "reason",
                                                "AlreadyExists", "message", msg ? msg : ""));
                free(msg);
            } else {
                rc = azsim_reply_json(r, 200, json_pack("{s:b}", "nameAvailable", 1));
            }
            json_decref(body);
            goto done;
        }
        if (n == 5 && azsim_streq_ci(s[4], "deletedVaults") && strcmp(m, "GET") == 0) {
            r->op = "arm.deletedVaults.list";
            if (authorize(&c, scope, "Microsoft.KeyVault/deletedVaults/read") != AZSIM_OK)
                goto done;
            json_t *value = json_array();
            for (size_t i = 0; i < r->st->vaults.n; i++) {
                azsim_vault *v = r->st->vaults.items[i];
                if (v->deleted && azsim_streq_ci(v->sub, sub))
                    json_array_append_new(value, deleted_vault_json(v, 1));
            }
            rc = azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
            goto done;
        }
        if (n == 8 && azsim_streq_ci(s[4], "locations") &&
            (azsim_streq_ci(s[6], "operationStatuses") ||
             azsim_streq_ci(s[6], "operationResults")) &&
            strcmp(m, "GET") == 0) {
            r->op = azsim_streq_ci(s[6], "operationStatuses") ? "arm.operationStatuses.get"
                                                              : "arm.operationResults.get";
            if (authorize(&c, scope, "Microsoft.KeyVault/locations/operationResults/read") ==
                AZSIM_OK)
                rc = op_get(&c, s[5], s[6], s[7]);
            goto done;
        }
        if ((n == 8 || n == 9) && azsim_streq_ci(s[4], "locations") &&
            azsim_streq_ci(s[6], "deletedVaults")) {
            azsim_vault *v = azsim_vault_find(r->st, s[7]);
            int found = v && v->deleted && azsim_streq_ci(v->location, s[5]);
            if (n == 8 && strcmp(m, "GET") == 0) {
                r->op = "arm.deletedVaults.get";
                if (authorize(&c, scope, "Microsoft.KeyVault/locations/deletedVaults/read") !=
                    AZSIM_OK)
                    goto done;
                rc = found ? azsim_reply_json(r, 200, deleted_vault_json(v, 0))
                           : arm_error(&c, 404, "ResourceNotFound",
                                       "The Resource 'Microsoft.KeyVault/deletedVaults/%s' was not "
                                       "found.",
                                       s[7]);
                goto done;
            }
            if (n == 9 && azsim_streq_ci(s[8], "purge") && strcmp(m, "POST") == 0) {
                r->op = "arm.deletedVaults.purge";
                if (authorize(&c, scope,
                              "Microsoft.KeyVault/locations/deletedVaults/purge/action") !=
                    AZSIM_OK)
                    goto done;
                if (!found) {
                    rc = arm_error(&c, 404, "ResourceNotFound",
                                   "The Resource 'Microsoft.KeyVault/deletedVaults/%s' was not "
                                   "found.",
                                   s[7]);
                } else if (v->purge_protection) {
                    rc = arm_error(&c, 409, "Conflict",
                                   "Operation 'DeletedVaultPurge' is not allowed. The vault has "
                                   "purge protection enabled and will be purged on %s.",
                                   "its scheduled purge date");
                } else {
                    for (size_t i = 0; i < r->st->vaults.n; i++)
                        if (r->st->vaults.items[i] == v) {
                            azsim_vec_remove(&r->st->vaults, i);
                            azsim_vault_free(v);
                            break;
                        }
                    rc = azsim_reply_empty(r, 200);
                }
                goto done;
            }
        }
    }
    r->op = "arm.unknown";
    rc = arm_error(&c, 404, "NotFound", "The requested resource path is not supported by azsim.");
done:
    free(aud);
    free(scope);
    return rc;
}
