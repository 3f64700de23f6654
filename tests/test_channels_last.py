"""Net(channels_last=True) against the same net in the N x C x H x W layout."""

import os

import pytest
import torch

from pyfrcnn.net import Net
from pyfrcnn.solver_config import load_solver

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRUNK = """
input: "x" input_shape { dim: 2 dim: 3 dim: 19 dim: 24 }
input: "target" input_shape { dim: 2 dim: 6 dim: 3 dim: 4 }
layer { name: "conv1" type: "Convolution" bottom: "x" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 bias_term: false
                            weight_filler { type: "msra" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true filler { type: "uniform" min: 0.5 max: 1.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 12 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "score" type: "Convolution" bottom: "pool2" top: "score"
        convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SmoothL1Loss" bottom: "score" bottom: "target" top: "loss" loss_weight: 1 }
"""


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "layer by layer"])
def test_channels_last_trunk_equals_the_plain_layout(fuse):
    torch.manual_seed(0)
    plain, last = Net(TRUNK, fuse=fuse), Net(TRUNK, fuse=fuse, channels_last=True)
    last.load_state_dict(plain.state_dict())
    for step in range(3):  # BatchNorm's statistics accumulate alike
        x, target = torch.randn(2, 3, 19, 24) * (step + 1), torch.randn(2, 6, 3, 4)
        results = []
        for net in (plain, last):
            net.zero_grad(set_to_none=True)
            net.forward(x=x, target=target)
            loss = net.backward()
            results.append((loss, dict(net.blobs), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
        (loss0, blobs0, grads0), (loss1, blobs1, grads1) = results
        for name in ("conv1", "pool1", "conv2", "pool2", "score"):
            assert blobs1[name].is_contiguous(memory_format=torch.channels_last)
            assert not blobs1[name].is_contiguous()
            assert blobs0[name].is_contiguous()
            torch.testing.assert_close(blobs1[name], blobs0[name], rtol=1e-5, atol=1e-5)
        assert blobs1["x"] is x  # the input itself is not converted
        torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-6)
        assert sorted(grads1) == sorted(grads0) and len(grads0) == 7  # 3 weights, 2 biases, the Scale's 2
        for name, grad in grads0.items():
            torch.testing.assert_close(grads1[name], grad, rtol=1e-4, atol=1e-5)
    for a, b in zip(plain.layer_dict["bn1"].blobs, last.layer_dict["bn1"].blobs):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_solver_key_reaches_the_train_net():
    path = os.path.join(REPO, "solvers", "shapes_solver.yaml")
    assert load_solver(path, ["channels_last=false"]).channels_last is False
    assert load_solver(path, ["channels_last=true"]).channels_last is True
