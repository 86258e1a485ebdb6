#!/usr/bin/env bash
# The azureblob lock with apply, against real Azurite (OAuth mode, HTTPS) and azsim:
#   1. A lease lost mid-run (broken through Azurite's API while the run waits at a gate): the
#      run stops before its next operation, exit 1, naming the loss; it does not take the lease
#      again behind the breaker's back.
#   2. Two applies with separate local lock directories (two "machines") and one lease, started
#      together at every stage of the scenario (before/, after/, after/ 8, 32 and 92 days on):
#      the test holds the lease first so that both meet it, then lets go; exactly one runs at a
#      time (no step outside its lease, each waited naming the holder from the blob's metadata),
#      both end 0 or 3, and the estate ends converged with no duplicate (one app, one client
#      secret per credential, one key version per generation, one profile per name).
#   3. --lock-timeout 0: a run meeting a held lease stops at once, exit 1, naming the holder.
#   4. kill -9 of the lease holder mid-run: the waiting run takes over once the 60 s lease has
#      run out (the time is printed), and nothing is duplicated.
# usage: lease_apply.sh KVRECONCILE AZSIM [EXAMPLE]
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/lib.sh"
scenario_init "$1" "$2" "${3:-rotate-app-credentials}"
t0=$(e2e_ms)
# --rewrap-rate 1: a profile stays Applying for a while, a gate a run waits at
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 0 --data-keys 20 --rewrap-rate 10
azurite_start
check "Azurite (OAuth mode) created the lease container" "$([[ $(lease_container "$LEASE_CONTAINER") == 201 ]]; echo $?)"
export KVR_LOCK_POLL_SECONDS=1 # a waiting run tries every second (default 2)
blob=kvreconcile.lock
mkdir -p "$work/lock.a" "$work/lock.b"

steps_outside_lease() { # LOG: step events before lease-acquired or after lease-released/lost
    awk '/"event":"lease-acquired"/ {held = 1} /"event":"lease-(released|lost)"/ {held = 0}
         /"event":"step"/ && !held {n++} END {print n + 0}' "$1"
}

# ---- 1. lease lost mid-run ------------------------------------------------------------------
# The first apply of before/ has steps to do. azsim holds the answer to its first ARM read; the
# run has its lease by then. The test breaks the lease; the run notices at its next renewal
# (every second here), then its read is let go: the run must stop before any step.
hold=$(curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/holds" -H 'Content-Type: application/json' \
    -d "{\"method\":\"GET\",\"host\":\"management.localhost\",\"path\":\"/subscriptions/$sub/providers/Microsoft.KeyVault/deletedVaults\"}" | json 'd["id"]')
KVR_LOCK_RENEW_SECONDS=1 KVR_LOCK_DIR=$work/lock.a \
    "$kvr" apply -f "$B" --wait 2m --log-format json >"$work/out.lost" 2>"$work/log.lost" &
p=$!
E2E_PIDS="$E2E_PIDS $p"
until [[ $(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/holds/$hold" | json 'd["state"]') == holding ]] ||
    ! kill -0 "$p" 2>/dev/null; do sleep 0.02; done
check "lost: the run holds the lease at its first read ($(lease_state $blob))" "$([[ $(lease_state $blob) == leased ]]; echo $?)"
check "lost: the lease broken through Azurite's API (http $(lease_break $blob))" "$([[ $(lease_state $blob) == broken ]]; echo $?)"
wait_for "$work/log.lost" '"event":"lease-lost"' 30 || true
curl -sS --cacert "$AZSIM_CA" -X DELETE "$AZSIM_URL/holds/$hold" >/dev/null
set +e; wait "$p"; r=$?; set -e
check "lost: the run exits 1 (got $r)" "$([[ $r == 1 ]]; echo $?)"
check "lost: it says the lease was lost: $(grep -o 'lease was lost.\{0,100\}' "$work/log.lost" | head -1)" \
    "$(grep -q "the estate's lease was lost" "$work/log.lost"; echo $?)"
check "lost: no step was run ($(grep -c '"event":"step"' "$work/log.lost" || true))" \
    "$(! grep -q '"event":"step"' "$work/log.lost"; echo $?)"
check "lost: the run did not take the lease again ($(lease_state $blob))" "$([[ $(lease_state $blob) == broken ]]; echo $?)"

# ---- 2. two machines, one lease, at every stage ---------------------------------------------
pairs=0 exits=
rg=$(sed -n 's/^ *resourceGroup: *//p' "$A"/vaults.yaml | head -1)
vault=$(sed -n 's/^ *- name: *//p' "$A"/vaults.yaml | head -1)
vault_path=/subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.KeyVault/vaults/$vault
pair() { # NAME ARGS...
    local name=$1 pa pb ra rb w l h win lose wpid
    shift
    pairs=$((pairs + 1))
    # the test holds the lease: both runs meet it and wait, whatever the machine's load
    lease_hold $blob 00000000-0000-4000-8000-00000000beef >/dev/null
    # and azsim will hold the first read of the vault, which only the run with the lease makes
    h=$(hold_arm "$vault_path")
    KVR_LOCK_DIR=$work/lock.a "$kvr" apply "$@" --lock-timeout 3m --log-format json \
        >"$work/out.p${pairs}a" 2>"$work/log.p${pairs}a" &
    pa=$!
    KVR_LOCK_DIR=$work/lock.b "$kvr" apply "$@" --lock-timeout 3m --log-format json \
        >"$work/out.p${pairs}b" 2>"$work/log.p${pairs}b" &
    pb=$!
    E2E_PIDS="$E2E_PIDS $pa $pb"
    wait_for "$work/log.p${pairs}a" '"event":"lock-wait".*pid 4242 on lease-test' || true
    wait_for "$work/log.p${pairs}b" '"event":"lock-wait".*pid 4242 on lease-test' || true
    lease_drop $blob 00000000-0000-4000-8000-00000000beef >/dev/null
    # one run took the lease and is held at its first read; the other must wait for it, and
    # say who holds it (from the blob's metadata), before the first may go on
    hold_wait "$h" "$pa" "$pb" || true
    win=b lose=a wpid=$pb
    if grep -q '"event":"lease-acquired"' "$work/log.p${pairs}a"; then win=a lose=b wpid=$pa; fi
    wait_for "$work/log.p${pairs}$lose" "\"event\":\"lock-wait\".*pid $wpid on " 30 || true
    check "$name: run $lose waited for run $win, named by its pid ($wpid) from the lease" \
        "$(grep -q "\"event\":\"lock-wait\".*pid $wpid on " "$work/log.p${pairs}$lose" &&
            ! grep -q '"event":"lease-acquired"' "$work/log.p${pairs}$lose"; echo $?)"
    hold_release "$h"
    set +e; wait "$pa"; ra=$?; wait "$pb"; rb=$?; set -e
    exits="$exits $name:$ra/$rb"
    for w in a:$ra b:$rb; do
        l=$work/log.p$pairs${w%%:*}
        check "$name: run ${w%%:*} exit ${w#*:} (0 or 3)" "$([[ ${w#*:} == 0 || ${w#*:} == 3 ]]; echo $?)"
        [[ ${w#*:} == 0 || ${w#*:} == 3 ]] || tail -5 "$l"
        check "$name: run ${w%%:*} ran no step outside its lease" "$([[ $(steps_outside_lease "$l") == 0 ]]; echo $?)"
    done
    check "$name: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
    E2E_PIDS=$AZURITE_PID
}
pair "before/ x2" -f "$B" --wait 2m
kvr_apply "before/: a single apply afterwards converges" 0 -f "$B" --wait 2m
e2e_estate_check "$B"
e2e_estate_snapshot "$B" "$A"
pair "after/ x2" -f "$A" --wait 1m
for days in 8 32 92; do
    azsim_advance $((days * 86400))
    pair "after/ x2, $days days on" -f "$A" --wait 1m
done
kvr_apply "after/: a single apply afterwards converges" 0 -f "$A" --wait 1m
kvr_plan_empty "$A"
e2e_estate_check "$A" "$B"

# ---- 3. --lock-timeout 0 --------------------------------------------------------------------
lease_hold $blob 00000000-0000-4000-8000-00000000beef >/dev/null
set +e; KVR_LOCK_DIR=$work/lock.a "$kvr" apply -f "$A" >"$work/out.t0" 2>"$work/log.t0"; r=$?; set -e
lease_drop $blob 00000000-0000-4000-8000-00000000beef >/dev/null
check "timeout 0: stops at once, exit 1, naming the holder: $(grep -o 'another.\{0,90\}' "$work/log.t0")" \
    "$([[ $r == 1 ]] && grep -q "another kvreconcile run holds the estate's lease (pid 4242 on lease-test, kvreconcile apply, since 2026-01-01T00:00:00Z; lease https://127.0.0.1:[0-9]*/$LEASE_ACCOUNT/$LEASE_CONTAINER/$blob); nothing was changed" "$work/log.t0"; echo $?)"

# ---- 4. kill -9 of the holder ---------------------------------------------------------------
# A run holds the lease and is frozen mid-run (azsim holds the answer to its read of the vault,
# which every run makes: after/ is converged, so nothing else may be left to read); a second run
# waits for it; kill -9 the first there: the second takes over when the 60 s lease runs out.
hold=$(hold_arm "$vault_path")
KVR_LOCK_DIR=$work/lock.a "$kvr" apply -f "$A" --wait 2m --log-format json >"$work/out.k1" 2>"$work/log.k1" &
p=$!
until [[ $(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/holds/$hold" | json 'd["state"]') == holding ]] ||
    ! kill -0 "$p" 2>/dev/null; do sleep 0.02; done
check "kill -9: the first run is held at its read of vault '$vault', with the lease" \
    "$(kill -0 "$p" 2>/dev/null && [[ $(lease_state $blob) == leased ]]; echo $?)"
KVR_LOCK_DIR=$work/lock.b "$kvr" apply -f "$A" --wait 2m --lock-timeout 3m --log-format json \
    >"$work/out.k2" 2>"$work/log.k2" &
p2=$!
E2E_PIDS="$E2E_PIDS $p $p2"
wait_for "$work/log.k2" '"event":"lock-wait"' || true
kill -KILL "$p"
killed=$(e2e_ms)
wait "$p" 2>/dev/null || true
curl -sS --cacert "$AZSIM_CA" -X DELETE "$AZSIM_URL/holds/$hold" >/dev/null
wait_for "$work/log.k2" '"event":"lease-acquired"' 120 || true
took=$(($(e2e_ms) - killed))
set +e; wait "$p2"; r=$?; set -e
echo "kill -9: the waiting run took the lease over ${took} ms after the kill (lease ${KVR_LOCK_LEASE_SECONDS:-60} s)"
check "kill -9: the waiting run took over within a lease period and a poll (${took} ms)" \
    "$([[ $took -le $(((${KVR_LOCK_LEASE_SECONDS:-60} + 5) * 1000)) ]]; echo $?)"
check "kill -9: it waited for the killed run, named by its pid ($p)" "$(grep -q "\"event\":\"lock-wait\".*pid $p on" "$work/log.k2"; echo $?)"
check "kill -9: the second run exit $r (0 or 3)" "$([[ $r == 0 || $r == 3 ]]; echo $?)"
check "kill -9: the second run ran no step outside its lease" "$([[ $(steps_outside_lease "$work/log.k2") == 0 ]]; echo $?)"
kvr_apply "kill -9: a single apply afterwards converges" 0 -f "$A" --wait 2m
e2e_estate_check "$A" "$B"
e2e_secret_scan "$B" "$A"
check "no bearer token in any output" "$(! grep -rlE 'eyJ[A-Za-z0-9_-]{20,}\.' "$work"/out.* "$work"/log.* "$work"/err.* >/dev/null 2>&1; echo $?)"
azsim_stop
e2e_sanitizer_scan
echo "exits$exits; wall $(($(e2e_ms) - t0)) ms"
e2e_finish
