#!/usr/bin/env bash
# Starts azsim on a free loopback port, runs the SDK conformance tests against it, stops it.
# usage: run.sh AZSIM_BINARY
#   default: the SDK versions pinned by package-lock.json (npm ci)
#   KVR_CONFORMANCE_LATEST=1: every package of package.json at the newest version the npm
#     registry serves now (@latest), installed into a scratch copy; the versions are printed. An
#     unreachable registry skips the run (exit 77); a failing test fails it, naming the versions.
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
if [ "${KVR_CONFORMANCE_LATEST:-0}" = 1 ]; then
    if ! timeout 60 npm view @azure/identity version >/dev/null 2>&1; then
        echo "conformance @latest: SKIPPED, the npm registry is not reachable"
        exit 77
    fi
    mapfile -t pkgs < <(node -e 'for (const p of Object.keys(require("./package.json").dependencies)) console.log(p)')
    mkdir "$data/latest"
    cp package.json conformance.test.mjs "$data/latest/"
    cd "$data/latest"
    timeout 600 npm install --no-audit --no-fund --loglevel=error --no-package-lock \
        "${pkgs[@]/%/@latest}" >/dev/null
    echo "conformance @latest, installed:"
    for p in "${pkgs[@]}"; do
        echo "  $p $(node -p "require('./node_modules/$p/package.json').version")"
    done
elif [ ! -d node_modules/@azure/keyvault-keys ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
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
if ! NODE_EXTRA_CA_CERTS="$AZSIM_CA" node --test --test-reporter=spec conformance.test.mjs; then
    if [ "${KVR_CONFORMANCE_LATEST:-0}" = 1 ]; then
        echo "conformance @latest: FAILED: a newer SDK release (versions above) breaks azsim;" \
            "fix azsim (tests/azsim/README.md, api-versions), then update package-lock.json"
    fi
    exit 1
fi
