/*
 * Azure error bodies into kvr_error. Three shapes reach us: ARM and Key Vault
 * ({"error":{"code","message","innererror":{"code",...}}}, innererror nesting), Graph (the same
 * with "innerError", which carries request ids rather than codes), and Entra's token endpoint
 * ({"error","error_description","error_codes"}). Whatever comes back is treated as hostile:
 * any size, any type, any bytes; the message keeps only what a person needs (operation, object,
 * HTTP status, Azure code and message, request id) and never a request body or token.
 */
#include "azinternal.h"

#include <stdio.h>
#include <string.h>

#define ERROR_BODY_MAX (1024 * 1024) /* an error body larger than this is not worth parsing */
#define INNER_DEPTH_MAX 16

static void copy_str(char *dst, size_t size, const json_t *v)
{
    if (json_is_string(v))
        kvr_az_copy_clean(dst, size, json_string_value(v));
}

bool kvr_azure_error_parse(kvr_azure_error *out, const char *body, size_t len)
{
    json_t *root = NULL;
    const json_t *e;

    memset(out, 0, sizeof(*out));
    if (!body || len == 0 || len > ERROR_BODY_MAX)
        goto done;
    root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root))
        goto done;
    e = json_object_get(root, "error");
    if (json_is_object(e)) {
        copy_str(out->code, sizeof(out->code), json_object_get(e, "code"));
        copy_str(out->message, sizeof(out->message), json_object_get(e, "message"));
        const json_t *in = e;
        for (int depth = 0; depth < INNER_DEPTH_MAX; depth++) {
            const json_t *next = json_object_get(in, "innererror");
            if (!next)
                next = json_object_get(in, "innerError");
            if (!json_is_object(next))
                break;
            copy_str(out->inner_code, sizeof(out->inner_code), json_object_get(next, "code"));
            in = next;
        }
    } else if (json_is_string(e)) {
        copy_str(out->code, sizeof(out->code), e);
        copy_str(out->message, sizeof(out->message), json_object_get(root, "error_description"));
        const json_t *codes = json_object_get(root, "error_codes");
        const json_t *first = json_is_array(codes) ? json_array_get(codes, 0) : NULL;
        if (json_is_integer(first))
            snprintf(out->inner_code, sizeof(out->inner_code), "AADSTS%lld",
                     (long long)json_integer_value(first));
    }
done:
    json_decref(root);
    return out->code[0] != '\0';
}

static int code_for_status(long status)
{
    switch (status) {
    case 401:
        return KVR_EAUTH;
    case 403:
        return KVR_EFORBIDDEN;
    case 404:
    case 410:
        return KVR_ENOTFOUND;
    case 409:
        return KVR_ECONFLICT;
    case 429:
        return KVR_ETHROTTLED;
    default:
        return KVR_EAZURE;
    }
}

int kvr_http_error(kvr_error *err, const kvr_http_response *resp, const char *op,
                   const char *object)
{
    kvr_azure_error az;
    char subject[160], what[264], reqid[96] = "";
    int code = code_for_status(resp->status);

    kvr_azure_error_parse(&az, resp->body, resp->body_len);
    if (object) {
        char obj[120];
        kvr_az_copy_clean(obj, sizeof(obj), object);
        snprintf(subject, sizeof(subject), "%s '%s'", op ? op : "request", obj);
    } else {
        snprintf(subject, sizeof(subject), "%s", op ? op : "request");
    }
    if (az.code[0] && az.inner_code[0] && strcmp(az.code, az.inner_code) != 0)
        snprintf(what, sizeof(what), " %s/%s", az.code, az.inner_code);
    else if (az.code[0])
        snprintf(what, sizeof(what), " %s", az.code);
    else
        what[0] = '\0';
    if (resp->request_id) {
        char id[72];
        kvr_az_copy_clean(id, sizeof(id), resp->request_id);
        snprintf(reqid, sizeof(reqid), " (request id %s)", id);
    }
    return kvr_error_set(err, code, "%s: http %ld%s%s%s%s", subject, resp->status, what,
                         az.message[0] ? ": " : "", az.message, reqid);
}
