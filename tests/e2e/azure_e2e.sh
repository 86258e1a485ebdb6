#!/usr/bin/env bash
# End-to-end check of the Azure client layer (HTTP engine, credentials, Key Vault challenge,
# paging, throttling, errors) against a private azsim. Usage: azure_e2e.sh AZSIM TEST_PROGRAM
set -u
azsim=$1
prog=$2
if [ ! -x "$azsim" ] || [ ! -x "$prog" ]; then
    echo "azure_e2e: '$azsim' or '$prog' is not built"; exit 1
fi
dir=$(mktemp -d /tmp/kvr-azure-e2e.XXXXXX)
"$azsim" --data "$dir" --port 0 >"$dir/azsim.out" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    grep -q '^azsim ready ' "$dir/azsim.out" 2>/dev/null && break
    sleep 0.1
done
if ! grep -q '^azsim ready ' "$dir/azsim.out"; then
    echo "azure_e2e: azsim did not start:"; cat "$dir/azsim.out"; exit 1
fi
# shellcheck disable=SC1091
. "$dir/azsim.env"
AZSIM_DATA=$dir "$prog" || exit 1

# Concurrency and the per-host cap, measured against a second azsim that answers every request
# after 200 ms (it serves each connection on its own thread).
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
rm -rf "$dir"; mkdir -p "$dir"
"$azsim" --data "$dir" --port 0 --latency-ms 200 >"$dir/azsim.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^azsim ready ' "$dir/azsim.out" 2>/dev/null && break
    sleep 0.1
done
# shellcheck disable=SC1091
. "$dir/azsim.env"
AZSIM_DATA=$dir KVR_E2E_MODE=latency "$prog"
