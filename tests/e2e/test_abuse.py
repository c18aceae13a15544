"""End-to-end tests of the analyzer under abuse (issue 5): symbolization
when the recorded binary was rebuilt (build-id mismatch) or deleted since the
recording.  Its frames must say so (`note`) and keep the raw address; they
must never carry a function name taken from the wrong file.
"""

import os
import shutil

from e2e_lib import (Skip, evidence, expect, fmt_stack, json_report, run_cmd, start_target,
                     test)

# A loop on poll() whose 21st iteration blocks 200 ms in slow_handler.
PROGRAM = r"""
#include <poll.h>
#include <unistd.h>

__attribute__((noinline)) void slow_handler(void)
{
    usleep(200000);
}

int main(void)
{
    for (int i = 0; i < 40; i++) {
        poll(NULL, 0, 5);
        if (i == 20)
            slow_handler();
    }
    return 0;
}
"""

# The same path rebuilt with other code: the functions move and the build-id
# changes, so the recorded addresses now point into something else.
REBUILT = r"""
#include <stdio.h>

__attribute__((noinline)) int other_function_%d(int x) { return x * %d + 1; }

int main(void)
{
    int acc = 0;
    for (int i = 0; i < 1000; i++)
        acc += other_function_%d(i);
    printf("%%d\n", acc);
    return 0;
}
"""


def build(cc, src_text, path, tmpdir, build_id="sha1"):
    src = os.path.join(tmpdir, "prog.c")
    with open(src, "w") as fh:
        fh.write(src_text)
    rc, _, err = run_cmd([cc, "-std=gnu11", "-g", "-O0", "-fno-omit-frame-pointer",
                          "-Wl,--build-id=" + build_id, "-o", path, src], timeout=60)
    expect(rc == 0, "cannot build %s: %s" % (os.path.basename(path), err[:400]))


def main_module_frames(proc, exe):
    """(stall, frames of the stall's stack that lie in the program itself)."""
    stalls = proc.get("stalls") or []
    expect(len(stalls) >= 1, "no stall recorded", proc)
    stall = max(stalls, key=lambda s: s.get("duration_ms") or 0)
    base = os.path.basename(exe)
    return stall, [f for f in stall.get("stack") or [] if f.get("module") == base]


@test("symbols_of_a_changed_or_deleted_binary")
def t_symbols_of_a_changed_or_deleted_binary(cfg, tmpdir):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler")
    exe = os.path.join(tmpdir, "stall_prog")
    build(cc, PROGRAM, exe, tmpdir)
    p = start_target(cfg, tmpdir, [exe])
    try:
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d%s" % (rc, p.tail()))
    dumps = [os.path.join(tmpdir, f) for f in os.listdir(tmpdir) if f.endswith(".dump")]
    expect(len(dumps) == 1, "expected one dump, found %s" % dumps)
    dump = dumps[0]

    # Untouched: the program's frames are named.
    proc = json_report(cfg, dump)["processes"][0]
    stall, mine = main_module_frames(proc, exe)
    names = [f.get("function") for f in mine]
    expect("slow_handler" in names and "main" in names,
           "before any change, expected slow_handler and main in the stack: %s"
           % fmt_stack(stall.get("stack")), proc)
    addresses = [f.get("address") for f in mine]

    def check_unnamed(label, note_word):
        proc = json_report(cfg, dump)["processes"][0]
        stall, frames = main_module_frames(proc, exe)
        expect([f.get("address") for f in frames] == addresses,
               "%s: the program's frames moved or vanished: %s, recorded %s"
               % (label, [f.get("address") for f in frames], addresses), proc)
        for f in frames:
            expect(f.get("function") is None,
                   "%s: frame %s named %r from a file that is not the one that ran"
                   % (label, f.get("address"), f.get("function")), proc)
            expect(f.get("file") is None and f.get("line") is None,
                   "%s: frame %s has a source line %s:%s" % (label, f.get("address"), f.get("file"),
                                                              f.get("line")), proc)
            expect(note_word in (f.get("note") or ""),
                   "%s: frame %s says %r, expected a note with %r"
                   % (label, f.get("address"), f.get("note"), note_word), proc)
        # Every format still renders (and says nothing wrong).
        for fmt in ("text", "folded", "chrome", "openmetrics", "html"):
            rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", fmt, dump], timeout=60)
            expect(rc == 0, "%s: report --format %s exited %d: %s" % (label, fmt, rc, err[:300]))
            expect("slow_handler" not in out,
                   "%s: report --format %s names slow_handler" % (label, fmt))
        return proc

    # (a) Rebuilt at the same path with other code: a new build-id.
    build(cc, REBUILT % (7, 7, 7), exe, tmpdir)
    check_unnamed("rebuilt", "build-id")
    # (b) Deleted.
    os.unlink(exe)
    proc = check_unnamed("deleted", "missing")
    if cfg.verbose:
        print("    " + evidence(proc).replace("\n", "\n    "))
    return "%d frame(s) of the program kept as %s, unnamed once rebuilt or deleted" % (
        len(addresses), "/".join(addresses))


@test("symbols_of_a_binary_without_build_id")
def t_symbols_of_a_binary_without_build_id(cfg, tmpdir):
    """Without a build-id nothing proves the file is the one that ran: the
    names are given, each flagged as unverified."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler")
    exe = os.path.join(tmpdir, "stall_prog")
    build(cc, PROGRAM, exe, tmpdir, build_id="none")
    p = start_target(cfg, tmpdir, [exe])
    try:
        rc = p.wait(60)
    finally:
        p.close()
    expect(rc == 0, "stalltrace run exited %d%s" % (rc, p.tail()))
    dump = [os.path.join(tmpdir, f) for f in os.listdir(tmpdir) if f.endswith(".dump")][0]
    build(cc, REBUILT % (3, 3, 3), exe, tmpdir, build_id="none")
    proc = json_report(cfg, dump)["processes"][0]
    stall, frames = main_module_frames(proc, exe)
    expect(frames, "no frame of the program in %s" % fmt_stack(stall.get("stack")), proc)
    for f in frames:
        expect(f.get("function") is None or "build-id" in (f.get("note") or ""),
               "frame %s named %r with no warning, from a file rebuilt since the run"
               % (f.get("address"), f.get("function")), proc)
    return "%d frame(s) flagged: %s" % (len(frames), frames[0].get("note"))
