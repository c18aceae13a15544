#!/usr/bin/env python3
"""soak.py - long runs under the recorder with a small ring (issue 5, load).

redis-server under redis-benchmark, and a CPython asyncio echo server under
a load client, each for --seconds, plain and preloaded: the load's results
must be identical (no errors, no lost replies), the target's RSS must stay
flat while it runs, and the dump must be well formed at the end. Prints a
Markdown summary; exits 1 if any check failed.

    python3 tests/soak/soak.py --build-dir build --seconds 180
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def preload_env(args, dumpdir, name):
    env = dict(os.environ)
    env["LD_PRELOAD"] = os.path.join(args.build_dir, "preload", "libstalltrace.so")
    env["STALLTRACE_OUTPUT"] = os.path.join(dumpdir, name + ".%p.dump")
    env["STALLTRACE_BUFFER_MB"] = "1"
    env["STALLTRACE_THRESHOLD_MS"] = "5"
    return env


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def sample_rss(proc, seconds, client):
    """RSS of proc once a second while the client runs; returns the samples."""
    samples = []
    deadline = time.time() + seconds + 60
    while client.poll() is None and time.time() < deadline:
        samples.append(rss_kib(proc.pid))
        time.sleep(1)
    return samples


def check_dumps(args, dumpdir, name):
    """Every dump reports (exit 0) and says it is complete."""
    out = []
    for dump in glob.glob(os.path.join(dumpdir, name + ".*.dump")):
        r = subprocess.run([os.path.join(args.build_dir, "analyzer", "stalltrace"), "report",
                            "--format", "json", dump], capture_output=True, text=True)
        if r.returncode != 0:
            return False, "report failed: " + r.stderr.strip()
        p = json.loads(r.stdout)["processes"][0]
        out.append("%s: complete=%s, %d stalls kept, %d dropped" % (
            os.path.basename(dump), p["complete"], len(p["stalls"]), p["dropped_events"]))
        if not p["complete"]:
            return False, out[-1]
    return True, "; ".join(out) or "no dump (nothing to record)"


def redis_round(args, preload, dumpdir):
    port = free_port()
    env = preload_env(args, dumpdir, "redis") if preload else dict(os.environ)
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port):
            return {"error": "redis-server did not start"}
        rss0 = rss_kib(server.pid)
        client = subprocess.Popen(["redis-benchmark", "-p", str(port), "-q", "-t", "set,get,incr,lpush,lpop",
                                   "-n", "100000000", "-c", "20", "-P", "4", "--csv"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        samples = []
        deadline = time.time() + args.seconds
        while time.time() < deadline and client.poll() is None:
            samples.append(rss_kib(server.pid))
            time.sleep(1)
        client.terminate()
        client.wait(10)
        # A final count: the server must still answer correctly.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"PING\r\n")
        pong = s.recv(64)
        s.close()
        return {"rss_start_kib": rss0, "rss": samples, "ping": pong.strip().decode()}
    finally:
        server.terminate()
        server.wait(10)


def echo_round(args, preload, dumpdir):
    env = preload_env(args, dumpdir, "echo") if preload else dict(os.environ)
    server = subprocess.Popen([args.python, os.path.join(REPO, "bench", "echo_server.py")], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        msgs = 10 ** 9
        client = subprocess.Popen([args.python, "-c", CLIENT, port, str(args.seconds)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples = sample_rss(server, args.seconds, client)
        out, err = client.communicate(timeout=60)
        server.stdin.close()
        server.wait(30)
        return {"rss": samples, "client": out.strip(), "client_err": err.strip()[-300:]}
    finally:
        if server.poll() is None:
            server.kill()


# Load client: 4 connections for N seconds, every echo checked byte for byte.
CLIENT = r'''
import socket, sys, threading, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
sent = [0] * 4; bad = [0] * 4
def worker(k):
    s = socket.create_connection(("127.0.0.1", port))
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        msg = ("%d:%d;" % (k, i)).encode() * 8
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(65536)
            if not chunk:
                bad[k] += 1; return
            got += chunk
        if got != msg:
            bad[k] += 1
        sent[k] += 1; i += 1
    s.close()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print("messages=%d mismatches=%d" % (sum(sent), sum(bad)))
'''


def flat(samples):
    """RSS growth over the second half of the run, in KiB."""
    if len(samples) < 4:
        return 0
    half = samples[len(samples) // 2:]
    return max(half) - half[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--python", default=shutil.which("python3"))
    args = ap.parse_args()
    failed = False
    print("| target | run | result | RSS start..end KiB | RSS growth, 2nd half | dump |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as dumpdir:
        if shutil.which("redis-server") and shutil.which("redis-benchmark"):
            for preload in (False, True):
                r = redis_round(args, preload, dumpdir)
                ok, dumps = check_dumps(args, dumpdir, "redis") if preload else (True, "-")
                good = r.get("ping") == "+PONG" and ok and flat(r.get("rss", [])) < 4096
                failed |= not good
                rss = r.get("rss") or [0]
                print("| redis-server | %s | %s | %d..%d | %d | %s |" % (
                    "preloaded" if preload else "plain", r.get("ping", r.get("error")),
                    rss[0], rss[-1], flat(rss), dumps))
        else:
            print("| redis-server | skipped | not installed (apt-get install redis-server redis-tools) | | | |")
        for preload in (False, True):
            r = echo_round(args, preload, dumpdir)
            ok, dumps = check_dumps(args, dumpdir, "echo") if preload else (True, "-")
            m = re.search(r"mismatches=(\d+)", r["client"])
            good = m is not None and m.group(1) == "0" and ok and flat(r["rss"]) < 4096
            failed |= not good
            rss = r["rss"] or [0]
            print("| asyncio echo | %s | %s | %d..%d | %d | %s |" % (
                "preloaded" if preload else "plain", r["client"] or r["client_err"],
                rss[0], rss[-1], flat(rss), dumps))
    print("\n%s: %d s per run, ring 1 MiB, threshold 5 ms" % ("FAILED" if failed else "ok", args.seconds))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
