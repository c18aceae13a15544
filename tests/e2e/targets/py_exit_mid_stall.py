"""A loop thread (a selector loop in a daemon thread) is 0.35 s into a
blocking sleep when the main thread exits normally: that open iteration is
a stall. Prints how long it had run when exit began ("open ms=")."""
import selectors
import socket
import sys
import threading
import time

began = []


def loop():
    sel = selectors.EpollSelector()
    a, _ = socket.socketpair()
    sel.register(a, selectors.EVENT_READ)
    for _ in range(5):
        sel.select(0.01)
    began.append(time.monotonic())
    time.sleep(5.0)


threading.Thread(target=loop, daemon=True).start()
while not began:
    time.sleep(0.01)
time.sleep(0.35)
print("open ms=%.3f" % ((time.monotonic() - began[0]) * 1e3), flush=True)
sys.exit(0)
