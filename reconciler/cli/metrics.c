/*
 * Prometheus metrics of `watch` (--metrics-addr HOST:PORT): /metrics in the text exposition
 * format, /healthz, as Flux's and Argo CD's controllers serve theirs, so that an operator can
 * alert on a watch that keeps failing, stays blocked, or has no leader.
 *
 * One small thread serves them: a loop over poll(2) on the listening socket and a pipe that
 * ends it, one request per connection (HTTP/1.0 style, Connection: close), a hard cap on the
 * request size and a read timeout, so a slow or hostile client cannot hold it. It binds to
 * loopback unless told otherwise: the metrics say nothing secret, but who can see an estate's
 * rhythm is the operator's choice. The watch loop records into counters under a mutex; the
 * executor's step, waiting and blocked events reach them through the run's log stream
 * (cli_metrics_log), whose lines pass on to stderr as they were (JSON), or as text lines.
 */
#define _GNU_SOURCE /* fopencookie */
#include "cli.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_KINDS 64
#define REQ_MAX 4096

static const double BUCKETS[] = {1, 5, 15, 60, 300, 900, 3600};
#define NBUCKETS (sizeof(BUCKETS) / sizeof(BUCKETS[0]))
static const char *const RESULTS[] = {"converged", "blocked", "error", "invalid"};
#define NRESULTS (sizeof(RESULTS) / sizeof(RESULTS[0]))
static const char *const GATES[] = {"profile-used", "retention", "unreferenced",
                                    "role-effective", "copy-verified", "other"};
#define NGATES (sizeof(GATES) / sizeof(GATES[0]))

typedef struct step_count {
    char kind[48];
    char result[16];
    unsigned long long n;
} step_count;

static struct {
    pthread_mutex_t mu;
    bool on;
    int fd, wake[2];
    pthread_t thread;
    unsigned long long runs[NRESULTS];
    unsigned long long buckets[NBUCKETS];
    unsigned long long dur_count;
    double dur_sum;
    double last_success;      /* unix time; 0: none */
    unsigned long long drift; /* runs whose first plan had steps */
    double drift_steps;       /* steps the last run's first plan had */
    bool run_first_step;      /* the current run has not reported a step yet */
    step_count steps[MAX_KINDS];
    size_t nsteps;
    double gates[NGATES];
    int leader; /* -1: no election */
    int lease;
} M = {PTHREAD_MUTEX_INITIALIZER, false, -1, {-1, -1}, 0, {0}, {0}, 0, 0, 0, 0, 0, true,
       {{"", "", 0}}, 0, {0}, -1, 0};

/* ---- recording ------------------------------------------------------------------------------ */

void cli_metrics_run_end(const char *result, double seconds)
{
    pthread_mutex_lock(&M.mu);
    for (size_t i = 0; i < NRESULTS; i++)
        if (strcmp(RESULTS[i], result) == 0)
            M.runs[i]++;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= BUCKETS[i])
            M.buckets[i]++;
    M.dur_count++;
    M.dur_sum += seconds;
    /* a run that did all it could (converged, or blocked only at gates) succeeded */
    if (strcmp(result, "converged") == 0 || strcmp(result, "blocked") == 0)
        M.last_success = (double)time(NULL);
    if (strcmp(result, "blocked") != 0)
        for (size_t i = 0; i < NGATES; i++)
            M.gates[i] = 0; /* nothing waits any more (or the run failed before it knew) */
    if (M.run_first_step)
        M.drift_steps = 0;
    M.run_first_step = true;
    pthread_mutex_unlock(&M.mu);
}

void cli_metrics_leader(int leading)
{
    pthread_mutex_lock(&M.mu);
    M.leader = leading;
    pthread_mutex_unlock(&M.mu);
}

void cli_metrics_lease(bool held)
{
    pthread_mutex_lock(&M.mu);
    M.lease = held;
    pthread_mutex_unlock(&M.mu);
}

static void count_step(const char *kind, const char *result, json_int_t of)
{
    size_t i;
    if (M.run_first_step) {
        M.run_first_step = false;
        M.drift_steps = (double)of;
        if (of > 0)
            M.drift++;
    }
    for (i = 0; i < M.nsteps; i++)
        if (strcmp(M.steps[i].kind, kind) == 0 && strcmp(M.steps[i].result, result) == 0)
            break;
    if (i == M.nsteps) {
        if (M.nsteps == MAX_KINDS)
            return;
        snprintf(M.steps[i].kind, sizeof(M.steps[i].kind), "%s", kind);
        snprintf(M.steps[i].result, sizeof(M.steps[i].result), "%s", result);
        M.nsteps++;
    }
    M.steps[i].n++;
}

/* What a waiting or blocked run waits for, by gate kind: the executor says it in words. */
static void count_gates(const char *reasons)
{
    for (size_t i = 0; i < NGATES; i++)
        M.gates[i] = 0;
    for (const char *p = reasons; p && *p;) {
        size_t n = strcspn(p, ";");
        char one[512];
        size_t g = NGATES - 1;
        snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), p);
        if (strstr(one, "Used"))
            g = 0;
        else if (strstr(one, "retention"))
            g = 1;
        else if (strstr(one, "referenc"))
            g = 2;
        else if (strstr(one, "role assignment") || strstr(one, "take effect"))
            g = 3;
        else if (strstr(one, "cop"))
            g = 4;
        M.gates[g]++;
        p += n + (p[n] == ';');
        while (*p == ' ')
            p++;
    }
}

/* ---- the run's log stream ------------------------------------------------------------------- */

typedef struct tee {
    FILE *to;
    bool json; /* pass JSON lines on as they are; else as text */
    char line[8192];
    size_t len;
} tee;

static void tee_line(tee *t)
{
    json_t *j;
    const char *ev;
    t->line[t->len] = '\0';
    j = t->line[0] == '{' ? json_loads(t->line, 0, NULL) : NULL;
    ev = j ? json_string_value(json_object_get(j, "event")) : NULL;
    pthread_mutex_lock(&M.mu);
    if (ev && strcmp(ev, "step") == 0)
        count_step(json_string_value(json_object_get(j, "kind"))
                       ? json_string_value(json_object_get(j, "kind"))
                       : "unknown",
                   json_string_value(json_object_get(j, "result"))
                       ? json_string_value(json_object_get(j, "result"))
                       : "unknown",
                   json_integer_value(json_object_get(j, "of")));
    else if (ev && (strcmp(ev, "waiting") == 0 || strcmp(ev, "blocked") == 0))
        count_gates(json_string_value(json_object_get(j, "for")));
    pthread_mutex_unlock(&M.mu);
    if (t->json || !j) {
        fprintf(t->to, "%s\n", t->line);
    } else if (ev && strcmp(ev, "step") == 0) {
        const char *obj = json_string_value(json_object_get(j, "object"));
        fprintf(t->to, "kvreconcile: step %lld of %lld: %s %s%s%s: %s (%.1fs)\n",
                (long long)json_integer_value(json_object_get(j, "step")),
                (long long)json_integer_value(json_object_get(j, "of")),
                json_string_value(json_object_get(j, "action")), obj ? obj : "",
                obj ? ": " : "", json_string_value(json_object_get(j, "summary")),
                json_string_value(json_object_get(j, "result")),
                json_number_value(json_object_get(j, "seconds")));
    } else { /* any other event: its name and its fields */
        const char *k;
        json_t *v;
        fprintf(t->to, "kvreconcile: %s", ev ? ev : "event");
        json_object_foreach(j, k, v)
        {
            char *s;
            if (!strcmp(k, "event") || !strcmp(k, "time") || !strcmp(k, "elapsed"))
                continue;
            s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(t->to, " %s=%s", k, s ? s : json_string_value(v));
            free(s);
        }
        fputc('\n', t->to);
    }
    fflush(t->to);
    json_decref(j);
    t->len = 0;
}

static ssize_t tee_write(void *cookie, const char *buf, size_t size)
{
    tee *t = cookie;
    for (size_t i = 0; i < size; i++) {
        if (buf[i] == '\n' || t->len + 1 >= sizeof(t->line)) {
            tee_line(t);
            if (buf[i] == '\n')
                continue;
        }
        t->line[t->len++] = buf[i];
    }
    return (ssize_t)size;
}

static int tee_close(void *cookie)
{
    tee *t = cookie;
    if (t->len)
        tee_line(t);
    free(t);
    return 0;
}

FILE *cli_metrics_log(FILE *to, bool json)
{
    cookie_io_functions_t io = {NULL, tee_write, NULL, tee_close};
    tee *t;
    FILE *f;
    if (!M.on || !(t = calloc(1, sizeof(*t))))
        return NULL;
    t->to = to;
    t->json = json;
    if (!(f = fopencookie(t, "w", io))) {
        free(t);
        return NULL;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

/* ---- exposition ----------------------------------------------------------------------------- */

static void label_value(FILE *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(b, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", b);
        else
            fputc(*s, b);
    }
}

static void render(FILE *b)
{
    pthread_mutex_lock(&M.mu);
    fprintf(b, "# HELP kvreconcile_runs_total Runs of watch, by result.\n"
                     "# TYPE kvreconcile_runs_total counter\n");
    for (size_t i = 0; i < NRESULTS; i++)
        fprintf(b, "kvreconcile_runs_total{result=\"%s\"} %llu\n", RESULTS[i], M.runs[i]);
    fprintf(b, "# HELP kvreconcile_run_duration_seconds How long runs took.\n"
                     "# TYPE kvreconcile_run_duration_seconds histogram\n");
    for (size_t i = 0; i < NBUCKETS; i++)
        fprintf(b, "kvreconcile_run_duration_seconds_bucket{le=\"%g\"} %llu\n", BUCKETS[i],
                      M.buckets[i]);
    fprintf(b,
                  "kvreconcile_run_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                  "kvreconcile_run_duration_seconds_sum %.6f\n"
                  "kvreconcile_run_duration_seconds_count %llu\n",
                  M.dur_count, M.dur_sum, M.dur_count);
    fprintf(b, "# HELP kvreconcile_steps_total Steps run, by step kind and result.\n"
                     "# TYPE kvreconcile_steps_total counter\n");
    for (size_t i = 0; i < M.nsteps; i++) {
        fprintf(b, "kvreconcile_steps_total{kind=\"");
        label_value(b, M.steps[i].kind);
        fprintf(b, "\",result=\"");
        label_value(b, M.steps[i].result);
        fprintf(b, "\"} %llu\n", M.steps[i].n);
    }
    fprintf(b, "# HELP kvreconcile_gates_waiting Closed gates the last run waited for, by "
                     "kind.\n"
                     "# TYPE kvreconcile_gates_waiting gauge\n");
    for (size_t i = 0; i < NGATES; i++)
        fprintf(b, "kvreconcile_gates_waiting{kind=\"%s\"} %g\n", GATES[i], M.gates[i]);
    fprintf(b,
                  "# HELP kvreconcile_drift_found_total Runs that found the estate differing from "
                  "the desired state.\n"
                  "# TYPE kvreconcile_drift_found_total counter\n"
                  "kvreconcile_drift_found_total %llu\n"
                  "# HELP kvreconcile_drift_steps Steps the last run's first plan had.\n"
                  "# TYPE kvreconcile_drift_steps gauge\n"
                  "kvreconcile_drift_steps %g\n",
                  M.drift, M.drift_steps);
    fprintf(b,
                  "# HELP kvreconcile_last_success_timestamp_seconds When a run last did all it "
                  "could (converged, or blocked only at gates).\n"
                  "# TYPE kvreconcile_last_success_timestamp_seconds gauge\n"
                  "kvreconcile_last_success_timestamp_seconds %.0f\n",
                  M.last_success);
    fprintf(b,
                  "# HELP kvreconcile_lease_held 1 while this process holds the estate's lease.\n"
                  "# TYPE kvreconcile_lease_held gauge\n"
                  "kvreconcile_lease_held %d\n",
                  M.lease);
    if (M.leader >= 0)
        fprintf(b,
                      "# HELP kvreconcile_leader 1 while this replica leads (holds the leader "
                      "lease).\n"
                      "# TYPE kvreconcile_leader gauge\n"
                      "kvreconcile_leader %d\n",
                      M.leader);
    pthread_mutex_unlock(&M.mu);
}

/* ---- the server ----------------------------------------------------------------------------- */

static void reply(int fd, const char *status, const char *type, const char *body, size_t n,
                  bool head)
{
    char hdr[256];
    int hn = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, type, n);
    if (send(fd, hdr, (size_t)hn, MSG_NOSIGNAL) < 0)
        return;
    for (size_t off = 0; !head && off < n;) {
        ssize_t w = send(fd, body + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void serve(int fd)
{
    char req[REQ_MAX + 1], method[8] = "", path[256] = "";
    size_t n = 0;
    bool head;
    /* the request line and headers, within 2 s and REQ_MAX bytes */
    while (n < REQ_MAX && !memmem(req, n, "\r\n\r\n", 4) && !memmem(req, n, "\n\n", 2)) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&p, 1, 2000) <= 0)
            return;
        if ((r = recv(fd, req + n, REQ_MAX - n, 0)) <= 0)
            return;
        n += (size_t)r;
    }
    req[n] = '\0';
    if (sscanf(req, "%7s %255s", method, path) != 2) {
        reply(fd, "400 Bad Request", "text/plain", "bad request\n", 12, false);
        return;
    }
    path[strcspn(path, "?")] = '\0';
    head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        reply(fd, "405 Method Not Allowed", "text/plain", "GET only\n", 9, false);
    } else if (strcmp(path, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *b = open_memstream(&text, &len);
        if (b) {
            render(b);
            fclose(b);
        }
        if (b && text)
            reply(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text, len, head);
        else
            reply(fd, "500 Internal Server Error", "text/plain", "out of memory\n", 14, head);
        free(text);
    } else if (strcmp(path, "/healthz") == 0) {
        reply(fd, "200 OK", "text/plain", "ok\n", 3, head);
    } else {
        reply(fd, "404 Not Found", "text/plain", "not found\n", 10, head);
    }
}

static void *server_loop(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{M.fd, POLLIN, 0}, {M.wake[0], POLLIN, 0}};
        int c;
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        if ((c = accept4(M.fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        serve(c);
        close(c);
    }
    return NULL;
}

int cli_metrics_start(const char *addr)
{
    char host[256] = "127.0.0.1", port[16];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *ai = NULL;
    int rc, one = 1;

    if (colon) {
        size_t hl = (size_t)(colon - addr);
        if (hl >= sizeof(host)) {
            cli_error("--metrics-addr: host too long");
            return -1;
        }
        if (hl) {
            memcpy(host, addr, hl);
            host[hl] = '\0';
        }
        if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') { /* [::1]:9090 */
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
        snprintf(port, sizeof(port), "%s", colon + 1);
    } else {
        snprintf(port, sizeof(port), "%s", addr);
    }
    if (!port[0] || strspn(port, "0123456789") != strlen(port)) {
        cli_error("--metrics-addr: '%s' is not HOST:PORT (e.g. 127.0.0.1:9090, or :9090)", addr);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
        cli_error("--metrics-addr '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    M.fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (M.fd >= 0)
        setsockopt(M.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (M.fd < 0 || bind(M.fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(M.fd, 16) < 0) {
        cli_error("--metrics-addr '%s': cannot listen: %s", addr, strerror(errno));
        freeaddrinfo(ai);
        if (M.fd >= 0)
            close(M.fd);
        M.fd = -1;
        return -1;
    }
    freeaddrinfo(ai);
    if (pipe(M.wake) < 0 || pthread_create(&M.thread, NULL, server_loop, NULL) != 0) {
        cli_error("--metrics-addr: cannot start the metrics server");
        close(M.fd);
        M.fd = -1;
        return -1;
    }
    M.on = true;
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char h[256] = "", s[16] = "";
        if (getsockname(M.fd, (struct sockaddr *)&ss, &sl) == 0)
            getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), s, sizeof(s),
                        NI_NUMERICHOST | NI_NUMERICSERV);
        fprintf(stderr, "kvreconcile: metrics on http://%s%s%s:%s/metrics\n",
                strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "", s);
        fflush(stderr);
    }
    return 0;
}

void cli_metrics_stop(void)
{
    if (!M.on)
        return;
    if (write(M.wake[1], "x", 1) < 0) {
        /* cannot happen with an empty pipe; the thread ends with the process */
    }
    pthread_join(M.thread, NULL);
    close(M.fd);
    close(M.wake[0]);
    close(M.wake[1]);
    M.fd = M.wake[0] = M.wake[1] = -1;
    M.on = false;
}
