"""e2e target: what a program sees of its thread-pool tasks' stacks and of
submit()'s errors, printed so that a run under the stalltrace hook can be
compared line for line with a plain run: the traceback of submit() after
shutdown, traceback.extract_stack() inside a task (ThreadPoolExecutor and
loop.run_in_executor), a task's exception as future.result() raises it, the
callbacks' view and the order of done-callbacks; pools whose thread-name
prefix the hook cannot make a queue name of still work."""
import asyncio
import concurrent.futures
import sys
import threading
import traceback


def stack_here():
    return [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_stack()]


def failing():
    raise ValueError("task failed")


def main():
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe")
    print("TASK-STACK", ex.submit(stack_here).result())
    try:
        ex.submit(failing).result()
    except ValueError:
        print("TASK-ERROR", traceback.format_exc())
    order = []
    f = ex.submit(lambda: 1)
    f.add_done_callback(lambda fut: order.append(("callback", stack_here()[-3:])))
    f.result()
    ex.shutdown(wait=True)
    print("CALLBACKS", order)
    print("DICT", sorted(vars(f)))
    try:
        ex.submit(stack_here)
    except RuntimeError:
        print("SUBMIT-ERROR", traceback.format_exc())

    async def in_loop():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, stack_here)
    print("EXECUTOR-STACK", asyncio.run(in_loop()))
    # Any object is a prefix to the pool (its threads are named "%s_%d");
    # the hook's own code fails on these, submit() must not.
    for prefix in (b"io", ["pool"]):
        odd = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=prefix)
        print("ODD-PREFIX", odd.submit(lambda: threading.current_thread().name).result())
        odd.shutdown(wait=True)
    print("DONE", sys.version_info[:2])


main()
