"""What a layer's forward would do wrong on a GPU, seen on the CPU.

`HostAudit` is a TorchFunctionMode that records, by the line of our code that
made the call (pyfrcnn/ or layers/, outside the excluded files):
  - host reads: bool/int/float/index of a tensor, .item(), .tolist(), .numpy()
    and .cpu(): on a GPU each waits for the device to drain;
  - tensors made on the CPU by default: a factory (torch.zeros, arange, full,
    ...) called without `device=`, which on a GPU would give a CPU tensor beside
    CUDA bottoms; draws from a CPU torch.Generator are allowed (the sampling
    layers draw on the CPU on purpose and move the result);
  - torch.tensor (and as_tensor of Python data): a copy from host memory on
    every call, which on a GPU waits for the device;
  - size reads: nonzero, masked_select and boolean indexing, whose result's
    size the host must learn; on a GPU each waits for the device too, but a
    variable-size output (proposals, sampled RoIs) needs some. Kept apart
    (`size_reads`) so that a test can hold them to a known list.
Nothing is faked: the code runs on the CPU as it always does; what is recorded
is what would cost a device round trip or break on another device.

The mode is thread-local, so the data layer's loader threads (which prepare
host blobs on purpose) are not audited. The ops' CPU paths (pyfrcnn/ops/) are
excluded: they run only for CPU tensors, and the CUDA paths are tested against
them on a GPU (tests/ops/test_kernels.py).
"""

import collections
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

REPO = Path(__file__).resolve().parents[1]
AUDITED = (REPO / "pyfrcnn", REPO / "layers")
EXCLUDED = (REPO / "pyfrcnn" / "ops", REPO / "layers" / "datasets", REPO / "pyfrcnn" / "solver.py",
            REPO / "pyfrcnn" / "hooks.py", REPO / "pyfrcnn" / "net.py")

HOST_READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy", "cpu"}
FACTORIES = {"new_tensor", "zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint", "randperm",
             "linspace", "eye", "scalar_tensor", "empty_strided", "tensor", "as_tensor"}


class HostAudit(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.found = collections.Counter()  # (what, "file:line in function") -> calls
        self.size_reads = collections.Counter()  # likewise, for size reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        what = self._classify(name, args, kwargs)
        found = self.found
        if what is None and _is_size_read(name, args):
            what, found = f"size read ({name})", self.size_reads
        if what is not None:
            site = self._call_site()
            if site is not None:
                found[what, site] += 1
        return func(*args, **kwargs)

    @staticmethod
    def _classify(name, args, kwargs):
        if name in HOST_READS:
            return f"host read ({name})"
        if name not in FACTORIES:
            return None
        if name in ("tensor", "new_tensor") or (name == "as_tensor" and not isinstance(args[0], torch.Tensor)):
            return f"copy from host ({name})"
        if name == "as_tensor":
            return None
        if "generator" in kwargs:
            return None
        if kwargs.get("device") is None:
            return f"made on the CPU ({name} without device=)"
        return None

    @staticmethod
    def _call_site():
        frame = sys._getframe(2)
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(REPO):
                if any(path == p or path.is_relative_to(p) for p in EXCLUDED):
                    return None
                if any(path.is_relative_to(p) for p in AUDITED):
                    return f"{path.relative_to(REPO)}:{frame.f_lineno} in {frame.f_code.co_name}"
                return None  # a test or benchmark
            frame = frame.f_back
        return None

    def report(self, found=None):
        found = self.found if found is None else found
        return "\n".join(f"{site}: {what} x{n}" for (what, site), n in sorted(found.items()))


def _is_size_read(name, args):
    if name in ("nonzero", "masked_select", "argwhere"):
        return True
    if name in ("__getitem__", "__setitem__") and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    return False
