"""ROIPooling: max pooling of each region of interest to a fixed grid (the
Faster R-CNN fork of Caffe).

bottoms: features N x C x H x W, rois R x 5 with rows (batch index, x1, y1,
x2, y2) in image pixels (inclusive corners, as py-faster-rcnn); top:
R x C x pooled_h x pooled_w (R None when the number of rois changes per
forward). roi_pooling_param: pooled_h, pooled_w (both required, > 0) and
spatial_scale (features per image pixel, e.g. 1/16). The pooling itself is
pyfrcnn.ops.roi_pool.
"""

from ..errors import DeviceError
from ..layer import Layer
from ..net import format_shape
from ..ops import roi_pool
from ..registry import register


@register("ROIPooling")
class ROIPooling(Layer):
    num_bottoms = 2
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.roi_pooling_param
        if p.pooled_h < 1 or p.pooled_w < 1:
            raise self.error(f"roi_pooling_param.pooled_h and pooled_w must be positive, "
                             f"got {p.pooled_h} x {p.pooled_w}")
        if not p.spatial_scale > 0:
            raise self.error(f"roi_pooling_param.spatial_scale must be positive, got {p.spatial_scale}")
        self.output_size = (p.pooled_h, p.pooled_w)
        self.spatial_scale = p.spatial_scale

    def reshape(self, bottom_shapes):
        features, rois = bottom_shapes
        self.check_shapes(features, rois)
        return [(rois[0], features[1], *self.output_size)]

    def check_shapes(self, features, rois):
        if len(features) != 4:
            raise self.error(f"bottom 0 '{self.param.bottom[0]}' must be N x C x H x W, "
                             f"got {format_shape(features)}")
        if len(rois) != 2 or rois[1] not in (5, None):
            raise self.error(f"bottom 1 '{self.param.bottom[1]}' must be R x 5 rois "
                             f"(batch index, x1, y1, x2, y2), got {format_shape(rois)}")

    def forward(self, features, rois):
        self.check_shapes(tuple(features.shape), tuple(rois.shape))
        try:
            return roi_pool(features, rois, self.output_size, self.spatial_scale)
        except (TypeError, ValueError, DeviceError) as e:  # bad input the op found: dtype, device, batch index
            raise self.error(str(e)) from None
