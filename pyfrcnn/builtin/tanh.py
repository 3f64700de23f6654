"""TanH: the hyperbolic tangent, element by element.

bottom: any shape, e.g. N x C x H x W; top: the same shape, y = tanh(x).
"""

import torch

from ..layer import Layer, count
from ..registry import register


@register("TanH")
class TanH(Layer):
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        return torch.tanh(x)

    def flops(self, bottom_shapes, top_shapes):
        return count(top_shapes[0]) or 0
