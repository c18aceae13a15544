"""End-to-end tests on puma 5.6 (Ruby 3.1, Debian's puma and ruby-rack) with
2 request threads (`-t 2:2`), recorded with `stalltrace run -- puma ...`. The
Rack app (targets/ruby/config.ru) times its own slow steps (TRUTH lines).

puma's request threads ("puma srv tp 001/002") probe their client with a
zero timeout before each request and park on a condition of their own
between requests: they are a pool of 2, not loop threads; its reactor and
its accepting thread may be loops. The reaper and trimmer housekeeping
threads are no pool.

- real_puma_sleep: 3 x `sleep 0.25` in load_report, one request at a time:
  slow calls of the program's durations on the pool's workers, no stall and
  no loop blamed.
- real_puma_pool_saturated: 6 rounds of 2 concurrent /sleep requests: the
  pool saturated in each round about as long as both clients waited
  together, and the diagnosis says it ran out of workers.
- real_puma_healthy: bursts of fast requests from 2 clients with idle gaps:
  no stall, no saturation, no diagnosis.

Ruby frames (preload/rbframes.c) name the Ruby code of every stack: the
sleeps' slow calls are at `load_report (config.ru:4)`, the line that sleeps,
and the saturated pool's diagnosis says so. puma runs requests on its pool,
never on a loop thread, so CPU-bound work is no stall there: real_ruby_loop
is a plain Ruby IO.select loop (targets/ruby/loop.rb) whose 3 sleeps must be
stalls at `nap (loop.rb:6)`, taken in the wrapped call, and whose 3 CPU-bound
steps must be stalls sampled (from the signal handler) in crunch_numbers, in
the text, json and folded reports.
"""

import os
import re
import shutil
import threading
import time

from e2e_lib import (Skip, diagnosis_names, expect, fmt_stack, free_port, load_process, run_cmd, start_target,
                     test, truth_values, wait_port)
from test_real_loops import get, load

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "targets", "ruby", "config.ru")
LOOP_RB = os.path.join(HERE, "targets", "ruby", "loop.rb")
THRESHOLD = 50
WORKER_NAME = re.compile(r"puma srv tp \d+$")


def serve(cfg, tmpdir, requests):
    """Run puma under stalltrace, send requests (a function of the port),
    quit it; returns (process entry, TRUTH values by name, its output)."""
    if not shutil.which("puma"):
        raise Skip("no puma (apt-get install puma ruby-rack)")
    port = free_port()
    p = start_target(cfg, tmpdir, ["puma", "-t", "2:2", "-b", "tcp://127.0.0.1:%d" % port, CONFIG],
                     threshold=THRESHOLD)
    try:
        wait_port(port, p, 30)
        get(port, "/ok", timeout=30)
        requests(port)
        try:
            get(port, "/quit", timeout=10)
        except Exception:  # noqa: BLE001 - puma may close before answering
            pass
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run -- puma exited %r, expected 0%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "puma", p)
    return proc, truth_values(p.out), p.out


def line_of(path, text):
    """The line of the program's own source that holds text (1-based)."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if text in line:
                return i
    raise AssertionError("%r not in %s" % (text, path))


def ruby_frames(stack):
    """The Ruby frames of a JSON stack, innermost first, as Ruby's own
    backtraces write them: "file:line:in `function'"."""
    return ["%s:%s:in `%s'" % (f.get("file"), f.get("line"), f.get("function"))
            for f in stack or [] if f.get("kind") == "ruby"]


def innermost_ruby(stack, c_methods=()):
    """The innermost Ruby frame of a JSON stack, as "func (file:line)",
    past the C methods named in c_methods called at the same place."""
    frames = [f for f in stack or [] if f.get("kind") == "ruby"]
    while len(frames) > 1 and frames[0].get("function") in c_methods and \
            (frames[0].get("file"), frames[0].get("line")) == (frames[1].get("file"), frames[1].get("line")):
        frames = frames[1:]
    for f in frames[:1]:
        return "%s (%s:%s)" % (f.get("function"), os.path.basename(f.get("file") or "?"), f.get("line"))
    return None


def ruby_truth(lines):
    """The backtrace Ruby gave for the target's first sleep (its CALLER lines)."""
    return [line[len("CALLER "):] for line in lines if line.startswith("CALLER ")]


def expect_ruby_frames(stack, truth, method, proc):
    """The Ruby frames of a sleep's stack are Ruby's own backtrace of it:
    Kernel#sleep (a C method) at its caller's line, then `method`, ..., and
    the sleep comes right after the libc call in the native frames."""
    got = ruby_frames(stack)
    expect(len(truth) > 2 and truth[0].endswith("in `sleep'") and truth[1].endswith("in `%s'" % method),
           "the target's own backtrace of its sleep is %s" % truth, proc)
    expect(got == truth, "a sleep's Ruby frames are\n  %s\nRuby's own backtrace of it says\n  %s"
           % ("\n  ".join(got), "\n  ".join(truth)), proc)
    # libruby's own frames between them are the interpreter's, named or not.
    named = [f for f in stack if f.get("function") and not (f.get("module") or "").startswith("libruby")]
    expect(len(named) > 2 and named[0].get("module", "").startswith("libc") and named[1].get("kind") == "ruby" and
           named[1].get("function") == "sleep" and named[2].get("function") == method,
           "the sleep's named frames are %s, expected the libc call, sleep, %s" % (fmt_stack(named, 4), method),
           proc)


def request_pool(proc):
    """The pool of puma's request threads: both, and nobody else, in it; no
    loop among them and no other pool (the housekeeping threads)."""
    workers = {t["tid"] for t in proc["threads"] if WORKER_NAME.match(t.get("name") or "")}
    expect(len(workers) == 2, "threads named 'puma srv tp N': %d, expected 2" % len(workers), proc)
    loops = [(t["tid"], t["name"]) for t in proc["threads"] if t.get("role") == "loop"]
    expect(not workers & {tid for tid, _ in loops}, "puma's request threads taken for loop threads: %s" % loops,
           proc)
    # The reactor (nio4r's epoll) takes only requests that arrive in parts,
    # the server thread accepts in select: loops, when they return often enough.
    strays = [(tid, name) for tid, name in loops if name not in ("puma", "puma srv", "puma reactor")]
    expect(not strays, "loop threads %s, expected only puma's reactor and accepting threads" % loops, proc)
    pools = [pl for pl in proc["pools"] if set(pl.get("tids") or []) & workers]
    expect(len(pools) == 1 and set(pools[0]["tids"]) == workers,
           "the request threads %s are in pools %s, expected one pool of both"
           % (sorted(workers), [pl.get("tids") for pl in pools]), proc)
    others = [pl.get("tids") for pl in proc["pools"] if pl is not pools[0]]
    expect(not others, "pools of other threads (puma's housekeeping): %s" % others, proc)
    return pools[0], workers


@test("real_puma_sleep")
def t_puma_sleep(cfg, tmpdir):
    def requests(port):
        for _ in range(3):
            get(port, "/sleep")
        get(port, "/ok")

    proc, truth, p_out = serve(cfg, tmpdir, requests)
    pool, workers = request_pool(proc)
    sleeps = truth.get("sleep", [])
    expect(len(sleeps) == 3, "the app timed %s" % truth)
    stalls = [(s["tid"], round(s["duration_ms"]), s.get("call"), fmt_stack(s.get("stack"), 4)) for s in proc["stalls"]]
    expect(not stalls, "stalls recorded, but no loop thread ran the sleeps: %s" % stalls, proc)
    names = diagnosis_names(proc)
    expect("event_loop_blocking" not in names, "diagnosis %s blames a loop" % names, proc)
    slow = sorted((c for c in proc["slow_calls"] if c["tid"] in workers and c["duration_ms"] >= THRESHOLD),
                  key=lambda c: c["start_s"])
    expect(len(slow) == 3, "%d slow calls on the request threads, the app slept 3 times: %s"
           % (len(slow), [(round(c["duration_ms"]), c.get("call")) for c in slow]), proc)
    where = "load_report (config.ru:%d)" % line_of(CONFIG, "sleep 0.25")
    truth_frames = ruby_truth(p_out)
    for c, ms in zip(slow, sleeps):
        expect(c.get("call") in ("pthread_cond_timedwait", "ppoll") and ms * 0.98 <= c["duration_ms"] <= ms + 50,
               "a sleep of %.1f ms came out as %.1f ms in %s" % (ms, c["duration_ms"], c.get("call")), proc)
        expect(innermost_ruby(c.get("stack"), ("sleep",)) == where, "a sleep's slow call is at %s, expected %s: %s"
               % (innermost_ruby(c.get("stack"), ("sleep",)), where, fmt_stack(c.get("stack"), 12)), proc)
        expect_ruby_frames(c.get("stack"), truth_frames, "load_report", proc)
    busy = pool.get("busy_in") or []
    expect(busy and busy[0].get("count") == 3, "the pool's workers were busy in %s, expected the 3 sleeps"
           % [(b.get("call"), b.get("count")) for b in busy], proc)
    return "sleeps %s -> slow calls %s ms at sleep < %s as Ruby's backtrace (%d frames) on pool %d" % (
        [round(x, 1) for x in sleeps], [round(c["duration_ms"], 1) for c in slow], where, len(truth_frames),
        pool["id"])


@test("real_puma_pool_saturated")
def t_puma_pool_saturated(cfg, tmpdir):
    rounds = []

    def requests(port):
        for _ in range(6):
            times = []

            def one():
                start = time.monotonic()
                get(port, "/sleep")
                times.append((start, time.monotonic()))

            threads = [threading.Thread(target=one) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            expect(len(times) == 2, "a round of 2 concurrent /sleep requests failed")
            rounds.append(min(e for _, e in times) - max(s for s, _ in times))
            time.sleep(0.2)

    proc, truth, _ = serve(cfg, tmpdir, requests)
    pool, _ = request_pool(proc)
    expect(len(truth.get("sleep", [])) == 12, "the app timed %s" % truth)
    spans = [s["duration_ms"] for s in pool["saturations"]]
    together = [r * 1e3 for r in rounds]
    expect(len(spans) == 6, "%d saturation spans %s, the 2 workers were busy together 6 times (clients: %s)"
           % (len(spans), [round(x) for x in spans], [round(x) for x in together]), proc)
    for span, both in zip(spans, together):
        # Both clients wait longer than both workers sleep (the request's
        # way in and out), and the second worker starts a little later.
        expect(both * 0.75 <= span <= both + 20,
               "a round where both clients waited %.0f ms saturated the pool %.0f ms" % (both, span), proc)
    names = diagnosis_names(proc)
    expect("thread_pool_exhaustion" in names, "diagnosis %s, the pool was out of workers %.0f ms"
           % (names, sum(spans)), proc)
    where = "load_report (config.ru:%d)" % line_of(CONFIG, "sleep 0.25")
    said = " ".join(d.get("summary") or "" for d in proc["diagnosis"])
    expect(where in said, "the diagnosis does not say where the workers were (%s): %s" % (where, said), proc)
    expect("event_loop_blocking" not in names, "diagnosis %s blames a loop" % names, proc)
    # The text report's busy-in stack: the libc wait, Kernel#sleep, then load_report.
    dump = [d for d in os.listdir(tmpdir) if d.endswith(".dump")]
    rc, text, err = run_cmd([cfg.stalltrace, "report", os.path.join(tmpdir, dump[0])], timeout=60)
    expect(rc == 0, "report exited %d: %s" % (rc, err[:300]))
    line = line_of(CONFIG, "sleep 0.25")
    site = r"\n\s+(?:pthread_cond_timedwait|ppoll) \(libc[^\n]*\)\n\s+sleep \(\[ruby\] config\.ru:%d\)\n\s+" \
           r"load_report \(\[ruby\] config\.ru:%d\)\n" % (line, line)
    expect(re.search(site, text), "the text report's busy-in stack is not the libc wait < sleep < %s:\n%s"
           % (where, text), proc)
    return "both clients waiting %s ms -> saturated %s ms (%.2f s in all)" % (
        [round(x) for x in together], [round(x) for x in spans], pool["saturated_s"])


@test("real_puma_healthy")
def t_puma_healthy(cfg, tmpdir):
    latencies = []

    def requests(port):
        for _ in range(3):
            latencies.extend(load(port, 2, 25, "/ok"))
            time.sleep(0.4)

    proc, _, _ = serve(cfg, tmpdir, requests)
    pool, _ = request_pool(proc)
    stalls = [(s["tid"], round(s["duration_ms"]), s.get("call"), fmt_stack(s.get("stack"), 4)) for s in proc["stalls"]]
    expect(not stalls, "a healthy puma stalled: %s" % stalls, proc)
    expect(pool["saturated_s"] * 1e3 < THRESHOLD, "a healthy pool saturated %.0f ms" % (pool["saturated_s"] * 1e3),
           proc)
    names = diagnosis_names(proc)
    expect(not names, "diagnosis %s on a healthy puma" % names, proc)
    latencies.sort()
    return "%d requests, p99 %.1f ms, max %.1f ms: no stall, no diagnosis" % (
        len(latencies), latencies[int(len(latencies) * 0.99) - 1], latencies[-1])


@test("real_ruby_loop")
def t_ruby_loop(cfg, tmpdir):
    if not shutil.which("ruby"):
        raise Skip("no ruby (apt-get install ruby)")
    p = start_target(cfg, tmpdir, ["ruby", LOOP_RB, "sleep", "cpu", "sleep", "cpu", "sleep", "cpu"],
                     threshold=THRESHOLD)
    try:
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run -- ruby loop.rb exited %r, expected 0%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "loop.rb", p)
    truth = truth_values(p.out)
    expect(len(truth.get("sleep", [])) == 3 and len(truth.get("cpu", [])) == 3, "the loop timed %s" % truth)
    nap = "nap (loop.rb:%d)" % line_of(LOOP_RB, "sleep 0.2")
    crunch = range(line_of(LOOP_RB, "def crunch_numbers"), line_of(LOOP_RB, "acc = (acc") + 1)
    stalls = sorted(proc["stalls"], key=lambda s: s["start_s"])
    expect(len(stalls) == 6, "%d stalls %s, the loop slept 3 times and spun 3 times"
           % (len(stalls), [(round(s["duration_ms"]), s.get("call")) for s in stalls]), proc)
    sleeps = [s for s in stalls if s.get("call")]
    spins = [s for s in stalls if not s.get("call")]
    expect(len(sleeps) == 3 and len(spins) == 3, "stalls in calls %s, expected 3 sleeps and 3 CPU-bound"
           % [s.get("call") for s in stalls], proc)
    for s, ms in zip(sleeps, truth["sleep"]):
        expect(ms * 0.98 <= s["duration_ms"] <= ms + 50, "a sleep of %.1f ms stalled %.1f ms" % (ms, s["duration_ms"]),
               proc)
        at = innermost_ruby(s.get("stack"), ("sleep",))
        expect(at == nap, "a sleep's stall is at %s, expected %s: %s" % (at, nap, fmt_stack(s.get("stack"), 12)), proc)
        expect_ruby_frames(s.get("stack"), ruby_truth(p.out), "nap", proc)
    sampled = []
    for s, ms in zip(spins, truth["cpu"]):
        expect(ms * 0.98 <= s["duration_ms"] <= ms + 50, "a CPU step of %.1f ms stalled %.1f ms"
               % (ms, s["duration_ms"]), proc)
        samples = s.get("samples") or []
        # Process.clock_gettime, a C method, may be what it was in.
        named = [innermost_ruby(x.get("stack"), ("clock_gettime",)) for x in samples]
        good = [n for n in named if n and n.startswith("crunch_numbers (loop.rb:") and
                int(n.rsplit(":", 1)[1].rstrip(")")) in crunch]
        expect(samples and len(good) == len(samples), "a CPU stall's samples are at %s, expected crunch_numbers "
               "(loop.rb:%d-%d)" % (named, crunch[0], crunch[-1]), proc)
        sampled.append(len(samples))
    # The one naming policy, in every format.
    dump = [d for d in os.listdir(tmpdir) if d.endswith(".dump")]
    outs = {}
    for fmt in ("text", "folded"):
        rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", fmt, os.path.join(tmpdir, dump[0])], timeout=60)
        expect(rc == 0, "report --format %s exited %d: %s" % (fmt, rc, err[:300]))
        outs[fmt] = out
    expect("at %s" % nap in outs["text"], "the text report does not say the loop blocked at %s:\n%s"
           % (nap, outs["text"]), proc)
    site = r"\n\s+ppoll \(libc[^\n]*\)\n\s+sleep \(\[ruby\] loop\.rb:%d\)\n\s+%s" % (
        line_of(LOOP_RB, "sleep 0.2"), re.escape("nap ([ruby] loop.rb:%d)" % line_of(LOOP_RB, "sleep 0.2")))
    expect(re.search(site, outs["text"]), "the text report's stall site is not ppoll < sleep < %s:\n%s"
           % (nap, outs["text"]), proc)
    expect("(loop.rb)" not in outs["text"], "the text report has a frame with no line (the VM's top frame):\n%s"
           % outs["text"], proc)
    expect("crunch_numbers ([ruby] loop.rb:" in outs["text"], "the text report does not name crunch_numbers:\n%s"
           % outs["text"], proc)
    folded = [line for line in outs["folded"].splitlines() if line.strip()]
    expect(any(";nap;" in line for line in folded) and any(";crunch_numbers" in line for line in folded),
           "the folded stacks do not name nap and crunch_numbers:\n%s" % outs["folded"], proc)
    # It names the larger of the two, which are about as long.
    said = " ".join(d.get("summary") or "" for d in proc["diagnosis"])
    expect(nap in said or "crunch_numbers (loop.rb:" in said, "the diagnosis names neither %s nor crunch_numbers: %s"
           % (nap, said), proc)
    return "sleeps %s ms -> stalls %s at sleep < %s as Ruby's backtrace (%d frames); spins %s ms -> stalls %s, %s samples all in crunch_numbers" % (
        [round(x) for x in truth["sleep"]], [round(s["duration_ms"]) for s in sleeps], nap, len(ruby_truth(p.out)),
        [round(x) for x in truth["cpu"]], [round(s["duration_ms"]) for s in spins], sampled)
