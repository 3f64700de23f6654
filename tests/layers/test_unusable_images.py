"""Images the pipeline cannot use never crash a run: an image with no proposal
left after the min-size filter gives no detections (detect, test and the
in-training evaluator) and a valid training step; a 1-pixel-wide image and its
flipped copy train; `data check` lists what training would skip."""

import json
import math
import os

import numpy as np
import pytest
import torch

from pyfrcnn_layers import data_check
from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.inference import detect, im_detect
from pyfrcnn.cli import main
from pyfrcnn.net import Net
from tests.conftest import REPO_DIR
from tests.layers.datasets.fixtures import make_voc

TEST_NET = str(REPO_DIR / "prototxt" / "fast" / "test.prototxt")
TRAIN_NET = str(REPO_DIR / "prototxt" / "fast" / "train.prototxt")
CLASSES = ["a", "b", "c", "d", "e"]  # the fast net scores 5 classes and the background
# (width, height): 1000 x 5 and 3 x 3 leave no proposal taller than RPN_MIN_SIZE
# (16 px at scale 1); 1 x 300 is one pixel wide.
ODD_SIZES = [(1000, 5), (3, 3), (1, 300), (1, 1)]


@pytest.fixture(scope="module")
def test_net():
    torch.manual_seed(0)
    net = Net(TEST_NET, "TEST", input_shapes={"data": (1, 3, None, None)})
    net.eval()
    return net


@pytest.mark.parametrize("width, height", ODD_SIZES)
def test_no_proposal_gives_no_detection(test_net, width, height):
    im = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cfg = DetectionConfig.from_dict({"TEST": {"SCALES": [600], "MAX_SIZE": 1000}})
    scores, boxes = im_detect(test_net, im, cfg)
    rois = test_net.blobs["rois"]
    if (width, height) in ((1000, 5), (3, 3)):
        assert rois.shape[0] == 0  # the case this test is about
    assert scores.shape == (rois.shape[0], 6) and boxes.shape == (rois.shape[0], 24)
    class_dets = detect(test_net, im, cfg, score_thresh=0.0)
    assert len(class_dets) == 6 and all(d.shape[1] == 5 for d in class_dets)
    if rois.shape[0] == 0:
        assert all(d.shape[0] == 0 for d in class_dets)


def voc_with_odd_images(folder):
    images = {"normal": (64, 48, [("a", 5, 5, 40, 40)]),
              "one_wide": (1, 300, [("b", 1, 1, 1, 300)]),
              "flat": (1000, 5, [("c", 1, 1, 1000, 5)]),
              "tiny": (3, 3, [("d", 1, 1, 3, 3)]),
              "empty": (40, 30, []),
              "all_difficult": (40, 30, [("a", 2, 2, 20, 20, 1)])}
    return make_voc(str(folder), images, classes=CLASSES)


def write_solver(tmp_path, folder, max_iter):
    path = tmp_path / "solver.yaml"
    path.write_text(f"""train_net: {TRAIN_NET}
test_net: {TEST_NET}
base_lr: 0.001
max_iter: {max_iter}
display: 1
device: cpu
tensorboard: false
random_seed: 1
test_interval: {max_iter}
test_initialization: false
snapshot_after_train: true
data:
  train: voc:{folder}:train
  test: voc:{folder}:train
  workers: 0
  cache_dir: {tmp_path / 'cache'}
  skip_empty: false
detection:
  TRAIN: {{SCALES: [64], MAX_SIZE: 200, RPN_MIN_SIZE: 8, ASPECT_GROUPING: false}}
  TEST: {{SCALES: [64], MAX_SIZE: 200}}
""")
    return str(path)


def test_solve_trains_on_tiny_and_one_pixel_wide_images(tmp_path, capsys):
    folder = voc_with_odd_images(tmp_path / "voc")
    # 6 images and their flipped copies: every one is drawn once in 12 steps,
    # then the evaluator tests all 6 (no proposal in some).
    solver = write_solver(tmp_path, folder, max_iter=12)
    assert main(["solve", solver, "--out", str(tmp_path / "run"), "-q"]) == 0
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 12 and all(math.isfinite(r["loss"]) for r in train)
    test = [r for r in records if r["kind"] == "test"]
    assert len(test) == 1 and 0.0 <= test[0]["metrics"]["mAP"] <= 1.0


def test_test_command_on_images_without_proposals(tmp_path):
    folder = voc_with_odd_images(tmp_path / "voc")
    torch.manual_seed(0)
    net = Net(TEST_NET, "TEST", input_shapes={"data": (1, 3, None, None)})
    weights = str(tmp_path / "w.weights")
    net.save(weights, meta={"classes": ["__background__", *CLASSES]})
    out = tmp_path / "out"
    assert main(["test", "--net", TEST_NET, "--weights", weights, "--data", f"voc:{folder}:train",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "-q"]) == 0
    assert json.load(open(out / "metrics.json"))["mAP"] >= 0.0


def test_data_check_lists_what_training_skips(tmp_path, capsys):
    folder = voc_with_odd_images(tmp_path / "voc")
    report = data_check.check_dataset(f"voc:{folder}:train", cache_dir=tmp_path / "cache",
                                      workers=0)
    skipped = {os.path.basename(path): reason for path, reason in report.skipped}
    assert skipped == {"empty.jpg": "no object (data.skip_empty)",
                       "all_difficult.jpg": "all 1 object(s) are difficult (data.use_difficult: "
                                            "false, data.skip_empty)"}
    assert report.ok
    kept = data_check.check_dataset(f"voc:{folder}:train", cache_dir=tmp_path / "cache",
                                    workers=0, use_difficult=True)
    assert [os.path.basename(p) for p, _ in kept.skipped] == ["empty.jpg"]
    assert main(["data", "check", f"voc:{folder}:train", "--cache-dir", str(tmp_path / "c"),
                 "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "skipped by training: 2" in printed and "empty.jpg: no object" in printed
