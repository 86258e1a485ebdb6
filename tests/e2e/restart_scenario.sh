#!/usr/bin/env bash
# azsim restart mid-apply, for one example scenario: with before/ applied, an apply of after/ is
# started, and as soon as azsim has carried out its first write azsim is killed (SIGKILL) and
# started again on the same --data dir and port. The running apply must either resume (its
# requests are retried while azsim is away: exit 0 or 3) or fail cleanly (exit 1 with an error
# message, no crash, no sanitizer report). Then new applies must converge through the gates and
# retirements with nothing lost: the checks of the crash suite (one app, client secrets with their
# stored copies, one key version per generation, nothing kept deleted, generated values unchanged,
# plan empty), no secret value in any output.
# usage: restart_scenario.sh KVRECONCILE AZSIM EXAMPLE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$@"
opts=(${sub:+--subscription "$sub"} --rbac-delay 3 --data-keys 20 --rewrap-rate 10)
azsim_start "$azsim" "${opts[@]}"
t0=$(e2e_ms)
kvr_apply "apply before/" 0 -f "$B" --wait 2m
e2e_estate_snapshot "$B" "$A"

# writes azsim carried out so far (every op whose last part names a mutation)
writes() {
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'sum(n for op, n in d["requests"].items()
        if op.rsplit(".", 1)[-1] in ("put", "create", "set", "addPassword", "removePassword", "apply",
            "update", "patch", "delete", "setrotationpolicy", "credentials"))'
}
base=$(writes)
port=$AZSIM_PORT
"$kvr" apply -f "$A" --wait 1m --log-format json >"$work/out.mid" 2>"$work/err.mid" &
apid=$!
E2E_PIDS=$apid
deadline=$(($(e2e_ms) + 120000))
while [[ $(writes) -le $base ]] && kill -0 "$apid" 2>/dev/null && [[ $(e2e_ms) -lt $deadline ]]; do
    sleep 0.05
done
running=$(kill -0 "$apid" 2>/dev/null && echo 1 || echo 0)
check "the apply was still running after azsim's first write of it" "$([[ $running == 1 ]]; echo $?)"
azsim_kill
killed_at=$(($(e2e_ms) - t0))
azsim_restart "$azsim" "${opts[@]}"
check "azsim restarted on the same port ($port) and --data dir" "$([[ $AZSIM_PORT == "$port" ]]; echo $?)"
deadline=$(($(e2e_ms) + 300000))
while kill -0 "$apid" 2>/dev/null && [[ $(e2e_ms) -lt $deadline ]]; do sleep 0.2; done
if kill -0 "$apid" 2>/dev/null; then
    check "the interrupted apply ended within 300 s" 1
    kill -KILL "$apid" 2>/dev/null || true
fi
set +e; wait "$apid"; mid=$?; set -e
E2E_PIDS=
case $mid in
0 | 3) how="resumed (exit $mid)" ok=0 ;;
1) how="failed cleanly (exit 1): $(grep -m1 -o '"message":"[^"]*"' "$work/err.mid" || head -c 300 "$work/err.mid")"
   ok=$(grep -q 'error' "$work/err.mid"; echo $?) ;;
*) how="died (exit $mid)" ok=1 ;;
esac
check "the interrupted apply $how" "$ok"
[[ $ok == 0 ]] || tail -20 "$work/err.mid"
check "no data key lost across the restart" "$([[ $(azsim_lost) == 0 ]]; echo $?)"

kvr_apply "apply after/ after the restart" "0 3" -f "$A" --wait 1m
for days in 8 32 92; do
    azsim_advance $((days * 86400))
    kvr_apply "apply after/ $days days later" "0 3" -f "$A" --wait 1m
done
check "after/ converged (exit 0 at the end)" "$([[ $rc == 0 ]]; echo $?)"
kvr_plan_empty "$A"
e2e_estate_check "$A" "$B"
e2e_secret_scan "$B" "$A"
azsim_stop
e2e_sanitizer_scan
echo "$example: azsim killed $killed_at ms in, at the apply's first write; the apply $how; wall $(($(e2e_ms) - t0)) ms"
e2e_finish
