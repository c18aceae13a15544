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
    """A peer in a process of its own (the remote service a handler calls)
    that answers every request after delay_s. Returns its port."""
    import subprocess
    code = ("import sys; sys.path.insert(0, %r); import _truth; _truth.serve_slowly(%r)"
            % (__import__("os").path.dirname(__import__("os").path.abspath(__file__)), delay_s))
    env = dict(__import__("os").environ)
    env.pop("LD_PRELOAD", None)  # not the program under test
    peer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    return int(peer.stdout.readline().split()[1])


def serve_slowly(delay_s):
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

    announce(srv)
    import os
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)   # the test reads the program's output to its end
    # It ends with the program it serves (the test stops the whole group).
    threading.Thread(target=lambda: (time.sleep(120), os._exit(0)), daemon=True).start()
    accept()


def exit_after(seconds):
    """The process ends by itself even if the test's client never quits it."""
    def stop():
        time.sleep(seconds)
        print("TIMEOUT", flush=True)
        sys.stdout.flush()
        import os
        os._exit(3)
    threading.Thread(target=stop, daemon=True).start()
