"""Small constant tensors of the run's config (box weights, target means and
stds), made once per device.

torch.tensor(values, device=cuda) copies from host memory and waits for the
device at every call; a layer's forward asks for the same few numbers every
step, so they are made once per (values, dtype, device) and shared. The
tensors are read-only: use them in arithmetic and assignments, never in
place. The values are the same as torch.tensor's, so results on the CPU do
not change.
"""

import functools

import torch


def constant(values, device, dtype=torch.float32):
    """torch.tensor(values, dtype=dtype, device=device), cached."""
    return _constant(tuple(float(v) for v in values), dtype, torch.device(device))


@functools.lru_cache(maxsize=64)
def _constant(values, dtype, device):
    return torch.tensor(values, dtype=dtype, device=device)


__all__ = ["constant"]
