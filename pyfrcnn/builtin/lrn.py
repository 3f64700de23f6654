"""LRN: Caffe's local response normalization.

bottom: N x C x H x W; top: N x C x H x W, y = x * scale^-beta with
- ACROSS_CHANNELS (default): scale = k + alpha / local_size * sum of x^2 over
  the local_size channels centred on c (zero beyond the first and last channel);
- WITHIN_CHANNEL: scale = 1 + alpha / local_size^2 * sum of x^2 over the
  local_size x local_size square centred on (h, w), zero-padded. As in Caffe
  (which builds it from AVE pooling and a Power layer with shift 1), k is not
  used in this mode.
local_size must be odd.
"""

import torch.nn.functional as F

from ..layer import Layer, count
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register


@register("LRN")
class LRN(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.lrn_param
        if p.local_size % 2 != 1:
            raise self.error(f"lrn_param.local_size must be odd, got {p.local_size}")
        self.size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        self.across = p.norm_region == pb.LRNParameter.ACROSS_CHANNELS

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"bottom '{self.param.bottom[0]}' must be 4-D (N x C x H x W), "
                             f"got {len(shape)}-D")
        return [shape]

    def forward(self, x):
        half = (self.size - 1) // 2
        square = x * x
        # Zero padding is explicit: torch's pooling rejects a window larger than the
        # unpadded input (fewer channels than local_size), which Caffe allows.
        if self.across:
            # A size x 1 x 1 window over (C, H, W).
            padded = F.pad(square, (0, 0, 0, 0, half, self.size - 1 - half))
            mean = F.avg_pool3d(padded.unsqueeze(1), (self.size, 1, 1), 1).squeeze(1)
            scale = self.k + self.alpha * mean
        else:
            padded = F.pad(square, (half, self.size - 1 - half, half, self.size - 1 - half))
            mean = F.avg_pool2d(padded, self.size, 1)
            scale = 1.0 + self.alpha * mean
        return x * scale.pow(-self.beta)

    def flops(self, bottom_shapes, top_shapes):
        window = self.size if self.across else self.size * self.size
        return (count(top_shapes[0]) or 0) * (window + 2)
