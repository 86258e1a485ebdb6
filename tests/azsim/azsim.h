/*
 * azsim.h - internals shared by the modules of azsim, the local Azure simulator.
 *
 * azsim is a program of its own (not part of libkvr), so this header is private to tests/azsim/.
 * All mutable simulator state lives in one azsim_state guarded by one mutex: the HTTP layer takes
 * the lock around each request's handler, so handlers never lock themselves.
 */
#ifndef AZSIM_H
#define AZSIM_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;

enum {
    AZSIM_OK = 0,
    AZSIM_ERR = -1,    /* generic failure; a message was printed to stderr */
    AZSIM_ENOMEM = -2, /* allocation failed */
    AZSIM_EIO = -3,    /* file or socket I/O failed */
    AZSIM_EINVAL = -4, /* bad argument or malformed input */
};

#define AZSIM_GUID_LEN 36
#define AZSIM_VERSION_LEN 32

/* A growable array of owned pointers. */
typedef struct azsim_vec {
    void **items;
    size_t n, cap;
    unsigned long gen; /* moves with every push and remove (a lookup table over it is stale) */
} azsim_vec;

int azsim_vec_push(azsim_vec *v, void *item);
void azsim_vec_remove(azsim_vec *v, size_t i); /* keeps order; does not free the item */

/* ---- directory (Entra) ---- */
typedef struct azsim_password {
    char key_id[AZSIM_GUID_LEN + 1];
    char *secret; /* wiped on free */
    char *display_name;
    char hint[4];
    int64_t start, end; /* Unix seconds */
} azsim_password;

typedef struct azsim_keycred {
    char key_id[AZSIM_GUID_LEN + 1];
    char *display_name;
    char *usage;
    EVP_PKEY *pub;          /* the certificate's public key */
    unsigned char sha1[20]; /* thumbprints of the certificate's DER, for x5t and x5t#S256 */
    unsigned char sha256[32];
    int64_t start, end;
} azsim_keycred;

typedef struct azsim_app {
    char id[AZSIM_GUID_LEN + 1];     /* object id */
    char app_id[AZSIM_GUID_LEN + 1]; /* client id */
    char *display_name;
    char *sign_in_audience;
    char *unique_name;   /* client-provided alternate key, immutable; NULL if none */
    azsim_vec passwords; /* azsim_password* */
    azsim_vec keys;      /* azsim_keycred* (certificate credentials) */
    json_t *tags;        /* array of strings, owned; NULL reads as none */
    int64_t created;
    int64_t deleted; /* deletedDateTime (simulated clock) while in st->deleted_apps; 0 if active */
} azsim_app;

/* Entra keeps a deleted application restorable this long, then deletes it for good */
#define AZSIM_APP_RETENTION (30 * 86400LL)

typedef struct azsim_sp {
    char id[AZSIM_GUID_LEN + 1];
    char app_id[AZSIM_GUID_LEN + 1];
    char *display_name;
    int64_t created; /* simulated time; role assignments see it after --directory-delay */
} azsim_sp;

typedef struct azsim_role_assignment {
    char name[AZSIM_GUID_LEN + 1];
    char *scope;                        /* "/subscriptions/..." without trailing slash */
    char role[AZSIM_GUID_LEN + 1];      /* role definition GUID, lowercase */
    char principal[AZSIM_GUID_LEN + 1]; /* service principal object id */
    char *principal_type;
    char *description;
    int64_t created;
    int64_t effective; /* simulated time from which data-plane checks see it */
} azsim_role_assignment;

/* ---- Key Vault data plane ---- */
typedef struct azsim_kv_version {
    char id[AZSIM_VERSION_LEN + 1];
    int64_t created, updated;
    int enabled;
    int has_nbf, has_exp;
    int64_t nbf, exp;
    int exportable;
    json_t *tags;       /* object, owned */
    char *content_type; /* secrets */
    char *value;        /* secrets, wiped on free */
    /* Keys and certificates hold their private key as PEM text, as the state file has it, or as
     * an EVP_PKEY, or both: parsing 30,000 PEM keys at start took OpenSSL's decoder seconds, so a
     * loaded key is parsed on first use. Read the key only through azsim_kv_version_pkey. */
    char *pem;       /* PKCS#8 PEM, wiped on free; NULL until a generated key is first saved */
    int pem_bad;     /* pem did not parse (once is enough to know) */
    EVP_PKEY *pkey;  /* NULL until first use of a loaded key; owned (may be shared by up_ref) */
    json_t *jwk;     /* keys: the public members of the JWK (n, e or crv, x, y), owned; NULL
                        until first asked for when a state saved without them was loaded */
    char *kty;       /* keys: "RSA", "RSA-HSM", "EC", "EC-HSM" */
    json_t *key_ops; /* keys: array, owned */
    json_t *x5c;     /* certificates: array of base64 DER, leaf first, owned */
} azsim_kv_version;

/* The private key of a key or certificate version, parsed from its PEM on first use and kept;
 * borrowed, NULL when the version holds no key or its PEM does not parse. Call it under the state
 * lock (it fills in ver). In azsim_keyvault.c. */
EVP_PKEY *azsim_kv_version_pkey(azsim_kv_version *ver);

typedef struct azsim_kv_object {
    char *name;
    azsim_vec versions; /* azsim_kv_version*, oldest first; last is the latest */
    int deleted;
    int64_t deleted_date, purge_date;
    json_t *rotation_policy; /* keys: owned, NULL = default policy */
    json_t *cert_policy;     /* certificates: owned, without its "id" */
    int managed;             /* a key or secret owned by the certificate of the same name */
} azsim_kv_object;

/* A Key Vault throttling window: 10 seconds of the simulated clock from `start`, and what each
   kind of operation used in it (key create, other key operations, secret create, everything
   else) */
typedef struct azsim_kv_window {
    int64_t start;
    double used[4];
} azsim_kv_window;

typedef struct azsim_vault {
    char *name;
    char *sub, *rg, *location;
    json_t *props; /* ARM properties as stored (owned) */
    json_t *tags;  /* owned */
    int rbac;
    int soft_delete;
    int purge_protection;
    int retention_days;
    int deleted;
    int64_t created, deleted_date, purge_date;
    int provisioning; /* an async PUT (--arm-async) not finished: provisioningState RegisteringDns */
    int unresolved;   /* created or recovered by that PUT: its data-plane name does not resolve */
    int sweep_dirty;  /* a Key Vault request changed it since the last sweep */
    azsim_vec keys;    /* azsim_kv_object* */
    azsim_vec secrets; /* azsim_kv_object* */
    azsim_vec certs;   /* azsim_kv_object*; each owns a managed key and secret of its name */
    /* throttling: 10-second window of the simulated clock */
    azsim_kv_window window;
} azsim_vault;

typedef struct azsim_rg {
    char *sub, *name, *location;
    json_t *tags;
} azsim_rg;

typedef struct azsim_consumer azsim_consumer; /* azsim_profiles.c */

/* fault injection (--fault-rate); the order is the index into azsim_state.faults */
enum {
    AZSIM_FAULT_500,
    AZSIM_FAULT_503,
    AZSIM_FAULT_429,
    AZSIM_FAULT_RESET,
    AZSIM_FAULT_STALL,
    AZSIM_FAULT_RESET_AFTER_COMMIT,
    AZSIM_FAULT_KINDS
};

/* ARM's subscription token buckets: reads, writes, deletes */
#define AZSIM_ARM_BUCKETS 16
typedef struct azsim_arm_bucket {
    char scope[AZSIM_GUID_LEN + 1]; /* subscription id, or "" for tenant-level calls */
    double tokens[3];
    int64_t last; /* simulated second of the last refill */
} azsim_arm_bucket;

/* Key Vault's subscription-wide limits (reference §10: 5 x each per-vault limit), one 10-second
   window per subscription and region, as the vaults' own windows (azsim_vault) */
#define AZSIM_KV_SUBWINS 16
typedef struct azsim_kv_subwin {
    char sub[AZSIM_GUID_LEN + 1];
    char location[64];
    azsim_kv_window window;
} azsim_kv_subwin;

typedef struct azsim_state {
    pthread_mutex_t lock;
    /* configuration, fixed after startup */
    char *data_dir;
    int port;
    int rbac_delay;
    /* seconds before a new service principal is known to roleAssignments (--directory-delay) */
    int directory_delay;
    int64_t directory_replicated; /* POST /directory/replicate: principals made by then are known */
    /* refuse api-versions newer than azsim_apiversions.c lists (--strict-api-versions) */
    int strict_api_versions;
    int kv_secret_limit; /* POST /throttle: secret writes per vault per 10 s (0: the published 300) */
    /* POST /throttle: "everything else" per subscription and region per 10 s (0: the published
       5 x 4,000) */
    int kv_sub_limit;
    int throttle;
    int lazy_save; /* --durable off: save only on clean shutdown, not per mutation */
    int latency_ms;
    int seeded;
    uint64_t rng;
    char tenant[AZSIM_GUID_LEN + 1];
    char subscription[AZSIM_GUID_LEN + 1];
    EVP_PKEY *sign_key; /* token signing key */
    char sign_kid[64];
    unsigned char backup_key[32]; /* AES-256-GCM key for backup blobs */
    /* mutable state */
    int64_t clock_offset;
    int64_t clock_frozen_at; /* POST /clock/freeze: the real time the clock stopped at (0: runs) */
    azsim_vec apps, sps, assignments, rgs, vaults;
    /* vaults by name (azsim_vault_find), rebuilt when vaults.gen moves: open addressing over
       vault_slots_n slots (a power of two), NULL empty */
    azsim_vault **vault_slots;
    size_t vault_slots_n;
    unsigned long vault_slots_gen;
    /* Graph's deleted items: soft-deleted applications (azsim_app*, deleted set), unknown to every
       lookup of apps (Graph, sign-in) until restored; purged AZSIM_APP_RETENTION after deletion */
    azsim_vec deleted_apps;
    azsim_app *bootstrap;
    json_t *stats; /* op -> count */
    azsim_consumer *consumer; /* the profile service and its data keys */
    long throttled, total;
    /* azsim_kv_sweep (with azsim_graph_sweep) has nothing to do before this time (0: unknown,
       after a mutation) */
    int64_t sweep_due;
    int sweep_dirty; /* some vault is marked sweep_dirty */
    /* bumped by every request that may change the state and by every sweep: what depends only on
       the state (the consuming service's health check) is worked out again only when it moved */
    uint64_t gen;
    /* fault injection: a request's fate is a function of the seed and its arrival number */
    double fault_rate;
    int stall_ms;
    unsigned fault_kinds; /* bit i enables kind i */
    uint64_t fault_seed, fault_n;
    long faults[AZSIM_FAULT_KINDS];
    /* ARM throttling */
    azsim_arm_bucket arm_buckets[AZSIM_ARM_BUCKETS];
    size_t arm_nbuckets;
    azsim_kv_subwin kv_subwins[AZSIM_KV_SUBWINS];
    size_t kv_nsubwins;
    /* ARM long-running operations (--arm-async N): polls a vault PUT stays InProgress; 0: sync */
    int arm_async;
    int arm_async_headers; /* 0: Azure-AsyncOperation + Location, 1: Location only, 2: none (poll
                              the vault), 3: Azure-AsyncOperation on a foreign host (tests) */
    azsim_vec operations; /* azsim_arm.c's operation records (not saved: a restart ends them) */
} azsim_state;

/* ---- azsim_util.c ---- */
int64_t azsim_now(const azsim_state *st);
void azsim_random(azsim_state *st, unsigned char *buf, size_t n);
void azsim_guid(azsim_state *st, char out[AZSIM_GUID_LEN + 1]);
void azsim_hexid(azsim_state *st, char out[AZSIM_VERSION_LEN + 1]);
char *azsim_b64url(const unsigned char *data, size_t len);
int azsim_b64url_decode(unsigned char **out, size_t *out_len, const char *in);
void azsim_iso8601(char out[32], int64_t t);
int azsim_parse_iso8601(int64_t *out, const char *s);
int azsim_parse_duration(int64_t *out, const char *s);
char *azsim_strdup(const char *s);
char *azsim_strndup_bytes(const char *data, size_t n); /* n bytes, not a string, + NUL */
char *azsim_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int azsim_streq_ci(const char *a, const char *b);
int azsim_valid_object_name(const char *s);
char *azsim_form_get(const char *body, size_t len, const char *name);
void azsim_secret_free(char *s);
int azsim_read_file(char **out, size_t *out_len, const char *path);
int azsim_write_file(const char *path, const void *data, size_t len, int mode);

/*
 * JSON text made piece by piece, for the replies azsim makes most (Key Vault list pages and
 * bundles): the same bytes json_dumps(JSON_COMPACT) gives for the tree of the same members in
 * the same order, without the tree. `failed` once an append could not grow the text; later
 * appends do nothing. Zero-initialise; a reply (azsim_reply_text) takes the text. The text may
 * hold a secret's value: it is wiped when it moves and when it is freed.
 */
typedef struct azsim_text {
    char *p;
    size_t len, cap;
    int failed;
} azsim_text;
void azsim_text_add(azsim_text *t, const char *s, size_t n);
#define AZSIM_TEXT_LIT(t, lit) azsim_text_add((t), "" lit, sizeof(lit) - 1) /* literals only */
void azsim_text_str(azsim_text *t, const char *s); /* as a JSON string, escaped as jansson does */
void azsim_text_int(azsim_text *t, int64_t v);
void azsim_text_json(azsim_text *t, const json_t *j); /* any value, compact */
void azsim_text_release(azsim_text *t);

/* ---- azsim_apiversions.c: the api-versions of each service, from Azure's REST specs ---- */
enum {
    AZSIM_API_RESOURCE_GROUPS,
    AZSIM_API_VAULTS,
    AZSIM_API_ROLE_ASSIGNMENTS,
    AZSIM_API_KEYVAULT,
    AZSIM_API_SUBSCRIPTIONS,
    AZSIM_API_KINDS
};
enum { AZSIM_API_UNKNOWN, AZSIM_API_KNOWN, AZSIM_API_NEWER };
int azsim_api_version_check(const azsim_state *st, int api, const char *v); /* AZSIM_API_* */
/* the versions joined by sep, newest or oldest first; the caller frees */
char *azsim_api_version_list(int api, const char *sep, int newest_first);
const char *azsim_api_version_latest_stable(int api);

/* ---- azsim_pki.c ---- */
int azsim_pki_setup(char **out_cert_pem, char **out_key_pem, const char *data_dir);
int azsim_signing_key_load(azsim_state *st);
char *azsim_jwt_sign(azsim_state *st, json_t *claims);
int azsim_jwt_verify(json_t **out, azsim_state *st, const char *token);
void azsim_jwt_verified_release(void); /* the verified-token memo, at exit */
int azsim_jwt_decode(json_t **out_header, json_t **out_claims, const char *token);
int azsim_jwt_check_sig(const char *token, EVP_PKEY *pub, const char *alg);
json_t *azsim_jwk_public(EVP_PKEY *pkey, const char *kid);
int azsim_backup_key_load(azsim_state *st);
char *azsim_seal(azsim_state *st, const char *plain, size_t len);
int azsim_unseal(char **out, size_t *out_len, azsim_state *st, const char *blob);

/* ---- azsim_certs.c: X.509 material of Key Vault certificates (no HTTP here) ---- */
/* Parses an import value: PEM text (pem != 0) holding a PKCS#8 key and the certificates, or
 * base64 PKCS#12 opened with pwd (NULL = none). On success *out_pkey and *out_x5c (array of base64
 * DER, leaf first) are the caller's; on failure *why is a static message for a 400 reply. */
int azsim_cert_parse(EVP_PKEY **out_pkey, json_t **out_x5c, const char *value, const char *pwd,
                     int pem, const char **why);
/* The managed secret's value: base64 PKCS#12 without password, or PEM (key first, then the
 * chain); pkey NULL leaves the private key out. Returns a string to free with azsim_secret_free. */
char *azsim_cert_secret_value(json_t *x5c, EVP_PKEY *pkey, int pem);
/* Facts of the leaf certificate x5c[0]: validity, base64url SHA-1 thumbprint, and the
 * x509_props object of a policy (subject, sans, ekus, key_usage, validity_months; new ref). */
int azsim_cert_info(json_t *x5c, int64_t *out_nbf, int64_t *out_exp, char **out_x5t,
                    json_t **out_x509_props);
/* The Azure geography of a location ("westeurope" -> "europe"); unknown ones are their own. */
const char *azsim_geography(const char *location);
/* The region's display name ("westeurope" -> "West Europe"); unknown ones are their own. */
const char *azsim_location_display(const char *location);
/* The short names of the regions azsim knows, joined by sep; the caller frees. */
char *azsim_locations_list(const char *sep);

/* ---- azsim_server.c: one request and its reply ---- */
typedef struct azsim_req {
    azsim_state *st;
    struct MHD_Connection *conn;
    const char *method;
    char host[256]; /* lowercase, port removed */
    const char *path;
    char **segs; /* path segments; a trailing "/" yields a final "" */
    size_t nsegs;
    const char *body;
    size_t body_len;
    const char *op; /* stats label, static string */
    /* reply */
    unsigned status;
    char *resp_body;
    size_t resp_len;
    const char *content_type;
    json_t *resp_headers; /* object name -> string */
    int drop;             /* close the connection without answering */
} azsim_req;

const char *azsim_query(azsim_req *r, const char *name);
const char *azsim_header(azsim_req *r, const char *name);
void azsim_set_header(azsim_req *r, const char *name, const char *value);
int azsim_reply_json(azsim_req *r, unsigned status, json_t *body); /* steals body */
int azsim_reply_empty(azsim_req *r, unsigned status);
int azsim_reply_text(azsim_req *r, unsigned status, azsim_text *t); /* takes t's text */
json_t *azsim_body_json(azsim_req *r); /* new reference or NULL */
char *azsim_base_url(azsim_req *r, const char *host);
int azsim_serve(azsim_state *st, int port, const char *cert_pem, const char *key_pem);
void azsim_signals_setup(void);

/* ---- azsim_auth.c: tokens and authorization shared by all services ---- */
typedef struct azsim_caller {
    char oid[AZSIM_GUID_LEN + 1];
    char appid[AZSIM_GUID_LEN + 1];
    char tid[AZSIM_GUID_LEN + 1];
    char iss[256];
} azsim_caller;

/* 0 and *caller filled, or AZSIM_EINVAL with *why set to a static reason */
int azsim_auth_bearer(azsim_caller *caller, azsim_req *r, const char *audience, const char **why);
int azsim_rbac_allows(azsim_state *st, const char *principal, const char *resource,
                      const char *action, int data_action, int honour_delay);
azsim_sp *azsim_sp_by_id(azsim_state *st, const char *id);
azsim_sp *azsim_sp_by_app(azsim_state *st, const char *app_id);
azsim_app *azsim_app_by_appid(azsim_state *st, const char *app_id);
azsim_app *azsim_app_by_id(azsim_state *st, const char *id);
int azsim_directory_bootstrap(azsim_state *st);
azsim_password *azsim_password_new(azsim_state *st, azsim_app *app, const char *display_name,
                                   int64_t start, int64_t end);
void azsim_app_free(azsim_app *app);
void azsim_keycred_free(azsim_keycred *kc);
int azsim_role_assign(azsim_role_assignment **out, azsim_state *st, const char *name,
                      const char *scope, const char *role, const char *principal,
                      const char *principal_type, int64_t effective);
void azsim_role_assignment_free(azsim_role_assignment *ra);
char *azsim_resource(azsim_state *st, const char *host); /* "https://HOST:PORT" */

/* ---- azsim_fault.c: injected faults and ARM's request buckets ---- */
const char *azsim_fault_name(int kind);
int azsim_fault_parse_kinds(unsigned *out, const char *list); /* "500,stall,..." or "all" */
int azsim_fault_pick(azsim_state *st);                        /* -1 = none, else a kind */
void azsim_fault_reply(azsim_req *r, int kind);               /* the service's error body */
json_t *azsim_fault_stats(azsim_state *st);                   /* new reference */
/* 0 to go on, or 1 when the request was answered 429; sets the remaining-budget headers */
int azsim_arm_throttle(azsim_req *r, const char *subscription);

/* ---- services ---- */
int azsim_login_handle(azsim_req *r);
int azsim_kv_handle(azsim_req *r, const char *vault_name);
int azsim_arm_handle(azsim_req *r);
void azsim_arm_operations_free(azsim_state *st);
int azsim_graph_handle(azsim_req *r);
/* Purges the deleted applications whose retention has passed; returns the earliest purge time
   of those left (INT64_MAX if none). Called by azsim_kv_sweep, under the state lock. */
int64_t azsim_graph_sweep(azsim_state *st);
/* azsim_dependents.c: resources that use a vault (storage, disk encryption sets, SQL, Cosmos DB,
   App Service) and Resource Graph. *handled 0: not its path. State under the state lock. */
int azsim_dependents_route(azsim_req *r, const azsim_caller *caller, int *handled);
json_t *azsim_dependents_dump(void);          /* new reference */
int azsim_dependents_load(const json_t *a);   /* a borrowed */
void azsim_dependents_release(void);
int azsim_admin_handle(azsim_req *r);
/* After a request is carried out (without the state lock held): the id of the test's hold that
   now holds its answer back (the server suspends the connection until the hold is released or
   azsim_hold_wait_ms passes, then calls azsim_hold_end), or 0; a "drop" hold sets r->drop. */
int azsim_hold_point(azsim_req *r);
int azsim_hold_wait_ms(void);
/* Called once the held request's connection is parked: a hold released between
   azsim_hold_point and the parking found nothing to wake, so its answer goes out now. */
void azsim_hold_parked(azsim_state *st, int id);
void azsim_hold_end(azsim_state *st, int id);
/* azsim_server.c: the held answer of hold id goes out now (called under the state lock). */
void azsim_wake_held(int id);

/* ---- azsim_profiles.c: the consuming service ---- */
int azsim_profiles_handle(azsim_req *r);
int azsim_consumer_init(azsim_state *st, size_t data_keys, double rate);
void azsim_consumer_free(azsim_consumer *c);
void azsim_consumer_tick(azsim_state *st); /* re-wraps as the clock allows; counts losses */
json_t *azsim_consumer_stats(azsim_state *st);
json_t *azsim_consumer_dump(azsim_state *st);
int azsim_consumer_load(azsim_state *st, const json_t *j);
void azsim_kv_sweep(azsim_state *st); /* purges due soft-deleted objects, runs auto-rotation */
void azsim_kv_sweep_dirty(azsim_state *st); /* the same, for the vaults marked sweep_dirty only */
void azsim_vault_free(azsim_vault *v);
azsim_vault *azsim_vault_find(azsim_state *st, const char *name);
json_t *azsim_vault_dump(azsim_vault *v); /* new reference; holds key material */
azsim_vault *azsim_vault_load(json_t *j); /* j borrowed */
int azsim_state_save(azsim_state *st);
int azsim_state_load(azsim_state *st, int *out_loaded);
void azsim_state_release(azsim_state *st);

#endif
