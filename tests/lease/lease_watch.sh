#!/usr/bin/env bash
# Two `watch` replicas with the azureblob lock, against real Azurite (OAuth mode, HTTPS) and
# azsim, and the metrics they serve:
#   - the first replica leads (its leader lease on BLOB.leader), runs once; the second follows,
#     naming the leader from the lease's metadata, and runs nothing; the status files say who
#     leads;
#   - a save of the desired state makes exactly one run, on the leader;
#   - /metrics passes `promtool check metrics`; its counters move as runs happen; /healthz is ok;
#   - kill -9 of the leader: the follower takes over once the (15 s, for the test) leader lease
#     has run out (time printed) and runs; SIGTERM then releases the lease and exits 0.
# usage: lease_watch.sh KVRECONCILE AZSIM [EXAMPLE]
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/lib.sh"
scenario_init "$1" "$2" "${3:-new-vault}"
t0=$(e2e_ms)
azsim_start "$azsim" ${sub:+--subscription "$sub"} --rbac-delay 0 --data-keys 5 --rewrap-rate 50
azurite_start
check "Azurite (OAuth mode) created the lease container" "$([[ $(lease_container "$LEASE_CONTAINER") == 201 ]]; echo $?)"
promtool=$(command -v promtool || true)
export KVR_LOCK_LEASE_SECONDS=15 KVR_LOCK_POLL_SECONDS=1 # a quick handover, for the test
mkdir -p "$work/repo"
cp -r "$B"/. "$work/repo/"

runs() { grep -c '"event":"run-started"' "$1" 2>/dev/null || true; }
metric() { # FILE NAME{LABELS}: its value
    awk -v m="$2" '$1 == m {print $2}' "$1"
}
scrape() { # PORT OUT
    curl -sS "http://127.0.0.1:$1/metrics" >"$2"
}

start_replica() { # NAME
    "$kvr" watch "$work/repo" --interval 1h --status-file "$work/status.$1" --log-format json \
        --metrics-addr 127.0.0.1:0 >"$work/out.$1" 2>"$work/log.$1" &
    eval "pid_$1=$!"
    E2E_PIDS="$E2E_PIDS $!"
}

start_replica a
wait_for "$work/log.a" '"event":"leader"' || true
start_replica b
wait_for "$work/log.b" '"event":"following".*"leader":"pid '"$pid_a"' on ' || true
port_a=$(sed -n 's|^kvreconcile: metrics on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$work/log.a")
port_b=$(sed -n 's|^kvreconcile: metrics on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$work/log.b")
wait_for "$work/status.a" '"result": "(converged|blocked)"' || true
check "replica a leads and ran once ($(runs "$work/log.a") runs)" "$([[ $(runs "$work/log.a") == 1 ]]; echo $?)"
check "replica b follows a, named from the lease ($(grep -o '"leader":"[^"]*"' "$work/log.b" | head -1))" \
    "$(grep -q "\"event\":\"following\".*\"leader\":\"pid $pid_a on " "$work/log.b"; echo $?)"
check "status files: a leads, b names a as leader" \
    "$(json 'str(d["leading"])' <"$work/status.a" | grep -qx True && json 'd["leader"]' <"$work/status.b" | grep -q "^pid $pid_a on "; echo $?)"

scrape "$port_a" "$work/metrics.a1"
scrape "$port_b" "$work/metrics.b1"
check "/healthz answers ok" "$([[ $(curl -sS "http://127.0.0.1:$port_a/healthz") == ok ]]; echo $?)"
if [[ -n $promtool ]]; then
    "$promtool" check metrics <"$work/metrics.a1" >"$work/promtool.a" 2>&1 && pr=0 || pr=1
    check "promtool check metrics: the leader's /metrics $(tr '\n' ' ' <"$work/promtool.a")" "$pr"
    "$promtool" check metrics <"$work/metrics.b1" >"$work/promtool.b" 2>&1 && pr=0 || pr=1
    check "promtool check metrics: the follower's /metrics $(tr '\n' ' ' <"$work/promtool.b")" "$pr"
else
    check "promtool is installed (Debian package prometheus)" 1
fi
check "metrics: kvreconcile_leader 1 on a, 0 on b" \
    "$([[ $(metric "$work/metrics.a1" kvreconcile_leader) == 1 && $(metric "$work/metrics.b1" kvreconcile_leader) == 0 ]]; echo $?)"
ok1=$(metric "$work/metrics.a1" 'kvreconcile_runs_total{result="converged"}')
bl1=$(metric "$work/metrics.a1" 'kvreconcile_runs_total{result="blocked"}')
check "metrics: one run counted on a (converged $ok1, blocked $bl1), none on b" \
    "$([[ $((ok1 + bl1)) == 1 && $(metric "$work/metrics.b1" kvreconcile_run_duration_seconds_count) == 0 ]]; echo $?)"
steps1=$(awk '$1 ~ /^kvreconcile_steps_total\{.*result="done"/ {n += $2} END {print n + 0}' "$work/metrics.a1")
check "metrics: the first run's steps counted by kind ($steps1 done)" "$([[ $steps1 -gt 0 ]]; echo $?)"
check "metrics: last success timestamp set" "$([[ $(metric "$work/metrics.a1" kvreconcile_last_success_timestamp_seconds) != 0 ]]; echo $?)"

# a save: one run, on the leader. Its end is known from the run counter of /metrics, which moves
# after the status file is written; not from the status file changing, which it need not: it
# says the time to the second, and a run of an estate already converged may start and end
# within the second the first run ended in.
f=$(ls "$work/repo"/*.yaml | head -1)
printf '# saved at %s\n' "$(date +%s%N)" >>"$f"
for _ in $(seq 1 1200); do # up to a minute; the checks below say what did not happen
    [[ $(runs "$work/log.a") -ge 2 ]] && scrape "$port_a" "$work/metrics.a2" &&
        [[ $(metric "$work/metrics.a2" kvreconcile_run_duration_seconds_count) -ge 2 ]] && break
    kill -0 "$pid_a" 2>/dev/null || break
    sleep 0.05
done
scrape "$port_a" "$work/metrics.a2"
total2=$(metric "$work/metrics.a2" kvreconcile_run_duration_seconds_count)
check "a save made one run on the leader (runs: a $(runs "$work/log.a"), b $(runs "$work/log.b"))" \
    "$([[ $(runs "$work/log.a") == 2 && $(runs "$work/log.b") == 0 ]]; echo $?)"
check "metrics: the run counter moved (runs counted: $total2)" "$([[ $total2 == 2 ]]; echo $?)"

# kill -9 of the leader: the follower takes over when the leader lease runs out
kill -KILL "$pid_a"
killed=$(e2e_ms)
wait "$pid_a" 2>/dev/null || true
wait_for "$work/log.b" '"event":"leader"' 60 || true
took=$(($(e2e_ms) - killed))
echo "kill -9 of the leader: the follower led ${took} ms later (leader lease ${KVR_LOCK_LEASE_SECONDS} s)"
check "kill -9: b took over within a lease period and a poll (${took} ms)" \
    "$([[ $took -le $(((KVR_LOCK_LEASE_SECONDS + 3) * 1000)) ]] && grep -q '"event":"leader"' "$work/log.b"; echo $?)"
wait_for "$work/status.b" '"leading": true' || true
until [[ $(runs "$work/log.b") -ge 1 ]] && grep -q '"result": "\(converged\|blocked\)"' "$work/status.b"; do
    kill -0 "$pid_b" 2>/dev/null || break
    sleep 0.05
done
check "kill -9: the new leader ran once ($(runs "$work/log.b") runs), status file says it leads" \
    "$([[ $(runs "$work/log.b") == 1 ]] && json 'str(d["leading"])' <"$work/status.b" | grep -qx True; echo $?)"
check "the save made exactly one run on a ($(runs "$work/log.a") in all)" "$([[ $(runs "$work/log.a") == 2 ]]; echo $?)"
scrape "$port_b" "$work/metrics.b2"
check "metrics: kvreconcile_leader 1 on b now" "$([[ $(metric "$work/metrics.b2" kvreconcile_leader) == 1 ]]; echo $?)"
kill -TERM "$pid_b"
set +e; wait "$pid_b"; rb=$?; set -e
check "SIGTERM: b stops with 0 (got $rb) and releases its leader lease ($(lease_state kvreconcile.lock.leader))" \
    "$([[ $rb == 0 && $(lease_state kvreconcile.lock.leader) == available ]]; echo $?)"
kvr_plan_empty "$work/repo"
E2E_PIDS=$AZURITE_PID
azsim_stop
e2e_sanitizer_scan
echo "wall $(($(e2e_ms) - t0)) ms"
e2e_finish
