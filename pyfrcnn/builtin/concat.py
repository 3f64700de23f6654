"""Concat: join bottoms along one axis (Caffe's ConcatLayer).

bottoms: K blobs with equal sizes except on the concat axis, e.g. N x C_k x H x W;
top: N x (C_1 + ... + C_K) x H x W. concat_param.axis (default 1, negative
counts from the end) or the deprecated concat_dim, not both.
"""

import torch

from ..layer import Layer, canonical_axis
from ..net import format_shape
from ..registry import register


@register("Concat")
class Concat(Layer):
    min_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise self.error("give concat_param.axis or the deprecated concat_dim, not both")
        ndim = len(bottom_shapes[0])
        self.axis = p.concat_dim if p.HasField("concat_dim") else canonical_axis(self, p.axis, ndim)
        if self.axis >= ndim:
            raise self.error(f"concat_dim {self.axis} is out of range for a {ndim}-D bottom")

    def reshape(self, bottom_shapes):
        first = bottom_shapes[0]
        top = list(first)
        for i, shape in enumerate(bottom_shapes[1:], 1):
            if len(shape) != len(first):
                raise self.error(f"bottom {i} '{self.param.bottom[i]}' is {len(shape)}-D "
                                 f"({format_shape(shape)}) but bottom 0 '{self.param.bottom[0]}' is "
                                 f"{len(first)}-D ({format_shape(first)})")
            for a, (d, t) in enumerate(zip(shape, top)):
                if a == self.axis:
                    top[a] = None if d is None or t is None else t + d
                elif d is not None and t is not None and d != t:
                    raise self.error(f"bottom {i} '{self.param.bottom[i]}' {format_shape(shape)} and "
                                     f"bottom 0 '{self.param.bottom[0]}' {format_shape(first)} differ "
                                     f"on axis {a}, which is not the concat axis {self.axis}")
                elif t is None:
                    top[a] = d
        return [tuple(top)]

    def forward(self, *bottoms):
        if len(bottoms) == 1:
            return bottoms[0]
        try:
            return torch.cat(bottoms, dim=self.axis)
        except RuntimeError:
            shapes = ", ".join(format_shape(tuple(b.shape)) for b in bottoms)
            raise self.error(f"cannot concatenate bottoms {shapes} on axis {self.axis}") from None
