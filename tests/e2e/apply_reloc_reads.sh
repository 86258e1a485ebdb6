#!/usr/bin/env bash
# What a relocation reads (issue #8). The plan compares a source secret's value only with the
# target's secret of the same name, so the reads fetch values only where both vaults hold the
# name: none while the target does not exist, and the verification after the copies still reads
# back every copied secret on both sides. Counted with azsim's /stats (kv.secrets.get).
# usage: apply_reloc_reads.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
D="$root/tests/fixtures/e2e/reloc-reads"
kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
SRC="https://kv-rr-src.vault.localhost:$AZSIM_PORT"
DST="https://kv-rr-dst.vault.localhost:$AZSIM_PORT"
put() { curl -sS --cacert "$AZSIM_CA" -X PUT "$1/secrets/$2?api-version=7.5" -H "Authorization: Bearer $kv" \
    -H 'Content-Type: application/json' -d "{\"value\":\"$3\",\"contentType\":\"text/plain\"}" >/dev/null; }
value() { curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" "$1/secrets/$2/?api-version=7.5" | json 'd["value"]'; }
gets() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json "d['requests'].get('kv.secrets.get', 0)"; }
azsim_vault rg-rr kv-rr-src
n=12
for i in $(seq -w 1 $n); do put "$SRC" "s$i" "Reloc-Canary-$i"; done

# 1. the target does not exist yet: every source secret is a copy, no value is compared
g0=$(gets)
set +e; "$kvr" plan -f "$D" >"$work/plan1" 2>&1; rc=$?; set -e
g1=$(gets)
check "plan before the target exists (exit 0)" "$([[ $rc == 0 ]]; echo $?)"; [[ $rc == 0 ]] || cat "$work/plan1"
check "it plans the $n copies: $(grep -c 'copy from vault' "$work/plan1" || true)" \
    "$([[ $(grep -c 'copy from vault' "$work/plan1" || true) == "$n" ]]; echo $?)"
check "and reads no secret value ($((g1 - g0)) GETs)" "$([[ $((g1 - g0)) == 0 ]]; echo $?)"

# 2. a target that holds two equal copies, one different value and a secret of its own: only
#    the three names both vaults hold are compared, on both sides; the different value was not
#    written by a copy, so it is a conflict, held back and never overwritten (issue #15)
azsim_vault rg-rr kv-rr-dst
put "$DST" s01 Reloc-Canary-01
put "$DST" s02 Reloc-Canary-02
put "$DST" s03 Reloc-Canary-stale
put "$DST" only-here Reloc-Canary-own
g0=$(gets)
set +e; "$kvr" plan -f "$D" >"$work/plan2" 2>&1; rc=$?; set -e
g1=$(gets)
check "plan with a partial target (exit 0)" "$([[ $rc == 0 ]]; echo $?)"
check "it plans $((n - 3)) copies: $(grep -c 'copy from vault' "$work/plan2" || true)" \
    "$([[ $(grep -c 'copy from vault' "$work/plan2" || true) == $((n - 3)) ]]; echo $?)"
check "and holds s03 back as a conflict" "$(grep -A1 "secret 's03'" "$work/plan2" | grep -q conflict; echo $?)"
check "and reads the 3 shared names in both vaults ($((g1 - g0)) GETs; every value would be $((n + 4)))" \
    "$([[ $((g1 - g0)) == 6 ]]; echo $?)"

# 3. apply: the read before the copies (6), the copies (each GETs its source: n - 3), the
#    read after them (every name is in both vaults now: 2n); the conflict makes it exit 1
g0=$(gets)
set +e; "$kvr" apply -f "$D" --wait 1m >"$work/out" 2>"$work/err"; rc=$?; set -e
g1=$(gets)
check "apply copies the rest and stops on the conflict (exit 1)" \
    "$([[ $rc == 1 ]] && grep -q "secret 's03'.*conflict" "$work/err"; echo $?)"
[[ $rc == 1 ]] || cat "$work/err"
check "apply reads $((6 + n - 3 + 2 * n)) values ($((g1 - g0)) GETs)" \
    "$([[ $((g1 - g0)) == $((6 + n - 3 + 2 * n)) ]]; echo $?)"
ok=0
for i in $(seq -w 1 $n); do [[ $i == 03 || $(value "$DST" "s$i") == "Reloc-Canary-$i" ]] || ok=1; done
check "every other secret copied" "$ok"
check "the conflicting value is not overwritten" \
    "$([[ $(value "$DST" s03) == Reloc-Canary-stale ]]; echo $?)"
# the user settles the conflict: the new vault keeps the old vault's value
put "$DST" s03 Reloc-Canary-03
check "the target's own secret untouched" "$([[ $(value "$DST" only-here) == Reloc-Canary-own ]]; echo $?)"

# 4. the verification is not weakened: a plan afterwards compares every copy on both sides
g0=$(gets)
set +e; "$kvr" plan -f "$D" --detailed-exitcode >"$work/plan3" 2>&1; rc=$?; set -e
g1=$(gets)
check "plan is empty afterwards" "$([[ $rc == 0 ]]; echo $?)"
check "it compared all $n copies on both sides ($((g1 - g0)) GETs)" "$([[ $((g1 - g0)) == $((2 * n)) ]]; echo $?)"
# a copy changed behind kvreconcile's back in the new vault is newer data: a conflict, shown
# and held back, never copied over
put "$DST" s07 Reloc-Canary-tampered
set +e; "$kvr" plan -f "$D" --detailed-exitcode >"$work/plan4" 2>&1; rc=$?; set -e
check "a copy changed in the new vault is a conflict (exit 2, held back, no copy)" \
    "$([[ $rc == 2 ]] && grep -A1 "secret 's07'" "$work/plan4" | grep -q conflict && ! grep -q 'copy from vault' "$work/plan4"; echo $?)"
# a source changed after the copy is copied again (the copy is marked as one)
put "$SRC" s08 Reloc-Canary-08b
set +e; "$kvr" plan -f "$D" --detailed-exitcode >"$work/plan5" 2>&1; rc=$?; set -e
check "a source changed after its copy is copied again" \
    "$([[ $(grep -c "copy from vault" "$work/plan5" || true) == 1 ]] && grep -q "secret 's08'" "$work/plan5"; echo $?)"
check "no value in any output" \
    "$(! grep -q 'Reloc-Canary' "$work/out" "$work/err" "$work"/plan*; echo $?)"
e2e_finish
