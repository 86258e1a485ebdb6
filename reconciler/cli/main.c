/*
 * kvreconcile's entry point: a table of subcommands in the git manner, each a function
 * kvr_cmd_<name>(argc, argv) that gets its own argv (argv[0] is the subcommand name).
 */
#include "cli.h"

#include "kvr/util.h"
#include "kvr/version.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct cmd COMMANDS[] = {
    {"validate", kvr_cmd_validate, "check desired-state YAML against schema v1 and its references"},
#ifdef KVR_HAVE_PLAN
    {"plan", kvr_cmd_plan, "show what apply would do: ordered steps and the gates that hold them"},
    {"apply", kvr_cmd_apply, "make the live estate match: run the steps, wait at the gates"},
    {"watch", kvr_cmd_watch, "apply on every change of a directory and every few minutes"},
    {"export", kvr_cmd_export, "write the desired-state repository of an existing estate"},
#endif
    {"version", kvr_cmd_version, "print the version"},
    {"help", kvr_cmd_help, "show help for kvreconcile or one command"},
};

#define NCOMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("kvreconcile: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define ALLOW_MAX 32
static const char *allow_dirs[ALLOW_MAX];
static kvr_model_options model_options = {allow_dirs, 0};

int cli_allow_files_under(const char *dir)
{
    if (!*dir) {
        cli_error("--allow-files-under needs a directory");
        return -1;
    }
    if (model_options.nallow_dirs == ALLOW_MAX) {
        cli_error("--allow-files-under is given more than %d times", ALLOW_MAX);
        return -1;
    }
    allow_dirs[model_options.nallow_dirs++] = dir;
    return 0;
}

const kvr_model_options *cli_model_options(void)
{
    return &model_options;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kvreconcile <command> [options]\n\n"
                 "Keeps an Azure Key Vault estate the way a Git repository describes it.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n'kvreconcile help <command>' or 'kvreconcile <command> --help' shows a "
                 "command's options.\n"
                 "exit status: 0 success, 1 error, 2 changes pending (plan --detailed-exitcode),\n"
                 "3 blocked (apply did all it could; a gate is still closed)\n");
}

static const struct cmd *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

int kvr_cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        cli_error("'version' takes no arguments");
        return KVR_EXIT_ERROR;
    }
    printf("kvreconcile %s\n", kvr_version());
    return KVR_EXIT_OK;
}

int kvr_cmd_help(int argc, char **argv)
{
    const struct cmd *c;
    char *help_argv[] = {NULL, (char *)"--help", NULL};
    if (argc < 2) {
        usage(stdout);
        return KVR_EXIT_OK;
    }
    c = find(argv[1]);
    if (!c || c->fn == kvr_cmd_help || c->fn == kvr_cmd_version) {
        if (c) {
            printf("usage: kvreconcile %s\n\n%s\n", c->name, c->summary);
            return KVR_EXIT_OK;
        }
        cli_error("unknown command '%s'", argv[1]);
        return KVR_EXIT_ERROR;
    }
    help_argv[0] = argv[1];
    return c->fn(2, help_argv);
}

/*
 * A core file of a running plan holds AZURE_CLIENT_SECRET, bearer tokens and secret values:
 * none is written, and no other process of the same user may attach to read the memory
 * (PR_SET_DUMPABLE 0 also closes ptrace and /proc/PID/mem to it). KVR_ALLOW_CORE_DUMPS=1 lets a
 * developer debug a crash; it is documented in kvreconcile(1), ENVIRONMENT.
 */
static int no_core_dumps(void)
{
    const char *allow = getenv("KVR_ALLOW_CORE_DUMPS");
    struct rlimit none = {0, 0};
    if (allow && strcmp(allow, "1") == 0)
        return 0;
    if (setrlimit(RLIMIT_CORE, &none) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        cli_error("cannot turn off core dumps; set KVR_ALLOW_CORE_DUMPS=1 to run anyway");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const struct cmd *c;
    const char *names[NCOMMANDS + 1];

    if (no_core_dumps() < 0)
        return KVR_EXIT_ERROR;
#ifdef __GLIBC__
    /* Blocks of 256 KiB and more (list pages, a resource group's role assignments, the models'
       arrays) are mapped and given back when freed. glibc's default raises that threshold to
       the largest block freed so far (up to 32 MiB), after which such blocks come from the heap
       and leave holes there: the 2,000-vault bench estate's plan peaked 6-15 MB higher. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
    if (argc < 2) {
        usage(stderr);
        return KVR_EXIT_ERROR;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return KVR_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version"))
        return kvr_cmd_version(1, argv + 1);
    c = find(argv[1]);
    if (!c) {
        const char *hint;
        for (size_t i = 0; i < NCOMMANDS; i++)
            names[i] = COMMANDS[i].name;
        names[NCOMMANDS] = NULL;
        hint = kvr_str_suggest(argv[1], names);
        if (hint)
            cli_error("unknown command '%s' (did you mean '%s'?)", argv[1], hint);
        else
            cli_error("unknown command '%s'; see 'kvreconcile --help'", argv[1]);
        return KVR_EXIT_ERROR;
    }
    return c->fn(argc - 1, argv + 1);
}
