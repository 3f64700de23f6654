"""Slice: cut a bottom into pieces along one axis (Caffe's SliceLayer).

bottom: e.g. N x C x H x W; tops: K blobs N x C_k x H x W with C_1 + ... + C_K = C.
slice_param.axis (default 1, negative counts from the end) or the deprecated
slice_dim, not both. slice_point gives the K - 1 increasing cut positions;
without it the axis is split into K equal pieces. When the axis size is
unknown at build time, the sizes it decides are None and are computed at
each forward.
"""

from ..layer import Layer, canonical_axis
from ..net import format_shape
from ..registry import register


@register("Slice")
class Slice(Layer):
    num_bottoms = 1
    min_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise self.error("give slice_param.axis or the deprecated slice_dim, not both")
        ndim = len(bottom_shapes[0])
        self.axis = p.slice_dim if p.HasField("slice_dim") else canonical_axis(self, p.axis, ndim)
        if self.axis >= ndim:
            raise self.error(f"slice_dim {self.axis} is out of range for a {ndim}-D bottom")
        self.points = list(p.slice_point)
        n_tops = len(self.param.top)
        if self.points and len(self.points) != n_tops - 1:
            raise self.error(f"gives {len(self.points)} slice_point values for {n_tops} tops "
                             f"(give {n_tops - 1}, or none for equal pieces)")
        previous = 0
        for point in self.points:
            if point <= previous:
                raise self.error(f"slice_point values must be positive and increasing, "
                                 f"got {self.points}")
            previous = point

    def sizes(self, shape):
        """The size of each piece on the slice axis (None each if unknown)."""
        size, n_tops = shape[self.axis], len(self.param.top)
        if self.points:
            if size is not None and self.points[-1] >= size:
                raise self.error(f"slice_point {self.points[-1]} leaves nothing for the last top: "
                                 f"bottom {format_shape(shape)} has {size} on axis {self.axis}")
            cuts = [0, *self.points, size]
            return [None if b is None else b - a for a, b in zip(cuts, cuts[1:])]
        if size is None:
            return [None] * n_tops
        if size % n_tops:
            raise self.error(f"cannot split bottom {format_shape(shape)} into {n_tops} equal "
                             f"pieces on axis {self.axis}: give slice_point")
        return [size // n_tops] * n_tops

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        return [(*shape[:self.axis], s, *shape[self.axis + 1:]) for s in self.sizes(shape)]

    def forward(self, x):
        return tuple(x.split(self.sizes(tuple(x.shape)), dim=self.axis))
