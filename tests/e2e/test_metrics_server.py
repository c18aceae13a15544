"""End-to-end tests of the `stalltrace metrics` server on libmicrohttpd
(issue 14), with dumps recorded here from real asyncio programs.

- metrics_200_finished: 200 finished dumps (200 asyncio runs of
  /usr/bin/python3 recorded under one `stalltrace run`) in the glob; 200
  simultaneous complete GET /metrics are all answered 200, each with every
  dump; the server's RSS and fds stay small after the scrapes (finished
  dumps are kept as their figures, not files and models); promtool accepts
  a scrape.
- metrics_slow_render: a render longer than the server's --timeout 1 (live
  dumps with 256 MB rings) is answered, not dropped.
- metrics_emfile: with its fd limit lowered to what it already holds
  (prlimit on the running server), a scrape fails with 500 and one error
  line naming EMFILE, never an answer with no dumps; with the limit given
  back, the next scrape has every dump.
- metrics_trust: next to the live dump of a root asyncio program, a copy
  claiming its pid owned by nobody is left out (untrusted), a root copy
  with a later start and change time is a conflict reported by
  stalltrace_dump_conflicts and a comment, settled for the dump the process
  maps (its iterations grow), and nobody's dump of nobody's own live
  process is exposed.
"""

import os
import re
import selectors
import shutil
import socket
import struct
import subprocess
import time

from e2e_lib import (
    REPO, Proc, Skip, clean_env, expect, metric_value, proc_status_kb, run_cmd, scrape_metrics,
    start_metrics, test)

N_DUMPS = 200
N_SCRAPES = 200


def record_many(cfg, tmpdir, n):
    """n finished dumps of short asyncio runs (plus xargs's own): a list."""
    rec = os.path.join(tmpdir, "dumps")
    os.mkdir(rec)
    child = '/usr/bin/python3 -c "import asyncio; asyncio.run(asyncio.sleep(0.02))"'
    rc, out, err = run_cmd([cfg.stalltrace, "run", "-o", os.path.join(rec, "%p.dump"), "--buffer-mb", "1", "--",
                            "sh", "-c", "seq %d | xargs -P 4 -I{} %s" % (n, child)], timeout=300)
    expect(rc == 0, "recording %d asyncio runs exited %d: %s" % (n, rc, err[-300:]))
    dumps = [os.path.join(rec, f) for f in sorted(os.listdir(rec)) if f.endswith(".dump")]
    expect(len(dumps) >= n, "%d asyncio runs left %d dumps" % (n, len(dumps)))
    return rec, dumps










def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def promtool_check(tmpdir, body):
    promtool = shutil.which("promtool")
    if not promtool:
        return "promtool not installed"
    path = os.path.join(tmpdir, "scrape.prom")
    with open(path, "w") as fh:
        fh.write(body)
    rc, out, err = run_cmd(["sh", "-c", '"$0" check metrics < "$1"', promtool, path])
    expect(rc == 0, "promtool check metrics rejects the scrape (%d): %s" % (rc, (out + err)[:600]))
    return "promtool ok"


def simultaneous_scrapes(port, n, timeout=120):
    """Open n connections, send n complete requests, then read every answer.
    Returns the list of (status, body) of the answered ones."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    sel = selectors.DefaultSelector()
    req = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    pending = {s: req for s in socks}
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    got = {s: b"" for s in socks}
    open_ = set(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        for key, ev in sel.select(1):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                try:
                    sent = s.send(pending[s])
                except BlockingIOError:
                    continue
                except OSError:
                    sel.unregister(s)
                    open_.discard(s)
                    continue
                pending[s] = pending[s][sent:]
                if not pending[s]:
                    sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                got[s] += data
            else:
                sel.unregister(s)
                open_.discard(s)
    answers = []
    for s in socks:
        s.close()
        raw = got[s]
        head, _, body = raw.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.1 (\d+)", head)
        if m:
            answers.append((int(m.group(1)), body.decode("utf-8", "replace")))
    return answers


@test("metrics_200_finished")
def t_200_finished(cfg, tmpdir):
    rec, dumps = record_many(cfg, tmpdir, N_DUMPS)
    m, port = start_metrics(cfg, os.path.join(rec, "*.dump"))
    try:
        pid = m.popen.pid
        fds_before = nfds(pid)
        t0 = time.monotonic()
        status, body = scrape_metrics(port)
        first = time.monotonic() - t0
        expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") == len(dumps),
               "first scrape: %d, %s dumps of %d" % (status, metric_value(body, "stalltrace_scrape_dumps"), len(dumps)))
        note = promtool_check(tmpdir, body)

        t0 = time.monotonic()
        answers = simultaneous_scrapes(port, N_SCRAPES)
        burst = time.monotonic() - t0
        ok = [b for st, b in answers if st == 200 and b.rstrip().endswith("# EOF") and
              metric_value(b, "stalltrace_scrape_dumps") == len(dumps)]
        expect(len(ok) == N_SCRAPES, "%d of %d simultaneous scrapes answered with every dump (%d answered at all)"
               % (len(ok), N_SCRAPES, len(answers)))
        rss, hwm, fds = proc_status_kb(pid, "VmRSS"), proc_status_kb(pid, "VmHWM"), nfds(pid)
        expect(fds <= fds_before + 4, "the server holds %d fds after the scrapes (%d before)" % (fds, fds_before))
        expect(rss < 96 * 1024, "the server's RSS is %d kB with %d finished dumps" % (rss, len(dumps)))
        t0 = time.monotonic()
        status, body = scrape_metrics(port)
        cached = time.monotonic() - t0
        expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") == len(dumps), "a later scrape lost dumps")
    finally:
        m.close()
    return ("%d/%d simultaneous scrapes answered in %.1f s; %d finished dumps: RSS %d kB (peak %d kB), "
            "%d fds (%d before); scrape %.2f s first, %.2f s cached; %s"
            % (len(ok), N_SCRAPES, burst, len(dumps), rss, hwm, fds, fds_before, first, cached, note))


@test("metrics_slow_render")
def t_slow_render(cfg, tmpdir):
    ring_mb, copies = 256, 6
    p = Proc([cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "live.dump"), "--buffer-mb", str(ring_mb), "--",
              "/usr/bin/python3", "-c",
              "import asyncio\nasync def main():\n print('up', flush=True)\n await asyncio.sleep(60)\n"
              "asyncio.run(main())"], env=clean_env())
    m = None
    try:
        p.wait_for_line(r"^up$", 20)
        live = os.path.join(tmpdir, "live.dump")
        for i in range(copies):
            rc, _, err = run_cmd(["cp", "--sparse=always", live, os.path.join(tmpdir, "copy%d.dump" % i)])
            expect(rc == 0, "cp: %s" % err)
        m, port = start_metrics(cfg, os.path.join(tmpdir, "*.dump"), ["--timeout", "1"])
        t0 = time.monotonic()
        status, body = scrape_metrics(port, timeout=120)
        took = time.monotonic() - t0
        expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") >= 1,
               "the slow scrape answered %d:\n%s" % (status, body[:400]))
        if took < 1.5:
            raise Skip("the render took only %.2f s, not longer than --timeout 1" % took)
        note = promtool_check(tmpdir, body)
    finally:
        if m:
            m.close()
        p.close()
    return "a %.1f s render answered 200 with --timeout 1 (%d live %d MB rings); %s" % (took, copies + 1, ring_mb, note)


@test("metrics_emfile")
def t_emfile(cfg, tmpdir):
    if not shutil.which("prlimit"):
        raise Skip("prlimit is not installed (util-linux)")
    rec, dumps = record_many(cfg, tmpdir, 4)
    m, port = start_metrics(cfg, os.path.join(rec, "*.dump"))
    try:
        pid = m.popen.pid
        status, body = scrape_metrics(port)
        expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") == len(dumps), "the first scrape failed")
        failed = None
        for _ in range(3):
            # One fd number left under the limit: the connection takes it,
            # the directory listing finds none.
            held = {int(f) for f in os.listdir("/proc/%d/fd" % pid)}
            unused = [n for n in range(max(held) + 3) if n not in held]
            rc = subprocess.call(["prlimit", "--pid", str(pid), "--nofile=%d:" % unused[1]])
            expect(rc == 0, "prlimit failed")
            status, body = scrape_metrics(port)
            if status == 200:
                n = metric_value(body, "stalltrace_scrape_dumps")
                expect(n == len(dumps), "out of fds, a scrape answered 200 with %d dumps of %d" % (n, len(dumps)))
            else:
                failed = (status, body)
                break
        expect(failed and failed[0] == 500 and "Too many open files" in failed[1] and
               len(failed[1].strip().splitlines()) == 1,
               "out of fds, no failed scrape with one line: %r" % (failed,))
        time.sleep(0.2)
        errs = [l for l in m.err if "scrape failed" in l and "Too many open files" in l]
        expect(errs, "no error line on stderr:%s" % m.tail())
        rc = subprocess.call(["prlimit", "--pid", str(pid), "--nofile=1024:"])
        status, body = scrape_metrics(port)
        expect(status == 200 and metric_value(body, "stalltrace_scrape_dumps") == len(dumps),
               "with fds back, the scrape has %s dumps" % metric_value(body, "stalltrace_scrape_dumps"))
    finally:
        m.close()
    return "out of fds: %d %r, stderr %r; fds back: every dump" % (failed[0], failed[1].strip(), errs[0])


def header_offsets(cfg, tmpdir):
    """offsetof start_real_ns and process_offset in st_file_header, from format.h."""
    src = os.path.join(tmpdir, "offsets.c")
    with open(src, "w") as fh:
        fh.write('#include <stddef.h>\n#include <stdio.h>\n#include "stalltrace/format.h"\n'
                 'int main(void) { printf("%zu %zu\\n", offsetof(struct st_file_header, start_real_ns),'
                 ' offsetof(struct st_file_header, process_offset)); return 0; }\n')
    exe = os.path.join(tmpdir, "offsets")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Skip("no C compiler to read format.h's offsets")
    rc, _, err = run_cmd([cc, "-I", os.path.join(REPO, "include"), "-o", exe, src])
    expect(rc == 0, "cannot build the offsets probe: %s" % err[:300])
    rc, out, _ = run_cmd([exe])
    start_off, proc_off = (int(x) for x in out.split())
    return start_off, proc_off


def forge(src, dst, start_off, proc_off, later_s=10, pid=None):
    """A copy of dump src claiming a later start, and pid if given."""
    data = bytearray(open(src, "rb").read())
    start, = struct.unpack_from("<Q", data, start_off)
    struct.pack_into("<Q", data, start_off, start + int(later_s * 1e9))
    if pid is not None:
        where, = struct.unpack_from("<Q", data, proc_off)
        struct.pack_into("<i", data, where, pid)
    with open(dst, "wb") as fh:
        fh.write(data)


@test("metrics_trust")
def t_trust(cfg, tmpdir):
    nobody = 65534
    start_off, proc_off = header_offsets(cfg, tmpdir)
    glob_dir = os.path.join(tmpdir, "dumps")
    os.mkdir(glob_dir)
    os.chmod(tmpdir, 0o755)
    live = Proc([cfg.stalltrace, "run", "-o", os.path.join(glob_dir, "real.%p.dump"), "--",
                 "/usr/bin/python3", "-c",
                 "import asyncio\nasync def main():\n print('up', flush=True)\n"
                 " while True:\n  await asyncio.sleep(0.002)\nasyncio.run(main())"], env=clean_env())
    other = Proc(["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody, "--clear-groups", "/bin/sleep", "60"])
    m = None
    try:
        live.wait_for_line(r"^up$", 20)
        time.sleep(0.5)
        real = [f for f in os.listdir(glob_dir) if f.startswith("real.")]
        expect(len(real) == 1, "the live program left %r" % real)
        real = os.path.join(glob_dir, real[0])
        pid = int(real.split(".")[-2])
        # Claims on the live root process: by another user (untrusted),
        # and by root with a later start and the latest change (a conflict).
        forge(real, os.path.join(glob_dir, "forged_nobody.dump"), start_off, proc_off)
        os.chown(os.path.join(glob_dir, "forged_nobody.dump"), nobody, nobody)
        forged_root = os.path.join(glob_dir, "forged_root.dump")
        forge(real, forged_root, start_off, proc_off)
        # A dump of nobody's own live process, owned by nobody: trusted.
        theirs = os.path.join(glob_dir, "theirs.dump")
        forge(real, theirs, start_off, proc_off, later_s=0, pid=other.popen.pid)
        os.chown(theirs, nobody, nobody)
        os.utime(forged_root)

        m, port = start_metrics(cfg, os.path.join(glob_dir, "*.dump"))
        bodies = []
        for i in range(2):
            if i:
                time.sleep(1.0)
            status, body = scrape_metrics(port)
            expect(status == 200, "scrape answered %d" % status)
            bodies.append(body)
        body = bodies[1]
        expect(metric_value(body, "stalltrace_scrape_dumps") == 2, "exposed dumps:\n%s" % body[:800])
        expect(metric_value(body, "stalltrace_scrape_dumps_untrusted") == 1, "the other user's claim was not left out")
        expect('stalltrace_dump_conflicts{pid="%d"} 1' % pid in body, "no conflict reported for pid %d:\n%s"
               % (pid, body[:1200]))
        expect(("# pid %d is claimed by 2 dumps; exposing the one the process maps: %s" % (pid, real)) in body,
               "the comment does not name the mapped dump:\n%s" % body[:1200])
        expect('stalltrace_recording_seconds{pid="%d"}' % other.popen.pid in body,
               "nobody's dump of nobody's process is not exposed")
        pat = r'^stalltrace_loop_iterations_total\{pid="%d",tid="%d"[^}]*\} (\S+)$' % (pid, pid)
        iters = [float(re.search(pat, b, re.M).group(1)) for b in bodies]
        expect(iters[1] > iters[0], "the frozen forged copy is exposed: iterations %s" % iters)
        expect(any("not trusted" in l and "forged_nobody" in l for l in m.err), "no line about the untrusted dump")
        note = promtool_check(tmpdir, body)
    finally:
        if m:
            m.close()
        other.close()
        live.close()
    return ("untrusted 1 (nobody's claim on root's pid), conflict on pid %d settled by the mapping "
            "(iterations %g -> %g), nobody's own dump exposed; %s" % (pid, iters[0], iters[1], note))
