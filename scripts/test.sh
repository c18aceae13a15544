#!/usr/bin/env bash
# Sets up and builds stalltrace, runs the criterion unit tests (meson test),
# a 60 s fuzz pass (tests/fuzz/run.sh), the sanitizer build's tests
# (scripts/test_asan.sh) and the end-to-end tests on real programs
# (tests/e2e/run_e2e.py). The last line of output is "N passed, N failed,
# N skipped" over all of them; the exit status is non-zero if anything failed.
#
#   bash scripts/test.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! bash scripts/setup.sh; then
    echo "test: set-up or build failed"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

unit_log=$(mktemp /tmp/stalltrace-unit.XXXXXX)
e2e_log=$(mktemp /tmp/stalltrace-e2e.XXXXXX)
trap 'rm -f "$unit_log" "$e2e_log"' EXIT

echo
echo "test: unit tests (meson test -C build --print-errorlogs)"
meson test -C build --print-errorlogs 2>&1 | tee "$unit_log"
unit_rc=${PIPESTATUS[0]}

# meson's summary: "Ok: N", "Expected Fail: N", "Fail: N", "Unexpected Pass: N",
# "Skipped: N", "Timeout: N".
count() { awk -v key="$1" -F: '$1 == key { gsub(/[^0-9]/, "", $2); n = $2 } END { print n + 0 }' "$unit_log"; }
unit_pass=$(( $(count "Ok") + $(count "Expected Fail") ))
unit_fail=$(( $(count "Fail") + $(count "Unexpected Pass") + $(count "Timeout") ))
unit_skip=$(count "Skipped")
if [ "$unit_rc" -ne 0 ] && [ "$unit_fail" -eq 0 ]; then
    echo "test: meson test exited $unit_rc without reporting a failed test"
    unit_fail=1
fi

# The analyzer under abuse: a short libFuzzer pass over the dump reader,
# model and reports (clang, build-fuzz/), counted as one unit test.
echo
if command -v clang >/dev/null 2>&1; then
    echo "test: fuzzing the dump reader for 60 s (tests/fuzz/run.sh 60)"
    if bash tests/fuzz/run.sh 60; then
        unit_pass=$((unit_pass + 1))
    else
        unit_fail=$((unit_fail + 1))
    fi
else
    echo "test: fuzzing skipped: no clang (apt-get install clang libclang-rt-14-dev)"
    unit_skip=$((unit_skip + 1))
fi

# The recorder and analyzer built with ASan+UBSan (build-asan/): the unit
# tests and the C end-to-end targets; its counts add to the unit tests'.
echo
echo "test: sanitizer build (scripts/test_asan.sh)"
asan_log=$(mktemp /tmp/stalltrace-asan-out.XXXXXX)
bash scripts/test_asan.sh 2>&1 | tee "$asan_log"
asan_summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$asan_log" | tail -n 1)
rm -f "$asan_log"
if [ -n "$asan_summary" ]; then
    read -r a_pass _ a_fail _ a_skip _ <<<"${asan_summary//,/}"
    unit_pass=$((unit_pass + a_pass)) unit_fail=$((unit_fail + a_fail)) unit_skip=$((unit_skip + a_skip))
else
    echo "test: scripts/test_asan.sh ended without its summary line"
    unit_fail=$((unit_fail + 1))
fi

echo
echo "test: end-to-end tests (tests/e2e/run_e2e.py)"
python=/usr/bin/python3
[ -x "$python" ] || python=python3
"$python" tests/e2e/run_e2e.py 2>&1 | tee "$e2e_log"
e2e_rc=${PIPESTATUS[0]}

summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$e2e_log" | tail -n 1)
if [ -n "$summary" ]; then
    read -r e2e_pass _ e2e_fail _ e2e_skip _ <<<"${summary//,/}"
else
    echo "test: the e2e harness ended (status $e2e_rc) without its summary line"
    e2e_pass=0 e2e_fail=1 e2e_skip=0
fi
if [ "$e2e_rc" -ne 0 ] && [ "$e2e_fail" -eq 0 ]; then
    echo "test: the e2e harness exited $e2e_rc without reporting a failed test"
    e2e_fail=1
fi

echo
echo "test: unit: $unit_pass passed, $unit_fail failed, $unit_skip skipped; e2e: $e2e_pass passed, $e2e_fail failed, $e2e_skip skipped"
failed=$((unit_fail + e2e_fail))
echo "$((unit_pass + e2e_pass)) passed, $failed failed, $((unit_skip + e2e_skip)) skipped"
[ "$failed" -eq 0 ]
