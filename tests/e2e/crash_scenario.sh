#!/usr/bin/env bash
# Crash anywhere, for one example scenario: kvreconcile apply is killed with SIGKILL at seeded,
# reproducible instants, over and over, in each of three phases, and then run to convergence:
#   1. before/ on an empty estate (apps, vaults, keys, secrets, role assignments, profile);
#   2. after/ (the pull request) up to its retention gates;
#   3. after/ again once azsim's clock has passed every retention period (the retirements).
# After every kill no data key may be lost. After phase 2 nothing may have been retired early;
# at the end: one registration per app, every client secret with its stored copy, one key version
# per generation, nothing the final desired state keeps deleted (not the first app, key versions,
# generated secret values), the profiles exactly the desired ones, plan empty, no secret value in
# any output, no sanitizer report.
# usage: crash_scenario.sh KVRECONCILE AZSIM EXAMPLE [KILLS] [SEED]
#   KILLS (or KVR_CRASH_POINTS): kill points for this scenario, default 18, split 1/4 before/,
#   1/2 after/, 1/4 retirements; SEED (or KVR_CRASH_SEED): default 4242; KVR_CRASH_MAX_MS: the
#   latest instant of a kill after the start of a run, default 2000.
# A kill point is a SIGKILL that lands in a running apply. Once a phase's work is mostly done its
# runs get short, and a kill drawn from the whole window often comes after the run has ended:
# then the window shrinks to that run's length and the kill is drawn again (at most 4 draws per
# kill point), so that every scenario reaches its kill points however fast the runs are.
set -euo pipefail
kills=${4:-${KVR_CRASH_POINTS:-18}}
seed=${5:-${KVR_CRASH_SEED:-4242}}
max_ms=${KVR_CRASH_MAX_MS:-2000}
. "$(dirname "$0")/lib.sh"
scenario_init "$@"
# one stream of instants per scenario, reproducible from the seed
RANDOM=$(((seed + $(printf '%s' "$example" | cksum | cut -d' ' -f1)) % 32768))
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 2 --data-keys 20 --rewrap-rate 20
t0=$(e2e_ms)
landed=0 finished=0 k=0

crash_phase() { # count desired-dir apply-args...
    local count=$1 dir=$2 got=0 tries=0 window=$max_ms delay_ms p st t1
    shift 2
    while [[ $got -lt $count && $tries -lt $((4 * count)) ]]; do
        k=$((k + 1)) tries=$((tries + 1))
        delay_ms=$((RANDOM % window))
        t1=$(e2e_ms)
        "$kvr" apply -f "$dir" "$@" >"$work/out.k$k" 2>"$work/err.k$k" &
        p=$!
        sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
        kill -KILL "$p" 2>/dev/null || true
        set +e; wait "$p" 2>/dev/null; st=$?; set -e
        if [[ $st == 137 ]]; then
            landed=$((landed + 1)) got=$((got + 1))
        else # it ended first: aim within a run as long as that one
            finished=$((finished + 1))
            window=$(($(e2e_ms) - t1))
            [[ $window -ge 20 ]] || window=20
        fi
        if [[ $(azsim_lost) != 0 ]]; then
            check "kill $k (${delay_ms} ms into ${dir#"$root"/}): no data key lost" 1
            return
        fi
    done
    check "${dir#"$root"/}: $got of $count kill points landed in a running apply, no data key lost" \
        "$([[ $got == "$count" ]]; echo $?)"
}

nb=$((kills / 4)) na=$((kills / 2))
nr=$((kills - nb - na))

crash_phase "$nb" "$B" --wait 2m; echo "t=$(($(e2e_ms) - t0)) ms"
kvr_apply "before/: converges after $nb kills" 0 -f "$B" --wait 2m
e2e_estate_snapshot "$B" "$A"; echo "t=$(($(e2e_ms) - t0)) ms"

crash_phase "$na" "$A" --wait 1m; echo "t=$(($(e2e_ms) - t0)) ms"
kvr_apply "after/: runs to its retention gates after $na kills" "0 3" -f "$A" --wait 1m
# nothing retired before its retention: every profile of before/ is still there
tok=$(azsim_token "https://profiles.localhost:$AZSIM_PORT")
live=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" \
    "https://profiles.localhost:$AZSIM_PORT/encryptionProfiles?api-version=2026-01-01" | json '" ".join(p["name"] for p in d["value"])')
early=0
for p in $(sed -n 's/^  - name: *//p' "$B"/encryption.yaml); do
    [[ " $live " == *" $p "* ]] || early=$((early + 1))
done
check "within retention nothing was retired (profiles: $live)" "$([[ $early == 0 ]]; echo $?)"

azsim_advance $((92 * 86400))
crash_phase "$nr" "$A"
kvr_apply "after/ past retention: converges after $nr kills" "0 3" -f "$A" --wait 1m
[[ $rc == 0 ]] || kvr_apply "after/ past retention: converges on the next run" 0 -f "$A" --wait 1m
kvr_plan_empty "$A"; echo "t=$(($(e2e_ms) - t0)) ms"

e2e_estate_check "$A" "$B"; echo "t=$(($(e2e_ms) - t0)) ms"
e2e_secret_scan "$B" "$A"
e2e_sanitizer_scan
echo "$example: kill points survived: $landed (of $k kills; $finished runs had ended first), seed $seed, wall $(($(e2e_ms) - t0)) ms"
e2e_finish
