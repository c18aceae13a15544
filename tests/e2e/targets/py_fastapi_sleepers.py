"""e2e target: a healthy FastAPI service whose `def` endpoint sleeps.

FastAPI runs a `def` endpoint in anyio's worker threads (up to 40), so
SLEEP_S of time.sleep in `profile` blocks a worker, never the event loop.
The workers sleep nearly all the time and take the GIL only briefly when they
wake: that is no lock contention. uvicorn binds 127.0.0.1 port 0; prints
"LISTENING port=N" once serving and stops on SIGTERM or after SECONDS
(argv[1]).
Run with Debian's /usr/bin/python3 (fastapi, uvicorn).
"""

import asyncio
import sys
import time

import uvicorn
from fastapi import FastAPI

SLEEP_S = 0.05

app = FastAPI()


@app.get("/profile")
def profile():
    time.sleep(SLEEP_S)
    return {"ok": True}


async def main(seconds):
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print("LISTENING port=%d" % port, flush=True)
    # uvicorn's own SIGTERM handler sets should_exit and ends serve().
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        server.should_exit = True
        await task
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30))
