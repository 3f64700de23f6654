"""PASCAL VOC average precision, with py-faster-rcnn's voc_eval semantics.

Boxes are (x1, y1, x2, y2) with inclusive pixel corners (the +1 convention of
layers/bbox.py), in the 0-based coordinates of the data layer. VOC's 1-based
XML values and the 1-based results files differ from ours by a shift of one
pixel, which IoU does not see.

Ground truth is the annotation's eval_* objects: the boxes as the XML gives
them, not clipped to the image (voc_eval reads the XML as is), difficult ones
flagged. `pyfrcnn test` and testing during training score the detections as
the VOC results files hold them (voc_results_records: scores to 3 decimals,
corners to 0.1 pixel), so the printed mAP is what the devkit computes from
those files.

Matching, per class, as lib/datasets/voc_eval.py does it:
  - detections are taken in descending score order; ties keep the order in
    which they were given (a stable sort). voc_eval sorts with numpy's
    default argsort, which is not stable: with the files' 3-decimal scores
    ties are common, and tied detections can be taken in a different order
    there, which can move a TP / FP (a duplicate on one object) and so the AP
    in its last digits;
  - each detection is compared with every ground-truth box of its class in its
    image, difficult ones included, and takes the one of highest IoU (the
    first on ties);
  - IoU must be strictly greater than the threshold (0.5) for a match;
  - a match to a difficult object counts neither as TP nor FP;
  - a match to an object already claimed by a higher-scoring detection is a
    false positive (a duplicate), even if another object would have matched;
  - no match is a false positive.
Recall is TP over the number of non-difficult objects. The VOC07 metric is the
11-point interpolated AP (recall 0, 0.1, ..., 1); the VOC2010+ metric is the
area under the precision envelope. Detections of difficult objects ranked
above every other one get precision 0 rather than voc_eval's 0 / 0.

A class without non-difficult ground truth has no defined AP: it is NaN and
left out of the mean (py-faster-rcnn gives 0 with the 11-point metric and NaN
with the area one; on VOC itself every class has objects, so they agree).
"""

import math

import numpy as np

DEFAULT_IOU_THRESHOLD = 0.5


def voc_ap(recall, precision, use_07_metric=False):
    """AP from the recall and precision of the ranked detections (1-D arrays)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        # np.arange's thresholds, as voc_eval's: 0.3, 0.6 and 0.7 come out a hair
        # above their decimal values, so a recall of exactly 3/5 misses t = 0.6.
        # We keep that, so our numbers are voc_eval's to the last digit.
        for t in np.arange(0.0, 1.1, 0.1):
            above = recall >= t
            ap += (precision[above].max() if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # The precision envelope: at each recall, the best precision at that recall or beyond.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def box_ious(box, boxes):
    """IoU (inclusive corners) of one box (4,) with each of boxes (G x 4)."""
    iw = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + 1.0
    ih = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + 1.0
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    return inter / (area + areas - inter)


def match_detections(image_ids, boxes, scores, gt, iou_threshold=DEFAULT_IOU_THRESHOLD):
    """Mark the detections of one class as true or false positives.

    image_ids: D image ids; boxes: D x 4; scores: D.
    gt: {image_id: (G x 4 boxes, G difficult flags)} for this class; images
        absent from it have no object of the class.
    Returns (tp, fp, num_positives): tp and fp are D-vectors in descending score
    order (both 0 for a detection of a difficult object).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    num_positives = int(sum((~np.asarray(d, dtype=bool)).sum() for _, d in gt.values()))
    claimed = {image_id: np.zeros(len(d), dtype=bool) for image_id, (_, d) in gt.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, d in enumerate(order):
        image_id = image_ids[d]
        gt_boxes, difficult = gt.get(image_id, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        if len(gt_boxes) == 0:
            fp[rank] = 1.0
            continue
        ious = box_ious(boxes[d], gt_boxes)
        best = int(np.argmax(ious))
        if ious[best] > iou_threshold:
            if difficult[best]:
                continue
            if claimed[image_id][best]:
                fp[rank] = 1.0
            else:
                tp[rank] = 1.0
                claimed[image_id][best] = True
        else:
            fp[rank] = 1.0
    return tp, fp, num_positives


def class_ap(image_ids, boxes, scores, gt, use_07_metric=False,
             iou_threshold=DEFAULT_IOU_THRESHOLD):
    """(recall, precision, ap) of one class; ap is NaN when it has no
    non-difficult object (recall is then undefined)."""
    tp, fp, num_positives = match_detections(image_ids, boxes, scores, gt, iou_threshold)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    if num_positives == 0:
        return np.full(len(tp), math.nan), np.full(len(tp), math.nan), math.nan
    recall = tp / float(num_positives)
    # Detections of difficult objects ranked above every TP and FP leave
    # tp + fp == 0. voc_eval divides anyway, and the NaN turns its 11-point AP
    # into NaN; we give them precision 0, which is the same as dropping them
    # (Detectron's voc_eval does the same with an epsilon).
    precision = tp / np.maximum(tp + fp, 1.0)
    return recall, precision, voc_ap(recall, precision, use_07_metric)


def ground_truth_by_class(annotations, num_classes):
    """[{image_id: (boxes, difficult)}] for classes 0..num_classes-1 from the
    dataset's annotations (dicts with image_id and eval_boxes, eval_labels,
    eval_difficult, or else boxes, labels, difficult)."""
    per_class = [dict() for _ in range(num_classes)]
    for ann in annotations:
        boxes = np.asarray(ann.get("eval_boxes", ann["boxes"]), dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(ann.get("eval_labels", ann["labels"]), dtype=np.int64).reshape(-1)
        difficult = ann.get("eval_difficult", ann.get("difficult", np.zeros(len(labels), dtype=bool)))
        difficult = np.asarray(difficult, dtype=bool).reshape(-1)
        for label in np.unique(labels):
            mask = labels == label
            per_class[int(label)][ann["image_id"]] = (boxes[mask], difficult[mask])
    return per_class


def evaluate_voc(detections, annotations, classes, use_07_metric=True,
                 iou_threshold=DEFAULT_IOU_THRESHOLD):
    """VOC AP of every class but the background.

    detections: [{'image_id', 'class', 'bbox', 'score'}] (already checked
        against the dataset: see detections.check_detections);
    annotations: the data layer's annotation dicts of every image evaluated;
    classes: the dataset's class names, index 0 the background.
    Returns {'ap': {class: ap or NaN}, 'mAP': mean over classes with objects}.
    """
    gt = ground_truth_by_class(annotations, len(classes))
    by_class = {name: ([], [], []) for name in classes[1:]}
    for det in detections:
        image_ids, boxes, scores = by_class[det["class"]]
        image_ids.append(det["image_id"])
        boxes.append(det["bbox"])
        scores.append(det["score"])
    aps = {}
    for index, name in enumerate(classes):
        if index == 0:
            continue
        image_ids, boxes, scores = by_class[name]
        _, _, aps[name] = class_ap(image_ids, boxes, scores, gt[index], use_07_metric,
                                   iou_threshold)
    defined = [ap for ap in aps.values() if not math.isnan(ap)]
    return {"ap": aps, "mAP": float(np.mean(defined)) if defined else math.nan}


__all__ = ["voc_ap", "box_ious", "match_detections", "class_ap", "ground_truth_by_class",
           "evaluate_voc", "DEFAULT_IOU_THRESHOLD"]
