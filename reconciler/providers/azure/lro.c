/*
 * ARM long-running operations. Some ARM writes (a vault PUT above all: Key Vault registers the
 * vault's DNS name after it answers) are accepted before they are done: 201/202, or a body whose
 * provisioningState is not terminal. Until the operation ends, the vault's name may not resolve,
 * so a key created right after the PUT fails. This module waits as the Azure SDKs do: it polls
 * the Azure-AsyncOperation URL if there is one (status InProgress/Succeeded/Failed/Canceled),
 * else the Location URL (202 running, 200/204 done), else GETs the resource until its
 * provisioningState is terminal; it waits Retry-After between polls and gives up after an overall
 * timeout. A poll URL comes from the service, and the ARM token goes with each poll: only URLs on
 * the configured ARM endpoint (same scheme, host and port) are followed.
 */
#include "azinternal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

kvr_lro_state kvr_lro_state_of(const char *status)
{
    if (!status || !*status || strcasecmp(status, "Succeeded") == 0)
        return KVR_LRO_SUCCEEDED; /* no provisioningState: the operation finished and succeeded */
    if (strcasecmp(status, "Failed") == 0)
        return KVR_LRO_FAILED;
    if (strcasecmp(status, "Canceled") == 0 || strcasecmp(status, "Cancelled") == 0)
        return KVR_LRO_CANCELED;
    return KVR_LRO_RUNNING;
}

int kvr_lro_check_url(const char *url, const char *arm_endpoint, kvr_error *err)
{
    kvr_url_info u, arm;
    kvr_error ignored;
    char shown[160];
    kvr_az_copy_clean(shown, sizeof(shown), url ? url : "");
    if (!url || kvr_http_url_info(&u, url, &ignored) < 0 ||
        kvr_http_url_info(&arm, arm_endpoint, &ignored) < 0)
        return kvr_error_set(err, KVR_EPROTO, "the operation status URL '%s' is not a URL", shown);
    if (strcmp(u.scheme, "https") != 0 || strcmp(u.scheme, arm.scheme) != 0 ||
        strcasecmp(u.host, arm.host) != 0 || u.port != arm.port)
        return kvr_error_set(err, KVR_EINSECURE,
                             "refusing to poll '%s': it is not on the ARM endpoint '%s' (the ARM "
                             "token is never sent elsewhere)",
                             shown, arm_endpoint);
    return 0;
}

kvr_lro_kind kvr_lro_plan(const char *method, const kvr_http_response *initial)
{
    const char *ps = NULL;
    json_t *body = NULL;
    kvr_lro_state st;
    bool accepted = initial->status == 201 || initial->status == 202;
    if (initial->body_len) {
        json_error_t jerr;
        body = json_loadb(initial->body, initial->body_len, 0, &jerr);
        ps = json_string_value(
            json_object_get(json_object_get(body, "properties"), "provisioningState"));
    }
    st = kvr_lro_state_of(ps);
    json_decref(body);
    if (st == KVR_LRO_FAILED || st == KVR_LRO_CANCELED)
        return KVR_LRO_ENDED_BADLY;
    if (!accepted && st != KVR_LRO_RUNNING)
        return KVR_LRO_DONE;
    if (initial->azure_async_operation && *initial->azure_async_operation)
        return KVR_LRO_ASYNC_OPERATION;
    if (initial->location && *initial->location)
        return KVR_LRO_LOCATION;
    if (strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0 ||
        (strcmp(method, "DELETE") == 0 && initial->status == 202))
        return st == KVR_LRO_RUNNING || initial->status == 202 ? KVR_LRO_RESOURCE : KVR_LRO_DONE;
    return KVR_LRO_DONE; /* a POST accepted without a URL to follow: nothing to poll */
}

void kvr_lro_config_init(kvr_lro_config *cfg)
{
    const char *t = getenv("KVR_LRO_TIMEOUT");
    cfg->default_wait_ms = 2000;
    cfg->max_wait_ms = 60000;
    cfg->timeout_ms = 30L * 60 * 1000;
    if (t && *t) { /* seconds; a pipeline may allow a slow region more, a test less */
        char *end = NULL;
        long s = strtol(t, &end, 10);
        if (end && !*end && s > 0 && s <= 24L * 3600)
            cfg->timeout_ms = s * 1000;
    }
}

/* The wait the last response asks for, within the configured bounds. */
static long next_wait(const kvr_lro_config *cfg, const kvr_http_response *r)
{
    long ms;
    if (kvr_http_retry_after_ms(&ms, r->retry_after, r->retry_after_ms, r->date, time(NULL)) < 0)
        ms = cfg->default_wait_ms;
    return ms > cfg->max_wait_ms ? cfg->max_wait_ms : ms;
}

/* "OP 'OBJECT': the operation failed: CODE: MESSAGE" from an error body (status or resource). */
static int ended_badly(kvr_error *err, kvr_lro_state st, const char *body, size_t len,
                       const char *op, const char *object)
{
    kvr_azure_error az;
    kvr_azure_error_parse(&az, body, len);
    return kvr_error_set(err, KVR_EAZURE, "%s '%s': the long-running operation %s%s%s%s%s", op,
                         object ? object : "", st == KVR_LRO_CANCELED ? "was canceled" : "failed",
                         az.code[0] ? ": " : "", az.code, az.message[0] ? ": " : "", az.message);
}

static const char *provisioning_state(json_t *j)
{
    return json_string_value(
        json_object_get(json_object_get(j, "properties"), "provisioningState"));
}

int kvr_lro_wait(json_t **out, kvr_auth *a, const char *scope, const char *arm_endpoint,
                 const char *method, const char *resource_url, const kvr_http_response *initial,
                 const char *op, const char *object, const kvr_lro_config *cfg, kvr_error *err)
{
    kvr_lro_config defaults;
    kvr_lro_kind kind = kvr_lro_plan(method, initial);
    kvr_http_response resp;
    char *url = NULL, what[200];
    double deadline;
    long wait;
    int rc = 0, polls = 0;

    if (out)
        *out = NULL;
    if (!cfg) {
        kvr_lro_config_init(&defaults);
        cfg = &defaults;
    }
    snprintf(what, sizeof(what), "%s", op);
    kvr_http_response_init(&resp);
    if (kind == KVR_LRO_ENDED_BADLY) {
        json_error_t jerr;
        json_t *b = json_loadb(initial->body, initial->body_len, 0, &jerr);
        rc = ended_badly(err, kvr_lro_state_of(provisioning_state(b)), initial->body,
                         initial->body_len, op, object);
        json_decref(b);
        goto done;
    }
    if (kind == KVR_LRO_DONE) {
        if (out && initial->body_len) {
            json_error_t jerr;
            *out = json_loadb(initial->body, initial->body_len, 0, &jerr);
        }
        goto done;
    }
    if (kind == KVR_LRO_ASYNC_OPERATION)
        url = strdup(initial->azure_async_operation);
    else if (kind == KVR_LRO_LOCATION)
        url = strdup(initial->location);
    else
        url = resource_url ? strdup(resource_url) : NULL;
    if (!url) {
        rc = resource_url || kind != KVR_LRO_RESOURCE
                 ? kvr_error_oom(err)
                 : 0; /* nothing to poll: the caller gave no resource URL */
        goto done;
    }
    deadline = kvr_mono_s() * 1000.0 + (double)cfg->timeout_ms;
    wait = next_wait(cfg, initial);
    for (;;) {
        kvr_http_request req = {.method = "GET", .url = url};
        json_t *body = NULL;
        json_error_t jerr;
        kvr_lro_state st;

        if ((rc = kvr_lro_check_url(url, arm_endpoint, err)) < 0)
            goto done;
        if (kvr_mono_s() * 1000.0 + (double)wait > deadline) {
            rc = kvr_error_set(err, KVR_ETIMEOUT,
                               "%s '%s': the long-running operation is still running after %ld s "
                               "(%d polls); it may still finish: the next run will see",
                               op, object ? object : "", cfg->timeout_ms / 1000, polls);
            goto done;
        }
        kvr_sleep_s((double)wait / 1000.0);
        kvr_http_response_release(&resp);
        kvr_http_response_init(&resp);
        polls++;
        if ((rc = kvr_auth_send(&resp, a, scope, &req, err)) < 0)
            goto done;
        wait = next_wait(cfg, &resp);
        if (kind == KVR_LRO_LOCATION) {
            if (resp.status == 202)
                continue;
            if (resp.status == 200 || resp.status == 201 || resp.status == 204) {
                if (strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0)
                    goto confirm;
                if (out && resp.body_len)
                    *out = json_loadb(resp.body, resp.body_len, 0, &jerr);
                goto done;
            }
            snprintf(what, sizeof(what), "%s (operation status)", op);
            rc = kvr_http_error(err, &resp, what, object);
            goto done;
        }
        if (kind == KVR_LRO_RESOURCE && strcmp(method, "DELETE") == 0 && resp.status == 404)
            goto done; /* gone: the delete finished */
        if (resp.status != 200) {
            snprintf(what, sizeof(what), "%s (operation status)", op);
            rc = kvr_http_error(err, &resp, what, object);
            goto done;
        }
        body = json_loadb(resp.body, resp.body_len, 0, &jerr);
        if (!body) {
            rc = kvr_error_set(err, KVR_EPROTO, "%s '%s': the operation status is not JSON", op,
                               object ? object : "");
            goto done;
        }
        if (kind == KVR_LRO_ASYNC_OPERATION) {
            const char *s = json_string_value(json_object_get(body, "status"));
            st = s ? kvr_lro_state_of(s) : KVR_LRO_RUNNING; /* a status is required: wait */
        } else {
            st = kvr_lro_state_of(provisioning_state(body));
            if (st == KVR_LRO_SUCCEEDED && strcmp(method, "DELETE") == 0)
                st = KVR_LRO_RUNNING; /* still there: the delete is not done until a 404 */
        }
        if (st == KVR_LRO_RUNNING) {
            json_decref(body);
            continue;
        }
        if (st != KVR_LRO_SUCCEEDED) {
            rc = ended_badly(err, st, resp.body, resp.body_len, op, object);
            json_decref(body);
            goto done;
        }
        if (kind == KVR_LRO_RESOURCE) {
            if (out)
                *out = body;
            else
                json_decref(body);
            goto done;
        }
        json_decref(body);
        if (strcmp(method, "PUT") != 0 && strcmp(method, "PATCH") != 0)
            goto done;
    confirm:
        /* As the SDKs do after a PUT or PATCH: read the resource itself, and keep reading while it
           still says it is not ready (the status URL may run ahead of the resource). */
        if (!resource_url)
            goto done;
        free(url);
        url = strdup(resource_url);
        kind = KVR_LRO_RESOURCE;
        wait = 0;
        if (!url) {
            rc = kvr_error_oom(err);
            goto done;
        }
    }
done:
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}
