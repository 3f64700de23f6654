"""Exact resume: 20 straight steps == 10 steps, a resume, 10 more (bit for bit),
on a net whose dropout draws from torch's generator and whose data layer draws
from its own; and a real SIGINT to a solver process leaves a loadable snapshot."""

import argparse
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from pyfrcnn.net import load_weights_file
from pyfrcnn.solver import Solver, run_solve
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def solver_lines(solver_type):
    extra = "momentum: 0.9\n" if solver_type != "AdaGrad" else ""
    return f"""base_lr: 0.05
lr_policy: step
gamma: 0.5
stepsize: 7
max_iter: 20
type: {solver_type}
{extra}weight_decay: 0.001
iter_size: 2
snapshot: 10
display: 5
average_loss: 3
random_seed: 5
device: cpu
tensorboard: false
snapshot_prefix: snap/tiny
"""


def final_weights(prefix):
    return load_weights_file(prefix + "_iter_20.weights")


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_resume_is_bit_exact(tmp_path, solver_type):
    straight = write_run(str(tmp_path / "a"), solver_lines(solver_type), random=True, dropout=True)
    assert run_solve(argparse.Namespace(solver=straight, out=None, overrides=[])) == 0

    resumed = write_run(str(tmp_path / "b"), solver_lines(solver_type), random=True, dropout=True)
    assert run_solve(argparse.Namespace(solver=resumed, out=None, overrides=["max_iter=10"])) == 0
    assert not os.path.exists(tmp_path / "b" / "snap" / "tiny_iter_20.weights")
    torch.manual_seed(12345)  # the resumed run must not depend on the process's own state
    args = argparse.Namespace(solver=resumed, out=None, overrides=["random_seed=77"],
                              resume=str(tmp_path / "b" / "snap" / "tiny_iter_10.solverstate"))
    assert run_solve(args) == 0

    a, b = final_weights(str(tmp_path / "a" / "snap" / "tiny")), final_weights(str(tmp_path / "b" / "snap" / "tiny"))
    for name in a:
        for x, y in zip(a[name], b[name]):
            assert torch.equal(x, y), name
    # the metrics of the resumed run replace the records from step 10 on
    steps = [json.loads(l)["step"] for l in open(tmp_path / "b" / "snap" / "metrics.jsonl")]
    assert steps == [0, 5, 10, 15]
    # control: the weights alone (no history, random or data state) do not continue exactly
    control = write_run(str(tmp_path / "c"), solver_lines(solver_type), random=True, dropout=True)
    args = argparse.Namespace(solver=control, out=None, overrides=["max_iter=10"],
                              weights=str(tmp_path / "b" / "snap" / "tiny_iter_10.weights"))
    assert run_solve(args) == 0
    c = load_weights_file(str(tmp_path / "c" / "snap" / "tiny_iter_10.weights"))
    assert not torch.equal(c["fc"][0], a["fc"][0])


def test_resume_rejects_another_solver_type(tmp_path, caplog):
    path = write_run(str(tmp_path), solver_lines("SGD"), random=True)
    assert run_solve(argparse.Namespace(solver=path, out=None, overrides=["max_iter=2"])) == 0
    args = argparse.Namespace(solver=path, out=None, overrides=["type=Adam"],
                              resume=str(tmp_path / "snap" / "tiny_iter_2.solverstate"))
    assert run_solve(args) == 1
    assert "written by a SGD solver, the solver file says type: Adam" in caplog.text


def test_sigint_to_a_solver_process_leaves_a_loadable_snapshot(tmp_path):
    path = write_run(str(tmp_path), """base_lr: 0.001
max_iter: 100000000
display: 10
device: cpu
tensorboard: false
snapshot_prefix: snap/tiny
""")
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as err:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, "-m", "pyfrcnn.solver", path], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.time() + 60
            while "Iteration 10," not in log_path.read_text():
                assert proc.poll() is None, log_path.read_text()
                assert time.time() < deadline, "the solver did not start"
                time.sleep(0.1)
            proc.send_signal(subprocess.signal.SIGINT)
            status = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert status == 0, text
    assert "SIGINT received: stop" in text and "Optimization stopped early." in text
    files = os.listdir(tmp_path / "snap")
    weights = [f for f in files if f.endswith(".weights")]
    assert len(weights) == 1 and not any(".tmp" in f for f in files)
    step = int(weights[0].split("_iter_")[1].split(".")[0])
    assert step > 10
    layers = load_weights_file(str(tmp_path / "snap" / weights[0]))
    assert layers["fc"][0].shape == (2, 3, 1, 1)
    state = torch.load(tmp_path / "snap" / f"tiny_iter_{step}.solverstate", weights_only=False)
    assert state["iter"] == step
    solver = Solver(load_solver(path), run_dir=str(tmp_path / "r"), dist_info=False)
    solver.restore(str(tmp_path / "snap" / f"tiny_iter_{step}.solverstate"))
    assert solver.step == step
