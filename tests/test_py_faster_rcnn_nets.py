"""py-faster-rcnn's nets, as its users have them, build and train unmodified.

tests/py_faster_rcnn_nets/ holds nets written for these tests with the
constructs of py-faster-rcnn's models/ (its layout and file names): pascal_voc
ZF, VGG_CNN_M_1024 and VGG16 end2end train/test, the alt-opt RPN stage and
test nets and the Fast R-CNN test nets (rois as an input), and the coco end2end nets (VGG_CNN_M_1024, VGG16: py-faster-rcnn has
no coco ZF). The constructs are those that a Caffe-only reader fails on: Python
layers by module path, `input`/`input_shape`, `loss_param { normalize }`,
`propagate_down`, LRN WITHIN_CHANNEL with `engine: CAFFE`, the fork's
ROIPooling, SmoothL1Loss and `dropout_param { scale_train: false }` (ZF),
DummyData + Silence (alt-opt), and in the coco nets a param_str of several
lines with `!!python/tuple`. The pascal_voc VGG16 pair equals py-faster-rcnn's
own files (checked below when they are at hand).

The alt-opt Fast R-CNN stages (stage*_fast_rcnn_train.pt) and the fast_rcnn
train nets are not here: their RoIDataLayer hands out precomputed proposals
(rois, labels, targets), a mode our RoIDataLayer does not have. The alt-opt
stage2_rpn_train.pt differs from stage 1 only by lr_mult 0 on the convolutions.
"""

import json
import math
from pathlib import Path

import pytest
from google.protobuf import text_format

from pyfrcnn.cli import main
from pyfrcnn.errors import PyfrcnnError
from pyfrcnn.proto import pyfrcnn_pb2 as pb

NETS_DIR = Path(__file__).parent / "py_faster_rcnn_nets"


def net_id(path):
    return str(Path(path).relative_to(NETS_DIR))


PASCAL_NETS = sorted((NETS_DIR / "pascal_voc").rglob("*.p*t*"))
COCO_NETS = sorted((NETS_DIR / "coco").rglob("*.prototxt"))
# trained 2 steps here; pascal_voc VGG16 (py-faster-rcnn's own file) trains in
# tests/test_recipes.py, and coco VGG16 differs from it only by what coco
# VGG_CNN_M_1024 trains here (12 anchors from a tuple param_str, 81 classes)
TRAINED = {"pascal_voc/ZF/faster_rcnn_end2end/train.prototxt",
           "pascal_voc/VGG_CNN_M_1024/faster_rcnn_end2end/train.prototxt",
           "coco/VGG_CNN_M_1024/faster_rcnn_end2end/train.prototxt"}
END2END_PASCAL = [p for p in PASCAL_NETS if net_id(p) in TRAINED]
# py-faster-rcnn's COCO nets, as its users wrote them
COCO_PARAM_STR = "'feat_stride': 16 \n'scales': !!python/tuple [4, 8, 16, 32]"


def phase_of(path):
    return "TRAIN" if "train" in path.name else "TEST"


def check(path, capsys):
    status = main(["check", str(path), "--phase", phase_of(path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def train_two_steps(path, tmp_path, cache):
    """2 steps of the unmodified net on shapes images; the losses of each step.
    No weights file: py-faster-rcnn's convolutions and fc layers have no fillers
    (Caffe's constant 0) and start from ImageNet weights, so this is about the
    net running and its trainable layers updating, not about learning."""
    solver = tmp_path / "solver.yaml"
    solver.write_text(f"""
train_net: {path}
base_lr: 0.001
lr_policy: fixed
max_iter: 2
momentum: 0.9
weight_decay: 0.0005
display: 1
snapshot_after_train: false
random_seed: 3
data:
  train: shapes:train
  cache_dir: {cache}
  workers: 0
  shapes: {{train_images: 2, test_images: 1}}
detection:
  TRAIN: {{SCALES: [160], MAX_SIZE: 224, RPN_PRE_NMS_TOP_N: 300, RPN_POST_NMS_TOP_N: 50,
           BATCH_SIZE: 16, RPN_BATCHSIZE: 64}}
""")
    assert main(["solve", str(solver), "--out", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["outputs"] for r in records if r["kind"] == "train"]


def assert_trained(outputs):
    assert len(outputs) == 2
    assert set(outputs[0]) == {"rpn_cls_loss", "rpn_loss_bbox", "loss_cls", "loss_bbox"}
    assert all(math.isfinite(v) for step in outputs for v in step.values())
    # anchors were labelled (an RPN loss over no anchor is 0) and the step changed the net
    assert outputs[0]["rpn_cls_loss"] > 0
    assert outputs[1]["loss_cls"] != outputs[0]["loss_cls"]


def coco_param_str_is_read():
    """Whether param_str reads py-faster-rcnn's `!!python/tuple` (the safe YAML loader)."""
    from pyfrcnn_layers.anchor_target import AnchorTargetLayer
    from tests.layers.rpn_helpers import build_layer

    try:
        layer, _ = build_layer(AnchorTargetLayer, COCO_PARAM_STR,
                               [(1, 24, None, None), (None, 5), (1, 3), (1, 3, None, None)], 4)
    except PyfrcnnError:
        return False
    return tuple(layer.params.scales) == (4, 8, 16, 32)


def test_the_fixture_tree_is_complete():
    names = {net_id(p) for p in PASCAL_NETS + COCO_NETS}
    for arch in ("ZF", "VGG_CNN_M_1024", "VGG16"):
        for name in ("faster_rcnn_end2end/train.prototxt", "faster_rcnn_end2end/test.prototxt",
                     "faster_rcnn_alt_opt/stage1_rpn_train.pt", "faster_rcnn_alt_opt/rpn_test.pt",
                     "faster_rcnn_alt_opt/faster_rcnn_test.pt", "fast_rcnn/test.prototxt"):
            assert f"pascal_voc/{arch}/{name}" in names
    for arch in ("VGG_CNN_M_1024", "VGG16"):
        assert f"coco/{arch}/faster_rcnn_end2end/train.prototxt" in names
        assert f"coco/{arch}/faster_rcnn_end2end/test.prototxt" in names
    zf = (NETS_DIR / "pascal_voc/ZF/faster_rcnn_end2end/train.prototxt").read_text()
    assert "scale_train: false" in zf and "norm_region: WITHIN_CHANNEL" in zf


@pytest.mark.parametrize("kind", ["train", "test"])
def test_vgg16_fixtures_are_py_faster_rcnns_files(kind, reference_dir):
    ours = text_format.Parse((NETS_DIR / f"pascal_voc/VGG16/faster_rcnn_end2end/{kind}.prototxt").read_text(),
                             pb.NetParameter())
    theirs = text_format.Parse((reference_dir / f"vgg16_end2end_{kind}.prototxt").read_text(), pb.NetParameter())
    assert ours == theirs


@pytest.mark.parametrize("path", PASCAL_NETS, ids=net_id)
def test_pascal_voc_net_checks(path, capsys):
    out = check(path, capsys)
    assert "parameters" in out.splitlines()[-1]


@pytest.mark.parametrize("path", END2END_PASCAL, ids=net_id)
def test_pascal_voc_end2end_net_trains_two_steps(path, tmp_path, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "shapes_cache"
    assert_trained(train_two_steps(path, tmp_path, cache))


@pytest.mark.parametrize("path", COCO_NETS, ids=net_id)
def test_coco_nets_with_python_tuple_param_str_check_and_train(path, capsys, tmp_path, tmp_path_factory):
    """The one test of `!!python/tuple` in param_str (py-faster-rcnn's coco nets)."""
    if not coco_param_str_is_read():
        pytest.skip("needs the safe YAML loader")
    net = text_format.Parse(path.read_text(), pb.NetParameter())
    param_strs = {layer.python_param.layer: layer.python_param.param_str for layer in net.layer}
    assert param_strs["ProposalLayer"] == COCO_PARAM_STR
    check(path, capsys)
    if net_id(path) in TRAINED:
        cache = tmp_path_factory.getbasetemp() / "shapes_cache"
        assert_trained(train_two_steps(path, tmp_path, cache))
