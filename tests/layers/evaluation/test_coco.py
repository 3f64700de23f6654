"""The COCO path: our wrapper (box conversion, in-memory ground truth) against
pycocotools run directly on COCO-format data; skipped without pycocotools."""

import copy
import json
import math
import sys

import numpy as np
import pytest

from pyfrcnn_layers.evaluation import evaluate
from pyfrcnn_layers.evaluation.coco import coco_available, to_coco_box
from pyfrcnn.errors import PyfrcnnError

CLASSES = ["__background__", "person", "car"]

# COCO-format ground truth: [x, y, w, h], ids as in a COCO file
COCO_GT = {
    "images": [{"id": 42, "width": 200, "height": 150}, {"id": 7, "width": 200, "height": 150}],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
    "annotations": [
        {"id": 1, "image_id": 42, "category_id": 1, "bbox": [10, 10, 40, 80], "iscrowd": 0},
        {"id": 2, "image_id": 42, "category_id": 2, "bbox": [100, 50, 60, 30], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 1, "bbox": [120, 20, 70, 120], "iscrowd": 1},
        {"id": 5, "image_id": 7, "category_id": 2, "bbox": [60, 60, 8, 6], "iscrowd": 0},
    ],
}
COCO_DETS = [
    {"image_id": 42, "category_id": 1, "bbox": [12, 8, 40, 78], "score": 0.9},
    {"image_id": 42, "category_id": 1, "bbox": [11, 11, 38, 80], "score": 0.6},
    {"image_id": 42, "category_id": 2, "bbox": [98, 52, 64, 28], "score": 0.8},
    {"image_id": 7, "category_id": 1, "bbox": [6, 4, 22, 19], "score": 0.7},
    {"image_id": 7, "category_id": 1, "bbox": [130, 30, 50, 100], "score": 0.95},
    {"image_id": 7, "category_id": 2, "bbox": [60, 61, 9, 6], "score": 0.4},
    {"image_id": 7, "category_id": 2, "bbox": [0, 100, 30, 30], "score": 0.5},
]


def from_coco_box(box):
    x, y, w, h = box
    return [x, y, x + w - 1, y + h - 1]


def ours_from_coco():
    """The same data in the data layer's form: inclusive corners, difficult = crowd."""
    annotations = []
    for image in COCO_GT["images"]:
        objs = [a for a in COCO_GT["annotations"] if a["image_id"] == image["id"]]
        annotations.append({
            "image_id": str(image["id"]), "width": image["width"], "height": image["height"],
            "boxes": np.array([from_coco_box(a["bbox"]) for a in objs], dtype=np.float32),
            "labels": np.array([a["category_id"] for a in objs], dtype=np.int64),
            "difficult": np.array([bool(a["iscrowd"]) for a in objs]),
            "area": [a["bbox"][2] * a["bbox"][3] for a in objs]})
    dets = [{"image_id": str(d["image_id"]), "class": CLASSES[d["category_id"]],
             "bbox": from_coco_box(d["bbox"]), "score": d["score"]} for d in COCO_DETS]
    return dets, annotations


def pycocotools_directly(gt_dataset=None, image_ids=None):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dataset or COCO_GT)
        for a in gt.dataset["annotations"]:
            a.setdefault("area", a["bbox"][2] * a["bbox"][3])
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(COCO_DETS))
        ev = COCOeval(gt, dt, "bbox")
        if image_ids:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_box_conversion_uses_inclusive_widths():
    assert to_coco_box([10, 20, 49, 99]) == [10.0, 20.0, 40.0, 80.0]
    assert from_coco_box(to_coco_box([3, 4, 3, 4])) == [3, 4, 3, 4]  # one pixel


@pytest.mark.skipif(not coco_available(), reason="pycocotools is not installed")
def test_matches_pycocotools_on_coco_format_data():
    expected = pycocotools_directly()
    dets, annotations = ours_from_coco()
    result = evaluate(dets, annotations, CLASSES, "coco")
    assert result["metric"] == "coco"
    stats = list(result["stats"].values())
    np.testing.assert_allclose(stats, expected.stats, atol=1e-12)
    assert result["mAP"] == pytest.approx(expected.stats[0])
    precision = expected.eval["precision"]
    for k, name in enumerate(CLASSES[1:]):
        p = precision[:, :, k, 0, -1]
        assert result["ap"][name] == pytest.approx(p[p > -1].mean())
    assert "Average Precision" in result["summary"]


@pytest.mark.skipif(not coco_available(), reason="pycocotools is not installed")
def test_coco_hand_values():
    box = [0, 0, 99, 49]
    annotations = [{"image_id": "a", "boxes": np.array([box], np.float32), "labels": np.array([1]),
                    "difficult": np.array([False])}]
    perfect = [{"image_id": "a", "class": "person", "bbox": box, "score": 0.5}]
    result = evaluate(perfect, annotations, CLASSES, "coco")
    assert result["mAP"] == pytest.approx(1.0)
    assert math.isnan(result["ap"]["car"])  # no car at all
    # 100 x 40 of 100 x 50: IoU .8 matches at thresholds .50 .. .80 (7 of 10)
    shorter = [{"image_id": "a", "class": "person", "bbox": [0, 0, 99, 39], "score": 0.5}]
    result = evaluate(shorter, annotations, CLASSES, "coco")
    assert result["mAP"] == pytest.approx(0.7)
    assert result["stats"]["AP50"] == pytest.approx(1.0)
    assert result["stats"]["AP75"] == pytest.approx(1.0)
    assert evaluate([], annotations, CLASSES, "coco")["mAP"] == 0.0


@pytest.mark.skipif(not coco_available(), reason="pycocotools is not installed")
def test_a_coco_dataset_is_scored_against_its_own_file(tmp_path):
    from pyfrcnn_layers.datasets import open_dataset

    gt = copy.deepcopy(COCO_GT)
    for n, image in enumerate(gt["images"]):
        image["file_name"] = f"{n}.jpg"
    for a in gt["annotations"]:
        a["area"] = 0.6 * a["bbox"][2] * a["bbox"][3]  # a segment's area, not the box's
    (tmp_path / "images").mkdir()
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps(gt))
    dataset = open_dataset(f"coco:{json_file}:{tmp_path / 'images'}", cache_dir=tmp_path / "c")
    annotations = [dataset.annotation(i) for i in range(len(dataset))]
    dets, _ = ours_from_coco()
    expected = pycocotools_directly(gt)
    result = evaluate(dets, annotations, dataset.classes, "coco", coco_annotation_file=json_file)
    np.testing.assert_allclose(list(result["stats"].values()), expected.stats, atol=1e-12)
    # only the images evaluated count
    result = evaluate(dets, annotations[:1], dataset.classes, "coco",
                      coco_annotation_file=json_file)
    expected = pycocotools_directly(gt, image_ids=[42])
    np.testing.assert_allclose(list(result["stats"].values()), expected.stats, atol=1e-12)
    # without the file: crowds are the loader's don't-care regions, areas the boxes'
    result = evaluate(dets, annotations, dataset.classes, "coco")
    np.testing.assert_allclose(list(result["stats"].values()), pycocotools_directly().stats,
                               atol=1e-12)


def test_a_clear_message_without_pycocotools(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("pycocotools")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import now fails
    assert not coco_available()
    with pytest.raises(PyfrcnnError, match="pip install pycocotools"):
        evaluate([], [], CLASSES, "coco")
