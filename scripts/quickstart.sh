#!/usr/bin/env bash
# The quick start: install what is missing, build kvreconcile and azsim, validate the example
# repositories (each scenario's state before and after its pull request), show what a mistake
# looks like, then run the rotate-key scenario against azsim, the local Azure simulator: apply
# before/, then the pull request's after/ through its gates (profile Used, retention), with
# azsim's clock moved forward for the retention periods.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
kvr=build/bin/kvreconcile
"$kvr" version
for example in examples/*/; do
    for state in before after; do
        [ -d "$example$state" ] || continue
        printf '$ kvreconcile validate -f %s\n' "$example$state"
        "$kvr" validate -f "$example$state"
    done
done
echo
echo "A typo and a secret pasted into YAML are caught before anything is changed:"
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
cat >"$demo/estate.yaml" <<'YAML'
apiVersion: kvreconcile/v1
vaults:
  - {name: contoso-kv, resourceGroup: rg-sec, location: westeurope, purgeProtecton: true}
secrets:
  - {vault: contoso-kv, name: db-password, value: do-not-commit-me}
YAML
printf '$ kvreconcile validate -f estate.yaml\n'
(cd "$demo" && "$OLDPWD/$kvr" validate -f estate.yaml) || echo "(exit status $?: nothing was changed)"

echo
echo "Starting azsim, the local Azure simulator, on a free loopback port:"
sim="$demo/azsim"
# the simulated subscription is the one the example names
sub=$(sed -n 's/^subscription: *//p' examples/rotate-key/before/vaults.yaml)
build/bin/azsim --data "$sim" --port 0 --subscription "$sub" --rbac-delay 3 --data-keys 40 >"$demo/azsim.out" 2>"$demo/azsim.err" &
sim_pid=$!
trap 'kill -TERM "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; rm -rf "$demo"' EXIT
for _ in $(seq 1 100); do grep -q '^azsim ready' "$demo/azsim.out" 2>/dev/null && break; sleep 0.1; done
cat "$demo/azsim.out"
set -a
. "$sim/azsim.env"
set +a
adv() { curl -sS --cacert "$AZSIM_CA" -X POST "$AZSIM_URL/clock/advance" -d "{\"seconds\":$1}" >/dev/null; }
run() { printf '\n$ %s\n' "$*"; "$@" || echo "(exit status $?)"; }
export NO_COLOR=1
echo
echo "== 1. The estate as it is today (examples/rotate-key/before), built from nothing:"
run "$kvr" plan -f examples/rotate-key/before
run "$kvr" apply -f examples/rotate-key/before --wait 2m
echo
echo "== 2. The pull request rotates the key (examples/rotate-key/after). What it would do:"
run "$kvr" plan -f examples/rotate-key/after
echo
echo "   As a pull-request comment (first lines):"
"$kvr" plan -o markdown -f examples/rotate-key/after | sed -n 1,6p
echo
echo "== 3. Apply it: new key version, new profile, apply, wait until the service says Used."
echo "   Retiring the old profile and key version must wait for retention: exit status 3."
run "$kvr" apply -f examples/rotate-key/after --wait 1m
echo
echo "== 4. 91 days later (azsim's clock moved forward), the old profile and key version go:"
adv $((31 * 86400))
run "$kvr" apply -f examples/rotate-key/after
adv $((60 * 86400))
run "$kvr" apply -f examples/rotate-key/after
run "$kvr" plan -f examples/rotate-key/after
echo
printf 'data keys the backup service could no longer decrypt: '
curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/consumer" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["unrecoverable"])'
