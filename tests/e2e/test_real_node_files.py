"""End-to-end tests of the files `stalltrace run` makes node write (issue 13):
its perf map (/tmp/perf-PID.map) and V8's isolate-0x...-PID-v8.log, both
caused by the --perf-basic-prof run puts in NODE_OPTIONS, are removed once
the process exits and its dump holds what it needs of them, and the report
still names the JavaScript culprit. Files the user asked for are kept.
"""

import glob
import os

from e2e_lib import expect, frame_named, load_process, start_target, target, test

from test_real_node import node_or_skip


def node_leftovers(pid, cwd):
    return sorted(glob.glob("/tmp/perf-%d.map" % pid) +
                  glob.glob(os.path.join(cwd, "isolate-0x*-%d-v8.log" % pid)))


def run_node_busy(cfg, tmpdir, node_args=(), node_options=None):
    env = {} if node_options is None else {"NODE_OPTIONS": node_options}
    node = node_or_skip()
    p = start_target(cfg, tmpdir, [node] + list(node_args) + [target("node_busy.js")], env=env)
    try:
        rc = p.wait(90)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run of node_busy.js exited %d%s" % (rc, p.tail()))
    proc, _ = load_process(cfg, tmpdir, "node_busy.js", p)
    return proc


@test("real_node_run_removes_its_perf_files")
def t_run_removes_perf_files(cfg, tmpdir):
    proc = run_node_busy(cfg, tmpdir)
    left = node_leftovers(proc["pid"], tmpdir)
    expect(not left, "stalltrace run left node's files behind: %s" % left, proc)
    # The dump's own copy of the map still names the culprit.
    busy = [s for s in proc["stalls"] if s["duration_ms"] >= 150]
    expect(busy, "no stall of busyWork's ~200 ms", proc)
    named = [s for s in busy for x in [s["stack"]] + [m["stack"] for m in s.get("samples", [])]
             if frame_named(x, "busyWork")]
    expect(named, "busyWork is not named in the stall without the perf map on disk", proc)


@test("real_node_run_keeps_perf_files_user_asked_for")
def t_run_keeps_asked_files(cfg, tmpdir):
    for how, args, options in (("NODE_OPTIONS", (), "--perf-basic-prof"),
                               ("the command line", ("--perf-basic-prof",), None)):
        sub = os.path.join(tmpdir, how.replace(" ", "_"))
        os.mkdir(sub)
        proc = run_node_busy(cfg, sub, args, options)
        left = node_leftovers(proc["pid"], sub)
        try:
            expect("/tmp/perf-%d.map" % proc["pid"] in left,
                   "the perf map asked for by %s was removed (left: %s)" % (how, left), proc)
        finally:
            for path in left:
                os.unlink(path)
