"""InnerProduct: Caffe's fully connected layer.

bottom: any shape, flattened from inner_product_param.axis on, e.g.
        R x C x H x W with axis 1 is R x K, K = C H W (R may be unknown);
top:    the bottom's leading dims, then num_output: R x num_output.
Blobs: weight num_output x K (K x num_output with transpose), bias num_output.
y = x W^T + b (x W + b with transpose). K must be known when the net is built.
"""

import torch.nn.functional as F

from ..layer import Layer, canonical_axis, count
from ..net import format_shape
from ..registry import register


@register("InnerProduct")
class InnerProduct(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.inner_product_param
        if not p.num_output:
            raise self.error("inner_product_param.num_output must be positive")
        shape = bottom_shapes[0]
        self.axis = canonical_axis(self, p.axis, len(shape))
        self.k = count(shape, self.axis)
        if self.k is None:
            raise self.error(f"bottom '{self.param.bottom[0]}' has shape {format_shape(shape)}: "
                             f"its sizes from axis {self.axis} on must be known when the net is "
                             "built (they give the weights' input size K)")
        self.num_output, self.transpose = p.num_output, p.transpose
        weight_shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.add_blob(weight_shape, p.weight_filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_blob((self.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        k = count(shape, self.axis)
        if k != self.k:
            raise self.error(f"bottom '{self.param.bottom[0]}' has shape {format_shape(shape)}, "
                             f"{k} inputs from axis {self.axis} on; the weights expect {self.k}")
        return [tuple(shape[:self.axis]) + (self.num_output,)]

    def forward(self, x):
        flat = x.reshape(*x.shape[:self.axis], self.k)
        weight = self.blobs[0].t() if self.transpose else self.blobs[0]
        return F.linear(flat, weight, self.blobs[1] if self.bias_term else None)

    def flops(self, bottom_shapes, top_shapes):
        rows = count(bottom_shapes[0], 0, self.axis)
        return 0 if rows is None else rows * self.k * self.num_output
