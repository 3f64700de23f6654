"""Deconvolution: Caffe's 2-D transposed convolution (its convolution_param).

bottom: N x C x H x W; top: N x num_output x H' x W' with
H' = stride_h (H - 1) + dilation_h (kernel_h - 1) + 1 - 2 pad_h.
Blobs: weight C x num_output/group x kernel_h x kernel_w (Caffe's layout for
Deconvolution, the input channels first: torch's conv_transpose2d's too), bias
num_output. It is the gradient of the Convolution with the same parameters
and weights: each input value spreads, times the kernel, over a window of the
output. pad, kernel_size, stride, dilation and group read as for Convolution.
The usual learnt-free upsampling by an integer factor f is kernel_size 2f - f % 2,
stride f, pad ceil((f - 1) / 2), group = num_output = C, weight_filler
{ type: "bilinear" } and lr_mult 0.
"""

import torch.nn.functional as F

from ..layer import Layer
from ..registry import register
from .convolution import read_convolution_param


def deconv_out(size, kernel, pad, stride, dilation=1):
    if size is None:
        return None
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


@register("Deconvolution")
class Deconvolution(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = read_convolution_param(self, bottom_shapes)
        channels = self.channels
        self.add_blob((channels, p.num_output // self.group, *self.kernel), p.weight_filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_blob((p.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes):
        n, c, h, w = bottom_shapes[0]
        if c != self.channels:
            raise self.error(f"bottom has {c} channels, the weights expect {self.channels}")
        out_h = deconv_out(h, self.kernel[0], self.pad[0], self.stride[0], self.dilation[0])
        out_w = deconv_out(w, self.kernel[1], self.pad[1], self.stride[1], self.dilation[1])
        if (out_h is not None and out_h < 1) or (out_w is not None and out_w < 1):
            raise self.error(f"bottom {h}x{w} gives an empty top with kernel "
                             f"{self.kernel[0]}x{self.kernel[1]}, stride {self.stride}, pad {self.pad}")
        return [(n, self.num_output, out_h, out_w)]

    def forward(self, x):
        bias = self.blobs[1] if self.bias_term else None
        return F.conv_transpose2d(x, self.blobs[0], bias, self.stride, self.pad, 0, self.group,
                                  self.dilation)

    def flops(self, bottom_shapes, top_shapes):
        n, c, h, w = bottom_shapes[0]
        if None in (n, h, w):
            return 0
        return n * c * h * w * (self.num_output // self.group) * self.kernel[0] * self.kernel[1]
