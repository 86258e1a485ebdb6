#!/usr/bin/env bash
# While Key Vault's read budget binds, the plan has only as many vault reads out as keep it busy
# (prov_read.c, PACE_HEADROOM; tests/bench/RESULTS.md, N): more would only wait for the budget,
# each on a connection of its own. 24 vaults of 4 keys ask for at least 24 * (2 + 2 * 4) = 240
# Key Vault reads. azsim holds each vault's first read (its key list, the only read a vault
# whose challenge is not known yet may have out), so that what is out is decided by the reader
# alone, not by timing:
#   - with KVR_KV_READ_BUDGET=400 (47 at once, then 35 a second), 240 reads are more than the
#     4.3 times 47 past which the budget binds: 16 vaults (PACE_CONNS_MIN, as no read has
#     answered yet) have their first read out and held, and the other 8 are not asked for;
#   - with the default budget (2,000 at once) it does not bind: all 24 are out at once;
#   - the vaults found count, not the declared ones: with KVR_KV_READ_BUDGET=1000 (117 at once)
#     the budget binds past 507 reads; a desired state of 64 such vaults declares 640, but only
#     the 24 made are found (240), so all 24 are out at once.
# azsim lists a group's vaults in one page, so every vault is counted before the first vault
# read goes. Each plan then ends with exit 0 once the holds are let go.
# usage: plan_kv_transfers.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
sub=5c1e8d2a-7b3f-4a96-9e0d-b4f2c6a81d37
prefix=kv-out
nvaults=24
mkdir "$work/D" "$work/D64"
vaults_keys_estate "$sub" "$prefix" rg-out "$nvaults" 4 >"$work/D/estate.yaml"
vaults_keys_estate "$sub" "$prefix" rg-out 64 4 >"$work/D64/estate.yaml"
estate_applied "apply: $nvaults vaults of 4 keys" "$sub"

# hold each vault's key list; then the holds holding an answer, once `want` do (or 40 s passed)
hold_all() {
    ids=()
    for i in $(seq -f "%02g" 0 $((nvaults - 1))); do
        ids+=("$(azsim_hold GET "$prefix$i.vault.localhost" /keys)")
    done
}
holding() {
    local n=0 id
    for id in "${ids[@]}"; do
        [[ $(azsim_hold_state "$id") == holding ]] && n=$((n + 1))
    done
    echo "$n"
}
wait_holding() { # WANT PID
    local end=$((SECONDS + 40)) n
    while ((SECONDS < end)); do
        n=$(holding)
        ((n >= $1)) && break
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    holding
}
release_all() {
    local id
    for id in "${ids[@]}"; do
        azsim_release "$id"
    done
}
plan_with_holds() { # NAME DIR WANT [ENV...]: the vaults out while every first read is held
    local name=$1 dir=$2 want=$3 pid rc n
    shift 3
    hold_all
    env "$@" "$kvr" plan -f "$dir" >"out.$name" 2>"err.$name" &
    pid=$!
    E2E_PIDS=$pid
    n=$(wait_holding "$want" "$pid")
    # none more goes while the held ones stay out: give it a second to show otherwise
    sleep 1
    out_now=$(holding)
    echo "$name: $n vaults out, $out_now a second later (of $nvaults)"
    release_all
    set +e; wait "$pid"; rc=$?; set -e
    E2E_PIDS=
    check "$name: the plan ends (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
    [[ $rc == 0 ]] || cat "out.$name" "err.$name"
}

plan_with_holds bound D 16 KVR_KV_READ_BUDGET=400
check "budget binds: 16 vaults have a read out ($out_now)" "$([[ $out_now == 16 ]]; echo $?)"

plan_with_holds free D "$nvaults"
check "budget does not bind: all $nvaults vaults have a read out ($out_now)" \
    "$([[ $out_now == "$nvaults" ]]; echo $?)"

plan_with_holds found D64 "$nvaults" KVR_KV_READ_BUDGET=1000
check "40 declared vaults not made yet do not count: all $nvaults have a read out ($out_now)" \
    "$([[ $out_now == "$nvaults" ]]; echo $?)"
named=0
for i in $(seq "$nvaults" 63); do
    grep -q "$prefix$i" out.found && named=$((named + 1))
done
check "  and the plan names the 40 it would make ($named)" "$([[ $named == 40 ]]; echo $?)"
e2e_sanitizer_scan
e2e_finish
