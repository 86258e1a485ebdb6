#!/usr/bin/env bash
# Concurrent runs, for one example scenario: two kvreconcile apply processes with the same desired
# state run at once against the same estate, at every stage: before/ on an empty estate, after/
# up to its gates, and after/ again at 8, 32 and 92 days (the retirements).
#   - The first pair runs with the default --lock-timeout 0: one run holds the estate's lock and
#     the other must stop at once, exit 1, saying who holds it, having changed nothing.
#   - The later pairs give --lock-timeout: the second waits for the first (a "lock-wait" line),
#     then does what is left. Each run finishes or blocks at a gate (0 or 3).
# A single apply afterwards must converge. Together they must not corrupt anything: one app
# registration and one service principal, one key version per generation, client secrets exactly
# the desired ones and each with its stored copy, no duplicate role assignment, no data key lost,
# nothing kept deleted, plan empty, no secret value in any output, no sanitizer report.
# KVR_CONCURRENT_NOLOCK=1 gives each run its own lock directory, as two machines would have (on
# demand only: the lock is what makes concurrent runs safe; see README "Running more than one").
# The runs log with --log-format json (log.*); what raced is reported from azsim's /stats.
# usage: concurrent_scenario.sh KVRECONCILE AZSIM EXAMPLE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$@"
# 20 ms a request, as across a network: each run lasts long enough for the other to meet its lock
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 3 --data-keys 20 --rewrap-rate 10 \
    --latency-ms 20
t0=$(e2e_ms)
pairs=0 exits= stuck=0
kvr_run_s=${KVR_RUN_TIMEOUT:-300} # a pair ends in well under two minutes (the second waits for the first); a run that does not is stuck


# the creations that two runs could both make, as counted by azsim so far
creations() {
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json '" ".join("%s=%d" % (op.split(".", 1)[1], n)
        for op, n in sorted(d["requests"].items()) if op in ("graph.applications.create",
        "graph.servicePrincipals.create", "graph.applications.addPassword", "graph.applications.removePassword",
        "kv.keys.create", "kv.secrets.set", "arm.vaults.put", "arm.roleAssignments.put", "profiles.create",
        "profiles.apply", "profiles.delete"))'
}

nolock=${KVR_CONCURRENT_NOLOCK:-}
mkdir -p "$work/lock.a" "$work/lock.b"
export KVR_LOCK_DIR=$work/lock.a # this test's own lock directory, shared by both runs

# Two applies at once. MODE "exclusive" (no --lock-timeout): one 0 or 3, the other a clean 1
# that names the lock. MODE "wait" (--lock-timeout given): each 0 or 3.
pair() { # name mode args...
    local name=$1 mode=$2 p1 p2 r1 r2 i deadline
    shift 2
    pairs=$((pairs + 1))
    # With the lock, the second run must meet the first holding it. Rather than race the first
    # run (on a loaded machine it could end before the second got as far as the lock), azsim
    # holds the answer to the first run's first request, a token it asks for once it holds the
    # lock, until the second run has met the lock: refused at once, or waiting for it.
    if [[ -z $nolock ]]; then
        hold=$(azsim_hold POST login.localhost "/$AZURE_TENANT_ID/oauth2/v2.0/token")
    fi
    "$kvr" apply "$@" --log-format json >"$work/out.p${pairs}a" 2>"$work/log.p${pairs}a" &
    p1=$!
    if [[ -z $nolock ]]; then
        until [[ $(azsim_hold_state "$hold") != armed ]] || ! kill -0 "$p1" 2>/dev/null; do
            sleep 0.02
        done
    fi
    KVR_LOCK_DIR=$work/lock.$([[ -n $nolock ]] && echo b || echo a) \
        "$kvr" apply "$@" --log-format json >"$work/out.p${pairs}b" 2>"$work/log.p${pairs}b" &
    p2=$!
    if [[ -z $nolock ]]; then
        until grep -q '"event":"lock-wait"\|another kvreconcile run' "$work/log.p${pairs}b" 2>/dev/null ||
            ! kill -0 "$p2" 2>/dev/null; do
            sleep 0.02
        done
        azsim_release "$hold"
    fi
    E2E_PIDS="$p1 $p2"
    # bounded: a run that does not end (a livelock) is killed and fails the test (exit 137)
    deadline=$(($(e2e_ms) + kvr_run_s * 1000))
    while { kill -0 "$p1" || kill -0 "$p2"; } 2>/dev/null && [[ $(e2e_ms) -lt $deadline ]]; do sleep 0.2; done
    for i in "$p1" "$p2"; do
        kill -0 "$i" 2>/dev/null && { echo "$name: a run still going after ${kvr_run_s} s: killed"; kill -KILL "$i"; stuck=1; }
    done
    set +e; wait "$p1"; r1=$?; wait "$p2"; r2=$?; set -e
    E2E_PIDS=
    exits="$exits $name:$r1/$r2"
    if [[ $mode == exclusive && -z $nolock ]]; then
        local loser=b winner=$r1
        [[ $r1 == 1 ]] && loser=a winner=$r2
        check "$name: one run went ahead (exit $winner)" "$([[ $winner == 0 || $winner == 3 ]]; echo $?)"
        check "$name: the other stopped at once, exit 1, naming the lock: $(grep -m1 -o 'another kvreconcile run.\{0,120\}' "$work/log.p$pairs$loser")" \
            "$([[ $r1 == 1 || $r2 == 1 ]] && grep -q 'another kvreconcile run is changing this estate (pid [0-9]* on .*kvreconcile apply, since .*; lock .*kvreconcile-[0-9a-f]\{16\}\.lock); nothing was changed' "$work/log.p$pairs$loser"; echo $?)"
        check "$name: ... and made no request that changes anything" \
            "$(grep -q '"event":"step"' "$work/log.p$pairs$loser" && echo 1 || echo 0)"
    else
        for i in a:$r1 b:$r2; do
            local who=${i%%:*} r=${i#*:}
            if [[ -n $nolock && $r == 1 ]]; then # unserialised, a run may meet the other's change
                check "$name: run $who failed cleanly (exit 1): $(grep -m1 -o 'error: .\{0,200\}' "$work/log.p$pairs$who")" \
                    "$(grep -q 'kvreconcile: error: ' "$work/log.p$pairs$who"; echo $?)"
                continue
            fi
            check "$name: run $who exit $r (0 or 3)" "$([[ $r == 0 || $r == 3 ]]; echo $?)"
            [[ $r == 0 || $r == 3 ]] || tail -20 "$work/log.p$pairs$who"
        done
        [[ -n $nolock ]] || check "$name: one run waited for the other's lock" \
            "$(cat "$work/log.p${pairs}a" "$work/log.p${pairs}b" | grep -c '"event":"lock-wait"' | grep -qx 1; echo $?)"
    fi
    check "$name: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
    echo "  after '$name': $(creations)"
}

pair "before/ x2" exclusive -f "$B" --wait 2m

# A run that has just taken the lock has not written its line yet: a run refused in that moment
# still names it (it reads the line again for a while). Here util-linux's flock holds the lock
# and writes the line 0.2 s later.
lockf=$(ls "$KVR_LOCK_DIR"/kvreconcile-*.lock)
# The holder keeps the lock until the refused run has ended (never a race with a fixed sleep).
flock "$lockf" bash -c 'sleep 0.2; echo "pid 4242 on lock-test, kvreconcile apply, since 2026-01-01T00:00:00Z" >"$0"; until [ -e "$1" ]; do sleep 0.02; done; : >"$0"' "$lockf" "$work/release.early" &
holder=$!
until [[ -n $(flock -n "$lockf" true 2>&1 || echo held) ]]; do sleep 0.01; done # it holds it
set +e; "$kvr" apply -f "$B" >/dev/null 2>"$work/log.early"; r=$?; set -e
touch "$work/release.early"
wait "$holder"
check "a run refused before the holder wrote its line still names it: $(grep -m1 -o 'another kvreconcile run.\{0,80\}' "$work/log.early")" \
    "$([[ $r == 1 ]] && grep -q '(pid 4242 on lock-test, kvreconcile apply' "$work/log.early"; echo $?)"
kvr_apply "before/: a single apply afterwards converges" 0 -f "$B" --wait 2m
e2e_estate_check "$B"
cp "$work/estate.check" "$work/estate.check.before"
e2e_estate_snapshot "$B" "$A"

# a stuck run (it never ends) fails the test at once: the later stages would only wait for it
[[ $stuck == 1 ]] || pair "after/ x2" wait -f "$A" --wait 1m --lock-timeout 3m
[[ $stuck == 1 ]] || kvr_apply "after/: a single apply afterwards reaches the gates" "0 3" -f "$A" --wait 1m
for days in 8 32 92; do
    [[ $stuck == 1 ]] && break
    azsim_advance $((days * 86400))
    pair "after/ x2, $days days later" wait -f "$A" --wait 1m --lock-timeout 3m
done
check "no run had to be killed (stuck)" "$stuck"
[[ $stuck == 1 ]] || kvr_apply "after/: a single apply afterwards converges" 0 -f "$A" --wait 1m
[[ $stuck == 1 ]] || kvr_plan_empty "$A"
e2e_estate_check "$A" "$B"
e2e_secret_scan "$B" "$A"
azsim_stop
e2e_sanitizer_scan
# evidence for a failure: which of the runs created what (their json progress lines)
if [[ $failed -gt 0 ]]; then
    for f in "$work"/log.p*; do
        grep -hE '"event":"step"' "$f" | grep -iE 'create|add client secret|new version' |
            sed "s|^|  ${f##*/}: |" | cut -c1-260 || true
    done
fi
echo "$example: exits$exits; creations $(creations 2>/dev/null || true); wall $(($(e2e_ms) - t0)) ms"
e2e_finish
