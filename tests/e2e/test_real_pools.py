"""End-to-end tests of thread pools that start threads on demand (issue 12):
saturation is reported only when work waited, each pool says what it is
(`pools[].kind`, `max_threads`) and the advice names the knob that exists.

Real third-party frameworks under Debian's /usr/bin/python3, with the load
and the ground truth measured outside the recorder (by the clients, or by the
target's own timestamps):

- real_pool_executor_healthy: ThreadPoolExecutor(max_workers=16), 4 tasks
  of 100 ms at a time: 4 threads, all busy, nothing ever waits. No
  saturation, no thread_pool_exhaustion, `check --max-saturated-s 1` passes.
- real_pool_executor_saturated: ThreadPoolExecutor(4), 10 tasks of 1 s at
  once: work waits 2 s (the target measures it). Saturated ~2 s, advice
  max_workers (4 now), `check --max-saturated-s 1` fails.
- real_pool_fastapi_healthy: FastAPI `def` endpoint (time.sleep 0.1) on
  uvicorn, 8 concurrent clients: anyio's limiter allows 40 threads, so p99
  client latency ~ the service time and no saturation.
- real_pool_fastapi_saturated: the same with 80 clients: anyio at its 40
  threads, clients queue (their latency shows it); saturated, and the advice
  names the CapacityLimiter's total_tokens.
- real_pool_twisted_healthy: Twisted deferToThread, 5 clients: the reactor
  pool grows to 5 of its 10; no saturation.
"""

import http.client
import math
import re
import threading
import time

from e2e_lib import (DEBIAN_PYTHON, Fail, Skip, diagnosis_names, expect, load_process, run_cmd, run_to_end,
                     start_target, target, test)

SERVICE_S = 0.1                # what the endpoints and tasks sleep
HEALTHY_P99_S = SERVICE_S + 0.12  # p99 latency of a healthy run: service time and a loaded machine
QUEUED_P99_S = 2.5 * SERVICE_S    # 80 clients on 40 threads wait at least a round


def python_with(*modules):
    rc, _, err = run_cmd([DEBIAN_PYTHON, "-c", "import " + ", ".join(modules)], timeout=30)
    if rc != 0:
        raise Skip("%s cannot import %s: %s" % (DEBIAN_PYTHON, ", ".join(modules), err.strip()[-200:]))
    return DEBIAN_PYTHON


def num(x):
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def the_pool(proc, kind):
    pools = [p for p in proc.get("pools") or [] if p.get("kind") == kind]
    expect(len(pools) == 1, "%d pool(s) of kind %s, expected 1; pools: %r" % (
        len(pools), kind, [(p.get("id"), p.get("kind"), p.get("threads")) for p in proc.get("pools") or []]),
        proc)
    return pools[0]


def pool_line(pool):
    return "%s pool of %s (max %s), saturated %.2f s in %d span(s), basis %s" % (
        pool.get("kind"), pool.get("threads"), pool.get("max_threads"), num(pool.get("saturated_s")) or 0,
        len(pool.get("saturations") or []), pool.get("saturation_basis"))


def check_status(cfg, proc):
    rc, out, err = run_cmd([cfg.stalltrace, "check", "--max-saturated-s", "1", proc["_dump"]], timeout=60)
    expect(rc in (0, 1), "check exited %d: %s" % (rc, (out + err).strip()[-300:]), proc)
    return rc, out


def healthy(cfg, proc, pool, max_threads):
    expect(pool.get("max_threads") == max_threads, "max_threads %r, expected %d" % (
        pool.get("max_threads"), max_threads), proc)
    expect(not pool.get("saturations") and (num(pool.get("saturated_s")) or 0) == 0,
           "a healthy pool is saturated: %s" % pool_line(pool), proc)
    expect("thread_pool_exhaustion" not in diagnosis_names(proc),
           "thread_pool_exhaustion on a healthy run: %r" % (proc.get("diagnosis"),), proc)
    rc, out = check_status(cfg, proc)
    expect(rc == 0, "check --max-saturated-s 1 fails a healthy run: %s" % out.strip()[-300:], proc)


def exhaustion_summary(proc):
    found = [d for d in proc.get("diagnosis") or [] if d.get("culprit") == "thread_pool_exhaustion"]
    expect(found, "no thread_pool_exhaustion; diagnosis %r" % (proc.get("diagnosis"),), proc)
    return found[0].get("summary") or ""


# ---------------------------------------------------------------------------
# Servers and their clients


def drive(port, clients, requests_each):
    """`clients` threads, each with its own keep-alive connection, each making
    `requests_each` GET /work; returns the sorted latencies (s) and wall time."""
    latencies, errors, lock = [], [], threading.Lock()

    def client():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(requests_each):
                t0 = time.monotonic()
                conn.request("GET", "/work")
                resp = conn.getresponse()
                resp.read()
                took = time.monotonic() - t0
                if resp.status != 200:
                    raise Fail("GET /work answered %d" % resp.status)
                with lock:
                    latencies.append(took)
            conn.close()
        except Exception as e:       # reported by the caller
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise Fail("%d client(s) failed, first: %s" % (len(errors), errors[0]))
    latencies.sort()
    return latencies, time.monotonic() - started


def quantile(sorted_values, q):
    return sorted_values[max(0, math.ceil(len(sorted_values) * q) - 1)] if sorted_values else None


def serve_and_load(cfg, tmpdir, script, clients, requests_each, beside=None):
    """Record `script` under the clients of drive() (and beside(port), run
    in a thread of its own meanwhile); the process entry has the target's
    stdout lines under "_stdout"."""
    python = python_with("fastapi", "uvicorn", "anyio") if "fastapi" in script else python_with("twisted")
    p = start_target(cfg, tmpdir, [python, target(script)])
    try:
        port = int(re.search(r"port=(\d+)", p.wait_for_line(r"READY port=\d+", 60)).group(1))
        other = threading.Thread(target=beside, args=(port,), daemon=True) if beside else None
        if other:
            other.start()
        latencies, wall = drive(port, clients, requests_each)
        if other:
            other.join(120)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/quit")
        conn.getresponse().read()
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, script, p)
    proc["_stdout"] = list(p.out)
    expect(len(latencies) == clients * requests_each, "%d answers of %d" % (len(latencies), clients * requests_each))
    return proc, latencies, wall


# ---------------------------------------------------------------------------
# The tests


def executor_run(cfg, tmpdir, workers, concurrency, tasks, task_s):
    python = python_with("concurrent.futures")
    proc, _ = run_to_end(cfg, tmpdir, [python, target("py_executor_demand.py"), str(workers), str(concurrency),
                                       str(tasks), str(task_s)], "py_executor_demand.py", timeout=90)
    lines = [l for l in proc["_stdout"] if l.startswith("EXECUTOR-DEMAND-DONE")]
    expect(lines, "the target printed no EXECUTOR-DEMAND-DONE line", proc)
    truth = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", lines[0])}
    return proc, truth


@test("real_pool_executor_healthy")
def test_executor_healthy(cfg, tmpdir):
    proc, truth = executor_run(cfg, tmpdir, 16, 4, 80, SERVICE_S)
    expect(truth["p99_ms"] / 1e3 <= HEALTHY_P99_S, "the target's own p99 %.0f ms is not the service time: a "
           "loaded machine, retry" % truth["p99_ms"], proc)
    pool = the_pool(proc, "cpython-executor")
    healthy(cfg, proc, pool, 16)
    return "truth: %d threads, task p99 %.0f ms, longest wait %.0f ms; report: %s" % (
        truth["threads"], truth["p99_ms"], truth["wait_max_ms"], pool_line(pool))


@test("real_pool_executor_saturated")
def test_executor_saturated(cfg, tmpdir):
    proc, truth = executor_run(cfg, tmpdir, 4, 10, 10, 1.0)
    pool = the_pool(proc, "cpython-executor")
    expect(pool.get("max_threads") == 4, "max_threads %r, expected 4" % pool.get("max_threads"), proc)
    # Tasks 5-8 wait one round, 9-10 two: work waited from the start to the
    # longest wait's end.
    waited_s = truth["wait_max_ms"] / 1e3
    sat = num(pool.get("saturated_s")) or 0
    expect(abs(sat - waited_s) <= max(0.1 * waited_s, 0.15), "saturated %.2f s, but work waited %.2f s: %s"
           % (sat, waited_s, pool_line(pool)), proc)
    summary = exhaustion_summary(proc)
    expect("max_workers (4 now)" in summary, "the advice does not name max_workers (4 now): %s" % summary, proc)
    rc, out = check_status(cfg, proc)
    expect(rc == 1 and "max-saturated-s" in out, "check --max-saturated-s 1 passed an exhausted pool", proc)
    return "truth: waited %.2f s; report: %s; advice max_workers" % (waited_s, pool_line(pool))


def healthy_server(cfg, tmpdir, script, clients, requests_each, kind, max_threads):
    proc, lat, _ = serve_and_load(cfg, tmpdir, script, clients, requests_each)
    p99 = quantile(lat, 0.99)
    expect(p99 <= HEALTHY_P99_S, "client p99 %.0f ms is not the service time: a loaded machine, retry"
           % (p99 * 1e3), proc)
    pool = the_pool(proc, kind)
    healthy(cfg, proc, pool, max_threads)
    return "truth: %d clients, p99 %.0f ms; report: %s" % (clients, p99 * 1e3, pool_line(pool))


@test("real_pool_fastapi_healthy")
def test_fastapi_healthy(cfg, tmpdir):
    return healthy_server(cfg, tmpdir, "py_fastapi_def.py", 8, 20, "anyio", 40)


@test("real_pool_fastapi_saturated")
def test_fastapi_saturated(cfg, tmpdir):
    proc, lat, wall = serve_and_load(cfg, tmpdir, "py_fastapi_def.py", 80, 15)
    p99, worst = quantile(lat, 0.99), lat[-1]
    expect(p99 >= QUEUED_P99_S, "client p99 %.0f ms: 80 clients on 40 threads did not queue" % (p99 * 1e3), proc)
    pool = the_pool(proc, "anyio")
    expect(pool.get("max_threads") == 40, "max_threads %r, expected 40" % pool.get("max_threads"), proc)
    sat = num(pool.get("saturated_s")) or 0
    # Requests queued for most of the clients' run, never longer than it.
    expect(0.5 * wall <= sat <= wall + 0.2, "saturated %.2f s of the clients' %.2f s: %s"
           % (sat, wall, pool_line(pool)), proc)
    qmax = num((pool.get("queue_wait_ms") or {}).get("max"))
    queued_s = worst - SERVICE_S
    expect(qmax is not None and abs(qmax / 1e3 - queued_s) <= max(0.2 * queued_s, 0.15),
           "longest queue wait %r ms, but the worst client waited %.0f ms beyond the service time"
           % (qmax, queued_s * 1e3), proc)
    summary = exhaustion_summary(proc)
    expect("CapacityLimiter" in summary and "total_tokens" in summary,
           "the advice does not name anyio's CapacityLimiter total_tokens: %s" % summary, proc)
    expect("max_workers" not in summary and "sitecustomize" not in summary,
           "the advice names the wrong knob or the hook: %s" % summary, proc)
    return "truth: 80 clients, p99 %.0f ms, max %.0f ms over %.1f s; report: %s, queue wait max %.0f ms" % (
        p99 * 1e3, worst * 1e3, wall, pool_line(pool), qmax)


@test("real_pool_twisted_healthy")
def test_twisted_healthy(cfg, tmpdir):
    return healthy_server(cfg, tmpdir, "py_twisted_threads.py", 5, 30, "twisted", 10)
