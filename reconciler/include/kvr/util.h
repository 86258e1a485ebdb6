/*
 * libkvr utilities: error codes and records, positioned diagnostics, durations,
 * growable arrays and a few string helpers. Depends on libc only.
 */
#ifndef KVR_UTIL_H
#define KVR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Error codes. Append-only and explicitly numbered: scripts and logs may carry the numbers.
 * Fallible functions return 0 or one of these (negative).
 */
typedef enum kvr_code {
    KVR_OK = 0,
    KVR_ENOMEM = -1,    /* out of memory */
    KVR_EINVAL = -2,    /* invalid argument from the caller */
    KVR_EIO = -3,       /* file or system I/O failed */
    KVR_ECONFIG = -4,   /* the desired state is invalid (details in diagnostics) */
    KVR_ENOTFOUND = -5, /* a named thing does not exist */
    KVR_ERANGE = -6,    /* a value is out of its allowed range */
    KVR_ETOOBIG = -7,   /* an input exceeds a hard size limit */
    KVR_ESTALE = -8,    /* a saved plan no longer matches the desired or the live state */
    /* the network edge, numbered from -100 down */
    KVR_EHTTP = -100,      /* transport failure (DNS, connect, TLS, reset) after retries */
    KVR_ETIMEOUT = -101,   /* a request or the retry budget timed out */
    KVR_EAZURE = -102,     /* the service answered with an error status (see the message) */
    KVR_EAUTH = -103,      /* no usable credential, or the token endpoint refused it (401) */
    KVR_EFORBIDDEN = -104, /* the caller is authenticated but not allowed (403) */
    KVR_ECONFLICT = -105,  /* 409: the object exists, is soft-deleted, or is busy */
    KVR_ETHROTTLED = -106, /* still 429 when the retry budget ran out */
    KVR_EINSECURE = -107,  /* refused for safety: plain http with a token, foreign host, mode */
    KVR_EPROTO = -108,     /* a response did not have the expected shape */
} kvr_code;

/* A short, static description of an error code ("out of memory"). Never NULL. */
const char *kvr_strerror(int code);

#define KVR_ERROR_MSG_MAX 512

/*
 * The last error of an operation: filled by the callee, owned by the caller (usually on the stack).
 * `message` is lowercase without a trailing period and never holds a secret value.
 */
typedef struct kvr_error {
    int code;
    char message[KVR_ERROR_MSG_MAX];
} kvr_error;

/* Sets err (if not NULL) and returns code, so callers can `return kvr_error_set(...)`. */
int kvr_error_set(kvr_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets err (may be NULL) to KVR_ENOMEM, "out of memory", and returns KVR_ENOMEM: the one way
   every module reports it. */
int kvr_error_oom(kvr_error *err);

/* ---- positioned diagnostics -------------------------------------------------------------- */

/*
 * One problem found in the user's input. line/col are 1-based; line 0 means "the whole file".
 * `file` is the path as the user gave it (or as found under a directory they gave).
 */
typedef struct kvr_diag {
    char *file;
    unsigned line;
    unsigned col;
    char *msg;
} kvr_diag;

/* All problems found so far. Zero-initialise (or kvr_diags_init) before use. */
typedef struct kvr_diags {
    kvr_diag *items;
    size_t len;
    size_t cap;
    size_t dropped; /* diagnostics not kept because `limit` was reached */
    size_t limit;   /* 0 means the default (1000) */
    bool oom;       /* a diagnostic could not be recorded for lack of memory */
} kvr_diags;

void kvr_diags_init(kvr_diags *d);

/* Records an error. Never fails visibly: on allocation failure it sets d->oom. */
void kvr_diags_add(kvr_diags *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void kvr_diags_addv(kvr_diags *d, const char *file, unsigned line, unsigned col, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));

/* Sorts by file, line, column (stable for equal positions). */
void kvr_diags_sort(kvr_diags *d);

/* Prints "FILE:LINE:COL: error: MSG" lines, and a count line for dropped ones. */
void kvr_diags_print(const kvr_diags *d, FILE *out);

void kvr_diags_release(kvr_diags *d);

/* ---- durations --------------------------------------------------------------------------- */

/*
 * Parses "90d", "12h", "1d12h", "30m", "45s", "2w", "2y" or ISO 8601 "P90D", "PT12H", "P1Y6M".
 * A year is 365 days and a month 30 days. The result must be positive and fit in int64 seconds.
 * Returns 0, or KVR_EINVAL with a message in err.
 */
int kvr_duration_parse(int64_t *out, const char *text, kvr_error *err);

/* Formats seconds as ISO 8601 ("P90D", "PT12H", "P1DT2H"): what Azure's policies expect. */
void kvr_duration_iso(char *buf, size_t size, int64_t seconds);

/* The UTC day of Unix seconds t as "YYYY-MM-DD" (size >= 11): a credential generation's name
   under credentialRotation. kvr_is_day_name: is s exactly such a name? */
void kvr_day_name(char *buf, size_t size, int64_t t);
bool kvr_is_day_name(const char *s);
/* Is name "<prefix>-YYYY-MM-DD" (the prefix compared without case, as Key Vault names are)? A
   credentialRotation generation's stored copy. */
bool kvr_is_day_copy(const char *name, const char *prefix);

/* Formats Unix seconds as ISO 8601 UTC ("2026-11-23T10:00:00Z"); needs size >= KVR_TIME_ISO_MAX. */
#define KVR_TIME_ISO_MAX 48
void kvr_time_iso(char *buf, size_t size, int64_t t);

/* Seconds on the monotonic clock: for measuring intervals and deadlines, never a date. */
double kvr_mono_s(void);
/* Sleeps `seconds` (none when <= 0); a signal does not cut it short. */
void kvr_sleep_s(double seconds);

/* ---- strings ----------------------------------------------------------------------------- */

/* Edit distance (Damerau-Levenshtein, optimal string alignment), ASCII case-insensitive. */
size_t kvr_str_distance(const char *a, const char *b);

/*
 * The candidate closest to `word`, if close enough to be a plausible typo; else NULL.
 * `candidates` is a NULL-terminated array (borrowed).
 */
const char *kvr_str_suggest(const char *word, const char *const *candidates);

/* A new string formatted like printf; the caller frees it. NULL when out of memory. */
char *kvr_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *kvr_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

bool kvr_str_ieq(const char *a, const char *b);
bool kvr_str_has_suffix(const char *s, const char *suffix);
/*
 * Puts an Azure location into the form ARM compares by, in place: lower case, spaces removed
 * ("North Central US" -> "northcentralus"). Azure answers with either form (the deleted-vault
 * list can carry the display name). Returns s.
 */
char *kvr_location_canon(char *s);

/*
 * Copies text that came from elsewhere (a server's error message) so that it is safe to print
 * on a terminal: C0 and C1 control characters and DEL become spaces, the bidirectional
 * embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) are dropped, invalid UTF-8
 * bytes become '?', and the result is cut at a character boundary to fit `size` (NUL included).
 * Returns the length written.
 */
size_t kvr_str_clean(char *dst, size_t size, const char *src);

/* Overwrites memory so that the compiler cannot drop the writes (for secrets). */
void kvr_memwipe(void *p, size_t n);

/* Grows *items (elements of `elem` bytes) so that it holds at least `need`. 0 or KVR_ENOMEM. */
int kvr_grow(void **items, size_t *cap, size_t need, size_t elem);

/* ---- files ------------------------------------------------------------------------------- */

struct stat;

/* kvr_file_open flags. */
#define KVR_FILE_NOFOLLOW 1u /* refuse a final symbolic link (O_NOFOLLOW) */

/*
 * Opens a file the user named, for reading: O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY (and
 * O_NOFOLLOW with KVR_FILE_NOFOLLOW), then checks on the descriptor that it is a regular file of
 * at most `max` bytes (0: no limit). A FIFO, socket, directory or device is refused at once
 * ("'PATH' is a FIFO, not a regular file"), never waited on. *out is the descriptor (the
 * caller closes it) and *st (may be NULL) its fstat. KVR_ENOTFOUND, KVR_EIO or KVR_ETOOBIG
 * ("'PATH' is too large (N bytes; the limit is M)") with a message naming the path.
 */
int kvr_file_open(int *out, struct stat *st, const char *path, size_t max, unsigned flags,
                  kvr_error *err);

/*
 * Reads `fd` to its end into a new NUL-terminated buffer (*out, the caller's; *out_len without
 * the NUL). `hint` is the expected size (from fstat). More than `max` bytes is KVR_ETOOBIG
 * ("'PATH' is too large"). Every buffer given up on the way is wiped first, so the contents may
 * be a secret (the caller wipes *out).
 */
int kvr_file_read_fd(char **out, size_t *out_len, int fd, const char *path, size_t hint,
                     size_t max, kvr_error *err);

/* kvr_file_open and kvr_file_read_fd together. */
int kvr_file_read(char **out, size_t *out_len, const char *path, size_t max, unsigned flags,
                  kvr_error *err);

/*
 * Replaces `path` with `data`: writes a new file created by mkstemp (O_CREAT|O_EXCL, an
 * unpredictable name) in the same directory, with `mode`, fsyncs it and renames it over
 * `path`. A symbolic link planted at any predictable name is never followed. 0 or KVR_EIO /
 * KVR_ENOMEM with a message; on failure nothing is left behind.
 */
int kvr_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          kvr_error *err);

/* ---- string pool ------------------------------------------------------------------------- */

/*
 * Strings that live and die together, packed into large blocks: one allocation per block instead
 * of one per string. A 200-vault estate's live model holds about 300,000 strings; malloc spends a
 * header and some rounding on each, and response buffers freed between them fragment the heap.
 * Zero-initialise; kvr_strpool_release frees every string at once (never free() one of them).
 */
typedef struct kvr_strpool {
    struct kvr_strpool_block *head; /* the block being filled; older ones follow */
    size_t used, cap;               /* bytes of head */
} kvr_strpool;

/* A copy of `s` in the pool; NULL if s is NULL or memory ran out. */
char *kvr_strpool_dup(kvr_strpool *p, const char *s);
/* A copy of the first n bytes of s, NUL-terminated; NULL if memory ran out. */
char *kvr_strpool_ndup(kvr_strpool *p, const char *s, size_t n);
void kvr_strpool_release(kvr_strpool *p);

/* ---- hash index -------------------------------------------------------------------------- */

/*
 * Lookups by name in O(1): an open-addressing table from a caller-computed hash to the ids
 * (array positions) of the elements it was computed from. It holds no keys: a lookup visits
 * the ids stored under a hash, and the caller compares each with its own element. Several ids
 * may share a hash (equal keys, or collisions); kvr_index_first returns the smallest id that
 * matches, so a lookup finds the first element in array order, whatever the table's layout.
 * Zero-initialise (or kvr_index_init); kvr_index_release frees the table.
 */
typedef struct kvr_index_slot {
    uint32_t tag; /* 32 bits of the mixed hash: the home slot, and a filter before the caller's
                     compare */
    uint32_t id1; /* id + 1; 0: empty */
} kvr_index_slot;

typedef struct kvr_index {
    kvr_index_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t len;
} kvr_index;

typedef struct kvr_index_iter {
    uint32_t tag;
    size_t pos;
    size_t steps;
} kvr_index_iter;

#define KVR_INDEX_NONE SIZE_MAX
#define KVR_HASH_SEED 0xcbf29ce484222325ull

/* Extends hash `h` (start with KVR_HASH_SEED) by string `s` (NULL allowed), folding ASCII case
   as kvr_str_ieq does: strings that kvr_str_ieq calls equal hash equal. */
uint64_t kvr_hash_ci(uint64_t h, const char *s);
/* A bit mixer (for bucket indices; also usable to combine integers into a hash). */
uint64_t kvr_hash_mix(uint64_t h);

void kvr_index_init(kvr_index *ix);
void kvr_index_release(kvr_index *ix);
/* Makes room for `n` ids without rehashing. 0 or KVR_ENOMEM. */
int kvr_index_reserve(kvr_index *ix, size_t n);
/* Adds `id` (below UINT32_MAX) under `hash`; duplicates are kept. 0, KVR_ENOMEM or KVR_EINVAL. */
int kvr_index_put(kvr_index *ix, uint64_t hash, size_t id);
/* Iterates the ids stored under `hash` (a superset of the matches: the caller compares). */
void kvr_index_find(const kvr_index *ix, uint64_t hash, kvr_index_iter *it);
bool kvr_index_next(const kvr_index *ix, kvr_index_iter *it, size_t *id);
/* The smallest id under `hash` for which match(ctx, id) is true, or KVR_INDEX_NONE. */
typedef bool (*kvr_index_match)(const void *ctx, size_t id);
size_t kvr_index_first(const kvr_index *ix, uint64_t hash, kvr_index_match match, const void *ctx);

/*
 * One copy of each distinct string (compared exactly, case included), in a pool: for the names
 * that thousands of objects repeat (a vault's name on each of its keys and secrets). The copies
 * live until kvr_strset_release; never free() or modify one. Zero-initialise.
 */
typedef struct kvr_strset {
    kvr_strpool pool;
    char **items; /* the copies, in the order they were made */
    size_t len, cap;
    kvr_index ix; /* items by kvr_hash_ci */
} kvr_strset;

/* The set's copy of `s` (made on first sight); NULL if s is NULL or memory ran out. */
char *kvr_strset_get(kvr_strset *set, const char *s);
void kvr_strset_release(kvr_strset *set);

#endif
