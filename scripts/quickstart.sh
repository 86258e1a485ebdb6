#!/usr/bin/env bash
# The quick start: install what is missing, build kvreconcile, and validate the example
# repositories (each scenario's state before and after its pull request), then show what a
# mistake looks like. (The end-to-end demo against the azsim simulator joins when apply lands.)
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
