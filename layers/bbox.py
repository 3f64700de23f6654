"""Box coding, clipping and overlaps, in torch on any device.

Box convention (py-faster-rcnn's): a box is (x1, y1, x2, y2) in image pixels
with *inclusive* corners, so its width is x2 - x1 + 1 and its height
y2 - y1 + 1; a one-pixel box has x1 == x2. Every function here uses that +1.
torchvision's box ops (box_iou, nms, roi_align) use no +1 (width x2 - x1):
do not mix the two without converting.

Box coding (py-faster-rcnn's bbox_transform): with a reference box of width w,
height h and centre (x1 + w/2, y1 + h/2),

    dx = (gx - x) / w    dy = (gy - y) / h    dw = log(gw / w)    dh = log(gh / h)

Decoding keeps py-faster-rcnn's asymmetry: the decoded corners are the centre
-/+ half the width, so bbox_transform_inv(ex, bbox_transform(ex, gt)) gives
(gx1, gy1, gx2 + 1, gy2 + 1). Trained py-faster-rcnn models are evaluated with
that decoding, so we keep it. dw and dh are clamped at log(1000 / 16) before
exp, so a wild regressor output cannot overflow to inf.

Widths and heights of the boxes passed in must be positive: the layers check
their gt boxes with `check_boxes`; the math functions do not check, to keep
the hot path free of device syncs.
"""

import math

import torch

# The largest dw / dh decoded: a box grows at most 1000 / 16 times per side.
BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)


def widths_heights(boxes):
    """Inclusive widths and heights of N x 4 boxes."""
    return boxes[:, 2] - boxes[:, 0] + 1.0, boxes[:, 3] - boxes[:, 1] + 1.0


def bbox_transform(ex_rois, gt_rois):
    """Regression targets (N x 4: dx, dy, dw, dh) taking ex_rois (N x 4) to gt_rois (N x 4)."""
    ex_w, ex_h = widths_heights(ex_rois)
    gt_w, gt_h = widths_heights(gt_rois)
    ex_cx = ex_rois[:, 0] + 0.5 * ex_w
    ex_cy = ex_rois[:, 1] + 0.5 * ex_h
    gt_cx = gt_rois[:, 0] + 0.5 * gt_w
    gt_cy = gt_rois[:, 1] + 0.5 * gt_h
    return torch.stack([(gt_cx - ex_cx) / ex_w,
                        (gt_cy - ex_cy) / ex_h,
                        torch.log(gt_w / ex_w),
                        torch.log(gt_h / ex_h)], dim=1)


def bbox_transform_inv(boxes, deltas):
    """Apply deltas (N x 4k: k groups of dx, dy, dw, dh) to boxes (N x 4); N x 4k boxes."""
    if boxes.shape[0] == 0:
        return deltas.new_zeros((0, deltas.shape[1]))
    boxes = boxes.to(deltas.dtype)
    w, h = widths_heights(boxes)
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    w, h, cx, cy = w[:, None], h[:, None], cx[:, None], cy[:, None]
    dx, dy = deltas[:, 0::4], deltas[:, 1::4]
    dw = deltas[:, 2::4].clamp(max=BBOX_XFORM_CLIP)
    dh = deltas[:, 3::4].clamp(max=BBOX_XFORM_CLIP)
    pred_cx = dx * w + cx
    pred_cy = dy * h + cy
    pred_w = torch.exp(dw) * w
    pred_h = torch.exp(dh) * h
    pred = torch.stack([pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,
                        pred_cx + 0.5 * pred_w, pred_cy + 0.5 * pred_h], dim=2)
    return pred.reshape(deltas.shape)


def clip_boxes(boxes, im_shape):
    """Clip N x 4k boxes to an image of im_shape = (height, width): x in [0, width - 1],
    y in [0, height - 1]. im_shape may hold numbers or 0-d tensors."""
    height, width = im_shape[0], im_shape[1]
    x_max = torch.as_tensor(width, dtype=boxes.dtype, device=boxes.device) - 1
    y_max = torch.as_tensor(height, dtype=boxes.dtype, device=boxes.device) - 1
    x = torch.minimum(boxes[:, 0::2], x_max).clamp(min=0)
    y = torch.minimum(boxes[:, 1::2], y_max).clamp(min=0)
    return torch.stack([x, y], dim=2).reshape(boxes.shape)


def _intersections(a, b):
    """Inclusive intersection areas of every box in a (N x 4) with every box in b (M x 4)."""
    iw = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + 1
    return iw.clamp(min=0) * ih.clamp(min=0)


def bbox_overlaps(a, b):
    """IoU of every box in a (N x 4) with every box in b (M x 4): N x M."""
    inter = _intersections(a, b)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def bbox_coverage(boxes, regions):
    """Share of each box's area (N x 4) covered by each region (D x 4): N x D,
    the intersection over the box's own area."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return _intersections(boxes, regions) / area[:, None]


def check_boxes(layer, name, boxes):
    """Raise an error naming `layer`, the blob and the first bad row if any of the
    N x 4 boxes is not finite or has x2 < x1 or y2 < y1 (a width or height below
    one pixel). One device sync."""
    bad = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if boxes.shape[0] and bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        values = ", ".join(f"{v:g}" for v in boxes[row].tolist())
        raise layer.error(f"{name} row {row} is not a box (x1, y1, x2, y2) with x2 >= x1 and "
                          f"y2 >= y1: ({values}); {int(bad.sum())} bad row(s) in all")


__all__ = ["check_boxes", "BBOX_XFORM_CLIP", "widths_heights", "bbox_transform", "bbox_transform_inv",
           "clip_boxes", "bbox_overlaps", "bbox_coverage"]
