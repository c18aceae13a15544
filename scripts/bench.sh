#!/usr/bin/env bash
# What stalltrace costs, from one command on a fresh Debian 12 machine:
# sets up and builds (scripts/setup.sh), installs the workloads and peers
# the benchmark measures (redis, nginx, wrk, strace, perf, valgrind), and
# runs bench/run.py with the arguments given. Debian may start redis and
# nginx services on install; the benchmark starts its own on free ports.
#
#   bash scripts/bench.sh            # the full run, writes bench/RESULTS.md
#   bash scripts/bench.sh --quick    # the short run CI does
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
packages=(redis-server redis-tools nginx wrk strace linux-perf valgrind)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
# A workload that cannot be installed is skipped by run.py with a note.
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}"
    if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
               --no-install-recommends "${missing[@]}"; }; then
        echo "bench: could not install ${missing[*]}: the measures that need them are skipped"
    fi
fi

exec python3 bench/run.py "$@"
