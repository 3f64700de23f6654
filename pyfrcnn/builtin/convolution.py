"""Convolution: Caffe's 2-D convolution.

bottom: N x C x H x W; top: N x num_output x H' x W' with
H' = (H + 2 pad_h - (dilation_h (kernel_h - 1) + 1)) / stride_h + 1 (floored).
Blobs: weight num_output x C/group x kernel_h x kernel_w, bias num_output.
pad / kernel_size / stride / dilation take one value, or two (h, w); the
_h / _w fields override them.
"""

import torch.nn.functional as F

from ..layer import Layer
from ..registry import register


def spatial_pair(layer, values, h, w, has_h, has_w, default, what, stem=None):
    """Caffe's (h, w) from a repeated field `what` and its `stem`_h / `stem`_w forms."""
    stem = stem or what
    if has_h or has_w:
        if values:
            raise layer.error(f"give either {what} or {stem}_h / {stem}_w, not both")
        if not (has_h and has_w):
            raise layer.error(f"give both {stem}_h and {stem}_w")
        return int(h), int(w)
    values = list(values)
    if not values:
        if default is None:
            raise layer.error(f"{what} is required")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise layer.error(f"{what} takes 1 or 2 values for a 2-D convolution, got {len(values)}")


def conv_out(size, kernel, pad, stride, dilation=1):
    if size is None:
        return None
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def read_convolution_param(layer, bottom_shapes):
    """convolution_param checked against the bottom: sets layer.kernel, pad, stride,
    dilation (h, w pairs), group, channels and num_output; returns the message.
    Convolution and Deconvolution share it, as in Caffe's BaseConvolutionLayer."""
    p = layer.param.convolution_param
    if p.axis != 1:
        raise layer.error("only axis 1 (N x C x H x W) is supported")
    if not p.HasField("num_output") or p.num_output == 0:
        raise layer.error("convolution_param.num_output must be positive")
    layer.kernel = spatial_pair(layer, p.kernel_size, p.kernel_h, p.kernel_w,
                                p.HasField("kernel_h"), p.HasField("kernel_w"), None, "kernel_size",
                                "kernel")
    layer.pad = spatial_pair(layer, p.pad, p.pad_h, p.pad_w,
                             p.HasField("pad_h"), p.HasField("pad_w"), 0, "pad")
    layer.stride = spatial_pair(layer, p.stride, p.stride_h, p.stride_w,
                                p.HasField("stride_h"), p.HasField("stride_w"), 1, "stride")
    layer.dilation = spatial_pair(layer, p.dilation, 0, 0, False, False, 1, "dilation")
    if min(layer.kernel) < 1 or min(layer.stride) < 1 or min(layer.dilation) < 1:
        raise layer.error("kernel, stride and dilation must be positive")
    shape = bottom_shapes[0]
    if len(shape) != 4:
        raise layer.error(f"bottom '{layer.param.bottom[0]}' must be 4-D (N x C x H x W), "
                          f"got {len(shape)}-D")
    channels, layer.group = shape[1], p.group
    if channels is None:
        raise layer.error(f"bottom '{layer.param.bottom[0]}' has an unknown channel count")
    if layer.group < 1 or channels % layer.group or p.num_output % layer.group:
        raise layer.error(f"group {layer.group} must divide both the bottom's {channels} channels "
                          f"and num_output {p.num_output}")
    layer.channels, layer.num_output = channels, p.num_output
    return p


@register("Convolution")
class Convolution(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = read_convolution_param(self, bottom_shapes)
        channels = self.channels
        self.add_blob((p.num_output, channels // self.group, *self.kernel), p.weight_filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            self.add_blob((p.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes):
        n, c, h, w = bottom_shapes[0]
        if c != self.channels:
            raise self.error(f"bottom has {c} channels, the weights expect {self.channels}")
        out_h = conv_out(h, self.kernel[0], self.pad[0], self.stride[0], self.dilation[0])
        out_w = conv_out(w, self.kernel[1], self.pad[1], self.stride[1], self.dilation[1])
        if (out_h is not None and out_h < 1) or (out_w is not None and out_w < 1):
            raise self.error(f"bottom {h}x{w} is smaller than the kernel "
                             f"{self.kernel[0]}x{self.kernel[1]} (pad {self.pad})")
        return [(n, self.num_output, out_h, out_w)]

    def forward(self, x):
        bias = self.blobs[1] if self.bias_term else None
        return F.conv2d(x, self.blobs[0], bias, self.stride, self.pad, self.dilation, self.group)

    def flops(self, bottom_shapes, top_shapes):
        n, c, h, w = top_shapes[0]
        if None in (n, h, w):
            return 0
        return n * c * h * w * (self.channels // self.group) * self.kernel[0] * self.kernel[1]
