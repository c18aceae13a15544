"""End-to-end tests of `stalltrace attach` on real servers (issue 15).

Each server is started without the recorder, serves requests (a slow one
among them), is attached, serves fast and slow requests while attached, is
detached, and serves again: every reply is checked, the server exits 0. The
stalls (or pool saturation) found are checked against the program's own
measure of each slow request; after detach the process has the fds, signal
dispositions and mask, threads and GOT slots it had before attach.

- uvloop_attach: Debian's python3 with python3-uvloop (py_attach_uvloop.py):
  time.sleep(0.2) in handle_slow_request; the stall names it, against the
  sleep the handler timed.
- node_attach_perf_map: Node started with --perf-basic-prof
  --interpreted-frames-native-stack (node_attach_server.js): its 200 ms
  Atomics.wait stalls name handleSlowRequest from the JIT map /tmp/perf-PID.map.
- node_attach_no_perf_map: the same started plain: the report says its JS
  frames are unnamed because node was started without those flags.
- c_pool_attach: the C epoll server with a pool of 3 (c_pool_loop_server.c),
  attached after it has run a batch: each batch of 9 jobs of 100 ms saturates
  the pool, against the time the server measured until a worker found the
  queue empty; busy in usleep at process_job; the loop is not stalled.
- redis_attach: Debian's redis-server on a unix socket: its DEBUG SLEEP 0.2
  stalls in nanosleep at debugCommand, against redis's own SLOWLOG. Its
  jemalloc starts a background thread for each arena it makes, one for each
  of the recorder's threads: those stay (idle) after detach, the only change.
"""

import os
import re
import shutil
import socket
import subprocess
import time

from e2e_lib import Proc, Skip, c_target_binary, clean_env, expect, json_report, run_cmd, target, test
from test_attach import SLACK_MS, process_state

SLOW_MS = 100.0             # a stall of the slow requests; the fast ones are far below


class LineClient:
    """One connection to a line server: ask() checks the reply, times it."""

    def __init__(self, address):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.stream = self.sock.makefile("rwb")

    def send(self, data):
        self.stream.write(data)
        self.stream.flush()

    def ask(self, request, reply_pattern):
        t0 = time.monotonic()
        self.send(request.encode() + b"\n")
        reply = self.stream.readline().decode().strip()
        ms = (time.monotonic() - t0) * 1000
        expect(re.fullmatch(reply_pattern, reply), "the server answered %r to %r" % (reply, request))
        return reply, ms

    def close(self):
        self.stream.close()
        self.sock.close()


def got_slots(pid, path_needle):
    """Every JUMP_SLOT/GLOB_DAT word of each mapped module whose path holds
    path_needle, by module and symbol (but lazy ones not bound yet: the
    program's first call may bind them meanwhile)."""
    bases, ends = {}, {}
    with open("/proc/%d/maps" % pid) as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 6 and path_needle in f[5]:
                a, b = (int(x, 16) for x in f[0].split("-"))
                bases[f[5]] = min(a, bases.get(f[5], a))
                ends[f[5]] = max(b, ends.get(f[5], b))
    expect(bases, "no module with %s in its path is mapped in %d" % (path_needle, pid))
    slots = {}
    with open("/proc/%d/mem" % pid, "rb") as mem:
        for path, lo in bases.items():
            with open(path, "rb") as elf:
                exec_type = elf.read(18)[16:18] == b"\x02\x00"     # ET_EXEC: no load bias
            bias = 0 if exec_type else lo
            out = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
            for line in out.splitlines():
                f = line.split()
                if len(f) >= 5 and f[2] in ("R_X86_64_JUMP_SLOT", "R_X86_64_GLOB_DAT"):
                    mem.seek(bias + int(f[0], 16))
                    word = int.from_bytes(mem.read(8), "little")
                    if not lo <= word < ends[path]:    # not a lazy slot still at its PLT stub
                        slots[os.path.basename(path) + ":" + f[4]] = word
    return slots


def snapshot(pid, module):
    fds, status = process_state(pid)
    return {"fds": fds, "status": status, "tids": sorted(os.listdir("/proc/%d/task" % pid)),
            "got": got_slots(pid, module)}


def jemalloc_background(pid, tids):
    """The threads of tids that are jemalloc's background threads."""
    def comm(tid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as fh:
                return fh.read().strip()
        except OSError:
            return None
    return [t for t in tids if comm(t) == "jemalloc_bg_thd"]


def unchanged(before, after, pid):
    """What detach must have put back: all but SIGSETXID's handler, which
    glibc sets for good on a single-threaded process's first pthread_create
    (the recorder's poller), and jemalloc's background threads: a program on
    jemalloc with them on (redis) starts one for each arena it makes, and it
    makes one for each of the recorder's threads; they stay, idle."""
    extra = [t for t in after["tids"] if t not in before["tids"]]
    bg = jemalloc_background(pid, extra)
    after["tids"] = [t for t in after["tids"] if t not in bg]
    after["status"]["Threads"] = str(int(after["status"]["Threads"]) - len(bg))
    if before["status"]["Threads"] == "1":
        after["status"]["SigCgt"] = "%016x" % (int(after["status"]["SigCgt"], 16) & ~(1 << 32)
                                               | int(before["status"]["SigCgt"], 16) & (1 << 32))
    for key in ("fds", "status", "tids"):
        expect(after[key] == before[key], "%s of %d before attach %s, after detach %s"
               % (key, pid, before[key], after[key]))
    moved = sorted(k for k in before["got"] if after["got"].get(k) != before["got"][k])
    expect(not moved, "GOT slots changed by attach+detach: %s" % moved[:8])
    return "%d fds, %d threads, %d GOT slots as before%s" % (
        len(before["fds"]), len(before["tids"]), len(before["got"]),
        " (and %d jemalloc background threads more)" % len(bg) if bg else "")


def attach_session(cfg, tmpdir, pid, module, during, threshold=50):
    """attach PID, run during() (requests while attached), detach; returns
    (dump, attach ms as measured here, what detach left unchanged)."""
    dump = os.path.join(tmpdir, "attached.dump")
    before = snapshot(pid, module)
    t0 = time.monotonic()
    rc, out, err = run_cmd([cfg.stalltrace, "attach", str(pid), "-o", dump, "--threshold", str(threshold)])
    attach_ms = (time.monotonic() - t0) * 1000
    expect(rc == 0, "attach exited %d: %s" % (rc, err.strip()))
    expect(re.search(r"attached to %d in \d+ ms, recording to %s" % (pid, re.escape(dump)), out),
           "attach said %r" % out)
    during()
    rc, out, err = run_cmd([cfg.stalltrace, "detach", str(pid)])
    expect(rc == 0, "detach exited %d: %s" % (rc, err.strip()))
    deadline = time.monotonic() + 2
    while True:                     # the poller thread ends
        after = snapshot(pid, module)
        if after["tids"] == before["tids"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return dump, attach_ms, unchanged(before, after, pid)


def loop_stalls(proc, pid):
    return [s for s in proc.get("stalls") or [] if s.get("tid") == pid and s.get("duration_ms", 0) >= SLOW_MS]


def check_stalls(proc, stalls, truth_ms, calls, function):
    """One stall per slow request, of its length (the program's measure), at function."""
    expect(len(stalls) == len(truth_ms), "%d stalls of %g ms or more, the program timed %d slow requests"
           % (len(stalls), SLOW_MS, len(truth_ms)), proc)
    for s, ms in zip(stalls, truth_ms):
        names = [f.get("function") for f in s.get("stack") or []]
        expect(s.get("call") in calls and function in names,
               "stall in %s at %s, expected %s in %s" % (s.get("call"), names[:10], "/".join(calls), function),
               proc)
        expect(ms - 1 <= s["duration_ms"] <= ms + SLACK_MS,
               "stall of %.1f ms, the program timed %.1f ms" % (s["duration_ms"], ms), proc)
    return "/".join("%.0f" % s["duration_ms"] for s in stalls), "/".join("%.0f" % ms for ms in truth_ms)


def serve_attached(cfg, tmpdir, argv, module, before, during, after, slow="slow"):
    """A line server (PORT N; fast, SLOW -> "SLOW MS", quit -> bye) sent the
    requests before, attached for during, detached for after; every reply
    checked, exit 0. Returns (pid, the dump's process, its path, the MS of
    each SLOW while attached, attach ms, what detach left unchanged)."""
    pattern = r"fast|%s [\d.]+" % slow
    p = Proc(argv, env=clean_env(), cwd=tmpdir)
    truth = []
    try:
        port = int(p.wait_for_line(r"^PORT \d+", 30).split()[1])
        c = LineClient(("127.0.0.1", port))
        for request in before:
            c.ask(request, pattern)             # served a while before attach: not recorded

        def attached():
            for request in during:
                reply, _ = c.ask(request, pattern)
                if request == slow:
                    truth.append(float(reply.split()[1]))

        dump, attach_ms, same = attach_session(cfg, tmpdir, p.popen.pid, module, attached)
        for request in after:
            c.ask(request, pattern)             # after detach: still right
        c.ask("quit", "bye")
        c.close()
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0, "the server exited %d%s" % (rc, p.tail()))
    proc = json_report(cfg, dump)["processes"][0]
    expect(proc.get("attached") is True and proc.get("complete") is True,
           "attached=%r complete=%r" % (proc.get("attached"), proc.get("complete")), proc)
    return p.popen.pid, proc, dump, truth, attach_ms, same


def line_server_test(cfg, tmpdir, argv, module, calls, function):
    """Stalls of the slow requests made while attached, at function."""
    pid, proc, _, truth, attach_ms, same = serve_attached(
        cfg, tmpdir, argv, module, ["fast"] * 20 + ["slow"] + ["fast"] * 5, (["fast"] * 10 + ["slow"]) * 3,
        ["fast"] * 10 + ["slow", "fast"])
    got, want = check_stalls(proc, loop_stalls(proc, pid), truth, calls, function)
    return proc, "stalls %s ms at %s, the program timed %s ms; attach %.0f ms; %s" % (
        got, function, want, attach_ms, same)


@test("uvloop_attach")
def uvloop_attach(cfg, tmpdir):
    python = "/usr/bin/python3"
    if subprocess.run([python, "-c", "import uvloop"], capture_output=True).returncode != 0:
        raise Skip("no uvloop for %s (apt-get install python3-uvloop)" % python)
    proc, figures = line_server_test(cfg, tmpdir, [python, target("py_attach_uvloop.py")], "python3",
                                        ("clock_nanosleep",), "handle_slow_request")
    frames = [f for f in loop_stalls(proc, proc["pid"])[0]["stack"] if f.get("function") == "handle_slow_request"]
    expect(frames[0].get("kind") == "python" and str(frames[0].get("file")).endswith("py_attach_uvloop.py"),
           "handle_slow_request is not a Python frame of py_attach_uvloop.py: %r" % frames[0], proc)
    return figures


def node_or_skip():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node (apt-get install nodejs)")
    return node


@test("node_attach_perf_map")
def node_attach_perf_map(cfg, tmpdir):
    node = node_or_skip()
    proc, figures = line_server_test(
        cfg, tmpdir, [node, "--perf-basic-prof", "--interpreted-frames-native-stack",
                      target("node_attach_server.js")], "/usr/bin/node", ("pthread_cond_timedwait",),
        "handleSlowRequest")
    f = [f for f in loop_stalls(proc, proc["pid"])[0]["stack"] if f.get("function") == "handleSlowRequest"][0]
    expect(f.get("kind") == "jit" and str(f.get("file")).endswith("node_attach_server.js"),
           "handleSlowRequest is not named from node's perf map: %r" % f, proc)
    try:
        os.unlink("/tmp/perf-%d.map" % proc["pid"])
    except OSError:
        pass
    return figures


@test("node_attach_no_perf_map")
def node_attach_no_perf_map(cfg, tmpdir):
    """Node started plain: its JS frames cannot be named, and the report says why."""
    node = node_or_skip()
    pid, proc, dump, _, _, _ = serve_attached(cfg, tmpdir, [node, target("node_attach_server.js")], "/usr/bin/node",
                                              ["fast"] * 5 + ["slow"], ["fast", "slow"] * 2, ["fast"])
    expect(not os.path.exists("/tmp/perf-%d.map" % pid), "node wrote a perf map unasked")
    stalls = loop_stalls(proc, pid)
    expect(len(stalls) == 2 and not any(f.get("kind") == "jit" for s in stalls for f in s.get("stack") or []),
           "expected 2 stalls without a JS frame named", proc)
    rc, text, err = run_cmd([cfg.stalltrace, "report", dump])
    line = [l.strip() for l in text.splitlines() if "pthread_cond_timedwait" in l and " at " in l]
    why = "not started with both --perf-basic-prof and --interpreted-frames-native-stack"
    expect(rc == 0 and line and why in " ".join(text.split()),
           "the report does not say why the JS frames have no name:\n%s" % text)
    return "2 stalls; the report says: %s" % " ".join(text.split()).split("at JavaScript")[1][:110]


@test("c_pool_attach")
def c_pool_attach(cfg, tmpdir):
    server, note = c_target_binary(cfg, tmpdir, "c_pool_loop_server", ["-pthread"])
    pid, proc, _, truth, attach_ms, same = serve_attached(
        cfg, tmpdir, [server], "c_pool_loop_server", ["fast"] * 10 + ["batch", "fast"], ["fast", "batch"] * 3,
        ["fast", "batch", "fast"], slow="batch")
    expect(not loop_stalls(proc, pid), "the loop stalled: it only hands batches to the pool", proc)
    pools = proc.get("pools") or []
    expect(len(pools) == 1 and pools[0].get("threads") == 3, "expected one pool of 3, got %s"
           % [(x.get("threads"), x.get("tids")) for x in pools], proc)
    spans = [s for s in pools[0].get("saturations") or [] if s.get("duration_ms", 0) >= SLOW_MS]
    expect(len(spans) == len(truth), "%d saturation spans, the server ran %d batches while attached"
           % (len(spans), len(truth)), proc)
    for s, ms in zip(spans, truth):
        expect(abs(s["duration_ms"] - ms) <= SLACK_MS, "saturated %.1f ms, the server measured %.1f ms"
               % (s["duration_ms"], ms), proc)
    top = (pools[0].get("busy_in") or [{}])[0]
    names = [f.get("function") for f in top.get("stack") or []]
    expect(top.get("call") == "usleep" and "process_job" in names, "busy in %s at %s, expected usleep at "
           "process_job" % (top.get("call"), names[:6]), proc)
    expect(any(d.get("culprit") == "thread_pool_exhaustion" for d in proc.get("diagnosis") or []),
           "no thread_pool_exhaustion diagnosis", proc)
    return "pool of 3 saturated %s ms, the server measured %s ms; busy in usleep at process_job; " \
           "attach %.0f ms; %s%s" % ("/".join("%.0f" % s["duration_ms"] for s in spans),
                                      "/".join("%.0f" % ms for ms in truth), attach_ms, same, note)


def resp(*args):
    return b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in
                                                 (x.encode() for x in args)])


class RedisClient(LineClient):
    def call(self, *args):
        t0 = time.monotonic()
        self.send(resp(*args))
        reply = self.read_reply()
        return reply, (time.monotonic() - t0) * 1000

    def read_reply(self):
        line = self.stream.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise AssertionError("redis error: %s" % rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.stream.read(n + 2)[:-2].decode()
        if kind == b"*":
            return [self.read_reply() for _ in range(int(rest))]
        raise AssertionError("redis said %r" % line)


@test("redis_attach")
def redis_attach(cfg, tmpdir):
    redis = shutil.which("redis-server")
    if redis is None:
        raise Skip("no redis-server (apt-get install redis-server)")
    sock = os.path.join(tmpdir, "redis.sock")
    p = Proc([redis, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
              "--enable-debug-command", "yes", "--slowlog-log-slower-than", "100000", "--dir", tmpdir],
             env=clean_env(), cwd=tmpdir)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            expect(time.monotonic() < deadline and p.popen.poll() is None, "redis did not start%s" % p.tail())
            time.sleep(0.05)
        c = RedisClient(sock)
        n = 0

        def traffic(rounds):
            nonlocal n
            for _ in range(rounds):
                for _ in range(10):
                    n += 1
                    expect(c.call("INCR", "counter")[0] == str(n), "INCR did not count to %d" % n)
                expect(c.call("DEBUG", "SLEEP", "0.2")[0] == "OK", "DEBUG SLEEP failed")

        traffic(1)
        expect(c.call("SLOWLOG", "RESET")[0] == "OK", "SLOWLOG RESET failed")
        dump, attach_ms, same = attach_session(cfg, tmpdir, p.popen.pid, "redis", lambda: traffic(3))
        log = c.call("SLOWLOG", "GET", "10")[0]
        traffic(1)
        expect(c.call("GET", "counter")[0] == str(n), "the counter is not %d" % n)
        c.send(resp("SHUTDOWN", "NOSAVE"))
        c.close()
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0, "redis exited %d%s" % (rc, p.tail()))
    # SLOWLOG entries: [id, unix time, microseconds, [argv...], ...], newest first.
    truth = [int(e[2]) / 1000 for e in reversed(log) if e[3][:2] == ["DEBUG", "SLEEP"]]
    expect(len(truth) == 3, "redis's slowlog holds %d DEBUG SLEEPs: %s" % (len(truth), log))
    proc = json_report(cfg, dump)["processes"][0]
    got, want = check_stalls(proc, loop_stalls(proc, p.popen.pid), truth, ("nanosleep",), "debugCommand")
    modules = {f.get("module") for s in loop_stalls(proc, p.popen.pid) for f in s["stack"]
               if f.get("function") == "debugCommand"}
    expect(modules == {"redis-server"}, "debugCommand's module is named %s, not redis-server" % modules, proc)
    return "DEBUG SLEEP stalls %s ms at debugCommand, redis's slowlog %s ms; attach %.0f ms; %s" % (
        got, want, attach_ms, same)
