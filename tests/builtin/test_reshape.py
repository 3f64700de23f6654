import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def reshape_net(shape, params, dims=None):
    return tiny_net(layer("Reshape", ["x"], ["y"], f"reshape_param {{ {params} }}"), x=shape)


def shape_param(*dims, extra=""):
    return "shape { " + " ".join(f"dim: {d}" for d in dims) + " } " + extra


# Caffe's test_reshape_layer.cpp cases, on a 2 x 3 x 6 x 5 bottom.
@pytest.mark.parametrize("params, expected", [
    (shape_param(0, -1, 1, 1), (2, 90, 1, 1)),
    (shape_param(0, 0, 0, 0), (2, 3, 6, 5)),
    (shape_param(0, 3, 10, -1), (2, 3, 10, 3)),
    (shape_param(3, 10, -1, extra="axis: 1"), (2, 3, 10, 3)),
    (shape_param(1, 1, 1, extra="axis: 0 num_axes: 0"), (1, 1, 1, 2, 3, 6, 5)),
    (shape_param(1, 1, 1, extra="axis: 2 num_axes: 0"), (2, 3, 1, 1, 1, 6, 5)),
    (shape_param(1, 1, 1, extra="axis: -1 num_axes: 0"), (2, 3, 6, 5, 1, 1, 1)),
    (shape_param(-1, extra="axis: 1 num_axes: 2"), (2, 18, 5)),
    (shape_param(2, 9, extra="axis: 1 num_axes: 2"), (2, 2, 9, 5)),
])
def test_caffe_shapes_and_values(params, expected, device):
    net = reshape_net((2, 3, 6, 5), params)
    assert net.blob_shapes["y"] == expected
    x = torch.randn(2, 3, 6, 5, device=device)
    y = net.forward(x=x)["y"]
    assert tuple(y.shape) == expected
    # same values in the same (row-major) order
    np.testing.assert_array_equal(y.cpu().numpy().ravel(), x.cpu().numpy().ravel())


def test_rpn_reshape_with_unknown_height_and_width(device):
    # py-faster-rcnn's rpn_cls_score_reshape, on a 1 x 18 x H x W score map
    net = reshape_net((1, 18, None, None), shape_param(0, 2, -1, 0))
    assert net.blob_shapes["y"] == (1, 2, None, None)
    x = torch.randn(1, 18, 3, 4, device=device)
    y = net.forward(x=x)["y"]
    assert tuple(y.shape) == (1, 2, 27, 4)
    # the anchor-major layout py-faster-rcnn relies on: channel c < 9 lands in
    # the first half, at row (c * H + h)
    xn, yn = x.cpu().numpy(), y.cpu().numpy()
    for c in range(18):
        for h in range(3):
            for w in range(4):
                assert yn[0, c // 9, (c % 9) * 3 + h, w] == xn[0, c, h, w]


def test_unknown_sizes_that_cancel_are_inferred():
    net = reshape_net((None, 3, 4), shape_param(0, -1))
    assert net.blob_shapes["y"] == (None, 12)
    assert tuple(net.forward(x=torch.zeros(0, 3, 4))["y"].shape) == (0, 12)
    assert tuple(net.forward(x=torch.zeros(5, 3, 4))["y"].shape) == (5, 12)
    assert reshape_net((None, 3, 4), shape_param(-1, 2)).blob_shapes["y"] == (None, 2)
    assert reshape_net((2, 3, None), shape_param(6, -1)).blob_shapes["y"] == (6, None)


@pytest.mark.parametrize("shape, params, message", [
    ((2, 3, 6, 5), shape_param(-1, -1), "more than one -1"),
    ((2, 3, 6, 5), shape_param(0, -2), "dim -2"),
    ((2, 3, 6, 5), shape_param(7, 0, 0, 0), "cannot reshape bottom 2x3x6x5 (180 values) to 7x3x6x5"),
    ((2, 3, 6, 5), shape_param(0, 7, -1), "not a multiple of 7"),
    ((2, 3, 6, 5), shape_param(0, 0, 0, 0, 0), "no axis 4 to copy"),
    ((2, 3, 6, 5), shape_param(1, extra="axis: 5"), "axis 5 is out of range"),
    ((2, 3, 6, 5), shape_param(1, extra="axis: -6"), "axis -6 is out of range"),
    ((2, 3, 6, 5), shape_param(1, extra="axis: 2 num_axes: 3"), "axis + num_axes = 5"),
    ((2, 3, 6, 5), shape_param(1, extra="num_axes: -2"), "num_axes is -2"),
])
def test_errors(shape, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(Reshape\\)") as e:
        reshape_net(shape, params)
    assert message in str(e.value)


def test_error_when_the_real_shape_does_not_divide():
    net = reshape_net((1, None), shape_param(4, -1))
    with pytest.raises(NetError, match="not a multiple of 4"):
        net.forward(x=torch.zeros(1, 6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    net = reshape_net((1, 6, None, 2), shape_param(0, 2, -1, 0))
    assert gradcheck_net(net, ["y"], {"x": torch.randn(1, 6, 2, 2)}, ["x"])
