import math

import pytest
import torch

from .layer_nets import gradcheck_net, one_layer_net


def test_values_match_the_formula(device):
    net = one_layer_net("Sigmoid", x=(2, 5)).to(device)
    x = torch.linspace(-6, 6, 10).view(2, 5)
    y = net.forward(x=x.to(device))["out"].cpu()
    expected = torch.tensor([1.0 / (1.0 + math.exp(-v)) for v in x.flatten().tolist()]).view(2, 5)
    torch.testing.assert_close(y, expected)
    assert net.forward(x=torch.zeros(2, 5, device=device))["out"].eq(0.5).all()


def test_shapes_and_flops():
    net = one_layer_net("Sigmoid", x=(None, 4))
    assert net.blob_shapes["out"] == (None, 4)
    assert net.layer_dict["layer"].flops([(3, 4)], [(3, 4)]) == 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    assert gradcheck_net(one_layer_net("Sigmoid", x=(2, 3)), x=torch.randn(2, 3))
