"""Silence: consume blobs that nothing else reads (Caffe's SilenceLayer).

bottoms: one or more blobs of any shape; no tops. Its bottoms are then not
outputs of the net; it passes no gradient.
"""

from ..layer import Layer
from ..registry import register


@register("Silence")
class Silence(Layer):
    min_bottoms = 1
    num_tops = 0

    def reshape(self, bottom_shapes):
        return []

    def forward(self, *bottoms):
        return ()
