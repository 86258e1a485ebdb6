/*
 * Secret values at the edge of the executor. Values come from the environment or a file (never
 * from YAML), or are generated once; the plan only ever sees a keyed marker of them. Buffers
 * that held a value are wiped before they are freed, and files that others can read are refused,
 * as ssh does for private keys.
 */
#include "kvr/values.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

void kvr_value_release(kvr_value *v)
{
    if (!v)
        return;
    if (v->data) {
        OPENSSL_cleanse(v->data, v->len);
        free(v->data);
    }
    v->data = NULL;
    v->len = 0;
}

int kvr_file_check_private(int fd, const char *path, kvr_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return kvr_error_set(err, KVR_EIO, "cannot stat '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kvr_error_set(err, KVR_EINVAL, "'%s' is not a regular file", path);
    if (st.st_mode & 077)
        return kvr_error_set(err, KVR_EINVAL,
                             "'%s' is readable by other users (mode %04o); run chmod 600 '%s'",
                             path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

static int read_file(kvr_value *out, const char *path, kvr_error *err)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = -1, rc = 0;

    /* The model resolved the path and checked it inside the repository (or an allowed
       directory): a symbolic link in its place now is refused, and so is anything that is
       not a regular file (a FIFO would block the read forever). */
    if ((rc = kvr_file_open(&fd, &st, path, 0, KVR_FILE_NOFOLLOW, err)) < 0) {
        if (rc == KVR_ENOTFOUND || rc == KVR_EIO)
            kvr_error_set(err, rc, "secret file: %s", err->message);
        return rc;
    }
    if ((rc = kvr_file_check_private(fd, path, err)) < 0)
        goto done;
    if ((size_t)st.st_size > KVR_VALUE_MAX) {
        rc = KVR_ETOOBIG;
        goto done;
    }
    rc = kvr_file_read_fd(&buf, &len, fd, path, (size_t)st.st_size, KVR_VALUE_MAX, err);
    if (rc < 0)
        goto done;
    if (len == 0) {
        rc = kvr_error_set(err, KVR_EINVAL, "secret file '%s' is empty", path);
        goto done;
    }
    out->data = (unsigned char *)buf;
    out->len = len;
    buf = NULL;
done:
    if (rc == KVR_ETOOBIG)
        kvr_error_set(err, KVR_ETOOBIG,
                      "secret file '%s' is too large: over Key Vault's limit for a secret value "
                      "(%d bytes)",
                      path, KVR_VALUE_MAX);
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    close(fd);
    return rc;
}

/* The value of environment variable `env`, the value of secret `what`. */
static int read_env(kvr_value *out, const char *env, const char *what, kvr_error *err)
{
    const char *v = getenv(env);
    size_t n;

    if (!v)
        return kvr_error_set(err, KVR_ENOTFOUND,
                             "environment variable '%s' (the value of secret '%s') is not set", env,
                             what);
    n = strlen(v);
    if (n == 0)
        return kvr_error_set(err, KVR_EINVAL,
                             "environment variable '%s' (the value of secret '%s') is empty", env,
                             what);
    if (n > KVR_VALUE_MAX)
        return kvr_error_set(err, KVR_ETOOBIG,
                             "environment variable '%s' is longer than Key Vault's limit for a "
                             "secret value (%d bytes)",
                             env, KVR_VALUE_MAX);
    out->data = malloc(n);
    if (!out->data)
        return kvr_error_oom(err);
    memcpy(out->data, v, n);
    out->len = n;
    return 0;
}

int kvr_value_read(kvr_value *out, const kvr_secret *s, kvr_error *err)
{
    out->data = NULL;
    out->len = 0;
    if (s->source == KVR_SECRET_FROM_FILE)
        return read_file(out, s->file_path, err);
    if (s->source != KVR_SECRET_FROM_ENV)
        return kvr_error_set(err, KVR_EINVAL, "secret '%s' is not read from a source", s->name);
    return read_env(out, s->env_name, s->name, err);
}

int kvr_value_read_source(kvr_value *out, const kvr_op_value *src, const char *what, kvr_error *err)
{
    out->data = NULL;
    out->len = 0;
    if (src->kind == KVR_OP_VALUE_FILE && src->path)
        return read_file(out, src->path, err);
    if (src->kind != KVR_OP_VALUE_ENV || !src->env)
        return kvr_error_set(err, KVR_EINVAL, "secret '%s' is not read from a source", what);
    return read_env(out, src->env, what, err);
}

static const char *charset_chars(kvr_charset cs)
{
    switch (cs) {
    case KVR_CHARSET_ALNUM:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    case KVR_CHARSET_ALNUM_SYMBOLS:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~";
    case KVR_CHARSET_HEX:
        return "0123456789abcdef";
    case KVR_CHARSET_BASE64URL:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    }
    return NULL;
}

int kvr_value_generate(kvr_value *out, int length, kvr_charset charset, kvr_error *err)
{
    const char *chars = charset_chars(charset);
    size_t n, limit;
    unsigned char rnd[64];
    size_t used = sizeof(rnd);
    int i = 0;

    out->data = NULL;
    out->len = 0;
    if (!chars || length < 1 || length > KVR_VALUE_MAX)
        return kvr_error_set(err, KVR_EINVAL, "cannot generate a value of length %d", length);
    n = strlen(chars);
    /* Rejection sampling: accept bytes below the largest multiple of n, so every character is
       equally likely. */
    limit = 256 - (256 % n);
    out->data = malloc((size_t)length);
    if (!out->data)
        return kvr_error_oom(err);
    while (i < length) {
        if (used == sizeof(rnd)) {
            if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
                OPENSSL_cleanse(rnd, sizeof(rnd));
                kvr_value_release(out);
                return kvr_error_set(err, KVR_EIO, "the random number generator failed");
            }
            used = 0;
        }
        if (rnd[used] < limit)
            out->data[i++] = (unsigned char)chars[rnd[used] % n];
        used++;
    }
    OPENSSL_cleanse(rnd, sizeof(rnd));
    out->len = (size_t)length;
    return 0;
}

int kvr_marker_key_init(kvr_marker_key *key, kvr_error *err)
{
    if (RAND_bytes(key->k, sizeof(key->k)) != 1)
        return kvr_error_set(err, KVR_EIO, "the random number generator failed");
    return 0;
}

void kvr_marker_key_wipe(kvr_marker_key *key)
{
    OPENSSL_cleanse(key->k, sizeof(key->k));
}

void kvr_marker(char out[KVR_MARKER_LEN + 1], const kvr_marker_key *key, const unsigned char *data,
                size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key->k, (int)sizeof(key->k), data, len, mac, &maclen))
        maclen = 0;
    for (int i = 0; i < KVR_MARKER_LEN; i++)
        out[i] = (unsigned)i / 2 < maclen ? hex[(mac[i / 2] >> (i % 2 ? 0 : 4)) & 0xF] : '?';
    out[KVR_MARKER_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
}
