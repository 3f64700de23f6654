"""Run folders through the `pyfrcnn solve` command: one run per folder, the
resume command, --force, the lock, solver.yaml and the log's banner."""

import json
import os
import re
import shlex
import signal
import sys
import pytest

from pyfrcnn import cli
from pyfrcnn.run_dir import LOCK_NAME, RunFolderError, RunLock, latest_snapshot, snapshots
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run
from tests.entry_point import pyfrcnn

SOLVER = "base_lr: 0.01\nmax_iter: 3\ndevice: cpu\ntensorboard: false\nrandom_seed: 1\n" \
         "display: 1\nsnapshot: 2\n"

# A layer that sends its own process SIGINT at the forward pass `at` (as a
# user's Ctrl-C would); it lives in the run's current folder, not in a package.
SIGINT_LAYER = '''
import os, signal
import yaml
from pyfrcnn.layer import Layer


class SigintAt(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        self.at = yaml.safe_load(self.param_str)["at"]
        self.count = 0

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return x
'''


def solve(capsys, *args):
    """(status, stderr) of `pyfrcnn solve solver.yaml ARGS` in the current folder, in process."""
    capsys.readouterr()
    status = cli.main(["solve", "solver.yaml", *args])
    return status, capsys.readouterr().err


def quoted_command(text, start="pyfrcnn solve"):
    """The first `...` command in a message."""
    match = re.search(r"`(" + re.escape(start) + r"[^`]*)`", text)
    assert match, text
    return shlex.split(match.group(1))


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    write_run(str(tmp_path), SOLVER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_second_fresh_run_is_refused_with_the_resume_and_force_commands(run_folder, capsys):
    status, err = solve(capsys, "--out", "run")
    assert status == 0, err
    log_before = (run_folder / "run" / "train.log").read_text()
    metrics_before = (run_folder / "run" / "metrics.jsonl").read_text()

    status, err = solve(capsys, "--out", "run")
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("pyfrcnn solve: error: ")
    assert "run holds an earlier run (2 snapshots (the last at iteration 3)" in err
    resume = quoted_command(err)
    assert resume[1:] == ["solve", "solver.yaml", "--out", "run", "--resume", "auto"]
    assert quoted_command(err.split("start over with")[1])[-1] == "--force"
    # nothing was appended to the first run
    assert (run_folder / "run" / "train.log").read_text() == log_before
    assert (run_folder / "run" / "metrics.jsonl").read_text() == metrics_before

    # the printed command continues the run
    status, err = solve(capsys, *resume[3:], "--set", "max_iter=4")
    assert status == 0, err
    log_text = (run_folder / "run" / "train.log").read_text()
    assert log_text.startswith(log_before)
    assert "Resumed from" in log_text and "_iter_3.solverstate at iteration 3" in log_text
    steps = [json.loads(line)["step"] for line in open(run_folder / "run" / "metrics.jsonl")]
    assert steps == [0, 1, 2, 3]

    # --force starts over: the earlier run's files are gone
    status, err = solve(capsys, "--out", "run", "--force")
    assert status == 0, err
    log_text = (run_folder / "run" / "train.log").read_text()
    assert "Resumed from" not in log_text and log_text.count("Optimization Done.") == 1
    steps = [json.loads(line)["step"] for line in open(run_folder / "run" / "metrics.jsonl")]
    assert steps == [0, 1, 2]
    assert sorted(snapshots(str(run_folder / "run"))) == [2, 3]


def test_resume_auto_and_resume_dir_take_the_latest_complete_snapshot(run_folder, capsys):
    assert solve(capsys, "--out", "run")[0] == 0
    run = run_folder / "run"
    os.remove(run / "solver_iter_3.weights")  # an incomplete pair is no snapshot
    assert latest_snapshot(str(run)).endswith("solver_iter_2.solverstate")
    status, err = solve(capsys, "--out", "run", "--resume", "auto")
    assert status == 0, err
    assert "solver_iter_2.solverstate at iteration 2" in (run / "train.log").read_text()
    # --resume DIR: that folder is the run folder, its prefix is kept
    status, err = solve(capsys, "--resume", "run", "--set", "max_iter=5")
    assert status == 0, err
    assert sorted(snapshots(str(run))) == [2, 3, 4, 5]
    assert not (run_folder / "output").exists()


def test_resume_into_a_folder_of_another_run_is_refused(run_folder, capsys):
    assert solve(capsys, "--out", "a")[0] == 0
    assert solve(capsys, "--out", "b")[0] == 0
    status, err = solve(capsys, "--out", "b", "--resume", "a/solver_iter_2.solverstate")
    assert status == 1 and "b holds another run" in err


def test_resume_auto_without_a_snapshot_says_so(run_folder, capsys):
    status, err = solve(capsys, "--out", "empty", "--resume", "auto")
    assert status == 1
    assert "--resume auto: empty holds no complete snapshot" in err
    status, err = solve(capsys, "--resume", "nowhere")
    assert status == 1 and "--resume nowhere: no such solver state, file or folder" in err


def test_leftovers_of_a_failed_start_are_replaced(run_folder, capsys):
    run = run_folder / "run"
    run.mkdir()
    (run / "train.log").write_text("a failed start\n")
    (run / "metrics.jsonl").write_text("")
    (run / "mine.weights").write_text("not ours")
    status, err = solve(capsys, "--out", "run", "--set", "max_iter=1")
    assert status == 0, err
    assert "a failed start" not in (run / "train.log").read_text()
    assert (run / "mine.weights").read_text() == "not ours"


def test_solver_yaml_and_banner(run_folder, capsys):
    status, err = solve(capsys, "--out", "run", "--set", "max_iter=2", "--set", "base_lr=0.5")
    assert status == 0, err
    run = run_folder / "run"
    resolved = load_solver(str(run / "solver.yaml"))
    assert resolved.max_iter == 2 and resolved.base_lr == 0.5
    assert resolved.train_net == str(run_folder / "train.prototxt")
    assert resolved.snapshot_prefix == str(run / "solver")
    lines = (run / "train.log").read_text().splitlines()
    import torch

    from pyfrcnn import __version__

    assert f"] pyfrcnn {__version__}, torch {torch.__version__}, Python " in lines[0]
    assert "device cpu;" in lines[0] and " threads; pid " in lines[0]
    assert lines[1].endswith("] Command: pyfrcnn solve solver.yaml --out run --set max_iter=2 "
                             "--set base_lr=0.5")
    assert lines[2].endswith("] Initializing solver from parameters:")
    assert "  base_lr: 0.5" in lines and "  max_iter: 2" in lines
    assert not any(line.startswith("  momentum:") for line in lines)  # a default: not shown
    assert not (run / LOCK_NAME).exists()  # released on exit


def test_ctrl_c_prints_the_resume_command_and_it_continues(run_folder):
    """Through the console script, with the layer module in the current folder."""
    (run_folder / "sigint_layer.py").write_text(SIGINT_LAYER)
    net = (run_folder / "train.prototxt").read_text()
    net = net.replace('layer { name: "loss"', 'layer { name: "ctrl_c" type: "Python" bottom: "pred" '
                      'top: "pred" python_param { module: "sigint_layer" layer: "SigintAt" '
                      'param_str: "at: 2" } }\nlayer { name: "loss"')
    (run_folder / "train.prototxt").write_text(net)
    result = pyfrcnn("solve", "solver.yaml", "--set", "max_iter=6", cwd=run_folder)
    assert result.returncode == 0, result.stderr  # Caffe's SIGINT "stop": snapshot, exit 0
    assert "SIGINT received: stop" in result.stderr
    assert "\r" not in result.stderr and "%|" not in result.stderr  # a pipe: no bar
    resume = quoted_command(result.stderr.replace("resume with: ", "`") + "`")
    assert resume[1:] == ["solve", "solver.yaml", "--set", "max_iter=6", "--resume", "auto"]
    assert sorted(snapshots(str(run_folder / "output" / "solver"))) == [2]
    # the layer's counter restarts, so the resumed run stops again at its 2nd pass
    again = pyfrcnn(*resume[1:], cwd=run_folder)
    assert again.returncode == 0, again.stderr
    assert "Resumed from" in again.stderr and "at iteration 2" in again.stderr
    assert sorted(snapshots(str(run_folder / "output" / "solver"))) == [2, 4]


def test_a_live_run_holds_the_folder_and_a_stale_lock_is_taken_over(run_folder, capsys):
    import subprocess

    from tests.entry_point import environment

    run = run_folder / "run"
    code = ("import time\nfrom pyfrcnn.run_dir import RunLock\n"
            f"RunLock({str(run)!r}).acquire('pyfrcnn solve other.yaml')\n"
            "print('locked', flush=True)\ntime.sleep(60)\n")
    live = subprocess.Popen([sys.executable, "-c", code], env=environment(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "locked"
        status, err = solve(capsys, "--out", "run")
        assert status == 1
        assert f"is in use by a live run (pid {live.pid}" in err
        assert "pyfrcnn solve other.yaml" in err
        assert not (run / "train.log").exists()
    finally:
        live.kill()
        live.wait()
    assert (run / LOCK_NAME).exists()  # kill -9 leaves the file: a stale lock
    status, err = solve(capsys, "--out", "run")
    assert status == 0, err
    assert f"a stale lock of pid {live.pid}" in (run / "train.log").read_text()
    assert not (run / LOCK_NAME).exists()


def test_run_lock_in_process(tmp_path):
    with RunLock(str(tmp_path)).acquire("first"):
        with pytest.raises(RunFolderError, match=rf"pid {os.getpid()}.*: first"):
            RunLock(str(tmp_path)).acquire("second")
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(str(tmp_path)).acquire("third").release()


def test_a_second_ctrl_c_is_one_line_with_the_resume_command(monkeypatch, capsys):
    import pyfrcnn.solver

    def interrupted(args):
        raise KeyboardInterrupt("resume with: pyfrcnn solve s.yaml --resume auto")

    monkeypatch.setattr(pyfrcnn.solver, "run_solve", interrupted)
    assert cli.main(["solve", "s.yaml"]) == 130
    assert capsys.readouterr().err == \
        "pyfrcnn solve: interrupted; resume with: pyfrcnn solve s.yaml --resume auto\n"


def test_a_solver_file_in_its_own_run_folder_is_never_touched(tmp_path, monkeypatch, capsys):
    write_run(str(tmp_path), SOLVER + "snapshot_prefix: snap\n")  # the run folder is tmp_path
    monkeypatch.chdir(tmp_path)
    mine = (tmp_path / "solver.yaml").read_text()
    (tmp_path / "train.log").write_text("a failed start\n")  # leftovers are replaced ...
    status, err = solve(capsys, "--set", "max_iter=1")
    assert status == 0, err
    assert (tmp_path / "solver.yaml").read_text() == mine  # ... but not the user's solver file
    assert load_solver(str(tmp_path / "solver.resolved.yaml")).max_iter == 1
    status, err = solve(capsys, "--force", "--set", "max_iter=1")
    assert status == 0, err
    assert (tmp_path / "solver.yaml").read_text() == mine
