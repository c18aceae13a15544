"""e2e target: an aiohttp app whose handler serialises a large document
with json.dumps on the loop (build_catalog_json, ~200-300 ms of CPU each).
GET /quit ends it.

    real_aiohttp.py json | healthy
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _truth  # noqa: E402

from aiohttp import web  # noqa: E402

MODE = sys.argv[1]
CATALOG = {"items": [{"id": i, "name": "item %d" % i, "tags": ["a", "b", "c"], "price": i * 1.5,
                      "stock": {"north": i % 7, "south": i % 11}} for i in range(15000)]}


def build_catalog_json():
    with _truth.timed("json"):
        return json.dumps(CATALOG, indent=1)  # the culprit: CPU-bound on the loop


async def work(request):
    if MODE == "json":
        return web.Response(text=str(len(build_catalog_json())))
    await asyncio.sleep(0.005)
    return web.Response(text="ok")


async def quit(request):
    asyncio.get_running_loop().call_later(0.1, stop.set)
    return web.Response(text="bye")


async def main():
    global stop
    stop = asyncio.Event()
    app = web.Application()
    app.router.add_get("/work", work)
    app.router.add_get("/quit", quit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = _truth.listening_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    _truth.announce(sock)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    _truth.exit_after(60)
    asyncio.run(main())
