"""Foreground / background accuracy of the RPN and of the RoI head while training.

py-faster-rcnn users watch these beside the losses: of the anchors labelled
foreground (rpn_labels 1) how many the RPN scores foreground, likewise for
background (label 0), and of the sampled RoIs how many the classifier gives
their class (foreground: labels > 0) or the background (labels 0).

The blobs are found from the net's structure, whatever their names: the
labels top of the AnchorTargetLayer (top 0) and of the ProposalTargetLayer
(top 1), and the score each SoftmaxWithLoss compares with them (its bottom 0):
  rpn score  1 x 2 x A*H x W,  rpn labels  1 x 1 x A*H x W  (-1: ignored)
  cls_score  S x K,            labels      S
Each step adds the counts to tensors on the net's device (no host sync); the
display reads them once per interval. With iter_size > 1 the counts are those
of each step's last pass.
"""

import torch

from .anchor_target import AnchorTargetLayer
from .proposal_target import ProposalTargetLayer

# counts kept per head: labelled fg, fg scored fg, labelled bg, bg scored bg
FG, FG_RIGHT, BG, BG_RIGHT = range(4)


def _scored_labels(net, layer_class, label_top):
    """(score blob, labels blob) of the loss that compares the labels top of the
    first `layer_class` layer with a score, or None."""
    for layer, tops in zip(net.layers, net.top_names):
        if isinstance(layer, layer_class) and len(tops) > label_top:
            labels = tops[label_top]
            for other, bottoms in zip(net.layers, net.bottom_names):
                if other.type == "SoftmaxWithLoss" and len(bottoms) == 2 and bottoms[1] == labels:
                    return bottoms[0], labels
    return None


class DetectionAccuracy:
    """Accumulates the counts every step; read() gives the interval's accuracies."""

    def __init__(self, net):
        self.heads = {}
        rpn = _scored_labels(net, AnchorTargetLayer, 0)
        if rpn:
            self.heads["rpn_"] = rpn
        roi = _scored_labels(net, ProposalTargetLayer, 1)
        if roi:
            self.heads[""] = roi
        self.counts = {prefix: None for prefix in self.heads}
        self.steps = 0

    def update(self, net):
        for prefix, (score_name, labels_name) in self.heads.items():
            if score_name not in net.blobs or labels_name not in net.blobs:
                continue
            score, labels = net.blobs[score_name].detach(), net.blobs[labels_name].detach()
            if prefix:  # rpn: 1 x 2 x A*H x W against 1 x 1 x A*H x W
                predicted, labels = score.argmax(dim=1), labels[:, 0]
            else:       # roi head: S x K against S
                predicted = score.argmax(dim=1)
            labels = labels.long()
            fg, bg = labels > 0, labels == 0
            right = predicted == labels
            counts = torch.stack([fg.sum(), (fg & right).sum(), bg.sum(), (bg & right).sum()])
            total = self.counts[prefix]
            self.counts[prefix] = counts if total is None else total + counts
        self.steps += 1

    def read(self):
        """{name: value} over the steps since the last read (one host sync), then reset."""
        values = {}
        for prefix, total in self.counts.items():
            if total is None:
                continue
            fg, fg_right, bg, bg_right = total.tolist()
            values[f"{prefix}fg_acc"] = fg_right / fg if fg else float("nan")
            values[f"{prefix}bg_acc"] = bg_right / bg if bg else float("nan")
            values[f"{prefix}num_fg"] = fg / self.steps
            values[f"{prefix}num_bg"] = bg / self.steps
        self.counts = {prefix: None for prefix in self.heads}
        self.steps = 0
        return values


def detection_accuracy_factory(solver):
    """The step statistics of a Faster R-CNN train net (None for other nets, or
    a solver without one)."""
    if getattr(solver, "net", None) is None:
        return None
    stats = DetectionAccuracy(solver.net)
    return stats if stats.heads else None


__all__ = ["DetectionAccuracy", "detection_accuracy_factory"]
