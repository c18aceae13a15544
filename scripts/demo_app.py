"""stalltrace demo: an asyncio HTTP service with one blocking handler.

A tiny HTTP/1.0 server (asyncio streams, 127.0.0.1, ephemeral port) and a
client in the same program.  The client sends 50 requests in waves of
concurrent requests.  Most routes answer at once; /users/<id>/profile calls
``load_user_profile``, which sleeps with the blocking time.sleep(0.3) instead
of ``await asyncio.sleep(0.3)``, and every other request in flight waits
behind it.  That is the stall stalltrace should point at.
"""

import asyncio
import json
import statistics
import time

WAVES = 5
REQUESTS_PER_WAVE = 10
PROFILE_WAVES = {1, 2, 4}   # the waves that include a profile request


def load_user_profile(user_id):
    # BUG: blocking call inside the event loop thread (should be awaited).
    time.sleep(0.3)
    return {"id": user_id, "name": "user%d" % user_id, "plan": "pro"}


async def handle_item(item_id):
    await asyncio.sleep(0.005)  # a well-behaved, non-blocking "database" call
    return {"id": item_id, "price": item_id * 3}


async def handle_profile(user_id):
    return load_user_profile(user_id)


async def route(path):
    parts = path.strip("/").split("/")
    if parts == ["health"]:
        return 200, {"ok": True}
    if len(parts) == 2 and parts[0] == "items" and parts[1].isdigit():
        return 200, await handle_item(int(parts[1]))
    if len(parts) == 3 and parts[0] == "users" and parts[2] == "profile" and parts[1].isdigit():
        return 200, await handle_profile(int(parts[1]))
    return 404, {"error": "not found"}


async def serve(reader, writer):
    try:
        request_line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        try:
            method, path, _ = request_line.decode("ascii").split(" ", 2)
        except ValueError:
            method, path = "GET", "/bad"
        status, body = await route(path) if method == "GET" else (405, {"error": "method"})
        payload = json.dumps(body).encode()
        writer.write(b"HTTP/1.0 %d X\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (status, len(payload)) + payload)
        await writer.drain()
    finally:
        writer.close()


async def fetch(port, path):
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.0\r\nHost: demo\r\n\r\n" % path.encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return path, status, (time.perf_counter() - started) * 1000


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("demo_app: serving on 127.0.0.1:%d, sending %d requests"
          % (port, WAVES * REQUESTS_PER_WAVE), flush=True)
    results = []
    for wave in range(WAVES):
        paths = ["/items/%d" % (wave * 100 + i) for i in range(REQUESTS_PER_WAVE - 2)]
        paths.append("/health")
        paths.append("/users/%d/profile" % (wave + 1) if wave in PROFILE_WAVES
                     else "/items/%d" % (wave * 100 + 99))
        results += await asyncio.gather(*(fetch(port, p) for p in paths))
        await asyncio.sleep(0.25)
    server.close()
    await server.wait_closed()

    fast = [ms for path, _, ms in results if "profile" not in path]
    delayed = [ms for ms in fast if ms > 100]
    bad = [r for r in results if r[1] != 200]
    print("demo_app: %d requests, %d errors; %d of the %d fast requests (~5 ms of work) "
          "took over 100 ms, up to %.0f ms: something blocks the event loop"
          % (len(results), len(bad), len(delayed), len(fast), max(fast)), flush=True)

if __name__ == "__main__":
    asyncio.run(main())
