"""e2e target: a handler that does a blocking socket.recv on a late peer.

A helper thread in the same process plays a backend that answers 200 ms
after it gets a request.  The asyncio handler ``query_backend_blocking``
talks to it over a plain blocking socket (no timeout), so the event loop sits
in recv() for ~200 ms.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402

BACKEND_DELAY = 0.2


def _late_backend(listener):
    # Serves exactly one connection: the one slow request.  Uses blocking
    # accept/recv/sleep only (no event-wait call), so this thread is not a
    # loop thread of its own.
    conn, _ = listener.accept()
    with conn:
        conn.recv(64)
        time.sleep(BACKEND_DELAY)
        conn.sendall(b"profile-data\n")
    listener.close()


_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_listener.bind(("127.0.0.1", 0))
_listener.listen(1)
_backend_addr = _listener.getsockname()


async def query_backend_blocking():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # blocking, no timeout
    try:
        sock.connect(_backend_addr)
        sock.sendall(b"get profile\n")
        data = sock.recv(64)  # the culprit: blocks the event loop ~200 ms
    finally:
        sock.close()
    return b"slow " + data.strip()


if __name__ == "__main__":
    threading.Thread(target=_late_backend, args=(_listener,), name="backend", daemon=True).start()
    _lineapp.run("py_recv", query_backend_blocking)
