"""The committed generated module must match pyfrcnn.proto, and the schema must
keep Caffe's field numbers (so Caffe files read as they are)."""

import os
import shutil
import subprocess
import sys

import pytest

from pyfrcnn.proto import pyfrcnn_pb2 as pb

PROTO_DIR = os.path.join(os.path.dirname(pb.__file__))


def test_committed_pb2_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    shutil.copy(os.path.join(PROTO_DIR, "pyfrcnn.proto"), tmp_path)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
                    f"--python_out={tmp_path}", str(tmp_path / "pyfrcnn.proto")], check=True)
    fresh = (tmp_path / "pyfrcnn_pb2.py").read_text()
    committed = open(os.path.join(PROTO_DIR, "pyfrcnn_pb2.py")).read()
    assert fresh == committed, "pyfrcnn_pb2.py is stale: regenerate it (see pyfrcnn/proto/README)"


# (message, field, number) as in BVLC caffe.proto and the Faster R-CNN fork.
CAFFE_NUMBERS = [
    ("NetParameter", "name", 1), ("NetParameter", "layers", 2), ("NetParameter", "input", 3),
    ("NetParameter", "input_dim", 4), ("NetParameter", "force_backward", 5),
    ("NetParameter", "state", 6), ("NetParameter", "input_shape", 8), ("NetParameter", "layer", 100),
    ("LayerParameter", "name", 1), ("LayerParameter", "type", 2), ("LayerParameter", "bottom", 3),
    ("LayerParameter", "top", 4), ("LayerParameter", "loss_weight", 5), ("LayerParameter", "param", 6),
    ("LayerParameter", "blobs", 7), ("LayerParameter", "include", 8), ("LayerParameter", "exclude", 9),
    ("LayerParameter", "phase", 10), ("LayerParameter", "propagate_down", 11),
    ("LayerParameter", "loss_param", 101), ("LayerParameter", "convolution_param", 106),
    ("LayerParameter", "inner_product_param", 117), ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "python_param", 130), ("LayerParameter", "reshape_param", 133),
    ("LayerParameter", "input_param", 143), ("LayerParameter", "dropout_param", 108),
    ("LayerParameter", "roi_pooling_param", 8266711),
    ("LayerParameter", "smooth_l1_loss_param", 8266712), ("DropoutParameter", "scale_train", 2),
    ("ParamSpec", "lr_mult", 3), ("ParamSpec", "decay_mult", 4),
    ("BlobProto", "shape", 7), ("BlobProto", "data", 5), ("BlobProto", "num", 1),
    ("BlobShape", "dim", 1), ("ROIPoolingParameter", "pooled_h", 1),
    ("ROIPoolingParameter", "pooled_w", 2), ("ROIPoolingParameter", "spatial_scale", 3),
    ("SmoothL1LossParameter", "sigma", 1), ("V1LayerParameter", "name", 4),
    ("V1LayerParameter", "blobs", 6), ("LossParameter", "normalize", 2),
    ("LossParameter", "normalization", 3), ("PythonParameter", "param_str", 3),
]


@pytest.mark.parametrize("message,field,number", CAFFE_NUMBERS)
def test_caffe_field_numbers(message, field, number):
    assert getattr(pb, message).DESCRIPTOR.fields_by_name[field].number == number


def test_binary_round_trip_of_a_caffe_style_message():
    net = pb.NetParameter(name="n")
    layer = net.layer.add(name="conv", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 1])
    blob.data.extend([1.5, -2.0])
    again = pb.NetParameter.FromString(net.SerializeToString())
    assert list(again.layer[0].blobs[0].data) == [1.5, -2.0]
