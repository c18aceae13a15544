"""echo_client.py - drives bench/echo_server.py: N connections, each sending
M small messages one at a time and waiting for the echo. Prints msgs/s."""
import socket
import sys
import threading
import time

port, conns, msgs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def worker():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(msgs):
        s.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(s.recv(4096))
    s.close()


t0 = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{conns * msgs / (time.perf_counter() - t0):.1f}")
