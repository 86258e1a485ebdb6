/*
 * Reading credential files (a certificate with its private key, a federated token). These are as
 * good as a password, so a file that other users can read is refused before it is used, the way
 * ssh refuses a private key with loose permissions: the check is made on the open descriptor
 * (no window between check and use), and the bytes are wiped when freed.
 */
#include "azinternal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define CREDFILE_MAX (1024 * 1024)

int kvr_auth_read_private_file(char **out, size_t *out_len, const char *path, kvr_error *err)
{
    struct stat st;
    kvr_sbuf b = {0};
    char chunk[4096];
    int fd = -1, rc = 0;

    *out = NULL;
    *out_len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot open '%s': %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = kvr_error_set(err, KVR_EIO, "cannot stat '%s': %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = kvr_error_set(err, KVR_EIO, "'%s' is not a regular file", path);
        goto done;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        rc = kvr_error_set(err, KVR_EINSECURE,
                           "'%s' is readable by other users (mode %04o); run chmod 600", path,
                           (unsigned)(st.st_mode & 07777));
        goto done;
    }
    b.max = CREDFILE_MAX;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = kvr_error_set(err, KVR_EIO, "cannot read '%s': %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        if ((rc = kvr_sbuf_add(&b, chunk, (size_t)n)) < 0) {
            if (rc == KVR_ETOOBIG)
                kvr_error_set(err, rc, "'%s' is larger than 1 MiB", path);
            else
                kvr_error_set(err, rc, "out of memory");
            goto done;
        }
    }
    *out_len = b.len;
    if ((rc = kvr_sbuf_take(out, &b)) < 0)
        kvr_error_set(err, rc, "out of memory");
done:
    OPENSSL_cleanse(chunk, sizeof(chunk));
    kvr_sbuf_release(&b);
    if (fd >= 0)
        close(fd);
    return rc;
}
