#!/usr/bin/env bash
# Builds the libFuzzer harness of the dump reader, model and reports (clang,
# ASan+UBSan, in build-fuzz/), replays the regressions, then fuzzes.
#
#   bash tests/fuzz/run.sh [SECONDS]     # default 60; exit status 1 on a crash
#
# New inputs go to build-fuzz/corpus (tests/fuzz/corpus, real dumps shrunk by
# shrink_dump, is only read); a crash is written to build-fuzz/crashes/: copy
# it into tests/fuzz/regressions/ once the analyzer is fixed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

seconds=${1:-60}
build=build-fuzz
fuzzer=$build/tests/fuzz/fuzz_dump

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dtests=false -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" >/dev/null

# No debuginfod lookups (no network), and every sanitizer report is fatal.
unset DEBUGINFOD_URLS
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:max_malloc_fill_size=0:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Every input that once crashed, and every seed, must pass before fuzzing.
"$fuzzer" -runs=0 tests/fuzz/regressions tests/fuzz/corpus 2>&1 | tail -n 1

mkdir -p "$build/corpus" "$build/crashes"
"$fuzzer" "$build/corpus" tests/fuzz/corpus -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/" 2>&1 | grep -E '^(#[0-9]+ +(INITED|DONE|pulse)|stat::|==[0-9]+==ERROR|SUMMARY|Done|Test unit written|.*runtime error)' || true
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo "fuzz: the harness failed (status $status); see $build/crashes/"
    exit 1
fi
echo "fuzz: no crash in ${seconds} s"
