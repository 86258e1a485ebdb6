/*
 * The client assertion of the certificate credential: a short-lived JWT signed with the app's
 * private key, which Entra accepts in place of a client secret. We build the current documented
 * form (PS256, RSA-PSS with SHA-256 and a 32-byte salt, the certificate named by its SHA-256
 * thumbprint in `x5t#S256`), so nothing but the key file is needed. The assertion is a
 * credential for its few minutes of life and is freed wiped.
 */
#include "azinternal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define ASSERTION_LIFETIME 300

/* Encrypted keys are not supported: never let OpenSSL prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int sign_failed(kvr_error *err)
{
    return kvr_error_set(err, KVR_EAUTH, "cannot sign the client assertion");
}

static int add_json_b64(kvr_sbuf *b, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    int rc;
    if (!s)
        return KVR_ENOMEM;
    rc = kvr_b64url_add(b, (const unsigned char *)s, strlen(s));
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    return rc;
}

int kvr_auth_assertion(char **out, const char *pem, size_t pem_len, const char *authority,
                       const char *tenant, const char *client_id, time_t now, kvr_error *err)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL, *sig = NULL;
    unsigned char digest[32], rnd[16];
    unsigned int dlen = 0;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    json_t *header = NULL, *claims = NULL;
    kvr_sbuf thumb = {0}, jwt = {0};
    char jti[40], aud[1024];
    int rc = 0, der_len;

    *out = NULL;
    if (!pem || pem_len == 0 || pem_len > 1024 * 1024 || !tenant || !client_id || !authority) {
        rc = kvr_error_set(err, KVR_EINVAL, "certificate credential is incomplete");
        goto done;
    }
    if (!(bio = BIO_new_mem_buf(pem, (int)pem_len)) ||
        !(key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL))) {
        rc = kvr_error_set(err, KVR_EAUTH,
                           "certificate file holds no usable private key (pem, unencrypted)");
        goto done;
    }
    BIO_free(bio);
    if (!(bio = BIO_new_mem_buf(pem, (int)pem_len)) ||
        !(cert = PEM_read_bio_X509(bio, NULL, no_password, NULL))) {
        rc = kvr_error_set(err, KVR_EAUTH, "certificate file holds no certificate");
        goto done;
    }
    if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        rc = kvr_error_set(err, KVR_EAUTH, "certificate key is not an rsa key");
        goto done;
    }
    if (X509_check_private_key(cert, key) != 1) {
        rc = kvr_error_set(err, KVR_EAUTH, "certificate does not match its private key");
        goto done;
    }
    if ((der_len = i2d_X509(cert, &der)) <= 0 ||
        EVP_Digest(der, (size_t)der_len, digest, &dlen, EVP_sha256(), NULL) != 1 ||
        kvr_b64url_add(&thumb, digest, dlen) < 0) {
        rc = sign_failed(err);
        goto done;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        rc = sign_failed(err);
        goto done;
    }
    rnd[6] = (unsigned char)((rnd[6] & 0x0f) | 0x40); /* version 4 */
    rnd[8] = (unsigned char)((rnd[8] & 0x3f) | 0x80); /* variant 10 */
    snprintf(jti, sizeof(jti),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11],
             rnd[12], rnd[13], rnd[14], rnd[15]);
    size_t al = strlen(authority);
    while (al > 0 && authority[al - 1] == '/')
        al--;
    if ((size_t)snprintf(aud, sizeof(aud), "%.*s/%s/oauth2/v2.0/token", (int)al, authority,
                         tenant) >= sizeof(aud)) {
        rc = kvr_error_set(err, KVR_EINVAL, "authority or tenant too long");
        goto done;
    }
    header = json_pack("{s:s,s:s,s:s}", "alg", "PS256", "typ", "JWT", "x5t#S256", thumb.p);
    claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "aud", aud, "iss", client_id, "sub",
                       client_id, "jti", jti, "nbf", (json_int_t)now, "iat", (json_int_t)now, "exp",
                       (json_int_t)now + ASSERTION_LIFETIME);
    if (!header || !claims) {
        rc = kvr_error_set(err, KVR_EINVAL, "client id is not valid utf-8");
        goto done;
    }
    if ((rc = add_json_b64(&jwt, header)) < 0 || (rc = kvr_sbuf_add(&jwt, ".", 1)) < 0 ||
        (rc = add_json_b64(&jwt, claims)) < 0) {
        kvr_error_set(err, rc, "out of memory");
        goto done;
    }
    if (!(md = EVP_MD_CTX_new()) || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)jwt.p, jwt.len) != 1 ||
        !(sig = OPENSSL_malloc(siglen)) ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)jwt.p, jwt.len) != 1) {
        rc = sign_failed(err);
        goto done;
    }
    if ((rc = kvr_sbuf_add(&jwt, ".", 1)) < 0 || (rc = kvr_b64url_add(&jwt, sig, siglen)) < 0 ||
        (rc = kvr_sbuf_take(out, &jwt)) < 0) {
        kvr_error_set(err, rc, "out of memory");
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(rnd, sizeof(rnd));
    EVP_MD_CTX_free(md);
    OPENSSL_free(sig);
    OPENSSL_free(der);
    json_decref(header);
    json_decref(claims);
    kvr_sbuf_release(&thumb);
    kvr_sbuf_release(&jwt);
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}
