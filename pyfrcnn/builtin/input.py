"""Input: tops whose values are given to Net.forward(**inputs).

tops: one or more blobs; shapes from input_param.shape (one for all tops, or
one per top), overridden by the net's input_shapes (`--input-shape`).
"""

from ..layer import Layer
from ..registry import register


@register("Input")
class Input(Layer):
    num_bottoms = 0
    min_tops = 1
    override_shapes = None

    def reshape(self, bottom_shapes):
        shapes = [tuple(s.dim) for s in self.param.input_param.shape]
        tops = list(self.param.top)
        if len(shapes) == 1 and len(tops) > 1:
            shapes = shapes * len(tops)
        if shapes and len(shapes) != len(tops):
            raise self.error(f"gives {len(shapes)} shapes for {len(tops)} tops (give 1 or one per top)")
        if not shapes:
            shapes = [None] * len(tops)
        overrides = self.override_shapes or {}
        shapes = [tuple(overrides[t]) if t in overrides else s for t, s in zip(tops, shapes)]
        for top, shape in zip(tops, shapes):
            if shape is None:
                raise self.error(f"top '{top}' has no shape: give input_param {{ shape {{ dim: ... }} }} "
                                 "or --input-shape")
            if any(d is not None and d < 0 for d in shape):
                raise self.error(f"top '{top}' has a negative dimension in {list(shape)}")
        return shapes

    def forward(self, *bottoms):
        raise self.error("Input tops are given to Net.forward, not computed")
