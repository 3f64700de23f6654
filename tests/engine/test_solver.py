"""The step loop against a hand-written Caffe loop; display, metrics, tests,
snapshots, the NaN guard and signals."""

import json
import logging
import os
import re
import signal

import pytest
import torch

from pyfrcnn.hooks import CaffeLogFormatter, HookBase
from pyfrcnn.net import Net, load_weights_file
from pyfrcnn.solver import Solver, TrainingDiverged
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run

QUIET = "tensorboard: false\ndevice: cpu\nrandom_seed: 3\n"


class Recorder(HookBase):
    """Keeps each step's loss, rate, skip flag and weights after the update."""

    def __init__(self, action=None):
        self.steps, self.action = [], action

    def after_step(self, solver):
        weights = [p.detach().clone() for p, *_ in solver.net.learnable_params()]
        self.steps.append((solver.last.step, solver.last.loss, solver.last.rate,
                           solver.last.skipped, weights))
        if self.action:
            self.action(solver)


def make_solver(tmp_path, lines, recorder=None, evaluate=None, **net_kwargs):
    path = write_run(str(tmp_path), QUIET + lines, **net_kwargs)
    solver = Solver(load_solver(path), run_dir=str(tmp_path / "run"), dist_info=False,
                    evaluate=evaluate)
    if recorder is not None:
        solver.hooks.append(recorder)
    return solver


def test_steps_match_a_hand_written_caffe_loop(tmp_path):
    lines = """base_lr: 0.1
lr_policy: step
gamma: 0.1
stepsize: 2
max_iter: 4
momentum: 0.9
weight_decay: 0.01
iter_size: 2
snapshot_after_train: false
"""
    solver = make_solver(tmp_path, lines)
    ref = Net(str(tmp_path / "train.prototxt"))
    ref.load(solver.net.weights_dict())
    assert solver.solve() == 0
    params = ref.learnable_params()          # fc weight (lr 1, decay 1), bias (lr 2, decay 0)
    history = [torch.zeros_like(p) for p, *_ in params]
    for step in range(4):
        rate = 0.1 * 0.1 ** (step // 2)
        for p, *_ in params:
            p.grad = None
        for _ in range(2):
            ref.forward()
            ref.backward()
        with torch.no_grad():
            for (p, lr_mult, decay_mult, _), h in zip(params, history):
                g = p.grad / 2 + 0.01 * decay_mult * p
                h.mul_(0.9).add_(rate * lr_mult * g)
                p.sub_(h)
    for (mine, *_), (theirs, *_) in zip(solver.net.learnable_params(), params):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
    assert solver.step == 4


def test_display_lines_and_metrics_file(tmp_path, caplog):
    recorder = Recorder()
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 4\ndisplay: 2\naverage_loss: 2\n"
                                   "snapshot_after_train: false\n", recorder)
    with caplog.at_level(logging.INFO, logger="pyfrcnn.solver"):
        solver.solve()
    text = "\n".join(r.getMessage() for r in caplog.records)
    losses = {s: loss for s, loss, *_ in recorder.steps}
    for step, smoothed in ((0, losses[0]), (2, (losses[1] + losses[2]) / 2)):
        m = re.search(rf"^Iteration {step}, loss = (\S+) \(", text, re.M)
        assert m and float(m.group(1)) == pytest.approx(smoothed, rel=1e-5)
        assert re.search(rf"^Iteration {step}, lr = 0.01$", text, re.M)
    m = re.search(r"^    Train net output #0: loss = (\S+) \(\* 1 = (\S+) loss\)$", text, re.M)
    assert m and m.group(1) == m.group(2)
    assert re.search(r"^    Train net output #1: mae = \S+$", text, re.M)  # a scalar statistic
    assert "Iteration 1," not in text
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in records] == [0, 2]
    assert records[1]["loss"] == pytest.approx((losses[1] + losses[2]) / 2)
    assert set(records[0]["outputs"]) == {"loss", "mae"} and records[0]["lr"] == 0.01
    # Caffe's parse_log.sh takes field 9 of the glog-prefixed line as the loss
    record = next(r for r in caplog.records if r.getMessage().startswith("Iteration 2, loss"))
    line = CaffeLogFormatter().format(record)
    assert re.match(r"I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ hooks\.py:\d+\] Iteration 2", line)
    assert float(line.split()[8]) == pytest.approx(records[1]["loss"], rel=1e-5)


@pytest.mark.parametrize("extra, max_iter, expected", [
    ("", 4, [0, 2, 4]),                              # Caffe: tests at 0, 2 and after the last step
    ("test_initialization: false\n", 4, [2, 4]),
    ("", 5, [0, 2, 4]),                              # 5 is no multiple of 2: no final test
    ("test_after_train: true\n", 5, [0, 2, 4, 5]),
])
def test_evaluation_steps(tmp_path, extra, max_iter, expected):
    calls = []

    def evaluate(step, net):
        calls.append(step)
        return {"mAP": step / 10}

    solver = make_solver(tmp_path, f"base_lr: 0.01\nmax_iter: {max_iter}\nnet: train.prototxt\n"
                                   f"test_interval: 2\nsnapshot_after_train: false\n{extra}",
                         evaluate=evaluate)
    solver.solve()
    assert calls == expected
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(r["step"], r["metrics"]["mAP"]) for r in records if r["kind"] == "test"] == \
        [(s, s / 10) for s in expected]


def test_caffe_tester_averages_test_net_outputs(tmp_path):
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 1\ntest_net: train.prototxt\n"
                                   "test_interval: 1\ntest_iter: 3\nsnapshot_after_train: false\n")
    initial = solver.net.weights_dict()
    solver.solve()
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    tests = [r for r in records if r["kind"] == "test"]
    assert [r["step"] for r in tests] == [0, 1]
    ref = Net(str(tmp_path / "train.prototxt"), "TEST")
    ref.load(initial)
    with torch.no_grad():
        outs = [ref.forward() for _ in range(3)]
    assert tests[0]["metrics"]["loss"] == pytest.approx(sum(float(o["loss"]) for o in outs) / 3, rel=1e-6)
    assert tests[0]["metrics"]["mae"] == pytest.approx(sum(float(o["mae"]) for o in outs) / 3, rel=1e-6)


def test_snapshots_keep_last_k_with_meta(tmp_path):
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 7\nsnapshot: 2\nkeep_snapshots: 2\n"
                                   "snapshot_prefix: snaps/tiny\ndetection:\n  TRAIN:\n    SCALES: [400]\n")
    solver.solve()
    files = sorted(os.listdir(tmp_path / "snaps"))
    assert files == ["tiny_iter_6.solverstate", "tiny_iter_6.weights",
                     "tiny_iter_7.solverstate", "tiny_iter_7.weights"]
    layers, meta = load_weights_file(str(tmp_path / "snaps" / "tiny_iter_7.weights"), with_meta=True)
    assert meta["detection"]["TRAIN"]["SCALES"] == (400,) and meta["solver"]["iter"] == 7
    assert torch.equal(layers["fc"][0], solver.net.layer_dict["fc"].blobs[0].detach())
    state = torch.load(tmp_path / "snaps" / "tiny_iter_7.solverstate", weights_only=False)
    assert state["iter"] == 7 and set(state["history"]) == {"fc/0", "fc/1"}
    assert state["ranks"][0]["net"]["data"]["cursor"] == 14


def test_nan_loss_stops_and_leaves_last_snapshot(tmp_path):
    # batch 2: sample 6 is read at step 3
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 10\nsnapshot: 2\nsnapshot_prefix: s/t\n",
                         nan_at=6)
    with pytest.raises(TrainingDiverged, match=r"Iteration 3: non-finite loss \(loss = nan\); stopping"):
        solver.solve()
    assert sorted(os.listdir(tmp_path / "s")) == ["t_iter_2.solverstate", "t_iter_2.weights"]
    assert load_weights_file(str(tmp_path / "s" / "t_iter_2.weights"))["fc"][0].isfinite().all()


def test_nan_policy_skip_drops_the_update(tmp_path):
    recorder = Recorder()
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 5\nnan_policy: skip\n"
                                   "snapshot_after_train: false\n", recorder, nan_at=6)
    assert solver.solve() == 0
    skipped = [s for s, _, _, skip, _ in recorder.steps if skip]
    assert skipped == [3]
    weights = {s: w for s, *_, w in recorder.steps}
    assert all(torch.equal(a, b) for a, b in zip(weights[2], weights[3]))
    assert not all(torch.equal(a, b) for a, b in zip(weights[3], weights[4]))
    assert all(p.isfinite().all() for p, *_ in solver.net.learnable_params())


@pytest.mark.parametrize("signame, at, status, expected_files, stopped", [
    ("SIGHUP", 1, 0, [2, 5], False),    # snapshot and go on; the end snapshot at 5
    ("SIGINT", 1, 0, [2], True),        # snapshot at the end of the step, stop, status 0
    ("SIGTERM", 2, 143, [3], True),
])
def test_signals(tmp_path, signame, at, status, expected_files, stopped):
    def send(solver):
        if solver.last.step == at:
            os.kill(os.getpid(), getattr(signal, signame))

    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 5\nsnapshot_prefix: s/t\n", Recorder(send))
    before = signal.getsignal(signal.SIGINT)
    assert solver.solve() == status
    assert solver.stopped_early == stopped
    steps = sorted({int(re.search(r"_iter_(\d+)", f).group(1)) for f in os.listdir(tmp_path / "s")})
    assert steps == expected_files
    assert signal.getsignal(signal.SIGINT) is before


def test_train_net_needs_a_loss_and_data_layers(tmp_path):
    from pyfrcnn.errors import ConfigError

    (tmp_path / "in.prototxt").write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 dim: 1 dim: 1 } } }\n'
        'layer { name: "fc" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 1 kernel_size: 1 } }\n')
    (tmp_path / "s.yaml").write_text("train_net: in.prototxt\nbase_lr: 0.1\nmax_iter: 1\ndevice: cpu\n")
    with pytest.raises(ConfigError, match="takes input blob.*x.*needs data layers"):
        Solver(load_solver(str(tmp_path / "s.yaml")), run_dir=str(tmp_path), dist_info=False)


def test_pyfrcnn_solve_command(tmp_path):
    from pyfrcnn import cli

    path = write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 3\ndevice: cpu\ntensorboard: false\n")
    out = tmp_path / "run"
    assert cli.main(["solve", path, "--out", str(out), "--set", "max_iter=2", "--set", "display=1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.jsonl", "solver.yaml", "solver_iter_2.solverstate", "solver_iter_2.weights",
        "train.log"]
    log_text = (out / "train.log").read_text()
    assert "] Iteration 1, lr = 0.01" in log_text and "Optimization Done." in log_text
    assert cli.main(["solve", path, "--set", "max_iters=2"]) == 1
