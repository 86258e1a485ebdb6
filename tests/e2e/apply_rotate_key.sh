#!/usr/bin/env bash
# The rotate-key scenario end to end: kvreconcile apply against azsim, from an empty estate to
# before/, then the pull request (after/) through every gate, moving azsim's clock for the
# retention periods. At every step the consuming service's unrecoverable count must be 0; a
# second apply must do nothing; nothing is retired before its retention has passed; and no secret
# value may appear in any output.
# usage: apply_rotate_key.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 3 --data-keys 20 --rewrap-rate 10
admin() { curl -sS --cacert "$AZSIM_CA" "$@"; }
n=0
apply() { # name expected-exit args...
    local name=$1 want=$2 rc
    shift 2
    n=$((n + 1))
    set +e
    "$kvr" apply "$@" >"$work/out.$n" 2>"$work/err.$n"
    rc=$?
    set -e
    check "$name: exit $want" "$([[ $rc == "$want" ]]; echo $?)"
    [[ $rc == "$want" ]] || cat "$work/err.$n"
    check "$name: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
}
B="$root/examples/rotate-key/before"
A="$root/examples/rotate-key/after"

apply "apply before/ on an empty estate" 0 -f "$B" --wait 2m
check "the before/ profile is Used" "$(admin "$AZSIM_URL/consumer" | json 'd["used"]' | grep -qx contoso-backup-2026-05; echo $?)"
apply "apply before/ again" 0 -f "$B"
check "a second apply does nothing" "$(grep -q 'nothing to do: 0 steps done' "$work/err.$n"; echo $?)"
set +e; "$kvr" plan -f "$B" --detailed-exitcode >/dev/null 2>&1; rc=$?; set -e
check "plan of before/ is empty (exit 0)" "$([[ $rc == 0 ]]; echo $?)"

apply "apply after/ (the pull request)" 3 -f "$A" --wait 20s --log-format json
check "json progress lines" "$(/usr/bin/python3 -c '
import json,sys
ev=[json.loads(l)["event"] for l in open(sys.argv[1])]
assert "step" in ev and ev[-1]=="blocked", ev' "$work/err.$n"; echo $?)"
check "the new profile is Used" "$(admin "$AZSIM_URL/consumer" | json 'd["used"]' | grep -qx contoso-backup-2026-11; echo $?)"
check "blocked on retention" "$(grep -q '"event":"blocked".*retention' "$work/err.$n"; echo $?)"

apply "still within retention: nothing retired" 3 -f "$A"
check "the old profile still exists" "$("$kvr" plan -f "$A" | grep -q "profile 'contoso-backup-2026-05': delete"; echo $?)"

azsim_advance $((31 * 86400))
apply "after 31 days: the old profile goes" 3 -f "$A"
check "old profile deleted" "$(grep -q "profile 'contoso-backup-2026-05': delete" "$work/err.$n"; echo $?)"
check "the old key version waits for its own retention" "$(grep -q 'blocked: waiting for retention P90D' "$work/err.$n"; echo $?)"
azsim_advance $((60 * 86400))
apply "after 91 days: the old key version is disabled" 0 -f "$A"
check "old key version disabled" "$(grep -q 'disable and expire' "$work/err.$n"; echo $?)"
apply "converged: apply again" 0 -f "$A"
check "nothing to do" "$(grep -q 'nothing to do' "$work/err.$n"; echo $?)"
set +e; "$kvr" plan -f "$A" --detailed-exitcode >"$work/out.plan" 2>&1; rc=$?; set -e
check "plan of after/ is empty (exit 0)" "$([[ $rc == 0 ]]; echo $?)"

# no secret value in any output: the stored client secret and the generated passphrase
tok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
leaks=0
for s in aos-backup-cred-2026-05 backup-export-passphrase; do
    v=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets/$s?api-version=7.5" | json 'd["value"]')
    [ ${#v} -ge 16 ] || leaks=1
    if grep -rqF -- "$v" "$work"/out.* "$work"/err.*; then leaks=1; fi
done
check "no secret value in any output of kvreconcile" "$leaks"
e2e_finish
