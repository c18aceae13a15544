"""e2e target: FastAPI on uvicorn with a `def` endpoint that blocks.

GET /work sleeps SERVICE_S in time.sleep: Starlette runs a `def` endpoint
in anyio's worker threads, at most 40 at once (anyio's default
CapacityLimiter). With fewer than 40 clients at a time nothing ever waits
for a thread; with more, requests queue behind the limiter. GET /block is
an `async def` endpoint whose render_invoice calls time.sleep(0.2) on the
event loop (a "TRUTH block_ms=X" line each). GET /quit stops the server. Prints "READY port=N" once it listens on 127.0.0.1.
"""

import socket
import sys
import time

import fastapi
import uvicorn

SERVICE_S = 0.1

app = fastapi.FastAPI()
server = None


@app.get("/work")
def work():
    time.sleep(SERVICE_S)
    return {"slept_s": SERVICE_S}


def render_invoice():
    t0 = time.monotonic()
    time.sleep(0.2)  # the culprit: the loop serves nobody meanwhile
    print("TRUTH block_ms=%.1f" % ((time.monotonic() - t0) * 1e3), flush=True)
    return {"invoice": "ready"}


@app.get("/block")
async def block():
    return render_invoice()


@app.get("/quit")
async def quit_():
    server.should_exit = True
    return {"bye": True}


class Server(uvicorn.Server):
    """Says READY once it accepts connections, not before."""

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        print("READY port=%d" % sockets[0].getsockname()[1], flush=True)


def main():
    global server
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", backlog=512)
    server = Server(config)
    server.run(sockets=[sock])
    print("FASTAPI-DEF-DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
