"""End-to-end test on Debian's haproxy, a third-party C proxy whose loop
threads nobody here wrote, recorded under `stalltrace run` under real load.

- real_haproxy_healthy: haproxy (nbthread 2, targets/haproxy.cfg) proxies
  wrk's requests to an nginx backend (not recorded) for 4 s.  Its two
  threads are found as loops (their epoll_wait), and the report is healthy:
  no stall, no diagnosis, "Nothing to fix".  wrk's client latencies are the
  truth printed beside it; the one stall allowed is the loop waiting for a
  CPU that other processes held (cpu_starvation), when wrk saw it too.
"""

import os
import re
import shutil
import signal

from e2e_lib import (Proc, Skip, clean_env, dumps_in, expect, free_port, healthy_under_load, json_report, run_cmd,
                     self_test, start_target, target, test, wait_port)

THRESHOLD_MS = 20

BACKEND_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/backend.pid;
error_log %(dir)s/backend-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:%(port)d;
    location / { return 200 "hello from the backend\\n"; }
  }
}
"""


def need(*binaries):
    for b in binaries:
        if not shutil.which(b):
            raise Skip("no %s (bash scripts/setup.sh installs it)" % b)


def start_backend(tmpdir):
    """nginx answering every request itself, without the recorder."""
    port = free_port()
    conf = os.path.join(tmpdir, "backend.conf")
    with open(conf, "w") as fh:
        fh.write(BACKEND_CONF % {"dir": tmpdir, "port": port})
    p = Proc(["nginx", "-c", conf, "-p", tmpdir], env=clean_env())
    wait_port(port, p)
    return p, port


def child_of(pid):
    """The process `stalltrace run` (pid) started: it forwards only INT and TERM."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
        kids = fh.read().split()
    expect(len(kids) == 1, "stalltrace run has %d children, expected haproxy" % len(kids))
    return int(kids[0])


def wrk_figures(out):
    """Requests/sec and the latency quantiles wrk printed, in ms."""
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    q = {k: float(v) * unit[u] for k, v, u in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    mx = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    expect(rate and "50" in q and "99" in q and mx, "wrk printed no figures: %s" % out[-400:])
    return float(rate.group(1)), q["50"], q["99"], float(mx.group(1)) * unit[mx.group(2)]


@test("real_haproxy_healthy")
def t_haproxy_healthy(cfg, tmpdir):
    need("haproxy", "nginx", "wrk")
    backend, backend_port = start_backend(tmpdir)
    try:
        port = free_port()
        conf = os.path.join(tmpdir, "haproxy.cfg")
        with open(target("haproxy.cfg")) as src, open(conf, "w") as fh:
            fh.write(src.read() % {"port": port, "backend_port": backend_port})
        p = start_target(cfg, tmpdir, ["haproxy", "-db", "-f", conf], threshold=THRESHOLD_MS)
        try:
            wait_port(port, p)
            rc, out, err = run_cmd(["wrk", "-t2", "-c32", "-d4s", "--latency", "http://127.0.0.1:%d/" % port],
                                   timeout=60)
            expect(rc == 0, "wrk: %s" % err)
            # SIGUSR1: haproxy's soft stop, it exits by itself once idle.
            os.kill(child_of(p.popen.pid), signal.SIGUSR1)
            rc = p.wait(30)
        finally:
            p.close()
    finally:
        backend.close()
    expect(rc == 0, "stalltrace run of haproxy exited %r%s" % (rc, p.tail()))
    rate, p50, p99, worst = wrk_figures(out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    expect(not errors, "haproxy answered %s requests with an error" % (errors and errors.group(1)))
    dumps = dumps_in(tmpdir)
    expect(len(dumps) == 1, "%d dumps, expected haproxy's one" % len(dumps))
    proc = json_report(cfg, dumps[0])["processes"][0]
    expect(proc.get("complete"), "haproxy's recording is incomplete after its soft stop", proc)
    loops = [t for t in proc["threads"] if t["role"] == "loop"]
    expect(len(loops) == 2, "%d loop threads, expected haproxy's nbthread 2: %s"
           % (len(loops), [(t["tid"], t["role"]) for t in proc["threads"]]), proc)
    served = sum(t["loop"]["iterations"] for t in loops)
    expect(served >= 1000, "%d loop iterations in all under wrk: the loops were not the ones serving" % served, proc)
    starved = healthy_under_load(proc, worst, "haproxy")
    if not starved:
        rc, text, err = run_cmd([cfg.stalltrace, "report", dumps[0]], timeout=60)
        expect(rc == 0 and "Nothing to fix" in text, "the text report of a healthy haproxy: %s"
               % (text + err)[-600:])
    return "truth (wrk): %.0f req/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms; report: %d loops, %d iterations, " \
        "max %s ms; %s" % (rate, p50, p99, worst, len(loops), served,
                                                 "/".join("%.1f" % t["loop"]["max_ms"] for t in loops), starved)


@self_test
def healthy_under_load_self_test(case):
    clean = {"stalls": [], "diagnosis": []}
    starved = {"stalls": [{"duration_ms": 135.0, "runq_ms": 134.0, "call": None}],
               "diagnosis": [{"culprit": "cpu_starvation", "summary": "waiting for a CPU"}]}
    blocked = {"stalls": [{"duration_ms": 135.0, "runq_ms": 2.0, "call": "usleep"}],
               "diagnosis": [{"culprit": "event_loop_blocking", "summary": "blocked"}]}
    case("healthy: no stall", lambda p: healthy_under_load(p, 10.0, "x"), clean, True)
    case("healthy: a CPU wait the clients saw", lambda p: healthy_under_load(p, 136.0, "x"), starved, True)
    case("healthy: a CPU wait the clients did not see", lambda p: healthy_under_load(p, 12.0, "x"), starved, False)
    case("healthy: a blocked loop", lambda p: healthy_under_load(p, 136.0, "x"), blocked, False)
    case("healthy: a diagnosis without a stall", lambda p: healthy_under_load(p, 10.0, "x"),
         {"stalls": [], "diagnosis": blocked["diagnosis"]}, False)
