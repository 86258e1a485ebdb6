/*
 * Credentials and tokens. One kvr_auth picks its credential the way the Azure SDK's environment
 * credential does (secret, certificate, federated token file, else managed identity), so the same
 * binary works on a laptop, in CI with OIDC, in Kubernetes with workload identity and on a VM.
 * Tokens are cached in memory per (tenant, scope) and renewed a few minutes before they expire;
 * they are never written anywhere and are wiped when dropped. Key Vault requests go through the
 * SDKs' challenge dance (first request without token, tenant and audience taken from the 401's
 * WWW-Authenticate after checking them against the vault host), cached per vault host.
 */
#include "azinternal.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#define DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define IMDS_TOKEN_URL "http://169.254.169.254/metadata/identity/oauth2/token"
#define TOKEN_BODY_MAX (1024 * 1024)
#define REFRESH_MARGIN 300

typedef struct cached_token {
    char *tenant;
    char *scope;
    char *token;
    time_t refresh_at; /* monotonic seconds */
} cached_token;

typedef struct vault_challenge {
    char host[264];
    kvr_auth_challenge c;
} vault_challenge;

struct kvr_auth {
    kvr_http *http;
    kvr_auth_kind kind;
    char *tenant;
    char *client_id;
    char *client_secret;
    char *certificate_path;
    char *federated_token_file;
    char *authority;
    char *additional_tenants;
    cached_token *tokens;
    size_t ntokens;
    size_t captokens;
    vault_challenge *challenges;
    size_t nchallenges;
    size_t capchallenges;
    kvr_index challenge_ix; /* challenges by host: a 2,000-vault plan looks one up 680,000 times */
    bool imds_seen; /* IMDS has answered once: from now on, retry it patiently */
    /* the identity platform's refusals met by kvr_auth_prefetch, told (once) when the token is
       used instead of asking again: a wrong secret makes one failed sign-in per scope, not two */
    struct {
        char *scope;
        kvr_error err;
    } refused[8];
    size_t nrefused;
};

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void kvr_auth_config_from_env(kvr_auth_config *out)
{
    memset(out, 0, sizeof(*out));
    out->tenant_id = env("AZURE_TENANT_ID");
    out->client_id = env("AZURE_CLIENT_ID");
    out->client_secret = env("AZURE_CLIENT_SECRET");
    out->certificate_path = env("AZURE_CLIENT_CERTIFICATE_PATH");
    out->federated_token_file = env("AZURE_FEDERATED_TOKEN_FILE");
    out->authority_host = env("AZURE_AUTHORITY_HOST");
    out->additional_tenants = env("AZURE_ADDITIONALLY_ALLOWED_TENANTS");
}

static int dup_opt(char **out, const char *s)
{
    *out = NULL;
    if (!s)
        return 0;
    return (*out = strdup(s)) ? 0 : KVR_ENOMEM;
}

kvr_auth_kind kvr_auth_kind_of(const kvr_auth *a)
{
    return a->kind;
}

static void drop_token(cached_token *t)
{
    free(t->tenant);
    free(t->scope);
    kvr_azure_secret_free(t->token);
    memset(t, 0, sizeof(*t));
}

void kvr_auth_free(kvr_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->ntokens; i++)
        drop_token(&a->tokens[i]);
    free(a->tokens);
    for (size_t i = 0; i < a->nrefused; i++)
        free(a->refused[i].scope);
    free(a->challenges);
    kvr_index_release(&a->challenge_ix);
    free(a->tenant);
    free(a->client_id);
    kvr_azure_secret_free(a->client_secret);
    free(a->certificate_path);
    free(a->federated_token_file);
    free(a->authority);
    free(a->additional_tenants);
    free(a);
}

int kvr_auth_new(kvr_auth **out, kvr_http *http, const kvr_auth_config *cfg, kvr_error *err)
{
    kvr_auth *a = NULL;
    char *file = NULL, *assertion = NULL;
    size_t file_len = 0;
    kvr_url_info info;
    int rc = 0;

    *out = NULL;
    if (!(a = calloc(1, sizeof(*a)))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    a->http = http;
    const char *authority = cfg->authority_host ? cfg->authority_host : DEFAULT_AUTHORITY;
    if (kvr_http_url_info(&info, authority, NULL) < 0 || strcmp(info.scheme, "https") != 0) {
        rc =
            kvr_error_set(err, KVR_EINSECURE, "authority host '%s' is not an https url", authority);
        goto done;
    }
    if ((rc = dup_opt(&a->authority, authority)) < 0 ||
        (rc = dup_opt(&a->tenant, cfg->tenant_id)) < 0 ||
        (rc = dup_opt(&a->client_id, cfg->client_id)) < 0 ||
        (rc = dup_opt(&a->additional_tenants, cfg->additional_tenants)) < 0) {
        kvr_error_set(err, rc, "out of memory");
        goto done;
    }
    size_t al = strlen(a->authority);
    while (al > 0 && a->authority[al - 1] == '/')
        a->authority[--al] = '\0';

    bool any = cfg->client_secret || cfg->certificate_path || cfg->federated_token_file;
    if (any && (!cfg->tenant_id || !cfg->client_id)) {
        rc = kvr_error_set(err, KVR_EAUTH,
                           "a client credential is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is "
                           "missing");
        goto done;
    }
    if (cfg->client_secret) {
        a->kind = KVR_AUTH_SECRET;
        if ((rc = dup_opt(&a->client_secret, cfg->client_secret)) < 0) {
            kvr_error_set(err, rc, "out of memory");
            goto done;
        }
    } else if (cfg->certificate_path) {
        a->kind = KVR_AUTH_CERTIFICATE;
        if ((rc = kvr_auth_read_private_file(&file, &file_len, cfg->certificate_path, err)) < 0)
            goto done;
        /* load and sign once now, so that a broken certificate is reported at start-up */
        if ((rc = kvr_auth_assertion(&assertion, file, file_len, a->authority, a->tenant,
                                     a->client_id, time(NULL), err)) < 0)
            goto done;
        if ((rc = dup_opt(&a->certificate_path, cfg->certificate_path)) < 0) {
            kvr_error_set(err, rc, "out of memory");
            goto done;
        }
    } else if (cfg->federated_token_file) {
        a->kind = KVR_AUTH_FEDERATED;
        if ((rc = kvr_auth_read_private_file(&file, &file_len, cfg->federated_token_file, err)) < 0)
            goto done;
        if ((rc = dup_opt(&a->federated_token_file, cfg->federated_token_file)) < 0) {
            kvr_error_set(err, rc, "out of memory");
            goto done;
        }
    } else {
        a->kind = KVR_AUTH_MANAGED;
    }
    *out = a;
    a = NULL;
done:
    kvr_azure_secret_free(file);
    kvr_azure_secret_free(assertion);
    kvr_auth_free(a);
    return rc;
}

/* ---- token responses ----------------------------------------------------------------------------
 */

/* A number, or a string of digits (IMDS sends every field as a string). -1 when neither. */
static long long num_field(const json_t *v)
{
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        long long n = 0;
        if (!*s || strlen(s) > 15)
            return -1;
        for (; *s; s++) {
            if (*s < '0' || *s > '9')
                return -1;
            n = n * 10 + (*s - '0');
        }
        return n;
    }
    return -1;
}

int kvr_auth_parse_token(char **out_token, time_t *out_expires, const char *body, size_t len,
                         bool imds, time_t now, kvr_error *err)
{
    json_t *root = NULL;
    int rc = 0;

    *out_token = NULL;
    *out_expires = 0;
    if (len > TOKEN_BODY_MAX) {
        rc = kvr_error_set(err, KVR_ETOOBIG,
                           "token response is too large (%zu bytes; the limit is %d MiB)", len,
                           TOKEN_BODY_MAX >> 20);
        goto done;
    }
    if (body && len > 0)
        root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        rc = kvr_error_set(err, KVR_EPROTO, "token response is not a json object");
        goto done;
    }
    const json_t *tok = json_object_get(root, "access_token");
    const char *t = json_is_string(tok) ? json_string_value(tok) : NULL;
    bool ok = t && *t;
    for (const char *p = t; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
    if (!ok) {
        rc = kvr_error_set(err, KVR_EPROTO, "token response has no usable access_token");
        goto done;
    }
    const json_t *tt = json_object_get(root, "token_type");
    if (tt && (!json_is_string(tt) || !kvr_str_ieq(json_string_value(tt), "Bearer"))) {
        rc = kvr_error_set(err, KVR_EPROTO, "token response is not for a bearer token");
        goto done;
    }
    long long in = num_field(json_object_get(root, "expires_in"));
    if (in <= 0 && imds) {
        long long on = num_field(json_object_get(root, "expires_on"));
        if (on > 0)
            in = on - (long long)time(NULL);
    }
    if (in <= 0 || in > 366LL * 86400) {
        rc = kvr_error_set(err, KVR_EPROTO, "token response has no valid expiry");
        goto done;
    }
    if (!(*out_token = strdup(t))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    *out_expires = now + (time_t)in;
done:
    if (root) {
        /* the parsed copy of the token lives in jansson's memory: wipe it before it is freed */
        json_t *tok2 = json_object_get(root, "access_token");
        if (json_is_string(tok2))
            OPENSSL_cleanse((char *)json_string_value(tok2), json_string_length(tok2));
    }
    json_decref(root);
    return rc;
}

/* ---- acquisition --------------------------------------------------------------------------------
 */

/* A GUID or a domain: nothing that could change the token endpoint's path. */
static bool tenant_name_ok(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++)
        if (!((t[n] >= 'a' && t[n] <= 'z') || (t[n] >= 'A' && t[n] <= 'Z') ||
              (t[n] >= '0' && t[n] <= '9') || t[n] == '-' || t[n] == '.' || t[n] == '_'))
            return false;
    return n > 0 && n < 128 && strcmp(t, ".") != 0 && strcmp(t, "..") != 0;
}

static bool tenant_allowed(const kvr_auth *a, const char *tenant)
{
    if (a->kind == KVR_AUTH_MANAGED || !a->tenant || kvr_str_ieq(tenant, a->tenant))
        return true;
    const char *p = a->additional_tenants;
    size_t tl = strlen(tenant);
    while (p && *p) {
        while (*p == ' ' || *p == ';' || *p == ',')
            p++;
        size_t n = 0;
        while (p[n] && p[n] != ';' && p[n] != ',' && p[n] != ' ')
            n++;
        if ((n == 1 && p[0] == '*') || (n == tl && strncasecmp(p, tenant, n) == 0))
            return true;
        p += n;
    }
    return false;
}

static int token_error(kvr_error *err, const kvr_http_response *r, bool managed, const char *scope)
{
    int rc =
        kvr_http_error(err, r, managed ? "get managed identity token for" : "get token for", scope);
    if (r->status >= 400 && r->status < 500 && r->status != 429) {
        rc = KVR_EAUTH;
        if (err)
            err->code = rc;
    }
    return rc;
}

/* A token request: the request and what it points into (freed, the secrets wiped, by
   token_req_release). */
typedef struct token_req {
    kvr_http_request req;
    char *form, *assertion, *file, *url, *query;
} token_req;

static void token_req_release(token_req *t)
{
    kvr_azure_secret_free(t->form);
    kvr_azure_secret_free(t->assertion);
    kvr_azure_secret_free(t->file);
    free(t->url);
    free(t->query);
    memset(t, 0, sizeof(*t));
}

/* The request for a token of `scope` from `tenant`, by the credential's kind. */
static int token_req_build(token_req *t, kvr_auth *a, const char *tenant, const char *scope,
                           kvr_error *err)
{
    kvr_http_request *req = &t->req;
    size_t file_len = 0;
    int rc = 0;

    memset(t, 0, sizeof(*t));
    if (a->kind == KVR_AUTH_MANAGED) {
        static const char *const md[] = {"Metadata: true", NULL};
        size_t sl = strlen(scope);
        char resource[512];
        if (sl >= sizeof(resource))
            return kvr_error_set(err, KVR_EINVAL, "scope too long");
        memcpy(resource, scope, sl + 1);
        if (kvr_str_has_suffix(resource, "/.default"))
            resource[sl - strlen("/.default")] = '\0';
        const char *pairs[] = {
            "api-version", "2018-02-01", "resource", resource, a->client_id ? "client_id" : NULL,
            a->client_id,  NULL};
        if ((rc = kvr_http_form_encode(&t->query, pairs, err)) < 0)
            return rc;
        size_t ul = strlen(IMDS_TOKEN_URL) + 1 + strlen(t->query) + 1;
        if (!(t->url = malloc(ul)))
            return kvr_error_oom(err);
        snprintf(t->url, ul, "%s?%s", IMDS_TOKEN_URL, t->query);
        req->method = "GET";
        req->url = t->url;
        req->headers = md;
        req->flags = KVR_HTTP_RETRY_NOTFOUND;
        return 0;
    }
    static const char *const form_hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    const char *jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    const char *pairs[12] = {"grant_type", "client_credentials", "client_id", a->client_id, "scope",
                             scope};
    if (a->kind == KVR_AUTH_SECRET) {
        pairs[6] = "client_secret";
        pairs[7] = a->client_secret;
    } else if (a->kind == KVR_AUTH_CERTIFICATE) {
        if ((rc = kvr_auth_read_private_file(&t->file, &file_len, a->certificate_path, err)) < 0 ||
            (rc = kvr_auth_assertion(&t->assertion, t->file, file_len, a->authority, tenant,
                                     a->client_id, time(NULL), err)) < 0)
            return rc;
        pairs[6] = "client_assertion_type";
        pairs[7] = jwt_type;
        pairs[8] = "client_assertion";
        pairs[9] = t->assertion;
    } else {
        /* re-read every time: the platform rotates the file */
        if ((rc = kvr_auth_read_private_file(&t->file, &file_len, a->federated_token_file, err)) <
            0)
            return rc;
        while (file_len > 0 && (t->file[file_len - 1] == '\n' || t->file[file_len - 1] == '\r' ||
                                t->file[file_len - 1] == ' '))
            t->file[--file_len] = '\0';
        if (file_len == 0)
            return kvr_error_set(err, KVR_EAUTH, "federated token file '%s' is empty",
                                 a->federated_token_file);
        pairs[6] = "client_assertion_type";
        pairs[7] = jwt_type;
        pairs[8] = "client_assertion";
        pairs[9] = t->file;
    }
    if ((rc = kvr_http_form_encode(&t->form, pairs, err)) < 0)
        return rc;
    size_t ul = strlen(a->authority) + strlen(tenant) + sizeof("//oauth2/v2.0/token");
    if (!(t->url = malloc(ul)))
        return kvr_error_oom(err);
    snprintf(t->url, ul, "%s/%s/oauth2/v2.0/token", a->authority, tenant);
    req->method = "POST";
    req->url = t->url;
    req->headers = form_hdr;
    req->body = t->form;
    req->body_len = strlen(t->form);
    return 0;
}

/* The token in a token request's answer (its error when there is none). */
static int token_answer(char **out, time_t *out_expires, kvr_auth *a, const char *scope,
                        const kvr_http_response *resp, kvr_error *err)
{
    if (resp->status != 200)
        return token_error(err, resp, a->kind == KVR_AUTH_MANAGED, scope);
    return kvr_auth_parse_token(out, out_expires, resp->body, resp->body_len,
                                a->kind == KVR_AUTH_MANAGED, (time_t)kvr_mono_s(), err);
}

static int acquire(char **out, time_t *out_expires, kvr_auth *a, const char *tenant,
                   const char *scope, kvr_error *err)
{
    kvr_http_response resp;
    token_req t;
    int rc = 0;

    kvr_http_response_init(&resp);
    *out = NULL;
    if ((rc = token_req_build(&t, a, tenant, scope, err)) < 0)
        goto done;
    if (a->kind == KVR_AUTH_MANAGED && !a->imds_seen) {
        /*
         * Off Azure nothing answers at 169.254.169.254 and a connect would hang for the full
         * timeout on every retry: probe once, briefly, as the Azure SDKs do.
         */
        kvr_http_request probe = t.req;
        probe.flags = KVR_HTTP_NO_RETRY | KVR_HTTP_FAST_CONNECT;
        if (kvr_http_send(&resp, a->http, &probe, NULL) < 0) {
            rc = kvr_error_set(err, KVR_EAUTH,
                               "no azure credential: AZURE_TENANT_ID and AZURE_CLIENT_ID with "
                               "AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
                               "AZURE_FEDERATED_TOKEN_FILE are not set, and no managed identity "
                               "endpoint answered at 169.254.169.254");
            goto done;
        }
        a->imds_seen = true;
    }
    if (resp.status != 200 && (rc = kvr_http_send(&resp, a->http, &t.req, err)) < 0)
        goto done;
    rc = token_answer(out, out_expires, a, scope, &resp, err);
done:
    kvr_http_response_release(&resp);
    token_req_release(&t);
    return rc;
}

static cached_token *find_token(kvr_auth *a, const char *tenant, const char *scope)
{
    for (size_t i = 0; i < a->ntokens; i++)
        if (a->tokens[i].token && kvr_str_ieq(a->tokens[i].tenant, tenant) &&
            strcmp(a->tokens[i].scope, scope) == 0)
            return &a->tokens[i];
    return NULL;
}

/* Caches tok (taken, wiped when dropped) in t, or in a free or new entry when t is NULL, and
   gives the caller a copy of it (out may be NULL). */
static int keep_token(char **out, kvr_auth *a, cached_token *t, const char *tenant,
                      const char *scope, char *tok, time_t expires, kvr_error *err)
{
    char *copy = NULL;
    if (!t) {
        for (size_t i = 0; i < a->ntokens && !t; i++)
            if (!a->tokens[i].token)
                t = &a->tokens[i];
        if (!t) {
            if (kvr_grow((void **)&a->tokens, &a->captokens, a->ntokens + 1, sizeof(*a->tokens)) <
                0) {
                kvr_azure_secret_free(tok);
                return kvr_error_oom(err);
            }
            t = &a->tokens[a->ntokens++];
            memset(t, 0, sizeof(*t));
        }
    }
    drop_token(t);
    time_t now = (time_t)kvr_mono_s(), life = expires - now;
    t->refresh_at = now + (life > 2 * REFRESH_MARGIN ? life - REFRESH_MARGIN : life / 2);
    if (!(t->tenant = strdup(tenant)) || !(t->scope = strdup(scope)) ||
        (out && !(copy = strdup(tok)))) {
        drop_token(t);
        kvr_azure_secret_free(tok);
        return kvr_error_oom(err);
    }
    t->token = tok;
    if (out)
        *out = copy;
    return 0;
}

/* A token is for exactly one scope: no spaces, of a sane length. */
static bool scope_ok(const char *scope)
{
    return scope && *scope && !strchr(scope, ' ') && strlen(scope) <= 500;
}

int kvr_auth_token(char **out, kvr_auth *a, const char *tenant, const char *scope, kvr_error *err)
{
    char *tok = NULL;
    time_t expires = 0;
    int rc = 0;

    *out = NULL;
    if (!tenant)
        tenant = a->tenant ? a->tenant : "organizations";
    if (!scope_ok(scope))
        return kvr_error_set(err, KVR_EINVAL, "a token is for exactly one scope");
    if (!tenant_name_ok(tenant))
        return kvr_error_set(err, KVR_EINVAL, "malformed tenant id");
    if (!tenant_allowed(a, tenant))
        return kvr_error_set(err, KVR_EAUTH,
                             "tenant '%s' is not the credential's tenant '%s'; add it to "
                             "AZURE_ADDITIONALLY_ALLOWED_TENANTS to allow it",
                             tenant, a->tenant);
    cached_token *t = find_token(a, tenant, scope);
    if (t && t->refresh_at > (time_t)kvr_mono_s()) {
        if (!(*out = strdup(t->token)))
            return kvr_error_oom(err);
        return 0;
    }
    for (size_t i = 0; i < a->nrefused; i++) {
        if (strcmp(a->refused[i].scope, scope) == 0 && a->tenant &&
            kvr_str_ieq(tenant, a->tenant)) {
            rc = a->refused[i].err.code;
            if (err)
                *err = a->refused[i].err;
            free(a->refused[i].scope);
            a->refused[i] = a->refused[--a->nrefused];
            return rc;
        }
    }
    if ((rc = acquire(&tok, &expires, a, tenant, scope, err)) < 0)
        return rc;
    return keep_token(out, a, t, tenant, scope, tok, expires, err);
}

/*
 * The tokens of these scopes (the credential's own tenant) that are not cached, asked for at
 * once instead of one after the other as each is first used: a plan's first reads need ARM's,
 * Graph's and the profiles' (three round trips to the identity platform before anything else).
 * Nothing is asked when fewer than two are missing. Each is tried once: a token not had here is
 * asked for again, with the engine's retries, when it is used, except when the identity platform
 * refused it (a 4xx: a wrong secret, say), whose error is told then without asking again.
 */
void kvr_auth_prefetch(kvr_auth *a, const char *const *scopes, size_t n)
{
    enum { MAX = sizeof(a->refused) / sizeof(a->refused[0]) };
    token_req t[MAX];
    kvr_http_request reqs[MAX];
    kvr_http_response resps[MAX];
    int codes[MAX];
    const char *which[MAX];
    const char *tenant = a->tenant;
    size_t k = 0;
    kvr_error e;

    for (size_t i = 0; i < a->nrefused; i++) /* a refusal is told at the next use, or never */
        free(a->refused[i].scope);
    a->nrefused = 0;
    /* a managed identity's first token waits for the endpoint's probe (acquire) */
    if (a->kind == KVR_AUTH_MANAGED || !tenant || !tenant_name_ok(tenant))
        return;
    for (size_t i = 0; i < n && k < MAX; i++) {
        cached_token *c;
        if (!scope_ok(scopes[i]) ||
            ((c = find_token(a, tenant, scopes[i])) && c->refresh_at > (time_t)kvr_mono_s()))
            continue; /* refused by kvr_auth_token when used, or cached */
        which[k++] = scopes[i];
    }
    if (k < 2)
        return;
    for (size_t i = 0; i < k; i++) {
        if (token_req_build(&t[i], a, tenant, which[i], &e) < 0) {
            /* the same error comes again, and is told, when the token is used */
            for (size_t j = 0; j <= i; j++) /* t[i] too: token_req_build cleared it first */
                token_req_release(&t[j]);
            return;
        }
        reqs[i] = t[i].req;
        reqs[i].flags |= KVR_HTTP_NO_RETRY;
        kvr_http_response_init(&resps[i]);
    }
    (void)kvr_http_send_batch(resps, codes, a->http, reqs, k, NULL);
    for (size_t i = 0; i < k; i++) {
        char *tok = NULL;
        time_t expires = 0;
        if (codes[i] == 0) {
            int rc = token_answer(&tok, &expires, a, which[i], &resps[i], &e);
            if (rc == 0)
                (void)keep_token(NULL, a, find_token(a, tenant, which[i]), tenant, which[i], tok,
                                 expires, &e);
            else if (rc == KVR_EAUTH && a->nrefused < MAX &&
                     (a->refused[a->nrefused].scope = strdup(which[i])))
                a->refused[a->nrefused++].err = e;
        }
        kvr_http_response_release(&resps[i]);
        token_req_release(&t[i]);
    }
}

void kvr_auth_invalidate(kvr_auth *a, const char *tenant, const char *scope)
{
    if (!tenant)
        tenant = a->tenant ? a->tenant : "organizations";
    cached_token *t = find_token(a, tenant, scope);
    if (t)
        drop_token(t);
}

/* Gives every request of a batch the same failure. */
static int fail_all(int *codes, kvr_error *errs, size_t n, int rc, const kvr_error *e)
{
    for (size_t i = 0; i < n; i++) {
        codes[i] = rc;
        if (errs)
            errs[i] = *e;
    }
    return rc;
}

int kvr_auth_send_batch(kvr_http_response *out, int *codes, kvr_auth *a, const char *scope,
                        const kvr_http_request *reqs, size_t n, kvr_error *errs)
{
    kvr_http_request *batch = NULL;
    kvr_http_response *resp = NULL;
    kvr_error *berr = NULL, e;
    int *bcodes = NULL;
    size_t *idx = NULL, m = n;
    char *tok = NULL;
    int rc = 0;

    if (n == 0)
        return 0;
    if (!(batch = calloc(n, sizeof(*batch))) || !(resp = calloc(n, sizeof(*resp))) ||
        !(berr = calloc(n, sizeof(*berr))) || !(bcodes = calloc(n, sizeof(*bcodes))) ||
        !(idx = calloc(n, sizeof(*idx)))) {
        kvr_error_set(&e, KVR_ENOMEM, "out of memory");
        rc = fail_all(codes, errs, n, KVR_ENOMEM, &e);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        codes[i] = 0;
        idx[i] = i;
    }
    /* everything with the cached token; what it refused with 401, once more with a fresh one.
       idx[0..m) are the requests of this attempt; their answers move to their own places. */
    for (int attempt = 0; attempt < 2 && m; attempt++) {
        size_t again = 0;
        if ((rc = kvr_auth_token(&tok, a, NULL, scope, &e)) < 0) {
            for (size_t k = 0; k < m; k++)
                fail_all(&codes[idx[k]], errs ? &errs[idx[k]] : NULL, 1, rc, &e);
            goto done;
        }
        for (size_t k = 0; k < m; k++) {
            batch[k] = reqs[idx[k]];
            batch[k].bearer = tok;
            kvr_http_response_init(&resp[k]);
        }
        kvr_http_send_batch(resp, bcodes, a->http, batch, m, berr);
        for (size_t k = 0; k < m; k++) {
            size_t i = idx[k];
            kvr_http_response_release(&out[i]);
            out[i] = resp[k];
            codes[i] = bcodes[k];
            if (errs)
                errs[i] = berr[k];
            if (codes[i] == 0 && out[i].status == 401)
                idx[again++] = i;
        }
        m = again;
        if (m)
            kvr_auth_invalidate(a, NULL, scope);
        kvr_azure_secret_free(tok);
        tok = NULL;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (codes[i] < 0)
            rc = codes[i];
done:
    kvr_azure_secret_free(tok);
    free(batch);
    free(resp);
    free(berr);
    free(bcodes);
    free(idx);
    return rc;
}

int kvr_auth_send(kvr_http_response *out, kvr_auth *a, const char *scope,
                  const kvr_http_request *req, kvr_error *err)
{
    int code = 0;
    int rc = kvr_auth_send_batch(out, &code, a, scope, req, 1, err);
    return rc < 0 ? rc : code;
}

/* ---- Key Vault challenge flow -------------------------------------------------------------------
 */

typedef struct challenge_probe {
    const kvr_auth *a;
    const char *host;
} challenge_probe;

static bool challenge_is(const void *ctx, size_t i)
{
    const challenge_probe *p = ctx;
    return strcmp(p->a->challenges[i].host, p->host) == 0;
}

static vault_challenge *find_challenge(kvr_auth *a, const char *host)
{
    challenge_probe p = {a, host};
    size_t i = kvr_index_first(&a->challenge_ix, kvr_hash_ci(KVR_HASH_SEED, host), challenge_is, &p);
    return i == KVR_INDEX_NONE ? NULL : &a->challenges[i];
}

/* Parses and checks a 401's challenge and stores it for the host; *changed says it is new. */
static int learn_challenge(bool *changed, kvr_auth *a, const char *url, const char *host,
                           const kvr_http_response *r, kvr_error *err)
{
    kvr_auth_challenge c;
    int rc;
    *changed = false;
    if (!r->www_authenticate)
        return kvr_error_set(err, KVR_EAUTH, "vault '%s' refused the request without a challenge",
                             host);
    if ((rc = kvr_auth_challenge_parse(&c, r->www_authenticate, err)) < 0 ||
        (rc = kvr_auth_challenge_check(&c, url, err)) < 0)
        return rc;
    vault_challenge *v = find_challenge(a, host);
    if (!v) {
        if (kvr_grow((void **)&a->challenges, &a->capchallenges, a->nchallenges + 1,
                     sizeof(*a->challenges)) < 0 ||
            kvr_index_put(&a->challenge_ix, kvr_hash_ci(KVR_HASH_SEED, host), a->nchallenges) < 0)
            return kvr_error_oom(err);
        v = &a->challenges[a->nchallenges++];
        memset(v, 0, sizeof(*v));
        snprintf(v->host, sizeof(v->host), "%s", host);
        *changed = true;
    } else if (strcmp(v->c.tenant, c.tenant) != 0 || strcmp(v->c.scope, c.scope) != 0) {
        *changed = true;
    }
    v->c = c;
    return 0;
}

enum { KV_PROBE, KV_SEND, KV_DONE };

int kvr_auth_send_kv(kvr_http_response *out, int *codes, kvr_auth *a, const kvr_http_request *reqs,
                     size_t n, kvr_error *errs)
{
    kvr_url_info *urls = NULL;
    kvr_http_request *batch = NULL;
    kvr_http_response *resp = NULL;
    kvr_error *e = NULL, *local = NULL, *berr = NULL;
    char **toks = NULL;
    size_t *idx = NULL;
    int *st = NULL, *bcodes = NULL;
    int rc = 0;

    if (n == 0)
        return 0;
    e = errs;
    if ((!e && !(e = local = calloc(n, sizeof(*e)))) || !(urls = calloc(n, sizeof(*urls))) ||
        !(batch = calloc(n, sizeof(*batch))) || !(resp = calloc(n, sizeof(*resp))) ||
        !(toks = calloc(n, sizeof(*toks))) || !(idx = calloc(n, sizeof(*idx))) ||
        !(st = calloc(n, sizeof(*st))) || !(bcodes = calloc(n, sizeof(*bcodes))) ||
        !(berr = calloc(n, sizeof(*berr)))) {
        kvr_error oom;
        kvr_error_set(&oom, KVR_ENOMEM, "out of memory");
        rc = fail_all(codes, errs, n, KVR_ENOMEM, &oom);
        goto done;
    }

    for (size_t i = 0; i < n; i++) {
        codes[i] = 0;
        kvr_http_response_release(&out[i]);
        st[i] = KV_SEND;
        if ((codes[i] = kvr_http_url_info(&urls[i], reqs[i].url, &e[i])) < 0)
            st[i] = KV_DONE;
    }

    /* round 0: one request without token (and body) per vault host not seen before;
     * round 1: everything with tokens; round 2: what a new challenge refused, once more */
    for (int round = 0; round < 3; round++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (st[i] == KV_DONE)
                continue;
            if (round == 0) {
                if (find_challenge(a, urls[i].host_port))
                    continue;
                bool probed = false;
                for (size_t k = 0; k < m && !probed; k++)
                    probed = strcmp(urls[idx[k]].host_port, urls[i].host_port) == 0;
                if (probed)
                    continue;
                batch[m] = reqs[i];
                batch[m].bearer = NULL;
                batch[m].body = NULL;
                batch[m].body_len = 0;
                st[i] = KV_PROBE;
                idx[m++] = i;
                continue;
            }
            if (round == 2 && !(out[i].status == 401))
                continue;
            vault_challenge *v = find_challenge(a, urls[i].host_port);
            if (!v) {
                codes[i] = kvr_error_set(&e[i], KVR_EAUTH,
                                         "vault '%s' sent no usable authentication challenge",
                                         urls[i].host_port);
                st[i] = KV_DONE;
                continue;
            }
            kvr_azure_secret_free(toks[i]);
            toks[i] = NULL;
            if ((codes[i] = kvr_auth_token(&toks[i], a, v->c.tenant, v->c.scope, &e[i])) < 0) {
                st[i] = KV_DONE;
                continue;
            }
            batch[m] = reqs[i];
            batch[m].bearer = toks[i];
            idx[m++] = i;
        }
        if (m == 0)
            continue;
        for (size_t k = 0; k < m; k++)
            kvr_http_response_init(&resp[k]);
        kvr_http_send_batch(resp, bcodes, a->http, batch, m, berr);
        for (size_t k = 0; k < m; k++) {
            size_t i = idx[k];
            kvr_http_response r = resp[k];
            kvr_http_response_init(&resp[k]);
            if (bcodes[k] < 0) {
                codes[i] = bcodes[k];
                e[i] = berr[k];
                st[i] = KV_DONE;
                kvr_http_response_release(&r);
                continue;
            }
            if (round == 0) {
                bool changed;
                if (r.status == 401) {
                    if ((codes[i] = learn_challenge(&changed, a, reqs[i].url, urls[i].host_port, &r,
                                                    &e[i])) < 0)
                        st[i] = KV_DONE;
                    else
                        st[i] = KV_SEND;
                    kvr_http_response_release(&r);
                } else if (!reqs[i].body) {
                    out[i] = r; /* the vault answered without asking: that is the answer */
                    st[i] = KV_DONE;
                } else {
                    codes[i] = kvr_error_set(&e[i], KVR_EAUTH,
                                             "vault '%s' answered http %ld instead of an "
                                             "authentication challenge",
                                             urls[i].host_port, r.status);
                    kvr_http_response_release(&r);
                    st[i] = KV_DONE;
                }
                continue;
            }
            kvr_http_response_release(&out[i]);
            out[i] = r;
            if (r.status == 401 && round == 1) {
                /* a new challenge, or the token was refused (expired, revoked): once more */
                vault_challenge *v = find_challenge(a, urls[i].host_port);
                kvr_auth_invalidate(a, v->c.tenant, v->c.scope);
                bool changed;
                if (r.www_authenticate &&
                    (codes[i] = learn_challenge(&changed, a, reqs[i].url, urls[i].host_port, &r,
                                                &e[i])) < 0) {
                    kvr_http_response_release(&out[i]);
                    st[i] = KV_DONE;
                }
                continue;
            }
            st[i] = KV_DONE;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (codes[i] < 0 && rc == 0)
            rc = codes[i];
done:
    if (toks)
        for (size_t i = 0; i < n; i++)
            kvr_azure_secret_free(toks[i]);
    free(toks);
    free(urls);
    free(batch);
    free(resp);
    free(idx);
    free(st);
    free(bcodes);
    free(berr);
    free(local);
    return rc;
}

/* ---- a feed with credentials (kvr_auth_run_feed) ---------------------------------------------
 */

enum { FEED_PROBE, FEED_FIRST, FEED_AGAIN };

typedef struct feed_item {
    kvr_http_request req;         /* what goes out: the caller's request with its token */
    const kvr_http_request *orig; /* the caller's */
    const char *scope;            /* NULL: Key Vault */
    char *tok;
    int phase;
    struct feed_item *next; /* in the list of those to send again, or of the spare ones */
} feed_item;

typedef struct auth_feed {
    kvr_auth *a;
    const kvr_auth_feed *feed;
    feed_item *again, **again_tail; /* to send again, in the order they came back */
    feed_item *spare;
} auth_feed;

static void item_put(auth_feed *af, feed_item *it)
{
    kvr_azure_secret_free(it->tok);
    it->tok = NULL;
    it->next = af->spare;
    af->spare = it;
}

/* Tells the caller that its request ended with `code` (and the response, if any), and frees the
   item. */
static void item_end(auth_feed *af, feed_item *it, kvr_http_response *resp, int code,
                     const kvr_error *e)
{
    kvr_http_response none;
    kvr_http_response_init(&none);
    af->feed->done(af->feed->ud, it->orig, resp ? resp : &none, code, e);
    item_put(af, it);
}

/* Sets the item's request for its phase: with its token, or without one to learn the vault's
   challenge. A token that cannot be had ends the item (item_end): -1. */
static int item_arm(auth_feed *af, feed_item *it)
{
    kvr_error e;
    int rc;
    kvr_azure_secret_free(it->tok);
    it->tok = NULL;
    it->req = *it->orig;
    if (it->scope) {
        rc = kvr_auth_token(&it->tok, af->a, NULL, it->scope, &e);
    } else {
        kvr_url_info u;
        vault_challenge *v = NULL;
        if ((rc = kvr_http_url_info(&u, it->orig->url, &e)) == 0 &&
            !(v = find_challenge(af->a, u.host_port))) {
            it->phase = FEED_PROBE;
            it->req.bearer = NULL;
            it->req.body = NULL;
            it->req.body_len = 0;
            return 0;
        }
        if (rc == 0)
            rc = kvr_auth_token(&it->tok, af->a, v->c.tenant, v->c.scope, &e);
    }
    if (rc < 0) {
        item_end(af, it, NULL, rc, &e);
        return -1;
    }
    it->req.bearer = it->tok;
    return 0;
}

static const kvr_http_request *af_next(void *ud)
{
    auth_feed *af = ud;
    for (;;) {
        feed_item *it = af->again;
        if (it) {
            if (!(af->again = it->next))
                af->again_tail = &af->again;
        } else {
            const char *scope = NULL;
            const kvr_http_request *q = af->feed->next(af->feed->ud, &scope);
            if (!q)
                return NULL;
            if ((it = af->spare))
                af->spare = it->next;
            else if (!(it = calloc(1, sizeof(*it)))) {
                kvr_error e;
                kvr_http_response none;
                kvr_http_response_init(&none);
                af->feed->done(af->feed->ud, q, &none, kvr_error_oom(&e), &e);
                continue;
            }
            it->orig = q;
            it->scope = scope;
            it->phase = FEED_FIRST;
        }
        if (item_arm(af, it) == 0)
            return &it->req;
    }
}

/* A 401 before the last attempt: learn what it says and send the request again. */
static int item_refused(auth_feed *af, feed_item *it, const kvr_http_response *resp, kvr_error *e)
{
    kvr_url_info u;
    bool changed;
    int rc;
    if (it->scope) {
        kvr_auth_invalidate(af->a, NULL, it->scope);
    } else {
        if ((rc = kvr_http_url_info(&u, it->orig->url, e)) < 0)
            return rc;
        if (it->phase == FEED_FIRST) { /* the token was refused (expired, revoked, new tenant) */
            vault_challenge *v = find_challenge(af->a, u.host_port);
            if (v)
                kvr_auth_invalidate(af->a, v->c.tenant, v->c.scope);
        }
        if ((it->phase == FEED_PROBE || resp->www_authenticate) &&
            (rc = learn_challenge(&changed, af->a, it->orig->url, u.host_port, resp, e)) < 0)
            return rc;
    }
    it->phase = it->phase == FEED_PROBE ? FEED_FIRST : FEED_AGAIN;
    it->next = NULL;
    *af->again_tail = it;
    af->again_tail = &it->next;
    return 0;
}

static void af_done(void *ud, const kvr_http_request *req, kvr_http_response *resp, int code,
                    const kvr_error *err)
{
    auth_feed *af = ud;
    feed_item *it = (feed_item *)(void *)((char *)(uintptr_t)req - offsetof(feed_item, req));
    kvr_error e;
    if (code == 0 && resp->status == 401 && it->phase != FEED_AGAIN) {
        if ((code = item_refused(af, it, resp, &e)) == 0)
            return;
        err = &e;
    } else if (code == 0 && it->phase == FEED_PROBE && it->orig->body) {
        kvr_url_info u;
        if (kvr_http_url_info(&u, it->orig->url, &e) == 0)
            kvr_error_set(&e, KVR_EAUTH,
                          "vault '%s' answered http %ld instead of an authentication challenge",
                          u.host_port, resp->status);
        code = e.code;
        err = &e;
    }
    item_end(af, it, code < 0 ? NULL : resp, code, err);
}

int kvr_auth_run_feed(kvr_auth *a, const kvr_auth_feed *feed, size_t slots)
{
    auth_feed af = {.a = a, .feed = feed};
    kvr_http_feed hf = {.ud = &af, .next = af_next, .done = af_done};
    int rc;
    af.again_tail = &af.again;
    rc = kvr_http_run_feed(a->http, &hf, slots);
    while (af.spare) { /* every item is spare once the feed has run */
        feed_item *it = af.spare;
        af.spare = it->next;
        free(it);
    }
    return rc;
}

void kvr_auth_keep_conns(kvr_auth *a, size_t n)
{
    kvr_http_keep_conns(a->http, n);
}

bool kvr_auth_kv_known(kvr_auth *a, const char *url)
{
    kvr_url_info u;
    kvr_error e;
    return kvr_http_url_info(&u, url, &e) == 0 && find_challenge(a, u.host_port) != NULL;
}

/* ---- paging -------------------------------------------------------------------------------------
 */

#define LIST_PAGES_MAX 10000
#define LIST_ITEMS_MAX 1000000

int kvr_auth_list(json_t **out, kvr_auth *a, const char *scope, const kvr_http_request *first,
                  const char *what, kvr_error *err)
{
    json_t *all = NULL, *page = NULL;
    char *url = NULL, *next = NULL;
    kvr_http_response r;
    kvr_http_request q = *first;
    kvr_http_pages seen = {0};
    int rc = 0, code = 0;

    kvr_http_response_init(&r);
    *out = NULL;
    q.method = "GET";
    q.body = NULL;
    q.body_len = 0;
    if (!(all = json_array()) || !(url = strdup(first->url))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (int pages = 0; url; pages++) {
        if (pages >= LIST_PAGES_MAX) {
            rc =
                kvr_error_set(err, KVR_ETOOBIG, "%s: the listing is too large (more than %d pages)",
                              what, LIST_PAGES_MAX);
            goto done;
        }
        q.url = url;
        if (scope)
            rc = kvr_auth_send(&r, a, scope, &q, err);
        else if ((rc = kvr_auth_send_kv(&r, &code, a, &q, 1, err)) == 0)
            rc = code;
        if (rc < 0)
            goto done;
        if (r.status != 200) {
            rc = kvr_http_error(err, &r, what, NULL);
            goto done;
        }
        json_decref(page);
        page = json_loadb(r.body, r.body_len, 0, NULL);
        json_t *value = json_object_get(page, "value");
        if (!json_is_array(value)) {
            rc = kvr_error_set(err, KVR_EPROTO, "%s: page %d has no value array", what, pages + 1);
            goto done;
        }
        if (json_array_size(all) + json_array_size(value) > LIST_ITEMS_MAX) {
            rc =
                kvr_error_set(err, KVR_ETOOBIG, "%s: the listing is too large (more than %d items)",
                              what, LIST_ITEMS_MAX);
            goto done;
        }
        if (json_array_extend(all, value) < 0) {
            rc = kvr_error_oom(err);
            goto done;
        }
        if ((rc = kvr_http_next_link(&next, url, page, err)) < 0 ||
            (next && ((pages == 0 && (rc = kvr_http_pages_note(&seen, url, what, err)) < 0) ||
                      (rc = kvr_http_pages_note(&seen, next, what, err)) < 0)))
            goto done;
        free(url);
        url = next;
        next = NULL;
    }
    *out = all;
    all = NULL;
done:
    kvr_http_response_release(&r);
    kvr_http_pages_release(&seen);
    json_decref(page);
    json_decref(all);
    free(url);
    free(next);
    return rc;
}
