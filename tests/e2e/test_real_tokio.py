"""End-to-end tests of a real tokio service (issue 20): Debian's tokio on a
two-worker multi-thread runtime, built offline from Debian's crates with
frame pointers (targets/tokio_service, built here into the build directory
and kept there). One worker waits in epoll_wait, the other parks on a std
Condvar, i.e. in syscall(SYS_futex): that park must count as idle. The
service prints its own timing of each harm ("truth ... ms="); the report is
checked against it:

- real_tokio_blocking: load_report() sleeps 250 ms in std::thread::sleep,
  6 times: 6 stalls of about its measured time, in nanosleep or
  clock_nanosleep, load_report named as rustfilt names it (no hash).
- real_tokio_cpu: crunch_numbers() burns ~200 ms of CPU, 4 times: 4
  CPU-bound stalls there.
- real_tokio_blocking_pool: 4 jobs of 750 ms on spawn_blocking's pool of
  2 threads: saturated for about 1.5 s (as the jobs measured it), and the
  diagnosis is thread_pool_exhaustion.
- real_tokio_healthy: pings 0.3 s apart: no stall, no diagnosis.
- real_rust_mutex_contention: three threads take turns on a std Mutex,
  holding it 60 ms: a contended mutex whose waits add up to what the
  threads measured in lock(), diagnosed lock_contention (std only, rustc).

Skipped when cargo or Debian's tokio crate is missing (rustc, for the last).
"""

import glob
import os
import re
import shutil
import socket
import time

from e2e_lib import (Proc, Skip, diagnosis_names, expect, fmt_stack, fmt_stall, load_process, run_to_end,
                     start_target, target, test)

THRESHOLD_MS = 50
REGISTRY = "/usr/share/cargo/registry"
# The recorder's stall spans the iteration around the harm: never shorter
# than the program's own measure (less a clock's rounding), longer by what
# the iteration did besides, and by a loaded 2-core machine's delays.
BELOW_MS, ABOVE_MS = 1.0, 40.0
SLEEP_CALLS = ("nanosleep", "clock_nanosleep")
# A service that has answered a few requests: one worker has come back to
# its epoll wait, so it is a loop thread and the watchdog samples. (A worker
# that only ever parks on its condition is never a loop thread: its stalls
# would be slow calls, or lost if CPU-bound.)
WARM_UP = ["ping", 0.05, "ping", 0.05, "ping", 0.05]
# What rustfilt leaves out: the legacy hash and the $..$ escapes.
MANGLED = re.compile(r"::h[0-9a-f]{16}\b|\$[A-Za-z0-9]+\$|^_R|^_ZN")


def cargo_or_skip():
    # Debian's cargo first: the registry's crates are built for its rustc.
    cargo = "/usr/bin/cargo" if os.path.exists("/usr/bin/cargo") else shutil.which("cargo")
    if cargo is None or (shutil.which("rustc") is None and not os.path.exists("/usr/bin/rustc")):
        raise Skip("no cargo or rustc (apt-get install cargo rustc)")
    if not glob.glob(os.path.join(REGISTRY, "tokio-1.*")):
        raise Skip("no tokio crate in %s (apt-get install librust-tokio-dev)" % REGISTRY)
    return cargo


def service_binary(cfg):
    """targets/tokio_service built offline (cargo keeps it up to date)."""
    if "tokio_service" in cfg.cache:
        return cfg.cache["tokio_service"]
    cargo = cargo_or_skip()
    out = os.path.join(cfg.build_dir, "tokio_service")
    env = dict(os.environ, RUSTFLAGS="-C force-frame-pointers=yes", CARGO_HOME=os.path.join(out, "cargo-home"),
               CARGO_TARGET_DIR=out)
    if cargo == "/usr/bin/cargo" and os.path.exists("/usr/bin/rustc"):
        env["RUSTC"] = "/usr/bin/rustc"    # not another toolchain's, first in PATH
    env.pop("LD_PRELOAD", None)
    project = target("tokio_service")
    # Run in the project: cargo finds .cargo/config.toml (Debian's crates,
    # offline) from its working directory.
    p = Proc([cargo, "build", "--release", "--offline", "--quiet"], env=env, cwd=project)
    try:
        rc = p.wait(600)
    finally:
        p.close()
    expect(rc == 0, "cargo build of %s failed (%d): %s" % (project, rc, "\n".join(p.err)[-600:]))
    binary = os.path.join(out, "release", "tokio_service")
    expect(os.path.exists(binary), "cargo built no %s" % binary)
    cfg.cache["tokio_service"] = binary
    return binary


def run_service(cfg, tmpdir, commands):
    """Runs the service under the recorder, sends `commands` one at a time
    on one connection (a number: a pause of that many seconds), then quit.
    Returns the report's process entry and the truth lines, by kind."""
    binary = service_binary(cfg)
    p = start_target(cfg, tmpdir, [binary], threshold=THRESHOLD_MS)
    try:
        port = int(p.wait_for_line(r"^port \d+$", 30).split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            replies = s.makefile("rw")
            for c in commands:
                if isinstance(c, (int, float)):
                    time.sleep(c)
                    continue
                replies.write(c + "\n")
                replies.flush()
                line = replies.readline()
                expect(line.strip() and not line.startswith("unknown"),
                       "the service answered %r to %r%s" % (line, c, p.tail()))
            replies.write("quit\n")
            replies.flush()
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d, expected 0%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "tokio_service", p)
    truth = {}
    for line in p.out:
        m = re.match(r"^truth (\w+) ms=([0-9.]+)$", line)
        if m:
            truth.setdefault(m.group(1), []).append(float(m.group(2)))
    proc["_truth"] = truth
    return proc, truth


def stalls_at(proc, function):
    """The stalls, each of which must have `function` on its stack."""
    stalls = proc.get("stalls") or []
    others = [s for s in stalls if not any(f.get("function") == function for f in s.get("stack") or [])]
    expect(not others, "stalls without %s: %s" % (function, "; ".join(fmt_stall(s) for s in others)), proc)
    return stalls


def check_names(proc, stalls):
    for s in stalls:
        bad = [f.get("function") for f in s.get("stack") or [] if MANGLED.search(str(f.get("function") or ""))]
        expect(not bad, "names not demangled as rustfilt does: %r in %s" % (bad[:3], fmt_stall(s)), proc)


def match_durations(proc, stalls, truths, what):
    """Each stall against the program's own measure, both in order."""
    got = sorted(float(s.get("duration_ms") or 0) for s in stalls)
    want = sorted(truths)
    expect(len(got) == len(want), "%d %s stall(s), the program measured %d: %r vs %r"
           % (len(got), what, len(want), got, want), proc)
    for g, w in zip(got, want):
        expect(w - BELOW_MS <= g <= w + ABOVE_MS, "%s stall of %.1f ms for a measured %.1f ms (all: %r vs %r)"
               % (what, g, w, got, want), proc)
    return "%s %s ms -> stalls %s ms" % (what, "/".join("%.1f" % w for w in want), "/".join("%.1f" % g for g in got))


def harm_run(cfg, tmpdir, command, count, kind, function, calls, culprits=("event_loop_blocking",)):
    """`count` requests that each do one harm: as many stalls at `function`,
    each in one of `calls` (None: CPU-bound), of the harm's own duration,
    and a diagnosis among `culprits`."""
    proc, truth = run_service(cfg, tmpdir, WARM_UP + [command] * count)
    expect(len(truth.get(kind, [])) == count, "the service measured %r, expected %d of %s"
           % (truth.get(kind), count, kind))
    stalls = stalls_at(proc, function)
    for s in stalls:
        expect(s.get("call") in calls, "stall call %r, expected %s: %s" % (s.get("call"), calls, fmt_stall(s)), proc)
    check_names(proc, stalls)
    expect(set(culprits) & set(diagnosis_names(proc)),
           "no %s diagnosis: %r" % (" or ".join(culprits), diagnosis_names(proc)), proc)
    return match_durations(proc, stalls, truth[kind], kind)


@test("real_tokio_blocking")
def test_tokio_blocking(cfg, tmpdir):
    return harm_run(cfg, tmpdir, "report", 6, "sleep", "tokio_service::load_report", SLEEP_CALLS)


@test("real_tokio_cpu")
def test_tokio_cpu(cfg, tmpdir):
    # On a loaded 2-core machine the busy loop may mostly wait for a CPU.
    return harm_run(cfg, tmpdir, "crunch", 4, "cpu", "tokio_service::crunch_numbers", (None,),
                    ("event_loop_blocking", "cpu_starvation"))


@test("real_tokio_blocking_pool")
def test_tokio_blocking_pool(cfg, tmpdir):
    # "warm" starts both blocking threads and lets them go idle: the pool is
    # known before it is saturated.
    proc, truth = run_service(cfg, tmpdir, WARM_UP + ["warm", "saturate"])
    want = (truth.get("saturated") or [None])[0]
    expect(want is not None and want > 1400, "the service measured saturation %r, expected ~1500 ms" % want)
    pools = [p for p in proc.get("pools") or [] if p.get("saturations")]
    expect(len(pools) == 1, "%d saturated pool(s), expected 1: %r" % (
        len(pools), [(p.get("id"), p.get("threads"), p.get("longest_saturation_ms")) for p in proc.get("pools") or []]),
        proc)
    pool = pools[0]
    # The threads that ran the jobs are its members. (tokio starts its
    # workers on the same pool: one that waited there at start-up is one too.)
    job_threads = {c.get("tid") for c in proc.get("slow_calls") or []
                   if any(f.get("function") == "tokio_service::blocking_job" for f in c.get("stack") or [])}
    expect(len(job_threads) == 2 and job_threads <= set(pool.get("tids") or []),
           "the jobs ran on threads %r, the saturated pool has %r" % (sorted(job_threads), pool.get("tids")), proc)
    got = float(pool.get("longest_saturation_ms") or 0)
    expect(want - BELOW_MS <= got <= want + ABOVE_MS,
           "longest saturation %.1f ms, the jobs measured %.1f ms" % (got, want), proc)
    expect("thread_pool_exhaustion" in diagnosis_names(proc),
           "no thread_pool_exhaustion diagnosis: %r" % diagnosis_names(proc), proc)
    expect(not proc.get("stalls"), "stalls in a service whose handlers await: %s"
           % "; ".join(fmt_stall(s) for s in proc.get("stalls")), proc)
    return "saturated %.1f ms -> pool of %s saturated %.1f ms" % (want, pool.get("threads"), got)


@test("real_tokio_healthy")
def test_tokio_healthy(cfg, tmpdir):
    commands = []
    for _ in range(10):
        commands += ["ping", 0.3]
    proc, _ = run_service(cfg, tmpdir, commands)
    workers = [t for t in proc.get("threads") or [] if t.get("role") == "loop"]
    expect(workers, "no loop thread found in the tokio service", proc)
    expect(not proc.get("stalls"), "stalls in a healthy service: %s"
           % "; ".join(fmt_stall(s) for s in proc.get("stalls")), proc)
    expect(not proc.get("diagnosis"), "diagnosis on a healthy service: %r" % diagnosis_names(proc), proc)
    return "10 pings 0.3 s apart: no stall, no diagnosis"


def rustc_or_skip():
    rustc = "/usr/bin/rustc" if os.path.exists("/usr/bin/rustc") else shutil.which("rustc")
    if rustc is None:
        raise Skip("no rustc (apt-get install rustc)")
    return rustc


@test("real_rust_mutex_contention")
def test_rust_mutex(cfg, tmpdir):
    source = target("rust_mutex.rs")
    binary = os.path.join(cfg.build_dir, "tokio_service", "rust_mutex")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        p = Proc([rustc_or_skip(), "-O", "-g", "-C", "force-frame-pointers=yes", "-o", binary, source])
        try:
            rc = p.wait(300)
        finally:
            p.close()
        expect(rc == 0, "rustc %s failed (%d): %s" % (source, rc, "\n".join(p.err)[-600:]))
    proc, _ = run_to_end(cfg, tmpdir, [binary], "rust_mutex")
    m = [re.match(r"^truth waited ms=([0-9.]+)$", line) for line in proc["_stdout"]]
    m = [x for x in m if x]
    expect(m, "the program printed no truth line")
    want = float(m[0].group(1))
    locks = [lk for lk in proc.get("locks") or [] if lk.get("kind") == "mutex"]
    expect(len(locks) == 1, "%d mutex(es) in the report, expected 1" % len(locks), proc)
    lock = locks[0]
    got = float(lock.get("wait_total_ms") or 0)
    # The recorder times the futex waits; the threads also timed std's spin
    # before them and the uncontended takes.
    expect(want * 0.9 <= got <= want + ABOVE_MS, "mutex waits %.1f ms, the threads measured %.1f ms"
           % (got, want), proc)
    expect(lock.get("waiters") == 3, "%r waiters, expected 3" % lock.get("waiters"), proc)
    expect(any(f.get("function") == "rust_mutex::update_totals" for f in lock.get("stack") or []),
           "update_totals not in the lock's stack: %s" % fmt_stack(lock.get("stack")), proc)
    expect("lock_contention" in diagnosis_names(proc), "no lock_contention: %r" % diagnosis_names(proc), proc)
    expect(not proc.get("pools"), "a pool in a program without one: %r" % proc.get("pools"), proc)
    return "waited %.1f ms -> mutex waits %.1f ms by %s threads, lock_contention" % (want, got, lock.get("waiters"))
