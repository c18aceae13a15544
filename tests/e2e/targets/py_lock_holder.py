"""e2e target: an asyncio loop whose callback needs a threading.Lock that a
worker thread keeps across a 300 ms time.sleep in flush_cache.
ROUNDS times: the worker takes the lock and sleeps; once it holds it the
loop runs read_cache, which blocks on the lock until the worker lets go.
Prints its own measures: "HOLDER tid=T" once, then per round
"WAIT waited_ms=X unlocked_after_ms=Y" (the loop's wait on the lock; the
worker's release that many ms after the wait began), and "DONE".
"""
import asyncio
import threading
import time

ROUNDS = 3
HOLD_S = 0.3

lock = threading.Lock()
go = threading.Event()
held = threading.Event()
released_at = [0.0]


def flush_cache():
    with lock:
        held.set()
        time.sleep(HOLD_S)
        released_at[0] = time.monotonic()


def worker():
    print("HOLDER tid=%d" % threading.get_native_id(), flush=True)
    for _ in range(ROUNDS):
        go.wait()
        go.clear()
        flush_cache()


def read_cache():
    t0 = time.monotonic()
    with lock:
        t1 = time.monotonic()
    print("WAIT waited_ms=%.1f unlocked_after_ms=%.1f" % ((t1 - t0) * 1e3, (released_at[0] - t0) * 1e3),
          flush=True)


async def main():
    t = threading.Thread(target=worker, name="worker")
    t.start()
    for _ in range(20):             # the loop turns a while first
        await asyncio.sleep(0.01)
    for _ in range(ROUNDS):
        go.set()
        while not held.is_set():
            await asyncio.sleep(0.005)
        held.clear()
        await asyncio.sleep(0.03)
        read_cache()
        for _ in range(10):
            await asyncio.sleep(0.02)
    t.join()
    print("DONE", flush=True)


asyncio.run(main())
