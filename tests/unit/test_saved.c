/*
 * Saved plans without a network (apply/saved.c): a plan made from a fixture's desired and live
 * state is written, loaded back and asked about steps. The plan's own steps are allowed; a step
 * with another value, or one the plan never showed, is not; a value the plan marked as known
 * only when it runs is accepted; another live state or an edited desired file makes it stale.
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
#include <unistd.h>

#include "kvr/apply.h"

typedef struct fx {
    char dir[PATH_MAX];
    kvr_estate *e;
    kvr_live *l;
    kvr_plan *p;
    char *canon;
    kvr_saved_plan *sp;
} fx;

static char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    kvr_error err;
    if (kvr_file_read(&buf, len, path, 1u << 24, 0, &err) < 0)
        return NULL;
    return buf;
}

/* Copies the rotate-key fixture's desired state into a scratch dir (so it can be edited), plans
   it against the fixture's live state, saves the plan and loads it back. */
static int setup(void **state)
{
    const char *root = getenv("KVR_FIXTURES");
    char cmd[3 * PATH_MAX], live[PATH_MAX], plan[PATH_MAX + 16];
    const char *paths[1];
    fx *f = calloc(1, sizeof(*f));
    size_t len = 0;
    char *text;
    kvr_diags d;
    kvr_error err;
    kvr_plan_input in;

    assert_non_null(root);
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/kvr-test-saved-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(cmd, sizeof(cmd), "cp -r %s/../../examples/rotate-key/after %s/desired", root,
             f->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(live, sizeof(live), "%s/plan/rotate-key/live.json", root);
    text = slurp(live, &len);
    assert_non_null(text);
    assert_int_equal(kvr_live_from_json(&f->l, text, len, &err), 0);
    free(text);
    snprintf(cmd, sizeof(cmd), "%s/desired", f->dir);
    paths[0] = cmd;
    kvr_diags_init(&d);
    assert_int_equal(kvr_model_load(&f->e, paths, 1, &d), 0);
    kvr_diags_release(&d);
    memset(&in, 0, sizeof(in));
    in.desired = f->e;
    in.live = f->l;
    in.subscription = f->e->subscription;
    assert_int_equal(kvr_plan_build(&f->p, &in, &err), 0);
    assert_true(f->p->nsteps > 3);
    assert_int_equal(kvr_live_canon(&f->canon, f->l, NULL, 0, &err), 0);
    snprintf(plan, sizeof(plan), "%s/plan", f->dir);
    assert_int_equal(kvr_saved_plan_write(plan, f->p, f->e, paths, 1, f->canon, &err), 0);
    assert_int_equal(kvr_saved_plan_load(&f->sp, plan, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    kvr_saved_plan_free(f->sp);
    free(f->canon);
    kvr_plan_free(f->p);
    kvr_live_free(f->l);
    kvr_estate_free(f->e);
    free(f);
    return 0;
}

static void test_saved__allows_its_own_steps(void **state)
{
    fx *f = *state;
    char why[256];
    kvr_error err;
    for (size_t i = 0; i < f->p->nsteps; i++)
        if (!kvr_saved_plan_allows(f->sp, &f->p->steps[i], why, sizeof(why)))
            fail_msg("step %zu refused: %s", i + 1, why);
    assert_int_equal(kvr_saved_plan_check_live(f->sp, f->canon, &err), 0);
    assert_int_equal(kvr_saved_plan_check_desired(f->sp, f->e, &err), 0);
}

/* A string value of `op` to change, for the refusal tests; NULL when it has none. */
static const char **a_value(kvr_op *op)
{
    switch (op->kind) {
    case KVR_OP_KEY_CREATE:
    case KVR_OP_KEY_ROTATION_POLICY:
        return &op->u.key.name;
    case KVR_OP_KEY_PATCH:
        return &op->u.key_patch.name;
    case KVR_OP_TAG_SET:
        return &op->u.tag.name;
    case KVR_OP_PROFILE_PUT:
    case KVR_OP_PROFILE_APPLY:
    case KVR_OP_PROFILE_DELETE:
        return &op->u.profile.name;
    case KVR_OP_OBJECT_DELETE:
    case KVR_OP_OBJECT_RECOVER:
        return &op->u.object.name;
    default:
        return NULL;
    }
}

/* Every operation, with one of its values changed, is refused, and the refusal names it. */
static void test_saved__refuses_another_value(void **state)
{
    fx *f = *state;
    char why[1024];
    size_t tried = 0;
    for (size_t i = 0; i < f->p->nsteps; i++) {
        kvr_step *s = &f->p->steps[i];
        for (size_t k = 0; k < s->nops; k++) {
            const char **v = a_value(&s->ops[k]), *was;
            if (!v || !*v)
                continue;
            was = *v;
            *v = "something-else";
            why[0] = '\0';
            assert_false(kvr_saved_plan_allows(f->sp, s, why, sizeof(why)));
            assert_non_null(strstr(why, "something-else"));
            *v = was;
            tried++;
        }
    }
    assert_true(tried > 3);
}

/* An operation the plan does not show on the same object is refused. */
static void test_saved__refuses_a_step_not_shown(void **state)
{
    fx *f = *state;
    char why[1024];
    kvr_step s = f->p->steps[0];
    kvr_op del = {.kind = KVR_OP_OBJECT_DELETE};
    del.u.object.collection = KVR_COLL_KEYS;
    del.u.object.vault = s.vault;
    del.u.object.name = s.name;
    s.kind = KVR_STEP_KEY_DELETE; /* the same object, another operation */
    s.ops = &del;
    s.nops = 1;
    assert_false(kvr_saved_plan_allows(f->sp, &s, why, sizeof(why)));
    assert_non_null(strstr(why, "does not show"));
    assert_non_null(strstr(why, "objectDelete"));
}

/* The profile of a rotation names "the version made by this plan"; the run names the id. */
static void test_saved__accepts_what_only_the_run_knows(void **state)
{
    fx *f = *state;
    char why[1024];
    bool found = false;
    for (size_t i = 0; i < f->p->nsteps; i++) {
        kvr_step *s = &f->p->steps[i];
        for (size_t k = 0; k < s->nops; k++) {
            kvr_op *op = &s->ops[k];
            const char *was;
            if (op->kind != KVR_OP_PROFILE_PUT || !op->u.profile.key_version ||
                strcmp(op->u.profile.key_version, KVR_PLAN_NEW_VERSION) != 0)
                continue;
            was = op->u.profile.key_version;
            op->u.profile.key_version = "0123456789abcdef0123456789abcdef";
            if (!kvr_saved_plan_allows(f->sp, s, why, sizeof(why)))
                fail_msg("refused: %s", why);
            op->u.profile.name = "another-profile";
            assert_false(kvr_saved_plan_allows(f->sp, s, why, sizeof(why)));
            op->u.profile.name = s->name;
            op->u.profile.key_version = was;
            found = true;
        }
    }
    assert_true(found);
}

static void test_saved__stale(void **state)
{
    fx *f = *state;
    char file[PATH_MAX + 64];
    FILE *out;
    kvr_error err;
    assert_int_equal(kvr_saved_plan_check_live(f->sp, "{\"other\":1}", &err), KVR_ESTALE);
    assert_non_null(strstr(err.message, "the plan is stale: the live estate changed"));
    snprintf(file, sizeof(file), "%s", f->e->files.items[0]);
    out = fopen(file, "a");
    assert_non_null(out);
    fputs("# edited\n", out);
    fclose(out);
    assert_int_equal(kvr_saved_plan_check_desired(f->sp, f->e, &err), KVR_ESTALE);
    assert_non_null(strstr(err.message, "changed since the plan was made"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saved__allows_its_own_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saved__refuses_another_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saved__refuses_a_step_not_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saved__accepts_what_only_the_run_knows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_saved__stale, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
