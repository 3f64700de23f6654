"""Running a hostile case through the command line: in-process (pyfrcnn.cli.main
with stdout and stderr captured, the logging set up as a fresh process would) or
in a real subprocess, and the check every case makes: exit status 1, one line
on stderr, no traceback, the culprit named."""

import contextlib
import io
import logging
import os
import re
import subprocess
import sys

from pyfrcnn.cli import main

from tests.conftest import REPO_DIR


def run_cli(argv):
    """(status, stdout, stderr) of `pyfrcnn ARGV` run in this process."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = []
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in argv])
            except SystemExit as e:  # argparse's usage errors
                status = e.code
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = saved_handlers
        root.setLevel(saved_level)
    return status, out.getvalue(), err.getvalue()


def run_subprocess(argv, timeout=120, **kwargs):
    """(status, stdout, stderr) of `python -m pyfrcnn ARGV` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    result = subprocess.run([sys.executable, "-m", "pyfrcnn", *map(str, argv)], cwd=REPO_DIR,
                            env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(status, out, err, pattern, status_expected=1, summary=None):
    """Exit status 1, exactly one line on stderr, no traceback, `pattern` found in
    it. `summary`: a command over many files (detect) may add one summary line
    matching it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "Traceback" not in out, err
    assert status == status_expected, f"status {status}, stderr: {err!r}, stdout: {out[-500:]!r}"
    if summary is not None and len(lines) == 2:
        assert re.search(summary, lines[1]), lines[1]
        lines = lines[:1]
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {err!r}"
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    return lines[0]
