/*
 * The requests every service file of the Azure provider's write side makes, in one place: a call
 * whose status is checked against what the operation accepts (an error names the operation, the
 * object and Azure's answer), an ARM write waited for when it is a long-running operation, the
 * scopes and URLs they go to, and the claims of the credential's own ARM token (its tenant, its
 * object id). Bodies may hold secret values: their serialisations are wiped here after sending,
 * so no service file has to remember it.
 */
#include "kvr/providers.h"
#include "prov_internal.h"
#include "azinternal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

const long kvr__ok200[] = {200, 0};
const long kvr__ok2xx[] = {200, 201, 202, 204, 0};

void kvr__wipe_str(const char *s)
{
    if (s)
        OPENSSL_cleanse((void *)s, strlen(s));
}

int kvr__send_checked(kvr__az *c, const char *scope, const char *method, const char *url,
                      json_t *body, unsigned flags, const long *ok, const char *op,
                      const char *object, kvr_http_response *resp, long *status, kvr_error *err)
{
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    static const char *const upsert_hdr[] = {"Content-Type: application/json",
                                             "Prefer: create-if-missing", NULL};
    kvr_http_request req = {.method = method, .url = url, .flags = flags & ~KVR__CALL_UPSERT};
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc, code = 0;
    bool accepted = false;

    if (body && !text)
        return kvr_error_oom(err);
    if (text) {
        req.body = text;
        req.body_len = strlen(text);
        req.headers = flags & KVR__CALL_UPSERT ? upsert_hdr : json_hdr;
    }
    rc = scope ? kvr_auth_send(resp, c->auth, scope, &req, err)
               : kvr_auth_send_kv(resp, &code, c->auth, &req, 1, err);
    if (!rc && !scope)
        rc = code;
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (rc < 0)
        return rc;
    if (status)
        *status = resp->status;
    for (const long *s = ok; *s; s++)
        accepted |= resp->status == *s;
    return accepted ? 0 : kvr_http_error(err, resp, op, object);
}

int kvr__call(kvr__az *c, const char *scope, const char *method, const char *url, json_t *body,
              unsigned flags, const long *ok, const char *op, const char *object, json_t **out,
              long *status, kvr_error *err)
{
    kvr_http_response resp;
    int rc;

    if (out)
        *out = NULL;
    kvr_http_response_init(&resp);
    rc = kvr__send_checked(c, scope, method, url, body, flags, ok, op, object, &resp, status, err);
    if (!rc && out && resp.body_len) {
        json_error_t jerr;
        *out = json_loadb(resp.body, resp.body_len, 0, &jerr);
        if (!*out)
            rc = kvr_error_set(err, KVR_EPROTO, "%s '%s': the response is not JSON", op,
                               object ? object : "");
    }
    kvr_http_response_release(&resp);
    return rc;
}

char *kvr__arm_scope(kvr__az *c, kvr_error *err)
{
    return prov_fmt(err, "%s/.default", c->ep->arm);
}

char *kvr__graph_scope(kvr__az *c, kvr_error *err)
{
    return prov_fmt(err, "%s/.default", c->ep->graph);
}

char *kvr__vault_base(kvr__az *c, const char *vault, kvr_error *err)
{
    return prov_fmt(err, "https://%s.%s", vault, c->ep->vault_suffix);
}

/*
 * A vault PUT answers 201 while the vault's DNS name is registered: the write is waited for, so
 * the next operation never meets a vault that is not there yet.
 */
int kvr__call_arm(kvr__az *c, const char *method, const char *url, const char *resource_url,
                  json_t *body, const long *ok, const char *op, const char *object, json_t **out,
                  long *status, kvr_error *err)
{
    kvr_http_response resp;
    char *scope = kvr__arm_scope(c, err);
    int rc;

    if (out)
        *out = NULL;
    kvr_http_response_init(&resp);
    rc = scope
             ? kvr__send_checked(c, scope, method, url, body, 0, ok, op, object, &resp, status, err)
             : KVR_ENOMEM;
    if (rc == 0 && resp.status >= 300) {
        if (out && resp.body_len) /* an accepted error status (409): the caller looks */
            *out = json_loadb(resp.body, resp.body_len, 0, NULL);
    } else if (rc == 0) {
        rc = kvr_lro_wait(out, c->auth, scope, c->ep->arm, method, resource_url, &resp, op, object,
                          NULL, err);
    }
    free(scope);
    kvr_http_response_release(&resp);
    return rc;
}

json_t *kvr__tags_json(const kvr_tags *t)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < t->len; i++)
        json_object_set_new(o, t->items[i].key, json_string(t->items[i].value));
    return o;
}

int kvr__arm_claim(char **out, kvr_auth *a, const kvr_endpoints *ep, const char *claim,
                   kvr_error *err)
{
    char *scope = prov_fmt(err, "%s/.default", ep->arm), *token = NULL, *dot1, *dot2, *claims;
    unsigned char *raw = NULL;
    json_t *j = NULL;
    size_t n, len;
    int rc;

    *out = NULL;
    if (!scope)
        return KVR_ENOMEM;
    rc = kvr_auth_token(&token, a, NULL, scope, err);
    free(scope);
    if (rc < 0)
        return rc;
    dot1 = strchr(token, '.');
    dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2) {
        rc = kvr_error_set(err, KVR_EPROTO, "the access token is not a JWT");
        goto done;
    }
    n = (size_t)(dot2 - dot1 - 1);
    claims = malloc(n + 4);
    raw = malloc(n + 4);
    if (!claims || !raw) {
        free(claims);
        rc = kvr_error_oom(err);
        goto done;
    }
    /* base64url to base64 with padding, then EVP_DecodeBlock */
    for (size_t i = 0; i < n; i++)
        claims[i] = dot1[1 + i] == '-' ? '+' : dot1[1 + i] == '_' ? '/' : dot1[1 + i];
    len = n;
    while (len % 4)
        claims[len++] = '=';
    claims[len] = '\0';
    {
        int dec = EVP_DecodeBlock(raw, (const unsigned char *)claims, (int)len);
        free(claims);
        if (dec < 0) {
            rc = kvr_error_set(err, KVR_EPROTO, "the access token's claims are not base64url");
            goto done;
        }
        while (dec > 0 && raw[dec - 1] == '\0')
            dec--;
        j = json_loadb((const char *)raw, (size_t)dec, 0, NULL);
    }
    if (!json_is_string(json_object_get(j, claim))) {
        rc = kvr_error_set(err, KVR_EPROTO, "the access token has no '%s' claim", claim);
        goto done;
    }
    *out = strdup(json_string_value(json_object_get(j, claim)));
    rc = *out ? 0 : kvr_error_oom(err);
done:
    json_decref(j);
    free(raw);
    kvr_azure_secret_free(token);
    return rc;
}

int kvr__az_tenant(const char **out, kvr__az *c, kvr_error *err)
{
    int rc = 0;
    if (!c->tenant)
        rc = kvr__arm_claim(&c->tenant, c->auth, c->ep, "tid", err);
    *out = c->tenant;
    return rc;
}
