/*
 * Executor tests as data: each directory under tests/fixtures/apply/ is one case, run by
 * kvr_apply against the fake provider (kvr/fake.h), with no network and no simulator.
 *
 *   desired/ or desired.path   the desired state (as in tests/fixtures/plan)
 *   live.json                  the live state the fake starts from (with the service clock)
 *   script.json                optional: the fake's script (faults, read events, clock)
 *   options.json               optional: {"env": {NAME: VALUE}, "runs": [RUN, ...]}, each RUN
 *                              {"wait": S, "poll": S, "probeSeconds": S, "savedPlan": true,
 *                              "maxSeconds": S (the run must not take longer: no sleeping),
 *                              "env": {NAME: VALUE} (set from this run on),
 *                              "requeueAfter": S (asked as watch asks; S seconds expected),
 *                              "script": [...]} (the fake's script entries added before the run,
 *                              a "read" counted from the run's first read);
 *                              default one run, no waiting. Runs share the fake, so a later run
 *                              meets what an earlier one left; "savedPlan" first plans against
 *                              the fake (a read), saves the plan and applies exactly that
 *   ops.txt                    every operation carried out, one kvr_op_to_json(op, true) line
 *                              each, in order ("# run N" lines between runs when several)
 *   result.txt                 one line per run: "converged", "blocked: TEXT" or "error: TEXT",
 *                              TEXT being part of the reason or the error message
 *   live-after.json            optional facts about the final state: a partial live state
 *                              (objects match when every member given matches; an array lists
 *                              elements some actual element must match, or with "$not": true
 *                              none may; an element {"$len": N} is the array's length), plus
 *                              "sameDigest":
 *                              [["VAULT/SECRET", "VAULT/SECRET"], ...] for equal values
 *
 * A case where another writer changes the live state during a run says "otherWriter": true.
 * A case may list "knownIssues" in options.json: ["replanned"] says that the executor
 * announces a changed step count although nothing but the run changed the live state (a bug,
 * reported); such a case fails when the issue is gone, so that the entry goes with the fix.
 *
 * After every run two invariants are checked whatever the case: no profile in Applying or Used
 * uses a key version that is missing or disabled (nothing that can decrypt data is lost), and,
 * unless the run failed, every client secret kvreconcile made (display name kvr:...) has its
 * stored copy (a secret tagged with its keyId).
 *
 * KVR_FIXTURES_UPDATE=1 writes ops.txt and result.txt from what ran (a result line that no longer
 * holds is written with the whole message): read every line before committing it, and shorten
 * result lines to what the case proves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvr/apply.h"
#include "kvr/fake.h"

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

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A growing text buffer. */
typedef struct text {
    char *s;
    size_t len;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    t->s = realloc(t->s, t->len + (size_t)n + 1);
    assert_non_null(t->s);
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* ---- invariants ---------------------------------------------------------------------------- */

/* Nothing that can decrypt data is gone: every profile in Applying or Used has its key version,
   enabled. */
static void check_no_data_lost(const char *dir, size_t run, const kvr_live *l)
{
    for (size_t i = 0; i < l->nprofiles; i++) {
        const kvr_live_profile *p = &l->profiles[i];
        const kvr_live_key *k;
        bool ok = false;
        if (p->status != KVR_PROFILE_APPLYING && p->status != KVR_PROFILE_USED)
            continue;
        k = kvr_live_key_get(l, p->vault, p->key);
        for (size_t v = 0; k && v < k->nversions; v++)
            ok |= kvr_str_ieq(k->versions[v].id, p->key_version) && k->versions[v].enabled;
        if (!ok)
            fail_msg("%s: run %zu: profile '%s' (%s) uses key '%s/%s' version %s, which is gone "
                     "or disabled",
                     dir, run, p->name, kvr_profile_status_name(p->status), p->vault, p->key,
                     p->key_version);
    }
}

/* Every client secret kvreconcile made has its stored copy. */
static void check_no_unstored_credential(const char *dir, size_t run, const kvr_live *l)
{
    for (size_t i = 0; i < l->napps; i++)
        for (size_t c = 0; c < l->apps[i].ncreds; c++) {
            const kvr_live_credential *cr = &l->apps[i].creds[c];
            bool stored = false;
            if (!cr->display_name || strncmp(cr->display_name, KVR_CRED_PREFIX, 4) != 0)
                continue;
            for (size_t s = 0; s < l->nsecrets && !stored; s++) {
                const char *id = kvr_tags_get(&l->secrets[s].tags, KVR_TAG_CREDENTIAL);
                stored = id && kvr_str_ieq(id, cr->key_id);
            }
            if (!stored)
                fail_msg("%s: run %zu: app '%s' has client secret '%s' (%s) with no stored copy",
                         dir, run, l->apps[i].display_name, cr->display_name, cr->key_id);
        }
}

/* ---- live-after.json ----------------------------------------------------------------------- */

static bool matches(const json_t *want, const json_t *got);

static bool array_matches(const json_t *want, const json_t *got)
{
    size_t i, j;
    json_t *w, *g;
    if (!json_is_array(got))
        return false;
    json_array_foreach(want, i, w)
    {
        bool negated = json_is_true(json_object_get(w, "$not")), found = false;
        json_t *plain;
        if (json_is_object(w) && json_object_size(w) == 1 && json_object_get(w, "$len")) {
            if ((json_int_t)json_array_size(got) != json_integer_value(json_object_get(w, "$len")))
                return false;
            continue;
        }
        plain = json_is_object(w) ? json_deep_copy(w) : json_incref(w);
        if (json_is_object(plain))
            json_object_del(plain, "$not");
        json_array_foreach(got, j, g)
        {
            if (matches(plain, g)) {
                found = true;
                break;
            }
        }
        json_decref(plain);
        if (found == negated)
            return false;
    }
    return true;
}

static bool matches(const json_t *want, const json_t *got)
{
    const char *k;
    json_t *w;
    if (json_is_object(want) && json_object_size(want) == 1 && json_object_get(want, "$len"))
        return json_is_array(got) && (json_int_t)json_array_size(got) ==
                                         json_integer_value(json_object_get(want, "$len"));
    if (json_is_array(want))
        return array_matches(want, got);
    if (json_is_object(want)) {
        if (!json_is_object(got))
            return false;
        json_object_foreach((json_t *)want, k, w)
        {
            if (!matches(w, json_object_get(got, k)))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)want, (json_t *)got);
}

static const char *digest_of(const kvr_live *l, const char *vault_slash_name)
{
    char vault[256];
    const char *slash = strchr(vault_slash_name, '/');
    const kvr_live_secret *s;
    assert_non_null(slash);
    snprintf(vault, sizeof(vault), "%.*s", (int)(slash - vault_slash_name), vault_slash_name);
    s = kvr_live_secret_get(l, vault, slash + 1);
    return s ? s->digest : NULL;
}

static void check_live_after(const char *dir, const kvr_live *l)
{
    char *want_text = slurp("live-after.json"), *got_text = NULL;
    json_t *want, *got, *same;
    json_error_t jerr;
    kvr_error err;
    size_t i;
    json_t *pair;
    if (!want_text)
        return;
    want = json_loads(want_text, 0, &jerr);
    if (!want)
        fail_msg("%s: live-after.json: %s", dir, jerr.text);
    assert_int_equal(kvr_live_to_json(&got_text, l, &err), 0);
    got = json_loads(got_text, 0, &jerr);
    assert_non_null(got);
    same = json_object_get(want, "sameDigest");
    json_array_foreach(same, i, pair)
    {
        const char *a = digest_of(l, json_string_value(json_array_get(pair, 0)));
        const char *b = digest_of(l, json_string_value(json_array_get(pair, 1)));
        if (!a || !b || strcmp(a, b) != 0)
            fail_msg("%s: live-after.json: secrets '%s' and '%s' should hold the same value", dir,
                     json_string_value(json_array_get(pair, 0)),
                     json_string_value(json_array_get(pair, 1)));
    }
    json_object_del(want, "sameDigest");
    if (!matches(want, got))
        fail_msg("%s: the live state after the runs does not match live-after.json:\n%s", dir,
                 got_text);
    json_decref(want);
    json_decref(got);
    free(want_text);
    free(got_text);
}

/* ---- one case ------------------------------------------------------------------------------ */

/* Plans against the fake as `plan --out` would, and saves the plan to `path`. */
static void save_plan(const char *dir, kvr_provider *p, const kvr_marker_key *mk,
                      const kvr_estate *e, const char *desired_path, const char *path)
{
    kvr_scope *scope = NULL;
    kvr_live *l = NULL;
    kvr_value_digest *dig = NULL;
    size_t ndig = 0;
    kvr_plan_input in;
    kvr_plan *plan = NULL;
    char *canon = NULL;
    kvr_error err;

    if (kvr_plan_read_scope(&scope, e, e->subscription, &err) < 0 ||
        p->read(p, &l, scope, &err) < 0 ||
        kvr_apply_markers_strict(&dig, &ndig, e, mk, NULL, &err) < 0)
        fail_msg("%s: plan for the saved plan: %s", dir, err.message);
    memset(&in, 0, sizeof(in));
    in.desired = e;
    in.live = l;
    in.subscription = e->subscription;
    in.digests = dig;
    in.ndigests = ndig;
    if (kvr_plan_build(&plan, &in, &err) < 0 || kvr_live_canon(&canon, l, dig, ndig, &err) < 0 ||
        kvr_saved_plan_write(path, plan, e, &desired_path, 1, canon, &err) < 0)
        fail_msg("%s: saving the plan: %s", dir, err.message);
    free(canon);
    kvr_plan_free(plan);
    kvr_apply_markers_free(dig, ndig);
    kvr_live_free(l);
    kvr_scope_free(scope);
}

static bool result_matches(const char *want, const char *got)
{
    const char *kinds[] = {"blocked: ", "error: "};
    if (strcmp(want, got) == 0)
        return true;
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(want, kinds[i], n) == 0 && strncmp(got, kinds[i], n) == 0)
            return strstr(got + n, want + n) != NULL;
    }
    return false;
}

static void run_case(void **state)
{
    const char *dir = *state;
    char desired_path[PATH_MAX], cwd[PATH_MAX], *live_text, *opt_text, *script, *want;
    const char *paths[1];
    kvr_estate *e = NULL;
    kvr_live *l = NULL;
    kvr_provider *p = NULL;
    kvr_marker_key mk;
    kvr_diags d;
    kvr_error err;
    json_t *opts = NULL, *runs, *env, *v;
    json_error_t jerr;
    text ops = {0}, results = {0};
    size_t nruns, logged = 0;
    bool replanned = false;
    kvr_live *last = NULL;
    const char *key;

    /* fixed, so that fixtures may hold markers of values: the first 12 hex digits of
       HMAC-SHA256 with 32 bytes 0x5a as the key */
    memset(&mk, 0x5a, sizeof(mk));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    kvr_diags_init(&d);
    {
        char *named = slurp("desired.path");
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
    live_text = slurp("live.json");
    assert_non_null(live_text);
    if (kvr_live_from_json(&l, live_text, strlen(live_text), &err) < 0)
        fail_msg("%s: live.json: %s", dir, err.message);
    free(live_text);
    assert_int_equal(kvr_fake_provider_new(&p, l, &mk, &err), 0);
    if ((script = slurp("script.json"))) {
        if (kvr_fake_script(p, script, &err) < 0)
            fail_msg("%s: script.json: %s", dir, err.message);
        free(script);
    }
    if ((opt_text = slurp("options.json"))) {
        opts = json_loads(opt_text, 0, &jerr);
        if (!opts)
            fail_msg("%s: options.json: %s", dir, jerr.text);
        free(opt_text);
    }
    env = json_object_get(opts, "env");
    json_object_foreach(env, key, v)
    {
        setenv(key, json_string_value(v), 1);
    }
    runs = json_object_get(opts, "runs");
    nruns = json_is_array(runs) && json_array_size(runs) ? json_array_size(runs) : 1;

    for (size_t r = 0; r < nruns; r++) {
        json_t *ro = json_array_get(runs, r);
        kvr_apply_options o;
        kvr_apply_result res = KVR_APPLY_CONVERGED;
        kvr_saved_plan *sp = NULL;
        char reason[1024] = "", planfile[] = "/tmp/kvr-test-apply-XXXXXX";
        const char *const *lines;
        size_t nlines;
        kvr_live *now = NULL;
        FILE *progress;
        char *said = NULL;
        size_t said_len = 0;
        double t0;
        int64_t requeue = -1;
        int rc;

        json_object_foreach(json_object_get(ro, "env"), key, v)
        {
            setenv(key, json_string_value(v), 1); /* from this run on */
        }
        memset(&o, 0, sizeof(o));
        o.wait_seconds = json_integer_value(json_object_get(ro, "wait"));
        o.poll_seconds = json_is_integer(json_object_get(ro, "poll"))
                             ? (int)json_integer_value(json_object_get(ro, "poll"))
                             : 1;
        o.probe_seconds = json_is_integer(json_object_get(ro, "probeSeconds"))
                              ? (int)json_integer_value(json_object_get(ro, "probeSeconds"))
                              : 1;
        o.retry_pause = 0.001;
        /* progress as JSON lines, to look at what the run said about itself */
        progress = open_memstream(&said, &said_len);
        assert_non_null(progress);
        o.json_log = true;
        o.log = progress;
        o.reason = reason;
        o.reason_size = sizeof(reason);
        if (json_object_get(ro, "requeueAfter"))
            o.requeue_after = &requeue; /* as watch asks */
        if (json_is_array(json_object_get(ro, "script"))) {
            /* this run's events: "read" counts from the run's first read */
            json_t *sc = json_deep_copy(json_object_get(ro, "script")), *ev;
            kvr_fake_counts c;
            char *t;
            size_t i;
            kvr_fake_counts_get(p, &c);
            json_array_foreach(sc, i, ev)
            {
                json_t *rd = json_object_get(ev, "read");
                if (json_is_integer(rd))
                    json_object_set_new(ev, "read",
                                        json_integer(json_integer_value(rd) + (json_int_t)c.reads));
            }
            t = json_dumps(sc, JSON_COMPACT);
            if (kvr_fake_script(p, t, &err) < 0)
                fail_msg("%s: run %zu: script: %s", dir, r + 1, err.message);
            free(t);
            json_decref(sc);
        }
        if (json_is_true(json_object_get(ro, "savedPlan"))) {
            int fd = mkstemp(planfile);
            assert_true(fd >= 0);
            close(fd);
            save_plan(dir, p, &mk, e, desired_path, planfile);
            if (kvr_saved_plan_load(&sp, planfile, &err) < 0)
                fail_msg("%s: the saved plan does not load: %s", dir, err.message);
            o.saved = sp;
        }
        memset(&err, 0, sizeof(err));
        t0 = kvr_mono_s();
        rc = kvr_apply(&res, p, &mk, e, e->subscription, &o, &err);
        if (json_is_number(json_object_get(ro, "maxSeconds")) &&
            kvr_mono_s() - t0 > json_number_value(json_object_get(ro, "maxSeconds")))
            fail_msg("%s: run %zu took %.1fs, more than its maxSeconds", dir, r + 1,
                     kvr_mono_s() - t0);
        if (sp) {
            kvr_saved_plan_free(sp);
            unlink(planfile);
        }
        fclose(progress);
        if (getenv("KVR_TEST_VERBOSE"))
            fputs(said, stderr);
        /* a step count changes during a run only when the live state changed under it */
        if (strstr(said, "\"event\":\"replanned\""))
            replanned = true;
        free(said);
        said = NULL;
        if (json_object_get(ro, "requeueAfter") &&
            requeue != json_integer_value(json_object_get(ro, "requeueAfter")))
            fail_msg("%s: run %zu: requeue after %lld s, expected %lld s", dir, r + 1,
                     (long long)requeue,
                     (long long)json_integer_value(json_object_get(ro, "requeueAfter")));
        if (rc < 0)
            add(&results, "error: %s\n", err.message);
        else if (res == KVR_APPLY_BLOCKED)
            add(&results, "blocked: %s\n", reason);
        else
            add(&results, "converged\n");
        if (nruns > 1)
            add(&ops, "# run %zu\n", r + 1);
        nlines = kvr_fake_log(p, &lines);
        for (; logged < nlines; logged++)
            add(&ops, "%s\n", lines[logged]);
        assert_int_equal(kvr_fake_live(p, &now, &err), 0);
        check_no_data_lost(dir, r + 1, now);
        if (rc >= 0)
            check_no_unstored_credential(dir, r + 1, now);
        kvr_live_free(last);
        last = now; /* checked against live-after.json once the expectations are written */
    }

    {
        /* "knownIssues": ["replanned"]: what the case shows going wrong, reported and not yet
           fixed; it must still happen (else the entry goes), and fails nothing meanwhile */
        bool known = false;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(opts, "knownIssues"), i, x)
        {
            known |= json_is_string(x) && strcmp(json_string_value(x), "replanned") == 0;
        }
        if (json_is_true(json_object_get(opts, "otherWriter")))
            replanned = known; /* the live state does change under the run */
        if (replanned && !known)
            fail_msg("%s: the step count changed during a run although only the run changed the "
                     "live state (\"the live state changed under this run\")",
                     dir);
        if (known && !replanned)
            fail_msg("%s: known issue 'replanned' no longer happens: remove it from options.json",
                     dir);
    }
    if (getenv("KVR_FIXTURES_UPDATE")) {
        /* a result line that still holds is kept as it was shortened; the others are written
           whole, to be read and shortened */
        char *old = slurp("result.txt"), *os = NULL, *gs = NULL, *copy = strdup(results.s);
        char *o = old ? strtok_r(old, "\n", &os) : NULL, *g = strtok_r(copy, "\n", &gs);
        text lines = {0};
        for (; g; g = strtok_r(NULL, "\n", &gs), o = o ? strtok_r(NULL, "\n", &os) : NULL)
            add(&lines, "%s\n", o && result_matches(o, g) ? o : g);
        spit("ops.txt", ops.s ? ops.s : "");
        spit("result.txt", lines.s);
        free(lines.s);
        free(copy);
        free(old);
    }
    check_live_after(dir, last);
    kvr_live_free(last);
    want = slurp("ops.txt");
    if (!want)
        fail_msg("%s: no ops.txt (run with KVR_FIXTURES_UPDATE=1 and review it)", dir);
    if (strcmp(want, ops.s ? ops.s : "") != 0)
        fail_msg("%s: the operations differ.\n--- expected\n%s--- carried out\n%s", dir, want,
                 ops.s ? ops.s : "");
    free(want);
    want = slurp("result.txt");
    if (!want)
        fail_msg("%s: no result.txt (run with KVR_FIXTURES_UPDATE=1 and review it)", dir);
    {
        char *ws = NULL, *gs = NULL;
        char *w = strtok_r(want, "\n", &ws), *g = strtok_r(results.s, "\n", &gs);
        size_t n = 1;
        for (; w || g; w = strtok_r(NULL, "\n", &ws), g = strtok_r(NULL, "\n", &gs), n++)
            if (!w || !g || !result_matches(w, g))
                fail_msg("%s: run %zu: expected '%s', got '%s'", dir, n, w ? w : "(no run)",
                         g ? g : "(no run)");
    }
    free(want);
    assert_int_equal(chdir(cwd), 0);
    json_object_foreach(env, key, v)
    {
        unsetenv(key);
    }
    for (size_t r = 0; r < nruns; r++)
        json_object_foreach(json_object_get(json_array_get(runs, r), "env"), key, v)
        {
            unsetenv(key);
        }
    json_decref(opts);
    free(ops.s);
    free(results.s);
    kvr_provider_free(p);
    kvr_estate_free(e);
    kvr_diags_release(&d);
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
    snprintf(base, sizeof(base), "%s/apply", root);
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
    tests = calloc(n + 1, sizeof(*tests));
    for (size_t i = 0; i < n; i++) {
        tests[i].name = strrchr(names[i], '/') + 1;
        tests[i].test_func = run_case;
        tests[i].initial_state = names[i];
    }
    rc = _cmocka_run_group_tests("test_apply", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc || n == 0;
}
