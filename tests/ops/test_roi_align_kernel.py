"""kernels/roi_align.cu, proven without a GPU: built as C++ against
cuda_shim.h (tests/ops/kernel_harness.py), it runs the launches that
pyfrcnn.ops.roi_align plans, and must give the Python-loop reference's
output bit for bit (same order of operations, no fused multiply-add) and
the CPU path's output and gradient to rounding. On a CUDA machine with
cupy, the real path against the CPU path."""

import pytest
import torch

from pyfrcnn.ops.roi_align import (roi_align, roi_align_backward_cpu, roi_align_backward_launch,
                                   roi_align_forward_cpu, roi_align_forward_launch)
from tests.conftest import requires_cuda
from tests.ops import kernel_harness
from tests.ops.test_roi_align import reference_roi_align, tolerance
from tests.ops.test_roi_pool import assert_same_bits, random_rois


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if not kernel_harness.have_compiler():
        pytest.skip("g++ is not installed")
    return kernel_harness.EmulatedDevice(tmp_path_factory.mktemp("roi_align_kernel"))


def forward(device, features, rois, *settings):
    output, launch = roi_align_forward_launch(features, rois, *settings)
    device.run(launch)
    return output


def backward(device, grad_output, rois, features_shape, spatial_scale, ratio, aligned):
    grad, launch = roi_align_backward_launch(grad_output, rois, features_shape, spatial_scale,
                                             ratio, aligned)
    device.run(launch)
    return grad


CASES = [
    # (seed, N, C, H, W, R, pooled, spatial_scale, sampling_ratio, aligned)
    (0, 1, 2, 5, 7, 6, (2, 2), 1.0, 2, False),
    (1, 2, 3, 6, 5, 8, (3, 2), 0.5, 0, True),
    (2, 3, 2, 9, 8, 7, (2, 3), 1 / 16, 0, False),
    (3, 1, 1, 4, 4, 5, (2, 2), 1.0, -1, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_reference_and_cpu_path(emulated, case, dtype):
    seed, num, channels, height, width, num_rois, pooled, scale, ratio, aligned = case
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num, channels, height, width, generator=generator, dtype=dtype)
    rois = random_rois(generator, num_rois, num, max(height, width) / scale, dtype)
    settings = (*pooled, scale, ratio, aligned)
    output = forward(emulated, features, rois, *settings)
    expected, _ = reference_roi_align(features, rois, *settings)
    assert_same_bits(output, expected)
    cpu_output, matrix = roi_align_forward_cpu(features, rois, *settings)
    torch.testing.assert_close(output, cpu_output, **tolerance(dtype))

    grad_output = torch.randn(output.shape, generator=generator, dtype=dtype)
    grad = backward(emulated, grad_output, rois, features.shape, scale, ratio, aligned)
    expected_grad = roi_align_backward_cpu(grad_output, matrix, features.shape)
    torch.testing.assert_close(grad, expected_grad, **tolerance(dtype))


def test_grid_stride_loop_covers_every_output(emulated):
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(2, 3, 6, 6, generator=generator)
    rois = random_rois(generator, 5, 2, 6)
    output, launch = roi_align_forward_launch(features, rois, 2, 2, 1.0, 0, True)
    emulated.run(launch._replace(grid=(1, 1, 1), block=(32, 1, 1)))
    expected, _ = reference_roi_align(features, rois, 2, 2, 1.0, 0, True)
    assert_same_bits(output, expected)


def test_kernels_on_empty_input(emulated):
    features = torch.randn(1, 2, 4, 4)
    output = forward(emulated, features, torch.zeros(0, 5), 2, 2, 1.0, 0, False)
    assert output.shape == (0, 2, 2, 2)
    grad = backward(emulated, output, torch.zeros(0, 5), features.shape, 1.0, 0, False)
    assert torch.equal(grad, torch.zeros_like(features))


class EmulatedRoIAlign(torch.autograd.Function):
    """roi_align with the emulated kernels for forward and backward, for gradcheck."""

    @staticmethod
    def forward(ctx, features, rois, device, settings):
        ctx.save_for_backward(rois)
        ctx.device, ctx.settings, ctx.features_shape = device, settings, features.shape
        return forward(device, features, rois, *settings)

    @staticmethod
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        _, _, scale, ratio, aligned = ctx.settings
        grad = backward(ctx.device, grad_output.contiguous(), rois, ctx.features_shape, scale,
                        ratio, aligned)
        return grad, None, None, None


@pytest.mark.parametrize("seed, ratio, aligned", [(0, 0, True), (1, 2, False)])
def test_kernel_gradcheck(emulated, seed, ratio, aligned):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 1, 4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    rois = random_rois(generator, 3, 2, 5 / 0.5, torch.float64)

    def align(f):
        return EmulatedRoIAlign.apply(f, rois, emulated, (2, 2, 0.5, ratio, aligned))
    assert torch.autograd.gradcheck(align, (features,))


def test_launch_checks_inputs():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="features must be contiguous"):
        roi_align_forward_launch(features.transpose(2, 3), torch.zeros(1, 5), 2, 2, 1.0, 0, False)
    with pytest.raises(TypeError, match="mixed dtypes"):
        roi_align_forward_launch(features, torch.zeros(1, 5, dtype=torch.float64), 2, 2, 1.0, 0, False)
    with pytest.raises(ValueError, match="R×C×ph×pw gradient"):
        roi_align_backward_launch(torch.zeros(2, 2, 2, 2), torch.zeros(1, 5), features.shape, 1.0,
                                  0, False)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cupy_path_matches_cpu_path(dtype):
    generator = torch.Generator().manual_seed(8)
    features = torch.randn(2, 8, 12, 15, generator=generator, dtype=dtype)
    rois = random_rois(generator, 30, 2, 15 / 0.5, dtype)
    cuda = torch.device("cuda")
    features_cuda = features.to(cuda).requires_grad_()
    for ratio, aligned in ((0, True), (2, False)):
        output = roi_align(features_cuda, rois.to(cuda), (7, 7), 0.5, ratio, aligned)
        expected, matrix = roi_align_forward_cpu(features, rois, 7, 7, 0.5, ratio, aligned)
        torch.testing.assert_close(output.detach().cpu(), expected, **tolerance(dtype))
        grad_output = torch.randn(output.shape, generator=generator, dtype=dtype)
        features_cuda.grad = None
        output.backward(grad_output.to(cuda))
        expected_grad = roi_align_backward_cpu(grad_output, matrix, features.shape)
        torch.testing.assert_close(features_cuda.grad.cpu(), expected_grad, **tolerance(dtype))
