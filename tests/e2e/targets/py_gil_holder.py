"""e2e target: a CPU-bound thread starves an asyncio loop of the GIL.
The thread runs crunch (pure Python arithmetic) for CRUNCH_S; meanwhile the
loop runs ROUNDS callbacks in read_inputs, each making CALLS 1 ms select()
calls: the thread takes the GIL while the loop is in one, and the loop then
waits for it to come back (CPython's 5 ms switch interval). Prints "CRUNCHER tid=T" (its native id), then per
callback "STEP ms=X" (its duration on the program's clock), and "DONE".
"""
import asyncio
import select
import threading
import time

CRUNCH_S = 2.0
ROUNDS = 4
CALLS = 20
busy = threading.Event()


def crunch():
    print("CRUNCHER tid=%d" % threading.get_native_id(), flush=True)
    busy.set()
    end = time.monotonic() + CRUNCH_S
    x = 0
    while time.monotonic() < end:
        for i in range(1000):
            x += i * i
    return x


def read_inputs():
    t0 = time.monotonic()
    for _ in range(CALLS):
        select.select([], [], [], 0.001)
    print("STEP ms=%.1f" % ((time.monotonic() - t0) * 1e3), flush=True)


async def main():
    for _ in range(20):             # the loop turns a while first
        await asyncio.sleep(0.01)
    t = threading.Thread(target=crunch)
    t.start()
    while not busy.is_set():
        await asyncio.sleep(0.005)
    for _ in range(ROUNDS):
        read_inputs()
        await asyncio.sleep(0.05)
    while t.is_alive():
        await asyncio.sleep(0.05)
    print("DONE", flush=True)


asyncio.run(main())
