"""End-to-end tests of who fed a saturated pool (issue 16): pools[].fed_by.

- node_pool_route_fed: an HTTP route (handleUpload -> deriveKey) of a Node
  server makes 4 crypto.pbkdf2 calls per request; 4 requests at once put 16
  jobs on libuv's pool of 4, 12 of them queue. The pool names the JS
  submitter (a JIT frame in node_pool_route.js), counts no more submissions
  than the route made, and its queue wait is an estimate (exact: false)
  no longer than the phase the program timed.
- node_pool_route_healthy: 2 clients back to back, one short pbkdf2 per
  request: 2 jobs at most on 4 workers, no pool names a feeder.
- c_pool_fed: c_pool_server's main thread signals 9 jobs to 3 workers: the 6
  that queue (and the one that took the last idle worker) are named from
  main (c_pool_server.c); the estimated queue wait against the rounds the
  jobs really waited.
"""

import re
import shutil

from e2e_lib import Skip, c_target_binary, expect, run_to_end, target, test

POOL = {"UV_THREADPOOL_SIZE": "4"}


def node_or_skip():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node (apt-get install nodejs)")
    return node


def route_run(cfg, tmpdir, mode):
    proc, _ = run_to_end(cfg, tmpdir, [node_or_skip(), target("node_pool_route.js"), mode],
                         "node_pool_route.js", env=POOL)
    done = [re.search(r"jobs=(\d+) queued=(\d+) phase_s=([0-9.]+)", l) for l in proc["_stdout"]
            if l.startswith("ROUTE-DONE")]
    expect(done and done[-1], "the target did not print ROUTE-DONE: %r" % proc["_stdout"][-3:])
    m = done[-1]
    truth = [re.search(r"mean_ms=([0-9.]+) max_ms=([0-9.]+)", l) for l in proc["_stdout"] if l.startswith("ROUTE-WAITS")]
    proc["_waits"] = (float(truth[-1].group(1)), float(truth[-1].group(2))) if truth and truth[-1] else None
    return proc, int(m.group(1)), int(m.group(2)), float(m.group(3))


def js_frames_in(stack, script):
    return [f for f in stack or [] if f.get("kind") == "jit" and str(f.get("file") or "").endswith(script)]


@test("node_pool_route_fed")
def t_node_pool_route_fed(cfg, tmpdir):
    proc, jobs, queued, phase_s = route_run(cfg, tmpdir, "saturated")
    pools = proc.get("pools") or []
    expect(pools, "no pool reported", proc)
    pool = max(pools, key=lambda p: p.get("saturated_s") or 0.0)
    expect(pool.get("kind") == "libuv", "the most saturated pool is %r, expected libuv" % pool.get("kind"), proc)
    fed = pool.get("fed_by") or []
    expect(fed, "the saturated libuv pool names no feeder (%d jobs, %d queued)" % (jobs, queued), proc)
    named = [f for f in fed if js_frames_in(f.get("stack"), "node_pool_route.js")]
    expect(named, "no feeder's stack has a JS frame of node_pool_route.js: %r"
           % [(f.get("where"), [x.get("function") for x in (f.get("stack") or [])][:12]) for f in fed], proc)
    top = max(named, key=lambda f: f.get("count") or 0)
    expect("node_pool_route.js" in str(top.get("where")),
           "the JS submitter's group is said as %r, expected a place in node_pool_route.js" % top.get("where"), proc)
    total = pool.get("fed_total") or 0
    # Seen: the queued ones whose wake came before a worker ran, and the
    # one that took the last idle worker; never more than the route made.
    expect(1 <= total <= queued + 1, "fed_total %r, expected 1..%d (%d jobs, %d queued)"
           % (total, queued + 1, jobs, queued), proc)
    w = pool.get("queue_wait_ms")
    truth_mean, truth_max = proc["_waits"] or (0.0, 0.0)
    est = "unknown (only the wake that took the last worker was seen)"
    if w is not None:
        expect(w.get("exact") is False, "libuv's queue wait claims to be exact: %r" % w, proc)
        expect(0 <= (w.get("max") or 0) <= phase_s * 1e3 * 1.1 + 100,
               "queue wait max %r ms, longer than the %.2f s phase" % (w.get("max"), phase_s), proc)
        mean = (w.get("total") or 0) / max(w.get("count") or 1, 1)
        # Only the queued jobs seen have an estimate: those of the burst,
        # the first to queue; their mean is no more than all of theirs.
        expect(mean <= truth_mean * 1.5 + 100, "queue wait mean %.0f ms, the program's queued jobs waited "
               "%.0f ms on average" % (mean, truth_mean), proc)
        est = "estimate mean %.0f ms, max %.0f ms over %d" % (mean, w.get("max") or 0, w.get("count") or 0)
    return "%d jobs (%d queued) in %.2f s: %d seen, top %d from %s; queue wait %s (truth mean %.0f ms, max %.0f ms)" % (
        jobs, queued, phase_s, total, top.get("count"), top.get("where"), est, truth_mean, truth_max)


@test("node_pool_route_healthy")
def t_node_pool_route_healthy(cfg, tmpdir):
    proc, jobs, _, phase_s = route_run(cfg, tmpdir, "healthy")
    for pool in proc.get("pools") or []:
        expect(not pool.get("fed_by") and not pool.get("fed_total"),
               "pool %r (%s) names feeders in a healthy run: %r"
               % (pool.get("id"), pool.get("kind"), [(f.get("where"), f.get("count")) for f in pool["fed_by"]]), proc)
    culprits = [d.get("culprit") for d in proc.get("diagnosis") or []]
    expect("thread_pool_exhaustion" not in culprits, "diagnosis %r in a healthy run" % culprits, proc)
    return "%d jobs, 2 at a time, in %.2f s: no feeder named" % (jobs, phase_s)


@test("c_pool_fed")
def t_c_pool_fed(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_pool_server", ["-pthread"])
    proc, _ = run_to_end(cfg, tmpdir, [binary], "c_pool_server")
    pools = [p for p in proc.get("pools") or [] if p.get("threads") == 3]
    expect(len(pools) == 1, "expected one pool of 3, got %r" % [p.get("threads") for p in proc.get("pools") or []], proc)
    pool = pools[0]
    fed = pool.get("fed_by") or []
    expect(fed and str(fed[0].get("where") or "").startswith("main (c_pool_server.c:"),
           "the pool's feeder is %r, expected main (c_pool_server.c:N)" % [f.get("where") for f in fed], proc)
    # Truth: 9 jobs on 3 idle workers, all signalled before any runs: 6 queue,
    # and the third wake took the last idle worker.
    total = pool.get("fed_total")
    expect(total in (6, 7), "fed_total %r, expected 6 queued (+1: the wake that took the last worker)" % total, proc)
    w = pool.get("queue_wait_ms") or {}
    expect(w.get("exact") is False and w.get("count") == 6,
           "queue wait %r, expected an estimate over the 6 queued jobs" % w, proc)
    # Truth: three queued jobs waited one 100 ms round, three waited two
    # (mean 150 ms, max 200 ms); the estimate spreads their turns evenly up
    # to the drain at the third round's end (max 6/7 of 300 ms).
    mean = (w.get("total") or 0) / 6
    expect(100 <= mean <= 250, "queue wait mean %.0f ms, expected about 150 ms (truth)" % mean, proc)
    expect(150 <= (w.get("max") or 0) <= 450, "queue wait max %r ms, expected 200..300 ms" % w.get("max"), proc)
    return ("6 jobs queued (truth), %d seen from %s; queue wait estimate mean %.0f ms, max %.0f ms "
            "(truth mean 150 ms, max 200 ms)%s" % (total, fed[0].get("where"), mean, w.get("max"), note))
