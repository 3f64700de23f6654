import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net

FILLERS = 'filler { type: "uniform" min: -1 max: 1 } bias_filler { type: "gaussian" std: 1 }'


def slow_scale(x, scale, bias, axis):
    """y[i] = x[i] * scale[i[axis:axis + scale.ndim]] (+ bias[...]), index by index."""
    y = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        j = i[axis:axis + scale.ndim]
        y[i] = x[i] * scale[j] + (bias[j] if bias is not None else 0.0)
    return y


@pytest.mark.parametrize("params, axis, scale_shape", [
    ("", 1, (3,)),
    ("axis: 1 num_axes: 2", 1, (3, 4)),
    ("axis: -1", 3, (5,)),
    ("axis: 0 num_axes: -1", 0, (2, 3, 4, 5)),
    ("axis: 2 num_axes: 0", 2, ()),
])
@pytest.mark.parametrize("bias", [False, True])
def test_learned_scale_matches_loops(params, axis, scale_shape, bias, device):
    text = f"scale_param {{ {params} bias_term: {str(bias).lower()} {FILLERS} }}"
    net = one_layer_net("Scale", text, x=(2, 3, 4, 5)).to(device)
    layer = net.layer_dict["layer"]
    assert [tuple(b.shape) for b in layer.blobs] == [scale_shape] * (2 if bias else 1)
    x = torch.randn(2, 3, 4, 5)
    y = net.forward(x=x.to(device))["out"].detach().cpu().numpy()
    blobs = [b.detach().cpu().double().numpy() for b in layer.blobs]
    expected = slow_scale(x.double().numpy(), blobs[0], blobs[1] if bias else None, axis)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_default_fillers_are_one_and_zero():
    layer = one_layer_net("Scale", "scale_param { bias_term: true }", x=(2, 3)).layer_dict["layer"]
    assert layer.blobs[0].eq(1).all() and layer.blobs[1].eq(0).all()


@pytest.mark.parametrize("bias", [False, True])
def test_second_bottom_is_the_scale(bias, device):
    text = f"scale_param {{ axis: 1 bias_term: {str(bias).lower()} {FILLERS} }}"
    net = one_layer_net("Scale", text, x=(2, 3, 4), s=(3, 4)).to(device)
    layer = net.layer_dict["layer"]
    assert [tuple(b.shape) for b in layer.blobs] == ([(3, 4)] if bias else [])
    x, s = torch.randn(2, 3, 4), torch.randn(3, 4)
    y = net.forward(x=x.to(device), s=s.to(device))["out"].detach().cpu().numpy()
    b = layer.blobs[0].detach().cpu().double().numpy() if bias else None
    np.testing.assert_allclose(y, slow_scale(x.double().numpy(), s.double().numpy(), b, 1),
                               rtol=1e-5, atol=1e-6)


def test_scalar_second_bottom_uses_axis_0():
    net = one_layer_net("Scale", "scale_param { axis: 1 }", x=(2, 3), s=())
    x = torch.randn(2, 3)
    torch.testing.assert_close(net.forward(x=x, s=torch.tensor(3.0))["out"], 3 * x)


def test_unknown_sizes():
    net = one_layer_net("Scale", "scale_param { bias_term: true }", x=(None, 3, None, None))
    assert net.blob_shapes["out"] == (None, 3, None, None)
    assert net.layer_dict["layer"].flops([(None, 3, None, None)], [(None, 3, None, None)]) == 0
    assert net.layer_dict["layer"].flops([(2, 3, 4, 5)], [(2, 3, 4, 5)]) == 2 * 120
    net = one_layer_net("Scale", "", x=(2, None), s=(None,))
    assert net.blob_shapes["out"] == (2, None)
    with pytest.raises(NetError, match=r"the scale of shape 3 does not match bottom 'x' of shape 2x4"):
        net.forward(x=torch.randn(2, 4), s=torch.randn(3))


@pytest.mark.parametrize("params, shapes, message", [
    ("scale_param { axis: 4 }", {"x": (2, 3)}, "axis 4 is out of range for a 2-D blob"),
    ("scale_param { num_axes: -2 }", {"x": (2, 3)}, "num_axes must be -1 .* got -2"),
    ("scale_param { axis: 1 num_axes: 3 }", {"x": (2, 3, 4)}, "extends past bottom 'x' of shape 2x3x4"),
    ("scale_param { }", {"x": (2, None)}, "the scaled dims 1..1 must be known"),
    ("scale_param { }", {"x": (2, 3, 4), "s": (4,)}, "the scale of shape 4 does not match"),
    ("scale_param { }", {"x": (2, 3), "s": (3, 1)}, "the scale of shape 3x1 does not match"),
    ("scale_param { bias_term: true }", {"x": (2, None), "s": (None,)}, "the bias needs known sizes"),
])
def test_bad_params(params, shapes, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(Scale\).*{message}"):
        one_layer_net("Scale", params, **shapes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    net = one_layer_net("Scale", f"scale_param {{ bias_term: true {FILLERS} }}", x=(2, 3, 2))
    assert gradcheck_net(net, x=torch.randn(2, 3, 2))
    net = one_layer_net("Scale", "scale_param { axis: 1 }", x=(2, 3, 2), s=(3,))
    assert gradcheck_net(net, x=torch.randn(2, 3, 2), s=torch.randn(3))
