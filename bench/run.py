#!/usr/bin/env python3
"""run.py - what stalltrace costs, next to its peers, measured in one run.

    python3 bench/run.py [--quick] [--output FILE]

Every measure runs plain and under stalltrace (and, where installed, under
`strace -f -c`, `perf trace -s` and asyncio debug mode), interleaved over
several rounds, each round in a different order; the tables give medians,
min-max and ratios to plain, and the budgets of issue 7 are checked at the
end. Only same-run, interleaved medians mean anything on a shared machine.
The Markdown goes to bench/RESULTS.md (--quick: build/bench-quick.md).

--quick is the CI run: few rounds, small sizes, no peers. It checks that
every part still runs, not the figures.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The budgets of issue 7.
SYNC_NS, IO_NS, WAIT_NS = 3.0, 15.0, 30.0


class Ctx:
    """What every measure needs: paths, sizes, the temporary directory, notes."""

    def __init__(self, args, tmp):
        self.args = args
        self.quick = args.quick
        self.tmp = tmp
        self.build = os.path.abspath(args.build_dir)
        # A private copy: a rebuild during the run must not change what is measured.
        self.preload = os.path.join(tmp, "libstalltrace.so")
        shutil.copy2(os.path.join(self.build, "preload", "libstalltrace.so"), self.preload)
        self.analyzer = os.path.join(self.build, "analyzer", "stalltrace")
        self.python = args.python
        self.notes = []
        self.out = []
        self.budgets = []
        self.seq = 0

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
            print(f"note: {text}", flush=True)

    def emit(self, text=""):
        self.out.append(text)
        print(text, flush=True)

    def dumpdir(self):
        self.seq += 1
        d = os.path.join(self.tmp, f"dumps{self.seq}")
        os.makedirs(d, exist_ok=True)
        return d


# ---- processes ------------------------------------------------------------------------


def base_env():
    env = dict(os.environ)
    for k in list(env):
        if k == "LD_PRELOAD" or k.startswith("STALLTRACE_") or k.startswith("PYTHONASYNCIODEBUG") \
                or k == "PYTHONDEVMODE":
            del env[k]
    return env


def env_for(ctx, variant, dumpdir=None, extra=None):
    env = base_env()
    if variant.startswith("stalltrace"):
        env["LD_PRELOAD"] = ctx.preload
        env["STALLTRACE_OUTPUT"] = os.path.join(dumpdir or ctx.tmp, "%e.%p.dump")
    elif variant == "asyncio-debug":
        env["PYTHONASYNCIODEBUG"] = "1"
    env.update(extra or {})
    return env


def prefix_for(ctx, variant):
    """A peer started with the command (for the in-process workloads)."""
    out = os.path.join(ctx.tmp, f"peer.{variant}.txt")
    if variant == "strace":
        return ["strace", "-f", "-c", "-o", out]
    if variant == "perf-trace":
        return ["perf", "trace", "-s", "-o", out, "--"]
    if variant == PROFILED:
        return ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", out + ".data", "--"]
    return []


def attach_peer(ctx, variant, pids):
    """A peer attached to a running server (strace / perf trace), ready to measure."""
    out = os.path.join(ctx.tmp, f"peer.{variant}.txt")
    if variant == "strace":
        cmd = ["strace", "-f", "-c", "-o", out]
        for p in pids:
            cmd += ["-p", str(p)]
    elif variant == "perf-trace":
        cmd = ["perf", "trace", "-s", "-o", out, "-p", ",".join(map(str, pids))]
    elif variant == PROFILED:
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", out + ".data",
               "-p", ",".join(map(str, pids))]
    else:
        return None
    peer = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if variant == "strace":
        # strace says "Process N attached" once per process it took.
        deadline, seen = time.monotonic() + 10, 0
        while seen < len(pids) and time.monotonic() < deadline:
            r, _, _ = select.select([peer.stderr], [], [], 0.5)
            if r:
                line = peer.stderr.readline()
                if not line:
                    break
                seen += "attached" in line
        time.sleep(0.2)
    else:
        time.sleep(1.5)        # perf trace says nothing when it is ready
    if peer.poll() is not None:
        raise RuntimeError(f"{variant} could not attach: {peer.stderr.read().strip()[:200]}")
    return peer


# Preloaded and sampled by `perf record`: the share of the server's CPU spent
# in libstalltrace.so itself, a figure that does not depend on comparing two
# noisy runs (it leaves out what the recorder costs the kernel or the caches).
PROFILED = "stalltrace, profiled"


def recorder_pct(ctx):
    """Percent of the samples of the last profiled run in libstalltrace.so."""
    data = os.path.join(ctx.tmp, f"peer.{PROFILED}.txt.data")
    out = subprocess.run(["perf", "report", "-i", data, "--sort", "dso", "-g", "none", "--stdio"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if m and m.group(2) == os.path.basename(ctx.preload):
            return float(m.group(1))
    return 0.0


def pinned(cpu):
    """Servers on CPU 0, load clients on CPU 1: the two stop trading places
    between rounds, which swings CPU per request more than the recorder costs."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def start_server(ctx, variant, dumps, cmd):
    """A server on CPU 0, preloaded for the stalltrace runs; peers attach to it."""
    return subprocess.Popen(pinned(0) + cmd,
                            env=env_for(ctx, variant if variant.startswith("stalltrace") else "plain",
                                        dumps),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc, sig=signal.SIGTERM, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_ns(pids):
    """CPU time of every thread of these processes, in ns (schedstat; /proc/PID/stat as
    a fallback, in clock ticks)."""
    total = 0
    for pid in pids:
        for task in glob.glob(f"/proc/{pid}/task/*"):
            try:
                with open(f"{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                try:
                    with open(f"{task}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) * 1e9 / os.sysconf("SC_CLK_TCK")
                except (OSError, ValueError, IndexError):
                    pass
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def dump_sizes(dumpdir):
    files = glob.glob(os.path.join(dumpdir, "*.dump"))
    return (sum(os.path.getsize(f) for f in files),
            sum(os.stat(f).st_blocks * 512 for f in files), len(files))


# ---- statistics and tables ------------------------------------------------------------


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, digits=2):
    if x != x:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def cell(xs, digits=2):
    if not xs:
        return "n/a"
    return f"{fmt(med(xs), digits)} ({fmt(min(xs), digits)}-{fmt(max(xs), digits)})"


def rounds_of(ctx, variants, measure):
    """Runs measure(variant) for each variant, each round in another order.
    Returns {variant: {metric: [values]}}; a variant that fails is noted and dropped."""
    got = {v: {} for v in variants}
    failed = set()
    for r in range(ctx.args.rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for v in order:
            if v in failed:
                continue
            try:
                for k, x in measure(v).items():
                    got[v].setdefault(k, []).append(x)
                if v == PROFILED:
                    got[v].setdefault("recorder_pct", []).append(recorder_pct(ctx))
            except Exception as e:      # a peer that cannot run is a note, not a figure
                failed.add(v)
                ctx.note(f"{measure.__name__}: {v} skipped: {e}")
    return {v: m for v, m in got.items() if v not in failed and m}


def ratio_table(ctx, title, results, metrics):
    """metrics: [(key, label, digits)]; ratios are to plain, median over median."""
    ctx.emit(f"\n### {title}\n")
    ctx.emit("| run | " + " | ".join(f"{label} (median, min-max)" for _, label, _ in metrics)
             + " | " + " | ".join(f"{label} / plain" for _, label, _ in metrics) + " |")
    ctx.emit("|---" * (1 + 2 * len(metrics)) + "|")
    plain = results.get("plain", {})
    for v, m in results.items():
        row = [v] + [cell(m.get(k, []), d) for k, _, d in metrics]
        for k, _, _ in metrics:
            base = med(plain.get(k, []))
            row.append(f"{med(m.get(k, [])) / base:.3f}" if base and m.get(k) else "n/a")
        ctx.emit("| " + " | ".join(row) + " |")
    pct = results.get(PROFILED, {}).get("recorder_pct")
    if pct:
        ctx.emit(f"\nThe recorder's own share of the measured process's CPU (`perf record` "
                 f"samples in libstalltrace.so, run \"{PROFILED}\"): {cell(pct, 2)} %.")


def ratio(results, variant, key):
    try:
        return med(results[variant][key]) / med(results["plain"][key])
    except (KeyError, ZeroDivisionError):
        return float("nan")


def own_share_budget(ctx, what, res):
    pct = res.get(PROFILED, {}).get("recorder_pct")
    if pct:
        budget(ctx, f"{what}: recorder's own share of server CPU, %", med(pct), "<= 2",
               med(pct) <= 2, "perf record samples in libstalltrace.so, median")


def budget(ctx, what, measured, bound, ok, how=""):
    verdict = "n/a" if measured != measured else ("met" if ok else "**missed**")
    ctx.budgets.append((what, measured, bound, verdict, how))


# ---- micro ------------------------------------------------------------------------------


def micro(ctx):
    exe = os.path.join(ctx.build, "bench", "micro")
    iters = 200000 if ctx.quick else 5000000
    ab_rounds = 41 if ctx.quick else 401
    dumps = ctx.dumpdir()

    def run(variant):
        out = subprocess.run([exe, str(iters)], env=env_for(ctx, variant, dumps), check=True,
                             capture_output=True, text=True, timeout=300).stdout
        calls = {}
        res = {}
        for line in out.splitlines():
            name, ns, n = line.split()
            res[name] = float(ns)
            calls[name] = int(n)
        micro.calls = calls
        return res
    run.__name__ = "micro"
    res = rounds_of(ctx, ["plain", "stalltrace"], run)
    plain, pre = res["plain"], res["stalltrace"]

    # In-process A/B: the wrapper's cost without two processes' differences.
    # Plain processes run the same method with both tables on libc: their
    # figures are the method's own noise.
    def ab(variant):
        out = subprocess.run([exe, "--ab", str(ab_rounds)], env=env_for(ctx, variant, dumps),
                             check=True, capture_output=True, text=True, timeout=600).stdout
        return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}
    ab.__name__ = "micro --ab"
    ab_res = rounds_of(ctx, ["plain", "stalltrace"], ab)
    ab_added = {k: med(v) for k, v in ab_res.get("stalltrace", {}).items()}    # over processes
    ab_noise = {k: max(abs(x) for x in v) for k, v in ab_res.get("plain", {}).items()}

    counts = callgrind(ctx, exe) if not ctx.args.no_callgrind else {}
    ctx.emit("\n### Wrapped calls, ns per operation\n")
    ctx.emit(f"Per process: each runs every operation {iters:,} times (system calls a tenth of "
             f"that, nanosleep a thousandth) and keeps the best of three passes; "
             f"{ctx.args.rounds} processes each, interleaved. `control_` rows are not wrapped: "
             "their difference is the noise between processes. **Added per call** is the "
             f"in-process A/B (`micro --ab {ab_rounds}`): blocks through the wrappers and through "
             "libc's own functions alternate in one process; each side is read at the 20th "
             "percentile of its block times (noise only adds time) and the figure is their "
             "difference, the median over the processes; the same run without the preload "
             "(both blocks on libc) gives the method's noise. Instructions are callgrind's count of user-space "
             "instructions per operation (repeatable; the kernel's work is not in it).\n")
    ctx.emit("| operation | wrapped calls | plain ns (median, min-max) | preloaded ns | "
             "added ns per wrapped call (A/B) | A/B noise without preload | plain instr | "
             "preloaded instr | added instr per wrapped call |")
    ctx.emit("|---|---|---|---|---|---|---|---|---|")
    added = {}
    for name in plain:
        n = micro.calls.get(name, 1)
        if name in ab_added:
            added[name] = ab_added[name]
        ci = counts.get(name)
        cols = ["n/a"] * 3
        if ci:
            cols = [f"{ci[0]:.1f}", f"{ci[1]:.1f}", f"{(ci[1] - ci[0]) / max(n, 1):+.1f}"]
        a = f"{added[name]:+.2f}" if name in added else "-"
        noise = f"{ab_noise[name]:.2f}" if name in ab_noise else "-"
        ctx.emit(f"| {name} | {n} | {cell(plain[name])} | {cell(pre[name])} | {a} | {noise} | "
                 + " | ".join(cols) + " |")
    syscall_noise = abs(med(pre.get("control_getppid_syscall", [])) -
                        med(plain.get("control_getppid_syscall", [])))
    spread = lambda k: (max(plain[k]) - min(plain[k])) if k in plain else float("nan")
    ctx.emit(f"\nBetween processes a bare system call moved by {syscall_noise:.1f} ns (plain "
             f"getppid() spread over rounds: {spread('control_getppid_syscall'):.0f} ns): "
             "more than the budgets, hence the A/B figures.")

    for name in ("mutex_lock_unlock", "rwlock_rdlock_unlock", "rwlock_wrlock_unlock",
                 "sem_post_wait", "cond_signal_no_waiter", "cond_broadcast_no_waiter"):
        if name in added:
            budget(ctx, f"sync: {name}, ns added per call", added[name], f"<= {SYNC_NS:g}",
                   added[name] <= SYNC_NS, f"A/B; noise {ab_noise.get(name, 0):.2f} ns")
    for name, bound in (("recv_nonblocking_with_data", IO_NS), ("read_nonblocking_eagain", IO_NS),
                        ("recv_blocking_fd_with_data", IO_NS),
                        ("epoll_wait_0", WAIT_NS), ("epoll_wait_ready", WAIT_NS)):
        if name not in added:
            continue
        ci = counts.get(name)
        how = f"A/B; noise {ab_noise.get(name, 0):.1f} ns"
        if ci:
            how += f"; callgrind {ci[1] - ci[0]:+.0f} instr/call"
        what = "event wait" if name.startswith("epoll") else "wrapped I/O"
        budget(ctx, f"{what}: {name}, ns added per call", added[name], f"<= {bound:g}",
               added[name] <= bound, how)
    ctx.micro = (plain, pre, added, counts)


# ---- attach ----------------------------------------------------------------------------


def attach_detach(ctx):
    """Wrapped calls in one process: plain, attached, after detach (issue 15:
    after detach the process costs nothing more). Twice: the program
    single-threaded, and with an idle thread of its own (as a service has)."""
    exe = os.path.join(ctx.build, "bench", "attach_micro")
    passes = 1 if ctx.quick else 3
    attach_ms = []

    def measure(proc, phase, got):
        proc.stdin.write("measure\n")
        proc.stdin.flush()
        for line in iter(proc.stdout.readline, ""):
            if line.strip() == "END":
                return
            name, ns = line.split()
            got[phase].setdefault(name, []).append(float(ns))
        raise RuntimeError("attach_micro ended")

    def one_process(args, got):
        proc = subprocess.Popen(pinned(0) + [exe] + args, env=base_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(passes):
                measure(proc, "plain", got)
            dump = os.path.join(ctx.dumpdir(), "attached.dump")
            t0 = time.monotonic()
            subprocess.run([ctx.analyzer, "attach", str(proc.pid), "-o", dump], check=True,
                           capture_output=True, timeout=30)
            attach_ms.append((time.monotonic() - t0) * 1000)
            measure(proc, "attached", got)
            subprocess.run([ctx.analyzer, "detach", str(proc.pid)], check=True, capture_output=True,
                           timeout=30)
            time.sleep(0.3)            # the recorder's threads end
            for _ in range(passes):
                measure(proc, "after detach", got)
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    kinds = [("threaded", ["threaded"]), ("single-threaded", [])]
    got = {kind: {"plain": {}, "attached": {}, "after detach": {}} for kind, _ in kinds}
    for r in range(ctx.args.rounds):
        for kind, args in (kinds if r % 2 == 0 else list(reversed(kinds))):
            one_process(args, got[kind])
    ctx.emit("\n### Attach, then detach: wrapped calls in one process\n")
    ctx.emit(f"`bench/attach_micro` times each call (best of five passes) {passes} time(s) before "
             f"`stalltrace attach`, once attached, and {passes} time(s) after `stalltrace detach`, "
             f"in {ctx.args.rounds} processes of each kind; medians over all passes (min-max). The calls go "
             "through the program's GOT, which attach takes over and detach gives back. "
             f"`attach` took {cell(attach_ms, 0)} ms, from the command's start to its return "
             "(recording from then on). *threaded*: the program has an idle thread of its own, "
             "as a service has; *single-threaded*: the recorder's threads are its first, after "
             "which glibc takes its multi-threaded paths for good (atomic lock instructions, "
             "cancellation around system calls): the cost of any thread's creation, not of "
             "stalltrace's wrappers.\n")
    ctx.emit("| program | operation | plain ns | attached ns | after detach ns | after detach / plain |")
    ctx.emit("|---|---|---|---|---|---|")
    worst = 0.0
    for kind, _ in kinds:
        for name, plain in got[kind]["plain"].items():
            after = got[kind]["after detach"].get(name, [])
            r = med(after) / med(plain) if plain and after else float("nan")
            if kind == "threaded":
                worst = max(worst, abs(r - 1))
            ctx.emit(f"| {kind} | {name} | {cell(plain)} | {cell(got[kind]['attached'].get(name, []))} | "
                     f"{cell(after)} | {r:.3f} |")
    budget(ctx, "attach: wrapped calls after detach / plain (threaded program), worst |ratio - 1|", worst,
           "<= 0.05", worst <= 0.05, "attach_micro, medians in one process")


def callgrind(ctx, exe):
    """User-space instructions per operation, plain and preloaded: callgrind counts of
    two runs of different lengths, differenced, so start-up and first calls cancel."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        ctx.note("valgrind (callgrind) is not installed: no instruction counts")
        return {}
    base = 2000 if ctx.quick else 40000
    dumps = ctx.dumpdir()
    per = {}
    for variant in ("plain", "stalltrace"):
        for iters in (base, 2 * base):
            out = os.path.join(ctx.tmp, f"callgrind.{variant}.{iters}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            "--toggle-collect=op_*", exe, str(iters)],
                           env=env_for(ctx, variant, dumps), check=True, capture_output=True,
                           timeout=600)
            ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                                 capture_output=True, text=True, check=True).stdout
            for line in ann.splitlines():
                m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S*:op_(\w+)\s", line)
                if m:
                    per.setdefault(m.group(2), {}).setdefault(variant, {})[iters] = \
                        int(m.group(1).replace(",", ""))
    counts = {}
    for name, v in per.items():
        div = 1000 if name == "nanosleep_0" else 10 if (
            name.startswith(("recv", "read", "epoll", "control_getppid"))) else 1
        calls = lambda iters: 3 * max(iters // div, 1)    # three passes
        try:
            counts[name] = tuple((v[var][2 * base] - v[var][base]) / (calls(2 * base) - calls(base))
                                 for var in ("plain", "stalltrace"))
        except (KeyError, ZeroDivisionError):
            pass
    return counts


# ---- macro ------------------------------------------------------------------------------


def peers(ctx, python=False):
    v = ["plain", "stalltrace"]
    if ctx.quick or ctx.args.no_peers:
        return v
    if ctx.have_strace:
        v.append("strace")
    if ctx.have_perf:
        v.append("perf-trace")
    if ctx.have_perf_record:
        v.append(PROFILED)
    if python:
        v.append("asyncio-debug")
    return v


def redis(ctx):
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        ctx.note("redis-server / redis-benchmark not installed: redis skipped "
                 "(apt-get install redis-server redis-tools)")
        return
    n = 20000 if ctx.quick else 200000
    dumps = ctx.dumpdir()

    def redis_benchmark(variant):
        port = free_port()
        srv = start_server(ctx, variant, dumps,
                           ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--daemonize", "no",
                            "--dir", ctx.tmp, "--logfile", ""])
        peer = None
        try:
            wait_port(port, srv)
            peer = attach_peer(ctx, variant, [srv.pid])
            c0, t0 = cpu_ns([srv.pid]), time.perf_counter()
            subprocess.run(pinned(1) + ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "16",
                            "-n", str(n), "-t", "set,get", "-q"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
            t1, c1 = time.perf_counter(), cpu_ns([srv.pid])
            rss = rss_kb(srv.pid)
        finally:
            stop(peer, signal.SIGINT)
            stop(srv)
        return {"req_per_s": 2 * n / (t1 - t0), "server_cpu_us_per_req": (c1 - c0) / 1e3 / (2 * n),
                "server_rss_kb": rss}
    res = rounds_of(ctx, peers(ctx), redis_benchmark)
    ratio_table(ctx, f"redis-server {redis_version()} under redis-benchmark "
                f"(16 connections, {n:,} SET + {n:,} GET)", res,
                [("req_per_s", "requests/s", 0), ("server_cpu_us_per_req", "server CPU us/request", 3)])
    r = ratio(res, "stalltrace", "server_cpu_us_per_req")
    budget(ctx, "redis: server CPU per request, stalltrace / plain", r, "<= 1.02", r <= 1.02)
    own_share_budget(ctx, "redis", res)
    ctx.redis = res
    ctx.redis_dump = dump_sizes(dumps)


def redis_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else ""


NGINX_CONF = """worker_processes 1;
master_process on;
daemon off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {d}/www; }}
    }}
}}
"""


def nginx(ctx):
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")) or not shutil.which("wrk"):
        ctx.note("nginx / wrk not installed: nginx skipped (apt-get install nginx wrk)")
        return
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    secs = 2 if ctx.quick else 5
    dumps = ctx.dumpdir()
    d = os.path.join(ctx.tmp, "nginx")
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "index.html"), "w") as f:
        f.write("<!doctype html><title>bench</title>" + "x" * 560 + "\n")

    def nginx_wrk(variant):
        port = free_port()
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(d=d, port=port))
        srv = start_server(ctx, variant, dumps, [exe, "-p", d, "-c", os.path.join(d, "nginx.conf"),
                                                 "-e", os.path.join(d, "error.log")])
        peer = None
        try:
            wait_port(port, srv)
            pids = [srv.pid] + children(srv.pid)
            peer = attach_peer(ctx, variant, pids)
            c0 = cpu_ns(pids)
            out = subprocess.run(pinned(1) + ["wrk", "-t1", "-c16", f"-d{secs}s",
                                  f"http://127.0.0.1:{port}/index.html"], check=True,
                                 capture_output=True, text=True, timeout=120).stdout
            c1 = cpu_ns(pids)
        finally:
            stop(peer, signal.SIGINT)
            stop(srv, signal.SIGQUIT)
        m = re.search(r"(\d+) requests in", out)
        rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
        return {"req_per_s": rate, "server_cpu_us_per_req": (c1 - c0) / 1e3 / int(m.group(1))}
    res = rounds_of(ctx, peers(ctx), nginx_wrk)
    ratio_table(ctx, f"nginx (master + 1 worker, static 600-byte page) under wrk "
                f"(1 thread, 16 connections, {secs} s)", res,
                [("req_per_s", "requests/s", 0), ("server_cpu_us_per_req", "server CPU us/request", 2)])
    r = ratio(res, "stalltrace", "req_per_s")
    budget(ctx, "nginx: requests/s, stalltrace / plain", r, ">= 0.99", r >= 0.99)
    own_share_budget(ctx, "nginx", res)


def echo(ctx):
    conns, msgs = 4, (500 if ctx.quick else 4000)
    dumps = ctx.dumpdir()

    def asyncio_echo(variant):
        pre = prefix_for(ctx, variant) if variant in ("strace", "perf-trace", PROFILED) else []
        srv = subprocess.Popen(pinned(0) + pre + [ctx.python, os.path.join(HERE, "echo_server.py")],
                               env=env_for(ctx, variant, dumps), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        try:
            port = srv.stdout.readline().strip()
            if not port:
                raise RuntimeError("the echo server did not start")
            pid = srv.pid
            if pre:      # the server is the peer's child
                deadline = time.monotonic() + 5
                while not children(srv.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                pid = children(srv.pid)[0]
            c0 = cpu_ns([pid])
            rate = float(subprocess.run(pinned(1) + [ctx.python, os.path.join(HERE, "echo_client.py"), port,
                                         str(conns), str(msgs)], check=True, capture_output=True,
                                        text=True, env=base_env(), timeout=300).stdout)
            c1 = cpu_ns([pid])
            srv.stdin.close()
            srv.wait(timeout=30)
        finally:
            stop(srv)
        return {"msgs_per_s": rate, "server_cpu_us_per_msg": (c1 - c0) / 1e3 / (conns * msgs)}
    res = rounds_of(ctx, peers(ctx, python=True), asyncio_echo)
    ratio_table(ctx, f"CPython asyncio echo server ({python_version(ctx)}), {conns} connections x "
                f"{msgs:,} messages of 64 bytes", res,
                [("msgs_per_s", "messages/s", 0), ("server_cpu_us_per_msg", "server CPU us/message", 2)])
    r = ratio(res, "stalltrace", "server_cpu_us_per_msg")
    budget(ctx, "asyncio echo: server CPU per message, stalltrace / plain", r, "<= 1.02", r <= 1.02)
    own_share_budget(ctx, "asyncio echo", res)
    r = ratio(res, "stalltrace", "msgs_per_s")
    budget(ctx, "asyncio echo: messages/s, stalltrace / plain", r, ">= 0.98", r >= 0.98)


def python_version(ctx):
    return subprocess.run([ctx.python, "-c", "import platform; print('Python', "
                           "platform.python_version())"], capture_output=True, text=True).stdout.strip()


def inprocess(ctx, name, cmd, keys, variants):
    dumps = ctx.dumpdir()

    def run(variant):
        pre = prefix_for(ctx, variant) if variant in ("strace", "perf-trace", PROFILED) else []
        out = subprocess.run(pre + cmd, env=env_for(ctx, variant, dumps, {"UV_THREADPOOL_SIZE": "4"}),
                             check=True, capture_output=True, text=True, timeout=600).stdout
        vals = out.split()
        return {k: float(x) for k, x in zip(keys, vals)}
    run.__name__ = name
    return rounds_of(ctx, variants, run)


def executor(ctx):
    n = 3000 if ctx.quick else 30000
    res = inprocess(ctx, "executor", [ctx.python, os.path.join(HERE, "executor.py"), str(n)],
                    ["round_trips_per_s", "cpu_us_per_round_trip"], peers(ctx))
    ratio_table(ctx, f"ThreadPoolExecutor submit+result round trip ({python_version(ctx)}, "
                f"4 workers, {n:,} round trips; asyncio debug mode does not apply)", res,
                [("round_trips_per_s", "round trips/s", 0),
                 ("cpu_us_per_round_trip", "process CPU us/round trip", 2)])
    r = ratio(res, "stalltrace", "round_trips_per_s")
    budget(ctx, "executor: round trips/s, stalltrace / plain", r, ">= 0.98", r >= 0.98)


def node(ctx):
    if not shutil.which("node"):
        ctx.note("node is not installed: the libuv pool measure is skipped")
        return
    n = 5000 if ctx.quick else 60000
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    res = inprocess(ctx, "node", ["node", os.path.join(HERE, "node_pool.js"), str(n)],
                    ["jobs_per_s", "cpu_us_per_job"], peers(ctx))
    ratio_table(ctx, f"Node.js {version} libuv pool: crypto.pbkdf2 (1 iteration), "
                f"16 in flight, 4 pool threads, {n:,} jobs", res,
                [("jobs_per_s", "jobs/s", 0), ("cpu_us_per_job", "process CPU us/job", 2)])
    ctx.node_res = res


def java(ctx):
    """What `stalltrace run -- java` costs compiled Java code: HotSpot's frame
    pointers alone (preserve-fp), and with the recorder and the perf map."""
    if not shutil.which("java") or not shutil.which("javac"):
        ctx.note("java/javac are not installed: the Java measure is skipped")
        return
    classes = os.path.join(ctx.tmp, "java")
    subprocess.run(["javac", "-d", classes, os.path.join(HERE, "JavaCalls.java")], check=True, timeout=300)
    n = 200 if ctx.quick else 3000
    run_flags = ["-XX:+UnlockDiagnosticVMOptions", "-XX:+DumpPerfMapAtExit", "-XX:+PreserveFramePointer"]
    dumps = ctx.dumpdir()

    def run(variant):
        flags = {"plain": ["-XX:-PreserveFramePointer"], "preserve-fp": ["-XX:+PreserveFramePointer"],
                 "stalltrace": run_flags}[variant]
        out = subprocess.run(["java"] + flags + ["-cp", classes, "JavaCalls", str(n)],
                             env=env_for(ctx, variant, dumps), check=True, capture_output=True, text=True,
                             timeout=600).stdout.split()
        try:                    # DumpPerfMapAtExit's map, which `run` would remove
            os.unlink(f"/tmp/perf-{int(out[3])}.map")
        except OSError:
            pass
        return {"calls_per_us": float(out[0]), "cpu_ms": float(out[1])}
    run.__name__ = "java"
    res = rounds_of(ctx, ["plain", "preserve-fp", "stalltrace"], run)
    version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    ratio_table(ctx, f"Java ({version}): {n} rounds of fib(24) and 200,000 interface calls, "
                "main thread (plain: -XX:-PreserveFramePointer; stalltrace: as `stalltrace run` starts java)",
                res, [("calls_per_us", "calls/us", 1), ("cpu_ms", "thread CPU ms", 0)])
    ctx.note(f"java: -XX:+PreserveFramePointer keeps {ratio(res, 'preserve-fp', 'calls_per_us'):.3f} of the "
             "calls/s without it; `stalltrace run --no-jit-maps` leaves it (and the perf map) off")


# ---- memory -----------------------------------------------------------------------------


def memory(ctx):
    exe = os.path.join(ctx.build, "bench", "threads")
    dumps = ctx.dumpdir()
    many = 33 if ctx.quick else 65
    rows = {}
    for mode in ("worker", "loop"):
        for n in (1, many):
            def threads(variant, n=n, mode=mode):
                out = subprocess.run([exe, str(n), mode], env=env_for(ctx, variant, dumps),
                                     check=True, capture_output=True, text=True, timeout=60).stdout
                rss, anon, file_ = map(float, out.split())
                return {"rss_kb": rss, "anon_kb": anon, "file_kb": file_}
            threads.__name__ = "threads"
            rows[(mode, n)] = rounds_of(ctx, ["plain", "stalltrace"], threads)
    ctx.emit("\n### Memory\n")
    ctx.emit("`bench/threads N MODE`: N threads that made a few wrapped calls (worker: a mutex, "
             "a sleep, a semaphore; loop: an epoll loop each, which warms the unwinder), "
             "resident set read while all of them are alive.\n")
    ctx.emit("| threads | plain RSS kB (anon + file) | preloaded RSS kB (anon + file) | added kB |")
    ctx.emit("|---|---|---|---|")
    added = {}
    for (mode, n), res in rows.items():
        p, q = res["plain"], res["stalltrace"]
        added[(mode, n)] = med(q["rss_kb"]) - med(p["rss_kb"])
        ctx.emit(f"| {n} {mode} | {fmt(med(p['rss_kb']), 0)} ({fmt(med(p['anon_kb']), 0)} + "
                 f"{fmt(med(p['file_kb']), 0)}) | {fmt(med(q['rss_kb']), 0)} ("
                 f"{fmt(med(q['anon_kb']), 0)} + {fmt(med(q['file_kb']), 0)}) | "
                 f"{added[(mode, n)]:+.0f} |")
    for mode in ("worker", "loop"):
        per = (added[(mode, many)] - added[(mode, 1)]) / (many - 1)
        ctx.emit(f"\nPer additional {mode} thread: {per:+.1f} KiB.")
        budget(ctx, f"memory: added per {mode} thread, KiB", per, "<= 64", per <= 64,
               f"slope from 1 to {many} threads")
    size, blocks, nfiles = dump_sizes(dumps)
    ctx.emit(f"\nDump of one such process: {size / nfiles / 2**20:.1f} MiB "
             f"({blocks / nfiles / 2**20:.1f} MiB on disk; the ring is 16 MiB by default and "
             "only the pages written are resident or on disk).")
    if getattr(ctx, "redis", None):
        p, q = ctx.redis["plain"]["server_rss_kb"], ctx.redis["stalltrace"]["server_rss_kb"]
        size, blocks, nfiles = ctx.redis_dump
        ctx.emit(f"\nredis-server after its benchmark: RSS {fmt(med(p), 0)} kB plain, "
                 f"{fmt(med(q), 0)} kB preloaded ({med(q) - med(p):+.0f} kB); its dump "
                 f"{size / max(nfiles, 1) / 2**20:.1f} MiB ({blocks / max(nfiles, 1) / 2**20:.2f} MiB on disk).")


# ---- the analyzer and the stacks ----------------------------------------------------------


def report_json(ctx, dump):
    out = subprocess.run([ctx.analyzer, "report", "--format", "json", dump], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return json.loads(out)


def analyzer(ctx):
    mb = 8 if ctx.quick else 64
    dumps = ctx.dumpdir()
    seconds = 2.0 if ctx.quick else 8.0
    env = env_for(ctx, "stalltrace", dumps, {"STALLTRACE_BUFFER_MB": str(mb),
                                             "STALLTRACE_THRESHOLD_MS": "1"})
    exe = os.path.join(ctx.build, "bench", "stallgen")
    dump, dropped = None, 0
    for attempt in range(3):          # longer until the ring has wrapped
        for f in glob.glob(os.path.join(dumps, "*.dump")):
            os.unlink(f)
        subprocess.run([exe, str(seconds), "256", "40"], env=env, check=True, timeout=600)
        dump = max(glob.glob(os.path.join(dumps, "*.dump")), key=os.path.getsize)
        om = subprocess.run([ctx.analyzer, "report", "--format", "openmetrics", dump], check=True,
                            capture_output=True, text=True, timeout=300).stdout
        m = re.search(r"^stalltrace_dropped_events_total\S* (\d+)", om, re.M)
        dropped = int(m.group(1)) if m else 0
        if dropped > 0:
            break
        seconds *= 2
    if dropped == 0:
        ctx.note(f"the {mb} MiB ring did not wrap in {seconds:g} s")
    times, sizes = {}, {}
    json_limit = 60 if ctx.quick else 120
    for r in range(3 if ctx.quick else 5):
        for fmt_ in ("text", "json"):
            if fmt_ == "json" and r > 0:
                continue        # one is enough: it is far from the others
            out = os.path.join(ctx.tmp, f"report.{fmt_}")
            t0 = time.perf_counter()
            try:
                subprocess.run([ctx.analyzer, "report", "--format", fmt_, "-o", out, dump],
                               check=True, timeout=json_limit if fmt_ == "json" else 120,
                               capture_output=True)
            except subprocess.TimeoutExpired:
                ctx.note(f"report --format {fmt_} of the full dump did not end in {json_limit} s: stopped")
                times.setdefault(fmt_, []).append(float("inf"))
                continue
            times.setdefault(fmt_, []).append(time.perf_counter() - t0)
            sizes[fmt_] = os.path.getsize(out)
            os.unlink(out)
    ctx.emit("\n### The analyzer\n")
    ctx.emit(f"A full {mb} MiB ring: a {os.path.getsize(dump) / 2**20:.1f} MiB dump of "
             f"`bench/stallgen` (256 started threads 40-46 native frames deep making 5 ms sleeps "
             f"at a 1 ms threshold, and an epoll loop with CPU-bound 3 ms iterations), "
             f"{dropped:,} events overwritten. Wall time, written to a file in /tmp:\n")
    ctx.emit("| report | seconds (median, min-max) | output size |")
    ctx.emit("|---|---|---|")
    for k, v in times.items():
        size = f"{sizes[k] / 2**20:,.1f} MiB" if k in sizes else "n/a"
        ctx.emit(f"| `stalltrace report --format {k}` | {cell(v, 2)} | {size} |")
    how = "" if mb == 64 else "quick run: smaller ring"
    budget(ctx, f"report (text) of a full {mb} MiB dump, s", med(times["text"]), "< 2",
           med(times["text"]) < 2, how)
    budget(ctx, f"report (json) of a full {mb} MiB dump, s", med(times["json"]), "< 2",
           med(times["json"]) < 2, how)


def first_sample(ctx):
    n, spin = (3, 60) if ctx.quick else (10, 100)
    dumps = ctx.dumpdir()
    at, counts = [], []
    for r in range(2 if ctx.quick else ctx.args.rounds):
        for f in glob.glob(os.path.join(dumps, "*.dump")):
            os.unlink(f)
        subprocess.run([ctx.python, os.path.join(HERE, "cpustall.py"), str(n), str(spin)],
                       env=env_for(ctx, "stalltrace", dumps), check=True, timeout=120)
        for f in glob.glob(os.path.join(dumps, "*.dump")):
            for p in report_json(ctx, f)["processes"]:
                for s in p["stalls"]:
                    if s["call"] is None and s["duration_ms"] >= spin * 0.9:
                        counts.append(len(s["samples"]))
                        at.append(s["samples"][0]["at_ms"] if s["samples"] else float("inf"))
    threshold = 20
    ctx.emit("\n### First stack of a CPU-bound stall\n")
    ctx.emit(f"`bench/cpustall.py`: asyncio callbacks spinning {spin} ms without a call, "
             f"default threshold ({threshold} ms), {len(at)} stalls: first sample at "
             f"{cell(at, 1)} ms after the stall began (samples per stall {cell(counts, 0)}).")
    ctx.first_sample = at
    budget(ctx, "first stack of a CPU-bound stall, ms after its start (median)", med(at),
           f"<= {threshold + 5}", med(at) <= threshold + 5,
           f"worst of {len(at)}: {max(at):.1f} ms" if at else "")
    if at:
        budget(ctx, "first stack of a CPU-bound stall, ms (worst)", max(at), f"<= {threshold + 5}",
               max(at) <= threshold + 5)


def capture_cost(ctx):
    n = 60 if ctx.quick else 400
    dumps = ctx.dumpdir()

    def slowcall(variant):
        extra = {}
        v = variant
        if variant == "stalltrace, threshold 1 ms":
            v, extra = "stalltrace", {"STALLTRACE_THRESHOLD_MS": "1"}
        elif variant == "stalltrace, threshold 1e6 ms":
            v, extra = "stalltrace", {"STALLTRACE_THRESHOLD_MS": "1000000"}
        out = subprocess.run([ctx.python, os.path.join(HERE, "slowcall.py"), str(n), "15"],
                             env=env_for(ctx, v, dumps, extra), check=True, capture_output=True,
                             text=True, timeout=300).stdout
        return {"cpu_us_per_call": float(out)}
    variants = ["plain", "stalltrace, threshold 1e6 ms", "stalltrace, threshold 1 ms"]
    res = rounds_of(ctx, variants, slowcall)
    ctx.emit("\n### One stack capture\n")
    ctx.emit(f"`bench/slowcall.py`: a started thread about 30 frames deep (15 Python, the rest "
             f"native) sleeps 5 ms {n} times; CPU time of that thread per sleep. At a 1 ms "
             "threshold every sleep is a slow call, captured and recorded; at 1e6 ms none is.\n")
    ctx.emit("| run | thread CPU us per 5 ms sleep (median, min-max) |")
    ctx.emit("|---|---|")
    for v, m in res.items():
        ctx.emit(f"| {v} | {cell(m['cpu_us_per_call'])} |")
    try:
        d = med(res["stalltrace, threshold 1 ms"]["cpu_us_per_call"]) - \
            med(res["stalltrace, threshold 1e6 ms"]["cpu_us_per_call"])
        ctx.emit(f"\nOne capture of a ~30-frame mixed stack and its record: {d:.1f} us.")
        ctx.capture_us = d
    except KeyError:
        pass


# ---- main -------------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    clocksource = "?"
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            clocksource = f.read().strip()
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores (`nproc`), {cpu}, Linux {platform.release()} "
            f"(clocksource {clocksource}), {platform.freedesktop_os_release().get('PRETTY_NAME', '') if hasattr(platform, 'freedesktop_os_release') else ''}; "
            f"load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")


def probe_peers(ctx):
    ctx.have_strace = bool(shutil.which("strace"))
    ctx.have_perf = ctx.have_perf_record = False
    if ctx.quick or ctx.args.no_peers:
        return
    if not ctx.have_strace:
        ctx.note("strace is not installed: no strace runs (apt-get install strace)")
    if shutil.which("perf"):
        r = subprocess.run(["perf", "trace", "-s", "-o", os.devnull, "--", "true"],
                           capture_output=True, text=True)
        ctx.have_perf = r.returncode == 0
        data = os.path.join(ctx.tmp, "probe.perf.data")
        ctx.have_perf_record = subprocess.run(
            ["perf", "record", "-q", "-e", "cpu-clock", "-o", data, "--", "true"],
            capture_output=True).returncode == 0
        if not ctx.have_perf_record:
            ctx.note("perf record is not permitted here: no profiled runs")
        if not ctx.have_perf:
            ctx.note(f"perf trace is not permitted here: no perf trace runs "
                     f"({(r.stderr.strip().splitlines() or ['?'])[0][:120]})")
    else:
        ctx.note("perf is not installed: no perf trace runs (apt-get install linux-perf)")
    if not shutil.which("bpftrace"):
        ctx.note("bpftrace is not installed (and needs root): no bpftrace runs")
    else:
        ctx.note("bpftrace is installed but not run: uprobes on every wrapped call need a "
                 "per-workload script this suite does not carry yet")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the short CI run: checks it runs, not figures")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, help="rounds per measure (default 7, --quick 2)")
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                    else sys.executable, help="interpreter of the Python workloads")
    ap.add_argument("--output", help="Markdown output (default bench/RESULTS.md, "
                    "--quick: BUILD/bench-quick.md)")
    ap.add_argument("--only", help="comma-separated parts: micro,redis,nginx,echo,executor,node,java,"
                    "memory,analyzer,first_sample,capture,attach")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 7
    output = args.output or (os.path.join(args.build_dir, "bench-quick.md") if args.quick
                             else os.path.join(HERE, "RESULTS.md"))
    parts = [("micro", micro), ("redis", redis), ("nginx", nginx), ("echo", echo),
             ("executor", executor), ("node", node), ("java", java), ("memory", memory), ("analyzer", analyzer),
             ("first_sample", first_sample), ("capture", capture_cost), ("attach", attach_detach)]
    if args.only:
        want = set(args.only.split(","))
        parts = [p for p in parts if p[0] in want]

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stalltrace-bench.") as tmp:
        ctx = Ctx(args, tmp)
        probe_peers(ctx)
        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        ctx.emit(f"## stalltrace overhead{' (quick run: figures not meaningful)' if args.quick else ''}\n")
        ctx.emit(f"Measured {when} by `python3 bench/run.py{' --quick' if args.quick else ''}` on "
                 f"{machine()}. {args.rounds} rounds per measure, plain and the other runs "
                 "interleaved (each round in another order); medians, (min-max), ratios of medians.")
        failures = 0
        for name, fn in parts:
            print(f"\n--- {name}", flush=True)
            try:
                fn(ctx)
            except Exception as e:
                failures += 1
                ctx.note(f"{name} failed: {type(e).__name__}: {e}")
        load = os.getloadavg()
        ctx.emit(f"\nLoad average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; "
                 f"the run took {(time.monotonic() - started) / 60:.1f} min.")
        lines = list(ctx.out)
        head = ["", "### Budgets (issue 7)", "",
                "| budget | measured | bound | verdict | how |", "|---|---|---|---|---|"]
        for what, m, bound, verdict, how in ctx.budgets:
            head.append(f"| {what} | {fmt(m, 3)} | {bound} | {verdict} | {how} |")
        if ctx.notes:
            head += ["", "Notes:", ""] + [f"- {n}" for n in ctx.notes]
        print("\n".join(head))
        lines[2:2] = head
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"\nwrote {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
