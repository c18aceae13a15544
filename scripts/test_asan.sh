#!/usr/bin/env bash
# Builds everything with AddressSanitizer+UBSan (build-asan/) and runs the
# unit tests and the C end-to-end targets there, the recorder preloaded after
# the ASan runtime. Any sanitizer report fails the run.
#
#   bash scripts/test_asan.sh       # last line: "N passed, N failed, N skipped"
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=build-asan
log=$(mktemp /tmp/stalltrace-asan.XXXXXX)
trap 'rm -f "$log"' EXIT

if [ ! -f "$build/build.ninja" ] &&
   ! meson setup "$build" -Db_sanitize=address,undefined >"$log" 2>&1; then
    tail -n 30 "$log"
    echo "asan: meson setup failed"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
if ! ninja -C "$build" >"$log" 2>&1; then
    tail -n 30 "$log"
    echo "asan: build failed"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

# UBSan reports are fatal; leaks are checked in the tests (not in the
# targets, which keep their pools to the end by design).
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
export ASAN_OPTIONS=detect_leaks=1
unset DEBUGINFOD_URLS

echo "asan: unit tests (meson test -C $build)"
meson test -C "$build" --print-errorlogs --timeout-multiplier 4 2>&1 | tee "$log"
unit_rc=${PIPESTATUS[0]}
count() { awk -v key="$1" -F: '$1 == key { gsub(/[^0-9]/, "", $2); n = $2 } END { print n + 0 }' "$log"; }
pass=$(( $(count "Ok") + $(count "Expected Fail") ))
fail=$(( $(count "Fail") + $(count "Unexpected Pass") + $(count "Timeout") ))
skip=$(count "Skipped")
if [ "$unit_rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    fail=1
fi

echo
echo "asan: end-to-end tests on the C targets, recorder built with ASan"
asan_rt=$(gcc -print-file-name=libasan.so)
export ASAN_OPTIONS=detect_leaks=0
E2E_SANITIZER_PRELOAD=$asan_rt python3 tests/e2e/run_e2e.py --build-dir "$build" \
    c_epoll_server c_pool_server 2>&1 | tee "$log"
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
if [ -n "$summary" ]; then
    read -r e_pass _ e_fail _ e_skip _ <<<"${summary//,/}"
else
    e_pass=0 e_fail=1 e_skip=0
fi
# A sanitizer report in a target does not always change its exit status.
if grep -qE 'ERROR: AddressSanitizer|runtime error:' "$log"; then
    echo "asan: a sanitizer report in the end-to-end run"
    e_fail=$((e_fail + 1))
fi

echo
echo "$((pass + e_pass)) passed, $((fail + e_fail)) failed, $((skip + e_skip)) skipped"
[ $((fail + e_fail)) -eq 0 ]
