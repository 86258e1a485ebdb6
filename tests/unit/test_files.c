/*
 * Unit tests of reading and writing the files the user names (issue #18): a FIFO, a device, a
 * directory or a planted symbolic link is refused at once, never waited on, by every reader
 * (the helper in util/file.c, secret files, credential files, the desired state); the writer
 * never goes through a predictable name. Every test runs under alarm(): a reader that blocks on
 * a FIFO fails the test with SIGALRM instead of hanging it.
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

#include "kvr/azure.h"
#include "kvr/model.h"
#include "kvr/util.h"
#include "kvr/values.h"

static char tmpdir[] = "/tmp/kvr-files-XXXXXX";
static char pathbuf[4][512];

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[600];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A path in the test directory (one of four rotating buffers). */
static const char *at(const char *name)
{
    static int n;
    char *p = pathbuf[n++ % 4];
    snprintf(p, sizeof(pathbuf[0]), "%s/%s", tmpdir, name);
    return p;
}

static void put(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_files__fifo_refused_at_once(void **state)
{
    char *data = NULL;
    size_t len = 0;
    kvr_error err;
    const char *fifo = at("fifo");
    (void)state;
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(10);
    assert_int_equal(kvr_file_read(&data, &len, fifo, 1024, 0, &err), KVR_EIO);
    alarm(0);
    assert_null(data);
    assert_non_null(strstr(err.message, "is a FIFO, not a regular file"));
}

static void test_files__device_and_directory_refused(void **state)
{
    char *data = NULL;
    size_t len = 0;
    kvr_error err;
    (void)state;
    alarm(10);
    assert_int_equal(kvr_file_read(&data, &len, "/dev/zero", 1024, 0, &err), KVR_EIO);
    assert_non_null(strstr(err.message, "is a device"));
    assert_int_equal(kvr_file_read(&data, &len, tmpdir, 1024, 0, &err), KVR_EIO);
    assert_non_null(strstr(err.message, "is a directory"));
    alarm(0);
}

static void test_files__size_and_symlink(void **state)
{
    char *data = NULL;
    size_t len = 0;
    kvr_error err;
    const char *f = at("ten"), *link = at("link");
    (void)state;
    put(f, "0123456789", 0600);
    assert_int_equal(kvr_file_read(&data, &len, f, 10, 0, &err), 0);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    assert_int_equal(kvr_file_read(&data, &len, f, 9, 0, &err), KVR_ETOOBIG);
    assert_non_null(strstr(err.message, "too large"));
    assert_int_equal(symlink(f, link), 0);
    assert_int_equal(kvr_file_read(&data, &len, link, 10, 0, &err), 0);
    free(data);
    assert_int_equal(kvr_file_read(&data, &len, link, 10, KVR_FILE_NOFOLLOW, &err), KVR_EIO);
    assert_non_null(strstr(err.message, "symbolic link"));
    assert_int_equal(kvr_file_read(&data, &len, at("missing"), 10, 0, &err), KVR_ENOTFOUND);
}

static void test_files__secret_from_fifo(void **state)
{
    kvr_secret s = {0};
    kvr_value v;
    kvr_error err;
    char *fifo = strdup(at("secret-fifo"));
    (void)state;
    assert_int_equal(mkfifo(fifo, 0600), 0);
    s.name = (char *)"s";
    s.source = KVR_SECRET_FROM_FILE;
    s.file_path = fifo;
    alarm(10);
    assert_int_not_equal(kvr_value_read(&v, &s, &err), 0);
    alarm(0);
    assert_non_null(strstr(err.message, "FIFO"));
    free(fifo);
}

static void test_files__credential_from_fifo(void **state)
{
    char *data = NULL;
    size_t len = 0;
    kvr_error err;
    const char *fifo = at("token-fifo");
    (void)state;
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(10);
    assert_int_equal(kvr_auth_read_private_file(&data, &len, fifo, &err), KVR_EIO);
    alarm(0);
    assert_non_null(strstr(err.message, "FIFO"));
}

static void test_files__ca_file_fifo(void **state)
{
    kvr_http *h = NULL;
    kvr_error err;
    const char *fifo = at("ca-fifo");
    (void)state;
    assert_int_equal(mkfifo(fifo, 0600), 0);
    setenv("KVR_CA_FILE", fifo, 1);
    alarm(10);
    assert_int_not_equal(kvr_http_new(&h, NULL, &err), 0);
    alarm(0);
    unsetenv("KVR_CA_FILE");
    assert_null(h);
    assert_non_null(strstr(err.message, "FIFO"));
}

static void test_files__yaml_fifo(void **state)
{
    kvr_estate *e = NULL;
    kvr_diags d;
    const char *fifo = at("desired.yaml");
    const char *paths[] = {fifo};
    (void)state;
    assert_int_equal(mkfifo(fifo, 0600), 0);
    kvr_diags_init(&d);
    alarm(10);
    assert_int_equal(kvr_model_load(&e, paths, 1, &d), KVR_ECONFIG);
    alarm(0);
    assert_true(d.len >= 1);
    kvr_diags_release(&d);
    unlink(fifo);
}

static void test_files__write_atomic_ignores_planted_links(void **state)
{
    char *data = NULL;
    size_t len = 0;
    kvr_error err;
    char target[512], victim[512], planted[600];
    struct stat st;
    (void)state;
    snprintf(target, sizeof(target), "%s", at("status.json"));
    snprintf(victim, sizeof(victim), "%s", at("victim"));
    put(victim, "precious", 0600);
    /* The names an older writer used: none of them may be followed. */
    snprintf(planted, sizeof(planted), "%s.tmp", target);
    assert_int_equal(symlink(victim, planted), 0);
    assert_int_equal(kvr_file_write_atomic(target, "{\"ok\":1}\n", 9, 0644, &err), 0);
    assert_int_equal(kvr_file_read(&data, &len, victim, 100, 0, &err), 0);
    assert_string_equal(data, "precious");
    free(data);
    assert_int_equal(kvr_file_read(&data, &len, target, 100, KVR_FILE_NOFOLLOW, &err), 0);
    assert_string_equal(data, "{\"ok\":1}\n");
    free(data);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* A second write replaces the first. */
    assert_int_equal(kvr_file_write_atomic(target, "{}\n", 3, 0644, &err), 0);
    assert_int_equal(kvr_file_read(&data, &len, target, 100, 0, &err), 0);
    assert_string_equal(data, "{}\n");
    free(data);
    /* In a directory that does not exist: an error, nothing created. */
    assert_int_equal(kvr_file_write_atomic(at("no/such/file"), "x", 1, 0644, &err), KVR_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files__fifo_refused_at_once),
        cmocka_unit_test(test_files__device_and_directory_refused),
        cmocka_unit_test(test_files__size_and_symlink),
        cmocka_unit_test(test_files__secret_from_fifo),
        cmocka_unit_test(test_files__credential_from_fifo),
        cmocka_unit_test(test_files__ca_file_fifo),
        cmocka_unit_test(test_files__yaml_fifo),
        cmocka_unit_test(test_files__write_atomic_ignores_planted_links),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
