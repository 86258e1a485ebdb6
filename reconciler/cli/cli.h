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
int kvr_cmd_version(int argc, char **argv);
int kvr_cmd_help(int argc, char **argv);

/* Prints "kvreconcile: error: MSG" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
