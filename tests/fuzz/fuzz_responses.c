/*
 * libFuzzer target for everything that parses what a server sends: the converters from ARM,
 * Graph, Key Vault and profile-service JSON to the live model, the live-state JSON reader, Azure
 * error bodies, the Key Vault 401 challenge header, Retry-After values and next links. Malformed,
 * truncated, huge or wrong-typed input must give an error, never a crash or a leak. The fast JSON
 * parser (jsonparse.c) must take only what jansson takes, and build the same tree: any
 * difference aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvr/providers.h"
#include "jsonparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    kvr_live *l = calloc(1, sizeof(*l)), *parsed = NULL;
    kvr_error err;
    json_t *j, *j2;
    kvr_azure_error ae;
    kvr_auth_challenge ch;
    long ms;
    char *next = NULL;

    if (!text || !l) {
        free(text);
        free(l);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    kvr_azure_error_parse(&ae, text, size);
    if (kvr_auth_challenge_parse(&ch, text, &err) == 0)
        kvr_auth_challenge_check(&ch, "https://kv1.vault.azure.net/keys/k", &err);
    kvr_http_retry_after_ms(&ms, text, NULL, "Mon, 23 Nov 2026 10:00:00 GMT", 1795428000);
    if (kvr_live_from_json(&parsed, text, size, &err) == 0)
        kvr_live_free(parsed);

    j = json_loadb(text, size, 0, NULL);
    for (size_t flags = 0; flags <= JSON_DECODE_ANY; flags += JSON_DECODE_ANY) {
        json_t *want = flags ? json_loadb(text, size, flags, NULL) : json_incref(j);
        json_t *fast = kvr__json_parse_fast(text, size, flags);
        if (fast) {
            char *w = want ? json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            char *f = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!w || !f || strcmp(w, f) != 0)
                abort(); /* taken where jansson refuses, or built differently */
            free(w);
            free(f);
        }
        json_decref(fast);
        json_decref(want);
    }
    if (j) {
        /* every converter on the same value, and on its members */
        j2 = json_is_object(j) ? json_object_get(j, "value") : NULL;
        kvr_live_add_vault(l, j, &err);
        kvr_live_add_deleted_vault(l, j, &err);
        kvr_live_add_role(l, j, &err);
        kvr_live_add_app(l, j, j2, &err);
        kvr_live_add_key(l, "kv1", j, j2, j, &err);
        kvr_live_add_secret(l, "kv1", j, "abcdefabcdef", &err);
        kvr_live_add_certificate(l, "kv1", j, &err);
        kvr_live_add_deleted(l, "kv1", "key", j, &err);
        kvr_live_add_profile(l, j, &err);
        if (kvr_http_next_link(&next, "https://kv1.vault.azure.net/keys", j, &err) == 0)
            free(next);
        json_decref(j);
    }
    kvr_live_free(l);
    free(text);
    return 0;
}
