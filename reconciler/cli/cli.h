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
 * The estate lock (lock.c): one run that changes the estate at a time, on this machine (a
 * file lock) or, with a lease backend configured (the estate's `lock:` block or KVR_LOCK_*),
 * across machines (a blob lease in Azure Storage, renewed in the background). Taken after the
 * session is open (it names the estate); waits up to `timeout_s` seconds (0: not at all) or
 * until *stop, printing who holds it. When a held lease is lost, `lost` is set, and *halt too
 * (may be NULL: the executor's stop flag), so that the run stops before its next step. 0, or -1
 * after printing why.
 */
typedef struct cli_lease cli_lease;
typedef struct cli_lock {
    int fd;
    char *path;
    cli_lease *lease; /* the azureblob backend; NULL: the file lock */
    volatile int lost;
} cli_lock;
#define CLI_LOCK_INIT {-1, NULL, NULL, 0}

int cli_lock_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
                  bool quiet, bool json, volatile int *stop, volatile int *halt);
void cli_lock_release(cli_lock *l);
/* Why a held lease was lost ("" when it was not): for the error message. */
const char *cli_lock_lost_why(const cli_lock *l);
/* True when the estate (or the environment) configures a lease backend. */
bool cli_lock_is_lease(const cli_session *s);
/*
 * Wraps *p (the run's provider) so that no operation or probe starts once a lease this process
 * holds is lost: the executor stops between steps, this also between a read and a step. The
 * wrapper owns *p from then on (kvr_provider_free frees both). 0 or KVR_ENOMEM.
 */
int cli_lock_guard(kvr_provider **p, kvr_error *err);
/* How often a waiting run or a following watch replica asks for a lease, in seconds. */
int cli_lock_poll_seconds(void);

/*
 * Leadership among watch replicas (lock.c): a second lease, on "BLOB.leader", held for as long
 * as the replica leads. cli_leader_try takes it if it is free: 1 when this replica now leads,
 * 0 when another does (`holder` says who, may be ""), -1 after printing why. Losing it sets
 * l->lost and *halt as for the estate lock.
 */
int cli_leader_try(cli_lock *l, const cli_session *s, char *holder, size_t holder_size,
                   volatile int *halt);

/*
 * Metrics of watch (metrics.c): cli_metrics_start serves /metrics (Prometheus text format) and
 * /healthz on `addr` ("HOST:PORT", ":PORT" or "PORT": loopback) from a thread of its own; 0, or
 * -1 after printing why. The recorders are no-ops' equivalents when it was not started (they
 * only count). cli_metrics_log returns a stream for the executor's progress (ao->log, with
 * ao->json_log set): it counts the step, waiting and blocked events and passes each line on to
 * `to`, as it is when `json`, else as a text line; NULL when metrics are off. Close it with
 * fclose.
 */
int cli_metrics_start(const char *addr);
void cli_metrics_stop(void);
void cli_metrics_run_end(const char *result, double seconds); /* converged|blocked|error|invalid */
void cli_metrics_leader(int leading);                          /* -1 none, 0 follower, 1 leader */
void cli_metrics_lease(bool held);
FILE *cli_metrics_log(FILE *to, bool json);

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
