"""echo_server.py - a CPython asyncio echo server for bench/run.py.

Prints its port, serves until stdin closes, then prints the CPU seconds it
used (user+system), so the runner gets CPU per message from the server side.
"""
import asyncio
import os
import sys


async def handle(reader, writer):
    while True:
        data = await reader.read(4096)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done
    t = os.times()
    print(f"{t.user + t.system:.4f}", flush=True)


asyncio.run(main())
