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
            "usage: kvreconcile plan -f PATH... [-o text|json|markdown] [--detailed-exitcode]\n\n"
            "Reads the live estate and prints the ordered steps 'apply' would run, with every gate\n"
            "and why it is closed. Nothing is changed.\n\n"
            "options:\n"
            "  -f, --file PATH        desired state: a file or directory; repeat, or list several\n"
            "  -o, --output FORMAT    text (default), json (schema/plan.schema.json), markdown\n"
            "      --detailed-exitcode  exit 2 when the plan is not empty\n"
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

int kvr_cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"detailed-exitcode", no_argument, NULL, 'D'},
                                         {"no-color", no_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_LONGOPT_ALLOW_FILES_UNDER,
                                         {NULL, 0, NULL, 0}};
    const char **paths = calloc((size_t)argc + 1, sizeof(*paths));
    const char *format = "text";
    bool detailed = false, no_color = false;
    size_t npaths = 0, ndigests = 0;
    cli_session s = {0};
    kvr_live *live = NULL;
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
    if (cli_session_open(&s, paths, npaths, "nothing was read or changed") < 0)
        goto done;
    if (kvr_marker_key_init(&mk, &err) < 0 ||
        kvr_live_read(&live, s.auth, &s.ep, s.e, s.subscription, &mk, &err) < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    if (kvr_apply_markers(&digests, &ndigests, s.e, &mk, stderr) < 0) {
        cli_error("out of memory");
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
    kvr_apply_markers_free(digests, ndigests);
    kvr_marker_key_wipe(&mk);
    kvr_plan_free(p);
    kvr_live_free(live);
    cli_session_close(&s);
    free(paths);
    return status;
}
