"""e2e target: one plain asyncio callback (refresh_cache) that calls
time.sleep(0.1) twice: a single 200 ms stall made of two sleeps."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402


def refresh_cache():
    with _truth.timed("callback"):
        time.sleep(0.1)   # the culprit, twice
        time.sleep(0.1)


async def main():
    for _ in range(20):
        await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_soon(refresh_cache)
    for _ in range(20):
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main())
