/*
 * apply and watch run the executor the same way: a marker key for this run, the Azure provider
 * over the session's connection, the executor, and nothing left behind.
 */
#include "cli.h"

#include "kvr/apply.h"
#include "kvr/providers.h"

int cli_apply_run(kvr_apply_result *out, const cli_session *s, const kvr_apply_options *ao,
                  kvr_error *err)
{
    kvr_marker_key mk; /* one per run: the provider's markers compare with the desired ones */
    kvr_provider *p = NULL;
    int rc = kvr_marker_key_init(&mk, err);
    if (rc == 0 && (rc = kvr_azure_provider_new(&p, s->auth, &s->ep, &mk, err)) == 0 &&
        (rc = cli_lock_guard(&p, err)) == 0) /* nothing starts once the estate's lease is lost */
        rc = kvr_apply(out, p, &mk, s->e, s->subscription, ao, err);
    kvr_provider_free(p);
    kvr_marker_key_wipe(&mk);
    return rc;
}
