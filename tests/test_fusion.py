"""Fused BatchNorm -> Scale (-> ReLU) chains against the same net run layer by layer."""

import os

import pytest
import torch

from pyfrcnn.net import Net

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHAIN = """
input: "x" input_shape { dim: 2 dim: 3 dim: 5 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" %(bn)s }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" %(scale)s
        scale_param { bias_term: true filler { type: "uniform" min: 0.5 max: 1.5 }
                      bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
"""


def chain_net(fuse, bn="", scale=""):
    return Net(CHAIN % {"bn": bn, "scale": scale}, fuse=fuse)


def copy_weights(src, dst):
    with torch.no_grad():
        for a, b in zip(src.parameters(), dst.parameters()):
            b.copy_(a)


def run_pair(bn="", scale="", steps=3, phase="TRAIN"):
    torch.manual_seed(0)
    plain, fused = chain_net(False, bn, scale), chain_net(True, bn, scale)
    copy_weights(plain, fused)
    assert not plain._chains and list(fused._chains) == [2]  # after Input and conv
    plain.phase = fused.phase = phase
    for step in range(steps):
        x = torch.randn(2, 3, 5, 6) * (step + 1) + step
        target = torch.randn(2, 4, 5, 6)
        results = []
        for net in (plain, fused):
            net.zero_grad(set_to_none=True)
            out = net.forward(x=x)["conv"]
            loss = (out * target).sum()
            loss.backward()
            results.append((out.detach().clone(), loss.detach(),
                            [None if p.grad is None else p.grad.clone() for p in net.parameters()]))
        (y0, l0, g0), (y1, l1, g1) = results
        torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
        for a, b in zip(g0, g1):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        # the statistics blobs are BatchNorm's own arithmetic: bit for bit
        for a, b in zip(plain.layer_dict["bn"].blobs, fused.layer_dict["bn"].blobs):
            assert torch.equal(a, b)
    return plain, fused


def test_training_chain_equals_layer_by_layer():
    run_pair()


def test_test_phase_uses_the_stored_statistics():
    plain, fused = run_pair(steps=2)  # accumulate some statistics first
    plain.phase = fused.phase = "TEST"
    x = torch.randn(2, 3, 5, 6)
    a, b = plain.forward(x=x)["conv"], fused.forward(x=x)["conv"]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_global_stats_with_a_frozen_scale():
    run_pair(bn="batch_norm_param { use_global_stats: true }",
             scale="param { lr_mult: 0 } param { lr_mult: 0 }")


def test_chains_with_their_own_wiring_are_left_alone():
    # propagate_down on the Scale, a Scale that is not in place, a leaky ReLU
    text = CHAIN % {"bn": "", "scale": ""}
    variants = [
        text.replace('top: "conv" \n        scale_param', 'top: "conv" propagate_down: 0\n        scale_param'),
        text.replace('name: "scale" type: "Scale" bottom: "conv" top: "conv"',
                     'name: "scale" type: "Scale" bottom: "conv" top: "scaled"').replace(
            'name: "relu" type: "ReLU" bottom: "conv" top: "conv"',
            'name: "relu" type: "ReLU" bottom: "scaled" top: "scaled"'),
    ]
    for variant in variants:
        assert Net(variant, fuse=True)._chains == {}
    leaky = (CHAIN % {"bn": "", "scale": ""}).replace(
        'name: "relu" type: "ReLU" bottom: "conv" top: "conv" }',
        'name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }')
    (chain, last), = Net(leaky, fuse=True)._chains.values()
    assert chain.relu is None and last == 3  # BatchNorm + Scale fused, the leaky ReLU alone


def test_the_fast_net_fuses_its_five_trunk_chains():
    net = Net(os.path.join(REPO, "prototxt", "fast", "train.prototxt"), "TRAIN",
              config={"data": {"train": "shapes:train"}})
    names = [chain.name for chain, _ in net._chains.values()]
    assert names == [f"bn{k}+scale{k}+relu{k}" for k in range(1, 6)]
