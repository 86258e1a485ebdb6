# Shared by the end-to-end scripts (sourced, not run): azsim's lifecycle on a free loopback port,
# a few REST helpers, and the "N passed, N failed" bookkeeping.
#
#   e2e_init                         scratch dir in $work, cleanup on exit (also of $E2E_PIDS)
#   azsim_start AZSIM [OPTIONS...]   start azsim, wait until ready, export its azsim.env
#   check NAME STATUS                record one check (STATUS 0 = ok)
#   json EXPR                        evaluate a Python expression over JSON on stdin (d)
#   azsim_token RESOURCE             bearer token of the bootstrap principal for RESOURCE
#   azsim_advance SECONDS            move azsim's clock
#   azsim_lost                       the consuming service's unrecoverable data keys
#   e2e_finish                       print the tally, exit 1 on any failure

e2e_init() {
    work=$(mktemp -d)
    AZSIM_PID=
    passed=0
    failed=0
    trap e2e_cleanup EXIT
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

azsim_start() {
    local bin=$1
    shift
    "$bin" --data "$work/sim" --port 0 "$@" >"$work/azsim.out" 2>"$work/azsim.err" &
    AZSIM_PID=$!
    for _ in $(seq 1 100); do
        grep -q '^azsim ready' "$work/azsim.out" 2>/dev/null && break
        sleep 0.1
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

azsim_advance() {
    curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/clock/advance" -d "{\"seconds\":$1}" >/dev/null
}

azsim_lost() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer" | json 'd["unrecoverable"]'; }

e2e_finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
