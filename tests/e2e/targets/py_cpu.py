"""e2e target: ~200 ms of pure Python CPU work in a coroutine.

``crunch_numbers`` computes a running checksum with no blocking call at all,
so the only way to see where the loop was is to sample it while it runs.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402

CPU_SECONDS = 0.2


def crunch_numbers(seconds):
    deadline = time.perf_counter() + seconds
    total = 0
    n = 0
    while True:
        for _ in range(2000):
            n += 1
            total = (total * 31 + n * n) % 1000003
        if time.perf_counter() >= deadline:
            return total


async def handle_cpu_request():
    checksum = crunch_numbers(CPU_SECONDS)  # the culprit: pure CPU on the loop
    return b"slow %d" % checksum


if __name__ == "__main__":
    _lineapp.run("py_cpu", handle_cpu_request)
