import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def slice_net(shape, n_tops, params=""):
    tops = [f"y{i}" for i in range(n_tops)]
    return tiny_net(layer("Slice", ["x"], tops, f"slice_param {{ {params} }}"), x=shape)


def slice_reference(x, axis, cuts):
    """Pieces of x between consecutive cuts on `axis`, by an index loop."""
    pieces = []
    for start, stop in zip(cuts, cuts[1:]):
        shape = list(x.shape)
        shape[axis] = stop - start
        piece = torch.empty(shape, dtype=x.dtype)
        for index in torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, len(shape)):
            at = index.tolist()
            source = list(at)
            source[axis] += start
            piece[tuple(at)] = x[tuple(source)]
        pieces.append(piece)
    return pieces


@pytest.mark.parametrize("params, n_tops, axis, cuts", [
    ("", 3, 1, [0, 2, 4, 6]),
    ("slice_point: 1 slice_point: 5", 3, 1, [0, 1, 5, 6]),
    ("axis: 0 slice_point: 1", 2, 0, [0, 1, 3]),
    ("axis: -1", 2, 2, [0, 2, 4]),
    ("slice_dim: 2 slice_point: 3", 2, 2, [0, 3, 4]),
])
def test_values_against_loops(params, n_tops, axis, cuts, device):
    net = slice_net((3, 6, 4), n_tops, params)
    for i, (start, stop) in enumerate(zip(cuts, cuts[1:])):
        expected = [3, 6, 4]
        expected[axis] = stop - start
        assert net.blob_shapes[f"y{i}"] == tuple(expected)
    x = torch.randn(3, 6, 4, device=device)
    tops = net.forward(x=x)
    for i, piece in enumerate(slice_reference(x.cpu(), axis, cuts)):
        assert torch.equal(tops[f"y{i}"].cpu(), piece)


def test_unknown_axis_size_is_resolved_at_forward():
    net = slice_net((2, None), 3, "slice_point: 1 slice_point: 3")
    assert [net.blob_shapes[f"y{i}"] for i in range(3)] == [(2, 1), (2, 2), (2, None)]
    assert net.forward(x=torch.zeros(2, 7))["y2"].shape == (2, 4)
    equal = slice_net((None, 4), 2, "axis: 1")
    assert equal.blob_shapes["y0"] == (None, 2)
    equal = slice_net((2, None), 2)
    assert equal.blob_shapes["y0"] == (2, None)
    assert equal.forward(x=torch.zeros(2, 6))["y1"].shape == (2, 3)
    with pytest.raises(NetError, match="cannot split bottom 2x5 into 2 equal pieces on axis 1"):
        equal.forward(x=torch.zeros(2, 5))


@pytest.mark.parametrize("n_tops, params, message", [
    (2, "axis: 1 slice_dim: 1", "not both"),
    (3, "slice_point: 2", "gives 1 slice_point values for 3 tops"),
    (3, "slice_point: 3 slice_point: 2", "positive and increasing"),
    (2, "slice_point: 0", "positive and increasing"),
    (2, "slice_point: 6", "slice_point 6 leaves nothing for the last top"),
    (4, "", "cannot split bottom 3x6x4 into 4 equal pieces"),
    (2, "axis: 3", "axis 3 is out of range"),
])
def test_errors(n_tops, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(Slice\\)") as e:
        slice_net((3, 6, 4), n_tops, params)
    assert message in str(e.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    net = slice_net((2, 5), 2, "slice_point: 2")
    assert gradcheck_net(net, ["y0", "y1"], {"x": torch.randn(2, 5)}, ["x"])
