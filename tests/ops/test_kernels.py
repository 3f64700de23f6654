"""The CUDA kernels, proven without a GPU where possible.

1. nvcc (when installed) compiles every kernels/*.cu to PTX.
2. The same sources, built as C++ against cuda_shim.h, run the launches that
   pyfrcnn.ops._cuda plans, and must agree with the CPU path: roi_pool bit for
   bit (output and argmax), its backward to 1e-6, the NMS mask bit for bit.
3. On a CUDA machine with cupy, the real path against the CPU path.
"""

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from pyfrcnn.ops import _cuda, nms, roi_pool
from pyfrcnn.ops.nms import greedy_sweep, nms_cpu, suppression_mask
from pyfrcnn.ops.roi_pool import roi_pool_backward_cpu, roi_pool_forward_cpu
from tests.conftest import requires_cuda
from tests.ops import kernel_harness
from tests.ops.test_nms import clustered_boxes
from tests.ops.test_roi_pool import assert_same_bits, random_rois

SOURCES = sorted(path.name for path in _cuda.KERNEL_DIR.glob("*.cu"))
ENTRY_POINTS = {
    "roi_pool.cu": ["roi_pool_forward_float", "roi_pool_forward_double",
                    "roi_pool_backward_float", "roi_pool_backward_double"],
    "nms.cu": ["nms_mask_float", "nms_mask_double", "nms_keep"],
    "roi_align.cu": ["roi_align_forward_float", "roi_align_forward_double",
                     "roi_align_backward_float", "roi_align_backward_double"],
}
NVCC = shutil.which("nvcc")


def nvcc_architectures():
    result = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True)
    return set(result.stdout.split())


def test_every_source_is_known():
    assert SOURCES == sorted(ENTRY_POINTS)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_70", "sm_75", "sm_90"])
@pytest.mark.parametrize("source", SOURCES)
def test_nvcc_compiles_to_ptx(source, arch, tmp_path):
    if "compute_" + arch[3:] not in nvcc_architectures():
        pytest.skip(f"this nvcc no longer targets {arch}")
    target = tmp_path / (source + ".ptx")
    command = [NVCC, "-ptx", f"-arch={arch}", *_cuda.NVRTC_OPTIONS, str(_cuda.KERNEL_DIR / source),
               "-o", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ptx = target.read_text()
    for entry in ENTRY_POINTS[source]:
        assert f".entry {entry}(" in ptx


@pytest.fixture(scope="session")
def emulated(tmp_path_factory):
    if not kernel_harness.have_compiler():
        pytest.skip("g++ is not installed")
    return kernel_harness.EmulatedDevice(tmp_path_factory.mktemp("kernels"))


ROI_CASES = [
    # (seed, N, C, H, W, R, pooled, spatial_scale)
    (0, 1, 2, 5, 7, 6, (2, 2), 1.0),
    (1, 2, 3, 6, 5, 8, (3, 2), 0.5),
    (2, 3, 2, 9, 8, 7, (2, 3), 1 / 16),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ROI_CASES)
def test_roi_pool_kernels_match_cpu_path(emulated, case, dtype):
    seed, num, channels, height, width, num_rois, pooled, scale = case
    generator = torch.Generator().manual_seed(seed)
    features = torch.randint(-3, 4, (num, channels, height, width), generator=generator).to(dtype)
    features[0, 0, 0, :3] = torch.tensor([-0.0, 0.0, math.nan], dtype=dtype)
    rois = random_rois(generator, num_rois, num, max(height, width) / scale, dtype)
    output, argmax = kernel_harness.roi_pool_forward(emulated, features, rois, *pooled, scale)
    expected_output, expected_argmax = roi_pool_forward_cpu(features, rois, *pooled, scale)
    assert_same_bits(output, expected_output)
    assert torch.equal(argmax, expected_argmax)

    grad_output = torch.randn(output.shape, generator=generator, dtype=dtype)
    grad = kernel_harness.roi_pool_backward(emulated, grad_output, rois, argmax, features.shape)
    expected = roi_pool_backward_cpu(grad_output, rois, expected_argmax, features.shape)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)


def test_roi_pool_grid_stride_loop_covers_every_output(emulated):
    # One block of 32 threads for all outputs: each thread loops.
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(2, 3, 6, 6, generator=generator)
    rois = random_rois(generator, 5, 2, 6)
    output, argmax, launch = _cuda.roi_pool_forward_launch(features, rois, 2, 2, 1.0)
    emulated.run(launch._replace(grid=(1, 1, 1), block=(32, 1, 1)))
    expected_output, expected_argmax = roi_pool_forward_cpu(features, rois, 2, 2, 1.0)
    assert_same_bits(output, expected_output)
    assert torch.equal(argmax, expected_argmax)


def test_roi_pool_kernels_on_empty_input(emulated):
    features = torch.randn(1, 2, 4, 4)
    output, argmax = kernel_harness.roi_pool_forward(emulated, features, torch.zeros(0, 5), 2, 2, 1.0)
    assert output.shape == argmax.shape == (0, 2, 2, 2)
    grad = kernel_harness.roi_pool_backward(emulated, output, torch.zeros(0, 5), argmax, features.shape)
    assert torch.equal(grad, torch.zeros_like(features))


@pytest.mark.parametrize("seed", [0, 1])
def test_roi_pool_kernel_gradcheck(emulated, seed):
    generator = torch.Generator().manual_seed(seed)
    shape = (2, 2, 4, 5)
    values = torch.randperm(math.prod(shape), generator=generator).double() / 10
    features = values.view(shape).requires_grad_()
    rois = random_rois(generator, 3, 2, 5 / 0.5, torch.float64)

    def pool(f):
        return kernel_harness.EmulatedRoIPool.apply(f, rois, emulated, (2, 2), 0.5)
    assert torch.autograd.gradcheck(pool, (features,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num, threshold", [(1, 0.5), (64, 0.3), (65, 0.7), (140, 0.5), (140, 0.0)])
def test_nms_kernel_matches_cpu_path(emulated, num, threshold, dtype):
    generator = torch.Generator().manual_seed(num)
    boxes = clustered_boxes(generator, num, dtype)
    scores = torch.rand(num, generator=generator)
    order = torch.sort(scores, descending=True, stable=True)[1]
    sorted_boxes = boxes[order].contiguous()
    mask = kernel_harness.nms_mask(emulated, sorted_boxes, threshold)
    assert np.array_equal(mask, suppression_mask(sorted_boxes, threshold))
    keep = kernel_harness.nms(emulated, boxes, scores, threshold)
    assert torch.equal(keep, nms_cpu(boxes, scores, threshold))


@pytest.mark.parametrize("threads", [1, 2, 256])
def test_nms_keep_kernel_sweeps_as_the_host_does(emulated, threads):
    # 300 boxes: 5 mask words, swept by fewer, as many or more threads than words.
    generator = torch.Generator().manual_seed(threads)
    boxes = clustered_boxes(generator, 300)
    order = torch.sort(torch.rand(300, generator=generator), descending=True, stable=True)[1]
    sorted_boxes = boxes[order].contiguous()
    mask = kernel_harness.nms_mask(emulated, sorted_boxes, 0.4)
    keep, launch = _cuda.nms_keep_launch(torch.from_numpy(mask.view(np.int64)))
    assert launch.block == (5, 1, 1) and launch.grid == (1, 1, 1)
    emulated.run(launch._replace(block=(threads, 1, 1)))
    expected = greedy_sweep(suppression_mask(sorted_boxes, 0.4))
    assert torch.equal(torch.nonzero(keep)[:, 0], torch.from_numpy(expected))
    assert 0 < expected.size < 300


def test_nms_too_wide_for_the_keep_kernel_sweeps_on_the_host(emulated, monkeypatch):
    monkeypatch.setattr(_cuda, "NMS_KEEP_MAX_WORDS", 1)
    generator = torch.Generator().manual_seed(3)
    boxes = clustered_boxes(generator, 130)
    scores = torch.rand(130, generator=generator)
    assert torch.equal(kernel_harness.nms(emulated, boxes, scores, 0.5), nms_cpu(boxes, scores, 0.5))


def test_nms_kernel_on_huge_and_infinite_boxes(emulated):
    generator = torch.Generator().manual_seed(9)
    boxes = clustered_boxes(generator, 40)
    boxes[3] = torch.tensor([-3e38, 0, 3e38, 10])
    boxes[5] = boxes[7] = torch.tensor([0, 0, 1e20, 1e20])
    boxes[9] = torch.tensor([-float("inf"), 0, 10, 10])
    boxes[11] = torch.tensor([0, 0, float("inf"), float("inf")])
    assert np.array_equal(kernel_harness.nms_mask(emulated, boxes, 0.5), suppression_mask(boxes, 0.5))


def test_nms_kernel_on_empty_input(emulated):
    assert kernel_harness.nms(emulated, torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert kernel_harness.nms_mask(emulated, torch.zeros(0, 4), 0.5).shape == (0, 0)


def test_launch_checks_inputs():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="features must be contiguous"):
        _cuda.roi_pool_forward_launch(features.transpose(2, 3), torch.zeros(1, 5), 2, 2, 1.0)
    with pytest.raises(TypeError, match="mixed dtypes"):
        _cuda.roi_pool_forward_launch(features, torch.zeros(1, 5, dtype=torch.float64), 2, 2, 1.0)
    with pytest.raises(ValueError, match="int32"):
        _cuda.roi_pool_backward_launch(torch.zeros(1, 2, 2, 2), torch.zeros(1, 5),
                                       torch.zeros(1, 2, 2, 2, dtype=torch.int64), features.shape)
    with pytest.raises(ValueError, match="n×4"):
        _cuda.nms_mask_launch(torch.zeros(3, 5), 0.5)
    with pytest.raises(ValueError, match="one CUDA device"):
        _cuda.nms(torch.zeros(3, 4), torch.zeros(3), 0.5)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cupy_path_matches_cpu_path(dtype):
    generator = torch.Generator().manual_seed(8)
    features = torch.randint(-3, 4, (2, 8, 12, 15), generator=generator).to(dtype)
    rois = random_rois(generator, 30, 2, 15 / 0.5, dtype)
    cuda = torch.device("cuda")
    features_cuda = features.to(cuda).requires_grad_()
    output = roi_pool(features_cuda, rois.to(cuda), (3, 4), 0.5)
    expected_output, expected_argmax = roi_pool_forward_cpu(features, rois, 3, 4, 0.5)
    assert_same_bits(output.detach().cpu(), expected_output)
    _, argmax = _cuda.roi_pool_forward(features_cuda.detach(), rois.to(cuda), 3, 4, 0.5)
    assert torch.equal(argmax.cpu(), expected_argmax)

    grad_output = torch.randn(output.shape, generator=generator, dtype=dtype)
    output.backward(grad_output.to(cuda))
    expected = roi_pool_backward_cpu(grad_output, rois, expected_argmax, features.shape)
    torch.testing.assert_close(features_cuda.grad.cpu(), expected, rtol=0, atol=1e-6)

    boxes = clustered_boxes(generator, 500, dtype)
    scores = torch.rand(500, generator=generator)
    keep = nms(boxes.to(cuda), scores.to(cuda), 0.7)
    assert torch.equal(keep.cpu(), nms_cpu(boxes, scores, 0.7))


def test_harness_refuses_a_syncing_kernel_run_one_thread_at_a_time(emulated, monkeypatch):
    # Proof that the emulation does see __syncthreads: run without OS threads.
    monkeypatch.setattr(kernel_harness, "SYNCING_KERNELS", set())
    with pytest.raises(RuntimeError, match="__syncthreads"):
        kernel_harness.nms_mask(emulated, torch.rand(3, 4) * 10 + torch.tensor([0, 0, 20, 20]), 0.5)


def test_cuda_tensors_without_cupy_are_an_error_not_a_copy(monkeypatch):
    from pyfrcnn.errors import DeviceError

    monkeypatch.setattr(_cuda, "_cupy", False)
    _, launch = _cuda.nms_mask_launch(torch.rand(3, 4) + torch.tensor([0, 0, 5, 5]), 0.5)
    with pytest.raises(DeviceError, match="nms on cuda:0: the CUDA path needs cupy"):
        _cuda.run(launch, torch.device("cuda", 0))


class FakeCupy:
    """What _cuda.run asks of cupy, recorded (no GPU here): the device and
    stream it runs on, the module it compiles, the kernel call. Like torch's
    own __dlpack__, it refuses a tensor that requires grad."""

    def __init__(self):
        self.calls, self.modules, self.streams = [], [], []
        fake = self

        class Context:
            def __init__(self, *args):
                self.args = args

            def __enter__(self):
                fake.streams.append(self.args)

            def __exit__(self, *exc):
                return False

        class Stream:
            null = Context("null")

        class RawModule:
            def __init__(self, code, options):
                fake.modules.append((code, options))

            def get_function(self, name):
                return lambda grid, block, args: fake.calls.append((name, grid, block, args))

        self.cuda = type("cuda", (), {"Device": Context, "ExternalStream": Context, "Stream": Stream})
        self.RawModule = RawModule

    @staticmethod
    def from_dlpack(tensor):
        if tensor.requires_grad:
            raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
        return tensor


@pytest.mark.parametrize("pointer", [0, 12345])
def test_cupy_launch_on_torchs_stream_with_detached_tensors(monkeypatch, pointer):
    fake = FakeCupy()
    monkeypatch.setattr(_cuda, "_cupy", fake)
    monkeypatch.setattr(_cuda, "_modules", {})
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index: type("S", (), {"cuda_stream": pointer}))
    features = torch.randn(1, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        _, _, launch = _cuda.roi_pool_forward_launch(features, torch.tensor([[0.0, 0, 0, 3, 3]]), 2, 2, 1.0)
    launch = launch._replace(args=tuple(features if a is launch.args[1] else a for a in launch.args))
    for _ in range(2):
        _cuda.run(launch, torch.device("cuda", 1))
    assert [(name, grid, block) for name, grid, block, _ in fake.calls] == \
        [("roi_pool_forward_float", launch.grid, launch.block)] * 2
    assert not any(a.requires_grad for a in fake.calls[0][3] if isinstance(a, torch.Tensor))
    assert len(fake.modules) == 1 and fake.modules[0][1] == _cuda.NVRTC_OPTIONS  # compiled once
    stream = ("null",) if pointer == 0 else (pointer, 1)
    assert fake.streams == [(1,), stream] * 2  # device 1, then torch's current stream
