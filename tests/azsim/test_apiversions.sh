#!/usr/bin/env bash
# azsim's api-versions: every version listed in azsim_apiversions.c (taken from Azure's REST specs)
# is served for its operation; a version Azure never published gets Azure's error (ARM's 400
# InvalidApiVersionParameter naming the supported versions newest first, Key Vault's 400
# BadParameter); a date version newer than every listed one is served by default and refused with
# --strict-api-versions. Usage: test_apiversions.sh PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_apiversions.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
SRC=$(dirname "$0")/azsim_apiversions.c

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-apiversions

start() { # start NAME ARGS...: a fresh azsim with its own data directory; sources its azsim.env
    local name=$1
    shift
    if [ -n "$AZSIM_PID" ]; then
        kill -TERM "$AZSIM_PID"
        wait "$AZSIM_PID" 2>/dev/null || true
        AZSIM_PID=
    fi
    "$AZSIM_BIN" --data "$DATA/$name" --port 0 "$@" >"$WORK/stdout.$name" 2>"$WORK/stderr.$name" &
    AZSIM_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^azsim ready ' "$WORK/stdout.$name" 2>/dev/null && break
        kill -0 "$AZSIM_PID" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC1090
    . "$DATA/$name/azsim.env"
    MT=$(token "$KVR_ARM_ENDPOINT")
    VT=$(token "https://vault.localhost:$AZSIM_PORT")
    SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
}
token() {
    curl -sS --cacert "$AZSIM_CA" -X POST "$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        -d grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
        --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$1/.default" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
# the versions of one list of the table, oldest first
versions() {
    "$PY" - "$SRC" "$1" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
m = re.search(r"static const char \*const " + sys.argv[2] + r"\[\] = \{(.*?)NULL\}", src, re.S)
print(" ".join(re.findall(r'"([^"]+)"', m.group(1))))
EOF
}

start default
VAULT="$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kvapi1"
RA="$SUB/providers/Microsoft.Authorization/roleAssignments"
req PUT "$SUB/resourcegroups/rg1?api-version=2025-04-01" '{"location":"westeurope"}' "$MT"
is 201 || is 200 || fail "resource group" "$STATUS"
req PUT "$VAULT?api-version=2026-02-01" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true}}" "$MT"
is 200 && ok "vault PUT with 2026-02-01 (what @azure/arm-keyvault 5.0.0 sends)" || fail "vault PUT with 2026-02-01" "$STATUS $(head -c 300 "$WORK/body")"
# every listed version, per operation
bad=""
for v in $(versions RESOURCE_GROUPS); do
    req GET "$SUB/resourcegroups/rg1?api-version=$v" "" "$MT"
    is 200 || bad="$bad $v"
done
[ -z "$bad" ] && ok "resource groups: every listed version ($(versions RESOURCE_GROUPS | wc -w))" || fail "resource groups refused" "$bad"
bad=""
for v in $(versions VAULTS); do
    req GET "$VAULT?api-version=$v" "" "$MT"
    is 200 || bad="$bad $v"
    req GET "$SUB/providers/Microsoft.KeyVault/deletedVaults?api-version=$v" "" "$MT"
    is 200 || bad="$bad deleted:$v"
done
[ -z "$bad" ] && ok "vaults and deleted vaults: every listed version ($(versions VAULTS | wc -w))" || fail "vaults refused" "$bad"
bad=""
for v in $(versions ROLE_ASSIGNMENTS); do
    req GET "$RA?api-version=$v" "" "$MT"
    is 200 || bad="$bad $v"
done
[ -z "$bad" ] && ok "role assignments: every listed version ($(versions ROLE_ASSIGNMENTS | wc -w))" || fail "role assignments refused" "$bad"
KV="https://kvapi1.vault.localhost:$AZSIM_PORT"
bad=""
for v in $(versions KEYVAULT); do
    req GET "$KV/secrets?api-version=$v" "" "$VT"
    is 200 || bad="$bad $v"
done
[ -z "$bad" ] && ok "key vault data plane: every listed version ($(versions KEYVAULT | wc -w))" || fail "key vault refused" "$bad"

# versions Azure never published: Azure's errors
LOCS=$("$PY" - "$(dirname "$0")/azsim_certs.c" <<'EOF'
import re, sys
print(", ".join(re.findall(r'\{"([a-z0-9]+)", "[a-z]+", "[^"]+"\}', open(sys.argv[1]).read())))
EOF
)
req GET "$VAULT?api-version=2023-08-15" "" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = NoRegisteredProviderFound ] &&
    [ "$(j 'b["error"]["message"]')" = "No registered resource provider found for location 'westeurope' and API version '2023-08-15' for type 'vaults'. The supported api-versions are '$(versions VAULTS | sed 's/ /, /g')'. The supported locations are '$LOCS'." ] &&
    ok "vaults: unknown version is 400 NoRegisteredProviderFound (vault's location, versions oldest first)" ||
    fail "vaults: unknown old version" "$STATUS $(head -c 400 "$WORK/body")"
req GET "$SUB/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/kvapi1?api-version=2019-01-01" "" "$MT"
is 400 && [[ "$(j 'b["error"]["message"]')" == "No registered resource provider found for location 'westeurope' and API version '2019-01-01' for type 'locations/deletedVaults'."* ]] &&
    ok "deleted vaults: the type is 'locations/deletedVaults'" || fail "deleted vaults: unknown version" "$STATUS $(head -c 300 "$WORK/body")"
req GET "$RA?api-version=2019-01-01" "" "$MT"
is 404 && [ "$(j 'b["error"]["code"]')" = InvalidResourceType ] &&
    [ "$(j 'b["error"]["message"]')" = "The resource type 'roleAssignments' could not be found in the namespace 'Microsoft.Authorization' for api version '2019-01-01'. The supported api-versions are '$(versions ROLE_ASSIGNMENTS | tr ' ' ',')'." ] &&
    ok "role assignments: unknown version is 404 InvalidResourceType" || fail "role assignments: unknown old version" "$STATUS $(head -c 300 "$WORK/body")"
req GET "$SUB/resourcegroups/rg1?api-version=2023-08-15" "" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = InvalidApiVersionParameter ] &&
    [ "$(j 'b["error"]["message"]')" = "The api-version '2023-08-15' is invalid. The supported versions are '$(versions RESOURCE_GROUPS | tr ' ' '\n' | tac | paste -sd,)'." ] &&
    ok "resource groups: unknown version is 400 InvalidApiVersionParameter, supported newest first" ||
    fail "resource groups: unknown version" "$STATUS $(head -c 300 "$WORK/body")"
req GET "$SUB/resourcegroups/rg1?api-version=banana" "" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = InvalidApiVersionParameter ] && ok "resource groups: malformed version is 400" || fail "resource groups: malformed version" "$STATUS"
req GET "$SUB/resourcegroups/rg1" "" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = MissingApiVersionParameter ] && ok "resource groups: missing version is 400 MissingApiVersionParameter" || fail "missing version" "$STATUS"
req GET "$KV/secrets?api-version=7.7" "" "$VT"
is 400 && [ "$(j 'b["error"]["code"]')" = BadParameter ] &&
    [ "$(j 'b["error"]["message"]')" = "The specified version (7.7) is not recognized. Consider using the latest supported version (2026-04-01)." ] &&
    ok "key vault: unknown version is 400 BadParameter naming the latest stable version" ||
    fail "key vault: unknown version" "$STATUS $(head -c 300 "$WORK/body")"
req GET "$KV/secrets?api-version=2025-06-01" "" "$VT"
is 400 && ok "key vault: 2025-06-01 (only -preview was published) is 400" || fail "key vault: 2025-06-01" "$STATUS"

# newer than the table: served by default
req GET "$VAULT?api-version=2099-01-01" "" "$MT"
is 200 && [ "$(j 'b["name"]')" = kvapi1 ] && ok "vaults: a newer version (2099-01-01) is served with the newest shapes" || fail "vaults: newer version" "$STATUS"
req GET "$KV/secrets?api-version=2099-02-01-preview" "" "$VT"
is 200 && ok "key vault: a newer preview version is served" || fail "key vault: newer version" "$STATUS"

# --strict-api-versions: newer versions get Azure's error
start strict --strict-api-versions
VAULT="$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kvapi1"
req GET "$SUB/resourcegroups/rg1?api-version=2099-01-01" "" "$MT"
is 400 && [ "$(j 'b["error"]["code"]')" = InvalidApiVersionParameter ] && ok "strict: a newer ARM version is 400 InvalidApiVersionParameter" || fail "strict: newer ARM version" "$STATUS"
req PUT "$SUB/resourcegroups/rg1?api-version=2025-04-01" '{"location":"westeurope"}' "$MT"
is 201 && ok "strict: a listed version is still served" || fail "strict: listed version" "$STATUS"
req PUT "$VAULT?api-version=2026-02-01" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true}}" "$MT"
req GET "https://kvapi1.vault.localhost:$AZSIM_PORT/secrets?api-version=2099-01-01" "" "$VT"
is 400 && [ "$(j 'b["error"]["code"]')" = BadParameter ] && ok "strict: a newer Key Vault version is 400 BadParameter" || fail "strict: newer Key Vault version" "$STATUS"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
