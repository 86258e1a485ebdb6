#!/usr/bin/env bash
# The vault reads keep to Key Vault's subscription-wide limit (tests/bench/RESULTS.md, M): with
# KVR_KV_READ_BUDGET=100 (requests in any 10 s), 100 * 2 / 17 = 11 go at once and the others at
# (100 - 11) / 10 = 8.9 a second, so the plan's N Key Vault requests (one vault, 25 keys: about
# 60) take at least (N - 11) / 8.9 s, about 5.5 s, where unpaced they take well under one. That
# lower bound holds however slow the machine is. A budget that is not a whole number from 10 to
# 20,000 is an error before any Key Vault request.
# usage: plan_kv_budget.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
e2e_init
sub=3f6b2a9c-8d41-4e7a-b5c2-9a0e1d4f7b63
vault=kv-budget
mkdir "$work/D"
vault_keys_estate "$sub" "$vault" rg-budget 25 >"$work/D/estate.yaml"
estate_applied "apply: the vault and its 25 keys" "$sub"
kv_requests() { azsim_admin GET /stats | json "sum(v for k, v in d['requests'].items() if k.startswith('kv.'))"; }

before=$(kv_requests)
t0=$(e2e_ms)
set +e
KVR_KV_READ_BUDGET=100 "$kvr" plan -f D --detailed-exitcode >out.paced 2>err.paced
prc=$?
set -e
t1=$(e2e_ms)
n=$(($(kv_requests) - before))
check "paced plan: no changes (exit $prc)" "$([[ $prc == 0 ]]; echo $?)"
[[ $prc == 0 ]] || cat out.paced err.paced
floor=$(( (n - 11) * 10000 / 89 )) # ms: (n - 11) / 8.9 s
echo "paced plan: $n Key Vault requests in $((t1 - t0)) ms (floor $floor ms)"
check "paced plan: its $n Key Vault requests are the estate's (50 key reads and more)" \
    "$([[ $n -ge 50 ]]; echo $?)"
check "paced plan: $((t1 - t0)) ms, not under the budget's floor of $floor ms" \
    "$([[ $((t1 - t0)) -ge $floor ]]; echo $?)"

for bad in 9 20001 lots 1e3 -5; do
    before=$(kv_requests)
    set +e
    KVR_KV_READ_BUDGET=$bad "$kvr" plan -f D >out.bad 2>err.bad
    prc=$?
    set -e
    check "KVR_KV_READ_BUDGET=$bad: exit $prc (1)" "$([[ $prc == 1 ]]; echo $?)"
    check "KVR_KV_READ_BUDGET=$bad: says what it must be" \
        "$(grep -q "KVR_KV_READ_BUDGET must be a whole number from 10 to 20000" err.bad; echo $?)"
    check "KVR_KV_READ_BUDGET=$bad: no Key Vault request" "$([[ $(kv_requests) == "$before" ]]; echo $?)"
done
e2e_finish
