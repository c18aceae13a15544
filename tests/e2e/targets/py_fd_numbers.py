"""e2e target: the fd numbers a program gets after its loop ran, printed so
that a run under the recorder can be compared with a plain one.

Waits in select() on an eventfd a few times (as CPython's test_os
EventfdTests do) and runs an asyncio loop, closing both, then prints the
fd table and the numbers the next os.open and os.dup get: test_os's
closerange tests skip when those two are not consecutive.
"""
import asyncio
import os
import select


def table():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


async def ticks():
    for _ in range(5):
        await asyncio.sleep(0.005)


print("START", table())
fd = os.eventfd(0)
for _ in range(4):
    os.eventfd_write(fd, 1)
    select.select([fd], [], [], 0.1)
    os.eventfd_read(fd)
os.close(fd)
asyncio.run(ticks())
print("AFTER", table())
first = os.open(os.devnull, os.O_RDONLY)
second = os.dup(first)
print("NEXT", first, second)
