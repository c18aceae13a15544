"""stalltrace's CPython start-up hook: times the queues of Python thread pools.

`stalltrace run` puts this directory first on PYTHONPATH (unless given
--no-python-hook), so CPython imports this module at start-up as
`sitecustomize`.  It then does two things and nothing else:

1. Runs the sitecustomize it hides (the next one on sys.path, e.g. Debian's
   /etc/python3.11/sitecustomize.py), which then becomes sys.modules
   ["sitecustomize"]: chained, never replaced.
2. When the recorder is loaded (its stalltrace_mark_* symbols are in the
   process) and the interpreter is CPython 3.8-3.13, it waits for
   concurrent.futures.thread to be imported by the program (nothing is
   imported early) and then wraps _WorkItem.__init__ and
   Future.set_running_or_notify_cancel, and adds a first done-callback to
   each executor future, so that each task is marked submitted (before it
   is queued), started and finished (or discarded when it was cancelled
   before it started) through the annotation API (include/stalltrace/
   annotate.h), with no frame of ours on a task's stack or in a traceback
   submit() raises.  loop.run_in_executor and asyncio.to_thread go through
   submit, so they are covered.  The same is done, when the program imports
   them, for anyio's worker threads (anyio.to_thread.run_sync, which is how
   FastAPI and Starlette run `def` endpoints: a task is submitted when it
   starts waiting for the CapacityLimiter) and for Twisted's thread pools
   (ThreadPool.callInThreadWithCallback, behind deferToThread).

The queue is named after the executor's thread_name_prefix (by default
"ThreadPoolExecutor-N"; "asyncio" for an event loop's default executor),
"anyio", or the Twisted pool's name, followed by "#KIND:MAX": what the pool
is and the most threads it may start (max_workers, the limiter's
total_tokens, the Twisted pool's max), which the report turns into
pools[].kind and max_threads and strips from the name.  Saturation needs
that maximum and the queue waits: these pools start threads on demand, so
all of their threads busy is not all of them they may have.

The task id is the id() of an executor's future, a counter's value
elsewhere.  Return values, exceptions, cancellation, thread names and the
order of everything are those of the unpatched code, even when the hook's
own code fails (the task then goes unmarked): the wrappers only add the
marks around it (an exception's traceback from an anyio or Twisted task
has one more frame, the wrapper's).
"""

import itertools
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_NAME_MAX = 47             # bytes of a queue name the recorder keeps
_task_ids = itertools.count(1)   # next() is atomic under the GIL


def _marks():
    """The recorder's four mark functions, or None when it is not loaded."""
    if os.environ.get("STALLTRACE_DISABLE") or "libstalltrace" not in os.environ.get("LD_PRELOAD", ""):
        return None
    if sys.implementation.name != "cpython" or not ((3, 8) <= sys.version_info[:2] <= (3, 13)):
        return None
    try:
        import ctypes
        lib = ctypes.PyDLL(None)   # the process's global symbols; keeps the GIL
        fns = tuple(getattr(lib, "stalltrace_mark_" + n)
                    for n in ("submitted", "started", "finished", "discarded"))
    except (ImportError, OSError, AttributeError):
        return None
    for f in fns:
        f.argtypes = (ctypes.c_char_p, ctypes.c_uint64)
        f.restype = None
    return fns


def _queue_name(label, kind, max_threads):
    """b"label#kind:max", the label cut so that the suffix always fits."""
    suffix = "#%s:%s" % (kind, max_threads if isinstance(max_threads, int) and max_threads > 0 else "")
    room = _NAME_MAX - len(suffix)
    return label.encode("utf-8", "replace")[:room] + suffix.encode("ascii")


def _same_face(new, old):
    new.__name__, new.__qualname__, new.__doc__ = old.__name__, old.__qualname__, old.__doc__
    new.__module__, new.__wrapped__, new._stalltrace = old.__module__, old, True


def _marked_call(marks, queue, key, func, ran=None):
    """func, marking the task started and finished around it (in the worker);
    appends to `ran` when it starts."""
    _, started, finished, _ = marks

    def stalltrace_task(*args, **kwargs):
        if ran is not None:
            ran.append(True)
        started(queue, key)
        try:
            return func(*args, **kwargs)
        finally:
            finished(queue, key)
    return stalltrace_task


def _patch_executor(module, marks):
    """No frame of ours on a task's stack or in what submit() raises: the
    executor is read from submit's frame when it makes the work item, the
    start from the future's state change, the end from the future's first
    done-callback (which a cancel also runs)."""
    submitted, started, finished, discarded = marks
    executor, work_item, future_class = module.ThreadPoolExecutor, module._WorkItem, module._base.Future
    if getattr(work_item.__init__, "_stalltrace", False):
        return
    orig_init, orig_set_running = work_item.__init__, future_class.set_running_or_notify_cancel
    submit_code = executor.submit.__code__
    getframe = sys._getframe
    cancelled_states = (module._base.CANCELLED, module._base.CANCELLED_AND_NOTIFIED)
    in_flight = {}           # id(future) -> (queue, task id), submitted and not done
    names = {}

    def queue_name(ex):
        prefix = getattr(ex, "_thread_name_prefix", None) or "ThreadPoolExecutor"
        most = getattr(ex, "_max_workers", None)
        name = names.get((prefix, most))
        if name is None:
            name = names[(prefix, most)] = _queue_name(prefix, "cpython-executor", most)
        return name

    # Whatever our own code meets (a prefix that is no str, a subclass's
    # odd attributes), the program's call goes on as without us: the task
    # is then left unmarked, never made to fail or to log an error.
    def done(future):
        try:
            entry = in_flight.pop(id(future), None)
            if entry is not None:
                # Read without the future's lock: it is final by now.
                (discarded if future._state in cancelled_states else finished)(*entry)
        except Exception:
            pass

    def mark_submitted(work, caller):
        # submit(self, fn, /, ...); 3.8's is submit(*args, **kwargs).
        frame_locals = caller.f_locals
        ex = frame_locals["self"] if "self" in frame_locals else frame_locals["args"][0]
        future = work.future
        entry = (queue_name(ex), id(future))
        # The future is new and not yet shared: no lock needed to add the
        # first callback, which then runs before any of the program's.
        future._done_callbacks.append(done)
        in_flight[id(future)] = entry
        submitted(*entry)      # before submit queues the work item

    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        try:
            caller = getframe(1)
            if caller.f_code is submit_code:
                mark_submitted(self, caller)
        except Exception:
            pass

    def set_running_or_notify_cancel(self):
        running = orig_set_running(self)
        if running:
            try:
                entry = in_flight.get(id(self))
                if entry is not None:
                    started(*entry)
            except Exception:
                pass
        return running

    _same_face(__init__, orig_init)
    _same_face(set_running_or_notify_cancel, orig_set_running)
    work_item.__init__ = __init__
    future_class.set_running_or_notify_cancel = set_running_or_notify_cancel


def _patch_anyio(module, marks):
    """anyio's asyncio backend: a task waits first for a token of its
    CapacityLimiter (40 by default), then for its worker thread."""
    submitted, _, _, discarded = marks
    backend = getattr(module, "AsyncIOBackend", None)     # anyio 4: a class
    owner = backend if backend is not None else module
    orig = getattr(owner, "run_sync_in_worker_thread")
    if getattr(orig, "_stalltrace", False):
        return
    default_limiter = owner.current_default_thread_limiter

    async def run_sync_in_worker_thread(func, *args, **kwargs):
        try:
            limiter = kwargs.get("limiter") or default_limiter()
            total = getattr(limiter, "total_tokens", None)
            queue = _queue_name("anyio", "anyio", total if isinstance(total, int) else None)
            key = next(_task_ids)
            ran = []
            task = _marked_call(marks, queue, key, func, ran)
            submitted(queue, key)
        except Exception:          # unmarked, as without us
            return await orig(func, *args, **kwargs)
        try:
            return await orig(task, *args, **kwargs)
        finally:
            if not ran:
                discarded(queue, key)

    _same_face(run_sync_in_worker_thread, orig)
    setattr(owner, "run_sync_in_worker_thread",
            staticmethod(run_sync_in_worker_thread) if backend is not None else run_sync_in_worker_thread)


def _patch_twisted(module, marks):
    """Twisted's ThreadPool (the reactor's: deferToThread, its resolver)."""
    submitted = marks[0]
    pool = module.ThreadPool
    orig = pool.callInThreadWithCallback
    if getattr(orig, "_stalltrace", False):
        return

    def callInThreadWithCallback(self, onResult, func, *args, **kw):
        if self.joined:
            return orig(self, onResult, func, *args, **kw)
        try:
            most = getattr(self, "max", None)
            queue = _queue_name(self.name or "twisted", "twisted", most if isinstance(most, int) else None)
            key = next(_task_ids)
            submitted(queue, key)
        except Exception:          # unmarked, as without us
            return orig(self, onResult, func, *args, **kw)
        return orig(self, onResult, _marked_call(marks, queue, key, func), *args, **kw)

    _same_face(callInThreadWithCallback, orig)
    pool.callInThreadWithCallback = callInThreadWithCallback


_TARGETS = {
    "concurrent.futures.thread": _patch_executor,
    "anyio._backends._asyncio": _patch_anyio,
    "twisted.python.threadpool": _patch_twisted,
}


class _Finder:
    """Patches each module of _TARGETS right after the program imports it."""

    def __init__(self, marks, pending):
        self.marks = marks
        self.pending = pending

    def find_spec(self, name, path=None, target=None):
        if name not in self.pending:
            return None
        patch = self.pending.pop(name)
        if not self.pending:
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        marks = self.marks

        def exec_and_patch(module):
            exec_module(module)
            try:
                patch(module, marks)
            except Exception:      # an unknown layout: leave it as it is
                pass
        loader.exec_module = exec_and_patch
        return spec

    def invalidate_caches(self):
        pass


def _install():
    marks = _marks()
    if marks is None:
        return
    pending = {}
    for name, patch in _TARGETS.items():
        if name in sys.modules:
            try:
                patch(sys.modules[name], marks)
            except Exception:
                pass
        else:
            pending[name] = patch
    if pending:
        sys.meta_path.insert(0, _Finder(marks, pending))


def _chain():
    """Import the sitecustomize this module hides, as site.py would have."""
    import importlib.machinery
    import importlib.util
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["sitecustomize"]
        raise


_install()
_chain()
