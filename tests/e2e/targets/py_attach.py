# py_attach.py - an asyncio program started without the recorder, for
# `stalltrace attach`: every 0.5 s a callback sleeps 200 ms; it prints its own timings.
import asyncio
import sys
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 24


def blocking_callback():
    t0 = time.monotonic()
    time.sleep(0.2)
    t1 = time.monotonic()
    print("TRUTH stall %.6f %.6f %.3f" % (t0, t1, (t1 - t0) * 1000), flush=True)


async def ticker():
    while True:                   # a loop that iterates between the stalls
        await asyncio.sleep(0.01)


async def main():
    loop = asyncio.get_running_loop()
    tick = asyncio.create_task(ticker())
    print("READY", flush=True)
    for _ in range(ROUNDS):
        await asyncio.sleep(0.5)
        loop.call_soon(blocking_callback)
    await asyncio.sleep(0.3)
    tick.cancel()
    print("DONE", flush=True)


asyncio.run(main())
