#!/usr/bin/env bash
# The quick start: install what is missing, build kvreconcile and azsim, validate the example
# repositories (each scenario's state before and after its pull request), show what a mistake
# looks like, then plan the rotate-key example against azsim, the local Azure simulator.
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
build/bin/azsim --data "$sim" --port 0 --subscription "$sub" >"$demo/azsim.out" 2>"$demo/azsim.err" &
sim_pid=$!
trap 'kill -TERM "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; rm -rf "$demo"' EXIT
for _ in $(seq 1 100); do grep -q '^azsim ready' "$demo/azsim.out" 2>/dev/null && break; sleep 0.1; done
cat "$demo/azsim.out"
set -a
. "$sim/azsim.env"
set +a
echo
echo '$ kvreconcile plan -f examples/rotate-key/before     # (against the empty simulated estate)'
NO_COLOR=1 "$kvr" plan -f examples/rotate-key/before
echo
echo '$ kvreconcile plan -o markdown -f examples/rotate-key/before | head -8   # a PR comment'
"$kvr" plan -o markdown -f examples/rotate-key/before | sed -n 1,8p
