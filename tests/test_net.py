"""Net: wiring by name, in-place rebinding, fan-out, propagate_down, loss
weights, parameter sharing, phases, weights save / load."""

import pytest
import torch

from pyfrcnn.errors import NetError, WeightsError
from pyfrcnn.layer import Layer
from pyfrcnn.net import Net


class SumLoss(Layer):
    """bottoms: any; top: scalar sum (a loss layer for these tests)."""
    num_bottoms = 1
    num_tops = 1
    is_loss = True

    def reshape(self, bottom_shapes):
        return [()]

    def forward(self, x):
        return x.sum()


class Double(Layer):
    """Doubles its bottom; written so an in-place use must not mutate the bottom."""
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        return x * 2


class PhaseProbe(Layer):
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        return x + (1 if self.phase == "TRAIN" else 0)


def py(name, cls, bottom, top, extra=""):
    return (f'layer {{ name: "{name}" type: "Python" bottom: "{bottom}" top: "{top}" {extra} '
            f'python_param {{ module: "tests.test_net" layer: "{cls}" }} }}\n')


CONV = ('layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" {extra} '
        'convolution_param {{ num_output: 2 kernel_size: 1 weight_filler {{ type: "gaussian" }} '
        'bias_filler {{ type: "constant" value: 0.5 }} }} }}\n')
INPUT = 'input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'


def conv(name, bottom, top, extra=""):
    return CONV.format(name=name, bottom=bottom, top=top, extra=extra)


def test_in_place_top_rebinds_the_name_without_mutating_the_bottom():
    net = Net(INPUT + conv("c", "data", "x") + py("d", "Double", "x", "x") + py("l", "SumLoss", "x", "loss"))
    x = torch.randn(1, 2, 3, 3)
    net.forward(data=x)
    conv_out = net.layers[1].forward(x)
    torch.testing.assert_close(net.blobs["x"], conv_out * 2)
    net.backward()
    w, b = net.params["c"]
    torch.testing.assert_close(b.grad, torch.full((2,), 2.0 * 9))


def test_fan_out_sums_gradients_without_split_layers():
    text = INPUT + conv("c", "data", "x") + py("l1", "SumLoss", "x", "loss1") + \
        py("d", "Double", "x", "y") + py("l2", "SumLoss", "y", "loss2")
    net = Net(text)
    net.forward(data=torch.randn(1, 2, 3, 3))
    loss = net.backward()
    b = net.params["c"][1]
    torch.testing.assert_close(b.grad, torch.full((2,), 3.0 * 9))  # 1 + 2 per element
    assert net.output_names == ["loss1", "loss2"]
    assert loss.ndim == 0


def test_loss_weight_scales_the_objective():
    net = Net(INPUT + conv("c", "data", "x") + py("l", "SumLoss", "x", "loss", "loss_weight: 0.25"))
    x = torch.randn(1, 2, 3, 3)
    out = net.forward(data=x)
    torch.testing.assert_close(net.backward(), 0.25 * out["loss"])
    torch.testing.assert_close(net.params["c"][1].grad, torch.full((2,), 0.25 * 9))


def test_propagate_down_false_stops_the_gradient():
    text = INPUT + conv("c", "data", "x") + py("l", "SumLoss", "x", "loss", "propagate_down: false")
    net = Net(text)
    net.forward(data=torch.randn(1, 2, 3, 3))
    net.backward()
    assert all(p.grad is None for p in net.params["c"])


def test_lr_mult_zero_freezes_a_blob_and_sharing_by_name():
    text = INPUT + conv("c1", "data", "x", 'param { name: "w" lr_mult: 0 } param { lr_mult: 2 decay_mult: 0 }') + \
        conv("c2", "x", "y", 'param { name: "w" } param { }') + py("l", "SumLoss", "y", "loss")
    net = Net(text)
    assert net.params["c1"][0] is net.params["c2"][0]
    assert not net.params["c1"][0].requires_grad and net.params["c1"][1].requires_grad
    params = net.learnable_params()
    assert [(lr, dm, name) for _, lr, dm, name in params] == [
        (0.0, 1.0, "c1/0"), (2.0, 0.0, "c1/1"), (1.0, 1.0, "c2/1")]


def test_forward_checks_inputs_and_declared_shapes():
    net = Net(INPUT + conv("c", "data", "x"))
    with pytest.raises(NetError, match="input blob\\(s\\) data not given"):
        net.forward()
    with pytest.raises(NetError, match="'bogus'|bogus"):
        net.forward(data=torch.randn(1, 2, 3, 3), bogus=torch.zeros(1))
    with pytest.raises(NetError, match="layer 'input' \\(Input\\).*top 'data' has shape 1x2x4x4 but was declared 1x2x3x3"):
        net.forward(data=torch.randn(1, 2, 4, 4))


def test_input_shapes_override_and_unknown_override_is_an_error():
    net = Net(INPUT + conv("c", "data", "x"), input_shapes={"data": (2, 2, 5, 7)})
    assert net.blob_shapes["x"] == (2, 2, 5, 7)
    with pytest.raises(NetError, match="not an input of the net"):
        Net(INPUT + conv("c", "data", "x"), input_shapes={"im_info": (1, 3)})


def test_backward_without_loss_is_an_error():
    net = Net(INPUT + conv("c", "data", "x"))
    net.forward(data=torch.randn(1, 2, 3, 3))
    with pytest.raises(NetError, match="needs a forward\\(\\) with a loss top"):
        net.backward()


def test_phase_switch_reaches_the_layers():
    net = Net(INPUT + py("p", "PhaseProbe", "data", "y"), phase="TRAIN")
    x = torch.zeros(1, 2, 3, 3)
    assert net.forward(data=x)["y"].max() == 1
    net.phase = "TEST"
    assert net.forward(data=x)["y"].max() == 0


def test_save_and_load_by_layer_name(tmp_path):
    text = INPUT + conv("c", "data", "x")
    a, b = Net(text), Net(text)
    path = tmp_path / "w.weights"
    a.save(path, meta={"note": 1})
    loaded, skipped = b.load(str(path))
    assert loaded == ["c"] and skipped == []
    for p, q in zip(a.params["c"], b.params["c"]):
        torch.testing.assert_close(p, q)
    other = Net(INPUT + conv("c", "data", "x").replace("num_output: 2", "num_output: 3"))
    with pytest.raises(WeightsError, match="layer 'c' \\(Convolution\\).*blob 0: the net has shape 3x2x1x1, the file 2x2x1x1"):
        other.load(str(path))
    with pytest.raises(WeightsError, match="not a readable pyfrcnn weights file|no such"):
        other.load(str(tmp_path / "missing.weights"))


def test_to_float64_moves_every_blob():
    net = Net(INPUT + conv("c", "data", "x")).to(torch.float64)
    out = net.forward(data=torch.randn(1, 2, 3, 3, dtype=torch.float64))
    assert out["x"].dtype == torch.float64
