#!/usr/bin/env bash
# kvreconcile against Entra's replication delay. azsim --directory-delay makes the service
# principal kvreconcile creates unknown to role assignments (400 PrincipalNotFound) until the
# test ends the delay (POST /directory/replicate) once the first refusal was answered: the
# apply must retry the role assignment and converge. Then, with a delay longer than any run, the
# service principal is deleted from the directory while kvreconcile waits for it: the apply must
# stop at once with a message naming the app and the principal, exit 1.
# With a third argument "never" (ctest e2e_directory_never, slow): the principal stays unknown to
# role assignments for longer than kvreconcile waits (90 s): the apply gives up with a message
# naming the app, the principal and the wait, exit 1.
# usage: test_directory_e2e.sh KVRECONCILE AZSIM [never]
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
scenario_init "$1" "$2" rotate-app-credentials
stats() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json "d['requests'].get('$1', 0)"; }
if [[ ${3:-} == never ]]; then
    azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 1 --data-keys 20 --directory-delay 86400
    start=$(e2e_ms)
    set +e
    "$kvr" apply -f "$B" --wait 2m >"$work/out.n" 2>"$work/err.n"
    rc=$?
    set -e
    took=$(($(e2e_ms) - start))
    check "apply gives up with exit 1 (exit $rc)" "$([[ $rc == 1 ]]; echo $?)"
    # kvreconcile stops once its next pause (at most 8 s) would pass 90 s: after 82 to 90 s
    check "after kvreconcile's bound ($took ms: 82 to 90 s of waiting, less than 150 s in all)" \
        "$([[ $took -ge 82000 && $took -lt 150000 ]]; echo $?)"
    check "the error names the app, the principal and the wait" \
        "$(grep -qE "assign role to app 'aos-backup': Azure RBAC still does not know its service principal '[0-9a-f-]{36}' after [0-9]+ s" "$work/err.n"; echo $?)"
    n=$(stats arm.roleAssignments.principal-not-found)
    check "retried with backoff, not hammered ($n PUTs in 90 s)" "$([[ $n -ge 5 && $n -le 20 ]]; echo $?)"
    [[ $rc == 1 ]] || tail -20 "$work/err.n"
    e2e_finish
    exit
fi
kvr() { # kvr NAME ARGS...: stdout to $work/out.NAME, stderr to $work/err.NAME; sets rc
    local name=$1
    shift
    set +e
    "$kvr" "$@" >"$work/out.$name" 2>"$work/err.$name"
    rc=$?
    set -e
}

# apply_until_refused N: an apply in the background (output in out.N/err.N, pid in $kpid), and
# a wait for the event: its first role assignment answered PrincipalNotFound (or its end)
apply_until_refused() {
    "$kvr" apply -f "$B" --wait 2m >"$work/out.$1" 2>"$work/err.$1" &
    kpid=$!
    E2E_PIDS="$kpid"
    for _ in $(seq 1 1200); do
        [[ $(stats arm.roleAssignments.principal-not-found) -ge 1 ]] && break
        kill -0 "$kpid" 2>/dev/null || break
        sleep 0.1
    done
}

# 1. the new service principal replicates once the role assignment has met PrincipalNotFound (the
#    test ends the delay then, rather than race a 4 s delay): it is retried, apply converges
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 1 --data-keys 20 --directory-delay 86400
apply_until_refused 1
curl -sS --fail --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/directory/replicate" -o /dev/null
set +e; wait "$kpid"; rc=$?; set -e
E2E_PIDS=
check "apply converges once the directory has replicated (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
[[ $rc == 0 ]] || tail -20 "$work/err.1"
n=$(stats arm.roleAssignments.principal-not-found)
check "the role assignment met PrincipalNotFound first ($n times) and was retried" \
    "$([[ $n -ge 1 ]]; echo $?)"
kvr 2 plan -f "$B" --detailed-exitcode
check "converged: plan is empty (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
azsim_stop

# 2. the service principal leaves the directory while kvreconcile waits for it: clear error, exit 1
rm -rf "$work/sim"
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 1 --data-keys 20 --directory-delay 86400
apply_until_refused 3
gt=$(azsim_token "$KVR_GRAPH_ENDPOINT")
sp=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $gt" \
    "$KVR_GRAPH_ENDPOINT/v1.0/servicePrincipals" | json '[s["id"] for s in d["value"] if "aos-backup" in s["displayName"]][0]')
curl -sS --cacert "$AZSIM_CA" -X DELETE -H "Authorization: Bearer $gt" \
    "$KVR_GRAPH_ENDPOINT/v1.0/servicePrincipals/$sp" -o /dev/null
start=$(e2e_ms)
set +e
wait "$kpid"
rc=$?
set -e
E2E_PIDS=
took=$(($(e2e_ms) - start))
check "apply stops with exit 1 (exit $rc)" "$([[ $rc == 1 ]]; echo $?)"
check "at once: $took ms after the principal left (under 20 s)" "$([[ $took -lt 20000 ]]; echo $?)"
check "the error names the app and its service principal" \
    "$(grep -q "assign role to app 'aos-backup': its service principal '$sp' does not exist in the directory" "$work/err.3"; echo $?)"
[[ $rc == 1 ]] || tail -20 "$work/err.3"
e2e_finish
