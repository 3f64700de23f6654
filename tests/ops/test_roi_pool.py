"""roi_pool against a slow, obvious Python-loop ROIPooling (Caffe's semantics)."""

import importlib
import math

import numpy as np
import pytest
import torch

from pyfrcnn.ops import roi_pool
from pyfrcnn.ops.roi_pool import roi_pool_backward_cpu, roi_pool_forward_cpu

FLT_MAX = float(np.finfo(np.float32).max)
# The module, which pyfrcnn.ops.roi_pool (the function) hides.
roi_pool_module = importlib.import_module("pyfrcnn.ops.roi_pool")


def reference_roi_pool(features, rois, pooled_h, pooled_w, spatial_scale):
    """Caffe's ROIPoolForward, one output element at a time, in the input's
    floating type (numpy scalars), returning (output, argmax)."""
    real = np.float32 if features.dtype == torch.float32 else np.float64
    data = features.detach().numpy()
    num_rois, channels = rois.shape[0], features.shape[1]
    height, width = features.shape[2:]
    output = np.zeros((num_rois, channels, pooled_h, pooled_w), dtype=real)
    argmax = np.full(output.shape, -1, dtype=np.int32)
    scale = real(spatial_scale)
    for n, roi in enumerate(rois.numpy().astype(real)):
        batch = int(roi[0])
        start_w, start_h, end_w, end_h = (c_round(coord * scale) for coord in roi[1:])
        bin_h = real(max(end_h - start_h + 1, 1)) / real(pooled_h)
        bin_w = real(max(end_w - start_w + 1, 1)) / real(pooled_w)
        for c in range(channels):
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    hstart = clip(math.floor(real(ph) * bin_h) + start_h, height)
                    hend = clip(math.ceil(real(ph + 1) * bin_h) + start_h, height)
                    wstart = clip(math.floor(real(pw) * bin_w) + start_w, width)
                    wend = clip(math.ceil(real(pw + 1) * bin_w) + start_w, width)
                    empty = hend <= hstart or wend <= wstart
                    best, best_index = (real(0) if empty else real(-FLT_MAX)), -1
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if data[batch, c, h, w] > best:
                                best, best_index = data[batch, c, h, w], h * width + w
                    output[n, c, ph, pw], argmax[n, c, ph, pw] = best, best_index
    return torch.from_numpy(output), torch.from_numpy(argmax)


def reference_backward(grad_output, rois, argmax, features_shape):
    grad = torch.zeros(features_shape, dtype=grad_output.dtype)
    flat = grad.view(features_shape[0], features_shape[1], -1)
    for n, c, ph, pw in np.ndindex(*argmax.shape):
        index = int(argmax[n, c, ph, pw])
        if index >= 0:
            flat[int(rois[n, 0]), c, index] += grad_output[n, c, ph, pw]
    return grad


def c_round(value):
    """C's round: half away from zero (exact for float32 and float64 inputs)."""
    return int(math.copysign(math.floor(abs(float(value)) + 0.5), float(value)))


def clip(value, limit):
    return min(max(value, 0), limit)


def random_rois(generator, num_rois, num_images, extent, dtype=torch.float32):
    """RoIs of every kind: inside, across the border, outside the map, negative
    coordinates, zero-size and inverted boxes, and coordinates at x.5."""
    corner = torch.rand(num_rois, 2, generator=generator) * extent * 1.4 - extent * 0.2
    size = torch.rand(num_rois, 2, generator=generator) * extent * 0.8 - extent * 0.05
    boxes = torch.cat([corner, corner + size], 1)
    halves = torch.rand(num_rois, 4, generator=generator) < 0.2
    boxes = torch.where(halves, torch.floor(boxes) + 0.5, boxes)
    batch = torch.randint(0, num_images, (num_rois, 1), generator=generator).float()
    return torch.cat([batch, boxes], 1).to(dtype)


def assert_same_bits(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    as_int = torch.int32 if actual.dtype == torch.float32 else torch.int64
    assert torch.equal(actual.contiguous().view(as_int), expected.contiguous().view(as_int))


CASES = [
    # (seed, N, C, H, W, R, pooled, spatial_scale)
    (0, 1, 2, 5, 7, 6, (2, 2), 1.0),
    (1, 2, 3, 6, 5, 8, (3, 2), 0.5),
    (2, 2, 1, 4, 9, 10, (2, 4), 1 / 16),
    (3, 3, 2, 7, 7, 9, (1, 1), 0.25),
    (4, 1, 2, 3, 3, 5, (4, 5), 1.0),
]


@pytest.mark.parametrize("with_argmax", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference_bit_for_bit(case, dtype, with_argmax):
    # Without an argmax (nothing to differentiate) the maxima come from the values.
    seed, num, channels, height, width, num_rois, pooled, scale = case
    generator = torch.Generator().manual_seed(seed)
    # Small integers: many ties, so the first-in-scan-order rule is exercised.
    features = torch.randint(-3, 4, (num, channels, height, width), generator=generator).to(dtype)
    rois = random_rois(generator, num_rois, num, max(height, width) / scale, dtype)
    output, argmax = roi_pool_forward_cpu(features, rois, *pooled, scale, with_argmax=with_argmax)
    expected_output, expected_argmax = reference_roi_pool(features, rois, *pooled, scale)
    assert_same_bits(output, expected_output)
    if with_argmax:
        assert torch.equal(argmax, expected_argmax)
    else:
        assert argmax is None


@pytest.mark.parametrize("with_argmax", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_is_never_a_maximum(dtype, with_argmax):
    # Caffe's `value > max` is false for NaN: a bin of NaN only stays at -FLT_MAX.
    generator = torch.Generator().manual_seed(8)
    features = torch.randint(-3, 4, (2, 3, 6, 7), generator=generator).to(dtype)
    features[features == 2] = math.nan
    features[0, :, :2, :2] = math.nan
    rois = torch.cat([random_rois(generator, 12, 2, 7 / 0.5, dtype),
                      torch.tensor([[0, 0, 0, 2, 2]], dtype=dtype)])
    output, argmax = roi_pool_forward_cpu(features, rois, 2, 3, 0.5, with_argmax=with_argmax)
    expected_output, expected_argmax = reference_roi_pool(features, rois, 2, 3, 0.5)
    assert not output.isnan().any() and (output[-1] == -FLT_MAX).any()
    assert_same_bits(output, expected_output)
    if with_argmax:
        assert torch.equal(argmax, expected_argmax)


def test_op_keeps_an_argmax_only_for_gradients():
    generator = torch.Generator().manual_seed(9)
    features = torch.randn(1, 3, 6, 6, generator=generator)
    rois = random_rois(generator, 5, 1, 12)
    expected, _ = reference_roi_pool(features, rois, 2, 2, 0.5)
    assert_same_bits(roi_pool(features, rois, 2, 0.5), expected)
    leaf = features.clone().requires_grad_()
    with torch.no_grad():
        assert_same_bits(roi_pool(leaf, rois, 2, 0.5), expected)
    output = roi_pool(leaf, rois, 2, 0.5)
    assert_same_bits(output.detach(), expected)
    output.sum().backward()
    assert leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_relu_features_match_reference(seed):
    # Non-negative maps (the usual case, half zeros) take their own key rule.
    generator = torch.Generator().manual_seed(seed)
    features = torch.relu(torch.randint(-4, 3, (2, 3, 8, 9), generator=generator).float())
    rois = random_rois(generator, 10, 2, 9 / 0.5)
    output, argmax = roi_pool_forward_cpu(features, rois, 3, 3, 0.5)
    expected_output, expected_argmax = reference_roi_pool(features, rois, 3, 3, 0.5)
    assert_same_bits(output, expected_output)
    assert torch.equal(argmax, expected_argmax)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_special_values(dtype):
    # -0.0 before 0.0, -inf and -FLT_MAX never beat the starting -FLT_MAX, +inf wins.
    features = torch.tensor([[[[-0.0, 0.0, -math.inf],
                               [-FLT_MAX, -math.inf, math.inf],
                               [-1e300 if dtype == torch.float64 else -3.0, 0.0, -0.0]]]], dtype=dtype)
    rois = torch.tensor([[0, 0, 0, 1, 0], [0, 2, 0, 2, 1], [0, 0, 0, 2, 2], [0, 0, 1, 1, 1],
                         [0, 0, 2, 0, 2], [0, 1, 2, 2, 2]], dtype=dtype)
    output, argmax = roi_pool_forward_cpu(features, rois, 1, 1, 1.0)
    expected_output, expected_argmax = reference_roi_pool(features, rois, 1, 1, 1.0)
    assert_same_bits(output, expected_output)
    assert torch.equal(argmax, expected_argmax)
    assert argmax[3].item() == -1 and output[3].item() == -FLT_MAX
    # Without an argmax too: the -0.0 sends it to the keys.
    assert_same_bits(roi_pool_forward_cpu(features, rois, 1, 1, 1.0, with_argmax=False)[0],
                     expected_output)


def test_backward_matches_reference(device):
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 3, 6, 8, generator=generator)
    rois = random_rois(generator, 12, 2, 8 / 0.5)
    grad_output = torch.randn(12, 3, 2, 3, generator=generator)
    features_d = features.to(device).requires_grad_()
    output = roi_pool(features_d, rois.to(device), (2, 3), 0.5)
    output.backward(grad_output.to(device))
    _, argmax = reference_roi_pool(features, rois, 2, 3, 0.5)
    expected = reference_backward(grad_output, rois, argmax, features.shape)
    torch.testing.assert_close(features_d.grad.cpu(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_op_on_every_device_matches_reference(device, dtype):
    generator = torch.Generator().manual_seed(6)
    features = torch.randn(2, 4, 7, 6, generator=generator, dtype=dtype)
    rois = random_rois(generator, 9, 2, 7 / 0.25, dtype)
    output = roi_pool(features.to(device), rois.to(device), (3, 2), 0.25)
    expected, _ = reference_roi_pool(features, rois, 3, 2, 0.25)
    assert output.device.type == device.type
    assert_same_bits(output.cpu(), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    generator = torch.Generator().manual_seed(seed)
    shape = (2, 2, 5, 6)
    # Distinct values far apart: gradcheck's small steps never change an argmax.
    values = torch.randperm(math.prod(shape), generator=generator).double() / 10
    features = values.view(shape).requires_grad_()
    rois = random_rois(generator, 4, 2, 6 / 0.5, torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_pool(f, rois, (2, 3), 0.5), (features,))


def test_no_rois(device):
    features = torch.randn(1, 3, 4, 4, device=device, requires_grad=True)
    output = roi_pool(features, torch.zeros(0, 5, device=device), (2, 2), 1.0)
    assert output.shape == (0, 3, 2, 2)
    output.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_rois_outside_the_map_pool_nothing():
    features = torch.randn(1, 2, 4, 4)
    rois = torch.tensor([[0, 100, 100, 120, 130], [0, -50, -50, -10, -20]])
    output, argmax = roi_pool_forward_cpu(features, rois, 2, 2, 1.0)
    assert torch.equal(output, torch.zeros_like(output))
    assert torch.equal(argmax, torch.full_like(argmax, -1))
    grad = roi_pool_backward_cpu(torch.ones_like(output), rois, argmax, features.shape)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("with_argmax", [True, False])
def test_many_chunks_match_reference(monkeypatch, with_argmax):
    # A tiny budget: RoIs of every size class split into many chunks.
    monkeypatch.setattr(roi_pool_module, "CHUNK_ELEMENTS", 256)
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(1, 16, 12, 20, generator=generator)
    rois = random_rois(generator, 40, 1, 20 / 0.5)
    output, argmax = roi_pool_forward_cpu(features, rois, 3, 3, 0.5, with_argmax=with_argmax)
    expected_output, expected_argmax = reference_roi_pool(features, rois, 3, 3, 0.5)
    assert_same_bits(output, expected_output)
    if with_argmax:
        assert torch.equal(argmax, expected_argmax)


@pytest.mark.parametrize("keep_bytes, kept", [(1 << 20, True), (1024, False)])
def test_scratch_is_kept_up_to_its_limit(monkeypatch, keep_bytes, kept):
    monkeypatch.setattr(roi_pool_module, "SCRATCH_KEEP_BYTES", keep_bytes)
    monkeypatch.setattr(roi_pool_module, "_SCRATCH", roi_pool_module._Scratch())
    generator = torch.Generator().manual_seed(10)
    features = torch.randn(1, 8, 9, 10, generator=generator)  # keys: 720 float64, 5760 bytes
    rois = random_rois(generator, 6, 1, 10)
    expected_output, expected_argmax = reference_roi_pool(features, rois, 2, 2, 1.0)
    for _ in range(2):  # the second call works in what the first one kept
        output, argmax = roi_pool_forward_cpu(features, rois, 2, 2, 1.0)
        assert_same_bits(output, expected_output)
        assert torch.equal(argmax, expected_argmax)
    assert bool(roi_pool_module._SCRATCH.storage) == kept


def test_bad_input_is_named():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="R×5"):
        roi_pool(features, torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(TypeError, match="rois are torch.float64"):
        roi_pool(features, torch.zeros(3, 5, dtype=torch.float64), 2, 1.0)
    with pytest.raises(ValueError, match="batch index 1"):
        roi_pool(features, torch.tensor([[1.0, 0, 0, 2, 2]]), 2, 1.0)
    with pytest.raises(ValueError, match="N×C×H×W"):
        roi_pool(features[0], torch.zeros(1, 5), 2, 1.0)
