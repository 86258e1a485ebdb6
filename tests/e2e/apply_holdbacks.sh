#!/usr/bin/env bash
# Hold-backs, end to end against azsim. After the rotate-key example's before/ state is applied:
#  1. a desired state that drops key 'backup-dek' (still wrapping every data key through the Used
#     profile) and moves to a new key: apply switches the service to the new key, but the old key
#     is not deleted: it waits until no profile references it and retention has passed; only then
#     is it soft-deleted (never purged);
#  2. a desired state that changes properties Azure cannot change (location, softDeleteDays,
#     purge protection off) changes nothing, says why, and fails (exit 1) so no pipeline takes
#     it for success.
# The consuming service's unrecoverable count stays 0 throughout.
# usage: apply_holdbacks.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 2 --data-keys 20 --rewrap-rate 20
key_state() { # prints "active", "deleted" or "missing"
    local tok
    tok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
    local base="https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT"
    if [ "$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" "$base/keys/backup-dek/?api-version=7.5")" = 200 ]; then
        echo active
    elif [ "$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$AZSIM_CA" -H "Authorization: Bearer $tok" "$base/deletedkeys/backup-dek?api-version=7.5")" = 200 ]; then
        echo deleted
    else
        echo missing
    fi
}
run() { # expected-exit args...
    local want=$1 rc
    shift
    set +e
    "$kvr" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    set -e
    [[ $rc == "$want" ]] || { echo "exit $rc, expected $want:"; cat "$work/err"; }
    [[ $rc == "$want" ]]
}
run 0 apply -f "$root/examples/rotate-key/before" --wait 2m
check "before/ applied" $?

I="$root/tests/fixtures/plan/holdback-immutable-changes/desired"
run 1 apply -f "$I"
check "immutable changes: apply changes nothing and fails (exit 1)" $?
check "it says what it held back and why" "$(grep -q 'held back: vault' "$work/err" && grep -q 'purge protection cannot be turned off' "$work/err"; echo $?)"

D="$root/tests/fixtures/plan/holdback-key-removed-while-used/desired"
run 3 apply -f "$D" --wait 1m
check "dropping the key in use: apply switches to the new key and stops at the gates (exit 3)" $?
check "the dropped key still exists" "$([[ $(key_state) == active ]]; echo $?)"
check "no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
azsim_advance $((31 * 86400))
run 3 apply -f "$D"
check "31 days later: the old profile goes, the key still waits (exit 3)" $?
check "the dropped key still exists after 31 days" "$([[ $(key_state) == active ]]; echo $?)"
azsim_advance $((60 * 86400))
run 0 apply -f "$D"
check "91 days later: the key is retired (exit 0)" $?
check "the key is soft-deleted, not purged (recoverable)" "$([[ $(key_state) == deleted ]]; echo $?)"
check "no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"

e2e_finish
