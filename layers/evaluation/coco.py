"""COCO metrics through pycocotools (an optional extra: pip install pycocotools).

Our boxes are (x1, y1, x2, y2) with inclusive corners; COCO's are [x, y, w, h]
with w = x2 - x1 + 1 (the COCO loader takes x2 = x + w - 1, so this is its
inverse).

Ground truth comes from one of two places:
  - the dataset's own COCO annotation file, when it has one: the official
    numbers (segment areas for the size breakdown, crowd regions with their
    category). Images are matched by id, categories by order (class k is the
    k-th smallest category id, as the loader numbers them); only the images
    evaluated are scored.
  - otherwise the annotations, handed over in memory: images numbered 1..N,
    categories 1..K-1 in class order. Difficult objects become crowd regions
    (iscrowd 1), which COCO ignores as VOC ignores difficult ones; don't-care
    regions become crowd regions of every class. An object's area is the
    annotation's 'area' when it has one, otherwise its box area.
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

    def add(image, label, box, area, crowd):
        objects.append({"id": len(objects) + 1, "image_id": image, "category_id": int(label),
                        "bbox": box, "area": area, "iscrowd": int(crowd)})

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
            add(n, label, coco_box, area, difficult[g])
        for region in np.asarray(ann.get("dontcare", np.zeros((0, 4))), np.float64).reshape(-1, 4):
            coco_box = to_coco_box(region)
            for label in range(1, len(classes)):
                add(n, label, coco_box, coco_box[2] * coco_box[3], True)
    categories = [{"id": k, "name": name} for k, name in enumerate(classes) if k > 0]
    return {"images": images, "annotations": objects, "categories": categories}, image_index


def _file_ground_truth(annotation_file, annotations, classes):
    """pycocotools' COCO of the annotation file, {image_id: its id} for the
    evaluated images, and [category id of class k] (index 0 unused)."""
    from pycocotools.coco import COCO

    coco_gt = COCO(annotation_file)
    cat_ids = sorted(coco_gt.getCatIds())
    if len(cat_ids) != len(classes) - 1:
        raise PyfrcnnError(f"{annotation_file}: {len(cat_ids)} categories, but the dataset has "
                           f"{len(classes) - 1} classes")
    by_key = {str(i): i for i in coco_gt.getImgIds()}
    image_index = {}
    for ann in annotations:
        if str(ann["image_id"]) not in by_key:
            raise PyfrcnnError(f"{annotation_file}: no image with id {ann['image_id']!r}")
        image_index[ann["image_id"]] = by_key[str(ann["image_id"])]
    return coco_gt, image_index, [None] + cat_ids


def evaluate_coco(detections, annotations, classes, annotation_file=None):
    """COCO bbox metrics of checked detections (see detections.check_detections),
    against `annotation_file` (a COCO instances JSON) when given, else against
    the annotations.

    Returns {'mAP': AP at IoU .50:.95, 'ap': {class: AP or NaN when the class has
    no object}, 'stats': {AP, AP50, AP75, APs, APm, APl, AR1, ...}, 'summary':
    pycocotools' printed table}.
    """
    require_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if annotation_file is not None:
            coco_gt, image_index, category_of = _file_ground_truth(
                annotation_file, annotations, classes)
        else:
            dataset, image_index = coco_ground_truth(annotations, classes)
            category_of = list(range(len(classes)))
            coco_gt = COCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
    class_index = {name: k for k, name in enumerate(classes)}
    results = [{"image_id": image_index[d["image_id"]],
                "category_id": category_of[class_index[d["class"]]],
                "bbox": to_coco_box(d["bbox"]), "score": float(d["score"])}
               for d in detections if d["image_id"] in image_index]
    if not results:
        present = {int(label) for ann in annotations for label in np.asarray(ann["labels"])}
        return {"mAP": 0.0,
                "ap": {name: 0.0 if k in present else math.nan
                       for k, name in enumerate(classes) if k > 0},
                "stats": {name: 0.0 for name in STAT_NAMES},
                "summary": "no detections: every COCO metric is 0\n"}
    with contextlib.redirect_stdout(out):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.params.imgIds = sorted(image_index.values())
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
        p = precision[:, :, cat_ids.index(category_of[k]), 0, -1]
        p = p[p > -1]
        aps[name] = float(p.mean()) if p.size else math.nan
    return {"mAP": stats["AP"], "ap": aps, "stats": stats, "summary": summary.getvalue()}


__all__ = ["STAT_NAMES", "coco_available", "require_pycocotools", "to_coco_box",
           "coco_ground_truth", "evaluate_coco"]
