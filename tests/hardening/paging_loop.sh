#!/usr/bin/env bash
# A next link seen before ends a listing at once (issue #18): against a hostile HTTPS server on
# loopback whose listing links to itself (and, second case, loops over two pages), the listing
# stops with "leads back to page" after at most 3 GETs; before the fix it ran to the
# 10,000-page cap (446 s against Azure's latency). The generic lister through a driver, then
# kvreconcile plan's reader on a vault whose key list links to itself.
# usage: paging_loop.sh PAGING_LOOP_DRIVER KVRECONCILE
set -euo pipefail
driver=$(realpath "$1")
kvr=$(realpath "$2")
. "$(dirname "$0")/hostile_lib.sh"
hostile_start

for path in self a; do
    : >"$work/log"
    set +e
    out=$("$driver" "https://localhost:$port" "https://localhost:$port/loop/$path" 2>&1)
    rc=$?
    set -e
    echo "     $out"
    gets=$(grep -c '^GET /loop/' "$work/log" || true)
    check "/loop/$path: stopped with the loop error" "$rc"
    check "/loop/$path: $gets GETs (at most 3)" "$([ "$gets" -le 3 ]; echo $?)"
done
# plan: the reader's key listing of vault kv-loop
mkdir "$work/cfg"
cat >"$work/cfg/estate.yaml" <<YAML
apiVersion: kvreconcile/v1
subscription: 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
vaults:
  - name: kv-loop
    resourceGroup: rg-loop
    location: westeurope
YAML
: >"$work/log"
set +e
out=$(env AZURE_TENANT_ID=00000000-0000-0000-0000-000000000001 \
    AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000002 AZURE_CLIENT_SECRET=not-a-secret \
    AZURE_AUTHORITY_HOST="https://login.localhost:$port" \
    KVR_ARM_ENDPOINT="https://management.localhost:$port" \
    KVR_GRAPH_ENDPOINT="https://graph.localhost:$port" KVR_VAULT_SUFFIX="vault.localhost:$port" \
    "$kvr" plan -f "$work/cfg" 2>&1)
rc=$?
set -e
echo "     $out"
gets=$(grep -c '^GET /keys' "$work/log" || true)
check "plan: exit 1 with the loop error" \
    "$([ $rc = 1 ] && grep -q "list keys of vault 'kv-loop': the next link of page 1 leads back to page 1" <<<"$out"; echo $?)"
check "plan: $gets key list GETs (at most 3, the challenge's included)" "$([ "$gets" -le 3 ]; echo $?)"
[ "$fails" = 0 ]
