"""e2e target: after an asyncio loop has run, signal.pause() waits for a
0.5 s alarm; it must return only when the alarm came (not cut short by the
recorder's sampling signal). Exits 0 when it did."""

import asyncio
import signal
import sys
import time


async def main():
    for _ in range(3):
        await asyncio.sleep(0.01)

asyncio.run(main())
fired = []
signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))
start = time.monotonic()
signal.setitimer(signal.ITIMER_REAL, 0.5)
signal.pause()
took = time.monotonic() - start
print("pause: returned after %.0f ms, alarm %s" % (took * 1e3, "fired" if fired else "did not fire"))
sys.exit(0 if fired and took >= 0.45 else 1)
