#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh Debian 12 machine:
#   1. install what is missing (scripts/deps.sh)
#   2. build with ASan+UBSan and -Werror, run every ctest suite (unit, fixtures, schema,
#      examples, azsim, e2e)
#   3. build the fuzz targets with clang and fuzz each for KVR_FUZZ_SECONDS (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${KVR_FUZZ_SECONDS:-60}

bash scripts/deps.sh

echo "== build (ASan+UBSan, -Werror)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DKVR_WERROR=ON -DKVR_SANITIZE=ON >/dev/null
cmake --build build-test -j"$jobs"

echo "== tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-test && ctest --output-on-failure -j"$jobs")

if [ "$fuzz_seconds" -gt 0 ]; then
    echo "== fuzz (${fuzz_seconds}s per target)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVR_FUZZ=ON \
        -DKVR_SANITIZE=ON -DKVR_WERROR=ON >/dev/null
    cmake --build build-fuzz -j"$jobs" --target fuzz_loader fuzz_responses
    for target in loader responses; do
        work=$(mktemp -d)
        cp tests/fuzz/corpus/"$target"/* "$work/"
        # -rss_limit_mb bounds memory; a crash, leak, timeout or OOM fails the run.
        if ! build-fuzz/bin/fuzz_"$target" -max_total_time="$fuzz_seconds" -timeout=10 \
            -rss_limit_mb=512 -max_len=65536 -print_final_stats=1 "$work" \
            2>"$root/build-fuzz/fuzz_$target.log"; then
            tail -50 "$root/build-fuzz/fuzz_$target.log"
            rm -rf "$work"
            echo "fuzz: 0 passed, 1 failed"
            exit 1
        fi
        rm -rf "$work"
        echo "fuzz_$target: $(grep -h 'stat::number_of_executed_units' "$root/build-fuzz/fuzz_$target.log")"
    done
    echo "fuzz: 2 passed, 0 failed"
fi
