"""Ground truth for the real-world targets: each blocking step times itself
and prints one line, so tests compare the report with what the program saw.

    with truth.timed("sleep"):          # prints "TRUTH sleep 250.12"
        time.sleep(0.25)
"""

import contextlib
import socket
import sys
import threading
import time


@contextlib.contextmanager
def timed(what):
    start = time.monotonic()
    try:
        yield
    finally:
        print("TRUTH %s %.3f" % (what, (time.monotonic() - start) * 1e3), flush=True)


def listening_socket():
    """A TCP socket bound to a free port on 127.0.0.1, listening."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def announce(sock):
    print("PORT %d" % sock.getsockname()[1], flush=True)


def slow_backend(delay_s):
    """A peer in a thread of its own that answers every line after delay_s:
    the remote service a handler calls. Returns its port."""
    srv = listening_socket()

    def serve(conn):
        with conn:
            f = conn.makefile("rb")
            for _ in f:
                time.sleep(delay_s)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def exit_after(seconds):
    """The process ends by itself even if the test's client never quits it."""
    def stop():
        time.sleep(seconds)
        print("TIMEOUT", flush=True)
        sys.stdout.flush()
        import os
        os._exit(3)
    threading.Thread(target=stop, daemon=True).start()
