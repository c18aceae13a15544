"""executor.py - ThreadPoolExecutor submit+result round trips, one at a time,
for bench/run.py. Prints "round_trips_per_s cpu_us_per_round_trip" (CPU of
the whole process: the submitting thread and the workers)."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def job():
    return None


with ThreadPoolExecutor(max_workers=4) as pool:
    for _ in range(200):                     # start the workers, warm up
        pool.submit(job).result()
    c0, t0 = os.times(), time.perf_counter()
    for _ in range(n):
        pool.submit(job).result()
    t1, c1 = time.perf_counter(), os.times()
cpu = (c1.user + c1.system) - (c0.user + c0.system)
print(f"{n / (t1 - t0):.1f} {cpu * 1e6 / n:.3f}")
