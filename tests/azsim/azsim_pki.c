/*
 * azsim_pki.c - every piece of cryptography azsim owns itself: the local CA and the TLS server
 * certificate (so clients verify TLS as they would against Azure, with a CA file instead of the
 * public roots), the RS256 key that signs access tokens and its JWK, JWT signing and checking,
 * and the AES-GCM key that seals Key Vault backup blobs. Keys that must survive a restart (the CA,
 * the token key, the backup key) live in the --data directory with mode 0600.
 */
#include "azsim.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const char SERVER_SANS[] =
    "DNS:login.localhost,DNS:management.localhost,DNS:graph.localhost,DNS:profiles.localhost,"
    "DNS:azsim.localhost,DNS:vault.localhost,DNS:*.vault.localhost,DNS:localhost,IP:127.0.0.1";

static char *bio_to_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

static char *key_to_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1)
        out = bio_to_string(b);
    BIO_free(b);
    return out;
}

static char *cert_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1)
        out = bio_to_string(b);
    BIO_free(b);
    return out;
}

static EVP_PKEY *load_key(const char *path)
{
    EVP_PKEY *key = NULL;
    FILE *f = fopen(path, "r");
    if (f) {
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    return key;
}

/* Loads the RSA key at path, or generates and stores one; NULL on failure. */
static EVP_PKEY *load_or_create_key(const char *path, unsigned bits)
{
    EVP_PKEY *key = load_key(path);
    char *pem = NULL;
    if (key)
        return key;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (!key)
        goto done;
    pem = key_to_pem(key);
    if (!pem || azsim_write_file(path, pem, strlen(pem), 0600) != AZSIM_OK) {
        EVP_PKEY_free(key);
        key = NULL;
    }
done:
    azsim_secret_free(pem);
    return key;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext = NULL;
    int rc = AZSIM_ERR;
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext && X509_add_ext(subject, ext, -1) == 1)
        rc = AZSIM_OK;
    X509_EXTENSION_free(ext);
    return rc;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int ok = 0;

    if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
        goto done;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto done;
    if (X509_set_version(x, 2) != 1 || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) || X509_set_pubkey(x, key) != 1)
        goto done;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"azsim", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1)
        goto done;
    if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1)
        goto done;
    X509 *iss = issuer ? issuer : x;
    if (add_ext(iss, x, NID_subject_key_identifier, "hash") != AZSIM_OK)
        goto done;
    if (!issuer) {
        if (add_ext(iss, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != AZSIM_OK ||
            add_ext(iss, x, NID_key_usage, "critical,keyCertSign,cRLSign") != AZSIM_OK)
            goto done;
    } else {
        if (add_ext(iss, x, NID_authority_key_identifier, "keyid:always") != AZSIM_OK ||
            add_ext(iss, x, NID_basic_constraints, "critical,CA:FALSE") != AZSIM_OK ||
            /* RFC 5480: an EC key signs (ECDHE); only an RSA key may encipher */
            add_ext(iss, x, NID_key_usage,
                    EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                              : "critical,digitalSignature") != AZSIM_OK ||
            add_ext(iss, x, NID_ext_key_usage, "serverAuth") != AZSIM_OK ||
            add_ext(iss, x, NID_subject_alt_name, SERVER_SANS) != AZSIM_OK)
            goto done;
    }
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
        goto done;
    ok = 1;
done:
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/*
 * Loads or creates DIR/ca-key.pem and DIR/ca.pem (the CA is reused across restarts so a client's
 * trust survives them), then issues a fresh server certificate for this run.
 */
int azsim_pki_setup(char **out_cert_pem, char **out_key_pem, const char *data_dir)
{
    int rc = AZSIM_ERR;
    char *ca_key_path = azsim_printf("%s/ca-key.pem", data_dir);
    char *ca_path = azsim_printf("%s/ca.pem", data_dir);
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    X509 *ca = NULL, *srv = NULL;
    char *ca_pem = NULL;
    FILE *f = NULL;

    *out_cert_pem = NULL;
    *out_key_pem = NULL;
    if (!ca_key_path || !ca_path) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    ca_key = load_key(ca_key_path);
    if (ca_key && (f = fopen(ca_path, "r")) != NULL) {
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        if (ca && X509_check_private_key(ca, ca_key) != 1) {
            X509_free(ca);
            ca = NULL;
        }
    }
    if (!ca) {
        if (!ca_key)
            ca_key = load_or_create_key(ca_key_path, 2048);
        if (!ca_key) {
            fprintf(stderr, "azsim: cannot create the ca key in '%s'\n", ca_key_path);
            goto done;
        }
        ca = make_cert(ca_key, "azsim local CA", NULL, NULL, 3650);
        ca_pem = ca ? cert_to_pem(ca) : NULL;
        if (!ca_pem || azsim_write_file(ca_path, ca_pem, strlen(ca_pem), 0644) != AZSIM_OK) {
            fprintf(stderr, "azsim: cannot write the ca certificate '%s'\n", ca_path);
            goto done;
        }
    }
    /* the serving key is an ECDSA P-256 key, as Azure's endpoints behind its ECC TLS issuing
       CAs have: every handshake signs with it, and an RSA-2048 signature cost azsim's TLS about
       a millisecond of CPU per connection (a plan opens one or more per vault) */
    srv_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!srv_key)
        goto done;
    srv = make_cert(srv_key, "azsim.localhost", ca, ca_key, 397);
    if (!srv)
        goto done;
    *out_cert_pem = cert_to_pem(srv);
    *out_key_pem = key_to_pem(srv_key);
    if (!*out_cert_pem || !*out_key_pem) {
        free(*out_cert_pem);
        free(*out_key_pem);
        *out_cert_pem = *out_key_pem = NULL;
        goto done;
    }
    rc = AZSIM_OK;
done:
    free(ca_key_path);
    free(ca_path);
    free(ca_pem);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    X509_free(ca);
    X509_free(srv);
    return rc;
}

static char *bn_param_b64(EVP_PKEY *pkey, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char *buf = NULL;
    char *out = NULL;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
        return NULL;
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    buf = malloc(n ? n : 1);
    if (buf && BN_bn2binpad(bn, buf, (int)n) >= 0)
        out = azsim_b64url(buf, n);
    free(buf);
    BN_free(bn);
    return out;
}

/* Public JWK of an RSA or EC key (kid set when non-NULL); new reference or NULL. */
json_t *azsim_jwk_public(EVP_PKEY *pkey, const char *kid)
{
    json_t *jwk = json_object();
    char *a = NULL, *b = NULL;
    if (!jwk)
        return NULL;
    if (kid)
        json_object_set_new(jwk, "kid", json_string(kid));
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        a = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        b = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        if (!a || !b)
            goto fail;
        json_object_set_new(jwk, "kty", json_string("RSA"));
        json_object_set_new(jwk, "n", json_string(a));
        json_object_set_new(jwk, "e", json_string(b));
    } else {
        char group[64];
        const char *crv = NULL;
        size_t flen = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL) != 1)
            goto fail;
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            crv = "P-256", flen = 32;
        else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            crv = "P-384", flen = 48;
        else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
            crv = "P-521", flen = 66;
        else if (strcmp(group, "secp256k1") == 0)
            crv = "P-256K", flen = 32;
        else
            goto fail;
        a = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, flen);
        b = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, flen);
        if (!a || !b)
            goto fail;
        json_object_set_new(jwk, "kty", json_string("EC"));
        json_object_set_new(jwk, "crv", json_string(crv));
        json_object_set_new(jwk, "x", json_string(a));
        json_object_set_new(jwk, "y", json_string(b));
    }
    free(a);
    free(b);
    return jwk;
fail:
    free(a);
    free(b);
    json_decref(jwk);
    return NULL;
}

int azsim_signing_key_load(azsim_state *st)
{
    int rc = AZSIM_ERR;
    char *path = azsim_printf("%s/token-signing-key.pem", st->data_dir);
    unsigned char *der = NULL, md[32];
    unsigned int mdlen = 0;
    char *kid = NULL;

    if (!path)
        return AZSIM_ENOMEM;
    st->sign_key = load_or_create_key(path, 2048);
    if (!st->sign_key) {
        fprintf(stderr, "azsim: cannot create the token signing key in '%s'\n", path);
        goto done;
    }
    int n = i2d_PUBKEY(st->sign_key, &der);
    if (n <= 0 || EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1)
        goto done;
    kid = azsim_b64url(md, 16);
    if (!kid)
        goto done;
    snprintf(st->sign_kid, sizeof(st->sign_kid), "%s", kid);
    rc = AZSIM_OK;
done:
    OPENSSL_free(der);
    free(kid);
    free(path);
    return rc;
}

/* Compact RS256 JWT over claims (borrowed); malloc'd string or NULL. */
char *azsim_jwt_sign(azsim_state *st, json_t *claims)
{
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "typ", "JWT", "alg", "RS256", "kid", st->sign_kid);
    char *h = NULL, *c = NULL, *h64 = NULL, *c64 = NULL, *input = NULL, *sig64 = NULL, *out = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;

    if (!hdr)
        goto done;
    h = json_dumps(hdr, JSON_COMPACT);
    c = json_dumps(claims, JSON_COMPACT);
    if (!h || !c)
        goto done;
    h64 = azsim_b64url((const unsigned char *)h, strlen(h));
    c64 = azsim_b64url((const unsigned char *)c, strlen(c));
    if (!h64 || !c64)
        goto done;
    input = azsim_printf("%s.%s", h64, c64);
    md = EVP_MD_CTX_new();
    if (!input || !md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, st->sign_key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    sig = malloc(siglen);
    if (!sig || EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    sig64 = azsim_b64url(sig, siglen);
    if (sig64)
        out = azsim_printf("%s.%s", input, sig64);
done:
    json_decref(hdr);
    free(h);
    free(c);
    free(h64);
    free(c64);
    free(input);
    free(sig);
    free(sig64);
    EVP_MD_CTX_free(md);
    return out;
}

/* Splits and parses a compact JWS; both outputs are new references. No signature check. */
int azsim_jwt_decode(json_t **out_header, json_t **out_claims, const char *token)
{
    int rc = AZSIM_EINVAL;
    const char *dot1 = strchr(token, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    char *h64 = NULL, *c64 = NULL;
    unsigned char *h = NULL, *c = NULL;
    size_t hlen, clen;
    json_t *hdr = NULL, *claims = NULL;

    *out_header = *out_claims = NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
        goto done;
    h64 = strndup(token, (size_t)(dot1 - token));
    c64 = strndup(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!h64 || !c64 || azsim_b64url_decode(&h, &hlen, h64) != AZSIM_OK ||
        azsim_b64url_decode(&c, &clen, c64) != AZSIM_OK)
        goto done;
    hdr = json_loadb((const char *)h, hlen, 0, NULL);
    claims = json_loadb((const char *)c, clen, 0, NULL);
    if (!json_is_object(hdr) || !json_is_object(claims))
        goto done;
    *out_header = hdr;
    *out_claims = claims;
    hdr = claims = NULL;
    rc = AZSIM_OK;
done:
    free(h64);
    free(c64);
    free(h);
    free(c);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* Verifies the signature of a compact JWS with pub; alg is "RS256" or "PS256". */
int azsim_jwt_check_sig(const char *token, EVP_PKEY *pub, const char *alg)
{
    int rc = AZSIM_EINVAL;
    const char *dot1 = strchr(token, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    int pss = strcmp(alg, "PS256") == 0;

    if (!dot1 || !dot2 || (!pss && strcmp(alg, "RS256") != 0) || !EVP_PKEY_is_a(pub, "RSA"))
        goto done;
    if (azsim_b64url_decode(&sig, &siglen, dot2 + 1) != AZSIM_OK)
        goto done;
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub) != 1)
        goto done;
    if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1))
        goto done;
    if (EVP_DigestVerify(md, sig, siglen, (const unsigned char *)token, (size_t)(dot2 - token)) !=
        1)
        goto done;
    rc = AZSIM_OK;
done:
    free(sig);
    EVP_MD_CTX_free(md);
    return rc;
}

/* Checks one of our own access tokens: RS256 and our kid; *out gets the claims. No time checks. */
/*
 * Tokens already verified, with their claims: a client sends the same bearer token with
 * thousands of requests, and an RSA verification with a JSON decode per request was a tenth of
 * azsim's CPU in a plan. The signing key never changes while azsim runs, so a token once found
 * good stays good; its times are checked by the caller on every use.
 */
#define VERIFIED_MAX 32
static struct {
    char *token;
    json_t *claims;
} verified[VERIFIED_MAX];
static unsigned verified_next;
static pthread_mutex_t verified_lock = PTHREAD_MUTEX_INITIALIZER;

static json_t *verified_get(const char *token)
{
    json_t *claims = NULL;
    pthread_mutex_lock(&verified_lock);
    for (unsigned i = 0; i < VERIFIED_MAX && !claims; i++)
        if (verified[i].token && strcmp(verified[i].token, token) == 0)
            claims = json_deep_copy(verified[i].claims); /* the caller owns what it gets */
    pthread_mutex_unlock(&verified_lock);
    return claims;
}

static void verified_put(const char *token, const json_t *claims)
{
    char *t = strdup(token);
    json_t *c = json_deep_copy(claims);
    if (!t || !c) {
        free(t);
        json_decref(c);
        return;
    }
    pthread_mutex_lock(&verified_lock);
    unsigned i = verified_next++ % VERIFIED_MAX;
    azsim_secret_free(verified[i].token); /* a bearer token */
    json_decref(verified[i].claims);
    verified[i].token = t;
    verified[i].claims = c;
    pthread_mutex_unlock(&verified_lock);
}

void azsim_jwt_verified_release(void)
{
    pthread_mutex_lock(&verified_lock);
    for (unsigned i = 0; i < VERIFIED_MAX; i++) {
        azsim_secret_free(verified[i].token);
        json_decref(verified[i].claims);
        verified[i].token = NULL;
        verified[i].claims = NULL;
    }
    pthread_mutex_unlock(&verified_lock);
}

int azsim_jwt_verify(json_t **out, azsim_state *st, const char *token)
{
    json_t *hdr = NULL, *claims = NULL;
    int rc = AZSIM_EINVAL;
    *out = verified_get(token);
    if (*out)
        return AZSIM_OK;
    if (azsim_jwt_decode(&hdr, &claims, token) != AZSIM_OK)
        goto done;
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!kid || !alg || strcmp(alg, "RS256") != 0 || strcmp(kid, st->sign_kid) != 0 ||
        azsim_jwt_check_sig(token, st->sign_key, "RS256") != AZSIM_OK)
        goto done;
    verified_put(token, claims);
    *out = claims;
    claims = NULL;
    rc = AZSIM_OK;
done:
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

int azsim_backup_key_load(azsim_state *st)
{
    int rc = AZSIM_ERR;
    char *path = azsim_printf("%s/backup.key", st->data_dir);
    char *data = NULL;
    size_t len = 0;
    if (!path)
        return AZSIM_ENOMEM;
    if (azsim_read_file(&data, &len, path) == AZSIM_OK && len == sizeof(st->backup_key)) {
        memcpy(st->backup_key, data, len);
        rc = AZSIM_OK;
        goto done;
    }
    if (RAND_bytes(st->backup_key, sizeof(st->backup_key)) != 1 ||
        azsim_write_file(path, st->backup_key, sizeof(st->backup_key), 0600) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot create the backup key '%s'\n", path);
        goto done;
    }
    rc = AZSIM_OK;
done:
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    free(path);
    return rc;
}

/* AES-256-GCM: blob = b64url(iv[12] | ciphertext | tag[16]). Returns malloc'd or NULL. */
char *azsim_seal(azsim_state *st, const char *plain, size_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char *buf = malloc(12 + len + 16);
    char *out = NULL;
    int n = 0, fin = 0;
    if (!ctx || !buf || RAND_bytes(buf, 12) != 1 ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, st->backup_key, buf) != 1 ||
        EVP_EncryptUpdate(ctx, buf + 12, &n, (const unsigned char *)plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + 12 + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, buf + 12 + n + fin) != 1)
        goto done;
    out = azsim_b64url(buf, 12 + (size_t)n + (size_t)fin + 16);
done:
    if (buf) {
        OPENSSL_cleanse(buf, 12 + len + 16);
        free(buf);
    }
    EVP_CIPHER_CTX_free(ctx);
    return out;
}

/* Decrypts in place: the sealed state of a large estate is hundreds of megabytes. */
int azsim_unseal(char **out, size_t *out_len, azsim_state *st, const char *blob)
{
    int rc = AZSIM_EINVAL, n = 0, fin = 0;
    unsigned char *raw = NULL;
    size_t rawlen = 0, clen = 0;
    EVP_CIPHER_CTX *ctx = NULL;

    *out = NULL;
    if (azsim_b64url_decode(&raw, &rawlen, blob) != AZSIM_OK || rawlen < 28 ||
        rawlen - 28 > INT_MAX)
        goto done;
    clen = rawlen - 28;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, st->backup_key, raw) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, raw + 12 + clen) != 1 ||
        EVP_DecryptUpdate(ctx, raw + 12, &n, raw + 12, (int)clen) != 1 ||
        EVP_DecryptFinal_ex(ctx, raw + 12 + n, &fin) != 1)
        goto done;
    memmove(raw, raw + 12, (size_t)(n + fin));
    raw[n + fin] = '\0';
    *out = (char *)raw;
    *out_len = (size_t)(n + fin);
    raw = NULL;
    rc = AZSIM_OK;
done:
    if (raw) {
        OPENSSL_cleanse(raw, rawlen);
        free(raw);
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}
