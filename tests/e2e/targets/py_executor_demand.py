"""e2e target: a ThreadPoolExecutor given blocking tasks, C at a time.

usage: py_executor_demand.py WORKERS CONCURRENCY TASKS TASK_S

The main thread submits TASKS tasks of time.sleep(TASK_S) to a
ThreadPoolExecutor(max_workers=WORKERS), never more than CONCURRENCY in
flight. The executor starts a thread only when a submission finds none
idle, so with CONCURRENCY below WORKERS it starts about CONCURRENCY threads,
keeps them all busy, and no task ever waits for one; with CONCURRENCY above
WORKERS tasks queue. Prints the ground truth it measured: each task's
latency from submission to its result (p50, p99, max) and how long the
tasks waited before a worker started them (the latency minus their run).
"""

import concurrent.futures
import sys
import threading
import time


def main():
    workers, concurrency, tasks, task_s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    slots = threading.BoundedSemaphore(concurrency)
    latencies, waits, lock = [], [], threading.Lock()

    def blocking_task(submitted):
        began = time.monotonic()
        time.sleep(task_s)
        with lock:
            waits.append(began - submitted)
        return submitted

    def done(fut):
        with lock:
            latencies.append(time.monotonic() - fut.result())
        slots.release()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        for _ in range(tasks):
            slots.acquire()
            ex.submit(blocking_task, time.monotonic()).add_done_callback(done)
    latencies.sort()
    waits.sort()
    print("EXECUTOR-DEMAND-DONE tasks=%d elapsed_s=%.3f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f wait_max_ms=%.1f "
          "threads=%d" % (len(latencies), time.monotonic() - started, latencies[len(latencies) // 2] * 1e3,
                          latencies[max(0, -(-len(latencies) * 99 // 100) - 1)] * 1e3, latencies[-1] * 1e3,
                          waits[-1] * 1e3, len(ex._threads)), flush=True)


if __name__ == "__main__":
    main()
