"""e2e target: an asyncio program whose thread pool is exhausted.

The classic example: a ThreadPoolExecutor of 4 workers is given 10 tasks of
`time.sleep(2)` through `loop.run_in_executor`, all submitted at once and
gathered.  Four run, six queue; the pool is saturated for the first two
rounds (about 4 s) and half busy for the last one (2 s).  The event loop
itself never blocks: it waits in epoll the whole time.  Ends after ~6 s.
"""

import asyncio
import concurrent.futures
import time

WORKERS = 4
TASKS = 10
TASK_SECONDS = 2.0


def blocking_io_task(i):
    time.sleep(TASK_SECONDS)
    return i


async def main():
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as ex:
        results = await asyncio.gather(
            *(loop.run_in_executor(ex, blocking_io_task, i) for i in range(TASKS)))
    assert results == list(range(TASKS)), results
    print("EXECUTOR-DONE %d tasks in %.2f s" % (TASKS, time.monotonic() - started), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
