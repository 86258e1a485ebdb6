#!/usr/bin/env bash
# Export at estate scale (issue #16): the benchmark estate of run_estate.sh (seeded the same way),
# then, with azsim's latency and throttling on, `plan` of its YAML and `export --profiles` of the
# same estate, their wall time, requests and peak memory; then `plan` of what export wrote must
# say "No changes". Target: export takes no more than twice the time of plan. Not a test.
#
# usage: tests/bench/run_export.sh
# environment (defaults): VAULTS=200 KEYS=50 VERSIONS=3 SECRETS=200 ROLES=50 LATENCY=20
#   BUILD=build-C (a release tree with azsim and kvreconcile; SKIP_BUILD=1 uses it as it is)
#   ESTATE=DIR   keep the seeded estate in DIR and reuse it when DIR/sim exists
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
VAULTS=${VAULTS:-200} KEYS=${KEYS:-50} VERSIONS=${VERSIONS:-3} SECRETS=${SECRETS:-200}
ROLES=${ROLES:-50} LATENCY=${LATENCY:-20} BUILD=${BUILD:-build-C}
py=/usr/bin/python3
gen="$py $root/tests/bench/estate_gen.py"

if [ -z "${SKIP_BUILD:-}" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKVR_BENCH=ON -DKVR_SANITIZE=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target azsim kvreconcile >/dev/null
fi
bin=$root/$BUILD/bin
work=$(mktemp -d /tmp/bench-export.XXXXXX)
pid=
stop_azsim() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
trap 'stop_azsim; rm -rf "$work"' EXIT

start_azsim() { # DATA_DIR OPTIONS...
    local data=$1
    shift
    mkdir -p "$(dirname "$data")"
    "$bin/azsim" --data "$data" --port 0 "$@" >"$work/azsim.out" 2>"$work/azsim.err" &
    pid=$!
    for _ in $(seq 1 1200); do # a large state loads for a while
        grep -q '^azsim ready' "$work/azsim.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^azsim ready' "$work/azsim.out" || { cat "$work/azsim.err"; exit 1; }
    set -a
    . "$data/azsim.env"
    set +a
}

stats() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats"; }
requests() { # BEFORE.json AFTER.json -> "N requests, N throttled"
    $py - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
n = sum(v - a["requests"].get(k, 0) for k, v in b["requests"].items() if not k.startswith("admin."))
print("%d requests, %d throttled (429)" % (n, b["throttled"] - a["throttled"]))
EOF
}
timed() { # NAME CMD...
    local name=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || true
    t1=$(date +%s.%N)
    printf '%s: wall %.2f s, user CPU %s s, peak RSS %s kB, exit %s, ' "$name" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
        "$(awk -F': ' '/User time/ {print $2}' "$work/$name.time")" \
        "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/$name.time")" \
        "$(awk -F': ' '/Exit status/ {print $2}' "$work/$name.time")"
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
est=${ESTATE:-$work/estate}
echo "== estate: $VAULTS vaults x ($KEYS keys x $VERSIONS versions, $SECRETS secrets, $ROLES roles)"
if [ -n "${ESTATE:-}" ] && [ -d "$est/sim" ] && [ -d "$est/estate" ]; then
    echo "reusing the estate seeded in $est"
else
    start_azsim "$est/sim" --throttle off --durable off --rbac-delay 1
    $gen yaml "$est" --vaults "$VAULTS" --keys "$KEYS" --secrets "$SECRETS" --roles "$ROLES"
    $gen seed --vaults "$VAULTS" --keys "$KEYS" --versions "$VERSIONS" --secrets "$SECRETS"
    "$bin/kvreconcile" apply -q -f "$est/bootstrap.yaml" --wait 5m
    $gen roles --vaults "$VAULTS" --keys "$KEYS" --roles "$ROLES"
    stop_azsim
fi

start_azsim "$est/sim" --latency-ms "$LATENCY"
stats >"$work/s0.json"
timed plan "$bin/kvreconcile" plan -f "$est/estate"
stats >"$work/s1.json"
requests "$work/s0.json" "$work/s1.json"
timed export "$bin/kvreconcile" export -o "$work/exported" --profiles
stats >"$work/s2.json"
requests "$work/s1.json" "$work/s2.json"
tail -1 "$work/export.err" | sed 's/^/  /'
stop_azsim
start_azsim "$est/sim" --throttle off
set +e
"$bin/kvreconcile" plan -f "$work/exported" --detailed-exitcode >"$work/replan.out" 2>&1
rc=$?
set -e
echo "plan of the export: exit $rc, $(head -1 "$work/replan.out")"
