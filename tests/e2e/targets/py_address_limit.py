"""e2e target: four threads alive at once (a Barrier), then an asyncio loop
blocked ~120 ms by time.sleep, for runs under a low address-space limit
(ulimit -v). Prints how many threads started, the stall it timed and its
peak address-space size, which the test uses to choose the limit."""
import asyncio
import re
import threading
import time

THREADS = 4
barrier = threading.Barrier(THREADS + 1)
started = 0
errors = []


def hold():
    barrier.wait(10)


threads = []
for _ in range(THREADS):
    try:
        t = threading.Thread(target=hold)
        t.start()
        threads.append(t)
        started += 1
    except RuntimeError as e:
        errors.append(str(e))
if started == THREADS:
    barrier.wait(10)
else:
    barrier.abort()
for t in threads:
    t.join()
print("STARTED %d %s" % (started, "; ".join(errors)), flush=True)


async def main():
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    time.sleep(0.12)                    # the stall
    print("STALL-MS %.1f" % ((time.monotonic() - t0) * 1000), flush=True)
    await asyncio.sleep(0.05)


asyncio.run(main())
with open("/proc/self/status") as fh:
    print("VMPEAK-KB %s" % re.search(r"VmPeak:\s+(\d+)", fh.read()).group(1), flush=True)
