"""End-to-end tests of `report --format pprof` (issue 17) with its real
consumers: go tool pprof (Debian's golang-go) reads the profile and its totals
equal the JSON report's; speedscope (npm) imports it in chromium.

- pprof_fastapi_sleep: FastAPI on uvicorn whose load_report calls
  time.sleep(0.25) 13 times: the stalled total is the JSON's and at least the
  program's own sleeps; stall samples carry the culprit load_report (with its
  file and line), pid, tid and call labels; python's mapping has the build-id
  readelf reads from the file.
- pprof_merged_dumps: a saturated ThreadPoolExecutor and an asyncio sleeper in
  one profile: per sample type and per pid, totals equal each dump's JSON.
- pprof_node_js: Node's ~200 ms busyWork: its in-stall samples are JS
  functions with file and line (busyWork node_busy.js:11).
- pprof_speedscope: speedscope's sandwich view of the FastAPI profile names
  load_report with the stalled total.
- pprof_terminal: a binary format is refused at a terminal with one line.
"""

import json
import os
import re
import shutil
import subprocess

from e2e_lib import (
    DEBIAN_PYTHON, Skip, default_python, dumps_in, expect, run_cmd, run_to_end, target, test)
from test_real_loops import need_modules, serve_and_load

HTML_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "html")
TYPES = ("stalled", "stall_samples", "lock_wait", "pool_saturated_busy", "queue_wait")


def go_pprof(tmpdir, *args):
    if not shutil.which("go"):
        raise Skip("no go (apt-get install golang-go)")
    env = dict(os.environ, HOME=tmpdir, PPROF_TMPDIR=tmpdir)
    rc, out, err = run_cmd(["go", "tool", "pprof"] + list(args), timeout=120, env=env)
    expect(rc == 0, "go tool pprof %s exited %d: %s" % (" ".join(args[:-1]), rc, err[-400:]))
    return out


def write_pprof(cfg, tmpdir, dumps, name="profile.pb.gz"):
    path = os.path.join(tmpdir, name)
    rc, _, err = run_cmd([cfg.stalltrace, "report", "--format", "pprof", "-o", path] + dumps, timeout=60)
    expect(rc == 0, "report --format pprof exited %d: %s" % (rc, err[:400]))
    with open(path, "rb") as f:
        expect(f.read(2) == b"\x1f\x8b", "the profile is not gzipped")
    return path


def parse_raw(text):
    """`go tool pprof -raw`: (sample types, samples, functions by location id,
    mappings). A sample is (values, location ids, labels)."""
    types, samples, functions, mappings = [], [], {}, []
    section, last = None, None
    for line in text.splitlines():
        if line.startswith("Samples:"):
            section = "samples"
            continue
        if line.startswith("Locations"):
            section = "locations"
            continue
        if line.startswith("Mappings"):
            section = "mappings"
            continue
        if section == "samples" and not types and "/" in line:
            types = [t.split("/")[0] for t in line.split()]
            continue
        if section == "samples":
            m = re.match(r"^\s+(-?\d+(?:\s+-?\d+)*):\s*(.*)$", line)
            if m:
                last = ([int(v) for v in m.group(1).split()], [int(x) for x in m.group(2).split()], {})
                samples.append(last)
            elif last is not None:
                for key, value in re.findall(r"(\w+):\[([^\]]*)\]", line):
                    last[2][key] = value
        elif section == "locations":
            m = re.match(r"^\s+(\d+): 0x[0-9a-f]+ (?:M=\d+ )?(.*)$", line)
            if m:
                last = int(m.group(1))
                functions[last] = [m.group(2).strip()] if m.group(2).strip() else []
            elif line.strip() and last is not None:
                functions[last].append(line.strip())
        elif section == "mappings" and line.strip():
            mappings.append(line.strip())
    return types, samples, functions, mappings


def totals(types, samples, pid=None):
    out = dict.fromkeys(types, 0)
    for values, _, labels in samples:
        if pid is None or labels.get("pid") == str(pid):
            for t, v in zip(types, values):
                out[t] += v
    return out


def json_totals(cfg, dump):
    rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", "json", dump], timeout=60)
    expect(rc == 0, "report --format json failed: %s" % err[:300])
    p = json.loads(out)["processes"][0]
    return p, {
        "stalled": sum(s["duration_ms"] for s in p["stalls"]),
        "stall_samples": sum(len(s.get("samples") or []) for s in p["stalls"]),
        "lock_wait": sum(lk["wait_total_ms"] for lk in p["locks"]),
        "pool_saturated_busy": sum(b.get("saturated_ms") or 0 for pl in p["pools"] for b in pl.get("busy_in") or []),
        "queue_wait": sum(w["wait_ms"] for q in p.get("queues") or [] for w in q.get("long_waits") or []),
    }


def expect_equal_totals(pprof_us, json_ms, what, count):
    """pprof holds microseconds rounded once per sample."""
    for t in TYPES:
        want = json_ms[t] * (1 if t == "stall_samples" else 1000.0)
        slack = count + 1 if t != "stall_samples" else 0
        expect(abs(pprof_us[t] - want) <= slack, "%s: pprof's %s total is %d, the JSON report's %.0f"
               % (what, t, pprof_us[t], want))


def fastapi_profile(cfg, tmpdir):
    need_modules("fastapi", "uvicorn", "uvloop")
    proc, truth, _ = serve_and_load(cfg, tmpdir, "real_fastapi.py", "sleep", 4, 3)
    sleeps = truth.get("sleep", [])
    expect(len(sleeps) == 13, "the app slept %d times, expected 13" % len(sleeps))
    dump = dumps_in(tmpdir)[0]
    return proc, sleeps, dump, write_pprof(cfg, tmpdir, [dump])


def build_id(path):
    rc, out, _ = run_cmd(["readelf", "-n", path], timeout=30)
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if rc == 0 and m else None


@test("pprof_fastapi_sleep")
def t_fastapi(cfg, tmpdir):
    proc, sleeps, dump, profile = fastapi_profile(cfg, tmpdir)
    types, samples, functions, mappings = parse_raw(go_pprof(tmpdir, "-raw", profile))
    expect(list(types) == list(TYPES), "sample types %s, expected %s" % (types, TYPES))
    got = totals(types, samples)
    _, want = json_totals(cfg, dump)
    expect_equal_totals(got, want, "FastAPI", len(samples))
    expect(got["stalled"] >= 0.95 * sum(sleeps) * 1000,
           "pprof holds %.0f ms of stalls, the program slept %.0f ms" % (got["stalled"] / 1e3, sum(sleeps)))
    stall_samples = [s for s in samples if s[0][0] > 0]
    for values, locs, labels in stall_samples:
        expect(labels.get("pid") == str(proc["pid"]) and labels.get("tid"), "a stall sample's labels: %s" % labels)
        expect(labels.get("call") == "clock_nanosleep" and "load_report (real_fastapi.py:" in labels.get("culprit", ""),
               "a stall sample's call and culprit: %s" % labels)
        names = [ln for loc in locs for ln in functions.get(loc, [])]
        expect(any(re.match(r"load_report \S*real_fastapi\.py:\d+", n) for n in names),
               "no load_report with its file and line in a stall sample: %s" % names[:12])
        expect(functions.get(locs[0], [""])[0].startswith("clock_nanosleep"),
               "a stall sample's innermost frame is %s" % functions.get(locs[0]))
    exe = os.path.realpath(DEBIAN_PYTHON)
    ids = [m.split()[3] for m in mappings if len(m.split()) > 3 and m.split()[2] == exe]
    truth_id = build_id(exe)
    expect(truth_id and truth_id in ids, "%s's mapping has build-id %s, readelf says %s" % (exe, ids, truth_id))
    top = go_pprof(tmpdir, "-top", "-sample_index=stalled", profile)
    expect(re.search(r"\bclock_nanosleep\b", top), "go tool pprof -top does not show clock_nanosleep:\n%s" % top)
    return "%d stall samples, %.1f ms in pprof = JSON %.1f ms (program slept %.1f ms)" % (
        len(stall_samples), got["stalled"] / 1e3, want["stalled"], sum(sleeps))


@test("pprof_merged_dumps")
def t_merged(cfg, tmpdir):
    run_to_end(cfg, tmpdir, [default_python(), target("py_executor_saturated.py")], "py_executor_saturated.py")
    first = dumps_in(tmpdir)[0]
    run_to_end(cfg, tmpdir, [default_python(), target("py_sleep.py")], "py_sleep.py")
    second = [d for d in dumps_in(tmpdir) if d != first][0]
    profile = write_pprof(cfg, tmpdir, [first, second])
    types, samples, _, _ = parse_raw(go_pprof(tmpdir, "-raw", profile))
    figures = []
    for dump in (first, second):
        proc, want = json_totals(cfg, dump)
        got = totals(types, samples, proc["pid"])
        expect_equal_totals(got, want, "pid %d" % proc["pid"], len(samples))
        figures.append("pid %d: %s" % (proc["pid"], {t: round(v / 1e3) for t, v in got.items() if v}))
    pool = totals(types, samples)
    expect(pool["pool_saturated_busy"] > 0 and pool["queue_wait"] > 0 and pool["stalled"] > 0,
           "the merged profile lacks a kind of time: %s" % pool)
    return "; ".join(figures)


@test("pprof_node_js")
def t_node(cfg, tmpdir):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node (apt-get install nodejs)")
    run_to_end(cfg, tmpdir, [node, target("node_busy.js")], "node_busy.js")
    dump = dumps_in(tmpdir)[0]
    types, samples, functions, _ = parse_raw(go_pprof(tmpdir, "-raw", write_pprof(cfg, tmpdir, [dump])))
    got = totals(types, samples)
    _, want = json_totals(cfg, dump)
    expect_equal_totals(got, want, "node", len(samples))
    in_stall = [s for s in samples if s[0][1] > 0]
    expect(in_stall, "no in-stall sample of the CPU-bound stall")
    busy = [s for s in in_stall
            if any(re.match(r"busyWork \S*node_busy\.js:11\b", ln) for loc in s[1] for ln in functions.get(loc, []))]
    expect(len(busy) * 2 >= len(in_stall), "%d of %d in-stall samples are in busyWork (node_busy.js:11)"
           % (len(busy), len(in_stall)))
    return "%d of %d in-stall samples at busyWork node_busy.js:11; stalled %.1f ms = JSON %.1f ms" % (
        sum(s[0][1] for s in busy), got["stall_samples"], got["stalled"] / 1e3, want["stalled"])


@test("pprof_speedscope")
def t_speedscope(cfg, tmpdir):
    checker = os.path.join(HTML_DIR, "speedscope_check.js")
    if not os.path.isdir(os.path.join(HTML_DIR, "node_modules", "speedscope")) or not shutil.which("node"):
        raise Skip("speedscope is not installed (bash scripts/setup.sh installs it)")
    _, _, dump, profile = fastapi_profile(cfg, tmpdir)
    _, want = json_totals(cfg, dump)
    shot = os.path.join(tmpdir, "speedscope.png")
    rc, out, err = run_cmd(["node", checker, profile, shot], timeout=120)
    expect(rc == 0, "speedscope_check.js exited %d: %s" % (rc, err[-400:]))
    result = json.loads(out.strip().splitlines()[-1])
    expect(not result["errors"], "speedscope raised: %s" % result["errors"])
    text = result["sandwich"]
    expect(re.search(r"\bload_report\b", text), "speedscope's sandwich view has no load_report:\n%s" % text[:800])
    # speedscope prints "3.27s" or "901.81ms": equal to the JSON's total to
    # half a unit of its last printed digit.
    shown = re.findall(r"([\d.]+)(ms|s) \(100%\)", text)
    totals_shown = [float(v) * (1000 if unit == "s" else 1) for v, unit in shown]

    def agrees(v, unit):
        digits = len(v.split(".")[1]) if "." in v else 0
        half = 0.5 * 10 ** -digits * (1000 if unit == "s" else 1)
        return abs(float(v) * (1000 if unit == "s" else 1) - want["stalled"]) <= half + 1e-6
    expect(any(agrees(v, unit) for v, unit in shown),
           "speedscope shows totals %s, the JSON report %.1f ms" % (totals_shown, want["stalled"]))
    return "speedscope: load_report in the sandwich view, total %s ms (JSON %.1f ms)" % (
        totals_shown[:1], want["stalled"])


@test("pprof_terminal")
def t_terminal(cfg, tmpdir):
    run_to_end(cfg, tmpdir, [default_python(), target("py_sleep.py")], "py_sleep.py")
    dump = dumps_in(tmpdir)[0]
    # A pseudo-terminal on stdout: the binary profile must not be written to it.
    script = "import os,pty,sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))"
    r = subprocess.run([default_python(), "-c", script, cfg.stalltrace, "report", "--format", "pprof", dump],
                       capture_output=True, timeout=60)
    expect(r.returncode == 2, "pprof at a terminal exited %d, expected 2" % r.returncode)
    lines = r.stdout.decode("utf-8", "replace").strip().splitlines()
    expect(len(lines) == 1 and "-o FILE" in lines[0], "at a terminal it said %r" % lines)
    return lines[0]
