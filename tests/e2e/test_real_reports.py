"""End-to-end tests of reports a person can read in ten seconds (issue 19),
on a real FastAPI service on uvicorn under Debian's /usr/bin/python3
(targets/py_fastapi_def.py), its HTML report drawn by headless chromium and
checked by the page's DOM:

- real_report_fastapi_saturated: 80 clients on /work (a `def` endpoint,
  anyio's 40 threads) and one on /block (an `async def` endpoint whose
  render_invoice sleeps 0.2 s on the loop). The loop's stalls match the
  target's own TRUTH timings; the HTML timeline has one lane per pool
  (not 40 rows of workers); the app's frame is within the flame graph's
  first rows, and `folded` starts there too while `--all-frames` keeps
  _start...Py_RunMain...uvicorn (the row the app frame appears at is the
  figure: before/after).
- real_report_fastapi_healthy: 8 clients on /work: the text report is a
  short "Nothing to fix" with the loop and pool lines, the page says the
  same and has no "Locks waited for" section.

Screenshots go to $STALLTRACE_SHOTS (default build/e2e-artifacts).
"""

import html.parser
import http.client
import os
import re

from e2e_lib import THRESHOLD_MS, expect, run_cmd, test
from test_formats import chromium_argv
from test_real_pools import HEALTHY_P99_S, quantile, serve_and_load

APP_FRAMES = ("block", "render_invoice", "work")
BLOCK_REQUESTS = 5


def serve(cfg, tmpdir, clients, requests_each, blocks):
    """Record the service under `clients` x `requests_each` GET /work and
    `blocks` GET /block; returns (process, client latencies, TRUTH block ms)."""
    errors = []

    def block_client(port):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(blocks):
                conn.request("GET", "/block")
                conn.getresponse().read()
            conn.close()
        except Exception as e:   # reported below
            errors.append(repr(e))

    proc, latencies, _ = serve_and_load(cfg, tmpdir, "py_fastapi_def.py", clients, requests_each,
                                        block_client if blocks else None)
    expect(not errors, "GET /block failed: %s" % errors, proc)
    truth = [float(m) for m in re.findall(r"TRUTH block_ms=([\d.]+)", "\n".join(proc["_stdout"]))]
    return proc, latencies, truth


def report(cfg, dump, *args):
    rc, out, err = run_cmd([cfg.stalltrace, "report"] + list(args) + [dump], timeout=60)
    expect(rc == 0, "report %s exited %d: %s" % (" ".join(args), rc, err.strip()[-300:]))
    return out


class Dom(html.parser.HTMLParser):
    """What the checks read of the rendered page: timeline lanes, flame
    frames with their rows, section headings, the diagnosis text."""

    def __init__(self):
        super().__init__()
        self.lanes, self.frames, self.headings, self.text, self._heading = [], [], [], [], None
        self.rendered, self._script = False, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._script = tag in ("script", "style")
        if tag == "body" and a.get("data-rendered") == "yes":
            self.rendered = True
        if tag == "rect" and a.get("data-lane"):
            self.lanes.append((a["data-lane"], a.get("data-pool")))
        if tag == "div" and "fg-frame" in (a.get("class") or "") and "root" not in a.get("class"):
            self.frames.append((int(a.get("data-depth", -1)), a.get("data-name")))
        if tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        self._script = False
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._script:
            return               # the page's data and code, not what it shows
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def render(cfg, tmpdir, dump, name):
    """The HTML report as chromium drew it (parsed DOM), and a screenshot."""
    page = os.path.join(tmpdir, name + ".html")
    report(cfg, dump, "--format", "html", "-o", page)
    argv = chromium_argv(tmpdir)
    rc, dom, err = run_cmd(argv + ["--dump-dom", "file://" + page], timeout=90)
    expect(rc == 0, "chromium --dump-dom exited %d: %s" % (rc, err[-300:]))
    shots = os.environ.get("STALLTRACE_SHOTS") or os.path.join(cfg.build_dir, "e2e-artifacts")
    os.makedirs(shots, exist_ok=True)
    shot = os.path.join(shots, name + ".png")
    rc, _, err = run_cmd(argv + ["--window-size=1400,1100", "--screenshot=" + shot, "file://" + page], timeout=90)
    expect(rc == 0 and os.path.getsize(shot) > 10000, "no screenshot taken: %s" % err[-300:])
    d = Dom()
    d.feed(dom)
    expect(d.rendered, "the page did not render in chromium: %s" % err[-300:])
    return d, shot


def app_row(lines):
    """The row (0: the process root) at which an application frame first
    appears among folded stacks that hold one."""
    rows = []
    for line in lines:
        names = line.rsplit(" ", 1)[0].split(";")
        hits = [i for i, n in enumerate(names) if n in APP_FRAMES]
        if hits:
            rows.append(hits[0])
    return min(rows) if rows else None


def one_lane_per_pool(d, proc):
    pools = proc.get("pools") or []
    pool_lanes = [p for kind, p in d.lanes if kind == "pool"]
    expect(len(pools) >= 1 and len(pool_lanes) == len(pools),
           "%d pool lane(s) for %d pool(s): lanes %r" % (len(pool_lanes), len(pools), d.lanes), proc)
    threads = [kind for kind, _ in d.lanes if kind == "thread"]
    expect(not threads, "worker rows are shown before their pool is clicked: %d" % len(threads), proc)
    return len(pool_lanes)


@test("real_report_fastapi_saturated")
def test_saturated(cfg, tmpdir):
    proc, _, truth = serve(cfg, tmpdir, 80, 15, BLOCK_REQUESTS)
    expect(len(truth) == BLOCK_REQUESTS, "the target printed %d TRUTH lines, expected %d" % (
        len(truth), BLOCK_REQUESTS), proc)
    # The loop's stalls in render_invoice hold the target's own sleeps: the
    # call as long as the target timed it, the stall (the whole iteration,
    # the GIL taken back among 40 busy workers) no shorter.
    stalls = [s for s in proc.get("stalls") or [] if s.get("call") == "clock_nanosleep"]
    calls = sorted(c["max_ms"] for s in stalls for c in s.get("calls") or [] if c.get("call") == "clock_nanosleep")
    expect(len(calls) == len(truth), "%d clock_nanosleep calls in stalls, %d blocking calls" % (
        len(calls), len(truth)), proc)
    for got, want in zip(calls, sorted(truth)):
        expect(abs(got - want) <= max(10, 0.05 * want), "a stall's clock_nanosleep took %.1f ms, the target's "
               "call %.1f ms" % (got, want), proc)
    worst = max(truth)
    longest = max(s["duration_ms"] for s in stalls)
    expect(longest >= calls[-1], "the longest stall %.0f ms is shorter than its call %.0f ms" % (
        longest, calls[-1]), proc)
    dump = proc["_dump"]

    view = report(cfg, dump, "--format", "folded").splitlines()
    everything = report(cfg, dump, "--format", "folded", "--all-frames").splitlines()
    before, after = app_row(everything), app_row(view)
    expect(after is not None and after <= 2, "folded: the app's frame at row %r, not among the first: %s"
           % (after, view[:3]), proc)
    expect(before is not None and before > 10 and any(l.split(";")[1] == "_start" for l in everything),
           "--all-frames lost the runtime's frames (app frame at row %r): %s" % (before, everything[:2]), proc)

    d, shot = render(cfg, tmpdir, dump, "report_fastapi_saturated")
    lanes = one_lane_per_pool(d, proc)
    flame_row = min([depth for depth, name in d.frames if name in APP_FRAMES] or [None])
    expect(flame_row is not None and flame_row <= 2, "the app's frame is at flame-graph row %r" % flame_row, proc)
    text = " ".join(d.text)
    expect("Nothing to fix" not in text and "What to look at first" in d.headings,
           "the saturated service's page does not say what to look at: %r" % d.headings, proc)
    return ("truth: %d blocks, longest %.0f ms; report: call %.0f ms, stall %.0f ms; %d pool lane(s) for %d "
            "threads; app frame at row %d of the flame graph (folded %d, --all-frames %d); screenshot %s" % (
                len(truth), worst, calls[-1], longest, lanes, sum(p.get("threads") or 0 for p in proc["pools"]), flame_row,
                after, before, shot))


@test("real_report_fastapi_healthy")
def test_healthy(cfg, tmpdir):
    proc, lat, truth = serve(cfg, tmpdir, 8, 20, 0)
    p99 = quantile(lat, 0.99)
    expect(p99 <= HEALTHY_P99_S, "client p99 %.0f ms is not the service time: a loaded machine, retry"
           % (p99 * 1e3), proc)
    dump = proc["_dump"]
    text = report(cfg, dump)
    want = "Nothing to fix: no event-loop stall of %d ms or more, no pool saturated, no lock contended." % THRESHOLD_MS
    lines = [l for l in text.splitlines() if l.strip()]
    expect(want in text, "the healthy text report does not say nothing to fix:\n%s" % text, proc)
    for bad in ("Locks waited for", "(CPU)", "What to look at first", "Stall sites"):
        expect(bad not in text, "the healthy text report says %r:\n%s" % (bad, text), proc)
    expect(len(lines) <= 8 and any(l.startswith("  loop thread ") for l in lines)
           and any(re.match(r"  pool \d+ \(anyio, up to 40 threads\): 8 workers", l) for l in lines),
           "not the short form with a loop and a pool line:\n%s" % text, proc)

    d, shot = render(cfg, tmpdir, dump, "report_fastapi_healthy")
    page = " ".join(d.text)
    expect("Nothing to fix" in page, "the healthy page does not say nothing to fix: %r" % d.headings, proc)
    expect(not any(h.startswith("Locks") for h in d.headings), "the healthy page has %r" % d.headings, proc)
    lanes = one_lane_per_pool(d, proc)
    return "client p99 %.0f ms; text report %d lines, Nothing to fix; page: %d pool lane(s), headings %s; %s" % (
        p99 * 1e3, len(lines), lanes, d.headings, shot)
