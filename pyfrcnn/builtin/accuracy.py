"""Accuracy: the fraction of positions whose label is among the top_k scores
(Caffe's AccuracyLayer). Not differentiable.

bottoms: scores N x C x H x W (C classes on accuracy_param.axis, default 1),
labels with N x H x W values in any shape (float or integer, truncated to int);
tops: the accuracy (a scalar) and, optionally, the accuracy of each class (C).

A position counts as right when fewer than top_k classes score at least as
high as its label's class, other than that class itself (so ties count
against it, as in Caffe). Labels equal to accuracy_param.ignore_label are
left out; with no labels left the accuracy is 0, as is a class's with none.
"""

import torch

from ..layer import Layer, canonical_axis
from ..registry import register
from .softmax_with_loss import class_layout, integer_labels


@register("Accuracy")
class Accuracy(Layer):
    num_bottoms = 2
    min_tops = 1
    max_tops = 2

    def layer_setup(self, bottom_shapes):
        p = self.param.accuracy_param
        self.top_k = p.top_k
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.axis = canonical_axis(self, p.axis, len(bottom_shapes[0]))

    def reshape(self, bottom_shapes):
        _, classes, _ = class_layout(self, bottom_shapes[0], bottom_shapes[1], self.axis)
        if self.top_k < 1 or (classes is not None and self.top_k > classes):
            raise self.error(f"accuracy_param.top_k is {self.top_k}; it must be in [1, {classes}], "
                             f"the number of classes")
        return [(), (classes,)][:len(self.param.top)]

    @torch.no_grad()
    def forward(self, scores, labels):
        outer, classes, inner = class_layout(self, tuple(scores.shape), tuple(labels.shape), self.axis)
        labels = integer_labels(self, labels, outer, classes, inner, self.ignore_label)
        scores = scores.reshape(outer, classes, inner)
        kept = torch.ones_like(labels, dtype=torch.bool)
        if self.ignore_label is not None:
            kept = labels != self.ignore_label
        labels = torch.where(kept, labels, 0)
        true_score = scores.gather(1, labels.unsqueeze(1))
        rivals = (scores >= true_score).sum(dim=1) - 1
        right = (rivals < self.top_k) & kept
        accuracy = right.sum().to(scores.dtype) / kept.sum().clamp(min=1)
        if len(self.param.top) == 1:
            return accuracy
        flat_labels = labels.flatten()
        per_class = scores.new_zeros(classes).scatter_add_(0, flat_labels, right.flatten().to(scores.dtype))
        totals = scores.new_zeros(classes).scatter_add_(0, flat_labels, kept.flatten().to(scores.dtype))
        return accuracy, per_class / totals.clamp(min=1)
