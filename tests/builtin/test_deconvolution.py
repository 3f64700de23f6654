import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net

FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


def slow_deconv(x, weight, bias, stride, pad, dilation, group):
    """Caffe's Deconvolution (col2im of the weights times the input): every input
    value x[n, c, i, j] adds x * weight[c, o, a, b] to output (o of c's group)
    row i * stride - pad + a * dilation, column likewise, when inside."""
    n_, c_, height, width = x.shape
    _, og, kh_, kw_ = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    out_h = sh * (height - 1) + dh * (kh_ - 1) + 1 - 2 * ph
    out_w = sw * (width - 1) + dw * (kw_ - 1) + 1 - 2 * pw
    y = np.zeros((n_, og * group, out_h, out_w))
    cg = c_ // group
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for i in range(height):
                for j in range(width):
                    for o in range(og):
                        for a in range(kh_):
                            for b in range(kw_):
                                h, w = i * sh - ph + a * dh, j * sw - pw + b * dw
                                if 0 <= h < out_h and 0 <= w < out_w:
                                    y[n, g * og + o, h, w] += x[n, c, i, j] * weight[c, o, a, b]
    if bias is not None:
        y += bias[None, :, None, None]
    return y


# (convolution_param text, C, O, kernel, stride, pad, dilation, group)
CASES = [
    ("kernel_size: 3 pad: 1", 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ("kernel_size: 4 stride: 2 pad: 1", 2, 3, (4, 4), (2, 2), (1, 1), (1, 1), 1),
    ("kernel_size: 3 dilation: 2", 2, 2, (3, 3), (1, 1), (0, 0), (2, 2), 1),
    ("kernel_size: 2 stride: 2 group: 2", 4, 6, (2, 2), (2, 2), (0, 0), (1, 1), 2),
    ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0", 2, 2,
     (3, 2), (2, 3), (1, 0), (1, 1), 1),
    ("kernel_size: 2 bias_term: false", 2, 2, (2, 2), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("params, c, o, kernel, stride, pad, dilation, group", CASES)
def test_matches_loops(params, c, o, kernel, stride, pad, dilation, group, device):
    net = one_layer_net("Deconvolution", f"convolution_param {{ num_output: {o} {params} {FILLERS} }}",
                        x=(2, c, 4, 5)).to(device)
    layer = net.layer_dict["layer"]
    bias = "bias_term: false" not in params
    assert tuple(layer.blobs[0].shape) == (c, o // group, *kernel)  # Caffe's Deconvolution layout
    x = torch.randn(2, c, 4, 5)
    y = net.forward(x=x.to(device))["out"].detach().cpu().numpy()
    blobs = [b.detach().cpu().double().numpy() for b in layer.blobs]
    expected = slow_deconv(x.double().numpy(), blobs[0], blobs[1] if bias else None,
                           stride, pad, dilation, group)
    assert net.blob_shapes["out"] == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_bilinear_upsampling_as_fcn_uses_it():
    # factor 2: kernel 4, stride 2, pad 1, one group per channel, bilinear weights
    params = ('convolution_param { num_output: 3 group: 3 kernel_size: 4 stride: 2 pad: 1 '
              'bias_term: false weight_filler { type: "bilinear" } }')
    net = one_layer_net("Deconvolution", params, x=(1, 3, 4, 5))
    weight = net.layer_dict["layer"].blobs[0].detach()
    taps = np.array([0.25, 0.75, 0.75, 0.25])
    for c in range(3):
        np.testing.assert_allclose(weight[c, 0].numpy(), np.outer(taps, taps))
    x = torch.randn(1, 3, 4, 5)
    y = net.forward(x=x)["out"].detach()
    assert y.shape == (1, 3, 8, 10)
    expected = slow_deconv(x.double().numpy(), weight.double().numpy(), None, (2, 2), (1, 1), (1, 1), 3)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    # a constant image stays constant away from the border (the taps sum to 1 there)
    y = net.forward(x=torch.full((1, 3, 4, 5), 7.0))["out"].detach()
    torch.testing.assert_close(y[:, :, 1:-1, 1:-1], torch.full((1, 3, 6, 8), 7.0))


def test_unknown_sizes_propagate_and_flops():
    params = "convolution_param { num_output: 8 kernel_size: 4 pad: 1 stride: 2 group: 2 }"
    net = one_layer_net("Deconvolution", params, x=(None, 4, None, 10))
    assert net.blob_shapes["out"] == (None, 8, None, 20)
    layer = net.layer_dict["layer"]
    assert layer.flops([(None, 4, None, 10)], [(None, 8, None, 20)]) == 0
    assert layer.flops([(2, 4, 9, 10)], [(2, 8, 18, 20)]) == 2 * 4 * 9 * 10 * 4 * 16
    assert net.forward(x=torch.randn(1, 4, 9, 10))["out"].shape == (1, 8, 18, 20)


@pytest.mark.parametrize("params, shape, message", [
    ("kernel_size: 3", (1, 2, 5, 5), "num_output must be positive"),
    ("num_output: 2", (1, 2, 5, 5), "kernel_size is required"),
    ("num_output: 3 kernel_size: 3 group: 2", (1, 2, 5, 5), "group 2 must divide both the bottom's 2 channels"),
    ("num_output: 2 kernel_size: 3", (1, None, 5, 5), "unknown channel count"),
    ("num_output: 2 kernel_size: 1 pad: 1", (1, 2, 1, 1), "gives an empty top"),
    ("num_output: 2 kernel_size: 3 axis: 2", (1, 2, 5, 5), "only axis 1"),
])
def test_bad_params(params, shape, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(Deconvolution\).*{message}"):
        one_layer_net("Deconvolution", f"convolution_param {{ {params} }}", x=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", ["kernel_size: 3 pad: 1 stride: 2", "kernel_size: 2 dilation: 2 group: 2"])
def test_gradcheck(seed, params):
    torch.manual_seed(seed)
    net = one_layer_net("Deconvolution", f"convolution_param {{ num_output: 2 {params} {FILLERS} }}",
                        x=(1, 2, 3, 3))
    assert gradcheck_net(net, x=torch.randn(1, 2, 3, 3))
