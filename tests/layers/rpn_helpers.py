"""Shared by the tests of the Faster R-CNN layers: building one layer outside a net,
and the slow, obvious per-box references (Python loops over (x1, y1, x2, y2)
boxes with inclusive corners)."""

import math

import numpy as np

from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn.proto import pyfrcnn_pb2 as pb


def build_layer(cls, param_str, bottom_shapes, num_tops, phase="TRAIN", detection=None):
    """A set-up layer of class `cls` and its top shapes."""
    param = pb.LayerParameter(name=cls.__name__.lower(), type="Python")
    param.top.extend([f"top{i}" for i in range(num_tops)])
    config = {"detection": DetectionConfig.from_dict(detection or {})}
    layer = cls(param, phase=phase, config=config)
    layer.param_str = param_str
    return layer, layer.setup(bottom_shapes)


def area(box):
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def intersection(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return iw * ih if iw > 0 and ih > 0 else 0


def iou(a, b):
    """IoU of two boxes in float64, as py-faster-rcnn's bbox_overlaps (and the layers that
    label by IoU). With integer corners the intersection and union are exact, and the
    one rounding is the division's: equal IoUs compare equal."""
    inter = intersection(a, b)
    if inter == 0:
        return 0.0
    return float(np.float64(inter) / np.float64(area(a) + area(b) - inter))


def transform(ex, gt):
    """py-faster-rcnn's bbox_transform of one box pair, in float64."""
    ew, eh = ex[2] - ex[0] + 1.0, ex[3] - ex[1] + 1.0
    gw, gh = gt[2] - gt[0] + 1.0, gt[3] - gt[1] + 1.0
    ex_cx, ex_cy = ex[0] + 0.5 * ew, ex[1] + 0.5 * eh
    gt_cx, gt_cy = gt[0] + 0.5 * gw, gt[1] + 0.5 * gh
    return [(gt_cx - ex_cx) / ew, (gt_cy - ex_cy) / eh, math.log(gw / ew), math.log(gh / eh)]


def greedy_nms(boxes, threshold):
    """Indices kept by greedy NMS of boxes already sorted by descending score."""
    kept = []
    for i, box in enumerate(boxes):
        if all(iou_float(box, boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def iou_float(a, b):
    """IoU of boxes with real corners, in float64."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (area(a) + area(b) - inter)
