#!/usr/bin/env bash
# A secret's fromFile stays inside the repository (issue #18) unless --allow-files-under admits
# a directory: validate refuses an absolute path out of it with its position, accepts it once
# the directory is allowed (repeatable, relative or absolute), and plan, apply and watch accept
# the option too. (tests/fixtures/validate/fromfile-outside has the '..' and symlink cases.)
# usage: fromfile_confined.sh KVRECONCILE
set -euo pipefail
kvr=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

mkdir -p "$work/repo" "$work/mounted/secrets" "$work/other"
echo token >"$work/mounted/secrets/token"
chmod 600 "$work/mounted/secrets/token"
cat >"$work/repo/estate.yaml" <<YAML
apiVersion: kvreconcile/v1
vaults:
  - name: kv-confined
    resourceGroup: rg
    location: westeurope
secrets:
  - vault: kv-confined
    name: mounted
    fromFile: $work/mounted/secrets/token
YAML
cd "$work"

set +e
out=$("$kvr" validate -f repo 2>&1)
rc=$?
set -e
check "outside the repository: exit 1" "$([ $rc = 1 ]; echo $?)"
check "reported as FILE:LINE:COL" \
    "$(grep -q "^repo/estate.yaml:9:15: error: 'fromFile' path '$work/mounted/secrets/token' leads outside the repository" <<<"$out"; echo $?)"
check "admitted by --allow-files-under (absolute)" \
    "$("$kvr" validate -q -f repo --allow-files-under "$work/mounted" >/dev/null 2>&1; echo $?)"
check "admitted by --allow-files-under (relative, repeated)" \
    "$("$kvr" validate -q --allow-files-under other --allow-files-under mounted/secrets -f repo >/dev/null 2>&1; echo $?)"
check "another directory does not admit it" \
    "$("$kvr" validate -q -f repo --allow-files-under other >/dev/null 2>&1; [ $? = 1 ]; echo $?)"
set +e
out=$("$kvr" validate -q -f repo --allow-files-under "$work/repo/estate.yaml" 2>&1)
set -e
check "a file is not a directory to allow" \
    "$(grep -q "^--allow-files-under: error: '$work/repo/estate.yaml' is not a directory" <<<"$out"; echo $?)"
# a volume mounted only where apply runs: validate elsewhere admits the path all the same
sed "s|$work/mounted/secrets/token|$work/unmounted/secrets/token|" "$work/repo/estate.yaml" \
    >"$work/unmounted.yaml"
mkdir "$work/repo2" && mv "$work/unmounted.yaml" "$work/repo2/estate.yaml"
check "a directory not mounted here is admitted too" \
    "$("$kvr" validate -q -f repo2 --allow-files-under "$work/unmounted/secrets" >/dev/null 2>&1; echo $?)"
check "but not without the option" \
    "$("$kvr" validate -q -f repo2 >/dev/null 2>&1; [ $? = 1 ]; echo $?)"
# plan, apply and watch take the option; they stop later, at the missing credential or cloud
for cmd in "plan -f repo" "apply -f repo" "watch --once repo"; do
    set +e
    # shellcheck disable=SC2086
    out=$(env -i PATH="$PATH" KVR_LOCK_DIR="$work" "$kvr" $cmd --allow-files-under mounted 2>&1)
    set -e
    check "${cmd%% *} accepts --allow-files-under" \
        "$(! grep -q "unknown option\|leads outside" <<<"$out"; echo $?)"
    # shellcheck disable=SC2086
    out=$(env -i PATH="$PATH" KVR_LOCK_DIR="$work" "$kvr" $cmd 2>&1 || true)
    check "${cmd%% *} without it refuses the file" "$(grep -q "leads outside" <<<"$out"; echo $?)"
done
grep -q -- '--allow-files-under' "$here/../../packaging/completion/kvreconcile.bash"
check "bash completion offers --allow-files-under" $?
[ "$fails" = 0 ]
