"""Reshape: the same values under a new shape (Caffe's ReshapeLayer).

bottom: any shape, e.g. N x 2A x H x W; top: the same count, e.g.
N x 2 x (A H) x W for reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } }.
reshape_param.shape replaces bottom axes [axis, axis + num_axes) (num_axes -1:
through the last axis; a negative axis counts from the end, -1 = after the
last). In shape, 0 copies the bottom's size on that axis, -1 is inferred from
the count (at most one). Sizes unknown at build time stay None and are worked
out from the real shape at each forward.
"""

import math

from ..layer import Layer
from ..net import format_shape
from ..registry import register


@register("Reshape")
class Reshape(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.reshape_param
        self.new_dims = list(p.shape.dim)
        self.copy_axes = [i for i, d in enumerate(self.new_dims) if d == 0]
        inferred = [i for i, d in enumerate(self.new_dims) if d == -1]
        bad = [d for d in self.new_dims if d < -1]
        if bad:
            raise self.error(f"reshape_param.shape has dim {bad[0]}; dims must be positive, "
                             "0 (copy the bottom's) or -1 (infer)")
        if len(inferred) > 1:
            raise self.error("reshape_param.shape has more than one -1 dim; at most one can be inferred")
        self.inferred_axis = inferred[0] if inferred else None
        if p.num_axes < -1:
            raise self.error(f"reshape_param.num_axes is {p.num_axes}; give >= 0, or -1 for all")
        self.axis, self.num_axes = p.axis, p.num_axes

    def reshape(self, bottom_shapes):
        return [self.top_shape(bottom_shapes[0])]

    def top_shape(self, shape):
        """The top shape for a bottom of `shape` (tuple; None for unknown sizes)."""
        ndim = len(shape)
        start = self.axis if self.axis >= 0 else ndim + self.axis + 1
        if not 0 <= start <= ndim:
            raise self.error(f"reshape_param.axis {self.axis} is out of range for a {ndim}-D bottom")
        end = ndim if self.num_axes == -1 else start + self.num_axes
        if end > ndim:
            raise self.error(f"reshape_param.axis + num_axes = {end} is out of range for a "
                             f"{ndim}-D bottom")
        top = list(shape[:start]) + list(self.new_dims) + list(shape[end:])
        for i in self.copy_axes:
            if start + i >= ndim:
                raise self.error(f"reshape_param.shape dim {i} is 0 but the {ndim}-D bottom "
                                 f"{format_shape(shape)} has no axis {start + i} to copy")
            top[start + i] = shape[start + i]
        if self.inferred_axis is not None:
            top[start + self.inferred_axis] = self._infer(shape, start, end, top)
        elif None not in shape and None not in top and math.prod(top) != math.prod(shape):
            raise self.error(f"cannot reshape bottom {format_shape(shape)} ({math.prod(shape)} values) "
                             f"to {format_shape(top)} ({math.prod(top)} values)")
        return tuple(top)

    def _infer(self, shape, start, end, top):
        # The bottom axes that the top keeps (outside [start, end), and copied
        # ones) cancel out of count / explicit count; cancelling by axis keeps
        # unknown or zero sizes there from spoiling the quotient.
        kept = list(range(start)) + list(range(end, len(shape)))
        kept += [start + i for i in self.copy_axes]
        remaining, leftover = list(range(len(shape))), []
        for axis in kept:
            if axis in remaining:
                remaining.remove(axis)
            else:
                leftover.append(shape[axis])
        numerator = [shape[a] for a in remaining]
        denominator = [d for d in self.new_dims if d > 0] + leftover
        if None in numerator or None in denominator:
            return None
        num, den = math.prod(numerator), math.prod(denominator)
        if den == 0 or num % den:
            raise self.error(f"cannot reshape bottom {format_shape(shape)} to {format_shape(top)}: the "
                             f"{num} values left are not a multiple of {den}")
        return num // den

    def forward(self, x):
        return x.reshape(self.top_shape(tuple(x.shape)))
