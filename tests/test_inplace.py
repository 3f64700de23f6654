"""Caffe's in-place pitfall: a warning at build time, and our gradient is the
correct one where Caffe's (emulated here by hand) is not."""

import logging

import numpy as np
import pytest
import torch

from pyfrcnn.inplace import caffe_inplace_chains
from pyfrcnn.io import read_net
from pyfrcnn.net import Net
from tests.conftest import REPO_DIR


def chain_net(*layers, phase="TRAIN"):
    """x (2 x 3 x 2 x 2) through the given (name, type, params) layers, all in place on x,
    then a loss-free output."""
    text = 'input: "x"\ninput_shape { dim: 2 dim: 3 dim: 2 dim: 2 }\n'
    for name, kind, params in layers:
        text += f'layer {{ name: "{name}" type: "{kind}" bottom: "x" top: "x" {params} }}\n'
    return text


RELU_SCALE = chain_net(("relu", "ReLU", ""), ("scale", "Scale", "scale_param { bias_term: true }"))


def test_relu_then_scale_in_place_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="pyfrcnn.net"):
        Net(RELU_SCALE, "TRAIN")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "layer 'relu' (ReLU) works in place on 'x'" in messages[0]
    assert "'scale' (Scale" in messages[0] and "wrong" in messages[0]
    assert ":3:" in messages[0] and ":4" in messages[0]  # the lines of both layers


def test_our_gradient_is_the_correct_one_and_caffes_is_not():
    net = Net(RELU_SCALE, "TRAIN")
    scale, bias = net.layer_dict["scale"].blobs
    with torch.no_grad():
        scale.fill_(-2.0)
        bias.fill_(0.5)
    x = torch.tensor([-1.0, 0.1, 0.2, 1.0]).repeat(3, 1).reshape(1, 3, 2, 2).repeat(2, 1, 1, 1)
    x.requires_grad_(True)
    net.forward(x=x)["x"].sum().backward()
    relu = np.maximum(x.detach().numpy(), 0)
    # the correct gradient of sum(-2 * relu(x) + 0.5): -2 where x > 0
    correct = np.where(x.detach().numpy() > 0, -2.0, 0.0)
    np.testing.assert_allclose(x.grad.numpy(), correct)
    # Caffe: ReLU's backward masks with its bottom data, which in place now holds
    # the Scale output -2 * relu(x) + 0.5, positive where relu(x) < 0.25
    caffe = np.where(-2.0 * relu + 0.5 > 0, -2.0, 0.0)
    assert not np.array_equal(caffe, correct)


@pytest.mark.parametrize("layers", [
    [("relu", "ReLU", ""), ("drop", "Dropout", "")],           # py-faster-rcnn's fc6 / fc7
    [("relu", "ReLU", ""), ("relu2", "ReLU", ""), ("drop", "Dropout", "")],
    [("scale", "Scale", "scale_param { bias_term: true }"), ("relu", "ReLU", "")],  # ResNet's order
])
def test_chains_whose_caffe_gradient_is_right_are_not_reported(layers):
    assert caffe_inplace_chains(read_net(chain_net(*layers), "TRAIN").param.layer) == []


def test_sigmoid_then_dropout_and_relu_then_dropout_then_scale_are_reported():
    sigmoid = chain_net(("sig", "Sigmoid", ""), ("drop", "Dropout", ""))
    assert caffe_inplace_chains(read_net(sigmoid, "TRAIN").param.layer) == [(1, 2)]  # index 0 is the Input layer
    later = chain_net(("relu", "ReLU", ""), ("drop", "Dropout", ""),
                      ("scale", "Scale", "scale_param { bias_term: true }"))
    assert caffe_inplace_chains(read_net(later, "TRAIN").param.layer) == [(1, 3)]


def test_test_nets_and_the_shipped_nets_are_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="pyfrcnn.net"):
        Net(RELU_SCALE, "TEST")
        for path in ("vgg16/train.prototxt", "fast/train.prototxt"):
            netdef = read_net(str(REPO_DIR / "prototxt" / path), "TRAIN")
            assert caffe_inplace_chains(netdef.param.layer) == [], path
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
