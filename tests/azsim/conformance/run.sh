#!/usr/bin/env bash
# Starts azsim on a free loopback port, runs the SDK conformance tests against it, stops it.
# usage: run.sh AZSIM_BINARY
set -euo pipefail
azsim=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT
cd "$here"
if [ ! -d node_modules/@azure/keyvault-keys ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
"$azsim" --data "$data" --port 0 >"$data/out" 2>"$data/err" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^azsim ready ' "$data/out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/err"; echo "azsim did not start"; exit 1; }
    sleep 0.1
done
grep -q '^azsim ready ' "$data/out" || { echo "azsim not ready after 10s"; exit 1; }
set -a
. "$data/azsim.env"
set +a
NODE_EXTRA_CA_CERTS="$AZSIM_CA" node --test --test-reporter=spec conformance.test.mjs
