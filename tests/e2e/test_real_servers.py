"""End-to-end tests on third-party C servers (issue 12): redis-server and
nginx from Debian, recorded under `stalltrace run` as a user would.

- redis DEBUG SLEEP 0.2, twice: two 200 ms stalls in nanosleep at
  debugCommand, as redis's own SLOWLOG measures them; the frames are named
  redis-server (as it was run), not redis-check-rdb (what it links to).
- redis under redis-benchmark: no stall, no diagnosis.
- nginx (master and 2 workers) under wrk: no stall, no diagnosis.
- nginx under wrk while higher-priority CPU hogs hold both cores: the loop
  is held up only by CPU contention, which is what the report must say
  (cpu_starvation), never a blocking call nor the program's CPU work.
"""

import os
import re
import shutil
import subprocess

from e2e_lib import (
    Proc, Skip, clean_env, diagnosis_names, dumps_in, expect, fmt_stack, frame_named, free_port,
    json_report, run_cmd, start_target, test, wait_port)


def need(*binaries):
    for b in binaries:
        if not shutil.which(b):
            raise Skip("no %s (bash scripts/setup.sh installs it)" % b)


def processes(cfg, tmpdir):
    out = []
    for dump in dumps_in(tmpdir):
        for p in json_report(cfg, dump).get("processes") or []:
            p["_dump"] = dump
            out.append(p)
    expect(out, "no dump written in %s" % tmpdir)
    return out


def start_redis(cfg, tmpdir, threshold=50):
    need("redis-server", "redis-cli")
    port = free_port()
    p = start_target(cfg, tmpdir, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", tmpdir,
                                   "--enable-debug-command", "yes"], threshold=threshold)
    wait_port(port, p)
    return p, port


def redis_cli(port, *args):
    rc, out, err = run_cmd(["redis-cli", "-p", str(port)] + list(args), timeout=30)
    expect(rc == 0, "redis-cli %s: %s" % (" ".join(args), err))
    return out


def stop_redis(p, port):
    try:
        run_cmd(["redis-cli", "-p", str(port), "shutdown", "nosave"], timeout=15)
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run of redis-server exited %r%s" % (rc, p.tail()))


@test("real_redis_debug_sleep")
def t_redis_sleep(cfg, tmpdir):
    p, port = start_redis(cfg, tmpdir)
    try:
        redis_cli(port, "slowlog", "reset")
        for _ in range(2):
            redis_cli(port, "debug", "sleep", "0.2")
        # SLOWLOG GET: id, time, duration in microseconds, argv...
        log = redis_cli(port, "slowlog", "get", "10").split("\n")
        truth = [int(log[i + 2]) / 1e3 for i in range(len(log) - 3) if log[i + 3:i + 5] == ["debug", "sleep"]]
    finally:
        stop_redis(p, port)
    expect(len(truth) == 2, "redis's SLOWLOG has %d debug sleeps: %s" % (len(truth), log))
    proc = [x for x in processes(cfg, tmpdir) if "redis-server" in " ".join(x.get("argv") or [])][0]
    stalls = sorted((s for s in proc["stalls"] if s["duration_ms"] >= 100), key=lambda s: s["start_s"])
    expect(len(stalls) == 2, "%d stalls of 100 ms or more, redis slept twice" % len(stalls), proc)
    for s, ms in zip(stalls, truth):
        expect(ms * 0.95 <= s["duration_ms"] <= ms * 1.10 + 5, "stall %.1f ms, SLOWLOG says %.1f ms"
               % (s["duration_ms"], ms), proc)
        expect(s["call"] in ("nanosleep", "clock_nanosleep", "usleep"), "call %r" % s["call"], proc)
        f = frame_named(s["stack"], "debugCommand")
        expect(f, "no debugCommand in %s" % fmt_stack(s["stack"], 12), proc)
        expect(f.get("module") == "redis-server", "debugCommand's module is %r, expected redis-server "
               "(the name it was run as)" % f.get("module"), proc)
    text = " ".join(d["summary"] for d in proc["diagnosis"])
    expect(diagnosis_names(proc)[:1] == ["event_loop_blocking"] and "debugCommand" in text,
           "diagnosis %r" % text, proc)
    return "2 stalls %.1f, %.1f ms (SLOWLOG %.1f, %.1f ms) in %s at debugCommand (redis-server)" % (
        stalls[0]["duration_ms"], stalls[1]["duration_ms"], truth[0], truth[1], stalls[0]["call"])


@test("real_redis_healthy")
def t_redis_healthy(cfg, tmpdir):
    need("redis-benchmark")
    p, port = start_redis(cfg, tmpdir)
    try:
        rc, out, err = run_cmd(["redis-benchmark", "-p", str(port), "-q", "-n", "60000", "-c", "20",
                                "-t", "set,get,lpush,lpop"], timeout=120)
        expect(rc == 0, "redis-benchmark: %s" % err)
    finally:
        stop_redis(p, port)
    proc = [x for x in processes(cfg, tmpdir) if "redis-server" in " ".join(x.get("argv") or [])][0]
    expect(not proc["stalls"], "healthy redis stalled: %s" % [(s["duration_ms"], s["call"]) for s in proc["stalls"]],
           proc)
    expect(not proc["diagnosis"], "healthy redis got a diagnosis: %s" % proc["diagnosis"], proc)
    rates = re.findall(r"(\w+): ([\d.]+) requests per second", out)
    return "redis-benchmark %s; no stall, no diagnosis" % ", ".join("%s %s/s" % r for r in rates)


NGINX_CONF = """
user root;
worker_processes 2;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:%(port)d;
    root %(dir)s;
    location / { }
  }
}
"""


def nginx_under_wrk(cfg, tmpdir, threshold, hogs=0):
    need("nginx", "wrk")
    if os.geteuid() != 0:
        raise Skip("nginx's workers as root need root (this test does not exercise privilege drops)")
    port = free_port()
    with open(os.path.join(tmpdir, "index.html"), "w") as fh:
        fh.write("hello\n" * 20)
    conf = os.path.join(tmpdir, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX_CONF % {"dir": tmpdir, "port": port})
    p = start_target(cfg, tmpdir, ["nginx", "-c", conf, "-p", tmpdir], threshold=threshold)
    hog_procs = []
    try:
        wait_port(port, p)
        # CPU hogs at a higher priority than the server: both cores busy elsewhere.
        for _ in range(hogs):
            hog_procs.append(Proc(["nice", "-n", "-5", "sh", "-c", "while :; do :; done"], env=clean_env()))
        rc, out, err = run_cmd(["wrk", "-t2", "-c32", "-d4s", "--latency", "http://127.0.0.1:%d/index.html" % port],
                               timeout=60)
        expect(rc == 0, "wrk: %s" % err)
    finally:
        for h in hog_procs:
            h.close()
        try:
            with open(os.path.join(tmpdir, "nginx.pid")) as fh:
                os.kill(int(fh.read().strip()), 15)
            p.wait(30)
        except (OSError, ValueError):
            pass
        p.close()
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    workers = [x for x in processes(cfg, tmpdir) if x.get("threads")]
    return workers, "%s req/s, p99 %s" % (m.group(1) if m else "?", p99.group(1) if p99 else "?")


@test("real_nginx_healthy")
def t_nginx_healthy(cfg, tmpdir):
    procs, load = nginx_under_wrk(cfg, tmpdir, threshold=50)
    loops = [t for x in procs for t in x["threads"] if t["role"] == "loop"]
    expect(len(loops) >= 2, "%d loop threads in nginx's dumps, expected its 2 workers" % len(loops))
    for x in procs:
        expect(not x["stalls"], "healthy nginx stalled: %s" % [(s["duration_ms"], s["call"]) for s in x["stalls"]], x)
        expect(not x["diagnosis"], "healthy nginx got a diagnosis: %s" % x["diagnosis"], x)
    return "wrk %s over %d worker loops; no stall, no diagnosis" % (load, len(loops))


@test("real_nginx_busy_machine")
def t_nginx_busy(cfg, tmpdir):
    # The default threshold: at 10 ms an iteration serving a burst of wrk's
    # requests on a cold cache can take that long on the CPU by itself.
    procs, load = nginx_under_wrk(cfg, tmpdir, threshold=20, hogs=4)
    stalls = [s for x in procs for s in x["stalls"]]
    culprits = [n for x in procs for n in diagnosis_names(x)]
    for x in procs:
        for d in x["diagnosis"]:
            expect(d["culprit"] != "event_loop_blocking",
                   "nginx held up by CPU hogs was diagnosed as blocked: %s" % d["summary"], x)
    starved = [s for s in stalls if s["duration_ms"] - (s.get("runq_ms") or 0) < 20]
    if stalls:
        expect("cpu_starvation" in culprits, "%d stalls (%d starved) but no cpu_starvation: %s"
               % (len(stalls), len(starved), culprits))
    return "wrk %s with 4 hogs: %d stalls of 20 ms or more, %d mostly waiting for a CPU; culprits %s" % (
        load, len(stalls), len(starved), sorted(set(culprits)))
