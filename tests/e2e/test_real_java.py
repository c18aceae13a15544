"""End-to-end tests on a Java 17 service (issue 17): the JDK's own
com.sun.net.httpserver, whose dispatcher thread waits in epoll_wait and runs
the handlers, recorded with `stalltrace run -- java ...` (which asks HotSpot
for its perf map and frame pointers). The service times its own slow steps
(TRUTH lines); the report is held against them.

- java_service: after a warm-up on the main thread (HotSpot compiles the hot
  paths, as a service's warm-up traffic has it do), 3 x Thread.sleep(250) in loadReport and 3 x 200 ms
  of CPU in crunchNumbers on the dispatcher, then 6 x 300 ms jobs on a fixed
  pool of 2: stalls of the program's durations named by the Java method, the
  pool of the two "pool-1-thread-N" workers saturated as long as the program
  saw, thread names as the JVM gave them, the JVM's exit status and no crash
  log.
- java_healthy: the same service under 4 clients of fast requests. A JVM's
  first request loads and links the classes it needs (tens of ms, interpreted):
  that one, timed by the client, may stall the loop as long as it took; under
  the load that follows, no stall, and no diagnosis beyond that first request.
"""

import glob
import os
import re
import shutil
import time

from e2e_lib import Skip, diagnosis_names, expect, fmt_stack, frame_named, load_process, run_cmd, start_target, test
from test_real_loops import get, load

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "targets", "java", "JavaService.java")
THRESHOLD = 50


def java_classes(cfg):
    """JavaService compiled once into build/ (javac from Debian's openjdk-17)."""
    if not shutil.which("java") or not shutil.which("javac"):
        raise Skip("no java/javac (apt-get install openjdk-17-jdk-headless)")
    out = os.path.join(cfg.build_dir, "tests", "e2e", "java")
    cls = os.path.join(out, "JavaService.class")
    if not os.path.exists(cls) or os.path.getmtime(cls) < os.path.getmtime(SOURCE):
        os.makedirs(out, exist_ok=True)
        rc, _, err = run_cmd(["javac", "-d", out, SOURCE], timeout=180)
        expect(rc == 0, "javac failed: %s" % err[-400:])
    return out


def serve(cfg, tmpdir, requests):
    """Run the service under stalltrace, send requests (a function of the
    port), quit it; returns (process entry, TRUTH values, stdout, cwd files)."""
    classes = java_classes(cfg)
    p = start_target(cfg, tmpdir, ["java", "-cp", classes, "JavaService"], threshold=THRESHOLD)
    try:
        port = int(re.search(r"PORT (\d+)", p.wait_for_line(r"^PORT \d+", 60)).group(1))
        requests(port, p)
        try:
            get(port, "/quit", timeout=10)
        except Exception:  # noqa: BLE001 - the server may close before answering
            pass
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run -- java exited %r, expected 0%s" % (rc, p.tail()))
    crash_logs = glob.glob(os.path.join(tmpdir, "hs_err_pid*.log")) + glob.glob("hs_err_pid*.log")
    expect(not crash_logs, "the JVM wrote a crash log: %s" % crash_logs)
    proc, _ = load_process(cfg, tmpdir, "JavaService", p)
    truth = {}
    for line in p.out:
        m = re.match(r"TRUTH (\S+) ([\d.]+)", line)
        if m:
            truth.setdefault(m.group(1), []).append(float(m.group(2)))
    return proc, truth


def loop_thread(proc):
    loops = [t for t in proc["threads"] if t.get("role") == "loop"]
    expect(len(loops) == 1 and loops[0]["name"] == "HTTP-Dispatcher",
           "loop threads %s, expected the JDK's HTTP-Dispatcher" % [(t["tid"], t["name"]) for t in loops], proc)
    return loops[0]


def stalls_at(proc, tid, function):
    return [s for s in proc["stalls"] if s["tid"] == tid and frame_named(s.get("stack"), function)]


def no_perf_map_left(proc):
    path = "/tmp/perf-%d.map" % proc["pid"]
    expect(not os.path.exists(path), "stalltrace run left %s behind" % path)


@test("java_service")
def t_java_service(cfg, tmpdir):
    def requests(port, p):
        get(port, "/ok")        # the first request loads the server's classes (java_healthy)
        for _ in range(3):
            get(port, "/sleep")
            get(port, "/cpu")
        get(port, "/pool")
        # The pool's jobs done, its workers wait for more, as a live service's do.
        p.wait_for_line(r"^TRUTH pool ", 30)
        time.sleep(0.5)
        get(port, "/ok", timeout=30)

    proc, truth = serve(cfg, tmpdir, requests)
    loop = loop_thread(proc)
    no_perf_map_left(proc)
    sleeps, cpus = truth.get("sleep", []), truth.get("cpu", [])
    expect(len(sleeps) == 3 and len(cpus) == 3, "the service timed %s" % truth)

    blocked = stalls_at(proc, loop["tid"], "JavaService.loadReport")
    expect(len(blocked) == 3, "%d stalls at JavaService.loadReport, the service slept 3 times: %s"
           % (len(blocked), [(s["duration_ms"], s.get("call"), fmt_stack(s.get("stack"), 6)) for s in proc["stalls"]]),
           proc)
    for s, ms in zip(blocked, sleeps):
        expect(s.get("call") == "pthread_cond_timedwait" and ms * 0.98 <= s["duration_ms"] <= ms + 100,
               "a sleep of %.1f ms stalled %.1f ms in %s" % (ms, s["duration_ms"], s.get("call")), proc)
    spun = stalls_at(proc, loop["tid"], "JavaService.crunchNumbers")
    expect(len(spun) == 3, "%d stalls at JavaService.crunchNumbers, the service spun 3 times" % len(spun), proc)
    for s, ms in zip(spun, cpus):
        expect(s.get("call") is None and ms * 0.98 <= s["duration_ms"] <= ms + 100,
               "%.1f ms of CPU stalled %.1f ms (call %s)" % (ms, s["duration_ms"], s.get("call")), proc)

    workers = {t["tid"] for t in proc["threads"] if re.match(r"pool-1-thread-\d+$", t["name"] or "")}
    expect(len(workers) == 2, "threads named pool-1-thread-N: %d, expected 2" % len(workers), proc)
    names = diagnosis_names(proc)
    expect("event_loop_blocking" in names, "diagnosis %s" % names, proc)
    # No pool of the JVM's own threads (GC, compiler, housekeeping) is out of workers.
    internal = [pl["id"] for pl in proc["pools"]
                if not workers & set(pl.get("tids") or []) and pl["saturated_s"] * 1e3 >= THRESHOLD]
    expect(not internal, "pools %s of the JVM's own threads were saturated" % internal, proc)
    pools = [pl for pl in proc["pools"] if set(pl.get("tids") or []) == workers]
    expect(pools, "no pool of the two pool-1-thread workers: %s"
           % [(pl["id"], pl.get("tids")) for pl in proc["pools"]], proc)
    pool_ms = truth.get("pool", [0])[0]
    saturated = pools[0]["saturated_s"] * 1e3
    expect(0.9 * pool_ms <= saturated <= 1.05 * pool_ms,
           "the pool was saturated %.0f ms, its 6 jobs took %.0f ms" % (saturated, pool_ms), proc)
    expect("thread_pool_exhaustion" in names, "diagnosis %s" % names, proc)
    return "sleeps %s -> %s ms; cpu %s -> %s ms; pool %.0f -> %.0f ms saturated" % (
        [round(x) for x in sleeps], [round(s["duration_ms"]) for s in blocked], [round(x) for x in cpus],
        [round(s["duration_ms"]) for s in spun], pool_ms, saturated)


@test("java_healthy")
def t_java_healthy(cfg, tmpdir):
    latencies, first = [], []

    def requests(port, p):
        first.append(get(port, "/ok"))
        latencies.extend(load(port, 4, 40, "/ok"))

    proc, _ = serve(cfg, tmpdir, requests)
    loop = loop_thread(proc)
    no_perf_map_left(proc)
    stalls = [s for s in proc["stalls"] if s["tid"] == loop["tid"]]
    # The first request is the only one allowed to stall: once, no longer than
    # its client waited for it.
    expect(len(stalls) <= 1 and all(s["duration_ms"] <= first[0] for s in stalls),
           "a healthy Java service stalled (its first request took %.0f ms): %s"
           % (first[0], [(round(s["duration_ms"]), s.get("call"), fmt_stack(s.get("stack"), 4)) for s in stalls]),
           proc)
    # What may be said of that one stall: that it blocked the loop, or (on a
    # loaded machine) that it mostly waited for a CPU.
    others = [d for d in proc.get("diagnosis") or []
              if d["culprit"] not in ("event_loop_blocking", "cpu_starvation") or not stalls]
    expect(not others, "a healthy Java service got a diagnosis: %s" % [d["summary"] for d in others], proc)
    latencies.sort()
    return "first request %.0f ms (stall %s); %d requests, p50 %.1f ms, p99 %.1f ms; no stall after it" % (
        first[0], [round(s["duration_ms"]) for s in stalls], len(latencies), latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99) - 1])
