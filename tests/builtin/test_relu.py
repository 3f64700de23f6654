import numpy as np
import pytest
import torch

from .layer_nets import gradcheck_net, one_layer_net


def caffe_relu(x, slope):
    y = np.empty_like(x)
    grad = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        y[i] = max(v, 0.0) + slope * min(v, 0.0)
        grad[i] = 1.0 if v > 0 else slope
    return y, grad


@pytest.mark.parametrize("slope", [0.0, 0.25, -0.5])  # exact in float32
def test_values_and_gradient_match_caffe(slope, device):
    params = f"relu_param {{ negative_slope: {slope} }}"
    net = one_layer_net("ReLU", params, x=(2, 3, 2, 2)).to(device)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    x[0, 0, 0, :] = 0.0  # Caffe's gradient at 0 is the slope
    net.to(torch.float64)
    xin = x.clone().to(device).requires_grad_()
    y = net.forward(x=xin)["out"]
    y.sum().backward()
    expected, grad = caffe_relu(x.numpy(), slope)
    np.testing.assert_allclose(y.detach().cpu().numpy(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(xin.grad.cpu().numpy(), grad, rtol=1e-12, atol=0)


def test_in_place_leaves_the_bottom_alone():
    net = one_layer_net("ReLU", tops=("x",), x=(4,))
    x = torch.tensor([-1.0, 0.5, -2.0, 3.0])
    out = net.forward(x=x)["x"]
    assert out.tolist() == [0.0, 0.5, 0.0, 3.0]
    assert x.tolist() == [-1.0, 0.5, -2.0, 3.0]


def test_shapes_and_flops():
    net = one_layer_net("ReLU", x=(None, 3, 5))
    assert net.blob_shapes["out"] == (None, 3, 5)
    layer = net.layer_dict["layer"]
    assert layer.flops([(None, 3, 5)], [(None, 3, 5)]) == 0
    assert layer.flops([(2, 3, 5)], [(2, 3, 5)]) == 30


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_gradcheck(seed, slope):
    torch.manual_seed(seed)
    x = torch.randn(2, 3, dtype=torch.float64)
    x = x + 0.1 * x.sign()  # keep away from the kink
    net = one_layer_net("ReLU", f"relu_param {{ negative_slope: {slope} }}", x=(2, 3))
    assert gradcheck_net(net, x=x)
