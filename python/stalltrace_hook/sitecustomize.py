"""stalltrace's CPython start-up hook: times ThreadPoolExecutor queues.

`stalltrace run` puts this directory first on PYTHONPATH (unless given
--no-python-hook), so CPython imports this module at start-up as
`sitecustomize`.  It then does two things and nothing else:

1. Runs the sitecustomize it hides (the next one on sys.path, e.g. Debian's
   /etc/python3.11/sitecustomize.py), which then becomes sys.modules
   ["sitecustomize"]: chained, never replaced.
2. When the recorder is loaded (its stalltrace_mark_* symbols are in the
   process) and the interpreter is CPython 3.8-3.13, it waits for
   concurrent.futures.thread to be imported by the program (nothing is
   imported early) and then wraps ThreadPoolExecutor.submit and
   _WorkItem.__init__/run so that each task is marked submitted (before it
   is queued), started and finished (or discarded when it was cancelled
   before it started) through the annotation API (include/stalltrace/
   annotate.h).  loop.run_in_executor and asyncio.to_thread go through
   submit, so they are covered.

The queue is named after the executor's thread_name_prefix (by default
"ThreadPoolExecutor-N"; "asyncio" for an event loop's default executor); the
task id is the id() of its work item.  Return values, exceptions and their
tracebacks, cancellation, thread names and the order of everything are those
of the unpatched code: the wrappers only add the marks around it.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_TARGET = "concurrent.futures.thread"


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


def _patch(module, marks):
    submitted, started, finished, discarded = marks
    executor, work_item = module.ThreadPoolExecutor, module._WorkItem
    if getattr(executor.submit, "_stalltrace", False):
        return
    orig_submit, orig_init, orig_run = executor.submit, work_item.__init__, work_item.run
    local = module.threading.local()
    cancelled_states = (module._base.CANCELLED, module._base.CANCELLED_AND_NOTIFIED)
    names = {}

    def queue_name(ex):
        prefix = getattr(ex, "_thread_name_prefix", None) or "ThreadPoolExecutor"
        name = names.get(prefix)
        if name is None:
            name = names[prefix] = prefix.encode("utf-8", "replace")[:47]
        return name

    # *args: 3.8's submit takes (*args, **kwargs), later ones (self, fn, /, ...).
    def submit(*args, **kwargs):
        outer = getattr(local, "queue", None)
        local.queue = queue_name(args[0]) if args else None
        try:
            return orig_submit(*args, **kwargs)
        finally:
            local.queue = outer

    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        queue = getattr(local, "queue", None)
        if queue is not None:
            local.queue = None     # the one work item of this submit
            self._stalltrace_queue = queue
            submitted(queue, id(self))

    def run(self, *args, **kwargs):
        queue, key = self.__dict__.get("_stalltrace_queue"), id(self)
        mark = None
        if queue is not None:
            # Read without the future's lock: no lock the worker would not
            # have taken (cancelled() takes it); run() re-checks under it.
            if getattr(self.future, "_state", None) in cancelled_states:
                discarded(queue, key)
            else:
                started(queue, key)
                mark = finished
        try:
            return orig_run(self, *args, **kwargs)
        finally:
            # The failed task's traceback keeps this frame (f_back of run's):
            # drop the work item as run() itself does, or the cycle through
            # its future keeps the worker thread alive until a gc pass.
            self = None
            if mark is not None:
                mark(queue, key)

    for new, old in ((submit, orig_submit), (__init__, orig_init), (run, orig_run)):
        new.__name__, new.__qualname__, new.__doc__ = old.__name__, old.__qualname__, old.__doc__
        new.__module__, new.__wrapped__, new._stalltrace = old.__module__, old, True
    executor.submit, work_item.__init__, work_item.run = submit, __init__, run


class _Finder:
    """Patches concurrent.futures.thread right after the program imports it."""

    def __init__(self, marks):
        self.marks = marks

    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        for finder in sys.meta_path:
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
                _patch(module, marks)
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
    if _TARGET in sys.modules:
        try:
            _patch(sys.modules[_TARGET], marks)
        except Exception:
            pass
    else:
        sys.meta_path.insert(0, _Finder(marks))


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
