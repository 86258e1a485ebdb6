/*
 * Unit tests of the Azure client layer's pure parts: Retry-After and backoff, the Key Vault
 * challenge (including hostile headers and the host-suffix check), Azure error bodies of every
 * shape (and broken ones), the JWT client assertion (decoded and its signature verified), the
 * secret-safe buffer, form encoding, URLs and paging links, token responses, credential-file
 * permissions, and the engine's refusals that happen before any network access. No network is
 * used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kvr/azure.h"
#include "kvr/blob.h"
#include "azinternal.h"

/* ---- Retry-After and backoff -------------------------------------------------------------- */

static void test_azure__retry_after_seconds(void **state)
{
    long ms = -1;
    (void)state;
    assert_int_equal(kvr_http_retry_after_ms(&ms, "120", NULL, NULL, 0), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(kvr_http_retry_after_ms(&ms, " 5 ", NULL, NULL, 0), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(kvr_http_retry_after_ms(&ms, "0", NULL, NULL, 0), 0);
    assert_int_equal(ms, 0);
    /* absurd values are capped, not overflowed */
    assert_int_equal(kvr_http_retry_after_ms(&ms, "99999999999999999999999", NULL, NULL, 0), 0);
    assert_int_equal(ms, 24L * 3600 * 1000);
    /* x-ms-retry-after-ms wins */
    assert_int_equal(kvr_http_retry_after_ms(&ms, "120", "250", NULL, 0), 0);
    assert_int_equal(ms, 250);
    /* a broken x-ms-retry-after-ms falls back to Retry-After */
    assert_int_equal(kvr_http_retry_after_ms(&ms, "3", "soon", NULL, 0), 0);
    assert_int_equal(ms, 3000);
}

static void test_azure__retry_after_rejects(void **state)
{
    static const char *const bad[] = {"",     " ",  "-5",          "1.5", "5s", "abc",
                                      "0x10", "+3", "Wed, 99 Foo", "1e3", NULL};
    (void)state;
    for (size_t i = 0; bad[i]; i++) {
        long ms = 7;
        if (kvr_http_retry_after_ms(&ms, bad[i], NULL, NULL, 0) != KVR_ENOTFOUND)
            fail_msg("retry-after '%s' accepted as %ld", bad[i], ms);
    }
    long ms = 7;
    assert_int_equal(kvr_http_retry_after_ms(&ms, NULL, NULL, NULL, 0), KVR_ENOTFOUND);
}

static void test_azure__retry_after_http_date(void **state)
{
    long ms = -1;
    (void)state;
    /* measured against the response's own Date, not our clock */
    assert_int_equal(kvr_http_retry_after_ms(&ms, "Wed, 21 Oct 2015 07:28:30 GMT", NULL,
                                             "Wed, 21 Oct 2015 07:28:00 GMT", 0),
                     0);
    assert_int_equal(ms, 30000);
    /* without Date: against now (2015-10-21T07:28:00Z = 1445412480) */
    assert_int_equal(
        kvr_http_retry_after_ms(&ms, "Wed, 21 Oct 2015 07:29:00 GMT", NULL, NULL, 1445412480), 0);
    assert_int_equal(ms, 60000);
    /* in the past: no hint at all, so the usual backoff applies, never back-to-back retries
       (issue #18) */
    assert_int_equal(kvr_http_retry_after_ms(&ms, "Wed, 21 Oct 2015 07:00:00 GMT", NULL,
                                             "Wed, 21 Oct 2015 07:28:00 GMT", 0),
                     KVR_ENOTFOUND);
    assert_int_equal(ms, 0);
    assert_int_equal(kvr_http_retry_after_ms(&ms, "Wed, 21 Oct 2015 07:28:00 GMT", NULL,
                                             "Wed, 21 Oct 2015 07:28:00 GMT", 0),
                     KVR_ENOTFOUND);
    /* a broken Date falls back to now */
    assert_int_equal(
        kvr_http_retry_after_ms(&ms, "Wed, 21 Oct 2015 07:28:10 GMT", NULL, "junk", 1445412480), 0);
    assert_int_equal(ms, 10000);
}

static void test_azure__backoff_bounds(void **state)
{
    static const uint32_t rnds[] = {0, 1, 12345, 0x7fffffff, 0xffffffff};
    (void)state;
    for (int retry = 0; retry < 70; retry++) {
        long ceiling = 1000;
        for (int i = 0; i < retry && ceiling < 30000; i++)
            ceiling *= 2;
        if (ceiling > 30000)
            ceiling = 30000;
        for (size_t k = 0; k < sizeof(rnds) / sizeof(rnds[0]); k++) {
            long v = kvr_http_backoff_ms(retry, 1000, 30000, rnds[k]);
            assert_true(v >= 0);
            assert_true(v <= ceiling);
        }
        for (int k = 0; k < 200; k++) {
            long v = kvr_http_backoff_ms(retry, 1000, 30000, kvr_az_random32());
            assert_true(v >= 0 && v <= ceiling);
        }
    }
    assert_int_equal(kvr_http_backoff_ms(0, 1000, 30000, 0), 0);
    assert_int_equal(kvr_http_backoff_ms(0, 1000, 30000, 1000), 1000);
    assert_int_equal(kvr_http_backoff_ms(1, 1000, 30000, 2000), 2000);
    assert_int_equal(kvr_http_backoff_ms(1000000, 1000, 30000, 30000), 30000);
    /* base above cap, negative inputs */
    assert_true(kvr_http_backoff_ms(0, 50000, 30000, 0xffffffff) <= 30000);
    assert_int_equal(kvr_http_backoff_ms(3, -5, -5, 77), 0);
}

static void test_azure__status_retryable(void **state)
{
    (void)state;
    assert_true(kvr_http_status_retryable(429));
    assert_true(kvr_http_status_retryable(500));
    assert_true(kvr_http_status_retryable(502));
    assert_true(kvr_http_status_retryable(503));
    assert_true(kvr_http_status_retryable(504));
    assert_false(kvr_http_status_retryable(200));
    assert_false(kvr_http_status_retryable(401));
    assert_false(kvr_http_status_retryable(404));
    assert_false(kvr_http_status_retryable(409));
    assert_false(kvr_http_status_retryable(501));
}

static void test_azure__write_window(void **state)
{
    kvr_window w = {0};
    (void)state;
    /* 3 per 1000 ms: three at once, the fourth when the first leaves the window */
    for (int i = 0; i < 3; i++) {
        assert_true(kvr_window_wait(&w, 3, 1000, 100 + i) == 0);
        kvr_window_note(&w, 3, 100 + i);
    }
    double wait = kvr_window_wait(&w, 3, 1000, 500);
    assert_true(wait > 599.9 && wait < 600.1);
    assert_true(kvr_window_wait(&w, 3, 1000, 1100) == 0);
    kvr_window_note(&w, 3, 1100);
    /* the next oldest is the one at 101 */
    wait = kvr_window_wait(&w, 3, 1000, 1100);
    assert_true(wait > 0.9 && wait < 1.1);
    /* never more than `limit` in any span: count over a long run at full speed */
    kvr_window v = {0};
    double t = 0;
    size_t in_first_span = 0;
    for (int i = 0; i < 1000; i++) {
        double d = kvr_window_wait(&v, 300, 10000, t);
        t += d;
        kvr_window_note(&v, 300, t);
        if (t < 10000)
            in_first_span++;
    }
    assert_int_equal(in_first_span, 300);
    free(w.starts);
    free(v.starts);
}

static void test_azure__token_bucket(void **state)
{
    kvr_bucket b = {3, 1000};
    (void)state;
    /* a full bucket of 3 at 10/s: three at once, then one every 100 ms */
    assert_true(kvr_bucket_take(&b, 10, 3, 1000) == 0);
    assert_true(kvr_bucket_take(&b, 10, 3, 1000) == 0);
    assert_true(kvr_bucket_take(&b, 10, 3, 1000) == 0);
    double w = kvr_bucket_take(&b, 10, 3, 1000);
    assert_true(w > 99.9 && w < 100.1);
    w = kvr_bucket_take(&b, 10, 3, 1050);
    assert_true(w > 49.9 && w < 50.1);
    assert_true(kvr_bucket_take(&b, 10, 3, 1100) == 0);
    /* a long pause refills to the burst only */
    int taken = 0;
    while (kvr_bucket_take(&b, 10, 3, 100000) == 0)
        taken++;
    assert_int_equal(taken, 3);
    /* a clock that goes backwards adds nothing */
    w = kvr_bucket_take(&b, 10, 3, 50);
    assert_true(w > 0);
    /* the service's word caps it: ARM's bucket of 250 at 25/s, of which it says 2 are left */
    kvr_bucket arm = {250, 0};
    kvr_bucket_cap(&arm, 2, 500);
    assert_true(kvr_bucket_take(&arm, 25, 250, 500) == 0);
    assert_true(kvr_bucket_take(&arm, 25, 250, 500) == 0);
    w = kvr_bucket_take(&arm, 25, 250, 500);
    assert_true(w > 39.9 && w < 40.1);
    kvr_bucket_cap(&arm, -3, 500); /* less than nothing left is nothing */
    assert_true(arm.tokens == 0);
    kvr_bucket_cap(&arm, 100, 520); /* never raises it */
    assert_true(arm.tokens == 0 && arm.last_ms == 500);
    /* 1,000 requests at 300/s with a burst of 100 take at least 3 s of waiting */
    kvr_bucket c = {100, 0};
    double now = 0;
    for (int i = 0; i < 1000; i++) {
        double wait;
        while ((wait = kvr_bucket_take(&c, 300, 100, now)) > 0)
            now += wait;
    }
    assert_true(now >= 2999.0 && now <= 3001.0);
}

/* ---- challenge ------------------------------------------------------------------------------ */

static void test_azure__challenge_parse(void **state)
{
    kvr_auth_challenge c;
    kvr_error err;
    (void)state;

    assert_int_equal(kvr_auth_challenge_parse(&c,
                                              "Bearer authorization=\"https://login.windows.net/"
                                              "72f988bf-86f1-41af-91ab-2d7cd011db47\", "
                                              "resource=\"https://vault.azure.net\"",
                                              &err),
                     0);
    assert_string_equal(c.tenant, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_string_equal(c.scope, "https://vault.azure.net/.default");
    assert_string_equal(c.resource_host, "vault.azure.net");
    assert_string_equal(c.authority,
                        "https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47");

    /* authorization_uri, scope wins over resource, extra parameters, odd spacing and case */
    assert_int_equal(
        kvr_auth_challenge_parse(
            &c,
            "  bearer   authorization_uri=\"https://login.microsoftonline.com/contoso.com/\","
            "resource=\"https://ignored.example\" ,scope=\"https://vault.azure.net/.default\","
            " supportspop=\"true\"",
            &err),
        0);
    assert_string_equal(c.tenant, "contoso.com");
    assert_string_equal(c.scope, "https://vault.azure.net/.default");

    /* bare values, resource with a trailing slash, a port (the simulator) */
    assert_int_equal(
        kvr_auth_challenge_parse(&c,
                                 "Bearer authorization=https://login.localhost:8443/t1, "
                                 "resource=https://vault.localhost:8443/",
                                 &err),
        0);
    assert_string_equal(c.tenant, "t1");
    assert_string_equal(c.scope, "https://vault.localhost:8443/.default");
    assert_string_equal(c.resource_host, "vault.localhost:8443");

    /* a second challenge scheme after ours */
    assert_int_equal(
        kvr_auth_challenge_parse(&c,
                                 "Bearer authorization=\"https://l/t\", resource=\"https://v\", "
                                 "PoP nonce=\"abc\"",
                                 &err),
        0);
    assert_string_equal(c.tenant, "t");
}

static void test_azure__challenge_hostile(void **state)
{
    static const char *const bad[] = {
        "",
        "Bearer",
        "Bearer ",
        "Basic realm=\"x\"",
        "Bearerx authorization=\"https://l/t\", resource=\"https://v\"",
        "Bearer resource=\"https://vault.azure.net\"",
        "Bearer authorization=\"https://login.windows.net/t\"",
        "Bearer authorization=\"http://login.windows.net/t\", resource=\"https://v\"",
        "Bearer authorization=\"https://login.windows.net/t\", resource=\"http://vault.azure.net\"",
        "Bearer authorization=\"https://login.windows.net/t\", resource=\"vault.azure.net\"",
        "Bearer authorization=\"https://login.windows.net/\", resource=\"https://v\"",
        "Bearer authorization=\"https://login.windows.net\", resource=\"https://v\"",
        "Bearer authorization=\"https://login.windows.net/t\", resource=\"https://v",
        "Bearer authorization=\"https://login.windows.net/t\r\nX: y\", resource=\"https://v\"",
        "Bearer authorization=\"https://login.windows.net/t%2F..\", resource=\"https://v\"",
        "Bearer authorization=\"https://login.windows.net/t\", resource=",
        "Bearer =\"x\"",
        "Bearer ,,,,",
        "Bearer authorization==\"https://l/t\"",
        "Bearer authorization=\"https://l/t\" resource=\"https://v\" junk",
        "Bearer authorization=\"\", resource=\"https://v\"",
        "Bearer authorization=\"https://l/t\", resource=\"/\"",
        NULL};
    kvr_auth_challenge c;
    kvr_error err;
    (void)state;
    for (size_t i = 0; bad[i]; i++) {
        err.code = 0;
        if (kvr_auth_challenge_parse(&c, bad[i], &err) == 0)
            fail_msg("challenge '%s' accepted (tenant '%s', scope '%s')", bad[i], c.tenant,
                     c.scope);
        assert_int_equal(err.code, KVR_EPROTO);
    }
    assert_int_equal(kvr_auth_challenge_parse(&c, NULL, &err), KVR_EPROTO);

    /* oversized header and oversized single value */
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    memcpy(big, "Bearer authorization=\"https://l/", 32);
    assert_int_equal(kvr_auth_challenge_parse(&c, big, &err), KVR_EPROTO);
    big[3000] = '\0';
    assert_int_equal(kvr_auth_challenge_parse(&c, big, &err), KVR_EPROTO);
    free(big);
}

static void test_azure__challenge_host_check(void **state)
{
    kvr_auth_challenge c;
    kvr_error err;
    (void)state;
    assert_int_equal(
        kvr_auth_challenge_parse(&c,
                                 "Bearer authorization=\"https://login.windows.net/t\", "
                                 "resource=\"https://vault.azure.net\"",
                                 &err),
        0);
    assert_int_equal(
        kvr_auth_challenge_check(&c, "https://myvault.vault.azure.net/keys?api-version=7.5", &err),
        0);
    assert_int_equal(kvr_auth_challenge_check(&c, "https://MyVault.Vault.Azure.Net:443/keys", &err),
                     0);
    static const char *const refused[] = {"https://evil.example/keys",
                                          "https://vault.azure.net.evil.example/keys",
                                          "https://myvaultvault.azure.net/keys",
                                          "https://vault.azure.net/keys",
                                          "http://myvault.vault.azure.net/keys",
                                          "https://myvault.vault.azure.net.:443/keys",
                                          NULL};
    for (size_t i = 0; refused[i]; i++) {
        err.code = 0;
        if (kvr_auth_challenge_check(&c, refused[i], &err) == 0)
            fail_msg("challenge for vault.azure.net accepted for '%s'", refused[i]);
    }
    assert_int_equal(kvr_auth_challenge_check(&c, "https://evil.example/", &err), KVR_EINSECURE);
    assert_non_null(strstr(err.message, "evil.example"));

    /* with a port in the resource, the port must match too */
    assert_int_equal(
        kvr_auth_challenge_parse(&c,
                                 "Bearer authorization=\"https://login.localhost:8443/t\", "
                                 "resource=\"https://vault.localhost:8443\"",
                                 &err),
        0);
    assert_int_equal(kvr_auth_challenge_check(&c, "https://kv1.vault.localhost:8443/secrets", &err),
                     0);
    assert_int_equal(kvr_auth_challenge_check(&c, "https://kv1.vault.localhost:9443/secrets", &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_auth_challenge_check(&c, "https://kv1.vault.localhost/secrets", &err),
                     KVR_EINSECURE);
}

/* ---- Azure error bodies --------------------------------------------------------------------- */

static bool parse(kvr_azure_error *e, const char *s)
{
    return kvr_azure_error_parse(e, s, strlen(s));
}

static void test_azure__error_shapes(void **state)
{
    kvr_azure_error e;
    (void)state;
    assert_true(parse(&e,
                      "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Caller is not authorized."
                      "\",\"innererror\":{\"code\":\"ForbiddenByRbac\"}}}"));
    assert_string_equal(e.code, "Forbidden");
    assert_string_equal(e.inner_code, "ForbiddenByRbac");
    assert_string_equal(e.message, "Caller is not authorized.");

    /* nested innererror: the innermost code */
    assert_true(
        parse(&e, "{\"error\":{\"code\":\"Conflict\",\"message\":\"m\",\"innererror\":{\"code\":"
                  "\"A\",\"innererror\":{\"code\":\"ObjectIsDeletedButRecoverable\"}}}}"));
    assert_string_equal(e.inner_code, "ObjectIsDeletedButRecoverable");

    /* Graph */
    assert_true(parse(&e,
                      "{\"error\":{\"code\":\"Request_ResourceNotFound\",\"message\":\"Resource "
                      "'x' does not exist\",\"innerError\":{\"date\":\"2024-01-01T00:00:00\","
                      "\"request-id\":\"r\",\"client-request-id\":\"c\"}}}"));
    assert_string_equal(e.code, "Request_ResourceNotFound");
    assert_string_equal(e.inner_code, "");

    /* ARM with details */
    assert_true(
        parse(&e, "{\"error\":{\"code\":\"ConflictError\",\"message\":\"held\",\"target\":\"t\","
                  "\"details\":[{\"code\":\"x\"}],\"additionalInfo\":[]}}"));
    assert_string_equal(e.code, "ConflictError");

    /* Entra */
    assert_true(parse(&e, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: "
                          "Invalid client secret provided.\",\"error_codes\":[7000215],"
                          "\"timestamp\":\"t\",\"trace_id\":\"g\",\"correlation_id\":\"g\"}"));
    assert_string_equal(e.code, "invalid_client");
    assert_string_equal(e.inner_code, "AADSTS7000215");
    assert_string_equal(e.message, "AADSTS7000215: Invalid client secret provided.");
}

static void test_azure__error_broken(void **state)
{
    static const char *const bad[] = {"",
                                      "{",
                                      "{\"error\":{\"code\":\"Forb",
                                      "[]",
                                      "null",
                                      "42",
                                      "<html><body>502 Bad Gateway</body></html>",
                                      "{\"error\":42}",
                                      "{\"error\":{\"code\":42,\"message\":\"m\"}}",
                                      "{\"error\":{\"code\":null}}",
                                      "{\"error\":[\"x\"]}",
                                      "{\"error\":{}}",
                                      "{\"err\":{\"code\":\"X\"}}",
                                      "{\"error\":\"\"}",
                                      NULL};
    kvr_azure_error e;
    (void)state;
    for (size_t i = 0; bad[i]; i++)
        if (parse(&e, bad[i]))
            fail_msg("broken error body '%s' parsed as code '%s'", bad[i], e.code);
    assert_false(kvr_azure_error_parse(&e, NULL, 0));

    /* wrong-typed inner parts keep what is usable */
    assert_true(parse(&e, "{\"error\":{\"code\":\"X\",\"message\":[1],\"innererror\":\"y\"}}"));
    assert_string_equal(e.code, "X");
    assert_string_equal(e.message, "");
    assert_string_equal(e.inner_code, "");
    assert_true(parse(&e, "{\"error\":\"bad\",\"error_codes\":\"x\",\"error_description\":7}"));
    assert_string_equal(e.inner_code, "");

    /* control characters are neutralised, long fields truncated */
    assert_true(parse(&e, "{\"error\":{\"code\":\"X\",\"message\":\"line1\\nline2\\u001b[31m\"}}"));
    assert_null(strchr(e.message, '\n'));
    assert_null(strchr(e.message, '\x1b'));
    size_t n = 100000;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int off = snprintf(big, 64, "{\"error\":{\"code\":\"X\",\"message\":\"");
    memset(big + off, 'm', n);
    memcpy(big + off + n, "\"}}", 4);
    assert_true(parse(&e, big));
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    free(big);

    /* huge body: not parsed at all */
    n = 3 * 1024 * 1024;
    big = malloc(n + 64);
    assert_non_null(big);
    off = snprintf(big, 64, "{\"error\":{\"code\":\"X\",\"message\":\"");
    memset(big + off, 'm', n);
    memcpy(big + off + n, "\"}}", 4);
    assert_false(parse(&e, big));
    free(big);

    /* deep nesting does not crash */
    char deep[8192];
    size_t k = 0;
    for (; k < 4000; k++)
        deep[k] = '[';
    deep[k] = '\0';
    assert_false(parse(&e, deep));
}

static void test_azure__error_message(void **state)
{
    kvr_http_response r;
    kvr_error err;
    char body[] = "{\"error\":{\"code\":\"Forbidden\",\"message\":\"The user does not have "
                  "secrets get permission\",\"innererror\":{\"code\":\"ForbiddenByRbac\"}}}";
    (void)state;
    kvr_http_response_init(&r);
    r.status = 403;
    r.body = body;
    r.body_len = strlen(body);
    r.request_id = (char *)"abc-123";
    assert_int_equal(kvr_http_error(&err, &r, "get secret", "db-password"), KVR_EFORBIDDEN);
    assert_string_equal(err.message,
                        "get secret 'db-password': http 403 Forbidden/ForbiddenByRbac: "
                        "The user does not have secrets get permission (request id abc-123)");
    r.request_id = NULL;
    r.status = 404;
    assert_int_equal(kvr_http_error(&err, &r, "get key", NULL), KVR_ENOTFOUND);
    r.status = 409;
    assert_int_equal(kvr_http_error(&err, &r, "x", NULL), KVR_ECONFLICT);
    r.status = 429;
    assert_int_equal(kvr_http_error(&err, &r, "x", NULL), KVR_ETHROTTLED);
    r.status = 401;
    assert_int_equal(kvr_http_error(&err, &r, "x", NULL), KVR_EAUTH);
    r.status = 500;
    r.body = (char *)"<html>oops</html>";
    r.body_len = strlen(r.body);
    assert_int_equal(kvr_http_error(&err, &r, "list vaults", NULL), KVR_EAZURE);
    assert_string_equal(err.message, "list vaults: http 500");
    assert_string_equal(kvr_strerror(KVR_ETHROTTLED), "throttled");
    assert_string_equal(kvr_strerror(KVR_ENOMEM), "out of memory");
}

/* ---- JWT client assertion ------------------------------------------------------------------- */

static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
    unsigned char *out = malloc(n + 4);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(tab, s[i]);
        if (!p || !s[i]) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static json_t *decode_part(const char *s, size_t n)
{
    size_t len = 0;
    unsigned char *raw = b64url_decode(s, n, &len);
    assert_non_null(raw);
    json_t *j = json_loadb((const char *)raw, len, 0, NULL);
    free(raw);
    return j;
}

/* A fresh RSA key and a self-signed certificate for it, as one PEM (key first). */
static char *make_pem(EVP_PKEY **out_key, X509 **out_cert, const char *alg)
{
    EVP_PKEY *key = strcmp(alg, "rsa") == 0 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *pem;
    long n;
    assert_non_null(key);
    assert_non_null(cert);
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)"kvr-test", -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(PEM_write_bio_X509(bio, cert), 1);
    n = BIO_get_mem_data(bio, &data);
    pem = malloc((size_t)n + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(bio);
    *out_key = key;
    *out_cert = cert;
    return pem;
}

static void test_azure__assertion(void **state)
{
    EVP_PKEY *key;
    X509 *cert;
    char *pem = make_pem(&key, &cert, "rsa");
    char *jwt = NULL;
    kvr_error err;
    (void)state;

    assert_int_equal(kvr_auth_assertion(&jwt, pem, strlen(pem),
                                        "https://login.microsoftonline.com/", "tenant-1",
                                        "client-1", 1700000000, &err),
                     0);
    const char *d1 = strchr(jwt, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    assert_null(strchr(jwt, '='));

    json_t *h = decode_part(jwt, (size_t)(d1 - jwt));
    json_t *c = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_non_null(h);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "PS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");

    /* x5t#S256 is the base64url SHA-256 of the certificate's DER */
    unsigned char *der = NULL, digest[32];
    unsigned int dl = 0;
    int der_len = i2d_X509(cert, &der);
    assert_true(der_len > 0);
    assert_int_equal(EVP_Digest(der, (size_t)der_len, digest, &dl, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    kvr_sbuf thumb = {0};
    assert_int_equal(kvr_b64url_add(&thumb, digest, dl), 0);
    assert_string_equal(json_string_value(json_object_get(h, "x5t#S256")), thumb.p);
    kvr_sbuf_release(&thumb);

    assert_string_equal(json_string_value(json_object_get(c, "aud")),
                        "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token");
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "client-1");
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "client-1");
    const char *jti = json_string_value(json_object_get(c, "jti"));
    assert_non_null(jti);
    assert_int_equal(strlen(jti), 36);
    assert_int_equal(jti[14], '4');
    assert_int_equal(json_integer_value(json_object_get(c, "nbf")), 1700000000);
    json_int_t exp = json_integer_value(json_object_get(c, "exp"));
    assert_true(exp > 1700000000 && exp <= 1700000000 + 600);

    /* the signature verifies with the public key as RSA-PSS SHA-256, salt 32 */
    size_t siglen = 0;
    unsigned char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &siglen);
    assert_non_null(sig);
    assert_int_equal(siglen, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
    assert_int_equal(
        EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    EVP_MD_CTX_free(md);
    /* and not for tampered content */
    md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(
        EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt) - 1), 0);
    EVP_MD_CTX_free(md);

    /* two assertions never share a jti */
    char *jwt2 = NULL;
    assert_int_equal(kvr_auth_assertion(&jwt2, pem, strlen(pem), "https://l", "t", "c", 1, &err),
                     0);
    json_t *c2 =
        decode_part(strchr(jwt2, '.') + 1, (size_t)(strrchr(jwt2, '.') - strchr(jwt2, '.') - 1));
    assert_string_not_equal(json_string_value(json_object_get(c2, "jti")), jti);
    assert_string_equal(json_string_value(json_object_get(c2, "aud")),
                        "https://l/t/oauth2/v2.0/token");

    json_decref(c2);
    json_decref(h);
    json_decref(c);
    free(sig);
    kvr_azure_secret_free(jwt);
    kvr_azure_secret_free(jwt2);
    free(pem);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void test_azure__assertion_rejects(void **state)
{
    EVP_PKEY *k1, *k2, *k3;
    X509 *c1, *c2, *c3;
    char *p1 = make_pem(&k1, &c1, "rsa");
    char *p2 = make_pem(&k2, &c2, "rsa");
    char *p3 = make_pem(&k3, &c3, "ec");
    char *jwt = NULL;
    kvr_error err;
    (void)state;

    /* key of one pair with the certificate of another */
    char *cert2 = strstr(p2, "-----BEGIN CERTIFICATE-----");
    char *key1_end = strstr(p1, "-----BEGIN CERTIFICATE-----");
    size_t kl = (size_t)(key1_end - p1);
    char *mixed = malloc(kl + strlen(cert2) + 1);
    memcpy(mixed, p1, kl);
    memcpy(mixed + kl, cert2, strlen(cert2) + 1);
    assert_int_equal(kvr_auth_assertion(&jwt, mixed, strlen(mixed), "https://l", "t", "c", 1, &err),
                     KVR_EAUTH);
    assert_non_null(strstr(err.message, "does not match"));
    assert_null(jwt);
    /* certificate only */
    assert_int_equal(kvr_auth_assertion(&jwt, cert2, strlen(cert2), "https://l", "t", "c", 1, &err),
                     KVR_EAUTH);
    /* key only */
    assert_int_equal(kvr_auth_assertion(&jwt, p1, kl, "https://l", "t", "c", 1, &err), KVR_EAUTH);
    /* EC key */
    assert_int_equal(kvr_auth_assertion(&jwt, p3, strlen(p3), "https://l", "t", "c", 1, &err),
                     KVR_EAUTH);
    /* garbage */
    assert_int_equal(kvr_auth_assertion(&jwt, "hello", 5, "https://l", "t", "c", 1, &err),
                     KVR_EAUTH);
    assert_int_equal(kvr_auth_assertion(&jwt, "", 0, "https://l", "t", "c", 1, &err), KVR_EINVAL);

    free(mixed);
    free(p1);
    free(p2);
    free(p3);
    X509_free(c1);
    X509_free(c2);
    X509_free(c3);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
}

/* ---- the secret-safe buffer ----------------------------------------------------------------- */

/* An announced length is taken in one buffer of exactly that size, and adding it moves nothing */
static void test_azure__sbuf_reserve(void **state)
{
    (void)state;
    kvr_sbuf b = {0};
    char chunk[1000];
    memset(chunk, 'x', sizeof(chunk));

    assert_int_equal(kvr_sbuf_adds(&b, "ab"), 0);
    assert_int_equal(kvr_sbuf_reserve(&b, 10000), 0);
    assert_int_equal(b.cap, 2 + 10000 + 1);
    assert_string_equal(b.p, "ab"); /* what it held is kept */
    const char *at = b.p;
    for (int i = 0; i < 10; i++)
        assert_int_equal(kvr_sbuf_add(&b, chunk, sizeof(chunk)), 0);
    assert_ptr_equal(b.p, at); /* filled to the byte: never moved */
    assert_int_equal(b.len, 10002);
    assert_int_equal(b.p[b.len], '\0');
    /* past the reservation it grows as before */
    assert_int_equal(kvr_sbuf_add(&b, "c", 1), 0);
    assert_true(b.cap > 10003);
    /* a reservation already covered changes nothing */
    size_t cap = b.cap;
    assert_int_equal(kvr_sbuf_reserve(&b, 1), 0);
    assert_int_equal(b.cap, cap);
    kvr_sbuf_release(&b);

    /* never beyond the cap: an announced length over it is left to kvr_sbuf_add to refuse */
    kvr_sbuf m = {.max = 1000};
    assert_int_equal(kvr_sbuf_adds(&m, "0123456789"), 0);
    assert_int_equal(kvr_sbuf_reserve(&m, 1u << 30), 0);
    assert_int_equal(m.cap, 1001);
    assert_int_equal(kvr_sbuf_add(&m, chunk, 990), 0);
    assert_int_equal(kvr_sbuf_add(&m, "y", 1), KVR_ETOOBIG);
    kvr_sbuf_release(&m);

    kvr_sbuf o = {0};
    assert_int_equal(kvr_sbuf_reserve(&o, SIZE_MAX - 1), KVR_ENOMEM);
    assert_null(o.p);
}

/* ---- form, URLs, paging ---------------------------------------------------------------------- */

static void test_azure__form_encode(void **state)
{
    char *out = NULL;
    kvr_error err;
    const char *const pairs[] = {"grant_type",
                                 "client_credentials",
                                 "scope",
                                 "https://vault.azure.net/.default",
                                 "client_secret",
                                 "a b&c=d+e%f~g.h_i-j/k\xc3\xa9",
                                 NULL};
    (void)state;
    assert_int_equal(kvr_http_form_encode(&out, pairs, &err), 0);
    assert_string_equal(out, "grant_type=client_credentials&scope=https%3A%2F%2Fvault.azure.net%2F."
                             "default&client_secret=a%20b%26c%3Dd%2Be%25f~g.h_i-j%2Fk%C3%A9");
    kvr_azure_secret_free(out);
    const char *const empty[] = {NULL};
    assert_int_equal(kvr_http_form_encode(&out, empty, &err), 0);
    assert_string_equal(out, "");
    kvr_azure_secret_free(out);
    const char *const odd[] = {"a", "", "b", NULL};
    assert_int_equal(kvr_http_form_encode(&out, odd, &err), KVR_EINVAL);
    assert_null(out);
}

static void test_azure__url_info(void **state)
{
    kvr_url_info u;
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_http_url_info(&u, "https://MyVault.Vault.Azure.NET/keys?x=1", &err), 0);
    assert_string_equal(u.scheme, "https");
    assert_string_equal(u.host, "myvault.vault.azure.net");
    assert_string_equal(u.host_port, "myvault.vault.azure.net");
    assert_int_equal(u.port, 443);
    assert_false(u.explicit_port);
    assert_int_equal(kvr_http_url_info(&u, "https://kv.vault.localhost:8443/", &err), 0);
    assert_string_equal(u.host_port, "kv.vault.localhost:8443");
    assert_int_equal(u.port, 8443);
    assert_true(u.explicit_port);
    assert_int_equal(kvr_http_url_info(&u, "http://169.254.169.254/metadata", &err), 0);
    assert_int_equal(u.port, 80);
    assert_int_equal(kvr_http_url_info(&u, "/keys", &err), KVR_EINVAL);
    assert_int_equal(kvr_http_url_info(&u, "vault.azure.net/keys", &err), KVR_EINVAL);
    assert_int_equal(kvr_http_url_info(&u, "https://", &err), KVR_EINVAL);
    assert_int_equal(kvr_http_url_info(&u, "https://h:99999/", &err), KVR_EINVAL);
    assert_int_equal(kvr_http_url_info(&u, NULL, &err), KVR_EINVAL);
}

static int next(char **out, const char *cur, const char *page_json)
{
    kvr_error err;
    json_t *page = json_loads(page_json, 0, NULL);
    int rc = kvr_http_next_link(out, cur, page, &err);
    json_decref(page);
    return rc;
}

static void test_azure__next_link(void **state)
{
    char *link = NULL;
    (void)state;
    /* Key Vault: the link names :443 explicitly; followed exactly as given */
    assert_int_equal(next(&link, "https://kv.vault.azure.net/secrets?api-version=7.5",
                          "{\"value\":[],\"nextLink\":\"https://kv.vault.azure.net:443/secrets?"
                          "api-version=7.5&$skiptoken=eyJOZXh0TWFya2VyIjoiMiF9&maxresults=1\"}"),
                     0);
    assert_string_equal(link, "https://kv.vault.azure.net:443/secrets?api-version=7.5&$skiptoken="
                              "eyJOZXh0TWFya2VyIjoiMiF9&maxresults=1");
    free(link);
    /* Graph */
    assert_int_equal(next(&link, "https://graph.microsoft.com/v1.0/applications",
                          "{\"@odata.context\":\"x\",\"value\":[],\"@odata.nextLink\":"
                          "\"https://graph.microsoft.com/v1.0/applications?$skiptoken=X%27Y\"}"),
                     0);
    assert_string_equal(link, "https://graph.microsoft.com/v1.0/applications?$skiptoken=X%27Y");
    free(link);
    /* last pages */
    assert_int_equal(next(&link, "https://a/x", "{\"value\":[]}"), 0);
    assert_null(link);
    assert_int_equal(next(&link, "https://a/x", "{\"value\":[],\"nextLink\":null}"), 0);
    assert_null(link);
    assert_int_equal(next(&link, "https://a/x", "{\"value\":[],\"nextLink\":\"\"}"), 0);
    assert_null(link);
    /* refused */
    assert_int_equal(next(&link, "https://a/x", "{\"nextLink\":\"https://evil/x\"}"),
                     KVR_EINSECURE);
    assert_int_equal(next(&link, "https://a/x", "{\"nextLink\":\"http://a/x\"}"), KVR_EINSECURE);
    assert_int_equal(next(&link, "https://a/x", "{\"nextLink\":\"https://a:8443/x\"}"),
                     KVR_EINSECURE);
    assert_int_equal(next(&link, "https://a.b/x", "{\"nextLink\":\"https://b/x\"}"), KVR_EINSECURE);
    assert_int_equal(next(&link, "https://a/x", "{\"nextLink\":\"/relative\"}"), KVR_EPROTO);
    assert_int_equal(next(&link, "https://a/x", "{\"nextLink\":42}"), KVR_EPROTO);
    assert_int_equal(next(&link, "https://a/x", "[1]"), KVR_EPROTO);
    assert_null(link);
}

/* ---- token responses --------------------------------------------------------------------------
 */

static int tok(char **t, time_t *exp, const char *body, bool imds)
{
    kvr_error err;
    return kvr_auth_parse_token(t, exp, body, strlen(body), imds, 1000, &err);
}

static void test_azure__parse_token(void **state)
{
    char *t = NULL;
    time_t exp = 0;
    (void)state;
    assert_int_equal(tok(&t, &exp,
                         "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
                         "\"ext_expires_in\":3599,\"access_token\":\"eyJ.a.b\"}",
                         false),
                     0);
    assert_string_equal(t, "eyJ.a.b");
    assert_int_equal(exp, 1000 + 3599);
    kvr_azure_secret_free(t);
    /* IMDS: every field a string */
    assert_int_equal(tok(&t, &exp,
                         "{\"access_token\":\"x\",\"refresh_token\":\"\",\"expires_in\":"
                         "\"86399\",\"expires_on\":\"1700086399\",\"not_before\":"
                         "\"1700000000\",\"resource\":\"https://vault.azure.net\","
                         "\"token_type\":\"Bearer\"}",
                         true),
                     0);
    assert_int_equal(exp, 1000 + 86399);
    kvr_azure_secret_free(t);
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"expires_in\":5}",
        "{\"access_token\":\"\",\"expires_in\":5}",
        "{\"access_token\":5,\"expires_in\":5}",
        "{\"access_token\":\"a b\",\"expires_in\":5}",
        "{\"access_token\":\"a\"}",
        "{\"access_token\":\"a\",\"expires_in\":0}",
        "{\"access_token\":\"a\",\"expires_in\":\"-5\"}",
        "{\"access_token\":\"a\",\"expires_in\":\"5x\"}",
        "{\"access_token\":\"a\",\"expires_in\":99999999999}",
        "{\"access_token\":\"a\",\"expires_in\":5,\"token_type\":\"pop\"}",
        NULL};
    for (size_t i = 0; bad[i]; i++) {
        if (tok(&t, &exp, bad[i], true) == 0)
            fail_msg("token response '%s' accepted", bad[i]);
        assert_null(t);
    }
}

/* ---- credential files ---------------------------------------------------------------------------
 */

static char *temp_file(const char *content, mode_t mode)
{
    char *path = strdup("/tmp/kvr-test-cred-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void test_azure__private_file(void **state)
{
    char *data = NULL, expect[600];
    size_t len = 0;
    kvr_error err;
    (void)state;

    char *path = temp_file("eyJhbGciOi.token.sig\n", 0600);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, path, &err), 0);
    assert_string_equal(data, "eyJhbGciOi.token.sig\n");
    assert_int_equal(len, 21);
    kvr_azure_secret_free(data);

    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, path, &err), KVR_EINSECURE);
    snprintf(expect, sizeof(expect), "'%s' is readable by other users (mode 0644); run chmod 600",
             path);
    assert_string_equal(err.message, expect);
    assert_null(data);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, path, &err), KVR_EINSECURE);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, path, &err), KVR_EINSECURE);
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, path, &err), 0);
    kvr_azure_secret_free(data);

    /* a symlink is judged by its target */
    char link[64];
    snprintf(link, sizeof(link), "%s.lnk", path);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, link, &err), 0);
    kvr_azure_secret_free(data);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, link, &err), KVR_EINSECURE);
    unlink(link);
    unlink(path);
    free(path);

    assert_int_equal(kvr_auth_read_private_file(&data, &len, "/nonexistent/kvr", &err), KVR_EIO);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, "/tmp", &err), KVR_EIO);
}

/* ---- engine and credential set-up (no network: everything here is refused before) ------------ */

static void test_azure__http_refusals(void **state)
{
    kvr_http *h = NULL;
    kvr_http_response r;
    kvr_error err;
    (void)state;
    unsetenv("KVR_CA_FILE");
    unsetenv("AZSIM_CA");
    assert_int_equal(kvr_http_new(&h, NULL, &err), 0);
    kvr_http_response_init(&r);

    kvr_http_request q = {.method = "GET", .url = "http://example.invalid/x"};
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINSECURE);
    assert_non_null(strstr(err.message, "https is required"));
    q.url = "http://169.254.169.254/metadata/identity/oauth2/token";
    q.bearer = "SECRETTOKENVALUE";
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINSECURE);
    assert_null(strstr(err.message, "SECRETTOKENVALUE"));
    q.bearer = NULL;
    q.url = "ftp://example.invalid/";
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINSECURE);
    q.url = "file:///etc/passwd";
    assert_true(kvr_http_send(&r, h, &q, &err) < 0);
    q.url = "https://example.invalid/";
    const char *const inject[] = {"X-A: b\r\nX-Evil: 1", NULL};
    q.headers = inject;
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINVAL);
    q.headers = NULL;
    q.bearer = "tok\r\nX-Evil: 1";
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINVAL);
    q.bearer = NULL;
    q.method = "TRACE";
    assert_int_equal(kvr_http_send(&r, h, &q, &err), KVR_EINVAL);

    /* a batch reports each request's own outcome */
    kvr_http_request reqs[2] = {{.method = "GET", .url = "http://a.invalid/"},
                                {.method = "GET", .url = "gopher://b.invalid/"}};
    kvr_http_response rs[2];
    int codes[2];
    kvr_error errs[2];
    kvr_http_response_init(&rs[0]);
    kvr_http_response_init(&rs[1]);
    assert_int_equal(kvr_http_send_batch(rs, codes, h, reqs, 2, errs), KVR_EINSECURE);
    assert_int_equal(codes[0], KVR_EINSECURE);
    assert_int_equal(codes[1], KVR_EINSECURE);
    assert_non_null(strstr(errs[1].message, "gopher"));
    kvr_http_free(h);
    kvr_http_free(NULL);

    /* the extra CA file must exist and hold a certificate */
    kvr_http_config cfg;
    kvr_http_config_init(&cfg);
    cfg.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(kvr_http_new(&h, &cfg, &err), KVR_EIO);
    assert_null(h);
    char *notcert = temp_file("hello\n", 0600);
    cfg.ca_file = notcert;
    assert_int_equal(kvr_http_new(&h, &cfg, &err), KVR_EIO);
    assert_non_null(strstr(err.message, "no pem certificate"));
    unlink(notcert);
    free(notcert);
}

static void test_azure__auth_setup(void **state)
{
    kvr_http *h = NULL;
    kvr_auth *a = NULL;
    kvr_auth_config cfg;
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_http_new(&h, NULL, &err), 0);

    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), 0);
    assert_int_equal(kvr_auth_kind_of(a), KVR_AUTH_MANAGED);
    kvr_auth_free(a);

    cfg.client_secret = "s3cret";
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), KVR_EAUTH);
    assert_null(a);
    assert_null(strstr(err.message, "s3cret"));
    cfg.tenant_id = "t";
    cfg.client_id = "c";
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), 0);
    assert_int_equal(kvr_auth_kind_of(a), KVR_AUTH_SECRET);
    kvr_auth_free(a);

    cfg.authority_host = "http://login.example";
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), KVR_EINSECURE);
    cfg.authority_host = NULL;

    /* certificate: the file must be private and hold a matching key */
    EVP_PKEY *key;
    X509 *cert;
    char *pem = make_pem(&key, &cert, "rsa");
    char *path = temp_file(pem, 0644);
    cfg.client_secret = NULL;
    cfg.certificate_path = path;
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), KVR_EINSECURE);
    assert_non_null(strstr(err.message, "run chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), 0);
    assert_int_equal(kvr_auth_kind_of(a), KVR_AUTH_CERTIFICATE);
    kvr_auth_free(a);
    unlink(path);
    free(path);
    free(pem);
    X509_free(cert);
    EVP_PKEY_free(key);

    /* federated token file */
    path = temp_file("eyJ.fed.tok", 0600);
    cfg.certificate_path = NULL;
    cfg.federated_token_file = path;
    assert_int_equal(kvr_auth_new(&a, h, &cfg, &err), 0);
    assert_int_equal(kvr_auth_kind_of(a), KVR_AUTH_FEDERATED);
    char *t = NULL;
    /* a challenge naming another tenant is refused without AZURE_ADDITIONALLY_ALLOWED_TENANTS */
    assert_int_equal(
        kvr_auth_token(&t, a, "other-tenant", "https://vault.azure.net/.default", &err), KVR_EAUTH);
    assert_non_null(strstr(err.message, "AZURE_ADDITIONALLY_ALLOWED_TENANTS"));
    assert_int_equal(kvr_auth_token(&t, a, NULL, "https://a/.default https://b/.default", &err),
                     KVR_EINVAL);
    assert_int_equal(kvr_auth_token(&t, a, "../evil", "https://vault.azure.net/.default", &err),
                     KVR_EINVAL);
    assert_int_equal(kvr_auth_token(&t, a, "t/x?y", "https://vault.azure.net/.default", &err),
                     KVR_EINVAL);
    kvr_auth_free(a);
    unlink(path);
    free(path);

    kvr_http_free(h);
}

/* ---- ARM long-running operations ----------------------------------------------------------- */

static void test_azure__lro_state(void **state)
{
    (void)state;
    assert_int_equal(kvr_lro_state_of(NULL), KVR_LRO_SUCCEEDED); /* absent: done */
    assert_int_equal(kvr_lro_state_of(""), KVR_LRO_SUCCEEDED);
    assert_int_equal(kvr_lro_state_of("Succeeded"), KVR_LRO_SUCCEEDED);
    assert_int_equal(kvr_lro_state_of("succeeded"), KVR_LRO_SUCCEEDED);
    assert_int_equal(kvr_lro_state_of("Failed"), KVR_LRO_FAILED);
    assert_int_equal(kvr_lro_state_of("Canceled"), KVR_LRO_CANCELED);
    assert_int_equal(kvr_lro_state_of("Cancelled"), KVR_LRO_CANCELED);
    assert_int_equal(kvr_lro_state_of("InProgress"), KVR_LRO_RUNNING);
    assert_int_equal(kvr_lro_state_of("RegisteringDns"), KVR_LRO_RUNNING);
    assert_int_equal(kvr_lro_state_of("Accepted"), KVR_LRO_RUNNING);
}

static kvr_lro_kind lro_plan(const char *method, long status, const char *body, const char *ao,
                             const char *loc)
{
    kvr_http_response r;
    kvr_http_response_init(&r);
    r.status = status;
    r.body = (char *)body;
    r.body_len = body ? strlen(body) : 0;
    r.azure_async_operation = (char *)ao;
    r.location = (char *)loc;
    return kvr_lro_plan(method, &r);
}

static void test_azure__lro_plan(void **state)
{
    static const char reg[] = "{\"properties\":{\"provisioningState\":\"RegisteringDns\"}}";
    static const char ok[] = "{\"properties\":{\"provisioningState\":\"Succeeded\"}}";
    static const char bad[] = "{\"properties\":{\"provisioningState\":\"Failed\"}}";
    const char *ao = "https://management.azure.com/subscriptions/s/providers/Microsoft.KeyVault/"
                     "locations/westeurope/operationStatuses/1?api-version=2024-11-01";
    const char *loc = "https://management.azure.com/subscriptions/s/providers/Microsoft.KeyVault/"
                      "locations/westeurope/operationResults/1?api-version=2024-11-01";
    (void)state;
    /* done in the answer itself */
    assert_int_equal(lro_plan("PUT", 200, ok, NULL, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("PUT", 200, "{\"properties\":{}}", NULL, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("PUT", 201, ok, NULL, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("PUT", 200, ok, ao, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("DELETE", 200, NULL, NULL, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("DELETE", 204, NULL, NULL, NULL), KVR_LRO_DONE);
    assert_int_equal(lro_plan("POST", 202, NULL, NULL, NULL), KVR_LRO_DONE); /* nothing to poll */
    /* Azure-AsyncOperation first, then Location, then the resource */
    assert_int_equal(lro_plan("PUT", 201, reg, ao, loc), KVR_LRO_ASYNC_OPERATION);
    assert_int_equal(lro_plan("PUT", 201, ok, ao, NULL), KVR_LRO_ASYNC_OPERATION);
    assert_int_equal(lro_plan("POST", 202, NULL, NULL, loc), KVR_LRO_LOCATION);
    assert_int_equal(lro_plan("DELETE", 202, NULL, ao, loc), KVR_LRO_ASYNC_OPERATION);
    assert_int_equal(lro_plan("PUT", 201, reg, NULL, NULL), KVR_LRO_RESOURCE);
    assert_int_equal(lro_plan("PUT", 200, reg, NULL, NULL), KVR_LRO_RESOURCE);
    assert_int_equal(lro_plan("PATCH", 202, NULL, NULL, NULL), KVR_LRO_RESOURCE);
    assert_int_equal(lro_plan("DELETE", 202, NULL, NULL, NULL), KVR_LRO_RESOURCE);
    /* a terminal failure in the first answer */
    assert_int_equal(lro_plan("PUT", 200, bad, NULL, NULL), KVR_LRO_ENDED_BADLY);
    assert_int_equal(lro_plan("PUT", 201, bad, ao, NULL), KVR_LRO_ENDED_BADLY);
    /* a body that is not JSON says nothing about the state */
    assert_int_equal(lro_plan("PUT", 201, "<html>", ao, NULL), KVR_LRO_ASYNC_OPERATION);
}

static void test_azure__lro_check_url(void **state)
{
    const char *arm = "https://management.azure.com";
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_lro_check_url("https://management.azure.com/subscriptions/s/providers/"
                                       "Microsoft.KeyVault/locations/x/operationResults/1",
                                       arm, &err),
                     0);
    assert_int_equal(kvr_lro_check_url("https://MANAGEMENT.azure.com:443/x", arm, &err), 0);
    assert_int_equal(kvr_lro_check_url("https://management.localhost:8443/x",
                                       "https://management.localhost:8443", &err),
                     0);
    /* refused: the ARM token would go elsewhere */
    assert_int_equal(kvr_lro_check_url("https://evil.example/x", arm, &err), KVR_EINSECURE);
    assert_non_null(strstr(err.message, "refusing to poll 'https://evil.example/x'"));
    assert_int_equal(kvr_lro_check_url("http://management.azure.com/x", arm, &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_lro_check_url("https://management.azure.com:8443/x", arm, &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_lro_check_url("https://management.azure.com.evil.example/x", arm, &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_lro_check_url("https://management.azure.com@evil.example/x", arm, &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_lro_check_url("https://management.localhost:8444/x",
                                       "https://management.localhost:8443", &err),
                     KVR_EINSECURE);
    assert_int_equal(kvr_lro_check_url("/subscriptions/s/operationResults/1", arm, &err),
                     KVR_EPROTO);
    assert_int_equal(kvr_lro_check_url(NULL, arm, &err), KVR_EPROTO);
}

static void test_azure__lro_wait_refuses(void **state)
{
    kvr_http_response r;
    kvr_lro_config cfg = {.default_wait_ms = 0, .max_wait_ms = 0, .timeout_ms = 1000};
    kvr_error err;
    json_t *out = (json_t *)&err; /* must come back NULL */
    (void)state;
    kvr_http_response_init(&r);
    r.status = 201;
    r.azure_async_operation = (char *)"https://attacker.example/operationStatuses/1";
    r.retry_after = (char *)"0";
    /* no auth handle: the refusal must come before any request is made */
    assert_int_equal(kvr_lro_wait(&out, NULL, "https://management.azure.com/.default",
                                  "https://management.azure.com", "PUT",
                                  "https://management.azure.com/subscriptions/s/x", &r,
                                  "create vault", "kv1", &cfg, &err),
                     KVR_EINSECURE);
    assert_null(out);
    assert_non_null(strstr(err.message, "attacker.example"));
    /* Location on another host, too */
    r.azure_async_operation = NULL;
    r.location = (char *)"https://attacker.example/operationResults/1";
    assert_int_equal(kvr_lro_wait(NULL, NULL, "s", "https://management.azure.com", "POST", NULL,
                                  &r, "purge vault", "kv1", &cfg, &err),
                     KVR_EINSECURE);
    /* Failed in the first answer: Azure's code and message, no poll */
    r.location = NULL;
    r.status = 200;
    r.body = (char *)"{\"properties\":{\"provisioningState\":\"Failed\"},"
                     "\"error\":{\"code\":\"VaultProvisioningFailed\",\"message\":\"no dns\"}}";
    r.body_len = strlen(r.body);
    assert_int_equal(kvr_lro_wait(NULL, NULL, "s", "https://management.azure.com", "PUT", NULL, &r,
                                  "create vault", "kv1", &cfg, &err),
                     KVR_EAZURE);
    assert_string_equal(err.message, "create vault 'kv1': the long-running operation failed: "
                                     "VaultProvisioningFailed: no dns");
    /* finished in the first answer: its body comes back */
    r.body = (char *)"{\"name\":\"kv1\",\"properties\":{\"provisioningState\":\"Succeeded\"}}";
    r.body_len = strlen(r.body);
    assert_int_equal(kvr_lro_wait(&out, NULL, "s", "https://management.azure.com", "PUT", NULL, &r,
                                  "create vault", "kv1", &cfg, &err),
                     0);
    assert_string_equal(json_string_value(json_object_get(out, "name")), "kv1");
    json_decref(out);
}

/* ---- messages (issue #18) ---------------------------------------------------------------- */

static void test_azure__server_text_cleaned(void **state)
{
    /* U+202E (right-to-left override), U+2066 (isolate), ESC [ (a terminal sequence), C1 CSI */
    static const char body[] = "{\"error\":{\"code\":\"Forbidden\\u202e\",\"message\":"
                               "\"txt.exe\\u202egnp\\u2066 \\u001b[31mred\\u009b0m\\n"
                               "next\"}}";
    kvr_http_response r;
    kvr_error err;
    (void)state;
    kvr_http_response_init(&r);
    r.status = 403;
    r.body = (char *)body;
    r.body_len = strlen(body);
    assert_int_equal(kvr_http_error(&err, &r, "get key", "kv1/k\xe2\x80\xaey"), KVR_EFORBIDDEN);
    assert_null(strstr(err.message, "\xe2\x80\xae"));
    assert_null(strstr(err.message, "\xe2\x81\xa6"));
    assert_null(strchr(err.message, '\x1b'));
    assert_null(strstr(err.message, "\xc2\x9b"));
    assert_null(strchr(err.message, '\n'));
    assert_non_null(strstr(err.message, "txt.exegnp"));
    assert_non_null(strstr(err.message, "'kv1/ky'"));
}

static void test_azure__token_response_too_large(void **state)
{
    size_t n = 20u * 1024 * 1024;
    char *body = malloc(n + 1), *tok = NULL;
    time_t exp;
    kvr_error err;
    (void)state;
    assert_non_null(body);
    memset(body, ' ', n);
    memcpy(body, "{\"access_token\":\"", 17);
    body[n - 2] = '"';
    body[n - 1] = '}';
    body[n] = '\0';
    assert_int_equal(kvr_auth_parse_token(&tok, &exp, body, n, false, 1000, &err), KVR_ETOOBIG);
    assert_non_null(strstr(err.message, "too large"));
    assert_null(tok);
    free(body);
}

static void test_azure__malformed_url_named(void **state)
{
    kvr_url_info u;
    kvr_error err;
    json_t *page;
    char *next = NULL;
    (void)state;
    assert_int_equal(kvr_http_url_info(&u, "https://kv\x1b[2J.vault.azure.net:99999/", &err),
                     KVR_EINVAL);
    assert_non_null(strstr(err.message, "malformed url 'https://kv [2J.vault.azure.net:99999/'"));
    page = json_pack("{s:[],s:s}", "value", "nextLink", "https://[::1");
    assert_int_equal(kvr_http_next_link(&next, "https://kv1.vault.azure.net/keys", page, &err),
                     KVR_EPROTO);
    assert_non_null(strstr(err.message, "'https://[::1'"));
    json_decref(page);
}

/* The Storage error code of a lease answer, and a container listing read by a waiting run:
   the lease state and the holder from the metadata, the entities decoded, a blob whose name only
   begins like ours not taken for it, control characters never passed to a terminal. */
static void test_azure__blob_lease_xml(void **state)
{
    static const char err409[] =
        "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>LeaseAlreadyPresent"
        "</Code><Message>There is already a lease present.\nRequestId:1</Message></Error>";
    static const char list[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"x\" "
        "ContainerName=\"locks\"><Blobs>"
        "<Blob><Name>kvreconcile.lock.leader</Name><Properties><LeaseState>leased</LeaseState>"
        "</Properties><Metadata><kvr_pid>1</kvr_pid><kvr_host>other</kvr_host></Metadata></Blob>"
        "<Blob><Name>kvreconcile.lock</Name><Properties><LeaseStatus>locked</LeaseStatus>"
        "<LeaseState>leased</LeaseState><LeaseDuration>fixed</LeaseDuration></Properties>"
        "<Metadata><kvr_pid>4242</kvr_pid><kvr_host>ci&amp;runner\x1b[31m</kvr_host>"
        "<kvr_command>apply</kvr_command><kvr_since>2026-01-01T00:00:00Z</kvr_since></Metadata>"
        "</Blob></Blobs><NextMarker /></EnumerationResults>";
    char code[64];
    kvr_blob_info info;
    (void)state;

    kvr_blob_error_code(code, sizeof(code), err409, sizeof(err409) - 1);
    assert_string_equal(code, "LeaseAlreadyPresent");
    kvr_blob_error_code(code, sizeof(code), "", 0);
    assert_string_equal(code, "");
    kvr_blob_error_code(code, sizeof(code), NULL, 0);
    assert_string_equal(code, "");

    kvr_blob_info_parse(&info, list, sizeof(list) - 1, "kvreconcile.lock");
    assert_true(info.exists);
    assert_string_equal(info.lease_state, "leased");
    assert_string_equal(info.holder,
                        "pid 4242 on ci&runner?[31m, kvreconcile apply, since 2026-01-01T00:00:00Z");
    kvr_blob_info_parse(&info, list, sizeof(list) - 1, "kvreconcile.lock.leader");
    assert_true(info.exists);
    assert_string_equal(info.holder, "pid 1 on other, kvreconcile ?, since ?");
    kvr_blob_info_parse(&info, list, sizeof(list) - 1, "kvreconcile");
    assert_false(info.exists);
    assert_string_equal(info.holder, "");
    /* a listing cut short (a truncated answer) finds nothing rather than reading past it */
    kvr_blob_info_parse(&info, list, 120, "kvreconcile.lock");
    assert_false(info.exists);
}

/* A lease id is a version-4 GUID, fresh each time. */
static void test_azure__lease_id(void **state)
{
    char a[KVR_LEASE_ID_LEN + 1], b[KVR_LEASE_ID_LEN + 1];
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_lease_id_new(a, sizeof(a), &err), 0);
    assert_int_equal(kvr_lease_id_new(b, sizeof(b), &err), 0);
    assert_int_equal(strlen(a), KVR_LEASE_ID_LEN);
    assert_true(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_string_not_equal(a, b);
    assert_int_not_equal(kvr_lease_id_new(a, KVR_LEASE_ID_LEN, &err), 0);
}

static void test_azure__paging_loop(void **state)
{
    kvr_http_pages p = {0};
    kvr_error err;
    (void)state;
    /* a link to itself: stopped at page 1 */
    assert_int_equal(kvr_http_pages_note(&p, "https://kv1.vault.azure.net/keys", "list keys", &err),
                     0);
    assert_int_equal(kvr_http_pages_note(&p, "https://kv1.vault.azure.net/keys", "list keys", &err),
                     KVR_EPROTO);
    assert_non_null(strstr(err.message, "list keys: the next link of page 1 leads back to page 1"));
    kvr_http_pages_release(&p);
    /* a longer cycle; pages that differ only in case are different pages */
    assert_int_equal(kvr_http_pages_note(&p, "https://h/a?$skiptoken=x", "l", &err), 0);
    assert_int_equal(kvr_http_pages_note(&p, "https://h/a?$skiptoken=X", "l", &err), 0);
    assert_int_equal(kvr_http_pages_note(&p, "https://h/b", "l", &err), 0);
    assert_int_equal(kvr_http_pages_note(&p, "https://h/a?$skiptoken=X", "l", &err), KVR_EPROTO);
    assert_non_null(strstr(err.message, "page 3 leads back to page 2"));
    kvr_http_pages_release(&p);
    assert_null(p.seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_azure__retry_after_seconds),
        cmocka_unit_test(test_azure__retry_after_rejects),
        cmocka_unit_test(test_azure__retry_after_http_date),
        cmocka_unit_test(test_azure__backoff_bounds),
        cmocka_unit_test(test_azure__status_retryable),
        cmocka_unit_test(test_azure__write_window),
        cmocka_unit_test(test_azure__token_bucket),
        cmocka_unit_test(test_azure__challenge_parse),
        cmocka_unit_test(test_azure__challenge_hostile),
        cmocka_unit_test(test_azure__challenge_host_check),
        cmocka_unit_test(test_azure__error_shapes),
        cmocka_unit_test(test_azure__error_broken),
        cmocka_unit_test(test_azure__error_message),
        cmocka_unit_test(test_azure__assertion),
        cmocka_unit_test(test_azure__assertion_rejects),
        cmocka_unit_test(test_azure__sbuf_reserve),
        cmocka_unit_test(test_azure__form_encode),
        cmocka_unit_test(test_azure__url_info),
        cmocka_unit_test(test_azure__next_link),
        cmocka_unit_test(test_azure__parse_token),
        cmocka_unit_test(test_azure__private_file),
        cmocka_unit_test(test_azure__http_refusals),
        cmocka_unit_test(test_azure__auth_setup),
        cmocka_unit_test(test_azure__lro_state),
        cmocka_unit_test(test_azure__lro_plan),
        cmocka_unit_test(test_azure__lro_check_url),
        cmocka_unit_test(test_azure__lro_wait_refuses),
        cmocka_unit_test(test_azure__server_text_cleaned),
        cmocka_unit_test(test_azure__token_response_too_large),
        cmocka_unit_test(test_azure__malformed_url_named),
        cmocka_unit_test(test_azure__paging_loop),
        cmocka_unit_test(test_azure__blob_lease_xml),
        cmocka_unit_test(test_azure__lease_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
