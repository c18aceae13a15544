"""End-to-end tests on libmicrohttpd (Debian's libmicrohttpd12), whose event
loops nobody here wrote: targets/mhd_pool_server.c runs MHD's own pool of 2
threads, each its own epoll loop, and its /slow handler (handle_slow) sleeps
200 ms in the pool thread, printing its own truth (thread id, duration).

- real_mhd_slow_sequential: 3 /slow one at a time: 3 stalls in usleep at
  handle_slow, each on the thread and of the duration the program printed.
- real_mhd_pool_blocked: 4 /slow at once on the pool of 2: both loops are
  blocked, each for the time its own handlers slept (one iteration can serve
  two requests back to back); event_loop_blocking at handle_slow, its counts
  those of the worst thread, never thread_pool_exhaustion (MHD's threads are
  loops, not a work queue's workers).
- real_mhd_stop_mid_stall: /slow-quit stops the daemon while its handler
  sleeps: the pool thread leaves its loop from inside that iteration, with
  no epoll_wait to end it; the stall is still reported, as long as it slept.
- real_mhd_healthy: wrk on the fast route: 2 loops, no stall, no diagnosis
  (but a wait for a CPU that wrk saw too, reported as cpu_starvation).
"""

import http.client
import re
import shutil
import threading
import time

from e2e_lib import (Skip, c_target_binary, diagnosis_names, expect, fmt_stack, frame_named, healthy_under_load,
                     load_process, run_cmd, start_target, test)

TARGET = "mhd_pool_server"
SLOW_MS = 200.0


def within(stall_ms, truth_ms, handlers=1):
    """A stall holds its handlers' sleeps and MHD's own work around them
    (parsing, the reply): a little more, on a loaded 2-core box."""
    return truth_ms * 0.98 - 1 <= stall_ms <= truth_ms * 1.10 + 10 * handlers


def get(port, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        t0 = time.monotonic()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        expect(resp.status == 200, "GET %s answered %d" % (path, resp.status))
        return body, (time.monotonic() - t0) * 1e3
    finally:
        conn.close()


def serve(cfg, tmpdir, load, threshold=50):
    """Record the server while load(port) runs; returns (process entry with
    its TRUTH lines under "_truth": [(tid, start_ms, ms)], load's result)."""
    binary, _ = c_target_binary(cfg, tmpdir, TARGET)
    p = start_target(cfg, tmpdir, [binary], threshold=threshold)
    try:
        port = int(re.search(r"port=(\d+)", p.wait_for_line(r"READY port=\d+", 20)).group(1))
        expect(port > 0, "the server printed no port")
        result = load(port)
        if result != "quit":
            slow_quit(port, "/quit")
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run of %s exited %r%s" % (TARGET, rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, TARGET, p)
    proc["_truth"] = [(int(t), float(s), float(ms)) for t, s, ms in
                      re.findall(r"TRUTH slow tid=(\d+) start_ms=([\d.]+) ms=([\d.]+)", "\n".join(p.out))]
    return proc, result


def slow_stalls(proc):
    return sorted((s for s in proc["stalls"] if s["duration_ms"] >= SLOW_MS / 2), key=lambda s: s["start_s"])


def check_at_handler(proc, stall):
    expect(stall["call"] in ("usleep", "nanosleep", "clock_nanosleep"), "call %r" % stall["call"], proc)
    f = frame_named(stall["stack"], "handle_slow")
    expect(f, "no handle_slow in %s" % fmt_stack(stall["stack"], 12), proc)
    expect(f.get("module") == TARGET, "handle_slow's module is %r" % f.get("module"), proc)
    loops = {t["tid"] for t in proc["threads"] if t["role"] == "loop"}
    expect(stall["tid"] in loops, "stall on thread %d, which is not a loop: %s" % (stall["tid"], loops), proc)


def blocking_summary(proc):
    names = diagnosis_names(proc)
    expect(names[:1] == ["event_loop_blocking"], "diagnosis %r" % names, proc)
    expect("thread_pool_exhaustion" not in names, "MHD's loops taken for an exhausted pool: %r" % names, proc)
    summary = proc["diagnosis"][0]["summary"]
    expect("handle_slow" in summary, "the diagnosis does not name handle_slow: %s" % summary, proc)
    return summary


@test("real_mhd_slow_sequential")
def t_mhd_sequential(cfg, tmpdir):
    proc, clients = serve(cfg, tmpdir, lambda port: [get(port, "/slow")[1] for _ in range(3)])
    truth = proc["_truth"]
    expect(len(truth) == 3, "the program printed %d TRUTH lines, expected 3" % len(truth), proc)
    stalls = slow_stalls(proc)
    expect(len(stalls) == 3, "%d stalls of 100 ms or more, the handler slept 3 times" % len(stalls), proc)
    for s, (tid, _, ms) in zip(stalls, truth):
        check_at_handler(proc, s)
        expect(s["tid"] == tid, "stall on thread %d, the handler ran on %d" % (s["tid"], tid), proc)
        expect(within(s["duration_ms"], ms), "stall %.1f ms, the handler slept %.1f ms" % (s["duration_ms"], ms), proc)
    blocking_summary(proc)
    return "truth: handler %s ms (clients %s ms); report: stalls %s ms in %s at handle_slow, on the same threads" % (
        "/".join("%.1f" % t[2] for t in truth), "/".join("%.0f" % c for c in clients),
        "/".join("%.1f" % s["duration_ms"] for s in stalls), stalls[0]["call"])


def concurrent_slow(port, n=4):
    """n clients asking /slow at the same moment: their latencies (ms)."""
    gate, out, errors = threading.Barrier(n), [], []

    def client():
        try:
            gate.wait(10)
            out.append(get(port, "/slow")[1])
        except Exception as e:       # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expect(not errors and len(out) == n, "%d of %d clients answered; %s" % (len(out), n, errors[:1]))
    return sorted(out)


@test("real_mhd_pool_blocked")
def t_mhd_pool_blocked(cfg, tmpdir):
    proc, clients = serve(cfg, tmpdir, concurrent_slow)
    truth = proc["_truth"]
    expect(len(truth) == 4, "the program printed %d TRUTH lines, expected 4" % len(truth), proc)
    # Per thread, the program's own time asleep in handlers against the report's stalled time.
    slept = {}
    for tid, _, ms in truth:
        slept.setdefault(tid, []).append(ms)
    stalls = slow_stalls(proc)
    stalled = {}
    for s in stalls:
        check_at_handler(proc, s)
        stalled.setdefault(s["tid"], []).append(s["duration_ms"])
    expect(set(stalled) == set(slept), "stalls on threads %s, the handlers ran on %s" % (
        sorted(stalled), sorted(slept)), proc)
    for tid, sleeps in slept.items():
        expect(within(sum(stalled[tid]), sum(sleeps), len(sleeps)),
               "thread %d stalled %.1f ms in all, its handlers slept %.1f ms" % (
                   tid, sum(stalled[tid]), sum(sleeps)), proc)
    # The headline is about the thread that slept longest (either of two that
    # slept as long, within noise), with that thread's own count of calls.
    summary = blocking_summary(proc)
    named = re.search(r"thread (\d+) ", summary)
    named = int(named.group(1)) if named else None
    longest = max(sum(v) for v in slept.values())
    expect(named in slept and sum(slept[named]) >= longest - 20, "the diagnosis is about thread %r, but the "
           "handlers slept %s: %s" % (named, {t: sum(v) for t, v in slept.items()}, summary), proc)
    count = len(slept[named])
    said = re.search(r"mostly in (?:(\d+) x )?(\w+)", summary)
    expect(said and int(said.group(1) or 1) == count, "thread %d slept %d times; the diagnosis says %r"
           % (named, count, said and said.group(0)), proc)
    if len(slept) > 1:
        expect("1 other loop thread stalled too" in summary, "the other blocked loop is not mentioned: %s"
               % summary, proc)
    return "truth: clients %s ms, handlers per thread %s; report: stalls per thread %s; \"%s\"" % (
        "/".join("%.0f" % c for c in clients),
        ", ".join("%d: %s" % (t, "+".join("%.0f" % m for m in v)) for t, v in sorted(slept.items())),
        ", ".join("%d: %s" % (t, "+".join("%.0f" % m for m in v)) for t, v in sorted(stalled.items())),
        summary[:150])


def slow_quit(port, path="/slow-quit"):
    """GET /slow-quit (or /quit); the daemon stops under it, so the answer
    may be lost."""
    try:
        get(port, path)
    except (OSError, http.client.HTTPException):
        pass
    return "quit"


@test("real_mhd_stop_mid_stall")
def t_mhd_stop_mid_stall(cfg, tmpdir):
    proc, _ = serve(cfg, tmpdir, slow_quit)
    truth = proc["_truth"]
    # MHD may call the handler again for the request it could not answer
    # while stopping: every sleep of it is in the one last iteration.
    expect(truth and len({t[0] for t in truth}) == 1, "TRUTH lines %s, expected the handler on one thread"
           % truth, proc)
    tid, ms = truth[0][0], sum(t[2] for t in truth)
    stalls = slow_stalls(proc)
    expect(len(stalls) == 1, "%d stalls of 100 ms or more; the handler slept %.1f ms as the daemon stopped"
           % (len(stalls), ms), proc)
    check_at_handler(proc, stalls[0])
    expect(stalls[0]["tid"] == tid, "stall on thread %d, the handler ran on %d" % (stalls[0]["tid"], tid), proc)
    expect(within(stalls[0]["duration_ms"], ms, len(truth)), "stall %.1f ms, the handler slept %.1f ms"
           % (stalls[0]["duration_ms"], ms), proc)
    blocking_summary(proc)
    return "truth: handler %s ms as the daemon stopped; report: stall %.1f ms in %s at handle_slow" % (
        "+".join("%.1f" % t[2] for t in truth), stalls[0]["duration_ms"], stalls[0]["call"])


@test("real_mhd_healthy")
def t_mhd_healthy(cfg, tmpdir):
    if not shutil.which("wrk"):
        raise Skip("no wrk (bash scripts/setup.sh installs it)")

    def load(port):
        rc, out, err = run_cmd(["wrk", "-t2", "-c16", "-d3s", "--latency", "http://127.0.0.1:%d/" % port],
                               timeout=60)
        expect(rc == 0, "wrk: %s" % err)
        return out

    proc, out = serve(cfg, tmpdir, load, threshold=20)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    mx = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    expect(rate and float(rate.group(1)) > 100, "wrk did not load the server: %s" % out[-300:])
    loops = [t for t in proc["threads"] if t["role"] == "loop"]
    expect(len(loops) == 2, "%d loop threads, expected MHD's pool of 2: %s" % (
        len(loops), [(t["tid"], t["name"], t["role"]) for t in proc["threads"]]), proc)
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    worst = float(mx.group(1)) * unit[mx.group(2)] if mx else 0.0
    starved = healthy_under_load(proc, worst, "MHD")
    return "truth (wrk): %s req/s, p99 %s, max %.1f ms; report: 2 loops, %d iterations, max %s ms; " \
        "%s" % (rate.group(1), p99.group(1) if p99 else "?", worst,
                            sum(t["loop"]["iterations"] for t in loops),
                            "/".join("%.1f" % t["loop"]["max_ms"] for t in loops), starved)
