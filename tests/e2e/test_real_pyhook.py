"""End-to-end test of the CPython hook `stalltrace run` installs (issue 13):
what a program sees of its thread-pool tasks is as without it (the stack
inside a task, the traceback submit() raises after shutdown, a task's error,
a done-callback's stack, the future's attributes), on CPython 3.10-3.13,
while the queue waits stay exact.
"""

import os

from e2e_lib import (Fail, Skip, clean_env, expect, load_process, python_for_minor, run_cmd,
                     start_target, target, test)


def sections(text):
    """The target's lines by their first word."""
    return {l.split(" ", 1)[0]: l for l in text.split("\n") if l.split(" ", 1)[0].isupper()}


@test("real_python_hook_invisible")
def t_python_hook_invisible(cfg, tmpdir):
    script = target("py_hook_invisible.py")
    judged = []
    for minor in (10, 11, 12, 13):
        try:
            python, _ = python_for_minor(minor)
        except Skip:
            continue
        rc, plain, err = run_cmd([python, script], env=clean_env())
        expect(rc == 0 and "DONE" in plain, "3.%d plain run failed: %s" % (minor, err[-300:]))
        sub = os.path.join(tmpdir, "3.%d" % minor)
        os.mkdir(sub)
        p = start_target(cfg, sub, [python, script])
        try:
            rc = p.wait(60)
        finally:
            p.close()
        hooked = "\n".join(p.out)
        expect(rc == 0, "3.%d under stalltrace run exited %d%s" % (minor, rc, p.tail()))
        a, b = plain.split("\n"), hooked.split("\n")
        if a != b:
            first = next(i for i in range(max(len(a), len(b)))
                         if i >= len(a) or i >= len(b) or a[i] != b[i])
            raise Fail("3.%d: the program sees the hook; first differing line %d:\n  plain: %s\n"
                       "  hooked: %s" % (minor, first, a[first][:400] if first < len(a) else None,
                                         b[first][:400] if first < len(b) else None))
        proc, _ = load_process(cfg, sub, "py_hook_invisible.py", p)
        exact = [q for pool in proc["pools"] for q in [pool.get("queue_wait_ms")]
                 if q and q.get("exact") and q.get("count", 0) >= 3]
        expect(exact, "3.%d: no pool with exact queue waits: the hook marks nothing" % minor, proc)
        judged.append("3.%d" % minor)
    if not judged:
        raise Skip("no pyenv CPython 3.10-3.13")
    expect(len(judged) >= 2, "only %s could be judged" % judged)
    return "as without the hook on %s; queue waits exact" % ", ".join(judged)
