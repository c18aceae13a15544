"""e2e target: a handler that does a blocking HTTP request with a timeout.

A helper thread serves HTTP on 127.0.0.1 (port 0) and answers /slow after
200 ms.  The asyncio handler ``fetch_profile_over_http`` calls
urllib.request with timeout=5: CPython then poll()s the socket before each
recv(), and that poll is where the loop spends the 200 ms.
"""

import os
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402

SLOW_DELAY = 0.2


def _http_backend(listener, connections):
    # A minimal HTTP/1.0-style server: blocking accept/recv/sleep/send, no
    # event-wait call, so this thread is not a loop thread of its own.
    for _ in range(connections):
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path == b"/slow":
                time.sleep(SLOW_DELAY)
            body = b"profile for " + path + b"\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )
    listener.close()


_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_listener.bind(("127.0.0.1", 0))
_listener.listen(4)
_base_url = "http://127.0.0.1:%d" % _listener.getsockname()[1]
# Never go through a proxy from the environment: the backend is local.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


async def fetch_profile_over_http():
    # the culprit: a blocking HTTP request on the event loop thread
    with _opener.open(_base_url + "/slow", timeout=5) as response:
        body = response.read()
    return b"slow " + body.strip()


if __name__ == "__main__":
    threading.Thread(target=_http_backend, args=(_listener, 1), name="http-backend",
                     daemon=True).start()
    _lineapp.run("py_http_timeout", fetch_profile_over_http)
