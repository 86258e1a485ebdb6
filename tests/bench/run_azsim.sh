#!/usr/bin/env bash
# azsim throughput: authenticated Key Vault GETs per second with keep-alive, throttling off.
# Builds a release (no sanitizer) tree in build-bench/ and prints the figures and the machine.
# usage: tests/bench/run_azsim.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
# sanitizers off explicitly: a cached KVR_SANITIZE=ON would measure ASan, not azsim
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKVR_BENCH=ON -DKVR_SANITIZE=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target azsim bench_azsim >/dev/null
data=$(mktemp -d)
build-bench/bin/azsim --data "$data" --port 0 --throttle off >"$data/out" 2>"$data/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q '^azsim ready' "$data/out" 2>/dev/null && break; sleep 0.1; done
set -a; . "$data/azsim.env"; set +a
tok() { curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$AZSIM_PORT/$AZURE_TENANT_ID/oauth2/v2.0/token" \
    --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
    --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$1/.default" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
arm=$(tok "$KVR_ARM_ENDPOINT"); kv=$(tok "https://vault.localhost:$AZSIM_PORT")
base="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/rg-bench"
curl -sS --cacert "$AZSIM_CA" -X PUT "$base?api-version=2021-04-01" -H "Authorization: Bearer $arm" \
    -H 'Content-Type: application/json' -d '{"location":"westeurope"}' >/dev/null
curl -sS --cacert "$AZSIM_CA" -X PUT "$base/providers/Microsoft.KeyVault/vaults/kv-bench?api-version=2024-11-01" \
    -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' \
    -d "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true}}" >/dev/null
export BENCH_VAULT_URL="https://kv-bench.vault.localhost:$AZSIM_PORT"
curl -sS --cacert "$AZSIM_CA" -X PUT "$BENCH_VAULT_URL/secrets/bench?api-version=7.5" -H "Authorization: Bearer $kv" \
    -H 'Content-Type: application/json' -d '{"value":"bench"}' >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
build-bench/bin/bench_azsim "${1:-20000}" "${2:-16}"
