#!/usr/bin/env bash
# One example scenario end to end against azsim: apply before/ on an empty estate (converged),
# then after/ (the pull request) through its gates, moving azsim's clock past the retention
# periods, until apply converges and plan is empty. At every step the consuming service's
# unrecoverable count must be 0, and no secret value of the estate may appear in any output.
# usage: apply_scenario.sh KVRECONCILE AZSIM EXAMPLE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$@"
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 3 --data-keys 20 --rewrap-rate 10
n=0
apply() { # name allowed-exits args...
    local name=$1 want=$2 rc
    shift 2
    n=$((n + 1))
    set +e
    "$kvr" apply "$@" >"$work/out.$n" 2>"$work/err.$n"
    rc=$?
    set -e
    check "$name: exit $rc" "$([[ " $want " == *" $rc "* ]]; echo $?)"
    [[ " $want " == *" $rc "* ]] || cat "$work/err.$n"
    check "$name: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
}
apply "apply before/" 0 -f "$B" --wait 2m
apply "apply before/ again: nothing to do" 0 -f "$B"
check "second apply did nothing" "$(grep -q 'nothing to do' "$work/err.$n"; echo $?)"
# the plan of the pull request lists the steps the example's README promises, in its order
if [[ -f "$root/tests/e2e/expected/$example.plan" ]]; then
    set +e; NO_COLOR=1 "$kvr" plan -f "$A" --detailed-exitcode >"$work/out.prplan" 2>&1; rc=$?; set -e
    check "plan of after/: exit 2 (changes pending)" "$([[ $rc == 2 ]]; echo $?)"
    sed -n 's/^ *\([0-9][0-9]* [-+~⏸] \)/\1/p' "$work/out.prplan" >"$work/steps.prplan"
    check "plan of after/: the README's steps" \
        "$(diff -u "$root/tests/e2e/expected/$example.plan" "$work/steps.prplan" >&2; echo $?)"
fi
# what the example's before/ cannot declare (e.g. a certificate to relocate) is seeded here
seed="$root/tests/e2e/seed/$example.sh"
[[ -f $seed ]] && . "$seed"
apply "apply after/" "0 3" -f "$A" --wait 1m
for days in 8 32 92; do
    azsim_advance $((days * 86400))
    apply "apply after/ $days days later" "0 3" -f "$A"
done
set +e; "$kvr" plan -f "$A" --detailed-exitcode >"$work/out.plan" 2>&1; rc=$?; set -e
check "converged: plan of after/ is empty" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/out.plan"
declare -F scenario_verify >/dev/null && scenario_verify
# every secret value in the estate's vaults must be absent from every output
tok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
leaks=0 scanned=0
for v in $(sed -n 's/^  - name: *//p' "$A"/vaults.yaml); do
    for id in $(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" \
        "https://$v.vault.localhost:$AZSIM_PORT/secrets?api-version=7.5" 2>/dev/null | json '" ".join(i["id"] for i in d.get("value",[]))' 2>/dev/null); do
        val=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" "$id?api-version=7.5" | json 'd["value"]')
        scanned=$((scanned + 1))
        if grep -rqF -- "$val" "$work"/out.* "$work"/err.*; then leaks=$((leaks + 1)); fi
    done
done
check "no secret value in any output ($scanned values scanned)" "$([[ $leaks == 0 && $scanned -gt 0 ]]; echo $?)"
e2e_finish
