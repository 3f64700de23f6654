"""Caffe's update rules against hand-computed references in plain Python floats.

Each test runs four updates of a 3-element parameter with fixed gradients
across an lr step boundary (lr_policy step, stepsize 2, gamma 0.1), with
lr_mult 2 and decay_mult 0.5, and compares with the rule written out per
element as in Caffe's sgd_solver.cpp, nesterov_solver.cpp, adagrad_solver.cpp,
rmsprop_solver.cpp, adadelta_solver.cpp and adam_solver.cpp.
"""

import math
import types

import pytest
import torch

from pyfrcnn.lr_policy import learning_rate
from pyfrcnn.sgd import UPDATERS, clip_gradients, make_updater

W0 = [0.5, -1.0, 2.0]
GRADS = [[0.1, -0.2, 0.3], [0.4, 0.0, -0.1], [-0.3, 0.2, 0.2], [0.05, -0.5, 0.25]]
LR_MULT, DECAY_MULT = 2.0, 0.5


def config(**kw):
    base = dict(type="SGD", momentum=0.9, momentum2=0.999, delta=1e-8, rms_decay=0.98,
                weight_decay=0.01, regularization_type="L2", clip_gradients=-1.0, iter_size=1)
    base.update(kw)
    return types.SimpleNamespace(**base)


def rate(step):
    return learning_rate(step, 0.1, "step", gamma=0.1, stepsize=2)


def run_ours(cfg, grads=GRADS, frozen=False):
    p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64))
    extra = torch.nn.Parameter(torch.ones(2, dtype=torch.float64), requires_grad=not frozen)
    params = [(p, LR_MULT, DECAY_MULT, "fc/0"), (extra, 0.0, 1.0, "fc/1")]
    updater = make_updater(params, cfg)
    for step, g in enumerate(grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
        updater.apply(rate(step), step)
    return p.detach().tolist(), extra.detach().tolist(), updater


def reference(cfg, rule, grads=GRADS):
    """The per-element loop; `rule(state, g, w, local_rate, step)` returns the update."""
    w = list(W0)
    state = [dict() for _ in w]
    for step, gs in enumerate(grads):
        local_rate = rate(step) * LR_MULT
        local_decay = cfg.weight_decay * DECAY_MULT
        for i, g in enumerate(gs):
            g = g / cfg.iter_size
            g += local_decay * (w[i] if cfg.regularization_type == "L2" else math.copysign(1.0, w[i]) if w[i] else 0.0)
            w[i] -= rule(state[i], g, w[i], local_rate, step)
    return w


def sgd_rule(cfg):
    def rule(s, g, w, lr, step):
        s["h"] = cfg.momentum * s.get("h", 0.0) + lr * g
        return s["h"]
    return rule


def nesterov_rule(cfg):
    def rule(s, g, w, lr, step):
        old = s.get("h", 0.0)
        s["h"] = cfg.momentum * old + lr * g
        return (1 + cfg.momentum) * s["h"] - cfg.momentum * old
    return rule


def adagrad_rule(cfg):
    def rule(s, g, w, lr, step):
        s["h"] = s.get("h", 0.0) + g * g
        return lr * g / (math.sqrt(s["h"]) + cfg.delta)
    return rule


def rmsprop_rule(cfg):
    def rule(s, g, w, lr, step):
        s["h"] = cfg.rms_decay * s.get("h", 0.0) + (1 - cfg.rms_decay) * g * g
        return lr * g / (math.sqrt(s["h"]) + cfg.delta)
    return rule


def adadelta_rule(cfg):
    def rule(s, g, w, lr, step):
        m, d = cfg.momentum, cfg.delta
        s["g2"] = m * s.get("g2", 0.0) + (1 - m) * g * g
        dx = g * math.sqrt((s.get("dx2", 0.0) + d) / (s["g2"] + d))
        s["dx2"] = m * s.get("dx2", 0.0) + (1 - m) * dx * dx
        return lr * dx
    return rule


def adam_rule(cfg):
    def rule(s, g, w, lr, step):
        b1, b2, t = cfg.momentum, cfg.momentum2, step + 1
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        correction = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return lr * correction * s["m"] / (math.sqrt(s["v"]) + cfg.delta)
    return rule


CASES = [
    ("SGD", {}, sgd_rule),
    ("SGD", {"regularization_type": "L1", "weight_decay": 0.2}, sgd_rule),
    ("SGD", {"iter_size": 2}, sgd_rule),
    ("Nesterov", {}, nesterov_rule),
    ("AdaGrad", {"momentum": 0.0}, adagrad_rule),
    ("RMSProp", {"momentum": 0.0, "delta": 1e-6}, rmsprop_rule),
    ("AdaDelta", {"momentum": 0.95, "delta": 1e-6}, adadelta_rule),
    ("Adam", {"momentum": 0.9, "momentum2": 0.999}, adam_rule),
]


@pytest.mark.parametrize("solver_type, kw, rule", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1]) or 'default'}" for c in CASES])
def test_update_matches_hand_reference(solver_type, kw, rule):
    cfg = config(type=solver_type, **kw)
    ours, _, _ = run_ours(cfg)
    assert ours == pytest.approx(reference(cfg, rule(cfg)), rel=1e-12, abs=1e-14)


def test_every_solver_type_is_covered():
    assert {c[0] for c in CASES} == set(UPDATERS)


def test_caffe_sgd_differs_from_torch_style_after_lr_step():
    # Caffe keeps the rate inside the history; torch.optim.SGD (v = m v + g;
    # w -= lr v) applies it outside. Equal while the rate is constant, not after.
    cfg = config(weight_decay=0.0)

    def torch_style(grads):
        w, v = list(W0), [0.0] * len(W0)
        for step, gs in enumerate(grads):
            lr = rate(step) * LR_MULT
            for i, g in enumerate(gs):
                v[i] = 0.9 * v[i] + g
                w[i] -= lr * v[i]
        return w

    assert run_ours(cfg, GRADS[:2])[0] == pytest.approx(torch_style(GRADS[:2]), rel=1e-12)
    assert run_ours(cfg)[0] != pytest.approx(torch_style(GRADS), rel=1e-6)


def test_frozen_params_untouched_and_zero_grad_still_decays():
    cfg = config()
    _, extra_frozen, updater = run_ours(cfg, frozen=True)
    assert extra_frozen == [1.0, 1.0]
    assert list(updater.history) == ["fc/0"]
    # A trainable param that got no gradient is treated as a zero gradient:
    # weight decay and momentum still move it (lr_mult 0 here, so it stays).
    _, extra, updater = run_ours(cfg)
    assert extra == [1.0, 1.0] and "fc/1" in updater.history


def test_clip_gradients_global_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert clip_gradients([a, b], 2.5) == pytest.approx(5.0)
    assert a.tolist() == pytest.approx([1.5, 0.0]) and b.tolist() == pytest.approx([2.0])
    c = torch.tensor([0.3, 0.4])
    assert clip_gradients([c], 1.0) == pytest.approx(0.5) and c.tolist() == pytest.approx([0.3, 0.4])
    assert clip_gradients([c], -1.0) is None


def test_clipping_comes_before_iter_size_normalisation():
    # Caffe clips the accumulated gradient, then divides by iter_size.
    cfg = config(weight_decay=0.0, momentum=0.0, clip_gradients=1.0, iter_size=2)
    p = torch.nn.Parameter(torch.tensor([0.0, 0.0], dtype=torch.float64))
    updater = make_updater([(p, 1.0, 1.0, "w")], cfg)
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)   # norm 5 -> clipped to 1
    updater.apply(0.1, 0)
    assert p.detach().tolist() == pytest.approx([-0.1 * 0.6 / 2, -0.1 * 0.8 / 2])


def test_history_state_round_trip():
    cfg = config(type="Adam")
    _, _, updater = run_ours(cfg)
    state = updater.state_dict()
    assert set(state) == {"fc/0", "fc/1"} and len(state["fc/0"]) == 2
    fresh = make_updater([(torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)), 1, 1, "fc/0"),
                          (torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)), 1, 1, "fc/1")], cfg)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.history["fc/0"][1], updater.history["fc/0"][1])
    with pytest.raises(Exception, match="no Adam history for fc/1"):
        fresh.load_state_dict({"fc/0": state["fc/0"]})


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
@pytest.mark.parametrize("regularization", ["L2", "L1"])
def test_multi_tensor_update_equals_plain_bit_for_bit(solver_type, regularization):
    """The grouped foreach update against the parameter-by-parameter one, over
    parameters of several shapes and (lr_mult, decay_mult) groups."""
    torch.manual_seed(0)
    shapes = [(4, 3, 3, 3), (4,), (7, 5), (7,), (2, 2), (3,)]
    mults = [(1.0, 1.0), (2.0, 0.0), (1.0, 1.0), (2.0, 0.0), (0.1, 1.0), (0.1, 1.0)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(5)]
    results = []
    for single in (True, False):
        cfg = config(type=solver_type, regularization_type=regularization, iter_size=2,
                     single_tensor_updates=single)
        params = [torch.nn.Parameter(w.clone()) for w in start]
        updater = make_updater([(p, lr, d, f"l{i}/0") for i, (p, (lr, d)) in
                                enumerate(zip(params, mults))], cfg)
        for step, gs in enumerate(grads):
            for p, g in zip(params, gs):
                p.grad = g.clone()
            updater.apply(rate(step), step)
        results.append(([p.detach().clone() for p in params],
                        {k: [h.clone() for h in v] for k, v in updater.history.items()}))
    (plain, plain_hist), (multi, multi_hist) = results
    for a, b in zip(plain, multi):
        assert torch.equal(a, b)
    for name in plain_hist:
        for a, b in zip(plain_hist[name], multi_hist[name]):
            assert torch.equal(a, b)
