"""ROIAlign: bilinear RoI pooling without quantisation (Mask R-CNN; the
semantics of torchvision's roi_align and detectron2's ROIAlign).

bottoms: features N x C x H x W, rois R x 5 with rows (batch index, x1, y1,
x2, y2) in image pixels; top: R x C x pooled_h x pooled_w (R None when the
number of rois changes per forward). roi_align_param: pooled_h, pooled_w
(both required, > 0), spatial_scale (features per image pixel, e.g. 1/16),
sampling_ratio (samples per bin along each axis; <= 0, the default: adaptive,
ceil(RoI size / pooled size)) and aligned (the half-pixel offset of
detectron2's ROIAlignV2; default false, as torchvision). The op is
pyfrcnn.ops.roi_align.
"""

from ..layer import Layer
from ..ops import roi_align
from ..registry import register
from .roi_pooling import ROIPooling


@register("ROIAlign")
class ROIAlign(Layer):
    num_bottoms = 2
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.roi_align_param
        if p.pooled_h < 1 or p.pooled_w < 1:
            raise self.error(f"roi_align_param.pooled_h and pooled_w must be positive, "
                             f"got {p.pooled_h} x {p.pooled_w}")
        if not p.spatial_scale > 0:
            raise self.error(f"roi_align_param.spatial_scale must be positive, got {p.spatial_scale}")
        self.output_size = (p.pooled_h, p.pooled_w)
        self.spatial_scale, self.sampling_ratio, self.aligned = (p.spatial_scale, p.sampling_ratio,
                                                                 p.aligned)

    def reshape(self, bottom_shapes):
        features, rois = bottom_shapes
        self.check_shapes(features, rois)
        return [(rois[0], features[1], *self.output_size)]

    check_shapes = ROIPooling.check_shapes  # the same bottoms

    def forward(self, features, rois):
        self.check_shapes(tuple(features.shape), tuple(rois.shape))
        try:
            return roi_align(features, rois, self.output_size, self.spatial_scale,
                             self.sampling_ratio, self.aligned)
        except (TypeError, ValueError) as e:  # bad input the op found: dtype, device, batch index
            raise self.error(str(e)) from None
