"""Softmax: normalised exponentials along one axis (Caffe's SoftmaxLayer).

bottom: e.g. N x C x H x W; top: the same shape, each C-vector summing to 1
with the default softmax_param.axis 1 (negative counts from the end).
"""

from ..layer import Layer, canonical_axis, count
from ..registry import register


@register("Softmax")
class Softmax(Layer):
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        self.axis = canonical_axis(self, self.param.softmax_param.axis, len(shape))
        return [shape]

    def forward(self, x):
        return x.softmax(dim=self.axis)

    def flops(self, bottom_shapes, top_shapes):
        # exp, sum and divide per element
        n = count(top_shapes[0])
        return 0 if n is None else 3 * n
