"""End-to-end tests of lock holders (issue 16): who held the lock a long wait was for.

- c_lock_holder: an epoll server whose worker thread ("worker") keeps
  cache_lock across a 300 ms usleep in flush_cache while the loop needs it
  for a GET. Each loop stall on it names the worker (tid as the program
  prints it, name), usleep and flush_cache in the worker's own stack, and
  how long the worker kept the lock after the wait began, against the
  program's clock; the diagnosis and the text say whom the loop waited for.
  The PINGs in between stall nothing and name no holder.
- c_rwlock_holder: the same kind of server with table_lock, an rwlock.
  Its "writer" keeps it to write across a 300 ms usleep in rewrite_table
  while the loop needs it to read (GET): each such stall names the writer
  (glibc's __cur_writer), usleep under rewrite_table in its stack, and its
  hold against the program's clock. Its two "reader" threads keep it to
  read across a 300 ms usleep in scan_table while the loop needs it to
  write (PUT): readers leave no tid, so each such stall says it was held by
  2 readers (tid 0), the hold against the last reader's unlock. HANDOFF:
  the readers keep it 25 ms and the writer queues behind them before the
  loop asks to write: readers held it when the wait began, the writer most
  of it, so the stall names nobody (never "2 readers").
- py_lock_holder (pyenv CPython 3.11, 3.12, 3.13): an asyncio loop blocks
  on a threading.Lock a thread keeps across a 300 ms time.sleep in
  flush_cache: each stall names that thread (its native id), flush_cache as
  a Python frame above the sleep in its stack, and the hold against the
  program's clock.
- py_gil_holder (3.11, 3.12, 3.13): a CPU-bound thread in crunch starves
  the loop of the GIL (20 select() calls of 1 ms per callback, each then
  waiting for the GIL): each stall names that thread as the GIL's holder,
  crunch as its Python frame, and the time the loop waited for the GIL
  against the callback's own duration less its selects.
"""

import re
import socket
import time

from e2e_lib import (
    Skip, c_target_binary, dumps_in, expect, load_process, pyenv_python, run_cmd, run_to_end, start_target,
    target, test)

ROUNDS = 3
# The loop's wait against the program's own measure of it, and the holder's
# hold after the wait began against the unlock time the program saw: one
# clock each side of a mutex, a scheduler's delay apart on a loaded machine.
WAIT_SLACK_MS = 15.0


def request(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line.encode())
        return s.recv(100).decode()


def drive(port):
    for _ in range(30):           # the loop becomes a loop
        expect(request(port, "PING\n").startswith("PONG"), "no PONG")
        time.sleep(0.01)
    for _ in range(ROUNDS):
        expect(request(port, "FLUSH\n").startswith("FLUSHING"), "no FLUSHING")
        time.sleep(0.03)          # the worker takes the lock
        expect(request(port, "GET\n").startswith("VALUE"), "no VALUE")
        for _ in range(10):
            request(port, "PING\n")
            time.sleep(0.02)


def loop_waits(out):
    """The loop's waits as the program measured them: (waited_ms, unlocked_after_ms)."""
    waits = [re.search(r"WAIT waited_ms=([0-9.]+) unlocked_after_ms=([0-9.-]+)", l) for l in out
             if l.startswith("WAIT")]
    expect(len(waits) == ROUNDS and all(waits), "the loop printed %r" % [l for l in out if "WAIT" in l])
    return [(float(w.group(1)), float(w.group(2))) for w in waits]


def check_blocked(proc, waits, holder, check_stack):
    """Each wait is a stall naming `holder`, held_ms against the program's own
    release time; check_stack(frames) judges the holder's (function, kind) frames."""
    blocked = [s for s in proc.get("stalls") or [] if s.get("blocked_by")]
    expect(len(blocked) == ROUNDS, "%d stalls name a holder, the loop waited %d times: %s"
           % (len(blocked), ROUNDS, [(s.get("duration_ms"), s.get("call")) for s in proc.get("stalls") or []]),
           proc)
    notes = []
    for stall, (waited, unlocked_after) in zip(blocked, waits):
        by = stall["blocked_by"]
        expect(by.get("tid") == holder, "blocked_by names thread %r (%r), the holder is %d"
               % (by.get("tid"), by.get("thread"), holder), proc)
        check_stack([(f.get("function"), f.get("kind")) for f in by.get("stack") or []])
        held = float(by.get("held_ms") or 0)
        expect(abs(held - unlocked_after) <= WAIT_SLACK_MS,
               "held_ms %.1f, the holder let go %.1f ms after the loop's wait began" % (held, unlocked_after),
               proc)
        expect(abs(float(stall["duration_ms"]) - waited) <= WAIT_SLACK_MS + 10,
               "the stall lasted %.1f ms, the loop waited %.1f ms" % (stall["duration_ms"], waited), proc)
        notes.append("wait %.0f ms (truth %.0f), held %.0f ms after it began (truth %.0f)"
                     % (stall["duration_ms"], waited, held, unlocked_after))
    return blocked, notes


def run_line_server(cfg, tmpdir, name, drive_it):
    """Runs the C target `name` (a line_server.h loop) under the recorder,
    drive_it(port), then SIGTERM: its process entry, stdout lines, build note."""
    binary, note = c_target_binary(cfg, tmpdir, name, ["-pthread"])
    server = start_target(cfg, tmpdir, [binary])
    try:
        port = int(server.wait_for_line(r"^LISTEN \d+", 15).split()[1])
        drive_it(port)
        server.popen.terminate()
        rc = server.wait(30)
        expect(rc in (0, -15, 143), "the server ended with status %s%s" % (rc, server.tail()))
    finally:
        server.close()
    proc, _ = load_process(cfg, tmpdir, name, server)
    return proc, list(server.out), note


@test("real_holders_c_lock_holder")
def t_c_lock_holder(cfg, tmpdir):
    proc, out, note = run_line_server(cfg, tmpdir, "c_lock_holder", drive)
    holds = [re.search(r"HOLD tid=(\d+) held_ms=([0-9.]+)", l) for l in out if l.startswith("HOLD")]
    expect(len(holds) == ROUNDS and all(holds), "the worker printed %r" % [l for l in out if "HOLD" in l])
    worker = int(holds[0].group(1))

    def usleep_in_flush_cache(frames):
        funcs = [f[0] for f in frames]
        expect("flush_cache" in funcs and "usleep" in funcs and funcs.index("usleep") < funcs.index("flush_cache"),
               "the holder's stack is %s, expected usleep called by flush_cache" % funcs, proc)

    blocked, notes = check_blocked(proc, loop_waits(out), worker, usleep_in_flush_cache)
    for stall in blocked:
        expect(stall["blocked_by"].get("thread") == "worker", "the holder is named %r, not worker"
               % stall["blocked_by"].get("thread"), proc)
    # Only the waits on cache_lock name a holder.
    for stall in proc.get("stalls") or []:
        expect(stall.get("blocked_by") is None or stall.get("call") == "pthread_mutex_lock",
               "a stall in %r names a holder" % stall.get("call"), proc)
    lock = [l for l in proc.get("locks") or [] if l.get("symbol") == "cache_lock+0x0"]
    expect(lock and len(lock[0].get("holders") or []) == ROUNDS,
           "locks[] cache_lock holders: %r" % [(l.get("symbol"), l.get("holders")) for l in proc.get("locks") or []],
           proc)
    diag = " ".join(d.get("summary") or "" for d in proc.get("diagnosis") or [])
    want = "held by thread %d (worker) in flush_cache" % worker
    expect(want in diag, "the diagnosis does not say %r: %s" % (want, diag), proc)
    rc, text, _ = run_cmd([cfg.stalltrace, "report"] + dumps_in(tmpdir))
    flat = re.sub(r"\s+", " ", text)
    expect(rc == 0 and re.search(r"the loop waited \S+ ms for the mutex 0x[0-9a-f]+ \(cache_lock\+0x0\) " + re.escape(want), flat),
           "the text report does not say whom the loop waited for: %s" % flat[:600], proc)
    return "; ".join(notes) + note


def drive_rwlock(port):
    for _ in range(30):           # the loop becomes a loop
        expect(request(port, "PING\n").startswith("PONG"), "no PONG")
        time.sleep(0.01)
    for take, then in (("WRITE", "GET"), ("SCAN", "PUT"), (None, "HANDOFF")):
        for _ in range(ROUNDS):
            if take:
                expect(request(port, take + "\n").startswith(take[:4]), "no answer to " + take)
            expect(request(port, then + "\n").split()[0] in ("VALUE", then), "no answer to " + then)
            for _ in range(10):
                request(port, "PING\n")
                time.sleep(0.02)


@test("real_holders_c_rwlock_holder")
def t_c_rwlock_holder(cfg, tmpdir):
    proc, out, note = run_line_server(cfg, tmpdir, "c_rwlock_holder", drive_rwlock)
    holds = [re.search(r"HOLD tid=(\d+) held_ms=([0-9.]+)", l) for l in out if l.startswith("HOLD")]
    scans = [l for l in out if l.startswith("SCAN tid=")]
    expect(len(holds) == 2 * ROUNDS and all(holds) and len(scans) == 4 * ROUNDS,
           "the holders printed %r" % [l for l in out if l.startswith(("HOLD", "SCAN"))])
    writer = int(holds[0].group(1))
    waits = {}                    # by request: (waited, unlocked_after, readers_left_after)
    for l in out:
        m = re.search(r"WAIT req=(\w+) call=\w+ waited_ms=([0-9.]+) unlocked_after_ms=([0-9.-]+) "
                      r"readers_left_after_ms=([0-9.-]+)", l)
        if m:
            waits.setdefault(m.group(1), []).append(tuple(float(m.group(k)) for k in (2, 3, 4)))
    expect(all(len(waits.get(r, [])) == ROUNDS for r in ("GET", "PUT", "HANDOFF")),
           "the loop printed %r" % [l for l in out if "WAIT" in l])
    stalls = sorted(proc.get("stalls") or [], key=lambda s: s.get("start_s") or 0)
    by_call = {c: [s for s in stalls if s.get("call") == c] for c in ("pthread_rwlock_rdlock", "pthread_rwlock_wrlock")}
    expect(len(by_call["pthread_rwlock_rdlock"]) == ROUNDS and len(by_call["pthread_rwlock_wrlock"]) == 2 * ROUNDS,
           "stalls: %s" % [(s.get("duration_ms"), s.get("call")) for s in stalls], proc)
    expect(all(s.get("blocked_by") is None for s in stalls if s.get("call") not in by_call),
           "a stall in another call names a holder: %s" % [s.get("call") for s in stalls if s.get("blocked_by")], proc)
    notes = []
    rounds = (list(zip(by_call["pthread_rwlock_rdlock"], waits["GET"], ["writer"] * ROUNDS)) +
              list(zip(by_call["pthread_rwlock_wrlock"], waits["PUT"] + waits["HANDOFF"],
                       ["readers"] * ROUNDS + ["handoff"] * ROUNDS)))
    exercised = 0
    for stall, (waited, unlocked_after, readers_left_after), who in rounds:
        expect(abs(float(stall["duration_ms"]) - waited) <= WAIT_SLACK_MS + 10,
               "the stall lasted %.1f ms, the loop waited %.1f ms" % (stall["duration_ms"], waited), proc)
        by = stall.get("blocked_by")
        if who == "handoff":
            # Readers held it as the wait began, a writer the rest of the time:
            # naming the readers would be false; the writer it was not asked of.
            # Only a writer that already held it when the wait began is named.
            if readers_left_after > 0:
                exercised += 1
                expect(by is None, "a wait that readers held only %.1f ms of %.1f names %r"
                       % (readers_left_after, waited, by), proc)
            else:
                expect(by is None or by.get("tid") == writer, "a wait for the writer names %r" % by, proc)
            notes.append("handoff: wait %.1f ms (truth %.1f), readers left after %.1f ms, names %s"
                         % (stall["duration_ms"], waited, readers_left_after,
                            "nobody" if by is None else "thread %s" % by.get("tid")))
            continue
        expect(by is not None, "the %s-held wait of %.1f ms names no holder" % (who, waited), proc)
        if who == "writer":
            expect(by.get("tid") == writer and by.get("thread") == "writer" and "readers" not in by,
                   "blocked_by names %r, the writer is %d" % (by, writer), proc)
            funcs = [f.get("function") for f in by.get("stack") or []]
            expect("rewrite_table" in funcs and "usleep" in funcs and
                   funcs.index("usleep") < funcs.index("rewrite_table"),
                   "the writer's stack is %s, expected usleep called by rewrite_table" % funcs, proc)
        else:
            expect(by.get("tid") == 0 and by.get("readers") == 2 and not by.get("stack"),
                   "blocked_by of a wait for 2 readers: %r" % by, proc)
        held = float(by.get("held_ms") or 0)
        expect(abs(held - unlocked_after) <= WAIT_SLACK_MS,
               "held_ms %.1f, the %s let go %.1f ms after the loop's wait began" % (held, who, unlocked_after),
               proc)
        notes.append("%s: wait %.1f ms (truth %.1f), held %.1f ms after it began (truth %.1f)"
                     % (who, stall["duration_ms"], waited, held, unlocked_after))
    expect(exercised > 0, "in no HANDOFF round did the readers still hold the lock as the loop's wait began")
    lock = [l for l in proc.get("locks") or [] if l.get("symbol") == "table_lock+0x0"]
    named = sum(1 for s in stalls if s.get("blocked_by"))
    expect(lock and len(lock[0].get("holders") or []) == named,
           "locks[] table_lock holders: %r, %d stalls name one" % (
               [(l.get("symbol"), l.get("holders")) for l in proc.get("locks") or []], named), proc)
    rc, text, _ = run_cmd([cfg.stalltrace, "report"] + dumps_in(tmpdir))
    flat = re.sub(r"\s+", " ", text)
    lock_re = r"the loop waited \S+ ms for the rwlock 0x[0-9a-f]+ \(table_lock\+0x0\) held by "
    for who in (re.escape("thread %d (writer) in rewrite_table" % writer), "2 readers"):
        expect(rc == 0 and re.search(lock_re + who, flat),
               "the text report does not say the loop waited for %s: %s" % (who, flat[:800]), proc)
    return "; ".join(notes) + note


def run_python_target(cfg, tmpdir, minor, name):
    """Runs targets/<name> on pyenv's CPython 3.<minor>: its process entry and stdout lines."""
    python = pyenv_python(minor)
    if python is None:
        raise Skip("no pyenv CPython 3.%d" % minor)
    proc, _ = run_to_end(cfg, tmpdir, [python, target(name)], name)
    return proc, proc["_stdout"]


def py_lock_holder(cfg, tmpdir, minor):
    proc, out = run_python_target(cfg, tmpdir, minor, "py_lock_holder.py")
    holder = [re.search(r"HOLDER tid=(\d+)", l) for l in out if l.startswith("HOLDER")]
    expect(holder and holder[0] and "DONE" in out, "the target printed %r" % out[-5:])
    worker = int(holder[0].group(1))

    def sleeps_in_flush_cache(frames):
        expect(("flush_cache", "python") in frames, "no Python frame flush_cache in the holder's stack: %s"
               % frames, proc)
        sleep = [i for i, f in enumerate(frames) if f[0] in ("clock_nanosleep", "time_sleep", "pysleep")]
        expect(sleep and sleep[0] < frames.index(("flush_cache", "python")),
               "the holder's stack does not sleep in flush_cache: %s" % frames, proc)

    _, notes = check_blocked(proc, loop_waits(out), worker, sleeps_in_flush_cache)
    diag = " ".join(d.get("summary") or "" for d in proc.get("diagnosis") or [])
    want = "held by thread %d" % worker
    expect(want in diag and "in flush_cache (py_lock_holder.py:" in diag,
           "the diagnosis does not name the holder in flush_cache: %s" % diag, proc)
    return "; ".join(notes)


def py_gil_holder(cfg, tmpdir, minor):
    proc, out = run_python_target(cfg, tmpdir, minor, "py_gil_holder.py")
    cruncher = [re.search(r"CRUNCHER tid=(\d+)", l) for l in out if l.startswith("CRUNCHER")]
    steps = [float(re.search(r"ms=([0-9.]+)", l).group(1)) for l in out if l.startswith("STEP")]
    expect(cruncher and cruncher[0] and len(steps) == 4 and "DONE" in out, "the target printed %r" % out[-6:])
    tid = int(cruncher[0].group(1))
    blocked = [s for s in proc.get("stalls") or [] if s.get("blocked_by")]
    # The callbacks' stalls (the longest, in time order); a short one around
    # them may wait for the GIL too, and then names the same holder.
    longest = sorted(sorted(blocked, key=lambda s: -float(s["duration_ms"]))[:len(steps)],
                     key=lambda s: float(s["start_s"]))
    expect(len(longest) == len(steps) and all(float(s["duration_ms"]) >= 0.5 * st for s, st in zip(longest, steps)),
           "%d stalls name a holder, the loop ran %d callbacks of %s ms: %s"
           % (len(blocked), len(steps), steps, [(s.get("duration_ms"), s.get("call"), bool(s.get("blocked_by")))
                                                for s in proc.get("stalls") or []]), proc)
    for stall in blocked:
        expect(stall["blocked_by"].get("tid") == tid, "a stall names thread %r, the CPU-bound thread is %d"
               % (stall["blocked_by"].get("tid"), tid), proc)
    notes = []
    for stall, step in zip(longest, steps):
        by = stall["blocked_by"]
        expect(by.get("tid") == tid, "blocked_by names thread %r, the CPU-bound thread is %d" % (by.get("tid"), tid),
               proc)
        frames = [(f.get("function"), f.get("kind")) for f in by.get("stack") or []]
        expect(("crunch", "python") in frames, "no Python frame crunch in the GIL holder's stack: %s" % frames, proc)
        # The GIL came back after each 1 ms select: the callback less its selects, the selects
        # stretched on a loaded machine.
        held, gil_truth = float(by.get("held_ms") or 0), step - 20.0
        expect(0.5 * gil_truth <= held <= step + 10, "the loop waited %.1f ms for the GIL, the callback took %.1f ms "
               "with 20 ms of selects" % (held, step), proc)
        notes.append("GIL wait %.0f ms (callback %.0f ms less 20 ms of selects: %.0f)" % (held, step, gil_truth))
    diag = " ".join(d.get("summary") or "" for d in proc.get("diagnosis") or [])
    expect("(GIL) held by thread %d" % tid in diag and "in crunch (py_gil_holder.py:" in diag,
           "the diagnosis does not name the GIL's holder in crunch: %s" % diag, proc)
    return "; ".join(notes)


# One test per CPython version, each target on 3.11, 3.12 and 3.13.
for _minor in (11, 12, 13):
    test("real_holders_py3%d_lock" % _minor)(lambda cfg, tmpdir, m=_minor: py_lock_holder(cfg, tmpdir, m))
    test("real_holders_py3%d_gil" % _minor)(lambda cfg, tmpdir, m=_minor: py_gil_holder(cfg, tmpdir, m))
