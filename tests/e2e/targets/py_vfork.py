"""e2e target: CPython's subprocess (vfork on Linux) before and during an
asyncio loop, then a 200 ms stall, then SIGKILL of itself: the parent's
recording must survive its vforked children (neither deleted while empty
nor marked complete by their exec) and report the stall, incomplete."""

import asyncio
import os
import signal
import subprocess
import time

subprocess.run(["true"], check=True)  # nothing recorded yet: the dump is still empty


async def main():
    for _ in range(5):
        await asyncio.sleep(0.01)
    subprocess.run(["true"], check=True)
    for _ in range(5):
        await asyncio.sleep(0.01)
    time.sleep(0.2)  # the stall, after the children
    await asyncio.sleep(0.01)
    print("VFORK-DONE", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
