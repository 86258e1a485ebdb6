/*
 * Blob leases in Azure Storage: the client side of the `azureblob` lock (kvr/blob.h).
 *
 * Why a blob lease: runs on several machines (CI runners that change every run, watch replicas)
 * must take turns on one estate, and the coordinator Azure users already trust is a lease on a
 * blob: Azure grants it to one lease id at a time, lets only that id renew or release it, and
 * lets it run out on its own when its holder dies. Only the calls the lock needs are here (Lease
 * Blob's acquire/renew/release/break, Put Blob to create the blob once, Set Blob Metadata for
 * who holds it, List Blobs to read that back with the lease state), sent through the one HTTP
 * engine and credential chain with a token for https://storage.azure.com and the x-ms-version a
 * current SDK sends. The Blob service answers errors in XML, with the reason in <Code>; the few
 * bytes of XML read here are parsed by hand (no XML library for two elements).
 */
#include "kvr/blob.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_HEADERS 16

int kvr_lease_id_new(char *buf, size_t size, kvr_error *err)
{
    unsigned char r[16];
    if (size < KVR_LEASE_ID_LEN + 1)
        return kvr_error_set(err, KVR_EINVAL, "lease id buffer too small");
    if (RAND_bytes(r, sizeof(r)) != 1)
        return kvr_error_set(err, KVR_EIO, "no random bytes for a lease id");
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(buf, size,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    return 0;
}

/* ---- pure helpers --------------------------------------------------------------------------- */

/* The text between <tag> and </tag> in [p, end), or NULL; *n its length. */
static const char *element(const char *p, const char *end, const char *tag, size_t *n)
{
    char open[64], close[64];
    size_t ol, cl;
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    ol = strlen(open);
    cl = strlen(close);
    for (const char *s = p; s + ol <= end; s++) {
        if (memcmp(s, open, ol) != 0)
            continue;
        s += ol;
        for (const char *e = s; e + cl <= end; e++)
            if (memcmp(e, close, cl) == 0) {
                *n = (size_t)(e - s);
                return s;
            }
        return NULL;
    }
    return NULL;
}

/* XML text into out: the five predefined entities decoded, control characters as '?'. */
static void xml_text(char *out, size_t size, const char *s, size_t n)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size;) {
        char c = s[i];
        size_t adv = 1;
        if (c == '&')
            for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
                size_t el = strlen(ents[k].ent);
                if (i + el <= n && memcmp(s + i, ents[k].ent, el) == 0) {
                    c = ents[k].c;
                    adv = el;
                    break;
                }
            }
        out[o++] = ((unsigned char)c < 0x20 || c == 0x7f) ? '?' : c;
        i += adv;
    }
    out[o] = '\0';
}

void kvr_blob_error_code(char *out, size_t size, const char *body, size_t len)
{
    size_t n;
    const char *c = body ? element(body, body + len, "Code", &n) : NULL;
    if (!c) {
        if (size)
            out[0] = '\0';
        return;
    }
    xml_text(out, size, c, n);
}

void kvr_blob_info_parse(kvr_blob_info *out, const char *xml, size_t len, const char *name)
{
    const char *end = xml ? xml + len : NULL;
    memset(out, 0, sizeof(*out));
    for (const char *p = xml; p && p < end;) {
        size_t bn, nn, mn, sn;
        const char *blob = element(p, end, "Blob", &bn), *nm, *meta, *st;
        char bname[1100];
        if (!blob)
            return;
        p = blob + bn;
        nm = element(blob, blob + bn, "Name", &nn);
        if (!nm)
            continue;
        xml_text(bname, sizeof(bname), nm, nn);
        if (strcmp(bname, name) != 0)
            continue;
        out->exists = true;
        if ((st = element(blob, blob + bn, "LeaseState", &sn)))
            xml_text(out->lease_state, sizeof(out->lease_state), st, sn);
        if ((meta = element(blob, blob + bn, "Metadata", &mn))) {
            char pid[32] = "", host[128] = "", cmd[32] = "", since[40] = "";
            struct {
                const char *tag;
                char *dst;
                size_t size;
            } f[] = {{"kvr_pid", pid, sizeof(pid)},
                     {"kvr_host", host, sizeof(host)},
                     {"kvr_command", cmd, sizeof(cmd)},
                     {"kvr_since", since, sizeof(since)}};
            for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
                size_t vn;
                const char *v = element(meta, meta + mn, f[i].tag, &vn);
                if (v)
                    xml_text(f[i].dst, f[i].size, v, vn);
            }
            if (pid[0] || host[0])
                snprintf(out->holder, sizeof(out->holder), "pid %s on %s, kvreconcile %s, since %s",
                         pid[0] ? pid : "?", host[0] ? host : "?", cmd[0] ? cmd : "?",
                         since[0] ? since : "?");
        }
        return;
    }
}

/* ---- calls ---------------------------------------------------------------------------------- */

static char *blob_url(const kvr_blob_ref *b, const char *query)
{
    size_t n = strlen(b->endpoint);
    while (n && b->endpoint[n - 1] == '/')
        n--;
    return kvr_asprintf("%.*s/%s/%s%s", (int)n, b->endpoint, b->container, b->blob,
                        query ? query : "");
}

/* x-ms-date: Storage wants the request time on every authorised request (RFC 1123, GMT). */
static void date_header(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    char d[64];
    strftime(d, sizeof(d), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    snprintf(buf, size, "x-ms-date: %s", d);
}

/* One Storage call: `extra` (NULL-terminated header lines) besides x-ms-version and x-ms-date.
   *code receives the XML error code of a non-2xx answer. */
static int call(kvr_http_response *resp, char *code, size_t code_size, kvr_auth *a,
                const char *method, const char *url, const char *const *extra, unsigned flags,
                kvr_error *err)
{
    const char *hdrs[MAX_HEADERS];
    char date[96];
    size_t n = 0;
    kvr_http_request req;
    int rc;

    date_header(date, sizeof(date));
    hdrs[n++] = "x-ms-version: " KVR_STORAGE_VERSION;
    hdrs[n++] = date;
    for (size_t i = 0; extra && extra[i] && n + 1 < MAX_HEADERS; i++)
        hdrs[n++] = extra[i];
    hdrs[n] = NULL;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.headers = hdrs;
    req.flags = flags;
    code[0] = '\0';
    if ((rc = kvr_auth_send(resp, a, KVR_STORAGE_SCOPE, &req, err)) < 0)
        return rc;
    if (resp->status < 200 || resp->status > 299)
        kvr_blob_error_code(code, code_size, resp->body, resp->body_len);
    return 0;
}

/* "OP 'container/blob': http STATUS CODE (request id ID)" with the code `what` a status gets. */
static int blob_error(kvr_error *err, const kvr_http_response *resp, const char *code,
                      const char *op, const kvr_blob_ref *b)
{
    int c = resp->status == 403   ? KVR_EFORBIDDEN
            : resp->status == 401 ? KVR_EAUTH
            : resp->status == 404 ? KVR_ENOTFOUND
            : resp->status == 409 ? KVR_ECONFLICT
            : resp->status == 429 ? KVR_ETHROTTLED
                                  : KVR_EAZURE;
    if (resp->status == 403 || resp->status == 401)
        return kvr_error_set(err, c,
                             "%s '%s/%s': http %ld %s: the identity may not use this storage "
                             "account's blobs (it needs the 'Storage Blob Data Contributor' role "
                             "on the container, and the account must allow Entra "
                             "authorisation) (request id %s)",
                             op, b->container, b->blob, resp->status, code[0] ? code : "",
                             resp->request_id ? resp->request_id : "none");
    if (resp->status == 404 && strcmp(code, "ContainerNotFound") == 0)
        return kvr_error_set(err, c,
                             "%s '%s/%s': the container '%s' does not exist in the storage "
                             "account at %s: create it (kvreconcile creates the blob, not the "
                             "container)",
                             op, b->container, b->blob, b->container, b->endpoint);
    if (resp->status == 404 && strcmp(code, "ResourceNotFound") == 0)
        return kvr_error_set(err, c,
                             "%s '%s/%s': http 404 ResourceNotFound: no such storage account at "
                             "%s",
                             op, b->container, b->blob, b->endpoint);
    return kvr_error_set(err, c, "%s '%s/%s': http %ld%s%s (request id %s)", op, b->container,
                         b->blob, resp->status, code[0] ? " " : "", code,
                         resp->request_id ? resp->request_id : "none");
}

static bool lost_status(long status)
{
    return status == 409 || status == 412 || status == 404;
}

/* Put Blob: an empty block blob, only if there is none (If-None-Match: *). */
static int create_blob(kvr_auth *a, const kvr_blob_ref *b, kvr_error *err)
{
    static const char *const hdrs[] = {"x-ms-blob-type: BlockBlob", "If-None-Match: *",
                                       "Content-Type: application/octet-stream", NULL};
    kvr_http_response resp;
    char code[96], *url = blob_url(b, NULL);
    int rc;
    if (!url)
        return kvr_error_oom(err);
    kvr_http_response_init(&resp);
    rc = call(&resp, code, sizeof(code), a, "PUT", url, hdrs, 0, err);
    /* 409 BlobAlreadyExists / 412: another run made it first, as good */
    if (rc == 0 && resp.status != 201 && resp.status != 409 && resp.status != 412)
        rc = blob_error(err, &resp, code, "create lease blob", b);
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}

int kvr_blob_lease_acquire(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                           const char *lease_id, int duration_s, kvr_error *err)
{
    char dur[64], prop[96], code[96], *url = blob_url(b, "?comp=lease");
    const char *hdrs[] = {"x-ms-lease-action: acquire", dur, prop, NULL};
    int rc = 0;

    *out = KVR_LEASE_HELD;
    if (!url)
        return kvr_error_oom(err);
    snprintf(dur, sizeof(dur), "x-ms-lease-duration: %d", duration_s);
    snprintf(prop, sizeof(prop), "x-ms-proposed-lease-id: %s", lease_id);
    for (int attempt = 0; attempt < 3; attempt++) {
        kvr_http_response resp;
        kvr_http_response_init(&resp);
        rc = call(&resp, code, sizeof(code), a, "PUT", url, hdrs, 0, err);
        if (rc == 0 && (resp.status == 201 || resp.status == 200)) {
            *out = KVR_LEASE_OK;
        } else if (rc == 0 && resp.status == 409) {
            *out = KVR_LEASE_HELD; /* LeaseAlreadyPresent: someone else's */
        } else if (rc == 0 && resp.status == 404 && strcmp(code, "BlobNotFound") == 0) {
            kvr_http_response_release(&resp);
            if ((rc = create_blob(a, b, err)) < 0)
                break;
            continue;
        } else if (rc == 0) {
            rc = blob_error(err, &resp, code, "acquire lease on", b);
        }
        kvr_http_response_release(&resp);
        break;
    }
    free(url);
    return rc;
}

/* renew and release: the same call with another action */
static int lease_call(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                      const char *lease_id, const char *action, kvr_error *err)
{
    char act[64], id[96], code[96], *url = blob_url(b, "?comp=lease");
    const char *hdrs[] = {act, id, NULL};
    kvr_http_response resp;
    int rc;

    *out = KVR_LEASE_LOST;
    if (!url)
        return kvr_error_oom(err);
    snprintf(act, sizeof(act), "x-ms-lease-action: %s", action);
    snprintf(id, sizeof(id), "x-ms-lease-id: %s", lease_id);
    kvr_http_response_init(&resp);
    rc = call(&resp, code, sizeof(code), a, "PUT", url, hdrs, 0, err);
    if (rc == 0 && resp.status == 200) {
        *out = KVR_LEASE_OK;
    } else if (rc == 0 && lost_status(resp.status)) {
        /* LeaseIsBrokenAndCannotBeRenewed, LeaseIdMismatchWithLeaseOperation, LeaseLost,
           LeaseNotPresentWithLeaseOperation, BlobNotFound: not ours any more */
        kvr_error_set(err, KVR_ECONFLICT, "the lease on '%s/%s' is no longer this run's: http "
                      "%ld %s", b->container, b->blob, resp.status, code[0] ? code : "");
    } else if (rc == 0) {
        rc = blob_error(err, &resp, code, action, b);
    }
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}

int kvr_blob_lease_renew(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                         const char *lease_id, kvr_error *err)
{
    return lease_call(out, a, b, lease_id, "renew", err);
}

int kvr_blob_lease_release(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                           const char *lease_id, kvr_error *err)
{
    return lease_call(out, a, b, lease_id, "release", err);
}

int kvr_blob_lease_break(kvr_auth *a, const kvr_blob_ref *b, int period_s, kvr_error *err)
{
    char period[64], code[96], *url = blob_url(b, "?comp=lease");
    const char *hdrs[] = {"x-ms-lease-action: break", period, NULL};
    kvr_http_response resp;
    int rc;
    if (!url)
        return kvr_error_oom(err);
    snprintf(period, sizeof(period), "x-ms-lease-break-period: %d", period_s);
    kvr_http_response_init(&resp);
    rc = call(&resp, code, sizeof(code), a, "PUT", url, hdrs, 0, err);
    /* 409 LeaseNotPresentWithLeaseOperation: nothing to break */
    if (rc == 0 && resp.status != 202 && resp.status != 200 && resp.status != 409)
        rc = blob_error(err, &resp, code, "break lease on", b);
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}

static bool meta_name_ok(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

int kvr_blob_set_metadata(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                          const char *lease_id, const char *const *pairs, kvr_error *err)
{
    char *lines[MAX_HEADERS] = {NULL}, code[96], *url = blob_url(b, "?comp=metadata");
    const char *hdrs[MAX_HEADERS];
    size_t n = 0;
    kvr_http_response resp;
    int rc = 0;

    *out = KVR_LEASE_LOST;
    kvr_http_response_init(&resp);
    if (!url) {
        rc = kvr_error_oom(err);
        goto done;
    }
    if (lease_id && !(lines[n++] = kvr_asprintf("x-ms-lease-id: %s", lease_id))) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t i = 0; pairs && pairs[i] && pairs[i + 1] && n + 3 < MAX_HEADERS; i += 2) {
        char v[256];
        size_t k = 0;
        if (!meta_name_ok(pairs[i])) {
            rc = kvr_error_set(err, KVR_EINVAL, "bad metadata name '%s'", pairs[i]);
            goto done;
        }
        for (const char *p = pairs[i + 1]; *p && k + 1 < sizeof(v); p++)
            v[k++] = (*p < 0x20 || *p > 0x7e) ? '?' : *p; /* a header value: printable ASCII */
        v[k] = '\0';
        if (!(lines[n++] = kvr_asprintf("x-ms-meta-%s: %s", pairs[i], v))) {
            rc = kvr_error_oom(err);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++)
        hdrs[i] = lines[i];
    hdrs[n] = NULL;
    rc = call(&resp, code, sizeof(code), a, "PUT", url, hdrs, 0, err);
    if (rc == 0 && resp.status == 200)
        *out = KVR_LEASE_OK;
    else if (rc == 0 && lost_status(resp.status))
        kvr_error_set(err, KVR_ECONFLICT, "the lease on '%s/%s' is no longer this run's: http "
                      "%ld %s", b->container, b->blob, resp.status, code);
    else if (rc == 0)
        rc = blob_error(err, &resp, code, "set metadata of", b);
done:
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}

int kvr_blob_info_get(kvr_blob_info *out, kvr_auth *a, const kvr_blob_ref *b, kvr_error *err)
{
    size_t n = strlen(b->endpoint);
    char code[96], *url;
    kvr_http_response resp;
    int rc;

    memset(out, 0, sizeof(*out));
    while (n && b->endpoint[n - 1] == '/')
        n--;
    url = kvr_asprintf("%.*s/%s?restype=container&comp=list&prefix=%s&include=metadata",
                       (int)n, b->endpoint, b->container, b->blob);
    if (!url)
        return kvr_error_oom(err);
    kvr_http_response_init(&resp);
    rc = call(&resp, code, sizeof(code), a, "GET", url, NULL, 0, err);
    if (rc == 0 && resp.status == 200)
        kvr_blob_info_parse(out, resp.body, resp.body_len, b->blob);
    else if (rc == 0)
        rc = blob_error(err, &resp, code, "read lease of", b);
    kvr_http_response_release(&resp);
    free(url);
    return rc;
}
