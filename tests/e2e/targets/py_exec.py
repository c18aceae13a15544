"""e2e target: a process that stalls, then execs itself into a second image
that stalls again: each image must get a dump of its own (same pid)."""
import asyncio
import os
import sys
import time


async def first_image():
    for _ in range(10):
        await asyncio.sleep(0.005)
    time.sleep(0.1)
    for _ in range(10):
        await asyncio.sleep(0.005)


async def second_image():
    for _ in range(10):
        await asyncio.sleep(0.005)
    time.sleep(0.15)
    for _ in range(10):
        await asyncio.sleep(0.005)


if len(sys.argv) > 1 and sys.argv[1] == "second":
    asyncio.run(second_image())
    print("EXEC-DONE", flush=True)
else:
    asyncio.run(first_image())
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), "second"])
