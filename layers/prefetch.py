"""Prefetcher: run work ahead of its consumer in background threads, in order.

    prefetcher = Prefetcher(plan, work, workers=2, depth=4)
    slot = prefetcher.next()        # slot.task: what plan() returned
    value = slot.result()           # work(slot.task), or its exception re-raised
    prefetcher.close()

`init()`, if given, runs first in each worker thread (the data layer limits
torch to one thread there). `plan()` runs in the consumer's thread and says what comes next (for a data
layer: which image, at which scale), so the sequence never depends on the
number of workers or on their timing: results come back in plan order. At
most `depth` planned tasks are outstanding (queued, running or done but not
yet taken), which bounds memory and read-ahead. With workers=0 nothing runs
ahead: next() plans and runs one task in the calling thread.

Workers are daemon threads, so a forgotten prefetcher never holds up the
interpreter's exit; close() (also on garbage collection or `with` exit) drops
the queued tasks, lets running ones finish and joins the threads. An exception
raised by `work` is stored with its traceback and re-raised by result() in the
consumer's thread; `work` should name the file it failed on.
"""

import collections
import queue
import threading
import weakref

JOIN_TIMEOUT = 10.0


class Slot:
    """One planned task and, once a worker has run it, its outcome."""

    __slots__ = ("task", "_done", "_value", "_error")

    def __init__(self, task):
        self.task = task
        self._done = threading.Event()
        self._value = None
        self._error = None

    def run(self, work):
        try:
            self._value = work(self.task)
        except BaseException as e:  # handed to the consumer, whatever it is
            self._error = e
        finally:
            self._done.set()

    def done(self):
        return self._done.is_set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _work_loop(tasks, work, init):
    if init is not None:
        init()
    while True:
        slot = tasks.get()
        if slot is None:
            return
        slot.run(work)


def _shutdown(tasks, threads):
    while True:
        try:
            tasks.get_nowait()
        except queue.Empty:
            break
    for _ in threads:
        tasks.put(None)
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)


class Prefetcher:
    def __init__(self, plan, work, workers=2, depth=4, name="prefetch", init=None):
        if workers < 0 or depth < 1:
            raise ValueError(f"Prefetcher needs workers >= 0 and depth >= 1, got {workers}, {depth}")
        self.plan = plan
        self.work = work
        self.depth = int(depth)
        self._pending = collections.deque()
        self._tasks = queue.Queue()
        self._threads = [threading.Thread(target=_work_loop, args=(self._tasks, work, init),
                                          name=f"{name}-{k}", daemon=True)
                         for k in range(int(workers))]
        for thread in self._threads:
            thread.start()
        # Workers hold no reference to self, so an unreferenced prefetcher is collected and closed.
        self._finalizer = weakref.finalize(self, _shutdown, self._tasks, self._threads)

    @property
    def closed(self):
        return not self._finalizer.alive

    def next(self):
        """The Slot of the next task in plan order."""
        if self.closed:
            raise RuntimeError("Prefetcher.next() after close()")
        if not self._threads:
            slot = Slot(self.plan())
            slot.run(self.work)
            return slot
        self._fill()
        slot = self._pending.popleft()
        self._fill()  # keep `depth` tasks going while the consumer works on this one
        return slot

    def _fill(self):
        while len(self._pending) < self.depth:
            slot = Slot(self.plan())
            self._pending.append(slot)
            self._tasks.put(slot)

    def ahead(self):
        """Planned tasks not yet handed out, oldest first."""
        return [slot.task for slot in self._pending]

    def close(self):
        self._pending.clear()
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
