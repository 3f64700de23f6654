import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net

FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "uniform" min: -1 max: 1 }'


def slow_inner_product(x, weight, bias, axis, transpose):
    lead = x.shape[:axis]
    rows = x.reshape(int(np.prod(lead)), -1)
    n_out = weight.shape[1] if transpose else weight.shape[0]
    y = np.zeros((rows.shape[0], n_out))
    for m in range(rows.shape[0]):
        for n in range(n_out):
            total = bias[n] if bias is not None else 0.0
            for k in range(rows.shape[1]):
                total += rows[m, k] * (weight[k, n] if transpose else weight[n, k])
            y[m, n] = total
    return y.reshape(*lead, n_out)


@pytest.mark.parametrize("axis, transpose, bias", [(1, False, True), (2, False, True),
                                                   (1, True, True), (-1, False, False)])
def test_matches_loops(axis, transpose, bias, device):
    params = (f"inner_product_param {{ num_output: 4 axis: {axis} transpose: {str(transpose).lower()} "
              f"bias_term: {str(bias).lower()} {FILLERS} }}")
    net = one_layer_net("InnerProduct", params, x=(2, 3, 2, 2)).to(device)
    layer = net.layer_dict["layer"]
    k = {1: 12, 2: 4, -1: 2}[axis]
    assert tuple(layer.blobs[0].shape) == ((k, 4) if transpose else (4, k))
    assert len(layer.blobs) == (2 if bias else 1)
    x = torch.randn(2, 3, 2, 2)
    y = net.forward(x=x.to(device))["out"].detach().cpu()
    blobs = [b.detach().cpu().double().numpy() for b in layer.blobs]
    expected = slow_inner_product(x.double().numpy(), blobs[0], blobs[1] if bias else None,
                                  axis % 4, transpose)
    assert net.blob_shapes["out"] == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_fillers_are_applied():
    params = ('inner_product_param { num_output: 3 weight_filler { type: "constant" value: 2 } '
              'bias_filler { type: "constant" value: -1 } }')
    layer = one_layer_net("InnerProduct", params, x=(1, 5)).layer_dict["layer"]
    assert layer.blobs[0].eq(2).all() and layer.blobs[1].eq(-1).all()


def test_unknown_leading_dims_propagate():
    net = one_layer_net("InnerProduct", f"inner_product_param {{ num_output: 6 {FILLERS} }}",
                        x=(None, 3, 2, 2))
    assert net.blob_shapes["out"] == (None, 6)
    layer = net.layer_dict["layer"]
    assert layer.flops([(None, 3, 2, 2)], [(None, 6)]) == 0
    assert layer.flops([(5, 3, 2, 2)], [(5, 6)]) == 5 * 12 * 6
    assert net.forward(x=torch.randn(7, 3, 2, 2))["out"].shape == (7, 6)


@pytest.mark.parametrize("params, shape, message", [
    ("inner_product_param { }", (2, 3), "num_output must be positive"),
    ("inner_product_param { num_output: 2 }", (None, 3, None), r"shape \?x3x\?.*must be known"),
    ("inner_product_param { num_output: 2 axis: 3 }", (2, 3), "axis 3 is out of range for a 2-D blob"),
])
def test_bad_params(params, shape, message):
    with pytest.raises(NetError, match=rf"layer 'layer' \(InnerProduct\).*{message}"):
        one_layer_net("InnerProduct", params, x=shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("transpose", [False, True])
def test_gradcheck(seed, transpose):
    torch.manual_seed(seed)
    params = f"inner_product_param {{ num_output: 3 transpose: {str(transpose).lower()} {FILLERS} }}"
    net = one_layer_net("InnerProduct", params, x=(2, 2, 2))
    assert gradcheck_net(net, x=torch.randn(2, 2, 2))
