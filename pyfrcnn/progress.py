"""Progress bars in a terminal, log lines alone anywhere else.

progress(total, desc) gives a tqdm bar on stderr when stderr is a terminal
(and the command is not --quiet), else a no-op object with the same methods, so a log
file or a pipe gets Caffe's lines alone. ConsoleHandler is the logging handler
of the console: while a bar is on screen it prints each line above the bar
(tqdm.write), never through it.

The bar costs nothing per step that a log line would not: update() adds to a
counter and hands tqdm the sum at most every 0.1 s (no host sync; the caller
passes plain numbers). The ETA is tqdm's exponential moving average of the
rate (smoothing 0.1), so it settles instead of jumping.
"""

import logging
import sys
import time

MIN_INTERVAL = 0.1   # seconds between redraws
SMOOTHING = 0.1      # tqdm's EMA weight of the latest rate

_bars = []           # the bars on screen (ConsoleHandler writes above them)


def is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class NullBar:
    """What progress() gives off a terminal: every call does nothing."""

    n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix(self, **values):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Bar(NullBar):
    """A tqdm bar, redrawn at most every MIN_INTERVAL seconds."""

    def __init__(self, total, desc, unit, initial, stream):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream,
                        dynamic_ncols=True, leave=False, mininterval=MIN_INTERVAL,
                        smoothing=SMOOTHING)
        self.n = initial
        self.pending = 0
        self.last = time.monotonic()
        _bars.append(self)

    def update(self, n=1):
        self.n += n
        self.pending += n
        now = time.monotonic()
        if now - self.last >= MIN_INTERVAL:
            self.bar.update(self.pending)
            self.pending, self.last = 0, now

    def set_postfix(self, **values):
        self.bar.set_postfix(values, refresh=False)

    def close(self):
        if self in _bars:
            if self.pending:
                self.bar.update(self.pending)
                self.pending = 0
            self.bar.close()
            _bars.remove(self)


def progress(total, desc="", unit="it", initial=0, stream=None, enabled=True):
    """A bar when `stream` (default stderr) is a terminal and tqdm imports, else NullBar."""
    stream = stream or sys.stderr
    if not enabled or not is_terminal(stream):
        return NullBar()
    try:
        return Bar(total, desc, unit, initial, stream)
    except ImportError:  # tqdm is a dependency; a broken install still trains
        return NullBar()


QUIET = False        # set by `pyfrcnn --quiet`: no bars either


def quiet():
    return QUIET


class ConsoleHandler(logging.StreamHandler):
    """A StreamHandler that prints above the bars on screen."""

    def emit(self, record):
        if not _bars:
            return super().emit(record)
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)
