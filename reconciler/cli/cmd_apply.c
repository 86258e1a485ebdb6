/*
 * `kvreconcile apply -f PATH... [--wait DURATION] [--lock-timeout DURATION]`: makes the live
 * estate match the desired state, step by step, in the plan's order, never forcing a gate, with
 * the estate's lock held (lock.c). Exit 0 when converged, 3 when only closed gates remain ("come
 * back later"), 1 on error.
 */
#include "cli.h"

#include "kvr/apply.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void apply_usage(FILE *out)
{
    fprintf(out,
            "usage: kvreconcile apply -f PATH... [--wait DURATION] [--lock-timeout DURATION]\n"
            "                         [-q] [--log-format text|json]\n"
            "       kvreconcile apply PLANFILE [options]\n\n"
            "Runs the steps 'plan' shows, in order, reading the live estate again after each.\n"
            "With PLANFILE (made by 'plan --out'), runs exactly that plan: it stops before any\n"
            "change when the desired files or the live estate differ from what it was made from,\n"
            "and runs no step that it does not show with its values (\"the plan is stale\").\n"
            "A step held by a closed gate (profile Used, retention, role assignment effective,\n"
            "copy verified) is never forced: without --wait, apply stops when only those remain.\n\n"
            "options:\n"
            "  -f, --file PATH         desired state: a file or directory; repeat, or list several\n"
            "      --wait DURATION     keep going as gates open, up to DURATION (e.g. 10m, 2h)\n"
            "      --lock-timeout DURATION\n"
            "                          wait up to DURATION for the estate's lock or lease, held by\n"
            "                          another run (default 0: fail at once)\n"
            "  -q, --quiet             no progress lines\n"
            "      --log-format FORMAT progress as text (default) or json lines, on stderr\n"
            CLI_USAGE_ALLOW_FILES_UNDER
            "  -h, --help              show this help\n\n"
            "credentials and endpoints: as for 'kvreconcile plan' (see its --help)\n\n"
            "One run at a time changes an estate: apply and watch take a lock, a file in\n"
            "$KVR_LOCK_DIR (default /run/lock) on this machine, or, with a 'lock:' block in the\n"
            "desired state or KVR_LOCK_STORAGE_ACCOUNT and KVR_LOCK_CONTAINER, a lease on a blob\n"
            "in Azure Storage that runs on every machine share (see the README).\n\n"
            "exit status: 0 converged, 1 error (also when a change the desired state asks for is\n"
            "held back because it can never be done safely), 3 blocked: done what could be done,\n"
            "a gate is still closed\n");
}

int kvr_cmd_apply(int argc, char **argv)
{
    static const struct option opts[] = {{"file", required_argument, NULL, 'f'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"lock-timeout", required_argument, NULL, 'T'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"log-format", required_argument, NULL, 'L'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_LONGOPT_ALLOW_FILES_UNDER,
                                         {NULL, 0, NULL, 0}};
    const char **paths = calloc((size_t)argc + 1, sizeof(*paths));
    size_t npaths = 0;
    kvr_apply_options ao;
    kvr_apply_result result;
    cli_session s = {0};
    cli_lock lock = CLI_LOCK_INIT;
    kvr_saved_plan *saved = NULL;
    const char *const *load = NULL; /* the desired state's paths: -f, or the saved plan's */
    int64_t lock_timeout = 0;
    kvr_error err;
    int opt, rc, status = KVR_EXIT_ERROR;

    memset(&ao, 0, sizeof(ao));
    ao.log = stderr;
    ao.poll_seconds = 5;
    ao.probe_seconds = 120;
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
        case 'w': {
            kvr_error derr;
            if (kvr_duration_parse(&ao.wait_seconds, optarg, &derr) < 0) {
                cli_error("--wait: %s", derr.message);
                goto done;
            }
            break;
        }
        case 'T': {
            kvr_error derr;
            if (kvr_duration_parse(&lock_timeout, optarg, &derr) < 0) {
                cli_error("--lock-timeout: %s", derr.message);
                goto done;
            }
            break;
        }
        case 'q':
            ao.quiet = true;
            break;
        case 'L':
            if (cli_log_format(&ao.json_log, optarg) < 0)
                goto done;
            break;
        case CLI_OPT_ALLOW_FILES_UNDER:
            if (cli_allow_files_under(optarg) < 0)
                goto done;
            break;
        case 'h':
            apply_usage(stdout);
            status = KVR_EXIT_OK;
            goto done;
        default:
            cli_error("unknown option '%s' for 'apply'", argv[optind - 1]);
            apply_usage(stderr);
            goto done;
        }
    }
    for (int i = optind; i < argc && npaths; i++)
        paths[npaths++] = argv[i];
    load = paths;
    if (npaths == 0 && optind + 1 == argc) {
        /* apply PLANFILE: exactly the reviewed plan, from the files it was made from */
        if (kvr_saved_plan_load(&saved, argv[optind], &err) < 0) {
            cli_error("%s", err.message);
            goto done;
        }
        load = kvr_saved_plan_paths(saved, &npaths);
        ao.saved = saved;
    } else if (npaths == 0) {
        cli_error(optind < argc ? "give either one saved plan or files and directories with -f"
                                : "no input; give files or directories with -f, or a saved plan");
        goto done;
    }
    if (cli_session_open(&s, load, npaths, "nothing was changed") < 0)
        goto done;
    if (saved && kvr_saved_plan_check_desired(saved, s.e, &err) < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    if (cli_lock_take(&lock, &s, "apply", lock_timeout, ao.quiet, ao.json_log, NULL, NULL) < 0)
        goto done;
    ao.stop = &lock.lost; /* a lost lease stops the run before its next step */
    rc = cli_apply_run(&result, &s, &ao, &err);
    if (lock.lost) {
        cli_error("the estate's lease was lost (%s); stopped before the next operation. "
                  "Run again: the next run continues from the live state",
                  cli_lock_lost_why(&lock));
        goto done;
    }
    if (rc < 0) {
        cli_error("%s", err.message);
        goto done;
    }
    status = result == KVR_APPLY_BLOCKED ? KVR_EXIT_BLOCKED : KVR_EXIT_OK;
done:
    cli_lock_release(&lock);
    cli_session_close(&s);
    kvr_saved_plan_free(saved);
    free(paths);
    return status;
}
