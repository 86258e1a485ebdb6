/*
 * azsim_login.c - login.localhost, the simulated Entra ID v2.0 endpoint. It issues
 * client-credentials access tokens (client secret in the form body or by HTTP Basic) as RS256 JWTs
 * that every other simulated service verifies, publishes the OpenID configuration and the JWKS so
 * clients can verify them too, and answers failures with Entra's error body (error,
 * error_description with the AADSTS number, error_codes, timestamp, trace_id, correlation_id) and
 * status codes. The same directory also answers at AD FS's paths (/adfs/...): MSAL, and so the
 * Azure CLI, reaches a custom cloud's authority without Microsoft's instance discovery only in
 * AD FS form, so that is how the CLI signs in to azsim. Those tokens are the tenant's own.
 */
#include "azsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#define TOKEN_LIFETIME 3599

static int entra_error(azsim_req *r, unsigned status, const char *error, long code, const char *fmt,
                       const char *arg1, const char *arg2)
{
    char trace[AZSIM_GUID_LEN + 1], corr[AZSIM_GUID_LEN + 1], stamp[32];
    char msg[768], desc[1024], uri[96];
    int64_t now = azsim_now(r->st);
    time_t tt = (time_t)now;
    struct tm tm;

    azsim_guid(r->st, trace);
    azsim_guid(r->st, corr);
    gmtime_r(&tt, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%SZ", &tm);
    snprintf(uri, sizeof(uri), "https://login.localhost:%d/error?code=%ld", r->st->port, code);
    /* fmt is one of this file's literals with up to two %s */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(msg, sizeof(msg), fmt, arg1 ? arg1 : "", arg2 ? arg2 : "");
#pragma GCC diagnostic pop
    snprintf(desc, sizeof(desc), "AADSTS%ld: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
             code, msg, trace, corr, stamp);
    return azsim_reply_json(r, status,
                            json_pack("{s:s,s:s,s:[I],s:s,s:s,s:s,s:s}", "error", error,
                                      "error_description", desc, "error_codes", (json_int_t)code,
                                      "timestamp", stamp, "trace_id", trace, "correlation_id", corr,
                                      "error_uri", uri));
}

/* Splits "https://host:port[/]/.default" into the resource URI (without trailing slashes). */
static char *scope_resource(const char *scope, char **aud)
{
    size_t n = strlen(scope);
    static const char suffix[] = "/.default";
    size_t sl = sizeof(suffix) - 1;
    *aud = NULL;
    if (n <= sl || strcmp(scope + n - sl, suffix) != 0)
        return NULL;
    *aud = strndup(scope, n - sl);
    n -= sl;
    while (n > 0 && scope[n - 1] == '/')
        n--;
    return strndup(scope, n);
}

/* Azure Storage's resource. Real Entra issues tokens for it as v1 tokens (Storage's app accepts
   v1), whose issuer is https://sts.windows.net/{tenant}/: Azurite's --oauth basic checks exactly
   that issuer prefix and this audience (it does not check the signature). */
#define STORAGE_RESOURCE "https://storage.azure.com"

static int known_resource(azsim_state *st, const char *resource)
{
    static const char *const hosts[] = {"vault.localhost", "management.localhost",
                                        "graph.localhost", "profiles.localhost"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char *u = azsim_resource(st, hosts[i]);
        int eq = u && azsim_streq_ci(u, resource);
        free(u);
        if (eq)
            return 1;
    }
    /* Azure Storage, for the azureblob lock's tests against Azurite (tests/lease): its real
       resource, since the storage account is Azurite's and not azsim's */
    return azsim_streq_ci(resource, STORAGE_RESOURCE);
}

#define JWT_BEARER "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/*
 * Checks a client assertion (RFC 7523) against the app's certificate credentials: the header's
 * x5t#S256 (PS256, current docs) or x5t (RS256, older docs) names the certificate; aud must be
 * this token endpoint; iss and sub the client id. 0, or AZSIM_EINVAL with the error reply sent.
 */
static int check_assertion(azsim_req *r, azsim_app *app, const char *assertion, int64_t now,
                           int adfs)
{
    azsim_state *st = r->st;
    json_t *hdr = NULL, *claims = NULL;
    unsigned char *thumb = NULL;
    size_t tlen = 0;
    char *aud = NULL;
    int rc = AZSIM_EINVAL;
    azsim_keycred *kc = NULL;

    if (azsim_jwt_decode(&hdr, &claims, assertion) != AZSIM_OK) {
        entra_error(r, 400, "invalid_request", 50027, "JWT token is invalid or is malformed.", NULL,
                    NULL);
        goto done;
    }
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *x5t256 = json_string_value(json_object_get(hdr, "x5t#S256"));
    const char *x5t = json_string_value(json_object_get(hdr, "x5t"));
    const char *want = x5t256 ? x5t256 : x5t;
    if (want && azsim_b64url_decode(&thumb, &tlen, want) == AZSIM_OK) {
        for (size_t i = 0; i < app->keys.n && !kc; i++) {
            azsim_keycred *k = app->keys.items[i];
            if ((x5t256 && tlen == 32 && memcmp(thumb, k->sha256, 32) == 0) ||
                (!x5t256 && tlen == 20 && memcmp(thumb, k->sha1, 20) == 0))
                kc = k;
        }
    }
    if (!kc) {
        entra_error(r, 401, "invalid_client", 700027,
                    "The certificate with identifier used to sign the client assertion is not "
                    "registered on application. [Reason - The key was not found., Please visit "
                    "the Azure Portal, Graph Explorer or directly use MS Graph to see configured "
                    "keys for app Id '%s'.]",
                    app->app_id, NULL);
        goto done;
    }
    if (!alg || azsim_jwt_check_sig(assertion, kc->pub, alg) != AZSIM_OK) {
        entra_error(r, 401, "invalid_client", 700027,
                    "Client assertion failed signature validation.", NULL, NULL);
        goto done;
    }
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *caud = json_string_value(json_object_get(claims, "aud"));
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if (!iss || !sub || !azsim_streq_ci(iss, app->app_id) || !azsim_streq_ci(sub, app->app_id)) {
        entra_error(r, 401, "invalid_client", 700021,
                    "Client assertion application identifier doesn't match 'client_id' "
                    "parameter. Review the documentation at "
                    "https://docs.microsoft.com/en-us/azure/active-directory/develop/"
                    "active-directory-certificate-credentials .",
                    NULL, NULL);
        goto done;
    }
    aud = adfs ? azsim_printf("https://login.localhost:%d/adfs/oauth2/token/", st->port)
               : azsim_printf("https://login.localhost:%d/%s/oauth2/v2.0/token", st->port,
                              st->tenant);
    if (!aud || !caud || strcmp(caud, aud) != 0) {
        entra_error(r, 401, "invalid_client", 700027,
                    "Client assertion contains an invalid audience claim; expected '%s'.", aud,
                    NULL);
        goto done;
    }
    if (!json_is_integer(exp) || json_integer_value(exp) <= now ||
        (json_is_integer(nbf) && json_integer_value(nbf) > now + 300)) {
        entra_error(r, 401, "invalid_client", 700024,
                    "Client assertion is not within its valid time range.", NULL, NULL);
        goto done;
    }
    if (now < kc->start || now >= kc->end) {
        entra_error(r, 401, "invalid_client", 700027,
                    "The certificate used to sign the client assertion of app '%s' is expired "
                    "or not yet valid.",
                    app->app_id, NULL);
        goto done;
    }
    rc = AZSIM_OK;
done:
    free(thumb);
    free(aud);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* The token endpoint; tenant is the path's, or NULL at AD FS's (which names none). */
static int token(azsim_req *r, const char *tenant)
{
    azsim_state *st = r->st;
    int rc = AZSIM_OK;
    char *grant = NULL, *client_id = NULL, *secret = NULL, *scope = NULL, *assertion = NULL;
    char *basic_id = NULL, *basic_secret = NULL, *resource = NULL, *aud = NULL, *iss = NULL;
    char *jwt = NULL, *sep = NULL;
    unsigned char *basic = NULL;
    size_t basic_len = 0;
    json_t *claims = NULL;

    r->op = tenant ? "login.token" : "login.adfs.token";
    if (strcmp(r->method, "POST") != 0) {
        rc = entra_error(r, 400, "invalid_request", 900561,
                         "The endpoint only accepts POST requests. Received a %s request.",
                         r->method, NULL);
        goto done;
    }
    if (tenant && strcmp(tenant, st->tenant) != 0) {
        rc = entra_error(r, 400, "invalid_tenant", 90002,
                         "Tenant '%s' not found. Check to make sure you have the correct tenant "
                         "ID and are signing into the correct cloud.",
                         tenant, NULL);
        goto done;
    }
    const char *body = r->body ? r->body : "";
    grant = azsim_form_get(body, r->body_len, "grant_type");
    client_id = azsim_form_get(body, r->body_len, "client_id");
    secret = azsim_form_get(body, r->body_len, "client_secret");
    scope = azsim_form_get(body, r->body_len, "scope");
    assertion = azsim_form_get(body, r->body_len, "client_assertion");
    const char *auth = azsim_header(r, "Authorization");
    if (auth && strncasecmp(auth, "Basic ", 6) == 0 &&
        azsim_b64url_decode(&basic, &basic_len, auth + 6) == AZSIM_OK) {
        char *plain = azsim_strndup_bytes((const char *)basic, basic_len);
        if (plain && (sep = strchr(plain, ':')) != NULL) {
            *sep = '\0';
            /* RFC 6749 2.3.1: both halves are form-urlencoded */
            char *tmp = azsim_printf("a=%s&b=%s", plain, sep + 1);
            if (tmp) {
                basic_id = azsim_form_get(tmp, strlen(tmp), "a");
                basic_secret = azsim_form_get(tmp, strlen(tmp), "b");
                azsim_secret_free(tmp);
            }
        }
        if (plain) {
            OPENSSL_cleanse(plain, basic_len);
            free(plain);
        }
    }
    if (!client_id && basic_id) {
        client_id = basic_id;
        basic_id = NULL;
    }
    if (!secret && basic_secret) {
        secret = basic_secret;
        basic_secret = NULL;
    }
    if (!grant || !*grant) {
        rc = entra_error(r, 400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'grant_type'.",
                         NULL, NULL);
        goto done;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        rc = entra_error(r, 400, "unsupported_grant_type", 70003,
                         "The app requested an unsupported grant type '%s'.", grant, NULL);
        goto done;
    }
    if (!client_id || !*client_id) {
        rc = entra_error(r, 400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'client_id'.",
                         NULL, NULL);
        goto done;
    }
    if (!scope || !*scope) {
        rc =
            entra_error(r, 400, "invalid_scope", 70011,
                        "The provided request must include a 'scope' input parameter.", NULL, NULL);
        goto done;
    }
    if (strchr(scope, ' ')) {
        rc = entra_error(r, 400, "invalid_scope", 28000,
                         "Provided value for the input parameter scope '%s' is not valid because "
                         "it contains more than one resource. Scope %s is not valid.",
                         scope, scope);
        goto done;
    }
    resource = scope_resource(scope, &aud);
    if (!resource) {
        rc = entra_error(r, 400, "invalid_scope", 70011,
                         "The provided request must include a 'scope' input parameter. The "
                         "provided value for the input parameter 'scope' is not valid. The scope "
                         "%s is not valid. The scope format is invalid. Scope must be in a valid "
                         "URI form <https://example/scope> or a valid Guid <guid/scope>.",
                         scope, NULL);
        goto done;
    }
    azsim_app *app = azsim_app_by_appid(st, client_id);
    if (!app) {
        rc = entra_error(r, 400, "unauthorized_client", 700016,
                         "Application with identifier '%s' was not found in the directory '%s'. "
                         "This can happen if the application has not been installed by the "
                         "administrator of the tenant or consented to by any user in the tenant. "
                         "You may have sent your authentication request to the wrong tenant.",
                         client_id, st->tenant);
        goto done;
    }
    int64_t now = azsim_now(st);
    if (assertion) {
        char *atype = azsim_form_get(body, r->body_len, "client_assertion_type");
        int type_ok = atype && strcmp(atype, JWT_BEARER) == 0;
        free(atype);
        if (!type_ok) {
            rc = entra_error(r, 400, "invalid_request", 900144,
                             "The request body must contain the following parameter: "
                             "'client_assertion_type' with the value '%s'.",
                             JWT_BEARER, NULL);
            goto done;
        }
        if (check_assertion(r, app, assertion, now, !tenant) != AZSIM_OK)
            goto done; /* the error reply was sent */
    } else if (!secret) {
        rc = entra_error(r, 401, "invalid_client", 7000218,
                         "The request body must contain the following parameter: "
                         "'client_assertion' or 'client_secret'.",
                         NULL, NULL);
        goto done;
    }
    int matched = 0, valid = 0;
    for (size_t i = 0; !assertion && i < app->passwords.n; i++) {
        azsim_password *pw = app->passwords.items[i];
        size_t sl = strlen(pw->secret);
        if (sl == strlen(secret) && CRYPTO_memcmp(pw->secret, secret, sl) == 0) {
            matched = 1;
            if (now >= pw->start && now < pw->end)
                valid = 1;
        }
    }
    if (!assertion && !matched) {
        rc = entra_error(r, 401, "invalid_client", 7000215,
                         "Invalid client secret provided. Ensure the secret being sent in the "
                         "request is the client secret value, not the client secret ID, for a "
                         "secret added to app '%s'.",
                         app->app_id, NULL);
        goto done;
    }
    if (!assertion && !valid) {
        rc = entra_error(r, 401, "invalid_client", 7000222,
                         "The provided client secret keys for app '%s' are expired. Visit the "
                         "Azure portal to create new keys for your app: "
                         "https://aka.ms/NewClientSecret, or consider using certificate "
                         "credentials for added security: https://aka.ms/certCreds.",
                         app->app_id, NULL);
        goto done;
    }
    azsim_sp *sp = azsim_sp_by_app(st, app->app_id);
    if (!sp) {
        rc = entra_error(
            r, 400, "invalid_client", 7000229,
            "The client application %s is missing service principal in the tenant "
            "%s. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
            app->app_id, st->tenant);
        goto done;
    }
    if (!known_resource(st, resource)) {
        rc = entra_error(r, 400, "invalid_resource", 500011,
                         "The resource principal named %s was not found in the tenant named %s. "
                         "This can happen if the application has not been installed by the "
                         "administrator of the tenant or consented to by any user in the tenant. "
                         "You might have sent your authentication request to the wrong tenant.",
                         resource, st->tenant);
        goto done;
    }
    if (azsim_streq_ci(resource, STORAGE_RESOURCE)) {
        iss = azsim_printf("https://sts.windows.net/%s/", st->tenant);
        now = (int64_t)time(NULL); /* Azurite checks nbf/exp on the real clock, not azsim's */
    } else
        iss = azsim_printf("https://login.localhost:%d/%s/v2.0", st->port, st->tenant);
    char uti[AZSIM_GUID_LEN + 1];
    azsim_guid(st, uti);
    claims = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "aud", aud,
                       "iss", iss ? iss : "", "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
                       (json_int_t)(now + TOKEN_LIFETIME), "tid", st->tenant, "oid", sp->id, "sub",
                       sp->id, "appid", app->app_id, "azp", app->app_id, "appidacr", "1", "idtyp",
                       "app", "uti", uti, "ver", "1.0");
    jwt = claims && iss ? azsim_jwt_sign(st, claims) : NULL;
    if (!jwt) {
        rc = AZSIM_ERR;
        goto done;
    }
    rc = azsim_reply_json(r, 200,
                          json_pack("{s:s,s:i,s:i,s:s}", "token_type", "Bearer", "expires_in",
                                    TOKEN_LIFETIME, "ext_expires_in", TOKEN_LIFETIME,
                                    "access_token", jwt));
done:
    free(grant);
    free(client_id);
    azsim_secret_free(secret);
    free(scope);
    free(assertion);
    free(basic_id);
    azsim_secret_free(basic_secret);
    if (basic) {
        OPENSSL_cleanse(basic, basic_len);
        free(basic);
    }
    free(resource);
    free(aud);
    free(iss);
    free(jwt);
    json_decref(claims);
    return rc;
}

static int openid_config(azsim_req *r, const char *tenant)
{
    azsim_state *st = r->st;
    char *base = azsim_base_url(r, "login.localhost");
    int rc = AZSIM_ENOMEM;
    char *iss = NULL, *tok = NULL, *jwks = NULL, *authz = NULL;

    r->op = "login.openid-configuration";
    if (!base)
        return rc;
    iss = azsim_printf("%s/%s/v2.0", base, st->tenant);
    tok = azsim_printf("%s/%s/oauth2/v2.0/token", base, st->tenant);
    jwks = azsim_printf("%s/%s/discovery/v2.0/keys", base, st->tenant);
    authz = azsim_printf("%s/%s/oauth2/v2.0/authorize", base, st->tenant);
    if (!iss || !tok || !jwks || !authz)
        goto done;
    (void)tenant;
    rc = azsim_reply_json(r, 200,
                          json_pack("{s:s,s:s,s:s,s:s,s:[s],s:[s],s:[s],s:[s,s],s:s,s:s}", "issuer",
                                    iss, "token_endpoint", tok, "jwks_uri", jwks,
                                    "authorization_endpoint", authz, "response_types_supported",
                                    "token", "subject_types_supported", "pairwise",
                                    "id_token_signing_alg_values_supported", "RS256",
                                    "token_endpoint_auth_methods_supported", "client_secret_post",
                                    "client_secret_basic", "tenant_region_scope", "EU",
                                    "cloud_instance_name", "localhost"));
done:
    free(base);
    free(iss);
    free(tok);
    free(jwks);
    free(authz);
    return rc;
}

/*
 * AD FS's discovery document (AD FS 2016 and later: endpoints under /adfs/ with a trailing
 * slash, access_token_issuer beside issuer). Only what azsim does is announced: the client
 * credentials grant with a secret or a signed assertion. access_token_issuer names the issuer
 * its access tokens really carry, the tenant's.
 */
static int adfs_config(azsim_req *r)
{
    azsim_state *st = r->st;
    char *base = azsim_base_url(r, "login.localhost");
    int rc = AZSIM_ENOMEM;
    char *iss = NULL, *tok = NULL, *keys = NULL, *authz = NULL, *at_iss = NULL;

    r->op = "login.adfs.openid-configuration";
    if (!base)
        return rc;
    iss = azsim_printf("%s/adfs", base);
    tok = azsim_printf("%s/adfs/oauth2/token/", base);
    keys = azsim_printf("%s/adfs/discovery/keys", base);
    authz = azsim_printf("%s/adfs/oauth2/authorize/", base);
    at_iss = azsim_printf("%s/%s/v2.0", base, st->tenant);
    if (!iss || !tok || !keys || !authz || !at_iss)
        goto done;
    rc = azsim_reply_json(
        r, 200,
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:[s,s,s],s:[s],s:[s],s:[s],s:[s],s:[s],s:[s]}", "issuer",
                  iss, "authorization_endpoint", authz, "token_endpoint", tok, "jwks_uri", keys,
                  "access_token_issuer", at_iss, "token_endpoint_auth_methods_supported",
                  "client_secret_post", "client_secret_basic", "private_key_jwt",
                  "grant_types_supported", "client_credentials", "response_types_supported",
                  "token", "response_modes_supported", "form_post", "subject_types_supported",
                  "pairwise", "id_token_signing_alg_values_supported", "RS256",
                  "token_endpoint_auth_signing_alg_values_supported", "RS256"));
done:
    free(base);
    free(iss);
    free(tok);
    free(keys);
    free(authz);
    free(at_iss);
    return rc;
}

static int jwks(azsim_req *r)
{
    json_t *key = azsim_jwk_public(r->st->sign_key, r->st->sign_kid);
    r->op = "login.jwks";
    if (!key)
        return AZSIM_ERR;
    json_object_set_new(key, "use", json_string("sig"));
    json_object_set_new(key, "alg", json_string("RS256"));
    return azsim_reply_json(r, 200, json_pack("{s:[o]}", "keys", key));
}

int azsim_login_handle(azsim_req *r)
{
    azsim_state *st = r->st;
    char **s = r->segs;
    size_t n = r->nsegs;

    if (n >= 1 && strcmp(s[0], "adfs") == 0) {      /* AD FS, as a custom cloud's authority */
        size_t m = n > 1 && !*s[n - 1] ? n - 1 : n; /* AD FS's URLs end in a slash */
        if (m == 3 && strcmp(s[1], "oauth2") == 0 && strcmp(s[2], "token") == 0)
            return token(r, NULL);
        if (m == 3 && strcmp(s[1], ".well-known") == 0 && strcmp(s[2], "openid-configuration") == 0)
            return adfs_config(r);
        if (m == 3 && strcmp(s[1], "discovery") == 0 && strcmp(s[2], "keys") == 0)
            return jwks(r);
    }
    if (n == 4 && strcmp(s[1], "oauth2") == 0 && strcmp(s[2], "v2.0") == 0 &&
        strcmp(s[3], "token") == 0)
        return token(r, s[0]);
    if (n == 4 && strcmp(s[1], "v2.0") == 0 && strcmp(s[2], ".well-known") == 0 &&
        strcmp(s[3], "openid-configuration") == 0) {
        if (strcmp(s[0], st->tenant) != 0 && strcmp(s[0], "common") != 0 &&
            strcmp(s[0], "organizations") != 0) {
            r->op = "login.openid-configuration";
            return entra_error(r, 400, "invalid_tenant", 90002,
                               "Tenant '%s' not found. Check to make sure you have the correct "
                               "tenant ID and are signing into the correct cloud.",
                               s[0], NULL);
        }
        return openid_config(r, s[0]);
    }
    if (n == 4 && strcmp(s[1], "discovery") == 0 && strcmp(s[2], "v2.0") == 0 &&
        strcmp(s[3], "keys") == 0)
        return jwks(r);
    r->op = "login.unknown";
    return entra_error(r, 404, "invalid_request", 90011,
                       "The request is not recognised by the simulated token service: '%s'.",
                       r->path, NULL);
}
