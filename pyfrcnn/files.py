"""What the net and the weights readers and writers share: the weights file's
format tag and the atomic write (the lowest of the modules that write files,
so that net.py and weights.py import it and not each other)."""

import os

import torch

from .errors import OutputError, output_error

WEIGHTS_FORMAT = "pyfrcnn-weights"


def atomic_torch_save(obj, path):
    """torch.save to a temp file, fsync, rename: a crash leaves the old file whole.
    A folder that cannot be made or written, or a full disk, is an OutputError."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp{os.getpid()}"
    if os.path.lexists(path) and not os.path.isfile(path):
        raise OutputError(f"{path}: cannot write: it exists and is not a regular file")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from None
    except RuntimeError as e:  # torch's zip writer reports a short write (a full disk) so:
        # "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
        try:
            full = os.statvfs(folder).f_bavail == 0
        except OSError:
            full = False
        reason = "No space left on device" if full else \
            f"the write failed ({' '.join(str(e).split())[:200]})"
        raise OutputError(f"{path}: cannot write: {reason}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
