# py_attach.py - an asyncio program started without the recorder, for
# `stalltrace attach`: every 0.5 s a callback sleeps 200 ms; it prints its own timings.
# From round LATE on (argv[2]) the callback waits 200 ms on a semaphore of
# _multiprocessing, an extension module it imports only then (after attach).
# With "busy" as argv[3] the callback computes for 200 ms instead (busy_callback:
# no system call, a stall that only in-stall sampling can see inside).
import asyncio
import os
import sys
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 24
LATE = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
BUSY = sys.argv[3:4] == ["busy"]


def late_callback():
    import _multiprocessing       # dlopen'ed now: sem_timedwait through its own GOT
    sem = _multiprocessing.SemLock(1, 0, 1, "/st-attach-%d" % os.getpid(), True)
    t0 = time.monotonic()
    sem.acquire(True, 0.2)
    t1 = time.monotonic()
    print("TRUTH semwait %.6f %.6f %.3f" % (t0, t1, (t1 - t0) * 1000), flush=True)


def blocking_callback():
    t0 = time.monotonic()
    time.sleep(0.2)
    t1 = time.monotonic()
    print("TRUTH stall %.6f %.6f %.3f" % (t0, t1, (t1 - t0) * 1000), flush=True)


def busy_callback():
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.2:
        n += sum(range(100))
    t1 = time.monotonic()
    print("TRUTH stall %.6f %.6f %.3f" % (t0, t1, (t1 - t0) * 1000), flush=True)


async def ticker():
    while True:                   # a loop that iterates between the stalls
        await asyncio.sleep(0.01)


async def main():
    loop = asyncio.get_running_loop()
    tick = asyncio.create_task(ticker())
    print("READY", flush=True)
    for i in range(ROUNDS):
        await asyncio.sleep(0.5)
        loop.call_soon(late_callback if i >= LATE else busy_callback if BUSY else blocking_callback)
    await asyncio.sleep(0.3)
    tick.cancel()
    print("DONE", flush=True)


asyncio.run(main())
