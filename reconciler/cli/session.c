/*
 * The start that plan and apply share: load and check the desired state, then connect to the
 * clouds it names with the credential the environment gives. Kept here so that both commands
 * report problems the same way.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_session_load(cli_session *s, const char *const *paths, size_t npaths,
                     const char *unchanged)
{
    kvr_diags diags;
    int rc = -1;

    memset(s, 0, sizeof(*s));
    kvr_diags_init(&diags);
    if (kvr_model_load_with(&s->e, paths, npaths, cli_model_options(), &diags) < 0) {
        kvr_diags_print(&diags, stderr);
        fprintf(stderr, "%zu %s; %s\n", diags.len + diags.dropped,
                diags.len + diags.dropped == 1 ? "error" : "errors", unchanged);
        goto done;
    }
    s->subscription = s->e->subscription ? s->e->subscription : getenv("AZURE_SUBSCRIPTION_ID");
    rc = 0;
done:
    kvr_diags_release(&diags);
    if (rc < 0)
        cli_session_close(s);
    return rc;
}

int cli_session_open(cli_session *s, const char *const *paths, size_t npaths,
                     const char *unchanged)
{
    kvr_auth_config acfg;
    kvr_error err;

    if (cli_session_load(s, paths, npaths, unchanged) < 0)
        return -1;
    kvr_auth_config_from_env(&acfg);
    if (kvr_endpoints_resolve(&s->ep, &s->e->cloud, &err) < 0 ||
        kvr_http_new(&s->http, NULL, &err) < 0 || kvr_auth_new(&s->auth, s->http, &acfg, &err) < 0) {
        cli_error("%s", err.message);
        cli_session_close(s);
        return -1;
    }
    return 0;
}

void cli_session_close(cli_session *s)
{
    kvr_auth_free(s->auth);
    kvr_http_free(s->http);
    kvr_endpoints_release(&s->ep);
    kvr_estate_free(s->e);
    memset(s, 0, sizeof(*s));
}

int cli_log_format(bool *json, const char *arg)
{
    if (strcmp(arg, "json") == 0 || strcmp(arg, "text") == 0) {
        *json = strcmp(arg, "json") == 0;
        return 0;
    }
    cli_error("unknown log format '%s' (text or json)", arg);
    return -1;
}

void cli_progress(bool json, bool quiet, const char *event, json_t *fields, const char *fmt, ...)
{
    va_list ap;
    if (quiet) {
        json_decref(fields);
        return;
    }
    if (json) {
        char now[KVR_TIME_ISO_MAX], *line;
        json_t *j = fields ? fields : json_object();
        kvr_time_iso(now, sizeof(now), (int64_t)time(NULL));
        json_object_set_new(j, "time", json_string(now));
        json_object_set_new(j, "event", json_string(event));
        if ((line = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS))) {
            fprintf(stderr, "%s\n", line);
            free(line);
        }
        json_decref(j);
    } else {
        json_decref(fields);
        fputs("kvreconcile: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    fflush(stderr);
}
