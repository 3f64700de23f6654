"""Exporting a built net to ONNX: a traceable walk of its layers, and ONNX
forms of the ops whose normal path leaves torch.

torch.onnx.export traces the Python code that runs (its TorchScript
exporter, dynamo=False: it needs the `onnx` package only, not onnxscript).
A trace keeps the torch ops and turns every Python number into a constant,
so a layer whose forward computes sizes in Python, or leaves torch, traces
to a graph that is right for the traced image size alone, or wrong. Such a
layer gets an export forward, registered by layer type, that computes the
same top with ops a trace keeps; export_blobs(net, inputs) walks the net as
Net.forward does, taking the export forward where there is one (a Python
layer without one is an error, not a silently frozen graph). The normal
path (Net.forward, the layers' own forward) is untouched and pays nothing.

  Pooling      MAX: max_pool2d, whose ceil_mode is Caffe's CEIL output size
               (the last window starts inside the image or its left pad);
               global pooling: a max or mean over H x W. AVE is not exported
               (Caffe's clipped divisor at the far edge depends on the size).
  Reshape      0 dims copied from the bottom's traced shape, -1 left to ONNX
  ROIPooling   ONNX MaxRoiPool, which is Caffe's ROIPooling (round half away
               from zero, floor / ceil bins, 0 for an empty bin)
  BatchNorm    the layer's own forward, but its running averages (updated
               in a forward with batch statistics) are restored afterwards

nms(boxes, scores, iou_threshold, max_output) is pyfrcnn.ops.nms in eager
mode and ONNX NonMaxSuppression in an export: boxes go in as (y1, x1,
y2 + 1, x2 + 1), so that its widths are our inclusive x2 - x1 + 1, and it
suppresses at IoU > iou_threshold, keeps the survivors by descending score,
ties in index order, as ours. The Faster R-CNN layers register their own
export forwards (layers/onnx_export.py).
"""

import contextlib
import os
import warnings

import torch
import torch.nn.functional as F

from . import ops
from .errors import PyfrcnnError
from .proto import pyfrcnn_pb2 as pb

OPSET = 17
# NonMaxSuppression's max_output_boxes_per_class when every box may be kept.
ALL_BOXES = 2 ** 31 - 1

_EXPORT_FORWARDS = {}


class OnnxExportError(PyfrcnnError):
    """A net that cannot be exported to ONNX."""


def register_export_forward(layer_type, forward):
    """Use forward(layer, *bottoms) -> top(s) for layers of `layer_type` (a
    type string, or a Layer class for Python layers) in an export."""
    if layer_type in _EXPORT_FORWARDS:
        raise OnnxExportError(f"an export forward for {layer_type} is registered twice")
    _EXPORT_FORWARDS[layer_type] = forward


def export_forward_of(layer):
    """The registered export forward of a layer, or its own forward (not for
    a Python layer: what it computes outside torch would trace to constants)."""
    for key in (type(layer), layer.type):
        if key in _EXPORT_FORWARDS:
            forward = _EXPORT_FORWARDS[key]
            return lambda *bottoms: forward(layer, *bottoms)
    if layer.type == "Python":
        raise OnnxExportError(f"{layer.describe()}: a Python layer ({type(layer).__name__}) "
                              "exports only with an export forward: see "
                              "pyfrcnn.onnx_export.register_export_forward")
    return layer.forward


def export_blobs(net, inputs):
    """{blob: tensor} of one forward of the net over `inputs` ({input blob:
    tensor}) with the export forwards, every blob kept (a later name binding
    wins, as in Net.forward)."""
    missing = [b for b in net.input_blobs if b not in inputs]
    if missing:
        raise OnnxExportError(f"net '{net.name}': input blob(s) {', '.join(missing)} not given")
    blobs = {}
    for step in net._steps():  # Net.forward's pass, its fused chains included
        bottoms, tops, layer = step.bottoms, step.tops, step.layer
        if step.chain is not None:
            blobs[bottoms[0]] = step.chain(blobs[bottoms[0]])
            continue
        if step.is_input:
            outputs = [inputs[t] for t in tops]
        else:
            outputs = export_forward_of(layer)(*[blobs[b] for b in bottoms])
            if isinstance(outputs, torch.Tensor):
                outputs = (outputs,)
        for top, value in zip(tops, outputs):
            blobs[top] = value
    return blobs


@contextlib.contextmanager
def weights_kept(module):
    """Restore every parameter and buffer of `module` on exit: a trace runs
    the forward, which may update statistics (BatchNorm's running sums)."""
    saved = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for key, value in module.state_dict(keep_vars=True).items():
                value.copy_(saved[key])


def export_onnx(module, args, path, input_names, output_names, dynamic_axes):
    """torch.onnx.export of `module` at `args` to `path` (TorchScript exporter,
    opset OPSET, written through a temporary file), its weights restored
    afterwards."""
    try:
        import onnx  # noqa: F401  torch's exporter needs it
    except ImportError:
        raise OnnxExportError("ONNX export needs the onnx package (pip install onnx)") from None
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with weights_kept(module), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on the Python-side checks
            torch.onnx.export(module, args, tmp, dynamo=False, opset_version=OPSET,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        os.replace(tmp, path)
    except torch.onnx.OnnxExporterError as e:
        raise OnnxExportError(f"{path}: {str(e).strip().splitlines()[0]}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# -- ops ------------------------------------------------------------------------------
def nms(boxes, scores, iou_threshold, max_output=0):
    """Indices of the boxes (n x 4, inclusive x1, y1, x2, y2) kept by greedy
    NMS, by descending score, at most max_output of them (0: all)."""
    if torch.onnx.is_in_onnx_export():
        return _OnnxNMS.apply(boxes, scores, float(iou_threshold), int(max_output))
    keep = ops.nms(boxes, scores, iou_threshold)
    return keep[:max_output] if max_output > 0 else keep


@contextlib.contextmanager
def _untraced():
    """Run eager code inside a trace without recording it: the eager value of
    an op that the graph holds as one ONNX node (nms leaves torch for numpy,
    whose tensors the tracer does not know)."""
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


class _OnnxNMS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold, max_output):
        with _untraced():
            keep = ops.nms(boxes, scores, iou_threshold)
            return keep[:max_output] if max_output > 0 else keep

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold, max_output):
        def const(value, dtype=torch.int64):
            return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

        corners = g.op("Gather", boxes, const([1, 0, 3, 2]), axis_i=1)
        corners = g.op("Add", corners, const([0.0, 0.0, 1.0, 1.0], torch.float32))
        corners = g.op("Unsqueeze", corners, const([0]))  # 1 x n x 4
        scores = g.op("Unsqueeze", scores, const([0, 1]))  # 1 x 1 x n
        selected = g.op("NonMaxSuppression", corners, scores,
                        const([max_output if max_output > 0 else ALL_BOXES]),
                        const([iou_threshold], torch.float32))
        return g.op("Gather", selected, const(2), axis_i=1)  # (batch, class, box) -> box


def roi_pool(features, rois, output_size, spatial_scale):
    """pyfrcnn.ops.roi_pool, as ONNX MaxRoiPool in an export."""
    if torch.onnx.is_in_onnx_export():
        return _OnnxRoIPool.apply(features, rois, tuple(output_size), float(spatial_scale))
    return ops.roi_pool(features, rois, output_size, spatial_scale)


class _OnnxRoIPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale):
        with _untraced():
            return ops.roi_pool(features, rois, output_size, spatial_scale)

    @staticmethod
    def symbolic(g, features, rois, output_size, spatial_scale):
        return g.op("MaxRoiPool", features, rois, pooled_shape_i=list(output_size),
                    spatial_scale_f=spatial_scale)


# -- export forwards of the built-in layers ---------------------------------------------
def _pooling(layer, x):
    if layer.global_pooling:
        if layer.method == pb.PoolingParameter.MAX:
            return x.amax(dim=(2, 3), keepdim=True)
        return x.mean(dim=(2, 3), keepdim=True)
    if layer.method != pb.PoolingParameter.MAX or len(layer.param.top) != 1:
        raise OnnxExportError(f"{layer.describe()}: only MAX pooling with one top exports "
                              "to ONNX for any input size")
    return F.max_pool2d(x, layer.kernel, layer.stride, layer.pad, ceil_mode=layer.round_up)


def _reshape(layer, x):
    ndim = x.dim()
    start = layer.axis if layer.axis >= 0 else ndim + layer.axis + 1
    end = ndim if layer.num_axes == -1 else start + layer.num_axes
    dims = [x.shape[start + i] if d == 0 else d for i, d in enumerate(layer.new_dims)]
    return x.reshape(*x.shape[:start], *dims, *x.shape[end:])


def _roi_pooling(layer, features, rois):
    return roi_pool(features, rois, layer.output_size, layer.spatial_scale)


register_export_forward("Pooling", _pooling)
register_export_forward("Reshape", _reshape)
register_export_forward("ROIPooling", _roi_pooling)
