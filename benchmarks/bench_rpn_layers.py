"""Faster R-CNN layer speed: anchor_target + proposal + proposal_target per image.

One 600 x 1000 image (conv5 38 x 63, 9 anchors: 21546 anchors), --gt gt boxes,
and synthetic RPN outputs shaped like a trained net's: foreground logits
rise with the anchor's best IoU with a gt (plus noise) and the deltas are
small, so the proposals cluster on the objects as NMS sees them in training.
Default settings (py-faster-rcnn end2end): proposal in TRAIN (12000 / 2000 /
0.7) and TEST (6000 / 300 / 0.7); proposal_target samples 128 RoIs from the
2000 TRAIN proposals + the gt boxes. NMS (pyfrcnn.ops.nms) is also timed
alone on the pre-NMS boxes, to show its share of the proposal layer.

Each figure is the median of --repeats calls after one warm-up.  Usage:
    python benchmarks/bench_rpn_layers.py [--repeats 20] [--threads 1] [--gt 5] [--device cpu]
"""

import argparse
import os
import platform
import statistics
import time

import torch

from pyfrcnn_layers.anchor_target import AnchorTargetLayer
from pyfrcnn_layers.anchors import generate_anchors, shift_anchors
from pyfrcnn_layers.bbox import bbox_overlaps, bbox_transform_inv, clip_boxes
from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.proposal import ProposalLayer
from pyfrcnn_layers.proposal_target import ProposalTargetLayer
from pyfrcnn.ops import nms
from pyfrcnn.proto import pyfrcnn_pb2 as pb
from machine import cpu_model

HEIGHT, WIDTH, A = 38, 63, 9
IM_INFO = [[600.0, 1000.0, 1.6]]


def build(cls, param_str, bottom_shapes, num_tops, phase):
    param = pb.LayerParameter(name=cls.__name__, type="Python")
    param.top.extend([f"t{i}" for i in range(num_tops)])
    layer = cls(param, phase=phase, config={"detection": DetectionConfig()})
    layer.param_str = param_str
    layer.setup(bottom_shapes)
    return layer


def scene(num_gt, device, seed=0):
    """gt boxes and RPN outputs (fg probabilities, deltas) for one image."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gt, 2, generator=g) * torch.tensor([700.0, 350.0])
    wh = 60 + torch.rand(num_gt, 2, generator=g) * 240
    classes = torch.randint(1, 21, (num_gt, 1), generator=g).float()
    gt_boxes = torch.cat([xy, xy + wh, classes], dim=1).round()
    anchors = shift_anchors(generate_anchors(), HEIGHT, WIDTH, 16)
    best_iou = bbox_overlaps(anchors, gt_boxes[:, :4]).max(dim=1).values
    fg_logit = 6 * best_iou - 3 + torch.randn(anchors.shape[0], generator=g)
    fg = torch.sigmoid(fg_logit).reshape(1, HEIGHT, WIDTH, A).permute(0, 3, 1, 2)
    prob = torch.cat([1 - fg, fg], dim=1)
    deltas = (torch.randn(1, HEIGHT, WIDTH, 4 * A, generator=g) * 0.1).permute(0, 3, 1, 2).contiguous()
    return gt_boxes.to(device), prob.to(device), deltas.to(device)


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def pre_nms_boxes(anchors, prob, deltas, im_info, top_n):
    """The proposal layer's boxes and scores just before NMS (to time NMS apart)."""
    boxes = clip_boxes(bbox_transform_inv(anchors, deltas.permute(0, 2, 3, 1).reshape(-1, 4)),
                       (im_info[0, 0], im_info[0, 1]))
    scores = prob[:, A:].permute(0, 2, 3, 1).reshape(-1)
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    keep = (w >= 16 * im_info[0, 2]) & (h >= 16 * im_info[0, 2])
    scores, order = scores[keep].sort(descending=True, stable=True)
    return boxes[keep][order[:top_n]], scores[:top_n]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gt", type=int, default=5, help="gt boxes in the image")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    gt_boxes, prob, deltas = scene(args.gt, device)
    im_info = torch.tensor(IM_INFO, device=device)
    score_shape = (1, 2 * A, HEIGHT, WIDTH)
    anchor_target = build(AnchorTargetLayer, "'feat_stride': 16",
                          [score_shape, (None, 5), (1, 3), (1, 3, 600, 1000)], 4, "TRAIN")
    proposal_train = build(ProposalLayer, "'feat_stride': 16",
                           [score_shape, (1, 4 * A, HEIGHT, WIDTH), (1, 3)], 1, "TRAIN")
    proposal_test = build(ProposalLayer, "'feat_stride': 16",
                          [score_shape, (1, 4 * A, HEIGHT, WIDTH), (1, 3)], 1, "TEST")
    proposal_target = build(ProposalTargetLayer, "'num_classes': 21", [(None, 5), (None, 5)], 5, "TRAIN")
    data = torch.zeros(1, 3, 600, 1000, device=device)
    rpn_score = torch.zeros(score_shape, device=device)

    with torch.no_grad():
        (rpn_rois,) = proposal_train(prob, deltas, im_info)
        sampled = proposal_target(rpn_rois, gt_boxes)
        labels = anchor_target(rpn_score, gt_boxes, im_info, data)[0]
        rows = [
            ("anchor_target", median_ms(lambda: anchor_target(rpn_score, gt_boxes, im_info, data),
                                        args.repeats),
             f"{int((labels == 1).sum())} fg + {int((labels == 0).sum())} bg of 21546 anchors"),
            ("proposal, TRAIN (12000 / 2000)", median_ms(lambda: proposal_train(prob, deltas, im_info),
                                                         args.repeats),
             f"{rpn_rois.shape[0]} rois"),
        ]
        anchors = shift_anchors(generate_anchors(device=device), HEIGHT, WIDTH, 16)
        rows.append(("  decode, clip, filter, sort (no NMS)",
                     median_ms(lambda: pre_nms_boxes(anchors, prob, deltas, im_info, 12000), args.repeats),
                     "21546 anchors"))
        boxes, scores = pre_nms_boxes(anchors, prob, deltas, im_info, 12000)
        rows.append(("  NMS of the 12000 alone", median_ms(lambda: nms(boxes, scores, 0.7), args.repeats),
                     f"{boxes.shape[0]} boxes in"))
        (test_rois,) = proposal_test(prob, deltas, im_info)
        rows.append(("proposal, TEST (6000 / 300)", median_ms(lambda: proposal_test(prob, deltas, im_info),
                                                              args.repeats), f"{test_rois.shape[0]} rois"))
        boxes, scores = pre_nms_boxes(anchors, prob, deltas, im_info, 6000)
        rows.append(("  NMS of the 6000 alone", median_ms(lambda: nms(boxes, scores, 0.7), args.repeats),
                     f"{boxes.shape[0]} boxes in"))
        rows.append(("proposal_target (2000 rois + gt)",
                     median_ms(lambda: proposal_target(rpn_rois, gt_boxes), args.repeats),
                     f"{sampled[0].shape[0]} rois, {int((sampled[1] > 0).sum())} fg"))
    train_total = rows[0][1] + rows[1][1] + rows[-1][1]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores (nproc), {cpu_model()}; Python {platform.python_version()}, "
          f"torch {torch.__version__}; {args.threads} thread(s); device {device}; load average {load:.1f}")
    print(f"image 600x1000, conv5 {HEIGHT}x{WIDTH}, {A} anchors, {args.gt} gt boxes; "
          f"median of {args.repeats}\n")
    print("| layer | ms / image | output |")
    print("| --- | ---: | --- |")
    for name, ms, note in rows:
        print(f"| {name} | {ms:.1f} | {note} |")
    print(f"| **TRAIN total** (anchor_target + proposal + proposal_target) | **{train_total:.1f}** | |")


if __name__ == "__main__":
    main()
