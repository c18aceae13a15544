"""Shared scaffolding for the asyncio end-to-end targets.

A line-based TCP server and its clients run in the same process, on the same
event loop.  The server binds 127.0.0.1 on an ephemeral port (port 0) and
never touches any other address.  Each line is a request: ``fast`` is
answered at once, ``slow`` is answered by the target's own slow handler (the
coroutine the test expects to find in the stall's stack).  One client sends a
single ``slow`` request while the others keep the loop busy with fast ones,
so the stall happens in the middle of real traffic.
"""

import asyncio
import sys
import time

FAST_CLIENTS = 20
FAST_REQUESTS_PER_CLIENT = 10


async def _serve_connection(reader, writer, slow_handler):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip() == b"slow":
                reply = await slow_handler()
            else:
                reply = b"fast"
            writer.write(reply + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def _client(port, commands, latencies, start_delay=0.0):
    if start_delay:
        await asyncio.sleep(start_delay)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for command in commands:
            started = time.perf_counter()
            writer.write(command + b"\n")
            await writer.drain()
            reply = await reader.readline()
            if not reply:
                raise RuntimeError("server closed the connection")
            latencies.append((command, time.perf_counter() - started))
            await asyncio.sleep(0.02)
    finally:
        writer.close()
        await writer.wait_closed()


async def _main(name, slow_handler):
    async def handler(reader, writer):
        await _serve_connection(reader, writer, slow_handler)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    latencies = []
    started = time.perf_counter()
    clients = [
        _client(port, [b"fast"] * FAST_REQUESTS_PER_CLIENT, latencies)
        for _ in range(FAST_CLIENTS)
    ]
    # The slow request arrives while the fast clients are still going.
    clients.append(_client(port, [b"fast", b"slow", b"fast"], latencies, 0.1))
    await asyncio.gather(*clients)
    server.close()
    await server.wait_closed()
    slow = [t for c, t in latencies if c == b"slow"]
    print(
        f"{name}: {len(latencies)} requests in {time.perf_counter() - started:.2f} s, "
        f"slow request {slow[0] * 1000:.0f} ms",
        flush=True,
    )


def run(name, slow_handler, use_uvloop=False):
    """Run the server and its clients to completion, then return."""
    if use_uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_main(name, slow_handler))
    sys.stdout.flush()
