"""A live asyncio line server for `stalltrace top` and `stalltrace metrics`
(tests/e2e/test_live.py): it answers each line with "ok", blocks the loop
for 200 ms in time.sleep for a line "slow" (the stall the live view must
show while it runs), and stops on a line "quit", or after SECONDS (argv[1],
default 30) in case the test never says so.

Prints "LISTENING port=N pid=N" once ready and "DONE" when it stops.
"""

import asyncio
import os
import sys
import time


quit_requested = None


async def handle(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip() == b"quit":
                quit_requested.set()
            if line.strip() == b"slow":
                time.sleep(0.2)  # blocks the event loop: a stall
            writer.write(b"ok\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(seconds):
    global quit_requested
    quit_requested = asyncio.Event()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("LISTENING port=%d pid=%d" % (port, os.getpid()), flush=True)
    async with server:
        try:
            await asyncio.wait_for(quit_requested.wait(), seconds)
        except asyncio.TimeoutError:
            pass
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))
