"""e2e target: an asyncio program that forks after its loop ran, as a test
suite run with `-W error` does, and says how many threads it sees.

Runs a loop, then os.fork() outside any loop and again from inside a
running one, each under warnings.catch_warnings (CPython 3.12+ warns
"This process ... is multi-threaded" when /proc/self/stat counts more than
one thread). Prints the count the parent reads right after each fork and
the warnings caught. Both sides then run a loop that stalls in
sleep_after_fork (time.sleep(0.2)), then in spin_after_fork (0.2 s of
pure-Python CPU work, seen only by in-stall sampling).
"""
import asyncio
import os
import sys
import time
import warnings


def thread_count():
    """num_threads, field 20 of /proc/self/stat, as CPython 3.12 reads it."""
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[17])


def forked(where):
    """os.fork() with its warnings caught; the parent prints what it saw."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = os.fork()
        threads = thread_count()
    if pid != 0:
        print("FORK %s threads=%d warnings=%d %s" % (where, threads, len(caught),
              "; ".join(str(w.message)[:80] for w in caught)), flush=True)
    return pid


def sleep_after_fork(done):
    time.sleep(0.2)
    done.set_result(None)


def spin_after_fork(done):
    end = time.monotonic() + 0.2
    n = 0
    while time.monotonic() < end:
        n += 1
    done.set_result(n)


async def ticks(n):
    for _ in range(n):
        await asyncio.sleep(0.005)


async def run_callback(callback):
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(callback, done)
    await done
    await ticks(5)


async def parent_after_fork():
    await ticks(10)
    pid = forked("in-loop")          # from a callback of a running loop
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    await ticks(10)
    await run_callback(sleep_after_fork)
    await run_callback(spin_after_fork)


async def child_after_fork():
    await ticks(10)
    await run_callback(sleep_after_fork)
    await run_callback(spin_after_fork)


if __name__ == "__main__":
    asyncio.run(ticks(20))
    print("BEFORE threads=%d" % thread_count(), flush=True)
    pid = forked("after-loop")
    if pid == 0:
        print("CHILD pid=%d threads=%d" % (os.getpid(), thread_count()), flush=True)
        asyncio.run(child_after_fork())
        sys.stdout.flush()
        os._exit(0)
    print("PARENT pid=%d child=%d" % (os.getpid(), pid), flush=True)
    asyncio.run(parent_after_fork())
    _, status = os.waitpid(pid, 0)
    print("DONE child_status=%d" % status, flush=True)
