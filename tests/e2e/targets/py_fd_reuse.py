"""e2e target: a blocking recv on an fd the recorder once saw non-blocking.

The recorder stops timing calls on fds it has seen fail with EAGAIN while
set non-blocking (nonblock.h); it must forget an fd that is closed and whose
number comes back as a blocking socket (``reuse``), or that is switched back
to blocking (``flip``: socket.setblocking(True), an ioctl FIONBIO). Either
way the slow handler's recv blocks the loop ~200 ms and must be named.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402
from py_recv import _backend_addr, _late_backend, _listener  # noqa: E402  (the late peer)

MODE = sys.argv[1] if len(sys.argv) > 1 else "reuse"


def _says_eagain(sock):
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return
    raise RuntimeError("expected EAGAIN from an empty non-blocking socket")


def _ask_blocking(sock):
    """Connected, blocking: the request, then the recv that blocks ~200 ms."""
    with sock:
        sock.sendall(b"get profile\n")
        return b"slow " + sock.recv(64).strip()  # the culprit


async def reuse_then_block():
    a, b = socket.socketpair()
    _says_eagain(a)
    number = a.fileno()
    b.close()
    a.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # blocking, no timeout
    if sock.fileno() != number:
        print(f"py_fd_reuse: fd {number} not reused (got {sock.fileno()})", flush=True)
    sock.connect(_backend_addr)
    return _ask_blocking(sock)


async def flip_then_block():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(_backend_addr)
    _says_eagain(sock)
    sock.setblocking(True)
    return _ask_blocking(sock)


if __name__ == "__main__":
    threading.Thread(target=_late_backend, args=(_listener,), name="backend", daemon=True).start()
    handler = reuse_then_block if MODE == "reuse" else flip_then_block
    _lineapp.run("py_fd_reuse_" + MODE, handler)
