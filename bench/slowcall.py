"""slowcall.py - the cost of one stack capture, for bench/run.py.

A started thread, some 15 Python frames deep (about 30 frames with the
native ones below them), sleeps 5 ms N times. With the threshold at 1 ms
every sleep is a slow call, captured with its stack and recorded; with a
huge threshold none is. The difference in the thread's CPU time per call is
what one capture and its record cost. Prints "cpu_us_per_call".
"""
import sys
import threading
import time

n, depth = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 15
result = []


def dive(level):
    if level:
        return dive(level - 1)
    time.sleep(0.005)                       # warm: the first capture in a thread is dearer
    c0 = time.thread_time()
    for _ in range(n):
        time.sleep(0.005)
    result.append((time.thread_time() - c0) * 1e6 / n)


t = threading.Thread(target=dive, args=(depth,))
t.start()
t.join()
print(f"{result[0]:.3f}")
