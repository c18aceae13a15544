"""End-to-end tests of the live view (issue 8): `stalltrace top` and
`stalltrace metrics` read the dump of a process while it runs.

The target is a real asyncio line server (targets/py_live_server.py) under
`stalltrace run --threshold 50`, kept busy by a load client in the test that
asks for a 200 ms time.sleep on the loop every 0.4 s:

- live_top: `top PID --once` twice, a second apart: the loop's iterations
  and stall count grow, the last-interval utilization is measured, and the
  stall shows with clock_nanosleep; after the end `top DUMP --once` says the
  recording is complete; `top` of a missing process exits 2 with one line.
- live_metrics: `metrics --listen 127.0.0.1:0 GLOB` scraped twice:
  text/plain version 0.0.4, the loop's iteration counter grows between the
  scrapes; other paths 404, other methods 405; SIGTERM stops it with 0.
- live_metrics_promtool: both scrapes pass `promtool check metrics`
  (Debian package prometheus).
"""

import http.client
import os
import re
import shutil
import signal
import socket
import threading
import time

from e2e_lib import (
    Fail, Proc, Skip, clean_env, default_python, expect, run_cmd, start_target, target, test)

SERVE_S = 40         # the most the target serves; the test stops it sooner
SLOW_EVERY_S = 0.4   # the load client asks for a 200 ms stall this often


class LoadClient:
    """Requests on one connection as fast as answers come, and a "slow" one
    (a 200 ms time.sleep in the handler) every SLOW_EVERY_S."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.requests = 0
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                f = s.makefile("rwb")
                last_slow = time.monotonic()
                while not self.stop.is_set():
                    slow = time.monotonic() - last_slow >= SLOW_EVERY_S
                    if slow:
                        last_slow = time.monotonic()
                    f.write(b"slow\n" if slow else b"x\n")
                    f.flush()
                    if not f.readline():
                        break
                    self.requests += 1
        except OSError as e:
            if not self.stop.is_set():
                self.error = e

    def close(self):
        self.stop.set()
        self.thread.join(10)


class LiveServer:
    """The target under `stalltrace run`, with its load client running."""

    def __init__(self, cfg, tmpdir):
        self.proc = start_target(cfg, tmpdir, [default_python(), target("py_live_server.py"), str(SERVE_S)])
        self.client = None
        try:
            line = self.proc.wait_for_line(r"^LISTENING port=\d+ pid=\d+", 30)
            m = re.search(r"port=(\d+) pid=(\d+)", line)
            self.port, self.pid = int(m.group(1)), int(m.group(2))
            self.client = LoadClient(self.port)
        except BaseException:
            self.close()
            raise

    def finish(self):
        """Stop the load and ask the target to end; its exit status."""
        if self.client:
            self.client.close()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"quit\n")
            s.recv(16)
        return self.proc.wait(30)

    def close(self):
        if self.client:
            self.client.close()
        self.proc.close()


def top_once(cfg, arg, interval="0.5"):
    rc, out, err = run_cmd([cfg.stalltrace, "top", str(arg), "--once", "--interval", interval], timeout=30)
    expect(rc == 0, "top %s --once exited %d: %s" % (arg, rc, err.strip()[:400]))
    expect("\033[" not in out, "top wrote terminal escapes to a pipe")
    return out


def loop_row(out, pid):
    """(util, iterations, stalls) of the loop thread `pid` in a top frame."""
    m = re.search(r"^\s+%d \S+\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+\S+ \S+\s+\S+ \S+\s+(\d+)" % pid, out, re.M)
    expect(m, "no loop thread row for %d in the top frame:\n%s" % (pid, out))
    return m.group(1), int(m.group(4)), int(m.group(5))


def stall_lines(out):
    part = out.split("RECENT STALLS", 1)
    expect(len(part) == 2, "no RECENT STALLS section:\n%s" % out)
    section = part[1].split("\n\n", 1)[0]
    return [l for l in section.splitlines()[1:] if re.match(r"^\s+\d+\.\d+s ", l)]


@test("live_top")
def t_live_top(cfg, tmpdir):
    srv = LiveServer(cfg, tmpdir)
    try:
        time.sleep(1.0)
        first = top_once(cfg, srv.pid)
        time.sleep(1.0)
        second = top_once(cfg, srv.pid)
        dump = re.search(r"^dump (\S+)", second, re.M)
        expect(dump and os.path.exists(dump.group(1)), "top does not name an existing dump:\n%s" % second)
        expect("live" in second.splitlines()[1], "the frame does not say the recording is live:\n%s" % second)
        util1, iters1, stalls1 = loop_row(first, srv.pid)
        util2, iters2, stalls2 = loop_row(second, srv.pid)
        expect(iters2 > iters1, "iterations did not grow between two frames a second apart: %d then %d"
               % (iters1, iters2))
        expect(stalls2 > stalls1, "the stall count did not grow: %d then %d" % (stalls1, stalls2))
        expect(re.match(r"\d+\.\d%$", util2), "no last-interval utilization in the second frame: %r" % util2)
        stalls = stall_lines(second)
        expect(any("clock_nanosleep" in l for l in stalls),
               "no clock_nanosleep stall among the recent stalls:\n%s" % second)
        named = [l for l in stalls if "py_live_server.py" in l]
        expect(srv.client.error is None, "the load client failed: %s" % srv.client.error)
        rc = srv.finish()
        expect(rc == 0, "stalltrace run exited %d%s" % (rc, srv.proc.tail()))
    finally:
        srv.close()
    final = top_once(cfg, dump.group(1))
    expect("recording complete" in final, "top of the finished dump does not say complete:\n%s" % final)
    rc, out, err = run_cmd([cfg.stalltrace, "top", "999999999", "--once"], timeout=30)
    expect(rc == 2 and len(err.strip().splitlines()) == 1 and "no process" in err,
           "top of a missing process: exit %d, stderr %r (expected 2 and one line)" % (rc, err))
    return "iterations %d -> %d, stalls %d -> %d, util %s; %s" % (
        iters1, iters2, stalls1, stalls2, util2,
        "stall named in handle (py_live_server.py)" if named else "stall in clock_nanosleep")


def scrape(port, method="GET", path="/metrics"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def iterations_of(body, pid):
    m = re.search(r'^stalltrace_loop_iterations_total\{pid="%d",tid="%d"[^}]*\} (\S+)$' % (pid, pid), body, re.M)
    expect(m, "no stalltrace_loop_iterations_total for pid %d in the scrape:\n%s" % (pid, body[:1500]))
    return float(m.group(1))


@test("live_metrics")
def t_live_metrics(cfg, tmpdir):
    srv = LiveServer(cfg, tmpdir)
    metrics = None
    try:
        metrics = Proc([cfg.stalltrace, "metrics", "--listen", "127.0.0.1:0", os.path.join(tmpdir, "*.dump")],
                       env=clean_env())
        line = metrics.wait_for_line(r"^listening on ", 20)
        m = re.match(r"^listening on 127\.0\.0\.1:(\d+)$", line)
        expect(m and int(m.group(1)) > 0, "metrics printed %r, expected 'listening on 127.0.0.1:PORT'" % line)
        port = int(m.group(1))
        time.sleep(1.0)
        bodies = []
        for i in range(2):
            if i:
                time.sleep(1.0)
            status, ctype, body = scrape(port)
            expect(status == 200, "GET /metrics answered %d: %s" % (status, body[:300]))
            expect(ctype.startswith("text/plain; version=0.0.4"), "Content-Type is %r" % ctype)
            bodies.append(body)
        n1, n2 = iterations_of(bodies[0], srv.pid), iterations_of(bodies[1], srv.pid)
        expect(n2 > n1, "stalltrace_loop_iterations_total did not grow between scrapes: %g then %g" % (n1, n2))
        expect('stalltrace_recording_complete{pid="%d"} 0' % srv.pid in bodies[1],
               "the live dump is not exposed as incomplete")
        for method, path, want in (("GET", "/", 404), ("GET", "/metrics/x", 404), ("POST", "/metrics", 405),
                                   ("HEAD", "/metrics", 405)):
            status, _, _ = scrape(port, method, path)
            expect(status == want, "%s %s answered %d, expected %d" % (method, path, status, want))
        cfg.cache["live_scrapes"] = bodies
        rc = srv.finish()
        expect(rc == 0, "stalltrace run exited %d%s" % (rc, srv.proc.tail()))
        # The finished dump stays exposed, now complete.
        status, _, body = scrape(port)
        expect(status == 200 and 'stalltrace_recording_complete{pid="%d"} 1' % srv.pid in body,
               "after the end the scrape does not show the dump as complete:\n%s" % body[:800])
        os.kill(metrics.popen.pid, signal.SIGTERM)
        rc = metrics.wait(10)
        expect(rc == 0, "metrics exited %d on SIGTERM, expected 0%s" % (rc, metrics.tail()))
    finally:
        if metrics:
            metrics.close()
        srv.close()
    return "iterations %g -> %g between scrapes, 404/405 refused, SIGTERM -> 0" % (n1, n2)


@test("live_metrics_promtool")
def t_live_metrics_promtool(cfg, tmpdir):
    bodies = cfg.cache.get("live_scrapes")
    if not bodies:
        raise Skip("needs live_metrics' scrapes")
    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool is not installed (Debian package prometheus)")
    for i, body in enumerate(bodies):
        path = os.path.join(tmpdir, "scrape%d.prom" % i)
        with open(path, "w") as fh:
            fh.write(body)
        rc, out, err = run_cmd(["sh", "-c", '"$0" check metrics < "$1"', promtool, path])
        if rc != 0:
            raise Fail("promtool check metrics rejects scrape %d (%d): %s" % (i + 1, rc, (out + err)[:600]))
    return "both scrapes pass promtool check metrics"
