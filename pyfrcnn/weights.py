"""Weights from other worlds: Caffe .caffemodel files and torchvision's VGG16.

read_weights(path) -> ({layer: [tensors]}, meta) reads three formats, told
apart by content, not by extension:
  pyfrcnn weights    a torch file whose dict says format 'pyfrcnn-weights' (Net.save)
  torchvision VGG16  a torch file holding VGG16's state_dict (features.0.weight, ...)
  .caffemodel        any other file: a binary Caffe NetParameter
Net.load(path) (and so `solve --weights`) reads them all through it;
convert(in_path, out_path) and `pyfrcnn convert IN OUT` write our format, with
meta['source_format'] saying where the weights came from.

.caffemodel
  Parsed with our schema, which has Caffe's field numbers: the current `layer`
  list (LayerParameter, blobs = 7) or the legacy V1 `layers` list
  (V1LayerParameter, blobs = 6), not both. A blob's values are `data` (read as
  float32) or `double_data` (float64). Its shape is `shape` when present, else
  Caffe's deprecated 4-D num x channels x height x width. Caffe compares such a
  legacy blob with the net's blob right-aligned when it loads it (a bias is
  1 x 1 x 1 x N, InnerProduct weights 1 x 1 x N x K); we reshape it once, here,
  to the shape the net's blob has, by layer type, so that Net.load's exact
  shape check holds unchanged:
    InnerProduct weights           1 x 1 x N x K -> N x K
    Convolution / Deconvolution    weights N x C x H x W, kept
    any other legacy blob          leading 1s dropped, down to one dim (biases -> N)
  (V1 layers with blobs are of those three types.) A legacy dim that must be 1
  and is not is an error. Layers without blobs (ReLU, Pooling, ...) carry no
  weights: they are left out and listed as skipped. A .caffemodel with a
  bbox_pred layer comes from py-faster-rcnn, whose snapshots un-normalise
  bbox_pred before saving: meta['bbox_pred_unnormalized'] = True.

torchvision VGG16
  torch.load(weights_only=True); keys map to our (Caffe's) layer names:
    features.0  conv1_1   features.10 conv3_1   features.19 conv4_2   features.28 conv5_3
    features.2  conv1_2   features.12 conv3_2   features.21 conv4_3   classifier.0 fc6
    features.5  conv2_1   features.14 conv3_3   features.24 conv5_1   classifier.3 fc7
    features.7  conv2_2   features.17 conv4_1   features.26 conv5_2
  classifier.6 (fc8, ImageNet's 1000-way classifier) is skipped and listed.
  Tensors keep torchvision's layout (out x in x kh x kw; fc6 is 4096 x 512*7*7
  flattened as C x H x W, which is how our ROIPooling top flattens).
  The inputs differ: torchvision's VGG16 takes RGB in [0, 1] normalised by
  mean m = (0.485, 0.456, 0.406) and std s = (0.229, 0.224, 0.225); ours takes
  BGR in 0..255 minus PIXEL_MEANS P (BGR, py-faster-rcnn's by default). For our
  channel c, its RGB channel is r = 2 - c and
      x_tv[r] = (x[c] + P[c]) / (255 s[r]) - m[r] / s[r]
  so conv1_1 absorbs the difference (in float64, then back to the file's dtype):
      w[:, c] = w_tv[:, r] / (255 s[r])
      b = b_tv + sum over c, kh, kw of w_tv[:, r, kh, kw] (P[c] / 255 - m[r]) / s[r]
  and conv1_1 of our blob equals torchvision's conv1_1 of its input, except
  at border pixels: torchvision pads the normalised image with 0, we pad the
  mean-subtracted one with 0, so the pixels under the padding differ a little.
"""

import argparse
import math
import os

import numpy as np
import torch
from google.protobuf.message import DecodeError

from . import weights_resnet
from .errors import WeightsError, format_shape
from .files import WEIGHTS_FORMAT, atomic_torch_save
from .proto import pyfrcnn_pb2 as pb
from .textfile import read_bytes

CAFFE_PIXEL_MEANS = (102.9801, 115.9465, 122.7717)  # BGR, py-faster-rcnn's PIXEL_MEANS
TORCHVISION_MEAN = (0.485, 0.456, 0.406)  # RGB
TORCHVISION_STD = (0.229, 0.224, 0.225)  # RGB

# (torchvision prefix, our layer, weight shape); the bias is weight shape[0].
VGG16_LAYOUT = (
    ("features.0", "conv1_1", (64, 3, 3, 3)),
    ("features.2", "conv1_2", (64, 64, 3, 3)),
    ("features.5", "conv2_1", (128, 64, 3, 3)),
    ("features.7", "conv2_2", (128, 128, 3, 3)),
    ("features.10", "conv3_1", (256, 128, 3, 3)),
    ("features.12", "conv3_2", (256, 256, 3, 3)),
    ("features.14", "conv3_3", (256, 256, 3, 3)),
    ("features.17", "conv4_1", (512, 256, 3, 3)),
    ("features.19", "conv4_2", (512, 512, 3, 3)),
    ("features.21", "conv4_3", (512, 512, 3, 3)),
    ("features.24", "conv5_1", (512, 512, 3, 3)),
    ("features.26", "conv5_2", (512, 512, 3, 3)),
    ("features.28", "conv5_3", (512, 512, 3, 3)),
    ("classifier.0", "fc6", (4096, 512 * 7 * 7)),
    ("classifier.3", "fc7", (4096, 4096)),
)
VGG16_SKIPPED = {"classifier.6": "fc8, ImageNet's 1000-way classifier"}

FORMAT_CAFFEMODEL = "caffemodel"
FORMAT_TORCHVISION_VGG16 = "torchvision-vgg16"

# torch's zip format and its legacy pickle format. A NetParameter cannot start
# so: 'P' is the tag of field 10, 0x80 that of a field numbered a multiple of 16,
# and its fields are 1 to 8 and 100.
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80")
_V1_TYPES = {"CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
             "INNER_PRODUCT": "InnerProduct"}
_LEGACY_DIMS = ("num", "channels", "height", "width")
MAX_WEIGHTS_BYTES = 2 ** 36  # 64 GiB


# -- .caffemodel -----------------------------------------------------------------------
def read_caffemodel(path):
    """({layer: [tensors]}, {skipped layer: reason}) from a binary Caffe NetParameter."""
    return caffemodel_from_bytes(_read_bytes(path), path)


def caffemodel_from_bytes(data, where="caffemodel"):
    """read_caffemodel of the file's bytes; `where` names the file in errors."""
    if not data:
        raise WeightsError(f"{where}: the weights file is empty")
    net = pb.NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise WeightsError(f"{where}: not a Caffe .caffemodel (a binary NetParameter), nor a "
                           f"torch file: {e or 'truncated or corrupt'}") from None
    if len(net.layer) and len(net.layers):
        raise WeightsError(f"{where}: the NetParameter has both 'layer' and legacy 'layers' "
                           "entries; Caffe reads only one of them")
    if len(net.layer):
        entries = [(lp.name, lp.type, lp.blobs) for lp in net.layer]
    else:
        names = pb.V1LayerParameter.LayerType.Name
        entries = [(v1.name, _V1_TYPES.get(names(v1.type), names(v1.type)), v1.blobs)
                   for v1 in net.layers]
    layers, skipped = {}, {}
    for index, (name, layer_type, blobs) in enumerate(entries):
        if not len(blobs):
            skipped[name or f"#{index}"] = "no blobs"
            continue
        if not name:
            raise WeightsError(f"{where}: layer {index} ({layer_type}) has blobs but no name")
        if name in layers:
            raise WeightsError(f"{where}: layer '{name}' ({layer_type}) has blobs twice")
        layers[name] = [_blob_tensor(blob, f"{where}: layer '{name}' ({layer_type}) blob {i}",
                                     layer_type, i)
                        for i, blob in enumerate(blobs)]
    if not layers:
        raise WeightsError(f"{where}: reads as a Caffe NetParameter with no layer with blobs: "
                           "not a .caffemodel with weights, nor a torch file (a net from "
                           "before Caffe's V1 format needs Caffe's upgrade_net_proto_binary)")
    return layers, skipped


def _blob_tensor(blob, what, layer_type, index):
    if len(blob.data):
        values = np.array(blob.data, dtype=np.float32)
    else:
        values = np.array(blob.double_data, dtype=np.float64)
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    elif any(blob.HasField(d) for d in _LEGACY_DIMS):
        shape = _legacy_shape(tuple(getattr(blob, d) for d in _LEGACY_DIMS), what, layer_type,
                              index)
    else:
        shape = ()  # Caffe reads a blob without any shape as a scalar
    if any(d < 0 for d in shape):
        raise WeightsError(f"{what}: shape {format_shape(shape)} has a negative dimension")
    count = math.prod(shape)  # Python ints: dims that overflow 64 bits cannot wrap to a match
    if count != values.size:
        raise WeightsError(f"{what}: shape {format_shape(shape)} holds {count} values, the file "
                           f"gives {values.size}")
    return torch.from_numpy(values).reshape(shape)


def _legacy_shape(dims, what, layer_type, index):
    """A deprecated num x channels x height x width as the net's blob shape (see above)."""
    if index == 0 and layer_type in ("Convolution", "Deconvolution"):
        return dims
    if index == 0 and layer_type == "InnerProduct":
        if dims[:2] != (1, 1):
            raise WeightsError(f"{what}: legacy shape {format_shape(dims)}; InnerProduct "
                               "weights must be 1x1xNxK")
        return dims[2:]
    keep = 0
    while keep < 3 and dims[keep] == 1:
        keep += 1
    return dims[keep:]


# -- torchvision's VGG16 ---------------------------------------------------------------
def read_torchvision_vgg16(path, pixel_means=CAFFE_PIXEL_MEANS):
    """({layer: [tensors]}, {skipped key prefix: reason}) from torchvision's VGG16
    state_dict, with conv1_1 taking our input (see above)."""
    return vgg16_from_state_dict(_torch_load(path), path, pixel_means)


def vgg16_from_state_dict(state, where="state_dict", pixel_means=CAFFE_PIXEL_MEANS):
    if not isinstance(state, dict):
        raise WeightsError(f"{where}: not a state_dict (a {type(state).__name__})")
    if any(str(key).endswith("running_mean") for key in state):
        raise WeightsError(f"{where}: a VGG16 with batch normalisation (vgg16_bn): its layers "
                           "are numbered differently and have no Caffe counterpart")
    expected = [f"{prefix}.{kind}" for prefix, _, _ in VGG16_LAYOUT for kind in ("weight", "bias")]
    missing = [key for key in expected if key not in state]
    if missing:
        raise WeightsError(f"{where}: not torchvision's VGG16 state_dict: no "
                           f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    layers = {}
    for prefix, name, shape in VGG16_LAYOUT:
        blobs = [state[f"{prefix}.weight"], state[f"{prefix}.bias"]]
        for kind, blob, want in zip(("weight", "bias"), blobs, (shape, shape[:1])):
            if not torch.is_tensor(blob) or not blob.is_floating_point():
                raise WeightsError(f"{where}: {prefix}.{kind} ({name}) is not a float tensor")
            if tuple(blob.shape) != want:
                raise WeightsError(f"{where}: {prefix}.{kind} ({name}) has shape "
                                   f"{format_shape(tuple(blob.shape))}, VGG16's is "
                                   f"{format_shape(want)}")
        layers[name] = blobs
    layers["conv1_1"] = list(fold_torchvision_input(*layers["conv1_1"], pixel_means))
    skipped, taken = {}, set(expected)
    for key in state:
        prefix = str(key).rsplit(".", 1)[0]
        if key not in taken:
            skipped[prefix] = VGG16_SKIPPED.get(prefix, "not a layer of VGG16")
    return layers, skipped


def fold_torchvision_input(weight, bias, pixel_means=CAFFE_PIXEL_MEANS,
                           mean=TORCHVISION_MEAN, std=TORCHVISION_STD):
    """conv1_1 (weight O x 3 x kh x kw, bias O) of torchvision, rewritten to take
    BGR 0..255 minus pixel_means instead of normalised RGB (derivation above)."""
    w_bgr = weight.double().flip(1)  # our channel c reads torchvision's channel 2 - c
    std_bgr = torch.tensor(std, dtype=torch.float64).flip(0)
    mean_bgr = torch.tensor(mean, dtype=torch.float64).flip(0)
    pixel_means = torch.tensor(pixel_means, dtype=torch.float64)
    folded_weight = w_bgr / (255 * std_bgr).view(1, 3, 1, 1)
    shift = ((pixel_means / 255 - mean_bgr) / std_bgr).view(1, 3, 1, 1)
    folded_bias = bias.double() + (w_bgr * shift).sum(dim=(1, 2, 3))
    return folded_weight.to(weight.dtype), folded_bias.to(bias.dtype)


# -- any format ------------------------------------------------------------------------
def read_weights(path, pixel_means=CAFFE_PIXEL_MEANS):
    """({layer: [tensors]}, meta) from our weights, a .caffemodel or torchvision's
    VGG16 state_dict, detected by content."""
    _, layers, meta, _ = read_any(path, pixel_means)
    return layers, meta


def read_any(path, pixel_means=CAFFE_PIXEL_MEANS):
    """(format, {layer: [tensors]}, meta, {skipped: reason}) of any weights file."""
    if not _read_bytes(path, 4).startswith(_TORCH_MAGICS):
        layers, skipped = caffemodel_from_bytes(_read_bytes(path), path)
        meta = {"source_format": FORMAT_CAFFEMODEL}
        if "bbox_pred" in layers:
            meta["bbox_pred_unnormalized"] = True
        return FORMAT_CAFFEMODEL, layers, meta, skipped
    payload = _torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == WEIGHTS_FORMAT:
        return WEIGHTS_FORMAT, _checked_layers(payload, path), _checked_meta(payload, path), {}
    if isinstance(payload, dict) and "features.0.weight" in payload:
        layers, skipped = vgg16_from_state_dict(payload, path, pixel_means)
        meta = {"source_format": FORMAT_TORCHVISION_VGG16,
                "pixel_means": [float(p) for p in pixel_means]}
        return FORMAT_TORCHVISION_VGG16, layers, meta, skipped
    if isinstance(payload, dict) and weights_resnet.RESNET50_KEY in payload:
        layers, skipped = weights_resnet.resnet50_from_state_dict(
            payload, path, lambda w, b: fold_torchvision_input(w, b, pixel_means))
        meta = {"source_format": weights_resnet.FORMAT_TORCHVISION_RESNET50,
                "pixel_means": [float(p) for p in pixel_means]}
        return weights_resnet.FORMAT_TORCHVISION_RESNET50, layers, meta, skipped
    if isinstance(payload, dict):
        keys = [str(k) for k in list(payload)[:5]]
        found = f"a dict with keys {', '.join(keys)}{' ...' if len(payload) > 5 else ''}"
    else:
        found = f"a {type(payload).__name__}"
    raise WeightsError(f"{path}: a torch file holding {found}: neither pyfrcnn weights nor "
                       "torchvision's VGG16 or ResNet-50 state_dict")


def _checked_layers(payload, path):
    """The {layer: [float tensors]} of our weights format, each entry checked."""
    layers = payload.get("layers")
    if not isinstance(layers, dict):
        raise WeightsError(f"{path}: a pyfrcnn weights file without its 'layers' dict")
    for name, blobs in layers.items():
        if not isinstance(name, str) or not name:
            raise WeightsError(f"{path}: layer name {name!r} is not a non-empty string")
        if not isinstance(blobs, (list, tuple)):
            raise WeightsError(f"{path}: layer '{name}': expected a list of tensors, got a "
                               f"{type(blobs).__name__}")
        for i, blob in enumerate(blobs):
            if not torch.is_tensor(blob) or not blob.is_floating_point():
                raise WeightsError(f"{path}: layer '{name}' blob {i}: expected a float tensor, "
                                   f"got {type(blob).__name__ if not torch.is_tensor(blob) else blob.dtype}")
    return {name: list(blobs) for name, blobs in layers.items()}


def _checked_meta(payload, path):
    meta = payload.get("meta") or {}
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: entry 'meta' must be a dict, got a {type(meta).__name__}")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, (list, tuple)) and
                                    all(isinstance(c, str) for c in classes)):
        raise WeightsError(f"{path}: meta entry 'classes' must be a list of names")
    for key in ("detection", "data"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise WeightsError(f"{path}: meta entry '{key}' must be a dict")
    return dict(meta)


def convert(in_path, out_path, pixel_means=CAFFE_PIXEL_MEANS):
    """Write the weights of any format to out_path in ours; return
    (format, layers, meta, skipped) as read_any."""
    fmt, layers, meta, skipped = read_any(in_path, pixel_means)
    if fmt != WEIGHTS_FORMAT:
        meta["source"] = os.path.basename(os.fspath(in_path))
    atomic_torch_save({"format": WEIGHTS_FORMAT, "version": 1, "layers": layers, "meta": meta},
                      out_path)
    return fmt, layers, meta, skipped


def _read_bytes(path, size=-1):
    """The file's bytes (the first `size`); a missing file, a folder or a device
    such as /dev/zero is a WeightsError."""
    if size < 0:
        return read_bytes(path, "weights file", WeightsError, limit=MAX_WEIGHTS_BYTES)
    data = read_bytes(path, "weights file", WeightsError, limit=MAX_WEIGHTS_BYTES, head=size)
    return data


def _torch_load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as e:  # torch raises many types for a bad file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a readable torch weights file: {first_line}") from None


# -- `pyfrcnn convert` -----------------------------------------------------------------
def _pixel_means(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"'{text}': expected three numbers B,G,R")
    return values


def add_convert_arguments(parser):
    parser.add_argument("input", help="a .caffemodel, torchvision's VGG16 or ResNet-50 .pth, or pyfrcnn weights")
    parser.add_argument("output", help="the pyfrcnn weights file to write")
    parser.add_argument("--pixel-means", type=_pixel_means, default=CAFFE_PIXEL_MEANS,
                        metavar="B,G,R",
                        help="the PIXEL_MEANS our nets subtract, folded into conv1_1 of "
                             "torchvision's VGG16; default py-faster-rcnn's "
                             + ",".join(str(p) for p in CAFFE_PIXEL_MEANS))


def run_convert(args):
    fmt, layers, meta, skipped = convert(args.input, args.output, args.pixel_means)
    count = sum(len(blobs) for blobs in layers.values())
    print(f"{args.input} ({fmt}) -> {args.output}: {len(layers)} layers, {count} blobs")
    for name, blobs in layers.items():
        print(f"  {name}: {', '.join(format_shape(tuple(b.shape)) for b in blobs)}")
    by_reason = {}
    for name, reason in skipped.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        print(f"skipped ({reason}): {', '.join(names)}")
    if meta.get("bbox_pred_unnormalized"):
        print("bbox_pred gives un-normalised deltas (py-faster-rcnn's snapshots)")
    return 0
