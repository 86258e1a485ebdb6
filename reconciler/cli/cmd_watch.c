/*
 * `kvreconcile watch DIR`: keeps the estate true. inotify on the configuration tree (new
 * subdirectories too; editors that save by rename or write-then-move; files deleted and made
 * again) with a short debounce so that one save makes one run; a periodic resync so that drift
 * and gates (profile Used, retention) are noticed without a file change; SIGHUP forces a run;
 * SIGTERM and SIGINT finish the current step and exit 0. An invalid configuration is reported
 * and nothing is applied, not even the last valid one: the next valid save continues.
 *
 * Idle, it sleeps in poll(2) until an event, a signal or the next resync.
 *
 * With a lease backend (lock.c), several replicas may run the same command: they elect a
 * leader with a second lease ("BLOB.leader"), held for as long as the replica lives and
 * renewed in the background. Only the leader runs; the others ask for the lease every few
 * seconds and take over within about a lease period when the leader dies (at once when it
 * stops cleanly and releases it). A lost leadership stops the current run before its next
 * operation. --metrics-addr serves Prometheus metrics (metrics.c).
 */
#include "cli.h"

#include "kvr/apply.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEBOUNCE_MS 50
#define MAX_WATCHES 4096

static volatile int stop_requested;
static volatile int run_halt; /* the executor's stop flag: a signal, or a lease lost */
static volatile sig_atomic_t hup_requested;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        hup_requested = 1;
    else
        stop_requested = run_halt = 1;
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "x", 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

static void watch_usage(FILE *out)
{
    fprintf(out,
            "usage: kvreconcile watch DIR [--interval DURATION] [--once] [--status-file FILE]\n"
            "                         [-q] [--log-format text|json] [--allow-files-under DIR]\n"
            "                         [--metrics-addr HOST:PORT]\n\n"
            "Applies the desired state in DIR now, again whenever a YAML file under it changes\n"
            "(one run per save), and every --interval (default 5m) so that drift and gates are\n"
            "noticed without a change. An invalid configuration is reported and nothing is\n"
            "applied until a valid one is saved. SIGHUP forces a run; SIGTERM or SIGINT finish\n"
            "the current step and exit 0.\n\n"
            "options:\n"
            "  --interval DURATION   resync period (e.g. 5m, 1h)\n"
            "  --once                one run, then exit with apply's status (for cron)\n"
            "  --status-file FILE    after each run, write {time, result, waitingFor, nextRun}\n"
            "                        (with a lease backend also leading, replica, leader)\n"
            "  --metrics-addr HOST:PORT\n"
            "                        serve Prometheus metrics at /metrics and /healthz (a\n"
            "                        port alone binds 127.0.0.1)\n"
            "  -q, --log-format      as for apply\n"
            "  --allow-files-under DIR  secrets' fromFile may also name files under DIR "
            "(repeatable)\n");
}

/* Watches DIR and every subdirectory (hidden ones skipped). */
static void add_tree(int fd, const char *dir, unsigned depth)
{
    DIR *d;
    struct dirent *de;
    if (depth > 64)
        return;
    if (inotify_add_watch(fd, dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                              IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB | IN_ONLYDIR) < 0)
        return;
    d = opendir(dir);
    if (!d)
        return;
    while ((de = readdir(d))) {
        char path[4096];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(fd, path, depth + 1);
    }
    closedir(d);
}

static bool relevant(const struct inotify_event *ev)
{
    size_t n;
    if (ev->mask & (IN_ISDIR | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW))
        return true;
    if (!ev->len || ev->name[0] == '.')
        return false;
    n = strlen(ev->name);
    return (n > 5 && strcmp(ev->name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(ev->name + n - 4, ".yml") == 0);
}

static char findings[2048]; /* the last run's plan findings, for the status file */

/* Leader election (a lease backend): -1 none, 0 following, 1 leading. */
static int leading = -1;
static char replica[300];     /* this replica: "pid P on HOST" */
static char leader_name[320]; /* the leader as its lease's metadata names it */
static FILE *metrics_log;     /* the executor's events, counted (metrics.c); NULL: off */

static void write_status(const char *path, const char *result, const char *waiting,
                         double next_in)
{
    char now[KVR_TIME_ISO_MAX], next[KVR_TIME_ISO_MAX], *text = NULL, *line = NULL;
    kvr_error err;
    json_t *j;
    if (!path)
        return;
    kvr_time_iso(now, sizeof(now), (int64_t)time(NULL));
    kvr_time_iso(next, sizeof(next), (int64_t)time(NULL) + (int64_t)next_in);
    j = json_pack("{s:s,s:s,s:s?,s:s}", "time", now, "result", result, "waitingFor",
                  waiting && *waiting ? waiting : NULL, "nextRun", next);
    if (j && leading >= 0) { /* which replica leads */
        json_object_set_new(j, "leading", json_boolean(leading == 1));
        json_object_set_new(j, "replica", json_string(replica));
        json_object_set_new(j, "leader", json_string(leading == 1 ? replica : leader_name));
    }
    if (j) { /* credentials near or past their end: one line each, "warning|error: ..." */
        json_t *fs = json_array();
        for (const char *p = findings; fs && *p;) {
            size_t n = strcspn(p, "\n");
            json_array_append_new(fs, json_stringn(p, n));
            p += n + (p[n] == '\n');
        }
        json_object_set_new(j, "findings", fs ? fs : json_array());
    }
    /* Through a fresh file with an unpredictable name, renamed into place: readers see the
       old or the new file, and a link planted next to it is never followed (util/file.c). */
    if (j && (text = json_dumps(j, JSON_INDENT(2))) && (line = kvr_asprintf("%s\n", text)) &&
        kvr_file_write_atomic(path, line, strlen(line), 0644, &err) < 0)
        cli_error("status file: %s", err.message);
    free(line);
    free(text);
    json_decref(j);
}

/*
 * One run; returns the exit status apply would have. *next_in (may be NULL) is when to run
 * again: the resync interval, or sooner when the run is blocked only by a retention period
 * that ends before it (controller-runtime's RequeueAfter).
 */
static int run_once(const char *dir, kvr_apply_options *ao, const char *status_file,
                    double interval, double *next_in)
{
    int64_t requeue = 0;
    const char *paths[1] = {dir};
    cli_session s;
    cli_lock lock = CLI_LOCK_INIT;
    kvr_apply_result result;
    kvr_error err;
    char reason[1024] = "";
    int status, rc;
    double t0 = kvr_mono_s();

    findings[0] = '\0'; /* this run's, not the last one's */
    cli_progress(ao->json_log, ao->quiet, "run-started", NULL, "watch: run started");
    if (cli_session_open(&s, paths, 1, "nothing was applied; waiting for a valid change") < 0) {
        write_status(status_file, "invalid", NULL, interval);
        cli_metrics_run_end("invalid", kvr_mono_s() - t0);
        return KVR_EXIT_ERROR;
    }
    /* a manual apply holds the estate: wait for it, but not past the next resync */
    run_halt = stop_requested;
    if (cli_lock_take(&lock, &s, "watch", (int64_t)interval, ao->quiet, ao->json_log,
                      &stop_requested, &run_halt) < 0) {
        write_status(status_file, "error", NULL, interval);
        cli_metrics_run_end("error", kvr_mono_s() - t0);
        cli_session_close(&s);
        return KVR_EXIT_ERROR;
    }
    cli_metrics_lease(lock.lease != NULL);
    ao->reason = reason;
    ao->reason_size = sizeof(reason);
    ao->requeue_after = &requeue;
    ao->findings = findings;
    ao->findings_size = sizeof(findings);
    {
        kvr_apply_options eo = *ao; /* with metrics, the executor's events go through them */
        if (metrics_log) {
            eo.log = metrics_log;
            eo.json_log = true;
        }
        rc = cli_apply_run(&result, &s, &eo, &err);
    }
    if (lock.lost) {
        cli_error("the estate's lease was lost (%s); the run stopped before its next operation",
                  cli_lock_lost_why(&lock));
        write_status(status_file, "error", NULL, interval);
        status = KVR_EXIT_ERROR;
    } else if (rc < 0) {
        cli_error("%s", err.message);
        write_status(status_file, "error", NULL, interval);
        status = KVR_EXIT_ERROR;
    } else if (result == KVR_APPLY_BLOCKED) {
        if (requeue > 0 && (double)requeue < interval) {
            interval = (double)requeue + 1; /* once the retention has passed */
            cli_progress(ao->json_log, ao->quiet, "requeue",
                         json_pack("{s:I}", "seconds", (json_int_t)requeue + 1),
                         "watch: the next gate opens in %llds; running again then",
                         (long long)requeue + 1);
        }
        write_status(status_file, "blocked", reason, interval);
        status = KVR_EXIT_BLOCKED;
    } else {
        write_status(status_file, "converged", NULL, interval);
        status = KVR_EXIT_OK;
    }
    ao->requeue_after = NULL;
    cli_metrics_run_end(status == KVR_EXIT_OK        ? "converged"
                        : status == KVR_EXIT_BLOCKED ? "blocked"
                                                     : "error",
                        kvr_mono_s() - t0);
    cli_lock_release(&lock);
    cli_metrics_lease(false);
    cli_session_close(&s);
    if (next_in)
        *next_in = interval;
    return status;
}

int kvr_cmd_watch(int argc, char **argv)
{
    static const struct option opts[] = {{"interval", required_argument, NULL, 'i'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"status-file", required_argument, NULL, 's'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"log-format", required_argument, NULL, 'L'},
                                         {"metrics-addr", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_LONGOPT_ALLOW_FILES_UNDER,
                                         {NULL, 0, NULL, 0}};
    const char *dir, *status_file = NULL, *metrics_addr = NULL;
    cli_session es = {0}; /* the desired state as watch started: where the leader lease is */
    cli_lock leader = CLI_LOCK_INIT;
    double next_try = 0;
    int64_t interval = 300;
    bool once = false;
    kvr_apply_options ao;
    struct sigaction sa;
    int opt, fd = -1, status = KVR_EXIT_ERROR;
    double next_resync, debounce_at = 0;
    bool dirty = true;
    struct stat st;

    memset(&ao, 0, sizeof(ao));
    ao.log = stderr;
    ao.poll_seconds = 5;
    ao.probe_seconds = 120;
    ao.stop = &run_halt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'i': {
            kvr_error derr;
            if (kvr_duration_parse(&interval, optarg, &derr) < 0) {
                cli_error("--interval: %s", derr.message);
                return KVR_EXIT_ERROR;
            }
            break;
        }
        case 'o':
            once = true;
            break;
        case 's':
            status_file = optarg;
            break;
        case 'm':
            metrics_addr = optarg;
            break;
        case 'q':
            ao.quiet = true;
            break;
        case 'L':
            if (cli_log_format(&ao.json_log, optarg) < 0)
                return KVR_EXIT_ERROR;
            break;
        case CLI_OPT_ALLOW_FILES_UNDER:
            if (cli_allow_files_under(optarg) < 0)
                return KVR_EXIT_ERROR;
            break;
        case 'h':
            watch_usage(stdout);
            return KVR_EXIT_OK;
        default:
            cli_error("unknown option '%s' for 'watch'", argv[optind - 1]);
            watch_usage(stderr);
            return KVR_EXIT_ERROR;
        }
    }
    if (optind + 1 != argc) {
        cli_error("give exactly one directory to watch");
        watch_usage(stderr);
        return KVR_EXIT_ERROR;
    }
    dir = argv[optind];
    /* Within a run, wait for gates that can open soon (a profile becoming Used, a grant taking
       effect), but never past the next resync; hopeless waits (retention) end at once. */
    ao.wait_seconds = interval;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        cli_error("'%s' is not a directory", dir);
        return KVR_EXIT_ERROR;
    }
    if (metrics_addr && cli_metrics_start(metrics_addr) < 0)
        return KVR_EXIT_ERROR;
    metrics_log = metrics_addr ? cli_metrics_log(stderr, ao.json_log) : NULL;
    if (once) {
        status = run_once(dir, &ao, status_file, (double)interval, NULL);
        if (metrics_log)
            fclose(metrics_log);
        cli_metrics_stop();
        return status;
    }
    {
        /* Replicas elect a leader when a lease backend is configured (read once, at start). */
        const char *paths[1] = {dir};
        kvr_diags diags;
        char host[256] = "";
        kvr_diags_init(&diags);
        if (kvr_model_load_with(&es.e, paths, 1, cli_model_options(), &diags) < 0)
            es.e = NULL; /* reported by the first run; the environment may still name a lease */
        kvr_diags_release(&diags);
        if (cli_lock_is_lease(&es)) {
            leading = 0;
            gethostname(host, sizeof(host) - 1);
            snprintf(replica, sizeof(replica), "pid %ld on %s", (long)getpid(), host);
            cli_metrics_leader(0);
        }
    }

    if (pipe(wake_pipe) < 0) {
        cli_error("cannot create a pipe: %s", strerror(errno));
        return KVR_EXIT_ERROR;
    }
    fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        cli_error("inotify: %s", strerror(errno));
        goto done;
    }
    add_tree(fd, dir, 0);
    next_resync = kvr_mono_s();
    while (!stop_requested) {
        struct pollfd pfd[2] = {{fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
        double t = kvr_mono_s(), wake = next_resync;
        int timeout_ms;
        if (debounce_at > 0 && debounce_at < wake)
            wake = debounce_at;
        if (leading >= 0 && t + cli_lock_poll_seconds() < wake)
            wake = t + cli_lock_poll_seconds(); /* ask for the lease, or see it is still ours */
        if (leading == 0)
            wake = next_try; /* a follower runs nothing: it only asks for the lease */
        /* a resync weeks away would overflow poll's int: wake up at least daily */
        timeout_ms = wake <= t ? 0 : wake - t > 86400 ? 86400 * 1000 : (int)((wake - t) * 1000) + 1;
        if (poll(pfd, 2, timeout_ms) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents & POLLIN) {
            char buf[64];
            while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
                ;
        }
        if (pfd[0].revents & POLLIN) {
            char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
            ssize_t n;
            bool any = false, new_dir = false;
            while ((n = read(fd, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + n;) {
                    const struct inotify_event *ev = (const struct inotify_event *)p;
                    if (relevant(ev))
                        any = true;
                    if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
                        new_dir = true;
                    p += sizeof(*ev) + ev->len;
                }
            }
            if (new_dir)
                add_tree(fd, dir, 0); /* watching twice is harmless: inotify merges */
            if (any)
                debounce_at = kvr_mono_s() + DEBOUNCE_MS / 1000.0; /* one save, one run */
        }
        if (hup_requested) {
            hup_requested = 0;
            dirty = true;
        }
        t = kvr_mono_s();
        if (debounce_at > 0 && t >= debounce_at) {
            debounce_at = 0;
            dirty = true;
        }
        if (t >= next_resync)
            dirty = true;
        if (leading == 1 && leader.lost) {
            cli_progress(ao.json_log, ao.quiet, "leader-lost", NULL,
                         "watch: leadership lost (%s); following", cli_lock_lost_why(&leader));
            cli_lock_release(&leader);
            leading = 0;
            leader_name[0] = '\0';
            cli_metrics_leader(0);
            write_status(status_file, "following", NULL, (double)interval);
        }
        if (leading == 0 && t >= next_try && !stop_requested) {
            char holder[sizeof(leader_name)];
            int r = cli_leader_try(&leader, &es, holder, sizeof(holder), &run_halt);
            next_try = kvr_mono_s() + cli_lock_poll_seconds();
            if (r == 1) {
                leading = 1;
                dirty = true; /* a new leader runs at once */
                cli_metrics_leader(1);
                cli_progress(ao.json_log, ao.quiet, "leader",
                             json_pack("{s:s}", "replica", replica),
                             "watch: this replica leads (%s)", replica);
            } else if (r == 0 && strcmp(holder, leader_name) != 0) {
                snprintf(leader_name, sizeof(leader_name), "%s", holder);
                cli_progress(ao.json_log, ao.quiet, "following",
                             json_pack("{s:s,s:s}", "replica", replica, "leader", holder),
                             "watch: following; the leader is %s",
                             holder[0] ? holder : "unknown");
                write_status(status_file, "following", NULL, (double)interval);
            }
        }
        if (dirty && !stop_requested && leading != 0) {
            dirty = false;
            double next_in = (double)interval;
            run_once(dir, &ao, status_file, (double)interval, &next_in);
            next_resync = kvr_mono_s() + next_in;
        }
    }
    status = KVR_EXIT_OK;
    cli_progress(ao.json_log, ao.quiet, "stopped", NULL, "watch: stopped");
done:
    cli_lock_release(&leader); /* a clean stop hands over at once */
    kvr_estate_free(es.e);
    if (metrics_log)
        fclose(metrics_log);
    metrics_log = NULL;
    cli_metrics_stop();
    if (fd >= 0)
        close(fd);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    wake_pipe[0] = wake_pipe[1] = -1;
    return status;
}
