"""AnchorTargetLayer: RPN training labels and regression targets for every anchor.

bottoms:
  rpn_cls_score   N x 2A x H x W   only its N, H and W are read
  gt_boxes        G x 5            (x1, y1, x2, y2, class) in input-image pixels; G may be 0
                  (G x 6 for N > 1: the image index last, as roi_data gives it)
  im_info         N x 3            (height, width, scale) of each input image
  data            N x 3 x h x w    unused (py-faster-rcnn wires it)
  gt_ishard       G                optional (5th bottom): nonzero marks a hard gt box
  dontcare_areas  D x 4            optional (6th bottom): regions whose anchors are ignored
                  (D x 5 with G x 6 gt boxes: the image index last)
tops:
  rpn_labels                N x 1 x A*H x W   1 fg, 0 bg, -1 ignored
  rpn_bbox_targets          N x 4A x H x W    bbox_transform(anchor, its best gt)
  rpn_bbox_inside_weights   N x 4A x H x W    RPN_BBOX_INSIDE_WEIGHTS on positives
  rpn_bbox_outside_weights  N x 4A x H x W    1 / #sampled (or RPN_POSITIVE_WEIGHT's scheme)

With N images (or G x 6 gt boxes) each image goes through the one-image forward,
against its own gt boxes and its own (height, width), in image order from the
layer's one generator:
RPN_BATCHSIZE and the outside weights are per image (as py-faster-rcnn and
detectron2 define them), so SmoothL1Loss's division by N averages the images.
Splitting the gt rows by image reads their counts on the host (only for N > 1).

Boxes are (x1, y1, x2, y2) with inclusive corners (layers/bbox.py). Anchor a of
cell (h, w) is row (h*W + w)*A + a of the shifted set (layers/anchors.py); its
label sits at rpn_labels[0, 0, a*H + h, w] and its targets at channels 4a..4a+3.

py-faster-rcnn's semantics, with the settings of the TRAIN section (this layer
only trains): anchors outside the image by more than `allowed_border` are
ignored; IoUs are float64 (as py-faster-rcnn's cython bbox_overlaps); an
anchor is negative when its best IoU is below RPN_NEGATIVE_OVERLAP,
positive when it is one of a gt's best anchors (every anchor tying the gt's
highest IoU) or its best IoU reaches RPN_POSITIVE_OVERLAP (with
RPN_CLOBBER_POSITIVES negatives are written last and win). At most
RPN_FG_FRACTION * RPN_BATCHSIZE positives are kept and RPN_BATCHSIZE minus the
positives of negatives, drawn by the layer's generator (seeded with RNG_SEED).

Where we differ, on purpose:
  - a gt whose highest IoU with the inside anchors is 0 forces no positive
    (py-faster-rcnn would then mark every anchor that misses it positive);
  - no gt boxes (G = 0): every inside anchor has IoU 0, so all are negatives;
  - no anchor inside the image: every label is -1 and all weights 0;
  - gt_ishard: an anchor whose best gt is hard is never positive (it stays a
    negative if its IoU is below RPN_NEGATIVE_OVERLAP, else it is ignored), and
    hard gts force no best anchors;
  - dontcare_areas: an anchor is ignored when the dontcare areas cover more than
    DONTCARE_AREA_INTERSECTION_HI of its area (intersections over the anchor's
    area, summed over the areas), whatever its label;
  - a gt box (or dontcare area) with x2 < x1 or y2 < y1 is an error naming its row.
"""

import dataclasses

import torch

from pyfrcnn.layer import Layer

from .anchors import anchor_grid
from .bbox import bbox_coverage, bbox_overlaps, bbox_transform, check_boxes
from .config import detection_config, parse_param_str
from .constants import constant
from .sampling import generator_state, make_generator, set_generator_state, subsample

DONTCARE_AREA_INTERSECTION_HI = 0.5


@dataclasses.dataclass
class AnchorTargetParams:
    feat_stride: int = 0
    scales: tuple = (8, 16, 32)
    ratios: tuple = (0.5, 1.0, 2.0)
    allowed_border: int = 0


def label_anchors(anchors, gt_boxes, train, gt_ishard=None, dontcare_areas=None):
    """Labels of N x 4 anchors before sampling (1, 0, -1; float32) and the index of
    each anchor's best gt among the G x 4 gt_boxes (0 when G = 0)."""
    n, g = anchors.shape[0], gt_boxes.shape[0]
    labels = anchors.new_full((n,), -1.0)
    if n == 0 or g == 0:
        max_overlaps = anchors.new_zeros(n)
        argmax_overlaps = torch.zeros(n, dtype=torch.long, device=anchors.device)
        positive = torch.zeros(n, dtype=torch.bool, device=anchors.device)
    else:
        # float64 as py-faster-rcnn's bbox_overlaps: in float32 near-ties with a gt's
        # best IoU become ties, and the equality below marks extra positives
        overlaps = bbox_overlaps(anchors.double(), gt_boxes.double())
        max_overlaps, argmax_overlaps = overlaps.max(dim=1)
        gt_max_overlaps = overlaps.max(dim=0).values
        is_gt_best = (overlaps == gt_max_overlaps) & (gt_max_overlaps > 0)
        hard = None if gt_ishard is None else gt_ishard != 0
        if hard is not None:
            is_gt_best &= ~hard
        positive = is_gt_best.any(dim=1) | (max_overlaps >= train.RPN_POSITIVE_OVERLAP)
        if hard is not None:
            positive &= ~hard[argmax_overlaps]
    negative = max_overlaps < train.RPN_NEGATIVE_OVERLAP
    # masked_fill_, not labels[mask] = v: a boolean index is a nonzero() and,
    # on a GPU, a wait for the device.
    if train.RPN_CLOBBER_POSITIVES:
        labels.masked_fill_(positive, 1)
        labels.masked_fill_(negative, 0)
    else:
        labels.masked_fill_(negative, 0)
        labels.masked_fill_(positive, 1)
    if dontcare_areas is not None and dontcare_areas.shape[0] and n:
        covered = bbox_coverage(anchors.double(), dontcare_areas.double()).sum(dim=1)
        labels.masked_fill_(covered > DONTCARE_AREA_INTERSECTION_HI, -1)
    return labels, argmax_overlaps


class AnchorTargetLayer(Layer):
    min_bottoms = 4
    max_bottoms = 6
    num_tops = 4

    def layer_setup(self, bottom_shapes):
        self.params = parse_param_str(self, getattr(self, "param_str", ""), AnchorTargetParams)
        self.grid = anchor_grid(self, self.params.feat_stride, self.params.ratios, self.params.scales)
        cfg = detection_config(self.config)
        weight = cfg.TRAIN.RPN_POSITIVE_WEIGHT
        if weight >= 0 and not 0 < weight < 1:
            raise self.error(f"TRAIN.RPN_POSITIVE_WEIGHT must be negative (uniform weights) "
                             f"or in (0, 1), got {weight}")
        self.generator = make_generator(cfg.RNG_SEED)

    def _check_bottoms(self, shapes):
        """Shapes (tuples, None for unknown sizes) of the bottoms, at build or forward time."""
        a = self.grid.num_anchors

        def fail(index, name, expected):
            raise self.error(f"bottom {index} ({name}) must be {expected}, got "
                             f"{'x'.join('?' if d is None else str(d) for d in shapes[index])}")

        score = shapes[0]
        if len(score) != 4 or score[1] not in (None, 2 * a):
            fail(0, "rpn_cls_score", f"{'N' if score[0] is None else score[0]} x {2 * a} x H x W "
                                     f"(2 x {a} anchors)")
        if len(shapes[2]) != 2 or shapes[2][1] not in (None, 3) or (
                None not in (score[0], shapes[2][0]) and score[0] != shapes[2][0]):
            fail(2, "im_info", f"{'N' if score[0] is None else score[0]} x 3 (N of rpn_cls_score)")
        one_image = score[0] == 1 or shapes[2][0] == 1
        if len(shapes[1]) != 2 or shapes[1][1] not in ((None, 5, 6) if one_image else (None, 6)):
            fail(1, "gt_boxes", "G x 5, or G x 6 (the image index last)" if one_image
                 else "G x 6 for N > 1 images (x1, y1, x2, y2, class, image index)")
        if len(shapes) > 4:
            ishard, num_gt = shapes[4], shapes[1][0]
            if len(ishard) != 1 or (None not in (ishard[0], num_gt) and ishard[0] != num_gt):
                fail(4, "gt_ishard", f"a vector of G = {num_gt} flags")
        dontcare_width = 4 if shapes[1][1] == 5 else 5
        if len(shapes) > 5 and (len(shapes[5]) != 2 or shapes[5][1] not in (None, dontcare_width)):
            fail(5, "dontcare_areas", "D x 4" if dontcare_width == 4 else "D x 5 (the image index last)")

    def reshape(self, bottom_shapes):
        self._check_bottoms(bottom_shapes)
        height, width = bottom_shapes[0][2], bottom_shapes[0][3]
        a = self.grid.num_anchors
        n = bottom_shapes[0][0]
        box_shape = (n, 4 * a, height, width)
        return [(n, 1, None if height is None else a * height, width), box_shape, box_shape, box_shape]

    def forward(self, *bottoms):
        self._check_bottoms([tuple(b.shape) for b in bottoms])
        if bottoms[2].shape[0] > 1 or bottoms[1].shape[1] == 6:
            return self._forward_images(*bottoms)
        rpn_cls_score, gt_boxes, im_info = bottoms[:3]
        gt_ishard = bottoms[4] if len(bottoms) > 4 else None
        dontcare_areas = bottoms[5] if len(bottoms) > 5 else None
        train = detection_config(self.config).TRAIN
        device = rpn_cls_score.device
        height, width = rpn_cls_score.shape[2], rpn_cls_score.shape[3]
        a = self.grid.num_anchors
        gt_boxes = gt_boxes.detach().to(device=device, dtype=torch.float32)[:, :4]
        if self.host_checks(gt_boxes):
            check_boxes(self, "gt_boxes", gt_boxes)
        if gt_ishard is not None:
            gt_ishard = gt_ishard.detach().to(device)
        if dontcare_areas is not None:
            dontcare_areas = dontcare_areas.detach().to(device=device, dtype=torch.float32)
            if self.host_checks(dontcare_areas):
                check_boxes(self, "dontcare_areas", dontcare_areas)
        im_info = im_info.detach().to(device=device, dtype=torch.float32)

        all_anchors = self.grid.shifted(height, width, device)
        border = self.params.allowed_border
        inside = ((all_anchors[:, 0] >= -border) & (all_anchors[:, 1] >= -border)
                  & (all_anchors[:, 2] < im_info[0, 1] + border)
                  & (all_anchors[:, 3] < im_info[0, 0] + border))
        inds_inside = inside.nonzero().squeeze(1)
        anchors = all_anchors[inds_inside]

        labels, argmax_overlaps = label_anchors(anchors, gt_boxes, train, gt_ishard, dontcare_areas)
        labels = self._sample(labels, train)

        targets = anchors.new_zeros(anchors.shape)
        if gt_boxes.shape[0]:
            targets = bbox_transform(anchors, gt_boxes[argmax_overlaps])
        inside_weights = torch.where((labels == 1)[:, None], constant(train.RPN_BBOX_INSIDE_WEIGHTS, device),
                                     anchors.new_zeros(()))
        outside_weights = self._outside_weights(labels, train)

        total = all_anchors.shape[0]
        return (_layout(_unmap(labels, total, inds_inside, -1.0), height, width, a),
                _layout(_unmap(targets, total, inds_inside, 0.0), height, width, a),
                _layout(_unmap(inside_weights, total, inds_inside, 0.0), height, width, a),
                _layout(_unmap(outside_weights, total, inds_inside, 0.0), height, width, a))

    def _forward_images(self, rpn_cls_score, gt_boxes, im_info, data, gt_ishard=None,
                        dontcare_areas=None):
        """N images (G x 6 gt boxes, D x 5 dontcare areas): each image through the
        one-image forward, in image order (so the generator draws in that order),
        the tops stacked along N."""
        per_image = []
        for n in range(im_info.shape[0]):
            mine = gt_boxes[:, 5] == n
            bottoms = [rpn_cls_score[n:n + 1], gt_boxes[mine, :5], im_info[n:n + 1], data[n:n + 1]]
            if gt_ishard is not None:
                bottoms.append(gt_ishard[mine])
            if dontcare_areas is not None:
                bottoms.append(dontcare_areas[dontcare_areas[:, 4] == n, :4])
            per_image.append(self.forward(*bottoms))
        return tuple(torch.cat(tops) for tops in zip(*per_image))

    def _sample(self, labels, train):
        """Disable positives beyond the fg quota, then negatives beyond the batch."""
        fg_inds = (labels == 1).nonzero().squeeze(1)
        num_fg = int(train.RPN_FG_FRACTION * train.RPN_BATCHSIZE)
        if fg_inds.shape[0] > num_fg:
            labels[fg_inds] = -1
            labels[subsample(fg_inds, num_fg, self.generator)] = 1
        bg_inds = (labels == 0).nonzero().squeeze(1)
        num_bg = train.RPN_BATCHSIZE - min(fg_inds.shape[0], num_fg)
        if bg_inds.shape[0] > num_bg:
            labels[bg_inds] = -1
            labels[subsample(bg_inds, num_bg, self.generator)] = 0
        return labels

    @staticmethod
    def _outside_weights(labels, train):
        positive, negative = labels == 1, labels == 0
        if train.RPN_POSITIVE_WEIGHT < 0:
            num_examples = (positive | negative).sum().clamp(min=1)
            positive_weight = negative_weight = 1.0 / num_examples
        else:
            positive_weight = train.RPN_POSITIVE_WEIGHT / positive.sum().clamp(min=1)
            negative_weight = (1.0 - train.RPN_POSITIVE_WEIGHT) / negative.sum().clamp(min=1)
        weights = positive[:, None] * positive_weight + negative[:, None] * negative_weight
        return weights.to(torch.float32).expand(-1, 4).contiguous()

    def snapshot_state(self):
        return {"generator": generator_state(self.generator)}

    def restore_state(self, state):
        set_generator_state(self.generator, state["generator"])


def _unmap(values, count, inds, fill):
    """Values of the inside anchors scattered into all `count` anchors, `fill` elsewhere."""
    full = values.new_full((count,) + tuple(values.shape[1:]), fill)
    full[inds] = values
    return full


def _layout(values, height, width, a):
    """(H*W*A) or (H*W*A) x 4 per anchor -> py-faster-rcnn's blob layout."""
    if values.dim() == 1:
        return values.reshape(1, height, width, a).permute(0, 3, 1, 2).reshape(1, 1, a * height, width)
    return values.reshape(1, height, width, 4 * a).permute(0, 3, 1, 2).contiguous()


__all__ = ["AnchorTargetLayer", "AnchorTargetParams", "label_anchors", "DONTCARE_AREA_INTERSECTION_HI"]
