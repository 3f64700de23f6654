import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def concat_net(params="", **shapes):
    return tiny_net(layer("Concat", list(shapes), ["y"], f"concat_param {{ {params} }}"), **shapes)


def concat_reference(bottoms, axis):
    """Fill the top position by position from the bottom each part comes from."""
    shape = list(bottoms[0].shape)
    shape[axis] = sum(b.shape[axis] for b in bottoms)
    top = torch.empty(shape, dtype=bottoms[0].dtype)
    offset = 0
    for b in bottoms:
        for index in torch.cartesian_prod(*[torch.arange(s) for s in b.shape]).reshape(-1, b.dim()):
            at = list(index.tolist())
            value = b[tuple(at)]
            at[axis] += offset
            top[tuple(at)] = value
        offset += b.shape[axis]
    return top


@pytest.mark.parametrize("params, axis", [("", 1), ("axis: 0", 0), ("axis: -1", 2), ("concat_dim: 2", 2)])
def test_values_against_loops(params, axis, device):
    sizes = [2, 3, 1]
    shapes = {}
    for i, size in enumerate(sizes):
        shape = [2, 3, 4]
        shape[axis] = size
        shapes[f"x{i}"] = tuple(shape)
    net = concat_net(params, **shapes)
    expected_shape = [2, 3, 4]
    expected_shape[axis] = 6
    assert net.blob_shapes["y"] == tuple(expected_shape)
    bottoms = [torch.randn(s, device=device) for s in shapes.values()]
    y = net.forward(**dict(zip(shapes, bottoms)))["y"]
    assert torch.equal(y.cpu(), concat_reference([b.cpu() for b in bottoms], axis))


def test_unknown_sizes():
    net = concat_net(x0=(None, 2, 3), x1=(None, 4, 3))
    assert net.blob_shapes["y"] == (None, 6, 3)
    assert concat_net(x0=(1, None, 3), x1=(1, 4, 3)).blob_shapes["y"] == (1, None, 3)
    assert concat_net(x0=(1, 2, None), x1=(1, 4, 3)).blob_shapes["y"] == (1, 6, 3)
    y = net.forward(x0=torch.ones(5, 2, 3), x1=torch.ones(5, 4, 3))["y"]
    assert tuple(y.shape) == (5, 6, 3)


def test_one_bottom_passes_through():
    x = torch.randn(2, 3)
    assert torch.equal(concat_net(x0=(2, 3)).forward(x0=x)["y"], x)


@pytest.mark.parametrize("params, shapes, message", [
    ("axis: 1 concat_dim: 1", [(2, 3), (2, 3)], "not both"),
    ("", [(2, 3, 4), (2, 3, 5)], "differ on axis 2, which is not the concat axis 1"),
    ("", [(2, 3, 4), (2, 3)], "bottom 1 'x1' is 2-D (2x3) but bottom 0 'x0' is 3-D (2x3x4)"),
    ("axis: 3", [(2, 3), (2, 3)], "axis 3 is out of range"),
    ("concat_dim: 2", [(2, 3), (2, 3)], "concat_dim 2 is out of range"),
])
def test_errors(params, shapes, message):
    with pytest.raises(NetError, match="layer 'layer' \\(Concat\\)") as e:
        concat_net(params, **{f"x{i}": s for i, s in enumerate(shapes)})
    assert message in str(e.value)


def test_error_when_real_shapes_differ():
    net = concat_net(x0=(None, 2), x1=(3, 2))
    with pytest.raises(NetError, match="cannot concatenate bottoms 4x2, 3x2 on axis 1"):
        net.forward(x0=torch.zeros(4, 2), x1=torch.zeros(3, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    net = concat_net(x0=(2, 1, 2), x1=(2, 3, 2))
    inputs = {"x0": torch.randn(2, 1, 2), "x1": torch.randn(2, 3, 2)}
    assert gradcheck_net(net, ["y"], inputs, ["x0", "x1"])
