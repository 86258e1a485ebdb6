# Shared by azsim's own test scripts (sourced): a scratch directory, azsim stopped and the
# directory removed on exit, and the pass/fail tally. Set AZSIM_PID once azsim runs.
#   azsim_test_setup PREFIX   DATA (scratch), WORK (DATA/work), cleanup trap
#   ok NAME / fail NAME [DETAIL]
#   req METHOD URL [BODY] [TOKEN] [curl args...]   sets STATUS; body in $WORK/body, headers in
#                             $WORK/headers (a script may define its own req after sourcing this)
#   j EXPR                    a Python expression over the last body as JSON, bound to `b` ($PY)
#   is STATUS / has EXPR VALUE / header NAME
#   azsim_test_start [OPTIONS...]  start $AZSIM_BIN on DATA (free port), wait until ready, source
#                             its azsim.env
#   azsim_test_token RESOURCE  a bearer token of the bootstrap principal for RESOURCE

# azsim_port: a free port below the ephemeral range, for the scripts that restart azsim on the
# port it had (test_resilience.sh, test_certs.sh)
. "$(dirname "${BASH_SOURCE[0]}")/port.sh"

azsim_test_setup() {
    DATA=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    WORK="$DATA/work"
    mkdir -p "$WORK"
    AZSIM_PID=
    PASSED=0
    FAILED=0
    trap azsim_test_cleanup EXIT
}

azsim_test_cleanup() {
    if [ -n "$AZSIM_PID" ] && kill -0 "$AZSIM_PID" 2>/dev/null; then
        kill -TERM "$AZSIM_PID" 2>/dev/null || true
        wait "$AZSIM_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}

ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1${2:+: $2}"; }

req() {
    local method=$1 url=$2 body=${3:-} token=${4:-}
    shift 4 2>/dev/null || shift $#
    local args=(-sS --cacert "$AZSIM_CA" -X "$method" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}')
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    STATUS=$(curl "${args[@]}" "$@" "$url" 2>>"$WORK/curl.err") || STATUS=000
}
j() { "$PY" -c 'import json,sys; b=json.load(open(sys.argv[1])); r=eval(sys.argv[2]); print(r if not isinstance(r,(dict,list,bool)) or r is None else json.dumps(r))' "$WORK/body" "$1" 2>/dev/null || echo "<error>"; }
is() { [ "$STATUS" = "$1" ]; }
has() { [ "$(j "$1")" = "$2" ]; }
header() { tr -d '\r' <"$WORK/headers" | grep -i "^$1:" | head -1 | cut -d' ' -f2-; }

azsim_test_start() {
    "$AZSIM_BIN" --data "$DATA" --port 0 "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    AZSIM_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^azsim ready ' "$WORK/stdout" 2>/dev/null && break
        kill -0 "$AZSIM_PID" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC1091
    . "$DATA/azsim.env"
}

azsim_test_token() {
    curl -sS --cacert "$AZSIM_CA" -X POST "$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        -d grant_type=client_credentials --data-urlencode "client_id=$AZURE_CLIENT_ID" \
        --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" --data-urlencode "scope=$1/.default" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
