"""Progress bars: in a terminal a tqdm bar with the log lines above it, never
through it; elsewhere the log lines alone."""

import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

from pyfrcnn import progress
from tests.engine.netlib import write_run
from tests.entry_point import environment, script_path


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_go_above_the_bar_and_stay_whole():
    screen = Terminal()
    handler = progress.ConsoleHandler(screen)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test_progress")
    log.addHandler(handler)
    log.propagate = False
    try:
        bar = progress.progress(10, "train", "step", stream=screen)
        assert isinstance(bar, progress.Bar)
        for step in range(10):
            bar.update(1)
            log.warning("Iteration %d, loss = 0.5", step)
        bar.close()
    finally:
        log.removeHandler(handler)
    text = screen.getvalue()
    lines = re.split(r"[\r\n]", text)
    for step in range(10):  # each log line on a line of its own, no bar text in it
        assert f"Iteration {step}, loss = 0.5" in lines
    assert "train:" in text and "step" in text  # the bar was drawn
    assert not progress._bars


def test_no_bar_off_a_terminal_or_when_quiet():
    assert isinstance(progress.progress(5, stream=io.StringIO()), progress.NullBar)
    assert isinstance(progress.progress(5, stream=Terminal(), enabled=False), progress.NullBar)


def test_solve_in_a_terminal_shows_a_bar_and_whole_caffe_lines(tmp_path):
    write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 40\ndevice: cpu\ntensorboard: false\n"
                             "display: 10\nsnapshot_after_train: false\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, script_path(), "solve", "solver.yaml"],
                            cwd=tmp_path, env=environment(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"train: +\d+%\|", text), text[-2000:]  # tqdm's bar
    lines = re.split(r"[\r\n]", text)
    for step in (0, 10, 20, 30):
        assert any(re.search(rf"\] Iteration {step}, loss = \S+ \(\S+ s/iter, eta [\d:]+\)$", l)
                   for l in lines), step
    assert (tmp_path / "output" / "solver" / "train.log").read_text().count("\r") == 0
