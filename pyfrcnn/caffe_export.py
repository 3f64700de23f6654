"""Writing a built net for Caffe: a .caffemodel and a deploy prototxt.

caffemodel_bytes(net) -> bytes, write_caffemodel(net, path)
  A binary NetParameter as Caffe's Net::ToProto writes it: the net's name and
  every layer of its filtered definition (the deprecated net-level `input`
  fields as one Input layer, as Caffe's upgrade does; include / exclude rules
  dropped, since they have been applied), each with its blobs. Our layers keep
  Caffe's blobs in Caffe's order and layout, so each blob is written as it is:
    Convolution    weights N x C/group x kh x kw, bias N
    InnerProduct   weights N x K (num_output x inputs), bias N
    BatchNorm      mean x factor C, variance x factor C, factor 1 (the three
                   blobs Caffe keeps: sums weighted by the moving-average
                   factor, divided by it when they are used)
    Scale          scale (the scaled dims, e.g. C), bias of the same shape
  with `shape` (never the deprecated num / channels / height / width) and the
  values as `data` (float32) or `double_data` (float64), packed. The layer
  parameters are written without their blobs by protobuf; the blobs, which
  may be hundreds of megabytes (VGG16's fc6 is 4096 x 25088), are encoded
  here from the tensors' bytes: a field of a message may come in any order,
  so the layer's bytes followed by its blob fields are the same message.
  pyfrcnn.weights.read_caffemodel reads the file back bit for bit.

deploy_prototxt(net, replacements) -> str
  The same layers as prototxt text, without blobs, for a tool that runs the
  net (OpenCV's DNN, Caffe). `replacements` maps a layer name to the text of
  the layer that stands in for it there, e.g. our Python proposal layer as
  OpenCV's built-in Proposal layer (layers/caffe_deploy.py gives that text).
"""

import os

import numpy as np
import torch
from google.protobuf import text_format

from .errors import PyfrcnnError
from .proto import pyfrcnn_pb2 as pb

# Field numbers of caffe.proto (and of our schema, which keeps them).
_NET_LAYER = 100      # NetParameter.layer
_LAYER_BLOBS = 7      # LayerParameter.blobs
_BLOB_SHAPE = 7       # BlobProto.shape
_BLOB_DATA = 5        # BlobProto.data, packed float
_BLOB_DOUBLE_DATA = 8  # BlobProto.double_data, packed double
_LENGTH_DELIMITED = 2


class ExportError(PyfrcnnError):
    """A net or its weights that a Caffe file cannot hold."""


def caffe_layers(net):
    """The net's LayerParameters as Caffe writes them: filtered, without
    include / exclude rules, and without blobs."""
    layers = []
    for lp in net.netdef.param.layer:
        copy = pb.LayerParameter()
        copy.CopyFrom(lp)
        copy.ClearField("include")
        copy.ClearField("exclude")
        copy.ClearField("blobs")
        layers.append(copy)
    return layers


def caffemodel_bytes(net):
    """The serialized NetParameter of the net with its weights (see above)."""
    return b"".join(caffemodel_chunks(net))


def write_caffemodel(net, path):
    """Write the .caffemodel of the net to path (through a temporary file);
    returns its size in bytes."""
    chunks = caffemodel_chunks(net)
    size = sum(len(chunk) for chunk in chunks)
    if size >= 2 ** 31:
        raise ExportError(f"{path}: the weights take {size} bytes; protobuf (and so Caffe) "
                          "reads no message of 2 GiB or more")
    _write_atomic(path, chunks)
    return size


def caffemodel_chunks(net):
    """The .caffemodel's bytes as a list of pieces, the blobs' values as views
    of the tensors' memory (a copy of VGG16's weights costs a second each)."""
    params = net.params
    chunks = [pb.NetParameter(name=net.name).SerializeToString()]
    for lp in caffe_layers(net):
        layer = [lp.SerializeToString()]
        for index, blob in enumerate(params.get(lp.name, ())):
            what = f"layer '{lp.name}' ({lp.type}) blob {index}"
            parts = blob_chunks(blob.detach(), what)
            layer += [_key(_LAYER_BLOBS, sum(len(p) for p in parts)), *parts]
        chunks += [_key(_NET_LAYER, sum(len(p) for p in layer)), *layer]
    return chunks


def blob_chunks(tensor, what="blob"):
    """A BlobProto as pieces: its shape, then its values packed as float or double."""
    if tensor.dtype not in (torch.float32, torch.float64):
        raise ExportError(f"{what}: Caffe blobs hold float32 or float64 values, not {tensor.dtype}")
    shape = pb.BlobShape(dim=tuple(int(d) for d in tensor.shape)).SerializeToString()
    dtype = "<f4" if tensor.dtype == torch.float32 else "<f8"
    values = memoryview(np.ascontiguousarray(tensor.cpu().numpy(), dtype=dtype)).cast("B")
    number = _BLOB_DATA if dtype == "<f4" else _BLOB_DOUBLE_DATA
    return [_key(_BLOB_SHAPE, len(shape)), shape, _key(number, len(values)), values]


def deploy_prototxt(net, replacements=None, header=""):
    """The net's layers as prototxt text, each layer named in `replacements`
    written as the text given for it instead."""
    replacements = dict(replacements or {})
    names = {lp.name for lp in net.netdef.param.layer}
    unknown = sorted(set(replacements) - names)
    if unknown:
        raise ExportError(f"net '{net.name}': no layer {', '.join(unknown)} to replace")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append(f'name: "{net.name}"')
    for lp in caffe_layers(net):
        if lp.name in replacements:
            lines.append(replacements[lp.name].rstrip())
            continue
        body = text_format.MessageToString(lp, as_utf8=True)
        lines.append("layer {")
        lines.extend(f"  {line}" for line in body.rstrip().splitlines())
        lines.append("}")
    return "\n".join(lines) + "\n"


def _key(number, length):
    """The tag and length that open a length-delimited field."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(length)


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _write_atomic(path, chunks):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

