"""The Layer base class and its fixed life cycle.

Building a layer runs, in order:
  arity check -> layer_setup(bottom_shapes) -> reshape(bottom_shapes) -> loss weights
Subclasses declare their arity as class attributes, parse their parameters in
`layer_setup` (creating learnable blobs with `add_blob`), give top shapes in
`reshape` and compute tops in `forward`. Autograd gives backward; a layer
writes its own only through a torch.autograd.Function.

Shapes are tuples of ints in which None marks a size known only per forward
(the number of proposals, the image height); layers propagate None.
"""

import math

import torch

from .errors import NetError
from .fillers import fill
from .proto import pyfrcnn_pb2 as pb


class Layer(torch.nn.Module):
    """A layer type: subclasses declare their arity and fill in layer_setup,
    reshape, forward (and backward only where autograd cannot); see the module
    docstring for the life cycle."""

    # Arity: exact counts, or inclusive ranges (None: unbounded).
    num_bottoms = None
    min_bottoms = 0
    max_bottoms = None
    num_tops = None
    min_tops = 0
    max_tops = None
    # A loss layer's first top has loss weight 1 unless the prototxt says otherwise.
    is_loss = False

    def __init__(self, param, phase="TRAIN", config=None, where=""):
        super().__init__()
        self.param = param
        self.phase = phase
        self.config = config if config is not None else {}
        self.where = where
        self.blobs = torch.nn.ParameterList()
        self.loss_weights = []

    # -- identity --------------------------------------------------------
    @property
    def name(self):
        return self.param.name

    @property
    def type(self):
        return self.param.type

    def describe(self):
        """"layer 'name' (Type) at path:line" for error messages."""
        at = f" at {self.where}" if self.where else ""
        return f"layer '{self.name}' ({self.type}){at}"

    def error(self, message):
        """A NetError prefixed with this layer's name, type and position."""
        return NetError(f"{self.describe()}: {message}")

    @staticmethod
    def host_checks(tensor):
        """Whether a check that reads `tensor`'s values on the host (bad boxes,
        bad labels) runs in forward: on the CPU, where it costs nothing. On a
        GPU each such read would wait for the device every step, so layers
        skip it there; the data layer checks its boxes on the host before they
        travel (layers/roi_data.py)."""
        return tensor.device.type == "cpu"

    # -- life cycle ------------------------------------------------------
    def setup(self, bottom_shapes):
        """Run the life cycle; returns the top shapes."""
        self._check_arity(len(bottom_shapes), len(self.param.top))
        self.layer_setup(bottom_shapes)
        top_shapes = [tuple(s) if s is not None else None for s in self.reshape(bottom_shapes)]
        if len(top_shapes) != len(self.param.top):
            raise self.error(f"produces {len(top_shapes)} tops but the prototxt names {len(self.param.top)}")
        self._setup_loss_weights()
        return top_shapes

    def layer_setup(self, bottom_shapes):
        """Parse parameters and create blobs. Default: nothing."""

    def reshape(self, bottom_shapes):
        """Top shapes from bottom shapes (None for sizes known only per forward)."""
        raise NotImplementedError

    def forward(self, *bottoms):
        """Tops from bottoms: a tensor, or a tuple / list of tensors."""
        raise NotImplementedError

    def flops(self, bottom_shapes, top_shapes):
        """Multiply-adds of one forward, for `pyfrcnn check`. Default: 0."""
        return 0

    # -- state beyond the weights (data cursors, random generators) -----
    def snapshot_state(self):
        """A dict of the state needed to resume exactly, or None: tensors and plain
        values only (a .solverstate loads with torch.load(weights_only=True))."""
        return None

    def restore_state(self, state):
        """Restore what `snapshot_state` returned."""

    def weights_meta(self):
        """Plain values to keep beside the weights in snapshots (a data layer gives
        its class names), or None."""
        return None

    # -- helpers for subclasses --------------------------------------------
    def add_blob(self, shape, filler=None):
        """Create a learnable blob (Caffe order: weight, then bias), filled; a
        negative or absurd size is an error naming the layer, before allocating."""
        shape = tuple(int(s) for s in shape)
        check_blob_size(self, f"blob {len(self.blobs)}", shape)
        data = torch.empty(shape, dtype=torch.float32)
        try:
            fill(data, filler if filler is not None else pb.FillerParameter())
        except NetError as e:
            raise self.error(f"blob {len(self.blobs)}: {e}") from None
        blob = torch.nn.Parameter(data)
        self.blobs.append(blob)
        return blob

    def param_spec(self, index):
        """The ParamSpec of blob `index` (Caffe's defaults where absent)."""
        specs = self.param.param
        return specs[index] if index < len(specs) else pb.ParamSpec()

    def _check_arity(self, n_bottoms, n_tops):
        def check(n, exact, low, high, what):
            if exact is not None and n != exact:
                raise self.error(f"takes {exact} {what}{'s' if exact != 1 else ''}, got {n}")
            if n < low or (high is not None and n > high):
                span = f"at least {low}" if high is None else f"{low} to {high}"
                raise self.error(f"takes {span} {what}s, got {n}")
        check(n_bottoms, self.num_bottoms, self.min_bottoms, self.max_bottoms, "bottom")
        check(n_tops, self.num_tops, self.min_tops, self.max_tops, "top")

    def _setup_loss_weights(self):
        given = list(self.param.loss_weight)
        n = len(self.param.top)
        if given and len(given) != n:
            raise self.error(f"gives {len(given)} loss_weight values for {n} tops")
        if not given:
            given = [1.0 if (self.is_loss and i == 0) else 0.0 for i in range(n)]
        self.loss_weights = given


MAX_BLOB_ELEMENTS = 2 ** 32  # 16 GiB of float32: far beyond any sane blob, refused before use


def check_blob_size(layer, what, shape):
    """A NetError naming the layer if `shape` has a negative dimension or more than
    MAX_BLOB_ELEMENTS elements (None dimensions are known only per forward)."""
    known = [d for d in shape if d is not None]
    if any(d < 0 for d in known):
        raise layer.error(f"{what} would have shape {list(shape)}: a negative size")
    elements = math.prod(known)
    if elements > MAX_BLOB_ELEMENTS:
        raise layer.error(f"{what} would have shape {'x'.join(map(str, shape))} = {elements} "
                          f"values ({elements * 4 / 2 ** 30:.3g} GiB as float32), more than the "
                          f"{MAX_BLOB_ELEMENTS} a blob may hold")


def dims(shape, *axes):
    """Sizes of `shape` at `axes`, None where unknown."""
    return tuple(None if shape is None else shape[a] for a in axes)


def count(shape, start=0, end=None):
    """Product of shape[start:end], None if any factor is unknown."""
    part = shape[start:end]
    if any(d is None for d in part):
        return None
    return math.prod(part)


def canonical_axis(layer, axis, ndim):
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end."""
    if not -ndim <= axis < ndim:
        raise layer.error(f"axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim
