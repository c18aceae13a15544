"""End-to-end tests of the report formats and the gates (issue 4): folded,
chrome, openmetrics and html reports of real dumps checked by their real
consumers where Debian has one (promtool, chromium), `check` and `diff`
for pass, fail and bad input.
"""

import atexit
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET

from e2e_lib import (
    Fail, Skip, expect, default_python, dumps_in, run_cmd, run_to_end, target, test)

HTML_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "html")


def recorded(cfg, tmpdir, name):
    """The dump of targets/<name>.py, recorded once per run and shared by
    the tests here (kept outside the per-test tmpdir, which is removed)."""
    key = "formats:" + name
    if key not in cfg.cache:
        if "formats:dir" not in cfg.cache:
            keep = tempfile.mkdtemp(prefix="stalltrace-e2e-formats-")
            atexit.register(shutil.rmtree, keep, True)
            cfg.cache["formats:dir"] = keep
        run_to_end(cfg, tmpdir, [default_python(), target(name + ".py")], name + ".py")
        dump = os.path.join(cfg.cache["formats:dir"], name + ".dump")
        shutil.copy(dumps_in(tmpdir)[0], dump)
        cfg.cache[key] = dump
    return cfg.cache[key]


def report(cfg, fmt, dump):
    rc, out, err = run_cmd([cfg.stalltrace, "report", "--format", fmt, dump], timeout=60)
    expect(rc == 0, "report --format %s exited %d: %s" % (fmt, rc, err[:400]))
    return out


def stalled_ms(cfg, dump):
    rc, out, _ = run_cmd([cfg.stalltrace, "report", "--format", "json", dump], timeout=60)
    expect(rc == 0, "report --format json failed")
    return sum(s["duration_ms"] for p in json.loads(out)["processes"] for s in p["stalls"])


@test("formats_folded")
def t_folded(cfg, tmpdir):
    dump = recorded(cfg, tmpdir, "py_sleep")
    out = report(cfg, "folded", dump)
    lines = out.splitlines()
    expect(lines, "folded output is empty")
    stacks = set()
    total = 0
    for line in lines:
        m = re.match(r"^(\S.*) (\d+)$", line)
        expect(m is not None, "not a folded line (STACK WEIGHT): %r" % line)
        frames = m.group(1).split(";")
        expect(all(f.strip() for f in frames), "empty frame in %r" % line)
        expect(m.group(1) not in stacks, "stack repeated on two lines: %r" % line[:200])
        stacks.add(m.group(1))
        total += int(m.group(2))
    expect(any(s.endswith(";clock_nanosleep") for s in stacks),
           "no stack ends in the blocking call clock_nanosleep: %s" % [s[-80:] for s in stacks])
    want = stalled_ms(cfg, dump)
    expect(abs(total - want) <= len(lines), "weights sum to %d ms, stalls to %.1f ms" % (total, want))
    tool = shutil.which("flamegraph.pl") or shutil.which("flamegraph")
    if tool:  # Debian 12 has no flamegraph package; use it where there is one
        rc, svg, err = run_cmd([tool, _write(tmpdir, "stalls.folded", out)], timeout=60)
        expect(rc == 0 and "<svg" in svg and "clock_nanosleep" in svg, "%s rejected the input: %s" % (tool, err[:300]))
    return "%d stack(s), %d ms%s" % (len(lines), total, "" if tool else " (no flamegraph.pl here: syntax checked)")


@test("formats_chrome")
def t_chrome(cfg, tmpdir):
    dump = recorded(cfg, tmpdir, "py_sleep")
    out = report(cfg, "chrome", dump)
    doc = json.loads(out)
    expect(doc.get("displayTimeUnit") == "ms", "displayTimeUnit is %r" % doc.get("displayTimeUnit"))
    events = doc.get("traceEvents")
    expect(isinstance(events, list) and events, "no traceEvents")
    for e in events:
        for k in ("ph", "ts", "pid", "tid", "name"):
            expect(k in e, "event without %r: %s" % (k, e))
        expect(isinstance(e["name"], str) and e["name"], "empty name: %s" % e)
        expect(isinstance(e["ts"], (int, float)) and e["ts"] >= 0, "bad ts: %s" % e)
        if e["ph"] == "X":
            expect(isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, "X event without dur >= 0: %s" % e)
    meta = [e for e in events if e["ph"] == "M"]
    expect(any(e["name"] == "process_name" for e in meta), "no process_name metadata")
    expect(any(e["name"] == "thread_name" for e in meta), "no thread_name metadata")
    stalls = [e for e in events if e["ph"] == "X" and e.get("cat") == "stall"]
    expect(len(stalls) == 1 and 180e3 <= stalls[0]["dur"] <= 240e3,
           "expected one ~200 ms stall slice: %s" % stalls)
    expect(stalls[0]["args"].get("call") == "clock_nanosleep" and stalls[0]["args"].get("stack"),
           "stall slice args lack call/stack: %s" % stalls[0]["args"])
    expect(len(events) < 200 and len(out) < 200000, "trace too big: %d events, %d bytes" % (len(events), len(out)))
    return "%d events, %d bytes" % (len(events), len(out))


@test("formats_openmetrics")
def t_openmetrics(cfg, tmpdir):
    dump = recorded(cfg, tmpdir, "py_sleep")
    out = report(cfg, "openmetrics", dump)
    expect(out.splitlines()[-1] == "# EOF", "does not end with '# EOF': %r" % out[-40:])
    for fam in ("stalltrace_loop_iterations_total", "stalltrace_loop_busy_seconds_bucket",
                "stalltrace_loop_busy_seconds_sum", "stalltrace_loop_busy_seconds_count",
                "stalltrace_stalls_total", "stalltrace_stall_seconds_total"):
        expect(re.search(r"^%s\{[^}]*tid=\"\d+\"[^}]*\} " % fam, out, re.M), "no %s sample with a tid label" % fam)
    buckets = [int(v) for v in re.findall(r"^stalltrace_loop_busy_seconds_bucket\{.*\} (\d+)$", out, re.M)]
    expect(buckets == sorted(buckets), "buckets are not cumulative: %s" % buckets)
    count = int(re.search(r"^stalltrace_loop_busy_seconds_count\{.*\} (\d+)$", out, re.M).group(1))
    expect(buckets[-1] == count, "+Inf bucket %d != _count %d" % (buckets[-1], count))
    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool is not installed (Debian package prometheus); the format was checked structurally")
    rc, pout, perr = run_cmd(["sh", "-c", "%s check metrics < %s" % (promtool, _write(tmpdir, "m.prom", out + "\n"))])
    expect(rc == 0, "promtool check metrics says (%d): %s %s" % (rc, pout[:600], perr[:600]))
    return "%d lines, promtool check metrics ok" % len(out.splitlines())


def _write(tmpdir, name, text):
    path = os.path.join(tmpdir, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


@test("check_gate")
def t_check(cfg, tmpdir):
    dump = recorded(cfg, tmpdir, "py_sleep")
    st = cfg.stalltrace
    rc, out, err = run_cmd([st, "check", "--max-stall-ms", "1000", "--max-loop-p99-ms", "5000", dump])
    expect(rc == 0, "check with loose bounds exited %d: %s %s" % (rc, out, err))
    junit = os.path.join(tmpdir, "check.xml")
    rc, out, err = run_cmd([st, "check", "--max-stall-ms", "100", "--max-loop-utilization", "0.99",
                            "--junit", junit, dump])
    expect(rc == 1, "check --max-stall-ms 100 of a 200 ms stall exited %d, expected 1: %s %s" % (rc, out, err))
    lines = [l for l in out.splitlines() if "--max-stall-ms" in l]
    expect(len(lines) == 1, "expected one violation line: %r" % out)
    line = lines[0]
    expect(re.search(r"stall of \d+ ms exceeds 100 ms", line) and "thread" in line and "clock_nanosleep" in line
           and "handle_slow_request (py_sleep.py:" in line,
           "violation line lacks what/measured/bound/where (the app's frame): %r" % line)
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    expect(len(cases) == 2, "JUnit has %d testcases, expected 2" % len(cases))
    failed = [c for c in cases if c.find("failure") is not None]
    expect(len(failed) == 1 and "max-stall-ms" in failed[0].get("name"), "JUnit failures: %s"
           % [c.get("name") for c in failed])
    expect(root.get("failures") == "1", "testsuites failures=%r" % root.get("failures"))
    bad = _write(tmpdir, "bad.dump", "not a dump")
    for argv in ([st, "check", "--max-stall-ms", "100", bad], [st, "check", dump],
                 [st, "check", "--max-stall-ms", "abc", dump], [st, "check", "--max-loop-utilization", "2", dump],
                 [st, "check", "--max-stall-ms", "1", os.path.join(tmpdir, "missing.dump")]):
        rc, out, err = run_cmd(argv)
        expect(rc == 2 and len(err.strip().splitlines()) == 1, "%s: exit %d, stderr %r (expected 2 and one line)"
               % (" ".join(argv[2:]), rc, err))
    return line[:90]


@test("diff_gate")
def t_diff(cfg, tmpdir):
    slow = recorded(cfg, tmpdir, "py_sleep")
    healthy_dir = os.path.join(tmpdir, "healthy")
    os.makedirs(healthy_dir)
    healthy = recorded(cfg, healthy_dir, "py_healthy")
    st = cfg.stalltrace
    rc, out, err = run_cmd([st, "diff", slow, slow, "--fail-over", "10"])
    expect(rc == 0 and "No change" in out, "diff of a dump with itself: exit %d: %s %s" % (rc, out, err))
    rc, out, err = run_cmd([st, "diff", healthy, slow, "--fail-over", "10"])
    expect(rc == 1, "diff healthy -> 200 ms stall with --fail-over 10 exited %d, expected 1: %s" % (rc, out))
    expect("stalled_ms" in err and "worse" in err, "no reason given for the failure: %r" % err)
    rc, out, err = run_cmd([st, "diff", "--format", "json", healthy, slow])
    doc = json.loads(out)
    expect(rc == 0 and doc["format"] == "stalltrace-diff" and any(
        c["scope"] == "site" and c["figure"] == "stalls" and c["base"] == 0 and c["new"] == 1 for c in doc["changes"]),
        "JSON diff lacks the new stall site: %s" % out[:600])
    bad = _write(tmpdir, "bad.dump", "STALLTRC truncated")
    for argv in ([st, "diff", slow, bad], [st, "diff", slow], [st, "diff", slow, slow, "--fail-over", "x"]):
        rc, out, err = run_cmd(argv)
        expect(rc == 2, "%s exited %d, expected 2" % (" ".join(argv[2:]), rc))
    return "self: no change; healthy -> stall: exit 1"


def chromium_argv(tmpdir):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise Skip("chromium is not installed (Debian package chromium)")
    profile = os.path.join(tmpdir, "chromium-profile")
    os.makedirs(profile, exist_ok=True)
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + profile]


@test("formats_html")
def t_html(cfg, tmpdir):
    dump = recorded(cfg, tmpdir, "py_cpu")
    html = report(cfg, "html", dump)
    for bad in ("<link", " src=", "@import", "url("):
        expect(bad not in html, "the page may load something from elsewhere (%r in it)" % bad)
    page = _write(tmpdir, "report.html", html)
    argv = chromium_argv(tmpdir)
    rc, dom, err = run_cmd(argv + ["--dump-dom", "file://" + page], timeout=90)
    expect(rc == 0 and 'data-rendered="yes"' in dom, "the page did not render in chromium (%d): %s" % (rc, err[-400:]))
    expect(dom.count("stall-row") >= 1 and "fg-frame" in dom, "no stall rows or flame graph in the DOM")
    shot = os.path.join(tmpdir, "report.png")
    rc, _, err = run_cmd(argv + ["--window-size=1400,1000", "--screenshot=" + shot, "file://" + page], timeout=90)
    expect(rc == 0 and os.path.getsize(shot) > 10000, "no screenshot taken: %s" % err[-300:])
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(HTML_DIR, "node_modules", "playwright-core")):
        raise Skip("rendered, screenshot %s; click test needs `npm install --prefix tests/e2e/html`" % shot)
    # Kept after the run, for a person to look at.
    shots = os.path.join(cfg.build_dir, "e2e-artifacts")
    os.makedirs(shots, exist_ok=True)
    shutil.copy(page, os.path.join(shots, "report.html"))
    shot2 = os.path.join(shots, "report.png")
    rc, out, err = run_cmd([node, os.path.join(HTML_DIR, "browser_check.js"), page, shot2], timeout=120)
    expect(rc == 0, "browser check failed (%d): %s" % (rc, err[-600:]))
    r = json.loads(out.strip().splitlines()[-1])
    expect(not r["errors"], "console errors: %s" % r["errors"])
    expect(not r["requests"], "the page made requests: %s" % r["requests"])
    expect(r["stall_rows"] >= 1 and r["timeline_stalls"] >= 1, "stalls not on the page: %s" % r)
    expect(r["focus"] == r["clicked"] and r["clicked_width_ratio"] < 0.9 and r["zoomed_width_ratio"] > 0.95,
           "a click on flame-graph frame %r did not zoom: %s" % (r["clicked"], r))
    expect(r["timeline_zoomed"], "the timeline did not zoom")
    return "%d stalls, zoomed %r from %.0f%% to full width; screenshot %s" % (
        r["stall_rows"], r["clicked"], 100 * r["clicked_width_ratio"], shot2)
