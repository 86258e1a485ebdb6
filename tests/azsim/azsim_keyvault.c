/*
 * azsim_keyvault.c - NAME.vault.localhost, the Key Vault data plane of one simulated vault. It
 * speaks the 7.x wire format: the 401 bearer challenge, keys with real RSA/EC material from OpenSSL
 * (create, versions, rotate, rotation policy, wrap/unwrap and encrypt/decrypt with RSA-OAEP,
 * RSA-OAEP-256 and RSA1_5), secrets, certificates (imported PFX or PEM, each owning a managed key
 * and secret of its name and version; the X.509 work is in azsim_certs.c), soft delete with
 * recover/purge and purge protection, sealed backup/restore (same subscription and geography),
 * paging with nextLink, the service's error codes, RBAC by data action or access policies, and
 * per-vault throttling at the published limits. Times are integer Unix seconds of the simulated
 * clock, so tests can age keys, expire them and reach purge dates.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define PAGE_MAX 25

enum kind { KEY, SECRET, CERT };

typedef struct kv_ctx {
    azsim_req *r;
    azsim_state *st;
    azsim_vault *v;
    azsim_caller caller;
    char *base; /* https://NAME.vault.localhost:PORT */
    const char *api;
} kv_ctx;

/* ---------- lifecycle ---------- */

static void version_free(azsim_kv_version *ver)
{
    if (!ver)
        return;
    json_decref(ver->tags);
    json_decref(ver->key_ops);
    json_decref(ver->x5c);
    free(ver->content_type);
    azsim_secret_free(ver->value);
    azsim_secret_free(ver->pem);
    EVP_PKEY_free(ver->pkey);
    json_decref(ver->jwk);
    free(ver->kty);
    free(ver);
}

/*
 * A version loaded from the state file (or a backup) has only its PEM: parsing every key at start
 * took OpenSSL 3's decoder about half a millisecond a key, 16 s for a benchmark estate, so the
 * parse waits for the first operation that needs the private key. The load checked the PEM's
 * armour and PKCS#8 structure (pem_plausible); a PEM that passes and still does not parse makes
 * each operation that needs the key answer 500 InternalError (key_unreadable), and nothing else.
 */
EVP_PKEY *azsim_kv_version_pkey(azsim_kv_version *ver)
{
    if (!ver->pkey && ver->pem && !ver->pem_bad) {
        BIO *b = BIO_new_mem_buf(ver->pem, -1);
        ver->pkey = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!ver->pkey) { /* said once, not tried again on every read */
            ver->pem_bad = 1;
            fprintf(stderr, "azsim: the private key of version '%s' does not parse\n", ver->id);
        }
    }
    return ver->pkey;
}

/* The public members of the JWK of pkey (n and e, or crv, x and y); new reference or NULL. */
static json_t *jwk_members(EVP_PKEY *pkey)
{
    json_t *jwk = azsim_jwk_public(pkey, NULL);
    if (jwk)
        json_object_del(jwk, "kty"); /* the version's kty says HSM or not */
    return jwk;
}

/* Gives pkey (owned) to a new key version with its public JWK, which key GETs are served from. */
static int version_set_key(azsim_kv_version *ver, EVP_PKEY *pkey)
{
    ver->pkey = pkey;
    ver->jwk = pkey ? jwk_members(pkey) : NULL;
    return ver->jwk ? AZSIM_OK : AZSIM_ERR;
}

/* The public JWK members of a key version (borrowed): kept with the version since it was made;
 * a version loaded from a state saved before they were kept gets them here, once, by parsing its
 * key. NULL if the key does not parse. */
static json_t *version_jwk(azsim_kv_version *ver)
{
    if (!ver->jwk) {
        EVP_PKEY *pkey = azsim_kv_version_pkey(ver);
        ver->jwk = pkey ? jwk_members(pkey) : NULL;
    }
    return ver->jwk;
}

static void object_free(azsim_kv_object *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->versions.n; i++)
        version_free(o->versions.items[i]);
    free(o->versions.items);
    json_decref(o->rotation_policy);
    json_decref(o->cert_policy);
    free(o->name);
    free(o);
}

void azsim_vault_free(azsim_vault *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->keys.n; i++)
        object_free(v->keys.items[i]);
    for (size_t i = 0; i < v->secrets.n; i++)
        object_free(v->secrets.items[i]);
    for (size_t i = 0; i < v->certs.n; i++)
        object_free(v->certs.items[i]);
    free(v->keys.items);
    free(v->secrets.items);
    free(v->certs.items);
    json_decref(v->props);
    json_decref(v->tags);
    free(v->name);
    free(v->sub);
    free(v->rg);
    free(v->location);
    free(v);
}

static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 1099511628211u;
    return (size_t)(h ^ (h >> 29));
}

/* The table of azsim_vault_find, made again after the vault list changed (NULL: no memory). */
static azsim_vault **vault_slots(azsim_state *st)
{
    size_t n = 16;
    if (st->vault_slots && st->vault_slots_gen == st->vaults.gen)
        return st->vault_slots;
    while (n < 2 * st->vaults.n)
        n *= 2;
    free(st->vault_slots);
    if (!(st->vault_slots = calloc(n, sizeof(*st->vault_slots))))
        return NULL;
    st->vault_slots_n = n;
    st->vault_slots_gen = st->vaults.gen;
    for (size_t i = 0; i < st->vaults.n; i++) {
        azsim_vault *v = st->vaults.items[i];
        size_t h = name_hash(v->name) & (n - 1);
        while (st->vault_slots[h]) /* a name twice (not made by the API): the first is found */
            h = (h + 1) & (n - 1);
        st->vault_slots[h] = v;
    }
    return st->vault_slots;
}

/* Vault names are compared without case, as Azure's are; by hash: 2,000 vaults are looked up
   hundreds of thousands of times by a large plan. */
azsim_vault *azsim_vault_find(azsim_state *st, const char *name)
{
    azsim_vault **slots;
    if (!name)
        return NULL;
    if (!(slots = vault_slots(st))) { /* out of memory: the walk */
        for (size_t i = 0; i < st->vaults.n; i++)
            if (azsim_streq_ci(((azsim_vault *)st->vaults.items[i])->name, name))
                return st->vaults.items[i];
        return NULL;
    }
    for (size_t h = name_hash(name) & (st->vault_slots_n - 1); slots[h];
         h = (h + 1) & (st->vault_slots_n - 1))
        if (azsim_streq_ci(slots[h]->name, name))
            return slots[h];
    return NULL;
}

static azsim_vec *objects(azsim_vault *v, enum kind k)
{
    return k == KEY ? &v->keys : k == SECRET ? &v->secrets : &v->certs;
}

static azsim_kv_object *object_find(azsim_vault *v, enum kind k, const char *name, size_t *idx)
{
    azsim_vec *vec = objects(v, k);
    for (size_t i = 0; i < vec->n; i++) {
        azsim_kv_object *o = vec->items[i];
        if (azsim_streq_ci(o->name, name)) {
            if (idx)
                *idx = i;
            return o;
        }
    }
    return NULL;
}

static azsim_kv_version *latest(azsim_kv_object *o)
{
    return o->versions.n ? o->versions.items[o->versions.n - 1] : NULL;
}

static azsim_kv_version *version_find(azsim_kv_object *o, const char *id)
{
    if (!id || !*id)
        return latest(o);
    for (size_t i = 0; i < o->versions.n; i++) {
        azsim_kv_version *ver = o->versions.items[i];
        if (strcasecmp(ver->id, id) == 0)
            return ver;
    }
    return NULL;
}

/* ---------- errors ---------- */

static int kv_error(kv_ctx *c, unsigned status, const char *code, const char *inner,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int kv_error(kv_ctx *c, unsigned status, const char *code, const char *inner,
                    const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:s,s:s}", "code", code, "message", msg);
    if (err && inner)
        json_object_set_new(err, "innererror", json_pack("{s:s}", "code", inner));
    azsim_set_header(c->r, "x-ms-error-code", code);
    return azsim_reply_json(c->r, status, json_pack("{s:o}", "error", err));
}

static const char *kind_word(enum kind k)
{
    return k == KEY ? "key" : k == SECRET ? "secret" : "certificate";
}

static const char *kind_coll(enum kind k)
{
    return k == KEY ? "keys" : k == SECRET ? "secrets" : "certificates";
}

static const char *not_found_code(enum kind k)
{
    return k == KEY ? "KeyNotFound" : k == SECRET ? "SecretNotFound" : "CertificateNotFound";
}

static int not_found(kv_ctx *c, enum kind k, const char *name)
{
    const char *what = kind_word(k);
    return kv_error(c, 404, not_found_code(k), NULL,
                    "A %s with (name/id) %s was not found in this key vault. If you recently "
                    "deleted this %s you may be able to recover it using the correct recovery "
                    "command. For help resolving this issue, please see "
                    "https://go.microsoft.com/fwlink/?linkid=2125182",
                    what, name, what);
}

static int deleted_not_found(kv_ctx *c, enum kind k)
{
    return kv_error(c, 404, not_found_code(k), NULL, "Deleted %s not found",
                    k == KEY      ? "Key"
                    : k == SECRET ? "Secret"
                                  : "Certificate");
}

static int bad_param(kv_ctx *c, const char *msg)
{
    return kv_error(c, 400, "BadParameter", NULL, "%s", msg);
}

/* A key version whose stored PEM does not parse (see azsim_kv_version_pkey). */
static int key_unreadable(kv_ctx *c, azsim_kv_version *ver)
{
    return kv_error(c, 500, "InternalError", NULL, "The key material of version %s cannot be read.",
                    ver->id);
}

/* ---------- JSON renderings ---------- */

static const char *recovery_level(azsim_vault *v)
{
    if (!v->soft_delete)
        return "Purgeable";
    if (v->retention_days >= 90)
        return v->purge_protection ? "Recoverable" : "Recoverable+Purgeable";
    return v->purge_protection ? "CustomizedRecoverable" : "CustomizedRecoverable+Purgeable";
}

/*
 * The bodies of Key Vault's objects (bundles, list items) are written as text (azsim_text), not
 * built as trees and dumped: they are most of what azsim answers. Members go in the order Key
 * Vault's own answers have them, the same bytes the trees gave.
 */

/* `"name":`, after a comma unless it is the object's first member */
#define MEMBER(t, first, name) member((t), (first), "\"" name "\":", sizeof("\"" name "\":") - 1)
static void member(azsim_text *t, int *first, const char *key, size_t n)
{
    if (!*first)
        AZSIM_TEXT_LIT(t, ",");
    *first = 0;
    azsim_text_add(t, key, n);
}

static void text_bool(azsim_text *t, int v)
{
    if (v)
        AZSIM_TEXT_LIT(t, "true");
    else
        AZSIM_TEXT_LIT(t, "false");
}

/* A string that may be missing because it could not be made: the text fails. */
static void text_made(azsim_text *t, const char *s)
{
    if (s)
        azsim_text_str(t, s);
    else
        t->failed = 1;
}

static void attributes_text(azsim_text *t, kv_ctx *c, azsim_kv_version *ver, enum kind k)
{
    AZSIM_TEXT_LIT(t, "{\"enabled\":");
    text_bool(t, ver->enabled);
    if (ver->has_nbf) {
        AZSIM_TEXT_LIT(t, ",\"nbf\":");
        azsim_text_int(t, ver->nbf);
    }
    if (ver->has_exp) {
        AZSIM_TEXT_LIT(t, ",\"exp\":");
        azsim_text_int(t, ver->exp);
    }
    AZSIM_TEXT_LIT(t, ",\"created\":");
    azsim_text_int(t, ver->created);
    AZSIM_TEXT_LIT(t, ",\"updated\":");
    azsim_text_int(t, ver->updated);
    AZSIM_TEXT_LIT(t, ",\"recoveryLevel\":");
    azsim_text_str(t, recovery_level(c->v));
    AZSIM_TEXT_LIT(t, ",\"recoverableDays\":");
    azsim_text_int(t, c->v->soft_delete ? c->v->retention_days : 0);
    if (k == KEY) {
        AZSIM_TEXT_LIT(t, ",\"exportable\":");
        text_bool(t, ver->exportable);
    }
    AZSIM_TEXT_LIT(t, "}");
}

static char *object_url(kv_ctx *c, enum kind k, const char *name, const char *version)
{
    const char *coll = kind_coll(k);
    if (version)
        return azsim_printf("%s/%s/%s/%s", c->base, coll, name, version);
    return azsim_printf("%s/%s/%s", c->base, coll, name);
}

/* A deleted object's first members (where soft delete keeps it) */
static void deleted_text(azsim_text *t, int *first, kv_ctx *c, azsim_kv_object *o, enum kind k)
{
    char *rid;
    if (!o->deleted || !c->v->soft_delete)
        return;
    rid = azsim_printf("%s/deleted%s/%s", c->base, kind_coll(k), o->name);
    MEMBER(t, first, "recoveryId");
    text_made(t, rid);
    MEMBER(t, first, "deletedDate");
    azsim_text_int(t, o->deleted_date);
    MEMBER(t, first, "scheduledPurgeDate");
    azsim_text_int(t, o->purge_date);
    free(rid);
}

static void tags_text(azsim_text *t, int *first, azsim_kv_version *ver)
{
    if (ver->tags && json_object_size(ver->tags) > 0) {
        MEMBER(t, first, "tags");
        azsim_text_json(t, ver->tags);
    }
}

static char *cert_x5t(azsim_kv_version *ver);
static json_t *cert_policy_json(kv_ctx *c, azsim_kv_object *o);
static int cert_add_managed(kv_ctx *c, azsim_kv_object *co);
static void cert_drop_managed(kv_ctx *c, const char *name);

/* A key's bundle: its JWK from the members kept with the version (a GET parses no key). */
static void key_bundle_text(azsim_text *t, kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver)
{
    json_t *members = version_jwk(ver), *v;
    char *url = object_url(c, KEY, o->name, ver->id);
    const char *name;
    int first = 1;
    if (!members || !ver->kty || !ver->key_ops)
        t->failed = 1;
    AZSIM_TEXT_LIT(t, "{");
    deleted_text(t, &first, c, o, KEY);
    MEMBER(t, &first, "key");
    AZSIM_TEXT_LIT(t, "{\"kid\":");
    text_made(t, url);
    AZSIM_TEXT_LIT(t, ",\"kty\":");
    text_made(t, ver->kty);
    json_object_foreach(members, name, v)
    {
        AZSIM_TEXT_LIT(t, ",");
        azsim_text_str(t, name);
        AZSIM_TEXT_LIT(t, ":");
        azsim_text_json(t, v);
    }
    AZSIM_TEXT_LIT(t, ",\"key_ops\":");
    azsim_text_json(t, ver->key_ops);
    AZSIM_TEXT_LIT(t, "}");
    if (o->managed) {
        MEMBER(t, &first, "managed");
        AZSIM_TEXT_LIT(t, "true");
    }
    MEMBER(t, &first, "attributes");
    attributes_text(t, c, ver, KEY);
    tags_text(t, &first, ver);
    AZSIM_TEXT_LIT(t, "}");
    free(url);
}

static void secret_bundle_text(azsim_text *t, kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver,
                               int with_value)
{
    char *url = object_url(c, SECRET, o->name, ver->id);
    int first = 1;
    AZSIM_TEXT_LIT(t, "{");
    deleted_text(t, &first, c, o, SECRET);
    if (with_value) {
        MEMBER(t, &first, "value");
        text_made(t, ver->value);
    }
    if (ver->content_type) {
        MEMBER(t, &first, "contentType");
        azsim_text_str(t, ver->content_type);
    }
    MEMBER(t, &first, "id");
    text_made(t, url);
    if (o->managed) {
        /* the secret of a certificate names its key, as Key Vault does */
        char *kid = object_url(c, KEY, o->name, ver->id);
        MEMBER(t, &first, "kid");
        text_made(t, kid);
        MEMBER(t, &first, "managed");
        AZSIM_TEXT_LIT(t, "true");
        free(kid);
    }
    MEMBER(t, &first, "attributes");
    attributes_text(t, c, ver, SECRET);
    tags_text(t, &first, ver);
    AZSIM_TEXT_LIT(t, "}");
    free(url);
}

static void cert_bundle_text(azsim_text *t, kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver)
{
    char *id = object_url(c, CERT, o->name, ver->id);
    char *kid = object_url(c, KEY, o->name, ver->id);
    char *sid = object_url(c, SECRET, o->name, ver->id);
    char *x5t = cert_x5t(ver);
    json_t *cer = json_array_get(ver->x5c, 0), *policy = cert_policy_json(c, o);
    int first = 1;
    if (!cer || !policy)
        t->failed = 1;
    AZSIM_TEXT_LIT(t, "{");
    deleted_text(t, &first, c, o, CERT);
    MEMBER(t, &first, "id");
    text_made(t, id);
    MEMBER(t, &first, "kid");
    text_made(t, kid);
    MEMBER(t, &first, "sid");
    text_made(t, sid);
    MEMBER(t, &first, "x5t");
    text_made(t, x5t);
    MEMBER(t, &first, "cer");
    azsim_text_json(t, cer);
    MEMBER(t, &first, "attributes");
    attributes_text(t, c, ver, CERT);
    MEMBER(t, &first, "policy");
    azsim_text_json(t, policy);
    if (ver->content_type) {
        MEMBER(t, &first, "contentType");
        azsim_text_str(t, ver->content_type);
    }
    tags_text(t, &first, ver);
    AZSIM_TEXT_LIT(t, "}");
    json_decref(policy);
    free(id);
    free(kid);
    free(sid);
    free(x5t);
}

/* 200 with the bundle of ver; 500 InternalError when ver is a key whose material cannot be read. */
static int reply_bundle(kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver, enum kind k,
                        int with_value)
{
    azsim_text t = {0};
    if (k == KEY && !version_jwk(ver))
        return key_unreadable(c, ver);
    if (k == KEY)
        key_bundle_text(&t, c, o, ver);
    else if (k == SECRET)
        secret_bundle_text(&t, c, o, ver, with_value);
    else
        cert_bundle_text(&t, c, o, ver);
    return azsim_reply_text(c->r, 200, &t);
}

/* A list's item: the object's (or version's) id, attributes, tags, contentType. */
static void item_text(azsim_text *t, kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver,
                      enum kind k, int with_version)
{
    char *url = object_url(c, k, o->name, with_version ? ver->id : NULL);
    int first = 1;
    AZSIM_TEXT_LIT(t, "{");
    deleted_text(t, &first, c, o, k);
    if (k == KEY)
        MEMBER(t, &first, "kid");
    else
        MEMBER(t, &first, "id");
    text_made(t, url);
    if (k == CERT) {
        char *x5t = cert_x5t(ver);
        if (x5t) {
            MEMBER(t, &first, "x5t");
            azsim_text_str(t, x5t);
        }
        free(x5t);
    }
    MEMBER(t, &first, "attributes");
    attributes_text(t, c, ver, k);
    tags_text(t, &first, ver);
    if (k == SECRET && ver->content_type) {
        MEMBER(t, &first, "contentType");
        azsim_text_str(t, ver->content_type);
    }
    if (o->managed) {
        MEMBER(t, &first, "managed");
        AZSIM_TEXT_LIT(t, "true");
    }
    AZSIM_TEXT_LIT(t, "}");
    free(url);
}

/* ---------- request helpers ---------- */

static int page_params(kv_ctx *c, size_t *out_max, size_t *out_skip)
{
    const char *m = azsim_query(c->r, "maxresults");
    const char *s = azsim_query(c->r, "$skiptoken");
    *out_max = PAGE_MAX;
    *out_skip = 0;
    if (m && *m) {
        char *end = NULL;
        long v = strtol(m, &end, 10);
        if (*end || v < 1 || v > PAGE_MAX) {
            bad_param(c, "The value of parameter maxresults is out of range. It must be between 1 "
                         "and 25.");
            return AZSIM_EINVAL;
        }
        *out_max = (size_t)v;
    }
    if (s && *s) {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        if (*end || v < 0) {
            bad_param(c, "The value of parameter $skiptoken is invalid.");
            return AZSIM_EINVAL;
        }
        *out_skip = (size_t)v;
    }
    return AZSIM_OK;
}

/* Ends a list page whose items are written in t: its nextLink (the list has `total` items, the
   page those from skip to skip + max - 1), and the reply. Only the page's items are made: a
   vault's 200 secrets are 8 pages, and each page made all 200 items before. */
static int reply_page(kv_ctx *c, azsim_text *t, size_t total, const char *path, size_t max,
                      size_t skip)
{
    AZSIM_TEXT_LIT(t, "],\"nextLink\":");
    if (skip + max < total) {
        const char *m = azsim_query(c->r, "maxresults");
        char *url = azsim_printf("%s%s?api-version=%s&$skiptoken=%zu%s%s", c->base, path, c->api,
                                 skip + max, m ? "&maxresults=" : "", m ? m : "");
        text_made(t, url);
        free(url);
    } else {
        AZSIM_TEXT_LIT(t, "null");
    }
    AZSIM_TEXT_LIT(t, "}");
    return azsim_reply_text(c->r, 200, t);
}

static int cmp_objects(const void *a, const void *b)
{
    const azsim_kv_object *x = *(azsim_kv_object *const *)a;
    const azsim_kv_object *y = *(azsim_kv_object *const *)b;
    return strcasecmp(x->name, y->name);
}

static int list_objects(kv_ctx *c, enum kind k, int deleted)
{
    size_t max, skip, n = 0;
    azsim_vec *vec = objects(c->v, k);
    azsim_kv_object **sorted = NULL;
    azsim_text t = {0};
    char path[32];
    if (page_params(c, &max, &skip) != AZSIM_OK)
        return AZSIM_OK;
    if (vec->n) {
        sorted = malloc(vec->n * sizeof(*sorted));
        if (!sorted)
            return AZSIM_ENOMEM;
        memcpy(sorted, vec->items, vec->n * sizeof(*sorted));
        qsort(sorted, vec->n, sizeof(*sorted), cmp_objects);
    }
    AZSIM_TEXT_LIT(&t, "{\"value\":[");
    for (size_t i = 0; i < vec->n; i++) {
        azsim_kv_object *o = sorted[i];
        if (o->deleted != deleted || !latest(o))
            continue;
        if (n >= skip && n - skip < max) {
            if (n > skip)
                AZSIM_TEXT_LIT(&t, ",");
            item_text(&t, c, o, latest(o), k, 0);
        }
        n++;
    }
    free(sorted);
    snprintf(path, sizeof(path), "/%s%s", deleted ? "deleted" : "", kind_coll(k));
    return reply_page(c, &t, n, path, max, skip);
}

static int list_versions(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    size_t max, skip;
    azsim_text t = {0};
    char *path;
    int rc;
    if (page_params(c, &max, &skip) != AZSIM_OK)
        return AZSIM_OK;
    if (!(path = azsim_printf("/%s/%s/versions", kind_coll(k), o->name)))
        return AZSIM_ENOMEM;
    AZSIM_TEXT_LIT(&t, "{\"value\":[");
    for (size_t i = skip; i < o->versions.n && i - skip < max; i++) {
        if (i > skip)
            AZSIM_TEXT_LIT(&t, ",");
        item_text(&t, c, o, o->versions.items[i], k, 1);
    }
    rc = reply_page(c, &t, o->versions.n, path, max, skip);
    free(path);
    return rc;
}

/* Reads attributes and tags from a request body into ver; 0 or a reply was sent. */
static int apply_attributes(kv_ctx *c, azsim_kv_version *ver, json_t *body)
{
    json_t *a = json_object_get(body, "attributes");
    json_t *tags = json_object_get(body, "tags");
    if (a && !json_is_object(a) && !json_is_null(a)) {
        bad_param(c, "The parameter attributes is invalid.");
        return AZSIM_EINVAL;
    }
    if (json_is_object(a)) {
        json_t *e = json_object_get(a, "enabled"), *nbf = json_object_get(a, "nbf"),
               *exp = json_object_get(a, "exp");
        if (e && !json_is_boolean(e) && !json_is_null(e)) {
            bad_param(c, "The parameter attributes.enabled is invalid.");
            return AZSIM_EINVAL;
        }
        if ((nbf && !json_is_integer(nbf) && !json_is_null(nbf)) ||
            (exp && !json_is_integer(exp) && !json_is_null(exp))) {
            bad_param(c, "The attributes nbf and exp must be integers (Unix time in seconds).");
            return AZSIM_EINVAL;
        }
        if (json_is_boolean(e))
            ver->enabled = json_is_true(e);
        if (json_is_integer(nbf)) {
            ver->has_nbf = 1;
            ver->nbf = json_integer_value(nbf);
        }
        if (json_is_integer(exp)) {
            ver->has_exp = 1;
            ver->exp = json_integer_value(exp);
        }
        if (ver->has_nbf && ver->has_exp && ver->nbf > ver->exp) {
            bad_param(c, "The attribute nbf must be earlier than exp.");
            return AZSIM_EINVAL;
        }
    }
    if (tags && !json_is_null(tags)) {
        const char *tk;
        json_t *tv;
        if (!json_is_object(tags) || json_object_size(tags) > 15) {
            bad_param(c, "The parameter tags is invalid: at most 15 string tags are allowed.");
            return AZSIM_EINVAL;
        }
        json_object_foreach(tags, tk, tv) if (!json_is_string(tv))
        {
            bad_param(c, "Tag values must be strings.");
            return AZSIM_EINVAL;
        }
        json_decref(ver->tags);
        ver->tags = json_deep_copy(tags);
    }
    return AZSIM_OK;
}

static azsim_kv_version *version_new(kv_ctx *c)
{
    azsim_kv_version *ver = calloc(1, sizeof(*ver));
    if (!ver)
        return NULL;
    azsim_hexid(c->st, ver->id);
    ver->created = ver->updated = azsim_now(c->st);
    ver->enabled = 1;
    ver->tags = json_object();
    return ver;
}

/* Gets or creates the live object `name`; 409 if a soft-deleted one holds the name. */
static azsim_kv_object *object_for_write(kv_ctx *c, enum kind k, const char *name)
{
    azsim_kv_object *o = object_find(c->v, k, name, NULL);
    if (o && o->deleted) {
        const char *what = k == KEY ? "Key" : k == SECRET ? "Secret" : "Certificate";
        const char *lw = kind_word(k);
        kv_error(c, 409, "Conflict", "ObjectIsDeletedButRecoverable",
                 "%s %s is currently in a deleted but recoverable state, and its name cannot be "
                 "reused; in this state, the %s can only be recovered or purged.",
                 what, o->name, lw);
        return NULL;
    }
    if (o)
        return o;
    o = calloc(1, sizeof(*o));
    if (!o || !(o->name = strdup(name)) || azsim_vec_push(objects(c->v, k), o) != AZSIM_OK) {
        if (o)
            free(o->name);
        free(o);
        azsim_reply_json(c->r, 500, NULL);
        return NULL;
    }
    return o;
}

static void drop_if_empty(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    size_t idx;
    if (o->versions.n == 0 && object_find(c->v, k, o->name, &idx) == o) {
        azsim_vec_remove(objects(c->v, k), idx);
        object_free(o);
    }
}

/* ---------- keys ---------- */

static const char *const KEY_OPS[] = {"encrypt",   "decrypt", "sign",   "verify", "wrapKey",
                                      "unwrapKey", "import",  "export", NULL};

static EVP_PKEY *generate(const char *kty, long size, const char *crv)
{
    if (strncmp(kty, "RSA", 3) == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)size);
    const char *group = strcmp(crv, "P-256") == 0   ? "P-256"
                        : strcmp(crv, "P-384") == 0 ? "P-384"
                        : strcmp(crv, "P-521") == 0 ? "P-521"
                                                    : "secp256k1";
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
}

static long rsa_bits(EVP_PKEY *pkey)
{
    return EVP_PKEY_is_a(pkey, "RSA") ? EVP_PKEY_get_bits(pkey) : 0;
}

static const char *ec_crv(EVP_PKEY *pkey)
{
    char group[64];
    if (EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), NULL) != 1)
        return "P-256";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        return "P-384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        return "P-521";
    if (strcmp(group, "secp256k1") == 0)
        return "P-256K";
    return "P-256";
}

static BIGNUM *jwk_bn(json_t *jwk, const char *member);

/* The RSA size (0 for EC) and EC curve of a key version, read from its public JWK so that
 * rotating or weighing a key needs no parse of its private key; AZSIM_ERR if it cannot be read. */
static int key_shape(azsim_kv_version *ver, long *out_bits, const char **out_crv)
{
    json_t *jwk = version_jwk(ver);
    *out_bits = 0;
    *out_crv = "P-256";
    if (!jwk)
        return AZSIM_ERR;
    if (strncmp(ver->kty, "RSA", 3) == 0) {
        BIGNUM *n = jwk_bn(jwk, "n");
        *out_bits = n ? BN_num_bits(n) : 0;
        BN_free(n);
        return *out_bits ? AZSIM_OK : AZSIM_ERR;
    }
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv)
        return AZSIM_ERR;
    *out_crv = crv;
    return AZSIM_OK;
}

static int64_t policy_expiry(azsim_kv_object *o)
{
    int64_t d = 0;
    json_t *a = o->rotation_policy ? json_object_get(o->rotation_policy, "attributes") : NULL;
    const char *e = json_string_value(json_object_get(a, "expiryTime"));
    if (e && azsim_parse_duration(&d, e) == AZSIM_OK)
        return d;
    return 0;
}

/* New version of o with fresh material of the same type as `like` (rotation). */
static azsim_kv_version *rotate_version(kv_ctx *c, azsim_kv_object *o)
{
    azsim_kv_version *prev = latest(o), *ver = NULL;
    if (!prev)
        return NULL;
    ver = version_new(c);
    if (!ver)
        return NULL;
    ver->kty = strdup(prev->kty);
    ver->key_ops = json_deep_copy(prev->key_ops);
    json_decref(ver->tags);
    ver->tags = json_deep_copy(prev->tags);
    long bits;
    const char *crv;
    int64_t exp = policy_expiry(o);
    if (exp > 0) {
        ver->has_exp = 1;
        ver->exp = ver->created + exp;
    }
    if (!ver->kty || !ver->key_ops || key_shape(prev, &bits, &crv) != AZSIM_OK ||
        version_set_key(ver, generate(prev->kty, bits, crv)) != AZSIM_OK ||
        azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
        version_free(ver);
        return NULL;
    }
    return ver;
}

static BIGNUM *jwk_bn(json_t *jwk, const char *member)
{
    unsigned char *raw = NULL;
    size_t len = 0;
    BIGNUM *bn = NULL;
    const char *v = json_string_value(json_object_get(jwk, member));
    if (v && azsim_b64url_decode(&raw, &len, v) == AZSIM_OK && len > 0)
        bn = BN_bin2bn(raw, (int)len, NULL);
    if (raw) {
        OPENSSL_cleanse(raw, len);
        free(raw);
    }
    return bn;
}

/* Private key from a JWK (RSA with n e d p q dp dq qi, or EC with crv x y d); NULL if invalid. */
static EVP_PKEY *jwk_private(json_t *jwk, int rsa)
{
    static const char *const rsa_members[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
    static const char *const rsa_params[] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    BIGNUM *bns[8] = {NULL};
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char point[1 + 2 * 66];
    unsigned char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    int ok = 0;

    if (!bld)
        goto done;
    if (rsa) {
        for (size_t i = 0; i < 8; i++)
            if (!(bns[i] = jwk_bn(jwk, rsa_members[i])) ||
                OSSL_PARAM_BLD_push_BN(bld, rsa_params[i], bns[i]) != 1)
                goto done;
    } else {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        const char *group = !crv                         ? NULL
                            : strcmp(crv, "P-256") == 0  ? "P-256"
                            : strcmp(crv, "P-384") == 0  ? "P-384"
                            : strcmp(crv, "P-521") == 0  ? "P-521"
                            : strcmp(crv, "P-256K") == 0 ? "secp256k1"
                                                         : NULL;
        size_t flen = !group                        ? 0
                      : strcmp(group, "P-384") == 0 ? 48
                      : strcmp(group, "P-521") == 0 ? 66
                                                    : 32;
        const char *xs = json_string_value(json_object_get(jwk, "x"));
        const char *ys = json_string_value(json_object_get(jwk, "y"));
        if (!group || !xs || !ys || azsim_b64url_decode(&x, &xl, xs) != AZSIM_OK ||
            azsim_b64url_decode(&y, &yl, ys) != AZSIM_OK || xl != flen || yl != flen ||
            !(bns[0] = jwk_bn(jwk, "d")))
            goto done;
        point[0] = 0x04;
        memcpy(point + 1, x, flen);
        memcpy(point + 1 + flen, y, flen);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * flen) !=
                1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bns[0]) != 1)
            goto done;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, rsa ? "RSA" : "EC", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
        goto done;
    /* the private half must match the public half */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_pairwise_check(check) != 1)
        goto done;
    ok = 1;
done:
    for (size_t i = 0; i < 8; i++)
        BN_clear_free(bns[i]);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_CTX_free(check);
    free(x);
    free(y);
    if (!ok) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return pkey;
}

/* PUT /keys/{name}: import a JWK with its private members as a new version. */
static int key_import(kv_ctx *c, const char *name)
{
    json_t *body = azsim_body_json(c->r);
    json_t *jwk = json_object_get(body, "key");
    azsim_kv_version *ver = NULL;
    azsim_kv_object *o;
    int rc = AZSIM_OK;
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    int hsm = json_is_true(json_object_get(body, "Hsm")) || (kty && strstr(kty, "HSM"));

    if (!json_is_object(jwk) || !kty) {
        rc = bad_param(c, "The parameter key is required and must be a JSON web key.");
        goto done;
    }
    int rsa = strncmp(kty, "RSA", 3) == 0;
    if (!rsa && strncmp(kty, "EC", 2) != 0) {
        rc = bad_param(c, "The key type (kty) is not supported by this vault.");
        goto done;
    }
    if (hsm && !azsim_streq_ci(
                   json_string_value(json_object_get(json_object_get(c->v->props, "sku"), "name")),
                   "premium")) {
        rc = kv_error(c, 403, "Forbidden", NULL,
                      "Key type %s-HSM is not allowed for vault SKU standard.", rsa ? "RSA" : "EC");
        goto done;
    }
    ver = version_new(c);
    if (!ver) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (apply_attributes(c, ver, body) != AZSIM_OK)
        goto done;
    EVP_PKEY *pkey = jwk_private(jwk, rsa);
    if (!pkey) {
        rc = bad_param(c, "The JSON web key is invalid or lacks its private members.");
        goto done;
    }
    if (version_set_key(ver, pkey) != AZSIM_OK) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    long bits = rsa_bits(pkey);
    if (rsa && bits != 2048 && bits != 3072 && bits != 4096) {
        rc = bad_param(c,
                       "The key size is not supported. RSA keys must be 2048, 3072 or 4096 bits.");
        goto done;
    }
    json_t *ops = json_object_get(jwk, "key_ops");
    if (json_is_array(ops))
        ver->key_ops = json_deep_copy(ops);
    else if (rsa)
        ver->key_ops = json_pack("[s,s,s,s,s,s]", "encrypt", "decrypt", "sign", "verify", "wrapKey",
                                 "unwrapKey");
    else
        ver->key_ops = json_pack("[s,s]", "sign", "verify");
    ver->kty = strdup(rsa ? (hsm ? "RSA-HSM" : "RSA") : (hsm ? "EC-HSM" : "EC"));
    if (!ver->key_ops || !ver->kty) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    o = object_for_write(c, KEY, name);
    if (!o)
        goto done;
    if (azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
        drop_if_empty(c, KEY, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_kv_version *added = ver;
    ver = NULL;
    rc = reply_bundle(c, o, added, KEY, 0);
done:
    version_free(ver);
    json_decref(body);
    return rc;
}

static int key_create(kv_ctx *c, const char *name)
{
    json_t *body = azsim_body_json(c->r);
    azsim_kv_version *ver = NULL;
    azsim_kv_object *o = NULL;
    int rc = AZSIM_OK;
    long size = 0;
    const char *crv = NULL;

    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    const char *kty = json_string_value(json_object_get(body, "kty"));
    if (!kty) {
        rc = bad_param(c, "The parameter kty is required.");
        goto done;
    }
    if (strcmp(kty, "RSA") && strcmp(kty, "RSA-HSM") && strcmp(kty, "EC") &&
        strcmp(kty, "EC-HSM")) {
        rc = bad_param(c, "The key type (kty) is not supported by this vault.");
        goto done;
    }
    if (strstr(kty, "HSM")) {
        json_t *sku = json_object_get(json_object_get(c->v->props, "sku"), "name");
        if (!azsim_streq_ci(json_string_value(sku), "premium")) {
            rc = kv_error(c, 403, "Forbidden", NULL,
                          "Key type %s is not allowed for vault SKU standard.", kty);
            goto done;
        }
    }
    if (kty[0] == 'R') {
        json_t *ks = json_object_get(body, "key_size");
        size = json_is_integer(ks) ? (long)json_integer_value(ks) : 2048;
        if (ks && !json_is_integer(ks) && !json_is_null(ks)) {
            rc = bad_param(c, "The parameter key_size is invalid.");
            goto done;
        }
        if (size != 2048 && size != 3072 && size != 4096) {
            rc = bad_param(c, "The key size is not supported. RSA keys must be 2048, 3072 or 4096 "
                              "bits.");
            goto done;
        }
        json_t *pe = json_object_get(body, "public_exponent");
        if (json_is_integer(pe) && json_integer_value(pe) != 65537) {
            rc = bad_param(c, "The public exponent is not supported; only 65537 is.");
            goto done;
        }
    } else {
        crv = json_string_value(json_object_get(body, "crv"));
        if (!crv)
            crv = "P-256";
        if (strcmp(crv, "P-256") && strcmp(crv, "P-384") && strcmp(crv, "P-521") &&
            strcmp(crv, "P-256K")) {
            rc = bad_param(c, "The curve (crv) is not supported.");
            goto done;
        }
    }
    json_t *ops = json_object_get(body, "key_ops");
    if (ops && !json_is_null(ops)) {
        size_t i;
        json_t *op;
        if (!json_is_array(ops)) {
            rc = bad_param(c, "The parameter key_ops is invalid.");
            goto done;
        }
        json_array_foreach(ops, i, op)
        {
            int ok = 0;
            for (size_t j = 0; KEY_OPS[j]; j++)
                if (json_is_string(op) && strcmp(json_string_value(op), KEY_OPS[j]) == 0)
                    ok = 1;
            if (!ok) {
                rc = bad_param(c, "The parameter key_ops contains an invalid operation.");
                goto done;
            }
        }
    }
    ver = version_new(c);
    if (!ver) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (apply_attributes(c, ver, body) != AZSIM_OK)
        goto done;
    json_t *exportable = json_object_get(json_object_get(body, "attributes"), "exportable");
    if (json_is_true(exportable) && !json_is_object(json_object_get(body, "release_policy"))) {
        rc = bad_param(c, "Exportable keys must have a release policy.");
        goto done;
    }
    if (json_is_true(exportable)) {
        rc = bad_param(c, "Exportable keys (secure key release) are not supported by azsim.");
        goto done;
    }
    o = object_for_write(c, KEY, name);
    if (!o)
        goto done;
    ver->kty = strdup(kty);
    if (ops && json_is_array(ops))
        ver->key_ops = json_deep_copy(ops);
    else if (kty[0] == 'R')
        ver->key_ops = json_pack("[s,s,s,s,s,s]", "encrypt", "decrypt", "sign", "verify", "wrapKey",
                                 "unwrapKey");
    else
        ver->key_ops = json_pack("[s,s]", "sign", "verify");
    if (!ver->kty || !ver->key_ops ||
        version_set_key(ver, generate(kty, size, crv ? crv : "P-256")) != AZSIM_OK) {
        drop_if_empty(c, KEY, o);
        rc = AZSIM_ERR;
        goto done;
    }
    if (azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
        drop_if_empty(c, KEY, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_kv_version *added = ver;
    ver = NULL;
    rc = reply_bundle(c, o, added, KEY, 0);
done:
    version_free(ver);
    json_decref(body);
    return rc;
}

static int update_version(kv_ctx *c, enum kind k, azsim_kv_object *o, azsim_kv_version *ver)
{
    json_t *body = azsim_body_json(c->r);
    azsim_kv_version tmp = *ver;
    int rc = AZSIM_OK;
    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    if (k == KEY && !version_jwk(ver)) {
        rc = key_unreadable(c, ver); /* before the change: the reply could not show it */
        goto done;
    }
    /* work on a copy of the scalar fields so a rejected request changes nothing */
    tmp.tags = json_incref(ver->tags);
    if (apply_attributes(c, &tmp, body) != AZSIM_OK) {
        json_decref(tmp.tags);
        goto done;
    }
    if (k == KEY) {
        json_t *ops = json_object_get(body, "key_ops");
        if (json_is_array(ops)) {
            json_decref(ver->key_ops);
            ver->key_ops = json_deep_copy(ops);
        }
    } else {
        json_t *ct = json_object_get(body, "contentType");
        if (json_is_string(ct)) {
            free(ver->content_type);
            ver->content_type = strdup(json_string_value(ct));
        }
    }
    json_decref(ver->tags);
    ver->tags = tmp.tags;
    ver->enabled = tmp.enabled;
    ver->has_nbf = tmp.has_nbf;
    ver->nbf = tmp.nbf;
    ver->has_exp = tmp.has_exp;
    ver->exp = tmp.exp;
    ver->updated = azsim_now(c->st);
    rc = reply_bundle(c, o, ver, k, k == SECRET);
done:
    json_decref(body);
    return rc;
}

static int crypto_op(kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver, const char *op)
{
    int encrypting = strcasecmp(op, "wrapkey") == 0 || strcasecmp(op, "encrypt") == 0;
    const char *opname = strcasecmp(op, "wrapkey") == 0     ? "wrapKey"
                         : strcasecmp(op, "unwrapkey") == 0 ? "unwrapKey"
                         : strcasecmp(op, "encrypt") == 0   ? "encrypt"
                                                            : "decrypt";
    json_t *body = azsim_body_json(c->r);
    unsigned char *in = NULL, *out = NULL;
    size_t inlen = 0, outlen = 0;
    EVP_PKEY_CTX *pctx = NULL;
    char *b64 = NULL, *kid = NULL;
    int rc = AZSIM_OK, allowed = 0;
    int64_t now = azsim_now(c->st);

    const char *alg = json_string_value(json_object_get(body, "alg"));
    const char *value = json_string_value(json_object_get(body, "value"));
    if (!alg || !value) {
        rc = bad_param(c, "The parameters alg and value are required.");
        goto done;
    }
    if (strcmp(alg, "RSA-OAEP") && strcmp(alg, "RSA-OAEP-256") && strcmp(alg, "RSA1_5")) {
        rc = bad_param(c, "The algorithm is not supported for this key.");
        goto done;
    }
    if (strncmp(ver->kty, "RSA", 3) != 0) {
        rc = bad_param(c, "The algorithm is not supported for an EC key.");
        goto done;
    }
    size_t i;
    json_t *ko;
    json_array_foreach(ver->key_ops, i,
                       ko) if (json_is_string(ko) && strcmp(json_string_value(ko), opname) == 0)
        allowed = 1;
    if (!allowed) {
        rc = kv_error(c, 403, "Forbidden", "KeyOperationForbidden",
                      "Operation %s is not permitted on this key.", opname);
        goto done;
    }
    /* Key Vault refuses the private-key half on disabled, expired or not-yet-valid versions;
     * the public-key half (wrap, encrypt) stays available, as observed on the real service */
    if (!encrypting) {
        if (!ver->enabled) {
            rc = kv_error(c, 403, "Forbidden", "KeyDisabled",
                          "Operation %s is not allowed on a disabled key.", opname);
            goto done;
        }
        if (ver->has_exp && ver->exp <= now) {
            rc = kv_error(c, 403, "Forbidden", "KeyExpired",
                          "Operation %s is not allowed on an expired key.", opname);
            goto done;
        }
        if (ver->has_nbf && ver->nbf > now) {
            rc = kv_error(c, 403, "Forbidden", "KeyNotYetValid",
                          "Operation %s is not allowed on a key that is not yet valid.", opname);
            goto done;
        }
    }
    if (azsim_b64url_decode(&in, &inlen, value) != AZSIM_OK) {
        rc = bad_param(c, "The parameter value is not valid base64url.");
        goto done;
    }
    EVP_PKEY *pkey = azsim_kv_version_pkey(ver);
    if (!pkey) {
        rc = key_unreadable(c, ver);
        goto done;
    }
    pctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (!pctx || (encrypting ? EVP_PKEY_encrypt_init(pctx) : EVP_PKEY_decrypt_init(pctx)) != 1) {
        rc = AZSIM_ERR;
        goto done;
    }
    int pad = strcmp(alg, "RSA1_5") == 0 ? RSA_PKCS1_PADDING : RSA_PKCS1_OAEP_PADDING;
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, pad) != 1 ||
        (pad == RSA_PKCS1_OAEP_PADDING &&
         (EVP_PKEY_CTX_set_rsa_oaep_md(pctx, strcmp(alg, "RSA-OAEP-256") == 0 ? EVP_sha256()
                                                                              : EVP_sha1()) != 1 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md(
              pctx, strcmp(alg, "RSA-OAEP-256") == 0 ? EVP_sha256() : EVP_sha1()) != 1))) {
        rc = AZSIM_ERR;
        goto done;
    }
    int ok = encrypting ? EVP_PKEY_encrypt(pctx, NULL, &outlen, in, inlen)
                        : EVP_PKEY_decrypt(pctx, NULL, &outlen, in, inlen);
    out = ok == 1 ? malloc(outlen ? outlen : 1) : NULL;
    if (out)
        ok = encrypting ? EVP_PKEY_encrypt(pctx, out, &outlen, in, inlen)
                        : EVP_PKEY_decrypt(pctx, out, &outlen, in, inlen);
    if (!out || ok != 1) {
        rc = bad_param(c, encrypting ? "The value is too long for this key and algorithm."
                                     : "The ciphertext could not be decrypted with this key and "
                                       "algorithm.");
        goto done;
    }
    b64 = azsim_b64url(out, outlen);
    kid = object_url(c, KEY, o->name, ver->id);
    if (!b64 || !kid) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_reply_json(c->r, 200, json_pack("{s:s,s:s}", "kid", kid, "value", b64));
done:
    if (out) {
        OPENSSL_cleanse(out, outlen);
        free(out);
    }
    if (in) {
        OPENSSL_cleanse(in, inlen);
        free(in);
    }
    free(b64);
    free(kid);
    EVP_PKEY_CTX_free(pctx);
    json_decref(body);
    return rc;
}

static json_t *default_policy(kv_ctx *c, const char *name)
{
    char *id = azsim_printf("%s/keys/%s/rotationpolicy", c->base, name);
    json_t *p =
        json_pack("{s:s,s:[{s:{s:s},s:{s:s}}],s:n}", "id", id ? id : "", "lifetimeActions",
                  "trigger", "timeBeforeExpiry", "P30D", "action", "type", "Notify", "attributes");
    free(id);
    return p;
}

static int policy_set(kv_ctx *c, azsim_kv_object *o)
{
    json_t *body = azsim_body_json(c->r);
    json_t *stored = NULL;
    int rc = AZSIM_OK, rotates = 0, notifies = 0;
    int64_t expiry = 0, now = azsim_now(c->st);

    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    json_t *actions = json_object_get(body, "lifetimeActions");
    json_t *attrs = json_object_get(body, "attributes");
    const char *expiry_s = json_string_value(json_object_get(attrs, "expiryTime"));
    if (actions && !json_is_array(actions) && !json_is_null(actions)) {
        rc = bad_param(c, "The parameter lifetimeActions is invalid.");
        goto done;
    }
    if (expiry_s) {
        if (azsim_parse_duration(&expiry, expiry_s) != AZSIM_OK) {
            rc = bad_param(c, "The policy expiryTime is not a valid ISO 8601 duration.");
            goto done;
        }
        if (expiry < 28 * 86400) {
            rc = bad_param(c, "The policy expiryTime must be at least 28 days.");
            goto done;
        }
    }
    stored = json_object();
    json_t *list = json_array();
    json_object_set_new(stored, "lifetimeActions", list);
    size_t i;
    json_t *la;
    json_array_foreach(actions, i, la)
    {
        json_t *trig = json_object_get(la, "trigger");
        const char *type =
            json_string_value(json_object_get(json_object_get(la, "action"), "type"));
        const char *tac = json_string_value(json_object_get(trig, "timeAfterCreate"));
        const char *tbe = json_string_value(json_object_get(trig, "timeBeforeExpiry"));
        int64_t d = 0;
        if (!type || (!azsim_streq_ci(type, "rotate") && !azsim_streq_ci(type, "notify"))) {
            rc = bad_param(c, "The lifetime action type must be Rotate or Notify.");
            goto done;
        }
        int is_rotate = azsim_streq_ci(type, "rotate");
        if ((tac && tbe) || (!tac && !tbe)) {
            rc = bad_param(c, "A lifetime action trigger must set exactly one of timeAfterCreate "
                              "and timeBeforeExpiry.");
            goto done;
        }
        if (tac && !is_rotate) {
            rc = bad_param(c, "timeAfterCreate can only be used with the Rotate action.");
            goto done;
        }
        if (azsim_parse_duration(&d, tac ? tac : tbe) != AZSIM_OK) {
            rc = bad_param(c, "The lifetime action trigger is not a valid ISO 8601 duration.");
            goto done;
        }
        if (d < 7 * 86400) {
            rc = bad_param(c, "The rotation time must be at least 7 days after creation and at "
                              "least 7 days before expiry.");
            goto done;
        }
        if (expiry > 0 && (tac ? d > expiry - 7 * 86400 : d > expiry - 7 * 86400)) {
            rc = bad_param(c, "The lifetime action trigger must leave at least 7 days before the "
                              "policy expiryTime.");
            goto done;
        }
        if ((is_rotate && rotates++) || (!is_rotate && notifies++)) {
            rc = bad_param(c, "A rotation policy allows at most one Rotate and one Notify action.");
            goto done;
        }
        json_array_append_new(list, json_pack("{s:{s:s},s:{s:s}}", "trigger",
                                              tac ? "timeAfterCreate" : "timeBeforeExpiry",
                                              tac ? tac : tbe, "action", "type",
                                              is_rotate ? "Rotate" : "Notify"));
    }
    json_t *old_attrs =
        o->rotation_policy ? json_object_get(o->rotation_policy, "attributes") : NULL;
    json_t *created = json_object_get(old_attrs, "created");
    json_t *na = json_object();
    if (expiry_s)
        json_object_set_new(na, "expiryTime", json_string(expiry_s));
    json_object_set_new(na, "created", created ? json_incref(created) : json_integer(now));
    json_object_set_new(na, "updated", json_integer(now));
    json_object_set_new(stored, "attributes", na);
    json_decref(o->rotation_policy);
    o->rotation_policy = stored;
    stored = NULL;
    char *id = azsim_printf("%s/keys/%s/rotationpolicy", c->base, o->name);
    json_t *resp = json_pack("{s:s}", "id", id ? id : "");
    free(id);
    json_object_update(resp, o->rotation_policy);
    rc = azsim_reply_json(c->r, 200, resp);
done:
    json_decref(stored);
    json_decref(body);
    return rc;
}

/* ---------- backup / restore ---------- */

static char *pkey_pem(EVP_PKEY *pkey)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *data = NULL;
    if (b && PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(b, &data);
        out = azsim_strndup_bytes(data, (size_t)n);
    }
    BIO_free(b);
    return out;
}

/*
 * Cheap checks of a stored private key PEM, done at load instead of the full parse: one PEM block
 * of an unencrypted key whose body decodes and, for "PRIVATE KEY", is a well-formed PKCS#8
 * PrivateKeyInfo (OpenSSL's ASN.1 templates, not its provider decoders: microseconds). A garbled
 * body still fails the load, as it did when the load parsed every key; what passes and still does
 * not make a key is caught on use.
 */
static int pem_plausible(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long len = 0;
    int ok = 0;
    if (!b || PEM_read_bio(b, &name, &header, &der, &len) != 1 || len <= 0)
        goto done;
    if (strcmp(name, "PRIVATE KEY") == 0) {
        const unsigned char *p = der;
        PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);
        ok = p8 && p == der + len;
        PKCS8_PRIV_KEY_INFO_free(p8);
    } else {
        /* a traditional RSA or EC key; never an encrypted one (no passphrase to give) */
        size_t n = strlen(name);
        ok = !header[0] && n > 12 && strcmp(name + n - 12, " PRIVATE KEY") == 0 &&
             strstr(name, "ENCRYPTED") == NULL;
    }
done:
    if (der) {
        OPENSSL_cleanse(der, (size_t)len);
        OPENSSL_free(der);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(b);
    return ok;
}

/* A stored JWK with the members of its key type (n and e, or crv, x and y), all strings. */
static int jwk_members_complete(json_t *jwk, const char *kty)
{
    static const char *const rsa[] = {"n", "e", NULL}, *const ec[] = {"crv", "x", "y", NULL};
    const char *const *m = strncmp(kty, "RSA", 3) == 0 ? rsa : ec;
    if (!json_is_object(jwk))
        return 0;
    for (; *m; m++)
        if (!json_is_string(json_object_get(jwk, *m)))
            return 0;
    return 1;
}

/* One version as JSON, private key material included (for sealed backups and the state file). */
static json_t *version_dump(azsim_kv_version *ver, enum kind k)
{
    json_t *jv =
        json_pack("{s:s,s:I,s:I,s:b,s:O}", "id", ver->id, "created", (json_int_t)ver->created,
                  "updated", (json_int_t)ver->updated, "enabled", ver->enabled, "tags", ver->tags);
    if (!jv)
        return NULL;
    if (ver->has_nbf)
        json_object_set_new(jv, "nbf", json_integer(ver->nbf));
    if (ver->has_exp)
        json_object_set_new(jv, "exp", json_integer(ver->exp));
    if (k == KEY || k == CERT) {
        /* a key is encoded once, when first saved, and its PEM kept: the state is saved after
         * every mutation, and PEM_write of every key made each save slow */
        if (!ver->pem && ver->pkey)
            ver->pem = pkey_pem(ver->pkey);
        if (!ver->pem) {
            json_decref(jv);
            return NULL;
        }
        json_object_set_new(jv, "pem", json_string(ver->pem));
        json_object_set_new(jv, "kty", json_string(ver->kty));
        json_object_set_new(jv, "exportable", json_boolean(ver->exportable));
        if (k == KEY)
            json_object_set(jv, "key_ops", ver->key_ops);
        else
            json_object_set(jv, "x5c", ver->x5c);
        if (k == KEY && ver->jwk)
            json_object_set(jv, "jwk", ver->jwk);
        if (k == CERT && ver->content_type)
            json_object_set_new(jv, "contentType", json_string(ver->content_type));
    } else {
        json_object_set_new(jv, "value", json_string(ver->value));
        if (ver->content_type)
            json_object_set_new(jv, "contentType", json_string(ver->content_type));
    }
    return jv;
}

/* The JSON values a version keeps (tags, key_ops, jwk, x5c) are shared with jv, not copied: 60,000
 * deep copies were a tenth of a start, the document is dropped after the load, and these values
 * are only ever replaced, never changed in place. */
static azsim_kv_version *version_load(json_t *jv, enum kind k)
{
    azsim_kv_version *ver = calloc(1, sizeof(*ver));
    const char *id = json_string_value(json_object_get(jv, "id"));
    if (!ver || !id || strlen(id) != AZSIM_VERSION_LEN)
        goto fail;
    snprintf(ver->id, sizeof(ver->id), "%s", id);
    ver->created = json_integer_value(json_object_get(jv, "created"));
    ver->updated = json_integer_value(json_object_get(jv, "updated"));
    ver->enabled = json_is_true(json_object_get(jv, "enabled"));
    ver->tags = json_is_object(json_object_get(jv, "tags"))
                    ? json_incref(json_object_get(jv, "tags"))
                    : json_object();
    if (json_is_integer(json_object_get(jv, "nbf"))) {
        ver->has_nbf = 1;
        ver->nbf = json_integer_value(json_object_get(jv, "nbf"));
    }
    if (json_is_integer(json_object_get(jv, "exp"))) {
        ver->has_exp = 1;
        ver->exp = json_integer_value(json_object_get(jv, "exp"));
    }
    if (k == KEY || k == CERT) {
        /* the key itself is parsed when first used (azsim_kv_version_pkey) */
        const char *pem = json_string_value(json_object_get(jv, "pem"));
        if (!pem || !pem_plausible(pem) || !(ver->pem = strdup(pem)))
            goto fail;
        ver->kty = azsim_strdup(json_string_value(json_object_get(jv, "kty")));
        ver->exportable = json_is_true(json_object_get(jv, "exportable"));
        if (!ver->kty)
            goto fail;
        if (k == KEY) {
            ver->key_ops = json_incref(json_object_get(jv, "key_ops"));
            if (!json_is_array(ver->key_ops))
                goto fail;
            /* a state saved before the JWK was kept (or one whose JWK lacks a member) gets it
             * from the key at first use */
            json_t *jwk = json_object_get(jv, "jwk");
            if (jwk_members_complete(jwk, ver->kty))
                ver->jwk = json_incref(jwk);
        } else {
            ver->x5c = json_incref(json_object_get(jv, "x5c"));
            ver->content_type = azsim_strdup(json_string_value(json_object_get(jv, "contentType")));
            if (json_array_size(ver->x5c) == 0 || !ver->content_type)
                goto fail;
        }
    } else {
        ver->value = azsim_strdup(json_string_value(json_object_get(jv, "value")));
        ver->content_type = azsim_strdup(json_string_value(json_object_get(jv, "contentType")));
        if (!ver->value)
            goto fail;
    }
    return ver;
fail:
    version_free(ver);
    return NULL;
}

static json_t *object_dump(azsim_kv_object *o, enum kind k)
{
    json_t *vers = json_array();
    for (size_t i = 0; i < o->versions.n; i++) {
        json_t *jv = version_dump(o->versions.items[i], k);
        if (!jv) {
            json_decref(vers);
            return NULL;
        }
        json_array_append_new(vers, jv);
    }
    json_t *jo = json_pack("{s:s,s:o}", "name", o->name, "versions", vers);
    if (jo && o->managed)
        json_object_set_new(jo, "managed", json_true());
    if (jo && o->cert_policy)
        json_object_set(jo, "certPolicy", o->cert_policy);
    return jo;
}

static azsim_kv_object *object_load(json_t *jo, enum kind k)
{
    azsim_kv_object *o = calloc(1, sizeof(*o));
    const char *name = json_string_value(json_object_get(jo, "name"));
    size_t i;
    json_t *jv;
    if (!o || !name || !(o->name = strdup(name)))
        goto fail;
    json_array_foreach(json_object_get(jo, "versions"), i, jv)
    {
        azsim_kv_version *ver = version_load(jv, k);
        if (!ver || azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
            version_free(ver);
            goto fail;
        }
    }
    if (o->versions.n == 0)
        goto fail;
    o->managed = json_is_true(json_object_get(jo, "managed"));
    if (k == CERT) {
        json_t *pol = json_object_get(jo, "certPolicy");
        if (!json_is_object(pol) || !(o->cert_policy = json_deep_copy(pol)))
            goto fail;
    }
    return o;
fail:
    object_free(o);
    return NULL;
}

static int backup(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    json_t *doc = NULL;
    char *plain = NULL, *blob = NULL;
    int rc = AZSIM_ERR;
    if (o->versions.n > 500) {
        rc = bad_param(c, "Backup is limited to 500 versions.");
        goto done;
    }
    /* the rotation policy is deliberately not part of a backup, as on the real service */
    doc = json_pack("{s:s,s:s,s:s,s:o}", "kind", kind_word(k), "sub", c->v->sub, "geo",
                    azsim_geography(c->v->location), "object", object_dump(o, k));
    plain = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    blob = plain ? azsim_seal(c->st, plain, strlen(plain)) : NULL;
    if (!blob)
        goto done;
    rc = azsim_reply_json(c->r, 200, json_pack("{s:s}", "value", blob));
done:
    azsim_secret_free(plain);
    free(blob);
    json_decref(doc);
    return rc;
}

static int restore(kv_ctx *c, enum kind k)
{
    json_t *body = azsim_body_json(c->r), *doc = NULL;
    char *plain = NULL;
    size_t plen = 0;
    azsim_kv_object *o = NULL;
    int rc = AZSIM_OK;
    const char *value = json_string_value(json_object_get(body, "value"));
    const char *kind = NULL;

    if (!value) {
        rc = bad_param(c, "The parameter value is required.");
        goto done;
    }
    if (azsim_unseal(&plain, &plen, c->st, value) == AZSIM_OK)
        doc = json_loadb(plain, plen, 0, NULL);
    kind = json_string_value(json_object_get(doc, "kind"));
    if (!kind || strcmp(kind, kind_word(k)) != 0) {
        rc = bad_param(c, "The backup blob is invalid or corrupt.");
        goto done;
    }
    const char *sub = json_string_value(json_object_get(doc, "sub"));
    const char *geo = json_string_value(json_object_get(doc, "geo"));
    if (!sub || strcmp(sub, c->v->sub) != 0 ||
        (geo && !azsim_streq_ci(geo, azsim_geography(c->v->location)))) {
        rc = kv_error(c, 403, "Forbidden", NULL,
                      "The backup blob can only be restored into a vault in the same "
                      "subscription and geography.");
        goto done;
    }
    o = object_load(json_object_get(doc, "object"), k);
    if (!o) {
        rc = bad_param(c, "The backup blob is invalid or corrupt.");
        goto done;
    }
    /* a certificate needs its name free for its managed key and secret too */
    if (object_find(c->v, k, o->name, NULL) ||
        (k == CERT &&
         (object_find(c->v, KEY, o->name, NULL) || object_find(c->v, SECRET, o->name, NULL)))) {
        rc = kv_error(c, 409, "Conflict", NULL,
                      "There was a conflict restoring the %s '%s'. The name is already in use "
                      "by an active or soft-deleted object.",
                      kind_word(k), o->name);
        goto done;
    }
    if (k == KEY && !version_jwk(latest(o))) {
        rc = key_unreadable(c, latest(o));
        goto done;
    }
    if (k == CERT) {
        rc = cert_add_managed(c, o);
        if (rc != AZSIM_OK)
            goto done;
    }
    if (azsim_vec_push(objects(c->v, k), o) != AZSIM_OK) {
        if (k == CERT)
            cert_drop_managed(c, o->name);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_kv_object *added = o;
    o = NULL;
    rc = reply_bundle(c, added, latest(added), k, 0);
done:
    object_free(o);
    json_decref(doc);
    if (plain) {
        OPENSSL_cleanse(plain, plen);
        free(plain);
    }
    json_decref(body);
    return rc;
}

/* ---------- the state file (azsim_persist.c) ---------- */

json_t *azsim_vault_dump(azsim_vault *v)
{
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:O,s:O,s:b,s:b,s:b,s:i,s:b,s:I,s:I,s:I,s:[],s:[]}", "name",
                  v->name, "sub", v->sub, "rg", v->rg, "location", v->location, "props", v->props,
                  "tags", v->tags, "rbac", v->rbac, "softDelete", v->soft_delete, "purgeProtection",
                  v->purge_protection, "retentionDays", v->retention_days, "deleted", v->deleted,
                  "created", (json_int_t)v->created, "deletedDate", (json_int_t)v->deleted_date,
                  "purgeDate", (json_int_t)v->purge_date, "keys", "secrets");
    if (!j || json_object_set_new(j, "certs", json_array()) != 0) {
        json_decref(j);
        return NULL;
    }
    for (int kk = 0; kk < 3; kk++) {
        enum kind k = kk == 0 ? KEY : kk == 1 ? SECRET : CERT;
        azsim_vec *vec = objects(v, k);
        json_t *arr = json_object_get(j, kk == 0 ? "keys" : kk == 1 ? "secrets" : "certs");
        for (size_t i = 0; i < vec->n; i++) {
            azsim_kv_object *o = vec->items[i];
            json_t *jo = object_dump(o, k);
            if (!jo) {
                json_decref(j);
                return NULL;
            }
            json_object_set_new(jo, "deleted", json_boolean(o->deleted));
            json_object_set_new(jo, "deletedDate", json_integer(o->deleted_date));
            json_object_set_new(jo, "purgeDate", json_integer(o->purge_date));
            if (o->rotation_policy)
                json_object_set(jo, "rotationPolicy", o->rotation_policy);
            json_array_append_new(arr, jo);
        }
    }
    return j;
}

azsim_vault *azsim_vault_load(json_t *j)
{
    azsim_vault *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->name = azsim_strdup(json_string_value(json_object_get(j, "name")));
    v->sub = azsim_strdup(json_string_value(json_object_get(j, "sub")));
    v->rg = azsim_strdup(json_string_value(json_object_get(j, "rg")));
    v->location = azsim_strdup(json_string_value(json_object_get(j, "location")));
    v->props = json_deep_copy(json_object_get(j, "props"));
    v->tags = json_deep_copy(json_object_get(j, "tags"));
    if (!v->name || !v->sub || !v->rg || !v->location || !json_is_object(v->props) ||
        !json_is_object(v->tags))
        goto fail;
    v->rbac = json_is_true(json_object_get(j, "rbac"));
    v->soft_delete = json_is_true(json_object_get(j, "softDelete"));
    v->purge_protection = json_is_true(json_object_get(j, "purgeProtection"));
    v->retention_days = (int)json_integer_value(json_object_get(j, "retentionDays"));
    v->deleted = json_is_true(json_object_get(j, "deleted"));
    v->created = json_integer_value(json_object_get(j, "created"));
    v->deleted_date = json_integer_value(json_object_get(j, "deletedDate"));
    v->purge_date = json_integer_value(json_object_get(j, "purgeDate"));
    for (int kk = 0; kk < 3; kk++) {
        enum kind k = kk == 0 ? KEY : kk == 1 ? SECRET : CERT;
        size_t i;
        json_t *jo;
        json_array_foreach(json_object_get(j, kk == 0   ? "keys"
                                              : kk == 1 ? "secrets"
                                                        : "certs"),
                           i, jo)
        {
            azsim_kv_object *o = object_load(jo, k);
            if (!o || azsim_vec_push(objects(v, k), o) != AZSIM_OK) {
                object_free(o);
                goto fail;
            }
            o->deleted = json_is_true(json_object_get(jo, "deleted"));
            o->deleted_date = json_integer_value(json_object_get(jo, "deletedDate"));
            o->purge_date = json_integer_value(json_object_get(jo, "purgeDate"));
            json_t *rp = json_object_get(jo, "rotationPolicy");
            if (json_is_object(rp))
                o->rotation_policy = json_deep_copy(rp);
        }
    }
    return v;
fail:
    azsim_vault_free(v);
    return NULL;
}

/* ---------- secrets ---------- */

static int secret_set(kv_ctx *c, const char *name)
{
    json_t *body = azsim_body_json(c->r);
    azsim_kv_version *ver = NULL;
    azsim_kv_object *o;
    int rc = AZSIM_OK;
    json_t *value = json_object_get(body, "value");
    json_t *ct = json_object_get(body, "contentType");

    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    if (!json_is_string(value)) {
        rc = bad_param(c, "The parameter value is required and must be a string.");
        goto done;
    }
    if (json_string_length(value) > 25 * 1024) {
        rc = bad_param(c, "The secret value exceeds the maximum size of 25 KB.");
        goto done;
    }
    ver = version_new(c);
    if (!ver) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (apply_attributes(c, ver, body) != AZSIM_OK)
        goto done;
    o = object_for_write(c, SECRET, name);
    if (!o)
        goto done;
    ver->value = strdup(json_string_value(value));
    if (json_is_string(ct))
        ver->content_type = strdup(json_string_value(ct));
    if (!ver->value || azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
        drop_if_empty(c, SECRET, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    azsim_kv_version *added = ver;
    ver = NULL;
    rc = reply_bundle(c, o, added, SECRET, 1);
done:
    version_free(ver);
    json_decref(body);
    return rc;
}

/* ---------- certificates ---------- */

#define PEM_CT "application/x-pem-file"
#define PFX_CT "application/x-pkcs12"

static void remove_object(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    size_t idx;
    if (o && object_find(c->v, k, o->name, &idx) == o) {
        azsim_vec_remove(objects(c->v, k), idx);
        object_free(o);
    }
}

/* The managed key and secret of certificate `name` (NULL where there is none). */
static void cert_siblings(kv_ctx *c, const char *name, azsim_kv_object **out_key,
                          azsim_kv_object **out_secret)
{
    azsim_kv_object *k = object_find(c->v, KEY, name, NULL);
    azsim_kv_object *s = object_find(c->v, SECRET, name, NULL);
    *out_key = k && k->managed ? k : NULL;
    *out_secret = s && s->managed ? s : NULL;
}

static void cert_drop_managed(kv_ctx *c, const char *name)
{
    azsim_kv_object *ko, *so;
    cert_siblings(c, name, &ko, &so);
    remove_object(c, KEY, ko);
    remove_object(c, SECRET, so);
}

static char *cert_x5t(azsim_kv_version *ver)
{
    char *x5t = NULL;
    if (azsim_cert_info(ver->x5c, NULL, NULL, &x5t, NULL) != AZSIM_OK)
        return NULL;
    return x5t;
}

static json_t *cert_policy_json(kv_ctx *c, azsim_kv_object *o)
{
    char *id = azsim_printf("%s/certificates/%s/policy", c->base, o->name);
    json_t *p = json_pack("{s:s}", "id", id ? id : "");
    free(id);
    if (p && o->cert_policy)
        json_object_update(p, o->cert_policy);
    return p;
}

/* The managed key and secret versions of certificate version cv: same id, dates and state. The
 * secret carries no private key when the policy made the key non-exportable, as Key Vault does. */
static int managed_versions(azsim_kv_version **out_key, azsim_kv_version **out_secret,
                            azsim_kv_version *cv)
{
    azsim_kv_version *kv = calloc(1, sizeof(*kv)), *sv = calloc(1, sizeof(*sv));
    *out_key = *out_secret = NULL;
    if (!kv || !sv)
        goto fail;
    for (int i = 0; i < 2; i++) {
        azsim_kv_version *m = i ? sv : kv;
        memcpy(m->id, cv->id, sizeof(m->id));
        m->created = cv->created;
        m->updated = cv->updated;
        m->enabled = cv->enabled;
        m->has_nbf = cv->has_nbf;
        m->nbf = cv->nbf;
        m->has_exp = cv->has_exp;
        m->exp = cv->exp;
        m->tags = json_object();
        if (!m->tags)
            goto fail;
    }
    /* the key version shares the certificate's key: parsed already (an import), or its PEM (a
     * restore, parsed when first used) */
    EVP_PKEY *pkey = cv->pkey;
    if (pkey && (EVP_PKEY_up_ref(pkey) != 1 || version_set_key(kv, pkey) != AZSIM_OK))
        goto fail;
    if (!pkey && (!cv->pem || !(kv->pem = strdup(cv->pem))))
        goto fail;
    kv->kty = strdup(cv->kty);
    kv->exportable = cv->exportable;
    if (strncmp(cv->kty, "RSA", 3) == 0)
        kv->key_ops = json_pack("[s,s,s,s,s,s]", "sign", "verify", "wrapKey", "unwrapKey",
                                "encrypt", "decrypt");
    else
        kv->key_ops = json_pack("[s,s]", "sign", "verify");
    sv->content_type = strdup(cv->content_type);
    if (cv->exportable && !(pkey = azsim_kv_version_pkey(cv)))
        goto fail;
    sv->value = azsim_cert_secret_value(cv->x5c, cv->exportable ? pkey : NULL,
                                        strcmp(cv->content_type, PEM_CT) == 0);
    if (!kv->kty || !kv->key_ops || !sv->content_type || !sv->value)
        goto fail;
    *out_key = kv;
    *out_secret = sv;
    return AZSIM_OK;
fail:
    version_free(kv);
    version_free(sv);
    return AZSIM_ENOMEM;
}

static azsim_kv_object *managed_object_new(const char *name)
{
    azsim_kv_object *o = calloc(1, sizeof(*o));
    if (!o || !(o->name = strdup(name))) {
        free(o);
        return NULL;
    }
    o->managed = 1;
    return o;
}

/* Creates the managed key and secret of a restored certificate, one version per certificate
 * version, and adds them to the vault; 0, or a reply was sent / AZSIM_ENOMEM. */
static int cert_add_managed(kv_ctx *c, azsim_kv_object *co)
{
    azsim_kv_object *ko = managed_object_new(co->name), *so = managed_object_new(co->name);
    int rc = AZSIM_ENOMEM;
    if (!ko || !so)
        goto done;
    ko->deleted = so->deleted = co->deleted;
    ko->deleted_date = so->deleted_date = co->deleted_date;
    ko->purge_date = so->purge_date = co->purge_date;
    for (size_t i = 0; i < co->versions.n; i++) {
        azsim_kv_version *kv, *sv;
        if (managed_versions(&kv, &sv, co->versions.items[i]) != AZSIM_OK)
            goto done;
        if (azsim_vec_push(&ko->versions, kv) != AZSIM_OK) {
            version_free(kv);
            version_free(sv);
            goto done;
        }
        if (azsim_vec_push(&so->versions, sv) != AZSIM_OK) {
            version_free(sv);
            goto done;
        }
    }
    if (azsim_vec_push(&c->v->keys, ko) != AZSIM_OK)
        goto done;
    if (azsim_vec_push(&c->v->secrets, so) != AZSIM_OK) {
        c->v->keys.n--;
        goto done;
    }
    ko = so = NULL;
    rc = AZSIM_OK;
done:
    object_free(ko);
    object_free(so);
    return rc;
}

/* The policy a certificate gets from an import: key and secret properties as requested (the key
 * type and size as found in the certificate), x509_props read from the certificate, issuer
 * Unknown and Key Vault's default lifetime action unless the request names others. */
static json_t *cert_policy_new(azsim_kv_object *old, json_t *req, const char *kty, EVP_PKEY *pkey,
                               int exportable, int reuse_key, const char *ct, json_t *x509,
                               int64_t now)
{
    json_t *p = json_object();
    json_t *kp =
        json_pack("{s:b,s:s,s:b}", "exportable", exportable, "kty", kty, "reuse_key", reuse_key);
    json_t *old_attrs =
        old && old->cert_policy ? json_object_get(old->cert_policy, "attributes") : NULL;
    json_t *created = json_object_get(old_attrs, "created");
    json_t *la = json_object_get(req, "lifetime_actions");
    json_t *issuer = json_object_get(req, "issuer");
    if (!p || !kp) {
        json_decref(p);
        json_decref(kp);
        json_decref(x509);
        return NULL;
    }
    if (EVP_PKEY_is_a(pkey, "RSA"))
        json_object_set_new(kp, "key_size", json_integer(rsa_bits(pkey)));
    else
        json_object_set_new(kp, "crv", json_string(ec_crv(pkey)));
    json_object_set_new(p, "key_props", kp);
    json_object_set_new(p, "secret_props", json_pack("{s:s}", "contentType", ct));
    json_object_set_new(p, "x509_props", x509);
    if (json_is_array(la))
        json_object_set(p, "lifetime_actions", la);
    else
        json_object_set_new(p, "lifetime_actions",
                            json_pack("[{s:{s:i},s:{s:s}}]", "trigger", "lifetime_percentage", 80,
                                      "action", "action_type", "EmailContacts"));
    if (json_is_object(issuer) && json_is_string(json_object_get(issuer, "name")))
        json_object_set_new(p, "issuer", json_deep_copy(issuer));
    else
        json_object_set_new(p, "issuer", json_pack("{s:s}", "name", "Unknown"));
    json_object_set_new(p, "attributes",
                        json_pack("{s:b,s:I,s:I}", "enabled", 1, "created",
                                  created ? json_integer_value(created) : (json_int_t)now,
                                  "updated", (json_int_t)now));
    return p;
}

/* POST /certificates/{name}/import: PFX or PEM with its private key; a new version of the
 * certificate and of its managed key and secret. */
static int cert_import(kv_ctx *c, const char *name)
{
    json_t *body = azsim_body_json(c->r);
    json_t *x5c = NULL, *x509 = NULL, *policy = NULL;
    EVP_PKEY *pkey = NULL;
    azsim_kv_version *ver = NULL, *kver = NULL, *sver = NULL;
    azsim_kv_object *o = NULL, *ko = NULL, *so = NULL, *new_ko = NULL, *new_so = NULL;
    char *x5t = NULL;
    const char *why = "The specified certificate is invalid.";
    int rc = AZSIM_OK, exportable = 1, reuse_key = 0;
    int64_t nbf = 0, exp = 0;

    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    const char *value = json_string_value(json_object_get(body, "value"));
    json_t *jpwd = json_object_get(body, "pwd");
    json_t *jpol = json_object_get(body, "policy");
    if (!value || !*value) {
        rc = bad_param(c, "The parameter value is required: the base64 encoded PFX or the PEM "
                          "content of the certificate with its private key.");
        goto done;
    }
    if ((jpwd && !json_is_string(jpwd) && !json_is_null(jpwd)) ||
        (jpol && !json_is_object(jpol) && !json_is_null(jpol))) {
        rc = bad_param(c, "The parameters pwd and policy are invalid.");
        goto done;
    }
    json_t *kp = json_object_get(jpol, "key_props");
    json_t *sp = json_object_get(jpol, "secret_props");
    json_t *jct = json_object_get(sp, "contentType");
    json_t *jexp = json_object_get(kp, "exportable");
    json_t *jreuse = json_object_get(kp, "reuse_key");
    const char *ct = json_is_string(jct) ? json_string_value(jct) : PFX_CT;
    if (strcmp(ct, PFX_CT) != 0 && strcmp(ct, PEM_CT) != 0) {
        rc = bad_param(c, "The secret content type must be application/x-pkcs12 or "
                          "application/x-pem-file.");
        goto done;
    }
    if ((jexp && !json_is_boolean(jexp) && !json_is_null(jexp)) ||
        (jreuse && !json_is_boolean(jreuse) && !json_is_null(jreuse))) {
        rc = bad_param(c, "The key properties exportable and reuse_key must be booleans.");
        goto done;
    }
    if (json_is_boolean(jexp))
        exportable = json_is_true(jexp);
    reuse_key = json_is_true(jreuse);

    /* the name is also the name of the managed key and secret */
    azsim_kv_object *kx = object_find(c->v, KEY, name, NULL);
    azsim_kv_object *sx = object_find(c->v, SECRET, name, NULL);
    if ((kx && !kx->managed) || (sx && !sx->managed)) {
        rc = kv_error(c, 409, "Conflict", NULL,
                      "A key or secret named %s already exists in this vault (it may be "
                      "soft-deleted); a certificate needs its name for its managed key and "
                      "secret.",
                      name);
        goto done;
    }

    int prc = azsim_cert_parse(&pkey, &x5c, value, json_string_value(jpwd), strcmp(ct, PEM_CT) == 0,
                               &why);
    if (prc == AZSIM_EINVAL) {
        rc = bad_param(c, why);
        goto done;
    }
    if (prc != AZSIM_OK) {
        rc = prc;
        goto done;
    }
    int rsa = EVP_PKEY_is_a(pkey, "RSA");
    if (!rsa && !EVP_PKEY_is_a(pkey, "EC")) {
        rc = bad_param(c, "The key of the certificate is not supported: Key Vault certificates "
                          "have RSA or EC keys.");
        goto done;
    }
    long bits = rsa_bits(pkey);
    if (rsa && bits != 2048 && bits != 3072 && bits != 4096) {
        rc = bad_param(c, "The key size is not supported. RSA keys must be 2048, 3072 or 4096 "
                          "bits.");
        goto done;
    }
    const char *kty = json_string_value(json_object_get(kp, "kty"));
    if (!kty)
        kty = rsa ? "RSA" : "EC";
    if (rsa ? (strcmp(kty, "RSA") && strcmp(kty, "RSA-HSM"))
            : (strcmp(kty, "EC") && strcmp(kty, "EC-HSM"))) {
        rc = bad_param(c, "The key type in the policy does not match the key of the certificate.");
        goto done;
    }
    json_t *jsize = json_object_get(kp, "key_size");
    const char *crv = json_string_value(json_object_get(kp, "crv"));
    if ((rsa && json_is_integer(jsize) && json_integer_value(jsize) != bits) ||
        (!rsa && crv && strcmp(crv, ec_crv(pkey)) != 0)) {
        rc = bad_param(c, "The key size or curve in the policy does not match the key of the "
                          "certificate.");
        goto done;
    }
    if (strstr(kty, "HSM") && !azsim_streq_ci(json_string_value(json_object_get(
                                                  json_object_get(c->v->props, "sku"), "name")),
                                              "premium")) {
        rc = kv_error(c, 403, "Forbidden", NULL,
                      "Key type %s is not allowed for vault SKU standard.", kty);
        goto done;
    }
    if (azsim_cert_info(x5c, &nbf, &exp, &x5t, &x509) != AZSIM_OK) {
        rc = bad_param(c, "The specified certificate is invalid.");
        goto done;
    }
    ver = version_new(c);
    if (!ver) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (apply_attributes(c, ver, body) != AZSIM_OK)
        goto done;
    /* a certificate's validity is the certificate's, whatever the request said */
    ver->has_nbf = ver->has_exp = 1;
    ver->nbf = nbf;
    ver->exp = exp;
    ver->x5c = x5c;
    ver->pkey = pkey;
    x5c = NULL;
    pkey = NULL;
    ver->kty = strdup(kty);
    ver->content_type = strdup(ct);
    ver->exportable = exportable;
    if (!ver->kty || !ver->content_type || managed_versions(&kver, &sver, ver) != AZSIM_OK) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    o = object_for_write(c, CERT, name);
    if (!o)
        goto done;
    policy = cert_policy_new(o, jpol, kty, azsim_kv_version_pkey(ver), exportable, reuse_key, ct,
                             x509, azsim_now(c->st));
    x509 = NULL;
    cert_siblings(c, name, &ko, &so);
    if (!ko)
        ko = new_ko = managed_object_new(name);
    if (!so)
        so = new_so = managed_object_new(name);
    if (!policy || !ko || !so) {
        drop_if_empty(c, CERT, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (azsim_vec_push(&o->versions, ver) != AZSIM_OK) {
        drop_if_empty(c, CERT, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (azsim_vec_push(&ko->versions, kver) != AZSIM_OK) {
        o->versions.n--;
        drop_if_empty(c, CERT, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    kver = NULL;
    if (azsim_vec_push(&so->versions, sver) != AZSIM_OK ||
        (new_ko && azsim_vec_push(&c->v->keys, new_ko) != AZSIM_OK)) {
        /* put everything back as it was */
        version_free(ko->versions.items[--ko->versions.n]);
        if (so->versions.n && so->versions.items[so->versions.n - 1] == sver)
            so->versions.n--;
        o->versions.n--;
        drop_if_empty(c, CERT, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    sver = NULL;
    new_ko = NULL;
    if (new_so && azsim_vec_push(&c->v->secrets, new_so) != AZSIM_OK) {
        /* the key object is in the vault now; keep the three in step by dropping this version */
        version_free(ko->versions.items[--ko->versions.n]);
        drop_if_empty(c, KEY, ko);
        o->versions.n--;
        drop_if_empty(c, CERT, o);
        rc = AZSIM_ENOMEM;
        goto done;
    }
    new_so = NULL;
    json_decref(o->cert_policy);
    o->cert_policy = policy;
    policy = NULL;
    azsim_kv_version *added = ver;
    ver = NULL;
    rc = reply_bundle(c, o, added, CERT, 0);
done:
    version_free(ver);
    version_free(kver);
    version_free(sver);
    object_free(new_ko);
    object_free(new_so);
    json_decref(policy);
    json_decref(x5c);
    json_decref(x509);
    EVP_PKEY_free(pkey);
    free(x5t);
    json_decref(body);
    return rc;
}

/* PATCH /certificates/{name}[/{version}]: enabled and tags; the managed key and secret version
 * follow the enabled state. nbf/exp stay those of the certificate. */
static int cert_update(kv_ctx *c, azsim_kv_object *o, azsim_kv_version *ver)
{
    json_t *body = azsim_body_json(c->r);
    azsim_kv_version tmp = *ver;
    azsim_kv_object *ko, *so;
    int rc = AZSIM_OK;
    if (!json_is_object(body)) {
        rc = bad_param(c, "The request body is not valid JSON or is missing.");
        goto done;
    }
    json_t *pol = json_object_get(body, "policy");
    if (pol && !json_is_null(pol)) {
        rc = bad_param(c, "azsim does not implement policy changes through the certificate "
                          "update operation; send attributes and tags only.");
        goto done;
    }
    tmp.tags = json_incref(ver->tags);
    if (apply_attributes(c, &tmp, body) != AZSIM_OK) {
        json_decref(tmp.tags);
        goto done;
    }
    json_decref(ver->tags);
    ver->tags = tmp.tags;
    ver->enabled = tmp.enabled;
    ver->updated = azsim_now(c->st);
    cert_siblings(c, o->name, &ko, &so);
    for (int i = 0; i < 2; i++) {
        azsim_kv_object *m = i ? so : ko;
        azsim_kv_version *mv = m ? version_find(m, ver->id) : NULL;
        if (mv) {
            mv->enabled = ver->enabled;
            mv->updated = ver->updated;
        }
    }
    rc = reply_bundle(c, o, ver, CERT, 0);
done:
    json_decref(body);
    return rc;
}

/* ---------- delete / recover / purge ---------- */

/* A certificate takes its managed key and secret along: deleted, recovered and purged with it. */
static int delete_object(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    int64_t now = azsim_now(c->st);
    azsim_kv_object *ko = NULL, *so = NULL;
    int rc;
    if (k == KEY && !version_jwk(latest(o)))
        return key_unreadable(c, latest(o)); /* before the change: the reply could not show it */
    if (k == CERT)
        cert_siblings(c, o->name, &ko, &so);
    for (int i = 0; i < 3; i++) {
        azsim_kv_object *d = i == 0 ? o : i == 1 ? ko : so;
        if (!d)
            continue;
        d->deleted = 1;
        d->deleted_date = now;
        d->purge_date = now + (int64_t)c->v->retention_days * 86400;
    }
    rc = reply_bundle(c, o, latest(o), k, 0); /* made before a purge frees it */
    if (!c->v->soft_delete) {
        remove_object(c, KEY, ko);
        remove_object(c, SECRET, so);
        remove_object(c, k, o);
    }
    return rc;
}

static int recover_object(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    azsim_kv_object *ko = NULL, *so = NULL;
    if (k == KEY && !version_jwk(latest(o)))
        return key_unreadable(c, latest(o));
    if (k == CERT)
        cert_siblings(c, o->name, &ko, &so);
    o->deleted = 0;
    if (ko)
        ko->deleted = 0;
    if (so)
        so->deleted = 0;
    return reply_bundle(c, o, latest(o), k, 0);
}

static int purge_object(kv_ctx *c, enum kind k, azsim_kv_object *o)
{
    size_t idx;
    if (c->v->purge_protection)
        return kv_error(c, 403, "Forbidden", NULL,
                        "Operation \"purge\" is not allowed because purge protection is enabled "
                        "for this vault. Key Vault service will automatically purge it after the "
                        "retention period has passed.");
    if (k == CERT)
        cert_drop_managed(c, o->name);
    if (object_find(c->v, k, o->name, &idx) == o) {
        azsim_vec_remove(objects(c->v, k), idx);
        object_free(o);
    }
    return azsim_reply_empty(c->r, 204);
}

/* ---------- authorization and throttling ---------- */

typedef struct op_info {
    const char *stat;
    const char *data_action;
    const char *perm_kind; /* access policy permission family */
    const char *perm;
} op_info;

static int authorized(kv_ctx *c, const op_info *op, enum kind k, const char *name)
{
    azsim_vault *v = c->v;
    char *resource = NULL, *lower = NULL;
    int rc = AZSIM_OK;

    resource = azsim_printf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                            "vaults/%s%s%s%s%s",
                            v->sub, v->rg, v->name, name ? "/" : "", name ? kind_coll(k) : "",
                            name ? "/" : "", name ? name : "");
    if (!resource)
        return AZSIM_ENOMEM;
    if (v->rbac) {
        if (azsim_rbac_allows(c->st, c->caller.oid, resource, op->data_action, 1, 1))
            goto done;
        lower = strdup(resource);
        for (char *p = lower; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        kv_error(c, 403, "Forbidden", "ForbiddenByRbac",
                 "Caller is not authorized to perform action on resource.\r\nIf role "
                 "assignments, deny assignments or role definitions were changed recently, please "
                 "observe propagation time.\r\nCaller: appid=%s;oid=%s;iss=%s\r\nAction: "
                 "'%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: "
                 "null\r\nDecisionReason: null \r\nVault: %s;location=%s\r\n",
                 c->caller.appid, c->caller.oid, c->caller.iss, op->data_action,
                 lower ? lower : resource, v->name, v->location);
        rc = AZSIM_EINVAL;
        goto done;
    }
    size_t i;
    json_t *ap;
    json_array_foreach(json_object_get(v->props, "accessPolicies"), i, ap)
    {
        if (!azsim_streq_ci(json_string_value(json_object_get(ap, "objectId")), c->caller.oid) ||
            !azsim_streq_ci(json_string_value(json_object_get(ap, "tenantId")), c->caller.tid))
            continue;
        size_t j;
        json_t *p;
        json_array_foreach(json_object_get(json_object_get(ap, "permissions"), op->perm_kind), j,
                           p) if (azsim_streq_ci(json_string_value(p), op->perm) ||
                                  azsim_streq_ci(json_string_value(p), "all")) goto done;
    }
    kv_error(c, 403, "Forbidden", "AccessDenied",
             "The user, group or application 'appid=%s;oid=%s;iss=%s' does not have %s %s "
             "permission on key vault '%s;location=%s'. For help resolving this issue, please "
             "see https://go.microsoft.com/fwlink/?linkid=2125287",
             c->caller.appid, c->caller.oid, c->caller.iss, op->perm_kind, op->perm, v->name,
             v->location);
    rc = AZSIM_EINVAL;
done:
    free(resource);
    free(lower);
    return rc;
}

/* The subscription-wide window of v's subscription and region (made at first use). */
static azsim_kv_subwin *subwin_for(azsim_state *st, const azsim_vault *v)
{
    const char *sub = v->sub ? v->sub : "", *loc = v->location ? v->location : "";
    azsim_kv_subwin *w;
    for (size_t i = 0; i < st->kv_nsubwins; i++) {
        w = &st->kv_subwins[i];
        if (strcmp(w->sub, sub) == 0 && strcasecmp(w->location, loc) == 0)
            return w;
    }
    if (st->kv_nsubwins == AZSIM_KV_SUBWINS)
        return &st->kv_subwins[0]; /* more subscription-regions than a test uses: they share */
    w = &st->kv_subwins[st->kv_nsubwins++];
    memset(w, 0, sizeof(*w));
    snprintf(w->sub, sizeof(w->sub), "%s", sub);
    snprintf(w->location, sizeof(w->location), "%s", loc);
    return w;
}

/* Starts w again at `now` when its 10 seconds are over (or the clock went back). */
static void window_roll(azsim_kv_window *w, int64_t now)
{
    if (now - w->start >= 10 || now < w->start) {
        w->start = now;
        memset(w->used, 0, sizeof(w->used));
    }
}

/*
 * Published limits per 10 s, per vault: key create 20 (HSM 10), other key ops 4000 weighted by
 * RSA size (3072 = 4, 4096 = 8), secret create 300, everything else 4000. Per subscription and
 * region, for all the vaults there together, five times each of those. A request over either is
 * 429 `Throttled`. The reference names no reason of its own for the subscription's limit: the
 * answer is the vault's.
 */
static int throttled(kv_ctx *c, const op_info *op, azsim_kv_object *o)
{
    azsim_vault *v = c->v;
    int64_t now = azsim_now(c->st);
    double limit, weight = 1;
    int k;
    if (!c->st->throttle)
        return 0;
    azsim_kv_window *vw = &v->window, *sw = &subwin_for(c->st, v)->window;
    window_roll(vw, now);
    window_roll(sw, now);
    if (strcmp(op->stat, "kv.keys.create") == 0 || strcmp(op->stat, "kv.keys.rotate") == 0) {
        k = 0;
        json_t *body = azsim_body_json(c->r);
        const char *kty = json_string_value(json_object_get(body, "kty"));
        limit = kty && strstr(kty, "HSM") ? 10 : 20;
        json_decref(body);
    } else if (strncmp(op->stat, "kv.keys.", 8) == 0) {
        k = 1;
        limit = 4000;
        azsim_kv_version *ver = o ? latest(o) : NULL;
        long bits = 0;
        const char *crv;
        if (ver && strncmp(ver->kty, "RSA", 3) == 0)
            key_shape(ver, &bits, &crv); /* from the JWK: weighing a GET parses no key */
        weight = bits >= 4096 ? 8 : bits >= 3072 ? 4 : 1;
    } else if (strcmp(op->stat, "kv.secrets.set") == 0 ||
               strcmp(op->stat, "kv.certificates.import") == 0) {
        /* an import writes a secret version (the certificate's); the published limits have no
         * row of their own for certificates, so it counts as a secret CREATE */
        k = 2;
        limit = c->st->kv_secret_limit > 0 ? c->st->kv_secret_limit : 300;
    } else {
        k = 3;
        limit = 4000;
    }
    double sub_limit = k == 3 && c->st->kv_sub_limit > 0 ? c->st->kv_sub_limit : 5 * limit;
    if (vw->used[k] + weight > limit || sw->used[k] + weight > sub_limit) {
        c->st->throttled++;
        kv_error(c, 429, "Throttled", NULL,
                 "Operations per second limit exceeded. Please retry after some time. Reason: "
                 "VaultRequestTypeLimitReached");
        return 1;
    }
    vw->used[k] += weight;
    sw->used[k] += weight;
    return 0;
}

/* ---------- routing ---------- */

static int challenge(kv_ctx *c, const char *why)
{
    char hdr[512];
    char *vault_res = azsim_resource(c->st, "vault.localhost");
    snprintf(hdr, sizeof(hdr),
             "Bearer authorization=\"https://login.localhost:%d/%s\", resource=\"%s\"", c->st->port,
             c->st->tenant, vault_res ? vault_res : "");
    azsim_set_header(c->r, "WWW-Authenticate", hdr);
    int rc;
    if (strcmp(why, "missing") == 0)
        rc = kv_error(c, 401, "Unauthorized", NULL,
                      "AKV10000: Request is missing a Bearer or PoP token.");
    else if (strcmp(why, "audience") == 0)
        rc = kv_error(c, 401, "Unauthorized", NULL,
                      "AKV10022: Invalid audience. Expected %s, found: another audience.",
                      vault_res ? vault_res : "");
    else if (strcmp(why, "expired") == 0)
        rc = kv_error(c, 401, "Unauthorized", NULL, "AKV10032: Token expired.");
    else
        rc = kv_error(c, 401, "Unauthorized", NULL,
                      "AKV10031: Invalid token: the signature, issuer or tenant is not valid.");
    free(vault_res);
    return rc;
}

static int route(kv_ctx *c)
{
    azsim_req *r = c->r;
    char **s = r->segs;
    size_t n = r->nsegs;
    const char *m = r->method;
    int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, put = strcmp(m, "PUT") == 0,
        del = strcmp(m, "DELETE") == 0, patch = strcmp(m, "PATCH") == 0;
    enum kind k;
    const char *name = n >= 2 ? s[1] : NULL;
    azsim_kv_object *o = NULL;
    azsim_kv_version *ver = NULL;
    op_info op = {"kv.unknown", "", "", ""};
    int deleted_coll = 0;

    if (n == 0)
        goto unknown;
    if (strcmp(s[0], "keys") == 0 || strcmp(s[0], "deletedkeys") == 0)
        k = KEY;
    else if (strcmp(s[0], "secrets") == 0 || strcmp(s[0], "deletedsecrets") == 0)
        k = SECRET;
    else if (strcmp(s[0], "certificates") == 0 || strcmp(s[0], "deletedcertificates") == 0)
        k = CERT;
    else
        goto unknown;
    deleted_coll = strncmp(s[0], "deleted", 7) == 0;
    /* a trailing slash on a collection is the collection */
    if (n == 2 && s[1][0] == '\0')
        n = 1;

#define OP(st_, act_, perm_)                                                                       \
    do {                                                                                           \
        op.stat = st_;                                                                             \
        op.data_action = act_;                                                                     \
        op.perm_kind = kind_coll(k);                                                               \
        op.perm = perm_;                                                                           \
    } while (0)
#define OP2(a, b, c_, d, e, f)                                                                     \
    do {                                                                                           \
        if (k == KEY)                                                                              \
            OP(a, b, c_);                                                                          \
        else                                                                                       \
            OP(d, e, f);                                                                           \
    } while (0)
#define KA "Microsoft.KeyVault/vaults/keys/"
#define SA "Microsoft.KeyVault/vaults/secrets/"
#define CA "Microsoft.KeyVault/vaults/certificates/"

    /* identify the operation first: authorization happens before existence checks */
    const char *sub = n >= 3 ? s[2] : NULL;
    const char *tail = n >= 4 ? s[3] : NULL;
    if (k == KEY && n == 3 && post && !deleted_coll &&
        (strcasecmp(sub, "wrapkey") == 0 || strcasecmp(sub, "unwrapkey") == 0 ||
         strcasecmp(sub, "encrypt") == 0 || strcasecmp(sub, "decrypt") == 0)) {
        /* /keys/NAME/wrapkey: the version segment left out means the latest version */
        tail = sub;
        sub = "";
        n = 4;
    }
    if (k == CERT && !deleted_coll) {
        if (n == 1 && get)
            OP("kv.certificates.list", CA "read", "list");
        else if (n == 2 && post && strcmp(s[1], "restore") == 0)
            OP("kv.certificates.restore", CA "restore/action", "restore");
        else if (n == 3 && post && strcmp(sub, "import") == 0)
            OP("kv.certificates.import", CA "import/action", "import");
        else if (n == 3 && post && strcmp(sub, "backup") == 0)
            OP("kv.certificates.backup", CA "backup/action", "backup");
        else if (n == 3 && get && strcmp(sub, "versions") == 0)
            OP("kv.certificates.versions", CA "read", "list");
        else if (n == 3 && get && strcmp(sub, "policy") == 0)
            OP("kv.certificates.getpolicy", CA "read", "get");
        else if ((n == 2 || n == 3) && get)
            OP("kv.certificates.get", CA "read", "get");
        else if ((n == 2 || n == 3) && patch)
            OP("kv.certificates.update", CA "update/action", "update");
        else if (n == 2 && del)
            OP("kv.certificates.delete", CA "delete", "delete");
        else
            goto unknown;
    } else if (k == CERT) {
        if (n == 1 && get)
            OP("kv.deletedcertificates.list", CA "read", "list");
        else if (n == 2 && get)
            OP("kv.deletedcertificates.get", CA "read", "get");
        else if (n == 2 && del)
            OP("kv.deletedcertificates.purge", CA "purge/action", "purge");
        else if (n == 3 && post && strcmp(sub, "recover") == 0)
            OP("kv.deletedcertificates.recover", CA "recover/action", "recover");
        else
            goto unknown;
    } else if (!deleted_coll) {
        if (n == 1 && get)
            OP2("kv.keys.list", KA "read", "list", "kv.secrets.list", SA "readMetadata/action",
                "list");
        else if (n == 2 && post && strcmp(s[1], "restore") == 0)
            OP2("kv.keys.restore", KA "restore/action", "restore", "kv.secrets.restore",
                SA "restore/action", "restore");
        else if (k == KEY && n == 3 && post && strcmp(sub, "create") == 0)
            OP("kv.keys.create", KA "create/action", "create");
        else if (k == KEY && n == 2 && put)
            OP("kv.keys.import", KA "import/action", "import");
        else if (k == SECRET && n == 2 && put)
            OP("kv.secrets.set", SA "setSecret/action", "set");
        else if ((n == 2 || (n == 3 && !*sub)) && get)
            OP2("kv.keys.get", KA "read", "get", "kv.secrets.get", SA "getSecret/action", "get");
        else if (n == 3 && get && strcmp(sub, "versions") == 0)
            OP2("kv.keys.versions", KA "read", "list", "kv.secrets.versions",
                SA "readMetadata/action", "list");
        else if (k == KEY && n == 3 && get && strcmp(sub, "rotationpolicy") == 0)
            OP("kv.keys.getrotationpolicy", "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
               "getrotationpolicy");
        else if (k == KEY && n == 3 && put && strcmp(sub, "rotationpolicy") == 0)
            OP("kv.keys.setrotationpolicy", "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
               "setrotationpolicy");
        else if (k == KEY && n == 3 && post && strcmp(sub, "rotate") == 0)
            OP("kv.keys.rotate", KA "rotate/action", "rotate");
        else if (n == 3 && post && strcmp(sub, "backup") == 0)
            OP2("kv.keys.backup", KA "backup/action", "backup", "kv.secrets.backup",
                SA "backup/action", "backup");
        else if (n == 2 && del)
            OP2("kv.keys.delete", KA "delete", "delete", "kv.secrets.delete", SA "delete",
                "delete");
        else if (n == 3 && get)
            OP2("kv.keys.get", KA "read", "get", "kv.secrets.get", SA "getSecret/action", "get");
        else if ((n == 2 || n == 3) && patch)
            OP2("kv.keys.update", KA "update/action", "update", "kv.secrets.update",
                SA "setSecret/action", "set");
        else if (k == KEY && n == 4 && post && strcasecmp(tail, "wrapkey") == 0)
            OP("kv.keys.wrapkey", KA "wrap/action", "wrapKey");
        else if (k == KEY && n == 4 && post && strcasecmp(tail, "unwrapkey") == 0)
            OP("kv.keys.unwrapkey", KA "unwrap/action", "unwrapKey");
        else if (k == KEY && n == 4 && post && strcasecmp(tail, "encrypt") == 0)
            OP("kv.keys.encrypt", KA "encrypt/action", "encrypt");
        else if (k == KEY && n == 4 && post && strcasecmp(tail, "decrypt") == 0)
            OP("kv.keys.decrypt", KA "decrypt/action", "decrypt");
        else
            goto unknown;
    } else {
        if (n == 1 && get)
            OP2("kv.deletedkeys.list", KA "read", "list", "kv.deletedsecrets.list",
                SA "readMetadata/action", "list");
        else if (n == 2 && get)
            OP2("kv.deletedkeys.get", KA "read", "get", "kv.deletedsecrets.get",
                SA "readMetadata/action", "list");
        else if (n == 2 && del)
            OP2("kv.deletedkeys.purge", KA "purge/action", "purge", "kv.deletedsecrets.purge",
                SA "purge/action", "purge");
        else if (n == 3 && post && strcmp(sub, "recover") == 0)
            OP2("kv.deletedkeys.recover", KA "recover/action", "recover",
                "kv.deletedsecrets.recover", SA "recover/action", "recover");
        else
            goto unknown;
    }
    r->op = op.stat;

    int collection_op = n == 1 || (n == 2 && strcmp(s[1], "restore") == 0 && post);
    if (!collection_op && !azsim_valid_object_name(name))
        return bad_param(c, "The request URI contains an invalid name.");
    if (authorized(c, &op, k, collection_op ? NULL : name) != AZSIM_OK)
        return AZSIM_OK;
    if (!collection_op)
        o = object_find(c->v, k, name, NULL);
    if (throttled(c, &op, o))
        return AZSIM_OK;
    /* the key and secret of a certificate are read-only: only the certificate changes them */
    if (o && o->managed &&
        (put || patch || del ||
         (post && n == 3 && !deleted_coll &&
          (strcmp(sub, "create") == 0 || strcmp(sub, "rotate") == 0 ||
           strcmp(sub, "backup") == 0)) ||
         (post && deleted_coll))) {
        const char *verb = put     ? (k == KEY ? "import" : "set")
                           : patch ? "update"
                           : del   ? (deleted_coll ? "purge" : "delete")
                                   : sub;
        return kv_error(c, 403, "Forbidden", NULL,
                        "Operation %s is not allowed on a managed %s. The %s belongs to the "
                        "certificate %s; use the certificate operations instead.",
                        verb, kind_word(k), kind_word(k), o->name);
    }

    if (n == 1)
        return list_objects(c, k, deleted_coll);
    if (collection_op)
        return restore(c, k);
    if (deleted_coll) {
        if (!o || !o->deleted)
            return deleted_not_found(c, k);
        if (n == 2 && get)
            return reply_bundle(c, o, latest(o), k, 0);
        if (n == 2 && del)
            return purge_object(c, k, o);
        return recover_object(c, k, o);
    }
    if (k == CERT && n == 3 && post && strcmp(sub, "import") == 0)
        return cert_import(c, name);
    if (k == KEY && n == 2 && put)
        return key_import(c, name);
    if (k == KEY && n == 3 && strcmp(sub, "create") == 0)
        return key_create(c, name);
    if (k == SECRET && n == 2 && put)
        return secret_set(c, name);
    if (!o || o->deleted)
        return not_found(c, k, name);
    if (n == 3 && get && strcmp(sub, "versions") == 0)
        return list_versions(c, k, o);
    if (k == CERT && n == 3 && get && strcmp(sub, "policy") == 0)
        return azsim_reply_json(r, 200, cert_policy_json(c, o));
    if (k == KEY && n == 3 && strcmp(sub, "rotationpolicy") == 0) {
        if (put)
            return policy_set(c, o);
        if (!o->rotation_policy)
            return azsim_reply_json(r, 200, default_policy(c, o->name));
        char *id = azsim_printf("%s/keys/%s/rotationpolicy", c->base, o->name);
        json_t *resp = json_pack("{s:s}", "id", id ? id : "");
        free(id);
        json_object_update(resp, o->rotation_policy);
        return azsim_reply_json(r, 200, resp);
    }
    if (k == KEY && n == 3 && strcmp(sub, "rotate") == 0) {
        if (!version_jwk(latest(o)))
            return key_unreadable(c, latest(o)); /* the new version copies its type and size */
        ver = rotate_version(c, o);
        if (!ver)
            return AZSIM_ERR;
        return reply_bundle(c, o, ver, KEY, 0);
    }
    if (n == 3 && post && strcmp(sub, "backup") == 0)
        return backup(c, k, o);
    if (n == 2 && del)
        return delete_object(c, k, o);
    ver = version_find(o, n >= 3 ? sub : NULL);
    if (!ver)
        return not_found(c, k, name);
    if (get) {
        if (k == SECRET && !ver->enabled)
            return kv_error(c, 403, "Forbidden", "SecretDisabled",
                            "Operation get is not allowed on a disabled secret.");
        return reply_bundle(c, o, ver, k, k == SECRET);
    }
    if (patch)
        return k == CERT ? cert_update(c, o, ver) : update_version(c, k, o, ver);
    return crypto_op(c, o, ver, tail);

unknown:
    r->op = "kv.unknown";
    return kv_error(c, 404, "NotFound", NULL, "The requested operation %s %s is not supported.",
                    r->method, r->path);
#undef OP
#undef OP2
#undef KA
#undef SA
#undef CA
}

int azsim_kv_handle(azsim_req *r, const char *vault_name)
{
    kv_ctx c;
    const char *why = NULL;
    int rc;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.st = r->st;
    c.v = azsim_vault_find(r->st, vault_name);
    r->op = "kv.request";
    if (!c.v || c.v->deleted) {
        r->op = "kv.no-such-vault";
        r->drop = 1; /* the name does not resolve: there is no such vault */
        return AZSIM_OK;
    }
    if (c.v->unresolved) {
        r->op = "kv.vault-registering-dns";
        r->drop = 1; /* created by an async PUT still running: its DNS name is not there yet */
        return AZSIM_OK;
    }
    c.base = azsim_printf("https://%s.vault.localhost:%d", c.v->name, r->st->port);
    if (!c.base)
        return AZSIM_ENOMEM;
    azsim_set_header(r, "x-ms-keyvault-region", c.v->location);
    azsim_set_header(r, "x-ms-keyvault-service-version", "1.9.0.0");
    azsim_set_header(r, "x-ms-keyvault-network-info",
                     "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;");
    char *aud = azsim_resource(r->st, "vault.localhost");
    if (!aud) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = azsim_auth_bearer(&c.caller, r, aud, &why);
    free(aud);
    if (rc != AZSIM_OK) {
        r->op = "kv.challenge";
        rc = challenge(&c, why);
        goto done;
    }
    c.api = azsim_query(r, "api-version");
    if (!c.api || !*c.api) {
        r->op = "kv.bad-api-version";
        rc = kv_error(&c, 400, "BadParameter", NULL,
                      "The api-version query parameter is missing. It is required for all "
                      "requests.");
        goto done;
    }
    if (azsim_api_version_check(c.st, AZSIM_API_KEYVAULT, c.api) == AZSIM_API_UNKNOWN) {
        r->op = "kv.bad-api-version";
        rc = kv_error(&c, 400, "BadParameter", NULL,
                      "The specified version (%s) is not recognized. Consider using the latest "
                      "supported version (%s).",
                      c.api, azsim_api_version_latest_stable(AZSIM_API_KEYVAULT));
        goto done;
    }
    rc = route(&c);
done:
    free(c.base);
    return rc;
}

/* One vault's keys, secrets and certificates: purges what is past its purge date and runs due
   auto-rotations; *next is lowered to the earliest time anything left is due. */
static void sweep_objects(azsim_state *st, azsim_vault *v, int64_t now, int64_t *next_out)
{
    int64_t next = *next_out;
    for (int kk = 0; kk < 3; kk++) {
        azsim_vec *vec = objects(v, kk == 0 ? KEY : kk == 1 ? SECRET : CERT);
        for (size_t j = 0; j < vec->n;) {
            azsim_kv_object *o = vec->items[j];
            if (o->deleted && o->purge_date <= now) {
                azsim_vec_remove(vec, j);
                object_free(o);
                continue;
            }
            if (o->deleted && o->purge_date < next)
                next = o->purge_date;
            j++;
            if (kk || o->deleted || !o->rotation_policy || v->deleted)
                continue;
            /* auto-rotation: the Rotate lifetime action fires when due */
            size_t ai;
            json_t *la;
            json_array_foreach(json_object_get(o->rotation_policy, "lifetimeActions"), ai, la)
            {
                if (!azsim_streq_ci(json_string_value(
                                        json_object_get(json_object_get(la, "action"), "type")),
                                    "rotate"))
                    continue;
                json_t *trig = json_object_get(la, "trigger");
                const char *tac = json_string_value(json_object_get(trig, "timeAfterCreate"));
                const char *tbe = json_string_value(json_object_get(trig, "timeBeforeExpiry"));
                int guard;
                for (guard = 0; guard < 64; guard++) {
                    azsim_kv_version *cur = latest(o);
                    int64_t d = 0, due;
                    if (tac && azsim_parse_duration(&d, tac) == AZSIM_OK)
                        due = cur->created + d;
                    else if (tbe && cur->has_exp && azsim_parse_duration(&d, tbe) == AZSIM_OK)
                        due = cur->exp - d;
                    else
                        break;
                    if (now < due) {
                        if (due < next)
                            next = due;
                        break;
                    }
                    kv_ctx c;
                    memset(&c, 0, sizeof(c));
                    c.st = st;
                    c.v = v;
                    azsim_kv_version *nv = rotate_version(&c, o);
                    if (!nv) {
                        next = now; /* tried again on the next request, as before */
                        break;
                    }
                    /* the rotation happened when it was due, not when we noticed */
                    nv->created = nv->updated = due > cur->created ? due : cur->created + 1;
                    if (nv->has_exp)
                        nv->exp = nv->created + policy_expiry(o);
                }
                if (guard == 64)
                    next = now; /* more are due: the next request goes on */
            }
        }
    }
    *next_out = next;
}

/*
 * Runs under the state lock before a request when something may be due (the clock may have
 * moved): purges what is past its purge date (Graph's deleted applications too) and runs due
 * auto-rotations. Leaves in st->sweep_due the earliest time anything left is due, so that
 * requests before then (and before the next mutation) need not walk the state again.
 */
void azsim_kv_sweep(azsim_state *st)
{
    int64_t now = azsim_now(st), next = INT64_MAX;
    for (size_t i = 0; i < st->vaults.n;) {
        azsim_vault *v = st->vaults.items[i];
        if (v->deleted && v->purge_date <= now) {
            azsim_vec_remove(&st->vaults, i);
            azsim_vault_free(v);
            continue;
        }
        if (v->deleted && v->purge_date < next)
            next = v->purge_date;
        i++;
        sweep_objects(st, v, now, &next);
        v->sweep_dirty = 0;
    }
    st->sweep_dirty = 0;
    int64_t apps_due = azsim_graph_sweep(st); /* deleted applications past their retention */
    if (apps_due < next)
        next = apps_due;
    st->sweep_due = next > now ? next : 0; /* 0: more to do on the next request */
}

/*
 * After Key Vault requests changed only some vaults (each marked sweep_dirty): sweeps just those,
 * keeping what st->sweep_due says of the others. A whole-state sweep after every write made
 * seeding a large estate quadratic (92% of azsim's CPU at 2,000 vaults).
 */
void azsim_kv_sweep_dirty(azsim_state *st)
{
    int64_t now = azsim_now(st), next = st->sweep_due ? st->sweep_due : INT64_MAX;
    for (size_t i = 0; i < st->vaults.n; i++) {
        azsim_vault *v = st->vaults.items[i];
        if (v->sweep_dirty)
            sweep_objects(st, v, now, &next);
        v->sweep_dirty = 0;
    }
    st->sweep_dirty = 0;
    st->sweep_due = next > now ? next : 0;
}
