"""e2e target: a tornado app whose handler reads a backend's answer with a
blocking socket recv (fetch_quote), 0.2 s each. GET /quit ends it.

    real_tornado.py recv | healthy
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402

import tornado.gen  # noqa: E402
import tornado.httpserver  # noqa: E402
import tornado.ioloop  # noqa: E402
import tornado.web  # noqa: E402

MODE = sys.argv[1]
backend_port = _truth.slow_backend(0.2)


def fetch_quote():
    with _truth.timed("recv"):
        s = socket.create_connection(("127.0.0.1", backend_port))
        s.sendall(b"GET /quote HTTP/1.0\r\n\r\n")
        data = s.recv(4096)  # the culprit: blocks the loop until the backend answers
        s.close()
    return data


class Work(tornado.web.RequestHandler):
    async def get(self):
        if MODE == "recv":
            self.write(fetch_quote())
        else:
            await tornado.gen.sleep(0.005)
            self.write("ok")


class Quit(tornado.web.RequestHandler):
    def get(self):
        self.write("bye")
        tornado.ioloop.IOLoop.current().add_callback(tornado.ioloop.IOLoop.current().stop)


if __name__ == "__main__":
    _truth.exit_after(60)
    sock = _truth.listening_socket()
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/work", Work), ("/quit", Quit)]))
    server.add_sockets([sock])
    _truth.announce(sock)
    tornado.ioloop.IOLoop.current().start()
