"""ReLU: Caffe's rectifier, leaky when relu_param.negative_slope is set.

bottom: any shape, e.g. N x C x H x W; top: the same shape, with
y = max(x, 0) + negative_slope * min(x, 0).
As in Caffe the gradient is 1 for x > 0 and negative_slope for x <= 0 (so 0
at x = 0 for a plain ReLU). An in-place ReLU (top == bottom) is the Net's
business: this layer always returns a new tensor.
"""

import torch
import torch.nn.functional as F

from ..layer import Layer, count
from ..registry import register


@register("ReLU")
class ReLU(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        self.negative_slope = float(self.param.relu_param.negative_slope)

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        if self.negative_slope == 0:
            return torch.relu(x)
        # leaky_relu's gradient at 0 is the slope, as Caffe's (x <= 0) branch.
        return F.leaky_relu(x, self.negative_slope)

    def flops(self, bottom_shapes, top_shapes):
        return count(top_shapes[0]) or 0
