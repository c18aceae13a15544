"""e2e target: a Twisted web server (twisted.web, the epoll reactor) whose
resource renders a page after a blocking time.sleep(0.2) in
render_inventory. GET /quit ends it.

    real_twisted.py sleep | healthy
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402

from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402

MODE = sys.argv[1]


def render_inventory():
    with _truth.timed("sleep"):
        time.sleep(0.2)  # the culprit: blocks the reactor
    return b"inventory"


class Work(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.path == b"/quit":
            reactor.callLater(0.1, reactor.stop)
            return b"bye"
        if MODE == "sleep":
            return render_inventory()
        reactor.callLater(0.005, lambda: (request.write(b"ok"), request.finish()))
        return server.NOT_DONE_YET


if __name__ == "__main__":
    _truth.exit_after(60)
    sock = _truth.listening_socket()
    sock.setblocking(False)
    port = reactor.adoptStreamPort(sock.fileno(), 2, server.Site(Work()))  # AF_INET
    sock.close()
    _truth.announce(port.socket)
    reactor.run()
