import itertools
import random
import threading
import time

import pytest

from pyfrcnn_layers.prefetch import Prefetcher
from pyfrcnn.errors import DataError


def slow_square(task):
    time.sleep(random.Random(task).uniform(0, 0.004))  # finish out of order
    return task * task


def run(workers, n=30):
    counter = itertools.count()
    with Prefetcher(lambda: next(counter), slow_square, workers=workers, depth=5) as p:
        return [(slot.task, slot.result()) for slot in (p.next() for _ in range(n))]


def test_order_is_the_plan_order_whatever_the_workers():
    serial = run(0)
    assert serial == [(k, k * k) for k in range(30)]
    assert run(1) == serial and run(4) == serial


def test_read_ahead_is_bounded_by_depth():
    planned = []
    gate = threading.Event()

    def work(task):
        gate.wait(5)
        return task

    counter = itertools.count()
    p = Prefetcher(lambda: planned.append(None) or next(counter), work, workers=2, depth=3)
    gate.set()
    assert p.next().result() == 0
    assert len(planned) == 4 and p.ahead() == [1, 2, 3]  # the one handed out + 3 ahead
    p.close()
    assert p.closed


def test_worker_errors_are_raised_in_the_consumer():
    def work(task):
        if task == 2:
            raise DataError(f"/data/{task}.jpg: cannot read image")
        return task

    counter = itertools.count()
    with Prefetcher(lambda: next(counter), work, workers=2, depth=2) as p:
        assert [p.next().result() for _ in range(2)] == [0, 1]
        with pytest.raises(DataError, match=r"/data/2\.jpg"):
            p.next().result()
        assert p.next().result() == 3  # one bad task does not stop the others


def test_close_stops_the_threads():
    before = threading.active_count()
    counter = itertools.count()
    p = Prefetcher(lambda: next(counter), slow_square, workers=3, depth=6)
    p.next().result()
    assert threading.active_count() == before + 3
    p.close()
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="after close"):
        p.next()
