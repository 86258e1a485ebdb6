/*
 * How many authenticated Key Vault data-plane requests per second azsim answers on this machine,
 * over keep-alive connections, driven by libkvr's own HTTP engine (the client kvreconcile uses).
 * Not a test: it prints figures. Run through run_azsim.sh, which starts azsim with throttling
 * off (the published per-vault limits would otherwise cap the rate at 400 per second).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvr/azure.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const kvr_error *err)
{
    fprintf(stderr, "bench_azsim: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    const char *vault = getenv("BENCH_VAULT_URL");
    long total = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    int concurrency = argc > 2 ? atoi(argv[2]) : 16;
    kvr_http_config cfg;
    kvr_http *http = NULL;
    kvr_auth *auth = NULL;
    kvr_auth_config acfg;
    kvr_error err;
    char *token = NULL, url[512], scope[256];
    kvr_http_request *reqs;
    kvr_http_response *resp;
    int *codes;
    long done = 0, ok = 0;
    double t0, t1;

    if (!vault || total < 1 || concurrency < 1)
        return fprintf(stderr, "usage: BENCH_VAULT_URL=... bench_azsim [REQUESTS] [CONCURRENCY]\n"), 2;
    kvr_http_config_init(&cfg);
    cfg.max_transfers = concurrency;
    cfg.max_per_host = concurrency;
    cfg.rate_per_sec = 1e9; /* measure the server, not our own limiter */
    cfg.rate_burst = 1e9;
    if (kvr_http_new(&http, &cfg, &err) < 0)
        return fail("http", &err);
    kvr_auth_config_from_env(&acfg);
    if (kvr_auth_new(&auth, http, &acfg, &err) < 0)
        return fail("auth", &err);
    snprintf(scope, sizeof(scope), "https://vault.localhost:%s/.default", getenv("AZSIM_PORT"));
    if (kvr_auth_token(&token, auth, NULL, scope, &err) < 0)
        return fail("token", &err);
    snprintf(url, sizeof(url), "%s/secrets/bench/?api-version=7.5", vault);
    reqs = calloc((size_t)concurrency, sizeof(*reqs));
    resp = calloc((size_t)concurrency, sizeof(*resp));
    codes = calloc((size_t)concurrency, sizeof(*codes));
    for (int i = 0; i < concurrency; i++) {
        reqs[i].method = "GET";
        reqs[i].url = url;
        reqs[i].bearer = token;
    }
    t0 = now_s();
    while (done < total) {
        int n = total - done < concurrency ? (int)(total - done) : concurrency;
        for (int i = 0; i < n; i++)
            kvr_http_response_init(&resp[i]);
        kvr_http_send_batch(resp, codes, http, reqs, (size_t)n, NULL);
        for (int i = 0; i < n; i++) {
            ok += codes[i] == 0 && resp[i].status == 200;
            kvr_http_response_release(&resp[i]);
        }
        done += n;
    }
    t1 = now_s();
    printf("requests: %ld, answered 200: %ld, concurrency: %d, seconds: %.2f, "
           "requests per second: %.0f\n",
           total, ok, concurrency, t1 - t0, (double)total / (t1 - t0));
    kvr_azure_secret_free(token);
    free(reqs);
    free(resp);
    free(codes);
    kvr_auth_free(auth);
    kvr_http_free(http);
    return ok == total ? 0 : 1;
}
