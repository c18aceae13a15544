#!/usr/bin/python3
"""End-to-end tests of stalltrace on real programs.

Each test runs a real target program (tests/e2e/targets/) under

    build/analyzer/stalltrace run -o <tmpdir>/%p.dump --threshold 50 -- INTERPRETER TARGET

and asserts on `stalltrace report --format json` of the dump it left.  Runs
with Debian's /usr/bin/python3 and the standard library only.  The tests are
in tests/e2e/test_*.py, one file per subject (test_loop.py: event-loop
stalls, test_pools.py: thread pools, test_real_*.py: real programs and
services, ...), their shared helpers in tests/e2e/e2e_lib.py; this runner
imports every test_*.py in name order and runs what they register.

    python3 tests/e2e/run_e2e.py                 # every test
    python3 tests/e2e/run_e2e.py py_sleep c_epoll # only tests whose name contains a word
    python3 tests/e2e/run_e2e.py --list
    python3 tests/e2e/run_e2e.py --self-test     # check the assertion helpers on
                                                 # the hand-written tests/e2e/fixtures/*.json
Options: --build-dir DIR (default: <repo>/build or $STALLTRACE_BUILD_DIR),
--keep (keep every test's directory; failed tests' are always kept),
--verbose (print each test's stalls, pools and locks).  E2E_PYTHON=/path/to/python3
runs the Python targets that are not tied to a CPython version (but uvloop's)
with that interpreter instead of pyenv's 3.11.
STALLTRACE_* variables and LD_PRELOAD of the caller are not passed on.

Prints one line per test (`ok`, `FAIL` or `skip`, the name, a reason) and,
as the last line, `N passed, N failed, N skipped`.  Exits 1 if a test failed.
Every process a test starts runs in its own process group, which is killed
when the test ends, whatever happened.
"""

import copy
import glob
import importlib
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import e2e_lib  # noqa: E402  (after the path is set)
from e2e_lib import REPO, Config, Fail, Skip  # noqa: E402


def load_test_modules():
    """Import tests/e2e/test_*.py in name order; each registers its tests."""
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])


def self_test():
    results = []

    def case(name, fn, proc, should_pass):
        try:
            fn(copy.deepcopy(proc))
            passed = True
            why = ""
        except Fail as e:
            passed = False
            why = str(e).splitlines()[0]
        good = passed == should_pass
        results.append(good)
        print("%s self-test %s: %s%s" % ("ok  " if good else "FAIL", name,
                                         "passes" if passed else "fails", " (%s)" % why if why else ""))

    errors = 0
    for fn in e2e_lib.SELF_TESTS:
        try:
            fn(case)
        except Exception as e:  # a broken fixture or helper
            errors += 1
            print("FAIL self-test %s: %s: %s" % (fn.__name__, type(e).__name__, e))
    ok = sum(results)
    print("%d passed, %d failed, 0 skipped" % (ok, len(results) - ok + errors))
    return 0 if ok == len(results) and not errors else 1


def main(argv):
    args = argv[1:]
    build_dir = os.environ.get("STALLTRACE_BUILD_DIR") or os.path.join(REPO, "build")
    keep = verbose = False
    words = []
    i = 0
    load_test_modules()
    tests = e2e_lib.TESTS
    while i < len(args):
        a = args[i]
        if a == "--self-test":
            return self_test()
        if a == "--list":
            print("\n".join(name for name, _ in tests))
            return 0
        if a == "--build-dir":
            i += 1
            if i >= len(args):
                print("run_e2e.py: --build-dir needs a directory", file=sys.stderr)
                return 2
            build_dir = args[i]
        elif a == "--keep":
            keep = True
        elif a in ("-v", "--verbose"):
            verbose = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a.startswith("-"):
            print("run_e2e.py: unknown option %s" % a, file=sys.stderr)
            return 2
        else:
            words.append(a)
        i += 1
    cfg = Config(os.path.abspath(build_dir), keep, verbose)
    selected = [(n, f) for n, f in tests if not words or any(w in n for w in words)]
    if not selected:
        print("run_e2e.py: no test matches %s" % " ".join(words), file=sys.stderr)
        return 2
    width = max([18] + [len(n) for n, _ in selected])

    passed = failed = skipped = 0
    started = time.monotonic()
    for name, fn in selected:
        tmpdir = tempfile.mkdtemp(prefix="stalltrace-e2e-%s-" % name)
        t0 = time.monotonic()
        keep_dir = keep
        try:
            note = fn(cfg, tmpdir) or ""
            passed += 1
            print("ok   %-*s %s  [%.1f s]" % (width, name, note, time.monotonic() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("skip %-*s %s" % (width, name, e), flush=True)
        except Fail as e:
            failed += 1
            keep_dir = os.path.isdir(tmpdir) and bool(os.listdir(tmpdir))
            print("FAIL %-*s %s%s" % (width, name, e, "\n    (files kept in %s)" % tmpdir if keep_dir else ""),
                  flush=True)
        except Exception as e:  # a bug in the harness or an unexpected report shape
            failed += 1
            keep_dir = os.path.isdir(tmpdir) and bool(os.listdir(tmpdir))
            print("FAIL %-*s %s: %s%s" % (width, name, type(e).__name__, e,
                                          "\n    (files kept in %s)" % tmpdir if keep_dir else ""), flush=True)
        finally:
            if keep_dir and not (os.path.isdir(tmpdir) and os.listdir(tmpdir)):
                keep_dir = False
            if not keep_dir:
                shutil.rmtree(tmpdir, ignore_errors=True)
    print("e2e: %d tests in %.0f s" % (len(selected), time.monotonic() - started), flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
