import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net


def caffe_lrn_across(x, size, alpha, beta, k):
    """Caffe's test_lrn_layer.cpp ReferenceLRNForward, ACROSS_CHANNELS."""
    y = np.empty_like(x)
    n_, c_, h_, w_ = x.shape
    pre = (size - 1) // 2
    for n in range(n_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    start, end = max(c - pre, 0), min(c - pre + size, c_)
                    scale = k
                    for i in range(start, end):
                        scale += x[n, i, h, w] ** 2 * alpha / size
                    y[n, c, h, w] = x[n, c, h, w] * scale ** -beta
    return y


def caffe_lrn_within(x, size, alpha, beta):
    """Caffe's WITHIN_CHANNEL: 1 + alpha / size^2 * the zero-padded square sum."""
    y = np.empty_like(x)
    n_, c_, h_, w_ = x.shape
    pre = (size - 1) // 2
    for n in range(n_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    total = 0.0
                    for i in range(max(h - pre, 0), min(h - pre + size, h_)):
                        for j in range(max(w - pre, 0), min(w - pre + size, w_)):
                            total += x[n, c, i, j] ** 2
                    y[n, c, h, w] = x[n, c, h, w] * (1 + alpha / size ** 2 * total) ** -beta
    return y


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1.0, 0.75, 1.0), (3, 0.5, 0.5, 2.0), (1, 2.0, 1.0, 1.0)])
def test_across_channels_matches_caffe(size, alpha, beta, k, device):
    params = f"lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} }}"
    net = one_layer_net("LRN", params, x=(2, 7, 3, 2)).to(device)
    x = torch.randn(2, 7, 3, 2)
    y = net.forward(x=x.to(device))["out"].cpu().numpy()
    np.testing.assert_allclose(y, caffe_lrn_across(x.double().numpy(), size, alpha, beta, k),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [3, 5])
def test_within_channel_matches_caffe_and_ignores_k(size, device):
    params = f"lrn_param {{ norm_region: WITHIN_CHANNEL local_size: {size} alpha: 1.5 beta: 0.75 k: 7 }}"
    net = one_layer_net("LRN", params, x=(2, 2, 5, 4)).to(device)
    x = torch.randn(2, 2, 5, 4)
    y = net.forward(x=x.to(device))["out"].cpu().numpy()
    np.testing.assert_allclose(y, caffe_lrn_within(x.double().numpy(), size, 1.5, 0.75),
                               rtol=1e-5, atol=1e-6)


def test_shapes_and_flops():
    net = one_layer_net("LRN", "lrn_param { local_size: 5 }", x=(None, 96, None, None))
    assert net.blob_shapes["out"] == (None, 96, None, None)
    layer = net.layer_dict["layer"]
    assert layer.flops([(None, 96, None, None)], [(None, 96, None, None)]) == 0
    assert layer.flops([(1, 2, 3, 4)], [(1, 2, 3, 4)]) == 24 * 7


@pytest.mark.parametrize("params, shape, message", [
    ("lrn_param { local_size: 4 }", (1, 3, 2, 2), "local_size must be odd, got 4"),
    ("lrn_param { local_size: 0 }", (1, 3, 2, 2), "local_size must be odd, got 0"),
    ("", (3, 2, 2), "must be 4-D"),
])
def test_bad_params(params, shape, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(LRN\).*{message}"):
        one_layer_net("LRN", params, x=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_gradcheck(seed, region):
    torch.manual_seed(seed)
    params = f"lrn_param {{ norm_region: {region} local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }}"
    net = one_layer_net("LRN", params, x=(1, 4, 3, 2))
    assert gradcheck_net(net, x=torch.randn(1, 4, 3, 2))


def test_windows_larger_than_the_blob_as_caffe():
    """Fewer channels (or a smaller map) than local_size: Caffe pads with zeros."""
    net = one_layer_net("LRN", "lrn_param { local_size: 5 alpha: 1.0 beta: 0.75 }", x=(1, 2, 3, 3))
    x = torch.randn(1, 2, 3, 3)
    np.testing.assert_allclose(net.forward(x=x)["out"].numpy(),
                               caffe_lrn_across(x.double().numpy(), 5, 1.0, 0.75, 1.0), rtol=1e-5, atol=1e-6)
    net = one_layer_net("LRN", "lrn_param { norm_region: WITHIN_CHANNEL local_size: 5 }", x=(1, 1, 2, 3))
    x = torch.randn(1, 1, 2, 3)
    np.testing.assert_allclose(net.forward(x=x)["out"].numpy(),
                               caffe_lrn_within(x.double().numpy(), 5, 1.0, 0.75), rtol=1e-5, atol=1e-6)
