"""SmoothL1Loss: the box regression loss of the Faster R-CNN fork of Caffe.

bottoms: predictions N x 4K x ..., targets, and optionally inside weights and
outside weights (2 or 4 bottoms, all one shape); top: the loss (a scalar).

  x = inside * (prediction - target)
  f(x) = 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2
  loss = sum(outside * f(x)) / N
with sigma = smooth_l1_loss_param.sigma (default 1) and N the predictions'
first size. With no rows (N = 0) the loss is 0, where Caffe divides 0 by 0.
"""

import torch

from ..layer import Layer, count
from ..net import format_shape
from ..registry import register

ROLES = ("predictions", "targets", "inside weights", "outside weights")


@register("SmoothL1Loss")
class SmoothL1Loss(Layer):
    min_bottoms = 2
    max_bottoms = 4
    num_tops = 1
    is_loss = True

    def layer_setup(self, bottom_shapes):
        if len(bottom_shapes) == 3:
            raise self.error("takes 2 bottoms, or 4 with both inside and outside weights; got 3")
        self.sigma = self.param.smooth_l1_loss_param.sigma
        if not self.sigma > 0:
            raise self.error(f"smooth_l1_loss_param.sigma must be positive, got {self.sigma}")

    def reshape(self, bottom_shapes):
        self.check_shapes(bottom_shapes)
        return [()]

    def check_shapes(self, shapes):
        first = shapes[0]
        for i, shape in enumerate(shapes[1:], 1):
            if len(shape) != len(first) or any(a is not None and b is not None and a != b
                                               for a, b in zip(shape, first)):
                raise self.error(
                    f"bottom {i} '{self.param.bottom[i]}' ({ROLES[i]}) has shape {format_shape(shape)} "
                    f"but bottom 0 '{self.param.bottom[0]}' ({ROLES[0]}) has {format_shape(first)}")

    def forward(self, predictions, targets, inside=None, outside=None):
        bottoms = [b for b in (predictions, targets, inside, outside) if b is not None]
        self.check_shapes([tuple(b.shape) for b in bottoms])
        x = predictions - targets
        if inside is not None:
            x = inside * x
        sigma2 = self.sigma * self.sigma
        ax = x.abs()
        f = torch.where(ax < 1.0 / sigma2, 0.5 * sigma2 * x * x, ax - 0.5 / sigma2)
        if outside is not None:
            f = outside * f
        return f.sum() / max(1, predictions.shape[0])

    def flops(self, bottom_shapes, top_shapes):
        n = count(bottom_shapes[0])
        return 0 if n is None else 4 * n
