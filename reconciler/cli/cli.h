/* The kvreconcile command line: one function per subcommand, listed in main.c's table. */
#ifndef KVR_CLI_H
#define KVR_CLI_H

/* Exit codes (STYLE.md): Terraform's convention plus "blocked". */
enum {
    KVR_EXIT_OK = 0,
    KVR_EXIT_ERROR = 1,
    KVR_EXIT_CHANGES = 2,
    KVR_EXIT_BLOCKED = 3,
};

int kvr_cmd_validate(int argc, char **argv);
int kvr_cmd_plan(int argc, char **argv);
int kvr_cmd_apply(int argc, char **argv);
int kvr_cmd_watch(int argc, char **argv);
int kvr_cmd_export(int argc, char **argv);
int kvr_cmd_version(int argc, char **argv);
int kvr_cmd_help(int argc, char **argv);

#include "kvr/apply.h"
#include "kvr/providers.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* What plan and apply share: the desired state, and a connection to the clouds it names. */
typedef struct cli_session {
    kvr_estate *e;
    kvr_endpoints ep;
    kvr_http *http;
    kvr_auth *auth;
    const char *subscription; /* the estate's, else AZURE_SUBSCRIPTION_ID; borrowed */
} cli_session;

/*
 * Loads the desired state (printing its diagnostics, ending with "...; `unchanged`") and sets up
 * endpoints, the HTTP engine and the credential. 0, or -1 after printing why.
 */
int cli_session_open(cli_session *s, const char *const *paths, size_t npaths,
                     const char *unchanged);
/* The desired state alone, with no connection (offline plans): as cli_session_open otherwise. */
int cli_session_load(cli_session *s, const char *const *paths, size_t npaths,
                     const char *unchanged);
void cli_session_close(cli_session *s);

/* Runs the executor (kvr_apply) over the session through the Azure provider (apply_run.c). */
int cli_apply_run(kvr_apply_result *out, const cli_session *s, const kvr_apply_options *ao,
                  kvr_error *err);

/* --log-format for apply and watch: "text" or "json". 0, or -1 after printing why. */
int cli_log_format(bool *json, const char *arg);

/*
 * A progress line on stderr, for apply and watch: "kvreconcile: TEXT", or with `json` one JSON
 * object {"event": EVENT, "time": …, FIELDS…} as apply's own lines are. Nothing when `quiet`.
 * `fields` (may be NULL) is taken.
 */
void cli_progress(bool json, bool quiet, const char *event, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * The estate lock (lock.c): one run that changes the estate at a time on this machine. Taken
 * after the session is open (it names the estate by ARM endpoint and subscription); waits up to
 * `timeout_s` seconds (0: not at all) or until *stop. 0, or -1 after printing why.
 */
typedef struct cli_lock {
    int fd;
    char *path;
} cli_lock;

int cli_lock_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
                  bool quiet, bool json, volatile int *stop);
void cli_lock_release(cli_lock *l);

/*
 * --allow-files-under DIR, repeatable, for validate, plan, apply and watch: a directory outside
 * the repository where a secret's 'fromFile' may point (a mounted secrets volume). A command
 * puts CLI_LONGOPT_ALLOW_FILES_UNDER in its option table and passes optarg of
 * CLI_OPT_ALLOW_FILES_UNDER to cli_allow_files_under (0, or -1 after printing why); the loader
 * gets them through cli_model_options (main.c).
 */
#define CLI_OPT_ALLOW_FILES_UNDER 0x100
#define CLI_LONGOPT_ALLOW_FILES_UNDER                                                              \
    {                                                                                              \
        "allow-files-under", required_argument, NULL, CLI_OPT_ALLOW_FILES_UNDER                    \
    }
#define CLI_USAGE_ALLOW_FILES_UNDER                                                                \
    "      --allow-files-under DIR  secrets' fromFile may also name files under DIR "              \
    "(repeatable)\n"
int cli_allow_files_under(const char *dir);
const kvr_model_options *cli_model_options(void);

/* Prints "kvreconcile: error: MSG" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
