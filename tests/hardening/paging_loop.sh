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
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,DNS:login.localhost,DNS:management.localhost,DNS:graph.localhost,DNS:*.vault.localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
python3 "$here/hostile_server.py" "$work/cert.pem" "$work/key.pem" "$work/port" "$work/log" &
pid=$!
for _ in $(seq 1 100); do [ -f "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
export KVR_CA_FILE="$work/cert.pem"

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
