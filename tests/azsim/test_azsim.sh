#!/usr/bin/env bash
# Smoke test of azsim, the local Azure simulator: starts it on a free port with a fresh data
# directory, drives every simulated service over HTTPS with curl, checks wire-level facts
# (status codes, error codes, headers, JSON fields, real RSA crypto, the simulated clock), then
# stops it with SIGTERM. Usage: test_azsim.sh PATH/TO/azsim. Needs bash, curl and python3.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_azsim.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-test
check() { # check NAME COMMAND...
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "$(head -c 400 "$WORK/body" 2>/dev/null)"; fi
}

# ---- start ----
"$AZSIM_BIN" --data "$DATA" --port 0 --rbac-delay 5 >"$WORK/stdout" 2>"$WORK/stderr" &
AZSIM_PID=$!
for _ in $(seq 1 300); do
    if grep -q '^azsim ready ' "$WORK/stdout" 2>/dev/null; then break; fi
    if ! kill -0 "$AZSIM_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if ! grep -qE '^azsim ready https://azsim\.localhost:[0-9]+$' "$WORK/stdout"; then
    echo "azsim did not become ready" >&2
    cat "$WORK/stderr" >&2 || true
    echo "0 passed, 1 failed"
    exit 1
fi
ok "ready line printed"
[ "$(wc -l <"$WORK/stdout")" -eq 1 ] && ok "exactly one line on stdout" || fail "exactly one line on stdout"

# shellcheck disable=SC1091
. "$DATA/azsim.env"
[ "$(stat -c %a "$DATA/azsim.env")" = 600 ] && ok "azsim.env is mode 0600" || fail "azsim.env is mode 0600"
grep -q "^azsim ready $AZSIM_URL\$" "$WORK/stdout" && ok "ready line names AZSIM_URL" || fail "ready line names AZSIM_URL"
for v in AZURE_TENANT_ID AZURE_SUBSCRIPTION_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_AUTHORITY_HOST \
    AZSIM_PORT AZSIM_CA KVR_ARM_ENDPOINT KVR_GRAPH_ENDPOINT KVR_VAULT_SUFFIX KVR_PROFILE_ENDPOINT; do
    [ -n "${!v:-}" ] || fail "azsim.env exports $v"
done
ok "azsim.env exports the documented variables"

P=$AZSIM_PORT
LOGIN=$AZURE_AUTHORITY_HOST
ARM=$KVR_ARM_ENDPOINT
GRAPH=$KVR_GRAPH_ENDPOINT/v1.0
VAULT_RES="https://vault.localhost:$P"
SUB="$ARM/subscriptions/$AZURE_SUBSCRIPTION_ID"


token_for() { # token_for CLIENT_ID SECRET RESOURCE
    curl -sS --cacert "$AZSIM_CA" -o "$WORK/body" -w '%{http_code}' -X POST \
        "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token" -d grant_type=client_credentials \
        --data-urlencode "client_id=$1" --data-urlencode "client_secret=$2" \
        --data-urlencode "scope=$3/.default" >"$WORK/status"
    j 'b.get("access_token","")'
}

# ---- login.localhost ----
MT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$ARM")
STATUS=$(cat "$WORK/status")
check "token: client_credentials with client_secret" is 200
check "token: token_type, expires_in, ext_expires_in" has '[b["token_type"],b["expires_in"],b["ext_expires_in"]]' '["Bearer", 3599, 3599]'
VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$VAULT_RES")
[ -n "$VT" ] && [ "$VT" != "<error>" ] && ok "token: vault resource" || fail "token: vault resource"
GT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$KVR_GRAPH_ENDPOINT")
[ -n "$GT" ] && [ "$GT" != "<error>" ] && ok "token: graph resource" || fail "token: graph resource"

req POST "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token" "" "" \
    -H 'Content-Type: application/x-www-form-urlencoded' -u "$AZURE_CLIENT_ID:$AZURE_CLIENT_SECRET" \
    --data-urlencode grant_type=client_credentials --data-urlencode "scope=$ARM//.default"
check "token: HTTP Basic client auth and a double-slash scope" is 200
req POST "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token" "" "" -d grant_type=client_credentials \
    --data-urlencode "client_id=$AZURE_CLIENT_ID" -d client_secret=wrong --data-urlencode "scope=$ARM/.default"
check "token: wrong secret is 401 invalid_client AADSTS7000215" has '[b["error"],b["error_codes"],b["error_description"][:14]]' '["invalid_client", [7000215], "AADSTS7000215:"]'
check "token: wrong secret status" is 401
req POST "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token" "" "" -d grant_type=client_credentials \
    -d client_id=00000000-0000-0000-0000-000000000001 -d client_secret=x --data-urlencode "scope=$ARM/.default"
check "token: unknown app is 400 AADSTS700016" has '[b["error_codes"], len(b["trace_id"]), len(b["correlation_id"])]' '[[700016], 36, 36]'
req POST "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token" "" "" -d grant_type=client_credentials \
    --data-urlencode "client_id=$AZURE_CLIENT_ID" --data-urlencode "client_secret=$AZURE_CLIENT_SECRET" -d scope=not-a-scope
check "token: bad scope is 400 invalid_scope AADSTS70011" has '[b["error"], b["error_codes"]]' '["invalid_scope", [70011]]'
check "token: bad scope status" is 400

req GET "$LOGIN/$AZURE_TENANT_ID/v2.0/.well-known/openid-configuration"
check "openid-configuration issuer" has 'b["issuer"]' "$LOGIN/$AZURE_TENANT_ID/v2.0"
JWKS_URI=$(j 'b["jwks_uri"]')
check "openid-configuration token_endpoint" has 'b["token_endpoint"]' "$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token"
req GET "$JWKS_URI"
cp "$WORK/body" "$WORK/jwks.json"
# RS256 check in plain Python: pow(sig, e, n) must equal the PKCS#1 v1.5 encoding of SHA-256(input)
verify_jwt() {
    "$PY" - "$WORK/jwks.json" "$1" "$2" "$LOGIN/$AZURE_TENANT_ID/v2.0" <<'EOF'
import base64, hashlib, json, sys
def d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
jwks, tok, aud, iss = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
h, c, s = tok.split(".")
hdr, claims = json.loads(d(h)), json.loads(d(c))
key = [k for k in jwks["keys"] if k["kid"] == hdr["kid"]][0]
n, e = int.from_bytes(d(key["n"]), "big"), int.from_bytes(d(key["e"]), "big")
k = (n.bit_length() + 7) // 8
em = pow(int.from_bytes(d(s), "big"), e, n).to_bytes(k, "big")
di = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256((h + "." + c).encode()).digest()
assert hdr["alg"] == "RS256"
assert em == b"\x00\x01" + b"\xff" * (k - len(di) - 3) + b"\x00" + di, "bad signature"
assert claims["aud"].rstrip("/") == aud and claims["iss"] == iss, claims
for f in ("tid", "oid", "appid", "exp"): assert f in claims, f
EOF
}
check "access token is an RS256 JWT verifiable with the jwks (aud, iss, tid, oid, appid, exp)" verify_jwt "$VT" "$VAULT_RES"

# ---- ARM: resource group and vaults ----
req PUT "$SUB/resourcegroups/rg1" '{"location":"westeurope"}' "$MT"
check "arm: missing api-version is 400 MissingApiVersionParameter" has 'b["error"]["code"]' MissingApiVersionParameter
req PUT "$SUB/resourcegroups/rg1?api-version=2021-04-01" '{"location":"westeurope"}' "$MT"
check "arm: resource group created (201)" is 201
req PUT "$SUB/resourcegroups/rg1?api-version=2021-04-01" '{"location":"westeurope"}'
check "arm: no token is 401 AuthenticationFailed" has 'b["error"]["code"]' AuthenticationFailed
vault_body() { # vault_body RBAC PURGE_PROTECTION
    local pp=""
    [ "$2" = true ] && pp=',"enablePurgeProtection":true'
    echo "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":[],\"enableRbacAuthorization\":$1,\"softDeleteRetentionInDays\":90$pp}}"
}
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-prot?api-version=2024-11-01" "$(vault_body true true)" "$MT"
check "arm: vault with purge protection created" is 200
check "arm: vault properties" has '[b["properties"]["enablePurgeProtection"], b["properties"]["enableRbacAuthorization"], b["properties"]["vaultUri"], b["properties"]["provisioningState"]]' "[true, true, \"https://kv-prot.vault.localhost:$P/\", \"Succeeded\"]"
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-open?api-version=2024-11-01" "$(vault_body true false)" "$MT"
check "arm: vault without purge protection created" is 200
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-prot?api-version=2024-11-01" \
    "$(vault_body true true | sed 's/"enablePurgeProtection":true/"enablePurgeProtection":false/')" "$MT"
check "arm: purge protection cannot be turned off" is 400
req GET "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/nope?api-version=2024-11-01" "" "$MT"
check "arm: unknown vault is 404 ResourceNotFound" has 'b["error"]["code"]' ResourceNotFound

KV="https://kv-prot.vault.localhost:$P"
KV2="https://kv-open.vault.localhost:$P"
A="api-version=7.5"

# ---- Key Vault: challenge and api-version ----
req POST "$KV/keys/k1/create?$A" '{"kty":"RSA"}'
check "kv: no token is 401" is 401
check "kv: 401 body is AKV10000" has 'b' '{"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}'
WWW=$(header WWW-Authenticate)
[ "$WWW" = "Bearer authorization=\"$LOGIN/$AZURE_TENANT_ID\", resource=\"$VAULT_RES\"" ] &&
    ok "kv: WWW-Authenticate challenge" || fail "kv: WWW-Authenticate challenge" "$WWW"
req GET "$KV/keys" "" "$VT"
check "kv: missing api-version is 400 BadParameter" has '[b["error"]["code"]]' '["BadParameter"]'
req GET "$KV/keys?$A" "" "$MT"
check "kv: a management token is refused with 401" is 401
req GET "$KV/keys?api%2Dversion=7.4-preview.1" "" "$VT"
check "kv: percent-encoded query name and 7.4-preview.1" is 200
req GET "$KV/keys?api-version=2025-07-01" "" "$VT"
check "kv: api-version 2025-07-01" is 200
req GET "$KV/keys?api-version=1.0" "" "$VT"
check "kv: unknown api-version is 400" is 400

# ---- keys ----
req POST "$KV/keys/k1/create?$A" '{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"],"tags":{"purpose":"dek"}}' "$VT"
check "keys: create RSA 2048" is 200
KID1=$(j 'b["key"]["kid"]')
V1=${KID1##*/}
check "keys: kid is vault/keys/name/32-hex version" has '[b["key"]["kid"].rsplit("/",1)[0], len(b["key"]["kid"].rsplit("/",1)[1]), b["key"]["kty"], len(__import__("base64").urlsafe_b64decode(b["key"]["n"]+"=="))]' "[\"$KV/keys/k1\", 32, \"RSA\", 256]"
check "keys: attributes are integer Unix seconds, recovery level Recoverable" has '[type(b["attributes"]["created"]).__name__, b["attributes"]["recoveryLevel"], b["attributes"]["recoverableDays"], "nbf" in b["attributes"], b["tags"]]' '["int", "Recoverable", 90, false, {"purpose": "dek"}]'
req GET "$KV/keys/k1/?$A" "" "$VT"
check "keys: get latest with trailing slash" has 'b["key"]["kid"]' "$KID1"
check "keys: GET never returns private members" has '[k for k in ("d","p","q","dp","dq","qi") if k in b["key"]]' '[]'
req POST "$KV/keys/k1/create?$A" '{"kty":"RSA","key_size":3072,"key_ops":["wrapKey","unwrapKey"]}' "$VT"
check "keys: create again adds a version" is 200
KID2=$(j 'b["key"]["kid"]')
req GET "$KV/keys/k1/$V1?$A" "" "$VT"
check "keys: get a specific version" has 'b["key"]["kid"]' "$KID1"
req POST "$KV/keys/k2/create?$A" '{"kty":"EC","crv":"P-256"}' "$VT"
check "keys: create EC P-256" has '[b["key"]["kty"], b["key"]["crv"], len(b["key"]["x"]), len(b["key"]["y"]), b["key"]["key_ops"]]' '["EC", "P-256", 43, 43, ["sign", "verify"]]'
req POST "$KV/keys/k3/create?$A" '{"kty":"RSA","key_size":1024}' "$VT"
check "keys: unsupported key size is 400 BadParameter" has 'b["error"]["code"]' BadParameter
req GET "$KV/keys/nothere?$A" "" "$VT"
check "keys: missing key is 404 KeyNotFound" has 'b["error"]["code"]' KeyNotFound
req GET "$KV/keys?$A&maxresults=1" "" "$VT"
check "keys: list page of 1 with nextLink" has '[len(b["value"]), b["value"][0]["kid"], b["nextLink"] is not None]' "[1, \"$KV/keys/k1\", true]"
NEXT=$(j 'b["nextLink"]')
req GET "$NEXT" "" "$VT"
check "keys: following nextLink gives the last page" has '[[x["kid"] for x in b["value"]], b["nextLink"]]' "[[\"$KV/keys/k2\"], null]"
req GET "$KV/keys?$A&maxresults=26" "" "$VT"
check "keys: maxresults above 25 is 400" is 400
req GET "$KV/keys/k1/versions?$A" "" "$VT"
check "keys: versions list has versioned kids" has 'sorted(x["kid"] for x in b["value"])' "$("$PY" -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$KID1" "$KID2")"
req GET "$KV/keys/k1/rotationpolicy?$A" "" "$VT"
check "keys: default rotation policy is Notify P30D before expiry" has 'b["lifetimeActions"]' '[{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}]'
req PUT "$KV/keys/k1/rotationpolicy?$A" '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"rotate"}},{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P2Y"}}' "$VT"
check "keys: set rotation policy" has '[b["id"], b["lifetimeActions"][0]["action"]["type"], b["attributes"]["expiryTime"]]' "[\"$KV/keys/k1/rotationpolicy\", \"Rotate\", \"P2Y\"]"
req PUT "$KV/keys/k1/rotationpolicy?$A" '{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Rotate"}}]}' "$VT"
check "keys: rotation sooner than 7 days is refused" is 400
req POST "$KV/keys/k1/rotate?$A" "" "$VT"
check "keys: rotate makes a new version with exp from the policy" has '[b["key"]["kid"] not in ("'"$KID1"'","'"$KID2"'"), b["attributes"]["exp"] - b["attributes"]["created"]]' '[true, 63072000]'
KID3=$(j 'b["key"]["kid"]')
req GET "$KV/keys/k1?$A" "" "$VT"
check "keys: the rotated version is the latest" has 'b["key"]["kid"]' "$KID3"

# ---- wrap / unwrap ----
req POST "$KV/keys/k1/$V1/wrapkey?$A" '{"alg":"RSA-OAEP-256","value":"c2l4dGVlbi1ieXRlLWRlaw"}' "$VT"
check "wrap: RSA-OAEP-256" has '[b["kid"], len(__import__("base64").urlsafe_b64decode(b["value"]+"=="))]' "[\"$KID1\", 256]"
WRAPPED=$(j 'b["value"]')
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
check "unwrap: RSA-OAEP-256 round trip" has 'b["value"]' c2l4dGVlbi1ieXRlLWRlaw
req POST "$KV/keys/k1/$V1/wrapkey?$A" '{"alg":"RSA-OAEP","value":"c2l4dGVlbi1ieXRlLWRlaw"}' "$VT"
W2=$(j 'b["value"]')
req POST "$KV/keys/k1/${KID2##*/}/wrapkey?$A" '{"alg":"RSA-OAEP","value":"c2l4dGVlbi1ieXRlLWRlaw"}' "$VT"
W_K2=$(j 'b["value"]')
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP\",\"value\":\"$W2\"}" "$VT"
check "unwrap: RSA-OAEP round trip" has 'b["value"]' c2l4dGVlbi1ieXRlLWRlaw
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP\",\"value\":\"$WRAPPED\"}" "$VT"
check "unwrap: wrong algorithm fails" is 400
# encrypt outside azsim with textbook RSA-OAEP-256 (plain Python) and let azsim unwrap it
oaep256_encrypt() { # oaep256_encrypt KEYBUNDLE_FILE: RSA-OAEP-256 of a fixed message to that key
    "$PY" - "$1" <<'EOF'
import base64, hashlib, json, os, sys
def d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
k = json.load(open(sys.argv[1]))["key"]
n, e = int.from_bytes(d(k["n"]), "big"), int.from_bytes(d(k["e"]), "big")
kl, H = (n.bit_length() + 7) // 8, hashlib.sha256
def mgf(seed, ln):
    out, i = b"", 0
    while len(out) < ln:
        out += H(seed + i.to_bytes(4, "big")).digest(); i += 1
    return out[:ln]
m = b"external-dek-0123456789abcdef"
db = H(b"").digest() + b"\x00" * (kl - len(m) - 2 * 32 - 2) + b"\x01" + m
seed = os.urandom(32)
mdb = bytes(a ^ b for a, b in zip(db, mgf(seed, kl - 33)))
ms = bytes(a ^ b for a, b in zip(seed, mgf(mdb, 32)))
c = pow(int.from_bytes(b"\x00" + ms + mdb, "big"), e, n).to_bytes(kl, "big")
print(base64.urlsafe_b64encode(c).decode().rstrip("="))
EOF
}
req GET "$KV/keys/k1/$V1?$A" "" "$VT"
EXT=$(oaep256_encrypt "$WORK/body")
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$EXT\"}" "$VT"
check "unwrap: ciphertext made outside azsim (standard RSA-OAEP-256)" has '__import__("base64").urlsafe_b64decode(b["value"]+"==").decode()' external-dek-0123456789abcdef
# import: an RSA key made outside azsim (plain Python) must work for unwrap afterwards
JWK=$("$PY" - <<'EOF'
import base64, json, secrets
def e(i): return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).decode().rstrip("=")
def prime(bits):
    while True:
        c = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if all(c % p for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
            d, s = c - 1, 0
            while d % 2 == 0: d, s = d // 2, s + 1
            def witness(a):
                x = pow(a, d, c)
                if x in (1, c - 1): return False
                for _ in range(s - 1):
                    x = x * x % c
                    if x == c - 1: return False
                return True
            if not any(witness(secrets.randbelow(c - 3) + 2) for _ in range(24)): return c
E = 65537
while True:
    p, q = prime(1024), prime(1024)
    phi = (p - 1) * (q - 1)
    if p != q and phi % E and (p * q).bit_length() == 2048: break
d = pow(E, -1, phi)
print(json.dumps({"kty": "RSA", "key_ops": ["wrapKey", "unwrapKey"], "n": e(p * q), "e": e(E), "d": e(d),
                  "p": e(p), "q": e(q), "dp": e(d % (p - 1)), "dq": e(d % (q - 1)), "qi": e(pow(q, -1, p))}))
EOF
)
req PUT "$KV/keys/imp?$A" "{\"key\":$JWK}" "$VT"
check "import: RSA JWK with private members" has '[b["key"]["n"], "d" in b["key"]]' "[$("$PY" -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["n"]))' "$JWK"), false]"
EXT=$(oaep256_encrypt "$WORK/body")
req POST "$KV/keys/imp//unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$EXT\"}" "$VT"
check "import: the imported private key unwraps" has '__import__("base64").urlsafe_b64decode(b["value"]+"==").decode()' external-dek-0123456789abcdef
req PUT "$KV/keys/imp2?$A" "$("$PY" -c 'import json,sys; k=json.loads(sys.argv[1]); del k["d"]; print(json.dumps({"key":k}))' "$JWK")" "$VT"
check "import: a JWK without private members is 400" is 400

req PATCH "$KV/keys/k1/$V1?$A" '{"attributes":{"enabled":false}}' "$VT"
check "update: disable a version" has 'b["attributes"]["enabled"]' false
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
check "unwrap: disabled version is 403 KeyDisabled" has '[b["error"]["code"], b["error"]["innererror"]["code"]]' '["Forbidden", "KeyDisabled"]'
req PATCH "$KV/keys/k1/$V1?$A" '{"attributes":{"enabled":true,"exp":1000},"tags":{"t":"1"}}' "$VT"
check "update: exp and tags" has '[b["attributes"]["exp"], b["tags"]]' '[1000, {"t": "1"}]'
req POST "$KV/keys/k1/$V1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
check "unwrap: expired version is refused" has 'b["error"]["innererror"]["code"]' KeyExpired
req POST "$KV/keys/k1/unwrapkey?$A" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$WRAPPED\"}" "$VT"
check "unwrap: with the latest version (wrong key) fails" is 400

# ---- delete / soft delete / purge protection (keys) ----
req DELETE "$KV/keys/k2?$A" "" "$VT"
check "keys: delete returns a deleted key bundle" has '[b["recoveryId"], b["scheduledPurgeDate"] - b["deletedDate"]]' "[\"$KV/deletedkeys/k2\", 7776000]"
req POST "$KV/keys/k2/create?$A" '{"kty":"EC"}' "$VT"
check "keys: name held by a deleted key is 409 ObjectIsDeletedButRecoverable" has '[b["error"]["code"], b["error"]["innererror"]["code"]]' '["Conflict", "ObjectIsDeletedButRecoverable"]'
req GET "$KV/deletedkeys?$A" "" "$VT"
check "keys: list deleted" has '[x["kid"] for x in b["value"]]' "[\"$KV/keys/k2\"]"
req DELETE "$KV/deletedkeys/k2?$A" "" "$VT"
check "keys: purge refused under purge protection (403)" is 403
req POST "$KV/deletedkeys/k2/recover?$A" "" "$VT"
check "keys: recover" has 'b["key"]["kty"]' EC
req GET "$KV/keys/k2?$A" "" "$VT"
check "keys: recovered key readable" is 200
req POST "$KV/keys/k2/backup?$A" "" "$VT"
check "keys: backup" is 200

# ---- secrets ----
req PUT "$KV2/secrets/s1?$A" '{"value":"hunter2","contentType":"text/plain","tags":{"gen":"1"}}' "$VT"
check "secrets: set" has '[b["value"], b["contentType"], b["id"].rsplit("/",1)[0], b["attributes"]["recoveryLevel"]]' "[\"hunter2\", \"text/plain\", \"$KV2/secrets/s1\", \"Recoverable+Purgeable\"]"
SID1=$(j 'b["id"]')
req PUT "$KV2/secrets/s1?$A" '{"value":"hunter3"}' "$VT"
check "secrets: set again adds a version" has 'b["id"] != "'"$SID1"'"' true
req GET "$KV2/secrets/s1/?$A" "" "$VT"
check "secrets: get latest" has 'b["value"]' hunter3
req GET "$KV2/secrets/s1/${SID1##*/}?$A" "" "$VT"
check "secrets: get version" has 'b["value"]' hunter2
req GET "$KV2/secrets?$A" "" "$VT"
check "secrets: list has no values" has '[[x["id"] for x in b["value"]], any("value" in x for x in b["value"])]' "[[\"$KV2/secrets/s1\"], false]"
req GET "$KV2/secrets/s1/versions?$A" "" "$VT"
check "secrets: versions" has 'len(b["value"])' 2
req PATCH "$KV2/secrets/s1/${SID1##*/}?$A" '{"contentType":"application/x-pem-file"}' "$VT"
check "secrets: update content type" has 'b["contentType"]' application/x-pem-file
req POST "$KV2/secrets/s1/backup?$A" "" "$VT"
BACKUP=$(j 'b["value"]')
grep -q hunter "$WORK/body" && fail "secrets: backup blob is opaque" || ok "secrets: backup blob is opaque"
req DELETE "$KV2/secrets/s1?$A" "" "$VT"
check "secrets: delete returns recoveryId, no value" has '[b["recoveryId"], "value" in b]' "[\"$KV2/deletedsecrets/s1\", false]"
req GET "$KV2/secrets/s1?$A" "" "$VT"
check "secrets: deleted secret is 404 SecretNotFound" has 'b["error"]["code"]' SecretNotFound
req PUT "$KV2/secrets/s1?$A" '{"value":"again"}' "$VT"
check "secrets: soft-deleted name is 409 ObjectIsDeletedButRecoverable" has '[b["error"]["code"], b["error"]["innererror"]["code"]]' '["Conflict", "ObjectIsDeletedButRecoverable"]'
req GET "$KV2/deletedsecrets/s1?$A" "" "$VT"
check "secrets: get deleted" is 200
req POST "$KV2/deletedsecrets/s1/recover?$A" "" "$VT"
check "secrets: recover" is 200
req GET "$KV2/secrets/s1?$A" "" "$VT"
check "secrets: recovered value" has 'b["value"]' hunter3
req DELETE "$KV2/secrets/s1?$A" "" "$VT"
req DELETE "$KV2/deletedsecrets/s1?$A" "" "$VT"
check "secrets: purge without purge protection is 204" is 204
req POST "$KV2/secrets/restore?$A" "{\"value\":\"$BACKUP\"}" "$VT"
check "secrets: restore after purge" is 200
req GET "$KV2/secrets/s1/${SID1##*/}?$A" "" "$VT"
check "secrets: restore keeps versions" has 'b["value"]' hunter2
req POST "$KV2/secrets/restore?$A" "{\"value\":\"$BACKUP\"}" "$VT"
check "secrets: restore onto an existing name is 409" is 409
req PATCH "$KV2/secrets/s1?$A" '{"attributes":{"enabled":false}}' "$VT"
req GET "$KV2/secrets/s1?$A" "" "$VT"
check "secrets: disabled secret is 403 SecretDisabled" has 'b["error"]["innererror"]["code"]' SecretDisabled

# ---- Graph + RBAC with propagation delay ----
req POST "$GRAPH/applications" '{"displayName":"consumer","signInAudience":"AzureADMyOrg"}' "$GT"
check "graph: create application (201)" is 201
APP_OID=$(j 'b["id"]')
APP_ID=$(j 'b["appId"]')
req POST "$GRAPH/applications/$APP_OID/addPassword" '{"passwordCredential":{"displayName":"p1"}}' "$GT"
check "graph: addPassword returns secretText once" has '[len(b["secretText"]) >= 16, b["hint"] == b["secretText"][:3]]' '[true, true]'
APP_SECRET=$(j 'b["secretText"]')
req GET "$GRAPH/applications(appId='$APP_ID')" "" "$GT"
check "graph: later reads hide secretText" has '[p["secretText"] for p in b["passwordCredentials"]]' '[null]'
token_for "$APP_ID" "$APP_SECRET" "$VAULT_RES" >/dev/null
STATUS=$(cat "$WORK/status")
check "token: app without service principal is refused" is 400
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$APP_ID\"}" "$GT"
check "graph: create service principal (201)" is 201
SP_OID=$(j 'b["id"]')
# upserts by alternate key (Prefer: create-if-missing): the first creates, the next updates
UP="$GRAPH/applications(uniqueName='kvr-upsert-o''brien')"
req PATCH "$UP" '{"displayName":"upserted"}' "$GT"
check "graph: PATCH by unknown uniqueName without Prefer is 404" is 404
req PATCH "$UP" '{"displayName":"upserted"}' "$GT" -H 'Prefer: return=minimal, create-if-missing'
check "graph: upsert by uniqueName creates (201)" is 201
check "graph: the created app has the uniqueName" has '[b["displayName"], b["uniqueName"]]' '["upserted", "kvr-upsert-o'"'"'brien"]'
UP_APP=$(j 'b["appId"]')
req PATCH "$UP" '{"displayName":"upserted 2"}' "$GT" -H 'Prefer: create-if-missing'
check "graph: upsert of an existing uniqueName updates (204)" is 204
req GET "$UP" "" "$GT"
check "graph: get by uniqueName, one app, renamed" has '[b["appId"], b["displayName"]]' "[\"$UP_APP\", \"upserted 2\"]"
req GET "$GRAPH/applications?\$filter=displayName%20eq%20'upserted%202'" "" "$GT"
check "graph: the upserts made one app" has 'len(b["value"])' 1
req POST "$GRAPH/applications" '{"displayName":"dup","uniqueName":"kvr-upsert-o'"'"'brien"}' "$GT"
check "graph: POST with a uniqueName in use is 400" has 'b["error"]["code"]' Request_BadRequest
req PATCH "$GRAPH/servicePrincipals(appId='$UP_APP')" '{}' "$GT" -H 'Prefer: create-if-missing'
check "graph: service principal upsert by appId creates (201)" has 'b["appId"]' "$UP_APP"
req PATCH "$GRAPH/servicePrincipals(appId='$UP_APP')" '{}' "$GT" -H 'Prefer: create-if-missing'
check "graph: service principal upsert again updates (204)" is 204
req PATCH "$GRAPH/servicePrincipals(appId='00000000-0000-0000-0000-0000000000ff')" '{}' "$GT" -H 'Prefer: create-if-missing'
check "graph: service principal upsert for an unknown app is 400" is 400
UT=$(token_for "$APP_ID" "$APP_SECRET" "$VAULT_RES")
STATUS=$(cat "$WORK/status")
check "token: new app signs in" is 200
# certificate credentials: a signed JWT client assertion (needs the openssl command)
if command -v openssl >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/cert.key" -out "$WORK/cert.pem" \
        -days 30 -subj /CN=kvr-azsim-test >/dev/null 2>&1
    DER64=$(openssl x509 -in "$WORK/cert.pem" -outform DER | base64 | tr -d '\n')
    req PATCH "$GRAPH/applications/$APP_OID" "{\"keyCredentials\":[{\"type\":\"AsymmetricX509Cert\",\"usage\":\"Verify\",\"key\":\"$DER64\",\"displayName\":\"CN=kvr-azsim-test\"}]}" "$GT"
    check "graph: add a certificate credential (204)" is 204
    assertion() { # assertion ALG AUD
        "$PY" - "$WORK/cert.pem" "$WORK/cert.key" "$APP_ID" "$1" "$2" <<'EOF2'
import base64, hashlib, json, ssl, subprocess, sys, time, uuid
cert, key, app, alg, aud = sys.argv[1:]
der = ssl.PEM_cert_to_DER_cert(open(cert).read())
e = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
hdr = {"alg": alg, "typ": "JWT"}
if alg == "PS256": hdr["x5t#S256"] = e(hashlib.sha256(der).digest())
else: hdr["x5t"] = e(hashlib.sha1(der).digest())
now = int(time.time())
claims = {"aud": aud, "iss": app, "sub": app, "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}
inp = e(json.dumps(hdr).encode()) + "." + e(json.dumps(claims).encode())
opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] if alg == "PS256" else []
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key] + opts, input=inp.encode(), capture_output=True, check=True).stdout
print(inp + "." + e(sig))
EOF2
    }
    TOKEN_URL="$LOGIN/$AZURE_TENANT_ID/oauth2/v2.0/token"
    for alg in RS256 PS256; do
        req POST "$TOKEN_URL" "" "" -d grant_type=client_credentials --data-urlencode "client_id=$APP_ID" \
            --data-urlencode "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
            --data-urlencode "client_assertion=$(assertion $alg "$TOKEN_URL")" --data-urlencode "scope=$VAULT_RES/.default"
        check "token: client_assertion signed $alg with a registered certificate" has 'b["token_type"]' Bearer
    done
    req POST "$TOKEN_URL" "" "" -d grant_type=client_credentials --data-urlencode "client_id=$APP_ID" \
        --data-urlencode "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
        --data-urlencode "client_assertion=$(assertion PS256 https://login.microsoftonline.com/x/oauth2/v2.0/token)" --data-urlencode "scope=$VAULT_RES/.default"
    check "token: client_assertion with a wrong aud is 401 invalid_client" has '[b["error"], b["error_codes"]]' '["invalid_client", [700027]]'
else
    echo "skip - client_assertion tests (no openssl command)"
fi

req GET "$KV2/secrets/s1/${SID1##*/}?$A" "" "$UT"
check "rbac: principal without a role is 403 ForbiddenByRbac" has '[b["error"]["code"], b["error"]["innererror"]["code"]]' '["Forbidden", "ForbiddenByRbac"]'
RA="$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-open/providers/Microsoft.Authorization/roleAssignments/6f1c7e52-2b7e-4f7a-9a1d-0c7b3e0f5a11?api-version=2022-04-01"
req PUT "$RA" "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6\",\"principalId\":\"$SP_OID\",\"principalType\":\"ServicePrincipal\"}}" "$MT"
check "arm: role assignment created (201)" is 201
req GET "$KV2/secrets/s1/${SID1##*/}?$A" "" "$UT"
check "rbac: new assignment not yet effective (propagation delay)" is 403
req POST "$AZSIM_URL/clock/advance" '{"seconds":6}'
check "admin: clock advance" is 200
req GET "$KV2/secrets/s1/${SID1##*/}?$A" "" "$UT"
check "rbac: Secrets User reads the secret after the delay" has 'b["value"]' hunter2
[ -n "$(header x-ms-request-id)" ] && ok "kv: x-ms-request-id header" || fail "kv: x-ms-request-id header"
req GET "$RA" "" "$MT"
check "arm: get role assignment" has '[b["name"], b["properties"]["principalId"], b["properties"]["roleDefinitionId"].endswith("4633458b-17de-408a-b874-0445c86b69e6")]' "[\"6f1c7e52-2b7e-4f7a-9a1d-0c7b3e0f5a11\", \"$SP_OID\", true]"
req GET "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-open/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&\$filter=principalId%20eq%20'$SP_OID'" "" "$MT"
check "arm: list role assignments filtered by principal" has 'len(b["value"])' 1
req GET "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-open/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&\$filter=atScope()" "" "$MT"
check "arm: atScope() includes inherited subscription assignments" has 'len(b["value"]) >= 3' true
req DELETE "${RA/6f1c7e52/7f1c7e52}" "" "$MT"
check "arm: deleting a missing role assignment is 204" is 204
req PUT "$KV2/secrets/s2?$A" '{"value":"x"}' "$UT"
check "rbac: Secrets User cannot set secrets" is 403
req GET "$KV2/keys?$A" "" "$UT"
check "rbac: Secrets User cannot list keys" is 403

# ---- access policies (vault without RBAC) ----
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-ap?api-version=2023-07-01" \
    "{\"location\":\"westeurope\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":[{\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$SP_OID\",\"permissions\":{\"secrets\":[\"get\",\"set\"]}}]}}" "$MT"
check "arm: access-policy vault created" has 'b["properties"]["enableRbacAuthorization"]' false
KV3="https://kv-ap.vault.localhost:$P"
req PUT "$KV3/secrets/ap1?$A" '{"value":"v"}' "$UT"
check "access policy: set allowed by policy" is 200
req DELETE "$KV3/secrets/ap1?$A" "" "$UT"
check "access policy: delete refused with 403 AccessDenied" has '[b["error"]["code"], b["error"]["innererror"]["code"]]' '["Forbidden", "AccessDenied"]'
req GET "$KV3/secrets/ap1?$A" "" "$VT"
check "access policy: a principal with no policy is refused (RBAC roles do not apply)" is 403
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-ap/accessPolicies/add?api-version=2023-07-01" \
    "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$SP_OID\",\"permissions\":{\"secrets\":[\"delete\"]}}]}}" "$MT"
check "arm: accessPolicies/add" is 200
req DELETE "$KV3/secrets/ap1?$A" "" "$UT"
check "access policy: delete allowed once the permission is added" is 200
req GET "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-ap?api-version=2023-07-01" "" "$MT"
check "arm: accessPolicies/add merged the permissions" has 'sorted(b["properties"]["accessPolicies"][0]["permissions"]["secrets"])' '["delete", "get", "set"]'
req POST "$SUB/providers/Microsoft.KeyVault/checkNameAvailability?api-version=2024-11-01" '{"name":"kv-prot","type":"Microsoft.KeyVault/vaults"}' "$MT"
check "arm: checkNameAvailability of a used name" has '[b["nameAvailable"], b["reason"]]' '[false, "AlreadyExists"]'
req POST "$SUB/providers/Microsoft.KeyVault/checkNameAvailability?api-version=2024-11-01" '{"name":"kv-free-1","type":"Microsoft.KeyVault/vaults"}' "$MT"
check "arm: checkNameAvailability of a free name" has 'b["nameAvailable"]' true
req PATCH "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-open?api-version=2024-11-01" '{"tags":{"env":"test"}}' "$MT"
check "arm: PATCH vault tags keeps properties" has '[b["tags"], b["properties"]["enableRbacAuthorization"]]' '[{"env": "test"}, true]'
req GET "$SUB/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01" "" "$MT"
check "arm: list vaults in the subscription" has 'sorted(v["name"] for v in b["value"])' '["kv-ap", "kv-open", "kv-prot"]'

# ---- vault soft delete ----
VAP="$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-ap?api-version=2024-11-01"
req DELETE "$VAP" "" "$MT"
check "arm: delete vault" is 200
req GET "$KV3/secrets?$A" "" "$VT"
check "arm: a deleted vault's host no longer answers" is 000
req GET "$SUB/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/kv-ap?api-version=2024-11-01" "" "$MT"
check "arm: get deleted vault" has '[b["type"], b["properties"]["purgeProtectionEnabled"], b["properties"]["vaultId"].endswith("/vaults/kv-ap")]' '["Microsoft.KeyVault/deletedVaults", false, true]'
req PUT "$VAP" "$(vault_body false false)" "$MT"
check "arm: recreating a soft-deleted vault name is 409 ConflictError" has 'b["error"]["code"]' ConflictError
req PUT "$VAP" "$(vault_body false false | sed 's/"accessPolicies"/"createMode":"recover","accessPolicies"/')" "$MT"
check "arm: createMode recover brings the vault back" is 200
req GET "$KV3/secrets?$A" "" "$UT"
check "kv: recovered vault answers again (its new policy list is empty: 403)" has 'b["error"]["innererror"]["code"]' AccessDenied

# ---- throttling at the published per-vault limit ----
req PUT "$SUB/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv-thr?api-version=2024-11-01" "$(vault_body true false)" "$MT"
THR=0
for i in $(seq 1 21); do
    req POST "https://kv-thr.vault.localhost:$P/keys/t$i/create?$A" '{"kty":"EC"}' "$VT"
    [ "$STATUS" = 429 ] && THR=$((THR + 1))
done
check "throttle: the 21st key create within 10 s is 429 Throttled" has '[b["error"]["code"]]' '["Throttled"]'
[ "$THR" -eq 1 ] && ok "throttle: exactly one request throttled" || fail "throttle: exactly one request throttled" "$THR"

# ---- throttling at the subscription-wide limit (5 x each vault limit, per subscription and region) ----
req POST "$AZSIM_URL/throttle" '{"subscriptionOther":5}'
check "admin: throttle lowers the subscription-wide limit" has '[b["secretWrites"], b["subscriptionOther"]]' '[0, 5]'
req POST "$AZSIM_URL/clock/advance" '{"seconds":10}' # every window starts again
SEEN=""
for i in 1 2 3 4 5 6; do # two vaults of rg1 (westeurope), each far under its own 4,000
    if [ $((i % 2)) = 1 ]; then req GET "$KV/secrets?$A" "" "$VT"; else req GET "https://kv-thr.vault.localhost:$P/secrets?$A" "" "$VT"; fi
    SEEN="$SEEN $STATUS"
done
[ "$SEEN" = " 200 200 200 200 200 429" ] && ok "throttle: the subscription's 6th read within 10 s, over two vaults, is 429" ||
    fail "throttle: the subscription's 6th read within 10 s, over two vaults, is 429" "$SEEN"
check "throttle: the subscription's limit answers 429 Throttled" has 'b["error"]["code"]' Throttled
req POST "$AZSIM_URL/throttle" '{"subscriptionOther":0}'
req GET "$KV/secrets?$A" "" "$VT"
check "throttle: back at the published 20,000 the read goes" is 200
req POST "$AZSIM_URL/throttle" '{}'
check "admin: throttle without a limit is 400" is 400

req POST "$GRAPH/applications/$APP_OID/addPassword" '{"passwordCredential":{"displayName":"tmp"}}' "$GT"
TMP_KEY=$(j 'b["keyId"]')
req POST "$GRAPH/applications/$APP_OID/removePassword" "{\"keyId\":\"$TMP_KEY\"}" "$GT"
check "graph: removePassword (204)" is 204
req GET "$GRAPH/applications/$APP_OID" "" "$GT"
check "graph: the removed credential is gone" has "\"$TMP_KEY\" in [p[\"keyId\"] for p in b[\"passwordCredentials\"]]" false

# ---- clock: Date header, token expiry, purge dates ----
req GET "$AZSIM_URL/clock"
NOW0=$(j 'b["now"]')
END1=$("$PY" -c 'import sys,time; print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(sys.argv[1]) + 86400)))' "$NOW0")
req POST "$GRAPH/applications/$APP_OID/addPassword" "{\"passwordCredential\":{\"displayName\":\"short\",\"endDateTime\":\"$END1\"}}" "$GT"
SHORT_SECRET=$(j 'b["secretText"]')
check "graph: addPassword honours endDateTime" has 'b["endDateTime"]' "$END1"
req POST "$AZSIM_URL/clock/advance" '{"seconds":7776001}'
req GET "$KV/keys?$A" "" "$VT"
check "clock: an expired token gets the 401 challenge" is 401
VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$VAULT_RES")
token_for "$APP_ID" "$SHORT_SECRET" "$VAULT_RES" >/dev/null
STATUS=$(cat "$WORK/status")
check "token: an expired client secret is 401 AADSTS7000222" has '[b["error"], b["error_codes"]]' '["invalid_client", [7000222]]'
req GET "$KV/keys?$A" "" "$VT"
DATE=$(header Date)
"$PY" -c 'import sys,email.utils as u; sys.exit(0 if abs(u.parsedate_to_datetime(sys.argv[1]).timestamp() - int(sys.argv[2]) - 7776001) < 120 else 1)' "$DATE" "$NOW0" &&
    ok "clock: HTTP Date follows the simulated clock" || fail "clock: HTTP Date follows the simulated clock" "$DATE"
req DELETE "$KV/keys/k2?$A" "" "$VT"
req POST "$AZSIM_URL/clock/advance" '{"seconds":7776001}'
VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$VAULT_RES")
req GET "$KV/deletedkeys/k2?$A" "" "$VT"
check "clock: a deleted key is purged after its scheduled purge date" is 404
req GET "$KV/keys/k1/versions?$A" "" "$VT"
check "clock: the Rotate lifetime action rotated k1 automatically" has 'len(b["value"]) > 3' true

# ---- stats and shutdown ----
req GET "$AZSIM_URL/stats"
check "admin: stats count operations" has '[b["requests"]["kv.keys.create"] >= 4, b["requests"]["login.token"] >= 5, b["throttled"], b["total"] > 50]' '[true, true, 2, true]'

kill -TERM "$AZSIM_PID"
RC=0
for _ in $(seq 1 100); do
    kill -0 "$AZSIM_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$AZSIM_PID" 2>/dev/null; then
    fail "SIGTERM stops azsim"
else
    wait "$AZSIM_PID" || RC=$?
    [ "$RC" -eq 0 ] && ok "SIGTERM stops azsim with status 0" || fail "SIGTERM stops azsim with status 0" "status $RC"
fi
AZSIM_PID=

# ---- restart on the same data directory: same CA, same ids, same objects ----
CA_SUM=$(cksum <"$AZSIM_CA")
OLD_TENANT=$AZURE_TENANT_ID
[ -f "$DATA/state.sealed" ] && [ "$(stat -c %a "$DATA/state.sealed")" = 600 ] &&
    ok "state saved on SIGTERM (mode 0600)" || fail "state saved on SIGTERM (mode 0600)"
grep -q hunter "$DATA/state.sealed" && fail "saved state is sealed" || ok "saved state is sealed"
"$AZSIM_BIN" --data "$DATA" --port 0 >"$WORK/stdout2" 2>>"$WORK/stderr" &
AZSIM_PID=$!
for _ in $(seq 1 300); do
    grep -q '^azsim ready ' "$WORK/stdout2" 2>/dev/null && break
    kill -0 "$AZSIM_PID" 2>/dev/null || break
    sleep 0.1
done
if grep -q '^azsim ready ' "$WORK/stdout2"; then
    ok "restart: ready again"
    # shellcheck disable=SC1091
    . "$DATA/azsim.env"
    [ "$(cksum <"$AZSIM_CA")" = "$CA_SUM" ] && ok "restart: the CA is reused" || fail "restart: the CA is reused"
    [ "$AZURE_TENANT_ID" = "$OLD_TENANT" ] && ok "restart: same tenant" || fail "restart: same tenant"
    LOGIN=$AZURE_AUTHORITY_HOST
    VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "https://vault.localhost:$AZSIM_PORT")
    req GET "https://kv-open.vault.localhost:$AZSIM_PORT/secrets/s1/${SID1##*/}?$A" "" "$VT"
    check "restart: secret versions survive" has 'b["value"]' hunter2
    req POST "https://kv-prot.vault.localhost:$AZSIM_PORT/keys/k1/${KID2##*/}/unwrapkey?$A" "{\"alg\":\"RSA-OAEP\",\"value\":\"$W_K2\"}" "$VT"
    check "restart: key material survives (unwrap)" has 'b["value"]' c2l4dGVlbi1ieXRlLWRlaw
    UT=$(token_for "$APP_ID" "$APP_SECRET" "https://vault.localhost:$AZSIM_PORT")
    req GET "https://kv-open.vault.localhost:$AZSIM_PORT/secrets/s1/${SID1##*/}?$A" "" "$UT"
    check "restart: apps, service principals and role assignments survive" is 200
    kill -TERM "$AZSIM_PID"
    RC=0
    wait "$AZSIM_PID" || RC=$?
    [ "$RC" -eq 0 ] && ok "restart: SIGTERM again" || fail "restart: SIGTERM again" "status $RC"
else
    fail "restart: ready again" "$(tail -c 400 "$WORK/stderr")"
fi
AZSIM_PID=
if [ -s "$WORK/stderr" ] && grep -qiE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error' "$WORK/stderr"; then
    fail "no sanitizer reports" "$(head -c 600 "$WORK/stderr")"
else
    ok "no sanitizer reports"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
