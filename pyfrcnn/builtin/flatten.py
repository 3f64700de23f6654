"""Flatten: merge bottom axes [axis, end_axis] into one (Caffe's FlattenLayer).

bottom: e.g. R x C x H x W; top: R x (C H W) with the defaults axis 1,
end_axis -1. Negative axes count from the end. A merged size is None when any
of its factors is unknown.
"""

from ..layer import Layer, canonical_axis, count
from ..registry import register


@register("Flatten")
class Flatten(Layer):
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        p = self.param.flatten_param
        self.start = canonical_axis(self, p.axis, len(shape))
        self.end = canonical_axis(self, p.end_axis, len(shape))
        if self.end < self.start:
            raise self.error(f"flatten_param.end_axis {p.end_axis} comes before axis {p.axis} "
                             f"for a {len(shape)}-D bottom")
        return [(*shape[:self.start], count(shape, self.start, self.end + 1), *shape[self.end + 1:])]

    def forward(self, x):
        return x.flatten(self.start, self.end)
