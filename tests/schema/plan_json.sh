#!/usr/bin/env bash
# Every plan fixture's JSON rendering must validate against schema/plan.schema.json.
# usage: plan_json.sh TEST_PLAN_BINARY
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
KVR_FIXTURES="$here/tests/fixtures" KVR_PLAN_JSON_OUT="$out" "$1" >/dev/null 2>&1 || {
    echo "test_plan failed; see unit_plan"
    echo "0 passed, 1 failed"
    exit 1
}
/usr/bin/python3 - "$here/schema/plan.schema.json" "$out" <<'PY'
import json, os, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
passed = failed = 0
for name in sorted(os.listdir(sys.argv[2])):
    doc = json.load(open(os.path.join(sys.argv[2], name)))
    errors = list(v.iter_errors(doc))
    if errors:
        failed += 1
        print("FAIL %s: %s at %s" % (name, errors[0].message, list(errors[0].absolute_path)))
    else:
        passed += 1
        print("ok   %s" % name)
if passed + failed == 0:
    failed = 1
    print("no plan JSON was written")
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
