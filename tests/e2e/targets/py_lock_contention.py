"""e2e target: Python threads contending for one threading.Lock.

THREADS threads each enter `with lock:` ROUNDS times in update_shared_state
and hold the lock about HOLD_S (a time.sleep inside the critical section,
standing for slow work done under a lock).  While one holds it the others
wait, each wait far longer than the 50 ms threshold.  There is no work
queue here, so no thread pool: only a contended lock.  Ends after ~1.2 s.
"""

import threading
import time

THREADS = 4
ROUNDS = 3
HOLD_S = 0.1

lock = threading.Lock()
shared = {"updates": 0}


def update_shared_state():
    with lock:
        value = shared["updates"]
        time.sleep(HOLD_S)
        shared["updates"] = value + 1


def contender():
    for _ in range(ROUNDS):
        update_shared_state()


def main():
    started = time.monotonic()
    threads = [threading.Thread(target=contender, name="contender-%d" % i) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared["updates"] == THREADS * ROUNDS, shared
    print("LOCK-DONE updates=%d elapsed_s=%.2f" % (shared["updates"], time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
