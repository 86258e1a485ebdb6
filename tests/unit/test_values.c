/*
 * Unit tests of secret values: sources, the private-file rule, generation, markers, and that no
 * error message ever carries a value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvr/values.h"

#define CANARY "kvr-canary-7c1d3e9a"

static char tmpdir[] = "/tmp/kvr-values-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_file(const char *name, const char *content, size_t len, mode_t mode)
{
    static char path[256];
    int fd;
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void test_values__from_env(void **state)
{
    kvr_secret s = {0};
    kvr_value v;
    kvr_error err;
    (void)state;
    s.name = (char *)"db";
    s.source = KVR_SECRET_FROM_ENV;
    s.env_name = (char *)"KVR_TEST_SECRET";
    setenv("KVR_TEST_SECRET", CANARY, 1);
    assert_int_equal(kvr_value_read(&v, &s, &err), 0);
    assert_int_equal(v.len, strlen(CANARY));
    assert_memory_equal(v.data, CANARY, v.len);
    kvr_value_release(&v);
    assert_null(v.data);
    unsetenv("KVR_TEST_SECRET");
    assert_int_equal(kvr_value_read(&v, &s, &err), KVR_ENOTFOUND);
    assert_string_equal(err.message,
                        "environment variable 'KVR_TEST_SECRET' (the value of secret 'db') is not "
                        "set");
}

static void test_values__from_file_private_only(void **state)
{
    kvr_secret s = {0};
    kvr_value v;
    kvr_error err;
    char *path;
    (void)state;
    s.name = (char *)"db";
    s.source = KVR_SECRET_FROM_FILE;
    path = write_file("ok", CANARY "\n", strlen(CANARY) + 1, 0600);
    s.file_path = path;
    assert_int_equal(kvr_value_read(&v, &s, &err), 0);
    assert_int_equal(v.len, strlen(CANARY) + 1); /* bytes as they are, newline included */
    kvr_value_release(&v);

    path = write_file("open", CANARY, strlen(CANARY), 0644);
    s.file_path = path;
    assert_int_equal(kvr_value_read(&v, &s, &err), KVR_EINVAL);
    assert_non_null(strstr(err.message, "is readable by other users (mode 0644); run chmod 600"));
    assert_null(strstr(err.message, CANARY));

    path = write_file("empty", "", 0, 0600);
    s.file_path = path;
    assert_int_equal(kvr_value_read(&v, &s, &err), KVR_EINVAL);
}

static void test_values__file_size_limit(void **state)
{
    kvr_secret s = {0};
    kvr_value v;
    kvr_error err;
    char *big = malloc(KVR_VALUE_MAX + 1);
    (void)state;
    assert_non_null(big);
    memset(big, 'x', KVR_VALUE_MAX + 1);
    s.name = (char *)"big";
    s.source = KVR_SECRET_FROM_FILE;
    s.file_path = write_file("big", big, KVR_VALUE_MAX, 0600);
    assert_int_equal(kvr_value_read(&v, &s, &err), 0);
    kvr_value_release(&v);
    s.file_path = write_file("big", big, KVR_VALUE_MAX + 1, 0600);
    assert_int_equal(kvr_value_read(&v, &s, &err), KVR_ETOOBIG);
    free(big);
}

static void test_values__generate(void **state)
{
    static const struct {
        kvr_charset cs;
        const char *allowed;
    } cases[] = {
        {KVR_CHARSET_HEX, "0123456789abcdef"},
        {KVR_CHARSET_ALNUM, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"},
        {KVR_CHARSET_BASE64URL, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"},
    };
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        kvr_value a, b;
        kvr_error err;
        assert_int_equal(kvr_value_generate(&a, 64, cases[c].cs, &err), 0);
        assert_int_equal(kvr_value_generate(&b, 64, cases[c].cs, &err), 0);
        assert_int_equal(a.len, 64);
        for (size_t i = 0; i < a.len; i++)
            assert_non_null(strchr(cases[c].allowed, a.data[i]));
        assert_memory_not_equal(a.data, b.data, 64);
        kvr_value_release(&a);
        kvr_value_release(&b);
    }
}

static void test_values__generate_is_uniform(void **state)
{
    /* 16 hex symbols over 25,600 draws: each about 1,600 (sigma about 39); a biased or broken
       generator falls outside +-15% (6 sigma), a correct one practically never does. */
    unsigned counts[16] = {0};
    kvr_value v;
    kvr_error err;
    (void)state;
    assert_int_equal(kvr_value_generate(&v, KVR_VALUE_MAX, KVR_CHARSET_HEX, &err), 0);
    for (size_t i = 0; i < v.len; i++)
        counts[strchr("0123456789abcdef", v.data[i]) - "0123456789abcdef"]++;
    for (int i = 0; i < 16; i++) {
        double expect = (double)v.len / 16;
        assert_true(counts[i] > expect * 0.85 && counts[i] < expect * 1.15);
    }
    kvr_value_release(&v);
}

static void test_values__markers_are_keyed(void **state)
{
    kvr_marker_key k1, k2;
    kvr_error err;
    char m1[KVR_MARKER_LEN + 1], m2[KVR_MARKER_LEN + 1], m3[KVR_MARKER_LEN + 1];
    (void)state;
    assert_int_equal(kvr_marker_key_init(&k1, &err), 0);
    assert_int_equal(kvr_marker_key_init(&k2, &err), 0);
    kvr_marker(m1, &k1, (const unsigned char *)CANARY, strlen(CANARY));
    kvr_marker(m2, &k1, (const unsigned char *)CANARY, strlen(CANARY));
    kvr_marker(m3, &k2, (const unsigned char *)CANARY, strlen(CANARY));
    assert_string_equal(m1, m2);       /* same value, same run: same marker */
    assert_string_not_equal(m1, m3);   /* another run's key: unrelated marker */
    assert_int_equal(strlen(m1), KVR_MARKER_LEN);
    kvr_marker(m2, &k1, (const unsigned char *)CANARY "x", strlen(CANARY) + 1);
    assert_string_not_equal(m1, m2);
    kvr_marker_key_wipe(&k1);
    for (size_t i = 0; i < sizeof(k1.k); i++)
        assert_int_equal(k1.k[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values__from_env),
        cmocka_unit_test(test_values__from_file_private_only),
        cmocka_unit_test(test_values__file_size_limit),
        cmocka_unit_test(test_values__generate),
        cmocka_unit_test(test_values__generate_is_uniform),
        cmocka_unit_test(test_values__markers_are_keyed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
