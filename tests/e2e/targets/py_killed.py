"""e2e target: a stall, then a process that never ends on its own.

``block_then_continue`` blocks the loop with time.sleep(0.2); once the loop
has gone round a few more times (so the stall is over and recorded), it
prints "STALLED-DONE pid=<pid>" and keeps the loop running forever with short
timers.  The test kills it with SIGKILL.  A safety limit ends it after 60 s
should nobody do so.
"""

import asyncio
import os
import sys
import time

SAFETY_LIMIT_S = 60


async def block_then_continue():
    time.sleep(0.2)  # the culprit: blocks the event loop


async def main():
    await asyncio.sleep(0.05)
    await block_then_continue()
    for _ in range(10):  # a few more loop iterations after the stall
        await asyncio.sleep(0.01)
    print("STALLED-DONE pid=%d" % os.getpid(), flush=True)
    deadline = time.monotonic() + SAFETY_LIMIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print("py_killed: nobody killed me, exiting", file=sys.stderr, flush=True)
    sys.exit(3)


if __name__ == "__main__":
    asyncio.run(main())
