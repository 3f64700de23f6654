"""Evaluator lookup, optional TensorBoard / tqdm, and `pyfrcnn plot`."""

import argparse
import json
import sys
import types

import pytest

from pyfrcnn import hooks, plot
from pyfrcnn.solver import Solver
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run


def solver(tmp_path, lines="", **kw):
    path = write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 3\ndevice: cpu\n"
                     "snapshot_after_train: false\n" + lines, **kw)
    return Solver(load_solver(path), run_dir=str(tmp_path / "run"), dist_info=False)


def test_evaluator_factories_then_caffe_tester(tmp_path, monkeypatch):
    monkeypatch.setattr(hooks, "EVALUATORS", [])
    s = solver(tmp_path, "test_net: train.prototxt\ntest_iter: 2\n")
    assert isinstance(hooks.make_evaluator(s), hooks.NetTester)
    hooks.register_evaluator(lambda sv: None)             # declines
    assert isinstance(hooks.make_evaluator(s), hooks.NetTester)
    mine = lambda step, net: {"mAP": 0.5}                 # noqa: E731
    hooks.register_evaluator(lambda sv: mine)
    assert hooks.make_evaluator(s) is mine
    monkeypatch.setattr(hooks, "EVALUATORS", [])
    assert hooks.make_evaluator(solver(tmp_path / "b")) is None


def test_plugin_evaluator_is_used_by_the_solver(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(hooks, "EVALUATORS", [lambda sv: lambda step, net: calls.append(step) or {"mAP": 1.0}])
    s = solver(tmp_path, "net: train.prototxt\ntest_interval: 3\n")
    s.solve()
    assert calls == [0, 3]


def test_tensorboard_absent_is_quiet(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails
    s = solver(tmp_path, "display: 1\n")
    s.solve()
    tb = next(h for h in s.hooks if isinstance(h, hooks.TensorBoardHook))
    assert tb.writer is None
    assert len(open(tmp_path / "run" / "metrics.jsonl").readlines()) == 3


def test_tensorboard_scalars_when_available(tmp_path, monkeypatch):
    written = []

    class Writer:
        def __init__(self, folder, purge_step=None):
            self.folder = folder

        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    s = solver(tmp_path, "display: 2\n")
    s.solve()
    assert ("train/loss", 0) in written and ("train/lr", 2) in written and ("train/mae", 2) in written


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, total, initial, **kw):
            updates.append(("start", total, initial))

        def update(self, n):
            updates.append(n)

        def set_postfix(self, **kw):
            pass

        def close(self):
            updates.append("close")

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=Bar))
    solver(tmp_path).solve()
    assert updates == []                                   # stderr is not a terminal under pytest
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    solver(tmp_path / "b").solve()
    # redrawn at most every 0.1 s: the steps arrive in one or more batches
    assert updates[0] == ("start", 3, 0) and updates[-1] == "close"
    assert sum(updates[1:-1]) == 3


def test_plot_series_and_command(tmp_path, capsys):
    records = [
        {"step": 0, "kind": "train", "loss": 2.0, "lr": 0.1, "outputs": {"rpn_loss": 1.0, "acc": 0.5}},
        {"step": 0, "kind": "test", "metrics": {"mAP": 0.1}},
        {"step": 20, "kind": "train", "loss": 1.0, "lr": 0.01, "outputs": {"rpn_loss": 0.5, "acc": 0.7}},
        {"step": 20, "kind": "test", "metrics": {"mAP": 0.3}},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 4')
    figures = plot.series(plot.read_metrics(str(tmp_path / "metrics.jsonl")))
    assert figures["loss"]["loss (smoothed)"] == ([0, 20], [2.0, 1.0])
    assert figures["loss"]["rpn_loss"] == ([0, 20], [1.0, 0.5])
    assert figures["outputs"]["acc"] == ([0, 20], [0.5, 0.7])
    assert figures["lr"]["lr"] == ([0, 20], [0.1, 0.01])
    assert figures["test"]["mAP"] == ([0, 20], [0.1, 0.3])
    status = plot.run_plot(argparse.Namespace(run_dir=str(tmp_path), out=None))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert status == 1 and "matplotlib is not installed" in capsys.readouterr().err
        return
    assert status == 0
    for name in ("loss", "outputs", "lr", "test"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_metrics(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert plot.run_plot(argparse.Namespace(run_dir=str(tmp_path), out=None)) == 1
    assert "cannot read metrics" in capsys.readouterr().err


class FakeLast:
    outputs, rate, grad_norm = {}, 0.1, None


def display_on_a_fake_clock(monkeypatch, display, max_iter):
    """(solver, DisplayHook, clock): a solver stand-in with no net, and time.time
    reading clock[0]."""
    clock = [1000.0]
    monkeypatch.setattr(hooks.time, "time", lambda: clock[0])

    class Config:
        pass

    Config.display, Config.max_iter = display, max_iter

    class FakeSolver:
        config, loss_weights, smoothed_loss, step = Config, {}, 1.0, 0

        def emit(self, record):
            pass

    solver, hook = FakeSolver(), hooks.DisplayHook()
    hook.before_train(solver)
    return solver, hook, clock


def test_display_eta_leaves_out_test_time_and_is_smoothed(monkeypatch, caplog):
    import logging

    solver, hook, clock = display_on_a_fake_clock(monkeypatch, 1, 100)
    Last = FakeLast
    seconds = [1.0, 1.0, 3.0]  # per step
    etas = []
    with caplog.at_level(logging.INFO, logger="pyfrcnn.solver"):
        for step, spent in enumerate(seconds):
            if step == 1:  # a 100 s test before step 1 is no training time
                hook.write({"kind": "test", "step": 1, "seconds": 100.0})
                clock[0] += 100.0
            clock[0] += spent
            solver.last = Last()
            solver.last.step, solver.step = step, step + 1
            hook.after_step(solver)
            line = [r.getMessage() for r in caplog.records if "eta" in r.getMessage()][-1]
            etas.append(line)
    assert "(1 s/iter, eta 0:01:39)" in etas[0]        # 99 steps left at 1 s
    assert "(1 s/iter, eta 0:01:38)" in etas[1]        # the test's 100 s left out
    # 3 s/iter smoothed: 0.3 * 3 + 0.7 * 1 = 1.6 s/iter, 97 steps left = 155 s
    assert "(3 s/iter, eta 0:02:35)" in etas[2]


def test_display_eta_leaves_out_the_set_up(monkeypatch, caplog):
    """The first interval holds the data generation and the first forward: a
    60 s first step must not make the ETA of 1 s steps hours long."""
    import logging

    solver, hook, clock = display_on_a_fake_clock(monkeypatch, 10, 1000)
    Last = FakeLast
    with caplog.at_level(logging.INFO, logger="pyfrcnn.solver"):
        for step in range(21):
            clock[0] += 60.0 if step == 0 else 1.0
            solver.last = Last()
            solver.last.step, solver.step = step, step + 1
            hook.after_step(solver)
    etas = [r.getMessage() for r in caplog.records if "eta" in r.getMessage()]
    assert "(60 s/iter, eta 16:39:00)" in etas[0]  # the set-up, shown as it was
    assert "(1 s/iter, eta 0:16:29)" in etas[1]    # 989 steps left at 1 s, not 60
    assert "(1 s/iter, eta 0:16:19)" in etas[2]
