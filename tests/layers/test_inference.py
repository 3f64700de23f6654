"""im_detect and its post-processing on synthetic net outputs (a fake net),
against slow, obvious implementations written here.

End-to-end `pyfrcnn test` / `detect` on a small trained net: to come once a
trained fast net is checked in.
"""

import random

import numpy as np
import pytest
import torch

from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.inference import (bbox_pred_stats, detect, im_detect, postprocess_detections,
                              to_records, unnormalize_bbox_pred)


class FakeNet:
    """Gives fixed rois / cls_prob / bbox_pred and records what it was fed."""

    def __init__(self, rois, cls_prob, bbox_pred):
        self.rois, self.cls_prob, self.bbox_pred = rois, cls_prob, bbox_pred
        self.calls = []
        self.blobs = {}

    def forward(self, data, im_info):
        self.calls.append((tuple(data.shape), im_info.tolist()))
        self.blobs = {"data": data, "im_info": im_info, "rois": self.rois}
        return {"cls_prob": self.cls_prob, "bbox_pred": self.bbox_pred}


def config(**test):
    return DetectionConfig.from_dict({"TEST": test})


# -- slow references ----------------------------------------------------------

def slow_decode(box, delta, height, width):
    """py-faster-rcnn's bbox_transform_inv and clip_boxes for one box."""
    w = box[2] - box[0] + 1.0
    h = box[3] - box[1] + 1.0
    cx, cy = box[0] + 0.5 * w, box[1] + 0.5 * h
    pcx, pcy = delta[0] * w + cx, delta[1] * h + cy
    pw, ph = np.exp(delta[2]) * w, np.exp(delta[3]) * h
    out = [pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph]
    limits = [width - 1, height - 1, width - 1, height - 1]
    return [min(max(v, 0.0), lim) for v, lim in zip(out, limits)]


def slow_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
                    - inter)


def slow_postprocess(scores, boxes, score_thresh, nms_thresh, max_per_image):
    num_classes = len(scores[0])
    per_class = [[]]
    for j in range(1, num_classes):
        cands = [(boxes[r][4 * j:4 * j + 4], scores[r][j]) for r in range(len(scores))
                 if scores[r][j] > score_thresh]
        cands.sort(key=lambda c: -c[1])
        kept = []
        for box, score in cands:
            if all(slow_iou(box, k[0]) <= nms_thresh for k in kept):
                kept.append((box, score))
        per_class.append(kept)
    all_scores = sorted(s for dets in per_class for _, s in dets)
    if max_per_image > 0 and len(all_scores) > max_per_image:
        cut = all_scores[len(all_scores) - max_per_image]
        per_class = [[d for d in dets if d[1] >= cut] for dets in per_class]
    return [[list(box) + [score] for box, score in dets] for dets in per_class]


def random_outputs(rng, num_rois, num_classes, size=200.0):
    boxes, scores = [], []
    for _ in range(num_rois):
        x, y = rng.uniform(0, size * 0.7), rng.uniform(0, size * 0.7)
        row = []
        for _ in range(num_classes):
            # clusters of near-duplicates, so NMS has work to do
            row += [x + rng.uniform(-4, 4), y + rng.uniform(-4, 4),
                    x + 30 + rng.uniform(-4, 4), y + 40 + rng.uniform(-4, 4)]
        boxes.append(row)
        raw = [rng.random() ** 3 for _ in range(num_classes)]
        scores.append([v / sum(raw) for v in raw])
    return scores, boxes


# -- post-processing ------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_postprocess_matches_the_slow_reference(seed):
    rng = random.Random(seed)
    scores, boxes = random_outputs(rng, num_rois=rng.randint(0, 60), num_classes=4)
    score_thresh = rng.choice([0.0, 0.05, 0.2])
    nms_thresh = rng.choice([0.3, 0.5, 0.7])
    max_per_image = rng.choice([0, 5, 20, 100])
    expected = slow_postprocess(scores, boxes, score_thresh, nms_thresh, max_per_image)
    t_scores = torch.tensor(scores, dtype=torch.float64).reshape(-1, 4)
    t_boxes = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 16)
    actual = postprocess_detections(t_scores, t_boxes, score_thresh, nms_thresh, max_per_image)
    assert len(actual) == 4 and actual[0].shape == (0, 5)
    for j in range(1, 4):
        np.testing.assert_allclose(actual[j].numpy().reshape(-1, 5),
                                   np.array(expected[j]).reshape(-1, 5), rtol=0, atol=1e-9)
    if max_per_image:
        assert sum(len(d) for d in actual) <= max_per_image


def test_score_threshold_is_strict_and_per_class():
    scores = torch.tensor([[0.0, 0.05, 0.95], [0.0, 0.06, 0.94]])
    boxes = torch.tensor([[0, 0, 9, 9] * 3, [50, 50, 59, 59] * 3], dtype=torch.float32)
    dets = postprocess_detections(scores, boxes, score_thresh=0.05, nms_thresh=0.3)
    assert dets[1].tolist() == [[50, 50, 59, 59, pytest.approx(0.06)]]
    assert [d[4] for d in dets[2].tolist()] == [pytest.approx(0.95), pytest.approx(0.94)]


def test_nms_is_per_class_and_suppresses_above_the_threshold_only():
    # b overlaps a with IoU 60 / 100 = .6; c overlaps a with IoU 50 / 100 = .5 exactly
    a, b, c = [0, 0, 9, 9], [0, 0, 9, 5], [0, 0, 9, 4]
    boxes = torch.tensor([a + a, b + b, c + c], dtype=torch.float32)
    scores = torch.tensor([[0.1, 0.9], [0.1, 0.8], [0.1, 0.7]])
    dets = postprocess_detections(scores.repeat(1, 1), boxes, 0.05, nms_thresh=0.5)
    assert dets[1][:, :4].tolist() == [a, c]  # b goes (.6 > .5); c stays (.5 is not > .5)
    # the same boxes in two classes do not suppress each other
    two = torch.tensor([[0.0, 0.9, 0.8]])
    dets = postprocess_detections(two, torch.tensor([a * 3], dtype=torch.float32), 0.05, 0.3)
    assert len(dets[1]) == 1 and len(dets[2]) == 1


def test_max_per_image_is_over_all_classes_and_keeps_ties():
    boxes = torch.tensor([[20.0 * r, 0, 20.0 * r + 9, 9] * 3 for r in range(4)])
    scores = torch.tensor([[0.0, 0.9, 0.5], [0.0, 0.8, 0.6], [0.0, 0.7, 0.6], [0.0, 0.1, 0.2]])
    dets = postprocess_detections(scores, boxes, 0.05, 0.3, max_per_image=3)
    # class 1 has .9 .8 .7 .1, class 2 .6 .6 .5 .2: the best 3 are all class 1's
    assert dets[1][:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert dets[2].shape == (0, 5)
    # the 4th best (.6) is shared by two detections: max 4 keeps both
    dets = postprocess_detections(scores, boxes, 0.05, 0.3, max_per_image=4)
    kept = sorted(s for d in dets[1:] for s in d[:, 4].tolist())
    assert kept == pytest.approx([0.6, 0.6, 0.7, 0.8, 0.9])
    # 0 turns the limit off
    dets = postprocess_detections(scores, boxes, 0.05, 0.3, max_per_image=0)
    assert sum(len(d) for d in dets) == 8


def test_no_rois():
    dets = postprocess_detections(torch.zeros(0, 3), torch.zeros(0, 12))
    assert [tuple(d.shape) for d in dets] == [(0, 5)] * 3


# -- im_detect ----------------------------------------------------------------

def fake_outputs(seed=0, num_rois=7, num_classes=3, height=100, width=150, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(num_rois, generator=g) * (width - 40) * scale
    y1 = torch.rand(num_rois, generator=g) * (height - 40) * scale
    rois = torch.stack([torch.zeros(num_rois), x1, y1, x1 + 60, y1 + 50], dim=1)
    cls_prob = torch.softmax(torch.randn(num_rois, num_classes, generator=g), dim=1)
    bbox_pred = torch.randn(num_rois, 4 * num_classes, generator=g) * 0.3
    return rois, cls_prob, bbox_pred


def expected_boxes(rois, bbox_pred, scale, height, width, stats=None):
    rows = []
    for r in range(rois.shape[0]):
        box = (rois[r, 1:5] / scale).tolist()
        row = []
        for j in range(bbox_pred.shape[1] // 4):
            delta = bbox_pred[r, 4 * j:4 * j + 4].tolist()
            if stats is not None:
                delta = [d * s + m for d, m, s in zip(delta, *stats)]
            row += slow_decode(box, delta, height, width)
        rows.append(row)
    return np.array(rows)


def test_im_detect_feeds_the_net_and_decodes_in_the_original_image():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    rois, cls_prob, bbox_pred = fake_outputs()
    net = FakeNet(rois, cls_prob, bbox_pred)
    scores, boxes = im_detect(net, im, config(SCALES=[200], MAX_SIZE=1000))
    # shorter side 100 -> 200: scale 2, blob 200 x 300
    assert net.calls == [((1, 3, 200, 300), [[200.0, 300.0, 2.0]])]
    np.testing.assert_array_equal(scores.numpy(), cls_prob.numpy())
    np.testing.assert_allclose(boxes.numpy(), expected_boxes(rois, bbox_pred, 2.0, 100, 150),
                               atol=1e-3)
    assert boxes[:, 0::2].max() <= 149 and boxes[:, 1::2].max() <= 99 and boxes.min() >= 0


def test_max_size_caps_the_scale():
    im = np.zeros((100, 400, 3), dtype=np.uint8)
    net = FakeNet(*fake_outputs(width=400, scale=1.5))
    im_detect(net, im, config(SCALES=[300], MAX_SIZE=600))
    # 300 / 100 = 3 would make the long side 1200 > 600: scale 600 / 400 = 1.5
    assert net.calls == [((1, 3, 150, 600), [[150.0, 600.0, 1.5]])]


def test_normalised_bbox_pred_is_unnormalised():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    rois, cls_prob, bbox_pred = fake_outputs(seed=1)
    stats = ((0.01, -0.02, 0.0, 0.05), (0.1, 0.1, 0.2, 0.2))
    net = FakeNet(rois, cls_prob, bbox_pred)
    _, boxes = im_detect(net, im, config(SCALES=[200]), bbox_stats=stats)
    np.testing.assert_allclose(boxes.numpy(), expected_boxes(rois, bbox_pred, 2.0, 100, 150, stats),
                               atol=1e-3)
    _, raw = im_detect(net, im, config(SCALES=[200]))
    assert not torch.allclose(raw, boxes)


def test_bbox_pred_stats_follow_the_weights_meta():
    trained = {"detection": DetectionConfig().to_dict()}
    assert bbox_pred_stats(trained) == ((0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2))
    assert bbox_pred_stats({}) is None            # converted .caffemodel: already deltas
    assert bbox_pred_stats(None) is None
    assert bbox_pred_stats(dict(trained, bbox_pred_unnormalized=True)) is None
    plain = DetectionConfig.from_dict({"TRAIN": {"BBOX_NORMALIZE_TARGETS_PRECOMPUTED": False}})
    assert bbox_pred_stats({"detection": plain.to_dict()}) is None
    custom = DetectionConfig.from_dict({"TRAIN": {"BBOX_NORMALIZE_STDS": [1, 2, 3, 4],
                                                  "BBOX_NORMALIZE_MEANS": [0.5, 0, 0, 0]}})
    assert bbox_pred_stats({"detection": custom.to_dict()}) == ((0.5, 0, 0, 0), (1, 2, 3, 4))


def test_unnormalize_repeats_the_stats_per_class():
    deltas = torch.ones(2, 8)
    out = unnormalize_bbox_pred(deltas, (1, 2, 3, 4), (10, 20, 30, 40))
    assert out[0].tolist() == [11, 22, 33, 44, 11, 22, 33, 44]


def test_several_scales_stack_their_rois():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    net = FakeNet(*fake_outputs())
    scores, boxes = im_detect(net, im, config(SCALES=[100, 200]))
    assert [c[1][0][2] for c in net.calls] == [1.0, 2.0]
    assert scores.shape == (14, 3) and boxes.shape == (14, 12)


def test_without_bbox_regression_the_rois_are_the_boxes():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    rois, cls_prob, bbox_pred = fake_outputs()
    net = FakeNet(rois, cls_prob, None)
    _, boxes = im_detect(net, im, config(SCALES=[200], BBOX_REG=False))
    np.testing.assert_allclose(boxes.numpy(), (rois[:, 1:5] / 2).repeat(1, 3).numpy())


def test_detect_applies_the_test_thresholds_and_makes_records():
    im = np.zeros((100, 150, 3), dtype=np.uint8)
    rois, cls_prob, bbox_pred = fake_outputs(num_rois=30)
    net = FakeNet(rois, cls_prob, bbox_pred)
    cfg = config(SCALES=[200], NMS=0.4, SCORE_THRESH=0.2, MAX_PER_IMAGE=5)
    dets = detect(net, im, cfg)
    scores, boxes = im_detect(net, im, cfg)
    expected = slow_postprocess(scores.tolist(), boxes.tolist(), 0.2, 0.4, 5)
    for j in range(1, 3):
        np.testing.assert_allclose(dets[j].numpy().reshape(-1, 5),
                                   np.array(expected[j]).reshape(-1, 5), atol=1e-6)
    records = to_records(dets, ("__background__", "cat", "dog"), "000123")
    assert len(records) == sum(len(d) for d in dets) <= 5
    assert all(r["image_id"] == "000123" and r["class"] in ("cat", "dog") for r in records)
    assert [r["class"] for r in records] == sorted(r["class"] for r in records)
    # a threshold given directly overrides SCORE_THRESH
    assert sum(len(d) for d in detect(net, im, cfg, score_thresh=0.9)) <= \
        sum(len(d) for d in dets)
