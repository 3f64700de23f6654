"""Scale: Caffe's broadcast multiply (and optional add), e.g. the affine part
after a BatchNorm.

bottom 0: any shape, e.g. N x C x H x W
bottom 1: (optional) the scale, shaped as bottom 0's dims from axis on, e.g. C
          or C x H (axis 0 if it is a scalar)
top:      bottom 0's shape, y = x * scale (+ bias), scale and bias broadcast
          over the dims before axis and after the scale's own dims.
Blobs: with one bottom a learned scale of shape bottom_shape[axis:axis + num_axes]
(num_axes -1: to the end; 0: a scalar), filled by scale_param.filler (default
constant 1); then, with bias_term, a bias of the scale's shape filled by
bias_filler (default constant 0).
"""

from ..layer import Layer, canonical_axis, count
from ..net import format_shape
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register


@register("Scale")
class Scale(Layer):
    min_bottoms = 1
    max_bottoms = 2
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.scale_param
        shape = bottom_shapes[0]
        if len(bottom_shapes) == 2:
            scale_shape = tuple(bottom_shapes[1])
            self.axis = 0 if not scale_shape else canonical_axis(self, p.axis, len(shape))
        else:
            self.axis = canonical_axis(self, p.axis, len(shape))
            if p.num_axes < -1:
                raise self.error(f"scale_param.num_axes must be -1 (to the end) or more, "
                                 f"got {p.num_axes}")
            end = len(shape) if p.num_axes == -1 else self.axis + p.num_axes
            if end > len(shape):
                raise self.error(f"a scale of {p.num_axes} axes from axis {self.axis} extends "
                                 f"past bottom '{self.param.bottom[0]}' of shape {format_shape(shape)}")
            scale_shape = tuple(shape[self.axis:end])
            if None in scale_shape:
                raise self.error(f"bottom '{self.param.bottom[0]}' has shape {format_shape(shape)}: "
                                 f"the scaled dims {self.axis}..{end - 1} must be known")
            filler = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant", value=1.0)
            self.add_blob(scale_shape, filler)
        self.scale_ndim = len(scale_shape)
        self.bias_term = p.bias_term
        if self.bias_term:
            bias_shape = tuple(s if s is not None else b for s, b in
                               zip(scale_shape, shape[self.axis:self.axis + self.scale_ndim]))
            if None in bias_shape:
                raise self.error(f"the bias needs known sizes, but the scale has shape "
                                 f"{format_shape(scale_shape)}")
            self.add_blob(bias_shape, p.bias_filler)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        scale_shape = bottom_shapes[1] if len(bottom_shapes) == 2 else tuple(self.blobs[0].shape)
        self._check(shape, scale_shape)
        return [shape]

    def _check(self, shape, scale_shape):
        part = tuple(shape[self.axis:self.axis + len(scale_shape)])
        fits = len(part) == len(scale_shape) and all(
            a is None or b is None or a == b for a, b in zip(part, scale_shape))
        if not fits:
            raise self.error(f"the scale of shape {format_shape(tuple(scale_shape))} does not match "
                             f"bottom '{self.param.bottom[0]}' of shape {format_shape(tuple(shape))} "
                             f"from axis {self.axis}")

    def forward(self, x, *scale_bottom):
        if scale_bottom:
            scale = scale_bottom[0]
            self._check(tuple(x.shape), tuple(scale.shape))
        else:
            scale = self.blobs[0]
        broadcast = tuple(scale.shape) + (1,) * (x.dim() - self.axis - scale.dim())
        top = x * scale.reshape(broadcast)
        if self.bias_term:
            top = top + self.blobs[-1].reshape(broadcast)
        return top

    def flops(self, bottom_shapes, top_shapes):
        return (2 if self.bias_term else 1) * (count(top_shapes[0]) or 0)
