/*
 * `kvreconcile plan -f PATH...`: the dry run a pull request shows. Loads the desired state,
 * reads the live estate (only what the desired state names), computes the plan and prints it as
 * text, JSON or Markdown. Changes nothing.
 */
#include "cli.h"

#include "kvr/apply.h"
#include "kvr/azure.h"
#include "kvr/model.h"
#include "kvr/plan.h"
#include "kvr/providers.h"
#include "kvr/values.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void plan_usage(FILE *out)
{
    fprintf(out,
            "usage: kvreconcile plan -f PATH... [-o text|json|markdown] [--detailed-exitcode]\n"
            "                        [--out PLANFILE] [--save-live FILE | --live FILE]\n\n"
            "Reads the live estate and prints the ordered steps 'apply' would run, with every gate\n"
            "and why it is closed. Nothing is changed.\n\n"
            "options:\n"
            "  -f, --file PATH        desired state: a file or directory; repeat, or list several\n"
            "  -o, --output FORMAT    text (default), json (schema/plan.schema.json), markdown\n"
            "      --detailed-exitcode  exit 2 when the plan is not empty\n"
            "      --out PLANFILE     also save the plan, for 'kvreconcile apply PLANFILE' to run\n"
            "                         exactly it (refused if the estate changed meanwhile)\n"
            "      --save-live FILE   also write the live state that was read (no secret values)\n"
            "      --live FILE        plan against a saved live state, without any network access\n"
            "      --no-color         no colour (also when NO_COLOR is set or stdout is not a "
            "terminal)\n"
            CLI_USAGE_ALLOW_FILES_UNDER
            "  -h, --help             show this help\n\n"
            "credentials: AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET,\n"
            "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE; else managed identity.\n"
            "AZURE_SUBSCRIPTION_ID when the desired state names no subscription. Endpoints:\n"
            "the 'cloud:' block, or KVR_ARM_ENDPOINT, KVR_GRAPH_ENDPOINT, KVR_VAULT_SUFFIX,\n"
            "KVR_PROFILE_ENDPOINT; an extra CA: KVR_CA_FILE.\n\n"
            "exit status: 0 success (with --detailed-exitcode: nothing to do), 1 error,\n"
            "2 changes pending (with --detailed-exitcode)\n");
}

/*
 * --save-live: the live state as read, and the markers of the declared values it was compared
 * with. Both are keyed with this run's marker key, which dies with the run: the file tells which
 * values were equal, never what they are, and cannot be tested against guesses.
 */
static int write_live(const char *path, const kvr_live *live, const kvr_value_digest *d,
                      size_t nd)
{
    char *text = NULL;
    json_t *root = NULL, *values = json_array();
    kvr_error err;
    json_error_t jerr;
    int rc = -1;
    if (kvr_live_to_json(&text, live, &err) < 0 || !values ||
        !(root = json_loads(text, 0, &jerr))) {
        cli_error("cannot write the live state: out of memory");
        goto done;
    }
    for (size_t i = 0; i < nd; i++)
        json_array_append_new(values, json_pack("{s:s,s:s,s:s}", "vault", d[i].vault, "name",
                                                d[i].name, "digest", d[i].digest));
    json_object_set(root, "desiredValues", values);
    free(text);
    if (!(text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        cli_error("cannot write the live state: out of memory");
        goto done;
    }
    if (kvr_file_write_atomic(path, text, strlen(text), 0600, &err) < 0) {
        cli_error("cannot write the live state: %s", err.message);
        goto done;
    }
    rc = 0;
done:
    free(text);
    json_decref(root);
    json_decref(values);
    return rc;
}

/*
 * --live: a live state saved by --save-live (or written by hand, as the plan fixtures are).
 * Declared values from the environment or files are compared as they were when it was saved
 * (its desiredValues): their markers' key is gone, so nothing read now could be compared.
 */
static int offline_live(kvr_live **live, json_t **root, kvr_value_digest **d, size_t *nd,
                        const char *path)
{
    char *text = NULL;
    size_t len = 0;
    json_t *values, *v;
    json_error_t jerr;
    kvr_error err;
    size_t i;
    if (kvr_file_read(&text, &len, path, KVR_MODEL_MAX_TOTAL_BYTES, 0, &err) < 0 ||
        kvr_live_from_json(live, text, len, &err) < 0) {
        cli_error("%s: %s", path, err.message);
        free(text);
        return -1;
    }
    *root = json_loadb(text, len, 0, &jerr);
    free(text);
    values = json_object_get(*root, "desiredValues");
    if (!values) {
        fprintf(stderr, "kvreconcile: note: '%s' has no desiredValues: values from the "
                        "environment or files are not compared\n",
                path);
        return 0;
    }
    if (!json_is_array(values) || !(*d = calloc(json_array_size(values) + 1, sizeof(**d)))) {
        cli_error("%s: 'desiredValues' must be an array", path);
        return -1;
    }
    json_array_foreach(values, i, v)
    {
        kvr_value_digest *x = &(*d)[(*nd)++];
        x->vault = json_string_value(json_object_get(v, "vault"));
        x->name = json_string_value(json_object_get(v, "name"));
        x->digest = json_string_value(json_object_get(v, "digest"));
        if (!x->vault || !x->name || !x->digest) {
            cli_error("%s: desiredValues[%zu] needs vault, name and digest strings", path, i);
            return -1;
        }
    }
    return 0;
}

int kvr_cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"detailed-exitcode", no_argument, NULL, 'D'},
                                         {"no-color", no_argument, NULL, 'C'},
                                         {"out", required_argument, NULL, 'O'},
                                         {"save-live", required_argument, NULL, 'S'},
                                         {"live", required_argument, NULL, 'I'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_LONGOPT_ALLOW_FILES_UNDER,
                                         {NULL, 0, NULL, 0}};
    const char **paths = calloc((size_t)argc + 1, sizeof(*paths));
    const char *format = "text", *out_file = NULL, *save_live = NULL, *live_file = NULL;
    json_t *offline = NULL; /* the --live file, whose desiredValues the digests borrow */
    bool detailed = false, no_color = false;
    size_t npaths = 0, ndigests = 0;
    cli_session s = {0};
    kvr_live *live = NULL;
    kvr_scope *scope = NULL;
    kvr_plan *p = NULL;
    kvr_marker_key mk;
    kvr_value_digest *digests = NULL;
    kvr_plan_input in;
    kvr_error err;
    int opt, status = KVR_EXIT_ERROR;

    memset(&mk, 0, sizeof(mk));
    if (!paths) {
        cli_error("out of memory");
        return KVR_EXIT_ERROR;
    }
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            paths[npaths++] = optarg;
            break;
        case 'o':
            format = optarg;
            break;
        case 'D':
            detailed = true;
            break;
        case 'C':
            no_color = true;
            break;
        case 'O':
            out_file = optarg;
            break;
        case 'S':
            save_live = optarg;
            break;
        case 'I':
            live_file = optarg;
            break;
        case CLI_OPT_ALLOW_FILES_UNDER:
            if (cli_allow_files_under(optarg) < 0)
                goto done;
            break;
        case 'h':
            plan_usage(stdout);
            status = KVR_EXIT_OK;
            goto done;
        default:
            cli_error("unknown option '%s' for 'plan'", argv[optind - 1]);
            plan_usage(stderr);
            goto done;
        }
    }
    for (int i = optind; i < argc && npaths; i++)
        paths[npaths++] = argv[i];
    if (npaths == 0) {
        cli_error("no input; give files or directories with -f");
        goto done;
    }
    if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "markdown")) {
        cli_error("unknown output format '%s' (text, json or markdown)", format);
        goto done;
    }
    if (live_file && save_live) {
        cli_error("--live and --save-live exclude each other");
        goto done;
    }
    if (live_file) {
        /* offline: the desired state and a saved live state; no credential, no network */
        if (cli_session_load(&s, paths, npaths, "nothing was read or changed") < 0 ||
            offline_live(&live, &offline, &digests, &ndigests, live_file) < 0)
            goto done;
    } else {
        if (cli_session_open(&s, paths, npaths, "nothing was read or changed") < 0)
            goto done;
        if (kvr_marker_key_init(&mk, &err) < 0 ||
            kvr_plan_read_scope(&scope, s.e, s.subscription, &err) < 0 ||
            kvr_live_read_scope(&live, s.auth, &s.ep, scope, &mk, NULL, &err) < 0) {
            cli_error("%s", err.message);
            goto done;
        }
        /* the read is over: its scope (a copy of every declared object's name) goes before the
           plan's tables are built (13.7 MB of the 2,000-vault bench estate's plan) */
        kvr_scope_free(scope);
        scope = NULL;
        if (kvr_apply_markers(&digests, &ndigests, s.e, &mk, stderr) < 0) {
            cli_error("out of memory");
            goto done;
        }
        if (save_live && write_live(save_live, live, digests, ndigests) < 0)
            goto done;
    }
    memset(&in, 0, sizeof(in));
    in.desired = s.e;
    in.live = live;
    in.subscription = s.subscription;
    in.digests = digests;
    in.ndigests = ndigests;
    if (kvr_plan_build(&p, &in, &err) < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    if (out_file) {
        char *canon = NULL;
        if (kvr_live_canon(&canon, live, digests, ndigests, &err) < 0 ||
            kvr_saved_plan_write(out_file, p, s.e, paths, npaths, canon, &err) < 0) {
            free(canon);
            cli_error("cannot save the plan: %s", err.message);
            goto done;
        }
        free(canon);
    }
    if (strcmp(format, "json") == 0) {
        char *json = NULL;
        if (kvr_plan_render_json(&json, p, &err) < 0) {
            cli_error("%s", err.message);
            goto done;
        }
        puts(json);
        free(json);
    } else if (strcmp(format, "markdown") == 0) {
        kvr_plan_render_markdown(p, stdout);
    } else {
        kvr_plan_render_text(p, stdout,
                             !no_color && !getenv("NO_COLOR") && isatty(STDOUT_FILENO));
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write the plan");
        goto done;
    }
    status = detailed && (p->nsteps || p->nholds) ? KVR_EXIT_CHANGES : KVR_EXIT_OK;
done:
    if (offline)
        free(digests); /* their strings are the --live file's */
    else
        kvr_apply_markers_free(digests, ndigests);
    json_decref(offline);
    kvr_marker_key_wipe(&mk);
    kvr_plan_free(p);
    kvr_live_free(live);
    kvr_scope_free(scope);
    cli_session_close(&s);
    free(paths);
    return status;
}
