import itertools
import math

import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def softmax_net(shape, params=""):
    return tiny_net(layer("Softmax", ["x"], ["y"], f"softmax_param {{ {params} }}"), x=shape)


def softmax_reference(x, axis):
    x = x.detach().cpu().double().numpy()
    top = np.empty_like(x)
    others = [range(s) if a != axis else [slice(None)] for a, s in enumerate(x.shape)]
    for index in itertools.product(*others):
        row = x[index]
        exps = [math.exp(v - max(row)) for v in row]
        top[index] = [e / sum(exps) for e in exps]
    return top


@pytest.mark.parametrize("params, axis", [("", 1), ("axis: 0", 0), ("axis: -1", 3), ("axis: 2", 2)])
def test_values_against_loops(params, axis, device):
    x = torch.randn(2, 3, 4, 2, device=device) * 3
    net = softmax_net((2, 3, 4, 2), params)
    assert net.blob_shapes["y"] == (2, 3, 4, 2)
    y = net.forward(x=x)["y"]
    np.testing.assert_allclose(y.cpu().numpy(), softmax_reference(x, axis), rtol=1e-5, atol=1e-7)


def test_unknown_sizes():
    net = softmax_net((1, 18, None, None))
    assert net.blob_shapes["y"] == (1, 18, None, None)
    assert net.forward(x=torch.zeros(1, 18, 2, 3))["y"].shape == (1, 18, 2, 3)


def test_axis_out_of_range():
    with pytest.raises(NetError, match="layer 'layer' \\(Softmax\\).*axis 4 is out of range for a 4-D blob"):
        softmax_net((2, 3, 4, 2), "axis: 4")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    assert gradcheck_net(softmax_net((2, 3, 2)), ["y"], {"x": torch.randn(2, 3, 2)}, ["x"])
