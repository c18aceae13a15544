"""End-to-end tests of lock contention on real programs (issue 12, point 3).

A lock is a culprit only when its waits are a real share of the threads'
time or one wait reached the threshold, on a lock of the program's own; the
GIL only when threads competed for the CPU (waits that timed out).

Healthy under load, no lock_contention and no lock with "culprit": true:
- memcached -t 4 under memcaslap (its own mutexes, named memcached+0x...:
  the Debian binary is stripped);
- an asyncio service with run_in_executor (py_executor_steady.py);
- FastAPI on uvicorn (Debian's python3), a `def` endpoint sleeping 50 ms,
  8 clients: the workers take the GIL briefly when they wake;
- node keeping libuv's pool busy (node_fs_healthy.js): libuv's queue mutex
  is the pool's own.
Contended, and found:
- c_mutex_contention: 4 threads on one global mutex in waits of a few ms:
  the lock, its name (stats_lock+0x0) and its total wait against the waits
  the program measures; stripped, named c_mutex_contention+0xOFFSET with
  the offset nm gives for stats_lock;
- py_lock_contention and py_gil_contention (targets of test_pools.py):
  lock_contention names the program's threading.Lock and the GIL.
"""

import http.client
import os
import re
import shutil
import signal
import threading
import time

from e2e_lib import (
    THRESHOLD_MS, DEBIAN_PYTHON, Skip, c_target_binary, default_python, diagnosis_names, expect, free_port, load_process,
    run_cmd, run_to_end, start_target, target, test, wait_port)

# FastAPI: the endpoint's sleep, the clients and how long they send.
FASTAPI_SLEEP_MS = 50.0
FASTAPI_CLIENTS = 8
LOAD_S = 4.0
# A healthy service's p99 stays near its service time (a loaded machine
# adds scheduling delay, never a queue of requests).
HEALTHY_P99_SLACK_MS = 250.0
# The report's total wait on the C target's mutex against its own measure.
C_WAIT_RATIO = (0.8, 1.25)


# ---------------------------------------------------------------------------
# Checks on the report


def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def lock_note(lock):
    return "%s %s: %s waits, %.0f ms (share %s), culprit %s%s" % (
        lock.get("kind"), lock.get("label") or lock.get("symbol") or lock.get("object"),
        lock.get("contentions"), num(lock.get("wait_total_ms")) or 0, lock.get("wait_share"),
        lock.get("culprit"), ", internal to %s" % lock["internal"] if lock.get("internal") else "")


def no_lock_culprit(proc):
    """Healthy: no lock_contention diagnosis and every lock judged harmless."""
    names = diagnosis_names(proc)
    expect("lock_contention" not in names, "lock_contention in a healthy run: %s"
           % [d.get("summary") for d in proc.get("diagnosis") or []], proc)
    locks = proc.get("locks") or []
    for lock in locks:
        expect(lock.get("culprit") is False, "lock %s is a culprit in a healthy run" % lock_note(lock), proc)
    return "; ".join(lock_note(l) for l in locks[:3]) or "no lock listed"


def lock_diagnosis(proc):
    diag = [d for d in proc.get("diagnosis") or [] if d.get("culprit") == "lock_contention"]
    expect(diag, "no lock_contention diagnosis: %r" % diagnosis_names(proc), proc)
    return diag[0].get("summary") or ""


def top_culprit(proc):
    culprits = [l for l in proc.get("locks") or [] if l.get("culprit") is True]
    expect(culprits, "no lock has culprit true: %s" % [lock_note(l) for l in proc.get("locks") or []], proc)
    return max(culprits, key=lambda l: num(l.get("wait_total_ms")) or 0)


# ---------------------------------------------------------------------------
# Servers and their clients


def stop_server(proc):
    """SIGTERM to `stalltrace run`, which passes it on; the server writes its dump."""
    proc.popen.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    expect(rc in (0, -signal.SIGTERM, 128 + signal.SIGTERM), "the server ended with status %s%s"
           % (rc, proc.tail()))


def http_load(port, path, clients, seconds):
    """`clients` threads each sending GET `path` one after another for
    `seconds`; returns the sorted latencies in ms (the clients' own clock)."""
    latencies, errors = [], []
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                t0 = time.monotonic()
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    latencies.append((time.monotonic() - t0) * 1e3)
                if resp.status != 200:
                    errors.append(resp.status)
        except (OSError, http.client.HTTPException) as e:
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    expect(not errors, "client errors: %s" % errors[:3])
    expect(latencies, "no request was answered")
    return sorted(latencies)


def p99(sorted_ms):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * 0.99))]


# ---------------------------------------------------------------------------
# Healthy under load


@test("real_locks_memcached_healthy")
def t_memcached_healthy(cfg, tmpdir):
    memcached, memcaslap = shutil.which("memcached"), shutil.which("memcaslap")
    if not memcached or not memcaslap:
        raise Skip("memcached or memcaslap missing (bash scripts/setup.sh)")
    port = free_port()
    cmd = [memcached, "-t", "4", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]      # memcached refuses to run as root otherwise
    server = start_target(cfg, tmpdir, cmd)
    try:
        wait_port(port, server, 15)
        rc, out, err = run_cmd([memcaslap, "-s", "127.0.0.1:%d" % port, "-T", "4", "-c", "128",
                                "-t", "%ds" % LOAD_S], timeout=LOAD_S + 30)
        expect(rc == 0, "memcaslap exited %d: %s" % (rc, (out + err)[-300:]))
        m = re.search(r"Ops: (\d+) TPS: (\d+)", out)
        expect(m and int(m.group(1)) > 10000, "memcaslap did not run its load: %r" % out[-300:])
        stop_server(server)
    finally:
        server.close()
    proc, _ = load_process(cfg, tmpdir, "memcached", server)
    note = no_lock_culprit(proc)
    # memcached's own mutexes lie in its .bss; the binary is stripped, so a
    # listed one is named by module and offset, never by a bare address.
    for lock in proc.get("locks") or []:
        sym = lock.get("symbol")
        expect(sym is None or re.match(r"^[\w.]+\+0x[0-9a-f]+$", sym), "lock symbol %r" % sym, proc)
    own = [l for l in proc.get("locks") or [] if str(l.get("symbol") or "").startswith("memcached+0x")]
    return "%s ops (%s TPS); %s%s" % (m.group(1), m.group(2), note,
                                      "" if own else " (no memcached lock waited a threshold in all)")


@test("real_locks_asyncio_executor_healthy")
def t_asyncio_executor_healthy(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_executor_steady.py")], "py_executor_steady.py")
    done = [l for l in proc["_stdout"] if l.startswith("STEADY-DONE")]
    m = re.search(r"jobs=(\d+) max_latency_ms=([0-9.]+)", done[-1]) if done else None
    expect(m, "the target did not print STEADY-DONE: %r" % proc["_stdout"][-3:])
    return "%s jobs, max latency %s ms; %s" % (m.group(1), m.group(2), no_lock_culprit(proc))


@test("real_locks_fastapi_sleepers_healthy")
def t_fastapi_sleepers_healthy(cfg, tmpdir):
    rc, _, _ = run_cmd([DEBIAN_PYTHON, "-c", "import fastapi, uvicorn"])
    if rc != 0:
        raise Skip("Debian's python3 has no fastapi/uvicorn (bash scripts/setup.sh)")
    server = start_target(cfg, tmpdir, [DEBIAN_PYTHON, target("py_fastapi_sleepers.py"), str(LOAD_S + 20)])
    try:
        line = server.wait_for_line(r"^LISTENING port=\d+", 30)
        port = int(line.split("=")[1])
        lat = http_load(port, "/profile", FASTAPI_CLIENTS, LOAD_S)
        stop_server(server)
    finally:
        server.close()
    expect(p99(lat) < FASTAPI_SLEEP_MS + HEALTHY_P99_SLACK_MS, "client p99 %.0f ms: requests queued, the "
           "run is not healthy" % p99(lat))
    proc, _ = load_process(cfg, tmpdir, "py_fastapi_sleepers.py", server)
    return "%d requests, p50 %.0f ms, p99 %.0f ms; %s" % (len(lat), lat[len(lat) // 2], p99(lat),
                                                          no_lock_culprit(proc))


@test("real_locks_node_libuv_healthy")
def t_node_libuv_healthy(cfg, tmpdir):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Skip("no node")
    proc, _ = run_to_end(cfg, tmpdir, [node, target("node_fs_healthy.js")], "node_fs_healthy.js")
    done = [l for l in proc["_stdout"] if l.startswith("FS-DONE")]
    m = re.search(r"ops=(\d+) max_latency_ms=([0-9.]+)", done[-1]) if done else None
    expect(m, "the target did not print FS-DONE: %r" % proc["_stdout"][-3:])
    return "%s ops, max latency %s ms; %s" % (m.group(1), m.group(2), no_lock_culprit(proc))


# ---------------------------------------------------------------------------
# True contention


def c_mutex_run(cfg, tmpdir, binary):
    proc, _ = run_to_end(cfg, tmpdir, [binary], os.path.basename(binary))
    done = [l for l in proc["_stdout"] if l.startswith("MUTEX-DONE")]
    m = re.search(r"waits_ms=([0-9.]+) max_wait_ms=([0-9.]+) slow_waits=(\d+)", done[-1]) if done else None
    expect(m, "the target did not print MUTEX-DONE: %r" % proc["_stdout"][-3:])
    truth_ms, slow = float(m.group(1)), int(m.group(3))
    lock = top_culprit(proc)
    total = num(lock.get("wait_total_ms")) or 0
    expect(lock.get("kind") == "mutex", "the culprit is a %r, expected the mutex" % lock.get("kind"), proc)
    expect(C_WAIT_RATIO[0] * truth_ms <= total <= C_WAIT_RATIO[1] * truth_ms,
           "the mutex's wait_total_ms %.0f, the program measured %.0f ms" % (total, truth_ms), proc)
    expect((lock.get("contentions") or 0) >= 0.8 * slow, "%s contentions, the program saw %d waits of "
           "0.1 ms or more" % (lock.get("contentions"), slow), proc)
    # A holder only for a wait that reached the threshold (its waits are a few ms, but a loaded
    # machine may stretch one), and held as long.
    for l in proc.get("locks") or []:
        held = [num(h.get("held_ms")) or 0 for h in l.get("holders") or []]
        expect(all(ms >= THRESHOLD_MS for ms in held) and (not held or (num(l.get("wait_max_ms")) or 0) >= THRESHOLD_MS),
               "holders %s of lock %s though no wait reached the threshold" % (held, lock_note(l)), proc)
    summary = lock_diagnosis(proc)
    expect(lock.get("symbol") and lock["symbol"] in summary, "the diagnosis does not name the lock %r: %s"
           % (lock.get("symbol"), summary), proc)
    return proc, lock, "waits %.0f ms (truth %.0f ms), %s waits; %s" % (total, truth_ms, lock.get("contentions"),
                                                                       summary[:140])


@test("real_locks_c_mutex_contention")
def t_c_mutex_contention(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_mutex_contention", ["-pthread"])
    _, lock, text = c_mutex_run(cfg, tmpdir, binary)
    expect(lock.get("symbol") == "stats_lock+0x0", "the mutex is named %r, expected stats_lock+0x0"
           % lock.get("symbol"))
    return text + note


@test("real_locks_c_mutex_contention_stripped")
def t_c_mutex_contention_stripped(cfg, tmpdir):
    binary, note = c_target_binary(cfg, tmpdir, "c_mutex_contention", ["-pthread"])
    nm, strip = shutil.which("nm"), shutil.which("strip")
    if not nm or not strip:
        raise Skip("no nm or strip (binutils)")
    rc, out, _ = run_cmd([nm, binary])
    m = re.search(r"^([0-9a-f]+) [bBdD] stats_lock$", out, re.M)
    expect(rc == 0 and m, "nm does not show stats_lock in %s" % binary)
    stripped = os.path.join(tmpdir, "c_mutex_stripped")
    rc, _, err = run_cmd([strip, "-o", stripped, binary])
    expect(rc == 0, "strip failed: %s" % err[:200])
    _, lock, text = c_mutex_run(cfg, tmpdir, stripped)
    want = "c_mutex_stripped+0x%x" % int(m.group(1), 16)
    expect(lock.get("symbol") == want, "the stripped binary's mutex is named %r, expected %s"
           % (lock.get("symbol"), want))
    return text + note


@test("real_locks_py_lock_diagnosed")
def t_py_lock_diagnosed(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_lock_contention.py")], "py_lock_contention.py")
    lock = top_culprit(proc)
    expect(lock.get("kind") == "sem" and not lock.get("label"), "the culprit is %s, expected the program's "
           "threading.Lock (a sem)" % lock_note(lock), proc)
    summary = lock_diagnosis(proc)
    expect("update_shared_state" in summary, "the diagnosis does not say where: %s" % summary, proc)
    return summary[:160]


@test("real_locks_py_gil_diagnosed")
def t_py_gil_diagnosed(cfg, tmpdir):
    proc, _ = run_to_end(cfg, tmpdir, [default_python(), target("py_gil_contention.py")], "py_gil_contention.py")
    lock = top_culprit(proc)
    expect(lock.get("label") == "GIL" and (lock.get("timeouts") or 0) > 0, "the culprit is %s, expected "
           "the GIL with timed-out waits" % lock_note(lock), proc)
    summary = lock_diagnosis(proc)
    expect("GIL" in summary, "the diagnosis does not name the GIL: %s" % summary, proc)
    return summary[:160]
