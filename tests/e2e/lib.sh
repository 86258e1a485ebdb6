# Shared by the end-to-end scripts (sourced, not run): azsim's lifecycle on a free loopback port
# below the ephemeral range (tests/azsim/port.sh), a few REST helpers, and the "N passed, N
# failed" bookkeeping.
#
#   e2e_init                         scratch dir in $work, cleanup on exit (also of $E2E_PIDS)
#   scenario_init KVR AZSIM EXAMPLE  e2e_init, and $kvr, $azsim, $example, $root, $B (before/),
#                                    $A (after/), $sub (the example's subscription)
#   azsim_start AZSIM [OPTIONS...]   start azsim, wait until ready, export its azsim.env
#   check NAME STATUS                record one check (STATUS 0 = ok)
#   json EXPR                        evaluate a Python expression over JSON on stdin (d)
#   azsim_token RESOURCE             bearer token of the bootstrap principal for RESOURCE
#   azsim_advance SECONDS            move azsim's clock
#   azsim_admin METHOD PATH [BODY]   azsim's admin API (holds, stats, clock): the answer's body
#   azsim_requests OP                how many OP requests (kv.secrets.list, ...) azsim has answered
#   azsim_hold METHOD HOST PATH      hold the answer to the next such request: the hold's id
#   azsim_hold_state ID              armed, holding or released
#   azsim_release ID                 let the hold's answer go
#   azsim_held PID ID...             wait until every hold holds an answer (0), or process PID
#                                    has ended or 40 s have passed (1)
#   azsim_vault RG VAULT             create resource group RG (westeurope) and an RBAC vault in it
#   vault_keys_estate SUB VAULT RG N a desired state (stdout) of one RBAC vault in RG (westeurope)
#                                    with N EC keys k00, k01, ...
#   vaults_keys_estate SUB PREFIX RG V N
#                                    the same with V vaults PREFIX00, PREFIX01, ..., N keys each
#   estate_applied NAME SUB          start azsim for SUB and apply $work/D (check NAME), then cd
#                                    to $work
#   azsim_lost                       the consuming service's data keys it cannot use: lost
#                                    (unrecoverable) or wrapped by a disabled version (unavailable)
#   e2e_finish                       print the tally, exit 1 on any failure
#   rotate_key_before_init KVR AZSIM e2e_init, azsim started, rotate-key's before/ applied ($B):
#                                    the converged estate the drift tests change out of band
#
# For the reliability suites (crash, faults, restart, concurrent):
#   azsim_kill / azsim_stop          SIGKILL / SIGTERM azsim (its --data dir stays)
#   azsim_restart AZSIM [OPTIONS...] start it again on the same --data dir and port
#   azsim_faults                     /stats "faults" into $faults ("kind=N ...") and $faults_total
#   kvr_apply NAME ALLOWED ARGS...   one kvreconcile apply (output in out.N/err.N, exit in $rc),
#                                    checked against ALLOWED exits and the consumer's lost keys;
#                                    killed after $kvr_run_s s (KVR_RUN_TIMEOUT, default 300)
#   kvr_plan_empty DESIRED           check that plan --detailed-exitcode exits 0
#   e2e_estate_snapshot DIR...       record what must survive (estate.py snapshot)
#   e2e_estate_check FINAL [DIR...]  check the estate's invariants (estate.py check)
#   e2e_secret_scan DIR...           no secret value of the estate in any out.*/err.*/log.*
#   e2e_sanitizer_scan               no ASan/UBSan/LSan report in any output (azsim's too)
#   e2e_ms                           monotonic-enough wall clock in milliseconds

e2e_init() {
    work=$(mktemp -d)
    AZSIM_PID=
    passed=0
    failed=0
    trap e2e_cleanup EXIT
}

scenario_init() {
    kvr=$(realpath "$1")
    azsim=$(realpath "$2")
    example=$3
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    B="$root/examples/$example/before"
    A="$root/examples/$example/after"
    e2e_init
    sub=$(sed -n 's/^subscription: *//p' "$B"/*.yaml | head -1)
}

e2e_cleanup() {
    local p
    for p in ${E2E_PIDS:-}; do # other background processes a test started
        kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    if [ -n "${AZSIM_PID:-}" ]; then
        kill -TERM "$AZSIM_PID" 2>/dev/null && wait "$AZSIM_PID" 2>/dev/null || true
    fi
    rm -rf "$work"
}

# azsim_port (tests/azsim/port.sh): a port below the ephemeral range, which azsim_restart can
# count on finding free again
. "$(dirname "${BASH_SOURCE[0]}")/../azsim/port.sh"

azsim_start() {
    local bin=$1 port
    shift
    for _ in 1 2 3 4 5; do
        port=${E2E_AZSIM_PORT:-$(azsim_port)}
        "$bin" --data "$work/sim" --port "$port" "$@" >"$work/azsim.out" 2>"$work/azsim.err" &
        AZSIM_PID=$!
        for _ in $(seq 1 600); do # a loaded machine with sanitizers: up to a minute
            grep -q '^azsim ready' "$work/azsim.out" 2>/dev/null && break
            kill -0 "$AZSIM_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -q '^azsim ready' "$work/azsim.out" && break
        # a port chosen here that another listener took meanwhile: another one
        [[ -z ${E2E_AZSIM_PORT:-} && $port != 0 ]] && grep -q 'cannot listen' "$work/azsim.err" || break
        wait "$AZSIM_PID" 2>/dev/null || true
    done
    if ! grep -q '^azsim ready' "$work/azsim.out"; then
        cat "$work/azsim.err"
        echo "0 passed, 1 failed"
        exit 1
    fi
    set -a
    . "$work/sim/azsim.env"
    set +a
}

check() {
    if [ "$2" = 0 ]; then
        echo "ok   $1"
        passed=$((passed + 1))
    else
        echo "FAIL $1"
        failed=$((failed + 1))
    fi
}

json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

azsim_token() {
    curl -sS --cacert "$AZSIM_CA" "https://login.localhost:$AZSIM_PORT/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
        --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$1/.default" |
        json 'd["access_token"]'
}

azsim_admin() {
    if [[ $# -gt 2 ]]; then
        curl -sS --cacert "$AZSIM_CA" -X "$1" "$AZSIM_URL$2" -H 'Content-Type: application/json' -d "$3"
    else
        curl -sS --cacert "$AZSIM_CA" -X "$1" "$AZSIM_URL$2"
    fi
}

vault_keys_estate() {
    estate_of_vaults "$1" "$3" "$4" "$2"
}

vaults_keys_estate() {
    estate_of_vaults "$1" "$3" "$5" $(seq -f "$2%02g" 0 $(($4 - 1)))
}

estate_of_vaults() { # SUB RG N VAULT...
    local sub=$1 rg=$2 n=$3 v i
    shift 3
    printf 'apiVersion: kvreconcile/v1\nsubscription: %s\nvaults:\n' "$sub"
    for v in "$@"; do
        printf '  - name: %s\n    resourceGroup: %s\n    location: westeurope\n' "$v" "$rg"
        printf '    sku: standard\n    rbac: true\n    softDeleteDays: 7\n    purgeProtection: false\n'
    done
    printf 'keys:\n'
    for v in "$@"; do
        for i in $(seq -w 0 $((n - 1))); do
            printf '  - vault: %s\n    name: k%s\n    type: EC\n    curve: P-256\n    ops: [sign, verify]\n' \
                "$v" "$i"
        done
    done
}

estate_applied() {
    azsim_start "$azsim" --subscription "$2"
    kvr_apply "$1" 0 -f "$work/D" --wait 2m
    cd "$work"
}

azsim_requests() { azsim_admin GET /stats | json "d['requests'].get('$1', 0)"; }

azsim_hold() {
    azsim_admin POST /holds "{\"method\":\"$1\",\"host\":\"$2\",\"path\":\"$3\"}" | json 'd["id"]'
}

azsim_hold_state() { azsim_admin GET "/holds/$1" | json 'd["state"]'; }

azsim_release() { azsim_admin DELETE "/holds/$1" >/dev/null; }

# 40 s: well within the 60 s a request may take, so that no held request is sent again
azsim_held() {
    local pid=$1 id all end=$((SECONDS + 40))
    shift
    while ((SECONDS < end)); do
        all=0
        for id in "$@"; do
            [[ $all == 0 && $(azsim_hold_state "$id") == holding ]] || all=1
        done
        [[ $all == 0 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

azsim_advance() {
    curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/clock/advance" -d "{\"seconds\":$1}" >/dev/null
}

azsim_vault() {
    local arm rg
    arm=$(azsim_token "$KVR_ARM_ENDPOINT")
    rg="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$1"
    curl -sS --cacert "$AZSIM_CA" -X PUT "$rg?api-version=2021-04-01" -H "Authorization: Bearer $arm" \
        -H 'Content-Type: application/json' -d '{"location":"westeurope"}' >/dev/null
    curl -sS --cacert "$AZSIM_CA" -X PUT "$rg/providers/Microsoft.KeyVault/vaults/$2?api-version=2024-11-01" \
        -H "Authorization: Bearer $arm" -H 'Content-Type: application/json' \
        -d "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":true,\"softDeleteRetentionInDays\":7}}" >/dev/null
}

rotate_key_before_init() {
    kvr=$(realpath "$1")
    azsim=$(realpath "$2")
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    B="$root/examples/rotate-key/before"
    e2e_init
    azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0 \
        --data-keys 20 --rewrap-rate 10
    kvr_apply "apply before/" 0 -f "$B" --wait 2m
}

azsim_lost() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer" | json 'd["unrecoverable"] + d["unavailable"]'; }

e2e_finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# ---- reliability suites ------------------------------------------------------------------------

e2e_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
e2e_restarts=0

e2e_ms() { echo $(($(date +%s%N) / 1000000)); }

azsim_kill() {
    kill -KILL "$AZSIM_PID" 2>/dev/null || true
    wait "$AZSIM_PID" 2>/dev/null || true
    AZSIM_PID=
}

azsim_stop() {
    kill -TERM "$AZSIM_PID" 2>/dev/null || true
    wait "$AZSIM_PID" 2>/dev/null || true
    AZSIM_PID=
}

# Same --data dir, same port (kvreconcile's endpoints name it); the previous stderr is kept.
azsim_restart() {
    local bin=$1
    shift
    e2e_restarts=$((e2e_restarts + 1))
    mv "$work/azsim.err" "$work/azsim.err.$e2e_restarts" 2>/dev/null || true
    E2E_AZSIM_PORT=$AZSIM_PORT azsim_start "$bin" "$@"
}

azsim_faults() { # sets $faults ("500=N 503=N ...") and $faults_total
    local st
    st=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats")
    faults_total=$(echo "$st" | json 'sum(d["faults"].values())')
    faults=$(echo "$st" | json '" ".join("%s=%d" % kv for kv in d["faults"].items())')
}

kvr_n=0
kvr_run_s=${KVR_RUN_TIMEOUT:-300} # no single apply may take longer (they all use --wait <= 2m)
kvr_apply() { # name allowed-exits args...
    local name=$1 want=$2
    shift 2
    kvr_n=$((kvr_n + 1))
    set +e
    timeout -s KILL "$kvr_run_s" "$kvr" apply "$@" >"$work/out.$kvr_n" 2>"$work/err.$kvr_n"
    rc=$?
    [[ $rc != 137 ]] || echo "$name: killed after ${kvr_run_s} s (KVR_RUN_TIMEOUT): the run did not end"
    set -e
    check "$name: exit $rc (allowed: $want)" "$([[ " $want " == *" $rc "* ]]; echo $?)"
    [[ " $want " == *" $rc "* ]] || tail -20 "$work/err.$kvr_n"
    check "$name: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
}

kvr_plan_empty() {
    local prc
    kvr_n=$((kvr_n + 1))
    set +e
    "$kvr" plan -f "$1" --detailed-exitcode >"$work/out.$kvr_n" 2>"$work/err.$kvr_n"
    prc=$?
    set -e
    check "converged: plan of ${1#"$root"/} is empty (exit $prc)" "$([[ $prc == 0 ]]; echo $?)"
    [[ $prc == 0 ]] || cat "$work/out.$kvr_n" "$work/err.$kvr_n"
}

# estate.py prints "ok   ..." / "FAIL ..." lines: each becomes one check
e2e_checks_from() {
    local status msg any=1
    while read -r status msg; do
        case $status in
        ok) check "$msg" 0 ;;
        FAIL) check "$msg" 1 ;;
        *) echo "$status $msg" ;;
        esac
        any=0
    done
    return $any
}

e2e_estate_snapshot() { /usr/bin/python3 "$e2e_dir/estate.py" snapshot "$work/snapshot.json" "$@"; }

e2e_estate_check() {
    /usr/bin/python3 "$e2e_dir/estate.py" check "$work/snapshot.json" "$@" >"$work/estate.check" 2>&1 || true
    e2e_checks_from <"$work/estate.check" || check "estate check ran" 1
}

e2e_secret_scan() {
    /usr/bin/python3 "$e2e_dir/estate.py" scan "$work" "$@" >"$work/estate.scan" 2>&1 || true
    e2e_checks_from <"$work/estate.scan" || check "secret scan ran" 1
}

e2e_sanitizer_scan() {
    local hits
    hits=$(grep -lE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' \
        "$work"/out.* "$work"/err.* "$work"/log.* "$work"/*/out.* "$work"/*/err.* "$work"/azsim.err* 2>/dev/null || true)
    check "no sanitizer report in any output" "$([[ -z $hits ]]; echo $?)"
    [[ -z $hits ]] || { echo "sanitizer reports in: $hits"; grep -hE -A15 'Sanitizer|runtime error:' $hits | head -60; }
}
