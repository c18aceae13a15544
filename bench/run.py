#!/usr/bin/env python3
"""run.py - what the recorder costs, as ratios measured in one run.

Runs each benchmark plain and preloaded, alternating, for several rounds,
and prints medians, min-max and the difference per call. The machine is
shared and noisy: only same-run, interleaved medians mean anything.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_micro(build, preload, iterations, dumpdir):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = os.path.join(build, "preload", "libstalltrace.so")
        env["STALLTRACE_OUTPUT"] = os.path.join(dumpdir, "micro.%p.dump")
    out = subprocess.run([os.path.join(build, "bench", "micro"), str(iterations)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return {name: float(value) for name, value in (line.split() for line in out.splitlines())}


def run_echo(build, preload, python, conns, msgs, dumpdir):
    """CPU seconds of the server per 1000 messages, and messages/s."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = os.path.join(build, "preload", "libstalltrace.so")
        env["STALLTRACE_OUTPUT"] = os.path.join(dumpdir, "echo.%p.dump")
    server = subprocess.Popen([python, os.path.join(HERE, "echo_server.py")], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        rate = float(subprocess.run([python, os.path.join(HERE, "echo_client.py"), port,
                                     str(conns), str(msgs)], check=True, capture_output=True,
                                    text=True).stdout)
        server.stdin.close()
        cpu = float(server.stdout.readline())
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    return {"asyncio_echo_cpu_ms_per_1000_msgs": cpu * 1e6 / (conns * msgs),
            "asyncio_echo_msgs_per_s": rate}


def table(title, samples, lower_is_better=True):
    print(f"\n{title}\n")
    print("| measure | plain (median, min-max) | preloaded | preloaded / plain |")
    print("|---|---|---|---|")
    for name, runs in samples.items():
        plain, pre = runs[False], runs[True]
        mp, mq = statistics.median(plain), statistics.median(pre)
        print(f"| {name} | {mp:.2f} ({min(plain):.2f}-{max(plain):.2f}) "
              f"| {mq:.2f} ({min(pre):.2f}-{max(pre):.2f}) | {mq / mp:.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=5000000)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--echo-messages", type=int, default=4000,
                    help="messages per connection (4 connections); 0 skips the echo server")
    args = ap.parse_args()

    samples = {}
    with tempfile.TemporaryDirectory() as dumpdir:
        for _ in range(args.rounds):
            for preload in (False, True):
                for name, ns in run_micro(args.build_dir, preload, args.iterations, dumpdir).items():
                    samples.setdefault(name, {False: [], True: []})[preload].append(ns)

    print(f"| operation | plain ns/call (median, min-max) | preloaded ns/call | added ns/call |")
    print(f"|---|---|---|---|")
    for name, runs in samples.items():
        plain, pre = runs[False], runs[True]
        mp, mq = statistics.median(plain), statistics.median(pre)
        print(f"| {name} | {mp:.2f} ({min(plain):.2f}-{max(plain):.2f}) "
              f"| {mq:.2f} ({min(pre):.2f}-{max(pre):.2f}) | {mq - mp:+.2f} |")
    print(f"\n{args.rounds} rounds, interleaved plain/preloaded, {args.iterations} iterations each; "
          f"{os.cpu_count()} cores.")

    if args.echo_messages:
        echo = {}
        with tempfile.TemporaryDirectory() as dumpdir:
            for _ in range(args.rounds):
                for preload in (False, True):
                    for name, v in run_echo(args.build_dir, preload, args.python, 4,
                                            args.echo_messages, dumpdir).items():
                        echo.setdefault(name, {False: [], True: []})[preload].append(v)
        table(f"CPython asyncio echo server ({args.python}), 4 connections x "
              f"{args.echo_messages} messages", echo)


if __name__ == "__main__":
    sys.exit(main())
