/*
 * azsim_apiversions.c - the one table of the api-versions azsim accepts, per Azure service it
 * serves, each list copied from the official REST specifications (Azure/azure-rest-api-specs) with
 * the spec path that names it. Azure answers a version it does not know with an error (ARM's 400
 * InvalidApiVersionParameter, Key Vault's 400 BadParameter), and so does azsim for a version older
 * than the newest listed or not in the date form. A well-formed date version newer than every
 * listed one is a release azsim has not caught up with yet: it is served with the newest known
 * shapes so the next SDK release does not break the simulator, unless --strict-api-versions asks
 * for Azure's error instead.
 */
#include "azsim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Oldest first, as the specs' folders sort. */

/* Microsoft.Resources resourceGroups: the tags of
 * specification/resources/resource-manager/Microsoft.Resources/resources/readme.md
 * (stable/<version>/resources.json; resource groups have no preview versions there). */
static const char *const RESOURCE_GROUPS[] = {
    "2015-11-01", "2016-02-01", "2016-07-01", "2016-09-01", "2017-05-10", "2018-02-01",
    "2018-05-01", "2019-03-01", "2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01",
    "2019-10-01", "2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01",
    "2022-09-01", "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01",
    "2025-04-01", NULL};

/* Microsoft.KeyVault vaults and deletedVaults: the stable/ and preview/ folders of
 * specification/keyvault/resource-manager/Microsoft.KeyVault/KeyVault/ (readme.md tags), plus the
 * versions of its TypeSpec main.tsp (enum Versions: 2025-05-01, 2026-02-01, 2026-03-01-preview,
 * 2026-05-15-preview) and preview/2026-04-01-preview/openapi.json. */
static const char *const VAULTS[] = {
    "2015-06-01",         "2016-10-01",         "2018-02-14-preview", "2018-02-14",
    "2019-09-01",         "2020-04-01-preview", "2021-04-01-preview", "2021-06-01-preview",
    "2021-10-01",         "2021-11-01-preview", "2022-02-01-preview", "2022-07-01",
    "2022-11-01",         "2023-02-01",         "2023-07-01",         "2024-04-01-preview",
    "2024-11-01",         "2024-12-01-preview", "2025-05-01",         "2026-02-01",
    "2026-03-01-preview", "2026-04-01-preview", "2026-05-15-preview", NULL};

/* Microsoft.Authorization roleAssignments: the folders holding
 * authorization-RoleAssignmentsCalls.json under
 * specification/authorization/resource-manager/Microsoft.Authorization/{stable,preview}/ (and
 * the same under .../Microsoft.Authorization/Authorization/, readme.md tags). */
static const char *const ROLE_ASSIGNMENTS[] = {
    "2015-07-01",         "2017-10-01-preview", "2018-01-01-preview", "2018-09-01-preview",
    "2020-03-01-preview", "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview",
    "2021-04-01-preview", "2022-01-01-preview", "2022-04-01",         NULL};

/* Key Vault data plane (keys, secrets, certificates; the service takes one version for all):
 * specification/keyvault/data-plane/Microsoft.KeyVault/{stable,preview}/ (2015-06-01 to
 * 7.6-preview.2; preview/7.1 is 7.1-preview), then the per-surface folders
 * data-plane/{Keys,Secrets,Certificates}/{stable,preview}/ (readme.md tags: 7.5, 7.6,
 * 2025-06-01-preview, 2025-07-01, and for Keys and Secrets 2026-01-01-preview and
 * 2026-03-01-preview, for Secrets 2026-05-01-preview and 2026-07-01-preview) and the TypeSpec
 * enums Versions of data-plane/{Secrets,Certificates}/main.tsp, with Keys/stable/2026-04-01/ and
 * Secrets/stable/2026-04-01/ (what @azure/keyvault-secrets 4.12.0 sends). */
static const char *const KEYVAULT[] = {"2015-06-01",
                                       "2016-10-01",
                                       "7.0-preview",
                                       "7.0",
                                       "7.1-preview",
                                       "7.1",
                                       "7.2-preview",
                                       "7.2",
                                       "7.3-preview",
                                       "7.3",
                                       "7.4-preview.1",
                                       "7.4",
                                       "7.5-preview.1",
                                       "7.5",
                                       "7.6-preview.1",
                                       "7.6-preview.2",
                                       "7.6",
                                       "2025-06-01-preview",
                                       "2025-07-01",
                                       "2026-01-01-preview",
                                       "2026-03-01-preview",
                                       "2026-04-01",
                                       "2026-05-01-preview",
                                       "2026-07-01-preview",
                                       NULL};

/* Microsoft.Resources subscriptions (Subscriptions_List, Subscriptions_Get): the folders of
 * specification/resources/resource-manager/Microsoft.Resources/subscriptions/stable/ holding
 * subscriptions.json. */
static const char *const SUBSCRIPTIONS[] = {"2015-11-01", "2016-06-01", "2018-06-01",
                                            "2019-06-01", "2019-11-01", "2020-01-01",
                                            "2021-01-01", "2022-12-01", NULL};

static const char *const *const TABLE[AZSIM_API_KINDS] = {
    [AZSIM_API_RESOURCE_GROUPS] = RESOURCE_GROUPS,
    [AZSIM_API_VAULTS] = VAULTS,
    [AZSIM_API_ROLE_ASSIGNMENTS] = ROLE_ASSIGNMENTS,
    [AZSIM_API_KEYVAULT] = KEYVAULT,
    [AZSIM_API_SUBSCRIPTIONS] = SUBSCRIPTIONS,
};

/* YYYYMMDD of "YYYY-MM-DD" or "YYYY-MM-DD-preview", else -1: only a version of this form can be
 * newer than the table. */
static long date_key(const char *v)
{
    static const char shape[] = "dddd-dd-dd";
    long key = 0;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd') {
            if (!isdigit((unsigned char)v[i]))
                return -1;
            key = key * 10 + (v[i] - '0');
        } else if (v[i] != shape[i]) {
            return -1;
        }
    }
    v += sizeof(shape) - 1;
    if (*v && strcmp(v, "-preview") != 0)
        return -1;
    if (key % 100 < 1 || key % 100 > 31 || key / 100 % 100 < 1 || key / 100 % 100 > 12)
        return -1;
    return key;
}

int azsim_api_version_check(const azsim_state *st, int api, const char *v)
{
    const char *const *list = TABLE[api];
    long newest = -1, key;
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(list[i], v) == 0)
            return AZSIM_API_KNOWN;
        key = date_key(list[i]);
        if (key > newest)
            newest = key;
    }
    key = date_key(v);
    if (st->strict_api_versions || key < 0 || key <= newest)
        return AZSIM_API_UNKNOWN;
    return AZSIM_API_NEWER;
}

char *azsim_api_version_list(int api, const char *sep, int newest_first)
{
    const char *const *list = TABLE[api];
    size_t n = 0, len = 1, o = 0;
    while (list[n]) {
        len += strlen(list[n]) + strlen(sep);
        n++;
    }
    char *out = malloc(len);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (size_t k = 0; k < n; k++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", k ? sep : "",
                              list[newest_first ? n - 1 - k : k]);
    return out;
}

const char *azsim_api_version_latest_stable(int api)
{
    const char *const *list = TABLE[api];
    const char *best = NULL;
    for (size_t i = 0; list[i]; i++)
        if (!strstr(list[i], "preview"))
            best = list[i];
    return best;
}
