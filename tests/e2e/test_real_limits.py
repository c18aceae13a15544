"""End-to-end tests of the recorder under a low address-space limit
(ulimit -v, issue 13): a real CPython program that starts four threads
succeeds under the preload exactly as without it, at limits just above what
it needs; the recorder either fits in a small share of what is left (a
smaller ring, the stall still reported) or steps aside with one warning.
"""

import glob
import os
import resource
import subprocess

from e2e_lib import clean_env, expect, json_report, python_for_minor, target, test

MIB = 1 << 20


def run_limited(cfg, tmpdir, python, limit, preload):
    def limit_as():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    env = clean_env()
    # glibc keeps a thread's 64 MiB arena only when its mapping happens to
    # land aligned: a coin toss, plain and preloaded alike, that at the
    # larger margins decides whether the next thread fits. One arena.
    env["MALLOC_ARENA_MAX"] = "1"
    if preload:
        env.update(LD_PRELOAD=cfg.preload, STALLTRACE_OUTPUT=os.path.join(tmpdir, "as.%p.dump"),
                   STALLTRACE_THRESHOLD_MS="20")
    r = subprocess.run([python, target("py_address_limit.py")], env=env, preexec_fn=limit_as,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    started = [l for l in r.stdout.splitlines() if l.startswith("STARTED")]
    return r.returncode, started, r.stdout, r.stderr


def succeeds(result):
    rc, started, _, _ = result
    return rc == 0 and started == ["STARTED 4 "]


@test("real_address_space_limit")
def t_address_space_limit(cfg, tmpdir):
    python, _ = python_for_minor(11)
    # The least limit (1 MiB steps) the program needs without the recorder.
    lo, hi = 16 * MIB, 1024 * MIB
    expect(succeeds(run_limited(cfg, tmpdir, python, hi, False)), "the program fails even at 1 GiB")
    while hi - lo > MIB:
        mid = (lo + hi) // 2 // MIB * MIB
        if succeeds(run_limited(cfg, tmpdir, python, mid, False)):
            hi = mid
        else:
            lo = mid
    need = hi
    judged, recorded, notes = 0, 0, []
    for margin in (4, 8, 16, 32, 64):
        limit = need + margin * MIB
        plain = run_limited(cfg, tmpdir, python, limit, False)
        if not succeeds(plain):
            continue           # the edge of what it needs moves a little between runs
        for old in glob.glob(os.path.join(tmpdir, "*.dump")):
            os.unlink(old)
        rc, started, out, err = run_limited(cfg, tmpdir, python, limit, True)
        warnings = [l for l in err.splitlines() if l.startswith("stalltrace:")]
        expect(rc == 0 and started == plain[1],
               "need %d MiB + %d MiB: under the preload the program exited %d with %s (plain: %s); "
               "stderr: %s" % (need // MIB, margin, rc, started, plain[1], err.strip()[-400:]))
        expect(len(warnings) <= 1, "more than one warning: %s" % warnings)
        judged += 1
        dumps = glob.glob(os.path.join(tmpdir, "*.dump"))
        if not dumps:
            expect(len(warnings) == 1, "need + %d MiB: no dump and no warning" % margin)
            notes.append("+%d MiB: stepped aside" % margin)
            continue
        expect(not warnings, "a dump was written, yet a warning: %s" % warnings)
        truth = [float(l.split()[1]) for l in out.splitlines() if l.startswith("STALL-MS")]
        proc = json_report(cfg, dumps[0])["processes"][0]
        stalls = [s for s in proc["stalls"] if abs(s["duration_ms"] - truth[0]) <= 0.15 * truth[0]]
        expect(stalls, "need + %d MiB: the %.0f ms stall is not reported" % (margin, truth[0]), proc)
        recorded += 1
        notes.append("+%d MiB: recorded %.0f ms (truth %.0f)" % (margin, stalls[0]["duration_ms"], truth[0]))
    expect(judged >= 3, "the plain program succeeded at only %d of the margins" % judged)
    expect(recorded >= 1, "nothing recorded even 64 MiB above what the program needs: %s" % notes)
    if cfg.verbose:
        print("    needs %d MiB; %s" % (need // MIB, "; ".join(notes)))
