"""End-to-end tests of the recorder under abuse (issue 5): fork in every
form, exec, thread churn, a target that owns or blocks our signal, EINTR,
dlopen during sampling, a full ring, and dump files that must never be
written through or left where they cannot be. Each runs a real program and
checks both that the program behaved exactly as without us and that the
dumps say what happened.
"""

import os
import re
import resource

from e2e_lib import (
    CPU_HI, CPU_LO, EXACT_HI, EXACT_LO, Fail, Proc, Skip, THRESHOLD_MS, c_target_binary,
    clean_env, dumps_in, expect, json_report, main_stalls, python_for_minor, run_cmd,
    start_target, target, test)


def processes_by_pid(cfg, tmpdir):
    """{pid: [process entries]} over every dump the run left (exec keeps a pid)."""
    out = {}
    for dump in dumps_in(tmpdir):
        for p in json_report(cfg, dump)["processes"]:
            p["_dump"] = dump
            out.setdefault(p["pid"], []).append(p)
    return out


def stall_ms(p):
    return sorted(round(s["duration_ms"]) for s in p["stalls"])


def run_target(cfg, tmpdir, cmd, threshold=THRESHOLD_MS, env=None, timeout=60, extra=()):
    """Run under `stalltrace run`; returns (status, stdout lines, stderr lines)."""
    argv = [cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "%p.dump"),
            "--threshold", str(threshold)] + list(extra) + ["--"] + cmd
    p = Proc(argv, cwd=tmpdir, env=clean_env(**(env or {})))
    try:
        rc = p.wait(timeout)
        return rc, list(p.out), list(p.err)
    finally:
        p.close()


@test("fork_every_way")
def t_fork_every_way(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_fork.py")])
    expect(rc == 0 and "FORKS-DONE" in out, "py_fork.py failed (%s): %s" % (rc, (out + err)[-5:]))
    by_pid = processes_by_pid(cfg, tmpdir)
    parents = [p for ps in by_pid.values() for p in ps if "py_fork.py" in " ".join(p["argv"])
               and p.get("parent_pid") not in by_pid]
    expect(len(parents) == 1, "expected one parent dump, found %d: %s"
           % (len(parents), {pid: [q["argv"] for q in ps] for pid, ps in by_pid.items()}))
    parent = parents[0]
    expect([s for s in stall_ms(parent) if s >= 100] and
           all(EXACT_LO <= s <= EXACT_HI for s in stall_ms(parent) if s >= 100),
           "the parent's dump should hold its own 200 ms stall only, has %s" % stall_ms(parent))
    children = [p for ps in by_pid.values() for p in ps if p is not parent]
    got = sorted(max(stall_ms(c) or [0]) for c in children)
    # os.fork child 150 ms, multiprocessing fork and spawn children 120 ms each.
    expect(len(children) == 3, "expected 3 child dumps (fork, mp fork, mp spawn), found %d: %s; "
           "the 20 exec-only children must leave none" % (len(children), [c["argv"] for c in children]))
    expect(100 <= got[0] <= 160 and 100 <= got[1] <= 160 and 135 <= got[2] <= 200,
           "child stalls %s, expected about [120, 120, 150]" % got)
    forked = [c for c in children if c.get("parent_pid") == parent["pid"]]
    expect(len(forked) >= 2, "forked children should name the parent's pid %d: %s"
           % (parent["pid"], [(c["pid"], c.get("parent_pid")) for c in children]))
    return "parent %s; children %s; no dump from 20 exec-only children" % (stall_ms(parent), got)


@test("fork_not_followed")
def t_fork_not_followed(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_fork.py")],
                              env={"STALLTRACE_FOLLOW_FORK": "0"})
    expect(rc == 0 and "FORKS-DONE" in out, "py_fork.py failed (%s): %s" % (rc, (out + err)[-5:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    # The parent, and the multiprocessing 'spawn' child, which execs a new
    # program (that records); forked children record nothing.
    expect(len(procs) == 2, "expected 2 dumps (parent, spawned python), found %d: %s"
           % (len(procs), [(p["pid"], p["argv"]) for p in procs]))
    return "%d dumps: the parent and the exec'd spawn child" % len(procs)


@test("exec_new_image")
def t_exec_new_image(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_exec.py")])
    expect(rc == 0 and "EXEC-DONE" in out, "py_exec.py failed (%s): %s" % (rc, (out + err)[-5:]))
    by_pid = processes_by_pid(cfg, tmpdir)
    expect(len(by_pid) == 1 and len(list(by_pid.values())[0]) == 2,
           "expected two dumps of one pid (one per image), found %s"
           % {pid: len(ps) for pid, ps in by_pid.items()})
    images = sorted(list(by_pid.values())[0], key=lambda p: len(p["argv"]))
    first, second = stall_ms(images[0]), stall_ms(images[1])
    expect(first and 90 <= first[-1] <= 140 and second and 135 <= second[-1] <= 190,
           "image stalls %s then %s, expected ~100 then ~150 ms" % (first, second))
    expect(images[0]["complete"], "the first image's dump should be complete (it ended by exec)")
    return "pid %d: first image %s ms, second image %s ms" % (images[0]["pid"], first, second)


@test("thread_churn")
def t_thread_churn(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "churn"], timeout=120)
    expect(rc == 0 and "churn: 10000 threads" in out,
           "10,000 threads under the recorder: status %s, %s" % (rc, (out + err)[-5:]))
    for dump in dumps_in(tmpdir):
        json_report(cfg, dump)     # well formed, whatever it holds
    return "10,000 threads created and joined, exit 0" + note


@test("eintr_never_from_sampling")
def t_eintr(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "eintr"], threshold=10)
    expect(rc == 0, "the target saw EINTR from a wait (status %s): %s" % (rc, err[-5:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    samples = sum(len(s.get("samples") or []) for p in procs for s in p["stalls"])
    expect(samples >= 20, "only %d in-stall samples: the test did not exercise the signal" % samples)
    return "no EINTR in 200 timed waits while %d samples were taken%s" % (samples, note)


@test("dlopen_while_sampled")
def t_dlopen(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "dlopen"], threshold=10, timeout=60)
    expect(rc == 0 and "dlopen: done" in out, "dlopen loop under sampling: status %s %s"
           % (rc, (out + err)[-5:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    stalls = sum(len(p["stalls"]) for p in procs)
    expect(stalls >= 10, "expected a stall per 40 ms dlopen burst, saw %d" % stalls)
    return "%d stalls sampled during dlopen/dlclose loops, no deadlock%s" % (stalls, note)


@test("signals_blocked_by_target")
def t_blockall(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "blockall"], threshold=20)
    expect(rc == 0 and "blockall: done" in out, "status %s %s" % (rc, (out + err)[-5:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    stalls = [s for p in procs for s in p["stalls"]]
    expect(len(stalls) >= 8, "10 CPU stalls of 60 ms expected, saw %d" % len(stalls))
    return "%d stalls recorded with every signal blocked, no signal left pending%s" % (len(stalls), note)


@test("sigtimedwait_not_cut_short")
def t_sigwait(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "sigwait"], threshold=20)
    expect(rc == 0, "sigtimedwait after a loop ran: %s" % (out + err)[-3:])
    return "%s%s" % (out[-1] if out else "", note)


@test("vforked_children_leave_the_parent_alone")
def t_vfork(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_vfork.py")])
    expect(rc == 137 and any(l.startswith("VFORK-DONE") for l in out),
           "status %s, expected the target's SIGKILL: %s" % (rc, (out + err)[-4:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps
             if "py_vfork.py" in " ".join(p.get("argv") or [])]
    expect(len(procs) == 1, "%d dumps of the parent, expected 1" % len(procs))
    p = procs[0]
    stalls = [s for s in p["stalls"] if 180 <= s["duration_ms"] <= 260]
    expect(stalls and stalls[0]["call"] == "clock_nanosleep", "no 200 ms sleep after the children: %s"
           % [(s["duration_ms"], s["call"]) for s in p["stalls"]], p)
    expect(not p["complete"], "the killed parent's dump says complete (a child's exec marked it)", p)
    return "parent's dump kept through 2 vforks: %.0f ms stall after them, incomplete as killed" % (
        stalls[0]["duration_ms"])


@test("seccomp_allow_list")
def t_seccomp(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "seccomp"], threshold=20)
    expect(rc == 0 and "seccomp: done" in out, "the target under its own seccomp filter: status %s %s"
           % (rc, (out + err)[-4:]))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    expect(len(procs) == 1, "%d dumps" % len(procs))
    stalls = [s for s in procs[0]["stalls"] if 90 <= s["duration_ms"] <= 160]
    expect(len(stalls) >= 1, "the stall before the filter is lost: %s"
           % [(s["duration_ms"], s["call"]) for s in procs[0]["stalls"]], procs[0])
    return "the target ran to its end under a kill-by-default allow-list; the stall before it " \
           "(%.0f ms) kept%s" % (stalls[0]["duration_ms"], note)


@test("forked_child_errno_kept")
def t_fork_errno(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    # One name for every process: each child meets EEXIST (the parent's
    # dump) and takes a .N name, while its first call runs.
    argv = [cfg.stalltrace, "run", "-o", os.path.join(tmpdir, "fixed.dump"), "--threshold", "20",
            "--", binary, "forkerrno"]
    p = Proc(argv, cwd=tmpdir, env=clean_env())
    try:
        rc = p.wait(60)
        out, err = list(p.out), list(p.err)
    finally:
        p.close()
    expect(rc == 0 and "forkerrno: done" in out, "status %s: %s" % (rc, (out + err)[-4:]))
    return "4 children's first read kept errno 0 while their dumps were made%s" % note


@test("syscall_wrapper_transparent")
def t_syscalls(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "syscalls"], threshold=20)
    expect(rc == 0 and "syscalls: done" in out, "syscall() under the recorder: status %s %s"
           % (rc, (out + err)[-6:]))
    return "getpid, ENOSYS, futex EAGAIN/ETIMEDOUT (relative, deadline), wakes: as the kernel says%s" % note


@test("pause_not_cut_short")
def t_pause(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_pause.py")])
    expect(rc == 0, "signal.pause() after an asyncio loop ran: %s" % (out + err)[-3:])
    return out[-1] if out else ""


@test("target_takes_our_signal")
def t_signal_owner(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_signal_owner.py")])
    expect(rc == 0 and any(l.startswith("HANDLER-RAN") for l in out),
           "the target's own handler for the signal did not run: %s" % (out + err)[-5:])
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    stall = max((s for p in procs for s in p["stalls"]), key=lambda s: s["duration_ms"])
    span = stall["duration_ms"]
    late = [x for x in stall["samples"] if x["at_ms"] > span * 0.75]
    expect(stall["samples"] and not late,
           "samples after the target took the signal: %s" % [x["at_ms"] for x in stall["samples"]])
    return "handler ran; %d samples, all in the first half of the %.0f ms stall" % (
        len(stall["samples"]), span)


@test("ring_full_drops_counted")
def t_ring_full(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_abuse", ["-pthread", "-ldl"])
    rc, out, err = run_target(cfg, tmpdir, [binary, "ringfill", "3000"], threshold=1,
                              extra=["--buffer-mb", "1"], timeout=90)
    expect(rc == 0, "status %s %s" % (rc, err[-5:]))
    p = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps][0]
    loop = [t for t in p["threads"] if t["role"] == "loop"][0]["loop"]
    kept, dropped, total = len(p["stalls"]), p["dropped_events"], loop["stalls"]
    expect(total >= 2900, "expected ~3000 stalls, the loop counted %d" % total)
    # Each stall is its record and those of its calls and CPU time: every
    # stall missing from the ring is among the records counted as dropped.
    expect(kept + dropped >= total and dropped <= 3 * (total - kept),
           "kept %d + dropped %d records do not account for %d stalls counted" % (kept, dropped, total))
    expect(0 < kept < total, "a 1 MiB ring should keep some but not all (%d of %d)" % (kept, total))
    # The dropped ones are the oldest: every iteration lasts ~2.2 ms, so the
    # oldest stall kept starts after the dropped ones, the newest at the end.
    starts = [s["start_s"] for s in p["stalls"]]
    expect(min(starts) >= (total - kept) * 0.002 * 0.8 and max(starts) >= p["duration_s"] - 0.1,
           "the ring should keep the newest stalls: kept %.2f..%.2f s of %.2f s, %d dropped"
           % (min(starts), max(starts), p["duration_s"], total - kept))
    # The metrics count from the thread table: every stall, not the ring's.
    rc, om, err = run_cmd([cfg.stalltrace, "report", "--format", "openmetrics", p["_dump"]])
    count = float(re.search(r"^stalltrace_stalls_total\{[^}]*\} (\S+)$", om, re.M).group(1))
    secs = float(re.search(r"^stalltrace_stall_seconds_total\{[^}]*\} (\S+)$", om, re.M).group(1))
    kept_s = sum(s["duration_ms"] for s in p["stalls"]) / 1e3
    expect(rc == 0 and count == total, "openmetrics counts %s stalls, the loop %d" % (count, total))
    expect(secs > kept_s * total / kept * 0.9,
           "stall_seconds_total %.2f s should cover all %d stalls, not the %d kept (%.2f s)"
           % (secs, total, kept, kept_s))
    return "%d stalls: %d kept (the newest), %d records dropped; metrics count all %d (%.1f s)%s" % (
        total, kept, dropped, total, secs, note)


@test("dump_never_written_through")
def t_no_write_through(cfg, tmpdir):
    python, _ = python_for_minor(11)
    victim = os.path.join(tmpdir, "victim.txt")
    with open(victim, "w") as fh:
        fh.write("precious")
    os.symlink(victim, os.path.join(tmpdir, "fixed.dump"))
    with open(os.path.join(tmpdir, "taken.dump"), "w") as fh:
        fh.write("someone else's file")
    for name in ("fixed", "taken"):
        argv = [cfg.stalltrace, "run", "-o", os.path.join(tmpdir, name + ".dump"), "--threshold", "50",
                "--", python, target("py_sleep.py")]
        rc, _, err = run_cmd(argv, timeout=60)
        expect(rc == 0, "run with a taken dump path failed: %s" % err[-300:])
        expect(os.path.exists(os.path.join(tmpdir, name + ".1.dump")),
               "no %s.1.dump written beside the taken path" % name)
    expect(open(victim).read() == "precious", "the symlink's target was written through")
    expect(open(os.path.join(tmpdir, "taken.dump")).read() == "someone else's file",
           "an existing file was overwritten")
    mode = os.stat(os.path.join(tmpdir, "fixed.1.dump")).st_mode & 0o777
    expect(mode == 0o600, "dump mode %o, expected 600" % mode)
    return "symlink and existing file left alone; dumps written as NAME.1.dump, mode 600"


@test("unwritable_output")
def t_unwritable(cfg, tmpdir):
    python, _ = python_for_minor(11)
    cases = {"no such directory": {"STALLTRACE_OUTPUT": "/nonexistent-dir/x.%p.dump"}}
    report = []
    for what, env in cases.items():
        argv = [python, "-c", "import time; time.sleep(0.05); print('ALIVE')"]
        rc, out, err = run_cmd(argv, timeout=30,
                               env=clean_env(LD_PRELOAD=cfg.preload, **env))
        warnings = [l for l in err.splitlines() if l.startswith("stalltrace:")]
        expect(rc == 0 and "ALIVE" in out, "%s: the program did not run on (%s)" % (what, rc))
        expect(len(warnings) == 1, "%s: expected one warning, got %s" % (what, warnings))
        report.append(what)

    def small_fsize():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    import subprocess
    r = subprocess.run([python, "-c", "print('ALIVE')"], capture_output=True, text=True, timeout=30,
                       env=clean_env(LD_PRELOAD=cfg.preload,
                                     STALLTRACE_OUTPUT=os.path.join(tmpdir, "f.%p.dump")),
                       preexec_fn=small_fsize)
    expect(r.returncode == 0 and "ALIVE" in r.stdout,
           "ulimit -f below the dump size killed the program (status %s)" % r.returncode)
    expect(r.stderr.count("stalltrace:") == 1, "ulimit -f: expected one warning, got %r" % r.stderr)
    report.append("ulimit -f 1 MiB")
    return "runs on with one warning: " + ", ".join(report)


@test("watchdog_idle_cost")
def t_watchdog_idle_cost(cfg, tmpdir):
    python, _ = python_for_minor(11)
    rc, out, err = run_target(cfg, tmpdir, [python, target("py_watchdog_cost.py")])
    line = [l for l in out if l.startswith("WATCHDOG-TICKS")]
    expect(rc == 0 and line, "target failed (%s): %s" % (rc, (out + err)[-5:]))
    _, ticks, _, hz = line[0].split()
    expect(ticks != "None", "no watchdog thread: the loop was never detected")
    cpu_ms = int(ticks) * 1000.0 / int(hz)
    expect(cpu_ms <= 30, "the watchdog used %.0f ms of CPU in 3 s without any stall" % cpu_ms)
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    samples = sum(len(s.get("samples") or []) for p in procs for s in p["stalls"])
    expect(samples == 0, "%d samples taken while nothing stalled" % samples)
    return "watchdog CPU %.0f ms over 3 s of a healthy loop, no sample, no signal" % cpu_ms


@test("own_fds_out_of_the_way")
def t_own_fds(cfg, tmpdir):
    """The recorder's own fds (libunwind's pipe) do not take the low numbers
    the program's next fds get (issue 13: test_os's closerange tests skipped)."""
    python, _ = python_for_minor(11)
    cmd = [python, target("py_fd_numbers.py")]
    rc, plain, err = run_cmd(cmd, env=clean_env())
    expect(rc == 0 and "NEXT" in plain, "plain run failed: %s" % (plain + err)[-300:])
    rc, out, err = run_target(cfg, tmpdir, cmd)
    expect(rc == 0, "py_fd_numbers.py under stalltrace run: %s" % (out + err)[-5:])
    seen = [l for l in out if l.split(" ", 1)[0] in ("START", "AFTER", "NEXT")]

    def low(lines):
        """Each line's fd numbers below 900: the recorder keeps its own above."""
        return [(l.split(" ", 1)[0], [n for n in map(int, re.findall(r"\d+", l)) if n < 900])
                for l in lines]
    expect(low(seen) == low(plain.split("\n")), "the program's fd numbers differ from a plain "
           "run:\n  plain: %s\n  traced: %s" % (plain.split("\n"), seen))
    procs = [p for ps in processes_by_pid(cfg, tmpdir).values() for p in ps]
    expect(any(t.get("role") == "loop" for p in procs for t in p.get("threads") or []),
           "no loop thread recorded: the recorder never took a stack")
    return "as plain: %s" % " | ".join(seen[1:])
