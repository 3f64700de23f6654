"""What the net and the weights readers and writers share: the weights file's
format tag and the atomic write (the lowest of the modules that write files,
so that net.py and weights.py import it and not each other)."""

import os

import torch

WEIGHTS_FORMAT = "pyfrcnn-weights"


def atomic_torch_save(obj, path):
    """torch.save to a temp file, fsync, rename: a crash leaves the old file whole."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
