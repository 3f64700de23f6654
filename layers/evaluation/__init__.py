"""Scoring detections: VOC AP (voc.py), COCO metrics (coco.py) and the
detections file (detections.py); draw.py draws boxes for a look.

`evaluate(detections, annotations, classes, metric)` is the one entry point:
metric 'voc07' (11-point AP), 'voc' (area AP, VOC2010+) or 'coco'.
"""

import math
import re

from pyfrcnn.errors import PyfrcnnError

METRICS = ("voc07", "voc", "coco")


def default_metric(dataset_name):
    """The metric a dataset is usually scored with: coco for COCO, the area AP
    for VOC 2010-2012, the 11-point AP otherwise (py-faster-rcnn's rule: VOC07
    metric for years before 2010)."""
    name = str(dataset_name).lower()
    if "coco" in name:
        return "coco"
    year = re.search(r"(19|20)\d\d", name)
    if year and int(year.group(0)) >= 2010:
        return "voc"
    return "voc07"


def evaluate(detections, annotations, classes, metric="voc07", coco_annotation_file=None,
             as_voc_results=False):
    """{'metric', 'mAP', 'ap': {class: ap}} (+ 'stats' and 'summary' for coco).
    `coco_annotation_file`: the dataset's COCO JSON, scored against for 'coco'.
    `as_voc_results`: score the VOC metrics on the detections as the VOC results
    files hold them (3-decimal scores), as py-faster-rcnn evaluated them."""
    if metric in ("voc07", "voc"):
        from .detections import voc_results_records
        from .voc import evaluate_voc

        if as_voc_results:
            detections = voc_results_records(detections)
        result = evaluate_voc(detections, annotations, classes, use_07_metric=metric == "voc07")
    elif metric == "coco":
        from .coco import evaluate_coco

        result = evaluate_coco(detections, annotations, classes, coco_annotation_file)
    else:
        raise PyfrcnnError(f"unknown metric '{metric}': use one of {', '.join(METRICS)}")
    return {"metric": metric, **result}


def format_table(result):
    """The per-class AP table and the mean, as printed by `pyfrcnn eval`."""
    aps = result["ap"]
    width = max([len(name) for name in aps] + [len("mean")])
    label = {"voc07": "AP (VOC07 11-point)", "voc": "AP (VOC area)",
             "coco": "AP (COCO .50:.95)"}.get(result["metric"], "AP")
    lines = [f"{'class':<{width}}  {label}"]
    for name, ap in aps.items():
        lines.append(f"{name:<{width}}  {'n/a (no objects)' if math.isnan(ap) else f'{ap:.4f}'}")
    mean = result["mAP"]
    lines.append(f"{'mean':<{width}}  {'n/a' if math.isnan(mean) else f'{mean:.4f}'}")
    return "\n".join(lines)


def result_to_json(result):
    """The --json payload: NaN (a class without objects) becomes null."""
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    payload = {"metric": result["metric"], "mAP": clean(result["mAP"]),
               "ap": {k: clean(v) for k, v in result["ap"].items()}}
    if "stats" in result:
        payload["stats"] = {k: clean(v) for k, v in result["stats"].items()}
    return payload


__all__ = ["METRICS", "default_metric", "evaluate", "format_table", "result_to_json"]
