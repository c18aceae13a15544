"""e2e target: a healthy asyncio loop for 3 s, then it reports the CPU time
of the recorder's watchdog thread (named "stalltrace") from /proc."""
import asyncio
import os


async def main():
    loop = asyncio.get_running_loop()
    end = loop.time() + 3.0
    while loop.time() < end:
        await asyncio.gather(*(asyncio.sleep(0.001) for _ in range(20)))


asyncio.run(main())
ticks = None
for tid in os.listdir("/proc/self/task"):
    try:
        with open("/proc/self/task/%s/comm" % tid) as fh:
            if fh.read().strip() != "stalltrace":
                continue
        with open("/proc/self/task/%s/stat" % tid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])     # utime + stime
    except OSError:
        pass
print("WATCHDOG-TICKS %s HZ %d" % (ticks, os.sysconf("SC_CLK_TCK")), flush=True)
