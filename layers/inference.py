"""Detection with a test net: py-faster-rcnn's im_detect and test_net post-processing.

A py-faster-rcnn test net takes
    data      1 x 3 x H x W   the image minus PIXEL_MEANS (BGR), scaled (image_to_blob)
    im_info   1 x 3           (H, W, im_scale)
and gives
    rois      R x 5           (batch index, x1, y1, x2, y2) in the scaled image
    cls_prob  R x K           class probabilities, K including the background (0)
    bbox_pred R x 4K          per-class box deltas (dx, dy, dw, dh)

im_detect maps the RoIs back to the original image (divide by im_scale),
decodes them with bbox_pred (layers/bbox.py, inclusive corners) and clips them
to the image: scores R x K and boxes R x 4K. With several TEST.SCALES the
results of each scale are stacked (R1 + R2 + ... rows); py-faster-rcnn takes
one scale with an RPN.

bbox_pred of a net trained with BBOX_NORMALIZE_TARGETS_PRECOMPUTED predicts
normalised deltas: they are un-normalised (deltas x STDS + MEANS, per class)
unless the weights say it was already folded into the layer
(bbox_pred_stats() reads the weights' meta for that).

postprocess_detections keeps, for each class j >= 1, the boxes with score >
SCORE_THRESH (strictly), applies NMS (IoU > NMS suppresses), then keeps at
most MAX_PER_IMAGE detections over all classes: py-faster-rcnn's rule, every
detection scoring at least the MAX_PER_IMAGE-th best score (ties may keep a
few more). Detections come out per class (index 0 empty), each N x 5 (x1, y1,
x2, y2, score) by descending score.
"""

import torch

from pyfrcnn_layers.bbox import bbox_transform_inv, clip_boxes
from pyfrcnn_layers.config import DetectionConfig, TrainConfig
from pyfrcnn_layers.image import image_to_blob
from pyfrcnn.errors import NetError
from pyfrcnn.ops import nms


def bbox_pred_stats(meta):
    """(means, stds) to un-normalise bbox_pred with, or None when the outputs are
    already deltas: weights without meta (converted from a .caffemodel), weights
    whose training did not normalise by precomputed stats, and weights whose
    meta says 'bbox_pred_unnormalized'."""
    meta = meta or {}
    detection = meta.get("detection")
    if not detection or meta.get("bbox_pred_unnormalized"):
        return None
    train = dict(detection.get("TRAIN") or {})
    if not train.get("BBOX_NORMALIZE_TARGETS_PRECOMPUTED", False):
        return None
    defaults = TrainConfig()
    means = tuple(train.get("BBOX_NORMALIZE_MEANS", defaults.BBOX_NORMALIZE_MEANS))
    stds = tuple(train.get("BBOX_NORMALIZE_STDS", defaults.BBOX_NORMALIZE_STDS))
    return means, stds


def unnormalize_bbox_pred(bbox_pred, means, stds):
    """R x 4K deltas x stds + means, the 4 values repeated for each class."""
    num_classes = bbox_pred.shape[1] // 4
    like = {"dtype": bbox_pred.dtype, "device": bbox_pred.device}
    stds = torch.as_tensor(stds, **like).repeat(num_classes)
    means = torch.as_tensor(means, **like).repeat(num_classes)
    return bbox_pred * stds + means


def _net_device(net):
    param = next(iter(net.parameters()), None) if hasattr(net, "parameters") else None
    return param.device if param is not None else torch.device("cpu")


def _blob(net, outputs, name):
    value = outputs[name] if name in outputs else getattr(net, "blobs", {}).get(name)
    if value is None:
        raise NetError(f"the test net has no blob '{name}': a Faster R-CNN test net gives "
                       "rois, cls_prob and bbox_pred")
    return value


def im_detect(net, im_bgr, cfg=None, bbox_stats=None):
    """(scores R x K, boxes R x 4K) for an H x W x 3 uint8 BGR image, on the net's device."""
    cfg = cfg or DetectionConfig()
    device = _net_device(net)
    all_scores, all_boxes = [], []
    for target_size in cfg.TEST.SCALES:
        blob, im_scale = image_to_blob(im_bgr, target_size, cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
        im_info = torch.tensor([[blob.shape[2], blob.shape[3], im_scale]], dtype=torch.float32)
        with torch.no_grad():
            outputs = net.forward(data=blob.to(device), im_info=im_info.to(device))
            rois = _blob(net, outputs, "rois")
            scores = _blob(net, outputs, "cls_prob").flatten(1)  # R x K, also for R = 0
            boxes = rois[:, 1:5] / im_scale
            if cfg.TEST.BBOX_REG:
                deltas = _blob(net, outputs, "bbox_pred").flatten(1)
                if bbox_stats is not None:
                    deltas = unnormalize_bbox_pred(deltas, *bbox_stats)
                pred_boxes = clip_boxes(bbox_transform_inv(boxes, deltas), im_bgr.shape[:2])
            else:
                pred_boxes = boxes.repeat(1, scores.shape[1])
        all_scores.append(scores.float())
        all_boxes.append(pred_boxes.float())
    return torch.cat(all_scores), torch.cat(all_boxes)


def postprocess_detections(scores, boxes, score_thresh=0.05, nms_thresh=0.3, max_per_image=100):
    """Per-class detections [N_j x 5 (x1, y1, x2, y2, score)], index 0 (background) empty."""
    num_classes = scores.shape[1]
    class_dets = [scores.new_zeros((0, 5))]
    for j in range(1, num_classes):
        inds = torch.nonzero(scores[:, j] > score_thresh).flatten()
        cls_scores = scores[inds, j]
        cls_boxes = boxes[inds, 4 * j:4 * (j + 1)]
        keep = nms(cls_boxes, cls_scores, nms_thresh)
        class_dets.append(torch.cat([cls_boxes[keep], cls_scores[keep, None]], dim=1))
    if max_per_image > 0:
        image_scores = torch.cat([d[:, 4] for d in class_dets[1:]]) if num_classes > 1 \
            else scores.new_zeros(0)
        if image_scores.numel() > max_per_image:
            image_thresh = torch.sort(image_scores).values[-max_per_image]
            class_dets = [d[d[:, 4] >= image_thresh] for d in class_dets]
    return class_dets


def detect(net, im_bgr, cfg=None, bbox_stats=None, score_thresh=None):
    """im_detect then postprocess_detections with cfg.TEST's thresholds
    (`score_thresh` overrides SCORE_THRESH). Per-class detections on the CPU."""
    cfg = cfg or DetectionConfig()
    scores, boxes = im_detect(net, im_bgr, cfg, bbox_stats)
    thresh = cfg.TEST.SCORE_THRESH if score_thresh is None else score_thresh
    class_dets = postprocess_detections(scores, boxes, thresh, cfg.TEST.NMS, cfg.TEST.MAX_PER_IMAGE)
    return [d.cpu() for d in class_dets]


def to_records(class_dets, classes, image_id):
    """Per-class detections as detection-file records (class order, then score)."""
    records = []
    for j, dets in enumerate(class_dets):
        if j == 0:
            continue
        for x1, y1, x2, y2, score in dets.tolist():
            records.append({"image_id": image_id, "class": classes[j],
                            "bbox": [x1, y1, x2, y2], "score": score})
    return records


__all__ = ["bbox_pred_stats", "unnormalize_bbox_pred", "im_detect", "postprocess_detections",
           "detect", "to_records"]
