"""e2e target: a healthy asyncio service with an executor, under steady load.

For RUN_S seconds the loop keeps CONCURRENCY jobs in flight in a
ThreadPoolExecutor of WORKERS through loop.run_in_executor; each job sleeps
JOB_S (an I/O wait) and does a little Python work under the GIL, as a
database driver call would.  Workers outnumber the jobs in flight, so no job
waits for a worker, and the GIL is taken briefly: nothing is contended.
Prints "STEADY-DONE jobs=N max_latency_ms=X" (submission to result, the
loop's own measure).
"""

import asyncio
import concurrent.futures
import json
import time

WORKERS, CONCURRENCY = 8, 4
RUN_S, JOB_S = 3.0, 0.005


def job(i):
    time.sleep(JOB_S)
    return len(json.dumps({"id": i, "items": list(range(20))}))


async def client(loop, ex, deadline, latencies):
    i = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        await loop.run_in_executor(ex, job, i)
        latencies.append(time.monotonic() - t0)
        i += 1


async def main():
    loop = asyncio.get_running_loop()
    latencies = []
    deadline = time.monotonic() + RUN_S
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as ex:
        await asyncio.gather(*(client(loop, ex, deadline, latencies) for _ in range(CONCURRENCY)))
    print("STEADY-DONE jobs=%d max_latency_ms=%.1f" % (len(latencies), max(latencies) * 1e3), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
