"""max_pool2d through channels last against torch's own F.max_pool2d, bit for bit."""

import importlib

import pytest
import torch
import torch.nn.functional as F

from pyfrcnn.ops.max_pool import max_pool2d

max_pool_module = importlib.import_module("pyfrcnn.ops.max_pool")

GEOMETRIES = [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (1, 1)),
              ((3, 2), (2, 1), (1, 0)), ((3, 3), (2, 2), (0, 0))]


def blob(kind, shape, generator):
    if kind == "random":
        return torch.randn(shape, generator=generator)
    x = torch.randint(0, 3, shape, generator=generator).float()  # many ties
    if kind == "inf and signed zeros":
        x[x == 0] = -float("inf")
        x[x == 1] = -0.0
    elif kind == "nan":
        x[x == 0] = float("nan")
    return x


def same(a, b):
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("kind", ["random", "ties", "inf and signed zeros", "nan"])
@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_values_and_gradient_equal_torch(geometry, ceil_mode, kind):
    kernel, stride, padding = geometry
    generator = torch.Generator().manual_seed(len(kind) + 7 * ceil_mode)
    for height, width in [(3, 3), (4, 7), (9, 6), (8, 8)]:
        x = blob(kind, (2, 5, height, width), generator)
        ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        top = max_pool2d(ours, kernel, stride, padding, ceil_mode)
        expected = F.max_pool2d(theirs, kernel, stride, padding, ceil_mode=ceil_mode)
        assert top.is_contiguous() and same(top, expected)
        grad = torch.randn(expected.shape, generator=generator)
        top.backward(grad)
        expected.backward(grad)
        assert ours.grad.is_contiguous() and torch.equal(ours.grad, theirs.grad)


def test_large_blobs_and_no_grad(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 10, 12, generator=generator)
    expected = F.max_pool2d(x, 2, 2, ceil_mode=True)
    with torch.no_grad():
        assert torch.equal(max_pool2d(x, (2, 2), (2, 2), (0, 0), True), expected)
    monkeypatch.setattr(max_pool_module, "CHANNELS_LAST_MAX", 10)  # torch's own path
    leaf = x.clone().requires_grad_()
    top = max_pool2d(leaf, (2, 2), (2, 2), (0, 0), True)
    assert torch.equal(top, expected) and top.grad_fn.name().startswith("MaxPool2DWithIndices")
