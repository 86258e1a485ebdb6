/*
 * Unit tests of the providers' converters: the documented JSON shapes of ARM, Graph, Key Vault
 * and the profile service become the live objects the plan expects, and malformed or wrong-typed
 * responses give a clear error, never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvr/plan.h"
#include "kvr/providers.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

static void test_providers__times(void **state)
{
    int64_t t;
    (void)state;
    assert_int_equal(kvr_time_parse_iso(&t, "2026-11-23T10:00:00Z"), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(kvr_time_parse_iso(&t, "2026-11-23T10:00:00.1234567Z"), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(kvr_time_parse_iso(&t, "2026-11-23T11:00:00+01:00"), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(kvr_time_parse_iso(&t, "1970-01-01T00:00:00Z"), 0);
    assert_int_equal(t, 0);
    assert_int_equal(kvr_time_parse_iso(&t, "2026-13-01T00:00:00Z"), KVR_EINVAL);
    assert_int_equal(kvr_time_parse_iso(&t, "yesterday"), KVR_EINVAL);
    assert_int_equal(kvr_time_parse_iso(&t, "2026-11-23T10:00:00Zjunk"), KVR_EINVAL);
    assert_int_equal(kvr_time_parse_http(&t, "Mon, 23 Nov 2026 10:00:00 GMT"), 0);
    assert_int_equal(t, 1795428000);
    assert_int_equal(kvr_time_parse_http(&t, "Mon, 23 Nox 2026 10:00:00 GMT"), KVR_EINVAL);
}

static void test_providers__vault(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *v = J("{\"id\":\"/subscriptions/s/resourcegroups/rg-sec/providers/Microsoft.KeyVault/"
                  "vaults/kv1\",\"name\":\"kv1\",\"type\":\"Microsoft.KeyVault/vaults\","
                  "\"location\":\"westeurope\",\"tags\":{\"env\":\"prod\"},"
                  "\"properties\":{\"tenantId\":\"t\",\"sku\":{\"family\":\"A\",\"name\":\"premium\"},"
                  "\"enableRbacAuthorization\":true,\"softDeleteRetentionInDays\":30,"
                  "\"enablePurgeProtection\":true,\"networkAcls\":{\"defaultAction\":\"Deny\"}}}");
    json_t *bad = J("{\"name\":\"kv1\",\"properties\":{}}");
    (void)state;
    assert_int_equal(kvr_live_add_vault(l, v, &err), 0);
    assert_string_equal(l->vaults[0].resource_group, "rg-sec");
    assert_int_equal(l->vaults[0].sku, KVR_SKU_PREMIUM);
    assert_true(l->vaults[0].rbac);
    assert_int_equal(l->vaults[0].soft_delete_days, 30);
    assert_true(l->vaults[0].purge_protection);
    assert_string_equal(l->vaults[0].default_action, "Deny");
    assert_string_equal(kvr_tags_get(&l->vaults[0].tags, "env"), "prod");
    assert_int_equal(kvr_live_add_vault(l, bad, &err), KVR_EPROTO);
    assert_string_equal(err.message, "unexpected response: a vault has no 'id'");
    json_decref(v);
    json_decref(bad);
    kvr_live_free(l);
}

/* Azure may name a region by its display name (the deleted-vault list): the live model holds the
 * canonical form the plan compares with the desired one. */
static void test_providers__location_canonical(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *v = J("{\"id\":\"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/"
                  "vaults/kv1\",\"name\":\"kv1\",\"location\":\"West Europe\","
                  "\"properties\":{\"sku\":{\"name\":\"standard\"}}}");
    json_t *dv = J("{\"name\":\"kv2\",\"properties\":{\"location\":\"North Central US\","
                   "\"deletionDate\":\"2026-11-01T00:00:00Z\","
                   "\"scheduledPurgeDate\":\"2027-01-30T00:00:00Z\"}}");
    char s1[] = "North Central US", s2[] = "westeurope", s3[] = "";
    (void)state;
    assert_string_equal(kvr_location_canon(s1), "northcentralus");
    assert_string_equal(kvr_location_canon(s2), "westeurope");
    assert_string_equal(kvr_location_canon(s3), "");
    assert_int_equal(kvr_live_add_vault(l, v, &err), 0);
    assert_string_equal(l->vaults[0].location, "westeurope");
    assert_int_equal(kvr_live_add_deleted_vault(l, dv, &err), 0);
    assert_string_equal(l->deleted_vaults[0].location, "northcentralus");
    json_decref(v);
    json_decref(dv);
    kvr_live_free(l);
}

static void canon(char *out, size_t size, const char *keys, const char *secrets, const char *certs)
{
    /* comma-separated lists, NULL for none */
    char buf[3][512];
    char *items[3][32];
    kvr_strlist l[3];
    const char *src[3] = {keys, secrets, certs};
    for (int f = 0; f < 3; f++) {
        l[f].items = items[f];
        l[f].len = 0;
        if (!src[f])
            continue;
        snprintf(buf[f], sizeof(buf[f]), "%s", src[f]);
        for (char *t = strtok(buf[f], ","); t && l[f].len < 32; t = strtok(NULL, ","))
            items[f][l[f].len++] = t;
    }
    kvr_plan_policy_canon(out, size, &l[0], &l[1], &l[2]);
}

static void test_providers__vault_access_policies(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    char c[512], d[512];
    json_t *v = J("{\"id\":\"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/"
                  "vaults/kv1\",\"name\":\"kv1\",\"location\":\"westeurope\",\"properties\":{"
                  "\"enableRbacAuthorization\":false,\"accessPolicies\":["
                  "{\"tenantId\":\"t\",\"objectId\":\"OID-1\",\"permissions\":{\"keys\":[\"Get\","
                  "\"WrapKey\"],\"secrets\":[],\"storage\":[\"get\"]}},"
                  "{\"tenantId\":\"t\",\"permissions\":{}},"
                  "{\"tenantId\":\"t\",\"objectId\":\"oid-2\",\"permissions\":{\"certificates\":"
                  "[\"all\"]}}]}}");
    (void)state;
    assert_int_equal(kvr_live_add_vault(l, v, &err), 0);
    assert_int_equal(l->vaults[0].npolicies, 2); /* the entry without objectId is skipped */
    assert_string_equal(l->vaults[0].policies[0].object_id, "OID-1");
    assert_int_equal(l->vaults[0].policies[0].keys.len, 2);
    assert_string_equal(l->vaults[0].policies[0].keys.items[1], "WrapKey");
    assert_int_equal(l->vaults[0].policies[0].secrets.len, 0);
    assert_int_equal(l->vaults[0].policies[1].certificates.len, 1);
    json_decref(v);
    kvr_live_free(l);

    /* the canonical form: case, order and duplicates do not matter; "all" is the whole family */
    canon(c, sizeof(c), "Get,wrapKey,get", NULL, NULL);
    assert_string_equal(c, "keys=get,wrapkey");
    canon(d, sizeof(d), "wrapkey,GET", "", NULL);
    assert_string_equal(c, d);
    canon(c, sizeof(c), NULL, NULL, NULL);
    assert_string_equal(c, "none");
    canon(c, sizeof(c), "all", "get,list", "All");
    assert_string_equal(c, "keys=all secrets=get,list certificates=all");
    canon(d, sizeof(d),
          "encrypt,decrypt,wrapKey,unwrapKey,sign,verify,get,list,create,update,import,delete,"
          "backup,restore,recover,purge,release,rotate,getrotationpolicy,setrotationpolicy",
          "list,get", "get,list,delete,create,import,update,managecontacts,getissuers,"
          "listissuers,setissuers,deleteissuers,manageissuers,recover,purge,backup,restore");
    assert_string_equal(c, d);
    canon(c, sizeof(c), "get,list,create", NULL, NULL); /* a subset is not "all" */
    assert_string_equal(c, "keys=create,get,list");
    canon(c, 12, "get,list,create", NULL, NULL); /* truncated, terminated */
    assert_string_equal(c, "keys=create");
}

static void test_providers__role_assignment(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *r = J("{\"id\":\"/x/providers/Microsoft.Authorization/roleAssignments/g1\","
                  "\"name\":\"g1\",\"properties\":{\"roleDefinitionId\":\"/providers/"
                  "Microsoft.Authorization/roleDefinitions/E147488A-F6F5-4113-8E2D-B22465E65BF6\","
                  "\"principalId\":\"p1\",\"principalType\":\"ServicePrincipal\",\"scope\":\"/s\"}}");
    json_t *bad = J("{\"name\":\"g1\",\"properties\":{\"roleDefinitionId\":7}}");
    (void)state;
    assert_int_equal(kvr_live_add_role(l, r, &err), 0);
    assert_string_equal(l->roles[0].role_id, "e147488a-f6f5-4113-8e2d-b22465e65bf6");
    assert_string_equal(l->roles[0].principal_id, "p1");
    assert_int_equal(kvr_live_add_role(l, bad, &err), KVR_EPROTO);
    json_decref(r);
    json_decref(bad);
    kvr_live_free(l);
}

static void test_providers__app(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *a = J("{\"id\":\"obj1\",\"appId\":\"app1\",\"displayName\":\"aos-backup\","
                  "\"signInAudience\":\"AzureADMyOrg\",\"passwordCredentials\":[{\"keyId\":\"k1\","
                  "\"displayName\":\"kvr:2026-05\",\"startDateTime\":\"2026-05-04T09:00:00Z\","
                  "\"endDateTime\":\"2026-10-31T09:00:00Z\",\"hint\":\"abc\",\"secretText\":null}]}");
    json_t *sp = J("{\"id\":\"sp1\",\"appId\":\"app1\"}");
    (void)state;
    assert_int_equal(kvr_live_add_app(l, a, sp, &err), 0);
    assert_string_equal(l->apps[0].sp_id, "sp1");
    assert_int_equal(l->apps[0].ncreds, 1);
    assert_string_equal(l->apps[0].creds[0].display_name, "kvr:2026-05");
    assert_int_equal(l->apps[0].creds[0].start, 1777885200);
    assert_int_equal(kvr_live_add_app(l, sp, NULL, &err), KVR_EPROTO);
    json_decref(a);
    json_decref(sp);
    kvr_live_free(l);
}

static void test_providers__key(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    char n[513], text[2048];
    json_t *bundle, *versions, *policy;
    (void)state;
    memset(n, 'A', 512); /* 512 base64url characters: a 3072-bit modulus */
    n[512] = '\0';
    snprintf(text, sizeof(text),
             "{\"key\":{\"kid\":\"https://kv1.vault.azure.net/keys/dek/bbb\",\"kty\":\"RSA-HSM\","
             "\"key_ops\":[\"wrapKey\",\"unwrapKey\"],\"n\":\"%s\",\"e\":\"AQAB\"},"
             "\"attributes\":{\"enabled\":true,\"created\":200}}",
             n);
    bundle = J(text);
    versions = J("[{\"kid\":\"https://kv1.vault.azure.net/keys/dek/bbb\",\"attributes\":"
                 "{\"enabled\":true,\"created\":200},\"tags\":{\"kvr-generation\":\"2026-11\"}},"
                 "{\"kid\":\"https://kv1.vault.azure.net/keys/dek/aaa\",\"attributes\":"
                 "{\"enabled\":false,\"created\":100,\"exp\":900}}]");
    policy = J("{\"id\":\"https://kv1.vault.azure.net/keys/dek/rotationpolicy\","
               "\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P90D\"},\"action\":"
               "{\"type\":\"rotate\"}},{\"trigger\":{\"timeBeforeExpiry\":\"P30D\"},\"action\":"
               "{\"type\":\"Notify\"}}],\"attributes\":{\"expiryTime\":\"P2Y\"}}");
    assert_int_equal(kvr_live_add_key(l, "kv1", bundle, versions, policy, &err), 0);
    assert_string_equal(l->keys[0].name, "dek");
    assert_string_equal(l->keys[0].kty, "RSA-HSM");
    assert_int_equal(l->keys[0].size, 3072);
    assert_int_equal(l->keys[0].ops, KVR_OP_WRAP | KVR_OP_UNWRAP);
    assert_int_equal(l->keys[0].nversions, 2);
    assert_string_equal(l->keys[0].versions[0].id, "aaa"); /* oldest first */
    assert_false(l->keys[0].versions[0].enabled);
    assert_int_equal(l->keys[0].versions[0].exp, 900);
    assert_string_equal(kvr_tags_get(&l->keys[0].versions[1].tags, "kvr-generation"), "2026-11");
    assert_true(l->keys[0].has_policy);
    assert_int_equal(l->keys[0].policy.every, 90LL * 86400);
    assert_int_equal(l->keys[0].policy.notify_before, 30LL * 86400);
    assert_int_equal(l->keys[0].policy.expires_after, 730LL * 86400);
    json_decref(bundle);
    bundle = J("{\"key\":{\"kid\":\"https://kv1.vault.azure.net/nokeys\",\"kty\":\"RSA\"}}");
    assert_int_equal(kvr_live_add_key(l, "kv1", bundle, NULL, NULL, &err), KVR_EPROTO);
    json_decref(bundle);
    json_decref(versions);
    json_decref(policy);
    kvr_live_free(l);
}

static void test_providers__secrets_certs_deleted(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *s = J("{\"id\":\"https://kv1.vault.azure.net/secrets/db-password\",\"attributes\":"
                  "{\"enabled\":false},\"contentType\":\"text/plain\",\"tags\":{\"a\":\"b\"}}");
    json_t *c = J("{\"id\":\"https://kv1.vault.azure.net/certificates/tls\",\"x5t\":\"abc\"}");
    json_t *d = J("{\"recoveryId\":\"https://kv1.vault.azure.net/deletedkeys/old\","
                  "\"deletedDate\":10,\"scheduledPurgeDate\":20,\"kid\":\"x\"}");
    json_t *bad = J("{\"id\":17}");
    (void)state;
    assert_int_equal(kvr_live_add_secret(l, "kv1", s, "0123456789ab", &err), 0);
    assert_string_equal(l->secrets[0].name, "db-password");
    assert_false(l->secrets[0].enabled);
    assert_string_equal(l->secrets[0].digest, "0123456789ab");
    assert_int_equal(kvr_live_add_certificate(l, "kv1", c, &err), 0);
    assert_string_equal(l->certs[0].x5t, "abc");
    assert_int_equal(kvr_live_add_deleted(l, "kv1", "key", d, &err), 0);
    assert_string_equal(l->deleted[0].name, "old");
    assert_int_equal(l->deleted[0].purge_at, 20);
    assert_int_equal(kvr_live_add_secret(l, "kv1", bad, NULL, &err), KVR_EPROTO);
    /* the texts that objects repeat are one copy (kvr_live.shared); a name is each its own */
    assert_int_equal(kvr_live_add_secret(l, "kv1", s, NULL, &err), 0);
    assert_int_equal(l->nsecrets, 2);
    assert_ptr_equal(l->secrets[1].vault, l->secrets[0].vault);
    assert_ptr_equal(l->secrets[1].vault, l->certs[0].vault);
    assert_ptr_equal(l->secrets[1].vault, l->deleted[0].vault);
    assert_ptr_equal(l->secrets[1].content_type, l->secrets[0].content_type);
    assert_ptr_equal(l->secrets[1].tags.items[0].key, l->secrets[0].tags.items[0].key);
    assert_ptr_not_equal(l->secrets[1].name, l->secrets[0].name);
    assert_string_equal(l->secrets[1].content_type, "text/plain");
    json_decref(s);
    json_decref(c);
    json_decref(d);
    json_decref(bad);
    kvr_live_free(l);
}

static void test_providers__profile(void **state)
{
    kvr_live *l = calloc(1, sizeof(*l));
    kvr_error err;
    json_t *p = J("{\"name\":\"bkp\",\"keyId\":\"https://kv1.vault.azure.net/keys/dek/v1\","
                  "\"vault\":\"kv1\",\"key\":\"dek\",\"keyVersion\":\"v1\",\"tenantId\":\"t\","
                  "\"clientId\":\"app1\",\"status\":\"Applying\",\"statusChangedAt\":"
                  "\"2026-11-23T10:00:00Z\",\"metadata\":{\"kvr-credential\":\"2026-05\"}}");
    json_t *odd = J("{\"name\":\"bkp\",\"vault\":\"kv1\",\"key\":\"dek\",\"keyVersion\":\"v1\","
                    "\"status\":\"Melting\"}");
    (void)state;
    assert_int_equal(kvr_live_add_profile(l, p, &err), 0);
    assert_int_equal(l->profiles[0].status, KVR_PROFILE_APPLYING);
    assert_int_equal(l->profiles[0].status_since, 1795428000);
    assert_string_equal(l->profiles[0].credential, "2026-05");
    assert_int_equal(kvr_live_add_profile(l, odd, &err), KVR_EPROTO);
    assert_string_equal(err.message,
                        "unexpected response: profile 'bkp' has status 'Melting'");
    json_decref(p);
    json_decref(odd);
    kvr_live_free(l);
}

/* A value read back is vouched for only while the listing shows the version read, and only when
   that version's `updated` second lies more than 2 s before the read (clock skew): a change made
   after the read carries a later `updated`. */
static void test_providers__value_memo(void **state)
{
    kvr_value_memo *m = NULL;
    kvr_error err;
    json_t *same = J("{\"id\":\"https://kv1.vault.azure.net/secrets/db\","
                     "\"attributes\":{\"enabled\":true,\"updated\":1000}}");
    json_t *later = J("{\"id\":\"https://kv1.vault.azure.net/secrets/db\","
                      "\"attributes\":{\"enabled\":true,\"updated\":1004}}");
    json_t *bare = J("{\"id\":\"https://kv1.vault.azure.net/secrets/db\"}");
    (void)state;
    assert_null(kvr_value_memo_current(NULL, "kv1", "db", same));
    assert_int_equal(kvr_value_memo_new(&m, &err), 0);
    assert_null(kvr_value_memo_current(m, "kv1", "db", same)); /* nothing read back */
    assert_int_equal(kvr_value_memo_put(m, "kv1", "db", "m-1000", 1000, 1003), 0);
    assert_string_equal(kvr_value_memo_current(m, "KV1", "DB", same), "m-1000"); /* any case */
    assert_null(kvr_value_memo_current(m, "kv1", "db", later)); /* changed since: fetch again */
    assert_null(kvr_value_memo_current(m, "kv1", "db", bare));  /* no `updated`: fetch */
    assert_null(kvr_value_memo_current(m, "kv2", "db", same));  /* another vault */
    assert_null(kvr_value_memo_current(m, "kv1", "api", same)); /* another secret */
    /* read within the skew of its `updated`: a change in the same seconds could look the same */
    assert_int_equal(kvr_value_memo_put(m, "kv1", "db", "m-1000b", 1000, 1002), 0);
    assert_null(kvr_value_memo_current(m, "kv1", "db", same));
    /* a later read back replaces the record */
    assert_int_equal(kvr_value_memo_put(m, "kv1", "db", "m-1004", 1004, 1010), 0);
    assert_string_equal(kvr_value_memo_current(m, "kv1", "db", later), "m-1004");
    assert_null(kvr_value_memo_current(m, "kv1", "db", same));
    for (int i = 0; i < 200; i++) { /* grows */
        char name[16];
        snprintf(name, sizeof(name), "s%03d", i);
        assert_int_equal(kvr_value_memo_put(m, "kv1", name, name, 1000, 1003), 0);
    }
    assert_string_equal(kvr_value_memo_current(m, "kv1", "db", later), "m-1004");
    kvr_value_memo_free(m);
    kvr_value_memo_free(NULL);
    json_decref(same);
    json_decref(later);
    json_decref(bare);
}

static void test_providers__endpoints(void **state)
{
    kvr_endpoints ep;
    kvr_cloud cloud = {0};
    kvr_error err;
    (void)state;
    unsetenv("KVR_ARM_ENDPOINT");
    unsetenv("KVR_GRAPH_ENDPOINT");
    unsetenv("KVR_VAULT_SUFFIX");
    unsetenv("KVR_PROFILE_ENDPOINT");
    assert_int_equal(kvr_endpoints_resolve(&ep, NULL, &err), 0);
    assert_string_equal(ep.arm, "https://management.azure.com");
    assert_string_equal(ep.vault_suffix, "vault.azure.net");
    assert_null(ep.profiles);
    kvr_endpoints_release(&ep);
    cloud.name = (char *)"AzureUSGovernment";
    cloud.profile_service = (char *)"https://backup.example/";
    assert_int_equal(kvr_endpoints_resolve(&ep, &cloud, &err), 0);
    assert_string_equal(ep.vault_suffix, "vault.usgovcloudapi.net");
    assert_string_equal(ep.profiles, "https://backup.example");
    kvr_endpoints_release(&ep);
    setenv("KVR_ARM_ENDPOINT", "http://plain.example", 1);
    assert_int_equal(kvr_endpoints_resolve(&ep, NULL, &err), KVR_EINSECURE);
    setenv("KVR_ARM_ENDPOINT", "https://management.localhost:8443", 1);
    setenv("KVR_VAULT_SUFFIX", "vault.localhost:8443", 1);
    assert_int_equal(kvr_endpoints_resolve(&ep, NULL, &err), 0);
    assert_string_equal(ep.arm, "https://management.localhost:8443");
    assert_string_equal(ep.vault_suffix, "vault.localhost:8443");
    kvr_endpoints_release(&ep);
    unsetenv("KVR_ARM_ENDPOINT");
    unsetenv("KVR_VAULT_SUFFIX");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_providers__times),
        cmocka_unit_test(test_providers__vault),
        cmocka_unit_test(test_providers__vault_access_policies),
        cmocka_unit_test(test_providers__role_assignment),
        cmocka_unit_test(test_providers__app),
        cmocka_unit_test(test_providers__key),
        cmocka_unit_test(test_providers__secrets_certs_deleted),
        cmocka_unit_test(test_providers__profile),
        cmocka_unit_test(test_providers__endpoints),
        cmocka_unit_test(test_providers__value_memo),
        cmocka_unit_test(test_providers__location_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
