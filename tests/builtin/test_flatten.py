import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def flatten_net(shape, params=""):
    return tiny_net(layer("Flatten", ["x"], ["y"], f"flatten_param {{ {params} }}"), x=shape)


@pytest.mark.parametrize("params, expected", [
    ("", (2, 90)),
    ("axis: 2", (2, 3, 30)),
    ("axis: 0 end_axis: 1", (6, 6, 5)),
    ("axis: 1 end_axis: -2", (2, 18, 5)),
    ("axis: -2", (2, 3, 30)),
    ("axis: 3", (2, 3, 6, 5)),
])
def test_shapes(params, expected):
    assert flatten_net((2, 3, 6, 5), params).blob_shapes["y"] == expected


def test_unknown_sizes():
    assert flatten_net((None, 3, 4, 5)).blob_shapes["y"] == (None, 60)
    assert flatten_net((2, None, 4)).blob_shapes["y"] == (2, None)
    assert flatten_net((2, 3, None), "axis: 0 end_axis: 1").blob_shapes["y"] == (6, None)


def test_values_against_loops(device):
    x = torch.randn(2, 3, 4, 5, device=device)
    y = flatten_net((None, 3, 4, 5)).forward(x=x)["y"].cpu()
    assert tuple(y.shape) == (2, 60)
    for n in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    assert y[n, (c * 4 + h) * 5 + w] == x[n, c, h, w].cpu()


@pytest.mark.parametrize("params, message", [
    ("axis: 2 end_axis: 1", "end_axis 1 comes before axis 2"),
    ("axis: 4", "axis 4 is out of range for a 4-D blob"),
    ("end_axis: -5", "axis -5 is out of range"),
])
def test_errors(params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(Flatten\\)") as e:
        flatten_net((2, 3, 6, 5), params)
    assert message in str(e.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    assert gradcheck_net(flatten_net((2, 3, 2)), ["y"], {"x": torch.randn(2, 3, 2)}, ["x"])
