/*
 * The YAML writer (model/yamlwrite.c): what it writes loads into the same model, a second
 * rendering of that model is byte for byte the first, strings that YAML would read as something
 * else come back as the same strings, durations come back as the same seconds, and comments land
 * where they were asked for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvr/model.h"

#define ALL                                                                                        \
    (KVR_YAML_TOP | KVR_YAML_VAULTS | KVR_YAML_APPS | KVR_YAML_ROLES | KVR_YAML_KEYS |             \
     KVR_YAML_SECRETS | KVR_YAML_PROFILES)

static kvr_estate *load_text(const char *text)
{
    kvr_estate *e = NULL;
    kvr_diags d;
    kvr_diags_init(&d);
    if (kvr_model_load_buffer(&e, "w.yaml", text, strlen(text), &d) < 0) {
        kvr_diags_print(&d, stderr);
        fprintf(stderr, "--- the text was:\n%s", text);
    }
    kvr_diags_release(&d);
    assert_non_null(e);
    return e;
}

static char *write_all(const kvr_estate *e)
{
    char *text = NULL;
    assert_int_equal(kvr_model_write_yaml(&text, e, ALL, NULL, NULL, 0), 0);
    assert_non_null(text);
    return text;
}

/* Every example's after/ state: written, loaded, written again gives the same bytes. */
static void test_yamlwrite__examples_round_trip(void **state)
{
    static const char *const examples[] = {"rotate-key", "rotate-app-credentials", "new-vault",
                                           "relocate-region"};
    const char *fixtures = getenv("KVR_FIXTURES");
    (void)state;
    assert_non_null(fixtures);
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        char path[PATH_MAX];
        const char *paths[1] = {path};
        kvr_estate *e = NULL, *again;
        kvr_diags d;
        char *first, *second;
        snprintf(path, sizeof(path), "%s/../../examples/%s/after", fixtures, examples[i]);
        kvr_diags_init(&d);
        assert_int_equal(kvr_model_load(&e, paths, 1, &d), 0);
        kvr_diags_release(&d);
        first = write_all(e);
        again = load_text(first);
        second = write_all(again);
        assert_string_equal(first, second);
        /* the same model: counts and a few fields of each kind */
        assert_int_equal(again->nvaults, e->nvaults);
        assert_int_equal(again->napps, e->napps);
        assert_int_equal(again->nroles, e->nroles);
        assert_int_equal(again->nkeys, e->nkeys);
        assert_int_equal(again->nsecrets, e->nsecrets);
        assert_int_equal(again->nprofiles, e->nprofiles);
        for (size_t k = 0; k < e->nkeys; k++) {
            assert_int_equal(again->keys[k].ops, e->keys[k].ops);
            assert_int_equal(again->keys[k].rotation.expires_after,
                             e->keys[k].rotation.expires_after);
            assert_int_equal(again->keys[k].rotation.every, e->keys[k].rotation.every);
        }
        for (size_t v = 0; v < e->nvaults; v++) {
            assert_int_equal(again->vaults[v].npolicies, e->vaults[v].npolicies);
            assert_int_equal(again->vaults[v].network.ip_rules.len,
                             e->vaults[v].network.ip_rules.len);
            assert_int_equal(again->vaults[v].copy_from.secrets, e->vaults[v].copy_from.secrets);
        }
        assert_int_equal(again->retention.keys, e->retention.keys);
        if (e->active)
            assert_string_equal(again->active, e->active);
        free(first);
        free(second);
        kvr_estate_free(again);
        kvr_estate_free(e);
    }
}

/* Strings YAML would take for numbers, booleans, null, comments or flow syntax. */
static void test_yamlwrite__quoting(void **state)
{
    static const char *const values[] = {
        "true", "False", "yes", "NO", "on", "null", "~", "4711", "2026-05", "1e3", "0x1f",
        "-lead", "a: b", "a:b", "#hash", "x #y", "[list]", "{map}", "a,b", "", " lead", "trail ",
        "quo\"te", "back\\slash", "Contoso backup (aos-backup)",
        "\xc3\xbc-umlaut", "*alias", "&anchor", "!tag", "|", ">", "%pct", "@at", "`tick",
        "plain-word", "10.0.0.0/24", "y", "n", ".inf"};
    const size_t n = sizeof(values) / sizeof(values[0]);
    kvr_estate e;
    kvr_vault v;
    kvr_tag items[64];
    kvr_estate *back;
    char *text;
    (void)state;
    assert_true(n <= 64);
    memset(&e, 0, sizeof(e));
    memset(&v, 0, sizeof(v));
    v.name = (char *)"v-one";
    v.resource_group = (char *)"rg";
    v.location = (char *)"westeurope";
    v.rbac = true;
    v.soft_delete_days = 90;
    for (size_t i = 0; i < n; i++) {
        static char keys[64][8];
        snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
        items[i].key = keys[i];
        items[i].value = (char *)values[i];
    }
    v.tags.items = items;
    v.tags.len = n;
    e.vaults = &v;
    e.nvaults = 1;
    e.subscription = (char *)"3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43";
    text = write_all(&e);
    back = load_text(text);
    assert_int_equal(back->vaults[0].tags.len, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(back->vaults[0].tags.items[i].value, values[i]);
    assert_string_equal(back->subscription, e.subscription);
    assert_non_null(strstr(text, "k34: plain-word\n")); /* plain where that is safe */
    assert_non_null(strstr(text, "k7: \"4711\"\n"));
    free(text);
    kvr_estate_free(back);
}

/* Durations come back as the same seconds, in the loader's units. */
static void test_yamlwrite__durations(void **state)
{
    static const struct {
        int64_t s;
        const char *text;
    } cases[] = {{90 * 86400LL, "90d"}, {730 * 86400LL, "730d"}, {36 * 3600LL, "36h"},
                 {90 * 60LL, "90m"},    {45, "45s"},             {86400 + 1, "86401s"}};
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32], yaml[256];
        kvr_estate *e;
        kvr_model_duration_text(buf, sizeof(buf), cases[i].s);
        assert_string_equal(buf, cases[i].text);
        snprintf(yaml, sizeof(yaml), "apiVersion: kvreconcile/v1\nretention: {keys: %s}\n", buf);
        e = load_text(yaml);
        assert_int_equal(e->retention.keys, cases[i].s);
        kvr_estate_free(e);
    }
}

/* Comments go before the item they name, at a section's end, and at the file's end. */
static void test_yamlwrite__notes(void **state)
{
    static const char text_in[] = "apiVersion: kvreconcile/v1\n"
                                  "vaults:\n"
                                  "  - {name: v-one, resourceGroup: rg, location: westeurope}\n"
                                  "  - {name: v-two, resourceGroup: rg, location: westeurope}\n"
                                  "secrets:\n"
                                  "  - {vault: v-one, name: s1, external: true}\n";
    const kvr_yaml_note notes[] = {
        {"vaults", 1, "second vault:\ndecide"},
        {"vaults", SIZE_MAX, "not expressible: certificate 'c'"},
        {"", SIZE_MAX, "2 objects not written"},
        {"keys", SIZE_MAX, "no keys"},
    };
    kvr_estate *e = load_text(text_in), *back;
    char *text = NULL;
    (void)state;
    assert_int_equal(kvr_model_write_yaml(&text, e, ALL, "# head\n", notes, 4), 0);
    assert_non_null(strstr(text, "# head\napiVersion: kvreconcile/v1\n"));
    assert_non_null(strstr(text, "    rbac: true\n"));
    assert_non_null(strstr(text, "  # second vault:\n  # decide\n  - name: v-two\n"));
    assert_non_null(strstr(text, "  # not expressible: certificate 'c'\n"));
    assert_non_null(strstr(text, "\n# no keys\n"));
    assert_non_null(strstr(text, "    external: true\n"));
    assert_non_null(strstr(text, "\n# 2 objects not written\n"));
    back = load_text(text);
    assert_int_equal(back->secrets[0].source, KVR_SECRET_EXTERNAL);
    assert_int_equal(back->nvaults, 2);
    free(text);
    kvr_estate_free(back);
    kvr_estate_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yamlwrite__examples_round_trip),
        cmocka_unit_test(test_yamlwrite__quoting),
        cmocka_unit_test(test_yamlwrite__durations),
        cmocka_unit_test(test_yamlwrite__notes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
