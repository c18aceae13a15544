"""e2e target: a stalling asyncio parent that forks every way Python can.

The parent stalls 200 ms, starts a thread (so it forks while
multi-threaded), then: os.fork() with a child that stalls 150 ms; a
multiprocessing 'fork' child and a 'spawn' child that each stall 120 ms; and
20 subprocesses that only exec `true`. Prints FORKS-DONE at the end.
"""
import asyncio
import multiprocessing
import os
import subprocess
import sys
import threading
import time


def stall_loop(ms):
    async def handler():
        time.sleep(ms / 1000)

    async def main():
        for _ in range(10):
            await asyncio.sleep(0.005)
        await handler()
        for _ in range(10):
            await asyncio.sleep(0.005)

    asyncio.run(main())


def mp_child(ms):
    stall_loop(ms)


if __name__ == "__main__":
    stall_loop(200)
    ticker = threading.Thread(target=lambda: time.sleep(1.5), daemon=True)
    ticker.start()

    pid = os.fork()
    if pid == 0:
        stall_loop(150)
        os._exit(0)
    os.waitpid(pid, 0)

    for method in ("fork", "spawn"):
        ctx = multiprocessing.get_context(method)
        p = ctx.Process(target=mp_child, args=(120,))
        p.start()
        p.join()
        if p.exitcode != 0:
            sys.exit(1)

    for _ in range(20):
        subprocess.run(["true"], check=True)
    print("FORKS-DONE", flush=True)
