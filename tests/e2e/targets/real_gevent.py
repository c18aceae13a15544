"""e2e target: a gevent WSGI server (gevent.pywsgi, monkey-patched) whose
handler derives a key with hashlib.pbkdf2_hmac on the hub's thread
(compute_digest, ~150 ms of CPU): every greenlet waits behind it.
GET /quit ends it.

    real_gevent.py digest | healthy
"""

from gevent import monkey

monkey.patch_all()

import hashlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

MODE = sys.argv[1]
ROUNDS = 200000


def compute_digest():
    with _truth.timed("digest"):
        return hashlib.pbkdf2_hmac("sha256", b"password", b"salt", ROUNDS).hex()  # the culprit


def app(environ, start_response):
    if environ["PATH_INFO"] == "/quit":
        gevent.spawn_later(0.1, server.stop)
        body = b"bye"
    elif MODE == "digest":
        body = compute_digest().encode()
    else:
        gevent.sleep(0.005)
        body = b"ok"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    _truth.exit_after(60)
    sock = _truth.listening_socket()
    server = WSGIServer(sock, app, log=None)
    _truth.announce(sock)
    server.serve_forever()
