/*
 * azsim_util.c - small helpers every azsim module needs: the simulated clock, identifiers (GUIDs
 * and 32-hex Key Vault versions, deterministic under --seed), base64url, ISO-8601 times and
 * durations, form decoding and file I/O. Kept apart so the service modules read as wire logic.
 */
#include "azsim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

int azsim_vec_push(azsim_vec *v, void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **items = realloc(v->items, cap * sizeof(*items));
        if (!items)
            return AZSIM_ENOMEM;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
    v->gen++;
    return AZSIM_OK;
}

void azsim_vec_remove(azsim_vec *v, size_t i)
{
    if (i >= v->n)
        return;
    memmove(&v->items[i], &v->items[i + 1], (v->n - i - 1) * sizeof(*v->items));
    v->n--;
    v->gen++;
}

int64_t azsim_now(const azsim_state *st)
{
    /* a frozen clock (POST /clock/freeze) moves only when a test moves it */
    return (st->clock_frozen_at ? st->clock_frozen_at : (int64_t)time(NULL)) + st->clock_offset;
}

void azsim_random(azsim_state *st, unsigned char *buf, size_t n)
{
    if (!st->seeded) {
        if (RAND_bytes(buf, (int)n) == 1)
            return;
        fprintf(stderr, "azsim: RAND_bytes failed\n");
        abort();
    }
    /* splitmix64: reproducible identifiers for a given --seed */
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (st->rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        buf[i] = (unsigned char)((z ^ (z >> 31)) & 0xff);
    }
}

void azsim_guid(azsim_state *st, char out[AZSIM_GUID_LEN + 1])
{
    unsigned char b[16];
    azsim_random(st, b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, AZSIM_GUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

void azsim_hexid(azsim_state *st, char out[AZSIM_VERSION_LEN + 1])
{
    unsigned char b[16];
    azsim_random(st, b, sizeof(b));
    for (size_t i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *azsim_b64url(const unsigned char *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;
    if (!out)
        return NULL;
    for (; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)data[i] << 16) | ((uint32_t)data[i + 1] << 8) | data[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)data[i] << 16) | ((uint32_t)data[i + 1] << 8);
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

/* the value of each character of base64url and of standard base64, -1 for any other */
static signed char b64_value[256];
static pthread_once_t b64_value_once = PTHREAD_ONCE_INIT;

static void b64_value_init(void)
{
    memset(b64_value, -1, sizeof(b64_value));
    for (int i = 0; i < 64; i++)
        b64_value[(unsigned char)B64URL[i]] = (signed char)i;
    b64_value['+'] = 62;
    b64_value['/'] = 63;
}

/* Accepts base64url and standard base64, padded or not. Four characters at a time: the sealed
 * state of a 2,000-vault estate is 400 MB of it, decoded before azsim can start. */
int azsim_b64url_decode(unsigned char **out, size_t *out_len, const char *in)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in), o = 0, i = 0;
    unsigned char *buf = NULL;

    *out = NULL;
    pthread_once(&b64_value_once, b64_value_init);
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1) /* a lone trailing character cannot encode a byte */
        return AZSIM_EINVAL;
    buf = malloc(len * 3 / 4 + 1);
    if (!buf)
        return AZSIM_ENOMEM;
    for (; i + 4 <= len; i += 4) {
        int a = b64_value[s[i]], b = b64_value[s[i + 1]], c = b64_value[s[i + 2]],
            d = b64_value[s[i + 3]];
        if ((a | b | c | d) < 0)
            goto bad;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        buf[o++] = (unsigned char)(v >> 16);
        buf[o++] = (unsigned char)(v >> 8);
        buf[o++] = (unsigned char)v;
    }
    if (i < len) { /* two or three characters: one or two bytes */
        int a = b64_value[s[i]], b = b64_value[s[i + 1]], c = i + 2 < len ? b64_value[s[i + 2]] : 0;
        if ((a | b | c) < 0)
            goto bad;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        buf[o++] = (unsigned char)(v >> 16);
        if (i + 2 < len)
            buf[o++] = (unsigned char)(v >> 8);
    }
    buf[o] = '\0'; /* callers may treat the bytes as a string (HTTP Basic credentials) */
    *out = buf;
    *out_len = o;
    return AZSIM_OK;
bad:
    free(buf);
    return AZSIM_EINVAL;
}

char *azsim_strndup_bytes(const char *data, size_t n)
{
    /* strndup wants a string; BIO memory and decoded bytes are not NUL-terminated */
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, data, n);
    out[n] = '\0';
    return out;
}

void azsim_iso8601(char out[32], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM]" -> Unix seconds */
int azsim_parse_iso8601(int64_t *out, const char *s)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6) {
        n = 0;
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || s[n] != '\0')
            return AZSIM_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return AZSIM_EINVAL;
    const char *p = s + n;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    int64_t off = 0;
    if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
            return AZSIM_EINVAL;
        off = (oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
    } else if (*p != 'Z' && *p != 'z' && *p != '\0') {
        return AZSIM_EINVAL;
    }
    *out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - off;
    return AZSIM_OK;
}

/* ISO-8601 duration (PnYnMnWnDTnHnMnS) -> seconds; years are 365 days and months 30. */
int azsim_parse_duration(int64_t *out, const char *s)
{
    int64_t total = 0;
    int in_time = 0, any = 0;
    if (*s != 'P' && *s != 'p')
        return AZSIM_EINVAL;
    for (s++; *s;) {
        if (*s == 'T' || *s == 't') {
            in_time = 1;
            s++;
            continue;
        }
        if (!isdigit((unsigned char)*s))
            return AZSIM_EINVAL;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || v < 0 || v > 100000)
            return AZSIM_EINVAL;
        int64_t unit;
        switch (*end) {
        case 'Y':
        case 'y':
            unit = in_time ? -1 : 365 * 86400;
            break;
        case 'M':
        case 'm':
            unit = in_time ? 60 : 30 * 86400;
            break;
        case 'W':
        case 'w':
            unit = in_time ? -1 : 7 * 86400;
            break;
        case 'D':
        case 'd':
            unit = in_time ? -1 : 86400;
            break;
        case 'H':
        case 'h':
            unit = in_time ? 3600 : -1;
            break;
        case 'S':
        case 's':
            unit = in_time ? 1 : -1;
            break;
        default:
            unit = -1;
        }
        if (unit < 0)
            return AZSIM_EINVAL;
        total += (int64_t)v * unit;
        any = 1;
        s = end + 1;
    }
    if (!any)
        return AZSIM_EINVAL;
    *out = total;
    return AZSIM_OK;
}

char *azsim_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *azsim_printf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

int azsim_streq_ci(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

int azsim_valid_object_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '-')
            return 0;
    return n >= 1 && n <= 127;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char *form_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
                   hexval((unsigned char)s[i + 2]) >= 0) {
            out[o++] =
                (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Value of field `name` in an application/x-www-form-urlencoded body, decoded; NULL if absent. */
char *azsim_form_get(const char *body, size_t len, const char *name)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && body[eq] != '=')
            eq++;
        char *key = form_decode(body + i, eq - i);
        if (!key)
            return NULL;
        int match = strcmp(key, name) == 0;
        free(key);
        if (match)
            return form_decode(body + (eq < end ? eq + 1 : end), eq < end ? end - eq - 1 : 0);
        i = end + 1;
    }
    return NULL;
}

void azsim_secret_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Room for n more bytes and a NUL. The text moves to a new block, the old one wiped: realloc
   would leave a copy of a secret's value behind. */
static int text_room(azsim_text *t, size_t n)
{
    size_t cap = t->cap ? t->cap : 4096;
    char *p;
    if (t->failed)
        return 0;
    if (t->len + n < t->cap)
        return 1;
    while (cap <= t->len + n) {
        if (cap > SIZE_MAX / 2) {
            t->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    if (!(p = malloc(cap))) {
        t->failed = 1;
        return 0;
    }
    if (t->p) {
        memcpy(p, t->p, t->len);
        OPENSSL_cleanse(t->p, t->len);
        free(t->p);
    }
    t->p = p;
    t->cap = cap;
    return 1;
}

void azsim_text_add(azsim_text *t, const char *s, size_t n)
{
    if (!text_room(t, n))
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

/* jansson's escapes: quote, backslash and the control characters; other bytes as they are (its
   strings are valid UTF-8, and azsim's come from its own JSON) */
void azsim_text_str(azsim_text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF", from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
    const char *e;
    size_t run = 0;
    AZSIM_TEXT_LIT(t, "\"");
    for (;; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            run++;
            continue;
        }
        azsim_text_add(t, s - run, run);
        run = 0;
        if (!ch)
            break;
        if ((e = memchr(from, ch, sizeof(from) - 1))) {
            esc[1] = to[e - from];
        } else {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        azsim_text_add(t, esc, n);
    }
    AZSIM_TEXT_LIT(t, "\"");
}

void azsim_text_int(azsim_text *t, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    azsim_text_add(t, num, (size_t)n);
}

void azsim_text_json(azsim_text *t, const json_t *j)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY, n = json_dumpb(j, NULL, 0, flags);
    if (!n) {
        t->failed = 1;
        return;
    }
    if (!text_room(t, n))
        return;
    if (json_dumpb(j, t->p + t->len, n, flags) != n) {
        t->failed = 1;
        return;
    }
    t->len += n;
    t->p[t->len] = '\0';
}

void azsim_text_release(azsim_text *t)
{
    if (t->p) {
        OPENSSL_cleanse(t->p, t->len);
        free(t->p);
    }
    memset(t, 0, sizeof(*t));
}

int azsim_read_file(char **out, size_t *out_len, const char *path)
{
    int rc = AZSIM_EIO;
    FILE *f = NULL;
    char *buf = NULL;
    long size;

    *out = NULL;
    f = fopen(path, "rb");
    if (!f)
        goto done;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)size + 1);
    if (!buf) {
        rc = AZSIM_ENOMEM;
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size)
        goto done;
    buf[size] = '\0';
    *out = buf;
    if (out_len)
        *out_len = (size_t)size;
    buf = NULL;
    rc = AZSIM_OK;
done:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

/* Writes atomically (temp file + rename) with the given mode, so readers never see half a file. */
/* makes a rename in the directory of path durable */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? azsim_strndup_bytes(path, slash == path ? 1 : (size_t)(slash - path))
                      : azsim_strdup(".");
    int rc = AZSIM_EIO, fd = -1;
    if (!dir)
        return AZSIM_ENOMEM;
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0 && fsync(fd) == 0)
        rc = AZSIM_OK;
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* atomic and durable: a temporary file beside path, fsync, rename, fsync of the directory */
int azsim_write_file(const char *path, const void *data, size_t len, int mode)
{
    int rc = AZSIM_EIO, fd = -1;
    char *tmp = azsim_printf("%s.tmp", path);
    if (!tmp)
        return AZSIM_ENOMEM;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, (mode_t)mode);
    if (fd < 0) {
        fprintf(stderr, "azsim: cannot create '%s': %s\n", tmp, strerror(errno));
        goto done;
    }
    if (fchmod(fd, (mode_t)mode) != 0)
        goto done;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto done;
        }
        p += w;
        len -= (size_t)w;
    }
    /* durable before it replaces the old file, so a crash leaves one whole version or the other */
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "azsim: cannot write '%s': %s\n", path, strerror(errno));
        goto done;
    }
    if (sync_parent_dir(path) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot sync the directory of '%s': %s\n", path, strerror(errno));
        goto done;
    }
    rc = AZSIM_OK;
done:
    if (fd >= 0)
        close(fd);
    if (rc != AZSIM_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}
