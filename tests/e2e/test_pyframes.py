"""End-to-end tests of Python frames in stacks (issue 6): for CPython 3.11,
3.12 and 3.13, a stall's stack reads clock_nanosleep < ... < load_config <
handle_request with file and line; in-stall samples of CPU-bound work name
crunch_numbers; pool workers' busy stacks name the function given to
run_in_executor; an unsupported CPython gets native stacks and one note.
"""

import copy
import json
import re

from e2e_lib import (
    DEBIAN_PYTHON,
    CPU_HI, CPU_LO, EXACT_HI, EXACT_LO, Skip, call_in, duration_within, expect, fmt_stack,
    interpreter_has_symbols, main_loop_thread, main_stalls, no_recorder_frames, pyenv_python,
    python_for_minor, run_cmd, run_to_end, self_test, target, test)

MINORS = (11, 12, 13)


def marked_lines(path):
    """{name: line} of the `# LINE:name` markers in a target's source."""
    lines = {}
    with open(path) as fh:
        for number, text in enumerate(fh, 1):
            m = re.search(r"#\s*LINE:(\w+)", text)
            if m:
                lines[m.group(1)] = number
    return lines


def is_python(f, function=None):
    return f.get("kind") == "python" and (function is None or f.get("function") == function)


def index_of(stack, function):
    for i, f in enumerate(stack or []):
        if is_python(f, function):
            return i
    return None


def expect_python_frame(proc, stack, i, function, filename, line):
    f = stack[i]
    expect(str(f.get("file") or "").endswith("/" + filename) and f.get("line") == line,
           "%s is at %s:%s, expected .../%s:%d: %s" % (function, f.get("file"), f.get("line"),
                                                      filename, line, fmt_stack(stack, 16)), proc)
    expect(f.get("module") == "[python]", "%s has module %r, expected '[python]'"
           % (function, f.get("module")), proc)


def check_nested(proc, lines, filename="py_nested.py"):
    """One ~200 ms clock_nanosleep stall whose stack has load_config then its
    caller handle_request (Python frames, this file, the lines of the calls)
    under clock_nanosleep, and no evaluation-loop frame above them."""
    main_loop_thread(proc, 10)
    (stall,) = main_stalls(proc, 1)
    duration_within(proc, stall, EXACT_LO, EXACT_HI)
    call_in(proc, stall, ("clock_nanosleep",))
    stack = stall.get("stack") or []
    no_recorder_frames(proc, stack)
    expect(stack and stack[0].get("function") == "clock_nanosleep",
           "the stack does not start at clock_nanosleep: %s" % fmt_stack(stack), proc)
    inner, outer = index_of(stack, "load_config"), index_of(stack, "handle_request")
    expect(inner is not None and outer is not None,
           "no Python frames load_config and handle_request in the stall's stack: %s"
           % fmt_stack(stack, 16), proc)
    expect(outer == inner + 1, "handle_request is not load_config's caller in the stack: %s"
           % fmt_stack(stack, 16), proc)
    expect_python_frame(proc, stack, inner, "load_config", filename, lines["sleep"])
    expect_python_frame(proc, stack, outer, "handle_request", filename, lines["load_config"])
    above = [f for f in stack[:inner] if is_python(f) or "EvalFrame" in str(f.get("function"))]
    expect(not above, "Python or evaluation-loop frames above load_config: %s" % fmt_stack(above), proc)
    where = "load_config (%s:%d) in handle_request (%s:%d)" % (filename, lines["sleep"], filename,
                                                               lines["load_config"])
    summaries = " ".join(str(d.get("summary")) for d in proc.get("diagnosis") or [])
    expect(where in summaries, "the diagnosis does not say %r: %r" % (where, summaries), proc)
    return stall


def check_cpu(proc):
    """A CPU-bound stall whose in-stall samples name crunch_numbers (called
    from handle_cpu_request), and so does the diagnosis."""
    main_loop_thread(proc, 5)
    cpu = [s for s in main_stalls(proc) if CPU_LO <= float(s.get("duration_ms") or 0) <= CPU_HI]
    expect(cpu, "no CPU-bound stall of %g..%g ms on the main thread" % (CPU_LO, CPU_HI), proc)
    stall = cpu[0]
    samples = stall.get("samples") or []
    expect(len(samples) >= 3, "%d sample(s) in the CPU-bound stall, expected >= 3" % len(samples), proc)
    named = 0
    for x in samples:
        stack = x.get("stack") or []
        i = index_of(stack, "crunch_numbers")
        if i is not None and i + 1 < len(stack) and is_python(stack[i + 1], "handle_cpu_request"):
            named += 1
    # A signal may land while the interpreter links a frame: allow one miss in five.
    expect(named * 5 >= len(samples) * 4, "only %d of %d samples name crunch_numbers < handle_cpu_request:"
           " %s" % (named, len(samples), fmt_stack(samples[0].get("stack"), 12)), proc)
    expect(index_of(stall.get("stack"), "crunch_numbers") is not None,
           "the stall's stack does not name crunch_numbers: %s" % fmt_stack(stall.get("stack"), 12), proc)
    summaries = " ".join(str(d.get("summary")) for d in proc.get("diagnosis") or [])
    expect("crunch_numbers (py_cpu.py:" in summaries, "the diagnosis does not name crunch_numbers: %r"
           % summaries, proc)
    return "%d of %d samples in crunch_numbers" % (named, len(samples))


def worker_stacks(proc):
    """Stacks of pool workers' busy time: pools[].busy_in[].stack, else the
    slow calls."""
    stacks = [b.get("stack") or [] for pool in proc.get("pools") or []
              for b in pool.get("busy_in") or [] if b.get("call") == "clock_nanosleep"]
    if stacks:
        return stacks, "pools[].busy_in"
    return [c.get("stack") or [] for c in proc.get("slow_calls") or []
            if c.get("call") == "clock_nanosleep"], "slow_calls"


def check_executor(proc, lines):
    stacks, where = worker_stacks(proc)
    expect(stacks, "no clock_nanosleep in pools[].busy_in nor in slow_calls", proc)
    for stack in stacks:
        pythons = [f for f in stack if is_python(f)]
        expect(pythons and pythons[0].get("function") == "blocking_io_task",
               "the innermost Python frame of a worker's busy stack is not blocking_io_task: %s"
               % fmt_stack(stack, 16), proc)
        expect(pythons[0].get("line") == lines["task_sleep"], "blocking_io_task is at line %r, expected %d"
               % (pythons[0].get("line"), lines["task_sleep"]), proc)
    return "%d %s stack(s) in blocking_io_task" % (len(stacks), where)


def nested_test(cfg, tmpdir, minor):
    python, note = python_for_minor(minor)
    path = target("py_nested.py")
    proc, _ = run_to_end(cfg, tmpdir, [python, path], "py_nested.py")
    stall = check_nested(proc, marked_lines(path))
    # --native-only: the raw native stack, evaluation-loop frames and all.
    report = json_report_native(cfg, proc["_dump"])
    native = report["processes"][0]["stalls"][0]["stack"]
    expect(not any(is_python(f) for f in native), "--native-only still shows Python frames: %s"
           % fmt_stack(native, 16), proc)
    if interpreter_has_symbols(python):
        expect(any("_PyEval_EvalFrameDefault" == f.get("function") for f in native),
               "--native-only has no _PyEval_EvalFrameDefault frame: %s" % fmt_stack(native, 16), proc)
    rc, text, err = run_cmd([cfg.stalltrace, "report", proc["_dump"]], timeout=60)
    expect(rc == 0 and "load_config ([python] py_nested.py:" in text,
           "the text report (status %d) does not show load_config:\n    %s" % (rc, "\n    ".join(
               (text or err).splitlines()[:25])), proc)
    inner = index_of(stall["stack"], "load_config")
    return "%.1f ms clock_nanosleep < ... < %s%s" % (
        stall["duration_ms"], fmt_stack(stall["stack"][inner:inner + 2]), note)


def json_report_native(cfg, dump):
    rc, out, err = run_cmd([cfg.stalltrace, "report", "--native-only", "--format", "json", dump], timeout=60)
    expect(rc == 0, "report --native-only exited %d: %s" % (rc, err.strip()[:300]))
    return json.loads(out)


def cpu_test(cfg, tmpdir, minor):
    python, note = python_for_minor(minor)
    proc, _ = run_to_end(cfg, tmpdir, [python, target("py_cpu.py")], "py_cpu.py")
    return check_cpu(proc) + note


def executor_test(cfg, tmpdir, minor):
    python, note = python_for_minor(minor)
    path = target("py_executor_saturated.py")
    proc, _ = run_to_end(cfg, tmpdir, [python, path], "py_executor_saturated.py")
    return check_executor(proc, {"task_sleep": executor_sleep_line(path)}) + note


def executor_sleep_line(path):
    """The line of blocking_io_task's time.sleep call (the target has no markers)."""
    with open(path) as fh:
        text = fh.read().splitlines()
    start = next(i for i, t in enumerate(text) if t.startswith("def blocking_io_task"))
    return next(i for i, t in enumerate(text) if i > start and "time.sleep" in t) + 1


def register(minor):
    @test("py_frames_3_%d" % minor)
    def t_nested(cfg, tmpdir):
        return nested_test(cfg, tmpdir, minor)

    @test("py_frames_cpu_3_%d" % minor)
    def t_cpu(cfg, tmpdir):
        return cpu_test(cfg, tmpdir, minor)

    @test("py_frames_executor_3_%d" % minor)
    def t_executor(cfg, tmpdir):
        return executor_test(cfg, tmpdir, minor)


for _minor in MINORS:
    register(_minor)


@test("py_frames_uvloop")
def t_uvloop(cfg, tmpdir):
    """The coroutine's frames appear through uvloop's C (Cython) frames."""
    rc, _, _ = run_cmd([DEBIAN_PYTHON, "-c", "import uvloop"], timeout=30)
    if rc != 0:
        raise Skip("no uvloop for %s (apt-get install python3-uvloop)" % DEBIAN_PYTHON)
    path = target("py_nested.py")
    proc, _ = run_to_end(cfg, tmpdir, [DEBIAN_PYTHON, path, "uvloop"], "py_nested.py")
    stall = check_nested(proc, marked_lines(path))
    inner = index_of(stall["stack"], "load_config")
    return "%.1f ms on uvloop: clock_nanosleep < ... < %s" % (
        stall["duration_ms"], fmt_stack(stall["stack"][inner:inner + 2]))


@test("py_frames_unsupported")
def t_unsupported(cfg, tmpdir):
    python = pyenv_python(10)
    if python is None:
        raise Skip("no pyenv CPython 3.10 to stand for an unsupported version")
    proc, _ = run_to_end(cfg, tmpdir, [python, target("py_nested.py")], "py_nested.py")
    (stall,) = main_stalls(proc, 1)
    call_in(proc, stall, ("clock_nanosleep", "select"))  # 3.10 sleeps in select()
    stack = stall.get("stack") or []
    expect(stack and not any(is_python(f) for f in stack),
           "Python frames from an unsupported CPython: %s" % fmt_stack(stack, 12), proc)
    notes = [n for n in proc.get("notes") or [] if "unsupported CPython version" in str(n)]
    expect(len(notes) == 1, "notes are %r, expected one about the unsupported CPython version"
           % proc.get("notes"), proc)
    rc, text, _ = run_cmd([cfg.stalltrace, "report", proc["_dump"]], timeout=60)
    expect(rc == 0 and text.count("unsupported CPython version") == 1,
           "the text report does not say once that the CPython version is unsupported", proc)
    return "native stack only, note: %s" % notes[0]


# ---------------------------------------------------------------------------
# Self-tests: the checks above fail when the Python frames regress.


def _frame(function, kind="native", file=None, line=None, module="libpython3.12.so.1.0"):
    return {"function": function, "module": "[python]" if kind == "python" else module,
            "file": file, "line": line, "kind": kind}


def _nested_proc():
    app = "/x/tests/e2e/targets/py_nested.py"
    stack = [_frame("clock_nanosleep", module="libc.so.6"), _frame("pysleep"), _frame("time_sleep"),
             _frame("load_config", "python", app, 17), _frame("handle_request", "python", app, 22),
             _frame("Handle._run", "python", "/usr/lib/python3.12/asyncio/events.py", 84)]
    return {"pid": 10, "complete": True,
            "threads": [{"tid": 10, "name": "python3", "role": "loop", "pool": None,
                         "loop": {"iterations": 100}}],
            "stalls": [{"tid": 10, "duration_ms": 201.0, "call": "clock_nanosleep", "stack": stack,
                        "samples": []}],
            "diagnosis": [{"culprit": "event_loop_blocking", "summary": "... mostly in clock_nanosleep "
                           "called from load_config (py_nested.py:17) in handle_request (py_nested.py:22)."}]}


@self_test
def pyframes_self_test(case):
    lines = {"sleep": 17, "load_config": 22}
    good = _nested_proc()

    def mutated(fn):
        p = copy.deepcopy(good)
        fn(p["stalls"][0]["stack"])
        return p

    check = lambda p: check_nested(p, lines)  # noqa: E731
    case("py_frames good", check, good, True)
    case("py_frames swapped", check, mutated(lambda s: s.__setitem__(slice(3, 5), [s[4], s[3]])), False)
    case("py_frames wrong line", check, mutated(lambda s: s[3].update(line=16)), False)
    case("py_frames native kind", check, mutated(lambda s: s[4].update(kind="native")), False)
    case("py_frames eval frame left above", check,
         mutated(lambda s: s.insert(3, _frame("_PyEval_EvalFrameDefault"))), False)
    case("py_frames missing", check, mutated(lambda s: s.__delitem__(slice(3, 5))), False)
    case("py_frames other file", check, mutated(lambda s: s[3].update(file="/x/other.py")), False)
