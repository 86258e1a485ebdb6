/*
 * The pure parts of the HTTP layer, kept apart from the event loop so that they can be tested
 * without a network: how long a throttled response asks us to wait (Retry-After in both forms,
 * x-ms-retry-after-ms), full-jitter backoff, which statuses are worth a retry, URL facts, form
 * encoding for the token endpoint, and the paging links, which are followed exactly as given
 * but only to the host the listing started on so that a hostile link cannot collect a token,
 * and never back to a page already read.
 */
#include "azinternal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define RETRY_AFTER_MAX_MS (24L * 3600 * 1000)

/* Parses optional spaces, digits, optional spaces. -1 when not of that form. */
static long long parse_digits(const char *s)
{
    long long v = 0;
    int n = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        if (v > 1000000000000LL)
            v = 1000000000000LL; /* saturate: far beyond any cap */
        else
            v = v * 10 + (*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    return (n == 0 || *s) ? -1 : v;
}

static time_t parse_http_date(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    /* Every HTTP-date form starts with a day name; curl_getdate alone would take "5" as a date. */
    if (!isalpha((unsigned char)*s) || strlen(s) > 64)
        return -1;
    return curl_getdate(s, NULL);
}

int kvr_http_retry_after_ms(long *out, const char *retry_after, const char *retry_after_ms,
                            const char *date, time_t now)
{
    long long v;
    *out = 0;
    if (retry_after_ms && (v = parse_digits(retry_after_ms)) >= 0) {
        *out = v > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : (long)v;
        return 0;
    }
    if (!retry_after)
        return KVR_ENOTFOUND;
    if ((v = parse_digits(retry_after)) >= 0) {
        *out = v > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : (long)v * 1000;
        return 0;
    }
    time_t when = parse_http_date(retry_after);
    if (when < 0)
        return KVR_ENOTFOUND;
    time_t base = date ? parse_http_date(date) : -1;
    if (base < 0)
        base = now;
    if (when <= base)
        return KVR_ENOTFOUND; /* a date in the past says nothing: the usual backoff applies */
    double ms = difftime(when, base) * 1000.0;
    *out = ms > (double)RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : (long)ms;
    return 0;
}

long kvr_http_backoff_ms(int retry, long base_ms, long cap_ms, uint32_t rnd)
{
    long ceiling = base_ms < 0 ? 0 : base_ms;
    if (cap_ms < 0)
        cap_ms = 0;
    for (int i = 0; i < retry && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return (long)((unsigned long long)rnd % ((unsigned long long)ceiling + 1));
}

bool kvr_http_status_retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* "malformed url 'URL'", the url cleaned and shortened: the message names what was wrong. */
static int malformed(kvr_error *err, int rc, const char *url)
{
    char shown[160];
    kvr_az_copy_clean(shown, sizeof(shown), url);
    return kvr_error_set(err, rc, "malformed url '%s%s'", shown,
                         strlen(url) >= sizeof(shown) - 1 ? "..." : "");
}

int kvr_http_url_info(kvr_url_info *out, const char *url, kvr_error *err)
{
    CURLU *u = NULL;
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = KVR_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!url || strlen(url) > 8192) {
        kvr_error_set(err, rc, "url missing or too long");
        goto done;
    }
    if (!(u = curl_url())) {
        rc = kvr_error_oom(err);
        goto done;
    }
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        malformed(err, rc, url);
        goto done;
    }
    if (strlen(scheme) >= sizeof(out->scheme) || strlen(host) >= sizeof(out->host) ||
        host[0] == '\0') {
        malformed(err, rc, url);
        goto done;
    }
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    memcpy(out->scheme, scheme, strlen(scheme) + 1);
    memcpy(out->host, host, strlen(host) + 1);
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port) {
        char *end = NULL;
        long p = strtol(port, &end, 10);
        if (*end || p <= 0 || p > 65535) {
            malformed(err, rc, url);
            goto done;
        }
        out->port = (int)p;
        out->explicit_port = true;
        snprintf(out->host_port, sizeof(out->host_port), "%s:%ld", out->host, p);
    } else {
        out->port = strcmp(out->scheme, "https") == 0  ? 443
                    : strcmp(out->scheme, "http") == 0 ? 80
                                                       : 0;
        snprintf(out->host_port, sizeof(out->host_port), "%s", out->host);
    }
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static int form_add(kvr_sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            rc = kvr_sbuf_add(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = kvr_sbuf_add(b, e, 3);
        }
    }
    return rc;
}

int kvr_http_form_encode(char **out, const char *const *pairs, kvr_error *err)
{
    kvr_sbuf b = {0};
    int rc = 0;
    *out = NULL;
    for (size_t i = 0; pairs[i]; i += 2) {
        if (!pairs[i + 1]) {
            rc = kvr_error_set(err, KVR_EINVAL, "form field '%s' has no value", pairs[i]);
            goto done;
        }
        if ((i && (rc = kvr_sbuf_add(&b, "&", 1)) < 0) || (rc = form_add(&b, pairs[i])) < 0 ||
            (rc = kvr_sbuf_add(&b, "=", 1)) < 0 || (rc = form_add(&b, pairs[i + 1])) < 0) {
            kvr_error_set(err, rc, "out of memory");
            goto done;
        }
    }
    rc = kvr_sbuf_take(out, &b);
    if (rc < 0)
        kvr_error_set(err, rc, "out of memory");
done:
    kvr_sbuf_release(&b);
    return rc;
}

int kvr_http_next_link(char **out, const char *current_url, const json_t *page, kvr_error *err)
{
    kvr_url_info cur, next;
    kvr_error bad;
    const json_t *link = NULL;
    int rc = 0;

    *out = NULL;
    if (!json_is_object(page))
        return kvr_error_set(err, KVR_EPROTO, "list response is not a json object");
    link = json_object_get(page, "nextLink");
    if (!link || json_is_null(link))
        link = json_object_get(page, "@odata.nextLink");
    if (!link || json_is_null(link))
        return 0;
    if (!json_is_string(link))
        return kvr_error_set(err, KVR_EPROTO, "list response has a next link that is not a string");
    const char *s = json_string_value(link);
    if (s[0] == '\0')
        return 0;
    if ((rc = kvr_http_url_info(&cur, current_url, err)) < 0)
        return rc;
    if (kvr_http_url_info(&next, s, &bad) < 0)
        return kvr_error_set(err, KVR_EPROTO, "list response has a %s as its next link",
                             bad.message);
    if (strcmp(next.scheme, "https") != 0 || strcmp(next.scheme, cur.scheme) != 0 ||
        strcmp(next.host, cur.host) != 0 || next.port != cur.port)
        return kvr_error_set(err, KVR_EINSECURE,
                             "next link leads to '%s' instead of '%s'; not followed",
                             next.host_port, cur.host_port);
    if (!(*out = strdup(s)))
        return kvr_error_oom(err);
    return 0;
}

int kvr_http_pages_note(kvr_http_pages *p, const char *url, const char *what, kvr_error *err)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the exact bytes (paths are case-sensitive) */
    for (const unsigned char *s = (const unsigned char *)url; *s; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    for (size_t i = 0; i < p->n; i++)
        if (p->seen[i] == h)
            return kvr_error_set(err, KVR_EPROTO,
                                 "%s: the next link of page %zu leads back to page %zu; the "
                                 "listing was stopped",
                                 what, p->n, i + 1);
    if (kvr_grow((void **)&p->seen, &p->cap, p->n + 1, sizeof(*p->seen)) < 0)
        return kvr_error_oom(err);
    p->seen[p->n++] = h;
    return 0;
}

void kvr_http_pages_release(kvr_http_pages *p)
{
    free(p->seen);
    memset(p, 0, sizeof(*p));
}
