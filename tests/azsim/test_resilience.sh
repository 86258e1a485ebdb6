#!/usr/bin/env bash
# azsim under failure: state survives kill -9 (saved before each acknowledged mutation) with the
# same key material (keys parsed on first use; older state files without JWKs and damaged keys),
# --fault-rate injects each fault kind reproducibly for a --seed, faults on mutations come before
# the mutation (reset-after-commit after it), and ARM's subscription token buckets answer 429 with
# Retry-After. Usage: test_resilience.sh PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_resilience.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-res
check() { # check NAME COMMAND...
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "status $STATUS $(head -c 300 "$WORK/body" 2>/dev/null)"; fi
}
sanitizer_clean() {
    if grep -qiE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error' "$WORK"/stderr.* 2>/dev/null; then
        fail "no sanitizer reports" "$(cat "$WORK"/stderr.* | head -c 600)"
    else
        ok "no sanitizer reports"
    fi
}

# start NAME DIR [azsim options...]: starts azsim on DIR (reusing $PORT when set), sources azsim.env
start() {
    local name=$1 dir=$2
    shift 2
    "$AZSIM_BIN" --data "$dir" --port "${PORT:-$(azsim_port)}" "$@" >"$WORK/stdout.$name" 2>"$WORK/stderr.$name" &
    AZSIM_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^azsim ready ' "$WORK/stdout.$name" 2>/dev/null && break
        kill -0 "$AZSIM_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^azsim ready ' "$WORK/stdout.$name"; then
        fail "$name: azsim ready" "$(tail -c 400 "$WORK/stderr.$name")"
        echo "$PASSED passed, $FAILED failed"
        exit 1
    fi
    # shellcheck disable=SC1091
    . "$dir/azsim.env"
    PORT=$AZSIM_PORT
}
crash() { # kill -9, as a power cut would
    kill -KILL "$AZSIM_PID"
    wait "$AZSIM_PID" 2>/dev/null || true
    AZSIM_PID=
}
stop() {
    kill -TERM "$AZSIM_PID"
    wait "$AZSIM_PID" 2>/dev/null || true
    AZSIM_PID=
}

# req METHOD URL [BODY] [TOKEN]: sets STATUS (000 when the connection closed unanswered)
req() {
    local method=$1 url=$2 body=${3:-} token=${4:-}
    local args=(-sS --cacert "$AZSIM_CA" -X "$method" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -m 20)
    : >"$WORK/body"
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    STATUS=$(curl "${args[@]}" "$url" 2>>"$WORK/curl.err") || STATUS=000
}
token_for() { # token_for RESOURCE, as the bootstrap principal
    curl -sS --cacert "$AZSIM_CA" -o "$WORK/body" -X POST \
        "$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token" -d grant_type=client_credentials \
        --data-urlencode "client_id=$AZURE_CLIENT_ID" --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" \
        --data-urlencode "scope=$1/.default" >/dev/null
    j 'b.get("access_token","")'
}
A=api-version=7.5

# ---- crash safety: what azsim acknowledged survives kill -9 ----
D1="$DATA/d1"
start crash1 "$D1"
MT=$(token_for "$KVR_ARM_ENDPOINT")
VT=$(token_for "https://vault.localhost:$AZSIM_PORT")
SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
VAULT="https://kv-dur.vault.localhost:$AZSIM_PORT"
req PUT "$SUB/resourceGroups/rg-dur?api-version=2021-04-01" '{"location":"westeurope"}' "$MT"
check "crash: resource group created" is 201
req PUT "$SUB/resourceGroups/rg-dur/providers/Microsoft.KeyVault/vaults/kv-dur?api-version=2024-11-01" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enableRbacAuthorization\":false,\"accessPolicies\":[{\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$(
        "$PY" -c 'import base64,json,sys; t=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(t+"="*(-len(t)%4)))["oid"])' "$VT")\",\"permissions\":{\"keys\":[\"all\"],\"secrets\":[\"all\"]}}]}}" "$MT"
check "crash: vault created" is 200
req PUT "$VAULT/secrets/s1?$A" '{"value":"kept"}' "$VT"
check "crash: secret set" is 200
req POST "$VAULT/keys/k1/create?$A" '{"kty":"RSA","key_size":2048}' "$VT"
check "crash: key created" is 200
KID=$(j 'b["key"]["kid"]')
JWK1=$(j '[b["key"][m] for m in ("kty", "n", "e")]')
req POST "$VAULT/keys/k2/create?$A" '{"kty":"EC","crv":"P-256"}' "$VT"
check "crash: EC key created" is 200
JWK2=$(j '[b["key"][m] for m in ("kty", "crv", "x", "y")]')
DEK=c2l4dGVlbi1ieXRlLWRlaw
req POST "$VAULT/keys/k1/wrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$DEK\"}" "$VT"
check "crash: key wraps" is 200
WRAPPED=$(j 'b["value"]')
[ -f "$D1/state.sealed" ] && ok "crash: state saved before the reply" || fail "crash: state saved before the reply"
ls "$D1" | grep -q '\.tmp$' && fail "crash: no temporary file left" || ok "crash: no temporary file left"
crash
saved=$(stat -c %Y.%s "$D1/state.sealed")
sleep 1.1
start crash2 "$D1"
[ "$PORT" = "$AZSIM_PORT" ] && ok "crash: restarted on the same port" || fail "crash: restarted on the same port"
# a state loaded unchanged is not written again before the ready line (a large one took seconds)
[ "$(stat -c %Y.%s "$D1/state.sealed")" = "$saved" ] && ok "restart: the loaded state is not rewritten" ||
    fail "restart: the loaded state is not rewritten"
req GET "$VAULT/secrets/s1?$A" "" "$VT"
check "crash: secret survives kill -9" has 'b["value"]' kept
req GET "$VAULT/keys/k1?$A" "" "$VT"
check "crash: key survives kill -9 (same version)" has 'b["key"]["kid"]' "$KID"
req GET "$SUB/resourceGroups/rg-dur/providers/Microsoft.KeyVault/vaults/kv-dur?api-version=2024-11-01" "" "$MT"
check "crash: vault survives kill -9" is 200
# A restarted azsim parses a key's PEM only on first use and serves its JWK from the state: the
# JWK must be the one from before, and unwrapping what was wrapped before proves the key the same.
# keys_same NAME: k1 and k2 answer as before the restart
keys_same() {
    req GET "$VAULT/keys/k1?$A" "" "$VT"
    check "$1: RSA key's JWK (n, e) unchanged" has '[b["key"][m] for m in ("kty", "n", "e")]' "$JWK1"
    req GET "$VAULT/keys/k2?$A" "" "$VT"
    check "$1: EC key's JWK (crv, x, y) unchanged" has '[b["key"][m] for m in ("kty", "crv", "x", "y")]' "$JWK2"
    req POST "$VAULT/keys/k1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
    check "$1: what was wrapped before unwraps" has 'b["value"]' "$DEK"
    req POST "$VAULT/keys/k1/wrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$DEK\"}" "$VT"
    req POST "$VAULT/keys/k1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$(j 'b["value"]')\"}" "$VT"
    check "$1: wrap and unwrap work" has 'b["value"]' "$DEK"
}
keys_same "crash: key survives kill -9"
# reads do not save
before=$(stat -c %Y.%s "$D1/state.sealed")
sleep 1.1
req GET "$VAULT/secrets/s1?$A" "" "$VT"
# a Resource Graph query and a name check are POSTs that only read (each used to save the state)
# (kvreconcile's dependents query: the one azsim's Resource Graph answers)
RGQ=$(sed -n '/^const char kvr__dependents_query/,/;$/p' "$(dirname "$0")/../../reconciler/providers/azure/dependents.c" |
    sed -n 's/^ *"\(.*\)"[;]*$/\1/p' | tr -d '\n')
req POST "$KVR_ARM_ENDPOINT/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01" \
    "$("$PY" -c 'import json,sys; print(json.dumps({"subscriptions":[sys.argv[1]],"query":sys.argv[2]}))' "$AZURE_SUBSCRIPTION_ID" "$RGQ")" "$MT"
is 200 || fail "crash: a Resource Graph query answers" "$STATUS"
req POST "$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.KeyVault/checkNameAvailability?api-version=2024-11-01" \
    '{"name":"kv-free-name","type":"Microsoft.KeyVault/vaults"}' "$MT"
is 200 || fail "crash: a name check answers" "$STATUS"
[ "$(stat -c %Y.%s "$D1/state.sealed")" = "$before" ] && ok "crash: reads do not save (GETs, a Resource Graph query, a name check)" || fail "crash: reads do not save"
crash

# ---- state files of older azsims, and damaged key material ----
# reseal DIR PYTHON: runs PYTHON on the state of DIR (bound to d) and seals it again (reseal.py)
reseal() { "$PY" "$(dirname "$0")/reseal.py" "$1" "$2"; }
if "$PY" -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null; then
    # a state saved before key versions kept their JWK: served all the same, the JWK made at first use
    D2="$DATA/d2"
    cp -r "$D1" "$D2"
    n=$(reseal "$D2" 'print(sum(v.pop("jwk", None) is not None for v in versions("k1") + versions("k2")))') || n=error
    [ "$n" = 2 ] && ok "old state: the state file keeps each key's JWK" || fail "old state: the state file keeps each key's JWK" "$n"
    start old "$D2"
    keys_same "old state: a state without JWKs"
    crash
    # a PEM whose armour and PKCS#8 structure hold but whose key does not parse: the load works,
    # and what needs the key answers 500 (the JWK is gone too, so a GET needs it)
    reseal "$D2" '
for v in versions("k1"):
    v.pop("jwk", None)
    der = bytearray(base64.b64decode("".join(v["pem"].splitlines()[1:-1])))
    der[26:] = bytes(len(der) - 26)  # the RSAPrivateKey inside the PKCS#8 octet string
    t = base64.b64encode(bytes(der)).decode()
    v["pem"] = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(t[i:i + 64] for i in range(0, len(t), 64)) + "\n-----END PRIVATE KEY-----\n"' ||
        fail "damaged key: state rewritten"
    start damaged "$D2"
    req GET "$VAULT/keys/k1?$A" "" "$VT"
    check "damaged key: GET is 500 InternalError" has '[b["error"]["code"], len(b["error"]["message"]) > 0]' '["InternalError", true]'
    req POST "$VAULT/keys/k1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
    check "damaged key: unwrap is 500 InternalError" has '[b["error"]["code"], len(b["error"]["message"]) > 0]' '["InternalError", true]'
    req GET "$VAULT/keys/k2?$A" "" "$VT"
    check "damaged key: the other keys are served" has '[b["key"][m] for m in ("kty", "crv", "x", "y")]' "$JWK2"
    crash
    # The vaults of a state are cut apart and parsed by threads (azsim_persist.c): a state with
    # blanks between its values, and strings that hold brackets, quotes, backslashes and a
    # "vaults" member of their own, loads as written, each vault with its own objects.
    D3="$DATA/d3"
    cp -r "$D1" "$D3"
    reseal "$D3" '
import copy
v = d["vaults"][0]
w = copy.deepcopy(v)
w["name"] = "kv-dur2"
for s in w["secrets"]:
    for ver in s["versions"]:
        ver["value"] = "]},\"vaults\":[{\\\"}]}]}]}]\\"
v["tags"]["odd"] = "}]\\"
d["vaults"].append(w)
out["indent"] = 2' || fail "cut: state rewritten"
    start cut "$D3"
    req GET "$VAULT/secrets/s1?$A" "" "$VT"
    check "cut: the first vault's secret" has 'b["value"]' kept
    req GET "https://kv-dur2.vault.localhost:$AZSIM_PORT/secrets/s1?$A" "" "$VT"
    check "cut: the added vault's secret, quotes and brackets in it" has 'b["value"]' ']},"vaults":[{\"}]}]}]}]\'
    req GET "$SUB/resourceGroups/rg-dur/providers/Microsoft.KeyVault/vaults/kv-dur?api-version=2024-11-01" "" "$MT"
    check "cut: the first vault's tags" has 'b["tags"]["odd"]' '}]\'
    keys_same "cut: a state written with blanks"
    crash
    # a PEM that is not one fails the load, as before keys were parsed on first use
    reseal "$D2" 'versions("k2")[0]["pem"] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"' ||
        fail "garbled key: state rewritten"
    timeout 60 "$AZSIM_BIN" --data "$D2" --port 0 >"$WORK/stdout.garbled" 2>"$WORK/stderr.garbled" &&
        fail "garbled key: the load fails" || {
        grep -q 'cannot load the saved state' "$WORK/stderr.garbled" && ok "garbled key: the load fails" ||
            fail "garbled key: the load fails" "$(tail -c 300 "$WORK/stderr.garbled")"
    }
else
    echo "skip - old state and damaged keys: python3 has no cryptography module to reseal a state"
fi

# ---- faults on mutations: before the mutation, or after it for reset-after-commit ----
start fault500 "$D1" --fault-rate 1 --fault-kinds 500
req PUT "$VAULT/secrets/s-fail?$A" '{"value":"no"}' "$VT"
check "fault: 500 on a Key Vault write" is 500
check "fault: Key Vault error body" has 'b["error"]["code"]' InternalServerError
req GET "$AZSIM_URL/stats" ""
check "fault: admin API is never faulted" is 200
check "fault: /stats counts the 500" has 'b["faults"]["500"]' 1
crash
start rac "$D1" --fault-rate 1 --fault-kinds reset-after-commit
req PUT "$VAULT/secrets/s-rac?$A" '{"value":"committed"}' "$VT"
check "fault: reset-after-commit closes unanswered" is 000
req GET "$AZSIM_URL/stats" ""
check "fault: /stats counts reset-after-commit" has 'b["faults"]["reset-after-commit"]' 1
crash
start check "$D1"
req GET "$VAULT/secrets/s-fail?$A" "" "$VT"
check "fault: a 500 write was not applied" is 404
req GET "$VAULT/secrets/s-rac?$A" "" "$VT"
check "fault: a reset-after-commit write was applied and saved" has 'b["value"]' committed
stop

# ---- fault kinds and determinism with --seed ----
# run NAME: 90 sequential unauthenticated Graph reads; one outcome per request
run() {
    local out=""
    start "$1" "$DATA/$1" --seed 42 --fault-rate 0.6 --stall-ms 300
    for _ in $(seq 1 90); do
        local t0 t1
        t0=$(date +%s%N)
        req GET "$KVR_GRAPH_ENDPOINT/v1.0/applications" ""
        t1=$(date +%s%N)
        if [ "$STATUS" = 401 ] && [ $(((t1 - t0) / 1000000)) -ge 250 ]; then
            out+="stall "
        else
            out+="$STATUS "
            if [ "$STATUS" = 503 ]; then GRAPH_503_CODE=$(j 'b["error"]["code"]'); fi
        fi
    done
    req GET "$AZSIM_URL/stats" ""
    cp "$WORK/body" "$WORK/stats.$1"
    stop
    echo "$out" >"$WORK/seq.$1"
}
PORT=
run seedA
PORT=
run seedB
# a stall ends in the normal answer (401 here) unless curl gave up first, which depends on the
# machine's load: compare with the two folded together
SEQ=$(cat "$WORK/seq.seedA")
[ "$(sed 's/stall/401/g' "$WORK/seq.seedA")" = "$(sed 's/stall/401/g' "$WORK/seq.seedB")" ] && ok "fault: same seed, same faults" || fail "fault: same seed, same faults" "$SEQ / $(cat "$WORK/seq.seedB")"
for k in 500 503 429 000 stall 401; do
    case " $SEQ " in *" $k "*) ok "fault: outcome $k seen" ;; *) fail "fault: outcome $k seen" "$SEQ" ;; esac
done
[ "${GRAPH_503_CODE:-}" = serviceNotAvailable ] && ok "fault: Graph error body" || fail "fault: Graph error body" "${GRAPH_503_CODE:-}"
cp "$WORK/stats.seedA" "$WORK/body"
for k in 500 503 429 reset stall reset-after-commit; do
    [ "$(j "b['faults']['$k']")" -gt 0 ] 2>/dev/null && ok "fault: /stats counts $k" || fail "fault: /stats counts $k" "$(cat "$WORK/body")"
done
n429=$(echo "$SEQ" | tr ' ' '\n' | grep -c '^429$' || true)
[ "$n429" = "$(j "b['faults']['429']")" ] && ok "fault: /stats matches what the client saw" || fail "fault: /stats matches what the client saw"

# ---- ARM throttling: subscription token buckets on the simulated clock ----
PORT=
start arm "$DATA/arm"
MT=$(token_for "$KVR_ARM_ENDPOINT")
SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
req PUT "$SUB/resourceGroups/rg-t?api-version=2021-04-01" '{"location":"westeurope"}' "$MT"
[ "$(header x-ms-ratelimit-remaining-subscription-writes)" = 199 ] && ok "arm: remaining writes header" || fail "arm: remaining writes header" "$(cat "$WORK/headers")"
req GET "$SUB/resourceGroups/rg-t?api-version=2021-04-01" "" "$MT"
[ "$(header x-ms-ratelimit-remaining-subscription-reads)" = 249 ] && ok "arm: remaining reads header" || fail "arm: remaining reads header"
[ -n "$(header x-ms-ratelimit-remaining-subscription-deletes)" ] && ok "arm: remaining deletes header" || fail "arm: remaining deletes header"
# One burst on one connection, with the simulated clock frozen: the bucket (250 reads, 25/s)
# refills only when the test moves the clock, so the last 150 reads are throttled however slowly
# a loaded machine sends them. The throttled answer's body and headers are kept for the checks.
req POST "$AZSIM_URL/clock/freeze" '{"frozen":true}'
check "admin: the clock is frozen" has 'b["frozen"]' true
CFG="$WORK/reads.cfg"
for _ in $(seq 1 399); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$SUB/resourceGroups/rg-t?api-version=2021-04-01"
done >"$CFG"
printf 'url = "%s"\noutput = "%s"\ndump-header = "%s"\n' "$SUB/resourceGroups/rg-t?api-version=2021-04-01" \
    "$WORK/body" "$WORK/headers" >>"$CFG"
codes=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $MT" -w '%{http_code}\n' -K "$CFG" 2>>"$WORK/curl.err" || true)
n200=$(grep -c '^200$' <<<"$codes" || true)
n429=$(grep -c '^429$' <<<"$codes" || true)
# (the bucket held 249 or 250: it may have refilled its one token before the clock stopped)
[ $((n200 + n429)) = 400 ] && [ "$n200" -ge 249 ] && [ "$n200" -le 250 ] && ok "arm: reads beyond the bucket get 429 ($n200 ok, $n429 throttled)" || fail "arm: reads beyond the bucket get 429" "$n200 ok, $n429 throttled (want 249 or 250 ok, the rest throttled)"
STATUS=$(tail -n 1 <<<"$codes")
check "arm: throttled read is 429" is 429
check "arm: ARM error body" has 'b["error"]["code"]' SubscriptionRequestsThrottled
[ -n "$(header Retry-After)" ] && ok "arm: Retry-After present" || fail "arm: Retry-After present"
req POST "$AZSIM_URL/clock/advance" '{"seconds":20}'
req GET "$SUB/resourceGroups/rg-t?api-version=2021-04-01" "" "$MT"
check "arm: the bucket refills on the simulated clock" is 200
req POST "$AZSIM_URL/clock/freeze" '{"frozen":false}'
check "admin: the clock runs again" has 'b["frozen"]' false
req DELETE "$SUB/resourceGroups/rg-none?api-version=2021-04-01" "" "$MT"
[ "$(header x-ms-ratelimit-remaining-subscription-deletes)" = 199 ] && ok "arm: deletes have their own bucket" || fail "arm: deletes have their own bucket" "$(cat "$WORK/headers")"
stop
PORT=
start armoff "$DATA/armoff" --throttle off
MT=$(token_for "$KVR_ARM_ENDPOINT")
SUB="$KVR_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID"
req PUT "$SUB/resourceGroups/rg-t?api-version=2021-04-01" '{"location":"westeurope"}' "$MT"
for _ in $(seq 1 400); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$SUB/resourceGroups/rg-t?api-version=2021-04-01"
done >"$CFG"
codes=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $MT" -w '%{http_code}\n' -K "$CFG" 2>>"$WORK/curl.err" || true)
[ "$(grep -c '^200$' <<<"$codes" || true)" = 400 ] && ok "arm: --throttle off never throttles" || fail "arm: --throttle off never throttles"
stop

# ---- Graph paging: $top and @odata.nextLink ----
PORT=
start graph "$DATA/graph"
GT=$(token_for "$KVR_GRAPH_ENDPOINT")
for i in 1 2 3 4 5; do
    req POST "$KVR_GRAPH_ENDPOINT/v1.0/applications" "{\"displayName\":\"page-app\"}" "$GT"
done
check "graph: apps created" is 201
req GET "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$top=2&\$filter=displayName%20eq%20'page-app'" "" "$GT"
check "graph: \$top limits the page" has 'len(b["value"])' 2
seen=2
pages=1
while next=$(j 'b.get("@odata.nextLink","")') && [ -n "$next" ] && [ "$pages" -lt 10 ]; do
    req GET "$next" "" "$GT"
    seen=$((seen + $(j 'len(b["value"])')))
    pages=$((pages + 1))
done
[ "$seen" = 5 ] && [ "$pages" = 3 ] && ok "graph: nextLink pages through every match (filter kept)" || fail "graph: nextLink pages through every match" "$seen in $pages pages"
req GET "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$top=1000" "" "$GT"
check "graph: \$top over 999 is 400" is 400
req GET "$KVR_GRAPH_ENDPOINT/v1.0/applications" "" "$GT"
check "graph: one page without \$top" has '"@odata.nextLink" in b' false
stop

sanitizer_clean
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
