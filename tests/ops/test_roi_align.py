"""roi_align against a slow, obvious Python-loop RoIAlign (torchvision's
semantics, in the order of operations of its kernels), against
torchvision.ops.roi_align where it is installed, and float64 gradchecks."""

import math

import numpy as np
import pytest
import torch

from pyfrcnn.ops.roi_align import roi_align, roi_align_backward_cpu, roi_align_forward_cpu
from tests.ops.test_roi_pool import random_rois


def reference_roi_align(features, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                        aligned):
    """RoIAlign one output element and one sample at a time, in the input's
    floating type (numpy scalars), as torchvision's roi_align_kernel: returns
    the output and, per output element, its samples as a list of
    (pixel (y, x), weight / count) for the backward."""
    real = np.float32 if features.dtype == torch.float32 else np.float64
    data = features.detach().numpy()
    num_rois, channels = rois.shape[0], features.shape[1]
    height, width = features.shape[2:]
    output = np.zeros((num_rois, channels, pooled_h, pooled_w), dtype=real)
    taps = {}
    offset = real(0.5) if aligned else real(0)
    scale = real(spatial_scale)
    for n, roi in enumerate(rois.numpy().astype(real)):
        batch = int(roi[0])
        start_w, start_h = roi[1] * scale - offset, roi[2] * scale - offset
        end_w, end_h = roi[3] * scale - offset, roi[4] * scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, real(1)), max(roi_h, real(1))
        bin_h, bin_w = roi_h / real(pooled_h), roi_w / real(pooled_w)
        grid_h = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_h), 0)
        grid_w = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_w), 0)
        count = real(max(grid_h * grid_w, 1))
        for c in range(channels):
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    total, samples = real(0), []
                    for iy in range(grid_h):
                        y = start_h + real(ph) * bin_h + (real(iy) + real(0.5)) * bin_h / real(grid_h)
                        for ix in range(grid_w):
                            x = start_w + real(pw) * bin_w + (real(ix) + real(0.5)) * bin_w / real(grid_w)
                            corners = bilinear(y, x, height, width, real)
                            if corners is None:
                                continue
                            values = [w * data[batch, c, py, px] for (py, px), w in corners]
                            total += values[0] + values[1] + values[2] + values[3]
                            samples += [((batch, c, py, px), w / count) for (py, px), w in corners]
                    output[n, c, ph, pw] = total / count
                    taps[n, c, ph, pw] = samples
    return torch.from_numpy(output), taps


def bilinear(y, x, height, width, real):
    """The four (pixel, weight) of a sample at (y, x), None off the map."""
    if y < -1 or y > height or x < -1 or x > width:
        return None
    y, x = max(y, real(0)), max(x, real(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = real(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = real(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - real(y_low), x - real(x_low)
    hy, hx = real(1) - ly, real(1) - lx
    return [((y_low, x_low), hy * hx), ((y_low, x_high), hy * lx),
            ((y_high, x_low), ly * hx), ((y_high, x_high), ly * lx)]


def reference_backward(grad_output, taps, features_shape):
    grad = torch.zeros(features_shape, dtype=grad_output.dtype)
    for (n, c, ph, pw), samples in taps.items():
        for pixel, weight in samples:
            grad[pixel] += float(weight) * grad_output[n, c, ph, pw]
    return grad


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


CASES = [
    # (seed, N, C, H, W, R, pooled, spatial_scale, sampling_ratio, aligned)
    (0, 1, 2, 5, 7, 6, (2, 2), 1.0, 2, False),
    (1, 2, 3, 6, 5, 8, (3, 2), 0.5, 0, True),
    (2, 2, 1, 4, 9, 10, (2, 4), 1 / 16, 0, False),
    (3, 3, 2, 7, 7, 9, (1, 1), 0.25, -1, True),
    (4, 1, 2, 3, 3, 5, (4, 5), 1.0, 3, True),
    (5, 2, 2, 8, 6, 7, (3, 3), 0.5, 1, False),
    (6, 1, 1, 1, 1, 4, (2, 2), 1.0, 0, False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_match_reference(case, dtype):
    seed, num, channels, height, width, num_rois, pooled, scale, ratio, aligned = case
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num, channels, height, width, generator=generator, dtype=dtype)
    # Inside, across the border, off the map, zero-size and inverted RoIs, at x.5.
    rois = random_rois(generator, num_rois, num, max(height, width) / scale, dtype)
    output, matrix = roi_align_forward_cpu(features, rois, *pooled, scale, ratio, aligned)
    expected, taps = reference_roi_align(features, rois, *pooled, scale, ratio, aligned)
    torch.testing.assert_close(output, expected, **tolerance(dtype))
    grad_output = torch.randn(output.shape, generator=generator, dtype=dtype)
    grad = roi_align_backward_cpu(grad_output, matrix, features.shape)
    torch.testing.assert_close(grad, reference_backward(grad_output, taps, features.shape),
                               **tolerance(dtype))


def test_known_values():
    # On a ramp v = 10 y + x, bilinear sampling is exact: a bin's value is
    # the ramp at the mean of its sample points.
    ramp = (10 * torch.arange(6.0)[:, None] + torch.arange(8.0)).view(1, 1, 6, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 3.0]])
    # aligned: the RoI spans 0.5..4.5 by 0.5..2.5; 2x2 bins, 2x2 samples each
    # at quarters of the bins: x = 0.5 + (0.5, 1.5, 2.5, 3.5), y = 0.5 + (0.25, ..., 1.75).
    output = roi_align(ramp, rois, (2, 2), 1.0, 2, True)
    centre_x = torch.tensor([0.5 + 1.0, 0.5 + 3.0])
    centre_y = torch.tensor([0.5 + 0.5, 0.5 + 1.5])
    expected = 10 * centre_y[:, None] + centre_x[None, :]
    torch.testing.assert_close(output[0, 0], expected)
    # not aligned: no half-pixel shift
    torch.testing.assert_close(roi_align(ramp, rois, (2, 2), 1.0, 2, False)[0, 0], expected + 5.5)


def test_off_map_samples_count_zero_and_the_count_stays():
    features = torch.ones(1, 1, 4, 4)
    # x from 3.5 to 9.5 on a 4-wide map: with 2 samples per 3-wide bin, the
    # left bin's samples are at 4.25 and 5.75 (4.25 > 4: off the map).
    rois = torch.tensor([[0, 3.5, 0.0, 9.5, 2.0]])
    output = roi_align(features, rois, (1, 2), 1.0, 2, False)
    assert output.tolist() == [[[[0.0, 0.0]]]]
    rois = torch.tensor([[0, 2.0, 0.0, 6.0, 2.0]])  # samples at 2.5, 3.5 | 4.5, 5.5
    assert roi_align(features, rois, (1, 2), 1.0, 2, False).tolist() == [[[[1.0, 0.0]]]]
    rois = torch.tensor([[0, 3.0, 0.0, 7.0, 2.0]])  # 4.0 (the edge: read, clamped) and 6.0 (off)
    assert roi_align(features, rois, (1, 1), 1.0, 2, False).flatten().tolist() == [0.5]


@pytest.mark.parametrize("seed, ratio, aligned", [(0, 0, True), (1, 2, False), (2, -1, False)])
def test_gradcheck(seed, ratio, aligned):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 1, 4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    rois = random_rois(generator, 4, 2, 5 / 0.5, torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, (2, 3), 0.5, ratio, aligned),
                                    (features,))


def test_op_on_every_device(device):
    generator = torch.Generator().manual_seed(6)
    features = torch.randn(2, 4, 7, 6, generator=generator)
    rois = random_rois(generator, 9, 2, 7 / 0.25)
    leaf = features.to(device).requires_grad_()
    output = roi_align(leaf, rois.to(device), (3, 2), 0.25, 0, True)
    expected, taps = reference_roi_align(features, rois, 3, 2, 0.25, 0, True)
    assert output.device.type == device.type
    torch.testing.assert_close(output.detach().cpu(), expected, **tolerance(torch.float32))
    grad_output = torch.randn(output.shape, generator=generator)
    output.backward(grad_output.to(device))
    torch.testing.assert_close(leaf.grad.cpu(), reference_backward(grad_output, taps, features.shape),
                               **tolerance(torch.float32))


def test_no_rois_and_no_gradient_kept_in_test(device):
    features = torch.randn(1, 3, 4, 4, device=device, requires_grad=True)
    output = roi_align(features, torch.zeros(0, 5, device=device), (2, 2), 1.0)
    assert output.shape == (0, 3, 2, 2)
    output.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    with torch.no_grad():
        assert roi_align(features, torch.tensor([[0, 0, 0, 3, 3.0]], device=device), 2, 1.0).grad_fn is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision(dtype):
    torchvision = pytest.importorskip("torchvision")
    generator = torch.Generator().manual_seed(11)
    for ratio in (0, -1, 1, 2):
        for aligned in (False, True):
            features = torch.randn(2, 3, 9, 11, generator=generator, dtype=dtype)
            rois = random_rois(generator, 12, 2, 11 / 0.5, dtype)
            if aligned and ratio <= 0:
                # torchvision's CPU kernel fails on aligned RoIs of negative size
                # (an adaptive grid below 0); ours gives them 0.
                rois[:, 3:] = torch.maximum(rois[:, 3:], rois[:, 1:3])
            ours_in, theirs_in = features.clone().requires_grad_(), features.clone().requires_grad_()
            ours = roi_align(ours_in, rois, (3, 4), 0.5, ratio, aligned)
            theirs = torchvision.ops.roi_align(theirs_in, rois, (3, 4), 0.5, ratio, aligned)
            torch.testing.assert_close(ours, theirs, **tolerance(dtype))
            grad_output = torch.randn(ours.shape, generator=generator, dtype=dtype)
            ours.backward(grad_output)
            theirs.backward(grad_output)
            torch.testing.assert_close(ours_in.grad, theirs_in.grad, **tolerance(dtype))


def test_bad_input_is_named():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="R×5"):
        roi_align(features, torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(TypeError, match="rois are torch.float64"):
        roi_align(features, torch.zeros(3, 5, dtype=torch.float64), 2, 1.0)
    with pytest.raises(ValueError, match="batch index 1"):
        roi_align(features, torch.tensor([[1.0, 0, 0, 2, 2]]), 2, 1.0)
    with pytest.raises(ValueError, match="N×C×H×W"):
        roi_align(features[0], torch.zeros(1, 5), 2, 1.0)
    with pytest.raises(ValueError, match="output size must be positive"):
        roi_align(features, torch.zeros(1, 5), (0, 2), 1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_do_not_share_the_scratch(channels):
    # The product goes through kept scratch; each output must be its own copy.
    generator = torch.Generator().manual_seed(12)
    features = torch.randn(1, channels, 6, 6, generator=generator)
    first = roi_align(features, torch.tensor([[0, 0, 0, 5, 5.0]]), 1, 1.0)
    kept = first.clone()
    second = roi_align(features, torch.tensor([[0, 1, 1, 3, 2.0]]), 1, 1.0)
    assert torch.equal(first, kept) and not torch.equal(first, second)
