"""e2e target: a healthy asyncio program with a thread pool to spare.

A ThreadPoolExecutor of 8 workers gets 200 jobs of about 1 ms (short_job),
submitted through loop.run_in_executor in batches of BATCH with a short
pause between batches, so most workers idle most of the time and no job
ever waits long for a worker.  The pool is never saturated for anything
near the 50 ms threshold and the event loop never blocks.  Only about 4
workers are ever started (the executor reuses idle ones).  Ends after ~0.3 s.
"""

import asyncio
import concurrent.futures
import time

WORKERS = 8
JOBS = 200
BATCH = 4
PAUSE_S = 0.004
JOB_S = 0.001


def short_job(i):
    time.sleep(JOB_S)
    return i


async def main():
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    done = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as ex:
        for first in range(0, JOBS, BATCH):
            batch = [loop.run_in_executor(ex, short_job, i) for i in range(first, min(first + BATCH, JOBS))]
            done += await asyncio.gather(*batch)
            await asyncio.sleep(PAUSE_S)
    assert done == list(range(JOBS)), done[:10]
    print("HEALTHY-EXECUTOR-DONE jobs=%d elapsed_s=%.2f" % (JOBS, time.monotonic() - started), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
