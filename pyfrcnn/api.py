"""The Python API, as pycaffe users expect it (exported from `pyfrcnn`):

    net = pyfrcnn.Net("prototxt/fast/test.prototxt", "TEST", weights="x.weights")
    outputs = net.forward(data=image_batch, im_info=info)   # numpy or torch
    net.blobs["conv5"]                                      # every blob by name

    solver = pyfrcnn.Solver.from_file("solvers/shapes_solver.yaml", ["max_iter=100"])
    solver.solve()

`pyfrcnn.Detector` (a detector in one call) comes from the Faster R-CNN
plugin (layers/detector.py), since the engine knows no detector.
"""

import os
import types

import numpy as np
import torch

from . import net as _net
from . import solver as _solver
from .arguments import resolve_device
from .io import NetDef, read_net

PHASES = ("TRAIN", "TEST")


class Net(_net.Net):
    """A net built from a prototxt (path or text), as `caffe.Net`.

    Net(path, "TEST", weights=W) or pycaffe's order Net(path, W, "TEST").
    `weights` loads by layer name (ours, .caffemodel or torchvision files);
    `device` ("auto", "cpu", "cuda:N") moves the net; a TEST net is put in
    eval mode. The height and width of 4-D Input blobs are left free, so
    forward() takes an image of any size (pycaffe needs blob.reshape for
    that); give `input_shapes` to fix them.
    """

    def __init__(self, source, phase="TEST", weights=None, *, device=None, stages=(), level=0,
                 config=None, input_shapes=None, strict=False):
        if phase not in PHASES and weights in PHASES:  # caffe.Net(prototxt, weights, phase)
            phase, weights = weights, phase
        netdef = source if isinstance(source, NetDef) else read_net(source, phase, stages, level)
        if input_shapes is None:
            input_shapes = free_image_sizes(netdef)
        super().__init__(netdef, phase, config=config, input_shapes=input_shapes)
        if weights:
            self.load(os.fspath(weights), strict=strict)
        if device is not None:
            self.to(resolve_device(device))
        if self.phase == "TEST":
            self.eval()

    def forward(self, **inputs):
        """Run the net on the given input blobs (numpy arrays or tensors, moved to
        the net's device); returns {output blob: tensor}. Under TEST no autograd
        graph is kept."""
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        tensors = {}
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            if isinstance(value, torch.Tensor):
                value = value.to(device)
                if not value.is_floating_point():
                    value = value.float()
            tensors[name] = value
        if self.phase == "TEST":
            with torch.no_grad():
                return super().forward(**tensors)
        return super().forward(**tensors)


def free_image_sizes(netdef):
    """{Input top: (N, C, None, None)} for every 4-D Input shape of the net."""
    shapes = {}
    for layer in netdef.param.layer:
        if layer.type != "Input":
            continue
        for top, shape in zip(layer.top, layer.input_param.shape):
            dims = list(shape.dim)
            if len(dims) == 4:
                shapes[top] = (dims[0], dims[1], None, None)
    return shapes


class Solver(_solver.Solver):
    """The solver of `pyfrcnn solve`, from Python.

    Solver.from_file(path, overrides) reads a solver file with `--set`-style
    overrides ("max_iter=100", "data.workers=1"); solve() trains under the
    same run-folder rules as the command (one run per folder, the lock,
    solver.yaml) and returns the exit status (0 when done).
    """

    run = None

    @classmethod
    def from_file(cls, path, overrides=(), out=None, device=None, weights=None, resume=None,
                  force=False, **kwargs):
        """A Solver for the solver file at `path`: `out` is the run folder
        (default: the folder of snapshot_prefix, else output/<solver name>),
        `weights` a list of files to start from, `resume` a .solverstate, a run
        folder or "auto", `force` deletes an earlier run in the folder."""
        from .run_dir import RunFolder
        from .solver_config import load_solver

        if isinstance(overrides, str):
            overrides = [overrides]
        config = load_solver(path, list(overrides))
        if weights:
            weights = [weights] if isinstance(weights, (str, os.PathLike)) else weights
            config = config.replace(weights=tuple(os.path.abspath(w) for w in weights))
        args = types.SimpleNamespace(solver=os.fspath(path), out=out, resume=resume, force=force,
                                     overrides=list(overrides), device=device, gpu=None,
                                     weights=None)
        run = RunFolder(config, args)
        config = config.replace(snapshot_prefix=run.prefix)
        if run.resume:
            config = config.replace(weights=())
        solver = cls(config, run_dir=run.path, device=device, **kwargs)
        solver.run = run
        return solver

    def solve(self, resume=None):
        """Train to max_iter; returns the exit status (0: done, or stopped by SIGINT)."""
        from .run_dir import write_resolved_solver

        if self.run is None:  # built directly: the plain loop
            return super().solve(resume=resume)
        self.run.open()
        try:
            for note in self.run.notes:
                _solver.log.warning("%s", note)
            if self.run.is_main:
                write_resolved_solver(self.run.path, self.config)
            return super().solve(resume=resume or self.run.resume)
        finally:
            self.run.close()
