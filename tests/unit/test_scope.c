/*
 * The read scope as data: each directory under tests/fixtures/plan/ that holds
 * `expected-scope.txt` names a desired state (a `desired/` directory, or a `desired.path` file
 * naming one) and the text form of what kvr_plan_read_scope tells the reader about it, one line
 * per name. The reader's frugality rests on these flags (which values are compared, which
 * rotation policies and certificates are read), so a change to them shows here as a diff.
 * KVR_REGEN=1 rewrites the expectations (review the diff before committing it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvr/plan.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static kvr_estate *load(const char *path)
{
    const char *paths[1] = {path};
    kvr_estate *e = NULL;
    kvr_diags d;
    kvr_diags_init(&d);
    if (kvr_model_load(&e, paths, 1, &d) < 0) {
        kvr_diags_print(&d, stderr);
        fail_msg("%s: the desired state does not load", path);
    }
    kvr_diags_release(&d);
    return e;
}

static void object(FILE *f, const char *what, const kvr_scope_object *o)
{
    fprintf(f, "%s %s/%s%s%s%s\n", what, o->vault, o->name, o->value ? " value" : "",
            o->rotation ? " rotation" : "", o->credential ? " credential" : "");
}

/* One line per name, in the scope's order (the reader's). */
static void render(FILE *f, const kvr_scope *s)
{
    fprintf(f, "subscription %s\n", s->subscription ? s->subscription : "(none)");
    for (size_t i = 0; i < s->nvaults; i++)
        fprintf(f, "vault %s rg %s%s%s%s\n", s->vaults[i].name, s->vaults[i].resource_group,
                s->vaults[i].copy_from ? " copy-from " : "",
                s->vaults[i].copy_from ? s->vaults[i].copy_from : "",
                s->vaults[i].certificates ? " certificates" : "");
    for (size_t i = 0; i < s->nkeys; i++)
        object(f, "key", &s->keys[i]);
    for (size_t i = 0; i < s->nsecrets; i++)
        object(f, "secret", &s->secrets[i]);
    for (size_t i = 0; i < s->napps; i++)
        fprintf(f, "app '%s'\n", s->apps[i]);
    for (size_t i = 0; i < s->nroles; i++)
        fprintf(f, "role %s '%s'\n", s->roles[i].vault, s->roles[i].app);
    fprintf(f, "profiles %s\n", s->profiles ? "yes" : "no");
    fprintf(f, "everything %s\n", s->everything ? "yes" : "no");
}

static void run_case(void **state)
{
    const char *dir = *state;
    char desired[PATH_MAX], cwd[PATH_MAX], *named, *want, *got = NULL;
    size_t got_len = 0;
    kvr_estate *e;
    kvr_scope *s = NULL;
    kvr_error err;
    FILE *f;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    if ((named = slurp("desired.path"))) {
        named[strcspn(named, "\n")] = '\0';
        snprintf(desired, sizeof(desired), "%s", named);
        free(named);
    } else {
        snprintf(desired, sizeof(desired), "desired");
    }
    e = load(desired);
    if (kvr_plan_read_scope(&s, e, e->subscription, &err) < 0)
        fail_msg("%s: %s", dir, err.message);
    f = open_memstream(&got, &got_len);
    assert_non_null(f);
    render(f, s);
    fclose(f);
    if (getenv("KVR_REGEN")) {
        f = fopen("expected-scope.txt", "w");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    want = slurp("expected-scope.txt");
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(want);
    if (strcmp(want, got) != 0)
        fail_msg("%s: the scope differs.\n--- expected\n%s--- got\n%s", dir, want, got);
    free(want);
    free(got);
    kvr_scope_free(s);
    kvr_estate_free(e);
}

/* The scope names the desired state's own strings (no copies of a 50,000-name estate) and the
   subscription the caller resolved, which may not be the estate's. */
static void test_scope__borrows_names(void **state)
{
    const char *root = *state;
    char path[PATH_MAX];
    kvr_estate *e;
    kvr_scope *s = NULL;
    kvr_error err;

    snprintf(path, sizeof(path), "%s/plan/scope-sources/desired", root);
    e = load(path);
    assert_int_equal(kvr_plan_read_scope(&s, e, "from-the-environment", &err), 0);
    assert_string_equal(s->subscription, "from-the-environment");
    assert_int_equal(s->nvaults, e->nvaults);
    assert_ptr_equal(s->vaults[0].name, e->vaults[0].name);
    assert_ptr_equal(s->keys[0].name, e->keys[0].name);
    assert_ptr_equal(s->apps[1], e->apps[1].display_name);
    kvr_scope_free(s);
    kvr_estate_free(e);
}

/* An estate that declares nothing: an empty scope, which the reader answers with the
   service's clock alone. */
static void test_scope__empty(void **state)
{
    kvr_estate e;
    kvr_scope *s = NULL;
    kvr_error err;

    (void)state;
    memset(&e, 0, sizeof(e));
    assert_int_equal(kvr_plan_read_scope(&s, &e, NULL, &err), 0);
    assert_null(s->subscription);
    assert_int_equal(s->nvaults + s->nkeys + s->nsecrets + s->napps + s->nroles, 0);
    assert_false(s->profiles);
    assert_false(s->everything);
    kvr_scope_free(s);
    kvr_scope_free(NULL);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const char *root = getenv("KVR_FIXTURES");
    char base[PATH_MAX];
    char **names = NULL;
    struct CMUnitTest *tests;
    size_t n = 0;
    DIR *dir;
    struct dirent *de;
    int rc;

    if (!root) {
        fprintf(stderr, "KVR_FIXTURES is not set\n");
        return 1;
    }
    snprintf(base, sizeof(base), "%s/plan", root);
    if (!(dir = opendir(base))) {
        fprintf(stderr, "cannot open %s\n", base);
        return 1;
    }
    while ((de = readdir(dir))) {
        char path[PATH_MAX + 300];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/expected-scope.txt", base, de->d_name);
        if (access(path, R_OK) != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        assert_non_null(names);
        snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
        names[n] = strdup(path);
        assert_non_null(names[n]);
        n++;
    }
    closedir(dir);
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    tests = calloc(n + 2, sizeof(*tests));
    assert_non_null(tests);
    for (size_t i = 0; i < n; i++) {
        tests[i].name = strrchr(names[i], '/') + 1;
        tests[i].test_func = run_case;
        tests[i].initial_state = names[i];
    }
    tests[n].name = "test_scope__borrows_names";
    tests[n].test_func = test_scope__borrows_names;
    tests[n].initial_state = (void *)root;
    tests[n + 1].name = "test_scope__empty";
    tests[n + 1].test_func = test_scope__empty;
    rc = _cmocka_run_group_tests("test_scope", tests, n + 2, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc || n == 0;
}
