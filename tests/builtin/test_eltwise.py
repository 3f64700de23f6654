import itertools

import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net

SHAPE = (2, 3, 2)


def eltwise_net(params, n=3, shape=SHAPE):
    bottoms = [f"x{i}" for i in range(n)]
    return tiny_net(layer("Eltwise", bottoms, ["y"], f"eltwise_param {{ {params} }}"),
                    **{b: shape for b in bottoms})


def distinct_bottoms(n, seed):
    """n bottoms whose values are all different (a shuffled range), so MAX has no ties."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(n * int(np.prod(SHAPE))).reshape(n, *SHAPE) * 0.1 - 1.0
    return [torch.tensor(v) for v in values]


def eltwise_reference(op, bottoms, coeff):
    """Top and, for MAX, the index of the bottom that wins each element."""
    arrays = [b.detach().cpu().double().numpy() for b in bottoms]
    top, winner = np.empty(SHAPE), np.empty(SHAPE, dtype=int)
    for index in itertools.product(*map(range, SHAPE)):
        values = [a[index] for a in arrays]
        if op == "SUM":
            top[index] = sum(c * v for c, v in zip(coeff, values))
        elif op == "PROD":
            top[index] = np.prod(values)
        else:
            best = 0
            for i, v in enumerate(values):
                if v > values[best]:
                    best = i
            top[index], winner[index] = values[best], best
    return top, winner


@pytest.mark.parametrize("op, params, coeff", [
    ("SUM", "", [1, 1, 1]),
    ("SUM", "operation: SUM coeff: 1 coeff: -0.5 coeff: 2", [1, -0.5, 2]),
    ("PROD", "operation: PROD", None),
    ("MAX", "operation: MAX", None),
])
def test_values_against_loops(op, params, coeff, device):
    net = eltwise_net(params)
    assert net.blob_shapes["y"] == SHAPE
    bottoms = [b.float().to(device) for b in distinct_bottoms(3, seed=0)]
    y = net.forward(**{f"x{i}": b for i, b in enumerate(bottoms)})["y"]
    expected, _ = eltwise_reference(op, bottoms, coeff)
    np.testing.assert_allclose(y.cpu().numpy(), expected, rtol=1e-6, atol=1e-6)


def test_max_gradient_goes_to_the_argmax_bottom():
    net = eltwise_net("operation: MAX")
    bottoms = [b.requires_grad_() for b in distinct_bottoms(3, seed=1)]
    y = net.forward(**{f"x{i}": b for i, b in enumerate(bottoms)})["y"]
    upstream = torch.arange(1.0, 1.0 + y.numel(), dtype=y.dtype).reshape(SHAPE)
    y.backward(upstream)
    _, winner = eltwise_reference("MAX", bottoms, None)
    for i, b in enumerate(bottoms):
        np.testing.assert_array_equal(b.grad.numpy(), np.where(winner == i, upstream.numpy(), 0))


def test_max_tie_goes_to_the_first_maximal_bottom():
    net = eltwise_net("operation: MAX", n=3, shape=(2,))
    bottoms = [torch.tensor(v, requires_grad=True) for v in ([1.0, 0.0], [2.0, 5.0], [2.0, 5.0])]
    net.forward(**{f"x{i}": b for i, b in enumerate(bottoms)})["y"].sum().backward()
    assert [b.grad.tolist() for b in bottoms] == [[0, 0], [1, 1], [0, 0]]


def test_unknown_sizes():
    net = tiny_net(layer("Eltwise", ["a", "b"], ["y"]), a=(None, 3), b=(2, None))
    assert net.blob_shapes["y"] == (2, 3)
    with pytest.raises(NetError, match="bottoms differ in shape: 2x3, 2x4"):
        net.forward(a=torch.zeros(2, 3), b=torch.zeros(2, 4))


@pytest.mark.parametrize("params, n, shapes, message", [
    ("operation: PROD coeff: 1 coeff: 1", 2, None, "coeff is only for SUM, not PROD"),
    ("coeff: 1 coeff: 2", 3, None, "gives 2 coeff values for 3 bottoms"),
    ("", 2, [(2, 3), (2, 4)], "bottom 1 'x1' has shape 2x4 but bottom 0 'x0' has 2x3"),
    ("", 2, [(2, 3), (2, 3, 1)], "bottom 1 'x1' has shape 2x3x1"),
    ("", 1, None, "takes at least 2 bottoms, got 1"),
])
def test_errors(params, n, shapes, message):
    shapes = shapes or [SHAPE] * n
    bottoms = {f"x{i}": s for i, s in enumerate(shapes)}
    with pytest.raises(NetError, match="layer 'layer' \\(Eltwise\\)") as e:
        tiny_net(layer("Eltwise", list(bottoms), ["y"], f"eltwise_param {{ {params} }}"), **bottoms)
    assert message in str(e.value)


def test_flops():
    net = eltwise_net("operation: MAX")
    assert net.layer_dict["layer"].flops([SHAPE] * 3, [SHAPE]) == 2 * 12


@pytest.mark.parametrize("params", ["coeff: 0.5 coeff: -2 coeff: 1", "operation: PROD", "operation: MAX"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(params, seed):
    # distinct values 0.1 apart: MAX is smooth at each of them
    inputs = {f"x{i}": b for i, b in enumerate(distinct_bottoms(3, seed))}
    assert gradcheck_net(eltwise_net(params), ["y"], inputs, list(inputs))
