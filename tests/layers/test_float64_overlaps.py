"""The labelling layers compute IoU in float64, as py-faster-rcnn's cython
bbox_overlaps does: in float32, near-ties with a gt's best overlap become ties
and the best-anchor equality marks extra positives, and a near-tie between two
gts picks the wrong class.

The reference below is py-faster-rcnn's anchor_target_layer.py written again in
numpy float64 (generate_anchors, the shifts, the inside test, bbox_overlaps and
the label assignment before sampling), independent of layers/.
"""

import numpy as np
import torch

from pyfrcnn_layers.anchor_target import AnchorTargetLayer
from pyfrcnn_layers.proposal_target import ProposalTargetLayer

from .rpn_helpers import build_layer

# py-faster-rcnn scales a 360-pixel short side to 600; its roidb boxes are uint16 and
# the gt_boxes blob float32: the scaled corners are rounded to float32
SCALE = 1.666667
GT_BOX = np.array([21, 24, 151, 306], dtype=np.float64)
IM_HEIGHT, IM_WIDTH = 600, 1000
FEAT_H, FEAT_W, STRIDE = 38, 63, 16  # VGG16's conv5_3 on 600 x 1000 (ceil pooling)


def np_generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """py-faster-rcnn's generate_anchors: _ratio_enum, then _scale_enum of each row."""
    def whctrs(anchor):
        w, h = anchor[2] - anchor[0] + 1, anchor[3] - anchor[1] + 1
        return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)

    def mkanchors(ws, hs, x_ctr, y_ctr):
        ws, hs = ws[:, np.newaxis], hs[:, np.newaxis]
        return np.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1),
                          x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)))

    base = np.array([1, 1, base_size, base_size], dtype=np.float64) - 1
    w, h, x_ctr, y_ctr = whctrs(base)
    size_ratios = w * h / np.array(ratios, dtype=np.float64)
    ws = np.round(np.sqrt(size_ratios))
    hs = np.round(ws * np.array(ratios, dtype=np.float64))
    ratio_anchors = mkanchors(ws, hs, x_ctr, y_ctr)
    rows = []
    for anchor in ratio_anchors:
        w, h, x_ctr, y_ctr = whctrs(anchor)
        rows.append(mkanchors(w * np.array(scales, dtype=np.float64),
                              h * np.array(scales, dtype=np.float64), x_ctr, y_ctr))
    return np.vstack(rows)


def np_bbox_overlaps(boxes, query_boxes):
    """py-faster-rcnn's utils/cython_bbox.pyx bbox_overlaps, a loop in float64."""
    overlaps = np.zeros((boxes.shape[0], query_boxes.shape[0]), dtype=np.float64)
    for k, q in enumerate(query_boxes):
        box_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        iw = np.minimum(boxes[:, 2], q[2]) - np.maximum(boxes[:, 0], q[0]) + 1
        ih = np.minimum(boxes[:, 3], q[3]) - np.maximum(boxes[:, 1], q[1]) + 1
        ua = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1) + box_area - iw * ih
        overlaps[:, k] = np.where((iw > 0) & (ih > 0), iw * ih / ua, 0.0)
    return overlaps


def py_faster_rcnn_rpn_labels(gt_boxes, height, width, im_info):
    """anchor_target_layer.py's labels before sampling (TRAIN defaults), in
    py-faster-rcnn's row order (cell-major, anchor fastest); -1 outside the image."""
    anchors = np_generate_anchors()
    shift_x, shift_y = np.meshgrid(np.arange(width) * STRIDE, np.arange(height) * STRIDE)
    shifts = np.vstack((shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel())).transpose()
    all_anchors = (anchors.reshape((1, -1, 4)) + shifts.reshape((1, -1, 4)).transpose((1, 0, 2))).reshape((-1, 4))
    inds_inside = np.where((all_anchors[:, 0] >= 0) & (all_anchors[:, 1] >= 0)
                           & (all_anchors[:, 2] < im_info[1]) & (all_anchors[:, 3] < im_info[0]))[0]
    anchors = all_anchors[inds_inside, :]
    labels = np.full(len(inds_inside), -1.0, dtype=np.float32)
    overlaps = np_bbox_overlaps(np.ascontiguousarray(anchors, dtype=np.float64),
                                np.ascontiguousarray(gt_boxes, dtype=np.float64))
    argmax_overlaps = overlaps.argmax(axis=1)
    max_overlaps = overlaps[np.arange(len(inds_inside)), argmax_overlaps]
    gt_argmax_overlaps = overlaps.argmax(axis=0)
    gt_max_overlaps = overlaps[gt_argmax_overlaps, np.arange(overlaps.shape[1])]
    gt_argmax_overlaps = np.where(overlaps == gt_max_overlaps)[0]
    labels[max_overlaps < 0.3] = 0
    labels[gt_argmax_overlaps] = 1
    labels[max_overlaps >= 0.7] = 1
    full = np.full(len(all_anchors), -1.0, dtype=np.float32)
    full[inds_inside] = labels
    return full


def scaled_gt():
    return (GT_BOX[np.newaxis, :] * SCALE).astype(np.float32)


def test_near_ties_with_a_gts_best_anchor_are_not_positives():
    gt = scaled_gt()
    expected = py_faster_rcnn_rpn_labels(gt, FEAT_H, FEAT_W, (IM_HEIGHT, IM_WIDTH))
    assert int((expected == 1).sum()) == 14

    a = 9
    layer, _ = build_layer(AnchorTargetLayer, "'feat_stride': 16",
                           [(1, 2 * a, FEAT_H, FEAT_W), (None, 5), (1, 3), (1, 3, IM_HEIGHT, IM_WIDTH)], 4,
                           detection={"TRAIN": {"RPN_BATCHSIZE": 100000}})
    gt_boxes = torch.tensor(np.hstack([gt, [[1.0]]]), dtype=torch.float32)
    tops = layer(torch.zeros(1, 2 * a, FEAT_H, FEAT_W), gt_boxes,
                 torch.tensor([[IM_HEIGHT, IM_WIDTH, SCALE]]), torch.zeros(1, 3, IM_HEIGHT, IM_WIDTH))
    # (1, 1, A*H, W) -> py-faster-rcnn's (H*W*A) row order
    labels = tops[0].reshape(a, FEAT_H, FEAT_W).permute(1, 2, 0).reshape(-1).numpy()
    assert int((labels == 1).sum()) == 14
    np.testing.assert_array_equal(labels, expected)


def test_a_near_tie_between_two_gts_assigns_the_closer_one():
    # two gt boxes whose IoUs with the roi are equal in float32 and differ in float64
    # (0.60428570246 against 0.60428572347): py-faster-rcnn's argmax takes the second
    roi = scaled_gt()[0].astype(np.float64)
    gt_boxes = np.array([[48, 40, 223, 391, 1], [48, 56, 223, 407, 2]], dtype=np.float64)
    overlaps = np_bbox_overlaps(roi[np.newaxis, :], gt_boxes[:, :4])
    assert overlaps.argmax(axis=1)[0] == 1
    assert np.float32(overlaps[0, 0]) == np.float32(overlaps[0, 1])

    layer, _ = build_layer(ProposalTargetLayer, "'num_classes': 3", [(None, 5), (None, 5)], 5,
                           detection={"TRAIN": {"BATCH_SIZE": 100000}})
    rpn_rois = torch.tensor([[0.0, *roi.tolist()]], dtype=torch.float32)
    rois, labels, *_ = layer(rpn_rois, torch.tensor(gt_boxes, dtype=torch.float32))
    # foreground first: the roi and the two gt boxes, which join the candidates
    rows = {tuple(r[1:].tolist()): float(c) for r, c in zip(rois, labels)}
    assert rows[tuple(rpn_rois[0, 1:].tolist())] == 2.0


def test_gt_boxes_are_scaled_in_float64_and_rounded_once(tmp_path):
    # py-faster-rcnn: uint16 boxes * im_scale (float64), stored in a float32 blob. A
    # float32 product rounds twice: at 600 / 353 it moves 89 of the corners 0..499.
    import types

    from PIL import Image

    from pyfrcnn_layers.datasets.roidb import RoidbEntry
    from pyfrcnn_layers.roi_data import load_sample

    Image.fromarray(np.zeros((353, 500, 3), np.uint8)).save(tmp_path / "im.png")
    corners = np.arange(0, 496, dtype=np.float32)
    boxes = np.stack([corners, corners * 0, corners + 4, corners * 0 + 300], axis=1)
    entry = RoidbEntry(0, "im", str(tmp_path / "im.png"), 500, 353, boxes,
                       np.ones(len(boxes), np.int64), np.zeros(len(boxes), bool), np.zeros((0, 4), np.float32))
    source = types.SimpleNamespace(roidb=[entry], scales=(600,), max_size=1000)
    _, im_info, gt_boxes, _, _ = load_sample(source, (0.0, 0.0, 0.0), (0, 0, None))
    scale = 600 / 353
    expected = (boxes.astype(np.float64) * scale).astype(np.float32)
    np.testing.assert_array_equal(gt_boxes[:, :4].numpy(), expected)
    assert (gt_boxes[:, :4].numpy() != boxes * np.float32(scale)).any()
