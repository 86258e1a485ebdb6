/*
 * azsim_main.c - entry point of azsim: parses the command line, prepares the --data directory (CA,
 * token signing key, backup key), creates the tenant, the subscription and the bootstrap
 * principal, and hands over to the HTTPS server until SIGTERM. Startup ends by writing
 * DIR/azsim.env and printing the single "azsim ready URL" line that test harnesses wait for.
 */
#include "azsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: azsim --data DIR [--port N] [--rbac-delay SECONDS] [--throttle on|off]\n"
               "             [--durable on|off] [--data-keys N] [--rewrap-rate N]\n"
               "             [--subscription GUID]\n"
               "             [--latency-ms N] [--seed N] [--fault-rate P] [--fault-kinds LIST]\n"
               "             [--stall-ms N] [--arm-async N] [--strict-api-versions]\n"
               "             [--directory-delay SECONDS]\n");
}

static int parse_long(long *out, const char *s, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < min || v > max)
        return AZSIM_EINVAL;
    *out = v;
    return AZSIM_OK;
}

void azsim_state_release(azsim_state *st)
{
    for (size_t i = 0; i < st->apps.n; i++)
        azsim_app_free(st->apps.items[i]);
    for (size_t i = 0; i < st->deleted_apps.n; i++)
        azsim_app_free(st->deleted_apps.items[i]);
    for (size_t i = 0; i < st->sps.n; i++) {
        azsim_sp *sp = st->sps.items[i];
        free(sp->display_name);
        free(sp);
    }
    for (size_t i = 0; i < st->assignments.n; i++)
        azsim_role_assignment_free(st->assignments.items[i]);
    for (size_t i = 0; i < st->rgs.n; i++) {
        azsim_rg *rg = st->rgs.items[i];
        free(rg->sub);
        free(rg->name);
        free(rg->location);
        json_decref(rg->tags);
        free(rg);
    }
    for (size_t i = 0; i < st->vaults.n; i++)
        azsim_vault_free(st->vaults.items[i]);
    azsim_arm_operations_free(st);
    azsim_dependents_release();
    azsim_jwt_verified_release();
    free(st->apps.items);
    free(st->deleted_apps.items);
    free(st->sps.items);
    free(st->assignments.items);
    free(st->rgs.items);
    free(st->vaults.items);
    free(st->vault_slots);
    json_decref(st->stats);
    EVP_PKEY_free(st->sign_key);
    OPENSSL_cleanse(st->backup_key, sizeof(st->backup_key));
    free(st->data_dir);
    pthread_mutex_destroy(&st->lock);
}

int main(int argc, char **argv)
{
    azsim_state st;
    long port = 0, delay = 5, latency = 0, seed = 0, stall = 90000;
    const char *data = NULL;
    char *cert = NULL, *key = NULL;
    int rc = 1, loaded = 0;
    long data_keys = 50, rewrap_rate = 10;
    const char *subscription = NULL;

    azsim_signals_setup();
    memset(&st, 0, sizeof(st));
    pthread_mutex_init(&st.lock, NULL);
    st.throttle = 1;
    st.fault_kinds = (1u << AZSIM_FAULT_KINDS) - 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            rc = 0;
            goto done;
        }
        if (strcmp(a, "--strict-api-versions") == 0) {
            st.strict_api_versions = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "azsim: option '%s' needs a value\n", a);
            usage(stderr);
            goto done;
        }
        i++;
        if (strcmp(a, "--data") == 0) {
            data = v;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_long(&port, v, 0, 65535) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid port '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--rbac-delay") == 0) {
            if (parse_long(&delay, v, 0, 86400) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid rbac delay '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--directory-delay") == 0) {
            long d = 0;
            if (parse_long(&d, v, 0, 86400) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid directory delay '%s'\n", v);
                goto done;
            }
            st.directory_delay = (int)d;
        } else if (strcmp(a, "--throttle") == 0) {
            if (strcmp(v, "on") == 0) {
                st.throttle = 1;
            } else if (strcmp(v, "off") == 0) {
                st.throttle = 0;
            } else {
                fprintf(stderr, "azsim: invalid throttle '%s' (expected 'on' or 'off')\n", v);
                goto done;
            }
        } else if (strcmp(a, "--durable") == 0) {
            /* off: bulk seeding, where a save per mutation (O(state) each) would not finish */
            if (strcmp(v, "on") == 0) {
                st.lazy_save = 0;
            } else if (strcmp(v, "off") == 0) {
                st.lazy_save = 1;
            } else {
                fprintf(stderr, "azsim: invalid durable '%s' (expected 'on' or 'off')\n", v);
                goto done;
            }
        } else if (strcmp(a, "--data-keys") == 0) {
            if (parse_long(&data_keys, v, 1, 100000) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid data key count '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--rewrap-rate") == 0) {
            if (parse_long(&rewrap_rate, v, 1, 1000000) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid re-wrap rate '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--subscription") == 0) {
            if (strlen(v) != AZSIM_GUID_LEN) {
                fprintf(stderr, "azsim: invalid subscription id '%s' (a GUID)\n", v);
                goto done;
            }
            subscription = v;
        } else if (strcmp(a, "--latency-ms") == 0) {
            if (parse_long(&latency, v, 0, 600000) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid latency '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--fault-rate") == 0) {
            char *end = NULL;
            double p = strtod(v, &end);
            if (!*v || *end || !(p >= 0 && p <= 1)) {
                fprintf(stderr, "azsim: invalid fault rate '%s' (expected 0 to 1)\n", v);
                goto done;
            }
            st.fault_rate = p;
        } else if (strcmp(a, "--fault-kinds") == 0) {
            if (azsim_fault_parse_kinds(&st.fault_kinds, v) != AZSIM_OK) {
                fprintf(stderr,
                        "azsim: invalid fault kinds '%s' (expected 'all' or a comma-separated "
                        "list of 500, 503, 429, reset, stall, reset-after-commit)\n",
                        v);
                goto done;
            }
        } else if (strcmp(a, "--stall-ms") == 0) {
            if (parse_long(&stall, v, 0, 3600000) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid stall '%s'\n", v);
                goto done;
            }
        } else if (strcmp(a, "--arm-async") == 0) {
            long polls = 0;
            if (parse_long(&polls, v, 0, 1000) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid arm-async poll count '%s'\n", v);
                goto done;
            }
            st.arm_async = (int)polls;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_long(&seed, v, 0, 0x7fffffffL) != AZSIM_OK) {
                fprintf(stderr, "azsim: invalid seed '%s'\n", v);
                goto done;
            }
            st.seeded = 1;
            st.rng = (uint64_t)seed;
        } else {
            fprintf(stderr, "azsim: unknown option '%s'\n", a);
            usage(stderr);
            goto done;
        }
    }
    if (!data) {
        fprintf(stderr, "azsim: missing required option '--data'\n");
        usage(stderr);
        goto done;
    }
    if (mkdir(data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "azsim: cannot create data directory '%s': %s\n", data, strerror(errno));
        goto done;
    }
    st.data_dir = realpath(data, NULL); /* azsim.env must name files by absolute path */
    st.rbac_delay = (int)delay;
    st.stall_ms = (int)stall;
    if (st.seeded) {
        st.fault_seed = (uint64_t)seed;
    } else {
        unsigned char b[8];
        azsim_random(&st, b, sizeof(b));
        memcpy(&st.fault_seed, b, sizeof(b));
    }
    st.latency_ms = (int)latency;
    st.stats = json_object();
    if (!st.data_dir || !st.stats)
        goto done;
    if (azsim_pki_setup(&cert, &key, data) != AZSIM_OK) {
        fprintf(stderr, "azsim: cannot set up the local ca in '%s'\n", data);
        goto done;
    }
    if (azsim_signing_key_load(&st) != AZSIM_OK || azsim_backup_key_load(&st) != AZSIM_OK)
        goto done;
    if (azsim_consumer_init(&st, (size_t)data_keys, (double)rewrap_rate) != AZSIM_OK)
        goto done;
    if (azsim_state_load(&st, &loaded) != AZSIM_OK)
        goto done;
    if (!loaded) {
        azsim_guid(&st, st.tenant);
        azsim_guid(&st, st.subscription);
        if (subscription)
            snprintf(st.subscription, sizeof(st.subscription), "%s", subscription);
    }
    int changed = !loaded;
    /* a saved state whose bootstrap app was deleted, or lost its secrets, gets them back */
    if (!st.bootstrap) {
        if (azsim_directory_bootstrap(&st) != AZSIM_OK) {
            fprintf(stderr, "azsim: cannot create the bootstrap principal\n");
            goto done;
        }
        changed = 1;
    }
    int64_t now = azsim_now(&st);
    if (st.bootstrap->passwords.n == 0) {
        if (!azsim_password_new(&st, st.bootstrap, "bootstrap", now - 60, now + 2 * 365 * 86400LL))
            goto done;
        changed = 1;
    }
    /* The initial state on disk before the ready line: killed before its first write, azsim
       comes back as the same tenant, subscription and bootstrap principal (issue #18). A state
       loaded unchanged is on disk already (a save of the 400-vault bench state took 1.5 s). */
    if (changed && azsim_state_save(&st) != AZSIM_OK)
        goto done;
    if (azsim_serve(&st, (int)port, cert, key) == AZSIM_OK && azsim_state_save(&st) == AZSIM_OK)
        rc = 0;
done:
    free(cert);
    azsim_secret_free(key);
    azsim_consumer_free(st.consumer);
    st.consumer = NULL;
    azsim_state_release(&st);
    return rc;
}
