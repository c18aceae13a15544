"""e2e target for the dump-file tests: an asyncio loop that blocks once.

    py_dumpfile.py STALL_MS RUN_S [GO_FILE]

Prints "PID n" first; if GO_FILE is given, waits (in 10 ms sleeps, below any
threshold, before any loop runs) until it exists. Then runs the default
asyncio loop for RUN_S seconds, one callback of which calls
time.sleep(STALL_MS / 1000) and prints "STALL-MS x" as measured around it.
"""

import asyncio
import os
import sys
import time


def blocking_step():
    t0 = time.monotonic()
    time.sleep(STALL_MS / 1000.0)  # the culprit: blocks the event loop
    print("STALL-MS %.1f" % ((time.monotonic() - t0) * 1000.0), flush=True)


async def main():
    loop = asyncio.get_running_loop()
    loop.call_later(RUN_S / 2, blocking_step)
    end = time.monotonic() + RUN_S
    while time.monotonic() < end:
        await asyncio.sleep(0.005)
    print("DONE", flush=True)


if __name__ == "__main__":
    STALL_MS = float(sys.argv[1])
    RUN_S = float(sys.argv[2])
    print("PID %d" % os.getpid(), flush=True)
    if len(sys.argv) > 3:
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.01)
    asyncio.run(main())
