import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError
from pyfrcnn.net import Net

from .layer_nets import gradcheck_net, one_layer_net


def per_channel_values(x, c):
    """All values of channel c of an N x C x ... array, in a plain list."""
    return [x[(n, c) + rest] for n in range(x.shape[0]) for rest in np.ndindex(*x.shape[2:])]


class CaffeBatchNorm:
    """Caffe's BatchNormLayer::Forward_cpu, one channel at a time."""

    def __init__(self, channels, fraction, eps):
        self.mean, self.var, self.factor = np.zeros(channels), np.zeros(channels), 0.0
        self.fraction, self.eps = fraction, eps

    def forward(self, x, use_global):
        y = np.empty_like(x)
        channels = x.shape[1]
        self.factor = self.factor if use_global else self.factor * self.fraction + 1
        for c in range(channels):
            values = per_channel_values(x, c)
            m = len(values)
            if use_global:
                scale = 0.0 if self.factor == 0 else 1.0 / self.factor
                mean, var = self.mean[c] * scale, self.var[c] * scale
            else:
                mean = sum(values) / m
                var = sum((v - mean) ** 2 for v in values) / m
                self.mean[c] = self.fraction * self.mean[c] + mean
                self.var[c] = self.fraction * self.var[c] + var * (m / (m - 1) if m > 1 else 1)
            for n in range(x.shape[0]):
                for rest in np.ndindex(*x.shape[2:]):
                    y[(n, c) + rest] = (x[(n, c) + rest] - mean) / np.sqrt(var + self.eps)
        return y


def test_training_normalises_and_accumulates_as_caffe(device):
    net = one_layer_net("BatchNorm", "batch_norm_param { moving_average_fraction: 0.5 eps: 0.001 }",
                        x=(None, 2, 2, 3)).to(device)
    layer = net.layer_dict["layer"]
    reference = CaffeBatchNorm(2, 0.5, 0.001)
    for step in range(3):
        x = torch.randn(3, 2, 2, 3) * (step + 1) + step
        y = net.forward(x=x.to(device))["out"].detach().cpu().numpy()
        np.testing.assert_allclose(y, reference.forward(x.double().numpy(), False), rtol=1e-4, atol=1e-5)
        mean, var, factor = (b.detach().cpu().double().numpy() for b in layer.blobs)
        np.testing.assert_allclose(mean, reference.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, reference.var, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(factor, [reference.factor], rtol=1e-6)
    assert reference.factor == 1.75  # 1, 1.5, 1.75

    # TEST phase uses the accumulated statistics divided by the factor.
    net.phase = "TEST"
    x = torch.randn(2, 2, 2, 3)
    y = net.forward(x=x.to(device))["out"].detach().cpu().numpy()
    np.testing.assert_allclose(y, reference.forward(x.double().numpy(), True), rtol=1e-4, atol=1e-5)
    assert float(layer.blobs[2][0]) == pytest.approx(1.75), "global mode leaves the statistics alone"


def test_zero_factor_means_zero_statistics():
    net = one_layer_net("BatchNorm", "batch_norm_param { use_global_stats: true eps: 0.25 }", x=(2, 3))
    layer = net.layer_dict["layer"]
    with torch.no_grad():
        layer.blobs[0].fill_(5.0)
        layer.blobs[1].fill_(7.0)
    x = torch.randn(2, 3)
    torch.testing.assert_close(net.forward(x=x)["out"], x / 0.5)


def test_use_global_stats_overrides_the_phase():
    net = one_layer_net("BatchNorm", "batch_norm_param { use_global_stats: false }", phase="TEST",
                        x=(4, 2))
    x = torch.randn(4, 2)
    y = net.forward(x=x)["out"]
    torch.testing.assert_close(y.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert float(net.layer_dict["layer"].blobs[2][0]) == 1.0


def test_one_axis_bottom_is_one_channel():
    net = one_layer_net("BatchNorm", x=(5,))
    layer = net.layer_dict["layer"]
    assert [tuple(b.shape) for b in layer.blobs] == [(1,), (1,), (1,)]
    x = torch.randn(5)
    y = net.forward(x=x)["out"]
    torch.testing.assert_close(y, (x - x.mean()) / (x.var(unbiased=False) + 1e-5).sqrt())
    torch.testing.assert_close(layer.blobs[1], x.var(unbiased=True).view(1).detach())


def test_blobs_are_frozen_statistics():
    net = one_layer_net("BatchNorm", x=(2, 4, 3, 3))
    layer = net.layer_dict["layer"]
    assert [tuple(b.shape) for b in layer.blobs] == [(4,), (4,), (1,)]
    assert not any(b.requires_grad for b in layer.blobs)
    assert all(b.eq(0).all() for b in layer.blobs)
    assert [lr for _, lr, _, _ in net.learnable_params()] == [0.0, 0.0, 0.0]


def test_shapes():
    net = one_layer_net("BatchNorm", x=(None, 4, None, None))
    assert net.blob_shapes["out"] == (None, 4, None, None)
    assert net.layer_dict["layer"].flops([(None, 4, None, None)], [(None, 4, None, None)]) == 0


@pytest.mark.parametrize("params, shape, message", [
    ("", (2, None, 3), "unknown channel count"),
    ("param { lr_mult: 1 }", (2, 3), r"blob 0 \(mean\) holds statistics.*lr_mult must be 0, got 1"),
    ("param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0.5 }", (2, 3),
     r"blob 2 \(moving-average factor\)"),
])
def test_bad_params(params, shape, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(BatchNorm\).*{message}"):
        one_layer_net("BatchNorm", params, x=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_gradcheck(seed, phase):
    torch.manual_seed(seed)
    net = one_layer_net("BatchNorm", phase=phase, x=(3, 2, 2))
    with torch.no_grad():
        layer = net.layer_dict["layer"]
        layer.blobs[0].copy_(torch.randn(2))
        layer.blobs[1].copy_(torch.rand(2) + 0.5)
        layer.blobs[2].fill_(2.0)
    assert gradcheck_net(net, x=torch.randn(3, 2, 2))


def test_resnet_block_builds_and_runs():
    text = '''
    input: "data"
    input_shape { dim: 2 dim: 3 dim: 5 dim: 5 }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 3 kernel_size: 3 pad: 1 bias_term: false
                                weight_filler { type: "msra" } } }
    layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
    layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
            scale_param { bias_term: true filler { type: "constant" value: 2 }
                          bias_filler { type: "constant" value: 0.5 } } }
    layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
    layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "conv" top: "sum" }
    '''
    net = Net(text)
    x = torch.randn(2, 3, 5, 5)
    out = net.forward(data=x)["sum"]
    conv = torch.nn.functional.conv2d(x, net.params["conv"][0], padding=1)
    normed = (conv - conv.mean((0, 2, 3), keepdim=True)) / (
        conv.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(out, x + torch.relu(2 * normed + 0.5), rtol=1e-4, atol=1e-4)
