"""SoftmaxWithLoss: softmax then multinomial log loss (Caffe's SoftmaxWithLossLayer).

bottoms: scores N x C x H x W (C classes on softmax_param.axis, default 1;
any number of axes), labels with N x H x W values in any shape (float or
integer; floats are truncated to int as Caffe casts them); tops: the loss (a
scalar) and, optionally, the probabilities N x C x H x W.

loss = sum over kept positions of -log softmax(scores)[label] / normaliser.
A label equal to loss_param.ignore_label adds nothing. The normaliser is
max(1, n) with n from loss_param.normalization: FULL = N H W, VALID (default)
= the labels not ignored, BATCH_SIZE = N (the axes before the class axis),
NONE = 1; when normalization is not set, the deprecated normalize decides
(true: VALID, false: BATCH_SIZE). Unlike Caffe, which clamps the probability
at FLT_MIN, the loss is the exact log-softmax; gradients are the same.
"""

import torch

from ..layer import Layer, canonical_axis, count
from ..net import format_shape
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register

MODES = pb.LossParameter


def class_layout(layer, score_shape, label_shape, axis):
    """(outer, classes, inner) sizes of scores around the class `axis`, after
    checking that the labels hold outer x inner values (None: unknown)."""
    outer, inner = count(score_shape, 0, axis), count(score_shape, axis + 1)
    expected = None if outer is None or inner is None else outer * inner
    labels = count(label_shape)
    if expected is not None and labels is not None and expected != labels:
        raise layer.error(
            f"labels '{layer.param.bottom[1]}' {format_shape(label_shape)} hold {labels} values but "
            f"scores '{layer.param.bottom[0]}' {format_shape(score_shape)} need one per position "
            f"outside the class axis {axis}: {expected}")
    return outer, score_shape[axis], inner


def integer_labels(layer, labels, outer, classes, inner, ignore_label):
    """Labels (outer x inner values, as class_layout checked) as an outer x inner
    int64 tensor, each checked to be a class index or the ignore label; the
    check runs on CPU, where it is cheap (elsewhere it would wait for the device)."""
    labels = labels.detach().reshape(outer, inner).long()
    if layer.host_checks(labels) and labels.numel():
        bad = (labels < 0) | (labels >= classes)
        if ignore_label is not None:
            bad &= labels != ignore_label
        if bool(bad.any()):
            value = int(labels[bad][0])
            ignore = "" if ignore_label is None else f" and is not the ignore_label {ignore_label}"
            raise layer.error(f"label {value} in '{layer.param.bottom[1]}' is outside [0, {classes})"
                              f"{ignore}")
    return labels


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(Layer):
    num_bottoms = 2
    min_tops = 1
    max_tops = 2
    is_loss = True

    def layer_setup(self, bottom_shapes):
        p = self.param.loss_param
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        if not p.HasField("normalization") and p.HasField("normalize"):
            self.normalization = MODES.VALID if p.normalize else MODES.BATCH_SIZE
        else:
            self.normalization = p.normalization
        self.axis = canonical_axis(self, self.param.softmax_param.axis, len(bottom_shapes[0]))

    def reshape(self, bottom_shapes):
        class_layout(self, bottom_shapes[0], bottom_shapes[1], self.axis)
        return [(), bottom_shapes[0]][:len(self.param.top)]

    def forward(self, scores, labels):
        shape = tuple(scores.shape)
        outer, classes, inner = class_layout(self, shape, tuple(labels.shape), self.axis)
        labels = integer_labels(self, labels, outer, classes, inner, self.ignore_label)
        log_prob = scores.reshape(outer, classes, inner).log_softmax(dim=1)
        kept = torch.ones_like(labels, dtype=torch.bool)
        if self.ignore_label is not None:
            kept = labels != self.ignore_label
        picked = log_prob.gather(1, torch.where(kept, labels, 0).unsqueeze(1)).squeeze(1)
        loss = torch.where(kept, -picked, 0).sum() / self.normaliser(kept, outer, inner)
        if len(self.param.top) == 1:
            return loss
        return loss, log_prob.exp().reshape(shape)

    def normaliser(self, kept, outer, inner):
        if self.normalization == MODES.FULL:
            n = outer * inner
        elif self.normalization == MODES.VALID:
            return kept.sum().clamp(min=1)
        elif self.normalization == MODES.BATCH_SIZE:
            n = outer
        else:
            n = 1
        return max(1, n)

    def flops(self, bottom_shapes, top_shapes):
        n = count(bottom_shapes[0])
        return 0 if n is None else 3 * n
