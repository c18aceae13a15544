"""End-to-end tests of event-loop stalls (issue 1): one stall of ~200 ms on
the loop thread of a real asyncio, uvloop, Node.js or C epoll program, found
with its blocking call and stack; a healthy program with none; a killed
process's dump; the recorder's and the analyzer's handling of bad input.
"""

import copy
import os
import re
import shutil
import signal
import socket
import time

from e2e_lib import (
    CPU_HI, CPU_LO, DEBIAN_PYTHON, EXACT_HI, EXACT_LO, Fail, Skip, c_target_binary, call_in,
    check_schema, clean_env, default_python, diagnosis_names, dumps_in, duration_within, evidence,
    expect, fixture, fmt_stack, fmt_stall, frame_named, has_time_module_frame,
    interpreter_has_symbols, is_interpreter_frame, is_time_sleep_frame, json_report, load_process,
    main_loop_thread, main_stalls, mutate, no_recorder_frames, python_for_minor, require_binaries,
    run_cmd, run_to_end, self_test, start_target, target, test, thread_of)

# The per-target checks.  Each takes a report's process entry, raises Fail,
# and returns a short note for the `ok` line.


def check_blocking_stall(proc, calls, min_iterations=10):
    """Exactly one ~200 ms stall on the main loop thread, on one of `calls`."""
    main_loop_thread(proc, min_iterations)
    (stall,) = main_stalls(proc, 1)
    duration_within(proc, stall, EXACT_LO, EXACT_HI)
    call_in(proc, stall, calls)
    expect(stall.get("stack"), "the stall has an empty stack", proc)
    no_recorder_frames(proc, stall.get("stack"))
    expect(proc.get("complete") is True, "complete is %r, expected true" % proc.get("complete"), proc)
    return stall


def check_py_sleep(proc, minor=11, interpreter_has_symbols=True):
    stall = check_blocking_stall(proc, ("clock_nanosleep",))
    has_time_module_frame(proc, stall.get("stack"), minor, interpreter_has_symbols)
    expect("event_loop_blocking" in diagnosis_names(proc),
           "diagnosis does not name event_loop_blocking: %r" % diagnosis_names(proc), proc)
    loop = thread_of(proc, proc["pid"])["loop"]
    return "%.1f ms %s, %d iterations" % (stall["duration_ms"], stall["call"], loop["iterations"])


def check_py_recv(proc):
    stall = check_blocking_stall(proc, ("recv", "recvfrom"))
    return "%.1f ms %s" % (stall["duration_ms"], stall["call"])


def check_py_http_timeout(proc):
    # The poll CPython does before recv is part of the stall: one stall of the
    # whole 200 ms, not a short one that ends at the poll.
    stall = check_blocking_stall(proc, ("poll", "recv"))
    return "%.1f ms %s" % (stall["duration_ms"], stall["call"])


def check_sampled_stall(proc, min_samples, interpreter=False):
    """A ~200 ms CPU-bound stall on the main loop thread, with sampled stacks."""
    main_loop_thread(proc, 5)
    stalls = main_stalls(proc)
    cpu = [s for s in stalls if CPU_LO <= float(s.get("duration_ms") or 0) <= CPU_HI]
    expect(cpu, "no stall of %g..%g ms on the main thread (stalls: %s)"
           % (CPU_LO, CPU_HI, [s.get("duration_ms") for s in stalls]), proc)
    stall = cpu[0]
    expect(stall.get("call") is None, "CPU-bound stall has call %r, expected null" % stall.get("call"), proc)
    samples = stall.get("samples") or []
    expect(len(samples) >= min_samples, "%d sample(s) in the CPU-bound stall, expected >= %d"
           % (len(samples), min_samples), proc)
    for i, x in enumerate(samples):
        stack = x.get("stack") or []
        expect(stack, "sample %d has an empty stack" % i, proc)
        no_recorder_frames(proc, stack)
        if interpreter:
            expect(any(is_interpreter_frame(f) for f in stack),
                   "sample %d has no interpreter frame (_PyEval_EvalFrameDefault in python/libpython): %s"
                   % (i, fmt_stack(stack, 16)), proc)
    return stall


def check_py_cpu(proc):
    stall = check_sampled_stall(proc, 3, interpreter=True)
    return "%.1f ms call=null, %d samples" % (stall["duration_ms"], len(stall["samples"]))


def check_node_busy(proc):
    stall = check_sampled_stall(proc, 1)
    others = [round(s.get("duration_ms") or 0, 1) for s in proc.get("stalls") or [] if s is not stall]
    return "%.1f ms call=null, %d samples%s" % (
        stall["duration_ms"], len(stall["samples"]), ", other stalls %s" % others if others else "")


def check_c_epoll(proc):
    main_loop_thread(proc, 10)
    stalls = main_stalls(proc, 2)
    for stall in stalls:
        duration_within(proc, stall, EXACT_LO, EXACT_HI)
        call_in(proc, stall, ("usleep",))
        no_recorder_frames(proc, stall.get("stack"))
        f = frame_named(stall.get("stack"), "handle_slow_request")
        expect(f is not None, "no handle_slow_request frame in the stack: %s" % fmt_stack(stall.get("stack"), 16), proc)
        expect(str(f.get("file") or "").endswith("c_epoll_server.c") and isinstance(f.get("line"), int),
               "handle_slow_request frame has file:line %r:%r, expected .../c_epoll_server.c:N"
               % (f.get("file"), f.get("line")), proc)
    expect(proc.get("complete") is True, "complete is %r, expected true" % proc.get("complete"), proc)
    return "2 stalls %s ms usleep in handle_slow_request (%s:%s)" % (
        "/".join("%.1f" % s["duration_ms"] for s in stalls),
        os.path.basename(str(f["file"])), f["line"])


def check_py_healthy(proc):
    stalls = proc.get("stalls") or []
    expect(not stalls, "%d stall(s) in a healthy program, expected none: %s"
           % (len(stalls), "; ".join(fmt_stall(s) for s in stalls[:3])), proc)
    t = main_loop_thread(proc, 1000)
    expect("event_loop_blocking" not in diagnosis_names(proc),
           "diagnosis names event_loop_blocking in a healthy program", proc)
    expect(proc.get("complete") is True, "complete is %r, expected true" % proc.get("complete"), proc)
    return "no stall, %d iterations, max %s ms" % (t["loop"]["iterations"], t["loop"].get("max_ms"))


def check_py_killed(proc):
    main_loop_thread(proc, 5)
    (stall,) = main_stalls(proc, 1)
    duration_within(proc, stall, EXACT_LO, EXACT_HI)
    call_in(proc, stall, ("clock_nanosleep",))
    expect(proc.get("complete") is False, "complete is %r after SIGKILL, expected false"
           % proc.get("complete"), proc)
    return "%.1f ms %s, complete=false" % (stall["duration_ms"], stall["call"])


def py_sleep_test(cfg, tmpdir, minor):
    python, note = python_for_minor(minor)
    proc, report = run_to_end(cfg, tmpdir, [python, target("py_sleep.py")], "py_sleep.py")
    if minor == 11:
        cfg.cache["py_sleep_report"] = report
    return check_py_sleep(proc, minor, interpreter_has_symbols(python)) + note


@test("py_sleep")
def t_py_sleep(cfg, tmpdir):
    return py_sleep_test(cfg, tmpdir, 11)


@test("report_schema")
def t_report_schema(cfg, tmpdir):
    report = cfg.cache.get("py_sleep_report")
    if report is None:
        raise Skip("needs py_sleep's report")
    problems = check_schema(report)
    expect(not problems, "the JSON report lacks SPEC.md fields:\n    " + "\n    ".join(problems[:20]))
    return "every SPEC.md field present"


@test("py_recv")
def t_py_recv(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_recv.py")], "py_recv.py")
    return check_py_recv(proc)


@test("py_fd_reused")
def t_py_fd_reused(cfg, tmpdir):
    """A blocking socket on the number of a closed non-blocking one is timed."""
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_fd_reuse.py"), "reuse"],
                         "py_fd_reuse.py")
    out = " ".join(proc["_stdout"])
    expect("not reused" not in out, "the target could not reuse the fd: %s" % out, proc)
    return check_py_recv(proc)


@test("py_fd_back_to_blocking")
def t_py_fd_back_to_blocking(cfg, tmpdir):
    """A socket set blocking again (ioctl FIONBIO) after an EAGAIN is timed."""
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_fd_reuse.py"), "flip"],
                         "py_fd_reuse.py")
    return check_py_recv(proc)


@test("py_http_timeout")
def t_py_http_timeout(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_http_timeout.py")], "py_http_timeout.py")
    return check_py_http_timeout(proc)


@test("py_cpu")
def t_py_cpu(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_cpu.py")], "py_cpu.py")
    return check_py_cpu(proc)


@test("py_uvloop")
def t_py_uvloop(cfg, tmpdir):
    if not os.path.exists(DEBIAN_PYTHON):
        raise Skip("no %s" % DEBIAN_PYTHON)
    rc, _, err = run_cmd([DEBIAN_PYTHON, "-c", "import uvloop"], timeout=30)
    if rc != 0:
        raise Skip("import uvloop fails with %s (apt-get install python3-uvloop)" % DEBIAN_PYTHON)
    proc, _ = run_to_end(cfg, tmpdir, [DEBIAN_PYTHON, target("py_uvloop.py")], "py_uvloop.py")
    stall = check_blocking_stall(proc, ("clock_nanosleep",))
    return "%.1f ms %s" % (stall["duration_ms"], stall["call"])


@test("py_healthy")
def t_py_healthy(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_healthy.py")], "py_healthy.py")
    return check_py_healthy(proc)


@test("py_open_iteration_at_exit")
def t_py_open_iteration_at_exit(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_exit_mid_stall.py")], "py_exit_mid_stall.py")
    m = [re.match(r"^open ms=([0-9.]+)$", line) for line in proc["_stdout"]]
    m = [x for x in m if x]
    expect(m, "the target printed no open ms=")
    want = float(m[0].group(1))
    stalls = [s for s in proc.get("stalls") or [] if s.get("tid") != proc.get("pid")]
    expect(len(stalls) == 1, "%d stall(s) on the loop thread, expected its open iteration" % len(stalls), proc)
    # It runs on until the recorder's exit, after the interpreter's own.
    duration_within(proc, stalls[0], want - 1, want + 100)
    expect(not stalls[0].get("in_progress"), "a clean exit's open iteration marked in progress", proc)
    return "open %.1f ms at exit -> stall %.1f ms (%s)" % (want, stalls[0]["duration_ms"], stalls[0].get("call"))


@test("py_killed")
def t_py_killed(cfg, tmpdir):
    p = start_target(cfg, tmpdir, [default_python(), target("py_killed.py")])
    try:
        line = p.wait_for_line(r"^STALLED-DONE", 30)
        m = re.search(r"pid=(\d+)", line)
        expect(m, "no pid in %r" % line)
        pid = int(m.group(1))
        # Only ever kill a process of this test's own process group.
        try:
            expect(os.getpgid(pid) == p.pgid, "pid %d is not in the test's process group" % pid)
        except ProcessLookupError:
            raise Fail("target pid %d is already gone" % pid)
        os.kill(pid, signal.SIGKILL)
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 137, "stalltrace run exited %r after the target's SIGKILL, expected 137%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "py_killed.py", p)
    note = check_py_killed(proc)
    rc, text, err = run_cmd([cfg.stalltrace, "report", proc["_dump"]], timeout=60)
    expect(rc == 0, "text report of the killed process's dump exited %d: %s" % (rc, err.strip()[:300]))
    expect("incomplete" in text.lower(), "the text report does not say the recording is incomplete:\n    "
           + "\n    ".join(text.splitlines()[:15]))
    return note + ", text report says incomplete"


@test("node_busy")
def t_node_busy(cfg, tmpdir):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node (apt-get install nodejs)")
    proc, _ = run_to_end(cfg, tmpdir, [node, target("node_busy.js")], "node_busy.js")
    return check_node_busy(proc)


@test("c_epoll_server")
def t_c_epoll_server(cfg, tmpdir):
    server, note = c_target_binary(cfg, tmpdir, "c_epoll_server")
    p = start_target(cfg, tmpdir, [server])
    try:
        line = p.wait_for_line(r"^PORT \d+", 30)
        port = int(line.split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            stream = sock.makefile("rwb")
            latency = {}
            for request in ["fast"] * 10 + ["slow"] + ["fast"] * 10 + ["slow", "quit"]:
                t0 = time.monotonic()
                stream.write(request.encode() + b"\n")
                stream.flush()
                reply = stream.readline().strip().decode()
                expect(reply == {"quit": "bye"}.get(request, request),
                       "server answered %r to %r" % (reply, request))
                latency.setdefault(request, []).append((time.monotonic() - t0) * 1000)
        rc = p.wait(30)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d, expected 0%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "c_epoll_server", p)
    if cfg.verbose:
        print("    " + evidence(proc).replace("\n", "\n    "))
    return "%s; client saw slow replies in %s ms%s" % (
        check_c_epoll(proc), "/".join("%.0f" % ms for ms in latency["slow"]), note)


@test("bad_env_value")
def t_bad_env_value(cfg, tmpdir):
    require_binaries(cfg)
    env = clean_env(LD_PRELOAD=cfg.preload, STALLTRACE_THRESHOLD_MS="abc",
                    STALLTRACE_OUTPUT=os.path.join(tmpdir, "%p.dump"))
    code = ("import asyncio\n"
            "async def main():\n"
            "    for _ in range(20):\n"
            "        await asyncio.sleep(0.001)\n"
            "asyncio.run(main())\n"
            "print('TARGET-RAN')\n")
    rc, out, err = run_cmd([DEBIAN_PYTHON, "-c", code], timeout=30, env=env)
    lines = [l for l in err.splitlines() if l.strip()]
    expect(rc == 0, "target exited %d with STALLTRACE_THRESHOLD_MS=abc; stderr: %s" % (rc, lines[:5]))
    expect("TARGET-RAN" in out, "target did not run to the end; stdout %r" % out[:200])
    expect(len(lines) == 1, "expected one warning line on stderr, got %d: %s" % (len(lines), lines[:5]))
    expect("STALLTRACE_THRESHOLD_MS" in lines[0],
           "the warning does not name STALLTRACE_THRESHOLD_MS: %r" % lines[0])
    dumps = dumps_in(tmpdir)
    expect(dumps, "no dump written with the default threshold")
    json_report(cfg, dumps[0])
    return "warning: %s" % lines[0][:100]


@test("report_not_a_dump")
def t_report_not_a_dump(cfg, tmpdir):
    require_binaries(cfg)
    cases = {
        "text.txt": b"this is not a stalltrace dump\n" * 50,
        "empty.dump": b"",
        "random.dump": bytes((i * 7919 + 13) % 251 for i in range(8192)),
    }
    for name, data in cases.items():
        path = os.path.join(tmpdir, name)
        with open(path, "wb") as fh:
            fh.write(data)
        rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", "json", path], timeout=30)
        lines = [l for l in err.splitlines() if l.strip()]
        expect(rc == 2, "report of %s exited %d, expected 2 (stderr: %s)" % (name, rc, lines[:3]))
        expect(len(lines) == 1, "report of %s printed %d line(s) on stderr, expected 1: %s"
               % (name, len(lines), lines[:3]))
    return "exit 2, one line: %s" % lines[0][:100]


# Beyond the list: the same stall under the other CPython versions
# the project supports.
@test("py_sleep_py312")
def t_py_sleep_312(cfg, tmpdir):
    return py_sleep_test(cfg, tmpdir, 12)


@test("py_sleep_py313")
def t_py_sleep_313(cfg, tmpdir):
    return py_sleep_test(cfg, tmpdir, 13)


# ---------------------------------------------------------------------------
# Self-test of the assertion helpers on a hand-written report


@self_test
def loop_self_test(case):
    report = fixture("sample_report.json")
    procs = {os.path.basename(p["argv"][-1]): p for p in report["processes"]}

    def schema_ok(rep):
        problems = check_schema(rep)
        expect(not problems, "; ".join(problems))

    case("schema of the fixture", schema_ok, report, True)
    bad_schema = copy.deepcopy(report)
    del bad_schema["processes"][0]["stalls"][0]["call"]
    del bad_schema["processes"][0]["threads"][0]["role"]
    bad_schema["processes"][1]["stalls"][0]["stack"][0]["kind"] = "c"
    case("schema: missing fields found", schema_ok, bad_schema, False)

    s = procs["py_sleep.py"]
    case("py_sleep good", check_py_sleep, s, True)
    case("py_sleep too long", check_py_sleep, mutate(s, lambda p: p["stalls"][0].update(duration_ms=250.0)), False)
    case("py_sleep too short", check_py_sleep, mutate(s, lambda p: p["stalls"][0].update(duration_ms=170.0)), False)
    case("py_sleep +20% ok", check_py_sleep, mutate(s, lambda p: p["stalls"][0].update(duration_ms=239.0)), True)
    case("py_sleep wrong call", check_py_sleep, mutate(s, lambda p: p["stalls"][0].update(call="nanosleep")), False)
    case("py_sleep two stalls", check_py_sleep,
         mutate(s, lambda p: p["stalls"].append(copy.deepcopy(p["stalls"][0]))), False)
    case("py_sleep stall on another thread only", check_py_sleep,
         mutate(s, lambda p: p["stalls"][0].update(tid=p["pid"] + 1)), False)
    case("py_sleep no time frame", check_py_sleep, mutate(s, lambda p: p["stalls"][0].update(
        stack=[f for f in p["stalls"][0]["stack"] if not is_time_sleep_frame(f)])), False)
    case("py_sleep no symbols, libpython frame", lambda p: check_py_sleep(p, 11, False), mutate(
        s, lambda p: p["stalls"][0].update(stack=[dict(f, function=None, file=None, line=None)
                                                  for f in p["stalls"][0]["stack"]])), True)
    case("py_sleep not a loop", check_py_sleep, mutate(s, lambda p: p["threads"][0].update(role="other")), False)
    case("py_sleep few iterations", check_py_sleep,
         mutate(s, lambda p: p["threads"][0]["loop"].update(iterations=3)), False)
    case("py_sleep incomplete", check_py_sleep, mutate(s, lambda p: p.update(complete=False)), False)
    case("py_sleep recorder frame", check_py_sleep, mutate(s, lambda p: p["stalls"][0]["stack"].insert(
        0, {"function": "wrap_clock_nanosleep", "module": "/x/libstalltrace.so", "file": None,
            "line": None, "kind": "native"})), False)
    case("py_sleep no diagnosis", check_py_sleep, mutate(s, lambda p: p.update(diagnosis=[])), False)

    h = next(p for p in report["processes"] if p["argv"][-1].endswith("py_http_timeout.py"))
    case("py_http_timeout good", check_py_http_timeout, h, True)
    case("py_http_timeout split at poll", check_py_http_timeout, mutate(h, lambda p: p["stalls"][0].update(
        duration_ms=3.0)), False)
    case("py_recv on http fixture (poll is not recv)", check_py_recv, h, False)

    c = procs["py_cpu.py"]
    case("py_cpu good", check_py_cpu, c, True)
    case("py_cpu with a call", check_py_cpu, mutate(c, lambda p: p["stalls"][0].update(call="read")), False)
    case("py_cpu two samples", check_py_cpu, mutate(c, lambda p: p["stalls"][0].update(
        samples=p["stalls"][0]["samples"][:2])), False)
    case("py_cpu empty sample", check_py_cpu, mutate(c, lambda p: p["stalls"][0]["samples"][1].update(stack=[])),
         False)
    case("py_cpu sample outside the interpreter", check_py_cpu, mutate(
        c, lambda p: p["stalls"][0]["samples"][2].update(stack=[{"function": "memcpy", "module": "libc.so.6",
                                                                 "file": None, "line": None,
                                                                 "kind": "native"}])), False)
    case("py_cpu 260 ms", check_py_cpu, mutate(c, lambda p: p["stalls"][0].update(duration_ms=260.0)), False)

    e = procs["c_epoll_server"]
    case("c_epoll good", check_c_epoll, e, True)
    case("c_epoll one stall", check_c_epoll, mutate(e, lambda p: p["stalls"].pop()), False)
    case("c_epoll no file", check_c_epoll, mutate(e, lambda p: p["stalls"][1]["stack"][1].update(file=None)), False)
    case("c_epoll no handler frame", check_c_epoll, mutate(
        e, lambda p: p["stalls"][0].update(stack=p["stalls"][0]["stack"][:1])), False)

    y = procs["py_healthy.py"]
    case("py_healthy good", check_py_healthy, y, True)
    case("py_healthy false positive", check_py_healthy, mutate(y, lambda p: p["stalls"].append(
        copy.deepcopy(s["stalls"][0]) | {"tid": p["pid"]})), False)
    case("py_healthy few iterations", check_py_healthy,
         mutate(y, lambda p: p["threads"][0]["loop"].update(iterations=500)), False)

    k = procs["py_killed.py"]
    case("py_killed good", check_py_killed, k, True)
    case("py_killed says complete", check_py_killed, mutate(k, lambda p: p.update(complete=True)), False)

    n = procs["node_busy.js"]
    case("node_busy good", check_node_busy, n, True)
    case("node_busy no samples", check_node_busy, mutate(n, lambda p: p["stalls"][0].update(samples=[])), False)
