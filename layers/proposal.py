"""ProposalLayer: object proposals from the RPN's scores and box deltas.

bottoms:
  rpn_cls_prob_reshape  N x 2A x H x W   channels 0..A-1 background, A..2A-1 foreground
  rpn_bbox_pred         N x 4A x H x W   (dx, dy, dw, dh) of anchor a at channels 4a..4a+3
  im_info               N x 3            (height, width, scale) of each input image
tops:
  rois                  R x 5            (n, x1, y1, x2, y2): the batch index, then the box
  scores                R x 1            optional: the foreground score of each roi

With N images each is processed alone (clipped to its own height and width,
RPN_PRE_NMS_TOP_N and RPN_POST_NMS_TOP_N per image, as detectron2), and the
rois come image by image.

Boxes are (x1, y1, x2, y2) with inclusive corners (layers/bbox.py). R is known
only per forward (at most RPN_POST_NMS_TOP_N, possibly 0).

py-faster-rcnn's steps, with the settings of the section of the layer's phase
(TRAIN: 12000 / 2000 / 0.7 / 16, TEST: 6000 / 300 / 0.7 / 16 by default):
decode every shifted anchor with its deltas, clip to the image, drop boxes
narrower or shorter than RPN_MIN_SIZE * scale, sort by foreground score, keep
the RPN_PRE_NMS_TOP_N best, non-maximum suppression at RPN_NMS_THRESH (IoU
with the +1 convention), keep the RPN_POST_NMS_TOP_N best (a top-N of 0 or
less keeps all). Equal scores keep anchor order (a stable sort). No gradient
flows back (the bottoms are detached).
"""

import dataclasses

import torch

from pyfrcnn.errors import DeviceError
from pyfrcnn.layer import Layer
from pyfrcnn.ops import nms

from .anchors import anchor_grid
from .bbox import bbox_transform_inv, clip_boxes, widths_heights
from .config import detection_config, parse_param_str


@dataclasses.dataclass
class ProposalParams:
    feat_stride: int = 0
    scales: tuple = (8, 16, 32)
    ratios: tuple = (0.5, 1.0, 2.0)


class ProposalLayer(Layer):
    num_bottoms = 3
    min_tops = 1
    max_tops = 2

    def layer_setup(self, bottom_shapes):
        self.params = parse_param_str(self, getattr(self, "param_str", ""), ProposalParams)
        self.grid = anchor_grid(self, self.params.feat_stride, self.params.ratios, self.params.scales)

    def _check_bottoms(self, shapes):
        a = self.grid.num_anchors

        def fail(index, name, expected):
            raise self.error(f"bottom {index} ({name}) must be {expected}, got "
                             f"{'x'.join('?' if d is None else str(d) for d in shapes[index])}")

        ns = "N" if shapes[0][0] is None else shapes[0][0]
        for index, name, channels in ((0, "rpn_cls_prob_reshape", 2 * a), (1, "rpn_bbox_pred", 4 * a)):
            shape = shapes[index]
            if len(shape) != 4 or shape[1] not in (None, channels):
                fail(index, name, f"{ns} x {channels} x H x W ({a} anchors)")
        for axis in (0, 2, 3):
            sizes = shapes[0][axis], shapes[1][axis]
            if None not in sizes and sizes[0] != sizes[1]:
                fail(1, "rpn_bbox_pred", f"{ns} x {4 * a} x H x W with the N x H x W of rpn_cls_prob_reshape "
                                         f"({shapes[0][0]} x {shapes[0][2]} x {shapes[0][3]})")
        num = shapes[0][0]
        if len(shapes[2]) != 2 or shapes[2][1] not in (None, 3) or (
                None not in (num, shapes[2][0]) and shapes[2][0] != num):
            fail(2, "im_info", f"{'N' if num is None else num} x 3 (N of rpn_cls_prob_reshape)")

    def reshape(self, bottom_shapes):
        self._check_bottoms(bottom_shapes)
        return [(None, 5), (None, 1)][:len(self.param.top)]

    def forward(self, rpn_cls_prob, rpn_bbox_pred, im_info):
        self._check_bottoms([tuple(rpn_cls_prob.shape), tuple(rpn_bbox_pred.shape), tuple(im_info.shape)])
        if rpn_cls_prob.shape[0] > 1:
            return self._forward_images(rpn_cls_prob, rpn_bbox_pred, im_info)
        section = detection_config(self.config).phase(self.phase)
        device = rpn_cls_prob.device
        a = self.grid.num_anchors
        height, width = rpn_cls_prob.shape[2], rpn_cls_prob.shape[3]

        # (1, C, H, W) -> (H*W*A, .): the order of the shifted anchors
        scores = rpn_cls_prob.detach()[:, a:].permute(0, 2, 3, 1).reshape(-1).float()
        deltas = rpn_bbox_pred.detach().to(device).permute(0, 2, 3, 1).reshape(-1, 4).float()
        im_info = im_info.detach().to(device=device, dtype=torch.float32)
        anchors = self.grid.shifted(height, width, device)

        proposals = bbox_transform_inv(anchors, deltas)
        proposals = clip_boxes(proposals, (im_info[0, 0], im_info[0, 1]))
        widths, heights = widths_heights(proposals)
        min_size = section.RPN_MIN_SIZE * im_info[0, 2]
        keep = ((widths >= min_size) & (heights >= min_size)).nonzero().squeeze(1)
        proposals, scores = proposals[keep], scores[keep]

        scores, order = scores.sort(descending=True, stable=True)
        if section.RPN_PRE_NMS_TOP_N > 0:
            order, scores = order[:section.RPN_PRE_NMS_TOP_N], scores[:section.RPN_PRE_NMS_TOP_N]
        proposals = proposals[order]
        try:
            keep = nms(proposals, scores, section.RPN_NMS_THRESH)
        except DeviceError as e:
            raise self.error(str(e)) from None
        if section.RPN_POST_NMS_TOP_N > 0:
            keep = keep[:section.RPN_POST_NMS_TOP_N]
        proposals, scores = proposals[keep], scores[keep]

        rois = torch.cat([proposals.new_zeros(proposals.shape[0], 1), proposals], dim=1)
        return (rois, scores[:, None])[:len(self.param.top)]

    def _forward_images(self, rpn_cls_prob, rpn_bbox_pred, im_info):
        """N images: each through the one-image forward, its rois given batch index n."""
        per_image = []
        for n in range(rpn_cls_prob.shape[0]):
            tops = self.forward(rpn_cls_prob[n:n + 1], rpn_bbox_pred[n:n + 1], im_info[n:n + 1])
            tops[0][:, 0] = n
            per_image.append(tops)
        return tuple(torch.cat(tops) for tops in zip(*per_image))


__all__ = ["ProposalLayer", "ProposalParams"]
