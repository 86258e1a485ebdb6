/*
 * `kvreconcile validate -f PATH...`: loads the desired state and reports every problem as
 * FILE:LINE:COL. Touches nothing in Azure; meant for pre-commit hooks and CI.
 */
#include "cli.h"

#include "kvr/model.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void validate_usage(FILE *out)
{
    fprintf(out, "usage: kvreconcile validate -f PATH... [-q] [--allow-files-under DIR]\n\n"
                 "Checks desired-state YAML (files, or directories walked for *.yaml and *.yml)\n"
                 "against schema v1 and its cross-references. Nothing in Azure is read or "
                 "changed.\n\n"
                 "options:\n"
                 "  -f, --file PATH   a file or directory; repeat, or list several after -f\n"
                 "  -q, --quiet       print nothing on success\n"
                 CLI_USAGE_ALLOW_FILES_UNDER
                 "  -h, --help        show this help\n\n"
                 "exit status: 0 valid, 1 invalid (errors on stderr as FILE:LINE:COL: error: ...)\n");
}

static const char *plural(size_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

int kvr_cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_LONGOPT_ALLOW_FILES_UNDER,
                                         {NULL, 0, NULL, 0}};
    const char **paths = NULL;
    size_t npaths = 0;
    bool quiet = false;
    kvr_estate *e = NULL;
    kvr_diags diags;
    int opt, rc, status = KVR_EXIT_ERROR;

    kvr_diags_init(&diags);
    paths = calloc((size_t)argc + 1, sizeof(*paths));
    if (!paths) {
        cli_error("out of memory");
        return KVR_EXIT_ERROR;
    }
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "f:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            paths[npaths++] = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case CLI_OPT_ALLOW_FILES_UNDER:
            if (cli_allow_files_under(optarg) < 0)
                goto done;
            break;
        case 'h':
            validate_usage(stdout);
            status = KVR_EXIT_OK;
            goto done;
        default:
            if (optopt == 'f')
                cli_error("option '-f' needs a path");
            else
                cli_error("unknown option '%s' for 'validate'", argv[optind - 1]);
            validate_usage(stderr);
            goto done;
        }
    }
    /* Paths after the options belong to the last -f ("-f a b c"). */
    if (optind < argc && npaths == 0) {
        cli_error("give paths with -f (e.g. 'kvreconcile validate -f %s')", argv[optind]);
        goto done;
    }
    for (int i = optind; i < argc; i++)
        paths[npaths++] = argv[i];
    if (npaths == 0) {
        cli_error("no input; give files or directories with -f");
        validate_usage(stderr);
        goto done;
    }

    rc = kvr_model_load_with(&e, paths, npaths, cli_model_options(), &diags);
    if (rc < 0) {
        kvr_diags_print(&diags, stderr);
        fprintf(stderr, "%zu %s; the desired state is not valid\n",
                diags.len + diags.dropped, plural(diags.len + diags.dropped, "error", "errors"));
        goto done;
    }
    if (!quiet) {
        printf("valid: %zu %s, %zu %s, %zu %s, %zu %s, %zu %s, %zu %s, %zu %s",
               e->files.len, plural(e->files.len, "file", "files"), e->nvaults,
               plural(e->nvaults, "vault", "vaults"), e->napps, plural(e->napps, "app", "apps"),
               e->nroles, plural(e->nroles, "role assignment", "role assignments"), e->nkeys,
               plural(e->nkeys, "key", "keys"), e->nsecrets,
               plural(e->nsecrets, "secret", "secrets"), e->nprofiles,
               plural(e->nprofiles, "profile", "profiles"));
        if (e->active)
            printf(" (active: '%s')", e->active);
        putchar('\n');
    }
    status = KVR_EXIT_OK;
done:
    kvr_estate_free(e);
    kvr_diags_release(&diags);
    free(paths);
    return status;
}
