/*
 * Unit tests of the desired-state loader on in-memory YAML: what is parsed, defaults, and the
 * exact positioned messages for mistakes. The file-based classes (directories, symlinks,
 * unreadable files) are covered by the validate fixtures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvr/model.h"

static const char GOOD[] =
    "apiVersion: kvreconcile/v1\n"
    "subscription: 0b1f6471-1bf0-4dda-aec3-cb9272f09590\n"
    "vaults:\n"
    "  - {name: contoso-bkp-weu, resourceGroup: rg-sec, location: westeurope, sku: premium,\n"
    "     rbac: true, softDeleteDays: 30, purgeProtection: true, tags: {env: prod}}\n"
    "keys:\n"
    "  - {vault: contoso-bkp-weu, name: backup-kek, type: RSA-HSM, size: 3072,\n"
    "     ops: [wrapKey, unwrapKey], generation: \"2026-11\",\n"
    "     rotation: {every: 365d, expiresAfter: 2y, notifyBefore: 30d}}\n"
    "apps:\n"
    "  - name: aos-backup\n"
    "    credentials:\n"
    "      - {name: \"2026-11\", lifetime: 90d, storeIn: {vault: contoso-bkp-weu, secret: aos}}\n"
    "roleAssignments:\n"
    "  - {app: aos-backup, role: Key Vault Crypto Service Encryption User,\n"
    "     vault: contoso-bkp-weu, key: backup-kek}\n"
    "secrets:\n"
    "  - {vault: contoso-bkp-weu, name: db-password, generate: {length: 40, charset: hex}}\n"
    "profiles:\n"
    "  - {name: bkp-2026-11, vault: contoso-bkp-weu, key: backup-kek, app: aos-backup,\n"
    "     credential: \"2026-11\"}\n"
    "active: bkp-2026-11\n"
    "retention: {keys: P90D, profiles: 30d, appSecrets: 7d}\n";

/* Loads text and returns the printed diagnostics (caller frees), or NULL if valid. */
static char *load_errors(const char *text, kvr_estate **out)
{
    kvr_diags d;
    kvr_estate *e = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int rc;

    kvr_diags_init(&d);
    rc = kvr_model_load_buffer(&e, "t.yaml", text, strlen(text), &d);
    if (rc == 0) {
        assert_non_null(e);
        assert_int_equal(d.len, 0);
        if (out)
            *out = e;
        else
            kvr_estate_free(e);
        kvr_diags_release(&d);
        return NULL;
    }
    assert_null(e);
    assert_int_equal(rc, KVR_ECONFIG);
    assert_true(d.len > 0);
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    kvr_diags_print(&d, f);
    fclose(f);
    kvr_diags_release(&d);
    return buf;
}

static void expect_error(const char *text, const char *message)
{
    char *got = load_errors(text, NULL);
    if (!got)
        fail_msg("expected an error containing \"%s\", but the input was valid", message);
    if (!strstr(got, message))
        fail_msg("expected \"%s\" in:\n%s", message, got);
    free(got);
}

/* `external: true`: a value source of its own, exclusive with the others, never false. */
static void test_model__external_value_source(void **state)
{
    static const char head[] = "apiVersion: kvreconcile/v1\n"
                               "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n";
    char text[512];
    kvr_estate *e = NULL;
    (void)state;
    snprintf(text, sizeof(text), "%ssecrets: [{vault: v-one, name: s, external: true}]\n", head);
    assert_null(load_errors(text, &e));
    assert_int_equal(e->secrets[0].source, KVR_SECRET_EXTERNAL);
    kvr_estate_free(e);
    snprintf(text, sizeof(text), "%ssecrets: [{vault: v-one, name: s, external: false}]\n", head);
    expect_error(text, "t.yaml:3:45: error: 'external' can only be true");
    snprintf(text, sizeof(text),
             "%ssecrets: [{vault: v-one, name: s, generate: {}, external: true}]\n", head);
    expect_error(text, "secret has both 'generate' and 'external'");
    snprintf(text, sizeof(text), "%ssecrets: [{vault: v-one, name: s}]\n", head);
    expect_error(text, "'fromAppCredential' or 'external: true'");
}

static void test_model__good_estate_parses(void **state)
{
    kvr_estate *e = NULL;
    (void)state;
    assert_null(load_errors(GOOD, &e));
    assert_int_equal(e->nvaults, 1);
    assert_string_equal(e->vaults[0].name, "contoso-bkp-weu");
    assert_int_equal(e->vaults[0].sku, KVR_SKU_PREMIUM);
    assert_int_equal(e->vaults[0].soft_delete_days, 30);
    assert_int_equal(e->vaults[0].tags.len, 1);
    assert_int_equal(e->vaults[0].pos.line, 4);
    assert_int_equal(e->nkeys, 1);
    assert_int_equal(e->keys[0].type, KVR_KEY_RSA_HSM);
    assert_int_equal(e->keys[0].size, 3072);
    assert_int_equal(e->keys[0].ops, KVR_OP_WRAP | KVR_OP_UNWRAP);
    assert_int_equal(e->keys[0].rotation.every, 365LL * 86400);
    assert_int_equal(e->keys[0].rotation.expires_after, 730LL * 86400);
    assert_string_equal(e->keys[0].generation, "2026-11");
    assert_int_equal(e->napps, 1);
    assert_string_equal(e->apps[0].display_name, "aos-backup");
    assert_string_equal(e->apps[0].sign_in_audience, "AzureADMyOrg");
    assert_int_equal(e->apps[0].creds[0].lifetime, 90LL * 86400);
    assert_int_equal(e->apps[0].creds[0].overlap, 7LL * 86400);
    assert_string_equal(e->roles[0].role_id, "e147488a-f6f5-4113-8e2d-b22465e65bf6");
    assert_string_equal(e->roles[0].key, "backup-kek");
    assert_int_equal(e->secrets[0].source, KVR_SECRET_GENERATE);
    assert_int_equal(e->secrets[0].gen_length, 40);
    assert_int_equal(e->secrets[0].gen_charset, KVR_CHARSET_HEX);
    assert_null(e->profiles[0].key_version);
    assert_string_equal(e->active, "bkp-2026-11");
    assert_int_equal(e->retention.keys, 90LL * 86400);
    assert_int_equal(e->retention.vaults, 90LL * 86400); /* default */
    kvr_estate_free(e);
}

/* The vault of each key, secret and role assignment, and a secret's contentType: one copy per
   distinct text (kvr_estate.shared), as written; the estate frees them (ASan checks) */
static void test_model__shared_texts(void **state)
{
    kvr_estate *e = NULL;
    (void)state;
    assert_null(load_errors("apiVersion: kvreconcile/v1\n"
                            "vaults:\n"
                            "  - {name: kv-a, resourceGroup: rg, location: westeurope}\n"
                            "keys:\n"
                            "  - {vault: kv-a, name: k1, type: RSA}\n"
                            "secrets:\n"
                            "  - {vault: kv-a, name: s1, contentType: text/plain, external: true}\n"
                            "  - {vault: KV-A, name: s2, contentType: text/plain, external: true}\n"
                            "  - {vault: kv-a, name: s3, external: true}\n"
                            "apps:\n"
                            "  - {name: app1}\n"
                            "roleAssignments:\n"
                            "  - {app: app1, role: Key Vault Secrets User, vault: kv-a}\n"
                            "  - {app: app1, role: 4633458B-17DE-408A-B874-0445C86B69E6,\n"
                            "     vault: kv-a, key: k1}\n",
                            &e));
    assert_int_equal(e->nsecrets, 3);
    assert_ptr_equal(e->secrets[0].vault, e->keys[0].vault);
    assert_ptr_equal(e->secrets[0].vault, e->secrets[2].vault);
    assert_string_equal(e->secrets[1].vault, "KV-A");
    assert_ptr_equal(e->secrets[0].content_type, e->secrets[1].content_type);
    assert_string_equal(e->secrets[1].content_type, "text/plain");
    assert_null(e->secrets[2].content_type);
    assert_ptr_equal(kvr_estate_secret(e, "kv-a", "s2"), &e->secrets[1]);
    /* a role written by name or by GUID (any case) is one lower-case GUID */
    assert_int_equal(e->nroles, 2);
    assert_ptr_equal(e->roles[0].app, e->roles[1].app);
    assert_ptr_equal(e->roles[0].role_id, e->roles[1].role_id);
    assert_string_equal(e->roles[1].role_id, "4633458b-17de-408a-b874-0445c86b69e6");
    assert_string_equal(e->roles[1].role, "4633458B-17DE-408A-B874-0445C86B69E6");
    assert_string_equal(e->roles[1].key, "k1");
    assert_string_equal(e->keys[0].name, "k1");
    kvr_estate_free(e);
}

static void test_model__defaults(void **state)
{
    kvr_estate *e = NULL;
    (void)state;
    assert_null(load_errors("apiVersion: kvreconcile/v1\n"
                            "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                            "keys: [{vault: v-one, name: k, type: EC}]\n",
                            &e));
    assert_int_equal(e->vaults[0].sku, KVR_SKU_STANDARD);
    assert_true(e->vaults[0].rbac);
    assert_true(e->vaults[0].purge_protection);
    assert_int_equal(e->vaults[0].soft_delete_days, 90);
    assert_string_equal(e->keys[0].curve, "P-256");
    assert_null(e->active);
    kvr_estate_free(e);
}

static void test_model__unknown_field_suggests(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults:\n"
                 "  - name: v-one\n"
                 "    resourceGroup: rg\n"
                 "    location: westeurope\n"
                 "    purgeProtecton: true\n",
                 "t.yaml:6:5: error: unknown vault field 'purgeProtecton' (did you mean "
                 "'purgeProtection'?)");
}

static void test_model__wrong_type_names_expected_type(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope,\n"
                 "          softDeleteDays: ninety}]\n",
                 "t.yaml:3:27: error: 'softDeleteDays' must be an integer from 7 to 90, got a "
                 "string");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "keys: [{vault: v, name: k, type: RSA, generation: 2026}]\n",
                 "'generation' must be a string, got an integer; quote it (\"2026\")");
}

static void test_model__literal_value_never_echoed(void **state)
{
    char *got;
    (void)state;
    got = load_errors("apiVersion: kvreconcile/v1\n"
                      "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                      "secrets: [{vault: v-one, name: s, value: Sup3rS3cretCanary}]\n",
                      NULL);
    assert_non_null(got);
    assert_non_null(strstr(got, "t.yaml:3:35: error: secrets must not hold a literal 'value'"));
    assert_null(strstr(got, "Sup3rS3cretCanary"));
    free(got);
}

static void test_model__all_errors_reported(void **state)
{
    char *got;
    size_t lines = 0;
    (void)state;
    got = load_errors("apiVersion: kvreconcile/v1\n"
                      "vaults: [{name: '1bad', resourceGroup: rg, location: West Europe}]\n"
                      "keys: [{vault: nope, name: k, type: RSA, curve: P-256}]\n"
                      "profiles: [{name: p, vault: nope, key: k, app: a, credential: c}]\n",
                      NULL);
    assert_non_null(got);
    for (const char *p = got; *p; p++)
        lines += *p == '\n';
    /* vault name, location, curve on RSA, key's vault, profile's vault, profile's app, no active */
    if (lines < 7)
        fail_msg("expected at least 7 errors, got:\n%s", got);
    free(got);
}

static void test_model__cross_references(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\n"
                 "keys: [{vault: nowhere, name: k, type: RSA}]\n",
                 "t.yaml:2:8: error: vault 'nowhere' is not declared");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "keys: [{vault: v-one, name: k, type: RSA}]\n"
                 "apps: [{name: a, credentials: [{name: c1, storeIn: {vault: v-one, secret: s}}]}]\n"
                 "profiles: [{name: p, vault: v-one, key: k, app: a, credential: c2}]\n"
                 "active: p\n",
                 "app 'a' has no credential 'c2'");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "keys: [{vault: v-one, name: k, type: RSA}]\n"
                 "apps: [{name: a, credentials: [{name: c1, storeIn: {vault: v-one, secret: s}}]}]\n"
                 "profiles: [{name: p, vault: v-one, key: k, app: a, credential: c1}]\n"
                 "active: q\n",
                 "t.yaml:6:9: error: profile 'q' is not declared");
}

static void test_model__duplicates_name_both_places(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults:\n"
                 "  - {name: v-one, resourceGroup: rg, location: westeurope}\n"
                 "  - {name: V-ONE, resourceGroup: rg, location: westeurope}\n",
                 "t.yaml:4:5: error: duplicate vault 'V-ONE' (first declared at t.yaml:3:5)");
    expect_error("apiVersion: kvreconcile/v1\nactive: a\nactive: b\n",
                 "t.yaml:3:1: error: duplicate key 'active' (first at line 2, column 1)");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "apps: [{name: a, credentials: [{name: c1, storeIn: {vault: v-one, secret: s}}]}]\n"
                 "secrets: [{vault: v-one, name: s, fromEnv: S}]\n",
                 "t.yaml:4:11: error: duplicate secret 's' in vault 'v-one' (first declared at "
                 "t.yaml:3:32)");
}

static void test_model__multi_document_singletons(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\nretention: {keys: 30d}\n---\n"
                 "apiVersion: kvreconcile/v1\nretention: {keys: 60d}\n",
                 "t.yaml:5:19: error: 'retention.keys' is given more than once in the estate "
                 "(first at t.yaml:2:19)");
}

static void test_model__rotation_bounds(void **state)
{
    (void)state;
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "keys: [{vault: v-one, name: k, type: RSA, rotation: {every: 3d}}]\n",
                 "'rotation.every' must be at least 7 days");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "keys: [{vault: v-one, name: k, type: RSA, rotation: {expiresAfter: 14d}}]\n",
                 "'rotation.expiresAfter' must be at least 28 days");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-one, resourceGroup: rg, location: westeurope}]\n"
                 "keys: [{vault: v-one, name: k, type: RSA,\n"
                 "        rotation: {every: 30d, beforeExpiry: 30d, expiresAfter: 90d}}]\n",
                 "'every' and 'beforeExpiry' cannot both be set");
}

static void test_model__hostile_yaml(void **state)
{
    char *deep;
    (void)state;
    expect_error("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                 "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                 "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                 "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
                 "an alias bomb?");
    expect_error("a: &a [*a]\n", "t.yaml:1:8: error: alias '*a' refers to a node that contains it");
    expect_error("apiVersion: kvreconcile/v1\nvaults:\n\t- name: x\n",
                 "t.yaml:3:1: error: tab character");
    expect_error("apiVersion: kvreconcile/v1\nactive: \"\xc3\x28\"\n", "t.yaml:2:");
    expect_error("apiVersion: kvreconcile/v1\nvaults: [\n", "invalid YAML");
    expect_error("", "no kvreconcile document in this file");
    expect_error("# only a comment\n---\n...\n", "no kvreconcile document in this file");
    deep = malloc(20001);
    assert_non_null(deep);
    memset(deep, '[', 20000);
    deep[20000] = '\0';
    expect_error(deep, "t.yaml:1:65: error: nesting deeper than 64 levels");
    free(deep);
    expect_error("apiVersion: kvreconcile/v1\nvaults: !!binary aGVsbG8=\n",
                 "unsupported YAML tag 'tag:yaml.org,2002:binary'");
    expect_error("apiVersion: kvreconcile/v1\n? [a, b]\n: c\n", "mapping keys must be plain "
                                                              "strings, not a list");
}

static void test_model__binary_input(void **state)
{
    kvr_diags d;
    kvr_estate *e = NULL;
    static const char bin[] = "apiVersion: kvreconcile/v1\n\x00\x01\x02";
    (void)state;
    kvr_diags_init(&d);
    assert_int_equal(kvr_model_load_buffer(&e, "b.yaml", bin, sizeof(bin) - 1, &d), KVR_ECONFIG);
    assert_int_equal(d.len, 1);
    assert_string_equal(d.items[0].msg, "binary file (NUL byte at byte offset 27); expected YAML "
                                        "text");
    assert_int_equal(d.items[0].line, 2);
    kvr_diags_release(&d);
}

static void test_model__api_version(void **state)
{
    (void)state;
    expect_error("vaults: []\n", "t.yaml:1:1: error: document is missing 'apiVersion'");
    expect_error("apiVersion: apps/v1\nkind: Deployment\n",
                 "t.yaml:1:13: error: unsupported apiVersion 'apps/v1'");
    expect_error("- a\n- b\n", "a kvreconcile document must be a mapping");
}

static void test_model__duplicate_key_in_list_item(void **state)
{
    (void)state;
    /* inside an item of a list converted as it is parsed: the second occurrence's position */
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults:\n"
                 "  - name: v-one\n"
                 "    resourceGroup: rg\n"
                 "    location: westeurope\n"
                 "    name: v-two\n",
                 "t.yaml:6:5: error: duplicate key 'name' (first at line 3, column 5)");
    expect_error("apiVersion: kvreconcile/v1\n"
                 "secrets:\n"
                 "  - {vault: v, name: a, fromEnv: A, name: b}\n",
                 "t.yaml:3:37: error: duplicate key 'name' (first at line 3, column 16)");
}

/* The names of the estate's vaults, keys and secrets in array order, one string. */
static char *names_of(const kvr_estate *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    for (size_t i = 0; i < e->nvaults; i++)
        fprintf(f, "v:%s:%u ", e->vaults[i].name, e->vaults[i].pos.line);
    for (size_t i = 0; i < e->nkeys; i++)
        fprintf(f, "k:%s/%s:%u ", e->keys[i].vault, e->keys[i].name, e->keys[i].pos.line);
    for (size_t i = 0; i < e->nsecrets; i++)
        fprintf(f, "s:%s/%s:%u ", e->secrets[i].vault, e->secrets[i].name, e->secrets[i].pos.line);
    fclose(f);
    return buf;
}

static void test_model__streamed_lists_keep_order(void **state)
{
    /* The same declarations, once with apiVersion first (lists convert while parsing) and once
       with it last in the first document (lists wait for their document): the same estate. */
    static const char streamed[] =
        "apiVersion: kvreconcile/v1\n"
        "vaults: [{name: v-a, resourceGroup: rg, location: westeurope}]\n"
        "keys: [{vault: v-a, name: k1, type: RSA}]\n"
        "---\n"
        "apiVersion: kvreconcile/v1\n"
        "vaults: [{name: v-b, resourceGroup: rg, location: westeurope}]\n"
        "keys: [{vault: v-b, name: k2, type: RSA}, {vault: v-a, name: k3, type: RSA}]\n"
        "secrets: [{vault: v-b, name: s1, generate: {}}]\n";
    static const char waiting[] =
        "vaults: [{name: v-a, resourceGroup: rg, location: westeurope}]\n"
        "keys: [{vault: v-a, name: k1, type: RSA}]\n"
        "apiVersion: kvreconcile/v1\n"
        "---\n"
        "apiVersion: kvreconcile/v1\n"
        "vaults: [{name: v-b, resourceGroup: rg, location: westeurope}]\n"
        "keys: [{vault: v-b, name: k2, type: RSA}, {vault: v-a, name: k3, type: RSA}]\n"
        "secrets: [{vault: v-b, name: s1, generate: {}}]\n";
    kvr_estate *a = NULL, *b = NULL;
    char *na, *nb;
    (void)state;
    assert_null(load_errors(streamed, &a));
    assert_null(load_errors(waiting, &b));
    na = names_of(a);
    nb = names_of(b);
    assert_string_equal(na, "v:v-a:2 v:v-b:6 k:v-a/k1:3 k:v-b/k2:7 k:v-a/k3:7 s:v-b/s1:8 ");
    assert_string_equal(nb, "v:v-a:1 v:v-b:6 k:v-a/k1:2 k:v-b/k2:7 k:v-a/k3:7 s:v-b/s1:8 ");
    /* lookups on the loaded estate are case-insensitive where Azure is */
    assert_ptr_equal(kvr_estate_key(a, "V-A", "K3"), &a->keys[2]);
    assert_ptr_equal(kvr_estate_secret(a, "v-B", "S1"), &a->secrets[0]);
    assert_null(kvr_estate_secret(a, "v-a", "s1"));
    free(na);
    free(nb);
    kvr_estate_free(a);
    kvr_estate_free(b);
    /* a repeated list key is reported, and only its first occurrence is read */
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-a, resourceGroup: rg, location: westeurope}]\n"
                 "vaults: [{name: v-a, resourceGroup: rg, location: westeurope}]\n",
                 "t.yaml:3:1: error: duplicate key 'vaults' (first at line 2, column 1)");
}

static void test_model__streamed_items_and_anchors(void **state)
{
    kvr_estate *e = NULL;
    char *got;
    (void)state;
    /* an anchor inside a converted item stays valid for later aliases */
    assert_null(
        load_errors("apiVersion: kvreconcile/v1\n"
                    "vaults: [{name: &v v-a, resourceGroup: &rg rg, location: westeurope}]\n"
                    "keys: [{vault: *v, name: k1, type: RSA}]\n"
                    "secrets:\n"
                    "  - &s {vault: *v, name: s1, generate: {}}\n"
                    "  - {vault: *v, name: s2, generate: {}}\n",
                    &e));
    assert_int_equal(e->nsecrets, 2);
    assert_string_equal(e->keys[0].vault, "v-a");
    assert_string_equal(e->secrets[1].vault, "v-a");
    kvr_estate_free(e);
    /* an alias to a whole item declares it twice */
    expect_error("apiVersion: kvreconcile/v1\n"
                 "vaults: [{name: v-a, resourceGroup: rg, location: westeurope}]\n"
                 "secrets: [&s {vault: v-a, name: s1, generate: {}}, *s]\n",
                 "duplicate secret 's1' in vault 'v-a'");
    /* when the file is not YAML after all, only the YAML error is reported, not what the items
       converted before it said */
    got = load_errors("apiVersion: kvreconcile/v1\n"
                      "vaults: [{name: BAD_NAME!, resourceGroup: rg, location: westeurope}]\n"
                      "keys: [\n",
                      NULL);
    assert_non_null(got);
    assert_non_null(strstr(got, "invalid YAML"));
    assert_null(strstr(got, "invalid vault name"));
    assert_int_equal(strchr(got, '\n') - got + 1, (long)strlen(got)); /* one line */
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model__good_estate_parses),
        cmocka_unit_test(test_model__defaults),
        cmocka_unit_test(test_model__shared_texts),
        cmocka_unit_test(test_model__unknown_field_suggests),
        cmocka_unit_test(test_model__wrong_type_names_expected_type),
        cmocka_unit_test(test_model__literal_value_never_echoed),
        cmocka_unit_test(test_model__all_errors_reported),
        cmocka_unit_test(test_model__cross_references),
        cmocka_unit_test(test_model__duplicates_name_both_places),
        cmocka_unit_test(test_model__multi_document_singletons),
        cmocka_unit_test(test_model__rotation_bounds),
        cmocka_unit_test(test_model__hostile_yaml),
        cmocka_unit_test(test_model__binary_input),
        cmocka_unit_test(test_model__api_version),
        cmocka_unit_test(test_model__duplicate_key_in_list_item),
        cmocka_unit_test(test_model__streamed_lists_keep_order),
        cmocka_unit_test(test_model__streamed_items_and_anchors),
        cmocka_unit_test(test_model__external_value_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
