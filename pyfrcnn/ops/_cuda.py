"""The CUDA path of roi_pool and nms: kernels/*.cu through cupy.RawModule.

cupy is imported the first time a CUDA tensor reaches an op, never before.
Each source is compiled once per device and kept. Kernels run on torch's
current stream, and tensors cross to cupy by DLPack without a copy.

A launch is planned by the *_launch functions (check inputs, allocate
outputs, work out grid, block and arguments) and carried out by `run`. The
plan knows nothing of cupy, so tests/ops/kernel_harness.py carries out the
same plans with the same sources built as C++ for the CPU.

Nothing here reads a tensor on the host: NMS builds its mask and sweeps it
on the device (nms_mask, then nms_keep); only the number of kept boxes, the
size of the result, is learnt by the host, as any variable-size output is.
A CUDA tensor without cupy is a DeviceError, never a silent copy to the CPU.
"""

import collections
from pathlib import Path

import numpy as np
import torch

from pyfrcnn.errors import DeviceError
from pyfrcnn.ops.sweep import greedy_sweep

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
# No fused multiply-add: the kernels then round exactly as the CPU path does.
NVRTC_OPTIONS = ("--fmad=false",)
ROI_POOL_THREADS = 512
MAX_BLOCKS = 4096  # grid-stride loops cover the rest
NMS_THREADS = 64  # bits in a mask word
NMS_KEEP_MAX_WORDS = 4096  # as in kernels/nms.cu
NMS_KEEP_THREADS = 256
_INT_MAX = 2**31 - 1

Launch = collections.namedtuple("Launch", "source kernel grid block args")

_modules = {}  # (source, device index) -> cupy.RawModule
_cupy = None


def available():
    """True when cupy imports (the caller has already seen a CUDA tensor)."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError:
            _cupy = False
        else:
            _cupy = cupy
    return _cupy is not False


def launch_geometry(kernel, count):
    """(grid, block) for `kernel` over `count` outputs (roi_pool) or boxes (nms)."""
    if kernel == "nms_keep":
        words = -(-count // NMS_THREADS)
        return (1, 1, 1), (max(min(words, NMS_KEEP_THREADS), 1), 1, 1)
    if kernel.startswith("nms"):
        blocks = -(-count // NMS_THREADS)
        return (blocks, blocks, 1), (NMS_THREADS, 1, 1)
    blocks = min(-(-count // ROI_POOL_THREADS), MAX_BLOCKS)
    return (max(blocks, 1), 1, 1), (ROI_POOL_THREADS, 1, 1)


def roi_pool_forward(features, rois, pooled_h, pooled_w, spatial_scale):
    _check_device("roi_pool", features, rois)
    output, argmax, launch = roi_pool_forward_launch(features, rois, pooled_h, pooled_w, spatial_scale)
    run(launch, features.device)
    return output, argmax


def roi_pool_backward(grad_output, rois, argmax, features_shape):
    _check_device("roi_pool backward", grad_output, rois, argmax)
    grad, launch = roi_pool_backward_launch(grad_output, rois, argmax, features_shape)
    run(launch, grad_output.device)
    return grad


def nms(boxes, scores, iou_threshold):
    _check_device("nms", boxes, scores)
    return nms_with(run, boxes, scores, iou_threshold)


def nms_with(runner, boxes, scores, iou_threshold):
    """NMS with the mask kernel carried out by `runner(launch, device)`."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True)[1]
    mask, launch = nms_mask_launch(boxes[order].contiguous(), iou_threshold)
    runner(launch, boxes.device)
    keep, launch = nms_keep_launch(mask)
    if launch is None:  # a mask too wide for the kernel's shared memory
        keep = greedy_sweep(mask.cpu().numpy().view(np.uint64))
        return order[torch.from_numpy(keep).to(boxes.device)]
    runner(launch, boxes.device)
    return order[keep]


def roi_pool_forward_launch(features, rois, pooled_h, pooled_w, spatial_scale):
    """(output, argmax, launch) for roi_pool_forward_<dtype>; launch is None
    when there is nothing to compute."""
    _check_contiguous("roi_pool", features=features, rois=rois)
    _check_dtype("roi_pool", features, rois)
    if features.dim() != 4 or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool: need N×C×H×W features and R×5 rois, "
                         f"got {tuple(features.shape)} and {tuple(rois.shape)}")
    num_rois, channels = rois.shape[0], features.shape[1]
    output = features.new_zeros((num_rois, channels, pooled_h, pooled_w))
    argmax = torch.full(output.shape, -1, dtype=torch.int32, device=features.device)
    count = output.numel()
    if count == 0 or features.numel() == 0:
        return output, argmax, None
    _check_int_range("roi_pool", count, features.numel())
    real = _real(features.dtype)
    args = (np.int32(count), features, real(spatial_scale), np.int32(channels),
            np.int32(features.shape[2]), np.int32(features.shape[3]), np.int32(pooled_h),
            np.int32(pooled_w), rois, output, argmax)
    kernel = "roi_pool_forward_" + _suffix(features.dtype)
    return output, argmax, Launch("roi_pool.cu", kernel, *launch_geometry(kernel, count), args)


def roi_pool_backward_launch(grad_output, rois, argmax, features_shape):
    """(grad_features, launch) for roi_pool_backward_<dtype>."""
    _check_contiguous("roi_pool backward", grad_output=grad_output, rois=rois, argmax=argmax)
    _check_dtype("roi_pool backward", grad_output, rois)
    if argmax.dtype != torch.int32 or argmax.shape != grad_output.shape:
        raise ValueError(f"roi_pool backward: argmax must be int32 of shape {tuple(grad_output.shape)}, "
                         f"got {argmax.dtype} {tuple(argmax.shape)}")
    num, channels, height, width = features_shape
    grad = grad_output.new_zeros(features_shape)
    count = grad_output.numel()
    if count == 0 or grad.numel() == 0:
        return grad, None
    _check_int_range("roi_pool backward", count, grad.numel())
    args = (np.int32(count), grad_output, argmax, rois, np.int32(channels), np.int32(height),
            np.int32(width), np.int32(grad_output.shape[2]), np.int32(grad_output.shape[3]), grad)
    kernel = "roi_pool_backward_" + _suffix(grad_output.dtype)
    return grad, Launch("roi_pool.cu", kernel, *launch_geometry(kernel, count), args)


def nms_mask_launch(sorted_boxes, iou_threshold):
    """(mask, launch) for nms_mask_<dtype>: mask is n×ceil(n/64) int64 whose
    bits are the uint64 words of the suppression mask."""
    _check_contiguous("nms", boxes=sorted_boxes)
    _check_dtype("nms", sorted_boxes)
    if sorted_boxes.dim() != 2 or sorted_boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must be n×4, got {tuple(sorted_boxes.shape)}")
    num = sorted_boxes.shape[0]
    words = -(-num // NMS_THREADS)
    mask = torch.zeros((num, words), dtype=torch.int64, device=sorted_boxes.device)
    if num == 0:
        return mask, None
    _check_int_range("nms", mask.numel(), sorted_boxes.numel())
    real = _real(sorted_boxes.dtype)
    args = (np.int32(num), real(iou_threshold), sorted_boxes, mask)
    kernel = "nms_mask_" + _suffix(sorted_boxes.dtype)
    return mask, Launch("nms.cu", kernel, *launch_geometry(kernel, num), args)


def nms_keep_launch(mask):
    """(keep, launch) for nms_keep: keep is a bool vector, one per sorted box,
    true for the boxes greedy NMS keeps. launch is None when the mask has more
    than NMS_KEEP_MAX_WORDS words per row (the caller sweeps it on the host)."""
    _check_contiguous("nms", mask=mask)
    num, words = mask.shape
    keep = torch.zeros(num, dtype=torch.bool, device=mask.device)
    if words > NMS_KEEP_MAX_WORDS:
        return keep, None
    return keep, Launch("nms.cu", "nms_keep", *launch_geometry("nms_keep", num),
                        (np.int32(num), mask, keep))


def run(launch, device):
    """Carry out a launch on `device` with cupy, on torch's current stream."""
    if launch is None:
        return
    if not available():
        raise DeviceError(f"{launch.source.split('.')[0]} on {device}: the CUDA path needs cupy "
                          "(pip install pyfrcnn[cuda], or cupy-cuda12x / cupy-cuda13x)")
    cupy = _cupy
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index):
        pointer = torch.cuda.current_stream(index).cuda_stream
        # 0 is the legacy default stream, which cupy names Stream.null.
        stream = cupy.cuda.Stream.null if pointer == 0 else cupy.cuda.ExternalStream(pointer, index)
        with stream:
            kernel = _module(launch.source, index).get_function(launch.kernel)
            # detach: torch refuses to export a tensor that requires grad (the
            # features inside roi_pool's autograd Function do); the kernels
            # write only outputs allocated here.
            args = tuple(cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a
                         for a in launch.args)
            kernel(launch.grid, launch.block, args)


def _module(source, device_index):
    key = (source, device_index)
    if key not in _modules:
        code = (KERNEL_DIR / source).read_text()
        _modules[key] = _cupy.RawModule(code=code, options=NVRTC_OPTIONS)
    return _modules[key]


def _real(dtype):
    return np.float32 if dtype == torch.float32 else np.float64


def _suffix(dtype):
    return "float" if dtype == torch.float32 else "double"


def _check_device(op, *tensors):
    devices = {t.device for t in tensors}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        raise ValueError(f"{op}: the CUDA path needs all tensors on one CUDA device, "
                         f"got {', '.join(str(t.device) for t in tensors)}")


def _check_dtype(op, first, *others):
    if first.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: kernels take float32 or float64, got {first.dtype}")
    for other in others:
        if other.dtype != first.dtype:
            raise TypeError(f"{op}: mixed dtypes {first.dtype} and {other.dtype}")


def _check_contiguous(op, **tensors):
    for name, tensor in tensors.items():
        if not tensor.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous")


def _check_int_range(op, *counts):
    if max(counts) > _INT_MAX:
        raise ValueError(f"{op}: {max(counts)} elements exceed the kernels' 32-bit indices")
