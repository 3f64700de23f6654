"""BatchNorm: Caffe's batch normalization, without the affine part.

bottom: N x C x ... (any trailing dims, e.g. N x C x H x W; N alone is one
        channel); top: the same shape, y = (x - mean) / sqrt(variance + eps).
Blobs, all statistics (never learned: requires_grad False, lr_mult 0 as
Caffe forces): mean C, variance C, moving-average factor 1.

use_global_stats defaults to phase == TEST (read at every forward).
- Batch statistics (TRAIN): mean and biased variance over N and the trailing
  dims; then, as Caffe, factor = maf factor + 1, mean_blob = maf mean_blob +
  mean, variance_blob = maf variance_blob + m / (m - 1) variance, with
  maf = moving_average_fraction and m = N H W (the values per channel).
- Global statistics: mean_blob / factor and variance_blob / factor (a factor
  of 0 gives 0, as Caffe).
The learned scale and shift are a separate Scale layer, as in Caffe.
"""

import torch

from ..layer import Layer, count
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register

BLOB_NAMES = ("mean", "variance", "moving-average factor")


@register("BatchNorm")
class BatchNorm(Layer):
    num_bottoms = 1
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.batch_norm_param
        shape = bottom_shapes[0]
        if len(shape) < 1:
            raise self.error(f"bottom '{self.param.bottom[0]}' must have at least one axis")
        self.channels = 1 if len(shape) == 1 else shape[1]
        if self.channels is None:
            raise self.error(f"bottom '{self.param.bottom[0]}' has an unknown channel count")
        self.global_stats = p.use_global_stats if p.HasField("use_global_stats") else None
        self.fraction, self.eps = p.moving_average_fraction, p.eps
        for i, name in enumerate(BLOB_NAMES):
            if i < len(self.param.param):
                if self.param.param[i].lr_mult != 0:
                    raise self.error(f"blob {i} ({name}) holds statistics, not learned weights: "
                                     f"its lr_mult must be 0, got {self.param.param[i].lr_mult}")
            else:
                self.param.param.add(lr_mult=0.0)
        for shape in ((self.channels,), (self.channels,), (1,)):
            self.add_blob(shape, pb.FillerParameter(type="constant", value=0.0)).requires_grad_(False)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        channels = 1 if len(shape) == 1 else shape[1]
        if channels != self.channels:
            raise self.error(f"bottom '{self.param.bottom[0]}' has {channels} channels, "
                             f"the statistics have {self.channels}")
        return [shape]

    def forward(self, x):
        planes = x.unsqueeze(1) if x.dim() == 1 else x
        axes = [0, *range(2, planes.dim())]
        column = (1, -1) + (1,) * (planes.dim() - 2)
        use_global = self.global_stats if self.global_stats is not None else self.phase == "TEST"
        if use_global:
            factor = self.blobs[2][0]
            scale = torch.where(factor == 0, torch.zeros_like(factor), 1.0 / factor)
            mean, variance = self.blobs[0] * scale, self.blobs[1] * scale
        else:
            mean = planes.mean(axes)
            variance = (planes - mean.view(column)).square().mean(axes)
            self._update(mean.detach(), variance.detach(), planes.numel() // self.channels)
        top = (planes - mean.view(column)) / (variance.view(column) + self.eps).sqrt()
        return top.view(x.shape)

    @torch.no_grad()
    def _update(self, mean, variance, m):
        correction = m / (m - 1) if m > 1 else 1.0
        self.blobs[2].mul_(self.fraction).add_(1.0)
        self.blobs[0].mul_(self.fraction).add_(mean)
        self.blobs[1].mul_(self.fraction).add_(variance, alpha=correction)

    def flops(self, bottom_shapes, top_shapes):
        return 2 * (count(top_shapes[0]) or 0)
