/*
 * azsim_profiles.c - the consuming service (profiles.localhost) and its data keys.
 *
 * This is the part of azsim that can be hurt. The service holds data keys wrapped with the key
 * of its Used encryption profile, and it really does what a backup service does when a new
 * profile is applied: for every data key, sign in as the old profile's app, unwrap with the old
 * key, sign in as the new profile's app, wrap with the new key (RSA-OAEP-256, real crypto), at a
 * rate driven by the simulated clock. Only when all are re-wrapped does the new profile become
 * Used and the previous one Inactive.
 *
 * If a key that still wraps data keys is gone (the key or its vault deleted or purged), the
 * data keys it wraps are counted as unrecoverable, and a profile being applied goes Failed. A
 * disabled version makes them unavailable, as Key Vault refuses to unwrap with it (403
 * KeyDisabled) until it is enabled again: counted as unavailable while it lasts, and a profile
 * being applied waits. Tests read both at azsim.localhost/consumer; they must stay zero. The
 * contract is schema/profile-service.openapi.yaml.
 */
#include "azsim.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROFILES_API "2026-01-01"
#define DEK_LEN 32
#define WRAP_ALG_OAEP256 1

enum { P_CREATED, P_APPLYING, P_USED, P_INACTIVE, P_FAILED };
static const char *const STATUS[] = {"Created", "Applying", "Used", "Inactive", "Failed"};

typedef struct azsim_profile {
    char *name;
    char *vault, *key;
    char version[AZSIM_VERSION_LEN + 1];
    char tenant[AZSIM_GUID_LEN + 1];
    char client_id[AZSIM_GUID_LEN + 1];
    char *client_secret; /* wiped on free */
    json_t *metadata;    /* owned */
    int status;
    int64_t created, status_changed;
    size_t rewrapped, failed;
    char *error_code, *error_message;
} azsim_profile;

typedef struct azsim_datakey {
    unsigned char wrapped[1024];
    size_t wrapped_len;
    unsigned char check[32]; /* SHA-256 of the plaintext: proves an unwrap gave it back */
    char *profile;           /* name of the profile whose key wraps it */
    int lost;                /* counted as unrecoverable */
} azsim_datakey;

struct azsim_consumer {
    azsim_vec profiles;  /* azsim_profile* */
    azsim_datakey *dks;
    size_t ndks;
    size_t target;       /* data keys the service holds once the first profile is applied */
    double rate;         /* data keys processed per simulated second */
    double budget;       /* fractional work carried between ticks */
    int64_t last_tick;
    size_t unrecoverable;
    uint64_t health_gen; /* azsim_state.gen when the data keys were last checked */
};

/* ---- state ---------------------------------------------------------------------------------- */

static const char *jstr_or(const json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : dflt;
}

static void profile_free(azsim_profile *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->vault);
    free(p->key);
    azsim_secret_free(p->client_secret);
    json_decref(p->metadata);
    free(p->error_code);
    free(p->error_message);
    free(p);
}

int azsim_consumer_init(azsim_state *st, size_t data_keys, double rate)
{
    azsim_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        return AZSIM_ENOMEM;
    c->target = data_keys;
    c->rate = rate > 0 ? rate : 10;
    c->last_tick = azsim_now(st);
    c->health_gen = st->gen - 1; /* not checked yet */
    st->consumer = c;
    return AZSIM_OK;
}

void azsim_consumer_free(azsim_consumer *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->profiles.n; i++)
        profile_free(c->profiles.items[i]);
    free(c->profiles.items);
    for (size_t i = 0; i < c->ndks; i++)
        free(c->dks[i].profile);
    free(c->dks);
    free(c);
}

static azsim_profile *profile_find(azsim_consumer *c, const char *name)
{
    for (size_t i = 0; i < c->profiles.n; i++) {
        azsim_profile *p = c->profiles.items[i];
        if (strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

static azsim_profile *profile_with_status(azsim_consumer *c, int status)
{
    for (size_t i = 0; i < c->profiles.n; i++) {
        azsim_profile *p = c->profiles.items[i];
        if (p->status == status)
            return p;
    }
    return NULL;
}

static void set_status(azsim_state *st, azsim_profile *p, int status)
{
    p->status = status;
    p->status_changed = azsim_now(st);
}

static void set_error(azsim_profile *p, const char *code, const char *message)
{
    free(p->error_code);
    free(p->error_message);
    p->error_code = code ? azsim_strdup(code) : NULL;
    p->error_message = message ? azsim_strdup(message) : NULL;
}

/* ---- what the service can do with a profile's credentials and key -------------------------- */

typedef enum {
    USE_OK = 0,
    USE_TRANSIENT, /* credentials or permissions: may work later (RBAC propagation) */
    USE_GONE,      /* the key version cannot be used: data it wraps is lost */
} use_result;

/* The usable version, or NULL with why; *disabled (may be NULL) is set for a version that only
   needs enabling again. */
static azsim_kv_version *key_version(azsim_state *st, const char *vault, const char *key,
                                     const char *version, azsim_vault **out_vault,
                                     const char **why, int *disabled)
{
    azsim_vault *v = azsim_vault_find(st, vault);
    *out_vault = v;
    if (!v || v->deleted) {
        *why = "the vault does not exist or is deleted";
        return NULL;
    }
    for (size_t i = 0; i < v->keys.n; i++) {
        azsim_kv_object *o = v->keys.items[i];
        if (!azsim_streq_ci(o->name, key))
            continue;
        if (o->deleted) {
            *why = "the key is deleted";
            return NULL;
        }
        for (size_t j = 0; j < o->versions.n; j++) {
            azsim_kv_version *ver = o->versions.items[j];
            if (strcmp(ver->id, version) != 0)
                continue;
            if (!ver->enabled) {
                *why = "the key version is disabled (KeyDisabled)";
                if (disabled)
                    *disabled = 1;
                return NULL;
            }
            return ver;
        }
    }
    *why = "the key or key version does not exist";
    return NULL;
}

/* Signs in as the profile's app (client secret) and checks its access to the key. */
static use_result check_access(azsim_state *st, const azsim_profile *p, const char *client_id,
                               const char *secret, const char *action, const char **why)
{
    azsim_app *app = azsim_app_by_appid(st, client_id);
    azsim_sp *sp = azsim_sp_by_app(st, client_id);
    azsim_vault *v = NULL;
    int64_t now = azsim_now(st);
    int signed_in = 0;
    char *resource;
    int allowed = 0;

    int disabled = 0;
    if (!key_version(st, p->vault, p->key, p->version, &v, why, &disabled))
        return disabled ? USE_TRANSIENT : USE_GONE;
    for (size_t i = 0; app && i < app->passwords.n; i++) {
        azsim_password *pw = app->passwords.items[i];
        if (pw->secret && strcmp(pw->secret, secret) == 0 && now >= pw->start && now < pw->end)
            signed_in = 1;
    }
    if (!signed_in || !sp) {
        *why = "AADSTS7000215: Invalid client secret provided (or the app has no service principal)";
        return USE_TRANSIENT;
    }
    if (!v->rbac) {
        size_t i;
        json_t *ap;
        const char *perm = strstr(action, "unwrap") ? "unwrapKey" : "wrapKey";
        json_array_foreach(json_object_get(v->props, "accessPolicies"), i, ap)
        {
            size_t j;
            json_t *pp;
            if (!azsim_streq_ci(json_string_value(json_object_get(ap, "objectId")), sp->id))
                continue;
            json_array_foreach(json_object_get(json_object_get(ap, "permissions"), "keys"), j, pp)
            {
                if (azsim_streq_ci(json_string_value(pp), perm) ||
                    azsim_streq_ci(json_string_value(pp), "all"))
                    allowed = 1;
            }
        }
    } else {
        resource = azsim_printf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                                "vaults/%s/keys/%s",
                                v->sub, v->rg, v->name, p->key);
        allowed = resource && azsim_rbac_allows(st, sp->id, resource, action, 1, 1);
        free(resource);
    }
    if (!allowed) {
        *why = "the app is not allowed to use the key (ForbiddenByRbac or AccessDenied)";
        return USE_TRANSIENT;
    }
    return USE_OK;
}

static int rsa_oaep256(azsim_kv_version *ver, int encrypt, const unsigned char *in, size_t inlen,
                       unsigned char *out, size_t *outlen)
{
    EVP_PKEY *pkey = azsim_kv_version_pkey(ver); /* under the state lock, as every tick */
    EVP_PKEY_CTX *ctx;
    int ok;
    if (!pkey || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA)
        return AZSIM_EINVAL;
    ctx = EVP_PKEY_CTX_new(pkey, NULL);
    ok = ctx && (encrypt ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
         (encrypt ? EVP_PKEY_encrypt(ctx, out, outlen, in, inlen)
                  : EVP_PKEY_decrypt(ctx, out, outlen, in, inlen)) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok ? AZSIM_OK : AZSIM_EINVAL;
}

static void sha256(const unsigned char *in, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    EVP_Digest(in, len, out, &n, EVP_sha256(), NULL);
}

/* Wraps plaintext with the profile's key; USE_OK or why not. */
static use_result wrap_with(azsim_state *st, const azsim_profile *p, const unsigned char *plain,
                            azsim_datakey *dk, const char **why)
{
    azsim_vault *v;
    azsim_kv_version *ver;
    use_result u = check_access(st, p, p->client_id, p->client_secret,
                                "Microsoft.KeyVault/vaults/keys/wrap/action", why);
    if (u != USE_OK)
        return u;
    ver = key_version(st, p->vault, p->key, p->version, &v, why, NULL);
    dk->wrapped_len = sizeof(dk->wrapped);
    if (!ver || rsa_oaep256(ver, 1, plain, DEK_LEN, dk->wrapped, &dk->wrapped_len) != AZSIM_OK) {
        *why = "the key cannot wrap (not an RSA key?)";
        return USE_GONE;
    }
    return USE_OK;
}

/* Unwraps a data key with the profile's key; USE_GONE means the data key is lost. */
static use_result unwrap_with(azsim_state *st, const azsim_profile *p, const azsim_datakey *dk,
                              unsigned char plain[DEK_LEN], const char **why)
{
    azsim_vault *v;
    int disabled = 0;
    azsim_kv_version *ver = key_version(st, p->vault, p->key, p->version, &v, why, &disabled);
    unsigned char out[1024], check[32];
    size_t outlen = sizeof(out);
    use_result u;
    if (!ver)
        return disabled ? USE_TRANSIENT : USE_GONE;
    u = check_access(st, p, p->client_id, p->client_secret,
                     "Microsoft.KeyVault/vaults/keys/unwrap/action", why);
    if (u != USE_OK)
        return u;
    if (rsa_oaep256(ver, 0, dk->wrapped, dk->wrapped_len, out, &outlen) != AZSIM_OK ||
        outlen != DEK_LEN) {
        *why = "unwrap failed";
        return USE_GONE;
    }
    sha256(out, outlen, check);
    if (memcmp(check, dk->check, 32) != 0) {
        *why = "unwrap gave back a different key";
        return USE_GONE;
    }
    memcpy(plain, out, DEK_LEN);
    OPENSSL_cleanse(out, sizeof(out));
    return USE_OK;
}

/* ---- the clock-driven worker ---------------------------------------------------------------- */

static void fail_apply(azsim_state *st, azsim_profile *p, const char *why)
{
    set_status(st, p, P_FAILED);
    set_error(p, "RewrapFailed", why);
}

/*
 * Data keys whose wrapping key became unusable are lost; each is counted once. A profile being
 * applied cannot complete any more: it goes Failed.
 */
static void health_check(azsim_state *st, azsim_consumer *c)
{
    azsim_profile *applying = profile_with_status(c, P_APPLYING);
    const char *lost_why = NULL;
    size_t lost = 0;
    for (size_t i = 0; i < c->ndks; i++) {
        azsim_datakey *dk = &c->dks[i];
        azsim_profile *p = dk->lost ? NULL : profile_find(c, dk->profile);
        azsim_vault *v;
        const char *why = "its profile is gone";
        if (dk->lost)
            continue;
        int disabled = 0;
        if (!p || (!key_version(st, p->vault, p->key, p->version, &v, &why, &disabled) &&
                   !disabled)) {
            dk->lost = 1;
            c->unrecoverable++;
            lost++;
            lost_why = why;
        }
    }
    if (lost && applying) {
        applying->failed += lost;
        fail_apply(st, applying, lost_why);
    }
}

/* Does `units` of work: first-time wrapping or re-wrapping from the Used profile. */
static void work(azsim_state *st, azsim_consumer *c, azsim_profile *next, size_t units)
{
    azsim_profile *used = profile_with_status(c, P_USED);
    unsigned char plain[DEK_LEN];
    const char *why = NULL;

    while (units > 0 && next->status == P_APPLYING) {
        if (!used) {
            /* first apply: the service starts protecting its data keys with this profile */
            azsim_datakey *dk;
            if (c->ndks >= c->target) {
                set_status(st, next, P_USED);
                set_error(next, NULL, NULL);
                return;
            }
            dk = realloc(c->dks, (c->ndks + 1) * sizeof(*c->dks));
            if (!dk)
                return;
            c->dks = dk;
            dk = &c->dks[c->ndks];
            memset(dk, 0, sizeof(*dk));
            azsim_random(st, plain, sizeof(plain));
            sha256(plain, sizeof(plain), dk->check);
            if (wrap_with(st, next, plain, dk, &why) != USE_OK) {
                set_error(next, "KeyNotAccessible", why);
                OPENSSL_cleanse(plain, sizeof(plain));
                return; /* retried on a later tick */
            }
            dk->profile = azsim_strdup(next->name);
            c->ndks++;
            next->rewrapped++;
            units--;
            continue;
        }
        {
            azsim_datakey *dk = NULL;
            azsim_datakey tmp;
            use_result u;
            for (size_t i = 0; i < c->ndks; i++)
                if (!c->dks[i].lost && strcmp(c->dks[i].profile, next->name) != 0) {
                    dk = &c->dks[i];
                    break;
                }
            if (!dk) {
                azsim_profile *prev = profile_with_status(c, P_USED);
                if (prev)
                    set_status(st, prev, P_INACTIVE);
                set_status(st, next, P_USED);
                set_error(next, NULL, NULL);
                return;
            }
            {
                azsim_profile *owner = profile_find(c, dk->profile);
                u = owner ? unwrap_with(st, owner, dk, plain, &why) : USE_GONE;
            }
            if (u == USE_GONE) {
                dk->lost = 1;
                c->unrecoverable++;
                next->failed++;
                fail_apply(st, next, why);
                return;
            }
            if (u == USE_TRANSIENT) {
                set_error(next, "KeyNotAccessible", why);
                return;
            }
            tmp = *dk;
            u = wrap_with(st, next, plain, &tmp, &why);
            OPENSSL_cleanse(plain, sizeof(plain));
            if (u != USE_OK) {
                set_error(next, "KeyNotAccessible", why);
                return;
            }
            memcpy(dk->wrapped, tmp.wrapped, tmp.wrapped_len);
            dk->wrapped_len = tmp.wrapped_len;
            free(dk->profile);
            dk->profile = azsim_strdup(next->name);
            next->rewrapped++;
            units--;
        }
    }
}

void azsim_consumer_tick(azsim_state *st)
{
    azsim_consumer *c = st->consumer;
    azsim_profile *next;
    int64_t now;
    if (!c)
        return;
    now = azsim_now(st);
    if (now > c->last_tick) {
        c->budget += (double)(now - c->last_tick) * c->rate;
        c->last_tick = now;
    }
    /* a data key is lost only by a change of its key (deleted, purged, gone with its vault):
       the check walks every data key, so it runs when the state moved, not on every request */
    if (c->health_gen != st->gen || profile_with_status(c, P_APPLYING)) {
        health_check(st, c);
        c->health_gen = st->gen;
    }
    next = profile_with_status(c, P_APPLYING);
    if (next && c->budget >= 1) {
        size_t units = (size_t)c->budget;
        c->budget -= (double)units;
        work(st, c, next, units);
    } else if (!next) {
        c->budget = 0;
    }
}

json_t *azsim_consumer_stats(azsim_state *st)
{
    azsim_consumer *c = st->consumer;
    azsim_profile *used = c ? profile_with_status(c, P_USED) : NULL;
    size_t live = 0, unavailable = 0;
    for (size_t i = 0; c && i < c->ndks; i++) {
        azsim_profile *p = c->dks[i].lost ? NULL : profile_find(c, c->dks[i].profile);
        azsim_vault *v;
        const char *why;
        int disabled = 0;
        live += !c->dks[i].lost;
        if (p && !key_version(st, p->vault, p->key, p->version, &v, &why, &disabled) && disabled)
            unavailable++; /* its key version is disabled: usable again once enabled */
    }
    return json_pack("{s:I,s:I,s:I,s:I,s:o}", "dataKeys", (json_int_t)(c ? c->ndks : 0),
                     "recoverable", (json_int_t)live, "unrecoverable",
                     (json_int_t)(c ? c->unrecoverable : 0), "unavailable",
                     (json_int_t)unavailable, "used", used ? json_string(used->name) : json_null());
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

static int perror_reply(azsim_req *r, unsigned status, const char *code, const char *message)
{
    return azsim_reply_json(r, status, json_pack("{s:{s:s,s:s}}", "error", "code", code,
                                                 "message", message));
}

static json_t *profile_json(azsim_req *r, const azsim_profile *p)
{
    char created[32], changed[32];
    char *kid = azsim_printf("https://%s.vault.localhost:%d/keys/%s/%s", p->vault, r->st->port,
                             p->key, p->version);
    json_t *j;
    azsim_iso8601(created, p->created);
    azsim_iso8601(changed, p->status_changed);
    j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:{s:I,s:I,s:I}}", "name",
                  p->name, "keyId", kid ? kid : "", "vault", p->vault, "key", p->key,
                  "keyVersion", p->version, "tenantId", p->tenant, "clientId", p->client_id,
                  "status", STATUS[p->status], "statusChangedAt", changed, "createdAt", created,
                  "metadata", p->metadata, "progress", "dataKeys",
                  (json_int_t)((azsim_consumer *)r->st->consumer)->ndks, "rewrapped",
                  (json_int_t)p->rewrapped, "failed", (json_int_t)p->failed);
    if (j && p->error_code)
        json_object_set_new(j, "error", json_pack("{s:s,s:s}", "code", p->error_code, "message",
                                                  p->error_message ? p->error_message : ""));
    free(kid);
    return j;
}

/* keyId = https://VAULT.vault.localhost:PORT/keys/NAME/VERSION */
static int parse_kid(const char *kid, char **vault, char **key, char version[AZSIM_VERSION_LEN + 1])
{
    const char *host, *dot, *k, *slash;
    if (!kid || strncmp(kid, "https://", 8) != 0)
        return AZSIM_EINVAL;
    host = kid + 8;
    dot = strstr(host, ".vault.localhost");
    k = strstr(host, "/keys/");
    if (!dot || !k || dot > k)
        return AZSIM_EINVAL;
    slash = strchr(k + 6, '/');
    if (!slash || strlen(slash + 1) != AZSIM_VERSION_LEN || strchr(slash + 1, '/'))
        return AZSIM_EINVAL;
    *vault = strndup(host, (size_t)(dot - host));
    *key = strndup(k + 6, (size_t)(slash - k - 6));
    memcpy(version, slash + 1, AZSIM_VERSION_LEN + 1);
    return *vault && *key ? AZSIM_OK : AZSIM_ENOMEM;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || !strchr("._-", ch)))
            return 0;
    }
    return 1;
}

/* Checks credentials and key access for a profile-to-be; 0 or an error reply already sent. */
static int verify_profile(azsim_req *r, const azsim_profile *p, const char *client_id,
                          const char *secret)
{
    const char *why = NULL;
    use_result w = check_access(r->st, p, client_id, secret,
                                "Microsoft.KeyVault/vaults/keys/wrap/action", &why);
    use_result u = w == USE_OK ? check_access(r->st, p, client_id, secret,
                                              "Microsoft.KeyVault/vaults/keys/unwrap/action", &why)
                               : w;
    if (u == USE_OK)
        return 0;
    perror_reply(r, 400, strncmp(why, "AADSTS", 6) == 0 ? "InvalidCredentials" : "KeyNotAccessible",
                 why);
    return -1;
}

static int create_profile(azsim_req *r, azsim_consumer *c, const char *name)
{
    json_t *body = azsim_body_json(r), *meta;
    const char *tenant = json_string_value(json_object_get(body, "tenantId"));
    const char *client = json_string_value(json_object_get(body, "clientId"));
    const char *secret = json_string_value(json_object_get(body, "clientSecret"));
    const char *kid = json_string_value(json_object_get(body, "keyId"));
    azsim_profile *p = NULL, *old;
    int rc;

    r->op = "profiles.create";
    if (!body || !tenant || !client || !secret || !kid) {
        rc = perror_reply(r, 400, "BadRequest",
                          "tenantId, clientId, clientSecret and keyId are required");
        goto done;
    }
    if (strlen(secret) < 16 || strlen(client) != AZSIM_GUID_LEN || strlen(tenant) != AZSIM_GUID_LEN) {
        rc = perror_reply(r, 400, "BadRequest", "clientId and tenantId must be GUIDs and "
                                                "clientSecret at least 16 characters");
        goto done;
    }
    meta = json_object_get(body, "metadata");
    if (meta && (!json_is_object(meta) || json_object_size(meta) > 16)) {
        rc = perror_reply(r, 400, "BadRequest", "metadata must be an object of at most 16 strings");
        goto done;
    }
    p = calloc(1, sizeof(*p));
    if (!p || parse_kid(kid, &p->vault, &p->key, p->version) != AZSIM_OK) {
        rc = perror_reply(r, 400, "BadRequest",
                          "keyId must be a versioned key identifier "
                          "(https://VAULT.vault.localhost:PORT/keys/NAME/VERSION)");
        goto done;
    }
    old = profile_find(c, name);
    if (old) {
        if (azsim_streq_ci(old->vault, p->vault) && azsim_streq_ci(old->key, p->key) &&
            strcmp(old->version, p->version) == 0 && strcmp(old->client_id, client) == 0)
            rc = azsim_reply_json(r, 200, profile_json(r, old));
        else
            rc = perror_reply(r, 409, "ProfileImmutable",
                              "the profile exists with another key or client; profiles are "
                              "immutable except for their credentials");
        goto done;
    }
    if (verify_profile(r, p, client, secret) < 0) {
        rc = AZSIM_OK;
        goto done;
    }
    p->name = azsim_strdup(name);
    snprintf(p->tenant, sizeof(p->tenant), "%s", tenant);
    snprintf(p->client_id, sizeof(p->client_id), "%s", client);
    p->client_secret = azsim_strdup(secret);
    p->metadata = meta ? json_deep_copy(meta) : json_object();
    p->created = azsim_now(r->st);
    set_status(r->st, p, P_CREATED);
    if (!p->name || !p->client_secret || !p->metadata || azsim_vec_push(&c->profiles, p) < 0) {
        rc = perror_reply(r, 500, "InternalError", "out of memory");
        goto done;
    }
    rc = azsim_reply_json(r, 201, profile_json(r, p));
    p = NULL;
done:
    if (p && !profile_find(c, p->name ? p->name : ""))
        profile_free(p);
    json_decref(body);
    return rc;
}

static int set_credentials(azsim_req *r, azsim_profile *p)
{
    json_t *body = azsim_body_json(r), *meta;
    const char *client = json_string_value(json_object_get(body, "clientId"));
    const char *secret = json_string_value(json_object_get(body, "clientSecret"));
    int rc;
    r->op = "profiles.setCredentials";
    if (!client || !secret || strlen(client) != AZSIM_GUID_LEN) {
        rc = perror_reply(r, 400, "BadRequest", "tenantId, clientId and clientSecret are required");
        goto done;
    }
    if (verify_profile(r, p, client, secret) < 0) {
        rc = AZSIM_OK;
        goto done;
    }
    snprintf(p->client_id, sizeof(p->client_id), "%s", client);
    azsim_secret_free(p->client_secret);
    p->client_secret = azsim_strdup(secret);
    meta = json_object_get(body, "metadata");
    if (json_is_object(meta))
        json_object_update(p->metadata, meta);
    rc = azsim_reply_json(r, 200, profile_json(r, p));
done:
    json_decref(body);
    return rc;
}

static int apply_profile(azsim_req *r, azsim_consumer *c, azsim_profile *p)
{
    azsim_profile *busy = profile_with_status(c, P_APPLYING);
    char *loc;
    r->op = "profiles.apply";
    if (p->status == P_APPLYING || p->status == P_USED)
        return azsim_reply_json(r, 200, profile_json(r, p));
    if (busy)
        return perror_reply(r, 409, "ApplyInProgress", "another profile is being applied");
    set_status(r->st, p, P_APPLYING);
    set_error(p, NULL, NULL);
    p->rewrapped = 0;
    p->failed = 0;
    loc = azsim_printf("https://profiles.localhost:%d/encryptionProfiles/%s?api-version=" PROFILES_API,
                       r->st->port, p->name);
    if (loc)
        azsim_set_header(r, "Location", loc);
    azsim_set_header(r, "Retry-After", "1");
    free(loc);
    return azsim_reply_json(r, 202, profile_json(r, p));
}

static int delete_profile(azsim_req *r, azsim_consumer *c, const char *name)
{
    r->op = "profiles.delete";
    for (size_t i = 0; i < c->profiles.n; i++) {
        azsim_profile *p = c->profiles.items[i];
        if (strcmp(p->name, name) != 0)
            continue;
        if (p->status == P_APPLYING || p->status == P_USED)
            return perror_reply(r, 409, "ProfileInUse",
                                "the profile is Applying or Used; apply another profile first");
        for (size_t k = 0; k < c->ndks; k++)
            if (!c->dks[k].lost && strcmp(c->dks[k].profile, name) == 0)
                return perror_reply(r, 409, "ProfileFailed",
                                    "data keys are still wrapped only with this profile's key");
        azsim_vec_remove(&c->profiles, i);
        profile_free(p);
        return azsim_reply_empty(r, 200);
    }
    return azsim_reply_empty(r, 204);
}

static int list_profiles(azsim_req *r, azsim_consumer *c)
{
    json_t *value = json_array();
    const char *skip = azsim_query(r, "$skiptoken");
    size_t start = skip ? (size_t)strtoul(skip, NULL, 10) : 0, page = 100;
    r->op = "profiles.list";
    for (size_t i = start; value && i < c->profiles.n && i < start + page; i++)
        json_array_append_new(value, profile_json(r, c->profiles.items[i]));
    if (start + page < c->profiles.n) {
        char *next = azsim_printf("https://profiles.localhost:%d/encryptionProfiles?api-version=" PROFILES_API
                                  "&$skiptoken=%zu",
                                  r->st->port, start + page);
        json_t *j = json_pack("{s:o,s:s}", "value", value, "nextLink", next ? next : "");
        free(next);
        return azsim_reply_json(r, 200, j);
    }
    return azsim_reply_json(r, 200, json_pack("{s:o}", "value", value));
}

int azsim_profiles_handle(azsim_req *r)
{
    azsim_consumer *c = r->st->consumer;
    const char *api = azsim_query(r, "api-version"), *why = NULL;
    char *aud = azsim_resource(r->st, "profiles.localhost");
    azsim_caller caller;
    const char *m = r->method;
    int authed;
    azsim_profile *p;

    r->op = "profiles";
    authed = aud && azsim_auth_bearer(&caller, r, aud, &why) == AZSIM_OK;
    free(aud);
    if (!authed) {
        azsim_set_header(r, "WWW-Authenticate", "Bearer");
        return perror_reply(r, 401, "Unauthorized",
                            "a bearer token for the profile service's audience is required");
    }
    if (!api)
        return perror_reply(r, 400, "MissingApiVersionParameter",
                            "The api-version query parameter (?api-version=) is required.");
    if (strcmp(api, PROFILES_API) != 0)
        return perror_reply(r, 400, "InvalidApiVersionParameter",
                            "The api-version is invalid. The supported versions are '" PROFILES_API
                            "'.");
    azsim_consumer_tick(r->st);
    if (r->nsegs == 1 && strcmp(r->segs[0], "encryptionProfiles") == 0 && strcmp(m, "GET") == 0)
        return list_profiles(r, c);
    if (r->nsegs < 2 || strcmp(r->segs[0], "encryptionProfiles") != 0 || !valid_name(r->segs[1]))
        return perror_reply(r, 404, "NotFound", "no such resource");
    p = profile_find(c, r->segs[1]);
    if (r->nsegs == 2) {
        if (strcmp(m, "GET") == 0) {
            r->op = "profiles.get";
            return p ? azsim_reply_json(r, 200, profile_json(r, p))
                     : perror_reply(r, 404, "ProfileNotFound", "the profile does not exist");
        }
        if (strcmp(m, "PUT") == 0)
            return create_profile(r, c, r->segs[1]);
        if (strcmp(m, "DELETE") == 0)
            return delete_profile(r, c, r->segs[1]);
    }
    if (r->nsegs == 3 && strcmp(m, "POST") == 0 &&
        (strcmp(r->segs[2], "apply") == 0 || strcmp(r->segs[2], "credentials") == 0)) {
        if (!p)
            return perror_reply(r, 404, "ProfileNotFound", "the profile does not exist");
        return strcmp(r->segs[2], "apply") == 0 ? apply_profile(r, c, p) : set_credentials(r, p);
    }
    return perror_reply(r, 405, "MethodNotAllowed", "the method is not allowed here");
}

/* ---- persistence ---------------------------------------------------------------------------- */

json_t *azsim_consumer_dump(azsim_state *st)
{
    azsim_consumer *c = st->consumer;
    json_t *profiles = json_array(), *dks = json_array();
    for (size_t i = 0; c && i < c->profiles.n; i++) {
        azsim_profile *p = c->profiles.items[i];
        json_array_append_new(
            profiles,
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:i,s:I,s:I,s:I,s:I}", "name", p->name,
                      "vault", p->vault, "key", p->key, "version", p->version, "tenant", p->tenant,
                      "clientId", p->client_id, "clientSecret", p->client_secret, "metadata",
                      p->metadata, "status", p->status, "created", (json_int_t)p->created,
                      "statusChanged", (json_int_t)p->status_changed, "rewrapped",
                      (json_int_t)p->rewrapped, "failed", (json_int_t)p->failed));
    }
    for (size_t i = 0; c && i < c->ndks; i++) {
        char *w = azsim_b64url(c->dks[i].wrapped, c->dks[i].wrapped_len);
        char *h = azsim_b64url(c->dks[i].check, 32);
        json_array_append_new(dks, json_pack("{s:s,s:s,s:s,s:b}", "wrapped", w ? w : "", "check",
                                             h ? h : "", "profile", c->dks[i].profile,
                                             "lost", c->dks[i].lost));
        free(w);
        free(h);
    }
    return json_pack("{s:o,s:o,s:I,s:I}", "profiles", profiles, "dataKeys", dks, "unrecoverable",
                     (json_int_t)(c ? c->unrecoverable : 0), "lastTick",
                     (json_int_t)(c ? c->last_tick : 0));
}

int azsim_consumer_load(azsim_state *st, const json_t *j)
{
    azsim_consumer *c = st->consumer;
    size_t i;
    json_t *it;
    if (!c || !json_is_object(j))
        return AZSIM_EINVAL;
    json_array_foreach(json_object_get(j, "profiles"), i, it)
    {
        azsim_profile *p = calloc(1, sizeof(*p));
        if (!p)
            return AZSIM_ENOMEM;
        p->name = azsim_strdup(json_string_value(json_object_get(it, "name")));
        p->vault = azsim_strdup(json_string_value(json_object_get(it, "vault")));
        p->key = azsim_strdup(json_string_value(json_object_get(it, "key")));
        snprintf(p->version, sizeof(p->version), "%s",
                 jstr_or(it, "version", ""));
        snprintf(p->tenant, sizeof(p->tenant), "%s",
                 jstr_or(it, "tenant", ""));
        snprintf(p->client_id, sizeof(p->client_id), "%s",
                 jstr_or(it, "clientId", ""));
        p->client_secret = azsim_strdup(json_string_value(json_object_get(it, "clientSecret")));
        p->metadata = json_deep_copy(json_object_get(it, "metadata"));
        p->status = (int)json_integer_value(json_object_get(it, "status"));
        p->created = json_integer_value(json_object_get(it, "created"));
        p->status_changed = json_integer_value(json_object_get(it, "statusChanged"));
        p->rewrapped = (size_t)json_integer_value(json_object_get(it, "rewrapped"));
        p->failed = (size_t)json_integer_value(json_object_get(it, "failed"));
        if (!p->name || !p->vault || !p->key || !p->client_secret || !p->metadata ||
            p->status < P_CREATED || p->status > P_FAILED || azsim_vec_push(&c->profiles, p) < 0) {
            profile_free(p);
            return AZSIM_EINVAL;
        }
    }
    json_array_foreach(json_object_get(j, "dataKeys"), i, it)
    {
        unsigned char *w = NULL, *h = NULL;
        size_t wl = 0, hl = 0;
        azsim_datakey *dk = realloc(c->dks, (c->ndks + 1) * sizeof(*c->dks));
        if (!dk)
            return AZSIM_ENOMEM;
        c->dks = dk;
        dk = &c->dks[c->ndks];
        memset(dk, 0, sizeof(*dk));
        if (azsim_b64url_decode(&w, &wl, json_string_value(json_object_get(it, "wrapped"))) != 0 ||
            azsim_b64url_decode(&h, &hl, json_string_value(json_object_get(it, "check"))) != 0 ||
            wl > sizeof(dk->wrapped) || hl != 32) {
            free(w);
            free(h);
            return AZSIM_EINVAL;
        }
        memcpy(dk->wrapped, w, wl);
        dk->wrapped_len = wl;
        memcpy(dk->check, h, 32);
        free(w);
        free(h);
        dk->profile = azsim_strdup(json_string_value(json_object_get(it, "profile")));
        dk->lost = json_is_true(json_object_get(it, "lost"));
        if (!dk->profile)
            return AZSIM_EINVAL;
        c->ndks++;
    }
    c->unrecoverable = (size_t)json_integer_value(json_object_get(j, "unrecoverable"));
    c->last_tick = json_integer_value(json_object_get(j, "lastTick"));
    return AZSIM_OK;
}
