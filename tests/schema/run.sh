#!/usr/bin/env bash
# The JSON Schema and the C loader must not drift: an independent validator (Python
# jsonschema, Draft 2020-12) checks
#   - every example (before/ and after/) is valid,
#   - every fixture case marked `schema-rejects` is rejected,
#   - every other fixture case with inputs in git is schema-valid (its mistake is one only the
#     C checks can see: cross-references, duplicates across files, duration bounds).
# The C side of the same cases is checked by tests/fixtures/run-validate.sh.
set -u
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
schema=schema/kvreconcile.schema.json
rejects=() accepts=()
for case_dir in tests/fixtures/validate/*/; do
    [ -d "$case_dir/input" ] || continue      # made by setup.sh: nothing for a schema to see
    if [ -f "$case_dir/schema-rejects" ]; then rejects+=("$case_dir/input"); else accepts+=("$case_dir/input"); fi
done
status=0
"$py" tests/schema/check_schema.py "$schema" --expect valid examples "${accepts[@]}" || status=1
"$py" tests/schema/check_schema.py "$schema" --expect invalid "${rejects[@]}" || status=1
exit $status
