"""The RPN's and the RoI head's fg / bg accuracy: found from the net's structure,
counted as tensors every step (no host sync), read once per display."""

import json

import pytest
import torch

from pyfrcnn_layers.training_stats import DetectionAccuracy
from pyfrcnn import hooks
from pyfrcnn.net import Net
from tests.conftest import REPO_DIR

FAST_TRAIN = str(REPO_DIR / "prototxt" / "fast" / "train.prototxt")


def slow_accuracy(scores, labels):
    """(fg, fg right, bg, bg right) of per-item class scores (lists) and labels."""
    counts = [0, 0, 0, 0]
    for row, label in zip(scores, labels):
        predicted = max(range(len(row)), key=lambda k: (row[k], -k))  # first of equal maxima
        if label > 0:
            counts[0] += 1
            counts[1] += predicted == label
        elif label == 0:
            counts[2] += 1
            counts[3] += predicted == 0
    return counts


def fake_step(net, generator, num_rois=12, height=3, width=4, a=9):
    """Blobs of one step: RPN scores and labels (-1, 0, 1), RoI scores and labels."""
    net.blobs = {
        "rpn_cls_score_reshape": torch.randn(1, 2, a * height, width, generator=generator),
        "rpn_labels": torch.randint(-1, 2, (1, 1, a * height, width), generator=generator).float(),
        "cls_score": torch.randn(num_rois, 6, generator=generator),
        "labels": torch.randint(0, 6, (num_rois,), generator=generator).float(),
    }
    rpn_scores = net.blobs["rpn_cls_score_reshape"][0].permute(1, 2, 0).reshape(-1, 2).tolist()
    rpn_labels = net.blobs["rpn_labels"].reshape(-1).tolist()
    return (slow_accuracy(rpn_scores, rpn_labels),
            slow_accuracy(net.blobs["cls_score"].tolist(), net.blobs["labels"].tolist()))


@pytest.fixture(scope="module")
def fast_net():
    return Net(FAST_TRAIN, "TRAIN", input_shapes={})


def test_blobs_are_found_from_the_net(fast_net):
    stats = DetectionAccuracy(fast_net)
    assert stats.heads == {"rpn_": ("rpn_cls_score_reshape", "rpn_labels"), "": ("cls_score", "labels")}


def test_accuracies_over_the_interval_match_a_loop(fast_net, monkeypatch):
    stats = DetectionAccuracy(fast_net)
    generator = torch.Generator().manual_seed(0)
    rpn_total, roi_total = [0] * 4, [0] * 4
    for _ in range(3):
        rpn, roi = fake_step(fast_net, generator)
        rpn_total = [x + y for x, y in zip(rpn_total, rpn)]
        roi_total = [x + y for x, y in zip(roi_total, roi)]
        with monkeypatch.context() as m:  # update() never reads a value back to the host
            for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
                m.setattr(torch.Tensor, name, lambda *a, **k: pytest.fail("host sync in update()"))
            stats.update(fast_net)
    values = stats.read()
    assert values["rpn_fg_acc"] == pytest.approx(rpn_total[1] / rpn_total[0])
    assert values["rpn_bg_acc"] == pytest.approx(rpn_total[3] / rpn_total[2])
    assert values["rpn_num_fg"] == pytest.approx(rpn_total[0] / 3)
    assert values["fg_acc"] == pytest.approx(roi_total[1] / roi_total[0])
    assert values["bg_acc"] == pytest.approx(roi_total[3] / roi_total[2])
    assert values["num_bg"] == pytest.approx(roi_total[2] / 3)
    # read() starts a new interval
    rpn, roi = fake_step(fast_net, generator)
    stats.update(fast_net)
    assert stats.read()["fg_acc"] == pytest.approx(roi[1] / roi[0])


def test_a_net_without_the_detection_layers_has_no_stats():
    text = ('input: "x" input_shape { dim: 2 dim: 3 }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }\n')
    assert DetectionAccuracy(Net(text, "TRAIN")).heads == {}


def test_display_and_metrics_show_the_stats(tmp_path, monkeypatch):
    from pyfrcnn.solver import Solver
    from pyfrcnn.solver_config import load_solver
    from tests.engine.netlib import write_run

    class Counting:
        def __init__(self):
            self.updates = 0

        def update(self, net):
            self.updates += 1

        def read(self):
            seen, self.updates = self.updates, 0
            return {"rpn_fg_acc": 0.5, "steps_seen": seen}

    monkeypatch.setattr(hooks, "STEP_STATS", [lambda solver: Counting()])
    path = write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 5\ndevice: cpu\ndisplay: 2\n"
                     "snapshot_after_train: false\n")
    Solver(load_solver(path), run_dir=str(tmp_path / "run"), dist_info=False).solve()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [0, 2, 4]
    assert [r["stats"]["steps_seen"] for r in train] == [1, 2, 2]
    assert all(r["stats"]["rpn_fg_acc"] == 0.5 for r in train)
