"""End-to-end tests of the dump file itself (issue 13), on real programs:

- processes killed ~2 ms after start leave no file the analyzer rejects;
- a FIFO planted at the dump path or at /tmp/perf-PID.map hangs nothing;
- two processes with the same pid (pid 1 of two pid namespaces) sharing a
  dump directory each keep their own dump;
- nginx run as root with `user nobody;`: each worker records (created before
  it drops privileges) and is titled "nginx: worker process";
- a short clean recording is compacted to well under 1 MiB and reports the
  same stall.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import time

from e2e_lib import (
    Fail, Proc, Skip, clean_env, dumps_in, expect, free_port, json_report, python_for_minor, run_cmd,
    start_target, target, test, wait_port)

from test_real_servers import need


def preload_env(cfg, output, threshold=20, **extra):
    return clean_env(LD_PRELOAD=cfg.preload, STALLTRACE_OUTPUT=output,
                     STALLTRACE_THRESHOLD_MS=str(threshold), **extra)


def stalls_ms(proc):
    return sorted(round(s["duration_ms"]) for s in proc["stalls"])


def truth_ms(lines):
    return [float(l.split()[1]) for l in lines if l.startswith("STALL-MS")]


@test("dump_killed_during_startup")
def t_killed_during_startup(cfg, tmpdir):
    python, _ = python_for_minor(11)
    env = preload_env(cfg, os.path.join(tmpdir, "k.%p.dump"))
    # Kill moments spread over the recorder's start-up (creating, allocating
    # and filling the file takes a few ms), on a small C program and CPython:
    # the early ones find an all-zero or half-written file if it has its name.
    for i in range(40):
        argv = ["sleep", "5"] if i % 2 == 0 else [python, "-c", "import time; time.sleep(5)"]
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep((0.5, 1, 2, 3, 5, 8, 12, 20)[i % 8] / 1000.0)
        p.kill()
        p.wait()
    files = sorted(os.listdir(tmpdir))
    rejected = []
    for name in files:
        rc, _, err = run_cmd([cfg.stalltrace, "report", "--format", "json", os.path.join(tmpdir, name)])
        if rc != 0:
            rejected.append("%s (%d bytes): %s" % (name, os.path.getsize(os.path.join(tmpdir, name)),
                                                  err.strip()[:120]))
    expect(not rejected, "%d of %d files left by killed processes are rejected: %s"
           % (len(rejected), len(files), rejected[:4]))
    expect(files, "no killed process left a dump: the kills all came too early to test anything")
    return "40 kills 0.5-20 ms after start: %d dumps left, all readable" % len(files)


@test("dump_fifo_planted")
def t_fifo_planted(cfg, tmpdir):
    python, _ = python_for_minor(11)
    planted = os.path.join(tmpdir, "planted.dump")
    os.mkfifo(planted)
    p = Proc([python, target("py_dumpfile.py"), "60", "0.4"], env=preload_env(cfg, planted))
    try:
        rc = p.wait(20)
    finally:
        p.close()
    expect(rc == 0 and "DONE" in p.out, "the target did not run with a FIFO at its dump path (%s)%s"
           % (rc, p.tail()))
    side = os.path.join(tmpdir, "planted.1.dump")
    expect(os.path.exists(side), "no planted.1.dump beside the FIFO: %s" % os.listdir(tmpdir))
    expect(stat.S_ISFIFO(os.stat(planted).st_mode), "the FIFO was removed")
    proc = json_report(cfg, side)["processes"][0]
    expect(any(s >= 50 for s in stalls_ms(proc)), "planted.1.dump lacks the 60 ms stall: %s"
           % stalls_ms(proc))

    # A FIFO at /tmp/perf-PID.map, planted while the process runs: read at exit.
    go = os.path.join(tmpdir, "go")
    p = Proc([python, target("py_dumpfile.py"), "60", "0.4", go],
             env=preload_env(cfg, os.path.join(tmpdir, "m.%p.dump")))
    perf_map = None
    try:
        pid = int(p.wait_for_line(r"^PID \d+", 20).split()[1])
        perf_map = "/tmp/perf-%d.map" % pid
        if os.path.lexists(perf_map):
            os.unlink(perf_map)
        os.mkfifo(perf_map)
        open(go, "w").close()
        t0 = time.monotonic()
        rc = p.wait(20)
        took = time.monotonic() - t0
    finally:
        p.close()
        if perf_map and os.path.lexists(perf_map):
            os.unlink(perf_map)
    expect(rc == 0 and "DONE" in p.out, "the target did not exit with a FIFO at %s (%s)%s"
           % (perf_map, rc, p.tail()))
    dumps = [d for d in dumps_in(tmpdir) if os.path.basename(d).startswith("m.")]
    expect(len(dumps) == 1, "expected the target's dump, found %s" % dumps)
    proc = json_report(cfg, dumps[0])["processes"][0]
    expect(any(s >= 50 for s in stalls_ms(proc)), "the dump lacks the 60 ms stall: %s" % stalls_ms(proc))
    return "FIFO at the dump path: written as planted.1.dump; FIFO at %s: exit in %.1f s" % (
        perf_map, took)


@test("dump_same_pid_two_namespaces")
def t_same_pid(cfg, tmpdir):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare(1) for pid namespaces")
    rc, out, _ = run_cmd(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$"])
    if rc != 0 or out.strip() != "1":
        raise Skip("cannot create a pid namespace here: %s" % out)
    python, _ = python_for_minor(11)
    go = os.path.join(tmpdir, "go")
    output = os.path.join(tmpdir, "ns.%p.dump")
    procs = []
    try:
        # Both are pid 1; the first has created its (still empty) dump when the second starts.
        for stall in (100, 160):
            procs.append(Proc(["unshare", "--pid", "--fork", "--mount-proc", "env",
                               "LD_PRELOAD=" + cfg.preload, "STALLTRACE_OUTPUT=" + output,
                               "STALLTRACE_THRESHOLD_MS=20", python, target("py_dumpfile.py"),
                               str(stall), "0.6", go], env=clean_env()))
            line = procs[-1].wait_for_line(r"^PID \d+", 20)
            expect(line == "PID 1", "not pid 1 in its namespace: %s" % line)
            time.sleep(0.2)
        open(go, "w").close()
        for p in procs:
            rc = p.wait(30)
            expect(rc == 0 and "DONE" in p.out, "a namespaced target failed (%s)%s" % (rc, p.tail()))
    finally:
        for p in procs:
            p.close()
    truths = [round(truth_ms(p.out)[0]) for p in procs]
    got = []
    for d in dumps_in(tmpdir):
        for x in json_report(cfg, d)["processes"]:
            got.append((os.path.basename(d), [s for s in stalls_ms(x) if s >= 50]))
    expect(len(got) == 2, "expected 2 dumps (one per pid 1), found %s" % got)
    found = sorted(s for _, ss in got for s in ss)
    expect(len(found) == 2 and all(abs(f - t) <= 25 for f, t in zip(found, sorted(truths))),
           "stalls %s, truth %s" % (got, truths))
    return "two pid-1 processes: %s (truth %s ms)" % (got, truths)


NGINX_NOBODY_CONF = """
user nobody nogroup;
worker_processes 2;
master_process on;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(dir)s/tmp;
  server {
    listen 127.0.0.1:%(port)d;
    root %(www)s;
    location / { }
  }
}
"""


@test("dump_nginx_drops_privileges")
def t_nginx_nobody(cfg, tmpdir):
    need("nginx", "wrk")
    if os.geteuid() != 0:
        raise Skip("nginx dropping privileges to nobody needs root")
    www = os.path.join(tmpdir, "www")
    dumps = os.path.join(tmpdir, "dumps")
    os.mkdir(www)
    os.mkdir(dumps, 0o700)
    os.chmod(tmpdir, 0o711)
    os.chmod(www, 0o755)
    with open(os.path.join(www, "index.html"), "w") as fh:
        fh.write("hello\n" * 20)
    os.chmod(os.path.join(www, "index.html"), 0o644)
    port = free_port()
    conf = os.path.join(tmpdir, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX_NOBODY_CONF % {"dir": tmpdir, "www": www, "port": port})
    argv = [cfg.stalltrace, "run", "-o", os.path.join(dumps, "%p.dump"), "--threshold", "50", "--",
            "nginx", "-c", conf, "-p", tmpdir]
    p = Proc(argv, cwd=tmpdir, env=clean_env())
    try:
        wait_port(port, p)
        rc, out, err = run_cmd(["wrk", "-t2", "-c32", "-d3s", "http://127.0.0.1:%d/index.html" % port],
                               timeout=60)
        expect(rc == 0, "wrk: %s" % err)
        with open(os.path.join(tmpdir, "nginx.pid")) as fh:
            os.kill(int(fh.read().strip()), signal.SIGTERM)
        p.wait(30)
    finally:
        p.close()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    expect(not non2xx, "nginx's workers could not serve the page: %s" % out[-300:])
    procs = []
    for d in dumps_in(dumps):
        expect(os.stat(d).st_mode & 0o777 == 0o600, "%s has mode %o" % (d, os.stat(d).st_mode & 0o777))
        for x in json_report(cfg, d)["processes"]:
            procs.append(x)
    titles = [" ".join(x.get("argv") or []) for x in procs]
    workers = [x for x in procs if " ".join(x.get("argv") or []) == "nginx: worker process"]
    expect(len(workers) == 2, "expected 2 dumps titled 'nginx: worker process', found %s" % titles)
    for w in workers:
        loops = [t for t in w["threads"] if t["role"] == "loop"]
        expect(loops and loops[0]["loop"]["iterations"] > 100,
               "worker %d has no busy loop thread: %s" % (w["pid"], [t["role"] for t in w["threads"]]))
    iters = [[t for t in w["threads"] if t["role"] == "loop"][0]["loop"]["iterations"] for w in workers]
    return "%s; 2 workers recorded as nobody, titled 'nginx: worker process', loop iterations %s" % (
        re.search(r"Requests/sec:\s*([\d.]+)", out).group(0), iters)


@test("dump_compacted_on_exit")
def t_compacted(cfg, tmpdir):
    python, _ = python_for_minor(11)
    p = start_target(cfg, tmpdir, [python, target("py_dumpfile.py"), "120", "2"])
    try:
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0 and "DONE" in p.out, "target failed (%s)%s" % (rc, p.tail()))
    truth = truth_ms(p.out)
    dumps = dumps_in(tmpdir)
    expect(len(dumps) == 1, "expected one dump, found %s" % dumps)
    st = os.stat(dumps[0])
    size, on_disk = st.st_size, st.st_blocks * 512
    expect(size < 1 << 20 and on_disk < 1 << 20, "a 2 s recording with one stall takes %d bytes "
           "(%d on disk), expected well under 1 MiB" % (size, on_disk))
    proc = json_report(cfg, dumps[0])["processes"][0]
    expect(proc["complete"] and proc["dropped_events"] == 0,
           "the compacted dump is incomplete or lost events: %s"
           % {k: proc.get(k) for k in ("complete", "dropped_events")})
    got = [s for s in stalls_ms(proc) if s >= 50]
    expect(len(got) == 1 and abs(got[0] - truth[0]) <= 25,
           "stalls %s, the target measured %s ms" % (got, truth))
    return "2 s run: dump %d bytes (%d on disk); stall %d ms, truth %.0f ms" % (
        size, on_disk, got[0], truth[0])
