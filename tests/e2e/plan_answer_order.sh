#!/usr/bin/env bash
# The live state a plan reads does not depend on the order its answers arrive. The reader hands
# out each read as soon as what it depends on has answered (prov_read.c), so its handlers run in
# the order the answers come back; the live model is put in one order at the end. Here two vaults,
# each in its own resource group (one GET each), and azsim holds answers so that one read sees
# vault a's answer first and the next vault b's:
#   - both reads save the same live state (--save-live, the clock aside)
#   - the saved plan of the first is applied after a read that saw the answers the other way
#     round, not refused as stale (its live digest is the same)
# The order is made with holds, not left to chance: the first vault's Key Vault read (its key
# list, queued once its vault GET has answered) is held until the second vault's GET, held too,
# has been let go.
# usage: plan_answer_order.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
sub=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
mkdir "$work/D"
for v in a b; do
    cat <<EOF
  - name: kv-order-$v
    resourceGroup: rg-order-$v
    location: westeurope
    sku: standard
    rbac: true
    softDeleteDays: 7
    purgeProtection: false
EOF
done | { printf 'apiVersion: kvreconcile/v1\nsubscription: %s\nvaults:\n' "$sub"; cat; } >"$work/D/estate.yaml"
estate_applied "apply: the two vaults" "$sub"

# ordered NAME FIRST SECOND kvreconcile-args...: runs kvreconcile with vault FIRST's answer handled
# before vault SECOND's; output in out.NAME / err.NAME, exit status in $rc, $ordered 0 when the
# holds worked as intended
ordered() {
    local name=$1 first=$2 second=$3 pid h1 h2
    shift 3
    h1=$(azsim_hold GET management.localhost \
        "/subscriptions/$sub/resourceGroups/rg-order-$second/providers/Microsoft.KeyVault/vaults/kv-order-$second")
    h2=$(azsim_hold GET "kv-order-$first.vault.localhost" /keys)
    "$kvr" "$@" >"$work/out.$name" 2>"$work/err.$name" &
    pid=$!
    E2E_PIDS=$pid
    ordered=1
    # first's key list is asked for once first's vault has answered; second's answer is held
    if azsim_held $pid "$h2" && azsim_held $pid "$h1"; then
        ordered=0
    fi
    # first's vault was handled (its key list is held); second's is handled only from now
    azsim_release "$h1"
    azsim_release "$h2"
    set +e; wait $pid; rc=$?; set -e
    E2E_PIDS=
}

ordered ab a b plan -f D --out plan.ab --save-live live.ab.json
check "plan, vault a's answer first (exit $rc)" "$([[ $rc == 0 && $ordered == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/err.ab"
ordered ba b a plan -f D --save-live live.ba.json
check "plan, vault b's answer first (exit $rc)" "$([[ $rc == 0 && $ordered == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/err.ba"
same=$(/usr/bin/python3 - live.ab.json live.ba.json <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for d in (a, b):
    d.pop("now", None)
print(0 if a == b else 1)
if a != b:
    print([v["name"] for v in a.get("vaults", [])], [v["name"] for v in b.get("vaults", [])],
          file=sys.stderr)
PY
)
check "the two reads saved the same live state" "$same"
ordered apply b a apply plan.ab
check "apply of the first plan after a read in the other order (exit $rc)" \
    "$([[ $rc == 0 && $ordered == 0 ]]; echo $?)"
check "  was not refused as stale" "$(! grep -q 'stale' "$work/err.apply"; echo $?)"
[[ $rc == 0 ]] || cat "$work/err.apply"
check "  no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
e2e_sanitizer_scan
e2e_finish
