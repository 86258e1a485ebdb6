/*
 * azsim_auth.c - who is calling and what they may do, shared by every simulated service. It holds
 * the directory model (applications with password credentials, service principals), checks bearer
 * tokens (signature, issuer, tenant, audience and expiry against the simulated clock), and
 * evaluates Azure RBAC: built-in role definitions with their actions and data actions, assignments
 * inherited down the scope tree, and the propagation delay before a new assignment is seen by
 * the data plane. The bootstrap principal is created here at startup.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct role_def {
    const char *id;
    const char *name;
    const char *actions[12];
    const char *not_actions[4];
    const char *data_actions[12];
} role_def;

#define KV "Microsoft.KeyVault/vaults/"

static const role_def ROLES[] = {
    {"8e3af657-a8ff-404c-8c7f-e7ed2b4b0f1a", "Owner", {"*"}, {NULL}, {NULL}},
    {"b24988ac-6180-42a0-ab88-20f7382dd24c",
     "Contributor",
     {"*"},
     {"Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
      "Microsoft.Authorization/elevateAccess/Action"},
     {NULL}},
    {"acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", {"*/read"}, {NULL}, {NULL}},
    {"18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
     "User Access Administrator",
     {"*/read", "Microsoft.Authorization/*"},
     {NULL},
     {NULL}},
    {"f25e0fa2-a7c8-4377-a976-54943a77a395",
     "Key Vault Contributor",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/*", "Microsoft.Resources/*"},
     {"Microsoft.KeyVault/locations/deletedVaults/purge/action"},
     {NULL}},
    {"00482a5a-887f-4fb3-b363-3b7fe8e74483",
     "Key Vault Administrator",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read",
      "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/*/read"},
     {NULL},
     {KV "*"}},
    {"14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
     "Key Vault Crypto Officer",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read"},
     {NULL},
     {KV "keys/*", KV "keyrotationpolicies/*"}},
    {"12338af0-0e69-4776-bea7-57ae8d297424",
     "Key Vault Crypto User",
     {NULL},
     {NULL},
     {KV "keys/read", KV "keys/update/action", KV "keys/backup/action", KV "keys/encrypt/action",
      KV "keys/decrypt/action", KV "keys/wrap/action", KV "keys/unwrap/action",
      KV "keys/sign/action", KV "keys/verify/action"}},
    {"e147488a-f6f5-4113-8e2d-b22465e65bf6",
     "Key Vault Crypto Service Encryption User",
     {"Microsoft.EventGrid/eventSubscriptions/write", "Microsoft.EventGrid/eventSubscriptions/read",
      "Microsoft.EventGrid/eventSubscriptions/delete"},
     {NULL},
     {KV "keys/read", KV "keys/wrap/action", KV "keys/unwrap/action"}},
    {"b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
     "Key Vault Secrets Officer",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read"},
     {NULL},
     {KV "secrets/*"}},
    {"4633458b-17de-408a-b874-0445c86b69e6",
     "Key Vault Secrets User",
     {NULL},
     {NULL},
     {KV "secrets/getSecret/action", KV "secrets/readMetadata/action"}},
    {"21090545-7ca7-4776-b22c-e363652d74d2",
     "Key Vault Reader",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read"},
     {NULL},
     {KV "*/read", KV "secrets/readMetadata/action"}},
    {"a4417e6f-fecd-4de8-b567-7b0420556985",
     "Key Vault Certificates Officer",
     {"Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read"},
     {NULL},
     {KV "certificatecas/*", KV "certificates/*", KV "certificatecontacts/write"}},
    {"db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
     "Key Vault Certificate User",
     {NULL},
     {NULL},
     {KV "certificates/read", KV "secrets/getSecret/action", KV "secrets/readMetadata/action",
      KV "keys/read"}},
    {"8b54135c-b56d-4d72-a534-26097cfdc8d8",
     "Key Vault Data Access Administrator",
     {"Microsoft.Authorization/roleAssignments/write",
      "Microsoft.Authorization/roleAssignments/delete", "*/read"},
     {NULL},
     {NULL}},
};

static const role_def *role_find(const char *guid)
{
    for (size_t i = 0; i < sizeof(ROLES) / sizeof(ROLES[0]); i++)
        if (azsim_streq_ci(ROLES[i].id, guid))
            return &ROLES[i];
    return NULL;
}

/* Case-insensitive glob where '*' matches any run of characters, as in role definitions. */
static int glob_ci(const char *pat, const char *s)
{
    for (; *pat; pat++, s++) {
        if (*pat == '*') {
            for (const char *t = s;; t++) {
                if (glob_ci(pat + 1, t))
                    return 1;
                if (!*t)
                    return 0;
            }
        }
        if (!*s || tolower((unsigned char)*pat) != tolower((unsigned char)*s))
            return 0;
    }
    return *s == '\0';
}

static int role_grants(const role_def *rd, const char *action, int data_action)
{
    const char *const *allow = data_action ? rd->data_actions : rd->actions;
    int ok = 0;
    for (size_t i = 0; i < 12 && allow[i]; i++)
        if (glob_ci(allow[i], action))
            ok = 1;
    if (ok && !data_action)
        for (size_t i = 0; i < 4 && rd->not_actions[i]; i++)
            if (glob_ci(rd->not_actions[i], action))
                ok = 0;
    return ok;
}

/* True when scope is resource itself or one of its ancestors (segment-wise, case-insensitive). */
static int scope_covers(const char *scope, const char *resource)
{
    size_t n = strlen(scope);
    while (n > 0 && scope[n - 1] == '/')
        n--;
    if (n == 0)
        return 1; /* "/" is the root scope */
    if (strncasecmp(scope, resource, n) != 0)
        return 0;
    return resource[n] == '\0' || resource[n] == '/';
}

int azsim_rbac_allows(azsim_state *st, const char *principal, const char *resource,
                      const char *action, int data_action, int honour_delay)
{
    int64_t now = azsim_now(st);
    for (size_t i = 0; i < st->assignments.n; i++) {
        azsim_role_assignment *ra = st->assignments.items[i];
        if (!azsim_streq_ci(ra->principal, principal) || !scope_covers(ra->scope, resource))
            continue;
        if (honour_delay && now < ra->effective)
            continue;
        const role_def *rd = role_find(ra->role);
        if (rd && role_grants(rd, action, data_action))
            return 1;
    }
    return 0;
}

char *azsim_resource(azsim_state *st, const char *host)
{
    return azsim_printf("https://%s:%d", host, st->port);
}

int azsim_auth_bearer(azsim_caller *caller, azsim_req *r, const char *audience, const char **why)
{
    azsim_state *st = r->st;
    const char *h = azsim_header(r, "Authorization");
    json_t *claims = NULL;
    char *iss = NULL;
    int rc = AZSIM_EINVAL;

    memset(caller, 0, sizeof(*caller));
    *why = "missing";
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        goto done;
    h += 7;
    while (*h == ' ')
        h++;
    *why = "invalid";
    if (azsim_jwt_verify(&claims, st, h) != AZSIM_OK)
        goto done;
    const char *aud = json_string_value(json_object_get(claims, "aud"));
    const char *tid = json_string_value(json_object_get(claims, "tid"));
    const char *oid = json_string_value(json_object_get(claims, "oid"));
    const char *appid = json_string_value(json_object_get(claims, "appid"));
    const char *tiss = json_string_value(json_object_get(claims, "iss"));
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    if (!aud || !tid || !oid || !appid || !tiss || !json_is_integer(exp))
        goto done;
    iss = azsim_printf("https://login.localhost:%d/%s/v2.0", st->port, tid);
    if (!iss || strcmp(iss, tiss) != 0 || strcmp(tid, st->tenant) != 0)
        goto done;
    size_t al = strlen(audience);
    if (strncmp(aud, audience, al) != 0 || (aud[al] != '\0' && strcmp(aud + al, "/") != 0)) {
        *why = "audience";
        goto done;
    }
    int64_t now = azsim_now(st);
    if (json_integer_value(exp) <= now) {
        *why = "expired";
        goto done;
    }
    if (json_is_integer(nbf) && json_integer_value(nbf) > now + 300)
        goto done;
    snprintf(caller->oid, sizeof(caller->oid), "%s", oid);
    snprintf(caller->appid, sizeof(caller->appid), "%s", appid);
    snprintf(caller->tid, sizeof(caller->tid), "%s", tid);
    snprintf(caller->iss, sizeof(caller->iss), "%s", tiss);
    *why = NULL;
    rc = AZSIM_OK;
done:
    free(iss);
    json_decref(claims);
    return rc;
}

azsim_sp *azsim_sp_by_id(azsim_state *st, const char *id)
{
    for (size_t i = 0; i < st->sps.n; i++) {
        azsim_sp *sp = st->sps.items[i];
        if (azsim_streq_ci(sp->id, id))
            return sp;
    }
    return NULL;
}

azsim_sp *azsim_sp_by_app(azsim_state *st, const char *app_id)
{
    for (size_t i = 0; i < st->sps.n; i++) {
        azsim_sp *sp = st->sps.items[i];
        if (azsim_streq_ci(sp->app_id, app_id))
            return sp;
    }
    return NULL;
}

azsim_app *azsim_app_by_appid(azsim_state *st, const char *app_id)
{
    for (size_t i = 0; i < st->apps.n; i++) {
        azsim_app *a = st->apps.items[i];
        if (azsim_streq_ci(a->app_id, app_id))
            return a;
    }
    return NULL;
}

azsim_app *azsim_app_by_id(azsim_state *st, const char *id)
{
    for (size_t i = 0; i < st->apps.n; i++) {
        azsim_app *a = st->apps.items[i];
        if (azsim_streq_ci(a->id, id))
            return a;
    }
    return NULL;
}

static void password_free(azsim_password *pw)
{
    if (!pw)
        return;
    azsim_secret_free(pw->secret);
    free(pw->display_name);
    free(pw);
}

void azsim_keycred_free(azsim_keycred *kc)
{
    if (!kc)
        return;
    EVP_PKEY_free(kc->pub);
    free(kc->display_name);
    free(kc->usage);
    free(kc);
}

void azsim_app_free(azsim_app *app)
{
    if (!app)
        return;
    for (size_t i = 0; i < app->passwords.n; i++)
        password_free(app->passwords.items[i]);
    free(app->passwords.items);
    for (size_t i = 0; i < app->keys.n; i++)
        azsim_keycred_free(app->keys.items[i]);
    free(app->keys.items);
    free(app->display_name);
    free(app->sign_in_audience);
    free(app->unique_name);
    json_decref(app->tags);
    free(app);
}

/* Adds a password credential to app with a fresh 40-character secret, as Entra generates. */
azsim_password *azsim_password_new(azsim_state *st, azsim_app *app, const char *display_name,
                                   int64_t start, int64_t end)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    unsigned char raw[40];
    azsim_password *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return NULL;
    pw->secret = malloc(sizeof(raw) + 1);
    pw->display_name = display_name ? strdup(display_name) : NULL;
    if (!pw->secret || (display_name && !pw->display_name))
        goto fail;
    azsim_random(st, raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++)
        pw->secret[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    pw->secret[sizeof(raw)] = '\0';
    memcpy(pw->hint, pw->secret, 3);
    pw->hint[3] = '\0';
    azsim_guid(st, pw->key_id);
    pw->start = start;
    pw->end = end;
    if (azsim_vec_push(&app->passwords, pw) != AZSIM_OK)
        goto fail;
    return pw;
fail:
    password_free(pw);
    return NULL;
}

void azsim_role_assignment_free(azsim_role_assignment *ra)
{
    if (!ra)
        return;
    free(ra->scope);
    free(ra->principal_type);
    free(ra->description);
    free(ra);
}

int azsim_role_assign(azsim_role_assignment **out, azsim_state *st, const char *name,
                      const char *scope, const char *role, const char *principal,
                      const char *principal_type, int64_t effective)
{
    azsim_role_assignment *ra = calloc(1, sizeof(*ra));
    if (out)
        *out = NULL;
    if (!ra)
        return AZSIM_ENOMEM;
    if (name)
        snprintf(ra->name, sizeof(ra->name), "%s", name);
    else
        azsim_guid(st, ra->name);
    snprintf(ra->role, sizeof(ra->role), "%s", role);
    for (char *p = ra->role; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    snprintf(ra->principal, sizeof(ra->principal), "%s", principal);
    ra->scope = strdup(scope);
    ra->principal_type = strdup(principal_type ? principal_type : "User");
    ra->created = azsim_now(st);
    ra->effective = effective;
    if (!ra->scope || !ra->principal_type || azsim_vec_push(&st->assignments, ra) != AZSIM_OK) {
        azsim_role_assignment_free(ra);
        return AZSIM_ENOMEM;
    }
    if (out)
        *out = ra;
    return AZSIM_OK;
}

/* The bootstrap principal: an app with one secret, its SP, subscription Owner and KV Admin. */
int azsim_directory_bootstrap(azsim_state *st)
{
    azsim_app *app = calloc(1, sizeof(*app));
    azsim_sp *sp = calloc(1, sizeof(*sp));
    char *scope = NULL;
    int rc = AZSIM_ENOMEM;
    int64_t now = azsim_now(st);

    if (!app || !sp)
        goto done;
    azsim_guid(st, app->id);
    azsim_guid(st, app->app_id);
    app->display_name = strdup("azsim-bootstrap");
    app->sign_in_audience = strdup("AzureADMyOrg");
    app->created = now;
    if (!app->display_name || !app->sign_in_audience ||
        !azsim_password_new(st, app, "bootstrap", now - 60, now + 2 * 365 * 86400LL))
        goto done;
    azsim_guid(st, sp->id);
    memcpy(sp->app_id, app->app_id, sizeof(sp->app_id));
    sp->display_name = strdup(app->display_name);
    if (!sp->display_name)
        goto done;
    if (azsim_vec_push(&st->apps, app) != AZSIM_OK)
        goto done;
    st->bootstrap = app;
    app = NULL;
    if (azsim_vec_push(&st->sps, sp) != AZSIM_OK)
        goto done;
    azsim_sp *bsp = sp;
    sp = NULL;
    scope = azsim_printf("/subscriptions/%s", st->subscription);
    if (!scope ||
        azsim_role_assign(NULL, st, NULL, scope, "8e3af657-a8ff-404c-8c7f-e7ed2b4b0f1a", bsp->id,
                          "ServicePrincipal", 0) != AZSIM_OK ||
        azsim_role_assign(NULL, st, NULL, scope, "00482a5a-887f-4fb3-b363-3b7fe8e74483", bsp->id,
                          "ServicePrincipal", 0) != AZSIM_OK)
        goto done;
    rc = AZSIM_OK;
done:
    azsim_app_free(app);
    if (sp) {
        free(sp->display_name);
        free(sp);
    }
    free(scope);
    return rc;
}
