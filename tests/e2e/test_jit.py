"""End-to-end tests of JavaScript frames (issue 6): `stalltrace run` has node
write its perf map, the recorder unwinds through JIT code by frame pointers
and copies the symbols it needs into the dump, so a Node stall names the JS
function that blocked, with its callers, even after /tmp/perf-PID.map is gone.
"""

import os
import shutil

from e2e_lib import (
    CPU_HI, CPU_LO, Skip, duration_within, expect, fmt_stack, json_report, main_stalls,
    run_to_end, target, test)


def jit_names(stack):
    return [f.get("function") for f in stack if f.get("kind") == "jit"]


@test("node_jit_frames")
def t_node_jit_frames(cfg, tmpdir):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node (apt-get install nodejs)")
    proc, _ = run_to_end(cfg, tmpdir, [node, target("node_busy.js")], "node_busy.js")
    stall = main_stalls(proc, 1)[0]
    duration_within(proc, stall, CPU_LO, CPU_HI)
    # The dump alone must name the frames: hide the runtime's own map file.
    perf_map = "/tmp/perf-%d.map" % proc["pid"]
    hidden = perf_map + ".hidden-by-test"
    if os.path.exists(perf_map):
        os.rename(perf_map, hidden)
    try:
        report = json_report(cfg, proc["_dump"])
    finally:
        if os.path.exists(hidden):
            os.rename(hidden, perf_map)
    stall = report["processes"][0]["stalls"][0]
    samples = stall.get("samples") or []
    expect(samples, "the CPU-bound stall has no samples", proc)
    named = [s for s in samples if any(n and "busyWork" in n for n in jit_names(s["stack"]))]
    expect(len(named) * 2 >= len(samples),
           "busyWork named in %d of %d samples; first sample: %s"
           % (len(named), len(samples), fmt_stack(samples[0]["stack"], 12)), proc)
    # Unwound through the JIT frames to the event loop that called them.
    functions = [f.get("function") or "" for f in named[0]["stack"]]
    expect(any("uv_run" in f for f in functions),
           "the stack stops in JIT code instead of reaching uv_run: %s"
           % fmt_stack(named[0]["stack"], 30), proc)
    return "%.1f ms; busyWork in %d/%d samples, unwound to uv_run" % (
        stall["duration_ms"], len(named), len(samples))
