/*
 * Reading credential files (a certificate with its private key, a federated token). These are as
 * good as a password, so a file that other users can read is refused before it is used, the way
 * ssh refuses a private key with loose permissions: the check is made on the open descriptor
 * (no window between check and use), and the bytes are wiped when freed.
 */
#include "azinternal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREDFILE_MAX (1024 * 1024)

int kvr_auth_read_private_file(char **out, size_t *out_len, const char *path, kvr_error *err)
{
    struct stat st;
    int fd = -1, rc = 0;

    *out = NULL;
    *out_len = 0;
    /* Non-blocking open and fstat on the descriptor: a FIFO or a device here is refused at
       once rather than waited on. Symbolic links are followed: Kubernetes mounts a projected
       token and a secret volume as links into a "..data" directory. */
    if ((rc = kvr_file_open(&fd, &st, path, CREDFILE_MAX, 0, err)) < 0) {
        if (rc == KVR_ETOOBIG)
            kvr_error_set(err, rc, "'%s' is too large (over 1 MiB)", path);
        else if (rc == KVR_ENOTFOUND && err)
            err->code = rc = KVR_EIO;
        else if (rc == KVR_ENOTFOUND)
            rc = KVR_EIO;
        goto done;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        rc = kvr_error_set(err, KVR_EINSECURE,
                           "'%s' is readable by other users (mode %04o); run chmod 600", path,
                           (unsigned)(st.st_mode & 07777));
        goto done;
    }
    if ((rc = kvr_file_read_fd(out, out_len, fd, path, (size_t)st.st_size, CREDFILE_MAX, err)) <
        0) {
        if (rc == KVR_ETOOBIG)
            kvr_error_set(err, rc, "'%s' is too large (over 1 MiB)", path);
        goto done;
    }
done:
    if (fd >= 0)
        close(fd);
    return rc;
}
