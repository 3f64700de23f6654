import math

import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def loss_net(scores, labels, params="", tops=("loss",), extra=""):
    text = layer("SoftmaxWithLoss", ["scores", "labels"], list(tops), params + " " + extra)
    return tiny_net(text, scores=scores, labels=labels)


def softmax_loss_reference(scores, labels, axis, ignore_label, mode):
    """Caffe's loss and its analytic gradient (prob - onehot) / normaliser, by loops."""
    s = scores.detach().cpu().double().numpy()
    outer, classes = math.prod(s.shape[:axis]), s.shape[axis]
    inner = math.prod(s.shape[axis + 1:])
    s = s.reshape(outer, classes, inner)
    flat_labels = labels.detach().cpu().numpy().ravel()
    loss, valid, grad = 0.0, 0, np.zeros_like(s)
    for i in range(outer):
        for j in range(inner):
            label = int(flat_labels[i * inner + j])
            if ignore_label is not None and label == ignore_label:
                continue
            top = max(s[i, c, j] for c in range(classes))
            exps = [math.exp(s[i, c, j] - top) for c in range(classes)]
            loss -= math.log(exps[label] / sum(exps))
            for c in range(classes):
                grad[i, c, j] = exps[c] / sum(exps) - (c == label)
            valid += 1
    normaliser = max(1, {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode])
    return loss / normaliser, (grad / normaliser).reshape(scores.shape)


def random_labels(shape, classes, ignore=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1 if ignore else 0, classes, shape, generator=g).float()


@pytest.mark.parametrize("params, mode", [
    ("", "VALID"),
    ("normalization: FULL", "FULL"),
    ("normalization: VALID", "VALID"),
    ("normalization: BATCH_SIZE", "BATCH_SIZE"),
    ("normalization: NONE", "NONE"),
    ("normalize: true", "VALID"),
    ("normalize: false", "BATCH_SIZE"),
    ("normalization: FULL normalize: false", "FULL"),
])
def test_normalization_against_loops(params, mode, device):
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 4, device=device, requires_grad=True)
    labels = random_labels((2, 4), 3).to(device)
    net = loss_net((2, 3, 4), (2, 4), f"loss_param {{ ignore_label: -1 {params} }}")
    assert net.blob_shapes["loss"] == ()
    loss = net.forward(scores=scores, labels=labels)["loss"]
    expected_loss, expected_grad = softmax_loss_reference(scores, labels, 1, -1, mode)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    net.backward()
    np.testing.assert_allclose(scores.grad.cpu().numpy(), expected_grad, rtol=1e-5, atol=1e-7)


def test_rpn_objectness_loss_with_unknown_height_and_width():
    # py-faster-rcnn's rpn_loss_cls: 1 x 2 x 9H x W scores, 1 x 1 x 9H x W float labels
    net = loss_net((1, 2, None, None), (1, 1, None, None),
                   "propagate_down: 1 propagate_down: 0 loss_weight: 1 "
                   "loss_param { ignore_label: -1 normalize: true }")
    assert net.blob_shapes["loss"] == ()
    torch.manual_seed(1)
    scores = torch.randn(1, 2, 27, 4, requires_grad=True)
    labels = random_labels((1, 1, 27, 4), 2, seed=1)
    loss = net.forward(scores=scores, labels=labels)["loss"]
    expected_loss, expected_grad = softmax_loss_reference(scores, labels, 1, -1, "VALID")
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    net.backward()
    np.testing.assert_allclose(scores.grad.numpy(), expected_grad, rtol=1e-5, atol=1e-7)


def test_axis_integer_labels_and_probabilities_top(device):
    torch.manual_seed(2)
    scores = torch.randn(2, 4, 3, device=device)
    labels = torch.randint(0, 3, (8,), device=device)
    net = loss_net((2, 4, 3), (8,), "softmax_param { axis: -1 }", tops=("loss", "prob"))
    assert net.blob_shapes["prob"] == (2, 4, 3)
    assert net.layer_dict["layer"].loss_weights == [1.0, 0.0]
    outputs = net.forward(scores=scores, labels=labels)
    expected_loss, _ = softmax_loss_reference(scores, labels, 2, None, "VALID")
    assert outputs["loss"].item() == pytest.approx(expected_loss, rel=1e-5)
    expected_prob = torch.softmax(scores.double(), dim=2).cpu().numpy()
    np.testing.assert_allclose(outputs["prob"].cpu().numpy(), expected_prob, rtol=1e-5)


def test_float_labels_are_truncated_as_caffe_casts_them():
    scores = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.5, -1.0]])
    net = loss_net((2, 3), (2,))
    truncated = net.forward(scores=scores, labels=torch.tensor([1.9, 0.2]))["loss"]
    exact = net.forward(scores=scores, labels=torch.tensor([1.0, 0.0]))["loss"]
    assert truncated.item() == exact.item()


def test_all_ignored_gives_zero_loss():
    net = loss_net((2, 3), (2,), "loss_param { ignore_label: 5 }")
    scores = torch.randn(2, 3, requires_grad=True)
    assert net.forward(scores=scores, labels=torch.tensor([5.0, 5.0]))["loss"].item() == 0
    net.backward()
    assert not scores.grad.any()


@pytest.mark.parametrize("scores, labels, params, message", [
    ((2, 3, 4), (2, 5), "", "labels 'labels' 2x5 hold 10 values but scores 'scores' 2x3x4 need one "
                            "per position outside the class axis 1: 8"),
    ((2, 3), (2,), "softmax_param { axis: 2 }", "axis 2 is out of range for a 2-D blob"),
])
def test_build_errors(scores, labels, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(SoftmaxWithLoss\\)") as e:
        loss_net(scores, labels, params)
    assert message in str(e.value)


def test_too_many_tops():
    with pytest.raises(NetError, match="takes 1 to 2 tops, got 3"):
        loss_net((2, 3), (2,), tops=("a", "b", "c"))


@pytest.mark.parametrize("params, labels, message", [
    ("loss_param { ignore_label: -1 }", [0.0, 3.0], "label 3 in 'labels' is outside [0, 3) and is not "
                                                    "the ignore_label -1"),
    ("", [-1.0, 0.0], "label -1 in 'labels' is outside [0, 3)"),
])
def test_bad_labels(params, labels, message):
    net = loss_net((2, 3), (2,), params)
    with pytest.raises(NetError, match="layer 'layer' \\(SoftmaxWithLoss\\)") as e:
        net.forward(scores=torch.zeros(2, 3), labels=torch.tensor(labels))
    assert message in str(e.value)


def test_label_count_checked_at_forward():
    net = loss_net((1, 2, None), (1, None))
    with pytest.raises(NetError, match="hold 3 values but scores 'scores' 1x2x4"):
        net.forward(scores=torch.zeros(1, 2, 4), labels=torch.zeros(1, 3))


@pytest.mark.parametrize("params", ["loss_param { ignore_label: -1 }",
                                    "loss_param { ignore_label: -1 normalization: FULL }"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(params, seed):
    torch.manual_seed(seed)
    net = loss_net((2, 3, 2), (2, 1, 2), params, tops=("loss", "prob"))
    inputs = {"scores": torch.randn(2, 3, 2), "labels": random_labels((2, 1, 2), 3, seed=seed)}
    assert gradcheck_net(net, ["loss", "prob"], inputs, ["scores"])
