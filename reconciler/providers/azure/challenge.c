/*
 * The Key Vault 401 challenge, parsed and checked the way the Azure SDKs do. A vault tells an
 * unauthenticated caller which tenant and audience it wants
 * (`Bearer authorization="https://login.windows.net/TENANT", resource="https://vault.azure.net"`),
 * which is how one client works across clouds, sovereign clouds and the simulator without being
 * configured for each. Because the header decides where a token is obtained for, it is checked:
 * the vault's host must end with "." + the audience's host, or the challenge is refused. The
 * header comes from the network, so the parser takes nothing on trust (size, quoting, schemes).
 */
#include "azinternal.h"

#include <ctype.h>
#include <string.h>

#define CHALLENGE_MAX 4096

static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads a quoted or bare value into dst; NULL if malformed or too long. */
static const char *read_value(char *dst, size_t size, const char *p)
{
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if ((unsigned char)*p < 0x20 || n + 1 >= size)
                return NULL;
            dst[n++] = *p;
        }
        if (*p != '"')
            return NULL;
        p++;
    } else {
        for (; *p && *p != ',' && *p != ' ' && *p != '\t'; p++) {
            if ((unsigned char)*p < 0x20 || n + 1 >= size)
                return NULL;
            dst[n++] = *p;
        }
        if (n == 0)
            return NULL;
    }
    dst[n] = '\0';
    return p;
}

static bool tenant_ok(const char *t)
{
    if (!*t)
        return false;
    for (; *t; t++)
        if (!isalnum((unsigned char)*t) && *t != '-' && *t != '.' && *t != '_')
            return false;
    return true;
}

int kvr_auth_challenge_parse(kvr_auth_challenge *out, const char *header, kvr_error *err)
{
    char resource[512] = "", scope[512] = "", value[512];
    kvr_url_info info;
    const char *p;

    memset(out, 0, sizeof(*out));
    if (!header || strlen(header) > CHALLENGE_MAX)
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge missing or too long");
    p = skip_ws(header);
    if (!kvr_az_has_iprefix(p, "bearer") || (p[6] != ' ' && p[6] != '\t'))
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge is not a bearer challenge");
    p += 6;
    for (;;) {
        char name[32];
        size_t n = 0;
        p = skip_ws(p);
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        while (is_tchar(*p)) {
            if (n + 1 >= sizeof(name))
                return kvr_error_set(err, KVR_EPROTO, "malformed authentication challenge");
            name[n++] = *p++;
        }
        name[n] = '\0';
        p = skip_ws(p);
        if (n == 0 || *p != '=') {
            if (n > 0 && out->authority[0])
                break; /* the next challenge (another scheme) begins: ours is complete */
            return kvr_error_set(err, KVR_EPROTO, "malformed authentication challenge");
        }
        p = skip_ws(p + 1);
        if (!(p = read_value(value, sizeof(value), p)))
            return kvr_error_set(err, KVR_EPROTO, "malformed authentication challenge");
        p = skip_ws(p);
        if (*p && *p != ',')
            return kvr_error_set(err, KVR_EPROTO, "malformed authentication challenge");
        if (strcmp(name, "authorization") == 0 || strcmp(name, "authorization_uri") == 0)
            memcpy(out->authority, value, strlen(value) + 1);
        else if (strcmp(name, "resource") == 0)
            memcpy(resource, value, strlen(value) + 1);
        else if (strcmp(name, "scope") == 0)
            memcpy(scope, value, strlen(value) + 1);
        /* other parameters (supportspop, error, ...) are tolerated and ignored */
    }
    if (!out->authority[0])
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge names no authority");
    if (kvr_http_url_info(&info, out->authority, NULL) < 0 || strcmp(info.scheme, "https") != 0)
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge has a malformed authority");
    /* the tenant is the last non-empty path segment of the authority */
    const char *end = out->authority + strlen(out->authority);
    while (end > out->authority && end[-1] == '/')
        end--;
    const char *start = end;
    while (start > out->authority && start[-1] != '/')
        start--;
    size_t tlen = (size_t)(end - start);
    if (tlen == 0 || tlen >= sizeof(out->tenant) || start[-1] != '/' || start[-2] == '/')
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge names no tenant");
    memcpy(out->tenant, start, tlen);
    out->tenant[tlen] = '\0';
    if (!tenant_ok(out->tenant))
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge names a malformed tenant");

    if (scope[0]) {
        memcpy(out->scope, scope, strlen(scope) + 1);
    } else if (resource[0]) {
        size_t rl = strlen(resource);
        while (rl > 0 && resource[rl - 1] == '/')
            rl--;
        if (rl == 0 || rl + sizeof("/.default") > sizeof(out->scope))
            return kvr_error_set(err, KVR_EPROTO,
                                 "authentication challenge has a malformed resource");
        memcpy(out->scope, resource, rl);
        memcpy(out->scope + rl, "/.default", sizeof("/.default"));
    } else {
        return kvr_error_set(err, KVR_EPROTO,
                             "authentication challenge names no resource or scope");
    }
    if (kvr_http_url_info(&info, out->scope, NULL) < 0 || strcmp(info.scheme, "https") != 0)
        return kvr_error_set(err, KVR_EPROTO, "authentication challenge has a malformed scope");
    memcpy(out->resource_host, info.host_port, strlen(info.host_port) + 1);
    return 0;
}

int kvr_auth_challenge_check(const kvr_auth_challenge *c, const char *request_url, kvr_error *err)
{
    kvr_url_info req, res;
    int rc;
    if ((rc = kvr_http_url_info(&req, request_url, err)) < 0)
        return rc;
    if ((rc = kvr_http_url_info(&res, c->scope, err)) < 0)
        return rc;
    size_t hl = strlen(req.host), rl = strlen(res.host);
    bool ok = strcmp(req.scheme, "https") == 0 && hl > rl + 1 && req.host[hl - rl - 1] == '.' &&
              strcmp(req.host + hl - rl, res.host) == 0 &&
              (!res.explicit_port || res.port == req.port);
    if (!ok)
        return kvr_error_set(err, KVR_EINSECURE,
                             "vault '%s' sent a challenge for resource '%s', which does not match "
                             "its host; no token sent",
                             req.host_port, c->resource_host);
    return 0;
}
