"""e2e target: the program takes the recorder's sampling signal for itself
halfway through a CPU-bound stall; its handler must run, and sampling must
step aside from then on."""
import asyncio
import os
import signal

got = []


def crunch():
    t = 0
    for i in range(2_000_000):
        t += i * i % 7
    return t


async def main():
    for _ in range(20):
        await asyncio.sleep(0.005)
    crunch()
    signal.signal(signal.SIGRTMAX - 4, lambda s, f: got.append(s))
    crunch()
    os.kill(os.getpid(), signal.SIGRTMAX - 4)
    for _ in range(20):
        await asyncio.sleep(0.005)
    print("HANDLER-RAN" if got else "HANDLER-MISSING", len(got), flush=True)


asyncio.run(main())
