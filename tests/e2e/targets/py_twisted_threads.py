"""e2e target: a Twisted web server whose handler blocks in a thread.

GET /work runs time.sleep(SERVICE_S) through deferToThread, in the
reactor's thread pool, which starts threads on demand up to 10 (Twisted's
default, reactor.suggestThreadPoolSize). With up to 10 clients at a time no
request waits for a thread. GET /quit stops the reactor. Prints
"READY port=N" once it listens on 127.0.0.1.
"""

import json
import time

from twisted.internet import reactor, threads
from twisted.web import resource, server

SERVICE_S = 0.1


def blocking_work():
    time.sleep(SERVICE_S)
    return {"slept_s": SERVICE_S}


class Work(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        d = threads.deferToThread(blocking_work)

        def reply(result):
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(result).encode())
            request.finish()
        d.addCallback(reply)
        return server.NOT_DONE_YET


class Quit(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        reactor.callLater(0.05, reactor.stop)
        return b"{}"


def main():
    root = resource.Resource()
    root.putChild(b"work", Work())
    root.putChild(b"quit", Quit())
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    print("READY port=%d" % port.getHost().port, flush=True)
    reactor.run()
    print("TWISTED-THREADS-DONE", flush=True)


if __name__ == "__main__":
    main()
