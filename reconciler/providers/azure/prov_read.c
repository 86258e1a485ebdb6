/*
 * Reading the live estate. A scope (kvr/provider.h) says what to look at, as names: vaults (by
 * resource group), their keys, secrets and certificates, apps, the role assignments on the vaults,
 * and the profile service. Nothing else is listed or fetched, and secret values are fetched only
 * where the plan must compare them (the scope's `value`, relocations); each is turned
 * into a keyed marker at once and its bytes wiped. A relocation compares a secret only where both
 * its source and its target hold it, so the values of those two vaults wait for both listings.
 * A run's value memo (kvr_value_memo: copies the executor read back while Key Vault's write
 * limit held it) stands in for a GET only where the listing proves the value unchanged since.
 *
 * The service's clock is taken from the responses' Date header, so retention is measured on
 * Azure's time, not the runner's.
 */
#include "kvr/providers.h"
#include "azinternal.h"
#include "prov_internal.h"
#include "jsonpage.h"
#include "jsonparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <limits.h>

#include <openssl/crypto.h>


/* ---- endpoints ---------------------------------------------------------------------------- */

static const struct {
    const char *name, *arm, *graph, *vault_suffix;
} CLOUDS[] = {
    {"AzurePublicCloud", "https://management.azure.com", "https://graph.microsoft.com",
     "vault.azure.net"},
    {"AzureUSGovernment", "https://management.usgovcloudapi.net", "https://graph.microsoft.us",
     "vault.usgovcloudapi.net"},
    {"AzureChinaCloud", "https://management.chinacloudapi.cn",
     "https://microsoftgraph.chinacloudapi.cn", "vault.azure.cn"},
};

static int set_url(char **dst, const char *value, const char *what, kvr_error *err)
{
    size_t n;
    if (!value || !*value)
        return 0;
    if (strncmp(value, "https://", 8) != 0)
        return kvr_error_set(err, KVR_EINSECURE, "%s '%s' must be an https:// URL", what, value);
    free(*dst);
    *dst = strdup(value);
    if (!*dst)
        return kvr_error_oom(err);
    n = strlen(*dst);
    while (n > 8 && (*dst)[n - 1] == '/')
        (*dst)[--n] = '\0';
    return 0;
}

int kvr_endpoints_resolve(kvr_endpoints *out, const kvr_cloud *cloud, kvr_error *err)
{
    const char *name = cloud && cloud->name ? cloud->name : "AzurePublicCloud";
    int rc = 0;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(CLOUDS) / sizeof(CLOUDS[0]); i++) {
        if (strcmp(CLOUDS[i].name, name) != 0)
            continue;
        out->arm = strdup(CLOUDS[i].arm);
        out->graph = strdup(CLOUDS[i].graph);
        out->vault_suffix = strdup(CLOUDS[i].vault_suffix);
        if (!out->arm || !out->graph || !out->vault_suffix)
            rc = kvr_error_oom(err);
    }
    if (!rc && cloud) {
        if ((rc = set_url(&out->arm, cloud->resource_manager, "cloud.resourceManager", err)) < 0 ||
            (rc = set_url(&out->graph, cloud->graph, "cloud.graph", err)) < 0 ||
            (rc = set_url(&out->profiles, cloud->profile_service, "cloud.profileService", err)) < 0)
            goto done;
        if (cloud->vault_suffix) {
            free(out->vault_suffix);
            if (!(out->vault_suffix = strdup(cloud->vault_suffix)))
                rc = kvr_error_oom(err);
        }
    }
    if (!rc &&
        ((rc = set_url(&out->arm, getenv("KVR_ARM_ENDPOINT"), "KVR_ARM_ENDPOINT", err)) < 0 ||
         (rc = set_url(&out->graph, getenv("KVR_GRAPH_ENDPOINT"), "KVR_GRAPH_ENDPOINT", err)) < 0 ||
         (rc = set_url(&out->profiles, getenv("KVR_PROFILE_ENDPOINT"), "KVR_PROFILE_ENDPOINT",
                       err)) < 0))
        goto done;
    if (!rc && getenv("KVR_VAULT_SUFFIX") && *getenv("KVR_VAULT_SUFFIX")) {
        free(out->vault_suffix);
        if (!(out->vault_suffix = strdup(getenv("KVR_VAULT_SUFFIX"))))
            rc = kvr_error_oom(err);
    }
    if (!rc && (!out->arm || !out->graph || !out->vault_suffix))
        rc = kvr_error_set(err, KVR_EINVAL,
                           "cloud '%s' needs resourceManager, graph and vaultSuffix endpoints",
                           name);
done:
    if (rc < 0)
        kvr_endpoints_release(out);
    return rc;
}

void kvr_endpoints_release(kvr_endpoints *ep)
{
    free(ep->arm);
    free(ep->graph);
    free(ep->vault_suffix);
    free(ep->profiles);
    memset(ep, 0, sizeof(*ep));
}

/* ---- helpers ------------------------------------------------------------------------------ */

int kvr_time_parse_http(int64_t *out, const char *text)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4], iso[32];
    int d, y, h, mi, s;
    const char *m;
    if (!text || sscanf(text, "%*3s, %d %3s %d %d:%d:%d GMT", &d, mon, &y, &h, &mi, &s) != 6)
        return KVR_EINVAL;
    m = strstr(months, mon);
    if (!m || strlen(mon) != 3 || (m - months) % 3)
        return KVR_EINVAL;
    snprintf(iso, sizeof(iso), "%04d-%02d-%02dT%02d:%02d:%02dZ", y, (int)(m - months) / 3 + 1, d, h,
             mi, s);
    return kvr_time_parse_iso(out, iso);
}

char *prov_fmt(kvr_error *err, const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    s = kvr_vasprintf(f, ap);
    va_end(ap);
    if (!s)
        kvr_error_oom(err);
    return s;
}

/* Percent-encodes an OData literal ('x' with ' doubled) for a $filter. */
static char *odata_literal(const char *v, kvr_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(v);
    char *out = malloc(n * 6 + 7), *o = out;
    if (!out) {
        kvr_error_oom(err);
        return NULL;
    }
    memcpy(o, "%27", 3);
    o += 3;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        int times = *p == '\'' ? 2 : 1;
        while (times--) {
            if (plain) {
                *o++ = (char)*p;
            } else {
                *o++ = '%';
                *o++ = hex[*p >> 4];
                *o++ = hex[*p & 15];
            }
        }
    }
    memcpy(o, "%27", 4);
    return out;
}

/* ---- the fetch queue ---------------------------------------------------------------------- */

/*
 * Reads run as a feed of concurrent requests (kvr_auth_run_feed). A fetch is one GET (a list
 * follows its next links, one page at a time); when it completes, its handler adds what it read
 * to the live model and queues the reads that depend on it (a vault's keys once the vault exists,
 * a key's versions once it is listed), and those go out at once, while the others are still in
 * flight. So the wall time is the longest chain of dependent requests, not the number of objects,
 * and nothing waits for an unrelated slow answer: with rounds (every request of a round sent
 * together, the next round when the slowest had answered), latency, the service's work and the
 * handlers' never overlapped, and a 20-vault plan took 5.5 times its bound
 * (tests/bench/RESULTS.md, F). At most FEED_SLOTS requests are out at once, which bounds the
 * responses in memory; each is handled as it ends.
 *
 * Which requests go matters as much as how many: each vault is its own host, and a TLS
 * connection to it costs a handshake on both sides. So ARM, Graph and profile reads go first
 * (everything else depends on them), then vaults in the scope's order, each vault's reads in
 * queue order. The vaults with reads left share the engine's transfers (VAULT_CONNS, or fewer
 * while Key Vault's budget binds: vault_transfers): each gets that many / (vaults with reads
 * left) connections, at least 1 and at most VAULT_HOST_CONNS (the engine is told so per request,
 * host_conns), and at most that many / those connections vaults have reads in flight at once. A
 * vault's reads thus run in one stretch on the same few connections, and the next vaults come in as
 * the first ones finish, instead of every vault being visited all the time (which made the engine
 * close idle connections to open others: thousands of handshakes on a 200-vault estate). A vault
 * has as many reads out as it has connections, no more: the engine starts a host's waiting requests
 * in the order of its slots, not in the order they were handed out, so a read waiting for a
 * connection could be overtaken by one picked after it, and the order picked here (a list's next
 * page first: complete()) would not hold. A connection is idle between an answer and the next read
 * only for the time the answer's handler takes (the feed asks for the next one at once). A vault
 * whose Key Vault challenge is not known yet gets one request, which learns it (the challenge flow,
 * kvr_auth_send_kv).
 *
 * The result does not depend on timing: handlers run in the order answers arrive, but what each
 * adds to the live model does not depend on what came before, and the live model is put in a
 * canonical order at the end. Which read fails first, when several do, may.
 */
#define VAULT_HOST_CONNS 6 /* the engine's connections per host (kvr_http_config) */
#define VAULT_CONNS 256    /* the engine's transfers (kvr_http_config) */
/* ARM, Graph and profile reads out at once. A resource group's role-assignment list is one
   large page (in the 200-vault bench estate, one list of 10,000 assignments, 9.7 MB); at most
   ARM_BULKY of those are out at once, which bounds the memory of the largest answers. */
#define ARM_SLOTS 48
#define ARM_BULKY 1
/* ARM's read budget per subscription (the token bucket of the request-limits page, in the
   reference): the reads are paced to it rather than sent at the engine's pace and throttled (a
   2,000-vault read's 2,001 role-assignment lists drew 161-259 429s a plan, and once, under
   heaptrack, six in a row for one list, which ended the plan). */
#define ARM_READ_RATE 25.0
#define ARM_READ_BURST 250.0
/* Key Vault's subscription-wide limit (reference §10): 5 x 4,000 transactions per 10 s for the
   vaults of a subscription in one region. The vault reads of a run share one pace, named after
   the subscription, whatever their regions (so never over any one region's limit): of a budget
   of B requests in any 10 s (KVR_KV_READ_BUDGET, 17,000 unless told, 85 % of the limit, the
   rest left to the subscription's other clients, the applications that read these vaults),
   2 B / 17 go at once and the others at (B - that) / 10 a second: 2,000, then 1,500 a second.
   Sent faster, a 200-vault plan's 22,000 reads took 3 s on azsim and would be throttled on
   Azure, for the applications too. */
#define KV_SUB_LIMIT 20000
#define KV_READ_BUDGET 17000
#define KV_READ_BUDGET_MIN 10
/* When that budget binds, more vault reads out than it lets through buy no time, and each vault
   they are spread over holds a connection (about 50 KB of TLS and libcurl state): with all of
   VAULT_CONNS out, the 200-vault plan held a connection to each of its 200 vaults and peaked at
   49.7 MB, against 38.7 MB with about 40 out, in the same 14.4 s (tests/bench/RESULTS.md, N). So
   once the vaults found ask for enough Key Vault reads that the budget binds (kv_bound), a read
   has only as many out as keep PACE_HEADROOM times the budget's pace busy at the vault reads'
   measured latency (Little's law), at least PACE_CONNS_MIN, and keeps twice that many
   connections open; the headroom also spends the budget's burst, within
   (burst / (headroom - 1)) / pace seconds. The budget binds, even with reads so few out, when
   the reads the vaults found ask for at least (each one's key and secret lists, each of its
   declared keys and their versions) are more than the burst and what the pace adds while those
   go: at least headroom / (headroom - 1) times the burst, 8,667 reads at the default budget.
   Counting the vaults found, not the declared ones, a scope of vaults still to be made is not
   taken for a large read. A smaller read keeps all of VAULT_CONNS: the 20-vault plan's 2,274
   reads are mostly the burst's, and 48 out would slow them. */
#define PACE_HEADROOM 1.3
#define PACE_CONNS_MIN 16
#define LATENCY_READS 64
#define LATENCY_EVERY 16
#define FEED_SLOTS (VAULT_CONNS + ARM_SLOTS)
#define LIST_PAGES_MAX 10000
#define LIST_ITEMS_MAX 1000000
/* A streamed list's items per call of its handler: what is held of a page as trees at once */
#define PAGE_BATCH 256

typedef struct reader reader;
typedef struct fetch fetch;

typedef struct bucket {
    fetch *head, *tail;
    size_t queued, out;
    bool known; /* a vault's: its Key Vault challenge is known (more than one request may go) */
} bucket;

/*
 * What the scope says about each vault's objects, looked up per listed item. Built once per
 * read: the listings hold tens of thousands of items, and scanning the scope for each of them
 * made the reader quadratic in the estate. Names compare as Azure compares them, ASCII
 * case-insensitively (kvr_str_ieq); a vault named twice is read as its first listing says.
 */
enum ix_kind { IX_VAULT, IX_KEY, IX_SECRET, IX_RG, IX_RG_APP };
#define IX_NONE UINT32_MAX
#define STAMP_MAX 0xFFFFFFu /* listings' marks wrap after this many (ix_entry.stamp) */

typedef struct ix_entry {
    const char *vault, *name; /* borrowed from the scope; NULL: a free slot */
    uint32_t vault_ix;        /* index of its vault in the scope; IX_RG: of the group; IX_NONE */
    /* 24 bytes an entry (the 2,000-vault bench estate has 500,000): bit-fields */
    unsigned stamp : 24;   /* the last listing that named it (declared_missing; STAMP_MAX) */
    unsigned kind : 4;     /* enum ix_kind */
    unsigned declared : 1; /* a key or secret the scope names (a credential copy too) */
    unsigned value : 1;    /* a secret whose value the plan compares */
    unsigned rotation : 1; /* a key whose rotation policy the plan compares */
} ix_entry;
_Static_assert(sizeof(void *) != 8 || sizeof(ix_entry) == 24, "an ix_entry is 24 bytes");

typedef struct vault_ix {
    size_t nkeys, nsecrets; /* distinct declared keys and secrets */
    bool reloc;             /* a relocation's source or target: its values may be compared */
    bool certs;             /* certificates matter (a relocation that copies them) */
    bool roles;             /* the scope names role assignments on it (or its keys) */
    bool report;            /* it reports what it holds undeclared, other principals' access
                               included: every assignment at or below it is read */
    bool seen;              /* found in its resource group's vault list */
    size_t rg;              /* its resource group (rg_ix) */
    size_t copy_src;        /* the vault it copies from (its index), SIZE_MAX: none */
    /* A relocation's vault: the names its secret listing holds (sorted once `listed`), and the
       items whose value waits until the vaults it pairs with are listed too (see held_resolve) */
    char **names;
    size_t nnames, names_cap;
    json_t *held;
    bool listed, resolved;
} vault_ix;

/*
 * A resource group of the declared vaults, and how its ARM reads are made. ARM limits reads per
 * subscription (a bucket of 250, refilled at 25/s), so a large estate must not spend one GET per
 * vault and one role-assignment list per vault; but a list returns everything in the group, so
 * it only pays when the scope names enough of the group. The rules, per group:
 *
 * - Vaults: one declared vault is one GET. Two or more are one paged list of the group's vaults,
 *   cut short once it has cost as many pages as there are declared vaults; the declared vaults
 *   it has not shown by then are fetched with a GET each. So a group costs at most twice the
 *   GETs (a YAML naming 2 vaults of a group of 500 pays 2 pages and 2 GETs, never 20 pages),
 *   and a group listed in a few pages costs those pages.
 * - Role assignments: the plan only looks for the declared ones (exact scope, role, principal),
 *   so only vaults with declared assignments are read. Either one list per such vault (no
 *   filter: at, above and below the vault, which takes in the key-scoped ones), or, when the
 *   group's declared assignments name fewer principals than vaults, one list per principal at
 *   the group's scope with `$filter=principalId eq '{id}'` (at, above and below the group, for
 *   that principal only: what is returned is bounded by what that principal holds, not by the
 *   group's size). `atScope()` would not do: it returns nothing below the scope.
 *
 * A caller may hold rights on some vaults and not on their group: a group-scope list it is
 * refused (403) falls back to the per-vault reads, which need only the vaults' own rights. So
 * does a group-scope list whose one page is over the response cap (32 MiB: tens of thousands of
 * assignments in one page).
 */
typedef struct rg_ix {
    const char *name; /* borrowed from the scope */
    size_t *vaults;   /* declared vaults (first listing of each name), scope order */
    size_t nvaults;
    size_t nrole_vaults, napps; /* vaults with declared role assignments; their distinct apps */
    bool by_principal;          /* role assignments: one list per principal at the group */
    bool all_list;              /* role assignments: one list of the group's, unfiltered (a
                                   group with vaults that report undeclared principals) */
    size_t nroles_wanted;       /* vaults whose assignments are read (declared, or report) */
    bool refused;               /* a group-scope list was refused (403) or too large: per vault
                                   instead */
} rg_ix;

enum key_part { KEY_BUNDLE, KEY_VERSIONS, KEY_POLICY, KEY_PARTS };

/*
 * Parts of a key read together: the latest version, every version, the rotation policy. A part's
 * fetch is made when the one before it goes out, and its URL when it goes out itself: a vault's
 * key listing queues its keys' reads by the thousand (20,000 in the 200-vault bench estate), and
 * a queued key is this and one fetch, not three fetches and their URLs (9 MB of that plan's peak
 * heap, then).
 */
typedef struct key_read {
    const char *vault; /* the scope's */
    size_t order;      /* its vault's fetch order */
    json_t *bundle, *versions, *policy;
    int pending;        /* part fetches made and not yet freed */
    enum key_part next; /* the next part to make (KEY_PARTS: none) */
    bool policy_wanted; /* its rotation policy is read too */
    char name[];
} key_read;

/* body: the parsed 200 body (a list: every item; a streamed one: the next few), NULL after a 404
   that missing_ok allows or a 403 that forbidden_ok does. */
typedef int (*fetch_fn)(reader *r, fetch *f, json_t *body);

struct fetch {
    const char *scope; /* token scope; NULL: Key Vault (challenge flow) */
    char *url;         /* a list: its next page */
    bool list;
    bool missing_ok;
    int pages;
    json_t *items; /* a list's items so far */
    fetch_fn done;
    char *op;     /* what was attempted, for errors ("get key", "list keys of vault 'kv1'") */
    char *object; /* the object, or "" */
    const kvr_scope_vault *vault;
    const char *kind;   /* deleted lists: "key", "secret" */
    key_read *key;      /* a key part */
    enum key_part part; /* which one */
    json_t *aux;        /* a secret item awaiting its value, an app awaiting its principal, a
                           role assignment that does not convert (roles_hold) */
    kvr_live *held;     /* role assignments of the pages before the last (roles_hold) */
    const char *app;    /* the app being found (display name, the scope's) */
    size_t rg;          /* a resource group's vault list: which group */
    int page_cap;       /* a list: stop after this many pages (0: all), and say so */
    size_t order;       /* a Key Vault read: its vault's index + 1; 0: ARM, Graph, profiles */
    bool truncated;     /* the list stopped at page_cap with pages left, or was refused */
    bool forbidden_ok;  /* a 403, or a page over the response cap, means: read the group's
                           vaults one by one (give_up_group; done gets NULL) */
    /* A streamed list (a vault's keys, secrets, ..., role assignments): `done` gets each page's
       items as the page arrives, PAGE_BATCH at a time, with `last` set on the last call and
       `last_page` on each call with the last page's items (`truncated` is set before those when
       the list stops at page_cap). So no listing is held whole while the feed interleaves
       hundreds of vaults, and no page is held as one tree (a resource group's role assignments
       are one page of 10,000 in the 200-vault bench estate). */
    bool stream;
    bool last;
    bool last_page;
    size_t nitems;  /* items so far (LIST_ITEMS_MAX) */
    unsigned stamp; /* declared_missing: this listing's mark on the declarations it named */
    size_t found;   /* declared_missing: how many declarations it named so far */
    bool bulky;     /* pages of hundreds of KB: few of these out at once (ARM_BULKY) */
    /* a list: the pages read, to stop at a next link that loops */
    kvr_http_pages seen;
    fetch *qnext;         /* in its bucket's queue */
    kvr_http_request req; /* while it is out */
    /* op and object, sized to fit: a large estate queues ten thousand fetches at once */
    char text[];
};

struct reader {
    kvr_auth *a;
    const kvr_endpoints *ep;
    const kvr_scope *sc;
    const char *sub;
    char kv_budget[96]; /* the vault reads' shared pace (KV_READ_BUDGET), named after sub */
    double kv_rate, kv_burst;
    bool kv_bound;     /* the budget binds: the vault reads out follow its pace (PACE_HEADROOM) */
    double kv_least;   /* the Key Vault reads the vaults found ask for at least (kv_bound_note) */
    size_t kv_out;     /* the vault reads that may be out now (vault_transfers) */
    double kv_latency; /* ms, the vault reads' transfers (kv_latency_note); 0: none yet */
    double latency[LATENCY_READS]; /* the last vault reads' latencies, a ring */
    size_t nlatency;               /* vault reads' latencies noted */
    size_t latency_grown;          /* nlatency when kv_latency last grew */
    const kvr_marker_key *mk;
    const kvr_value_memo *memo; /* values this run read back; NULL: none */
    bool everything; /* export: every key's rotation policy, every vault's certificates */
    kvr_live *l;
    char *arm_scope, *graph_scope, *profiles_scope;
    kvr_error *err;
    /* The queue, one FIFO bucket per fetch order (0: ARM, Graph, profiles; then per vault);
       ready: a bit per bucket with fetches queued, active: with fetches out (vault buckets). */
    bucket *bk;
    uint64_t *ready, *active;
    size_t queued, out;  /* fetches queued, and out (handed to the feed, not yet done) */
    size_t busy;         /* vault buckets with fetches queued or out */
    size_t nactive;      /* vault buckets with fetches out */
    int conns;           /* connections per vault now (pick) */
    int bulky;           /* bulky fetches out */
    int rc;              /* the first failure: the feed then hands out nothing more */
    bool deleted_vaults_queued;
    /* Listed keys nothing declares, waiting for the profiles (a profile that uses one makes its
       details needed): [vault index, name] pairs; profiles_pending while the list runs. */
    json_t *keys_waiting;
    bool profiles_pending;
    ix_entry *ix;      /* the entries, in the order they were added */
    size_t nix, maxix; /* entries used, and room for */
    uint32_t *slots;   /* open addressing over ix: entry index + 1, 0 empty; ixcap a power of 2 */
    size_t ixcap;
    vault_ix *vix; /* per scope vault, same order */
    rg_ix *rgs;
    size_t nrgs;
    unsigned stamp;
};

static void key_read_drop(key_read *k)
{
    if (--k->pending > 0)
        return;
    json_decref(k->bundle);
    json_decref(k->versions);
    json_decref(k->policy);
    free(k);
}

static void fetch_free(fetch *f)
{
    if (!f)
        return;
    if (f->key)
        key_read_drop(f->key);
    json_decref(f->items);
    json_decref(f->aux);
    kvr_live_free(f->held);
    kvr_http_pages_release(&f->seen);
    free(f->url);
    free(f);
}

#define BIT_SET(m, i) ((m)[(i) / 64] |= (uint64_t)1 << ((i) % 64))
#define BIT_CLEAR(m, i) ((m)[(i) / 64] &= ~((uint64_t)1 << ((i) % 64)))

/* Queues f in its bucket, after what is there, or first (a list's next page). */
static void queue_put(reader *r, fetch *f, bool first)
{
    bucket *b = &r->bk[f->order];
    if (first) {
        f->qnext = b->head;
        b->head = f;
        if (!b->tail)
            b->tail = f;
    } else {
        f->qnext = NULL;
        if (b->tail)
            b->tail->qnext = f;
        else
            b->head = f;
        b->tail = f;
    }
    if (b->queued++ == 0 && f->order) {
        BIT_SET(r->ready, f->order);
        r->busy += b->out == 0;
    }
    r->queued++;
}

/* Queues f after what its bucket holds. Returns 0 (the int is the handlers' habit). */
static int enqueue(reader *r, fetch *f)
{
    queue_put(r, f, false);
    return 0;
}

/* Takes f (after prev, NULL: the first) out of its bucket's queue: it goes out. */
static fetch *take(reader *r, fetch *prev, fetch *f)
{
    bucket *b = &r->bk[f->order];
    if (prev)
        prev->qnext = f->qnext;
    else
        b->head = f->qnext;
    if (b->tail == f)
        b->tail = prev;
    r->queued--;
    r->out++;
    b->out++;
    if (--b->queued == 0 && f->order)
        BIT_CLEAR(r->ready, f->order);
    if (b->out == 1 && f->order) {
        BIT_SET(r->active, f->order);
        r->nactive++;
    }
    if (f->bulky)
        r->bulky++;
    return f;
}

/* f has come back (before its handler runs: what it queues counts from there). */
static void settle(reader *r, fetch *f)
{
    bucket *b = &r->bk[f->order];
    r->out--;
    if (f->bulky)
        r->bulky--;
    if (--b->out == 0 && f->order) {
        BIT_CLEAR(r->active, f->order);
        r->nactive--;
        r->busy -= b->queued == 0;
    }
}

/* A fetch with its op ("get key", "list keys of vault 'kv1'") and object texts; no URL yet. */
static fetch *fetch_vmake(reader *r, fetch_fn done, const char *object, const char *opfmt,
                          va_list ap) __attribute__((format(printf, 4, 0)));

static fetch *fetch_vmake(reader *r, fetch_fn done, const char *object, const char *opfmt,
                          va_list ap)
{
    va_list ap2;
    size_t objlen = object ? strlen(object) : 0;
    int oplen;
    fetch *f = NULL;
    va_copy(ap2, ap);
    oplen = vsnprintf(NULL, 0, opfmt, ap2);
    va_end(ap2);
    if (oplen >= 0)
        f = calloc(1, sizeof(*f) + (size_t)oplen + objlen + 2);
    if (!f) {
        kvr_error_oom(r->err);
        return NULL;
    }
    f->done = done;
    f->op = f->text;
    f->object = f->text + oplen + 1;
    vsnprintf(f->op, (size_t)oplen + 1, opfmt, ap);
    memcpy(f->object, object ? object : "", objlen + 1);
    return f;
}

static fetch *fetch_make(reader *r, fetch_fn done, const char *object, const char *opfmt, ...)
    __attribute__((format(printf, 4, 5)));

static fetch *fetch_make(reader *r, fetch_fn done, const char *object, const char *opfmt, ...)
{
    va_list ap;
    fetch *f;
    va_start(ap, opfmt);
    f = fetch_vmake(r, done, object, opfmt, ap);
    va_end(ap);
    return f;
}

/* A GET of `url` (owned: freed on failure too), to queue. */
static fetch *fetch_new(reader *r, const char *scope, char *url, bool list, fetch_fn done,
                        const char *object, const char *opfmt, ...)
    __attribute__((format(printf, 7, 8)));

static fetch *fetch_new(reader *r, const char *scope, char *url, bool list, fetch_fn done,
                        const char *object, const char *opfmt, ...)
{
    va_list ap;
    fetch *f = NULL;
    if (!url)
        return NULL; /* prov_fmt said why */
    va_start(ap, opfmt);
    f = fetch_vmake(r, done, object, opfmt, ap);
    va_end(ap);
    if (!f) {
        free(url);
        return NULL;
    }
    f->scope = scope;
    f->url = url;
    f->list = list;
    return f;
}

/* A response that is not JSON. jansson's text quotes the body ("near '...'"), and names come from
   listings: both are the server's, made safe for a terminal. */
static int not_json(reader *r, const fetch *f, const json_error_t *jerr)
{
    char obj[160], why[sizeof(jerr->text)];
    kvr_str_clean(obj, sizeof(obj), f->object);
    kvr_str_clean(why, sizeof(why), jerr->text);
    return kvr_error_set(r->err, KVR_EPROTO, "%s%s%s%s: the response is not JSON (%s)", f->op,
                         obj[0] ? " '" : "", obj, obj[0] ? "'" : "", why);
}

/* A group-scope list that cannot be read whole (refused, or one page over the response cap):
   its handler falls back to reads that need less (the group's vaults one by one). */
static int give_up_group(reader *r, fetch *f)
{
    f->truncated = true;
    return f->done(r, f, NULL);
}

/* One response: the handler's turn, or the list's next page. *again: f was queued again. */
static int complete(reader *r, fetch *f, kvr_http_response *resp, bool *again)
{
    json_error_t jerr;
    json_t *body;
    kvr__jsonpage pg;
    char *next = NULL;
    int rc;

    *again = false;
    if (!r->l->now && resp->date)
        kvr_time_parse_http(&r->l->now, resp->date);
    if (resp->status == 404 && f->missing_ok)
        return f->done(r, f, NULL);
    if (resp->status == 403 && f->forbidden_ok)
        return give_up_group(r, f);
    if (resp->status != 200)
        return kvr_http_error(r->err, resp, f->op, f->object[0] ? f->object : NULL);
    if (!f->list) {
        if (!(body = kvr__json_parse(resp->body, resp->body_len, 0, &jerr)))
            return not_json(r, f, &jerr);
        rc = f->done(r, f, body);
        json_decref(body);
        return rc;
    }
    /* a page's items are parsed a few at a time (jsonpage.c), never as the page's one tree */
    if ((rc = kvr__jsonpage_open(&pg, resp->body, resp->body_len, &jerr)) < 0)
        return rc == KVR_EPROTO ? not_json(r, f, &jerr) : kvr_error_oom(r->err);
    if (!pg.has_value)
        rc = kvr_error_set(r->err, KVR_EPROTO, "%s: page %d has no value array", f->op,
                           f->pages + 1);
    else if ((f->nitems += pg.nitems) > LIST_ITEMS_MAX)
        rc = kvr_error_set(r->err, KVR_ETOOBIG, "%s: the listing is too large (more than %d items)",
                           f->op, LIST_ITEMS_MAX);
    else
        rc = kvr_http_next_link(&next, f->url, pg.rest, r->err);
    if (rc == 0 && next && f->page_cap > 0 && f->pages + 1 >= f->page_cap) {
        free(next);
        next = NULL;
        f->truncated = true;
    }
    /* a streamed list's handler takes the items batch by batch; the others get the list whole */
    f->last_page = !next;
    while (rc == 0) {
        json_t *batch;
        if ((rc = kvr__jsonpage_next(&batch, &pg, PAGE_BATCH, &jerr)) < 0) {
            rc = rc == KVR_EPROTO ? not_json(r, f, &jerr) : kvr_error_oom(r->err);
            break;
        }
        if (f->stream) {
            f->last = f->last_page && pg.taken == pg.nitems;
            rc = f->done(r, f, batch);
        } else if ((!f->items && !(f->items = json_array())) ||
                   json_array_extend(f->items, batch) < 0) {
            rc = kvr_error_oom(r->err);
        }
        json_decref(batch);
        if (pg.taken == pg.nitems)
            break;
    }
    kvr__jsonpage_release(&pg);
    if (rc < 0) {
        free(next);
        return rc;
    }
    if (f->stream && !next)
        return 0;
    if (!next) /* an empty list has had no batch */
        return !f->items && !(f->items = json_array()) ? kvr_error_oom(r->err)
                                                       : f->done(r, f, f->items);
    if (++f->pages >= LIST_PAGES_MAX) {
        free(next);
        return kvr_error_set(r->err, KVR_ETOOBIG,
                             "%s: the listing is too large (more than %d pages)", f->op,
                             LIST_PAGES_MAX);
    }
    if ((f->seen.n == 0 && (rc = kvr_http_pages_note(&f->seen, f->url, f->op, r->err)) < 0) ||
        (rc = kvr_http_pages_note(&f->seen, next, f->op, r->err)) < 0) {
        free(next);
        return rc;
    }
    free(f->url);
    f->url = next;
    *again = true;
    /* A list's pages are a chain, each known only from the last: the longest one a vault has
       (its secrets, 25 to a page) is what its reads wait for at the end. Its next page goes
       first, not behind the reads its first pages queued (a 20-vault plan waited 200 ms for
       each of its secrets' pages that way). */
    queue_put(r, f, true);
    return 0;
}

static int held_resolve_all(reader *r);
static char *key_part_url(reader *r, const fetch *f);
static fetch *key_part_new(reader *r, key_read *k);

/* Makes f's URL if it has none yet (only a key part waits for its); on failure sets r->rc. */
static int fetch_url(reader *r, fetch *f)
{
    if (!f->url && !(f->url = key_part_url(r, f)))
        return r->rc = r->err->code;
    return 0;
}

static int ms_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * A vault read's latency. What sets the reads out (PACE_HEADROOM) is the median of the last
 * LATENCY_READS, taken again after every LATENCY_EVERY: a new vault's first read (its handshakes
 * and its challenge), or answers that waited while a large page was handled, took 80 ms and
 * more where the reads took 21, in bursts, and a moving average followed them up to 162 reads out
 * (each of the vaults they let in keeps a connection). A median of such a burst still said
 * 60 ms, and grown by a quarter each time, 126 reads out. So it grows by a quarter at most,
 * once per LATENCY_READS (a latency that doubles is followed within 4 x 64 reads, a fifth of a
 * second at the default pace), and falls at once; the first figure is the first reads' median.
 */
static void kv_latency_note(reader *r, double ms)
{
    double sorted[LATENCY_READS];
    size_t n = r->nlatency < LATENCY_READS ? r->nlatency + 1 : LATENCY_READS;
    r->latency[r->nlatency++ % LATENCY_READS] = ms;
    if (r->nlatency % LATENCY_EVERY)
        return;
    memcpy(sorted, r->latency, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), ms_cmp);
    ms = sorted[n / 2];
    if (r->kv_latency > 0 && ms > r->kv_latency) {
        /* a burst of late answers is not a slower service: up by a quarter at most, and not
           again until the window holds none of the reads that moved it */
        if (r->nlatency - r->latency_grown < LATENCY_READS)
            return;
        r->latency_grown = r->nlatency;
        if (ms > 1.25 * r->kv_latency)
            ms = 1.25 * r->kv_latency;
    }
    r->kv_latency = ms;
}

/* The vault reads that may be out at once (see PACE_HEADROOM), and the connections kept open. */
static size_t vault_transfers(reader *r)
{
    double want = PACE_HEADROOM * r->kv_rate * r->kv_latency / 1000.0;
    size_t n = VAULT_CONNS;
    if (!r->kv_bound)
        return n;
    if (want < (double)VAULT_CONNS)
        n = (size_t)want + (want > (double)(size_t)want);
    if (n < PACE_CONNS_MIN)
        n = PACE_CONNS_MIN;
    if (n != r->kv_out)
        kvr_auth_keep_conns(r->a, 2 * n);
    return r->kv_out = n;
}

/*
 * The next fetch to go (see above), or NULL when none may go now: ARM, Graph and profiles first,
 * then the first vault in the scope's order that has reads queued and room for one more.
 */
static fetch *pick(reader *r)
{
    size_t nwords = (r->sc->nvaults + 1 + 63) / 64, most, slots;
    fetch *prev = NULL;
    if (r->bk[0].out < ARM_SLOTS)
        for (fetch *f = r->bk[0].head; f; prev = f, f = f->qnext)
            if (!f->bulky || r->bulky < ARM_BULKY)
                return take(r, prev, f);
    slots = vault_transfers(r);
    r->conns = (int)(r->busy ? slots / (r->busy < slots ? r->busy : slots) : VAULT_HOST_CONNS);
    r->conns = r->conns < 1 ? 1 : r->conns > VAULT_HOST_CONNS ? VAULT_HOST_CONNS : r->conns;
    most = slots / (size_t)r->conns; /* vaults with reads out */
    for (size_t w = 0; w < nwords; w++) {
        /* at the most: only the vaults already out may send more */
        uint64_t bits = r->ready[w] & (r->nactive >= most ? r->active[w] : ~(uint64_t)0);
        for (; bits; bits &= bits - 1) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
            bucket *b = &r->bk[i];
            if (!b->known && fetch_url(r, b->head) < 0)
                return NULL;
            if (!b->known)
                b->known = kvr_auth_kv_known(r->a, b->head->url);
            if (b->out < (b->known ? (size_t)r->conns : 1)) /* a read per connection */
                return take(r, NULL, b->head);
        }
    }
    return NULL;
}

static const kvr_http_request *feed_next(void *ud, const char **scope)
{
    reader *r = ud;
    fetch *f;
    if (r->rc < 0)
        return NULL;
    if (r->queued == 0 && r->out == 0 && (r->rc = held_resolve_all(r)) < 0)
        return NULL; /* drained: settle the relocations' held values (which may queue more) */
    if (!(f = pick(r)))
        return NULL;
    /* it goes out: its URL, and the next part of its key (queued first, to go right after) */
    if (fetch_url(r, f) == 0 && f->key && f->key->next != KEY_PARTS) {
        fetch *g = key_part_new(r, f->key);
        if (g)
            queue_put(r, g, true);
        else
            r->rc = r->err->code;
    }
    if (r->rc < 0) {
        settle(r, f);
        fetch_free(f);
        return NULL;
    }
    f->req = (kvr_http_request){.method = "GET", .url = f->url};
    if (f->order) {
        f->req.host_conns = r->conns;
        f->req.budget = r->kv_budget;
        f->req.budget_rate = r->kv_rate;
        f->req.budget_burst = r->kv_burst;
    }
    if (f->scope && f->scope == r->arm_scope) {
        f->req.host_rate = ARM_READ_RATE;
        f->req.host_burst = ARM_READ_BURST;
    }
    *scope = f->scope;
    return &f->req;
}

static void feed_done(void *ud, const kvr_http_request *req, kvr_http_response *resp, int code,
                      const kvr_error *err)
{
    reader *r = ud;
    fetch *f = (fetch *)(void *)((char *)(uintptr_t)req - offsetof(fetch, req));
    bool again = false;
    settle(r, f);
    if (f->order && code == 0 && resp->elapsed_ms > 0)
        kv_latency_note(r, resp->elapsed_ms);
    if (r->rc == 0) {
        if (code == KVR_ETOOBIG && f->forbidden_ok) {
            r->rc = give_up_group(r, f); /* e.g. 100,000 role assignments in one page */
        } else if (code < 0) {
            *r->err = *err;
            r->rc = code;
        } else {
            r->rc = complete(r, f, resp, &again);
        }
    }
    if (!again)
        fetch_free(f);
}

/* Frees what is still queued (after a failure). */
static void drop_queue(reader *r)
{
    for (size_t i = 0; r->bk && i <= r->sc->nvaults; i++)
        while (r->bk[i].head) {
            fetch *f = r->bk[i].head;
            r->bk[i].head = f->qnext;
            fetch_free(f);
        }
}

/* Runs the queue until it is empty (0) or a read fails (the first failure to come back). */
static int run_queue(reader *r)
{
    kvr_auth_feed feed = {.ud = r, .next = feed_next, .done = feed_done};
    /* the first reads' tokens (ARM, Graph, profiles: the roots are all in bucket 0) at once */
    const char *scopes[3];
    size_t n = 0;
    for (fetch *f = r->bk[0].head; f; f = f->qnext) {
        bool seen = false;
        for (size_t i = 0; i < n; i++)
            seen |= scopes[i] == f->scope;
        if (f->scope && !seen && n < sizeof(scopes) / sizeof(scopes[0]))
            scopes[n++] = f->scope;
    }
    kvr_auth_prefetch(r->a, scopes, n);
    if (kvr_auth_run_feed(r->a, &feed, FEED_SLOTS) < 0 && r->rc == 0)
        r->rc = kvr_error_oom(r->err);
    if (r->kv_out)
        kvr_auth_keep_conns(r->a, 0); /* the engine's own figure again, for what comes next */
    drop_queue(r);
    return r->rc;
}

static char *vault_url(reader *r, const char *vault)
{
    return prov_fmt(r->err, "https://%s.%s", vault, r->ep->vault_suffix);
}

/* ---- the declaration index ---------------------------------------------------------------- */

/* kvr_hash_ci folds case as kvr_str_ieq compares; kvr_hash_mix makes the low bits usable. */
static uint64_t ix_hash(unsigned kind, const char *vault, const char *name)
{
    return kvr_hash_mix(kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED ^ kind, vault), name));
}

/*
 * The slot of (kind, vault, name): the one that holds its entry, or the empty one where it would
 * go. The slots are 4-byte indexes into the entries, not the entries themselves: the 200-vault
 * bench estate has 50,000 declarations in 131,072 slots (5.2 MB of the plan's peak as entries,
 * 0.5 MB as indexes).
 */
static uint32_t *ix_slot(const reader *r, unsigned kind, const char *vault, const char *name)
{
    size_t i = (size_t)ix_hash(kind, vault, name) & (r->ixcap - 1);
    for (;; i = (i + 1) & (r->ixcap - 1)) {
        const ix_entry *e = r->slots[i] ? &r->ix[r->slots[i] - 1] : NULL;
        if (!e || (e->kind == kind && kvr_str_ieq(e->vault, vault) && kvr_str_ieq(e->name, name)))
            return &r->slots[i];
    }
}

static ix_entry *ix_find(const reader *r, unsigned kind, const char *vault, const char *name)
{
    const uint32_t *slot = vault && name ? ix_slot(r, kind, vault, name) : NULL;
    return slot && *slot ? &r->ix[*slot - 1] : NULL;
}

static const ix_entry *ix_get(const reader *r, unsigned kind, const char *vault, const char *name)
{
    return ix_find(r, kind, vault, name);
}

/* Twice the slots, at most half full again (ix_add): every entry placed anew. */
static int ix_grow(reader *r)
{
    uint32_t *slots = calloc(r->ixcap * 2, sizeof(*slots));
    if (!slots)
        return KVR_ENOMEM;
    free(r->slots);
    r->slots = slots;
    r->ixcap *= 2;
    for (size_t k = 0; k < r->nix; k++)
        *ix_slot(r, r->ix[k].kind, r->ix[k].vault, r->ix[k].name) = (uint32_t)(k + 1);
    return 0;
}

/*
 * Adds (kind, vault, name) if new; the entry either way, NULL when vault or name is missing.
 * index_build sized the entries for every declaration (their untouched room costs no memory);
 * the slots grow as the entries come (a role assignment's app is an entry once per group).
 */
static ix_entry *ix_add(reader *r, unsigned kind, const char *vault, const char *name)
{
    uint32_t *slot;
    ix_entry *e;
    if (!vault || !name)
        return NULL;
    slot = ix_slot(r, kind, vault, name);
    if (*slot)
        return &r->ix[*slot - 1];
    if (r->nix == r->maxix)
        return NULL; /* not reached: index_build counts every declaration */
    if (2 * (r->nix + 1) > r->ixcap) {
        if (ix_grow(r) < 0) {
            r->rc = kvr_error_oom(r->err); /* index_build returns it */
            return NULL;
        }
        slot = ix_slot(r, kind, vault, name);
    }
    e = &r->ix[r->nix++];
    *slot = (uint32_t)r->nix;
    e->kind = kind & 0xFu;
    e->vault = vault;
    e->name = name;
    e->vault_ix = IX_NONE;
    return e;
}

/* The vault's index in the scope, SIZE_MAX if the scope does not name it. */
static size_t vault_index(const reader *r, const char *vault)
{
    const ix_entry *e = ix_get(r, IX_VAULT, "", vault);
    return e && e->vault_ix != IX_NONE ? e->vault_ix : SIZE_MAX;
}

static int index_build(reader *r)
{
    const kvr_scope *sc = r->sc;
    /* entries: a vault, its group, a key, a secret, a role assignment's app in its group */
    size_t most = 2 * sc->nvaults + sc->nkeys + sc->nsecrets + sc->nroles + 1;
    /* slots: twice the entries but the roles' (a few apps per group, not one per assignment) */
    for (r->ixcap = 64; r->ixcap < 2 * (most - sc->nroles); r->ixcap *= 2)
        ;
    if (most >= UINT32_MAX)
        return kvr_error_set(r->err, KVR_ETOOBIG, "too many declarations");
    r->maxix = most + 1;
    r->ix = calloc(r->maxix, sizeof(*r->ix));
    r->slots = calloc(r->ixcap, sizeof(*r->slots));
    r->vix = calloc(sc->nvaults + 1, sizeof(*r->vix));
    r->rgs = calloc(sc->nvaults + 1, sizeof(*r->rgs));
    r->bk = calloc(sc->nvaults + 1, sizeof(*r->bk));
    r->ready = calloc((sc->nvaults + 1 + 63) / 64, sizeof(*r->ready));
    r->active = calloc((sc->nvaults + 1 + 63) / 64, sizeof(*r->active));
    if (!r->ix || !r->slots || !r->vix || !r->rgs || !r->bk || !r->ready || !r->active)
        return kvr_error_oom(r->err);
    for (size_t i = 0; i < sc->nvaults; i++) {
        ix_entry *e = ix_add(r, IX_VAULT, "", sc->vaults[i].name), *g;
        rg_ix *rg;
        if (!e || e->vault_ix != IX_NONE)
            continue; /* a name listed twice: the first listing is the one read */
        e->vault_ix = (uint32_t)i;
        if (!(g = ix_add(r, IX_RG, "", sc->vaults[i].resource_group)))
            return r->rc ? r->rc
                         : kvr_error_set(r->err, KVR_EINVAL, "vault '%s' has no resource group",
                                         sc->vaults[i].name);
        if (g->vault_ix == IX_NONE) {
            g->vault_ix = (uint32_t)r->nrgs++;
            r->rgs[g->vault_ix].name = sc->vaults[i].resource_group;
        }
        rg = &r->rgs[g->vault_ix];
        if (!(rg->vaults = realloc(rg->vaults, (rg->nvaults + 1) * sizeof(*rg->vaults))))
            return kvr_error_oom(r->err);
        rg->vaults[rg->nvaults++] = i;
        r->vix[i].rg = g->vault_ix;
    }
    for (size_t i = 0; i < sc->nroles; i++) {
        size_t vi = vault_index(r, sc->roles[i].vault);
        rg_ix *rg;
        ix_entry *e;
        if (vi == SIZE_MAX)
            continue; /* the plan skips it too */
        rg = &r->rgs[r->vix[vi].rg];
        if (!r->vix[vi].roles) {
            r->vix[vi].roles = true;
            rg->nrole_vaults++;
        }
        if ((e = ix_add(r, IX_RG_APP, rg->name, sc->roles[i].app)) && !e->declared) {
            e->declared = true;
            rg->napps++;
        }
    }
    /* A vault that reports undeclared principals needs everyone's assignments, which a list per
       principal cannot give: its group is read with one unfiltered list (cut short, as the
       vault list is, after as many pages as vaults it serves; then a list per vault), or a lone
       vault with its own list. */
    for (size_t i = 0; i < sc->nvaults; i++) {
        size_t vi = vault_index(r, sc->vaults[i].name);
        if (vi != i || !(sc->vaults[i].unmanaged || sc->vaults[i].unmanaged_read))
            continue;
        r->vix[i].report = true;
        r->rgs[r->vix[i].rg].all_list = true;
    }
    for (size_t i = 0; i < r->nrgs; i++) {
        rg_ix *rg = &r->rgs[i];
        for (size_t k = 0; k < rg->nvaults; k++)
            rg->nroles_wanted += r->vix[rg->vaults[k]].roles || r->vix[rg->vaults[k]].report;
        rg->by_principal = !rg->all_list && rg->napps < rg->nrole_vaults;
        rg->all_list = rg->all_list && rg->nvaults > 1;
    }
    for (size_t i = 0; i < sc->nvaults; i++)
        r->vix[i].copy_src = SIZE_MAX;
    for (size_t i = 0; i < sc->nvaults; i++) {
        const kvr_scope_vault *v = &sc->vaults[i];
        size_t self = vault_index(r, v->name), src;
        if (self == SIZE_MAX)
            continue; /* no name */
        if (v->certificates)
            r->vix[self].certs = true; /* a relocation copying them, on either side */
        if (!v->copy_from)
            continue;
        src = vault_index(r, v->copy_from);
        r->vix[self].reloc = true; /* a relocation target: compared with its source */
        r->vix[self].copy_src = src;
        if (src != SIZE_MAX)
            r->vix[src].reloc = true; /* a relocation source */
    }
    for (size_t i = 0; i < sc->nkeys; i++) {
        const kvr_scope_object *k = &sc->keys[i];
        ix_entry *e = ix_add(r, IX_KEY, k->vault, k->name);
        if (!e)
            continue;
        if (!e->declared) {
            e->declared = true;
            size_t vi = vault_index(r, k->vault);
            if (vi != SIZE_MAX) {
                e->vault_ix = (uint32_t)vi;
                r->vix[vi].nkeys++;
            }
        }
        if (k->rotation)
            e->rotation = true;
    }
    for (size_t i = 0; i < sc->nsecrets; i++) {
        const kvr_scope_object *o = &sc->secrets[i];
        ix_entry *e = ix_add(r, IX_SECRET, o->vault, o->name);
        if (!e)
            continue;
        /* a credential's stored copy counts too: one missing may be soft-deleted (an app this
           estate retired, declared again), and the plan must recover it before writing */
        if (!e->declared) {
            e->declared = true;
            size_t vi = vault_index(r, o->vault);
            if (vi != SIZE_MAX) {
                e->vault_ix = (uint32_t)vi;
                r->vix[vi].nsecrets++;
            }
        }
        if (o->value)
            e->value = true;
    }
    return r->rc; /* 0, or an entry that found no room (ix_add) */
}

/* The index's record of a scope vault (by name: its first listing). */
static vault_ix *vinfo(const reader *r, const kvr_scope_vault *v)
{
    size_t i = vault_index(r, v->name);
    assert(i != SIZE_MAX); /* every vault read is one the scope names */
    return &r->vix[i];
}

/* ---- ARM ---------------------------------------------------------------------------------- */

static int queue_vault_contents(reader *r, const kvr_scope_vault *v);

static int queue_vault_roles(reader *r, const kvr_scope_vault *v);

/*
 * Role assignments, streamed (see struct fetch). A list that stops short (a group-scope list
 * past its page cap, or refused: f->truncated) or is not there (404: no items) counts for
 * nothing, as if it had never been read; so what the pages before the last hold waits in
 * f->held, as role records (a fraction of their JSON), and joins the live model with the last
 * page, whose items go in as they come. An item that does not convert waits too (f->aux): it
 * fails the read only if the list completes, as when a list's items were all taken at its end.
 */
static int roles_hold(reader *r, fetch *f, json_t *items)
{
    for (size_t i = 0; !f->aux && i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        kvr_error why;
        int rc;
        if (!f->held && !(f->held = calloc(1, sizeof(*f->held))))
            return kvr_error_oom(r->err);
        if ((rc = kvr_live_add_role(f->held, it, &why)) == KVR_ENOMEM)
            return kvr_error_oom(r->err);
        if (rc < 0)
            f->aux = json_incref(it); /* roles_commit tries it again, and fails the same way */
    }
    return 0;
}

static int roles_commit(reader *r, fetch *f)
{
    kvr_live *h = f->held, *l = r->l;
    for (size_t i = 0; h && i < h->nroles; i++) {
        const kvr_live_role *from = &h->roles[i];
        if (kvr_live_put_role(l, from->name, from->scope, from->role_id, from->principal_id,
                              r->err) < 0)
            return r->err->code;
    }
    kvr_live_free(h);
    f->held = NULL;
    if (f->aux && kvr_live_add_role(l, f->aux, r->err) < 0)
        return r->err->code;
    return 0;
}

static int roles_done(reader *r, fetch *f, json_t *items)
{
    if (f->truncated || !items) {
        kvr_live_free(f->held);
        f->held = NULL;
        json_decref(f->aux);
        f->aux = NULL;
    }
    if (f->truncated) {
        /* a group-scope list refused: each of the group's vaults with declared ones, once */
        rg_ix *rg = &r->rgs[f->rg];
        if (rg->refused)
            return 0;
        rg->refused = true;
        for (size_t i = 0; i < rg->nvaults; i++)
            if ((r->vix[rg->vaults[i]].roles || r->vix[rg->vaults[i]].report) &&
                queue_vault_roles(r, &r->sc->vaults[rg->vaults[i]]) < 0)
                return r->err->code;
        return 0;
    }
    if (!items)
        return 0;
    if (!f->last_page)
        return roles_hold(r, f, items);
    if ((f->held || f->aux) && roles_commit(r, f) < 0)
        return r->err->code;
    for (size_t i = 0; i < json_array_size(items); i++)
        if (kvr_live_add_role(r->l, json_array_get(items, i), r->err) < 0)
            return r->err->code;
    return 0;
}

static int deleted_vaults_done(reader *r, fetch *f, json_t *items)
{
    (void)f;
    /* the scope's only; one also live (a read still out now) is dropped in canonical_order */
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        const json_t *name = json_object_get(it, "name");
        if (json_is_string(name) && vault_index(r, json_string_value(name)) != SIZE_MAX &&
            kvr_live_add_deleted_vault(r->l, it, r->err) < 0)
            return r->err->code;
    }
    return 0;
}

/* A scope vault that does not exist (or not in its group): look for it among the deleted. */
static int vault_missing(reader *r)
{
    fetch *g;
    if (r->deleted_vaults_queued)
        return 0;
    r->deleted_vaults_queued = true;
    g = fetch_new(r, r->arm_scope,
                  prov_fmt(r->err,
                           "%s/subscriptions/%s/providers/Microsoft.KeyVault/deletedVaults"
                           "?api-version=" ARM_VAULTS_API,
                           r->ep->arm, r->sub),
                  true, deleted_vaults_done, NULL, "list deleted vaults");
    return g ? enqueue(r, g) : r->err->code;
}

static int vault_found(reader *r, const kvr_scope_vault *v, const json_t *body)
{
    if (kvr_live_add_vault(r->l, body, r->err) < 0)
        return r->err->code;
    const rg_ix *rg = &r->rgs[vinfo(r, v)->rg];
    if ((vinfo(r, v)->roles || vinfo(r, v)->report) && !rg->by_principal && !rg->all_list)
        return queue_vault_roles(r, v) < 0 ? r->err->code : queue_vault_contents(r, v);
    return queue_vault_contents(r, v);
}

/* The role assignments at, above and below one vault (missing_ok: a vault not there has none). */
static int queue_vault_roles(reader *r, const kvr_scope_vault *v)
{
    fetch *g =
        fetch_new(r, r->arm_scope,
                  prov_fmt(r->err,
                           "%s/subscriptions/%s/resourceGroups/%s/providers/"
                           "Microsoft.KeyVault/vaults/%s/providers/"
                           "Microsoft.Authorization/roleAssignments?api-version=" ARM_ROLES_API,
                           r->ep->arm, r->sub, v->resource_group, v->name),
                  true, roles_done, NULL, "list role assignments of vault '%s'", v->name);
    if (!g)
        return r->err->code;
    g->missing_ok = true;
    g->stream = true;
    return enqueue(r, g);
}

static int vault_done(reader *r, fetch *f, json_t *body)
{
    return body ? vault_found(r, f->vault, body) : vault_missing(r);
}

static int queue_vault_get(reader *r, const kvr_scope_vault *v)
{
    fetch *f = fetch_new(r, r->arm_scope,
                         prov_fmt(r->err,
                                  "%s/subscriptions/%s/resourceGroups/%s/providers/"
                                  "Microsoft.KeyVault/vaults/%s?api-version=" ARM_VAULTS_API,
                                  r->ep->arm, r->sub, v->resource_group, v->name),
                         false, vault_done, v->name, "get vault");
    if (!f)
        return r->err->code;
    f->missing_ok = true;
    f->vault = v;
    return enqueue(r, f);
}

/* A resource group's vaults, listed (items NULL: the group does not exist). */
static int vaults_listed(reader *r, fetch *f, json_t *items)
{
    const rg_ix *rg = &r->rgs[f->rg];
    int rc = 0;
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        const char *name = json_string_value(json_object_get(it, "name"));
        size_t vi = name ? vault_index(r, name) : SIZE_MAX;
        if (vi == SIZE_MAX || r->vix[vi].rg != f->rg || r->vix[vi].seen)
            continue; /* not in the scope, or in another group */
        r->vix[vi].seen = true;
        rc = vault_found(r, &r->sc->vaults[vi], it);
    }
    for (size_t i = 0; !rc && i < rg->nvaults; i++) {
        if (r->vix[rg->vaults[i]].seen)
            continue;
        rc = f->truncated ? queue_vault_get(r, &r->sc->vaults[rg->vaults[i]]) : vault_missing(r);
    }
    return rc;
}

/* The role assignments at, above and below a group (all_list): one list, page-capped. */
static int queue_group_roles(reader *r, size_t g)
{
    const rg_ix *rg = &r->rgs[g];
    fetch *f = fetch_new(r, r->arm_scope,
                         prov_fmt(r->err,
                                  "%s/subscriptions/%s/resourceGroups/%s/providers/"
                                  "Microsoft.Authorization/roleAssignments?api-version=" ARM_ROLES_API,
                                  r->ep->arm, r->sub, rg->name),
                         true, roles_done, NULL, "list role assignments of resource group '%s'",
                         rg->name);
    if (!f)
        return r->err->code;
    f->missing_ok = true; /* no such group: none of its vaults exists either */
    f->forbidden_ok = true; /* rights on the vaults only: a list per vault (roles_done) */
    f->bulky = true;
    f->stream = true;
    f->rg = g;
    f->page_cap = rg->nroles_wanted > INT_MAX ? INT_MAX : (int)rg->nroles_wanted;
    return enqueue(r, f);
}

static int queue_vaults(reader *r)
{
    for (size_t g = 0; g < r->nrgs; g++) {
        const rg_ix *rg = &r->rgs[g];
        fetch *f;
        if (rg->all_list && queue_group_roles(r, g) < 0)
            return r->err->code;
        if (rg->nvaults == 1) {
            if (queue_vault_get(r, &r->sc->vaults[rg->vaults[0]]) < 0)
                return r->err->code;
            continue;
        }
        f = fetch_new(r, r->arm_scope,
                      prov_fmt(r->err,
                               "%s/subscriptions/%s/resourceGroups/%s/providers/"
                               "Microsoft.KeyVault/vaults?api-version=" ARM_VAULTS_API,
                               r->ep->arm, r->sub, rg->name),
                      true, vaults_listed, NULL, "list vaults of resource group '%s'", rg->name);
        if (!f)
            return r->err->code;
        f->missing_ok = true;
        f->forbidden_ok = true;
        f->rg = g;
        f->page_cap = rg->nvaults > INT_MAX ? INT_MAX : (int)rg->nvaults;
        if (enqueue(r, f) < 0)
            return r->err->code;
    }
    return 0;
}

/* ---- Graph -------------------------------------------------------------------------------- */

static int principal_done(reader *r, fetch *f, json_t *items)
{
    const char *sp = json_string_value(json_object_get(json_array_get(items, 0), "id"));
    if (kvr_live_add_app(r->l, f->aux, json_array_get(items, 0), r->err) < 0)
        return r->err->code;
    /* the groups whose role assignments are read per principal (see rg_ix) */
    for (size_t g = 0; sp && f->app && g < r->nrgs; g++) {
        char *lit;
        fetch *h;
        if (!r->rgs[g].by_principal || !ix_get(r, IX_RG_APP, r->rgs[g].name, f->app))
            continue;
        if (!(lit = odata_literal(sp, r->err)))
            return KVR_ENOMEM;
        h = fetch_new(r, r->arm_scope,
                      prov_fmt(r->err,
                               "%s/subscriptions/%s/resourceGroups/%s/providers/"
                               "Microsoft.Authorization/roleAssignments?$filter=principalId%%20eq"
                               "%%20%s&api-version=" ARM_ROLES_API,
                               r->ep->arm, r->sub, r->rgs[g].name, lit),
                      true, roles_done, NULL,
                      "list role assignments of app '%s' in resource group '%s'",
                      f->app, r->rgs[g].name);
        free(lit);
        if (!h)
            return r->err->code;
        h->missing_ok = true; /* no such group: none of its vaults exists either */
        h->forbidden_ok = true;
        h->bulky = true;
        h->stream = true;
        h->rg = g;
        if (enqueue(r, h) < 0)
            return r->err->code;
    }
    return 0;
}

/* A declared app that is not registered, among the deleted items: kept when this estate's
   marker is on it (it retired it; the plan restores it). */
static int deleted_app_done(reader *r, fetch *f, json_t *items)
{
    char marker[200];
    (void)f;
    snprintf(marker, sizeof(marker), KVR_APP_TAG_MANAGED "%s", r->sub);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *app = json_array_get(items, i), *t;
        size_t k;
        bool ours = false;
        json_array_foreach(json_object_get(app, "tags"), k, t)
        {
            ours |= json_is_string(t) && strcasecmp(json_string_value(t), marker) == 0;
        }
        if (!ours)
            continue;
        if (kvr_live_add_app(r->l, app, NULL, r->err) < 0)
            return r->err->code;
        r->l->apps[r->l->napps - 1].deleted = true;
        return 0; /* the first one: a display name is unique among what this estate made */
    }
    return 0;
}

/* The lookup of app's service principal by its appId, the app kept (aux) for `done`; NULL with
   r->err set when out of memory. */
static fetch *principal_fetch(reader *r, const json_t *app, fetch_fn done, const char *object,
                              const char *name)
{
    char *lit = odata_literal(json_string_value(json_object_get(app, "appId")), r->err);
    fetch *g;
    if (!lit)
        return NULL;
    g = fetch_new(r, r->graph_scope,
                  prov_fmt(r->err, "%s/v1.0/servicePrincipals?$filter=appId%%20eq%%20%s",
                           r->ep->graph, lit),
                  true, done, object, "find the service principal of app '%s'", name);
    free(lit);
    if (g)
        g->aux = json_incref((json_t *)app);
    return g;
}

static int app_done(reader *r, fetch *f, json_t *items)
{
    const json_t *app = json_array_get(items, 0);
    char *lit;
    fetch *g;
    if (json_array_size(items) > 1)
        return kvr_error_set(r->err, KVR_ECONFLICT,
                             "%zu Entra applications are named '%s'; kvreconcile finds apps by "
                             "display name, which must be unique",
                             json_array_size(items), f->object);
    if (!app && r->sc->retired_apps && !r->everything) {
        /* not registered: one this estate retired lately is restored, not registered again */
        if (!(lit = odata_literal(f->object, r->err)))
            return KVR_ENOMEM;
        g = fetch_new(r, r->graph_scope,
                      prov_fmt(r->err,
                               "%s/v1.0/directory/deletedItems/microsoft.graph.application"
                               "?$filter=displayName%%20eq%%20%s",
                               r->ep->graph, lit),
                      true, deleted_app_done, f->object, "find deleted app '%s'", f->object);
        free(lit);
        return g ? enqueue(r, g) : r->err->code;
    }
    if (!app || !json_is_string(json_object_get(app, "appId")))
        return 0;
    if (!(g = principal_fetch(r, app, principal_done, NULL, f->object)))
        return r->err->code;
    g->app = f->app;
    return enqueue(r, g);
}

static int queue_apps(reader *r)
{
    for (size_t i = 0; i < r->sc->napps; i++) {
        const char *a = r->sc->apps[i];
        char *lit = odata_literal(a, r->err);
        fetch *f;
        if (!lit)
            return KVR_ENOMEM;
        f = fetch_new(r, r->graph_scope,
                      prov_fmt(r->err, "%s/v1.0/applications?$filter=displayName%%20eq%%20%s",
                               r->ep->graph, lit),
                      true, app_done, a, "find app '%s'", a);
        free(lit);
        if (!f)
            return r->err->code;
        f->app = a;
        if (enqueue(r, f) < 0)
            return r->err->code;
    }
    return 0;
}

/*
 * Apps that left the desired state. Every app kvreconcile registers carries this estate's
 * marker (KVR_APP_TAG_MANAGED + the subscription id); one list by that tag finds the ones the
 * scope no longer names, then each one's service principal and its role assignments anywhere in
 * the subscription (one list per app, filtered by principal: an app that leaves the YAML takes
 * its declared roles with it, so the vaults' own lists may no longer be read).
 */
static int retired_principal_done(reader *r, fetch *f, json_t *items)
{
    const json_t *sp = json_array_get(items, 0);
    const char *sp_id = json_string_value(json_object_get(sp, "id"));
    char *lit;
    fetch *h;
    if (kvr_live_add_app(r->l, f->aux, sp, r->err) < 0)
        return r->err->code;
    r->l->apps[r->l->napps - 1].undeclared = true;
    if (!sp_id)
        return 0;
    if (!(lit = odata_literal(sp_id, r->err)))
        return KVR_ENOMEM;
    h = fetch_new(r, r->arm_scope,
                  prov_fmt(r->err,
                           "%s/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments"
                           "?$filter=principalId%%20eq%%20%s&api-version=" ARM_ROLES_API,
                           r->ep->arm, r->sub, lit),
                  true, roles_done, NULL, "list role assignments of app '%s'", f->object);
    free(lit);
    if (h)
        h->stream = true;
    return h ? enqueue(r, h) : r->err->code;
}

static bool app_declared(const reader *r, const char *display_name)
{
    for (size_t i = 0; i < r->sc->napps; i++)
        if (strcasecmp(r->sc->apps[i], display_name) == 0) /* as Graph compares names */
            return true;
    return false;
}

static int marked_apps_done(reader *r, fetch *f, json_t *items)
{
    (void)f;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *app = json_array_get(items, i);
        const char *name = json_string_value(json_object_get(app, "displayName"));
        fetch *g;
        if (!name || !json_is_string(json_object_get(app, "appId")) || app_declared(r, name))
            continue;
        if (!(g = principal_fetch(r, app, retired_principal_done, name, name)) ||
            enqueue(r, g) < 0)
            return r->err->code;
    }
    return 0;
}

static int queue_marked_apps(reader *r)
{
    char tag[200], *lit;
    fetch *f;
    if (!r->sc->retired_apps || r->everything)
        return 0;
    snprintf(tag, sizeof(tag), KVR_APP_TAG_MANAGED "%s", r->sub);
    if (!(lit = odata_literal(tag, r->err)))
        return KVR_ENOMEM;
    f = fetch_new(r, r->graph_scope,
                  prov_fmt(r->err, "%s/v1.0/applications?$filter=tags/any(t:t%%20eq%%20%s)",
                           r->ep->graph, lit),
                  true, marked_apps_done, NULL, "list the apps this estate registered");
    free(lit);
    return f ? enqueue(r, f) : r->err->code;
}

/* ---- Key Vault ---------------------------------------------------------------------------- */

static int secret_value_done(reader *r, fetch *f, json_t *body);

/* Does the plan compare this secret's value, whatever other vaults hold? */
static bool value_declared(const reader *r, const kvr_scope_vault *v, const char *name)
{
    const ix_entry *e = ix_get(r, IX_SECRET, v->name, name);
    if (e && e->value)
        return true;
    /* a generation of a credentialRotation: <prefix>-YYYY-MM-DD */
    for (size_t i = 0; i < r->sc->nsecret_prefixes; i++) {
        const kvr_scope_object *p = &r->sc->secret_prefixes[i];
        if (kvr_str_ieq(p->vault, v->name) && kvr_is_day_copy(name, p->name))
            return true;
    }
    return false;
}

/*
 * Relocations. The plan compares a secret of a relocation's source with the target's secret of
 * the same name (kvr_plan_pass_copies, kvr_plan_copy_complete); where the target lacks it, the
 * listing alone says "copy", and the copy step reads the source value itself. So the value of a
 * secret of a relocation's vault (not otherwise compared) is read only when a vault it pairs with
 * (its copy source, or a vault copying from it) lists the same name. Until those listings are
 * complete, its listing items are held; a paired vault that is never listed (not created yet)
 * holds nothing, which the end of the queue settles (held_resolve_all).
 */
static int names_cmp(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b); /* Azure's names: ASCII, any case */
}

static bool paired(const reader *r, size_t a, size_t b)
{
    return a != b && (r->vix[a].copy_src == b || r->vix[b].copy_src == a);
}

/* Does a vault paired with `vi` list `name`? (Paired vaults not listed hold nothing.) */
static bool pair_lists(const reader *r, size_t vi, const char *name)
{
    const char *key = name;
    for (size_t j = 0; j < r->sc->nvaults; j++)
        if (paired(r, vi, j) && r->vix[j].listed && r->vix[j].nnames &&
            bsearch(&key, r->vix[j].names, r->vix[j].nnames, sizeof(char *), names_cmp))
            return true;
    return false;
}

/*
 * Queues the GET of a listed secret's value (its item is kept for secret_value_done), unless
 * this run already read back the version the listing shows (kvr_value_memo).
 */
static int queue_value(reader *r, const kvr_scope_vault *v, const char *base, const char *name,
                       json_t *it)
{
    const char *known = kvr_value_memo_current(r->memo, v->name, name, it);
    char object[300];
    fetch *g;
    if (known)
        return kvr_live_add_secret(r->l, v->name, it, known, r->err);
    snprintf(object, sizeof(object), "%s/%s", v->name, name);
    g = fetch_new(r, NULL, prov_fmt(r->err, "%s/secrets/%s/?api-version=" KV_API, base, name),
                  false, secret_value_done, object, "get secret");
    if (!g)
        return r->err->code;
    g->missing_ok = true;
    g->vault = v;
    g->order = vault_index(r, v->name) + 1;
    g->aux = json_incref(it);
    return enqueue(r, g);
}

/* Settles the held items of vault `vi`: a value GET where a paired vault lists the name. */
static int held_resolve(reader *r, size_t vi)
{
    vault_ix *x = &r->vix[vi];
    const kvr_scope_vault *v = &r->sc->vaults[vi];
    char *base = NULL;
    int rc = 0;
    x->resolved = true;
    for (size_t i = 0; !rc && i < json_array_size(x->held); i++) {
        json_t *it = json_array_get(x->held, i);
        char name[160];
        if (!kvr_id_last(json_string_value(json_object_get(it, "id")), name, sizeof(name)))
            continue;
        if (!pair_lists(r, vi, name)) {
            rc = kvr_live_add_secret(r->l, v->name, it, NULL, r->err);
            continue;
        }
        if (!base && !(base = vault_url(r, v->name)))
            rc = KVR_ENOMEM;
        else
            rc = queue_value(r, v, base, name, it);
    }
    json_decref(x->held);
    x->held = NULL;
    free(base);
    return rc;
}

/* Settles vault `vi` if it and every vault paired with it are listed. */
static int held_try(reader *r, size_t vi)
{
    if (!r->vix[vi].listed || r->vix[vi].resolved)
        return 0;
    for (size_t j = 0; j < r->sc->nvaults; j++)
        if (paired(r, vi, j) && !r->vix[j].listed)
            return 0;
    return held_resolve(r, vi);
}

/* The queue is empty, so every listing this read makes is in: settles what is still held. */
static int held_resolve_all(reader *r)
{
    int rc = 0;
    for (size_t i = 0; !rc && r->vix && i < r->sc->nvaults; i++)
        if (r->vix[i].listed && !r->vix[i].resolved)
            rc = held_resolve(r, i);
    return rc;
}

/* Records a listed name of a relocation's vault `vi`. */
static int note_name(reader *r, size_t vi, const char *name)
{
    vault_ix *x = &r->vix[vi];
    if (x->nnames == x->names_cap &&
        kvr_grow((void **)&x->names, &x->names_cap, x->nnames + 1, sizeof(*x->names)) < 0)
        return kvr_error_oom(r->err);
    if (!(x->names[x->nnames] = strdup(name)))
        return kvr_error_oom(r->err);
    x->nnames++;
    return 0;
}

/*
 * Is a declared object of this vault absent from its listing? Called with each page of the
 * streamed listing `f`; the answer is known with the last page (before it: false).
 */
static bool declared_missing(reader *r, fetch *f, bool keys, json_t *items)
{
    const kvr_scope_vault *v = f->vault;
    size_t want = keys ? vinfo(r, v)->nkeys : vinfo(r, v)->nsecrets;
    if (want == 0)
        return false;
    if (!f->stamp) /* each declaration counts once, however often it is named */
        f->stamp = r->stamp = r->stamp % STAMP_MAX + 1;
    for (size_t k = 0; k < json_array_size(items); k++) {
        char have[160];
        const json_t *it = json_array_get(items, k);
        ix_entry *e;
        if (!kvr_id_last(json_string_value(json_object_get(it, keys ? "kid" : "id")), have,
                         sizeof(have)))
            continue;
        e = ix_find(r, keys ? IX_KEY : IX_SECRET, v->name, have);
        if (e && e->declared && e->stamp != f->stamp) {
            e->stamp = f->stamp;
            f->found++;
        }
    }
    return f->last && f->found < want;
}

static int deleted_done(reader *r, fetch *f, json_t *items)
{
    for (size_t i = 0; i < json_array_size(items); i++)
        if (kvr_live_add_deleted(r->l, f->vault->name, f->kind, json_array_get(items, i),
                                 r->err) < 0)
            return r->err->code;
    return 0;
}

static int certs_done(reader *r, fetch *f, json_t *items)
{
    for (size_t i = 0; i < json_array_size(items); i++)
        if (kvr_live_add_certificate(r->l, f->vault->name, json_array_get(items, i), r->err) < 0)
            return r->err->code;
    return 0;
}

/* Queues a list of the vault's `path` (keys, secrets, deletedkeys, ...), streamed: `done` gets
   each page's items. */
static int queue_list(reader *r, const kvr_scope_vault *v, const char *path, fetch_fn done,
                      const char *kind, const char *what)
{
    char *base = vault_url(r, v->name);
    fetch *f = base ? fetch_new(r, NULL,
                                prov_fmt(r->err, "%s/%s?api-version=" KV_API "&maxresults=25",
                                         base, path),
                                true, done, NULL, "%s of vault '%s'", what, v->name)
                    : NULL;
    free(base);
    if (!f)
        return r->err->code;
    f->vault = v;
    f->kind = kind;
    f->order = vault_index(r, v->name) + 1;
    f->stream = true; /* every handler of a vault's listing takes its items page by page */
    return enqueue(r, f);
}

static int key_part_done(reader *r, fetch *f, json_t *body)
{
    key_read *k = f->key;
    json_t **slot = f->part == KEY_BUNDLE ? &k->bundle
                    : f->part == KEY_VERSIONS ? &k->versions
                                              : &k->policy;
    *slot = json_incref(body);
    if (k->pending > 1 || k->next != KEY_PARTS)
        return 0; /* fetch_free drops this part's count */
    /* the last part: the key is whole (a key deleted since it was listed has no bundle) */
    return k->bundle ? kvr_live_add_key(r->l, k->vault, k->bundle, k->versions, k->policy, r->err)
                     : 0;
}

/* The fetch of k's next part (its URL comes when it goes out: key_part_url). */
static fetch *key_part_new(reader *r, key_read *k)
{
    enum key_part p = k->next;
    char object[300];
    fetch *f;
    snprintf(object, sizeof(object), "%s/%s", k->vault, k->name);
    f = fetch_make(r, key_part_done, p == KEY_VERSIONS ? NULL : object,
                   p == KEY_BUNDLE     ? "get key"
                   : p == KEY_VERSIONS ? "list versions of key '%s'"
                                       : "get rotation policy",
                   object);
    if (!f)
        return NULL;
    f->list = p == KEY_VERSIONS;
    f->missing_ok = p != KEY_VERSIONS;
    f->key = k;
    f->order = k->order;
    f->part = p;
    k->pending++;
    do
        k->next++;
    while (k->next == KEY_POLICY && !k->policy_wanted);
    return f;
}

static char *key_part_url(reader *r, const fetch *f)
{
    static const char *const parts[] = {"/", "/versions", "/rotationpolicy"};
    return prov_fmt(r->err, "https://%s.%s/keys/%s%s?api-version=" KV_API "%s", f->key->vault,
                    r->ep->vault_suffix, f->key->name, parts[f->part],
                    f->part == KEY_VERSIONS ? "&maxresults=25" : "");
}

static int queue_key(reader *r, const kvr_scope_vault *v, const char *name)
{
    const ix_entry *e = ix_get(r, IX_KEY, v->name, name);
    size_t n = strlen(name) + 1;
    key_read *k = calloc(1, sizeof(*k) + n);
    fetch *f;
    if (!k)
        return kvr_error_oom(r->err);
    k->vault = v->name;
    k->order = vault_index(r, v->name) + 1;
    k->policy_wanted = (e && e->rotation) || r->everything;
    memcpy(k->name, name, n);
    if (!(f = key_part_new(r, k))) {
        free(k);
        return r->err->code;
    }
    return enqueue(r, f);
}

/* Whether a live profile uses the key (any version). */
static bool profile_uses(const reader *r, const char *vault, const char *name)
{
    for (size_t i = 0; i < r->l->nprofiles; i++)
        if (kvr_str_ieq(r->l->profiles[i].vault, vault) && kvr_str_ieq(r->l->profiles[i].key, name))
            return true;
    return false;
}

/*
 * Whether a listed key's details are read: its bundle, its versions and maybe its rotation
 * policy, two or three GETs. A vault may list a million keys nobody declared; reading each
 * would cost hours for nothing, since the plan only looks at keys the scope names, keys
 * kvreconcile made (their latest version carries its generation or superseded tag, which Key
 * Vault's rotation copies), which it may have to retire, and keys a profile uses. 1: read it,
 * 0: not, 2: ask again once the profiles are known.
 */
static int key_wanted(const reader *r, const kvr_scope_vault *v, const char *name, const json_t *item)
{
    const json_t *tags = json_object_get(item, "tags");
    if (r->everything || v->unmanaged_read || ix_get(r, IX_KEY, v->name, name) ||
        json_object_get(tags, KVR_TAG_GENERATION) || json_object_get(tags, KVR_TAG_SUPERSEDED))
        return 1;
    if (r->profiles_pending)
        return 2;
    return profile_uses(r, v->name, name) ? 1 : 0;
}

static int keys_done(reader *r, fetch *f, json_t *items)
{
    const kvr_scope_vault *v = f->vault;
    int rc = 0;
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        char name[160];
        int wanted;
        if (!kvr_id_last(json_string_value(json_object_get(it, "kid")), name, sizeof(name)))
            continue;
        if (json_is_true(json_object_get(it, "managed")))
            continue; /* the key half of a certificate: it moves with the certificate */
        wanted = key_wanted(r, v, name, it);
        if (wanted == 1) {
            rc = queue_key(r, v, name);
        } else if (wanted == 0 && v->unmanaged) {
            rc = kvr_live_add_unread_key(r->l, v->name, name, r->err);
        } else if (wanted == 2) {
            json_t *pair = json_pack("[I,s]", (json_int_t)vault_index(r, v->name), name);
            if ((!r->keys_waiting && !(r->keys_waiting = json_array())) || !pair ||
                json_array_append_new(r->keys_waiting, pair) < 0)
                rc = kvr_error_oom(r->err);
        }
    }
    if (!rc && declared_missing(r, f, true, items))
        rc = queue_list(r, v, "deletedkeys", deleted_done, "key", "list deleted keys");
    return rc;
}

static int secret_value_done(reader *r, fetch *f, json_t *body)
{
    char marker[KVR_MARKER_LEN + 1] = "";
    json_t *v = json_object_get(body, "value");
    if (json_is_string(v)) {
        /* jansson keeps its own copy of the string: mark it, then wipe it in place. */
        char *text = (char *)json_string_value(v);
        size_t n = json_string_length(v);
        kvr_marker(marker, r->mk, (const unsigned char *)text, n);
        OPENSSL_cleanse(text, n);
    }
    return kvr_live_add_secret(r->l, f->vault->name, f->aux, marker[0] ? marker : NULL, r->err);
}

static int secrets_done(reader *r, fetch *f, json_t *items)
{
    const kvr_scope_vault *v = f->vault;
    size_t vi = vault_index(r, v->name);
    bool reloc = vinfo(r, v)->reloc;
    char *base = vault_url(r, v->name);
    int rc = base ? 0 : KVR_ENOMEM;
    for (size_t i = 0; !rc && i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        char name[160];
        if (!kvr_id_last(json_string_value(json_object_get(it, "id")), name, sizeof(name)))
            continue;
        if (json_is_true(json_object_get(it, "managed")))
            continue; /* the secret half of a certificate: copied with the certificate */
        if (reloc && (rc = note_name(r, vi, name)) < 0)
            break;
        if (value_declared(r, v, name)) {
            rc = queue_value(r, v, base, name, it);
        } else if (reloc) {
            /* compared only if a paired vault holds it too: wait for their listings */
            if (!r->vix[vi].held && !(r->vix[vi].held = json_array()))
                rc = kvr_error_oom(r->err);
            else if (json_array_append(r->vix[vi].held, it) < 0)
                rc = kvr_error_oom(r->err);
        } else {
            rc = kvr_live_add_secret(r->l, v->name, it, NULL, r->err);
        }
    }
    free(base);
    if (!rc && declared_missing(r, f, false, items))
        rc = queue_list(r, v, "deletedsecrets", deleted_done, "secret", "list deleted secrets");
    if (!rc && reloc && f->last) {
        vault_ix *x = &r->vix[vi];
        if (x->nnames > 1)
            qsort(x->names, x->nnames, sizeof(*x->names), names_cmp);
        x->listed = true;
        rc = held_try(r, vi);
        for (size_t j = 0; !rc && j < r->sc->nvaults; j++)
            if (paired(r, vi, j))
                rc = held_try(r, j);
    }
    return rc;
}

/* A vault found: the reads it asks for at least, towards whether the budget binds (PACE_HEADROOM).
   A group's vaults come a page of its list at a time, each page counted before its vaults'
   first reads go. */
static void kv_bound_note(reader *r, const kvr_scope_vault *v)
{
    r->kv_least += 2.0 + 2.0 * (double)vinfo(r, v)->nkeys;
    if (r->kv_least * (PACE_HEADROOM - 1.0) >= PACE_HEADROOM * r->kv_burst)
        r->kv_bound = true;
}

static int queue_vault_contents(reader *r, const kvr_scope_vault *v)
{
    /* certificates matter to a relocation that copies them, on either side, and to a plan that
       reports or retires what the vault holds undeclared */
    bool certs = vinfo(r, v)->certs || r->everything || v->unmanaged || v->unmanaged_read;
    int rc;
    kv_bound_note(r, v);
    rc = queue_list(r, v, "keys", keys_done, NULL, "list keys");
    if (!rc)
        rc = queue_list(r, v, "secrets", secrets_done, NULL, "list secrets");
    if (!rc && certs)
        rc = queue_list(r, v, "certificates", certs_done, NULL, "list certificates");
    return rc;
}

/* ---- profiles ----------------------------------------------------------------------------- */

static int profiles_done(reader *r, fetch *f, json_t *items)
{
    int rc = 0;
    (void)f;
    for (size_t i = 0; i < json_array_size(items); i++)
        if (kvr_live_add_profile(r->l, json_array_get(items, i), r->err) < 0)
            return r->err->code;
    /* the keys listed meanwhile that nothing declares: read those a profile uses */
    r->profiles_pending = false;
    for (size_t i = 0; !rc && i < json_array_size(r->keys_waiting); i++) {
        const json_t *pair = json_array_get(r->keys_waiting, i);
        const kvr_scope_vault *v = &r->sc->vaults[json_integer_value(json_array_get(pair, 0))];
        const char *name = json_string_value(json_array_get(pair, 1));
        if (!profile_uses(r, v->name, name)) {
            if (v->unmanaged && (rc = kvr_live_add_unread_key(r->l, v->name, name, r->err)) < 0)
                break;
            continue;
        }
        rc = queue_key(r, v, name);
    }
    json_decref(r->keys_waiting);
    r->keys_waiting = NULL;
    return rc;
}

static int queue_profiles(reader *r)
{
    fetch *f;
    if (!r->sc->profiles)
        return 0;
    if (!r->ep->profiles)
        return kvr_error_set(r->err, KVR_EINVAL,
                             "the profile service's endpoint is not set: give 'cloud: "
                             "{profileService: https://…}' or KVR_PROFILE_ENDPOINT");
    f = fetch_new(r, r->profiles_scope,
                  prov_fmt(r->err, "%s/encryptionProfiles?api-version=" PROFILES_API,
                           r->ep->profiles),
                  true, profiles_done, NULL, "list encryption profiles");
    if (f)
        r->profiles_pending = true;
    return f ? enqueue(r, f) : r->err->code;
}

/* ---- a scope that names nothing --------------------------------------------------------- */

static int clock_done(reader *r, fetch *f, json_t *body)
{
    (void)r;
    (void)f;
    (void)body;
    return 0; /* complete() took the Date: that is all this read is for */
}

/* An empty scope still needs the service's clock (and a subscription that exists): one GET of
   the subscription. */
static int queue_clock(reader *r)
{
    fetch *f = fetch_new(r, r->arm_scope,
                         prov_fmt(r->err, "%s/subscriptions/%s?api-version=" ARM_SUBS_API,
                                  r->ep->arm, r->sub),
                         false, clock_done, r->sub, "get subscription");
    return f ? enqueue(r, f) : r->err->code;
}

/* ---- canonical order ---------------------------------------------------------------------- */

static int by_vault_name(const char *va, const char *na, const char *vb, const char *nb)
{
    int c = strcasecmp(va, vb);
    return c ? c : strcmp(na, nb);
}

static int key_cmp(const void *a, const void *b)
{
    const kvr_live_key *x = a, *y = b;
    return by_vault_name(x->vault, x->name, y->vault, y->name);
}

static int secret_cmp(const void *a, const void *b)
{
    const kvr_live_secret *x = a, *y = b;
    return by_vault_name(x->vault, x->name, y->vault, y->name);
}

static int cert_cmp(const void *a, const void *b)
{
    const kvr_live_cert *x = a, *y = b;
    return by_vault_name(x->vault, x->name, y->vault, y->name);
}

static int unread_cmp(const void *a, const void *b)
{
    const kvr_live_name *x = a, *y = b;
    return by_vault_name(x->vault, x->name, y->vault, y->name);
}

static int deleted_cmp(const void *a, const void *b)
{
    const kvr_live_deleted *x = a, *y = b;
    int c = strcmp(x->kind, y->kind);
    return c ? c : by_vault_name(x->vault, x->name, y->vault, y->name);
}

static int role_cmp(const void *a, const void *b)
{
    const kvr_live_role *x = a, *y = b;
    return by_vault_name(x->scope ? x->scope : "", x->name ? x->name : "",
                         y->scope ? y->scope : "", y->name ? y->name : "");
}

static int app_cmp(const void *a, const void *b)
{
    const kvr_live_app *x = a, *y = b;
    return strcmp(x->display_name ? x->display_name : "", y->display_name ? y->display_name : "");
}

static int vault_cmp(const void *a, const void *b)
{
    const kvr_live_vault *x = a, *y = b;
    return by_vault_name(x->name, x->resource_group ? x->resource_group : "", y->name,
                         y->resource_group ? y->resource_group : "");
}

static int deleted_vault_cmp(const void *a, const void *b)
{
    const kvr_live_deleted_vault *x = a, *y = b;
    return strcasecmp(x->name, y->name);
}

static void sort(void *items, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) /* qsort of a NULL array is undefined even when empty */
        qsort(items, n, size, cmp);
}

/* Whatever order the answers came in, the same estate gives the same live model. */
static void canonical_order(kvr_live *l)
{
    sort(l->vaults, l->nvaults, sizeof(*l->vaults), vault_cmp);
    sort(l->deleted_vaults, l->ndeleted_vaults, sizeof(*l->deleted_vaults), deleted_vault_cmp);
    /* a vault is live or deleted, never both; whichever list came back first */
    if (l->ndeleted_vaults) {
        size_t k = 0;
        for (size_t i = 0; i < l->ndeleted_vaults; i++)
            if (!kvr_live_vault_get(l, l->deleted_vaults[i].name))
                l->deleted_vaults[k++] = l->deleted_vaults[i];
        l->ndeleted_vaults = k; /* the strings are the pool's */
    }
    sort(l->keys, l->nkeys, sizeof(*l->keys), key_cmp);
    sort(l->secrets, l->nsecrets, sizeof(*l->secrets), secret_cmp);
    sort(l->certs, l->ncerts, sizeof(*l->certs), cert_cmp);
    sort(l->unread_keys, l->nunread_keys, sizeof(*l->unread_keys), unread_cmp);
    sort(l->deleted, l->ndeleted, sizeof(*l->deleted), deleted_cmp);
    sort(l->roles, l->nroles, sizeof(*l->roles), role_cmp);
    /* an assignment two lists returned (a vault's, and a retired app's in the subscription) */
    if (l->nroles > 1) {
        size_t k = 1;
        for (size_t i = 1; i < l->nroles; i++)
            if (role_cmp(&l->roles[k - 1], &l->roles[i]) != 0)
                l->roles[k++] = l->roles[i];
        l->nroles = k; /* the strings are the pool's */
    }
    sort(l->apps, l->napps, sizeof(*l->apps), app_cmp);
}

/* The vault reads' pace from KVR_KV_READ_BUDGET (see KV_READ_BUDGET). */
static int kv_pace(reader *r)
{
    const char *t = getenv("KVR_KV_READ_BUDGET");
    long n = KV_READ_BUDGET;
    if (t && *t) {
        char *end = NULL;
        n = strtol(t, &end, 10);
        if (!end || *end || n < KV_READ_BUDGET_MIN || n > KV_SUB_LIMIT)
            return kvr_error_set(r->err, KVR_EINVAL, /* not echoed: it may hold anything */
                                 "KVR_KV_READ_BUDGET must be a whole number from %d to %d (Key "
                                 "Vault requests in any 10 seconds)",
                                 KV_READ_BUDGET_MIN, KV_SUB_LIMIT);
    }
    r->kv_burst = (double)(n * 2 / 17);
    r->kv_rate = ((double)n - r->kv_burst) / 10.0;
    return 0;
}

int kvr_live_read_scope(kvr_live **out, kvr_auth *a, const kvr_endpoints *ep,
                        const kvr_scope *scope, const kvr_marker_key *mk,
                        const kvr_value_memo *memo, kvr_error *err)
{
    reader r;
    kvr_error local;
    int rc;

    *out = NULL;
    if (!scope->subscription)
        return kvr_error_set(err, KVR_EINVAL,
                             "no subscription: give 'subscription:' in the desired state or "
                             "AZURE_SUBSCRIPTION_ID");
    memset(&r, 0, sizeof(r));
    r.a = a;
    r.ep = ep;
    r.sc = scope;
    r.sub = scope->subscription;
    snprintf(r.kv_budget, sizeof(r.kv_budget), "keyvault/subscriptions/%s", r.sub);
    r.mk = mk;
    r.memo = memo;
    r.everything = scope->everything;
    r.err = err ? err : &local;
    r.err->code = 0;
    r.err->message[0] = '\0';
    if ((rc = kv_pace(&r)) < 0)
        return rc;
    r.l = calloc(1, sizeof(*r.l));
    r.arm_scope = prov_fmt(err, "%s/.default", ep->arm);
    r.graph_scope = prov_fmt(err, "%s/.default", ep->graph);
    r.profiles_scope = ep->profiles ? prov_fmt(err, "%s/.default", ep->profiles) : NULL;
    if (!r.l || !r.arm_scope || !r.graph_scope || (ep->profiles && !r.profiles_scope)) {
        rc = kvr_error_oom(err);
        goto done;
    }
    if ((rc = index_build(&r)) < 0)
        goto done;
    /* the roots; everything else is queued by the handlers as what it depends on arrives */
    if ((rc = queue_vaults(&r)) < 0 || (rc = queue_apps(&r)) < 0 ||
        (rc = queue_marked_apps(&r)) < 0 ||
        (rc = queue_profiles(&r)) < 0 || (r.queued == 0 && (rc = queue_clock(&r)) < 0))
        goto done;
    if ((rc = run_queue(&r)) < 0)
        goto done;
    if (scope->dependents && (rc = kvr__dependents_read(r.l, a, ep, scope, err)) < 0)
        goto done;
    {
        /* best effort: unknown, the runner's own access would only be reported */
        kvr_error ignored;
        char *oid = NULL;
        if (kvr__arm_claim(&oid, a, ep, "oid", &ignored) == 0 && oid &&
            !(r.l->self_object_id = kvr_strpool_dup(&r.l->strings, oid)))
            rc = kvr_error_oom(err);
        free(oid);
        if (rc < 0)
            goto done;
    }
    canonical_order(r.l);
    if (!r.l->now)
        rc = kvr_error_set(err, KVR_EPROTO,
                           "no response carried a Date header: the service's clock is unknown, "
                           "and retention is never measured on this machine's clock");
done:
    drop_queue(&r);
    free(r.bk);
    free(r.ready);
    free(r.active);
    free(r.ix);
    free(r.slots);
    for (size_t i = 0; r.vix && i < scope->nvaults; i++) {
        for (size_t k = 0; k < r.vix[i].nnames; k++)
            free(r.vix[i].names[k]);
        free(r.vix[i].names);
        json_decref(r.vix[i].held);
    }
    free(r.vix);
    json_decref(r.keys_waiting);
    for (size_t i = 0; i < r.nrgs; i++)
        free(r.rgs[i].vaults);
    free(r.rgs);
    free(r.arm_scope);
    free(r.graph_scope);
    free(r.profiles_scope);
    if (rc < 0) {
        kvr_live_free(r.l);
        return rc;
    }
    *out = r.l;
    return 0;
}

/* ---- values read back within a run -------------------------------------------------------- */

/*
 * Seconds between a version's `updated` and the Date of the read that saw it before the memo
 * vouches for it: Key Vault's front ends (Date) and the store (`updated`) keep NTP time, and a
 * change made after the read must carry an `updated` later than the one read.
 */
#define MEMO_SKEW_S 2

typedef struct memo_entry {
    char *vault, *name;
    char marker[KVR_MARKER_LEN + 1];
    int64_t updated; /* the `updated` of the version read */
    int64_t read_at; /* the Date of the read */
} memo_entry;

struct kvr_value_memo {
    memo_entry *e;
    size_t n, cap;
    kvr_index ix;
};

typedef struct memo_key {
    const kvr_value_memo *m;
    const char *vault, *name;
} memo_key;

static uint64_t memo_hash(const char *vault, const char *name)
{
    return kvr_hash_ci(kvr_hash_ci(KVR_HASH_SEED, vault) ^ 0x2f, name);
}

static bool memo_is(const void *arg, size_t i)
{
    const memo_key *k = arg;
    return kvr_str_ieq(k->m->e[i].vault, k->vault) && kvr_str_ieq(k->m->e[i].name, k->name);
}

static memo_entry *memo_get(const kvr_value_memo *m, const char *vault, const char *name)
{
    memo_key k = {m, vault, name};
    size_t i = m && vault && name ? kvr_index_first(&m->ix, memo_hash(vault, name), memo_is, &k)
                                  : KVR_INDEX_NONE;
    return i == KVR_INDEX_NONE ? NULL : &m->e[i];
}

const char *kvr_value_memo_current(const kvr_value_memo *m, const char *vault, const char *name,
                                   const json_t *item)
{
    const memo_entry *e = memo_get(m, vault, name);
    const json_t *up = json_object_get(json_object_get(item, "attributes"), "updated");
    if (!e || !json_is_integer(up) || json_integer_value(up) != e->updated)
        return NULL;
    return e->updated + MEMO_SKEW_S < e->read_at ? e->marker : NULL;
}

int kvr_value_memo_new(kvr_value_memo **out, kvr_error *err)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : kvr_error_oom(err);
}

void kvr_value_memo_free(kvr_value_memo *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].vault);
        free(m->e[i].name);
        OPENSSL_cleanse(m->e[i].marker, sizeof(m->e[i].marker));
    }
    free(m->e);
    kvr_index_release(&m->ix);
    free(m);
}

int kvr_value_memo_put(kvr_value_memo *m, const char *vault, const char *name, const char *marker,
                       int64_t updated, int64_t read_at)
{
    memo_entry *e = memo_get(m, vault, name);
    if (!e) {
        if (m->n == m->cap && kvr_grow((void **)&m->e, &m->cap, m->n + 1, sizeof(*m->e)) < 0)
            return KVR_ENOMEM;
        e = &m->e[m->n];
        memset(e, 0, sizeof(*e));
        if (!(e->vault = strdup(vault)) || !(e->name = strdup(name)) ||
            kvr_index_put(&m->ix, memo_hash(vault, name), m->n) < 0) {
            free(e->vault);
            free(e->name);
            return KVR_ENOMEM;
        }
        m->n++;
    }
    snprintf(e->marker, sizeof(e->marker), "%s", marker);
    e->updated = updated;
    e->read_at = read_at;
    return 0;
}

int kvr_value_memo_read(kvr_value_memo *m, kvr_auth *a, const kvr_endpoints *ep,
                        const char *const *vaults, const char *const *names, size_t n,
                        const kvr_marker_key *mk, kvr_error *err)
{
    kvr_http_request *reqs = calloc(n + 1, sizeof(*reqs));
    kvr_http_response *resp = calloc(n + 1, sizeof(*resp));
    int *codes = calloc(n + 1, sizeof(*codes));
    kvr_error *errs = calloc(n + 1, sizeof(*errs));
    char **urls = calloc(n + 1, sizeof(*urls));
    int rc = 0, recorded = 0;

    if (!reqs || !resp || !codes || !errs || !urls) {
        rc = kvr_error_oom(err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        urls[i] = prov_fmt(err, "https://%s.%s/secrets/%s/?api-version=" KV_API, vaults[i],
                           ep->vault_suffix, names[i]);
        if (!urls[i]) {
            rc = KVR_ENOMEM;
            goto done;
        }
        /* one try: whatever does not answer now is read by the next read of the estate */
        reqs[i] = (kvr_http_request){.method = "GET", .url = urls[i], .flags = KVR_HTTP_NO_RETRY};
        kvr_http_response_init(&resp[i]);
    }
    if (n)
        kvr_auth_send_kv(resp, codes, a, reqs, n, errs);
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *body, *v, *up;
        int64_t date = 0;
        if (codes[i] < 0 || resp[i].status != 200 || !resp[i].date ||
            kvr_time_parse_http(&date, resp[i].date) < 0)
            continue;
        body = json_loadb(resp[i].body, resp[i].body_len, 0, NULL);
        v = json_object_get(body, "value");
        up = json_object_get(json_object_get(body, "attributes"), "updated");
        if (json_is_string(v) && json_is_integer(up)) {
            char marker[KVR_MARKER_LEN + 1];
            char *text = (char *)json_string_value(v);
            size_t len = json_string_length(v);
            kvr_marker(marker, mk, (const unsigned char *)text, len);
            OPENSSL_cleanse(text, len);
            int64_t updated = json_integer_value(up);
            if (kvr_value_memo_put(m, vaults[i], names[i], marker, updated, date) < 0)
                rc = kvr_error_oom(err);
            else
                recorded++;
            OPENSSL_cleanse(marker, sizeof(marker));
        }
        json_decref(body);
    }
done:
    for (size_t i = 0; resp && i < n; i++)
        kvr_http_response_release(&resp[i]);
    for (size_t i = 0; urls && i < n; i++)
        free(urls[i]);
    free(urls);
    free(reqs);
    free(resp);
    free(codes);
    free(errs);
    return rc < 0 ? rc : recorded;
}
