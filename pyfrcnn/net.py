"""Net: a prototxt net built into layers wired by blob name.

Building is one readable pass, as Caffe's Net::Init: for each kept layer,
resolve its bottoms by name among the blobs produced so far, set it up (which
infers its top shapes), share parameters named in ParamSpec, and bind its tops.
An in-place top (top == bottom) rebinds the name to the new tensor; fan-out
needs no Split layer, since autograd sums the gradients of a reused blob.
Because no saved tensor is overwritten, gradients are the correct ones even
where Caffe's are not: an in-place ReLU (Sigmoid, TanH) followed by another
in-place layer on the same blob (ReLU -> Scale with bias) makes Caffe's
backward read the later layer's output. Building a TRAIN net with such a chain
logs a warning (inplace.py), since its training differs from Caffe's.

`forward(**inputs)` runs the layers in order and returns the output blobs (the
ones no layer consumes); `backward()` runs one autograd backward on the sum of
loss_weight x loss top. Phase (TRAIN / TEST) is a property of the net that its
layers read; the layer set is fixed when the net is built.
"""

import collections
import logging

import torch

from . import registry
from .errors import NetError, WeightsError, did_you_mean, format_shape  # noqa: F401 (re-exported)
from .files import WEIGHTS_FORMAT, atomic_torch_save  # noqa: F401 (re-exported)
from .fusion import find_chains
from .inplace import inplace_warnings
from .io import NetDef, phase_name, read_net
from .layer import check_blob_size

log = logging.getLogger(__name__)

def shape_matches(actual, declared):
    if declared is None:
        return True
    return len(actual) == len(declared) and all(d is None or d == a for a, d in zip(actual, declared))


class _Step:
    """One entry of Net.forward's pass: a layer with its wiring, or a fused chain."""

    __slots__ = ("layer", "bottoms", "tops", "chain", "is_input", "detach", "checks", "losses",
                 "channels_last")

    def __init__(self, layer, bottoms, tops, chain=None):
        self.layer, self.bottoms, self.tops, self.chain = layer, bottoms, tops, chain
        self.is_input, self.detach, self.checks, self.losses = False, None, [], []
        self.channels_last = False


def _given_shapes(layer, top_shapes, input_shapes, used):
    """A data layer's top shapes with those `input_shapes` gives (each must fit
    the layer's own, e.g. 1x3x600x1000 for 1x3x?x?)."""
    shapes = list(top_shapes)
    for i, top in enumerate(layer.param.top):
        if top in input_shapes:
            given = tuple(input_shapes[top])
            if not shape_matches(given, shapes[i]):
                raise layer.error(f"top '{top}' is {format_shape(shapes[i])}; the shape given "
                                  f"for it, {format_shape(given)}, does not fit")
            shapes[i] = given
            used.add(top)
    return shapes


def channels_last_bottoms(args):
    """A Convolution's bottoms under Net(channels_last=True): 4-D ones channels last."""
    return [a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else a for a in args]


class Net(torch.nn.Module):
    """A net built from a prototxt path, prototxt text or NetDef.

    `config` is the run's configuration, handed to every layer as `layer.config`.
    `input_shapes` ({blob: shape}) overrides the shapes of Input layer tops and
    fixes those of data layers' tops (within what the layer declares).
    `fuse` runs in-place BatchNorm -> Scale (-> ReLU) chains as one op
    (pyfrcnn.fusion); False runs every layer on its own.
    `channels_last` hands every Convolution its 4-D bottoms in torch's
    channels-last layout. The blobs keep their N x C x H x W shapes and
    values; only the memory order changes, and the layers after a
    convolution (BatchNorm, Scale, ReLU, Pooling, further convolutions)
    keep it, so a trunk runs channels last from its first convolution on.
    On the CPU its convolutions and poolings run faster that way, and round
    differently (BENCHMARKS.md, "Training step", "Second round", says by how
    much).
    """

    def __init__(self, source, phase="TRAIN", stages=(), level=0, config=None,
                 input_shapes=None, check_shapes=True, fuse=True, channels_last=False):
        super().__init__()
        netdef = source if isinstance(source, NetDef) else read_net(source, phase, stages, level)
        self.netdef = netdef
        self.name = netdef.param.name
        self._phase = phase_name(netdef.state.phase)
        self.config = config if config is not None else {}
        self.check_shapes = check_shapes
        self.layers = torch.nn.ModuleList()
        self.layer_dict = collections.OrderedDict()
        self.bottom_names, self.top_names = [], []
        self.bottom_shapes, self.top_shapes = [], []
        self.blob_shapes = collections.OrderedDict()
        self.input_blobs = []
        self.blobs = collections.OrderedDict()
        self.loss = None
        self._propagate = []
        self._shared = {}  # ParamSpec.name -> (Parameter, owner layer, blob index)
        self._build(dict(input_shapes or {}))
        self._chains = find_chains(self) if fuse else {}
        self.channels_last = channels_last

    # -- building ------------------------------------------------------
    def _build(self, input_shapes):
        consumers = collections.Counter()
        given_tops = set()
        for index, lp in enumerate(self.netdef.param.layer):
            where = self.netdef.where(index)
            if not lp.name:
                raise NetError(f"{where}: a layer has no name")
            if lp.name in self.layer_dict:
                raise NetError(f"{where}: layer name '{lp.name}' is used twice")
            layer = registry.create_layer(lp, self._phase, self.config, where)
            bottom_shapes = []
            for i, bottom in enumerate(lp.bottom):
                if bottom not in self.blob_shapes:
                    raise layer.error(
                        f"bottom {i} '{bottom}' is not produced by any earlier layer"
                        f"{did_you_mean(bottom, self.blob_shapes)}")
                bottom_shapes.append(self.blob_shapes[bottom])
                consumers[bottom] += 1
            if lp.propagate_down and len(lp.propagate_down) != len(lp.bottom):
                raise layer.error(f"gives {len(lp.propagate_down)} propagate_down values "
                                  f"for {len(lp.bottom)} bottoms")
            for top in lp.top:
                if top in self.blob_shapes and top not in lp.bottom:
                    raise layer.error(f"top '{top}' is already produced by an earlier layer")
            if len(set(lp.top)) != len(lp.top):
                raise layer.error("names the same top twice")
            if lp.type == "Input":
                layer.override_shapes = input_shapes
            top_shapes = self._setup_layer(layer, lp, bottom_shapes)
            if not lp.bottom and lp.type != "Input":  # a data layer: its tops' given sizes
                top_shapes = _given_shapes(layer, top_shapes, input_shapes, given_tops)
            for top, shape in zip(lp.top, top_shapes):
                if shape is not None:
                    check_blob_size(layer, f"top '{top}'", shape)
            if lp.type == "Input":
                self.input_blobs.extend(lp.top)
            self._share_params(layer)
            for top, shape in zip(lp.top, top_shapes):
                self.blob_shapes[top] = shape
                consumers.pop(top, None)  # a rebound name is a new blob
            self.layers.append(layer)
            self.layer_dict[lp.name] = layer
            self.bottom_names.append(list(lp.bottom))
            self.top_names.append(list(lp.top))
            self.bottom_shapes.append(bottom_shapes)
            self.top_shapes.append(top_shapes)
            self._propagate.append(list(lp.propagate_down) or [True] * len(lp.bottom))
            log.info("%s (%s) <- %s -> %s [%s]", lp.name, lp.type, ", ".join(lp.bottom) or "-",
                     ", ".join(lp.top) or "-", "; ".join(format_shape(s) for s in top_shapes))
        extra = set(input_shapes) - set(self.input_blobs) - given_tops
        if extra:
            raise NetError(f"{self.netdef.path}: input shape given for "
                           f"{', '.join(sorted(extra))}, which is not an input of the net "
                           f"(inputs: {', '.join(self.input_blobs) or 'none'})")
        self.output_names = [b for b in self.blob_shapes if consumers[b] == 0]
        self._warn_caffe_inplace_chains()
        for param, spec_lr, _, _ in self.learnable_params():
            if spec_lr == 0:
                param.requires_grad_(False)

    def _warn_caffe_inplace_chains(self):
        if self._phase == "TRAIN":
            for message in inplace_warnings(self.netdef):
                log.warning("%s", message)

    @staticmethod
    def _setup_layer(layer, lp, bottom_shapes):
        """layer.setup; a Python layer's own code failing on its parameters is a
        NetError naming the layer (--debug shows the original traceback)."""
        try:
            return layer.setup(bottom_shapes)
        except NetError:
            raise
        except Exception as e:
            if lp.type != "Python":
                raise
            raise layer.error(f"its setup raised {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]}") from e

    def _share_params(self, layer):
        for i, blob in enumerate(layer.blobs):
            spec = layer.param_spec(i)
            if not spec.name:
                continue
            if spec.name not in self._shared:
                self._shared[spec.name] = (blob, layer, i)
                continue
            owner_blob, owner, j = self._shared[spec.name]
            strict = spec.share_mode == spec.STRICT
            if (strict and owner_blob.shape != blob.shape) or owner_blob.numel() != blob.numel():
                raise layer.error(
                    f"shared param '{spec.name}' (blob {i}) has shape {format_shape(tuple(blob.shape))} "
                    f"but its owner {owner.describe()} blob {j} has "
                    f"{format_shape(tuple(owner_blob.shape))}")
            if not strict and owner_blob.shape != blob.shape:
                raise layer.error(f"shared param '{spec.name}': PERMISSIVE sharing of "
                                  "differently shaped blobs is not supported")
            layer.blobs[i] = owner_blob

    # -- phase ---------------------------------------------------------
    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, value):
        self._phase = phase_name(value)
        for layer in self.layers:
            layer.phase = self._phase

    # -- running -------------------------------------------------------
    def forward(self, **inputs):
        """Run every layer; return {name: tensor} of the output blobs."""
        missing = [b for b in self.input_blobs if b not in inputs]
        if missing:
            raise NetError(f"net '{self.name}': input blob(s) {', '.join(missing)} not given "
                           f"to forward()")
        unknown = set(inputs) - set(self.input_blobs)
        if unknown:
            raise NetError(f"net '{self.name}': forward() got {', '.join(sorted(unknown))}, "
                           f"which are not inputs (inputs: {', '.join(self.input_blobs) or 'none'})")
        blobs = {}
        loss = None
        check_shapes = self.check_shapes
        for step in self._steps():
            if step.chain is not None:  # a fused in-place chain: one blob in, the same blob out
                blob = step.bottoms[0]
                blobs[blob] = step.chain(blobs[blob])
                continue
            layer, tops = step.layer, step.tops
            if step.is_input:
                outputs = [inputs[t] for t in tops]
            else:
                if step.detach is None:
                    args = [blobs[b] for b in step.bottoms]
                else:
                    args = [blobs[b].detach() if d else blobs[b] for b, d in zip(step.bottoms, step.detach)]
                if step.channels_last:
                    args = channels_last_bottoms(args)
                outputs = layer.forward(*args)
                if isinstance(outputs, torch.Tensor):
                    outputs = (outputs,)
            if len(outputs) != len(tops):
                raise layer.error(f"forward returned {len(outputs)} tops, expected {len(tops)}")
            for top, value in zip(tops, outputs):
                blobs[top] = value
            if check_shapes:
                for i, shape in step.checks:
                    if not shape_matches(outputs[i].shape, shape):
                        raise layer.error(
                            f"top '{tops[i]}' has shape {format_shape(tuple(outputs[i].shape))} "
                            f"but was declared {format_shape(shape)}")
            for i, weight in step.losses:
                term = weight * outputs[i].sum()
                loss = term if loss is None else loss + term
        self.blobs = blobs
        self.loss = loss
        return {name: blobs[name] for name in self.output_names}

    def channels_last_layer(self, layer):
        """Whether forward() hands `layer` its bottoms channels last."""
        return self.channels_last and layer.type == "Convolution"

    def _steps(self):
        """The forward pass as a list of _Step, made once: what forward() does per
        layer, decided when the net is built instead of at every pass."""
        if self.__dict__.get("_step_list") is None:
            steps, index, n = [], 0, len(self.layers)
            while index < n:
                if index in self._chains:
                    chain, last = self._chains[index]
                    steps.append(_Step(None, self.bottom_names[index], (), chain=chain))
                    index = last + 1
                    continue
                layer = self.layers[index]
                step = _Step(layer, self.bottom_names[index], self.top_names[index])
                step.is_input = layer.type == "Input"
                propagate = self._propagate[index]
                step.detach = None if all(propagate) else [not p for p in propagate]
                step.checks = [(i, shape) for i, shape in enumerate(self.top_shapes[index])
                               if shape is not None]
                step.losses = [(i, w) for i, w in enumerate(layer.loss_weights) if w]
                step.channels_last = self.channels_last_layer(layer)
                steps.append(step)
                index += 1
            self.__dict__["_step_list"] = steps
        return self.__dict__["_step_list"]

    def backward(self):
        """Backpropagate the weighted sum of the loss tops of the last forward."""
        if self.loss is None:
            raise NetError(f"net '{self.name}': backward() needs a forward() with a loss top "
                           "(a layer with a nonzero loss_weight)")
        if self.loss.requires_grad:
            self.loss.backward()
        loss, self.loss = self.loss.detach(), None
        return loss

    # -- parameters ----------------------------------------------------
    @property
    def params(self):
        """{layer name: [blobs]} as in pycaffe, for layers that have blobs."""
        return collections.OrderedDict((l.name, list(l.blobs)) for l in self.layers if len(l.blobs))

    def learnable_params(self):
        """[(parameter, lr_mult, decay_mult, 'layer/index')], each shared parameter once
        (with its owner's multipliers)."""
        seen, result = set(), []
        for layer in self.layers:
            for i, blob in enumerate(layer.blobs):
                if id(blob) in seen:
                    continue
                seen.add(id(blob))
                spec = layer.param_spec(i)
                result.append((blob, spec.lr_mult, spec.decay_mult, f"{layer.name}/{i}"))
        return result

    # -- weights -------------------------------------------------------
    def weights_dict(self):
        """{layer name: [tensors on cpu]}: the weights in our format."""
        return {name: [b.detach().cpu().clone() for b in blobs] for name, blobs in self.params.items()}

    def save(self, path, meta=None):
        """Save the weights by layer name (written atomically). `meta` is a dict of
        plain values kept beside them (e.g. the run's detection config)."""
        payload = {"format": WEIGHTS_FORMAT, "version": 1, "layers": self.weights_dict(),
                   "meta": dict(meta or {})}
        atomic_torch_save(payload, path)

    def load(self, source, strict=False, where=None):
        """Copy weights by layer name from a path or a {layer: [tensors]} dict.

        Layers of the file that the net lacks are skipped (and returned), as in
        Caffe's CopyTrainedLayersFrom; a blob of the wrong shape is an error.
        With strict=True, a net layer missing from the file is an error too.
        """
        layers = load_weights_file(source) if not isinstance(source, dict) else source
        where = where or (source if not isinstance(source, dict) else "weights")
        loaded, skipped = [], []
        for name, tensors in layers.items():
            layer = self.layer_dict.get(name)
            if layer is None or not len(layer.blobs):
                skipped.append(name)
                continue
            if len(tensors) != len(layer.blobs):
                raise WeightsError(f"{where}: {layer.describe()} has {len(layer.blobs)} blobs, "
                                   f"the file gives {len(tensors)}")
            for i, (blob, value) in enumerate(zip(layer.blobs, tensors)):
                if tuple(blob.shape) != tuple(value.shape):
                    raise WeightsError(
                        f"{where}: {layer.describe()} blob {i}: the net has shape "
                        f"{format_shape(tuple(blob.shape))}, the file {format_shape(tuple(value.shape))}")
            with torch.no_grad():
                for blob, value in zip(layer.blobs, tensors):
                    blob.copy_(value)
            loaded.append(name)
        if strict:
            missing = [n for n in self.params if n not in layers]
            if missing:
                raise WeightsError(f"{where}: no weights for layer(s) {', '.join(missing)}")
        return loaded, skipped

    # -- state for exact resume ------------------------------------------
    def snapshot_state(self):
        return {l.name: s for l in self.layers if (s := l.snapshot_state()) is not None}

    def weights_meta(self):
        """The layers' weights_meta() merged: what snapshots keep beside the weights."""
        meta = {}
        for layer in self.layers:
            meta.update(layer.weights_meta() or {})
        return meta

    def restore_state(self, states):
        for name, state in states.items():
            if name in self.layer_dict:
                self.layer_dict[name].restore_state(state)


def load_weights_file(path, with_meta=False):
    """{layer: [tensors]} from a weights file (and its meta dict): ours, a Caffe
    .caffemodel or torchvision's VGG16 state_dict, told apart by content; see
    pyfrcnn.weights for the mappings."""
    from .weights import read_weights  # lazily: reading weights needs the proto module

    layers, meta = read_weights(path)
    if with_meta:
        return layers, meta
    return layers
