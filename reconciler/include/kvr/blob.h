/*
 * Azure Storage blob leases (blob.c): the few Blob service calls the `azureblob` lock needs, on
 * the same HTTP engine and credential chain as every other call (an Entra token for
 * https://storage.azure.com). A lease is Azure's mutual exclusion on one blob: while it is
 * held, only the holder of the lease id may renew, change or release it, and a holder that
 * dies loses it when its duration runs out. Terraform's azurerm backend locks its state the same
 * way.
 *
 * Threading: as kvr/azure.h; a thread that renews a lease needs its own kvr_http and kvr_auth.
 * Nothing here is secret: lease ids are not credentials (the token is), and metadata holds only
 * who holds the lease.
 */
#ifndef KVR_BLOB_H
#define KVR_BLOB_H

#include "kvr/azure.h"

/* The token scope of the Storage data plane. */
#define KVR_STORAGE_SCOPE "https://storage.azure.com/.default"
/* The x-ms-version sent: the service version current Azure Storage SDKs send (2025-11-05). */
#define KVR_STORAGE_VERSION "2025-11-05"
/* Lease blob default name, and the length of a lease id (a GUID). */
#define KVR_BLOB_DEFAULT_NAME "kvreconcile.lock"
#define KVR_LEASE_ID_LEN 36

/* One blob: its endpoint ("https://ACCOUNT.blob.core.windows.net", or path style
   "https://127.0.0.1:10000/ACCOUNT" for an emulator), container and name. Borrowed strings. */
typedef struct kvr_blob_ref {
    const char *endpoint;
    const char *container;
    const char *blob;
} kvr_blob_ref;

/* Outcome of a lease call that the service answered; transport failures are error codes. */
typedef enum kvr_lease_status {
    KVR_LEASE_OK = 0,
    KVR_LEASE_HELD = 1, /* acquire: another id holds it (409 LeaseAlreadyPresent) */
    KVR_LEASE_LOST = 2, /* renew/release/metadata: the lease is no longer ours (409, 412) */
} kvr_lease_status;

/* Writes a fresh random lease id (a version-4 GUID) into buf (KVR_LEASE_ID_LEN + 1 bytes). */
int kvr_lease_id_new(char *buf, size_t size, kvr_error *err);

/*
 * Acquires a lease of `duration_s` seconds (15-60, or -1: infinite) with the id `lease_id`;
 * creates the blob (empty, BlockBlob, only if missing) first when it does not exist. *out is
 * KVR_LEASE_OK or KVR_LEASE_HELD. Errors: KVR_ENOTFOUND for a missing container (the message
 * says so), KVR_EFORBIDDEN (the message names the role needed), others as kvr_http_error.
 */
int kvr_blob_lease_acquire(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                           const char *lease_id, int duration_s, kvr_error *err);

/* Renews the lease `lease_id`: *out KVR_LEASE_OK, or KVR_LEASE_LOST (broken, expired and taken,
   or the blob is gone; err says which). A transport error returns its code: not confirmed. */
int kvr_blob_lease_renew(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                         const char *lease_id, kvr_error *err);

/* Releases the lease: 0 (also when it was already lost: *out says), else an error code. */
int kvr_blob_lease_release(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                           const char *lease_id, kvr_error *err);

/* Breaks whatever lease the blob has, with a break period of `period_s` seconds (0: at once).
   For operators and tests; kvreconcile itself never breaks a lease. */
int kvr_blob_lease_break(kvr_auth *a, const kvr_blob_ref *b, int period_s, kvr_error *err);

/*
 * Replaces the blob's metadata with the NULL-terminated name/value pairs (names: letters, digits
 * and '_'; values: printable ASCII), under the lease `lease_id` (NULL: none). *out as for renew.
 */
int kvr_blob_set_metadata(kvr_lease_status *out, kvr_auth *a, const kvr_blob_ref *b,
                          const char *lease_id, const char *const *pairs, kvr_error *err);

/* What a waiter may know about a lease blob (from the container listing). */
typedef struct kvr_blob_info {
    bool exists;
    char lease_state[16]; /* available, leased, expired, breaking, broken */
    char holder[320];     /* from the metadata: "pid P on HOST, kvreconcile CMD, since T", or "" */
} kvr_blob_info;

/* Reads the blob's lease state and holder metadata. 0 (exists false when there is no blob). */
int kvr_blob_info_get(kvr_blob_info *out, kvr_auth *a, const kvr_blob_ref *b, kvr_error *err);

/* ---- pure helpers (unit-tested) ----------------------------------------------------------- */

/* The <Code> of a Storage XML error body into out ("" when none). */
void kvr_blob_error_code(char *out, size_t size, const char *body, size_t len);

/* Parses a List Blobs response for the blob named exactly `name`. Never fails. */
void kvr_blob_info_parse(kvr_blob_info *out, const char *xml, size_t len, const char *name);

#endif
