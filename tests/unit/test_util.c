/* Unit tests of the util module: durations, typo suggestions, diagnostics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvr/util.h"

static int64_t dur(const char *s)
{
    int64_t v = -1;
    kvr_error err;
    if (kvr_duration_parse(&v, s, &err) < 0)
        return -1;
    return v;
}

static void test_util__duration_short_forms(void **state)
{
    (void)state;
    assert_int_equal(dur("90d"), 90LL * 86400);
    assert_int_equal(dur("12h"), 12LL * 3600);
    assert_int_equal(dur("1d12h"), 86400LL + 12 * 3600);
    assert_int_equal(dur("30m"), 1800);
    assert_int_equal(dur("45s"), 45);
    assert_int_equal(dur("2w"), 14LL * 86400);
    assert_int_equal(dur("2y"), 730LL * 86400);
    assert_int_equal(dur("1y2d3h4m5s"), 365LL * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
}

static void test_util__duration_iso_forms(void **state)
{
    (void)state;
    assert_int_equal(dur("P90D"), 90LL * 86400);
    assert_int_equal(dur("PT12H"), 12LL * 3600);
    assert_int_equal(dur("P1Y6M"), 365LL * 86400 + 180LL * 86400);
    assert_int_equal(dur("P2W"), 14LL * 86400);
    assert_int_equal(dur("P1DT2H3M4S"), 86400LL + 2 * 3600 + 3 * 60 + 4);
    assert_int_equal(dur("PT1M"), 60);
}

static void test_util__duration_rejects(void **state)
{
    static const char *const bad[] = {"",     "0",    "0d",    "90",    "d",     "-1d",  "1.5d",
                                      "P",    "PT",   "P1H",   "PT1D",  "P1DT",  "1h1d", "1d1d",
                                      "P1M1Y", "90 d", "9223372036854775807d", "1x", "P-1D", NULL};
    (void)state;
    for (size_t i = 0; bad[i]; i++) {
        int64_t v = 0;
        kvr_error err;
        if (kvr_duration_parse(&v, bad[i], &err) == 0)
            fail_msg("duration '%s' was accepted as %lld", bad[i], (long long)v);
        assert_int_equal(err.code, KVR_EINVAL);
    }
}

static void test_util__duration_iso_format(void **state)
{
    char buf[32];
    (void)state;
    kvr_duration_iso(buf, sizeof(buf), 90LL * 86400);
    assert_string_equal(buf, "P90D");
    kvr_duration_iso(buf, sizeof(buf), 12 * 3600);
    assert_string_equal(buf, "PT12H");
    kvr_duration_iso(buf, sizeof(buf), 86400 + 3600 + 61);
    assert_string_equal(buf, "P1DT1H1M1S");
    kvr_duration_iso(buf, sizeof(buf), 0);
    assert_string_equal(buf, "PT0S");
    kvr_duration_iso(buf, 3, 90LL * 86400); /* truncated output stays terminated */
    assert_true(strlen(buf) < 3);
}

static void test_util__suggest(void **state)
{
    static const char *const fields[] = {"name", "purgeProtection", "softDeleteDays", "location",
                                         NULL};
    (void)state;
    assert_string_equal(kvr_str_suggest("purgeProtecton", fields), "purgeProtection");
    assert_string_equal(kvr_str_suggest("softdeletedays", fields), "softDeleteDays");
    assert_string_equal(kvr_str_suggest("locaiton", fields), "location");
    assert_null(kvr_str_suggest("zzzzzz", fields));
    assert_int_equal(kvr_str_distance("abc", "acb"), 1);
    assert_int_equal(kvr_str_distance("", "abc"), 3);
}

static void test_util__diags_sorted_and_limited(void **state)
{
    kvr_diags d;
    (void)state;
    kvr_diags_init(&d);
    kvr_diags_add(&d, "b.yaml", 3, 1, "third");
    kvr_diags_add(&d, "a.yaml", 9, 2, "second");
    kvr_diags_add(&d, "a.yaml", 2, 7, "first");
    kvr_diags_sort(&d);
    assert_int_equal(d.len, 3);
    assert_string_equal(d.items[0].msg, "first");
    assert_string_equal(d.items[1].msg, "second");
    assert_string_equal(d.items[2].msg, "third");
    kvr_diags_release(&d);

    kvr_diags_init(&d);
    d.limit = 2;
    for (int i = 0; i < 5; i++)
        kvr_diags_add(&d, "x.yaml", (unsigned)i + 1, 1, "e%d", i);
    assert_int_equal(d.len, 2);
    assert_int_equal(d.dropped, 3);
    kvr_diags_release(&d);
}

static void test_util__strerror_covers_codes(void **state)
{
    (void)state;
    for (int c = 0; c >= KVR_ETOOBIG; c--)
        assert_string_not_equal(kvr_strerror(c), "unknown error");
    assert_string_equal(kvr_strerror(-999), "unknown error");
}

/* ---- hash index ------------------------------------------------------------------------- */

/* Names for the growth test; an index holds ids, the caller compares. */
static char util_names[20000][16];

static bool name_is(const void *arg, size_t id)
{
    const char *const *want = arg;
    return kvr_str_ieq(util_names[id], *want);
}

static bool match_all(const void *arg, size_t id)
{
    (void)arg;
    (void)id;
    return true;
}

static bool match_odd(const void *arg, size_t id)
{
    (void)arg;
    return id % 2 == 1;
}

static void test_util__hash_folds_case(void **state)
{
    (void)state;
    assert_true(kvr_hash_ci(KVR_HASH_SEED, "KV-Bench-01") ==
                kvr_hash_ci(KVR_HASH_SEED, "kv-bench-01"));
    assert_true(kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, "Vault"), "Key") ==
                kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, "vAULT"), "kEY"));
    assert_true(kvr_hash_ci(KVR_HASH_SEED, "kv-bench-01") !=
                kvr_hash_ci(KVR_HASH_SEED, "kv-bench-02"));
    /* parts are delimited, and NULL is not "" */
    assert_true(kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, "ab"), "c") !=
                kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, "a"), "bc"));
    assert_true(kvr_hash_ci(KVR_HASH_SEED, NULL) != kvr_hash_ci(KVR_HASH_SEED, ""));
}

static void test_util__index_empty(void **state)
{
    kvr_index ix = {0};
    kvr_index_iter it;
    size_t id;
    (void)state;
    kvr_index_find(&ix, 42, &it);
    assert_false(kvr_index_next(&ix, &it, &id));
    assert_int_equal(kvr_index_first(&ix, 42, match_all, NULL), KVR_INDEX_NONE);
    assert_int_equal(kvr_index_put(&ix, 1, KVR_INDEX_NONE), KVR_EINVAL);
    kvr_index_release(&ix);
    kvr_index_release(&ix); /* released twice: still empty */
    assert_null(ix.slots);
}

static void test_util__index_id_range(void **state)
{
    kvr_index ix = {0};
    (void)state;
    /* a slot is a 32-bit tag and a 32-bit id: ids up to UINT32_MAX - 1 */
    assert_int_equal(sizeof(kvr_index_slot), 8);
    assert_int_equal(kvr_index_put(&ix, 5, (size_t)UINT32_MAX), KVR_EINVAL);
    assert_int_equal(kvr_index_put(&ix, 5, (size_t)UINT32_MAX - 1), 0);
    assert_int_equal(kvr_index_put(&ix, 6, 0), 0);
    assert_int_equal(ix.len, 2);
    assert_int_equal(kvr_index_first(&ix, 5, match_all, NULL), (size_t)UINT32_MAX - 1);
    assert_int_equal(kvr_index_first(&ix, 6, match_all, NULL), 0);
    kvr_index_release(&ix);
}

static void test_util__index_collisions(void **state)
{
    kvr_index ix;
    kvr_index_iter it;
    size_t id, count = 0;
    bool got[200] = {false};
    (void)state;
    kvr_index_init(&ix);
    /* 100 ids under one hash, in descending order, interleaved with 100 under other hashes */
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(kvr_index_put(&ix, 7, 199 - i), 0);
        assert_int_equal(kvr_index_put(&ix, 1000 + i, i), 0);
    }
    assert_int_equal(ix.len, 200);
    kvr_index_find(&ix, 7, &it);
    while (kvr_index_next(&ix, &it, &id)) {
        assert_true(id >= 100 && id < 200);
        assert_false(got[id]);
        got[id] = true;
        count++;
    }
    assert_int_equal(count, 100);
    /* the smallest matching id wins, whatever the order it went in */
    assert_int_equal(kvr_index_first(&ix, 7, match_all, NULL), 100);
    assert_int_equal(kvr_index_first(&ix, 7, match_odd, NULL), 101);
    /* other hashes hold exactly their own id */
    for (size_t i = 0; i < 100; i++) {
        count = 0;
        kvr_index_find(&ix, 1000 + i, &it);
        while (kvr_index_next(&ix, &it, &id)) {
            assert_int_equal(id, i);
            count++;
        }
        assert_int_equal(count, 1);
    }
    assert_int_equal(kvr_index_first(&ix, 6, match_all, NULL), KVR_INDEX_NONE);
    kvr_index_release(&ix);
}

static void test_util__index_grows(void **state)
{
    kvr_index ix = {0};
    size_t n = sizeof(util_names) / sizeof(util_names[0]);
    (void)state;
    for (size_t i = 0; i < n; i++) {
        snprintf(util_names[i], sizeof(util_names[i]), "Kv-%05zu", i);
        assert_int_equal(kvr_index_put(&ix, kvr_hash_ci(KVR_HASH_SEED, util_names[i]), i), 0);
    }
    assert_int_equal(ix.len, n);
    assert_true(ix.cap >= n + n / 3);           /* at most 3/4 full */
    assert_int_equal(ix.cap & (ix.cap - 1), 0); /* a power of two */
    for (size_t i = 0; i < n; i += 7) {
        char upper[16];
        const char *want = upper;
        snprintf(upper, sizeof(upper), "KV-%05zu", i);
        assert_int_equal(kvr_index_first(&ix, kvr_hash_ci(KVR_HASH_SEED, upper), name_is, &want),
                         i);
    }
    {
        const char *want = "kv-99999";
        assert_int_equal(kvr_index_first(&ix, kvr_hash_ci(KVR_HASH_SEED, want), name_is, &want),
                         KVR_INDEX_NONE);
    }
    /* reserving less than there is changes nothing; more keeps every id */
    assert_int_equal(kvr_index_reserve(&ix, 10), 0);
    assert_int_equal(kvr_index_reserve(&ix, 4 * n), 0);
    assert_int_equal(ix.len, n);
    for (size_t i = 0; i < n; i += 13) {
        const char *want = util_names[i];
        assert_int_equal(kvr_index_first(&ix, kvr_hash_ci(KVR_HASH_SEED, want), name_is, &want), i);
    }
    kvr_index_release(&ix);
}

/* Many short strings share blocks, a long one gets its own, and every copy stays intact. */
static void test_util__strpool(void **state)
{
    kvr_strpool p = {0};
    char *copies[3000], *big, *after;
    char longtext[40000];
    (void)state;
    assert_null(kvr_strpool_dup(&p, NULL));
    for (size_t i = 0; i < 3000; i++) {
        char name[40];
        snprintf(name, sizeof(name), "kv-%04zu/secret-%zu", i, i * 7);
        assert_non_null(copies[i] = kvr_strpool_dup(&p, name));
    }
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    assert_non_null(big = kvr_strpool_dup(&p, longtext));
    /* the long string did not end the block being filled: the next short one follows the last */
    assert_non_null(after = kvr_strpool_dup(&p, "after"));
    assert_ptr_equal(after, copies[2999] + strlen(copies[2999]) + 1);
    assert_string_equal(big, longtext);
    for (size_t i = 0; i < 3000; i += 17) {
        char name[40];
        snprintf(name, sizeof(name), "kv-%04zu/secret-%zu", i, i * 7);
        assert_string_equal(copies[i], name);
    }
    {
        char *part = kvr_strpool_ndup(&p, "resourceGroups/rg-1/providers", 18);
        assert_string_equal(part, "resourceGroups/rg-");
        assert_string_equal(kvr_strpool_ndup(&p, "", 0), "");
    }
    kvr_strpool_release(&p); /* ASan: nothing leaks, nothing is freed twice */
    assert_null(p.head);
    kvr_strpool_release(&p);
}

static void test_util__strset(void **state)
{
    kvr_strset set = {0};
    char *first[1000];
    (void)state;
    assert_null(kvr_strset_get(&set, NULL));
    /* 1,000 distinct names, each asked for twice: one copy each, kept through the table's growth */
    for (size_t i = 0; i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof(name), "kv-%04zu", i);
        assert_non_null(first[i] = kvr_strset_get(&set, name));
        assert_ptr_not_equal(first[i], name);
        assert_string_equal(first[i], name);
    }
    assert_int_equal(set.len, 1000);
    for (size_t i = 0; i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof(name), "kv-%04zu", i);
        assert_ptr_equal(kvr_strset_get(&set, name), first[i]);
    }
    assert_int_equal(set.len, 1000);
    /* compared exactly: another case is another string, as the YAML wrote it */
    assert_ptr_not_equal(kvr_strset_get(&set, "KV-0001"), first[1]);
    assert_string_equal(kvr_strset_get(&set, "KV-0001"), "KV-0001");
    assert_string_equal(kvr_strset_get(&set, ""), "");
    assert_int_equal(set.len, 1002);
    kvr_strset_release(&set); /* ASan: nothing leaks */
    assert_null(set.items);
    kvr_strset_release(&set);
}

static void test_util__str_clean(void **state)
{
    char out[64];
    (void)state;
    /* controls become spaces; bidi overrides and isolates go; other text stays */
    kvr_str_clean(out, sizeof(out), "a\x1b[31mb\r\nc\x7f");
    assert_string_equal(out, "a [31mb  c ");
    kvr_str_clean(out, sizeof(out), "x\xe2\x80\xaay\xe2\x80\xaez\xe2\x81\xa6w\xe2\x81\xa9!");
    assert_string_equal(out, "xyzw!");
    kvr_str_clean(out, sizeof(out), "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x94\x91");
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x94\x91");
    /* C1 controls (U+009B is a CSI) and invalid UTF-8 (lone byte, overlong, surrogate) */
    kvr_str_clean(out, sizeof(out), "a\xc2\x9b" "1m\xff\xc0\xaf\xed\xa0\x80" "b");
    assert_string_equal(out, "a 1m??????b"); /* one per invalid byte */
    /* cut at a character boundary */
    assert_int_equal(kvr_str_clean(out, 5, "abc\xc3\xa9"), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(kvr_str_clean(out, 6, "abc\xc3\xa9"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util__duration_short_forms),
        cmocka_unit_test(test_util__duration_iso_forms),
        cmocka_unit_test(test_util__duration_rejects),
        cmocka_unit_test(test_util__duration_iso_format),
        cmocka_unit_test(test_util__suggest),
        cmocka_unit_test(test_util__diags_sorted_and_limited),
        cmocka_unit_test(test_util__strerror_covers_codes),
        cmocka_unit_test(test_util__hash_folds_case),
        cmocka_unit_test(test_util__index_empty),
        cmocka_unit_test(test_util__index_id_range),
        cmocka_unit_test(test_util__index_collisions),
        cmocka_unit_test(test_util__index_grows),
        cmocka_unit_test(test_util__strpool),
        cmocka_unit_test(test_util__strset),
        cmocka_unit_test(test_util__str_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
