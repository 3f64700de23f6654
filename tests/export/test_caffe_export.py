""".caffemodel export: Caffe's layout, read back bit for bit by our importer,
and the same message protobuf itself builds; the OpenCV deploy prototxt;
`pyfrcnn export`."""

import re

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from pyfrcnn_layers.caffe_deploy import opencv_replacements
from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.inference import unnormalize_bbox_pred
from pyfrcnn.caffe_export import (ExportError, blob_chunks, caffemodel_bytes, deploy_prototxt,
                                  write_caffemodel)
from pyfrcnn.cli import main
from pyfrcnn.net import Net
from pyfrcnn.proto import pyfrcnn_pb2 as pb
from pyfrcnn.weights import caffemodel_from_bytes, read_caffemodel
from tests.export.netlib import FAST, SHAPES_TEST, random_blob, random_net


@pytest.fixture(scope="module")
def fast():
    return random_net(FAST)


def _reference_message(net):
    """The NetParameter built the slow, obvious way, with protobuf's own API."""
    message = pb.NetParameter(name=net.name)
    params = net.params
    for lp in net.netdef.param.layer:
        layer = message.layer.add()
        layer.CopyFrom(lp)
        layer.ClearField("include")
        layer.ClearField("exclude")
        for blob in params.get(lp.name, ()):
            proto = layer.blobs.add()
            proto.shape.dim.extend(blob.shape)
            proto.data.extend(blob.detach().reshape(-1).tolist())
    return message


def test_caffemodel_is_the_message_protobuf_builds(fast):
    net, _ = fast
    ours = pb.NetParameter.FromString(caffemodel_bytes(net))
    assert ours == _reference_message(net)
    assert [lp.name for lp in ours.layer][:2] == ["input", "data_scale"]


def test_blobs_in_caffe_layout(fast):
    net, _ = fast
    layers = {lp.name: lp for lp in pb.NetParameter.FromString(caffemodel_bytes(net)).layer}
    shapes = {name: [tuple(b.shape.dim) for b in lp.blobs] for name, lp in layers.items()}
    assert shapes["conv1"] == [(24, 3, 3, 3)]  # N x C x kh x kw, no bias
    assert shapes["bn1"] == [(24,), (24,), (1,)]  # mean and variance sums, then the factor
    assert shapes["scale1"] == [(24,), (24,)]
    assert shapes["rpn_cls_score"] == [(18, 128, 1, 1), (18,)]
    assert shapes["fc6"] == [(256, 160 * 4 * 4), (256,)]  # num_output x inputs
    assert shapes["bbox_pred"] == [(24, 256), (24,)]
    assert shapes["relu1"] == [] and shapes["proposal"] == []
    factor = layers["bn1"].blobs[2].data[0]
    assert factor == float(net.layer_dict["bn1"].blobs[2][0]) and factor > 1
    assert not any(b.HasField("num") for lp in layers.values() for b in lp.blobs)


def test_round_trip_is_bit_identical(fast, tmp_path):
    net, _ = fast
    path = tmp_path / "fast.caffemodel"
    size = write_caffemodel(net, path)
    assert size == path.stat().st_size
    layers, skipped = read_caffemodel(str(path))
    assert list(layers) == list(net.params)
    for name, blobs in net.params.items():
        assert len(layers[name]) == len(blobs)
        for read, blob in zip(layers[name], blobs):
            assert read.dtype == blob.dtype and read.shape == blob.shape
            assert torch.equal(read.view(torch.int32), blob.detach().view(torch.int32))
    assert "relu1" in skipped and "proposal" in skipped
    # and a net loads it, as any .caffemodel
    again = Net(FAST, "TEST", config=net.config, input_shapes={"data": (1, 3, None, None)})
    again.load(str(path), strict=True)
    data, im_info = random_blob((1, 3, 96, 128))
    with torch.no_grad():
        want = net.forward(data=data, im_info=im_info)["cls_prob"]
        got = again.forward(data=data, im_info=im_info)["cls_prob"]
    assert torch.equal(want, got)


def test_double_blobs_and_odd_values():
    values = torch.tensor([[0.0, -0.0, float("inf")], [float("nan"), 1e-310, -3.5]],
                          dtype=torch.float64)
    blob = pb.BlobProto.FromString(b"".join(blob_chunks(values)))
    assert tuple(blob.shape.dim) == (2, 3) and not len(blob.data)
    read = torch.tensor(blob.double_data, dtype=torch.float64).view(2, 3)
    assert torch.equal(read.view(torch.int64), values.view(torch.int64))
    single = values.float()
    wrapped = pb.NetParameter()
    layer = wrapped.layer.add(name="w", type="Scale")
    layer.blobs.add().ParseFromString(b"".join(blob_chunks(single)))
    layers, _ = caffemodel_from_bytes(wrapped.SerializeToString())
    assert torch.equal(layers["w"][0].view(torch.int32), single.view(torch.int32))
    with pytest.raises(ExportError, match="float32 or float64"):
        blob_chunks(torch.zeros(2, dtype=torch.int64), "layer 'x' blob 0")


def _proposal_block(text):
    pattern = r'layer \{\n  name: "proposal"\n  type: "Proposal".*?\n\}'
    return re.search(pattern, text, re.S).group(0)


def test_deploy_prototxt_has_opencvs_proposal_with_our_settings(fast):
    net, _ = fast
    text = deploy_prototxt(net, opencv_replacements(net), header="a\nb")
    assert text.startswith('# a\n# b\nname: "fast_frcnn"\n')
    block = _proposal_block(text)
    values = re.findall(r"^    (\w+): (\S+)$", block, re.M)
    assert values == [("feat_stride", "16"), ("base_size", "16"), ("min_size", "8"),
                      ("ratio", "0.5"), ("ratio", "1"), ("ratio", "2"),
                      ("scale", "2"), ("scale", "4"), ("scale", "8"),
                      ("pre_nms_topn", "1000"), ("post_nms_topn", "100"), ("nms_thresh", "0.7")]
    assert re.findall(r'bottom: "(\S+)"', block) == ["rpn_cls_prob_reshape", "rpn_bbox_pred",
                                                      "im_info"]
    # the rest is our own prototxt: it reads back as the same layers
    rest = pb.NetParameter()
    text_format.Parse(text.replace(block, ""), rest)
    kept = [lp for lp in net.netdef.param.layer if lp.name != "proposal"]
    assert [lp.name for lp in rest.layer] == [lp.name for lp in kept]
    assert rest.layer[1] == kept[1] and "python_param" not in text


def test_deploy_refuses_keep_all_topn():
    cfg = DetectionConfig.from_dict({"TEST": dict(SHAPES_TEST, RPN_POST_NMS_TOP_N=0)})
    net = Net(FAST, "TEST", config={"detection": cfg})
    with pytest.raises(Exception, match="RPN_POST_NMS_TOP_N = 0 keeps every proposal"):
        opencv_replacements(net)


def test_export_command_writes_both_and_folds_bbox_stats(fast, tmp_path, capsys):
    net, _ = fast
    stats = ((0.0, 0.1, -0.1, 0.05), (0.1, 0.1, 0.2, 0.2))
    meta = {"detection": {"TRAIN": {"BBOX_NORMALIZE_TARGETS_PRECOMPUTED": True,
                                    "BBOX_NORMALIZE_MEANS": list(stats[0]),
                                    "BBOX_NORMALIZE_STDS": list(stats[1])},
                          "TEST": dict(SHAPES_TEST)}}
    weights = tmp_path / "fast.pth"
    net.save(weights, meta=meta)
    out = tmp_path / "out" / "fast.caffemodel"
    assert main(["export", "--net", FAST, "--weights", str(weights),
                 "--caffemodel", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "23 layers, 45 blobs" in printed and "ignores min_size" in printed
    deploy = tmp_path / "out" / "fast_deploy.prototxt"
    assert 'type: "Proposal"' in deploy.read_text()
    # The .caffemodel's bbox_pred gives the un-normalised deltas, as py-faster-rcnn's.
    exported = Net(FAST, "TEST", config=net.config, input_shapes={"data": (1, 3, None, None)})
    exported.load(str(out), strict=True)
    data, im_info = random_blob((1, 3, 96, 128))
    with torch.no_grad():
        want = unnormalize_bbox_pred(net.forward(data=data, im_info=im_info)["bbox_pred"], *stats)
        got = exported.forward(data=data, im_info=im_info)["bbox_pred"]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # the weights file itself is untouched
    again, _ = caffemodel_from_bytes(caffemodel_bytes(net))
    assert torch.equal(again["bbox_pred"][1], net.layer_dict["bbox_pred"].blobs[1].detach())


def test_export_command_errors(fast, tmp_path, capsys):
    weights = tmp_path / "w.pth"
    fast[0].save(weights)
    assert main(["export", "--net", FAST, "--weights", str(weights)]) == 1
    assert "give --caffemodel" in capsys.readouterr().err
    assert main(["export", "--net", FAST, "--weights", str(weights), "--caffemodel",
                 str(tmp_path / "x.caffemodel"), "--deploy", FAST]) == 1
    assert "is the net itself" in capsys.readouterr().err
