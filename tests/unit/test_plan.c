/*
 * Plan tests as data: each directory under tests/fixtures/plan/ holds `live.json` (the live
 * state, service clock included), the desired state (a `desired/` directory, or a
 * `desired.path` file naming one, e.g. an example's after/), and `expected-plan.txt`, the text
 * rendering. The JSON rendering is written next to the run (build dir) for the schema check.
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

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void run_case(void **state)
{
    const char *dir = *state;
    char desired_path[PATH_MAX], cwd[PATH_MAX], *live_text, *want, *got = NULL, *json = NULL;
    const char *paths[1];
    size_t live_len, got_len = 0;
    kvr_estate *e = NULL;
    kvr_live *l = NULL;
    kvr_plan *p = NULL;
    kvr_diags d;
    kvr_error err;
    kvr_plan_input in;
    FILE *f;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    kvr_diags_init(&d);
    {
        char *named = slurp("desired.path", NULL);
        if (named) {
            named[strcspn(named, "\n")] = '\0';
            snprintf(desired_path, sizeof(desired_path), "%s", named);
            free(named);
        } else {
            snprintf(desired_path, sizeof(desired_path), "desired");
        }
    }
    paths[0] = desired_path;
    if (kvr_model_load(&e, paths, 1, &d) < 0) {
        kvr_diags_print(&d, stderr);
        fail_msg("%s: the desired state does not load", dir);
    }
    live_text = slurp("live.json", &live_len);
    assert_non_null(live_text);
    if (kvr_live_from_json(&l, live_text, live_len, &err) < 0)
        fail_msg("%s: %s", dir, err.message);
    memset(&in, 0, sizeof(in));
    in.desired = e;
    in.live = l;
    in.subscription = e->subscription;
    if (kvr_plan_build(&p, &in, &err) < 0)
        fail_msg("%s: plan failed: %s", dir, err.message);

    f = open_memstream(&got, &got_len);
    assert_non_null(f);
    assert_int_equal(kvr_plan_render_text(p, f, false), 0);
    fclose(f);
    assert_int_equal(kvr_plan_render_json(&json, p, &err), 0);

    if (getenv("KVR_REGEN")) {
        f = fopen("expected-plan.txt", "w");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    want = slurp("expected-plan.txt", NULL);
    assert_int_equal(chdir(cwd), 0);
    {
        /* Offline plans (--save-live, --live): the live state written and read back plans the
           same, and writing it again gives the same bytes. */
        char *w1 = NULL, *w2 = NULL, *again = NULL;
        size_t again_len = 0;
        kvr_live *l2 = NULL;
        kvr_plan *p2 = NULL;
        assert_int_equal(kvr_live_to_json(&w1, l, &err), 0);
        if (kvr_live_from_json(&l2, w1, strlen(w1), &err) < 0)
            fail_msg("%s: the written live state does not read back: %s", dir, err.message);
        assert_int_equal(kvr_live_to_json(&w2, l2, &err), 0);
        assert_string_equal(w1, w2);
        in.live = l2;
        assert_int_equal(kvr_plan_build(&p2, &in, &err), 0);
        f = open_memstream(&again, &again_len);
        assert_non_null(f);
        assert_int_equal(kvr_plan_render_text(p2, f, false), 0);
        fclose(f);
        if (strcmp(again, got) != 0)
            fail_msg("%s: the plan against the written live state differs.\n--- from live.json\n"
                     "%s\n--- from the written copy\n%s",
                     dir, got, again);
        free(again);
        free(w1);
        free(w2);
        kvr_plan_free(p2);
        kvr_live_free(l2);
    }
    {
        /* The JSON form, for tests/schema/plan_json.sh to validate against plan.schema.json. */
        char out[PATH_MAX + 300];
        const char *base = strrchr(dir, '/'), *outdir = getenv("KVR_PLAN_JSON_OUT");
        snprintf(out, sizeof(out), "%s/plan-%s.json", outdir ? outdir : ".", base ? base + 1 : dir);
        f = fopen(out, "w");
        if (f) {
            fputs(json, f);
            fclose(f);
        }
    }
    if (!want)
        fail_msg("%s: no expected-plan.txt (run with KVR_REGEN=1 and review it)", dir);
    if (strcmp(want, got) != 0)
        fail_msg("%s: plan differs.\n--- expected\n%s\n--- got\n%s", dir, want, got);
    free(want);
    free(got);
    free(json);
    free(live_text);
    kvr_plan_free(p);
    kvr_live_free(l);
    kvr_estate_free(e);
    kvr_diags_release(&d);
}

/* Text rendering groups steps by vault, names without case: every step shows, however many
   vaults the plan touches (it once stopped at 256 groups). */
static void test_plan__render_text_many_vaults(void **state)
{
    enum { NV = 300 };
    kvr_plan p;
    kvr_step steps[NV + 2];
    char vaults[NV + 2][16], objects[NV + 2][32], summary[] = "s", *got = NULL, line[64];
    size_t len = 0;
    const char *at, *v7;
    FILE *f;
    (void)state;
    memset(&p, 0, sizeof(p));
    memset(steps, 0, sizeof(steps));
    for (size_t i = 0; i < NV + 2; i++) {
        /* the last two: a directory step, and a step in vault 'V007' (group of 'v007') */
        snprintf(vaults[i], sizeof(vaults[i]), i == NV + 1 ? "V007" : "v%03zu", i);
        snprintf(objects[i], sizeof(objects[i]), "object %zu", i);
        steps[i].id = i + 1;
        steps[i].kind = KVR_STEP_VAULT_UPDATE;
        steps[i].action = KVR_ACTION_CHANGE;
        steps[i].vault = i == NV ? NULL : vaults[i];
        steps[i].object = objects[i];
        steps[i].summary = summary;
    }
    p.steps = steps;
    p.nsteps = NV + 2;
    f = open_memstream(&got, &len);
    assert_non_null(f);
    assert_int_equal(kvr_plan_render_text(&p, f, false), 0);
    fclose(f);
    for (size_t i = 0; i < NV + 2; i++) {
        snprintf(line, sizeof(line), "%3zu ~ object %zu: s\n", i + 1, i);
        if (!strstr(got, line))
            fail_msg("step %zu is missing from the text plan", i + 1);
    }
    /* the directory group comes first; 'V007' is shown under vault 'v007', right after it */
    at = strstr(got, "\ndirectory (Entra ID)\n");
    assert_non_null(at);
    assert_true(at < strstr(got, "\nvault 'v000'\n"));
    assert_null(strstr(got, "vault 'V007'"));
    v7 = strstr(got, "\nvault 'v007'\n");
    assert_non_null(v7);
    assert_non_null(strstr(v7, "  8 ~ object 7: s\n"));
    assert_ptr_equal(strstr(v7, "302 ~ object 301: s\n"),
                     strstr(v7, "  8 ~ object 7: s\n") + strlen("  8 ~ object 7: s\n"));
    free(got);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A saved plan's live digest: markers of two runs (different keys) that stand in the same
   relations give the same canonical text; a changed relation gives another. */
static void test_plan__live_canon_marker_classes(void **state)
{
#define CANON_FMT                                                                                  \
    "{\"now\": %d, \"secrets\": [{\"vault\": \"a\", \"name\": \"s\", \"digest\": \"%s\"},"            \
    "{\"vault\": \"b\", \"name\": \"s\", \"digest\": \"%s\"}]}"
    const char *runs[][3] = {{"aaaa", "aaaa", "cccc"}, {"1111", "1111", "3333"},
                             {"1111", "2222", "3333"}, {"1111", "1111", "1111"}};
    char *canon[4];
    kvr_error err;
    (void)state;
    for (int i = 0; i < 4; i++) {
        char text[512];
        kvr_live *l = NULL;
        kvr_value_digest d = {"b", "s", runs[i][2]};
        snprintf(text, sizeof(text), CANON_FMT, 1000 + i, runs[i][0], runs[i][1]);
        assert_int_equal(kvr_live_from_json(&l, text, strlen(text), &err), 0);
        assert_int_equal(kvr_live_canon(&canon[i], l, &d, 1, &err), 0);
        assert_null(strstr(canon[i], runs[i][0])); /* no marker, and no clock */
        assert_null(strstr(canon[i], "100"));
        kvr_live_free(l);
    }
    assert_string_equal(canon[0], canon[1]);
    assert_string_not_equal(canon[1], canon[2]); /* the copy no longer equals its source */
    assert_string_not_equal(canon[1], canon[3]); /* the declared value is now the live one */
    for (int i = 0; i < 4; i++)
        free(canon[i]);
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
    dir = opendir(base);
    if (!dir) {
        fprintf(stderr, "cannot open %s\n", base);
        return 1;
    }
    while ((de = readdir(dir))) {
        char path[PATH_MAX + 300];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/live.json", base, de->d_name);
        if (access(path, R_OK) != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
        names[n++] = strdup(path);
    }
    closedir(dir);
    qsort(names, n, sizeof(*names), name_cmp);
    tests = calloc(n + 3, sizeof(*tests));
    for (size_t i = 0; i < n; i++) {
        tests[i].name = strrchr(names[i], '/') + 1;
        tests[i].test_func = run_case;
        tests[i].initial_state = names[i];
    }
    tests[n].name = "test_plan__render_text_many_vaults";
    tests[n].test_func = test_plan__render_text_many_vaults;
    tests[n + 1].name = "test_plan__live_canon_marker_classes";
    tests[n + 1].test_func = test_plan__live_canon_marker_classes;
    rc = _cmocka_run_group_tests("test_plan", tests, n + 2, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc || n == 0;
}
