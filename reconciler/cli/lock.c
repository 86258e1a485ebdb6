/*
 * The estate lock: one `apply` (or one watch run) at a time per estate on this machine.
 *
 * Why a lock at all, when every run re-reads the estate? Some creations cannot be made
 * idempotent with what Azure offers: a client secret is minted by addPassword (each call a new
 * one), a key version by create (each call a new one), a profile by POST. Two runs that both
 * find them missing both make them; the next run cleans up the extras, but in between the
 * consuming service may have been given a credential that is about to be removed. So runs that
 * change the estate take turns.
 *
 * What it is: flock(2) on /run/lock/kvreconcile-<hash>.lock (KVR_LOCK_DIR overrides the
 * directory; /tmp when /run/lock is missing), where the hash names the estate by its cloud's ARM
 * endpoint and subscription. The kernel drops the lock when the process dies, so a crash or
 * kill -9 never leaves a stale lock. The file says who holds it (pid, host, command, since when)
 * so that the one who waits can be told; it holds nothing secret. It reaches only as far as
 * this machine: runs from several machines (CI runners) need the pipeline's own serialisation,
 * as Terraform's documentation asks for the same reason (README: "Running more than one").
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 100

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

int cli_lock_take(cli_lock *l, const cli_session *s, const char *command, int64_t timeout_s,
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
    cli_lock_release(l);
    return -1;
}

void cli_lock_release(cli_lock *l)
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
