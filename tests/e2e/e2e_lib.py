"""Shared helpers of the end-to-end tests (tests/e2e/test_*.py).

Processes (Proc: own process group, killed when the test ends), running a
target under `stalltrace run` and reading `report --format json`, the
assertion helpers (expect, evidence, stack predicates), the JSON schema
check, and the registries: `@test(name)` for tests and `@self_test` for
checks of the assertion helpers on hand-written reports.  Standard library
only (Debian's /usr/bin/python3).  The runner is tests/e2e/run_e2e.py.
"""

import copy
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGETS = os.path.join(HERE, "targets")

THRESHOLD_MS = 50
# A 200 ms stall, measured: -10 %, and +20 % on the high side for a loaded
# two-core machine.
EXACT_LO, EXACT_HI = 180.0, 240.0
# CPU-bound stalls (sampled, or bounded by the work's own clock): +-25 %.
CPU_LO, CPU_HI = 150.0, 250.0
TEST_TIMEOUT_S = 60

DEBIAN_PYTHON = "/usr/bin/python3"


class Fail(AssertionError):
    """A test assertion failed; the message says what was expected and seen."""


class Skip(Exception):
    """A test cannot run here (a runtime is missing); the message says why."""


# ---------------------------------------------------------------------------
# Configuration discovered at start-up


class Config:
    def __init__(self, build_dir, keep, verbose):
        self.build_dir = build_dir
        self.keep = keep
        self.verbose = verbose
        self.stalltrace = os.path.join(build_dir, "analyzer", "stalltrace")
        self.preload = os.path.join(build_dir, "preload", "libstalltrace.so")
        self.c_server = os.path.join(build_dir, "tests", "e2e", "c_epoll_server")
        self.cache = {}  # results shared between tests (e.g. py_sleep's report)

    def built_target(self, name):
        """Where meson builds the C target `name` (tests/e2e/meson.build)."""
        return os.path.join(self.build_dir, "tests", "e2e", name)


def _version_key(path):
    m = re.search(r"/versions/(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def pyenv_python(minor):
    """The newest pyenv CPython 3.<minor> (a real binary, not a shim), or None."""
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    roots += [os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    found = []
    for root in roots:
        found += glob.glob(os.path.join(root, "versions", "3.%d.*" % minor, "bin", "python3.%d" % minor))
    found = [p for p in found if os.access(p, os.X_OK) and re.search(r"/3\.%d\.\d+/" % minor, p)]
    return max(found, key=_version_key) if found else None


def debian_python_minor():
    """The minor version of Debian's /usr/bin/python3, or None."""
    try:
        real = os.path.basename(os.path.realpath(DEBIAN_PYTHON))
    except OSError:
        return None
    m = re.match(r"python3\.(\d+)$", real)
    return int(m.group(1)) if m else None


def default_python():
    """The interpreter of the Python targets: $E2E_PYTHON if set, else pyenv's
    CPython 3.11 (built with symbols), else Debian's python3."""
    return os.environ.get("E2E_PYTHON") or pyenv_python(11) or DEBIAN_PYTHON


def python_for_minor(minor):
    """(interpreter, note) for the tests of CPython 3.<minor>: pyenv's; for
    3.11 $E2E_PYTHON when set; Debian's python3 when it is that version and
    pyenv has none.  Skip when there is none."""
    python = pyenv_python(minor)
    note = ""
    if minor == 11 and os.environ.get("E2E_PYTHON"):
        python = os.environ["E2E_PYTHON"]
        note = " (%s)" % python
    elif python is None and debian_python_minor() == minor:
        python = DEBIAN_PYTHON  # a fresh Debian 12: its own CPython 3.11, without symbols
        note = " (Debian's %s, no pyenv 3.%d)" % (DEBIAN_PYTHON, minor)
    if python is None:
        raise Skip("no pyenv CPython 3.%d (~/.pyenv/versions/3.%d.*)" % (minor, minor))
    return python, note


# ---------------------------------------------------------------------------
# Processes


class Proc:
    """A child process in its own process group, its output collected by
    reader threads so that tests can wait for a line with a timeout."""

    def __init__(self, argv, env=None, cwd=None):
        self.argv = argv
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, start_new_session=True)
        self.pgid = self.popen.pid
        self.out = []
        self.err = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self._cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    def wait_for_line(self, pattern, timeout):
        """The first stdout line matching the regex; Fail on timeout or exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.out[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.out)
                if self.popen.poll() is not None and not any(t.is_alive() for t in self._readers[:1]):
                    raise Fail("process ended (status %s) before printing /%s/%s"
                               % (self.popen.returncode, pattern, self.tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail("no line /%s/ within %d s%s" % (pattern, timeout, self.tail()))
                self._cond.wait(min(left, 0.2))

    def wait(self, timeout):
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise Fail("timed out after %d s: %s%s" % (timeout, " ".join(self.argv[-3:]), self.tail()))
        for t in self._readers:
            t.join(5)
        return rc

    def kill_group(self):
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self):
        """Stop everything this process started; always safe to call."""
        self.kill_group()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for t in self._readers:
            t.join(2)

    def tail(self, n=6):
        parts = []
        if self.out:
            parts.append("\n    stdout: " + "\n            ".join(self.out[-n:]))
        if self.err:
            parts.append("\n    stderr: " + "\n            ".join(self.err[-n:]))
        return "".join(parts)


def free_port():
    """A port nothing listens on now, on 127.0.0.1, for a server to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    """Until the server of proc (a Proc) accepts on port; Fail if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.popen.poll() is not None:
                raise Fail("the server exited (status %s) before listening%s" % (proc.popen.returncode, proc.tail()))
            time.sleep(0.05)
    raise Fail("nothing listens on port %d after %d s%s" % (port, timeout, proc.tail()))


def run_cmd(argv, timeout=30, env=None):
    """Run a short command to completion; returns (status, stdout, stderr)."""
    p = Proc(argv, env=env if env is not None else clean_env())
    try:
        rc = p.wait(timeout)
        return rc, "\n".join(p.out), "\n".join(p.err)
    finally:
        p.close()


# ---------------------------------------------------------------------------
# Running a target and reading its report


def require_binaries(cfg):
    for path in (cfg.stalltrace, cfg.preload):
        if not os.path.exists(path):
            raise Fail("%s is missing (build first: bash scripts/setup.sh)" % os.path.relpath(path, REPO))


def clean_env(**extra):
    """The environment of a test: the caller's, without any STALLTRACE_*
    setting or LD_PRELOAD that would change what is recorded, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STALLTRACE_") and k != "LD_PRELOAD"}
    # A sanitizer build (scripts/test_asan.sh) needs its runtime preloaded
    # first in every process that loads the recorder; `run` keeps it first.
    if os.environ.get("E2E_SANITIZER_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["E2E_SANITIZER_PRELOAD"]
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ left in tests/e2e/targets
    env.update(extra)
    return env


def start_target(cfg, tmpdir, cmd, threshold=THRESHOLD_MS, env=None):
    """Start `stalltrace run` of cmd; `env`: extra variables for the target."""
    require_binaries(cfg)
    argv = [cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "%p.dump"),
            "--threshold", str(threshold), "--"] + cmd
    return Proc(argv, cwd=tmpdir, env=clean_env(**(env or {})))


def dumps_in(tmpdir):
    return sorted(glob.glob(os.path.join(tmpdir, "*.dump")))


def json_report(cfg, dump):
    rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", "json", dump], timeout=60)
    if rc != 0:
        raise Fail("report --format json %s exited %d: %s" % (os.path.basename(dump), rc, err.strip()[:400]))
    try:
        return json.loads(out)
    except ValueError as e:
        raise Fail("report --format json is not JSON (%s): %r" % (e, out[:300]))


def load_process(cfg, tmpdir, marker, proc=None):
    """The report's process entry for the run whose argv mentions `marker`,
    from every dump the run left in tmpdir.  Returns (process, report)."""
    dumps = dumps_in(tmpdir)
    if not dumps:
        raise Fail("no dump written in %s%s" % (tmpdir, proc.tail() if proc else ""))
    seen = []
    for dump in dumps:
        report = json_report(cfg, dump)
        for p in report.get("processes") or []:
            argv = " ".join(str(a) for a in (p.get("argv") or []))
            seen.append(argv or str(p.get("exe")))
            if marker in argv or marker in str(p.get("exe")):
                p["_dump"] = dump
                return p, report
    raise Fail("no process running %s in the %d dump(s); processes seen: %s"
               % (marker, len(dumps), seen))


# ---------------------------------------------------------------------------
# Assertion helpers (pure functions on the JSON report, checked by --self-test)


def fmt_frame(f):
    s = str(f.get("function") or "??")
    if f.get("file"):
        s += " (%s:%s)" % (os.path.basename(str(f["file"])), f.get("line"))
    elif f.get("module"):
        s += " [%s]" % os.path.basename(str(f["module"]))
    return s


def fmt_stack(stack, depth=8):
    stack = stack or []
    s = " < ".join(fmt_frame(f) for f in stack[:depth])
    return s + (" < ..." if len(stack) > depth else "") if stack else "(empty stack)"


def fmt_stall(s):
    return "tid %s %.1f ms call=%s samples=%d: %s" % (
        s.get("tid"), float(s.get("duration_ms") or 0), s.get("call"),
        len(s.get("samples") or []), fmt_stack(s.get("stack")))


def evidence(proc):
    """A compact excerpt of a process entry (JSON, one line per part), for
    failure messages."""
    head = {k: proc.get(k) for k in ("pid", "exe", "complete", "dropped_events", "duration_s")}
    lines = [json.dumps(head, default=str)]
    threads = proc.get("threads") or []
    for t in threads[:12]:
        lines.append("thread " + json.dumps({k: t.get(k) for k in ("tid", "name", "role", "pool", "loop")},
                                            default=str))
    if len(threads) > 12:
        lines.append("... %d more thread(s)" % (len(threads) - 12))
    stalls = proc.get("stalls") or []
    lines.append("%d stall(s)" % len(stalls))
    for s in stalls[:6]:
        e = {k: s.get(k) for k in ("tid", "start_s", "duration_ms", "call")}
        e["n_samples"] = len(s.get("samples") or [])
        lines.append("stall " + json.dumps(e, default=str))
        lines.append("  stack: " + fmt_stack(s.get("stack"), 12))
        for x in (s.get("samples") or [])[:3]:
            lines.append("  sample at %s ms: %s" % (x.get("at_ms"), fmt_stack(x.get("stack"), 8)))
    lines += pools_evidence(proc)
    lines += locks_evidence(proc)
    lines.append("diagnosis " + json.dumps(proc.get("diagnosis"), default=str))
    return "\n".join(lines)


def _compact(obj, skip=()):
    return json.dumps({k: v for k, v in obj.items() if k not in skip}, default=str, separators=(",", ":"))


def pools_evidence(proc, max_pools=6):
    """The report's pools, one compact JSON line each, with the top of busy_in."""
    pools = proc.get("pools")
    if not isinstance(pools, list):
        return ["pools: %r" % (pools,)]
    lines = ["%d pool(s)" % len(pools)]
    for pool in pools[:max_pools]:
        if not isinstance(pool, dict):
            lines.append("pool %r" % (pool,))
            continue
        head = dict((k, v) for k, v in pool.items() if k not in ("busy_in", "saturations"))
        sats = pool.get("saturations") or []
        head["saturations(%d)" % len(sats)] = sats[:4]
        lines.append("pool " + _compact(head))
        for b in (pool.get("busy_in") or [])[:3]:
            lines.append("  busy_in %s: %s" % (_compact(b, ("stack",)), fmt_stack(b.get("stack"), 10)))
    if len(pools) > max_pools:
        lines.append("... %d more pool(s)" % (len(pools) - max_pools))
    return lines


def locks_evidence(proc, max_locks=6):
    """The report's locks (the longest total waits first), one compact line each."""
    locks = proc.get("locks")
    if not isinstance(locks, list):
        return ["locks: %r" % (locks,)]
    lines = ["%d lock(s)" % len(locks)]
    ordered = sorted((l for l in locks if isinstance(l, dict)),
                     key=lambda l: -float(l.get("wait_total_ms") or 0))
    for lock in ordered[:max_locks]:
        lines.append("lock " + _compact(lock, ("stack",)))
        lines.append("  stack: " + fmt_stack(lock.get("stack"), 10))
    if len(locks) > max_locks:
        lines.append("... %d more lock(s)" % (len(locks) - max_locks))
    return lines


def expect(cond, message, proc=None):
    if not cond:
        raise Fail(message + ("\n    evidence: " + evidence(proc).replace("\n", "\n    ") if proc else ""))


def thread_of(proc, tid):
    for t in proc.get("threads") or []:
        if t.get("tid") == tid:
            return t
    return None


def main_loop_thread(proc, min_iterations):
    """The main thread (tid == pid) must be a loop thread with enough iterations."""
    pid = proc.get("pid")
    t = thread_of(proc, pid)
    expect(t is not None, "no thread entry for the main thread (tid == pid %s)" % pid, proc)
    expect(t.get("role") == "loop", "main thread role is %r, expected 'loop'" % t.get("role"), proc)
    loop = t.get("loop") or {}
    iterations = loop.get("iterations")
    expect(isinstance(iterations, int) and iterations > min_iterations,
           "main loop thread has %r iterations, expected > %d" % (iterations, min_iterations), proc)
    return t


def stalls_of(proc, tid=None):
    return [s for s in proc.get("stalls") or [] if tid is None or s.get("tid") == tid]


def main_stalls(proc, count=None):
    stalls = stalls_of(proc, proc.get("pid"))
    if count is not None:
        expect(len(stalls) == count, "%d stall(s) on the main thread, expected %d"
               % (len(stalls), count), proc)
    return stalls


def duration_within(proc, stall, lo, hi):
    d = stall.get("duration_ms")
    expect(isinstance(d, (int, float)) and lo <= d <= hi,
           "stall duration %r ms, expected %g..%g ms" % (d, lo, hi), proc)


def call_in(proc, stall, names):
    expect(stall.get("call") in names, "stall call is %r, expected %s"
           % (stall.get("call"), " or ".join(map(repr, names))), proc)


def no_recorder_frames(proc, stack):
    """Neither the preload's frames nor the Python hook's (stalltrace_hook/)."""
    bad = [f for f in stack or [] if "libstalltrace" in str(f.get("module") or "")
           or "stalltrace_hook" in str(f.get("file") or "")]
    expect(not bad, "the recorder's own frames are in the stack: %s" % fmt_stack(bad), proc)


def module_base(f):
    return os.path.basename(str(f.get("module") or ""))


def is_time_sleep_frame(f):
    return (f.get("function") in ("pysleep", "time_sleep")
            or "timemodule" in str(f.get("file") or ""))


def is_python_module_frame(f, minor=None):
    base = module_base(f)
    if minor is None:
        return base.startswith("libpython3") or base.startswith("python3")
    return base.startswith("libpython3.%d" % minor) or base.startswith("python3.%d" % minor)


def is_interpreter_frame(f):
    """A frame of CPython's bytecode evaluation loop."""
    return is_python_module_frame(f) and "EvalFrame" in str(f.get("function") or "")


def has_time_module_frame(proc, stack, minor, interpreter_has_symbols):
    """A frame of CPython's time module (time_sleep / pysleep); when the
    interpreter has no symbols at all, a frame of the interpreter's module."""
    if any(is_time_sleep_frame(f) for f in stack or []):
        return
    if not interpreter_has_symbols and any(is_python_module_frame(f, minor) for f in stack or []):
        return
    expect(False, "no frame of CPython's time module (time_sleep/pysleep) in the stack: %s"
           % fmt_stack(stack, 16), proc)


def frame_named(stack, function):
    for f in stack or []:
        if f.get("function") == function:
            return f
    return None


def healthy_under_load(proc, client_max_ms, what):
    """A healthy server under a load generator: no stall and no diagnosis,
    except a stall the loop spent mostly runnable, waiting for a CPU, which
    the clients saw too (their worst latency is at least as long) and which
    the report puts down to cpu_starvation: the machine, not the program.
    Returns what the report said, in a few words."""
    starved = []
    for s in proc.get("stalls") or []:
        runq = s.get("runq_ms") or 0
        expect(runq >= 0.5 * s["duration_ms"], "healthy %s stalled %.1f ms in %s, runnable %.1f ms of it"
               % (what, s["duration_ms"], s.get("call"), runq), proc)
        expect(client_max_ms >= 0.8 * s["duration_ms"], "healthy %s stalled %.1f ms waiting for a CPU, but the "
               "clients' worst latency was %.1f ms" % (what, s["duration_ms"], client_max_ms), proc)
        starved.append(s["duration_ms"])
    names = diagnosis_names(proc)
    expect(names == (["cpu_starvation"] if starved else []), "healthy %s got a diagnosis: %s"
           % (what, proc.get("diagnosis")), proc)
    if not starved:
        return "no stall, no diagnosis"
    return "only %d stall(s) of %s ms waiting for a CPU on this loaded machine (cpu_starvation)" % (
        len(starved), "/".join("%.0f" % d for d in starved))


def diagnosis_names(proc):
    return [d.get("culprit") for d in proc.get("diagnosis") or []]


CULPRITS = ("event_loop_blocking", "thread_pool_exhaustion", "lock_contention", "cpu_starvation")


def check_schema(report):
    """The fields SPEC.md says every JSON report has (with their types)."""
    problems = []

    def need(obj, key, types, where):
        if not isinstance(obj, dict) or key not in obj:
            problems.append("%s: missing %r" % (where, key))
            return None
        v = obj[key]
        if not isinstance(v, types):
            problems.append("%s.%s: %r is not %s" % (where, key, v, "/".join(t.__name__ for t in types)))
            return None
        return v

    num = (int, float)
    nnum = (int, float, type(None))
    nstr = (str, type(None))

    def frames(stack, where):
        for i, f in enumerate(stack or []):
            w = "%s[%d]" % (where, i)
            need(f, "function", nstr, w)
            need(f, "module", nstr, w)
            need(f, "file", nstr, w)
            need(f, "line", (int, type(None)), w)
            kind = need(f, "kind", (str,), w)
            if kind is not None and kind not in ("native", "python", "jit"):
                problems.append("%s.kind: %r" % (w, kind))

    if report.get("format") != "stalltrace-report":
        problems.append("format: %r" % report.get("format"))
    if report.get("version") != 1:
        problems.append("version: %r" % report.get("version"))
    for i, p in enumerate(need(report, "processes", (list,), "report") or []):
        w = "processes[%d]" % i
        need(p, "pid", (int,), w)
        need(p, "exe", (str,), w)
        need(p, "argv", (list,), w)
        need(p, "duration_s", num, w)
        need(p, "complete", (bool,), w)
        need(p, "attached", (bool,), w)
        need(p, "dropped_events", (int,), w)
        for j, t in enumerate(need(p, "threads", (list,), w) or []):
            wt = "%s.threads[%d]" % (w, j)
            need(t, "tid", (int,), wt)
            need(t, "name", nstr, wt)
            role = need(t, "role", (str,), wt)
            if role is not None and role not in ("loop", "worker", "other"):
                problems.append("%s.role: %r" % (wt, role))
            if "pool" not in t:
                problems.append("%s: missing 'pool'" % wt)
            if role == "loop":
                loop = need(t, "loop", (dict,), wt)
                if loop is not None:
                    need(loop, "iterations", (int,), wt + ".loop")
                    for k in ("busy_s", "utilization", "p50_ms", "p99_ms", "max_ms"):
                        need(loop, k, num, wt + ".loop")
        for j, s in enumerate(need(p, "stalls", (list,), w) or []):
            ws = "%s.stalls[%d]" % (w, j)
            need(s, "tid", (int,), ws)
            need(s, "start_s", num, ws)
            need(s, "duration_ms", num, ws)
            need(s, "call", nstr, ws)
            frames(need(s, "stack", (list,), ws), ws + ".stack")
            for k, x in enumerate(need(s, "samples", (list,), ws) or []):
                need(x, "at_ms", num, "%s.samples[%d]" % (ws, k))
                frames(need(x, "stack", (list,), "%s.samples[%d]" % (ws, k)), "%s.samples[%d].stack" % (ws, k))
        for j, pool in enumerate(need(p, "pools", (list,), w) or []):
            wp = "%s.pools[%d]" % (w, j)
            need(pool, "id", (int,), wp)
            need(pool, "threads", (int,), wp)
            need(pool, "busy_ratio", num, wp)
            need(pool, "saturated_s", num, wp)
            kind = need(pool, "kind", nstr, wp)
            if kind is not None and not re.match(r"^[a-z0-9-]+$", kind):
                problems.append("%s.kind: %r" % (wp, kind))
            need(pool, "max_threads", (int, type(None)), wp)
            for k, x in enumerate(need(pool, "saturations", (list,), wp) or []):
                need(x, "start_s", num, "%s.saturations[%d]" % (wp, k))
                need(x, "duration_ms", num, "%s.saturations[%d]" % (wp, k))
            for k, b in enumerate(need(pool, "busy_in", (list,), wp) or []):
                wb = "%s.busy_in[%d]" % (wp, k)
                need(b, "call", nstr, wb)
                need(b, "total_ms", num, wb)
                frames(need(b, "stack", (list,), wb), wb + ".stack")
            q = need(pool, "queue_wait_ms", (dict, type(None)), wp)
            if q is not None:
                need(q, "exact", (bool,), wp + ".queue_wait_ms")
                need(q, "count", (int,), wp + ".queue_wait_ms")
                for k in ("p50", "p99", "max"):
                    need(q, k, nnum, wp + ".queue_wait_ms")
        for j, lock in enumerate(need(p, "locks", (list,), w) or []):
            wl = "%s.locks[%d]" % (w, j)
            need(lock, "object", (str,), wl)
            need(lock, "symbol", nstr, wl)
            kind = need(lock, "kind", (str,), wl)
            if kind is not None and kind not in ("mutex", "rwlock", "cond", "sem"):
                problems.append("%s.kind: %r" % (wl, kind))
            need(lock, "contentions", (int,), wl)
            need(lock, "wait_total_ms", num, wl)
            need(lock, "wait_max_ms", num, wl)
            frames(need(lock, "stack", (list,), wl), wl + ".stack")
        for j, d in enumerate(need(p, "diagnosis", (list,), w) or []):
            culprit = need(d, "culprit", (str,), "%s.diagnosis[%d]" % (w, j))
            if culprit is not None and culprit not in CULPRITS:
                problems.append("%s.diagnosis[%d].culprit: %r" % (w, j, culprit))
            need(d, "summary", (str,), "%s.diagnosis[%d]" % (w, j))
    return problems


# The per-target checks.  Each takes a report's process entry, raises Fail,
# and returns a short note for the `ok` line.


# ---------------------------------------------------------------------------
# ELF: does a binary carry a symbol table? (decides how strict a stack check is)


def elf_has_symtab(path):
    try:
        with open(path, "rb") as fh:
            ident = fh.read(64)
            if ident[:4] != b"\x7fELF" or ident[4] != 2:
                return False
            shoff, = struct.unpack_from("<Q", ident, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", ident, 0x3A)
            fh.seek(shoff)
            table = fh.read(shentsize * shnum)
        for i in range(shnum):
            sh_type, = struct.unpack_from("<I", table, i * shentsize + 4)
            if sh_type == 2:  # SHT_SYMTAB
                return True
    except (OSError, struct.error):
        pass
    return False


def interpreter_has_symbols(python):
    """True if the interpreter or its libpython has a full symbol table."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    libs = glob.glob(os.path.join(prefix, "lib", "libpython3*.so*"))
    return any(elf_has_symtab(p) for p in [os.path.realpath(python)] + libs)


# ---------------------------------------------------------------------------
# Registries: tests and self-tests.  The test modules (tests/e2e/test_*.py)
# register on import; run_e2e.py imports them in name order and runs the
# tests in the order they were registered.


TESTS = []       # (name, fn(cfg, tmpdir) -> note)
SELF_TESTS = []  # fn(case): checks assertion helpers on hand-written reports


def test(name):
    def register(fn):
        if any(n == name for n, _ in TESTS):
            raise ValueError("two e2e tests named %r" % name)
        TESTS.append((name, fn))
        return fn
    return register


def self_test(fn):
    """Register fn(case); it calls case(name, check, proc, should_pass) for
    each hand-written report it checks (see run_e2e.py --self-test)."""
    SELF_TESTS.append(fn)
    return fn


def mutate(proc, fn):
    """A deep copy of proc changed by fn (for self-tests)."""
    p = copy.deepcopy(proc)
    fn(p)
    return p


def fixture(name):
    with open(os.path.join(HERE, "fixtures", name)) as fh:
        return json.load(fh)


# ---------------------------------------------------------------------------
# Running targets


def run_to_end(cfg, tmpdir, cmd, marker, timeout=TEST_TIMEOUT_S, env=None):
    """Run a target that ends by itself; returns its report's process entry
    (with the target's stdout lines under "_stdout") and the report."""
    p = start_target(cfg, tmpdir, cmd, env=env)
    try:
        rc = p.wait(timeout)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d, expected 0 (the target's status)%s" % (rc, p.tail()))
    proc, report = load_process(cfg, tmpdir, marker, p)
    proc["_stdout"] = list(p.out)
    if cfg.verbose:
        print("    " + evidence(proc).replace("\n", "\n    "))
    return proc, report


def truth_values(lines):
    """The TRUTH lines a target printed ("TRUTH name ms"): {name: [ms, ...]}."""
    truth = {}
    for line in lines:
        m = re.match(r"TRUTH (\S+) ([\d.]+)", line)
        if m:
            truth.setdefault(m.group(1), []).append(float(m.group(2)))
    return truth


def target(name):
    return os.path.join(TARGETS, name)


def c_target_binary(cfg, tmpdir, name, extra_args=()):
    """The C target `name` (targets/<name>.c) as meson built it, or built here
    the same way when the build has none (tests/e2e is not in the meson
    build yet).  Returns (path, note)."""
    built = cfg.built_target(name)
    if os.path.exists(built):
        return built, ""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("%s is not built and there is no C compiler" % built)
    out = os.path.join(tmpdir, name)
    rc, _, err = run_cmd([cc, "-std=gnu11", "-D_GNU_SOURCE", "-g", "-O1", "-fno-omit-frame-pointer",
                          "-o", out, target(name + ".c")] + list(extra_args), timeout=60)
    expect(rc == 0, "cannot build %s: %s" % (name, err[:400]))
    return out, " (built by the harness: %s missing)" % os.path.relpath(built, REPO)




# ---------------------------------------------------------------------------
# The metrics server (tests/e2e/test_metrics_server.py, test_hostile_files.py)


def start_metrics(cfg, pattern, extra=(), env=None):
    """`stalltrace metrics` on 127.0.0.1:0 for pattern: (Proc, port)."""
    m = Proc([cfg.stalltrace, "metrics", "--listen", "127.0.0.1:0"] + list(extra) + [pattern],
             env=clean_env(**(env or {})))
    line = m.wait_for_line(r"^listening on ", 20)
    mm = re.match(r"^listening on 127\.0\.0\.1:(\d+)( \(TLS\))?$", line)
    expect(mm, "metrics printed %r" % line)
    return m, int(mm.group(1))


def scrape_metrics(port, timeout=60):
    """GET /metrics: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric_value(body, name):
    """The value of an unlabelled sample in a scrape; Fail when missing."""
    m = re.search(r"^%s (\S+)$" % name, body, re.M)
    expect(m, "no %s in the scrape:\n%s" % (name, body[:600]))
    return float(m.group(1))


def proc_status_kb(pid, field):
    """A kB figure of /proc/PID/status (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise Fail("no %s in /proc/%d/status" % (field, pid))
