#!/usr/bin/env bash
# Saved and offline plans (issue #14), end to end against azsim, on the rotate-key example:
#   - plan --out writes a saved plan, plan --save-live the live state it read; neither holds a
#     secret value
#   - plan --live plans against that file with azsim stopped and no credential, and prints the
#     same plan (text and JSON)
#   - apply PLANFILE refuses, before changing anything, when a desired file changed since, and
#     when the live estate changed since (exit 1, "the plan is stale")
#   - apply PLANFILE of an unchanged estate runs the reviewed steps, each one the plan showed,
#     and stops at the retention gate as apply -f does
# usage: saved_plan.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
B="$root/examples/rotate-key/before"
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0 --data-keys 20 --rewrap-rate 10
kvr_apply "apply before/ on an empty estate" 0 -f "$B" --wait 2m
# the pull request, in a copy that the test may edit
cp -r "$root/examples/rotate-key/after" "$work/A"
A="$work/A"
cd "$work"
# the simulator's operations that change something (reads, tokens and its admin API do not)
# what changed the estate: every request but reads (a Resource Graph query is a POST that reads)
writes() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json '" ".join("%s=%d" % (k, v) for k, v in sorted(d["requests"].items()) if not k.startswith(("admin", "login", "consumer", "arm.resourceGraph")) and not any(w in k.split(".")[-1].lower() for w in ("get", "list", "versions", "show", "read", "challenge")))'; }

set +e
"$kvr" plan -f A --out plan1 --save-live live1.json >"$work/plan.txt" 2>"$work/plan.err"; rc=$?
"$kvr" plan -f A -o json --save-live live2.json >"$work/plan.json" 2>/dev/null
set -e
check "plan --out --save-live (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/plan.err"
check "the saved plan is a saved plan" "$(json 'd["format"]' <plan1 | grep -qx kvreconcile-saved-plan; echo $?)"
check "the saved plan approves every step shown" \
    "$([[ $(json 'len(d["approved"])' <plan1) == $(json 'len(d["steps"])' <"$work/plan.json") ]]; echo $?)"
check "the live file is mode 0600" "$([[ $(stat -c %a live1.json) == 600 ]]; echo $?)"

# offline: no simulator, no credential, no endpoint
azsim_stop
set +e
env -u AZURE_CLIENT_SECRET -u AZURE_CLIENT_ID -u AZURE_TENANT_ID -u KVR_ARM_ENDPOINT \
    -u KVR_GRAPH_ENDPOINT -u KVR_VAULT_SUFFIX -u KVR_PROFILE_ENDPOINT \
    "$kvr" plan -f A --live live1.json >"$work/offline.txt" 2>"$work/offline.err"; rc=$?
env -u AZURE_CLIENT_SECRET -u AZURE_CLIENT_ID "$kvr" plan -f A --live live2.json -o json \
    >"$work/offline.json" 2>/dev/null
set -e
check "plan --live with azsim stopped and no credential (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || cat "$work/offline.err"
check "the offline plan is the same plan (text)" "$(diff "$work/plan.txt" "$work/offline.txt" >&2; echo $?)"
check "the offline plan is the same plan (json)" "$(diff "$work/plan.json" "$work/offline.json" >&2; echo $?)"
azsim_restart "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0 --data-keys 20 --rewrap-rate 10

# stale: a desired file changed since the plan
"$kvr" plan -f A --out plan2 >/dev/null
f=$(ls A/*.yaml | head -1)
echo "# edited after the plan" >>"$f"
w0=$(writes)
set +e; "$kvr" apply plan2 >"$work/out.stale1" 2>"$work/err.stale1"; rc=$?; set -e
check "apply of a plan whose files changed: exit 1 ($rc)" "$([[ $rc == 1 ]]; echo $?)"
check "  says the plan is stale and names the file" "$(grep -q "the plan is stale: '.*$(basename "$f")' changed" "$work/err.stale1"; echo $?)"
check "  changed nothing" "$(w1=$(writes); [[ $w1 == "$w0" ]] || echo "before: $w0; after: $w1" >&2; [[ $w1 == "$w0" ]]; echo $?)"
sed -i '$ d' "$f"

# stale: the live estate changed since the plan (a tag put on the vault out of band)
"$kvr" plan -f A --out plan3 >/dev/null
arm=$(azsim_token "$KVR_ARM_ENDPOINT")
vault=$(sed -n 's/^ *- *name: *//p; s/^ *name: *//p' "$B"/*.yaml | head -1)
vid=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $arm" \
    "$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01" |
    json 'd["value"][0]["id"]')
curl -sS --fail --cacert "$AZSIM_CA" -X PATCH "$KVR_ARM_ENDPOINT$vid?api-version=2024-11-01" \
    -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' \
    -d '{"tags":{"changed-by":"someone-else"}}' >/dev/null
w0=$(writes)
set +e; "$kvr" apply plan3 >"$work/out.stale2" 2>"$work/err.stale2"; rc=$?; set -e
check "apply of a plan whose live estate changed: exit 1 ($rc)" "$([[ $rc == 1 ]]; echo $?)"
check "  says the live estate changed" "$(grep -q 'the plan is stale: the live estate changed' "$work/err.stale2"; echo $?)"
check "  changed nothing" "$(w1=$(writes); [[ $w1 == "$w0" ]] || echo "before: $w0; after: $w1" >&2; [[ $w1 == "$w0" ]]; echo $?)"

# the reviewed plan of the estate as it is now runs, step by step as shown
"$kvr" plan -f A --out plan4 -o json >"$work/plan4.json"
set +e; "$kvr" apply plan4 --wait 60s --log-format json >"$work/out.apply" 2>"$work/err.apply"; rc=$?; set -e
check "apply PLANFILE: blocked on retention (exit 3, got $rc)" "$([[ $rc == 3 ]]; echo $?)"
check "  the step count never changed" "$(! grep -q '"event":"replanned"' "$work/err.apply"; echo $?)"
[[ $rc == 3 ]] || tail -5 "$work/err.apply"
check "  every step it ran is one the plan showed" "$(/usr/bin/python3 - "$work/plan4.json" "$work/err.apply" <<'PY'
import json, sys
shown = {(s["kind"], s["object"], s["summary"]) for s in json.load(open(sys.argv[1]))["steps"]}
ran = [json.loads(l) for l in open(sys.argv[2]) if '"event":"step"' in l]
missing = [r for r in ran if (r["kind"], r.get("object"), r["summary"]) not in shown]
print("ran %d steps, %d not shown: %s" % (len(ran), len(missing), missing), file=sys.stderr)
sys.exit(0 if ran and not missing else 1)
PY
echo $?)"
check "  no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
check "no secret value in the saved plans or the live file" \
    "$(! grep -qF "$AZURE_CLIENT_SECRET" plan1 plan2 plan3 plan4 live1.json "$work"/*.txt "$work"/err.*; echo $?)"
e2e_finish
