import math

import numpy as np
import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import layer, tiny_net


def accuracy_net(scores, labels, params="", tops=("accuracy",)):
    text = layer("Accuracy", ["scores", "labels"], list(tops), f"accuracy_param {{ {params} }}")
    return tiny_net(text, scores=scores, labels=labels)


def accuracy_reference(scores, labels, axis=1, top_k=1, ignore_label=None):
    """Caffe's count: right when fewer than top_k other classes score at least as high."""
    s = scores.cpu().double().numpy()
    outer, classes = math.prod(s.shape[:axis]), s.shape[axis]
    inner = math.prod(s.shape[axis + 1:])
    s = s.reshape(outer, classes, inner)
    flat_labels = labels.cpu().numpy().ravel()
    right, total = 0, 0
    right_by_class, total_by_class = [0] * classes, [0] * classes
    for i in range(outer):
        for j in range(inner):
            label = int(flat_labels[i * inner + j])
            if label == ignore_label:
                continue
            rivals = sum(1 for c in range(classes) if c != label and s[i, c, j] >= s[i, label, j])
            total += 1
            total_by_class[label] += 1
            if rivals < top_k:
                right += 1
                right_by_class[label] += 1
    per_class = [r / t if t else 0.0 for r, t in zip(right_by_class, total_by_class)]
    return (right / total if total else 0.0), per_class


def tied_scores(shape, seed):
    """Small integer scores, so that ties between classes are common."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, shape, generator=g).float()


@pytest.mark.parametrize("params, top_k, ignore", [
    ("", 1, None), ("top_k: 2", 2, None), ("ignore_label: 2", 1, 2), ("top_k: 3 ignore_label: 0", 3, 0),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_values_against_loops(params, top_k, ignore, seed, device):
    scores = tied_scores((6, 4, 3), seed).to(device)
    labels = torch.randint(0, 4, (6, 1, 3), generator=torch.Generator().manual_seed(seed + 10)).float()
    net = accuracy_net((6, 4, 3), (6, 1, 3), params, tops=("accuracy", "per_class"))
    assert net.blob_shapes["accuracy"] == () and net.blob_shapes["per_class"] == (4,)
    outputs = net.forward(scores=scores, labels=labels.to(device))
    expected, expected_per_class = accuracy_reference(scores, labels, 1, top_k, ignore)
    assert outputs["accuracy"].item() == pytest.approx(expected)
    np.testing.assert_allclose(outputs["per_class"].cpu().numpy(), expected_per_class, rtol=1e-6)
    assert not outputs["accuracy"].requires_grad


def test_axis_and_integer_labels():
    torch.manual_seed(3)
    scores, labels = torch.randn(2, 3, 5), torch.randint(0, 5, (6,))
    net = accuracy_net((2, 3, 5), (6,), "axis: -1 top_k: 2")
    expected, _ = accuracy_reference(scores, labels, axis=2, top_k=2)
    assert net.forward(scores=scores, labels=labels)["accuracy"].item() == pytest.approx(expected)


def test_a_tie_counts_against_the_label():
    net = accuracy_net((1, 3), (1,))
    assert net.forward(scores=torch.tensor([[1.0, 1.0, 0.0]]), labels=torch.tensor([0.0]))["accuracy"] == 0
    assert net.forward(scores=torch.tensor([[2.0, 1.0, 0.0]]), labels=torch.tensor([0.0]))["accuracy"] == 1


def test_unknown_sizes_and_no_labels_left():
    net = accuracy_net((None, 3), (None,), "ignore_label: -1", tops=("accuracy", "per_class"))
    assert net.blob_shapes["per_class"] == (3,)
    outputs = net.forward(scores=torch.randn(2, 3), labels=torch.tensor([-1.0, -1.0]))
    assert outputs["accuracy"].item() == 0
    assert outputs["per_class"].tolist() == [0, 0, 0]


def test_no_gradient_flows():
    scores = torch.randn(2, 3, requires_grad=True)
    net = accuracy_net((2, 3), (2,))
    assert not net.forward(scores=scores, labels=torch.tensor([0, 1]))["accuracy"].requires_grad


@pytest.mark.parametrize("scores, labels, params, message", [
    ((2, 3), (2,), "top_k: 4", "top_k is 4; it must be in [1, 3]"),
    ((2, 3), (2,), "top_k: 0", "top_k is 0"),
    ((2, 3, 2), (2, 3), "", "labels 'labels' 2x3 hold 6 values but scores 'scores' 2x3x2 need one per "
                            "position outside the class axis 1: 4"),
    ((2, 3), (2,), "axis: 2", "axis 2 is out of range"),
])
def test_build_errors(scores, labels, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(Accuracy\\)") as e:
        accuracy_net(scores, labels, params)
    assert message in str(e.value)


def test_bad_label():
    net = accuracy_net((2, 3), (2,), "ignore_label: -1")
    with pytest.raises(NetError, match="layer 'layer' \\(Accuracy\\).*label 7 in 'labels' is outside \\[0, 3\\)"):
        net.forward(scores=torch.zeros(2, 3), labels=torch.tensor([7.0, -1.0]))
