#!/usr/bin/env bash
# Runs CPython's own regression suites plain and under `stalltrace run` on
# pyenv's CPython 3.11, 3.12 and 3.13 and reports every test whose result differs.
#
#   bash scripts/cpython_regrtest.sh                     # every suite below, each version
#   bash scripts/cpython_regrtest.sh -p 3.12 test_signal test_asyncio.test_events
#
# Not in CI: the whole list takes hours on two cores. Options: -p MINOR
# (repeatable; default 3.11 3.12 3.13), -k keeps the work directory (logs,
# junit files, dumps). Environment: BUILD_DIR (default build), NICE (15),
# SUITE_TIMEOUT (seconds a suite may take, 3600), RETRY (1: a suite that
# differs is run again both ways, and a difference that does not come back
# is reported as not reproduced), REGRTEST_ARGS (more arguments of
# `python -m test`, both ways; default `-i *VSOCK*`: on a VM whose host
# answers no vsock, test_socket's VSOCK tests wait in accept() forever,
# plain as well). A version without its test package
# (lib/python3.X/test) is skipped, as is a suite that version lacks.
# Exit status: 0 when nothing differed, 1 otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

SUITES=(test_asyncio test_threading test_signal test_subprocess test_socket test_os
        test_concurrent_futures test_select test_selectors test_poll test_epoll test_time
        test_fork1 test_wait3 test_wait4 test_thread test_threadsignals test_threading_local
        test_threadedtempfile test_socketserver test_ssl test_httplib test_httpservers
        test_urllib2_localnet test_xmlrpc test_logging test_queue test_sched test_faulthandler
        test_io test_fileio test_fcntl test_mmap test_pty test_posix test_resource
        test_tempfile test_shutil test_sys test_timeout test_multiprocessing_fork)

versions=()
keep=0
while getopts "p:kh" opt; do
    case $opt in
        p) versions+=("$OPTARG") ;;
        k) keep=1 ;;
        *) sed -n '2,19p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] && SUITES=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(3.11 3.12 3.13)

BUILD_DIR=${BUILD_DIR:-build}
STALLTRACE="$REPO/$BUILD_DIR/analyzer/stalltrace"
NICE=${NICE:-15}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-3600}
RETRY=${RETRY:-1}
read -ra regrtest_args <<<"${REGRTEST_ARGS-"-i *VSOCK*"}"    # read: no glob expansion
if [ ! -x "$STALLTRACE" ] || [ ! -f "$REPO/$BUILD_DIR/preload/libstalltrace.so" ]; then
    echo "cpython_regrtest: build first (meson setup $BUILD_DIR && ninja -C $BUILD_DIR)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/stalltrace-regrtest.XXXXXX)
[ $keep -eq 1 ] && echo "work directory: $work"
cleanup() { [ $keep -eq 1 ] || rm -rf "$work"; }
trap cleanup EXIT

# The newest pyenv CPython 3.X, a real binary rather than a shim.
python_for() {
    local found
    found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".[0-9]*/bin/python"$1" 2>/dev/null |
            sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found" ] && echo "$found"
}

# Neither side inherits a recorder or its settings from the caller.
plain_env=(env -u LD_PRELOAD -u PYTHONPATH)
for v in $(env | sed -n 's/^\(STALLTRACE_[A-Z_]*\)=.*/\1/p'); do
    plain_env+=(-u "$v")
done

# run_one MODE SUITE PYTHON DIR: one suite, one way; its exit status in DIR/MODE.rc.
run_one() {
    local mode=$1 suite=$2 python=$3 dir=$4 wrap=()
    mkdir -p "$dir/$mode.cwd"
    if [ "$mode" = traced ]; then
        mkdir -p "$dir/dumps"
        wrap=("$STALLTRACE" run -o "$dir/dumps/%p.dump" --)
    fi
    (cd "$dir/$mode.cwd" &&
        "${plain_env[@]}" timeout -k 30 "$SUITE_TIMEOUT" nice -n "$NICE" "${wrap[@]}" \
            "$python" -m test --timeout "$SUITE_TIMEOUT" --junit-xml "$dir/$mode.xml" \
            "${regrtest_args[@]}" "$suite" \
            >"$dir/$mode.log" 2>&1)
    echo $? >"$dir/$mode.rc"
}

# compare SUITE PYTHON DIR: runs both ways, prints the differences; 1 if any.
compare() {
    local suite=$1 python=$2 dir=$3 t0 t1 t2
    rm -rf "$dir" && mkdir -p "$dir"
    t0=$(date +%s)
    run_one plain "$suite" "$python" "$dir"
    t1=$(date +%s)
    run_one traced "$suite" "$python" "$dir"
    t2=$(date +%s)
    echo "  plain $((t1 - t0)) s, traced $((t2 - t1)) s; $(ls "$dir/dumps" 2>/dev/null | wc -l) dump(s)"
    python3 "$REPO/scripts/regrtest_diff.py" "$dir/plain.xml" "$(cat "$dir/plain.rc")" \
        "$dir/traced.xml" "$(cat "$dir/traced.rc")"
}

status=0
summary=()
for minor in "${versions[@]}"; do
    python=$(python_for "$minor") || python=
    if [ -z "$python" ]; then
        echo "== $minor: no pyenv CPython $minor, skipped"
        summary+=("$minor: not installed")
        continue
    fi
    testdir=$("$python" -c 'import os, test; print(os.path.dirname(test.__file__))' 2>/dev/null)
    if [ -z "$testdir" ] || [ ! -d "$testdir/libregrtest" ]; then
        echo "== $minor: $python has no test package, skipped"
        summary+=("$minor: no test package")
        continue
    fi
    echo "== $minor: $python"
    same=0 differ=0 absent=0 flaky=0
    for suite in "${SUITES[@]}"; do
        path="$testdir/${suite//.//}"       # test_asyncio.test_events: one file of a package
        if [ ! -e "$path.py" ] && [ ! -d "$path" ]; then
            absent=$((absent + 1))
            echo "-- $suite: not in $minor's test package"
            continue
        fi
        echo "-- $suite"
        dir="$work/$minor/$suite"
        if compare "$suite" "$python" "$dir"; then
            same=$((same + 1))
        elif [ "$RETRY" -eq 1 ] && { echo "  differs: running it again both ways";
                                     compare "$suite" "$python" "$dir.again"; }; then
            flaky=$((flaky + 1))
            echo "  not reproduced: the second runs agree"
        else
            differ=$((differ + 1))
            status=1
            echo "  DIFFERS; the end of the traced run's log:"
            tail -n 12 "$dir/traced.log" | sed 's/^/    /'
        fi
        [ $keep -eq 1 ] || rm -rf "$dir/dumps" "$dir.again/dumps"
    done
    summary+=("$minor: $same same, $differ differ, $flaky not reproduced, $absent absent")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
