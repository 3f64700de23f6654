"""COCO metrics through pycocotools (an optional extra: pip install pycocotools).

Our boxes are (x1, y1, x2, y2) with inclusive corners; COCO's are [x, y, w, h]
with w = x2 - x1 + 1 (py-faster-rcnn's coco loader takes x2 = x + w - 1, so
this is its inverse). Ground truth and detections are handed to pycocotools in
memory: images are numbered 1..N in annotation order, categories 1..K-1 in
class order. Difficult objects become crowd regions (iscrowd 1), which COCO
ignores as VOC ignores difficult ones. An object's area is the annotation's
'area' when it has one (COCO's segment area), otherwise its box area.
"""

import contextlib
import io
import math

import numpy as np

from pyfrcnn.errors import PyfrcnnError

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_available():
    try:
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        return False
    return True


def require_pycocotools():
    if not coco_available():
        raise PyfrcnnError("the coco metric needs pycocotools, which is not installed: "
                           "pip install pycocotools (or pip install pyfrcnn[coco])")


def to_coco_box(bbox):
    """[x1, y1, x2, y2] (inclusive corners) -> COCO [x, y, w, h]."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0]


def coco_ground_truth(annotations, classes):
    """The COCO-format dataset dict of the annotations, and {image_id: coco image id}."""
    image_index = {}
    images, objects = [], []
    for n, ann in enumerate(annotations, start=1):
        image_index[ann["image_id"]] = n
        images.append({"id": n, "width": int(ann.get("width", 0)),
                       "height": int(ann.get("height", 0))})
        boxes = np.asarray(ann["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(ann["labels"]).reshape(-1)
        difficult = np.asarray(ann.get("difficult", np.zeros(len(labels), dtype=bool)),
                               dtype=bool).reshape(-1)
        areas = ann.get("area")
        for g, (box, label) in enumerate(zip(boxes, labels)):
            coco_box = to_coco_box(box)
            area = float(areas[g]) if areas is not None else coco_box[2] * coco_box[3]
            objects.append({"id": len(objects) + 1, "image_id": n, "category_id": int(label),
                            "bbox": coco_box, "area": area, "iscrowd": int(difficult[g])})
    categories = [{"id": k, "name": name} for k, name in enumerate(classes) if k > 0]
    return {"images": images, "annotations": objects, "categories": categories}, image_index


def evaluate_coco(detections, annotations, classes):
    """COCO bbox metrics of checked detections (see detections.check_detections).

    Returns {'mAP': AP at IoU .50:.95, 'ap': {class: AP or NaN when the class has
    no object}, 'stats': {AP, AP50, AP75, APs, APm, APl, AR1, ...}, 'summary':
    pycocotools' printed table}.
    """
    require_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, image_index = coco_ground_truth(annotations, classes)
    class_index = {name: k for k, name in enumerate(classes)}
    results = [{"image_id": image_index[d["image_id"]], "category_id": class_index[d["class"]],
                "bbox": to_coco_box(d["bbox"]), "score": float(d["score"])}
               for d in detections if d["image_id"] in image_index]
    if not results:
        return {"mAP": 0.0, "ap": {name: 0.0 for name in classes[1:]},
                "stats": {name: 0.0 for name in STAT_NAMES},
                "summary": "no detections: every COCO metric is 0\n"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, coco_eval.stats)}
    # precision: T (IoU thresholds) x R (recall points) x K x A (area ranges) x M (max dets)
    precision = coco_eval.eval["precision"]
    cat_ids = list(coco_eval.params.catIds)
    aps = {}
    for k, name in enumerate(classes):
        if k == 0:
            continue
        p = precision[:, :, cat_ids.index(k), 0, -1]
        p = p[p > -1]
        aps[name] = float(p.mean()) if p.size else math.nan
    return {"mAP": stats["AP"], "ap": aps, "stats": stats, "summary": summary.getvalue()}


__all__ = ["STAT_NAMES", "coco_available", "require_pycocotools", "to_coco_box",
           "coco_ground_truth", "evaluate_coco"]
