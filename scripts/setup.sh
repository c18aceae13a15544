#!/usr/bin/env bash
# Installs the Debian packages stalltrace needs (only those missing) and
# builds it with meson + ninja into build/.  Safe to run again and again.
#
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# Build: meson, ninja, pkg-config, a C toolchain and the libraries.
# Tests: Debian's python3 with uvloop (e2e harness and the uvloop target),
# Node.js and npm (only when no `node` is installed already, whatever its
# origin), promtool (prometheus) to validate the metrics, and chromium to
# load the HTML report; clang and its runtimes for the fuzzer (tests/fuzz).
# The third-party services the real-world tests record (tests/e2e/test_real_*.py):
# Python web frameworks, Ruby's puma, servers with their load generators, and
# a tokio service built offline from Debian's crates. libiberty demangles Rust.
packages=(meson ninja-build pkg-config gcc libc6-dev libunwind-dev libcriterion-dev
          libdw-dev libelf-dev libjansson-dev libiberty-dev protobuf-c-compiler libprotobuf-c-dev
          zlib1g-dev python3 python3-uvloop prometheus chromium golang-go openjdk-17-jdk-headless
          libmicrohttpd-dev libyaml-dev libcrypt-dev libgnutls28-dev openssl
          clang libclang-rt-14-dev
          python3-fastapi python3-uvicorn python3-aiohttp python3-tornado python3-gevent
          python3-twisted python3-requests python3-httpx
          memcached libmemcached-tools redis-server nginx haproxy wrk puma ruby-rack
          cargo rustc librust-tokio-dev)
# Debian starts these services on install; the tests run their own instances.
services=(memcached redis-server nginx haproxy)
if ! command -v node >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

log=$(mktemp /tmp/stalltrace-setup.XXXXXX)
trap 'rm -f "$log"' EXIT
fail() {
    say "FAILED: $1 (last lines of its output follow)"
    tail -n 60 "$log" | sed 's/^/  | /'
    exit 1
}

if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt_get update -qq >"$log" 2>&1 || fail "apt-get update"
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
        || fail "apt-get install ${missing[*]}"
    for svc in "${services[@]}"; do
        if [[ " ${missing[*]} " == *" $svc "* ]]; then
            "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
        fi
    done
else
    say "Debian packages already installed"
fi

if [ -f build/meson-private/coredata.dat ]; then
    say "reconfiguring build/"
    meson setup --reconfigure build >"$log" 2>&1 || fail "meson setup --reconfigure build"
else
    say "configuring build/"
    meson setup build >"$log" 2>&1 || fail "meson setup build"
fi

# playwright-core drives the system chromium in the HTML report's test;
# speedscope imports the pprof report there.
if { [ ! -d tests/e2e/html/node_modules/playwright-core ] || [ ! -d tests/e2e/html/node_modules/speedscope ]; } && command -v npm >/dev/null 2>&1; then
    say "installing the HTML test's npm packages (tests/e2e/html)"
    npm install --prefix tests/e2e/html --no-audit --no-fund --silent >"$log" 2>&1 \
        || say "npm install failed: the HTML test will skip its browser checks"
fi

# express, for the Node.js real-world test.
if [ ! -d tests/e2e/node/node_modules/express ] && command -v npm >/dev/null 2>&1; then
    say "installing the Node.js tests' npm packages (tests/e2e/node)"
    npm install --prefix tests/e2e/node --no-audit --no-fund --silent >"$log" 2>&1 \
        || say "npm install failed: the express tests will skip"
fi

say "building (ninja -C build)"
ninja -C build >"$log" 2>&1 || fail "ninja -C build"
say "built build/preload/libstalltrace.so and build/analyzer/stalltrace"
