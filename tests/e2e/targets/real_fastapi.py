"""e2e target: a FastAPI app on uvicorn with uvloop (Debian's packages).

    real_fastapi.py sleep     # async def load_report calls time.sleep(0.25)
    real_fastapi.py requests  # async def fetch_profile does a blocking requests.get
                              # of a backend that answers after 0.3 s
    real_fastapi.py healthy   # async def awaits asyncio.sleep(0.005): never blocks

GET /quit ends the server. Every blocking step prints a TRUTH line.
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402

import requests  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

MODE = sys.argv[1]
app = FastAPI()
server = None
backend_port = _truth.slow_backend(0.3) if MODE == "requests" else 0


def load_report():
    with _truth.timed("sleep"):
        time.sleep(0.25)  # the culprit: blocks the loop for every request in flight
    return {"report": "ready"}


def fetch_profile():
    with _truth.timed("requests"):
        r = requests.get("http://127.0.0.1:%d/profile" % backend_port, timeout=10)
    return {"profile": r.text}


@app.get("/work")
async def work():
    if MODE == "sleep":
        return load_report()
    if MODE == "requests":
        return fetch_profile()
    await asyncio.sleep(0.005)
    return {"ok": True}


@app.get("/quit")
async def quit():
    server.should_exit = True
    return {"bye": True}


if __name__ == "__main__":
    _truth.exit_after(60)
    sock = _truth.listening_socket()
    config = uvicorn.Config(app, loop="uvloop", log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    _truth.announce(sock)
    server.run(sockets=[sock])
