# Shared by azsim's own test scripts (sourced): a scratch directory, azsim stopped and the
# directory removed on exit, and the pass/fail tally. Set AZSIM_PID once azsim runs.
#   azsim_test_setup PREFIX   DATA (scratch), WORK (DATA/work), cleanup trap
#   ok NAME / fail NAME [DETAIL]

azsim_test_setup() {
    DATA=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    WORK="$DATA/work"
    mkdir -p "$WORK"
    AZSIM_PID=
    PASSED=0
    FAILED=0
    trap azsim_test_cleanup EXIT
}

azsim_test_cleanup() {
    if [ -n "$AZSIM_PID" ] && kill -0 "$AZSIM_PID" 2>/dev/null; then
        kill -TERM "$AZSIM_PID" 2>/dev/null || true
        wait "$AZSIM_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}

ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1${2:+: $2}"; }
