"""Each lr policy at hand-computed points (Caffe's GetLearningRate), and warmup."""

import math

import pytest

from pyfrcnn import lr_policy
from pyfrcnn.lr_policy import learning_rate


@pytest.mark.parametrize("policy, kwargs, expected", [
    ("fixed", {}, {0: 0.01, 7: 0.01, 1000: 0.01}),
    # 0.01 * 0.1 ** floor(step / 3)
    ("step", {"gamma": 0.1, "stepsize": 3}, {0: 0.01, 2: 0.01, 3: 0.001, 5: 0.001, 6: 0.0001}),
    # stepvalues 2, 5: one decay at 2, a second at 5
    ("multistep", {"gamma": 0.1, "stepvalue": (2, 5)},
     {0: 0.01, 1: 0.01, 2: 0.001, 4: 0.001, 5: 0.0001, 99: 0.0001}),
    ("exp", {"gamma": 0.5}, {0: 0.01, 1: 0.005, 3: 0.00125}),
    # 0.01 * (1 + 0.1 * 10) ^ -0.75 = 0.01 * 2 ^ -0.75
    ("inv", {"gamma": 0.1, "power": 0.75}, {0: 0.01, 10: 0.005946035575013605}),
    # 0.01 * (1 - 5 / 10) ^ 2
    ("poly", {"power": 2.0, "max_iter": 10}, {0: 0.01, 5: 0.0025, 10: 0.0}),
    # 0.01 / (1 + e^(0.5 * (step - 4)))
    ("sigmoid", {"gamma": -0.5, "stepsize": 4},
     {4: 0.005, 6: 0.01 / (1 + math.e), 2: 0.01 / (1 + 1 / math.e)}),
])
def test_policy_values(policy, kwargs, expected):
    for step, rate in expected.items():
        assert learning_rate(step, 0.01, policy, **kwargs) == pytest.approx(rate, rel=1e-12, abs=1e-15), step


def test_multistep_unsorted_lookup_matches_count():
    # The pure function agrees with Caffe's incremental current_step_ counter.
    stepvalue, current, rates = (3, 4, 9), 0, []
    for step in range(12):
        if current < len(stepvalue) and step >= stepvalue[current]:
            current += 1
        rates.append(0.1 * 0.5 ** current)
    assert [learning_rate(s, 0.1, "multistep", gamma=0.5, stepvalue=stepvalue)
            for s in range(12)] == pytest.approx(rates)


def test_warmup_is_linear_then_off():
    kw = dict(lr_policy="step", gamma=0.1, stepsize=10, warmup_iters=4, warmup_factor=0.2)
    assert learning_rate(0, 1.0, **kw) == pytest.approx(0.2)
    assert learning_rate(2, 1.0, **kw) == pytest.approx(0.6)      # 0.2 * 0.5 + 0.5
    assert learning_rate(3, 1.0, **kw) == pytest.approx(0.8)
    assert learning_rate(4, 1.0, **kw) == pytest.approx(1.0)
    assert learning_rate(12, 1.0, **kw) == pytest.approx(0.1)


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown lr_policy 'cosine'"):
        learning_rate(0, 0.1, "cosine")


def test_policies_are_pure():
    # Same inputs, same output, whatever was asked before.
    a = [lr_policy.learning_rate(s, 0.1, "multistep", gamma=0.1, stepvalue=(5,)) for s in (9, 1, 9)]
    assert a == pytest.approx([0.01, 0.1, 0.01])
    assert a[0] == a[2]
