"""e2e target: a healthy asyncio program that must produce NO stall.

For about two seconds it does thousands of short awaits: tasks that yield
with asyncio.sleep(0), timers of a millisecond, a producer/consumer queue,
bursts of small tasks and a local TCP echo exchange.  No step blocks and no
step runs long, so every loop iteration stays far below any threshold.
"""

import asyncio
import time

RUN_SECONDS = 2.0


async def yielder(deadline, counter):
    while time.monotonic() < deadline:
        await asyncio.sleep(0)
        counter["yields"] += 1


async def ticker(deadline, counter):
    while time.monotonic() < deadline:
        await asyncio.sleep(0.001)
        counter["ticks"] += 1


async def producer(queue, deadline):
    n = 0
    while time.monotonic() < deadline:
        for _ in range(20):
            await queue.put(n)
            n += 1
        await asyncio.sleep(0.002)
    await queue.put(None)


async def consumer(queue, counter):
    while True:
        item = await queue.get()
        if item is None:
            return
        counter["items"] += 1


async def tiny_task(i):
    await asyncio.sleep(0)
    return i * 2


async def task_bursts(deadline, counter):
    while time.monotonic() < deadline:
        results = await asyncio.gather(*(tiny_task(i) for i in range(50)))
        counter["tasks"] += len(results)
        await asyncio.sleep(0.005)


async def echo_handler(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line)
        await writer.drain()
    writer.close()


async def echo_client(port, deadline, counter):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < deadline:
        writer.write(b"ping\n")
        await writer.drain()
        await reader.readline()
        counter["echoes"] += 1
        await asyncio.sleep(0.001)
    writer.close()
    await writer.wait_closed()


async def main():
    counter = dict(yields=0, ticks=0, items=0, tasks=0, echoes=0)
    deadline = time.monotonic() + RUN_SECONDS
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = asyncio.Queue(maxsize=100)
    await asyncio.gather(
        yielder(deadline, counter),
        yielder(deadline, counter),
        ticker(deadline, counter),
        producer(queue, deadline),
        consumer(queue, counter),
        task_bursts(deadline, counter),
        echo_client(port, deadline, counter),
        echo_client(port, deadline, counter),
    )
    server.close()
    await server.wait_closed()
    print("py_healthy: " + ", ".join("%s=%d" % kv for kv in sorted(counter.items())), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
