"""End-to-end tests of the readers against hostile files (issue 14): a
FIFO, a 2 GiB sparse file that is not a dump and a dump rewritten while it
is read, next to a real dump of tests/e2e/targets/py_sleep.py.

- hostile_fifo: `report FIFO`, `top --once FIFO` and `top --once PID` with a
  FIFO named stalltrace.PID.dump in the working directory each exit 2 at
  once with one line; `metrics` with a FIFO in its glob still answers with
  the real dump, the FIFO counted as a file it could not read.
- hostile_sparse: with a 2 GiB sparse file in the glob a scrape takes well
  under a second and the server's peak RSS stays small; `report` of that
  file exits 2 with a peak RSS (/usr/bin/time -v) of a few MB.
- hostile_live_once: `report` of a live dump with a 256 MB ring peaks under
  1.5 ring sizes (it is copied once).
- hostile_rewrite: a dump rewritten in place (its bytes, then garbage, then
  truncated) while `report` and scrapes read it: each `report` ends 0 or 2
  with one line, never a crash, and every scrape is answered with 200.
- hostile_stop: SIGTERM in the middle of a render of live dumps with 256 MB
  rings, 20 scrapes waiting, stops `metrics` with 0 within 3.5 s.
"""

import os
import re
import shutil
import signal
import threading
import time

from e2e_lib import (
    Proc, Skip, clean_env, expect, metric_value, proc_status_kb, run_cmd, scrape_metrics,
    start_metrics, start_target, target, test)

GIB = 1 << 30


def real_dump(cfg, tmpdir):
    """A complete dump of py_sleep.py recorded now (tmpdir/recorded.dump)."""
    keep = os.path.join(tmpdir, "recorded.dump")
    if os.path.exists(keep):
        return keep
    rec = os.path.join(tmpdir, "recording")
    os.mkdir(rec)
    p = start_target(cfg, rec, ["/usr/bin/python3", target("py_sleep.py")])
    try:
        rc = p.wait(120)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run of py_sleep.py exited %d%s" % (rc, p.tail()))
    dumps = sorted(f for f in os.listdir(rec) if f.endswith(".dump"))
    expect(len(dumps) == 1, "py_sleep.py left %d dumps: %s" % (len(dumps), dumps))
    os.rename(os.path.join(rec, dumps[0]), keep)
    shutil.rmtree(rec)
    return keep


def place_dump(cfg, tmpdir, name="real.dump"):
    path = os.path.join(tmpdir, name)
    shutil.copyfile(real_dump(cfg, tmpdir), path)
    return path










def timed_cmd(argv, timeout=30):
    """(status, stderr lines, seconds, peak RSS kB) of argv under /usr/bin/time -v."""
    if not os.path.exists("/usr/bin/time"):
        raise Skip("/usr/bin/time is not installed (Debian package time)")
    t0 = time.monotonic()
    rc, out, err = run_cmd(["/usr/bin/time", "-v"] + argv, timeout=timeout)
    took = time.monotonic() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    expect(m, "no peak RSS from /usr/bin/time: %s" % err[-400:])
    own = [l for l in err.splitlines() if l.startswith("stalltrace")]
    return rc, own, took, int(m.group(1))


@test("hostile_fifo")
def t_fifo(cfg, tmpdir):
    fifo = os.path.join(tmpdir, "stalltrace.%d.dump" % os.getpid())
    os.mkfifo(fifo)
    notes = []
    for argv in ([cfg.stalltrace, "report", fifo], [cfg.stalltrace, "top", "--once", fifo]):
        t0 = time.monotonic()
        rc, out, err = run_cmd(argv, timeout=10)
        took = time.monotonic() - t0
        lines = err.strip().splitlines()
        expect(rc == 2 and len(lines) == 1 and "not a regular file" in err and took < 3,
               "%s on a FIFO: exit %d after %.1f s, stderr %r (expected 2 at once, one line)"
               % (argv[1], rc, took, err))
        notes.append("%s %.2f s" % (argv[1], took))

    # A process of ours with no recorder, and a FIFO planted under the name
    # `top PID` looks for in the working directory.
    sleeper = Proc(["/bin/sleep", "30"])
    try:
        planted = os.path.join(tmpdir, "stalltrace.%d.dump" % sleeper.popen.pid)
        os.mkfifo(planted)
        t0 = time.monotonic()
        p = Proc([cfg.stalltrace, "top", "--once", str(sleeper.popen.pid)], env=clean_env(), cwd=tmpdir)
        try:
            rc = p.wait(10)
        finally:
            p.close()
        took = time.monotonic() - t0
        expect(rc == 2 and len(p.err) == 1 and took < 3,
               "top --once PID with a planted FIFO: exit %d after %.1f s, stderr %r" % (rc, took, p.err))
        notes.append("top PID %.2f s" % took)
    finally:
        sleeper.close()

    place_dump(cfg, tmpdir)
    m, port = start_metrics(cfg, os.path.join(tmpdir, "*.dump"))
    try:
        t0 = time.monotonic()
        status, body = scrape_metrics(port, timeout=10)
        took = time.monotonic() - t0
        expect(status == 200, "scrape with FIFOs in the glob answered %d" % status)
        expect(metric_value(body, "stalltrace_scrape_dumps") == 1, "the real dump is not exposed:\n%s" % body[:600])
        expect(metric_value(body, "stalltrace_scrape_dump_errors") == 2, "the FIFOs are not counted as unreadable")
        os.kill(m.popen.pid, signal.SIGTERM)
        rc = m.wait(5)
        expect(rc == 0, "metrics exited %d on SIGTERM" % rc)
        notes.append("scrape %.2f s" % took)
    finally:
        m.close()
    return "exit 2 at once: " + ", ".join(notes) + "; FIFOs skipped by metrics"


@test("hostile_sparse")
def t_sparse(cfg, tmpdir):
    sparse = os.path.join(tmpdir, "big.dump")
    with open(sparse, "wb") as fh:
        fh.write(b"not a dump, just big\n")
        fh.truncate(2 * GIB)
    place_dump(cfg, tmpdir)

    rc, own, took, rss = timed_cmd([cfg.stalltrace, "report", sparse])
    os.unlink(os.path.join(tmpdir, "recorded.dump"))
    expect(rc == 2 and len(own) == 1 and "bad magic" in own[0],
           "report of a 2 GiB non-dump: exit %d, %r" % (rc, own))
    expect(rss < 64 * 1024 and took < 5, "report of a 2 GiB non-dump took %.1f s and %d kB" % (took, rss))

    m, port = start_metrics(cfg, os.path.join(tmpdir, "*.dump"))
    try:
        base = proc_status_kb(m.popen.pid, "VmHWM")
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            status, body = scrape_metrics(port)
            times.append(time.monotonic() - t0)
            expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") == 1 and
                   metric_value(body, "stalltrace_scrape_dump_errors") == 1,
                   "scrape with the sparse file: %d\n%s" % (status, body[:600]))
        peak = proc_status_kb(m.popen.pid, "VmHWM")
        expect(peak < 128 * 1024, "the server's peak RSS with a 2 GiB file in the glob is %d kB" % peak)
        expect(max(times) < 2, "a scrape with a 2 GiB file in the glob took %.2f s" % max(times))
    finally:
        m.close()
    return ("report: exit 2 in %.2f s, peak RSS %d kB; scrapes %.3f s at most, server peak RSS %d kB "
            "(%d kB before)" % (took, rss, max(times), peak, base))


@test("hostile_live_once")
def t_live_once(cfg, tmpdir):
    """A live dump with a 256 MB ring is copied once: report's peak RSS
    stays under 1.5 ring sizes (two copies were 2 ring sizes)."""
    ring_mb = 256
    p = Proc([cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "%p.dump"), "--buffer-mb", str(ring_mb), "--",
              "/usr/bin/python3", "-c", "import time; print('up', flush=True); time.sleep(20)"], env=clean_env())
    try:
        p.wait_for_line(r"^up$", 20)
        dumps = [f for f in os.listdir(tmpdir) if f.endswith(".dump")]
        expect(len(dumps) == 1, "the sleeper left %d dumps" % len(dumps))
        rc, own, took, rss = timed_cmd([cfg.stalltrace, "report", os.path.join(tmpdir, dumps[0])], timeout=60)
        expect(rc == 0, "report of the live dump exited %d: %s" % (rc, own))
        expect(rss < ring_mb * 1024 * 3 // 2, "report of a live %d MB ring peaked at %d kB" % (ring_mb, rss))
    finally:
        p.close()
    return "live %d MB ring: report peak RSS %d kB in %.2f s" % (ring_mb, rss, took)


@test("hostile_rewrite")
def t_rewrite(cfg, tmpdir):
    good = open(real_dump(cfg, tmpdir), "rb").read()
    path = os.path.join(tmpdir, "moving.dump")
    with open(path, "wb") as fh:
        fh.write(good)
    stop = threading.Event()
    rewrites = [0]

    def rewriter():
        junk = bytes((i * 131) & 0xFF for i in range(len(good)))
        while not stop.is_set():
            for data in (good, junk, good[: len(good) // 3], good[:64]):
                with open(path, "r+b") as fh:   # in place: readers see it change
                    fh.write(data)
                    fh.truncate(len(data))
                rewrites[0] += 1

    th = threading.Thread(target=rewriter, daemon=True)
    th.start()
    m = None
    try:
        m, port = start_metrics(cfg, os.path.join(tmpdir, "*.dump"))
        outcomes = {0: 0, 2: 0}
        scrapes = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            rc, out, err = run_cmd([cfg.stalltrace, "report", path], timeout=20)
            expect(rc in (0, 2), "report of a dump rewritten while read exited %d: %s" % (rc, err[-300:]))
            if rc == 2:
                expect(len(err.strip().splitlines()) == 1, "report says more than one line: %r" % err)
            outcomes[rc] += 1
            status, body = scrape_metrics(port)
            expect(status == 200 and body.rstrip().endswith("# EOF"), "a scrape answered %d" % status)
            scrapes += 1
        expect(m.popen.poll() is None, "metrics died while the dump was rewritten%s" % m.tail())
    finally:
        stop.set()
        th.join(5)
        if m:
            m.close()
    return "%d rewrites; report 0 x%d, 2 x%d; %d scrapes all 200" % (
        rewrites[0], outcomes[0], outcomes[2], scrapes)


@test("hostile_stop")
def t_stop(cfg, tmpdir):
    """SIGTERM in the middle of a render of live dumps with 256 MB rings."""
    p = Proc([cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "live.dump"), "--buffer-mb", "256", "--",
              "/usr/bin/python3", "-c", "import time; print('up', flush=True); time.sleep(60)"], env=clean_env())
    m = None
    try:
        p.wait_for_line(r"^up$", 20)
        for i in range(4):
            rc, _, err = run_cmd(["cp", "--sparse=always", os.path.join(tmpdir, "live.dump"),
                                  os.path.join(tmpdir, "copy%d.dump" % i)])
            expect(rc == 0, "cp: %s" % err)
        m, port = start_metrics(cfg, os.path.join(tmpdir, "*.dump"))
        threads = [threading.Thread(target=lambda: _quiet_scrape(port), daemon=True) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.5)            # the render of five 256 MB rings takes seconds
        t0 = time.monotonic()
        os.kill(m.popen.pid, signal.SIGTERM)
        rc = m.wait(10)
        took = time.monotonic() - t0
        expect(rc == 0 and took < 3.5, "SIGTERM during a render: exit %d after %.1f s" % (rc, took))
    finally:
        if m:
            m.close()
        p.close()
    return "SIGTERM during a render with 20 scrapes waiting: exit 0 in %.2f s" % took


def _quiet_scrape(port):
    try:
        scrape_metrics(port, timeout=10)
    except Exception:  # noqa: BLE001 - the server stops under it on purpose
        pass
