"""e2e target: CPU-bound Python threads fighting for the GIL.

THREADS threads run spin_cpu, a pure-Python arithmetic loop, for RUN_S
seconds each, all at once.  Only one can hold the GIL at a time, so the
others keep waiting for it (CPython waits in 5 ms timed condition waits and
asks the holder to drop it): about two thirds of the threads' time is GIL
wait.  No lock of the program's own, no work queue.  Ends after ~1 s.
"""

import threading
import time

THREADS = 3
RUN_S = 1.0


def spin_cpu(deadline, out, i):
    acc = 0
    n = 0
    while time.monotonic() < deadline:
        for k in range(1000):
            acc = (acc * 31 + k * n) % 1000003
        n += 1
    out[i] = n


def main():
    started = time.monotonic()
    deadline = started + RUN_S
    out = [0] * THREADS
    threads = [threading.Thread(target=spin_cpu, args=(deadline, out, i), name="spin-%d" % i)
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("GIL-DONE threads=%d rounds=%s elapsed_s=%.2f"
          % (THREADS, "/".join(map(str, out)), time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
