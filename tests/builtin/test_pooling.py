import math

import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net

FLT_MAX = float(np.finfo(np.float32).max)


def caffe_size(size, kernel, pad, stride, ceil=True):
    rounded = math.ceil if ceil else math.floor
    pooled = int(rounded((size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def caffe_pool(x, kernel, stride, pad, method, ceil=True):
    """Caffe's PoolingLayer::Forward_cpu, loop by loop: (top, mask)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    n_, c_, height, width = x.shape
    out_h, out_w = caffe_size(height, kh, ph, sh, ceil), caffe_size(width, kw, pw, sw, ceil)
    top = np.zeros((n_, c_, out_h, out_w))
    mask = -np.ones((n_, c_, out_h, out_w))
    for n in range(n_):
        for c in range(c_):
            for i in range(out_h):
                for j in range(out_w):
                    hstart, wstart = i * sh - ph, j * sw - pw
                    if method == "MAX":
                        hend, wend = min(hstart + kh, height), min(wstart + kw, width)
                        hstart, wstart = max(hstart, 0), max(wstart, 0)
                        best = -FLT_MAX
                        for h in range(hstart, hend):
                            for w in range(wstart, wend):
                                if x[n, c, h, w] > best:
                                    best, mask[n, c, i, j] = x[n, c, h, w], h * width + w
                        top[n, c, i, j] = best
                    else:
                        hend, wend = min(hstart + kh, height + ph), min(wstart + kw, width + pw)
                        pool_size = (hend - hstart) * (wend - wstart)
                        hstart, wstart = max(hstart, 0), max(wstart, 0)
                        hend, wend = min(hend, height), min(wend, width)
                        total = 0.0
                        for h in range(hstart, hend):
                            for w in range(wstart, wend):
                                total += x[n, c, h, w]
                        with np.errstate(all="ignore"):
                            top[n, c, i, j] = np.float64(total) / np.float64(pool_size)
    return top, mask


# (H, W, pooling_param text, kernel, stride, pad, ceil)
CASES = [
    (6, 7, "kernel_size: 2 stride: 2", (2, 2), (2, 2), (0, 0), True),
    (7, 5, "kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0), True),
    (7, 5, "kernel_size: 3 stride: 2 round_mode: FLOOR", (3, 3), (2, 2), (0, 0), False),
    (5, 6, "kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), True),
    (4, 4, "kernel_size: 3 stride: 1 pad: 2", (3, 3), (1, 1), (2, 2), True),  # pad > kernel / 2
    (6, 6, "kernel_size: 3 stride: 3 pad: 2", (3, 3), (3, 3), (2, 2), True),  # last window dropped
    (5, 9, "kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 3 pad_h: 1 pad_w: 0",
     (3, 2), (1, 3), (1, 0), True),
    (5, 5, "kernel_size: 1 stride: 3", (1, 1), (3, 3), (0, 0), True),  # a window past the input
    (6, 6, "kernel_size: 1 stride: 3", (1, 1), (3, 3), (0, 0), True),  # AVE: 0 / 0
]


def distinct_values(*shape, dtype=torch.float32):
    """No ties, so the max and its gradient are unambiguous."""
    n = math.prod(shape)
    return (torch.randperm(n).to(dtype) / n - 0.5).view(shape)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h, w, params, kernel, stride, pad, ceil", CASES)
def test_matches_caffe_loops(method, h, w, params, kernel, stride, pad, ceil, device):
    tops = ("out", "mask") if method == "MAX" else ("out",)
    net = one_layer_net("Pooling", f"pooling_param {{ pool: {method} {params} }}",
                        tops=tops, x=(2, 3, h, w)).to(device)
    torch.manual_seed(0)
    x = distinct_values(2, 3, h, w)
    out = net.forward(x=x.to(device))
    expected, mask = caffe_pool(x.double().numpy(), kernel, stride, pad, method, ceil)
    assert net.blob_shapes["out"] == (2, 3) + expected.shape[2:]
    np.testing.assert_allclose(out["out"].cpu().numpy(), expected, rtol=1e-5, atol=1e-6)
    if method == "MAX":
        np.testing.assert_array_equal(out["mask"].cpu().numpy(), mask)


def test_torch_ceil_mode_disagrees_with_caffe_without_pad():
    # Why the layer pads explicitly: torch drops a last window that starts past
    # the input even with no padding, Caffe keeps it.
    x = torch.randn(1, 1, 5, 5)
    assert torch.nn.functional.max_pool2d(x, 1, 3, ceil_mode=True).shape[-1] == 2
    assert caffe_size(5, 1, 0, 3) == 3


def test_vgg16_trunk_sizes():
    text = 'input: "data"\ninput_shape { dim: 1 dim: 1 dim: 600 dim: 1000 }\n'
    bottom = "data"
    for i in range(1, 5):
        text += (f'layer {{ name: "pool{i}" type: "Pooling" bottom: "{bottom}" top: "pool{i}" '
                 "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n")
        bottom = f"pool{i}"
    from pyfrcnn.net import Net
    net = Net(text)
    sizes = [net.blob_shapes[f"pool{i}"][2:] for i in range(1, 5)]
    assert sizes == [(300, 500), (150, 250), (75, 125), (38, 63)]
    out = net.forward(data=torch.randn(1, 1, 600, 1000))["pool4"]
    assert out.shape == (1, 1, 38, 63)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method, device):
    net = one_layer_net("Pooling", f"pooling_param {{ pool: {method} global_pooling: true }}",
                        x=(2, 3, None, None)).to(device)
    assert net.blob_shapes["out"] == (2, 3, 1, 1)
    x = torch.randn(2, 3, 4, 5, device=device)
    out = net.forward(x=x)["out"]
    expected = x.amax((2, 3)) if method == "MAX" else x.mean((2, 3))
    torch.testing.assert_close(out[:, :, 0, 0], expected)


def test_unknown_sizes_propagate():
    net = one_layer_net("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }",
                        x=(None, 4, None, 9))
    assert net.blob_shapes["out"] == (None, 4, None, 4)
    assert net.layer_dict["layer"].flops([(None, 4, None, 9)], [(None, 4, None, 4)]) == 0
    out = net.forward(x=torch.randn(1, 4, 7, 9))["out"]
    assert out.shape == (1, 4, 3, 4)


def test_flops():
    net = one_layer_net("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 }",
                        x=(2, 4, 7, 9))
    layer = net.layer_dict["layer"]
    assert layer.flops(net.bottom_shapes[1], net.top_shapes[1]) == 2 * 4 * 3 * 4 * 9


@pytest.mark.parametrize("params, message", [
    ("pool: STOCHASTIC kernel_size: 2", "STOCHASTIC pooling is not implemented"),
    ("pool: MAX", "kernel_size .* is required"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", "either kernel_size or kernel_h and kernel_w"),
    ("kernel_h: 2", "give both kernel_h and kernel_w"),
    ("kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1", "either pad or pad_h and pad_w"),
    ("kernel_size: 2 stride_w: 2", "give both stride_h and stride_w"),
    ("kernel_size: 0", "kernel size must be positive"),
    ("kernel_size: 2 stride: 0", "stride must be positive"),
    ("kernel_size: 2 pad: 2", r"pad \(2, 2\) must be smaller than the kernel"),
    ("global_pooling: true kernel_size: 2", "give no kernel size"),
    ("global_pooling: true stride: 2", "global_pooling needs pad 0 and stride 1"),
    ("kernel_size: 9", "smaller than the kernel 9x9"),
])
def test_bad_params(params, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(Pooling\).*{message}"):
        one_layer_net("Pooling", f"pooling_param {{ {params} }}", x=(1, 2, 5, 5))


def test_mask_top_is_max_only_and_bottom_must_be_4d():
    with pytest.raises(NetError, match="only MAX pooling has a second"):
        one_layer_net("Pooling", "pooling_param { pool: AVE kernel_size: 2 }",
                      tops=("out", "mask"), x=(1, 2, 5, 5))
    with pytest.raises(NetError, match="must be 4-D"):
        one_layer_net("Pooling", "pooling_param { kernel_size: 2 }", x=(2, 5, 5))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method, params", [
    ("MAX", "kernel_size: 3 stride: 2 pad: 1"),
    ("AVE", "kernel_size: 3 stride: 2 pad: 1"),
    ("AVE", "kernel_h: 3 kernel_w: 2 stride: 1 pad_h: 2 pad_w: 1"),
])
def test_gradcheck(method, params, seed):
    torch.manual_seed(seed)
    net = one_layer_net("Pooling", f"pooling_param {{ pool: {method} {params} }}", x=(1, 2, 4, 5))
    assert gradcheck_net(net, x=distinct_values(1, 2, 4, 5, dtype=torch.float64))


@pytest.mark.parametrize("h, w, params, kernel, stride, pad, ceil", CASES)
def test_max_fast_path_equals_caffe_and_the_padded_path(h, w, params, kernel, stride, pad, ceil,
                                                        monkeypatch):
    """One-top MAX pooling takes max_pool2d's own padding where its windows are
    Caffe's: the same maxima as Caffe's loops, and bit for bit the padded path's
    values and gradients, ties included (values on a coarse grid)."""
    net = one_layer_net("Pooling", f"pooling_param {{ pool: MAX {params} }}", x=(2, 3, h, w))
    layer = net.layer_dict["layer"]
    torch.manual_seed(0)
    x = torch.randint(-3, 4, (2, 3, h, w)).float()  # many ties
    expected, _ = caffe_pool(x.double().numpy(), kernel, stride, pad, "MAX", ceil)
    runs = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(layer, "_torch_windows", lambda *a: False)
        leaf = x.clone().requires_grad_()
        out = net.forward(x=leaf)["out"]
        out.backward(torch.arange(out.numel(), dtype=torch.float32).view(out.shape))
        runs.append((out.detach(), leaf.grad))
    np.testing.assert_allclose(runs[0][0].numpy(), expected, rtol=0, atol=0)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_the_fast_net_poolings_take_the_fast_path():
    net = one_layer_net("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
                        x=(1, 24, 160, 214))
    layer = net.layer_dict["layer"]
    assert layer._torch_windows(160, 214, *net.blob_shapes["out"][2:])
    assert layer._torch_windows(20, 27, 10, 14)
