/*
 * azsim_certs.c - the X.509 side of Key Vault certificates in azsim: it opens what a client
 * imports (base64 PKCS#12 with or without a password, or PEM text with a PKCS#8 key and the chain),
 * checks that the private key belongs to the leaf certificate, produces the value of the managed
 * secret (PKCS#12 without password or PEM, with or without the private key), and reads the facts
 * the REST shapes need from the leaf (validity, SHA-1 thumbprint, subject, SANs, key usages). It
 * knows nothing about HTTP, so azsim_keyvault.c stays about the wire format and this file about
 * OpenSSL. It also maps Azure locations to geographies for the backup/restore rule.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Standard base64 without line breaks (certificate `cer` and PKCS#12 values use it). */
static char *b64_encode(const unsigned char *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Decodes standard base64, ignoring whitespace; AZSIM_EINVAL if it is not base64. */
static int b64_decode(unsigned char **out, size_t *out_len, const char *in)
{
    size_t n = strlen(in), m = 0;
    char *clean = malloc(n + 1);
    unsigned char *buf = NULL;
    int rc = AZSIM_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (!clean)
        return AZSIM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)in[i]))
            clean[m++] = in[i];
    if (m == 0 || m % 4 != 0)
        goto done;
    for (size_t i = 0; i < m; i++)
        if (!isalnum((unsigned char)clean[i]) && clean[i] != '+' && clean[i] != '/' &&
            !(clean[i] == '=' && i >= m - 2))
            goto done;
    buf = malloc(m / 4 * 3 + 1);
    if (!buf) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    int len = EVP_DecodeBlock(buf, (const unsigned char *)clean, (int)m);
    if (len < 0)
        goto done;
    if (clean[m - 1] == '=')
        len--;
    if (clean[m - 2] == '=')
        len--;
    *out = buf;
    *out_len = (size_t)len;
    buf = NULL;
    rc = AZSIM_OK;
done:
    free(buf);
    free(clean);
    return rc;
}

static char *x509_b64(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    char *out = len > 0 ? b64_encode(der, (size_t)len) : NULL;
    OPENSSL_free(der);
    return out;
}

static X509 *x509_from_b64(const char *b64)
{
    unsigned char *der = NULL;
    size_t len = 0;
    X509 *x = NULL;
    if (b64 && b64_decode(&der, &len, b64) == AZSIM_OK) {
        const unsigned char *p = der;
        x = d2i_X509(NULL, &p, (long)len);
    }
    free(der);
    return x;
}

/* Appends the certificates to a new x5c array with the one that matches pkey first. */
static int chain_for_key(json_t **out, STACK_OF(X509) * certs, EVP_PKEY *pkey, const char **why)
{
    json_t *x5c = json_array();
    int leaf = -1;
    *out = NULL;
    if (!x5c)
        return AZSIM_ENOMEM;
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (X509_check_private_key(sk_X509_value(certs, i), pkey) == 1) {
            leaf = i;
            break;
        }
    ERR_clear_error();
    if (leaf < 0) {
        *why = "The private key does not match the public key of the certificate.";
        json_decref(x5c);
        return AZSIM_EINVAL;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < sk_X509_num(certs); i++) {
            if ((pass == 0) != (i == leaf))
                continue;
            char *b64 = x509_b64(sk_X509_value(certs, i));
            if (!b64 || json_array_append_new(x5c, json_string(b64)) != 0) {
                free(b64);
                json_decref(x5c);
                return AZSIM_ENOMEM;
            }
            free(b64);
        }
    *out = x5c;
    return AZSIM_OK;
}

static int parse_pem(EVP_PKEY **out_pkey, STACK_OF(X509) * certs, const char *value,
                     const char *pwd, const char **why)
{
    BIO *b = BIO_new_mem_buf(value, -1);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    EVP_PKEY *pkey = NULL;
    int rc = AZSIM_EINVAL;
    if (!b)
        return AZSIM_ENOMEM;
    while (PEM_read_bio(b, &name, &header, &data, &len) == 1) {
        const unsigned char *p = data;
        if (strcmp(name, "CERTIFICATE") == 0) {
            X509 *x = d2i_X509(NULL, &p, len);
            if (!x || !sk_X509_push(certs, x)) {
                X509_free(x);
                *why = "The specified PEM X.509 certificate content is in an unexpected format. "
                       "Please check if certificate is in valid PEM format.";
                goto done;
            }
        } else if (strcmp(name, "PRIVATE KEY") == 0 || strcmp(name, "ENCRYPTED PRIVATE KEY") == 0) {
            PKCS8_PRIV_KEY_INFO *p8 = NULL;
            if (name[0] == 'E') {
                X509_SIG *enc = d2i_X509_SIG(NULL, &p, len);
                p8 = enc ? PKCS8_decrypt(enc, pwd ? pwd : "", pwd ? -1 : 0) : NULL;
                X509_SIG_free(enc);
                if (!p8) {
                    *why = "The specified password is not correct for the encrypted private key.";
                    goto done;
                }
            } else {
                p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);
            }
            EVP_PKEY *k = p8 ? EVP_PKCS82PKEY(p8) : NULL;
            PKCS8_PRIV_KEY_INFO_free(p8);
            if (!k || pkey) {
                EVP_PKEY_free(k);
                *why = pkey ? "The PEM content holds more than one private key."
                            : "The private key in the PEM content is invalid.";
                goto done;
            }
            pkey = k;
        } else if (strstr(name, "PRIVATE KEY")) {
            *why = "The private key must be in PKCS#8 format (BEGIN PRIVATE KEY or BEGIN ENCRYPTED "
                   "PRIVATE KEY).";
            goto done;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_clear_free(data, (size_t)len);
        name = header = NULL;
        data = NULL;
    }
    if (sk_X509_num(certs) == 0) {
        *why = "The specified PEM X.509 certificate content is in an unexpected format. Please "
               "check if certificate is in valid PEM format.";
        goto done;
    }
    if (!pkey) {
        *why = "Private key is not specified in the specified X.509 PEM certificate content. "
               "Please specify private key in the X.509 PEM certificate content.";
        goto done;
    }
    *out_pkey = pkey;
    pkey = NULL;
    rc = AZSIM_OK;
done:
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (data)
        OPENSSL_clear_free(data, (size_t)len);
    EVP_PKEY_free(pkey);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

static int parse_pfx(EVP_PKEY **out_pkey, STACK_OF(X509) * certs, const char *value,
                     const char *pwd, const char **why)
{
    unsigned char *der = NULL;
    size_t len = 0;
    PKCS12 *p12 = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *ca = NULL;
    const char *pass = pwd ? pwd : "";
    int rc = AZSIM_EINVAL;

    if (b64_decode(&der, &len, value) != AZSIM_OK) {
        *why = "The specified certificate is not a valid base64 encoded PKCS#12 (PFX) file.";
        goto done;
    }
    const unsigned char *p = der;
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (!p12) {
        *why = "The specified certificate is not a valid base64 encoded PKCS#12 (PFX) file.";
        goto done;
    }
    /* an empty password and no password are different things in PKCS#12; accept either */
    if (PKCS12_mac_present(p12) && PKCS12_verify_mac(p12, pass, -1) != 1) {
        if (*pass == '\0' && PKCS12_verify_mac(p12, NULL, 0) == 1)
            pass = NULL;
        else {
            *why = "Specified PFX password is not correct.";
            goto done;
        }
    }
    if (PKCS12_parse(p12, pass, &pkey, &cert, &ca) != 1) {
        *why = "Specified PFX password is not correct.";
        goto done;
    }
    if (!cert) {
        *why = "The specified PFX file does not contain a certificate.";
        goto done;
    }
    if (!pkey) {
        *why = "The specified PFX file does not contain a private key; Key Vault imports a "
               "certificate with its private key.";
        goto done;
    }
    if (!sk_X509_push(certs, cert)) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    cert = NULL;
    while (ca && sk_X509_num(ca) > 0) {
        X509 *x = sk_X509_shift(ca);
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            rc = AZSIM_ENOMEM;
            goto done;
        }
    }
    *out_pkey = pkey;
    pkey = NULL;
    rc = AZSIM_OK;
done:
    if (der) {
        OPENSSL_cleanse(der, len);
        free(der);
    }
    PKCS12_free(p12);
    EVP_PKEY_free(pkey);
    X509_free(cert);
    sk_X509_pop_free(ca, X509_free);
    ERR_clear_error();
    return rc;
}

int azsim_cert_parse(EVP_PKEY **out_pkey, json_t **out_x5c, const char *value, const char *pwd,
                     int pem, const char **why)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    EVP_PKEY *pkey = NULL;
    json_t *x5c = NULL;
    int rc;
    *out_pkey = NULL;
    *out_x5c = NULL;
    if (!certs)
        return AZSIM_ENOMEM;
    rc = pem ? parse_pem(&pkey, certs, value, pwd, why) : parse_pfx(&pkey, certs, value, pwd, why);
    if (rc == AZSIM_OK)
        rc = chain_for_key(&x5c, certs, pkey, why);
    if (rc == AZSIM_OK) {
        *out_pkey = pkey;
        *out_x5c = x5c;
        pkey = NULL;
    }
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

static char *bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    return n >= 0 ? azsim_strndup_bytes(data, (size_t)n) : NULL;
}

char *azsim_cert_secret_value(json_t *x5c, EVP_PKEY *pkey, int pem)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *ca = sk_X509_new_null();
    BIO *b = BIO_new(BIO_s_mem());
    PKCS12 *p12 = NULL;
    unsigned char *der = NULL;
    char *out = NULL;
    int ok = 0;
    size_t i;
    json_t *jc;

    if (!ca || !b)
        goto done;
    json_array_foreach(x5c, i, jc)
    {
        X509 *x = x509_from_b64(json_string_value(jc));
        if (!x)
            goto done;
        if (i == 0) {
            leaf = x;
        } else if (!sk_X509_push(ca, x)) {
            X509_free(x);
            goto done;
        }
    }
    if (!leaf)
        goto done;
    if (pem) {
        /* what Key Vault hands out for application/x-pem-file: the key (PKCS#8), then the chain */
        if (pkey && PEM_write_bio_PKCS8PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL) != 1)
            goto done;
        if (PEM_write_bio_X509(b, leaf) != 1)
            goto done;
        for (int k = 0; k < sk_X509_num(ca); k++)
            if (PEM_write_bio_X509(b, sk_X509_value(ca, k)) != 1)
                goto done;
        out = bio_string(b);
    } else {
        /* no password: the bags are left unencrypted and the MAC uses the empty password */
        p12 = PKCS12_create("", NULL, pkey, leaf, sk_X509_num(ca) ? ca : NULL, -1, -1, 0, 0, 0);
        int len = p12 ? i2d_PKCS12(p12, &der) : -1;
        if (len <= 0)
            goto done;
        out = b64_encode(der, (size_t)len);
        OPENSSL_cleanse(der, (size_t)len);
    }
    ok = out != NULL;
done:
    if (!ok) {
        azsim_secret_free(out);
        out = NULL;
    }
    OPENSSL_free(der);
    PKCS12_free(p12);
    X509_free(leaf);
    sk_X509_pop_free(ca, X509_free);
    if (b) {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && data)
            OPENSSL_cleanse(data, (size_t)n);
        BIO_free(b);
    }
    ERR_clear_error();
    return out;
}

static int asn1_time_unix(int64_t *out, const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return AZSIM_EINVAL;
    *out = (int64_t)timegm(&tm);
    return AZSIM_OK;
}

static json_t *x509_props(X509 *x, int64_t nbf, int64_t exp)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } usages[] = {{KU_DIGITAL_SIGNATURE, "digitalSignature"},
                  {KU_NON_REPUDIATION, "nonRepudiation"},
                  {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
                  {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
                  {KU_KEY_AGREEMENT, "keyAgreement"},
                  {KU_KEY_CERT_SIGN, "keyCertSign"},
                  {KU_CRL_SIGN, "cRLSign"},
                  {KU_ENCIPHER_ONLY, "encipherOnly"},
                  {KU_DECIPHER_ONLY, "decipherOnly"}};
    const int64_t month = 2629746; /* an average Gregorian month in seconds */
    json_t *props = json_object(), *ekus = json_array(), *kus = json_array();
    BIO *b = BIO_new(BIO_s_mem());
    char *subject = NULL;
    EXTENDED_KEY_USAGE *eku = NULL;
    GENERAL_NAMES *sans = NULL;

    if (!props || !ekus || !kus || !b)
        goto fail;
    /* forward order with ", " between RDNs, as Key Vault prints a subject ("CN=a, O=b") */
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                           XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | ASN1_STRFLGS_RFC2253) < 0)
        goto fail;
    subject = bio_string(b);
    if (!subject)
        goto fail;
    json_object_set_new(props, "subject", json_string(subject));
    sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (sans) {
        json_t *dns = json_array(), *emails = json_array();
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
            if (gn->type != GEN_DNS && gn->type != GEN_EMAIL)
                continue;
            const ASN1_IA5STRING *s = gn->type == GEN_DNS ? gn->d.dNSName : gn->d.rfc822Name;
            char *v = azsim_strndup_bytes((const char *)ASN1_STRING_get0_data(s),
                                          (size_t)ASN1_STRING_length(s));
            json_array_append_new(gn->type == GEN_DNS ? dns : emails, json_string(v ? v : ""));
            free(v);
        }
        json_t *jsans = json_object();
        if (json_array_size(dns))
            json_object_set(jsans, "dns_names", dns);
        if (json_array_size(emails))
            json_object_set(jsans, "emails", emails);
        json_decref(dns);
        json_decref(emails);
        if (json_object_size(jsans))
            json_object_set_new(props, "sans", jsans);
        else
            json_decref(jsans);
    }
    eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++) {
        char oid[128];
        if (OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1) > 0)
            json_array_append_new(ekus, json_string(oid));
    }
    uint32_t ku = X509_get_key_usage(x);
    if (ku != UINT32_MAX)
        for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++)
            if (ku & usages[i].bit)
                json_array_append_new(kus, json_string(usages[i].name));
    json_object_set_new(props, "ekus", ekus);
    json_object_set_new(props, "key_usage", kus);
    ekus = kus = NULL;
    json_object_set_new(props, "validity_months",
                        json_integer(exp > nbf ? (exp - nbf + month - 1) / month : 0));
    free(subject);
    BIO_free(b);
    EXTENDED_KEY_USAGE_free(eku);
    GENERAL_NAMES_free(sans);
    return props;
fail:
    free(subject);
    BIO_free(b);
    EXTENDED_KEY_USAGE_free(eku);
    GENERAL_NAMES_free(sans);
    json_decref(props);
    json_decref(ekus);
    json_decref(kus);
    return NULL;
}

int azsim_cert_info(json_t *x5c, int64_t *out_nbf, int64_t *out_exp, char **out_x5t,
                    json_t **out_x509_props)
{
    unsigned char *der = NULL;
    size_t len = 0;
    unsigned char sha1[20];
    X509 *x = NULL;
    int rc = AZSIM_EINVAL;
    int64_t nbf = 0, exp = 0;

    if (out_x5t)
        *out_x5t = NULL;
    if (out_x509_props)
        *out_x509_props = NULL;
    const char *b64 = json_string_value(json_array_get(x5c, 0));
    if (!b64 || b64_decode(&der, &len, b64) != AZSIM_OK)
        goto done;
    const unsigned char *p = der;
    x = d2i_X509(NULL, &p, (long)len);
    if (!x || asn1_time_unix(&nbf, X509_get0_notBefore(x)) != AZSIM_OK ||
        asn1_time_unix(&exp, X509_get0_notAfter(x)) != AZSIM_OK)
        goto done;
    if (out_nbf)
        *out_nbf = nbf;
    if (out_exp)
        *out_exp = exp;
    if (out_x5t) {
        if (EVP_Digest(der, len, sha1, NULL, EVP_sha1(), NULL) != 1 ||
            !(*out_x5t = azsim_b64url(sha1, sizeof(sha1)))) {
            rc = AZSIM_ERR;
            goto done;
        }
    }
    if (out_x509_props && !(*out_x509_props = x509_props(x, nbf, exp))) {
        if (out_x5t) {
            free(*out_x5t);
            *out_x5t = NULL;
        }
        rc = AZSIM_ENOMEM;
        goto done;
    }
    rc = AZSIM_OK;
done:
    free(der);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

/* Azure geographies (data residency boundaries) and display names of the common regions */
static const struct region {
    const char *location, *geography, *display;
} REGIONS[] = {
    {"eastus", "unitedstates", "East US"},
    {"eastus2", "unitedstates", "East US 2"},
    {"centralus", "unitedstates", "Central US"},
    {"northcentralus", "unitedstates", "North Central US"},
    {"southcentralus", "unitedstates", "South Central US"},
    {"westcentralus", "unitedstates", "West Central US"},
    {"westus", "unitedstates", "West US"},
    {"westus2", "unitedstates", "West US 2"},
    {"westus3", "unitedstates", "West US 3"},
    {"northeurope", "europe", "North Europe"},
    {"westeurope", "europe", "West Europe"},
    {"uksouth", "unitedkingdom", "UK South"},
    {"ukwest", "unitedkingdom", "UK West"},
    {"francecentral", "france", "France Central"},
    {"francesouth", "france", "France South"},
    {"germanywestcentral", "germany", "Germany West Central"},
    {"germanynorth", "germany", "Germany North"},
    {"switzerlandnorth", "switzerland", "Switzerland North"},
    {"switzerlandwest", "switzerland", "Switzerland West"},
    {"norwayeast", "norway", "Norway East"},
    {"norwaywest", "norway", "Norway West"},
    {"swedencentral", "sweden", "Sweden Central"},
    {"swedensouth", "sweden", "Sweden South"},
    {"canadacentral", "canada", "Canada Central"},
    {"canadaeast", "canada", "Canada East"},
    {"brazilsouth", "brazil", "Brazil South"},
    {"brazilsoutheast", "brazil", "Brazil Southeast"},
    {"eastasia", "asiapacific", "East Asia"},
    {"southeastasia", "asiapacific", "Southeast Asia"},
    {"australiaeast", "australia", "Australia East"},
    {"australiasoutheast", "australia", "Australia Southeast"},
    {"australiacentral", "australia", "Australia Central"},
    {"japaneast", "japan", "Japan East"},
    {"japanwest", "japan", "Japan West"},
    {"koreacentral", "korea", "Korea Central"},
    {"koreasouth", "korea", "Korea South"},
    {"centralindia", "india", "Central India"},
    {"southindia", "india", "South India"},
    {"westindia", "india", "West India"},
};

static const struct region *region_of(const char *location)
{
    for (size_t i = 0; location && i < sizeof(REGIONS) / sizeof(REGIONS[0]); i++)
        if (azsim_streq_ci(REGIONS[i].location, location))
            return &REGIONS[i];
    return NULL;
}

const char *azsim_geography(const char *location)
{
    const struct region *r = region_of(location);
    return r ? r->geography : location ? location : "";
}

const char *azsim_location_display(const char *location)
{
    const struct region *r = region_of(location);
    return r ? r->display : location ? location : "";
}

char *azsim_locations_list(const char *sep)
{
    size_t n = sizeof(REGIONS) / sizeof(REGIONS[0]), len = 1, o = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(REGIONS[i].location) + strlen(sep);
    char *out = malloc(len);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? sep : "", REGIONS[i].location);
    return out;
}
