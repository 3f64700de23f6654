"""The .solverstate file: written by Solver.snapshot, read back without running code.

It is a torch file holding only tensors and plain values (dict, list, tuple,
str, int, float, bool, None), so it loads with torch.load(weights_only=True):
a file that would need anything else (a pickle that calls os.system, a numpy
array) is refused. Its entries:
  format 'pyfrcnn-solverstate', version 1, iter, type (the update rule),
  learned_net  the .weights file beside it (a bare file name)
  history      {parameter name: [tensors]} of the update rule
  ranks        per process: torch / numpy / python random states and the
               layers' snapshot_state (data cursors, generators)
  config       the resolved solver config;  losses  the smoothing window
The numpy state is kept as (name, keys as an int64 tensor, pos, has_gauss,
cached gaussian); a layer's numpy values become tensors or Python numbers.
Numeric numpy arrays are still read (earlier versions wrote numpy's state as
one), object arrays and every other class are not.
"""

import math
import os
import random

import numpy as np
import torch

from .errors import ConfigError, PyfrcnnError

STATE_FORMAT = "pyfrcnn-solverstate"
PLAIN = (str, int, float, bool, type(None))


def loadable(value, where):
    """`value` with numpy scalars as Python numbers and numpy arrays as tensors;
    a type weights_only loading cannot read back is a ConfigError naming `where`."""
    if isinstance(value, PLAIN) or torch.is_tensor(value):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, dict):
        return {k: loadable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(loadable(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{where}: a {type(value).__name__} cannot go into a .solverstate "
                      "(snapshot_state must give tensors and plain values)")


def rank_state(net, device):
    """This process's random states and layer states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos),
                       int(has_gauss), float(cached)),
             "python": random.getstate(),
             "net": loadable(net.snapshot_state(), "snapshot_state")}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rank_state(state, net, device, where):
    """Set what rank_state gave; a malformed entry is a ConfigError naming it."""
    try:
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), int(pos),
                             int(has_gauss), float(cached)))
        random.setstate(state["python"])
        if "cuda" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{where}: the random states are malformed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'bad value'})") from None
    for name, layer_state in state["net"].items():
        layer = net.layer_dict.get(name)
        if layer is None:
            continue
        try:
            layer.restore_state(layer_state)
        except PyfrcnnError:
            raise
        except Exception as e:  # the layer's own code meets a malformed entry
            raise ConfigError(f"{where}: the saved state of {layer.describe()} is malformed "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None


def _numpy_array_globals():
    """What unpickling a numeric numpy array needs (snapshots of earlier pyfrcnn
    versions hold numpy's random state as one): a constructor and plain dtypes,
    nothing that can run code."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    kinds = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
             np.uint64, np.float16, np.float32, np.float64)
    return [_reconstruct, np.ndarray, np.dtype, *{type(np.dtype(k)) for k in kinds}]


def read(path):
    """The validated payload of a .solverstate (weights_only: no code runs)."""
    path = os.fspath(path)
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such solver state") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a solver state") from None
    except Exception as e:  # torch raises many kinds for a bad or hostile file
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        if "weights only" in text.lower() or "weights_only" in text:
            first = "it holds objects other than tensors and plain values (refused: loading it " \
                    "could run code)"
        raise ConfigError(f"{path}: not a readable solver state: {first}") from None
    check(payload, path)
    return payload


def _need(cond, path, message):
    if not cond:
        raise ConfigError(f"{path}: {message}")


def check(payload, path):
    """Structural checks, each naming the entry at fault."""
    _need(isinstance(payload, dict) and payload.get("format") == STATE_FORMAT, path,
          "not a pyfrcnn .solverstate file")
    _need(payload.get("version") == 1, path, f"version {payload.get('version')!r}; this "
          "pyfrcnn reads version 1")
    step = payload.get("iter")
    _need(isinstance(step, int) and not isinstance(step, bool) and step >= 0, path,
          f"entry 'iter' must be a step (an integer >= 0), got {step!r}")
    _need(isinstance(payload.get("type"), str), path, "entry 'type' must be a solver type")
    learned = payload.get("learned_net")
    _need(isinstance(learned, str) and learned and os.path.basename(learned) == learned, path,
          f"entry 'learned_net' must name the weights file beside it, got {learned!r}")
    history = payload.get("history")
    _need(isinstance(history, dict), path, "entry 'history' must be a dict of tensors")
    for name, hist in history.items():
        _need(isinstance(hist, (list, tuple)) and all(torch.is_tensor(h) for h in hist), path,
              f"history of '{name}' must be a list of tensors")
    ranks = payload.get("ranks")
    _need(isinstance(ranks, list) and ranks and all(isinstance(r, dict) for r in ranks), path,
          "entry 'ranks' must be a non-empty list of per-process states")
    for i, rank in enumerate(ranks):
        for key in ("torch", "numpy", "python", "net"):
            _need(key in rank, path, f"ranks[{i}] has no '{key}' state")
        _need(torch.is_tensor(rank["torch"]) and rank["torch"].dtype == torch.uint8, path,
              f"ranks[{i}].torch must be a uint8 tensor (torch's random state)")
        _need(isinstance(rank["net"], dict), path, f"ranks[{i}].net must be a dict")
    losses = payload.get("losses", [])
    _need(isinstance(losses, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in losses), path, "entry 'losses' must be a list of finite numbers")
    _need(isinstance(payload.get("config", {}), dict), path, "entry 'config' must be a dict")
