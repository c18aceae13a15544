"""cpustall.py - CPU-bound stalls on an asyncio loop, for the first-sample
latency in bench/run.py: N callbacks each spin for SPIN_MS without making a
call, a short idle between them."""
import asyncio
import sys
import time

n, spin_ms = int(sys.argv[1]), float(sys.argv[2])


def spin():
    end = time.perf_counter() + spin_ms / 1000
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


async def main():
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await asyncio.sleep(0.03)
        loop.call_soon(spin)
    await asyncio.sleep(0.03)


asyncio.run(main())
