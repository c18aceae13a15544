"""e2e target: asyncio.to_thread on the loop's default executor, over-subscribed.

The default executor has min(32, cpu_count + 4) workers; WORKERS + 2 calls
of time.sleep(1) go through asyncio.to_thread at once, so WORKERS start at
once and the last 2 wait ~1 s for a worker.  Prints the worker count.
"""

import asyncio
import os
import time

WORKERS = min(32, (os.cpu_count() or 1) + 4)
TASK_S = 1.0


async def main():
    started = time.monotonic()
    results = await asyncio.gather(*(asyncio.to_thread(time.sleep, TASK_S) for _ in range(WORKERS + 2)))
    assert results == [None] * (WORKERS + 2)
    print("TO-THREAD-DONE workers=%d tasks=%d elapsed_s=%.2f" % (WORKERS, WORKERS + 2, time.monotonic() - started),
          flush=True)


if __name__ == "__main__":
    asyncio.run(main())
