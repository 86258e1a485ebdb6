/*
 * The estate lock: one run that changes the estate (`apply`, a `watch` run) at a time.
 *
 * Why a lock at all, when every run re-reads the estate? Some creations cannot be made
 * idempotent with what Azure offers: a client secret is minted by addPassword (each call a new
 * one), a key version by create (each call a new one), a profile by POST. Two runs that both
 * find them missing both make them; the next run cleans up the extras, but in between the
 * consuming service may have been given a credential that is about to be removed. So runs that
 * change the estate take turns.
 *
 * Two backends. The default is local: flock(2) on /run/lock/kvreconcile-<hash>.lock
 * (KVR_LOCK_DIR overrides the directory; /tmp when /run/lock is missing), where the hash names
 * the estate by its cloud's ARM endpoint and subscription. The kernel drops the lock when the
 * process dies, so a crash or kill -9 never leaves a stale lock. The file says who holds it
 * (pid, host, command, since when) so that the one who waits can be told; it holds nothing
 * secret. It reaches only as far as this machine.
 *
 * Across machines (CI runners, watch replicas) the backend is `azureblob`: a lease on a blob in
 * Azure Storage (kvr/blob.h), configured by the estate's `lock:` block or KVR_LOCK_* variables.
 * The lease lasts 60 s and a thread renews it every 15 s with its own HTTP engine and
 * credential (a handle serves one thread); a killed holder's lease runs out on its own. The
 * holder is written in the blob's metadata for the one who waits. If a renewal is refused
 * (the lease was broken or taken) or cannot be confirmed for 40 s (20 s before it could run
 * out), the lease counts as lost: the thread raises the run's stop flag, the executor stops
 * before its next step, and the command exits 1; a run never goes on unprotected.
 */
#include "cli.h"

#include "kvr/blob.h"
#include "kvr/provider.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 100

static void local_release(cli_lock *l);

static const char *lock_dir(void)
{
    const char *d = getenv("KVR_LOCK_DIR");
    if (d && *d)
        return d;
    return access("/run/lock", W_OK | X_OK) == 0 ? "/run/lock" : "/tmp";
}

/*
 * Opens the lock file without following a symlink. An existing file is opened as it is (in a
 * sticky directory, O_CREAT on another user's file is refused by fs.protected_regular); a
 * missing one is created exclusively, readable and writable by all so that every user's runs
 * share it (UMask=0077 services included).
 */
static int open_lock(const char *path)
{
    for (int tries = 0; tries < 8; tries++) {
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == EACCES)
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC); /* flock needs no write */
        if (fd >= 0 || errno != ENOENT)
            return fd;
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0) {
            fchmod(fd, 0666);
            return fd;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EAGAIN;
    return -1;
}

/* Who holds it, as its holder wrote it: one line, or "" if unknown. */
static void read_holder(int fd, char *out, size_t size)
{
    ssize_t n = pread(fd, out, size - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?'; /* the file is writable by all: never echo control characters */
}

/* The holder writes its line just after it takes the lock: a reader in between finds the file
   empty, so an empty line is read again for up to half a second before it counts as unknown. */
static void read_holder_settled(int fd, char *out, size_t size)
{
    read_holder(fd, out, size);
    for (int i = 0; !out[0] && i < 10; i++) {
        usleep(50 * 1000);
        read_holder(fd, out, size);
    }
}

static void write_holder(int fd, const char *command)
{
    char host[256] = "", since[32], line[400];
    time_t now = time(NULL);
    struct tm tm;
    int n;
    gethostname(host, sizeof(host) - 1);
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    n = snprintf(line, sizeof(line), "pid %ld on %s, kvreconcile %s, since %s\n", (long)getpid(),
                 host, command, since);
    if (n > 0 && ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n, 0) < 0) {
        /* read-only for us (another user's file): the holder line stays unknown */
    }
}

static int local_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
                      bool quiet, bool json, volatile int *stop)
{
    /* a name for the estate, not a secret: its ARM endpoint and subscription, without case */
    uint64_t h = kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, s->ep.arm), s->subscription);
    const char *dir = lock_dir();
    char holder[300];
    double deadline;
    bool told = false;

    l->fd = -1;
    size_t n = strlen(dir) + sizeof("/kvreconcile-0123456789abcdef.lock");
    if (!(l->path = malloc(n))) {
        cli_error("out of memory");
        return -1;
    }
    snprintf(l->path, n, "%s/kvreconcile-%016llx.lock", dir, (unsigned long long)h);
    if ((l->fd = open_lock(l->path)) < 0) {
        cli_error("cannot open the estate's lock file %s: %s (KVR_LOCK_DIR chooses its "
                  "directory); nothing was changed",
                  l->path, strerror(errno));
        goto fail;
    }
    deadline = kvr_mono_s() + (double)timeout_s;
    while (flock(l->fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            cli_error("cannot lock %s: %s; nothing was changed", l->path, strerror(errno));
            goto fail;
        }
        read_holder_settled(l->fd, holder, sizeof(holder));
        if (kvr_mono_s() >= deadline || (stop && *stop)) {
            cli_error("another kvreconcile run is changing this estate (%s; lock %s); nothing "
                      "was changed. Let it finish, or give --lock-timeout DURATION to wait for it",
                      holder[0] ? holder : "holder unknown", l->path);
            goto fail;
        }
        if (!told)
            cli_progress(json, quiet, "lock-wait",
                         json_pack("{s:s,s:s}", "holder", holder, "lock", l->path),
                         "waiting for the estate's lock (%s; %s)",
                         holder[0] ? holder : "holder unknown", l->path);
        told = true;
        usleep(POLL_MS * 1000);
    }
    write_holder(l->fd, command);
    return 0;
fail:
    local_release(l);
    return -1;
}

static void local_release(cli_lock *l)
{
    if (l->fd >= 0) {
        /* the file stays: unlinking it would let a waiter lock an inode nobody else opens */
        if (ftruncate(l->fd, 0) < 0) {
            /* read-only for us: the next holder overwrites the line */
        }
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}

/* ---- azureblob: a lease on a blob in Azure Storage ------------------------------------------- */

struct cli_lease {
    char *endpoint, *container, *blob;
    kvr_blob_ref ref;
    char id[KVR_LEASE_ID_LEN + 1];
    kvr_http *http; /* the renewing thread's own: a handle serves one thread */
    kvr_auth *auth;
    int duration, renew_every, poll;
    pthread_t thread;
    bool thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool quit;
    double last_ok; /* when the last confirmed acquire/renew was sent (kvr_mono_s) */
    cli_lock *owner;
    volatile int *halt;
    bool quiet, json;
    char why[KVR_ERROR_MSG_MAX + 64];
};

/* Test and tuning knobs: an integer from the environment within [lo, hi], else `def`. */
static int env_int(const char *name, int def, int lo, int hi)
{
    const char *v = getenv(name);
    char *end;
    long n;
    if (!v || !*v)
        return def;
    n = strtol(v, &end, 10);
    return *end || n < lo || n > hi ? def : (int)n;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

bool cli_lock_is_lease(const cli_session *s)
{
    return env_or("KVR_LOCK_STORAGE_ACCOUNT", s->e ? s->e->lock.storage_account : NULL) &&
           env_or("KVR_LOCK_CONTAINER", s->e ? s->e->lock.container : NULL);
}

/* The blob endpoint of a storage account in the estate's cloud. */
static char *default_endpoint(const cli_session *s, const char *account)
{
    const char *cloud = s->e && s->e->cloud.name ? s->e->cloud.name : "";
    const char *suffix = strcmp(cloud, "AzureUSGovernment") == 0 ? "blob.core.usgovcloudapi.net"
                         : strcmp(cloud, "AzureChinaCloud") == 0 ? "blob.core.chinacloudapi.cn"
                                                                 : "blob.core.windows.net";
    return kvr_asprintf("https://%s.%s", account, suffix);
}

static void lease_free(cli_lease *ls)
{
    if (!ls)
        return;
    kvr_auth_free(ls->auth);
    kvr_http_free(ls->http);
    free(ls->endpoint);
    free(ls->container);
    free(ls->blob);
    pthread_mutex_destroy(&ls->mu);
    pthread_cond_destroy(&ls->cv);
    free(ls);
}

/* The lease's settings and its own connection; `suffix` names a second blob (".leader"). */
static cli_lease *lease_new(const cli_session *s, const char *suffix, bool quiet, bool json)
{
    const kvr_lock_config *c = s->e ? &s->e->lock : NULL;
    const char *account = env_or("KVR_LOCK_STORAGE_ACCOUNT", c ? c->storage_account : NULL);
    const char *endpoint = env_or("KVR_LOCK_BLOB_ENDPOINT", c ? c->endpoint : NULL);
    const char *blob = env_or("KVR_LOCK_BLOB", c && c->blob ? c->blob : KVR_BLOB_DEFAULT_NAME);
    cli_lease *ls = calloc(1, sizeof(*ls));
    pthread_condattr_t ca;
    kvr_http_config hc;
    kvr_auth_config acfg;
    kvr_error err;

    if (!ls) {
        cli_error("out of memory");
        return NULL;
    }
    pthread_mutex_init(&ls->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ls->cv, &ca);
    pthread_condattr_destroy(&ca);
    ls->container = strdup(env_or("KVR_LOCK_CONTAINER", c ? c->container : ""));
    ls->blob = kvr_asprintf("%s%s", blob, suffix ? suffix : "");
    ls->endpoint = endpoint ? strdup(endpoint) : default_endpoint(s, account);
    if (!ls->container || !ls->blob || !ls->endpoint) {
        cli_error("out of memory");
        goto fail;
    }
    if (strncmp(ls->endpoint, "https://", 8) != 0) {
        cli_error("the lock's blob endpoint '%s' must be an https:// URL (tokens are never sent "
                  "in clear); nothing was changed",
                  ls->endpoint);
        goto fail;
    }
    ls->ref.endpoint = ls->endpoint;
    ls->ref.container = ls->container;
    ls->ref.blob = ls->blob;
    /* 60 s as Terraform's backend; 15-60 is what Azure allows (shorter for tests) */
    ls->duration = env_int("KVR_LOCK_LEASE_SECONDS", 60, 15, 60);
    ls->renew_every = env_int("KVR_LOCK_RENEW_SECONDS", ls->duration / 4, 1, ls->duration / 2);
    ls->poll = cli_lock_poll_seconds();
    ls->quiet = quiet;
    ls->json = json;
    /* A renewal must answer well within the margin: short timeouts, few retries. */
    kvr_http_config_init(&hc);
    hc.connect_timeout_ms = 5000;
    hc.timeout_ms = 8000;
    hc.max_attempts = 2;
    hc.retry_budget_ms = 4000;
    hc.backoff_base_ms = 500;
    kvr_auth_config_from_env(&acfg);
    if (s->e && s->e->cloud.authority_host && !getenv("AZURE_AUTHORITY_HOST"))
        acfg.authority_host = s->e->cloud.authority_host;
    if (kvr_http_new(&ls->http, &hc, &err) < 0 || kvr_auth_new(&ls->auth, ls->http, &acfg, &err) < 0 ||
        kvr_lease_id_new(ls->id, sizeof(ls->id), &err) < 0) {
        cli_error("%s; nothing was changed", err.message);
        goto fail;
    }
    return ls;
fail:
    lease_free(ls);
    return NULL;
}

/* Set when any lease this process holds is lost: the guard provider refuses operations then. */
static volatile int any_lease_lost;

static void lease_lost(cli_lease *ls, const char *why)
{
    snprintf(ls->why, sizeof(ls->why), "%s", why);
    any_lease_lost = 1;
    ls->owner->lost = 1;
    if (ls->halt)
        *ls->halt = 1;
    cli_progress(ls->json, false, "lease-lost",
                 json_pack("{s:s,s:s}", "blob", ls->blob, "reason", ls->why),
                 "the lease on '%s/%s' was lost: %s; stopping before the next operation",
                 ls->container, ls->blob, ls->why);
}

/* The renewing thread: every renew_every seconds, sooner again after a failure. */
static void *renew_loop(void *arg)
{
    cli_lease *ls = arg;
    double next = ls->last_ok + ls->renew_every;
    double margin = ls->duration - 20 > ls->duration / 2 ? ls->duration - 20 : ls->duration / 2;
    bool warned = false;

    pthread_mutex_lock(&ls->mu);
    while (!ls->quit) {
        struct timespec ts;
        double t = next;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        /* kvr_mono_s is CLOCK_MONOTONIC seconds: the condition variable's clock */
        if (kvr_mono_s() < next) {
            pthread_cond_timedwait(&ls->cv, &ls->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&ls->mu);
        {
            kvr_lease_status st;
            kvr_error err;
            double sent = kvr_mono_s();
            int rc = kvr_blob_lease_renew(&st, ls->auth, &ls->ref, ls->id, &err);
            pthread_mutex_lock(&ls->mu);
            if (rc == 0 && st == KVR_LEASE_OK) {
                ls->last_ok = sent;
                next = sent + ls->renew_every;
                warned = false;
            } else if (rc == 0) {
                lease_lost(ls, err.message);
                break;
            } else {
                if (!warned)
                    cli_progress(ls->json, ls->quiet, "lease-renew-failed",
                                 json_pack("{s:s}", "reason", err.message),
                                 "renewing the lease failed (%s); trying again", err.message);
                warned = true;
                next = kvr_mono_s() + 1;
            }
            if (kvr_mono_s() - ls->last_ok > margin) {
                char d[64];
                snprintf(d, sizeof(d), "no renewal confirmed for %.0f s", kvr_mono_s() - ls->last_ok);
                lease_lost(ls, d);
                break;
            }
        }
    }
    pthread_mutex_unlock(&ls->mu);
    return NULL;
}

static int lease_start(cli_lease *ls, cli_lock *l, volatile int *halt, double acquired_at)
{
    ls->owner = l;
    ls->halt = halt;
    ls->last_ok = acquired_at;
    if (pthread_create(&ls->thread, NULL, renew_loop, ls) != 0) {
        cli_error("cannot start the thread that renews the lease");
        return -1;
    }
    ls->thread_on = true;
    return 0;
}

static void write_lease_holder(cli_lease *ls, const char *command)
{
    char host[256] = "", pid[32], since[32];
    const char *pairs[] = {"kvr_pid", pid, "kvr_host", host, "kvr_command", command,
                           "kvr_since", since, NULL};
    time_t now = time(NULL);
    struct tm tm;
    kvr_lease_status st;
    kvr_error err;
    gethostname(host, sizeof(host) - 1);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    if (kvr_blob_set_metadata(&st, ls->auth, &ls->ref, ls->id, pairs, &err) < 0 ||
        st != KVR_LEASE_OK)
        cli_progress(ls->json, ls->quiet, "lease-holder-unwritten",
                     json_pack("{s:s}", "reason", err.message),
                     "could not write the lease holder (%s)", err.message);
}

/*
 * One attempt: 1 acquired (the holder written), 0 held by another (*info says by whom when
 * `info` is given), -1 after printing why.
 */
static int lease_attempt(cli_lease *ls, const char *command, kvr_blob_info *info, double *sent)
{
    kvr_lease_status st;
    kvr_error err;
    *sent = kvr_mono_s();
    if (kvr_blob_lease_acquire(&st, ls->auth, &ls->ref, ls->id, ls->duration, &err) < 0) {
        cli_error("estate lease: %s; nothing was changed", err.message);
        return -1;
    }
    if (st == KVR_LEASE_OK) {
        write_lease_holder(ls, command);
        return 1;
    }
    if (info && kvr_blob_info_get(info, ls->auth, &ls->ref, &err) < 0)
        memset(info, 0, sizeof(*info));
    return 0;
}

static int lease_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
                      bool quiet, bool json, volatile int *stop, volatile int *halt)
{
    cli_lease *ls = lease_new(s, NULL, quiet, json);
    double deadline, sent;
    char told[sizeof(((kvr_blob_info *)0)->holder) + 1] = "\001";
    char where[600];

    if (!ls)
        return -1;
    snprintf(where, sizeof(where), "%s/%s/%s", ls->endpoint, ls->container, ls->blob);
    deadline = kvr_mono_s() + (double)timeout_s;
    for (;;) {
        kvr_blob_info info;
        int rc = lease_attempt(ls, command, &info, &sent);
        if (rc < 0)
            goto fail;
        if (rc == 1)
            break;
        if (kvr_mono_s() >= deadline || (stop && *stop)) {
            cli_error("another kvreconcile run holds the estate's lease (%s; lease %s); nothing "
                      "was changed. Let it finish, or give --lock-timeout DURATION to wait for it",
                      info.holder[0] ? info.holder : "holder unknown", where);
            goto fail;
        }
        if (strcmp(told, info.holder) != 0) /* first time, and each time the holder changes */
            cli_progress(json, quiet, "lock-wait",
                         json_pack("{s:s,s:s}", "holder", info.holder, "lock", where),
                         "waiting for the estate's lease (%s; %s)",
                         info.holder[0] ? info.holder : "holder unknown", where);
        snprintf(told, sizeof(told), "%s", info.holder);
        for (double until = kvr_mono_s() + ls->poll; kvr_mono_s() < until && !(stop && *stop);)
            usleep(POLL_MS * 1000);
    }
    l->lease = ls;
    if (lease_start(ls, l, halt, sent) < 0)
        goto fail_held;
    cli_progress(json, quiet, "lease-acquired", json_pack("{s:s}", "lock", where),
                 "holding the estate's lease (%s)", where);
    return 0;
fail_held:
    l->lease = NULL;
    {
        kvr_lease_status st;
        kvr_error err;
        kvr_blob_lease_release(&st, ls->auth, &ls->ref, ls->id, &err);
    }
fail:
    lease_free(ls);
    return -1;
}

static void lease_release(cli_lock *l)
{
    cli_lease *ls = l->lease;
    kvr_lease_status st;
    kvr_error err;
    if (!ls)
        return;
    if (ls->thread_on) {
        pthread_mutex_lock(&ls->mu);
        ls->quit = true;
        pthread_cond_signal(&ls->cv);
        pthread_mutex_unlock(&ls->mu);
        pthread_join(ls->thread, NULL);
    }
    if (!l->lost) {
        /* the holder first (a waiter must not read ours for the next one), then the lease */
        static const char *const none[] = {NULL};
        kvr_blob_set_metadata(&st, ls->auth, &ls->ref, ls->id, none, &err);
        if (kvr_blob_lease_release(&st, ls->auth, &ls->ref, ls->id, &err) < 0)
            cli_progress(ls->json, ls->quiet, "lease-release-failed",
                         json_pack("{s:s}", "reason", err.message),
                         "could not release the lease (%s); it runs out within %d s",
                         err.message, ls->duration);
        else
            cli_progress(ls->json, ls->quiet, "lease-released",
                         json_pack("{s:s}", "blob", ls->blob), "released the lease on '%s/%s'",
                         ls->container, ls->blob);
    }
    lease_free(ls);
    l->lease = NULL;
}

int cli_leader_try(cli_lock *l, const cli_session *s, char *holder, size_t holder_size,
                   volatile int *halt)
{
    cli_lease *ls = lease_new(s, ".leader", true, false);
    kvr_blob_info info;
    double sent;
    int rc;
    if (holder_size)
        holder[0] = '\0';
    if (!ls)
        return -1;
    rc = lease_attempt(ls, "watch", &info, &sent);
    if (rc == 1) {
        l->lost = 0;
        l->lease = ls;
        if (lease_start(ls, l, halt, sent) < 0) {
            lease_release(l);
            return -1;
        }
        return 1;
    }
    if (rc == 0 && holder_size)
        snprintf(holder, holder_size, "%s", info.holder);
    lease_free(ls);
    return rc;
}

int cli_lock_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
                  bool quiet, bool json, volatile int *stop, volatile int *halt)
{
    l->fd = -1;
    l->path = NULL;
    l->lease = NULL;
    l->lost = 0;
    if (cli_lock_is_lease(s)) {
        any_lease_lost = 0; /* a new run: a lease lost before (watch) is not this one's */
        return lease_take(l, s, command, timeout_s, quiet, json, stop, halt);
    }
    return local_take(l, s, command, timeout_s, quiet, json, stop);
}

void cli_lock_release(cli_lock *l)
{
    lease_release(l);
    local_release(l);
}

const char *cli_lock_lost_why(const cli_lock *l)
{
    return l->lost && l->lease ? l->lease->why : "";
}

/* ---- the guard: no operation once a lease is lost ------------------------------------------ */

/*
 * The executor checks its stop flag between steps and rounds; a lease can be lost in between,
 * during a read. So the provider itself is wrapped: every operation and probe first looks at
 * the flag the renewing thread raises, and one that would start after the loss is refused.
 */
typedef struct guard {
    kvr_provider base;
    kvr_provider *inner;
} guard;

static int guard_read(kvr_provider *p, kvr_live **out, const kvr_scope *scope, kvr_error *err)
{
    kvr_provider *in = ((guard *)p)->inner;
    return in->read(in, out, scope, err);
}

static int guard_apply(kvr_provider *p, const kvr_op *op, kvr_error *err)
{
    kvr_provider *in = ((guard *)p)->inner;
    if (any_lease_lost)
        return kvr_error_set(err, KVR_ECONFLICT,
                             "the estate's lease was lost: operation %s was not started",
                             kvr_op_kind_name(op->kind));
    return in->apply(in, op, err);
}

static int guard_probe(kvr_provider *p, const kvr_probe *probe, kvr_error *err)
{
    kvr_provider *in = ((guard *)p)->inner;
    if (any_lease_lost)
        return kvr_error_set(err, KVR_ECONFLICT, "the estate's lease was lost: probe not started");
    return in->probe(in, probe, err);
}

static int guard_read_back(kvr_provider *p, const char *const *vaults, const char *const *names,
                           size_t n, kvr_error *err)
{
    kvr_provider *in = ((guard *)p)->inner;
    return in->read_back(in, vaults, names, n, err);
}

static void guard_free(kvr_provider *p)
{
    kvr_provider_free(((guard *)p)->inner);
    free(p);
}

int cli_lock_guard(kvr_provider **p, kvr_error *err)
{
    guard *g;
    if (!*p)
        return 0;
    if (!(g = calloc(1, sizeof(*g))))
        return kvr_error_oom(err);
    g->base = **p; /* version and name as the inner one's */
    g->base.read = guard_read;
    g->base.apply = guard_apply;
    g->base.probe = guard_probe;
    g->base.read_back = (*p)->read_back ? guard_read_back : NULL;
    g->base.free = guard_free;
    g->inner = *p;
    *p = &g->base;
    return 0;
}

int cli_lock_poll_seconds(void)
{
    return env_int("KVR_LOCK_POLL_SECONDS", 2, 1, 60);
}
