#!/usr/bin/env bash
# plan reads no details of keys nothing declares (issue #18, item 5): a vault that lists N keys
# of which one is declared costs its list pages, the declared key's reads, and no per-key GET of
# the others (before: a bundle GET and a versions list for each listed key). Its 60 undeclared
# secrets cost their list pages only (no value or version reads).
# With KEYS=N (default 200) and BENCH=1 it also prints the request count and the time of plan,
# for tests/bench-style measurements (the regression check itself needs no timing).
# usage: undeclared_keys.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../e2e/lib.sh"
e2e_init
keys=${KEYS:-200}
azsim_start "$azsim" --throttle off --durable off
python3 "$here/../bench/estate_gen.py" seed --vaults 1 --keys "$keys" --versions 1 --secrets 60 \
    --threads 8 >/dev/null
# one more key nobody declares, but made by kvreconcile (its generation tag): it may have to be
# retired, so its details are read
kvtok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
curl -sS --cacert "$AZSIM_CA" -X POST -H "Authorization: Bearer $kvtok" \
    -H 'Content-Type: application/json' \
    -d '{"kty":"EC","crv":"P-256","key_ops":["sign","verify"],"tags":{"kvr-generation":"g1"}}' \
    "https://kv-b000.$KVR_VAULT_SUFFIX/keys/kmade/create?api-version=7.5" >/dev/null
mkdir "$work/cfg"
cat >"$work/cfg/estate.yaml" <<YAML
apiVersion: kvreconcile/v1
subscription: $AZURE_SUBSCRIPTION_ID
vaults:
  - name: kv-b000
    resourceGroup: rg-bench
    location: westeurope
keys:
  - vault: kv-b000
    name: k000
    type: EC
    curve: P-256
    ops: [sign, verify]
YAML
key_bundle_gets() {
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'd["requests"].get("kv.keys.get", 0)'
}
kv_gets() { # GET requests azsim answered on the vault's key paths so far
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json \
        'sum(v for k, v in d["requests"].items() if k.startswith("kv.keys.") and ("get" in k or "versions" in k or "list" in k))'
}
secret_gets() {
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json \
        'sum(v for k, v in d["requests"].items() if k.startswith("kv.secrets.") and k != "kv.secrets.list" and k != "kv.secrets.set")'
}
before=$(kv_gets)
sbefore=$(secret_gets)
bbefore=$(key_bundle_gets)
t0=$(e2e_ms)
set +e
"$kvr" plan -f "$work/cfg" >"$work/plan.out" 2>"$work/plan.err"
rc=$?
set -e
t1=$(e2e_ms)
after=$(kv_gets)
n=$((after - before))
sn=$(($(secret_gets) - sbefore))
bn=$(($(key_bundle_gets) - bbefore))
pages=$(((keys + 1 + 24) / 25))
echo "     $keys keys listed, 1 declared: $n key requests (list pages: $pages), plan $((t1 - t0)) ms"
check "plan ran (exit $rc)" "$([ "$rc" = 0 ] || { cat "$work/plan.err"; false; }; echo $?)"
check "no per-key reads of undeclared keys ($n <= $pages + 5)" "$([ "$n" -le $((pages + 5)) ]; echo $?)"
check "the declared key and the one kvreconcile made are read ($bn bundles)" "$([ "$bn" = 2 ]; echo $?)"
check "the plan retires the key kvreconcile made" "$(grep -q "key 'kmade'" "$work/plan.out"; echo $?)"
check "no reads of undeclared secrets beyond their list ($sn)" "$([ "$sn" = 0 ]; echo $?)"
if [ "${BENCH:-}" = 1 ]; then
    curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'd["requests"]'
fi
azsim_stop
e2e_finish
