import pytest
import torch

from pyfrcnn.errors import NetError
from pyfrcnn.net import Net


def dummy_net(params, tops=("a",)):
    wires = "".join(f' top: "{t}"' for t in tops)
    return Net(f'layer {{ name: "dummy" type: "DummyData"{wires} dummy_data_param {{ {params} }} }}')


def test_shape_and_default_constant_zero(device):
    net = dummy_net("shape { dim: 2 dim: 3 }").to(device)
    assert net.blob_shapes["a"] == (2, 3)
    a = net.forward()["a"]
    assert a.shape == (2, 3) and a.device.type == device.type and a.eq(0).all()


def test_one_shape_and_filler_for_all_tops():
    net = dummy_net('shape { dim: 4 } data_filler { type: "constant" value: 3 }', tops=("a", "b"))
    out = net.forward()
    assert net.blob_shapes == {"a": (4,), "b": (4,)}
    assert out["a"].eq(3).all() and out["b"].eq(3).all()


def test_per_top_shapes_and_fillers_and_fresh_random_values():
    params = ('shape { dim: 3 dim: 4 } shape { dim: 500 } '
              'data_filler { type: "constant" value: -2 } '
              'data_filler { type: "uniform" min: 1 max: 2 }')
    net = dummy_net(params, tops=("a", "b"))
    assert net.blob_shapes == {"a": (3, 4), "b": (500,)}
    first = net.forward()
    second = net.forward()
    assert first["a"].eq(-2).all() and torch.equal(first["a"], second["a"])
    assert first["b"].min() >= 1 and first["b"].max() < 2
    assert not torch.equal(first["b"], second["b"]), "a random filler refills every forward"


def test_legacy_dims():
    params = "num: 2 channels: 3 channels: 1 height: 4 width: 5"
    net = dummy_net(params, tops=("a", "b"))
    assert net.blob_shapes == {"a": (2, 3, 4, 5), "b": (2, 1, 4, 5)}
    assert net.forward()["b"].shape == (2, 1, 4, 5)


def test_follows_the_net_dtype():
    net = dummy_net('shape { dim: 2 } data_filler { type: "gaussian" }').to(torch.float64)
    assert net.forward()["a"].dtype == torch.float64


@pytest.mark.parametrize("params, tops, message", [
    ("shape { dim: 2 } shape { dim: 3 }", ("a", "b", "c"), "gives 2 shape entries for 3 tops"),
    ("shape { dim: 2 } data_filler { } data_filler { }", ("a", "b", "c"),
     "gives 2 data_filler entries for 3 tops"),
    ("shape { dim: 2 } num: 2 channels: 1 height: 1 width: 1", ("a",), "either shape or num"),
    ("num: 2 channels: 1 height: 1", ("a",), "width takes 1 value or one per top .* got 0"),
    ("shape { dim: 2 dim: -1 }", ("a",), "top 'a' has a negative dimension"),
    ('shape { dim: 2 } data_filler { type: "nonsense" }', ("a",), "top 'a': unknown filler type 'nonsense'"),
    ('shape { dim: 2 dim: 3 } data_filler { type: "bilinear" }', ("a",), "bilinear filler needs a 4-D"),
])
def test_bad_params(params, tops, message):
    with pytest.raises(NetError, match=rf"layer 'dummy' \(DummyData\).*{message}"):
        dummy_net(params, tops)
