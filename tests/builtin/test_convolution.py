import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net

FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


def slow_conv(x, weight, bias, stride, pad, dilation, group):
    """Caffe's convolution, one output value at a time."""
    n_, c_, height, width = x.shape
    o_, cg, kh_, kw_ = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    out_h = (height + 2 * ph - (dh * (kh_ - 1) + 1)) // sh + 1
    out_w = (width + 2 * pw - (dw * (kw_ - 1) + 1)) // sw + 1
    y = np.zeros((n_, o_, out_h, out_w))
    for n in range(n_):
        for o in range(o_):
            g = o // (o_ // group)
            for i in range(out_h):
                for j in range(out_w):
                    total = bias[o] if bias is not None else 0.0
                    for c in range(cg):
                        for a in range(kh_):
                            for b in range(kw_):
                                h, w = i * sh - ph + a * dh, j * sw - pw + b * dw
                                if 0 <= h < height and 0 <= w < width:
                                    total += x[n, g * cg + c, h, w] * weight[o, c, a, b]
                    y[n, o, i, j] = total
    return y


# (convolution_param text, C, O, kernel, stride, pad, dilation, group)
CASES = [
    ("kernel_size: 3 pad: 1", 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ("kernel_size: 3 stride: 2", 2, 3, (3, 3), (2, 2), (0, 0), (1, 1), 1),
    ("kernel_size: 3 dilation: 2 pad: 2", 2, 2, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    ("kernel_size: 1 group: 2", 4, 6, (1, 1), (1, 1), (0, 0), (1, 1), 2),
    ("kernel_size: 3 pad: 1 stride: 2 group: 3", 3, 3, (3, 3), (2, 2), (1, 1), (1, 1), 3),
    ("kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 2 stride_h: 2 stride_w: 1", 2, 3,
     (3, 1), (2, 1), (1, 2), (1, 1), 1),
    ("kernel_size: 3 kernel_size: 2 pad: 0 pad: 1 stride: 1 stride: 2 dilation: 1 dilation: 2",
     2, 2, (3, 2), (1, 2), (0, 1), (1, 2), 1),
    ("kernel_size: 2 bias_term: false", 2, 2, (2, 2), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("params, c, o, kernel, stride, pad, dilation, group", CASES)
def test_matches_loops(params, c, o, kernel, stride, pad, dilation, group, device):
    net = one_layer_net("Convolution", f"convolution_param {{ num_output: {o} {params} {FILLERS} }}",
                        x=(2, c, 6, 7)).to(device)
    layer = net.layer_dict["layer"]
    bias = "bias_term: false" not in params
    assert tuple(layer.blobs[0].shape) == (o, c // group, *kernel)
    assert len(layer.blobs) == (2 if bias else 1)
    x = torch.randn(2, c, 6, 7)
    y = net.forward(x=x.to(device))["out"].detach().cpu().numpy()
    blobs = [b.detach().cpu().double().numpy() for b in layer.blobs]
    expected = slow_conv(x.double().numpy(), blobs[0], blobs[1] if bias else None,
                         stride, pad, dilation, group)
    assert net.blob_shapes["out"] == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_default_fillers_are_zero_and_fillers_apply():
    layer = one_layer_net("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }",
                          x=(1, 3, 2, 2)).layer_dict["layer"]
    assert all(b.eq(0).all() for b in layer.blobs)
    params = ('convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "constant" value: 2 } '
              'bias_filler { type: "constant" value: 3 } }')
    layer = one_layer_net("Convolution", params, x=(1, 3, 2, 2)).layer_dict["layer"]
    assert layer.blobs[0].eq(2).all() and layer.blobs[1].eq(3).all()


def test_unknown_sizes_propagate_and_flops():
    params = "convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 group: 2 }"
    net = one_layer_net("Convolution", params, x=(None, 4, None, 10))
    assert net.blob_shapes["out"] == (None, 8, None, 5)
    layer = net.layer_dict["layer"]
    assert layer.flops([(None, 4, None, 10)], [(None, 8, None, 5)]) == 0
    assert layer.flops([(2, 4, 9, 10)], [(2, 8, 5, 5)]) == 2 * 8 * 5 * 5 * 2 * 9
    assert net.forward(x=torch.randn(1, 4, 9, 10))["out"].shape == (1, 8, 5, 5)


@pytest.mark.parametrize("params, shape, message", [
    ("kernel_size: 3", (1, 2, 5, 5), "num_output must be positive"),
    ("num_output: 2", (1, 2, 5, 5), "kernel_size is required"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 2, 5, 5),
     "either kernel_size or kernel_h / kernel_w"),
    ("num_output: 2 kernel_h: 3", (1, 2, 5, 5), "give both kernel_h and kernel_w"),
    ("num_output: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3", (1, 2, 5, 5),
     "kernel_size takes 1 or 2 values .* got 3"),
    ("num_output: 2 kernel_size: 3 stride: 0", (1, 2, 5, 5), "kernel, stride and dilation must be positive"),
    ("num_output: 3 kernel_size: 3 group: 2", (1, 2, 5, 5), "group 2 must divide both the bottom's 2 channels"),
    ("num_output: 2 kernel_size: 3 group: 2", (1, 3, 5, 5), "group 2 must divide both the bottom's 3 channels"),
    ("num_output: 2 kernel_size: 3", (2, 5, 5), "must be 4-D"),
    ("num_output: 2 kernel_size: 3", (1, None, 5, 5), "unknown channel count"),
    ("num_output: 2 kernel_size: 7 pad: 1", (1, 2, 4, 4), "bottom 4x4 is smaller than the kernel 7x7"),
    ("num_output: 2 kernel_size: 3 axis: 2", (1, 2, 5, 5), "only axis 1"),
])
def test_bad_params(params, shape, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(Convolution\).*{message}"):
        one_layer_net("Convolution", f"convolution_param {{ {params} }}", x=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", ["kernel_size: 2 pad: 1 stride: 2", "kernel_size: 2 dilation: 2 group: 2"])
def test_gradcheck(seed, params):
    torch.manual_seed(seed)
    net = one_layer_net("Convolution", f"convolution_param {{ num_output: 2 {params} {FILLERS} }}",
                        x=(1, 2, 4, 4))
    assert gradcheck_net(net, x=torch.randn(1, 2, 4, 4))
