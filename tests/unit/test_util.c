/* Unit tests of the util module: durations, typo suggestions, diagnostics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
