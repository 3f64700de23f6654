"""The NaN guard looks at the gradients too: a finite loss whose gradient is NaN
(sqrt's derivative at 0) stops or skips the step, names the parameter, and no
snapshot ever holds a non-finite weight."""

import os

import pytest
import torch

from pyfrcnn.layer import Layer
from pyfrcnn.net import load_weights_file
from pyfrcnn.solver import Solver, TrainingDiverged
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import net_text

QUIET = "tensorboard: false\ndevice: cpu\nrandom_seed: 3\n"


class SqrtAt(Layer):
    """top = bottom + sqrt(bottom - bottom) at forward pass `at` (0-based), else
    bottom. sqrt(0) = 0 keeps the loss finite; its derivative at 0 is inf, times
    the 0 of (bottom - bottom)' gives a NaN gradient to every layer below."""

    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        self.at = int(self.param_str)
        self.calls = 0

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        self.calls += 1
        if self.calls - 1 == self.at:
            return x + torch.sqrt(x - x)
        return x


def make_solver(tmp_path, lines, at):
    text = net_text().replace('layer { name: "loss"', f'''layer {{ name: "sqrt" type: "Python"
  bottom: "pred" top: "pred"
  python_param {{ module: "tests.engine.test_nan_guard" layer: "SqrtAt" param_str: "{at}" }} }}
layer {{ name: "loss"''')
    assert "SqrtAt" in text
    (tmp_path / "train.prototxt").write_text(text)
    (tmp_path / "solver.yaml").write_text("train_net: train.prototxt\n" + QUIET + lines)
    return Solver(load_solver(str(tmp_path / "solver.yaml")), run_dir=str(tmp_path / "run"),
                  dist_info=False, evaluate=None)


def reference_grad_is_nan():
    x = torch.ones(3, requires_grad=True)
    (x + torch.sqrt(x - x)).sum().backward()
    return bool(x.grad.isnan().all())


def test_the_layer_gives_a_finite_loss_and_a_nan_gradient():
    assert reference_grad_is_nan()


def test_nan_gradient_stops_with_the_last_snapshot_intact(tmp_path):
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 10\nsnapshot: 2\n"
                                   "snapshot_prefix: s/t\n", at=3)
    with pytest.raises(TrainingDiverged) as e:
        solver.solve()
    message = str(e.value)
    assert message.startswith("Iteration 3: non-finite gradient"), message
    assert "the loss is finite" in message
    assert "layer 'fc' (Convolution) blob 0 went non-finite first" in message
    assert "\n" not in message
    assert sorted(os.listdir(tmp_path / "s")) == ["t_iter_2.solverstate", "t_iter_2.weights"]
    layers = load_weights_file(str(tmp_path / "s" / "t_iter_2.weights"))
    assert all(t.isfinite().all() for t in layers["fc"])
    assert all(p.isfinite().all() for p, *_ in solver.net.learnable_params())


def test_nan_gradient_is_skipped_and_counted(tmp_path, caplog):
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 5\nnan_policy: skip\n"
                                   "snapshot_prefix: s/t\n", at=3)
    weights = []

    class Keep:
        def before_train(self, s): pass
        def before_step(self, s): pass
        def after_train(self, s): pass

        def after_step(self, s):
            weights.append((s.last.skipped, [p.detach().clone()
                                             for p, *_ in s.net.learnable_params()]))

    solver.hooks.append(Keep())
    with caplog.at_level("WARNING", logger="pyfrcnn.solver"):
        assert solver.solve() == 0
    assert [skipped for skipped, _ in weights] == [False, False, False, True, False]
    assert all(torch.equal(a, b) for a, b in zip(weights[2][1], weights[3][1]))
    assert solver.skipped_steps == 1
    assert "1 of 5 step(s) were skipped" in caplog.text
    layers = load_weights_file(str(tmp_path / "s" / "t_iter_5.weights"))
    assert all(t.isfinite().all() for t in layers["fc"])


def test_a_snapshot_with_a_non_finite_weight_is_refused(tmp_path):
    solver = make_solver(tmp_path, "base_lr: 0.01\nmax_iter: 2\nsnapshot_prefix: s/t\n", at=-1)
    solver.solve()
    before = sorted(os.listdir(tmp_path / "s"))
    with torch.no_grad():
        solver.net.layer_dict["fc"].blobs[1][0] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"refusing to write .*t_iter_2\.weights: the "
                       r"weights of layer 'fc' \(Convolution\) blob 1 are non-finite"):
        solver.snapshot()
    assert sorted(os.listdir(tmp_path / "s")) == before


def test_global_norm_matches_the_plain_sum():
    from pyfrcnn.guard import global_norm

    tensors = [torch.randn(3, 4), torch.randn(5), torch.zeros(0)]
    expected = sum(float((t.double() ** 2).sum()) for t in tensors) ** 0.5
    assert abs(float(global_norm(tensors)) - expected) < 1e-5
    assert not torch.isfinite(global_norm([torch.ones(2), torch.tensor([float("nan")])]))
