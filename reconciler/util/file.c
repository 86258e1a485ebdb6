/*
 * Reading the files a user names (desired state, secret files, credentials, CA bundles) and
 * writing the few files the tool leaves behind, safely. A path can name a FIFO, a device or a
 * symbolic link planted by someone else: a reader opens it non-blocking (a FIFO with no writer
 * would otherwise hang the open, and a device the read), checks on the open descriptor that it
 * is a regular file of bounded size, and only then reads it. A writer creates a fresh file next
 * to the target with O_EXCL|O_NOFOLLOW under an unpredictable name and renames it into place.
 * One copy of this logic, used by every caller; libc only.
 */
#include "kvr/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return NULL;
}

int kvr_file_open(int *out, struct stat *st, const char *path, size_t max, unsigned flags,
                  kvr_error *err)
{
    struct stat local;
    int fd, oflags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    int rc = 0;

    *out = -1;
    if (!st)
        st = &local;
    if (flags & KVR_FILE_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    fd = open(path, oflags);
    if (fd < 0) {
        if (errno == ELOOP && (flags & KVR_FILE_NOFOLLOW))
            return kvr_error_set(err, KVR_EIO, "'%s' is a symbolic link", path);
        return kvr_error_set(err, errno == ENOENT ? KVR_ENOTFOUND : KVR_EIO, "cannot open '%s': %s",
                             path, strerror(errno));
    }
    if (fstat(fd, st) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot stat '%s': %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st->st_mode)) {
        const char *kind = kind_of(st->st_mode);
        if (kind)
            rc = kvr_error_set(err, KVR_EIO, "'%s' is %s, not a regular file", path, kind);
        else
            rc = kvr_error_set(err, KVR_EIO, "'%s' is not a regular file", path);
        goto done;
    }
    if (max && (uint64_t)st->st_size > (uint64_t)max) {
        rc = kvr_error_set(err, KVR_ETOOBIG, "'%s' is too large (%lld bytes; the limit is %zu)",
                           path, (long long)st->st_size, max);
        goto done;
    }
    /* A regular file never blocks; clear the flag so reads behave as usual. */
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *out = fd;
    fd = -1;
done:
    if (fd >= 0)
        close(fd);
    return rc;
}

int kvr_file_read_fd(char **out, size_t *out_len, int fd, const char *path, size_t hint, size_t max,
                     kvr_error *err)
{
    char *buf = NULL;
    size_t len = 0, cap;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    /* The size fstat gave plus one byte (to see growth at once), at least a small block. */
    cap = (hint < max ? hint : max) + 1;
    if (cap < 256)
        cap = 256;
    if (!(buf = malloc(cap)))
        return kvr_error_oom(err);
    for (;;) {
        ssize_t r;
        if (len + 1 >= cap) {
            /* Grow by copying, so that the old block can be wiped: it may hold a secret. */
            size_t ncap = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *bigger;
            if (ncap <= cap) {
                rc = kvr_error_set(err, KVR_ETOOBIG, "'%s' is too large (the limit is %zu bytes)",
                                   path, max);
                goto done;
            }
            if (!(bigger = malloc(ncap))) {
                rc = kvr_error_oom(err);
                goto done;
            }
            memcpy(bigger, buf, len);
            kvr_memwipe(buf, cap);
            free(buf);
            buf = bigger;
            cap = ncap;
        }
        r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = kvr_error_set(err, KVR_EIO, "cannot read '%s': %s", path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            rc = kvr_error_set(err, KVR_ETOOBIG, "'%s' is too large (the limit is %zu bytes)", path,
                               max);
            goto done;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
done:
    if (buf) {
        kvr_memwipe(buf, cap);
        free(buf);
    }
    return rc;
}

int kvr_file_read(char **out, size_t *out_len, const char *path, size_t max, unsigned flags,
                  kvr_error *err)
{
    struct stat st;
    int fd = -1, rc;

    *out = NULL;
    *out_len = 0;
    if ((rc = kvr_file_open(&fd, &st, path, max, flags, err)) < 0)
        return rc;
    rc = kvr_file_read_fd(out, out_len, fd, path, (size_t)st.st_size, max, err);
    close(fd);
    return rc;
}

int kvr_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          kvr_error *err)
{
    char *tmp = NULL;
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *p = data;
    int fd = -1, rc = 0;

    /* The temporary file lives in the target's directory (rename is atomic there only) and
       has a name mkstemp makes up, created with O_EXCL: a planted link is never followed. */
    if (!(tmp = malloc(dirlen + sizeof(".kvr-XXXXXX"))))
        return kvr_error_oom(err);
    memcpy(tmp, path, dirlen);
    memcpy(tmp + dirlen, ".kvr-XXXXXX", sizeof(".kvr-XXXXXX"));
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot create a temporary file next to '%s': %s", path,
                           strerror(errno));
        free(tmp);
        return rc;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (fchmod(fd, (mode_t)mode) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot set the mode of '%s': %s", tmp, strerror(errno));
        goto done;
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = kvr_error_set(err, KVR_EIO, "cannot write '%s': %s", tmp, strerror(errno));
            goto done;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = kvr_error_set(err, KVR_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot rename '%s' to '%s': %s", tmp, path,
                           strerror(errno));
        goto done;
    }
done:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}
