"""e2e target: a uvloop line server for `stalltrace attach` (test_attach_real.py).

Run with Debian's python3 (python3-uvloop). Serves lines on 127.0.0.1:0 and
prints "PORT N": "fast" is answered at once; "slow" by handle_slow_request,
whose time.sleep(0.2) blocks the loop; its reply "slow MS" is the program's
own measure of that sleep. "quit" is answered "bye" and ends the program.
"""

import asyncio
import sys
import time

import uvloop


def handle_slow_request():
    started = time.monotonic()
    time.sleep(0.2)  # the culprit: blocks the event loop
    return b"slow %.1f" % ((time.monotonic() - started) * 1000)


async def serve(reader, writer, done):
    while True:
        line = (await reader.readline()).strip()
        if not line:
            break
        if line == b"slow":
            reply = handle_slow_request()
        elif line == b"quit":
            reply = b"bye"
            done.set()
        else:
            reply = line
        writer.write(reply + b"\n")
        await writer.drain()
    writer.close()


async def main():
    done = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: serve(r, w, done), "127.0.0.1", 0)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    server.close()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
    sys.stdout.flush()
