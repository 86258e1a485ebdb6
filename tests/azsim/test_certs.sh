#!/usr/bin/env bash
# Key Vault certificates in azsim: starts it on a free port with a fresh data directory, imports
# certificates made with the openssl command at test time (PFX with a password, PEM with an EC key,
# a non-exportable one), and checks the certificate REST shapes, the managed key and secret (their
# values read back with openssl), refusals, soft delete/recover/purge, backup/restore across
# vaults and geographies, RBAC and access policies, /stats and persistence across kill -9.
# Usage: test_certs.sh PATH/TO/azsim. Needs bash, curl, python3 and openssl.
set -euo pipefail

AZSIM_BIN=${1:?usage: test_certs.sh PATH/TO/azsim}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
command -v openssl >/dev/null 2>&1 || { echo "openssl command missing"; exit 1; }

. "$(dirname "$0")/testlib.sh"
azsim_test_setup azsim-certs
check() { # check NAME COMMAND...
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "$(head -c 400 "$WORK/body" 2>/dev/null)"; fi
}

start_azsim() {
    : >"$WORK/stdout"
    "$AZSIM_BIN" --data "$DATA" --port "${PORT:-$(azsim_port)}" --rbac-delay 5 >"$WORK/stdout" 2>>"$WORK/stderr" &
    AZSIM_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^azsim ready ' "$WORK/stdout" 2>/dev/null && return 0
        kill -0 "$AZSIM_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "azsim did not become ready" >&2
    cat "$WORK/stderr" >&2 || true
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
}

start_azsim
# shellcheck disable=SC1091
. "$DATA/azsim.env"
PORT=$AZSIM_PORT
ARM=$KVR_ARM_ENDPOINT
GRAPH=$KVR_GRAPH_ENDPOINT/v1.0
VAULT_RES="https://vault.localhost:$PORT"
SUB="$ARM/subscriptions/$AZURE_SUBSCRIPTION_ID"
A="api-version=7.5"

# reqf METHOD URL FILE TOKEN: like req, with the body read from FILE
reqf() {
    STATUS=$(curl -sS --cacert "$AZSIM_CA" -X "$1" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
        -H "Authorization: Bearer $4" -H 'Content-Type: application/json' --data-binary "@$3" "$2" \
        2>>"$WORK/curl.err") || STATUS=000
}
token_for() { # token_for CLIENT_ID SECRET RESOURCE
    curl -sS --cacert "$AZSIM_CA" -o "$WORK/tok" -X POST "$AZURE_AUTHORITY_HOST/$AZURE_TENANT_ID/oauth2/v2.0/token" \
        -d grant_type=client_credentials --data-urlencode "client_id=$1" --data-urlencode "client_secret=$2" \
        --data-urlencode "scope=$3/.default" >/dev/null
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("access_token",""))' "$WORK/tok"
}
# import_body OUT VALUE_FILE [PWD] [POLICY_JSON] [EXTRA_JSON]: writes an import request body
import_body() {
    "$PY" - "$@" <<'EOF'
import json, sys
out, vf = sys.argv[1], sys.argv[2]
pwd = sys.argv[3] if len(sys.argv) > 3 else ""
pol = json.loads(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else {}
b = {"value": open(vf).read()}
if pwd: b["pwd"] = pwd
if pol is not None: b["policy"] = pol
b.update(extra)
json.dump(b, open(out, "w"))
EOF
}
# thumb PEM_FILE: base64url SHA-1 of the certificate's DER, as x5t
thumb() { openssl x509 -in "$1" -outform DER | openssl dgst -sha1 -binary | base64 | tr '+/' '-_' | tr -d '=\n'; }
der64() { openssl x509 -in "$1" -outform DER | base64 | tr -d '\n'; }
cert_time() { # cert_time PEM start|end: Unix seconds
    local d
    d=$(openssl x509 -in "$1" -noout "-${2}date" | cut -d= -f2)
    "$PY" -c 'import ssl,sys; print(int(ssl.cert_time_to_seconds(sys.argv[1])))' "$d"
}

MT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$ARM")
VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$VAULT_RES")
GT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$KVR_GRAPH_ENDPOINT")

# ---- vaults ----
req PUT "$SUB/resourcegroups/rgc?api-version=2021-04-01" '{"location":"westeurope"}' "$MT"
vault() { # vault NAME LOCATION RBAC PURGE_PROTECTION [ACCESS_POLICIES]
    local pp=""
    [ "$4" = true ] && pp=',"enablePurgeProtection":true'
    req PUT "$SUB/resourceGroups/rgc/providers/Microsoft.KeyVault/vaults/$1?api-version=2024-11-01" \
        "{\"location\":\"$2\",\"properties\":{\"tenantId\":\"$AZURE_TENANT_ID\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":${5:-[]},\"enableRbacAuthorization\":$3,\"softDeleteRetentionInDays\":7$pp}}" "$MT"
    check "arm: vault $1 ($2) created" is 200
}
vault kvc westeurope true false
vault kvc-pp westeurope true true
vault kvc-eu2 northeurope true false
vault kvc-us eastus true false
KV="https://kvc.vault.localhost:$PORT"
KVPP="https://kvc-pp.vault.localhost:$PORT"
KVEU="https://kvc-eu2.vault.localhost:$PORT"
KVUS="https://kvc-us.vault.localhost:$PORT"

# ---- test material ----
C=$WORK/c
mkdir -p "$C"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/rsa.key" -out "$C/rsa.pem" -days 400 \
    -subj "/CN=azsim-cert-test/O=kvreconcile" -addext "subjectAltName=DNS:app.example.test" \
    -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1
openssl pkcs12 -export -inkey "$C/rsa.key" -in "$C/rsa.pem" -passout pass:s3cret -out "$C/rsa.pfx" 2>/dev/null
base64 -w0 "$C/rsa.pfx" >"$C/rsa.pfx.b64"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/rsa2.key" -out "$C/rsa2.pem" -days 30 \
    -subj "/CN=azsim-cert-test-2" >/dev/null 2>&1
openssl pkcs12 -export -inkey "$C/rsa2.key" -in "$C/rsa2.pem" -passout pass: -out "$C/rsa2.pfx" 2>/dev/null
base64 -w0 "$C/rsa2.pfx" >"$C/rsa2.pfx.b64"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/ec.key" 2>/dev/null
openssl req -x509 -key "$C/ec.key" -out "$C/ec.pem" -days 90 -subj "/CN=azsim-ec" >/dev/null 2>&1
cat "$C/ec.pem" "$C/ec.key" >"$C/ec-bundle.pem"
cat "$C/ec.pem" "$C/rsa.key" >"$C/mismatch.pem"
openssl pkey -in "$C/rsa.key" -traditional -out "$C/rsa-pkcs1.key" 2>/dev/null
cat "$C/rsa.pem" "$C/rsa-pkcs1.key" >"$C/pkcs1.pem"
printf 'bm90IGEgY2VydGlmaWNhdGU=' >"$C/junk.b64"
X5T1=$(thumb "$C/rsa.pem")
X5T2=$(thumb "$C/rsa2.pem")
X5TEC=$(thumb "$C/ec.pem")

# ---- import PFX ----
import_body "$C/b1.json" "$C/rsa.pfx.b64" s3cret \
    '{"key_props":{"exportable":true,"kty":"RSA","key_size":2048,"reuse_key":false},"secret_props":{"contentType":"application/x-pkcs12"}}' \
    '{"tags":{"env":"test"}}'
reqf POST "$KV/certificates/web/import?$A" "$C/b1.json" "$VT"
check "import PFX with a password is 200" is 200
V1=$(j 'b["id"].rsplit("/",1)[1]')
check "bundle: id, kid and sid share the version" has '[b["id"], b["kid"], b["sid"]]' \
    "[\"$KV/certificates/web/$V1\", \"$KV/keys/web/$V1\", \"$KV/secrets/web/$V1\"]"
check "bundle: x5t is the base64url SHA-1 of the DER" has 'b["x5t"]' "$X5T1"
check "bundle: cer is the standard base64 DER" has 'b["cer"]' "$(der64 "$C/rsa.pem")"
check "bundle: nbf/exp come from the certificate" has '[b["attributes"]["nbf"], b["attributes"]["exp"]]' \
    "[$(cert_time "$C/rsa.pem" start), $(cert_time "$C/rsa.pem" end)]"
check "bundle: attributes without exportable, with recovery level" has \
    '[b["attributes"]["enabled"], "exportable" in b["attributes"], b["attributes"]["recoveryLevel"], b["attributes"]["recoverableDays"]]' \
    '[true, false, "CustomizedRecoverable+Purgeable", 7]'
check "bundle: policy key_props and secret_props" has '[b["policy"]["id"], b["policy"]["key_props"], b["policy"]["secret_props"]]' \
    "[\"$KV/certificates/web/policy\", {\"exportable\": true, \"kty\": \"RSA\", \"reuse_key\": false, \"key_size\": 2048}, {\"contentType\": \"application/x-pkcs12\"}]"
check "bundle: policy x509_props from the certificate" has \
    '[b["policy"]["x509_props"]["subject"], b["policy"]["x509_props"]["sans"], b["policy"]["x509_props"]["ekus"], b["policy"]["x509_props"]["validity_months"], b["policy"]["issuer"]]' \
    '["CN=azsim-cert-test, O=kvreconcile", {"dns_names": ["app.example.test"]}, ["1.3.6.1.5.5.7.3.1"], 14, {"name": "Unknown"}]'
check "bundle: tags and contentType" has '[b["tags"], b["contentType"]]' '[{"env": "test"}, "application/x-pkcs12"]'

# ---- bad input ----
import_body "$C/bad.json" "$C/junk.b64"
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: not a certificate is 400 BadParameter" has '[b["error"]["code"], "PKCS#12" in b["error"]["message"]]' '["BadParameter", true]'
check "import: not a certificate status" is 400
import_body "$C/bad.json" "$C/rsa.pfx.b64" wrong
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: wrong PFX password is 400 BadParameter" has '[b["error"]["code"], b["error"]["message"]]' '["BadParameter", "Specified PFX password is not correct."]'
import_body "$C/bad.json" "$C/mismatch.pem" "" '{"secret_props":{"contentType":"application/x-pem-file"}}'
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: key that does not match the certificate is 400" has '[b["error"]["code"], "does not match" in b["error"]["message"]]' '["BadParameter", true]'
import_body "$C/bad.json" "$C/pkcs1.pem" "" '{"secret_props":{"contentType":"application/x-pem-file"}}'
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: a PKCS#1 PEM key is refused (PKCS#8 only)" has '[b["error"]["code"], "PKCS#8" in b["error"]["message"]]' '["BadParameter", true]'
import_body "$C/bad.json" "$C/rsa.pem" "" '{"secret_props":{"contentType":"application/x-pem-file"}}'
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: PEM without a private key is 400" has 'b["error"]["message"].startswith("Private key is not specified")' true
import_body "$C/bad.json" "$C/rsa.pfx.b64" s3cret '{"key_props":{"kty":"EC"}}'
reqf POST "$KV/certificates/bad/import?$A" "$C/bad.json" "$VT"
check "import: policy kty that does not match the key is 400" is 400
req GET "$KV/certificates/bad?$A" "" "$VT"
check "failed imports leave nothing behind (404 CertificateNotFound)" has '[b["error"]["code"]]' '["CertificateNotFound"]'
req GET "$KV/secrets/bad?$A" "" "$VT"
check "failed imports leave no managed secret" is 404

# ---- get, versions, list, policy ----
import_body "$C/b2.json" "$C/rsa2.pfx.b64"
reqf POST "$KV/certificates/web/import?$A" "$C/b2.json" "$VT"
check "second import (PFX without password) is a new version" has 'b["x5t"]' "$X5T2"
V2=$(j 'b["id"].rsplit("/",1)[1]')
[ "$V1" != "$V2" ] && ok "versions differ" || fail "versions differ"
req GET "$KV/certificates/web?$A" "" "$VT"
check "get latest" has 'b["id"]' "$KV/certificates/web/$V2"
req GET "$KV/certificates/web/?$A" "" "$VT"
check "get latest with a trailing slash" has 'b["x5t"]' "$X5T2"
req GET "$KV/certificates/web/$V1?$A" "" "$VT"
check "get a version" has '[b["x5t"], b["tags"]]' "[\"$X5T1\", {\"env\": \"test\"}]"
req GET "$KV/certificates/web/versions?$A" "" "$VT"
check "versions list with x5t" has 'sorted([(i["id"].rsplit("/",1)[1], i["x5t"]) for i in b["value"]])' \
    "$("$PY" -c 'import json,sys; print(json.dumps(sorted([[sys.argv[1],sys.argv[2]],[sys.argv[3],sys.argv[4]]])))' "$V1" "$X5T1" "$V2" "$X5T2")"
req GET "$KV/certificates/web/policy?$A" "" "$VT"
check "get policy" has '[b["id"], b["x509_props"]["subject"], b["secret_props"]["contentType"]]' \
    "[\"$KV/certificates/web/policy\", \"CN=azsim-cert-test-2\", \"application/x-pkcs12\"]"
req GET "$KV/certificates/nope?$A" "" "$VT"
check "unknown certificate is 404 CertificateNotFound" has '[b["error"]["code"]]' '["CertificateNotFound"]'

# ---- PEM import with an EC key ----
import_body "$C/b3.json" "$C/ec-bundle.pem" "" '{"key_props":{"kty":"EC","crv":"P-256"},"secret_props":{"contentType":"application/x-pem-file"}}'
reqf POST "$KV/certificates/ec-pem/import?$A" "$C/b3.json" "$VT"
check "import PEM (EC P-256) is 200" has '[b["x5t"], b["policy"]["key_props"]["crv"], b["contentType"]]' \
    "[\"$X5TEC\", \"P-256\", \"application/x-pem-file\"]"
req GET "$KV/secrets/ec-pem?$A" "" "$VT"
j 'b["value"]' >"$C/ec-secret.pem"
check "PEM secret: key first, then the certificate" has \
    '[b["value"].startswith("-----BEGIN PRIVATE KEY-----"), "-----BEGIN CERTIFICATE-----" in b["value"], b["contentType"], b["managed"]]' \
    '[true, true, "application/x-pem-file", true]'
[ "$(thumb "$C/ec-secret.pem")" = "$X5TEC" ] && ok "PEM secret: openssl reads the certificate, x5t matches" ||
    fail "PEM secret: openssl reads the certificate, x5t matches"
openssl pkey -in "$C/ec-secret.pem" -pubout 2>/dev/null >"$C/ec-secret.pub"
openssl pkey -in "$C/ec.key" -pubout 2>/dev/null >"$C/ec.pub"
cmp -s "$C/ec-secret.pub" "$C/ec.pub" && ok "PEM secret: the private key is the imported one" ||
    fail "PEM secret: the private key is the imported one"
req GET "$KV/keys/ec-pem?$A" "" "$VT"
check "managed EC key: public JWK, managed" has '[b["key"]["kty"], b["key"]["crv"], "d" in b["key"], b["managed"]]' '["EC", "P-256", false, true]'

# ---- the managed secret and key ----
req GET "$KV/secrets/web?$A" "" "$VT"
check "managed secret: contentType, kid, managed, same version" has '[b["contentType"], b["kid"], b["managed"], b["id"]]' \
    "[\"application/x-pkcs12\", \"$KV/keys/web/$V2\", true, \"$KV/secrets/web/$V2\"]"
j 'b["value"]' | base64 -d >"$C/web-secret.pfx"
openssl pkcs12 -in "$C/web-secret.pfx" -passin pass: -nodes -out "$C/web-secret.pem" 2>/dev/null &&
    ok "managed secret: openssl opens the PFX without a password" || fail "managed secret: openssl opens the PFX without a password"
grep -q 'BEGIN PRIVATE KEY' "$C/web-secret.pem" && ok "managed secret: the PFX holds the private key" ||
    fail "managed secret: the PFX holds the private key"
[ "$(thumb "$C/web-secret.pem")" = "$X5T2" ] && ok "managed secret: the PFX certificate's x5t matches" ||
    fail "managed secret: the PFX certificate's x5t matches"
req GET "$KV/secrets/web/$V1?$A" "" "$VT"
j 'b["value"]' | base64 -d >"$C/web-secret1.pfx"
openssl pkcs12 -in "$C/web-secret1.pfx" -passin pass: -nodes -out "$C/web-secret1.pem" 2>/dev/null || true
[ "$(thumb "$C/web-secret1.pem")" = "$X5T1" ] && ok "managed secret: older version holds the older certificate" ||
    fail "managed secret: older version holds the older certificate"
req GET "$KV/keys/web?$A" "" "$VT"
MOD=$(openssl x509 -in "$C/rsa2.pem" -noout -modulus | cut -d= -f2)
check "managed key: public RSA JWK of the certificate, managed" has \
    '[b["key"]["kid"], b["key"]["kty"], "d" in b["key"], b["managed"], b["attributes"]["exportable"], int.from_bytes(__import__("base64").urlsafe_b64decode(b["key"]["n"]+"=="),"big") == int("'"$MOD"'", 16)]' \
    "[\"$KV/keys/web/$V2\", \"RSA\", false, true, true, true]"
req GET "$KV/keys?$A" "" "$VT"
check "keys list shows the managed key" has '[i.get("managed") for i in b["value"] if i["kid"].endswith("/keys/web")]' '[true]'
req GET "$KV/secrets?$A" "" "$VT"
check "secrets list shows the managed secret" has '[[i.get("managed"), i.get("contentType")] for i in b["value"] if i["id"].endswith("/secrets/web")]' '[[true, "application/x-pkcs12"]]'
req GET "$KV/secrets/web/versions?$A" "" "$VT"
check "managed secret versions follow the certificate" has 'len(b["value"])' 2

# ---- direct writes to the managed key and secret are refused ----
req PUT "$KV/secrets/web?$A" '{"value":"x"}' "$VT"
check "refused: set the managed secret (403 Forbidden)" has '[b["error"]["code"], b["error"]["message"].startswith("Operation set is not allowed on a managed secret")]' '["Forbidden", true]'
check "refused: set status" is 403
req DELETE "$KV/secrets/web?$A" "" "$VT"
check "refused: delete the managed secret" is 403
req DELETE "$KV/keys/web?$A" "" "$VT"
check "refused: delete the managed key" has '[b["error"]["code"], b["error"]["message"].startswith("Operation delete is not allowed on a managed key")]' '["Forbidden", true]'
req PATCH "$KV/keys/web?$A" '{"attributes":{"enabled":false}}' "$VT"
check "refused: update the managed key" is 403
req POST "$KV/keys/web/rotate?$A" "" "$VT"
check "refused: rotate the managed key" is 403
req POST "$KV/keys/web/backup?$A" "" "$VT"
check "refused: back up the managed key" is 403
req PUT "$KV/secrets/plain?$A" '{"value":"x"}' "$VT"
reqf POST "$KV/certificates/plain/import?$A" "$C/b2.json" "$VT"
check "import onto the name of a plain secret is 409 Conflict" has '[b["error"]["code"]]' '["Conflict"]'

# ---- non-exportable key ----
import_body "$C/b4.json" "$C/rsa.pfx.b64" s3cret '{"key_props":{"exportable":false}}'
reqf POST "$KV/certificates/noexport/import?$A" "$C/b4.json" "$VT"
check "import non-exportable" has 'b["policy"]["key_props"]["exportable"]' false
req GET "$KV/secrets/noexport?$A" "" "$VT"
j 'b["value"]' | base64 -d >"$C/noexport.pfx"
openssl pkcs12 -in "$C/noexport.pfx" -passin pass: -nodes -out "$C/noexport.pem" 2>/dev/null || true
if grep -q 'BEGIN CERTIFICATE' "$C/noexport.pem" && ! grep -q 'PRIVATE KEY' "$C/noexport.pem"; then
    ok "non-exportable: the secret holds the certificate only"
else
    fail "non-exportable: the secret holds the certificate only"
fi
req GET "$KV/keys/noexport?$A" "" "$VT"
check "non-exportable: managed key says exportable false" has 'b["attributes"]["exportable"]' false

# ---- list with paging ----
req GET "$KV/certificates?$A&maxresults=1" "" "$VT"
check "list: one item per page with a nextLink" has '[len(b["value"]), b["nextLink"] is not None]' '[1, true]'
check "list: item shape (id without version, x5t, attributes)" has 'sorted(b["value"][0].keys())' '["attributes", "id", "x5t"]'
NAMES=$(j 'b["value"][0]["id"].rsplit("/",1)[1]')
NEXT=$(j 'b["nextLink"]')
while [ "$NEXT" != "None" ]; do
    req GET "$NEXT" "" "$VT"
    NAMES="$NAMES $(j '" ".join(i["id"].rsplit("/",1)[1] for i in b["value"])')"
    NEXT=$(j 'b["nextLink"]')
done
[ "$NAMES" = "ec-pem noexport web" ] && ok "list: following nextLink yields every certificate" ||
    fail "list: following nextLink yields every certificate" "$NAMES"
req GET "$KV/certificates?$A&maxresults=26" "" "$VT"
check "list: maxresults above 25 is 400" is 400

# ---- update ----
req PATCH "$KV/certificates/web?$A" '{"tags":{"team":"a"},"attributes":{"enabled":false}}' "$VT"
check "update: tags and enabled" has '[b["tags"], b["attributes"]["enabled"], b["x5t"]]' "[{\"team\": \"a\"}, false, \"$X5T2\"]"
req GET "$KV/secrets/web?$A" "" "$VT"
check "update: a disabled certificate's secret is 403 SecretDisabled" has 'b["error"]["innererror"]["code"]' SecretDisabled
req PATCH "$KV/certificates/web/$V1?$A" '{"tags":{"old":"yes"}}' "$VT"
check "update a specific version" has '[b["id"], b["tags"]]' "[\"$KV/certificates/web/$V1\", {\"old\": \"yes\"}]"
req PATCH "$KV/certificates/web?$A" '{"attributes":{"enabled":true}}' "$VT"
req GET "$KV/secrets/web?$A" "" "$VT"
check "update: re-enabled, the secret reads again" is 200

# ---- soft delete, recover, purge ----
req DELETE "$KV/certificates/web?$A" "" "$VT"
check "delete: DeletedCertificateBundle" has '[b["recoveryId"], b["scheduledPurgeDate"] - b["deletedDate"], b["x5t"]]' \
    "[\"$KV/deletedcertificates/web\", 604800, \"$X5T2\"]"
req GET "$KV/certificates/web?$A" "" "$VT"
check "delete: the certificate is gone (404)" is 404
req GET "$KV/secrets/web?$A" "" "$VT"
check "delete: its secret is soft-deleted too (404)" is 404
req GET "$KV/deletedkeys/web?$A" "" "$VT"
check "delete: its key is a deleted managed key" has '[b["managed"], b["recoveryId"]]' "[true, \"$KV/deletedkeys/web\"]"
req GET "$KV/deletedsecrets/web?$A" "" "$VT"
check "delete: its secret is a deleted managed secret" has 'b["managed"]' true
req DELETE "$KV/deletedsecrets/web?$A" "" "$VT"
check "refused: purge the managed secret directly" is 403
req POST "$KV/deletedkeys/web/recover?$A" "" "$VT"
check "refused: recover the managed key directly" is 403
req GET "$KV/deletedcertificates/web?$A" "" "$VT"
check "deleted certificate get" has '[b["recoveryId"], b["id"]]' "[\"$KV/deletedcertificates/web\", \"$KV/certificates/web/$V2\"]"
req GET "$KV/deletedcertificates?$A" "" "$VT"
check "deleted certificates list" has '[[i["recoveryId"], "deletedDate" in i, i["x5t"]] for i in b["value"]]' "[[\"$KV/deletedcertificates/web\", true, \"$X5T2\"]]"
reqf POST "$KV/certificates/web/import?$A" "$C/b2.json" "$VT"
check "import onto a soft-deleted name is 409 ObjectIsDeletedButRecoverable" has 'b["error"]["innererror"]["code"]' ObjectIsDeletedButRecoverable
req POST "$KV/deletedcertificates/web/recover?$A" "" "$VT"
check "recover: 200 CertificateBundle" has '[b["id"], "recoveryId" in b]' "[\"$KV/certificates/web/$V2\", false]"
req GET "$KV/secrets/web?$A" "" "$VT"
check "recover: the secret is back" has 'b["managed"]' true
req GET "$KV/keys/web?$A" "" "$VT"
check "recover: the key is back" is 200
req DELETE "$KV/certificates/noexport?$A" "" "$VT"
req DELETE "$KV/deletedcertificates/noexport?$A" "" "$VT"
check "purge: 204" is 204
req GET "$KV/deletedcertificates/noexport?$A" "" "$VT"
check "purge: the deleted certificate is gone" has '[b["error"]["code"]]' '["CertificateNotFound"]'
req GET "$KV/deletedkeys/noexport?$A" "" "$VT"
check "purge: its key is purged too" is 404
req GET "$KV/deletedsecrets/noexport?$A" "" "$VT"
check "purge: its secret is purged too" is 404
reqf POST "$KV/certificates/noexport/import?$A" "$C/b4.json" "$VT"
check "purge: the name is free again" is 200
reqf POST "$KVPP/certificates/pp/import?$A" "$C/b2.json" "$VT"
req DELETE "$KVPP/certificates/pp?$A" "" "$VT"
req DELETE "$KVPP/deletedcertificates/pp?$A" "" "$VT"
check "purge under purge protection is 403" has '[b["error"]["code"]]' '["Forbidden"]'
check "purge under purge protection status" is 403

# ---- backup / restore ----
req POST "$KV/certificates/web/backup?$A" "" "$VT"
check "backup: {value}" has 'len(b["value"]) > 100' true
BLOB=$(j 'b["value"]')
req POST "$KV/certificates/restore?$A" "{\"value\":\"$BLOB\"}" "$VT"
check "restore onto an existing name is 409" is 409
req POST "$KVUS/certificates/restore?$A" "{\"value\":\"$BLOB\"}" "$VT"
check "restore into another geography (eastus) is refused" has '[b["error"]["code"], "geography" in b["error"]["message"]]' '["Forbidden", true]'
check "restore into another geography status" is 403
req POST "$KVEU/certificates/restore?$A" "{\"value\":\"$BLOB\"}" "$VT"
check "restore into the same geography (northeurope) is 200" has '[b["id"], b["x5t"]]' "[\"$KVEU/certificates/web/$V2\", \"$X5T2\"]"
req GET "$KVEU/certificates/web/versions?$A" "" "$VT"
check "restore keeps every version" has 'len(b["value"])' 2
req GET "$KVEU/secrets/web/$V1?$A" "" "$VT"
check "restore rebuilds the managed secret" has '[b["managed"], b["kid"]]' "[true, \"$KVEU/keys/web/$V1\"]"
req GET "$KVEU/keys/web?$A" "" "$VT"
check "restore rebuilds the managed key" has 'b["managed"]' true
req POST "$KVEU/certificates/restore?$A" '{"value":"AAAA"}' "$VT"
check "restore of a corrupt blob is 400" is 400
req POST "$KV/keys/kk/create?$A" '{"kty":"EC"}' "$VT"
req POST "$KV/keys/kk/backup?$A" "" "$VT"
KBLOB=$(j 'b["value"]')
req POST "$KVUS/keys/restore?$A" "{\"value\":\"$KBLOB\"}" "$VT"
check "key backups are refused in another geography too" is 403
req POST "$KVEU/keys/restore?$A" "{\"value\":\"$KBLOB\"}" "$VT"
check "key backups restore in the same geography" is 200
req POST "$KVEU/keys/restore?$A" "{\"value\":\"$BLOB\"}" "$VT"
check "a certificate blob is not a key backup (400)" is 400

# ---- authorization ----
req POST "$GRAPH/applications" '{"displayName":"cert-reader","signInAudience":"AzureADMyOrg"}' "$GT"
APP_OID=$(j 'b["id"]')
APP_ID=$(j 'b["appId"]')
req POST "$GRAPH/applications/$APP_OID/addPassword" '{"passwordCredential":{"displayName":"p"}}' "$GT"
APP_SECRET=$(j 'b["secretText"]')
req POST "$GRAPH/servicePrincipals" "{\"appId\":\"$APP_ID\"}" "$GT"
SP_OID=$(j 'b["id"]')
UT=$(token_for "$APP_ID" "$APP_SECRET" "$VAULT_RES")
req GET "$KV/certificates?$A" "" "$UT"
check "rbac: no certificate permission is 403 ForbiddenByRbac" has '[b["error"]["code"], b["error"]["innererror"]["code"], "certificates/read" in b["error"]["message"]]' '["Forbidden", "ForbiddenByRbac", true]'
RA="$SUB/resourceGroups/rgc/providers/Microsoft.KeyVault/vaults/kvc/providers/Microsoft.Authorization/roleAssignments/0b3c7e52-2b7e-4f7a-9a1d-0c7b3e0f5a12?api-version=2022-04-01"
req PUT "$RA" "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$AZURE_SUBSCRIPTION_ID/providers/Microsoft.Authorization/roleDefinitions/db79e9a7-68ee-4b58-9aeb-b90e7c24fcba\",\"principalId\":\"$SP_OID\",\"principalType\":\"ServicePrincipal\"}}" "$MT"
check "rbac: Key Vault Certificate User assigned" is 201
req POST "$AZSIM_URL/clock/advance" '{"seconds":6}'
req GET "$KV/certificates/web?$A" "" "$UT"
check "rbac: Certificate User reads the certificate" has 'b["x5t"]' "$X5T2"
req GET "$KV/secrets/web?$A" "" "$UT"
check "rbac: Certificate User reads its secret" is 200
reqf POST "$KV/certificates/other/import?$A" "$C/b2.json" "$UT"
check "rbac: Certificate User cannot import" has '[b["error"]["innererror"]["code"], "certificates/import/action" in b["error"]["message"]]' '["ForbiddenByRbac", true]'
req DELETE "$KV/certificates/web?$A" "" "$UT"
check "rbac: Certificate User cannot delete" is 403
vault kvc-ap westeurope false false "[{\"tenantId\":\"$AZURE_TENANT_ID\",\"objectId\":\"$SP_OID\",\"permissions\":{\"certificates\":[\"get\",\"list\"]}}]"
KVAP="https://kvc-ap.vault.localhost:$PORT"
req GET "$KVAP/certificates?$A" "" "$UT"
check "access policy: certificates list allowed" is 200
reqf POST "$KVAP/certificates/x/import?$A" "$C/b2.json" "$UT"
check "access policy: import without the permission is 403 AccessDenied" has '[b["error"]["innererror"]["code"], "certificates import" in b["error"]["message"]]' '["AccessDenied", true]'

# ---- stats ----
req GET "$AZSIM_URL/stats"
check "stats: certificate operations counted" has \
    '[b["requests"].get(k, 0) > 0 for k in ("kv.certificates.import", "kv.certificates.get", "kv.certificates.list", "kv.certificates.delete", "kv.deletedcertificates.recover", "kv.deletedcertificates.purge", "kv.certificates.backup", "kv.certificates.restore", "kv.certificates.update")]' \
    '[true, true, true, true, true, true, true, true, true]'

# ---- persistence across kill -9 ----
req GET "$KV/secrets/web?$A" "" "$VT"
SECRET_BEFORE=$(j 'b["value"]')
kill -KILL "$AZSIM_PID"
wait "$AZSIM_PID" 2>/dev/null || true
start_azsim
VT=$(token_for "$AZURE_CLIENT_ID" "$AZURE_CLIENT_SECRET" "$VAULT_RES")
req GET "$KV/certificates/web?$A" "" "$VT"
check "restart: certificate survives kill -9" has '[b["id"], b["x5t"], b["policy"]["x509_props"]["subject"]]' \
    "[\"$KV/certificates/web/$V2\", \"$X5T2\", \"CN=azsim-cert-test-2\"]"
req GET "$KV/secrets/web?$A" "" "$VT"
check "restart: managed secret value unchanged" has 'b["value"] == "'"$SECRET_BEFORE"'"' true
req GET "$KV/keys/web?$A" "" "$VT"
check "restart: managed key still managed" has 'b["managed"]' true
req GET "$KVEU/certificates/web/versions?$A" "" "$VT"
check "restart: restored certificate versions" has 'len(b["value"])' 2
req PUT "$KV/secrets/web?$A" '{"value":"x"}' "$VT"
check "restart: the managed secret is still read-only" is 403
reqf POST "$KV/certificates/web/import?$A" "$C/b1.json" "$VT"
check "restart: import after restart adds a third version" has 'b["x5t"]' "$X5T1"

# ---- clean shutdown (under ASan this also proves nothing leaked) ----
kill -TERM "$AZSIM_PID"
RC=0
wait "$AZSIM_PID" || RC=$?
AZSIM_PID=
if [ "$RC" -eq 0 ] && ! grep -q 'Sanitizer' "$WORK/stderr"; then
    ok "SIGTERM: azsim exits 0 with a clean stderr"
else
    fail "SIGTERM: azsim exits 0 with a clean stderr" "status $RC: $(grep -m3 -A8 'Sanitizer' "$WORK/stderr" | head -c 1500)"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
