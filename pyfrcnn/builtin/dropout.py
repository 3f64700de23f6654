"""Dropout: Caffe's inverted dropout, and the Faster R-CNN fork's scale_train.

bottom: any shape, e.g. N x 4096; top: the same shape.
TRAIN: each element is kept with probability 1 - dropout_ratio and scaled by
1 / (1 - dropout_ratio), so that TEST needs no rescaling; the mask comes from
torch's global random generator (seed it with torch.manual_seed).
TEST: the identity. The phase is read at every forward.

dropout_param { scale_train: false } (a field of py-faster-rcnn's Caffe fork,
set by its ZF nets) moves the scaling to test time, as the fork's
dropout_layer.cpp: TRAIN keeps the kept elements unscaled (x * mask) and TEST
outputs x * (1 - dropout_ratio). Weights trained that way expect it at test time.
"""

import torch

from ..layer import Layer, count
from ..registry import register


@register("Dropout")
class Dropout(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.dropout_param
        ratio = float(p.dropout_ratio)
        if not 0.0 <= ratio < 1.0:
            raise self.error(f"dropout_param.dropout_ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio
        self.scale_train = p.scale_train
        # the factor of the kept elements when training, and of every element at test time
        self.train_scale = 1.0 / (1.0 - ratio) if self.scale_train else 1.0
        self.test_scale = 1.0 if self.scale_train else 1.0 - ratio

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        if self.phase != "TRAIN":
            return x if self.test_scale == 1.0 else x * self.test_scale
        if self.ratio == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.ratio
        if self.train_scale == 1.0:
            return x * keep.to(x.dtype)
        return x * keep.to(x.dtype) * self.train_scale

    def flops(self, bottom_shapes, top_shapes):
        return count(top_shapes[0]) or 0
