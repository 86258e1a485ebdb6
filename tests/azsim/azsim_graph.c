/*
 * azsim_graph.c - graph.localhost, the Microsoft Graph v1.0 directory calls kvreconcile makes to
 * rotate app credentials: applications (create, get by object id, appId or uniqueName, list with
 * $filter, update, delete, upsert by uniqueName), addPassword/removePassword, and service
 * principals (create, get, list, delete, upsert by appId). An upsert is a PATCH to the alternate
 * key with `Prefer: create-if-missing`: 201 and the new object if none had the key, else an
 * update and 204; without the header a missing key is 404. A
 * client secret's text is returned once, by addPassword, and never again; later reads show only
 * its hint. The apps created here can sign in at login.localhost at once.
 *
 * Deleting an application does what Entra does: the app moves to the directory's deleted items
 * (st->deleted_apps) with its credentials and tags, where /directory/deletedItems lists, gets,
 * restores or permanently deletes it; nothing else (Graph's application routes, sign-in) sees it
 * meanwhile, and azsim_graph_sweep purges it 30 days (simulated clock) after the deletion. Its
 * service principal is deleted for good, and a restore does not bring it back.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

typedef struct graph_ctx {
    azsim_req *r;
    azsim_state *st;
    azsim_caller caller;
    char *base; /* https://graph.localhost:PORT/v1.0 */
} graph_ctx;

static int graph_error(graph_ctx *c, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int graph_error(graph_ctx *c, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[1024], date[32], rid[AZSIM_GUID_LEN + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    azsim_iso8601(date, azsim_now(c->st));
    azsim_guid(c->st, rid);
    const char *crid = azsim_header(c->r, "client-request-id");
    return azsim_reply_json(c->r, status,
                            json_pack("{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code", code,
                                      "message", msg, "innerError", "date", date, "request-id", rid,
                                      "client-request-id", crid ? crid : rid));
}

static json_t *password_json(azsim_password *pw, int with_secret)
{
    char start[32], end[32];
    azsim_iso8601(start, pw->start);
    azsim_iso8601(end, pw->end);
    json_t *j = json_pack("{s:n,s:s?,s:s,s:s,s:s,s:s}", "customKeyIdentifier", "displayName",
                          pw->display_name, "endDateTime", end, "hint", pw->hint, "keyId",
                          pw->key_id, "startDateTime", start);
    json_object_set_new(j, "secretText", with_secret ? json_string(pw->secret) : json_null());
    return j;
}

static json_t *keycred_json(azsim_keycred *kc)
{
    char start[32], end[32], thumb[41];
    azsim_iso8601(start, kc->start);
    azsim_iso8601(end, kc->end);
    for (size_t i = 0; i < sizeof(kc->sha1); i++)
        snprintf(thumb + 2 * i, 3, "%02X", kc->sha1[i]);
    return json_pack("{s:s,s:s?,s:s,s:n,s:s,s:s,s:s,s:s}", "customKeyIdentifier", thumb,
                     "displayName", kc->display_name, "endDateTime", end, "key", "keyId",
                     kc->key_id, "startDateTime", start, "type", "AsymmetricX509Cert", "usage",
                     kc->usage);
}

static json_t *app_json(azsim_app *a)
{
    char created[32], deleted[32];
    json_t *pws = json_array(), *keys = json_array();
    azsim_iso8601(created, a->created);
    for (size_t i = 0; i < a->passwords.n; i++)
        json_array_append_new(pws, password_json(a->passwords.items[i], 0));
    for (size_t i = 0; i < a->keys.n; i++)
        json_array_append_new(keys, keycred_json(a->keys.items[i]));
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:[],s:o,s:o,s:o}", "id", a->id, "appId", a->app_id,
                  "displayName", a->display_name, "signInAudience", a->sign_in_audience,
                  "createdDateTime", created, "publisherDomain", "azsim.onmicrosoft.com",
                  "identifierUris", "tags", a->tags ? json_copy(a->tags) : json_array(),
                  "keyCredentials", keys, "passwordCredentials", pws);
    json_object_set_new(j, "uniqueName",
                        a->unique_name ? json_string(a->unique_name) : json_null());
    if (a->deleted)
        azsim_iso8601(deleted, a->deleted);
    json_object_set_new(j, "deletedDateTime", a->deleted ? json_string(deleted) : json_null());
    return j;
}

/* A deleted item as /directory/deletedItems/{id} and its restore answer it: typed, since the
   collection holds directory objects of every kind. */
static json_t *directory_object_json(azsim_app *a)
{
    json_t *j = app_json(a);
    json_object_set_new(j, "@odata.type", json_string("#microsoft.graph.application"));
    return j;
}

/* `tags` as a body may carry it: an array of strings (Graph's tags are not nullable) */
static int tags_valid(const json_t *tags)
{
    size_t i;
    json_t *t;
    if (!json_is_array(tags))
        return 0;
    json_array_foreach(tags, i, t)
    {
        if (!json_is_string(t))
            return 0;
    }
    return 1;
}

static int tags_error(graph_ctx *c)
{
    return graph_error(c, 400, "Request_BadRequest",
                       "Invalid value specified for property 'tags' of resource 'Application'.");
}

static int64_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    char buf[96];
    int64_t out = 0;
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return azsim_parse_iso8601(&out, buf) == AZSIM_OK ? out : 0;
}

/*
 * PATCH /applications/{id}: displayName, keyCredentials and tags (the lists replace the whole
 * list). Nothing changes unless the whole body is valid.
 */
static int app_patch(graph_ctx *c, azsim_app *a)
{
    json_t *body = azsim_body_json(c->r);
    azsim_vec keys = {0};
    int rc = AZSIM_OK;
    char *name = NULL;
    json_t *new_tags = NULL;
    json_t *dn = json_object_get(body, "displayName");
    json_t *kcs = json_object_get(body, "keyCredentials");
    json_t *tags = json_object_get(body, "tags");

    if (!json_is_object(body) || (dn && !json_is_string(dn)) || (kcs && !json_is_array(kcs))) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "The request body is not a valid application update.");
        goto done;
    }
    if (tags && !tags_valid(tags)) {
        rc = tags_error(c);
        goto done;
    }
    size_t i;
    json_t *kc;
    json_array_foreach(kcs, i, kc)
    {
        const char *type = json_string_value(json_object_get(kc, "type"));
        const char *usage = json_string_value(json_object_get(kc, "usage"));
        const char *key = json_string_value(json_object_get(kc, "key"));
        unsigned char *der = NULL;
        size_t derlen = 0;
        X509 *x = NULL;
        if (!type || strcmp(type, "AsymmetricX509Cert") != 0 || !usage ||
            strcmp(usage, "Verify") != 0 || !key ||
            azsim_b64url_decode(&der, &derlen, key) != AZSIM_OK) {
            free(der);
            rc = graph_error(
                c, 400, "Request_BadRequest",
                "Invalid value specified for property 'keyCredentials' of resource "
                "'Application': only AsymmetricX509Cert keys for Verify are supported.");
            goto done;
        }
        const unsigned char *p = der;
        x = d2i_X509(NULL, &p, (long)derlen);
        azsim_keycred *k = x ? calloc(1, sizeof(*k)) : NULL;
        if (!k) {
            X509_free(x);
            free(der);
            rc = graph_error(c, 400, "Request_BadRequest",
                             "Key credential 'key' is not a valid DER X.509 certificate.");
            goto done;
        }
        EVP_Digest(der, derlen, k->sha1, NULL, EVP_sha1(), NULL);
        EVP_Digest(der, derlen, k->sha256, NULL, EVP_sha256(), NULL);
        free(der);
        k->pub = X509_get_pubkey(x);
        k->start = asn1_time(X509_get0_notBefore(x));
        k->end = asn1_time(X509_get0_notAfter(x));
        X509_free(x);
        k->usage = strdup(usage);
        k->display_name = azsim_strdup(json_string_value(json_object_get(kc, "displayName")));
        azsim_guid(c->st, k->key_id);
        if (!k->pub || !k->usage || azsim_vec_push(&keys, k) != AZSIM_OK) {
            azsim_keycred_free(k);
            rc = AZSIM_ENOMEM;
            goto done;
        }
    }
    if ((json_is_string(dn) && !(name = strdup(json_string_value(dn)))) ||
        (tags && !(new_tags = json_deep_copy(tags)))) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (name) {
        free(a->display_name);
        a->display_name = name;
        name = NULL;
    }
    if (new_tags) {
        json_decref(a->tags);
        a->tags = new_tags;
        new_tags = NULL;
    }
    if (kcs) {
        for (size_t k = 0; k < a->keys.n; k++)
            azsim_keycred_free(a->keys.items[k]);
        free(a->keys.items);
        a->keys = keys;
        keys.items = NULL;
        keys.n = 0;
    }
    rc = azsim_reply_empty(c->r, 204);
done:
    for (size_t k = 0; k < keys.n; k++)
        azsim_keycred_free(keys.items[k]);
    free(keys.items);
    free(name);
    json_decref(new_tags);
    json_decref(body);
    return rc;
}

static json_t *sp_json(azsim_state *st, azsim_sp *sp)
{
    azsim_app *a = azsim_app_by_appid(st, sp->app_id);
    return json_pack("{s:s,s:s,s:s,s:s?,s:s,s:b,s:[s]}", "id", sp->id, "appId", sp->app_id,
                     "displayName", sp->display_name, "appDisplayName", a ? a->display_name : NULL,
                     "servicePrincipalType", "Application", "accountEnabled", 1,
                     "servicePrincipalNames", sp->app_id);
}

static json_t *with_context(graph_ctx *c, json_t *j, const char *ctx)
{
    char *url = azsim_printf("%s/$metadata#%s", c->base, ctx);
    json_t *out = json_pack("{s:s}", "@odata.context", url ? url : "");
    free(url);
    json_object_update(out, j);
    json_decref(j);
    return out;
}

/*
 * The OData string literal at v (just after its opening quote, '' standing for one ') when the
 * closing quote is followed by exactly `tail`: the value unquoted (the caller frees), else NULL.
 */
static char *odata_literal(const char *v, const char *tail)
{
    char *out = malloc(strlen(v) + 1), *o = out;
    if (!out)
        return NULL;
    for (; *v; v++) {
        if (*v == '\'' && v[1] == '\'') {
            *o++ = *v++;
        } else if (*v == '\'') {
            break;
        } else {
            *o++ = *v;
        }
    }
    *o = '\0';
    if (*v != '\'' || strcmp(v + 1, tail) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/*
 * An alternate key: "applications(appId='X')", "applications(uniqueName='X')" or
 * "servicePrincipals(appId='X')" -> X, the OData literal unquoted ('' is one '), with *prop the
 * key's property; "applications" -> NULL with *plain = 1; anything else -> NULL.
 */
static char *key_segment(const char *seg, const char *coll, const char **prop, int *plain)
{
    static const char *const props[] = {"appId", "uniqueName", NULL};
    size_t n = strlen(coll);
    *plain = 0;
    if (strcmp(seg, coll) == 0) {
        *plain = 1;
        return NULL;
    }
    if (strncmp(seg, coll, n) != 0 || seg[n] != '(')
        return NULL;
    for (size_t i = 0; props[i]; i++) {
        size_t pn = strlen(props[i]);
        const char *v = seg + n + 1;
        char *out;
        if (strncmp(v, props[i], pn) != 0 || strncmp(v + pn, "='", 2) != 0)
            continue;
        if (i == 1 && strcmp(coll, "applications") != 0)
            return NULL; /* uniqueName keys applications only */
        if (!(out = odata_literal(v + pn + 2, ")")))
            return NULL;
        *prop = props[i];
        return out;
    }
    return NULL;
}

static azsim_app *app_by_unique_name(azsim_state *st, const char *name)
{
    for (size_t i = 0; i < st->apps.n; i++) {
        azsim_app *a = st->apps.items[i];
        if (a->unique_name && azsim_streq_ci(a->unique_name, name))
            return a;
    }
    return NULL;
}

/* Does the request carry the `create-if-missing` preference (RFC 7240: a list of tokens)? */
static int prefers_create(graph_ctx *c)
{
    const char *p = azsim_header(c->r, "Prefer");
    static const char tok[] = "create-if-missing";
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        while (n && p[n - 1] == ' ')
            n--;
        if (n == sizeof(tok) - 1 && strncasecmp(p, tok, n) == 0)
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}


/*
 * The lambda "PROP/any(x:x eq 'X')" on a collection property, x any OData identifier: X, with
 * *field set to PROP (one of props); NULL if filter is not such a lambda.
 */
static char *parse_any(const char *filter, const char **field)
{
    static const char *const props[] = {"servicePrincipalNames", "tags", NULL};
    for (size_t i = 0; props[i]; i++) {
        size_t pn = strlen(props[i]), vl = 0;
        if (strncmp(filter, props[i], pn) != 0 || strncmp(filter + pn, "/any(", 5) != 0)
            continue;
        const char *var = filter + pn + 5;
        if (isalpha((unsigned char)var[0]) || var[0] == '_')
            for (vl = 1; isalnum((unsigned char)var[vl]) || var[vl] == '_'; vl++)
                ;
        const char *v = var + vl;
        if (vl == 0 || *v != ':' || strncmp(v + 1, var, vl) != 0 ||
            strncmp(v + 1 + vl, " eq '", 5) != 0)
            return NULL;
        char *want = odata_literal(v + 1 + vl + 5, ")");
        if (want)
            *field = props[i];
        return want;
    }
    return NULL;
}

/*
 * Parses "$filter=appId eq 'X'", "displayName eq 'X'", the lambdas
 * "servicePrincipalNames/any(c:c eq 'X')" (service principals; what `az ad sp show --id` sends)
 * and "tags/any(t:t eq 'X')" (applications), and "startswith(displayName,'X')"
 * (case-insensitive, as Graph's startswith); field gets "appId", "displayName",
 * "servicePrincipalNames", "tags" or "startswith".
 */
static char *parse_filter(const char *filter, const char **field)
{
    static const char *const fields[] = {"appId", "displayName", NULL};
    static const char sw[] = "startswith(displayName,'";
    if (strncmp(filter, sw, sizeof(sw) - 1) == 0) { /* what `az ad app create` sends */
        const char *v = filter + sizeof(sw) - 1;
        size_t n = strlen(v);
        if (n < 2 || strcmp(v + n - 2, "')") != 0)
            return NULL;
        *field = "startswith";
        return strndup(v, n - 2);
    }
    char *want = parse_any(filter, field);
    if (want)
        return want;
    for (size_t i = 0; fields[i]; i++) {
        size_t n = strlen(fields[i]);
        if (strncmp(filter, fields[i], n) == 0 && strncmp(filter + n, " eq '", 5) == 0) {
            const char *v = filter + n + 5;
            const char *end = strrchr(v, '\'');
            if (!end)
                return NULL;
            *field = fields[i];
            return strndup(v, (size_t)(end - v));
        }
    }
    return NULL;
}

/* POST /applications, or an upsert by uniqueName (`unique`) that found none. */
static int app_create(graph_ctx *c, const char *unique)
{
    json_t *body = azsim_body_json(c->r);
    azsim_app *a = NULL;
    int rc;
    const char *name = json_string_value(json_object_get(body, "displayName"));
    const char *aud = json_string_value(json_object_get(body, "signInAudience"));
    json_t *un = json_object_get(body, "uniqueName");
    json_t *tags = json_object_get(body, "tags");
    if (!unique && json_is_string(un))
        unique = json_string_value(un);
    if ((un && !json_is_string(un) && !json_is_null(un)) || (unique && !*unique)) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "Invalid value specified for property 'uniqueName' of resource "
                         "'Application'.");
        goto done;
    }
    if (unique && app_by_unique_name(c->st, unique)) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "Another object with the same value for property uniqueName already "
                         "exists.");
        goto done;
    }
    if (!name || !*name) {
        rc = graph_error(
            c, 400, "Request_BadRequest",
            "A value is required for property 'displayName' of resource 'Application'.");
        goto done;
    }
    if (json_object_get(body, "passwordCredentials")) {
        rc =
            graph_error(c, 400, "Request_BadRequest",
                        "Property 'passwordCredentials' cannot be set on create; use addPassword.");
        goto done;
    }
    if (aud && strcmp(aud, "AzureADMyOrg") && strcmp(aud, "AzureADMultipleOrgs") &&
        strcmp(aud, "AzureADandPersonalMicrosoftAccount") &&
        strcmp(aud, "PersonalMicrosoftAccount")) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "Invalid value specified for property "
                         "'signInAudience' of resource 'Application'.");
        goto done;
    }
    if (tags && !tags_valid(tags)) {
        rc = tags_error(c);
        goto done;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_guid(c->st, a->id);
    azsim_guid(c->st, a->app_id);
    a->display_name = strdup(name);
    a->sign_in_audience = strdup(aud ? aud : "AzureADMyOrg");
    a->unique_name = unique ? strdup(unique) : NULL;
    a->tags = tags ? json_deep_copy(tags) : json_array();
    a->created = azsim_now(c->st);
    if (!a->display_name || !a->sign_in_audience || (unique && !a->unique_name) || !a->tags ||
        azsim_vec_push(&c->st->apps, a) != AZSIM_OK) {
        azsim_app_free(a);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_reply_json(c->r, 201, with_context(c, app_json(a), "applications/$entity"));
done:
    json_decref(body);
    return rc;
}

static int add_password(graph_ctx *c, azsim_app *a)
{
    json_t *body = azsim_body_json(c->r);
    json_t *pc = json_object_get(body, "passwordCredential");
    int64_t now = azsim_now(c->st), start = now, end = 0;
    int rc;
    const char *s = json_string_value(json_object_get(pc, "startDateTime"));
    const char *e = json_string_value(json_object_get(pc, "endDateTime"));
    const char *dn = json_string_value(json_object_get(pc, "displayName"));
    if ((s && azsim_parse_iso8601(&start, s) != AZSIM_OK) ||
        (e && azsim_parse_iso8601(&end, e) != AZSIM_OK)) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "Invalid value specified for property 'startDateTime' or 'endDateTime'.");
        goto done;
    }
    if (!e)
        end = start + 2 * 365 * 86400LL;
    if (end <= start) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "The endDateTime of a password credential must be after its "
                         "startDateTime.");
        goto done;
    }
    azsim_password *pw = azsim_password_new(c->st, a, dn, start, end);
    if (!pw) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_reply_json(
        c->r, 200, with_context(c, password_json(pw, 1), "microsoft.graph.passwordCredential"));
done:
    json_decref(body);
    return rc;
}

static int remove_password(graph_ctx *c, azsim_app *a)
{
    json_t *body = azsim_body_json(c->r);
    const char *kid = json_string_value(json_object_get(body, "keyId"));
    int rc;
    for (size_t i = 0; kid && i < a->passwords.n; i++) {
        azsim_password *pw = a->passwords.items[i];
        if (azsim_streq_ci(pw->key_id, kid)) {
            azsim_vec_remove(&a->passwords, i);
            azsim_secret_free(pw->secret);
            free(pw->display_name);
            free(pw);
            rc = azsim_reply_empty(c->r, 204);
            goto done;
        }
    }
    rc = graph_error(c, 400, "Request_BadRequest",
                     "No password credential with keyId '%s' was found on the application.",
                     kid ? kid : "");
done:
    json_decref(body);
    return rc;
}

/* POST /servicePrincipals, or an upsert by appId (`key`) that found none. */
static int sp_create(graph_ctx *c, const char *key)
{
    json_t *body = azsim_body_json(c->r);
    const char *app_id = key ? key : json_string_value(json_object_get(body, "appId"));
    azsim_sp *sp = NULL;
    int rc;
    azsim_app *a = app_id ? azsim_app_by_appid(c->st, app_id) : NULL;
    if (!a) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "The appId '%s' of the service principal does not reference a valid "
                         "application object.",
                         app_id ? app_id : "");
        goto done;
    }
    if (azsim_sp_by_app(c->st, app_id)) {
        rc = graph_error(c, 409, "Request_MultipleObjectsWithSameKeyValue",
                         "The service principal cannot be created, updated, or restored because "
                         "the service principal name %s is already in use.",
                         app_id);
        goto done;
    }
    sp = calloc(1, sizeof(*sp));
    if (!sp) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_guid(c->st, sp->id);
    memcpy(sp->app_id, a->app_id, sizeof(sp->app_id));
    sp->created = azsim_now(c->st);
    sp->display_name = strdup(a->display_name);
    if (!sp->display_name || azsim_vec_push(&c->st->sps, sp) != AZSIM_OK) {
        free(sp->display_name);
        free(sp);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_reply_json(c->r, 201,
                          with_context(c, sp_json(c->st, sp), "servicePrincipals/$entity"));
done:
    json_decref(body);
    return rc;
}

/* PATCH /servicePrincipals/{id}: displayName only. */
static int sp_patch(graph_ctx *c, azsim_sp *sp)
{
    json_t *body = azsim_body_json(c->r);
    json_t *dn = json_object_get(body, "displayName");
    char *name = NULL;
    int rc;
    if (!json_is_object(body) || (dn && !json_is_string(dn))) {
        rc = graph_error(c, 400, "Request_BadRequest",
                         "The request body is not a valid service principal update.");
    } else if (dn && !(name = strdup(json_string_value(dn)))) {
        rc = AZSIM_ENOMEM;
    } else {
        if (name) {
            free(sp->display_name);
            sp->display_name = name;
        }
        rc = azsim_reply_empty(c->r, 204);
    }
    json_decref(body);
    return rc;
}

/* the query value percent-encoded, for a nextLink */
static char *url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

/* $top (default 100, 1 to 999) and the offset carried by $skiptoken; AZSIM_EINVAL if invalid */
static int page_params(size_t *out_top, size_t *out_skip, graph_ctx *c)
{
    const char *top = azsim_query(c->r, "$top");
    const char *tok = azsim_query(c->r, "$skiptoken");
    char *end = NULL;
    *out_top = 100;
    *out_skip = 0;
    if (top) {
        long v = strtol(top, &end, 10);
        if (!*top || *end || v < 1 || v > 999)
            return AZSIM_EINVAL;
        *out_top = (size_t)v;
    }
    if (tok) {
        long v;
        if (strncmp(tok, "azsim", 5) != 0)
            return AZSIM_EINVAL;
        v = strtol(tok + 5, &end, 16);
        if (!tok[5] || *end || v < 0)
            return AZSIM_EINVAL;
        *out_skip = (size_t)v;
    }
    return AZSIM_OK;
}

/* the collections a list call reads, with the path of their nextLink and their context */
enum { LIST_APPS, LIST_SPS, LIST_DELETED_APPS };
static const struct {
    const char *path, *context;
} LISTS[] = {
    {"applications", "applications"},
    {"servicePrincipals", "servicePrincipals"},
    {"directory/deletedItems/microsoft.graph.application", "applications"},
};

/* Does the app pass "field eq want" (field and want from parse_filter; want NULL: no filter)? */
static int app_matches(const azsim_app *a, const char *field, const char *want)
{
    size_t i;
    json_t *t;
    if (!want)
        return 1;
    if (strcmp(field, "startswith") == 0)
        return strncasecmp(a->display_name, want, strlen(want)) == 0;
    if (strcmp(field, "displayName") == 0)
        return strcmp(a->display_name, want) == 0;
    if (strcmp(field, "tags") == 0) { /* Graph compares strings without case */
        json_array_foreach(a->tags, i, t)
        {
            if (azsim_streq_ci(json_string_value(t), want))
                return 1;
        }
        return 0;
    }
    return azsim_streq_ci(want, a->app_id);
}

/* the same for a service principal, whose only servicePrincipalNames entry is its appId */
static int sp_matches(const azsim_sp *sp, const char *field, const char *want)
{
    if (!want)
        return 1;
    if (strcmp(field, "startswith") == 0)
        return strncasecmp(sp->display_name, want, strlen(want)) == 0;
    if (strcmp(field, "displayName") == 0)
        return strcmp(sp->display_name, want) == 0;
    return azsim_streq_ci(want, sp->app_id);
}

static int list(graph_ctx *c, int kind)
{
    const char *filter = azsim_query(c->r, "$filter");
    const char *field = NULL;
    char *want = NULL;
    json_t *value;
    size_t top, skip, matched = 0;
    if (page_params(&top, &skip, c) != AZSIM_OK)
        return graph_error(c, 400, "Request_BadRequest",
                           "Invalid page size or skip token: $top must be between 1 and 999 "
                           "inclusive.");
    if (filter) {
        want = parse_filter(filter, &field);
        /* each lambda belongs to one kind: azsim's service principals carry no tags */
        if (want && strcmp(field, kind == LIST_SPS ? "tags" : "servicePrincipalNames") == 0) {
            free(want);
            want = NULL;
        }
        if (!want)
            return graph_error(c, 400, "Request_UnsupportedQuery",
                               "Unsupported or invalid query filter clause specified.");
    }
    value = json_array();
    azsim_vec *vec = kind == LIST_APPS  ? &c->st->apps
                     : kind == LIST_SPS ? &c->st->sps
                                        : &c->st->deleted_apps;
    for (size_t i = 0; i < vec->n; i++) {
        int sps = kind == LIST_SPS;
        if (sps ? !sp_matches(vec->items[i], field, want)
                : !app_matches(vec->items[i], field, want))
            continue;
        if (matched++ < skip || json_array_size(value) >= top)
            continue;
        json_array_append_new(value, sps ? sp_json(c->st, vec->items[i]) : app_json(vec->items[i]));
    }
    free(want);
    char *ctx = azsim_printf("%s/$metadata#%s", c->base, LISTS[kind].context);
    json_t *body = json_pack("{s:s,s:o}", "@odata.context", ctx ? ctx : "", "value", value);
    if (body && skip + top < matched) {
        /* more to come: the link repeats the query with the next offset */
        char *enc = filter ? url_encode(filter) : NULL;
        char *next =
            azsim_printf("%s/%s?$top=%zu&$skiptoken=azsim%zx%s%s", c->base, LISTS[kind].path, top,
                         skip + top, enc ? "&$filter=" : "", enc ? enc : "");
        if (next)
            json_object_set_new(body, "@odata.nextLink", json_string(next));
        free(next);
        free(enc);
    }
    int rc = azsim_reply_json(c->r, 200, body);
    free(ctx);
    return rc;
}

static int unknown_segment(graph_ctx *c, const char *seg)
{
    c->r->op = "graph.unknown";
    return graph_error(c, 400, "BadRequest", "Resource not found for the segment '%s'.", seg);
}

static int not_found(graph_ctx *c, const char *id)
{
    return graph_error(c, 404, "Request_ResourceNotFound",
                       "Resource '%s' does not exist or one of its queried reference-property "
                       "objects are not present.",
                       id);
}

/*
 * DELETE /applications/{id}: the app moves to the deleted items, stamped with the simulated
 * clock, and leaves every lookup of active apps (so its appId can no longer sign in); its
 * service principal is deleted for good, as before.
 */
static int app_delete(graph_ctx *c, azsim_app *a)
{
    azsim_state *st = c->st;
    /* first the one step that can fail, so that a failure changes nothing */
    if (azsim_vec_push(&st->deleted_apps, a) != AZSIM_OK)
        return AZSIM_ENOMEM;
    for (size_t i = 0; i < st->sps.n; i++) {
        azsim_sp *sp = st->sps.items[i];
        if (azsim_streq_ci(sp->app_id, a->app_id)) {
            azsim_vec_remove(&st->sps, i);
            free(sp->display_name);
            free(sp);
            break;
        }
    }
    for (size_t i = 0; i < st->apps.n; i++)
        if (st->apps.items[i] == a) {
            azsim_vec_remove(&st->apps, i);
            break;
        }
    if (st->bootstrap == a)
        st->bootstrap = NULL;
    a->deleted = azsim_now(st);
    return azsim_reply_empty(c->r, 204);
}

/*
 * POST /directory/deletedItems/{id}/restore: the app is an application again, with its id,
 * appId, credentials and tags (not its service principal: Entra restores only the object
 * named). Refused while an active app holds its uniqueName.
 */
static int app_restore(graph_ctx *c, azsim_app *a, size_t idx)
{
    azsim_state *st = c->st;
    if (a->unique_name && app_by_unique_name(st, a->unique_name))
        return graph_error(c, 400, "Request_BadRequest",
                           "Another object with the same value for property uniqueName already "
                           "exists.");
    if (azsim_vec_push(&st->apps, a) != AZSIM_OK)
        return AZSIM_ENOMEM;
    azsim_vec_remove(&st->deleted_apps, idx);
    a->deleted = 0;
    return azsim_reply_json(c->r, 200,
                            with_context(c, directory_object_json(a), "directoryObjects/$entity"));
}

/*
 * /v1.0/directory/deletedItems: the deleted applications. Graph names these segments without
 * regard to case (its own documentation writes both deletedItems and deleteditems).
 *   GET    deletedItems/microsoft.graph.application   list ($filter, $top, nextLink)
 *   GET    deletedItems/{id}                          get
 *   POST   deletedItems/{id}/restore                  restore
 *   DELETE deletedItems/{id}                          permanent delete
 * Other types (groups, users, service principals) are not modelled: azsim has no groups or
 * users, and deletes service principals for good.
 */
static int route_directory(graph_ctx *c, size_t n)
{
    azsim_req *r = c->r;
    char **s = r->segs;
    const char *m = r->method;
    if (n < 3 || strcasecmp(s[2], "deletedItems") != 0)
        return unknown_segment(c, n >= 3 ? s[2] : s[1]);
    if (n < 4 || n > 5)
        return unknown_segment(c, s[n - 1]);
    const char *id = s[3], *action = n == 5 ? s[4] : NULL;
    if (!action && strcasecmp(id, "microsoft.graph.application") == 0) {
        if (strcmp(m, "GET") != 0)
            return unknown_segment(c, id);
        r->op = "graph.deletedItems.list";
        return list(c, LIST_DELETED_APPS);
    }
    if (strncasecmp(id, "microsoft.graph.", 16) == 0) /* a cast to a type azsim does not model */
        return unknown_segment(c, id);
    if (!action && strcmp(m, "GET") == 0)
        r->op = "graph.deletedItems.get";
    else if (!action && strcmp(m, "DELETE") == 0)
        r->op = "graph.deletedItems.delete";
    else if (action && strcasecmp(action, "restore") == 0 && strcmp(m, "POST") == 0)
        r->op = "graph.deletedItems.restore";
    else
        return unknown_segment(c, action ? action : id);
    size_t i = 0;
    while (i < c->st->deleted_apps.n &&
           !azsim_streq_ci(((azsim_app *)c->st->deleted_apps.items[i])->id, id))
        i++;
    if (i == c->st->deleted_apps.n)
        return not_found(c, id);
    azsim_app *a = c->st->deleted_apps.items[i];
    if (action)
        return app_restore(c, a, i);
    if (strcmp(m, "GET") == 0)
        return azsim_reply_json(
            r, 200, with_context(c, directory_object_json(a), "directoryObjects/$entity"));
    azsim_vec_remove(&c->st->deleted_apps, i);
    azsim_app_free(a);
    return azsim_reply_empty(r, 204);
}

/* Drops the deleted applications whose 30 days have passed; see azsim.h. */
int64_t azsim_graph_sweep(azsim_state *st)
{
    int64_t now = azsim_now(st), next = INT64_MAX;
    for (size_t i = 0; i < st->deleted_apps.n;) {
        azsim_app *a = st->deleted_apps.items[i];
        int64_t due = a->deleted + AZSIM_APP_RETENTION;
        if (due <= now) {
            azsim_vec_remove(&st->deleted_apps, i);
            azsim_app_free(a);
            continue;
        }
        if (due < next)
            next = due;
        i++;
    }
    return next;
}

static int route(graph_ctx *c)
{
    azsim_req *r = c->r;
    char **s = r->segs;
    size_t n = r->nsegs;
    const char *m = r->method;
    int plain = 0;
    char *key = NULL;
    const char *prop = NULL;
    int rc = AZSIM_OK;

    while (n > 0 && s[n - 1][0] == '\0')
        n--;
    if (n < 2 || strcmp(s[0], "v1.0") != 0)
        goto unknown;
    if (strcasecmp(s[1], "directory") == 0) {
        rc = route_directory(c, n);
        goto done;
    }
    int apps = strncmp(s[1], "applications", 12) == 0;
    int sps = strncmp(s[1], "servicePrincipals", 17) == 0;
    if (!apps && !sps)
        goto unknown;
    key = key_segment(s[1], apps ? "applications" : "servicePrincipals", &prop, &plain);
    if (!key && !plain)
        goto unknown;
    if (plain && n == 2) {
        if (strcmp(m, "GET") == 0) {
            r->op = apps ? "graph.applications.list" : "graph.servicePrincipals.list";
            rc = list(c, apps ? LIST_APPS : LIST_SPS);
        } else if (strcmp(m, "POST") == 0) {
            r->op = apps ? "graph.applications.create" : "graph.servicePrincipals.create";
            rc = apps ? app_create(c, NULL) : sp_create(c, NULL);
        } else {
            goto unknown;
        }
        goto done;
    }
    const char *id = plain ? (n >= 3 ? s[2] : NULL) : key;
    size_t rest = plain ? 3 : 2; /* index of the first segment after the object */
    if (!id || n > rest + 1)
        goto unknown;
    const char *action = n == rest + 1 ? s[rest] : NULL;
    int upsert = !plain && !action && strcmp(m, "PATCH") == 0 && prefers_create(c);
    if (apps) {
        azsim_app *a = plain                            ? azsim_app_by_id(c->st, id)
                       : strcmp(prop, "uniqueName") == 0 ? app_by_unique_name(c->st, id)
                                                         : azsim_app_by_appid(c->st, id);
        r->op = "graph.applications.get";
        if (!a && upsert && strcmp(prop, "uniqueName") == 0) {
            r->op = "graph.applications.create";
            rc = app_create(c, id);
            goto done;
        }
        if (!a) {
            rc = not_found(c, id);
            goto done;
        }
        if (!action && strcmp(m, "GET") == 0) {
            rc = azsim_reply_json(r, 200, with_context(c, app_json(a), "applications/$entity"));
        } else if (!action && strcmp(m, "PATCH") == 0) {
            r->op = "graph.applications.update";
            rc = app_patch(c, a);
        } else if (!action && strcmp(m, "DELETE") == 0) {
            r->op = "graph.applications.delete";
            rc = app_delete(c, a);
        } else if (action && strcmp(action, "addPassword") == 0 && strcmp(m, "POST") == 0) {
            r->op = "graph.applications.addPassword";
            rc = add_password(c, a);
        } else if (action && strcmp(action, "removePassword") == 0 && strcmp(m, "POST") == 0) {
            r->op = "graph.applications.removePassword";
            rc = remove_password(c, a);
        } else {
            goto unknown;
        }
        goto done;
    }
    azsim_sp *sp = plain ? azsim_sp_by_id(c->st, id) : azsim_sp_by_app(c->st, id);
    r->op = "graph.servicePrincipals.get";
    if (!sp && upsert) {
        r->op = "graph.servicePrincipals.create";
        rc = sp_create(c, id);
        goto done;
    }
    if (!sp) {
        rc = not_found(c, id);
        goto done;
    }
    if (!action && strcmp(m, "GET") == 0) {
        rc = azsim_reply_json(r, 200,
                              with_context(c, sp_json(c->st, sp), "servicePrincipals/$entity"));
    } else if (!action && strcmp(m, "PATCH") == 0) {
        r->op = "graph.servicePrincipals.update";
        rc = sp_patch(c, sp);
    } else if (!action && strcmp(m, "DELETE") == 0) {
        r->op = "graph.servicePrincipals.delete";
        for (size_t i = 0; i < c->st->sps.n; i++)
            if (c->st->sps.items[i] == sp) {
                azsim_vec_remove(&c->st->sps, i);
                break;
            }
        free(sp->display_name);
        free(sp);
        rc = azsim_reply_empty(r, 204);
    } else {
        goto unknown;
    }
    goto done;
unknown:
    rc = unknown_segment(c, n >= 2 ? s[1] : r->path);
done:
    free(key);
    return rc;
}

int azsim_graph_handle(azsim_req *r)
{
    graph_ctx c;
    const char *why = NULL;
    int rc;
    char *aud = NULL;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.st = r->st;
    r->op = "graph.request";
    c.base = azsim_printf("https://graph.localhost:%d/v1.0", r->st->port);
    aud = azsim_resource(r->st, "graph.localhost");
    if (!c.base || !aud) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (azsim_auth_bearer(&c.caller, r, aud, &why) != AZSIM_OK) {
        r->op = "graph.challenge";
        rc = graph_error(&c, 401, "InvalidAuthenticationToken",
                         strcmp(why, "missing") == 0 ? "Access token is empty."
                         : strcmp(why, "expired") == 0
                             ? "Lifetime validation failed, the token is expired."
                             : "Access token validation failure. Invalid audience or signature.");
        goto done;
    }
    rc = route(&c);
done:
    free(c.base);
    free(aud);
    return rc;
}
