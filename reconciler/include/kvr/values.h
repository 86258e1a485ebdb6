/*
 * Secret values: reading them from their declared source (environment, file), generating them,
 * and the keyed marker that lets a plan say whether a value changes without revealing it.
 *
 * A kvr_value's bytes are wiped before they are freed. Nothing here prints a value; error
 * messages name the source (variable, file), never the content.
 */
#ifndef KVR_VALUES_H
#define KVR_VALUES_H

#include "kvr/model.h"
#include "kvr/op.h"

#include <stddef.h>

/* Key Vault's limit for a secret value (25 KB). */
#define KVR_VALUE_MAX 25600

typedef struct kvr_value {
    unsigned char *data;
    size_t len;
} kvr_value;

/* Wipes and frees the bytes; the struct can be reused. */
void kvr_value_release(kvr_value *v);

/*
 * Reads a FROM_ENV or FROM_FILE secret's value. A file must be a regular file that no other
 * user can read (mode & 077 == 0), at most KVR_VALUE_MAX bytes; its bytes are taken as they are.
 * Errors: KVR_ENOTFOUND (variable unset, file missing), KVR_EINVAL (empty value, wrong source
 * kind), KVR_ETOOBIG, KVR_EIO, and KVR_EINVAL for a file others can read.
 */
int kvr_value_read(kvr_value *out, const kvr_secret *s, kvr_error *err);

/*
 * kvr_value_read for an operation's value source: KVR_OP_VALUE_ENV or KVR_OP_VALUE_FILE, with the
 * same checks and messages; `what` names the secret in them ("the value of secret 'WHAT'").
 * KVR_EINVAL for another source kind.
 */
int kvr_value_read_source(kvr_value *out, const kvr_op_value *src, const char *what,
                          kvr_error *err);

/* Generates `length` characters from `charset` with a CSPRNG, without modulo bias. */
int kvr_value_generate(kvr_value *out, int length, kvr_charset charset, kvr_error *err);

/*
 * Refuses a credential or secret file that other users can read, naming the mode and the fix.
 * `fd` is an open descriptor of `path` (checked with fstat, so the check and the read see the
 * same file). 0 or KVR_EINVAL.
 */
int kvr_file_check_private(int fd, const char *path, kvr_error *err);

/* The marker key: random for each run, so markers cannot be compared across runs or tested
   against guesses offline. */
typedef struct kvr_marker_key {
    unsigned char k[32];
} kvr_marker_key;

int kvr_marker_key_init(kvr_marker_key *key, kvr_error *err);
void kvr_marker_key_wipe(kvr_marker_key *key);

#define KVR_MARKER_LEN 12

/* HMAC-SHA256(key, value), first KVR_MARKER_LEN hex characters, NUL-terminated. */
void kvr_marker(char out[KVR_MARKER_LEN + 1], const kvr_marker_key *key, const unsigned char *data,
                size_t len);

#endif
