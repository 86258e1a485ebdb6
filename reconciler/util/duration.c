/*
 * Durations as people write them in configuration ("90d", "1d12h") and as Azure writes them
 * (ISO 8601 "P90D"). Retention, lifetimes and rotation policies are all durations; they are
 * held as seconds so that comparisons with the service's clock are plain arithmetic. Also the
 * monotonic clock and a sleep, for the intervals the tool waits and measures itself.
 */
#include "kvr/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MINUTE 60LL
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

/* Adds n * unit to *acc, refusing overflow. */
static bool add_scaled(int64_t *acc, int64_t n, int64_t unit)
{
    if (n > INT64_MAX / unit)
        return false;
    n *= unit;
    if (*acc > INT64_MAX - n)
        return false;
    *acc += n;
    return true;
}

/* Reads a run of decimal digits. Returns false if there is none or it overflows. */
static bool read_number(const char **p, int64_t *out)
{
    int64_t n = 0;
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return false;
    while (isdigit((unsigned char)*s)) {
        int d = *s - '0';
        if (n > (INT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
        s++;
    }
    *p = s;
    *out = n;
    return true;
}

static int64_t short_unit(char c)
{
    switch (c) {
    case 's':
        return 1;
    case 'm':
        return MINUTE;
    case 'h':
        return HOUR;
    case 'd':
        return DAY;
    case 'w':
        return 7 * DAY;
    case 'y':
        return 365 * DAY;
    }
    return 0;
}

static bool parse_short(const char *s, int64_t *out)
{
    int64_t total = 0;
    int64_t last_unit = INT64_MAX;
    while (*s) {
        int64_t n, unit;
        if (!read_number(&s, &n))
            return false;
        unit = short_unit(*s);
        /* Units must come largest first and once each: "1d12h", not "12h1d" or "1d1d". */
        if (!unit || unit >= last_unit)
            return false;
        if (!add_scaled(&total, n, unit))
            return false;
        last_unit = unit;
        s++;
    }
    *out = total;
    return true;
}

static bool parse_iso(const char *s, int64_t *out)
{
    static const char date_units[] = "YMWD";
    static const char time_units[] = "HMS";
    static const int64_t date_secs[] = {365 * DAY, 30 * DAY, 7 * DAY, DAY};
    static const int64_t time_secs[] = {HOUR, MINUTE, 1};
    int64_t total = 0;
    int next = 0; /* index of the smallest unit still allowed in the current part */
    bool in_time = false, any = false, any_time = false;

    if (*s++ != 'P')
        return false;
    while (*s) {
        int64_t n;
        const char *u;
        if (*s == 'T') {
            if (in_time)
                return false;
            in_time = true;
            next = 0;
            s++;
            continue;
        }
        if (!read_number(&s, &n))
            return false;
        u = strchr(in_time ? time_units : date_units, *s);
        if (!*s || !u || (int)(u - (in_time ? time_units : date_units)) < next)
            return false;
        next = (int)(u - (in_time ? time_units : date_units)) + 1;
        if (!add_scaled(&total, n, in_time ? time_secs[next - 1] : date_secs[next - 1]))
            return false;
        any = true;
        any_time |= in_time;
        s++;
    }
    if (!any || (in_time && !any_time))
        return false;
    *out = total;
    return true;
}

int kvr_duration_parse(int64_t *out, const char *text, kvr_error *err)
{
    int64_t v = 0;
    bool ok;

    if (!text || !*text)
        return kvr_error_set(err, KVR_EINVAL, "empty duration");
    ok = text[0] == 'P' ? parse_iso(text, &v) : parse_short(text, &v);
    if (!ok)
        return kvr_error_set(err, KVR_EINVAL,
                             "invalid duration '%.64s' (expected e.g. '90d', '12h', '1d12h' or ISO "
                             "8601 'P90D')",
                             text);
    if (v <= 0)
        return kvr_error_set(err, KVR_EINVAL, "duration '%.64s' must be greater than zero", text);
    *out = v;
    return 0;
}

void kvr_duration_iso(char *buf, size_t size, int64_t seconds)
{
    int64_t days = seconds / DAY, rest = seconds % DAY;
    int64_t h = rest / HOUR, m = (rest % HOUR) / MINUTE, s = rest % MINUTE;
    size_t n = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + n, size - n, __VA_ARGS__);                                         \
        if (w_ < 0 || (size_t)w_ >= size - n)                                                      \
            return;                                                                                \
        n += (size_t)w_;                                                                           \
    } while (0)
    PUT("P");
    if (days)
        PUT("%lldD", (long long)days);
    if (rest) {
        PUT("T");
        if (h)
            PUT("%lldH", (long long)h);
        if (m)
            PUT("%lldM", (long long)m);
        if (s)
            PUT("%lldS", (long long)s);
    }
    if (!days && !rest)
        PUT("T0S");
#undef PUT
}

void kvr_time_iso(char *buf, size_t size, int64_t t)
{
    /* Civil-from-days (proleptic Gregorian): no locale, no TZ, no libc time functions. */
    int64_t days = t / 86400, rem = t % 86400, y, era, doe, yoe, doy, mp, d, m;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(buf, size, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, (int)m, (int)d,
             (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60));
}

double kvr_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kvr_sleep_s(double seconds)
{
    struct timespec ts;
    if (!(seconds > 0))
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void kvr_day_name(char *buf, size_t size, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%d", &tm) == 0) {
        if (size)
            buf[0] = '\0';
    }
}

bool kvr_is_day_copy(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncasecmp(name, prefix, n) == 0 && name[n] == '-' && kvr_is_day_name(name + n + 1);
}

bool kvr_is_day_name(const char *s)
{
    static const char shape[] = "dddd-dd-dd";
    for (size_t i = 0; i < sizeof(shape) - 1; i++)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != '-')
            return false;
    return s[sizeof(shape) - 1] == '\0';
}
