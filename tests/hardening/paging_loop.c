/*
 * Driver of paging_loop.sh (issue #18): lists URL through kvr_auth_list with a client-secret
 * credential from AUTHORITY, and succeeds when the listing ends with the loop error ("leads back
 * to page") rather than after the 10,000-page cap. Prints the error message.
 * usage: paging_loop AUTHORITY URL
 */
#include <stdio.h>
#include <string.h>

#include "kvr/azure.h"

int main(int argc, char **argv)
{
    kvr_http *http = NULL;
    kvr_auth *auth = NULL;
    kvr_auth_config cfg = {0};
    kvr_http_request q = {0};
    json_t *items = NULL;
    kvr_error err;
    int rc, status = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: paging_loop AUTHORITY URL\n");
        return 2;
    }
    cfg.tenant_id = "00000000-0000-0000-0000-000000000001";
    cfg.client_id = "00000000-0000-0000-0000-000000000002";
    cfg.client_secret = "not-a-secret";
    cfg.authority_host = argv[1];
    if (kvr_http_new(&http, NULL, &err) < 0 || kvr_auth_new(&auth, http, &cfg, &err) < 0) {
        fprintf(stderr, "paging_loop: %s\n", err.message);
        goto done;
    }
    q.method = "GET";
    q.url = argv[2];
    rc = kvr_auth_list(&items, auth, "https://management.azure.com/.default", &q, "list loop",
                       &err);
    printf("%s\n", rc < 0 ? err.message : "the listing ended without an error");
    status = rc == KVR_EPROTO && strstr(err.message, "leads back to page") ? 0 : 1;
done:
    json_decref(items);
    kvr_auth_free(auth);
    kvr_http_free(http);
    return status;
}
