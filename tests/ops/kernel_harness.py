"""Runs pyfrcnn/kernels/*.cu on the CPU, to test the kernels without a GPU.

Each source is built, unchanged, as a shared library with g++ against
cuda_shim.h and loaded with ctypes. EmulatedDevice.run carries out the very
Launch that pyfrcnn.ops._cuda plans for cupy (kernel name, grid, block,
arguments): blocks one after another, and in each block the threads one at a
time, or, for kernels that synchronise, on one OS thread each so that
__syncthreads is a real barrier.
"""

import ctypes
import itertools
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import torch

from pyfrcnn.ops import _cuda

SHIM = Path(__file__).with_name("cuda_shim.h")
CXX_FLAGS = ("-x", "c++", "-include", str(SHIM), "-shared", "-fPIC", "-O1",
             "-ffp-contract=off", "-pthread")
# Kernels that call __syncthreads.
SYNCING_KERNELS = {"nms_mask_float", "nms_mask_double", "nms_keep"}
_SYNC_ERRORS = {1: "called __syncthreads in a launch that runs threads one at a time",
                2: "waited at __syncthreads for a thread that never came"}


def have_compiler():
    return shutil.which("g++") is not None


class EmulatedDevice:
    """The kernel sources built for the CPU into `build_dir`, loaded on demand."""

    def __init__(self, build_dir):
        self.build_dir = Path(build_dir)
        self._libraries = {}

    def library(self, source):
        if source not in self._libraries:
            target = self.build_dir / (Path(source).stem + ".so")
            command = ["g++", *CXX_FLAGS, str(_cuda.KERNEL_DIR / source), "-o", str(target)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"g++ could not build {source}:\n{result.stderr}")
            library = ctypes.CDLL(str(target))
            for name in ("shim_set_launch", "shim_set_thread"):
                getattr(library, name).argtypes = [ctypes.c_uint] * 6
            library.shim_set_barrier.argtypes = [ctypes.c_int]
            self._libraries[source] = library
        return self._libraries[source]

    def run(self, launch, device=None):
        """Carry out a pyfrcnn.ops._cuda.Launch (None: nothing to do)."""
        if launch is None:
            return
        library = self.library(launch.source)
        kernel = getattr(library, launch.kernel)
        args = [_ctypes_arg(a) for a in launch.args]
        kernel.argtypes = [type(a) for a in args]
        kernel.restype = None
        library.shim_set_launch(*launch.grid, *launch.block)
        blocks = list(_indices(launch.grid))
        threads = list(_indices(launch.block))
        if launch.kernel in SYNCING_KERNELS:
            _run_threaded(library, kernel, args, blocks, threads)
        else:
            library.shim_set_barrier(0)
            for block in blocks:
                for thread in threads:
                    library.shim_set_thread(*block, *thread)
                    kernel(*args)
        error = library.shim_error()
        if error:
            raise RuntimeError(f"{launch.kernel} {_SYNC_ERRORS.get(error, error)}")


def roi_pool_forward(device, features, rois, pooled_h, pooled_w, spatial_scale):
    output, argmax, launch = _cuda.roi_pool_forward_launch(features, rois, pooled_h, pooled_w,
                                                           spatial_scale)
    device.run(launch)
    return output, argmax


def roi_pool_backward(device, grad_output, rois, argmax, features_shape):
    grad, launch = _cuda.roi_pool_backward_launch(grad_output, rois, argmax, features_shape)
    device.run(launch)
    return grad


def nms_mask(device, sorted_boxes, iou_threshold):
    """The kernel's suppression mask as a uint64 numpy array."""
    mask, launch = _cuda.nms_mask_launch(sorted_boxes, iou_threshold)
    device.run(launch)
    return mask.numpy().view(np.uint64)


def nms(device, boxes, scores, iou_threshold):
    return _cuda.nms_with(device.run, boxes, scores, iou_threshold)


class EmulatedRoIPool(torch.autograd.Function):
    """roi_pool with the emulated kernels for forward and backward, for gradcheck."""

    @staticmethod
    def forward(ctx, features, rois, device, output_size, spatial_scale):
        output, argmax = roi_pool_forward(device, features, rois, *output_size, spatial_scale)
        ctx.save_for_backward(rois, argmax)
        ctx.device, ctx.features_shape = device, features.shape
        return output

    @staticmethod
    def backward(ctx, grad_output):
        rois, argmax = ctx.saved_tensors
        grad = roi_pool_backward(ctx.device, grad_output.contiguous(), rois, argmax,
                                 ctx.features_shape)
        return grad, None, None, None, None


def _run_threaded(library, kernel, args, blocks, threads):
    library.shim_set_barrier(len(threads))
    block_done = threading.Barrier(len(threads), timeout=60)
    failures = []

    def work(thread):
        try:
            for block in blocks:
                library.shim_set_thread(*block, *thread)
                kernel(*args)  # ctypes lets go of the GIL for the call
                block_done.wait()  # blocks share the static __shared__ memory
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)
            block_done.abort()

    workers = [threading.Thread(target=work, args=(thread,)) for thread in threads]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"emulated launch failed: {failures[0]!r}")


def _indices(dims):
    """(x, y, z) for every index of a CUDA dim3, x fastest."""
    for z, y, x in itertools.product(range(dims[2]), range(dims[1]), range(dims[0])):
        yield x, y, z


def _ctypes_arg(value):
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or not value.is_contiguous():
            raise ValueError("emulated kernels take contiguous CPU tensors")
        return ctypes.c_void_p(value.data_ptr())
    if isinstance(value, np.int32):
        return ctypes.c_int(int(value))
    if isinstance(value, np.float32):
        return ctypes.c_float(float(value))
    if isinstance(value, np.float64):
        return ctypes.c_double(float(value))
    raise TypeError(f"no C type for kernel argument {value!r}")
