import math

import pytest
import torch

from .layer_nets import gradcheck_net, one_layer_net


def test_values_match_the_formula(device):
    net = one_layer_net("TanH", x=(2, 5)).to(device)
    x = torch.linspace(-3, 3, 10).view(2, 5)
    y = net.forward(x=x.to(device))["out"].cpu()
    expected = torch.tensor([(math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v))
                             for v in x.flatten().tolist()]).view(2, 5)
    torch.testing.assert_close(y, expected)


def test_shapes_and_flops():
    net = one_layer_net("TanH", x=(4, None))
    assert net.blob_shapes["out"] == (4, None)
    assert net.layer_dict["layer"].flops([(4, None)], [(4, None)]) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    assert gradcheck_net(one_layer_net("TanH", x=(2, 3)), x=torch.randn(2, 3))
