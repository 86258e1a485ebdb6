#!/usr/bin/env bash
# Estate-scale benchmarks (issue #8): kvreconcile plan and a no-op apply on a large converged
# estate, the same reads with Azure's JavaScript SDKs (one awaited call after another, and a pool
# of concurrent calls alternated with plan), azsim's fastest rate on that state, and a relocation
# copy under the throttle limits. Builds a release tree in build-C/, prints the figures and the
# machine. Not a test. Figures and how to read them: tests/bench/RESULTS.md.
#
# usage: tests/bench/run_estate.sh
# environment (defaults):
#   VAULTS=200 KEYS=50 VERSIONS=3 SECRETS=200 ROLES=50   the estate (ROLES per vault); the
#                              sizes RESULTS.md reports are 20, 200 (the default) and 400, and
#                              2000 on demand (about 15 minutes to seed, and a large /tmp:
#                              ESTATE=/tmp/est2000 VAULTS=2000 PHASES=estate SDK=0)
#   LATENCY=20                 azsim --latency-ms for the measured runs (throttling on)
#   SDK_VAULTS=20              vaults the sequential SDK script reads (then extrapolated
#                              linearly to VAULTS)
#   SDK_CONCURRENCY=48         calls in flight in the concurrent SDK script (it reads every vault)
#   SDK_PER_VAULT=6            of which at most this many to one vault
#   ALTERNATE=2                rounds of plan then the concurrent SDK script, alternated in the
#                              same azsim; each pair's ratio and the median are reported
#   SDK=1                      0: leave out both SDK scripts (5. and 6.; hours at 2,000 vaults)
#   RELOC_SECRETS=1000         secrets copied by the relocation
#   RELOC_CERTS=20             certificates copied by the relocation (made with openssl)
#   RELOC_TIMEOUT=600          seconds the relocation apply may run before it is stopped
#   PHASES="estate reloc"      which parts to run
#   BUILD=build-C              the build tree
#   SKIP_BUILD=1               use the binaries already in BUILD (e.g. while azsim is mid-change)
#   ESTATE=DIR                 keep the seeded estate in DIR and reuse it when DIR/sim exists
#                              (saves the seeding while iterating; same knobs, or reseed)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
VAULTS=${VAULTS:-200} KEYS=${KEYS:-50} VERSIONS=${VERSIONS:-3} SECRETS=${SECRETS:-200}
ROLES=${ROLES:-50} LATENCY=${LATENCY:-20} SDK_VAULTS=${SDK_VAULTS:-20}
SDK_CONCURRENCY=${SDK_CONCURRENCY:-48} SDK_PER_VAULT=${SDK_PER_VAULT:-6} ALTERNATE=${ALTERNATE:-2}
RELOC_SECRETS=${RELOC_SECRETS:-1000} RELOC_CERTS=${RELOC_CERTS:-20} RELOC_TIMEOUT=${RELOC_TIMEOUT:-600}
PHASES=${PHASES:-"estate reloc"} BUILD=${BUILD:-build-C} SDK=${SDK:-1}
py=/usr/bin/python3
gen="$py $root/tests/bench/estate_gen.py"

# sanitizers off explicitly: a cached KVR_SANITIZE=ON would measure ASan
if [ -z "${SKIP_BUILD:-}" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKVR_BENCH=ON -DKVR_SANITIZE=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target azsim kvreconcile bench_azsim >/dev/null
fi
bin=$root/$BUILD/bin

work=$(mktemp -d /tmp/bench-C-estate.XXXXXX)
pid=
stop_azsim() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
trap 'stop_azsim; rm -rf "$work"' EXIT

# start_azsim DATA_DIR OPTIONS...: start, wait for ready, export its azsim.env
start_azsim() {
    local data=$1
    shift
    mkdir -p "$(dirname "$data")"
    local t0
    t0=$(date +%s.%N)
    "$bin/azsim" --data "$data" --port 0 "$@" >"$work/azsim.out" 2>"$work/azsim.err" &
    pid=$!
    for _ in $(seq 1 6000); do
        grep -q '^azsim ready' "$work/azsim.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^azsim ready' "$work/azsim.out" || { cat "$work/azsim.err"; exit 1; }
    echo "azsim $* ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
    set -a
    . "$data/azsim.env"
    set +a
}

stats() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats"; }

# delta BEFORE.json AFTER.json: requests (minus the admin /stats calls) and 429s between them,
# then the count of each kind, largest first
delta() {
    $py - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ops = {k: v - a["requests"].get(k, 0) for k, v in b["requests"].items() if not k.startswith("admin.")}
ops = {k: v for k, v in ops.items() if v}
print("requests %d  throttled(429) %d" % (sum(ops.values()), b["throttled"] - a["throttled"]))
print("  by kind: " + ", ".join("%s %d" % kv for kv in sorted(ops.items(), key=lambda kv: -kv[1])))
EOF
}

# azsim_cpu: the CPU seconds (user + system) azsim has used so far
azsim_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo 0
}

# timed NAME COMMAND...: runs it under /usr/bin/time; prints its wall time, CPU, peak RSS and
# exit status, and the CPU azsim used meanwhile (in $work/NAME.cpu: the command's and azsim's)
timed() {
    local name=$1
    shift
    local t0 t1 a0 a1
    a0=$(azsim_cpu)
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || true
    t1=$(date +%s.%N)
    a1=$(azsim_cpu)
    awk -F': ' -v a0="$a0" -v a1="$a1" '/User time/ {u = $2} /System time/ {s = $2}
        END {printf "%.2f %.2f\n", u + s, a1 - a0}' "$work/$name.time" >"$work/$name.cpu"
    printf '%s: wall %.2f s, user CPU %s s, sys CPU %s s, peak RSS %s kB, exit %s; azsim CPU meanwhile %s s\n' \
        "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
        "$(awk -F': ' '/User time/ {print $2}' "$work/$name.time")" \
        "$(awk -F': ' '/System time/ {print $2}' "$work/$name.time")" \
        "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/$name.time")" \
        "$(awk -F': ' '/Exit status/ {print $2}' "$work/$name.time")" \
        "$(cut -d' ' -f2 "$work/$name.cpu")"
}

# per_request NAME DELTA: CPU per request of the command and of azsim, from timed's figures
per_request() {
    awk -v reqs="$(awk '/^requests/ {print $2}' "$2")" 'reqs > 0 {printf "  CPU per request: kvreconcile %.3f ms, azsim %.3f ms (%d requests)\n",
        $1 * 1000 / reqs, $2 * 1000 / reqs, reqs}' "$work/$1.cpu"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"

if [[ " $PHASES " == *" estate "* ]]; then
    est=${ESTATE:-$work/estate}
    echo "== estate: $VAULTS vaults x ($KEYS keys x $VERSIONS versions, $SECRETS secrets," \
        "$ROLES role assignments), 5 apps, 3 profiles"
    # 1. seed fast: no throttling, no per-mutation save, no latency
    if [ -n "${ESTATE:-}" ] && [ -d "$est/sim" ] && [ -d "$est/estate" ]; then
        echo "reusing the estate seeded in $est"
    else
        start_azsim "$est/sim" --throttle off --durable off --rbac-delay 1
        t0=$(date +%s)
        $gen yaml "$est" --vaults "$VAULTS" --keys "$KEYS" --secrets "$SECRETS" --roles "$ROLES"
        $gen seed --vaults "$VAULTS" --keys "$KEYS" --versions "$VERSIONS" --secrets "$SECRETS"
        "$bin/kvreconcile" apply -q -f "$est/bootstrap.yaml" --wait 5m
        $gen roles --vaults "$VAULTS" --keys "$KEYS" --roles "$ROLES"
        stop_azsim # saves the state
        echo "seeded in $(($(date +%s) - t0)) s"
    fi

    # 2. azsim's fastest rate on this state (a copy: the probe secret must not join the estate)
    cp -a "$est/sim" "$work/rate"
    start_azsim "$work/rate" --throttle off
    tok=$($py -c 'import sys; sys.path.insert(0, sys.argv[1]); import estate_gen as g; print(g.token(sys.argv[2]))' \
        "$root/tests/bench" "https://vault.localhost:$AZSIM_PORT")
    export BENCH_VAULT_URL="https://kv-b000.vault.localhost:$AZSIM_PORT"
    curl -sS --cacert "$AZSIM_CA" -X PUT "$BENCH_VAULT_URL/secrets/bench?api-version=7.5" \
        -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d '{"value":"b"}' >/dev/null
    echo "azsim rate on this state (authenticated GETs, throttling off, libkvr client):"
    # (not `tee /dev/stderr`: reopening a redirected stderr truncates the caller's log file)
    bench=$("$bin/bench_azsim" 20000 16)
    echo "$bench"
    rate16=$(sed -n 's/.*requests per second: \([0-9.]*\).*/\1/p' <<<"$bench")
    stop_azsim
    rm -rf "$work/rate"

    # 3. the measured runs: latency and throttling on
    start_azsim "$est/sim" --latency-ms "$LATENCY"
    stats >"$work/s0.json"
    timed plan "$bin/kvreconcile" plan -f "$est/estate"
    stats >"$work/s1.json"
    delta "$work/s0.json" "$work/s1.json" | tee "$work/plan.delta"
    per_request plan "$work/plan.delta"
    head -3 "$work/plan.out" | sed 's/^/  plan says: /'
    grep -v '^$' "$work/plan.err" | head -3 | sed 's/^/  plan stderr: /' || true

    timed noop-apply "$bin/kvreconcile" apply -f "$est/estate"
    stats >"$work/s2.json"
    delta "$work/s1.json" "$work/s2.json"
    tail -2 "$work/noop-apply.err" | sed 's/^/  apply says: /'

    # 4. the lower bounds
    reqs=$(awk '/^requests/ {print $2}' "$work/plan.delta")
    # ARM reads kvreconcile made (throttled answers excluded), from the by-kind line
    arm=$(grep -o 'arm\.[A-Za-z.]* [0-9]*' "$work/plan.delta" | grep -v '^arm\.throttled' |
        awk '{n += $2} END {print n + 0}')
    # Key Vault requests: all (kvreconcile paces them all), and those past the challenge (the ones
    # Key Vault's limits count)
    kv=$(grep -o 'kv\.[A-Za-z.]* [0-9]*' "$work/plan.delta" | awk '{n += $2} END {print n + 0}')
    kvc=$(grep -o 'kv\.challenge [0-9]*' "$work/plan.delta" | awk '{n += $2} END {print n + 0}')
    $py - "$reqs" "${rate16:-0}" "$LATENCY" "$KEYS" "$VERSIONS" "$SECRETS" "$ROLES" "$VAULTS" "$arm" \
        "$kv" "$kvc" <<'EOF'
import math, sys
reqs, rate, lat = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
keys, versions, secrets, roles, vaults = map(int, sys.argv[4:9])
arm_reads = int(sys.argv[9])
kv, kv_challenges = int(sys.argv[10]), int(sys.argv[11])
page = 25  # Key Vault maxresults ceiling
# what must happen one after another for one vault: the ARM token and the vault's read (the
# vault must exist before its contents are read), the challenge probe, the Key Vault token, then
# the list pages (each nextLink is only known from the page before), then a key's own reads
arm = 2  # ARM token, then the vault list (or a GET)
chain_secrets = arm + 2 + math.ceil(secrets / page)
chain_keys = arm + 2 + math.ceil(keys / page) + math.ceil(versions / page)
chain = max(chain_secrets, chain_keys)
a = chain * lat / 1000
b = reqs / rate if rate else float("nan")
arm_floor = max(0, arm_reads - 250) / 25.0
# not a bound the targets use, but what a vault's own reads cost on the engine's 6 connections
# per host (one request at a time on each): its listing pages, a key's two reads, the probe
per_vault = math.ceil(keys / page) + 2 * keys + math.ceil(secrets / page) + 1 + 1
c = (arm + 2) * lat / 1000 + per_vault * lat / 1000 / 6
print("lower bound (a) dependent chain: %d requests x %g ms = %.2f s "
      "(secrets: ARM token, vault read, probe, token, %d pages; keys: the same, %d pages, versions)"
      % (chain, lat, a, math.ceil(secrets / page), math.ceil(keys / page)))
print("lower bound (b) requests / azsim rate: %d / %.0f per s = %.2f s" % (reqs, rate, b))
print("ARM read bucket (250, +25/s) for kvreconcile's %d ARM reads (measured): >= %.1f s" % (arm_reads, arm_floor))
# Key Vault's subscription-wide limit: 20,000 per 10 s for the vaults of a subscription in a region
kv_counted = kv - kv_challenges
print("Key Vault subscription-wide limit (20,000 per 10 s) for the %d requests it counts: >= %d s"
      % (kv_counted, 10 * ((kv_counted - 1) // 20000) if kv_counted > 0 else 0))
print("kvreconcile's pace under it (2,000, then 1,500/s) for its %d Key Vault requests: >= %.1f s"
      % (kv, max(0, kv - 2000) / 1500.0))
print("target (2 x max(a, b)): %.2f s" % (2 * max(a, b)))
print("a vault's reads on 6 connections (c): %d requests x %g ms / 6, after %d in a chain = %.2f s"
      % (per_vault, lat, arm + 2, c))
EOF

    # 5. the SDK, sequential awaits, on SDK_VAULTS vaults, extrapolated
    if [ "$SDK" = 0 ]; then
        echo "== the SDK scripts: skipped (SDK=0)"
    else
    if [ ! -d tests/bench/sdk/node_modules/@azure/keyvault-keys ] ||
        [ tests/bench/sdk/package-lock.json -nt tests/bench/sdk/node_modules/.package-lock.json ]; then
        (cd tests/bench/sdk && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    stats >"$work/s3.json"
    (cd tests/bench/sdk && NODE_EXTRA_CA_CERTS="$AZSIM_CA" timed sdk node read_estate.mjs rg-bench "$SDK_VAULTS")
    stats >"$work/s4.json"
    cat "$work/sdk.out"
    delta "$work/s3.json" "$work/s4.json"
    $py - "$work/sdk.out" "$VAULTS" "$work/plan.time" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
vaults = int(sys.argv[2])
wall = [l.split(": ", 1)[1] for l in open(sys.argv[3]) if "Elapsed (wall clock)" in l][0]
parts = [float(p) for p in wall.split(":")]
plan_s = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
ext = r["seconds"] * vaults / r["vaults"]
print("SDK: %d vaults in %.1f s -> %d vaults extrapolated linearly: %.0f s; kvreconcile plan %.1f s;"
      " ratio %.2fx" % (r["vaults"], r["seconds"], vaults, ext, plan_s, ext / plan_s))
EOF

    # 6. the SDK as an expert writes it (a pool of SDK_CONCURRENCY calls in flight, SDK_PER_VAULT
    # to a vault, one shared keep-alive agent) on every vault, alternated with plan so that both
    # meet the same azsim state and machine load; the ratio takes the script's own seconds
    # (node's start and the SDK's loading left out, in the SDK's favour) over plan's whole wall
    # time
    echo "== plan and the concurrent SDK script ($SDK_CONCURRENCY calls in flight, $SDK_PER_VAULT per vault)," \
        "alternated $ALTERNATE times"
    for i in $(seq 1 "$ALTERNATE"); do
        stats >"$work/a0.json"
        timed "plan-$i" "$bin/kvreconcile" plan -f "$est/estate"
        stats >"$work/a1.json"
        delta "$work/a0.json" "$work/a1.json" | tee "$work/plan-$i.delta" | sed 's/^/  /'
        per_request "plan-$i" "$work/plan-$i.delta"
        (cd tests/bench/sdk && NODE_EXTRA_CA_CERTS="$AZSIM_CA" timed "sdkc-$i" node read_estate_concurrent.mjs \
            rg-bench "$VAULTS" "$SDK_CONCURRENCY" "$SDK_PER_VAULT")
        stats >"$work/a2.json"
        sed 's/^/  /' "$work/sdkc-$i.out"
        grep -v '^$' "$work/sdkc-$i.err" | head -3 | sed 's/^/  sdk stderr: /' || true
        delta "$work/a1.json" "$work/a2.json" | sed 's/^/  /'
    done
    $py - "$work" "$ALTERNATE" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def wall(name):
    w = [l.split(": ", 1)[1] for l in open("%s/%s.time" % (work, name)) if "Elapsed (wall clock)" in l][0]
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(w.split(":"))))
ratios = []
for i in range(1, rounds + 1):
    plan_s = wall("plan-%d" % i)
    try:
        r = json.load(open("%s/sdkc-%d.out" % (work, i)))
    except ValueError:
        print("round %d: plan %.2f s; the concurrent SDK script printed no result" % (i, plan_s))
        continue
    ratios.append(r["seconds"] / plan_s)
    print("round %d: plan %.2f s; concurrent SDK %.2f s (wall %.2f s), %d vaults; ratio SDK/plan %.2fx"
          % (i, plan_s, r["seconds"], wall("sdkc-%d" % i), r["vaults"], ratios[-1]))
if ratios:
    print("median ratio SDK/plan over %d rounds: %.2fx" % (len(ratios), statistics.median(ratios)))
EOF
    fi # SDK
    stop_azsim
fi

if [[ " $PHASES " == *" reloc "* ]]; then
    rel=$work/reloc
    echo "== relocation: copy $RELOC_SECRETS secrets and $RELOC_CERTS certificates to a new vault, throttling on (secret set 300/10 s)"
    start_azsim "$rel/sim" --throttle off --durable off
    $gen reloc "$rel" --secrets "$RELOC_SECRETS" --certificates "$RELOC_CERTS"
    stop_azsim
    start_azsim "$rel/sim"
    stats >"$work/r0.json"
    timed reloc timeout "$RELOC_TIMEOUT" "$bin/kvreconcile" apply -f "$rel/reloc.yaml" --wait 2h \
        --log-format json
    stats >"$work/r1.json"
    delta "$work/r0.json" "$work/r1.json"
    secs=$(awk -F': ' '/Elapsed/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$work/reloc.time")
    # the whole apply, then its parts from the progress lines (--log-format json: each step's
    # end as "elapsed" seconds since the start, and its own "seconds"): the copy phase from the
    # start of the first copy step to the end of the last (every write of the relocation is in
    # it), before it the reads and the vault's creation, after it the read that verifies the
    # copies (each compared with its source: read back from the target there, or earlier, in a
    # pause of the copy phase, "readBack") up to "converged"
    $py - "$work/r0.json" "$work/r1.json" "$secs" "$RELOC_SECRETS" "$RELOC_CERTS" "$work/reloc.err" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
secs, n, m = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = lambda k: b["requests"].get(k, 0) - a["requests"].get(k, 0)
sets, imports = d("kv.secrets.set"), d("kv.certificates.import")
writes = sets + imports
reqs = sum(d(k) for k in b["requests"] if not k.startswith("admin."))
# both count in the 300 per 10 s bucket: the ceiling is 30 writes per second
print("whole apply: copied %d of %d secrets and %d of %d certificates in %.1f s: %.2f writes per s "
      "(ceiling 30/s, %.0f %%); %d requests (%d kv.secrets.get), %d x 429; %s"
      % (sets, n, imports, m, secs, writes / secs, 100 * writes / secs / 30, reqs,
         d("kv.secrets.get"), b.get("throttled", 0) - a.get("throttled", 0),
         "finished" if sets >= n and imports >= m else "stopped by RELOC_TIMEOUT"))
lines = []
for l in open(sys.argv[6]):
    try:
        lines.append(json.loads(l))
    except ValueError:
        pass
copies = [l for l in lines if l.get("event") == "step"
          and l.get("kind") in ("secret.copy", "certificate.copy")]
failed = [l for l in lines if l.get("event") == "step" and l.get("result") != "done"]
end = [l["elapsed"] for l in lines if l.get("event") in ("converged", "blocked")]
if copies:
    first = min(l["elapsed"] - l["seconds"] for l in copies)
    last = max(l["elapsed"] for l in copies)
    span = last - first
    print("  before the copies (reads, vault creation): %.1f s" % first)
    # the window starts empty: the first 300 writes go at once, so N writes need only
    # ceil(N / 300) - 1 full windows, and writes per s over a copy phase can pass 30
    full = max(0, -(-writes // 300) - 1)
    print("  the write limit alone: %d writes need %d full windows (%d s), then the last %d writes"
          % (writes, full, 10 * full, writes - 300 * full))
    print("  copy phase (first copy start to last copy end): %d copy steps, %d writes in %.1f s: "
          "%.2f writes per s (ceiling 30/s, %.0f %%)"
          % (len(copies), writes, span, writes / span if span else 0,
             100 * writes / span / 30 if span else 0))
    rb = [l for l in lines if l.get("event") == "readBack"]
    print("  read back during the copy phase, while the write limit held the next write: %d copies"
          " in %d pauses, %.1f s (inside the copy phase)"
          % (sum(l["copies"] for l in rb), len(rb), sum(l["seconds"] for l in rb)))
    if end:
        print("  verification after the copies (the read after the last copy, up to converged): "
              "%.1f s" % (end[-1] - last))
else:
    print("  no copy step in the progress lines")
print("  failed steps: %d" % len(failed))
for l in lines:
    if l.get("event") in ("converged", "blocked"):
        print("  apply says: %s after %.1f s, %s steps" % (l["event"], l["elapsed"], l.get("steps")))
EOF
    grep -v '^{' "$work/reloc.err" | tail -3 | sed 's/^/  apply says: /' || true
    stop_azsim
fi
