#!/usr/bin/env bash
# azsim throughput: authenticated Key Vault GETs per second with keep-alive, throttling off.
# Builds a release (no sanitizer) tree in build-bench/ and prints the figures and the machine.
# usage: tests/bench/run_azsim.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
# sanitizers off explicitly: a cached KVR_SANITIZE=ON would measure ASan, not azsim
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKVR_BENCH=ON -DKVR_SANITIZE=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target azsim bench_azsim >/dev/null
. tests/e2e/lib.sh # azsim on a free port (stopped on exit), tokens, a vault
e2e_init
azsim_start build-bench/bin/azsim --throttle off
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
azsim_vault rg-bench kv-bench
export BENCH_VAULT_URL="https://kv-bench.vault.localhost:$AZSIM_PORT"
curl -sS --cacert "$AZSIM_CA" -X PUT "$BENCH_VAULT_URL/secrets/bench?api-version=7.5" -H "Authorization: Bearer $kv" \
    -H 'Content-Type: application/json' -d '{"value":"bench"}' >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
build-bench/bin/bench_azsim "${1:-20000}" "${2:-16}"
