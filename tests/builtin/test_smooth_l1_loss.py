import itertools

import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net

NAMES = ["pred", "targets", "inside", "outside", "extra"]


def smooth_l1_net(shapes, params=""):
    bottoms = NAMES[:len(shapes)]
    return tiny_net(layer("SmoothL1Loss", bottoms, ["loss"], params), **dict(zip(bottoms, shapes)))


def smooth_l1_reference(pred, targets, inside=None, outside=None, sigma=1.0):
    """The Faster R-CNN fork's loss, element by element."""
    total = 0.0
    for index in itertools.product(*map(range, pred.shape)):
        x = float(pred[index] - targets[index])
        if inside is not None:
            x *= float(inside[index])
        if abs(x) < 1.0 / sigma ** 2:
            f = 0.5 * (sigma * x) ** 2
        else:
            f = abs(x) - 0.5 / sigma ** 2
        if outside is not None:
            f *= float(outside[index])
        total += f
    return total / pred.shape[0]


def random_bottoms(n, shape=(3, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    pred, targets = torch.randn(shape, generator=g) * 2, torch.randn(shape, generator=g)
    weights = [(torch.rand(shape, generator=g) > 0.3).double(), torch.rand(shape, generator=g)]
    return [pred.double(), targets.double(), *weights][:n]


def test_known_values():
    # sigma 1: f(0.5) = 0.125, f(2) = 1.5; sigma 3 (the RPN's): f(0.1) = 0.045, f(1) = 1 - 1/18
    net = smooth_l1_net([(2, 1), (2, 1)])
    loss = net.forward(pred=torch.tensor([[0.5], [2.0]]), targets=torch.zeros(2, 1))["loss"]
    assert loss.item() == pytest.approx((0.125 + 1.5) / 2)
    net = smooth_l1_net([(1, 2), (1, 2)], "smooth_l1_loss_param { sigma: 3.0 }")
    loss = net.forward(pred=torch.tensor([[0.1, 1.0]]), targets=torch.zeros(1, 2))["loss"]
    assert loss.item() == pytest.approx(0.045 + 1 - 1 / 18)


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_values_against_loops(n, sigma, device):
    bottoms = random_bottoms(n)
    net = smooth_l1_net([(3, 8)] * n, f"smooth_l1_loss_param {{ sigma: {sigma} }}")
    assert net.blob_shapes["loss"] == ()
    loss = net.forward(**{k: b.float().to(device) for k, b in zip(NAMES, bottoms)})["loss"]
    assert loss.shape == ()
    assert loss.item() == pytest.approx(smooth_l1_reference(*bottoms, sigma=sigma), rel=1e-5)


def test_unknown_rows():
    # py-faster-rcnn's loss_bbox: R x 4K with R sampled rois per step
    net = smooth_l1_net([(None, 8)] * 4)
    assert net.blob_shapes["loss"] == ()
    bottoms = random_bottoms(4, shape=(5, 8), seed=3)
    loss = net.forward(**{k: b.float() for k, b in zip(NAMES, bottoms)})["loss"]
    assert loss.item() == pytest.approx(smooth_l1_reference(*bottoms), rel=1e-5)
    empty = net.forward(**{k: torch.zeros(0, 8) for k in NAMES[:4]})["loss"]
    assert empty.item() == 0


@pytest.mark.parametrize("shapes, params, message", [
    ([(2, 4)] * 3, "", "takes 2 bottoms, or 4 with both inside and outside weights; got 3"),
    ([(2, 4)] * 5, "", "takes 2 to 4 bottoms, got 5"),
    ([(2, 4), (2, 5)], "", "bottom 1 'targets' (targets) has shape 2x5 but bottom 0 'pred' (predictions) "
                           "has 2x4"),
    ([(2, 4), (2, 4), (2, 4), (3, 4)], "", "bottom 3 'outside' (outside weights) has shape 3x4"),
    ([(2, 4), (2, 4)], "smooth_l1_loss_param { sigma: 0 }", "sigma must be positive, got 0"),
])
def test_errors(shapes, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(SmoothL1Loss\\)") as e:
        smooth_l1_net(shapes, params)
    assert message in str(e.value)


def test_shapes_checked_at_forward():
    net = smooth_l1_net([(None, 4), (None, 4)])
    with pytest.raises(NetError, match="bottom 1 'targets' \\(targets\\) has shape 3x4 but bottom 0"):
        net.forward(pred=torch.zeros(2, 4), targets=torch.zeros(3, 4))


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(n, seed):
    bottoms = random_bottoms(n, shape=(2, 4), seed=seed)
    net = smooth_l1_net([(2, 4)] * n, "smooth_l1_loss_param { sigma: 3.0 }")
    inputs = dict(zip(NAMES, bottoms))
    assert gradcheck_net(net, ["loss"], inputs, ["pred", "targets"])
