"""DummyData: tops filled by fillers, for tests and for timing nets.

tops: one or more blobs whose shapes come from dummy_data_param.shape (one
for all tops, or one per top) or the legacy num / channels / height / width
(N x C x H x W; each one value or one per top), filled by data_filler (none:
constant 0; one for all tops; or one per top). Random fillers draw fresh
values at every forward (Caffe refills every non-constant filler); constant
tops hold the same values each time. Tops follow the layer's device and
dtype (net.to(...)).
"""

import torch

from ..errors import NetError
from ..fillers import fill
from ..layer import Layer
from ..net import format_shape
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register

LEGACY_DIMS = ("num", "channels", "height", "width")


@register("DummyData")
class DummyData(Layer):
    num_bottoms = 0
    min_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.dummy_data_param
        tops = len(self.param.top)
        fillers = list(p.data_filler) or [pb.FillerParameter(type="constant", value=0.0)]
        if len(fillers) not in (1, tops):
            raise self.error(f"gives {len(fillers)} data_filler entries for {tops} tops "
                             "(give 0, 1 or one per top)")
        self.fillers = fillers * tops if len(fillers) == 1 else fillers
        self.shapes = self._shapes(p, tops)
        for top, shape, filler in zip(self.param.top, self.shapes, self.fillers):
            if any(d < 0 for d in shape):
                raise self.error(f"top '{top}' has a negative dimension in {format_shape(shape)}")
            try:
                fill(torch.empty(shape), filler)  # as Caffe fills at setup: checks the filler
            except NetError as e:
                raise self.error(f"top '{top}': {e}") from None
        # Follows net.to(device / dtype), so that the tops do too.
        self.register_buffer("like", torch.zeros(()), persistent=False)

    def _shapes(self, p, tops):
        legacy = {name: list(getattr(p, name)) for name in LEGACY_DIMS}
        if any(legacy.values()):
            if p.shape:
                raise self.error("give either shape or num / channels / height / width, not both")
            for name, values in legacy.items():
                if len(values) not in (1, tops):
                    raise self.error(f"{name} takes 1 value or one per top ({tops} tops), "
                                     f"got {len(values)}")
            return [tuple(v[i] if len(v) > 1 else v[0] for v in legacy.values()) for i in range(tops)]
        shapes = [tuple(int(d) for d in s.dim) for s in p.shape]
        if len(shapes) not in (1, tops):
            raise self.error(f"gives {len(shapes)} shape entries for {tops} tops "
                             "(give 1 or one per top)")
        return shapes * tops if len(shapes) == 1 else shapes

    def reshape(self, bottom_shapes):
        return list(self.shapes)

    def forward(self):
        like = self.like
        return tuple(fill(torch.empty(shape, dtype=like.dtype, device=like.device), filler)
                     for shape, filler in zip(self.shapes, self.fillers))
