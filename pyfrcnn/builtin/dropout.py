"""Dropout: Caffe's inverted dropout.

bottom: any shape, e.g. N x 4096; top: the same shape.
TRAIN: each element is kept with probability 1 - dropout_ratio and scaled by
1 / (1 - dropout_ratio), so that TEST needs no rescaling; the mask comes from
torch's global random generator (seed it with torch.manual_seed).
TEST: the identity. The phase is read at every forward.
"""

import torch

from ..layer import Layer, count
from ..registry import register


@register("Dropout")
class Dropout(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        ratio = float(self.param.dropout_param.dropout_ratio)
        if not 0.0 <= ratio < 1.0:
            raise self.error(f"dropout_param.dropout_ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio
        self.scale = 1.0 / (1.0 - ratio)

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        if self.phase != "TRAIN" or self.ratio == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.ratio
        return x * keep.to(x.dtype) * self.scale

    def flops(self, bottom_shapes, top_shapes):
        return count(top_shapes[0]) or 0
